//! Following a launched task to its end: status and logs polled side by side, so log
//! lines appear while the task runs, with `--timeout` and Ctrl-C handled on the way.
//!
//! The job is the container, not the ECS task around it: following ends when the
//! container's exit code is known and its logs are complete, while Fargate may take
//! tens of seconds more to release the task. The first Ctrl-C stops the task and keeps
//! following, for a bounded time, until its container has exited; a second one leaves
//! at once with the commands to re-attach.

use std::time::Duration;

use anyhow::anyhow;
use tokio::sync::{Notify, mpsc, watch};
use tokio::time::Instant;

use crate::contract::events::{Event, LogLine};
use crate::contract::result::CompanionResult;
use crate::launcher::aws_api::aws_errors::describe_error;
use crate::launcher::aws_api::clients::Clients;
use crate::launcher::error::{LaunchError, LauncherError};
use crate::launcher::job::watch::{Poll, PollTiming, TaskWatcher};
use crate::launcher::log_follower::{LogFollower, LogTiming, TaskPhase};
use crate::launcher::output::Renderer;
use crate::launcher::task::{TaskSnapshot, task_id};
use crate::signals::Handled;

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
    /// After a stop this launcher asked for (the first Ctrl-C, `--stop-on-timeout`),
    /// how long to wait for the container to exit and its result to be read.
    pub stop_wait: Duration,
    /// Follow until STOPPED rather than until the container's exit and its logs.
    pub wait_stopped: bool,
    /// A task not started after this long gets one warning.
    pub slow_start: Duration,
}

impl Default for FollowSettings {
    fn default() -> Self {
        FollowSettings {
            timeout: None,
            stop_on_timeout: false,
            poll: PollTiming::default(),
            logs: LogTiming::default(),
            stop_on_interrupt: true,
            stop_wait: stop_wait(Duration::from_secs(30)),
            wait_stopped: false,
            slow_start: crate::launcher::config::DEFAULT_SLOW_START,
        }
    }
}

/// The wait after a StopTask for a container whose `stopTimeout` is `stop_timeout`:
/// ECS sends SIGKILL at the end of it, and the companion's result then still needs the
/// awslogs flush (5 s) and a log read to arrive.
pub fn stop_wait(stop_timeout: Duration) -> Duration {
    stop_timeout + Duration::from_secs(10)
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
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Ending {
    /// The container exited (or the task stopped) and its logs were read to the end.
    Finished,
    /// `--timeout` was reached.
    TimedOut {
        /// Whether the task was asked to stop.
        stop_requested: bool,
    },
    /// Ctrl-C stopped the task, whose container then exited and was drained.
    Interrupted,
    /// A second Ctrl-C, or the wait after the first one ran out: the launcher left
    /// without waiting.
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
    pub result: Option<CompanionResult>,
    /// From the container's exit to the end of following.
    pub after_exit: Option<Duration>,
}

/// Statuses in which the container cannot have started yet.
fn before_start(status: &str) -> bool {
    matches!(status, "PROVISIONING" | "PENDING" | "UNKNOWN")
}

/// The commands to pick a task up again, for messages.
pub(crate) fn reattach_hint(task: &str) -> String {
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
) -> Result<TaskSnapshot, LauncherError> {
    let reply = clients
        .ecs
        .stop_task()
        .cluster(cluster)
        .task(task)
        .reason(reason)
        .send()
        .await
        .map_err(|e| {
            LaunchError::unfollowable(anyhow!(
                "{}; {}",
                describe_error("StopTask", &e),
                reattach_hint(task)
            ))
        })?;
    Ok(reply.task().map(TaskSnapshot::from_sdk).unwrap_or_default())
}

/// Follows the task until its container has exited and its logs are complete (or, with
/// `wait_stopped`, until the task is STOPPED), the timeout is reached, or the operator
/// interrupts. `interrupts` delivers one message per Ctrl-C (or SIGTERM); `stop_reason`
/// is the StopTask reason used for them. A task that never ran its container ends at
/// STOPPED, where ECS puts the reason.
pub async fn follow(
    clients: &Clients,
    target: &Target,
    settings: &FollowSettings,
    renderer: &Renderer,
    interrupts: &mut mpsc::UnboundedReceiver<()>,
    stop_reason: &str,
) -> Result<Followed, LauncherError> {
    let _handled = Handled::claim();
    let started = Instant::now();
    let (phase_tx, phase_rx) = watch::channel(TaskPhase::default());
    let poke = Notify::new();
    let last = std::sync::Mutex::new(None::<TaskSnapshot>);
    // When this launcher first saw the exit code: what `after_exit` counts from.
    let exit_seen = std::sync::Mutex::new(None::<Instant>);

    let status_loop = async {
        let mut watcher = TaskWatcher::new(
            clients.ecs.clone(),
            &target.cluster,
            &target.task,
            settings.poll,
        )
        .within(&clients.budget);
        let mut shown: Option<String> = None;
        let mut problem_shown = false;
        let mut slow_start_warned = false;
        loop {
            match watcher.poll().await? {
                Poll::Seen(snapshot) => {
                    problem_shown = false;
                    if shown.as_deref() != Some(snapshot.last_status.as_str()) {
                        renderer.status(snapshot.id(), &snapshot.last_status);
                        shown = Some(snapshot.last_status.clone());
                    }
                    if !slow_start_warned
                        && snapshot.is_starting()
                        && started.elapsed() > settings.slow_start
                    {
                        slow_start_warned = true;
                        renderer.warn(&slow_start_warning(&snapshot, started.elapsed()));
                    }
                    let exited = snapshot.exit_code(&target.container).is_some();
                    let stopped = snapshot.is_stopped();
                    if exited || stopped {
                        exit_seen
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .get_or_insert_with(Instant::now);
                    }
                    phase_tx.send_modify(|phase| {
                        phase.started |= !before_start(&snapshot.last_status);
                        phase.container_ran = exited;
                        if (exited || stopped) && phase.exited_at.is_none() {
                            phase.exited_at = Some(exited_at(&snapshot));
                        }
                    });
                    *last.lock().unwrap_or_else(|e| e.into_inner()) = Some(*snapshot);
                    if stopped || (exited && !settings.wait_stopped) {
                        return Ok::<(), LauncherError>(());
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
        )
        .within(&clients.budget);
        let on_line = |line: &LogLine| {
            renderer.log_line(line);
            if matches!(line.event, Some(Event::Result { .. })) {
                // The container is exiting: look for its exit code now, not at the next
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

    let mut deadline = settings.timeout.map(|t| started + t);
    // Why this launcher asked the task to stop, once it has. StopTask then runs beside
    // following, and the wait for the container to exit is bounded.
    let mut stopping: Option<Ending> = None;
    let (stop_tx, mut stop_results) = mpsc::unbounded_channel();
    let mut stop_deadline = None;
    let mut stop_answered = false;
    let followed = |ending: Ending, result: Option<CompanionResult>| Followed {
        ending,
        last: last.lock().unwrap_or_else(|e| e.into_inner()).clone(),
        result,
        after_exit: exit_seen
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .map(|t| t.elapsed()),
    };
    loop {
        tokio::select! {
            outcome = &mut both => {
                let result = outcome?;
                return Ok(followed(stopping.unwrap_or(Ending::Finished), result));
            }
            Some(()) = interrupts.recv() => {
                if stopping.is_some() || !settings.stop_on_interrupt {
                    if stopping.is_some() && !stop_answered {
                        // The StopTask sent at the first Ctrl-C is still in flight.
                        match tokio::time::timeout(STOP_CONFIRM_WAIT, stop_results.recv()).await {
                            Ok(Some(Ok(_))) => renderer.warn("StopTask was accepted"),
                            Ok(Some(Err(e))) => renderer.warn(&format!("{e}")),
                            _ => renderer.warn("StopTask was not confirmed"),
                        }
                    }
                    renderer.warn(&format!("left task {} behind: {}", task_id(&target.task), reattach_hint(&target.task)));
                    return Ok(followed(Ending::Abandoned, None));
                }
                stopping = Some(Ending::Interrupted);
                renderer.warn(&format!(
                    "interrupted: stopping task {} (Ctrl-C again to leave without waiting)",
                    task_id(&target.task)
                ));
                stop_beside(clients, target, stop_reason, &stop_tx);
                stop_deadline = Some(Instant::now() + settings.stop_wait);
                poke.notify_one();
            }
            Some(stopped) = stop_results.recv() => {
                stop_answered = true;
                if let Err(e) = stopped {
                    renderer.warn(&format!("{e}"));
                }
            }
            _ = sleep_until_deadline(stop_deadline) => {
                renderer.warn(&format!(
                    "task {} was asked to stop but its container has not exited within {}: {}",
                    task_id(&target.task),
                    humantime::format_duration(settings.stop_wait),
                    reattach_hint(&target.task)
                ));
                let ending = match stopping {
                    Some(timed_out @ Ending::TimedOut { .. }) => timed_out,
                    _ => Ending::Abandoned,
                };
                return Ok(followed(ending, None));
            }
            _ = sleep_until_deadline(deadline) => {
                deadline = None;
                let timeout = humantime::format_duration(settings.timeout.unwrap_or_default());
                if !settings.stop_on_timeout {
                    return Ok(followed(Ending::TimedOut { stop_requested: false }, None));
                }
                stopping = Some(Ending::TimedOut { stop_requested: true });
                renderer.warn(&format!(
                    "timed out after {timeout}: stopping task {} (Ctrl-C to leave without waiting)",
                    task_id(&target.task)
                ));
                stop_beside(clients, target, &format!("Timed out after {timeout} (run-admin-task --timeout)"), &stop_tx);
                stop_deadline = Some(Instant::now() + settings.stop_wait);
                poke.notify_one();
            }
        }
    }
}

/// Sends StopTask without waiting for it; its answer arrives on `answers`.
fn stop_beside(
    clients: &Clients,
    target: &Target,
    reason: &str,
    answers: &mpsc::UnboundedSender<Result<TaskSnapshot, LauncherError>>,
) {
    let (clients, cluster, task, reason, answers) = (
        clients.clone(),
        target.cluster.clone(),
        target.task.clone(),
        reason.to_string(),
        answers.clone(),
    );
    tokio::spawn(async move {
        let _ = answers.send(stop_task(&clients, &cluster, &task, &reason).await);
    });
}

/// How long a StopTask on the way out (`--stop-on-timeout`, a second Ctrl-C, a signal
/// during RunTask) waits for its answer: the exit must not wait on a stalled endpoint.
const STOP_CONFIRM_WAIT: Duration = Duration::from_secs(2);

/// Sends StopTask on the way out, waiting at most [`STOP_CONFIRM_WAIT`] for the answer;
/// a failure or no answer is told with how to stop the task by hand. Whether ECS
/// accepted it.
pub(crate) async fn stop_on_the_way_out(
    clients: &Clients,
    cluster: &str,
    task: &str,
    reason: &str,
    renderer: &Renderer,
) -> bool {
    match tokio::time::timeout(STOP_CONFIRM_WAIT, stop_task(clients, cluster, task, reason)).await {
        Ok(Ok(_)) => true,
        Ok(Err(e)) => {
            renderer.warn(&format!("{e}"));
            false
        }
        Err(_) => {
            renderer.warn(&format!(
                "StopTask got no answer within {}s; {}",
                STOP_CONFIRM_WAIT.as_secs(),
                reattach_hint(task)
            ));
            false
        }
    }
}

/// How far before the moment its exit code was first seen the container's exit
/// (ECS's `executionStoppedAt`) is believed: a local clock ahead of ECS's cannot cut the
/// quiet window shorter than this.
const EXIT_CLOCK_ALLOWANCE: Duration = Duration::from_secs(2);

/// When the container exited (or the task stopped), on the local clock: ECS's
/// `executionStoppedAt` (else `stoppedAt`) within [`EXIT_CLOCK_ALLOWANCE`] of now, and
/// its full age for a task that ended over a minute ago (one picked up again later,
/// whose lines all arrived long since).
fn exited_at(task: &TaskSnapshot) -> Instant {
    let now = Instant::now();
    let age = task
        .execution_stopped_at
        .or(task.stopped_at)
        .and_then(|t| (chrono::Utc::now() - t).to_std().ok())
        .unwrap_or_default();
    let believed = if age > Duration::from_secs(60) {
        age
    } else {
        age.min(EXIT_CLOCK_ALLOWANCE)
    };
    now.checked_sub(believed).unwrap_or(now)
}

/// The one warning for a task that has not started after `--slow-start`, with what
/// usually holds a Fargate task there.
fn slow_start_warning(task: &TaskSnapshot, waited: Duration) -> String {
    format!(
        "task {} is still {} after {}s; likely causes: no Fargate capacity in these subnets' zones \
         (try other subnets or --capacity-provider), a slow image pull (a large image, or ECR \
         reached through a NAT gateway: add ECR and S3 VPC endpoints), or secrets being fetched \
         (the execution role's access, a path to Secrets Manager); `run-admin-task status {}` shows more",
        task.id(),
        task.last_status,
        waited.as_secs(),
        task.id()
    )
}

async fn sleep_until_deadline(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}
