//! Reading the admin image's Dockerfile in tests: its instructions by stage, as the
//! builder would see them.

use std::collections::BTreeMap;

use serde_json::Value;

#[derive(Debug)]
pub struct Instruction {
    pub line: usize,
    pub keyword: String,
    pub args: String,
}

#[derive(Debug)]
pub struct Stage {
    pub name: Option<String>,
    pub instructions: Vec<Instruction>,
}

impl Stage {
    pub fn all<'a>(&'a self, keyword: &'a str) -> impl Iterator<Item = &'a Instruction> + 'a {
        self.instructions
            .iter()
            .filter(move |i| i.keyword == keyword)
    }

    pub fn last(&self, keyword: &str) -> Option<&Instruction> {
        self.instructions
            .iter()
            .rev()
            .find(|i| i.keyword == keyword)
    }
}

/// Splits a Dockerfile into the instructions before the first FROM (global ARGs) and
/// its stages, joining continuation lines and dropping comments (Docker drops comment
/// lines inside continuations too).
pub fn parse_dockerfile(text: &str) -> (Vec<Instruction>, Vec<Stage>) {
    let mut preamble = Vec::new();
    let mut stages: Vec<Stage> = Vec::new();
    let mut pending = String::new();
    let mut start = 0;
    for (index, raw) in text.lines().enumerate() {
        let trimmed = raw.trim();
        if trimmed.starts_with('#') || (trimmed.is_empty() && pending.is_empty()) {
            continue;
        }
        if pending.is_empty() {
            start = index + 1;
        }
        match trimmed.strip_suffix('\\') {
            Some(head) => {
                pending.push_str(head);
                pending.push(' ');
                continue;
            }
            None => pending.push_str(trimmed),
        }
        let line = std::mem::take(&mut pending);
        let (keyword, args) = line.split_once(char::is_whitespace).unwrap_or((&line, ""));
        let instruction = Instruction {
            line: start,
            keyword: keyword.to_ascii_uppercase(),
            args: args.trim().to_string(),
        };
        if instruction.keyword == "FROM" {
            let words: Vec<&str> = instruction.args.split_whitespace().collect();
            let name = match words.as_slice() {
                [.., as_word, name] if as_word.eq_ignore_ascii_case("as") => {
                    Some(name.to_ascii_lowercase())
                }
                _ => None,
            };
            stages.push(Stage {
                name,
                instructions: vec![instruction],
            });
        } else if let Some(stage) = stages.last_mut() {
            stage.instructions.push(instruction);
        } else {
            preamble.push(instruction);
        }
    }
    assert!(
        pending.is_empty(),
        "the Dockerfile ends inside a continuation"
    );
    (preamble, stages)
}

/// A COPY/ADD's `--flag=value` options, sources and destination (shell form).
pub fn copy_parts(args: &str) -> (BTreeMap<String, String>, Vec<String>, String) {
    let mut flags = BTreeMap::new();
    let mut words = Vec::new();
    for word in args.split_whitespace() {
        match word.strip_prefix("--") {
            Some(flag) if words.is_empty() => {
                let (k, v) = flag.split_once('=').unwrap_or((flag, ""));
                flags.insert(k.to_string(), v.to_string());
            }
            _ => words.push(word.to_string()),
        }
    }
    let dest = words.pop().expect("COPY without a destination");
    (flags, words, dest)
}

pub fn json_form(args: &str) -> Vec<String> {
    let value: Value = serde_json::from_str(args)
        .unwrap_or_else(|e| panic!("{args} is not the JSON (exec) form: {e}"));
    value
        .as_array()
        .expect("exec form is an array")
        .iter()
        .map(|v| v.as_str().expect("exec form holds strings").to_string())
        .collect()
}

/// The `--bin` names of a `cargo build` command line.
pub fn cargo_build_bins(run: &str) -> Option<Vec<String>> {
    if !run.contains("cargo build") {
        return None;
    }
    let words: Vec<&str> = run.split_whitespace().collect();
    let mut bins = Vec::new();
    for (i, word) in words.iter().enumerate() {
        if let Some(name) = word.strip_prefix("--bin=") {
            bins.push(name.to_string());
        } else if *word == "--bin" {
            bins.push(words.get(i + 1).expect("--bin without a name").to_string());
        }
    }
    Some(bins)
}

pub fn normalize(path: &str) -> String {
    path.trim_start_matches("./")
        .trim_end_matches('/')
        .to_string()
}
