//! Following a launched task to its end: status and logs polled side by side, so log
//! lines appear while the task runs, with `--timeout` and Ctrl-C handled on the way.
//!
//! The first Ctrl-C stops the task and keeps following until it has STOPPED and its
//! logs are drained; a second one leaves at once with the commands to re-attach.

use std::time::Duration;

use anyhow::anyhow;
use tokio::sync::{Notify, mpsc, watch};
use tokio::time::Instant;

use crate::exit::ExitError;
use crate::launcher::clients::{Clients, describe_error};
use crate::launcher::job::watch::{Poll, PollTiming, TaskWatcher};
use crate::launcher::log_follower::{LogFollower, LogTiming, TaskPhase};
use crate::launcher::render::Renderer;
use crate::launcher::task::{TaskSnapshot, task_id};
use crate::protocol::{Event, LogLine};

/// How following behaves.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FollowSettings {
    /// Give up waiting after this long (the task keeps running unless `stop_on_timeout`).
    pub timeout: Option<Duration>,
    /// Stop the task when the timeout is reached.
    pub stop_on_timeout: bool,
    /// Status polling.
    pub poll: PollTiming,
    /// Log reading.
    pub logs: LogTiming,
    /// Whether the first Ctrl-C stops the task (for a task this invocation launched)
    /// or just leaves (for one it only watches).
    pub stop_on_interrupt: bool,
}

impl Default for FollowSettings {
    fn default() -> Self {
        FollowSettings {
            timeout: None,
            stop_on_timeout: false,
            poll: PollTiming::default(),
            logs: LogTiming::default(),
            stop_on_interrupt: true,
        }
    }
}

/// A log stream to read, with the client for its region.
#[derive(Debug, Clone)]
pub struct LogSource {
    /// A CloudWatch Logs client in the stream's region.
    pub client: aws_sdk_cloudwatchlogs::Client,
    /// The log group.
    pub group: String,
    /// The stream.
    pub stream: String,
}

/// The task being followed and where its logs are.
#[derive(Debug, Clone)]
pub struct Target {
    /// Cluster name or ARN.
    pub cluster: String,
    /// Task ARN (or id).
    pub task: String,
    /// The container whose exit code counts.
    pub container: String,
    /// Its log stream, when the container logs to CloudWatch.
    pub log: Option<LogSource>,
}

/// How following ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Ending {
    /// The task stopped and its logs were drained.
    Stopped,
    /// `--timeout` was reached.
    TimedOut {
        /// Whether the task was asked to stop.
        stop_requested: bool,
    },
    /// Ctrl-C stopped the task, which then stopped and was drained.
    Interrupted,
    /// A second Ctrl-C: the launcher left without waiting.
    Abandoned,
}

/// What following saw.
#[derive(Debug, Clone, PartialEq)]
pub struct Followed {
    /// How it ended.
    pub ending: Ending,
    /// The last snapshot of the task.
    pub last: Option<TaskSnapshot>,
    /// The companion's final result event, if it was read.
    pub result: Option<Event>,
}

/// Statuses in which the container cannot have started yet.
fn before_start(status: &str) -> bool {
    matches!(status, "PROVISIONING" | "PENDING" | "UNKNOWN")
}

/// The commands to pick a task up again, for messages.
pub fn reattach_hint(task: &str) -> String {
    let id = task_id(task);
    format!(
        "follow it again with `run-admin-task logs {id} --follow`, stop it with `run-admin-task stop {id}`"
    )
}

/// Sends StopTask with `reason`.
pub async fn stop_task(
    clients: &Clients,
    cluster: &str,
    task: &str,
    reason: &str,
) -> Result<TaskSnapshot, ExitError> {
    let reply = clients
        .ecs
        .stop_task()
        .cluster(cluster)
        .task(task)
        .reason(reason)
        .send()
        .await
        .map_err(|e| {
            ExitError::runtime(anyhow!(
                "{}; {}",
                describe_error("StopTask", &e),
                reattach_hint(task)
            ))
        })?;
    Ok(reply.task().map(TaskSnapshot::from_sdk).unwrap_or_default())
}

/// Follows the task until it stops and its logs are drained, the timeout is reached,
/// or the operator interrupts. `interrupts` delivers one message per Ctrl-C (or
/// SIGTERM); `stop_reason` is the StopTask reason used for them.
pub async fn follow(
    clients: &Clients,
    target: &Target,
    settings: &FollowSettings,
    renderer: &Renderer,
    interrupts: &mut mpsc::UnboundedReceiver<()>,
    stop_reason: &str,
) -> Result<Followed, ExitError> {
    let started = Instant::now();
    let (phase_tx, phase_rx) = watch::channel(TaskPhase::default());
    let poke = Notify::new();
    let last = std::sync::Mutex::new(None::<TaskSnapshot>);

    let status_loop = async {
        let mut watcher = TaskWatcher::new(
            clients.ecs.clone(),
            &target.cluster,
            &target.task,
            settings.poll,
        );
        let mut shown: Option<String> = None;
        let mut problem_shown = false;
        loop {
            match watcher.poll().await? {
                Poll::Seen(snapshot) => {
                    problem_shown = false;
                    if shown.as_deref() != Some(snapshot.last_status.as_str()) {
                        renderer.status(snapshot.id(), &snapshot.last_status);
                        shown = Some(snapshot.last_status.clone());
                    }
                    let stopped = snapshot.is_stopped();
                    phase_tx.send_modify(|phase| {
                        phase.started |= !before_start(&snapshot.last_status);
                        phase.container_ran = snapshot
                            .container(&target.container)
                            .is_some_and(|c| c.exit_code.is_some());
                        if stopped && phase.stopped_at.is_none() {
                            phase.stopped_at = Some(stopped_at(&snapshot));
                        }
                    });
                    *last.lock().unwrap_or_else(|e| e.into_inner()) = Some(*snapshot);
                    if stopped {
                        return Ok::<(), ExitError>(());
                    }
                }
                Poll::NotVisibleYet => {}
                Poll::Unavailable(problem) => {
                    if !problem_shown {
                        renderer.warn(&format!("{problem}; retrying"));
                        problem_shown = true;
                    }
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(watcher.next_delay()) => {}
                _ = poke.notified() => watcher.poke(),
            }
        }
    };

    let logs_loop = async {
        let Some(source) = &target.log else {
            return None;
        };
        let mut follower = LogFollower::new(
            source.client.clone(),
            &source.group,
            &source.stream,
            settings.logs,
        );
        let on_line = |line: &LogLine| {
            renderer.log_line(line);
            if matches!(line.event, Some(Event::Result { .. })) {
                // The container is exiting: look for STOPPED now, not at the next
                // backed-off poll.
                poke.notify_one();
            }
        };
        let on_problem = |problem: &str| renderer.warn(&format!("{problem}; retrying"));
        if let Err(e) = follower.run(phase_rx, true, &on_line, &on_problem).await {
            renderer.warn(&format!("no more logs: {e}"));
        }
        follower.result().cloned()
    };

    let both = async {
        let (status, result) = tokio::join!(status_loop, logs_loop);
        status.map(|()| result)
    };
    tokio::pin!(both);

    let deadline = settings.timeout.map(|t| started + t);
    let mut interrupted = false;
    let snapshot = |last: &std::sync::Mutex<Option<TaskSnapshot>>| {
        last.lock().unwrap_or_else(|e| e.into_inner()).clone()
    };
    loop {
        tokio::select! {
            outcome = &mut both => {
                let result = outcome?;
                return Ok(Followed {
                    ending: if interrupted { Ending::Interrupted } else { Ending::Stopped },
                    last: snapshot(&last),
                    result,
                });
            }
            Some(()) = interrupts.recv() => {
                if interrupted || !settings.stop_on_interrupt {
                    renderer.warn(&format!("left task {} behind: {}", task_id(&target.task), reattach_hint(&target.task)));
                    return Ok(Followed { ending: Ending::Abandoned, last: snapshot(&last), result: None });
                }
                interrupted = true;
                renderer.warn(&format!(
                    "interrupted: stopping task {} (Ctrl-C again to leave without waiting)",
                    task_id(&target.task)
                ));
                if let Err(e) = stop_task(clients, &target.cluster, &target.task, stop_reason).await {
                    renderer.warn(&format!("{e}"));
                }
                poke.notify_one();
            }
            _ = sleep_until_deadline(deadline) => {
                let stop_requested = settings.stop_on_timeout;
                if stop_requested {
                    let reason = format!(
                        "Timed out after {} (run-admin-task --timeout)",
                        humantime::format_duration(settings.timeout.unwrap_or_default())
                    );
                    if let Err(e) = stop_task(clients, &target.cluster, &target.task, &reason).await {
                        renderer.warn(&format!("{e}"));
                    }
                }
                return Ok(Followed { ending: Ending::TimedOut { stop_requested }, last: snapshot(&last), result: None });
            }
        }
    }
}

/// When the task stopped, on the local clock: now, unless ECS says it stopped over a
/// minute ago (a task picked up again later), so the drain does not wait for lines that
/// arrived long ago. Recent stops use the local clock, which clock skew cannot shorten.
fn stopped_at(task: &TaskSnapshot) -> Instant {
    let now = Instant::now();
    let age = task
        .stopped_at
        .and_then(|t| (chrono::Utc::now() - t).to_std().ok())
        .filter(|age| *age > Duration::from_secs(60));
    age.and_then(|age| now.checked_sub(age)).unwrap_or(now)
}

async fn sleep_until_deadline(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}
