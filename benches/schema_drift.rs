//! Benchmark of the schema-drift check: `cargo bench --bench schema_drift`.
//!
//! Builds a schema of 200 tables (the project's migrations plus one that adds 196
//! tables, each with an identity key, a NOT NULL column with a default, a CHECK, an
//! index and a trigger), records its expected schema the way the test does (the
//! catalogue after each version), and times `everruns-admin migrate-info --check
//! --source DIR` end to end (process start, connection, history, lint of nothing
//! pending, the live catalogue read and the comparison), and the catalogue read alone.
//! Prints the size of the expected schema for 200 tables and of the project's own file,
//! which is what the binary carries. Goal: the command under 1 s.

// A bench uses only part of the tests' fixtures.
#[allow(dead_code)]
#[path = "../tests/common/mod.rs"]
mod common;

use std::time::Instant;

use everruns_admin::seam::{Catalog, ExpectedSchema};

const TABLES: usize = 196;

fn many_tables() -> String {
    let mut sql = String::from(
        "CREATE FUNCTION touch() RETURNS trigger AS $$\nBEGIN\n    NEW.updated_at := now();\n    RETURN NEW;\nEND;\n$$ LANGUAGE plpgsql;\n",
    );
    for i in 0..TABLES {
        sql.push_str(&format!(
            "CREATE TABLE bench_{i} (\n    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,\n    name TEXT NOT NULL CHECK (name <> ''),\n    state TEXT NOT NULL DEFAULT 'new',\n    updated_at TIMESTAMPTZ NOT NULL DEFAULT now()\n);\nCREATE INDEX bench_{i}_name_idx ON bench_{i} (name);\nCREATE TRIGGER bench_{i}_touch BEFORE UPDATE ON bench_{i} FOR EACH ROW EXECUTE FUNCTION touch();\n"
        ));
    }
    sql
}

fn main() {
    let source = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "sql") {
            std::fs::copy(&path, source.path().join(path.file_name().unwrap())).unwrap();
        }
    }
    std::fs::write(
        source.path().join("20990101000000_many_tables.sql"),
        many_tables(),
    )
    .unwrap();

    let db = common::cluster().create_database();
    let companion = |args: &[&str]| {
        let out = common::companion(&db.url)
            .args(args)
            .arg("--source")
            .arg(source.path())
            .output()
            .unwrap();
        (out.status.code(), out)
    };
    let catalog = Catalog::embedded();
    let versions = catalog
        .migrations()
        .iter()
        .map(|m| m.version)
        .chain([20990101000000]);
    let mut snapshots = Vec::new();
    for version in versions {
        let (code, out) = companion(&["migrate", "--target-version", &version.to_string()]);
        assert_eq!(code, Some(0), "{}", common::describe(&out));
        snapshots.push((version, common::schema_objects(&db.url).0));
    }
    let expected = ExpectedSchema::from_snapshots(&snapshots).to_text();
    std::fs::write(source.path().join("expected-schema.json"), &expected).unwrap();

    let mut runs = Vec::new();
    for _ in 0..7 {
        let started = Instant::now();
        let (code, out) = companion(&["migrate-info", "--check"]);
        runs.push(started.elapsed().as_secs_f64());
        assert_eq!(code, Some(0), "{}", common::describe(&out));
        let summary = common::result_summary(&out);
        assert_eq!(summary["schema_differences"], serde_json::json!([]));
    }
    runs.sort_by(f64::total_cmp);
    let mut reads: Vec<f64> = (0..7).map(|_| common::schema_objects(&db.url).1).collect();
    reads.sort_by(f64::total_cmp);
    let (live, _) = common::schema_objects(&db.url);
    let own = std::fs::metadata(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/migrations/expected-schema.json"
    ))
    .unwrap()
    .len();

    println!("schema of {} tables, {} objects", TABLES + 2, live.len());
    println!(
        "migrate-info --check (with the drift check), median of 7: {:.3} s (min {:.3}, max {:.3})",
        runs[3], runs[0], runs[6]
    );
    println!(
        "catalogue read alone, median of 7: {:.1} ms (min {:.1}, max {:.1})",
        reads[3] * 1000.0,
        reads[0] * 1000.0,
        reads[6] * 1000.0
    );
    println!(
        "expected schema of {} tables: {} bytes; the project's own (built into the binary): {own} bytes",
        TABLES + 2,
        expected.len()
    );
}
