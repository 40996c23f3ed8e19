//! How big each table is, from the catalogue: the planner's row estimate
//! (`reltuples`, kept by ANALYZE and autovacuum) and the bytes on disk with indexes
//! and TOAST. Cheap to read, and what decides whether a lock is a blip or an outage.

use std::collections::HashMap;

use sqlx::postgres::PgConnection;

/// One table's size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TableSize {
    /// Estimated rows; `None` when never analyzed.
    pub rows: Option<i64>,
    /// Bytes, indexes and TOAST included.
    pub bytes: i64,
}

/// When a table is large enough that a dangerous lock on it blocks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Thresholds {
    /// More estimated rows than this.
    pub rows: i64,
    /// Or more bytes than this.
    pub bytes: i64,
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds {
            rows: 10_000,
            bytes: 10 * 1024 * 1024,
        }
    }
}

impl Thresholds {
    /// Whether `size` is above either threshold.
    pub(crate) fn is_large(&self, size: &TableSize) -> bool {
        size.rows.is_some_and(|r| r > self.rows) || size.bytes > self.bytes
    }
}

/// The sizes of the tables on the search path, by name, with what else a rule needs
/// to know of the live database: which table each index is on, and the server's
/// version.
#[derive(Debug, Clone, Default)]
pub struct TableSizes {
    tables: HashMap<String, TableSize>,
    /// Index name -> its table's name.
    indexes: HashMap<String, String>,
    /// `server_version_num` (`150004` for 15.4).
    server_version: i32,
}

impl TableSizes {
    /// Reads them from the database.
    pub async fn read(conn: &mut PgConnection) -> Result<Self, sqlx::Error> {
        let rows: Vec<(String, f32, i64)> = sqlx::query_as(
            "SELECT c.relname, c.reltuples, pg_total_relation_size(c.oid) \
             FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE c.relkind IN ('r', 'p', 'm') AND n.nspname = ANY(current_schemas(false))",
        )
        .fetch_all(&mut *conn)
        .await?;
        let indexes: Vec<(String, String)> = sqlx::query_as(
            "SELECT i.relname, t.relname FROM pg_index x \
             JOIN pg_class i ON i.oid = x.indexrelid JOIN pg_class t ON t.oid = x.indrelid \
             JOIN pg_namespace n ON n.oid = i.relnamespace \
             WHERE n.nspname = ANY(current_schemas(false))",
        )
        .fetch_all(&mut *conn)
        .await?;
        let (server_version,): (i32,) =
            sqlx::query_as("SELECT current_setting('server_version_num')::int")
                .fetch_one(conn)
                .await?;
        Ok(TableSizes {
            tables: rows
                .into_iter()
                .map(|(name, tuples, bytes)| {
                    // -1 (PostgreSQL 14+): never vacuumed or analyzed.
                    let rows = (tuples >= 0.0).then_some(tuples as i64);
                    (name, TableSize { rows, bytes })
                })
                .collect(),
            indexes: indexes.into_iter().collect(),
            server_version,
        })
    }

    /// The table `index` is on, if the index exists.
    pub(crate) fn table_of_index(&self, index: &str) -> Option<&str> {
        self.indexes.get(index).map(String::as_str)
    }

    /// Whether the server is at least PostgreSQL `major`.
    pub(crate) fn at_least(&self, major: i32) -> bool {
        self.server_version >= major * 10_000
    }

    /// The size of `table`, if it exists.
    pub fn get(&self, table: &str) -> Option<&TableSize> {
        self.tables.get(table)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_as_people_say_them() {
        let t = Thresholds::default();
        assert!(t.is_large(&TableSize {
            rows: Some(10_001),
            bytes: 0
        }));
        assert!(t.is_large(&TableSize {
            rows: None,
            bytes: 11 << 20
        }));
        assert!(!t.is_large(&TableSize {
            rows: Some(500),
            bytes: 1 << 20
        }));
    }
}
