//! Checks that ask AWS: credentials, the cluster, the task definition and what it
//! points at (log group, execution role, secrets). The image and the network are
//! checked in [`super::image`] and [`super::network`].
//!
//! Secrets are checked with DescribeSecret only, which returns metadata: doctor never
//! reads a secret's value.

use aws_sdk_ecs::config::{ProvideCredentials, SharedCredentialsProvider};
use aws_sdk_ecs::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_ecs::types::{LogDriver, TaskDefinition, TaskDefinitionStatus};

use super::check::Check;
use crate::launcher::aws_api::aws_errors::{describe_error, error_chain, error_code, is_denied};
use crate::launcher::aws_api::policies::denial_hint;
use crate::launcher::config::CredentialSource;
use crate::launcher::ecs_exec;
use crate::launcher::task_definition::fetch::TaskDefinitionInfo;

pub(super) fn api_fix<E, R>(err: &SdkError<E, R>, action: &str, otherwise: &str) -> String
where
    E: ProvideErrorMetadata,
{
    match error_code(err).unwrap_or_default() {
        c if is_denied(c) => format!(
            "run doctor with credentials allowed {action}: {}",
            denial_hint(action)
        ),
        c if c.contains("UnrecognizedClient") || c.contains("Token") || c.contains("Signature") => {
            "refresh the credentials (`aws sso login`, AWS_PROFILE / --profile)".to_owned()
        }
        "" => "check the region (--region / AWS_REGION), the endpoint and the network".to_owned(),
        _ => otherwise.to_owned(),
    }
}

/// The credentials may start a port-forwarding session through the cluster's tasks
/// (`tunnel`). Asked with a target that cannot exist (task `0`): IAM decides before the
/// target is looked up, so a refusal is AccessDenied and anything else means allowed,
/// and no session is ever opened.
pub(crate) async fn start_session(ssm: &aws_sdk_ssm::Client, cluster: &str) -> Check {
    const NAME: &str = "tunnel:start-session";
    let reply = ssm
        .start_session()
        .target(ecs_exec::target(cluster, "0", "0"))
        .document_name(ecs_exec::PORT_FORWARDING_DOCUMENT)
        .reason("run-admin-task doctor: may these credentials tunnel?")
        .send()
        .await;
    match reply {
        Err(e) if error_code(&e).is_some_and(is_denied) || error_code(&e).is_none() => Check::fail(
            NAME,
            describe_error("StartSession", &e),
            api_fix(&e, "ssm:StartSession", "check the region and the endpoint"),
        ),
        Err(e) => Check::pass(
            NAME,
            format!(
                "ssm:StartSession is allowed on the tasks of {cluster} with {} (probed: {})",
                ecs_exec::PORT_FORWARDING_DOCUMENT,
                error_code(&e).unwrap_or_default()
            ),
        ),
        Ok(reply) => Check::fail(
            NAME,
            format!(
                "StartSession opened session {} for a task that cannot exist",
                reply.session_id().unwrap_or_default()
            ),
            "the endpoint is not AWS's: check --endpoint-url and AWS_ENDPOINT_URL",
        ),
    }
}

/// Credentials resolve from `source`, and STS names their account (GetCallerIdentity
/// needs no permission); an account other than the pinned `account_id` fails.
pub async fn credentials(
    provider: Option<SharedCredentialsProvider>,
    source: &CredentialSource,
    sts: &aws_sdk_sts::Client,
    pinned: Option<&str>,
) -> Check {
    const NAME: &str = "credentials";
    const FIX: &str = "set AWS_PROFILE or --profile (and run `aws sso login` for SSO), or export \
                       AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY";
    let Some(provider) = provider else {
        return Check::fail(NAME, "no credentials provider is configured", FIX);
    };
    let expiry = match provider.provide_credentials().await {
        Ok(credentials) => credentials
            .expiry()
            .map(|t| {
                let t = chrono::DateTime::<chrono::Utc>::from(t);
                format!(", valid until {}", t.to_rfc3339())
            })
            .unwrap_or_default(),
        Err(e) => {
            return Check::fail(
                NAME,
                format!(
                    "cannot resolve credentials from {source}: {}",
                    error_chain(&e)
                ),
                FIX,
            );
        }
    };
    match sts.get_caller_identity().send().await {
        Ok(identity) => {
            let account = identity.account().unwrap_or("unknown");
            let detail = format!(
                "{source}: account {account} as {}{expiry}",
                identity.arn().unwrap_or("unknown")
            );
            match pinned {
                Some(pinned) if pinned != account => Check::fail(
                    NAME,
                    detail,
                    format!(
                        "the config environment pins account_id {pinned}: use that account's credentials (--profile NAME)"
                    ),
                ),
                _ => Check::pass(NAME, detail),
            }
        }
        Err(e) => Check::fail(
            NAME,
            format!(
                "credentials from {source} resolved, but {}",
                describe_error("GetCallerIdentity", &e)
            ),
            api_fix(&e, "sts:GetCallerIdentity", FIX),
        ),
    }
}

/// The cluster exists in the region and is ACTIVE.
pub async fn cluster(ecs: &aws_sdk_ecs::Client, cluster: &str, region: &str) -> Check {
    const NAME: &str = "cluster";
    let fix_name = "check --cluster / ECS_CLUSTER / `cluster` in the config file, and the region";
    let reply = match ecs.describe_clusters().clusters(cluster).send().await {
        Ok(reply) => reply,
        Err(e) => {
            return Check::fail(
                NAME,
                describe_error("DescribeClusters", &e),
                api_fix(&e, "ecs:DescribeClusters", fix_name),
            );
        }
    };
    let found = reply
        .clusters()
        .iter()
        .find(|c| c.cluster_name() == Some(cluster) || c.cluster_arn() == Some(cluster));
    match found {
        Some(c) if c.status() == Some("ACTIVE") => Check::pass(
            NAME,
            format!(
                "{cluster} is ACTIVE in {region} ({} running tasks)",
                c.running_tasks_count()
            ),
        ),
        Some(c) => Check::fail(
            NAME,
            format!(
                "{cluster} is {} in {region}",
                c.status().unwrap_or("in an unknown state")
            ),
            "tasks run only in an ACTIVE cluster: use another one or recreate it",
        ),
        None => Check::fail(
            NAME,
            format!("cluster {cluster} was not found in {region}"),
            fix_name,
        ),
    }
}

/// The task definition can be described; the definition comes back for the checks
/// that read it.
pub async fn task_definition(
    ecs: &aws_sdk_ecs::Client,
    task_definition: &str,
) -> (Check, Option<TaskDefinition>) {
    const NAME: &str = "task-definition";
    let fix = "register it with `run-admin-task task-def register`, or name an existing one with \
               --task-definition FAMILY[:REVISION] / ECS_TASK_DEFINITION";
    match ecs
        .describe_task_definition()
        .task_definition(task_definition)
        .send()
        .await
    {
        Ok(reply) => match reply.task_definition {
            Some(def) => {
                let detail = format!(
                    "{}:{} ({})",
                    def.family().unwrap_or_default(),
                    def.revision(),
                    def.status().map(|s| s.as_str()).unwrap_or("status unknown")
                );
                let check = if def.status() == Some(&TaskDefinitionStatus::Active) {
                    Check::pass(NAME, detail)
                } else {
                    Check::fail(
                        NAME,
                        format!(
                            "{detail}: ECS runs no new task from a revision that is not ACTIVE"
                        ),
                        "name an ACTIVE revision (--task-definition FAMILY alone is its latest \
                         ACTIVE one), or register it again with `run-admin-task task-def register`",
                    )
                };
                (check, Some(def))
            }
            None => (
                Check::fail(NAME, format!("{task_definition} was not returned"), fix),
                None,
            ),
        },
        Err(e) => (
            Check::fail(
                NAME,
                format!(
                    "{task_definition}: {}",
                    describe_error("DescribeTaskDefinition", &e)
                ),
                api_fix(&e, "ecs:DescribeTaskDefinition", fix),
            ),
            None,
        ),
    }
}

/// The container the commands run in is there and essential, so the task ends when
/// the command does.
pub fn container(def: &TaskDefinition, name: &str) -> Check {
    const NAME: &str = "container";
    let names: Vec<&str> = def
        .container_definitions()
        .iter()
        .filter_map(|c| c.name())
        .collect();
    match def
        .container_definitions()
        .iter()
        .find(|c| c.name() == Some(name))
    {
        None => Check::fail(
            NAME,
            format!("no container {name:?} (containers: {})", names.join(", ")),
            "choose the container with --container, or add it to the task definition",
        ),
        Some(c) if c.essential() == Some(false) => Check::fail(
            NAME,
            format!("container {name:?} is not essential: the task would outlive the command"),
            "set \"essential\": true on it and register the task definition again",
        ),
        Some(_) => Check::pass(NAME, format!("{name:?} is present and essential")),
    }
}

/// The execution role is set: ECS needs it to inject secrets and write awslogs.
pub(crate) fn execution_role(def: &TaskDefinition) -> Check {
    const NAME: &str = "execution-role";
    match def.execution_role_arn() {
        Some(arn) if !arn.is_empty() => Check::pass(NAME, arn),
        _ => Check::fail(
            NAME,
            "no executionRoleArn: ECS cannot inject the secrets or write the log stream",
            "set executionRoleArn (EXECUTION_ROLE_ARN in task-definitions/admin.json.tmpl, policy \
             task-definitions/iam/execution-role-policy.json) and register again",
        ),
    }
}

/// The container logs with awslogs, with the options the launcher reads. Returns the
/// group and its region for the log group check.
pub fn awslogs(
    def: &TaskDefinition,
    container: &str,
    default_region: &str,
) -> (Check, Option<(String, String)>) {
    const NAME: &str = "awslogs";
    let fix = "give the container \"logConfiguration\": {\"logDriver\": \"awslogs\"} with \
               awslogs-group, awslogs-region and awslogs-stream-prefix, and register again";
    let Some(sdk) = def
        .container_definitions()
        .iter()
        .find(|c| c.name() == Some(container))
    else {
        return (
            Check::skip(NAME, format!("no container {container:?}")),
            None,
        );
    };
    let driver = sdk.log_configuration().map(|l| l.log_driver());
    if driver != Some(&LogDriver::Awslogs) {
        return (
            Check::fail(
                NAME,
                format!(
                    "container {container:?} logs with {}: the launcher cannot read its output",
                    driver.map(|d| d.as_str()).unwrap_or("nothing")
                ),
                fix,
            ),
            None,
        );
    }
    let info = TaskDefinitionInfo::from_sdk(def);
    match info.container(container).ok().and_then(|c| c.logs.clone()) {
        Some(logs) => {
            let region = logs
                .region
                .clone()
                .unwrap_or_else(|| default_region.to_owned());
            (
                Check::pass(
                    NAME,
                    format!(
                        "group {} in {region}, stream prefix {}",
                        logs.group, logs.stream_prefix
                    ),
                ),
                Some((logs.group, region)),
            )
        }
        None => (
            Check::fail(
                NAME,
                "awslogs-group or awslogs-stream-prefix is missing",
                fix,
            ),
            None,
        ),
    }
}

/// The log group exists (it is created once by an operator, not by the driver).
pub(crate) async fn log_group(
    logs: &aws_sdk_cloudwatchlogs::Client,
    group: &str,
    region: &str,
) -> Check {
    const NAME: &str = "log-group";
    let mut token: Option<String> = None;
    loop {
        let reply = match logs
            .describe_log_groups()
            .log_group_name_prefix(group)
            .set_next_token(token.take())
            .send()
            .await
        {
            Ok(reply) => reply,
            Err(e) => {
                return Check::fail(
                    NAME,
                    describe_error("DescribeLogGroups", &e),
                    api_fix(
                        &e,
                        "logs:DescribeLogGroups",
                        "check the awslogs-region of the task definition",
                    ),
                );
            }
        };
        if reply
            .log_groups()
            .iter()
            .any(|g| g.log_group_name() == Some(group))
        {
            return Check::pass(NAME, format!("{group} exists in {region}"));
        }
        match reply.next_token() {
            Some(next) if !next.is_empty() => token = Some(next.to_owned()),
            _ => break,
        }
    }
    Check::fail(
        NAME,
        format!("log group {group} does not exist in {region}: the task would fail to start"),
        format!(
            "aws logs create-log-group --log-group-name {group} --region {region} (and set its \
             retention; see task-definitions/README.md)"
        ),
    )
}

/// One `secrets` entry of a container definition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretRef {
    /// The container it is injected into.
    pub container: String,
    /// The variable it becomes.
    pub variable: String,
    /// Its `valueFrom`.
    pub value_from: String,
}

impl SecretRef {
    /// The check's name: `secret:VARIABLE`, with the container when it is not the
    /// one the commands run in.
    pub(crate) fn check_name(&self, main_container: &str) -> String {
        if self.container == main_container {
            format!("secret:{}", self.variable)
        } else {
            format!("secret:{}/{}", self.container, self.variable)
        }
    }
}

/// Every secret the task definition references, in definition order.
pub(crate) fn secret_refs(def: &TaskDefinition) -> Vec<SecretRef> {
    def.container_definitions()
        .iter()
        .flat_map(|c| {
            c.secrets().iter().map(|s| SecretRef {
                container: c.name().unwrap_or_default().to_owned(),
                variable: s.name().to_owned(),
                value_from: s.value_from().to_owned(),
            })
        })
        .collect()
}

/// The secret id and region of a Secrets Manager `valueFrom`: the ARN without a
/// trailing `:json-key:version-stage:version-id`.
pub(crate) fn secrets_manager_id(value_from: &str) -> Option<(String, String)> {
    let parts: Vec<&str> = value_from.split(':').collect();
    if parts.len() < 7 || parts[0] != "arn" || parts[2] != "secretsmanager" || parts[5] != "secret"
    {
        return None;
    }
    Some((parts[..7].join(":"), parts[3].to_owned()))
}

/// The secret exists and is not scheduled for deletion (DescribeSecret only).
pub async fn secret(
    secrets: &aws_sdk_secretsmanager::Client,
    reference: &SecretRef,
    name: String,
) -> Check {
    let Some((id, region)) = secrets_manager_id(&reference.value_from) else {
        return Check::skip(
            name,
            format!(
                "{} is not a Secrets Manager ARN (ECS reads it from Parameter Store); not checked",
                reference.value_from
            ),
        );
    };
    let client = match secrets.config().region() {
        Some(r) if r.as_ref() == region => secrets.clone(),
        _ => aws_sdk_secretsmanager::Client::from_conf(
            secrets
                .config()
                .to_builder()
                .region(aws_sdk_secretsmanager::config::Region::new(region.clone()))
                .build(),
        ),
    };
    let fix_missing = format!(
        "create the secret, or correct {}'s valueFrom (the *_SECRET_ARN variables of \
         task-definitions/admin.json.tmpl) and run `run-admin-task task-def register`",
        reference.variable
    );
    match client.describe_secret().secret_id(&id).send().await {
        Ok(described) => match described.deleted_date() {
            Some(when) => Check::fail(
                name,
                format!("{id} is scheduled for deletion ({when})"),
                format!("aws secretsmanager restore-secret --secret-id {id} --region {region}"),
            ),
            None => Check::pass(name, format!("{id} exists")),
        },
        Err(e) => {
            let code = error_code(&e).unwrap_or_default().to_owned();
            let not_found = e
                .as_service_error()
                .is_some_and(|s| s.is_resource_not_found_exception());
            if not_found || code.contains("ResourceNotFound") {
                Check::fail(
                    name,
                    format!("{id} does not exist in {region}"),
                    fix_missing,
                )
            } else if code.contains("AccessDenied") {
                Check::skip(
                    name,
                    format!(
                        "not allowed to DescribeSecret {id}; ECS's execution role may still read it \
                         (`doctor --in-vpc` proves it does; {})",
                        denial_hint("secretsmanager:DescribeSecret")
                    ),
                )
            } else {
                Check::fail(
                    name,
                    format!("{id}: {}", describe_error("DescribeSecret", &e)),
                    api_fix(&e, "secretsmanager:DescribeSecret", &fix_missing),
                )
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_ids_drop_json_key_stage_and_version() {
        let arn = "arn:aws:secretsmanager:eu-west-1:123:secret:everruns/db-AbCdEf";
        assert_eq!(
            secrets_manager_id(arn),
            Some((arn.to_owned(), "eu-west-1".to_owned()))
        );
        assert_eq!(
            secrets_manager_id(&format!("{arn}:password:AWSCURRENT:")).map(|(id, _)| id),
            Some(arn.to_owned())
        );
        assert_eq!(
            secrets_manager_id("arn:aws:ssm:eu-west-1:123:parameter/x"),
            None
        );
        assert_eq!(secrets_manager_id("everruns/db"), None);
    }
}
