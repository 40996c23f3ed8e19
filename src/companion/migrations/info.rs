//! `migrate-info`: where the database stands against this image, strictly read-only.

use std::time::Duration;

use super::{
    Catalog, MigrateError, history, leftovers, lint_pending, lock_key_of, state::SchemaState,
};
use crate::companion::console;
use crate::companion::database::{self, DatabaseError, DatabaseUrl};
use crate::companion::schema::{self, Comparison, SchemaError};
use crate::contract::exit::companion;
use crate::contract::findings::Severity;
use crate::contract::migration_report::MigrateInfoSummary;
use crate::contract::result::Summary;

/// Options of `migrate-info`.
#[derive(Debug, Clone)]
pub(crate) struct InfoOptions {
    /// Exit 3 when migrations are pending (exit 4 on drift applies either way).
    pub check: bool,
    /// Accept versions applied in the database but unknown to this image.
    pub ignore_missing: bool,
    /// When a table counts as large for the linter.
    pub thresholds: crate::companion::lint::sizes::Thresholds,
    /// How long to retry the first connection.
    pub connect_timeout: Duration,
}

/// Lists every migration with its state, whether the migration lock is held, and
/// INVALID indexes, and how the live schema differs from what the applied migrations
/// make. Runs in a read-only session and creates nothing. Returns the exit code (0;
/// with `--check` 7 for an INVALID index or a schema difference not allowed, 6 unsafe,
/// 3 pending; 4 on drift) and the result summary.
pub(crate) async fn run(
    catalog: &Catalog,
    url: &DatabaseUrl,
    options: &InfoOptions,
) -> Result<(u8, Summary), MigrateError> {
    let mut conn = database::connect(url, options.connect_timeout).await?;
    sqlx::query("SET default_transaction_read_only = on")
        .execute(&mut conn)
        .await?;
    let history = history::read(&mut conn).await.map_err(|e| {
        DatabaseError::Statement(anyhow::anyhow!(
            "reading _sqlx_migrations: {}",
            url.scrub(&e.to_string())
        ))
    })?;
    let key = lock_key_of(&mut conn).await?;
    let holders = database::lock_holders(&mut conn, key).await?;
    let invalid = leftovers::invalid_indexes(&mut conn).await?;
    let state = SchemaState::compare(catalog, history.as_deref());
    let comparison = compare_schema(&mut conn, catalog, &state, url).await?;
    let pending_versions: Vec<i64> = state.pending().map(|m| m.version).collect();
    let findings = lint_pending(&mut conn, catalog, &pending_versions, options.thresholds).await;
    database::close_quietly(conn).await;
    let findings = findings?;
    let blocking = findings
        .iter()
        .filter(|f| f.severity == Severity::Blocking)
        .count();

    if !state.history_table_exists {
        tracing::info!("no _sqlx_migrations table: nothing has been applied to this database yet");
    }
    for status in &state.migrations {
        if status.is_drift(options.ignore_missing) {
            tracing::error!(version = status.version, "{}", status.describe());
        } else if status.is_pending() {
            tracing::warn!(version = status.version, "{}", status.describe());
        } else {
            tracing::info!(version = status.version, "{}", status.describe());
        }
    }
    match holders.as_slice() {
        [] => tracing::info!("the migration lock is free"),
        holders => {
            for holder in holders {
                tracing::warn!("the migration lock is held by {holder}");
            }
        }
    }

    for index in &invalid {
        tracing::error!(index = %index.index, table = %index.table, "{}", index.describe());
    }
    let differences = match comparison {
        Comparison::Compared(differences) => Some(differences),
        Comparison::Skipped(why) => {
            tracing::info!("{why}");
            None
        }
    };
    let unaccepted = differences.iter().flatten().filter(|d| d.allowed.is_none());
    let unaccepted = unaccepted.count();
    for difference in differences.iter().flatten() {
        // An INVALID index was told above, with its advice.
        if invalid
            .iter()
            .any(|i| difference.object == format!("index {}", i.index))
        {
            continue;
        }
        match &difference.allowed {
            Some(reason) => tracing::info!(
                "schema: {}: {} (allowed: {reason})",
                difference.object,
                difference.difference
            ),
            None => tracing::error!("schema: {}: {}", difference.object, difference.difference),
        }
    }
    if differences.as_ref().is_some_and(|d| d.is_empty()) {
        tracing::info!("the live schema is what the applied migrations make");
    }

    let drift = state.drift(options.ignore_missing);
    let pending = state.pending().count();
    let code = if !drift.is_empty() {
        tracing::error!(
            "the database disagrees with this image:\n{}",
            SchemaState::drift_advice(&drift)
        );
        companion::DRIFT
    } else if options.check && (!invalid.is_empty() || unaccepted > 0) {
        tracing::error!(
            "the live schema is not what the applied migrations made ({} INVALID index(es), \
             {unaccepted} difference(s), listed above): a person must look. Repair the \
             database, or accept a difference in migrations/schema-drift-allow.toml with the \
             reason; `everruns-admin schema --diff` lists them again",
            invalid.len()
        );
        companion::SCHEMA_DIFFERS
    } else if options.check && blocking > 0 {
        tracing::error!(
            "{blocking} blocking finding(s) in the pending migrations (listed above): fix them, or allow one in its file with `-- everruns-admin:allow RULE-ID reason`"
        );
        companion::UNSAFE
    } else if options.check && pending > 0 {
        tracing::warn!(
            "{pending} migration(s) pending: run `{}`",
            console::command_line("migrate")
        );
        companion::PENDING
    } else {
        if pending == 0 {
            tracing::info!("the database is exactly at this image");
        }
        companion::SUCCESS
    };
    let summary = MigrateInfoSummary {
        pending,
        drift: drift.len(),
        lock_holders: holders,
        history_table_exists: state.history_table_exists,
        invalid_indexes: invalid,
        migrations: state.migrations,
        findings,
        schema_differences: differences,
    };
    Ok((code, Summary::MigrateInfo(summary)))
}

/// The live schema against what `state`'s applied migrations make.
async fn compare_schema(
    conn: &mut sqlx::PgConnection,
    catalog: &Catalog,
    state: &SchemaState,
    url: &DatabaseUrl,
) -> Result<Comparison, MigrateError> {
    schema::compare_live(conn, catalog.schema(), state.applied_in_order())
        .await
        .map_err(|e| match e {
            SchemaError::Files(message) => MigrateError::Source(anyhow::anyhow!(message)),
            SchemaError::Database(e) => {
                MigrateError::Database(DatabaseError::Statement(anyhow::anyhow!(
                    "reading the schema catalogue: {}",
                    url.scrub(&e.to_string())
                )))
            }
        })
}

/// `schema --diff`: how the live schema differs from what the applied migrations make,
/// one object per line on stdout, read-only. Exit 7 when a difference is not allowed.
pub(crate) async fn schema_diff(
    catalog: &Catalog,
    url: &DatabaseUrl,
    connect_timeout: Duration,
) -> Result<(u8, Summary), MigrateError> {
    let mut conn = database::connect(url, connect_timeout).await?;
    sqlx::query("SET default_transaction_read_only = on")
        .execute(&mut conn)
        .await?;
    let history = history::read(&mut conn).await?;
    let state = SchemaState::compare(catalog, history.as_deref());
    let comparison = compare_schema(&mut conn, catalog, &state, url).await;
    database::close_quietly(conn).await;
    let differences = match comparison? {
        Comparison::Compared(differences) => differences,
        Comparison::Skipped(why) => {
            tracing::warn!("{why}");
            return Ok((companion::SUCCESS, Summary::Bare));
        }
    };
    for d in &differences {
        match &d.allowed {
            Some(reason) => println!("{}: {} (allowed: {reason})", d.object, d.difference),
            None => println!("{}: {}", d.object, d.difference),
        }
    }
    let code = if differences.iter().any(|d| d.allowed.is_none()) {
        companion::SCHEMA_DIFFERS
    } else {
        companion::SUCCESS
    };
    Ok((code, Summary::Bare))
}
