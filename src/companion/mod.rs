//! The companion, `everruns-admin`: runs inside the admin container and does the work
//! against the database (migrations, re-encryption, status, a shell). It speaks to the
//! launcher only through its output, in [`crate::contract::events`]; it never calls AWS.

pub(crate) mod cancel;
pub(crate) mod console;
pub(crate) mod database;
pub(crate) mod dispatch;
pub(crate) mod encrypted_columns;
pub(crate) mod failure;
pub(crate) mod lint;
pub(crate) mod migrations;
pub(crate) mod probes;
pub(crate) mod reencrypt;
pub(crate) mod schema;
pub(crate) mod standby;

use crate::contract::command_line::Cli;

/// Runs the companion and returns its exit status.
pub fn main(cli: Cli) -> u8 {
    console::init(cli.output());
    match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime.block_on(dispatch::execute(cli)),
        Err(e) => {
            crate::stdio::err_line(format_args!(
                "everruns-admin: cannot start the async runtime: {e}"
            ));
            crate::contract::exit::companion::FAILURE
        }
    }
}
