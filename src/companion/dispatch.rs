//! The companion's dispatch: each command of the parsed command line
//! ([`crate::contract::command_line`]) to its subject module.

use std::path::PathBuf;

use clap::CommandFactory;

use super::console::{self, Ended};
use super::database::DatabaseUrl;
use super::failure::CompanionError;
use super::lint;
use super::lint::sizes::Thresholds;
use super::migrations::{Catalog, MigrateError, SessionLimits, info, migrate};
use super::{cancel, probes, reencrypt, schema, standby};
use crate::contract::command_line::{Cli, Command, LargeTableArgs};
use crate::contract::exit::companion;
use crate::contract::result::Summary;

fn thresholds(large: &LargeTableArgs) -> Thresholds {
    Thresholds {
        rows: large.large_table_rows,
        bytes: large.large_table_mb.saturating_mul(1024 * 1024),
    }
}

fn catalog(source: Option<&PathBuf>) -> Result<Catalog, CompanionError> {
    match source {
        Some(dir) => Ok(Catalog::from_dir(dir)?),
        None => Ok(Catalog::embedded()),
    }
}

/// Runs the parsed command line and returns the exit status.
pub async fn execute(cli: Cli) -> u8 {
    let connect_timeout = cli.connect_timeout;
    let deadline = cli.deadline;
    super::database::set_client_check_interval(cli.client_check_interval);
    match cli.command {
        Command::Completions { shell } => {
            crate::completions::print(shell, Cli::command());
            0
        }
        Command::Migrate(args) => {
            let result = async {
                let catalog = catalog(args.source.as_ref())?;
                let url = DatabaseUrl::from_env()?;
                let options = migrate::MigrateOptions {
                    dry_run: args.dry_run,
                    target_version: args.target_version,
                    ignore_missing: args.ignore_missing,
                    lock_wait: args.lock_timeout,
                    limits: SessionLimits {
                        lock_timeout: Some(args.ddl_lock_timeout),
                        statement_timeout: Some(args.statement_timeout),
                    },
                    lock_retries: args.lock_retries,
                    thresholds: thresholds(&args.large),
                    allow_unsafe: args.allow_unsafe,
                    connect_timeout,
                };
                let work = async { Ok(migrate::run(&catalog, &url, &options).await?) };
                cancel::run_stoppable::<CompanionError>(deadline, work).await
            }
            .await;
            conclude("migrate", result)
        }
        Command::MigrateInfo(args) => {
            let result = async {
                let catalog = catalog(args.source.as_ref())?;
                let url = DatabaseUrl::from_env()?;
                let options = info::InfoOptions {
                    check: args.check,
                    ignore_missing: args.ignore_missing,
                    thresholds: thresholds(&args.large),
                    connect_timeout,
                };
                let work = async { Ok(info::run(&catalog, &url, &options).await?) };
                cancel::run_stoppable::<CompanionError>(deadline, work).await
            }
            .await;
            conclude("migrate-info", result)
        }
        Command::Schema(args) => {
            let result = async {
                let catalog = catalog(args.source.as_ref())?;
                if args.diff {
                    let url = DatabaseUrl::from_env()?;
                    let work =
                        async { Ok(info::schema_diff(&catalog, &url, connect_timeout).await?) };
                    cancel::run_stoppable::<CompanionError>(deadline, work).await
                } else {
                    schema::print_expected(catalog.schema(), args.version)
                        .map_err(|e| MigrateError::Source(anyhow::anyhow!(e)))?;
                    Ok((companion::SUCCESS, Summary::Bare).into())
                }
            }
            .await;
            conclude("schema", result)
        }
        Command::Lint(args) => {
            let result = catalog(args.source.as_ref())
                .and_then(|catalog| Ok(lint::offline(&catalog.sources(args.since))?));
            conclude("lint", result)
        }
        Command::Reencrypt(args) => {
            let options = reencrypt::ReencryptOptions {
                dry_run: args.dry_run,
                batch_size: args
                    .batch_size
                    .unwrap_or_else(|| reencrypt::default_batch_size(args.max_rate)),
                table: args.table,
                connect_timeout,
                lock_timeout: args.lock_timeout,
                shard: args.shard,
                max_rate: args.max_rate,
            };
            let result = cancel::run_stoppable(deadline, async {
                reencrypt::run(options)
                    .await
                    .map(|report| (report.exit_code(), report.summary()))
            })
            .await;
            conclude("reencrypt", result)
        }
        Command::Shell(args) => {
            let options = standby::ShellOptions {
                max_idle: args.max_idle,
                deadline,
            };
            conclude("shell", standby::run(&options).await)
        }
        Command::Status => {
            let options = probes::StatusOptions { connect_timeout };
            conclude(
                "status",
                cancel::run_stoppable(deadline, probes::run(&options)).await,
            )
        }
    }
}

/// Ends a command: logs its error, if any, writes the `result` event and returns the
/// exit code the process must end with.
pub(crate) fn conclude(command: &str, result: Result<impl Into<Ended>, CompanionError>) -> u8 {
    match result.map(Into::into) {
        Ok(Ended {
            code,
            summary,
            stopped,
        }) => {
            let mut summary = summary.to_value();
            if let Some(stopped) = stopped {
                summary["stopped"] =
                    serde_json::to_value(stopped).expect("stop reports always serialize");
            }
            console::finish(command, code, summary);
            code
        }
        Err(error) => {
            tracing::error!("{command} failed: {error}");
            let code = error.exit_code();
            let mut summary = error.detail();
            summary["error"] = serde_json::Value::String(error.to_string());
            console::finish(command, code, summary);
            code
        }
    }
}
