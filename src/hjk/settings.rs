//! One settings value per `hjk images` command. The command line (clap's structs in
//! [`crate::cli::hjk`]), the environment and Headjack's config file are merged here, once, into
//! the value the command's workflow takes whole ([`BuildSettings`], [`ReleaseSettings`],
//! [`MergeSettings`]); the workflow never sees a flag. Where several sources can say the same
//! thing, the first that says something wins ([`Combine`], as uv merges its settings): a flag,
//! then its variable, then the config file, then the default. A new flag touches its clap
//! definition, its field here (with the line that resolves it) and the code that uses it.

use super::config::{self, HjkConfig};
use super::release::auth::{AuthMode, AuthSettings};
use super::release::gates::tools::GateOptions;
use super::release::{registry, Epoch, Extras};
use super::variants::Graph;
use crate::backend::Remote;
use crate::cli::hjk::{BuildCommand, EngineArgs, MergeCommand, ReleaseArgs, ReleaseCommand, Which};
use crate::engine::Choice;
use crate::error::UserError;
use crate::image_ref::ImageRef;
use crate::platform::Platform;
use crate::report::ProgressMode;
use crate::version::Version;
use anyhow::Result;
use camino::Utf8PathBuf;
use std::collections::BTreeMap;
use std::time::Duration;

type Vars = BTreeMap<String, String>;

/// Merges two sources of one setting: `self` (the stronger source) unless it says nothing.
pub(crate) trait Combine {
    fn combine(self, weaker: Self) -> Self;
}

impl<T> Combine for Option<T> {
    fn combine(self, weaker: Self) -> Self {
        self.or(weaker)
    }
}

/// How a command reaches its engine: `--backend`, else `runtime.name` (with where it was
/// set), else the first on PATH (`None`); how it shows progress; whether it only prints.
#[derive(Debug, Clone, Default)]
pub(crate) struct EngineSettings {
    pub backend: Option<Choice>,
    pub progress: ProgressMode,
    pub dry_run: bool,
}

impl EngineSettings {
    pub(crate) fn resolve(
        backend: Option<String>,
        cfg: &HjkConfig,
        progress: ProgressMode,
        dry_run: bool,
    ) -> EngineSettings {
        let flag = backend.map(|value| Choice {
            value,
            from: "--backend".into(),
        });
        let configured = cfg.backend.as_ref().map(|(k, src)| Choice {
            value: k.name().to_string(),
            from: src.clone(),
        });
        EngineSettings {
            backend: flag.combine(configured),
            progress,
            dry_run,
        }
    }
}

/// What every command over the variant hierarchy is told: which variants (with their parents),
/// for which platforms, under which repository and version.
#[derive(Debug, Clone)]
pub(crate) struct ImagesSettings {
    pub engine: EngineSettings,
    /// `--images-dir` (or `HJK_IMAGES_DIR`): variants.yaml and one directory per variant.
    pub images_dir: Utf8PathBuf,
    /// The variants named (each checked against the graph); all of them when none is.
    pub variants: Vec<String>,
    /// `--platform`, else this machine's.
    pub platforms: Vec<Platform>,
    /// `--registry`, else `images.registry`.
    pub registry: ImageRef,
    /// `--version` (`vX.Y.Z`).
    pub version: Option<Version>,
    /// `--base-image`: overrides the root variant's `ARG BASE_IMAGE` (mirrors, tests).
    pub base_image: Option<ImageRef>,
}

impl ImagesSettings {
    /// Checks every input before the engine is touched; `variants` empty means all of them.
    pub(crate) fn resolve(
        args: &EngineArgs,
        variants: Vec<String>,
        cfg: &HjkConfig,
        graph: &Graph,
        engine: EngineSettings,
    ) -> Result<ImagesSettings> {
        for v in &variants {
            graph.get(v)?;
        }
        let variants = if variants.is_empty() {
            graph.names().into_iter().map(String::from).collect()
        } else {
            variants
        };
        let platforms = match &args.platform {
            Some(p) => Platform::parse_list(p)?,
            None => vec![Platform::host()],
        };
        Ok(ImagesSettings {
            engine,
            images_dir: args.images_dir.clone(),
            variants,
            platforms,
            registry: registry_setting(args.registry.as_deref(), cfg)?,
            version: args.version.clone(),
            base_image: args
                .base_image
                .as_deref()
                .map(ImageRef::parse)
                .transpose()?,
        })
    }

    /// The settings of a command that names no variant (`list`, `digest`): all of them, or
    /// the one given.
    pub(crate) fn of(
        args: &EngineArgs,
        variants: Vec<String>,
        cfg: &HjkConfig,
        graph: &Graph,
        progress: ProgressMode,
    ) -> Result<ImagesSettings> {
        let engine = EngineSettings::resolve(args.backend.clone(), cfg, progress, false);
        ImagesSettings::resolve(args, variants, cfg, graph, engine)
    }
}

/// `--registry`, else `images.registry`.
pub(crate) fn registry_setting(flag: Option<&str>, cfg: &HjkConfig) -> Result<ImageRef, UserError> {
    match flag {
        Some(r) => config::parse_registry(r),
        None => Ok(cfg.registry.clone()),
    }
}

/// `--cache-repo REPO`, checked.
fn cache_repo(repo: Option<&str>) -> Result<Option<ImageRef>, UserError> {
    repo.map(|r| ImageRef::parse(r).map_err(|e| e.reword(|m| format!("invalid --cache-repo: {m}"))))
        .transpose()
}

/// `--registry-timeout` (or `HJK_REGISTRY_TIMEOUT`, which clap reads), else 60 s.
pub(crate) fn registry_timeout(seconds: Option<u64>) -> Duration {
    seconds
        .map(Duration::from_secs)
        .unwrap_or(registry::DEFAULT_TIMEOUT)
}

/// The auth settings: `--auth` > `HJK_AUTH` > `images.auth.mode` (the config loader reads
/// both) > docker-config.
pub(crate) fn auth_setting(
    flag: Option<&str>,
    cfg: &HjkConfig,
    creds_stdin: bool,
) -> Result<AuthSettings, UserError> {
    let flag = flag
        .map(|m| {
            m.parse()
                .map_err(|e: UserError| e.reword(|m| format!("--auth: {m}")))
        })
        .transpose()?;
    let mode = flag
        .combine(cfg.auth_mode.as_ref().map(|(m, _)| *m))
        .unwrap_or(AuthMode::DockerConfig);
    if creds_stdin && mode != AuthMode::Raw {
        return Err(UserError::setting(format!(
            "--creds-stdin is for --auth raw, but the auth mode is {mode}"
        )));
    }
    Ok(AuthSettings {
        mode,
        op_refs: cfg.op_refs.clone(),
        creds_stdin,
    })
}

/// `hjk images build`.
#[derive(Debug, Clone)]
pub(crate) struct BuildSettings {
    pub images: ImagesSettings,
    /// `--push`: push the tags after every build succeeded.
    pub push: bool,
    pub no_cache: bool,
    pub no_fastfail: bool,
    /// `--cache-repo`: the registry repository each build imports its layer cache from and
    /// exports it to, one tag per variant (and platform, when it builds one).
    pub cache_repo: Option<ImageRef>,
}

impl BuildSettings {
    pub(crate) fn resolve(
        cmd: BuildCommand,
        cfg: &HjkConfig,
        graph: &Graph,
    ) -> Result<BuildSettings> {
        let engine =
            EngineSettings::resolve(cmd.engine.backend.clone(), cfg, cmd.progress, cmd.dry_run);
        let images = ImagesSettings::resolve(&cmd.engine, named(cmd.which), cfg, graph, engine)?;
        Ok(BuildSettings {
            images,
            push: cmd.push,
            no_cache: cmd.no_cache,
            no_fastfail: cmd.no_fastfail,
            cache_repo: cache_repo(cmd.cache_repo.as_deref())?,
        })
    }

    /// What `hjk images list` plans with: the images settings, building nothing.
    pub(crate) fn listing(images: ImagesSettings) -> BuildSettings {
        BuildSettings {
            images,
            push: false,
            no_cache: false,
            no_fastfail: false,
            cache_repo: None,
        }
    }
}

/// The variants `--variant` names (none: `--all`).
fn named(which: Which) -> Vec<String> {
    which.variant.into_iter().collect()
}

/// What `release` and `merge` share: how they publish.
#[derive(Debug, Clone)]
pub(crate) struct PublishSettings {
    /// `--auth`, `--creds-stdin`, `HJK_AUTH`, `images.auth`.
    pub auth: AuthSettings,
    /// `--metadata-file`.
    pub metadata_file: Option<Utf8PathBuf>,
    /// `--sign`, `--sbom`, `--scan`, `--boot` and how (with `COSIGN_KEY`).
    pub gates: GateOptions,
    /// `--force-tags`: move public tags even when that narrows their platforms or re-points a
    /// released `<variant>-<version>`.
    pub force_tags: bool,
    /// `--registry-timeout`: connecting, and each wait for the registry's bytes.
    pub registry_timeout: Duration,
}

impl PublishSettings {
    fn resolve(args: &ReleaseArgs, vars: &Vars, cfg: &HjkConfig) -> Result<PublishSettings> {
        Ok(PublishSettings {
            auth: auth_setting(args.auth.as_deref(), cfg, args.creds_stdin)?,
            metadata_file: args.metadata_file.clone(),
            gates: GateOptions::resolve(args, vars)?,
            force_tags: args.force_tags,
            registry_timeout: registry_timeout(args.registry_timeout),
        })
    }
}

/// `hjk images release`.
#[derive(Debug, Clone)]
pub(crate) struct ReleaseSettings {
    pub images: ImagesSettings,
    pub publish: PublishSettings,
    /// `--push-by-digest`: stop after the per-platform images are pushed.
    pub push_by_digest: bool,
    /// `--builder`, `--connection`, `CONTAINER_HOST`.
    pub remote: Remote,
    pub no_cache: bool,
    /// What the builds add to each image besides its layers (see [`Extras`]).
    pub extras: Extras,
    /// `--keep-stage`: keep the local images built under their staging tags.
    pub keep_stage: bool,
}

impl ReleaseSettings {
    /// Everything but the epoch's last source, the time of the last commit that changed the
    /// images directory, which only the engine's runner can ask git for (see
    /// [`crate::hjk::release::commit_epoch`]).
    pub(crate) fn resolve(
        cmd: ReleaseCommand,
        vars: &Vars,
        cfg: &HjkConfig,
        graph: &Graph,
    ) -> Result<ReleaseSettings> {
        let engine =
            EngineSettings::resolve(cmd.engine.backend.clone(), cfg, cmd.progress, cmd.dry_run);
        let images = ImagesSettings::resolve(&cmd.engine, named(cmd.which), cfg, graph, engine)?;
        let publish = PublishSettings::resolve(&cmd.release, vars, cfg)?;
        let provenance = match (cmd.provenance, cmd.no_provenance) {
            (true, _) => Some(true),
            (_, true) => Some(false),
            _ => None,
        };
        Ok(ReleaseSettings {
            images,
            publish,
            push_by_digest: cmd.push_by_digest,
            remote: Remote {
                builder: cmd.builder,
                connection: cmd.connection,
                container_host: vars.contains_key("CONTAINER_HOST"),
            },
            no_cache: cmd.no_cache,
            extras: Extras {
                provenance,
                epoch: epoch_setting(cmd.source_date_epoch, vars)?,
                cache_repo: cache_repo(cmd.cache_repo.as_deref())?,
            },
            keep_stage: cmd.keep_stage,
        })
    }
}

/// The time a release writes into its images, as given: `--source-date-epoch`, else
/// `SOURCE_DATE_EPOCH` (the reproducible-builds convention).
fn epoch_setting(flag: Option<u64>, vars: &Vars) -> Result<Option<Epoch>, UserError> {
    let flag = flag.map(|seconds| Epoch {
        seconds,
        from: "--source-date-epoch".into(),
        explicit: true,
    });
    if flag.is_some() {
        // the variable is not read (nor refused) when the flag says it
        return Ok(flag);
    }
    let env = match vars.get("SOURCE_DATE_EPOCH") {
        Some(v) => Some(Epoch {
            seconds: v.trim().parse().map_err(|_| {
                UserError::setting(format!(
                    "SOURCE_DATE_EPOCH={v:?} is not a number of seconds since 1970"
                ))
            })?,
            from: "SOURCE_DATE_EPOCH".into(),
            explicit: true,
        }),
        None => None,
    };
    Ok(flag.combine(env))
}

/// `hjk images merge`.
#[derive(Debug, Clone)]
pub(crate) struct MergeSettings {
    pub engine: EngineSettings,
    /// The metadata files, one per machine.
    pub files: Vec<Utf8PathBuf>,
    /// Where `variants.yaml` is, if here (each variant's `.trivyignore` for the scan gate).
    pub images_dir: Utf8PathBuf,
    /// `--version`: must be the files' own.
    pub version: Option<Version>,
    pub publish: PublishSettings,
}

impl MergeSettings {
    pub(crate) fn resolve(
        cmd: MergeCommand,
        vars: &Vars,
        cfg: &HjkConfig,
    ) -> Result<MergeSettings> {
        let version = cmd.version.clone();
        Ok(MergeSettings {
            engine: EngineSettings::resolve(cmd.backend, cfg, cmd.progress, false),
            publish: PublishSettings::resolve(&cmd.release, vars, cfg)?,
            files: cmd.files,
            images_dir: cmd.images_dir,
            version,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_source_that_says_something_wins() {
        assert_eq!(Some(1).combine(Some(2)), Some(1));
        assert_eq!(None.combine(Some(2)), Some(2));
        assert_eq!(None::<u8>.combine(None), None);
        let vars: Vars = [("SOURCE_DATE_EPOCH".to_string(), " 7 ".to_string())].into();
        let e = epoch_setting(Some(5), &vars).unwrap().unwrap();
        assert_eq!((e.seconds, e.from.as_str()), (5, "--source-date-epoch"));
        let e = epoch_setting(None, &vars).unwrap().unwrap();
        assert_eq!((e.seconds, e.from.as_str()), (7, "SOURCE_DATE_EPOCH"));
        assert!(epoch_setting(None, &Vars::new()).unwrap().is_none());
    }
}
