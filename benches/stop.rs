//! Benchmark: signal to a free database. `cargo bench --bench stop` runs a migration
//! that takes `ACCESS EXCLUSIVE` on `llm_providers` and sleeps, sends SIGTERM, SIGINT or
//! SIGKILL once the statement runs, and times until no session of the companion runs a
//! statement or holds a lock (polled with psql, about 20 ms a probe). Median of 10 each;
//! SIGKILL with the default `--client-check-interval` (5 s).

// A bench uses only part of the tests' fixtures.
#[allow(dead_code)]
#[path = "../tests/common/mod.rs"]
mod common;

use std::process::Stdio;
use std::time::{Duration, Instant};

const RUNS: usize = 10;
const SLOW: &str = "LOCK TABLE llm_providers IN ACCESS EXCLUSIVE MODE;\nSELECT pg_sleep(60);\n";

fn busy(url: &str, what: &str) -> bool {
    common::psql(
        url,
        &format!(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() \
             AND application_name = 'everruns-admin' AND {what}"
        ),
    ) != "0"
}

fn main() {
    let image = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(common::migrations_dir()).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, image.path().join(path.file_name().unwrap())).unwrap();
    }
    std::fs::write(image.path().join("20991231000001_slow_rewrite.sql"), SLOW).unwrap();
    for (name, signal) in [
        ("SIGTERM", libc::SIGTERM),
        ("SIGINT", libc::SIGINT),
        ("SIGKILL", libc::SIGKILL),
    ] {
        let db = common::migrated_database();
        let mut times = Vec::new();
        for _ in 0..RUNS {
            let child = common::companion(&db.url)
                .args(["migrate", "--source"])
                .arg(image.path())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            while !busy(&db.url, "state = 'active' AND query LIKE '%pg_sleep%'") {
                std::thread::sleep(Duration::from_millis(20));
            }
            let sent = Instant::now();
            common::send_signal(child.id(), signal);
            while busy(&db.url, "state <> 'idle'")
                || common::psql(
                    &db.url,
                    "SELECT count(*) FROM pg_locks WHERE relation = 'llm_providers'::regclass \
                     OR locktype = 'advisory'",
                ) != "0"
            {
                assert!(sent.elapsed() < Duration::from_secs(30), "never freed");
            }
            times.push(sent.elapsed().as_secs_f64());
            let _ = common::output_within(child, Duration::from_secs(10));
        }
        times.sort_by(f64::total_cmp);
        println!(
            "{name} -> database free: median {:.3} s, min {:.3} s, max {:.3} s over {RUNS} runs",
            times[RUNS / 2],
            times[0],
            times[RUNS - 1]
        );
    }
}
