//! `run-admin-task`: run everruns admin jobs on ECS Fargate and exit with their exit code.
//!
//! This file only parses the command line; the launcher lives in
//! `everruns_admin::launcher`.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, CommandFactory, Parser, Subcommand, ValueEnum};
use everruns_admin::duration;
use everruns_admin::launcher::commands::doctor::DoctorOptions;
use everruns_admin::launcher::commands::keys::{KeysCommand, SecretFlags};
use everruns_admin::launcher::commands::shell::ShellArgs;
use everruns_admin::launcher::commands::task_def::{TaskDefAction, TaskDefRequest};
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
    #[command(
        disable_help_flag = true,
        after_help = "Example: run-admin-task --env production --yes migrate --ddl-lock-timeout 5s"
    )]
    Migrate(Passthrough),
    /// Show migration status (arguments go to the companion verbatim)
    #[command(
        disable_help_flag = true,
        after_help = "Example (CI gate: 0 at this image, 3 pending, 4 drift): run-admin-task --output json migrate-info --check"
    )]
    MigrateInfo(Passthrough),
    /// Re-encrypt stored secrets (arguments go to the companion verbatim)
    #[command(
        disable_help_flag = true,
        after_help = "Example: run-admin-task reencrypt --dry-run --table llm_providers"
    )]
    Reencrypt(Passthrough),
    /// Run any container command: run -- CMD ARGS...
    #[command(
        after_help = "Example: run-admin-task run -- migrate --target-version 20250101000100"
    )]
    Run {
        /// The command and its arguments, verbatim
        #[arg(required = true, num_args = 1.., trailing_var_arg = true, allow_hyphen_values = true, value_name = "CMD")]
        argv: Vec<String>,
    },
    /// Print a task's logs from the first line
    #[command(
        after_help = "Example: run-admin-task logs 0729ffba-dec4-4add-aa06-dc6a49642789 --follow"
    )]
    Logs {
        /// Task id or ARN
        task: String,
        /// Keep following until the task stops; exit with its exit code
        #[arg(long, short = 'f')]
        follow: bool,
    },
    /// Show a task's state and how it ended
    #[command(
        after_help = "Example: run-admin-task --output json status 0729ffba-dec4-4add-aa06-dc6a49642789"
    )]
    Status {
        /// Task id or ARN
        task: String,
    },
    /// Stop a task
    #[command(
        after_help = "Example: run-admin-task stop 0729ffba-dec4-4add-aa06-dc6a49642789 --reason 'wrong image'"
    )]
    Stop {
        /// Task id or ARN
        task: String,
        /// Why (recorded by ECS) [default: who stopped it]
        #[arg(long, value_name = "TEXT")]
        reason: Option<String>,
    },
    /// Recent tasks this tool started: who, what, when, state, exit code
    #[command(after_help = "Example: run-admin-task --env production list --limit 5")]
    List {
        /// At most this many, newest first
        #[arg(long, default_value_t = 20)]
        limit: usize,
    },
    /// A shell in the admin container over ECS Exec (needs session-manager-plugin)
    #[command(
        after_help = "Example: run-admin-task --env staging shell --command 'psql \"$DATABASE_URL\"'"
    )]
    Shell(ShellCli),
    /// The encryption key secrets: generate, status, rotate, retire
    #[command(after_help = "Example: run-admin-task --env production keys rotate --dry-run")]
    Keys {
        #[command(subcommand)]
        command: KeysCli,
    },
    /// Check credentials, cluster, task definition, log group, secrets and network;
    /// exit 0 when nothing fails, 1 when something does, 2 on a usage error
    #[command(after_help = "Example: run-admin-task --env production doctor --in-vpc")]
    Doctor {
        /// Also run the companion's `status` in the VPC: database reachable, schema, key ids
        #[arg(long)]
        in_vpc: bool,
        /// Fail on what `shell` needs (session-manager-plugin, task role) instead of
        /// reporting it as SKIP
        #[arg(long)]
        for_shell: bool,
    },
    /// The admin task definition from its template: render or register;
    /// exit 0 done, 1 AWS refused, 2 template or configuration error
    #[command(after_help = "Example: IMAGE_TAG=$GITHUB_SHA run-admin-task task-def register")]
    TaskDef {
        #[command(subcommand)]
        command: TaskDefCli,
    },
    /// Print a shell completion script
    #[command(
        after_help = "Example: run-admin-task completions bash > /etc/bash_completion.d/run-admin-task"
    )]
    Completions {
        /// The shell
        shell: clap_complete::Shell,
    },
}

#[derive(Debug, Subcommand)]
enum TaskDefCli {
    /// Print the rendered, checked task definition JSON
    Render(TaskDefArgs),
    /// Register it as a new revision and print FAMILY:REVISION
    Register(TaskDefArgs),
}

#[derive(Debug, Args)]
struct TaskDefArgs {
    /// The image tag (the value of IMAGE_TAG) [env: IMAGE_TAG]
    #[arg(long, value_name = "TAG")]
    image_tag: Option<String>,
    /// A template file instead of the built-in task-definitions/admin.json.tmpl
    #[arg(long, value_name = "PATH")]
    template: Option<PathBuf>,
}

#[derive(Debug, Args)]
struct Passthrough {
    /// Arguments for the companion command
    #[arg(num_args = 0.., trailing_var_arg = true, allow_hyphen_values = true, value_name = "ARGS")]
    args: Vec<String>,
}

#[derive(Debug, Args)]
struct ShellCli {
    /// Attach to this running task (id or ARN) instead of starting one; it keeps running
    #[arg(long, value_name = "TASK")]
    task: Option<String>,
    /// The command to run in the session
    #[arg(long, value_name = "CMD", default_value = "/bin/bash")]
    command: String,
    /// Leave the started task running after the session ends
    #[arg(long)]
    keep: bool,
}

#[derive(Debug, Args)]
struct SecretArgs {
    /// The current key's secret [default: the task definition's SECRETS_ENCRYPTION_KEY]
    #[arg(long, value_name = "NAME|ARN")]
    current_secret: Option<String>,
    /// The previous keys' secret [default: the task definition's SECRETS_ENCRYPTION_KEY_PREVIOUS]
    #[arg(long, value_name = "NAME|ARN")]
    previous_secret: Option<String>,
}

#[derive(Debug, Subcommand)]
enum KeysCli {
    /// Print a new key id:base64(32 random bytes) on stdout, to be piped
    Generate {
        /// The key id [default: the next version after the current key's]
        #[arg(long, value_name = "ID")]
        id: Option<String>,
        #[command(flatten)]
        secrets: SecretArgs,
    },
    /// Key ids, last change and version stages of both key secrets (never the keys)
    Status {
        #[command(flatten)]
        secrets: SecretArgs,
    },
    /// Check with reencrypt --dry-run, move the current key to the previous slot, store a new one
    Rotate {
        /// The new key's id [default: the next version after the current key's]
        #[arg(long, value_name = "ID")]
        id: Option<String>,
        /// Check and show what would change; change nothing
        #[arg(long)]
        dry_run: bool,
        #[command(flatten)]
        secrets: SecretArgs,
    },
    /// Check with reencrypt --dry-run, then empty the previous slot
    Retire {
        /// Check and show what would change; change nothing
        #[arg(long)]
        dry_run: bool,
        #[command(flatten)]
        secrets: SecretArgs,
    },
}

impl From<SecretArgs> for SecretFlags {
    fn from(a: SecretArgs) -> Self {
        SecretFlags {
            current_secret: a.current_secret,
            previous_secret: a.previous_secret,
        }
    }
}

impl From<KeysCli> for KeysCommand {
    fn from(command: KeysCli) -> Self {
        match command {
            KeysCli::Generate { id, secrets } => KeysCommand::Generate {
                id,
                secrets: secrets.into(),
            },
            KeysCli::Status { secrets } => KeysCommand::Status {
                secrets: secrets.into(),
            },
            KeysCli::Rotate {
                id,
                dry_run,
                secrets,
            } => KeysCommand::Rotate {
                id,
                dry_run,
                secrets: secrets.into(),
            },
            KeysCli::Retire { dry_run, secrets } => KeysCommand::Retire {
                dry_run,
                secrets: secrets.into(),
            },
        }
    }
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
        Cmd::Shell(s) => Command::Shell(ShellArgs {
            task: s.task,
            command: Some(s.command),
            keep: s.keep,
        }),
        Cmd::Keys { command } => Command::Keys(command.into()),
        Cmd::Doctor { in_vpc, for_shell } => Command::Doctor(DoctorOptions { in_vpc, for_shell }),
        Cmd::TaskDef { command } => {
            let (action, args) = match command {
                TaskDefCli::Render(args) => (TaskDefAction::Render, args),
                TaskDefCli::Register(args) => (TaskDefAction::Register, args),
            };
            Command::TaskDef(TaskDefRequest {
                action,
                image_tag: args.image_tag,
                template: args.template,
            })
        }
        Cmd::Completions { shell } => {
            everruns_admin::completions::print(shell, Cli::command());
            return;
        }
    };
    let code = everruns_admin::launcher::main(Invocation { options, command });
    std::process::exit(i32::from(code));
}
