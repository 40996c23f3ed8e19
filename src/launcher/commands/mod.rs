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
use crate::contract::exit::{ExitError, launcher};
use crate::launcher::config::LaunchConfig;
use crate::launcher::context::Context;
use crate::launcher::flags::{self, CiKind, GlobalOptions, OutputFormat};
use crate::launcher::github_actions;
use crate::launcher::identity::Operator;
use crate::launcher::job::report::TaskReport;
use crate::launcher::render::Renderer;
use crate::launcher::service;
use crate::signals::{Handled, Signals};

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

/// Runs the launcher and returns its exit status.
pub fn main(cli: Cli) -> u8 {
    match &cli.command {
        Command::Completions { shell } => {
            crate::completions::print(*shell, Cli::command());
            return 0;
        }
        Command::Help { command } => return help(command),
        _ => {}
    }
    match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => {
            let code = runtime.block_on(execute(cli));
            // A prompt's stdin read or a DNS lookup on a blocking thread must not keep an
            // interrupted process alive.
            runtime.shutdown_timeout(std::time::Duration::from_millis(200));
            code
        }
        Err(e) => {
            crate::stdio::err_line(format_args!(
                "run-admin-task: cannot start the async runtime: {e}"
            ));
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
    let ci = CiKind::of(options.ci, &flags::process_env);
    // A companion command's arguments are checked before anything else, so `--help`
    // and a typo are answered here and launch nothing.
    let launch = match launch_of(&command) {
        Ok(launch) => launch,
        Err(e) if e.exit_code() == 0 || output == OutputFormat::Human => {
            let _ = e.print();
            if e.exit_code() == 0 && matches!(command, Command::Reencrypt(_)) {
                crate::stdio::out_line(format_args!("\n{}", run::REENCRYPT_LAUNCHER_HELP));
            }
            return u8::try_from(e.exit_code()).unwrap_or(launcher::USAGE);
        }
        Err(e) => {
            return fail(
                output,
                &ExitError::usage(anyhow::anyhow!("{e}")),
                None,
                None,
            );
        }
    };
    // A launch in GitHub Actions leaves its summary and outputs however it ends.
    let job = launch
        .as_ref()
        .filter(|_| ci == CiKind::Github && !options.print_request)
        .map(Launch::command_line);
    let job = job.as_deref();
    let config = match LaunchConfig::resolve(&options, &flags::process_env) {
        Ok(config) => config,
        Err(e) => return fail(output, &e, None, job),
    };
    let mut renderer = Renderer::new(options.output, options.quiet);
    if let Some(job) = job {
        renderer = renderer.with_log_groups(&format!("container log: {job}"));
    }
    let mut context = Context {
        operator: Operator::detect(&flags::process_env),
        renderer,
        options,
        config,
    };
    let (mut interrupts, mut unclaimed) = match interrupts() {
        Ok(channels) => channels,
        Err(e) => return fail(output, &e, Some(&context), job),
    };
    if context.config.service.is_some() && launches_tasks(&command) {
        tokio::select! {
            adopted = service::adopt(&mut context.config) => {
                if let Err(e) = adopted {
                    return fail(output, &e, Some(&context), job);
                }
            }
            Some(()) = unclaimed.recv() => {
                let error = ExitError::new(launcher::INTERRUPTED, anyhow::anyhow!("interrupted; nothing was launched"));
                return fail(output, &error, Some(&context), job);
            }
        }
    }
    for line in &context.config.overridden {
        context.renderer.warn(line);
    }
    // A signal that no code has claimed ends the command at once, even in the middle
    // of a call: nothing it was doing needs finishing.
    let work = dispatch(
        &context,
        &command,
        launch.as_ref(),
        job.is_some(),
        &mut interrupts,
    );
    tokio::pin!(work);
    let result = loop {
        tokio::select! {
            result = &mut work => break result,
            Some(()) = unclaimed.recv() => {
                // Claimed since it arrived: the command has it on its own channel.
                if Handled::is_claimed() {
                    continue;
                }
                context.renderer.finish();
                break Err(ExitError::new(launcher::INTERRUPTED, anyhow::anyhow!("interrupted")));
            }
        }
    };
    context.renderer.finish();
    match result {
        Ok(code) => {
            print_document(context.renderer.take_document());
            code
        }
        Err(e) => fail(output, &e, Some(&context), job),
    }
}

/// Prints the command's one JSON document (`--output json`), the only place that does.
fn print_document(document: Option<String>) {
    if let Some(document) = document {
        crate::stdio::out_line(format_args!("{document}"));
    }
}

/// Whether `command` may launch a task, and so needs the network settings that
/// `--from-service` copies; inspecting a task never does.
fn launches_tasks(command: &Command) -> bool {
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
async fn dispatch(
    context: &Context,
    command: &Command,
    launch: Option<&Launch>,
    in_github_actions: bool,
    interrupts: &mut mpsc::UnboundedReceiver<()>,
) -> Result<u8, ExitError> {
    if let Some(launch) = launch {
        return run::exec(context, launch, in_github_actions, interrupts).await;
    }
    match command {
        Command::Logs(args) => logs::exec(context, args, interrupts).await,
        Command::Status(args) => status::exec(context, args).await,
        Command::Stop(args) => stop::exec(context, args).await,
        Command::List(args) => list::exec(context, args).await,
        Command::Shell(args) => shell::exec(context, args, interrupts).await,
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

/// `help [COMMAND...]`: the launcher's help, a command's, or, for the companion
/// commands, the companion's own help (its options are what they take).
fn help(path: &[String]) -> u8 {
    let companion = match path.first().map(String::as_str) {
        Some("migrate") => Some(CompanionCommand::Migrate),
        Some("migrate-info") => Some(CompanionCommand::MigrateInfo),
        Some("reencrypt") => Some(CompanionCommand::Reencrypt),
        _ => None,
    };
    if let Some(command) = companion {
        let args = CompanionArgs {
            args: vec!["--help".to_string()],
        };
        if let Err(e) = Launch::companion(command, &args) {
            let _ = e.print();
        }
        if command == CompanionCommand::Reencrypt {
            crate::stdio::out_line(format_args!("\n{}", run::REENCRYPT_LAUNCHER_HELP));
        }
        return 0;
    }
    let mut command = Cli::command();
    // Building sets each subcommand's full name for its usage line.
    command.build();
    for name in path {
        match command.find_subcommand(name) {
            Some(sub) => command = sub.clone(),
            None => {
                crate::stdio::err_line(format_args!(
                    "run-admin-task: no command {name:?}; `run-admin-task --help` lists them"
                ));
                return launcher::USAGE;
            }
        }
    }
    let _ = command.print_help();
    0
}

/// Reports a failure: the message on stderr; with `--output json`, a document on
/// stdout with `error` and `exit_code` so stdout always holds one; for a launch `job`
/// in GitHub Actions, its annotation, summary and outputs.
fn fail(
    output: OutputFormat,
    error: &ExitError,
    context: Option<&Context>,
    job: Option<&str>,
) -> u8 {
    crate::stdio::err_line(format_args!("run-admin-task: {error}"));
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
    // The failure is the outcome: its report replaces whatever the command kept.
    if let Some(context) = context {
        context.renderer.take_document();
    }
    print_document((output == OutputFormat::Json).then(|| report.to_json()));
    if let Some(job) = job {
        match context {
            Some(context) => context
                .renderer
                .conclude_in_ci(github_actions::conclude(job, &report)),
            None => {
                Renderer::new(output, true).conclude_in_ci(github_actions::conclude(job, &report))
            }
        }
    }
    error.code
}

/// One message per Ctrl-C or SIGTERM for the command, and one more on a second channel
/// for each that arrives while no code has [claimed](Handled) them.
fn interrupts() -> Result<(mpsc::UnboundedReceiver<()>, mpsc::UnboundedReceiver<()>), ExitError> {
    let mut signals = Signals::install().map_err(|e| {
        ExitError::new(
            launcher::NEVER_RAN,
            anyhow::anyhow!("cannot listen for Ctrl-C and SIGTERM: {e}"),
        )
    })?;
    let (command_tx, command_rx) = mpsc::unbounded_channel();
    let (unclaimed_tx, unclaimed_rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            signals.recv().await;
            let _ = command_tx.send(());
            if !Handled::is_claimed() && unclaimed_tx.send(()).is_err() {
                return;
            }
        }
    });
    Ok((command_rx, unclaimed_rx))
}
