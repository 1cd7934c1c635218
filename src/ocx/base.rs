//! Where the FROM image comes from: an image the user built, a Dockerfile ocx builds it from,
//! or the built-in default; and the name a Dockerfile-built base gets.

use super::config::{Config, Source};
use super::dockerfile;
use super::paths::Trust;
use crate::error::{user_error, ErrorKind, UserError};
use crate::fingerprint::Fingerprint;
use crate::image_ref::ImageRef;
use anyhow::Result;
use camino::{Utf8Path, Utf8PathBuf};

/// Where the FROM image comes from.
pub(crate) enum Base {
    /// An image that must already exist (built by the user; only checked for existence).
    Image(ImageRef),
    /// An image built from a Dockerfile when missing, when its inputs changed, or on
    /// --rebuild-base.
    Dockerfile {
        image: ImageRef,
        dockerfile: Utf8PathBuf,
        context: Utf8PathBuf,
    },
    /// The built-in default base.
    Default(ImageRef),
}

impl Base {
    pub(crate) fn image(&self) -> &ImageRef {
        match self {
            Base::Image(i) | Base::Dockerfile { image: i, .. } | Base::Default(i) => i,
        }
    }
}

/// `custom_base_dockerfile` is looked up in the project first, then in
/// `~/.config/ocx/<project-dirname>/`; the context is `custom_base_context` (relative to the
/// project), else the directory the Dockerfile was found in. Paths from the project's own
/// `ocx.json` must stay inside those two places.
pub(crate) fn resolve_base(config: &Config, project: &Utf8Path, trust: &Trust) -> Result<Base> {
    let source = |key: &str| config.sources.get(key).cloned().unwrap_or(Source::Default);
    let Some(rel) = &config.custom_base_dockerfile else {
        if let Some(c) = &config.custom_base_context {
            return user_error(
                ErrorKind::Setting,
                format!(
                    "custom_base_context {c} (from {}) needs custom_base_dockerfile",
                    source("custom_base_context")
                ),
            );
        }
        return Ok(match &config.custom_base_image {
            Some(i) => Base::Image(i.clone()),
            None => {
                let h = Fingerprint::new()
                    .add("dockerfile", dockerfile::DEFAULT_BASE_DOCKERFILE)
                    .finish();
                Base::Default(ImageRef::parse(&format!("ocx-default-base:{}", &h[..12]))?)
            }
        });
    };
    let dirname = project.file_name().unwrap_or("project");
    let mut tried = vec![project.join(rel)];
    if let Some(g) = trust.global_dir() {
        tried.push(g.join(rel));
    }
    let Some(found) = tried.iter().find(|p| p.is_file()) else {
        let list: Vec<String> = tried.iter().map(|p| p.to_string()).collect();
        return user_error(
            ErrorKind::File,
            format!(
                "custom_base_dockerfile {rel} not found; tried {}",
                list.join(" and ")
            ),
        );
    };
    let found = trust.check_value(
        "custom_base_dockerfile",
        &source("custom_base_dockerfile"),
        rel.as_str(),
        found,
    )?;
    let image = match &config.custom_base_image {
        Some(i) => i.clone(),
        None => default_base_name(project, dirname)?,
    };
    let context = match &config.custom_base_context {
        Some(c) => {
            let dir = project.join(c);
            if !dir.is_dir() {
                return user_error(
                    ErrorKind::File,
                    format!(
                        "custom_base_context {c} (from {}) is not a directory: {dir}",
                        source("custom_base_context")
                    ),
                );
            }
            trust.check_value(
                "custom_base_context",
                &source("custom_base_context"),
                c.as_str(),
                &dir,
            )?
        }
        None => found
            .parent()
            .map(Utf8Path::to_owned)
            .unwrap_or_else(|| project.to_owned()),
    };
    Ok(Base::Dockerfile {
        image,
        dockerfile: found,
        context,
    })
}

/// The base built from a Dockerfile when `custom_base_image` is unset: readable, and unique
/// per project path, so two checkouts named `app` never share (and overwrite) one base.
fn default_base_name(project: &Utf8Path, dirname: &str) -> Result<ImageRef, UserError> {
    let h = Fingerprint::new().add("project", project.as_str()).finish();
    ImageRef::parse(&format!(
        "ocx-base-{}-{}:latest",
        crate::image_ref::sanitize(dirname),
        &h[..8]
    ))
}

pub(crate) fn missing_base(base: &ImageRef) -> UserError {
    UserError::not_found(format!(
        "custom base image {base} not found and no custom_base_dockerfile configured; pull or build {base} first, or set custom_base_dockerfile"
    ))
}
