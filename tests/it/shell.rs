//! `run-admin-task shell`: the ECS Exec sequence against mocked ECS, with a stand-in
//! `session-manager-plugin` that records its arguments and environment, and the refusals
//! that come before anything is launched.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use aws_sdk_ecs::operation::describe_task_definition::DescribeTaskDefinitionOutput;
use aws_sdk_ecs::operation::describe_tasks::DescribeTasksOutput;
use aws_sdk_ecs::operation::execute_command::ExecuteCommandOutput;
use aws_sdk_ecs::operation::run_task::RunTaskOutput;
use aws_sdk_ecs::operation::stop_task::StopTaskOutput;
use aws_sdk_ecs::types::{
    Container, ContainerDefinition, LinuxParameters, ManagedAgent, ManagedAgentName, Session, Task,
    TaskDefinition,
};
use aws_smithy_mocks::{Rule, RuleMode, mock, mock_client};
use everruns_admin::seam::Clients;
use everruns_admin::seam::Context;
use everruns_admin::seam::LaunchConfig;
use everruns_admin::seam::Operator;
use everruns_admin::seam::Renderer;
use everruns_admin::seam::{ExecTiming, find_plugin};
use everruns_admin::seam::{GlobalOptions, OutputFormat};
use everruns_admin::seam::{ShellArgs, session};
use tokio::sync::mpsc;

const TASK: &str = "arn:aws:ecs:eu-west-1:123456789012:task/everruns/0123456789abcdef";
const TD: &str = "arn:aws:ecs:eu-west-1:123456789012:task-definition/everruns-admin:7";
const RUNTIME: &str = "0123456789abcdef-1234567890";
const TOKEN: &str = "tok-AAAA-secret-session-token";

/// A stand-in plugin: writes each argument, then the environment, to `record`.
fn stand_in_plugin(dir: &Path, record: &Path) -> PathBuf {
    let path = dir.join("session-manager-plugin");
    let script = format!(
        "#!/bin/sh\nfor a in \"$@\"; do printf '%s\\n' \"$a\"; done > '{record}'\nprintf '%s\\n' '--env--' >> '{record}'\nenv >> '{record}'\nexit 0\n",
        record = record.display()
    );
    std::fs::write(&path, script).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

fn context(profile: Option<&str>) -> Context {
    let mut config = LaunchConfig::resolve(&GlobalOptions::default(), &|_: &str| None).unwrap();
    config.subnets = vec!["subnet-1".into()];
    config.region = Some("eu-west-1".into());
    config.profile = profile.map(str::to_string);
    Context {
        options: GlobalOptions::default(),
        config,
        operator: Operator {
            who: "alice".into(),
            host: "laptop".into(),
        },
        renderer: Renderer::capturing(OutputFormat::Human),
    }
}

fn clients(rules: &[&Rule]) -> Clients {
    let ecs = mock_client!(aws_sdk_ecs, RuleMode::MatchAny, rules);
    let logs = mock_client!(aws_sdk_cloudwatchlogs, RuleMode::MatchAny, &[]);
    let secrets = mock_client!(aws_sdk_secretsmanager, RuleMode::MatchAny, &[]);
    let sts = mock_client!(aws_sdk_sts, RuleMode::MatchAny, &[]);
    Clients::from_parts(
        ecs,
        logs,
        secrets,
        sts,
        crate::common::uncalled_ec2(),
        crate::common::uncalled_ecr(),
        "eu-west-1",
    )
}

fn timing() -> ExecTiming {
    ExecTiming {
        interval: Duration::from_millis(1),
        ready_limit: Duration::from_secs(5),
        stop_limit: Duration::from_secs(5),
    }
}

fn definition(task_role: bool) -> Rule {
    mock!(aws_sdk_ecs::Client::describe_task_definition).then_output(move || {
        let mut def = TaskDefinition::builder()
            .task_definition_arn(TD)
            .container_definitions(
                ContainerDefinition::builder()
                    .name("admin")
                    .linux_parameters(
                        LinuxParameters::builder()
                            .init_process_enabled(true)
                            .build(),
                    )
                    .build(),
            );
        if task_role {
            def = def.task_role_arn("arn:aws:iam::123456789012:role/everruns-admin-task");
        }
        DescribeTaskDefinitionOutput::builder()
            .task_definition(def.build())
            .build()
    })
}

fn task(status: &str, container: Container) -> Task {
    Task::builder()
        .task_arn(TASK)
        .last_status(status)
        .enable_execute_command(true)
        .containers(container)
        .build()
}

fn admin(status: &str, runtime: bool, agent: Option<&str>) -> Container {
    let mut c = Container::builder().name("admin").last_status(status);
    if runtime {
        c = c.runtime_id(RUNTIME);
    }
    if let Some(agent) = agent {
        c = c.managed_agents(
            ManagedAgent::builder()
                .name(ManagedAgentName::ExecuteCommandAgent)
                .last_status(agent)
                .build(),
        );
    }
    c.build()
}

fn described(t: Task) -> DescribeTasksOutput {
    DescribeTasksOutput::builder().tasks(t).build()
}

fn read_record(path: &Path) -> (Vec<String>, String) {
    let text = std::fs::read_to_string(path).expect("the plugin ran");
    let (args, env) = text.split_once("--env--\n").unwrap();
    (args.lines().map(str::to_string).collect(), env.to_string())
}

#[tokio::test]
async fn starts_waits_executes_hands_over_and_stops() {
    let dir = tempfile::tempdir().unwrap();
    let record = dir.path().join("record");
    stand_in_plugin(dir.path(), &record);
    let path = std::env::join_paths([dir.path().to_path_buf(), PathBuf::from("/usr/bin")]).unwrap();
    let plugin = find_plugin(Some(&path)).unwrap();

    let run = mock!(aws_sdk_ecs::Client::run_task)
        .match_requests(|req| {
            let o = &req.overrides().unwrap().container_overrides()[0];
            req.enable_execute_command() == Some(true)
                && o.name() == Some("admin")
                && o.command() == ["shell"]
                && req.task_definition() == Some(TD)
        })
        .then_output(|| {
            RunTaskOutput::builder()
                .tasks(task("PROVISIONING", admin("PENDING", false, None)))
                .build()
        });
    let describe = mock!(aws_sdk_ecs::Client::describe_tasks)
        .sequence()
        .output(|| described(task("PENDING", admin("PENDING", false, None))))
        .output(|| described(task("RUNNING", admin("RUNNING", false, None))))
        .output(|| described(task("RUNNING", admin("RUNNING", true, Some("PENDING")))))
        .output(|| described(task("RUNNING", admin("RUNNING", true, Some("RUNNING")))))
        .output(|| {
            described(
                Task::builder()
                    .task_arn(TASK)
                    .last_status("STOPPED")
                    .stop_code(aws_sdk_ecs::types::TaskStopCode::UserInitiated)
                    .stopped_reason("Session ended")
                    .containers(
                        Container::builder()
                            .name("admin")
                            .last_status("STOPPED")
                            .exit_code(0)
                            .build(),
                    )
                    .build(),
            )
        })
        .build();
    let exec = mock!(aws_sdk_ecs::Client::execute_command)
        .match_requests(|req| {
            req.interactive() == Some(true)
                && req.command() == Some("/bin/bash")
                && req.container() == Some("admin")
                && req.task() == Some(TASK)
                && req.cluster() == Some("everruns")
        })
        .then_output(|| {
            ExecuteCommandOutput::builder()
                .session(
                    Session::builder()
                        .session_id("ecs-execute-command-0abc")
                        .stream_url("wss://ssmmessages.eu-west-1.amazonaws.com/v1/data-channel/x")
                        .token_value(TOKEN)
                        .build(),
                )
                .build()
        });
    let stop = mock!(aws_sdk_ecs::Client::stop_task)
        .match_requests(|req| req.task() == Some(TASK))
        .then_output(|| StopTaskOutput::builder().build());
    let def = definition(true);
    let clients = clients(&[&def, &run, &describe, &exec, &stop]);
    let context = context(Some("prod-admin"));
    let (_tx, mut rx) = mpsc::unbounded_channel();

    let code = session(
        &context,
        &clients,
        &ShellArgs::default(),
        &plugin,
        &timing(),
        &mut rx,
    )
    .await
    .unwrap();
    assert_eq!(code, 0);
    assert_eq!(run.num_calls(), 1);
    assert_eq!(exec.num_calls(), 1);
    assert_eq!(stop.num_calls(), 1, "the task is stopped after the session");

    let (argv, env) = read_record(&record);
    assert_eq!(argv.len(), 6, "{argv:?}");
    let session: serde_json::Value = serde_json::from_str(&argv[0]).unwrap();
    assert_eq!(session["sessionId"], "ecs-execute-command-0abc");
    assert_eq!(session["tokenValue"], TOKEN);
    assert!(session["streamUrl"].as_str().unwrap().starts_with("wss://"));
    assert_eq!(argv[1], "eu-west-1");
    assert_eq!(argv[2], "StartSession");
    assert_eq!(argv[3], "prod-admin");
    assert_eq!(
        argv[4],
        format!(r#"{{"Target":"ecs:everruns_0123456789abcdef_{RUNTIME}"}}"#)
    );
    assert_eq!(argv[5], "https://ecs.eu-west-1.amazonaws.com");
    assert!(!env.contains(TOKEN), "the token is not in the environment");

    let shown = context.renderer.captured().join("\n");
    assert!(
        !shown.contains(TOKEN),
        "the launcher printed the token:\n{shown}"
    );
    assert!(shown.contains("stopped"), "{shown}");
}

#[tokio::test]
async fn attach_keeps_the_task_and_passes_an_empty_profile() {
    let dir = tempfile::tempdir().unwrap();
    let record = dir.path().join("record");
    let plugin = stand_in_plugin(dir.path(), &record);
    let ready = || described(task("RUNNING", admin("RUNNING", true, Some("RUNNING"))));
    let describe = mock!(aws_sdk_ecs::Client::describe_tasks)
        .sequence()
        .output(ready)
        .repeatedly()
        .build();
    let exec = mock!(aws_sdk_ecs::Client::execute_command)
        .match_requests(|req| {
            let command = req.command().unwrap_or_default();
            command.starts_with("/bin/sh -c ") && command.contains(" 'psql' ")
        })
        .then_output(|| {
            ExecuteCommandOutput::builder()
                .session(
                    Session::builder()
                        .session_id("s")
                        .stream_url("wss://x")
                        .token_value(TOKEN)
                        .build(),
                )
                .build()
        });
    let stop =
        mock!(aws_sdk_ecs::Client::stop_task).then_output(|| StopTaskOutput::builder().build());
    let clients = clients(&[&describe, &exec, &stop]);
    let context = context(None);
    let (_tx, mut rx) = mpsc::unbounded_channel();
    let args = ShellArgs {
        task: Some("0123456789abcdef".into()),
        command: Some("psql".into()),
        keep: false,
    };
    let code = session(&context, &clients, &args, &plugin, &timing(), &mut rx)
        .await
        .unwrap();
    assert_eq!(exec.num_calls(), 1, "psql, wrapped to report its status");
    assert_eq!(code, 123, "the plugin ended without psql's status");
    assert_eq!(stop.num_calls(), 0, "an attached task is not ours to stop");
    let (argv, _) = read_record(&record);
    assert_eq!(argv[3], "", "no profile is an empty argument");
    let shown = context.renderer.captured().join("\n");
    assert!(shown.contains("shell --task 0123456789abcdef"), "{shown}");
}

#[tokio::test]
async fn a_task_definition_without_task_role_is_refused_before_run_task() {
    let dir = tempfile::tempdir().unwrap();
    let plugin = stand_in_plugin(dir.path(), &dir.path().join("record"));
    let def = definition(false);
    let run = mock!(aws_sdk_ecs::Client::run_task).then_output(|| RunTaskOutput::builder().build());
    let clients = clients(&[&def, &run]);
    let context = context(None);
    let (_tx, mut rx) = mpsc::unbounded_channel();
    let err = session(
        &context,
        &clients,
        &ShellArgs::default(),
        &plugin,
        &timing(),
        &mut rx,
    )
    .await
    .unwrap_err();
    assert_eq!(err.exit_code(), 2);
    assert!(err.to_string().contains("taskRoleArn"), "{err}");
    assert_eq!(run.num_calls(), 0);
}

#[test]
fn a_missing_plugin_is_reported_before_any_aws_call() {
    let empty = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_run-admin-task"))
        .env_clear()
        .env("PATH", empty.path())
        .env("HOME", empty.path())
        .env("AWS_REGION", "eu-west-1")
        .env("ECS_SUBNETS", "subnet-1")
        // Nothing listens here: any AWS call would fail differently, or hang.
        .args(["--endpoint-url", "http://127.0.0.1:9", "shell"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("session-manager-plugin")
            && stderr.contains("Install the Session Manager plugin"),
        "{stderr}"
    );
    assert!(started.elapsed() < Duration::from_secs(10));
}
