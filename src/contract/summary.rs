//! The result summaries the companion writes and the launcher reads: one serde type
//! per shape, so both sides decode the same fields the same way.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::exit;

/// Whether the database answered, and how fast.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct DatabaseProbe {
    /// Connected and answered `SELECT 1`.
    pub ok: bool,
    /// The URL with its password masked, so an operator sees which host was tried.
    pub url: Option<String>,
    /// `server_version` as the server reports it.
    pub server_version: Option<String>,
    /// Round trip of `SELECT 1` on the open connection, in milliseconds.
    pub select1_ms: Option<f64>,
    /// What went wrong, password scrubbed.
    pub error: Option<String>,
    /// Time spent, connection retries included, in milliseconds.
    pub ms: u64,
}

/// Where the schema stands against this image, as `migrate-info` sees it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct SchemaProbe {
    /// The history could be read (pending migrations are not a failure).
    pub ok: bool,
    /// Whether `_sqlx_migrations` exists.
    pub history_table_exists: bool,
    /// Migrations in this image not yet applied.
    pub pending: usize,
    /// Migrations where the database disagrees with this image.
    pub drift: usize,
    /// What went wrong, or why the probe did not run.
    pub error: Option<String>,
    /// Time spent, in milliseconds.
    pub ms: u64,
}

/// Which keys the task was given: ids only, never material.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct KeysProbe {
    /// `SECRETS_ENCRYPTION_KEY` and `SECRETS_ENCRYPTION_KEY_PREVIOUS` are valid.
    pub ok: bool,
    /// The primary key's id.
    pub primary: Option<String>,
    /// The previous keys' ids.
    pub previous: Vec<String>,
    /// Which variable and key is wrong, and how (never its value).
    pub error: Option<String>,
    /// Time spent, in milliseconds.
    pub ms: u64,
}

/// The result event's summary of `status`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct StatusSummary {
    /// Reachability.
    pub database: DatabaseProbe,
    /// Schema state.
    pub schema: SchemaProbe,
    /// Keys.
    pub keys: KeysProbe,
}

impl StatusSummary {
    /// The exit code: 0 when the database is reachable and the keys are valid, else 1.
    /// Pending migrations are information and drift a warning: neither fails `status`.
    pub fn exit_code(&self) -> u8 {
        if self.database.ok && self.keys.ok {
            exit::companion::SUCCESS
        } else {
            exit::companion::FAILURE
        }
    }
}

/// How the run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Every declared value was visited.
    Completed,
    /// SIGTERM: the batch in flight was cancelled and rolled back, then the run stopped.
    Terminated,
    /// SIGINT: the same.
    Interrupted,
    /// The deadline passed: the same.
    DeadlinePassed,
}

/// Counts of values, for one table or one key id. Every scanned value ends in exactly
/// one of the other four.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
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
    /// Adds `other`'s counts to these.
    pub(crate) fn add_all(&mut self, other: &Counts) {
        self.scanned += other.scanned;
        self.already_on_primary += other.already_on_primary;
        self.reencrypted += other.reencrypted;
        self.skipped += other.skipped;
        self.undecryptable += other.undecryptable;
    }

    /// The counts in the order reports show them, with their names: scanned,
    /// re-encrypted, already on primary, skipped, undecryptable.
    #[cfg(feature = "launcher")]
    pub(crate) fn named(&self) -> [(&'static str, u64); 5] {
        [
            ("scanned", self.scanned),
            ("reencrypted", self.reencrypted),
            ("already_on_primary", self.already_on_primary),
            ("skipped", self.skipped),
            ("undecryptable", self.undecryptable),
        ]
    }
}

/// The counts of one encrypted column.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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
    /// The shard walked (`--shard K/N`) and its keys; `None` for every key.
    #[serde(default)]
    pub shard: Option<ShardSummary>,
    /// Values read per second over the whole run.
    #[serde(default)]
    pub rows_per_second: f64,
    /// Undecryptable values left out of `undecryptable` in the result event (the log
    /// lists every one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub undecryptable_not_listed: Option<usize>,
}

impl ReencryptReport {
    /// The counts of every table together.
    pub(crate) fn total(&self) -> Counts {
        let mut total = Counts::default();
        for table in &self.tables {
            total.add_all(&table.counts);
        }
        total
    }

    /// A completed run over `tables` (name, scanned, re-encrypted), for tests.
    #[cfg(test)]
    pub(crate) fn completed(tables: &[(&str, u64, u64)]) -> Self {
        ReencryptReport {
            outcome: Outcome::Completed,
            dry_run: false,
            exit_code: 0,
            keys: KeyIds {
                primary: "kek-v2".into(),
                previous: vec!["kek-v1".into()],
            },
            batch_size: 100,
            elapsed_ms: 1,
            tables: tables
                .iter()
                .map(|&(table, scanned, reencrypted)| TableReport {
                    table: table.into(),
                    column: "c".into(),
                    counts: Counts {
                        scanned,
                        reencrypted,
                        already_on_primary: scanned - reencrypted,
                        ..Counts::default()
                    },
                })
                .collect(),
            by_key_id: BTreeMap::new(),
            undecryptable: Vec::new(),
            shard: None,
            rows_per_second: 0.0,
            undecryptable_not_listed: None,
        }
    }
}

/// The result event's summary of `shell`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "mode", rename_all = "snake_case")]
pub(crate) enum ShellSummary {
    /// A shell ran on the container's terminal.
    Interactive {
        /// Which shell.
        shell: String,
    },
    /// No terminal: the container waited for ECS Exec.
    Wait {
        /// Why the wait ended.
        ended: String,
        /// The task, from its metadata endpoint.
        task_id: Option<String>,
    },
}

/// The ids of a keyring, for reports: the only part of a key that may be shown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyIds {
    /// The primary key's id.
    pub primary: String,
    /// The previous keys' ids, in the order given.
    pub previous: Vec<String>,
}

/// The result event's account of the shard: which, and its keys.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardSummary {
    /// `K/N`.
    pub shard: String,
    /// K.
    pub index: u32,
    /// N.
    pub count: u32,
    /// The keys it covers, both included.
    #[serde(flatten)]
    pub range: KeyRange,
}

/// The keys a run walks, both bounds included.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyRange {
    /// The first key of the range.
    pub from: Uuid,
    /// The last key of the range (the next shard starts right after it).
    pub to: Uuid,
}

/// How a table's size reads wherever it is shown (lint findings, the job summary):
/// `2.3 M rows, 1.4 GB`.
pub fn human(rows: i64, bytes: i64) -> String {
    let rows = match rows {
        r if r >= 1_000_000 => format!("{:.1} M rows", r as f64 / 1e6),
        r if r >= 1_000 => format!("{:.1} k rows", r as f64 / 1e3),
        r => format!("{r} rows"),
    };
    format!("{rows}, {}", human_bytes(bytes))
}

/// `1.4 GB`, `820 kB`.
pub(crate) fn human_bytes(bytes: i64) -> String {
    let b = bytes as f64;
    match bytes {
        n if n >= 1 << 30 => format!("{:.1} GB", b / f64::from(1u32 << 30)),
        n if n >= 1 << 20 => format!("{:.1} MB", b / f64::from(1u32 << 20)),
        n if n >= 1 << 10 => format!("{:.0} kB", b / 1024.0),
        n => format!("{n} B"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_as_people_say_them() {
        assert_eq!(human(2_300_000, 1_503_238_553), "2.3 M rows, 1.4 GB");
        assert_eq!(human(12, 8192), "12 rows, 8 kB");
    }
}
