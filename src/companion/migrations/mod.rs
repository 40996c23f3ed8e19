//! Database migrations, compatible with sqlx-cli's `_sqlx_migrations` table.
//!
//! The catalog is the `migrations/` folder, embedded at build time. [`history`] reads
//! what the database has recorded, [`state`] compares the two (the one place that
//! decides what is pending and what is drift), and [`migrate`] and [`info`] are the
//! companion's two commands over them.

pub mod history;
pub mod info;
pub(crate) mod leftovers;
pub mod migrate;
pub mod state;

use std::path::Path;
use std::time::Duration;

use anyhow::anyhow;
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::postgres::PgConnection;

use crate::companion::cancel::Stopped;
use crate::companion::database::DatabaseError;
use crate::companion::lint::Unparsable;
use crate::contract::findings::Finding;
use crate::contract::migration_report::{FailedMigration, InvalidIndex};

/// What a migration run found or met, besides the database failing under it.
#[derive(Debug)]
pub(crate) enum MigrateError {
    /// The migrations given with `--source` cannot be read, or there are none.
    Source(anyhow::Error),
    /// `--target-version` names no migration of this image.
    UnknownTarget(anyhow::Error),
    /// The database's history disagrees with this image.
    Drift(anyhow::Error),
    /// Pending migrations have blocking lint findings and nothing allows them.
    Unsafe {
        error: anyhow::Error,
        findings: Vec<Finding>,
    },
    /// A pending migration would meet an INVALID index an earlier run of it left.
    Leftover {
        error: anyhow::Error,
        invalid: Vec<InvalidIndex>,
    },
    /// A migration failed and was rolled back.
    Failed {
        error: anyhow::Error,
        failed: FailedMigration,
    },
    /// Reaching or reading the database failed.
    Database(DatabaseError),
    /// A pending migration does not parse, so it cannot be judged.
    Unparsable(Unparsable),
    /// Stopped by a signal or the deadline.
    Stopped(Stopped),
}

impl std::fmt::Display for MigrateError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Source(error)
            | Self::UnknownTarget(error)
            | Self::Drift(error)
            | Self::Unsafe { error, .. }
            | Self::Leftover { error, .. }
            | Self::Failed { error, .. } => write!(f, "{error:#}"),
            Self::Database(error) => error.fmt(f),
            Self::Unparsable(error) => error.fmt(f),
            Self::Stopped(stopped) => stopped.fmt(f),
        }
    }
}

impl From<DatabaseError> for MigrateError {
    fn from(error: DatabaseError) -> Self {
        Self::Database(error)
    }
}

impl From<sqlx::Error> for MigrateError {
    fn from(error: sqlx::Error) -> Self {
        Self::Database(error.into())
    }
}

impl From<Unparsable> for MigrateError {
    fn from(error: Unparsable) -> Self {
        Self::Unparsable(error)
    }
}

impl From<Stopped> for MigrateError {
    fn from(stopped: Stopped) -> Self {
        Self::Stopped(stopped)
    }
}

/// The migrations embedded in this binary.
pub(crate) static EMBEDDED: Migrator = sqlx::migrate!("./migrations");

/// The migrations an image carries, in version order, `up` migrations only, each with
/// the file it came from.
#[derive(Debug, Clone)]
pub struct Catalog {
    migrations: Vec<Migration>,
    files: Vec<String>,
}

impl Catalog {
    /// The migrations compiled into this binary, named as the repository holds them.
    pub fn embedded() -> Self {
        Self::from_migrations(EMBEDDED.iter().cloned().map(|m| {
            let file = format!(
                "migrations/{}_{}.sql",
                m.version,
                m.description.replace(' ', "_")
            );
            (m, file)
        }))
    }

    /// The migrations in `dir`, read the way sqlx reads them (for `--source`). A folder
    /// without any is refused: a lint or a migrate of nothing would pass by mistake.
    pub(crate) fn from_dir(dir: &Path) -> Result<Self, MigrateError> {
        let resolved = sqlx::migrate::resolve_blocking(dir).map_err(|e| {
            MigrateError::Source(anyhow!(
                "cannot read migrations from {}: {e}; pass a folder of <VERSION>_<DESCRIPTION>.sql files",
                dir.display()
            ))
        })?;
        let catalog = Self::from_migrations(
            resolved
                .into_iter()
                .map(|(m, path)| (m, path.display().to_string())),
        );
        if catalog.migrations.is_empty() {
            return Err(MigrateError::Source(anyhow!(
                "{} holds no migrations (<VERSION>_<DESCRIPTION>.sql files); check --source",
                dir.display()
            )));
        }
        Ok(catalog)
    }

    fn from_migrations(migrations: impl Iterator<Item = (Migration, String)>) -> Self {
        let mut entries: Vec<(Migration, String)> = migrations
            .filter(|(m, _)| !matches!(m.migration_type, MigrationType::ReversibleDown))
            .collect();
        entries.sort_by_key(|(m, _)| m.version);
        let (migrations, files) = entries.into_iter().unzip();
        Self { migrations, files }
    }

    /// All migrations, oldest first.
    pub fn migrations(&self) -> &[Migration] {
        &self.migrations
    }

    /// The migration with `version`, if this image has it.
    pub fn get(&self, version: i64) -> Option<&Migration> {
        self.index(version).map(|i| &self.migrations[i])
    }

    /// The file of the migration with `version`.
    pub fn file(&self, version: i64) -> Option<&str> {
        self.index(version).map(|i| self.files[i].as_str())
    }

    /// The migrations from `since` (exclusive) on, as the linter reads them.
    pub fn sources(&self, since: Option<i64>) -> Vec<crate::companion::lint::MigrationSource<'_>> {
        self.migrations
            .iter()
            .zip(&self.files)
            .filter(|(m, _)| since.is_none_or(|since| m.version > since))
            .map(|(m, file)| crate::companion::lint::MigrationSource {
                version: m.version,
                description: &m.description,
                sql: &m.sql,
                no_transaction: m.no_tx,
                file,
            })
            .collect()
    }

    fn index(&self, version: i64) -> Option<usize> {
        self.migrations
            .binary_search_by_key(&version, |m| m.version)
            .ok()
    }
}

/// Hex of a checksum, as operators compare them.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The key of sqlx's migration advisory lock for database `name`: sqlx's own
/// migrator takes the same one, so an application migrating at start-up and this
/// tool exclude each other.
pub fn lock_key(database_name: &str) -> i64 {
    0x3d32ad9e * i64::from(crc32fast::hash(database_name.as_bytes()))
}

/// The migration lock key of the database `conn` is connected to.
pub(crate) async fn lock_key_of(conn: &mut PgConnection) -> Result<i64, DatabaseError> {
    let name: String = sqlx::query_scalar("SELECT current_database()")
        .fetch_one(conn)
        .await
        .map_err(DatabaseError::during("reading the current database name"))?;
    Ok(lock_key(&name))
}

/// Session limits for DDL, so a migration does not queue behind production traffic
/// for ever (`lock_timeout`) or run unbounded (`statement_timeout`). They are sent as
/// connection startup options, which makes them the session's defaults: a `RESET` or
/// `SET ... TO DEFAULT` inside a migration comes back to them, not to the server's.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct SessionLimits {
    /// PostgreSQL `lock_timeout` for the migration session; `None` keeps the server's.
    pub lock_timeout: Option<Duration>,
    /// PostgreSQL `statement_timeout`; `None` keeps the server's.
    pub statement_timeout: Option<Duration>,
}

impl SessionLimits {
    /// The limits as startup options (`lock_timeout=5000ms`).
    pub(crate) fn startup_options(&self) -> Vec<(&'static str, String)> {
        [
            ("lock_timeout", self.lock_timeout),
            ("statement_timeout", self.statement_timeout),
        ]
        .into_iter()
        .filter_map(|(name, value)| Some((name, format!("{}ms", value?.as_millis()))))
        .collect()
    }
}

/// Lints the migrations of `catalog` with `versions` against the live sizes of the
/// tables `conn` sees, and logs the findings.
pub(crate) async fn lint_pending(
    conn: &mut PgConnection,
    catalog: &Catalog,
    versions: &[i64],
    thresholds: crate::companion::lint::sizes::Thresholds,
) -> Result<Vec<Finding>, MigrateError> {
    use crate::companion::lint::sizes::TableSizes;
    use crate::companion::lint::{self, Judged, MigrationSource};
    let sizes = TableSizes::read(conn).await.map_err(DatabaseError::during(
        "reading the tables' sizes from the catalogue",
    ))?;
    let sources: Vec<MigrationSource<'_>> = catalog
        .sources(None)
        .into_iter()
        .filter(|m| versions.contains(&m.version))
        .collect();
    let findings = lint::lint(&sources, &Judged::Live(&sizes, thresholds))?;
    lint::log(&findings);
    Ok(findings)
}
