//! Benchmark of the migration linter: `cargo bench --bench lint`.
//!
//! Writes 200 migrations of the kinds a project accumulates (tables, columns, indexes,
//! constraints, a trigger function, some dangerous statements, allowances) and times
//! `everruns-admin lint --source DIR` over them end to end (process start, reading,
//! parsing with PostgreSQL's parser, the rules), ten times, and the library's `lint`
//! alone. Goal: the whole command under 1 s.

use std::time::Instant;

use everruns_admin::seam::{Judged, MigrationSource, lint};

const MIGRATIONS: usize = 200;

fn migration(i: usize) -> String {
    let t = format!("table_{}", i / 5);
    match i % 5 {
        0 => format!(
            "CREATE TABLE {t} (\n    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),\n    name TEXT NOT NULL,\n    created_at TIMESTAMPTZ NOT NULL DEFAULT now()\n);\nCREATE INDEX {t}_name_idx ON {t} (name);\n"
        ),
        1 => format!(
            "ALTER TABLE {t} ADD COLUMN note text;\nALTER TABLE {t} ADD COLUMN retries integer NOT NULL DEFAULT 0;\n"
        ),
        2 => format!(
            "-- no-transaction\nCREATE INDEX CONCURRENTLY {t}_created_idx ON {t} (created_at);\n"
        ),
        3 => format!(
            "ALTER TABLE {t} ADD CONSTRAINT {t}_name_nn CHECK (name IS NOT NULL) NOT VALID;\nALTER TABLE {t} VALIDATE CONSTRAINT {t}_name_nn;\n-- everruns-admin:allow drop-column the column was never read\nALTER TABLE {t} DROP COLUMN note;\n"
        ),
        _ => format!(
            "CREATE FUNCTION {t}_touch() RETURNS trigger AS $$\nBEGIN\n    NEW.created_at := now();\n    RETURN NEW;\nEND;\n$$ LANGUAGE plpgsql;\nCREATE TRIGGER {t}_touch BEFORE UPDATE ON {t} FOR EACH ROW EXECUTE FUNCTION {t}_touch();\n"
        ),
    }
}

fn main() {
    let dir = tempfile::tempdir().unwrap();
    let sources: Vec<(i64, String, String)> = (0..MIGRATIONS)
        .map(|i| {
            let version = 20260101000000 + i as i64;
            let description = format!("step {i}");
            let sql = migration(i);
            std::fs::write(dir.path().join(format!("{version}_step_{i}.sql")), &sql).unwrap();
            (version, description, sql)
        })
        .collect();

    let mut runs = Vec::new();
    let mut last = None;
    for _ in 0..10 {
        let started = Instant::now();
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_everruns-admin"))
            .args(["--output", "json", "lint", "--source"])
            .arg(dir.path())
            .output()
            .unwrap();
        runs.push(started.elapsed().as_secs_f64());
        last = Some(out);
    }
    let out = last.unwrap();
    let result: serde_json::Value =
        serde_json::from_str(String::from_utf8_lossy(&out.stdout).lines().last().unwrap()).unwrap();
    assert_eq!(result["summary"]["counts"]["migrations"], MIGRATIONS);
    runs.sort_by(f64::total_cmp);

    let migrations: Vec<MigrationSource<'_>> = sources
        .iter()
        .map(|(version, description, sql)| MigrationSource {
            version: *version,
            description,
            sql,
            no_transaction: sql.starts_with("-- no-transaction"),
            file: description,
        })
        .collect();
    let started = Instant::now();
    let findings = lint(&migrations, &Judged::Offline).unwrap();
    let library = started.elapsed().as_secs_f64();

    println!("lint benchmark: {MIGRATIONS} migrations");
    println!(
        "  everruns-admin lint --source DIR: {:.0} ms median (min {:.0} ms, max {:.0} ms, 10 runs), exit {}",
        runs[runs.len() / 2] * 1000.0,
        runs[0] * 1000.0,
        runs[runs.len() - 1] * 1000.0,
        out.status.code().unwrap_or(-1)
    );
    println!(
        "  the library's lint alone: {:.1} ms ({} findings: {})",
        library * 1000.0,
        findings.len(),
        result["summary"]["counts"]
    );
}
