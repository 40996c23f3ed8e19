//! What an interrupted `-- no-transaction` migration leaves behind that the history
//! table cannot show: an index that `CREATE INDEX CONCURRENTLY` or `REINDEX
//! CONCURRENTLY` left INVALID when it was cancelled or failed. PostgreSQL keeps such
//! an index (it is still updated on every write, never used for reads), and a rerun of
//! `CREATE INDEX CONCURRENTLY IF NOT EXISTS` would keep it as it is, invalid.

use sqlx::postgres::PgConnection;

use crate::contract::migration_report::InvalidIndex;

/// Every INVALID index outside the system schemas.
pub async fn invalid_indexes(conn: &mut PgConnection) -> Result<Vec<InvalidIndex>, sqlx::Error> {
    sqlx::query_as::<_, InvalidIndex>(
        "SELECT n.nspname::text AS schema, c.relname::text AS index, t.relname::text AS \"table\" \
         FROM pg_index i \
         JOIN pg_class c ON c.oid = i.indexrelid \
         JOIN pg_class t ON t.oid = i.indrelid \
         JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE NOT i.indisvalid \
           AND n.nspname NOT IN ('pg_catalog', 'information_schema') \
           AND n.nspname NOT LIKE 'pg_toast%' \
         ORDER BY 1, 2",
    )
    .fetch_all(conn)
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn index(name: &str) -> InvalidIndex {
        InvalidIndex {
            schema: "public".into(),
            index: name.into(),
            table: "llm_providers".into(),
        }
    }

    #[test]
    fn an_index_is_found_by_its_whole_name_only() {
        let sql =
            "CREATE INDEX CONCURRENTLY IF NOT EXISTS idx_providers_name ON llm_providers (name);";
        assert!(index("idx_providers_name").named_in(sql));
        assert!(index("IDX_Providers_Name").named_in(sql));
        assert!(!index("idx_providers").named_in(sql));
        assert!(!index("providers_name").named_in(sql));
    }

    #[test]
    fn the_fix_quotes_what_needs_it() {
        assert_eq!(
            index("idx_a").fix(),
            "DROP INDEX CONCURRENTLY IF EXISTS public.idx_a;"
        );
        assert_eq!(
            index("Idx A").fix(),
            "DROP INDEX CONCURRENTLY IF EXISTS public.\"Idx A\";"
        );
    }
}
