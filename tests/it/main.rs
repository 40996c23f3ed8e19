//! The integration tests, in one binary so the AWS SDKs are linked once.
//!
//! Each module tests one subject through the binaries or the library's public API;
//! the fixtures they share (the PostgreSQL cluster, the emulator, keys, mock clients)
//! are in `tests/common`.

#[path = "../common/mod.rs"]
mod common;

mod cli_help;
mod companion_cli;
mod doctor;
mod envelope;
mod github_actions;
mod keys;
mod launcher_e2e;
mod launcher_mocks;
mod layering;
mod lint;
mod migrations;
mod packaging;
mod policies;
mod readme;
mod reencrypt;
mod rust_log;
mod schema_drift;
mod sessions;
mod shell;
mod stopping;
mod targets;
mod task_def;
