//! What the launcher needs from a task definition: its container names (to refuse a
//! wrong `--container` before launching) and where each container's logs go. The log
//! group and stream prefix are read from the awslogs options, never guessed.

use anyhow::anyhow;
use aws_sdk_ecs::types::LogDriver;

use crate::launcher::aws_api::aws_errors::{call_error, launch_error};
use crate::launcher::aws_api::clients::Clients;
use crate::launcher::error::{LauncherError, SettingsError};

/// Where a container's awslogs driver writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLocation {
    /// `awslogs-group`.
    pub group: String,
    /// `awslogs-region`, when set.
    pub region: Option<String>,
    /// `awslogs-stream-prefix`.
    pub stream_prefix: String,
}

impl LogLocation {
    /// The stream the awslogs driver writes for `container` of task `task_id`:
    /// `<stream-prefix>/<container>/<task-id>`.
    pub(crate) fn stream_name(&self, container: &str, task_id: &str) -> String {
        format!("{}/{container}/{task_id}", self.stream_prefix)
    }
}

/// One container definition, reduced to what the launcher uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerSpec {
    /// Its name.
    pub name: String,
    /// Its awslogs destination; `None` when it logs elsewhere (then no live logs).
    pub logs: Option<LogLocation>,
    /// How long ECS waits after SIGTERM before it kills the container: the
    /// definition's `stopTimeout`, else Fargate's default of 30 s.
    pub stop_timeout: std::time::Duration,
}

/// A described task definition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskDefinitionInfo {
    /// Its full ARN (with revision), so the task runs exactly what was checked.
    pub arn: String,
    /// Its containers in definition order.
    pub containers: Vec<ContainerSpec>,
}

/// Why a task definition is read, which decides what its failed call means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// To launch a task: a failure means nothing ran (125).
    Launch,
    /// To read about a task that exists (`logs`, `status`): a failed call is a runtime
    /// failure (1), not a task that never ran.
    Inspect,
}

impl TaskDefinitionInfo {
    /// DescribeTaskDefinition for a family, `family:revision` or ARN.
    pub async fn describe(
        clients: &Clients,
        task_definition: &str,
        purpose: Purpose,
    ) -> Result<Self, LauncherError> {
        Ok(Self::from_sdk(
            &fetch(clients, task_definition, purpose).await?,
        ))
    }

    /// Converts the SDK's task definition.
    pub(crate) fn from_sdk(def: &aws_sdk_ecs::types::TaskDefinition) -> Self {
        let containers = def
            .container_definitions()
            .iter()
            .map(|c| ContainerSpec {
                name: c.name().unwrap_or_default().to_string(),
                logs: c.log_configuration().and_then(|log| {
                    if log.log_driver() != &LogDriver::Awslogs {
                        return None;
                    }
                    let options = log.options()?;
                    Some(LogLocation {
                        group: options.get("awslogs-group")?.clone(),
                        region: options.get("awslogs-region").cloned(),
                        stream_prefix: options.get("awslogs-stream-prefix")?.clone(),
                    })
                }),
                stop_timeout: std::time::Duration::from_secs(
                    c.stop_timeout()
                        .and_then(|s| u64::try_from(s).ok())
                        .unwrap_or(30),
                ),
            })
            .collect();
        TaskDefinitionInfo {
            arn: def.task_definition_arn().unwrap_or_default().to_string(),
            containers,
        }
    }

    /// The named container, or a usage error listing the containers there are.
    pub fn container(&self, name: &str) -> Result<&ContainerSpec, LauncherError> {
        self.containers
            .iter()
            .find(|c| c.name == name)
            .ok_or_else(|| {
                let names: Vec<&str> = self.containers.iter().map(|c| c.name.as_str()).collect();
                SettingsError::invalid(anyhow!(
                    "task definition {} has no container {name:?}; its containers are: {}; choose one with --container",
                    self.arn,
                    names.join(", ")
                ))
            })
    }
}

/// The whole task definition as ECS describes it (for the checks that need more than
/// [`TaskDefinitionInfo`]), with a failed call told as `purpose` makes it.
pub(crate) async fn fetch(
    clients: &Clients,
    task_definition: &str,
    purpose: Purpose,
) -> Result<aws_sdk_ecs::types::TaskDefinition, LauncherError> {
    let reply = clients
        .ecs
        .describe_task_definition()
        .task_definition(task_definition)
        .send()
        .await
        .map_err(|e| match purpose {
            Purpose::Launch => launch_error("DescribeTaskDefinition", &e),
            Purpose::Inspect => call_error("DescribeTaskDefinition", &e),
        })?;
    reply.task_definition.ok_or_else(|| {
        SettingsError::invalid(anyhow!(
            "task definition {task_definition} was not returned; check --task-definition"
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_ecs::types::{ContainerDefinition, LogConfiguration, TaskDefinition};

    fn definition() -> TaskDefinition {
        let logs = LogConfiguration::builder()
            .log_driver(LogDriver::Awslogs)
            .options("awslogs-group", "/ecs/everruns-admin")
            .options("awslogs-region", "eu-west-1")
            .options("awslogs-stream-prefix", "ecs")
            .build()
            .unwrap();
        TaskDefinition::builder()
            .task_definition_arn("arn:aws:ecs:eu-west-1:1:task-definition/everruns-admin:4")
            .container_definitions(ContainerDefinition::builder().name("sidecar").build())
            .container_definitions(
                ContainerDefinition::builder()
                    .name("admin")
                    .log_configuration(logs)
                    .build(),
            )
            .build()
    }

    #[test]
    fn reads_awslogs_options_and_builds_the_stream_name() {
        let info = TaskDefinitionInfo::from_sdk(&definition());
        let admin = info.container("admin").unwrap();
        let logs = admin.logs.as_ref().unwrap();
        assert_eq!(logs.group, "/ecs/everruns-admin");
        assert_eq!(logs.region.as_deref(), Some("eu-west-1"));
        assert_eq!(logs.stream_name("admin", "abc"), "ecs/admin/abc");
        assert_eq!(info.container("sidecar").unwrap().logs, None);
    }

    #[test]
    fn unknown_container_lists_the_real_ones() {
        let info = TaskDefinitionInfo::from_sdk(&definition());
        let err = info.container("migrator").unwrap_err();
        assert_eq!(err.exit_code(), 2);
        assert!(err.to_string().contains("sidecar, admin"), "{err}");
    }
}
