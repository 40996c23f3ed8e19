//! `stop TASK [--reason TEXT]`: stop a task, recording who stopped it.

use crate::launcher::aws_api::clients::Clients;
use crate::launcher::context::Context;
use crate::launcher::error::LauncherError;
use crate::launcher::job::existing::describe_task;
use crate::launcher::job::follow::stop_task;
use crate::launcher::job::report::TaskReport;
use crate::launcher::task::TaskSnapshot;

/// `stop TASK [--reason TEXT]`.
#[derive(Debug, Clone, clap::Args)]
pub struct StopArgs {
    /// Task id or ARN
    pub task: String,
    /// Why (recorded by ECS) [default: who stopped it]
    #[arg(long, value_name = "TEXT")]
    pub reason: Option<String>,
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
