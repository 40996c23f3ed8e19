//! The companion's command line: what `everruns-admin` accepts, and the dispatch of
//! each command to its subject module. The launcher parses companion arguments with
//! these same definitions.

use std::path::PathBuf;
use std::time::Duration;

use chrono::{DateTime, Utc};
use clap::{Args, CommandFactory, Parser, Subcommand};

use super::database::DatabaseUrl;
use super::lint::{self, Thresholds};
use super::migrations::{Catalog, SessionLimits, info, migrate};
use super::{console, reencrypt, shell, status, stop};
use crate::contract::duration;
use crate::contract::exit::{ExitError, companion};

const ENVIRONMENT_AND_EXIT_CODES: &str = "\
Environment:
  DATABASE_URL                      postgres://USER:PASSWORD@HOST:5432/DB (password never printed)
  SECRETS_ENCRYPTION_KEY            primary key, key_id:base64(32 bytes) (reencrypt)
  SECRETS_ENCRYPTION_KEY_PREVIOUS   previous key(s), comma or newline separated (reencrypt)
  RUST_LOG                          more log lines, e.g. info,everruns_admin=debug,sqlx=warn (default
                                    info); the companion's own info lines are always written
  EVERRUNS_ADMIN_OUTPUT             json | text (default: text on a terminal, JSON lines otherwise)
  EVERRUNS_ADMIN_DEADLINE           RFC 3339 time at which the work is cancelled (as --deadline)
  EVERRUNS_ADMIN_LAUNCHER           set by run-admin-task: advice names its commands

Exit codes:
  0 success   1 runtime failure   2 usage or configuration error (nothing written)
  3 migrate-info --check: migrations pending   4 database disagrees with this image
  5 reencrypt finished but some values could not be decrypted
  6 migrate-info --check, migrate or lint: a pending migration is unsafe (dangerous lock or
    breaking change) and its file does not allow it
  7 migrate-info --check: the live schema differs (an INVALID index left by an interrupted
    CONCURRENTLY); migrate: a pending migration would meet such a leftover
    (precedence in --check: 4, 7, 6, 3)
  124 the deadline passed   143 / 130 stopped by SIGTERM / SIGINT
    (for both: the statement in flight was cancelled and rolled back, locks released)";

/// Admin jobs against everruns' PostgreSQL: migrations, secret re-encryption, a shell.
#[derive(Parser)]
#[command(name = "everruns-admin", version, after_help = ENVIRONMENT_AND_EXIT_CODES)]
pub struct Cli {
    /// How long to retry the first database connection (a fresh task's network can
    /// take seconds): seconds or 30s, 2m.
    #[arg(long, global = true, default_value = "30s", value_parser = duration::parse)]
    connect_timeout: Duration,
    /// Output: readable text, or JSON lines (one event per line, the last the result)
    /// [default: $EVERRUNS_ADMIN_OUTPUT, else text on a terminal, JSON lines otherwise]
    #[arg(long, global = true, value_enum, value_name = "FORMAT")]
    output: Option<console::Output>,
    /// Stop the work at this time (RFC 3339): the statement in flight is cancelled and
    /// rolled back, locks released, exit 124. The launcher sets it from its --timeout.
    #[arg(long, global = true, env = "EVERRUNS_ADMIN_DEADLINE", value_name = "TIME", value_parser = stop::parse_deadline)]
    deadline: Option<DateTime<Utc>>,
    /// How often the server checks, while a statement runs, that this process is still
    /// there, so a killed companion's statement and locks end within about this long
    /// (PostgreSQL 14+; 0 turns it off)
    #[arg(long, global = true, default_value = "5s", value_parser = duration::parse, value_name = "DURATION")]
    client_check_interval: Duration,
    #[command(subcommand)]
    command: Command,
}

impl Cli {
    /// The output format asked for with `--output`, if any.
    pub fn output(&self) -> Option<console::Output> {
        self.output
    }

    /// Whether this command line writes to the database: `migrate` and `reencrypt`
    /// without a dry run. The launcher judges the work by it (its concurrency guard, its
    /// tags, `list`), whichever way the command was asked for.
    pub fn writes(&self) -> bool {
        match &self.command {
            Command::Migrate(args) => !args.dry_run,
            Command::Reencrypt(args) => !args.dry_run,
            _ => false,
        }
    }
}

#[derive(Subcommand)]
enum Command {
    /// Apply pending migrations under sqlx's migration lock.
    ///
    /// Example: everruns-admin migrate --dry-run
    Migrate(MigrateArgs),
    /// List every migration and its state; read-only.
    ///
    /// Example (CI gate): everruns-admin migrate-info --check
    MigrateInfo(InfoArgs),
    /// Lint migration files for dangerous locks and breaking changes, without a
    /// database (every table counts as large unless the migration creates it).
    ///
    /// Example (in a pull request): everruns-admin lint --source migrations
    Lint(LintArgs),
    /// Re-encrypt stored secrets under the primary key after a key rotation.
    ///
    /// Example: everruns-admin reencrypt --dry-run --table llm_providers
    Reencrypt(ReencryptArgs),
    /// An interactive shell on a terminal; otherwise stay up for ECS Exec.
    ///
    /// Example: everruns-admin shell --max-idle 30m
    Shell(ShellArgs),
    /// Check the database (reachable, server version, latency), the schema against this
    /// image, and the encryption keys (ids only); read-only. Exit 0 when the database is
    /// reachable and the keys are valid, 1 otherwise.
    ///
    /// Example: everruns-admin status
    Status,
    /// Print a shell completion script.
    ///
    /// Example: everruns-admin completions bash > /etc/bash_completion.d/everruns-admin
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
}

#[derive(Args)]
struct MigrateArgs {
    /// Show what would be applied; write nothing.
    #[arg(long)]
    dry_run: bool,
    /// Apply pending migrations up to and including this version.
    #[arg(long, value_name = "VERSION")]
    target_version: Option<i64>,
    /// Proceed although the database has versions this image does not know.
    #[arg(long)]
    ignore_missing: bool,
    /// How long to wait for the migration lock held by another migrator.
    #[arg(long, default_value = "60s", value_parser = duration::parse)]
    lock_timeout: Duration,
    /// PostgreSQL lock_timeout for the migration's statements, so DDL queued behind a
    /// long transaction gives up instead of blocking every query behind it; set as a
    /// startup option, so a RESET in a migration cannot clear it.
    #[arg(long, default_value = "5s", value_parser = duration::parse, value_name = "DURATION")]
    ddl_lock_timeout: Duration,
    /// How often a migration whose lock wait timed out is tried again (with pauses of
    /// 1s, 2s, 4s, ...); a no-transaction migration is never retried.
    #[arg(long, default_value_t = 3, value_name = "N")]
    lock_retries: u32,
    /// PostgreSQL statement_timeout for the migration's statements (a startup option
    /// too), so a runaway statement ends.
    #[arg(long, default_value = "10m", value_parser = duration::parse, value_name = "DURATION")]
    statement_timeout: Duration,
    /// Apply even when the linter finds blocking problems in the pending migrations.
    #[arg(long)]
    allow_unsafe: bool,
    #[command(flatten)]
    large: LargeTableArgs,
    /// Read migrations from this folder instead of those built into the binary.
    #[arg(long, value_name = "DIR")]
    source: Option<PathBuf>,
}

/// When a table counts as large: a dangerous statement on it blocks.
#[derive(Args)]
struct LargeTableArgs {
    /// A table with more estimated rows than this is large.
    #[arg(long, default_value_t = 10_000, value_name = "ROWS")]
    large_table_rows: i64,
    /// A table of more megabytes than this (indexes and TOAST included) is large.
    #[arg(long, default_value_t = 10, value_name = "MB")]
    large_table_mb: i64,
}

impl LargeTableArgs {
    fn thresholds(&self) -> Thresholds {
        Thresholds {
            rows: self.large_table_rows,
            bytes: self.large_table_mb.saturating_mul(1024 * 1024),
        }
    }
}

#[derive(Args)]
struct LintArgs {
    /// Lint the migrations in this folder instead of those built into the binary.
    #[arg(long, value_name = "DIR")]
    source: Option<PathBuf>,
    /// Only the migrations after this version.
    #[arg(long, value_name = "VERSION")]
    since: Option<i64>,
}

#[derive(Args)]
struct InfoArgs {
    /// Exit 3 when migrations are pending, 6 when a pending one is unsafe, 4 on
    /// disagreement, 0 when at this image.
    #[arg(long)]
    check: bool,
    #[command(flatten)]
    large: LargeTableArgs,
    /// Accept versions applied in the database but unknown to this image.
    #[arg(long)]
    ignore_missing: bool,
    /// Read migrations from this folder instead of those built into the binary.
    #[arg(long, value_name = "DIR")]
    source: Option<PathBuf>,
}

#[derive(Args)]
struct ReencryptArgs {
    /// Decrypt and check everything, write nothing.
    #[arg(short = 'n', long)]
    dry_run: bool,
    /// Rows per batch (one short transaction each) [default: 1000; with --max-rate, a
    /// tenth of a second's worth]
    #[arg(short = 'b', long, value_parser = clap::value_parser!(u32).range(1..=i64::from(reencrypt::MAX_BATCH_SIZE)))]
    batch_size: Option<u32>,
    /// Only this declared table.
    #[arg(short = 't', long, value_name = "NAME")]
    table: Option<String>,
    /// How long to wait for another reencrypt's lock.
    #[arg(long, default_value = "10s", value_parser = duration::parse)]
    lock_timeout: Duration,
    /// Only the K-th of N equal ranges of every table's keys (1 ≤ K ≤ N), so N tasks
    /// can share the work; shards run together, the same shard twice does not.
    #[arg(long, value_name = "K/N")]
    shard: Option<reencrypt::Shard>,
    /// At most this many values per second, at a steady pace (per task: a job of N
    /// shards handles up to N times this).
    #[arg(long, value_name = "ROWS_PER_SECOND", value_parser = clap::value_parser!(u32).range(1..))]
    max_rate: Option<u32>,
}

#[derive(Args)]
struct ShellArgs {
    /// Without a terminal: how long to stay up waiting for an operator.
    #[arg(long, default_value = "1h", value_parser = duration::parse)]
    max_idle: Duration,
}

fn catalog(source: Option<&PathBuf>) -> Result<Catalog, ExitError> {
    match source {
        Some(dir) => Catalog::from_dir(dir),
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
                    thresholds: args.large.thresholds(),
                    allow_unsafe: args.allow_unsafe,
                    connect_timeout,
                };
                stop::run_stoppable(deadline, migrate::run(&catalog, &url, &options)).await
            }
            .await;
            console::conclude("migrate", result)
        }
        Command::MigrateInfo(args) => {
            let result = async {
                let catalog = catalog(args.source.as_ref())?;
                let url = DatabaseUrl::from_env()?;
                let options = info::InfoOptions {
                    check: args.check,
                    ignore_missing: args.ignore_missing,
                    thresholds: args.large.thresholds(),
                    connect_timeout,
                };
                stop::run_stoppable(deadline, info::run(&catalog, &url, &options)).await
            }
            .await;
            console::conclude("migrate-info", result)
        }
        Command::Lint(args) => {
            let result = catalog(args.source.as_ref()).and_then(|catalog| {
                let sources = catalog.sources(args.since);
                let findings = lint::lint(&sources, &lint::Judged::Offline)?;
                lint::log(&findings);
                let counts = lint::LintCounts::of(sources.len(), &findings);
                tracing::info!(
                    "linted {} migration(s): {} blocking, {} warning(s), {} allowed",
                    counts.migrations,
                    counts.blocking,
                    counts.warnings,
                    counts.suppressed
                );
                let code = if counts.blocking > 0 {
                    companion::UNSAFE
                } else {
                    companion::SUCCESS
                };
                Ok((
                    code,
                    serde_json::json!({ "findings": findings, "counts": counts }),
                ))
            });
            console::conclude("lint", result)
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
            let result = stop::run_stoppable(deadline, async {
                reencrypt::run(options)
                    .await
                    .map(|report| (report.exit_code(), report.summary()))
            })
            .await;
            console::conclude("reencrypt", result)
        }
        Command::Shell(args) => {
            let options = shell::ShellOptions {
                max_idle: args.max_idle,
                deadline,
            };
            console::conclude("shell", shell::run(&options).await)
        }
        Command::Status => {
            let options = status::StatusOptions { connect_timeout };
            console::conclude(
                "status",
                stop::run_stoppable(deadline, status::run(&options)).await,
            )
        }
    }
}
