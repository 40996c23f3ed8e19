//! The launcher, `run-admin-task`: starts the admin container on ECS Fargate, follows it
//! and its logs, and exits with its exit code.

pub mod clients;
pub mod config;
pub mod identity;
pub mod task;
pub mod task_definition;
