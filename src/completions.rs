//! Shell completions for both binaries (`completions bash|zsh|fish|elvish|powershell`).

use std::io::Write;

use clap_complete::Shell;

/// Writes the completion script for `command` to stdout. It is generated into a buffer
/// first: writing straight to a closed pipe (`| head`) would panic.
pub fn print(shell: Shell, mut command: clap::Command) {
    let name = command.get_name().to_owned();
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut command, name, &mut script);
    let _ = std::io::stdout().lock().write_all(&script);
}
