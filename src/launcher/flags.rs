//! The launcher's global flags, as clap parses them, and the process environment they
//! are read beside (injected, so tests do not touch the process's own).

use std::path::PathBuf;
use std::time::Duration;

/// How the launcher prints its results: readable text (log lines on stdout, status on
/// stderr), or one JSON document on stdout at the end with everything else on stderr.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    #[default]
    Human,
    Json,
}

/// The global options, before the command; `None`/empty means "not given". Resolution
/// into a [`LaunchConfig`] happens here so precedence is decided in one place. The help
/// texts are what `run-admin-task --help` prints.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct GlobalOptions {
    /// Config file [default: $RUN_ADMIN_TASK_CONFIG or ~/.config/everruns-admin/config.toml]
    #[arg(long, value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// Config file environment ([env.NAME]) [env: EVERRUNS_ENV]
    #[arg(long, value_name = "NAME")]
    pub env: Option<String>,
    /// ECS cluster [env: ECS_CLUSTER] [default: everruns]
    #[arg(long)]
    pub cluster: Option<String>,
    /// Subnets, comma-separated or repeated [env: ECS_SUBNETS]
    #[arg(long, value_name = "IDS")]
    pub subnets: Vec<String>,
    /// Security groups, comma-separated or repeated [env: ECS_SECURITY_GROUP]
    #[arg(long = "security-groups", alias = "security-group", value_name = "IDS")]
    pub security_groups: Vec<String>,
    /// Give the task a public IP (public subnets without NAT)
    #[arg(long)]
    pub assign_public_ip: bool,
    /// Take subnets, security groups, public IP, capacity and platform version from
    /// this ECS service of the cluster; a setting given here still wins
    /// [env: ECS_SERVICE] [config: service]
    #[arg(long, value_name = "NAME")]
    pub from_service: Option<String>,
    /// Fargate platform version [config: platform_version] [default: LATEST]
    #[arg(long, value_name = "VERSION")]
    pub platform_version: Option<String>,
    /// Task definition: FAMILY, FAMILY:REVISION or ARN [env: ECS_TASK_DEFINITION]
    /// [default: everruns-admin]
    #[arg(long, value_name = "FAMILY[:REV]|ARN")]
    pub task_definition: Option<String>,
    /// Container to run the command in and take the exit code from [default: admin]
    #[arg(long)]
    pub container: Option<String>,
    /// Launch type [default: FARGATE]
    #[arg(long, value_name = "TYPE", conflicts_with = "capacity_provider")]
    pub launch_type: Option<String>,
    /// Capacity provider instead of a launch type (e.g. FARGATE_SPOT)
    #[arg(long, value_name = "NAME")]
    pub capacity_provider: Option<String>,
    /// AWS region [env: AWS_REGION]
    #[arg(long)]
    pub region: Option<String>,
    /// AWS profile [env: AWS_PROFILE]
    #[arg(long)]
    pub profile: Option<String>,
    /// AWS endpoint, e.g. an emulator [env: AWS_ENDPOINT_URL]
    #[arg(long, value_name = "URL")]
    pub endpoint_url: Option<String>,
    /// Stop waiting after this long and exit 124 (seconds, or 90s, 10m, 2h)
    #[arg(long, value_name = "DURATION", value_parser = crate::contract::duration::parse_nonzero)]
    pub timeout: Option<Duration>,
    /// Stop the task when --timeout is reached
    #[arg(long, requires = "timeout")]
    pub stop_on_timeout: bool,
    /// Print the task ARN and how to re-attach, then exit without following
    #[arg(long)]
    pub no_wait: bool,
    /// Output: human text, or one JSON document on stdout
    #[arg(long, value_enum, default_value_t = OutputFormat::Human)]
    pub output: OutputFormat,
    /// Print the RunTask request that would be sent, and send nothing
    #[arg(long)]
    pub print_request: bool,
    /// Do not ask for confirmation in a `confirm = true` environment
    #[arg(long, short = 'y')]
    pub yes: bool,
    /// No status lines, spinner or progress bars
    #[arg(long, short = 'q')]
    pub quiet: bool,
    /// Launch a mutating command even while another one is running
    #[arg(long)]
    pub allow_concurrent: bool,
    /// Start the task again up to N times when ECS proves it never started (no capacity,
    /// RESOURCE:*, a passing ResourceInitializationError such as an ENI timeout), after
    /// 1 s, 2 s, 4 s, ...; never for a container that ran
    /// [env: RUN_ADMIN_TASK_START_RETRIES] [config: start_retries] [default: 2]
    #[arg(long, value_name = "N")]
    pub start_retries: Option<u32>,
    /// GetLogEvents calls a second, on average, for all the log tails of this invocation
    /// together (an account-wide quota, shared with everything else in the account)
    /// [env: RUN_ADMIN_TASK_LOG_READS_PER_SECOND] [config: log_reads_per_second] [default: 4]
    #[arg(long, value_name = "N")]
    pub log_reads_per_second: Option<f64>,
    /// Let a job that writes (migrate, reencrypt) run on FARGATE_SPOT; without it such
    /// a job leaves FARGATE_SPOT out of the capacity, since a Spot interruption would
    /// stop it midway
    #[arg(long)]
    pub allow_spot: bool,
    /// Wait for the task to reach STOPPED (stoppedAt), not just for the container's
    /// exit and its logs [config: wait_stopped]
    #[arg(long)]
    pub wait_stopped: bool,
    /// The longest one AWS call may take, retries included
    /// [env: RUN_ADMIN_TASK_CALL_TIMEOUT] [config: call_timeout] [default: 20s]
    #[arg(long, value_name = "DURATION", value_parser = crate::contract::duration::parse_nonzero)]
    pub call_timeout: Option<Duration>,
    /// The longest one attempt of an AWS call may take before it is retried
    /// [env: RUN_ADMIN_TASK_ATTEMPT_TIMEOUT] [config: attempt_timeout] [default: 8s]
    #[arg(long, value_name = "DURATION", value_parser = crate::contract::duration::parse_nonzero)]
    pub attempt_timeout: Option<Duration>,
    /// Warn once when the task has not started after this long
    /// [env: RUN_ADMIN_TASK_SLOW_START] [config: slow_start] [default: 2m]
    #[arg(long, value_name = "DURATION", value_parser = crate::contract::duration::parse_nonzero)]
    pub slow_start: Option<Duration>,
    /// RunTask's clientToken: a rerun with the same key attaches to the task the first
    /// run started (ECS honours it for a limited time: see README). In GitHub Actions it
    /// defaults to one derived from the run, attempt, job, step and command
    #[arg(long, value_name = "KEY")]
    pub idempotency_key: Option<String>,
    /// CI integration: github (log groups, annotations, job summary, step outputs) or
    /// none [default: github when GITHUB_ACTIONS=true]
    #[arg(long, value_enum, value_name = "KIND")]
    pub ci: Option<CiKind>,
}

/// Which CI the launcher speaks to, besides its plain output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum CiKind {
    /// GitHub Actions: workflow commands, `$GITHUB_STEP_SUMMARY`, `$GITHUB_OUTPUT`.
    Github,
    /// Plain output only.
    None,
}

impl CiKind {
    /// `--ci` when given, else GitHub Actions when `GITHUB_ACTIONS=true`. Known before
    /// the rest of the configuration, so a configuration error is reported there too.
    pub fn of(flag: Option<CiKind>, env: EnvLookup) -> CiKind {
        match flag {
            Some(kind) => kind,
            None if env("GITHUB_ACTIONS").as_deref() == Some("true") => CiKind::Github,
            None => CiKind::None,
        }
    }
}

/// Reads one environment variable; injected so tests do not touch the process's.
pub(crate) type EnvLookup<'a> = &'a dyn Fn(&str) -> Option<String>;

/// The process environment, with empty values treated as unset (as the old script did).
pub(crate) fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}
