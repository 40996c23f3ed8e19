//! Reading a container's log stream from its first line, every line once and in order,
//! live while the task runs, and knowing when the last line has arrived.
//!
//! GetLogEvents with `startFromHead` and the forward token reads forward; only a token
//! that comes back unchanged says "this is the end of what exists now" (empty pages
//! happen before that). A stream that does not exist yet is simply not created yet.
//! Once the container has exited, the stream is complete when the companion's final
//! `result` event has arrived (as the last line read, no further read is spent to see
//! that nothing follows it). Without one (another program, or a companion killed
//! before its result), it is complete when it has been read to its end after a quiet
//! window counted from the container's exit: the awslogs driver flushes its buffer when
//! the container stops but sends that last batch asynchronously, so lines may still
//! arrive a few seconds after the exit code is visible.

use std::sync::Arc;
use std::time::Duration;

use anyhow::anyhow;
use aws_sdk_cloudwatchlogs::operation::get_log_events::GetLogEventsError;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::contract::events::LogLine;
use crate::contract::result::CompanionResult;
use crate::launcher::aws_api::api_budget::ApiBudget;
use crate::launcher::aws_api::aws_errors::{describe_error, is_transient};
use crate::launcher::error::{LaunchError, LauncherError};

/// Where a task's container logs, as an operator needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LogTarget {
    /// The log group.
    pub group: String,
    /// The stream of this task's container.
    pub stream: String,
    /// The log region (the awslogs region, else the client's).
    pub region: String,
}

impl LogTarget {
    /// The CloudWatch console link to the stream.
    pub fn console_url(&self) -> String {
        console_url(&self.region, &self.group, &self.stream)
    }
}

const CONSOLE_SAFE: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.');

/// The CloudWatch console page of one log stream. The console expects its path parts
/// URL-encoded twice with `$` in place of `%` (`/` becomes `$252F`).
pub fn console_url(region: &str, group: &str, stream: &str) -> String {
    let escape = |s: &str| {
        utf8_percent_encode(s, CONSOLE_SAFE)
            .to_string()
            .replace('%', "$25")
    };
    format!(
        "https://{region}.console.aws.amazon.com/cloudwatch/home?region={region}#logsV2:log-groups/log-group/{}/log-events/{}",
        escape(group),
        escape(stream)
    )
}

/// How often to read, and the drain rule's limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogTiming {
    /// The wait at the end of the stream (or before it exists) while tailing; it
    /// doubles while the stream stays quiet, up to `tail_ceiling`.
    pub tail_interval: Duration,
    /// The longest wait between reads of a quiet stream of a running task: keeps a long,
    /// silent task at a few calls a minute (the awslogs driver batches every 5 s anyway).
    pub tail_ceiling: Duration,
    /// The wait after an empty page that is not yet the end.
    pub empty_page_interval: Duration,
    /// The wait at the end of the stream once the container has exited: its last lines
    /// are due, and the launcher's answer waits for them (a few seconds at most).
    pub drain_interval: Duration,
    /// After the container exited, how long lines may still arrive for a stream
    /// without a result event: the awslogs driver's 5-second batch interval bounds the
    /// delay of its last, asynchronous flush.
    pub quiet_after_exit: Duration,
}

impl Default for LogTiming {
    fn default() -> Self {
        LogTiming {
            tail_interval: Duration::from_millis(500),
            tail_ceiling: Duration::from_secs(2),
            empty_page_interval: Duration::from_millis(100),
            drain_interval: Duration::from_millis(200),
            quiet_after_exit: Duration::from_secs(5),
        }
    }
}

/// What the log reader needs to know about the task, kept current by the status loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TaskPhase {
    /// The container may have started (the task is past PROVISIONING and PENDING), so
    /// its stream may exist.
    pub started: bool,
    /// When the container exited (or, if it never ran, when the task stopped), on the
    /// local clock: what the quiet window counts from.
    pub exited_at: Option<Instant>,
    /// Whether the container ran at all (it has an exit code); a container that never
    /// ran writes no stream, so there is nothing to wait for.
    pub container_ran: bool,
}

/// One GetLogEvents answer.
#[derive(Debug, Clone, PartialEq)]
pub enum Page {
    /// The stream does not exist yet.
    NotCreated,
    /// Some lines (possibly none); `at_end` when the forward token came back unchanged.
    Lines {
        /// The messages, in order, each read once.
        lines: Vec<LogLine>,
        /// Whether this is the end of what exists now.
        at_end: bool,
    },
    /// A failure worth retrying later.
    Unavailable(String),
}

/// Reads one log stream forward from its first line.
#[derive(Debug)]
pub struct LogFollower {
    logs: aws_sdk_cloudwatchlogs::Client,
    group: String,
    stream: String,
    token: Option<String>,
    timing: LogTiming,
    result: Option<CompanionResult>,
    budget: Option<Arc<ApiBudget>>,
}

impl LogFollower {
    /// A reader of `stream` in `group`, at its first line.
    pub fn new(
        logs: aws_sdk_cloudwatchlogs::Client,
        group: &str,
        stream: &str,
        timing: LogTiming,
    ) -> Self {
        LogFollower {
            logs,
            group: group.to_string(),
            stream: stream.to_string(),
            token: None,
            timing,
            result: None,
            budget: None,
        }
    }

    /// Reads within the invocation's GetLogEvents pace, shared by every log tail of the
    /// job, instead of as fast as its own timing allows.
    pub(crate) fn within(mut self, budget: &Arc<ApiBudget>) -> Self {
        self.budget = Some(Arc::clone(budget));
        self
    }

    /// The companion's final result event, once read.
    pub fn result(&self) -> Option<&CompanionResult> {
        self.result.as_ref()
    }

    /// Reads the next page, in its turn (for a task still running).
    pub async fn next_page(&mut self) -> Result<Page, LauncherError> {
        if let Some(budget) = &self.budget {
            budget.log_reads.wait_turn(false).await;
        }
        self.read_page().await
    }

    /// Reads the next page now.
    async fn read_page(&mut self) -> Result<Page, LauncherError> {
        let reply = self
            .logs
            .get_log_events()
            .log_group_name(&self.group)
            .log_stream_name(&self.stream)
            .start_from_head(true)
            .set_next_token(self.token.clone())
            .send()
            .await;
        let reply = match reply {
            Ok(reply) => reply,
            Err(e) => {
                if matches!(
                    e.as_service_error(),
                    Some(GetLogEventsError::ResourceNotFoundException(_))
                ) {
                    return Ok(Page::NotCreated);
                }
                if is_transient(&e) {
                    return Ok(Page::Unavailable(describe_error("GetLogEvents", &e)));
                }
                return Err(LaunchError::unfollowable(anyhow!(
                    "{}; check the role may read log group {} (logs:GetLogEvents)",
                    describe_error("GetLogEvents", &e),
                    self.group
                )));
            }
        };
        let next = reply.next_forward_token().map(str::to_string);
        let at_end = next.is_some() && next == self.token;
        if next.is_some() {
            self.token = next;
        }
        let lines: Vec<LogLine> = reply
            .events()
            .iter()
            .map(|e| LogLine::parse(e.message().unwrap_or_default()))
            .collect();
        Ok(Page::Lines { lines, at_end })
    }

    /// The companion's result event of a finished task, from the last page of its
    /// stream (the result is the companion's last line); `None` when there is none,
    /// or the stream cannot be read.
    pub(crate) async fn last_result(&self) -> Option<CompanionResult> {
        let reply = self
            .logs
            .get_log_events()
            .log_group_name(&self.group)
            .log_stream_name(&self.stream)
            .start_from_head(false)
            .limit(100)
            .send()
            .await
            .ok()?;
        reply
            .events()
            .iter()
            .rev()
            .find_map(|e| LogLine::parse(e.message().unwrap_or_default()).event)
            .as_ref()
            .and_then(CompanionResult::read)
    }

    /// The drain rule, asked at the end of the stream: whether every line has arrived.
    pub(crate) fn drained(&self, phase: &TaskPhase, stream_exists: bool) -> bool {
        // A result event while the container still runs is not the end: a command line
        // may run the companion more than once.
        let Some(exited_at) = phase.exited_at else {
            return false;
        };
        if self.result.is_some() {
            return true;
        }
        if !stream_exists && !phase.container_ran {
            return true;
        }
        Instant::now().duration_since(exited_at) > self.timing.quiet_after_exit
    }

    /// Reads until the stream is drained, handing every line to `on_line`; the
    /// protocol events seen on the way decide when that is. With `follow` false, stops
    /// at the current end of the stream instead. `on_problem` hears about retried
    /// failures.
    pub async fn run(
        &mut self,
        mut phase: watch::Receiver<TaskPhase>,
        follow: bool,
        on_line: &(dyn Fn(&LogLine) + Sync),
        on_problem: &(dyn Fn(&str) + Sync),
    ) -> Result<(), LauncherError> {
        let mut quiet_delay = self.timing.tail_interval;
        // Lines since the last wait: the page that reaches the end is usually empty.
        let mut fresh_lines = false;
        loop {
            let current = *phase.borrow_and_update();
            // Once the container has exited, this tail's turns go first.
            let draining = current.exited_at.is_some();
            if follow && !current.started && current.exited_at.is_none() {
                if phase.changed().await.is_err() {
                    return Ok(());
                }
                continue;
            }
            if let Some(budget) = self.budget.clone() {
                // A tail waiting in the normal lane when its container exits asks again
                // in the urgent one: the job's answer waits for its last lines.
                tokio::select! {
                    () = budget.log_reads.wait_turn(draining) => {}
                    Ok(()) = phase.changed(), if !draining => continue,
                }
            }
            match self.read_page().await? {
                Page::NotCreated => {
                    if !follow || self.drained(&current, false) {
                        return Ok(());
                    }
                    tokio::time::sleep(self.timing.tail_interval).await;
                }
                Page::Unavailable(problem) => {
                    on_problem(&problem);
                    tokio::time::sleep(self.timing.tail_interval).await;
                }
                Page::Lines { lines, at_end } => {
                    let empty = lines.is_empty();
                    fresh_lines |= !empty;
                    let mut ends_with_result = false;
                    for line in lines {
                        on_line(&line);
                        let result = line.event.as_ref().and_then(CompanionResult::read);
                        ends_with_result = result.is_some();
                        if result.is_some() {
                            self.result = result;
                        }
                    }
                    // The result event is the companion's last line: once the container
                    // has exited, no read is needed to see that nothing follows it.
                    if follow && ends_with_result && self.drained(&phase.borrow(), true) {
                        return Ok(());
                    }
                    if !at_end {
                        if empty {
                            tokio::time::sleep(self.timing.empty_page_interval).await;
                        }
                        continue;
                    }
                    if !follow || self.drained(&current, true) {
                        return Ok(());
                    }
                    quiet_delay = match current.exited_at {
                        // Draining after the exit: read again soon, and once more just
                        // after the quiet window ends.
                        Some(exited_at) => {
                            let window_left = (exited_at + self.timing.quiet_after_exit)
                                .saturating_duration_since(Instant::now());
                            self.timing
                                .drain_interval
                                .min(window_left + Duration::from_millis(10))
                        }
                        None if std::mem::take(&mut fresh_lines) => self.timing.tail_interval,
                        None => (quiet_delay * 2).min(self.timing.tail_ceiling),
                    };
                    // Wake early when the task's phase changes: the exit may mean the
                    // drain is already complete. (A closed channel disables the branch.)
                    tokio::select! {
                        _ = tokio::time::sleep(quiet_delay) => {}
                        Ok(()) = phase.changed() => {}
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn console_link_double_escapes_like_the_console() {
        assert_eq!(
            console_url("eu-west-1", "/ecs/everruns-admin", "ecs/admin/abc"),
            "https://eu-west-1.console.aws.amazon.com/cloudwatch/home?region=eu-west-1#logsV2:log-groups/log-group/$252Fecs$252Feverruns-admin/log-events/ecs$252Fadmin$252Fabc"
        );
    }
}
