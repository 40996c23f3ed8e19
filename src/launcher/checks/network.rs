//! The subnets and security groups exist in the region, in one VPC: RunTask refuses
//! anything else, after the operator has confirmed.

use aws_sdk_ec2::error::ProvideErrorMetadata;

use super::aws::api_fix;
use super::check::Check;
use crate::launcher::aws_api::aws_errors::{describe_error, error_code};
use crate::launcher::aws_api::policies::denial_hint;
use crate::launcher::config::Origin;

/// The subnets exist (DescribeSubnets); returns the check and the subnets' VPCs, which
/// the security groups must be in.
pub async fn subnets(
    ec2: &aws_sdk_ec2::Client,
    subnets: &[String],
    origin: &Origin,
    region: &str,
) -> (Check, Vec<String>) {
    const NAME: &str = "subnets";
    let fix = "use subnets of this account and region (--subnets, ECS_SUBNETS, `subnets` in the \
               config file, or --from-service NAME): private ones that route to the database";
    let reply = ec2
        .describe_subnets()
        .set_subnet_ids(Some(subnets.to_vec()))
        .send()
        .await;
    match reply {
        Ok(reply) => {
            let mut vpcs: Vec<String> = reply
                .subnets()
                .iter()
                .filter_map(|s| s.vpc_id().map(str::to_owned))
                .collect();
            vpcs.sort();
            vpcs.dedup();
            let found: Vec<String> = reply
                .subnets()
                .iter()
                .map(|s| {
                    format!(
                        "{} ({})",
                        s.subnet_id().unwrap_or_default(),
                        s.availability_zone().unwrap_or("no zone")
                    )
                })
                .collect();
            let detail = format!("{} in {} ({origin})", found.join(", "), vpcs.join(", "));
            if vpcs.len() > 1 {
                let fix = "name subnets of one VPC: a task's network interface is in one";
                (
                    Check::fail(NAME, format!("{detail}: more than one VPC"), fix),
                    vpcs,
                )
            } else {
                (Check::pass(NAME, detail), vpcs)
            }
        }
        Err(e) => {
            let check = refused(NAME, &e, subnets, origin, region, "DescribeSubnets", fix);
            (check, Vec::new())
        }
    }
}

/// The security groups exist (DescribeSecurityGroups) and are in the subnets' VPC.
pub async fn security_groups(
    ec2: &aws_sdk_ec2::Client,
    groups: &[String],
    origin: &Origin,
    subnet_vpcs: &[String],
    region: &str,
) -> Check {
    const NAME: &str = "security-groups";
    let fix = "use security groups of the subnets' VPC that the database allows in \
               (--security-groups, ECS_SECURITY_GROUP, `security_groups` in the config file, or \
               --from-service NAME)";
    let reply = ec2
        .describe_security_groups()
        .set_group_ids(Some(groups.to_vec()))
        .send()
        .await;
    match reply {
        Ok(reply) => {
            let found: Vec<String> = reply
                .security_groups()
                .iter()
                .map(|g| {
                    format!(
                        "{} ({}, {})",
                        g.group_id().unwrap_or_default(),
                        g.group_name().unwrap_or("no name"),
                        g.vpc_id().unwrap_or("no VPC")
                    )
                })
                .collect();
            let detail = format!("{} ({origin})", found.join(", "));
            let elsewhere: Vec<&str> = reply
                .security_groups()
                .iter()
                .filter(|g| {
                    !subnet_vpcs.is_empty()
                        && !g
                            .vpc_id()
                            .is_some_and(|v| subnet_vpcs.iter().any(|s| s == v))
                })
                .filter_map(|g| g.group_id())
                .collect();
            if elsewhere.is_empty() {
                Check::pass(NAME, detail)
            } else {
                Check::fail(
                    NAME,
                    format!(
                        "{detail}: {} not in the subnets' VPC {}",
                        elsewhere.join(", "),
                        subnet_vpcs.join(", ")
                    ),
                    fix,
                )
            }
        }
        Err(e) => refused(
            NAME,
            &e,
            groups,
            origin,
            region,
            "DescribeSecurityGroups",
            fix,
        ),
    }
}

/// The check when EC2 refused to describe `ids`: an id it does not know (`Invalid…`)
/// fails with EC2's own words; a call the operator may not make is SKIP, naming the
/// permission; anything else fails with the call's error.
fn refused<E, R>(
    name: &str,
    error: &aws_sdk_ec2::error::SdkError<E, R>,
    ids: &[String],
    origin: &Origin,
    region: &str,
    operation: &str,
    fix: &str,
) -> Check
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug + 'static,
{
    let code = error_code(error).unwrap_or_default();
    let ids = ids.join(", ");
    if code.starts_with("Invalid") {
        let said = error
            .as_service_error()
            .and_then(|s| s.message())
            .unwrap_or("not found");
        Check::fail(name, format!("{ids} ({origin}): {said} in {region}"), fix)
    } else if code.contains("UnauthorizedOperation") || code.contains("AccessDenied") {
        Check::skip(
            name,
            format!(
                "{ids} ({origin}); not allowed to {operation}, so not checked ({})",
                denial_hint(&format!("ec2:{operation}"))
            ),
        )
    } else {
        Check::fail(
            name,
            describe_error(operation, error),
            api_fix(error, &format!("ec2:{operation}"), fix),
        )
    }
}
