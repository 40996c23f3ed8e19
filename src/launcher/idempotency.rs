//! RunTask's clientToken: whether a rerun of the same CI step starts a second task or
//! finds the first.

use anyhow::anyhow;

use crate::launcher::error::{LauncherError, SettingsError};
use crate::launcher::flags::EnvLookup;

/// Where RunTask's clientToken comes from: it decides whether a rerun starts a second
/// task or attaches to the first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Idempotency {
    /// `--idempotency-key KEY`, used as the token itself.
    Key(String),
    /// A CI step (GitHub Actions): repository, run id, run attempt, job and step; the
    /// token also covers the command, so two commands in one step stay two jobs.
    CiStep(String),
    /// A fresh token per invocation (it still covers the SDK's own retries).
    PerInvocation,
}

impl Idempotency {
    /// Resolves it: the flag, else the GitHub Actions run when `GITHUB_ACTIONS=true`,
    /// which also covers `place`, where the job runs (environment name, region, cluster,
    /// task definition: another environment of a matrix is another job). A key RunTask
    /// or a tag would refuse is a usage error.
    pub(crate) fn resolve(
        key: Option<&str>,
        env: EnvLookup,
        place: [&str; 4],
    ) -> Result<Self, LauncherError> {
        if let Some(key) = key {
            // RunTask takes up to 64 characters; the guard finds the task again by a tag,
            // so the key keeps to what a tag value may hold.
            let tag_safe = |c: char| c.is_ascii_alphanumeric() || "+-=._:/@".contains(c);
            if key.is_empty() || key.len() > 64 || !key.chars().all(tag_safe) {
                return Err(SettingsError::invalid(anyhow!(
                    "--idempotency-key {key:?}: use 1 to 64 letters, digits and + - = . _ : / @ (it becomes RunTask's clientToken and a tag)"
                )));
            }
            return Ok(Idempotency::Key(key.to_string()));
        }
        if env("GITHUB_ACTIONS").as_deref() != Some("true") {
            return Ok(Idempotency::PerInvocation);
        }
        let Some(run_id) = env("GITHUB_RUN_ID") else {
            return Ok(Idempotency::PerInvocation);
        };
        let part = |name: &str| env(name).unwrap_or_default();
        Ok(Idempotency::CiStep(
            [
                part("GITHUB_REPOSITORY"),
                run_id,
                part("GITHUB_RUN_ATTEMPT"),
                part("GITHUB_JOB"),
                part("GITHUB_ACTION"),
            ]
            .into_iter()
            .chain(place.map(str::to_owned))
            .collect::<Vec<_>>()
            .join("\n"),
        ))
    }
}
