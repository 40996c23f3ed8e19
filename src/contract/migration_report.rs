//! Where migrations stand, as the result events of `migrate` and `migrate-info` carry
//! it: written by the companion, read by the launcher for CI annotations and the job
//! summary. The lock holders and INVALID indexes are read straight from the server's
//! catalogue into these types.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::findings::Finding;

/// Where one migration stands.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub(crate) enum MigrationState {
    /// Applied, with the same checksum as the image's file.
    Installed {
        /// When it was applied.
        installed_on: DateTime<Utc>,
        /// How long it took, when recorded.
        execution_ms: Option<f64>,
    },
    /// In the image, not yet applied.
    Pending,
    /// Not yet applied although a newer version is: it will be applied out of order.
    PendingOutOfOrder,
    /// Applied from a file whose bytes differ from the image's.
    ChecksumMismatch {
        /// SHA-384 of the image's file, hex.
        image_checksum: String,
        /// SHA-384 recorded in the database, hex.
        database_checksum: String,
    },
    /// Applied in the database but unknown to this image (an older image?).
    MissingFromImage,
    /// A failed attempt is recorded (`success = false`).
    Failed,
}

/// One migration and its state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct MigrationStatus {
    /// Version from the file name.
    pub version: i64,
    /// Description (from the image, else from the database).
    pub description: String,
    /// Where it stands.
    #[serde(flatten)]
    pub state: MigrationState,
}

impl MigrationStatus {
    /// Its state's name, as the result event spells it (`pending`, `installed`, ...).
    #[cfg(feature = "launcher")]
    pub(crate) fn state_name(&self) -> &'static str {
        match self.state {
            MigrationState::Installed { .. } => "installed",
            MigrationState::Pending => "pending",
            MigrationState::PendingOutOfOrder => "pending_out_of_order",
            MigrationState::ChecksumMismatch { .. } => "checksum_mismatch",
            MigrationState::MissingFromImage => "missing_from_image",
            MigrationState::Failed => "failed",
        }
    }

    /// Is this migration waiting to be applied?
    pub(crate) fn is_pending(&self) -> bool {
        matches!(
            self.state,
            MigrationState::Pending | MigrationState::PendingOutOfOrder
        )
    }

    /// Does the database disagree with the image here? `ignore_missing` accepts
    /// versions the image does not know (running an older image on purpose).
    pub(crate) fn is_drift(&self, ignore_missing: bool) -> bool {
        match self.state {
            MigrationState::ChecksumMismatch { .. } | MigrationState::Failed => true,
            MigrationState::MissingFromImage => !ignore_missing,
            _ => false,
        }
    }

    /// A one-line description for operators.
    pub fn describe(&self) -> String {
        let what = match &self.state {
            MigrationState::Installed {
                installed_on,
                execution_ms,
            } => match execution_ms {
                Some(ms) => format!("installed {} ({ms:.1} ms)", installed_on.to_rfc3339()),
                None => format!("installed {}", installed_on.to_rfc3339()),
            },
            MigrationState::Pending => "pending".to_owned(),
            MigrationState::PendingOutOfOrder => {
                "pending, older than the newest applied version (will be applied out of order)"
                    .to_owned()
            }
            MigrationState::ChecksumMismatch {
                image_checksum,
                database_checksum,
            } => format!("CHECKSUM MISMATCH: image {image_checksum}, database {database_checksum}"),
            MigrationState::MissingFromImage => "APPLIED BUT MISSING FROM THIS IMAGE".to_owned(),
            MigrationState::Failed => "FAILED (a failed attempt is recorded)".to_owned(),
        };
        format!("{} {}: {what}", self.version, self.description)
    }
}

/// An index PostgreSQL marks INVALID (`pg_index.indisvalid = false`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, sqlx::FromRow)]
pub(crate) struct InvalidIndex {
    /// Its schema.
    pub schema: String,
    /// Its name.
    pub index: String,
    /// The table it is on.
    pub table: String,
}

impl InvalidIndex {
    /// What to run before the migration that builds it is run again.
    pub fn fix(&self) -> String {
        format!(
            "DROP INDEX CONCURRENTLY IF EXISTS {}.{};",
            quote(&self.schema),
            quote(&self.index)
        )
    }

    /// The line an operator reads.
    pub fn describe(&self) -> String {
        format!(
            "index {}.{} on {} is INVALID (left by an interrupted or failed CREATE INDEX CONCURRENTLY \
             or REINDEX CONCURRENTLY): run `{}`, then rerun the migration that builds it",
            self.schema,
            self.index,
            self.table,
            self.fix()
        )
    }

    /// Whether `sql` names this index as an identifier (so running it again would meet it).
    pub(crate) fn named_in(&self, sql: &str) -> bool {
        let sql = sql.to_lowercase();
        let name = self.index.to_lowercase();
        let is_ident = |c: char| c.is_alphanumeric() || c == '_' || c == '$';
        sql.match_indices(&name).any(|(at, _)| {
            let before = sql[..at].chars().next_back();
            let after = sql[at + name.len()..].chars().next();
            !before.is_some_and(is_ident) && !after.is_some_and(is_ident)
        })
    }
}

/// Quotes an identifier when it needs it.
fn quote(name: &str) -> String {
    if name
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
    {
        name.to_owned()
    } else {
        format!("\"{}\"", name.replace('"', "\"\""))
    }
}

/// A session that holds, or held, an advisory lock: what an operator needs to find it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, sqlx::FromRow)]
pub(crate) struct LockHolder {
    /// Server process id (for `pg_terminate_backend`, if it must come to that).
    pub pid: i32,
    /// The holder's `application_name`.
    pub application_name: Option<String>,
    /// Client address, when over TCP.
    pub client_addr: Option<String>,
    /// When the holder's session started.
    pub backend_start: Option<DateTime<Utc>>,
    /// When its current state began.
    pub state_change: Option<DateTime<Utc>>,
    /// `active`, `idle`, ...
    pub state: Option<String>,
}

impl std::fmt::Display for LockHolder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "pid {} (application {:?}, client {}, connected since {}, {} since {})",
            self.pid,
            self.application_name.as_deref().unwrap_or(""),
            self.client_addr.as_deref().unwrap_or("local socket"),
            self.backend_start
                .map(|t| t.to_rfc3339())
                .unwrap_or_else(|| "?".into()),
            self.state.as_deref().unwrap_or("?"),
            self.state_change
                .map(|t| t.to_rfc3339())
                .unwrap_or_else(|| "?".into()),
        )
    }
}

/// One migration this run applied.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Applied {
    /// Its version.
    pub version: i64,
    /// Its description.
    pub description: String,
    /// How long it took, in milliseconds.
    pub ms: f64,
}

/// A migration that failed: the result summary's `failed`, for a CI annotation on its
/// file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct FailedMigration {
    /// Its version.
    pub version: i64,
    /// Its description.
    pub description: String,
    /// Its file, as the repository holds it.
    pub file: Option<String>,
}

/// A migration a stop cancelled: the result summary's `cancelled`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct CancelledMigration {
    /// Its version.
    pub version: i64,
    /// Its description.
    pub description: String,
    /// Whether it ran outside a transaction (what it finished stays applied).
    pub no_transaction: bool,
}

/// The result event's summary of `migrate`, or its failure's details. A run writes
/// `applied` and `total_ms`, a dry run `would_apply` and `pending`; a failure only
/// what concerns it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct MigrateSummary {
    /// Whether nothing was written.
    #[serde(default)]
    pub dry_run: bool,
    /// What this run applied, in order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub applied: Option<Vec<Applied>>,
    /// The whole run's time in the migrations, in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total_ms: Option<f64>,
    /// What a run would apply (dry run).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub would_apply: Option<Vec<MigrationStatus>>,
    /// How many are pending (dry run).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending: Option<usize>,
    /// The linter's findings on what was (or would be) applied.
    #[serde(default)]
    pub findings: Vec<Finding>,
    /// The migration that failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed: Option<FailedMigration>,
    /// The migration a stop cancelled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cancelled: Option<CancelledMigration>,
}

/// The result event's summary of `migrate-info`. Read leniently: an older companion's
/// summary lacks the fields added since, and its migrations still count.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub(crate) struct MigrateInfoSummary {
    /// Migrations waiting to be applied.
    pub pending: usize,
    /// Migrations where the database disagrees with this image.
    pub drift: usize,
    /// Who holds the migration lock.
    pub lock_holders: Vec<LockHolder>,
    /// Whether `_sqlx_migrations` exists.
    pub history_table_exists: bool,
    /// INVALID indexes left by interrupted concurrent builds.
    pub invalid_indexes: Vec<InvalidIndex>,
    /// Every migration of the image and the database, by version.
    pub migrations: Vec<MigrationStatus>,
    /// The linter's findings on the pending migrations.
    pub findings: Vec<Finding>,
    /// How the live schema differs from what the applied migrations produce; `None`
    /// when it was not compared (nothing applied, a history that disagrees, no expected
    /// schema for these migrations).
    pub schema_differences: Option<Vec<SchemaDifference>>,
}

/// One object of the live schema that differs from what the applied migrations
/// produce.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct SchemaDifference {
    /// The object, as `everruns-admin schema` names it (`index llm_providers_tmp_idx`).
    pub object: String,
    /// What differs (`nullable in the database, not null in the migrations`).
    pub difference: String,
    /// Why it is accepted, from `migrations/schema-drift-allow.toml`; `None`: not accepted.
    pub allowed: Option<String>,
}
