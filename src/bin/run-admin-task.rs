//! `run-admin-task`: run everruns admin jobs on ECS Fargate and exit with their exit
//! code. This file only parses the command line; the launcher is
//! `everruns_admin::launcher`.

use std::process::ExitCode;

use clap::Parser;
use everruns_admin::launcher::{self, Cli};

fn main() -> ExitCode {
    ExitCode::from(launcher::main(Cli::parse()))
}
