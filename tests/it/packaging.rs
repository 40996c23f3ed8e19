//! Packaging checks, without Docker or network: the admin image's Dockerfile, the task
//! definition template, the IAM policy documents and the examples must agree with the
//! crate, and the operator policy must allow every AWS operation the launcher calls.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::Path;
use std::process::Command;

use crate::common::aws_calls::{SERVICES, UNSCOPABLE, action_name, aws_calls};
use crate::common::dockerfile::{
    Instruction, cargo_build_bins, copy_parts, json_form, normalize, parse_dockerfile,
};
use crate::common::iam::{PolicyDocument, Statement};
use everruns_admin::seam::ConfigFile;
use everruns_admin::seam::{DEFAULT_CONTAINER, DEFAULT_FAMILY};
use serde_json::Value;

const COMPANION: &str = "everruns-admin";
const DOCKERFILE: &str = "admin-image/Dockerfile";
const TEMPLATE: &str = "task-definitions/admin.json.tmpl";
const OPERATOR_POLICY: &str = "task-definitions/iam/operator-policy.json";
const DEPLOYER_POLICY: &str = "task-definitions/iam/deployer-policy.json";
const KEY_ADMIN_POLICY: &str = "task-definitions/iam/key-admin-policy.json";
const EXECUTION_POLICY: &str = "task-definitions/iam/execution-role-policy.json";
const TASK_ROLE_POLICY: &str = "task-definitions/iam/task-role-policy.json";

const TEMPLATE_VARIABLES: [&str; 8] = [
    "ECR_REGISTRY",
    "IMAGE_TAG",
    "EXECUTION_ROLE_ARN",
    "TASK_ROLE_ARN",
    "DATABASE_URL_SECRET_ARN",
    "ENCRYPTION_KEY_SECRET_ARN",
    "ENCRYPTION_KEY_PREVIOUS_SECRET_ARN",
    "AWS_REGION",
];

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn read(relative: &str) -> String {
    fs::read_to_string(root().join(relative))
        .unwrap_or_else(|e| panic!("cannot read {relative}: {e}"))
}

// ---------------------------------------------------------------------------------
// Cargo.toml

/// `[[bin]]` names and paths. Read line by line: the test stays std-only, and the
/// manifest writes each key on its own line.
fn cargo_bins() -> BTreeMap<String, String> {
    let manifest = read("Cargo.toml");
    let mut bins = BTreeMap::new();
    let mut current: Option<(Option<String>, Option<String>)> = None;
    let mut flush = |entry: Option<(Option<String>, Option<String>)>| {
        if let Some((name, path)) = entry {
            let name = name.expect("a [[bin]] without a name");
            let path = path.unwrap_or_else(|| format!("src/bin/{name}.rs"));
            bins.insert(name, path);
        }
    };
    for line in manifest.lines().map(str::trim) {
        if line.starts_with('[') {
            flush(current.take());
            if line == "[[bin]]" {
                current = Some((None, None));
            }
            continue;
        }
        if let Some((name, path)) = current.as_mut() {
            if let Some(value) = toml_string(line, "name") {
                *name = Some(value);
            } else if let Some(value) = toml_string(line, "path") {
                *path = Some(value);
            }
        }
    }
    flush(current.take());
    bins
}

fn toml_string(line: &str, key: &str) -> Option<String> {
    let (k, v) = line.split_once('=')?;
    if k.trim() != key {
        return None;
    }
    let v = v.trim();
    Some(v.strip_prefix('"')?.strip_suffix('"')?.to_string())
}

// ---------------------------------------------------------------------------------
// Dockerfile

#[test]
fn dockerfile_builds_ships_and_runs_the_companion_binary() {
    let bins = cargo_bins();
    let companion_source = bins
        .get(COMPANION)
        .unwrap_or_else(|| panic!("Cargo.toml has no [[bin]] {COMPANION}"));
    assert!(root().join(companion_source).exists());
    let (preamble, stages) = parse_dockerfile(&read(DOCKERFILE));
    assert!(stages.len() >= 2, "a multi-stage build is expected");

    // A `${NAME}` in FROM only resolves from an ARG declared before the first FROM.
    for stage in &stages {
        let from = &stage.instructions[0];
        for name in placeholders(&from.args) {
            assert!(
                preamble
                    .iter()
                    .any(|i| i.keyword == "ARG" && i.args.split('=').next() == Some(name.as_str())),
                "{DOCKERFILE}:{}: FROM uses ${{{name}}} without a global ARG {name}",
                from.line
            );
        }
    }

    // Every COPY --from names a stage defined before it.
    for (index, stage) in stages.iter().enumerate() {
        for copy in stage.all("COPY") {
            let (flags, _, _) = copy_parts(&copy.args);
            if let Some(from) = flags.get("from") {
                let from = from.to_ascii_lowercase();
                let known = stages[..index].iter().enumerate().any(|(i, s)| {
                    s.name.as_deref() == Some(from.as_str()) || i.to_string() == from
                });
                assert!(
                    known,
                    "{DOCKERFILE}:{}: COPY --from={from} names no earlier stage",
                    copy.line
                );
            }
        }
    }

    // The build stage: every `--bin` exists in Cargo.toml; the last build is release,
    // locked, of the companion, and comes after the real sources are copied in.
    let mut build_stage = None;
    for stage in &stages {
        let runs: Vec<&Instruction> = stage.all("RUN").collect();
        for run in &runs {
            if let Some(names) = cargo_build_bins(&run.args) {
                for name in &names {
                    assert!(
                        bins.contains_key(name),
                        "{DOCKERFILE}:{}: --bin {name} is not a [[bin]] of Cargo.toml ({:?})",
                        run.line,
                        bins.keys().collect::<Vec<_>>()
                    );
                }
                for flag in ["--release", "--locked"] {
                    assert!(
                        run.args.contains(flag),
                        "{DOCKERFILE}:{}: cargo build without {flag}",
                        run.line
                    );
                }
                if names.iter().any(|n| n == COMPANION) {
                    build_stage = Some((stage, run.line));
                }
            }
        }
    }
    let (build, build_line) = build_stage.expect("no `cargo build --bin everruns-admin` stage");
    let build_name = build
        .name
        .clone()
        .expect("the build stage needs a name (AS ...)");
    let copied: Vec<(usize, String)> = build
        .all("COPY")
        .flat_map(|copy| {
            let (_, sources, _) = copy_parts(&copy.args);
            sources.into_iter().map(move |s| (copy.line, normalize(&s)))
        })
        .collect();
    for needed in ["Cargo.toml", "Cargo.lock", "build.rs", "src", "migrations"] {
        let at = copied
            .iter()
            .find(|(_, s)| s == needed)
            .unwrap_or_else(|| panic!("the build stage does not COPY {needed}"));
        assert!(
            at.0 < build_line,
            "{needed} is copied after the last cargo build"
        );
    }
    let workdir = build
        .instructions
        .iter()
        .rev()
        .find(|i| i.keyword == "WORKDIR" && i.line < build_line)
        .map(|i| i.args.trim_end_matches('/').to_string())
        .expect("the build stage sets a WORKDIR");

    // The runtime stage copies that binary and runs it.
    let runtime = stages.last().unwrap();
    let built = format!("{workdir}/target/release/{COMPANION}");
    let shipped = runtime
        .all("COPY")
        .find_map(|copy| {
            let (flags, sources, dest) = copy_parts(&copy.args);
            let from = flags.get("from")?.to_ascii_lowercase();
            (from == build_name && sources.contains(&built)).then_some(dest)
        })
        .unwrap_or_else(|| panic!("the runtime stage does not COPY --from={build_name} {built}"));
    let shipped = if shipped.ends_with('/') {
        format!("{shipped}{COMPANION}")
    } else {
        shipped
    };
    let entrypoint = json_form(&runtime.last("ENTRYPOINT").expect("no ENTRYPOINT").args);
    assert_eq!(
        entrypoint,
        vec![shipped.clone()],
        "ENTRYPOINT must run the copied binary"
    );
    assert_eq!(
        shipped.rsplit('/').next(),
        Some(COMPANION),
        "the binary keeps its [[bin]] name"
    );
    let cmd = json_form(&runtime.last("CMD").expect("no CMD").args);
    assert_eq!(cmd, vec!["help"]);

    // `help` is a real subcommand of the binary the image ships.
    let out = Command::new(env!("CARGO_BIN_EXE_everruns-admin"))
        .arg("help")
        .output()
        .expect("run everruns-admin help");
    assert!(out.status.success(), "everruns-admin help failed: {out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("migrate"), "unexpected help output: {text}");
}

#[test]
fn dockerfile_runs_as_non_root_and_labels_the_revision() {
    let text = read(DOCKERFILE);
    let (_, stages) = parse_dockerfile(&text);
    let runtime = stages.last().unwrap();
    let user = runtime
        .last("USER")
        .expect("the runtime stage sets no USER");
    let name = user.args.split(':').next().unwrap_or_default();
    assert!(
        !name.is_empty() && name != "root" && name != "0",
        "{DOCKERFILE}:{}: USER {} is root",
        user.line,
        user.args
    );
    assert!(
        runtime
            .all("ARG")
            .any(|a| a.args.starts_with("GIT_REVISION")),
        "the runtime stage declares no ARG GIT_REVISION (LABELs see only their own stage's ARGs)"
    );
    let labels: String = runtime
        .all("LABEL")
        .map(|l| l.args.as_str())
        .collect::<Vec<_>>()
        .join(" ");
    for needed in [
        "org.opencontainers.image.revision=\"${GIT_REVISION}\"",
        "org.opencontainers.image.source=",
        "org.opencontainers.image.title=",
    ] {
        assert!(labels.contains(needed), "no LABEL {needed}");
    }
    for tool in ["ca-certificates", "bash", "curl", "postgresql-client"] {
        assert!(
            runtime
                .all("RUN")
                .any(|r| r.args.split_whitespace().any(|w| w == tool)),
            "the runtime stage does not install {tool}"
        );
    }
}

#[test]
fn dockerignore_keeps_build_output_and_history_out_but_not_the_sources() {
    let patterns: Vec<String> = read(".dockerignore")
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| l.trim_start_matches('/').trim_end_matches('/').to_string())
        .collect();
    for needed in ["target", ".git"] {
        assert!(
            patterns.iter().any(|p| p == needed),
            ".dockerignore does not exclude {needed}/"
        );
    }
    // What the Dockerfile copies from the context must exist and not be ignored.
    let (_, stages) = parse_dockerfile(&read(DOCKERFILE));
    for stage in &stages {
        for copy in stage.all("COPY") {
            let (flags, sources, _) = copy_parts(&copy.args);
            if flags.contains_key("from") {
                continue;
            }
            for source in sources {
                let source = normalize(&source);
                assert!(
                    root().join(&source).exists(),
                    "{DOCKERFILE}:{}: COPY {source}: no such file in the repository",
                    copy.line
                );
                let ignored = patterns.iter().find(|p| {
                    !p.starts_with('!') && (source == **p || source.starts_with(&format!("{p}/")))
                });
                assert!(
                    ignored.is_none(),
                    "{DOCKERFILE}:{}: COPY {source} but .dockerignore excludes it ({ignored:?})",
                    copy.line
                );
            }
        }
    }
}

// ---------------------------------------------------------------------------------
// Templates

/// The `${NAME}` placeholders of a template, in order of appearance.
fn placeholders(text: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find("${") {
        let after = &rest[at + 2..];
        let end = after
            .find('}')
            .unwrap_or_else(|| panic!("unclosed ${{ in {}", &rest[at..]));
        names.push(after[..end].to_string());
        rest = &after[end + 1..];
    }
    names
}

/// The template with every `${NAME}` replaced by `@NAME@`, parsed.
fn render(relative: &str) -> (Value, BTreeSet<String>) {
    let text = read(relative);
    let names: BTreeSet<String> = placeholders(&text).into_iter().collect();
    let mut rendered = text.clone();
    for name in &names {
        assert!(
            !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_'),
            "{relative}: ${{{name}}} is not a NAME placeholder"
        );
        rendered = rendered.replace(&format!("${{{name}}}"), &format!("@{name}@"));
    }
    assert!(
        !rendered.contains('$'),
        "{relative}: a `$` that is not a ${{NAME}} placeholder is left"
    );
    let value = serde_json::from_str(&rendered)
        .unwrap_or_else(|e| panic!("{relative} is not valid JSON once rendered: {e}"));
    (value, names)
}

#[test]
fn task_definition_template_is_complete() {
    let (def, names) = render(TEMPLATE);
    let expected: BTreeSet<String> = TEMPLATE_VARIABLES.iter().map(|s| s.to_string()).collect();
    assert_eq!(
        names, expected,
        "the template must use exactly these variables"
    );

    assert_eq!(def["family"], DEFAULT_FAMILY);
    assert_eq!(
        def["requiresCompatibilities"],
        serde_json::json!(["FARGATE"])
    );
    assert_eq!(def["networkMode"], "awsvpc");
    assert_eq!(def["cpu"], "256");
    assert_eq!(def["memory"], "512");
    assert_eq!(def["executionRoleArn"], "@EXECUTION_ROLE_ARN@");
    assert_eq!(def["taskRoleArn"], "@TASK_ROLE_ARN@");

    let containers = def["containerDefinitions"]
        .as_array()
        .expect("containerDefinitions");
    let admin = containers
        .iter()
        .find(|c| c["name"] == DEFAULT_CONTAINER)
        .unwrap_or_else(|| panic!("no container {DEFAULT_CONTAINER}"));
    assert_eq!(admin["essential"], true);
    assert_eq!(admin["image"], "@ECR_REGISTRY@/everruns-admin:@IMAGE_TAG@");
    assert_eq!(
        admin["stopTimeout"], 120,
        "reencrypt needs time to finish its batch"
    );
    assert_eq!(
        admin["linuxParameters"]["initProcessEnabled"], true,
        "ECS Exec"
    );

    let logs = &admin["logConfiguration"];
    assert_eq!(logs["logDriver"], "awslogs");
    let options = &logs["options"];
    assert_eq!(options["awslogs-group"], "/ecs/everruns-admin");
    assert_eq!(options["awslogs-region"], "@AWS_REGION@");
    assert_eq!(options["awslogs-stream-prefix"], "admin");
    assert!(
        options.get("awslogs-create-group").is_none() || options["awslogs-create-group"] == "false",
        "the log group is created once by an operator"
    );

    let secrets: BTreeMap<&str, &str> = admin["secrets"]
        .as_array()
        .expect("secrets")
        .iter()
        .map(|s| {
            (
                s["name"].as_str().expect("secret name"),
                s["valueFrom"].as_str().expect("secret valueFrom"),
            )
        })
        .collect();
    let expected_secrets = BTreeMap::from([
        ("DATABASE_URL", "@DATABASE_URL_SECRET_ARN@"),
        ("SECRETS_ENCRYPTION_KEY", "@ENCRYPTION_KEY_SECRET_ARN@"),
        (
            "SECRETS_ENCRYPTION_KEY_PREVIOUS",
            "@ENCRYPTION_KEY_PREVIOUS_SECRET_ARN@",
        ),
    ]);
    assert_eq!(secrets, expected_secrets);

    let environment: BTreeMap<&str, &str> = admin["environment"]
        .as_array()
        .expect("environment")
        .iter()
        .map(|e| (e["name"].as_str().unwrap(), e["value"].as_str().unwrap()))
        .collect();
    assert_eq!(environment.get("RUST_LOG"), Some(&"info"));
    for secret in expected_secrets.keys() {
        assert!(
            !environment.contains_key(secret),
            "{secret} must come from Secrets Manager, not plain environment"
        );
    }
}

// ---------------------------------------------------------------------------------
// IAM policies

/// A policy's Allow statements, placeholders rendered as `@NAME@`.
fn policy(relative: &str) -> Vec<Statement> {
    let (_, names) = render(relative);
    let values = names
        .iter()
        .map(|name| (name.as_str(), format!("@{name}@")))
        .collect();
    assert_eq!(
        serde_json::from_str::<Value>(&read(relative))
            .map(|d| d["Version"].clone())
            .ok(),
        Some(Value::from("2012-10-17")),
        "{relative}: policy Version"
    );
    PolicyDocument::parse(relative, &read(relative), &values).statements
}

fn allowed(statements: &[Statement]) -> BTreeSet<String> {
    statements
        .iter()
        .flat_map(|s| s.actions.iter().cloned())
        .collect()
}

#[test]
fn execution_and_task_role_policies_grant_what_ecs_needs() {
    let execution = policy(EXECUTION_POLICY);
    let secret_resources: BTreeSet<String> = execution
        .iter()
        .filter(|s| {
            s.actions
                .iter()
                .any(|a| a == "secretsmanager:GetSecretValue")
        })
        .flat_map(|s| s.resources.iter().cloned())
        .collect();
    let expected: BTreeSet<String> = [
        "@DATABASE_URL_SECRET_ARN@",
        "@ENCRYPTION_KEY_SECRET_ARN@",
        "@ENCRYPTION_KEY_PREVIOUS_SECRET_ARN@",
    ]
    .into_iter()
    .map(String::from)
    .collect();
    assert_eq!(
        secret_resources, expected,
        "the execution role reads exactly the three secrets"
    );
    let actions = allowed(&execution);
    for needed in [
        "logs:CreateLogStream",
        "logs:PutLogEvents",
        "ecr:GetAuthorizationToken",
        "ecr:BatchGetImage",
        "ecr:GetDownloadUrlForLayer",
    ] {
        assert!(actions.contains(needed), "{EXECUTION_POLICY}: no {needed}");
    }
    for s in &execution {
        if s.actions.iter().any(|a| a.starts_with("logs:")) {
            assert!(
                s.resources
                    .iter()
                    .all(|r| r.contains(":log-group:/ecs/everruns-admin:")),
                "{EXECUTION_POLICY}: logs permissions beyond the admin log group"
            );
        }
    }

    let task = allowed(&policy(TASK_ROLE_POLICY));
    let exec: BTreeSet<String> = [
        "CreateControlChannel",
        "CreateDataChannel",
        "OpenControlChannel",
        "OpenDataChannel",
    ]
    .iter()
    .map(|a| format!("ssmmessages:{a}"))
    .collect();
    assert_eq!(task, exec, "the task role only opens ECS Exec channels");
}

#[test]
fn call_scanner_tells_services_apart_and_ignores_comments_and_strings() {
    let source = r#"
        use aws_sdk_ecs::types::Tag;
        // .stop_task() in a comment is not a call
        let s = "a string with .get_secret_value() is not one either";
        let reply = clients
            .ecs
            .run_task()
            .tags(Tag::builder().build())
            .send();
        clients.logs.tag_resource().send();
        let c = '"'; let d = '\'';
        logs.get_log_events().send(); /* .list_tasks() */
        self.run_task(); // argument-less, so it counts like an SDK call
        ecs.wait_until_tasks_stopped().wait(x);
        secrets.put_secret_value().send();
        other.describe_tasks(&arg);
    "#;
    let calls = aws_calls(source).unwrap();
    let found: Vec<(&str, Vec<&str>)> = calls
        .iter()
        .map(|c| {
            (
                c.method.as_str(),
                c.actions.iter().map(String::as_str).collect(),
            )
        })
        .collect();
    assert_eq!(
        found,
        vec![
            (
                "run_task",
                vec!["ecs:RunTask", "iam:PassRole", "ecs:TagResource"]
            ),
            ("tag_resource", vec!["logs:TagResource"]),
            ("get_log_events", vec!["logs:GetLogEvents"]),
            (
                "run_task",
                vec!["ecs:RunTask", "iam:PassRole", "ecs:TagResource"]
            ),
            ("wait_until_tasks_stopped", vec!["ecs:DescribeTasks"]),
            ("put_secret_value", vec!["secretsmanager:PutSecretValue"]),
        ]
    );
    assert_eq!(calls[0].line, 7, "line numbers survive comment stripping");

    // A shared name with no receiver hint, in a file importing two SDKs, is an error.
    let ambiguous = "use aws_sdk_ecs::X; use aws_sdk_cloudwatchlogs::Y; c.tag_resource().send();";
    assert!(aws_calls(ambiguous).unwrap_err().contains("tag_resource"));
    // ... and the file's only SDK import settles it.
    let settled = aws_calls("use aws_sdk_ecs::X; c.untag_resource().send();").unwrap();
    assert_eq!(settled[0].actions, vec!["ecs:UntagResource"]);
}

/// The operator's boundary: no way to read a secret's value or to run an image of their
/// own (a task definition registered by them would receive the secrets).
#[test]
fn the_operator_policy_reads_no_secret_and_registers_nothing() {
    let granted = allowed(&policy(OPERATOR_POLICY));
    for action in [
        "ecs:RegisterTaskDefinition",
        "secretsmanager:GetSecretValue",
        "secretsmanager:BatchGetSecretValue",
        "secretsmanager:PutSecretValue",
        "logs:CreateLogStream",
    ] {
        assert!(
            !granted.contains(action),
            "{OPERATOR_POLICY} grants {action}"
        );
    }
}

#[test]
fn shipped_policies_grant_nothing_unknown_or_unscoped() {
    for file in [OPERATOR_POLICY, DEPLOYER_POLICY, KEY_ADMIN_POLICY] {
        policy_grants_nothing_unknown_or_unscoped(file);
    }
}

fn policy_grants_nothing_unknown_or_unscoped(file: &str) {
    let statements = policy(file);
    let granted = allowed(&statements);
    for action in &granted {
        assert!(!action.contains('*'), "{file}: wildcard {action}");
        let (prefix, _) = action.split_once(':').expect("service:Action");
        let known = action == "iam:PassRole"
            || SERVICES.iter().any(|s| {
                s.prefix == prefix
                    && s.operations
                        .split_whitespace()
                        .any(|op| action_name(prefix, op) == *action)
            });
        assert!(
            known,
            "{file}: {action} is not an operation of ECS, CloudWatch Logs, \
             Secrets Manager, EC2 or ECR"
        );
    }
    for s in &statements {
        if s.resources.iter().any(|r| r == "*") {
            for action in &s.actions {
                assert!(
                    UNSCOPABLE.contains(&action.as_str()),
                    "{file}: {action} on every resource; scope it"
                );
            }
            if s.actions.iter().any(|a| a == "ecs:ListTasks") {
                assert!(
                    s.condition
                        .get("ArnEquals")
                        .is_some_and(|keys| keys.contains_key("ecs:cluster")),
                    "ListTasks on * must be narrowed to the cluster"
                );
            }
        }
        if s.actions.iter().any(|a| a == "iam:PassRole") {
            assert_eq!(
                s.actions,
                vec!["iam:PassRole"],
                "PassRole in a statement of its own"
            );
            let roles: BTreeSet<&str> = s.resources.iter().map(String::as_str).collect();
            assert_eq!(
                roles,
                BTreeSet::from(["@EXECUTION_ROLE_ARN@", "@TASK_ROLE_ARN@"])
            );
            assert_eq!(
                s.condition["StringEquals"]["iam:PassedToService"],
                vec!["ecs-tasks.amazonaws.com"]
            );
        }
        if s.actions
            .iter()
            .any(|a| a.starts_with("secretsmanager:") && a != "secretsmanager:DescribeSecret")
        {
            assert!(
                !s.resources.iter().any(|r| r.contains("DATABASE_URL")),
                "{file}: no role reads or writes the database URL's secret, only ECS does"
            );
        }
    }
}

// ---------------------------------------------------------------------------------
// Examples

#[test]
fn example_config_uses_the_launchers_keys() {
    let path = root().join("examples/config.toml");
    let text = read("examples/config.toml");
    let config = ConfigFile::parse(&text, &path).unwrap_or_else(|e| panic!("{e}"));
    let staging = config.env.get("staging").expect("[env.staging]");
    let production = config.env.get("production").expect("[env.production]");
    assert_eq!(production.confirm, Some(true), "production confirms");
    assert_ne!(staging.confirm, Some(true));
    assert!(production.cluster.is_some() && staging.cluster.is_some());
}

#[test]
fn deploy_workflow_matches_the_image_and_the_gate() {
    let workflow = read("examples/github-actions-deploy.yml");
    assert!(workflow.contains(&format!("-f {DOCKERFILE}")));
    let dockerfile = read(DOCKERFILE);
    let mut rest = workflow.as_str();
    let mut build_args = 0;
    while let Some(at) = rest.find("--build-arg ") {
        let arg = &rest[at + "--build-arg ".len()..];
        let name = &arg[..arg.find('=').expect("--build-arg NAME=VALUE")];
        assert!(
            dockerfile.contains(&format!("ARG {name}")),
            "the workflow passes --build-arg {name}, which the Dockerfile does not declare"
        );
        build_args += 1;
        rest = arg;
    }
    assert!(build_args > 0 && workflow.contains("GIT_REVISION"));
    for needed in [
        "task-def register --image-tag",
        "aws-actions/configure-aws-credentials",
        "role-to-assume:",
        "id-token: write",
        "ECS_SERVICE:",
        "uses: ./examples/github-action",
        "command: migrate-info\n          args: --check",
        "command: migrate\n",
        "steps.gate.outputs.exit-code == '3'",
        "steps.migrate.outputs.result",
    ] {
        assert!(workflow.contains(needed), "the workflow lacks {needed:?}");
    }
    assert!(
        !workflow.contains("ECS_SUBNETS"),
        "the service gives the network"
    );
}

/// The top-level keys of `section:` in a YAML file: the lines indented by two spaces
/// under it.
fn yaml_keys(text: &str, section: &str) -> BTreeSet<String> {
    text.lines()
        .skip_while(|l| *l != format!("{section}:"))
        .skip(1)
        .take_while(|l| l.is_empty() || l.starts_with(' '))
        .filter(|l| l.starts_with("  ") && !l.starts_with("   "))
        .filter_map(|l| l.trim().strip_suffix(':').map(str::to_string))
        .collect()
}

#[test]
fn the_github_action_passes_its_inputs_and_exposes_the_launchers_outputs() {
    let action = read("examples/github-action/action.yml");
    let written: BTreeSet<String> =
        everruns_admin::seam::outputs(&everruns_admin::seam::TaskReport::default())
            .lines()
            .map(|l| l.split_once('=').unwrap().0.to_string())
            .collect();
    assert_eq!(yaml_keys(&action, "outputs"), written);
    for output in &written {
        assert!(
            action.contains(&format!("${{{{ steps.run.outputs.{output} }}}}")),
            "output {output} is not taken from the launcher's step"
        );
    }
    let inputs = yaml_keys(&action, "inputs");
    for input in &inputs {
        assert!(
            action.contains(&format!("${{{{ inputs.{input} }}}}"))
                || action.contains(&format!("${{{{ inputs.{input} ||")),
            "input {input} is never used"
        );
    }
    let workflow = read("examples/github-actions-deploy.yml");
    for line in workflow.lines().map(str::trim) {
        if let Some((key, _)) = line.split_once(": ")
            && ["command", "args", "task-definition", "timeout", "revision"].contains(&key)
        {
            assert!(
                inputs.contains(key),
                "the workflow passes {key}, not an input"
            );
        }
    }
    assert!(action.contains("exec run-admin-task --ci github"));
    assert!(action.contains("cargo install --locked --git"));
}

#[test]
fn the_oidc_trust_policy_pins_one_repository_and_branch() {
    let text = read("task-definitions/iam/github-oidc-trust-policy.json");
    let policy: Value = serde_json::from_str(&text).unwrap();
    let statement = &policy["Statement"][0];
    assert_eq!(statement["Action"], "sts:AssumeRoleWithWebIdentity");
    assert!(
        statement["Principal"]["Federated"]
            .as_str()
            .unwrap()
            .ends_with(":oidc-provider/token.actions.githubusercontent.com")
    );
    let equals = &statement["Condition"]["StringEquals"];
    assert_eq!(
        equals["token.actions.githubusercontent.com:aud"],
        "sts.amazonaws.com"
    );
    assert_eq!(
        equals["token.actions.githubusercontent.com:sub"],
        "repo:${GITHUB_REPOSITORY}:ref:refs/heads/${GITHUB_BRANCH}"
    );
    assert!(
        statement["Condition"].get("StringLike").is_none(),
        "no wildcards in the subject"
    );
}
