//! A job split across tasks: `reencrypt --shards N` starts N tasks, each running the
//! companion with `--shard K/N` (the K-th of N equal ranges of every table's keys), and
//! follows them as one job: one live line summing every shard's progress, log lines
//! prefixed with their shard, one exit code and one report.
//!
//! The exit code is 0 only when every shard exited 0; otherwise the most serious: 125
//! when a shard never ran, then 5 when values could not be decrypted, then the first
//! non-zero code in shard order.

use tokio::sync::mpsc;

use super::conclude::settle;
use super::follow::{LogSource, Target, follow, stop_on_the_way_out};
use super::launch::{Job, rejected};
use super::prepare::{follow_settings, log_target, prepare};
use super::report::{ShardReport, ShardedReport, TaskReport};
use crate::contract::exit::{companion, launcher};
use crate::contract::result::Summary;
use crate::contract::summary::{Counts, TableReport};
use crate::launcher::context::Context;
use crate::launcher::error::LauncherError;
use crate::launcher::output::sink::ShardBoard;
use crate::launcher::task::tags;
use crate::signals::Handled;

/// The launcher's own flags among `reencrypt`'s arguments; the rest go to the tasks.
pub const FLAGS: [&str; 2] = ["--shards", "--only"];

/// The most shards one job may have: each is a Fargate task and a database connection.
pub(crate) const MAX_SHARDS: u32 = 32;

/// The longest wait between DescribeTasks of a running shard.
const SHARED_RUNNING_CEILING: std::time::Duration = std::time::Duration::from_secs(1);

/// Which shards of how many a job runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Shards {
    /// N: how many ranges the key space is split into.
    pub count: u32,
    /// The shards to run (`--only`); every one when empty.
    pub only: Vec<u32>,
}

impl Shards {
    /// Takes the launcher's `--shards N` and `--only K,L` out of a companion command's
    /// arguments, returning them and the arguments left for the companion. A bad value
    /// is a message for a usage error.
    pub(crate) fn take_from(args: &[String]) -> Result<(Option<Shards>, Vec<String>), String> {
        let mut count = None;
        let mut only = None;
        let mut rest = Vec::new();
        let mut args = args.iter();
        while let Some(arg) = args.next() {
            let (name, inline) = match arg.split_once('=') {
                Some((name, value)) => (name, Some(value.to_string())),
                None => (arg.as_str(), None),
            };
            if !FLAGS.contains(&name) {
                if arg == "--shard" || arg.starts_with("--shard=") {
                    return Err(
                        "--shard K/N is the companion's; with --shards N the launcher gives each task its own"
                            .into(),
                    );
                }
                rest.push(arg.clone());
                continue;
            }
            let value = inline
                .or_else(|| args.next().cloned())
                .ok_or_else(|| format!("{name} needs a value"))?;
            if name == "--shards" {
                count = Some(
                    value
                        .parse::<u32>()
                        .ok()
                        .filter(|n| (1..=MAX_SHARDS).contains(n))
                        .ok_or_else(|| {
                            format!("--shards {value:?}: use a number from 1 to {MAX_SHARDS}")
                        })?,
                );
            } else {
                only = Some(value);
            }
        }
        let Some(count) = count else {
            return match only {
                Some(_) => Err("--only K,L picks shards of --shards N: give --shards too".into()),
                None => Ok((None, rest)),
            };
        };
        let mut picked = Vec::new();
        for item in only.iter().flat_map(|o| o.split(',')) {
            let k = item
                .trim()
                .parse::<u32>()
                .ok()
                .filter(|k| (1..=count).contains(k))
                .ok_or_else(|| {
                    format!("--only {item:?}: name shards from 1 to {count}, comma-separated")
                })?;
            if picked.contains(&k) {
                return Err(format!("--only names shard {k} twice"));
            }
            picked.push(k);
        }
        picked.sort_unstable();
        Ok((
            Some(Shards {
                count,
                only: picked,
            }),
            rest,
        ))
    }

    /// The shards to run, in order.
    pub(crate) fn selected(&self) -> Vec<u32> {
        if self.only.is_empty() {
            (1..=self.count).collect()
        } else {
            self.only.clone()
        }
    }

    /// Shard `k` of `job`: its command with `--shard K/N` appended.
    pub fn job(&self, job: &Job, k: u32) -> Job {
        let mut argv = job.argv.clone();
        argv.extend(["--shard".to_string(), self.label(k)]);
        Job {
            argv,
            mutating: job.mutating,
        }
    }

    /// `K/N`, as the companion's `--shard` takes it.
    pub fn label(&self, k: u32) -> String {
        format!("{k}/{}", self.count)
    }
}

/// The job's exit code from the shards' codes.
pub(crate) fn combined_exit_code(codes: &[u8]) -> u8 {
    if codes.contains(&launcher::NEVER_RAN) {
        launcher::NEVER_RAN
    } else if codes.contains(&companion::UNDECRYPTABLE) {
        companion::UNDECRYPTABLE
    } else {
        codes.iter().copied().find(|&c| c != 0).unwrap_or(0)
    }
}

/// Sums the shards' per-table counts, per table and column and in all; no totals when
/// no shard reported counts.
fn add_up(reports: &[ShardReport]) -> (Option<Counts>, Vec<TableReport>) {
    let mut totals: Option<Counts> = None;
    let mut tables: Vec<TableReport> = Vec::new();
    for report in reports {
        let Some(Summary::Reencrypt(summary)) = report.task.result.as_ref().map(|r| &r.summary)
        else {
            continue;
        };
        for table in &summary.tables {
            totals.get_or_insert_default().add_all(&table.counts);
            match tables
                .iter_mut()
                .find(|t| t.table == table.table && t.column == table.column)
            {
                Some(sum) => sum.counts.add_all(&table.counts),
                None => tables.push(table.clone()),
            }
        }
    }
    (totals, tables)
}

/// Launches the selected shards of `job` and follows them as one job.
pub(crate) async fn launch_and_follow_shards(
    context: &Context,
    job: &Job,
    shards: &Shards,
    needs_confirmation: bool,
    interrupts: &mut mpsc::UnboundedReceiver<()>,
) -> Result<(u8, ShardedReport), LauncherError> {
    let config = &context.config;
    let renderer = &context.renderer;
    let selected = shards.selected();
    let what = format!(
        "{} on {} of {} shards",
        job.argv.join(" "),
        selected.len(),
        shards.count
    );
    let mut report = ShardedReport {
        command: job.argv.clone(),
        shards: shards.count,
        ran: selected.clone(),
        exit_code: launcher::INTERRUPTED,
        totals: None,
        tables: Vec::new(),
        tasks: Vec::new(),
        api_calls: Default::default(),
    };
    let Some((clients, definition)) =
        prepare(context, job, &what, None, needs_confirmation, interrupts).await?
    else {
        return Ok((launcher::INTERRUPTED, report));
    };
    let _handled = Handled::claim();
    let stop_reason = format!(
        "Interrupted by {} via run-admin-task",
        context.operator.display()
    );

    // One RunTask per shard: each has its own command and its own client token.
    let mut started = Vec::new();
    for &k in &selected {
        let label = shards.label(k);
        let shard_job = shards.job(job, k);
        let mut plan = super::launch::RunTaskPlan::new(
            config,
            &definition.arn,
            &shard_job,
            &context.operator,
        )?;
        plan.tags.push((tags::SHARD.into(), label.clone()));
        plan.deadline = super::launch::companion_deadline(context.options.timeout);
        let mut task_report = TaskReport {
            exit_code: launcher::NEVER_RAN,
            ..plan.report(config, &context.operator)
        };
        let reply = tokio::select! {
            reply = plan.send(&clients.ecs) => reply,
            Some(()) = interrupts.recv() => {
                renderer.warn("interrupted while starting the shards: stopping those started");
                for (_, _, task) in &started {
                    let task: &TaskReport = task;
                    if let Some(arn) = &task.task_arn {
                        stop_on_the_way_out(&clients, &config.cluster, arn, &stop_reason, renderer).await;
                    }
                }
                report.tasks = started.into_iter().map(|(shard, _, task)| ShardReport { shard, task }).collect();
                return Ok((launcher::INTERRUPTED, report));
            }
        };
        match reply {
            Ok(reply) => match reply.task {
                Some(task) if reply.failures.is_empty() => {
                    task_report.apply_snapshot(&task);
                    let log = log_target(&clients, &definition, &config.container, task.id())?;
                    if let Some(log) = &log {
                        task_report.apply_log(log);
                    }
                    renderer.note(&format!(
                        "shard {label}: started task {} running `{}` in {}",
                        task.arn,
                        shard_job.argv.join(" "),
                        crate::launcher::task::placement(&task.arn, &config.cluster)
                    ));
                    started.push((label, log, task_report));
                }
                _ => {
                    let error = rejected(&reply.failures);
                    renderer.warn(&format!("shard {label}: {error}"));
                    task_report.failures = reply.failures;
                    task_report.error = Some(error.to_string());
                    report.tasks.push(ShardReport {
                        shard: label,
                        task: task_report,
                    });
                }
            },
            Err(error) => {
                renderer.warn(&format!("shard {label}: {error}"));
                task_report.error = Some(error.to_string());
                report.tasks.push(ShardReport {
                    shard: label,
                    task: task_report,
                });
            }
        }
    }

    // Each shard is followed as a single task would be, with its own renderer and its
    // own copy of every Ctrl-C, so the first stops every task and the second leaves.
    let board = ShardBoard::new(&format!(
        "{} ({} shards)",
        job.argv.first().map(String::as_str).unwrap_or("job"),
        started.len()
    ));
    let contexts: Vec<Context> = started
        .iter()
        .map(|(label, _, _)| Context {
            options: context.options.clone(),
            config: context.config.clone(),
            operator: context.operator.clone(),
            renderer: renderer.for_shard(label, &board),
        })
        .collect();
    let targets: Vec<Target> = started
        .iter()
        .map(|(_, log, task)| Target {
            cluster: config.cluster.clone(),
            task: task.task_arn.clone().unwrap_or_default(),
            container: config.container.clone(),
            log: log.as_ref().map(|l| LogSource {
                client: clients.logs_in(Some(&l.region)),
                group: l.group.clone(),
                stream: l.stream.clone(),
            }),
        })
        .collect();
    let mut settings = follow_settings(context, Some(definition.container(&config.container)?));
    // The shards share each DescribeTasks call, so asking every second costs the job
    // about a call a second, and each exit is seen within a second: what the last
    // shard's drain, and so the job's answer, waits for.
    settings.poll.running_ceiling = SHARED_RUNNING_CEILING;
    let (senders, mut receivers): (Vec<_>, Vec<_>) =
        started.iter().map(|_| mpsc::unbounded_channel()).unzip();
    let all = futures_util::future::join_all(
        contexts
            .iter()
            .zip(&targets)
            .zip(receivers.iter_mut())
            .map(|((shard, target), rx)| {
                follow(
                    &clients,
                    target,
                    &settings,
                    &shard.renderer,
                    rx,
                    &stop_reason,
                )
            }),
    );
    tokio::pin!(all);
    let followed = loop {
        tokio::select! {
            followed = &mut all => break followed,
            Some(()) = interrupts.recv() => {
                for tx in &senders {
                    let _ = tx.send(());
                }
            }
        }
    };
    renderer.finish();
    for ((shard, (label, log, mut task)), followed) in contexts.iter().zip(started).zip(followed) {
        match followed {
            Ok(followed) => {
                settle(shard, &mut task, followed, log.as_ref());
            }
            Err(error) => {
                shard.renderer.warn(&format!("{error}"));
                task.exit_code = error.exit_code();
                task.error = Some(error.to_string());
            }
        }
        report.tasks.push(ShardReport { shard: label, task });
    }
    report.tasks.sort_by_key(|t| {
        t.shard
            .split('/')
            .next()
            .and_then(|k| k.parse::<u32>().ok())
    });
    let codes: Vec<u8> = report.tasks.iter().map(|t| t.task.exit_code).collect();
    report.exit_code = combined_exit_code(&codes);
    (report.totals, report.tables) = add_up(&report.tasks);
    let say = |line: &str| {
        if report.exit_code == 0 {
            renderer.note(line)
        } else {
            renderer.warn(line)
        }
    };
    say(&format!(
        "{} of {} shards: exit {}{}",
        report.tasks.len(),
        shards.count,
        report.exit_code,
        match &report.totals {
            None => String::new(),
            Some(totals) => {
                let mut named = totals.named();
                named.sort();
                format!(
                    " ({})",
                    named
                        .iter()
                        .map(|(k, v)| format!("{k} {v}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            }
        }
    ));
    for task in report.tasks.iter().filter(|t| t.task.exit_code != 0) {
        renderer.warn(&format!(
            "  shard {} ended with {}{}; rerun it alone with --shards {} --only {}",
            task.shard,
            task.task.exit_code,
            task.task
                .task_id
                .as_deref()
                .map(|id| format!(" (task {id})"))
                .unwrap_or_default(),
            shards.count,
            task.shard.split('/').next().unwrap_or_default()
        ));
    }
    Ok((report.exit_code, report))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contract::result::CompanionResult;
    use crate::contract::summary::ReencryptReport;

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|a| a.to_string()).collect()
    }

    #[test]
    fn shards_and_only_are_the_launchers_and_the_rest_goes_to_the_companion() {
        let (shards, rest) =
            Shards::take_from(&args(&["--shards", "4", "-b", "50", "--only=3,1"])).unwrap();
        assert_eq!(
            shards,
            Some(Shards {
                count: 4,
                only: vec![1, 3]
            })
        );
        assert_eq!(rest, ["-b", "50"]);
        assert_eq!(shards.unwrap().selected(), [1, 3]);
        let (none, rest) = Shards::take_from(&args(&["--dry-run"])).unwrap();
        assert_eq!((none, rest), (None, args(&["--dry-run"])));
        let all = Shards::take_from(&args(&["--shards=3"]))
            .unwrap()
            .0
            .unwrap();
        assert_eq!(all.selected(), [1, 2, 3]);
        assert_eq!(all.label(2), "2/3");
    }

    #[test]
    fn bad_shard_settings_say_what_to_give() {
        for (given, expected) in [
            (&["--shards", "0"][..], "use a number from 1 to 32"),
            (&["--shards", "33"][..], "use a number from 1 to 32"),
            (&["--shards", "x"][..], "use a number from 1 to 32"),
            (&["--shards"][..], "--shards needs a value"),
            (&["--only", "1"][..], "give --shards too"),
            (&["--shards", "4", "--only", "5"][..], "from 1 to 4"),
            (&["--shards", "4", "--only", "2,2"][..], "shard 2 twice"),
            (
                &["--shards", "4", "--shard", "1/4"][..],
                "gives each task its own",
            ),
        ] {
            let error = Shards::take_from(&args(given)).unwrap_err();
            assert!(error.contains(expected), "{given:?}: {error}");
        }
    }

    #[test]
    fn the_most_serious_shard_decides_the_exit_code() {
        assert_eq!(combined_exit_code(&[0, 0, 0]), 0);
        assert_eq!(combined_exit_code(&[0, 1, 5]), 5);
        assert_eq!(combined_exit_code(&[5, 125, 0]), 125);
        assert_eq!(combined_exit_code(&[0, 143, 1]), 143);
        assert_eq!(combined_exit_code(&[]), 0);
    }

    #[test]
    fn counts_add_up_per_table_and_in_all() {
        let shard = |n: u64| ShardReport {
            shard: "1/2".into(),
            task: TaskReport {
                result: CompanionResult::read(&crate::contract::events::Event::Result {
                    ts: chrono::Utc::now(),
                    command: "reencrypt".into(),
                    exit_code: 0,
                    summary: Summary::Reencrypt(Box::new(ReencryptReport::completed(&[
                        ("a", n, n),
                        ("b", 1, 0),
                    ])))
                    .to_value(),
                }),
                ..TaskReport::default()
            },
        };
        let (totals, tables) = add_up(&[shard(3), shard(4)]);
        let totals = totals.unwrap();
        assert_eq!((totals.scanned, totals.reencrypted), (9, 7));
        assert_eq!(tables[0].counts.scanned, 7);
        assert_eq!(tables[1].counts.scanned, 2);
        assert_eq!(tables.len(), 2);
        assert_eq!(add_up(&[]).0, None);
    }
}
