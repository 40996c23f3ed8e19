//! End to end: the real launcher drives the emulated ECS, whose agent runs the real
//! companion against a real PostgreSQL, with the output carried by the emulated
//! CloudWatch Logs stream.

use std::io::{BufRead, BufReader};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::common::both_streams;
use crate::common::emulator::{Emulator, launcher_at, stack};
use crate::common::{KEK_V1, KEK_V2};
use crate::common::{TestDatabase, assert_ended, describe, psql};
use everruns_admin::envelope;
use everruns_admin::keyring::{Key, Keyring};
use serde_json::Value;

const GENERIC: &str = "everruns-admin-generic";

fn run(cmd: &mut Command) -> Output {
    cmd.output().expect("run the launcher")
}

/// Reads `stream` line by line on a thread, returning once a line containing `needle`
/// has arrived (within 30 s); the thread's result is every line.
fn read_until_line(
    stream: impl std::io::Read + Send + 'static,
    needle: &'static str,
) -> std::thread::JoinHandle<Vec<String>> {
    let (tx, rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut lines = Vec::new();
        for line in BufReader::new(stream).lines().map_while(Result::ok) {
            if line.contains(needle) {
                let _ = tx.send(());
            }
            lines.push(line);
        }
        lines
    });
    rx.recv_timeout(Duration::from_secs(30))
        .unwrap_or_else(|_| panic!("no line with {needle:?} within 30 s"));
    reader
}

/// The single JSON document `--output json` prints on stdout.
fn report(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("stdout is not one JSON document ({e}): {}", describe(out)))
}

fn assert_no_secrets(outputs: &[&Output], db: &TestDatabase, plaintexts: &[String]) {
    let mut forbidden: Vec<String> = vec![crate::common::PASSWORD.to_owned(), db.url.clone()];
    for key in [KEK_V1, KEK_V2] {
        let material = key.split_once(':').unwrap().1;
        forbidden.push(material.to_owned());
        forbidden.push(material.trim_end_matches('=').to_owned());
    }
    forbidden.extend(plaintexts.iter().cloned());
    for out in outputs {
        let all = both_streams(out);
        for secret in &forbidden {
            assert!(
                !all.contains(secret.as_str()),
                "a secret reached the output: {}",
                describe(out)
            );
        }
    }
}

/// Rows under the previous key in both encrypted tables; returns their plaintexts.
fn seed_under_previous_key(db: &TestDatabase) -> Vec<String> {
    let old = Key::parse(KEK_V1).unwrap();
    let mut plaintexts = Vec::new();
    for i in 0..25 {
        let secret = format!("sk-e2e-secret-{i:03}");
        let payload = envelope::encrypt(secret.as_bytes(), &old).unwrap();
        let hex: String = payload.iter().map(|b| format!("{b:02x}")).collect();
        let (table, columns) = if i % 2 == 0 {
            (
                "llm_providers",
                format!(
                    "(name, provider_type, api_key_encrypted, api_key_set) VALUES ('p{i}', 'openai', '\\x{hex}', TRUE)"
                ),
            )
        } else {
            (
                "mcp_servers",
                format!(
                    "(name, url, auth_token_encrypted) VALUES ('m{i}', 'http://m{i}', '\\x{hex}')"
                ),
            )
        };
        psql(&db.url, &format!("INSERT INTO {table} {columns}"));
        plaintexts.push(secret);
    }
    psql(
        &db.url,
        "INSERT INTO llm_providers (name, provider_type) VALUES ('no-key', 'llmsim')",
    );
    plaintexts
}

fn key_ids_in(db: &TestDatabase) -> Vec<String> {
    psql(
        &db.url,
        "SELECT convert_from(api_key_encrypted, 'UTF8')::json->>'key_id' FROM llm_providers WHERE api_key_encrypted IS NOT NULL \
         UNION ALL SELECT convert_from(auth_token_encrypted, 'UTF8')::json->>'key_id' FROM mcp_servers",
    )
    .lines()
    .map(str::to_owned)
    .collect()
}

#[test]
fn companion_commands_run_through_the_launcher() {
    let (db, emu) = stack();

    let info = run(emu.launcher().args(["migrate-info", "--check"]));
    assert_eq!(
        info.status.code(),
        Some(3),
        "exit 3 passed through: {}",
        describe(&info)
    );
    assert!(
        String::from_utf8_lossy(&info.stdout).contains("pending: run `run-admin-task migrate`"),
        "the advice names the launcher's command: {}",
        describe(&info)
    );
    // `status` of that task says what its launch said: exit 3 and the companion's result.
    let arn = String::from_utf8_lossy(&info.stderr)
        .split_whitespace()
        .find(|w| w.starts_with("arn:aws:ecs:"))
        .unwrap()
        .to_string();
    let status = task_status(&emu, &arn);
    assert_eq!(status["exit_code"], 3, "{status}");
    assert_eq!(status["result"]["command"], "migrate-info", "{status}");
    assert_eq!(status["result"]["exit_code"], 3, "{status}");

    let migrate = run(emu.launcher().args(["--output", "json", "migrate"]));
    assert_eq!(migrate.status.code(), Some(0), "{}", describe(&migrate));
    let doc = report(&migrate);
    assert_eq!(doc["exit_code"], 0, "{doc}");
    assert_eq!(doc["result"]["command"], "migrate", "{doc}");
    assert_eq!(
        doc["result"]["summary"]["applied"].as_array().map(Vec::len),
        Some(4),
        "{doc}"
    );
    assert!(
        doc["log_stream"]
            .as_str()
            .unwrap()
            .starts_with("admin/admin/"),
        "{doc}"
    );

    let gate = run(emu.launcher().args(["migrate-info", "--check"]));
    assert_eq!(gate.status.code(), Some(0), "{}", describe(&gate));

    let plaintexts = seed_under_previous_key(&db);
    let dry = run(emu
        .launcher()
        .args(["--output", "json", "reencrypt", "--dry-run"]));
    assert_eq!(dry.status.code(), Some(0), "{}", describe(&dry));
    assert!(
        key_ids_in(&db).iter().all(|id| id == "kek-v1"),
        "a dry run writes nothing"
    );

    let reencrypt = run(emu.launcher().args(["reencrypt", "--batch-size", "7"]));
    assert_eq!(reencrypt.status.code(), Some(0), "{}", describe(&reencrypt));
    let ids = key_ids_in(&db);
    assert_eq!(ids.len(), 25);
    assert!(ids.iter().all(|id| id == "kek-v2"), "{ids:?}");
    let keyring = Keyring::parse(KEK_V2, None).unwrap();
    let values = psql(
        &db.url,
        "SELECT encode(api_key_encrypted, 'hex') FROM llm_providers WHERE api_key_encrypted IS NOT NULL ORDER BY name",
    );
    for value in values.lines() {
        let bytes: Vec<u8> = (0..value.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&value[i..i + 2], 16).unwrap())
            .collect();
        let plain = envelope::decrypt(&bytes, &keyring).unwrap();
        assert!(plaintexts.contains(&String::from_utf8(plain.to_vec()).unwrap()));
    }

    assert_no_secrets(
        &[&info, &migrate, &gate, &dry, &reencrypt],
        &db,
        &plaintexts,
    );
}

#[test]
fn the_named_containers_exit_code_is_the_launchers() {
    let (_db, emu) = stack();
    for code in ["0", "3", "42"] {
        let out = run(emu
            .launcher()
            .args(["--task-definition", GENERIC, "run", "--", "sh", "-c"])
            .arg(format!("echo bye; exit {code}")));
        assert_eq!(
            out.status.code(),
            Some(code.parse().unwrap()),
            "{}",
            describe(&out)
        );
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("bye"),
            "{}",
            describe(&out)
        );
    }
}

#[test]
fn twenty_thousand_lines_arrive_once_and_in_order() {
    let (_db, emu) = stack();
    let out = run(emu.launcher().args([
        "--task-definition",
        GENERIC,
        "run",
        "--",
        "seq",
        "-f",
        "line %g",
        "1",
        "20000",
    ]));
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = stdout.lines().filter(|l| l.starts_with("line ")).collect();
    let expected: Vec<String> = (1..=20000).map(|i| format!("line {i}")).collect();
    assert_eq!(lines.len(), expected.len(), "every line once");
    assert!(lines.iter().zip(&expected).all(|(a, b)| a == b), "in order");
}

#[test]
fn arguments_reach_the_container_verbatim() {
    let (_db, emu) = stack();
    let out = run(emu.launcher().args([
        "--task-definition",
        GENERIC,
        "run",
        "--",
        "printf",
        "<%s>\\n",
        "two  spaces",
        "*",
        "$HOME",
        "a'b\"c",
    ]));
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let got: Vec<&str> = stdout.lines().filter(|l| l.starts_with('<')).collect();
    assert_eq!(
        got,
        ["<two  spaces>", "<*>", "<$HOME>", "<a'b\"c>"],
        "{}",
        describe(&out)
    );
}

#[test]
fn a_task_that_cannot_start_is_125_with_the_reason_and_a_hint() {
    let (_db, emu) = stack();
    let out = run(emu.launcher().args([
        "--output",
        "json",
        "--task-definition",
        "everruns-admin-badsecret",
        "migrate-info",
    ]));
    assert_eq!(out.status.code(), Some(125), "{}", describe(&out));
    let doc = report(&out);
    assert!(
        doc["log_stream"].is_null() && doc["console_url"].is_null(),
        "a task that never started wrote no log stream: {doc}"
    );
    let all = both_streams(&out);
    assert!(
        all.contains("TaskFailedToStart") && all.contains("ResourceInitializationError"),
        "{all}"
    );
    assert!(
        all.contains("Secrets Manager"),
        "a hint about secrets: {all}"
    );

    let out = run(emu.launcher().args([
        "--task-definition",
        "everruns-admin-badimage",
        "migrate-info",
    ]));
    assert_eq!(out.status.code(), Some(125), "{}", describe(&out));
    assert!(
        both_streams(&out).contains("CannotPullContainerError"),
        "{}",
        describe(&out)
    );
}

#[test]
fn a_start_refused_for_capacity_is_retried_and_only_that() {
    let (_db, emu) = crate::common::emulator::stack_with(&["--capacity-failures", "3"]);
    // Without retries, the first refusal ends the job: no container ran.
    let once = run(emu
        .launcher()
        .args(["--start-retries", "0", "migrate-info"]));
    assert_eq!(once.status.code(), Some(125), "{}", describe(&once));
    assert!(
        both_streams(&once).contains("Capacity is unavailable"),
        "{}",
        describe(&once)
    );
    // Two refusals left: the default two retries start it on the third try.
    let retried = run(emu.launcher().args(["--output", "json", "migrate-info"]));
    assert_eq!(retried.status.code(), Some(0), "{}", describe(&retried));
    let stderr = String::from_utf8_lossy(&retried.stderr);
    assert_eq!(
        stderr.matches("refused, no container ran").count(),
        2,
        "{stderr}"
    );
    let doc = report(&retried);
    assert_eq!(doc["failed_starts"].as_array().unwrap().len(), 2, "{doc}");
    assert_eq!(doc["failed_starts"][1]["attempt"], 2, "{doc}");
    assert_eq!(doc["result"]["command"], "migrate-info", "{doc}");
    // A refusal that would only repeat is not retried: an unknown cluster.
    let wrong = run(emu.launcher().args(["--cluster", "nope", "migrate-info"]));
    assert!(
        !both_streams(&wrong).contains("starting again"),
        "{}",
        describe(&wrong)
    );
}

#[test]
fn a_task_that_failed_to_start_for_a_passing_reason_is_started_again() {
    let (_db, emu) = crate::common::emulator::stack_with(&["--start-failures", "1"]);
    let retried = run(emu.launcher().args(["--output", "json", "migrate-info"]));
    assert_eq!(retried.status.code(), Some(0), "{}", describe(&retried));
    let stderr = String::from_utf8_lossy(&retried.stderr);
    assert_eq!(
        stderr.matches("failed, no container ran: task ").count(),
        1,
        "{stderr}"
    );
    assert!(stderr.contains("ResourceInitializationError"), "{stderr}");
    let doc = report(&retried);
    let failed = &doc["failed_starts"][0];
    assert_eq!(failed["attempt"], 1, "{doc}");
    assert_eq!(
        failed["failures"][0]["reason"], "TaskFailedToStart",
        "{doc}"
    );
    assert_ne!(failed["failures"][0]["arn"], doc["task_arn"], "{doc}");
    assert_eq!(doc["result"]["command"], "migrate-info", "{doc}");
    // A start that would fail the same way again is not: a secret that does not exist.
    let lasting = run(emu.launcher().args([
        "--task-definition",
        "everruns-admin-badsecret",
        "migrate-info",
    ]));
    assert_eq!(lasting.status.code(), Some(125), "{}", describe(&lasting));
    assert!(
        !both_streams(&lasting).contains("starting again"),
        "{}",
        describe(&lasting)
    );
}

#[test]
fn a_task_ecs_forgot_is_read_from_its_log_stream() {
    // ECS forgets a stopped task after about an hour; this one after a second.
    let (_db, emu) = crate::common::emulator::stack_with(&["--forget-stopped-after-seconds", "1"]);
    let gate = run(emu.launcher().args([
        "--output",
        "json",
        "--wait-stopped",
        "migrate-info",
        "--check",
    ]));
    assert_eq!(gate.status.code(), Some(3), "{}", describe(&gate));
    let arn = report(&gate)["task_arn"].as_str().unwrap().to_string();
    let id = arn.rsplit('/').next().unwrap().to_string();
    std::thread::sleep(std::time::Duration::from_millis(1500));

    let logs = run(emu.launcher().args(["logs", &arn]));
    assert_eq!(logs.status.code(), Some(0), "{}", describe(&logs));
    assert!(
        String::from_utf8_lossy(&logs.stdout).contains("migration(s) pending"),
        "{}",
        describe(&logs)
    );
    assert!(
        String::from_utf8_lossy(&logs.stderr).contains("no longer known to ECS"),
        "{}",
        describe(&logs)
    );
    // Following a task that ended long ago exits as its launch did.
    let followed = run(emu.launcher().args(["logs", "--follow", &id]));
    assert_eq!(followed.status.code(), Some(3), "{}", describe(&followed));

    let status = task_status(&emu, &id);
    assert_eq!(status["exit_code"], 3, "{status}");
    assert_eq!(status["result"]["command"], "migrate-info", "{status}");
    assert!(
        status["hints"][0]
            .as_str()
            .unwrap()
            .contains("ECS no longer describes"),
        "{status}"
    );
    let human = run(emu.launcher().args(["status", &id]));
    assert!(
        String::from_utf8_lossy(&human.stdout).contains("`migrate-info` exited 3"),
        "{}",
        describe(&human)
    );

    let list = run(emu.launcher().args(["--output", "json", "list"]));
    assert_eq!(list.status.code(), Some(0), "{}", describe(&list));
    let rows: Value = serde_json::from_slice(&list.stdout).unwrap();
    let row = rows
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["task_id"] == id.as_str())
        .unwrap_or_else(|| panic!("{id} not in {rows}"));
    assert_eq!(row["source"], "logs", "{row}");
    assert_eq!(row["exit_code"], 3, "{row}");
    assert_eq!(row["command"], "migrate-info", "{row}");

    // Neither ECS nor the log group: a clear usage error.
    let unknown = run(emu
        .launcher()
        .args(["status", "0123456789abcdef0123456789abcdef"]));
    assert_ended(&unknown, 2, "nor in log group /ecs/everruns-admin");
}

#[test]
fn a_spot_interruption_is_named_and_the_database_is_released() {
    let (db, emu) =
        crate::common::emulator::stack_with(&["--spot-interruption-after-seconds", "1"]);
    assert_eq!(run(emu.launcher().arg("migrate")).status.code(), Some(0));
    seed_under_previous_key(&db);
    let out = run(emu.launcher().args([
        "--allow-spot",
        "--capacity-provider",
        "FARGATE_SPOT",
        "reencrypt",
        "--batch-size",
        "1",
        "--max-rate",
        "1",
    ]));
    // The companion took the SIGTERM: the batch in flight rolled back, locks released.
    assert_eq!(out.status.code(), Some(143), "{}", describe(&out));
    let all = both_streams(&out);
    assert!(all.contains("stop code: SpotInterruption"), "{all}");
    assert!(all.contains("a Spot interruption"), "{all}");
    assert!(all.contains("database: released"), "{all}");
}

#[test]
fn a_container_whose_exit_code_ecs_lost_is_never_called_never_ran() {
    let (_db, emu) = stack();
    // The companion's result event says how it ended: that is the outcome.
    let gate = run(emu.launcher().args([
        "--task-definition",
        "everruns-admin-lost-exit",
        "migrate-info",
        "--check",
    ]));
    assert_eq!(gate.status.code(), Some(3), "{}", describe(&gate));
    let all = both_streams(&gate);
    assert!(
        all.contains("result event said exit code 3") && !all.contains("never ran"),
        "{all}"
    );
    // A plain container wrote no result: it ran, its outcome is unknown (123), not 125.
    let plain = run(emu.launcher().args([
        "--output",
        "json",
        "--task-definition",
        "everruns-admin-generic-lost-exit",
        "run",
        "--",
        "sh",
        "-c",
        "echo did some work; exit 4",
    ]));
    assert_eq!(plain.status.code(), Some(123), "{}", describe(&plain));
    let doc = report(&plain);
    assert_eq!(doc["exit_code"], 123, "{doc}");
    assert!(doc["container_exit_code"].is_null(), "{doc}");
    let all = both_streams(&plain);
    assert!(
        all.contains("ran, but ECS has no exit code")
            && all.contains("DockerTimeoutError")
            && !all.contains("never ran"),
        "{all}"
    );
    // `status` of that task says the same.
    let arn = doc["task_arn"].as_str().unwrap().to_owned();
    assert_eq!(task_status(&emu, &arn)["exit_code"], 123);
}

/// `status TASK`'s document; its exit status is the one the document names.
fn task_status(emu: &Emulator, task_arn: &str) -> Value {
    let out = run(emu
        .launcher()
        .args(["--output", "json", "status", task_arn]));
    let doc = report(&out);
    assert_eq!(
        out.status.code().map(i64::from),
        doc["exit_code"].as_i64(),
        "{}",
        describe(&out)
    );
    doc
}

#[test]
fn timeout_is_124_and_leaves_the_task_running() {
    let (_db, emu) = stack();
    let started = Instant::now();
    let out = run(emu.launcher().args([
        "--output",
        "json",
        "--timeout",
        "3s",
        "--task-definition",
        GENERIC,
        "run",
        "--",
        "sleep",
        "60",
    ]));
    assert_eq!(out.status.code(), Some(124), "{}", describe(&out));
    assert!(started.elapsed() < Duration::from_secs(20));
    let doc = report(&out);
    let arn = doc["task_arn"].as_str().unwrap().to_owned();
    assert!(
        both_streams(&out).contains("logs"),
        "says how to re-attach: {}",
        describe(&out)
    );
    assert_eq!(task_status(&emu, &arn)["last_status"], "RUNNING");

    let stop = run(emu
        .launcher()
        .args(["stop", &arn, "--reason", "e2e cleanup"]));
    assert_eq!(stop.status.code(), Some(0), "{}", describe(&stop));
}

#[test]
fn interrupt_stops_the_task_and_exits_130() {
    let (_db, emu) = stack();
    let mut child = emu
        .launcher()
        .args([
            "--output",
            "json",
            "--task-definition",
            GENERIC,
            "run",
            "--",
            "sh",
            "-c",
            "echo started; sleep 60",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let _stderr = read_until_line(child.stderr.take().unwrap(), "started");
    let interrupted = Instant::now();
    crate::common::send_signal(child.id(), libc::SIGINT);
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130), "{}", describe(&out));
    assert!(interrupted.elapsed() < Duration::from_secs(15));
    let doc = report(&out);
    assert_ne!(doc["last_status"], "RUNNING", "{doc}");
    assert_eq!(doc["stop_code"], "UserInitiated", "{doc}");
    assert!(
        doc["stopped_reason"]
            .as_str()
            .unwrap()
            .contains("e2e-operator"),
        "{doc}"
    );
}

#[test]
fn production_guard_and_missing_settings_refuse_before_any_aws_call() {
    let (_db, emu) = stack();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        "[env.production]\ncluster = \"everruns\"\nconfirm = true\n",
    )
    .unwrap();

    let out =
        run(emu
            .launcher()
            .arg("--config")
            .arg(&config)
            .args(["--env", "production", "migrate"]));
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    assert!(both_streams(&out).contains("--yes"), "{}", describe(&out));

    let out = run(emu.launcher().env_remove("ECS_SUBNETS").arg("migrate-info"));
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    let all = both_streams(&out);
    assert!(
        all.contains("--subnets") && all.contains("ECS_SUBNETS") && all.contains("subnets"),
        "{all}"
    );

    let calls = emu.request_counts();
    assert!(
        !calls.contains_key("RunTask") && !calls.contains_key("DescribeTaskDefinition"),
        "no AWS call was made: {calls:?}"
    );

    // With --yes the same command runs.
    let out = run(emu.launcher().arg("--config").arg(&config).args([
        "--env",
        "production",
        "--yes",
        "migrate-info",
    ]));
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
}

#[test]
fn no_wait_then_logs_status_list_and_stop() {
    let (_db, emu) = stack();
    let out = run(emu.launcher().args([
        "--no-wait",
        "--task-definition",
        GENERIC,
        "run",
        "--",
        "sh",
        "-c",
        "echo first; sleep 1; echo second; exit 7",
    ]));
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let arn = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    assert!(arn.starts_with("arn:aws:ecs:"), "{}", describe(&out));
    assert!(
        both_streams(&out).contains("logs"),
        "says how to re-attach: {}",
        describe(&out)
    );

    let follow = run(emu.launcher().args(["logs", &arn, "--follow"]));
    assert_eq!(follow.status.code(), Some(7), "{}", describe(&follow));
    let lines: Vec<String> = String::from_utf8_lossy(&follow.stdout)
        .lines()
        .map(str::to_owned)
        .collect();
    assert!(
        lines.iter().any(|l| l == "first") && lines.iter().any(|l| l == "second"),
        "{}",
        describe(&follow)
    );

    let logs = run(emu.launcher().args(["logs", &arn]));
    assert_eq!(logs.status.code(), Some(0), "{}", describe(&logs));
    assert_eq!(
        String::from_utf8_lossy(&logs.stdout)
            .lines()
            .filter(|l| *l == "first")
            .count(),
        1
    );

    let status = task_status(&emu, &arn);
    assert_eq!(status["last_status"], "STOPPED");
    assert_eq!(status["container_exit_code"], 7);
    assert_eq!(status["exit_code"], 7, "status exits as the launch did");

    let list = run(emu
        .launcher()
        .args(["--output", "json", "--task-definition", GENERIC, "list"]));
    assert_eq!(list.status.code(), Some(0), "{}", describe(&list));
    let tasks: Value = serde_json::from_slice(&list.stdout).unwrap();
    let listed = tasks
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["task_arn"] == arn.as_str())
        .cloned();
    let listed = listed.unwrap_or_else(|| panic!("{arn} not in {tasks}"));
    assert!(
        listed.to_string().contains("e2e-operator"),
        "who started it: {listed}"
    );

    let none = run(emu.launcher().args(["list", "--limit", "0"]));
    assert_eq!(none.status.code(), Some(2), "{}", describe(&none));
    assert!(
        both_streams(&none).contains("--limit"),
        "{}",
        describe(&none)
    );

    let again = run(emu.launcher().args(["stop", &arn]));
    assert_eq!(again.status.code(), Some(0), "{}", describe(&again));
    assert!(
        both_streams(&again).contains("is already stopped")
            && !both_streams(&again).contains("stopping task"),
        "a stopped task is not stopped again: {}",
        describe(&again)
    );

    let out = run(emu.launcher().args([
        "stop",
        "arn:aws:ecs:us-east-1:123456789012:task/everruns/0123456789abcdef",
    ]));
    assert_ne!(
        out.status.code(),
        Some(0),
        "stopping an unknown task fails: {}",
        describe(&out)
    );
}

#[test]
fn a_second_mutating_job_is_refused_while_one_runs() {
    let (db, emu) = stack();
    let migrate = run(emu.launcher().arg("migrate"));
    assert_eq!(migrate.status.code(), Some(0), "{}", describe(&migrate));
    // Hold reencrypt's own lock so the first reencrypt task waits, still running.
    let mut holder = std::process::Command::new("psql")
        .args(["-X", "-q", "-d", &db.url, "-c"])
        .arg(format!(
            "SELECT pg_advisory_lock({}); SELECT pg_sleep(30)",
            everruns_admin::seam::LOCK_KEY
        ))
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    // Started through `run --`: the work is judged, not the launcher's subcommand.
    let first = run(emu.launcher().args([
        "--no-wait",
        "run",
        "--",
        "reencrypt",
        "--lock-timeout",
        "60s",
    ]));
    assert_eq!(first.status.code(), Some(0), "{}", describe(&first));
    let arn = String::from_utf8_lossy(&first.stdout).trim().to_owned();
    let deadline = Instant::now() + Duration::from_secs(20);
    while task_status(&emu, &arn)["last_status"] != "RUNNING" {
        assert!(Instant::now() < deadline, "the first task never ran");
        std::thread::sleep(Duration::from_millis(200));
    }

    let second = run(emu.launcher().arg("reencrypt"));
    assert_eq!(second.status.code(), Some(2), "{}", describe(&second));
    let all = both_streams(&second);
    let id = arn.rsplit('/').next().unwrap();
    assert!(
        all.contains(id) && all.contains("e2e-operator"),
        "names the running task and who: {all}"
    );
    let run_migrate = run(emu.launcher().args(["run", "--", "migrate"]));
    assert_eq!(
        run_migrate.status.code(),
        Some(2),
        "{}",
        describe(&run_migrate)
    );
    assert!(
        both_streams(&run_migrate).contains(id),
        "{}",
        describe(&run_migrate)
    );
    // A dry run does not write: it is not refused.
    let dry = run(emu
        .launcher()
        .args(["reencrypt", "--dry-run", "--lock-timeout", "1s"]));
    assert_ne!(dry.status.code(), Some(2), "{}", describe(&dry));

    let _ = holder.kill();
    let _ = holder.wait();
    let stop = run(emu.launcher().args(["stop", &arn]));
    assert_eq!(stop.status.code(), Some(0), "{}", describe(&stop));
}

/// The emulator with Fargate's awkward timings: a 30 s DEPROVISIONING, the awslogs 5 s
/// batching, and the last batch sent 3 s after the exit code is visible.
const FARGATE_TIMINGS: &[&str] = &[
    "--state-delay",
    "DEPROVISIONING=30",
    "--log-batch-seconds",
    "5",
    "--final-flush-delay-seconds",
    "3",
];

#[test]
fn the_launcher_is_done_when_the_container_is_done_not_when_fargate_is() {
    let stall = tempfile::tempdir().unwrap();
    let stall_file = stall.path().join("stall");
    let mut options = FARGATE_TIMINGS.to_vec();
    let stall_arg = stall_file.to_string_lossy().into_owned();
    options.extend(["--stall-while-exists", stall_arg.as_str()]);
    let (_db, emu) = crate::common::emulator::stack_with(&options);

    // The companion: its result event is the last line; the task is still
    // deprovisioning when the launcher answers.
    let started = Instant::now();
    let gate = run(emu
        .launcher()
        .args(["--output", "json", "migrate-info", "--check"]));
    let took = started.elapsed();
    assert_eq!(gate.status.code(), Some(3), "{}", describe(&gate));
    let doc = report(&gate);
    assert_eq!(doc["result"]["command"], "migrate-info", "{doc}");
    assert_ne!(doc["last_status"], "STOPPED", "{doc}");
    assert!(doc["execution_stopped_at"].is_string(), "{doc}");
    assert!(doc["stopped_at"].is_null(), "{doc}");
    for phase in ["capacity", "image_pull", "start", "run", "after_exit"] {
        assert!(doc["phases"][phase].is_number(), "{phase}: {doc}");
    }
    assert!(
        took < Duration::from_secs(20),
        "not waiting out the 30 s DEPROVISIONING: {took:?}"
    );
    assert!(
        String::from_utf8_lossy(&gate.stderr).contains("while ECS releases it"),
        "{}",
        describe(&gate)
    );

    // A container that does not speak the protocol: its last lines arrive after its exit
    // code, and none is lost.
    let plain = run(emu.launcher().args([
        "--task-definition",
        GENERIC,
        "run",
        "--",
        "sh",
        "-c",
        "for i in 1 2 3; do echo line $i; done",
    ]));
    assert_eq!(plain.status.code(), Some(0), "{}", describe(&plain));
    let stdout = String::from_utf8_lossy(&plain.stdout);
    assert_eq!(
        stdout
            .lines()
            .filter(|l| l.starts_with("line "))
            .collect::<Vec<_>>(),
        ["line 1", "line 2", "line 3"],
        "{}",
        describe(&plain)
    );

    // With --wait-stopped, the old behaviour: the 30 s are waited out.
    let started = Instant::now();
    let waited = run(emu.launcher().args([
        "--wait-stopped",
        "--output",
        "json",
        "--task-definition",
        GENERIC,
        "run",
        "--",
        "true",
    ]));
    assert_eq!(waited.status.code(), Some(0), "{}", describe(&waited));
    assert_eq!(report(&waited)["last_status"], "STOPPED");
    assert!(started.elapsed() > Duration::from_secs(30));

    // An endpoint that stalls while the task runs: calls are abandoned and retried, and
    // nothing is lost.
    let mut child = emu
        .launcher()
        .args([
            "--attempt-timeout",
            "1s",
            "--call-timeout",
            "2s",
            "--task-definition",
            GENERIC,
            "run",
            "--",
            "sh",
            "-c",
            "echo before; sleep 8; echo after",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let reader = read_until_line(child.stdout.take().unwrap(), "before");
    std::fs::write(&stall_file, b"").unwrap();
    std::thread::sleep(Duration::from_secs(5));
    std::fs::remove_file(&stall_file).unwrap();
    let out = child.wait_with_output().unwrap();
    let lines = reader.join().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert_eq!(lines, ["before", "after"], "{}", describe(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("got no answer"),
        "the stall was seen and retried: {}",
        describe(&out)
    );
}

#[test]
fn every_command_ends_on_a_signal_within_2s_even_in_a_hung_call() {
    let silent = crate::common::emulator::SilentEndpoint::start();
    let task = "0123456789abcdef0123456789abcdef";
    let commands: Vec<(Vec<&str>, i32)> = vec![
        (vec!["run", "--", "echo", "x"], libc::SIGINT),
        (vec!["run", "--", "echo", "x"], libc::SIGTERM),
        (vec!["migrate-info", "--check"], libc::SIGINT),
        (vec!["list"], libc::SIGINT),
        (vec!["status", task], libc::SIGINT),
        (vec!["logs", task, "--follow"], libc::SIGTERM),
        (vec!["stop", task], libc::SIGINT),
        (vec!["doctor"], libc::SIGINT),
        (vec!["keys", "status"], libc::SIGINT),
    ];
    let mut children: Vec<_> = commands
        .iter()
        .map(|(args, signal)| {
            let child = launcher_at(&silent.url, "us-east-1")
                .env("ECS_SUBNETS", "subnet-1")
                .args(args)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            (args.join(" "), *signal, child)
        })
        .collect();
    std::thread::sleep(Duration::from_millis(1500));
    for (what, _, child) in &mut children {
        assert!(
            child.try_wait().unwrap().is_none(),
            "`{what}` should still be waiting on the silent endpoint"
        );
    }
    let signalled = Instant::now();
    for (_, signal, child) in &children {
        crate::common::send_signal(child.id(), *signal);
    }
    for (what, _, child) in children {
        let out = child.wait_with_output().unwrap();
        assert!(
            signalled.elapsed() < Duration::from_secs(2),
            "`{what}` took {:?} after the signal",
            signalled.elapsed()
        );
        assert_eq!(out.status.code(), Some(130), "`{what}`: {}", describe(&out));
    }
}

#[test]
fn an_endpoint_that_never_answers_is_125_in_bounded_time() {
    let silent = crate::common::emulator::SilentEndpoint::start();
    let started = Instant::now();
    let out = run(launcher_at(&silent.url, "us-east-1")
        .env("ECS_SUBNETS", "subnet-1")
        .env("RUN_ADMIN_TASK_CALL_TIMEOUT", "3s")
        .args(["--attempt-timeout", "1s", "run", "--", "echo", "x"]));
    let took = started.elapsed();
    assert_eq!(out.status.code(), Some(125), "{}", describe(&out));
    assert!(
        took >= Duration::from_secs(3) && took < Duration::from_secs(6),
        "{took:?}"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("ECS") && stderr.contains(&silent.url) && stderr.contains("within 3s"),
        "names the service, the endpoint and the wait: {stderr}"
    );
}

#[test]
fn help_and_typos_after_a_companion_command_launch_nothing() {
    // Any AWS call would hang on this endpoint: answers within a second prove none.
    let silent = crate::common::emulator::SilentEndpoint::start();
    let cases: &[(&[&str], i32, &str)] = &[
        (&["migrate-info", "--help"], 0, "--check"),
        (&["migrate-info", "-h"], 0, "--check"),
        (&["help", "migrate-info"], 0, "--check"),
        (&["reencrypt", "--help"], 0, "--batch-size"),
        (&["migrate-info", "--chek"], 2, "--chek"),
        (&["migrate", "--target-version", "soon"], 2, "soon"),
        (&["reencrypt", "--batch-size", "0"], 2, "batch-size"),
    ];
    for (args, code, needle) in cases {
        let started = Instant::now();
        let out = run(launcher_at(&silent.url, "us-east-1")
            .env("ECS_SUBNETS", "subnet-1")
            .args(*args));
        assert_eq!(
            out.status.code(),
            Some(*code),
            "{args:?}: {}",
            describe(&out)
        );
        assert!(
            both_streams(&out).contains(needle),
            "{args:?}: {}",
            describe(&out)
        );
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "{args:?} made a call"
        );
    }
}

#[test]
fn the_same_ci_step_run_twice_starts_one_task() {
    let (_db, emu) = stack();
    let step = |cmd: &mut Command| {
        cmd.env("GITHUB_ACTIONS", "true")
            .env("GITHUB_REPOSITORY", "everruns/everruns")
            .env("GITHUB_RUN_ID", "777")
            .env("GITHUB_RUN_ATTEMPT", "1")
            .env("GITHUB_JOB", "deploy")
            .env("GITHUB_ACTION", "migrate");
    };
    let argv = [
        "--output",
        "json",
        "--task-definition",
        GENERIC,
        "run",
        "--",
        "sh",
        "-c",
        "sleep 2; echo done once",
    ];
    // The first attempt loses its connection right after RunTask.
    let mut first = emu.launcher();
    step(&mut first);
    let first = run(first.arg("--no-wait").args(argv));
    assert_eq!(first.status.code(), Some(0), "{}", describe(&first));
    let first_arn = report(&first)["task_arn"].as_str().unwrap().to_owned();
    std::thread::sleep(Duration::from_secs(6));

    let mut again = emu.launcher();
    step(&mut again);
    let again = run(again.args(argv));
    assert_eq!(again.status.code(), Some(0), "{}", describe(&again));
    let doc = report(&again);
    assert_eq!(doc["task_arn"], first_arn.as_str(), "{doc}");
    assert_eq!(doc["attached"], true, "{doc}");
    assert!(
        both_streams(&again).contains("attached to task"),
        "{}",
        describe(&again)
    );
    assert!(
        both_streams(&again).contains("done once"),
        "{}",
        describe(&again)
    );
    assert_eq!(emu.request_counts().get("RunTask"), Some(&2));

    // Another attempt of the run is a new job.
    let mut retried = emu.launcher();
    step(&mut retried);
    let retried = run(retried.env("GITHUB_RUN_ATTEMPT", "2").args(argv));
    assert_eq!(retried.status.code(), Some(0), "{}", describe(&retried));
    assert_ne!(report(&retried)["task_arn"], first_arn.as_str());
}

#[test]
fn from_service_runs_on_the_services_network_and_a_flag_wins_its_own_field() {
    let (_db, emu) = stack();
    let service = &emu.ready.service;
    // No ECS_SUBNETS, no ECS_SECURITY_GROUP: only the service.
    let launch = |extra: &[&str]| {
        let out = run(launcher_at(&emu.ready.endpoint, &emu.ready.region)
            .args(["--from-service", &service.name, "--output", "json"])
            .args(extra)
            .args(["--task-definition", GENERIC, "run", "--", "echo", "ok"]));
        assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
        let task = report(&out)["task_arn"].as_str().unwrap().to_string();
        emu.task_network(&task)
    };
    let network = launch(&[]);
    assert_eq!(network.subnet, service.subnets[0]);
    assert_eq!(network.security_groups, [service.security_group.as_str()]);
    assert_ne!(service.subnets[0], emu.ready.subnets[0]);

    let network = launch(&["--security-groups", &emu.ready.security_group]);
    assert_eq!(network.subnet, service.subnets[0], "the service's subnet");
    assert_eq!(
        network.security_groups,
        [emu.ready.security_group.as_str()],
        "the flag's group"
    );

    // --print-request says where each value came from, and sends nothing.
    let out = run(launcher_at(&emu.ready.endpoint, &emu.ready.region)
        .env("ECS_SERVICE", &service.name)
        .env("ECS_SUBNETS", &emu.ready.subnets[0])
        .args(["--print-request", "migrate"]));
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let request: Value = serde_json::from_slice(&out.stdout).unwrap();
    let vpc = &request["networkConfiguration"]["awsvpcConfiguration"];
    assert_eq!(vpc["subnets"][0], emu.ready.subnets[0].as_str());
    assert_eq!(vpc["securityGroups"][0], service.security_group.as_str());
    assert_eq!(request["platformVersion"], "1.4.0");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!(
            "subnets: {} (environment ECS_SUBNETS)",
            emu.ready.subnets[0]
        )),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!(
            "security groups: {} (service {})",
            service.security_group, service.name
        )),
        "{stderr}"
    );

    // A service that does not exist, or has no awsvpc configuration: exit 2, named.
    for (name, expected) in [
        (
            "no-such-service",
            "there is no active ECS service \"no-such-service\"",
        ),
        ("everruns-bridge", "has no awsvpc network configuration"),
    ] {
        let out = run(launcher_at(&emu.ready.endpoint, &emu.ready.region).args([
            "--from-service",
            name,
            "migrate-info",
        ]));
        assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
        assert!(both_streams(&out).contains(expected), "{}", describe(&out));
    }
}

#[test]
fn reencrypt_across_four_shards_is_one_job_and_a_rerun_passes_over_it() {
    let (db, emu) = stack();
    assert_eq!(run(emu.launcher().arg("migrate")).status.code(), Some(0));
    let plaintexts = seed_under_previous_key(&db);
    let out =
        run(emu
            .launcher()
            .args(["--output", "json", "reencrypt", "--shards", "4", "-b", "3"]));
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let doc = report(&out);
    assert_eq!(doc["shards"], 4, "{doc}");
    assert_eq!(doc["exit_code"], 0, "{doc}");
    let tasks = doc["tasks"].as_array().unwrap();
    assert_eq!(tasks.len(), 4, "{doc}");
    let mut arns = std::collections::BTreeSet::new();
    for (k, task) in tasks.iter().enumerate() {
        let label = format!("{}/4", k + 1);
        assert_eq!(task["shard"], label.as_str(), "{doc}");
        assert_eq!(task["exit_code"], 0, "{doc}");
        let command: Vec<&str> = task["command"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c.as_str().unwrap())
            .collect();
        assert_eq!(command[command.len() - 2..], ["--shard", label.as_str()]);
        arns.insert(task["task_arn"].as_str().unwrap().to_string());
    }
    assert_eq!(arns.len(), 4, "four tasks");
    assert_eq!(doc["totals"]["reencrypted"], 25, "{doc}");
    assert!(key_ids_in(&db).iter().all(|id| id == "kek-v2"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    for k in 1..=4 {
        assert!(stderr.contains(&format!("[{k}/4] ")), "{stderr}");
    }

    let rerun = run(emu
        .launcher()
        .args(["--output", "json", "reencrypt", "--shards", "4"]));
    assert_eq!(rerun.status.code(), Some(0), "{}", describe(&rerun));
    let doc = report(&rerun);
    assert_eq!(doc["totals"]["reencrypted"], 0, "{doc}");
    assert_eq!(doc["totals"]["already_on_primary"], 25, "{doc}");
    assert_no_secrets(&[&out, &rerun], &db, &plaintexts);
}

#[test]
fn an_undecryptable_value_fails_its_own_shard_with_5() {
    let (db, emu) = stack();
    assert_eq!(run(emu.launcher().arg("migrate")).status.code(), Some(0));
    seed_under_previous_key(&db);
    // Under a key the task does not have, with an id in the third quarter of the keys.
    let unknown = Key::parse("kek-v0:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=").unwrap();
    let payload = envelope::encrypt(b"sk-lost", &unknown).unwrap();
    let hex: String = payload.iter().map(|b| format!("{b:02x}")).collect();
    psql(
        &db.url,
        &format!(
            "INSERT INTO llm_providers (id, name, provider_type, api_key_encrypted, api_key_set) \
             VALUES ('a0000000-0000-4000-8000-000000000001', 'lost', 'openai', '\\x{hex}', TRUE)"
        ),
    );
    let out = run(emu
        .launcher()
        .args(["--output", "json", "reencrypt", "--shards", "4"]));
    assert_eq!(out.status.code(), Some(5), "{}", describe(&out));
    let doc = report(&out);
    let codes: Vec<u64> = doc["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["exit_code"].as_u64().unwrap())
        .collect();
    assert_eq!(codes, [0, 0, 5, 0], "{doc}");
    assert_eq!(doc["totals"]["undecryptable"], 1, "{doc}");
    assert!(
        both_streams(&out).contains("shard 3/4 ended with 5"),
        "{}",
        describe(&out)
    );
}

#[test]
fn ctrl_c_stops_every_shard() {
    let (db, emu) = stack();
    assert_eq!(run(emu.launcher().arg("migrate")).status.code(), Some(0));
    seed_under_previous_key(&db);
    let mut child = emu
        .launcher()
        .args(["--output", "json", "reencrypt", "--shards", "4"])
        .args(["--batch-size", "1", "--max-rate", "1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The first shard's companion is at work; the others are starting or at work too.
    let _stderr = read_until_line(child.stderr.take().unwrap(), "reencrypt starting");
    std::thread::sleep(Duration::from_millis(1000));
    let interrupted_at = chrono::Utc::now();
    crate::common::send_signal(child.id(), libc::SIGINT);
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130), "{}", describe(&out));
    let doc = report(&out);
    let tasks = doc["tasks"].as_array().unwrap();
    assert_eq!(tasks.len(), 4, "{doc}");
    let mut stopped = 0;
    for task in tasks {
        let arn = task["task_arn"].as_str().unwrap();
        let status = task_status(&emu, arn);
        // A shard whose key range holds no row may have finished before the Ctrl-C.
        let exited: Option<chrono::DateTime<chrono::Utc>> =
            serde_json::from_value(status["execution_stopped_at"].clone()).ok();
        if status["stop_code"] == "EssentialContainerExited"
            && exited.is_some_and(|t| t < interrupted_at)
        {
            continue;
        }
        assert!(
            status["stopped_reason"]
                .as_str()
                .is_some_and(|r| r.contains("Interrupted by e2e-operator")),
            "{status}"
        );
        assert_eq!(status["stop_code"], "UserInitiated", "{status}");
        stopped += 1;
    }
    assert!(stopped >= 2, "the shards at work were stopped: {doc}");
}

#[test]
fn eight_shards_share_one_api_budget_under_throttling() {
    let (db, emu) = crate::common::emulator::stack_with(&[
        "--throttle",
        "GetLogEvents=10",
        "--throttle",
        "DescribeTasks=20",
    ]);
    assert_eq!(run(emu.launcher().arg("migrate")).status.code(), Some(0));
    seed_under_previous_key(&db);
    let started = std::time::Instant::now();
    let out =
        run(emu
            .launcher()
            .args(["--output", "json", "reencrypt", "--shards", "8", "-b", "3"]));
    let seconds = started.elapsed().as_secs_f64();
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let doc = report(&out);
    assert_eq!(doc["totals"]["reencrypted"], 25, "every row counted: {doc}");
    let calls = |api: &str| doc["api_calls"][api].as_f64().unwrap_or_default();
    // Both budgets hold over the job: under 5 GetLogEvents and 2 DescribeTasks a
    // second (one pace for every tail, one call for every task waiting).
    assert!(
        calls("GetLogEvents") > 0.0 && calls("DescribeTasks") > 0.0,
        "{doc}"
    );
    assert!(
        calls("GetLogEvents") < 5.0 * seconds,
        "{} GetLogEvents in {seconds:.1} s: {doc}",
        calls("GetLogEvents")
    );
    assert!(
        calls("DescribeTasks") < 2.0 * seconds,
        "{} DescribeTasks in {seconds:.1} s: {doc}",
        calls("DescribeTasks")
    );
    assert_eq!(calls("RunTask"), 8.0, "{doc}");
}

#[test]
fn a_command_that_launches_nothing_does_not_say_a_task_never_ran() {
    // These start no task: an API failure is a runtime failure (1), not "never ran".
    let task = "0123456789abcdef0123456789abcdef";
    for args in [
        &["list"][..],
        &["status", task],
        &["logs", task],
        &["stop", task],
    ] {
        let out = run(launcher_at("http://127.0.0.1:9", "us-east-1").args(args));
        assert_ended(&out, 1, "http://127.0.0.1:9 refused the connection");
    }
}

#[test]
fn a_task_definition_read_about_a_past_task_fails_as_a_call_not_a_launch() {
    // A task ECS does not know is looked for in the log group its task definition
    // names: a DescribeTaskDefinition that fails there is a failed call (1).
    // `keys` reads it for the secrets' names the same way.
    let (_db, emu) =
        crate::common::emulator::stack_with(&["--throttle", "DescribeTaskDefinition=0"]);
    for args in [
        &["status", "0123456789abcdef0123456789abcdef"][..],
        &["keys", "status"],
    ] {
        assert_ended(&run(emu.launcher().args(args)), 1, "DescribeTaskDefinition");
    }
}

#[test]
fn a_sharded_job_prints_one_request_per_shard_and_refuses_bad_shards_locally() {
    // No endpoint answers here: neither command may call AWS.
    let launcher = || {
        let mut cmd = launcher_at("http://127.0.0.1:9", "us-east-1");
        cmd.env("ECS_SUBNETS", "subnet-1");
        cmd
    };
    let out = run(launcher()
        .args(["--print-request", "reencrypt", "--shards", "3"])
        .args(["--only", "3,1", "-b", "5"]));
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let requests: Value = serde_json::from_slice(&out.stdout).unwrap();
    let commands: Vec<Value> = requests
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["overrides"]["containerOverrides"][0]["command"].clone())
        .collect();
    assert_eq!(
        commands,
        [
            serde_json::json!(["reencrypt", "-b", "5", "--shard", "1/3"]),
            serde_json::json!(["reencrypt", "-b", "5", "--shard", "3/3"])
        ]
    );
    let tokens: std::collections::BTreeSet<&str> = requests
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["clientToken"].as_str().unwrap())
        .collect();
    assert_eq!(tokens.len(), 2, "a client token per shard");

    for (args, expected) in [
        (
            &["reencrypt", "--shards", "0"][..],
            "use a number from 1 to 32",
        ),
        (
            &["reencrypt", "--shards", "4", "--only", "7"][..],
            "from 1 to 4",
        ),
        (&["reencrypt", "--only", "1"][..], "give --shards too"),
    ] {
        let out = run(launcher().args(args));
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", describe(&out));
        assert!(
            both_streams(&out).contains(expected),
            "{args:?}: {}",
            describe(&out)
        );
    }
}
