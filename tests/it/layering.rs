//! The crate's layering, read from its source: which module refers to which (through
//! `use` and `crate::`/`super::` paths, test modules left out). Dependencies point one
//! way: no module reaches itself again through others, the launcher never refers to the
//! companion (only to what they share in `contract`), and `contract` refers to nothing
//! else in the crate. Module names are unique and files small enough to read.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::Path;

use crate::common::rust_source::{code_only, is_ident};

/// Each module of `src/` (bins left out), by path (`launcher::job::follow`), and the
/// modules its code refers to.
fn module_graph() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut sources = BTreeMap::new();
    collect(&src, &src, &mut sources);
    let modules: BTreeSet<String> = sources.keys().cloned().collect();
    sources
        .iter()
        .map(|(module, code)| {
            let here: Vec<&str> = module.split("::").filter(|s| !s.is_empty()).collect();
            let refers = paths_in(code)
                .into_iter()
                .filter_map(|path| resolve(&here, &path, &modules))
                .filter(|target| target != module)
                .collect();
            (module.clone(), refers)
        })
        .collect()
}

fn collect(root: &Path, dir: &Path, out: &mut BTreeMap<String, String>) {
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            if path != root.join("bin") {
                collect(root, &path, out);
            }
            continue;
        }
        if path.extension().is_none_or(|e| e != "rs") {
            continue;
        }
        let relative = path.strip_prefix(root).unwrap().with_extension("");
        let mut parts: Vec<String> = relative
            .iter()
            .map(|p| p.to_string_lossy().into_owned())
            .collect();
        if matches!(parts.last().map(String::as_str), Some("mod" | "lib")) {
            parts.pop();
        }
        let code = without_test_modules(&code_only(&fs::read_to_string(&path).unwrap()));
        out.insert(parts.join("::"), code);
    }
}

/// The code without its `#[cfg(test)] mod … { … }` blocks: tests may reach anything.
fn without_test_modules(code: &str) -> String {
    let mut code = code.to_owned();
    while let Some(at) = code.find("#[cfg(test)]") {
        let after = &code[at..];
        let Some(open) = after.find('{') else { break };
        let is_module = after[..open].contains("mod ");
        if !is_module {
            code.replace_range(at..at + "#[cfg(test)]".len(), "");
            continue;
        }
        let mut depth = 0;
        let mut end = code.len();
        for (i, c) in after.char_indices().skip(open) {
            match c {
                '{' => depth += 1,
                '}' => {
                    depth -= 1;
                    if depth == 0 {
                        end = at + i + 1;
                        break;
                    }
                }
                _ => {}
            }
        }
        code.replace_range(at..end, "");
    }
    code
}

/// Every path of a `use` in `code`, each tree expanded (`use crate::{a, b::c}` is
/// `crate::a` and `crate::b::c`), and every other path starting at `crate`, `super` or
/// `self`. A `use` path may start at a child module (`use child::item`): [`resolve`]
/// tells those from other crates.
fn paths_in(code: &str) -> Vec<Vec<String>> {
    let mut paths = Vec::new();
    let bytes: Vec<char> = code.chars().collect();
    let mut i = 0;
    while i < bytes.len() {
        let starts_word = i == 0 || !is_ident(bytes[i - 1]) && bytes[i - 1] != ':';
        if starts_word && code_at(&bytes, i, "use ") {
            let end = (i..bytes.len())
                .find(|&j| bytes[j] == ';')
                .unwrap_or(bytes.len());
            expand(&[], &compact(&bytes[i + 4..end]), &mut paths);
            i = end;
            continue;
        }
        if starts_word
            && ["crate::", "super::", "self::"]
                .iter()
                .any(|p| code_at(&bytes, i, p))
        {
            let mut end = i;
            while end < bytes.len() && (is_ident(bytes[end]) || bytes[end] == ':') {
                end += 1;
            }
            let path: String = bytes[i..end].iter().collect();
            paths.push(
                path.split("::")
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned)
                    .collect(),
            );
            i = end;
            continue;
        }
        i += 1;
    }
    paths
}

/// A use tree with whitespace only where it separates words (`d as e`).
fn compact(tree: &[char]) -> String {
    let words: String = tree.iter().collect();
    let spaced = words.split_whitespace().collect::<Vec<_>>().join(" ");
    let mut out = String::new();
    for (i, c) in spaced.char_indices() {
        let punct = |c: Option<char>| c.is_some_and(|c| ":{},".contains(c));
        if c == ' ' && (punct(spaced[..i].chars().last()) || punct(spaced[i + 1..].chars().next()))
        {
            continue;
        }
        out.push(c);
    }
    out
}

fn code_at(chars: &[char], at: usize, text: &str) -> bool {
    text.chars()
        .enumerate()
        .all(|(k, c)| chars.get(at + k) == Some(&c))
}

/// Expands one use tree (whitespace removed) under `prefix`.
fn expand(prefix: &[String], tree: &str, out: &mut Vec<Vec<String>>) {
    if let Some(inner) = tree.strip_prefix('{').and_then(|t| t.strip_suffix('}')) {
        let mut depth = 0;
        let mut start = 0;
        for (i, c) in inner.char_indices() {
            match c {
                '{' => depth += 1,
                '}' => depth -= 1,
                ',' if depth == 0 => {
                    expand(prefix, &inner[start..i], out);
                    start = i + 1;
                }
                _ => {}
            }
        }
        expand(prefix, &inner[start..], out);
        return;
    }
    match tree.split_once("::") {
        Some((head, rest)) => {
            let mut next = prefix.to_vec();
            next.push(head.to_owned());
            expand(&next, rest, out);
        }
        None if !tree.is_empty() => {
            let mut path = prefix.to_vec();
            path.push(tree.split(" as ").next().unwrap_or(tree).to_owned());
            out.push(path);
        }
        None => {}
    }
}

/// The module a path names or names an item of: the longest prefix that is a module.
fn resolve(here: &[&str], path: &[String], modules: &BTreeSet<String>) -> Option<String> {
    let mut absolute: Vec<String> = Vec::new();
    let mut rest = path;
    match path.first().map(String::as_str) {
        Some("crate") => rest = &path[1..],
        Some("super" | "self") => {
            absolute = here.iter().map(|s| s.to_string()).collect();
            while let Some(first) = rest.first() {
                match first.as_str() {
                    "super" => {
                        absolute.pop();
                    }
                    "self" => {}
                    _ => break,
                }
                rest = &rest[1..];
            }
        }
        // `use child::item` in a module with that child; else another crate's path.
        Some(first) => {
            let child = here
                .iter()
                .copied()
                .chain([first])
                .collect::<Vec<_>>()
                .join("::");
            if !modules.contains(&child) {
                return None;
            }
            absolute = here.iter().map(|s| s.to_string()).collect();
        }
        None => return None,
    }
    absolute.extend(rest.iter().cloned());
    (1..=absolute.len())
        .rev()
        .map(|k| absolute[..k].join("::"))
        .find(|candidate| modules.contains(candidate))
}

/// A cycle of the graph, as the modules on it, if there is one.
fn a_cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        done: &mut BTreeSet<String>,
        path: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|p| p == node) {
            let mut cycle = path[at..].to_vec();
            cycle.push(node.to_owned());
            return Some(cycle);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_owned());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(cycle) = visit(next, graph, done, path) {
                return Some(cycle);
            }
        }
        path.pop();
        done.insert(node.to_owned());
        None
    }
    let mut done = BTreeSet::new();
    graph
        .keys()
        .find_map(|node| visit(node, graph, &mut done, &mut Vec::new()))
}

#[test]
fn no_module_reaches_itself_through_others() {
    let graph = module_graph();
    // The reader must see the crate's known edges, or it is the reader that broke.
    for (from, to) in [
        ("launcher::job::single", "launcher::job::follow"),
        ("companion::dispatch", "contract::command_line"),
        ("launcher::commands::run", "contract::command_line"),
    ] {
        assert!(
            graph[from].contains(to),
            "{from} -> {to} not seen: {:?}",
            graph[from]
        );
    }
    if let Some(cycle) = a_cycle(&graph) {
        panic!("import cycle: {}", cycle.join(" -> "));
    }
}

#[test]
fn the_launcher_reads_the_companion_only_through_the_contract() {
    let graph = module_graph();
    for (module, refers) in &graph {
        if module.starts_with("launcher") {
            let companion: Vec<&String> = refers
                .iter()
                .filter(|r| r.starts_with("companion"))
                .collect();
            assert!(companion.is_empty(), "{module} refers to {companion:?}");
        }
        if module.starts_with("contract") {
            let outside: Vec<&String> = refers
                .iter()
                .filter(|r| !r.starts_with("contract"))
                .collect();
            assert!(
                outside.is_empty(),
                "{module} refers to {outside:?}: the contract depends on nothing else"
            );
        }
    }
}

#[test]
fn the_reader_finds_cycles_and_expands_use_trees() {
    let mut paths = Vec::new();
    expand(&[], "crate::{a,b::{c,d as e}}", &mut paths);
    assert_eq!(
        paths,
        [
            vec!["crate", "a"],
            vec!["crate", "b", "c"],
            vec!["crate", "b", "d"],
        ]
    );
    let graph: BTreeMap<String, BTreeSet<String>> =
        [("a", vec!["b"]), ("b", vec!["c"]), ("c", vec!["a"])]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.into_iter().map(str::to_owned).collect()))
            .collect();
    assert_eq!(a_cycle(&graph).unwrap(), ["a", "b", "c", "a"]);
    let modules: BTreeSet<String> = ["launcher", "launcher::job", "launcher::job::report"]
        .into_iter()
        .map(str::to_owned)
        .collect();
    let path: Vec<String> = ["super", "report", "TaskReport"]
        .map(str::to_owned)
        .to_vec();
    assert_eq!(
        resolve(&["launcher", "job", "launch"], &path, &modules).as_deref(),
        Some("launcher::job::report")
    );
    let child: Vec<String> = ["report", "TaskReport"].map(str::to_owned).to_vec();
    assert_eq!(
        resolve(&["launcher", "job"], &child, &modules).as_deref(),
        Some("launcher::job::report")
    );
    let other_crate: Vec<String> = ["tokio", "sync"].map(str::to_owned).to_vec();
    assert_eq!(resolve(&["launcher", "job"], &other_crate, &modules), None);
    let code = without_test_modules(
        "use crate::a;\n#[cfg(test)]\nmod tests {\n use crate::b; { }\n}\nuse crate::c;",
    );
    assert!(code.contains("crate::a") && code.contains("crate::c") && !code.contains("crate::b"));
}

#[test]
fn no_module_name_appears_twice() {
    let graph = module_graph();
    let mut seen: BTreeMap<&str, Vec<&String>> = BTreeMap::new();
    for module in graph.keys().filter(|m| !m.is_empty()) {
        seen.entry(module.rsplit("::").next().unwrap())
            .or_default()
            .push(module);
    }
    let twice: Vec<_> = seen.values().filter(|modules| modules.len() > 1).collect();
    assert!(twice.is_empty(), "one name, several modules: {twice:?}");
}

#[test]
fn no_source_file_is_over_600_lines_before_its_tests() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut long = Vec::new();
    let mut stack = vec![src];
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let text = fs::read_to_string(&path).unwrap();
                let lines = text
                    .lines()
                    .take_while(|l| !l.starts_with("#[cfg(test)]"))
                    .count();
                if lines > 600 {
                    long.push(format!("{} ({lines} lines)", path.display()));
                }
            }
        }
    }
    assert!(long.is_empty(), "split these: {long:?}");
}
