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
    /// The application's ECS service, with a subnet and a security group of its own.
    pub service: ServiceReady,
    /// A security group of another VPC than the subnets'.
    pub foreign_security_group: String,
    /// The admin image as a tag of the emulated ECR repository (`REGISTRY/everruns-admin:v1`).
    pub ecr_image: String,
}

/// The emulator's ECS service (`everruns-api`), for `--from-service`.
#[derive(Debug, serde::Deserialize)]
pub struct ServiceReady {
    /// Its name.
    pub name: String,
    /// Its awsvpc subnets.
    pub subnets: Vec<String>,
    /// Its security group.
    pub security_group: String,
}

/// Where a task's network interface is: its subnet and security groups.
#[derive(Debug, PartialEq, Eq, serde::Deserialize)]
pub struct TaskNetwork {
    /// The subnet, as DescribeTasks shows it in the task's ENI attachment.
    pub subnet: String,
    /// The interface's security groups (EC2 DescribeNetworkInterfaces).
    pub security_groups: Vec<String>,
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
        Self::start_with(secrets, &[])
    }

    /// [`start`](Self::start) with more of `stack.py`'s options (Fargate-like delays,
    /// the 5 s log batching, a stalled endpoint); later options win.
    pub fn start_with(secrets: &Secrets<'_>, options: &[&str]) -> Emulator {
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
            .arg(counts.path().join("counts.json"))
            .arg("--authorization-log")
            .arg(counts.path().join("authorization.jsonl"));
        if let Some(previous) = secrets.previous {
            cmd.args(["--encryption-key-previous", previous]);
        }
        cmd.args(options);
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

    /// The IAM request contexts of the calls served so far (see `iam`), in order.
    pub fn authorizations(&self) -> Vec<super::iam::Request> {
        std::fs::read_to_string(self.counts.path().join("authorization.jsonl"))
            .unwrap_or_default()
            .lines()
            .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
            .collect()
    }

    /// The full ARNs of the emulator's three secrets (database URL, key, previous key),
    /// as a task definition names them.
    pub fn secret_arns(&self) -> Vec<String> {
        self.as_harness(|sdk| async move {
            let secrets = aws_sdk_secretsmanager::Client::new(&sdk);
            let mut arns = Vec::new();
            for name in [
                "everruns/database-url",
                "everruns/encryption-key",
                "everruns/encryption-key-previous",
            ] {
                let described = secrets
                    .describe_secret()
                    .secret_id(name)
                    .send()
                    .await
                    .unwrap();
                arns.push(described.arn().unwrap().to_owned());
            }
            arns
        })
    }

    /// Runs `calls` with an SDK configuration of the tests' own ([`HARNESS`]) for this
    /// emulator.
    pub fn as_harness<F, T>(&self, calls: impl FnOnce(aws_config::SdkConfig) -> F) -> T
    where
        F: std::future::Future<Output = T>,
    {
        use aws_sdk_ecs::config::{
            BehaviorVersion, Credentials, Region, SharedCredentialsProvider,
        };
        let config = aws_config::SdkConfig::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(self.ready.region.clone()))
            .endpoint_url(&self.ready.endpoint)
            .credentials_provider(SharedCredentialsProvider::new(Credentials::new(
                HARNESS, "testing", None, None, "tests",
            )))
            .build();
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(calls(config))
    }

    /// Starts a task as the application's deployment would: the generic family, idling,
    /// `startedBy` an ECS service, none of the launcher's tags. Returns its ARN.
    pub fn run_application_task(&self) -> String {
        use aws_sdk_ecs::types::{
            AwsVpcConfiguration, ContainerOverride, LaunchType, NetworkConfiguration, TaskOverride,
        };
        let network = AwsVpcConfiguration::builder()
            .set_subnets(Some(self.ready.subnets.clone()))
            .security_groups(&self.ready.security_group)
            .build()
            .unwrap();
        let idle = ContainerOverride::builder()
            .name("admin")
            .set_command(Some(vec!["sleep".into(), "60".into()]))
            .build();
        self.as_harness(|sdk| async move {
            let reply = aws_sdk_ecs::Client::new(&sdk)
                .run_task()
                .cluster("everruns")
                .task_definition("everruns-admin-generic")
                .launch_type(LaunchType::Fargate)
                .started_by("ecs-svc/4728193047152")
                .network_configuration(
                    NetworkConfiguration::builder()
                        .awsvpc_configuration(network)
                        .build(),
                )
                .overrides(TaskOverride::builder().container_overrides(idle).build())
                .send()
                .await
                .unwrap();
            reply.tasks()[0].task_arn().unwrap().to_owned()
        })
    }

    /// Where task `task_arn` runs, asked of the emulator the way an operator would ask
    /// AWS: DescribeTasks for the ENI attachment, EC2 for the interface's groups.
    pub fn task_network(&self, task_arn: &str) -> TaskNetwork {
        const SCRIPT: &str = r#"
import boto3, json, sys
kw = {"endpoint_url": sys.argv[1], "region_name": sys.argv[2]}
task = boto3.client("ecs", **kw).describe_tasks(cluster="everruns", tasks=[sys.argv[3]])["tasks"][0]
details = {d["name"]: d["value"] for a in task["attachments"] for d in a["details"]}
eni = boto3.client("ec2", **kw).describe_network_interfaces(
    NetworkInterfaceIds=[details["networkInterfaceId"]])["NetworkInterfaces"][0]
print(json.dumps({"subnet": details["subnetId"], "security_groups": [g["GroupId"] for g in eni["Groups"]]}))
"#;
        let out = Command::new("python3")
            .args([
                "-c",
                SCRIPT,
                &self.ready.endpoint,
                &self.ready.region,
                task_arn,
            ])
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .output()
            .unwrap();
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "describing task {task_arn}: {e}: {}",
                String::from_utf8_lossy(&out.stderr)
            )
        })
    }

    /// The launcher binary, configured for this emulator through the environment
    /// variables operators use (no config file, fake credentials).
    pub fn launcher(&self) -> Command {
        let mut cmd = launcher_at(&self.ready.endpoint, &self.ready.region);
        cmd.env("ECS_SUBNETS", self.ready.subnets.join(","))
            .env("ECS_SECURITY_GROUP", &self.ready.security_group);
        cmd
    }
}

/// The access key id the tests' own calls to the emulator sign with, so that the
/// authorization log can tell them from the launcher's (`testing`).
pub const HARNESS: &str = "test-harness";

/// The launcher binary pointed at `endpoint` in `region`, with fake credentials and
/// nothing else from this process's environment.
pub fn launcher_at(endpoint: &str, region: &str) -> Command {
    let mut cmd = super::launcher();
    cmd.env("USER", "e2e-operator")
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_REGION", region)
        .env("AWS_ENDPOINT_URL", endpoint)
        .env("ECS_CLUSTER", "everruns");
    cmd
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
    stack_with(&[])
}

/// [`stack`] with more of the emulator's options.
pub fn stack_with(options: &[&str]) -> (super::TestDatabase, Emulator) {
    let db = super::cluster().create_database();
    let emulator = Emulator::start_with(
        &Secrets {
            database_url: &db.url,
            key: super::KEK_V2,
            previous: Some(super::KEK_V1),
        },
        options,
    );
    (db, emulator)
}

/// An endpoint that accepts connections and never answers, like one behind a broken
/// proxy or VPN: every request to it waits until a timeout ends it. Listens on
/// 127.0.0.1 until dropped.
pub struct SilentEndpoint {
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl SilentEndpoint {
    /// Starts listening.
    pub fn start() -> SilentEndpoint {
        use std::sync::atomic::Ordering;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stopping = std::sync::Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            // Accepted connections are held open, unanswered, until the end.
            let mut held = Vec::new();
            while !stopping.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((stream, _)) => held.push(stream),
                    Err(_) => std::thread::sleep(std::time::Duration::from_millis(10)),
                }
            }
        });
        SilentEndpoint {
            url,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for SilentEndpoint {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// PATH with the stand-in session-manager-plugin (`tests/emulator/`) first, which
/// carries the emulator's ECS Exec and port-forwarding sessions for real.
pub fn path_with_plugin() -> String {
    format!(
        "{}/tests/emulator:{}",
        env!("CARGO_MANIFEST_DIR"),
        std::env::var("PATH").unwrap_or_default()
    )
}

/// A `run-admin-task tunnel` running, once it printed its connection line.
pub struct Tunnel {
    child: Child,
    /// The connection line it printed (`psql "host=127.0.0.1 port=N ..."`).
    pub line: String,
    /// The libpq connection string inside it.
    pub conninfo: String,
    /// The local port.
    pub port: u16,
    stderr: std::thread::JoinHandle<String>,
}

impl Emulator {
    /// Starts `run-admin-task ARGS` (global options, `tunnel` and its options) with the
    /// stand-in plugin and waits (up to a minute) for its connection line; panics with
    /// its output otherwise.
    pub fn open_tunnel(&self, args: &[&str]) -> Tunnel {
        let mut child = self
            .launcher()
            .env("PATH", path_with_plugin())
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stderr = child.stderr.take().unwrap();
        let stderr = std::thread::spawn(move || {
            let mut text = String::new();
            let _ = std::io::Read::read_to_string(&mut stderr, &mut text);
            text
        });
        let (tx, rx) = std::sync::mpsc::channel();
        let stdout = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let line = match rx.recv_timeout(std::time::Duration::from_secs(60)) {
            Ok(line) => line,
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("no connection line; stderr:\n{}", stderr.join().unwrap());
            }
        };
        let conninfo = line
            .strip_prefix("psql \"")
            .and_then(|rest| rest.strip_suffix('"'))
            .unwrap_or_else(|| panic!("not a psql line: {line:?}"))
            .to_owned();
        let port = conninfo
            .split(' ')
            .find_map(|part| part.strip_prefix("port="))
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("no port in {line:?}"));
        Tunnel {
            child,
            line,
            conninfo,
            port,
            stderr,
        }
    }
}

impl Tunnel {
    /// Ctrl-C, as an operator ends it; its exit status and stderr.
    pub fn close(mut self) -> (Option<i32>, String) {
        // SAFETY: kill(2) on the child this test spawned and has not reaped.
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGINT);
        }
        let status = self.child.wait().unwrap();
        (status.code(), self.stderr.join().unwrap())
    }
}

impl Emulator {
    /// The tasks of cluster `everruns` that ECS still wants running.
    pub fn running_tasks(&self) -> Vec<String> {
        self.as_harness(|sdk| async move {
            aws_sdk_ecs::Client::new(&sdk)
                .list_tasks()
                .cluster("everruns")
                .send()
                .await
                .unwrap()
                .task_arns()
                .to_vec()
        })
    }
}
