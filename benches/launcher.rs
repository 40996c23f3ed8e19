//! Benchmark of the launcher against the local emulator: `cargo bench --bench launcher`.
//!
//! The emulator runs with Fargate's timings where they matter: a 30 s DEPROVISIONING,
//! the awslogs driver's 5 s batching, and the last batch sent 0.5 s after the exit code
//! is visible. Prints (1) the time from process start to the first AWS request, (2) the
//! time from the container's exit (the emulator's `executionStoppedAt`) to the
//! launcher's exit, for the companion and for a container that does not speak the log
//! protocol, (3) DescribeTasks and GetLogEvents calls per minute while a long task runs,
//! counted by the emulator, and (4) the time an endpoint that never answers takes to end
//! in exit 125 with the default timeouts.

// A bench uses only part of the tests' fixtures.
#[allow(dead_code)]
#[path = "../tests/common/mod.rs"]
mod common;

use common::KEK_V2;

use std::io::Read;
use std::net::TcpListener;
use std::process::Stdio;
use std::time::{Instant, SystemTime};

use common::emulator::{Emulator, Secrets};

/// How long after a container's exit the emulator sends its last log batch: the part of
/// "container exit to launcher exit" that is the log driver's, not the launcher's.
const FINAL_FLUSH: &str = "0.5";

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

/// Seconds from the container's exit (`executionStoppedAt`) to the launcher's exit.
fn exit_to_exit(emu: &Emulator, args: &[&str]) -> Vec<f64> {
    (0..10)
        .map(|_| {
            let out = emu
                .launcher()
                .args(["--output", "json"])
                .args(args)
                .output()
                .unwrap();
            let exited = SystemTime::now();
            assert_eq!(out.status.code(), Some(0), "{}", common::describe(&out));
            let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
            let container_exit: chrono::DateTime<chrono::Utc> =
                serde_json::from_value(report["execution_stopped_at"].clone()).unwrap();
            let exited: chrono::DateTime<chrono::Utc> = exited.into();
            (exited - container_exit).as_seconds_f64()
        })
        .collect()
}

/// Seconds until the launcher exits 125 against an endpoint that accepts connections
/// and never answers, with the default timeouts.
fn silent_endpoint_to_125(emu: &Emulator) -> f64 {
    let silent = common::emulator::SilentEndpoint::start();
    let started = Instant::now();
    let out = emu
        .launcher()
        .env("AWS_ENDPOINT_URL", &silent.url)
        .args(["run", "--", "echo", "x"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(125), "{}", common::describe(&out));
    started.elapsed().as_secs_f64()
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

/// One `reencrypt --shards N` job: its GetLogEvents and DescribeTasks per second over
/// the job (from the report's `api_calls`), and seconds from the last container's exit
/// to the launcher's exit.
fn sharded(emu: &Emulator, shards: u32) -> (f64, f64, f64) {
    let started = Instant::now();
    let out = emu
        .launcher()
        .args(["--output", "json", "reencrypt", "--shards"])
        .arg(shards.to_string())
        .output()
        .unwrap();
    let exited = SystemTime::now();
    let seconds = started.elapsed().as_secs_f64();
    assert_eq!(out.status.code(), Some(0), "{}", common::describe(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let rate = |api: &str| report["api_calls"][api].as_f64().unwrap_or_default() / seconds;
    let last_exit = report["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|t| {
            serde_json::from_value::<chrono::DateTime<chrono::Utc>>(
                t["execution_stopped_at"].clone(),
            )
            .ok()
        })
        .max()
        .unwrap();
    let exited: chrono::DateTime<chrono::Utc> = exited.into();
    (
        rate("GetLogEvents"),
        rate("DescribeTasks"),
        (exited - last_exit).as_seconds_f64(),
    )
}

fn main() {
    let db = common::cluster().create_database();
    let emu = Emulator::start_with(
        &Secrets {
            database_url: &db.url,
            key: KEK_V2,
            previous: None,
        },
        &[
            "--state-delay",
            "DEPROVISIONING=30",
            "--log-batch-seconds",
            "5",
            "--final-flush-delay-seconds",
            FINAL_FLUSH,
        ],
    );

    let (med, min, max) = median(first_request_latency(&emu));
    println!(
        "launcher start to first AWS request: median {med:.1} ms (min {min:.1}, max {max:.1}) over 10 runs"
    );

    let (med, min, max) = median(exit_to_exit(&emu, &["migrate-info"]));
    println!(
        "container exit to launcher exit, companion (migrate-info): median {med:.2} s (min {min:.2}, max {max:.2}) over 10 runs; the emulator sends the last log batch {FINAL_FLUSH} s after the exit"
    );
    let plain = [
        "--task-definition",
        "everruns-admin-generic",
        "run",
        "--",
        "echo",
        "hello",
    ];
    let (med, min, max) = median(exit_to_exit(&emu, &plain));
    println!(
        "container exit to launcher exit, no log protocol (run -- echo hello): median {med:.2} s (min {min:.2}, max {max:.2}) over 10 runs"
    );
    println!(
        "endpoint that never answers to exit 125 (default timeouts): {:.1} s",
        silent_endpoint_to_125(&emu)
    );

    assert_eq!(
        emu.launcher()
            .arg("migrate")
            .output()
            .unwrap()
            .status
            .code(),
        Some(0)
    );
    for shards in [1, 8, 32] {
        let runs: Vec<(f64, f64, f64)> = (0..3).map(|_| sharded(&emu, shards)).collect();
        let (logs, _, _) = median(runs.iter().map(|r| r.0).collect());
        let (describes, _, _) = median(runs.iter().map(|r| r.1).collect());
        let (lag, min, max) = median(runs.iter().map(|r| r.2).collect());
        println!(
            "reencrypt --shards {shards}: GetLogEvents {logs:.2}/s, DescribeTasks {describes:.2}/s over the job; last container exit to launcher exit median {lag:.2} s (min {min:.2}, max {max:.2}) over 3 runs"
        );
    }

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
