//! Benchmark of the launcher against the local emulator: `cargo bench --bench launcher`.
//!
//! Prints (1) the time from process start to the first AWS request, (2) the time from
//! the task reaching STOPPED (the emulator's `stoppedAt`) to the launcher's exit for a
//! short companion task, and (3) DescribeTasks and GetLogEvents calls per minute while
//! a long task runs, counted by the emulator.

#[path = "../tests/common/mod.rs"]
mod common;

use common::KEK_V2;

use std::io::Read;
use std::net::TcpListener;
use std::process::Stdio;
use std::time::{Instant, SystemTime};

use common::emulator::{Emulator, Secrets};

fn median(mut values: Vec<f64>) -> (f64, f64, f64) {
    values.sort_by(f64::total_cmp);
    (
        values[values.len() / 2],
        values[0],
        values[values.len() - 1],
    )
}

/// Start to first byte of the first request, on a listener that never answers.
fn first_request_latency(emu: &Emulator) -> Vec<f64> {
    (0..10)
        .map(|_| {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            let endpoint = format!("http://{}", listener.local_addr().unwrap());
            let started = Instant::now();
            let mut child = emu
                .launcher()
                .env("AWS_ENDPOINT_URL", &endpoint)
                .arg("migrate-info")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            let (mut socket, _) = listener.accept().unwrap();
            let mut byte = [0u8; 1];
            socket.read_exact(&mut byte).unwrap();
            let elapsed = started.elapsed().as_secs_f64() * 1000.0;
            let _ = child.kill();
            let _ = child.wait();
            elapsed
        })
        .collect()
}

/// Seconds from the task's `stoppedAt` to the launcher's exit.
fn stopped_to_exit(emu: &Emulator) -> Vec<f64> {
    (0..10)
        .map(|_| {
            let out = emu
                .launcher()
                .args(["--output", "json", "migrate-info"])
                .output()
                .unwrap();
            let exited = SystemTime::now();
            assert_eq!(out.status.code(), Some(0), "{}", common::describe(&out));
            let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
            let stopped: chrono::DateTime<chrono::Utc> =
                serde_json::from_value(report["stopped_at"].clone()).unwrap();
            let exited: chrono::DateTime<chrono::Utc> = exited.into();
            (exited - stopped).as_seconds_f64()
        })
        .collect()
}

/// API calls per minute while a task runs for `seconds`, from the emulator's counts.
fn calls_per_minute(emu: &Emulator, seconds: u64) -> (f64, f64) {
    let before = emu.request_counts();
    let out = emu
        .launcher()
        .args([
            "--task-definition",
            "everruns-admin-generic",
            "run",
            "--",
            "sleep",
        ])
        .arg(seconds.to_string())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", common::describe(&out));
    let after = emu.request_counts();
    let per_minute = |action: &str| {
        let n = after.get(action).copied().unwrap_or(0) - before.get(action).copied().unwrap_or(0);
        n as f64 * 60.0 / seconds as f64
    };
    (per_minute("DescribeTasks"), per_minute("GetLogEvents"))
}

fn main() {
    let db = common::cluster().create_database();
    let emu = Emulator::start(&Secrets {
        database_url: &db.url,
        key: KEK_V2,
        previous: None,
    });

    let (med, min, max) = median(first_request_latency(&emu));
    println!(
        "launcher start to first AWS request: median {med:.1} ms (min {min:.1}, max {max:.1}) over 10 runs"
    );

    let (med, min, max) = median(stopped_to_exit(&emu));
    println!(
        "task STOPPED to launcher exit (migrate-info): median {med:.2} s (min {min:.2}, max {max:.2}) over 10 runs"
    );

    let seconds = std::env::var("EVERRUNS_BENCH_LONG_TASK_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60);
    let started = Instant::now();
    let (describe, logs) = calls_per_minute(&emu, seconds);
    println!(
        "while a {seconds} s task runs (whole run {:.1} s, drain included): DescribeTasks {describe:.1}/min, GetLogEvents {logs:.1}/min",
        started.elapsed().as_secs_f64()
    );
}
