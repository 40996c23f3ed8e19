//! `doctor --in-vpc`: the companion's `status` run inside the VPC, turned into checks.
//! It answers "database connection issues" with what the task itself saw: whether
//! the database is reachable from the task's subnets, where the schema stands, and
//! which key ids the task was given.

use super::check::Check;
use crate::contract::result::{CompanionResult, Summary};
use crate::contract::summary::StatusSummary;

/// The companion command doctor launches.
pub(crate) const COMPANION_COMMAND: &str = "status";

/// How the in-VPC `status` task ended, as far as doctor needs it.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct StatusRun {
    /// The task's id, once one was started.
    pub task_id: Option<String>,
    /// The companion's result event.
    pub result: Option<CompanionResult>,
    /// Why there is no usable result: the launcher's error, ECS's stop reason.
    pub problem: Vec<String>,
    /// What to check, for a recognised failure.
    pub hints: Vec<String>,
    /// Wall time from launch to the end of the task, in milliseconds.
    pub ms: u64,
}

const NOT_REPORTED: &str = "not checked: the status task did not report";

/// The checks of one run: the task itself, then database, schema and keys.
pub fn checks(run: &StatusRun) -> Vec<Check> {
    let task = run.task_id.as_deref();
    let summary = match &run.result {
        Some(CompanionResult {
            exit_code,
            summary: Summary::Status(summary),
            ..
        }) => Some((*exit_code, summary.clone())),
        _ => None,
    };
    let Some((code, summary)) = summary else {
        let detail = match (task, run.problem.is_empty()) {
            (Some(task), true) => format!("task {task} ended without a `status` result"),
            (Some(task), false) => format!("task {task}: {}", run.problem.join("; ")),
            (None, true) => "no status task was started".to_string(),
            (None, false) => format!("no status task was started: {}", run.problem.join("; ")),
        };
        let fix = match (task, run.hints.is_empty()) {
            (_, false) => run.hints.join("; "),
            (Some(task), true) => format!(
                "read the task's output with `run-admin-task logs {task}`; an image whose companion \
                 has no `status` command must be rebuilt from this version"
            ),
            (None, true) => "fix what the checks above name (subnets, security groups, task \
                             definition, credentials), then run `run-admin-task doctor --in-vpc` again"
                .to_string(),
        };
        return vec![
            Check::fail("in-vpc:task", detail, fix).took(run.ms),
            Check::skip("in-vpc:database", NOT_REPORTED),
            Check::skip("in-vpc:schema", NOT_REPORTED),
            Check::skip("in-vpc:keys", NOT_REPORTED),
        ];
    };
    vec![
        Check::pass(
            "in-vpc:task",
            format!(
                "task {} ran `everruns-admin status` (exit {code})",
                task.unwrap_or_default()
            ),
        )
        .took(run.ms),
        database(&summary),
        schema(&summary),
        keys(&summary),
    ]
}

fn database(summary: &StatusSummary) -> Check {
    const NAME: &str = "in-vpc:database";
    let db = &summary.database;
    let url = db.url.as_deref().unwrap_or("DATABASE_URL");
    let check = if db.ok {
        Check::pass(
            NAME,
            format!(
                "{url} is reachable from the task's subnets: PostgreSQL {}, SELECT 1 in {:.1} ms",
                db.server_version.as_deref().unwrap_or("?"),
                db.select1_ms.unwrap_or_default()
            ),
        )
    } else {
        Check::fail(
            NAME,
            db.error
                .clone()
                .unwrap_or_else(|| format!("{url} is not reachable")),
            "allow the task's security group into the database's security group on its port, \
             check that the subnets route to the database, and check the DATABASE_URL secret's \
             host, user and database name",
        )
    };
    check.took(db.ms)
}

fn schema(summary: &StatusSummary) -> Check {
    const NAME: &str = "in-vpc:schema";
    let schema = &summary.schema;
    let check = if !summary.database.ok {
        Check::skip(NAME, "not checked: the database is not reachable")
    } else if !schema.ok {
        Check::fail(
            NAME,
            schema
                .error
                .clone()
                .unwrap_or_else(|| "the migration history could not be read".into()),
            "run `run-admin-task migrate-info` for the full error",
        )
    } else if schema.drift > 0 {
        Check::fail(
            NAME,
            format!(
                "the database disagrees with this image on {} migration(s)",
                schema.drift
            ),
            "run `run-admin-task migrate-info` to see which and what to do",
        )
    } else if schema.pending > 0 {
        Check::pass(
            NAME,
            format!(
                "{} migration(s) pending: apply them with `run-admin-task migrate`",
                schema.pending
            ),
        )
    } else if !schema.history_table_exists {
        Check::pass(NAME, "no migrations applied yet and none in this image")
    } else {
        Check::pass(NAME, "the database is at this image")
    };
    check.took(schema.ms)
}

fn keys(summary: &StatusSummary) -> Check {
    const NAME: &str = "in-vpc:keys";
    let keys = &summary.keys;
    let check = if keys.ok {
        let previous = if keys.previous.is_empty() {
            "none".to_owned()
        } else {
            keys.previous.join(", ")
        };
        Check::pass(
            NAME,
            format!(
                "primary {}, previous {previous}",
                keys.primary.as_deref().unwrap_or("?")
            ),
        )
    } else {
        Check::fail(
            NAME,
            keys.error
                .clone()
                .unwrap_or_else(|| "the encryption keys are not usable".into()),
            "fix the SECRETS_ENCRYPTION_KEY / SECRETS_ENCRYPTION_KEY_PREVIOUS secrets \
             (key_id:base64 of 32 bytes), then start a new task",
        )
    };
    check.took(keys.ms)
}

#[cfg(test)]
mod tests {
    use super::super::check::Status;
    use super::*;
    use crate::contract::events::Event;
    use crate::contract::summary::{DatabaseProbe, KeysProbe, SchemaProbe};

    fn run(summary: StatusSummary) -> StatusRun {
        StatusRun {
            task_id: Some("abc".into()),
            result: CompanionResult::read(&Event::Result {
                ts: chrono::Utc::now(),
                command: "status".into(),
                exit_code: summary.exit_code(),
                summary: Summary::Status(summary).to_value(),
            }),
            ms: 40_000,
            ..StatusRun::default()
        }
    }

    #[test]
    fn a_healthy_task_passes_with_pending_as_information() {
        let summary = StatusSummary {
            database: DatabaseProbe {
                ok: true,
                server_version: Some("15.4".into()),
                ms: 12,
                ..DatabaseProbe::default()
            },
            schema: SchemaProbe {
                ok: true,
                history_table_exists: true,
                pending: 2,
                ..SchemaProbe::default()
            },
            keys: KeysProbe {
                ok: true,
                primary: Some("kek-v2".into()),
                previous: vec!["kek-v1".into()],
                ..KeysProbe::default()
            },
        };
        let checks = checks(&run(summary));
        assert!(
            checks.iter().all(|c| c.status == Status::Pass),
            "{checks:?}"
        );
        assert!(checks[2].detail.contains("2 migration(s) pending"));
        assert!(checks[3].detail.contains("primary kek-v2, previous kek-v1"));
        assert_eq!(checks[1].ms, 12);
    }

    #[test]
    fn an_unreachable_database_fails_and_skips_the_schema() {
        let summary = StatusSummary {
            database: DatabaseProbe {
                error: Some("cannot connect to postgres://u:****@db/x: timed out".into()),
                ..DatabaseProbe::default()
            },
            keys: KeysProbe {
                ok: true,
                ..KeysProbe::default()
            },
            ..StatusSummary::default()
        };
        let checks = checks(&run(summary));
        assert_eq!(checks[1].status, Status::Fail);
        assert!(checks[1].fix.as_deref().unwrap().contains("security group"));
        assert_eq!(checks[2].status, Status::Skip);
    }

    #[test]
    fn no_result_fails_the_task_with_ecs_reasons() {
        let checks = checks(&StatusRun {
            task_id: Some("abc".into()),
            problem: vec!["ResourceInitializationError: unable to pull secrets".into()],
            hints: vec!["check the execution role".into()],
            ..StatusRun::default()
        });
        assert_eq!(checks[0].status, Status::Fail);
        assert!(checks[0].detail.contains("ResourceInitializationError"));
        assert_eq!(checks[0].fix.as_deref(), Some("check the execution role"));
        assert!(checks[1..].iter().all(|c| c.status == Status::Skip));
    }

    #[test]
    fn a_task_that_never_started_suggests_no_command_with_a_placeholder() {
        let checks = checks(&StatusRun {
            problem: vec!["RunTask failed: subnet-x does not exist".into()],
            ..StatusRun::default()
        });
        assert_eq!(checks[0].status, Status::Fail);
        assert!(
            checks[0]
                .detail
                .starts_with("no status task was started: RunTask")
        );
        let fix = checks[0].fix.as_deref().unwrap_or_default();
        assert!(!fix.contains("logs") && !fix.contains("(none"), "{fix}");
    }
}
