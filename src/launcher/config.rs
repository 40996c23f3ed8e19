//! Where the launcher's settings come from: flags, then environment, then a config file
//! with named environments, then defaults.
//!
//! The old script's variables (`ECS_CLUSTER`, `ECS_SUBNETS`, `ECS_SECURITY_GROUP`,
//! `AWS_REGION`, `AWS_PROFILE`) keep working, so existing CI jobs need no change. Every
//! missing or malformed value is a usage error (exit 2) raised before any AWS call, and
//! its message names the flag, the variable and the config key that would set it.

use std::time::Duration;

use anyhow::anyhow;

use crate::launcher::capacity::{Capacity, DEFAULT_LAUNCH_TYPE};
use crate::launcher::config_file::{FileSettings, StringList, load_file, split_list};
use crate::launcher::error::{LauncherError, SettingsError};
use crate::launcher::flags::{EnvLookup, GlobalOptions};
use crate::launcher::idempotency::Idempotency;

/// The cluster used when nothing else names one (the old script's default).
pub(crate) const DEFAULT_CLUSTER: &str = "everruns";
/// The task definition family of the admin container.
pub const DEFAULT_FAMILY: &str = "everruns-admin";
/// The container that runs the companion.
pub const DEFAULT_CONTAINER: &str = "admin";
/// GetLogEvents a second, on average, for all the log tails of an invocation, unless told
/// otherwise: 3 for running containers, the rest saved for draining those that exited.
pub(crate) const DEFAULT_LOG_READS_PER_SECOND: f64 = 4.0;

/// How often a task ECS never started is started again, unless told otherwise.
pub(crate) const DEFAULT_START_RETRIES: u32 = 2;

/// Where a resolved setting came from, as `--print-request` and `doctor` say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// A flag (`--subnets`).
    Flag(&'static str),
    /// An environment variable (`ECS_SUBNETS`).
    Env(&'static str),
    /// A config file key (`subnets`).
    Config(&'static str),
    /// The ECS service named by `--from-service`.
    Service(String),
    /// Not set anywhere: the built-in default (or nothing).
    Default,
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Origin::Flag(flag) => write!(f, "flag {flag}"),
            Origin::Env(var) => write!(f, "environment {var}"),
            Origin::Config(key) => write!(f, "config `{key}`"),
            Origin::Service(name) => write!(f, "service {name}"),
            Origin::Default => write!(f, "default"),
        }
    }
}

/// Where each launch setting came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origins {
    /// Of `cluster`.
    pub cluster: Origin,
    /// Of `task_definition`.
    pub task_definition: Origin,
    /// Of `subnets`.
    pub subnets: Origin,
    /// Of `security_groups`.
    pub security_groups: Origin,
    /// Of `assign_public_ip`.
    pub assign_public_ip: Origin,
    /// Of `capacity`.
    pub capacity: Origin,
    /// Of `platform_version`.
    pub platform_version: Origin,
    /// Of `region` (`Default`: the SDK's own chain decides).
    pub region: Origin,
    /// Of `profile`.
    pub profile: Origin,
    /// Of `endpoint_url`.
    pub endpoint_url: Origin,
    /// Of `service`.
    pub service: Origin,
}

impl Origin {
    /// Whether the operator named this value for this invocation (a flag, or the
    /// config file they keep), rather than inheriting it from the shell.
    pub(crate) fn is_explicit(&self) -> bool {
        matches!(self, Origin::Flag(_) | Origin::Config(_))
    }
}

/// Where the AWS credentials come from, as `--print-request` and `doctor` say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CredentialSource {
    /// A profile named by a flag or the config file: its credentials are used even
    /// when access keys are in the environment, as the AWS CLI does with `--profile`.
    NamedProfile(String, Origin),
    /// `AWS_ACCESS_KEY_ID` and `AWS_SECRET_ACCESS_KEY`.
    EnvironmentKeys,
    /// The SDK's default chain, starting from `AWS_PROFILE`'s profile when set.
    DefaultChain(Option<String>),
}

impl std::fmt::Display for CredentialSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CredentialSource::NamedProfile(name, origin) => write!(f, "profile {name} ({origin})"),
            CredentialSource::EnvironmentKeys => {
                write!(f, "access keys (environment AWS_ACCESS_KEY_ID)")
            }
            CredentialSource::DefaultChain(Some(name)) => {
                write!(f, "profile {name} (environment AWS_PROFILE)")
            }
            CredentialSource::DefaultChain(None) => write!(
                f,
                "the SDK's default chain (default profile, SSO, web identity, container or instance role)"
            ),
        }
    }
}

/// Everything the launcher needs to know about where and how to run, resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct LaunchConfig {
    /// The config file environment in use, if any.
    pub env_name: Option<String>,
    /// The ECS cluster.
    pub cluster: String,
    /// Subnets for awsvpc networking; required to launch, not to inspect.
    pub subnets: Vec<String>,
    /// Security groups; the VPC's default group when empty.
    pub security_groups: Vec<String>,
    /// Whether the task gets a public IP.
    pub assign_public_ip: bool,
    /// Task definition family, `family:revision` or ARN.
    pub task_definition: String,
    /// The container to run the command in.
    pub container: String,
    /// Launch type or capacity provider.
    pub capacity: Capacity,
    /// The Fargate platform version; ECS's `LATEST` when `None`.
    pub platform_version: Option<String>,
    /// The ECS service whose network settings the launch copies (`--from-service`).
    pub service: Option<String>,
    /// Where the launch settings came from.
    pub origins: Origins,
    /// Region, when set by flag, environment or file (else the SDK's default chain).
    pub region: Option<String>,
    /// Named AWS profile, when set by flag, environment or file.
    pub profile: Option<String>,
    /// Endpoint override (flag, config file or `AWS_ENDPOINT_URL`).
    pub endpoint_url: Option<String>,
    /// Where the credentials come from.
    pub credentials: CredentialSource,
    /// The AWS account the config environment is pinned to (`account_id`): a launch
    /// with credentials of another account is refused.
    pub account_id: Option<String>,
    /// Ambient settings that lost to a named target, one line each
    /// (`ECS_CLUSTER=everruns ignored: --env production sets cluster ...`).
    pub overridden: Vec<String>,
    /// Whether mutating commands must be confirmed (production).
    pub confirm: bool,
    /// The current encryption key's secret, when the file names it (else `keys` reads
    /// it from the task definition).
    pub current_secret: Option<String>,
    /// The previous encryption keys' secret, likewise.
    pub previous_secret: Option<String>,
    /// Whether following waits for STOPPED instead of the container's exit.
    pub wait_stopped: bool,
    /// Whether a job that writes may run on FARGATE_SPOT (`--allow-spot`).
    pub allow_spot: bool,
    /// How often a task ECS never started is started again (`--start-retries`).
    pub start_retries: u32,
    /// GetLogEvents a second on average, for every log tail together
    /// (`--log-reads-per-second`).
    pub log_reads_per_second: f64,
    /// The bounds on every AWS call.
    pub api_timeouts: ApiTimeouts,
    /// When a task that has not started yet earns a warning.
    pub slow_start: Duration,
    /// Where RunTask's clientToken comes from.
    pub idempotency: Idempotency,
}

/// How long AWS calls may take: a CLI must answer, so an endpoint that never replies
/// ends in bounded time instead of the SDK's unbounded wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ApiTimeouts {
    /// One call, the SDK's retries included.
    pub call: Duration,
    /// One attempt; a stalled attempt is abandoned and retried within `call`.
    pub attempt: Duration,
}

impl Default for ApiTimeouts {
    fn default() -> Self {
        ApiTimeouts {
            call: Duration::from_secs(20),
            attempt: Duration::from_secs(8),
        }
    }
}

/// The default of `--slow-start`: Fargate usually starts a task within a minute.
pub(crate) const DEFAULT_SLOW_START: Duration = Duration::from_secs(120);

/// `--log-reads-per-second`, `RUN_ADMIN_TASK_LOG_READS_PER_SECOND`, `log_reads_per_second`,
/// in that order: more than 0 and at most 100 (GetLogEvents's quota is a few dozen a
/// second for the whole account).
fn log_reads_per_second(
    flag: Option<f64>,
    env: Option<String>,
    file: Option<f64>,
) -> Result<f64, LauncherError> {
    let (rate, named) = match (flag, env) {
        (Some(rate), _) => (rate, "--log-reads-per-second".to_string()),
        (None, Some(text)) => (
            text.trim().parse().unwrap_or(f64::NAN),
            format!("RUN_ADMIN_TASK_LOG_READS_PER_SECOND={text:?}"),
        ),
        (None, None) => (
            file.unwrap_or(DEFAULT_LOG_READS_PER_SECOND),
            "log_reads_per_second".to_string(),
        ),
    };
    if rate > 0.0 && rate <= 100.0 {
        Ok(rate)
    } else {
        Err(SettingsError::invalid(anyhow!(
            "{named} is not a rate: give GetLogEvents calls a second, more than 0 and at most 100 (default {})",
            DEFAULT_LOG_READS_PER_SECOND
        )))
    }
}

/// A picked value and its origin, apart; `Origin::Default` when nothing set it.
fn split_origin(picked: Option<(String, Origin)>) -> (Option<String>, Origin) {
    match picked {
        Some((value, origin)) => (Some(value), origin),
        None => (None, Origin::Default),
    }
}

impl LaunchConfig {
    /// Resolves the configuration. A flag wins; then, when the operator named a config
    /// environment (`--env`, `EVERRUNS_ENV`), that environment's settings win over the
    /// shell's variables, which are said to be ignored; otherwise the variables win
    /// over the file. Defaults last. Reads the config file; makes no AWS call.
    pub fn resolve(options: &GlobalOptions, env: EnvLookup) -> Result<Self, LauncherError> {
        let (env_name, named_by) = match (&options.env, env("EVERRUNS_ENV")) {
            (Some(name), _) => (Some(name.clone()), format!("--env {name}")),
            (None, Some(name)) => (Some(name.clone()), format!("EVERRUNS_ENV={name}")),
            (None, None) => (None, String::new()),
        };
        let file = match load_file(options, env)? {
            Some((file, path)) => file.settings(env_name.as_deref(), &path)?,
            None if env_name.is_some() => {
                return Err(SettingsError::invalid(anyhow!(
                    "{named_by} names a config environment, but there is no config file to define it: write an [env.{}] table in ~/.config/everruns-admin/config.toml, or name the file with --config / RUN_ADMIN_TASK_CONFIG",
                    env_name.unwrap_or_default()
                )));
            }
            None => FileSettings::default(),
        };
        // The environment the operator named, when there is one: its settings beat the
        // shell's.
        let named = env_name.is_some().then_some(named_by.as_str());
        let overridden = std::cell::RefCell::new(Vec::new());

        // Each value with where it came from: the flag, else (with a named environment)
        // its key, else the first variable set, else the key.
        let pick = |flag: &Option<String>,
                    (flag_name, vars, key_name): (&'static str, &[&'static str], &'static str),
                    key: &Option<String>| {
            if let Some(value) = flag {
                return Some((value.clone(), Origin::Flag(flag_name)));
            }
            let ambient = vars
                .iter()
                .find_map(|var| env(var).map(|value| (*var, value)));
            if let (Some(named), Some(value)) = (named, key) {
                if let Some((var, shell)) = &ambient
                    && shell != value
                {
                    overridden.borrow_mut().push(format!(
                        "{var}={shell} ignored: {named} sets {key_name} {value}"
                    ));
                }
                return Some((value.clone(), Origin::Config(key_name)));
            }
            if let Some((var, value)) = ambient {
                return Some((value, Origin::Env(var)));
            }
            key.clone().map(|value| (value, Origin::Config(key_name)))
        };
        let list = |flag: &[String],
                    (flag_name, var, key_name): (&'static str, &'static str, &'static str),
                    key: &Option<StringList>| {
            let from_flag = split_list(flag);
            if !from_flag.is_empty() {
                return (from_flag, Origin::Flag(flag_name));
            }
            let key = key
                .clone()
                .map(StringList::into_vec)
                .filter(|items| !items.is_empty())
                .map(|items| items.join(","));
            match pick(&None, (flag_name, &[var], key_name), &key) {
                Some((value, origin)) => (split_list(&[value]), origin),
                None => (Vec::new(), Origin::Default),
            }
        };

        let (capacity, capacity_origin) = match (&options.capacity_provider, &options.launch_type) {
            (Some(provider), _) => (
                Capacity::provider(provider),
                Origin::Flag("--capacity-provider"),
            ),
            (None, Some(launch_type)) => (
                Capacity::LaunchType(launch_type.clone()),
                Origin::Flag("--launch-type"),
            ),
            (None, None) => match (&file.capacity_provider, &file.launch_type) {
                (Some(provider), _) => (
                    Capacity::provider(provider),
                    Origin::Config("capacity_provider"),
                ),
                (None, Some(launch_type)) => (
                    Capacity::LaunchType(launch_type.clone()),
                    Origin::Config("launch_type"),
                ),
                (None, None) => (
                    Capacity::LaunchType(DEFAULT_LAUNCH_TYPE.to_string()),
                    Origin::Default,
                ),
            },
        };

        // A duration from the flag, else the variable, else the config key, each
        // checked with the same parser, so a bad value names where it came from.
        let duration = |flag: Option<Duration>, var: &str, key: &str, value: &Option<String>| {
            if let Some(flag) = flag {
                return Ok(Some(flag));
            }
            let (origin, text) = match (env(var), value) {
                (Some(text), _) => (var.to_string(), text),
                (None, Some(text)) => (format!("`{key}` in the config file"), text.clone()),
                (None, None) => return Ok(None),
            };
            crate::contract::duration::parse_nonzero(&text)
                .map(Some)
                .map_err(|e| SettingsError::invalid(anyhow!("{origin}: {e}")))
        };
        let defaults = ApiTimeouts::default();
        let api_timeouts = ApiTimeouts {
            call: duration(
                options.call_timeout,
                "RUN_ADMIN_TASK_CALL_TIMEOUT",
                "call_timeout",
                &file.call_timeout,
            )?
            .unwrap_or(defaults.call),
            attempt: duration(
                options.attempt_timeout,
                "RUN_ADMIN_TASK_ATTEMPT_TIMEOUT",
                "attempt_timeout",
                &file.attempt_timeout,
            )?
            .unwrap_or(defaults.attempt),
        };
        let slow_start = duration(
            options.slow_start,
            "RUN_ADMIN_TASK_SLOW_START",
            "slow_start",
            &file.slow_start,
        )?
        .unwrap_or(DEFAULT_SLOW_START);

        let (subnets, subnets_origin) = list(
            &options.subnets,
            ("--subnets", "ECS_SUBNETS", "subnets"),
            &file.subnets,
        );
        let (security_groups, security_groups_origin) = list(
            &options.security_groups,
            ("--security-groups", "ECS_SECURITY_GROUP", "security_groups"),
            &file.security_groups,
        );
        let (cluster, cluster_origin) = pick(
            &options.cluster,
            ("--cluster", &["ECS_CLUSTER"], "cluster"),
            &file.cluster,
        )
        .unwrap_or_else(|| (DEFAULT_CLUSTER.to_string(), Origin::Default));
        let (task_definition, task_definition_origin) = pick(
            &options.task_definition,
            (
                "--task-definition",
                &["ECS_TASK_DEFINITION"],
                "task_definition",
            ),
            &file.task_definition,
        )
        .unwrap_or_else(|| (DEFAULT_FAMILY.to_string(), Origin::Default));
        let (assign_public_ip, assign_public_ip_origin) = match file.assign_public_ip {
            _ if options.assign_public_ip => (true, Origin::Flag("--assign-public-ip")),
            Some(value) => (value, Origin::Config("assign_public_ip")),
            None => (false, Origin::Default),
        };
        let (platform_version, platform_version_origin) =
            match (&options.platform_version, &file.platform_version) {
                (Some(v), _) => (Some(v.clone()), Origin::Flag("--platform-version")),
                (None, Some(v)) => (Some(v.clone()), Origin::Config("platform_version")),
                (None, None) => (None, Origin::Default),
            };
        let service = pick(
            &options.from_service,
            ("--from-service", &["ECS_SERVICE"], "service"),
            &file.service,
        );
        let region = pick(
            &options.region,
            ("--region", &["AWS_REGION", "AWS_DEFAULT_REGION"], "region"),
            &file.region,
        );
        let profile = pick(
            &options.profile,
            ("--profile", &["AWS_PROFILE"], "profile"),
            &file.profile,
        );
        let endpoint_url = pick(
            &options.endpoint_url,
            ("--endpoint-url", &["AWS_ENDPOINT_URL"], "endpoint_url"),
            &file.endpoint_url,
        );
        if let (Some(named), Some((url, Origin::Env(var)))) = (named, &endpoint_url) {
            overridden.borrow_mut().push(format!(
                "{var}={url} still applies: {named} sets no endpoint_url (unset the variable, or set endpoint_url in the environment's table)"
            ));
        }
        let access_keys = env("AWS_ACCESS_KEY_ID").is_some();
        let credentials = match &profile {
            Some((name, origin)) if origin.is_explicit() => {
                if access_keys {
                    overridden.borrow_mut().push(format!(
                        "AWS_ACCESS_KEY_ID ignored: {} names profile {name}, whose credentials are used (as the AWS CLI does)",
                        match origin {
                            Origin::Flag(flag) => format!("{flag} {name}"),
                            _ => "the config file".to_string(),
                        }
                    ));
                }
                CredentialSource::NamedProfile(name.clone(), origin.clone())
            }
            _ if access_keys => CredentialSource::EnvironmentKeys,
            profile => {
                CredentialSource::DefaultChain(profile.as_ref().map(|(name, _)| name.clone()))
            }
        };
        let (region, region_origin) = split_origin(region);
        let (profile, profile_origin) = split_origin(profile);
        let (endpoint_url, endpoint_url_origin) = split_origin(endpoint_url);
        let (service, service_origin) = split_origin(service);

        let mut config = LaunchConfig {
            cluster,
            subnets,
            security_groups,
            assign_public_ip,
            task_definition,
            container: options
                .container
                .clone()
                .or(file.container)
                .unwrap_or_else(|| DEFAULT_CONTAINER.to_string()),
            capacity,
            platform_version,
            service,
            origins: Origins {
                cluster: cluster_origin,
                task_definition: task_definition_origin,
                subnets: subnets_origin,
                security_groups: security_groups_origin,
                assign_public_ip: assign_public_ip_origin,
                capacity: capacity_origin,
                platform_version: platform_version_origin,
                region: region_origin,
                profile: profile_origin,
                endpoint_url: endpoint_url_origin,
                service: service_origin,
            },
            region,
            profile,
            endpoint_url,
            credentials,
            account_id: file.account_id,
            overridden: Vec::new(),
            confirm: file.confirm.unwrap_or(false),
            current_secret: file.current_secret,
            previous_secret: file.previous_secret,
            wait_stopped: options.wait_stopped || file.wait_stopped.unwrap_or(false),
            allow_spot: options.allow_spot,
            start_retries: match (options.start_retries, env("RUN_ADMIN_TASK_START_RETRIES")) {
                (Some(n), _) => n,
                (None, Some(text)) => text.trim().parse().map_err(|_| {
                    SettingsError::invalid(anyhow!(
                        "RUN_ADMIN_TASK_START_RETRIES={text:?} is not a number of retries: use 0, 1, 2, ..."
                    ))
                })?,
                (None, None) => file.start_retries.unwrap_or(DEFAULT_START_RETRIES),
            },
            log_reads_per_second: log_reads_per_second(
                options.log_reads_per_second,
                env("RUN_ADMIN_TASK_LOG_READS_PER_SECOND"),
                file.log_reads_per_second,
            )?,
            api_timeouts,
            slow_start,
            idempotency: Idempotency::PerInvocation,
            env_name,
        };
        config.idempotency = Idempotency::resolve(
            options.idempotency_key.as_deref(),
            env,
            [
                config.env_name.as_deref().unwrap_or_default(),
                config.region.as_deref().unwrap_or_default(),
                &config.cluster,
                &config.task_definition,
            ],
        )?;
        config.overridden = overridden.into_inner();
        Ok(config)
    }

    /// The subnets, or the usage error that says how to set them. Launching needs them;
    /// inspecting a task does not.
    pub(crate) fn require_subnets(&self) -> Result<&[String], LauncherError> {
        if self.subnets.is_empty() {
            return Err(SettingsError::invalid(anyhow!(
                "no subnets to launch the task in: pass --subnets subnet-a,subnet-b, set ECS_SUBNETS, set `subnets` in the config file{}, or copy them from the application's service with --from-service NAME / ECS_SERVICE",
                self.env_name
                    .as_deref()
                    .map(|name| format!("'s [env.{name}] table"))
                    .unwrap_or_default()
            )));
        }
        Ok(&self.subnets)
    }

    /// The task definition family (without revision), as the concurrency check and
    /// `list` filter by it.
    pub fn family(&self) -> String {
        let id = self
            .task_definition
            .rsplit('/')
            .next()
            .unwrap_or(&self.task_definition);
        id.split(':').next().unwrap_or(id).to_string()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::launcher::config_file::config_path;
    use std::collections::HashMap;
    use std::path::{Path, PathBuf};

    /// An environment made of `pairs`, for tests of what reads the environment.
    pub(crate) fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> + use<> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |name: &str| map.get(name).cloned()
    }

    fn write_config(text: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        std::fs::write(&path, text).unwrap();
        (dir, path)
    }

    const FILE: &str = r#"
        region = "eu-west-1"
        subnets = ["subnet-file"]

        [env.production]
        cluster = "prod-cluster"
        subnets = "subnet-p1, subnet-p2"
        security_groups = ["sg-prod"]
        task_definition = "everruns-admin:7"
        profile = "prod"
        confirm = true
    "#;

    #[test]
    fn defaults_apply_when_nothing_is_set() {
        let cfg = LaunchConfig::resolve(&GlobalOptions::default(), &env_of(&[])).unwrap();
        assert_eq!(cfg.cluster, "everruns");
        assert_eq!(cfg.task_definition, "everruns-admin");
        assert_eq!(cfg.container, "admin");
        assert_eq!(cfg.capacity, Capacity::LaunchType("FARGATE".into()));
        assert!(!cfg.assign_public_ip);
        assert!(!cfg.confirm);
    }

    #[test]
    fn flags_beat_a_named_environment_which_beats_the_shell() {
        let (_dir, path) = write_config(FILE);
        let path = path.to_string_lossy().into_owned();
        let env = env_of(&[
            ("RUN_ADMIN_TASK_CONFIG", &path),
            ("EVERRUNS_ENV", "production"),
            ("ECS_CLUSTER", "env-cluster"),
            ("ECS_SECURITY_GROUP", "sg-env"),
            ("AWS_PROFILE", "env-profile"),
            ("AWS_REGION", "us-east-1"),
        ]);
        let options = GlobalOptions {
            cluster: Some("flag-cluster".into()),
            ..Default::default()
        };
        let cfg = LaunchConfig::resolve(&options, &env).unwrap();
        assert_eq!(cfg.cluster, "flag-cluster", "flag beats env and file");
        assert_eq!(cfg.security_groups, vec!["sg-prod"]);
        assert_eq!(cfg.profile.as_deref(), Some("prod"));
        assert_eq!(
            cfg.subnets,
            vec!["subnet-p1", "subnet-p2"],
            "env table beats top level"
        );
        assert_eq!(
            cfg.region.as_deref(),
            Some("eu-west-1"),
            "top level is inherited, and beats the shell too"
        );
        assert_eq!(
            cfg.overridden,
            vec![
                "ECS_SECURITY_GROUP=sg-env ignored: EVERRUNS_ENV=production sets security_groups sg-prod",
                "AWS_REGION=us-east-1 ignored: EVERRUNS_ENV=production sets region eu-west-1",
                "AWS_PROFILE=env-profile ignored: EVERRUNS_ENV=production sets profile prod",
            ],
            "the flag's win is not news; each lost variable is"
        );
        assert_eq!(
            cfg.credentials,
            CredentialSource::NamedProfile("prod".into(), Origin::Config("profile"))
        );
        assert_eq!(cfg.task_definition, "everruns-admin:7");
        assert_eq!(cfg.container, "admin", "default");
        assert!(cfg.confirm);
        assert_eq!(cfg.env_name.as_deref(), Some("production"));
        assert_eq!(cfg.family(), "everruns-admin");
    }

    #[test]
    fn without_a_named_environment_the_shell_beats_the_file() {
        let (_dir, path) = write_config(FILE);
        let path = path.to_string_lossy().into_owned();
        let env = env_of(&[
            ("RUN_ADMIN_TASK_CONFIG", &path),
            ("ECS_SUBNETS", "subnet-env"),
            ("AWS_REGION", "us-east-1"),
            ("AWS_PROFILE", "env-profile"),
            ("AWS_ACCESS_KEY_ID", "AKID"),
        ]);
        let cfg = LaunchConfig::resolve(&GlobalOptions::default(), &env).unwrap();
        assert_eq!(cfg.subnets, vec!["subnet-env"]);
        assert_eq!(cfg.region.as_deref(), Some("us-east-1"));
        assert!(cfg.overridden.is_empty(), "{:?}", cfg.overridden);
        assert_eq!(
            cfg.credentials,
            CredentialSource::EnvironmentKeys,
            "AWS_PROFILE loses to access keys, as in the AWS CLI"
        );
    }

    #[test]
    fn a_profile_flag_beats_access_keys_in_the_environment() {
        let options = GlobalOptions {
            profile: Some("other".into()),
            ..Default::default()
        };
        let env = env_of(&[("AWS_ACCESS_KEY_ID", "AKID")]);
        let cfg = LaunchConfig::resolve(&options, &env).unwrap();
        assert_eq!(
            cfg.credentials,
            CredentialSource::NamedProfile("other".into(), Origin::Flag("--profile"))
        );
        assert_eq!(cfg.overridden.len(), 1);
        assert!(cfg.overridden[0].starts_with("AWS_ACCESS_KEY_ID ignored: --profile other"));
    }

    #[test]
    fn old_script_variables_keep_working() {
        let env = env_of(&[
            ("ECS_CLUSTER", "c"),
            ("ECS_SUBNETS", "subnet-1,subnet-2"),
            ("ECS_SECURITY_GROUP", "sg-1"),
            ("AWS_REGION", "us-west-2"),
        ]);
        let cfg = LaunchConfig::resolve(&GlobalOptions::default(), &env).unwrap();
        assert_eq!(cfg.cluster, "c");
        assert_eq!(cfg.subnets, vec!["subnet-1", "subnet-2"]);
        assert_eq!(cfg.security_groups, vec!["sg-1"]);
        assert_eq!(cfg.region.as_deref(), Some("us-west-2"));
    }

    #[test]
    fn flag_lists_are_split_on_commas() {
        let options = GlobalOptions {
            subnets: vec!["subnet-a,subnet-b".into(), "subnet-c".into()],
            ..Default::default()
        };
        let env = env_of(&[("ECS_SUBNETS", "subnet-env")]);
        let cfg = LaunchConfig::resolve(&options, &env).unwrap();
        assert_eq!(cfg.subnets, vec!["subnet-a", "subnet-b", "subnet-c"]);
    }

    #[test]
    fn missing_subnets_name_flag_variable_and_key() {
        let cfg = LaunchConfig::resolve(&GlobalOptions::default(), &env_of(&[])).unwrap();
        let err = cfg.require_subnets().unwrap_err();
        assert_eq!(err.exit_code(), 2);
        let text = err.to_string();
        for needle in ["--subnets", "ECS_SUBNETS", "`subnets`"] {
            assert!(text.contains(needle), "{needle} missing from {text}");
        }
    }

    #[test]
    fn unknown_environment_lists_the_known_ones() {
        let (_dir, path) = write_config(FILE);
        let options = GlobalOptions {
            config: Some(path),
            env: Some("staging".into()),
            ..Default::default()
        };
        let err = LaunchConfig::resolve(&options, &env_of(&[])).unwrap_err();
        assert_eq!(err.exit_code(), 2);
        assert!(err.to_string().contains("production"), "{err}");
    }

    #[test]
    fn malformed_or_missing_explicit_file_is_a_usage_error() {
        let (_dir, path) = write_config("clustr = \"typo\"\n");
        let options = GlobalOptions {
            config: Some(path.clone()),
            ..Default::default()
        };
        let err = LaunchConfig::resolve(&options, &env_of(&[])).unwrap_err();
        assert_eq!(err.exit_code(), 2);
        assert!(err.to_string().contains("clustr"), "{err}");

        let options = GlobalOptions {
            config: Some(path.with_file_name("absent.toml")),
            ..Default::default()
        };
        assert_eq!(
            LaunchConfig::resolve(&options, &env_of(&[]))
                .unwrap_err()
                .exit_code(),
            2
        );
    }

    #[test]
    fn default_file_location_follows_xdg_then_home() {
        let options = GlobalOptions::default();
        let (path, required) = config_path(&options, &env_of(&[("HOME", "/home/op")])).unwrap();
        assert_eq!(
            path,
            Path::new("/home/op/.config/everruns-admin/config.toml")
        );
        assert!(!required);
        let (path, _) = config_path(
            &options,
            &env_of(&[("HOME", "/home/op"), ("XDG_CONFIG_HOME", "/xdg")]),
        )
        .unwrap();
        assert_eq!(path, Path::new("/xdg/everruns-admin/config.toml"));
    }

    #[test]
    fn the_log_read_rate_is_a_positive_rate_from_flag_then_env() {
        let default = LaunchConfig::resolve(&GlobalOptions::default(), &env_of(&[])).unwrap();
        assert_eq!(default.log_reads_per_second, 4.0);
        let env = env_of(&[("RUN_ADMIN_TASK_LOG_READS_PER_SECOND", "2.5")]);
        let from_env = LaunchConfig::resolve(&GlobalOptions::default(), &env).unwrap();
        assert_eq!(from_env.log_reads_per_second, 2.5);
        let flag = GlobalOptions {
            log_reads_per_second: Some(8.0),
            ..Default::default()
        };
        assert_eq!(
            LaunchConfig::resolve(&flag, &env)
                .unwrap()
                .log_reads_per_second,
            8.0
        );
        for bad in ["0", "-1", "fast", "1000"] {
            let env = env_of(&[("RUN_ADMIN_TASK_LOG_READS_PER_SECOND", bad)]);
            let err = LaunchConfig::resolve(&GlobalOptions::default(), &env).unwrap_err();
            assert_eq!(err.exit_code(), 2);
            assert!(
                err.to_string()
                    .contains("RUN_ADMIN_TASK_LOG_READS_PER_SECOND"),
                "{err}"
            );
        }
    }

    #[test]
    fn capacity_provider_replaces_launch_type() {
        let options = GlobalOptions {
            capacity_provider: Some("FARGATE_SPOT".into()),
            ..Default::default()
        };
        let cfg = LaunchConfig::resolve(&options, &env_of(&[])).unwrap();
        assert_eq!(cfg.capacity.describe(), "FARGATE_SPOT (weight 1)");
        assert_eq!(cfg.origins.capacity, Origin::Flag("--capacity-provider"));
    }

    #[test]
    fn origins_say_which_layer_won() {
        let (_dir, path) = write_config(FILE);
        let options = GlobalOptions {
            config: Some(path),
            env: Some("production".into()),
            subnets: vec!["subnet-flag".into()],
            ..Default::default()
        };
        let env = env_of(&[("ECS_SECURITY_GROUP", "sg-env"), ("ECS_SERVICE", "api")]);
        let cfg = LaunchConfig::resolve(&options, &env).unwrap();
        assert_eq!(cfg.origins.subnets, Origin::Flag("--subnets"));
        assert_eq!(
            cfg.origins.security_groups,
            Origin::Config("security_groups"),
            "the named environment beats the variable"
        );
        assert_eq!(cfg.origins.service, Origin::Env("ECS_SERVICE"));
        assert_eq!(cfg.origins.cluster, Origin::Config("cluster"));
        assert_eq!(cfg.origins.assign_public_ip, Origin::Default);
        assert_eq!(cfg.origins.capacity, Origin::Default);
        assert_eq!(cfg.service.as_deref(), Some("api"));
        assert_eq!(cfg.origins.subnets.to_string(), "flag --subnets");
    }

    #[test]
    fn family_is_read_from_every_task_definition_form() {
        let mut cfg = LaunchConfig::resolve(&GlobalOptions::default(), &env_of(&[])).unwrap();
        for (given, family) in [
            ("everruns-admin", "everruns-admin"),
            ("everruns-admin:12", "everruns-admin"),
            ("arn:aws:ecs:eu-west-1:123:task-definition/other:3", "other"),
        ] {
            cfg.task_definition = given.into();
            assert_eq!(cfg.family(), family);
        }
    }
}
