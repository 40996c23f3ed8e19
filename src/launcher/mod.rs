//! The launcher, `run-admin-task`: starts the admin container on ECS Fargate with a
//! command override, follows its status and its CloudWatch log stream live, and exits
//! with the container's exit code (see [`crate::contract::exit::launcher`] for its own codes).
//!
//! [`commands`] holds the command line and one module per command; they call the
//! subject modules here: [`job`] (launch and follow a task), [`log_follower`],
//! [`output`], [`service`], [`task_def`], [`checks`] (doctor), [`key_secrets`], [`ecs_exec`].

pub(crate) mod aws_api;
pub(crate) mod capacity;
pub(crate) mod checks;
pub(crate) mod commands;
pub(crate) mod config;
pub(crate) mod config_file;
pub(crate) mod confirm;
pub(crate) mod context;
pub(crate) mod ecs_exec;
pub(crate) mod error;
pub(crate) mod exec_task;
pub(crate) mod flags;
pub(crate) mod idempotency;
pub(crate) mod identity;
pub(crate) mod job;
pub(crate) mod job_summary;
pub(crate) mod key_secrets;
pub(crate) mod log_follower;
pub(crate) mod log_history;
pub(crate) mod output;
pub(crate) mod remote_status;
pub(crate) mod service;
pub(crate) mod task;
pub(crate) mod task_definition;

pub use self::commands::Cli;
pub use self::commands::execute::main;
