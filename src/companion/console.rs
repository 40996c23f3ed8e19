//! The companion's output: readable text on a terminal, protocol JSON lines otherwise.
//!
//! Everything goes to stdout through one lock so log lines, progress and the final
//! result keep their order in the container's log stream. `tracing` events become
//! protocol `log` events; [`Progress`] and [`finish`] write the other two kinds.

use std::io::{IsTerminal, Write};
use std::sync::{OnceLock, RwLock};
use std::time::{Duration, Instant};

use chrono::Utc;
use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use crate::exit::ExitError;
use crate::protocol::Event;

static JSON: OnceLock<bool> = OnceLock::new();
static NEVER_PRINT: RwLock<Vec<zeroize::Zeroizing<String>>> = RwLock::new(Vec::new());

/// Registers a secret (a password, a key's text) that must never appear in output:
/// every line written through [`emit`] has it masked, whatever code produced the text.
/// The last line of defence; the code that handles secrets keeps them out first.
pub fn never_print(secret: &str) {
    if secret.len() >= 4
        && let Ok(mut secrets) = NEVER_PRINT.write()
    {
        secrets.push(zeroize::Zeroizing::new(secret.to_owned()));
    }
}

fn mask_secrets(mut line: String) -> String {
    if let Ok(secrets) = NEVER_PRINT.read() {
        for secret in secrets.iter() {
            if line.contains(secret.as_str()) {
                line = line.replace(secret.as_str(), "****");
            }
        }
    }
    line
}

/// Sets up output for this process: JSON when stdout is not a terminal (or when
/// `EVERRUNS_ADMIN_OUTPUT=json`), and `RUST_LOG` filtering (default `info`).
pub fn init() {
    let json = match std::env::var("EVERRUNS_ADMIN_OUTPUT").as_deref() {
        Ok("json") => true,
        Ok("text") => false,
        _ => !std::io::stdout().is_terminal(),
    };
    let _ = JSON.set(json);
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let _ = tracing_subscriber::registry()
        .with(ProtocolLayer.with_filter(filter))
        .try_init();
}

fn is_json() -> bool {
    *JSON.get_or_init(|| !std::io::stdout().is_terminal())
}

/// Writes one event to stdout in this process's format. Output errors are ignored:
/// a closed stdout must not turn a finished migration into a failure.
pub fn emit(event: &Event) {
    let line = mask_secrets(if is_json() {
        event.to_json_line()
    } else {
        event.to_text()
    });
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// Writes the final `result` event: the last line the companion prints.
pub fn finish(command: &str, exit_code: u8, summary: Value) {
    emit(&Event::Result {
        ts: Utc::now(),
        command: command.to_owned(),
        exit_code,
        summary,
    });
}

/// Ends a command: logs its error, if any, writes the `result` event and returns the
/// exit code the process must end with.
pub fn conclude(command: &str, result: Result<(u8, Value), ExitError>) -> u8 {
    match result {
        Ok((code, summary)) => {
            finish(command, code, summary);
            code
        }
        Err(error) => {
            tracing::error!("{command} failed: {error}");
            finish(
                command,
                error.code,
                serde_json::json!({ "error": error.to_string() }),
            );
            error.code
        }
    }
}

/// Progress of one phase of long work, written at most once per interval (and always
/// at the end) so that a fast loop does not flood the log stream.
pub struct Progress {
    phase: String,
    total: Option<u64>,
    done: u64,
    interval: Duration,
    last: Option<Instant>,
}

impl Progress {
    /// Starts a phase; writes its first event (0 done) at once.
    pub fn start(phase: impl Into<String>, total: Option<u64>) -> Self {
        let mut progress = Self {
            phase: phase.into(),
            total,
            done: 0,
            interval: Duration::from_secs(1),
            last: None,
        };
        progress.write();
        progress
    }

    /// Adds `n` units; writes an event if the interval has passed.
    pub fn advance(&mut self, n: u64) {
        self.done += n;
        if self.last.is_none_or(|last| last.elapsed() >= self.interval) {
            self.write();
        }
    }

    /// Writes the final count of this phase.
    pub fn finish(mut self) {
        self.write();
    }

    fn write(&mut self) {
        self.last = Some(Instant::now());
        emit(&Event::Progress {
            ts: Utc::now(),
            phase: self.phase.clone(),
            done: self.done,
            total: self.total,
        });
    }
}

/// Turns `tracing` events into protocol `log` events.
struct ProtocolLayer;

impl<S: tracing::Subscriber> Layer<S> for ProtocolLayer {
    fn on_event(&self, event: &tracing::Event<'_>, _ctx: Context<'_, S>) {
        let mut visitor = FieldCollector::default();
        event.record(&mut visitor);
        let mut msg = visitor.message.unwrap_or_default();
        let target = event.metadata().target();
        if !target.starts_with("everruns_admin") && !target.starts_with("everruns-admin") {
            msg = format!("{target}: {msg}");
        }
        emit(&Event::Log {
            ts: Utc::now(),
            level: event.metadata().level().as_str().to_ascii_lowercase(),
            msg,
            fields: visitor.fields,
        });
    }
}

#[derive(Default)]
struct FieldCollector {
    message: Option<String>,
    fields: Map<String, Value>,
}

impl FieldCollector {
    fn insert(&mut self, field: &Field, value: Value) {
        if field.name() == "message" {
            self.message = Some(match value {
                Value::String(s) => s,
                other => other.to_string(),
            });
        } else {
            self.fields.insert(field.name().to_owned(), value);
        }
    }
}

impl Visit for FieldCollector {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.insert(field, Value::from(value));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.insert(field, Value::from(value));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.insert(field, Value::from(value));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.insert(field, Value::from(value));
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.insert(field, Value::from(value));
    }
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.insert(field, Value::from(format!("{value:?}")));
    }
}
