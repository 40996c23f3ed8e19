//! `run-admin-task task-def render|register`: strict rendering (every unset variable
//! named at once, exit 2), the checks of what ECS would reject or the launcher relies
//! on, and registration against the emulator followed by a run pinned to the new
//! revision.

use std::path::Path;
use std::process::{Command, Output};

use crate::common::KEK_V1;
use crate::common::emulator::{Emulator, Secrets};
use crate::common::{cluster, describe, launcher};
use serde_json::Value;

const TEMPLATE: &str = include_str!("../../task-definitions/admin.json.tmpl");
const ACCOUNT_ARN: &str = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:everruns";

const VARIABLES: [&str; 8] = [
    "ECR_REGISTRY",
    "IMAGE_TAG",
    "EXECUTION_ROLE_ARN",
    "TASK_ROLE_ARN",
    "DATABASE_URL_SECRET_ARN",
    "ENCRYPTION_KEY_SECRET_ARN",
    "ENCRYPTION_KEY_PREVIOUS_SECRET_ARN",
    "AWS_REGION",
];

/// Every variable set to a plausible production value.
fn with_values(cmd: &mut Command) -> &mut Command {
    cmd.env(
        "ECR_REGISTRY",
        "123456789012.dkr.ecr.eu-west-1.amazonaws.com",
    )
    .env("IMAGE_TAG", "from-env")
    .env("EXECUTION_ROLE_ARN", "arn:aws:iam::123456789012:role/exec")
    .env("TASK_ROLE_ARN", "arn:aws:iam::123456789012:role/task")
    .env(
        "DATABASE_URL_SECRET_ARN",
        format!("{ACCOUNT_ARN}/database-url-AbCdEf"),
    )
    .env(
        "ENCRYPTION_KEY_SECRET_ARN",
        format!("{ACCOUNT_ARN}/encryption-key-GhIjKl"),
    )
    .env(
        "ENCRYPTION_KEY_PREVIOUS_SECRET_ARN",
        format!("{ACCOUNT_ARN}/encryption-key-previous-MnOpQr"),
    )
    .env("AWS_REGION", "eu-west-1")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Renders `template` (written to a file) with every variable set; returns the output.
fn render_file(dir: &Path, template: &str) -> Output {
    let path = dir.join("admin.json.tmpl");
    std::fs::write(&path, template).unwrap();
    with_values(&mut launcher())
        .args(["task-def", "render", "--template"])
        .arg(&path)
        .output()
        .unwrap()
}

#[test]
fn render_lists_every_unset_variable_at_once() {
    let out = launcher().args(["task-def", "render"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    assert!(out.stdout.is_empty(), "{}", describe(&out));
    let text = stderr(&out);
    for name in VARIABLES {
        assert!(text.contains(name), "{name} not named: {text}");
    }

    let out = with_values(&mut launcher())
        .env("IMAGE_TAG", "")
        .env_remove("TASK_ROLE_ARN")
        .args(["task-def", "render"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    let text = stderr(&out);
    assert!(
        text.contains("IMAGE_TAG, TASK_ROLE_ARN") || text.contains("TASK_ROLE_ARN, IMAGE_TAG"),
        "an empty value is unset: {text}"
    );
    assert!(!text.contains("ECR_REGISTRY"), "{text}");
}

#[test]
fn render_prints_the_checked_definition() {
    let out = with_values(&mut launcher())
        .env_remove("AWS_REGION")
        .args([
            "--region",
            "eu-central-1",
            "task-def",
            "render",
            "--image-tag",
            "abc123",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let def: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(def["family"], "everruns-admin");
    let admin = &def["containerDefinitions"][0];
    assert_eq!(
        admin["image"], "123456789012.dkr.ecr.eu-west-1.amazonaws.com/everruns-admin:abc123",
        "--image-tag beats IMAGE_TAG"
    );
    assert_eq!(
        admin["logConfiguration"]["options"]["awslogs-region"], "eu-central-1",
        "AWS_REGION falls back to the resolved region"
    );
    assert_eq!(
        admin["secrets"][0]["valueFrom"],
        format!("{ACCOUNT_ARN}/database-url-AbCdEf")
    );
    assert_eq!(admin["linuxParameters"]["initProcessEnabled"], true);
    assert_eq!(
        def["executionRoleArn"],
        "arn:aws:iam::123456789012:role/exec"
    );
}

#[test]
fn render_refuses_what_ecs_would_reject_or_the_launcher_cannot_use() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            TEMPLATE.replace("\"name\": \"admin\"", "\"name\": \"worker\""),
            "no container \"admin\"",
        ),
        (
            TEMPLATE.replace("\"essential\": true", "\"essential\": false"),
            "essential is false",
        ),
        (
            TEMPLATE.replace("\"awslogs-stream-prefix\": \"admin\",", ""),
            "lacks awslogs-stream-prefix",
        ),
        (
            TEMPLATE.replace(
                "\"${DATABASE_URL_SECRET_ARN}\"",
                "\"everruns/database-url\"",
            ),
            "not a Secrets Manager or Parameter Store ARN",
        ),
        (
            TEMPLATE.replace(
                "\"cpu\": \"256\",",
                "\"cpu\": \"256\", \"pidMode\": \"task\",",
            ),
            "pidMode",
        ),
        (TEMPLATE.replace("\"info\"", "\"$$info\""), "`$$`"),
        (
            TEMPLATE.replace("\"info\"", "\"${info-level}\""),
            "placeholder name",
        ),
    ];
    for (template, expected) in cases {
        let out = render_file(dir.path(), &template);
        assert_eq!(out.status.code(), Some(2), "{expected}: {}", describe(&out));
        assert!(out.stdout.is_empty(), "{}", describe(&out));
        assert!(
            stderr(&out).contains(expected),
            "{expected}: {}",
            describe(&out)
        );
    }
    let out = render_file(dir.path(), TEMPLATE);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
}

#[test]
fn register_prints_the_revision_and_a_run_can_pin_it() {
    let db = cluster().create_database();
    let emu = Emulator::start(&Secrets {
        database_url: &db.url,
        key: KEK_V1,
        previous: Some(KEK_V1),
    });
    let arns = emu.secret_arns();
    // The emulator's admin image is `everruns-admin:TAG` with no registry, and moto
    // needs a container memory; everything else is the shipped template.
    let template = TEMPLATE
        .replace("${ECR_REGISTRY}/everruns-admin:", "everruns-admin:")
        .replace(
            "\"essential\": true,",
            "\"essential\": true, \"memory\": 512,",
        );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("admin.json.tmpl");
    std::fs::write(&path, template).unwrap();
    let register = |output: &str| {
        emu.launcher()
            .env(
                "EXECUTION_ROLE_ARN",
                "arn:aws:iam::123456789012:role/everruns-admin-execution",
            )
            .env(
                "TASK_ROLE_ARN",
                "arn:aws:iam::123456789012:role/everruns-admin-task",
            )
            .env("DATABASE_URL_SECRET_ARN", &arns[0])
            .env("ENCRYPTION_KEY_SECRET_ARN", &arns[1])
            .env("ENCRYPTION_KEY_PREVIOUS_SECRET_ARN", &arns[2])
            .args([
                "--output",
                output,
                "task-def",
                "register",
                "--image-tag",
                "local",
                "--template",
            ])
            .arg(&path)
            .output()
            .unwrap()
    };

    let out = register("human");
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "everruns-admin:2"
    );

    let out = register("json");
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["family"], "everruns-admin", "{doc}");
    assert_eq!(doc["revision"], 3, "{doc}");
    assert!(
        doc["task_definition_arn"]
            .as_str()
            .unwrap()
            .ends_with(":task-definition/everruns-admin:3"),
        "{doc}"
    );

    let info = emu
        .launcher()
        .args([
            "--output",
            "json",
            "--task-definition",
            "everruns-admin:2",
            "migrate-info",
        ])
        .output()
        .unwrap();
    assert_eq!(info.status.code(), Some(0), "{}", describe(&info));
    let report: Value = serde_json::from_slice(&info.stdout).unwrap();
    assert!(
        report["task_definition"]
            .as_str()
            .unwrap()
            .ends_with("everruns-admin:2"),
        "{report}"
    );
    assert_eq!(report["result"]["command"], "migrate-info", "{report}");

    let doctor = emu
        .launcher()
        .args(["--task-definition", "everruns-admin:2", "doctor"])
        .output()
        .unwrap();
    assert_eq!(doctor.status.code(), Some(0), "{}", describe(&doctor));
    assert!(
        String::from_utf8_lossy(&doctor.stdout).contains("PASS  shell:task-role"),
        "{}",
        describe(&doctor)
    );
}
