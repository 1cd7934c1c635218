//! The Headjack workflows: `hjk images build | release | merge | verify | digest | list | resolve | boot`, each
//! entered through [`commands`]. [`Session::open`] is what every
//! images command starts with: config, the variant graph, the engine, and the validated spec.

pub mod boot;
pub mod commands;
pub mod config;
pub mod devcontainer;
pub mod images;
pub mod prebuild;
pub mod release;
pub mod resolve;
pub mod variants;
pub mod verify;

use crate::engine::{Choice, Engine};
use crate::image_ref::ImageRef;
use crate::platform::Platform;
use crate::report::{self, ProgressMode};
use anyhow::Result;
use camino::Utf8PathBuf;
use images::BuildSpec;
use std::collections::BTreeMap;
use std::ffi::OsString;
use std::sync::Arc;
use variants::Graph;

/// What every `hjk images` command is told about engine, images and tags (its shared flags).
#[derive(Debug, Clone, Default)]
pub struct ImagesOptions {
    pub backend: Option<String>,
    pub images_dir: Utf8PathBuf,
    pub registry: Option<String>,
    pub platform: Option<String>,
    pub version: Option<String>,
    pub base_image: Option<String>,
    pub progress: ProgressMode,
    pub dry_run: bool,
}

/// An images command, ready to run.
pub struct Session {
    pub engine: Engine,
    pub graph: Graph,
    pub spec: BuildSpec,
    pub config: config::HjkConfig,
}

impl Session {
    /// Reads config and the graph and checks every input before the engine is touched.
    /// `variants` empty means all of them.
    pub fn open(
        opts: &ImagesOptions,
        vars: &BTreeMap<String, String>,
        variants: Vec<String>,
    ) -> Result<Session> {
        let cfg = config::load(vars)?;
        let graph = Graph::load(&opts.images_dir)?;
        for v in &variants {
            graph.get(v)?;
        }
        let variants = if variants.is_empty() {
            graph.names().into_iter().map(String::from).collect()
        } else {
            variants
        };
        let platforms = match &opts.platform {
            Some(p) => Platform::parse_list(p)?,
            None => vec![Platform::host()],
        };
        let registry = match &opts.registry {
            Some(r) => config::parse_registry(r)?,
            None => cfg.registry.clone(),
        };
        let version = opts
            .version
            .as_deref()
            .map(images::parse_version)
            .transpose()?;
        let base_image = opts
            .base_image
            .as_deref()
            .map(ImageRef::parse)
            .transpose()?;
        let reporter = Arc::from(report::reporter(opts.progress));
        let engine = open_engine(opts.backend.as_deref(), &cfg, vars, reporter, opts.dry_run)?;
        Ok(Session {
            engine,
            graph,
            spec: BuildSpec {
                variants,
                platforms,
                registry,
                version,
                push: false,
                no_cache: false,
                no_fastfail: false,
                base_image,
                cache_repo: None,
            },
            config: cfg,
        })
    }
}

/// The engine an hjk command uses: `--backend`, else `runtime.name` (with where it was set),
/// else the first on PATH.
pub fn open_engine(
    backend: Option<&str>,
    cfg: &config::HjkConfig,
    vars: &BTreeMap<String, String>,
    reporter: Arc<dyn report::Reporter>,
    dry_run: bool,
) -> Result<Engine, crate::error::UserError> {
    let choice = match (backend, &cfg.backend) {
        (Some(b), _) => Some(Choice {
            value: b.to_string(),
            from: "--backend".into(),
        }),
        (None, Some((k, src))) => Some(Choice {
            value: k.name().to_string(),
            from: src.clone(),
        }),
        _ => None,
    };
    cfg.warn_ignored(reporter.as_ref());
    let path = vars.get("PATH").map(OsString::from);
    let mut engine = Engine::open(choice.as_ref(), path.as_ref(), reporter, dry_run)?;
    engine.set_lock_dir(crate::lock::dir(vars));
    Ok(engine)
}

/// An engine for `merge`, which needs no images directory: the chosen one, else the first on
/// PATH; with none installed and none chosen, one that is never asked to build (merge runs
/// only credential tools and gates through it).
pub fn open_merge_engine(
    backend: Option<&str>,
    vars: &BTreeMap<String, String>,
    progress: ProgressMode,
) -> Result<(Engine, config::HjkConfig)> {
    let cfg = config::load(vars)?;
    let reporter: Arc<dyn report::Reporter> = Arc::from(report::reporter(progress));
    let engine = match open_engine(backend, &cfg, vars, reporter.clone(), false) {
        Ok(e) => e,
        Err(_) if backend.is_none() && cfg.backend.is_none() => {
            let mut e = Engine::new(
                crate::backend::detect::tools_only(),
                crate::exec::Runner::new(reporter, false),
            );
            // merges of one repository on this machine take turns moving its tags
            e.set_lock_dir(crate::lock::dir(vars));
            e
        }
        Err(e) => return Err(e.into()),
    };
    Ok((engine, cfg))
}

/// The auth settings: `--auth` > `HJK_AUTH` > `images.auth.mode` > docker-config.
pub fn auth_settings(
    flag: Option<&str>,
    cfg: &config::HjkConfig,
    creds_stdin: bool,
) -> Result<release::auth::AuthSettings, crate::error::UserError> {
    let mode = match flag {
        Some(m) => m.parse().map_err(|e: crate::error::UserError| {
            crate::error::UserError(format!("--auth: {}", e.0))
        })?,
        None => cfg
            .auth_mode
            .as_ref()
            .map(|(m, _)| *m)
            .unwrap_or(release::auth::AuthMode::DockerConfig),
    };
    if creds_stdin && mode != release::auth::AuthMode::Raw {
        return Err(crate::error::UserError(format!(
            "--creds-stdin is for --auth raw, but the auth mode is {mode}"
        )));
    }
    Ok(release::auth::AuthSettings {
        mode,
        op_refs: cfg.op_refs.clone(),
        creds_stdin,
    })
}
