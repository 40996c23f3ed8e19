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
    pub fn is_large(&self, size: &TableSize) -> bool {
        size.rows.is_some_and(|r| r > self.rows) || size.bytes > self.bytes
    }
}

/// The sizes of the tables on the search path, by name.
#[derive(Debug, Clone, Default)]
pub struct TableSizes(HashMap<String, TableSize>);

impl TableSizes {
    /// Reads them from the database.
    pub async fn read(conn: &mut PgConnection) -> Result<Self, sqlx::Error> {
        let rows: Vec<(String, f32, i64)> = sqlx::query_as(
            "SELECT c.relname, c.reltuples, pg_total_relation_size(c.oid) \
             FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE c.relkind IN ('r', 'p', 'm') AND n.nspname = ANY(current_schemas(false))",
        )
        .fetch_all(conn)
        .await?;
        Ok(TableSizes(
            rows.into_iter()
                .map(|(name, tuples, bytes)| {
                    // -1 (PostgreSQL 14+): never vacuumed or analyzed.
                    let rows = (tuples >= 0.0).then_some(tuples as i64);
                    (name, TableSize { rows, bytes })
                })
                .collect(),
        ))
    }

    /// The size of `table`, if it exists.
    pub fn get(&self, table: &str) -> Option<&TableSize> {
        self.0.get(table)
    }
}

/// `2.3 M rows, 1.4 GB`.
pub fn human(rows: i64, bytes: i64) -> String {
    let rows = match rows {
        r if r >= 1_000_000 => format!("{:.1} M rows", r as f64 / 1e6),
        r if r >= 1_000 => format!("{:.1} k rows", r as f64 / 1e3),
        r => format!("{r} rows"),
    };
    format!("{rows}, {}", human_bytes(bytes))
}

/// `1.4 GB`, `820 kB`.
pub fn human_bytes(bytes: i64) -> String {
    let b = bytes as f64;
    match bytes {
        n if n >= 1 << 30 => format!("{:.1} GB", b / f64::from(1u32 << 30)),
        n if n >= 1 << 20 => format!("{:.1} MB", b / f64::from(1u32 << 20)),
        n if n >= 1 << 10 => format!("{:.0} kB", b / 1024.0),
        n => format!("{n} B"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_as_people_say_them() {
        assert_eq!(human(2_300_000, 1_503_238_553), "2.3 M rows, 1.4 GB");
        assert_eq!(human(12, 8192), "12 rows, 8 kB");
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
