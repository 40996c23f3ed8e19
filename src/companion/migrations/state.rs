//! The comparison of an image's catalog with a database's history: the one place
//! that decides what is pending and what is drift.

use serde::Serialize;

use super::history::AppliedMigration;
use super::{Catalog, hex};
use crate::contract::migration_report::{MigrationState, MigrationStatus};

/// The whole comparison.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct SchemaState {
    /// Whether `_sqlx_migrations` exists at all.
    pub history_table_exists: bool,
    /// Every migration of the image and of the database, by version.
    pub migrations: Vec<MigrationStatus>,
}

impl SchemaState {
    /// Compares `catalog` with `history` (`None`: no history table).
    pub(crate) fn compare(catalog: &Catalog, history: Option<&[AppliedMigration]>) -> Self {
        let applied = history.unwrap_or_default();
        let newest_applied = applied.iter().map(|a| a.version).max();
        let mut migrations: Vec<MigrationStatus> = Vec::new();
        for migration in catalog.migrations() {
            let recorded = applied.iter().find(|a| a.version == migration.version);
            let state = match recorded {
                None if newest_applied.is_some_and(|newest| newest > migration.version) => {
                    MigrationState::PendingOutOfOrder
                }
                None => MigrationState::Pending,
                Some(a) if !a.success => MigrationState::Failed,
                Some(a) if a.checksum != migration.checksum.as_ref() => {
                    MigrationState::ChecksumMismatch {
                        image_checksum: hex(&migration.checksum),
                        database_checksum: hex(&a.checksum),
                    }
                }
                Some(a) => MigrationState::Installed {
                    installed_on: a.installed_on,
                    execution_ms: (a.execution_time >= 0)
                        .then(|| a.execution_time as f64 / 1_000_000.0),
                },
            };
            migrations.push(MigrationStatus {
                version: migration.version,
                description: migration.description.to_string(),
                state,
            });
        }
        for a in applied {
            if catalog.get(a.version).is_none() {
                migrations.push(MigrationStatus {
                    version: a.version,
                    description: a.description.clone(),
                    state: if a.success {
                        MigrationState::MissingFromImage
                    } else {
                        MigrationState::Failed
                    },
                });
            }
        }
        migrations.sort_by_key(|m| m.version);
        Self {
            history_table_exists: history.is_some(),
            migrations,
        }
    }

    /// The newest applied version, when what is applied is exactly the image's oldest
    /// migrations, each as the image has it (what that version's expected schema
    /// assumes); `None` when nothing is, or the history is otherwise.
    pub(crate) fn applied_in_order(&self) -> Option<i64> {
        let applied = self
            .migrations
            .iter()
            .take_while(|m| matches!(m.state, MigrationState::Installed { .. }))
            .count();
        if self.migrations[applied..].iter().any(|m| !m.is_pending()) {
            return None;
        }
        applied.checked_sub(1).map(|i| self.migrations[i].version)
    }

    /// Migrations waiting to be applied, oldest first.
    pub fn pending(&self) -> impl Iterator<Item = &MigrationStatus> {
        self.migrations.iter().filter(|m| m.is_pending())
    }

    /// Migrations where the database disagrees with the image.
    pub(crate) fn drift(&self, ignore_missing: bool) -> Vec<&MigrationStatus> {
        self.migrations
            .iter()
            .filter(|m| m.is_drift(ignore_missing))
            .collect()
    }

    /// What to do about `drift`, for the error an operator reads.
    pub(crate) fn drift_advice(drift: &[&MigrationStatus]) -> String {
        let mut advice = Vec::new();
        for status in drift {
            let fix = match status.state {
                MigrationState::ChecksumMismatch { .. } => {
                    "a migration file was edited after it was applied: restore the original file in the image \
                     (never edit applied migrations; add a new one instead)"
                }
                MigrationState::MissingFromImage => {
                    "this image is older than the database: deploy the newer image, or pass --ignore-missing \
                     if running an older image is intended"
                }
                MigrationState::Failed => {
                    "a failed attempt is recorded: repair the schema by hand, then delete that row from \
                     _sqlx_migrations and rerun"
                }
                _ => continue,
            };
            advice.push(format!("{}; {fix}", status.describe()));
        }
        advice.join("\n")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;

    fn applied(version: i64, checksum: &[u8], success: bool) -> AppliedMigration {
        AppliedMigration {
            version,
            description: format!("v{version}"),
            installed_on: Utc::now(),
            success,
            checksum: checksum.to_vec(),
            execution_time: 1_500_000,
        }
    }

    #[test]
    fn classifies_every_state() {
        let catalog = Catalog::embedded();
        let all = catalog.migrations();
        assert!(all.len() >= 4, "the image has several migrations");
        let history = vec![
            applied(all[0].version, &all[0].checksum, true),
            applied(all[2].version, b"not the same", true),
            applied(1, b"x", true),
            applied(2, b"x", false),
        ];
        let state = SchemaState::compare(&catalog, Some(&history));
        let by_version = |v: i64| state.migrations.iter().find(|m| m.version == v).unwrap();
        assert!(matches!(
            by_version(all[0].version).state,
            MigrationState::Installed { execution_ms: Some(ms), .. } if ms == 1.5
        ));
        assert_eq!(
            by_version(all[1].version).state,
            MigrationState::PendingOutOfOrder
        );
        assert!(matches!(
            by_version(all[2].version).state,
            MigrationState::ChecksumMismatch { .. }
        ));
        assert_eq!(by_version(all[3].version).state, MigrationState::Pending);
        assert_eq!(by_version(1).state, MigrationState::MissingFromImage);
        assert_eq!(by_version(2).state, MigrationState::Failed);
        assert_eq!(state.drift(false).len(), 3);
        assert_eq!(state.drift(true).len(), 2);
    }

    #[test]
    fn no_history_means_everything_pending() {
        let catalog = Catalog::embedded();
        let state = SchemaState::compare(&catalog, None);
        assert!(!state.history_table_exists);
        assert_eq!(state.pending().count(), catalog.migrations().len());
        assert!(state.drift(false).is_empty());
    }
}
