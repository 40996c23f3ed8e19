//! The launcher's entry: the async runtime, Ctrl-C and SIGTERM, the configuration, the
//! command run by [`dispatch`], and a failure reported once, as its exit code, the one
//! JSON document and, in GitHub Actions, its summary.

use clap::CommandFactory;
use tokio::sync::mpsc;

use super::run::{self, CompanionArgs, CompanionCommand, Launch};
use super::{Cli, Command, dispatch, launch_of, launches_tasks};
use crate::contract::exit::launcher;
use crate::launcher::config::LaunchConfig;
use crate::launcher::context::Context;
use crate::launcher::error::{LaunchError, LauncherError, SettingsError};
use crate::launcher::flags::{self, CiKind, OutputFormat};
use crate::launcher::identity::Operator;
use crate::launcher::job::report::TaskReport;
use crate::launcher::output::Renderer;
use crate::launcher::output::github;
use crate::launcher::service;
use crate::signals::{Handled, Signals};

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
async fn execute(cli: Cli) -> u8 {
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
                &SettingsError::invalid(anyhow::anyhow!("{e}")),
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
                let error = LauncherError::Interrupted(anyhow::anyhow!("interrupted; nothing was launched"));
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
                break Err(LauncherError::Interrupted(anyhow::anyhow!("interrupted")));
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
    error: &LauncherError,
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
        exit_code: error.exit_code(),
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
                .conclude_in_ci(github::conclude(job, &report)),
            None => Renderer::new(output, true).conclude_in_ci(github::conclude(job, &report)),
        }
    }
    error.exit_code()
}

/// One message per Ctrl-C or SIGTERM for the command, and one more on a second channel
/// for each that arrives while no code has [claimed](Handled) them.
fn interrupts() -> Result<(mpsc::UnboundedReceiver<()>, mpsc::UnboundedReceiver<()>), LauncherError>
{
    let mut signals = Signals::install().map_err(|e| {
        LaunchError::never_ran(anyhow::anyhow!("cannot listen for Ctrl-C and SIGTERM: {e}"))
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
