//! `status TASK`: where a task is, who started it and with what, and, once it has
//! stopped, how it ended and why.

use chrono::SecondsFormat;

use crate::contract::exit::launcher;
use crate::contract::result::CompanionResult;
use crate::launcher::aws_api::clients::Clients;
use crate::launcher::context::Context;
use crate::launcher::error::LauncherError;
use crate::launcher::flags::OutputFormat;
use crate::launcher::job::existing::{existing_log_target, find_task};
use crate::launcher::job::outcome::TaskOutcome;
use crate::launcher::job::report::TaskReport;
use crate::launcher::log_follower::{LogFollower, LogTiming};
use crate::launcher::log_history;
use crate::launcher::task::tags;

/// `status TASK`.
#[derive(Debug, Clone, clap::Args)]
pub struct StatusArgs {
    /// Task id or ARN
    pub task: String,
}

/// Describes one task. Exits as its launch would have once its container has exited
/// (its exit code, or 125 when it never ran), and 0 while it has not.
pub async fn exec(context: &Context, args: &StatusArgs) -> Result<u8, LauncherError> {
    let task = args.task.as_str();
    let config = &context.config;
    let clients = Clients::connect(config).await?;
    let Some(snapshot) = find_task(&clients, &config.cluster, task).await? else {
        return remembered(context, &clients, task).await;
    };
    let log = match existing_log_target(&clients, &snapshot, &config.container).await {
        Ok(log) => log,
        Err(e) => {
            context.renderer.warn(&format!("log stream unknown: {e}"));
            None
        }
    };
    let mut report = TaskReport {
        cluster: config.cluster.clone(),
        container: config.container.clone(),
        ..TaskReport::default()
    };
    report.apply_snapshot(&snapshot);
    let ended = snapshot.is_stopped() || snapshot.exit_code(&config.container).is_some();
    if let Some(log) = &log {
        report.apply_log(log);
        if ended {
            report.result = LogFollower::new(
                clients.logs_in(Some(&log.region)),
                &log.group,
                &log.stream,
                LogTiming::default(),
            )
            .last_result()
            .await;
        }
    }
    let outcome =
        ended.then(|| TaskOutcome::decide(&snapshot, &config.container, report.result.as_ref()));
    if let Some(outcome) = &outcome {
        report.apply_outcome(outcome);
        report.exit_code = outcome.exit_code;
    }
    if context.options.output == OutputFormat::Json {
        context.renderer.document(&report);
        return Ok(report.exit_code);
    }

    let time = |t: Option<chrono::DateTime<chrono::Utc>>| {
        t.map(|t| t.to_rfc3339_opts(SecondsFormat::Secs, true))
    };
    let mut lines = vec![
        format!("task:        {}", snapshot.arn),
        format!(
            "status:      {}{}",
            snapshot.last_status,
            snapshot
                .desired_status
                .as_deref()
                .filter(|d| *d != snapshot.last_status)
                .map(|d| format!(" (going to {d})"))
                .unwrap_or_default()
        ),
    ];
    if let Some(operator) = &report.operator {
        lines.push(format!("started by:  {operator}"));
    } else if let Some(by) = &snapshot.started_by {
        lines.push(format!("started by:  {by}"));
    }
    if let Some(command) = snapshot.tag(tags::COMMAND) {
        lines.push(format!("command:     {command}"));
    }
    for (label, value) in [
        ("created:    ", time(snapshot.created_at)),
        ("started:    ", time(snapshot.started_at)),
        ("stopped:    ", time(snapshot.stopped_at)),
    ] {
        if let Some(value) = value {
            lines.push(format!("{label} {value}"));
        }
    }
    if let Some(outcome) = &outcome {
        lines.extend(outcome.explanation.iter().cloned());
        lines.extend(outcome.hints.iter().map(|h| format!("hint: {h}")));
    }
    if let Some(result) = &report.result {
        lines.push(result_line(result));
    }
    if let Some(log) = &log {
        lines.push(format!("log stream:  {} {}", log.group, log.stream));
        lines.push(format!("console:     {}", log.console_url()));
    }
    crate::stdio::out_line(format_args!("{}", lines.join("\n")));
    Ok(report.exit_code)
}

/// A task ECS no longer describes: how it ended, from the companion's result event in
/// its log stream (123 without one: the container ran, its code is unknown).
async fn remembered(context: &Context, clients: &Clients, task: &str) -> Result<u8, LauncherError> {
    let config = &context.config;
    let run = log_history::find(clients, config, task).await?;
    let mut report = TaskReport::remembered(config, &run);
    report.result = log_history::last_result(clients, &run).await;
    report.exit_code = report
        .result
        .as_ref()
        .map_or(launcher::RAN_EXIT_UNKNOWN, |r| r.exit_code);
    if context.options.output == OutputFormat::Json {
        context.renderer.document(&report);
        return Ok(report.exit_code);
    }
    let time = |t: Option<chrono::DateTime<chrono::Utc>>| {
        t.map(|t| t.to_rfc3339_opts(SecondsFormat::Secs, true))
            .unwrap_or_else(|| "-".into())
    };
    let mut lines = vec![
        format!("task:        {}", run.task_id),
        "status:      no longer known to ECS (it keeps stopped tasks for about an hour); from its log stream".to_string(),
        format!("first line:  {}", time(run.created_at)),
        format!("last line:   {}", time(run.last_event_at)),
    ];
    lines.push(match &report.result {
        Some(result) => result_line(result),
        None => format!(
            "result:      none in the stream: the container ran, its exit code is unknown (exit {})",
            launcher::RAN_EXIT_UNKNOWN
        ),
    });
    lines.push(format!("log stream:  {} {}", run.log.group, run.log.stream));
    lines.push(format!("console:     {}", run.log.console_url()));
    crate::stdio::out_line(format_args!("{}", lines.join("\n")));
    Ok(report.exit_code)
}

/// How the companion said it ended: `result:      `migrate` exited 0`, with its error.
fn result_line(result: &CompanionResult) -> String {
    format!(
        "result:      `{}` exited {}{}",
        result.command,
        result.exit_code,
        result
            .error
            .as_ref()
            .map(|e| format!(": {e}"))
            .unwrap_or_default()
    )
}
