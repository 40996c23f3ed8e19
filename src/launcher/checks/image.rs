//! The container's image exists in ECR: a tag that was never pushed fails the task's
//! start with CannotPullContainerError, after the operator has confirmed.

use aws_sdk_ecs::types::TaskDefinition;

use super::aws::api_fix;
use super::check::Check;
use crate::launcher::aws_api::aws_errors::{describe_error, error_code};
use crate::launcher::aws_api::policies::denial_hint;

/// An image in ECR, from its URI `ACCOUNT.dkr.ecr.REGION.amazonaws.com/REPO[:TAG|@DIGEST]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct EcrImage {
    pub(crate) account: String,
    pub(crate) region: String,
    pub(crate) repository: String,
    /// The tag (`latest` when the URI names none) or the digest.
    pub(crate) reference: ImageReference,
}

/// How an image URI names its image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ImageReference {
    Tag(String),
    Digest(String),
}

impl EcrImage {
    /// The image, if `uri` is in an ECR registry; `None` for any other registry.
    pub(crate) fn parse(uri: &str) -> Option<Self> {
        let (host, path) = uri.split_once('/')?;
        let labels: Vec<&str> = host.split('.').collect();
        let in_ecr = labels.len() >= 6
            && labels[0].len() == 12
            && labels[0].bytes().all(|b| b.is_ascii_digit())
            && labels[1] == "dkr"
            && labels[2].starts_with("ecr")
            && labels[4..6] == ["amazonaws", "com"];
        if !in_ecr || path.is_empty() {
            return None;
        }
        let (repository, reference) = match path.split_once('@') {
            Some((repository, digest)) => (repository, ImageReference::Digest(digest.to_owned())),
            None => match path.rsplit_once(':') {
                Some((repository, tag)) if !tag.contains('/') => {
                    (repository, ImageReference::Tag(tag.to_owned()))
                }
                _ => (path, ImageReference::Tag("latest".to_owned())),
            },
        };
        Some(EcrImage {
            account: labels[0].to_owned(),
            region: labels[3].to_owned(),
            repository: repository.to_owned(),
            reference,
        })
    }
}

/// The container's image exists in ECR (DescribeImages): a tag that was never pushed
/// fails the task's start with CannotPullContainerError, after the launch.
pub async fn image(ecr: &aws_sdk_ecr::Client, def: &TaskDefinition, container: &str) -> Check {
    const NAME: &str = "image";
    let Some(uri) = def
        .container_definitions()
        .iter()
        .find(|c| c.name() == Some(container))
        .and_then(|c| c.image())
    else {
        return Check::skip(NAME, format!("no image for container {container:?}"));
    };
    let Some(image) = EcrImage::parse(uri) else {
        return Check::skip(
            NAME,
            format!("{uri} is not in ECR: not checked (ECS pulls it when the task starts)"),
        );
    };
    let ecr = match ecr.config().region() {
        Some(r) if r.as_ref() == image.region => ecr.clone(),
        _ => aws_sdk_ecr::Client::from_conf(
            ecr.config()
                .to_builder()
                .region(aws_sdk_ecr::config::Region::new(image.region.clone()))
                .build(),
        ),
    };
    let id = match &image.reference {
        ImageReference::Tag(tag) => aws_sdk_ecr::types::ImageIdentifier::builder().image_tag(tag),
        ImageReference::Digest(d) => aws_sdk_ecr::types::ImageIdentifier::builder().image_digest(d),
    };
    let fix = "push the image (admin-image/build.sh builds it), or set the task definition's \
               image to one that was pushed and run `run-admin-task task-def register`";
    let reply = ecr
        .describe_images()
        .registry_id(&image.account)
        .repository_name(&image.repository)
        .image_ids(id.build())
        .send()
        .await;
    match reply {
        Ok(reply) => match reply.image_details().first() {
            Some(detail) => Check::pass(
                NAME,
                format!(
                    "{uri} exists ({}{})",
                    detail.image_digest().unwrap_or("no digest"),
                    detail
                        .image_pushed_at()
                        .map(|t| format!(", pushed {t}"))
                        .unwrap_or_default()
                ),
            ),
            None => Check::fail(NAME, format!("{uri} was not found in ECR"), fix),
        },
        Err(e) => match error_code(&e).unwrap_or_default() {
            "ImageNotFoundException" => Check::fail(
                NAME,
                format!(
                    "{uri}: no such image in repository {} (never pushed, or deleted): the task \
                     would fail to start with CannotPullContainerError",
                    image.repository
                ),
                fix,
            ),
            "RepositoryNotFoundException" => Check::fail(
                NAME,
                format!(
                    "{uri}: repository {} does not exist in account {}, {}",
                    image.repository, image.account, image.region
                ),
                fix,
            ),
            c if c.contains("AccessDenied") => Check::skip(
                NAME,
                format!(
                    "not allowed to DescribeImages in {}; ECS's execution role may still pull it \
                     ({})",
                    image.repository,
                    denial_hint("ecr:DescribeImages")
                ),
            ),
            _ => Check::fail(
                NAME,
                format!("{uri}: {}", describe_error("DescribeImages", &e)),
                api_fix(&e, "ecr:DescribeImages", fix),
            ),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ecr_image_uris_name_account_region_repository_and_reference() {
        let image = |account: &str, region: &str, repository: &str, reference| EcrImage {
            account: account.into(),
            region: region.into(),
            repository: repository.into(),
            reference,
        };
        assert_eq!(
            EcrImage::parse("123456789012.dkr.ecr.eu-west-1.amazonaws.com/team/admin:abc123"),
            Some(image(
                "123456789012",
                "eu-west-1",
                "team/admin",
                ImageReference::Tag("abc123".into())
            ))
        );
        assert_eq!(
            EcrImage::parse("123456789012.dkr.ecr.us-east-1.amazonaws.com/admin"),
            Some(image(
                "123456789012",
                "us-east-1",
                "admin",
                ImageReference::Tag("latest".into())
            ))
        );
        assert_eq!(
            EcrImage::parse("123456789012.dkr.ecr-fips.us-east-1.amazonaws.com/admin@sha256:ab"),
            Some(image(
                "123456789012",
                "us-east-1",
                "admin",
                ImageReference::Digest("sha256:ab".into())
            ))
        );
        for elsewhere in [
            "everruns-admin:local",
            "ghcr.io/everruns/admin:1",
            "public.ecr.aws/everruns/admin:1",
            "localhost:5000/admin:1",
            "12345.dkr.ecr.us-east-1.amazonaws.com/admin:1",
        ] {
            assert_eq!(EcrImage::parse(elsewhere), None, "{elsewhere}");
        }
    }
}
