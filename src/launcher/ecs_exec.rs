//! ECS Exec: waiting until a task can take a session, opening one with ExecuteCommand,
//! and handing it to AWS's `session-manager-plugin`, which owns the terminal until the
//! remote shell ends.
//!
//! The plugin is called with its full argument form (session JSON, region,
//! `StartSession`, profile, target, ECS endpoint), as the AWS CLI does: the short legacy
//! form leaves the plugin without the target and endpoint it needs for KMS-encrypted
//! sessions. The session token goes to the plugin's arguments only; nothing here prints
//! it, and [`ExecSession`]'s `Debug` leaves it out.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::time::Duration;

use anyhow::anyhow;
use aws_sdk_ecs::types::{Task, TaskDefinition, TaskField};
use serde_json::json;
use tokio::sync::mpsc;
use tokio::time::Instant;
use zeroize::Zeroizing;

use crate::launcher::aws_api::aws_errors::{describe_error, error_code, is_transient};
use crate::launcher::error::{ExecError, LauncherError};
use crate::launcher::flags::EnvLookup;
use crate::launcher::output::Renderer;
use crate::launcher::remote_status::{self, StatusFilter};
use crate::launcher::task::{TaskSnapshot, task_id};

/// The program that carries an ECS Exec session to the terminal.
pub(crate) const PLUGIN: &str = "session-manager-plugin";
/// The managed agent that must be RUNNING before ExecuteCommand can succeed.
pub(crate) const EXEC_AGENT: &str = "ExecuteCommandAgent";
/// The shell opened when `--command` is not given.
pub(crate) const DEFAULT_COMMAND: &str = "/bin/bash";

/// The Session Manager document that forwards a local port to a host the task reaches
/// (`tunnel`).
pub(crate) const PORT_FORWARDING_DOCUMENT: &str = "AWS-StartPortForwardingSessionToRemoteHost";

/// What a session refused with TargetNotConnected needs.
pub(crate) const NOT_CONNECTED: &str = "the task's Exec agent is not connected: check the task \
     role's ssmmessages permissions and that the subnets reach ssmmessages";

/// How to install the plugin; printed when it is missing.
pub(crate) const INSTALL_HINT: &str = "`session-manager-plugin` is not on PATH; ECS Exec needs it. \
     Install it as the AWS documentation page \"Install the Session Manager plugin for the AWS CLI\" \
     describes (a .deb, .rpm, .pkg or zip for your platform; on macOS also `brew install \
     --cask session-manager-plugin`), check with `session-manager-plugin --version`, then run \
     this again; nothing was launched";

/// Finds the plugin on `path` (a PATH value). Called before any AWS call, so a missing
/// plugin costs nothing: exit 2 with how to install it.
pub fn find_plugin(path: Option<&OsStr>) -> Result<PathBuf, LauncherError> {
    path.into_iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join(PLUGIN))
        .find(|candidate| is_executable(candidate))
        .ok_or_else(|| ExecError::unavailable(anyhow!(INSTALL_HINT)))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Checks that tasks of `definition` can take ECS Exec sessions in `container`. A missing
/// task role is an error (exit 2): the Exec agent authenticates with it. Returns
/// warnings for what works but is not recommended.
pub(crate) fn check_task_definition(
    definition: &TaskDefinition,
    container: &str,
) -> Result<Vec<String>, LauncherError> {
    let arn = definition
        .task_definition_arn()
        .unwrap_or("the task definition");
    if definition.task_role_arn().is_none_or(str::is_empty) {
        return Err(ExecError::unavailable(anyhow!(
            "task definition {arn} has no task role (taskRoleArn): ECS Exec needs one that allows \
             ssmmessages:CreateControlChannel, CreateDataChannel, OpenControlChannel and \
             OpenDataChannel (see task-definitions/iam/task-role-policy.json); register a \
             revision with it or pass --task-definition; nothing was launched"
        )));
    }
    let init = definition
        .container_definitions()
        .iter()
        .find(|c| c.name() == Some(container))
        .and_then(|c| c.linux_parameters())
        .and_then(|l| l.init_process_enabled());
    let mut warnings = Vec::new();
    if init != Some(true) {
        warnings.push(format!(
            "container {container} of {arn} does not set linuxParameters.initProcessEnabled: \
             ECS recommends it for ECS Exec, so processes left by sessions are reaped"
        ));
    }
    Ok(warnings)
}

/// Where a task is on its way to accepting a session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Readiness {
    /// The container runs and its Exec agent is up.
    Ready {
        /// The container's runtime id, part of the session target.
        runtime_id: String,
    },
    /// Not yet; the text says what is awaited.
    Waiting(String),
    /// The task has stopped.
    Stopped,
}

/// Reads one DescribeTasks task. A task started without ECS Exec, or whose Exec agent
/// stopped, can never become ready: those are errors.
pub(crate) fn readiness(task: &Task, container: &str) -> Result<Readiness, LauncherError> {
    let id = task_id(task.task_arn().unwrap_or_default()).to_string();
    if task.last_status() == Some("STOPPED") {
        return Ok(Readiness::Stopped);
    }
    if !task.enable_execute_command() {
        return Err(ExecError::unavailable(anyhow!(
            "task {id} was started without ECS Exec (enableExecuteCommand); start a shell task \
             with `run-admin-task shell` instead"
        )));
    }
    let Some(c) = task
        .containers()
        .iter()
        .find(|c| c.name() == Some(container))
    else {
        return Ok(Readiness::Waiting(format!(
            "container {container} not listed yet"
        )));
    };
    let status = c.last_status().unwrap_or("PENDING");
    if status != "RUNNING" {
        return Ok(Readiness::Waiting(format!(
            "container {container} {status}"
        )));
    }
    let Some(runtime_id) = c.runtime_id().filter(|r| !r.is_empty()) else {
        return Ok(Readiness::Waiting(format!(
            "container {container} has no runtime id yet"
        )));
    };
    let agent = c
        .managed_agents()
        .iter()
        .find(|a| a.name().map(|n| n.as_str()) == Some(EXEC_AGENT));
    match agent.and_then(|a| a.last_status()) {
        Some("RUNNING") => Ok(Readiness::Ready {
            runtime_id: runtime_id.to_string(),
        }),
        Some("STOPPED") => Err(ExecError::no_session(anyhow!(
            "the {EXEC_AGENT} of task {id} stopped{}: check that the task role allows the \
                 ssmmessages actions and that the subnets reach ssmmessages (NAT gateway or VPC \
                 endpoint)",
            agent
                .and_then(|a| a.reason())
                .map(|r| format!(" ({r})"))
                .unwrap_or_default()
        ))),
        other => Ok(Readiness::Waiting(format!(
            "{EXEC_AGENT} {}",
            other.unwrap_or("not started")
        ))),
    }
}

/// How often and how long to wait for a task to accept a session.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ExecTiming {
    /// Between DescribeTasks calls.
    pub interval: Duration,
    /// Give up waiting for readiness after this long.
    pub ready_limit: Duration,
    /// After StopTask, wait this long for STOPPED before reporting.
    pub stop_limit: Duration,
}

impl Default for ExecTiming {
    fn default() -> Self {
        ExecTiming {
            interval: Duration::from_secs(2),
            ready_limit: Duration::from_secs(600),
            stop_limit: Duration::from_secs(180),
        }
    }
}

/// How waiting for readiness ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum WaitEnd {
    /// Ready, with the container's runtime id.
    Ready(String),
    /// The task stopped first; its last snapshot.
    Stopped(Box<TaskSnapshot>),
    /// The operator pressed Ctrl-C.
    Interrupted,
}

/// Polls DescribeTasks until the task can take a session, stops, the limit passes
/// (exit 124), or the operator interrupts. Shows each new state once.
pub(crate) async fn wait_until_ready(
    ecs: &aws_sdk_ecs::Client,
    cluster: &str,
    task: &str,
    container: &str,
    timing: &ExecTiming,
    renderer: &Renderer,
    interrupts: &mut mpsc::UnboundedReceiver<()>,
) -> Result<WaitEnd, LauncherError> {
    let deadline = Instant::now() + timing.ready_limit;
    let mut shown = String::new();
    loop {
        let reply = ecs
            .describe_tasks()
            .cluster(cluster)
            .tasks(task)
            .include(TaskField::Tags)
            .send()
            .await;
        match reply {
            // Not listed yet right after RunTask: ask again.
            Ok(reply) if reply.tasks().is_empty() => {}
            Ok(reply) => {
                let found = &reply.tasks()[0];
                match readiness(found, container)? {
                    Readiness::Ready { runtime_id } => return Ok(WaitEnd::Ready(runtime_id)),
                    Readiness::Stopped => {
                        return Ok(WaitEnd::Stopped(Box::new(TaskSnapshot::from_sdk(found))));
                    }
                    Readiness::Waiting(what) => {
                        let status = found.last_status().unwrap_or("UNKNOWN");
                        let line = format!("{status}: {what}");
                        if line != shown {
                            renderer.status(task_id(task), &line);
                            shown = line;
                        }
                    }
                }
            }
            Err(e) if is_transient(&e) => {
                renderer.warn(&format!(
                    "{}; retrying",
                    describe_error("DescribeTasks", &e)
                ));
            }
            Err(e) => {
                return Err(ExecError::no_session(anyhow!(
                    "{}; check credentials",
                    describe_error("DescribeTasks", &e)
                )));
            }
        }
        if Instant::now() >= deadline {
            return Err(ExecError::timed_out(anyhow!(
                "task {} could not take a session within {}: {shown}",
                task_id(task),
                humantime::format_duration(timing.ready_limit)
            )));
        }
        tokio::select! {
            _ = tokio::time::sleep(timing.interval) => {}
            Some(()) = interrupts.recv() => return Ok(WaitEnd::Interrupted),
        }
    }
}

/// An ECS Exec session as ExecuteCommand returned it. The token is a credential: it is
/// kept out of `Debug` and handed only to the plugin.
pub struct ExecSession {
    /// The session id.
    pub session_id: String,
    /// The WebSocket URL the plugin connects to.
    pub stream_url: String,
    token_value: Zeroizing<String>,
}

impl std::fmt::Debug for ExecSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExecSession")
            .field("session_id", &self.session_id)
            .field("stream_url", &self.stream_url)
            .finish_non_exhaustive()
    }
}

impl ExecSession {
    /// A session from its three parts.
    pub fn new(session_id: &str, stream_url: &str, token_value: &str) -> Self {
        ExecSession {
            session_id: session_id.to_string(),
            stream_url: stream_url.to_string(),
            token_value: Zeroizing::new(token_value.to_string()),
        }
    }

    /// The JSON the plugin takes as its first argument, in ExecuteCommand's own shape.
    pub(crate) fn to_plugin_json(&self) -> Zeroizing<String> {
        Zeroizing::new(
            json!({
                "sessionId": self.session_id,
                "streamUrl": self.stream_url,
                "tokenValue": self.token_value.as_str(),
            })
            .to_string(),
        )
    }
}

/// Opens an interactive session running `command` in `container` (ExecuteCommand).
/// Failures are exit 125 (no session ran) with what to check.
pub async fn execute_command(
    ecs: &aws_sdk_ecs::Client,
    cluster: &str,
    task: &str,
    container: &str,
    command: &str,
) -> Result<ExecSession, LauncherError> {
    let reply = ecs
        .execute_command()
        .cluster(cluster)
        .task(task)
        .container(container)
        .interactive(true)
        .command(command)
        .send()
        .await
        .map_err(|e| {
            let hint = match error_code(&e).unwrap_or_default() {
                "TargetNotConnectedException" => {
                    "the task's Exec agent is not connected: check the task role's ssmmessages \
                     permissions and that the subnets reach ssmmessages"
                }
                c if c.contains("AccessDenied") => {
                    "your credentials need ecs:ExecuteCommand on this task (and kms:GenerateDataKey \
                     when the cluster encrypts sessions with a KMS key)"
                }
                _ => "check credentials, region and that the task still runs",
            };
            ExecError::no_session(anyhow!("{}; {hint}", describe_error("ExecuteCommand", &e)),
            )
        })?;
    let session = reply.session().ok_or_else(|| {
        ExecError::no_session(anyhow!("ExecuteCommand returned no session; try again"))
    })?;
    match (
        session.session_id(),
        session.stream_url(),
        session.token_value(),
    ) {
        (Some(id), Some(url), Some(token)) => Ok(ExecSession::new(id, url, token)),
        _ => Err(ExecError::no_session(anyhow!(
            "ExecuteCommand returned an incomplete session; try again"
        ))),
    }
}

/// The cluster's name, from a name or an ARN (`arn:...:cluster/NAME`).
pub(crate) fn cluster_name(cluster: &str) -> &str {
    cluster.rsplit('/').next().unwrap_or(cluster)
}

/// A container as Session Manager names it: `ecs:<cluster>_<task-id>_<runtime-id>`.
pub(crate) fn target(cluster: &str, task: &str, runtime_id: &str) -> String {
    format!(
        "ecs:{}_{}_{runtime_id}",
        cluster_name(cluster),
        task_id(task)
    )
}

/// The plugin's target for ECS Exec: `{"Target":"ecs:<cluster>_<task-id>_<runtime-id>"}`.
pub(crate) fn target_json(cluster: &str, task: &str, runtime_id: &str) -> String {
    json!({ "Target": target(cluster, task, runtime_id) }).to_string()
}

/// The endpoint of AWS `service` (`ecs`, `ssm`) the launcher talks to, for the plugin,
/// which calls it itself: `--endpoint-url` (or the config file's), else
/// `AWS_ENDPOINT_URL_<SERVICE>`, else `AWS_ENDPOINT_URL`, else the public one of
/// `region`, the order the SDK uses.
pub(crate) fn service_endpoint(
    service: &str,
    configured: Option<&str>,
    env: EnvLookup,
    region: &str,
) -> String {
    configured
        .map(str::to_string)
        .or_else(|| env(&format!("AWS_ENDPOINT_URL_{}", service.to_uppercase())))
        .or_else(|| env("AWS_ENDPOINT_URL"))
        .unwrap_or_else(|| format!("https://{service}.{region}.amazonaws.com"))
}

/// The plugin's full argument list: session JSON, region, `StartSession`, profile (or
/// empty), target JSON, ECS endpoint.
pub(crate) fn plugin_argv(
    session: &ExecSession,
    region: &str,
    profile: Option<&str>,
    target: &str,
    endpoint: &str,
) -> Vec<Zeroizing<String>> {
    vec![
        session.to_plugin_json(),
        Zeroizing::new(region.to_string()),
        Zeroizing::new("StartSession".to_string()),
        Zeroizing::new(profile.unwrap_or_default().to_string()),
        Zeroizing::new(target.to_string()),
        Zeroizing::new(endpoint.to_string()),
    ]
}

/// Signals a terminal sends to its foreground group: while a session runs they belong to
/// the remote shell, which the plugin forwards them to.
const PASSED_ON: [libc::c_int; 3] = [libc::SIGINT, libc::SIGQUIT, libc::SIGTSTP];

extern "C" fn swallow(_signal: libc::c_int) {}

/// While alive, the launcher swallows SIGINT, SIGQUIT and SIGTSTP; dropping it restores
/// the previous handlers. Swallowing with a handler, not `SIG_IGN`, lets the plugin
/// start with the default dispositions (an exec resets handled signals, not ignored ones).
pub(crate) struct PassSignalsOn {
    saved: Vec<(libc::c_int, libc::sigaction)>,
}

impl PassSignalsOn {
    /// Installs the swallowing handler for each signal, keeping the previous ones.
    pub fn install() -> std::io::Result<Self> {
        let mut guard = PassSignalsOn { saved: Vec::new() };
        for signal in PASSED_ON {
            // SAFETY: a zeroed sigaction is a valid value to fill in; `swallow` is
            // async-signal-safe (it does nothing); both pointers are valid for the call.
            unsafe {
                let mut action: libc::sigaction = std::mem::zeroed();
                action.sa_sigaction = swallow as *const () as libc::sighandler_t;
                action.sa_flags = libc::SA_RESTART;
                libc::sigemptyset(&mut action.sa_mask);
                let mut previous: libc::sigaction = std::mem::zeroed();
                if libc::sigaction(signal, &action, &mut previous) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                guard.saved.push((signal, previous));
            }
        }
        Ok(guard)
    }
}

impl Drop for PassSignalsOn {
    fn drop(&mut self) {
        for (signal, previous) in self.saved.drain(..).rev() {
            // SAFETY: restores exactly the action sigaction returned for this signal.
            unsafe {
                libc::sigaction(signal, &previous, std::ptr::null_mut());
            }
        }
    }
}

/// Runs the plugin on this terminal with the launcher's terminal signals passed on, and
/// waits for it. The plugin exits 0 however the remote shell ended; with `filter`, its
/// output passes through it and the status the remote command reported is returned.
pub(crate) async fn run_plugin(
    plugin: &Path,
    argv: &[Zeroizing<String>],
    filter: Option<StatusFilter>,
) -> Result<(ExitStatus, Option<u8>), LauncherError> {
    let _passing = PassSignalsOn::install()
        .map_err(|e| ExecError::local(anyhow!("cannot set up signal handling: {e}")))?;
    let cannot_run =
        |e: std::io::Error| ExecError::local(anyhow!("cannot run {}: {e}", plugin.display()));
    let mut command = tokio::process::Command::new(plugin);
    command.args(argv.iter().map(|a| a.as_str()));
    let Some(filter) = filter else {
        return command
            .status()
            .await
            .map(|s| (s, None))
            .map_err(cannot_run);
    };
    let mut child = command
        .stdout(std::process::Stdio::piped())
        .spawn()
        .map_err(cannot_run)?;
    let stdout = child.stdout.take().expect("stdout is piped");
    let remote = remote_status::relay(stdout, tokio::io::stdout(), filter).await;
    let status = child.wait().await.map_err(cannot_run)?;
    Ok((status, remote))
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_ecs::types::{Container, ManagedAgent, ManagedAgentName};

    fn task(container: Container) -> Task {
        Task::builder()
            .task_arn("arn:aws:ecs:eu-west-1:1:task/everruns/abc")
            .last_status("RUNNING")
            .enable_execute_command(true)
            .containers(container)
            .build()
    }

    fn agent(status: &str) -> ManagedAgent {
        ManagedAgent::builder()
            .name(ManagedAgentName::ExecuteCommandAgent)
            .last_status(status)
            .build()
    }

    #[test]
    fn ready_only_with_runtime_id_and_running_agent() {
        let base = || Container::builder().name("admin").last_status("RUNNING");
        let waiting = readiness(&task(base().build()), "admin").unwrap();
        assert!(matches!(waiting, Readiness::Waiting(w) if w.contains("runtime id")));
        let pending = task(
            base()
                .runtime_id("r1")
                .managed_agents(agent("PENDING"))
                .build(),
        );
        assert!(
            matches!(readiness(&pending, "admin").unwrap(), Readiness::Waiting(w) if w.contains("PENDING"))
        );
        let ready = task(
            base()
                .runtime_id("r1")
                .managed_agents(agent("RUNNING"))
                .build(),
        );
        assert_eq!(
            readiness(&ready, "admin").unwrap(),
            Readiness::Ready {
                runtime_id: "r1".into()
            }
        );
        let stopped = task(
            base()
                .runtime_id("r1")
                .managed_agents(agent("STOPPED"))
                .build(),
        );
        assert_eq!(readiness(&stopped, "admin").unwrap_err().exit_code(), 125);
    }

    #[test]
    fn a_task_without_exec_is_refused() {
        let task = Task::builder()
            .task_arn("arn:aws:ecs:eu-west-1:1:task/everruns/abc")
            .last_status("RUNNING")
            .build();
        let err = readiness(&task, "admin").unwrap_err();
        assert_eq!(err.exit_code(), 2);
        assert!(err.to_string().contains("enableExecuteCommand"), "{err}");
    }

    #[test]
    fn target_uses_cluster_name_task_id_and_runtime_id() {
        assert_eq!(
            target_json(
                "arn:aws:ecs:eu-west-1:1:cluster/everruns",
                "arn:aws:ecs:eu-west-1:1:task/everruns/abc",
                "abc-123"
            ),
            r#"{"Target":"ecs:everruns_abc_abc-123"}"#
        );
    }

    #[test]
    fn debug_hides_the_token() {
        let session = ExecSession::new("s-1", "wss://x", "tok-SECRET");
        assert!(!format!("{session:?}").contains("tok-SECRET"));
        assert!(session.to_plugin_json().contains("tok-SECRET"));
    }

    #[test]
    fn missing_plugin_says_how_to_install() {
        let dir = tempfile::tempdir().unwrap();
        let err = find_plugin(Some(dir.path().as_os_str())).unwrap_err();
        assert_eq!(err.exit_code(), 2);
        assert!(
            err.to_string()
                .contains("Install the Session Manager plugin")
        );
    }
}
