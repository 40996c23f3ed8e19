//! The README names what exists: every command line it shows parses with the real
//! command-line definitions, every flag it mentions is one of the binaries' (or of a
//! tool it names), and every environment variable it mentions is read somewhere.

use std::collections::BTreeSet;
use std::path::Path;

use clap::{CommandFactory, Parser};
use everruns_admin::contract::command_line::Cli as CompanionCli;
use everruns_admin::launcher::Cli as LauncherCli;
use everruns_admin::seam::launch_of;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn readme() -> String {
    std::fs::read_to_string(Path::new(ROOT).join("README.md")).unwrap()
}

/// Flags of tools other than the two binaries that the README shows, and why.
const OTHER_TOOLS_FLAGS: &[(&str, &str)] = &[
    ("--locked", "cargo"),
    ("--bench", "cargo"),
    ("--test", "cargo"),
    ("--bin", "cargo"),
    ("--git", "cargo install"),
    ("--rev", "cargo install"),
    ("--path", "cargo install"),
    ("--no-default-features", "cargo"),
    ("--build-arg", "docker build"),
    ("--keep", "examples/local/demo.sh (and shell --keep)"),
    ("--stop", "examples/local/demo.sh"),
    ("--chek", "the README's example of a typo"),
    ("--deny", "tests/emulator/stack.py"),
];

/// The command lines of the README: `$ run-admin-task ...` in examples, lines of `sh`
/// blocks and inline code that start with a binary's name, with leading `VAR=value`
/// assignments and anything after a pipe, redirection or comment left off. Lines with
/// an elision (`...`) are not whole commands. The flag says whether the line is inline
/// code, which may name a command without all its arguments (`run-admin-task keys`).
fn command_lines(text: &str) -> Vec<(String, bool)> {
    let mut lines = Vec::new();
    let mut in_block = false;
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            in_block = !in_block;
            continue;
        }
        let candidates: Vec<String> = if in_block {
            vec![line.trim().trim_start_matches("$ ").to_string()]
        } else {
            line.split('`')
                .skip(1)
                .step_by(2)
                .map(str::to_string)
                .collect()
        };
        for candidate in candidates {
            let words: Vec<&str> = candidate
                .split_whitespace()
                .skip_while(|w| w.contains('=') && !w.starts_with('-'))
                .collect();
            let command = words.join(" ");
            if (command.starts_with("run-admin-task ") || command.starts_with("everruns-admin "))
                && !command.contains("...")
                && !command.contains('[')
                && !command.contains('<')
            {
                lines.push((command, !in_block));
            }
        }
    }
    lines
}

/// Splits a shell command line into words: quotes kept together, `$VAR` and `$(...)`
/// words replaced by a placeholder, and the line cut at `|`, `>`, `;`, `&&` or `#`.
fn words(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut quote = None;
    let mut in_word = false;
    for c in line.chars() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), c) => word.push(c),
            (None, '\'' | '"') => {
                quote = Some(c);
                in_word = true;
            }
            (None, c) if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            (None, '|' | '>' | ';' | '#') if !in_word || c != '#' => break,
            (None, '&') => break,
            (None, c) => {
                word.push(c);
                in_word = true;
            }
        }
    }
    if in_word {
        words.push(word);
    }
    words
        .into_iter()
        .map(|w| if w.contains('$') { "x".to_string() } else { w })
        .collect()
}

#[test]
fn every_command_line_in_the_readme_parses() {
    let lines = command_lines(&readme());
    assert!(lines.len() > 30, "found only {lines:?}");
    let mut failures = Vec::new();
    for (line, inline) in &lines {
        let words = words(line);
        let parsed = if words[0] == "run-admin-task" {
            LauncherCli::try_parse_from(&words).and_then(|cli| launch_of(&cli.command).map(|_| ()))
        } else {
            CompanionCli::try_parse_from(&words).map(|_| ())
        };
        let Err(error) = parsed else { continue };
        use clap::error::ErrorKind::*;
        let fine = match error.kind() {
            // `--help` and `--version` print what they are asked for.
            DisplayHelp | DisplayVersion => true,
            MissingRequiredArgument
            | MissingSubcommand
            | DisplayHelpOnMissingArgumentOrSubcommand => *inline,
            _ => line.contains("--chek"),
        };
        if !fine {
            failures.push(format!(
                "{line}\n    {}",
                error.to_string().lines().next().unwrap_or("")
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "README command lines that do not parse:\n{}",
        failures.join("\n")
    );
}

/// Every long flag of a command and its subcommands, aliases included.
fn long_flags(command: &clap::Command, into: &mut BTreeSet<String>) {
    for arg in command.get_arguments() {
        for long in arg.get_long_and_visible_aliases().into_iter().flatten() {
            into.insert(format!("--{long}"));
        }
        for alias in arg.get_all_aliases().into_iter().flatten() {
            into.insert(format!("--{alias}"));
        }
    }
    for sub in command.get_subcommands() {
        long_flags(sub, into);
    }
}

#[test]
fn every_flag_the_readme_names_exists() {
    let mut known = BTreeSet::from(["--help".to_string(), "--version".to_string()]);
    long_flags(&LauncherCli::command(), &mut known);
    long_flags(&CompanionCli::command(), &mut known);
    known.extend(everruns_admin::seam::FLAGS.map(str::to_string));
    let demo = std::fs::read_to_string(Path::new(ROOT).join("examples/local/demo.sh")).unwrap();
    for (flag, tool) in OTHER_TOOLS_FLAGS {
        assert!(
            !known.contains(*flag) || *flag == "--keep",
            "{flag} is ours now"
        );
        if tool.contains("demo.sh") {
            assert!(demo.contains(flag), "demo.sh has no {flag}");
        }
    }
    let text = readme();
    let mut unknown = BTreeSet::new();
    for (at, _) in text.match_indices("--") {
        let flag: String = text[at..]
            .chars()
            .enumerate()
            .take_while(|(i, c)| {
                *i < 2 || c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-'
            })
            .map(|(_, c)| c)
            .collect();
        let flag = flag.trim_end_matches('-');
        if flag.len() > 2
            && text[..at]
                .chars()
                .last()
                .is_none_or(|c| !c.is_alphanumeric() && c != '-')
            && !known.contains(flag)
            && !OTHER_TOOLS_FLAGS.iter().any(|(f, _)| *f == flag)
        {
            unknown.insert(flag.to_string());
        }
    }
    assert!(
        unknown.is_empty(),
        "README names flags nothing has: {unknown:?}"
    );
}

/// Every text file of the project but the README, for what reads a variable.
fn project_text() -> String {
    let mut text = String::new();
    for dir in [
        "src",
        "benches",
        "tests",
        "admin-image",
        "examples",
        "task-definitions",
        ".ci",
    ] {
        let mut stack = vec![Path::new(ROOT).join(dir)];
        while let Some(path) = stack.pop() {
            if path.is_dir() {
                stack.extend(std::fs::read_dir(&path).unwrap().map(|e| e.unwrap().path()));
            } else if let Ok(content) = std::fs::read_to_string(&path) {
                text.push_str(&content);
            }
        }
    }
    text
}

#[test]
fn every_environment_variable_the_readme_names_is_read() {
    // Read by the AWS SDK for Rust itself, not by this project's code.
    const READ_BY_THE_SDK: &[&str] = &[
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_EC2_METADATA_DISABLED",
        "AWS_ENDPOINT_URL",
    ];
    let text = readme();
    let project = project_text();
    let own_prefixes = [
        "ECS_",
        "RUN_ADMIN_TASK_",
        "EVERRUNS_",
        "SECRETS_",
        "DATABASE_URL",
        "RUST_LOG",
        "GITHUB_",
        "AWS_",
    ];
    let mut unread = BTreeSet::new();
    let mut names = BTreeSet::new();
    for word in text.split(|c: char| !(c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')) {
        if word.len() > 4
            && own_prefixes.iter().any(|p| word.starts_with(p))
            && !word.ends_with('_')
        {
            names.insert(word.to_string());
        }
    }
    assert!(names.len() > 20, "{names:?}");
    for name in &names {
        if READ_BY_THE_SDK.contains(&name.as_str()) {
            continue;
        }
        if !project.contains(&format!("\"{name}\""))
            && !project.contains(&format!("${{{name}}}"))
            && !project.contains(&format!("${name}"))
        {
            unread.insert(name.clone());
        }
    }
    assert!(
        unread.is_empty(),
        "README names variables nothing reads: {unread:?}"
    );
}
