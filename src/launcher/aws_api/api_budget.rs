//! One API budget per invocation. GetLogEvents is an account-wide quota (10 a second in
//! the older quota table, about 25 now) that this tool shares with everything else in
//! the account, and DescribeTasks is a rate too; a job of many tasks must not multiply
//! them. So every log tail of a job takes its turn from one GetLogEvents pace, and every
//! task watcher's DescribeTasks joins one queue, at its own pace, whose calls ask for
//! every task followed (up to 100): a watcher that finds an answer newer than its last
//! one takes it without a call, so a job's tasks share a call instead of each making
//! one. Throttling that still happens is retried by the SDK and then by the followers;
//! no line is lost to it. Every call is counted by API, for the report.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_sdk_ecs::config::interceptors::BeforeTransmitInterceptorContextRef;
use aws_sdk_ecs::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_sdk_ecs::error::BoxError;
use aws_sdk_ecs::types::TaskField;
use tokio::sync::{Notify, oneshot};
use tokio::time::Instant;

use crate::launcher::aws_api::aws_errors::{describe_error, is_transient};
use crate::launcher::config::DEFAULT_LOG_READS_PER_SECOND;
use crate::launcher::task::TaskSnapshot;

/// DescribeTasks accepts at most this many tasks a call.
const MAX_TASKS_PER_CALL: usize = 100;

/// Calls a second, for the whole invocation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Rates {
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

/// The part of the GetLogEvents rate that tails of running containers leave for those
/// whose container has exited: a job of many tasks saves, while it runs, what draining
/// them all at its end takes.
const SAVED_FOR_DRAINING: f64 = 0.25;

/// The shortest gap between two turns when a tail's container has exited: its last
/// lines are what the job waits for, so it goes first and sooner, at the account's
/// older quota (10 a second); such turns are few, one or two per task at its end.
const DRAINING_GAP: Duration = Duration::from_millis(100);

/// Turns at a rate on average, handed out one at a time, when each is due: a waiter
/// that gives up leaves no turn reserved. Turns for running containers come at most at
/// `1 - saved` of the rate; what they leave is credit, which an urgent waiter (a tail
/// whose container has exited) spends to overtake them, sooner than the rate. However
/// the tails drain, an invocation takes at most one turn plus the rate times its age.
pub(crate) struct Pace {
    /// Between two turns in the normal lane.
    interval: Duration,
    /// The average: turn `n` is not due before `since + n × credit_interval`.
    credit_interval: Duration,
    since: Instant,
    turns: Mutex<Turns>,
    arrived: Notify,
}

#[derive(Default)]
struct Turns {
    urgent: VecDeque<oneshot::Sender<()>>,
    normal: VecDeque<oneshot::Sender<()>>,
    dispatching: bool,
    last: Option<Instant>,
    granted: u32,
}

impl std::fmt::Debug for Pace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pace")
            .field("interval", &self.interval)
            .finish_non_exhaustive()
    }
}

impl Pace {
    fn per_second(rate: f64, saved: f64) -> Arc<Self> {
        let credit_interval = Duration::from_secs_f64(1.0 / rate.max(0.01));
        Arc::new(Pace {
            interval: credit_interval.div_f64(1.0 - saved),
            credit_interval,
            since: Instant::now(),
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
                let credit = self.since + self.credit_interval * turns.granted;
                let spaced = turns.last.map_or(credit, |last| last + gap);
                (spaced.max(credit), urgent)
            };
            tokio::select! {
                () = tokio::time::sleep_until(due) => {}
                // An urgent waiter may have come: its turn may be due sooner.
                () = self.arrived.notified(), if !urgent => continue,
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
                    turns.granted = turns.granted.saturating_add(1);
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
    reply: oneshot::Sender<(Instant, Described)>,
}

/// A task some watcher asked about lately, and the latest answer about it.
struct Known {
    asked: Instant,
    /// When the call that answered started, and its answer.
    answer: Option<(Instant, Described)>,
}

/// A task nobody asked about for this long is no longer followed: calls leave it out.
const FOLLOWED_FOR: Duration = Duration::from_secs(30);

#[derive(Default)]
struct Queue {
    waiting: Vec<Request>,
    leading: bool,
    /// Keyed by cluster and task.
    known: HashMap<(String, String), Known>,
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
            log_reads: Pace::per_second(rates.log_reads, SAVED_FOR_DRAINING),
            describes: Pace::per_second(rates.describes, 0.0),
            queue: Mutex::new(Queue::default()),
        }
    }

    /// Describes `task` on `cluster`: the answer of a call that started after `newer_than`
    /// when there is one, else the answer of the next call, which asks for every task
    /// followed; with when that call started. The call runs apart from the caller, so a
    /// caller that gives up (a timeout, Ctrl-C) never leaves the others waiting.
    pub(crate) async fn describe(
        self: &Arc<Self>,
        ecs: &aws_sdk_ecs::Client,
        cluster: &str,
        task: &str,
        newer_than: Option<Instant>,
    ) -> (Instant, Described) {
        let (reply, answer) = oneshot::channel();
        let lead = {
            let mut queue = self.queue.lock().unwrap_or_else(|e| e.into_inner());
            let known = queue
                .known
                .entry((cluster.to_string(), task.to_string()))
                .or_insert(Known {
                    asked: Instant::now(),
                    answer: None,
                });
            known.asked = Instant::now();
            if let (Some(since), Some(answer)) = (newer_than, &known.answer)
                && answer.0 > since
            {
                return answer.clone();
            }
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
        answer.await.unwrap_or_else(|_| {
            (
                Instant::now(),
                Described::Failed {
                    transient: true,
                    message: "DescribeTasks was not answered".into(),
                },
            )
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
            let cluster = batch[0].cluster.clone();
            let mut tasks: Vec<String> = batch.iter().map(|r| r.task.clone()).collect();
            {
                // The other tasks followed ride along, up to the call's limit.
                let mut queue = self.queue.lock().unwrap_or_else(|e| e.into_inner());
                queue.known.retain(|_, k| k.asked.elapsed() < FOLLOWED_FOR);
                let mut others: Vec<&String> = queue
                    .known
                    .keys()
                    .filter(|(c, t)| *c == cluster && !tasks.contains(t))
                    .map(|(_, t)| t)
                    .collect();
                others.sort();
                others.truncate(MAX_TASKS_PER_CALL.saturating_sub(tasks.len()));
                tasks.extend(others.into_iter().cloned());
            }
            tasks.sort();
            tasks.dedup();
            let started = Instant::now();
            let reply = ecs
                .describe_tasks()
                .cluster(&cluster)
                .set_tasks(Some(tasks.clone()))
                .include(TaskField::Tags)
                .send()
                .await;
            // Each task's answer, read once from the reply: kept for the watchers that
            // ask next, and sent to those waiting.
            let answers: HashMap<String, Described> = match &reply {
                Ok(reply) => tasks
                    .iter()
                    .map(|task| (task.clone(), answer_for(reply, task)))
                    .collect(),
                Err(_) => HashMap::new(),
            };
            {
                let mut queue = self.queue.lock().unwrap_or_else(|e| e.into_inner());
                for (task, answer) in &answers {
                    if let Some(known) = queue.known.get_mut(&(cluster.clone(), task.clone())) {
                        known.answer = Some((started, answer.clone()));
                    }
                }
            }
            for request in batch {
                let answer = match &reply {
                    // Every waiting task was asked for.
                    Ok(reply) => answers
                        .get(&request.task)
                        .cloned()
                        .unwrap_or_else(|| answer_for(reply, &request.task)),
                    Err(e) => Described::Failed {
                        transient: is_transient(e),
                        message: describe_error("DescribeTasks", e),
                    },
                };
                let _ = request.reply.send((started, answer));
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
        let pace = Pace::per_second(4.0, 0.0);
        let start = Instant::now();
        for _ in 0..5 {
            pace.wait_turn(false).await;
        }
        // The first at once, then one every 250 ms.
        assert_eq!(start.elapsed(), Duration::from_millis(1000));
        // Saving a quarter, running containers' tails get 3 of the 4 a second.
        let pace = Pace::per_second(4.0, 0.25);
        let start = Instant::now();
        for _ in 0..4 {
            pace.wait_turn(false).await;
        }
        // (The paused clock's timers have millisecond steps.)
        let took = start.elapsed().as_millis();
        assert!(took.abs_diff(1000) <= 3, "3 turns at 333 ms: {took} ms");
    }

    /// When each of `n` urgent waiters got its turn, in ms from `start`.
    async fn drain(pace: &Arc<Pace>, n: usize, start: Instant) -> Vec<u128> {
        let granted = Arc::new(Mutex::new(Vec::new()));
        let waiting: Vec<_> = (0..n)
            .map(|_| {
                let (pace, granted) = (Arc::clone(pace), Arc::clone(&granted));
                tokio::spawn(async move {
                    pace.wait_turn(true).await;
                    granted.lock().unwrap().push(start.elapsed().as_millis());
                })
            })
            .collect();
        for w in waiting {
            w.await.unwrap();
        }
        let mut granted = granted.lock().unwrap().clone();
        granted.sort_unstable();
        granted
    }

    #[tokio::test(start_paused = true)]
    async fn draining_tails_spend_saved_credit_and_never_more() {
        let start = Instant::now();
        let pace = Pace::per_second(2.0, 0.25);
        // Nothing saved yet: urgent turns come at the average rate, not faster.
        assert_eq!(
            drain(&pace, 6, start).await,
            [0, 500, 1000, 1500, 2000, 2500]
        );
        // Ten quiet seconds later, credit for 20 turns: six drain at the draining gap.
        tokio::time::sleep_until(start + Duration::from_secs(10)).await;
        assert_eq!(
            drain(&pace, 6, start).await,
            [10000, 10100, 10200, 10300, 10400, 10500]
        );
    }

    #[tokio::test]
    async fn the_tasks_followed_share_a_call() {
        use aws_sdk_ecs::operation::describe_tasks::DescribeTasksOutput;
        use aws_smithy_mocks::{RuleMode, mock, mock_client};
        let running = |arn: &str| {
            aws_sdk_ecs::types::Task::builder()
                .task_arn(arn)
                .last_status("RUNNING")
                .build()
        };
        let both = mock!(aws_sdk_ecs::Client::describe_tasks)
            .match_requests(|r| r.tasks() == ["arn:a", "arn:b"])
            .then_output(move || {
                DescribeTasksOutput::builder()
                    .tasks(running("arn:a"))
                    .tasks(running("arn:b"))
                    .build()
            });
        let one = mock!(aws_sdk_ecs::Client::describe_tasks)
            .match_requests(|r| r.tasks() == ["arn:a"])
            .then_output(move || {
                DescribeTasksOutput::builder()
                    .tasks(running("arn:a"))
                    .build()
            });
        let ecs = mock_client!(aws_sdk_ecs, RuleMode::MatchAny, [&both, &one]);
        let budget = Arc::new(ApiBudget::new(Rates::UNPACED));
        let is = |answer: &Described, arn: &str| matches!(answer, Described::Task(t) if t.arn == arn && t.last_status == "RUNNING");

        let (first, a) = budget.describe(&ecs, "c", "arn:a", None).await;
        assert!(is(&a, "arn:a"), "{a:?}");
        // A second task is asked about: the first rides along.
        let (second, b) = budget.describe(&ecs, "c", "arn:b", None).await;
        assert!(is(&b, "arn:b"), "{b:?}");
        assert!(second > first);
        // The first task's next poll takes that newer answer without a call of its own.
        let (again, a) = budget.describe(&ecs, "c", "arn:a", Some(first)).await;
        assert!(is(&a, "arn:a"), "{a:?}");
        assert_eq!(again, second);
        assert_eq!((one.num_calls(), both.num_calls()), (1, 1));
        // An answer newer than the newest there is takes a call, for both tasks.
        budget.describe(&ecs, "c", "arn:a", Some(second)).await;
        assert_eq!((one.num_calls(), both.num_calls()), (1, 2));
    }

    #[tokio::test(start_paused = true)]
    async fn a_draining_tail_goes_first_and_sooner() {
        let pace = Pace::per_second(1.0, 0.25);
        // Credit saved while nothing ran.
        tokio::time::sleep(Duration::from_secs(10)).await;
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
        let expected = DRAINING_GAP + pace.interval;
        assert!(
            order[1].1.abs_diff(expected) <= Duration::from_millis(3),
            "{order:?}"
        );
    }
}
