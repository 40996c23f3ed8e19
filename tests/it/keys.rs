//! `run-admin-task keys`: rotation and retirement refused while values remain under the
//! previous slot's key and carried out once none do, on the emulator (its agent runs the
//! real companion's `reencrypt --dry-run` against a real PostgreSQL); the Secrets
//! Manager conversations against mocks. Key material never reaches the output.

use std::process::Output;

use crate::common::both_streams;
use crate::common::emulator::{Emulator, Secrets};
use crate::common::{KEK_V1, KEK_V2};
use crate::common::{TestDatabase, describe, migrated_database, psql};
use aws_sdk_secretsmanager::error::ErrorMetadata;
use aws_sdk_secretsmanager::operation::describe_secret::DescribeSecretOutput;
use aws_sdk_secretsmanager::operation::get_secret_value::GetSecretValueOutput;
use aws_sdk_secretsmanager::operation::put_secret_value::{
    PutSecretValueError, PutSecretValueOutput,
};
use aws_smithy_mocks::{RuleMode, mock, mock_client};
use everruns_admin::envelope;
use everruns_admin::keyring::Key;
use everruns_admin::seam::{Slots, slot_status, write_rotation};

const CURRENT: &str = "everruns/encryption-key";
const PREVIOUS: &str = "everruns/encryption-key-previous";

fn material(key: &str) -> &str {
    key.split_once(':').unwrap().1
}

fn assert_no_material(out: &Output, keys: &[&str]) {
    let all = both_streams(out);
    for key in keys {
        let m = material(key);
        assert!(
            !all.contains(m) && !all.contains(m.trim_end_matches('=')),
            "key material reached the output: {}",
            describe(out)
        );
    }
}

fn seed(db: &TestDatabase, key: &str, count: usize, tag: &str) {
    let key = Key::parse(key).unwrap();
    for i in 0..count {
        let payload = envelope::encrypt(format!("sk-{tag}-{i}").as_bytes(), &key).unwrap();
        let hex: String = payload.iter().map(|b| format!("{b:02x}")).collect();
        psql(
            &db.url,
            &format!(
                "INSERT INTO llm_providers (name, provider_type, api_key_encrypted, api_key_set) \
                 VALUES ('{tag}{i}', 'openai', '\\x{hex}', TRUE)"
            ),
        );
    }
}

/// The secret's current value, read straight from the emulator.
fn secret_value(emu: &Emulator, name: &str) -> String {
    let config = aws_sdk_secretsmanager::Config::builder()
        .behavior_version(aws_sdk_secretsmanager::config::BehaviorVersion::latest())
        .region(aws_sdk_secretsmanager::config::Region::new(
            emu.ready.region.clone(),
        ))
        .endpoint_url(&emu.ready.endpoint)
        .credentials_provider(aws_sdk_secretsmanager::config::Credentials::new(
            "testing", "testing", None, None, "tests",
        ))
        .build();
    let client = aws_sdk_secretsmanager::Client::from_conf(config);
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(client.get_secret_value().secret_id(name).send())
        .unwrap()
        .secret_string()
        .unwrap()
        .to_string()
}

fn keys(emu: &Emulator, args: &[&str]) -> Output {
    emu.launcher().arg("keys").args(args).output().unwrap()
}

#[test]
fn rotation_and_retirement_wait_until_no_value_needs_the_previous_slot() {
    let db = migrated_database();
    let emu = Emulator::start(&Secrets {
        database_url: &db.url,
        key: KEK_V2,
        previous: Some(KEK_V1),
    });
    seed(&db, KEK_V1, 3, "old");
    seed(&db, KEK_V2, 2, "cur");

    let status = keys(&emu, &["status"]);
    assert_eq!(status.status.code(), Some(0), "{}", describe(&status));
    let shown = String::from_utf8_lossy(&status.stdout);
    assert!(
        shown.contains("kek-v2") && shown.contains("kek-v1"),
        "{shown}"
    );
    assert!(shown.contains("AWSCURRENT"), "{shown}");
    assert_no_material(&status, &[KEK_V1, KEK_V2]);

    let refused = keys(&emu, &["rotate"]);
    assert_eq!(refused.status.code(), Some(2), "{}", describe(&refused));
    assert!(
        both_streams(&refused).contains("3 under kek-v1"),
        "{}",
        describe(&refused)
    );
    assert!(both_streams(&refused).contains("nothing was changed"));
    assert_eq!(secret_value(&emu, CURRENT), KEK_V2);
    assert_eq!(secret_value(&emu, PREVIOUS), KEK_V1);
    let refused_retire = keys(&emu, &["retire"]);
    assert_eq!(
        refused_retire.status.code(),
        Some(2),
        "{}",
        describe(&refused_retire)
    );
    assert_eq!(secret_value(&emu, PREVIOUS), KEK_V1);

    let reencrypt = emu.launcher().arg("reencrypt").output().unwrap();
    assert_eq!(reencrypt.status.code(), Some(0), "{}", describe(&reencrypt));

    let dry = keys(&emu, &["rotate", "--dry-run"]);
    assert_eq!(dry.status.code(), Some(0), "{}", describe(&dry));
    assert!(both_streams(&dry).contains("kek-v3"), "{}", describe(&dry));
    assert_eq!(
        secret_value(&emu, CURRENT),
        KEK_V2,
        "a dry run writes nothing"
    );

    let rotate = keys(&emu, &["rotate"]);
    assert_eq!(rotate.status.code(), Some(0), "{}", describe(&rotate));
    let new_current = secret_value(&emu, CURRENT);
    assert_eq!(Key::parse(&new_current).unwrap().id(), "kek-v3");
    assert_eq!(
        secret_value(&emu, PREVIOUS),
        KEK_V2,
        "the old current moved"
    );
    assert!(
        both_streams(&rotate).contains("redeploy"),
        "{}",
        describe(&rotate)
    );
    assert_no_material(&rotate, &[KEK_V1, KEK_V2, &new_current]);

    let not_yet = keys(&emu, &["retire"]);
    assert_eq!(not_yet.status.code(), Some(2), "{}", describe(&not_yet));
    assert!(
        both_streams(&not_yet).contains("under kek-v2"),
        "{}",
        describe(&not_yet)
    );
    assert_eq!(secret_value(&emu, PREVIOUS), KEK_V2);

    let reencrypt = emu.launcher().arg("reencrypt").output().unwrap();
    assert_eq!(reencrypt.status.code(), Some(0), "{}", describe(&reencrypt));
    let retire = keys(&emu, &["retire"]);
    assert_eq!(retire.status.code(), Some(0), "{}", describe(&retire));
    assert_eq!(secret_value(&emu, PREVIOUS).trim(), "");
    assert_eq!(secret_value(&emu, CURRENT), new_current);

    let generate = keys(&emu, &["generate"]);
    assert_eq!(generate.status.code(), Some(0), "{}", describe(&generate));
    let stdout = String::from_utf8(generate.stdout.clone()).unwrap();
    assert_eq!(
        stdout.lines().count(),
        1,
        "only the key on stdout: {stdout:?}"
    );
    assert_eq!(Key::parse(stdout.trim()).unwrap().id(), "kek-v4");
    assert!(!String::from_utf8_lossy(&generate.stderr).contains(material(stdout.trim())));
    assert_no_material(&generate, &[&new_current]);
}

#[test]
fn status_fails_when_the_current_key_cannot_be_read() {
    let emu = Emulator::start(&Secrets {
        database_url: "postgres://unused@127.0.0.1:1/none",
        key: "not-a-key",
        previous: Some(KEK_V1),
    });
    let status = keys(&emu, &["status"]);
    assert_eq!(status.status.code(), Some(1), "{}", describe(&status));
    assert!(
        both_streams(&status).contains("must hold exactly one readable key; it holds 0"),
        "{}",
        describe(&status)
    );
    let json = emu
        .launcher()
        .args(["--output", "json", "keys", "status"])
        .output()
        .unwrap();
    assert_eq!(json.status.code(), Some(1), "{}", describe(&json));
    let doc: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(doc["exit_code"], 1);
    assert_eq!(doc["problems"].as_array().map(Vec::len), Some(1), "{doc}");
}

#[test]
fn generate_with_an_id_needs_no_aws_and_refuses_bad_ids() {
    let run = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_run-admin-task"))
            .env_clear()
            .args([
                "--endpoint-url",
                "http://127.0.0.1:9",
                "--region",
                "eu-west-1",
            ])
            .arg("keys")
            .args(args)
            .output()
            .unwrap()
    };
    let out = run(&["generate", "--id", "kek-v7"]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let key = String::from_utf8(out.stdout).unwrap();
    assert_eq!(Key::parse(key.trim()).unwrap().id(), "kek-v7");
    assert!(out.stderr.is_empty());
    let bad = run(&["generate", "--id", "kek v7"]);
    assert_eq!(bad.status.code(), Some(2), "{}", describe(&bad));
}

fn secrets_client(rules: &[&aws_smithy_mocks::Rule]) -> aws_sdk_secretsmanager::Client {
    mock_client!(aws_sdk_secretsmanager, RuleMode::Sequential, rules)
}

#[tokio::test]
async fn status_reports_ids_stages_and_no_material() {
    let describe = mock!(aws_sdk_secretsmanager::Client::describe_secret).then_output(|| {
        DescribeSecretOutput::builder()
            .arn(
                "arn:aws:secretsmanager:eu-west-1:1:secret:everruns/encryption-key-previous-AbCdEf",
            )
            .last_changed_date(aws_sdk_secretsmanager::primitives::DateTime::from_secs(
                1_767_225_600,
            ))
            .version_ids_to_stages("v-1", vec!["AWSCURRENT".to_string()])
            .version_ids_to_stages("v-0", vec!["AWSPREVIOUS".to_string()])
            .build()
    });
    let get = mock!(aws_sdk_secretsmanager::Client::get_secret_value).then_output(|| {
        GetSecretValueOutput::builder()
            .secret_string(format!("{KEK_V1},{KEK_V2}"))
            .build()
    });
    let client = secrets_client(&[&describe, &get]);
    let status = slot_status(&client, PREVIOUS).await.unwrap();
    assert_eq!(status.keys.ids, vec!["kek-v1", "kek-v2"]);
    assert_eq!(status.versions["v-0"], vec!["AWSPREVIOUS"]);
    assert!(status.last_changed.is_some());
    let json = serde_json::to_string(&status).unwrap();
    assert!(
        !json.contains(material(KEK_V1)) && !json.contains(material(KEK_V2)),
        "{json}"
    );
}

#[tokio::test]
async fn rotation_writes_previous_first_then_current() {
    let previous = mock!(aws_sdk_secretsmanager::Client::put_secret_value)
        .match_requests(|r| r.secret_id() == Some(PREVIOUS) && r.secret_string() == Some(KEK_V2))
        .then_output(|| PutSecretValueOutput::builder().build());
    let current = mock!(aws_sdk_secretsmanager::Client::put_secret_value)
        .match_requests(|r| {
            r.secret_id() == Some(CURRENT)
                && r.secret_string().is_some_and(|s| s.starts_with("kek-v3:"))
        })
        .then_output(|| PutSecretValueOutput::builder().build());
    let client = secrets_client(&[&previous, &current]);
    let slots = Slots {
        current: CURRENT.into(),
        previous: Some(PREVIOUS.into()),
    };
    let new_key = everruns_admin::seam::generate("kek-v3").unwrap();
    write_rotation(&client, &slots, KEK_V2, "kek-v2", &new_key, "kek-v3")
        .await
        .unwrap();
    assert_eq!((previous.num_calls(), current.num_calls()), (1, 1));
}

#[tokio::test]
async fn a_failed_second_write_says_nothing_is_lost_and_how_to_finish() {
    let previous = mock!(aws_sdk_secretsmanager::Client::put_secret_value)
        .then_output(|| PutSecretValueOutput::builder().build());
    let current = mock!(aws_sdk_secretsmanager::Client::put_secret_value).then_error(|| {
        PutSecretValueError::generic(
            ErrorMetadata::builder()
                .code("AccessDeniedException")
                .message("not allowed")
                .build(),
        )
    });
    let client = secrets_client(&[&previous, &current]);
    let slots = Slots {
        current: CURRENT.into(),
        previous: Some(PREVIOUS.into()),
    };
    let new_key = everruns_admin::seam::generate("kek-v3").unwrap();
    let err = write_rotation(&client, &slots, KEK_V2, "kek-v2", &new_key, "kek-v3")
        .await
        .unwrap_err();
    let message = err.to_string();
    assert!(message.contains("no key is lost"), "{message}");
    assert!(message.contains("keys rotate --id kek-v3"), "{message}");
    assert!(!message.contains(material(&new_key)), "{message}");
    assert!(!message.contains(material(KEK_V2)), "{message}");
}
