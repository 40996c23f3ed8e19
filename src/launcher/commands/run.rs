//! `migrate`, `migrate-info`, `reencrypt` and `run -- CMD...`: launch the container with
//! the command override, follow it to its end, and exit with its exit code.

use clap::{Args, Parser};
use tokio::sync::mpsc;

use crate::contract::command_line::Cli as CompanionCli;
use crate::launcher::aws_api::api_budget;
use crate::launcher::config::Origin;
use crate::launcher::context::Context;
use crate::launcher::error::{LauncherError, SettingsError};
use crate::launcher::flags::GlobalOptions;
use crate::launcher::job::launch::{Job, RunTaskPlan, companion_deadline};
use crate::launcher::job::report::{ShardedReport, TaskReport};
use crate::launcher::job::shards::{Shards, launch_and_follow_shards};
use crate::launcher::job::single::launch_and_follow;
use crate::launcher::output::github;
use crate::launcher::service::describe_origins;

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

/// What the launcher adds to the companion's help of `reencrypt`: its own flags.
pub(crate) const REENCRYPT_LAUNCHER_HELP: &str = "\
Launcher options of `run-admin-task reencrypt` (the rest go to each task):
      --shards <N>    Split the work across N tasks (1 to 32), each with --shard K/N, followed
                      as one job: one bar, one exit code (125, then 5, then the first non-zero)
      --only <K,L>    With --shards: start only these shards (to rerun the ones that failed)";

/// The first of `args` that is one of the launcher's own options (`--yes`, `--output`,
/// `--env`, ...): placed after a companion command it would silently go to the
/// companion, and a CI script would get no JSON report or no confirmation skip.
fn launcher_flag_in(args: &[String]) -> Option<String> {
    let cli = <GlobalOptions as clap::Args>::augment_args(clap::Command::new("run-admin-task"));
    let ours = |arg: &str| {
        cli.get_arguments().any(|a| {
            if a.get_id() == "help" || a.get_id() == "version" {
                return false;
            }
            match arg.strip_prefix("--") {
                Some(long) => a.get_long() == Some(long.split('=').next().unwrap_or(long)),
                None => arg.len() == 2 && a.get_short() == arg.chars().nth(1),
            }
        })
    };
    args.iter()
        .take_while(|arg| *arg != "--")
        .find(|arg| arg.starts_with('-') && ours(arg))
        .map(|arg| arg.split('=').next().unwrap_or(arg).to_string())
}

/// Says when a job that writes leaves FARGATE_SPOT out of the capacity it would have
/// inherited, and refuses (exit 2, nothing launched) one the operator asked to run on
/// Spot with `--capacity-provider` without `--allow-spot`.
fn spot_for(context: &Context, job: &Job) -> Result<(), LauncherError> {
    let config = &context.config;
    let capacity = config.capacity.for_job(job.mutating, config.allow_spot);
    if capacity == config.capacity {
        return Ok(());
    }
    if config.origins.capacity == Origin::Flag("--capacity-provider") {
        return Err(SettingsError::invalid(anyhow::anyhow!(
            "--capacity-provider {} for a job that writes: a Spot interruption would stop it midway; add --allow-spot if that is what you mean",
            config.capacity.describe()
        )));
    }
    let prefix = if context.options.print_request {
        "# "
    } else {
        ""
    };
    context.renderer.warn(&format!(
        "{prefix}capacity for this job: {} ({} without FARGATE_SPOT: the job writes, and a Spot interruption would stop it midway; --allow-spot keeps it)",
        capacity.describe(),
        config.origins.capacity
    ));
    Ok(())
}

/// What to launch: the container command, and what the guards make of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Launch {
    job: Job,
    needs_confirmation: bool,
    /// `reencrypt --shards N [--only K,L]`: the job split across tasks.
    shards: Option<Shards>,
}

/// The companion's name, as a command line may start with it.
const COMPANION: &str = "everruns-admin";

impl Launch {
    /// The container command as one line, as a person would type it.
    pub fn command_line(&self) -> String {
        self.job.argv.join(" ")
    }

    /// A companion command, its arguments checked here with the companion's own
    /// definitions before anything is launched: `--help` and a usage error come back as
    /// clap's error, to print locally (exit 0 and 2). The admin image's ENTRYPOINT is the
    /// companion, so the override is its name and arguments. Work that writes to the
    /// database is guarded against concurrent runs and, in a `confirm = true`
    /// environment, confirmed first.
    pub fn companion(command: CompanionCommand, args: &CompanionArgs) -> Result<Self, clap::Error> {
        let (shards, rest) = match command {
            CompanionCommand::Reencrypt => Shards::take_from(&args.args).map_err(|e| {
                clap::Error::raw(clap::error::ErrorKind::ValueValidation, format!("{e}\n"))
            })?,
            _ => (None, args.args.clone()),
        };
        if let Some(flag) = launcher_flag_in(&rest) {
            return Err(clap::Error::raw(
                clap::error::ErrorKind::ArgumentConflict,
                format!(
                    "{flag} is an option of run-admin-task, and after `{name}` it would go to the companion: put it before the command (`run-admin-task {flag} ... {name}`), or pass it to the companion on purpose with `run-admin-task run -- {name} {flag} ...`\n",
                    name = command.name()
                ),
            ));
        }
        let mut argv = vec![command.name().to_string()];
        argv.extend(rest);
        let parsed = CompanionCli::try_parse_from(
            std::iter::once(COMPANION).chain(argv.iter().map(String::as_str)),
        )?;
        let mutating = parsed.writes();
        Ok(Self {
            job: Job { argv, mutating },
            needs_confirmation: mutating,
            shards,
        })
    }

    /// Any command, verbatim; confirmed in a `confirm = true` environment, since it can
    /// do anything. A companion command line (with or without the companion's name in
    /// front) is judged like the companion command itself: `run -- migrate` writes.
    pub fn any(args: &RunArgs) -> Self {
        let names_companion = args.argv.first().is_some_and(|first| {
            std::path::Path::new(first).file_name() == Some(std::ffi::OsStr::new(COMPANION))
        });
        let companion_args = &args.argv[usize::from(names_companion)..];
        let mutating = match CompanionCli::try_parse_from(
            std::iter::once(COMPANION).chain(companion_args.iter().map(String::as_str)),
        ) {
            Ok(parsed) => parsed.writes(),
            // A newer image's flag this launcher does not know: a migrate or reencrypt
            // without a dry-run flag is still judged to write.
            Err(_) => {
                matches!(
                    companion_args.first().map(String::as_str),
                    Some("migrate" | "reencrypt")
                ) && !companion_args.iter().any(|a| a == "--dry-run" || a == "-n")
            }
        };
        Self {
            job: Job {
                argv: args.argv.clone(),
                mutating,
            },
            needs_confirmation: true,
            shards: None,
        }
    }
}

/// Launches and follows it; with `--print-request`, prints the RunTask request instead.
/// `in_github_actions`: leave the annotations, summary and outputs of the job (a
/// failure that is an error is left by the caller, which reports it).
pub async fn exec(
    context: &Context,
    launch: &Launch,
    in_github_actions: bool,
    interrupts: &mut mpsc::UnboundedReceiver<()>,
) -> Result<u8, LauncherError> {
    let config = &context.config;
    let job = &launch.job;
    spot_for(context, job)?;
    if context.options.print_request {
        // On stderr: stdout stays the request alone, ready for `aws ecs run-task
        // --cli-input-json` (a sharded job: an array of them, one per shard).
        for line in describe_origins(config) {
            context.renderer.warn(&format!("# {line}"));
        }
        let plan = |job: &Job| {
            RunTaskPlan::new(config, &config.task_definition, job, &context.operator).map(
                |mut plan| {
                    plan.deadline = companion_deadline(context.options.timeout);
                    plan.to_json()
                },
            )
        };
        let request = match &launch.shards {
            Some(shards) => serde_json::Value::Array(
                shards
                    .selected()
                    .into_iter()
                    .map(|k| plan(&shards.job(job, k)))
                    .collect::<Result<_, _>>()?,
            ),
            None => plan(job)?,
        };
        crate::stdio::out_line(format_args!(
            "{}",
            serde_json::to_string_pretty(&request).expect("requests always serialize")
        ));
        return Ok(0);
    }
    if let Some(shards) = &launch.shards {
        let (code, report) =
            launch_and_follow_shards(context, job, shards, launch.needs_confirmation, interrupts)
                .await?;
        let report = ShardedReport {
            api_calls: api_budget::calls(),
            ..report
        };
        context.renderer.document(&report);
        if in_github_actions {
            context
                .renderer
                .conclude_in_ci(github::conclude_sharded(&launch.command_line(), &report));
        }
        return Ok(code);
    }
    let (code, report) =
        launch_and_follow(context, job, launch.needs_confirmation, interrupts).await?;
    // No report: nothing was launched (interrupted at the confirmation or before
    // RunTask), which the job has said.
    let report = report.unwrap_or_else(|| TaskReport {
        cluster: context.config.cluster.clone(),
        container: context.config.container.clone(),
        command: launch.job.argv.clone(),
        exit_code: code,
        interrupted: code == crate::contract::exit::launcher::INTERRUPTED,
        error: Some("nothing was launched".to_string()),
        ..TaskReport::default()
    });
    let report = TaskReport {
        api_calls: api_budget::calls(),
        ..report
    };
    context.renderer.document(&report);
    if in_github_actions {
        context
            .renderer
            .conclude_in_ci(github::conclude(&launch.command_line(), &report));
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
        Launch::companion(command, &args).unwrap()
    }

    #[test]
    fn mutating_commands_are_migrate_and_real_reencrypt() {
        assert!(companion(CompanionCommand::Migrate, &[]).job.mutating);
        assert!(
            !companion(CompanionCommand::Migrate, &["--dry-run"])
                .job
                .mutating
        );
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
        let run = |argv: &[&str]| {
            Launch::any(&RunArgs {
                argv: argv.iter().map(|a| a.to_string()).collect(),
            })
        };
        assert!(!run(&["sh"]).job.mutating);
        assert!(run(&["sh"]).needs_confirmation);
        assert!(run(&["migrate", "--target-version", "3"]).job.mutating);
        assert!(
            run(&["everruns-admin", "reencrypt", "--table", "t"])
                .job
                .mutating
        );
        assert!(!run(&["reencrypt", "-n"]).job.mutating);
        assert!(!run(&["migrate-info", "--check"]).job.mutating);
        assert!(!run(&["sh", "-c", "everruns-admin migrate"]).job.mutating);
        assert!(
            run(&["/usr/local/bin/everruns-admin", "migrate"])
                .job
                .mutating
        );
        assert!(run(&["migrate", "--flag-of-a-newer-image"]).job.mutating);
        assert!(
            !run(&["reencrypt", "--flag-of-a-newer-image", "-n"])
                .job
                .mutating
        );
    }

    #[test]
    fn companion_usage_errors_and_help_are_local() {
        let args = |list: &[&str]| CompanionArgs {
            args: list.iter().map(|a| a.to_string()).collect(),
        };
        let typo =
            Launch::companion(CompanionCommand::MigrateInfo, &args(&["--chek"])).unwrap_err();
        assert_eq!(typo.exit_code(), 2);
        assert!(typo.to_string().contains("--chek"), "{typo}");
        let help =
            Launch::companion(CompanionCommand::MigrateInfo, &args(&["--help"])).unwrap_err();
        assert_eq!(help.exit_code(), 0);
        assert!(help.to_string().contains("--check"), "{help}");
    }

    #[test]
    fn a_launcher_option_after_the_command_is_refused_saying_where_it_goes() {
        let args = |list: &[&str]| CompanionArgs {
            args: list.iter().map(|a| a.to_string()).collect(),
        };
        for (command, list, flag) in [
            (CompanionCommand::Migrate, &["--yes"][..], "--yes"),
            (
                CompanionCommand::MigrateInfo,
                &["--check", "--output", "json"][..],
                "--output",
            ),
            (CompanionCommand::Reencrypt, &["-y", "--dry-run"][..], "-y"),
            (
                CompanionCommand::Migrate,
                &["--env=production"][..],
                "--env",
            ),
        ] {
            let err = Launch::companion(command, &args(list)).unwrap_err();
            assert_eq!(err.exit_code(), 2);
            let text = err.to_string();
            assert!(
                text.contains(&format!("run-admin-task {flag} ... {}", command.name())),
                "{text}"
            );
        }
        // The companion's own flags, and anything after `--`, still pass.
        assert!(Launch::companion(CompanionCommand::MigrateInfo, &args(&["--check"])).is_ok());
    }

    #[test]
    fn companion_arguments_pass_through_verbatim() {
        let launch = companion(
            CompanionCommand::Reencrypt,
            &["--table", "name with spaces *", "-b", "7"],
        );
        assert_eq!(
            launch.job.argv,
            vec!["reencrypt", "--table", "name with spaces *", "-b", "7"]
        );
    }
}
