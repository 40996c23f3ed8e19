//! `everruns-admin`: the companion that runs inside the admin container. This file only
//! parses the command line; the companion is `everruns_admin::companion`.

use std::process::ExitCode;

use clap::Parser;
use everruns_admin::companion;
use everruns_admin::contract::command_line::Cli;

fn main() -> ExitCode {
    ExitCode::from(companion::main(Cli::parse()))
}
