//! `doctor [--for-shell] [--for-tunnel] [--in-vpc]`: every check a run depends on, independent ones
//! at the same time, each printed as PASS, FAIL or SKIP on stdout with the fix for a
//! failure (so `doctor | grep FAIL` works); progress notes and the `--in-vpc` task's
//! log lines go to stderr. `--output json` prints the [`DoctorReport`] on stdout and
//! the readable lines on stderr.
//!
//! Exit status (doctor's own): 0 when nothing failed, 1 when something did, 2 for a
//! usage or configuration error before any check, 130 when interrupted during
//! `--in-vpc`.

use std::future::Future;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio::task::JoinSet;

use crate::contract::exit::launcher;
use crate::launcher::aws_api::clients::{Clients, shared_config};
use crate::launcher::checks::in_vpc::{self, COMPANION_COMMAND, StatusRun};
use crate::launcher::checks::local::{self, ONLY_FOR_SHELL};
use crate::launcher::checks::{
    Check, DoctorReport, Status, aws, elapsed_ms, image, network, timed,
};
use crate::launcher::config::Origin;
use crate::launcher::context::Context;
use crate::launcher::error::LauncherError;
use crate::launcher::flags::{GlobalOptions, OutputFormat};
use crate::launcher::job::launch::Job;
use crate::launcher::job::report::TaskReport;
use crate::launcher::output::Renderer;

/// How long `doctor --in-vpc` waits for its task when `--timeout` is not given; the
/// task is stopped when the wait ends.
pub(crate) const IN_VPC_TIMEOUT: Duration = Duration::from_secs(600);

/// Whether a failed check keeps `--in-vpc` from launching: every failure does, except
/// the `shell` ones (the status task needs no ECS Exec) and missing security groups
/// (the task starts with the VPC's default group; whether that reaches the database
/// is the question).
fn blocks_launch(check: &Check) -> bool {
    check.status == Status::Fail
        && check.name != "security-groups"
        && !check.name.starts_with("shell:")
}

/// `doctor [--in-vpc] [--for-shell] [--for-tunnel]`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::Args)]
pub struct DoctorArgs {
    /// Also run the companion's `status` in the VPC: database reachable, schema, key ids
    #[arg(long)]
    pub in_vpc: bool,
    /// Fail on what `shell` needs (session-manager-plugin, task role) instead of
    /// reporting it as SKIP
    #[arg(long)]
    pub for_shell: bool,
    /// Fail on what `tunnel` needs: what `shell` needs (the tunnel runs through the
    /// same ECS Exec agent), and ssm:StartSession, probed without opening a session
    #[arg(long)]
    pub for_tunnel: bool,
}

impl DoctorArgs {
    /// Whether the ECS Exec checks count: `shell` and `tunnel` both need them.
    fn exec_required(&self) -> bool {
        self.for_shell || self.for_tunnel
    }
}

/// Runs the checks, prints them, and returns doctor's exit status.
pub async fn exec(
    context: &Context,
    options: &DoctorArgs,
    interrupts: &mut mpsc::UnboundedReceiver<()>,
) -> Result<u8, LauncherError> {
    let config = &context.config;
    let mut checks = Vec::new();
    let shared = shared_config(config).await;
    let clients = match Clients::from_shared(&shared) {
        Ok(clients) => {
            let endpoint = match &config.endpoint_url {
                Some(url) => format!(", endpoint {url} ({})", config.origins.endpoint_url),
                None => String::new(),
            };
            let origin = match &config.origins.region {
                Origin::Default => "the profile or the SDK's chain".to_string(),
                origin => origin.to_string(),
            };
            checks.push(Check::pass(
                "region",
                format!("{} ({origin}){endpoint}", clients.region),
            ));
            Some(clients)
        }
        Err(e) => {
            checks.push(Check::fail(
                "region",
                "no AWS region could be resolved",
                e.to_string(),
            ));
            None
        }
    };
    match &clients {
        Some(clients) => {
            let credentials = timed(aws::credentials(
                shared.credentials_provider(),
                &config.credentials,
                &clients.sts,
                config.account_id.as_deref(),
            ));
            let (aws, network) = tokio::join!(
                aws_checks(context, clients, credentials, options),
                network_checks(context, clients)
            );
            checks.extend(aws);
            checks.extend(network);
            if options.for_tunnel {
                checks.push(timed(aws::start_session(&clients.ssm, &config.cluster)).await);
            }
        }
        None => {
            for name in ["credentials", "cluster", "task-definition"] {
                checks.push(Check::skip(name, "not checked without a region"));
            }
            let plugin = local::plugin(std::env::var_os("PATH").as_deref());
            checks.push(for_shell(plugin, options.exec_required()));
            checks.push(local::subnets(config));
            checks.push(local::security_groups(config));
        }
    }
    checks.push(local::launch_settings(config));

    let mut interrupted = false;
    if options.in_vpc {
        let blocked = checks.iter().any(blocks_launch);
        if blocked {
            checks.push(Check::skip(
                "in-vpc:task",
                "not launched: fix the failures above first",
            ));
        } else {
            let (run, was_interrupted) = run_status(context, interrupts).await;
            interrupted = was_interrupted;
            checks.extend(in_vpc::checks(&run));
        }
    }

    let report = DoctorReport::new(checks);
    for line in report.human_lines() {
        context.renderer.report(&line);
    }
    context.renderer.document(&report);
    Ok(if interrupted {
        launcher::INTERRUPTED
    } else {
        report.exit_code()
    })
}

/// The subnets and security groups: configured (else the local check's fix), and then
/// existing in the region, the groups in the subnets' VPC.
async fn network_checks(context: &Context, clients: &Clients) -> [Check; 2] {
    let config = &context.config;
    let origins = &config.origins;
    let (subnets, vpcs) = match config.require_subnets() {
        Ok(subnets) => {
            let started = Instant::now();
            let (check, vpcs) =
                network::subnets(&clients.ec2, subnets, &origins.subnets, &clients.region).await;
            (check.took(elapsed_ms(started)), vpcs)
        }
        Err(_) => (local::subnets(config), Vec::new()),
    };
    let groups = if config.security_groups.is_empty() {
        local::security_groups(config)
    } else {
        timed(network::security_groups(
            &clients.ec2,
            &config.security_groups,
            &origins.security_groups,
            &vpcs,
            &clients.region,
        ))
        .await
    };
    [subnets, groups]
}

/// A shell (ECS Exec) check: a failure counts only with `--for-shell` or
/// `--for-tunnel`; otherwise it
/// is reported as a skip that still names the fix.
fn for_shell(check: Check, required: bool) -> Check {
    if required {
        check
    } else {
        check.optional(ONLY_FOR_SHELL)
    }
}

/// The AWS checks, independent ones concurrently: credentials, cluster and task
/// definition first, then what the task definition points at.
async fn aws_checks(
    context: &Context,
    clients: &Clients,
    credentials: impl Future<Output = Check>,
    options: &DoctorArgs,
) -> Vec<Check> {
    let config = &context.config;
    let definition = async {
        let started = Instant::now();
        let (check, def) = aws::task_definition(&clients.ecs, &config.task_definition).await;
        (check.took(elapsed_ms(started)), def)
    };
    let (credentials, cluster, (definition_check, def)) = tokio::join!(
        credentials,
        timed(aws::cluster(&clients.ecs, &config.cluster, &clients.region)),
        definition,
    );
    let mut checks = vec![credentials, cluster, definition_check];
    let plugin = local::plugin(std::env::var_os("PATH").as_deref());
    let Some(def) = def else {
        for name in [
            "container",
            "image",
            "execution-role",
            "awslogs",
            "log-group",
            "secrets",
        ] {
            checks.push(Check::skip(name, "not checked without the task definition"));
        }
        checks.push(for_shell(plugin, options.exec_required()));
        return checks;
    };
    checks.push(aws::container(&def, &config.container));
    checks.push(aws::execution_role(&def));
    let (awslogs, group) = aws::awslogs(&def, &config.container, &clients.region);
    checks.push(awslogs);

    let log_group = async {
        match &group {
            Some((group, region)) => {
                timed(aws::log_group(
                    &clients.logs_in(Some(region)),
                    group,
                    region,
                ))
                .await
            }
            None => Check::skip(
                "log-group",
                "not checked: the container does not use awslogs",
            ),
        }
    };
    let (image, log_group, secrets) = tokio::join!(
        timed(image::image(&clients.ecr, &def, &config.container)),
        log_group,
        secret_checks(clients, &def, &config.container)
    );
    checks.push(image);
    checks.push(log_group);
    checks.extend(secrets);

    checks.push(for_shell(plugin, options.exec_required()));
    checks.extend(
        local::exec_prerequisites(&def, &config.container)
            .into_iter()
            .map(|c| for_shell(c, options.exec_required())),
    );
    checks
}

/// One DescribeSecret per referenced secret, all at once, listed in definition order.
async fn secret_checks(
    clients: &Clients,
    def: &aws_sdk_ecs::types::TaskDefinition,
    container: &str,
) -> Vec<Check> {
    let refs = aws::secret_refs(def);
    if refs.is_empty() {
        return vec![Check::skip(
            "secrets",
            "the task definition references no secrets",
        )];
    }
    let mut set = JoinSet::new();
    for (index, reference) in refs.into_iter().enumerate() {
        let client = clients.secrets.clone();
        let name = reference.check_name(container);
        set.spawn(async move {
            let check = timed(aws::secret(&client, &reference, name)).await;
            (index, check)
        });
    }
    let mut results = Vec::new();
    while let Some(joined) = set.join_next().await {
        match joined {
            Ok(result) => results.push(result),
            Err(e) => results.push((
                usize::MAX,
                Check::fail(
                    "secrets",
                    format!("a secret check crashed: {e}"),
                    "run doctor again",
                ),
            )),
        }
    }
    results.sort_by_key(|(index, _)| *index);
    results.into_iter().map(|(_, check)| check).collect()
}

/// Launches the companion's `status` in the VPC and follows it, its log lines on
/// stderr so stdout keeps only doctor's own output. Returns what it saw and whether
/// the operator interrupted it.
async fn run_status(
    context: &Context,
    interrupts: &mut mpsc::UnboundedReceiver<()>,
) -> (StatusRun, bool) {
    let sub = Context {
        options: GlobalOptions {
            output: OutputFormat::Human,
            no_wait: false,
            print_request: false,
            timeout: Some(context.options.timeout.unwrap_or(IN_VPC_TIMEOUT)),
            stop_on_timeout: true,
            ..context.options.clone()
        },
        config: context.config.clone(),
        operator: context.operator.clone(),
        renderer: Renderer::new(OutputFormat::Json, context.options.quiet),
    };
    let job = Job {
        argv: vec![COMPANION_COMMAND.to_owned()],
        mutating: false,
    };
    sub.renderer
        .note("doctor: launching `everruns-admin status` in the task's subnets");
    let started = Instant::now();
    let outcome =
        crate::launcher::job::single::launch_and_follow(&sub, &job, false, interrupts).await;
    sub.renderer.finish();
    let ms = elapsed_ms(started);
    match outcome {
        Ok((code, Some(report))) => {
            let interrupted = report.interrupted || code == launcher::INTERRUPTED;
            (status_run(&report, ms), interrupted)
        }
        Ok((code, None)) => (
            StatusRun {
                problem: vec![format!("nothing was launched (exit {code})")],
                ms,
                ..StatusRun::default()
            },
            code == launcher::INTERRUPTED,
        ),
        Err(e) => (
            StatusRun {
                problem: vec![e.to_string()],
                ms,
                ..StatusRun::default()
            },
            false,
        ),
    }
}

/// What doctor needs from a task report.
fn status_run(report: &TaskReport, ms: u64) -> StatusRun {
    let mut problem = Vec::new();
    if report.timed_out {
        problem.push("the task did not finish before the timeout (raise --timeout)".to_owned());
    }
    problem.extend(report.error.iter().cloned());
    problem.extend(report.stopped_reason.iter().cloned());
    problem.extend(
        report
            .container_reason
            .iter()
            .filter(|reason| Some(*reason) != report.stopped_reason.as_ref())
            .cloned(),
    );
    if problem.is_empty() {
        problem.push(format!("exit code {}", report.exit_code));
    }
    StatusRun {
        task_id: report.task_id.clone(),
        result: report.result.clone(),
        problem,
        hints: report.hints.clone(),
        ms,
    }
}
