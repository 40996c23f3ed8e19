//! Database migrations, compatible with sqlx-cli's `_sqlx_migrations` table.
//!
//! The catalog is the `migrations/` folder, embedded at build time. [`history`] reads
//! what the database has recorded, [`state`] compares the two (the one place that
//! decides what is pending and what is drift), and [`migrate`] and [`info`] are the
//! companion's two commands over them.

mod catalog;
pub mod history;
pub mod info;
pub(crate) mod leftovers;
pub mod migrate;
mod migrate_error;
mod session;
pub mod state;

pub use self::catalog::{Catalog, hex};
pub(crate) use self::migrate_error::MigrateError;
pub use self::session::lock_key;
pub(crate) use self::session::{SessionLimits, lint_pending, lock_key_of};
