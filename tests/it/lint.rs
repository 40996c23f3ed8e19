//! The migration linter: the corpus of a dangerous and a safe example per rule, the
//! offline `lint` command, and, against a real PostgreSQL, the gate in `migrate-info
//! --check` and `migrate` judged with live table sizes, allowances in the file, and
//! `lock_timeout` with retries.

use std::path::Path;
use std::time::Duration;

use crate::common::{TestDatabase, companion, describe, migrated_database, psql, result_summary};
use everruns_admin::contract::findings::Severity;
use everruns_admin::seam::RULES;
use everruns_admin::seam::{Judged, MigrationSource, lint};

const CORPUS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/lint-corpus");

fn offline_rules(sql: &str) -> Vec<(String, Severity)> {
    let source = MigrationSource {
        version: 1,
        description: "corpus",
        sql,
        no_transaction: sql.starts_with("-- no-transaction"),
        file: "corpus.sql",
    };
    lint(&[source], &Judged::Offline)
        .unwrap()
        .into_iter()
        .map(|f| (f.rule, f.severity))
        .collect()
}

#[test]
fn every_rule_has_a_dangerous_and_a_safe_example() {
    for rule in RULES {
        let dir = Path::new(CORPUS).join(rule.id);
        let read = |name: &str| {
            std::fs::read_to_string(dir.join(name))
                .unwrap_or_else(|e| panic!("{}/{name}: {e}", dir.display()))
        };
        let dangerous = offline_rules(&read("dangerous.sql"));
        assert!(
            dangerous
                .iter()
                .any(|(id, s)| *id == rule.id && *s != Severity::Suppressed),
            "{}: dangerous.sql gives {dangerous:?}",
            rule.id
        );
        let safe = offline_rules(&read("safe.sql"));
        assert!(
            !safe
                .iter()
                .any(|(id, s)| *id == rule.id && *s != Severity::Suppressed),
            "{}: safe.sql gives {safe:?}",
            rule.id
        );
    }
}

#[test]
fn the_readme_lists_every_rule_as_the_linter_reports_it() {
    let readme = include_str!("../../README.md");
    let table: Vec<&str> = readme
        .lines()
        .skip_while(|l| !l.starts_with("| rule | lock it takes |"))
        .skip(2)
        .take_while(|l| l.starts_with('|'))
        .collect();
    let rows: Vec<String> = RULES
        .iter()
        .map(|r| format!("| `{}` | {} | {} | {} |", r.id, r.lock, r.why, r.fix))
        .collect();
    assert_eq!(table, rows, "README's rule table, in RULES' order");
}

/// A folder with the project's migrations plus `extra` (file name, SQL).
fn source_with(extra: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations")).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, dir.path().join(path.file_name().unwrap())).unwrap();
    }
    for (name, sql) in extra {
        std::fs::write(dir.path().join(name), sql).unwrap();
    }
    dir
}

fn lint_command(args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_everruns-admin"))
        .arg("--output")
        .arg("json")
        .arg("lint")
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn the_projects_own_migrations_lint_clean() {
    let out = lint_command(&[]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let summary = result_summary(&out);
    assert_eq!(summary["findings"], serde_json::json!([]), "{summary}");
    assert_eq!(summary["counts"]["migrations"], 4);
}

#[test]
fn lint_exits_6_on_a_blocking_finding_and_since_skips_older_files() {
    let dir = source_with(&[(
        "20990101000000_index_name.sql",
        "CREATE INDEX llm_providers_type_idx ON llm_providers (provider_type);\n",
    )]);
    let path = dir.path().to_str().unwrap();
    let out = lint_command(&["--source", path]);
    assert_eq!(out.status.code(), Some(6), "{}", describe(&out));
    let summary = result_summary(&out);
    let finding = &summary["findings"][0];
    assert_eq!(finding["rule"], "index-not-concurrent", "{summary}");
    assert_eq!(
        finding["file"],
        format!("{path}/20990101000000_index_name.sql"),
        "named where it is, not where the project keeps its own"
    );
    assert_eq!(finding["line"], 1);
    assert_eq!(finding["table"], "llm_providers");
    assert_eq!(finding["severity"], "blocking");
    assert!(finding["fix"].as_str().unwrap().contains("CONCURRENTLY"));
    let out = lint_command(&["--source", path, "--since", "20990101000000"]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert_eq!(result_summary(&out)["counts"]["migrations"], 0);
}

#[test]
fn a_folder_without_migrations_is_a_usage_error() {
    let empty = tempfile::tempdir().unwrap();
    let out = lint_command(&["--source", empty.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("holds no migrations"),
        "{}",
        describe(&out)
    );
}

fn gate(db: &TestDatabase, source: &Path) -> std::process::Output {
    companion(&db.url)
        .args(["migrate-info", "--check", "--source"])
        .arg(source)
        .output()
        .unwrap()
}

fn fill(db: &TestDatabase, rows: usize) {
    psql(
        &db.url,
        &format!(
            "INSERT INTO llm_providers (name, provider_type) \
             SELECT 'p' || i, 'openai' FROM generate_series(1, {rows}) i; ANALYZE llm_providers"
        ),
    );
}

const DANGEROUS: (&str, &str) = (
    "20990101000000_index_provider_type.sql",
    "CREATE INDEX llm_providers_type_idx ON llm_providers (provider_type);\n",
);

#[test]
fn a_dangerous_migration_blocks_on_a_large_table_and_warns_on_a_small_one() {
    let dir = source_with(&[DANGEROUS]);
    let small = migrated_database();
    fill(&small, 50);
    let out = gate(&small, dir.path());
    assert_eq!(
        out.status.code(),
        Some(3),
        "pending, only a warning: {}",
        describe(&out)
    );
    let finding = result_summary(&out)["findings"][0].clone();
    assert_eq!(finding["severity"], "warning", "{finding}");
    assert_eq!(finding["rows"], 50, "{finding}");

    let large = migrated_database();
    fill(&large, 20_000);
    let out = gate(&large, dir.path());
    assert_eq!(out.status.code(), Some(6), "{}", describe(&out));
    let finding = result_summary(&out)["findings"][0].clone();
    assert_eq!(finding["severity"], "blocking", "{finding}");
    assert_eq!(finding["rows"], 20_000, "{finding}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("20.0 k rows"),
        "the size is in the log: {text}"
    );

    // A threshold above the table's size makes it a warning again.
    let out = companion(&large.url)
        .args([
            "migrate-info",
            "--check",
            "--large-table-rows",
            "50000",
            "--source",
        ])
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3), "{}", describe(&out));

    // migrate refuses it with 6 and applies nothing.
    let out = companion(&large.url)
        .args(["migrate", "--source"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(6), "{}", describe(&out));
    assert_eq!(
        result_summary(&out)["findings"][0]["rule"],
        "index-not-concurrent"
    );
    let indexes = psql(
        &large.url,
        "SELECT count(*) FROM pg_indexes WHERE indexname = 'llm_providers_type_idx'",
    );
    assert_eq!(indexes.trim(), "0");
    let recorded = psql(
        &large.url,
        "SELECT count(*) FROM _sqlx_migrations WHERE version = 20990101000000",
    );
    assert_eq!(recorded.trim(), "0", "nothing applied");
}

#[test]
fn a_dropped_index_is_judged_by_its_table_and_an_enum_value_by_the_server() {
    let dir = source_with(&[
        (
            "20990101000000_drop_status_index.sql",
            "DROP INDEX llm_providers_status_idx;\n",
        ),
        (
            "20990101000100_provider_kind.sql",
            "CREATE TYPE provider_kind AS ENUM ('openai');\nALTER TYPE provider_kind ADD VALUE 'gemini';\n",
        ),
    ]);
    let rules = |out: &std::process::Output| -> Vec<(String, String, String)> {
        result_summary(out)["findings"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| {
                (
                    f["rule"].as_str().unwrap().to_owned(),
                    f["severity"].as_str().unwrap().to_owned(),
                    f["table"].as_str().unwrap().to_owned(),
                )
            })
            .collect()
    };
    let small = migrated_database();
    fill(&small, 50);
    let out = gate(&small, dir.path());
    assert_eq!(out.status.code(), Some(3), "{}", describe(&out));
    // The live server is PostgreSQL 12 or newer: ADD VALUE in a transaction is fine.
    assert_eq!(
        rules(&out),
        [(
            "drop-index-not-concurrent".to_owned(),
            "warning".to_owned(),
            "llm_providers".to_owned()
        )]
    );

    let large = migrated_database();
    fill(&large, 20_000);
    let out = gate(&large, dir.path());
    assert_eq!(out.status.code(), Some(6), "{}", describe(&out));
    assert_eq!(rules(&out)[0].1, "blocking", "{}", describe(&out));

    // Offline, the table is unknown (counted large) and so is the server.
    let out = lint_command(&[
        "--source",
        dir.path().to_str().unwrap(),
        "--since",
        "20250101000300",
    ]);
    assert_eq!(out.status.code(), Some(6), "{}", describe(&out));
    let offline = rules(&out);
    assert!(
        offline.contains(&(
            "drop-index-not-concurrent".into(),
            "blocking".into(),
            String::new()
        )) && offline.contains(&(
            "enum-value-in-transaction".into(),
            "warning".into(),
            "provider_kind".into()
        )),
        "{offline:?}"
    );
}

#[test]
fn drift_outranks_unsafe_which_outranks_pending() {
    let dir = source_with(&[DANGEROUS]);
    let db = migrated_database();
    fill(&db, 20_000);
    psql(
        &db.url,
        "UPDATE _sqlx_migrations SET checksum = '\\x00' WHERE version = 20250101000100",
    );
    let out = gate(&db, dir.path());
    assert_eq!(out.status.code(), Some(4), "{}", describe(&out));
}

#[test]
fn an_allowed_finding_passes_and_is_listed() {
    let dir = source_with(&[(
        "20990101000000_index_provider_type.sql",
        "-- everruns-admin:allow index-not-concurrent built in the 02:00 window, writes paused\n\
         CREATE INDEX llm_providers_type_idx ON llm_providers (provider_type);\n",
    )]);
    let db = migrated_database();
    fill(&db, 20_000);
    let out = companion(&db.url)
        .args(["migrate", "--source"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let finding = result_summary(&out)["findings"][0].clone();
    assert_eq!(finding["severity"], "suppressed", "{finding}");
    assert_eq!(
        finding["reason"], "built in the 02:00 window, writes paused",
        "{finding}"
    );
}

#[test]
fn lock_timeout_survives_a_reset_in_the_migration() {
    let dir = source_with(&[(
        "20990101000000_show_lock_timeout.sql",
        "RESET lock_timeout;\n\
         CREATE TABLE lock_timeout_seen AS SELECT current_setting('lock_timeout') AS value;\n",
    )]);
    let db = migrated_database();
    let out = companion(&db.url)
        .args(["migrate", "--ddl-lock-timeout", "3s", "--source"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert_eq!(
        psql(&db.url, "SELECT value FROM lock_timeout_seen").trim(),
        "3s"
    );
}

#[test]
fn a_migration_blocked_by_a_lock_is_retried_and_succeeds_once_it_is_released() {
    let dir = source_with(&[(
        "20990101000000_add_region.sql",
        "ALTER TABLE llm_providers ADD COLUMN region text;\n",
    )]);
    let db = migrated_database();
    // Another session holds a lock on the table, then lets go after a few seconds.
    let mut holder = std::process::Command::new("psql")
        .args(["-X", "-q", "-d", &db.url, "-c"])
        .arg(
            "BEGIN; LOCK TABLE llm_providers IN ACCESS SHARE MODE; \
             SELECT pg_sleep(2.5); COMMIT;",
        )
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let out = companion(&db.url)
        .args([
            "migrate",
            "--ddl-lock-timeout",
            "500ms",
            "--lock-retries",
            "4",
            "--source",
        ])
        .arg(dir.path())
        .output()
        .unwrap();
    let _ = holder.wait();
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(
            "waited longer than lock_timeout (500ms) for a lock on llm_providers, held by pid"
        ),
        "{text}"
    );
    let column = psql(
        &db.url,
        "SELECT count(*) FROM information_schema.columns WHERE table_name = 'llm_providers' AND column_name = 'region'",
    );
    assert_eq!(column.trim(), "1");
}
