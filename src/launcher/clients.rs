//! The AWS clients, built from the resolved configuration, and how their errors are told
//! to an operator.

use std::error::Error as StdError;
use std::sync::RwLock;
use std::time::Duration;

use anyhow::anyhow;
use aws_config::retry::RetryConfig;
use aws_config::{BehaviorVersion, Region};
use aws_sdk_ecs::config::interceptors::InterceptorContext;
use aws_sdk_ecs::config::retry::{ClassifyRetry, RetryAction};
use aws_sdk_ecs::error::{ProvideErrorMetadata, SdkError};

use crate::contract::exit::{ExitError, launcher};
use crate::launcher::config::{ApiTimeouts, CredentialSource, LaunchConfig};

/// Attempts per API call; the SDK's standard retry backs off on throttling itself.
const MAX_ATTEMPTS: u32 = 5;

/// The longest wait for a TCP (and TLS) connection: an endpoint that does not even
/// accept is told apart quickly from one that accepts and stalls.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// Where calls go and how long they may take, for the message that explains a call that
/// got no answer. Set by [`shared_config`]; one invocation talks to one endpoint.
static CALLS: RwLock<Option<CallSettings>> = RwLock::new(None);

#[derive(Debug, Clone)]
struct CallSettings {
    endpoint: Option<String>,
    region: Option<String>,
    timeouts: ApiTimeouts,
}

/// The clients one invocation uses, all for the same region and endpoint.
#[derive(Clone, Debug)]
pub struct Clients {
    /// ECS (RunTask, DescribeTasks, StopTask, ...).
    pub ecs: aws_sdk_ecs::Client,
    /// CloudWatch Logs (GetLogEvents).
    pub logs: aws_sdk_cloudwatchlogs::Client,
    /// Secrets Manager (DescribeSecret for `doctor`; key status and rotation).
    pub secrets: aws_sdk_secretsmanager::Client,
    /// STS (GetCallerIdentity: which account the credentials are in).
    pub sts: aws_sdk_sts::Client,
    /// EC2 (DescribeSubnets, DescribeSecurityGroups: `doctor`'s network checks).
    pub ec2: aws_sdk_ec2::Client,
    /// ECR (DescribeImages: `doctor`'s image check).
    pub ecr: aws_sdk_ecr::Client,
    /// The region they talk to, for console links and re-attach commands.
    pub region: String,
}

impl Clients {
    /// Builds the clients. Region, profile and endpoint come from the configuration when
    /// set there, else from the SDK's own chain (`AWS_ENDPOINT_URL` included). No request
    /// is made; credentials are resolved on the first call.
    pub async fn connect(config: &LaunchConfig) -> Result<Self, ExitError> {
        Self::from_shared(&shared_config(config).await)
    }

    /// Builds the clients from a configuration [`shared_config`] loaded (`doctor` also
    /// asks that configuration's credentials provider). Fails (exit 2) without a region.
    pub fn from_shared(shared: &aws_config::SdkConfig) -> Result<Self, ExitError> {
        let Some(region) = shared.region().map(|r| r.to_string()) else {
            return Err(ExitError::usage(anyhow!(
                "no AWS region: pass --region, set AWS_REGION, or set `region` in the config file"
            )));
        };
        Ok(Clients {
            ecs: aws_sdk_ecs::Client::from_conf(
                aws_sdk_ecs::config::Builder::from(shared)
                    .retry_classifier(RefusedIsFinal)
                    .build(),
            ),
            logs: aws_sdk_cloudwatchlogs::Client::from_conf(
                aws_sdk_cloudwatchlogs::config::Builder::from(shared)
                    .retry_classifier(RefusedIsFinal)
                    .build(),
            ),
            secrets: aws_sdk_secretsmanager::Client::from_conf(
                aws_sdk_secretsmanager::config::Builder::from(shared)
                    .retry_classifier(RefusedIsFinal)
                    .build(),
            ),
            sts: aws_sdk_sts::Client::from_conf(
                aws_sdk_sts::config::Builder::from(shared)
                    .retry_classifier(RefusedIsFinal)
                    .build(),
            ),
            ec2: aws_sdk_ec2::Client::from_conf(
                aws_sdk_ec2::config::Builder::from(shared)
                    .retry_classifier(RefusedIsFinal)
                    .build(),
            ),
            ecr: aws_sdk_ecr::Client::from_conf(
                aws_sdk_ecr::config::Builder::from(shared)
                    .retry_classifier(RefusedIsFinal)
                    .build(),
            ),
            region,
        })
    }

    /// A logs client for the awslogs region of a task definition, which may differ
    /// from the region the task runs in.
    pub(crate) fn logs_in(&self, region: Option<&str>) -> aws_sdk_cloudwatchlogs::Client {
        match region {
            Some(region) if region != self.region => {
                let config = self
                    .logs
                    .config()
                    .to_builder()
                    .region(Region::new(region.to_string()))
                    .build();
                aws_sdk_cloudwatchlogs::Client::from_conf(config)
            }
            _ => self.logs.clone(),
        }
    }
}

/// A refused connection is not retried: nothing listens at that endpoint (a leftover
/// `AWS_ENDPOINT_URL`, a stopped emulator), and the SDK's retries would only delay, by
/// seconds, the message that names it.
#[derive(Debug)]
struct RefusedIsFinal;

impl ClassifyRetry for RefusedIsFinal {
    fn classify_retry(&self, ctx: &InterceptorContext) -> RetryAction {
        let refused = ctx
            .output_or_error()
            .and_then(Result::err)
            .and_then(|e| e.as_connector_error())
            .is_some_and(|e| is_refused(e));
        if refused {
            RetryAction::RetryForbidden
        } else {
            RetryAction::NoActionIndicated
        }
    }

    fn name(&self) -> &'static str {
        "connection refused is final"
    }
}

/// Whether an error, or one of its causes, is a refused TCP connection.
fn is_refused(err: &(dyn StdError + 'static)) -> bool {
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

/// Loads the SDK configuration:/// Loads the SDK configuration: region, profile and endpoint from `config` when set
/// there, else from the SDK's own chain (`AWS_ENDPOINT_URL` included). No request is
/// made; credentials are resolved on the first call.
pub async fn shared_config(config: &LaunchConfig) -> aws_config::SdkConfig {
    let timeouts = ApiTimeouts {
        // An attempt longer than the whole call could never be retried.
        attempt: config.api_timeouts.attempt.min(config.api_timeouts.call),
        ..config.api_timeouts
    };
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .retry_config(RetryConfig::standard().with_max_attempts(MAX_ATTEMPTS))
        .timeout_config(
            aws_config::timeout::TimeoutConfig::builder()
                .connect_timeout(CONNECT_TIMEOUT.min(timeouts.attempt))
                .operation_attempt_timeout(timeouts.attempt)
                .operation_timeout(timeouts.call)
                .build(),
        );
    if let Some(region) = &config.region {
        loader = loader.region(Region::new(region.clone()));
    }
    if let Some(profile) = &config.profile {
        loader = loader.profile_name(profile);
    }
    if let CredentialSource::NamedProfile(profile, _) = &config.credentials {
        // The default chain would take access keys from the environment first.
        loader = loader.credentials_provider(
            aws_config::profile::ProfileFileCredentialsProvider::builder()
                .profile_name(profile)
                .build(),
        );
    }
    if let Some(url) = &config.endpoint_url {
        loader = loader.endpoint_url(url);
    }
    let shared = loader.load().await;
    if let Ok(mut calls) = CALLS.write() {
        *calls = Some(CallSettings {
            endpoint: shared.endpoint_url().map(str::to_string),
            region: shared.region().map(|r| r.to_string()),
            timeouts,
        });
    }
    shared
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
            format!(
                "{operation} failed: {}: {}",
                e.code().unwrap_or("error"),
                e.message().unwrap_or("no message")
            )
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
) -> Option<ExitError>
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
    Some(ExitError::new(
        launcher::NEVER_RAN,
        anyhow!(
            "there is no ECS cluster {cluster:?} in region {region}: check --cluster / ECS_CLUSTER / `cluster`, and --region / AWS_REGION / `region`"
        ),
    ))
}

/// An API failure before or at launch: nothing ran, so exit 125, with a hint that fits
/// the error (credentials, region, missing cluster or task definition).
pub(crate) fn launch_error<E, R>(operation: &str, err: &SdkError<E, R>) -> ExitError
where
    E: ProvideErrorMetadata + StdError + 'static,
    R: std::fmt::Debug + 'static,
{
    let code = error_code(err).unwrap_or_default();
    if matches!(err, SdkError::TimeoutError(_)) {
        // The message already says what to check.
        return ExitError::new(
            launcher::NEVER_RAN,
            anyhow!("{}", describe_error(operation, err)),
        );
    }
    if matches!(err, SdkError::DispatchFailure(_)) && is_refused(err) {
        // The message names the endpoint, which is what is wrong.
        return ExitError::new(
            launcher::NEVER_RAN,
            anyhow!("{}", describe_error(operation, err)),
        );
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
        c if c.contains("AccessDenied")
            || c.contains("UnrecognizedClient")
            || c.contains("Token") =>
        {
            "check credentials (AWS_PROFILE / --profile, `aws sso login`) and the IAM permissions"
        }
        _ => "check credentials, region (--region / AWS_REGION) and the endpoint",
    };
    ExitError::new(
        launcher::NEVER_RAN,
        anyhow!(
            "{} (region {region}); {hint}",
            describe_error(operation, err)
        ),
    )
}
