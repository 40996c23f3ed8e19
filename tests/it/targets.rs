//! What the operator names is where the job goes: a named config environment beats the
//! shell's variables (and says which it ignored), `--profile` beats access keys in the
//! environment, an undefined environment is a usage error, and a pinned account refuses
//! other credentials before anything is launched.

use std::path::Path;
use std::process::Output;

use crate::common::{describe, launcher};

/// A config file with a production environment unlike the demo's exports.
const CONFIG: &str = r#"
[env.production]
cluster = "everruns-production"
region = "eu-central-1"
subnets = ["subnet-prod-a", "subnet-prod-b"]
security_groups = ["sg-prod"]
"#;

/// The lines the local demo tells an operator to export.
const DEMO_EXPORTS: [(&str, &str); 7] = [
    ("AWS_ACCESS_KEY_ID", "local"),
    ("AWS_SECRET_ACCESS_KEY", "local"),
    ("AWS_REGION", "us-east-1"),
    ("AWS_ENDPOINT_URL", "http://127.0.0.1:9"),
    ("ECS_CLUSTER", "everruns"),
    ("ECS_SUBNETS", "subnet-demo"),
    ("ECS_SECURITY_GROUP", "sg-demo"),
];

fn config_file(text: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("config.toml"), text).unwrap();
    dir
}

fn print_request(config: &Path, named: (&str, &str)) -> Output {
    let mut cmd = launcher();
    cmd.envs(DEMO_EXPORTS).arg("--config").arg(config);
    match named {
        ("--env", name) => cmd.args(["--env", name]),
        (var, name) => cmd.env(var, name),
    };
    cmd.args(["--print-request", "migrate-info"])
        .output()
        .unwrap()
}

#[test]
fn a_named_environment_beats_the_demo_exports_and_says_so() {
    let dir = config_file(CONFIG);
    let config = dir.path().join("config.toml");
    for (named, by) in [
        (("--env", "production"), "--env production"),
        (("EVERRUNS_ENV", "production"), "EVERRUNS_ENV=production"),
    ] {
        let out = print_request(&config, named);
        assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
        let request: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(request["cluster"], "everruns-production");
        let vpc = &request["networkConfiguration"]["awsvpcConfiguration"];
        assert_eq!(
            vpc["subnets"],
            serde_json::json!(["subnet-prod-a", "subnet-prod-b"])
        );
        assert_eq!(vpc["securityGroups"], serde_json::json!(["sg-prod"]));
        let stderr = String::from_utf8_lossy(&out.stderr);
        for line in [
            format!("ECS_CLUSTER=everruns ignored: {by} sets cluster everruns-production"),
            format!("AWS_REGION=us-east-1 ignored: {by} sets region eu-central-1"),
            format!("ECS_SUBNETS=subnet-demo ignored: {by} sets subnets"),
            format!("AWS_ENDPOINT_URL=http://127.0.0.1:9 still applies: {by}"),
            "# region: eu-central-1 (config `region`)".to_string(),
            "# endpoint: http://127.0.0.1:9 (environment AWS_ENDPOINT_URL)".to_string(),
            "# credentials: access keys (environment AWS_ACCESS_KEY_ID)".to_string(),
        ] {
            assert!(stderr.contains(&line), "{line:?} missing:\n{stderr}");
        }
    }
}

#[test]
fn without_a_named_environment_the_shell_still_wins_over_the_file() {
    let dir = config_file(&format!("cluster = \"from-file\"\n{CONFIG}"));
    let out = launcher()
        .envs(DEMO_EXPORTS)
        .arg("--config")
        .arg(dir.path().join("config.toml"))
        .args(["--print-request", "migrate-info"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let request: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(request["cluster"], "everruns");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("ignored"), "{stderr}");
    assert!(
        stderr.contains("# cluster: everruns (environment ECS_CLUSTER)"),
        "{stderr}"
    );
}

#[test]
fn an_environment_no_config_file_defines_is_a_usage_error() {
    let dir = config_file(CONFIG);
    let home = tempfile::tempdir().unwrap();
    for (config, named) in [
        (Some(dir.path().join("config.toml")), "nosuch"),
        (None, "production"),
    ] {
        let mut cmd = launcher();
        cmd.envs(DEMO_EXPORTS)
            .env("HOME", home.path())
            .env("EVERRUNS_ENV", named);
        if let Some(config) = &config {
            cmd.env("RUN_ADMIN_TASK_CONFIG", config);
        }
        let out = cmd.arg("migrate-info").output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(named), "{stderr}");
        assert!(stderr.contains("[env."), "{stderr}");
    }
}

/// An AWS config file whose profile `other` gets its credentials from a process that
/// leaves `marker` behind.
fn profile_with_process(dir: &Path, marker: &Path) -> std::path::PathBuf {
    let script = dir.join("credentials.sh");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\ntouch '{}'\necho '{{\"Version\": 1, \"AccessKeyId\": \"AKIDPROFILE\", \"SecretAccessKey\": \"from-process\"}}'\n",
            marker.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let config = dir.join("aws-config");
    std::fs::write(
        &config,
        format!(
            "[profile other]\ncredential_process = {}\n",
            script.display()
        ),
    )
    .unwrap();
    config
}

#[test]
fn an_explicit_profile_beats_access_keys_in_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("process-ran");
    let aws_config = profile_with_process(dir.path(), &marker);
    let doctor = |profile_flag: bool| {
        let mut cmd = launcher();
        cmd.envs(DEMO_EXPORTS)
            .env("AWS_CONFIG_FILE", &aws_config)
            .env("AWS_SHARED_CREDENTIALS_FILE", dir.path().join("none"))
            .args(["--call-timeout", "1s"]);
        if profile_flag {
            cmd.args(["--profile", "other"]);
        } else {
            cmd.env("AWS_PROFILE", "other");
        }
        cmd.arg("doctor").output().unwrap()
    };

    // AWS_PROFILE alone: the access keys win, as in the AWS CLI.
    let out = doctor(false);
    assert!(!marker.exists(), "{}", describe(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout)
            .contains("access keys (environment AWS_ACCESS_KEY_ID)"),
        "{}",
        describe(&out)
    );

    // --profile: its credential_process runs, and the keys are said to be ignored.
    let out = doctor(true);
    assert!(marker.exists(), "{}", describe(&out));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("profile other (flag --profile)"), "{text}");
    assert!(
        text.contains("AWS_ACCESS_KEY_ID ignored: --profile other names profile other"),
        "{text}"
    );
}

#[test]
fn a_launch_says_its_account_and_a_pinned_account_refuses_other_credentials() {
    let (_db, emu) = crate::common::emulator::stack();
    let out = emu.launcher().arg("migrate-info").output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let first = stderr.lines().next().unwrap_or_default();
    assert!(
        first.starts_with("started task arn:aws:ecs:")
            && first.ends_with("in account 123456789012, us-east-1, cluster everruns"),
        "{stderr}"
    );

    let dir = config_file(
        "[env.elsewhere]\ncluster = \"everruns\"\nregion = \"us-east-1\"\naccount_id = \"999999999999\"\n",
    );
    let launched = emu.request_counts().get("RunTask").copied();
    let out = emu
        .launcher()
        .arg("--config")
        .arg(dir.path().join("config.toml"))
        .args(["--env", "elsewhere", "migrate-info"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(
            "are for account 123456789012, but [env.elsewhere] pins account_id 999999999999"
        ),
        "{stderr}"
    );
    assert_eq!(
        emu.request_counts().get("RunTask").copied(),
        launched,
        "nothing was launched"
    );
}

#[test]
fn a_wrong_region_and_a_dead_endpoint_are_named() {
    let (_db, emu) = crate::common::emulator::stack();
    let out = emu
        .launcher()
        .args(["--region", "eu-central-1", "migrate-info"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(125), "{}", describe(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("(region eu-central-1)") && stderr.contains("registered in this region"),
        "{stderr}"
    );

    // A refused connection is not retried for seconds: the message names the endpoint
    // at once (the SDK's retries took 7 to 10 s).
    let started = std::time::Instant::now();
    let out = launcher()
        .envs(DEMO_EXPORTS)
        .args(["--call-timeout", "30s", "migrate-info"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(125), "{}", describe(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("http://127.0.0.1:9 refused the connection"),
        "{}",
        describe(&out)
    );
    assert!(
        started.elapsed() < std::time::Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}

/// `--print-request` of `args` with the demo's exports and a config file whose
/// capacity is FARGATE_SPOT: the request, and stderr.
fn spot_request(args: &[&str]) -> (Output, serde_json::Value, String) {
    let dir = config_file("capacity_provider = \"FARGATE_SPOT\"\n");
    let out = launcher()
        .envs(DEMO_EXPORTS)
        .arg("--config")
        .arg(dir.path().join("config.toml"))
        .arg("--print-request")
        .args(args)
        .output()
        .unwrap();
    let request = serde_json::from_slice(&out.stdout).unwrap_or_default();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    (out, request, stderr)
}

#[test]
fn a_job_that_writes_runs_on_demand_unless_spot_is_allowed() {
    let providers = |request: &serde_json::Value| -> Vec<String> {
        request["capacityProviderStrategy"]
            .as_array()
            .map(|items| {
                items
                    .iter()
                    .map(|i| i["capacityProvider"].as_str().unwrap().to_owned())
                    .collect()
            })
            .unwrap_or_default()
    };
    let (out, request, stderr) = spot_request(&["migrate"]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert_eq!(providers(&request), ["FARGATE"], "{request}");
    assert!(
        stderr.contains("# capacity for this job: FARGATE (weight 1)")
            && stderr.contains("--allow-spot"),
        "{stderr}"
    );
    let (_, request, _) = spot_request(&["--allow-spot", "migrate"]);
    assert_eq!(providers(&request), ["FARGATE_SPOT"], "{request}");
    // A read-only job keeps Spot, and says nothing.
    let (_, request, stderr) = spot_request(&["migrate-info"]);
    assert_eq!(providers(&request), ["FARGATE_SPOT"], "{request}");
    assert!(!stderr.contains("capacity for this job"), "{stderr}");
    // Asked for by flag, for a job that writes: refused before anything is sent.
    let out = launcher()
        .envs(DEMO_EXPORTS)
        .args(["--capacity-provider", "FARGATE_SPOT", "reencrypt"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("add --allow-spot"),
        "{}",
        describe(&out)
    );
}
