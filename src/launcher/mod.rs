//! The launcher, `run-admin-task`: starts the admin container on ECS Fargate with a
//! command override, follows its status and its CloudWatch log stream live, and exits
//! with the container's exit code (see [`crate::contract::exit::launcher`] for its own codes).
//!
//! [`commands`] holds the command line and one module per command; they call the
//! subject modules here: [`job`] (launch and follow a task), [`log_follower`],
//! [`output`], [`service`], [`task_def`], [`checks`] (doctor), [`key_secrets`], [`ecs_exec`].

pub(crate) mod api_budget;
pub(crate) mod aws_errors;
pub mod capacity;
pub mod checks;
pub mod clients;
pub mod commands;
pub mod config;
pub mod config_file;
pub mod confirm;
pub mod context;
pub mod ecs_exec;
pub mod error;
pub mod flags;
pub mod idempotency;
pub mod identity;
pub mod job;
pub(crate) mod job_summary;
pub mod key_secrets;
pub mod log_follower;
pub(crate) mod log_history;
pub mod output;
pub mod service;
pub mod task;
pub mod task_definition;

pub use self::commands::Cli;
pub use self::commands::execute::main;
