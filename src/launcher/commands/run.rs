//! `migrate`, `migrate-info`, `reencrypt` and `run -- CMD...`: launch the container with
//! the command override, follow it to its end, and exit with its exit code.

use clap::Args;
use tokio::sync::mpsc;

use crate::exit::ExitError;
use crate::launcher::context::{Context, print_json};
use crate::launcher::job::launch::{Job, RunTaskPlan};
use crate::launcher::job::launch_and_follow;

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

/// `migrate`, `migrate-info`, `reencrypt`: the arguments go to the companion verbatim.
#[derive(Debug, Clone, Args)]
pub struct CompanionArgs {
    /// Arguments for the companion command
    #[arg(num_args = 0.., trailing_var_arg = true, allow_hyphen_values = true, value_name = "ARGS")]
    pub args: Vec<String>,
}

/// `run -- CMD ARGS...`.
#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    /// The command and its arguments, verbatim
    #[arg(required = true, num_args = 1.., trailing_var_arg = true, allow_hyphen_values = true, value_name = "CMD")]
    pub argv: Vec<String>,
}

/// What to launch: the container command, and what the guards make of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Launch {
    job: Job,
    needs_confirmation: bool,
}

impl Launch {
    /// A companion command: the admin image's ENTRYPOINT is the companion, so the
    /// override is its name and arguments. `migrate` and a `reencrypt` without
    /// `--dry-run` write to the database: guarded against concurrent runs and, in a
    /// `confirm = true` environment, confirmed first.
    pub fn companion(command: CompanionCommand, args: &CompanionArgs) -> Self {
        let mutating = match command {
            CompanionCommand::Migrate => true,
            CompanionCommand::Reencrypt => !args.args.iter().any(|a| a == "--dry-run"),
            CompanionCommand::MigrateInfo => false,
        };
        let mut argv = vec![command.name().to_string()];
        argv.extend(args.args.iter().cloned());
        Self {
            job: Job { argv, mutating },
            needs_confirmation: mutating,
        }
    }

    /// Any command, verbatim; confirmed in a `confirm = true` environment, since it can
    /// do anything.
    pub fn any(args: &RunArgs) -> Self {
        Self {
            job: Job {
                argv: args.argv.clone(),
                mutating: false,
            },
            needs_confirmation: true,
        }
    }
}

/// Launches and follows it; with `--print-request`, prints the RunTask request instead.
pub async fn exec(
    context: &Context,
    launch: &Launch,
    interrupts: &mut mpsc::UnboundedReceiver<()>,
) -> Result<u8, ExitError> {
    let config = &context.config;
    let job = &launch.job;
    if context.options.print_request {
        let plan = RunTaskPlan::new(config, &config.task_definition, job, &context.operator)?;
        println!(
            "{}",
            serde_json::to_string_pretty(&plan.to_json()).expect("requests always serialize")
        );
        return Ok(0);
    }
    let (code, report) =
        launch_and_follow(context, job, launch.needs_confirmation, interrupts).await?;
    if let Some(report) = &report {
        print_json(context.options.output, report);
    }
    Ok(code)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn companion(command: CompanionCommand, args: &[&str]) -> Launch {
        let args = CompanionArgs {
            args: args.iter().map(|a| a.to_string()).collect(),
        };
        Launch::companion(command, &args)
    }

    #[test]
    fn mutating_commands_are_migrate_and_real_reencrypt() {
        assert!(companion(CompanionCommand::Migrate, &[]).job.mutating);
        assert!(companion(CompanionCommand::Reencrypt, &[]).job.mutating);
        assert!(
            !companion(CompanionCommand::Reencrypt, &["--dry-run"])
                .job
                .mutating
        );
        assert!(
            !companion(CompanionCommand::MigrateInfo, &["--check"])
                .job
                .mutating
        );
        let run = Launch::any(&RunArgs {
            argv: vec!["sh".into()],
        });
        assert!(!run.job.mutating);
        assert!(run.needs_confirmation);
    }

    #[test]
    fn companion_arguments_pass_through_verbatim() {
        let launch = companion(
            CompanionCommand::Migrate,
            &["--dry-run", "--target-version", "3 *"],
        );
        assert_eq!(
            launch.job.argv,
            vec!["migrate", "--dry-run", "--target-version", "3 *"]
        );
    }
}
