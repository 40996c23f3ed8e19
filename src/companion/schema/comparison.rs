//! What a set of migrations brings to compare a schema with (its expected schema and
//! allow-list), the comparison of a live database, and the `schema` command's listing.

use std::borrow::Cow;

use sqlx::postgres::PgConnection;

use super::drift::{self, AllowList};
use super::expected::{self, ExpectedSchema};
use super::objects;
use crate::contract::migration_report::SchemaDifference;

/// The expected schema and the allow-list that come with a set of migrations: built
/// into the binary, or read beside a `--source` folder's migrations.
#[derive(Debug, Clone, Default)]
pub(crate) struct SchemaFiles {
    /// `expected-schema.json`, if there is one.
    pub expected: Option<Cow<'static, str>>,
    /// `schema-drift-allow.toml`, if there is one.
    pub allow: Option<Cow<'static, str>>,
}

impl SchemaFiles {
    /// The files built into this binary.
    pub(crate) fn embedded() -> Self {
        SchemaFiles {
            expected: Some(Cow::Borrowed(include_str!(
                "../../../migrations/expected-schema.json"
            ))),
            allow: Some(Cow::Borrowed(include_str!(
                "../../../migrations/schema-drift-allow.toml"
            ))),
        }
    }

    /// The files beside the migrations in `dir`; either may be absent.
    pub(crate) fn in_dir(dir: &std::path::Path) -> Self {
        let read = |name: &str| std::fs::read_to_string(dir.join(name)).ok().map(Cow::Owned);
        SchemaFiles {
            expected: read(expected::FILE),
            allow: read(drift::ALLOW_FILE),
        }
    }

    /// The expected schema; `None` without the file.
    pub(crate) fn expected(&self) -> Result<Option<ExpectedSchema>, String> {
        self.expected
            .as_deref()
            .map(ExpectedSchema::parse)
            .transpose()
    }

    fn allow_list(&self) -> Result<AllowList, String> {
        self.allow
            .as_deref()
            .map_or_else(|| Ok(AllowList::default()), AllowList::parse)
    }
}

/// How the live schema compared with what the applied migrations produce.
#[derive(Debug)]
pub(crate) enum Comparison {
    /// Compared: every difference, allowed or not.
    Compared(Vec<SchemaDifference>),
    /// Not compared, and why.
    Skipped(String),
}

/// What went wrong comparing.
#[derive(Debug)]
pub(crate) enum SchemaError {
    /// The expected schema or the allow-list cannot be read.
    Files(String),
    /// The catalogue could not be read.
    Database(sqlx::Error),
}

/// Compares the live schema with the expected one at `applied`: the newest version
/// applied, when every older migration of these files is applied too (`None`
/// otherwise, or when nothing is applied).
pub(crate) async fn compare_live(
    conn: &mut PgConnection,
    files: &SchemaFiles,
    applied: Option<i64>,
) -> Result<Comparison, SchemaError> {
    let Some(version) = applied else {
        return Ok(Comparison::Skipped(
            "no migration applied in order yet: nothing to compare the schema with".into(),
        ));
    };
    let Some(schema) = files.expected().map_err(SchemaError::Files)? else {
        return Ok(Comparison::Skipped(format!(
            "no {} beside these migrations: the live schema is not compared",
            expected::FILE
        )));
    };
    let Some(expected) = schema.at(version) else {
        return Ok(Comparison::Skipped(format!(
            "{} does not record version {version}: regenerate it ({})",
            expected::FILE,
            expected::REGENERATE
        )));
    };
    let allow = files.allow_list().map_err(SchemaError::Files)?;
    let live = objects::read(conn).await.map_err(SchemaError::Database)?;
    Ok(Comparison::Compared(drift::compare(
        &expected, &live, &allow,
    )))
}

/// `schema`: the objects the migrations make at `version` (default: the newest
/// recorded), one per line on stdout.
pub(crate) fn print_expected(files: &SchemaFiles, version: Option<i64>) -> Result<(), String> {
    let schema = files.expected()?.ok_or_else(|| {
        format!(
            "no {} beside these migrations; make it with `{}`",
            expected::FILE,
            expected::REGENERATE
        )
    })?;
    let recorded: Vec<i64> = schema.versions().collect();
    let version = version
        .or_else(|| recorded.last().copied())
        .ok_or_else(|| format!("{} records no version", expected::FILE))?;
    let objects = schema.at(version).ok_or_else(|| {
        format!(
            "{} records no version {version}; it records {recorded:?} (check --version)",
            expected::FILE
        )
    })?;
    for (object, definition) in objects {
        println!("{object}: {definition}");
    }
    Ok(())
}
