//! `reencrypt`: after a key rotation, re-wrap every stored secret under the primary key.
//!
//! Safe alongside the running application: each table is walked by primary key in
//! batches (keyset pagination), every new value is verified before it is written, and
//! a batch is written by one compare-and-swap statement, so a value the application
//! changed meanwhile is never overwritten (it is re-read and retried, or left alone).
//! Values already on the primary key are checked and passed over, so an interrupted
//! run is simply run again. Only one reencrypt runs per database (an advisory lock).
//!
//! Nothing secret leaves this module: values are reported by table, id and reason.

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::{Duration, Instant};

use anyhow::anyhow;
use serde::Serialize;
use serde_json::Value;
use sqlx::postgres::PgConnection;
use uuid::Uuid;

use crate::console::Progress;
use crate::database::{self, DatabaseUrl};
use crate::encrypted_columns::{self, EncryptedColumn};
use crate::envelope::{Envelope, EnvelopeError};
use crate::exit::{ExitError, companion};
use crate::keyring::{KeyIds, Keyring};

/// The advisory lock that lets only one reencrypt run per database. Fixed, and far
/// from sqlx's migration lock (`0x3d32ad9e * crc32(database)`), so the two never meet.
pub const LOCK_KEY: i64 = 0x6576_7272_6e72_6563;
/// Rows per batch unless told otherwise.
pub const DEFAULT_BATCH_SIZE: u32 = 100;
/// Largest batch accepted: one statement carries the whole batch.
pub const MAX_BATCH_SIZE: u32 = 10_000;
/// How often a value changed by another writer is re-read and retried before it is
/// left alone.
pub const MAX_RETRIES: usize = 3;
/// Undecryptable values logged one by one; beyond this, only counted.
const MAX_LOGGED_UNDECRYPTABLE: usize = 10_000;
/// Undecryptable values listed in the final result event (the log has them all).
const MAX_LISTED_UNDECRYPTABLE: usize = 200;
/// Key-id bucket for values whose key id could not be read.
const NO_KEY_ID: &str = "(unreadable)";

/// What to re-encrypt and how.
#[derive(Debug, Clone)]
pub struct ReencryptOptions {
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
}

impl Default for ReencryptOptions {
    fn default() -> Self {
        Self {
            dry_run: false,
            batch_size: DEFAULT_BATCH_SIZE,
            table: None,
            connect_timeout: Duration::from_secs(30),
            lock_timeout: Duration::from_secs(10),
        }
    }
}

/// How the run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Every declared value was visited.
    Completed,
    /// SIGTERM: the current batch was finished, then the run stopped.
    Terminated,
    /// SIGINT: the current batch was finished, then the run stopped.
    Interrupted,
}

/// Counts of values, for one table or one key id. Every scanned value ends in exactly
/// one of the other four.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    /// Non-NULL values read.
    pub scanned: u64,
    /// Already under the primary key (checked, not rewritten).
    pub already_on_primary: u64,
    /// Re-wrapped under the primary key and written (in a dry run: would be).
    pub reencrypted: u64,
    /// Changed by another writer on every attempt, or deleted meanwhile; left as is.
    pub skipped: u64,
    /// Could not be decrypted; listed by table and id.
    pub undecryptable: u64,
}

impl Counts {
    fn add(&mut self, disposition: Disposition) {
        match disposition {
            Disposition::OnPrimary => self.already_on_primary += 1,
            Disposition::Reencrypted => self.reencrypted += 1,
            Disposition::Skipped => self.skipped += 1,
            Disposition::Undecryptable => self.undecryptable += 1,
        }
    }
}

/// The counts of one encrypted column.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TableReport {
    /// The table.
    pub table: String,
    /// The encrypted column.
    pub column: String,
    /// The counts.
    #[serde(flatten)]
    pub counts: Counts,
}

/// One value that could not be decrypted: where it is and why, never what it holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UndecryptableValue {
    /// The table.
    pub table: String,
    /// The encrypted column.
    pub column: String,
    /// The row's primary key (a UUID, as text).
    pub id: String,
    /// Short stable reason code (`unknown_key_id`, `authentication_failed`, ...).
    pub kind: String,
    /// The reason, for a person.
    pub reason: String,
}

/// What a run did; serialized into the final result event.
#[derive(Debug, Clone, Serialize)]
pub struct ReencryptReport {
    /// How it ended.
    pub outcome: Outcome,
    /// Whether writes were skipped (`reencrypted` then means "would be").
    pub dry_run: bool,
    /// The exit status this report calls for.
    pub exit_code: u8,
    /// Key ids in use (never key material).
    pub keys: KeyIds,
    /// Rows per batch.
    pub batch_size: u32,
    /// Wall time of the run in milliseconds.
    pub elapsed_ms: u64,
    /// Per encrypted column.
    pub tables: Vec<TableReport>,
    /// Per key id the values were found under (`(unreadable)` when the payload could not be read).
    pub by_key_id: BTreeMap<String, Counts>,
    /// All undecryptable values, in the order found.
    pub undecryptable: Vec<UndecryptableValue>,
}

impl ReencryptReport {
    /// The status the companion exits with: 0, 5 when values could not be decrypted,
    /// 143 / 130 when stopped by SIGTERM / SIGINT.
    pub fn exit_code(&self) -> u8 {
        self.exit_code
    }

    /// The summary for the final result event; the list of undecryptable values is
    /// cut to its first 200 there (the log lists every one).
    pub fn summary(&self) -> Value {
        let mut summary = serde_json::to_value(self).expect("a report always serializes");
        if self.undecryptable.len() > MAX_LISTED_UNDECRYPTABLE {
            summary["undecryptable"] =
                serde_json::to_value(&self.undecryptable[..MAX_LISTED_UNDECRYPTABLE])
                    .expect("a report always serializes");
            summary["undecryptable_not_listed"] =
                Value::from(self.undecryptable.len() - MAX_LISTED_UNDECRYPTABLE);
        }
        summary
    }

    fn total(&self) -> Counts {
        let mut total = Counts::default();
        for t in &self.tables {
            total.scanned += t.counts.scanned;
            total.already_on_primary += t.counts.already_on_primary;
            total.reencrypted += t.counts.reencrypted;
            total.skipped += t.counts.skipped;
            total.undecryptable += t.counts.undecryptable;
        }
        total
    }

    /// Writes the readable summary: a line per table and per key id, then the verdict.
    fn log_summary(&self) {
        let done = if self.dry_run {
            "would re-encrypt"
        } else {
            "re-encrypted"
        };
        for t in &self.tables {
            tracing::info!(
                table = %t.table,
                column = %t.column,
                "{}.{}: {}",
                t.table,
                t.column,
                CountsLine(&t.counts, done)
            );
        }
        for (key_id, counts) in &self.by_key_id {
            tracing::info!(key_id = %key_id, "values under key {key_id}: {}", CountsLine(counts, done));
        }
        let total = self.total();
        let mode = if self.dry_run {
            " (dry run, nothing written)"
        } else {
            ""
        };
        match self.outcome {
            Outcome::Completed if total.undecryptable == 0 && self.dry_run => tracing::info!(
                "reencrypt finished{mode}: {}; every value can be decrypted, {} would move to key {}",
                CountsLine(&total, done),
                total.reencrypted,
                self.keys.primary
            ),
            Outcome::Completed if total.undecryptable == 0 && total.skipped > 0 => tracing::warn!(
                "reencrypt finished: {}; {} value(s) kept changing under another writer and were \
                 left as they are: rerun to move them to key {}",
                CountsLine(&total, done),
                total.skipped,
                self.keys.primary
            ),
            Outcome::Completed if total.undecryptable == 0 => tracing::info!(
                "reencrypt finished: {}; every value is on key {}",
                CountsLine(&total, done),
                self.keys.primary
            ),
            Outcome::Completed => tracing::warn!(
                "reencrypt finished{mode}: {}; {} value(s) could not be decrypted (listed above by \
                 table and id): check SECRETS_ENCRYPTION_KEY_PREVIOUS, then rerun",
                CountsLine(&total, done),
                total.undecryptable
            ),
            Outcome::Terminated | Outcome::Interrupted => tracing::warn!(
                "reencrypt stopped early by a signal{mode}: {}; finished batches are written; \
                 rerun to continue (values already on the primary key are passed over)",
                CountsLine(&total, done)
            ),
        }
    }
}

struct CountsLine<'a>(&'a Counts, &'a str);

impl fmt::Display for CountsLine<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = self.0;
        write!(
            f,
            "scanned {}, already on primary {}, {} {}, skipped {}, undecryptable {}",
            c.scanned, c.already_on_primary, self.1, c.reencrypted, c.skipped, c.undecryptable
        )
    }
}

/// Re-encrypts every declared column (or the one `--table`) under the primary key.
///
/// Keys, `--table`, the batch size and `DATABASE_URL` are checked before connecting:
/// any problem there is a usage error (exit 2) and nothing is written. A lost
/// connection or another database failure is a runtime error (exit 1); values written
/// before it are verified and on the primary key, so a rerun continues. Undecryptable
/// values do not stop the run: they end up in the report, which then calls for exit 5.
pub async fn run(options: ReencryptOptions) -> Result<ReencryptReport, ExitError> {
    let keyring = Keyring::from_env()?;
    let columns = encrypted_columns::select(options.table.as_deref())?;
    check_batch_size(options.batch_size)?;
    let url = DatabaseUrl::from_env()?;
    run_with(&options, &keyring, &url, &columns).await
}

/// [`run`] with keys, database and columns given rather than read from the
/// environment (for embedding and benchmarks).
pub async fn run_with(
    options: &ReencryptOptions,
    keyring: &Keyring,
    url: &DatabaseUrl,
    columns: &[&EncryptedColumn],
) -> Result<ReencryptReport, ExitError> {
    check_batch_size(options.batch_size)?;
    let started = Instant::now();
    let stop = StopSignal::install()?;
    let result = match database::connect(url, options.connect_timeout).await {
        Ok(mut conn) => {
            let result = locked_run(&mut conn, options, keyring, url, columns, &stop).await;
            database::close_quietly(conn).await;
            result
        }
        Err(error) => Err(error),
    };
    stop.uninstall();
    let mut report = result?;
    report.elapsed_ms = started.elapsed().as_millis().try_into().unwrap_or(u64::MAX);
    report.log_summary();
    Ok(report)
}

fn check_batch_size(batch_size: u32) -> Result<(), ExitError> {
    if (1..=MAX_BATCH_SIZE).contains(&batch_size) {
        Ok(())
    } else {
        Err(ExitError::usage(anyhow!(
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
    stop: &StopSignal,
) -> Result<ReencryptReport, ExitError> {
    database::acquire_lock(conn, LOCK_KEY, options.lock_timeout, "reencrypt")
        .await
        .map_err(|e| ExitError::new(e.code, anyhow!(url.scrub(&format!("{:#}", e.error)))))?;
    warn_if_migrating(conn).await;
    let keys = keyring.ids();
    tracing::info!(
        primary_key_id = %keys.primary,
        previous_key_ids = %keys.previous.join(","),
        tables = %columns.iter().map(|c| c.table.as_str()).collect::<Vec<_>>().join(","),
        batch_size = options.batch_size,
        dry_run = options.dry_run,
        "reencrypt starting{}",
        if options.dry_run { " (dry run: nothing will be written)" } else { "" }
    );
    let mut walk = Walk {
        conn,
        keyring,
        url,
        options,
        stop,
        by_key_id: BTreeMap::new(),
        undecryptable: Vec::new(),
    };
    let mut tables = Vec::new();
    let mut failure = None;
    for column in columns {
        if stop.received().is_some() {
            break;
        }
        match walk.column(column).await {
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
    // After a lost connection there is nothing to release: the server already did.
    let _ = database::release_lock(conn, LOCK_KEY).await;
    if let Some(error) = failure {
        return Err(error);
    }
    let outcome = match stop.received() {
        Some(Signal::Terminate) => Outcome::Terminated,
        Some(Signal::Interrupt) => Outcome::Interrupted,
        None => Outcome::Completed,
    };
    let exit_code = match outcome {
        Outcome::Terminated => companion::TERMINATED,
        Outcome::Interrupted => companion::INTERRUPTED,
        Outcome::Completed if undecryptable.is_empty() => companion::SUCCESS,
        Outcome::Completed => companion::UNDECRYPTABLE,
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
    })
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
    let key = 0x3d32_ad9e_i64 * i64::from(crc32fast::hash(name.as_bytes()));
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

/// What happened to one scanned value in the end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Disposition {
    OnPrimary,
    Reencrypted,
    Skipped,
    Undecryptable,
}

/// What to do with one stored value.
enum Verdict {
    /// Already on the primary key and decrypts: leave it.
    OnPrimary,
    /// Re-wrapped and verified: write this in place of the old value.
    Rewrap(Vec<u8>),
    /// Cannot be decrypted.
    Undecryptable(EnvelopeError),
}

/// Decides about one value: the key id it is under (if readable) and the verdict.
fn judge(payload: &[u8], keyring: &Keyring) -> (Option<String>, Verdict) {
    let envelope = match Envelope::parse(payload) {
        Ok(envelope) => envelope,
        Err(error) => return (None, Verdict::Undecryptable(error)),
    };
    let key_id = Some(envelope.key_id().to_owned());
    let verdict = if envelope.key_id() == keyring.primary().id() {
        match envelope.open(keyring) {
            Ok(_) => Verdict::OnPrimary,
            Err(error) => Verdict::Undecryptable(error),
        }
    } else {
        match envelope.rewrap(keyring) {
            Ok(new) => Verdict::Rewrap(new.to_bytes()),
            Err(error) => Verdict::Undecryptable(error),
        }
    };
    (key_id, verdict)
}

/// A value waiting to be written: the row, what it held when read, its replacement,
/// and the key-id bucket it is counted under.
struct Pending {
    id: Uuid,
    old: Vec<u8>,
    new: Vec<u8>,
    key_id: String,
}

/// The state of one run across columns.
struct Walk<'a> {
    conn: &'a mut PgConnection,
    keyring: &'a Keyring,
    url: &'a DatabaseUrl,
    options: &'a ReencryptOptions,
    stop: &'a StopSignal,
    by_key_id: BTreeMap<String, Counts>,
    undecryptable: Vec<UndecryptableValue>,
}

/// The statements for one column, built once from its declared (validated) names.
struct Statements {
    count: String,
    first_page: String,
    next_page: String,
    reread: String,
    write: String,
}

impl Statements {
    fn new(c: &EncryptedColumn) -> Self {
        let (t, id, col) = (c.quoted_table(), c.quoted_id(), c.quoted_column());
        Self {
            count: format!("SELECT count(*) FROM {t} WHERE {col} IS NOT NULL"),
            first_page: format!(
                "SELECT {id}, {col} FROM {t} WHERE {col} IS NOT NULL ORDER BY {id} LIMIT $1"
            ),
            next_page: format!(
                "SELECT {id}, {col} FROM {t} WHERE {col} IS NOT NULL AND {id} > $1 \
                 ORDER BY {id} LIMIT $2"
            ),
            reread: format!("SELECT {id}, {col} FROM {t} WHERE {id} = ANY($1)"),
            write: format!(
                "UPDATE {t} AS t SET {col} = v.new \
                 FROM UNNEST($1::uuid[], $2::bytea[], $3::bytea[]) AS v(id, old, new) \
                 WHERE t.{id} = v.id AND t.{col} = v.old RETURNING t.{id}"
            ),
        }
    }
}

impl Walk<'_> {
    /// Walks one column by primary key, batch by batch, until the end or a signal.
    async fn column(&mut self, column: &EncryptedColumn) -> Result<Counts, ExitError> {
        let sql = Statements::new(column);
        let place = format!("{}.{}", column.table, column.column);
        let total: i64 = sqlx::query_scalar(&sql.count)
            .fetch_one(&mut *self.conn)
            .await
            .map_err(|e| self.db_error(&e, &format!("counting the values of {place}")))?;
        let mut progress = Progress::start(
            format!("reencrypt {}", column.table),
            Some(total.try_into().unwrap_or(0)),
        );
        let mut counts = Counts::default();
        let mut last: Option<Uuid> = None;
        let limit = i64::from(self.options.batch_size);
        loop {
            if let Some(signal) = self.stop.received() {
                tracing::warn!(
                    table = %column.table,
                    "{signal} received: stopping before the next batch of {place}{}",
                    last.map(|id| format!(" (after id {id})")).unwrap_or_default()
                );
                break;
            }
            let page = match last {
                None => sqlx::query_as::<_, (Uuid, Vec<u8>)>(&sql.first_page).bind(limit),
                Some(id) => sqlx::query_as::<_, (Uuid, Vec<u8>)>(&sql.next_page)
                    .bind(id)
                    .bind(limit),
            };
            let rows = page
                .fetch_all(&mut *self.conn)
                .await
                .map_err(|e| self.db_error(&e, &format!("reading {place}{}", after(last))))?;
            let Some(&(tail, _)) = rows.last() else {
                break;
            };
            let read = rows.len();
            counts.scanned += read as u64;
            self.batch(column, &sql, rows, &mut counts).await?;
            last = Some(tail);
            progress.advance(read as u64);
            if read < self.options.batch_size as usize {
                break;
            }
        }
        progress.finish();
        Ok(counts)
    }

    /// Judges one batch and writes it, retrying rows that changed meanwhile.
    async fn batch(
        &mut self,
        column: &EncryptedColumn,
        sql: &Statements,
        rows: Vec<(Uuid, Vec<u8>)>,
        counts: &mut Counts,
    ) -> Result<(), ExitError> {
        let mut pending = Vec::new();
        for (id, value) in rows {
            let (key_id, verdict) = judge(&value, self.keyring);
            let key_id = key_id.unwrap_or_else(|| NO_KEY_ID.to_owned());
            self.by_key_id.entry(key_id.clone()).or_default().scanned += 1;
            self.settle(column, counts, id, key_id, value, verdict, &mut pending);
        }
        for attempt in 0..=MAX_RETRIES {
            if pending.is_empty() {
                break;
            }
            if self.options.dry_run {
                for p in pending.drain(..) {
                    self.count(counts, &p.key_id, Disposition::Reencrypted);
                }
                break;
            }
            let written = self.write(column, sql, &pending).await?;
            let mut changed = Vec::new();
            for p in pending.drain(..) {
                if written.contains(&p.id) {
                    self.count(counts, &p.key_id, Disposition::Reencrypted);
                } else {
                    changed.push(p);
                }
            }
            if changed.is_empty() {
                break;
            }
            if attempt == MAX_RETRIES {
                for p in changed {
                    tracing::warn!(
                        table = %column.table,
                        id = %p.id,
                        "{}.{} id {}: changed by another writer on every attempt; left as that \
                         writer wrote it",
                        column.table,
                        column.column,
                        p.id
                    );
                    self.count(counts, &p.key_id, Disposition::Skipped);
                }
                break;
            }
            tracing::debug!(
                table = %column.table,
                rows = changed.len(),
                "values changed by another writer since they were read; reading them again"
            );
            pending = self.reread(column, sql, changed, counts).await?;
        }
        Ok(())
    }

    /// Reads changed rows again and judges their current values.
    async fn reread(
        &mut self,
        column: &EncryptedColumn,
        sql: &Statements,
        changed: Vec<Pending>,
        counts: &mut Counts,
    ) -> Result<Vec<Pending>, ExitError> {
        let ids: Vec<Uuid> = changed.iter().map(|p| p.id).collect();
        let rows: Vec<(Uuid, Option<Vec<u8>>)> = sqlx::query_as(&sql.reread)
            .bind(&ids)
            .fetch_all(&mut *self.conn)
            .await
            .map_err(|e| {
                self.db_error(&e, &format!("re-reading changed rows of {}", column.table))
            })?;
        let mut current: BTreeMap<Uuid, Option<Vec<u8>>> = rows.into_iter().collect();
        let mut pending = Vec::new();
        for p in changed {
            match current.remove(&p.id).flatten() {
                Some(value) => {
                    let (_, verdict) = judge(&value, self.keyring);
                    self.settle(column, counts, p.id, p.key_id, value, verdict, &mut pending);
                }
                None => {
                    tracing::info!(
                        table = %column.table,
                        id = %p.id,
                        "{}.{} id {}: deleted or cleared by another writer meanwhile",
                        column.table,
                        column.column,
                        p.id
                    );
                    self.count(counts, &p.key_id, Disposition::Skipped);
                }
            }
        }
        Ok(pending)
    }

    /// Counts a verdict that needs no write, or queues the write.
    #[allow(clippy::too_many_arguments)]
    fn settle(
        &mut self,
        column: &EncryptedColumn,
        counts: &mut Counts,
        id: Uuid,
        key_id: String,
        old: Vec<u8>,
        verdict: Verdict,
        pending: &mut Vec<Pending>,
    ) {
        match verdict {
            Verdict::OnPrimary => self.count(counts, &key_id, Disposition::OnPrimary),
            Verdict::Rewrap(new) => pending.push(Pending {
                id,
                old,
                new,
                key_id,
            }),
            Verdict::Undecryptable(error) => {
                self.count(counts, &key_id, Disposition::Undecryptable);
                self.report_undecryptable(column, id, &error);
            }
        }
    }

    fn count(&mut self, counts: &mut Counts, key_id: &str, disposition: Disposition) {
        counts.add(disposition);
        self.by_key_id
            .entry(key_id.to_owned())
            .or_default()
            .add(disposition);
    }

    fn report_undecryptable(&mut self, column: &EncryptedColumn, id: Uuid, error: &EnvelopeError) {
        let logged = self.undecryptable.len();
        if logged < MAX_LOGGED_UNDECRYPTABLE {
            tracing::warn!(
                table = %column.table,
                column = %column.column,
                id = %id,
                kind = error.kind(),
                "cannot decrypt {}.{} id {id}: {error}",
                column.table,
                column.column
            );
        } else if logged == MAX_LOGGED_UNDECRYPTABLE {
            tracing::warn!(
                "more than {MAX_LOGGED_UNDECRYPTABLE} values cannot be decrypted; the rest are \
                 only counted (is SECRETS_ENCRYPTION_KEY_PREVIOUS right?)"
            );
        }
        self.undecryptable.push(UndecryptableValue {
            table: column.table.clone(),
            column: column.column.clone(),
            id: id.to_string(),
            kind: error.kind().to_owned(),
            reason: error.to_string(),
        });
    }

    /// Writes a batch in one compare-and-swap statement; returns the rows it changed.
    async fn write(
        &mut self,
        column: &EncryptedColumn,
        sql: &Statements,
        pending: &[Pending],
    ) -> Result<HashSet<Uuid>, ExitError> {
        let ids: Vec<Uuid> = pending.iter().map(|p| p.id).collect();
        let olds: Vec<&[u8]> = pending.iter().map(|p| p.old.as_slice()).collect();
        let news: Vec<&[u8]> = pending.iter().map(|p| p.new.as_slice()).collect();
        let written: Vec<Uuid> = sqlx::query_scalar(&sql.write)
            .bind(&ids)
            .bind(&olds)
            .bind(&news)
            .fetch_all(&mut *self.conn)
            .await
            .map_err(|e| {
                self.db_error(
                    &e,
                    &format!(
                        "writing a batch of {} (ids {} to {}); that batch was not written",
                        column.table,
                        ids[0],
                        ids[ids.len() - 1]
                    ),
                )
            })?;
        Ok(written.into_iter().collect())
    }

    /// A database failure as a runtime error (exit 1), password scrubbed, saying that
    /// a rerun continues where this one stopped.
    fn db_error(&self, error: &sqlx::Error, doing: &str) -> ExitError {
        let lost = is_connection_lost(error);
        let what = if lost {
            "lost the database connection"
        } else {
            "the database refused"
        };
        ExitError::runtime(anyhow!(
            "{what} while {doing}: {}; values written before this are verified and on the \
             primary key; rerun reencrypt to continue",
            self.url.scrub(&error.to_string())
        ))
    }
}

fn after(last: Option<Uuid>) -> String {
    last.map(|id| format!(" after id {id}")).unwrap_or_default()
}

/// Whether the error means the session is gone (network, server shutdown, terminated).
fn is_connection_lost(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Io(_) | sqlx::Error::Protocol(_) | sqlx::Error::Tls(_) => true,
        sqlx::Error::Database(db) => db
            .code()
            .is_some_and(|code| code.starts_with("57P") || code.starts_with("08")),
        _ => false,
    }
}

/// A signal that asks the run to stop after the current batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Signal {
    Terminate,
    Interrupt,
}

impl fmt::Display for Signal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Signal::Terminate => "SIGTERM",
            Signal::Interrupt => "SIGINT",
        })
    }
}

/// Listens for SIGTERM (ECS StopTask) and SIGINT while the run goes on.
struct StopSignal {
    received: Arc<AtomicU8>,
    listener: tokio::task::JoinHandle<()>,
}

impl StopSignal {
    const NONE: u8 = 0;

    fn install() -> Result<Self, ExitError> {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate())
            .map_err(|e| ExitError::runtime(anyhow!("cannot listen for SIGTERM: {e}")))?;
        let mut int = signal(SignalKind::interrupt())
            .map_err(|e| ExitError::runtime(anyhow!("cannot listen for SIGINT: {e}")))?;
        let received = Arc::new(AtomicU8::new(Self::NONE));
        let flag = Arc::clone(&received);
        let listener = tokio::spawn(async move {
            let signal = tokio::select! {
                _ = term.recv() => Signal::Terminate,
                _ = int.recv() => Signal::Interrupt,
            };
            flag.store(signal as u8 + 1, Ordering::SeqCst);
            tracing::warn!(
                "{signal} received: finishing the current batch, then stopping; rerun \
                 reencrypt to continue"
            );
        });
        Ok(Self { received, listener })
    }

    fn received(&self) -> Option<Signal> {
        match self.received.load(Ordering::SeqCst) {
            1 => Some(Signal::Terminate),
            2 => Some(Signal::Interrupt),
            _ => None,
        }
    }

    fn uninstall(self) {
        self.listener.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envelope;

    const K1: &str = "kek-v1:AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyA=";
    const K2: &str = "kek-v2:ZWZnaGlqa2xtbm9wcXJzdHV2d3h5ent8fX5/gIGCg4Q=";

    #[test]
    fn values_are_judged_by_key_id_and_content() {
        let ring = Keyring::parse(K2, Some(K1)).unwrap();
        let on_old = envelope::encrypt(b"v", ring.get("kek-v1").unwrap()).unwrap();
        let on_new = envelope::encrypt(b"v", ring.primary()).unwrap();
        assert!(matches!(judge(&on_old, &ring), (Some(id), Verdict::Rewrap(_)) if id == "kek-v1"));
        assert!(matches!(judge(&on_new, &ring), (Some(id), Verdict::OnPrimary) if id == "kek-v2"));
        assert!(matches!(
            judge(b"plain", &ring),
            (None, Verdict::Undecryptable(_))
        ));
        let only_new = Keyring::parse(K2, None).unwrap();
        assert!(matches!(
            judge(&on_old, &only_new),
            (_, Verdict::Undecryptable(EnvelopeError::UnknownKeyId(_)))
        ));
    }

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
    fn batch_size_is_bounded() {
        assert_eq!(check_batch_size(0).unwrap_err().code, 2);
        assert_eq!(check_batch_size(MAX_BATCH_SIZE + 1).unwrap_err().code, 2);
        assert!(check_batch_size(1).is_ok());
    }
}
