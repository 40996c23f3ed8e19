//! The launch-and-follow path that every command launching a task goes through:
//! everything before RunTask ([`prepare`]), start it ([`launch`]; one task in
//! [`single`], a job split across tasks in [`shards`]), follow its status and logs
//! ([`follow`], [`watch`]), decide how it ended ([`outcome`]), say so ([`conclude`]) and
//! report it ([`report`]). Also how an existing task and its log stream are found, for
//! `logs`, `status`, `stop` and `shell` ([`existing`]).

mod conclude;
mod existing;
pub mod follow;
pub mod launch;
pub mod outcome;
mod prepare;
pub mod report;
pub mod shards;
mod single;
pub mod watch;

pub(crate) use conclude::{conclude, settle};
pub(crate) use existing::{describe_task, existing_log_target, find_task};
pub(crate) use prepare::{follow_settings, log_target, prepare};
pub(crate) use single::launch_and_follow;
