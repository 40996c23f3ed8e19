//! `list`: the recent tasks this tool started on the cluster for the task definition
//! family: who, what command, when, state and exit code. ECS describes a stopped task
//! for about an hour; runs older than that come from the log group, which keeps each
//! task's stream for its retention, and are marked so.

use std::collections::BTreeSet;

use aws_sdk_ecs::types::{DesiredStatus, TaskField};
use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;

use crate::contract::result::CompanionResult;
use crate::launcher::aws_api::aws_errors::call_error;
use crate::launcher::aws_api::clients::Clients;
use crate::launcher::context::Context;
use crate::launcher::error::LauncherError;
use crate::launcher::flags::OutputFormat;
use crate::launcher::identity::STARTED_BY_PREFIX;
use crate::launcher::log_history::{self, RememberedRun};
use crate::launcher::task::{TaskSnapshot, tags};

/// Where a row of `list` comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// ECS describes the task.
    Ecs,
    /// ECS no longer does; its log stream in the task definition's log group remains.
    Logs,
}

/// One row of `list` (and one element of its JSON array).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ListEntry {
    /// Where the row comes from.
    pub source: Source,
    /// The task id.
    pub task_id: String,
    /// The task ARN (unknown for a row from the logs).
    pub task_arn: Option<String>,
    /// Its last status.
    pub last_status: String,
    /// Who started it (the `everruns-admin:started-by` tag, else `startedBy`).
    pub started_by: Option<String>,
    /// Where from.
    pub host: Option<String>,
    /// The container command.
    pub command: Option<String>,
    /// Whether it was a mutating command.
    pub mutating: bool,
    /// When it was created.
    pub created_at: Option<DateTime<Utc>>,
    /// When it stopped.
    pub stopped_at: Option<DateTime<Utc>>,
    /// ECS's stop code.
    pub stop_code: Option<String>,
    /// The named container's exit code.
    pub exit_code: Option<i32>,
}

impl ListEntry {
    /// The row for one task.
    pub(crate) fn from_snapshot(task: &TaskSnapshot, container: &str) -> Self {
        ListEntry {
            source: Source::Ecs,
            task_id: task.id().to_string(),
            task_arn: Some(task.arn.clone()),
            last_status: task.last_status.clone(),
            started_by: task
                .tag(tags::STARTED_BY)
                .map(str::to_string)
                .or_else(|| task.started_by.clone()),
            host: task.tag(tags::HOST).map(str::to_string),
            command: task.tag(tags::COMMAND).map(str::to_string),
            mutating: task.tag(tags::MUTATING) == Some("true"),
            created_at: task.created_at,
            stopped_at: task.stopped_at,
            stop_code: task.stop_code.clone(),
            exit_code: task.container(container).and_then(|c| c.exit_code),
        }
    }

    /// The row for a run ECS no longer describes: its stream's times, and the
    /// companion's command and exit code from its result event.
    fn from_log(run: &RememberedRun, result: Option<&CompanionResult>) -> Self {
        ListEntry {
            source: Source::Logs,
            task_id: run.task_id.clone(),
            task_arn: None,
            last_status: "STOPPED".into(),
            started_by: None,
            host: None,
            command: result.map(|r| r.command.clone()),
            mutating: result.is_some_and(|r| matches!(r.command.as_str(), "migrate" | "reencrypt")),
            created_at: run.created_at,
            stopped_at: run.last_event_at,
            stop_code: None,
            exit_code: result.map(|r| i32::from(r.exit_code)),
        }
    }
}

/// `list [--limit N]`.
#[derive(Debug, Clone, clap::Args)]
pub struct ListArgs {
    /// At most this many, newest first (1 or more)
    #[arg(long, default_value_t = 20, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    pub limit: usize,
}

/// Lists running and recently stopped tasks (ECS keeps stopped ones about an hour),
/// then older runs from the log group.
pub async fn exec(context: &Context, args: &ListArgs) -> Result<u8, LauncherError> {
    let limit = args.limit;
    let config = &context.config;
    let clients = Clients::connect(config).await?;
    let mut arns = BTreeSet::new();
    for status in [DesiredStatus::Running, DesiredStatus::Stopped] {
        let mut pages = clients
            .ecs
            .list_tasks()
            .cluster(&config.cluster)
            .family(config.family())
            .desired_status(status)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| call_error("ListTasks", &e))?;
            arns.extend(page.task_arns().iter().cloned());
        }
    }
    let arns: Vec<String> = arns.into_iter().collect();
    let mut tasks = Vec::new();
    for chunk in arns.chunks(100) {
        let reply = clients
            .ecs
            .describe_tasks()
            .cluster(&config.cluster)
            .set_tasks(Some(chunk.to_vec()))
            .include(TaskField::Tags)
            .send()
            .await
            .map_err(|e| call_error("DescribeTasks", &e))?;
        tasks.extend(
            reply
                .tasks()
                .iter()
                .map(TaskSnapshot::from_sdk)
                .filter(|t| {
                    t.started_by
                        .as_deref()
                        .is_some_and(|s| s.starts_with(STARTED_BY_PREFIX))
                }),
        );
    }
    let known: BTreeSet<&str> = arns.iter().map(|a| log_history::task_id(a)).collect();
    let mut rows: Vec<Row> = tasks.iter().map(Row::Ecs).collect();
    rows.extend(
        log_history::recent(&clients, config, limit)
            .await?
            .into_iter()
            .filter(|run| !known.contains(run.task_id.as_str()))
            .map(Row::Logs),
    );
    rows.sort_by_key(|row| std::cmp::Reverse(row.created_at()));
    rows.truncate(limit);
    let mut entries = Vec::with_capacity(rows.len());
    for row in &rows {
        entries.push(match row {
            Row::Ecs(task) => ListEntry::from_snapshot(task, &config.container),
            Row::Logs(run) => {
                let result = log_history::last_result(&clients, run).await;
                ListEntry::from_log(run, result.as_ref())
            }
        });
    }
    if context.options.output == OutputFormat::Json {
        context.renderer.document(&entries);
        return Ok(0);
    }
    if entries.is_empty() {
        context.renderer.note(&format!(
            "no tasks started by run-admin-task for {} on cluster {}, and no runs in its log group",
            config.family(),
            config.cluster
        ));
        return Ok(0);
    }
    crate::stdio::out_line(format_args!("{}", table(&entries)));
    Ok(0)
}

/// A task before it is a row: described by ECS, or remembered by the log group.
enum Row<'a> {
    Ecs(&'a TaskSnapshot),
    Logs(RememberedRun),
}

impl Row<'_> {
    fn created_at(&self) -> Option<DateTime<Utc>> {
        match self {
            Row::Ecs(task) => task.created_at,
            Row::Logs(run) => run.created_at,
        }
    }
}

/// The human table: one line per task.
pub fn table(entries: &[ListEntry]) -> String {
    let mut rows = vec![[
        "TASK".to_string(),
        "STATUS".into(),
        "EXIT".into(),
        "CREATED".into(),
        "STARTED BY".into(),
        "FROM".into(),
        "COMMAND".into(),
    ]];
    for e in entries {
        rows.push([
            e.task_id.clone(),
            e.last_status.clone(),
            e.exit_code
                .map(|c| c.to_string())
                .unwrap_or_else(|| "-".into()),
            e.created_at
                .map(|t| t.to_rfc3339_opts(SecondsFormat::Secs, true))
                .unwrap_or_else(|| "-".into()),
            match (&e.started_by, &e.host) {
                (Some(who), Some(host)) => format!("{who}@{host}"),
                (Some(who), None) => who.clone(),
                _ => "-".into(),
            },
            match e.source {
                Source::Ecs => "ecs".into(),
                Source::Logs => "logs".into(),
            },
            e.command.clone().unwrap_or_else(|| "-".into()),
        ]);
    }
    let widths: Vec<usize> = (0..7)
        .map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0))
        .collect();
    rows.iter()
        .map(|r| {
            let cells: Vec<String> = r
                .iter()
                .enumerate()
                .map(|(i, c)| {
                    if i == 6 {
                        c.clone()
                    } else {
                        format!("{c:<w$}", w = widths[i])
                    }
                })
                .collect();
            cells.join("  ").trim_end().to_string()
        })
        .collect::<Vec<_>>()
        .join("\n")
}
