//! Benchmark: `everruns-admin migrate` of 200 small migrations on an empty database.
//!
//! `cargo bench --bench migrate` prints the wall time of the whole command (process
//! start, connection, lock, 200 transactions) over a few runs, each on a fresh database.

// A bench uses only part of the tests' fixtures.
#[allow(dead_code)]
#[path = "../tests/common/mod.rs"]
mod common;

use std::time::Instant;

const MIGRATIONS: usize = 200;
const RUNS: usize = 5;

fn main() {
    let dir = tempfile::tempdir().unwrap();
    for i in 1..=MIGRATIONS {
        let sql = format!(
            "CREATE TABLE bench_{i} (id BIGSERIAL PRIMARY KEY, name TEXT NOT NULL, created_at TIMESTAMPTZ DEFAULT now());\n\
             CREATE INDEX bench_{i}_name ON bench_{i} (name);\n"
        );
        std::fs::write(dir.path().join(format!("{i:04}_bench_table_{i}.sql")), sql).unwrap();
    }
    let mut times = Vec::new();
    for _ in 0..RUNS {
        let db = common::cluster().create_database();
        let started = Instant::now();
        let out = common::companion(&db.url)
            .args(["migrate", "--source"])
            .arg(dir.path())
            .output()
            .unwrap();
        let elapsed = started.elapsed();
        assert_eq!(out.status.code(), Some(0), "{}", common::describe(&out));
        assert_eq!(
            common::psql(&db.url, "SELECT count(*) FROM _sqlx_migrations"),
            MIGRATIONS.to_string()
        );
        times.push(elapsed.as_secs_f64());
    }
    times.sort_by(f64::total_cmp);
    println!(
        "migrate {MIGRATIONS} migrations on an empty database: median {:.3} s, min {:.3} s, max {:.3} s over {RUNS} runs ({:.2} ms per migration, median)",
        times[RUNS / 2],
        times[0],
        times[RUNS - 1],
        times[RUNS / 2] * 1000.0 / MIGRATIONS as f64
    );
}
