//! Shell completions for both binaries (`completions bash|zsh|fish|elvish|powershell`).

use std::io::Write;

use clap_complete::Shell;

/// Writes the completion script for `command` to stdout. It is generated into a buffer
/// first: writing straight to a closed pipe (`| head`) would panic.
pub fn print(shell: Shell, mut command: clap::Command) {
    let name = command.get_name().to_owned();
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut command, name.clone(), &mut script);
    if shell == Shell::Bash {
        script = spell_bash_arms_as_the_loop_does(&script, &name).into_bytes();
    }
    let _ = std::io::stdout().lock().write_all(&script);
}

/// clap_complete's bash script walks the words into a state spelled with the bin name's
/// hyphens as `__` (`run__admin__task__subcmd__keys`), but labels the arms with them as
/// `__subcmd__` (`run__subcmd__admin__subcmd__task__subcmd__keys`). No arm matches, so
/// nothing past the first word completes for a hyphenated bin (clap-rs/clap#6421, open).
fn spell_bash_arms_as_the_loop_does(script: &[u8], name: &str) -> String {
    let script = String::from_utf8_lossy(script);
    let arm = format!("{}__subcmd__", name.replace('-', "__subcmd__"));
    let state = format!("{}__subcmd__", name.replace('-', "__"));
    script.replace(&arm, &state)
}
