//! The job summary a launch appends to `$GITHUB_STEP_SUMMARY`: the command and its
//! verdict, the task and its log with console links, the phases, and the companion's
//! result as markdown tables. Made from the report alone, which holds no secret.

use serde_json::Value;

use crate::contract::events::Event;
use crate::contract::exit::{companion, launcher};
use crate::launcher::job::report::TaskReport;

/// The ECS console page of the task, from its ARN
/// (`arn:aws:ecs:REGION:ACCOUNT:task/CLUSTER/ID`).
pub(crate) fn task_console_url(task_arn: &str) -> Option<String> {
    let mut parts = task_arn.split(':');
    let region = parts.nth(3)?;
    let resource = parts.nth(1)?;
    let mut path = resource.split('/');
    let (Some("task"), Some(cluster), Some(id)) = (path.next(), path.next(), path.next()) else {
        return None;
    };
    Some(format!(
        "https://{region}.console.aws.amazon.com/ecs/v2/clusters/{cluster}/tasks/{id}/configuration?region={region}"
    ))
}

/// A table cell: the value as text, with what would break the table escaped.
pub(crate) fn cell(value: &Value) -> String {
    let text = match value {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    text.replace('|', "\\|").replace(['\r', '\n'], " ")
}

pub(crate) fn rows<'a>(summary: &'a Value, key: &str) -> impl Iterator<Item = &'a Value> {
    summary[key].as_array().into_iter().flatten()
}

/// A markdown table of `columns` (heading, key) over `rows`.
fn table<'a>(columns: &[(&str, &str)], rows: impl Iterator<Item = &'a Value>) -> String {
    let mut text = format!(
        "| {} |\n|{}|\n",
        columns
            .iter()
            .map(|(h, _)| *h)
            .collect::<Vec<_>>()
            .join(" | "),
        columns.iter().map(|_| "---").collect::<Vec<_>>().join("|")
    );
    for row in rows {
        let cells: Vec<String> = columns.iter().map(|(_, key)| cell(&row[*key])).collect();
        text.push_str(&format!("| {} |\n", cells.join(" | ")));
    }
    text
}

/// The companion's result as markdown: the migrations applied or pending, the
/// re-encryption counts per table and per key id.
fn result_section(command: &str, summary: &Value) -> String {
    let mut text = String::new();
    let mut section = |heading: &str, body: String| {
        text.push_str(&format!("\n#### {heading}\n\n{body}"));
    };
    let migration_columns = [("Version", "version"), ("Description", "description")];
    match command {
        "migrate" if summary["dry_run"] == Value::Bool(true) => {
            let would: Vec<&Value> = rows(summary, "would_apply").collect();
            section(
                &format!("Would apply {} migration(s) (dry run)", would.len()),
                table(&migration_columns, would.into_iter()),
            );
        }
        "migrate" => {
            let applied: Vec<&Value> = rows(summary, "applied").collect();
            if applied.is_empty() && summary.get("applied").is_some() {
                section(
                    "Migrations",
                    "Nothing to apply: the database is at this image.\n".into(),
                );
            } else if !applied.is_empty() {
                section(
                    &format!("Applied {} migration(s)", applied.len()),
                    table(
                        &[
                            ("Version", "version"),
                            ("Description", "description"),
                            ("ms", "ms"),
                        ],
                        applied.into_iter(),
                    ),
                );
            }
        }
        "migrate-info" => {
            let pending: Vec<&Value> = rows(summary, "migrations")
                .filter(|m| m["state"].as_str().is_some_and(|s| s != "installed"))
                .collect();
            if pending.is_empty() {
                section(
                    "Migrations",
                    "The database is exactly at this image.\n".into(),
                );
            } else {
                section(
                    "Migrations not at this image",
                    table(
                        &[
                            ("Version", "version"),
                            ("Description", "description"),
                            ("State", "state"),
                        ],
                        pending.into_iter(),
                    ),
                );
            }
        }
        "reencrypt" => {
            let counts = [
                ("Scanned", "scanned"),
                ("Re-encrypted", "reencrypted"),
                ("Already on primary", "already_on_primary"),
                ("Skipped", "skipped"),
                ("Undecryptable", "undecryptable"),
            ];
            let mut columns = vec![("Table", "table"), ("Column", "column")];
            columns.extend(counts);
            section(
                "Re-encryption per table",
                table(&columns, rows(summary, "tables")),
            );
            let by_key: Vec<Value> = summary["by_key_id"]
                .as_object()
                .into_iter()
                .flatten()
                .map(|(id, c)| {
                    let mut row = c.clone();
                    row["key_id"] = Value::String(id.clone());
                    row
                })
                .collect();
            let mut columns = vec![("Key id", "key_id")];
            columns.extend(counts);
            section("Per key id found", table(&columns, by_key.iter()));
        }
        _ => {}
    }
    let findings: Vec<Value> = rows(summary, "findings")
        .map(|f| {
            let mut row = f.clone();
            row["where"] = Value::String(format!("{}:{}", cell(&f["file"]), cell(&f["line"])));
            row["size"] = Value::String(match (f["rows"].as_i64(), f["bytes"].as_i64()) {
                (Some(rows), Some(bytes)) => crate::contract::summary::human(rows, bytes),
                _ => String::new(),
            });
            row
        })
        .collect();
    if !findings.is_empty() {
        section(
            "Migration findings",
            table(
                &[
                    ("Severity", "severity"),
                    ("Rule", "rule"),
                    ("Where", "where"),
                    ("Table", "table"),
                    ("Size", "size"),
                    ("Lock", "lock"),
                    ("Fix", "fix"),
                    ("Allowed because", "reason"),
                ],
                findings.iter(),
            ),
        );
    }
    if let Some(failed) = summary.get("failed") {
        section(
            "Failed migration",
            table(
                &[
                    ("Version", "version"),
                    ("Description", "description"),
                    ("File", "file"),
                ],
                std::iter::once(failed),
            ),
        );
    }
    text
}

/// The job summary: the command, the task with its links, the exit code, the phases
/// and the companion's result.
pub fn summary(command: &str, report: &TaskReport) -> String {
    let verdict = match report.exit_code {
        0 => "✅ passed".to_string(),
        launcher::NEVER_RAN => "❌ the task never ran (exit 125)".to_string(),
        launcher::RAN_EXIT_UNKNOWN => {
            "❓ ran, but ECS has no exit code for it (exit 123)".to_string()
        }
        launcher::TIMEOUT => "⏱️ timed out (exit 124)".to_string(),
        launcher::INTERRUPTED => "⛔ interrupted (exit 130)".to_string(),
        companion::PENDING
            if result_of(report).is_some_and(|(name, _, _)| name == "migrate-info") =>
        {
            "⚠️ migrations pending (exit 3)".to_string()
        }
        code => format!("❌ failed (exit {code})"),
    };
    let mut text = format!(
        "### run-admin-task `{}`: {verdict}\n\n| | |\n|---|---|\n",
        command.replace('`', "'")
    );
    let mut row = |name: &str, value: String| {
        text.push_str(&format!("| {name} | {value} |\n"));
    };
    if let Some(arn) = &report.task_arn {
        let id = report.task_id.clone().unwrap_or_default();
        row(
            "Task",
            match task_console_url(arn) {
                Some(url) => format!("[`{id}`]({url}) on cluster `{}`", report.cluster),
                None => format!("`{arn}`"),
            },
        );
    }
    if !report.wrote_logs() {
        row(
            "Logs",
            "none: the task failed to start before its container ran".to_string(),
        );
    } else if let (Some(group), Some(stream)) = (&report.log_group, &report.log_stream) {
        row(
            "Logs",
            match &report.console_url {
                Some(url) => format!("[`{group}` `{stream}`]({url})"),
                None => format!("`{group}` `{stream}`"),
            },
        );
    }
    row("Exit code", format!("**{}**", report.exit_code));
    if let Some(phases) = report.phases.describe() {
        row("Phases", phases);
    }
    if let Some(reason) = &report.stopped_reason {
        let code = report.stop_code.as_deref().unwrap_or("stopped");
        row("Stopped", cell(&Value::String(format!("{code}: {reason}"))));
    }
    if let Some(operator) = &report.operator {
        row("Started by", cell(&Value::String(operator.clone())));
    }
    if let Some(error) = &report.error {
        row("Error", cell(&Value::String(error.clone())));
    }
    for failure in &report.failures {
        let what = [&failure.reason, &failure.detail, &failure.arn]
            .into_iter()
            .flatten()
            .cloned()
            .collect::<Vec<_>>()
            .join(" ");
        row("RunTask failure", cell(&Value::String(what)));
    }
    for hint in &report.hints {
        row("Hint", cell(&Value::String(hint.clone())));
    }
    if let Some((name, _, summary)) = result_of(report) {
        if let Some(error) = summary["error"].as_str() {
            row("Companion error", cell(&Value::String(error.to_string())));
        }
        if let Some(stopped) = report.result.as_ref().and_then(Event::stopped) {
            row("Database", cell(&Value::String(stopped.describe())));
        }
        text.push_str(&result_section(name, summary));
    }
    text.push('\n');
    text
}

/// The companion's result, when the report has one.
pub(crate) fn result_of(report: &TaskReport) -> Option<(&str, u8, &Value)> {
    match &report.result {
        Some(Event::Result {
            command,
            exit_code,
            summary,
            ..
        }) => Some((command.as_str(), *exit_code, summary)),
        _ => None,
    }
}
