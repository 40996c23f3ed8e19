//! The companion's command line: `shell` without a terminal, usage errors, the
//! session limits of `migrate`.

use std::time::{Duration, Instant};

use crate::common::{cluster, companion, describe, result_summary};

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
fn shell_without_a_terminal_exits_0_on_sigterm() {
    let child = companion("postgres://unused@127.0.0.1:1/db")
        .args(["shell", "--max-idle", "1h"])
        .stdout(std::process::Stdio::piped())
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
