//! `stop TASK [--reason TEXT] [--any-task]`: stop a task, recording who stopped it.
//! Only tasks this tool started, unless told otherwise: a task id pasted from the wrong
//! console tab must not take down the application.

use anyhow::anyhow;

use crate::launcher::aws_api::clients::Clients;
use crate::launcher::context::Context;
use crate::launcher::error::{LaunchError, LauncherError};
use crate::launcher::job::existing::describe_task;
use crate::launcher::job::follow::stop_task;
use crate::launcher::job::report::TaskReport;
use crate::launcher::task::{TaskSnapshot, tags};

/// `stop TASK [--reason TEXT]`.
#[derive(Debug, Clone, clap::Args)]
pub struct StopArgs {
    /// Task id or ARN
    pub task: String,
    /// Why (recorded by ECS) [default: who stopped it]
    #[arg(long, value_name = "TEXT")]
    pub reason: Option<String>,
    /// Stop it even though run-admin-task did not start it (no everruns-admin:started-by
    /// tag: an application task); the operator policy still refuses it
    #[arg(long)]
    pub any_task: bool,
}

/// Sends StopTask (SIGTERM to the containers, SIGKILL after the stop timeout).
pub async fn exec(context: &Context, args: &StopArgs) -> Result<u8, LauncherError> {
    let (task, reason) = (args.task.as_str(), args.reason.as_deref());
    let config = &context.config;
    let clients = Clients::connect(config).await?;
    let before = describe_task(&clients, &config.cluster, task).await?;
    if before.desired_status.as_deref() == Some("STOPPED") {
        return already_stopping(context, &before);
    }
    if !args.any_task {
        refuse_foreign(&before)?;
    }
    let reason = reason.map(str::to_string).unwrap_or_else(|| {
        format!(
            "Stopped by {} via run-admin-task",
            context.operator.display()
        )
    });
    let after = stop_task(&clients, &config.cluster, &before.arn, &reason).await?;
    let mut report = report_of(context, &before);
    if !after.arn.is_empty() {
        report.apply_snapshot(&after);
    }
    report.stopped_reason = report.stopped_reason.take().or(Some(reason.clone()));
    context.renderer.note(&format!(
        "stopping task {} (was {}): {reason}; see it end with `run-admin-task logs {} --follow`",
        before.id(),
        before.last_status,
        before.id()
    ));
    context.renderer.document(&report);
    Ok(0)
}

/// Refuses a task without this tool's `started-by` tag (exit 2, nothing sent).
fn refuse_foreign(task: &TaskSnapshot) -> Result<(), LauncherError> {
    if task.tags.iter().any(|(key, _)| key == tags::STARTED_BY) {
        return Ok(());
    }
    let started_by = task
        .started_by
        .as_deref()
        .map(|s| format!(", started by {s:?}"))
        .unwrap_or_default();
    Err(LaunchError::refused(anyhow!(
        "task {} was not started by run-admin-task (no {} tag{started_by}; an application \
         task?): not stopped. Stop the application's tasks with the tools that manage them; \
         if this one is really meant, add --any-task (the operator policy allows StopTask \
         only on tasks run-admin-task started)",
        task.id(),
        tags::STARTED_BY
    )))
}

/// A task ECS is already taking down is not stopped again: a second StopTask would only
/// hide the first reason behind a message that suggests this call did something.
fn already_stopping(context: &Context, task: &TaskSnapshot) -> Result<u8, LauncherError> {
    let report = report_of(context, task);
    let state = if task.last_status == "STOPPED" {
        "already stopped".to_owned()
    } else {
        format!("already stopping ({})", task.last_status)
    };
    let reason = task
        .stopped_reason
        .as_deref()
        .map(|r| format!(": {r}"))
        .unwrap_or_default();
    context.renderer.note(&format!(
        "task {} is {state}{reason}; nothing to stop. Its outcome: `run-admin-task status {}`",
        task.id(),
        task.id()
    ));
    context.renderer.document(&report);
    Ok(0)
}

fn report_of(context: &Context, task: &TaskSnapshot) -> TaskReport {
    let mut report = TaskReport {
        cluster: context.config.cluster.clone(),
        container: context.config.container.clone(),
        ..TaskReport::default()
    };
    report.apply_snapshot(task);
    report
}
