//! The result event's summary, typed by the command that wrote it. The companion hands
//! one of these to the result event; the launcher decodes it once, when the result
//! line is read, and everything downstream (outcome, annotations, job summary, shard
//! totals, `keys rotate`, `doctor`) reads the typed fields.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::events::{Event, StopReport};
use super::findings::LintSummary;
use super::migration_report::{MigrateInfoSummary, MigrateSummary};
use super::summary::{ReencryptReport, ShellSummary, StatusSummary};

/// What a companion command reports in its result event.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Summary {
    /// `migrate`, or its failure's details.
    Migrate(MigrateSummary),
    /// `migrate-info`.
    MigrateInfo(MigrateInfoSummary),
    /// `lint`.
    Lint(LintSummary),
    /// `reencrypt` (a run that failed before it counted anything has only its error).
    Reencrypt(Box<ReencryptReport>),
    /// `status`.
    Status(StatusSummary),
    /// `shell`.
    Shell(ShellSummary),
    /// Nothing beyond the error: a failure's summary, or a command this launcher does
    /// not know (a newer companion).
    Bare,
}

impl Summary {
    /// The JSON the result event carries.
    pub(crate) fn to_value(&self) -> Value {
        let value = match self {
            Summary::Migrate(s) => serde_json::to_value(s),
            Summary::MigrateInfo(s) => serde_json::to_value(s),
            Summary::Lint(s) => serde_json::to_value(s),
            Summary::Reencrypt(s) => serde_json::to_value(s),
            Summary::Status(s) => serde_json::to_value(s),
            Summary::Shell(s) => serde_json::to_value(s),
            Summary::Bare => Ok(Value::Object(Default::default())),
        };
        value.expect("summaries always serialize")
    }

    /// Reads `command`'s summary; `Bare` when it has not that command's shape.
    fn decode(command: &str, summary: &Value) -> Self {
        fn typed<T: for<'de> Deserialize<'de>>(summary: &Value) -> Option<T> {
            T::deserialize(summary).ok()
        }
        let read = match command {
            "migrate" => typed(summary).map(Summary::Migrate),
            "migrate-info" => typed(summary).map(Summary::MigrateInfo),
            "lint" => typed(summary).map(Summary::Lint),
            "reencrypt" => typed(summary).map(|r| Summary::Reencrypt(Box::new(r))),
            "status" => typed(summary).map(Summary::Status),
            "shell" => typed(summary).map(Summary::Shell),
            _ => None,
        };
        read.unwrap_or(Summary::Bare)
    }

    /// The linter's findings the summary carries.
    #[cfg(feature = "launcher")]
    pub(crate) fn findings(&self) -> &[super::findings::Finding] {
        match self {
            Summary::Migrate(s) => &s.findings,
            Summary::MigrateInfo(s) => &s.findings,
            Summary::Lint(s) => &s.findings,
            _ => &[],
        }
    }
}

/// The parts of every summary a failure or a stop adds.
#[derive(Default, Deserialize)]
struct Ending {
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    stopped: Option<StopReport>,
}

/// The companion's result event, read once. The event is kept as written: reports and
/// step outputs pass it on unchanged, unknown fields included.
#[derive(Debug, Clone, PartialEq)]
pub struct CompanionResult {
    event: Event,
    /// The companion command.
    pub command: String,
    /// The companion's exit status.
    pub exit_code: u8,
    /// The error it ended with, if it failed or was stopped.
    pub error: Option<String>,
    /// What a stop did in the database, when the job was stopped.
    pub stopped: Option<StopReport>,
    /// The command's own summary.
    pub(crate) summary: Summary,
}

impl CompanionResult {
    /// Reads a result event; `None` for any other event.
    pub fn read(event: &Event) -> Option<Self> {
        let Event::Result {
            command,
            exit_code,
            summary,
            ..
        } = event
        else {
            return None;
        };
        let ending = Ending::deserialize(summary).unwrap_or_default();
        Some(CompanionResult {
            event: event.clone(),
            command: command.clone(),
            exit_code: *exit_code,
            error: ending.error,
            stopped: ending.stopped,
            summary: Summary::decode(command, summary),
        })
    }

    /// The event as the companion wrote it.
    pub fn event(&self) -> &Event {
        &self.event
    }
}

impl Serialize for CompanionResult {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.event.serialize(serializer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(command: &str, summary: Value) -> CompanionResult {
        let line = serde_json::json!({
            "event": "result", "ts": "2026-01-02T03:04:05Z",
            "command": command, "exit_code": 1, "summary": summary,
        });
        CompanionResult::read(&Event::parse(&line.to_string()).unwrap()).unwrap()
    }

    #[test]
    fn a_summary_is_read_by_its_command() {
        let read = result(
            "migrate",
            serde_json::json!({"dry_run": false, "applied": [], "total_ms": 0.0, "findings": []}),
        );
        assert!(matches!(&read.summary, Summary::Migrate(m) if m.applied == Some(vec![])));
        let failed = result(
            "migrate",
            serde_json::json!({"error": "boom", "failed": {"version": 2, "description": "x", "file": "migrations/2_x.sql"}}),
        );
        assert_eq!(failed.error.as_deref(), Some("boom"));
        let Summary::Migrate(m) = &failed.summary else {
            panic!("{:?}", failed.summary)
        };
        assert_eq!(
            m.failed.as_ref().and_then(|f| f.file.as_deref()),
            Some("migrations/2_x.sql")
        );
        assert_eq!(m.applied, None);
    }

    #[test]
    fn a_failure_without_the_commands_shape_is_bare_and_keeps_its_error() {
        let read = result("reencrypt", serde_json::json!({"error": "no keys"}));
        assert_eq!(read.summary, Summary::Bare);
        assert_eq!(read.error.as_deref(), Some("no keys"));
        let newer = result("vacuum", serde_json::json!({"tables": 3}));
        assert_eq!(newer.summary, Summary::Bare);
    }

    #[test]
    fn the_event_is_passed_on_as_written() {
        let summary = serde_json::json!({"future_field": [1, 2], "findings": []});
        let read = result("lint", summary.clone());
        let written = serde_json::to_value(&read).unwrap();
        assert_eq!(written["summary"], summary);
        assert_eq!(written["command"], "lint");
    }

    #[test]
    fn summaries_written_are_summaries_read() {
        let lint = Summary::Lint(LintSummary::default());
        assert_eq!(result("lint", lint.to_value()).summary, lint);
        let migrate = Summary::Migrate(MigrateSummary {
            dry_run: true,
            would_apply: Some(vec![]),
            pending: Some(0),
            ..Default::default()
        });
        assert_eq!(result("migrate", migrate.to_value()).summary, migrate);
    }
}
