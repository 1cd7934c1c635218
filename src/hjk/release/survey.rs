//! Phase 2, and the no-op before it: the variants of the release's [`plan::Plan`] (the plan
//! `hjk images build` makes too), their fingerprints and content-addressed staging tags, and
//! per platform which of them the registry already has.

use super::metadata::{
    Attestation, Metadata, PlatformRecord, PlatformResult, VariantRecord, SCHEMA,
};
use super::promote::{public_tags, Planned};
use super::registry::{self, Manifest, Registry};
use crate::digest::ImageDigest;
use crate::engine::Engine;
use crate::fingerprint;
use crate::hjk::plan;
use crate::image_ref::ImageRef;
use crate::platform::Platform;
use anyhow::Result;
use std::collections::BTreeMap;

use super::stage::attestation;
use super::*;
use crate::hjk::plan::Step;

/// One variant on one platform, after the survey or the build.
#[derive(Debug, Clone)]
pub(super) struct Slot {
    pub(super) fingerprint: String,
    pub(super) stage_tag: String,
    pub(super) base: Option<String>,
    /// Known once surveyed as present or once pushed.
    pub(super) digest: Option<ImageDigest>,
    pub(super) media_type: String,
    pub(super) size: i64,
    /// The provenance attestation about `digest`, where the builder made one.
    pub(super) attestation: Option<Attestation>,
    pub(super) reused: bool,
    pub(super) seconds: f64,
}

impl Slot {
    pub(super) fn result(&self) -> PlatformResult {
        if self.reused {
            PlatformResult::Reused
        } else {
            PlatformResult::Built
        }
    }

    pub(super) fn origin(&self) -> Origin {
        self.result().origin()
    }
}

/// The content-addressed staging tag of one variant on one platform:
/// `stage-<variant>-<arch>-<first 20 hex of its input fingerprint>`.
pub(super) fn stage_tag(variant: &str, p: Platform, fingerprint: &str) -> String {
    format!(
        "stage-{variant}-{}-{}",
        p.arch(),
        &fingerprint[..20.min(fingerprint.len())]
    )
}

/// The root's base for one platform: `--base-image`, else the Dockerfile's default with
/// `TARGETARCH` filled in.
pub(super) fn root_base(spec_base: Option<&ImageRef>, step: &Step, p: Platform) -> Option<String> {
    step.base(spec_base, &[p])
}

/// Each variant's tags as this release would set them, from the survey: the index digest when
/// every platform is already in the registry (an index is a function of its platforms), `None`
/// when something must be built first.
pub(super) fn planned(
    registry: &Registry,
    spec: &ReleaseSettings,
    steps: &[Step],
    slots: &BTreeMap<(usize, Platform), Slot>,
) -> Vec<Planned> {
    let meta = record(spec, registry, steps, slots);
    steps
        .iter()
        .enumerate()
        .map(|(i, u)| {
            let all = spec.images.platforms.iter().all(|p| slots[&(i, *p)].reused);
            Planned {
                variant: u.name.clone(),
                digest: all.then(|| {
                    registry::digest_of_bytes(&index_bytes(&meta.variants[i].platforms).0)
                }),
                platforms: spec
                    .images
                    .platforms
                    .iter()
                    .map(|p| p.to_string())
                    .collect(),
            }
        })
        .collect()
}

/// The identity of a root base named by tag: its local image id per platform (one inspect),
/// so a new base image changes the fingerprint. A digest-pinned base is its own identity.
pub(super) async fn root_identities(
    engine: &Engine,
    spec: &ReleaseSettings,
    steps: &[Step],
) -> Result<BTreeMap<Platform, String>> {
    let Some(root) = steps.first() else {
        return Ok(BTreeMap::new());
    };
    let mut refs: Vec<(Platform, ImageRef)> = Vec::new();
    for p in &spec.images.platforms {
        if let Some(b) = root_base(spec.images.base_image.as_ref(), root, *p) {
            if let Ok(r) = ImageRef::parse(&b) {
                if r.digest().is_none() {
                    refs.push((*p, r));
                }
            }
        }
    }
    let mut out = BTreeMap::new();
    if refs.is_empty() {
        return Ok(out);
    }
    let infos = engine
        .inspect(&refs.iter().map(|(_, r)| r).collect::<Vec<_>>())
        .await?;
    for ((p, _), info) in refs.iter().zip(infos) {
        if let Some(id) = info.id {
            out.insert(*p, id);
        }
    }
    Ok(out)
}

/// What the public tags point at: per variant, the index under its last tag and the digests
/// of its other tags, all read at once.
pub(super) struct PublicTags {
    pub(super) indexes: Vec<Option<Manifest>>,
    pub(super) heads: Vec<Option<ImageDigest>>,
}

pub(super) async fn read_public(
    registry: &Registry,
    spec: &ReleaseSettings,
    steps: &[Step],
) -> Result<PublicTags> {
    let version = spec.images.version.as_deref();
    let tags: Vec<Vec<String>> = steps
        .iter()
        .map(|u| public_tags(&u.name, version))
        .collect();
    let reads = tags
        .iter()
        .map(|t| registry.manifest(t.last().expect("a tag")));
    let heads = tags
        .iter()
        .filter(|t| t.len() > 1)
        .map(|t| registry.digest_of(&t[0]));
    let (indexes, heads) = futures_util::future::join(
        futures_util::future::join_all(reads),
        futures_util::future::join_all(heads),
    )
    .await;
    Ok(PublicTags {
        indexes: indexes.into_iter().collect::<Result<_>>()?,
        heads: heads.into_iter().collect::<Result<_>>()?,
    })
}

/// The no-op check: every public tag already points at an index whose per-platform entries
/// carry the fingerprints these inputs give (each child's computed from its parent's digest in
/// the parent's index). All reads go out at once, so this costs one round trip per tag, not per
/// image. `None` when anything differs; the release then goes through every phase.
pub(super) fn unchanged(
    registry: &Registry,
    spec: &ReleaseSettings,
    steps: &[Step],
    root_ids: &BTreeMap<Platform, String>,
    applied: &Applied,
    published: PublicTags,
) -> Result<Option<(Metadata, Vec<Row>)>> {
    let version = spec.images.version.as_deref();
    let tags: Vec<Vec<String>> = steps
        .iter()
        .map(|u| public_tags(&u.name, version))
        .collect();
    let indexes = published.indexes;
    let mut heads = published.heads.into_iter();
    let mut digests: BTreeMap<(usize, Platform), ImageDigest> = BTreeMap::new();
    let mut variants = Vec::new();
    let mut rows = Vec::new();
    for ((i, u), index) in steps.iter().enumerate().zip(indexes) {
        let Some(index) = index else { return Ok(None) };
        if !index.is_index() {
            return Ok(None);
        }
        if tags[i].len() > 1 && heads.next().flatten() != Some(index.digest.clone()) {
            return Ok(None);
        }
        let parsed = index.parsed()?;
        let images = parsed
            .manifests
            .iter()
            .filter(|m| m.platform.as_ref().is_some_and(|p| p.os == "linux"))
            .count();
        if images != spec.images.platforms.len() {
            return Ok(None);
        }
        let mut platforms = BTreeMap::new();
        for p in &spec.images.platforms {
            let Some(d) = parsed.manifests.iter().find(|m| {
                m.platform
                    .as_ref()
                    .is_some_and(|x| x.architecture == p.arch())
            }) else {
                return Ok(None);
            };
            let base = match u.parent {
                Some(pi) => Some(crate::digest::by_digest(
                    &registry.name(),
                    &digests[&(pi, *p)],
                )),
                None => root_base(spec.images.base_image.as_ref(), u, *p),
            };
            let root_id = root_ids.get(p).filter(|_| u.parent.is_none());
            let fp = fingerprint_of(
                u,
                *p,
                version,
                base.as_deref(),
                root_id.map(String::as_str),
                applied,
            );
            if d.annotations.get(fingerprint::LABEL) != Some(&fp) {
                return Ok(None);
            }
            digests.insert((i, *p), d.digest.clone());
            rows.push(Row {
                variant: u.name.clone(),
                platform: p.to_string(),
                result: Origin::Reused,
                seconds: 0.0,
                digest: Some(d.digest.clone()),
            });
            platforms.insert(
                *p,
                PlatformRecord {
                    digest: d.digest.clone(),
                    media_type: d.media_type.clone(),
                    size: d.size,
                    stage_tag: stage_tag(&u.name, *p, &fp),
                    fingerprint: fp,
                    base,
                    result: PlatformResult::Reused,
                    attestation: parsed.attestation_for(&d.digest).cloned().map(attestation),
                },
            );
        }
        let parent_ref = u.parent.and_then(|p| {
            variants
                .get(p)
                .and_then(|v: &VariantRecord| v.index_digest.clone())
                .map(|d| format!("{}@{d}", registry.name()))
        });
        variants.push(VariantRecord {
            index_digest: Some(index.digest.clone()),
            tags: tags[i].clone(),
            parent_ref,
            ..VariantRecord::staged(
                u.name.clone(),
                u.parent.map(|p| steps[p].name.clone()),
                platforms,
                u.inputs.clone(),
            )
        });
    }
    let meta = Metadata {
        schema: SCHEMA,
        registry: registry.name(),
        version: spec.images.version.clone(),
        partial: false,
        variants,
    };
    Ok(Some((meta, rows)))
}

/// The identity of one variant on one platform ([`plan::fingerprint`], the one recipe of a
/// variant node, with what this release's builder adds).
pub(super) fn fingerprint_of(
    step: &Step,
    p: Platform,
    version: Option<&str>,
    base: Option<&str>,
    root_id: Option<&str>,
    applied: &Applied,
) -> String {
    let platforms = [p];
    let id = plan::Identity {
        platforms: &platforms,
        version,
        base,
        root_base_id: root_id,
        provenance: applied.provenance,
        epoch: applied.epoch,
    };
    plan::fingerprint(step, &id)
}

/// Phase 2: per platform and variant, whether the registry already has an image built from
/// the same inputs. A child's inputs include its parent's digest, so the walk stops reusing at
/// the first variant that must be built.
pub(super) async fn survey(
    engine: &Engine,
    registry: &Registry,
    spec: &ReleaseSettings,
    steps: &[Step],
    root_ids: &BTreeMap<Platform, String>,
    applied: &Applied,
) -> Result<BTreeMap<(usize, Platform), Slot>> {
    let mut slots = BTreeMap::new();
    for p in &spec.images.platforms {
        for (i, u) in steps.iter().enumerate() {
            let base = match u.parent {
                Some(pi) => {
                    let parent: &Slot = &slots[&(pi, *p)];
                    match (&parent.digest, parent.reused) {
                        (Some(d), true) => Some(format!("{}@{d}", registry.name())),
                        // the parent is rebuilt: so is every child
                        _ => None,
                    }
                }
                None => root_base(spec.images.base_image.as_ref(), u, *p),
            };
            let parent_rebuilt = u.parent.is_some() && base.is_none();
            // a child's parent digest already carries the root base's identity
            let root_id = root_ids.get(p).filter(|_| u.parent.is_none());
            let fp = fingerprint_of(
                u,
                *p,
                spec.images.version.as_deref(),
                base.as_deref(),
                root_id.map(String::as_str),
                applied,
            );
            let stage_tag = stage_tag(&u.name, *p, &fp);
            let mut slot = Slot {
                fingerprint: fp.clone(),
                stage_tag: stage_tag.clone(),
                base,
                digest: None,
                media_type: String::new(),
                size: 0,
                attestation: None,
                reused: false,
                seconds: 0.0,
            };
            if !parent_rebuilt && !spec.no_cache {
                if let Some((m, att)) = registry.platform_manifest_attested(&stage_tag, *p).await? {
                    let cfg = registry.config(&m).await?;
                    // an image staged with an attestation is reused only with it
                    let complete = att.is_some() || !applied.provenance;
                    if cfg.labels.get(fingerprint::LABEL) == Some(&fp) && complete {
                        slot.digest = Some(m.digest.clone());
                        slot.media_type = m.media_type.clone();
                        slot.size = m.bytes.len() as i64;
                        slot.attestation = att.map(attestation);
                        slot.reused = true;
                    }
                }
            }
            if slot.reused {
                engine.reporter().info(&format!(
                    "{} ({p}) is in the registry with the same inputs",
                    u.name
                ));
            }
            slots.insert((i, *p), slot);
        }
    }
    Ok(slots)
}

/// The metadata of what is staged (no indexes yet).
pub(super) fn record(
    spec: &ReleaseSettings,
    registry: &Registry,
    steps: &[Step],
    slots: &BTreeMap<(usize, Platform), Slot>,
) -> Metadata {
    Metadata {
        schema: SCHEMA,
        registry: registry.name(),
        version: spec.images.version.clone(),
        partial: spec.push_by_digest,
        variants: steps
            .iter()
            .enumerate()
            .map(|(i, u)| {
                let platforms = spec
                    .images
                    .platforms
                    .iter()
                    .filter_map(|p| {
                        let s = &slots[&(i, *p)];
                        Some((
                            *p,
                            PlatformRecord {
                                digest: s.digest.clone()?,
                                media_type: s.media_type.clone(),
                                size: s.size,
                                stage_tag: s.stage_tag.clone(),
                                fingerprint: s.fingerprint.clone(),
                                base: s.base.clone(),
                                result: s.result(),
                                attestation: s.attestation.clone(),
                            },
                        ))
                    })
                    .collect();
                VariantRecord::staged(
                    u.name.clone(),
                    u.parent.map(|p| steps[p].name.clone()),
                    platforms,
                    u.inputs.clone(),
                )
            })
            .collect(),
    }
}
