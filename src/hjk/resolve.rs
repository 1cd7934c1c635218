//! Which image an agent session in a project uses, by the Headjack customization model, first
//! match wins:
//! 1. `--image <path>`: an existing file, or a Dockerfile-looking name (built; context = its
//!    directory);
//! 2. `--image <ref>`: a registry reference, normalized like docker does;
//! 3. the project's devcontainer.json (`--config`, or found by [`devcontainer::discover`]);
//! 4. `default.base_image` from the config.
//!
//! With `--build` ([`super::prebuild`]) the Dockerfile or devcontainer image is built before
//! the session starts (ADR-006), and the reference to run is printed.

use super::devcontainer::{self, Source};
use crate::error::UserError;
use crate::image_ref::ImageRef;
use crate::report::Reporter;
use camino::{Utf8Path, Utf8PathBuf};
use serde::Serialize;
use std::collections::BTreeMap;
use std::ffi::OsString;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub(crate) enum Resolved {
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
        #[serde(skip_serializing_if = "Option::is_none")]
        target: Option<String>,
        #[serde(skip_serializing_if = "BTreeMap::is_empty")]
        build_args: BTreeMap<String, String>,
        #[serde(skip_serializing_if = "Vec::is_empty")]
        features: Vec<String>,
        #[serde(skip_serializing_if = "Vec::is_empty")]
        compose_files: Vec<Utf8PathBuf>,
        #[serde(skip_serializing_if = "Option::is_none")]
        service: Option<String>,
        /// `devcontainer build` when only the Dev Containers CLI can build this config.
        #[serde(skip_serializing_if = "Option::is_none")]
        built_by: Option<String>,
    },
    Default {
        reference: String,
    },
}

impl Resolved {
    /// `<kind> <normalized reference or absolute Dockerfile path>`; a config only the Dev
    /// Containers CLI builds shows its file and why.
    pub(crate) fn line(&self) -> String {
        match self {
            Resolved::Dockerfile { dockerfile, .. } => format!("dockerfile {dockerfile}"),
            Resolved::Registry { reference } => format!("registry {reference}"),
            Resolved::Devcontainer {
                file,
                built_by: Some(by),
                features,
                compose_files,
                ..
            } => {
                let what = if compose_files.is_empty() {
                    format!("features {}", features.join(", "))
                } else {
                    format!("dockerComposeFile {}", join_paths(compose_files))
                };
                format!("devcontainer {file} ({by}: {what})")
            }
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

fn join_paths(paths: &[Utf8PathBuf]) -> String {
    paths
        .iter()
        .map(|p| p.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// What resolution found, with what `--build` needs besides the printed facts.
#[derive(Debug, Clone)]
pub(crate) struct Resolution {
    pub resolved: Resolved,
    /// The image to run as written (engines resolve short names against their own stores),
    /// when nothing needs building.
    pub image: Option<ImageRef>,
    /// The devcontainer config, when one was used.
    pub config: Option<devcontainer::Config>,
}

/// What `hjk images resolve` was asked.
pub(crate) struct Request<'a> {
    pub project: &'a Utf8Path,
    /// `--image`: a Dockerfile path or a reference.
    pub image: Option<&'a str>,
    /// `--config`: the devcontainer.json to use.
    pub config: Option<&'a Utf8Path>,
    /// The environment (`${localEnv:...}`, PATH for the Dev Containers CLI).
    pub vars: &'a BTreeMap<String, String>,
}

/// `hjk images resolve`: prints `<kind> <image>`, or the object with `json`. With `build`,
/// builds what needs building first and prints the reference to run (`--json` adds it as
/// `image`).
pub(crate) async fn command(
    req: &Request<'_>,
    backend: Option<&str>,
    build: bool,
    json: bool,
) -> anyhow::Result<u8> {
    let cfg = super::config::load(req.vars)?;
    let res = resolve(req, &cfg.base_image)?;
    let mut data = serde_json::to_value(&res.resolved)?;
    let mut text = format!("{}\n", res.resolved.line());
    if build {
        let reporter: std::sync::Arc<dyn Reporter> = if json {
            std::sync::Arc::new(crate::report::DataReporter)
        } else {
            std::sync::Arc::new(crate::report::PlainReporter)
        };
        let choice = super::settings::EngineSettings::resolve(
            backend.map(String::from),
            &cfg,
            crate::report::ProgressMode::Plain,
            false,
        );
        let engine = super::open_engine(choice.backend.as_ref(), &cfg, req.vars, reporter, false)?;
        let done = super::prebuild::ensure(&engine, req.project, &res).await?;
        data["image"] = done.image.clone().into();
        data["outcome"] = done.outcome.into();
        if let Some(u) = &done.exec_user {
            data["exec_user"] = u.clone().into();
        }
        text = format!("{}\n", done.image);
    } else {
        cfg.warn_ignored(&crate::report::PlainReporter);
    }
    if json {
        crate::report::DataReporter.result(text, data);
    } else {
        crate::report::PlainReporter.result(text, data);
    }
    Ok(crate::error::EXIT_OK)
}

/// A name that can only mean a Dockerfile: `Dockerfile.dev`, `Containerfile.fedora`,
/// `dev.dockerfile`, `x.containerfile`, any case.
fn looks_like_dockerfile(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    lower.contains("dockerfile") || lower.contains("containerfile")
}

/// `--image`: a path (an existing file, `./x`, `/x`, or a Dockerfile-looking name without a
/// tag or digest) or a reference.
fn image_arg(project: &Utf8Path, image: &str) -> Result<Resolution, UserError> {
    let file = devcontainer::normalize(project, Utf8Path::new(image));
    let name = Utf8Path::new(image).file_name().unwrap_or(image);
    let explicit_path = image.starts_with(['.', '/']);
    if file.is_file() {
        let context = file.parent().map(Utf8Path::to_owned).unwrap_or_default();
        return Ok(Resolution {
            resolved: Resolved::Dockerfile {
                dockerfile: file,
                context,
            },
            image: None,
            config: None,
        });
    }
    let dockerfile_name = looks_like_dockerfile(name);
    if explicit_path || (dockerfile_name && !name.contains([':', '@'])) {
        return Err(UserError::file(format!(
            "--image {image}: no such Dockerfile ({file}); a path is relative to the project directory"
        )));
    }
    let r = ImageRef::parse(image).map_err(|e| {
        if dockerfile_name {
            UserError::file(format!(
                "--image {image}: no such Dockerfile ({file}), and {}",
                e.message()
            ))
        } else {
            e
        }
    })?;
    Ok(Resolution {
        resolved: Resolved::Registry {
            reference: r.normalized(),
        },
        image: Some(r),
        config: None,
    })
}

pub(crate) fn resolve(req: &Request<'_>, default_base: &ImageRef) -> Result<Resolution, UserError> {
    if let Some(image) = req.image {
        return image_arg(req.project, image);
    }
    if let Some(file) = devcontainer::discover(req.project, req.config)? {
        return from_devcontainer(req, &file);
    }
    Ok(Resolution {
        resolved: Resolved::Default {
            reference: default_base.normalized(),
        },
        image: Some(default_base.clone()),
        config: None,
    })
}

/// The program the build is handed to when hjk cannot build a config itself.
pub(crate) const DEVCONTAINER_CLI: &str = "devcontainer";

fn from_devcontainer(req: &Request<'_>, file: &Utf8Path) -> Result<Resolution, UserError> {
    let ctx = devcontainer::Context {
        env: req.vars,
        workspace: req.project,
    };
    let c = devcontainer::read(file, &ctx)?;
    let built_by = match c.needs_cli() {
        None => None,
        Some(why) => {
            let path = req.vars.get("PATH").map(OsString::from);
            if crate::backend::detect::find_on_path(DEVCONTAINER_CLI, path.as_ref()).is_none() {
                let fix = if matches!(c.source, Source::Compose { .. }) {
                    "or set image or build.dockerfile instead"
                } else {
                    "or remove them"
                };
                return Err(UserError::tool(format!(
                    "{file} uses {why}, which hjk does not build itself: install the Dev Containers CLI (npm install -g @devcontainers/cli) so hjk can hand the build to `devcontainer build`, {fix}"
                )));
            }
            Some("devcontainer build".to_string())
        }
    };
    let mut image = None;
    let mut resolved = Resolved::Devcontainer {
        file: file.to_owned(),
        reference: None,
        dockerfile: None,
        context: None,
        target: None,
        build_args: BTreeMap::new(),
        features: c.features.clone(),
        compose_files: Vec::new(),
        service: None,
        built_by: built_by.clone(),
    };
    if let Resolved::Devcontainer {
        reference,
        dockerfile,
        context,
        target,
        build_args,
        compose_files,
        service,
        ..
    } = &mut resolved
    {
        match &c.source {
            Source::Image(i) => {
                let r = ImageRef::parse(i).map_err(|e| e.reword(|m| format!("{file}: {m}")))?;
                *reference = Some(r.normalized());
                if built_by.is_none() {
                    image = Some(r);
                }
            }
            Source::Dockerfile {
                dockerfile: d,
                context: ctx,
                target: t,
                args,
                env_args,
            } => {
                if !d.is_file() {
                    return Err(UserError::file(format!("{file}: no such Dockerfile {d}")));
                }
                *dockerfile = Some(d.clone());
                *context = Some(ctx.clone());
                *target = t.clone();
                // a value from the user's environment may be a secret: shown by its origin
                *build_args = args
                    .iter()
                    .map(|(k, v)| match env_args.get(k) {
                        Some(var) => (k.clone(), format!("<from localEnv:{var}>")),
                        None => (k.clone(), v.clone()),
                    })
                    .collect();
            }
            Source::Compose { files, service: s } => {
                *compose_files = files.clone();
                *service = s.clone();
            }
        }
    }
    Ok(Resolution {
        resolved,
        image,
        config: Some(c),
    })
}
