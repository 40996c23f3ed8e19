//! Who is launching: recorded on every task (startedBy, tags) and in stop reasons, so an
//! operator looking at a running admin task can tell who started it and from where; and
//! which AWS account the credentials are in, so a launch never goes to another account
//! than the config environment pins.

use anyhow::anyhow;

use crate::launcher::aws_api::aws_errors::launch_error;
use crate::launcher::aws_api::clients::Clients;
use crate::launcher::config::LaunchConfig;
use crate::launcher::error::{CallError, LauncherError, SettingsError};
use crate::launcher::flags::EnvLookup;

/// The AWS account the credentials belong to: STS GetCallerIdentity, which every
/// identity may call, whatever its policies.
pub(crate) async fn caller_account(clients: &Clients) -> Result<String, LauncherError> {
    let reply = clients
        .sts
        .get_caller_identity()
        .send()
        .await
        .map_err(|e| launch_error("GetCallerIdentity", &e))?;
    reply
        .account()
        .map(str::to_string)
        .ok_or_else(|| CallError::inspecting(anyhow!("GetCallerIdentity named no account")))
}

/// Refuses (exit 2) credentials of another account than the config environment pins
/// with `account_id`.
pub(crate) fn check_account(config: &LaunchConfig, account: &str) -> Result<(), LauncherError> {
    match &config.account_id {
        Some(pinned) if pinned != account => Err(SettingsError::invalid(anyhow!(
            "refusing to launch: the credentials ({}) are for account {account}, but {} pins account_id {pinned}; use that account's credentials (--profile NAME, or `profile` in the environment's table)",
            config.credentials,
            config
                .env_name
                .as_deref()
                .map(|name| format!("[env.{name}]"))
                .unwrap_or_else(|| "the config file".to_string()),
        ))),
        _ => Ok(()),
    }
}

/// ECS's limit on `startedBy`.
pub(crate) const STARTED_BY_MAX: usize = 128;
/// Every task this tool starts has a `startedBy` beginning with this.
pub(crate) const STARTED_BY_PREFIX: &str = "run-admin-task";

/// The person or CI job behind this invocation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Operator {
    /// `alice` locally; `github:octocat` (or another CI's user) in CI.
    pub who: String,
    /// The machine (`laptop.local`), or the CI run (`org/repo run 123`).
    pub host: String,
}

impl Operator {
    /// Identifies the operator from the environment: the CI's identity when `CI=true`,
    /// otherwise the local user and host name.
    pub(crate) fn detect(env: EnvLookup) -> Self {
        let in_ci = env("CI").is_some_and(|v| v.eq_ignore_ascii_case("true") || v == "1");
        if in_ci {
            if let Some(actor) = env("GITHUB_ACTOR") {
                let repo = env("GITHUB_REPOSITORY").unwrap_or_default();
                let run = env("GITHUB_RUN_ID").unwrap_or_default();
                return Operator {
                    who: format!("github:{actor}"),
                    host: format!("{repo} run {run}").trim().to_string(),
                };
            }
            if let Some(user) = env("GITLAB_USER_LOGIN") {
                let project = env("CI_PROJECT_PATH").unwrap_or_default();
                let pipeline = env("CI_PIPELINE_ID").unwrap_or_default();
                return Operator {
                    who: format!("gitlab:{user}"),
                    host: format!("{project} pipeline {pipeline}").trim().to_string(),
                };
            }
            let user = env("BUILDKITE_BUILD_CREATOR")
                .or_else(|| env("CIRCLE_USERNAME"))
                .or_else(|| env("USER"))
                .unwrap_or_else(|| "unknown".to_string());
            let job = env("CI_JOB_URL")
                .or_else(|| env("BUILD_URL"))
                .unwrap_or_else(|| local_host(env));
            return Operator {
                who: format!("ci:{user}"),
                host: job,
            };
        }
        Operator {
            who: env("USER")
                .or_else(|| env("USERNAME"))
                .or_else(|| env("LOGNAME"))
                .or_else(os_user_name)
                .unwrap_or_else(|| "unknown".to_string()),
            host: local_host(env),
        }
    }

    /// `alice@laptop`: how the operator is shown to people.
    pub fn display(&self) -> String {
        format!("{}@{}", self.who, self.host)
    }

    /// The task's `startedBy`: `run-admin-task/<who>`, reduced to what ECS accepts
    /// (at most 128 of `[A-Za-z0-9_/-]`). The full identity goes into tags.
    pub fn started_by(&self) -> String {
        sanitize_started_by(&format!("{STARTED_BY_PREFIX}/{}", self.who))
    }
}

/// The login name of this process's user from the password database, for when the
/// shell has no `$USER` (a cron job, `env -i`, a container).
fn os_user_name() -> Option<String> {
    // SAFETY: getpwuid returns a pointer into static storage or null; the name is
    // copied out before any other call could overwrite it.
    unsafe {
        let entry = libc::getpwuid(libc::getuid());
        if entry.is_null() || (*entry).pw_name.is_null() {
            return None;
        }
        std::ffi::CStr::from_ptr((*entry).pw_name)
            .to_str()
            .ok()
            .filter(|name| !name.is_empty())
            .map(str::to_string)
    }
}

/// Replaces characters ECS refuses in `startedBy` with `-` and cuts at 128 characters.
pub(crate) fn sanitize_started_by(raw: &str) -> String {
    raw.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '/' || c == '-' {
                c
            } else {
                '-'
            }
        })
        .take(STARTED_BY_MAX)
        .collect()
}

fn local_host(env: EnvLookup) -> String {
    if let Some(host) = env("HOSTNAME") {
        return host;
    }
    for file in ["/proc/sys/kernel/hostname", "/etc/hostname"] {
        if let Ok(text) = std::fs::read_to_string(file) {
            let text = text.trim();
            if !text.is_empty() {
                return text.to_string();
            }
        }
    }
    std::process::Command::new("hostname")
        .output()
        .ok()
        .and_then(|out| String::from_utf8(out.stdout).ok())
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "unknown-host".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::launcher::config::tests::env_of;

    #[test]
    fn started_by_keeps_only_what_ecs_accepts() {
        assert_eq!(
            sanitize_started_by("run-admin-task/a.b@c d"),
            "run-admin-task/a-b-c-d"
        );
        let long = "x".repeat(300);
        assert_eq!(sanitize_started_by(&long).len(), 128);
        let op = Operator {
            who: "Jöhn Smith".into(),
            host: "h".into(),
        };
        assert_eq!(op.started_by(), "run-admin-task/J-hn-Smith");
    }

    #[test]
    fn without_user_variables_the_os_user_name_is_used() {
        let id = std::process::Command::new("id")
            .arg("-un")
            .output()
            .unwrap();
        let expected = String::from_utf8(id.stdout).unwrap().trim().to_string();
        let operator = Operator::detect(&|_: &str| None);
        assert_eq!(operator.who, expected);
    }

    #[test]
    fn local_operator_is_user_at_host() {
        let op = Operator::detect(&env_of(&[("USER", "alice"), ("HOSTNAME", "laptop")]));
        assert_eq!(op.display(), "alice@laptop");
    }

    #[test]
    fn ci_operator_is_the_ci_identity() {
        let op = Operator::detect(&env_of(&[
            ("CI", "true"),
            ("USER", "runner"),
            ("GITHUB_ACTOR", "octocat"),
            ("GITHUB_REPOSITORY", "org/everruns"),
            ("GITHUB_RUN_ID", "42"),
        ]));
        assert_eq!(op.who, "github:octocat");
        assert_eq!(op.host, "org/everruns run 42");
        assert_eq!(op.started_by(), "run-admin-task/github-octocat");
    }
}
