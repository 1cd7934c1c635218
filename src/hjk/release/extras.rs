//! What a release asks of the builder beyond the image itself (provenance, SOURCE_DATE_EPOCH,
//! the registry cache), decided once against the engine's capabilities before anything is built.

use crate::backend::Capability;
use crate::engine::Engine;
use crate::image_ref::ImageRef;
use anyhow::Result;

use super::*;

/// What a release asks of the builder beyond the image itself: each a backend capability,
/// either asked for (refused up front where the engine lacks it) or wanted where it can be had.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Extras {
    /// A provenance attestation (SLSA, `mode=max`) per image: `None` where the engine can make
    /// one (the default), `Some(true)` required (`--provenance`), `Some(false)` off.
    pub provenance: Option<bool>,
    /// `SOURCE_DATE_EPOCH` for every image, and where it came from.
    pub epoch: Option<Epoch>,
    /// `--cache-repo`: the registry repository the layer cache is imported from and exported
    /// to, one tag per variant and platform.
    pub cache_repo: Option<ImageRef>,
}

/// The time written into a release's images.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Epoch {
    pub seconds: u64,
    /// `--source-date-epoch`, `SOURCE_DATE_EPOCH`, or the commit it was read from.
    pub from: String,
    /// Given by the user (refused where the engine cannot apply it), not read from git.
    pub explicit: bool,
}

/// What [`Extras`] come to on this engine: decided once, before anything is built.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct Applied {
    pub(super) provenance: bool,
    pub(super) epoch: Option<u64>,
    pub(super) cache_repo: Option<ImageRef>,
    /// What the release says about these before it builds anything (nothing, when everything
    /// is already in the registry).
    pub(super) notes: Vec<String>,
}

impl Applied {
    /// Decides each extra against what the engine can do: one that was asked for and cannot
    /// be had is refused (exit 2) before anything is built; a default that cannot be had is
    /// dropped, saying so once.
    pub(super) async fn decide(engine: &Engine, spec: &ReleaseSettings) -> Result<Applied> {
        let platforms = &spec.images.platforms;
        let refuse = |c: Capability| engine.refusal(c);
        let x = &spec.extras;
        let mut notes = Vec::new();
        let provenance = match x.provenance {
            Some(false) => false,
            want => {
                let can = engine.supports(Capability::Provenance, platforms).await?;
                if !can && want == Some(true) {
                    return Err(refuse(Capability::Provenance).into());
                }
                if !can {
                    notes.push(format!(
                        "no provenance attestations: {} cannot make them{}",
                        engine.kind(),
                        engine.builder_note()
                    ));
                }
                can
            }
        };
        let epoch = match &x.epoch {
            None => None,
            Some(e) => {
                let can = engine
                    .supports(Capability::ReproducibleTimes, platforms)
                    .await?;
                if !can && e.explicit {
                    return Err(refuse(Capability::ReproducibleTimes).into());
                }
                if can {
                    notes.push(format!(
                        "SOURCE_DATE_EPOCH={} ({}): the same inputs give the same image digests",
                        e.seconds, e.from
                    ));
                    Some(e.seconds)
                } else {
                    notes.push(format!(
                        "image digests are not reproducible: {} cannot rewrite file times{}",
                        engine.kind(),
                        engine.builder_note()
                    ));
                    None
                }
            }
        };
        if x.cache_repo.is_some()
            && !engine
                .supports(Capability::RegistryCache, platforms)
                .await?
        {
            return Err(refuse(Capability::RegistryCache).into());
        }
        Ok(Applied {
            provenance,
            epoch,
            cache_repo: x.cache_repo.clone(),
            notes,
        })
    }
}

/// The last source of a release's epoch, when neither `--source-date-epoch` nor
/// `SOURCE_DATE_EPOCH` gave one (see [`crate::hjk::settings::ReleaseSettings`]): the commit
/// time of the last commit that touched the images directory, so the same commit gives the
/// same digests on every machine. `None` outside a git checkout.
pub(crate) async fn commit_epoch(engine: &Engine, images_dir: &Utf8Path) -> Result<Option<Epoch>> {
    let git = crate::invocation::Invocation::new("git")
        .args([
            "-C",
            images_dir.as_str(),
            "log",
            "-1",
            "--format=%ct,%h",
            "--",
            ".",
        ])
        .read_only();
    let out = match engine.tool(&git).await {
        Ok(out) => out,
        Err(e) if crate::error::interruption(&e).is_some() => return Err(e),
        Err(_) => return Ok(None),
    };
    let text = out.stdout.trim().to_string();
    let Some((seconds, commit)) = text.split_once(',') else {
        return Ok(None);
    };
    Ok(seconds.parse().ok().map(|seconds| Epoch {
        seconds,
        from: format!("the time of commit {commit}, the last to change {images_dir}"),
        explicit: false,
    }))
}
