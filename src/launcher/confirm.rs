//! The production guard: in an environment with `confirm = true`, a mutating command is
//! confirmed by a person at a terminal, or by `--yes`; without either it is refused.

use std::io::{BufRead, IsTerminal, Write};

use anyhow::anyhow;
use tokio::sync::mpsc;

use crate::launcher::error::{LauncherError, SettingsError};

/// What the guard decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Go ahead.
    Proceed,
    /// The operator interrupted the question (exit 130).
    Interrupted,
}

/// Asks before `what` runs on `cluster` when the environment requires it.
pub async fn confirm(
    required: bool,
    yes: bool,
    env_name: Option<&str>,
    cluster: &str,
    what: &str,
    interrupts: &mut mpsc::UnboundedReceiver<()>,
) -> Result<Decision, LauncherError> {
    if !required || yes {
        return Ok(Decision::Proceed);
    }
    ensure_can_ask(required, yes, env_name, cluster, what)?;
    let env = env_name.unwrap_or("this environment");
    let question = format!("Run `{what}` on cluster {cluster} ({env})? [y/N] ");
    let answer = tokio::task::spawn_blocking(move || {
        let mut stderr = std::io::stderr().lock();
        let _ = stderr.write_all(question.as_bytes());
        let _ = stderr.flush();
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line).map(|_| line)
    });
    tokio::select! {
        answer = answer => {
            let answer = answer
                .map_err(|e| SettingsError::invalid(anyhow!("cannot ask for confirmation: {e}")))?
                .map_err(|e| SettingsError::invalid(anyhow!("cannot read the answer: {e}")))?;
            if is_yes(&answer) {
                Ok(Decision::Proceed)
            } else {
                Err(SettingsError::not_confirmed(anyhow!("not confirmed; nothing was launched")))
            }
        }
        Some(()) = interrupts.recv() => Ok(Decision::Interrupted),
    }
}

/// Refuses at once (exit 2, before any AWS call) when confirmation is required but
/// there is no terminal to ask on and no `--yes`.
pub(crate) fn ensure_can_ask(
    required: bool,
    yes: bool,
    env_name: Option<&str>,
    cluster: &str,
    what: &str,
) -> Result<(), LauncherError> {
    if required && !yes && (!std::io::stdin().is_terminal() || !std::io::stderr().is_terminal()) {
        let env = env_name.unwrap_or("this environment");
        return Err(SettingsError::invalid(anyhow!(
            "{env} requires confirmation (confirm = true) and there is no terminal to ask on; pass --yes to run `{what}` on cluster {cluster}"
        )));
    }
    Ok(())
}

/// Whether an answer means yes.
pub(crate) fn is_yes(answer: &str) -> bool {
    matches!(answer.trim().to_ascii_lowercase().as_str(), "y" | "yes")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_yes_is_yes() {
        assert!(is_yes("y\n") && is_yes(" YES "));
        assert!(!is_yes("") && !is_yes("no") && !is_yes("yep"));
    }

    #[tokio::test]
    async fn without_a_terminal_confirmation_is_refused_unless_yes() {
        let (_tx, mut rx) = mpsc::unbounded_channel();
        let decision = confirm(true, true, Some("production"), "c", "migrate", &mut rx).await;
        assert_eq!(decision.unwrap(), Decision::Proceed);
        let decision = confirm(false, false, None, "c", "migrate", &mut rx).await;
        assert_eq!(decision.unwrap(), Decision::Proceed);
        if !std::io::stdin().is_terminal() {
            let err = confirm(true, false, Some("production"), "c", "migrate", &mut rx)
                .await
                .unwrap_err();
            assert_eq!(err.exit_code(), 2);
            assert!(err.to_string().contains("--yes"));
        }
    }
}
