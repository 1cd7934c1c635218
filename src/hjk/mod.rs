//! The Headjack workflows: `hjk images build | release | merge | verify | digest | list | resolve | boot`, each
//! entered through [`commands`], which resolves the command's [`settings`] once and opens the
//! [`Session`] (config, the variant graph, the engine) it runs against.

pub(crate) mod boot;
pub(crate) mod commands;
pub mod config;
pub mod devcontainer;
pub(crate) mod images;
pub(crate) mod plan;
pub(crate) mod prebuild;
pub mod release;
pub(crate) mod resolve;
pub(crate) mod settings;
pub mod variants;
pub(crate) mod verify;

use crate::engine::{Choice, Engine};
use crate::report;
use anyhow::Result;
use std::collections::BTreeMap;
use std::ffi::OsString;
use std::sync::Arc;
use variants::Graph;

/// What an images command runs against: the config, the variant graph and the engine.
pub(crate) struct Session {
    pub engine: Engine,
    pub graph: Graph,
}

impl Session {
    /// The config and the graph, read before any setting is resolved (the settings check the
    /// variants they name against the graph).
    pub(crate) fn load(
        vars: &BTreeMap<String, String>,
        images_dir: &camino::Utf8Path,
    ) -> Result<(config::HjkConfig, Graph)> {
        let cfg = config::load(vars)?;
        let graph = Graph::load(images_dir)?;
        Ok((cfg, graph))
    }

    /// Opens the engine the settings chose.
    pub(crate) fn open(
        vars: &BTreeMap<String, String>,
        engine: &settings::EngineSettings,
        config: config::HjkConfig,
        graph: Graph,
    ) -> Result<Session> {
        let reporter = Arc::from(report::reporter(engine.progress));
        let engine = open_engine(
            engine.backend.as_ref(),
            &config,
            vars,
            reporter,
            engine.dry_run,
        )?;
        Ok(Session { engine, graph })
    }
}

/// The engine an hjk command uses: `--backend`, else `runtime.name` (with where it was set),
/// else the first on PATH.
pub(crate) fn open_engine(
    choice: Option<&Choice>,
    cfg: &config::HjkConfig,
    vars: &BTreeMap<String, String>,
    reporter: Arc<dyn report::Reporter>,
    dry_run: bool,
) -> Result<Engine, crate::error::UserError> {
    cfg.warn_ignored(reporter.as_ref());
    let path = vars.get("PATH").map(OsString::from);
    let mut engine = Engine::open(choice, path.as_ref(), reporter, dry_run)?;
    engine.set_lock_dir(crate::lock::dir(vars));
    Ok(engine)
}

/// An engine for `merge`, which needs no images directory: the chosen one, else the first on
/// PATH; with none installed and none chosen, one that is never asked to build (merge runs
/// only credential tools and gates through it).
pub(crate) fn open_merge_engine(
    choice: &settings::EngineSettings,
    cfg: &config::HjkConfig,
    vars: &BTreeMap<String, String>,
) -> Result<Engine> {
    let reporter: Arc<dyn report::Reporter> = Arc::from(report::reporter(choice.progress));
    let engine = match open_engine(choice.backend.as_ref(), cfg, vars, reporter.clone(), false) {
        Ok(e) => e,
        Err(_) if choice.backend.is_none() => {
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
    Ok(engine)
}
