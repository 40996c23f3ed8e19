//! The launcher's command line and its dispatch: one module per command, each with its
//! arguments and its `exec`, as `run-admin-task --help` lists them.

pub mod doctor;
pub mod keys;
pub mod list;
pub mod logs;
pub mod run;
pub mod shell;
pub mod status;
pub mod stop;
pub mod task_def;

use clap::{CommandFactory, Parser, Subcommand};
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
use crate::exit::{ExitError, launcher};
use crate::launcher::config::{self, GlobalOptions, LaunchConfig, OutputFormat};
use crate::launcher::context::Context;
use crate::launcher::identity::Operator;
use crate::launcher::job::report::TaskReport;
use crate::launcher::render::Renderer;
use crate::signals::Signals;

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
        after_help = "Example: run-admin-task reencrypt --dry-run --table llm_providers"
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
    /// Print a shell completion script
    #[command(
        after_help = "Example: run-admin-task completions bash > /etc/bash_completion.d/run-admin-task"
    )]
    Completions {
        /// The shell
        shell: clap_complete::Shell,
    },
}

/// Runs the launcher and returns its exit status.
pub fn main(cli: Cli) -> u8 {
    if let Command::Completions { shell } = cli.command {
        crate::completions::print(shell, Cli::command());
        return 0;
    }
    match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime.block_on(execute(cli)),
        Err(e) => {
            eprintln!("run-admin-task: cannot start the async runtime: {e}");
            launcher::NEVER_RAN
        }
    }
}

/// Runs one command line on the current runtime, with Ctrl-C and SIGTERM handled.
pub async fn execute(cli: Cli) -> u8 {
    let Cli {
        global: options,
        command,
    } = cli;
    let output = options.output;
    let config = match LaunchConfig::resolve(&options, &config::process_env) {
        Ok(config) => config,
        Err(e) => return fail(output, &e, None),
    };
    let context = Context {
        operator: Operator::detect(&config::process_env),
        renderer: Renderer::new(options.output, options.quiet),
        options,
        config,
    };
    let mut interrupts = match interrupts() {
        Ok(interrupts) => interrupts,
        Err(e) => return fail(output, &e, Some(&context)),
    };
    let result = dispatch(&context, &command, &mut interrupts).await;
    context.renderer.finish();
    match result {
        Ok(code) => code,
        Err(e) => fail(output, &e, Some(&context)),
    }
}

/// Runs `command` and returns the exit status.
pub async fn dispatch(
    context: &Context,
    command: &Command,
    interrupts: &mut mpsc::UnboundedReceiver<()>,
) -> Result<u8, ExitError> {
    match command {
        Command::Migrate(args) => {
            let launch = Launch::companion(CompanionCommand::Migrate, args);
            run::exec(context, &launch, interrupts).await
        }
        Command::MigrateInfo(args) => {
            let launch = Launch::companion(CompanionCommand::MigrateInfo, args);
            run::exec(context, &launch, interrupts).await
        }
        Command::Reencrypt(args) => {
            let launch = Launch::companion(CompanionCommand::Reencrypt, args);
            run::exec(context, &launch, interrupts).await
        }
        Command::Run(args) => run::exec(context, &Launch::any(args), interrupts).await,
        Command::Logs(args) => logs::exec(context, args, interrupts).await,
        Command::Status(args) => status::exec(context, args).await,
        Command::Stop(args) => stop::exec(context, args).await,
        Command::List(args) => list::exec(context, args).await,
        Command::Shell(args) => shell::exec(context, args, interrupts).await,
        Command::Keys { command } => keys::exec(context, command, interrupts).await,
        Command::Doctor(args) => doctor::exec(context, args, interrupts).await,
        Command::TaskDef { command } => task_def::exec(context, command).await,
        Command::Completions { .. } => Ok(0),
    }
}

/// Reports a failure: the message on stderr and, with `--output json`, a document on
/// stdout with `error` and `exit_code` so stdout always holds one.
fn fail(output: OutputFormat, error: &ExitError, context: Option<&Context>) -> u8 {
    eprintln!("run-admin-task: {error}");
    if output == OutputFormat::Json {
        let report = TaskReport {
            cluster: context
                .map(|c| c.config.cluster.clone())
                .unwrap_or_default(),
            container: context
                .map(|c| c.config.container.clone())
                .unwrap_or_default(),
            exit_code: error.code,
            error: Some(format!("{error}")),
            ..Default::default()
        };
        println!("{}", report.to_json());
    }
    error.code
}

/// One message per Ctrl-C or SIGTERM, for as long as the receiver lives.
fn interrupts() -> Result<mpsc::UnboundedReceiver<()>, ExitError> {
    let signals = Signals::install().map_err(|e| {
        ExitError::new(
            launcher::NEVER_RAN,
            anyhow::anyhow!("cannot listen for Ctrl-C and SIGTERM: {e}"),
        )
    })?;
    Ok(signals.into_channel())
}
