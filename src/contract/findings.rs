//! The linter's findings as the result event carries them: written by the companion
//! (`lint`, `migrate`, `migrate-info`) and read by the launcher for CI annotations and
//! the job summary.

use serde::{Deserialize, Serialize};

use super::summary::{human, human_bytes};

/// How serious a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// Allowed in the file, with a reason.
    Suppressed,
    /// Worth knowing; does not block.
    Warning,
    /// Blocks `migrate` and fails the gate (exit 6).
    Blocking,
}

impl Severity {
    /// Its name, as the result event spells it.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Severity::Blocking => "blocking",
            Severity::Warning => "warning",
            Severity::Suppressed => "suppressed",
        }
    }
}

/// One finding, with everything an operator needs to judge and fix it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finding {
    /// The rule's id.
    pub rule: String,
    /// How serious it is here.
    pub severity: Severity,
    /// The migration's version.
    pub version: i64,
    /// The migration's file, as the repository holds it.
    pub file: String,
    /// The statement's first line in the file, from 1.
    pub line: usize,
    /// The statement's first line.
    pub statement: String,
    /// The table it concerns.
    pub table: String,
    /// What exactly (`column api_key`, `VACUUM FULL`).
    pub detail: String,
    /// The lock the statement takes.
    pub lock: String,
    /// The table's estimated rows, when the database was asked and knows.
    pub rows: Option<i64>,
    /// The table's size in bytes, indexes and TOAST included, when asked.
    pub bytes: Option<i64>,
    /// Why it is dangerous.
    pub why: String,
    /// The safe pattern.
    pub fix: String,
    /// The reason written in the file, for a suppressed finding.
    pub reason: Option<String>,
}

impl Finding {
    /// The table's size as people say it, when both figures are known.
    pub(crate) fn size(&self) -> Option<String> {
        Some(human(self.rows?, self.bytes?))
    }

    /// One line for a log: where, what, on what, how big, and the fix.
    pub fn describe(&self) -> String {
        let size = match (self.size(), self.bytes) {
            (Some(size), _) => format!(" ({size})"),
            (None, Some(bytes)) => format!(" ({})", human_bytes(bytes)),
            _ => String::new(),
        };
        let detail = if self.detail.is_empty() {
            String::new()
        } else {
            format!(", {}", self.detail)
        };
        let reason = self
            .reason
            .as_deref()
            .map(|r| format!("; allowed: {r}"))
            .unwrap_or_default();
        format!(
            "{}:{}: [{}] {} on `{}`{size}{detail}: {}; takes {}; fix: {}{reason} (`{}`)",
            self.file,
            self.line,
            self.rule,
            self.severity.name(),
            self.table,
            self.why,
            self.lock,
            self.fix,
            self.statement
        )
    }
}

/// The counts of a lint.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct LintCounts {
    /// Migrations linted.
    pub migrations: usize,
    /// Blocking findings.
    pub blocking: usize,
    /// Warnings.
    pub warnings: usize,
    /// Findings allowed in the file.
    pub suppressed: usize,
}

impl LintCounts {
    /// Counts `findings` of `migrations` migrations.
    pub fn of(migrations: usize, findings: &[Finding]) -> Self {
        let count = |s| findings.iter().filter(|f| f.severity == s).count();
        LintCounts {
            migrations,
            blocking: count(Severity::Blocking),
            warnings: count(Severity::Warning),
            suppressed: count(Severity::Suppressed),
        }
    }
}

/// The result event's summary of `lint`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub(crate) struct LintSummary {
    /// Every finding, in file order.
    pub findings: Vec<Finding>,
    /// Their counts.
    pub counts: LintCounts,
}
