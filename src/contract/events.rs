//! The log protocol between the companion and the launcher.
//!
//! The container's log stream is the only channel between them, so the companion writes
//! one JSON object per line (when not on a terminal). Each object has an `event` tag:
//!
//! - `log`: `{"event":"log","ts":..,"level":"info","msg":"..","fields":{..}}`
//! - `progress`: `{"event":"progress","ts":..,"phase":"reencrypt llm_providers","done":100,"total":2000}`
//! - `database`: `{"event":"database","ts":..,"host":"db.internal","port":5432,"database":"everruns","user":"admin"}`,
//!   written by the standing-by `shell` so that `tunnel` knows where to forward; never
//!   the password
//! - `result`: `{"event":"result","ts":..,"command":"migrate","exit_code":0,"summary":{..}}`,
//!   always the last line; the launcher knows from it that it has every line.
//!
//! Lines that do not parse as one of these are someone else's output and are shown as-is.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// One line of a container's output, read once: its text, and its event when the
/// container speaks this protocol. Everything downstream (the renderer, the drain rule,
/// the report) works from this, so a line is never parsed twice.
#[derive(Debug, Clone, PartialEq)]
pub struct LogLine {
    /// The line without its line ending.
    pub text: String,
    /// The protocol event it carries, if any.
    pub event: Option<Event>,
}

impl LogLine {
    /// Reads one log message.
    ///
    /// ```
    /// use everruns_admin::contract::events::LogLine;
    ///
    /// let line = LogLine::parse("plain output\r\n");
    /// assert_eq!((line.text.as_str(), line.event), ("plain output", None));
    /// ```
    pub fn parse(message: &str) -> Self {
        let text = message.trim_end_matches(['\r', '\n']).to_string();
        let event = Event::parse(&text);
        Self { text, event }
    }
}

/// One line of the companion's structured output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// A log message.
    Log {
        /// When it was written (RFC 3339, UTC).
        ts: DateTime<Utc>,
        /// `error`, `warn`, `info`, `debug` or `trace`.
        level: String,
        /// The message.
        msg: String,
        /// Structured context (table, version, ...).
        #[serde(default, skip_serializing_if = "Map::is_empty")]
        fields: Map<String, Value>,
    },
    /// How far long work has come.
    Progress {
        /// When it was written.
        ts: DateTime<Utc>,
        /// What is being done, e.g. `reencrypt llm_providers` or `migrate`.
        phase: String,
        /// Units done so far.
        done: u64,
        /// Units in all, when known.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        total: Option<u64>,
    },
    /// Where `DATABASE_URL` points, without its password: what a tunnel forwards to and
    /// what an operator's own client connects as.
    Database {
        /// When it was written.
        ts: DateTime<Utc>,
        /// The server's host name or address.
        host: String,
        /// Its port (5432 when the URL names none).
        port: u16,
        /// The database name, when the URL names one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        database: Option<String>,
        /// The user name, when the URL names one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        user: Option<String>,
    },
    /// The final line: what ran and how it ended.
    Result {
        /// When it was written.
        ts: DateTime<Utc>,
        /// The companion command (`migrate`, `reencrypt`, ...).
        command: String,
        /// The companion's exit status.
        exit_code: u8,
        /// Command-specific summary (counts, versions); never secret material.
        #[serde(default)]
        summary: Value,
    },
}

impl Event {
    /// Parses one log line; `None` for lines that are not protocol events.
    ///
    /// ```
    /// use everruns_admin::contract::events::Event;
    ///
    /// let line = r#"{"event":"progress","ts":"2026-01-02T03:04:05Z","phase":"migrate","done":1,"total":4}"#;
    /// assert!(matches!(Event::parse(line), Some(Event::Progress { done: 1, .. })));
    /// assert_eq!(Event::parse("a plain line from another container"), None);
    /// ```
    pub fn parse(line: &str) -> Option<Event> {
        if !line.starts_with('{') || !line.contains("\"event\"") {
            return None;
        }
        serde_json::from_str(line).ok()
    }

    /// The JSON line for this event (no trailing newline).
    pub(crate) fn to_json_line(&self) -> String {
        serde_json::to_string(self).expect("events always serialize")
    }

    /// A readable one-line rendering, as shown on a terminal.
    pub(crate) fn to_text(&self) -> String {
        match self {
            Event::Log {
                ts,
                level,
                msg,
                fields,
            } => {
                let mut out = format!(
                    "{} {:>5} {msg}",
                    ts.to_rfc3339_opts(SecondsFormat::Millis, true),
                    level.to_uppercase()
                );
                // An empty field says nothing, and a float's last digits are noise: both
                // stay in the JSON only.
                for (key, value) in fields {
                    match value {
                        Value::Null => {}
                        Value::String(s) if s.is_empty() => {}
                        Value::String(s) => out.push_str(&format!(" {key}={s}")),
                        Value::Number(n) if n.is_f64() => {
                            let short = format!("{:.2}", n.as_f64().unwrap_or_default());
                            let short = short.trim_end_matches('0').trim_end_matches('.');
                            out.push_str(&format!(" {key}={short}"));
                        }
                        other => out.push_str(&format!(" {key}={other}")),
                    }
                }
                out
            }
            Event::Progress {
                ts,
                phase,
                done,
                total,
            } => {
                let ts = ts.to_rfc3339_opts(SecondsFormat::Millis, true);
                match total {
                    Some(total) => format!("{ts} {phase}: {done}/{total}"),
                    None => format!("{ts} {phase}: {done}"),
                }
            }
            Event::Database { ts, host, port, .. } => format!(
                "{} database at {host}:{port}",
                ts.to_rfc3339_opts(SecondsFormat::Millis, true)
            ),
            // The summary is for machines (`--output json`, Logs Insights); people have
            // already read it as log lines.
            Event::Result {
                command, exit_code, ..
            } => format!("{command} finished with exit code {exit_code}"),
        }
    }
}

/// What the companion did in the database when it was stopped (SIGTERM, SIGINT, its
/// deadline): the result summary's `stopped` object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StopReport {
    /// `SIGTERM`, `SIGINT` or `deadline`.
    pub by: String,
    /// Sessions whose statement in flight was cancelled.
    pub cancelled_sessions: u64,
    /// Sessions that did not let go by themselves within the grace and were ended.
    pub terminated_sessions: u64,
    /// Whether the server confirmed that no session of the job is left (no statement
    /// running, no lock held).
    pub database_released: bool,
    /// Why that could not be confirmed, when it could not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unconfirmed: Option<String>,
}

impl StopReport {
    /// The database side in one sentence, for the terminal and the job summary.
    pub fn describe(&self) -> String {
        if self.database_released {
            format!(
                "released ({} statement(s) cancelled, {} session(s) ended; no statement of the job runs, no lock held)",
                self.cancelled_sessions, self.terminated_sessions
            )
        } else {
            format!(
                "NOT confirmed released ({}); check pg_stat_activity for application_name 'everruns-admin'",
                self.unconfirmed.as_deref().unwrap_or("unknown")
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_leaves_out_empty_fields_and_shortens_floats() {
        let mut fields = Map::new();
        fields.insert("shard".into(), Value::from(""));
        fields.insert("previous".into(), Value::Null);
        fields.insert("rate".into(), Value::from(123.456_789_f64));
        fields.insert("ms".into(), Value::from(2.0_f64));
        fields.insert("rows".into(), Value::from(7));
        let text = Event::Log {
            ts: Utc::now(),
            level: "info".into(),
            msg: "m".into(),
            fields,
        }
        .to_text();
        assert!(text.ends_with(" INFO m rate=123.46 ms=2 rows=7"), "{text}");
    }

    #[test]
    fn round_trips_every_event_kind() {
        let ts = Utc::now();
        let mut fields = Map::new();
        fields.insert("table".into(), Value::from("llm_providers"));
        for event in [
            Event::Log {
                ts,
                level: "info".into(),
                msg: "hello".into(),
                fields,
            },
            Event::Progress {
                ts,
                phase: "reencrypt llm_providers".into(),
                done: 5,
                total: Some(10),
            },
            Event::Result {
                ts,
                command: "migrate".into(),
                exit_code: 4,
                summary: serde_json::json!({"applied": 2}),
            },
        ] {
            assert_eq!(Event::parse(&event.to_json_line()), Some(event));
        }
    }

    #[test]
    fn foreign_lines_are_not_events() {
        for line in [
            "plain text",
            "{\"msg\":\"someone else's json\"}",
            "{\"event\":\"deploy\",\"ts\":\"x\"}",
            "{\"event\": \"log\"",
        ] {
            assert_eq!(Event::parse(line), None, "{line}");
        }
    }

    #[test]
    fn text_rendering_shows_fields_and_totals() {
        let ts = "2026-01-02T03:04:05Z".parse().unwrap();
        let mut fields = Map::new();
        fields.insert("version".into(), Value::from(3));
        let log = Event::Log {
            ts,
            level: "warn".into(),
            msg: "slow".into(),
            fields,
        };
        assert_eq!(
            log.to_text(),
            "2026-01-02T03:04:05.000Z  WARN slow version=3"
        );
        let progress = Event::Progress {
            ts,
            phase: "migrate".into(),
            done: 1,
            total: Some(2),
        };
        assert!(progress.to_text().ends_with("migrate: 1/2"));
    }
}
