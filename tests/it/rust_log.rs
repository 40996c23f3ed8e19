//! `RUST_LOG` only adds to the companion's output: under any filter, every info (and
//! warn, error) line, progress event and the result of the default run are still
//! written, because the log stream is all the launcher sees.

use std::collections::{BTreeSet, HashMap};
use std::process::{Command, Output};

use crate::common::{
    KEK_V1, KEK_V2, TestDatabase, cluster, companion, describe, events, migrated_database, psql,
};
use everruns_admin::envelope;
use everruns_admin::keyring::Key;
use serde_json::Value;

/// The forms operators write: a bare level, a level plus the companion, per-module
/// targets, a third-party crate only, and filters that try to quiet the companion.
const FILTERS: [&str; 11] = [
    "info",
    "debug",
    "info,everruns_admin=debug",
    "warn,everruns_admin=info",
    "everruns_admin::companion=debug",
    "sqlx=warn",
    "sqlx=debug",
    "error",
    "off",
    "everruns_admin=warn",
    "everruns_admin::companion::migrations=error,sqlx=off",
];

/// Digits vary between runs (durations, timestamps of fresh databases); the count of
/// each line shape does not.
fn shape(text: &str) -> String {
    let mut out = String::new();
    for c in text.chars() {
        if c.is_ascii_digit() {
            if !out.ends_with('#') {
                out.push('#');
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// The companion's own lines at info and above, by shape and count.
fn own_lines(out: &Output) -> HashMap<String, usize> {
    let mut lines = HashMap::new();
    for event in events(out) {
        if event["event"] == "log"
            && matches!(event["level"].as_str(), Some("info" | "warn" | "error"))
            // Lines of other crates carry their target as a prefix.
            && !event["msg"].as_str().unwrap_or("").starts_with("sqlx")
        {
            let key = format!(
                "{} {}",
                event["level"],
                shape(event["msg"].as_str().unwrap())
            );
            *lines.entry(key).or_default() += 1;
        }
    }
    lines
}

fn progress(out: &Output) -> BTreeSet<String> {
    events(out)
        .into_iter()
        .filter(|e| e["event"] == "progress")
        .map(|e| format!("{} {} {}", e["phase"], e["done"], e["total"]))
        .collect()
}

fn result_code(out: &Output) -> Value {
    let events = events(out);
    let last = events.last().cloned().unwrap_or_default();
    assert_eq!(last["event"], "result", "{}", describe(out));
    last["exit_code"].clone()
}

/// Runs `command` for the default filter and for each of [`FILTERS`] and asserts that
/// nothing the default run wrote is missing.
fn assert_nothing_lost(what: &str, command: impl Fn(Option<&str>) -> Command) {
    let baseline = command(None).output().unwrap();
    let base_lines = own_lines(&baseline);
    assert!(
        base_lines.keys().any(|l| l.starts_with("\"info\"")),
        "{what}: the default run has info lines: {}",
        describe(&baseline)
    );
    for filter in FILTERS {
        let out = command(Some(filter)).output().unwrap();
        assert_eq!(
            result_code(&out),
            result_code(&baseline),
            "{what} RUST_LOG={filter}"
        );
        let lines = own_lines(&out);
        for (line, count) in &base_lines {
            assert!(
                lines.get(line).copied().unwrap_or(0) >= *count,
                "{what} RUST_LOG={filter} lost {line} (x{count}):\n{}",
                describe(&out)
            );
        }
        let missing: Vec<_> = progress(&baseline)
            .difference(&progress(&out))
            .cloned()
            .collect();
        assert!(
            missing.is_empty(),
            "{what} RUST_LOG={filter} lost progress {missing:?}:\n{}",
            describe(&out)
        );
    }
}

fn with_filter(mut cmd: Command, filter: Option<&str>) -> Command {
    if let Some(filter) = filter {
        cmd.env("RUST_LOG", filter);
    }
    cmd
}

#[test]
fn migrate_info_keeps_every_line_under_any_rust_log() {
    let db = migrated_database();
    assert_nothing_lost("migrate-info", |filter| {
        let mut cmd = companion(&db.url);
        cmd.arg("migrate-info");
        with_filter(cmd, filter)
    });
}

#[test]
fn migrate_keeps_every_line_under_any_rust_log() {
    // Each run applies every migration to a database of its own.
    assert_nothing_lost("migrate", |filter| {
        let db = cluster().create_database();
        let mut cmd = companion(&db.url);
        cmd.arg("migrate");
        with_filter(cmd, filter)
    });
}

fn seed_a_few(db: &TestDatabase) {
    let old = Key::parse(KEK_V1).unwrap();
    for (i, table) in ["llm_providers", "mcp_servers"].into_iter().enumerate() {
        let value = envelope::encrypt(format!("secret-{i}").as_bytes(), &old).unwrap();
        let hex: String = value.iter().map(|b| format!("{b:02x}")).collect();
        let sql = match table {
            "llm_providers" => format!(
                "INSERT INTO llm_providers (name, provider_type, api_key_encrypted) \
                 VALUES ('p', 'openai', '\\x{hex}')"
            ),
            _ => format!(
                "INSERT INTO mcp_servers (name, url, auth_token_encrypted) \
                 VALUES ('m', 'http://mcp.example', '\\x{hex}')"
            ),
        };
        psql(&db.url, &sql);
    }
}

#[test]
fn reencrypt_keeps_every_line_under_any_rust_log() {
    let db = migrated_database();
    seed_a_few(&db);
    assert_nothing_lost("reencrypt --dry-run", |filter| {
        let mut cmd = companion(&db.url);
        cmd.args(["reencrypt", "--dry-run"])
            .env("SECRETS_ENCRYPTION_KEY", KEK_V2)
            .env("SECRETS_ENCRYPTION_KEY_PREVIOUS", KEK_V1);
        with_filter(cmd, filter)
    });
}

#[test]
fn an_invalid_rust_log_is_named_and_info_is_kept() {
    let db = migrated_database();
    let out = with_filter(
        {
            let mut cmd = companion(&db.url);
            cmd.arg("migrate-info");
            cmd
        },
        Some("sqlx=loud"),
    )
    .output()
    .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let warning = events(&out)
        .into_iter()
        .find(|e| e["level"] == "warn")
        .unwrap_or_else(|| panic!("no warning: {}", describe(&out)));
    let msg = warning["msg"].as_str().unwrap();
    assert!(
        msg.contains("RUST_LOG") && msg.contains("sqlx=loud") && msg.contains("using `info`"),
        "{msg}"
    );
    assert!(
        own_lines(&out)
            .keys()
            .any(|l| l.contains("the database is exactly at this image")),
        "{}",
        describe(&out)
    );
}
