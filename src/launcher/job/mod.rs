//! The launch-and-follow path that every command launching a task goes through:
//! everything before RunTask ([`prepare`]), start it ([`launch`]; one task in
//! [`single`], a job split across tasks in [`shards`]), follow its status and logs
//! ([`follow`], [`watch`]), decide how it ended ([`outcome`]), say so ([`conclude`]) and
//! report it ([`report`]). Also how an existing task and its log stream are found, for
//! `logs`, `status`, `stop` and `shell` ([`existing`]).

pub(crate) mod conclude;
pub(crate) mod existing;
pub mod follow;
pub mod launch;
pub mod outcome;
pub(crate) mod prepare;
pub mod report;
pub mod shards;
pub(crate) mod single;
pub mod watch;
