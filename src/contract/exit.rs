//! Exit statuses: the contract CI scripts and operators rely on (see README, "Exit codes").
//!
//! Each binary chooses among them in one match over its failures
//! (`CompanionError::exit_code`, `LauncherError::exit_code`) and, for outcomes that are
//! not failures, from the typed result that carries them.

/// Exit statuses of the companion, `everruns-admin`.
pub mod companion {
    /// The command did what it was asked.
    pub(crate) const SUCCESS: u8 = 0;
    /// Runtime failure: database unreachable, a migration failed, ...
    pub(crate) const FAILURE: u8 = 1;
    /// Usage or configuration error (flags, environment, keys); nothing was written.
    pub(crate) const USAGE: u8 = 2;
    /// `migrate-info --check`: migrations are pending.
    pub const PENDING: u8 = 3;
    /// The database disagrees with this image (checksum, unknown version, failed migration).
    pub(crate) const DRIFT: u8 = 4;
    /// `reencrypt` finished but some values could not be decrypted.
    pub(crate) const UNDECRYPTABLE: u8 = 5;
    /// `migrate-info --check`, `migrate` or `lint`: a pending migration would take a
    /// dangerous lock or break the running version, and the file allows it nowhere.
    pub(crate) const UNSAFE: u8 = 6;
    /// `migrate-info --check`: the live schema differs from what the applied migrations
    /// produce (an INVALID index left by an interrupted `CONCURRENTLY`); `migrate`
    /// refuses a migration that would meet such a leftover.
    pub(crate) const SCHEMA_DIFFERS: u8 = 7;
    /// The deadline (`--deadline`, `EVERRUNS_ADMIN_DEADLINE`) passed; the work in flight
    /// was cancelled and rolled back, as `timeout(1)` ends.
    pub(crate) const DEADLINE: u8 = 124;
    /// Stopped by SIGTERM (ECS StopTask): the statement in flight was cancelled and
    /// rolled back, locks released. 128 + 15, as for any process ended by it.
    pub(crate) const TERMINATED: u8 = 143;
    /// Stopped by SIGINT (Ctrl-C), the same way. 128 + 2.
    pub(crate) const INTERRUPTED: u8 = 130;
}

/// Exit statuses of the launcher, `run-admin-task`, besides the container's own code.
pub mod launcher {
    /// A command that launches nothing failed (a call, or an answer it cannot use).
    pub const FAILURE: u8 = 1;
    /// Usage or configuration error; nothing was launched.
    pub const USAGE: u8 = 2;
    /// `--timeout` reached while following.
    pub const TIMEOUT: u8 = 124;
    /// The container ran, but ECS has no exit code for it (a lost host, a Docker
    /// timeout) and no result event said how it ended: it may have done its work, so it
    /// is not "never ran"; read its log before running it again.
    pub const RAN_EXIT_UNKNOWN: u8 = 123;
    /// The container never ran (API rejection, RunTask failures, start failure).
    pub const NEVER_RAN: u8 = 125;
    /// Interrupted by the operator (Ctrl-C).
    pub const INTERRUPTED: u8 = 130;
}
