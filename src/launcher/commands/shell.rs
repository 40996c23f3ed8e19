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
use crate::launcher::context::{confirmed, ensure_can_confirm};
use crate::launcher::ecs_exec::{
    self, DEFAULT_COMMAND, ExecTiming, WaitEnd, execute_command, plugin_argv, run_plugin,
    target_json, wait_until_ready,
};
use crate::launcher::error::LauncherError;
use crate::launcher::flags::process_env;
use crate::launcher::job::existing::describe_task;
use crate::launcher::job::follow::{reattach_hint, stop_task};
use crate::launcher::job::launch::{Job, RunTaskPlan, rejected};
use crate::launcher::job::outcome::TaskOutcome;
use crate::launcher::job::report::TaskReport;
use crate::launcher::job::watch::{Poll, PollTiming, TaskWatcher};
use crate::launcher::task::{TaskSnapshot, task_id};
use crate::launcher::task_definition::fetch::{self, Purpose, TaskDefinitionInfo};
use crate::signals::Handled;

/// The companion command a shell task runs: it waits for sessions without a terminal.
pub(crate) const COMPANION_SHELL: &str = "shell";

/// `shell [--task TASK] [--command CMD] [--keep]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, clap::Args)]
pub struct ShellArgs {
    /// Attach to this running task (id or ARN) instead of starting one; it keeps running
    #[arg(long, value_name = "TASK")]
    pub task: Option<String>,
    /// The command to run in the session
    #[arg(long, value_name = "CMD", default_value = "/bin/bash")]
    pub command: Option<String>,
    /// Leave the started task running after the session ends
    #[arg(long)]
    pub keep: bool,
}

/// Finds the plugin (before any AWS call), connects, and runs the session.
pub async fn exec(
    context: &Context,
    args: &ShellArgs,
    interrupts: &mut mpsc::UnboundedReceiver<()>,
) -> Result<u8, LauncherError> {
    let plugin = ecs_exec::find_plugin(std::env::var_os("PATH").as_deref())?;
    let config = &context.config;
    if args.task.is_none() {
        config.require_subnets()?;
        ensure_can_confirm(context, COMPANION_SHELL)?;
    }
    let clients = Clients::connect(config).await?;
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
/// stand-in plugin). Exit status: 0 after a session; 2 when ECS Exec cannot work with
/// this task definition or task; 124 when the task never became ready in time; 125 when
/// no session could be opened; 130 when interrupted before the session.
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
    let mut report = TaskReport {
        cluster: config.cluster.clone(),
        container: config.container.clone(),
        operator: Some(context.operator.display()),
        ..TaskReport::default()
    };
    let (task, started_here) = match &args.task {
        Some(task) => (describe_task(clients, &config.cluster, task).await?, false),
        None => match launch(context, clients, &mut report, interrupts).await? {
            Some(task) => (task, true),
            None => return Ok(launcher::INTERRUPTED),
        },
    };
    report.apply_snapshot(&task);
    let stop_after = started_here && !args.keep;
    // A task this invocation started is stopped on a signal, not left behind.
    let _handled = started_here.then(Handled::claim);

    let waited = wait_until_ready(
        &clients.ecs,
        &config.cluster,
        &task.arn,
        &config.container,
        timing,
        renderer,
        interrupts,
    )
    .await;
    let runtime_id = match waited {
        Ok(WaitEnd::Ready(runtime_id)) => runtime_id,
        Ok(WaitEnd::Stopped(last)) => {
            renderer.finish();
            let outcome = TaskOutcome::decide(&last, &config.container, None);
            renderer.warn(&format!(
                "task {} stopped before a session could start",
                task.id()
            ));
            for line in outcome.explanation.iter().chain(&outcome.hints) {
                renderer.warn(&format!("  {line}"));
            }
            report.apply_snapshot(&last);
            report.apply_outcome(&outcome);
            report.exit_code = launcher::NEVER_RAN;
            context.renderer.document(&report);
            return Ok(launcher::NEVER_RAN);
        }
        Ok(WaitEnd::Interrupted) => {
            renderer.finish();
            renderer.warn("interrupted before the session started");
            if stop_after {
                end_task(context, clients, &task, timing, &mut report, "Interrupted").await;
            }
            report.interrupted = true;
            report.exit_code = launcher::INTERRUPTED;
            context.renderer.document(&report);
            return Ok(launcher::INTERRUPTED);
        }
        Err(e) => {
            let stop = stop_after.then_some((&task, timing));
            return Err(no_session(context, clients, stop, &mut report, e).await);
        }
    };

    let command = args.command.as_deref().unwrap_or(DEFAULT_COMMAND);
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
            let stop = stop_after.then_some((&task, timing));
            return Err(no_session(context, clients, stop, &mut report, e).await);
        }
    };
    let endpoint = ecs_exec::ecs_endpoint(
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
    renderer.finish();
    renderer.note(&format!(
        "session {} in container {} of task {}: `{command}`; leave the shell to end it",
        session.session_id,
        config.container,
        task.id()
    ));
    let status = run_plugin(plugin, &argv).await;
    drop(argv);
    match &status {
        Ok(status) if !status.success() => {
            renderer.warn(&format!("{} ended with {status}", ecs_exec::PLUGIN));
        }
        Ok(_) => renderer.note("session ended"),
        Err(e) => renderer.warn(&format!("run-admin-task: {e}")),
    }
    if stop_after {
        end_task(
            context,
            clients,
            &task,
            timing,
            &mut report,
            "Session ended",
        )
        .await;
    } else {
        renderer.note(&format!(
            "task {} keeps running: attach again with `run-admin-task shell --task {}`; {}",
            task.id(),
            task.id(),
            reattach_hint(&task.arn)
        ));
    }
    context.renderer.document(&report);
    status.map(|_| 0)
}

/// Starts the shell task: checks that the task definition allows ECS Exec, asks in a
/// `confirm = true` environment, and sends RunTask with ECS Exec enabled. `None` when
/// the operator interrupted the question.
async fn launch(
    context: &Context,
    clients: &Clients,
    report: &mut TaskReport,
    interrupts: &mut mpsc::UnboundedReceiver<()>,
) -> Result<Option<TaskSnapshot>, LauncherError> {
    let config = &context.config;
    let renderer = &context.renderer;
    let definition = fetch::fetch(clients, &config.task_definition, Purpose::Launch).await?;
    let info = TaskDefinitionInfo::from_sdk(&definition);
    info.container(&config.container)?;
    for warning in ecs_exec::check_task_definition(&definition, &config.container)? {
        renderer.warn(&format!("warning: {warning}"));
    }
    if !confirmed(context, COMPANION_SHELL, interrupts).await? {
        renderer.warn("interrupted; nothing was launched");
        return Ok(None);
    }
    let job = Job {
        argv: vec![COMPANION_SHELL.to_string()],
        mutating: false,
    };
    let mut plan = RunTaskPlan::new(config, &info.arn, &job, &context.operator)?;
    plan.enable_execute_command = true;
    report.task_definition = Some(info.arn.clone());
    report.command = job.argv.clone();
    report.started_by = Some(plan.started_by.clone());
    // From here a task may exist: this command stops it on a signal.
    let _handled = Handled::claim();
    let reply = tokio::select! {
        reply = plan.send(&clients.ecs) => reply?,
        Some(()) = interrupts.recv() => {
            renderer.warn(&format!(
                "interrupted while RunTask was in flight: a task may have started; `run-admin-task --cluster {} list` shows it",
                config.cluster
            ));
            return Ok(None);
        }
    };
    match reply.task {
        Some(task) if reply.failures.is_empty() => {
            renderer.note(&format!(
                "started task {} for a shell in {}; waiting for ECS Exec",
                task.arn,
                crate::launcher::task::placement(&task.arn, &config.cluster)
            ));
            Ok(Some(task))
        }
        _ => Err(rejected(&reply.failures)),
    }
}

/// A failure before the session opened: the task this invocation started (`stop`) is
/// stopped first, so nothing is left running, then the failure is returned.
async fn no_session(
    context: &Context,
    clients: &Clients,
    stop: Option<(&TaskSnapshot, &ExecTiming)>,
    report: &mut TaskReport,
    error: LauncherError,
) -> LauncherError {
    context.renderer.finish();
    if let Some((task, timing)) = stop {
        context.renderer.warn(&format!("run-admin-task: {error}"));
        end_task(context, clients, task, timing, report, "No session").await;
    }
    error
}

/// Stops the shell task and reports how it ended, waiting for STOPPED up to the stop
/// limit. Problems are reported, not raised: the session already happened.
async fn end_task(
    context: &Context,
    clients: &Clients,
    task: &TaskSnapshot,
    timing: &ExecTiming,
    report: &mut TaskReport,
    why: &str,
) {
    let config = &context.config;
    let renderer = &context.renderer;
    let reason = format!(
        "{why}: shell of {} via run-admin-task",
        context.operator.display()
    );
    if let Err(e) = stop_task(clients, &config.cluster, &task.arn, &reason).await {
        renderer.warn(&format!("{e}"));
        return;
    }
    renderer.note(&format!("stopping task {}", task.id()));
    let poll = PollTiming {
        fast: timing.interval.min(PollTiming::default().fast),
        running_ceiling: timing.interval,
        transitional_ceiling: timing.interval,
        ..PollTiming::default()
    };
    let mut watcher = TaskWatcher::new(clients.ecs.clone(), &config.cluster, &task.arn, poll);
    let deadline = tokio::time::Instant::now() + timing.stop_limit;
    loop {
        if let Ok(Poll::Seen(last)) = watcher.poll().await
            && last.is_stopped()
        {
            let outcome = TaskOutcome::decide(&last, &config.container, None);
            renderer.note(&format!("task {} stopped", last.id()));
            for line in &outcome.explanation {
                renderer.note(&format!("  {line}"));
            }
            report.apply_snapshot(&last);
            report.apply_outcome(&outcome);
            return;
        }
        if tokio::time::Instant::now() >= deadline {
            renderer.warn(&format!(
                "task {} is still stopping; check with `run-admin-task status {}`",
                task_id(&task.arn),
                task_id(&task.arn)
            ));
            return;
        }
        tokio::time::sleep(watcher.next_delay()).await;
    }
}
