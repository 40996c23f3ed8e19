//! What the launcher knows about one ECS task at one moment, independent of the SDK's
//! types so outcome, report and rendering can be tested with plain values.

use chrono::{DateTime, Utc};

/// Tag keys this tool writes on every task it starts.
pub mod tags {
    /// Who started it (`alice` or `github:octocat`).
    pub(crate) const STARTED_BY: &str = "everruns-admin:started-by";
    /// Where from (host name, or the CI run).
    pub(crate) const HOST: &str = "everruns-admin:host";
    /// The container command, truncated to the tag value limit.
    pub(crate) const COMMAND: &str = "everruns-admin:command";
    /// `true` for commands that write to the database.
    pub(crate) const MUTATING: &str = "everruns-admin:mutating";
    /// The RunTask clientToken, when it is not random: a rerun recognises its task.
    pub(crate) const CLIENT_TOKEN: &str = "everruns-admin:client-token";
    /// `K/N` for a task that runs one shard of a sharded job.
    pub(crate) const SHARD: &str = "everruns-admin:shard";
}

/// One container of a task, as DescribeTasks reports it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ContainerState {
    /// The container name from the task definition.
    pub name: String,
    /// `PENDING`, `RUNNING`, `STOPPED`.
    pub last_status: Option<String>,
    /// Set only when the container ran and exited.
    pub exit_code: Option<i32>,
    /// Why it stopped (`OutOfMemoryError: ...`, `CannotPullContainerError: ...`).
    pub reason: Option<String>,
}

/// A task's state as of one DescribeTasks reply.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TaskSnapshot {
    /// The task's ARN.
    pub arn: String,
    /// The cluster's ARN.
    pub cluster_arn: Option<String>,
    /// The task definition ARN it runs.
    pub task_definition_arn: Option<String>,
    /// PROVISIONING, PENDING, ACTIVATING, RUNNING, DEACTIVATING, STOPPING,
    /// DEPROVISIONING or STOPPED.
    pub last_status: String,
    /// Where ECS is taking it (RUNNING or STOPPED).
    pub desired_status: Option<String>,
    /// TaskFailedToStart, EssentialContainerExited, UserInitiated, ...
    pub stop_code: Option<String>,
    /// ECS's explanation of the stop.
    pub stopped_reason: Option<String>,
    /// The task's `startedBy`.
    pub started_by: Option<String>,
    /// Its containers, in the order ECS lists them (not the task definition's).
    pub containers: Vec<ContainerState>,
    /// Its tags (only when requested with `include=TAGS`).
    pub tags: Vec<(String, String)>,
    /// When RunTask created it.
    pub created_at: Option<DateTime<Utc>>,
    /// When the image pull began (the task had its capacity).
    pub pull_started_at: Option<DateTime<Utc>>,
    /// When the image pull ended.
    pub pull_stopped_at: Option<DateTime<Utc>>,
    /// When its containers started.
    pub started_at: Option<DateTime<Utc>>,
    /// When its essential container exited: the job's end, long before STOPPED.
    pub execution_stopped_at: Option<DateTime<Utc>>,
    /// When it began stopping.
    pub stopping_at: Option<DateTime<Utc>>,
    /// When it stopped.
    pub stopped_at: Option<DateTime<Utc>>,
}

impl TaskSnapshot {
    /// Converts the SDK's task (empty strings, as some emulators send, count as unset).
    pub(crate) fn from_sdk(task: &aws_sdk_ecs::types::Task) -> Self {
        let text = |s: Option<&str>| s.filter(|s| !s.is_empty()).map(str::to_string);
        TaskSnapshot {
            arn: task.task_arn().unwrap_or_default().to_string(),
            cluster_arn: text(task.cluster_arn()),
            task_definition_arn: text(task.task_definition_arn()),
            last_status: task.last_status().unwrap_or("UNKNOWN").to_string(),
            desired_status: text(task.desired_status()),
            stop_code: task.stop_code().map(|c| c.as_str().to_string()),
            stopped_reason: text(task.stopped_reason()),
            started_by: text(task.started_by()),
            containers: task
                .containers()
                .iter()
                .map(|c| ContainerState {
                    name: c.name().unwrap_or_default().to_string(),
                    last_status: text(c.last_status()),
                    exit_code: c.exit_code(),
                    reason: text(c.reason()),
                })
                .collect(),
            tags: task
                .tags()
                .iter()
                .map(|t| {
                    (
                        t.key().unwrap_or_default().to_string(),
                        t.value().unwrap_or_default().to_string(),
                    )
                })
                .collect(),
            created_at: task.created_at().and_then(to_chrono),
            pull_started_at: task.pull_started_at().and_then(to_chrono),
            pull_stopped_at: task.pull_stopped_at().and_then(to_chrono),
            started_at: task.started_at().and_then(to_chrono),
            execution_stopped_at: task.execution_stopped_at().and_then(to_chrono),
            stopping_at: task.stopping_at().and_then(to_chrono),
            stopped_at: task.stopped_at().and_then(to_chrono),
        }
    }

    /// The task id: the last part of the ARN.
    pub fn id(&self) -> &str {
        task_id(&self.arn)
    }

    /// Whether ECS has finished with it.
    pub fn is_stopped(&self) -> bool {
        self.last_status == "STOPPED"
    }

    /// Whether the task is still before RUNNING: waiting for capacity, pulling its
    /// image, fetching secrets, starting.
    pub(crate) fn is_starting(&self) -> bool {
        matches!(
            self.last_status.as_str(),
            "PROVISIONING" | "PENDING" | "ACTIVATING" | "UNKNOWN"
        )
    }

    /// The exit code of `container`, once it has exited: the job's outcome.
    pub fn exit_code(&self, container: &str) -> Option<i32> {
        self.container(container).and_then(|c| c.exit_code)
    }

    /// The named container, wherever ECS lists it.
    pub fn container(&self, name: &str) -> Option<&ContainerState> {
        self.containers.iter().find(|c| c.name == name)
    }

    /// The value of one of its tags.
    pub fn tag(&self, key: &str) -> Option<&str> {
        self.tags
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// The id part of a task ARN (`arn:...:task/cluster/ID` or the old `task/ID`); an id is
/// returned as it is.
pub fn task_id(arn_or_id: &str) -> &str {
    arn_or_id.rsplit('/').next().unwrap_or(arn_or_id)
}

/// Where a task runs, from its ARN (`arn:aws:ecs:REGION:ACCOUNT:task/...`), so every
/// launch says which account and region it went to: `account 123456789012, us-east-1,
/// cluster everruns`.
pub(crate) fn placement(arn: &str, cluster: &str) -> String {
    match arn.split(':').collect::<Vec<_>>()[..] {
        ["arn", _, "ecs", region, account, ..] => {
            format!("account {account}, {region}, cluster {cluster}")
        }
        _ => format!("cluster {cluster}"),
    }
}

/// Converts an SDK timestamp.
pub(crate) fn to_chrono(t: &aws_sdk_ecs::primitives::DateTime) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp(t.secs(), t.subsec_nanos())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placement_names_account_region_and_cluster_from_the_arn() {
        assert_eq!(
            placement(
                "arn:aws:ecs:eu-central-1:123456789012:task/prod/abc",
                "prod"
            ),
            "account 123456789012, eu-central-1, cluster prod"
        );
        assert_eq!(placement("abc", "prod"), "cluster prod");
    }
    use aws_sdk_ecs::types::{Container, Task};

    #[test]
    fn ids_come_from_both_arn_forms() {
        assert_eq!(
            task_id("arn:aws:ecs:eu-west-1:1:task/everruns/abc123"),
            "abc123"
        );
        assert_eq!(task_id("arn:aws:ecs:eu-west-1:1:task/abc123"), "abc123");
        assert_eq!(task_id("abc123"), "abc123");
    }

    #[test]
    fn containers_are_found_by_name_not_position() {
        let task = Task::builder()
            .task_arn("arn:aws:ecs:r:1:task/c/t1")
            .last_status("STOPPED")
            .stopped_reason("")
            .containers(Container::builder().name("log-router").exit_code(0).build())
            .containers(Container::builder().name("admin").exit_code(3).build())
            .build();
        let snap = TaskSnapshot::from_sdk(&task);
        assert_eq!(snap.container("admin").unwrap().exit_code, Some(3));
        assert_eq!(snap.stopped_reason, None, "empty strings are unset");
        assert_eq!(snap.id(), "t1");
        assert!(snap.is_stopped());
    }
}
