//! `run-admin-task`: run everruns admin jobs on ECS Fargate and exit with their exit code.
//!
//! This file only parses the command line; the launcher lives in
//! `everruns_admin::launcher`.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use everruns_admin::duration;
use everruns_admin::launcher::config::{GlobalOptions, OutputFormat};
use everruns_admin::launcher::{Command, CompanionCommand, Invocation};

/// Run an everruns admin job (migrations, re-encryption, any command) as a one-off ECS
/// Fargate task, follow its status and logs live, and exit with its exit code.
///
/// Settings come from flags, then the environment (ECS_CLUSTER, ECS_SUBNETS,
/// ECS_SECURITY_GROUP, AWS_REGION, AWS_PROFILE, AWS_ENDPOINT_URL), then the config file
/// (--config, RUN_ADMIN_TASK_CONFIG, or ~/.config/everruns-admin/config.toml with
/// [env.NAME] tables), then defaults. Exit status: the container's own code; 2 usage or
/// configuration; 124 timeout; 125 the container never ran; 130 interrupted.
#[derive(Debug, Parser)]
#[command(name = "run-admin-task", version, max_term_width = 100)]
struct Cli {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Args)]
struct Global {
    /// Config file [default: $RUN_ADMIN_TASK_CONFIG or ~/.config/everruns-admin/config.toml]
    #[arg(long, value_name = "PATH")]
    config: Option<PathBuf>,
    /// Config file environment ([env.NAME]) [env: EVERRUNS_ENV]
    #[arg(long, value_name = "NAME")]
    env: Option<String>,
    /// ECS cluster [env: ECS_CLUSTER] [default: everruns]
    #[arg(long)]
    cluster: Option<String>,
    /// Subnets, comma-separated or repeated [env: ECS_SUBNETS]
    #[arg(long, value_name = "IDS")]
    subnets: Vec<String>,
    /// Security groups, comma-separated or repeated [env: ECS_SECURITY_GROUP]
    #[arg(long = "security-groups", alias = "security-group", value_name = "IDS")]
    security_groups: Vec<String>,
    /// Give the task a public IP (public subnets without NAT)
    #[arg(long)]
    assign_public_ip: bool,
    /// Task definition: FAMILY, FAMILY:REVISION or ARN [default: everruns-admin]
    #[arg(long, value_name = "FAMILY[:REV]|ARN")]
    task_definition: Option<String>,
    /// Container to run the command in and take the exit code from [default: admin]
    #[arg(long)]
    container: Option<String>,
    /// Launch type [default: FARGATE]
    #[arg(long, value_name = "TYPE", conflicts_with = "capacity_provider")]
    launch_type: Option<String>,
    /// Capacity provider instead of a launch type (e.g. FARGATE_SPOT)
    #[arg(long, value_name = "NAME")]
    capacity_provider: Option<String>,
    /// AWS region [env: AWS_REGION]
    #[arg(long)]
    region: Option<String>,
    /// AWS profile [env: AWS_PROFILE]
    #[arg(long)]
    profile: Option<String>,
    /// AWS endpoint, e.g. an emulator [env: AWS_ENDPOINT_URL]
    #[arg(long, value_name = "URL")]
    endpoint_url: Option<String>,
    /// Stop waiting after this long and exit 124 (seconds, or 90s, 10m, 2h)
    #[arg(long, value_name = "DURATION", value_parser = duration::parse_nonzero)]
    timeout: Option<Duration>,
    /// Stop the task when --timeout is reached
    #[arg(long, requires = "timeout")]
    stop_on_timeout: bool,
    /// Print the task ARN and how to re-attach, then exit without following
    #[arg(long)]
    no_wait: bool,
    /// Output: human text, or one JSON document on stdout
    #[arg(long, value_enum, default_value_t = Output::Human)]
    output: Output,
    /// Print the RunTask request that would be sent, and send nothing
    #[arg(long)]
    print_request: bool,
    /// Do not ask for confirmation in a `confirm = true` environment
    #[arg(long, short = 'y')]
    yes: bool,
    /// No status lines, spinner or progress bars
    #[arg(long, short = 'q')]
    quiet: bool,
    /// Launch a mutating command even while another one is running
    #[arg(long)]
    allow_concurrent: bool,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Output {
    Human,
    Json,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Apply pending migrations (arguments go to the companion verbatim)
    #[command(disable_help_flag = true)]
    Migrate(Passthrough),
    /// Show migration status (arguments go to the companion verbatim)
    #[command(disable_help_flag = true)]
    MigrateInfo(Passthrough),
    /// Re-encrypt stored secrets (arguments go to the companion verbatim)
    #[command(disable_help_flag = true)]
    Reencrypt(Passthrough),
    /// Run any container command: run -- CMD ARGS...
    Run {
        /// The command and its arguments, verbatim
        #[arg(required = true, num_args = 1.., trailing_var_arg = true, allow_hyphen_values = true, value_name = "CMD")]
        argv: Vec<String>,
    },
    /// Print a task's logs from the first line
    Logs {
        /// Task id or ARN
        task: String,
        /// Keep following until the task stops; exit with its exit code
        #[arg(long, short = 'f')]
        follow: bool,
    },
    /// Show a task's state and how it ended
    Status {
        /// Task id or ARN
        task: String,
    },
    /// Stop a task
    Stop {
        /// Task id or ARN
        task: String,
        /// Why (recorded by ECS) [default: who stopped it]
        #[arg(long, value_name = "TEXT")]
        reason: Option<String>,
    },
    /// Recent tasks this tool started: who, what, when, state, exit code
    List {
        /// At most this many, newest first
        #[arg(long, default_value_t = 20)]
        limit: usize,
    },
}

#[derive(Debug, Args)]
struct Passthrough {
    /// Arguments for the companion command
    #[arg(num_args = 0.., trailing_var_arg = true, allow_hyphen_values = true, value_name = "ARGS")]
    args: Vec<String>,
}

fn main() {
    let cli = Cli::parse();
    let g = cli.global;
    let options = GlobalOptions {
        config: g.config,
        env: g.env,
        cluster: g.cluster,
        subnets: g.subnets,
        security_groups: g.security_groups,
        assign_public_ip: g.assign_public_ip,
        task_definition: g.task_definition,
        container: g.container,
        launch_type: g.launch_type,
        capacity_provider: g.capacity_provider,
        region: g.region,
        profile: g.profile,
        endpoint_url: g.endpoint_url,
        timeout: g.timeout,
        stop_on_timeout: g.stop_on_timeout,
        no_wait: g.no_wait,
        output: match g.output {
            Output::Human => OutputFormat::Human,
            Output::Json => OutputFormat::Json,
        },
        print_request: g.print_request,
        yes: g.yes,
        quiet: g.quiet,
        allow_concurrent: g.allow_concurrent,
    };
    let companion = |command, p: Passthrough| Command::Companion {
        command,
        args: p.args,
    };
    let command = match cli.command {
        Cmd::Migrate(p) => companion(CompanionCommand::Migrate, p),
        Cmd::MigrateInfo(p) => companion(CompanionCommand::MigrateInfo, p),
        Cmd::Reencrypt(p) => companion(CompanionCommand::Reencrypt, p),
        Cmd::Run { argv } => Command::Run { argv },
        Cmd::Logs { task, follow } => Command::Logs { task, follow },
        Cmd::Status { task } => Command::Status { task },
        Cmd::Stop { task, reason } => Command::Stop { task, reason },
        Cmd::List { limit } => Command::List { limit },
    };
    let code = everruns_admin::launcher::main(Invocation { options, command });
    std::process::exit(i32::from(code));
}
