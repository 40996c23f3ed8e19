//! Checks of the configuration and of this machine: the network settings a launch
//! needs, and what `shell` (ECS Exec) needs besides.

use std::ffi::OsStr;

use aws_sdk_ecs::types::TaskDefinition;

use super::check::Check;
use crate::launcher::config::LaunchConfig;
use crate::launcher::ecs_exec;

/// Why a failed shell check does not fail doctor without `--for-shell`.
pub(crate) const ONLY_FOR_SHELL: &str =
    "needed only for `shell` and `tunnel`; `doctor --for-shell` fails on it";

/// Subnets are configured (a launch needs them).
pub fn subnets(config: &LaunchConfig) -> Check {
    const NAME: &str = "subnets";
    match config.require_subnets() {
        Ok(subnets) => Check::pass(
            NAME,
            format!("{} ({})", subnets.join(", "), config.origins.subnets),
        ),
        Err(e) => Check::fail(
            NAME,
            "no subnets are configured",
            format!("{e}; use private subnets that route to the database"),
        ),
    }
}

/// Security groups are configured: without them the task gets the VPC's default
/// group, which rarely reaches the database.
pub fn security_groups(config: &LaunchConfig) -> Check {
    const NAME: &str = "security-groups";
    if config.security_groups.is_empty() {
        Check::fail(
            NAME,
            "no security groups are configured: the task would get the VPC's default group",
            "pass --security-groups sg-..., set ECS_SECURITY_GROUP, set `security_groups` in \
             the config file, or copy the application's with --from-service NAME; the group \
             must be allowed into the database's port",
        )
    } else {
        Check::pass(
            NAME,
            format!(
                "{} ({})",
                config.security_groups.join(", "),
                config.origins.security_groups
            ),
        )
    }
}

/// The rest of what a launch sends, and where each came from: nothing to fail, but
/// what `--from-service` copied is seen before a launch relies on it.
pub(crate) fn launch_settings(config: &LaunchConfig) -> Check {
    let o = &config.origins;
    Check::pass(
        "launch-settings",
        format!(
            "public IP {} ({}); {} ({}); platform version {} ({})",
            if config.assign_public_ip {
                "ENABLED"
            } else {
                "DISABLED"
            },
            o.assign_public_ip,
            config.capacity.describe(),
            o.capacity,
            config.platform_version.as_deref().unwrap_or("LATEST"),
            o.platform_version
        ),
    )
}

/// The Session Manager plugin is installed (`path` is the `PATH` to search), found
/// the way `shell` finds it.
pub fn plugin(path: Option<&OsStr>) -> Check {
    const NAME: &str = "shell:plugin";
    match ecs_exec::find_plugin(path) {
        Ok(found) => Check::pass(NAME, found.display().to_string()),
        Err(_) => Check::fail(
            NAME,
            format!("{} is not on PATH", ecs_exec::PLUGIN),
            format!(
                "install it as the AWS documentation page \"Install the Session Manager plugin \
                 for the AWS CLI\" describes, then check with `{} --version`",
                ecs_exec::PLUGIN
            ),
        ),
    }
}

/// The task definition can take ECS Exec sessions, judged as `shell` judges it: a task
/// role is required (`shell:task-role`); an init process is recommended
/// (`shell:init-process`, never a failure).
pub(crate) fn exec_prerequisites(def: &TaskDefinition, container: &str) -> Vec<Check> {
    match ecs_exec::check_task_definition(def, container) {
        Err(_) => vec![
            Check::fail(
                "shell:task-role",
                "no taskRoleArn: ECS Exec cannot open a session",
                "set taskRoleArn to a role with task-definitions/iam/task-role-policy.json \
                 (TASK_ROLE_ARN of the template) and register again",
            ),
            Check::skip("shell:init-process", "not checked without a task role"),
        ],
        Ok(warnings) => {
            let role = def.task_role_arn().unwrap_or_default();
            let init = match warnings.first() {
                None => Check::pass(
                    "shell:init-process",
                    format!("{container:?} has initProcessEnabled"),
                ),
                Some(warning) => Check::fail(
                    "shell:init-process",
                    warning.clone(),
                    "set \"linuxParameters\": {\"initProcessEnabled\": true} on the container and register again",
                )
                .optional("recommended, not required"),
            };
            vec![Check::pass("shell:task-role", role), init]
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::launcher::flags::GlobalOptions;

    #[test]
    fn a_missing_plugin_fails_with_how_to_install_it() {
        let check = plugin(Some(OsStr::new("/nonexistent")));
        assert_eq!(check.status, super::super::Status::Fail);
        assert!(check.fix.unwrap().contains("Session Manager plugin"));
    }

    #[test]
    fn exec_needs_a_task_role_and_recommends_an_init_process() {
        use aws_sdk_ecs::types::ContainerDefinition;
        let bare = TaskDefinition::builder()
            .container_definitions(ContainerDefinition::builder().name("admin").build())
            .build();
        let checks = exec_prerequisites(&bare, "admin");
        assert_eq!(checks[0].status, super::super::Status::Fail);
        let with_role = TaskDefinition::builder()
            .task_role_arn("arn:aws:iam::1:role/task")
            .container_definitions(ContainerDefinition::builder().name("admin").build())
            .build();
        let checks = exec_prerequisites(&with_role, "admin");
        assert_eq!(checks[0].status, super::super::Status::Pass);
        assert_eq!(checks[1].status, super::super::Status::Skip);
        assert!(checks[1].fix.is_some());
    }

    #[test]
    fn network_settings_fail_with_the_way_to_set_them() {
        let config = LaunchConfig::resolve(&GlobalOptions::default(), &|_: &str| None).unwrap();
        let check = subnets(&config);
        assert!(check.fix.unwrap().contains("ECS_SUBNETS"));
        let check = security_groups(&config);
        assert!(check.fix.unwrap().contains("ECS_SECURITY_GROUP"));
    }
}
