//! A task this invocation did not launch (`logs`, `status`, `stop`, `shell`): found in
//! ECS, and its log stream from its task definition.

use anyhow::anyhow;

use super::prepare::log_target;
use crate::launcher::aws_api::api_budget::Described;
use crate::launcher::aws_api::clients::Clients;
use crate::launcher::error::{LaunchError, LauncherError};
use crate::launcher::log_follower::LogTarget;
use crate::launcher::log_history;
use crate::launcher::task::TaskSnapshot;
use crate::launcher::task_definition::fetch::{Purpose, TaskDefinitionInfo};

/// Describes an existing task (id or ARN). Not found is a usage error: the id, the
/// cluster or the region is wrong, or the task stopped over an hour ago.
pub(crate) async fn describe_task(
    clients: &Clients,
    cluster: &str,
    task: &str,
) -> Result<TaskSnapshot, LauncherError> {
    find_task(clients, cluster, task)
        .await?
        .ok_or_else(|| log_history::not_found(task, cluster, None))
}

/// Describes an existing task (id or ARN); `None` when ECS does not know it (it forgets
/// stopped tasks after about an hour). A call that fails is a runtime failure (1): the
/// commands that ask launch nothing.
pub(crate) async fn find_task(
    clients: &Clients,
    cluster: &str,
    task: &str,
) -> Result<Option<TaskSnapshot>, LauncherError> {
    let (_, answer) = clients
        .budget
        .describe(&clients.ecs, cluster, task, None)
        .await;
    match answer {
        Described::Task(snapshot) => Ok(Some(*snapshot)),
        Described::Missing(_) => Ok(None),
        Described::Failed {
            transient: true,
            message,
        } => Err(LaunchError::unfollowable(anyhow!(
            "{message}; check the endpoint and network, then try again"
        ))),
        Described::Failed {
            transient: false,
            message,
        } => Err(LaunchError::unfollowable(anyhow!(
            "{message}; check the credentials and their ecs:DescribeTasks permission"
        ))),
    }
}

/// The log target of an existing task, looked up from its task definition; `None`
/// when its container does not log to CloudWatch.
pub(crate) async fn existing_log_target(
    clients: &Clients,
    task: &TaskSnapshot,
    container: &str,
) -> Result<Option<LogTarget>, LauncherError> {
    let Some(arn) = &task.task_definition_arn else {
        return Ok(None);
    };
    let definition = TaskDefinitionInfo::describe(clients, arn, Purpose::Inspect).await?;
    log_target(clients, &definition, container, task.id())
}
