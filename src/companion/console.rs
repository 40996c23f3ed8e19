//! The companion's output: readable text on a terminal, protocol JSON lines otherwise.
//!
//! Everything goes to stdout through one lock so log lines, progress and the final
//! result keep their order in the container's log stream. `tracing` events become
//! protocol `log` events; [`Progress`] and [`finish`] write the other two kinds.
//!
//! # What `RUST_LOG` can and cannot do
//!
//! The log stream is the launcher's only view of the job, so `RUST_LOG` only ever
//! *adds* to what the companion says:
//!
//! - It can add debug and trace lines, for the companion (`everruns_admin=debug`,
//!   `everruns_admin::companion::migrations=trace`) or for a crate (`sqlx=debug`
//!   shows every statement).
//! - It can quiet other crates: `sqlx=warn`, or a bare level such as `warn` or `off`,
//!   which applies to every crate no directive names. Without a bare level, crates
//!   that no directive names stay at the default, `info`.
//! - It cannot remove the companion's own `info`, `warn` and `error` lines, nor the
//!   `progress` and `result` events (which never go through `tracing`): whatever the
//!   filter says, those are written.
//!
//! Unset or empty means `info`. A value that does not parse is reported in a warning
//! line and `info` is used: a typo must not cost a production job its log.

use std::io::{IsTerminal, Write};
use std::sync::{OnceLock, RwLock};
use std::time::{Duration, Instant};

use chrono::Utc;
use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::level_filters::LevelFilter;
use tracing::subscriber::Interest;
use tracing::{Level, Metadata, span};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use crate::contract::command_line::Output;
use crate::contract::events::{Event, StopReport};
use crate::contract::result::Summary;

static JSON: OnceLock<bool> = OnceLock::new();
static NEVER_PRINT: RwLock<Vec<zeroize::Zeroizing<String>>> = RwLock::new(Vec::new());

/// Registers a secret (a password, a key's text) that must never appear in output:
/// every line written through [`emit`] has it masked, whatever code produced the text.
/// The last line of defence; the code that handles secrets keeps them out first.
pub(crate) fn never_print(secret: &str) {
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

/// How the operator runs `command`: through the launcher when it started this container
/// (it sets `EVERRUNS_ADMIN_LAUNCHER`), else with this binary, so advice names what to type.
pub(crate) fn command_line(command: &str) -> String {
    let via = std::env::var("EVERRUNS_ADMIN_LAUNCHER")
        .ok()
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "everruns-admin".to_owned());
    format!("{via} {command}")
}

/// Sets up output for this process: JSON when stdout is not a terminal (or when
/// `EVERRUNS_ADMIN_OUTPUT=json`), and `RUST_LOG` filtering as the module
/// documentation describes.
pub(crate) fn init(output: Option<Output>) {
    let json = match (output, std::env::var("EVERRUNS_ADMIN_OUTPUT").as_deref()) {
        (Some(output), _) => output == Output::Json,
        (None, Ok("json")) => true,
        (None, Ok("text")) => false,
        _ => !std::io::stdout().is_terminal(),
    };
    let _ = JSON.set(json);
    let rust_log = std::env::var("RUST_LOG").unwrap_or_default();
    let (filter, invalid) = match LogFilter::parse(&rust_log) {
        Ok(filter) => (filter, None),
        Err(error) => (LogFilter::default_info(), Some(error)),
    };
    // A global filter, not a per-layer one: tracing-subscriber's per-layer filters keep
    // per-thread state between `enabled` and the event, and a bare `enabled!` check
    // (sqlx asks one before each statement) leaves that state behind, so the next
    // event of an already-registered callsite was dropped.
    let _ = tracing_subscriber::registry()
        .with(filter)
        .with(ProtocolLayer)
        .try_init();
    if let Some(error) = invalid {
        tracing::warn!(
            "RUST_LOG={rust_log:?} is not a valid log filter ({error}); using `info`. \
             Example: RUST_LOG=info,everruns_admin=debug,sqlx=warn"
        );
    }
}

/// `RUST_LOG`, widened so that the companion's own lines at `info` and above always
/// pass (see the module documentation).
struct LogFilter {
    user: EnvFilter,
}

impl LogFilter {
    /// Parses a `RUST_LOG` value; unset or empty means `info`, and a value without a
    /// bare level keeps `info` for the crates it does not name.
    fn parse(rust_log: &str) -> Result<Self, tracing_subscriber::filter::ParseError> {
        // tracing parses an empty directive as a level (`error`): skip empty ones.
        let has_default_level = rust_log
            .split(',')
            .map(str::trim)
            .any(|directive| !directive.is_empty() && directive.parse::<LevelFilter>().is_ok());
        let directives = if rust_log.trim().is_empty() {
            "info".to_owned()
        } else if has_default_level {
            rust_log.to_owned()
        } else {
            format!("info,{rust_log}")
        };
        let user = EnvFilter::builder().parse(directives)?;
        Ok(Self { user })
    }

    fn default_info() -> Self {
        Self {
            user: EnvFilter::new("info"),
        }
    }
}

/// Whether `metadata` is one of the companion's own lines that no filter may remove.
fn always_written(metadata: &Metadata<'_>) -> bool {
    is_own_target(metadata.target()) && *metadata.level() <= Level::INFO
}

fn is_own_target(target: &str) -> bool {
    target == "everruns_admin" || target.starts_with("everruns_admin::")
}

impl<S: tracing::Subscriber> Layer<S> for LogFilter {
    fn register_callsite(&self, metadata: &'static Metadata<'static>) -> Interest {
        // Always asked, so the user's filter records its span matchers for every callsite.
        let interest = Layer::<S>::register_callsite(&self.user, metadata);
        if always_written(metadata) {
            Interest::always()
        } else {
            interest
        }
    }

    fn enabled(&self, metadata: &Metadata<'_>, ctx: Context<'_, S>) -> bool {
        always_written(metadata) || Layer::<S>::enabled(&self.user, metadata, ctx)
    }

    fn max_level_hint(&self) -> Option<LevelFilter> {
        Layer::<S>::max_level_hint(&self.user).map(|level| level.max(LevelFilter::INFO))
    }

    // The span callbacks keep the user's span-scoped directives (`[span]=debug`) working.
    fn on_new_span(&self, attrs: &span::Attributes<'_>, id: &span::Id, ctx: Context<'_, S>) {
        self.user.on_new_span(attrs, id, ctx);
    }

    fn on_record(&self, id: &span::Id, values: &span::Record<'_>, ctx: Context<'_, S>) {
        self.user.on_record(id, values, ctx);
    }

    fn on_enter(&self, id: &span::Id, ctx: Context<'_, S>) {
        self.user.on_enter(id, ctx);
    }

    fn on_exit(&self, id: &span::Id, ctx: Context<'_, S>) {
        self.user.on_exit(id, ctx);
    }

    fn on_close(&self, id: span::Id, ctx: Context<'_, S>) {
        self.user.on_close(id, ctx);
    }
}

fn is_json() -> bool {
    *JSON.get_or_init(|| !std::io::stdout().is_terminal())
}

/// Writes one event to stdout in this process's format. Output errors are ignored:
/// a closed stdout must not turn a finished migration into a failure.
pub(crate) fn emit(event: &Event) {
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

/// How a command ended: its exit status and summary, and what a stop did in the
/// database when it was stopped.
pub(crate) struct Ended {
    pub code: u8,
    pub summary: Summary,
    pub stopped: Option<StopReport>,
}

impl From<(u8, Summary)> for Ended {
    fn from((code, summary): (u8, Summary)) -> Self {
        Ended {
            code,
            summary,
            stopped: None,
        }
    }
}

/// Progress of one phase of long work, written at most once per interval (and always
/// at the end) so that a fast loop does not flood the log stream.
pub(crate) struct Progress {
    phase: String,
    total: Option<u64>,
    done: u64,
    interval: Duration,
    last: Option<Instant>,
    /// The count the last written event carried.
    written: Option<u64>,
}

impl Progress {
    /// Starts a phase; writes its first event (0 done) at once.
    pub fn start(phase: impl Into<String>, total: Option<u64>) -> Self {
        Self::with_interval(phase.into(), total, Duration::from_secs(1))
    }

    /// Starts a phase whose every step is written: for few, slow units (migrations),
    /// where each one is news.
    pub(crate) fn start_every_step(phase: impl Into<String>, total: Option<u64>) -> Self {
        Self::with_interval(phase.into(), total, Duration::ZERO)
    }

    fn with_interval(phase: String, total: Option<u64>, interval: Duration) -> Self {
        let mut progress = Self {
            phase,
            total,
            done: 0,
            interval,
            last: None,
            written: None,
        };
        progress.write();
        progress
    }

    /// Adds `n` units; writes an event if the interval has passed.
    pub(crate) fn advance(&mut self, n: u64) {
        self.done += n;
        if self.last.is_none_or(|last| last.elapsed() >= self.interval) {
            self.write();
        }
    }

    /// Writes the final count of this phase, unless the last event already carried it.
    pub fn finish(mut self) {
        if self.written != Some(self.done) {
            self.write();
        }
    }

    fn write(&mut self) {
        self.last = Some(Instant::now());
        self.written = Some(self.done);
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
        if !is_own_target(target) {
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    #[test]
    fn directives_keep_info_for_unnamed_crates() {
        for (rust_log, effective) in [
            ("", "info"),
            (" ", "info"),
            ("sqlx=warn", "info,sqlx=warn"),
            ("everruns_admin=debug", "info,everruns_admin=debug"),
            ("warn,everruns_admin=info", "warn,everruns_admin=info"),
            ("off", "off"),
        ] {
            let filter = LogFilter::parse(rust_log).unwrap();
            let mut got: Vec<String> = filter.user.to_string().split(',').map(Into::into).collect();
            let mut want: Vec<&str> = effective.split(',').collect();
            got.sort();
            want.sort();
            assert_eq!(got, want, "RUST_LOG={rust_log}");
        }
        assert!(LogFilter::parse("sqlx=loud").is_err());
    }

    #[test]
    fn own_info_lines_pass_every_filter() {
        struct Count(Arc<AtomicUsize>);
        impl<S: tracing::Subscriber> Layer<S> for Count {
            fn on_event(&self, _: &tracing::Event<'_>, _: Context<'_, S>) {
                self.0.fetch_add(1, Ordering::SeqCst);
            }
        }
        for (rust_log, lines) in [
            ("info,everruns_admin=debug", 4),
            ("off", 3),
            ("sqlx=warn", 3),
            ("error", 3),
            ("everruns_admin=warn", 3),
        ] {
            let seen = Arc::new(AtomicUsize::new(0));
            let subscriber = tracing_subscriber::registry()
                .with(LogFilter::parse(rust_log).unwrap())
                .with(Count(seen.clone()));
            tracing::subscriber::with_default(subscriber, || {
                tracing::info!("one of ours");
                tracing::warn!("one of ours");
                tracing::error!("one of ours");
                tracing::debug!("only when asked for");
            });
            assert_eq!(seen.load(Ordering::SeqCst), lines, "RUST_LOG={rust_log}");
        }
    }
}
