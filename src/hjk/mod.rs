//! The Headjack workflows: `hjk images build | list | resolve`. [`Session::open`] is what every
//! images command starts with: config, the variant graph, the engine, and the validated spec.

pub mod config;
pub mod devcontainer;
pub mod images;
pub mod prebuild;
pub mod resolve;
pub mod supply_chain;
pub mod variants;

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
            },
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
    let path = vars.get("PATH").map(OsString::from);
    let mut engine = Engine::open(choice.as_ref(), path.as_ref(), reporter, dry_run)?;
    engine.set_lock_dir(crate::lock::dir(vars));
    Ok(engine)
}
