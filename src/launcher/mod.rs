//! The launcher, `run-admin-task`: starts the admin container on ECS Fargate with a
//! command override, follows its status and its CloudWatch log stream live, and exits
//! with the container's exit code (see [`crate::exit::launcher`] for its own codes).
//!
//! The binary only parses arguments into an [`Invocation`]; everything else is here,
//! one module per job, one module per command under [`commands`].

pub mod clients;
pub mod commands;
pub mod config;
pub mod confirm;
pub mod doctor;
pub mod exec;
pub mod follow;
pub mod identity;
pub mod keys;
pub mod launch;
pub mod logs;
pub mod outcome;
pub mod render;
pub mod report;
pub mod task;
pub mod task_definition;
pub mod task_spec;
pub mod template;
pub mod watch;

use tokio::sync::mpsc;

use self::config::{GlobalOptions, LaunchConfig, OutputFormat};
use self::identity::Operator;
use self::render::Renderer;
use self::report::TaskReport;
use crate::exit::ExitError;

/// The companion's commands the launcher offers directly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompanionCommand {
    /// Apply pending migrations (writes).
    Migrate,
    /// Report migration status (reads).
    MigrateInfo,
    /// Re-encrypt stored secrets (writes, unless `--dry-run`).
    Reencrypt,
}

impl CompanionCommand {
    /// The companion's name for it.
    pub fn name(self) -> &'static str {
        match self {
            CompanionCommand::Migrate => "migrate",
            CompanionCommand::MigrateInfo => "migrate-info",
            CompanionCommand::Reencrypt => "reencrypt",
        }
    }
}

/// What the operator asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// A companion command; `args` go to the container verbatim.
    Companion {
        /// Which one.
        command: CompanionCommand,
        /// Its arguments, unsplit and unglobbed.
        args: Vec<String>,
    },
    /// Any container command (`run -- CMD ARGS...`).
    Run {
        /// The command and its arguments.
        argv: Vec<String>,
    },
    /// Print a task's log stream (`--follow`: until it stops and is drained).
    Logs {
        /// Task id or ARN.
        task: String,
        /// Keep following.
        follow: bool,
    },
    /// Show a task's state and, once stopped, why.
    Status {
        /// Task id or ARN.
        task: String,
    },
    /// Stop a task.
    Stop {
        /// Task id or ARN.
        task: String,
        /// The StopTask reason (default names who stopped it).
        reason: Option<String>,
    },
    /// Recent tasks this tool started.
    List {
        /// At most this many, newest first.
        limit: usize,
    },
    /// A shell in the admin container over ECS Exec.
    Shell(commands::shell::ShellArgs),
    /// The encryption key secrets: generate, status, rotate, retire.
    Keys(commands::keys::KeysCommand),
    /// Check that everything a run needs is in place.
    Doctor(commands::doctor::DoctorOptions),
    /// Render or register the admin task definition from its template.
    TaskDef(commands::task_def::TaskDefRequest),
}

impl Command {
    /// Whether it writes to the database: guarded against concurrent runs and, in a
    /// `confirm = true` environment, confirmed first.
    pub fn is_mutating(&self) -> bool {
        match self {
            Command::Companion {
                command: CompanionCommand::Migrate,
                ..
            } => true,
            Command::Companion {
                command: CompanionCommand::Reencrypt,
                args,
            } => !args.iter().any(|a| a == "--dry-run"),
            _ => false,
        }
    }

    /// Whether a `confirm = true` environment asks first: mutating commands, and `run`,
    /// which can do anything.
    pub fn needs_confirmation(&self) -> bool {
        self.is_mutating() || matches!(self, Command::Run { .. })
    }

    /// The container command it launches, if it launches one.
    pub fn container_argv(&self) -> Option<Vec<String>> {
        match self {
            Command::Companion { command, args } => {
                // The admin image's ENTRYPOINT is the companion: the override is its arguments.
                let mut argv = vec![command.name().to_string()];
                argv.extend(args.iter().cloned());
                Some(argv)
            }
            Command::Run { argv } => Some(argv.clone()),
            _ => None,
        }
    }
}

/// A parsed command line.
#[derive(Debug, Clone)]
pub struct Invocation {
    /// The global options.
    pub options: GlobalOptions,
    /// The command.
    pub command: Command,
}

/// What every command works with.
pub struct Context {
    /// The options as given.
    pub options: GlobalOptions,
    /// The resolved configuration.
    pub config: LaunchConfig,
    /// Who is running the launcher.
    pub operator: Operator,
    /// Where output goes.
    pub renderer: Renderer,
}

/// Runs the launcher and returns its exit status.
pub fn main(invocation: Invocation) -> u8 {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("run-admin-task: cannot start the async runtime: {e}");
            return crate::exit::launcher::NEVER_RAN;
        }
    };
    runtime.block_on(execute(invocation))
}

/// Runs one invocation on the current runtime, with Ctrl-C and SIGTERM handled.
pub async fn execute(invocation: Invocation) -> u8 {
    let Invocation { options, command } = invocation;
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
    let mut interrupts = interrupts();
    let result = commands::dispatch(&context, &command, &mut interrupts).await;
    context.renderer.finish();
    match result {
        Ok(code) => code,
        Err(e) => fail(output, &e, Some(&context)),
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

/// One message per Ctrl-C (or SIGTERM), for as long as the receiver lives.
fn interrupts() -> mpsc::UnboundedReceiver<()> {
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        #[cfg(unix)]
        let mut term =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
        loop {
            #[cfg(unix)]
            let terminated = async {
                match term.as_mut() {
                    Some(term) => term.recv().await,
                    None => std::future::pending().await,
                }
            };
            #[cfg(not(unix))]
            let terminated = std::future::pending::<Option<()>>();
            tokio::select! {
                signal = tokio::signal::ctrl_c() => {
                    if signal.is_err() {
                        return;
                    }
                }
                _ = terminated => {}
            }
            if tx.send(()).is_err() {
                return;
            }
        }
    });
    rx
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mutating_commands_are_migrate_and_real_reencrypt() {
        let companion = |command, args: &[&str]| Command::Companion {
            command,
            args: args.iter().map(|a| a.to_string()).collect(),
        };
        assert!(companion(CompanionCommand::Migrate, &[]).is_mutating());
        assert!(companion(CompanionCommand::Reencrypt, &[]).is_mutating());
        assert!(!companion(CompanionCommand::Reencrypt, &["--dry-run"]).is_mutating());
        assert!(!companion(CompanionCommand::MigrateInfo, &["--check"]).is_mutating());
        assert!(
            !Command::Run {
                argv: vec!["sh".into()]
            }
            .is_mutating()
        );
    }

    #[test]
    fn companion_arguments_pass_through_verbatim() {
        let command = Command::Companion {
            command: CompanionCommand::Migrate,
            args: vec!["--dry-run".into(), "--target-version".into(), "3 *".into()],
        };
        assert_eq!(
            command.container_argv().unwrap(),
            vec!["migrate", "--dry-run", "--target-version", "3 *"]
        );
    }
}
