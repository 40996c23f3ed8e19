//! `reencrypt`: after a key rotation, re-wrap every stored secret under the primary key.
//!
//! Safe alongside the running application: each table is walked by primary key in
//! batches (keyset pagination), every new value is verified before it is written, and
//! a batch is written by one compare-and-swap statement, so a value the application
//! changed meanwhile is never overwritten (it is re-read and retried, or left alone).
//! Values already on the primary key are checked and passed over, so an interrupted
//! run is simply run again. Only one reencrypt runs per database (an advisory lock).
//!
//! Nothing secret leaves this module: values are reported by table, id and reason.

mod judge;
mod pass;
mod shard;
mod tally;
mod walk;

pub use self::pass::{DEFAULT_BATCH_SIZE, LOCK_KEY};
pub(crate) use self::pass::{ReencryptOptions, default_batch_size, run};
