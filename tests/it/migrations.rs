//! `migrate` and `migrate-info` against a real PostgreSQL.

use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::common::both_streams;
use crate::common::{cluster, companion, describe, events, psql, result_summary};
use sha2::{Digest, Sha384};
use sqlx::Connection;
use sqlx::migrate::Migrate;

fn migration_files() -> Vec<(i64, String, Vec<u8>)> {
    let mut files: Vec<_> = std::fs::read_dir(crate::common::migrations_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "sql"))
        .map(|p| {
            let name = p.file_stem().unwrap().to_str().unwrap().to_owned();
            let (version, description) = name.split_once('_').unwrap();
            (
                version.parse().unwrap(),
                description.replace('_', " "),
                std::fs::read(&p).unwrap(),
            )
        })
        .collect();
    files.sort_by_key(|f| f.0);
    files
}

#[test]
fn embedded_checksums_are_sha384_of_the_files() {
    let files = migration_files();
    let catalog = everruns_admin::seam::Catalog::embedded();
    assert_eq!(catalog.migrations().len(), files.len());
    assert!(files.len() >= 3, "several migrations, not one");
    for (m, (version, description, bytes)) in catalog.migrations().iter().zip(&files) {
        assert_eq!(m.version, *version);
        assert_eq!(m.description, *description);
        assert_eq!(m.checksum.as_ref(), Sha384::digest(bytes).as_slice());
        assert!(
            !bytes.contains(&b'\r'),
            "{version}: CRLF would change the checksum"
        );
    }
}

#[test]
fn migrate_records_rows_exactly_as_sqlx_does() {
    let db = cluster().create_database();
    let out = companion(&db.url).arg("migrate").output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let summary = result_summary(&out);
    let files = migration_files();
    assert_eq!(summary["applied"].as_array().unwrap().len(), files.len());
    let rows = psql(
        &db.url,
        "SELECT version, description, success, encode(checksum, 'hex'), execution_time > 0 \
         FROM _sqlx_migrations ORDER BY version",
    );
    let expected: Vec<String> = files
        .iter()
        .map(|(v, d, bytes)| format!("{v}|{d}|t|{}|t", hex(&Sha384::digest(bytes))))
        .collect();
    assert_eq!(rows.lines().collect::<Vec<_>>(), expected);
    // The schema is really there, the no-transaction index included.
    assert_eq!(
        psql(
            &db.url,
            "SELECT count(*) FROM pg_indexes WHERE indexname = 'llm_providers_status_idx'"
        ),
        "1"
    );
    // A second run applies nothing.
    let again = companion(&db.url).arg("migrate").output().unwrap();
    assert_eq!(again.status.code(), Some(0), "{}", describe(&again));
    assert_eq!(
        result_summary(&again)["applied"].as_array().unwrap().len(),
        0
    );
    let info = companion(&db.url)
        .args(["migrate-info", "--check"])
        .output()
        .unwrap();
    assert_eq!(info.status.code(), Some(0), "{}", describe(&info));
}

/// The `migrate` progress events of a run, as (done, total), each checked to follow
/// the log line of the migration it counts.
fn migrate_progress(out: &std::process::Output) -> Vec<(u64, Option<u64>)> {
    let mut applied = 0;
    let mut progress = Vec::new();
    for event in events(out) {
        if event["event"] == "log" && event["msg"].as_str().unwrap().starts_with("applied ") {
            applied += 1;
        }
        if event["event"] == "progress" {
            assert_eq!(event["phase"], "migrate", "{}", describe(out));
            let done = event["done"].as_u64().unwrap();
            assert!(
                done <= applied,
                "progress ahead of the work: {}",
                describe(out)
            );
            progress.push((done, event["total"].as_u64()));
        }
    }
    progress
}

#[test]
fn migrate_writes_one_progress_event_per_migration() {
    let db = cluster().create_database();
    let files = migration_files();
    let n = files.len() as u64;
    let second = files[1].0.to_string();
    let out = companion(&db.url)
        .args(["migrate", "--target-version", &second])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert_eq!(
        migrate_progress(&out),
        [(0, Some(2)), (1, Some(2)), (2, Some(2))],
        "{}",
        describe(&out)
    );
    let out = companion(&db.url).arg("migrate").output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let expected: Vec<_> = (0..=n - 2).map(|done| (done, Some(n - 2))).collect();
    assert_eq!(migrate_progress(&out), expected, "{}", describe(&out));
    // Nothing to apply: no phase to show.
    let out = companion(&db.url).arg("migrate").output().unwrap();
    assert_eq!(migrate_progress(&out), [], "{}", describe(&out));
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Writes `_sqlx_migrations` the way sqlx-cli does, for the first `n` migrations,
/// after applying their SQL by hand.
fn record_like_sqlx_cli(url: &str, n: usize) {
    psql(
        url,
        "CREATE TABLE IF NOT EXISTS _sqlx_migrations (\
           version BIGINT PRIMARY KEY, description TEXT NOT NULL, \
           installed_on TIMESTAMPTZ NOT NULL DEFAULT now(), success BOOLEAN NOT NULL, \
           checksum BYTEA NOT NULL, execution_time BIGINT NOT NULL)",
    );
    for (version, description, bytes) in migration_files().into_iter().take(n) {
        psql(url, std::str::from_utf8(&bytes).unwrap());
        psql(
            url,
            &format!(
                "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
                 VALUES ({version}, '{description}', TRUE, '\\x{}', 1234567)",
                hex(&Sha384::digest(&bytes))
            ),
        );
    }
}

#[test]
fn history_written_by_sqlx_cli_is_read_as_installed() {
    let db = cluster().create_database();
    record_like_sqlx_cli(&db.url, 2);
    let info = companion(&db.url)
        .args(["migrate-info", "--check"])
        .output()
        .unwrap();
    assert_eq!(info.status.code(), Some(3), "{}", describe(&info));
    assert!(
        describe(&info).contains("pending: run `everruns-admin migrate`"),
        "run by hand, the advice names this binary: {}",
        describe(&info)
    );
    let states: Vec<String> = result_summary(&info)["migrations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["state"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(states[..2], ["installed", "installed"]);
    assert!(states[2..].iter().all(|s| s == "pending"), "{states:?}");
    let out = companion(&db.url).arg("migrate").output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert_eq!(
        result_summary(&out)["applied"].as_array().unwrap().len(),
        migration_files().len() - 2
    );
}

#[test]
fn migrate_info_leaves_an_empty_database_empty() {
    let db = cluster().create_database();
    let out = companion(&db.url).arg("migrate-info").output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let check = companion(&db.url)
        .args(["migrate-info", "--check"])
        .output()
        .unwrap();
    assert_eq!(check.status.code(), Some(3), "{}", describe(&check));
    assert_eq!(
        psql(
            &db.url,
            "SELECT count(*) FROM pg_class WHERE relnamespace = 'public'::regnamespace"
        ),
        "0"
    );
    let dry = companion(&db.url)
        .args(["migrate", "--dry-run"])
        .output()
        .unwrap();
    assert_eq!(dry.status.code(), Some(0), "{}", describe(&dry));
    assert_eq!(
        result_summary(&dry)["would_apply"]
            .as_array()
            .unwrap()
            .len(),
        migration_files().len()
    );
    assert_eq!(
        psql(
            &db.url,
            "SELECT count(*) FROM pg_class WHERE relnamespace = 'public'::regnamespace"
        ),
        "0"
    );
}

#[test]
fn every_drift_class_is_exit_4_with_advice() {
    let files = migration_files();
    // Checksum mismatch: both checksums shown.
    let db = cluster().create_database();
    record_like_sqlx_cli(&db.url, 2);
    psql(
        &db.url,
        &format!(
            "UPDATE _sqlx_migrations SET checksum = '\\xdeadbeef' WHERE version = {}",
            files[1].0
        ),
    );
    for args in [
        &["migrate"][..],
        &["migrate-info"],
        &["migrate-info", "--check"],
    ] {
        let out = companion(&db.url).args(args).output().unwrap();
        assert_eq!(out.status.code(), Some(4), "{args:?}: {}", describe(&out));
        let text = both_streams(&out);
        assert!(text.contains("deadbeef"), "{text}");
        assert!(text.contains(&hex(&Sha384::digest(&files[1].2))), "{text}");
    }

    // Applied but unknown to this image: refused unless --ignore-missing.
    let db = cluster().create_database();
    record_like_sqlx_cli(&db.url, 1);
    psql(
        &db.url,
        "INSERT INTO _sqlx_migrations VALUES (99990101000000, 'from a newer image', now(), TRUE, '\\x00', 1)",
    );
    let out = companion(&db.url).arg("migrate").output().unwrap();
    assert_eq!(out.status.code(), Some(4), "{}", describe(&out));
    assert!(both_streams(&out).contains("--ignore-missing"));
    assert_eq!(
        psql(&db.url, "SELECT count(*) FROM _sqlx_migrations"),
        "2",
        "nothing applied"
    );
    let out = companion(&db.url)
        .args(["migrate", "--ignore-missing"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));

    // A failed attempt recorded.
    let db = cluster().create_database();
    record_like_sqlx_cli(&db.url, 1);
    psql(
        &db.url,
        &format!(
            "UPDATE _sqlx_migrations SET success = FALSE WHERE version = {}",
            files[0].0
        ),
    );
    let out = companion(&db.url)
        .args(["migrate-info", "--check"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(4), "{}", describe(&out));
    assert!(both_streams(&out).contains("FAILED"));
}

fn source_dir(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (name, sql) in files {
        std::fs::write(dir.path().join(name), sql).unwrap();
    }
    dir
}

#[test]
fn out_of_order_pending_is_listed_and_applied() {
    let db = cluster().create_database();
    let older_image = source_dir(&[
        ("1_a.sql", "CREATE TABLE a (id int);"),
        ("3_c.sql", "CREATE TABLE c (id int);"),
    ]);
    let newer_image = source_dir(&[
        ("1_a.sql", "CREATE TABLE a (id int);"),
        ("2_b.sql", "CREATE TABLE b (id int);"),
        ("3_c.sql", "CREATE TABLE c (id int);"),
    ]);
    let out = companion(&db.url)
        .args(["migrate", "--source"])
        .arg(older_image.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let info = companion(&db.url)
        .args(["migrate-info", "--check", "--source"])
        .arg(newer_image.path())
        .output()
        .unwrap();
    assert_eq!(info.status.code(), Some(3), "{}", describe(&info));
    let states: Vec<_> = result_summary(&info)["migrations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["state"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(states, ["installed", "pending_out_of_order", "installed"]);
    let out = companion(&db.url)
        .args(["migrate", "--source"])
        .arg(newer_image.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert_eq!(psql(&db.url, "SELECT to_regclass('b') IS NOT NULL"), "t");
}

#[test]
fn a_failing_migration_is_rolled_back_and_stays_pending() {
    let db = cluster().create_database();
    let dir = source_dir(&[
        ("1_good.sql", "CREATE TABLE good (id int);"),
        (
            "2_bad.sql",
            "CREATE TABLE half (id int);\nSELECT no_such_function();",
        ),
        ("3_after.sql", "CREATE TABLE after (id int);"),
    ]);
    let out = companion(&db.url)
        .args(["migrate", "--source"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let text = both_streams(&out);
    assert!(
        text.contains("2 bad") && text.contains("no_such_function"),
        "{text}"
    );
    assert_eq!(
        psql(
            &db.url,
            "SELECT string_agg(version::text, ',') FROM _sqlx_migrations"
        ),
        "1"
    );
    assert_eq!(
        psql(&db.url, "SELECT to_regclass('half') IS NULL"),
        "t",
        "rolled back"
    );
    let info = companion(&db.url)
        .args(["migrate-info", "--check", "--source"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(info.status.code(), Some(3), "{}", describe(&info));
    // The lock was released on the error path: a new run gets it at once.
    let key = lock_key_for(&db.name);
    assert_eq!(
        psql(&db.url, &format!("SELECT pg_try_advisory_lock({key})")),
        "t"
    );
}

fn lock_key_for(name: &str) -> i64 {
    everruns_admin::seam::lock_key(name)
}

#[test]
fn target_version_stops_there() {
    let db = cluster().create_database();
    let files = migration_files();
    let out = companion(&db.url)
        .args(["migrate", "--target-version", &files[1].0.to_string()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert_eq!(psql(&db.url, "SELECT count(*) FROM _sqlx_migrations"), "2");
    let out = companion(&db.url)
        .args(["migrate", "--target-version", "12345"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
}

#[test]
fn two_migrators_at_once_apply_each_migration_once() {
    let db = cluster().create_database();
    let dir = source_dir(&[
        (
            "1_slow.sql",
            "CREATE TABLE slow (id int); SELECT pg_sleep(1.5);",
        ),
        ("2_next.sql", "CREATE TABLE next (id int);"),
    ]);
    let spawn = || {
        companion(&db.url)
            .args(["migrate", "--source"])
            .arg(dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let first = spawn();
    std::thread::sleep(Duration::from_millis(300));
    let second = spawn();
    let (first, second) = (
        first.wait_with_output().unwrap(),
        second.wait_with_output().unwrap(),
    );
    assert_eq!(first.status.code(), Some(0), "{}", describe(&first));
    assert_eq!(second.status.code(), Some(0), "{}", describe(&second));
    let applied =
        |out: &std::process::Output| result_summary(out)["applied"].as_array().unwrap().len();
    assert_eq!(applied(&first) + applied(&second), 2, "each applied once");
    assert_eq!(psql(&db.url, "SELECT count(*) FROM _sqlx_migrations"), "2");
    assert!(
        both_streams(&second).contains("waiting"),
        "the second one waited: {}",
        describe(&second)
    );
}

#[tokio::test]
async fn lock_wait_is_bounded_and_names_the_holder() {
    let db = cluster().create_database();
    // sqlx's own migrator takes the lock: this proves the key is the same one.
    let mut holder = sqlx::PgConnection::connect(&format!(
        "{}?application_name=app-migrating-at-startup",
        db.url
    ))
    .await
    .unwrap();
    holder.lock().await.unwrap();
    let pid: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
        .fetch_one(&mut holder)
        .await
        .unwrap();

    let info = companion(&db.url).arg("migrate-info").output().unwrap();
    assert!(
        both_streams(&info).contains("app-migrating-at-startup"),
        "{}",
        describe(&info)
    );

    let started = Instant::now();
    let out = tokio::process::Command::from(companion(&db.url))
        .args(["migrate", "--lock-timeout", "1s"])
        .output()
        .await
        .unwrap();
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let text = both_streams(&out);
    assert!(text.contains(&format!("pid {pid}")), "{text}");
    assert!(text.contains("app-migrating-at-startup"), "{text}");
    assert_eq!(
        psql(&db.url, "SELECT to_regclass('_sqlx_migrations') IS NULL"),
        "t"
    );

    holder.unlock().await.unwrap();
    let out = companion(&db.url)
        .args(["migrate", "--lock-timeout", "5s"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
}

#[test]
fn connection_failures_are_clear_bounded_and_never_show_the_password() {
    let db = cluster().create_database();
    let wrong = db.url.replace(crate::common::PASSWORD, "Wr0ngPassw0rd-xyz");
    let out = companion(&wrong).arg("migrate-info").output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let text = both_streams(&out);
    assert!(
        text.contains("password") || text.contains("authentication"),
        "{text}"
    );
    assert!(!text.contains("Wr0ngPassw0rd-xyz"), "{text}");

    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let started = Instant::now();
    let out = companion(&format!("postgres://u:S3cretPw-abc@127.0.0.1:{port}/db"))
        .args(["migrate", "--connect-timeout", "2s"])
        .output()
        .unwrap();
    assert!(started.elapsed() < Duration::from_secs(8));
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let text = both_streams(&out);
    assert!(
        text.contains("attempts") && text.contains("u:****@127.0.0.1"),
        "{text}"
    );
    assert!(!text.contains("S3cretPw-abc"), "{text}");

    let out = companion("mysql://u:S3cretPw-abc@h/d")
        .arg("migrate")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    assert!(!both_streams(&out).contains("S3cretPw-abc"));
    let out = companion("")
        .env_remove("DATABASE_URL")
        .arg("migrate")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    assert!(both_streams(&out).contains("DATABASE_URL is not set"));
}

#[test]
fn every_encrypted_column_in_the_schema_is_declared() {
    let db = crate::common::migrated_database();
    let in_schema = psql(
        &db.url,
        "SELECT table_name || '.' || column_name FROM information_schema.columns \
         WHERE table_schema = 'public' AND column_name LIKE '%\\_encrypted' ORDER BY 1",
    );
    let mut declared: Vec<String> = everruns_admin::seam::declared()
        .iter()
        .map(|c| format!("{}.{}", c.table, c.column))
        .collect();
    declared.sort();
    assert_eq!(
        in_schema.lines().collect::<Vec<_>>(),
        declared,
        "declare every *_encrypted column in migrations/encrypted_columns.toml"
    );
}
