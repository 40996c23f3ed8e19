//! The walk over one column: keyset pages by primary key, a verdict per value, and a
//! compare-and-swap write per batch, re-reading values another writer changed.

use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant};

use anyhow::anyhow;
use sqlx::postgres::PgConnection;
use uuid::Uuid;

use super::judge::{Verdict, judge};
use super::tally::Disposition;
use crate::companion::cancel;
use crate::companion::console::Progress;
use crate::companion::database::{DatabaseError, DatabaseUrl};
use crate::companion::encrypted_columns::EncryptedColumn;
use crate::contract::summary::{Counts, KeyRange, UndecryptableValue};
use crate::envelope::EnvelopeError;
use crate::keyring::Keyring;

/// How often a value changed by another writer is re-read and retried before it is
/// left alone.
pub(crate) const MAX_RETRIES: usize = 3;
/// Undecryptable values logged one by one; beyond this, only counted.
const MAX_LOGGED_UNDECRYPTABLE: usize = 10_000;
/// Key-id bucket for values whose key id could not be read.
const NO_KEY_ID: &str = "(unreadable)";

/// A value waiting to be written: the row, what it held when read, its replacement,
/// and the key-id bucket it is counted under.
struct Pending {
    id: Uuid,
    old: Vec<u8>,
    new: Vec<u8>,
    key_id: String,
}

/// The state of one run across columns.
pub(super) struct Walk<'a> {
    /// Where batches are written (and changed rows re-read); it holds the lock.
    pub(super) conn: &'a mut PgConnection,
    pub(super) keyring: &'a Keyring,
    pub(super) url: &'a DatabaseUrl,
    /// Rows per batch.
    pub(super) batch_size: u32,
    /// Whether writes are skipped.
    pub(super) dry_run: bool,
    /// The keys walked: every key, or a shard's.
    pub(super) range: KeyRange,
    /// `--max-rate`: when the next batch may start.
    pub(super) pace: Option<Pace>,
    pub(super) by_key_id: BTreeMap<String, Counts>,
    pub(super) undecryptable: Vec<UndecryptableValue>,
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
            count: format!(
                "SELECT count(*) FROM {t} WHERE {col} IS NOT NULL AND {id} BETWEEN $1 AND $2"
            ),
            first_page: format!(
                "SELECT {id}, {col} FROM {t} WHERE {col} IS NOT NULL AND {id} BETWEEN $1 AND $2 \
                 ORDER BY {id} LIMIT $3"
            ),
            next_page: format!(
                "SELECT {id}, {col} FROM {t} WHERE {col} IS NOT NULL AND {id} > $1 \
                 AND {id} <= $2 ORDER BY {id} LIMIT $3"
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
    ///
    /// Pages are read and judged on `reader`, a second connection, one page ahead, so
    /// the next page is read and its values decrypted and re-wrapped while this one is
    /// written: the two touch different keys, and the compare-and-swap write already
    /// copes with values changed after the read.
    pub(super) async fn column(
        &mut self,
        column: &EncryptedColumn,
        reader: &mut PgConnection,
    ) -> Result<Counts, DatabaseError> {
        let sql = Statements::new(column);
        let place = format!("{}.{}", column.table, column.column);
        let total: i64 = sqlx::query_scalar(&sql.count)
            .bind(self.range.from)
            .bind(self.range.to)
            .fetch_one(&mut *self.conn)
            .await
            .map_err(|e| self.db_error(&e, &format!("counting the values of {place}")))?;
        let mut progress = Progress::start(
            format!("reencrypt {}", column.table),
            Some(total.try_into().unwrap_or(0)),
        );
        // One page waits in the channel while the next is read: two pages ahead at most.
        let (pages, mut next_page) = tokio::sync::mpsc::channel(1);
        let reader = read_pages(
            reader,
            &sql,
            self.range,
            self.batch_size,
            self.keyring,
            pages,
        );
        let walker = async {
            let mut counts = Counts::default();
            let mut last: Option<Uuid> = None;
            loop {
                if let Some(cause) = cancel::cause() {
                    tracing::warn!(
                        table = %column.table,
                        "{}: stopping before the next batch of {place}{}",
                        cause.describe(),
                        last.map(|id| format!(" (after id {id})")).unwrap_or_default()
                    );
                    break;
                }
                if let Some(pace) = &self.pace {
                    pace.wait().await;
                    if cancel::cause().is_some() {
                        continue;
                    }
                }
                let Some(page) = next_page.recv().await else {
                    break;
                };
                let rows = page
                    .map_err(|e| self.db_error(&e, &format!("reading {place}{}", after(last))))?;
                let read = rows.len() as u64;
                let tail = rows.last().map(|row| row.id);
                counts.scanned += read;
                if let Some(pace) = &mut self.pace {
                    pace.record(read);
                }
                self.batch(column, &sql, rows, &mut counts).await?;
                last = tail;
                progress.advance(read);
            }
            // Dropping the receiver ends the reader at its next page.
            drop(next_page);
            Ok(counts)
        };
        let ((), counts) = tokio::join!(reader, walker);
        progress.finish();
        counts
    }

    /// Writes one judged batch, retrying rows that changed meanwhile.
    async fn batch(
        &mut self,
        column: &EncryptedColumn,
        sql: &Statements,
        rows: Vec<JudgedRow>,
        counts: &mut Counts,
    ) -> Result<(), DatabaseError> {
        let mut pending = Vec::new();
        for JudgedRow {
            id,
            value,
            key_id,
            verdict,
        } in rows
        {
            let key_id = key_id.unwrap_or_else(|| NO_KEY_ID.to_owned());
            self.counts_of(&key_id).scanned += 1;
            self.settle(column, counts, id, key_id, value, verdict, &mut pending);
        }
        for attempt in 0..=MAX_RETRIES {
            if pending.is_empty() {
                break;
            }
            if self.dry_run {
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
    ) -> Result<Vec<Pending>, DatabaseError> {
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
        self.counts_of(key_id).add(disposition);
    }

    /// The counts of one key id; its name is copied only the first time it is seen, not
    /// once per value.
    fn counts_of(&mut self, key_id: &str) -> &mut Counts {
        if !self.by_key_id.contains_key(key_id) {
            self.by_key_id.insert(key_id.to_owned(), Counts::default());
        }
        self.by_key_id.get_mut(key_id).expect("inserted above")
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
    ) -> Result<HashSet<Uuid>, DatabaseError> {
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
    fn db_error(&self, error: &sqlx::Error, doing: &str) -> DatabaseError {
        let lost = is_connection_lost(error);
        let what = if lost {
            "lost the database connection"
        } else {
            "the database refused"
        };
        DatabaseError::Statement(anyhow!(
            "{what} while {doing}: {}; values written before this are verified and on the \
             primary key; rerun reencrypt to continue",
            self.url.scrub(&error.to_string())
        ))
    }
}

/// `--max-rate`: a steady pace, not bursts. The n-th value may be judged and written
/// no earlier than n / rate seconds after the start, so a batch waits for its turn and
/// the rate over any stretch of the run stays at or under the limit.
pub(super) struct Pace {
    rate: f64,
    started: Instant,
    read: u64,
}

impl Pace {
    pub(super) fn new(rows_per_second: u32) -> Self {
        Pace {
            rate: f64::from(rows_per_second.max(1)),
            started: Instant::now(),
            read: 0,
        }
    }

    fn record(&mut self, rows: u64) {
        self.read += rows;
    }

    /// Sleeps until the next batch is due; a signal ends the wait at once.
    async fn wait(&self) {
        let due = self.started + Duration::from_secs_f64(self.read as f64 / self.rate);
        tokio::select! {
            () = tokio::time::sleep_until(due.into()) => {}
            _ = cancel::requested() => {}
        }
    }
}

/// A value as read, with the key id it is under (if readable) and its verdict.
struct JudgedRow {
    id: Uuid,
    value: Vec<u8>,
    key_id: Option<String>,
    verdict: Verdict,
}

/// A page: the next values by primary key, in order, judged; or why they could not be
/// read.
type Page = Result<Vec<JudgedRow>, sqlx::Error>;

/// Reads and judges the pages of one column in key order into `pages` until the last
/// (short) page, an error, or the walk no longer wanting them.
async fn read_pages(
    conn: &mut PgConnection,
    sql: &Statements,
    range: KeyRange,
    batch_size: u32,
    keyring: &Keyring,
    pages: tokio::sync::mpsc::Sender<Page>,
) {
    let limit = i64::from(batch_size);
    let mut last: Option<Uuid> = None;
    loop {
        let page = match last {
            None => sqlx::query_as::<_, (Uuid, Vec<u8>)>(&sql.first_page)
                .bind(range.from)
                .bind(range.to)
                .bind(limit),
            Some(id) => sqlx::query_as::<_, (Uuid, Vec<u8>)>(&sql.next_page)
                .bind(id)
                .bind(range.to)
                .bind(limit),
        };
        let page = page.fetch_all(&mut *conn).await.map(|rows| {
            rows.into_iter()
                .map(|(id, value)| {
                    let (key_id, verdict) = judge(&value, keyring);
                    JudgedRow {
                        id,
                        value,
                        key_id,
                        verdict,
                    }
                })
                .collect::<Vec<_>>()
        });
        // Only a full page can have more after it.
        let next = match &page {
            Ok(rows) if rows.len() == batch_size as usize => rows.last().map(|row| row.id),
            _ => None,
        };
        if page.as_ref().is_ok_and(Vec::is_empty) || pages.send(page).await.is_err() {
            return;
        }
        match next {
            Some(id) => last = Some(id),
            None => return,
        }
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
