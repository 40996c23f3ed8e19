//! The three IAM policies of `task-definitions/iam/` (operator, deployer, key-admin)
//! against what each launcher command really asks AWS: every command is run against
//! the emulator, which records the IAM request context of each call (action, resource
//! ARN, condition keys); the policies, filled with the emulator's real values, are then
//! evaluated on those requests (`common::iam`). A command must be allowed by the
//! policies the README's permissions table names for it and refused by each other one,
//! and a policy may grant no action the table does not list.

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::process::ExitStatusExt;
use std::process::{ExitStatus, Output};

use everruns_admin::seam::{GRANTS, Policy};
use serde_json::Value;

use crate::common::aws_calls::{aws_calls, rust_files};
use crate::common::emulator::{Emulator, HARNESS, path_with_plugin, stack};
use crate::common::iam::{PolicyDocument, Request, allowed_by};
use crate::common::{both_streams, describe};

const README: &str = include_str!("../../README.md");
const HEADING: &str = "### Permissions";
const ACCOUNT: &str = "123456789012";
const EXECUTION_ROLE: &str = "arn:aws:iam::123456789012:role/everruns-admin-execution";
const TASK_ROLE: &str = "arn:aws:iam::123456789012:role/everruns-admin-task";

/// One row of the README's permissions table: commands, and the actions each policy
/// they need grants them (a row of several policies says which action is whose:
/// `operator: ...; key-admin: ...`).
#[derive(Debug)]
struct Row {
    commands: Vec<String>,
    policies: Vec<String>,
    grants: BTreeMap<String, BTreeSet<String>>,
}

impl Row {
    fn actions(&self) -> BTreeSet<&String> {
        self.grants.values().flatten().collect()
    }
}

/// The backticked words of a table cell.
fn quoted(cell: &str) -> Vec<String> {
    cell.split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_owned)
        .collect()
}

/// The IAM actions (`service:Action`) quoted in a table cell.
fn actions_in(cell: &str) -> BTreeSet<String> {
    quoted(cell)
        .into_iter()
        .filter(|w| {
            w.split_once(':').is_some_and(|(service, action)| {
                service
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
                    && action.starts_with(|c: char| c.is_ascii_uppercase())
            })
        })
        .collect()
}

fn readme_rows() -> Vec<Row> {
    let section = README
        .split_once(HEADING)
        .unwrap_or_else(|| panic!("README.md has no {HEADING:?} section"))
        .1;
    let rows: Vec<Row> = section
        .lines()
        .skip_while(|l| !l.starts_with('|'))
        .take_while(|l| l.starts_with('|'))
        .skip(2)
        .map(|line| {
            let cells: Vec<&str> = line.trim_matches('|').split('|').map(str::trim).collect();
            assert_eq!(cells.len(), 3, "README permissions row: {line}");
            let policies: Vec<String> = cells[1].split('+').map(|p| p.trim().to_owned()).collect();
            let grants = match policies.as_slice() {
                [one] => BTreeMap::from([(one.clone(), actions_in(cells[2]))]),
                _ => cells[2]
                    .split(';')
                    .map(|part| {
                        let (policy, actions) = part
                            .split_once(':')
                            .unwrap_or_else(|| panic!("`POLICY: actions; ...` expected: {line}"));
                        (policy.trim().to_owned(), actions_in(actions))
                    })
                    .collect(),
            };
            let named: BTreeSet<&String> = policies.iter().collect();
            assert_eq!(
                named,
                grants.keys().collect(),
                "README permissions row: {line}"
            );
            Row {
                commands: quoted(cells[0]),
                policies,
                grants,
            }
        })
        .collect();
    assert!(rows.len() >= 5, "README permissions table: {rows:?}");
    rows
}

fn row_of<'a>(rows: &'a [Row], command: &str) -> &'a Row {
    rows.iter()
        .find(|r| r.commands.iter().any(|c| c == command))
        .unwrap_or_else(|| panic!("README's permissions table has no row for `{command}`"))
}

fn policy_text(policy: Policy) -> String {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(policy.file());
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The three policies with `values` filled in, by name.
fn documents(values: &BTreeMap<&str, String>) -> BTreeMap<String, PolicyDocument> {
    Policy::ALL
        .iter()
        .map(|p| {
            let doc = PolicyDocument::parse(&p.file(), &policy_text(*p), values);
            (p.name().to_owned(), doc)
        })
        .collect()
}

fn values(region: &str, secrets: &[String]) -> BTreeMap<&'static str, String> {
    BTreeMap::from([
        ("AWS_REGION", region.to_owned()),
        ("AWS_ACCOUNT_ID", ACCOUNT.to_owned()),
        ("ECS_CLUSTER", "everruns".to_owned()),
        ("EXECUTION_ROLE_ARN", EXECUTION_ROLE.to_owned()),
        ("TASK_ROLE_ARN", TASK_ROLE.to_owned()),
        ("DATABASE_URL_SECRET_ARN", secrets[0].clone()),
        ("ENCRYPTION_KEY_SECRET_ARN", secrets[1].clone()),
        ("ENCRYPTION_KEY_PREVIOUS_SECRET_ARN", secrets[2].clone()),
    ])
}

#[test]
fn the_policy_files_the_readme_table_and_the_launcher_agree() {
    let rows = readme_rows();
    let placeholders = ["s1", "s2", "s3"].map(String::from);
    let docs = documents(&values("eu-west-1", &placeholders));

    // Each policy grants exactly the actions the rows list under its name.
    for (name, doc) in &docs {
        let listed: BTreeSet<String> = rows
            .iter()
            .filter_map(|r| r.grants.get(name))
            .flatten()
            .cloned()
            .collect();
        assert_eq!(
            doc.actions(),
            listed,
            "{}: its actions differ from the README's permissions rows naming `{name}`",
            doc.name
        );
    }
    for row in &rows {
        for policy in &row.policies {
            assert!(
                docs.contains_key(policy),
                "README names no such policy: {policy}"
            );
        }
    }

    // The launcher's own table (which names the policy in a refusal) says the same.
    for (name, doc) in &docs {
        for action in doc.actions() {
            let holders = GRANTS
                .iter()
                .find(|(a, _)| *a == action)
                .unwrap_or_else(|| panic!("{action} ({}) is not in policies::GRANTS", doc.name))
                .1;
            assert!(
                holders.iter().any(|p| p.name() == name),
                "policies::GRANTS does not say {name} grants {action}"
            );
        }
    }
    for (action, holders) in GRANTS {
        for holder in *holders {
            assert!(
                docs[holder.name()].actions().contains(*action),
                "policies::GRANTS says {} grants {action}; {} does not",
                holder.name(),
                holder.file()
            );
        }
    }

    // Every AWS call in the launcher's source is in some row.
    let mut files = Vec::new();
    rust_files(
        &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/launcher"),
        &mut files,
    );
    let tabled: BTreeSet<&String> = rows.iter().flat_map(|r| r.actions()).collect();
    let mut seen = 0;
    for file in &files {
        let source = std::fs::read_to_string(file).unwrap();
        for call in aws_calls(&source).unwrap_or_else(|e| panic!("{}: {e}", file.display())) {
            for action in call.actions {
                seen += 1;
                assert!(
                    tabled.contains(&action),
                    "{}:{} .{}() needs {action}, which no row of the README's permissions \
                     table (and so no policy) grants",
                    file.display(),
                    call.line,
                    call.method
                );
            }
        }
    }
    assert!(seen > 20, "the call scan found only {seen} actions");
}

/// The shipped template, registered by the deployer's command with the emulator's
/// values: the admin image in its ECR repository, both roles, the three secrets.
fn register(emu: &Emulator, secrets: &[String], dir: &std::path::Path) -> Output {
    // moto needs a container memory; everything else is the shipped template.
    let template = include_str!("../../task-definitions/admin.json.tmpl").replace(
        "\"essential\": true,",
        "\"essential\": true, \"memory\": 512,",
    );
    let path = dir.join("admin.json.tmpl");
    std::fs::write(&path, template).unwrap();
    let (registry, tag) = emu.ready.ecr_image.rsplit_once(":").unwrap();
    let registry = registry.trim_end_matches("/everruns-admin");
    emu.launcher()
        .env("ECR_REGISTRY", registry)
        .env("EXECUTION_ROLE_ARN", EXECUTION_ROLE)
        .env("TASK_ROLE_ARN", TASK_ROLE)
        .env("DATABASE_URL_SECRET_ARN", &secrets[0])
        .env("ENCRYPTION_KEY_SECRET_ARN", &secrets[1])
        .env("ENCRYPTION_KEY_PREVIOUS_SECRET_ARN", &secrets[2])
        .args(["task-def", "register", "--image-tag", tag, "--template"])
        .arg(&path)
        .output()
        .unwrap()
}

/// The requests the launcher signed since `from` (an index into the log).
fn since(emu: &Emulator, from: usize) -> Vec<Request> {
    emu.authorizations()
        .into_iter()
        .skip(from)
        .filter(|r| r.principal != HARNESS)
        .collect()
}

#[test]
fn each_command_is_allowed_by_its_policies_and_refused_by_the_others() {
    let rows = readme_rows();
    let (_db, emu) = stack();
    let secrets = emu.secret_arns();
    let docs = documents(&values(&emu.ready.region, &secrets));
    let work = tempfile::tempdir().unwrap();

    // (command as the README names it, its output, the requests it made)
    let mut runs: Vec<(&str, Output, Vec<Request>)> = Vec::new();
    let mut task = String::new();
    let mut idle = String::new();
    let steps: &[&str] = &[
        "task-def register",
        "migrate-info",
        "migrate",
        "reencrypt",
        "run",
        "list",
        "status",
        "logs",
        "stop",
        "doctor",
        "shell",
        "tunnel",
        "keys status",
        "keys generate",
        "keys rotate",
        "keys retire",
    ];
    for &command in steps {
        let from = emu.authorizations().len();
        let out = match command {
            "task-def register" => register(&emu, &secrets, work.path()),
            "stop" => emu.launcher().args(["stop", &idle]).output().unwrap(),
            "status" | "logs" => emu.launcher().args([command, &task]).output().unwrap(),
            "run" => {
                // A task that idles until stopped, for `stop`.
                let out = emu
                    .launcher()
                    .args(["--no-wait", "run", "--", "shell", "--max-idle", "60s"])
                    .output()
                    .unwrap();
                idle = String::from_utf8_lossy(&out.stdout).trim().to_owned();
                out
            }
            "migrate" => {
                let out = emu
                    .launcher()
                    .args(["--output", "json", "migrate"])
                    .output()
                    .unwrap();
                let report: Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
                task = report["task_arn"].as_str().unwrap_or_default().to_owned();
                out
            }
            "reencrypt" => emu
                .launcher()
                .args(["reencrypt", "--dry-run"])
                .output()
                .unwrap(),
            "shell" => emu
                .launcher()
                .env("PATH", path_with_plugin())
                .args(["shell", "--command", "true"])
                .output()
                .unwrap(),
            "tunnel" => {
                let (code, stderr) = emu.open_tunnel(&["tunnel", "--local-port", "0"]).close();
                Output {
                    status: ExitStatus::from_raw(code.unwrap_or(1) << 8),
                    stdout: Vec::new(),
                    stderr: stderr.into_bytes(),
                }
            }
            other => emu.launcher().args(other.split(' ')).output().unwrap(),
        };
        assert_eq!(
            out.status.code(),
            Some(0),
            "`{command}`: {}",
            describe(&out)
        );
        runs.push((command, out, since(&emu, from)));
    }

    let mut problems = Vec::new();
    for (command, _, requests) in &runs {
        let row = row_of(&rows, command);
        assert!(!requests.is_empty(), "`{command}` made no AWS call");
        for request in requests {
            assert!(
                !request.unmodelled,
                "the emulator cannot tell what AWS evaluates for {request}"
            );
        }
        let named: Vec<&PolicyDocument> = row.policies.iter().map(|p| &docs[p]).collect();
        for request in requests {
            if !allowed_by(&named, request) {
                problems.push(format!(
                    "`{command}` under {}: refused {request}",
                    row.policies.join(" + ")
                ));
            }
            if !row.actions().contains(&request.action) {
                problems.push(format!(
                    "`{command}` calls {}, which its README row does not list",
                    request.action
                ));
            }
        }
        // Each other policy alone, and each one of several alone, must refuse it.
        for (name, doc) in &docs {
            if row.policies.len() == 1 && row.policies.contains(name) {
                continue;
            }
            if requests.iter().all(|r| allowed_by(&[doc], r)) {
                problems.push(format!(
                    "`{command}`: the {name} policy alone allows all of it; the README names {}",
                    row.policies.join(" + ")
                ));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));

    // The run covered every row of the table.
    for row in &rows {
        for command in &row.commands {
            assert!(
                runs.iter().any(|(c, _, _)| c == command),
                "README's permissions table names `{command}`, which this test does not run"
            );
        }
    }
}

/// The one StopTask the launcher sent since `from`.
fn the_stop_task(emu: &Emulator, from: usize) -> Request {
    let mut stop: Vec<Request> = since(emu, from)
        .into_iter()
        .filter(|r| r.action == "ecs:StopTask")
        .collect();
    assert_eq!(stop.len(), 1, "{stop:?}");
    stop.remove(0)
}

#[test]
fn a_task_the_tool_did_not_start_cannot_be_stopped_or_entered() {
    let (_db, emu) = stack();
    let secrets = emu.secret_arns();
    let docs = documents(&values(&emu.ready.region, &secrets));
    let operator = &docs["operator"];
    let application = emu.run_application_task();

    let from = emu.authorizations().len();
    let refused = emu
        .launcher()
        .args(["stop", &application])
        .output()
        .unwrap();
    assert_eq!(refused.status.code(), Some(2), "{}", describe(&refused));
    let text = both_streams(&refused);
    assert!(
        text.contains("was not started by run-admin-task") && text.contains("--any-task"),
        "{}",
        describe(&refused)
    );
    let asked: Vec<String> = since(&emu, from).iter().map(|r| r.action.clone()).collect();
    assert!(
        !asked.iter().any(|a| a == "ecs:StopTask"),
        "the launcher sent StopTask anyway: {asked:?}"
    );

    // Told to, the launcher sends it; the operator policy is what refuses it then.
    let from = emu.authorizations().len();
    let forced = emu
        .launcher()
        .args(["stop", &application, "--any-task"])
        .output()
        .unwrap();
    assert_eq!(forced.status.code(), Some(0), "{}", describe(&forced));
    let stop = the_stop_task(&emu, from);
    assert_eq!(operator.allowing(&stop), None, "{stop}");

    // Nor entered: ExecuteCommand on it is refused on the task, not on the cluster.
    let from = emu.authorizations().len();
    let task = application.clone();
    let _ = emu.as_harness(|sdk| async move {
        aws_sdk_ecs::Client::new(&sdk)
            .execute_command()
            .cluster("everruns")
            .task(task)
            .container("admin")
            .interactive(true)
            .command("/bin/sh")
            .send()
            .await
    });
    let exec: Vec<(String, Option<String>)> = emu
        .authorizations()
        .into_iter()
        .skip(from)
        .filter(|r| r.action == "ecs:ExecuteCommand")
        .map(|r| (r.resource.clone(), operator.allowing(&r).map(str::to_owned)))
        .collect();
    assert_eq!(
        exec,
        vec![
            (
                "arn:aws:ecs:us-east-1:123456789012:cluster/everruns".to_owned(),
                Some("ExecIntoTheAdminContainerOfTheCluster".to_owned())
            ),
            (application.clone(), None),
        ]
    );

    // ... while a task the launcher started is stoppable under it.
    let ours = emu
        .launcher()
        .args(["--no-wait", "run", "--", "shell", "--max-idle", "60s"])
        .output()
        .unwrap();
    let ours = String::from_utf8_lossy(&ours.stdout).trim().to_owned();
    let from = emu.authorizations().len();
    let out = emu.launcher().args(["stop", &ours]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let stop = the_stop_task(&emu, from);
    assert_eq!(
        operator.allowing(&stop),
        Some("StopOnlyTasksThisToolStarted"),
        "{stop}"
    );
}

#[test]
fn a_refused_call_names_the_policy_to_ask_for() {
    let (_db, emu) = crate::common::emulator::stack_with(&[
        "--deny",
        "ecs:StopTask",
        "--deny",
        "secretsmanager:GetSecretValue",
        "--deny",
        "ec2:DescribeSubnets",
    ]);
    let idle = emu
        .launcher()
        .args(["--no-wait", "run", "--", "shell", "--max-idle", "60s"])
        .output()
        .unwrap();
    assert_eq!(idle.status.code(), Some(0), "{}", describe(&idle));
    let idle = String::from_utf8_lossy(&idle.stdout).trim().to_owned();

    let stop = emu.launcher().args(["stop", &idle]).output().unwrap();
    assert_eq!(stop.status.code(), Some(1), "{}", describe(&stop));
    let text = both_streams(&stop);
    assert!(
        text.contains("AccessDeniedException")
            && text.contains(
                "ecs:StopTask is granted by the operator policy \
                 (task-definitions/iam/operator-policy.json), and only on tasks run-admin-task started"
            )
            && text.contains("`stop` needs the operator policy"),
        "{}",
        describe(&stop)
    );

    let keys = emu.launcher().args(["keys", "status"]).output().unwrap();
    assert_eq!(keys.status.code(), Some(1), "{}", describe(&keys));
    assert!(
        both_streams(&keys).contains(
            "secretsmanager:GetSecretValue is granted by the key-admin policy \
             (task-definitions/iam/key-admin-policy.json); `keys status` needs the key-admin policy"
        ),
        "{}",
        describe(&keys)
    );

    let doctor = emu.launcher().arg("doctor").output().unwrap();
    let subnets = String::from_utf8_lossy(&doctor.stdout)
        .lines()
        .find(|l| l.contains(" subnets "))
        .map(str::to_owned)
        .unwrap_or_else(|| panic!("no subnets check: {}", describe(&doctor)));
    assert!(
        subnets.starts_with("SKIP")
            && subnets.contains("ec2:DescribeSubnets is granted by the operator policy"),
        "{subnets}"
    );
}
