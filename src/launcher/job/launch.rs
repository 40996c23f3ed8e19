//! Starting the task: the RunTask request (who and what recorded on it, a client token
//! so a retried call starts one task), and the refusal to start a second mutating job
//! while one is still running.

use anyhow::anyhow;
use aws_sdk_ecs::types::{
    AssignPublicIp, AwsVpcConfiguration, CapacityProviderStrategyItem, ContainerOverride,
    KeyValuePair, LaunchType, NetworkConfiguration, Tag, TaskField, TaskOverride,
};
use serde_json::{Value, json};

use crate::launcher::aws_api::aws_errors::{
    cluster_not_found, describe_error, error_code, launch_error,
};
use crate::launcher::capacity::Capacity;
use crate::launcher::config::LaunchConfig;
use crate::launcher::error::{LaunchError, LauncherError, SettingsError};
use crate::launcher::idempotency::Idempotency;
use crate::launcher::identity::{Operator, STARTED_BY_PREFIX};
use crate::launcher::job::report::{LaunchFailure, TaskReport};
use crate::launcher::task::{TaskSnapshot, tags};

/// ECS's limit on a tag value.
pub(crate) const TAG_VALUE_MAX: usize = 256;

/// What to run in the container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Job {
    /// The container command, passed verbatim (no shell, no splitting, no globbing).
    pub argv: Vec<String>,
    /// Whether it writes to the database (guarded against concurrent runs).
    pub mutating: bool,
}

/// A RunTask request, complete before it is sent, so `--print-request` shows exactly
/// what would go out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunTaskPlan {
    /// Cluster name or ARN.
    pub cluster: String,
    /// Task definition (ARN with revision once described).
    pub task_definition: String,
    /// Launch type or capacity provider.
    pub capacity: Capacity,
    /// The Fargate platform version, when one is asked for.
    pub platform_version: Option<String>,
    /// awsvpc subnets.
    pub subnets: Vec<String>,
    /// awsvpc security groups.
    pub security_groups: Vec<String>,
    /// Whether to assign a public IP.
    pub assign_public_ip: bool,
    /// The container whose command is overridden.
    pub container: String,
    /// The command override.
    pub command: Vec<String>,
    /// `startedBy`.
    pub started_by: String,
    /// Tags: who, from where, what, and whether it mutates.
    pub tags: Vec<(String, String)>,
    /// Idempotency token for this invocation.
    pub client_token: String,
    /// `enableExecuteCommand`: the task accepts ECS Exec sessions (`shell`).
    pub enable_execute_command: bool,
    /// When the companion must have stopped its work: `EVERRUNS_ADMIN_DEADLINE` in the
    /// container's environment, from `--timeout` (see [`companion_deadline`]).
    pub deadline: Option<chrono::DateTime<chrono::Utc>>,
}

/// The container variable the companion reads its deadline from.
pub(crate) const DEADLINE_VARIABLE: &str = "EVERRUNS_ADMIN_DEADLINE";

/// The container variable that tells the companion who launched it, so that its advice
/// names the command the operator types (`run-admin-task migrate`).
pub(crate) const LAUNCHER_VARIABLE: &str = "EVERRUNS_ADMIN_LAUNCHER";

/// The companion's deadline for a launcher `--timeout` counted from now: a little
/// before the launcher's own (a twentieth of it, 2 s to 30 s), so the companion has
/// cancelled its work and said so before the launcher gives up, and a task whose
/// launcher or CI runner died still frees the database.
pub(crate) fn companion_deadline(
    timeout: Option<std::time::Duration>,
) -> Option<chrono::DateTime<chrono::Utc>> {
    let timeout = timeout?;
    let margin = (timeout / 20).clamp(
        std::time::Duration::from_secs(2),
        std::time::Duration::from_secs(30),
    );
    let left = timeout.saturating_sub(margin).max(timeout / 2);
    Some(chrono::Utc::now() + chrono::Duration::from_std(left).ok()?)
}

/// What RunTask answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunTaskReply {
    /// The task, when one was started.
    pub task: Option<TaskSnapshot>,
    /// `failures[]`: why no task was started.
    pub failures: Vec<LaunchFailure>,
}

impl RunTaskPlan {
    /// Builds the request. Fails (exit 2) when no subnets are configured.
    pub fn new(
        config: &LaunchConfig,
        task_definition: &str,
        job: &Job,
        operator: &Operator,
    ) -> Result<Self, LauncherError> {
        let subnets = config.require_subnets()?.to_vec();
        let idempotent = idempotent_token(&config.idempotency, &job.argv);
        let mut tags = vec![
            (tags::STARTED_BY.into(), tag_value(&operator.who)),
            (tags::HOST.into(), tag_value(&operator.host)),
            (tags::COMMAND.into(), tag_value(&job.argv.join(" "))),
            (tags::MUTATING.into(), job.mutating.to_string()),
        ];
        if let Some(token) = &idempotent {
            // The concurrency guard recognises a rerun's own task by it.
            tags.push((tags::CLIENT_TOKEN.into(), token.clone()));
        }
        let client_token = idempotent.unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        Ok(RunTaskPlan {
            cluster: config.cluster.clone(),
            task_definition: task_definition.to_string(),
            capacity: config.capacity.for_job(job.mutating, config.allow_spot),
            platform_version: config.platform_version.clone(),
            subnets,
            security_groups: config.security_groups.clone(),
            assign_public_ip: config.assign_public_ip,
            container: config.container.clone(),
            command: job.argv.clone(),
            started_by: operator.started_by(),
            tags,
            client_token,
            enable_execute_command: false,
            deadline: None,
        })
    }

    /// The report of the task this plan is about to start, before ECS has answered.
    pub fn report(&self, config: &LaunchConfig, operator: &Operator) -> TaskReport {
        TaskReport {
            cluster: config.cluster.clone(),
            task_definition: Some(self.task_definition.clone()),
            container: config.container.clone(),
            command: self.command.clone(),
            started_by: Some(self.started_by.clone()),
            operator: Some(operator.display()),
            ..TaskReport::default()
        }
    }

    /// The container's environment overrides: the deadline, if any, and the launcher.
    fn environment(&self) -> Vec<(&'static str, String)> {
        let deadline = self.deadline.map(|at| {
            (
                DEADLINE_VARIABLE,
                at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            )
        });
        deadline
            .into_iter()
            .chain([(LAUNCHER_VARIABLE, "run-admin-task".to_owned())])
            .collect()
    }

    /// The request in RunTask's JSON shape (as the AWS CLI would send it).
    pub(crate) fn to_json(&self) -> Value {
        let mut request = json!({
            "cluster": self.cluster,
            "taskDefinition": self.task_definition,
            "count": 1,
            "networkConfiguration": {"awsvpcConfiguration": {
                "subnets": self.subnets,
                "securityGroups": self.security_groups,
                "assignPublicIp": if self.assign_public_ip { "ENABLED" } else { "DISABLED" },
            }},
            "overrides": {"containerOverrides": [{
                "name": self.container,
                "command": self.command,
                "environment": self.environment().iter()
                    .map(|(name, value)| json!({"name": name, "value": value}))
                    .collect::<Vec<_>>(),
            }]},
            "startedBy": self.started_by,
            "tags": self.tags.iter().map(|(k, v)| json!({"key": k, "value": v})).collect::<Vec<_>>(),
            "clientToken": self.client_token,
        });
        if self.enable_execute_command {
            request["enableExecuteCommand"] = json!(true);
        }
        if let Some(version) = &self.platform_version {
            request["platformVersion"] = json!(version);
        }
        match &self.capacity {
            Capacity::LaunchType(t) => request["launchType"] = json!(t),
            Capacity::Strategy(shares) => request["capacityProviderStrategy"] = shares
                .iter()
                .map(
                    |s| json!({"capacityProvider": s.provider, "weight": s.weight, "base": s.base}),
                )
                .collect(),
        }
        request
    }

    /// Sends RunTask. API errors are exit 125 with the error's code and message;
    /// `failures[]` come back in the reply for the caller to report.
    pub async fn send(&self, ecs: &aws_sdk_ecs::Client) -> Result<RunTaskReply, LauncherError> {
        let vpc = AwsVpcConfiguration::builder()
            .set_subnets(Some(self.subnets.clone()))
            .set_security_groups(
                (!self.security_groups.is_empty()).then(|| self.security_groups.clone()),
            )
            .assign_public_ip(if self.assign_public_ip {
                AssignPublicIp::Enabled
            } else {
                AssignPublicIp::Disabled
            })
            .build()
            .map_err(|e| SettingsError::invalid(anyhow!("invalid network configuration: {e}")))?;
        let mut request = ecs
            .run_task()
            .cluster(&self.cluster)
            .task_definition(&self.task_definition)
            .count(1)
            .network_configuration(
                NetworkConfiguration::builder()
                    .awsvpc_configuration(vpc)
                    .build(),
            )
            .overrides(
                TaskOverride::builder()
                    .container_overrides(
                        ContainerOverride::builder()
                            .name(&self.container)
                            .set_command(Some(self.command.clone()))
                            .set_environment(Some(
                                self.environment()
                                    .into_iter()
                                    .map(|(name, value)| {
                                        KeyValuePair::builder().name(name).value(value).build()
                                    })
                                    .collect(),
                            ))
                            .build(),
                    )
                    .build(),
            )
            .started_by(&self.started_by)
            .client_token(&self.client_token)
            .set_platform_version(self.platform_version.clone())
            .set_enable_execute_command(self.enable_execute_command.then_some(true));
        for (key, value) in &self.tags {
            request = request.tags(Tag::builder().key(key).value(value).build());
        }
        request = match &self.capacity {
            Capacity::LaunchType(t) => request.launch_type(LaunchType::from(t.as_str())),
            Capacity::Strategy(shares) => {
                for share in shares {
                    request = request.capacity_provider_strategy(
                        CapacityProviderStrategyItem::builder()
                            .capacity_provider(&share.provider)
                            .weight(share.weight)
                            .base(share.base)
                            .build()
                            .map_err(|e| {
                                SettingsError::invalid(anyhow!("invalid capacity provider: {e}"))
                            })?,
                    );
                }
                request
            }
        };
        let reply = request.send().await.map_err(|e| {
            if error_code(&e) == Some("ConflictException") {
                return LaunchError::never_ran(anyhow!(
                        "{}; idempotency key {:?} already started a task with other settings (task definition, network or command): pass another --idempotency-key",
                        describe_error("RunTask", &e),
                        self.client_token
                    ),
                );
            }
            cluster_not_found(&e, &self.cluster, ecs).unwrap_or_else(|| launch_error("RunTask", &e))
        })?;
        Ok(RunTaskReply {
            task: reply.tasks().first().map(TaskSnapshot::from_sdk),
            failures: reply
                .failures()
                .iter()
                .map(|f| LaunchFailure {
                    arn: f.arn().map(str::to_string),
                    reason: f.reason().map(str::to_string),
                    detail: f.detail().map(str::to_string),
                })
                .collect(),
        })
    }
}

/// RunTask's clientToken when it is not random: the key as given; for a CI step, a
/// digest of the step, the target and the command (`gha-` and 40 hex digits, within
/// RunTask's 64 characters).
pub(crate) fn idempotent_token(idempotency: &Idempotency, argv: &[String]) -> Option<String> {
    use sha2::{Digest, Sha256};
    match idempotency {
        Idempotency::Key(key) => Some(key.clone()),
        Idempotency::CiStep(step) => {
            let mut digest = Sha256::new();
            digest.update(step.as_bytes());
            for arg in argv {
                // Length-prefixed, so `a b` and `ab` are different commands.
                digest.update((arg.len() as u64).to_be_bytes());
                digest.update(arg.as_bytes());
            }
            let hex: String = digest
                .finalize()
                .iter()
                .take(20)
                .map(|b| format!("{b:02x}"))
                .collect();
            Some(format!("gha-{hex}"))
        }
        Idempotency::PerInvocation => None,
    }
}

/// The error for a RunTask reply that started nothing: exit 125 with each failure's
/// reason and detail.
pub fn rejected(failures: &[LaunchFailure]) -> LauncherError {
    let listed: Vec<String> = failures
        .iter()
        .map(|f| {
            let mut line = f.reason.clone().unwrap_or_else(|| "unknown reason".into());
            if let Some(detail) = &f.detail {
                line.push_str(&format!(" ({detail})"));
            }
            if let Some(arn) = &f.arn {
                line.push_str(&format!(" [{arn}]"));
            }
            line
        })
        .collect();
    LaunchError::never_ran(anyhow!(
        "RunTask started no task: {}",
        if listed.is_empty() {
            "no task and no failure returned".to_string()
        } else {
            listed.join("; ")
        }
    ))
}

/// Whether RunTask's `failures` prove that no container started and that starting again
/// may work: capacity that was not there (`Capacity is unavailable at this time`,
/// `RESOURCE:*`). Anything else (a missing cluster, an attribute no capacity has) would
/// fail again.
pub(crate) fn worth_starting_again(failures: &[LaunchFailure]) -> bool {
    !failures.is_empty()
        && failures.iter().all(|f| {
            let reason = f.reason.as_deref().unwrap_or_default();
            reason.starts_with("RESOURCE:") || reason.contains("Capacity is unavailable")
        })
}

/// Whether a task that stopped proves that its container never started and that
/// starting again may work: `TaskFailedToStart` while ECS set up what the task needs
/// (its network interface, or a fetch that timed out), with no `startedAt`. A secret, a
/// log group or an image that does not exist, or a permission that is missing, would
/// fail the same way again.
pub(crate) fn failed_to_start_transiently(task: &TaskSnapshot) -> bool {
    let reason = task.stopped_reason.as_deref().unwrap_or_default();
    let lasting = [
        "ResourceNotFoundException",
        "AccessDenied",
        "not authorized",
        "does not exist",
        "not found",
        "CannotPullContainerError",
    ];
    task.stop_code.as_deref() == Some("TaskFailedToStart")
        && task.started_at.is_none()
        && reason.contains("ResourceInitializationError")
        && !lasting.iter().any(|l| reason.contains(l))
}

/// The clientToken of start `attempt` (from 1) of a job whose first start used `token`:
/// each start is its own RunTask; the task's tag keeps the job's token, so a rerun of the
/// same CI step still finds the job's task.
pub(crate) fn attempt_token(token: &str, attempt: u32) -> String {
    if attempt <= 1 {
        return token.to_owned();
    }
    let suffix = format!("-{attempt}");
    let keep = 64usize.saturating_sub(suffix.len()).min(token.len());
    format!("{}{suffix}", &token[..keep])
}

/// Reduces text to what ECS accepts in a tag value (letters, digits, spaces and
/// `+ - = . _ : / @`) and to its length limit.
pub(crate) fn tag_value(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || " +-=._:/@".contains(c) {
                c
            } else {
                '_'
            }
        })
        .take(TAG_VALUE_MAX)
        .collect()
}

/// Finds a task this tool started for `family` on `cluster` that is still running a
/// mutating command (ListTasks by family, then DescribeTasks with tags). A task started
/// with `own_token` is this launch's own, from an earlier attempt: RunTask attaches to
/// it, so it is no conflict.
pub(crate) async fn find_running_mutation(
    ecs: &aws_sdk_ecs::Client,
    cluster: &str,
    family: &str,
    own_token: Option<&str>,
) -> Result<Option<TaskSnapshot>, LauncherError> {
    let mut arns = Vec::new();
    let mut pages = ecs
        .list_tasks()
        .cluster(cluster)
        .family(family)
        .desired_status(aws_sdk_ecs::types::DesiredStatus::Running)
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| {
            cluster_not_found(&e, cluster, ecs).unwrap_or_else(|| launch_error("ListTasks", &e))
        })?;
        arns.extend(page.task_arns().iter().cloned());
    }
    for chunk in arns.chunks(100) {
        let reply = ecs
            .describe_tasks()
            .cluster(cluster)
            .set_tasks(Some(chunk.to_vec()))
            .include(TaskField::Tags)
            .send()
            .await
            .map_err(|e| {
                LaunchError::never_ran(anyhow!(
                    "{}; check credentials and region",
                    describe_error("DescribeTasks", &e)
                ))
            })?;
        let mut running: Vec<TaskSnapshot> = reply
            .tasks()
            .iter()
            .map(TaskSnapshot::from_sdk)
            .filter(|t| !t.is_stopped() && t.desired_status.as_deref() != Some("STOPPED"))
            .filter(|t| {
                t.started_by
                    .as_deref()
                    .is_some_and(|s| s.starts_with(STARTED_BY_PREFIX))
            })
            .filter(|t| t.tag(tags::MUTATING) == Some("true"))
            .filter(|t| own_token.is_none() || t.tag(tags::CLIENT_TOKEN) != own_token)
            .collect();
        running.sort_by_key(|t| t.created_at);
        if let Some(task) = running.into_iter().next() {
            return Ok(Some(task));
        }
    }
    Ok(None)
}

/// The refusal (exit 2) to start a mutating job while `running` is still at work.
pub(crate) fn concurrency_refusal(running: &TaskSnapshot, cluster: &str) -> LauncherError {
    let who = running.tag(tags::STARTED_BY).unwrap_or("someone");
    let host = running
        .tag(tags::HOST)
        .map(|h| format!(" on {h}"))
        .unwrap_or_default();
    let when = running
        .created_at
        .map(|t| {
            format!(
                " at {}",
                t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            )
        })
        .unwrap_or_default();
    let what = running.tag(tags::COMMAND).unwrap_or("a mutating command");
    let id = running.id();
    SettingsError::invalid(anyhow!(
        "task {id} on cluster {cluster} is still running `{what}` ({}), started by {who}{host}{when}; \
         follow it with `run-admin-task logs {id} --follow`, stop it with `run-admin-task stop {id}`, \
         or pass --allow-concurrent to run anyway",
        running.last_status
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::launcher::flags::GlobalOptions;

    fn config() -> LaunchConfig {
        let mut cfg = LaunchConfig::resolve(&GlobalOptions::default(), &|_: &str| None).unwrap();
        cfg.subnets = vec!["subnet-1".into()];
        cfg
    }

    fn operator() -> Operator {
        Operator {
            who: "alice".into(),
            host: "laptop".into(),
        }
    }

    #[test]
    fn only_a_start_that_failed_for_a_passing_reason_is_started_again() {
        let stopped = |code: &str, reason: &str| TaskSnapshot {
            stop_code: Some(code.into()),
            stopped_reason: Some(reason.into()),
            ..TaskSnapshot::default()
        };
        let eni = "ResourceInitializationError: failed to configure ENI: Timeout waiting for network interface provisioning to complete.";
        assert!(failed_to_start_transiently(&stopped(
            "TaskFailedToStart",
            eni
        )));
        let ran = TaskSnapshot {
            started_at: Some(chrono::Utc::now()),
            ..stopped("TaskFailedToStart", eni)
        };
        assert!(!failed_to_start_transiently(&ran));
        assert!(!failed_to_start_transiently(&stopped(
            "EssentialContainerExited",
            eni
        )));
        for lasting in [
            "ResourceInitializationError: unable to pull secrets or registry auth: ... ResourceNotFoundException: Secrets Manager can't find the specified secret.",
            "ResourceInitializationError: ... AccessDeniedException: not authorized to perform secretsmanager:GetSecretValue",
            "CannotPullContainerError: pull image manifest has been retried 1 time(s): not found",
        ] {
            assert!(
                !failed_to_start_transiently(&stopped("TaskFailedToStart", lasting)),
                "{lasting}"
            );
        }
    }

    #[test]
    fn only_a_start_refused_for_capacity_is_worth_starting_again() {
        let failure = |reason: &str| LaunchFailure {
            arn: None,
            reason: Some(reason.into()),
            detail: None,
        };
        assert!(worth_starting_again(&[failure(
            "Capacity is unavailable at this time. Please try again later or in a different availability zone"
        )]));
        assert!(worth_starting_again(&[failure("RESOURCE:MEMORY")]));
        assert!(!worth_starting_again(&[failure("MISSING")]));
        assert!(!worth_starting_again(&[
            failure("RESOURCE:CPU"),
            failure("ATTRIBUTE")
        ]));
        assert!(!worth_starting_again(&[]));
    }

    #[test]
    fn each_start_has_its_own_token_within_runtasks_limit() {
        let token = "a".repeat(64);
        assert_eq!(attempt_token(&token, 1), token);
        let second = attempt_token(&token, 2);
        assert_eq!(second.len(), 64);
        assert!(second.ends_with("-2") && second != attempt_token(&token, 3));
        assert_eq!(attempt_token("job", 3), "job-3");
    }

    #[test]
    fn plan_records_who_and_what_and_keeps_arguments_verbatim() {
        let job = Job {
            argv: vec!["sh".into(), "-c".into(), "echo 'x y' *".into()],
            mutating: false,
        };
        let plan = RunTaskPlan::new(&config(), "everruns-admin", &job, &operator()).unwrap();
        let json = plan.to_json();
        assert_eq!(
            json["overrides"]["containerOverrides"][0]["command"][2],
            "echo 'x y' *"
        );
        assert_eq!(json["overrides"]["containerOverrides"][0]["name"], "admin");
        assert_eq!(json["launchType"], "FARGATE");
        assert_eq!(
            json["networkConfiguration"]["awsvpcConfiguration"]["assignPublicIp"],
            "DISABLED"
        );
        assert_eq!(json["startedBy"], "run-admin-task/alice");
        assert!(plan.client_token.len() <= 64);
        assert!(
            plan.tags
                .contains(&(tags::COMMAND.into(), "sh -c echo _x y_ _".into()))
        );
        assert!(plan.tags.contains(&(tags::MUTATING.into(), "false".into())));
    }

    #[test]
    fn each_invocation_gets_its_own_client_token() {
        let job = Job {
            argv: vec!["x".into()],
            mutating: false,
        };
        let a = RunTaskPlan::new(&config(), "td", &job, &operator()).unwrap();
        let b = RunTaskPlan::new(&config(), "td", &job, &operator()).unwrap();
        assert_ne!(a.client_token, b.client_token);
    }

    #[test]
    fn tag_values_are_cut_to_the_limit() {
        assert_eq!(tag_value(&"a".repeat(300)).len(), TAG_VALUE_MAX);
        assert_eq!(
            tag_value("migrate --target-version=3"),
            "migrate --target-version=3"
        );
    }

    #[test]
    fn failures_name_reason_and_detail() {
        let err = rejected(&[LaunchFailure {
            arn: None,
            reason: Some("RESOURCE:MEMORY".into()),
            detail: Some("no capacity".into()),
        }]);
        assert_eq!(err.exit_code(), 125);
        assert!(err.to_string().contains("RESOURCE:MEMORY (no capacity)"));
    }
}
