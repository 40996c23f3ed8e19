//! Packaging checks, without Docker or network: the admin image's Dockerfile, the task
//! definition template, the IAM policy documents and the examples must agree with the
//! crate, and the operator policy must allow every AWS operation the launcher calls.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::rust_source::{code_only, is_ident};
use everruns_admin::launcher::config::{DEFAULT_CONTAINER, DEFAULT_FAMILY};
use everruns_admin::launcher::config_file::ConfigFile;
use serde_json::Value;

const COMPANION: &str = "everruns-admin";
const DOCKERFILE: &str = "admin-image/Dockerfile";
const TEMPLATE: &str = "task-definitions/admin.json.tmpl";
const OPERATOR_POLICY: &str = "task-definitions/iam/operator-policy.json";
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

#[derive(Debug)]
struct Instruction {
    line: usize,
    keyword: String,
    args: String,
}

#[derive(Debug)]
struct Stage {
    name: Option<String>,
    instructions: Vec<Instruction>,
}

impl Stage {
    fn all<'a>(&'a self, keyword: &'a str) -> impl Iterator<Item = &'a Instruction> + 'a {
        self.instructions
            .iter()
            .filter(move |i| i.keyword == keyword)
    }

    fn last(&self, keyword: &str) -> Option<&Instruction> {
        self.instructions
            .iter()
            .rev()
            .find(|i| i.keyword == keyword)
    }
}

/// Splits a Dockerfile into the instructions before the first FROM (global ARGs) and
/// its stages, joining continuation lines and dropping comments (Docker drops comment
/// lines inside continuations too).
fn parse_dockerfile(text: &str) -> (Vec<Instruction>, Vec<Stage>) {
    let mut preamble = Vec::new();
    let mut stages: Vec<Stage> = Vec::new();
    let mut pending = String::new();
    let mut start = 0;
    for (index, raw) in text.lines().enumerate() {
        let trimmed = raw.trim();
        if trimmed.starts_with('#') || (trimmed.is_empty() && pending.is_empty()) {
            continue;
        }
        if pending.is_empty() {
            start = index + 1;
        }
        match trimmed.strip_suffix('\\') {
            Some(head) => {
                pending.push_str(head);
                pending.push(' ');
                continue;
            }
            None => pending.push_str(trimmed),
        }
        let line = std::mem::take(&mut pending);
        let (keyword, args) = line.split_once(char::is_whitespace).unwrap_or((&line, ""));
        let instruction = Instruction {
            line: start,
            keyword: keyword.to_ascii_uppercase(),
            args: args.trim().to_string(),
        };
        if instruction.keyword == "FROM" {
            let words: Vec<&str> = instruction.args.split_whitespace().collect();
            let name = match words.as_slice() {
                [.., as_word, name] if as_word.eq_ignore_ascii_case("as") => {
                    Some(name.to_ascii_lowercase())
                }
                _ => None,
            };
            stages.push(Stage {
                name,
                instructions: vec![instruction],
            });
        } else if let Some(stage) = stages.last_mut() {
            stage.instructions.push(instruction);
        } else {
            preamble.push(instruction);
        }
    }
    assert!(
        pending.is_empty(),
        "the Dockerfile ends inside a continuation"
    );
    (preamble, stages)
}

/// A COPY/ADD's `--flag=value` options, sources and destination (shell form).
fn copy_parts(args: &str) -> (BTreeMap<String, String>, Vec<String>, String) {
    let mut flags = BTreeMap::new();
    let mut words = Vec::new();
    for word in args.split_whitespace() {
        match word.strip_prefix("--") {
            Some(flag) if words.is_empty() => {
                let (k, v) = flag.split_once('=').unwrap_or((flag, ""));
                flags.insert(k.to_string(), v.to_string());
            }
            _ => words.push(word.to_string()),
        }
    }
    let dest = words.pop().expect("COPY without a destination");
    (flags, words, dest)
}

fn json_form(args: &str) -> Vec<String> {
    let value: Value = serde_json::from_str(args)
        .unwrap_or_else(|e| panic!("{args} is not the JSON (exec) form: {e}"));
    value
        .as_array()
        .expect("exec form is an array")
        .iter()
        .map(|v| v.as_str().expect("exec form holds strings").to_string())
        .collect()
}

/// The `--bin` names of a `cargo build` command line.
fn cargo_build_bins(run: &str) -> Option<Vec<String>> {
    if !run.contains("cargo build") {
        return None;
    }
    let words: Vec<&str> = run.split_whitespace().collect();
    let mut bins = Vec::new();
    for (i, word) in words.iter().enumerate() {
        if let Some(name) = word.strip_prefix("--bin=") {
            bins.push(name.to_string());
        } else if *word == "--bin" {
            bins.push(words.get(i + 1).expect("--bin without a name").to_string());
        }
    }
    Some(bins)
}

fn normalize(path: &str) -> String {
    path.trim_start_matches("./")
        .trim_end_matches('/')
        .to_string()
}

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

struct Statement {
    actions: Vec<String>,
    resources: Vec<String>,
    condition: Value,
}

fn strings(value: &Value) -> Vec<String> {
    match value {
        Value::String(s) => vec![s.clone()],
        Value::Array(items) => items
            .iter()
            .map(|v| v.as_str().expect("a string").to_string())
            .collect(),
        Value::Null => Vec::new(),
        other => panic!("expected a string or a list, got {other}"),
    }
}

/// A policy's Allow statements, placeholders rendered as `@NAME@`.
fn policy(relative: &str) -> Vec<Statement> {
    let (doc, _) = render(relative);
    assert_eq!(doc["Version"], "2012-10-17", "{relative}: policy Version");
    doc["Statement"]
        .as_array()
        .unwrap_or_else(|| panic!("{relative}: no Statement list"))
        .iter()
        .map(|s| {
            assert_eq!(s["Effect"], "Allow", "{relative}: only Allow statements");
            assert!(
                s.get("NotAction").is_none() && s.get("NotResource").is_none(),
                "{relative}: NotAction/NotResource grant too much"
            );
            let statement = Statement {
                actions: strings(&s["Action"]),
                resources: strings(&s["Resource"]),
                condition: s["Condition"].clone(),
            };
            assert!(
                !statement.actions.is_empty() && !statement.resources.is_empty(),
                "{relative}: a statement without Action or Resource"
            );
            statement
        })
        .collect()
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

// Every operation of the services the launcher talks to, as the SDK names its fluent
// methods. An unknown name is not an AWS call; a known one must be in the policy.
const ECS_OPERATIONS: &str = "
    associate_gateway_with_cluster continue_service_deployment create_capacity_provider
    create_cluster create_daemon create_express_gateway_service create_gateway
    create_service create_task_set delete_account_setting delete_attributes
    delete_capacity_provider delete_cluster delete_daemon delete_daemon_task_definition
    delete_express_gateway_service delete_gateway delete_service delete_task_definitions
    delete_task_set deregister_container_instance deregister_task_definition
    describe_capacity_providers describe_clusters describe_container_instances
    describe_daemon describe_daemon_deployments describe_daemon_revisions
    describe_daemon_task_definition describe_express_gateway_service describe_gateway
    describe_gateway_resources describe_gateway_route describe_service_deployments
    describe_service_revisions describe_services describe_task_definition
    describe_task_sets describe_tasks disassociate_gateway_from_cluster
    discover_poll_endpoint execute_command get_task_protection list_account_settings
    list_attributes list_clusters list_container_instances list_daemon_deployments
    list_daemon_task_definitions list_daemons list_gateway_cluster_associations
    list_gateway_routes list_gateways list_service_deployments list_services
    list_services_by_namespace list_tags_for_resource list_task_definition_families
    list_task_definitions list_tasks put_account_setting put_account_setting_default
    put_attributes put_cluster_capacity_providers register_container_instance
    register_daemon_task_definition register_task_definition run_task start_task
    stop_service_deployment stop_task submit_attachment_state_changes
    submit_container_state_change submit_task_state_change tag_resource untag_resource
    update_capacity_provider update_cluster update_cluster_settings
    update_container_agent update_container_instances_state update_daemon
    update_express_gateway_service update_gateway update_service
    update_service_primary_task_set update_task_protection update_task_set";

const LOGS_OPERATIONS: &str = "
    associate_kms_key associate_source_to_s3_table_integration cancel_export_task
    cancel_import_task create_delivery create_export_task create_import_task
    create_log_anomaly_detector create_log_group create_log_stream create_lookup_table
    create_scheduled_query delete_account_policy delete_data_protection_policy
    delete_delivery delete_delivery_destination delete_delivery_destination_policy
    delete_delivery_source delete_destination delete_index_policy delete_integration
    delete_log_anomaly_detector delete_log_group delete_log_stream delete_lookup_table
    delete_metric_filter delete_query_definition delete_resource_policy
    delete_retention_policy delete_scheduled_query delete_subscription_filter
    delete_syslog_configuration delete_transformer describe_account_policies
    describe_configuration_templates describe_deliveries describe_delivery_destinations
    describe_delivery_sources describe_destinations describe_export_tasks
    describe_field_indexes describe_import_task_batches describe_import_tasks
    describe_index_policies describe_log_groups describe_log_streams
    describe_lookup_tables describe_metric_filters describe_queries
    describe_query_definitions describe_resource_policies describe_subscription_filters
    disassociate_kms_key disassociate_source_from_s3_table_integration filter_log_events
    get_data_protection_policy get_delivery get_delivery_destination
    get_delivery_destination_policy get_delivery_source get_integration
    get_log_anomaly_detector get_log_events get_log_fields get_log_group_fields
    get_log_object get_log_record get_lookup_table get_query_results
    get_scheduled_query get_scheduled_query_history get_storage_tier_policy
    get_transformer list_aggregate_log_group_summaries list_anomalies list_integrations
    list_log_anomaly_detectors list_log_groups list_log_groups_for_query
    list_scheduled_queries list_sources_for_s3_table_integration
    list_syslog_configurations list_tags_for_resource list_tags_log_group
    put_account_policy put_bearer_token_authentication put_data_protection_policy
    put_delivery_destination put_delivery_destination_policy put_delivery_source
    put_destination put_destination_policy put_index_policy put_integration
    put_log_events put_log_group_deletion_protection put_metric_filter
    put_query_definition put_resource_policy put_retention_policy
    put_storage_tier_policy put_subscription_filter put_syslog_configuration
    put_transformer start_live_tail start_query stop_query tag_log_group tag_resource
    test_metric_filter test_transformer untag_log_group untag_resource update_anomaly
    update_delivery_configuration update_log_anomaly_detector update_lookup_table
    update_scheduled_query";

const SECRETS_MANAGER_OPERATIONS: &str = "
    batch_get_secret_value cancel_rotate_secret create_secret delete_resource_policy
    delete_secret describe_secret get_random_password get_resource_policy
    get_secret_value list_secret_version_ids list_secrets put_resource_policy
    put_secret_value remove_regions_from_replication replicate_secret_to_regions
    restore_secret rotate_secret stop_replication_to_replica tag_resource
    untag_resource update_secret update_secret_version_stage validate_resource_policy";

// The operation modules of aws-sdk-ec2 1.274 and aws-sdk-ecr 1.138.
const EC2_OPERATIONS: &str = "
    accept_address_transfer accept_capacity_reservation_billing_ownership
    accept_reserved_instances_exchange_quote
    accept_transit_gateway_client_vpn_attachment
    accept_transit_gateway_multicast_domain_associations
    accept_transit_gateway_peering_attachment accept_transit_gateway_vpc_attachment
    accept_vpc_endpoint_connections accept_vpc_peering_connection advertise_byoip_cidr
    allocate_address allocate_hosts allocate_ipam_pool_cidr
    apply_security_groups_to_client_vpn_target_network assign_ipv6_addresses
    assign_private_ip_addresses assign_private_nat_gateway_address associate_address
    associate_application_status_check associate_capacity_reservation_billing_owner
    associate_client_vpn_target_network associate_dhcp_options
    associate_enclave_certificate_iam_role associate_iam_instance_profile
    associate_instance_event_window associate_ipam_byoasn
    associate_ipam_resource_discovery associate_nat_gateway_address
    associate_route_server associate_route_table associate_security_group_vpc
    associate_subnet_cidr_block associate_transit_gateway_multicast_domain
    associate_transit_gateway_policy_table associate_transit_gateway_route_table
    associate_trunk_interface associate_vpc_cidr_block attach_classic_link_vpc
    attach_image_watermark attach_internet_gateway attach_network_interface
    attach_verified_access_trust_provider attach_volume attach_vpn_gateway
    authorize_client_vpn_ingress authorize_security_group_egress
    authorize_security_group_ingress batch_modify_ipam_routing_policy_registrations
    bundle_instance cancel_bundle_task cancel_capacity_reservation
    cancel_capacity_reservation_fleets cancel_conversion_task
    cancel_declarative_policies_report cancel_export_task
    cancel_image_launch_permission cancel_import_task
    cancel_reserved_instances_listing cancel_spot_fleet_requests
    cancel_spot_instance_requests confirm_product_instance copy_fpga_image copy_image
    copy_snapshot copy_volumes create_application_status_check
    create_capacity_manager_data_export create_capacity_reservation
    create_capacity_reservation_by_splitting
    create_capacity_reservation_cancellation_quote
    create_capacity_reservation_date_change_quote create_capacity_reservation_fleet
    create_carrier_gateway create_client_vpn_endpoint create_client_vpn_route
    create_coip_cidr create_coip_pool create_customer_gateway create_default_subnet
    create_default_vpc create_delegate_mac_volume_ownership_task create_dhcp_options
    create_egress_only_internet_gateway create_fleet create_flow_logs
    create_fpga_image create_image create_image_usage_report
    create_instance_connect_endpoint create_instance_event_window
    create_instance_export_task create_internet_gateway
    create_interruptible_capacity_reservation_allocation create_ipam
    create_ipam_external_resource_verification_token
    create_ipam_internet_registry_association create_ipam_policy create_ipam_pool
    create_ipam_prefix_list_resolver create_ipam_prefix_list_resolver_target
    create_ipam_resource_discovery create_ipam_routing_policy_registration
    create_ipam_scope create_key_pair create_launch_template
    create_launch_template_version create_local_gateway_route
    create_local_gateway_route_table
    create_local_gateway_route_table_virtual_interface_group_association
    create_local_gateway_route_table_vpc_association
    create_local_gateway_virtual_interface
    create_local_gateway_virtual_interface_group
    create_mac_system_integrity_protection_modification_task
    create_managed_prefix_list create_nat_gateway create_network_acl
    create_network_acl_entry create_network_insights_access_scope
    create_network_insights_path create_network_interface
    create_network_interface_permission create_placement_group create_public_ipv4_pool
    create_replace_root_volume_task create_reserved_instances_listing
    create_restore_image_task create_route create_route_server
    create_route_server_endpoint create_route_server_peer create_route_table
    create_secondary_network create_secondary_subnet create_security_group
    create_snapshot create_snapshots create_spot_datafeed_subscription
    create_store_image_task create_subnet create_subnet_cidr_reservation create_tags
    create_traffic_mirror_filter create_traffic_mirror_filter_rule
    create_traffic_mirror_session create_traffic_mirror_target create_transit_gateway
    create_transit_gateway_connect create_transit_gateway_connect_peer
    create_transit_gateway_metering_policy
    create_transit_gateway_metering_policy_entry
    create_transit_gateway_multicast_domain create_transit_gateway_peering_attachment
    create_transit_gateway_policy_table create_transit_gateway_policy_table_entry
    create_transit_gateway_prefix_list_reference create_transit_gateway_route
    create_transit_gateway_route_table create_transit_gateway_route_table_announcement
    create_transit_gateway_vpc_attachment create_verified_access_endpoint
    create_verified_access_group create_verified_access_instance
    create_verified_access_trust_provider create_volume create_vpc
    create_vpc_block_public_access_exclusion create_vpc_encryption_control
    create_vpc_endpoint create_vpc_endpoint_connection_notification
    create_vpc_endpoint_service_configuration create_vpc_peering_connection
    create_vpn_concentrator create_vpn_connection create_vpn_connection_route
    create_vpn_gateway delete_application_status_check
    delete_capacity_manager_data_export delete_carrier_gateway
    delete_client_vpn_endpoint delete_client_vpn_endpoint_authorization_policy
    delete_client_vpn_route delete_coip_cidr delete_coip_pool delete_customer_gateway
    delete_dhcp_options delete_egress_only_internet_gateway delete_fleets
    delete_flow_logs delete_fpga_image delete_image_usage_report
    delete_instance_connect_endpoint delete_instance_event_window
    delete_internet_gateway delete_ipam
    delete_ipam_external_resource_verification_token
    delete_ipam_internet_registry_association delete_ipam_policy delete_ipam_pool
    delete_ipam_prefix_list_resolver delete_ipam_prefix_list_resolver_target
    delete_ipam_resource_discovery delete_ipam_routing_policy_registration
    delete_ipam_scope delete_key_pair delete_launch_template
    delete_launch_template_versions delete_local_gateway_route
    delete_local_gateway_route_table
    delete_local_gateway_route_table_virtual_interface_group_association
    delete_local_gateway_route_table_vpc_association
    delete_local_gateway_virtual_interface
    delete_local_gateway_virtual_interface_group delete_managed_prefix_list
    delete_nat_gateway delete_network_acl delete_network_acl_entry
    delete_network_insights_access_scope delete_network_insights_access_scope_analysis
    delete_network_insights_analysis delete_network_insights_path
    delete_network_interface delete_network_interface_permission
    delete_placement_group delete_public_ipv4_pool delete_queued_reserved_instances
    delete_route delete_route_server delete_route_server_endpoint
    delete_route_server_peer delete_route_table delete_secondary_network
    delete_secondary_subnet delete_security_group delete_snapshot
    delete_spot_datafeed_subscription delete_subnet delete_subnet_cidr_reservation
    delete_tags delete_traffic_mirror_filter delete_traffic_mirror_filter_rule
    delete_traffic_mirror_session delete_traffic_mirror_target delete_transit_gateway
    delete_transit_gateway_client_vpn_attachment delete_transit_gateway_connect
    delete_transit_gateway_connect_peer delete_transit_gateway_metering_policy
    delete_transit_gateway_metering_policy_entry
    delete_transit_gateway_multicast_domain delete_transit_gateway_peering_attachment
    delete_transit_gateway_policy_table delete_transit_gateway_policy_table_entry
    delete_transit_gateway_prefix_list_reference delete_transit_gateway_route
    delete_transit_gateway_route_table delete_transit_gateway_route_table_announcement
    delete_transit_gateway_vpc_attachment delete_verified_access_endpoint
    delete_verified_access_group delete_verified_access_instance
    delete_verified_access_trust_provider delete_volume delete_vpc
    delete_vpc_block_public_access_exclusion delete_vpc_encryption_control
    delete_vpc_endpoint_connection_notifications
    delete_vpc_endpoint_service_configurations delete_vpc_endpoints
    delete_vpc_peering_connection delete_vpn_concentrator delete_vpn_connection
    delete_vpn_connection_route delete_vpn_gateway deprovision_byoip_cidr
    deprovision_ipam_byoasn deprovision_ipam_pool_cidr
    deprovision_public_ipv4_pool_cidr deregister_image
    deregister_instance_event_notification_attributes
    deregister_transit_gateway_multicast_group_members
    deregister_transit_gateway_multicast_group_sources describe_account_attributes
    describe_account_vpc_encryption_control describe_address_transfers
    describe_addresses describe_addresses_attribute describe_aggregate_id_format
    describe_application_status describe_application_status_check_associations
    describe_application_status_checks describe_availability_zones
    describe_aws_network_performance_metric_subscriptions describe_bundle_tasks
    describe_byoip_cidrs describe_capacity_block_extension_history
    describe_capacity_block_extension_offerings describe_capacity_block_offerings
    describe_capacity_block_status describe_capacity_blocks
    describe_capacity_manager_data_exports
    describe_capacity_reservation_billing_requests
    describe_capacity_reservation_cancellation_quotes
    describe_capacity_reservation_date_change_quotes
    describe_capacity_reservation_fleets describe_capacity_reservation_topology
    describe_capacity_reservations describe_carrier_gateways
    describe_classic_link_instances describe_client_vpn_authorization_rules
    describe_client_vpn_connections describe_client_vpn_endpoints
    describe_client_vpn_routes describe_client_vpn_target_networks describe_coip_pools
    describe_conversion_tasks describe_customer_gateways
    describe_declarative_policies_reports describe_dhcp_options
    describe_egress_only_internet_gateways describe_elastic_gpus
    describe_export_image_tasks describe_export_tasks describe_fast_launch_images
    describe_fast_snapshot_restores describe_fleet_history describe_fleet_instances
    describe_fleets describe_flow_logs describe_fpga_image_attribute
    describe_fpga_images describe_host_reservation_offerings
    describe_host_reservations describe_hosts
    describe_iam_instance_profile_associations describe_id_format
    describe_identity_id_format describe_image_attribute describe_image_references
    describe_image_usage_report_entries describe_image_usage_reports describe_images
    describe_import_image_tasks describe_import_snapshot_tasks
    describe_instance_attribute describe_instance_connect_endpoints
    describe_instance_credit_specifications
    describe_instance_event_notification_attributes describe_instance_event_windows
    describe_instance_image_metadata describe_instance_sql_ha_history_states
    describe_instance_sql_ha_states describe_instance_status
    describe_instance_topology describe_instance_type_offerings
    describe_instance_types describe_instances describe_internet_gateways
    describe_ipam_byoasn describe_ipam_external_resource_verification_tokens
    describe_ipam_internet_registry_associations describe_ipam_policies
    describe_ipam_pool_allocations describe_ipam_pools
    describe_ipam_prefix_list_resolver_targets describe_ipam_prefix_list_resolvers
    describe_ipam_resource_discoveries describe_ipam_resource_discovery_associations
    describe_ipam_scopes describe_ipams describe_ipv6_pools describe_key_pairs
    describe_launch_template_versions describe_launch_templates
    describe_local_gateway_route_table_virtual_interface_group_associations
    describe_local_gateway_route_table_vpc_associations
    describe_local_gateway_route_tables
    describe_local_gateway_virtual_interface_groups
    describe_local_gateway_virtual_interfaces describe_local_gateways
    describe_locked_snapshots describe_mac_hosts describe_mac_modification_tasks
    describe_managed_prefix_lists describe_moving_addresses describe_nat_gateways
    describe_network_acls describe_network_insights_access_scope_analyses
    describe_network_insights_access_scopes describe_network_insights_analyses
    describe_network_insights_paths describe_network_interface_attribute
    describe_network_interface_permissions describe_network_interfaces
    describe_outpost_lags describe_placement_groups describe_prefix_lists
    describe_principal_id_format describe_public_ipv4_pools describe_regions
    describe_replace_root_volume_tasks describe_reserved_instances
    describe_reserved_instances_listings describe_reserved_instances_modifications
    describe_reserved_instances_offerings describe_route_server_endpoints
    describe_route_server_peers describe_route_servers describe_route_tables
    describe_scheduled_instance_availability describe_scheduled_instances
    describe_secondary_interfaces describe_secondary_networks
    describe_secondary_subnets describe_security_group_references
    describe_security_group_rules describe_security_group_vpc_associations
    describe_security_groups describe_service_link_virtual_interfaces
    describe_snapshot_attribute describe_snapshot_tier_status describe_snapshots
    describe_spot_datafeed_subscription describe_spot_fleet_instances
    describe_spot_fleet_request_history describe_spot_fleet_requests
    describe_spot_instance_requests describe_spot_price_history
    describe_stale_security_groups describe_store_image_tasks describe_subnets
    describe_tags describe_traffic_mirror_filter_rules describe_traffic_mirror_filters
    describe_traffic_mirror_sessions describe_traffic_mirror_targets
    describe_transit_gateway_attachments describe_transit_gateway_connect_peers
    describe_transit_gateway_connects describe_transit_gateway_metering_policies
    describe_transit_gateway_multicast_domains
    describe_transit_gateway_peering_attachments
    describe_transit_gateway_policy_tables
    describe_transit_gateway_route_table_announcements
    describe_transit_gateway_route_tables describe_transit_gateway_vpc_attachments
    describe_transit_gateways describe_trunk_interface_associations
    describe_verified_access_endpoints describe_verified_access_groups
    describe_verified_access_instance_logging_configurations
    describe_verified_access_instances describe_verified_access_trust_providers
    describe_volume_attribute describe_volume_status describe_volumes
    describe_volumes_modifications describe_vpc_attribute
    describe_vpc_block_public_access_exclusions
    describe_vpc_block_public_access_options describe_vpc_classic_link
    describe_vpc_classic_link_dns_support describe_vpc_encryption_controls
    describe_vpc_endpoint_associations describe_vpc_endpoint_connection_notifications
    describe_vpc_endpoint_connections describe_vpc_endpoint_service_configurations
    describe_vpc_endpoint_service_permissions describe_vpc_endpoint_services
    describe_vpc_endpoints describe_vpc_peering_connections describe_vpcs
    describe_vpn_concentrators describe_vpn_connections describe_vpn_gateways
    detach_classic_link_vpc detach_image_watermark detach_internet_gateway
    detach_network_interface detach_verified_access_trust_provider detach_volume
    detach_vpn_gateway disable_address_transfer disable_allowed_images_settings
    disable_application_status_check_suppression
    disable_aws_network_performance_metric_subscription disable_capacity_manager
    disable_ebs_encryption_by_default disable_fast_launch
    disable_fast_snapshot_restores disable_image disable_image_block_public_access
    disable_image_deprecation disable_image_deregistration_protection
    disable_instance_sql_ha_standby_detections disable_ipam_organization_admin_account
    disable_ipam_policy disable_route_server_propagation disable_serial_console_access
    disable_snapshot_block_public_access
    disable_transit_gateway_route_table_propagation disable_vgw_route_propagation
    disable_vpc_classic_link disable_vpc_classic_link_dns_support disassociate_address
    disassociate_application_status_check
    disassociate_capacity_reservation_billing_owner
    disassociate_client_vpn_target_network disassociate_enclave_certificate_iam_role
    disassociate_iam_instance_profile disassociate_instance_event_window
    disassociate_ipam_byoasn disassociate_ipam_resource_discovery
    disassociate_nat_gateway_address disassociate_route_server
    disassociate_route_table disassociate_security_group_vpc
    disassociate_subnet_cidr_block disassociate_transit_gateway_multicast_domain
    disassociate_transit_gateway_policy_table disassociate_transit_gateway_route_table
    disassociate_trunk_interface disassociate_vpc_cidr_block enable_address_transfer
    enable_allowed_images_settings enable_application_status_check_suppression
    enable_aws_network_performance_metric_subscription enable_capacity_manager
    enable_ebs_encryption_by_default enable_fast_launch enable_fast_snapshot_restores
    enable_image enable_image_block_public_access enable_image_deprecation
    enable_image_deregistration_protection enable_instance_sql_ha_standby_detections
    enable_ipam_internet_registry_association enable_ipam_organization_admin_account
    enable_ipam_policy enable_reachability_analyzer_organization_sharing
    enable_route_server_propagation enable_serial_console_access
    enable_snapshot_block_public_access enable_transit_gateway_route_table_propagation
    enable_vgw_route_propagation enable_volume_io enable_vpc_classic_link
    enable_vpc_classic_link_dns_support
    export_client_vpn_client_certificate_revocation_list
    export_client_vpn_client_configuration export_image export_transit_gateway_routes
    export_verified_access_instance_client_configuration get_active_vpn_tunnel_status
    get_allowed_images_settings get_associated_enclave_certificate_iam_roles
    get_associated_ipv6_pool_cidrs get_aws_network_performance_data
    get_capacity_manager_attributes get_capacity_manager_metric_data
    get_capacity_manager_metric_dimensions get_capacity_manager_monitored_tag_keys
    get_capacity_manager_supportability_scores get_capacity_reservation_usage
    get_client_vpn_endpoint_authorization_policy get_coip_pool_usage
    get_console_output get_console_screenshot get_declarative_policies_report_summary
    get_default_credit_specification get_ebs_default_kms_key_id
    get_ebs_encryption_by_default get_enabled_ipam_policy
    get_flow_logs_integration_template get_groups_for_capacity_reservation
    get_host_reservation_purchase_preview get_image_ancestry
    get_image_block_public_access_state get_image_findings
    get_instance_metadata_defaults get_instance_tpm_ek_pub
    get_instance_types_from_instance_requirements get_instance_uefi_data
    get_ipam_address_history get_ipam_discovered_accounts
    get_ipam_discovered_public_addresses get_ipam_discovered_resource_cidrs
    get_ipam_discovered_routes get_ipam_internet_registry_association_asns
    get_ipam_internet_registry_association_cidrs get_ipam_policy_allocation_rules
    get_ipam_policy_organization_targets get_ipam_pool_allocations get_ipam_pool_cidrs
    get_ipam_prefix_list_resolver_rules get_ipam_prefix_list_resolver_version_entries
    get_ipam_prefix_list_resolver_versions get_ipam_resource_cidrs
    get_ipam_route_origin_authorizations get_ipam_route_protection_findings
    get_ipam_routing_policy_registration_deltas get_ipam_routing_policy_registrations
    get_launch_template_data get_managed_prefix_list_associations
    get_managed_prefix_list_entries get_managed_resource_visibility
    get_network_insights_access_scope_analysis_findings
    get_network_insights_access_scope_content get_password_data
    get_reserved_instances_exchange_quote get_route_server_associations
    get_route_server_propagations get_route_server_routing_database
    get_security_groups_for_vpc get_serial_console_access_status
    get_snapshot_block_public_access_state get_spot_placement_scores
    get_subnet_cidr_reservations get_transit_gateway_attachment_nat_configuration
    get_transit_gateway_attachment_propagations
    get_transit_gateway_metering_policy_entries
    get_transit_gateway_multicast_domain_associations
    get_transit_gateway_policy_table_associations
    get_transit_gateway_policy_table_entries
    get_transit_gateway_prefix_list_references
    get_transit_gateway_route_table_associations
    get_transit_gateway_route_table_propagations get_verified_access_endpoint_policy
    get_verified_access_endpoint_targets get_verified_access_group_policy
    get_vpc_resources_blocking_encryption_enforcement
    get_vpn_connection_device_sample_configuration get_vpn_connection_device_types
    get_vpn_tunnel_replacement_status
    import_client_vpn_client_certificate_revocation_list import_image import_instance
    import_key_pair import_snapshot import_volume list_images_in_recycle_bin
    list_snapshots_in_recycle_bin list_volumes_in_recycle_bin lock_snapshot
    modify_account_vpc_encryption_control modify_address_attribute
    modify_application_status_check modify_availability_zone_group
    modify_capacity_reservation modify_capacity_reservation_fleet
    modify_client_vpn_endpoint modify_client_vpn_endpoint_authorization_policy
    modify_default_credit_specification modify_ebs_default_kms_key_id modify_fleet
    modify_fpga_image_attribute modify_hosts modify_id_format
    modify_identity_id_format modify_image_attribute modify_instance_attribute
    modify_instance_capacity_reservation_attributes modify_instance_connect_endpoint
    modify_instance_cpu_options modify_instance_credit_specification
    modify_instance_event_start_time modify_instance_event_window
    modify_instance_maintenance_options modify_instance_metadata_defaults
    modify_instance_metadata_options modify_instance_network_performance_options
    modify_instance_placement modify_ipam modify_ipam_policy_allocation_rules
    modify_ipam_pool modify_ipam_pool_allocation modify_ipam_prefix_list_resolver
    modify_ipam_prefix_list_resolver_target modify_ipam_resource_cidr
    modify_ipam_resource_discovery modify_ipam_routing_policy_registration
    modify_ipam_scope modify_launch_template modify_local_gateway_route
    modify_managed_prefix_list modify_managed_resource_visibility
    modify_network_interface_attribute modify_private_dns_name_options
    modify_public_ip_dns_name_options modify_reserved_instances modify_route_server
    modify_security_group_rules modify_snapshot_attribute modify_snapshot_tier
    modify_spot_fleet_request modify_subnet_attribute
    modify_traffic_mirror_filter_network_services modify_traffic_mirror_filter_rule
    modify_traffic_mirror_session modify_transit_gateway
    modify_transit_gateway_attachment_nat_configuration
    modify_transit_gateway_metering_policy modify_transit_gateway_policy_table_entry
    modify_transit_gateway_prefix_list_reference modify_transit_gateway_vpc_attachment
    modify_verified_access_endpoint modify_verified_access_endpoint_policy
    modify_verified_access_group modify_verified_access_group_policy
    modify_verified_access_instance
    modify_verified_access_instance_logging_configuration
    modify_verified_access_trust_provider modify_volume modify_volume_attribute
    modify_vpc_attribute modify_vpc_block_public_access_exclusion
    modify_vpc_block_public_access_options modify_vpc_encryption_control
    modify_vpc_endpoint modify_vpc_endpoint_connection_notification
    modify_vpc_endpoint_payer_responsibility modify_vpc_endpoint_service_configuration
    modify_vpc_endpoint_service_payer_responsibility
    modify_vpc_endpoint_service_permissions modify_vpc_peering_connection_options
    modify_vpc_tenancy modify_vpn_connection modify_vpn_connection_options
    modify_vpn_tunnel_certificate modify_vpn_tunnel_options monitor_instances
    move_address_to_vpc move_byoip_cidr_to_ipam move_capacity_reservation_instances
    provision_byoip_cidr provision_ipam_byoasn provision_ipam_pool_cidr
    provision_public_ipv4_pool_cidr purchase_capacity_block
    purchase_capacity_block_extension purchase_host_reservation
    purchase_reserved_instances_offering purchase_scheduled_instances reboot_instances
    register_image register_instance_event_notification_attributes
    register_transit_gateway_multicast_group_members
    register_transit_gateway_multicast_group_sources
    reject_capacity_reservation_billing_ownership
    reject_transit_gateway_client_vpn_attachment
    reject_transit_gateway_multicast_domain_associations
    reject_transit_gateway_peering_attachment reject_transit_gateway_vpc_attachment
    reject_vpc_endpoint_connections reject_vpc_peering_connection release_address
    release_hosts release_ipam_pool_allocation
    replace_iam_instance_profile_association
    replace_image_criteria_in_allowed_images_settings
    replace_image_instance_type_specification replace_network_acl_association
    replace_network_acl_entry replace_route replace_route_table_association
    replace_transit_gateway_route replace_vpn_tunnel report_instance_status
    request_spot_fleet request_spot_instances reset_address_attribute
    reset_ebs_default_kms_key_id reset_fpga_image_attribute reset_image_attribute
    reset_instance_attribute reset_network_interface_attribute
    reset_snapshot_attribute restore_address_to_classic restore_image_from_recycle_bin
    restore_managed_prefix_list_version restore_snapshot_from_recycle_bin
    restore_snapshot_tier restore_volume_from_recycle_bin revoke_client_vpn_ingress
    revoke_security_group_egress revoke_security_group_ingress run_instances
    run_scheduled_instances search_local_gateway_routes
    search_transit_gateway_multicast_groups search_transit_gateway_routes
    send_diagnostic_interrupt start_declarative_policies_report start_instances
    start_network_insights_access_scope_analysis start_network_insights_analysis
    start_vpc_endpoint_service_private_dns_verification stop_instances
    terminate_client_vpn_connections terminate_instances unassign_ipv6_addresses
    unassign_private_ip_addresses unassign_private_nat_gateway_address unlock_snapshot
    unmonitor_instances update_capacity_manager_monitored_tag_keys
    update_capacity_manager_organizations_access
    update_interruptible_capacity_reservation_allocation
    update_security_group_rule_descriptions_egress
    update_security_group_rule_descriptions_ingress
    validate_security_group_quotas_for_interface withdraw_byoip_cidr";

const ECR_OPERATIONS: &str = "
    batch_check_layer_availability batch_delete_image batch_get_image
    batch_get_repository_scanning_configuration complete_layer_upload
    create_pull_through_cache_rule create_repository
    create_repository_creation_template delete_lifecycle_policy
    delete_pull_through_cache_rule delete_registry_policy delete_repository
    delete_repository_creation_template delete_repository_policy
    delete_signing_configuration deregister_pull_time_update_exclusion
    describe_image_replication_status describe_image_scan_findings
    describe_image_signing_status describe_images describe_pull_through_cache_rules
    describe_registry describe_replication_backfill_results describe_repositories
    describe_repository_creation_templates get_account_setting get_authorization_token
    get_download_url_for_layer get_lifecycle_policy get_lifecycle_policy_preview
    get_registry_policy get_registry_scanning_configuration get_repository_policy
    get_signing_configuration initiate_layer_upload list_image_referrers list_images
    list_pull_time_update_exclusions list_replication_backfills list_tags_for_resource
    put_account_setting put_image put_image_scanning_configuration
    put_image_tag_mutability put_lifecycle_policy put_registry_policy
    put_registry_scanning_configuration put_replication_configuration
    put_signing_configuration register_pull_time_update_exclusion
    set_repository_policy start_image_scan start_lifecycle_policy_preview
    start_replication_backfill stop_replication_backfill tag_resource untag_resource
    update_image_storage_class update_pull_through_cache_rule
    update_repository_creation_template upload_layer_part
    validate_pull_through_cache_rule";

struct Service {
    /// IAM action prefix.
    prefix: &'static str,
    /// The SDK crate, for telling services apart by a file's imports.
    sdk_crate: &'static str,
    operations: &'static str,
}

const SERVICES: [Service; 5] = [
    Service {
        prefix: "ecs",
        sdk_crate: "aws_sdk_ecs",
        operations: ECS_OPERATIONS,
    },
    Service {
        prefix: "logs",
        sdk_crate: "aws_sdk_cloudwatchlogs",
        operations: LOGS_OPERATIONS,
    },
    Service {
        prefix: "secretsmanager",
        sdk_crate: "aws_sdk_secretsmanager",
        operations: SECRETS_MANAGER_OPERATIONS,
    },
    Service {
        prefix: "ec2",
        sdk_crate: "aws_sdk_ec2",
        operations: EC2_OPERATIONS,
    },
    Service {
        prefix: "ecr",
        sdk_crate: "aws_sdk_ecr",
        operations: ECR_OPERATIONS,
    },
];

/// SDK waiters poll an operation of their own.
const WAITERS: [(&str, &str); 4] = [
    ("wait_until_tasks_running", "ecs:DescribeTasks"),
    ("wait_until_tasks_stopped", "ecs:DescribeTasks"),
    ("wait_until_services_stable", "ecs:DescribeServices"),
    ("wait_until_services_inactive", "ecs:DescribeServices"),
];

/// Actions that are allowed on `"Resource": "*"`, because the service offers no
/// resource-level permission for them (ListTasks is then narrowed by a condition).
const UNSCOPABLE: [&str; 5] = [
    "ecs:DescribeTaskDefinition",
    "ecs:RegisterTaskDefinition",
    "ecs:ListTasks",
    "ec2:DescribeSubnets",
    "ec2:DescribeSecurityGroups",
];

fn action_name(prefix: &str, operation: &str) -> String {
    let pascal: String = operation
        .split('_')
        .map(|part| {
            let mut chars = part.chars();
            chars
                .next()
                .map(|c| c.to_ascii_uppercase().to_string() + chars.as_str())
                .unwrap_or_default()
        })
        .collect();
    format!("{prefix}:{pascal}")
}

fn services_of(method: &str) -> Vec<&'static Service> {
    SERVICES
        .iter()
        .filter(|s| s.operations.split_whitespace().any(|op| op == method))
        .collect()
}

/// An AWS operation found in source.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Call {
    line: usize,
    method: String,
    /// The IAM actions it needs.
    actions: Vec<String>,
}

/// Finds SDK fluent calls (`.run_task()`; fluent builders take no arguments) and
/// waiters, and names the IAM actions each needs. Operations several services share
/// (`tag_resource`, ...) are told apart by the receiver (`clients.ecs`, `logs`,
/// `secrets`) or else by which SDK crate the file uses.
fn aws_calls(source: &str) -> Result<Vec<Call>, String> {
    let code = code_only(source);
    let chars: Vec<char> = code.chars().collect();
    let mut calls = Vec::new();
    let mut line = 1;
    for i in 0..chars.len() {
        if chars[i] == '\n' {
            line += 1;
        }
        if chars[i] != '.' || !chars.get(i + 1).is_some_and(|c| c.is_ascii_lowercase()) {
            continue;
        }
        let end = (i + 1..chars.len())
            .find(|&j| !is_ident(chars[j]))
            .unwrap_or(chars.len());
        if chars.get(end) != Some(&'(') || chars.get(end + 1) != Some(&')') {
            continue;
        }
        let method: String = chars[i + 1..end].iter().collect();
        if let Some((_, action)) = WAITERS.iter().find(|(w, _)| *w == method) {
            calls.push(Call {
                line,
                method,
                actions: vec![action.to_string()],
            });
            continue;
        }
        let candidates = services_of(&method);
        let service = match candidates.as_slice() {
            [] => continue,
            [one] => *one,
            several => {
                let start = (0..i)
                    .rev()
                    .find(|&j| matches!(chars[j], ';' | '{' | '}' | '='))
                    .map_or(0, |j| j + 1);
                let receiver: String = chars[start..i].iter().collect();
                let words: Vec<&str> = receiver
                    .split(|c: char| !is_ident(c))
                    .filter(|w| !w.is_empty())
                    .collect();
                let hinted = |s: &Service| match s.prefix {
                    "secretsmanager" => words.iter().any(|w| w.contains("secret")),
                    prefix => words.iter().any(|w| {
                        *w == prefix
                            || w.strip_prefix(prefix).is_some_and(|r| r.starts_with('_'))
                            || w.strip_suffix(prefix).is_some_and(|r| r.ends_with('_'))
                    }),
                };
                let by_receiver: Vec<_> = several.iter().filter(|s| hinted(s)).collect();
                let by_import: Vec<_> = several
                    .iter()
                    .filter(|s| code.contains(s.sdk_crate))
                    .collect();
                match (by_receiver.as_slice(), by_import.as_slice()) {
                    ([one], _) | ([], [one]) => **one,
                    _ => {
                        return Err(format!(
                            "line {line}: cannot tell which service `.{method}()` calls \
                             (candidates: {}); name its client after its service (`ecs`, `logs`, `secrets`, `ec2`, `ecr`)",
                            several
                                .iter()
                                .map(|s| s.prefix)
                                .collect::<Vec<_>>()
                                .join(", ")
                        ));
                    }
                }
            }
        };
        let mut actions = vec![action_name(service.prefix, &method)];
        // Calls that need more than their own action.
        match (service.prefix, method.as_str()) {
            ("ecs", "run_task") => {
                actions.push("iam:PassRole".into());
                if code.contains(".tags(") || code.contains(".set_tags(") {
                    actions.push("ecs:TagResource".into());
                }
            }
            ("ecs", "register_task_definition") => actions.push("iam:PassRole".into()),
            ("secretsmanager", "batch_get_secret_value") => {
                actions.push("secretsmanager:GetSecretValue".into())
            }
            _ => {}
        }
        calls.push(Call {
            line,
            method,
            actions,
        });
    }
    Ok(calls)
}

fn rust_files(dir: &Path, found: &mut Vec<PathBuf>) {
    let mut entries: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
        .map(|e| e.expect("a directory entry").path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            rust_files(&path, found);
        } else if path.extension().is_some_and(|e| e == "rs") {
            found.push(path);
        }
    }
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

#[test]
fn operator_policy_covers_every_aws_call_of_the_launcher() {
    let mut files = Vec::new();
    rust_files(&root().join("src/launcher"), &mut files);
    files.push(root().join("src/bin/run-admin-task.rs"));

    let mut needed: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for file in &files {
        let relative = file.strip_prefix(root()).unwrap().display().to_string();
        let source = fs::read_to_string(file).unwrap();
        let calls = aws_calls(&source).unwrap_or_else(|e| panic!("{relative}: {e}"));
        for call in calls {
            for action in call.actions {
                needed
                    .entry(action)
                    .or_default()
                    .push(format!("{relative}:{} .{}()", call.line, call.method));
            }
        }
    }
    // The scan must see the calls the launcher is built on; if it sees none, it is the
    // scan that broke.
    for core in [
        "ecs:RunTask",
        "ecs:DescribeTasks",
        "ecs:StopTask",
        "ecs:DescribeTaskDefinition",
        "logs:GetLogEvents",
    ] {
        assert!(
            needed.contains_key(core),
            "the scan found no call needing {core}: {needed:?}"
        );
    }

    let statements = policy(OPERATOR_POLICY);
    let granted = allowed(&statements);
    let missing: Vec<String> = needed
        .iter()
        .filter(|(action, _)| !granted.contains(*action))
        .map(|(action, sites)| format!("{action} (called at {})", sites.join(", ")))
        .collect();
    assert!(
        missing.is_empty(),
        "{OPERATOR_POLICY} does not allow:\n  {}",
        missing.join("\n  ")
    );
}

#[test]
fn operator_policy_grants_nothing_unknown_or_unscoped() {
    let statements = policy(OPERATOR_POLICY);
    let granted = allowed(&statements);
    for baseline in [
        "ecs:RunTask",
        "ecs:DescribeTasks",
        "ecs:DescribeTaskDefinition",
        "ecs:StopTask",
        "ecs:ListTasks",
        "ecs:TagResource",
        "ecs:ExecuteCommand",
        "ecs:RegisterTaskDefinition",
        "ecs:DescribeClusters",
        "logs:GetLogEvents",
        "logs:DescribeLogGroups",
        "secretsmanager:DescribeSecret",
        "secretsmanager:PutSecretValue",
        "secretsmanager:GetSecretValue",
        "ec2:DescribeSubnets",
        "ec2:DescribeSecurityGroups",
        "ecr:DescribeImages",
        "iam:PassRole",
    ] {
        assert!(
            granted.contains(baseline),
            "{OPERATOR_POLICY}: no {baseline}"
        );
    }
    for action in &granted {
        assert!(
            !action.contains('*'),
            "{OPERATOR_POLICY}: wildcard {action}"
        );
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
            "{OPERATOR_POLICY}: {action} is not an operation of ECS, CloudWatch Logs, \
             Secrets Manager, EC2 or ECR"
        );
    }
    for s in &statements {
        if s.resources.iter().any(|r| r == "*") {
            for action in &s.actions {
                assert!(
                    UNSCOPABLE.contains(&action.as_str()),
                    "{OPERATOR_POLICY}: {action} on every resource; scope it"
                );
            }
            if s.actions.iter().any(|a| a == "ecs:ListTasks") {
                assert!(
                    !s.condition["ArnEquals"]["ecs:cluster"].is_null(),
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
                "ecs-tasks.amazonaws.com"
            );
        }
        if s.actions.iter().any(|a| a.starts_with("secretsmanager:")) {
            assert!(
                !s.resources.iter().any(|r| r.contains("DATABASE_URL")),
                "operators manage the key secrets, not the database URL"
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
    let written: BTreeSet<String> = everruns_admin::launcher::github_actions::outputs(
        &everruns_admin::launcher::job::report::TaskReport::default(),
    )
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
