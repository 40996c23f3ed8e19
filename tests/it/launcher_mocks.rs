//! The launcher's AWS conversations against mocked ECS and CloudWatch Logs clients:
//! every branch the follow and log loops take, without a network or real waiting.

use std::sync::Arc;
use std::time::Duration;

use aws_sdk_cloudwatchlogs::operation::get_log_events::{GetLogEventsError, GetLogEventsOutput};
use aws_sdk_cloudwatchlogs::types::OutputLogEvent;
use aws_sdk_ecs::error::ErrorMetadata;
use aws_sdk_ecs::operation::describe_tasks::{DescribeTasksError, DescribeTasksOutput};
use aws_sdk_ecs::operation::run_task::RunTaskOutput;
use aws_sdk_ecs::operation::stop_task::StopTaskOutput;
use aws_sdk_ecs::types::{Container, Failure, Task};
use aws_smithy_mocks::{Rule, RuleMode, mock, mock_client};
use everruns_admin::contract::events::LogLine;
use everruns_admin::seam::Clients;
use everruns_admin::seam::LaunchConfig;
use everruns_admin::seam::Operator;
use everruns_admin::seam::Renderer;
use everruns_admin::seam::TaskOutcome;
use everruns_admin::seam::{Ending, FollowSettings, Followed, LogSource, Target, follow};
use everruns_admin::seam::{GlobalOptions, OutputFormat};
use everruns_admin::seam::{Job, RunTaskPlan, rejected};
use everruns_admin::seam::{LogFollower, LogTiming, Page, TaskPhase};
use everruns_admin::seam::{Poll, PollTiming, TaskWatcher};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

const ARN: &str = "arn:aws:ecs:us-east-1:123456789012:task/everruns/0123456789abcdef";
const GROUP: &str = "/ecs/everruns-admin";
const STREAM: &str = "ecs/admin/0123456789abcdef";

fn task(status: &str, containers: Vec<Container>) -> Task {
    Task::builder()
        .task_arn(ARN)
        .last_status(status)
        .set_containers(Some(containers))
        .build()
}

fn admin(exit_code: Option<i32>) -> Container {
    Container::builder()
        .name("admin")
        .set_exit_code(exit_code)
        .build()
}

fn described(status: &str, containers: Vec<Container>) -> DescribeTasksOutput {
    DescribeTasksOutput::builder()
        .tasks(task(status, containers))
        .build()
}

fn missing() -> DescribeTasksOutput {
    DescribeTasksOutput::builder()
        .failures(Failure::builder().arn(ARN).reason("MISSING").build())
        .build()
}

fn throttled() -> DescribeTasksError {
    DescribeTasksError::generic(
        ErrorMetadata::builder()
            .code("ThrottlingException")
            .message("Rate exceeded")
            .build(),
    )
}

fn page(lines: &[&str], token: &str) -> GetLogEventsOutput {
    GetLogEventsOutput::builder()
        .set_events(Some(
            lines
                .iter()
                .enumerate()
                .map(|(i, l)| {
                    OutputLogEvent::builder()
                        .message(*l)
                        .timestamp(i as i64)
                        .build()
                })
                .collect(),
        ))
        .next_forward_token(token)
        .next_backward_token("b")
        .build()
}

fn not_created() -> GetLogEventsError {
    GetLogEventsError::ResourceNotFoundException(
        aws_sdk_cloudwatchlogs::types::error::ResourceNotFoundException::builder()
            .message("The specified log stream does not exist.")
            .build(),
    )
}

fn ecs(rules: &[&Rule]) -> aws_sdk_ecs::Client {
    mock_client!(aws_sdk_ecs, RuleMode::MatchAny, rules)
}

fn logs(rules: &[&Rule]) -> aws_sdk_cloudwatchlogs::Client {
    mock_client!(aws_sdk_cloudwatchlogs, RuleMode::Sequential, rules)
}

fn clients(ecs: aws_sdk_ecs::Client, logs: aws_sdk_cloudwatchlogs::Client) -> Clients {
    Clients::from_parts(
        ecs,
        logs,
        aws_sdk_secretsmanager::Client::from_conf(
            aws_sdk_secretsmanager::Config::builder()
                .behavior_version(aws_sdk_secretsmanager::config::BehaviorVersion::latest())
                .region(aws_sdk_secretsmanager::config::Region::new("us-east-1"))
                .build(),
        ),
        mock_client!(aws_sdk_sts, RuleMode::MatchAny, &[]),
        crate::common::uncalled_ec2(),
        crate::common::uncalled_ecr(),
        "us-east-1",
    )
}

fn target(clients: &Clients) -> Target {
    Target {
        cluster: "everruns".into(),
        task: ARN.into(),
        container: "admin".into(),
        log: Some(LogSource {
            client: clients.logs.clone(),
            group: GROUP.into(),
            stream: STREAM.into(),
        }),
    }
}

fn stdout_lines(renderer: &Renderer) -> Vec<String> {
    renderer
        .captured()
        .into_iter()
        .filter_map(|l| l.strip_prefix("stdout: ").map(str::to_string))
        .collect()
}

const RESULT: &str = r#"{"event":"result","ts":"2026-01-02T03:04:05Z","command":"migrate","exit_code":0,"summary":{"applied":1}}"#;

// --- RunTask ---------------------------------------------------------------------

fn plan() -> RunTaskPlan {
    let mut config = LaunchConfig::resolve(&GlobalOptions::default(), &|_: &str| None).unwrap();
    config.subnets = vec!["subnet-1".into()];
    let job = Job {
        argv: vec!["migrate".into()],
        mutating: true,
    };
    let operator = Operator {
        who: "alice".into(),
        host: "laptop".into(),
    };
    RunTaskPlan::new(&config, "everruns-admin:3", &job, &operator).unwrap()
}

#[tokio::test]
async fn run_task_failures_are_exit_125_with_reason_and_detail() {
    let rule = mock!(aws_sdk_ecs::Client::run_task).then_output(|| {
        RunTaskOutput::builder()
            .failures(
                Failure::builder()
                    .arn("arn:aws:ecs:us-east-1:1:container-instance/x")
                    .reason("RESOURCE:ENI")
                    .detail("no free ENI in subnet-1")
                    .build(),
            )
            .build()
    });
    let reply = plan().send(&ecs(&[&rule])).await.unwrap();
    assert!(reply.task.is_none());
    let err = rejected(&reply.failures);
    assert_eq!(err.exit_code(), 125);
    let text = err.to_string();
    assert!(
        text.contains("RESOURCE:ENI") && text.contains("no free ENI in subnet-1"),
        "{text}"
    );
}

#[tokio::test]
async fn run_task_sends_override_for_the_named_container_with_who_and_token() {
    let plan = plan();
    let token = plan.client_token.clone();
    let rule = mock!(aws_sdk_ecs::Client::run_task)
        .match_requests(move |req| {
            let overrides = req.overrides().unwrap().container_overrides();
            let vpc = req
                .network_configuration()
                .unwrap()
                .awsvpc_configuration()
                .unwrap();
            overrides.len() == 1
                && overrides[0].name() == Some("admin")
                && overrides[0].command() == ["migrate"]
                && req.started_by() == Some("run-admin-task/alice")
                && req.client_token() == Some(token.as_str())
                && req.launch_type().map(|l| l.as_str()) == Some("FARGATE")
                && vpc.assign_public_ip().map(|a| a.as_str()) == Some("DISABLED")
                && req.tags().iter().any(|t| {
                    t.key() == Some("everruns-admin:mutating") && t.value() == Some("true")
                })
        })
        .then_output(|| {
            RunTaskOutput::builder()
                .tasks(task("PROVISIONING", vec![admin(None)]))
                .build()
        });
    let reply = plan.send(&ecs(&[&rule])).await.unwrap();
    assert_eq!(rule.num_calls(), 1);
    assert_eq!(reply.task.unwrap().arn, ARN);
    assert!(reply.failures.is_empty());
}

// --- DescribeTasks ------------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn missing_right_after_launch_is_not_yet_visible_then_found() {
    let rule = mock!(aws_sdk_ecs::Client::describe_tasks)
        .sequence()
        .output(missing)
        .times(2)
        .output(|| described("PENDING", vec![admin(None)]))
        .build();
    let mut watcher = TaskWatcher::new(ecs(&[&rule]), "everruns", ARN, PollTiming::default());
    assert_eq!(watcher.poll().await.unwrap(), Poll::NotVisibleYet);
    assert_eq!(watcher.poll().await.unwrap(), Poll::NotVisibleYet);
    match watcher.poll().await.unwrap() {
        Poll::Seen(snapshot) => assert_eq!(snapshot.last_status, "PENDING"),
        other => panic!("expected the task, got {other:?}"),
    }
}

#[tokio::test(start_paused = true)]
async fn missing_after_the_grace_period_is_an_error() {
    let rule = mock!(aws_sdk_ecs::Client::describe_tasks)
        .sequence()
        .output(missing)
        .repeatedly()
        .build();
    let timing = PollTiming {
        missing_grace: Duration::from_secs(30),
        ..PollTiming::default()
    };
    let mut watcher = TaskWatcher::new(ecs(&[&rule]), "everruns", ARN, timing);
    assert_eq!(watcher.poll().await.unwrap(), Poll::NotVisibleYet);
    tokio::time::sleep(Duration::from_secs(31)).await;
    let err = watcher.poll().await.unwrap_err();
    assert_eq!(err.exit_code(), 125);
    assert!(err.to_string().contains("MISSING"));
}

#[tokio::test(start_paused = true)]
async fn throttling_is_retried_by_the_sdk() {
    let rule = mock!(aws_sdk_ecs::Client::describe_tasks)
        .sequence()
        .error(throttled)
        .times(2)
        .output(|| described("RUNNING", vec![admin(None)]))
        .build();
    let mut watcher = TaskWatcher::new(ecs(&[&rule]), "everruns", ARN, PollTiming::default());
    assert!(matches!(watcher.poll().await.unwrap(), Poll::Seen(_)));
    assert_eq!(rule.num_calls(), 3);
}

#[tokio::test(start_paused = true)]
async fn throttling_beyond_the_sdk_retries_is_retried_by_the_watcher() {
    let rule = mock!(aws_sdk_ecs::Client::describe_tasks)
        .sequence()
        .error(throttled)
        .times(3)
        .output(|| described("RUNNING", vec![admin(None)]))
        .build();
    let client = mock_client!(aws_sdk_ecs, RuleMode::Sequential, [&rule], |c| c
        .retry_config(aws_sdk_ecs::config::retry::RetryConfig::disabled()));
    let mut watcher = TaskWatcher::new(client, "everruns", ARN, PollTiming::default());
    for _ in 0..3 {
        match watcher.poll().await.unwrap() {
            Poll::Unavailable(problem) => assert!(problem.contains("ThrottlingException")),
            other => panic!("expected a retryable failure, got {other:?}"),
        }
    }
    assert!(matches!(watcher.poll().await.unwrap(), Poll::Seen(_)));
}

#[tokio::test(start_paused = true)]
async fn polling_is_fast_while_starting_and_backs_off_while_running() {
    let rule = mock!(aws_sdk_ecs::Client::describe_tasks)
        .sequence()
        .output(|| described("PENDING", vec![admin(None)]))
        .output(|| described("RUNNING", vec![admin(None)]))
        .repeatedly()
        .build();
    let timing = PollTiming::default();
    let mut watcher = TaskWatcher::new(ecs(&[&rule]), "everruns", ARN, timing);
    watcher.poll().await.unwrap();
    assert_eq!(watcher.interval(), timing.fast);
    watcher.poll().await.unwrap();
    assert_eq!(
        watcher.interval(),
        timing.fast,
        "a transition resets the interval"
    );
    for _ in 0..10 {
        watcher.poll().await.unwrap();
    }
    assert_eq!(watcher.interval(), timing.running_ceiling);
    watcher.poke();
    assert_eq!(watcher.interval(), timing.fast);
    let delay = watcher.next_delay();
    assert!(delay >= timing.fast.mul_f64(0.79) && delay <= timing.fast.mul_f64(1.21));
}

// --- Outcome from DescribeTasks ----------------------------------------------------

#[tokio::test]
async fn containers_in_another_order_and_a_container_reason() {
    let rule = mock!(aws_sdk_ecs::Client::describe_tasks).then_output(|| {
        DescribeTasksOutput::builder()
            .tasks(
                Task::builder()
                    .task_arn(ARN)
                    .last_status("STOPPED")
                    .stop_code(aws_sdk_ecs::types::TaskStopCode::EssentialContainerExited)
                    .stopped_reason("Essential container in task exited")
                    .containers(Container::builder().name("log-router").exit_code(0).build())
                    .containers(
                        Container::builder()
                            .name("admin")
                            .exit_code(137)
                            .reason("OutOfMemoryError: Container killed due to memory usage")
                            .build(),
                    )
                    .build(),
            )
            .build()
    });
    let mut watcher = TaskWatcher::new(ecs(&[&rule]), "everruns", ARN, PollTiming::default());
    let Poll::Seen(snapshot) = watcher.poll().await.unwrap() else {
        panic!("no task");
    };
    let outcome = TaskOutcome::decide(&snapshot, "admin", None);
    assert_eq!(
        outcome.exit_code, 137,
        "the named container, not containers[0]"
    );
    assert!(
        outcome
            .explanation
            .iter()
            .any(|l| l.contains("OutOfMemoryError"))
    );
    assert!(
        outcome
            .explanation
            .iter()
            .any(|l| l.contains("EssentialContainerExited"))
    );
    assert!(!outcome.hints.is_empty());
}

// --- GetLogEvents --------------------------------------------------------------------

#[tokio::test]
async fn the_end_is_only_where_the_token_comes_back_unchanged() {
    let first = mock!(aws_sdk_cloudwatchlogs::Client::get_log_events)
        .match_requests(|r| r.next_token().is_none() && r.start_from_head() == Some(true))
        .then_output(|| page(&[], "f1"));
    let second = mock!(aws_sdk_cloudwatchlogs::Client::get_log_events)
        .match_requests(|r| r.next_token() == Some("f1"))
        .then_output(|| page(&[], "f2"));
    let third = mock!(aws_sdk_cloudwatchlogs::Client::get_log_events)
        .match_requests(|r| r.next_token() == Some("f2"))
        .then_output(|| page(&["a"], "f3"));
    let end = mock!(aws_sdk_cloudwatchlogs::Client::get_log_events)
        .match_requests(|r| r.next_token() == Some("f3"))
        .then_output(|| page(&[], "f3"));
    let mut follower = LogFollower::new(
        logs(&[&first, &second, &third, &end]),
        GROUP,
        STREAM,
        LogTiming::default(),
    );
    let lines = |lines: Vec<&str>, at_end| Page::Lines {
        lines: lines.into_iter().map(LogLine::parse).collect(),
        at_end,
    };
    assert_eq!(follower.next_page().await.unwrap(), lines(vec![], false));
    assert_eq!(
        follower.next_page().await.unwrap(),
        lines(vec![], false),
        "an empty page is not the end"
    );
    assert_eq!(follower.next_page().await.unwrap(), lines(vec!["a"], false));
    assert_eq!(follower.next_page().await.unwrap(), lines(vec![], true));
}

#[tokio::test]
async fn a_missing_stream_is_not_created_yet() {
    let rule = mock!(aws_sdk_cloudwatchlogs::Client::get_log_events).then_error(not_created);
    let mut follower = LogFollower::new(logs(&[&rule]), GROUP, STREAM, LogTiming::default());
    assert_eq!(follower.next_page().await.unwrap(), Page::NotCreated);
}

/// Follows the stream `rule` answers for, of a container that has exited, to its end:
/// the lines seen, in order, and the follower.
async fn drain_exited(rule: &Rule) -> (Vec<String>, LogFollower) {
    let mut follower = LogFollower::new(logs(&[rule]), GROUP, STREAM, LogTiming::default());
    let (_tx, rx) = watch::channel(TaskPhase {
        started: true,
        exited_at: Some(Instant::now()),
        container_ran: true,
    });
    let seen = std::sync::Mutex::new(Vec::new());
    let on_line = |line: &LogLine| seen.lock().unwrap().push(line.text.clone());
    follower.run(rx, true, &on_line, &|_| {}).await.unwrap();
    (seen.into_inner().unwrap(), follower)
}

#[tokio::test(start_paused = true)]
async fn every_line_once_in_order_across_missing_stream_and_empty_pages() {
    let rule = mock!(aws_sdk_cloudwatchlogs::Client::get_log_events)
        .sequence()
        .error(not_created)
        .times(2)
        .output(|| page(&[], "f1"))
        .output(|| page(&["one", "two"], "f2"))
        .output(|| page(&[], "f3"))
        .output(|| page(&["three"], "f4"))
        .output(|| page(&[RESULT], "f5"))
        .build();
    let (seen, follower) = drain_exited(&rule).await;
    assert_eq!(seen, vec!["one", "two", "three", RESULT]);
    assert!(follower.result().is_some());
    // The container has exited and its result event was the last line read: no read
    // is spent to see that nothing follows it.
    assert!(rule.is_exhausted());
    assert_eq!(rule.num_calls(), 7);
}

#[tokio::test(start_paused = true)]
async fn a_line_after_the_result_event_is_read_to_the_end() {
    // `run -- sh -c 'everruns-admin migrate; echo done'`: the result is not the end.
    let rule = mock!(aws_sdk_cloudwatchlogs::Client::get_log_events)
        .sequence()
        .output(|| page(&[RESULT, "done"], "f1"))
        .output(|| page(&["later"], "f2"))
        .output(|| page(&[], "f2"))
        .build();
    let (seen, _) = drain_exited(&rule).await;
    assert_eq!(seen, vec![RESULT, "done", "later"]);
    assert!(rule.is_exhausted());
}

#[tokio::test(start_paused = true)]
async fn a_quiet_running_task_is_read_a_few_times_a_minute() {
    let rule = mock!(aws_sdk_cloudwatchlogs::Client::get_log_events)
        .sequence()
        .output(|| page(&["one"], "f1"))
        .output(|| page(&[], "f1"))
        .times(1000)
        .build();
    let mut follower = LogFollower::new(logs(&[&rule]), GROUP, STREAM, LogTiming::default());
    let (_tx, rx) = watch::channel(TaskPhase {
        started: true,
        exited_at: None,
        container_ran: false,
    });
    let on_line = |_: &LogLine| {};
    let quiet_minute = tokio::time::timeout(
        Duration::from_secs(60),
        follower.run(rx, true, &on_line, &|_| {}),
    );
    assert!(
        quiet_minute.await.is_err(),
        "still following a running task"
    );
    // Backing off to the 2 s ceiling: about 30 reads, not the 120 of a fixed 0.5 s.
    let calls = rule.num_calls();
    assert!(
        (25..=40).contains(&calls),
        "{calls} GetLogEvents calls in a quiet minute"
    );
}

// --- Following -----------------------------------------------------------------------

/// Follows the mocked task as the launcher does, with `ctrl_c` Ctrl-Cs already pressed:
/// what following saw, and what it printed.
async fn follow_mocked(
    ecs_rules: &[&Rule],
    log: &Rule,
    settings: &FollowSettings,
    ctrl_c: usize,
    stop_reason: &str,
) -> (Followed, Renderer) {
    let clients = clients(ecs(ecs_rules), logs(&[log]));
    let renderer = Renderer::capturing(OutputFormat::Human);
    let (tx, mut interrupts) = mpsc::unbounded_channel();
    for _ in 0..ctrl_c {
        tx.send(()).unwrap();
    }
    let followed = follow(
        &clients,
        &target(&clients),
        settings,
        &renderer,
        &mut interrupts,
        stop_reason,
    )
    .await
    .unwrap();
    (followed, renderer)
}

#[tokio::test(start_paused = true)]
async fn follow_ends_at_the_containers_exit_once_its_result_is_read() {
    // The container's exit code shows up right after its result line; the task itself
    // stays in DEACTIVATING (Fargate releasing it) for as long as anyone looks.
    let result_served = Arc::new(std::sync::Mutex::new(None::<Instant>));
    let exited = Arc::clone(&result_served);
    let status = mock!(aws_sdk_ecs::Client::describe_tasks)
        .sequence()
        .output(missing)
        .output(|| described("PROVISIONING", vec![admin(None)]))
        .output(move || match *exited.lock().unwrap() {
            Some(_) => described("DEACTIVATING", vec![admin(Some(3))]),
            None => described("RUNNING", vec![admin(None)]),
        })
        .repeatedly()
        .build();
    let served = Arc::clone(&result_served);
    let log = mock!(aws_sdk_cloudwatchlogs::Client::get_log_events)
        .sequence()
        .error(not_created)
        .output(|| {
            page(
                &[r#"{"event":"log","ts":"2026-01-02T03:04:05Z","level":"warn","msg":"early"}"#],
                "f1",
            )
        })
        .output(|| page(&[], "f1"))
        .times(20)
        .output(|| page(&["late plain line"], "f2"))
        .output(|| page(&[], "f2"))
        .times(3)
        .output(move || {
            *served.lock().unwrap() = Some(Instant::now());
            page(&[RESULT], "f3")
        })
        .output(|| page(&[], "f3"))
        .repeatedly()
        .build();
    let (followed, renderer) =
        follow_mocked(&[&status], &log, &FollowSettings::default(), 0, "stop").await;
    let ended = Instant::now();
    assert_eq!(followed.ending, Ending::Finished);
    let last = followed.last.unwrap();
    assert_eq!(last.last_status, "DEACTIVATING", "not waited for STOPPED");
    assert_eq!(TaskOutcome::decide(&last, "admin", None).exit_code, 3);
    assert!(followed.result.is_some());
    assert_eq!(
        stdout_lines(&renderer),
        vec![
            "2026-01-02T03:04:05.000Z  WARN early".to_string(),
            "late plain line".to_string(),
            "migrate finished with exit code 0".to_string(),
        ]
    );
    let statuses: Vec<String> = renderer
        .captured()
        .into_iter()
        .filter(|l| l.starts_with("stderr: "))
        .collect();
    for status in ["PROVISIONING", "RUNNING", "DEACTIVATING"] {
        assert!(
            statuses.iter().any(|l| l.ends_with(status)),
            "{status} not shown: {statuses:?}"
        );
    }
    let after_result = ended - result_served.lock().unwrap().unwrap();
    assert!(
        after_result < Duration::from_millis(600),
        "the result and the exit code end following at once: {after_result:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn with_wait_stopped_following_ends_at_stopped() {
    let status = mock!(aws_sdk_ecs::Client::describe_tasks)
        .sequence()
        .output(|| described("DEACTIVATING", vec![admin(Some(0))]))
        .times(4)
        .output(|| described("DEPROVISIONING", vec![admin(Some(0))]))
        .times(4)
        .output(|| described("STOPPED", vec![admin(Some(0))]))
        .repeatedly()
        .build();
    let log = mock!(aws_sdk_cloudwatchlogs::Client::get_log_events)
        .sequence()
        .output(|| page(&[RESULT], "f1"))
        .output(|| page(&[], "f1"))
        .repeatedly()
        .build();
    let settings = FollowSettings {
        wait_stopped: true,
        ..FollowSettings::default()
    };
    let (followed, _) = follow_mocked(&[&status], &log, &settings, 0, "x").await;
    assert!(followed.last.unwrap().is_stopped());
    assert_eq!(status.num_calls(), 9);
}

#[tokio::test(start_paused = true)]
async fn follow_reads_a_plain_stream_for_the_quiet_window_after_the_exit() {
    // The exit code is visible from the first poll; the awslogs driver's last batches
    // arrive after it.
    let status = mock!(aws_sdk_ecs::Client::describe_tasks)
        .sequence()
        .output(|| described("DEACTIVATING", vec![admin(Some(0))]))
        .repeatedly()
        .build();
    let log = mock!(aws_sdk_cloudwatchlogs::Client::get_log_events)
        .sequence()
        .error(not_created)
        .times(3)
        .output(|| page(&["first"], "f1"))
        .output(|| page(&[], "f1"))
        .times(4)
        .output(|| page(&["second"], "f2"))
        .output(|| page(&[], "f2"))
        .repeatedly()
        .build();
    let start = Instant::now();
    let (followed, renderer) =
        follow_mocked(&[&status], &log, &FollowSettings::default(), 0, "stop").await;
    assert_eq!(followed.ending, Ending::Finished);
    assert_eq!(followed.result, None);
    assert_eq!(stdout_lines(&renderer), vec!["first", "second"]);
    let waited = start.elapsed();
    let window = LogTiming::default().quiet_after_exit;
    assert!(
        waited > window,
        "lines may arrive for the whole window after the exit: {waited:?}"
    );
    assert!(
        waited < window + Duration::from_millis(700),
        "and the stream is read to its end just after it: {waited:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_task_that_never_ran_ends_without_waiting_for_logs() {
    let status = mock!(aws_sdk_ecs::Client::describe_tasks).then_output(|| {
        DescribeTasksOutput::builder()
            .tasks(
                Task::builder()
                    .task_arn(ARN)
                    .last_status("STOPPED")
                    .stop_code(aws_sdk_ecs::types::TaskStopCode::TaskFailedToStart)
                    .stopped_reason("ResourceInitializationError: unable to pull secrets or registry auth: unable to retrieve secret from asm")
                    .containers(admin(None))
                    .build(),
            )
            .build()
    });
    let log = mock!(aws_sdk_cloudwatchlogs::Client::get_log_events)
        .sequence()
        .error(not_created)
        .repeatedly()
        .build();
    let start = Instant::now();
    let (followed, _) =
        follow_mocked(&[&status], &log, &FollowSettings::default(), 0, "stop").await;
    assert!(start.elapsed() < Duration::from_secs(1));
    let outcome = TaskOutcome::decide(&followed.last.unwrap(), "admin", None);
    assert_eq!(
        outcome.exit_code, 125,
        "no exit code: the container never ran"
    );
    assert!(outcome.hints.iter().any(|h| h.contains("execution role")));
}

#[tokio::test(start_paused = true)]
async fn ctrl_c_stops_the_task_and_keeps_following_a_second_leaves() {
    let status = mock!(aws_sdk_ecs::Client::describe_tasks)
        .sequence()
        .output(|| described("RUNNING", vec![admin(None)]))
        .times(5)
        .output(|| described("STOPPING", vec![admin(Some(143))]))
        .repeatedly()
        .build();
    let stop = mock!(aws_sdk_ecs::Client::stop_task)
        .match_requests(|r| {
            r.reason() == Some("Interrupted by alice@laptop via run-admin-task")
                && r.task() == Some(ARN)
        })
        .then_output(|| {
            StopTaskOutput::builder()
                .task(task("STOPPING", vec![admin(None)]))
                .build()
        });
    let log = mock!(aws_sdk_cloudwatchlogs::Client::get_log_events)
        .sequence()
        .output(|| page(&["working"], "f1"))
        .output(|| page(&[RESULT], "f2"))
        .output(|| page(&[], "f2"))
        .repeatedly()
        .build();
    let (followed, renderer) = follow_mocked(
        &[&status, &stop],
        &log,
        &FollowSettings::default(),
        1,
        "Interrupted by alice@laptop via run-admin-task",
    )
    .await;
    assert_eq!(stop.num_calls(), 1);
    assert_eq!(followed.ending, Ending::Interrupted);
    assert_eq!(
        followed.last.unwrap().exit_code("admin"),
        Some(143),
        "followed until the container exited"
    );

    let status = mock!(aws_sdk_ecs::Client::describe_tasks)
        .sequence()
        .output(|| described("RUNNING", vec![admin(None)]))
        .repeatedly()
        .build();
    let stop =
        mock!(aws_sdk_ecs::Client::stop_task).then_output(|| StopTaskOutput::builder().build());
    let log = mock!(aws_sdk_cloudwatchlogs::Client::get_log_events)
        .sequence()
        .output(|| page(&[], "f1"))
        .repeatedly()
        .build();
    let clients = self::clients(ecs(&[&status, &stop]), logs(&[&log]));
    let (tx, mut interrupts) = mpsc::unbounded_channel();
    tx.send(()).unwrap();
    tx.send(()).unwrap();
    let followed = follow(
        &clients,
        &target(&clients),
        &FollowSettings::default(),
        &renderer,
        &mut interrupts,
        "x",
    )
    .await
    .unwrap();
    assert_eq!(followed.ending, Ending::Abandoned);
    assert!(
        renderer
            .captured()
            .iter()
            .any(|l| l.contains("run-admin-task logs 0123456789abcdef --follow"))
    );
}

#[tokio::test(start_paused = true)]
async fn timeout_leaves_the_task_running_unless_asked_to_stop_it() {
    for stop_on_timeout in [false, true] {
        let status = mock!(aws_sdk_ecs::Client::describe_tasks)
            .sequence()
            .output(|| described("RUNNING", vec![admin(None)]))
            .repeatedly()
            .build();
        let stop =
            mock!(aws_sdk_ecs::Client::stop_task).then_output(|| StopTaskOutput::builder().build());
        let log = mock!(aws_sdk_cloudwatchlogs::Client::get_log_events)
            .sequence()
            .output(|| page(&[], "f1"))
            .repeatedly()
            .build();
        let settings = FollowSettings {
            timeout: Some(Duration::from_secs(90)),
            stop_on_timeout,
            ..FollowSettings::default()
        };
        let start = Instant::now();
        let (followed, _) = follow_mocked(&[&status, &stop], &log, &settings, 0, "x").await;
        assert_eq!(
            followed.ending,
            Ending::TimedOut {
                stop_requested: stop_on_timeout
            }
        );
        assert_eq!(stop.num_calls(), usize::from(stop_on_timeout));
        // Stopping waits, bounded, for the container's own account before leaving.
        let expected = Duration::from_secs(90)
            + if stop_on_timeout {
                settings.stop_wait
            } else {
                Duration::ZERO
            };
        let waited = start.elapsed();
        assert!(
            waited >= expected && waited < expected + Duration::from_secs(1),
            "{waited:?}"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn a_timeout_that_stops_the_task_reads_the_companions_account_of_the_database() {
    let stopped = r#"{"event":"result","ts":"2026-01-02T03:04:05Z","command":"migrate","exit_code":143,"summary":{"error":"interrupted by SIGTERM: migration 2 was cancelled and rolled back","stopped":{"by":"SIGTERM","cancelled_sessions":1,"terminated_sessions":0,"database_released":true}}}"#;
    let stop_sent = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (seen_by_status, seen_by_logs, sent) = (
        Arc::clone(&stop_sent),
        Arc::clone(&stop_sent),
        Arc::clone(&stop_sent),
    );
    let status = mock!(aws_sdk_ecs::Client::describe_tasks)
        .sequence()
        .output(move || {
            if seen_by_status.load(std::sync::atomic::Ordering::SeqCst) {
                described("DEACTIVATING", vec![admin(Some(143))])
            } else {
                described("RUNNING", vec![admin(None)])
            }
        })
        .repeatedly()
        .build();
    let stop = mock!(aws_sdk_ecs::Client::stop_task).then_output(move || {
        sent.store(true, std::sync::atomic::Ordering::SeqCst);
        StopTaskOutput::builder().build()
    });
    let log = mock!(aws_sdk_cloudwatchlogs::Client::get_log_events)
        .sequence()
        .output(move || {
            if seen_by_logs.load(std::sync::atomic::Ordering::SeqCst) {
                page(&[stopped], "f2")
            } else {
                page(&[], "f1")
            }
        })
        .repeatedly()
        .build();
    let settings = FollowSettings {
        timeout: Some(Duration::from_secs(60)),
        stop_on_timeout: true,
        ..FollowSettings::default()
    };
    let (followed, _) = follow_mocked(&[&status, &stop], &log, &settings, 0, "x").await;
    assert_eq!(
        followed.ending,
        Ending::TimedOut {
            stop_requested: true
        }
    );
    let stop = followed
        .result
        .and_then(|r| r.stopped)
        .expect("the companion's account was read after the stop");
    assert!(stop.database_released);
    assert_eq!(stop.cancelled_sessions, 1);
}

#[tokio::test(start_paused = true)]
async fn json_mode_keeps_log_lines_off_stdout() {
    let status = mock!(aws_sdk_ecs::Client::describe_tasks)
        .sequence()
        .output(|| described("STOPPED", vec![admin(Some(0))]))
        .repeatedly()
        .build();
    let log = mock!(aws_sdk_cloudwatchlogs::Client::get_log_events)
        .sequence()
        .output(|| page(&["hello", RESULT], "f1"))
        .output(|| page(&[], "f1"))
        .repeatedly()
        .build();
    let clients = clients(ecs(&[&status]), logs(&[&log]));
    let renderer = Renderer::capturing(OutputFormat::Json);
    let (_tx, mut interrupts) = mpsc::unbounded_channel();
    follow(
        &clients,
        &target(&clients),
        &FollowSettings::default(),
        &renderer,
        &mut interrupts,
        "x",
    )
    .await
    .unwrap();
    assert!(stdout_lines(&renderer).is_empty());
    assert!(renderer.captured().contains(&"stderr: hello".to_string()));
}

#[tokio::test(start_paused = true)]
async fn after_one_ctrl_c_the_wait_for_the_container_is_bounded() {
    let status = mock!(aws_sdk_ecs::Client::describe_tasks)
        .sequence()
        .output(|| described("RUNNING", vec![admin(None)]))
        .repeatedly()
        .build();
    let stop =
        mock!(aws_sdk_ecs::Client::stop_task).then_output(|| StopTaskOutput::builder().build());
    let log = mock!(aws_sdk_cloudwatchlogs::Client::get_log_events)
        .sequence()
        .output(|| page(&[], "f1"))
        .repeatedly()
        .build();
    let settings = FollowSettings::default();
    let start = Instant::now();
    let (followed, renderer) = follow_mocked(&[&status, &stop], &log, &settings, 1, "x").await;
    let waited = start.elapsed();
    assert_eq!(followed.ending, Ending::Abandoned);
    assert_eq!(stop.num_calls(), 1);
    assert!(
        waited >= settings.stop_wait && waited < settings.stop_wait + Duration::from_secs(1),
        "{waited:?}"
    );
    assert!(
        renderer
            .captured()
            .iter()
            .any(|l| l.contains("asked to stop") && l.contains("run-admin-task stop")),
        "{:?}",
        renderer.captured()
    );
}

// --- Timeouts and idempotency ---------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn a_silent_endpoint_ends_in_the_call_timeout_naming_service_endpoint_and_wait() {
    use aws_sdk_ecs::config::{Credentials, SharedCredentialsProvider};
    use everruns_admin::seam::shared_config;
    use everruns_admin::seam::{Purpose, TaskDefinitionInfo};

    let silent = crate::common::emulator::SilentEndpoint::start();
    let mut config = LaunchConfig::resolve(&GlobalOptions::default(), &|_: &str| None).unwrap();
    config.endpoint_url = Some(silent.url.clone());
    config.region = Some("eu-west-1".into());
    let shared = shared_config(&config)
        .await
        .into_builder()
        .credentials_provider(SharedCredentialsProvider::new(Credentials::new(
            "AKID", "secret", None, None, "test",
        )))
        .build();
    let clients = Clients::from_shared(&shared).unwrap();
    let start = Instant::now();
    let err = TaskDefinitionInfo::describe(&clients, "everruns-admin", Purpose::Launch)
        .await
        .unwrap_err();
    let waited = start.elapsed();
    let call = config.api_timeouts.call;
    assert!(
        waited >= call && waited < call + Duration::from_secs(1),
        "{waited:?}"
    );
    assert_eq!(err.exit_code(), 125, "nothing was launched");
    let text = err.to_string();
    assert!(
        text.contains(&format!(
            "ECS DescribeTaskDefinition got no answer from {} within 20s (8s per attempt)",
            silent.url
        )),
        "{text}"
    );
}

fn github_step(attempt: &str) -> impl Fn(&str) -> Option<String> + use<> {
    let attempt = attempt.to_string();
    move |name: &str| {
        Some(match name {
            "GITHUB_ACTIONS" => "true".to_string(),
            "GITHUB_REPOSITORY" => "everruns/everruns".to_string(),
            "GITHUB_RUN_ID" => "9912345".to_string(),
            "GITHUB_RUN_ATTEMPT" => attempt.clone(),
            "GITHUB_JOB" => "deploy".to_string(),
            "GITHUB_ACTION" => "migrate".to_string(),
            _ => return None,
        })
    }
}

fn ci_plan(attempt: &str, argv: &[&str], key: Option<&str>) -> RunTaskPlan {
    let options = GlobalOptions {
        idempotency_key: key.map(str::to_string),
        subnets: vec!["subnet-1".into()],
        ..GlobalOptions::default()
    };
    let config = LaunchConfig::resolve(&options, &github_step(attempt)).unwrap();
    let job = Job {
        argv: argv.iter().map(|a| a.to_string()).collect(),
        mutating: true,
    };
    let operator = Operator {
        who: "github:octocat".into(),
        host: "runner".into(),
    };
    RunTaskPlan::new(&config, "everruns-admin:3", &job, &operator).unwrap()
}

#[tokio::test]
async fn the_client_token_is_derived_from_the_ci_step_and_the_command() {
    let first = ci_plan("1", &["migrate"], None);
    let token = first.client_token.clone();
    assert!(token.starts_with("gha-") && token.len() <= 64, "{token}");
    assert_eq!(
        ci_plan("1", &["migrate"], None).client_token,
        token,
        "a rerun of the step"
    );
    assert_ne!(
        ci_plan("2", &["migrate"], None).client_token,
        token,
        "a new run attempt"
    );
    assert_ne!(
        ci_plan("1", &["migrate-info"], None).client_token,
        token,
        "another command"
    );
    assert_ne!(
        ci_plan("1", &["migrate", "x"], None).client_token,
        ci_plan("1", &["migratex"], None).client_token
    );
    assert_eq!(
        ci_plan("1", &["migrate"], Some("release-42")).client_token,
        "release-42"
    );
    assert!(
        first
            .tags
            .contains(&("everruns-admin:client-token".into(), token.clone())),
        "the guard recognises the rerun's own task by its tag"
    );

    let expected = token.clone();
    let rule = mock!(aws_sdk_ecs::Client::run_task)
        .match_requests(move |req| req.client_token() == Some(expected.as_str()))
        .then_output(|| {
            RunTaskOutput::builder()
                .tasks(task("PROVISIONING", vec![admin(None)]))
                .build()
        });
    first.send(&ecs(&[&rule])).await.unwrap();
    assert_eq!(rule.num_calls(), 1);

    let bad = GlobalOptions {
        idempotency_key: Some("has space".into()),
        ..GlobalOptions::default()
    };
    let err = LaunchConfig::resolve(&bad, &|_: &str| None).unwrap_err();
    assert_eq!(err.exit_code(), 2);
    assert!(err.to_string().contains("--idempotency-key"), "{err}");
}

#[tokio::test]
async fn an_unknown_cluster_is_named_with_its_region() {
    use aws_sdk_ecs::operation::run_task::RunTaskError;
    let rule = mock!(aws_sdk_ecs::Client::run_task).then_error(|| {
        RunTaskError::generic(
            ErrorMetadata::builder()
                .code("ClusterNotFoundException")
                .message("Cluster not found.")
                .build(),
        )
    });
    let client = ecs(&[&rule]);
    let region = client.config().region().unwrap().to_string();
    let err = plan().send(&client).await.unwrap_err();
    assert_eq!(err.exit_code(), 125);
    let text = err.to_string();
    assert!(
        text.contains("\"everruns\"") && text.contains(&format!("region {region}")),
        "{text}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_task_stuck_before_running_gets_one_warning_with_the_likely_causes() {
    let status = mock!(aws_sdk_ecs::Client::describe_tasks)
        .sequence()
        .output(|| described("PROVISIONING", vec![admin(None)]))
        .repeatedly()
        .build();
    let log = mock!(aws_sdk_cloudwatchlogs::Client::get_log_events)
        .sequence()
        .error(not_created)
        .repeatedly()
        .build();
    let settings = FollowSettings {
        slow_start: Duration::from_secs(10),
        timeout: Some(Duration::from_secs(40)),
        ..FollowSettings::default()
    };
    let (followed, renderer) = follow_mocked(&[&status], &log, &settings, 0, "x").await;
    assert_eq!(
        followed.ending,
        Ending::TimedOut {
            stop_requested: false
        }
    );
    let warnings: Vec<String> = renderer
        .captured()
        .into_iter()
        .filter(|l| l.contains("likely causes"))
        .collect();
    assert_eq!(warnings.len(), 1, "{:?}", renderer.captured());
    for cause in ["capacity", "image pull", "secrets"] {
        assert!(warnings[0].contains(cause), "{}", warnings[0]);
    }
}

#[test]
fn the_ci_token_covers_where_the_job_runs() {
    let token = |cluster: &str| {
        let options = GlobalOptions {
            cluster: Some(cluster.into()),
            subnets: vec!["subnet-1".into()],
            ..GlobalOptions::default()
        };
        let config = LaunchConfig::resolve(&options, &github_step("1")).unwrap();
        let job = Job {
            argv: vec!["migrate".into()],
            mutating: true,
        };
        let operator = Operator {
            who: "github:octocat".into(),
            host: "runner".into(),
        };
        RunTaskPlan::new(&config, "everruns-admin:3", &job, &operator)
            .unwrap()
            .client_token
    };
    assert_eq!(token("staging"), token("staging"));
    assert_ne!(
        token("staging"),
        token("production"),
        "a matrix over environments"
    );
}

#[tokio::test(start_paused = true)]
async fn a_result_while_the_container_still_runs_is_not_the_end() {
    // `run -- sh -c 'everruns-admin migrate-info; everruns-admin migrate'`: two results.
    const SECOND: &str = r#"{"event":"result","ts":"2026-01-02T03:04:06Z","command":"migrate","exit_code":0,"summary":{}}"#;
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let exited = Arc::clone(&done);
    let status = mock!(aws_sdk_ecs::Client::describe_tasks)
        .sequence()
        .output(move || {
            if exited.load(std::sync::atomic::Ordering::SeqCst) {
                described("DEACTIVATING", vec![admin(Some(0))])
            } else {
                described("RUNNING", vec![admin(None)])
            }
        })
        .repeatedly()
        .build();
    let served = Arc::clone(&done);
    let log = mock!(aws_sdk_cloudwatchlogs::Client::get_log_events)
        .sequence()
        .output(|| page(&[RESULT], "f1"))
        .output(|| page(&[], "f1"))
        .times(3)
        .output(|| page(&["second part"], "f2"))
        .output(move || {
            served.store(true, std::sync::atomic::Ordering::SeqCst);
            page(&[SECOND], "f3")
        })
        .output(|| page(&[], "f3"))
        .repeatedly()
        .build();
    let (followed, renderer) =
        follow_mocked(&[&status], &log, &FollowSettings::default(), 0, "x").await;
    assert!(
        stdout_lines(&renderer).contains(&"second part".to_string()),
        "{:?}",
        renderer.captured()
    );
    match followed.result {
        Some(result) => assert_eq!(result.command, "migrate"),
        other => panic!("the last result counts: {other:?}"),
    }
}

#[tokio::test]
async fn describe_services_failures_name_the_service_or_the_cluster() {
    use aws_sdk_ecs::operation::describe_services::{
        DescribeServicesError, DescribeServicesOutput,
    };
    use aws_sdk_ecs::types::Service;
    use everruns_admin::seam::ServiceSettings;

    let missing = mock!(aws_sdk_ecs::Client::describe_services).then_output(|| {
        DescribeServicesOutput::builder()
            .failures(
                Failure::builder()
                    .arn("arn:aws:ecs:us-east-1:1:service/api")
                    .reason("MISSING")
                    .build(),
            )
            .build()
    });
    let with_missing = clients(ecs(&[&missing]), logs(&[]));
    let err = ServiceSettings::describe(&with_missing, "everruns", "api")
        .await
        .unwrap_err();
    assert_eq!(err.exit_code(), 2);
    assert!(
        err.to_string()
            .contains("no active ECS service \"api\" in cluster everruns"),
        "{err}"
    );

    let deleted = mock!(aws_sdk_ecs::Client::describe_services).then_output(|| {
        DescribeServicesOutput::builder()
            .services(
                Service::builder()
                    .service_name("api")
                    .status("INACTIVE")
                    .build(),
            )
            .build()
    });
    let clients_deleted = clients(ecs(&[&deleted]), logs(&[]));
    let err = ServiceSettings::describe(&clients_deleted, "everruns", "api")
        .await
        .unwrap_err();
    assert_eq!(err.exit_code(), 2, "a deleted service is no service: {err}");

    let no_cluster = mock!(aws_sdk_ecs::Client::describe_services).then_error(|| {
        DescribeServicesError::generic(
            ErrorMetadata::builder()
                .code("ClusterNotFoundException")
                .message("Cluster not found.")
                .build(),
        )
    });
    let without_cluster = clients(ecs(&[&no_cluster]), logs(&[]));
    let err = ServiceSettings::describe(&without_cluster, "everruns", "api")
        .await
        .unwrap_err();
    assert_eq!(err.exit_code(), 125);
    assert!(
        err.to_string().contains("no ECS cluster \"everruns\""),
        "{err}"
    );

    let denied = mock!(aws_sdk_ecs::Client::describe_services).then_error(|| {
        DescribeServicesError::generic(
            ErrorMetadata::builder()
                .code("AccessDeniedException")
                .message("not authorized to perform: ecs:DescribeServices")
                .build(),
        )
    });
    let denied = clients(ecs(&[&denied]), logs(&[]));
    let err = ServiceSettings::describe(&denied, "everruns", "api")
        .await
        .unwrap_err();
    assert_eq!(err.exit_code(), 125);
    assert!(
        err.to_string()
            .contains("ecs:DescribeServices is granted by the operator policy"),
        "{err}"
    );
}
