//! How a failed AWS call is told to an operator: which service and endpoint, whether
//! it is worth retrying, and the exit status and hint for a failure before or at a
//! launch. Kept apart from building the clients so that whatever makes calls (the
//! clients, the API budget, the commands) can explain them.

use std::error::Error as StdError;
use std::sync::RwLock;

use anyhow::anyhow;
use aws_sdk_ecs::error::{ProvideErrorMetadata, SdkError};

use crate::launcher::aws_api::policies;
use crate::launcher::config::ApiTimeouts;
use crate::launcher::error::{CallError, LauncherError};

/// Where calls go and how long they may take, for the message that explains a call that
/// got no answer. Set by [`shared_config`]; one invocation talks to one endpoint.
static CALLS: RwLock<Option<CallSettings>> = RwLock::new(None);

/// Where this invocation's calls go and how long they may take.
#[derive(Debug, Clone)]
pub(crate) struct CallSettings {
    pub(crate) endpoint: Option<String>,
    pub(crate) region: Option<String>,
    pub(crate) timeouts: ApiTimeouts,
}

/// Records where calls go, once the SDK configuration is loaded.
pub(crate) fn remember_calls(settings: CallSettings) {
    if let Ok(mut calls) = CALLS.write() {
        *calls = Some(settings);
    }
}

/// Whether an error, or one of its causes, is a refused TCP connection.
pub(crate) fn is_refused(err: &(dyn StdError + 'static)) -> bool {
    let mut current = Some(err);
    while let Some(e) = current {
        if e.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::ConnectionRefused)
        {
            return true;
        }
        current = e.source();
    }
    false
}

/// The service an operation belongs to, as an operator names it, and its endpoint
/// prefix (`ecs.REGION.amazonaws.com`).
fn service_of(operation: &str) -> (&'static str, &'static str) {
    if operation.contains("Secret") {
        ("Secrets Manager", "secretsmanager")
    } else if operation.contains("Log") {
        ("CloudWatch Logs", "logs")
    } else if operation == "GetCallerIdentity" {
        ("STS", "sts")
    } else if operation.starts_with("DescribeSubnets")
        || operation.starts_with("DescribeSecurityGroups")
    {
        ("EC2", "ec2")
    } else if operation == "DescribeImages" {
        ("ECR", "api.ecr")
    } else {
        ("ECS", "ecs")
    }
}

/// The IAM action of an operation (`StopTask` -> `ecs:StopTask`).
fn action_of(operation: &str) -> String {
    let prefix = match service_of(operation).1 {
        "api.ecr" => "ecr",
        prefix => prefix,
    };
    format!("{prefix}:{operation}")
}

/// Whether an error code says the caller may not make the call.
pub(crate) fn is_denied(code: &str) -> bool {
    code.contains("AccessDenied") || code.contains("UnauthorizedOperation")
}

/// The service of an operation and the endpoint its calls go to, for messages.
fn endpoint_of(operation: &str) -> (&'static str, String) {
    let calls = CALLS.read().ok().and_then(|c| c.clone());
    let (service, prefix) = service_of(operation);
    let endpoint = calls
        .as_ref()
        .and_then(|c| match (&c.endpoint, &c.region) {
            (Some(url), _) => Some(url.clone()),
            (None, Some(region)) => Some(format!("https://{prefix}.{region}.amazonaws.com")),
            (None, None) => None,
        })
        .unwrap_or_else(|| format!("the {service} endpoint"));
    (service, endpoint)
}

/// Why a call got no answer in time: the service, the endpoint and how long it waited,
/// with what to check.
fn no_answer(operation: &str) -> String {
    let (service, endpoint) = endpoint_of(operation);
    let timeouts = CALLS
        .read()
        .ok()
        .and_then(|c| c.as_ref().map(|c| c.timeouts))
        .unwrap_or_default();
    format!(
        "{service} {operation} got no answer from {endpoint} within {} ({} per attempt); \
         check the network path to it (VPN, proxy, AWS_ENDPOINT_URL), or raise --call-timeout",
        humantime::format_duration(timeouts.call),
        humantime::format_duration(timeouts.attempt),
    )
}

/// The service's error code (`ThrottlingException`, `ClusterNotFoundException`, ...).
pub(crate) fn error_code<E, R>(err: &SdkError<E, R>) -> Option<&str>
where
    E: ProvideErrorMetadata,
{
    match err {
        SdkError::ServiceError(service) => service.err().code(),
        _ => None,
    }
}

/// Whether trying again later can help: throttling, server errors, timeouts and
/// connection failures (the SDK has already retried each call).
pub(crate) fn is_transient<E, R>(err: &SdkError<E, R>) -> bool
where
    E: ProvideErrorMetadata,
{
    match err {
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            true
        }
        SdkError::ServiceError(service) => {
            let code = service.err().code().unwrap_or_default();
            code.contains("Throttl")
                || code.contains("TooManyRequests")
                || code == "ServerException"
                || code == "ServiceUnavailableException"
                || code == "InternalFailure"
                || code.is_empty()
        }
        _ => false,
    }
}

/// A one-line description of an API failure: code, message, and the transport's cause.
pub(crate) fn describe_error<E, R>(operation: &str, err: &SdkError<E, R>) -> String
where
    E: ProvideErrorMetadata + StdError + 'static,
    R: std::fmt::Debug + 'static,
{
    match err {
        SdkError::ServiceError(service) => {
            let e = service.err();
            let code = e.code().unwrap_or("error");
            let mut text = format!(
                "{operation} failed: {code}: {}",
                e.message().unwrap_or("no message")
            );
            if is_denied(code) {
                text.push_str("; ");
                text.push_str(&policies::denial_hint(&action_of(operation)));
            }
            text
        }
        SdkError::TimeoutError(_) => no_answer(operation),
        SdkError::DispatchFailure(failure) if failure.is_timeout() => no_answer(operation),
        SdkError::DispatchFailure(_) if is_refused(err) => {
            let (service, endpoint) = endpoint_of(operation);
            format!(
                "{service} {operation}: {endpoint} refused the connection (nothing listens there); check --endpoint-url / AWS_ENDPOINT_URL / `endpoint_url` and the region"
            )
        }
        other => format!("{operation} failed: {}", error_chain(other)),
    }
}

/// An error and its causes on one line, each cause once: the SDK's top-level message
/// ("dispatch failure") says little without them.
pub(crate) fn error_chain(err: &(dyn StdError + 'static)) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// The error for an ECS call on `cluster` that ECS does not know: exit 125, naming the
/// cluster and the region asked, which are what is wrong.
pub(crate) fn cluster_not_found<E, R>(
    err: &SdkError<E, R>,
    cluster: &str,
    ecs: &aws_sdk_ecs::Client,
) -> Option<LauncherError>
where
    E: ProvideErrorMetadata,
{
    if !error_code(err)?.contains("ClusterNotFound") {
        return None;
    }
    let region = ecs
        .config()
        .region()
        .map_or_else(|| "(none)".to_string(), |r| r.to_string());
    Some(CallError::at_launch(anyhow!(
        "there is no ECS cluster {cluster:?} in region {region}: check --cluster / ECS_CLUSTER / `cluster`, and --region / AWS_REGION / `region`"
    )))
}

/// An API failure before or at launch: nothing ran, so exit 125, with a hint that fits
/// the error (credentials, region, missing cluster or task definition).
pub(crate) fn launch_error<E, R>(operation: &str, err: &SdkError<E, R>) -> LauncherError
where
    E: ProvideErrorMetadata + StdError + 'static,
    R: std::fmt::Debug + 'static,
{
    CallError::at_launch(anyhow!("{}", explain(operation, err)))
}

/// An API failure of a command that launches nothing (`list`, `keys`): a runtime
/// failure (exit 1), with the same hint; "the task never ran" (125) would say something
/// about a task there is not.
pub(crate) fn call_error<E, R>(operation: &str, err: &SdkError<E, R>) -> LauncherError
where
    E: ProvideErrorMetadata + StdError + 'static,
    R: std::fmt::Debug + 'static,
{
    CallError::inspecting(anyhow!("{}", explain(operation, err)))
}

/// What failed and what to check: the endpoint for a call that got no answer or was
/// refused, else the region and a hint that fits the error code.
fn explain<E, R>(operation: &str, err: &SdkError<E, R>) -> String
where
    E: ProvideErrorMetadata + StdError + 'static,
    R: std::fmt::Debug + 'static,
{
    let code = error_code(err).unwrap_or_default();
    // Both messages already name the endpoint, which is what to check.
    if matches!(err, SdkError::TimeoutError(_))
        || (matches!(err, SdkError::DispatchFailure(_)) && is_refused(err))
    {
        return describe_error(operation, err);
    }
    let region = CALLS
        .read()
        .ok()
        .and_then(|c| c.as_ref().and_then(|c| c.region.clone()))
        .unwrap_or_else(|| "unknown".to_string());
    let hint = match code {
        "ClientException" if operation == "DescribeTaskDefinition" => {
            "check the task definition's family and revision, and that it is registered in this region (--region / AWS_REGION / `region`)"
        }
        "ClientException" | "InvalidParameterException" => {
            "check the task definition, subnets, security groups and capacity settings"
        }
        // The message already names the policy to ask for.
        c if is_denied(c) => {
            "check too that these are the credentials meant (AWS_PROFILE / --profile)"
        }
        c if c.contains("UnrecognizedClient") || c.contains("Token") => {
            "check credentials (AWS_PROFILE / --profile, `aws sso login`)"
        }
        _ => "check credentials, region (--region / AWS_REGION) and the endpoint",
    };
    format!(
        "{} (region {region}); {hint}",
        describe_error(operation, err)
    )
}
