//! `shell [--command CMD] [--keep] [--task TASK]`: a shell inside the admin container
//! over ECS Exec.
//!
//! Without `--task`, it starts a task running the companion's `shell` (which keeps the
//! container up without a terminal) with ECS Exec enabled, waits until the container and
//! its Exec agent run, opens the session, and stops the task when the session ends
//! unless `--keep`. With `--task`, it attaches to a task that runs already and leaves it
//! running afterwards: it did not start it.

use std::path::Path;

use tokio::sync::mpsc;

use crate::contract::exit::launcher;
use crate::launcher::aws_api::clients::Clients;
use crate::launcher::context::Context;
use crate::launcher::ecs_exec::{
    self, DEFAULT_COMMAND, ExecTiming, execute_command, plugin_argv, run_plugin, target_json,
};
use crate::launcher::error::LauncherError;
use crate::launcher::exec_task::{self, SessionTask};
use crate::launcher::flags::process_env;
use crate::launcher::job::follow::reattach_hint;
use crate::launcher::remote_status::Wrapped;
use crate::signals::Handled;

/// What the session task is for, in messages and its stop reason.
const SHELL: &str = "shell";

/// `shell [--task TASK] [--command CMD] [--keep]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, clap::Args)]
pub struct ShellArgs {
    /// Attach to this running task (id or ARN) instead of starting one; it keeps running
    #[arg(long, value_name = "TASK")]
    pub task: Option<String>,
    /// Run CMD with /bin/sh instead of an interactive /bin/bash, and exit with its exit
    /// status (123 when the session ends without it)
    #[arg(long, value_name = "CMD")]
    pub command: Option<String>,
    /// Leave the started task running after the session ends
    #[arg(long)]
    pub keep: bool,
}

/// Checks what it can before any AWS call, connects, and runs the session.
pub async fn exec(
    context: &Context,
    args: &ShellArgs,
    interrupts: &mut mpsc::UnboundedReceiver<()>,
) -> Result<u8, LauncherError> {
    let plugin = exec_task::preflight(context, SHELL, args.task.is_none())?;
    let clients = Clients::connect(&context.config).await?;
    session(
        context,
        &clients,
        args,
        &plugin,
        &ExecTiming::default(),
        interrupts,
    )
    .await
}

/// The session itself, with the clients and plugin given (tests pass mocks and a
/// stand-in plugin). Exit status: 0 after an interactive session; `--command`'s own exit
/// status, or 123 when the session ended without it (the command may have run); 2 when
/// ECS Exec cannot work with this task definition or task; 124 when the task never
/// became ready in time; 125 when no session could be opened; 130 when interrupted
/// before the session.
pub async fn session(
    context: &Context,
    clients: &Clients,
    args: &ShellArgs,
    plugin: &Path,
    timing: &ExecTiming,
    interrupts: &mut mpsc::UnboundedReceiver<()>,
) -> Result<u8, LauncherError> {
    let config = &context.config;
    let renderer = &context.renderer;
    let mut report = SessionTask::report(context);
    let Some(session_task) = SessionTask::obtain(
        context,
        clients,
        SHELL,
        args.task.as_deref(),
        args.keep,
        timing,
        &mut report,
        interrupts,
    )
    .await?
    else {
        return Ok(launcher::INTERRUPTED);
    };
    // A task this invocation started is stopped on a signal, not left behind.
    let _handled = args.task.is_none().then(Handled::claim);
    let task = &session_task.task;

    let runtime_id = match session_task
        .ready(context, clients, &mut report, interrupts)
        .await?
    {
        Ok(runtime_id) => runtime_id,
        Err(code) => {
            context.renderer.document(&report);
            return Ok(code);
        }
    };
    let wrapped = args.command.as_deref().map(Wrapped::new);
    let command = wrapped
        .as_ref()
        .map_or(DEFAULT_COMMAND, |w| w.command.as_str());
    let session = match execute_command(
        &clients.ecs,
        &config.cluster,
        &task.arn,
        &config.container,
        command,
    )
    .await
    {
        Ok(session) => session,
        Err(e) => {
            return Err(session_task
                .no_session(context, clients, &mut report, e)
                .await);
        }
    };
    let endpoint = ecs_exec::service_endpoint(
        "ecs",
        config.endpoint_url.as_deref(),
        &process_env,
        &clients.region,
    );
    let argv = plugin_argv(
        &session,
        &clients.region,
        config.profile.as_deref(),
        &target_json(&config.cluster, &task.arn, &runtime_id),
        &endpoint,
    );
    let shown = args.command.as_deref().unwrap_or(DEFAULT_COMMAND);
    renderer.finish();
    renderer.note(&format!(
        "session {} in container {} of task {}: `{shown}`; {}",
        session.session_id,
        config.container,
        task.id(),
        if wrapped.is_some() {
            "it ends with the command"
        } else {
            "leave the shell to end it"
        }
    ));
    let ran = run_plugin(plugin, &argv, wrapped.as_ref().map(Wrapped::filter)).await;
    drop(argv);
    let outcome = ran.map(|(status, remote)| {
        if !status.success() {
            renderer.warn(&format!("{} ended with {status}", ecs_exec::PLUGIN));
        }
        match (&args.command, remote) {
            (None, _) => {
                renderer.note("session ended");
                0
            }
            (Some(_), Some(code)) => {
                renderer.note(&format!("session ended: `{shown}` exited {code}"));
                code
            }
            (Some(_), None) => {
                renderer.warn(&format!(
                    "the session ended without the exit status of `{shown}` (the connection \
                     broke, or the plugin failed): it may have run, in whole or in part; exit {}",
                    launcher::RAN_EXIT_UNKNOWN
                ));
                launcher::RAN_EXIT_UNKNOWN
            }
        }
    });
    if let Err(e) = &outcome {
        renderer.warn(&format!("run-admin-task: {e}"));
    }
    if session_task.stop_after {
        session_task
            .end(context, clients, &mut report, "Session ended")
            .await;
    } else {
        renderer.note(&format!(
            "task {} keeps running: attach again with `run-admin-task shell --task {}`; {}",
            task.id(),
            task.id(),
            reattach_hint(&task.arn)
        ));
    }
    if let Ok(code) = outcome {
        report.exit_code = code;
    }
    context.renderer.document(&report);
    outcome
}
