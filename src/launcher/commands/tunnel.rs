//! `tunnel [--local-port N] [--task TASK] [--remote-host HOST --remote-port PORT]
//! [--keep]`: the database on a local port, through the admin task.
//!
//! Without `--task` it starts a task standing by as for `shell`; the companion in it
//! writes where `DATABASE_URL` points (host, port, database and user, never the
//! password), and the launcher opens a Session Manager port-forwarding session to there
//! through the task (document `AWS-StartPortForwardingSessionToRemoteHost`), runs the
//! session-manager-plugin, prints a connection line once the plugin listens and keeps
//! the tunnel until Ctrl-C. Then it ends the session as a terminal's Ctrl-C does (SIGINT
//! to the plugin, which closes it) and stops the task it started, unless `--keep`.

use std::path::Path;
use std::process::Stdio;

use anyhow::anyhow;
use serde_json::json;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::mpsc;
use tokio::time::Instant;
use zeroize::Zeroizing;

use crate::contract::events::Event;
use crate::contract::exit::launcher;
use crate::launcher::aws_api::aws_errors::{describe_error, error_code};
use crate::launcher::aws_api::clients::Clients;
use crate::launcher::context::Context;
use crate::launcher::ecs_exec::{self, ExecTiming, PLUGIN, PORT_FORWARDING_DOCUMENT};
use crate::launcher::error::{ExecError, LauncherError, SettingsError};
use crate::launcher::exec_task::{self, SessionTask};
use crate::launcher::flags::process_env;
use crate::launcher::job::follow::reattach_hint;
use crate::launcher::job::report::TaskReport;
use crate::launcher::log_follower::{LogFollower, LogTiming, Page};
use crate::launcher::task::TaskSnapshot;
use crate::launcher::task_definition::fetch::{self, Purpose, TaskDefinitionInfo};
use crate::signals::Handled;

/// What the session task is for, in messages and its stop reason.
const TUNNEL: &str = "tunnel";
/// The local port when none is given: PostgreSQL's, moved out of a local server's way.
pub(crate) const DEFAULT_LOCAL_PORT: u16 = 15432;

/// `tunnel [--local-port N] [--task TASK] [--remote-host HOST --remote-port PORT] [--keep]`.
#[derive(Debug, Clone, PartialEq, Eq, clap::Args)]
pub struct TunnelArgs {
    /// The port on 127.0.0.1 to listen on; 0 picks a free one
    #[arg(long, value_name = "PORT", default_value_t = DEFAULT_LOCAL_PORT)]
    pub local_port: u16,
    /// Forward through this running task (id or ARN) instead of starting one; it keeps
    /// running
    #[arg(long, value_name = "TASK")]
    pub task: Option<String>,
    /// Forward to this host instead of DATABASE_URL's (with --remote-port)
    #[arg(long, value_name = "HOST", requires = "remote_port")]
    pub remote_host: Option<String>,
    /// Forward to this port of --remote-host
    #[arg(long, value_name = "PORT", requires = "remote_host")]
    pub remote_port: Option<u16>,
    /// Leave the started task running after the tunnel closes
    #[arg(long)]
    pub keep: bool,
}

/// Checks the local port and the plugin (before any AWS call), connects, and runs the
/// tunnel.
pub async fn exec(
    context: &Context,
    args: &TunnelArgs,
    interrupts: &mut mpsc::UnboundedReceiver<()>,
) -> Result<u8, LauncherError> {
    ensure_port_free(args.local_port)?;
    let plugin = exec_task::preflight(context, TUNNEL, args.task.is_none())?;
    let clients = Clients::connect(&context.config).await?;
    open(
        context,
        &clients,
        args,
        &plugin,
        &ExecTiming::default(),
        interrupts,
    )
    .await
}

/// A port already taken on 127.0.0.1 is refused before anything is launched (exit 2).
fn ensure_port_free(port: u16) -> Result<(), LauncherError> {
    if port == 0 {
        return Ok(());
    }
    std::net::TcpListener::bind(("127.0.0.1", port))
        .map(drop)
        .map_err(|e| {
            SettingsError::invalid(anyhow!(
                "--local-port {port}: cannot listen on 127.0.0.1:{port} ({e}); stop what uses \
                 it, or pass another port (--local-port 0 picks a free one); nothing was launched"
            ))
        })
}

/// Where the tunnel leads, and who a client connects as there.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Destination {
    host: String,
    port: u16,
    database: Option<String>,
    user: Option<String>,
}

impl Destination {
    /// The line an operator pastes: their own client on the local end, no password.
    fn connection_line(&self, local_port: u16) -> String {
        let mut line = format!("host=127.0.0.1 port={local_port}");
        if let Some(database) = &self.database {
            line.push_str(&format!(" dbname={}", conninfo_value(database)));
        }
        if let Some(user) = &self.user {
            line.push_str(&format!(" user={}", conninfo_value(user)));
        }
        format!("psql \"{line}\"")
    }
}

/// A libpq connection-string value, quoted when it needs to be.
fn conninfo_value(value: &str) -> String {
    if !value.is_empty()
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c))
    {
        return value.to_string();
    }
    format!("'{}'", value.replace('\\', r"\\").replace('\'', r"\'"))
}

/// The tunnel itself, with the clients and plugin given (tests pass a stand-in plugin).
/// Exit status: 0 when closed with Ctrl-C; 1 when it closed by itself (the task
/// stopped, the session ended); 2 when ECS Exec cannot work with this task definition
/// or task; 124 when the task never became ready in time; 125 when no tunnel could be
/// opened; 130 when interrupted before it opened.
pub async fn open(
    context: &Context,
    clients: &Clients,
    args: &TunnelArgs,
    plugin: &Path,
    timing: &ExecTiming,
    interrupts: &mut mpsc::UnboundedReceiver<()>,
) -> Result<u8, LauncherError> {
    let mut report = SessionTask::report(context);
    let Some(session_task) = SessionTask::obtain(
        context,
        clients,
        TUNNEL,
        args.task.as_deref(),
        args.keep,
        timing,
        &mut report,
        interrupts,
    )
    .await?
    else {
        return Ok(launcher::INTERRUPTED);
    };
    // Ctrl-C closes the tunnel in order, whoever started the task.
    let _handled = Handled::claim();
    let code = match forward(
        context,
        clients,
        args,
        plugin,
        &session_task,
        &mut report,
        interrupts,
    )
    .await
    {
        Ok(code) => code,
        Err(e) => {
            return Err(session_task
                .no_session(context, clients, &mut report, e)
                .await);
        }
    };
    session_task
        .end(context, clients, &mut report, "Tunnel closed")
        .await;
    if !session_task.stop_after {
        let id = session_task.task.id();
        context.renderer.note(&format!(
            "task {id} keeps running: tunnel again with `run-admin-task tunnel --task {id}`, \
             stop it with `run-admin-task stop {id}`; {}",
            reattach_hint(&session_task.task.arn)
        ));
    }
    report.exit_code = code;
    context.renderer.document(&report);
    Ok(code)
}

/// From a task that runs to a closed tunnel: waits for the task, learns the
/// destination, opens the session, runs the plugin until Ctrl-C or its end.
async fn forward(
    context: &Context,
    clients: &Clients,
    args: &TunnelArgs,
    plugin: &Path,
    session_task: &SessionTask<'_>,
    report: &mut TaskReport,
    interrupts: &mut mpsc::UnboundedReceiver<()>,
) -> Result<u8, LauncherError> {
    let config = &context.config;
    let renderer = &context.renderer;
    let task = &session_task.task;
    let runtime_id = match session_task
        .ready(context, clients, report, interrupts)
        .await?
    {
        Ok(runtime_id) => runtime_id,
        Err(code) => return Ok(code),
    };
    let destination = match (&args.remote_host, args.remote_port) {
        (Some(host), Some(port)) => Destination {
            host: host.clone(),
            port,
            database: None,
            user: None,
        },
        _ => match destination(context, clients, task, &session_task.timing, interrupts).await? {
            Some(destination) => destination,
            None => {
                renderer.warn("interrupted before the tunnel opened");
                report.interrupted = true;
                return Ok(launcher::INTERRUPTED);
            }
        },
    };
    let target = ecs_exec::target(&config.cluster, &task.arn, &runtime_id);
    let parameters = [
        ("host", destination.host.clone()),
        ("portNumber", destination.port.to_string()),
        ("localPortNumber", args.local_port.to_string()),
    ];
    let mut request = clients
        .ssm
        .start_session()
        .target(&target)
        .document_name(PORT_FORWARDING_DOCUMENT)
        .reason(format!(
            "tunnel of {} via run-admin-task",
            context.operator.display()
        ));
    for (name, value) in &parameters {
        request = request.parameters(*name, vec![value.clone()]);
    }
    let reply = request.send().await.map_err(|e| {
        let hint = match error_code(&e).unwrap_or_default() {
            "TargetNotConnected" => ecs_exec::NOT_CONNECTED,
            _ => "check credentials, region and that the task still runs",
        };
        ExecError::no_session(anyhow!("{}; {hint}", describe_error("StartSession", &e)))
    })?;
    let (Some(session_id), Some(stream_url), Some(token)) =
        (reply.session_id(), reply.stream_url(), reply.token_value())
    else {
        return Err(ExecError::no_session(anyhow!(
            "StartSession returned an incomplete session; try again"
        )));
    };
    let endpoint = ecs_exec::service_endpoint(
        "ssm",
        config.endpoint_url.as_deref(),
        &process_env,
        &clients.region,
    );
    let argv = PortSession {
        session_id,
        stream_url,
        token,
        target: &target,
        parameters: &parameters,
    }
    .plugin_argv(&clients.region, config.profile.as_deref(), &endpoint);
    renderer.finish();
    renderer.note(&format!(
        "session {session_id}: 127.0.0.1:{} to {}:{} through task {}",
        args.local_port,
        destination.host,
        destination.port,
        task.id()
    ));
    run_tunnel(
        context,
        plugin,
        &argv,
        &destination,
        &session_task.timing,
        interrupts,
    )
    .await
}

/// A port-forwarding session as StartSession opened it, and what it was asked.
struct PortSession<'a> {
    session_id: &'a str,
    stream_url: &'a str,
    token: &'a str,
    target: &'a str,
    parameters: &'a [(&'a str, String)],
}

impl PortSession<'_> {
    /// The plugin's arguments, in the form the AWS CLI's `ssm start-session` uses:
    /// StartSession's response, the region, `StartSession`, the profile (or empty), the
    /// request (target, document, parameters), the SSM endpoint. The token is in the
    /// first only.
    fn plugin_argv(
        &self,
        region: &str,
        profile: Option<&str>,
        endpoint: &str,
    ) -> [Zeroizing<String>; 6] {
        let response = json!({
            "SessionId": self.session_id,
            "StreamUrl": self.stream_url,
            "TokenValue": self.token,
        });
        let request = json!({
            "Target": self.target,
            "DocumentName": PORT_FORWARDING_DOCUMENT,
            "Parameters": self
                .parameters
                .iter()
                .map(|(name, value)| (name.to_string(), json!([value])))
                .collect::<serde_json::Map<_, _>>(),
        });
        [
            Zeroizing::new(response.to_string()),
            Zeroizing::new(region.to_string()),
            Zeroizing::new("StartSession".to_string()),
            Zeroizing::new(profile.unwrap_or_default().to_string()),
            Zeroizing::new(request.to_string()),
            Zeroizing::new(endpoint.to_string()),
        ]
    }
}

/// Reads the task's log stream until the companion says where its database is. `None`
/// when interrupted; an error when the line does not come within the readiness limit.
async fn destination(
    context: &Context,
    clients: &Clients,
    task: &TaskSnapshot,
    timing: &ExecTiming,
    interrupts: &mut mpsc::UnboundedReceiver<()>,
) -> Result<Option<Destination>, LauncherError> {
    let config = &context.config;
    let definition_arn = task
        .task_definition_arn
        .clone()
        .unwrap_or_else(|| config.task_definition.clone());
    let definition = fetch::fetch(clients, &definition_arn, Purpose::Inspect).await?;
    let info = TaskDefinitionInfo::from_sdk(&definition);
    let no_line = |why: &str| {
        ExecError::no_session(anyhow!(
            "task {} did not say where its database is ({why}); pass --remote-host and \
             --remote-port",
            task.id()
        ))
    };
    let Some(logs) = info.container(&config.container)?.logs.clone() else {
        return Err(no_line(
            "its container has no awslogs log configuration to read",
        ));
    };
    let mut follower = LogFollower::new(
        clients.logs_in(logs.region.as_deref()),
        &logs.group,
        &logs.stream_name(&config.container, task.id()),
        LogTiming::default(),
    )
    .within(&clients.budget);
    let deadline = Instant::now() + timing.ready_limit;
    loop {
        if let Page::Lines { lines, .. } = follower.next_page().await? {
            for line in lines {
                match line.event {
                    Some(Event::Database {
                        host,
                        port,
                        database,
                        user,
                        ..
                    }) => {
                        return Ok(Some(Destination {
                            host,
                            port,
                            database,
                            user,
                        }));
                    }
                    // Its last line: no `database` line will follow.
                    Some(Event::Result { .. }) => {
                        return Err(no_line(
                            "its companion ended without a `database` line: an image older \
                             than this launcher, or DATABASE_URL unset",
                        ));
                    }
                    _ => {}
                }
            }
        }
        if Instant::now() >= deadline {
            return Err(no_line(&format!(
                "no `database` line in its log within {}: an image older than this launcher, \
                 or DATABASE_URL unset",
                humantime::format_duration(timing.ready_limit)
            )));
        }
        tokio::select! {
            _ = tokio::time::sleep(timing.interval) => {}
            Some(()) = interrupts.recv() => return Ok(None),
        }
    }
}

/// How the plugin run ended.
enum Closed {
    /// The operator pressed Ctrl-C (or a SIGTERM came).
    ByOperator,
    /// The plugin ended by itself.
    ByItself,
}

/// Runs the plugin, shows its lines as notes, prints the connection line once it
/// listens, and ends it with SIGINT on Ctrl-C. The plugin's own Ctrl-C handling closes
/// the session; a plugin that does not end within the stop limit is killed.
async fn run_tunnel(
    context: &Context,
    plugin: &Path,
    argv: &[Zeroizing<String>],
    destination: &Destination,
    timing: &ExecTiming,
    interrupts: &mut mpsc::UnboundedReceiver<()>,
) -> Result<u8, LauncherError> {
    let renderer = &context.renderer;
    let cannot_run =
        |e: std::io::Error| ExecError::local(anyhow!("cannot run {}: {e}", plugin.display()));
    let mut child = tokio::process::Command::new(plugin)
        .args(argv.iter().map(|a| a.as_str()))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(cannot_run)?;
    let mut lines = BufReader::new(child.stdout.take().expect("stdout is piped")).lines();
    let opened_by = Instant::now() + timing.ready_limit;
    let mut listening = false;
    let closed = loop {
        tokio::select! {
            line = lines.next_line() => match line {
                Ok(Some(line)) => {
                    let line = line.trim();
                    if line.is_empty() {
                        continue;
                    }
                    renderer.note(&format!("{PLUGIN}: {line}"));
                    if let Some(port) = listening_port(line).filter(|_| !listening) {
                        listening = true;
                        renderer.report(&destination.connection_line(port));
                        renderer.note(&format!(
                            "tunnel open on 127.0.0.1:{port}: connect with your own database \
                             credentials; Ctrl-C closes it"
                        ));
                    }
                }
                // The plugin closed its output: it is ending. A terminal's Ctrl-C reaches
                // it too, and it may end before this process hears of its own.
                Ok(None) | Err(_) => {
                    let heard = tokio::time::timeout(OWN_SIGNAL, interrupts.recv()).await;
                    break match heard {
                        Ok(Some(())) => Closed::ByOperator,
                        _ => Closed::ByItself,
                    };
                }
            },
            _ = tokio::time::sleep_until(opened_by), if !listening => {
                interrupt(&mut child, timing).await;
                return Err(ExecError::no_session(anyhow!(
                    "{PLUGIN} did not listen within {}; nothing was forwarded",
                    humantime::format_duration(timing.ready_limit)
                )));
            }
            Some(()) = interrupts.recv() => break Closed::ByOperator,
        }
    };
    let status = interrupt(&mut child, timing).await;
    match (closed, listening) {
        (Closed::ByOperator, true) => {
            renderer.note("tunnel closed");
            Ok(0)
        }
        (Closed::ByOperator, false) => {
            renderer.warn("interrupted before the tunnel opened");
            Ok(launcher::INTERRUPTED)
        }
        (Closed::ByItself, true) => {
            renderer.warn(&format!(
                "the tunnel closed by itself ({PLUGIN} ended{}): the session ended, or the task \
                 stopped",
                status.map(|s| format!(" with {s}")).unwrap_or_default()
            ));
            Ok(launcher::FAILURE)
        }
        (Closed::ByItself, false) => Err(ExecError::no_session(anyhow!(
            "{PLUGIN} ended before it listened{}; nothing was forwarded",
            status.map(|s| format!(" ({s})")).unwrap_or_default()
        ))),
    }
}

/// The port of the plugin's `Port N opened for sessionId ...` line.
fn listening_port(line: &str) -> Option<u16> {
    let rest = line.strip_prefix("Port ")?;
    let (port, rest) = rest.split_once(' ')?;
    rest.starts_with("opened").then(|| port.parse().ok())?
}

/// Ends the plugin as a terminal's Ctrl-C does, so that it closes the session, and
/// waits up to the stop limit; kills it after that. Its exit status when it exited.
async fn interrupt(
    child: &mut tokio::process::Child,
    timing: &ExecTiming,
) -> Option<std::process::ExitStatus> {
    if let Ok(Some(status)) = child.try_wait() {
        return Some(status);
    }
    if let Some(pid) = child.id().and_then(|pid| i32::try_from(pid).ok()) {
        // SAFETY: kill(2) with a pid this process spawned and has not yet reaped.
        unsafe {
            libc::kill(pid, libc::SIGINT);
        }
    }
    match tokio::time::timeout(timing.stop_limit.min(STOP_PLUGIN), child.wait()).await {
        Ok(Ok(status)) => Some(status),
        _ => {
            let _ = child.kill().await;
            None
        }
    }
}

/// How long after the plugin ends on its own a Ctrl-C of this process still counts as
/// the operator's: the terminal sends it to both.
const OWN_SIGNAL: std::time::Duration = std::time::Duration::from_millis(300);

/// How long the plugin gets to close its session after SIGINT.
const STOP_PLUGIN: std::time::Duration = std::time::Duration::from_secs(10);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_connection_line_has_no_password_and_quotes_what_needs_it() {
        let destination = Destination {
            host: "db.internal".into(),
            port: 5432,
            database: Some("everruns".into()),
            user: Some("o'brien admin".into()),
        };
        assert_eq!(
            destination.connection_line(15432),
            r#"psql "host=127.0.0.1 port=15432 dbname=everruns user='o\'brien admin'""#
        );
        let bare = Destination {
            database: None,
            user: None,
            ..destination
        };
        assert_eq!(bare.connection_line(1), r#"psql "host=127.0.0.1 port=1""#);
    }

    #[test]
    fn the_plugin_gets_the_response_and_the_request_as_the_aws_cli_passes_them() {
        let parameters = [
            ("host", "db.internal".to_string()),
            ("portNumber", "5432".to_string()),
            ("localPortNumber", "0".to_string()),
        ];
        let argv = PortSession {
            session_id: "alice-0123",
            stream_url: "wss://ssmmessages.eu-west-1.amazonaws.com/v1/data-channel/alice-0123",
            token: "tok-SECRET",
            target: "ecs:everruns_abc_abc-123",
            parameters: &parameters,
        }
        .plugin_argv("eu-west-1", None, "https://ssm.eu-west-1.amazonaws.com");
        let response: serde_json::Value = serde_json::from_str(&argv[0]).unwrap();
        assert_eq!(response["SessionId"], "alice-0123");
        assert_eq!(response["TokenValue"], "tok-SECRET");
        assert_eq!(
            [&argv[1], &argv[2], &argv[3], &argv[5]].map(|a| a.as_str()),
            [
                "eu-west-1",
                "StartSession",
                "",
                "https://ssm.eu-west-1.amazonaws.com"
            ]
        );
        let request: serde_json::Value = serde_json::from_str(&argv[4]).unwrap();
        assert_eq!(
            request,
            json!({
                "Target": "ecs:everruns_abc_abc-123",
                "DocumentName": "AWS-StartPortForwardingSessionToRemoteHost",
                "Parameters": {"host": ["db.internal"], "portNumber": ["5432"], "localPortNumber": ["0"]},
            })
        );
        assert!(argv[1..].iter().all(|a| !a.contains("tok-SECRET")));
    }

    #[test]
    fn the_plugin_listening_line_gives_the_port() {
        assert_eq!(
            listening_port("Port 54321 opened for sessionId alice-0123."),
            Some(54321)
        );
        assert_eq!(listening_port("Port opened"), None);
        assert_eq!(listening_port("Starting session with SessionId: x"), None);
    }

    #[test]
    fn a_port_in_use_is_refused_with_the_fix() {
        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = taken.local_addr().unwrap().port();
        let err = ensure_port_free(port).unwrap_err();
        assert_eq!(err.exit_code(), 2);
        assert!(err.to_string().contains("--local-port 0"), "{err}");
        assert!(ensure_port_free(0).is_ok());
    }
}
