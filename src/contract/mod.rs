//! What the two binaries agree on, and nothing else: the log events the companion
//! writes and the launcher reads, the result summaries they carry, the exit-code tables
//! of both, and the companion's command line, which the launcher validates before it
//! launches anything. It depends on no other module of the crate, so either side can
//! change its internals without the other noticing, and the launcher reads the
//! companion only through it.

pub mod command_line;
pub mod duration;
pub mod events;
pub mod exit;
pub mod findings;
pub mod migration_report;
pub mod result;
pub mod summary;
