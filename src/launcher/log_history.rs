//! What the log group keeps after ECS forgets a task. ECS describes a stopped task for
//! about an hour; CloudWatch Logs keeps its stream, with every line and the companion's
//! result event, for the log group's retention. `logs`, `status` and `list` read a task
//! from here when ECS no longer has it. The stream is named by the configured task
//! definition's awslogs options (`<prefix>/<container>/<task-id>`), so a task that ran
//! another definition's log settings is not found here.

use anyhow::anyhow;
use chrono::{DateTime, Utc};

use crate::contract::result::CompanionResult;
use crate::launcher::aws_api::aws_errors::describe_error;
use crate::launcher::aws_api::clients::Clients;
use crate::launcher::config::LaunchConfig;
use crate::launcher::error::{LaunchError, LauncherError};
use crate::launcher::log_follower::{LogFollower, LogTarget, LogTiming};
use crate::launcher::task_definition::fetch::{LogLocation, Purpose, TaskDefinitionInfo};

/// Streams one `list` reads: DescribeLogStreams returns at most 50 a call.
const MAX_STREAMS: i32 = 50;

/// One task's stream, as the log group lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RememberedRun {
    /// The task id, from the stream's name.
    pub task_id: String,
    /// The stream.
    pub log: LogTarget,
    /// When the stream was created (the container's first line, about its start).
    pub created_at: Option<DateTime<Utc>>,
    /// Its last event (about when the container exited).
    pub last_event_at: Option<DateTime<Utc>>,
}

/// The task id a task reference names: an id, or an ARN ending in it.
pub(crate) fn task_id(reference: &str) -> &str {
    reference.rsplit('/').next().unwrap_or(reference)
}

/// Where the configured task definition's container logs; `None` when it does not
/// use the awslogs driver (then there is no history to read).
async fn location(
    clients: &Clients,
    config: &LaunchConfig,
) -> Result<Option<LogLocation>, LauncherError> {
    let definition =
        TaskDefinitionInfo::describe(clients, &config.task_definition, Purpose::Inspect).await?;
    Ok(definition.container(&config.container)?.logs.clone())
}

fn target(clients: &Clients, location: &LogLocation, stream: String) -> LogTarget {
    LogTarget {
        group: location.group.clone(),
        stream,
        region: location
            .region
            .clone()
            .unwrap_or_else(|| clients.region.clone()),
    }
}

fn millis(ms: Option<i64>) -> Option<DateTime<Utc>> {
    ms.and_then(DateTime::from_timestamp_millis)
}

fn read_failed<E, R>(
    group: &str,
    err: &aws_sdk_cloudwatchlogs::error::SdkError<E, R>,
) -> LauncherError
where
    E: aws_sdk_cloudwatchlogs::error::ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug + 'static,
{
    LaunchError::unfollowable(anyhow!(
        "{} for log group {group}; check the region and the logs:DescribeLogStreams permission",
        describe_error("DescribeLogStreams", err)
    ))
}

/// A task neither ECS nor (when it was asked: `group`) the log group knows.
pub(crate) fn not_found(task: &str, cluster: &str, group: Option<&str>) -> LauncherError {
    LaunchError::refused(anyhow!(
        "task {task} was not found on cluster {cluster}{}: check the id, --cluster and --region (ECS keeps stopped tasks visible for about an hour{})",
        group
            .map(|g| format!(" nor in log group {g}"))
            .unwrap_or_default(),
        if group.is_some() {
            ", the log group for its retention; --task-definition names the group"
        } else {
            ""
        }
    ))
}

/// The stream of task `reference`, which ECS no longer describes; not found (exit 2)
/// when the log group has no such stream either.
pub(crate) async fn find(
    clients: &Clients,
    config: &LaunchConfig,
    reference: &str,
) -> Result<RememberedRun, LauncherError> {
    let Some(location) = location(clients, config).await? else {
        return Err(not_found(reference, &config.cluster, None));
    };
    let id = task_id(reference);
    let stream = location.stream_name(&config.container, id);
    let log = target(clients, &location, stream.clone());
    let reply = clients
        .logs_in(Some(&log.region))
        .describe_log_streams()
        .log_group_name(&log.group)
        .log_stream_name_prefix(&stream)
        .send()
        .await;
    let streams = match reply {
        Ok(reply) => reply.log_streams,
        Err(e)
            if e.as_service_error()
                .is_some_and(|s| s.is_resource_not_found_exception()) =>
        {
            None
        }
        Err(e) => return Err(read_failed(&log.group, &e)),
    };
    let Some(found) = streams
        .unwrap_or_default()
        .into_iter()
        .find(|s| s.log_stream_name() == Some(stream.as_str()))
    else {
        return Err(not_found(reference, &config.cluster, Some(&log.group)));
    };
    Ok(RememberedRun {
        task_id: id.to_string(),
        created_at: millis(found.creation_time()),
        last_event_at: millis(found.last_event_timestamp()),
        log,
    })
}

/// The companion's result event in `run`'s stream, when it wrote one.
pub(crate) async fn last_result(clients: &Clients, run: &RememberedRun) -> Option<CompanionResult> {
    LogFollower::new(
        clients.logs_in(Some(&run.log.region)),
        &run.log.group,
        &run.log.stream,
        LogTiming::default(),
    )
    .last_result()
    .await
}

/// The runs whose streams had events most recently, newest first, at most `limit`
/// (and 50): one DescribeLogStreams call, the streams of other containers left out.
pub(crate) async fn recent(
    clients: &Clients,
    config: &LaunchConfig,
    limit: usize,
) -> Result<Vec<RememberedRun>, LauncherError> {
    let Some(location) = location(clients, config).await? else {
        return Ok(Vec::new());
    };
    let prefix = location.stream_name(&config.container, "");
    let logs = clients.logs_in(location.region.as_deref());
    // Ordered by last event, a prefix cannot be given: the group's other streams are
    // filtered here.
    let reply = logs
        .describe_log_streams()
        .log_group_name(&location.group)
        .order_by(aws_sdk_cloudwatchlogs::types::OrderBy::LastEventTime)
        .descending(true)
        .limit(MAX_STREAMS)
        .send()
        .await;
    let reply = match reply {
        Ok(reply) => reply,
        Err(e)
            if e.as_service_error()
                .is_some_and(|s| s.is_resource_not_found_exception()) =>
        {
            return Ok(Vec::new());
        }
        Err(e) => return Err(read_failed(&location.group, &e)),
    };
    Ok(reply
        .log_streams()
        .iter()
        .filter_map(|s| {
            let name = s.log_stream_name()?;
            let id = name.strip_prefix(&prefix)?;
            (!id.is_empty() && !id.contains('/')).then(|| RememberedRun {
                task_id: id.to_string(),
                created_at: millis(s.creation_time()),
                last_event_at: millis(s.last_event_timestamp()),
                log: target(clients, &location, name.to_string()),
            })
        })
        .take(limit)
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_task_reference_names_its_id() {
        assert_eq!(task_id("0123abcd"), "0123abcd");
        assert_eq!(
            task_id("arn:aws:ecs:us-east-1:123456789012:task/everruns/0123abcd"),
            "0123abcd"
        );
    }
}
