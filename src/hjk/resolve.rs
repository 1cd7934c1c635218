//! Which image a `hjk run` would use, by the Headjack customization model, first match wins:
//! 1. `--image <path>` naming a Dockerfile/Containerfile (built first; context = its directory);
//! 2. `--image <ref>`: a registry reference, normalized like docker does;
//! 3. the project's `.devcontainer/devcontainer.json` or `.devcontainer.json`;
//! 4. `default.base_image` from the config.

use crate::error::UserError;
use crate::image_ref::ImageRef;
use crate::report::Reporter;
use camino::{Utf8Path, Utf8PathBuf};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Resolved {
    Dockerfile {
        dockerfile: Utf8PathBuf,
        context: Utf8PathBuf,
    },
    Registry {
        reference: String,
    },
    Devcontainer {
        file: Utf8PathBuf,
        #[serde(skip_serializing_if = "Option::is_none")]
        reference: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        dockerfile: Option<Utf8PathBuf>,
        #[serde(skip_serializing_if = "Option::is_none")]
        context: Option<Utf8PathBuf>,
        #[serde(skip_serializing_if = "BTreeMap::is_empty")]
        build_args: BTreeMap<String, String>,
    },
    Default {
        reference: String,
    },
}

impl Resolved {
    /// `<kind> <normalized reference or absolute Dockerfile path>`
    pub fn line(&self) -> String {
        match self {
            Resolved::Dockerfile { dockerfile, .. } => format!("dockerfile {dockerfile}"),
            Resolved::Registry { reference } => format!("registry {reference}"),
            Resolved::Devcontainer {
                reference: Some(r), ..
            } => format!("devcontainer {r}"),
            Resolved::Devcontainer {
                dockerfile: Some(d),
                ..
            } => format!("devcontainer {d}"),
            Resolved::Devcontainer { file, .. } => format!("devcontainer {file}"),
            Resolved::Default { reference } => format!("default {reference}"),
        }
    }
}

fn is_dockerfile_name(p: &Utf8Path) -> bool {
    p.file_name()
        .is_some_and(|n| n.ends_with("Dockerfile") || n.ends_with("Containerfile"))
}

fn absolute(base: &Utf8Path, p: &Utf8Path) -> Utf8PathBuf {
    let joined = if p.is_absolute() {
        p.to_owned()
    } else {
        base.join(p)
    };
    joined.canonicalize_utf8().unwrap_or(joined)
}

/// `hjk images resolve`: prints `<kind> <image>`, or the object with `json`.
pub fn command(
    vars: &BTreeMap<String, String>,
    project: &Utf8Path,
    image: Option<&str>,
    json: bool,
) -> anyhow::Result<u8> {
    let cfg = super::config::load(vars)?;
    let r = resolve(project, image, &cfg.base_image)?;
    let data = serde_json::to_value(&r)?;
    let text = format!("{}\n", r.line());
    if json {
        crate::report::DataReporter.result(text, data);
    } else {
        crate::report::PlainReporter.result(text, data);
    }
    Ok(crate::error::EXIT_OK)
}

pub fn resolve(
    project: &Utf8Path,
    image: Option<&str>,
    default_base: &ImageRef,
) -> Result<Resolved, UserError> {
    if let Some(image) = image {
        let p = Utf8Path::new(image);
        if is_dockerfile_name(p) {
            let dockerfile = absolute(project, p);
            if !dockerfile.is_file() {
                return Err(UserError(format!(
                    "--image {image}: no such Dockerfile ({dockerfile})"
                )));
            }
            let context = dockerfile
                .parent()
                .map(Utf8Path::to_owned)
                .unwrap_or_default();
            return Ok(Resolved::Dockerfile {
                dockerfile,
                context,
            });
        }
        let r = ImageRef::parse(image)?;
        return Ok(Resolved::Registry {
            reference: r.normalized(),
        });
    }
    for rel in [".devcontainer/devcontainer.json", ".devcontainer.json"] {
        let file = project.join(rel);
        if file.is_file() {
            return devcontainer(&file);
        }
    }
    Ok(Resolved::Default {
        reference: default_base.normalized(),
    })
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Devcontainer {
    image: Option<String>,
    build: Option<DevBuild>,
    /// The older top-level spelling of build.dockerfile.
    docker_file: Option<String>,
    context: Option<String>,
    docker_compose_file: Option<serde_json::Value>,
}

#[derive(Debug, Deserialize)]
struct DevBuild {
    dockerfile: Option<String>,
    context: Option<String>,
    #[serde(default)]
    args: BTreeMap<String, String>,
}

fn devcontainer(file: &Utf8Path) -> Result<Resolved, UserError> {
    let text =
        std::fs::read_to_string(file).map_err(|e| UserError(format!("cannot read {file}: {e}")))?;
    // JSON with comments and trailing commas, as the devcontainer spec allows
    let dc: Devcontainer = json5::from_str(&text).map_err(|e| {
        UserError(format!(
            "malformed {file}: {}",
            e.to_string().replace('\n', " ")
        ))
    })?;
    let dir = file.parent().map(Utf8Path::to_owned).unwrap_or_default();
    let build = dc.build.unwrap_or(DevBuild {
        dockerfile: None,
        context: None,
        args: BTreeMap::new(),
    });
    let dockerfile = build.dockerfile.or(dc.docker_file);
    if let Some(d) = dockerfile {
        let dockerfile = absolute(&dir, Utf8Path::new(&d));
        let context = absolute(
            &dir,
            Utf8Path::new(build.context.or(dc.context).as_deref().unwrap_or(".")),
        );
        return Ok(Resolved::Devcontainer {
            file: file.to_owned(),
            reference: None,
            dockerfile: Some(dockerfile),
            context: Some(context),
            build_args: build.args,
        });
    }
    if let Some(image) = dc.image {
        let r = ImageRef::parse(&image).map_err(|e| UserError(format!("{file}: {}", e.0)))?;
        return Ok(Resolved::Devcontainer {
            file: file.to_owned(),
            reference: Some(r.normalized()),
            dockerfile: None,
            context: None,
            build_args: BTreeMap::new(),
        });
    }
    if dc.docker_compose_file.is_some() {
        return Err(UserError(format!("{file} uses dockerComposeFile, which hjk does not support; set image or build.dockerfile")));
    }
    Err(UserError(format!(
        "{file} names neither image nor build.dockerfile"
    )))
}
