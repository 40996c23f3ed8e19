//! everruns-admin: run admin jobs against everruns' PostgreSQL on ECS Fargate.
//!
//! Two binaries share this library. The companion (`everruns-admin`, [`companion`])
//! runs inside the admin container and does the work; the launcher (`run-admin-task`,
//! [`launcher`]) starts that container on ECS, follows it and its logs, and exits with
//! its exit code. The only channel between them is the container's log stream, spoken
//! as [`contract`] says; the launcher reads the companion through it alone. The other
//! modules at the top are what both use.
//!
//! The launcher and the AWS SDKs are behind the default feature `launcher`, so the
//! admin image builds the companion without them. Outside the crate, each binary sees
//! its entry point; the tests and benchmarks see [`seam`], and nothing else inside.

pub mod completions;
pub mod contract;
pub mod envelope;
pub mod keyring;
pub(crate) mod signals;
mod stdio;

pub mod companion;
#[cfg(feature = "launcher")]
pub mod launcher;
pub mod seam;
