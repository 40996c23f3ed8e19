//! Stopping a job stops its work in the database: after SIGTERM, SIGINT, SIGKILL or the
//! deadline, no statement of the companion runs, no lock it took is held, the history
//! is unchanged and a later `migrate` runs cleanly. Against a real PostgreSQL.

use std::io::Write;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::{
    TestDatabase, companion, describe, migrated_database, migrations_dir, output_within, psql,
    result_summary, send_signal,
};

/// A migration that takes the table's strongest lock and then works for a minute.
const SLOW: &str = "LOCK TABLE llm_providers IN ACCESS EXCLUSIVE MODE;\nSELECT pg_sleep(60);\n";
const SLOW_FILE: &str = "20991231000001_slow_rewrite.sql";

/// This image's migrations plus `extra`.
fn image_with(extra: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(migrations_dir()).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, dir.path().join(path.file_name().unwrap())).unwrap();
    }
    for (name, sql) in extra {
        std::fs::write(dir.path().join(name), sql).unwrap();
    }
    dir
}

fn spawn(mut command: Command) -> Child {
    command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Waits until a session of the companion runs a statement matching `like`.
fn wait_for_statement(db: &TestDatabase, like: &str) {
    let sql = format!(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() \
         AND application_name = 'everruns-admin' AND state = 'active' AND query LIKE '{like}'"
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while psql(&db.url, &sql) == "0" {
        assert!(Instant::now() < deadline, "the companion never ran {like}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// How long until the companion runs nothing and holds no lock in `db`; panics past
/// `limit`.
fn time_until_free(db: &TestDatabase, since: Instant, limit: Duration) -> Duration {
    let busy = "SELECT (SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() \
                  AND application_name = 'everruns-admin' AND state <> 'idle') \
                + (SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid \
                  WHERE a.application_name = 'everruns-admin' \
                  AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())) \
                + (SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' \
                  AND database = (SELECT oid FROM pg_database WHERE datname = current_database()))";
    loop {
        if psql(&db.url, busy) == "0" {
            return since.elapsed();
        }
        assert!(
            since.elapsed() < limit,
            "the database is still busy {limit:?} after the stop: {}",
            psql(
                &db.url,
                "SELECT string_agg(pid || ' ' || state || ' ' || query, '; ') FROM pg_stat_activity \
                 WHERE application_name LIKE 'everruns-admin%'"
            )
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn history(db: &TestDatabase) -> String {
    psql(
        &db.url,
        "SELECT string_agg(version || ':' || success, ',' ORDER BY version) FROM _sqlx_migrations",
    )
}

/// A later `migrate` of the same image, with the slow migration made quick, is clean.
fn later_migrate_is_clean(db: &TestDatabase, no_tx: bool) {
    let quick = if no_tx {
        "-- no-transaction\nSELECT 1;\n"
    } else {
        "SELECT 1;\n"
    };
    let image = image_with(&[(SLOW_FILE, quick)]);
    let out = companion(&db.url)
        .args(["migrate", "--source"])
        .arg(image.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert!(history(db).ends_with("20991231000001:true"));
}

fn stop_a_slow_migration(signal: i32, no_tx: bool) {
    let db = migrated_database();
    let before = history(&db);
    let sql = if no_tx {
        format!("-- no-transaction\n{SLOW}")
    } else {
        SLOW.to_owned()
    };
    let image = image_with(&[(SLOW_FILE, &sql)]);
    let mut command = companion(&db.url);
    command.args(["migrate", "--source"]).arg(image.path());
    let child = spawn(command);
    wait_for_statement(&db, "%pg_sleep%");
    let sent = Instant::now();
    send_signal(child.id(), signal);
    let free = time_until_free(&db, sent, Duration::from_secs(2));
    let (out, in_time) = output_within(child, Duration::from_secs(10));
    assert!(in_time, "{}", describe(&out));
    let (code, name) = match signal {
        libc::SIGTERM => (143, "SIGTERM"),
        _ => (130, "SIGINT"),
    };
    assert_eq!(out.status.code(), Some(code), "{}", describe(&out));
    let summary = result_summary(&out);
    let error = summary["error"].as_str().unwrap();
    assert!(
        error.contains(&format!("interrupted by {name}"))
            && error.contains("migration 20991231000001 slow rewrite was cancelled"),
        "{error}"
    );
    if !no_tx {
        assert!(error.contains("nothing of it was applied"), "{error}");
    }
    assert_eq!(summary["stopped"]["database_released"], true, "{summary}");
    assert_eq!(summary["cancelled"]["version"], 20991231000001_i64);
    assert_eq!(history(&db), before, "the history changed");
    eprintln!("{name} (no_tx {no_tx}): the database was free {free:?} after the signal");
    later_migrate_is_clean(&db, no_tx);
}

#[test]
fn sigterm_cancels_a_migration_and_frees_the_database() {
    stop_a_slow_migration(libc::SIGTERM, false);
}

#[test]
fn sigint_cancels_a_migration_and_frees_the_database() {
    stop_a_slow_migration(libc::SIGINT, false);
}

#[test]
fn sigterm_cancels_a_no_transaction_migration() {
    stop_a_slow_migration(libc::SIGTERM, true);
}

#[test]
fn sigint_cancels_a_no_transaction_migration() {
    stop_a_slow_migration(libc::SIGINT, true);
}

#[test]
fn a_killed_companion_frees_the_database_within_the_check_interval() {
    let db = migrated_database();
    let before = history(&db);
    let image = image_with(&[(SLOW_FILE, SLOW)]);
    let mut command = companion(&db.url);
    command
        .args(["--client-check-interval", "1s", "migrate", "--source"])
        .arg(image.path());
    let child = spawn(command);
    wait_for_statement(&db, "%pg_sleep%");
    let sent = Instant::now();
    send_signal(child.id(), libc::SIGKILL);
    let (out, _) = output_within(child, Duration::from_secs(10));
    assert_eq!(out.status.code(), None, "killed: {}", describe(&out));
    let free = time_until_free(&db, sent, Duration::from_secs(4));
    eprintln!("SIGKILL: the database was free {free:?} after the kill");
    assert_eq!(history(&db), before);
    later_migrate_is_clean(&db, false);
}

#[test]
fn at_its_deadline_a_migration_is_cancelled_with_exit_124() {
    let db = migrated_database();
    let before = history(&db);
    let image = image_with(&[(SLOW_FILE, SLOW)]);
    let deadline = chrono::Utc::now() + chrono::Duration::seconds(3);
    let started = Instant::now();
    let out = companion(&db.url)
        .env("EVERRUNS_ADMIN_DEADLINE", deadline.to_rfc3339())
        .args(["migrate", "--source"])
        .arg(image.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(124), "{}", describe(&out));
    assert!(started.elapsed() < Duration::from_secs(8));
    let error = result_summary(&out)["error"].as_str().unwrap().to_owned();
    assert!(error.contains("stopped at its deadline"), "{error}");
    time_until_free(&db, Instant::now(), Duration::from_secs(1));
    assert_eq!(history(&db), before);
    later_migrate_is_clean(&db, false);
}

#[test]
fn a_deadline_that_has_passed_does_nothing() {
    let db = migrated_database();
    let out = companion(&db.url)
        .args(["--deadline", "2020-01-01T00:00:00Z", "migrate-info"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(124), "{}", describe(&out));
    let out = companion(&db.url)
        .args(["--deadline", "tomorrow", "migrate-info"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("RFC 3339"));
}

#[test]
fn a_shell_waiting_for_ecs_exec_ends_at_its_deadline() {
    let deadline = chrono::Utc::now() + chrono::Duration::seconds(2);
    let child = spawn({
        let mut command = companion("postgres://unused@127.0.0.1:1/none");
        command.stdin(Stdio::null()).args([
            "--deadline",
            &deadline.to_rfc3339(),
            "shell",
            "--max-idle",
            "1h",
        ]);
        command
    });
    let (out, in_time) = output_within(child, Duration::from_secs(30));
    assert!(
        in_time,
        "the shell outlived its deadline: {}",
        describe(&out)
    );
    assert_eq!(out.status.code(), Some(124), "{}", describe(&out));
    assert!(
        result_summary(&out)["ended"]
            .as_str()
            .is_some_and(|e| e.contains("deadline")),
        "{}",
        describe(&out)
    );
}

/// A psql session that holds `sql`'s locks in an open transaction until dropped.
struct Holder(Child);

impl Holder {
    fn start(db: &TestDatabase, sql: &str) -> Self {
        let mut child = Command::new("psql")
            .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", &db.url])
            .env("PGAPPNAME", "holder")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let stdin = child.stdin.as_mut().unwrap();
        writeln!(stdin, "BEGIN;\n{sql}").unwrap();
        stdin.flush().unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while psql(
            &db.url,
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'holder' \
             AND state = 'idle in transaction'",
        ) == "0"
        {
            assert!(Instant::now() < deadline, "the holder never took its locks");
            std::thread::sleep(Duration::from_millis(20));
        }
        Holder(child)
    }
}

impl Drop for Holder {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A read-only command waiting on a lock is stopped the same way: its wait (which
/// would queue every later query behind it) is cancelled.
fn stop_a_waiting_reader(args: &[&str], signal: i32, code: i32) {
    let db = migrated_database();
    let holder = Holder::start(&db, "LOCK TABLE _sqlx_migrations IN ACCESS EXCLUSIVE MODE;");
    let child = spawn({
        let mut command = companion(&db.url);
        command.args(args);
        command
    });
    wait_for_statement(&db, "%_sqlx_migrations%");
    let sent = Instant::now();
    send_signal(child.id(), signal);
    time_until_free(&db, sent, Duration::from_secs(2));
    let (out, in_time) = output_within(child, Duration::from_secs(10));
    assert!(in_time);
    assert_eq!(out.status.code(), Some(code), "{}", describe(&out));
    assert_eq!(result_summary(&out)["stopped"]["database_released"], true);
    drop(holder);
}

#[test]
fn sigterm_cancels_migrate_info_waiting_on_a_lock() {
    stop_a_waiting_reader(&["migrate-info", "--check"], libc::SIGTERM, 143);
}

#[test]
fn sigint_cancels_status_waiting_on_a_lock() {
    stop_a_waiting_reader(&["status"], libc::SIGINT, 130);
}

#[test]
fn an_interrupted_concurrent_index_is_named_and_blocks_the_gate_and_the_rerun() {
    let db = migrated_database();
    let cic = "-- no-transaction\nCREATE INDEX CONCURRENTLY IF NOT EXISTS idx_llm_providers_stop_test ON llm_providers (id);\n";
    let image = image_with(&[(SLOW_FILE, cic)]);
    // An open snapshot makes CREATE INDEX CONCURRENTLY wait after it has made the
    // (still invalid) index: that is where it gets interrupted.
    let holder = Holder::start(
        &db,
        "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ; SELECT count(*) FROM pg_class;",
    );
    let child = spawn({
        let mut command = companion(&db.url);
        command.args(["migrate", "--source"]).arg(image.path());
        command
    });
    wait_for_statement(&db, "%CONCURRENTLY%");
    send_signal(child.id(), libc::SIGTERM);
    let (out, _) = output_within(child, Duration::from_secs(10));
    assert_eq!(out.status.code(), Some(143), "{}", describe(&out));
    drop(holder);
    assert_eq!(
        psql(
            &db.url,
            "SELECT indisvalid FROM pg_index WHERE indexrelid = 'idx_llm_providers_stop_test'::regclass"
        ),
        "f"
    );

    let out = companion(&db.url)
        .args(["migrate-info", "--check", "--source"])
        .arg(image.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(7), "{}", describe(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("DROP INDEX CONCURRENTLY IF EXISTS public.idx_llm_providers_stop_test"),
        "{text}"
    );
    assert_eq!(
        result_summary(&out)["invalid_indexes"][0]["index"],
        "idx_llm_providers_stop_test"
    );

    let out = companion(&db.url)
        .args(["migrate", "--source"])
        .arg(image.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(7), "{}", describe(&out));
    assert!(
        result_summary(&out)["error"]
            .as_str()
            .unwrap()
            .contains("migration 20991231000001 slow rewrite")
    );

    psql(
        &db.url,
        "DROP INDEX CONCURRENTLY IF EXISTS public.idx_llm_providers_stop_test",
    );
    let out = companion(&db.url)
        .args(["migrate", "--source"])
        .arg(image.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert_eq!(
        psql(
            &db.url,
            "SELECT indisvalid FROM pg_index WHERE indexrelid = 'idx_llm_providers_stop_test'::regclass"
        ),
        "t"
    );
}

#[test]
fn ctrl_c_on_the_launcher_frees_the_database_before_it_exits() {
    let (db, emu) = crate::common::emulator::stack();
    let out = companion(&db.url).arg("migrate").output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let before = history(&db);
    let image = image_with(&[(SLOW_FILE, SLOW)]);
    let child = spawn({
        let mut command = emu.launcher();
        command
            .args(["--output", "json", "migrate", "--source"])
            .arg(image.path());
        command
    });
    wait_for_statement(&db, "%pg_sleep%");
    send_signal(child.id(), libc::SIGINT);
    let (out, in_time) = output_within(child, Duration::from_secs(30));
    assert!(in_time, "{}", describe(&out));
    // Free by the time the launcher has returned, not some time later.
    time_until_free(&db, Instant::now(), Duration::from_millis(300));
    assert_eq!(out.status.code(), Some(130), "{}", describe(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("migration 20991231000001 slow rewrite was cancelled and rolled back")
            && stderr.contains("database: released"),
        "{stderr}"
    );
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        doc["result"]["summary"]["stopped"]["database_released"], true,
        "{doc}"
    );
    assert_eq!(history(&db), before);
}

#[test]
fn the_launchers_timeout_reaches_the_container_as_its_deadline() {
    let (db, emu) = crate::common::emulator::stack();
    let out = emu
        .launcher()
        .args(["--timeout", "10m", "--print-request", "migrate-info"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let request: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let environment = &request["overrides"]["containerOverrides"][0]["environment"][0];
    assert_eq!(environment["name"], "EVERRUNS_ADMIN_DEADLINE");
    let deadline = chrono::DateTime::parse_from_rfc3339(environment["value"].as_str().unwrap())
        .unwrap()
        .with_timezone(&chrono::Utc);
    // 10 minutes less the 30 s margin, give or take the run's own seconds.
    let left = deadline - chrono::Utc::now();
    assert!(
        left > chrono::Duration::seconds(560) && left <= chrono::Duration::seconds(570),
        "{left}"
    );
    drop(db);
}
