//! `--from-service NAME`: the application's ECS service already holds the network a
//! task needs to reach the database (subnets, security groups, public IP), and the
//! capacity and platform it runs on. A launch copies what the operator did not set
//! explicitly, field by field, from DescribeServices.

use anyhow::anyhow;
use aws_sdk_ecs::types::{AssignPublicIp, Service};

use crate::launcher::aws_api::aws_errors::{cluster_not_found, launch_error};
use crate::launcher::aws_api::clients::Clients;
use crate::launcher::capacity::{Capacity, CapacityShare};
use crate::launcher::config::{LaunchConfig, Origin};
use crate::launcher::error::{LauncherError, SettingsError};

/// What a launch can copy from a service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceSettings {
    /// The service's name.
    pub name: String,
    /// Its awsvpc subnets (never empty).
    pub subnets: Vec<String>,
    /// Its security groups.
    pub security_groups: Vec<String>,
    /// Whether its tasks get a public IP.
    pub assign_public_ip: bool,
    /// Its launch type or capacity-provider strategy; `None` when it uses the
    /// cluster's default strategy.
    pub capacity: Option<Capacity>,
    /// Its platform version, when it names one.
    pub platform_version: Option<String>,
}

impl ServiceSettings {
    /// Describes service `name` of `cluster`. A service that does not exist (or was
    /// deleted) or has no awsvpc network configuration is a configuration error
    /// (exit 2) naming it; an API failure is exit 125 like any launch failure.
    pub async fn describe(
        clients: &Clients,
        cluster: &str,
        name: &str,
    ) -> Result<Self, LauncherError> {
        let reply = clients
            .ecs
            .describe_services()
            .cluster(cluster)
            .services(name)
            .send()
            .await
            .map_err(|e| {
                cluster_not_found(&e, cluster, &clients.ecs)
                    .unwrap_or_else(|| launch_error("DescribeServices", &e))
            })?;
        let service = reply
            .services()
            .iter()
            .find(|s| s.status() != Some("INACTIVE"))
            .ok_or_else(|| {
                SettingsError::invalid(anyhow!(
                    "there is no active ECS service {name:?} in cluster {cluster} (region {}): check --from-service / ECS_SERVICE / `service` (`aws ecs list-services --cluster {cluster}` lists them), or drop it and set --subnets and --security-groups",
                    clients.region
                ))
            })?;
        Self::of(service, name)
    }

    /// The settings of a described service; a service without awsvpc networking has
    /// none to give.
    pub fn of(service: &Service, name: &str) -> Result<Self, LauncherError> {
        let vpc = service
            .network_configuration()
            .and_then(|n| n.awsvpc_configuration())
            .filter(|vpc| !vpc.subnets().is_empty())
            .ok_or_else(|| {
                SettingsError::invalid(anyhow!(
                    "ECS service {name:?} has no awsvpc network configuration to copy (its tasks do not run in awsvpc mode): set --subnets and --security-groups instead of --from-service"
                ))
            })?;
        let strategy = service.capacity_provider_strategy();
        let capacity = if !strategy.is_empty() {
            Some(Capacity::Strategy(
                strategy
                    .iter()
                    .map(|item| CapacityShare {
                        provider: item.capacity_provider().to_string(),
                        weight: item.weight(),
                        base: item.base(),
                    })
                    .collect(),
            ))
        } else {
            service
                .launch_type()
                .map(|t| Capacity::LaunchType(t.as_str().to_string()))
        };
        Ok(ServiceSettings {
            name: name.to_string(),
            subnets: vpc.subnets().to_vec(),
            security_groups: vpc.security_groups().to_vec(),
            assign_public_ip: vpc.assign_public_ip() == Some(&AssignPublicIp::Enabled),
            capacity,
            platform_version: service
                .platform_version()
                .filter(|v| !v.is_empty())
                .map(str::to_string),
        })
    }

    /// Copies into `config` every setting nothing else set: a flag or a config key wins
    /// over the service for its own field only. A service the operator named (flag or
    /// config file) also wins over the shell's variables, which are said to be ignored.
    pub(crate) fn apply_to(&self, config: &mut LaunchConfig) {
        let from = || Origin::Service(self.name.clone());
        let named = match &config.origins.service {
            Origin::Flag(flag) => Some(format!("{flag} {}", self.name)),
            Origin::Config(_) => Some(format!("service {} (config file)", self.name)),
            _ => None,
        };
        // Whether the service takes a field now set from `origin`, noting an ignored
        // variable.
        let mut ignored = Vec::new();
        let mut takes = |origin: &Origin, field: &str, value: String| match (origin, &named) {
            (Origin::Default, _) => true,
            (Origin::Env(var), Some(named)) => {
                ignored.push(format!("{var} ignored: {named} sets {field} {value}"));
                true
            }
            _ => false,
        };
        let mut origins = config.origins.clone();
        if takes(&origins.subnets, "subnets", self.subnets.join(",")) {
            config.subnets = self.subnets.clone();
            origins.subnets = from();
        }
        if !self.security_groups.is_empty()
            && takes(
                &origins.security_groups,
                "security groups",
                self.security_groups.join(","),
            )
        {
            config.security_groups = self.security_groups.clone();
            origins.security_groups = from();
        }
        if origins.assign_public_ip == Origin::Default {
            config.assign_public_ip = self.assign_public_ip;
            origins.assign_public_ip = from();
        }
        if origins.capacity == Origin::Default
            && let Some(capacity) = &self.capacity
        {
            config.capacity = capacity.clone();
            origins.capacity = from();
        }
        if origins.platform_version == Origin::Default
            && let Some(version) = &self.platform_version
        {
            config.platform_version = Some(version.clone());
            origins.platform_version = from();
        }
        config.origins = origins;
        config.overridden.extend(ignored);
    }
}

/// Copies the service's settings into `config` when one is named; nothing otherwise.
pub(crate) async fn adopt(config: &mut LaunchConfig) -> Result<(), LauncherError> {
    let Some(name) = config.service.clone() else {
        return Ok(());
    };
    let clients = Clients::connect(config).await?;
    ServiceSettings::describe(&clients, &config.cluster, &name)
        .await?
        .apply_to(config);
    Ok(())
}

/// The launch settings and where each came from, one `name: value (origin)` line each,
/// for `--print-request` and `doctor`.
pub(crate) fn describe_origins(config: &LaunchConfig) -> Vec<String> {
    let list = |items: &[String]| {
        if items.is_empty() {
            "(none)".to_string()
        } else {
            items.join(", ")
        }
    };
    let o = &config.origins;
    [
        ("cluster", config.cluster.clone(), &o.cluster),
        (
            "task definition",
            config.task_definition.clone(),
            &o.task_definition,
        ),
        ("subnets", list(&config.subnets), &o.subnets),
        (
            "security groups",
            list(&config.security_groups),
            &o.security_groups,
        ),
        (
            "public IP",
            if config.assign_public_ip {
                "ENABLED"
            } else {
                "DISABLED"
            }
            .to_string(),
            &o.assign_public_ip,
        ),
        ("capacity", config.capacity.describe(), &o.capacity),
        (
            "platform version",
            config
                .platform_version
                .clone()
                .unwrap_or_else(|| "LATEST".to_string()),
            &o.platform_version,
        ),
        (
            "region",
            config
                .region
                .clone()
                .unwrap_or_else(|| "(the SDK's chain: the profile's region)".to_string()),
            &o.region,
        ),
        (
            "endpoint",
            config
                .endpoint_url
                .clone()
                .unwrap_or_else(|| "AWS".to_string()),
            &o.endpoint_url,
        ),
    ]
    .into_iter()
    .map(|(name, value, origin)| format!("{name}: {value} ({origin})"))
    .chain(std::iter::once(format!(
        "credentials: {}",
        config.credentials
    )))
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contract::exit::launcher;
    use crate::launcher::config::tests::env_of;
    use crate::launcher::flags::GlobalOptions;
    use aws_sdk_ecs::types::{
        AwsVpcConfiguration, CapacityProviderStrategyItem, LaunchType, NetworkConfiguration,
    };

    fn service(vpc: Option<AwsVpcConfiguration>) -> Service {
        let mut builder = Service::builder()
            .service_name("api")
            .launch_type(LaunchType::Fargate)
            .platform_version("1.4.0");
        if let Some(vpc) = vpc {
            builder = builder.network_configuration(
                NetworkConfiguration::builder()
                    .awsvpc_configuration(vpc)
                    .build(),
            );
        }
        builder.build()
    }

    fn vpc() -> AwsVpcConfiguration {
        AwsVpcConfiguration::builder()
            .subnets("subnet-svc1")
            .subnets("subnet-svc2")
            .security_groups("sg-svc")
            .assign_public_ip(AssignPublicIp::Enabled)
            .build()
            .unwrap()
    }

    #[test]
    fn a_named_service_beats_the_shells_subnets_and_an_ambient_one_does_not() {
        let settings = ServiceSettings::of(&service(Some(vpc())), "api").unwrap();
        let shell = [("ECS_SUBNETS", "subnet-demo"), ("ECS_SERVICE", "api")];
        let named = GlobalOptions {
            from_service: Some("api".into()),
            ..Default::default()
        };
        let mut config = LaunchConfig::resolve(&named, &env_of(&shell)).unwrap();
        settings.apply_to(&mut config);
        assert_eq!(config.subnets, ["subnet-svc1", "subnet-svc2"]);
        assert_eq!(
            config.overridden,
            ["ECS_SUBNETS ignored: --from-service api sets subnets subnet-svc1,subnet-svc2"]
        );

        let mut config = LaunchConfig::resolve(&GlobalOptions::default(), &env_of(&shell)).unwrap();
        settings.apply_to(&mut config);
        assert_eq!(config.subnets, ["subnet-demo"]);
        assert!(config.overridden.is_empty());
    }

    #[test]
    fn a_service_fills_what_nothing_else_set() {
        let settings = ServiceSettings::of(&service(Some(vpc())), "api").unwrap();
        let options = GlobalOptions {
            security_groups: vec!["sg-flag".into()],
            ..Default::default()
        };
        let mut config = LaunchConfig::resolve(&options, &env_of(&[])).unwrap();
        settings.apply_to(&mut config);
        assert_eq!(config.subnets, ["subnet-svc1", "subnet-svc2"]);
        assert_eq!(config.origins.subnets, Origin::Service("api".into()));
        assert_eq!(config.security_groups, ["sg-flag"]);
        assert_eq!(
            config.origins.security_groups,
            Origin::Flag("--security-groups")
        );
        assert!(config.assign_public_ip);
        assert_eq!(config.capacity, Capacity::LaunchType("FARGATE".into()));
        assert_eq!(config.platform_version.as_deref(), Some("1.4.0"));
        let lines = describe_origins(&config);
        assert!(
            lines.contains(&"subnets: subnet-svc1, subnet-svc2 (service api)".to_string()),
            "{lines:?}"
        );
        assert!(
            lines.contains(&"security groups: sg-flag (flag --security-groups)".to_string()),
            "{lines:?}"
        );
    }

    #[test]
    fn a_capacity_provider_strategy_is_copied_whole() {
        let item = |provider: &str, weight, base| {
            CapacityProviderStrategyItem::builder()
                .capacity_provider(provider)
                .weight(weight)
                .base(base)
                .build()
                .unwrap()
        };
        let with_strategy = Service::builder()
            .network_configuration(
                NetworkConfiguration::builder()
                    .awsvpc_configuration(vpc())
                    .build(),
            )
            .capacity_provider_strategy(item("FARGATE_SPOT", 3, 0))
            .capacity_provider_strategy(item("FARGATE", 1, 1))
            .build();
        let settings = ServiceSettings::of(&with_strategy, "api").unwrap();
        assert_eq!(
            settings.capacity.unwrap().describe(),
            "FARGATE_SPOT (weight 3), FARGATE (weight 1, base 1)"
        );
    }

    #[test]
    fn a_service_without_awsvpc_is_a_configuration_error_naming_it() {
        let error = ServiceSettings::of(&service(None), "api").unwrap_err();
        assert_eq!(error.exit_code(), launcher::USAGE);
        let message = error.to_string();
        assert!(
            message.contains("\"api\"") && message.contains("--subnets"),
            "{message}"
        );
    }
}
