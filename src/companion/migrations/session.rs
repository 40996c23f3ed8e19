//! The migration session: sqlx's lock key, the DDL limits sent at connect, and the
//! live lint of what is about to be applied.

use std::time::Duration;

use sqlx::postgres::PgConnection;

use super::catalog::Catalog;
use super::migrate_error::MigrateError;
use crate::companion::database::DatabaseError;
use crate::contract::findings::Finding;

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
