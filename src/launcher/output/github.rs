//! GitHub Actions, natively: what a launch leaves in a workflow run besides its log.
//!
//! - The container's log lines in a collapsible group, with workflow commands turned
//!   off inside it: a line the container prints cannot annotate, mask or set outputs
//!   (the [`GitHub`] sink, around the terminal or JSON one).
//! - An `::error` annotation when the job fails (the stop reason and its fix, the
//!   failing migration, the undecryptable values), a `::warning` for pending migrations.
//! - A job summary appended to `$GITHUB_STEP_SUMMARY`, step outputs appended to
//!   `$GITHUB_OUTPUT` (`exit-code`, `task-arn`, `task-id`, `log-url`, `result`).
//!
//! Everything here is made from the [`TaskReport`], which holds no secret: the
//! companion's result never carries key material or decrypted values, and the launcher
//! never sees `DATABASE_URL`. They are written on every path, failures included.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::contract::exit::{companion, launcher};
use crate::contract::findings::Severity;
use crate::contract::result::{CompanionResult, Summary};
use crate::contract::summary::Counts;
use crate::launcher::flags::{EnvLookup, process_env};
use crate::launcher::job::report::{ShardReport, ShardedReport, TaskReport};
use crate::launcher::job_summary::{cell, summary, task_console_url};
use crate::launcher::output::sink::{Progress, Shard, Sink, Stream};

/// Where this step's summary and outputs go.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct GitHubActions {
    /// `$GITHUB_STEP_SUMMARY`, when set.
    pub summary: Option<PathBuf>,
    /// `$GITHUB_OUTPUT`, when set.
    pub output: Option<PathBuf>,
}

impl GitHubActions {
    /// The files GitHub Actions names in the environment.
    pub(crate) fn from_env(env: EnvLookup) -> Self {
        GitHubActions {
            summary: env("GITHUB_STEP_SUMMARY").map(PathBuf::from),
            output: env("GITHUB_OUTPUT").map(PathBuf::from),
        }
    }

    /// Appends the summary and the outputs of `report` for the job `command`; returns
    /// what could not be written, for a warning (the job's own result stands).
    pub(crate) fn publish(&self, command: &str, report: &TaskReport) -> Vec<String> {
        self.append(summary(command, report), outputs(report))
    }

    /// Appends `summary` and `outputs` to their files; returns what could not be written.
    fn append(&self, summary: String, outputs: String) -> Vec<String> {
        let mut problems = Vec::new();
        for (path, text, what) in [
            (&self.summary, summary, "GITHUB_STEP_SUMMARY"),
            (&self.output, outputs, "GITHUB_OUTPUT"),
        ] {
            if let Some(path) = path
                && let Err(e) = append_to(path, &text)
            {
                problems.push(format!("cannot write {what} ({}): {e}", path.display()));
            }
        }
        problems
    }
}

/// How a launch ends in GitHub Actions, for the renderer to print: the annotations (on
/// the log lines' stream), and the files (summary, outputs) that could not be written,
/// which are warnings, not failures.
#[derive(Debug, Default)]
pub(crate) struct Conclusion {
    pub(crate) annotations: Vec<String>,
    pub(crate) problems: Vec<String>,
}

/// Ends a launch in GitHub Actions: writes the summary and the outputs, and returns the
/// annotations to print.
pub(crate) fn conclude(job: &str, report: &TaskReport) -> Conclusion {
    Conclusion {
        annotations: annotations(job, report),
        problems: GitHubActions::from_env(&process_env).publish(job, report),
    }
}

/// [`conclude`] for a job split across shards: one annotation naming the failing
/// shards, one summary with a row per shard, the outputs of the job as a whole
/// (`task-arn` and `task-id` list every shard's, space-separated).
pub(crate) fn conclude_sharded(job: &str, report: &ShardedReport) -> Conclusion {
    let mut annotations = Vec::new();
    let failing: Vec<&ShardReport> = report
        .tasks
        .iter()
        .filter(|t| t.task.exit_code != 0)
        .collect();
    if !failing.is_empty() {
        let lines: Vec<String> = failing
            .iter()
            .map(|t| {
                let why = t
                    .task
                    .error
                    .clone()
                    .or_else(|| t.task.stopped_reason.clone())
                    .unwrap_or_else(|| "see its log".to_string());
                format!(
                    "shard {} exited {}: {why}; rerun it with --shards {} --only {}",
                    t.shard,
                    t.task.exit_code,
                    report.shards,
                    t.shard.split('/').next().unwrap_or_default()
                )
            })
            .collect();
        annotations.push(annotation(
            "error",
            None,
            &format!(
                "`{job}`: {} of {} shard(s) failed",
                failing.len(),
                report.tasks.len()
            ),
            &lines.join("\n"),
        ));
    }
    let list = |field: fn(&TaskReport) -> Option<&String>| {
        report
            .tasks
            .iter()
            .filter_map(|t| field(&t.task).cloned())
            .collect::<Vec<_>>()
            .join(" ")
    };
    // The job's part of the `--output json` document, as that document writes it.
    let document = serde_json::to_value(report).expect("reports always serialize");
    let result = serde_json::json!({
        "shards": document["shards"],
        "ran": document["ran"],
        "exit_code": document["exit_code"],
        "totals": document["totals"],
        "tables": document["tables"],
    });
    let outputs = format!(
        "exit-code={}\ntask-arn={}\ntask-id={}\nlog-url={}\nresult={result}\n",
        report.exit_code,
        list(|t| t.task_arn.as_ref()),
        list(|t| t.task_id.as_ref()),
        list(|t| t.console_url.as_ref()),
    );
    let mut summary = format!(
        "### run-admin-task `{}`: {}\n\n",
        job.replace('`', "'"),
        if report.exit_code == 0 {
            "✅ passed".to_string()
        } else {
            format!("❌ failed (exit {})", report.exit_code)
        }
    );
    summary.push_str("| Shard | Task | Exit code | Scanned | Re-encrypted | Already on primary | Skipped | Undecryptable |\n|---|---|---|---|---|---|---|---|\n");
    let cells = |counts: Option<Counts>| -> Vec<String> {
        match counts {
            Some(counts) => counts.named().iter().map(|(_, n)| n.to_string()).collect(),
            None => vec![String::new(); 5],
        }
    };
    for t in &report.tasks {
        let task = match (&t.task.task_arn, &t.task.task_id) {
            (Some(arn), Some(id)) => match task_console_url(arn) {
                Some(url) => format!("[`{id}`]({url})"),
                None => format!("`{id}`"),
            },
            _ => "(not started)".to_string(),
        };
        let counts = match t.task.result.as_ref().map(|r| &r.summary) {
            Some(Summary::Reencrypt(report)) => Some(report.total()),
            _ => None,
        };
        summary.push_str(&format!(
            "| {} | {task} | {} | {} |\n",
            t.shard,
            t.task.exit_code,
            cells(counts).join(" | ")
        ));
    }
    let totals = cells(report.totals.clone());
    summary.push_str(&format!(
        "| **all** | | **{}** | {} |\n\n",
        report.exit_code,
        totals.join(" | ")
    ));
    Conclusion {
        annotations,
        problems: GitHubActions::from_env(&process_env).append(summary, outputs),
    }
}

/// The container's log lines in a collapsible group, closed by the launcher's own next
/// line, so status stays outside. Inside, workflow commands are stopped: a log line such
/// as `::add-mask::` or `::error::` from the container is printed, never obeyed.
#[derive(Debug)]
pub(crate) struct LogGroup {
    title: String,
    token: String,
    open: std::sync::Mutex<bool>,
}

impl LogGroup {
    /// A group titled `title` (escaped here), with a fresh stop-commands token.
    pub(crate) fn new(title: &str) -> Self {
        LogGroup {
            title: escape_data(title),
            token: uuid::Uuid::new_v4().simple().to_string(),
            open: std::sync::Mutex::new(false),
        }
    }

    /// The lines that open the group, when it is not open.
    pub(crate) fn open(&self) -> Option<[String; 2]> {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        (!*open).then(|| {
            *open = true;
            [
                format!("::group::{}", self.title),
                format!("::stop-commands::{}", self.token),
            ]
        })
    }

    /// The lines that close the group, when it is open.
    pub(crate) fn close(&self) -> Option<[String; 2]> {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        (*open).then(|| {
            *open = false;
            [format!("::{}::", self.token), "::endgroup::".to_owned()]
        })
    }
}

/// GitHub Actions around another sink: the container's lines in a [`LogGroup`], which
/// the launcher's own next line, a status or a workflow command closes first.
pub(crate) struct GitHub {
    inner: Arc<dyn Sink>,
    group: LogGroup,
}

impl GitHub {
    /// `inner`, its container lines grouped under `title`.
    pub(crate) fn new(inner: Arc<dyn Sink>, title: &str) -> Self {
        GitHub {
            inner,
            group: LogGroup::new(title),
        }
    }

    fn print(&self, lines: Option<[String; 2]>) {
        for line in lines.into_iter().flatten() {
            self.inner.line(self.inner.log_stream(), &line);
        }
    }
}

impl Sink for GitHub {
    fn log_stream(&self) -> Stream {
        self.inner.log_stream()
    }

    fn line(&self, stream: Stream, line: &str) {
        self.inner.line(stream, line);
    }

    fn container_line(&self, text: &str) {
        self.print(self.group.open());
        self.inner.container_line(text);
    }

    fn own_line(&self, stream: Stream, line: &str) {
        self.print(self.group.close());
        self.inner.own_line(stream, line);
    }

    fn progress(&self, progress: &Progress, shard: Option<&Shard>) -> bool {
        self.inner.progress(progress, shard)
    }

    fn status(&self, line: &str, spinner: String) {
        self.print(self.group.close());
        self.inner.status(line, spinner);
    }

    fn document(&self, render: &dyn Fn() -> String) {
        self.inner.document(render);
    }

    fn take_document(&self) -> Option<String> {
        self.inner.take_document()
    }

    fn workflow_command(&self, line: &str) {
        self.print(self.group.close());
        self.inner.workflow_command(line);
    }

    fn finish(&self) {
        self.print(self.group.close());
        self.inner.finish();
    }

    fn captured(&self) -> Vec<String> {
        self.inner.captured()
    }

    #[cfg(test)]
    fn live_bar(&self) -> Option<indicatif::ProgressBar> {
        self.inner.live_bar()
    }
}

fn append_to(path: &Path, text: &str) -> std::io::Result<()> {
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    file.write_all(text.as_bytes())
}

/// A workflow command's message: `%`, CR and LF escaped so it stays one command.
pub(crate) fn escape_data(text: &str) -> String {
    text.replace('%', "%25")
        .replace('\r', "%0D")
        .replace('\n', "%0A")
}

/// A workflow command's property value (`title=...`): also `:` and `,`.
fn escape_property(text: &str) -> String {
    escape_data(text).replace(':', "%3A").replace(',', "%2C")
}

/// One annotation line: `::error file=F,title=T::MESSAGE`.
fn annotation(level: &str, file: Option<&str>, title: &str, message: &str) -> String {
    annotation_at(level, file.map(escape_property).as_deref(), title, message)
}

/// [`annotation`] with `location` already in property form (`F,line=L`).
fn annotation_at(level: &str, location: Option<&str>, title: &str, message: &str) -> String {
    let file = location.map(|f| format!("file={f},")).unwrap_or_default();
    format!(
        "::{level} {file}title={}::{}",
        escape_property(title),
        escape_data(message)
    )
}

/// The annotations for the job `command` that ended as `report` says: an error when it
/// failed, a warning for pending migrations in the gate, nothing when it passed.
pub fn annotations(command: &str, report: &TaskReport) -> Vec<String> {
    let mut lines = Vec::new();
    let result = report.result.as_ref();
    // The linter's findings, each on its file and line.
    for finding in result.map_or(&[][..], |r| r.summary.findings()) {
        let level = match finding.severity {
            Severity::Blocking => "error",
            Severity::Warning => "warning",
            Severity::Suppressed => continue,
        };
        lines.push(annotation_at(
            level,
            Some(&format!("{},line={}", finding.file, finding.line)),
            &format!("{} on {}", cell(&finding.rule), cell(&finding.table)),
            &format!(
                "{} takes {}; fix: {}",
                cell(&finding.why),
                cell(&finding.lock),
                cell(&finding.fix)
            ),
        ));
    }
    // Schema drift, object by object (what the allow-list accepts is only tabled).
    if let Some(CompanionResult {
        summary: Summary::MigrateInfo(info),
        ..
    }) = result
    {
        for difference in info.schema_differences.iter().flatten() {
            if difference.allowed.is_none() {
                lines.push(annotation(
                    "error",
                    None,
                    &format!("schema drift: {}", cell(&difference.object)),
                    &format!(
                        "{}; repair the database, or accept it in \
                         migrations/schema-drift-allow.toml with the reason",
                        cell(&difference.difference)
                    ),
                ));
            }
        }
    }
    if let Some(CompanionResult {
        exit_code: companion::PENDING,
        summary: Summary::MigrateInfo(info),
        ..
    }) = result
    {
        let pending: Vec<String> = info
            .migrations
            .iter()
            .filter(|m| m.is_pending())
            .map(|m| format!("{} {}", m.version, cell(&m.description)))
            .collect();
        lines.push(annotation(
            "warning",
            None,
            &format!("{} migration(s) pending", pending.len()),
            &format!(
                "{}; run `run-admin-task migrate` to apply them",
                pending.join(", ")
            ),
        ));
        return lines;
    }
    if report.exit_code == 0 {
        return lines;
    }
    let title = match report.exit_code {
        _ if report.task_arn.is_none() => format!("`{command}`: nothing was launched"),
        launcher::NEVER_RAN => format!("`{command}`: the task never ran"),
        launcher::TIMEOUT => format!("`{command}` timed out"),
        launcher::INTERRUPTED => format!("`{command}` was interrupted"),
        code => format!("`{command}` failed with exit code {code}"),
    };
    let mut message = Vec::new();
    if let Some(error) = &report.error {
        message.push(error.clone());
    }
    if let Some(reason) = &report.stopped_reason {
        message.push(match &report.stop_code {
            Some(code) => format!("{code}: {reason}"),
            None => reason.clone(),
        });
    }
    if let Some(reason) = &report.container_reason
        && !message.iter().any(|m| m.contains(reason.as_str()))
    {
        message.push(reason.clone());
    }
    let mut file = None;
    if let Some(result) = result {
        message.extend(result.error.iter().cloned());
        match &result.summary {
            Summary::Migrate(m) => file = m.failed.as_ref().and_then(|f| f.file.as_deref()),
            Summary::Reencrypt(report) => {
                let undecryptable = report.total().undecryptable;
                if undecryptable > 0 {
                    message.push(format!(
                        "{undecryptable} value(s) could not be decrypted; the log lists them by table and id"
                    ));
                }
            }
            _ => {}
        }
    }
    for hint in &report.hints {
        message.push(format!("fix: {hint}"));
    }
    if message.is_empty() {
        message.push("see the task's log".to_string());
    }
    lines.push(annotation("error", file, &title, &message.join("\n")));
    lines
}

/// The step outputs, as `name=value` lines (the values are one line each).
pub fn outputs(report: &TaskReport) -> String {
    let result = report
        .result
        .as_ref()
        .map(|r| serde_json::to_string(r).expect("events always serialize"))
        .unwrap_or_default();
    let mut text = String::new();
    for (name, value) in [
        ("exit-code", report.exit_code.to_string()),
        ("task-arn", report.task_arn.clone().unwrap_or_default()),
        ("task-id", report.task_id.clone().unwrap_or_default()),
        (
            "log-url",
            report
                .console_url
                .clone()
                .filter(|_| report.wrote_logs())
                .unwrap_or_default(),
        ),
        ("result", result),
    ] {
        // Values never hold a newline (one-line JSON, ARNs, URLs); a stray one would
        // start a line of its own, so it is dropped.
        text.push_str(&format!("{name}={}\n", value.replace(['\r', '\n'], " ")));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contract::events::Event;
    use crate::contract::findings::Finding;
    use crate::contract::migration_report::{MigrateInfoSummary, MigrationState, MigrationStatus};
    use crate::contract::summary::ReencryptReport;
    use serde_json::{Value, json};

    fn report_with(exit_code: u8, command: &str, summary: Value) -> TaskReport {
        TaskReport {
            exit_code,
            cluster: "everruns".into(),
            task_arn: Some("arn:aws:ecs:eu-west-1:123:task/everruns/abc".into()),
            task_id: Some("abc".into()),
            result: CompanionResult::read(&Event::Result {
                ts: chrono::Utc::now(),
                command: command.into(),
                exit_code,
                summary,
            }),
            ..Default::default()
        }
    }

    #[test]
    fn workflow_command_text_is_escaped_so_it_stays_one_command() {
        let line = annotation("error", Some("m/1_a,b.sql"), "a: b, c", "50%\nnext\r");
        assert_eq!(
            line,
            "::error file=m/1_a%2Cb.sql,title=a%3A b%2C c::50%25%0Anext%0D"
        );
    }

    #[test]
    fn the_task_console_link_is_made_from_the_arn() {
        assert_eq!(
            task_console_url("arn:aws:ecs:eu-west-1:123:task/everruns/abc").as_deref(),
            Some(
                "https://eu-west-1.console.aws.amazon.com/ecs/v2/clusters/everruns/tasks/abc/configuration?region=eu-west-1"
            )
        );
        assert_eq!(task_console_url("arn:aws:ecs:eu-west-1:123:task/abc"), None);
    }

    #[test]
    fn a_stopped_job_summary_says_whether_the_database_was_released() {
        let stopped = |released: bool| {
            report_with(
                130,
                "migrate",
                json!({
                    "error": "interrupted by SIGINT: migration 2 was cancelled and rolled back",
                    "stopped": {"by": "SIGINT", "cancelled_sessions": 1, "terminated_sessions": 0,
                                "database_released": released, "unconfirmed": (!released).then_some("connection refused")}
                }),
            )
        };
        let text = summary("migrate", &stopped(true));
        assert!(
            text.contains("| Database | released (1 statement(s) cancelled, 0 session(s) ended;"),
            "{text}"
        );
        let text = summary("migrate", &stopped(false));
        assert!(
            text.contains("| Database | NOT confirmed released (connection refused)"),
            "{text}"
        );
        let text = summary("migrate", &report_with(0, "migrate", json!({"applied": 1})));
        assert!(!text.contains("| Database |"), "{text}");
    }

    #[test]
    fn a_pending_gate_warns_and_a_failure_errors_with_its_file() {
        let gate = report_with(
            3,
            "migrate-info",
            Summary::MigrateInfo(MigrateInfoSummary {
                pending: 1,
                migrations: vec![
                    MigrationStatus {
                        version: 1,
                        description: "one".into(),
                        state: MigrationState::Installed {
                            installed_on: chrono::Utc::now(),
                            execution_ms: None,
                        },
                    },
                    MigrationStatus {
                        version: 2,
                        description: "two".into(),
                        state: MigrationState::Pending,
                    },
                ],
                ..Default::default()
            })
            .to_value(),
        );
        let lines = annotations("migrate-info --check", &gate);
        assert_eq!(lines.len(), 1);
        assert!(
            lines[0].starts_with("::warning title=1 migration(s) pending::2 two"),
            "{lines:?}"
        );

        let failed = report_with(
            1,
            "migrate",
            json!({"error": "migration 2 two failed", "failed": {"version": 2, "description": "two", "file": "migrations/2_two.sql"}}),
        );
        let lines = annotations("migrate", &failed);
        assert!(
            lines[0].starts_with("::error file=migrations/2_two.sql,title=`migrate` failed with exit code 1::migration 2 two failed"),
            "{lines:?}"
        );
        assert!(summary("migrate", &failed).contains("| 2 | two | migrations/2_two.sql |"));
        assert!(annotations("migrate", &report_with(0, "migrate", json!({}))).is_empty());
    }

    #[test]
    fn schema_drift_is_annotated_per_object_and_tabled_with_what_is_allowed() {
        use crate::contract::migration_report::SchemaDifference;
        let difference = |object: &str, allowed: Option<&str>| SchemaDifference {
            object: object.into(),
            difference: "in the database, not in any migration".into(),
            allowed: allowed.map(str::to_owned),
        };
        let report = report_with(
            7,
            "migrate-info",
            Summary::MigrateInfo(MigrateInfoSummary {
                schema_differences: Some(vec![
                    difference("index llm_providers_tmp_idx", None),
                    difference("index pgbouncer_idx", Some("the pooler's")),
                ]),
                ..Default::default()
            })
            .to_value(),
        );
        let lines = annotations("migrate-info --check", &report);
        let drift: Vec<&String> = lines
            .iter()
            .filter(|l| l.contains("schema drift"))
            .collect();
        assert_eq!(drift.len(), 1, "{lines:?}");
        assert!(
            drift[0].starts_with("::error title=schema drift%3A index llm_providers_tmp_idx::in the database, not in any migration; repair"),
            "{lines:?}"
        );
        let text = summary("migrate-info --check", &report);
        assert!(text.contains("#### Schema drift"), "{text}");
        assert!(
            text.contains(
                "| index pgbouncer_idx | in the database, not in any migration | the pooler's |"
            ),
            "{text}"
        );
    }

    #[test]
    fn linter_findings_are_annotated_on_their_line_and_tabled() {
        let report = report_with(
            6,
            "migrate-info",
            Summary::MigrateInfo(MigrateInfoSummary {
                findings: vec![Finding {
                    rule: "index-not-concurrent".into(),
                    severity: Severity::Blocking,
                    version: 2,
                    file: "migrations/2_i.sql".into(),
                    line: 3,
                    statement: "CREATE INDEX i ON llm_providers (name);".into(),
                    table: "llm_providers".into(),
                    detail: String::new(),
                    lock: "SHARE".into(),
                    rows: Some(250_000),
                    bytes: Some(46_000_000),
                    why: "blocks writes".into(),
                    fix: "CONCURRENTLY".into(),
                    reason: None,
                }],
                ..Default::default()
            })
            .to_value(),
        );
        let lines = annotations("migrate-info --check", &report);
        assert!(
            lines[0].starts_with("::error file=migrations/2_i.sql,line=3,title=index-not-concurrent on llm_providers::blocks writes takes SHARE; fix: CONCURRENTLY"),
            "{lines:?}"
        );
        let text = summary("migrate-info --check", &report);
        assert!(
            text.contains("| blocking | index-not-concurrent | migrations/2_i.sql:3 | llm_providers | 250.0 k rows, 43.9 MB | SHARE | CONCURRENTLY |  |"),
            "{text}"
        );
        assert_eq!(text.matches("#### Migration findings").count(), 1, "{text}");
    }

    #[test]
    fn outputs_are_one_line_each() {
        let report = report_with(0, "migrate", json!({"applied": [], "note": "a\nb"}));
        let text = outputs(&report);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 5, "{text}");
        assert_eq!(lines[0], "exit-code=0");
        assert_eq!(lines[2], "task-id=abc");
        let result: Value =
            serde_json::from_str(lines[4].strip_prefix("result=").unwrap()).unwrap();
        assert_eq!(result["summary"]["note"], "a\nb");
    }

    #[test]
    fn table_cells_cannot_break_the_table() {
        let report = report_with(0, "reencrypt", {
            let mut run = ReencryptReport::completed(&[("a|b", 3, 2)]);
            run.tables[0].column = "c\nd".into();
            run.by_key_id
                .insert("k1".into(), run.tables[0].counts.clone());
            Summary::Reencrypt(Box::new(run)).to_value()
        });
        let text = summary("reencrypt", &report);
        assert!(
            text.contains("| a\\|b | c d | 3 | 2 | 1 | 0 | 0 |"),
            "{text}"
        );
        assert!(text.contains("| k1 | 3 | 2 | 1 | 0 | 0 |"), "{text}");
    }
}
