//! The config file: named environments (`[env.production]`) over shared top-level
//! settings, in TOML, found at `--config`, `RUN_ADMIN_TASK_CONFIG` or the XDG path.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::anyhow;
use serde::Deserialize;

use crate::launcher::error::{LauncherError, SettingsError};
use crate::launcher::flags::{EnvLookup, GlobalOptions};

/// One environment's settings in the config file (also the file's top level, which
/// every environment inherits).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSettings {
    /// `cluster = "everruns-prod"`.
    pub cluster: Option<String>,
    /// `subnets = ["subnet-a", "subnet-b"]` or `"subnet-a,subnet-b"`.
    pub subnets: Option<StringList>,
    /// `security_groups = ["sg-1"]` or `"sg-1,sg-2"`.
    pub security_groups: Option<StringList>,
    /// `assign_public_ip = true`.
    pub assign_public_ip: Option<bool>,
    /// `region = "eu-west-1"`.
    pub region: Option<String>,
    /// `profile = "prod-admin"`.
    pub profile: Option<String>,
    /// `task_definition = "everruns-admin:42"`.
    pub task_definition: Option<String>,
    /// `container = "admin"`.
    pub container: Option<String>,
    /// `launch_type = "FARGATE"`.
    pub launch_type: Option<String>,
    /// `capacity_provider = "FARGATE_SPOT"`.
    pub capacity_provider: Option<String>,
    /// `endpoint_url = "http://localhost:5000"`.
    pub endpoint_url: Option<String>,
    /// `confirm = true`: mutating commands ask first, and refuse without a terminal
    /// unless `--yes` is given.
    pub confirm: Option<bool>,
    /// `current_secret = "everruns/encryption-key"`: the current key's secret (`keys`).
    pub current_secret: Option<String>,
    /// `previous_secret = "everruns/encryption-key-previous"`: the previous keys' secret.
    pub previous_secret: Option<String>,
    /// `wait_stopped = true`: follow a task until STOPPED, not just its container's exit.
    pub wait_stopped: Option<bool>,
    /// `call_timeout = "20s"`: the longest one AWS call may take, retries included.
    pub call_timeout: Option<String>,
    /// `attempt_timeout = "8s"`: the longest one attempt may take.
    pub attempt_timeout: Option<String>,
    /// `slow_start = "2m"`: warn once when the task has not started after this long.
    pub slow_start: Option<String>,
    /// `service = "everruns-api"`: copy the network settings from this ECS service.
    pub service: Option<String>,
    /// `platform_version = "1.4.0"`: the Fargate platform version.
    pub platform_version: Option<String>,
    /// `account_id = "123456789012"`: refuse to launch with credentials of another
    /// account.
    pub account_id: Option<String>,
    /// `start_retries = 2`: how often a task ECS never started is started again.
    pub start_retries: Option<u32>,
    /// `log_reads_per_second = 4`: GetLogEvents a second on average, for every log tail
    /// together.
    pub log_reads_per_second: Option<f64>,
}

/// A list written either as a TOML array or as one comma-separated string.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum StringList {
    /// `["a", "b"]`.
    List(Vec<String>),
    /// `"a,b"`.
    Joined(String),
}

impl StringList {
    pub(crate) fn into_vec(self) -> Vec<String> {
        match self {
            StringList::List(items) => split_list(&items),
            StringList::Joined(joined) => split_list(&[joined]),
        }
    }
}

/// The config file: top-level defaults plus `[env.NAME]` tables.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    /// Settings every environment inherits.
    #[serde(flatten)]
    pub defaults: FileSettings,
    /// Named environments (`[env.production]`).
    #[serde(default)]
    pub env: BTreeMap<String, FileSettings>,
}

impl ConfigFile {
    /// Parses a config file's text; `origin` names it in error messages.
    pub fn parse(text: &str, origin: &Path) -> Result<Self, LauncherError> {
        toml::from_str(text).map_err(|e| {
            SettingsError::invalid(anyhow!(
                "config file {} is not valid: {e}",
                origin.display()
            ))
        })
    }

    /// The settings of environment `name` (its table over the top level), or the top
    /// level alone when no environment is chosen.
    pub(crate) fn settings(
        &self,
        name: Option<&str>,
        origin: &Path,
    ) -> Result<FileSettings, LauncherError> {
        let Some(name) = name else {
            return Ok(self.defaults.clone());
        };
        let Some(table) = self.env.get(name) else {
            let known: Vec<&str> = self.env.keys().map(String::as_str).collect();
            return Err(SettingsError::invalid(anyhow!(
                "environment {name:?} is not defined in {} (defined: {}); add an [env.{name}] table or pick another with --env / EVERRUNS_ENV",
                origin.display(),
                if known.is_empty() {
                    "none".to_string()
                } else {
                    known.join(", ")
                }
            )));
        };
        let base = self.defaults.clone();
        let table = table.clone();
        Ok(FileSettings {
            cluster: table.cluster.or(base.cluster),
            subnets: table.subnets.or(base.subnets),
            security_groups: table.security_groups.or(base.security_groups),
            assign_public_ip: table.assign_public_ip.or(base.assign_public_ip),
            region: table.region.or(base.region),
            profile: table.profile.or(base.profile),
            task_definition: table.task_definition.or(base.task_definition),
            container: table.container.or(base.container),
            launch_type: table.launch_type.or(base.launch_type),
            capacity_provider: table.capacity_provider.or(base.capacity_provider),
            endpoint_url: table.endpoint_url.or(base.endpoint_url),
            confirm: table.confirm.or(base.confirm),
            current_secret: table.current_secret.or(base.current_secret),
            previous_secret: table.previous_secret.or(base.previous_secret),
            wait_stopped: table.wait_stopped.or(base.wait_stopped),
            call_timeout: table.call_timeout.or(base.call_timeout),
            attempt_timeout: table.attempt_timeout.or(base.attempt_timeout),
            slow_start: table.slow_start.or(base.slow_start),
            service: table.service.or(base.service),
            platform_version: table.platform_version.or(base.platform_version),
            account_id: table.account_id.or(base.account_id),
            start_retries: table.start_retries.or(base.start_retries),
            log_reads_per_second: table.log_reads_per_second.or(base.log_reads_per_second),
        })
    }
}

/// Where the config file is looked for when `--config` is not given:
/// `RUN_ADMIN_TASK_CONFIG`, else `$XDG_CONFIG_HOME/everruns-admin/config.toml`, else
/// `~/.config/everruns-admin/config.toml`. The second value says whether the file must
/// exist (it must when named explicitly).
pub(crate) fn config_path(options: &GlobalOptions, env: EnvLookup) -> Option<(PathBuf, bool)> {
    if let Some(path) = &options.config {
        return Some((path.clone(), true));
    }
    if let Some(path) = env("RUN_ADMIN_TASK_CONFIG") {
        return Some((PathBuf::from(path), true));
    }
    let base = env("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .or_else(|| env("HOME").map(|home| Path::new(&home).join(".config")))?;
    Some((base.join("everruns-admin").join("config.toml"), false))
}

pub(crate) fn load_file(
    options: &GlobalOptions,
    env: EnvLookup,
) -> Result<Option<(ConfigFile, PathBuf)>, LauncherError> {
    let Some((path, required)) = config_path(options, env) else {
        return Ok(None);
    };
    match std::fs::read_to_string(&path) {
        Ok(text) => Ok(Some((ConfigFile::parse(&text, &path)?, path))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !required => Ok(None),
        Err(e) => Err(SettingsError::invalid(anyhow!(
            "cannot read config file {}: {e} (set by --config or RUN_ADMIN_TASK_CONFIG)",
            path.display()
        ))),
    }
}

/// Splits comma-separated items, trimming blanks, so `a, b` and `["a","b"]` agree.
pub(crate) fn split_list(items: &[String]) -> Vec<String> {
    items
        .iter()
        .flat_map(|item| item.split(','))
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}
