//! The AWS clients, built from the resolved configuration, and how their errors are told
//! to an operator.

use std::sync::Arc;
use std::time::Duration;

use anyhow::anyhow;
use aws_config::retry::RetryConfig;
use aws_config::{BehaviorVersion, Region};
use aws_sdk_ecs::config::interceptors::InterceptorContext;
use aws_sdk_ecs::config::retry::{ClassifyRetry, RetryAction};

use crate::launcher::aws_api::api_budget::{ApiBudget, CountCalls, Rates};
use crate::launcher::aws_api::aws_errors::{self, CallSettings, is_refused};
use crate::launcher::config::{ApiTimeouts, CredentialSource, LaunchConfig};
use crate::launcher::error::{LauncherError, SettingsError};

/// Attempts per API call; the SDK's standard retry backs off on throttling itself.
const MAX_ATTEMPTS: u32 = 5;

/// The longest wait for a TCP (and TLS) connection: an endpoint that does not even
/// accept is told apart quickly from one that accepts and stalls.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// The clients one invocation uses, all for the same region and endpoint.
#[derive(Clone, Debug)]
pub struct Clients {
    /// ECS (RunTask, DescribeTasks, StopTask, ...).
    pub ecs: aws_sdk_ecs::Client,
    /// CloudWatch Logs (GetLogEvents).
    pub logs: aws_sdk_cloudwatchlogs::Client,
    /// Secrets Manager (DescribeSecret for `doctor`; key status and rotation).
    pub secrets: aws_sdk_secretsmanager::Client,
    /// Systems Manager (StartSession: `tunnel`'s port forwarding).
    pub ssm: aws_sdk_ssm::Client,
    /// STS (GetCallerIdentity: which account the credentials are in).
    pub sts: aws_sdk_sts::Client,
    /// EC2 (DescribeSubnets, DescribeSecurityGroups: `doctor`'s network checks).
    pub ec2: aws_sdk_ec2::Client,
    /// ECR (DescribeImages: `doctor`'s image check).
    pub ecr: aws_sdk_ecr::Client,
    /// The region they talk to, for console links and re-attach commands.
    pub region: String,
    /// The invocation's paces for GetLogEvents and DescribeTasks, and its count of calls.
    pub(crate) budget: Arc<ApiBudget>,
}

impl Clients {
    /// Builds the clients. Region, profile and endpoint come from the configuration when
    /// set there, else from the SDK's own chain (`AWS_ENDPOINT_URL` included). No request
    /// is made; credentials are resolved on the first call.
    pub async fn connect(config: &LaunchConfig) -> Result<Self, LauncherError> {
        let rates = Rates {
            log_reads: config.log_reads_per_second,
            ..Rates::default()
        };
        Self::paced(&shared_config(config).await, rates)
    }

    /// Builds the clients from a configuration [`shared_config`] loaded (`doctor` also
    /// asks that configuration's credentials provider). Fails (exit 2) without a region.
    pub fn from_shared(shared: &aws_config::SdkConfig) -> Result<Self, LauncherError> {
        Self::paced(shared, Rates::default())
    }

    /// The clients, with an API budget at `rates`.
    fn paced(shared: &aws_config::SdkConfig, rates: Rates) -> Result<Self, LauncherError> {
        let Some(region) = shared.region().map(|r| r.to_string()) else {
            return Err(SettingsError::invalid(anyhow!(
                "no AWS region: pass --region, set AWS_REGION, or set `region` in the config file"
            )));
        };
        Ok(Clients {
            ecs: aws_sdk_ecs::Client::from_conf(
                aws_sdk_ecs::config::Builder::from(shared)
                    .retry_classifier(RefusedIsFinal)
                    .interceptor(CountCalls)
                    .build(),
            ),
            logs: aws_sdk_cloudwatchlogs::Client::from_conf(
                aws_sdk_cloudwatchlogs::config::Builder::from(shared)
                    .retry_classifier(RefusedIsFinal)
                    .interceptor(CountCalls)
                    .build(),
            ),
            secrets: aws_sdk_secretsmanager::Client::from_conf(
                aws_sdk_secretsmanager::config::Builder::from(shared)
                    .retry_classifier(RefusedIsFinal)
                    .interceptor(CountCalls)
                    .build(),
            ),
            ssm: aws_sdk_ssm::Client::from_conf(
                aws_sdk_ssm::config::Builder::from(shared)
                    .retry_classifier(RefusedIsFinal)
                    .interceptor(CountCalls)
                    .build(),
            ),
            sts: aws_sdk_sts::Client::from_conf(
                aws_sdk_sts::config::Builder::from(shared)
                    .retry_classifier(RefusedIsFinal)
                    .interceptor(CountCalls)
                    .build(),
            ),
            ec2: aws_sdk_ec2::Client::from_conf(
                aws_sdk_ec2::config::Builder::from(shared)
                    .retry_classifier(RefusedIsFinal)
                    .interceptor(CountCalls)
                    .build(),
            ),
            ecr: aws_sdk_ecr::Client::from_conf(
                aws_sdk_ecr::config::Builder::from(shared)
                    .retry_classifier(RefusedIsFinal)
                    .interceptor(CountCalls)
                    .build(),
            ),
            region,
            budget: Arc::new(ApiBudget::new(rates)),
        })
    }

    /// Clients built elsewhere, without pace: the tests' mocked services (the one test
    /// seam of this type).
    pub fn from_parts(
        ecs: aws_sdk_ecs::Client,
        logs: aws_sdk_cloudwatchlogs::Client,
        secrets: aws_sdk_secretsmanager::Client,
        sts: aws_sdk_sts::Client,
        ec2: aws_sdk_ec2::Client,
        ecr: aws_sdk_ecr::Client,
        region: &str,
    ) -> Self {
        // No test mocks Systems Manager; a call on this client fails for want of
        // credentials instead of reaching AWS.
        let ssm = aws_sdk_ssm::Client::from_conf(
            aws_sdk_ssm::Config::builder()
                .behavior_version(aws_sdk_ssm::config::BehaviorVersion::latest())
                .region(Region::new(region.to_string()))
                .build(),
        );
        Clients {
            ecs,
            logs,
            secrets,
            ssm,
            sts,
            ec2,
            ecr,
            region: region.to_string(),
            budget: Arc::new(ApiBudget::new(Rates::UNPACED)),
        }
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

/// Loads the SDK configuration: region, profile and endpoint from `config` when set
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
    aws_errors::remember_calls(CallSettings {
        endpoint: shared.endpoint_url().map(str::to_string),
        region: shared.region().map(|r| r.to_string()),
        timeouts,
    });
    shared
}
