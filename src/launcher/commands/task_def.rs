//! `task-def render|register [--image-tag TAG] [--template PATH]`: the admin task
//! definition from its template, rendered strictly and checked before ECS sees it.
//!
//! Values come from the environment (the variables of `task-definitions/README.md`);
//! `--image-tag` overrides `IMAGE_TAG`, and `AWS_REGION` falls back to the resolved
//! region. Exit status (its own): 0 done, 1 AWS refused or could not be reached,
//! 2 template or configuration error (nothing was registered).

use std::path::PathBuf;

use clap::{Args, Subcommand};

use crate::launcher::aws_api::clients::Clients;
use crate::launcher::context::Context;
use crate::launcher::error::LauncherError;
use crate::launcher::flags::{OutputFormat, process_env};
use crate::launcher::task_definition::{load_template, register, render};

/// `task-def render|register`.
#[derive(Debug, Clone, Subcommand)]
pub enum TaskDefArgs {
    /// Print the rendered, checked task definition JSON
    Render(TemplateArgs),
    /// Register it as a new revision and print FAMILY:REVISION
    Register(TemplateArgs),
}

/// The template and its `IMAGE_TAG`.
#[derive(Debug, Clone, Args)]
pub struct TemplateArgs {
    /// The image tag (the value of IMAGE_TAG) [env: IMAGE_TAG]
    #[arg(long, value_name = "TAG")]
    pub image_tag: Option<String>,
    /// A template file instead of the built-in task-definitions/admin.json.tmpl
    #[arg(long, value_name = "PATH")]
    pub template: Option<PathBuf>,
}

#[derive(Clone, Copy)]
enum Action {
    Render,
    Register,
}

/// Runs `task-def render` or `task-def register`.
pub async fn exec(context: &Context, args: &TaskDefArgs) -> Result<u8, LauncherError> {
    let (action, template) = match args {
        TaskDefArgs::Render(t) => (Action::Render, t),
        TaskDefArgs::Register(t) => (Action::Register, t),
    };
    let (text, origin) = load_template(template.template.as_ref())?;
    match action {
        Action::Render => {
            let lookup = variables(template, context.config.region.clone());
            let spec = render(&text, &origin, &lookup, &context.config.container)?;
            crate::stdio::out_line(format_args!(
                "{}",
                serde_json::to_string_pretty(&spec).expect("task definitions always serialize")
            ));
            Ok(0)
        }
        Action::Register => {
            let clients = Clients::connect(&context.config).await?;
            let region = context
                .config
                .region
                .clone()
                .unwrap_or_else(|| clients.region.clone());
            let lookup = variables(template, Some(region));
            let spec = render(&text, &origin, &lookup, &context.config.container)?;
            let registered = register(&clients, &spec).await?;
            let pinned = format!("{}:{}", registered.family, registered.revision);
            context.renderer.note(&format!(
                "registered {}; run it with --task-definition {pinned}",
                registered.task_definition_arn
            ));
            if context.options.output == OutputFormat::Human {
                crate::stdio::out_line(format_args!("{pinned}"));
            }
            context.renderer.document(&registered);
            Ok(0)
        }
    }
}

/// The template's variables: `--image-tag` for `IMAGE_TAG`, the environment (empty
/// counts as unset), and `region` for `AWS_REGION` when the environment has none.
fn variables(args: &TemplateArgs, region: Option<String>) -> impl Fn(&str) -> Option<String> {
    let image_tag = args.image_tag.clone().filter(|t| !t.trim().is_empty());
    move |name: &str| match name {
        "IMAGE_TAG" => image_tag.clone().or_else(|| process_env(name)),
        "AWS_REGION" => process_env(name).or_else(|| region.clone()),
        _ => process_env(name),
    }
}
