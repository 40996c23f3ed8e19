//! The companion's command line: `shell` without a terminal (its wait and its attach
//! hint), usage errors, the connection budget, the session limits of `migrate`.

use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::common::{cluster, companion, describe, events, output_within, result_summary};

#[test]
fn shell_without_a_terminal_waits_then_exits_0() {
    let started = Instant::now();
    let out = companion("postgres://unused@127.0.0.1:1/db")
        .args(["shell", "--max-idle", "1s"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert!(started.elapsed() >= Duration::from_secs(1));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("run-admin-task shell --task"),
        "says how to attach: {stdout}"
    );
    assert_eq!(result_summary(&out)["ended"], "max idle time reached");
}

#[test]
fn shell_without_a_terminal_says_where_the_database_is_without_its_password() {
    let out = companion(
        "postgres://tunnel%40user:s3cr%2Ft-pw@db.internal:6543/ever%20runs?sslmode=require",
    )
    .args(["shell", "--max-idle", "0s"])
    .output()
    .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!stdout.contains("s3cr"), "the password leaked: {stdout}");
    let database: Vec<_> = events(&out)
        .into_iter()
        .filter(|e| e["event"] == "database")
        .collect();
    assert_eq!(database.len(), 1, "{stdout}");
    assert_eq!(
        (
            &database[0]["host"],
            &database[0]["port"],
            &database[0]["database"],
            &database[0]["user"]
        ),
        (
            &serde_json::json!("db.internal"),
            &serde_json::json!(6543),
            &serde_json::json!("ever runs"),
            &serde_json::json!("tunnel@user")
        )
    );
}

#[test]
fn shell_without_a_terminal_exits_0_on_sigterm() {
    let child = companion("postgres://unused@127.0.0.1:1/db")
        .args(["shell", "--max-idle", "1h"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    crate::common::send_signal(child.id(), libc::SIGTERM);
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert_eq!(result_summary(&out)["ended"], "stopped (SIGTERM)");
}

#[test]
fn bad_flags_are_usage_errors() {
    for args in [
        &["migrate", "--lock-timeout", "soon"][..],
        &["reencrypt", "--batch-size", "0"],
        &["no-such-command"],
        &["migrate-info", "--check", "extra"],
    ] {
        let out = companion("postgres://u@127.0.0.1:1/db")
            .args(args)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", describe(&out));
    }
    let help = companion("").arg("help").output().unwrap();
    assert_eq!(help.status.code(), Some(0), "{}", describe(&help));
    assert!(String::from_utf8_lossy(&help.stdout).contains("migrate-info"));
}

#[test]
fn statement_timeout_bounds_a_migration() {
    let db = cluster().create_database();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("1_slow.sql"), "SELECT pg_sleep(5);").unwrap();
    let started = Instant::now();
    let out = companion(&db.url)
        .args(["migrate", "--statement-timeout", "200ms", "--source"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    assert!(started.elapsed() < Duration::from_secs(4));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("statement timeout"),
        "{}",
        describe(&out)
    );
}

/// A loopback port nothing listens on: connections are refused at once.
fn closed_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn connect_timeout_is_used_in_full_against_a_refusing_host() {
    let url = format!("postgres://u@127.0.0.1:{}/db", closed_port());
    assert_gives_up_after(&url, Duration::from_secs(3), "raise --connect-timeout");
}

#[test]
fn connect_timeout_bounds_an_attempt_to_a_host_that_never_answers() {
    // The kernel completes the handshake into the backlog; nobody ever reads or answers.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!(
        "postgres://u@127.0.0.1:{}/db",
        silent.local_addr().unwrap().port()
    );
    assert_gives_up_after(&url, Duration::from_secs(2), "no answer within");
    drop(silent);
}

/// `migrate-info` against `url` fails (exit 1) after about its `--connect-timeout`
/// `budget`, saying `needle`.
fn assert_gives_up_after(url: &str, budget: Duration, needle: &str) {
    let mut cmd = companion(url);
    cmd.arg("--connect-timeout")
        .arg(format!("{}s", budget.as_secs()))
        .arg("migrate-info");
    let started = Instant::now();
    let child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (out, _) = output_within(child, budget + Duration::from_secs(10));
    let elapsed = started.elapsed();
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    assert!(
        elapsed >= budget.mul_f64(0.9) && elapsed < budget + Duration::from_secs(2),
        "gave up after {elapsed:?} for a {budget:?} budget: {}",
        describe(&out)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(needle),
        "{}",
        describe(&out)
    );
}

#[test]
fn shell_hint_falls_back_to_a_placeholder_without_metadata() {
    // Unset, refused, and an endpoint that accepts but never answers.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_url = format!("http://{}/v4/x", silent.local_addr().unwrap());
    let refused_url = format!("http://127.0.0.1:{}/v4/x", closed_port());
    for endpoint in [None, Some(refused_url.as_str()), Some(silent_url.as_str())] {
        let mut cmd = companion("postgres://unused@127.0.0.1:1/db");
        cmd.args(["shell", "--max-idle", "1s"]);
        match endpoint {
            Some(url) => cmd.env("ECS_CONTAINER_METADATA_URI_V4", url),
            None => cmd.env_remove("ECS_CONTAINER_METADATA_URI_V4"),
        };
        let started = Instant::now();
        let out = cmd.output().unwrap();
        assert_eq!(
            out.status.code(),
            Some(0),
            "{endpoint:?}: {}",
            describe(&out)
        );
        assert!(
            started.elapsed() < Duration::from_secs(4),
            "{endpoint:?}: the metadata call is bounded"
        );
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            stdout.contains("run-admin-task shell --task <task-id>"),
            "{endpoint:?}: {stdout}"
        );
        assert!(
            !events(&out)
                .iter()
                .any(|e| e["level"] == "error" || e["level"] == "warn"),
            "{endpoint:?}: no error for a missing endpoint: {stdout}"
        );
        assert!(result_summary(&out)["task_id"].is_null());
    }
    drop(silent);
}

#[test]
fn status_in_text_says_why_the_database_check_failed() {
    for (url, reason) in [
        (None, "DATABASE_URL is not set"),
        (
            Some("mysql://u:pw@db/x"),
            "DATABASE_URL has scheme \"mysql\"",
        ),
    ] {
        let mut cmd = companion("unused");
        cmd.env("EVERRUNS_ADMIN_OUTPUT", "text")
            .env("SECRETS_ENCRYPTION_KEY", crate::common::KEK_V1)
            .env_remove("DATABASE_URL");
        if let Some(url) = url {
            cmd.env("DATABASE_URL", url);
        }
        let out = cmd.arg("status").output().unwrap();
        assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains(&format!("database: {reason}")), "{text}");
        assert!(!text.contains("pw@"), "{text}");
    }
}
