//! `logs TASK [--follow]`: print a task's log stream from its first line; with
//! `--follow`, keep going until the task stops and the stream is drained, then exit
//! with the container's exit code (this is how a timed-out or detached run is
//! re-attached). Ctrl-C leaves the task running.

use anyhow::anyhow;
use tokio::sync::{mpsc, watch};

use crate::contract::events::LogLine;
use crate::contract::exit::launcher;
use crate::contract::result::CompanionResult;
use crate::launcher::aws_api::clients::Clients;
use crate::launcher::context::Context;
use crate::launcher::error::{LauncherError, SettingsError};
use crate::launcher::job::conclude::conclude;
use crate::launcher::job::existing::{existing_log_target, find_task};
use crate::launcher::job::follow::{FollowSettings, LogSource, Target, follow, reattach_hint};
use crate::launcher::job::prepare::follow_settings;
use crate::launcher::job::report::TaskReport;
use crate::launcher::log_follower::{LogFollower, TaskPhase};
use crate::launcher::log_history;

/// `logs TASK [--follow]`.
#[derive(Debug, Clone, clap::Args)]
pub struct LogsArgs {
    /// Task id or ARN
    pub task: String,
    /// Keep following until the task stops; exit with its exit code
    #[arg(long, short = 'f')]
    pub follow: bool,
}

/// Prints (and optionally follows) a task's logs.
pub async fn exec(
    context: &Context,
    args: &LogsArgs,
    interrupts: &mut mpsc::UnboundedReceiver<()>,
) -> Result<u8, LauncherError> {
    let (task, follow_logs) = (args.task.as_str(), args.follow);
    let config = &context.config;
    let renderer = &context.renderer;
    let clients = Clients::connect(config).await?;
    let Some(snapshot) = find_task(&clients, &config.cluster, task).await? else {
        return remembered(context, &clients, task, follow_logs).await;
    };
    let Some(log) = existing_log_target(&clients, &snapshot, &config.container).await? else {
        return Err(SettingsError::invalid(anyhow!(
            "container {} of task {} does not log to CloudWatch (no awslogs driver); choose another with --container",
            config.container,
            snapshot.id()
        )));
    };
    let mut report = TaskReport {
        cluster: config.cluster.clone(),
        container: config.container.clone(),
        log_group: Some(log.group.clone()),
        log_stream: Some(log.stream.clone()),
        console_url: Some(log.console_url()),
        ..TaskReport::default()
    };
    report.apply_snapshot(&snapshot);
    let source = LogSource {
        client: clients.logs_in(Some(&log.region)),
        group: log.group.clone(),
        stream: log.stream.clone(),
    };

    if !follow_logs {
        report.result = print_stream(context, &source).await?;
        if !snapshot.is_stopped() {
            renderer.note(&format!(
                "task {} is {}: {}",
                snapshot.id(),
                snapshot.last_status,
                reattach_hint(&snapshot.arn)
            ));
        }
        context.renderer.document(&report);
        return Ok(0);
    }

    let target = Target {
        cluster: config.cluster.clone(),
        task: snapshot.arn.clone(),
        container: config.container.clone(),
        log: Some(source),
    };
    let settings = FollowSettings {
        stop_on_interrupt: false,
        ..follow_settings(context, None)
    };
    let followed = follow(&clients, &target, &settings, renderer, interrupts, "").await?;
    Ok(conclude(context, &mut report, followed, Some(&log)))
}

/// Prints the stream from its first line to its end, once; returns the companion's
/// result event when the stream has one.
async fn print_stream(
    context: &Context,
    source: &LogSource,
) -> Result<Option<CompanionResult>, LauncherError> {
    let renderer = &context.renderer;
    let mut follower = LogFollower::new(
        source.client.clone(),
        &source.group,
        &source.stream,
        FollowSettings::default().logs,
    );
    let (_phase, phase_rx) = watch::channel(TaskPhase {
        started: true,
        ..TaskPhase::default()
    });
    let on_line = |line: &LogLine| renderer.log_line(line);
    let on_problem = |problem: &str| renderer.warn(&format!("{problem}; retrying"));
    follower.run(phase_rx, false, &on_line, &on_problem).await?;
    Ok(follower.result().cloned())
}

/// A task ECS no longer describes: its stream, from the log group. With `--follow` it
/// exits as its launch did, from the companion's result event (123 without one: the
/// container ran, its code is unknown).
async fn remembered(
    context: &Context,
    clients: &Clients,
    task: &str,
    follow_logs: bool,
) -> Result<u8, LauncherError> {
    let config = &context.config;
    let run = log_history::find(clients, config, task).await?;
    context.renderer.note(&format!(
        "task {} is no longer known to ECS (it keeps stopped tasks for about an hour); its log stream {} {} keeps what it wrote",
        run.task_id, run.log.group, run.log.stream
    ));
    let source = LogSource {
        client: clients.logs_in(Some(&run.log.region)),
        group: run.log.group.clone(),
        stream: run.log.stream.clone(),
    };
    let mut report = TaskReport::remembered(config, &run);
    report.result = print_stream(context, &source).await?;
    report.exit_code = match (&report.result, follow_logs) {
        (_, false) => 0,
        (Some(result), true) => result.exit_code,
        (None, true) => launcher::RAN_EXIT_UNKNOWN,
    };
    context.renderer.document(&report);
    Ok(report.exit_code)
}
