//! The job summary a launch appends to `$GITHUB_STEP_SUMMARY`: the command and its
//! verdict, the task and its log with console links, the phases, and the companion's
//! result as markdown tables. Made from the report alone, which holds no secret.

use crate::contract::exit::{companion, launcher};
use crate::contract::migration_report::MigrateSummary;
use crate::contract::result::{CompanionResult, Summary};
use crate::contract::summary::Counts;
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

/// A table cell: the text with what would break the table escaped.
pub(crate) fn cell(text: &str) -> String {
    text.replace('|', "\\|").replace(['\r', '\n'], " ")
}

/// A markdown table with `headings` over `rows` of cells (escaped here).
fn table(headings: &[&str], rows: impl IntoIterator<Item = Vec<String>>) -> String {
    let mut text = format!(
        "| {} |\n|{}|\n",
        headings.join(" | "),
        headings.iter().map(|_| "---").collect::<Vec<_>>().join("|")
    );
    for row in rows {
        let cells: Vec<String> = row.iter().map(|c| cell(c)).collect();
        text.push_str(&format!("| {} |\n", cells.join(" | ")));
    }
    text
}

/// A version and description, as the migration tables show them.
fn migration_row(version: i64, description: &str) -> Vec<String> {
    vec![version.to_string(), description.to_string()]
}

/// The counts columns of the re-encryption tables.
const COUNT_HEADINGS: [&str; 5] = [
    "Scanned",
    "Re-encrypted",
    "Already on primary",
    "Skipped",
    "Undecryptable",
];

fn count_cells(counts: &Counts) -> impl Iterator<Item = String> {
    counts.named().into_iter().map(|(_, n)| n.to_string())
}

/// The companion's result as markdown: the migrations applied or pending, the
/// re-encryption counts per table and per key id, the linter's findings.
fn result_section(result: &CompanionResult) -> String {
    let summary = &result.summary;
    let mut text = String::new();
    let mut section = |heading: &str, body: String| {
        text.push_str(&format!("\n#### {heading}\n\n{body}"));
    };
    match summary {
        Summary::Migrate(m) => {
            if let Some(would) = m.would_apply.as_ref().filter(|_| m.dry_run) {
                section(
                    &format!("Would apply {} migration(s) (dry run)", would.len()),
                    table(
                        &["Version", "Description"],
                        would
                            .iter()
                            .map(|s| migration_row(s.version, &s.description)),
                    ),
                );
            }
            match &m.applied {
                Some(applied) if applied.is_empty() => section(
                    "Migrations",
                    "Nothing to apply: the database is at this image.\n".into(),
                ),
                Some(applied) => section(
                    &format!("Applied {} migration(s)", applied.len()),
                    table(
                        &["Version", "Description", "ms"],
                        applied.iter().map(|a| {
                            let mut row = migration_row(a.version, &a.description);
                            row.push(format!("{:?}", a.ms));
                            row
                        }),
                    ),
                ),
                None => {}
            }
        }
        // A run that failed has not seen where the database stands.
        Summary::MigrateInfo(info) if result.error.is_none() => {
            let not_installed: Vec<Vec<String>> = info
                .migrations
                .iter()
                .filter(|m| m.state_name() != "installed")
                .map(|m| {
                    let mut row = migration_row(m.version, &m.description);
                    row.push(m.state_name().to_string());
                    row
                })
                .collect();
            if not_installed.is_empty() {
                section(
                    "Migrations",
                    "The database is exactly at this image.\n".into(),
                );
            } else {
                section(
                    "Migrations not at this image",
                    table(&["Version", "Description", "State"], not_installed),
                );
            }
        }
        Summary::Reencrypt(report) => {
            let mut headings = vec!["Table", "Column"];
            headings.extend(COUNT_HEADINGS);
            section(
                "Re-encryption per table",
                table(
                    &headings,
                    report.tables.iter().map(|t| {
                        [t.table.clone(), t.column.clone()]
                            .into_iter()
                            .chain(count_cells(&t.counts))
                            .collect()
                    }),
                ),
            );
            let mut headings = vec!["Key id"];
            headings.extend(COUNT_HEADINGS);
            section(
                "Per key id found",
                table(
                    &headings,
                    report.by_key_id.iter().map(|(id, counts)| {
                        std::iter::once(id.clone())
                            .chain(count_cells(counts))
                            .collect()
                    }),
                ),
            );
        }
        _ => {}
    }
    let findings = summary.findings();
    if !findings.is_empty() {
        section(
            "Migration findings",
            table(
                &[
                    "Severity",
                    "Rule",
                    "Where",
                    "Table",
                    "Size",
                    "Lock",
                    "Fix",
                    "Allowed because",
                ],
                findings.iter().map(|f| {
                    vec![
                        f.severity.name().to_string(),
                        f.rule.clone(),
                        format!("{}:{}", cell(&f.file), f.line),
                        f.table.clone(),
                        f.size().unwrap_or_default(),
                        f.lock.clone(),
                        f.fix.clone(),
                        f.reason.clone().unwrap_or_default(),
                    ]
                }),
            ),
        );
    }
    if let Summary::MigrateInfo(info) = summary
        && let Some(differences) = &info.schema_differences
        && !differences.is_empty()
    {
        section(
            "Schema drift",
            table(
                &["Object", "Difference", "Allowed because"],
                differences.iter().map(|d| {
                    vec![
                        d.object.clone(),
                        d.difference.clone(),
                        d.allowed.clone().unwrap_or_default(),
                    ]
                }),
            ),
        );
    }
    if let Summary::Migrate(MigrateSummary {
        failed: Some(failed),
        ..
    }) = summary
    {
        section(
            "Failed migration",
            table(
                &["Version", "Description", "File"],
                [{
                    let mut row = migration_row(failed.version, &failed.description);
                    row.push(failed.file.clone().unwrap_or_default());
                    row
                }],
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
            if report
                .result
                .as_ref()
                .is_some_and(|r| r.command == "migrate-info") =>
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
        row("Stopped", cell(&format!("{code}: {reason}")));
    }
    if let Some(operator) = &report.operator {
        row("Started by", cell(operator));
    }
    if let Some(error) = &report.error {
        row("Error", cell(error));
    }
    for failure in &report.failures {
        let what = [&failure.reason, &failure.detail, &failure.arn]
            .into_iter()
            .flatten()
            .cloned()
            .collect::<Vec<_>>()
            .join(" ");
        row("RunTask failure", cell(&what));
    }
    for hint in &report.hints {
        row("Hint", cell(hint));
    }
    if let Some(result) = &report.result {
        if let Some(error) = &result.error {
            row("Companion error", cell(error));
        }
        if let Some(stopped) = &result.stopped {
            row("Database", cell(&stopped.describe()));
        }
        text.push_str(&result_section(result));
    }
    text.push('\n');
    text
}
