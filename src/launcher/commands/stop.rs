//! `stop TASK [--reason TEXT]`: stop a task, recording who stopped it.

use super::{describe_task, print_json};
use crate::exit::ExitError;
use crate::launcher::Context;
use crate::launcher::clients::Clients;
use crate::launcher::follow::stop_task;
use crate::launcher::report::TaskReport;

/// Sends StopTask (SIGTERM to the containers, SIGKILL after the stop timeout).
pub async fn stop(context: &Context, task: &str, reason: Option<&str>) -> Result<u8, ExitError> {
    let config = &context.config;
    let clients = Clients::connect(config).await?;
    let before = describe_task(&clients, &config.cluster, task).await?;
    let reason = reason.map(str::to_string).unwrap_or_else(|| {
        format!(
            "Stopped by {} via run-admin-task",
            context.operator.display()
        )
    });
    let after = stop_task(&clients, &config.cluster, &before.arn, &reason).await?;
    let mut report = TaskReport {
        cluster: config.cluster.clone(),
        container: config.container.clone(),
        ..TaskReport::default()
    };
    report.apply_snapshot(&before);
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
    print_json(context.options.output, &report);
    Ok(0)
}
