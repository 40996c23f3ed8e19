//! The migrations an image carries, read the way sqlx reads them.

use std::path::Path;

use anyhow::anyhow;
use sqlx::migrate::{Migration, MigrationType, Migrator};

use super::migrate_error::MigrateError;
use crate::companion::schema::SchemaFiles;

/// The migrations embedded in this binary.
pub(crate) static EMBEDDED: Migrator = sqlx::migrate!("./migrations");

/// The migrations an image carries, in version order, `up` migrations only, each with
/// the file it came from, and the schema they are expected to produce.
#[derive(Debug, Clone)]
pub struct Catalog {
    migrations: Vec<Migration>,
    files: Vec<String>,
    schema: SchemaFiles,
}

impl Catalog {
    /// The migrations compiled into this binary, named as the repository holds them.
    pub fn embedded() -> Self {
        let migrations = EMBEDDED.iter().cloned().map(|m| {
            let file = format!(
                "migrations/{}_{}.sql",
                m.version,
                m.description.replace(' ', "_")
            );
            (m, file)
        });
        Self::from_migrations(migrations, SchemaFiles::embedded())
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
            SchemaFiles::in_dir(dir),
        );
        if catalog.migrations.is_empty() {
            return Err(MigrateError::Source(anyhow!(
                "{} holds no migrations (<VERSION>_<DESCRIPTION>.sql files); check --source",
                dir.display()
            )));
        }
        Ok(catalog)
    }

    fn from_migrations(
        migrations: impl Iterator<Item = (Migration, String)>,
        schema: SchemaFiles,
    ) -> Self {
        let mut entries: Vec<(Migration, String)> = migrations
            .filter(|(m, _)| !matches!(m.migration_type, MigrationType::ReversibleDown))
            .collect();
        entries.sort_by_key(|(m, _)| m.version);
        let (migrations, files) = entries.into_iter().unzip();
        Self {
            migrations,
            files,
            schema,
        }
    }

    /// The expected schema and allow-list that come with these migrations.
    pub(crate) fn schema(&self) -> &SchemaFiles {
        &self.schema
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
