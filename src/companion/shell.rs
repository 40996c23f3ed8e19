//! `shell`: an interactive shell on a terminal; otherwise keep the container alive so an
//! operator can attach with ECS Exec, and leave cleanly when the task is stopped.

use std::io::IsTerminal;
use std::time::Duration;

use crate::exit::{ExitError, companion};
use crate::signals::{Signal, Signals};
use anyhow::Context;
use serde_json::json;

/// Options of `shell`.
#[derive(Debug, Clone)]
pub struct ShellOptions {
    /// Without a terminal: how long to stay up waiting for an operator.
    pub max_idle: Duration,
}

/// Runs the shell (terminal) or waits (no terminal). Returns the exit code and the
/// result summary: the shell's own code, or 0 after the wait or a SIGTERM.
pub async fn run(options: &ShellOptions) -> Result<(u8, serde_json::Value), ExitError> {
    if std::io::stdin().is_terminal() {
        let shell = ["/bin/bash", "/bin/sh"]
            .into_iter()
            .find(|path| std::path::Path::new(path).exists())
            .unwrap_or("sh");
        let status = tokio::process::Command::new(shell)
            .arg("-i")
            .status()
            .await
            .with_context(|| format!("starting {shell}"))?;
        let code = status.code().unwrap_or(1).clamp(0, 255) as u8;
        return Ok((code, json!({ "mode": "interactive", "shell": shell })));
    }

    tracing::info!(
        max_idle_seconds = options.max_idle.as_secs(),
        "no terminal: keeping this container up for ECS Exec; attach with \
         `run-admin-task shell --task <task-id>` (or `aws ecs execute-command --interactive \
         --container admin --command /bin/bash --task <task-id>`); stop the task when done"
    );
    let mut signals = Signals::install().context("listening for SIGTERM and SIGINT")?;
    let reason = tokio::select! {
        _ = tokio::time::sleep(options.max_idle) => "max idle time reached",
        signal = signals.recv() => match signal {
            Signal::Terminate => "stopped (SIGTERM)",
            Signal::Interrupt => "interrupted (SIGINT)",
        },
    };
    tracing::info!("shell container exiting: {reason}");
    Ok((
        companion::SUCCESS,
        json!({ "mode": "wait", "ended": reason }),
    ))
}
