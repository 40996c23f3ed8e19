//! The launcher's command line and its dispatch: one module per command, each with its
//! arguments and its `exec`, as `run-admin-task --help` lists them.

pub mod doctor;
pub mod execute;
pub mod keys;
pub mod list;
pub mod logs;
pub mod run;
pub mod shell;
pub mod status;
pub mod stop;
pub mod task_def;
pub mod tunnel;

use clap::{Parser, Subcommand};
use tokio::sync::mpsc;

use self::doctor::DoctorArgs;
use self::keys::KeysArgs;
use self::list::ListArgs;
use self::logs::LogsArgs;
use self::run::{CompanionArgs, CompanionCommand, Launch, RunArgs};
use self::shell::ShellArgs;
use self::status::StatusArgs;
use self::stop::StopArgs;
use self::task_def::TaskDefArgs;
use self::tunnel::TunnelArgs;
use crate::launcher::aws_api::policies::{self, Policy};
use crate::launcher::context::Context;
use crate::launcher::error::LauncherError;
use crate::launcher::flags::GlobalOptions;

/// Run an everruns admin job (migrations, re-encryption, any command) as a one-off ECS
/// Fargate task, follow its status and logs live, and exit with its exit code.
///
/// Settings come from flags, then the environment (ECS_CLUSTER, ECS_SUBNETS,
/// ECS_SECURITY_GROUP, AWS_REGION, AWS_PROFILE, AWS_ENDPOINT_URL), then the config file
/// (--config, RUN_ADMIN_TASK_CONFIG, or ~/.config/everruns-admin/config.toml with
/// [env.NAME] tables), then defaults; an environment named with --env or EVERRUNS_ENV
/// wins over the variables, and --profile over access keys in the environment. Exit status: the container's own code; 2 usage or
/// configuration; 123 the container ran but ECS has no exit code for it; 124 timeout;
/// 125 the container never ran; 130 interrupted.
#[derive(Debug, Parser)]
#[command(
    name = "run-admin-task",
    version,
    max_term_width = 100,
    disable_help_subcommand = true
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalOptions,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Apply pending migrations (arguments go to the companion verbatim)
    #[command(
        disable_help_flag = true,
        after_help = "Example: run-admin-task --env production --yes migrate --ddl-lock-timeout 5s"
    )]
    Migrate(CompanionArgs),
    /// Show migration status (arguments go to the companion verbatim)
    #[command(
        disable_help_flag = true,
        after_help = "Example (CI gate: 0 at this image, 3 pending, 4 drift): run-admin-task --output json migrate-info --check"
    )]
    MigrateInfo(CompanionArgs),
    /// Re-encrypt stored secrets (arguments go to the companion verbatim)
    #[command(
        disable_help_flag = true,
        after_help = "Example: run-admin-task reencrypt --dry-run --table llm_providers\n\
                      Across 4 tasks, followed as one job: run-admin-task reencrypt --shards 4 [--only 3] [ARGS]"
    )]
    Reencrypt(CompanionArgs),
    /// Run any container command: run -- CMD ARGS...
    #[command(
        after_help = "Example: run-admin-task run -- migrate --target-version 20250101000100"
    )]
    Run(RunArgs),
    /// Print a task's logs from the first line
    #[command(
        after_help = "Example: run-admin-task logs 0729ffba-dec4-4add-aa06-dc6a49642789 --follow"
    )]
    Logs(LogsArgs),
    /// Show a task's state and how it ended
    #[command(
        after_help = "Example: run-admin-task --output json status 0729ffba-dec4-4add-aa06-dc6a49642789"
    )]
    Status(StatusArgs),
    /// Stop a task
    #[command(
        after_help = "Example: run-admin-task stop 0729ffba-dec4-4add-aa06-dc6a49642789 --reason 'wrong image'"
    )]
    Stop(StopArgs),
    /// Recent tasks this tool started: who, what, when, state, exit code
    #[command(after_help = "Example: run-admin-task --env production list --limit 5")]
    List(ListArgs),
    /// A shell in the admin container over ECS Exec (needs session-manager-plugin)
    #[command(
        after_help = "Example: run-admin-task --env staging shell --command 'psql \"$DATABASE_URL\"'"
    )]
    Shell(ShellArgs),
    /// The database on a local port through the admin task, for your own client
    /// (Session Manager port forwarding; needs session-manager-plugin)
    #[command(
        after_help = "Example: run-admin-task --env production tunnel --local-port 15432, then psql on the line it prints"
    )]
    Tunnel(TunnelArgs),
    /// The encryption key secrets: generate, status, rotate, retire
    #[command(after_help = "Example: run-admin-task --env production keys rotate --dry-run")]
    Keys {
        #[command(subcommand)]
        command: KeysArgs,
    },
    /// Check credentials, cluster, task definition, log group, secrets and network;
    /// exit 0 when nothing fails, 1 when something does, 2 on a usage error
    #[command(after_help = "Example: run-admin-task --env production doctor --in-vpc")]
    Doctor(DoctorArgs),
    /// The admin task definition from its template: render or register;
    /// exit 0 done, 1 AWS refused, 2 template or configuration error
    #[command(after_help = "Example: IMAGE_TAG=$GITHUB_SHA run-admin-task task-def register")]
    TaskDef {
        #[command(subcommand)]
        command: TaskDefArgs,
    },
    /// Print this help, a command's help, or the companion's own help for migrate,
    /// migrate-info and reencrypt
    #[command(after_help = "Example: run-admin-task help migrate-info")]
    Help {
        /// The command (and subcommand)
        command: Vec<String>,
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

/// Whether `command` may launch a task, and so needs the network settings that
/// `--from-service` copies; inspecting a task never does.
pub(crate) fn launches_tasks(command: &Command) -> bool {
    !matches!(
        command,
        Command::Logs(_)
            | Command::Status(_)
            | Command::Stop(_)
            | Command::List(_)
            | Command::TaskDef { .. }
            | Command::Help { .. }
            | Command::Completions { .. }
    )
}

/// The command's name and the IAM policies (`task-definitions/iam/`) it needs, as the
/// README's permissions table lists them.
pub(crate) fn policies_of(command: &Command) -> (&'static str, &'static [Policy]) {
    const OPERATOR: &[Policy] = &[Policy::Operator];
    match command {
        Command::Migrate(_) => ("migrate", OPERATOR),
        Command::MigrateInfo(_) => ("migrate-info", OPERATOR),
        Command::Reencrypt(_) => ("reencrypt", OPERATOR),
        Command::Run(_) => ("run", OPERATOR),
        Command::Logs(_) => ("logs", OPERATOR),
        Command::Status(_) => ("status", OPERATOR),
        Command::Stop(_) => ("stop", OPERATOR),
        Command::List(_) => ("list", OPERATOR),
        Command::Shell(_) => ("shell", OPERATOR),
        Command::Tunnel(_) => ("tunnel", OPERATOR),
        Command::Doctor(_) => ("doctor", OPERATOR),
        Command::Keys { command } => match command {
            KeysArgs::Generate { .. } => ("keys generate", &[Policy::KeyAdmin]),
            KeysArgs::Status { .. } => ("keys status", &[Policy::KeyAdmin]),
            // Both first run `reencrypt --dry-run` as a task.
            KeysArgs::Rotate { .. } => ("keys rotate", &[Policy::Operator, Policy::KeyAdmin]),
            KeysArgs::Retire { .. } => ("keys retire", &[Policy::Operator, Policy::KeyAdmin]),
        },
        Command::TaskDef { command } => match command {
            TaskDefArgs::Render(_) => ("task-def render", &[]),
            TaskDefArgs::Register(_) => ("task-def register", &[Policy::Deployer]),
        },
        Command::Help { .. } => ("help", &[]),
        Command::Completions { .. } => ("completions", &[]),
    }
}

/// The launch a command asks for (`None` for commands that launch no job of their own),
/// its companion arguments checked.
pub fn launch_of(command: &Command) -> Result<Option<Launch>, clap::Error> {
    Ok(Some(match command {
        Command::Migrate(args) => Launch::companion(CompanionCommand::Migrate, args)?,
        Command::MigrateInfo(args) => Launch::companion(CompanionCommand::MigrateInfo, args)?,
        Command::Reencrypt(args) => Launch::companion(CompanionCommand::Reencrypt, args)?,
        Command::Run(args) => Launch::any(args),
        _ => return Ok(None),
    }))
}

/// Runs `command` and returns the exit status; `launch` is the job it asks for, planned
/// (and its companion arguments checked) by [`launch_of`] before the configuration.
pub(crate) async fn dispatch(
    context: &Context,
    command: &Command,
    launch: Option<&Launch>,
    in_github_actions: bool,
    interrupts: &mut mpsc::UnboundedReceiver<()>,
) -> Result<u8, LauncherError> {
    let (name, needed) = policies_of(command);
    policies::remember_command(name, needed);
    if let Some(launch) = launch {
        return run::exec(context, launch, in_github_actions, interrupts).await;
    }
    match command {
        Command::Logs(args) => logs::exec(context, args, interrupts).await,
        Command::Status(args) => status::exec(context, args).await,
        Command::Stop(args) => stop::exec(context, args).await,
        Command::List(args) => list::exec(context, args).await,
        Command::Shell(args) => shell::exec(context, args, interrupts).await,
        Command::Tunnel(args) => tunnel::exec(context, args, interrupts).await,
        Command::Keys { command } => keys::exec(context, command, interrupts).await,
        Command::Doctor(args) => doctor::exec(context, args, interrupts).await,
        Command::TaskDef { command } => task_def::exec(context, command).await,
        // Launches are run above; help and completions never reach the runtime.
        Command::Migrate(_)
        | Command::MigrateInfo(_)
        | Command::Reencrypt(_)
        | Command::Run(_)
        | Command::Completions { .. }
        | Command::Help { .. } => Ok(0),
    }
}
