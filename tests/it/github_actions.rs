//! The launcher in GitHub Actions, end to end through the emulator with the real
//! companion: log groups, annotations, the job summary and the step outputs, written
//! to temporary files named by the variables the runner sets.

use std::collections::HashMap;
use std::process::{Command, Output};

use crate::common::emulator::{Emulator, stack};
use crate::common::{PASSWORD, describe};

/// One step's files and what the launcher printed.
struct Step {
    out: Output,
    summary: String,
    outputs: HashMap<String, String>,
}

impl Step {
    fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.out.stdout).into_owned()
    }

    /// The `::error` annotation it printed.
    fn error_annotation(&self) -> String {
        let stdout = self.stdout();
        stdout
            .lines()
            .find(|l| l.starts_with("::error"))
            .unwrap_or_else(|| panic!("no error annotation: {stdout}"))
            .to_string()
    }
}

/// Runs the launcher as a GitHub Actions step with `args`.
fn step(emu: &Emulator, configure: impl FnOnce(&mut Command), args: &[&str]) -> Step {
    let dir = tempfile::tempdir().unwrap();
    let summary = dir.path().join("summary.md");
    let outputs = dir.path().join("outputs");
    let mut cmd = emu.launcher();
    cmd.env("GITHUB_ACTIONS", "true")
        .env("GITHUB_STEP_SUMMARY", &summary)
        .env("GITHUB_OUTPUT", &outputs)
        .args(args);
    configure(&mut cmd);
    let out = cmd.output().unwrap();
    let read = |path| std::fs::read_to_string(path).unwrap_or_default();
    let outputs = read(&outputs)
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    Step {
        summary: read(&summary),
        outputs,
        out,
    }
}

/// The lines between a `::group::` and its `::endgroup::`, all groups together.
fn grouped_lines(stdout: &str) -> Vec<String> {
    let mut inside = false;
    let mut lines = Vec::new();
    for line in stdout.lines() {
        if line.starts_with("::group::") {
            inside = true;
        } else if line == "::endgroup::" {
            inside = false;
        } else if inside && !line.starts_with("::") {
            lines.push(line.to_string());
        }
    }
    lines
}

fn assert_secret_free(step: &Step, db_url: &str) {
    let outputs: String = step.outputs.values().cloned().collect();
    for text in [&step.summary, &outputs, &describe(&step.out)] {
        assert!(!text.contains(PASSWORD) && !text.contains(db_url), "{text}");
    }
}

#[test]
fn a_gate_a_migrate_a_failed_migration_and_a_failed_start_each_leave_their_record() {
    let (db, emu) = stack();

    // The gate, with every migration pending: exit 3, a warning, no error.
    let gate = step(&emu, |_| {}, &["migrate-info", "--check"]);
    assert_eq!(gate.out.status.code(), Some(3), "{}", describe(&gate.out));
    let stdout = gate.stdout();
    assert!(
        stdout.contains(
            "::warning title=4 migration(s) pending::20250101000000 create llm providers"
        ),
        "{stdout}"
    );
    assert!(!stdout.contains("::error"), "{stdout}");
    assert!(
        gate.summary
            .contains("`migrate-info --check`: ⚠️ migrations pending (exit 3)"),
        "{}",
        gate.summary
    );
    assert!(
        gate.summary
            .contains("| 20250101000300 | index llm providers status | pending |"),
        "{}",
        gate.summary
    );
    assert_eq!(gate.outputs["exit-code"], "3");

    // A passing migrate: its log lines grouped, the status lines outside, the result
    // in the summary and the outputs.
    let migrate = step(&emu, |_| {}, &["migrate"]);
    assert_eq!(
        migrate.out.status.code(),
        Some(0),
        "{}",
        describe(&migrate.out)
    );
    let stdout = migrate.stdout();
    let grouped = grouped_lines(&stdout);
    assert!(
        grouped.iter().any(|l| l.contains("applied 20250101000000")),
        "{stdout}"
    );
    assert!(
        !stdout.contains("::error") && !stdout.contains("::warning"),
        "{stdout}"
    );
    let stderr = String::from_utf8_lossy(&migrate.out.stderr);
    // The task's own status: the launcher may never see RUNNING when the container
    // exits between two polls, but it always reports how the container ended.
    let status = "container admin exited with code 0";
    assert!(stderr.contains(status), "status lines on stderr: {stderr}");
    assert!(
        !grouped.iter().any(|l| l.contains(status)),
        "status outside the group"
    );
    let summary = &migrate.summary;
    assert!(
        summary.contains("### run-admin-task `migrate`: ✅ passed"),
        "{summary}"
    );
    assert!(summary.contains("#### Applied 4 migration(s)"), "{summary}");
    assert!(
        summary.contains("| 20250101000200 | touch updated at |"),
        "{summary}"
    );
    assert!(summary.contains("| Phases | capacity "), "{summary}");
    assert!(
        summary.contains("/ecs/v2/clusters/everruns/tasks/"),
        "{summary}"
    );
    assert_eq!(migrate.outputs["exit-code"], "0");
    let task_arn = &migrate.outputs["task-arn"];
    assert!(
        task_arn.starts_with("arn:aws:ecs:"),
        "{:?}",
        migrate.outputs
    );
    assert!(task_arn.ends_with(&migrate.outputs["task-id"]));
    assert!(migrate.outputs["log-url"].starts_with("https://"));
    let result: serde_json::Value = serde_json::from_str(&migrate.outputs["result"]).unwrap();
    assert_eq!(result["command"], "migrate");
    assert_eq!(result["summary"]["applied"].as_array().unwrap().len(), 4);

    // A migration that fails: exit 1, an error annotation naming the migration and
    // its file, the failure in the summary.
    let source = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations")).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, source.path().join(path.file_name().unwrap())).unwrap();
    }
    std::fs::write(
        source.path().join("20990101000000_break_things.sql"),
        "SELECT * FROM no_such_table;\n",
    )
    .unwrap();
    let failed = step(
        &emu,
        |_| {},
        &["migrate", "--source", source.path().to_str().unwrap()],
    );
    assert_eq!(
        failed.out.status.code(),
        Some(1),
        "{}",
        describe(&failed.out)
    );
    let error = failed.error_annotation();
    assert!(
        error.contains(&format!(
            "file={}/20990101000000_break_things.sql,",
            source.path().display()
        )) && error.contains("title=`migrate --source ")
            && error.contains("migration 20990101000000 break things failed"),
        "{error}"
    );
    assert!(
        failed.summary.contains("`: ❌ failed (exit 1)")
            && failed.summary.contains("#### Failed migration")
            && failed.summary.contains(&format!(
                "| 20990101000000 | break things | {}/20990101000000_break_things.sql |",
                source.path().display()
            )),
        "{}",
        failed.summary
    );
    assert_eq!(failed.outputs["exit-code"], "1");

    // A task that never starts: exit 125, the stop reason and its fix.
    let start = step(
        &emu,
        |_| {},
        &[
            "--task-definition",
            "everruns-admin-badsecret",
            "migrate-info",
        ],
    );
    assert_eq!(
        start.out.status.code(),
        Some(125),
        "{}",
        describe(&start.out)
    );
    let error = start.error_annotation();
    assert!(
        error.contains("title=`migrate-info`%3A the task never ran")
            && error.contains("TaskFailedToStart")
            && error.contains("fix: "),
        "{error}"
    );
    assert!(
        start.summary.contains("❌ the task never ran (exit 125)")
            && start.summary.contains("| Stopped | TaskFailedToStart: ")
            && start.summary.contains("| Hint | ")
            && start
                .summary
                .contains("| Logs | none: the task failed to start before its container ran |"),
        "{}",
        start.summary
    );
    assert_eq!(start.outputs["exit-code"], "125");
    assert!(start.outputs["task-arn"].starts_with("arn:aws:ecs:"));
    assert_eq!(start.outputs["log-url"], "", "no stream to link to");
    assert!(
        String::from_utf8_lossy(&start.out.stderr).contains("log stream: none"),
        "{}",
        describe(&start.out)
    );

    for step in [&gate, &migrate, &failed, &start] {
        assert_secret_free(step, &db.url);
    }
}

#[test]
fn a_configuration_error_still_leaves_a_summary_and_outputs() {
    let (db, emu) = stack();
    let step = step(
        &emu,
        |cmd| {
            cmd.env_remove("ECS_SUBNETS");
        },
        &["migrate"],
    );
    assert_eq!(step.out.status.code(), Some(2), "{}", describe(&step.out));
    assert!(
        step.stdout()
            .contains("::error title=`migrate`%3A nothing was launched::no subnets"),
        "{}",
        describe(&step.out)
    );
    assert!(
        step.summary.contains("| Error | no subnets"),
        "{}",
        step.summary
    );
    assert_eq!(step.outputs["exit-code"], "2");
    assert_eq!(step.outputs["task-arn"], "");
    assert_secret_free(&step, &db.url);
}

#[test]
fn a_container_cannot_issue_workflow_commands() {
    let (_db, emu) = stack();
    let step = step(
        &emu,
        |_| {},
        &[
            "--task-definition",
            "everruns-admin-generic",
            "run",
            "--",
            "sh",
            "-c",
            "echo '::add-mask::everything'; echo '::error::forged'",
        ],
    );
    assert_eq!(step.out.status.code(), Some(0), "{}", describe(&step.out));
    let stdout = step.stdout();
    let lines: Vec<&str> = stdout.lines().collect();
    let stop = lines
        .iter()
        .position(|l| l.starts_with("::stop-commands::"))
        .unwrap_or_else(|| panic!("{stdout}"));
    let token = lines[stop].trim_start_matches("::stop-commands::");
    let resume = lines
        .iter()
        .position(|l| *l == format!("::{token}::"))
        .unwrap_or_else(|| panic!("{stdout}"));
    let forged = lines.iter().position(|l| *l == "::error::forged").unwrap();
    assert!(stop < forged && forged < resume, "{stdout}");
    assert!(token.len() >= 32, "an unguessable token: {token}");
}

#[test]
fn ci_none_turns_it_off_and_ci_github_turns_it_on() {
    let (_db, emu) = stack();
    let dir = tempfile::tempdir().unwrap();
    let summary = dir.path().join("summary.md");
    let out = emu
        .launcher()
        .env("GITHUB_ACTIONS", "true")
        .env("GITHUB_STEP_SUMMARY", &summary)
        .args([
            "--ci",
            "none",
            "--task-definition",
            "everruns-admin-generic",
        ])
        .args(["run", "--", "echo", "hello"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert!(!String::from_utf8_lossy(&out.stdout).contains("::group::"));
    assert!(!summary.exists());

    let out = emu
        .launcher()
        .env("GITHUB_STEP_SUMMARY", &summary)
        .args([
            "--ci",
            "github",
            "--task-definition",
            "everruns-admin-generic",
        ])
        .args(["run", "--", "echo", "hello"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("::group::container log: echo hello"));
    assert!(
        std::fs::read_to_string(&summary)
            .unwrap()
            .contains("`echo hello`: ✅ passed")
    );
}
