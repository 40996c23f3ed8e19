//! `logs TASK [--follow]`: print a task's log stream from its first line; with
//! `--follow`, keep going until the task stops and the stream is drained, then exit
//! with the container's exit code (this is how a timed-out or detached run is
//! re-attached). Ctrl-C leaves the task running.

use anyhow::anyhow;
use tokio::sync::{mpsc, watch};

use crate::contract::events::LogLine;
use crate::contract::exit::ExitError;
use crate::launcher::clients::Clients;
use crate::launcher::context::Context;
use crate::launcher::job::follow::{FollowSettings, LogSource, Target, follow, reattach_hint};
use crate::launcher::job::report::TaskReport;
use crate::launcher::job::{conclude, describe_task, existing_log_target, follow_settings};
use crate::launcher::log_follower::{LogFollower, TaskPhase};

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
) -> Result<u8, ExitError> {
    let (task, follow_logs) = (args.task.as_str(), args.follow);
    let config = &context.config;
    let renderer = &context.renderer;
    let clients = Clients::connect(config).await?;
    let snapshot = describe_task(&clients, &config.cluster, task).await?;
    let Some(log) = existing_log_target(&clients, &snapshot, &config.container).await? else {
        return Err(ExitError::usage(anyhow!(
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
        let mut follower = LogFollower::new(
            source.client,
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
        if !snapshot.is_stopped() {
            renderer.note(&format!(
                "task {} is {}: {}",
                snapshot.id(),
                snapshot.last_status,
                reattach_hint(&snapshot.arn)
            ));
        }
        report.result = follower.result().cloned();
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
