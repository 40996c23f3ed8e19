//! The task definition rendered from its template and checked, then registered as a
//! new revision.

use std::path::PathBuf;

use anyhow::anyhow;
use serde::Serialize;

use super::spec::TaskDefSpec;
use super::template::{RenderError, render_json};
use crate::launcher::aws_api::aws_errors::describe_error;
use crate::launcher::aws_api::clients::Clients;
use crate::launcher::error::{CallError, LauncherError, SettingsError};

/// The admin task definition template, built in.
pub(crate) const DEFAULT_TEMPLATE: &str = include_str!("../../../task-definitions/admin.json.tmpl");

/// How the built-in template is named in messages.
const DEFAULT_ORIGIN: &str = "the built-in template (task-definitions/admin.json.tmpl)";

/// `--output json` of `task-def register`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Registered {
    /// The new revision's ARN.
    pub task_definition_arn: String,
    /// Its family.
    pub family: String,
    /// Its revision.
    pub revision: i32,
}

/// The template text and how it is named in messages: the file at `path`, or the
/// built-in one.
pub(crate) fn load_template(path: Option<&PathBuf>) -> Result<(String, String), LauncherError> {
    match path {
        None => Ok((DEFAULT_TEMPLATE.to_owned(), DEFAULT_ORIGIN.to_owned())),
        Some(path) => std::fs::read_to_string(path)
            .map(|text| (text, format!("template {}", path.display())))
            .map_err(|e| {
                SettingsError::invalid(anyhow!(
                    "cannot read template {}: {e}; check --template",
                    path.display()
                ))
            }),
    }
}

/// Renders `text` with `lookup` and checks the result for container `container`;
/// `origin` names the template in messages. Every failure is a usage error (exit 2) that lists all of its problems at once.
pub fn render(
    text: &str,
    origin: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
    container: &str,
) -> Result<TaskDefSpec, LauncherError> {
    if let Err(e) = serde_json::from_str::<TaskDefSpec>(text) {
        return Err(SettingsError::invalid(if e.is_data() {
            anyhow!(
                "{origin}: {e}; this tool registers only the fields it supports (family, \
                 roles, networkMode, requiresCompatibilities, cpu, memory, runtimePlatform, and per \
                 container name, image, essential, command, cpu, memory, memoryReservation, \
                 environment, secrets, logConfiguration, linuxParameters.initProcessEnabled, \
                 stopTimeout, portMappings): remove the field, or register that task definition \
                 with the AWS CLI"
            )
        } else {
            anyhow!("{origin} is not valid JSON: {e}")
        }));
    }
    let rendered = render_json(text, lookup).map_err(|e| {
        let hint = match &e {
            RenderError::Unset(names) => {
                let mut hint = String::from(
                    "; export them (task-definitions/README.md says what each one is)",
                );
                if names.iter().any(|n| n == "IMAGE_TAG") {
                    hint.push_str(", pass --image-tag for IMAGE_TAG");
                }
                if names.iter().any(|n| n == "AWS_REGION") {
                    hint.push_str(", pass --region for AWS_REGION");
                }
                hint
            }
            _ => String::new(),
        };
        SettingsError::invalid(anyhow!("{origin} {e}{hint}"))
    })?;
    let spec: TaskDefSpec = serde_json::from_value(rendered)
        .map_err(|e| SettingsError::invalid(anyhow!("{origin}, once rendered: {e}")))?;
    let problems = spec.problems(container);
    if !problems.is_empty() {
        return Err(SettingsError::invalid(anyhow!(
            "the task definition rendered from {origin} would not work:\n  - {}",
            problems.join("\n  - ")
        )));
    }
    Ok(spec)
}

/// Sends RegisterTaskDefinition. A refusal or an unreachable endpoint is exit 1.
pub async fn register(clients: &Clients, spec: &TaskDefSpec) -> Result<Registered, LauncherError> {
    let request = spec
        .register_request(&clients.ecs)
        .map_err(|e| SettingsError::invalid(anyhow!("the task definition is incomplete: {e}")))?;
    let reply = request.send().await.map_err(|e| {
        CallError::inspecting(anyhow!(
            "{}; nothing was registered: check the values and the credentials (the deployer \
             policy allows ecs:RegisterTaskDefinition and iam:PassRole of the two roles)",
            describe_error("RegisterTaskDefinition", &e)
        ))
    })?;
    let def = reply.task_definition().ok_or_else(|| {
        CallError::inspecting(anyhow!(
            "RegisterTaskDefinition answered without the task definition; check with `aws ecs \
             list-task-definitions --family-prefix {}`",
            spec.family
        ))
    })?;
    Ok(Registered {
        task_definition_arn: def.task_definition_arn().unwrap_or_default().to_owned(),
        family: def.family().unwrap_or(&spec.family).to_owned(),
        revision: def.revision(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const VARIABLES: [(&str, &str); 8] = [
        (
            "ECR_REGISTRY",
            "123456789012.dkr.ecr.eu-west-1.amazonaws.com",
        ),
        ("IMAGE_TAG", "abc123"),
        ("EXECUTION_ROLE_ARN", "arn:aws:iam::123456789012:role/exec"),
        ("TASK_ROLE_ARN", "arn:aws:iam::123456789012:role/task"),
        (
            "DATABASE_URL_SECRET_ARN",
            "arn:aws:secretsmanager:eu-west-1:123456789012:secret:everruns/database-url-AbCdEf",
        ),
        (
            "ENCRYPTION_KEY_SECRET_ARN",
            "arn:aws:secretsmanager:eu-west-1:123456789012:secret:everruns/encryption-key-GhIjKl",
        ),
        (
            "ENCRYPTION_KEY_PREVIOUS_SECRET_ARN",
            "arn:aws:secretsmanager:eu-west-1:123456789012:secret:everruns/encryption-key-previous-MnOpQr",
        ),
        ("AWS_REGION", "eu-west-1"),
    ];

    fn all(name: &str) -> Option<String> {
        VARIABLES
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.to_string())
    }

    #[test]
    fn the_built_in_template_renders_and_passes_its_checks() {
        let spec = render(DEFAULT_TEMPLATE, DEFAULT_ORIGIN, &all, "admin").unwrap();
        assert_eq!(spec.family, "everruns-admin");
        let admin = &spec.container_definitions[0];
        assert_eq!(
            admin.image,
            "123456789012.dkr.ecr.eu-west-1.amazonaws.com/everruns-admin:abc123"
        );
    }

    #[test]
    fn every_unset_variable_is_named_at_once() {
        let err = render(DEFAULT_TEMPLATE, DEFAULT_ORIGIN, &|_| None, "admin").unwrap_err();
        assert_eq!(err.exit_code(), 2);
        let text = err.to_string();
        for (name, _) in VARIABLES {
            assert!(text.contains(name), "{name} missing from {text}");
        }
        assert!(text.contains("--image-tag"), "{text}");
    }

    #[test]
    fn unknown_fields_are_a_usage_error_naming_the_field() {
        let template = DEFAULT_TEMPLATE.replacen("\"cpu\"", "\"pidMode\": \"task\", \"cpu\"", 1);
        let err = render(&template, "template t.json", &all, "admin").unwrap_err();
        assert_eq!(err.exit_code(), 2);
        assert!(err.to_string().contains("pidMode"), "{err}");
    }
}
