//! `hjk images resolve --build`: builds the image a session will run before it starts
//! (ADR-006), or says it is current after one `image inspect`.
//!
//! - A Dockerfile (from `--image` or devcontainer.json) is built through the [`Engine`] and
//!   tagged `hjk-<project>:<kind>-<id>-<fingerprint>`, with the fingerprint label too; the
//!   fingerprint covers every input: the Dockerfile, target, build args and the context's file
//!   metadata. A no-op is one inspect of that tag.
//! - A config only the Dev Containers CLI builds (features, dockerComposeFile) is handed to
//!   `devcontainer build`; that CLI drops `--label` for Dockerfile configs
//!   (devcontainers/cli#930), so the fingerprint goes into the tag instead, and a no-op is
//!   one inspect of that tag.
//! - Anything else (a registry reference, an `image` with no features) is run as it is.

use super::devcontainer::{Config, Source};
use super::resolve::{Resolution, Resolved, DEVCONTAINER_CLI};
use crate::build::BuildRequest;
use crate::engine::Engine;
use crate::error::UserError;
use crate::fingerprint::{self, Fingerprint};
use crate::image_ref::ImageRef;
use crate::invocation::Invocation;
use anyhow::{anyhow, Result};
use camino::{Utf8Path, Utf8PathBuf};
use serde::Deserialize;
use std::collections::BTreeMap;

/// The image to run and how it came to be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ready {
    /// The reference to run, as the engine knows it.
    pub image: String,
    /// `built`, `up-to-date`, or `as-is` (nothing to build).
    pub outcome: &'static str,
}

/// Builds what `res` needs built, unless it is current.
pub async fn ensure(engine: &Engine, project: &Utf8Path, res: &Resolution) -> Result<Ready> {
    if let Some(image) = &res.image {
        return Ok(Ready {
            image: image.to_string(),
            outcome: "as-is",
        });
    }
    match (&res.resolved, &res.config) {
        (
            Resolved::Devcontainer {
                built_by: Some(_), ..
            },
            Some(c),
        ) => delegate(engine, project, c).await,
        (
            Resolved::Dockerfile {
                dockerfile,
                context,
            },
            _,
        ) => {
            let spec = NativeBuild {
                kind: "dockerfile",
                source: dockerfile,
                dockerfile,
                context,
                target: None,
                args: &BTreeMap::new(),
            };
            native(engine, project, &spec).await
        }
        (
            Resolved::Devcontainer {
                file,
                dockerfile: Some(dockerfile),
                context: Some(context),
                target,
                build_args,
                ..
            },
            c,
        ) => {
            if let Some(c) = c.as_ref().filter(|c| !c.build_options.is_empty()) {
                engine.reporter().warn(&format!(
                    "{file}: build.options ({}) are not passed by hjk",
                    c.build_options.join(" ")
                ));
            }
            let spec = NativeBuild {
                kind: "devcontainer",
                source: file,
                dockerfile,
                context,
                target: target.as_deref(),
                args: build_args,
            };
            native(engine, project, &spec).await
        }
        (r, _) => Err(anyhow!("nothing to build for {}", r.line())),
    }
}

/// A Dockerfile hjk builds itself.
struct NativeBuild<'a> {
    kind: &'a str,
    /// What the tag is named after (the Dockerfile, or the devcontainer.json).
    source: &'a Utf8Path,
    dockerfile: &'a Utf8Path,
    context: &'a Utf8Path,
    target: Option<&'a str>,
    args: &'a BTreeMap<String, String>,
}

/// `hjk-<project basename>:<kind>-<12 hex of project and source path><suffix>`: one local
/// image per project, config and fingerprint, readable in `images` listings.
fn local_tag(project: &Utf8Path, kind: &str, source: &Utf8Path, suffix: &str) -> Result<ImageRef> {
    let base = crate::image_ref::sanitize(project.file_name().unwrap_or(""));
    let base = if base.is_empty() {
        "project".into()
    } else {
        base
    };
    let id = Fingerprint::new()
        .add("project", project.as_str())
        .add("source", source.as_str())
        .finish();
    Ok(ImageRef::parse(&format!(
        "hjk-{base}:{kind}-{}{suffix}",
        &id[..12]
    ))?)
}

async fn native(engine: &Engine, project: &Utf8Path, b: &NativeBuild<'_>) -> Result<Ready> {
    let text = std::fs::read(b.dockerfile)
        .map_err(|e| UserError(format!("cannot read {}: {e}", b.dockerfile)))?;
    let mut f = Fingerprint::new()
        .add("dockerfile", &text)
        .add("dockerfile-path", b.dockerfile.as_str())
        .add("context-path", b.context.as_str())
        .add("target", b.target.unwrap_or(""))
        .add("args", serde_json::to_string(b.args)?);
    f = hash_tree(b.context, f)?;
    let fp = f.finish();
    // the tag carries the fingerprint too: an engine may reuse a cached image that has an
    // older --label value when every step is cached (seen on one here), so a label alone can
    // go stale
    let tag = local_tag(project, b.kind, b.source, &format!("-{}", &fp[..12]))?;
    let info = engine.inspect(&[&tag]).await?.pop().unwrap_or_default();
    if info.exists {
        engine.reporter().info(&format!("{tag} is up to date"));
        return Ok(Ready {
            image: tag.to_string(),
            outcome: "up-to-date",
        });
    }
    let mut req = BuildRequest::new(b.context.to_owned(), b.dockerfile.to_owned(), tag.clone());
    req.build_args = b.args.clone();
    req.target = b.target.map(String::from);
    req.labels.insert(fingerprint::LABEL.into(), fp);
    req.declared_args = Some(crate::build::declared_args(&String::from_utf8_lossy(&text)));
    engine
        .reporter()
        .info(&format!("building {tag} from {}", b.dockerfile));
    engine.build(&req).await?;
    Ok(Ready {
        image: tag.to_string(),
        outcome: "built",
    })
}

/// `devcontainer build`'s one line of JSON on stdout.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct CliResult {
    outcome: String,
    #[serde(default)]
    image_name: Vec<String>,
    message: Option<String>,
    description: Option<String>,
}

/// The `devcontainer build` invocation for `config`, tagging the result `tag`.
pub fn delegate_invocation(
    project: &Utf8Path,
    config: &Utf8Path,
    tag: &ImageRef,
    docker: &str,
) -> Invocation {
    Invocation::new(DEVCONTAINER_CLI)
        .args(["build", "--workspace-folder", project.as_str()])
        .args(["--config", config.as_str()])
        .args(["--image-name", tag.as_str()])
        .args(["--docker-path", docker, "--log-format", "text"])
        // its failure is a JSON answer on stdout, read below
        .may_fail()
}

async fn delegate(engine: &Engine, project: &Utf8Path, c: &Config) -> Result<Ready> {
    let Some(docker) = engine.kind().docker_compatible_program() else {
        let usable: Vec<&str> = crate::backend::BackendKind::ALL
            .iter()
            .filter_map(|k| k.docker_compatible_program())
            .collect();
        return Err(UserError(format!(
            "{} needs the Dev Containers CLI, which drives a docker-compatible CLI; use --backend {}",
            c.file,
            usable.join(" or ")
        ))
        .into());
    };
    let fp = delegated_fingerprint(c)?;
    let tag = local_tag(project, "devcontainer", &c.file, &format!("-{}", &fp[..12]))?;
    let info = engine.inspect(&[&tag]).await?.pop().unwrap_or_default();
    if info.exists {
        engine.reporter().info(&format!("{tag} is up to date"));
        return Ok(Ready {
            image: tag.to_string(),
            outcome: "up-to-date",
        });
    }
    let inv = delegate_invocation(project, &c.file, &tag, docker);
    engine.reporter().info(&format!(
        "building {tag} with `devcontainer build` ({})",
        c.needs_cli().unwrap_or_default()
    ));
    let out = engine.tool(&inv).await?;
    let result: Option<CliResult> = out
        .stdout
        .lines()
        .rev()
        .find_map(|l| serde_json::from_str(l.trim()).ok());
    match result {
        Some(r) if out.success && r.outcome == "success" => {
            if !r.image_name.iter().any(|n| n == tag.as_str()) {
                return Err(anyhow!(
                    "`{inv}` reported images {:?}, not {tag}",
                    r.image_name
                ));
            }
            Ok(Ready {
                image: tag.to_string(),
                outcome: "built",
            })
        }
        r => {
            let why = r
                .map(|r| {
                    [r.message, r.description]
                        .into_iter()
                        .flatten()
                        .collect::<Vec<_>>()
                        .join(": ")
                })
                .filter(|m| !m.is_empty())
                .unwrap_or_else(|| "no result on stdout".into());
            let tail = out.tail().join("\n");
            Err(anyhow!("`{inv}` failed: {why}\n{tail}"))
        }
    }
}

/// What a delegated build depends on: the substituted config (env values included), the
/// files of local features, the Dockerfile and its context, the compose files.
fn delegated_fingerprint(c: &Config) -> Result<String> {
    let dir = c.file.parent().map(Utf8Path::to_owned).unwrap_or_default();
    let mut f = Fingerprint::new()
        .add("config-path", c.file.as_str())
        .add("config", serde_json::to_string(&c.substituted)?);
    for id in &c.features {
        if id.starts_with("./") || id.starts_with("../") {
            f = hash_tree(&super::devcontainer::normalize(&dir, Utf8Path::new(id)), f)?;
        }
    }
    match &c.source {
        Source::Dockerfile {
            dockerfile,
            context,
            ..
        } => {
            f = f.add("dockerfile", std::fs::read(dockerfile).unwrap_or_default());
            f = hash_tree(context, f)?;
        }
        Source::Compose { files, .. } => {
            for file in files {
                f = f.add(file.as_str(), std::fs::read(file).unwrap_or_default());
            }
        }
        Source::Image(_) => {}
    }
    Ok(f.finish())
}

/// Adds the metadata (path, size, mtime, mode) of every file under `dir` (without following
/// symlinks), so any edit changes the fingerprint without reading file contents: a context
/// of 100k files costs stats, not reads. `.git` is skipped: git rewrites its index on
/// `git status`, and a build that depends on it is rare.
fn hash_tree(dir: &Utf8Path, mut f: Fingerprint) -> Result<Fingerprint> {
    use std::os::unix::fs::MetadataExt;
    let mut entries: Vec<(Utf8PathBuf, String)> = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = d.read_dir_utf8() else {
            continue;
        };
        for e in rd {
            let e = e?;
            if e.file_name() == ".git" {
                continue;
            }
            let m = e.path().symlink_metadata()?;
            if m.is_dir() {
                stack.push(e.path().to_owned());
                continue;
            }
            let link = if m.file_type().is_symlink() {
                std::fs::read_link(e.path())
                    .map(|l| l.display().to_string())
                    .unwrap_or_default()
            } else {
                String::new()
            };
            let rel = e.path().strip_prefix(dir).unwrap_or(e.path()).to_owned();
            entries.push((
                rel,
                format!(
                    "{} {} {} {} {link}",
                    m.len(),
                    m.mtime(),
                    m.mtime_nsec(),
                    m.mode()
                ),
            ));
        }
    }
    entries.sort();
    for (rel, meta) in entries {
        f = f.add(rel.as_str(), meta);
    }
    Ok(f)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delegation_is_one_invocation_with_our_tag() {
        let tag = ImageRef::parse("hjk-app:devcontainer-0123456789ab-ba9876543210").unwrap();
        let inv = delegate_invocation(
            Utf8Path::new("/p/app"),
            Utf8Path::new("/p/app/.devcontainer/python/devcontainer.json"),
            &tag,
            "/opt/engine",
        );
        assert_eq!(
            inv.argv(),
            [
                "devcontainer",
                "build",
                "--workspace-folder",
                "/p/app",
                "--config",
                "/p/app/.devcontainer/python/devcontainer.json",
                "--image-name",
                "hjk-app:devcontainer-0123456789ab-ba9876543210",
                "--docker-path",
                "/opt/engine",
                "--log-format",
                "text"
            ]
        );
    }

    #[test]
    fn tags_are_per_project_and_source() {
        let tag = |dir: &str| {
            let project = Utf8Path::new(dir);
            local_tag(project, "dockerfile", &project.join("Dockerfile"), "").unwrap()
        };
        let (a, b) = (tag("/a/My App"), tag("/b/My App"));
        assert!(a.as_str().starts_with("hjk-my-app:dockerfile-"), "{a}");
        assert_ne!(a, b);
    }

    #[test]
    fn tree_hash_sees_edits_and_skips_git() {
        let d = tempfile::tempdir().unwrap();
        let dir = Utf8Path::from_path(d.path()).unwrap();
        std::fs::write(dir.join("a"), "1").unwrap();
        std::fs::create_dir_all(dir.join(".git")).unwrap();
        let h = || hash_tree(dir, Fingerprint::new()).unwrap().finish();
        let first = h();
        std::fs::write(dir.join(".git/index"), "x").unwrap();
        assert_eq!(h(), first);
        std::fs::write(dir.join("a"), "22").unwrap();
        assert_ne!(h(), first);
    }
}
