//! Both command lines document themselves: every command's help has an example, the
//! top-level help names the environment and the exit codes, and completions are
//! generated for the common shells, even into a pipe closed early.

use std::io::Read;
use std::process::{Command, Stdio};

const LAUNCHER: &str = env!("CARGO_BIN_EXE_run-admin-task");
const COMPANION: &str = env!("CARGO_BIN_EXE_everruns-admin");

fn stdout_of(bin: &str, args: &[&str]) -> String {
    let out = Command::new(bin).args(args).output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{bin} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The subcommand names listed under "Commands:" in a top-level help.
fn commands(help: &str) -> Vec<String> {
    help.lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        // Wrapped descriptions are indented further than names.
        .filter(|l| !l.starts_with("   "))
        .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
        .filter(|c| c != "help")
        .collect()
}

#[test]
fn every_command_has_an_example() {
    for bin in [LAUNCHER, COMPANION] {
        let help = stdout_of(bin, &["--help"]);
        let names = commands(&help);
        assert!(names.len() >= 5, "{bin}: {names:?}");
        for name in names {
            let text = stdout_of(bin, &["help", &name]);
            assert!(
                text.contains("Example"),
                "{bin} help {name} has no example:\n{text}"
            );
        }
    }
}

#[test]
fn top_level_help_names_environment_and_exit_codes() {
    let launcher = stdout_of(LAUNCHER, &["--help"]);
    for needle in [
        "ECS_CLUSTER",
        "ECS_SUBNETS",
        "AWS_REGION",
        "124",
        "125",
        "130",
    ] {
        assert!(
            launcher.contains(needle),
            "run-admin-task --help lacks {needle}"
        );
    }
    let companion = stdout_of(COMPANION, &["--help"]);
    for needle in [
        "DATABASE_URL",
        "SECRETS_ENCRYPTION_KEY_PREVIOUS",
        "RUST_LOG",
        "Exit codes",
        "migrate-info --check",
    ] {
        assert!(
            companion.contains(needle),
            "everruns-admin --help lacks {needle}"
        );
    }
}

#[test]
fn completions_for_common_shells_survive_a_closed_pipe() {
    for bin in [LAUNCHER, COMPANION] {
        let name = std::path::Path::new(bin)
            .file_name()
            .unwrap()
            .to_str()
            .unwrap();
        for shell in ["bash", "zsh", "fish"] {
            let script = stdout_of(bin, &["completions", shell]);
            assert!(
                script.contains(name) && script.len() > 500,
                "{name} {shell}"
            );
        }
        // `| head -c 10`: the reader goes away after a few bytes.
        let mut child = Command::new(bin)
            .args(["completions", "bash"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut first = [0u8; 10];
        child.stdout.take().unwrap().read_exact(&mut first).unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            !String::from_utf8_lossy(&out.stderr).contains("panicked"),
            "{name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let out = Command::new(LAUNCHER)
        .args(["completions", "tcsh"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

/// What bash offers for `line` (ending where TAB is pressed), with the script the binary
/// prints sourced and its `complete -F` function called as bash calls it.
fn bash_completes(bin: &str, line: &str) -> Vec<String> {
    let script = stdout_of(bin, &["completions", "bash"]);
    let function = script
        .lines()
        .find_map(|l| l.trim().strip_prefix("complete -F "))
        .and_then(|rest| rest.split_whitespace().next())
        .expect("a complete -F line")
        .to_owned();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("completion.bash");
    std::fs::write(&path, script).unwrap();
    let driver = format!(
        r#"source "$1"
read -ra COMP_WORDS <<< "$2"
[[ "$2" == *" " ]] && COMP_WORDS+=("")
COMP_CWORD=$(( ${{#COMP_WORDS[@]}} - 1 ))
COMP_LINE="$2"; COMP_POINT=${{#COMP_LINE}}
prev=""; (( COMP_CWORD > 0 )) && prev="${{COMP_WORDS[COMP_CWORD-1]}}"
{function} "${{COMP_WORDS[0]}}" "${{COMP_WORDS[COMP_CWORD]}}" "$prev"
printf '%s\n' "${{COMPREPLY[@]}}""#
    );
    let out = Command::new("bash")
        .args(["-c", &driver, "bash"])
        .arg(&path)
        .arg(line)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect()
}

#[test]
fn bash_completes_past_the_first_word_in_both_binaries() {
    let keys = bash_completes(LAUNCHER, "run-admin-task keys ");
    for sub in ["generate", "rotate", "retire", "status"] {
        assert!(keys.contains(&sub.to_owned()), "keys <TAB>: {keys:?}");
    }
    let doctor = bash_completes(LAUNCHER, "run-admin-task doctor --");
    assert!(
        doctor.contains(&"--in-vpc".to_owned()),
        "doctor --<TAB>: {doctor:?}"
    );
    let check = bash_completes(COMPANION, "everruns-admin migrate-info --ch");
    assert_eq!(check, ["--check"], "migrate-info --ch<TAB>");
}

/// Runs `cmd` with stdout and stderr into a pipe whose reader is already gone, as in
/// `cmd 2>&1 | head -0`: every write fails with EPIPE.
fn into_a_closed_pipe(cmd: &mut Command) -> std::process::Output {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    cmd.stdout(writer.try_clone().unwrap())
        .stderr(writer)
        .output()
        .unwrap()
}

#[test]
fn every_command_keeps_its_exit_code_when_its_reader_is_gone() {
    let (db, emu) = crate::common::emulator::stack();
    let arn = String::from_utf8(
        emu.launcher()
            .args(["--no-wait", "migrate-info"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap()
    .trim()
    .to_string();
    assert!(arn.starts_with("arn:aws:ecs:"), "{arn}");
    let launcher_runs: Vec<Vec<&str>> = vec![
        vec!["help"],
        vec!["--help"],
        vec!["list"],
        vec!["status", &arn],
        vec!["--output", "json", "status", &arn],
        vec!["keys", "status"],
        vec!["--print-request", "migrate"],
        vec!["--output", "json", "migrate-info"],
        vec!["--config", "/nonexistent/config.toml", "migrate"],
    ];
    for args in launcher_runs {
        let expected = emu.launcher().args(&args).output().unwrap();
        let out = into_a_closed_pipe(emu.launcher().args(&args));
        assert_eq!(
            out.status.code(),
            expected.status.code(),
            "run-admin-task {args:?} into a closed pipe; with a reader: {}",
            crate::common::describe(&expected)
        );
        assert_ne!(out.status.code(), Some(101));
    }
    for args in [
        vec!["--help"],
        vec!["lint"],
        vec!["migrate-info"],
        vec!["--output", "human", "migrate-info"],
    ] {
        let expected = crate::common::companion(&db.url)
            .args(&args)
            .output()
            .unwrap();
        let out = into_a_closed_pipe(crate::common::companion(&db.url).args(&args));
        assert_eq!(
            out.status.code(),
            expected.status.code(),
            "everruns-admin {args:?} into a closed pipe; with a reader: {}",
            crate::common::describe(&expected)
        );
    }
}
