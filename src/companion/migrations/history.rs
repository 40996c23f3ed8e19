//! What the database has recorded in `_sqlx_migrations`, read without creating anything.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::postgres::PgConnection;

/// One row of `_sqlx_migrations`, as sqlx-cli or this tool wrote it.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct AppliedMigration {
    /// The version from the file name.
    pub version: i64,
    /// The description recorded when it was applied.
    pub description: String,
    /// When it was applied.
    pub installed_on: DateTime<Utc>,
    /// `false` when a tool recorded a failed attempt.
    pub success: bool,
    /// SHA-384 of the file's bytes at the time.
    #[serde(skip)]
    pub checksum: Vec<u8>,
    /// Nanoseconds, or -1 when the process died before recording it.
    pub execution_time: i64,
}

/// Reads the history, or `None` when the database has no `_sqlx_migrations` table
/// (a fresh database: reading must not create it).
pub async fn read(conn: &mut PgConnection) -> Result<Option<Vec<AppliedMigration>>, sqlx::Error> {
    let exists: bool = sqlx::query_scalar("SELECT to_regclass('_sqlx_migrations') IS NOT NULL")
        .fetch_one(&mut *conn)
        .await?;
    if !exists {
        return Ok(None);
    }
    let rows = sqlx::query_as::<_, AppliedMigration>(
        "SELECT version, description, installed_on, success, checksum, execution_time \
         FROM _sqlx_migrations ORDER BY version",
    )
    .fetch_all(conn)
    .await?;
    Ok(Some(rows))
}
