//! The application's schema as PostgreSQL's catalogue describes it: one entry per
//! object (`column llm_providers.name`), its definition normalised into facets
//! separated by `; ` (`text; not null; no default`), so that two databases made by the
//! same migrations read the same, and a difference can say which facet differs.
//!
//! Objects of the schemas on the search path, except the migration history table and
//! what extensions own; NOT NULL constraints are read as the columns' nullability (they
//! are catalogue rows only from PostgreSQL 18 on).

use std::collections::BTreeMap;

use sqlx::postgres::PgConnection;

/// Objects by key, each with its normalised definition.
pub type Objects = BTreeMap<String, String>;

/// `schema.` before a name outside `public`, so that the usual single-schema
/// application reads as its migrations name things.
const QUALIFIED: &str = "CASE WHEN n.nspname = 'public' THEN '' ELSE n.nspname || '.' END";

/// Not owned by an extension (`pg_depend` deptype `e`).
fn not_from_extension(catalog: &str, oid: &str) -> String {
    format!(
        "NOT EXISTS (SELECT 1 FROM pg_depend e WHERE e.classid = '{catalog}'::regclass \
         AND e.objid = {oid} AND e.deptype = 'e')"
    )
}

fn query() -> String {
    let app = "n.nspname = ANY(current_schemas(false))";
    let tables = format!(
        "c.relkind IN ('r', 'p') AND c.relname <> '_sqlx_migrations' AND {}",
        not_from_extension("pg_class", "c.oid")
    );
    let one_line = |expr: &str| format!("btrim(regexp_replace({expr}, '\\s+', ' ', 'g'))");
    [
        format!(
            "SELECT 'table ' || {QUALIFIED} || c.relname, \
             CASE c.relkind WHEN 'p' THEN 'partitioned' ELSE 'plain' END \
             FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE {app} AND {tables}"
        ),
        format!(
            "SELECT 'column ' || {QUALIFIED} || c.relname || '.' || a.attname, \
             format_type(a.atttypid, a.atttypmod) \
             || CASE WHEN a.attnotnull THEN '; not null' ELSE '; nullable' END \
             || CASE WHEN a.attgenerated = 's' THEN '; generated (' || pg_get_expr(d.adbin, d.adrelid) || ')' \
                     WHEN a.attidentity = 'a' THEN '; identity always' \
                     WHEN a.attidentity = 'd' THEN '; identity by default' \
                     WHEN d.adbin IS NOT NULL THEN '; default ' || pg_get_expr(d.adbin, d.adrelid) \
                     ELSE '; no default' END \
             FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid \
             JOIN pg_namespace n ON n.oid = c.relnamespace \
             LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum \
             WHERE a.attnum > 0 AND NOT a.attisdropped AND {app} AND {tables}"
        ),
        format!(
            "SELECT 'index ' || {QUALIFIED} || i.relname, \
             pg_get_indexdef(i.oid) || CASE WHEN x.indisvalid THEN '' ELSE '; INVALID' END \
             FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid \
             JOIN pg_class c ON c.oid = x.indrelid JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE {app} AND {tables}"
        ),
        format!(
            "SELECT 'constraint ' || {QUALIFIED} || c.relname || '.' || k.conname, \
             pg_get_constraintdef(k.oid) \
             FROM pg_constraint k JOIN pg_class c ON c.oid = k.conrelid \
             JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE k.contype <> 'n' AND {app} AND {tables}"
        ),
        format!(
            "SELECT 'sequence ' || {QUALIFIED} || c.relname, format_type(s.seqtypid, NULL) \
             FROM pg_sequence s JOIN pg_class c ON c.oid = s.seqrelid \
             JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE {app} AND {}",
            not_from_extension("pg_class", "c.oid")
        ),
        format!(
            "SELECT CASE c.relkind WHEN 'm' THEN 'materialized view ' ELSE 'view ' END \
             || {QUALIFIED} || c.relname, {} \
             FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE c.relkind IN ('v', 'm') AND {app} AND {}",
            one_line("pg_get_viewdef(c.oid)"),
            not_from_extension("pg_class", "c.oid")
        ),
        format!(
            "SELECT 'function ' || {QUALIFIED} || p.proname || '(' \
             || pg_get_function_identity_arguments(p.oid) || ')', {} \
             FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace \
             WHERE p.prokind IN ('f', 'p') AND {app} AND {}",
            one_line("pg_get_functiondef(p.oid)"),
            not_from_extension("pg_proc", "p.oid")
        ),
        format!(
            "SELECT 'trigger ' || {QUALIFIED} || c.relname || '.' || t.tgname, \
             pg_get_triggerdef(t.oid) \
             FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid \
             JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE NOT t.tgisinternal AND {app} AND {tables}"
        ),
    ]
    .join(" UNION ALL ")
}

/// Reads the live objects.
pub async fn read(conn: &mut PgConnection) -> Result<Objects, sqlx::Error> {
    let rows: Vec<(String, String)> = sqlx::query_as(&query()).fetch_all(conn).await?;
    Ok(rows.into_iter().collect())
}

/// How `live` differs from `expected` for object `key`; a column's facet by facet:
/// `nullable in the database, not null in the migrations`.
pub(crate) fn describe_change(key: &str, expected: &str, live: &str) -> String {
    let (e, l): (Vec<&str>, Vec<&str>) =
        (expected.split("; ").collect(), live.split("; ").collect());
    if key.starts_with("column ") && e.len() == l.len() {
        let changed: Vec<String> = e
            .iter()
            .zip(&l)
            .filter(|(e, l)| e != l)
            .map(|(e, l)| format!("{l} in the database, {e} in the migrations"))
            .collect();
        return changed.join("; ");
    }
    if key.starts_with("index ") && l.last() == Some(&"INVALID") && e.first() == l.first() {
        return "INVALID in the database (a CREATE INDEX CONCURRENTLY that did not finish): \
                drop it, then rerun the migration that makes it"
            .to_owned();
    }
    format!("`{live}` in the database, `{expected}` in the migrations")
}
