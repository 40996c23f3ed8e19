//! `everruns-admin reencrypt` against a real PostgreSQL: batches, NULLs, undecryptable
//! values, dry runs, bad keys, a concurrent writer, kills, lost connections, and
//! output that never shows a secret.

use std::collections::HashMap;
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::common::both_streams;
use crate::common::{KEK_V1, KEK_V2};
use crate::common::{TestDatabase, companion, describe, events, migrated_database, result_summary};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use everruns_admin::envelope::{self, Envelope};
use everruns_admin::keyring::{Key, Keyring};
use serde_json::Value;
use sqlx::{Connection, PgConnection};
use uuid::Uuid;

/// Same id as KEK_V1, different bytes: a wrong previous key.
const WRONG_V1: &str = "kek-v1:MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";
const KEY_MATERIAL: [&str; 3] = [
    "AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyA",
    "ZWZnaGlqa2xtbm9wcXJzdHV2d3h5ent8fX5/gIGCg4Q",
    "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY",
];
const TABLES: [(&str, &str); 2] = [
    ("llm_providers", "api_key_encrypted"),
    ("mcp_servers", "auth_token_encrypted"),
];

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn both_keys() -> Keyring {
    Keyring::parse(KEK_V2, Some(KEK_V1)).unwrap()
}

fn key(spec: &str) -> Key {
    Key::parse(spec).unwrap()
}

async fn connect(url: &str) -> PgConnection {
    PgConnection::connect(url).await.unwrap()
}

/// What the seeded rows hold: per table, id -> plaintext (None for NULL).
type Expected = HashMap<(&'static str, Uuid), Option<String>>;

/// Inserts `n` rows into each table: every 4th NULL, every 9th already under the
/// primary key, the rest under kek-v1. Returns the plaintexts.
fn seed(db: &TestDatabase, n: usize) -> Expected {
    let old = key(KEK_V1);
    let new = key(KEK_V2);
    let mut expected = Expected::new();
    runtime().block_on(async {
        let mut conn = connect(&db.url).await;
        for (table, _) in TABLES {
            let mut names = Vec::new();
            let mut values: Vec<Option<Vec<u8>>> = Vec::new();
            let mut plaintexts = Vec::new();
            for i in 0..n {
                names.push(format!("{table}-{i}"));
                if i % 4 == 3 {
                    values.push(None);
                    plaintexts.push(None);
                } else {
                    let secret = format!("PLAINTEXT-{table}-{i}-{}", Uuid::new_v4().simple());
                    let k = if i.is_multiple_of(9) { &new } else { &old };
                    values.push(Some(envelope::encrypt(secret.as_bytes(), k).unwrap()));
                    plaintexts.push(Some(secret));
                }
            }
            let sql = match table {
                "llm_providers" => {
                    "INSERT INTO llm_providers (name, provider_type, api_key_encrypted) \
                     SELECT n, 'openai', v FROM UNNEST($1::text[], $2::bytea[]) AS u(n, v) \
                     RETURNING id, name"
                }
                _ => {
                    "INSERT INTO mcp_servers (name, url, auth_token_encrypted) \
                     SELECT n, 'http://mcp.example', v FROM UNNEST($1::text[], $2::bytea[]) AS u(n, v) \
                     RETURNING id, name"
                }
            };
            let rows: Vec<(Uuid, String)> = sqlx::query_as(sql)
                .bind(&names)
                .bind(&values)
                .fetch_all(&mut conn)
                .await
                .unwrap();
            for (id, name) in rows {
                let i: usize = name.rsplit('-').next().unwrap().parse().unwrap();
                expected.insert((table, id), plaintexts[i].clone());
            }
        }
    });
    expected
}

/// Every stored value: (table, id) -> bytes.
fn stored(db: &TestDatabase) -> HashMap<(&'static str, Uuid), Option<Vec<u8>>> {
    runtime().block_on(async {
        let mut conn = connect(&db.url).await;
        let mut all = HashMap::new();
        for (table, column) in TABLES {
            let rows: Vec<(Uuid, Option<Vec<u8>>)> =
                sqlx::query_as(&format!("SELECT id, {column} FROM {table}"))
                    .fetch_all(&mut conn)
                    .await
                    .unwrap();
            for (id, value) in rows {
                all.insert((table, id), value);
            }
        }
        all
    })
}

/// Asserts that every value is on kek-v2 (when `all_on_primary`) or on either key,
/// and decrypts to what `expected` says.
fn assert_values(db: &TestDatabase, expected: &Expected, all_on_primary: bool) {
    let ring = if all_on_primary {
        Keyring::parse(KEK_V2, None).unwrap()
    } else {
        both_keys()
    };
    let now = stored(db);
    assert_eq!(now.len(), expected.len());
    for (place, plaintext) in expected {
        let value = &now[place];
        match (plaintext, value) {
            (None, None) => {}
            (Some(p), Some(v)) => {
                let got = envelope::decrypt(v, &ring)
                    .unwrap_or_else(|e| panic!("{place:?} does not decrypt: {e}"));
                assert_eq!(&got[..], p.as_bytes(), "{place:?}");
            }
            _ => panic!("{place:?}: NULL-ness changed"),
        }
    }
}

fn reencrypt(db: &TestDatabase, primary: &str, previous: Option<&str>) -> Command {
    let mut cmd = companion(&db.url);
    cmd.arg("reencrypt").env("SECRETS_ENCRYPTION_KEY", primary);
    if let Some(previous) = previous {
        cmd.env("SECRETS_ENCRYPTION_KEY_PREVIOUS", previous);
    }
    cmd
}

fn count_of(summary: &Value, table: &str, field: &str) -> u64 {
    summary["tables"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["table"] == table)
        .unwrap_or_else(|| panic!("no {table} in {summary}"))[field]
        .as_u64()
        .unwrap()
}

fn non_null(expected: &Expected, table: &str) -> u64 {
    expected
        .iter()
        .filter(|((t, _), p)| *t == table && p.is_some())
        .count() as u64
}

fn on_primary(expected: &Expected, table: &str) -> u64 {
    // Rows with i % 9 == 0 and i % 4 != 3 were seeded on kek-v2.
    let n = expected.keys().filter(|(t, _)| *t == table).count();
    (0..n).filter(|i| i.is_multiple_of(9) && i % 4 != 3).count() as u64
}

#[test]
fn both_tables_with_nulls_at_several_batch_sizes() {
    for batch in ["1", "7", "100"] {
        let db = migrated_database();
        let expected = seed(&db, 45);
        let before = stored(&db);
        let out = reencrypt(&db, KEK_V2, Some(KEK_V1))
            .args(["-b", batch])
            .output()
            .unwrap();
        assert_eq!(
            out.status.code(),
            Some(0),
            "batch {batch}: {}",
            describe(&out)
        );
        let summary = result_summary(&out);
        assert_eq!(summary["outcome"], "completed");
        for (table, _) in TABLES {
            let scanned = non_null(&expected, table);
            let primary = on_primary(&expected, table);
            assert_eq!(count_of(&summary, table, "scanned"), scanned, "{summary}");
            assert_eq!(count_of(&summary, table, "already_on_primary"), primary);
            assert_eq!(count_of(&summary, table, "reencrypted"), scanned - primary);
            assert_eq!(count_of(&summary, table, "undecryptable"), 0);
        }
        assert_eq!(
            summary["by_key_id"]["kek-v2"]["already_on_primary"],
            on_primary(&expected, "llm_providers") + on_primary(&expected, "mcp_servers")
        );
        assert_values(&db, &expected, true);
        // Only the wrapping changed; values already on the primary were not rewritten.
        for (place, after) in stored(&db) {
            let (Some(after), Some(before)) = (after, &before[&place]) else {
                continue;
            };
            let (a, b) = (
                Envelope::parse(&after).unwrap(),
                Envelope::parse(before).unwrap(),
            );
            assert_eq!(a.ciphertext(), b.ciphertext());
            assert_eq!(a.nonce(), b.nonce());
            if b.key_id() == "kek-v2" {
                assert_eq!(&after, before, "a value on the primary was rewritten");
            }
        }
        let phases: Vec<String> = events(&out)
            .iter()
            .filter(|e| e["event"] == "progress")
            .map(|e| e["phase"].as_str().unwrap().to_owned())
            .collect();
        assert!(
            phases.contains(&"reencrypt llm_providers".to_owned()),
            "{phases:?}"
        );
        assert!(
            phases.contains(&"reencrypt mcp_servers".to_owned()),
            "{phases:?}"
        );

        let again = reencrypt(&db, KEK_V2, Some(KEK_V1))
            .args(["--batch-size", batch])
            .output()
            .unwrap();
        assert_eq!(again.status.code(), Some(0), "{}", describe(&again));
        let summary = result_summary(&again);
        for (table, _) in TABLES {
            assert_eq!(count_of(&summary, table, "reencrypted"), 0);
            assert_eq!(
                count_of(&summary, table, "already_on_primary"),
                non_null(&expected, table)
            );
        }
    }
}

#[test]
fn table_filter_touches_only_that_table() {
    let db = migrated_database();
    let expected = seed(&db, 20);
    let before = stored(&db);
    let out = reencrypt(&db, KEK_V2, Some(KEK_V1))
        .args(["-t", "mcp_servers"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let summary = result_summary(&out);
    assert_eq!(summary["tables"].as_array().unwrap().len(), 1);
    assert_eq!(
        count_of(&summary, "mcp_servers", "scanned"),
        non_null(&expected, "mcp_servers")
    );
    let after = stored(&db);
    for (place, value) in &after {
        if place.0 == "llm_providers" {
            assert_eq!(value, &before[place]);
        }
    }
}

fn tamper(db: &TestDatabase, table: &str, column: &str, id: Uuid) -> Vec<u8> {
    runtime().block_on(async {
        let mut conn = connect(&db.url).await;
        let value: Vec<u8> =
            sqlx::query_scalar(&format!("SELECT {column} FROM {table} WHERE id = $1"))
                .bind(id)
                .fetch_one(&mut conn)
                .await
                .unwrap();
        let mut doc: Value = serde_json::from_slice(&value).unwrap();
        let mut ct = STANDARD
            .decode(doc["ciphertext"].as_str().unwrap())
            .unwrap();
        ct[0] ^= 0x80;
        doc["ciphertext"] = Value::from(STANDARD.encode(ct));
        let tampered = serde_json::to_vec(&doc).unwrap();
        sqlx::query(&format!("UPDATE {table} SET {column} = $1 WHERE id = $2"))
            .bind(&tampered)
            .bind(id)
            .execute(&mut conn)
            .await
            .unwrap();
        tampered
    })
}

fn some_id_on(expected: &Expected, table: &str, nth: usize) -> Uuid {
    let mut ids: Vec<Uuid> = expected
        .iter()
        .filter(|((t, _), p)| *t == table && p.as_deref().is_some())
        .map(|((_, id), _)| *id)
        .collect();
    ids.sort();
    ids[nth]
}

#[test]
fn a_tampered_value_is_named_by_id_left_untouched_and_exits_5() {
    let db = migrated_database();
    let mut expected = seed(&db, 30);
    let id = some_id_on(&expected, "mcp_servers", 5);
    let tampered = tamper(&db, "mcp_servers", "auth_token_encrypted", id);
    let plain_text_row = some_id_on(&expected, "llm_providers", 3);
    runtime().block_on(async {
        let mut conn = connect(&db.url).await;
        sqlx::query(
            "UPDATE llm_providers SET api_key_encrypted = 'PLAINTEXT-stored-raw' WHERE id = $1",
        )
        .bind(plain_text_row)
        .execute(&mut conn)
        .await
        .unwrap();
    });
    let out = reencrypt(&db, KEK_V2, Some(KEK_V1))
        .args(["-b", "7"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(5), "{}", describe(&out));
    let summary = result_summary(&out);
    let listed = summary["undecryptable"].as_array().unwrap();
    assert_eq!(listed.len(), 2, "{summary}");
    let entry = listed.iter().find(|u| u["table"] == "mcp_servers").unwrap();
    assert_eq!(entry["id"], id.to_string());
    assert_eq!(entry["kind"], "authentication_failed");
    let entry = listed
        .iter()
        .find(|u| u["table"] == "llm_providers")
        .unwrap();
    assert_eq!(entry["id"], plain_text_row.to_string());
    assert_eq!(entry["kind"], "not_json");
    assert!(both_streams(&out).contains(&id.to_string()));
    assert!(!both_streams(&out).contains("PLAINTEXT-"), "content shown");
    let now = stored(&db);
    assert_eq!(
        now[&("mcp_servers", id)].as_deref(),
        Some(tampered.as_slice())
    );
    assert_eq!(
        now[&("llm_providers", plain_text_row)].as_deref(),
        Some(b"PLAINTEXT-stored-raw".as_slice())
    );
    expected.remove(&("mcp_servers", id));
    expected.remove(&("llm_providers", plain_text_row));
    let ring = Keyring::parse(KEK_V2, None).unwrap();
    for (place, plaintext) in &expected {
        if let Some(p) = plaintext {
            let value = now[place].as_ref().unwrap();
            assert_eq!(&envelope::decrypt(value, &ring).unwrap()[..], p.as_bytes());
        }
    }
}

/// A digest of both tables' whole rows, to show nothing was written.
fn fingerprint(db: &TestDatabase) -> String {
    crate::common::psql(
        &db.url,
        "SELECT md5(string_agg(t::text, '|' ORDER BY t::text)) FROM \
         (SELECT l::text AS t FROM llm_providers l UNION ALL SELECT m::text FROM mcp_servers m) s",
    )
}

#[test]
fn dry_run_decrypts_everything_and_writes_nothing() {
    let db = migrated_database();
    let expected = seed(&db, 30);
    let before = fingerprint(&db);
    let out = reencrypt(&db, KEK_V2, Some(KEK_V1))
        .arg("-n")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let summary = result_summary(&out);
    assert_eq!(summary["dry_run"], true);
    for (table, _) in TABLES {
        assert_eq!(
            count_of(&summary, table, "reencrypted"),
            non_null(&expected, table) - on_primary(&expected, table)
        );
    }
    assert_eq!(fingerprint(&db), before);

    let wrong = reencrypt(&db, KEK_V2, Some(WRONG_V1))
        .arg("--dry-run")
        .output()
        .unwrap();
    assert_eq!(wrong.status.code(), Some(5), "{}", describe(&wrong));
    let summary = result_summary(&wrong);
    let listed = summary["undecryptable"].as_array().unwrap();
    let expected_bad: u64 = TABLES
        .iter()
        .map(|(t, _)| non_null(&expected, t) - on_primary(&expected, t))
        .sum();
    assert_eq!(listed.len() as u64, expected_bad);
    assert!(listed.iter().all(|u| u["kind"] == "authentication_failed"));
    assert_eq!(fingerprint(&db), before);
}

/// Each malformed key setting, with what the message must name.
fn malformed_settings() -> Vec<(Option<String>, Option<String>, &'static str)> {
    let short = format!("kek-v2:{}", STANDARD.encode([1u8; 31]));
    vec![
        (None, Some(KEK_V1.into()), "SECRETS_ENCRYPTION_KEY"),
        (Some("kek-v2".into()), None, "SECRETS_ENCRYPTION_KEY"),
        (Some(KEY_MATERIAL[1].to_owned() + "="), None, "no ':'"),
        (Some(":".to_owned() + KEY_MATERIAL[1] + "="), None, "empty"),
        (
            Some("kek/2:".to_owned() + KEY_MATERIAL[1] + "="),
            None,
            "key id has characters",
        ),
        (Some("kek-v2:%%%%".into()), None, "(id kek-v2)"),
        (
            Some(short),
            None,
            "(id kek-v2): decodes to 31 bytes, expected 32",
        ),
        (
            Some(KEK_V2.into()),
            Some(format!("{KEK_V1},kek-v0:{}", STANDARD.encode([2u8; 33]))),
            "SECRETS_ENCRYPTION_KEY_PREVIOUS, key 2 (id kek-v0): decodes to 33 bytes",
        ),
        (
            Some(KEK_V2.into()),
            Some(format!("{KEK_V1}\n{KEK_V1}")),
            "SECRETS_ENCRYPTION_KEY_PREVIOUS, key 2 (id kek-v1)",
        ),
        (
            Some(KEK_V2.into()),
            Some(KEK_V2.into()),
            "SECRETS_ENCRYPTION_KEY_PREVIOUS, key 1 (id kek-v2)",
        ),
        (
            Some(format!("{KEK_V2},{KEK_V1}")),
            None,
            "SECRETS_ENCRYPTION_KEY: holds more than one key",
        ),
    ]
}

#[test]
fn malformed_keys_and_tables_are_exit_2_and_write_nothing() {
    let db = migrated_database();
    seed(&db, 10);
    let before = fingerprint(&db);
    for (primary, previous, named) in malformed_settings() {
        let mut cmd = companion(&db.url);
        cmd.arg("reencrypt");
        if let Some(p) = &primary {
            cmd.env("SECRETS_ENCRYPTION_KEY", p);
        }
        if let Some(p) = &previous {
            cmd.env("SECRETS_ENCRYPTION_KEY_PREVIOUS", p);
        }
        let out = cmd.output().unwrap();
        assert_eq!(
            out.status.code(),
            Some(2),
            "{primary:?} {previous:?}: {}",
            describe(&out)
        );
        let text = both_streams(&out);
        assert!(text.contains(named), "{named:?} not in {text}");
        for material in KEY_MATERIAL {
            assert!(
                !text.contains(&material[..16]),
                "key material shown: {text}"
            );
        }
        assert!(!text.contains("%%%%"));
        assert!(result_summary(&out)["error"].as_str().is_some());
    }
    let out = reencrypt(&db, KEK_V2, Some(KEK_V1))
        .args(["-t", "users"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    assert!(both_streams(&out).contains("llm_providers, mcp_servers"));
    let out = reencrypt(&db, KEK_V2, Some(KEK_V1))
        .args(["-b", "0"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    assert_eq!(fingerprint(&db), before);
}

#[test]
fn keys_are_checked_before_connecting() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!(
        "postgres://u:{}@127.0.0.1:{port}/none",
        crate::common::PASSWORD
    );
    let started = Instant::now();
    let out = companion(&url)
        .args(["reencrypt"])
        .env("SECRETS_ENCRYPTION_KEY", "kek-v2:short")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(!both_streams(&out).contains(crate::common::PASSWORD));
}

#[test]
fn a_concurrent_application_writer_is_never_overwritten() {
    let db = migrated_database();
    let mut expected = seed(&db, 400);
    // Old application instances still write with the previous key.
    let writer = Writer::start(&db, &expected, |n| {
        if n.is_multiple_of(2) { KEK_V1 } else { KEK_V2 }
    });
    std::thread::sleep(Duration::from_millis(200));
    let out = reencrypt(&db, KEK_V2, Some(KEK_V1))
        .args(["-b", "7"])
        .output()
        .unwrap();
    let written = writer.finish();
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    for (place, secret) in written {
        expected.insert(place, Some(secret));
    }
    assert_values(&db, &expected, false);
    let summary = result_summary(&out);
    eprintln!("with a concurrent writer: {summary}");
}

/// An application writing new values to random seeded rows until stopped.
struct Writer {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<HashMap<(&'static str, Uuid), String>>,
}

impl Writer {
    /// Starts writing to the non-NULL rows of `expected`, the n-th value under `key(n)`.
    fn start(db: &TestDatabase, expected: &Expected, key_of: fn(usize) -> &'static str) -> Writer {
        let ids: Vec<(&'static str, &'static str, Uuid)> = expected
            .iter()
            .filter(|(_, p)| p.is_some())
            .map(|((t, id), _)| {
                let column = TABLES.iter().find(|(name, _)| name == t).unwrap().1;
                (*t, column, *id)
            })
            .collect();
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let stop = Arc::clone(&stop);
            let url = db.url.clone();
            std::thread::spawn(move || {
                runtime().block_on(async move {
                    let mut conn = connect(&url).await;
                    let mut written = HashMap::new();
                    let mut n = 0usize;
                    while !stop.load(Ordering::SeqCst) {
                        let (table, column, id) = ids[fastrand::usize(..ids.len())];
                        let secret = format!("PLAINTEXT-writer-{n}");
                        let value = envelope::encrypt(secret.as_bytes(), &key(key_of(n))).unwrap();
                        sqlx::query(&format!("UPDATE {table} SET {column} = $1 WHERE id = $2"))
                            .bind(&value)
                            .bind(id)
                            .execute(&mut conn)
                            .await
                            .unwrap();
                        written.insert((table, id), secret);
                        n += 1;
                    }
                    written
                })
            })
        };
        Writer { stop, thread }
    }

    /// Stops it; returns the latest plaintext it wrote per row.
    fn finish(self) -> HashMap<(&'static str, Uuid), String> {
        self.stop.store(true, Ordering::SeqCst);
        let written = self.thread.join().unwrap();
        assert!(
            written.len() > 20,
            "the writer wrote too little: {}",
            written.len()
        );
        written
    }
}

/// The companion's session that holds the reencrypt lock (where batches are written),
/// or the other one (where pages are read).
fn companion_pid_in_database(db: &TestDatabase, holding_the_lock: bool) -> Option<i32> {
    let out = crate::common::psql(
        &db.url,
        &format!(
            "SELECT pid FROM pg_stat_activity a WHERE datname = '{}' \
             AND application_name = 'everruns-admin' AND {} EXISTS \
             (SELECT 1 FROM pg_locks l WHERE l.pid = a.pid AND l.locktype = 'advisory')",
            db.name,
            if holding_the_lock { "" } else { "NOT" }
        ),
    );
    out.lines().next().and_then(|l| l.trim().parse().ok())
}

fn count_on_primary(db: &TestDatabase) -> usize {
    stored(db)
        .values()
        .flatten()
        .filter(|v| {
            Envelope::parse(v)
                .map(|e| e.key_id() == "kek-v2")
                .unwrap_or(false)
        })
        .count()
}

/// Starts a slow reencrypt (one row per batch) and waits until it has written some.
fn start_slow_run(db: &TestDatabase, baseline_on_primary: usize) -> Child {
    let child = reencrypt(db, KEK_V2, Some(KEK_V1))
        .args(["-b", "1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while count_on_primary(db) < baseline_on_primary + 20 {
        assert!(Instant::now() < deadline, "reencrypt made no progress");
        std::thread::sleep(Duration::from_millis(50));
    }
    child
}

#[test]
fn sigkill_mid_run_then_rerun_leaves_every_value_on_the_primary() {
    let db = migrated_database();
    let expected = seed(&db, 1200);
    let baseline = count_on_primary(&db);
    let child = start_slow_run(&db, baseline);
    crate::common::send_signal(child.id(), libc::SIGKILL);
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), None, "killed by a signal");
    let part = count_on_primary(&db);
    assert!(part > baseline && part < stored(&db).values().flatten().count());
    assert_values(&db, &expected, false);
    let out = reencrypt(&db, KEK_V2, Some(KEK_V1)).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert_values(&db, &expected, true);
}

#[test]
fn sigterm_cancels_the_batch_in_flight_and_stops_cleanly() {
    signal_cancels_the_batch_in_flight(libc::SIGTERM, 143, "terminated", "SIGTERM");
}

#[test]
fn sigint_cancels_the_batch_in_flight_and_stops_cleanly() {
    signal_cancels_the_batch_in_flight(libc::SIGINT, 130, "interrupted", "SIGINT");
}

fn signal_cancels_the_batch_in_flight(signal: i32, code: i32, outcome: &str, name: &str) {
    let db = migrated_database();
    let expected = seed(&db, 1200);
    let baseline = count_on_primary(&db);
    let child = start_slow_run(&db, baseline);
    crate::common::send_signal(child.id(), signal);
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(code), "{}", describe(&out));
    let summary = result_summary(&out);
    assert_eq!(summary["outcome"], outcome);
    assert_eq!(summary["stopped"]["by"], name, "{summary}");
    assert_eq!(summary["stopped"]["database_released"], true, "{summary}");
    assert!(
        both_streams(&out).contains(&format!("interrupted by {name}")),
        "{}",
        describe(&out)
    );
    assert_values(&db, &expected, false);
    let out = reencrypt(&db, KEK_V2, Some(KEK_V1)).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert!(result_summary(&out)["by_key_id"]["kek-v2"]["already_on_primary"].as_u64() > Some(20));
    assert_values(&db, &expected, true);
}

#[test]
fn a_terminated_writing_connection_is_exit_1_and_the_rerun_completes() {
    a_terminated_connection_is_exit_1_and_the_rerun_completes(true);
}

#[test]
fn a_terminated_reading_connection_is_exit_1_and_the_rerun_completes() {
    a_terminated_connection_is_exit_1_and_the_rerun_completes(false);
}

fn a_terminated_connection_is_exit_1_and_the_rerun_completes(writing: bool) {
    let db = migrated_database();
    let expected = seed(&db, 1200);
    let baseline = count_on_primary(&db);
    let child = start_slow_run(&db, baseline);
    let pid = companion_pid_in_database(&db, writing).expect("the companion's session");
    crate::common::psql(&db.url, &format!("SELECT pg_terminate_backend({pid})"));
    // Bounded: the other half of the walk must not keep the run alive.
    let (out, in_time) = crate::common::output_within(child, Duration::from_secs(60));
    assert!(
        in_time,
        "reencrypt still running 60 s after its connection was terminated"
    );
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let text = both_streams(&out);
    assert!(text.contains("lost the database connection"), "{text}");
    assert!(text.contains("rerun"), "{text}");
    assert!(!text.contains(crate::common::PASSWORD));
    assert_values(&db, &expected, false);
    let out = reencrypt(&db, KEK_V2, Some(KEK_V1)).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert_values(&db, &expected, true);
}

#[test]
fn a_second_reencrypt_waits_a_bounded_time_and_names_the_holder() {
    let db = migrated_database();
    seed(&db, 5);
    runtime().block_on(async {
        let mut holder = connect(&db.url).await;
        let pid: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
            .fetch_one(&mut holder)
            .await
            .unwrap();
        sqlx::query("SELECT pg_advisory_lock($1)")
            .bind(everruns_admin::seam::LOCK_KEY)
            .execute(&mut holder)
            .await
            .unwrap();
        let url = db.url.clone();
        let out = tokio::task::spawn_blocking(move || {
            let mut cmd = companion(&url);
            cmd.args(["reencrypt", "--lock-timeout", "1s"])
                .env("SECRETS_ENCRYPTION_KEY", KEK_V2)
                .env("SECRETS_ENCRYPTION_KEY_PREVIOUS", KEK_V1);
            cmd.output().unwrap()
        })
        .await
        .unwrap();
        assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
        assert!(
            both_streams(&out).contains(&format!("pid {pid}")),
            "{}",
            describe(&out)
        );
    });
}

#[test]
fn no_key_plaintext_or_password_in_any_output() {
    let db = migrated_database();
    let expected = seed(&db, 40);
    tamper(
        &db,
        "llm_providers",
        "api_key_encrypted",
        some_id_on(&expected, "llm_providers", 1),
    );
    let mut outputs = Vec::new();
    for (primary, previous, args) in [
        (KEK_V2, Some(WRONG_V1), vec!["-n"]),
        (KEK_V2, Some(KEK_V1), vec!["-b", "3"]),
        (KEK_V2, Some(KEK_V1), vec![]),
        ("kek-v2:bad", Some(KEK_V1), vec![]),
    ] {
        for log in ["info", "trace"] {
            let out = reencrypt(&db, primary, previous)
                .args(&args)
                .env("RUST_LOG", log)
                .output()
                .unwrap();
            outputs.push(both_streams(&out));
        }
    }
    let mut bad_password = companion(&db.url.replace(crate::common::PASSWORD, "wrong-PW-zz81"));
    bad_password
        .arg("reencrypt")
        .env("SECRETS_ENCRYPTION_KEY", KEK_V2)
        .env("RUST_LOG", "trace");
    outputs.push(both_streams(&bad_password.output().unwrap()));
    let plaintexts: Vec<&String> = expected.values().flatten().collect();
    for text in &outputs {
        assert!(!text.is_empty());
        for material in KEY_MATERIAL {
            assert!(!text.contains(&material[..12]), "key material in output");
        }
        assert!(
            !text.contains(crate::common::PASSWORD),
            "password in output"
        );
        assert!(!text.contains("wrong-PW-zz81"), "password in output");
        assert!(!text.contains("PLAINTEXT-"), "plaintext in output");
        for p in &plaintexts {
            assert!(!text.contains(p.as_str()));
        }
    }
}

#[test]
fn a_value_changed_between_read_and_write_is_read_again_not_overwritten() {
    let db = migrated_database();
    let mut expected = seed(&db, 20);
    let before = stored(&db);
    let id = (0..)
        .map(|nth| some_id_on(&expected, "llm_providers", nth))
        .find(|id| {
            let value = before[&("llm_providers", *id)].as_ref().unwrap();
            Envelope::parse(value).unwrap().key_id() == "kek-v1"
        })
        .unwrap();
    let secret = "PLAINTEXT-from-the-application".to_owned();
    let value = envelope::encrypt(secret.as_bytes(), &key(KEK_V1)).unwrap();
    runtime().block_on(async {
        let mut writer = connect(&db.url).await;
        let mut tx = writer.begin().await.unwrap();
        sqlx::query("UPDATE llm_providers SET api_key_encrypted = $1 WHERE id = $2")
            .bind(&value)
            .bind(id)
            .execute(&mut *tx)
            .await
            .unwrap();
        // The companion reads the committed (old) value and blocks on the row lock.
        let child = reencrypt(&db, KEK_V2, Some(KEK_V1))
            .env("RUST_LOG", "debug")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        let blocked = format!(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = '{}' \
             AND application_name = 'everruns-admin' AND wait_event_type = 'Lock'",
            db.name
        );
        let mut child = Some(child);
        while crate::common::psql(&db.url, &blocked) != "1" {
            if Instant::now() > deadline || child.as_mut().unwrap().try_wait().unwrap().is_some() {
                let mut child = child.take().unwrap();
                let _ = child.kill();
                let out = child.wait_with_output().unwrap();
                panic!("the companion never waited for the row: {}", describe(&out));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let child = child.unwrap();
        tx.commit().await.unwrap();
        let out = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap())
            .await
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
        assert!(
            both_streams(&out).contains("changed by another writer since they were read"),
            "{}",
            describe(&out)
        );
    });
    expected.insert(("llm_providers", id), Some(secret));
    assert_values(&db, &expected, true);
}

/// Inserts one `llm_providers` row with `id`, under kek-v1; returns its plaintext.
fn insert_at(db: &TestDatabase, id: &str) -> (Uuid, String) {
    let secret = format!("PLAINTEXT-at-{id}");
    let value = envelope::encrypt(secret.as_bytes(), &key(KEK_V1)).unwrap();
    let hex: String = value.iter().map(|b| format!("{b:02x}")).collect();
    crate::common::psql(
        &db.url,
        &format!(
            "INSERT INTO llm_providers (id, name, provider_type, api_key_encrypted) \
             VALUES ('{id}', 'at-{id}', 'openai', '\\x{hex}')"
        ),
    );
    (id.parse().unwrap(), secret)
}

fn key_id_of(db: &TestDatabase, id: Uuid) -> String {
    let value = stored(db)[&("llm_providers", id)].clone().unwrap();
    Envelope::parse(&value).unwrap().key_id().to_string()
}

#[test]
fn two_shards_split_the_keys_at_the_middle_and_cover_the_first_and_last_uuid() {
    let db = migrated_database();
    let mut expected = seed(&db, 60);
    let edges = [
        "00000000-0000-0000-0000-000000000000",
        "7fffffff-ffff-ffff-ffff-ffffffffffff",
        "80000000-0000-0000-0000-000000000000",
        "ffffffff-ffff-ffff-ffff-ffffffffffff",
    ];
    let ids: Vec<Uuid> = edges
        .iter()
        .map(|id| {
            let (id, secret) = insert_at(&db, id);
            expected.insert(("llm_providers", id), Some(secret));
            id
        })
        .collect();

    let first = reencrypt(&db, KEK_V2, Some(KEK_V1))
        .args(["--shard", "1/2"])
        .output()
        .unwrap();
    assert_eq!(first.status.code(), Some(0), "{}", describe(&first));
    let keys: Vec<String> = ids.iter().map(|id| key_id_of(&db, *id)).collect();
    assert_eq!(
        keys,
        ["kek-v2", "kek-v2", "kek-v1", "kek-v1"],
        "shard 1/2 is the lower half"
    );
    let summary = result_summary(&first);
    assert_eq!(summary["shard"]["shard"], "1/2", "{summary}");
    assert_eq!(summary["shard"]["from"], edges[0], "{summary}");
    assert_eq!(summary["shard"]["to"], edges[1], "{summary}");

    let second = reencrypt(&db, KEK_V2, Some(KEK_V1))
        .args(["--shard", "2/2"])
        .output()
        .unwrap();
    assert_eq!(second.status.code(), Some(0), "{}", describe(&second));
    assert_eq!(result_summary(&second)["shard"]["to"], edges[3]);
    for table in ["llm_providers", "mcp_servers"] {
        let scanned = count_of(&summary, table, "scanned")
            + count_of(&result_summary(&second), table, "scanned");
        assert_eq!(
            scanned,
            non_null(&expected, table),
            "{table}: every value once"
        );
    }
    assert_values(&db, &expected, true);
}

#[test]
fn malformed_shards_are_usage_errors() {
    let db = migrated_database();
    for (shard, expected) in [
        ("0/4", "K must be from 1 to 4"),
        ("5/4", "K must be from 1 to 4"),
        ("1/0", "N must be at least 1"),
        ("half", "write K/N"),
    ] {
        let out = reencrypt(&db, KEK_V2, Some(KEK_V1))
            .args(["--shard", shard])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{shard}: {}", describe(&out));
        assert!(
            both_streams(&out).contains(expected),
            "{shard}: {}",
            describe(&out)
        );
    }
}

#[test]
fn four_concurrent_shards_beside_a_writer_leave_every_value_latest_and_on_the_primary() {
    let db = migrated_database();
    let mut expected = seed(&db, 400);
    // After the rotation the application writes with the primary key.
    let writer = Writer::start(&db, &expected, |_| KEK_V2);
    std::thread::sleep(Duration::from_millis(100));
    let shards: Vec<Child> = (1..=4)
        .map(|k| {
            reencrypt(&db, KEK_V2, Some(KEK_V1))
                .args(["-b", "5", "--shard", &format!("{k}/4")])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let outs: Vec<Output> = shards
        .into_iter()
        .map(|c| c.wait_with_output().unwrap())
        .collect();
    let written = writer.finish();
    for out in &outs {
        assert_eq!(out.status.code(), Some(0), "{}", describe(out));
    }
    for (place, secret) in written {
        expected.insert(place, Some(secret));
    }
    assert_values(&db, &expected, true);
}

#[test]
fn the_same_shard_twice_waits_and_an_unsharded_run_excludes_every_shard() {
    use everruns_admin::contract::command_line::Shard;
    use everruns_admin::seam::LOCK_KEY;
    let db = migrated_database();
    seed(&db, 5);
    let run = |args: &[&str]| {
        reencrypt(&db, KEK_V2, Some(KEK_V1))
            .args(["--lock-timeout", "1s"])
            .args(args)
            .output()
            .unwrap()
    };
    let rt = runtime();
    let hold = |sql: &str, keys: &[i64]| {
        rt.block_on(async {
            let mut conn = connect(&db.url).await;
            let mut query = sqlx::query(sql);
            for key in keys {
                query = query.bind(*key);
            }
            query.execute(&mut conn).await.unwrap();
            conn
        })
    };
    // A running shard 2/4: the run lock shared, its own lock exclusively.
    let shard = hold(
        "SELECT pg_advisory_lock_shared($1), pg_advisory_lock($2)",
        &[LOCK_KEY, Shard { index: 2, count: 4 }.lock_key()],
    );
    let twice = run(&["--shard", "2/4"]);
    assert_eq!(twice.status.code(), Some(1), "{}", describe(&twice));
    assert!(
        both_streams(&twice).contains("reencrypt shard 2/4 lock"),
        "{}",
        describe(&twice)
    );
    let other = run(&["--shard", "1/4"]);
    assert_eq!(
        other.status.code(),
        Some(0),
        "another shard runs beside: {}",
        describe(&other)
    );
    let unsharded = run(&[]);
    assert_eq!(unsharded.status.code(), Some(1), "{}", describe(&unsharded));
    drop(shard);

    // A running unsharded job: every shard waits for it.
    let whole = hold("SELECT pg_advisory_lock($1)", &[LOCK_KEY]);
    let shard = run(&["--shard", "3/4"]);
    assert_eq!(shard.status.code(), Some(1), "{}", describe(&shard));
    drop(whole);
    let after = run(&["--shard", "3/4"]);
    assert_eq!(after.status.code(), Some(0), "{}", describe(&after));
}

#[test]
fn max_rate_holds_a_steady_rate_within_ten_percent() {
    let db = migrated_database();
    let expected = seed(&db, 800);
    let values = non_null(&expected, "llm_providers") + non_null(&expected, "mcp_servers");
    let out = reencrypt(&db, KEK_V2, Some(KEK_V1))
        .args(["--max-rate", "400"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let summary = result_summary(&out);
    assert_eq!(
        summary["batch_size"], 40,
        "a tenth of a second's worth per batch"
    );
    let rate = summary["rows_per_second"].as_f64().unwrap();
    let seconds = summary["elapsed_ms"].as_f64().unwrap() / 1000.0;
    assert!(
        seconds > 2.5,
        "a run of several seconds: {seconds}s for {values} values"
    );
    assert!(
        (360.0..=440.0).contains(&rate),
        "{rate} values/s at --max-rate 400"
    );
    assert_values(&db, &expected, true);
}
