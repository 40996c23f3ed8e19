//! The companion's command line: what `everruns-admin` accepts. The launcher parses a
//! companion command with these same definitions before it launches anything, so a typo
//! is refused on the operator's machine, and it judges from them whether the work
//! writes. The companion's `dispatch` runs what was parsed.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use clap::{Args, Parser, Subcommand};

use super::duration;

/// The largest `reencrypt --batch-size`: one short transaction each.
pub(crate) const MAX_BATCH_SIZE: u32 = 10_000;

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
    pub(crate) connect_timeout: Duration,
    /// Output: readable text, or JSON lines (one event per line, the last the result)
    /// [default: $EVERRUNS_ADMIN_OUTPUT, else text on a terminal, JSON lines otherwise]
    #[arg(long, global = true, value_enum, value_name = "FORMAT")]
    pub(crate) output: Option<Output>,
    /// Stop the work at this time (RFC 3339): the statement in flight is cancelled and
    /// rolled back, locks released, exit 124. The launcher sets it from its --timeout.
    #[arg(long, global = true, env = "EVERRUNS_ADMIN_DEADLINE", value_name = "TIME", value_parser = parse_deadline)]
    pub(crate) deadline: Option<DateTime<Utc>>,
    /// How often the server checks, while a statement runs, that this process is still
    /// there, so a killed companion's statement and locks end within about this long
    /// (PostgreSQL 14+; 0 turns it off)
    #[arg(long, global = true, default_value = "5s", value_parser = duration::parse, value_name = "DURATION")]
    pub(crate) client_check_interval: Duration,
    #[command(subcommand)]
    pub(crate) command: Command,
}

impl Cli {
    /// The output format asked for with `--output`, if any.
    pub fn output(&self) -> Option<Output> {
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
pub(crate) enum Command {
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
    /// Print the schema the migrations make (one object per line), or with --diff how
    /// the live database differs from what its applied migrations make; read-only.
    ///
    /// Example: everruns-admin schema --diff
    Schema(SchemaArgs),
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
pub(crate) struct MigrateArgs {
    /// Show what would be applied; write nothing.
    #[arg(long)]
    pub(crate) dry_run: bool,
    /// Apply pending migrations up to and including this version.
    #[arg(long, value_name = "VERSION")]
    pub(crate) target_version: Option<i64>,
    /// Proceed although the database has versions this image does not know.
    #[arg(long)]
    pub(crate) ignore_missing: bool,
    /// How long to wait for the migration lock held by another migrator.
    #[arg(long, default_value = "60s", value_parser = duration::parse)]
    pub(crate) lock_timeout: Duration,
    /// PostgreSQL lock_timeout for the migration's statements, so DDL queued behind a
    /// long transaction gives up instead of blocking every query behind it; set as a
    /// startup option, so a RESET in a migration cannot clear it.
    #[arg(long, default_value = "5s", value_parser = duration::parse, value_name = "DURATION")]
    pub(crate) ddl_lock_timeout: Duration,
    /// How often a migration whose lock wait timed out is tried again (with pauses of
    /// 1s, 2s, 4s, ...); a no-transaction migration is never retried.
    #[arg(long, default_value_t = 3, value_name = "N")]
    pub(crate) lock_retries: u32,
    /// PostgreSQL statement_timeout for the migration's statements (a startup option
    /// too), so a runaway statement ends.
    #[arg(long, default_value = "10m", value_parser = duration::parse, value_name = "DURATION")]
    pub(crate) statement_timeout: Duration,
    /// Apply even when the linter finds blocking problems in the pending migrations.
    #[arg(long)]
    pub(crate) allow_unsafe: bool,
    #[command(flatten)]
    pub(crate) large: LargeTableArgs,
    /// Read migrations from this folder instead of those built into the binary.
    #[arg(long, value_name = "DIR")]
    pub(crate) source: Option<PathBuf>,
}

/// When a table counts as large: a dangerous statement on it blocks.
#[derive(Args)]
pub(crate) struct LargeTableArgs {
    /// A table with more estimated rows than this is large.
    #[arg(long, default_value_t = 10_000, value_name = "ROWS")]
    pub(crate) large_table_rows: i64,
    /// A table of more megabytes than this (indexes and TOAST included) is large.
    #[arg(long, default_value_t = 10, value_name = "MB")]
    pub(crate) large_table_mb: i64,
}

#[derive(Args)]
pub(crate) struct LintArgs {
    /// Lint the migrations in this folder instead of those built into the binary.
    #[arg(long, value_name = "DIR")]
    pub(crate) source: Option<PathBuf>,
    /// Only the migrations after this version.
    #[arg(long, value_name = "VERSION")]
    pub(crate) since: Option<i64>,
}

#[derive(Args)]
pub(crate) struct InfoArgs {
    /// Exit 3 when migrations are pending, 6 when a pending one is unsafe, 4 on
    /// disagreement, 0 when at this image.
    #[arg(long)]
    pub(crate) check: bool,
    #[command(flatten)]
    pub(crate) large: LargeTableArgs,
    /// Accept versions applied in the database but unknown to this image.
    #[arg(long)]
    pub(crate) ignore_missing: bool,
    /// Read migrations from this folder instead of those built into the binary.
    #[arg(long, value_name = "DIR")]
    pub(crate) source: Option<PathBuf>,
}

#[derive(Args)]
pub(crate) struct SchemaArgs {
    /// Compare the live database (DATABASE_URL) with what its applied migrations make;
    /// exit 7 when a difference is not allowed in schema-drift-allow.toml.
    #[arg(long)]
    pub(crate) diff: bool,
    /// Print the schema as of this migration version [default: the newest].
    #[arg(long, value_name = "VERSION", conflicts_with = "diff")]
    pub(crate) version: Option<i64>,
    /// Read migrations, their expected-schema.json and schema-drift-allow.toml from this
    /// folder instead of those built into the binary.
    #[arg(long, value_name = "DIR")]
    pub(crate) source: Option<PathBuf>,
}

#[derive(Args)]
pub(crate) struct ReencryptArgs {
    /// Decrypt and check everything, write nothing.
    #[arg(short = 'n', long)]
    pub(crate) dry_run: bool,
    /// Rows per batch (one short transaction each) [default: 1000; with --max-rate, a
    /// tenth of a second's worth]
    #[arg(short = 'b', long, value_parser = clap::value_parser!(u32).range(1..=i64::from(MAX_BATCH_SIZE)))]
    pub(crate) batch_size: Option<u32>,
    /// Only this declared table.
    #[arg(short = 't', long, value_name = "NAME")]
    pub(crate) table: Option<String>,
    /// How long to wait for another reencrypt's lock.
    #[arg(long, default_value = "10s", value_parser = duration::parse)]
    pub(crate) lock_timeout: Duration,
    /// Only the K-th of N equal ranges of every table's keys (1 ≤ K ≤ N), so N tasks
    /// can share the work; shards run together, the same shard twice does not.
    #[arg(long, value_name = "K/N")]
    pub(crate) shard: Option<Shard>,
    /// At most this many values per second, at a steady pace (per task: a job of N
    /// shards handles up to N times this).
    #[arg(long, value_name = "ROWS_PER_SECOND", value_parser = clap::value_parser!(u32).range(1..))]
    pub(crate) max_rate: Option<u32>,
}

#[derive(Args)]
pub(crate) struct ShellArgs {
    /// Without a terminal: how long to stay up waiting for an operator.
    #[arg(long, default_value = "1h", value_parser = duration::parse)]
    pub(crate) max_idle: Duration,
}

/// The companion's output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    /// Readable lines.
    Text,
    /// One JSON event per line.
    Json,
}

/// Parses `--deadline` / `EVERRUNS_ADMIN_DEADLINE`: an RFC 3339 time.
pub(crate) fn parse_deadline(text: &str) -> Result<DateTime<Utc>, String> {
    DateTime::parse_from_rfc3339(text.trim())
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| format!("{e}: expected an RFC 3339 time such as 2026-12-04T10:30:00Z"))
}

/// One shard of a sharded run: `--shard K/N`, the K-th of N equal ranges of every
/// table's keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    /// K, from 1.
    pub index: u32,
    /// N.
    pub count: u32,
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

impl FromStr for Shard {
    type Err = String;

    /// `K/N` with 1 ≤ K ≤ N.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let usage = || format!("{text:?} is not a shard: write K/N with 1 ≤ K ≤ N, e.g. 2/4");
        let (k, n) = text.split_once('/').ok_or_else(usage)?;
        let (index, count) = (
            k.trim().parse::<u32>().map_err(|_| usage())?,
            n.trim().parse::<u32>().map_err(|_| usage())?,
        );
        if count == 0 {
            return Err(format!("{text:?}: N must be at least 1"));
        }
        if index == 0 || index > count {
            return Err(format!("{text:?}: K must be from 1 to {count}"));
        }
        Ok(Shard { index, count })
    }
}
