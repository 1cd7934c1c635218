//! Phase 1: everything that can refuse a release or a merge does so before anything is built or
//! pushed.

use super::auth::{self, AuthMode, Credentials};
use super::gates::tools::GateOptions;
use super::gates::Gates;
use super::registry::{self};
use crate::backend::ReleaseNeeds;
use crate::engine::Engine;
use crate::error::UserError;
use crate::hjk::variants::Graph;
use anyhow::Result;
use camino::{Utf8Path, Utf8PathBuf};
use std::collections::BTreeMap;

use super::*;

/// Removes the credential stores killed runs left behind (see [`auth::sweep_stale`]).
pub(super) fn sweep_credentials(engine: &Engine) {
    let n = auth::sweep_stale();
    if n > 0 {
        engine.reporter().info(&format!(
            "removed {n} temporary credential store(s) that killed runs left in {}",
            std::env::temp_dir().display()
        ));
    }
}

/// `--metadata-file` of a release: writable, and not one of the release's inputs
/// (variants.yaml, or a file in a variant's build context).
pub(super) fn check_metadata_path(f: &Utf8Path, graph: &Graph) -> Result<(), UserError> {
    let yaml = graph.root.join(crate::hjk::variants::FILE);
    let dirs: Vec<(Utf8PathBuf, String)> = graph
        .variants
        .iter()
        .map(|v| (graph.dir(v), format!("variant {}'s directory", v.name)))
        .collect();
    let dirs: Vec<(&Utf8Path, &str)> = dirs
        .iter()
        .map(|(d, w)| (d.as_path(), w.as_str()))
        .collect();
    crate::output_file::check(
        "--metadata-file",
        f,
        &[(&yaml, "the images directory's variants.yaml")],
        &dirs,
    )
}

/// `--gates-dir`, where --sbom and --scan write: a directory that can be made and written in,
/// checked before anything is built (it used to fail after everything was pushed). Nothing is
/// created here.
pub(super) fn check_gates_dir(flags: &GateOptions) -> Result<(), UserError> {
    if !(flags.sbom || flags.scan) {
        return Ok(());
    }
    let dir = &flags.out_dir;
    let mut existing = dir.as_path();
    while !existing.as_str().is_empty() && std::fs::symlink_metadata(existing).is_err() {
        existing = existing.parent().unwrap_or(Utf8Path::new(""));
    }
    let existing = match existing.as_str() {
        "" => Utf8Path::new("."),
        _ => existing,
    };
    if !existing.is_dir() {
        return Err(UserError::file(format!(
            "--gates-dir {dir}: {existing} is not a directory; pick a directory the SBOMs and scan reports can go to"
        )));
    }
    tempfile::Builder::new()
        .prefix(".hjk-check-")
        .tempfile_in(existing)
        .map(drop)
        .map_err(|e| {
            UserError::file(format!(
                "--gates-dir {dir}: cannot write in {existing} ({e}); pick a writable directory for the SBOMs and scan reports"
            ))
        })
}

/// Phase 1: everything that can refuse the release does so before anything is built or pushed:
/// the gates, the engine's limits, and the credentials (a wrong password is exit 2 here).
pub(super) async fn check(
    engine: &mut Engine,
    spec: &ReleaseSettings,
    vars: &BTreeMap<String, String>,
) -> Result<(Option<Credentials>, Option<Gates>)> {
    if spec.push_by_digest {
        if spec.publish.gates.any() {
            return Err(UserError::setting(
                "--push-by-digest stops before the gates (nothing is promoted): pass --sbom, --sign and --scan to `hjk images merge`, which runs them on the merged indexes",
            )
            .into());
        }
        if spec.publish.force_tags {
            return Err(UserError::setting(
                "--force-tags is for the run that moves tags: pass it to `hjk images merge`, not to --push-by-digest",
            )
            .into());
        }
    }
    check_gates_dir(&spec.publish.gates)?;
    let plain_http = registry::plain_http(spec.images.registry.registry());
    let mut gates = Gates::check(spec.publish.gates.clone(), plain_http, vars)?;
    engine.configure(&spec.remote)?;
    engine
        .check_release(&ReleaseNeeds {
            platforms: spec.images.platforms.clone(),
            login: spec.publish.auth.mode != AuthMode::DockerConfig,
        })
        .await?;
    let creds = auth::resolve(&spec.publish.auth, vars, engine, &spec.images.registry).await?;
    if let Some(g) = &mut gates {
        g.prepare(engine).await?;
    }
    Ok((creds, gates))
}
