//! Following a task's status with DescribeTasks: often while it starts (a short task is
//! reported within a fraction of a second of stopping), backing off to a ceiling while it
//! runs, with jitter so many launchers do not poll in step. A task that DescribeTasks
//! calls MISSING right after RunTask is not yet visible (eventual consistency), not gone.

use std::time::Duration;

use anyhow::anyhow;
use std::sync::Arc;

use tokio::time::Instant;

use crate::launcher::aws_api::api_budget::{ApiBudget, Described, Rates};
use crate::launcher::error::{LaunchError, LauncherError};
use crate::launcher::task::TaskSnapshot;

/// How often to ask, and how long MISSING is tolerated.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PollTiming {
    /// The interval after every status change (and after StopTask).
    pub fast: Duration,
    /// The ceiling while RUNNING.
    pub running_ceiling: Duration,
    /// The ceiling in the other states (starting, stopping).
    pub transitional_ceiling: Duration,
    /// How long after the watch starts a MISSING answer means "not visible yet".
    pub missing_grace: Duration,
    /// Relative jitter (0.2 = ±20%).
    pub jitter: f64,
}

impl Default for PollTiming {
    fn default() -> Self {
        PollTiming {
            fast: Duration::from_millis(250),
            running_ceiling: Duration::from_secs(5),
            transitional_ceiling: Duration::from_secs(1),
            missing_grace: Duration::from_secs(30),
            jitter: 0.2,
        }
    }
}

/// One DescribeTasks answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Poll {
    /// The task as it is now.
    Seen(Box<TaskSnapshot>),
    /// Not visible yet (within the grace period).
    NotVisibleYet,
    /// The call failed in a way worth retrying (throttling after the SDK's own retries,
    /// a network failure); the text says what happened.
    Unavailable(String),
}

/// Polls one task's status with an adaptive interval.
#[derive(Debug)]
pub struct TaskWatcher {
    ecs: aws_sdk_ecs::Client,
    budget: Arc<ApiBudget>,
    cluster: String,
    task: String,
    timing: PollTiming,
    since: Instant,
    interval: Duration,
    last_status: Option<String>,
    /// When the call behind the last answer started: a newer answer, from a call another
    /// watcher of the job caused, is taken without a call of its own.
    answered: Option<Instant>,
}

impl TaskWatcher {
    /// Watches `task` (id or ARN) on `cluster`, starting now.
    pub fn new(ecs: aws_sdk_ecs::Client, cluster: &str, task: &str, timing: PollTiming) -> Self {
        TaskWatcher {
            ecs,
            budget: Arc::new(ApiBudget::new(Rates::UNPACED)),
            cluster: cluster.to_string(),
            task: task.to_string(),
            timing,
            since: Instant::now(),
            interval: timing.fast,
            last_status: None,
            answered: None,
        }
    }

    /// Asks within the invocation's DescribeTasks budget (one call for every task of a
    /// job that waits for its turn) instead of on its own.
    pub(crate) fn within(mut self, budget: &Arc<ApiBudget>) -> Self {
        self.budget = Arc::clone(budget);
        self
    }

    /// Asks DescribeTasks once.
    pub async fn poll(&mut self) -> Result<Poll, LauncherError> {
        let (asked_at, answer) = self
            .budget
            .describe(&self.ecs, &self.cluster, &self.task, self.answered)
            .await;
        self.answered = Some(asked_at);
        let reason = match answer {
            Described::Failed {
                transient: true,
                message,
            } => {
                self.back_off();
                return Ok(Poll::Unavailable(message));
            }
            Described::Failed {
                transient: false,
                message,
            } => {
                return Err(LaunchError::unfollowable(anyhow!(
                    "{message}; the task may still be running: check credentials, then `run-admin-task status {}`",
                    self.task
                )));
            }
            Described::Missing(reason) => reason,
            Described::Task(snapshot) => {
                if self.last_status.as_deref() == Some(snapshot.last_status.as_str()) {
                    self.back_off();
                } else {
                    self.interval = self.timing.fast;
                    self.last_status = Some(snapshot.last_status.clone());
                }
                return Ok(Poll::Seen(snapshot));
            }
        };
        if self.since.elapsed() < self.timing.missing_grace {
            self.interval = self.timing.fast;
            return Ok(Poll::NotVisibleYet);
        }
        Err(LaunchError::never_ran(anyhow!(
            "task {} is not on cluster {} ({reason}); check the id, --cluster and --region",
            self.task,
            self.cluster
        )))
    }

    fn back_off(&mut self) {
        let ceiling = match self.last_status.as_deref() {
            Some("RUNNING") => self.timing.running_ceiling,
            _ => self.timing.transitional_ceiling,
        };
        self.interval = (self.interval * 2).min(ceiling);
    }

    /// Returns to fast polling, e.g. right after StopTask, with an answer from a call
    /// that starts from now on.
    pub fn poke(&mut self) {
        self.interval = self.timing.fast;
        self.answered = Some(Instant::now());
    }

    /// The wait before the next poll, jittered.
    pub fn next_delay(&self) -> Duration {
        let factor = 1.0 + self.timing.jitter * (fastrand::f64() * 2.0 - 1.0);
        self.interval.mul_f64(factor.max(0.0))
    }

    /// The un-jittered interval (for tests and diagnostics).
    pub fn interval(&self) -> Duration {
        self.interval
    }
}
