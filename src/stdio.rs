//! Lines on stdout and stderr that survive a closed pipe. `println!` panics when the
//! reader has gone (`run-admin-task list | head -1`), turning any command into exit 101;
//! a command whose reader left still ends with its own exit code.

use std::fmt::Display;
use std::io::Write;

/// Writes `text` and a newline to stdout, ignoring a closed pipe (the launcher's; the
/// companion writes through its console).
#[cfg(feature = "launcher")]
pub(crate) fn out_line(text: impl Display) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{text}");
    let _ = out.flush();
}

/// Writes `text` and a newline to stderr, ignoring a closed pipe.
pub(crate) fn err_line(text: impl Display) {
    let _ = writeln!(std::io::stderr().lock(), "{text}");
}
