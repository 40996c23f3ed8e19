//! `migrate`: applies pending migrations under sqlx's migration lock.

use std::time::{Duration, Instant};

use anyhow::anyhow;
use sqlx::migrate::Migrate;
use sqlx::postgres::PgConnection;

use super::state::SchemaState;
use super::{Catalog, MigrateError, SessionLimits, history, leftovers, lint_pending, lock_key_of};
use crate::companion::cancel::{self, Stopped};
use crate::companion::console::Progress;
use crate::companion::database::{self, DatabaseError, DatabaseUrl};
use crate::companion::lint;
use crate::companion::lint::sizes::Thresholds;
use crate::contract::exit::companion;
use crate::contract::findings::{Finding, Severity};
use crate::contract::migration_report::{
    Applied, CancelledMigration, FailedMigration, MigrateSummary, MigrationState, MigrationStatus,
};
use crate::contract::result::Summary;

/// Options of `migrate`.
#[derive(Debug, Clone)]
pub(crate) struct MigrateOptions {
    /// Show what would be applied; write nothing, take no lock.
    pub dry_run: bool,
    /// Apply pending migrations up to and including this version only.
    pub target_version: Option<i64>,
    /// Proceed although the database has versions this image does not know.
    pub ignore_missing: bool,
    /// How long to wait for the migration lock.
    pub lock_wait: Duration,
    /// `lock_timeout` / `statement_timeout` for the migration session.
    pub limits: SessionLimits,
    /// How often a migration whose lock wait timed out is tried again.
    pub lock_retries: u32,
    /// When a table counts as large for the linter.
    pub thresholds: Thresholds,
    /// Apply although the linter has blocking findings (`--allow-unsafe`).
    pub allow_unsafe: bool,
    /// How long to retry the first connection.
    pub connect_timeout: Duration,
}

/// Applies the pending migrations of `catalog` in version order, each in its own
/// transaction unless its file starts with `-- no-transaction`, recording each in
/// `_sqlx_migrations` the way sqlx does. Holds sqlx's migration lock throughout and
/// releases it on every path. Returns the exit code and the result summary.
pub(crate) async fn run(
    catalog: &Catalog,
    url: &DatabaseUrl,
    options: &MigrateOptions,
) -> Result<(u8, Summary), MigrateError> {
    if let Some(target) = options.target_version
        && catalog.get(target).is_none()
    {
        let known: Vec<String> = catalog
            .migrations()
            .iter()
            .map(|m| m.version.to_string())
            .collect();
        return Err(MigrateError::UnknownTarget(anyhow!(
            "--target-version {target} is not a migration of this image; its versions are {}",
            known.join(", ")
        )));
    }
    let mut conn = database::connect_with(
        url,
        options.connect_timeout,
        &options.limits.startup_options(),
    )
    .await?;
    if options.dry_run {
        let result = async {
            let (state, to_apply) = plan(&mut conn, catalog, url, options).await?;
            let findings = gate(&mut conn, catalog, &to_apply, options).await;
            Ok::<_, MigrateError>((state, to_apply, findings))
        }
        .await;
        database::close_quietly(conn).await;
        let (state, to_apply, findings) = result?;
        let findings = findings?;
        if to_apply.is_empty() {
            tracing::info!("dry run: nothing to apply");
        }
        for status in &to_apply {
            tracing::info!(
                version = status.version,
                "dry run: would apply {} {}",
                status.version,
                status.description
            );
        }
        let summary = MigrateSummary {
            dry_run: true,
            pending: Some(state.pending().count()),
            would_apply: Some(to_apply),
            findings,
            ..Default::default()
        };
        return Ok((companion::SUCCESS, Summary::Migrate(summary)));
    }

    let key = lock_key_of(&mut conn).await?;
    database::acquire_lock(&mut conn, key, options.lock_wait, "migration").await?;
    let result = apply_locked(&mut conn, catalog, url, options).await;
    // A session-level lock: if the connection broke, the server has already let go.
    if let Err(e) = database::release_lock(&mut conn, key).await {
        tracing::debug!(error = %url.scrub(&e.to_string()), "could not release the migration lock explicitly");
    }
    database::close_quietly(conn).await;
    let (applied, findings) = result?;
    let total_ms = (applied.iter().map(|a| a.ms).sum::<f64>() * 10.0).round() / 10.0;
    Ok((
        companion::SUCCESS,
        Summary::Migrate(MigrateSummary {
            applied: Some(applied),
            total_ms: Some(total_ms),
            findings,
            ..Default::default()
        }),
    ))
}

/// Lints what is about to be applied. Blocking findings refuse the migration (exit 6,
/// nothing applied) unless `--allow-unsafe`; in a dry run they are reported the same.
async fn gate(
    conn: &mut PgConnection,
    catalog: &Catalog,
    to_apply: &[MigrationStatus],
    options: &MigrateOptions,
) -> Result<Vec<Finding>, MigrateError> {
    let versions: Vec<i64> = to_apply.iter().map(|m| m.version).collect();
    let findings = lint_pending(conn, catalog, &versions, options.thresholds).await?;
    let blocking = findings
        .iter()
        .filter(|f| f.severity == Severity::Blocking)
        .count();
    if blocking > 0 && !options.allow_unsafe {
        return Err(MigrateError::Unsafe {
            error: anyhow!(
                "refusing to migrate{}: {blocking} blocking finding(s) in the pending migrations (listed above); fix them, allow one in its file with `-- everruns-admin:allow RULE-ID reason` on the line before the statement, or pass --allow-unsafe",
                if options.dry_run { " (dry run)" } else { "" }
            ),
            findings,
        });
    }
    Ok(findings)
}

/// Reads the history and decides what to apply; drift is exit 4.
async fn plan(
    conn: &mut PgConnection,
    catalog: &Catalog,
    url: &DatabaseUrl,
    options: &MigrateOptions,
) -> Result<(SchemaState, Vec<MigrationStatus>), MigrateError> {
    let history = history::read(conn).await.map_err(|e| {
        DatabaseError::Statement(anyhow!(
            "reading _sqlx_migrations: {}",
            url.scrub(&e.to_string())
        ))
    })?;
    let state = SchemaState::compare(catalog, history.as_deref());
    let drift = state.drift(options.ignore_missing);
    if !drift.is_empty() {
        return Err(MigrateError::Drift(anyhow!(
            "refusing to migrate: the database disagrees with this image:\n{}",
            SchemaState::drift_advice(&drift)
        )));
    }
    let to_apply: Vec<MigrationStatus> = state
        .pending()
        .filter(|m| options.target_version.is_none_or(|t| m.version <= t))
        .cloned()
        .collect();
    refuse_leftovers(conn, catalog, &to_apply, url).await?;
    for status in to_apply
        .iter()
        .filter(|m| !matches!(m.state, MigrationState::Pending))
    {
        tracing::warn!(version = status.version, "{}", status.describe());
    }
    Ok((state, to_apply))
}

/// A pending migration that names an INVALID index (one its own interrupted run left)
/// is not run again until the index is dropped: `IF NOT EXISTS` would keep it invalid.
async fn refuse_leftovers(
    conn: &mut PgConnection,
    catalog: &Catalog,
    to_apply: &[MigrationStatus],
    url: &DatabaseUrl,
) -> Result<(), MigrateError> {
    let invalid = leftovers::invalid_indexes(conn).await.map_err(|e| {
        DatabaseError::Statement(anyhow!(
            "looking for INVALID indexes: {}",
            url.scrub(&e.to_string())
        ))
    })?;
    let met: Vec<String> = to_apply
        .iter()
        .filter_map(|status| catalog.get(status.version))
        .flat_map(|migration| {
            invalid
                .iter()
                .filter(|index| index.named_in(&migration.sql))
                .map(move |index| {
                    format!(
                        "migration {} {}: {}",
                        migration.version,
                        migration.description,
                        index.describe()
                    )
                })
        })
        .collect();
    if met.is_empty() {
        return Ok(());
    }
    Err(MigrateError::Leftover {
        error: anyhow!(
            "refusing to migrate: a pending migration would meet what an earlier run of it left behind:\n{}",
            met.join("\n")
        ),
        invalid,
    })
}

async fn apply_locked(
    conn: &mut PgConnection,
    catalog: &Catalog,
    url: &DatabaseUrl,
    options: &MigrateOptions,
) -> Result<(Vec<Applied>, Vec<Finding>), MigrateError> {
    // Planned under the lock: another migrator may have just finished.
    let (_, to_apply) = plan(conn, catalog, url, options).await?;
    if to_apply.is_empty() {
        tracing::info!("nothing to apply: the database is at this image");
        return Ok((Vec::new(), Vec::new()));
    }
    let findings = gate(conn, catalog, &to_apply, options).await?;
    conn.ensure_migrations_table().await.map_err(|e| {
        DatabaseError::Statement(anyhow!(
            "creating _sqlx_migrations: {}",
            url.scrub(&e.to_string())
        ))
    })?;
    let started = Instant::now();
    let mut progress = Progress::start_every_step("migrate", Some(to_apply.len() as u64));
    let mut applied = Vec::new();
    for status in &to_apply {
        let migration = catalog
            .get(status.version)
            .expect("planned from this catalog");
        if let Some(cause) = cancel::cause() {
            return Err(Stopped::new(
                cause,
                anyhow!(
                    "{}: {} before migration {} {}, which was not started; it and the ones after it are still pending",
                    cause.describe(),
                    applied_so_far(&applied),
                    migration.version,
                    migration.description
                ),
            )
            .into());
        }
        tracing::info!(
            version = migration.version,
            no_transaction = migration.no_tx,
            "applying {} {}",
            migration.version,
            migration.description
        );
        let elapsed = apply_with_lock_retries(conn, migration, options).await.map_err(|e| -> MigrateError {
            if let Some(cause) = cancel::cause() {
                return Stopped::new(cause, anyhow!(
                    "{}: {}; {}",
                    cause.describe(),
                    if migration.no_tx {
                        format!("no-transaction migration {} {} was cancelled: the statements it had finished stay applied, the one in flight was rolled back, and it is still pending; check what it left (migrate-info names an INVALID index) before rerunning", migration.version, migration.description)
                    } else {
                        format!("migration {} {} was cancelled and rolled back; nothing of it was applied and it is still pending", migration.version, migration.description)
                    },
                    applied_so_far(&applied)
                ))
                .cancelling(CancelledMigration {
                    version: migration.version,
                    description: migration.description.to_string(),
                    no_transaction: migration.no_tx,
                })
                .into();
            }
            MigrateError::Failed {
                error: anyhow!(
                    "migration {} {} failed and was rolled back{}: {}; it is still pending. Fix it in a new image and rerun",
                    migration.version,
                    migration.description,
                    if migration.no_tx { " as far as a no-transaction migration can be" } else { "" },
                    url.scrub(&e.to_string())
                ),
                failed: FailedMigration {
                    version: migration.version,
                    description: migration.description.to_string(),
                    file: catalog.file(migration.version).map(str::to_string),
                },
            }
        })?;
        // Tenths of a millisecond: finer is noise.
        let ms = (elapsed.as_secs_f64() * 10_000.0).round() / 10.0;
        tracing::info!(
            version = migration.version,
            ms,
            "applied {} {}",
            migration.version,
            migration.description
        );
        applied.push(Applied {
            version: migration.version,
            description: migration.description.to_string(),
            ms,
        });
        progress.advance(1);
    }
    progress.finish();
    tracing::info!(
        "applied {} migration(s) in {:.1} ms",
        applied.len(),
        started.elapsed().as_secs_f64() * 1000.0
    );
    Ok((applied, findings))
}

/// What this run applied before it was stopped, for the stop's message.
fn applied_so_far(applied: &[Applied]) -> String {
    if applied.is_empty() {
        "this run applied nothing".to_owned()
    } else {
        let versions: Vec<String> = applied.iter().map(|a| a.version.to_string()).collect();
        format!("this run applied {} before it", versions.join(", "))
    }
}

/// Applies one migration; when its lock wait times out (`lock_timeout`, SQLSTATE
/// 55P03) it was rolled back whole, so it is tried again after a pause that doubles,
/// up to `lock_retries` times, naming who held the locks each time. A no-transaction
/// migration is never retried: part of it may have been applied.
async fn apply_with_lock_retries(
    conn: &mut PgConnection,
    migration: &sqlx::migrate::Migration,
    options: &MigrateOptions,
) -> Result<Duration, sqlx::migrate::MigrateError> {
    let mut pause = Duration::from_secs(1);
    let mut attempt = 0;
    loop {
        let result = conn.apply(migration).await;
        let lock_wait_timed_out = matches!(
            &result,
            Err(sqlx::migrate::MigrateError::Execute(sqlx::Error::Database(db))
                | sqlx::migrate::MigrateError::ExecuteMigration(sqlx::Error::Database(db), _))
                if db.code().as_deref() == Some("55P03")
        );
        match result {
            Err(_) if lock_wait_timed_out && !migration.no_tx && attempt < options.lock_retries => {
                attempt += 1;
                let tables = lint::touched_tables(&migration.sql);
                let holders = database::table_lock_holders(conn, &tables)
                    .await
                    .unwrap_or_default();
                tracing::warn!(
                    version = migration.version,
                    attempt,
                    "migration {} waited longer than lock_timeout{} for a lock on {}, held by {}; it was rolled back, trying again in {}s ({attempt} of {})",
                    migration.version,
                    options
                        .limits
                        .lock_timeout
                        .map(|t| format!(" ({}ms)", t.as_millis()))
                        .unwrap_or_default(),
                    if tables.is_empty() {
                        "its tables".to_string()
                    } else {
                        tables.join(", ")
                    },
                    database::describe_holders(&holders),
                    pause.as_secs(),
                    options.lock_retries
                );
                tokio::select! {
                    () = tokio::time::sleep(pause) => {}
                    _ = cancel::requested() => return result,
                }
                pause = (pause * 2).min(Duration::from_secs(30));
            }
            other => return other,
        }
    }
}
