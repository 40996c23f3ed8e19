//! everruns-admin: run admin jobs against everruns' PostgreSQL on ECS Fargate.
//!
//! Two binaries share this library. The companion (`everruns-admin`) runs inside the
//! admin container and does the work; the launcher (`run-admin-task`) starts that
//! container on ECS, follows it and its logs, and exits with its exit code. The only
//! channel between them is the container's log stream, spoken in [`protocol`].

pub mod completions;
pub mod console;
pub mod database;
pub mod duration;
pub mod encrypted_columns;
pub mod envelope;
pub mod exit;
pub mod keyring;
pub mod launcher;
pub mod migrations;
pub mod protocol;
pub mod reencrypt;
pub mod shell;
pub mod status;
