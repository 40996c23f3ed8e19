//! How a stopped task ends the launcher: the exit status, why it stopped in words, and a
//! hint for the start failures operators meet most (secrets, image pull, memory).
//!
//! ECS sometimes has no exit code for a container that ran (a lost host, a Docker
//! timeout). Such a container is never reported as "never ran" (125, which a CI wrapper
//! may retry): its own result event decides when it was read, else 123.

use crate::contract::exit::launcher;
use crate::contract::result::CompanionResult;
use crate::launcher::task::TaskSnapshot;

/// The verdict on a stopped task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskOutcome {
    /// The launcher's exit status: the container's own code, or 125 when it never ran.
    pub exit_code: u8,
    /// The named container's exit code as ECS reported it.
    pub container_exit_code: Option<i32>,
    /// The named container's stop reason.
    pub container_reason: Option<String>,
    /// Lines explaining the stop (stop code, ECS's reason, the container's reason).
    pub explanation: Vec<String>,
    /// What to check, for recognised failures.
    pub hints: Vec<String>,
}

impl TaskOutcome {
    /// Decides the outcome from the final snapshot, looking at the named container
    /// wherever ECS lists it, and from the companion's `result` event when it was read.
    pub fn decide(task: &TaskSnapshot, container: &str, result: Option<&CompanionResult>) -> Self {
        let state = task.container(container);
        let container_exit_code = state.and_then(|c| c.exit_code);
        let container_reason = state.and_then(|c| c.reason.clone());
        let reported = result.map(|r| r.exit_code);
        // ECS sets startedAt when the task reached RUNNING: its containers started.
        let ran = task.started_at.is_some() || reported.is_some();
        let exit_code = match (container_exit_code, reported) {
            (Some(code), _) => u8::try_from(code).unwrap_or(u8::MAX),
            (None, Some(code)) => code,
            (None, None) if ran => launcher::RAN_EXIT_UNKNOWN,
            (None, None) => launcher::NEVER_RAN,
        };

        let mut explanation = Vec::new();
        if let Some(code) = &task.stop_code {
            explanation.push(format!("stop code: {code}"));
            if let Some(meaning) = stop_code_meaning(code) {
                explanation.push(meaning.to_owned());
            }
        }
        if let Some(reason) = &task.stopped_reason {
            explanation.push(format!("stopped reason: {reason}"));
        }
        match (state, &container_reason) {
            (None, _) => explanation.push(format!(
                "container {container:?} is not in the task (containers: {})",
                task.containers
                    .iter()
                    .map(|c| c.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
            (Some(_), Some(reason)) => explanation.push(format!("container {container}: {reason}")),
            (Some(_), None) => {}
        }
        explanation.push(match (container_exit_code, reported) {
            (Some(code), _) => format!("container {container} exited with code {code}"),
            (None, Some(code)) => format!(
                "container {container} ran, but ECS has no exit code for it; its result event said exit code {code}"
            ),
            (None, None) if ran => format!(
                "container {container} ran, but ECS has no exit code for it and it wrote no result event; exit status {}: it may have done its work, read its log before running it again",
                launcher::RAN_EXIT_UNKNOWN
            ),
            (None, None) => format!(
                "container {container} never ran (no exit code); exit status {}",
                launcher::NEVER_RAN
            ),
        });

        let hints = hints_for(
            &[
                task.stopped_reason.as_deref().unwrap_or_default(),
                container_reason.as_deref().unwrap_or_default(),
            ]
            .join(" "),
        );
        TaskOutcome {
            exit_code,
            container_exit_code,
            container_reason,
            explanation,
            hints,
        }
    }
}

/// What the stop codes that are not the job's own doing mean for the operator.
fn stop_code_meaning(code: &str) -> Option<&'static str> {
    match code {
        "SpotInterruption" => Some(
            "a Spot interruption: AWS took the FARGATE_SPOT capacity back (SIGTERM, then SIGKILL after the stop timeout), not a failure of the job; rerun it (a job that writes runs on on-demand capacity unless --allow-spot)",
        ),
        "TerminationNotice" => Some(
            "a termination notice: AWS retired the task's host (Fargate maintenance) and stopped it with SIGTERM, not a failure of the job; rerun it",
        ),
        _ => None,
    }
}

/// Hints for well-known failure reasons.
pub(crate) fn hints_for(reasons: &str) -> Vec<String> {
    let text = reasons.to_ascii_lowercase();
    let mut hints = Vec::new();
    let init_error = text.contains("resourceinitializationerror");
    if init_error && (text.contains("secret") || text.contains("ssm") || text.contains("kms")) {
        hints.push(
            "secrets could not be fetched: the task execution role needs secretsmanager:GetSecretValue (and kms:Decrypt for a customer key) on the secrets, and the subnets need a network path to Secrets Manager (a NAT gateway, or a secretsmanager VPC endpoint; --assign-public-ip in a public subnet)"
                .to_string(),
        );
    } else if init_error {
        hints.push(
            "the task could not be prepared: check that the subnets reach ECR, CloudWatch Logs and Secrets Manager (NAT gateway or VPC endpoints) and that the execution role may use them"
                .to_string(),
        );
    }
    if text.contains("cannotpullcontainer") || text.contains("pull image") {
        hints.push(
            "the image could not be pulled: check the image tag exists in the registry, the execution role's ECR permissions, and that the subnets reach the registry (NAT gateway, or ecr.api, ecr.dkr and S3 VPC endpoints)"
                .to_string(),
        );
    }
    if text.contains("outofmemory") || text.contains("out of memory") {
        hints.push(
            "the container ran out of memory: raise the task or container memory in the task definition"
                .to_string(),
        );
    }
    hints
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contract::events::Event;
    use crate::launcher::task::ContainerState;

    fn stopped(containers: Vec<ContainerState>) -> TaskSnapshot {
        TaskSnapshot {
            arn: "arn:aws:ecs:eu-west-1:1:task/everruns/t1".into(),
            last_status: "STOPPED".into(),
            stop_code: Some("EssentialContainerExited".into()),
            stopped_reason: Some("Essential container in task exited".into()),
            containers,
            ..Default::default()
        }
    }

    fn container(name: &str, exit_code: Option<i32>, reason: Option<&str>) -> ContainerState {
        ContainerState {
            name: name.into(),
            exit_code,
            reason: reason.map(str::to_string),
            ..Default::default()
        }
    }

    #[test]
    fn exit_code_is_the_named_containers_whatever_the_order() {
        let task = stopped(vec![
            container("sidecar", Some(0), None),
            container("admin", Some(3), None),
        ]);
        let outcome = TaskOutcome::decide(&task, "admin", None);
        assert_eq!(outcome.exit_code, 3);
        assert!(
            outcome
                .explanation
                .iter()
                .any(|l| l.contains("exited with code 3"))
        );
    }

    #[test]
    fn a_stopped_task_without_exit_code_never_ran() {
        let mut task = stopped(vec![container(
            "admin",
            None,
            Some("CannotPullContainerError: pull image manifest has been retried 5 time(s)"),
        )]);
        task.stop_code = Some("TaskFailedToStart".into());
        let outcome = TaskOutcome::decide(&task, "admin", None);
        assert_eq!(outcome.exit_code, 125);
        assert_eq!(outcome.container_exit_code, None);
        assert!(
            outcome
                .explanation
                .iter()
                .any(|l| l.contains("CannotPullContainerError"))
        );
        assert!(
            outcome.hints.iter().any(|h| h.contains("image tag")),
            "{:?}",
            outcome.hints
        );
    }

    #[test]
    fn a_container_that_ran_without_an_exit_code_is_never_called_never_ran() {
        let mut task = stopped(vec![container(
            "admin",
            None,
            Some(
                "DockerTimeoutError: Could not transition to stopped; timed out after waiting 1m0s",
            ),
        )]);
        task.started_at = Some(chrono::Utc::now());
        let unknown = TaskOutcome::decide(&task, "admin", None);
        assert_eq!(unknown.exit_code, launcher::RAN_EXIT_UNKNOWN);
        assert!(
            unknown
                .explanation
                .iter()
                .any(|l| l.contains("ran, but ECS has no exit code"))
                && !unknown.explanation.iter().any(|l| l.contains("never ran")),
            "{:?}",
            unknown.explanation
        );
        let result = CompanionResult::read(&Event::Result {
            ts: chrono::Utc::now(),
            command: "migrate".into(),
            exit_code: 0,
            summary: serde_json::json!({}),
        })
        .unwrap();
        let reported = TaskOutcome::decide(&task, "admin", Some(&result));
        assert_eq!(reported.exit_code, 0, "{:?}", reported.explanation);
        assert!(
            reported
                .explanation
                .iter()
                .any(|l| l.contains("result event said exit code 0"))
        );
        // The result event alone proves it ran, even where ECS shows no start time.
        task.started_at = None;
        assert_eq!(
            TaskOutcome::decide(&task, "admin", Some(&result)).exit_code,
            0
        );
    }

    #[test]
    fn a_spot_interruption_is_named_as_such() {
        let mut task = stopped(vec![container("admin", Some(143), None)]);
        task.stop_code = Some("SpotInterruption".into());
        let outcome = TaskOutcome::decide(&task, "admin", None);
        assert_eq!(outcome.exit_code, 143);
        assert!(
            outcome
                .explanation
                .iter()
                .any(|l| l.starts_with("a Spot interruption")),
            "{:?}",
            outcome.explanation
        );
    }

    #[test]
    fn container_reason_is_explained_and_oom_hinted() {
        let task = stopped(vec![container(
            "admin",
            Some(137),
            Some("OutOfMemoryError: Container killed due to memory usage"),
        )]);
        let outcome = TaskOutcome::decide(&task, "admin", None);
        assert_eq!(outcome.exit_code, 137);
        assert_eq!(
            outcome.container_reason.as_deref(),
            Some("OutOfMemoryError: Container killed due to memory usage")
        );
        assert!(outcome.hints.iter().any(|h| h.contains("memory")));
    }

    #[test]
    fn secrets_failures_point_at_role_and_network() {
        let hints = hints_for(
            "ResourceInitializationError: unable to pull secrets or registry auth: execution resource retrieval failed: unable to retrieve secret from asm",
        );
        assert_eq!(hints.len(), 1);
        assert!(hints[0].contains("execution role") && hints[0].contains("Secrets Manager"));
    }

    #[test]
    fn a_missing_container_is_never_ran() {
        let task = stopped(vec![container("other", Some(0), None)]);
        let outcome = TaskOutcome::decide(&task, "admin", None);
        assert_eq!(outcome.exit_code, 125);
        assert!(
            outcome
                .explanation
                .iter()
                .any(|l| l.contains("not in the task"))
        );
    }
}
