//! `hjk images release` and `hjk images merge`: publish the hierarchy by digest, parents first.
//!
//! A release runs in phases, each one named function:
//! 1. `check::check`: gates (their tools, the signing key against `--key`, trivy's DB), engine
//!    limits and credentials, before anything is built or pushed;
//! 2. `survey::survey`: per platform, which variants the registry already has with the same inputs
//!    (the fingerprint label on the image under its content-addressed staging tag);
//! 3. `stage::stage`: per platform (the platforms concurrently), build what is not there, each
//!    child FROM `<registry>@<parent's digest for that platform>`, and push it to its staging
//!    tag; record the digests;
//! 4. `assemble::assemble`: per variant, the index (manifest list) of its platforms, pushed by digest,
//!    untagged;
//! 5. `assemble::verify`: read everything back: every platform in each index, base labels equal to the
//!    parent digests, each child's layers beginning with its parent's;
//! 6. gates (`gates::Gates::run`): SBOM, signature, scan of the staged digests;
//! 7. promotion (`promote`): only now do the public tags `<variant>` and
//!    `<variant>-<version>` move, after every check that could refuse one passed;
//! 8. the summary and the metadata file (`summary`).
//!
//! Phases 4 to 7 are `publish`, the same for a release and a merge (`merge`).
//!
//! `--push-by-digest` stops after 3 (a partial metadata file); `merge` starts at 4 from such
//! files, so two machines give the same indexes and tags as one.

use self::auth::{AuthMode, Credentials, LoginStore};
use self::gates::run::Promotion;
use self::gates::Gates;
use self::metadata::Metadata;
use self::promote::{public_tags, Planned};
use self::registry::Registry;
use super::plan::Plan;
use super::settings::ReleaseSettings;
use super::variants::Graph;
use crate::engine::Engine;
use crate::error::UserError;
use anyhow::Result;
use camino::{Utf8Path, Utf8PathBuf};
use std::collections::BTreeMap;
use std::time::Instant;

mod assemble;
pub(crate) mod auth;
mod check;
mod extras;
pub mod gates;
mod merge;
pub mod metadata;
pub mod promote;
pub mod registry;
mod stage;
mod summary;
mod survey;

pub(crate) use assemble::index_bytes;
pub(crate) use assemble::provenance_of;
use assemble::{assemble, verify};
use check::{check, check_metadata_path, sweep_credentials};
use extras::Applied;
pub(crate) use extras::{commit_epoch, Epoch, Extras};
pub(crate) use merge::merge_command;
use stage::{stage, Built};
use summary::finish;
pub(crate) use summary::{Origin, Row};
use survey::*;

pub(crate) const LABEL_BASE_NAME: &str = "org.opencontainers.image.base.name";
pub(crate) const LABEL_BASE_DIGEST: &str = "org.opencontainers.image.base.digest";
pub(crate) const LABEL_VERSION: &str = "org.opencontainers.image.version";

/// `hjk images release`. However it ends (also interrupted), the local images it built under
/// their staging tags are removed unless `--keep-stage`: the registry holds them, and each
/// release would otherwise leave its own behind.
pub(crate) async fn release_command(
    engine: &mut Engine,
    graph: &Graph,
    spec: &ReleaseSettings,
    vars: &BTreeMap<String, String>,
) -> Result<u8> {
    sweep_credentials(engine);
    let built = std::sync::Mutex::new(Vec::new());
    let r = release_phases(engine, graph, spec, vars, &built).await;
    let built = built.into_inner().unwrap_or_else(|p| p.into_inner());
    if !spec.keep_stage {
        engine.remove_staged(&built).await;
    }
    r
}

async fn release_phases(
    engine: &mut Engine,
    graph: &Graph,
    spec: &ReleaseSettings,
    vars: &BTreeMap<String, String>,
    built: &Built,
) -> Result<u8> {
    let started = Instant::now();
    // the plan `hjk images build` makes; the survey adds the registry's state to its steps
    let Plan { steps } = Plan::walk(graph, &spec.images.variants)?;
    if let Some(f) = &spec.publish.metadata_file {
        check_metadata_path(f, graph)?;
    }
    let (creds, gates) = check(engine, spec, vars).await?;
    let applied = Applied::decide(engine, spec).await?;
    let registry = Registry::new(
        &spec.images.registry,
        creds.clone(),
        spec.publish.registry_timeout,
        engine.shared_reporter(),
    )?;
    registry.reachable().await?;
    // with gates asked for, they run again (a scan against today's database, a signature)
    let quick = !spec.no_cache && !spec.push_by_digest && gates.is_none();
    // the public indexes are read while the engine looks up the root base, not after
    let (root_ids, published) =
        futures_util::future::join(root_identities(engine, spec, &steps), async {
            match quick {
                true => Some(read_public(&registry, spec, &steps).await),
                false => None,
            }
        })
        .await;
    let root_ids = root_ids?;
    if let Some(published) = published {
        if let Some((meta, rows)) =
            unchanged(&registry, spec, &steps, &root_ids, &applied, published?)?
        {
            engine
                .reporter()
                .info("every tag already points at an index built from these inputs");
            finish(
                engine,
                spec.publish.metadata_file.as_deref(),
                &meta,
                &rows,
                started,
            )?;
            return Ok(crate::error::EXIT_OK);
        }
    }
    let mut slots = survey(engine, &registry, spec, &steps, &root_ids, &applied).await?;
    let mut surveyed = None;
    if !spec.push_by_digest {
        // a tag this release may not move is refused now, before hours of building; what each
        // tag holds now is what promotion compares it with before it swaps it
        let plans = planned(&registry, spec, &steps, &slots);
        let (_, read) = promote::check(
            &registry,
            &plans,
            spec.images.version.as_deref(),
            spec.publish.force_tags,
            None,
        )
        .await?;
        surveyed = Some(read);
    }
    let needs_build = slots.values().any(|s| !s.reused);
    if needs_build {
        for note in &applied.notes {
            engine.reporter().info(note);
        }
    }
    let login = match (&creds, spec.publish.auth.mode, needs_build) {
        (Some(c), mode, true) if mode != AuthMode::DockerConfig => Some(
            LoginStore::open(
                engine,
                c,
                registry.host(),
                registry::plain_http(registry.host()),
                vars,
            )
            .await?,
        ),
        _ => None,
    };
    let staged = stage(engine, &registry, spec, &steps, &applied, &mut slots, built).await;
    if let Some(l) = login {
        l.close(engine).await;
    }
    let rows = staged?;
    let meta = record(spec, &registry, &steps, &slots);
    if spec.push_by_digest || engine.dry_run() {
        if engine.dry_run() {
            let gates_note = match &gates {
                Some(g) => format!("run the gates ({}), ", g.names().join(", ")),
                None => String::new(),
            };
            engine.note(&format!(
                "then: push each variant's index by digest, verify, {gates_note}promote the tags"
            ));
        } else {
            finish(
                engine,
                spec.publish.metadata_file.as_deref(),
                &meta,
                &rows,
                started,
            )?;
        }
        return Ok(crate::error::EXIT_OK);
    }
    let publishing = Publishing {
        gates: gates.as_ref(),
        dirs: gates::variant_dirs(graph),
        creds: creds.as_ref(),
        force_tags: spec.publish.force_tags,
        surveyed,
    };
    let file = spec.publish.metadata_file.as_deref();
    conclude(engine, &registry, &publishing, meta, &rows, file, started).await
}

/// Publishes the staged release (see [`publish`]), writes the metadata file and the summary,
/// and ends with the gates' error when they held a variant back (exit 1). The version of the
/// tags is the one the images were built with (`meta.version`).
async fn conclude(
    engine: &Engine,
    registry: &Registry,
    publishing: &Publishing<'_>,
    mut meta: Metadata,
    rows: &[Row],
    file: Option<&Utf8Path>,
    started: Instant,
) -> Result<u8> {
    let held = publish(engine, registry, publishing, &mut meta).await?;
    finish(engine, file, &meta, rows, started)?;
    held.map_or(Ok(crate::error::EXIT_OK), Err)
}

/// How a staged release is published: its gates and what they need besides the metadata, and
/// whether tags may be forced.
struct Publishing<'a> {
    gates: Option<&'a Gates>,
    /// Each variant's directory, for its `.trivyignore`.
    dirs: BTreeMap<String, Utf8PathBuf>,
    creds: Option<&'a Credentials>,
    force_tags: bool,
    /// What each public tag held when the release surveyed them, before it built: a tag that
    /// holds something else at promotion time was moved by another release, and is not
    /// overwritten (`None` for a merge, which surveys at promotion time).
    surveyed: Option<promote::Surveyed>,
}

/// `hjk images digest`: the variant's index digest from a metadata file (or its only platform's
/// digest in a one-platform partial file), else the local image's digest or id.
pub(crate) async fn digest_command(
    session: &super::Session,
    settings: &crate::hjk::settings::ImagesSettings,
    variant: &str,
    file: Option<&Utf8Path>,
) -> Result<u8> {
    let read = match file {
        Some(f) => Metadata::read_if_present(f)?,
        None => None,
    };
    let from_file = match read {
        Some(m) => m.variant(variant).and_then(|v| {
            v.index_digest.clone().or_else(|| {
                (v.platforms.len() == 1)
                    .then(|| v.platforms.values().next().map(|r| r.digest.clone()))
                    .flatten()
            })
        }),
        None => None,
    };
    let digest = match from_file {
        Some(d) => d.to_string(),
        None => {
            let tag = settings.registry.with_tag(variant)?;
            let info = session
                .engine
                .inspect(&[&tag])
                .await?
                .pop()
                .unwrap_or_default();
            match info.digest.map(|d| d.to_string()).or(info.id) {
                Some(d) if info.exists => d,
                _ => {
                    return Err(UserError::not_found(format!(
                        "no digest for {variant}: not in the metadata file and {tag} is not a local image (build or release it first)"
                    ))
                    .into())
                }
            }
        }
    };
    session
        .engine
        .reporter()
        .result(format!("{digest}\n"), serde_json::json!({"digest": digest}));
    Ok(crate::error::EXIT_OK)
}

/// Phases 4 to 7 on staged per-platform digests: indexes by digest, verification, gates,
/// promotion. The same code for a one-machine release and a merge. Returns the error to end
/// with when a variant was held back (its tags stayed where they were).
async fn publish(
    engine: &Engine,
    registry: &Registry,
    publishing: &Publishing<'_>,
    meta: &mut Metadata,
) -> Result<Option<anyhow::Error>> {
    let indexes = assemble(engine, registry, meta).await?;
    verify(registry, meta).await?;
    let asked = publishing.gates.map(Gates::names).unwrap_or_default();
    let mut promotion = match publishing.gates {
        Some(g) => {
            g.run(engine, meta, &publishing.dirs, publishing.creds)
                .await?
        }
        None => Promotion {
            moves: meta.variants.iter().map(|v| v.name.clone()).collect(),
            held: Vec::new(),
        },
    };
    // a hold covers the index and the images it lists: another index over the same images (a
    // release of fewer platforms) is held too
    let keys: promote::HoldKeys = meta
        .variants
        .iter()
        .map(|v| {
            let index = v
                .index_digest
                .iter()
                .map(|d| ("index".to_string(), d.clone()));
            let images = v
                .platforms
                .iter()
                .map(|(p, r)| (p.to_string(), r.digest.clone()));
            (v.name.clone(), index.chain(images).collect())
        })
        .collect();
    promote::record_holds(engine, registry, &promotion.held, &keys, &asked).await?;
    let parents: Vec<(String, Option<String>)> = meta
        .variants
        .iter()
        .map(|v| (v.name.clone(), v.parent.clone()))
        .collect();
    let lifted =
        promote::apply_earlier_holds(registry, &mut promotion, &parents, &keys, &asked).await?;
    let plans: Vec<Planned> = meta
        .variants
        .iter()
        .filter(|v| promotion.may_move(&v.name))
        .map(|v| Planned {
            variant: v.name.clone(),
            digest: v.index_digest.clone(),
            platforms: v.platforms.keys().map(|p| p.to_string()).collect(),
        })
        .collect();
    let version = meta.version.clone();
    // releases of this repository on this machine take turns from here to the last tag
    let _promoting = engine.promotion_lock(&registry.name()).await?;
    let (moves, _) = promote::check(
        registry,
        &plans,
        version.as_deref(),
        publishing.force_tags,
        publishing.surveyed.as_ref(),
    )
    .await?;
    promote::apply(engine, registry, &moves, &indexes).await?;
    promote::record_lifts(engine, registry, &lifted, &asked).await?;
    for v in &mut meta.variants {
        if promotion.may_move(&v.name) {
            v.tags = public_tags(&v.name, version.as_deref());
        }
        if let Some(h) = promotion.held.iter().find(|h| h.variant == v.name) {
            v.held = h.reasons.clone();
        }
    }
    Ok(promotion.held_error())
}
