//! `run-admin-task doctor` against the emulated stack (passing, failing with the fix
//! named, `--in-vpc` against a real database), the companion's `status` on its own,
//! and the secret check against a mocked Secrets Manager: DescribeSecret only, never
//! GetSecretValue.

use std::process::Output;

use crate::common::emulator::stack;
use crate::common::{KEK_V1, KEK_V2};
use crate::common::{TestDatabase, cluster, describe};
use aws_sdk_secretsmanager::operation::describe_secret::{
    DescribeSecretError, DescribeSecretOutput,
};
use aws_sdk_secretsmanager::operation::get_secret_value::GetSecretValueOutput;
use aws_smithy_mocks::{RuleMode, mock, mock_client};
use everruns_admin::seam::Status;
use everruns_admin::seam::{SecretRef, secret};
use serde_json::Value;

/// The checks the emulator can answer, all of which must pass on it.
const MUST_PASS: [&str; 13] = [
    "region",
    "credentials",
    "cluster",
    "task-definition",
    "container",
    "execution-role",
    "awslogs",
    "log-group",
    "secret:DATABASE_URL",
    "secret:SECRETS_ENCRYPTION_KEY",
    "secret:SECRETS_ENCRYPTION_KEY_PREVIOUS",
    "subnets",
    "security-groups",
];

fn document(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("stdout is not one JSON document ({e}): {}", describe(out)))
}

fn check<'a>(doc: &'a Value, name: &str) -> &'a Value {
    doc["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no check {name}: {doc:#}"))
}

fn assert_no_secret_material(out: &Output, db: &TestDatabase) {
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let mut forbidden = vec![crate::common::PASSWORD.to_owned(), db.url.clone()];
    for key in [KEK_V1, KEK_V2] {
        let material = key.split_once(':').unwrap().1;
        forbidden.push(material.to_owned());
        forbidden.push(material.trim_end_matches('=').to_owned());
    }
    for secret in forbidden {
        assert!(
            !all.contains(&secret),
            "secret material in output: {}",
            describe(out)
        );
    }
}

#[test]
fn doctor_passes_on_the_emulated_stack() {
    let (_db, emu) = stack();
    let out = emu
        .launcher()
        .args(["--output", "json", "doctor"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let doc = document(&out);
    assert_eq!(doc["ok"], true, "{doc:#}");
    for name in MUST_PASS {
        assert_eq!(check(&doc, name)["status"], "pass", "{name}: {doc:#}");
    }
    for c in doc["checks"].as_array().unwrap() {
        for field in ["name", "status", "detail", "fix", "ms"] {
            assert!(c.get(field).is_some(), "{field} missing in {c}");
        }
    }
    // The emulated definition has no task role: a `shell` concern, reported, not failed.
    let role = check(&doc, "shell:task-role");
    assert_eq!(role["status"], "skip", "{doc:#}");
    assert!(
        role["fix"].as_str().unwrap().contains("taskRoleArn"),
        "{role}"
    );
    let plugin = check(&doc, "shell:plugin");
    assert!(
        plugin["status"] == "pass" || plugin["status"] == "skip",
        "{plugin}"
    );

    // With --output json the readable report is on stderr: stdout is the document.
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("PASS  cluster"), "{stderr}");

    let counts = emu.request_counts();
    assert!(
        counts.get("DescribeSecret").copied().unwrap_or(0) >= 3,
        "{counts:?}"
    );
    assert_eq!(
        counts.get("GetSecretValue"),
        None,
        "doctor read a secret: {counts:?}"
    );

    let strict = emu
        .launcher()
        .args(["doctor", "--for-shell"])
        .output()
        .unwrap();
    assert_eq!(strict.status.code(), Some(1), "{}", describe(&strict));
    let report = report_on_stdout(&strict);
    assert!(report.contains("FAIL  shell:task-role"), "{report}");
    assert!(report.contains("PASS  cluster"), "{report}");
}

/// The readable report, asserted to be on stdout (so `doctor | grep FAIL` works) and
/// not on stderr, which keeps diagnostics only.
fn report_on_stdout(out: &Output) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stdout.lines().any(|l| l.starts_with("doctor: ")),
        "no report on stdout: {}",
        describe(out)
    );
    for label in ["PASS  ", "FAIL  ", "SKIP  ", "doctor: "] {
        assert!(
            !stderr.lines().any(|l| l.starts_with(label)),
            "report lines on stderr: {}",
            describe(out)
        );
    }
    stdout
}

#[test]
fn doctor_fails_with_the_fix_named() {
    let (_db, emu) = stack();
    let out = emu
        .launcher()
        .args(["--task-definition", "everruns-admin-badsecret", "doctor"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let report = report_on_stdout(&out);
    let line = report
        .lines()
        .find(|l| l.starts_with("FAIL  secret:SECRETS_ENCRYPTION_KEY "))
        .unwrap_or_else(|| panic!("no failing key secret: {report}"));
    assert!(
        line.contains("secret:everruns/does-not-exist-AbCdEf"),
        "{line}"
    );
    assert!(report.contains("fix: create the secret"), "{report}");
    assert!(report.contains("PASS  secret:DATABASE_URL"), "{report}");

    let out = emu
        .launcher()
        .args([
            "--output",
            "json",
            "--cluster",
            "nope",
            "doctor",
            "--in-vpc",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let doc = document(&out);
    let cluster = check(&doc, "cluster");
    assert_eq!(cluster["status"], "fail", "{doc:#}");
    assert!(
        cluster["detail"].as_str().unwrap().contains("nope"),
        "{cluster}"
    );
    assert!(
        cluster["fix"].as_str().unwrap().contains("ECS_CLUSTER"),
        "{cluster}"
    );
    assert_eq!(
        check(&doc, "in-vpc:task")["status"],
        "skip",
        "nothing launched: {doc:#}"
    );

    let out = emu
        .launcher()
        .env_remove("ECS_SECURITY_GROUP")
        .args(["--task-definition", "absent-family", "doctor"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let report = report_on_stdout(&out);
    assert!(report.contains("FAIL  task-definition"), "{report}");
    assert!(report.contains("task-def register"), "{report}");
    assert!(report.contains("FAIL  security-groups"), "{report}");
}

/// The check `name` of a `doctor --output json` run with `args` before `doctor`,
/// which must exit 1 when `status` is "fail".
fn doctor_check(emu: &crate::common::emulator::Emulator, args: &[&str], name: &str) -> Value {
    let out = emu
        .launcher()
        .args(["--output", "json"])
        .args(args)
        .arg("doctor")
        .output()
        .unwrap();
    let doc = document(&out);
    let found = check(&doc, name).clone();
    if found["status"] == "fail" {
        assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    }
    found
}

#[test]
fn doctor_fails_what_the_launch_would_refuse() {
    let (_db, emu) = stack();
    let absent = "subnet-0123456789abcdef0";
    let subnets = doctor_check(&emu, &["--subnets", absent], "subnets");
    assert_eq!(subnets["status"], "fail", "{subnets}");
    let detail = subnets["detail"].as_str().unwrap();
    assert!(
        detail.contains(absent) && detail.contains("us-east-1"),
        "{subnets}"
    );
    // ... as RunTask would have, after the confirmation.
    let launch = emu
        .launcher()
        .args(["--subnets", absent, "migrate-info"])
        .output()
        .unwrap();
    assert_ne!(launch.status.code(), Some(0), "{}", describe(&launch));
    let groups = doctor_check(
        &emu,
        &["--security-groups", "sg-0123456789abcdef0"],
        "security-groups",
    );
    assert_eq!(groups["status"], "fail", "{groups}");
    // A group of another VPC: doctor says so, as RunTask would.
    let foreign = emu.ready.foreign_security_group.clone();
    let elsewhere = doctor_check(&emu, &["--security-groups", &foreign], "security-groups");
    assert_eq!(elsewhere["status"], "fail", "{elsewhere}");
    assert!(
        elsewhere["detail"]
            .as_str()
            .unwrap()
            .contains("not in the subnets' VPC"),
        "{elsewhere}"
    );
    let launch = emu
        .launcher()
        .args(["--security-groups", &foreign, "migrate-info"])
        .output()
        .unwrap();
    assert!(
        describe(&launch).contains("belong to different networks"),
        "{}",
        describe(&launch)
    );
    let found = doctor_check(&emu, &[], "subnets");
    assert_eq!(found["status"], "pass", "{found}");
    assert!(
        found["detail"].as_str().unwrap().contains("vpc-"),
        "names the VPC: {found}"
    );

    // A deregistered revision is described, and refused by RunTask.
    let retired = doctor_check(
        &emu,
        &["--task-definition", "everruns-admin-retired:1"],
        "task-definition",
    );
    assert_eq!(retired["status"], "fail", "{retired}");
    assert!(
        retired["detail"].as_str().unwrap().contains("INACTIVE"),
        "{retired}"
    );
    let launch = emu
        .launcher()
        .args([
            "--task-definition",
            "everruns-admin-retired:1",
            "migrate-info",
        ])
        .output()
        .unwrap();
    assert_ne!(launch.status.code(), Some(0), "{}", describe(&launch));
    assert!(
        describe(&launch).contains("TaskDefinition is inactive"),
        "{}",
        describe(&launch)
    );

    // An ECR tag that was never pushed fails; the pushed one passes and runs.
    let unpushed = doctor_check(
        &emu,
        &["--task-definition", "everruns-admin-unpushed"],
        "image",
    );
    assert_eq!(unpushed["status"], "fail", "{unpushed}");
    assert!(
        unpushed["detail"]
            .as_str()
            .unwrap()
            .contains(":never-pushed")
            && unpushed["fix"].as_str().unwrap().contains("push"),
        "{unpushed}"
    );
    let launch = emu
        .launcher()
        .args([
            "--task-definition",
            "everruns-admin-unpushed",
            "migrate-info",
        ])
        .output()
        .unwrap();
    assert_eq!(launch.status.code(), Some(125), "{}", describe(&launch));
    let pushed = doctor_check(&emu, &["--task-definition", "everruns-admin-ecr"], "image");
    assert_eq!(pushed["status"], "pass", "{pushed}");
    assert!(
        pushed["detail"].as_str().unwrap().contains("sha256:"),
        "{pushed}"
    );
    let launch = emu
        .launcher()
        .args(["--task-definition", "everruns-admin-ecr", "migrate-info"])
        .output()
        .unwrap();
    assert_eq!(launch.status.code(), Some(0), "{}", describe(&launch));
    let local = doctor_check(&emu, &[], "image");
    assert_eq!(local["status"], "skip", "not in ECR: {local}");
}

#[test]
fn doctor_in_vpc_reports_the_database_schema_and_key_ids() {
    let (db, emu) = stack();
    let migrations = std::fs::read_dir(crate::common::migrations_dir())
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "sql")
        })
        .count();
    let out = emu
        .launcher()
        .args(["--output", "json", "doctor", "--in-vpc"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let doc = document(&out);
    assert_eq!(check(&doc, "in-vpc:task")["status"], "pass", "{doc:#}");
    let database = check(&doc, "in-vpc:database");
    assert_eq!(database["status"], "pass", "{doc:#}");
    assert!(
        database["detail"].as_str().unwrap().contains("PostgreSQL"),
        "{database}"
    );
    let schema = check(&doc, "in-vpc:schema");
    assert!(
        schema["detail"]
            .as_str()
            .unwrap()
            .contains(&format!("{migrations} migration(s) pending")),
        "{schema}"
    );
    let keys = check(&doc, "in-vpc:keys");
    assert_eq!(keys["detail"], "primary kek-v2, previous kek-v1", "{keys}");
    assert_no_secret_material(&out, &db);
}

#[test]
fn companion_status_reports_each_probe_and_never_crashes() {
    let db = cluster().create_database();
    let out = crate::common::companion(&db.url)
        .env("SECRETS_ENCRYPTION_KEY", KEK_V2)
        .env("SECRETS_ENCRYPTION_KEY_PREVIOUS", KEK_V1)
        .arg("status")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let summary = crate::common::result_summary(&out);
    assert_eq!(summary["database"]["ok"], true, "{summary}");
    assert!(
        summary["database"]["server_version"].is_string(),
        "{summary}"
    );
    assert_eq!(
        summary["schema"]["history_table_exists"], false,
        "{summary}"
    );
    assert!(
        summary["schema"]["pending"].as_u64().unwrap() > 0,
        "{summary}"
    );
    assert_eq!(summary["keys"]["primary"], "kek-v2", "{summary}");
    for part in ["database", "schema", "keys"] {
        assert!(summary[part]["ms"].is_u64(), "{part}: {summary}");
    }
    assert_no_secret_material(&out, &db);

    let bad_key = crate::common::companion(&db.url)
        .env("SECRETS_ENCRYPTION_KEY", "kek-v2:bm90IDMyIGJ5dGVz")
        .arg("status")
        .output()
        .unwrap();
    assert_eq!(bad_key.status.code(), Some(1), "{}", describe(&bad_key));
    let summary = crate::common::result_summary(&bad_key);
    assert_eq!(summary["database"]["ok"], true, "{summary}");
    assert_eq!(summary["keys"]["ok"], false, "{summary}");
    assert!(
        summary["keys"]["error"]
            .as_str()
            .unwrap()
            .contains("SECRETS_ENCRYPTION_KEY"),
        "{summary}"
    );
    assert!(!String::from_utf8_lossy(&bad_key.stdout).contains("bm90IDMyIGJ5dGVz"));

    let unreachable = crate::common::companion("postgres://u:pw-unreachable@127.0.0.1:1/x")
        .env("SECRETS_ENCRYPTION_KEY", KEK_V2)
        .args(["--connect-timeout", "1s", "status"])
        .output()
        .unwrap();
    assert_eq!(
        unreachable.status.code(),
        Some(1),
        "{}",
        describe(&unreachable)
    );
    let summary = crate::common::result_summary(&unreachable);
    assert_eq!(summary["database"]["ok"], false, "{summary}");
    assert_eq!(summary["schema"]["ok"], false, "{summary}");
    assert_eq!(summary["keys"]["ok"], true, "{summary}");
    assert!(!String::from_utf8_lossy(&unreachable.stdout).contains("pw-unreachable"));
}

#[tokio::test]
async fn secret_checks_describe_and_never_read_values() {
    const FOUND: &str = "arn:aws:secretsmanager:us-east-1:123456789012:secret:everruns/db-AbCdEf";
    const GONE: &str = "arn:aws:secretsmanager:us-east-1:123456789012:secret:everruns/key-GhIjKl";
    let described = mock!(aws_sdk_secretsmanager::Client::describe_secret)
        .match_requests(|r| r.secret_id() == Some(FOUND))
        .then_output(|| {
            DescribeSecretOutput::builder()
                .arn(FOUND)
                .name("everruns/db")
                .build()
        });
    let missing = mock!(aws_sdk_secretsmanager::Client::describe_secret)
        .match_requests(|r| r.secret_id() == Some(GONE))
        .then_error(|| {
            DescribeSecretError::ResourceNotFoundException(
                aws_sdk_secretsmanager::types::error::ResourceNotFoundException::builder()
                    .message("Secrets Manager can't find the specified secret.")
                    .build(),
            )
        });
    let read = mock!(aws_sdk_secretsmanager::Client::get_secret_value).then_output(|| {
        GetSecretValueOutput::builder()
            .secret_string("must not be read")
            .build()
    });
    let client = mock_client!(
        aws_sdk_secretsmanager,
        RuleMode::MatchAny,
        &[&described, &missing, &read],
        |c| c.region(aws_sdk_secretsmanager::config::Region::new("us-east-1"))
    );
    let reference = |variable: &str, value_from: &str| SecretRef {
        container: "admin".into(),
        variable: variable.into(),
        value_from: value_from.into(),
    };

    let ok = secret(
        &client,
        &reference("DATABASE_URL", FOUND),
        "secret:DATABASE_URL".into(),
    )
    .await;
    assert_eq!(ok.status, Status::Pass, "{ok:?}");
    let json_key = format!("{FOUND}:password::");
    let ok = secret(
        &client,
        &reference("DATABASE_URL", &json_key),
        "secret:X".into(),
    )
    .await;
    assert_eq!(
        ok.status,
        Status::Pass,
        "a JSON key is not part of the secret id: {ok:?}"
    );
    let failed = secret(
        &client,
        &reference("SECRETS_ENCRYPTION_KEY", GONE),
        "secret:K".into(),
    )
    .await;
    assert_eq!(failed.status, Status::Fail, "{failed:?}");
    assert!(failed.detail.contains(GONE), "{failed:?}");
    assert!(
        failed
            .fix
            .as_deref()
            .unwrap()
            .contains("SECRETS_ENCRYPTION_KEY"),
        "{failed:?}"
    );
    let parameter = secret(
        &client,
        &reference("X", "arn:aws:ssm:us-east-1:123456789012:parameter/x"),
        "secret:X".into(),
    )
    .await;
    assert_eq!(parameter.status, Status::Skip, "{parameter:?}");

    assert_eq!(described.num_calls(), 2);
    assert_eq!(missing.num_calls(), 1);
    assert_eq!(read.num_calls(), 0, "GetSecretValue must never be called");
}

#[test]
fn doctor_for_tunnel_probes_start_session_and_names_the_policy_when_refused() {
    let probe = |options: &[&str]| {
        let (_db, emu) = crate::common::emulator::stack_with(options);
        let out = emu
            .launcher()
            .env("PATH", crate::common::emulator::path_with_plugin())
            .args(["--output", "json", "doctor", "--for-tunnel"])
            .output()
            .unwrap();
        check(&document(&out), "tunnel:start-session").clone()
    };
    let allowed = probe(&[]);
    assert_eq!(allowed["status"], "pass", "{allowed:#}");
    let refused = probe(&["--deny", "ssm:StartSession"]);
    assert_eq!(refused["status"], "fail", "{refused:#}");
    assert!(
        refused["fix"]
            .as_str()
            .unwrap()
            .contains("granted by the operator policy"),
        "{refused:#}"
    );
}
