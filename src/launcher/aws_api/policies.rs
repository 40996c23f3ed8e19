//! The three IAM policies of `task-definitions/iam/`, one per role, and which of them a
//! command needs: a refused call then names the policy to ask for instead of leaving
//! the operator to search the IAM documentation at 3 a.m.
//!
//! `GRANTS` restates, action by action, what the policy files allow; a test holds the
//! two to each other, so a policy file changed without this table fails CI.

use std::sync::RwLock;

/// One of the shipped policies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    /// Runs, follows, inspects, stops and enters the admin tasks it started.
    Operator,
    /// Registers task definitions and passes the two roles: the CI deploy role.
    Deployer,
    /// Reads and stages the encryption key secrets: `keys`.
    KeyAdmin,
}

impl Policy {
    /// Every policy, in the README's order.
    pub const ALL: [Policy; 3] = [Policy::Operator, Policy::Deployer, Policy::KeyAdmin];

    /// Its name, as the README and the messages use it.
    pub fn name(self) -> &'static str {
        match self {
            Policy::Operator => "operator",
            Policy::Deployer => "deployer",
            Policy::KeyAdmin => "key-admin",
        }
    }

    /// Its file, from the repository's root.
    pub fn file(self) -> String {
        format!("task-definitions/iam/{}-policy.json", self.name())
    }
}

use Policy::{Deployer, KeyAdmin, Operator};

/// Which policies allow each action the launcher calls.
pub const GRANTS: &[(&str, &[Policy])] = &[
    ("ecs:RunTask", &[Operator]),
    ("ecs:TagResource", &[Operator]),
    ("ecs:DescribeTasks", &[Operator]),
    ("ecs:StopTask", &[Operator]),
    ("ecs:ExecuteCommand", &[Operator]),
    ("ecs:ListTasks", &[Operator]),
    ("ecs:DescribeClusters", &[Operator]),
    ("ecs:DescribeServices", &[Operator]),
    ("ecs:DescribeTaskDefinition", &[Operator, KeyAdmin]),
    ("ecs:RegisterTaskDefinition", &[Deployer]),
    ("iam:PassRole", &[Operator, Deployer]),
    ("logs:GetLogEvents", &[Operator]),
    ("logs:DescribeLogStreams", &[Operator]),
    ("logs:DescribeLogGroups", &[Operator]),
    ("ec2:DescribeSubnets", &[Operator]),
    ("ec2:DescribeSecurityGroups", &[Operator]),
    ("ecr:DescribeImages", &[Operator]),
    ("secretsmanager:DescribeSecret", &[Operator, KeyAdmin]),
    ("secretsmanager:GetSecretValue", &[KeyAdmin]),
    ("secretsmanager:PutSecretValue", &[KeyAdmin]),
    ("ssm:StartSession", &[Operator]),
];

/// The command this invocation runs and the policies it needs, for messages about a
/// refused call. Set once by the dispatch; one invocation runs one command.
static NEEDED: RwLock<Option<(String, &'static [Policy])>> = RwLock::new(None);

/// Records the command being run and the policies it needs.
pub(crate) fn remember_command(command: &str, policies: &'static [Policy]) {
    if let Ok(mut needed) = NEEDED.write() {
        *needed = Some((command.to_owned(), policies));
    }
}

/// Names `policies` as a sentence: "the operator and key-admin policies".
fn named(policies: &[Policy]) -> String {
    let names: Vec<&str> = policies.iter().map(|p| p.name()).collect();
    match names.as_slice() {
        [one] => format!("the {one} policy"),
        [init @ .., last] => format!("the {} and {last} policies", init.join(", ")),
        [] => "no policy".to_owned(),
    }
}

/// What to ask for when AWS refused `action` (`ecs:StopTask`): the policy that grants
/// it among those the command needs, and its file.
pub(crate) fn denial_hint(action: &str) -> String {
    let holders: &[Policy] = GRANTS
        .iter()
        .find(|(a, _)| *a == action)
        .map_or(&[], |(_, p)| *p);
    let needed = NEEDED.read().ok().and_then(|n| n.clone());
    let holder = needed
        .as_ref()
        .and_then(|(_, policies)| holders.iter().find(|h| policies.contains(h)))
        .or(holders.first());
    let mut hint = match holder {
        Some(policy) => format!(
            "{action} is granted by the {} policy ({})",
            policy.name(),
            policy.file()
        ),
        None => format!("{action} is in none of the policies of task-definitions/iam/"),
    };
    if matches!(action, "ecs:StopTask" | "ecs:ExecuteCommand") {
        hint.push_str(", and only on tasks run-admin-task started (tag everruns-admin:started-by)");
    }
    if let Some((command, policies)) = needed {
        hint.push_str(&format!("; `{command}` needs {}", named(policies)));
    }
    hint
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_one_or_several_policies() {
        assert_eq!(named(&[Operator]), "the operator policy");
        assert_eq!(
            named(&[Operator, KeyAdmin]),
            "the operator and key-admin policies"
        );
        assert_eq!(Deployer.file(), "task-definitions/iam/deployer-policy.json");
    }
}
