//! The `--output json` document: exactly one on stdout at the end of `run`, the
//! companion commands and `status`, so CI can read the result without parsing text.
//!
//! Fields (absent values are `null`, lists may be empty):
//!
//! | field | meaning |
//! |---|---|
//! | `task_arn`, `task_id` | the task |
//! | `cluster` | the cluster as configured (name or ARN) |
//! | `task_definition` | the task definition ARN the task runs (as configured when not launched) |
//! | `container` | the container whose exit code counts |
//! | `command` | the container command override, as an array |
//! | `started_by` | the task's `startedBy` |
//! | `operator` | who launched it (`alice@laptop`, `github:octocat@org/repo run 1`) |
//! | `created_at`, `pull_started_at`, `pull_stopped_at`, `started_at`, `execution_stopped_at`, `stopping_at`, `stopped_at` | ECS timestamps (RFC 3339); `execution_stopped_at` is the container's exit, `stopped_at` the end of deprovisioning (`null` when not waited for) |
//! | `phases` | seconds spent in each phase: `capacity` (created to image pull), `image_pull`, `start` (pulled to running), `run` (running to the container's exit), `after_exit` (the exit to the launcher's verdict) |
//! | `attached` | whether RunTask returned a task an earlier run with the same idempotency key had started |
//! | `last_status` | the task's last status seen |
//! | `stop_code`, `stopped_reason` | ECS's stop code and reason |
//! | `container_exit_code`, `container_reason` | the named container's exit code and reason |
//! | `exit_code` | the launcher's own exit status (see the exit code table) |
//! | `timed_out`, `interrupted` | whether `--timeout` or Ctrl-C ended the wait |
//! | `result` | the companion's final result event (`command`, `exit_code`, `summary`, `ts`) |
//! | `log_group`, `log_stream`, `console_url` | where the container's logs are |
//! | `hints` | what to check for a recognised failure |
//! | `failures` | RunTask's `failures[]` (`arn`, `reason`, `detail`) |
//! | `failed_starts` | the starts before the last one that never ran a container: refused for want of capacity, or a task that stopped with `TaskFailedToStart` for a passing reason (`attempt`, `failures`: RunTask's, or the task's ARN, stop code and reason) |
//! | `error` | what went wrong when the launcher itself failed |
//! | `api_calls` | the AWS calls this invocation made, by API (`DescribeTasks`, `GetLogEvents`, ...; retried attempts included); in a sharded job's document, not in each shard's entry |

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::contract::result::CompanionResult;
use crate::contract::summary::{Counts, TableReport};
use crate::launcher::config::LaunchConfig;
use crate::launcher::job::outcome::TaskOutcome;
use crate::launcher::log_history::RememberedRun;
use crate::launcher::task::TaskSnapshot;

/// A RunTask `failures[]` entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LaunchFailure {
    /// The resource it concerns.
    pub arn: Option<String>,
    /// Why (`RESOURCE:MEMORY`, `MISSING`, ...).
    pub reason: Option<String>,
    /// More detail, when ECS gives it.
    pub detail: Option<String>,
}

/// A start before the last one of a job (`--start-retries`): no container ran.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FailedStart {
    /// Which start, from 1.
    pub attempt: u32,
    /// RunTask's `failures[]` for it, or the stopped task's ARN, stop code and reason.
    pub failures: Vec<LaunchFailure>,
}

/// The JSON report of one task (see the module docs for the fields).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct TaskReport {
    /// The task ARN.
    pub task_arn: Option<String>,
    /// The task id.
    pub task_id: Option<String>,
    /// The cluster.
    pub cluster: String,
    /// The task definition.
    pub task_definition: Option<String>,
    /// The container whose exit code counts.
    pub container: String,
    /// The container command override.
    pub command: Vec<String>,
    /// The task's startedBy.
    pub started_by: Option<String>,
    /// Who launched it.
    pub operator: Option<String>,
    /// When the task was created.
    pub created_at: Option<DateTime<Utc>>,
    /// When its image pull began.
    pub pull_started_at: Option<DateTime<Utc>>,
    /// When its image pull ended.
    pub pull_stopped_at: Option<DateTime<Utc>>,
    /// When its containers started.
    pub started_at: Option<DateTime<Utc>>,
    /// When its essential container exited.
    pub execution_stopped_at: Option<DateTime<Utc>>,
    /// When it began stopping.
    pub stopping_at: Option<DateTime<Utc>>,
    /// When it stopped.
    pub stopped_at: Option<DateTime<Utc>>,
    /// Its last status.
    pub last_status: Option<String>,
    /// ECS's stop code.
    pub stop_code: Option<String>,
    /// ECS's stop reason.
    pub stopped_reason: Option<String>,
    /// The named container's exit code.
    pub container_exit_code: Option<i32>,
    /// The named container's stop reason.
    pub container_reason: Option<String>,
    /// The launcher's exit status.
    pub exit_code: u8,
    /// Whether `--timeout` ended the wait.
    pub timed_out: bool,
    /// Whether Ctrl-C ended the wait.
    pub interrupted: bool,
    /// The companion's result event.
    pub result: Option<CompanionResult>,
    /// The log group.
    pub log_group: Option<String>,
    /// The log stream.
    pub log_stream: Option<String>,
    /// The CloudWatch console link to the stream.
    pub console_url: Option<String>,
    /// Hints for recognised failures.
    pub hints: Vec<String>,
    /// RunTask failures.
    pub failures: Vec<LaunchFailure>,
    /// The starts refused for want of capacity, before the last one.
    pub failed_starts: Vec<FailedStart>,
    /// The launcher's own error, if it failed.
    pub error: Option<String>,
    /// How long each phase took.
    pub phases: Phases,
    /// AWS calls this invocation made, by API (ECS, CloudWatch Logs, Secrets Manager;
    /// retried attempts included); a shard's are in its job's.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub api_calls: BTreeMap<String, u64>,
    /// Whether RunTask returned a task an earlier run with the same idempotency key had
    /// started.
    pub attached: bool,
}

/// How long each phase of the task took, in seconds, from ECS's timestamps (and, for
/// `after_exit`, the launcher's own clock); `None` for a phase not reached or not timed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Phases {
    /// Created to image pull: waiting for Fargate capacity (PROVISIONING).
    pub capacity: Option<f64>,
    /// The image pull.
    pub image_pull: Option<f64>,
    /// Pulled to running: secrets, log stream, container start.
    pub start: Option<f64>,
    /// Running to the container's exit: the job itself.
    pub run: Option<f64>,
    /// The container's exit to the launcher's verdict: reading its last log lines.
    pub after_exit: Option<f64>,
}

impl Phases {
    /// The phases a snapshot's timestamps tell, with the launcher's wait after the exit.
    pub fn of(task: &TaskSnapshot, after_exit: Option<Duration>) -> Self {
        let span = |from: Option<DateTime<Utc>>, to: Option<DateTime<Utc>>| {
            let seconds = (to? - from?).num_milliseconds() as f64 / 1000.0;
            Some(seconds.max(0.0))
        };
        Phases {
            capacity: span(task.created_at, task.pull_started_at),
            image_pull: span(task.pull_started_at, task.pull_stopped_at),
            start: span(task.pull_stopped_at, task.started_at),
            run: span(task.started_at, task.execution_stopped_at),
            after_exit: after_exit.map(|d| (d.as_secs_f64() * 10.0).round() / 10.0),
        }
    }

    /// One line for a person: `capacity 1.2s, image pull 3.4s, ...`; `None` when no
    /// phase was timed.
    pub fn describe(&self) -> Option<String> {
        let parts: Vec<String> = [
            ("capacity", self.capacity),
            ("image pull", self.image_pull),
            ("start", self.start),
            ("run", self.run),
            ("after exit", self.after_exit),
        ]
        .into_iter()
        .filter_map(|(name, seconds)| Some(format!("{name} {:.1}s", seconds?)))
        .collect();
        (!parts.is_empty()).then(|| parts.join(", "))
    }
}

impl TaskReport {
    /// Copies what a snapshot knows into the report.
    pub(crate) fn apply_snapshot(&mut self, task: &TaskSnapshot) {
        self.task_arn = Some(task.arn.clone());
        self.task_id = Some(task.id().to_string());
        if task.task_definition_arn.is_some() {
            self.task_definition = task.task_definition_arn.clone();
        }
        self.started_by = task.started_by.clone().or(self.started_by.take());
        self.created_at = task.created_at;
        self.pull_started_at = task.pull_started_at;
        self.pull_stopped_at = task.pull_stopped_at;
        self.started_at = task.started_at;
        self.execution_stopped_at = task.execution_stopped_at;
        self.stopping_at = task.stopping_at;
        self.stopped_at = task.stopped_at;
        self.last_status = Some(task.last_status.clone());
        self.stop_code = task.stop_code.clone();
        self.stopped_reason = task.stopped_reason.clone();
        if !self.wrote_logs() {
            self.log_stream = None;
            self.console_url = None;
        }
        if let Some(c) = task.container(&self.container) {
            self.container_exit_code = c.exit_code;
            self.container_reason = c.reason.clone();
        }
        if self.operator.is_none() {
            let who = task.tag(crate::launcher::task::tags::STARTED_BY);
            let host = task.tag(crate::launcher::task::tags::HOST);
            self.operator = who.map(|w| match host {
                Some(h) => format!("{w}@{h}"),
                None => w.to_string(),
            });
        }
        if self.command.is_empty() {
            self.command = task
                .tag(crate::launcher::task::tags::COMMAND)
                .map(|c| vec![c.to_string()])
                .unwrap_or_default();
        }
    }

    /// Where the task's log stream is.
    pub(crate) fn apply_log(&mut self, log: &crate::launcher::log_follower::LogTarget) {
        self.log_group = Some(log.group.clone());
        if self.wrote_logs() {
            self.log_stream = Some(log.stream.clone());
            self.console_url = Some(log.console_url());
        }
    }

    /// Copies the verdict into the report.
    pub(crate) fn apply_outcome(&mut self, outcome: &TaskOutcome) {
        self.container_exit_code = outcome.container_exit_code;
        self.container_reason = outcome.container_reason.clone();
        self.exit_code = outcome.exit_code;
        self.hints = outcome.hints.clone();
    }

    /// Whether the container can have written to its log stream: a task that failed
    /// to start ran no container, so the stream was never created and a link to it
    /// leads nowhere.
    /// The report of a task ECS no longer describes, from its log stream alone.
    pub(crate) fn remembered(config: &LaunchConfig, run: &RememberedRun) -> Self {
        TaskReport {
            cluster: config.cluster.clone(),
            container: config.container.clone(),
            task_id: Some(run.task_id.clone()),
            log_group: Some(run.log.group.clone()),
            log_stream: Some(run.log.stream.clone()),
            console_url: Some(run.log.console_url()),
            hints: vec![format!(
                "ECS no longer describes this task (it keeps stopped tasks for about an hour): read from its log stream, whose last event was at {}",
                run.last_event_at
                    .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
                    .unwrap_or_else(|| "an unknown time".into())
            )],
            ..TaskReport::default()
        }
    }

    pub(crate) fn wrote_logs(&self) -> bool {
        self.stop_code.as_deref() != Some("TaskFailedToStart")
    }

    /// The document as printed: pretty JSON, one trailing newline.
    pub(crate) fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("reports always serialize")
    }
}

/// One shard's part of the job.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct ShardReport {
    /// `K/N`.
    pub shard: String,
    /// Its task, as for a single task.
    #[serde(flatten)]
    pub task: TaskReport,
}

/// The `--output json` document of a sharded job.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct ShardedReport {
    /// The companion command, without the `--shard` each task got.
    pub command: Vec<String>,
    /// N.
    pub shards: u32,
    /// The shards this run started.
    pub ran: Vec<u32>,
    /// The job's exit code (see the module docs).
    pub exit_code: u8,
    /// The companion's counts summed over the shards that reported them (`{}` when
    /// none did).
    #[serde(serialize_with = "counts_or_nothing")]
    pub totals: Option<Counts>,
    /// The same per table and column.
    pub tables: Vec<TableReport>,
    /// Each shard: its task, exit code, counts and timings.
    pub tasks: Vec<ShardReport>,
    /// AWS calls this invocation made, by API, over every shard.
    pub api_calls: BTreeMap<String, u64>,
}

/// Totals as the sharded document has always shown them: `{}` when no shard reported.
fn counts_or_nothing<S: serde::Serializer>(
    totals: &Option<Counts>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    match totals {
        Some(counts) => counts.serialize(serializer),
        None => serde_json::Map::new().serialize(serializer),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::launcher::task::ContainerState;

    #[test]
    fn every_documented_field_is_present() {
        let mut report = TaskReport {
            cluster: "everruns".into(),
            container: "admin".into(),
            // A launch always made calls; a shard's entry leaves them to its job's.
            api_calls: BTreeMap::from([("RunTask".to_string(), 1)]),
            ..Default::default()
        };
        report.apply_snapshot(&TaskSnapshot {
            arn: "arn:aws:ecs:r:1:task/everruns/t1".into(),
            last_status: "STOPPED".into(),
            containers: vec![ContainerState {
                name: "admin".into(),
                exit_code: Some(3),
                ..Default::default()
            }],
            ..Default::default()
        });
        let value: serde_json::Value = serde_json::from_str(&report.to_json()).unwrap();
        let object = value.as_object().unwrap();
        let documented = include_str!("report.rs")
            .lines()
            .filter(|l| l.starts_with("//! | `"))
            .flat_map(|l| {
                let cell = l.trim_start_matches("//! | ").split(" |").next().unwrap();
                cell.split(", ")
                    .map(|f| f.trim_matches('`').to_string())
                    .collect::<Vec<_>>()
            })
            .collect::<Vec<_>>();
        assert!(documented.len() > 20);
        for field in &documented {
            assert!(
                object.contains_key(field),
                "{field} documented but not emitted"
            );
        }
        assert_eq!(object.len(), documented.len(), "undocumented fields");
        assert_eq!(value["container_exit_code"], 3);
        assert_eq!(value["task_id"], "t1");
    }
}
