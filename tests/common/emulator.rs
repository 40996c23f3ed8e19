//! The local AWS emulator (moto plus an ECS agent that really runs the task's
//! command), started per test from `tests/emulator/stack.py` and stopped with it:
//! the emulator exits when the pipe to its stdin closes.

use std::io::{BufRead, BufReader};
use std::process::{Child, ChildStdin, Command, Stdio};

/// What the emulator set up, from its ready line.
#[derive(Debug, serde::Deserialize)]
pub struct Ready {
    /// `http://127.0.0.1:PORT`.
    pub endpoint: String,
    /// The region it emulates.
    pub region: String,
    /// Subnets of its VPC.
    pub subnets: Vec<String>,
    /// Its security group.
    pub security_group: String,
}

/// A running emulator.
pub struct Emulator {
    /// What it set up.
    pub ready: Ready,
    child: Child,
    stdin: Option<ChildStdin>,
    counts: tempfile::TempDir,
}

/// Keys the emulator stores in Secrets Manager for the companion.
pub struct Secrets<'a> {
    /// `DATABASE_URL`.
    pub database_url: &'a str,
    /// `SECRETS_ENCRYPTION_KEY`.
    pub key: &'a str,
    /// `SECRETS_ENCRYPTION_KEY_PREVIOUS`.
    pub previous: Option<&'a str>,
}

impl Emulator {
    /// Starts the emulator with the companion built for this test run as the
    /// admin image's entrypoint.
    pub fn start(secrets: &Secrets<'_>) -> Emulator {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/emulator/stack.py");
        let counts = tempfile::tempdir().unwrap();
        let mut cmd = Command::new("python3");
        cmd.arg(script)
            .args([
                "--port",
                "0",
                "--stop-grace-seconds",
                "2",
                "--log-batch-seconds",
                "0.2",
            ])
            .arg("--companion")
            .arg(env!("CARGO_BIN_EXE_everruns-admin"))
            .args(["--database-url", secrets.database_url])
            .args(["--encryption-key", secrets.key])
            .arg("--request-counts")
            .arg(counts.path().join("counts.json"));
        if let Some(previous) = secrets.previous {
            cmd.args(["--encryption-key-previous", previous]);
        }
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("python3 must be installed, with moto[server] (see .ci/run)");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let ready: Ready = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("the emulator did not start ({e}): {line:?}"));
        let stdin = child.stdin.take();
        Emulator {
            ready,
            child,
            stdin,
            counts,
        }
    }

    /// API calls served so far, by action (`DescribeTasks`, `GetLogEvents`, ...).
    pub fn request_counts(&self) -> std::collections::HashMap<String, u64> {
        std::fs::read(self.counts.path().join("counts.json"))
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .unwrap_or_default()
    }

    /// The launcher binary, configured for this emulator through the environment
    /// variables operators use (no config file, fake credentials).
    pub fn launcher(&self) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_run-admin-task"));
        cmd.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOME", std::env::temp_dir())
            .env("USER", "e2e-operator")
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .env("AWS_REGION", &self.ready.region)
            .env("AWS_ENDPOINT_URL", &self.ready.endpoint)
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("ECS_CLUSTER", "everruns")
            .env("ECS_SUBNETS", self.ready.subnets.join(","))
            .env("ECS_SECURITY_GROUP", &self.ready.security_group)
            .stdin(Stdio::null());
        cmd
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        drop(self.stdin.take());
        let _ = self.child.wait();
    }
}

/// A fresh database and an emulator whose task definition points at it, with the keys
/// as after a rotation ([`KEK_V2`](super::KEK_V2) current, [`KEK_V1`](super::KEK_V1)
/// previous).
pub fn stack() -> (super::TestDatabase, Emulator) {
    let db = super::cluster().create_database();
    let emulator = Emulator::start(&Secrets {
        database_url: &db.url,
        key: super::KEK_V2,
        previous: Some(super::KEK_V1),
    });
    (db, emulator)
}
