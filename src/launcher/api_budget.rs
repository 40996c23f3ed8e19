//! One API budget per invocation. GetLogEvents is an account-wide quota (10 a second in
//! the older quota table, about 25 now) that this tool shares with everything else in
//! the account, and DescribeTasks is a rate too; a job of many tasks must not multiply
//! them. So every log tail of a job takes its turn from one GetLogEvents pace, and every
//! task watcher's DescribeTasks joins one queue that asks for all waiting tasks (up to
//! 100) in one call, at its own pace. Throttling that still happens is retried by the
//! SDK and then by the followers; no line is lost to it. Every call is counted by API,
//! for the report.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_sdk_ecs::config::interceptors::BeforeTransmitInterceptorContextRef;
use aws_sdk_ecs::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_sdk_ecs::error::BoxError;
use aws_sdk_ecs::types::TaskField;
use tokio::sync::{Notify, oneshot};
use tokio::time::Instant;

use crate::launcher::aws_errors::{describe_error, is_transient};
use crate::launcher::config::DEFAULT_LOG_READS_PER_SECOND;
use crate::launcher::task::TaskSnapshot;

/// DescribeTasks accepts at most this many tasks a call.
const MAX_TASKS_PER_CALL: usize = 100;

/// Calls a second, for the whole invocation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rates {
    /// GetLogEvents, over every log tail.
    pub log_reads: f64,
    /// DescribeTasks, over every task followed.
    pub describes: f64,
}

impl Rates {
    /// No pace: a watcher on its own, as before any budget.
    pub(crate) const UNPACED: Rates = Rates {
        log_reads: f64::INFINITY,
        describes: f64::INFINITY,
    };
}

impl Default for Rates {
    fn default() -> Self {
        Rates {
            log_reads: DEFAULT_LOG_READS_PER_SECOND,
            describes: 2.0,
        }
    }
}

/// The shortest gap between two turns when a tail's container has exited: its last
/// lines are what the job waits for, so it goes first and sooner, at the account's
/// older quota (10 a second); such turns are few, one or two per task at its end.
const DRAINING_GAP: Duration = Duration::from_millis(100);

/// Turns at a rate, handed out one at a time, when each is due: a waiter that gives up
/// leaves no turn reserved, and an urgent one overtakes those already waiting.
pub(crate) struct Pace {
    interval: Duration,
    turns: Mutex<Turns>,
    arrived: Notify,
}

#[derive(Default)]
struct Turns {
    urgent: VecDeque<oneshot::Sender<()>>,
    normal: VecDeque<oneshot::Sender<()>>,
    dispatching: bool,
    last: Option<Instant>,
}

impl std::fmt::Debug for Pace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pace")
            .field("interval", &self.interval)
            .finish_non_exhaustive()
    }
}

impl Pace {
    fn per_second(rate: f64) -> Arc<Self> {
        Arc::new(Pace {
            interval: Duration::from_secs_f64(1.0 / rate.max(0.01)),
            turns: Mutex::new(Turns::default()),
            arrived: Notify::new(),
        })
    }

    /// Waits for a turn; `urgent` for a tail whose container has exited.
    pub(crate) async fn wait_turn(self: &Arc<Self>, urgent: bool) {
        let (turn, granted) = oneshot::channel();
        let start = {
            let mut turns = self.turns.lock().unwrap_or_else(|e| e.into_inner());
            if urgent {
                turns.urgent.push_back(turn);
            } else {
                turns.normal.push_back(turn);
            }
            !std::mem::replace(&mut turns.dispatching, true)
        };
        self.arrived.notify_one();
        if start {
            tokio::spawn(Arc::clone(self).dispatch());
        }
        let _ = granted.await;
    }

    /// Hands out turns while anyone waits, each when it is due.
    async fn dispatch(self: Arc<Self>) {
        loop {
            let (due, urgent) = {
                let turns = self.turns.lock().unwrap_or_else(|e| e.into_inner());
                let urgent = !turns.urgent.is_empty();
                let gap = if urgent {
                    DRAINING_GAP.min(self.interval)
                } else {
                    self.interval
                };
                (turns.last.map(|last| last + gap), urgent)
            };
            if let Some(due) = due {
                tokio::select! {
                    () = tokio::time::sleep_until(due) => {}
                    // An urgent waiter may have come: its turn may be due sooner.
                    () = self.arrived.notified(), if !urgent => continue,
                }
            }
            let mut turns = self.turns.lock().unwrap_or_else(|e| e.into_inner());
            loop {
                let Some(turn) = turns
                    .urgent
                    .pop_front()
                    .or_else(|| turns.normal.pop_front())
                else {
                    turns.dispatching = false;
                    return;
                };
                if turn.send(()).is_ok() {
                    turns.last = Some(Instant::now());
                    break;
                }
            }
        }
    }
}

/// DescribeTasks's answer about one task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Described {
    /// The task as it is now.
    Task(Box<TaskSnapshot>),
    /// ECS does not know it (`MISSING`, or another failure reason).
    Missing(String),
    /// The call failed: after the SDK's retries (`transient`: throttling, the network),
    /// or for good (credentials, permissions).
    Failed { transient: bool, message: String },
}

struct Request {
    cluster: String,
    task: String,
    reply: oneshot::Sender<Described>,
}

#[derive(Default)]
struct Queue {
    waiting: Vec<Request>,
    leading: bool,
}

/// The invocation's budget: the GetLogEvents pace and the DescribeTasks queue.
pub(crate) struct ApiBudget {
    /// Every log tail's turn.
    pub log_reads: Arc<Pace>,
    describes: Arc<Pace>,
    queue: Mutex<Queue>,
}

impl std::fmt::Debug for ApiBudget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiBudget")
            .field("log_reads", &self.log_reads)
            .field("describes", &self.describes)
            .finish_non_exhaustive()
    }
}

impl ApiBudget {
    /// A budget at `rates`.
    pub(crate) fn new(rates: Rates) -> Self {
        ApiBudget {
            log_reads: Pace::per_second(rates.log_reads),
            describes: Pace::per_second(rates.describes),
            queue: Mutex::new(Queue::default()),
        }
    }

    /// Describes `task` on `cluster` together with whatever other tasks are waiting for
    /// their turn. The call runs apart from the caller, so a caller that gives up (a
    /// timeout, Ctrl-C) never leaves the others waiting.
    pub(crate) async fn describe(
        self: &Arc<Self>,
        ecs: &aws_sdk_ecs::Client,
        cluster: &str,
        task: &str,
    ) -> Described {
        let (reply, answer) = oneshot::channel();
        let lead = {
            let mut queue = self.queue.lock().unwrap_or_else(|e| e.into_inner());
            queue.waiting.push(Request {
                cluster: cluster.to_string(),
                task: task.to_string(),
                reply,
            });
            !std::mem::replace(&mut queue.leading, true)
        };
        if lead {
            tokio::spawn(Arc::clone(self).lead(ecs.clone()));
        }
        answer.await.unwrap_or_else(|_| Described::Failed {
            transient: true,
            message: "DescribeTasks was not answered".into(),
        })
    }

    /// Asks for the waiting tasks, a cluster at a time, until none waits.
    async fn lead(self: Arc<Self>, ecs: aws_sdk_ecs::Client) {
        loop {
            self.describes.wait_turn(false).await;
            let batch: Vec<Request> = {
                let mut queue = self.queue.lock().unwrap_or_else(|e| e.into_inner());
                let Some(cluster) = queue.waiting.first().map(|r| r.cluster.clone()) else {
                    queue.leading = false;
                    return;
                };
                let (mut batch, rest): (Vec<Request>, Vec<Request>) =
                    queue.waiting.drain(..).partition(|r| r.cluster == cluster);
                queue.waiting = rest;
                queue
                    .waiting
                    .extend(batch.drain(MAX_TASKS_PER_CALL.min(batch.len())..));
                batch
            };
            let mut tasks: Vec<String> = batch.iter().map(|r| r.task.clone()).collect();
            tasks.sort();
            tasks.dedup();
            let reply = ecs
                .describe_tasks()
                .cluster(&batch[0].cluster)
                .set_tasks(Some(tasks))
                .include(TaskField::Tags)
                .send()
                .await;
            for request in batch {
                let answer = match &reply {
                    Ok(reply) => answer_for(reply, &request.task),
                    Err(e) => Described::Failed {
                        transient: is_transient(e),
                        message: describe_error("DescribeTasks", e),
                    },
                };
                let _ = request.reply.send(answer);
            }
        }
    }
}

/// What one reply says about `task` (an id or an ARN).
fn answer_for(
    reply: &aws_sdk_ecs::operation::describe_tasks::DescribeTasksOutput,
    task: &str,
) -> Described {
    let id = task.rsplit('/').next().unwrap_or(task);
    let is_it =
        |arn: Option<&str>| arn.is_some_and(|a| a == task || a.rsplit('/').next() == Some(id));
    if let Some(found) = reply.tasks().iter().find(|t| is_it(t.task_arn())) {
        return Described::Task(Box::new(TaskSnapshot::from_sdk(found)));
    }
    let reason = reply
        .failures()
        .iter()
        .find(|f| is_it(f.arn()))
        .and_then(|f| f.reason())
        .unwrap_or("MISSING");
    Described::Missing(reason.to_string())
}

/// This invocation's calls by API: each attempt, since a retried call counts against
/// the quota again.
static CALLS: Mutex<BTreeMap<String, u64>> = Mutex::new(BTreeMap::new());

/// This invocation's calls so far, by API, for the report's `api_calls`.
pub(crate) fn calls() -> BTreeMap<String, u64> {
    CALLS.lock().unwrap_or_else(|e| e.into_inner()).clone()
}

/// Counts each request by the API its `X-Amz-Target` header names (ECS, CloudWatch
/// Logs, Secrets Manager speak that protocol; the others are not counted).
#[derive(Debug, Clone)]
pub(crate) struct CountCalls;

impl Intercept for CountCalls {
    fn name(&self) -> &'static str {
        "count calls"
    }

    fn read_before_transmit(
        &self,
        context: &BeforeTransmitInterceptorContextRef<'_>,
        _components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        if let Some(target) = context.request().headers().get("x-amz-target") {
            let api = target.rsplit('.').next().unwrap_or(target).to_string();
            *CALLS
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .entry(api)
                .or_default() += 1;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn turns_are_spaced_at_the_rate() {
        let pace = Pace::per_second(4.0);
        let start = Instant::now();
        for _ in 0..5 {
            pace.wait_turn(false).await;
        }
        // The first at once, then one every 250 ms.
        assert_eq!(start.elapsed(), Duration::from_millis(1000));
    }

    #[tokio::test(start_paused = true)]
    async fn a_draining_tail_goes_first_and_sooner() {
        let pace = Pace::per_second(1.0);
        pace.wait_turn(false).await;
        let start = Instant::now();
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut waiting = Vec::new();
        for (name, urgent) in [("a", false), ("b", false), ("drain", true)] {
            let (pace, order) = (Arc::clone(&pace), Arc::clone(&order));
            waiting.push(tokio::spawn(async move {
                pace.wait_turn(urgent).await;
                order.lock().unwrap().push((name, start.elapsed()));
            }));
            tokio::task::yield_now().await;
        }
        for w in waiting {
            w.await.unwrap();
        }
        let order = order.lock().unwrap().clone();
        assert_eq!(order[0], ("drain", DRAINING_GAP), "{order:?}");
        assert_eq!(
            order[1..].iter().map(|(n, _)| *n).collect::<Vec<_>>(),
            ["a", "b"]
        );
        // After the urgent turn, the others keep the rate.
        assert_eq!(
            order[1].1,
            DRAINING_GAP + Duration::from_secs(1),
            "{order:?}"
        );
    }
}
