//! The migration linter: what a migration would do to tables that serve traffic,
//! judged with PostgreSQL's own parser (`pg_query`) and, inside the VPC, with each
//! table's live size. A finding on a large table, a change that breaks the running
//! application version, or a statement that cannot run as written blocks (exit 6);
//! the same on a small table, or on one the pending set creates, is a warning.
//!
//! A finding is allowed in the file itself, on the line before the statement:
//! `-- everruns-admin:allow RULE-ID reason...`. The reason is required; allowed
//! findings are still listed, as `suppressed`.

mod linter;
pub mod rules;
pub mod sizes;
mod statement;

pub use self::linter::{Judged, MigrationSource, Unparsable, lint};
pub(crate) use self::linter::{log, offline, touched_tables};
