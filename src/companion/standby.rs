//! `shell`: an interactive shell on a terminal; otherwise keep the container alive so an
//! operator can attach with ECS Exec, and leave cleanly when the task is stopped.

use std::io::IsTerminal;
use std::time::Duration;

use crate::companion::console;
use crate::companion::database::DatabaseUrl;
use crate::companion::failure::CompanionError;
use crate::contract::exit::companion;
use crate::contract::result::Summary;
use crate::contract::summary::ShellSummary;
use crate::signals::{Signal, Signals};
use anyhow::Context;

/// Options of `shell`.
#[derive(Debug, Clone)]
pub(crate) struct ShellOptions {
    /// Without a terminal: how long to stay up waiting for an operator.
    pub max_idle: Duration,
    /// Without a terminal: `--deadline`, after which the wait ends with exit 124.
    pub deadline: Option<chrono::DateTime<chrono::Utc>>,
}

/// Runs the shell (terminal) or waits (no terminal). Returns the exit code and the
/// result summary: the shell's own code, or 0 after the wait or a SIGTERM.
pub async fn run(options: &ShellOptions) -> Result<(u8, Summary), CompanionError> {
    if std::io::stdin().is_terminal() {
        let shell = ["/bin/bash", "/bin/sh"]
            .into_iter()
            .find(|path| std::path::Path::new(path).exists())
            .unwrap_or("sh");
        let status = tokio::process::Command::new(shell)
            .arg("-i")
            .status()
            .await
            .with_context(|| format!("starting {shell}"))
            .map_err(CompanionError::Process)?;
        let code = status.code().unwrap_or(1).clamp(0, 255) as u8;
        return Ok((
            code,
            Summary::Shell(ShellSummary::Interactive {
                shell: shell.to_string(),
            }),
        ));
    }

    // Listening first: a StopTask during the metadata call still ends in exit 0.
    let mut signals = Signals::install()
        .context("listening for SIGTERM and SIGINT")
        .map_err(CompanionError::Process)?;
    // `tunnel` forwards to where this line says; it carries no password.
    match DatabaseUrl::from_env().map(|url| url.endpoint()) {
        Ok(Some(endpoint)) => console::emit(&endpoint),
        _ => tracing::warn!(
            "DATABASE_URL is not set or names no host: `run-admin-task tunnel` needs \
             --remote-host and --remote-port for this task"
        ),
    }
    let task_id = own_task_id().await;
    let task = task_id.as_deref().unwrap_or("<task-id>");
    tracing::info!(
        max_idle_seconds = options.max_idle.as_secs(),
        "no terminal: keeping this container up for ECS Exec; attach with \
         `run-admin-task shell --task {task}` (or `aws ecs execute-command --interactive \
         --container admin --command /bin/bash --task {task}`); stop the task when done"
    );
    let until_deadline = options
        .deadline
        .map(|at| (at - chrono::Utc::now()).to_std().unwrap_or(Duration::ZERO));
    let (code, reason) = tokio::select! {
        _ = tokio::time::sleep(options.max_idle) => (companion::SUCCESS, "max idle time reached"),
        _ = tokio::time::sleep(until_deadline.unwrap_or(Duration::MAX)), if until_deadline.is_some() => {
            (companion::DEADLINE, "its deadline (--deadline) passed")
        }
        signal = signals.recv() => match signal {
            Signal::Terminate => (companion::SUCCESS, "stopped (SIGTERM)"),
            Signal::Interrupt => (companion::SUCCESS, "interrupted (SIGINT)"),
        },
    };
    tracing::info!("shell container exiting: {reason}");
    Ok((
        code,
        Summary::Shell(ShellSummary::Wait {
            ended: reason.to_string(),
            task_id,
        }),
    ))
}

/// How long to wait for the task metadata endpoint: it is local to the task, so an
/// answer comes at once or not at all, and the hint is not worth a slow start.
const METADATA_TIMEOUT: Duration = Duration::from_millis(1500);

/// The largest metadata response read (a task's metadata is a few KiB).
const METADATA_MAX_BYTES: u64 = 1 << 20;

/// The id of the ECS task this container runs in, from the task metadata endpoint v4
/// (`$ECS_CONTAINER_METADATA_URI_V4/task`, field `TaskARN`). `None` outside ECS or
/// when the endpoint does not answer in time: the hint then shows a placeholder.
async fn own_task_id() -> Option<String> {
    let base = std::env::var("ECS_CONTAINER_METADATA_URI_V4").ok()?;
    let result = tokio::time::timeout(METADATA_TIMEOUT, fetch_task_metadata(&base)).await;
    let metadata = match result {
        Ok(Ok(metadata)) => metadata,
        Ok(Err(error)) => {
            tracing::debug!("task metadata endpoint {base}: {error:#}");
            return None;
        }
        Err(_) => {
            tracing::debug!("task metadata endpoint {base}: no answer within {METADATA_TIMEOUT:?}");
            return None;
        }
    };
    task_id_of(&metadata)
}

/// The task id in task metadata: the last `/` segment of `TaskARN`.
fn task_id_of(metadata: &serde_json::Value) -> Option<String> {
    let id = metadata["TaskARN"].as_str()?.rsplit('/').next()?;
    // An id is hex or alphanumeric; anything else is not worth echoing.
    (!id.is_empty() && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'))
        .then(|| id.to_owned())
}

/// `GET <base>/task` over plain HTTP/1.1 (the endpoint is `http://` on a link-local
/// address), returning the JSON body.
async fn fetch_task_metadata(base: &str) -> anyhow::Result<serde_json::Value> {
    use anyhow::bail;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let url = url::Url::parse(&format!("{}/task", base.trim_end_matches('/')))
        .context("ECS_CONTAINER_METADATA_URI_V4 is not a URL")?;
    if url.scheme() != "http" {
        bail!("ECS_CONTAINER_METADATA_URI_V4 is not an http:// URL");
    }
    let host = url
        .host_str()
        .context("ECS_CONTAINER_METADATA_URI_V4 has no host")?;
    let port = url.port().unwrap_or(80);
    let mut stream = tokio::net::TcpStream::connect((host, port)).await?;
    let authority = match url.port() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_owned(),
    };
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: {authority}\r\nAccept: application/json\r\nConnection: close\r\n\r\n",
        url.path()
    );
    stream.write_all(request.as_bytes()).await?;
    let mut response = Vec::new();
    stream
        .take(METADATA_MAX_BYTES)
        .read_to_end(&mut response)
        .await?;
    let body = http_body(&response)?;
    Ok(serde_json::from_slice(&body)?)
}

/// The body of a complete HTTP/1.1 response that has status 200, de-chunked.
fn http_body(response: &[u8]) -> anyhow::Result<Vec<u8>> {
    use anyhow::bail;

    let split = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .context("incomplete HTTP response")?;
    let head = String::from_utf8_lossy(&response[..split]);
    let body = &response[split + 4..];
    let mut lines = head.split("\r\n");
    let status = lines.next().unwrap_or_default();
    if status.split_whitespace().nth(1) != Some("200") {
        bail!("HTTP status {status:?}");
    }
    let chunked = lines.any(|line| {
        line.split_once(':').is_some_and(|(name, value)| {
            name.trim().eq_ignore_ascii_case("transfer-encoding")
                && value.trim().eq_ignore_ascii_case("chunked")
        })
    });
    if !chunked {
        return Ok(body.to_vec());
    }
    let mut rest = body;
    let mut out = Vec::new();
    loop {
        let end = rest
            .windows(2)
            .position(|w| w == b"\r\n")
            .context("incomplete chunk")?;
        let size_text = String::from_utf8_lossy(&rest[..end]);
        let size_text = size_text.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_text, 16)
            .with_context(|| format!("bad chunk size {size_text:?}"))?;
        rest = &rest[end + 2..];
        if size == 0 {
            return Ok(out);
        }
        if rest.len() < size {
            bail!("incomplete chunk");
        }
        out.extend_from_slice(&rest[..size]);
        rest = rest.get(size + 2..).unwrap_or_default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_task_id_is_the_last_segment_of_the_task_arn() {
        let metadata = json!({
            "Cluster": "everruns",
            "TaskARN": "arn:aws:ecs:eu-west-1:123456789012:task/everruns/0f1e2d3c4b5a69788796a5b4c3d2e1f0",
        });
        assert_eq!(
            task_id_of(&metadata).as_deref(),
            Some("0f1e2d3c4b5a69788796a5b4c3d2e1f0")
        );
        assert_eq!(task_id_of(&json!({})), None);
        assert_eq!(task_id_of(&json!({ "TaskARN": "arn:x:task/a b" })), None);
    }

    #[test]
    fn bodies_are_read_plain_and_chunked() {
        let plain = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}";
        assert_eq!(http_body(plain).unwrap(), b"{}");
        let chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\n{\"a\r\n5;x=y\r\n\":1}\n\r\n0\r\n\r\n";
        assert_eq!(http_body(chunked).unwrap(), b"{\"a\":1}\n");
        assert!(http_body(b"HTTP/1.1 404 Not Found\r\n\r\n").is_err());
        assert!(http_body(b"HTTP/1.1 200 OK\r\n").is_err());
    }
}
