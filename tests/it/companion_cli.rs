//! The companion's command line: `shell` without a terminal (its wait and its attach
//! hint), usage errors, the connection budget, the session limits of `migrate`.

use std::time::{Duration, Instant};

use crate::common::{cluster, companion, describe, events, result_summary};

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

/// Runs `cmd`, killing it after `limit`, so that a companion that hangs fails the
/// test (exit `None`) instead of hanging it.
fn output_within(mut cmd: std::process::Command, limit: Duration) -> std::process::Output {
    use std::process::Stdio;

    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + limit;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
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
    let budget = Duration::from_secs(3);
    let mut cmd = companion(&format!("postgres://u@127.0.0.1:{}/db", closed_port()));
    cmd.args(["--connect-timeout", "3s", "migrate-info"]);
    let started = Instant::now();
    let out = output_within(cmd, budget + Duration::from_secs(10));
    let elapsed = started.elapsed();
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    assert!(
        elapsed >= budget.mul_f64(0.9) && elapsed < budget + Duration::from_secs(2),
        "gave up after {elapsed:?} for a {budget:?} budget: {}",
        describe(&out)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("raise --connect-timeout"),
        "{}",
        describe(&out)
    );
}

#[test]
fn connect_timeout_bounds_an_attempt_to_a_host_that_never_answers() {
    // The kernel completes the handshake into the backlog; nobody ever reads or answers.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    let budget = Duration::from_secs(2);
    let mut cmd = companion(&format!("postgres://u@127.0.0.1:{port}/db"));
    cmd.args(["--connect-timeout", "2s", "migrate-info"]);
    let started = Instant::now();
    let out = output_within(cmd, budget + Duration::from_secs(10));
    let elapsed = started.elapsed();
    drop(silent);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    assert!(
        elapsed >= budget.mul_f64(0.9) && elapsed < budget + Duration::from_secs(2),
        "gave up after {elapsed:?} for a {budget:?} budget: {}",
        describe(&out)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("no answer within"),
        "{}",
        describe(&out)
    );
}

/// Serves one task metadata v4 response on 127.0.0.1 and returns the endpoint's base
/// URL (what ECS puts in `ECS_CONTAINER_METADATA_URI_V4`) and the request it got.
fn metadata_endpoint(task_arn: &str) -> (String, std::thread::JoinHandle<String>) {
    use std::io::{Read, Write};

    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!(
        "http://{}/v4/0123-container",
        listener.local_addr().unwrap()
    );
    let body = serde_json::json!({
        "Cluster": "arn:aws:ecs:eu-west-1:123456789012:cluster/everruns",
        "TaskARN": task_arn,
        "Family": "everruns-admin",
    })
    .to_string();
    // Bounded, so that a companion that never calls fails the test instead of hanging it.
    listener.set_nonblocking(true).unwrap();
    let server = std::thread::spawn(move || {
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut conn = loop {
            match listener.accept() {
                Ok((conn, _)) => break conn,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    if Instant::now() > deadline {
                        return String::new();
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(e) => panic!("accept: {e}"),
            }
        };
        conn.set_nonblocking(false).unwrap();
        conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut request = Vec::new();
        let mut buf = [0u8; 1024];
        while !request.ends_with(b"\r\n\r\n") {
            let n = conn.read(&mut buf).unwrap();
            assert!(n > 0, "the request ended early");
            request.extend_from_slice(&buf[..n]);
        }
        // Chunked, as the ECS agent's Go server sends larger documents.
        let (a, b) = body.split_at(body.len() / 2);
        write!(
            conn,
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n\
             {:x}\r\n{a}\r\n{:x}\r\n{b}\r\n0\r\n\r\n",
            a.len(),
            b.len()
        )
        .unwrap();
        String::from_utf8(request).unwrap()
    });
    (base, server)
}

#[test]
fn shell_without_a_terminal_names_its_own_task_in_the_attach_hint() {
    let id = "5f0c2b7e9a1d4c3b8e6f7a0b1c2d3e4f";
    let (base, server) = metadata_endpoint(&format!(
        "arn:aws:ecs:eu-west-1:123456789012:task/everruns/{id}"
    ));
    let out = companion("postgres://unused@127.0.0.1:1/db")
        .env("ECS_CONTAINER_METADATA_URI_V4", &base)
        .args(["shell", "--max-idle", "1s"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let request = server.join().unwrap();
    assert!(
        request.starts_with("GET /v4/0123-container/task HTTP/1.1\r\n"),
        "{request}"
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(&format!("run-admin-task shell --task {id}"))
            && stdout.contains(&format!("--command /bin/bash --task {id}"))
            && !stdout.contains("<task-id>"),
        "the hint names the task: {stdout}"
    );
    assert_eq!(result_summary(&out)["task_id"], id);
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
