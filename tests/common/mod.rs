//! Test support: a throwaway PostgreSQL cluster per test binary and a fresh database per
//! test, and helpers to run the companion binary.
//!
//! The cluster is made with initdb and started with pg_ctl (as the `postgres` user when
//! the tests run as root, since PostgreSQL refuses to run as root). A watchdog shell holds
//! a pipe from the test process and stops the cluster and removes its files when the pipe
//! closes, so the cluster ends with the test binary however it ends. Set
//! `EVERRUNS_TEST_DATABASE_URL` to a superuser URL to use an existing server instead.

pub mod aws_calls;
pub mod dockerfile;
pub mod emulator;
pub mod iam;
pub mod rust_source;

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

/// The test keys, as after a rotation: kek-v2 is the current key, kek-v1 the previous
/// one (kek-v1 is also the key of the independent vectors in tests/fixtures).
pub const KEK_V1: &str = "kek-v1:AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyA=";
/// See [`KEK_V1`].
pub const KEK_V2: &str = "kek-v2:ZWZnaGlqa2xtbm9wcXJzdHV2d3h5ent8fX5/gIGCg4Q=";

/// A running PostgreSQL server the tests may create databases on.
pub struct Cluster {
    /// Superuser URL without a database name.
    base_url: String,
    /// Keeps the watchdog's stdin open; dropping it at exit stops the cluster.
    _watchdog: Option<Mutex<(Child, ChildStdin)>>,
}

static CLUSTER: OnceLock<Cluster> = OnceLock::new();
static NEXT_DB: AtomicU32 = AtomicU32::new(0);

/// The password of the throwaway cluster's superuser: tests look for it in output.
pub const PASSWORD: &str = "pw-Zq8rT2vLx9";

/// The cluster for this test binary, started on first use.
pub fn cluster() -> &'static Cluster {
    CLUSTER.get_or_init(|| match std::env::var("EVERRUNS_TEST_DATABASE_URL") {
        Ok(url) => Cluster {
            base_url: url
                .trim_end_matches('/')
                .rsplit_once('/')
                .map_or(url.clone(), |(b, _)| b.to_owned()),
            _watchdog: None,
        },
        Err(_) => start_cluster(),
    })
}

fn pg_bin_dir() -> PathBuf {
    if let Ok(dir) = std::env::var("PG_BIN") {
        return dir.into();
    }
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|entries| {
            entries
                .filter_map(|e| e.ok())
                .map(|e| e.path().join("bin"))
                .collect()
        })
        .unwrap_or_default();
    versions.retain(|dir| dir.join("initdb").exists());
    versions.sort_by_key(|dir| {
        dir.parent()
            .and_then(|v| v.file_name())
            .and_then(|v| v.to_str())
            .and_then(|v| v.parse::<u32>().ok())
            .unwrap_or(0)
    });
    versions.pop().unwrap_or_else(|| {
        panic!("no PostgreSQL server binaries: install the `postgresql` package (see .ci/run) or set PG_BIN")
    })
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout.trim_ascii() == b"0")
        .unwrap_or(false)
}

fn start_cluster() -> Cluster {
    let bin = pg_bin_dir();
    let dir = tempfile::Builder::new()
        .prefix("everruns-pg-")
        .tempdir()
        .unwrap()
        .keep();
    let data = dir.join("data");
    let pwfile = dir.join("pw");
    std::fs::write(&pwfile, PASSWORD).unwrap();
    let as_postgres = if is_root() {
        let status = Command::new("chown")
            .args(["-R", "postgres:postgres"])
            .arg(&dir)
            .status()
            .unwrap();
        assert!(
            status.success(),
            "chown of the test cluster directory failed"
        );
        "runuser -u postgres -- "
    } else {
        ""
    };
    let port = free_port();
    let script = format!(
        r#"set -e
{as_postgres}"{bin}/initdb" -D "{data}" -U postgres --auth-local=trust --auth-host=scram-sha-256 --pwfile="{pwfile}" --no-sync -E UTF8 >"{dir}/initdb.log" 2>&1
{as_postgres}"{bin}/pg_ctl" -D "{data}" -l "{dir}/server.log" -w -o "-p {port} -k {dir} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200" start >/dev/null
echo started
set +e
read _ignored
{as_postgres}"{bin}/pg_ctl" -D "{data}" -m immediate stop >/dev/null 2>&1
rm -rf "{dir}"
"#,
        bin = bin.display(),
        data = data.display(),
        pwfile = pwfile.display(),
        dir = dir.display(),
    );
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start the PostgreSQL watchdog shell");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    if line.trim() != "started" {
        let log = std::fs::read_to_string(dir.join("initdb.log")).unwrap_or_default()
            + &std::fs::read_to_string(dir.join("server.log")).unwrap_or_default();
        panic!("the throwaway PostgreSQL cluster did not start:\n{log}");
    }
    let stdin = child.stdin.take().unwrap();
    Cluster {
        base_url: format!("postgres://postgres:{PASSWORD}@127.0.0.1:{port}"),
        _watchdog: Some(Mutex::new((child, stdin))),
    }
}

/// A database of its own for one test.
pub struct TestDatabase {
    /// Its name.
    pub name: String,
    /// A superuser URL for it, password included.
    pub url: String,
}

impl Cluster {
    /// The superuser URL of database `name`.
    pub fn url_for(&self, name: &str) -> String {
        format!("{}/{name}", self.base_url)
    }

    /// Creates an empty database with a unique name.
    pub fn create_database(&self) -> TestDatabase {
        let name = format!(
            "t{}_{}",
            std::process::id(),
            NEXT_DB.fetch_add(1, Ordering::SeqCst)
        );
        psql(
            &self.url_for("postgres"),
            &format!("CREATE DATABASE {name}"),
        );
        TestDatabase {
            url: self.url_for(&name),
            name,
        }
    }
}

/// Runs SQL with psql and returns its unaligned, tuples-only output; panics on error.
pub fn psql(url: &str, sql: &str) -> String {
    let out = Command::new("psql")
        .args([
            "-X",
            "-q",
            "-A",
            "-t",
            "-v",
            "ON_ERROR_STOP=1",
            "-d",
            url,
            "-c",
            sql,
        ])
        .output()
        .expect("psql must be installed (package postgresql-client)");
    assert!(
        out.status.success(),
        "psql failed for {sql}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim_end().to_owned()
}

/// A fresh database with this project's migrations applied.
pub fn migrated_database() -> TestDatabase {
    let db = cluster().create_database();
    let out = companion(&db.url).arg("migrate").output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "migrate failed: {}",
        describe(&out)
    );
    db
}

/// The launcher binary with nothing from this process's environment but `PATH`: no
/// AWS settings, no credentials, no instance metadata lookups.
pub fn launcher() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_run-admin-task"));
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", std::env::temp_dir())
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .stdin(Stdio::null());
    cmd
}

/// The companion binary, with `DATABASE_URL` set, JSON output and no inherited keys.
pub fn companion(database_url: &str) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_everruns-admin"));
    cmd.env("DATABASE_URL", database_url)
        .env("EVERRUNS_ADMIN_OUTPUT", "json")
        .env_remove("SECRETS_ENCRYPTION_KEY")
        .env_remove("SECRETS_ENCRYPTION_KEY_PREVIOUS")
        .env_remove("RUST_LOG")
        .env_remove("EVERRUNS_ADMIN_LAUNCHER")
        .stdin(Stdio::null());
    cmd
}

/// Stdout then stderr, as one text to search.
pub fn both_streams(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Asserts that a command ended with `code` and said `text`, on either stream.
#[track_caller]
pub fn assert_ended(out: &Output, code: i32, text: &str) {
    assert_eq!(out.status.code(), Some(code), "{}", describe(out));
    assert!(
        both_streams(out).contains(text),
        "expected {text:?}: {}",
        describe(out)
    );
}

/// Exit code and both output streams, for assertion messages.
pub fn describe(out: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout\n{}\n--- stderr\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The protocol events in a companion's stdout, parsed.
pub fn events(out: &Output) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|line| serde_json::from_str(line).ok())
        .collect()
}

/// The final `result` event's summary; panics if the last line is not a result event.
pub fn result_summary(out: &Output) -> serde_json::Value {
    let events = events(out);
    let last = events
        .last()
        .unwrap_or_else(|| panic!("no events: {}", describe(out)));
    assert_eq!(
        last["event"],
        "result",
        "last line is not the result: {}",
        describe(out)
    );
    last["summary"].clone()
}

/// The project's migrations folder.
pub fn migrations_dir() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations"))
}

/// Waits for `child` (its output piped) for at most `limit`; past it, kills it. The
/// output is read on a thread, so a chatty child cannot fill its pipe and stall.
/// Returns the output and whether the child ended by itself in time.
pub fn output_within(child: Child, limit: Duration) -> (Output, bool) {
    let pid = child.id();
    let (done, output) = std::sync::mpsc::channel();
    std::thread::spawn(move || done.send(child.wait_with_output().unwrap()));
    match output.recv_timeout(limit) {
        Ok(out) => (out, true),
        Err(_) => {
            send_signal(pid, libc::SIGKILL);
            (output.recv().expect("the killed child's output"), false)
        }
    }
}

/// Sends `signal` (e.g. `libc::SIGINT`) to process `pid`, as an operator or ECS would.
pub fn send_signal(pid: u32, signal: i32) {
    let pid = i32::try_from(pid).expect("a pid fits in i32");
    // SAFETY: kill(2) with a pid this test started and a valid signal number.
    let result = unsafe { libc::kill(pid, signal) };
    assert_eq!(result, 0, "kill({pid}, {signal}) failed");
}

/// An EC2 client for a `Clients` whose test makes no EC2 call (any call would fail:
/// it has no credentials and nothing answers).
pub fn uncalled_ec2() -> aws_sdk_ec2::Client {
    aws_sdk_ec2::Client::from_conf(
        aws_sdk_ec2::Config::builder()
            .behavior_version(aws_sdk_ec2::config::BehaviorVersion::latest())
            .region(aws_sdk_ec2::config::Region::new("us-east-1"))
            .build(),
    )
}

/// An ECR client for a `Clients` whose test makes no ECR call.
pub fn uncalled_ecr() -> aws_sdk_ecr::Client {
    aws_sdk_ecr::Client::from_conf(
        aws_sdk_ecr::Config::builder()
            .behavior_version(aws_sdk_ecr::config::BehaviorVersion::latest())
            .region(aws_sdk_ecr::config::Region::new("us-east-1"))
            .build(),
    )
}

/// The live schema objects of the database at `url`, as the drift check reads them, and
/// the seconds the read took (connecting not included).
pub fn schema_objects(url: &str) -> (std::collections::BTreeMap<String, String>, f64) {
    use sqlx::Connection;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
        let started = std::time::Instant::now();
        let objects = everruns_admin::seam::read_schema_objects(&mut conn)
            .await
            .unwrap();
        (objects, started.elapsed().as_secs_f64())
    })
}
