//! One `reencrypt` run: its options, the run lock (shared by shards), the walk over
//! each declared column, and the report.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::anyhow;
use sqlx::postgres::PgConnection;

use super::walk::{Pace, Walk};
use crate::companion::cancel::{self, Cause};
use crate::companion::database::{self, DatabaseUrl, LockMode};
use crate::companion::encrypted_columns::{self, EncryptedColumn};
use crate::companion::failure::CompanionError;
use crate::contract::command_line::{MAX_BATCH_SIZE, Shard};
use crate::contract::exit::companion;
use crate::contract::summary::{KeyRange, Outcome, ReencryptReport, TableReport};
use crate::keyring::Keyring;
use crate::signals::Signal;

/// The advisory lock that lets only one reencrypt run per database. Fixed, and far
/// from sqlx's migration lock (`0x3d32ad9e * crc32(database)`), so the two never meet.
pub const LOCK_KEY: i64 = 0x6576_7272_6e72_6563;
/// Rows per batch unless told otherwise. A batch's row locks last one UPDATE (about
/// 10 ms for 1000 rows); fewer rows mean more round trips per row: over 200,000 rows a
/// run took 1.4x the time of one UPDATE of them all at 100 a batch, 1.1-1.2x at 1000.
pub const DEFAULT_BATCH_SIZE: u32 = 1000;

/// What to re-encrypt and how.
#[derive(Debug, Clone)]
pub(crate) struct ReencryptOptions {
    /// Decrypt, re-wrap and verify everything, but write nothing.
    pub dry_run: bool,
    /// Rows read and written per batch; each batch is one short transaction.
    pub batch_size: u32,
    /// Only this declared table (`--table`); all declared tables when `None`.
    pub table: Option<String>,
    /// How long to retry the first connection while the network comes up.
    pub connect_timeout: Duration,
    /// How long to wait for another reencrypt to release the lock.
    pub lock_timeout: Duration,
    /// Only this shard of the key space (`--shard K/N`); every key when `None`.
    pub shard: Option<Shard>,
    /// At most this many values per second, steadily (`--max-rate`); unpaced when `None`.
    pub max_rate: Option<u32>,
}

impl Default for ReencryptOptions {
    fn default() -> Self {
        Self {
            dry_run: false,
            batch_size: DEFAULT_BATCH_SIZE,
            table: None,
            connect_timeout: Duration::from_secs(30),
            lock_timeout: Duration::from_secs(10),
            shard: None,
            max_rate: None,
        }
    }
}

/// Re-encrypts every declared column (or the one `--table`) under the primary key.
///
/// Keys, `--table`, the batch size and `DATABASE_URL` are checked before connecting:
/// any problem there is a usage error (exit 2) and nothing is written. A lost
/// connection or another database failure is a runtime error (exit 1); values written
/// before it are verified and on the primary key, so a rerun continues. Undecryptable
/// values do not stop the run: they end up in the report, which then calls for exit 5.
pub(crate) async fn run(options: ReencryptOptions) -> Result<ReencryptReport, CompanionError> {
    // A key that cannot be read is the operator's to fix: a usage error, nothing written.
    let keyring = Keyring::from_env()?;
    let columns = encrypted_columns::select(options.table.as_deref())?;
    check_batch_size(options.batch_size)?;
    let url = DatabaseUrl::from_env()?;
    run_with(&options, &keyring, &url, &columns).await
}

/// [`run`] with keys, database and columns given rather than read from the
/// environment (for embedding and benchmarks).
pub(crate) async fn run_with(
    options: &ReencryptOptions,
    keyring: &Keyring,
    url: &DatabaseUrl,
    columns: &[&EncryptedColumn],
) -> Result<ReencryptReport, CompanionError> {
    check_batch_size(options.batch_size)?;
    let started = Instant::now();
    let result = match database::connect(url, options.connect_timeout).await {
        Ok(mut conn) => {
            let result = locked_run(&mut conn, options, keyring, url, columns).await;
            database::close_quietly(conn).await;
            result
        }
        Err(error) => Err(error.into()),
    };
    let mut report = result?;
    let elapsed = started.elapsed();
    report.elapsed_ms = elapsed.as_millis().try_into().unwrap_or(u64::MAX);
    let scanned: u64 = report.tables.iter().map(|t| t.counts.scanned).sum();
    report.rows_per_second = (scanned as f64 / elapsed.as_secs_f64().max(1e-3)).round();
    report.log_summary();
    Ok(report)
}

/// The batch size when none is given: [`DEFAULT_BATCH_SIZE`], or under `--max-rate`
/// a tenth of a second's worth, so a paced run writes small batches often, not bursts.
pub(crate) fn default_batch_size(max_rate: Option<u32>) -> u32 {
    max_rate.map_or(DEFAULT_BATCH_SIZE, |rate| {
        (rate / 10).clamp(1, DEFAULT_BATCH_SIZE)
    })
}

fn check_batch_size(batch_size: u32) -> Result<(), CompanionError> {
    if (1..=MAX_BATCH_SIZE).contains(&batch_size) {
        Ok(())
    } else {
        Err(CompanionError::Argument(anyhow!(
            "--batch-size {batch_size} is out of range: use 1 to {MAX_BATCH_SIZE}"
        )))
    }
}

/// Takes the lock, walks the columns, and releases the lock on every path.
async fn locked_run(
    conn: &mut PgConnection,
    options: &ReencryptOptions,
    keyring: &Keyring,
    url: &DatabaseUrl,
    columns: &[&EncryptedColumn],
) -> Result<ReencryptReport, CompanionError> {
    // Unsharded: the run lock alone. A shard: the run lock shared with the other
    // shards (so an unsharded run waits for all of them, and they for it), and its own.
    let locks: Vec<(i64, LockMode, String)> = match options.shard {
        None => vec![(LOCK_KEY, LockMode::Exclusive, "reencrypt".into())],
        Some(shard) => vec![
            (
                LOCK_KEY,
                LockMode::Shared,
                "reencrypt (shared by shards)".into(),
            ),
            (
                shard.lock_key(),
                LockMode::Exclusive,
                format!("reencrypt shard {shard}"),
            ),
        ],
    };
    let mut held = Vec::new();
    for (key, mode, what) in &locks {
        if let Err(e) =
            database::acquire_lock_as(conn, *key, *mode, options.lock_timeout, what).await
        {
            release(conn, held).await;
            return Err(CompanionError::from(e).scrubbed(|text| url.scrub(text)));
        }
        held.push((*key, *mode));
    }
    // The pages are read on their own connection, one ahead of the writes (see walk.rs).
    let mut reader = match database::connect(url, options.connect_timeout).await {
        Ok(reader) => reader,
        Err(error) => {
            release(conn, held).await;
            return Err(error.into());
        }
    };
    warn_if_migrating(conn).await;
    let keys = keyring.ids();
    tracing::info!(
        primary_key_id = %keys.primary,
        previous_key_ids = %keys.previous.join(","),
        tables = %columns.iter().map(|c| c.table.as_str()).collect::<Vec<_>>().join(","),
        batch_size = options.batch_size,
        dry_run = options.dry_run,
        shard = %options.shard.map(|s| s.to_string()).unwrap_or_default(),
        max_rate = options.max_rate.unwrap_or(0),
        "reencrypt starting{}{}",
        options
            .shard
            .map(|s| {
                let range = s.range();
                format!(" on shard {s} (ids {} to {})", range.from, range.to)
            })
            .unwrap_or_default(),
        if options.dry_run { " (dry run: nothing will be written)" } else { "" }
    );
    let mut walk = Walk {
        conn,
        keyring,
        url,
        batch_size: options.batch_size,
        dry_run: options.dry_run,
        range: options.shard.map_or(KeyRange::ALL, |s| s.range()),
        pace: options.max_rate.map(Pace::new),
        by_key_id: BTreeMap::new(),
        undecryptable: Vec::new(),
    };
    let mut tables = Vec::new();
    let mut failure = None;
    for column in columns {
        if cancel::cause().is_some() {
            break;
        }
        match walk.column(column, &mut reader).await {
            Ok(counts) => tables.push(TableReport {
                table: column.table.clone(),
                column: column.column.clone(),
                counts,
            }),
            Err(error) => {
                failure = Some(error);
                break;
            }
        }
    }
    let Walk {
        conn,
        by_key_id,
        undecryptable,
        ..
    } = walk;
    database::close_quietly(reader).await;
    release(conn, held).await;
    // A batch cancelled by a stop fails its statement: that is the stop, not a failure
    // (its transaction rolled back; the batches before it are written and verified).
    match (failure, cancel::cause()) {
        (Some(error), None) => return Err(error.into()),
        (Some(error), Some(cause)) => tracing::warn!(
            "{}: the batch in flight was cancelled and rolled back ({error})",
            cause.describe()
        ),
        (None, _) => {}
    }
    let outcome = match cancel::cause() {
        Some(Cause::Signal(Signal::Terminate)) => Outcome::Terminated,
        Some(Cause::Signal(Signal::Interrupt)) => Outcome::Interrupted,
        Some(Cause::Deadline(_)) => Outcome::DeadlinePassed,
        None => Outcome::Completed,
    };
    let exit_code = match cancel::cause() {
        Some(cause) => cause.exit_code(),
        None if undecryptable.is_empty() => companion::SUCCESS,
        None => companion::UNDECRYPTABLE,
    };
    Ok(ReencryptReport {
        outcome,
        dry_run: options.dry_run,
        exit_code,
        keys,
        batch_size: options.batch_size,
        elapsed_ms: 0,
        tables,
        by_key_id,
        undecryptable,
        shard: options.shard.map(|s| s.summary()),
        rows_per_second: 0.0,
        undecryptable_not_listed: None,
    })
}

/// Releases the locks taken, last first. After a lost connection there is nothing to
/// release: the server already did.
async fn release(conn: &mut PgConnection, held: Vec<(i64, LockMode)>) {
    for (key, mode) in held.into_iter().rev() {
        let _ = database::release_lock_as(conn, key, mode).await;
    }
}

/// A migration running at the same time is not an error (the writes here are
/// compare-and-swap), but the operator should know.
async fn warn_if_migrating(conn: &mut PgConnection) {
    let Ok(name) = sqlx::query_scalar::<_, String>("SELECT current_database()")
        .fetch_one(&mut *conn)
        .await
    else {
        return;
    };
    let key = crate::companion::migrations::lock_key(&name);
    if let Ok(holders) = database::lock_holders(conn, key).await
        && !holders.is_empty()
    {
        tracing::warn!(
            holder = %holders[0],
            "a migration is running on this database at the same time; re-encryption goes on \
             (its writes never overwrite a changed value)"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lock_is_not_sqlx_migration_lock() {
        for name in ["everruns", "postgres", "t1"] {
            assert_ne!(
                LOCK_KEY,
                0x3d32_ad9e_i64 * i64::from(crc32fast::hash(name.as_bytes()))
            );
        }
    }

    #[test]
    fn a_paced_run_defaults_to_a_tenth_of_a_second_per_batch() {
        assert_eq!(default_batch_size(None), DEFAULT_BATCH_SIZE);
        assert_eq!(default_batch_size(Some(400)), 40);
        assert_eq!(default_batch_size(Some(5)), 1);
        assert_eq!(default_batch_size(Some(1_000_000)), DEFAULT_BATCH_SIZE);
    }

    #[test]
    fn batch_size_is_bounded() {
        assert_eq!(check_batch_size(0).unwrap_err().exit_code(), 2);
        assert_eq!(
            check_batch_size(MAX_BATCH_SIZE + 1)
                .unwrap_err()
                .exit_code(),
            2
        );
        assert!(check_batch_size(1).is_ok());
    }
}
