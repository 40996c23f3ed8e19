//! The admin task definition as `task-def render` and `task-def register` handle it:
//! the fields this tool supports, checked for what ECS would reject and for what the
//! launcher relies on, and mapped onto RegisterTaskDefinition.
//!
//! Unknown fields are rejected rather than dropped: a field the template sets but the
//! request leaves out would register a different task definition than the file says.

use std::collections::{BTreeMap, HashMap, HashSet};

use aws_sdk_ecs::operation::register_task_definition::builders::RegisterTaskDefinitionFluentBuilder;
use aws_sdk_ecs::types::{
    Compatibility, ContainerDefinition, CpuArchitecture, KeyValuePair, LinuxParameters,
    LogConfiguration, LogDriver, NetworkMode, OsFamily, PortMapping, RuntimePlatform, Secret,
    TransportProtocol,
};
use serde::{Deserialize, Serialize};

/// The longest stop timeout Fargate accepts, in seconds.
pub(crate) const FARGATE_MAX_STOP_TIMEOUT: i32 = 120;

/// The awslogs options the launcher reads to find a task's log stream.
pub(crate) const REQUIRED_AWSLOGS_OPTIONS: [&str; 3] =
    ["awslogs-group", "awslogs-region", "awslogs-stream-prefix"];

/// A task definition, limited to the fields this tool registers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TaskDefSpec {
    /// The family; each registration adds a revision to it.
    pub family: String,
    /// The role the running container assumes (ECS Exec channels).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_role_arn: Option<String>,
    /// The role ECS uses to pull the image, inject secrets and write logs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub execution_role_arn: Option<String>,
    /// `awsvpc` on Fargate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_mode: Option<String>,
    /// `["FARGATE"]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requires_compatibilities: Option<Vec<String>>,
    /// Task CPU units, as a string (`"256"`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<String>,
    /// Task memory in MiB, as a string (`"512"`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<String>,
    /// Operating system and CPU architecture the image is built for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime_platform: Option<RuntimePlatformSpec>,
    /// The containers.
    pub container_definitions: Vec<ContainerSpec>,
}

/// `runtimePlatform`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RuntimePlatformSpec {
    /// `LINUX`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operating_system_family: Option<String>,
    /// `X86_64` or `ARM64`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_architecture: Option<String>,
}

/// One container definition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ContainerSpec {
    /// The container name (`admin`).
    pub name: String,
    /// The image reference.
    pub image: String,
    /// Whether the task stops when this container exits (ECS's default: true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub essential: Option<bool>,
    /// The default command (the launcher overrides it per run).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<Vec<String>>,
    /// Container CPU units.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<i32>,
    /// Hard memory limit in MiB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<i32>,
    /// Soft memory limit in MiB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_reservation: Option<i32>,
    /// Plain environment variables.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub environment: Option<Vec<EnvironmentSpec>>,
    /// Variables injected from Secrets Manager or Parameter Store.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secrets: Option<Vec<SecretSpec>>,
    /// Where the container's output goes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_configuration: Option<LogConfigurationSpec>,
    /// Only `initProcessEnabled` (ECS Exec needs it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub linux_parameters: Option<LinuxParametersSpec>,
    /// Seconds between SIGTERM and SIGKILL on stop.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_timeout: Option<i32>,
    /// Ports the container listens on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port_mappings: Option<Vec<PortMappingSpec>>,
}

/// `{"name": .., "value": ..}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EnvironmentSpec {
    /// Variable name.
    pub name: String,
    /// Its value.
    pub value: String,
}

/// `{"name": .., "valueFrom": ..}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SecretSpec {
    /// Variable name in the container.
    pub name: String,
    /// The secret's or parameter's full ARN.
    pub value_from: String,
}

/// `logConfiguration`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LogConfigurationSpec {
    /// `awslogs`.
    pub log_driver: String,
    /// Driver options.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub options: Option<BTreeMap<String, String>>,
}

/// `linuxParameters`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LinuxParametersSpec {
    /// Run an init process as PID 1 (reaps ECS Exec sessions, forwards signals).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub init_process_enabled: Option<bool>,
}

/// One `portMappings` entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PortMappingSpec {
    /// The container's port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_port: Option<i32>,
    /// The host port (equal to the container port with awsvpc).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_port: Option<i32>,
    /// `tcp` or `udp`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<String>,
    /// A name for Service Connect.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// Whether `value` names a Secrets Manager secret or a Parameter Store parameter by
/// ARN, as `valueFrom` must for IAM policies to match.
pub(crate) fn is_secret_arn(value: &str) -> bool {
    let parts: Vec<&str> = value.splitn(6, ':').collect();
    match parts.as_slice() {
        ["arn", partition, service, region, account, resource] => {
            !partition.is_empty()
                && !region.is_empty()
                && !account.is_empty()
                && match *service {
                    "secretsmanager" => resource
                        .strip_prefix("secret:")
                        .is_some_and(|r| !r.is_empty()),
                    "ssm" => resource.starts_with("parameter/"),
                    _ => false,
                }
        }
        _ => false,
    }
}

fn valid_name(name: &str) -> bool {
    (1..=255).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

fn check_value(problems: &mut Vec<String>, what: &str, value: &str, allowed: &[&str]) {
    if !allowed.contains(&value) {
        problems.push(format!(
            "{what} is {value:?}; ECS accepts {}",
            allowed.join(", ")
        ));
    }
}

impl TaskDefSpec {
    /// Whether the task definition is for Fargate.
    pub(crate) fn is_fargate(&self) -> bool {
        self.requires_compatibilities
            .as_ref()
            .is_some_and(|c| c.iter().any(|c| c == "FARGATE"))
    }

    /// Everything wrong with it, each problem with where it is and what to do: what
    /// ECS would reject, and what the launcher relies on in container `container`
    /// (present, essential, awslogs complete, secrets by ARN).
    pub fn problems(&self, container: &str) -> Vec<String> {
        let mut problems = Vec::new();
        if !valid_name(&self.family) {
            problems.push(format!(
                "family {:?}: up to 255 letters, digits, `-` and `_`",
                self.family
            ));
        }
        for (what, arn) in [
            ("executionRoleArn", &self.execution_role_arn),
            ("taskRoleArn", &self.task_role_arn),
        ] {
            if arn.as_deref().is_some_and(|a| a.trim().is_empty()) {
                problems.push(format!(
                    "{what} is empty: give the role's ARN or leave the field out"
                ));
            }
        }
        if let Some(mode) = &self.network_mode {
            check_value(&mut problems, "networkMode", mode, NetworkMode::values());
        }
        for compatibility in self.requires_compatibilities.iter().flatten() {
            check_value(
                &mut problems,
                "requiresCompatibilities",
                compatibility,
                Compatibility::values(),
            );
        }
        if let Some(platform) = &self.runtime_platform {
            if let Some(os) = &platform.operating_system_family {
                check_value(
                    &mut problems,
                    "runtimePlatform.operatingSystemFamily",
                    os,
                    OsFamily::values(),
                );
            }
            if let Some(arch) = &platform.cpu_architecture {
                check_value(
                    &mut problems,
                    "runtimePlatform.cpuArchitecture",
                    arch,
                    CpuArchitecture::values(),
                );
            }
        }
        if self.is_fargate() {
            if self.network_mode.as_deref() != Some("awsvpc") {
                problems.push("FARGATE needs \"networkMode\": \"awsvpc\"".to_owned());
            }
            if self.cpu.is_none() || self.memory.is_none() {
                problems.push("FARGATE needs task-level \"cpu\" and \"memory\"".to_owned());
            }
        }
        self.container_problems(container, &mut problems);
        problems
    }

    fn container_problems(&self, wanted: &str, problems: &mut Vec<String>) {
        if self.container_definitions.is_empty() {
            problems.push("containerDefinitions is empty".to_owned());
            return;
        }
        let mut names = HashSet::new();
        for c in &self.container_definitions {
            let at = format!("containerDefinitions[{}]", c.name);
            if !valid_name(&c.name) {
                problems.push(format!(
                    "{at}: a name is up to 255 letters, digits, `-` and `_`"
                ));
            }
            if !names.insert(c.name.as_str()) {
                problems.push(format!("{at}: the name is used by another container"));
            }
            if c.image.trim().is_empty() {
                problems.push(format!("{at}.image is empty"));
            }
            if self.is_fargate()
                && c.stop_timeout
                    .is_some_and(|t| !(0..=FARGATE_MAX_STOP_TIMEOUT).contains(&t))
            {
                problems.push(format!(
                    "{at}.stopTimeout: Fargate accepts 0 to {FARGATE_MAX_STOP_TIMEOUT} seconds"
                ));
            }
            for mapping in c.port_mappings.iter().flatten() {
                if let Some(protocol) = &mapping.protocol {
                    check_value(
                        problems,
                        &format!("{at}.portMappings.protocol"),
                        protocol,
                        TransportProtocol::values(),
                    );
                }
            }
            c.secret_problems(&at, problems);
            c.log_problems(&at, self.is_fargate(), problems);
            let needs_role = c.secrets.as_ref().is_some_and(|s| !s.is_empty())
                || c.log_configuration
                    .as_ref()
                    .is_some_and(|l| l.log_driver == "awslogs");
            if needs_role && self.execution_role_arn.is_none() {
                problems.push(format!(
                    "{at}: injecting secrets and writing awslogs need an executionRoleArn"
                ));
            }
        }
        if !self
            .container_definitions
            .iter()
            .any(|c| c.essential != Some(false))
        {
            problems.push("no container is essential: ECS needs at least one".to_owned());
        }
        match self.container_definitions.iter().find(|c| c.name == wanted) {
            None => problems.push(format!(
                "no container {wanted:?}: the launcher runs its commands there (choose another with --container)"
            )),
            Some(c) => {
                let at = format!("containerDefinitions[{wanted}]");
                if c.essential == Some(false) {
                    problems.push(format!(
                        "{at}.essential is false: the task must stop when the admin command exits; set it to true"
                    ));
                }
                if c.log_configuration.as_ref().is_none_or(|l| l.log_driver != "awslogs") {
                    problems.push(format!(
                        "{at}.logConfiguration: the launcher reads the command's output and result from awslogs; \
                         set \"logDriver\": \"awslogs\" with {}",
                        REQUIRED_AWSLOGS_OPTIONS.join(", ")
                    ));
                }
            }
        }
    }

    /// The RegisterTaskDefinition request for this task definition.
    pub(crate) fn register_request(
        &self,
        ecs: &aws_sdk_ecs::Client,
    ) -> Result<RegisterTaskDefinitionFluentBuilder, String> {
        let containers = self
            .container_definitions
            .iter()
            .map(ContainerSpec::to_sdk)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(ecs
            .register_task_definition()
            .family(&self.family)
            .set_task_role_arn(self.task_role_arn.clone())
            .set_execution_role_arn(self.execution_role_arn.clone())
            .set_network_mode(self.network_mode.as_deref().map(NetworkMode::from))
            .set_requires_compatibilities(
                self.requires_compatibilities
                    .as_ref()
                    .map(|c| c.iter().map(|c| Compatibility::from(c.as_str())).collect()),
            )
            .set_cpu(self.cpu.clone())
            .set_memory(self.memory.clone())
            .set_runtime_platform(self.runtime_platform.as_ref().map(|p| {
                RuntimePlatform::builder()
                    .set_operating_system_family(
                        p.operating_system_family.as_deref().map(OsFamily::from),
                    )
                    .set_cpu_architecture(p.cpu_architecture.as_deref().map(CpuArchitecture::from))
                    .build()
            }))
            .set_container_definitions(Some(containers)))
    }
}

impl ContainerSpec {
    fn secret_problems(&self, at: &str, problems: &mut Vec<String>) {
        let mut names = HashSet::new();
        for secret in self.secrets.iter().flatten() {
            if !names.insert(secret.name.as_str()) {
                problems.push(format!("{at}.secrets[{}]: defined twice", secret.name));
            }
            if !is_secret_arn(&secret.value_from) {
                problems.push(format!(
                    "{at}.secrets[{}].valueFrom {:?} is not a Secrets Manager or Parameter Store ARN: \
                     use the full ARN (arn:aws:secretsmanager:REGION:ACCOUNT:secret:NAME-SUFFIX), \
                     which IAM policies match exactly",
                    secret.name, secret.value_from
                ));
            }
        }
    }

    fn log_problems(&self, at: &str, fargate: bool, problems: &mut Vec<String>) {
        let Some(log) = &self.log_configuration else {
            return;
        };
        check_value(
            problems,
            &format!("{at}.logConfiguration.logDriver"),
            &log.log_driver,
            LogDriver::values(),
        );
        if log.log_driver != "awslogs" {
            return;
        }
        let options = log.options.clone().unwrap_or_default();
        let missing: Vec<&str> = REQUIRED_AWSLOGS_OPTIONS
            .iter()
            .copied()
            .filter(|key| options.get(*key).is_none_or(|v| v.trim().is_empty()))
            .filter(|key| fargate || *key == "awslogs-group" || *key == "awslogs-stream-prefix")
            .collect();
        if !missing.is_empty() {
            problems.push(format!(
                "{at}.logConfiguration.options lacks {}: the launcher finds the log stream from them",
                missing.join(", ")
            ));
        }
    }

    /// The SDK's container definition.
    pub(crate) fn to_sdk(&self) -> Result<ContainerDefinition, String> {
        let secrets = self
            .secrets
            .as_ref()
            .map(|secrets| {
                secrets
                    .iter()
                    .map(|s| {
                        Secret::builder()
                            .name(&s.name)
                            .value_from(&s.value_from)
                            .build()
                            .map_err(|e| format!("secret {}: {e}", s.name))
                    })
                    .collect::<Result<Vec<_>, _>>()
            })
            .transpose()?;
        let logs = self
            .log_configuration
            .as_ref()
            .map(|log| {
                LogConfiguration::builder()
                    .log_driver(LogDriver::from(log.log_driver.as_str()))
                    .set_options(
                        log.options
                            .as_ref()
                            .map(|o| o.clone().into_iter().collect::<HashMap<_, _>>()),
                    )
                    .build()
                    .map_err(|e| format!("container {} logConfiguration: {e}", self.name))
            })
            .transpose()?;
        Ok(ContainerDefinition::builder()
            .name(&self.name)
            .image(&self.image)
            .set_essential(self.essential)
            .set_command(self.command.clone())
            .set_cpu(self.cpu)
            .set_memory(self.memory)
            .set_memory_reservation(self.memory_reservation)
            .set_environment(self.environment.as_ref().map(|env| {
                env.iter()
                    .map(|e| {
                        KeyValuePair::builder()
                            .name(&e.name)
                            .value(&e.value)
                            .build()
                    })
                    .collect()
            }))
            .set_secrets(secrets)
            .set_log_configuration(logs)
            .set_linux_parameters(self.linux_parameters.as_ref().map(|p| {
                LinuxParameters::builder()
                    .set_init_process_enabled(p.init_process_enabled)
                    .build()
            }))
            .set_stop_timeout(self.stop_timeout)
            .set_port_mappings(self.port_mappings.as_ref().map(|ports| {
                ports
                    .iter()
                    .map(|p| {
                        PortMapping::builder()
                            .set_container_port(p.container_port)
                            .set_host_port(p.host_port)
                            .set_protocol(p.protocol.as_deref().map(TransportProtocol::from))
                            .set_name(p.name.clone())
                            .build()
                    })
                    .collect()
            }))
            .build())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ARN: &str = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:everruns/db-AbCdEf";

    fn spec() -> TaskDefSpec {
        serde_json::from_value(serde_json::json!({
            "family": "everruns-admin",
            "requiresCompatibilities": ["FARGATE"],
            "networkMode": "awsvpc",
            "cpu": "256",
            "memory": "512",
            "executionRoleArn": "arn:aws:iam::123456789012:role/exec",
            "containerDefinitions": [{
                "name": "admin",
                "image": "r/everruns-admin:abc",
                "essential": true,
                "stopTimeout": 120,
                "linuxParameters": {"initProcessEnabled": true},
                "secrets": [{"name": "DATABASE_URL", "valueFrom": ARN}],
                "logConfiguration": {"logDriver": "awslogs", "options": {
                    "awslogs-group": "/ecs/everruns-admin",
                    "awslogs-region": "eu-west-1",
                    "awslogs-stream-prefix": "admin"
                }}
            }]
        }))
        .unwrap()
    }

    #[test]
    fn a_complete_definition_has_no_problems() {
        assert_eq!(spec().problems("admin"), Vec::<String>::new());
    }

    #[test]
    fn secret_arns_are_recognised() {
        assert!(is_secret_arn(ARN));
        assert!(is_secret_arn(
            "arn:aws:ssm:eu-west-1:1:parameter/everruns/db"
        ));
        assert!(!is_secret_arn("everruns/db"));
        assert!(!is_secret_arn("arn:aws:s3:::bucket/key"));
        assert!(!is_secret_arn("arn:aws:secretsmanager:eu-west-1:1:secret:"));
    }

    #[test]
    fn what_the_launcher_relies_on_is_checked() {
        let mut s = spec();
        s.container_definitions[0].essential = Some(false);
        s.container_definitions[0].secrets.as_mut().unwrap()[0].value_from = "everruns/db".into();
        s.container_definitions[0]
            .log_configuration
            .as_mut()
            .unwrap()
            .options
            .as_mut()
            .unwrap()
            .remove("awslogs-region");
        let problems = s.problems("admin").join("\n");
        for needle in [
            "essential is false",
            "not a Secrets Manager",
            "lacks awslogs-region",
        ] {
            assert!(
                problems.contains(needle),
                "{needle} missing from:\n{problems}"
            );
        }
        assert!(spec().problems("migrator")[0].contains("no container \"migrator\""));
    }

    #[test]
    fn ecs_rejections_are_caught_before_the_call() {
        let mut s = spec();
        s.network_mode = Some("bridge".into());
        s.container_definitions[0].stop_timeout = Some(600);
        s.runtime_platform = Some(RuntimePlatformSpec {
            operating_system_family: None,
            cpu_architecture: Some("AMD64".into()),
        });
        let problems = s.problems("admin").join("\n");
        for needle in ["awsvpc", "stopTimeout", "cpuArchitecture"] {
            assert!(
                problems.contains(needle),
                "{needle} missing from:\n{problems}"
            );
        }
    }

    #[test]
    fn unknown_fields_are_refused() {
        let mut value = serde_json::to_value(spec()).unwrap();
        value["containerDefinitions"][0]["healthCheck"] = serde_json::json!({});
        let err = serde_json::from_value::<TaskDefSpec>(value).unwrap_err();
        assert!(err.to_string().contains("healthCheck"), "{err}");
    }

    #[test]
    fn containers_map_onto_the_sdk() {
        let sdk = spec().container_definitions[0].to_sdk().unwrap();
        assert_eq!(sdk.name(), Some("admin"));
        assert_eq!(sdk.essential(), Some(true));
        assert_eq!(sdk.stop_timeout(), Some(120));
        assert_eq!(sdk.secrets()[0].value_from(), ARN);
        assert_eq!(
            sdk.linux_parameters()
                .and_then(|p| p.init_process_enabled()),
            Some(true)
        );
        let logs = sdk.log_configuration().unwrap();
        assert_eq!(logs.log_driver(), &LogDriver::Awslogs);
        assert_eq!(logs.options().unwrap()["awslogs-stream-prefix"], "admin");
    }
}
