//! `hjk images resolve --build`: builds the image a session will run before it starts
//! (ADR-006), or says it is current after one `image inspect`.
//!
//! - A Dockerfile (from `--image` or devcontainer.json) is built through the [`Engine`] and
//!   tagged `hjk-<project>:<kind>-<id>-<fingerprint>`, with the fingerprint label too; the
//!   fingerprint covers what the build reads ([`crate::build_inputs`]: the Dockerfile,
//!   `.dockerignore` and the contents of what it COPYs/ADDs), the target and the build args.
//!   A no-op is one inspect of that tag.
//! - A config only the Dev Containers CLI builds (features, dockerComposeFile) is handed to
//!   `devcontainer build`, its output streamed; that CLI drops `--label` for Dockerfile
//!   configs (devcontainers/cli#930), so the fingerprint goes into the tag instead, and a
//!   no-op is one inspect of that tag.
//! - After a build, older tags of the same config (`<kind>-<id>-<older fingerprint>`) are
//!   removed, so edits do not pile up images.
//! - Anything else (a registry reference, an `image` with no features) is run as it is.
//!
//! Build args whose value came from the user's environment are passed by name
//! (`--build-arg NAME`, [`BuildRequest::env_args`]), never in argv or logs.

use super::devcontainer::{Config, Source};
use super::resolve::{Resolution, Resolved, DEVCONTAINER_CLI};
use crate::build::BuildRequest;
use crate::build_inputs;
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
pub(crate) struct Ready {
    /// The reference to run, as the engine knows it.
    pub image: String,
    /// `built`, `up-to-date`, or `as-is` (nothing to build).
    pub outcome: &'static str,
    /// The session user the image's `io.headjack.exec.user` label names (a local image only).
    pub exec_user: Option<String>,
}

/// Builds what `res` needs built, unless it is current.
pub(crate) async fn ensure(engine: &Engine, project: &Utf8Path, res: &Resolution) -> Result<Ready> {
    if let Some(image) = &res.image {
        return Ok(Ready {
            image: image.to_string(),
            outcome: "as-is",
            exec_user: None,
        });
    }
    let none = BTreeMap::new();
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
                args: &none,
                env_args: &none,
            };
            native(engine, project, &spec).await
        }
        (Resolved::Devcontainer { file, .. }, Some(c)) => {
            let Source::Dockerfile {
                dockerfile,
                context,
                target,
                args,
                env_args,
            } = &c.source
            else {
                return Err(anyhow!("nothing to build for {}", res.resolved.line()));
            };
            if !c.build_options.is_empty() {
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
                args,
                env_args,
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
    /// Every build arg with its value.
    args: &'a BTreeMap<String, String>,
    /// The args (of `args`) whose value came from the user's environment, with its variable.
    env_args: &'a BTreeMap<String, String>,
}

/// `hjk-<project basename>:<kind>-<12 hex of project and source path>-<12 hex of the
/// fingerprint>`: one local image per project, config and fingerprint, readable in `images`
/// listings. Also returns the tag's prefix shared by every fingerprint of that config.
fn local_tag(
    project: &Utf8Path,
    kind: &str,
    source: &Utf8Path,
    fingerprint: &str,
) -> Result<(ImageRef, String)> {
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
    let prefix = format!("{kind}-{}-", &id[..12]);
    let tag = ImageRef::parse(&format!("hjk-{base}:{prefix}{}", &fingerprint[..12]))?;
    Ok((tag, prefix))
}

/// The no-op: `tag` exists (one inspect), so it is current.
async fn current(engine: &Engine, tag: &ImageRef) -> Result<Option<Ready>> {
    let info = engine.inspect(&[tag]).await?.pop().unwrap_or_default();
    if !info.exists {
        return Ok(None);
    }
    engine.reporter().info(&format!("{tag} is up to date"));
    Ok(Some(Ready {
        image: tag.to_string(),
        outcome: "up-to-date",
        exec_user: exec_user(&info),
    }))
}

fn exec_user(info: &crate::build::ImageInfo) -> Option<String> {
    info.label(crate::backend::runner_flags::LABEL_EXEC_USER)
        .map(|u| u.trim().to_string())
        .filter(|u| !u.is_empty())
}

/// After `tag` was built: removes the older builds of the same config.
async fn built(engine: &Engine, tag: &ImageRef, prefix: &str) -> Result<Ready> {
    for old in engine.remove_older_tags(tag, prefix).await? {
        engine.reporter().info(&format!("removed the older {old}"));
    }
    let info = match engine.dry_run() {
        true => Default::default(),
        false => engine.inspect(&[tag]).await?.pop().unwrap_or_default(),
    };
    Ok(Ready {
        image: tag.to_string(),
        outcome: "built",
        exec_user: exec_user(&info),
    })
}

async fn native(engine: &Engine, project: &Utf8Path, b: &NativeBuild<'_>) -> Result<Ready> {
    let text = std::fs::read(b.dockerfile)
        .map_err(|e| UserError::file(format!("cannot read {}: {e}", b.dockerfile)))?;
    let inputs = {
        let (d, c) = (b.dockerfile.to_owned(), b.context.to_owned());
        tokio::task::spawn_blocking(move || build_inputs::fingerprint(&d, &c, &[])).await?
    };
    let fp = Fingerprint::new()
        .add("inputs", &inputs)
        .add("dockerfile-path", b.dockerfile.as_str())
        .add("context-path", b.context.as_str())
        .add("target", b.target.unwrap_or(""))
        .add("args", serde_json::to_string(b.args)?)
        .finish();
    // the tag carries the fingerprint too: an engine may reuse a cached image that has an
    // older --label value when every step is cached (seen on one here), so a label alone can
    // go stale
    let (tag, prefix) = local_tag(project, b.kind, b.source, &fp)?;
    if let Some(ready) = current(engine, &tag).await? {
        return Ok(ready);
    }
    let mut req = BuildRequest::new(b.context.to_owned(), b.dockerfile.to_owned(), tag.clone());
    for (k, v) in b.args {
        if b.env_args.contains_key(k) {
            req.env_args.insert(k.clone(), v.clone());
        } else {
            req.build_args.insert(k.clone(), v.clone());
        }
    }
    req.target = b.target.map(String::from);
    req.labels.insert(fingerprint::LABEL.into(), fp);
    req.declared_args = Some(crate::build::declared_args(&String::from_utf8_lossy(&text)));
    engine
        .reporter()
        .info(&format!("building {tag} from {}", b.dockerfile));
    engine.build(&req).await?;
    built(engine, &tag, &prefix).await
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
pub(crate) fn delegate_invocation(
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
        return Err(UserError::engine(format!(
            "{} needs the Dev Containers CLI, which drives a docker-compatible CLI; use --backend {}",
            c.file,
            usable.join(" or ")
        ))
        .into());
    };
    let fp = {
        let c = c.clone();
        tokio::task::spawn_blocking(move || delegated_fingerprint(&c)).await??
    };
    let (tag, prefix) = local_tag(project, "devcontainer", &c.file, &fp)?;
    if let Some(ready) = current(engine, &tag).await? {
        return Ok(ready);
    }
    // the CLI reads `${localEnv:...}` itself; given here too, its values are masked in the
    // output we show (the CLI logs the build command line)
    let inv = delegate_invocation(project, &c.file, &tag, docker).secret_envs(&env_values(c));
    engine.reporter().info(&format!(
        "building {tag} with `devcontainer build` ({})",
        c.needs_cli().unwrap_or_default()
    ));
    // streamed: a features build can take minutes; the result is its last JSON line
    let out = engine.tool_stream_result(&inv).await?;
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
            built(engine, &tag, &prefix).await
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

/// The values of `c`'s build args that came from the user's environment.
fn env_values(c: &Config) -> BTreeMap<String, String> {
    match &c.source {
        Source::Dockerfile { args, env_args, .. } => env_args
            .keys()
            .filter_map(|k| Some((k.clone(), args.get(k)?.clone())))
            .collect(),
        _ => BTreeMap::new(),
    }
}

/// What a delegated build depends on: the substituted config (env values included), the
/// files of local features, and what the Dockerfile build reads ([`build_inputs`]): the
/// config's own Dockerfile, or the compose service's `build` (context and Dockerfile).
fn delegated_fingerprint(c: &Config) -> Result<String> {
    let dir = c.file.parent().map(Utf8Path::to_owned).unwrap_or_default();
    let mut f = Fingerprint::new()
        .add("config-path", c.file.as_str())
        .add("config", serde_json::to_string(&c.substituted)?);
    for id in &c.features {
        if id.starts_with("./") || id.starts_with("../") {
            let feature = super::devcontainer::normalize(&dir, Utf8Path::new(id));
            f = f.add(&format!("feature:{id}"), build_inputs::tree(&feature));
        }
    }
    match &c.source {
        Source::Dockerfile {
            dockerfile,
            context,
            ..
        } => {
            f = f.add(
                "inputs",
                build_inputs::fingerprint(dockerfile, context, &[]),
            );
        }
        Source::Compose { files, service } => {
            for file in files {
                f = f.add(file.as_str(), std::fs::read(file).unwrap_or_default());
            }
            if let Some((dockerfile, context)) =
                service.as_deref().and_then(|s| compose_build(files, s))
            {
                f = f.add("compose-dockerfile", dockerfile.as_str()).add(
                    "inputs",
                    build_inputs::fingerprint(&dockerfile, &context, &[]),
                );
            }
        }
        Source::Image(_) => {}
    }
    Ok(f.finish())
}

/// `services.<service>.build` of the compose files, later files overriding earlier ones, as
/// (Dockerfile, context). `build` is a context path or a map with `context` and `dockerfile`;
/// relative paths are relative to the first file's directory, as compose reads several
/// files. `None` when the service has no build (an `image`) or a file does not parse: then
/// only the files' bytes count.
fn compose_build(files: &[Utf8PathBuf], service: &str) -> Option<(Utf8PathBuf, Utf8PathBuf)> {
    use serde_yaml_ng::Value;
    let base = files.first()?.parent()?.to_owned();
    let (mut context, mut dockerfile): (Option<String>, Option<String>) = (None, None);
    for file in files {
        let text = std::fs::read_to_string(file).ok()?;
        let doc: Value = serde_yaml_ng::from_str(&text).ok()?;
        match doc
            .get("services")?
            .get(service)
            .and_then(|s| s.get("build"))
        {
            Some(Value::String(c)) => context = Some(c.clone()),
            Some(Value::Mapping(m)) => {
                if let Some(c) = m.get("context").and_then(Value::as_str) {
                    context = Some(c.to_string());
                }
                if let Some(d) = m.get("dockerfile").and_then(Value::as_str) {
                    dockerfile = Some(d.to_string());
                }
            }
            _ => {}
        }
    }
    let context = super::devcontainer::normalize(&base, Utf8Path::new(&context?));
    let dockerfile = context.join(dockerfile.as_deref().unwrap_or("Dockerfile"));
    Some((
        super::devcontainer::normalize(&context, &dockerfile),
        context,
    ))
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
            local_tag(
                project,
                "dockerfile",
                &project.join("Dockerfile"),
                &"f".repeat(64),
            )
            .unwrap()
            .0
        };
        let (a, b) = (tag("/a/My App"), tag("/b/My App"));
        assert!(a.as_str().starts_with("hjk-my-app:dockerfile-"), "{a}");
        assert_ne!(a, b);
    }

    #[test]
    fn compose_build_reads_the_service_over_several_files() {
        let d = tempfile::tempdir().unwrap();
        let dir = Utf8Path::from_path(d.path()).unwrap();
        std::fs::create_dir_all(dir.join(".devcontainer")).unwrap();
        std::fs::write(
            dir.join("docker-compose.yml"),
            "services:\n  app:\n    build: .\n  db:\n    image: postgres:16\n",
        )
        .unwrap();
        std::fs::write(
            dir.join(".devcontainer/docker-compose.extend.yml"),
            "services:\n  app:\n    build:\n      dockerfile: .devcontainer/Dockerfile.dev\n",
        )
        .unwrap();
        let files = [
            dir.join("docker-compose.yml"),
            dir.join(".devcontainer/docker-compose.extend.yml"),
        ];
        assert_eq!(
            compose_build(&files, "app"),
            Some((dir.join(".devcontainer/Dockerfile.dev"), dir.to_owned()))
        );
        assert_eq!(
            compose_build(&files[..1], "app"),
            Some((dir.join("Dockerfile"), dir.to_owned()))
        );
        assert_eq!(compose_build(&files, "db"), None);
    }
}
