//! The columns that hold envelope payloads, declared as data next to the migrations.
//!
//! `migrations/encrypted_columns.toml` lists them; it is compiled in, so the image's
//! list always matches the image's migrations. Re-encryption walks exactly these, and a
//! test fails when a migration adds a `*_encrypted` column that is not declared.

use std::sync::OnceLock;

use anyhow::anyhow;
use serde::{Deserialize, Serialize};

use crate::companion::failure::CompanionError;

const DECLARATIONS: &str = include_str!("../../migrations/encrypted_columns.toml");

/// One encrypted column: the table, its UUID primary key and the BYTEA column.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EncryptedColumn {
    /// The table's name.
    pub table: String,
    /// The table's primary key column (type UUID), walked in order.
    #[serde(rename = "id")]
    pub id_column: String,
    /// The BYTEA column holding payloads (NULL when no secret is set).
    pub column: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Declarations {
    column: Vec<EncryptedColumn>,
}

/// Every declared encrypted column, in file order.
pub fn declared() -> &'static [EncryptedColumn] {
    static DECLARED: OnceLock<Vec<EncryptedColumn>> = OnceLock::new();
    DECLARED
        .get_or_init(|| parse(DECLARATIONS).expect("migrations/encrypted_columns.toml is valid"))
}

/// The tables that have encrypted columns, in file order, without repeats.
pub(crate) fn declared_tables() -> Vec<&'static str> {
    let mut tables: Vec<&'static str> = Vec::new();
    for column in declared() {
        if !tables.contains(&column.table.as_str()) {
            tables.push(&column.table);
        }
    }
    tables
}

/// The columns to work on: all of them, or those of `--table NAME`. An unknown name
/// is a usage error (exit 2) listing the declared tables.
pub(crate) fn select(table: Option<&str>) -> Result<Vec<&'static EncryptedColumn>, CompanionError> {
    let Some(table) = table else {
        return Ok(declared().iter().collect());
    };
    let chosen: Vec<_> = declared().iter().filter(|c| c.table == table).collect();
    if chosen.is_empty() {
        return Err(CompanionError::Argument(anyhow!(
            "--table {table:?} has no declared encrypted column; declared tables: {}",
            declared_tables().join(", ")
        )));
    }
    Ok(chosen)
}

impl EncryptedColumn {
    /// `"table"`, quoted for SQL.
    pub(crate) fn quoted_table(&self) -> String {
        quote(&self.table)
    }

    /// `"id"`, quoted for SQL.
    pub(crate) fn quoted_id(&self) -> String {
        quote(&self.id_column)
    }

    /// `"column"`, quoted for SQL.
    pub(crate) fn quoted_column(&self) -> String {
        quote(&self.column)
    }
}

fn quote(identifier: &str) -> String {
    format!("\"{identifier}\"")
}

/// Parses declarations, accepting only plain lower-case SQL identifiers so that they
/// can be put into statements as they are.
fn parse(text: &str) -> Result<Vec<EncryptedColumn>, String> {
    let declarations: Declarations = toml::from_str(text).map_err(|e| e.to_string())?;
    for column in &declarations.column {
        for name in [&column.table, &column.id_column, &column.column] {
            if !is_plain_identifier(name) {
                return Err(format!("{name:?} is not a plain lower-case SQL identifier"));
            }
        }
    }
    let mut seen = Vec::new();
    for column in &declarations.column {
        let pair = (&column.table, &column.column);
        if seen.contains(&pair) {
            return Err(format!(
                "{}.{} is declared twice",
                column.table, column.column
            ));
        }
        seen.push(pair);
    }
    Ok(declarations.column)
}

fn is_plain_identifier(name: &str) -> bool {
    let mut bytes = name.bytes();
    matches!(bytes.next(), Some(b'a'..=b'z' | b'_'))
        && bytes.all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'_'))
        && name.len() <= 63
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_declarations_parse() {
        let tables = declared_tables();
        assert!(tables.contains(&"llm_providers"));
        assert!(tables.contains(&"mcp_servers"));
    }

    #[test]
    fn unknown_tables_are_usage_errors_listing_the_declared_ones() {
        let err = select(Some("users")).unwrap_err();
        assert_eq!(err.exit_code(), 2);
        assert!(
            err.to_string().contains("llm_providers, mcp_servers"),
            "{err}"
        );
        assert_eq!(select(Some("mcp_servers")).unwrap().len(), 1);
    }

    #[test]
    fn identifiers_that_need_quoting_are_refused() {
        let text = "[[column]]\ntable = \"a; drop\"\nid = \"id\"\ncolumn = \"c\"\n";
        assert!(parse(text).is_err());
    }
}
