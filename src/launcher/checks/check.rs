//! One check and its status, run with its time measured, and doctor's report of them.

use std::future::Future;
use std::time::Instant;

use serde::Serialize;

/// Exit status when every check passed or was skipped.
pub(crate) const ALL_PASSED: u8 = 0;
/// Exit status when at least one check failed.
pub(crate) const SOME_FAILED: u8 = 1;

/// How a check came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// In place.
    Pass,
    /// Not in place: `fix` says what to do.
    Fail,
    /// Not checked (not applicable, not allowed, or blocked by an earlier failure).
    Skip,
}

impl Status {
    /// The word printed at the start of a line.
    pub fn label(self) -> &'static str {
        match self {
            Status::Pass => "PASS",
            Status::Fail => "FAIL",
            Status::Skip => "SKIP",
        }
    }
}

/// One check's result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    /// A stable name (`cluster`, `secret:DATABASE_URL`, `in-vpc:database`), for CI to
    /// select on.
    pub name: String,
    /// How it came out.
    pub status: Status,
    /// What was found.
    pub detail: String,
    /// What to do about a failure (or a skip that hides one).
    pub fix: Option<String>,
    /// How long it took, in milliseconds.
    pub ms: u64,
}

impl Check {
    /// A passed check.
    pub fn pass(name: impl Into<String>, detail: impl Into<String>) -> Self {
        Self::new(name, Status::Pass, detail, None)
    }

    /// A failed check and its fix.
    pub fn fail(
        name: impl Into<String>,
        detail: impl Into<String>,
        fix: impl Into<String>,
    ) -> Self {
        Self::new(name, Status::Fail, detail, Some(fix.into()))
    }

    /// A check that was not made, and why.
    pub fn skip(name: impl Into<String>, detail: impl Into<String>) -> Self {
        Self::new(name, Status::Skip, detail, None)
    }

    fn new(
        name: impl Into<String>,
        status: Status,
        detail: impl Into<String>,
        fix: Option<String>,
    ) -> Self {
        Check {
            name: name.into(),
            status,
            detail: detail.into(),
            fix,
            ms: 0,
        }
    }

    /// The same check with its duration.
    pub fn took(self, ms: u64) -> Self {
        Check { ms, ..self }
    }

    /// The same check, with a failure downgraded to a skip that still names the fix:
    /// for checks that only matter to a command the operator did not ask about.
    pub(crate) fn optional(self, why: &str) -> Self {
        match self.status {
            Status::Fail => Check {
                status: Status::Skip,
                detail: format!("{} ({why})", self.detail),
                ..self
            },
            _ => self,
        }
    }
}

/// Runs a check and records how long it took.
pub(crate) async fn timed(check: impl Future<Output = Check>) -> Check {
    let started = Instant::now();
    let check = check.await;
    check.took(elapsed_ms(started))
}

/// Milliseconds since `started`.
pub fn elapsed_ms(started: Instant) -> u64 {
    u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// The whole result: the `--output json` document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct DoctorReport {
    /// No check failed.
    pub ok: bool,
    /// Every check, in the order they are listed to an operator.
    pub checks: Vec<Check>,
}

impl DoctorReport {
    /// The report of these checks.
    pub fn new(checks: Vec<Check>) -> Self {
        DoctorReport {
            ok: checks.iter().all(|c| c.status != Status::Fail),
            checks,
        }
    }

    /// Doctor's exit status: [`ALL_PASSED`] or [`SOME_FAILED`].
    pub fn exit_code(&self) -> u8 {
        if self.ok { ALL_PASSED } else { SOME_FAILED }
    }

    /// The lines an operator reads: one per check, a `fix:` line under each failure
    /// (and under a skip that carries one), and a count at the end.
    pub(crate) fn human_lines(&self) -> Vec<String> {
        let width = self.checks.iter().map(|c| c.name.len()).max().unwrap_or(0);
        let mut lines = Vec::new();
        for check in &self.checks {
            lines.push(format!(
                "{}  {:width$}  {} ({} ms)",
                check.status.label(),
                check.name,
                check.detail,
                check.ms
            ));
            if let Some(fix) = &check.fix {
                lines.push(format!("      fix: {fix}"));
            }
        }
        let count = |status| self.checks.iter().filter(|c| c.status == status).count();
        lines.push(format!(
            "doctor: {} of {} checks failed ({} passed, {} skipped)",
            count(Status::Fail),
            self.checks.len(),
            count(Status::Pass),
            count(Status::Skip)
        ));
        lines
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skips_do_not_fail_the_report() {
        let report = DoctorReport::new(vec![
            Check::pass("cluster", "everruns is ACTIVE"),
            Check::skip("secret:X", "not allowed"),
        ]);
        assert!(report.ok);
        assert_eq!(report.exit_code(), 0);
        let report = DoctorReport::new(vec![Check::fail("cluster", "missing", "create it")]);
        assert_eq!(report.exit_code(), 1);
    }

    #[test]
    fn optional_checks_keep_their_fix_but_do_not_fail() {
        let check =
            Check::fail("shell:plugin", "not on PATH", "install it").optional("only for shell");
        assert_eq!(check.status, Status::Skip);
        assert_eq!(check.fix.as_deref(), Some("install it"));
        assert!(check.detail.contains("only for shell"));
    }

    #[test]
    fn json_document_has_the_documented_fields() {
        let report =
            DoctorReport::new(vec![Check::fail("cluster", "missing", "create it").took(7)]);
        let value = serde_json::to_value(&report).unwrap();
        assert_eq!(value["ok"], false);
        let check = &value["checks"][0];
        for field in ["name", "status", "detail", "fix", "ms"] {
            assert!(check.get(field).is_some(), "{field}");
        }
        assert_eq!(check["status"], "fail");
        assert_eq!(check["ms"], 7);
    }

    #[test]
    fn human_lines_show_the_fix_under_a_failure() {
        let report = DoctorReport::new(vec![
            Check::pass("cluster", "ok"),
            Check::fail("log-group", "missing", "create it"),
        ]);
        let lines = report.human_lines();
        assert!(lines[0].starts_with("PASS  cluster"));
        assert!(lines[1].starts_with("FAIL  log-group"));
        assert_eq!(lines[2], "      fix: create it");
        assert_eq!(
            lines[3],
            "doctor: 1 of 2 checks failed (1 passed, 0 skipped)"
        );
    }
}
