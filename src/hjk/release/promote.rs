//! The last phase of a release: which public tags (`<variant>`, `<variant>-<version>`) move, and
//! moving them. Everything is decided before the first tag moves, so a refusal leaves every tag
//! where it was:
//! - a variant its own gates held gets a **held marker** in the registry for its index and for
//!   each of its platform images (the tag `held-<hex of the digest>`, an index that lists no
//!   image, annotated with the gates and the reasons), and a later release moves no tag to an
//!   index that is, or lists, a held digest unless it runs those gates again and they pass: a
//!   rerun without gates, or a release of fewer platforms (another index over the same images),
//!   cannot promote what a gated run held. A second hold of the same digest adds its gates and
//!   reasons to the first; a hold that was lifted is marked so, and holds nothing after that;
//! - a tag whose current index lists a platform this release does not have is not narrowed, and
//!   an existing `<variant>-<version>` is not re-pointed, unless `--force-tags` says so;
//! - then every tag moves in one pass: the versioned tags first, then the floating ones,
//!   parents before children. The registry has no transaction: an interruption in that pass
//!   leaves some tags moved and others not, each pointing at a verified (and gated) index; a
//!   rerun rebuilds nothing and moves the rest;
//! - each tag moves by compare-and-swap: what it holds is read right before its PUT and must be
//!   what the release read when it surveyed the tags (before building); a tag another release
//!   moved meanwhile is not overwritten, and the run stops naming it. A versioned tag is read
//!   again after its PUT. Releases on one machine take turns through a lock on the repository
//!   from the check to the last PUT, so two of them never both report one released version at
//!   different digests; between machines the registry offers no conditional PUT, and only the
//!   window between a tag's read and its PUT is left.

use super::gates::run::{Held, Promotion};
use super::registry::{Manifest, Registry, OCI_INDEX};
use crate::digest::ImageDigest;
use crate::engine::Engine;
use crate::error::UserError;
use anyhow::Result;
use std::collections::{BTreeMap, BTreeSet};

/// The tag prefix of held markers.
pub(crate) const HELD_TAG_PREFIX: &str = "held-";
/// Marker annotations: the held index, the gates that held it (comma-separated), why.
pub(crate) const ANN_HELD: &str = "io.agent-images.held";
pub(crate) const ANN_HELD_GATES: &str = "io.agent-images.held.gates";
pub(crate) const ANN_HELD_REASONS: &str = "io.agent-images.held.reasons";
/// On a marker whose hold a later release lifted: the gates that passed.
pub(crate) const ANN_HELD_LIFTED: &str = "io.agent-images.held.lifted-by";

/// The digests a hold covers, each with what it is (`index`, or a platform): the variant's
/// index and each platform image it lists.
pub(crate) type HoldKeys = BTreeMap<String, Vec<(String, ImageDigest)>>;

/// The public tags of a variant: `<variant>` and, with a version, `<variant>-<version>`.
pub fn public_tags(name: &str, version: Option<&str>) -> Vec<String> {
    let mut tags = vec![name.to_string()];
    if let Some(v) = version {
        tags.push(format!("{name}-{v}"));
    }
    tags
}

/// `held-<64 hex>`: where the marker of a held index lives.
pub(crate) fn held_tag(digest: &str) -> String {
    format!(
        "{HELD_TAG_PREFIX}{}",
        digest.strip_prefix("sha256:").unwrap_or(digest)
    )
}

/// The marker of a held digest: an OCI index listing no image (nothing anyone could pull or
/// run), whose annotations say which digest, which gates and why.
pub(crate) fn held_marker(digest: &str, hold: &EarlierHold) -> Vec<u8> {
    let gates: Vec<&str> = hold.gates.iter().map(String::as_str).collect();
    marker(serde_json::json!({
        ANN_HELD: digest,
        ANN_HELD_GATES: gates.join(","),
        ANN_HELD_REASONS: hold.reasons,
    }))
}

/// The marker of a hold that `gates` lifted: it names the digest and holds nothing.
pub(crate) fn lifted_marker(digest: &str, gates: &[&str]) -> Vec<u8> {
    marker(serde_json::json!({ ANN_HELD: digest, ANN_HELD_LIFTED: gates.join(",") }))
}

fn marker(annotations: serde_json::Value) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [],
        "annotations": annotations,
    }))
    .unwrap_or_default()
}

/// An earlier release's hold on an index, read back from its marker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct EarlierHold {
    pub gates: BTreeSet<String>,
    pub reasons: String,
}

impl EarlierHold {
    /// This release's hold: the gates it ran, and why they held the variant.
    pub(crate) fn new(asked: &[&str], reasons: &[String]) -> EarlierHold {
        EarlierHold {
            gates: asked.iter().map(|g| g.to_string()).collect(),
            reasons: reasons.join("; "),
        }
    }

    /// This hold and an earlier one of the same digest: lifting it takes the gates of both.
    pub(crate) fn and(mut self, earlier: Option<EarlierHold>) -> EarlierHold {
        if let Some(e) = earlier {
            self.gates.extend(e.gates);
            if !e.reasons.is_empty() && !self.reasons.contains(&e.reasons) {
                self.reasons = format!("{}; {}", e.reasons, self.reasons);
            }
        }
        self
    }

    /// The marker's hold, if `m` is the marker of `digest` and its hold was not lifted.
    pub(crate) fn parse(m: &Manifest, digest: &str) -> Option<EarlierHold> {
        let a = m.parsed().ok()?.annotations;
        let ours = a.get(ANN_HELD).map(String::as_str) == Some(digest);
        (ours && !a.contains_key(ANN_HELD_LIFTED)).then(|| EarlierHold {
            gates: a
                .get(ANN_HELD_GATES)
                .map(|g| {
                    g.split(',')
                        .filter(|x| !x.is_empty())
                        .map(String::from)
                        .collect()
                })
                .unwrap_or_default(),
            reasons: a.get(ANN_HELD_REASONS).cloned().unwrap_or_default(),
        })
    }

    /// Whether a release that ran `asked` (and whose gates let the variant through) has checked
    /// again everything this hold came from.
    pub(crate) fn lifted_by(&self, asked: &[&str]) -> bool {
        !self.gates.is_empty() && self.gates.iter().all(|g| asked.contains(&g.as_str()))
    }

    /// Why the variant stays held (`what`: `this index`, or `its <platform> image`), and how
    /// to lift it.
    pub(crate) fn reason(&self, what: &str) -> String {
        let flags: Vec<String> = self.gates.iter().map(|g| format!("--{g}")).collect();
        format!(
            "an earlier release's gates held {what} ({}); release it with {} to check it again",
            self.reasons,
            flags.join(" ")
        )
    }
}

/// The earlier hold of `digest`, if its marker holds it.
async fn hold_of(registry: &Registry, digest: &str) -> Result<Option<EarlierHold>> {
    Ok(registry
        .manifest(&held_tag(digest))
        .await?
        .and_then(|m| EarlierHold::parse(&m, digest)))
}

/// Records this release's holds in the registry (before any tag moves), on the index and on
/// each platform image of every held variant, so no later release can promote them, under
/// this index or another, without passing the same gates and those of any earlier hold.
pub(crate) async fn record_holds(
    engine: &Engine,
    registry: &Registry,
    held: &[Held],
    keys: &HoldKeys,
    asked: &[&str],
) -> Result<()> {
    for h in held {
        for (_, digest) in keys.get(&h.variant).into_iter().flatten() {
            let tag = held_tag(digest);
            engine.reporter().info(&format!(
                "recording the hold of {} in {}:{tag}",
                h.variant,
                registry.name()
            ));
            let hold = EarlierHold::new(asked, &h.reasons).and(hold_of(registry, digest).await?);
            registry
                .put_manifest(&tag, &held_marker(digest, &hold), OCI_INDEX)
                .await?;
        }
    }
    Ok(())
}

/// Holds, in `promotion`, each moving variant whose index or platform images an earlier
/// release held and whose gates this release did not run again, then each child of a held
/// variant (a child tag never moves past its parent's). `parents`: each variant's parent, in
/// graph order. Returns the digests whose holds this release lifts (its gates passed and the
/// variant moves), to mark with [`record_lifts`] once the tags moved.
pub(crate) async fn apply_earlier_holds(
    registry: &Registry,
    promotion: &mut Promotion,
    parents: &[(String, Option<String>)],
    keys: &HoldKeys,
    asked: &[&str],
) -> Result<Vec<String>> {
    let moving: Vec<(&String, &String, &ImageDigest)> = promotion
        .moves
        .iter()
        .flat_map(|v| {
            keys.get(v)
                .into_iter()
                .flatten()
                .map(move |(w, d)| (v, w, d))
        })
        .collect();
    let holds =
        futures_util::future::join_all(moving.iter().map(|(_, _, d)| hold_of(registry, d))).await;
    let mut held: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut lifted: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for ((v, what, d), hold) in moving.iter().zip(holds) {
        let Some(hold) = hold? else { continue };
        if !hold.lifted_by(asked) {
            let what = match what.as_str() {
                "index" => "this index".to_string(),
                p => format!("its {p} image"),
            };
            let reasons = held.entry(v.to_string()).or_default();
            if reasons.is_empty() {
                reasons.push(hold.reason(&what));
            }
        } else {
            lifted.entry(v.to_string()).or_default().push(d.to_string());
        }
    }
    for (v, parent) in parents {
        if !promotion.may_move(v) {
            continue;
        }
        let parent_held = parent.as_ref().is_some_and(|p| {
            held.contains_key(p) || promotion.held.iter().any(|h| &h.variant == p)
        });
        if parent_held && !held.contains_key(v) {
            held.insert(
                v.clone(),
                vec![format!(
                    "its parent {} is held",
                    parent.as_deref().unwrap_or("")
                )],
            );
        }
    }
    promotion.moves.retain(|v| !held.contains_key(v));
    for (v, _) in parents {
        if let Some(reasons) = held.remove(v) {
            promotion.held.push(Held {
                variant: v.clone(),
                reasons,
            });
        }
    }
    Ok(lifted
        .into_iter()
        .filter(|(v, _)| promotion.may_move(v))
        .flat_map(|(_, d)| d)
        .collect())
}

/// Marks the holds this release lifted (see [`apply_earlier_holds`]), after its tags moved: a
/// later rerun without gates then does not hold again what is already promoted.
pub(crate) async fn record_lifts(
    engine: &Engine,
    registry: &Registry,
    digests: &[String],
    asked: &[&str],
) -> Result<()> {
    for d in digests {
        let tag = held_tag(d);
        engine.reporter().info(&format!(
            "the gates passed: lifting the hold in {}:{tag}",
            registry.name()
        ));
        registry
            .put_manifest(&tag, &lifted_marker(d, asked), OCI_INDEX)
            .await?;
    }
    Ok(())
}

/// What a public tag points at now: its digest and the platforms it lists (`os/arch`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Current {
    pub digest: ImageDigest,
    pub platforms: BTreeSet<String>,
}

/// One variant's tags as the release means to set them: the index they go to (`None`: not known
/// yet, a platform is still to be built) and the platforms it lists.
#[derive(Debug, Clone)]
pub(crate) struct Planned {
    pub variant: String,
    pub digest: Option<ImageDigest>,
    pub platforms: BTreeSet<String>,
}

/// One tag to move.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Move {
    pub variant: String,
    pub tag: String,
    pub digest: ImageDigest,
    /// What the tag held when it was read (`None`: no such tag): the compare of the swap.
    pub from: Option<ImageDigest>,
    /// A `<variant>-<version>`, which is read back after its PUT.
    pub versioned: bool,
}

/// What every tag of a plan held when [`check`] read it, by tag (`None`: no such tag).
pub(crate) type Surveyed = BTreeMap<String, Option<ImageDigest>>;

/// Why a tag may not move without `--force-tags`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Conflict {
    /// Its index lists these platforms, which the release does not have.
    Narrows(Vec<String>),
    /// It is a released `<variant>-<version>` and points at this other index.
    Repoints(ImageDigest),
}

/// Why a tag (`versioned`: a `<variant>-<version>`) may not move from `current` to the plan
/// without `--force-tags`, if it may not.
pub(crate) fn conflict(
    versioned: bool,
    current: Option<&Current>,
    plan: &Planned,
) -> Option<Conflict> {
    let cur = current?;
    if plan.digest.as_deref() == Some(cur.digest.as_str()) {
        return None;
    }
    let missing: Vec<String> = cur
        .platforms
        .iter()
        .filter(|p| !plan.platforms.contains(*p))
        .cloned()
        .collect();
    if !missing.is_empty() {
        return Some(Conflict::Narrows(missing));
    }
    versioned.then(|| Conflict::Repoints(cur.digest.clone()))
}

/// The refusal, one line: the narrowed tags together, each re-pointed version on its own.
fn refusal(repo: &str, refused: &[(String, Conflict)]) -> UserError {
    let mut narrowed: BTreeMap<&[String], Vec<&str>> = BTreeMap::new();
    let mut parts = Vec::new();
    for (tag, c) in refused {
        match c {
            Conflict::Narrows(missing) => narrowed.entry(missing).or_default().push(tag),
            Conflict::Repoints(d) => parts.push(format!("{repo}:{tag} is already released as {d}")),
        }
    }
    for (missing, tags) in narrowed {
        parts.insert(
            0,
            format!(
                "{repo}:{{{}}} list {}, which this release does not build",
                tags.join(","),
                missing.join(", ")
            ),
        );
    }
    UserError::registry(format!(
        "no public tag moved: {}; release every platform the tags list and leave released versions alone, or pass --force-tags",
        parts.join("; ")
    ))
}

/// Reads what every tag of `plans` points at (all at once) and refuses, before anything moves,
/// tags that would narrow their platforms or re-point a released version, unless `force`, and
/// tags that changed since `surveyed` (what the release read before it built). Returns the
/// tags to move, versioned ones first, parents before children, and what each tag held.
pub(crate) async fn check(
    registry: &Registry,
    plans: &[Planned],
    version: Option<&str>,
    force: bool,
    surveyed: Option<&Surveyed>,
) -> Result<(Vec<Move>, Surveyed)> {
    let tags: Vec<(usize, String, bool)> = plans
        .iter()
        .enumerate()
        .flat_map(|(i, p)| {
            public_tags(&p.variant, version)
                .into_iter()
                .enumerate()
                .map(move |(k, t)| (i, t, k > 0))
        })
        .collect();
    let reads = tags.iter().map(|(_, t, _)| current(registry, t));
    let currents = futures_util::future::join_all(reads).await;
    let mut refused = Vec::new();
    let mut versioned = Vec::new();
    let mut floating = Vec::new();
    let mut read = Surveyed::new();
    let mut changed = Vec::new();
    for ((i, tag, is_versioned), cur) in tags.iter().zip(currents) {
        let cur = cur?;
        let held = cur.as_ref().map(|c| c.digest.clone());
        read.insert(tag.clone(), held.clone());
        if let Some(before) = surveyed.and_then(|s| s.get(tag)) {
            if *before != held {
                changed.push((tag.clone(), before.clone(), held.clone()));
                continue;
            }
        }
        let plan = &plans[*i];
        if let Some(why) = conflict(*is_versioned, cur.as_ref(), plan) {
            if !force {
                refused.push((tag.clone(), why));
                continue;
            }
        }
        let (Some(digest), false) = (
            plan.digest.clone(),
            cur.as_ref().map(|c| &c.digest) == plan.digest.as_ref(),
        ) else {
            continue;
        };
        let m = Move {
            variant: plan.variant.clone(),
            tag: tag.clone(),
            digest,
            from: held,
            versioned: *is_versioned,
        };
        if *is_versioned {
            versioned.push(m);
        } else {
            floating.push(m);
        }
    }
    if !changed.is_empty() {
        let tags: Vec<String> = changed
            .iter()
            .map(|(t, before, now)| {
                format!(
                    "{t} ({} -> {})",
                    before.as_deref().unwrap_or("nothing"),
                    now.as_deref().unwrap_or("nothing")
                )
            })
            .collect();
        return Err(anyhow::anyhow!(
            "no public tag moved: another release moved tags of {} while this one ran, and they were not overwritten: {}; run the release again to see what is current",
            registry.name(),
            tags.join(", ")
        ));
    }
    if !refused.is_empty() {
        return Err(refusal(&registry.name(), &refused).into());
    }
    versioned.extend(floating);
    Ok((versioned, read))
}

/// A tag another release moved while this one ran: nothing is overwritten; `moved` are the tags
/// this release had moved already.
fn moved_meanwhile(
    registry: &Registry,
    tag: &str,
    before: Option<&str>,
    now: Option<&str>,
    moved: &[String],
) -> anyhow::Error {
    let so_far = match moved {
        [] => "no public tag moved".to_string(),
        m => format!("this release had moved {} and no more", m.join(", ")),
    };
    anyhow::anyhow!(
        "{} changed while this release ran (it held {}, now {}): another release moved it, and it was not overwritten; {so_far}; run the release again to see what is current",
        registry.shown(tag),
        before.unwrap_or("nothing"),
        now.unwrap_or("nothing")
    )
}

/// What `tag` points at, with the platforms it lists (a single image: its config's).
async fn current(registry: &Registry, tag: &str) -> Result<Option<Current>> {
    let Some(m) = registry.manifest(tag).await? else {
        return Ok(None);
    };
    let platforms = if m.is_index() {
        m.parsed()?
            .manifests
            .iter()
            .filter_map(|d| d.platform.as_ref())
            // attestation manifests in an index say `unknown/unknown`: they are not images
            .filter(|p| p.os != "unknown")
            .map(|p| format!("{}/{}", p.os, p.architecture))
            .collect()
    } else {
        let cfg = registry.config(&m).await?;
        [format!("linux/{}", cfg.architecture)].into()
    };
    Ok(Some(Current {
        digest: m.digest,
        platforms,
    }))
}

/// Moves the tags, in the order [`check`] gave them, each by compare-and-swap: a tag that no
/// longer holds what [`check`] read is not overwritten (the run stops, naming it), and a
/// versioned tag must hold this release's index when read back.
pub(crate) async fn apply(
    engine: &Engine,
    registry: &Registry,
    moves: &[Move],
    indexes: &BTreeMap<String, (Vec<u8>, &'static str)>,
) -> Result<()> {
    let mut moved: Vec<String> = Vec::new();
    for m in moves {
        let Some((bytes, media_type)) = indexes.get(&m.variant) else {
            continue;
        };
        let now = registry.digest_of(&m.tag).await?;
        if now != m.from {
            return Err(moved_meanwhile(
                registry,
                &m.tag,
                m.from.as_deref(),
                now.as_deref(),
                &moved,
            ));
        }
        engine.reporter().info(&format!(
            "tagging {} -> {}",
            registry.shown(&m.tag),
            m.digest
        ));
        registry.put_manifest(&m.tag, bytes, media_type).await?;
        if m.versioned {
            let after = registry.digest_of(&m.tag).await?;
            if after.as_deref() != Some(m.digest.as_str()) {
                return Err(anyhow::anyhow!(
                    "{} holds {} right after this release wrote {}: another release moved it at the same time; this release moved {} before it; check which release it is and run again",
                    registry.shown(&m.tag),
                    after.as_deref().unwrap_or("nothing"),
                    m.digest,
                    match moved.is_empty() {
                        true => "no tag".to_string(),
                        false => moved.join(", "),
                    }
                ));
            }
        }
        moved.push(m.tag.clone());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(p: &[&str]) -> BTreeSet<String> {
        p.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn narrowing_and_re_pointing_are_conflicts_moving_to_the_same_index_is_not() {
        let both = Current {
            digest: "sha256:4444444444444444444444444444444444444444444444444444444444444444"
                .into(),
            platforms: set(&["linux/amd64", "linux/arm64"]),
        };
        let amd = Planned {
            variant: "top".into(),
            digest: Some(
                "sha256:5555555555555555555555555555555555555555555555555555555555555555".into(),
            ),
            platforms: set(&["linux/amd64"]),
        };
        let narrows = Conflict::Narrows(vec!["linux/arm64".into()]);
        assert_eq!(conflict(false, Some(&both), &amd), Some(narrows.clone()));
        let full = Planned {
            platforms: set(&["linux/amd64", "linux/arm64"]),
            ..amd.clone()
        };
        assert_eq!(conflict(false, Some(&both), &full), None);
        let repoints = Conflict::Repoints(
            "sha256:4444444444444444444444444444444444444444444444444444444444444444".into(),
        );
        assert_eq!(conflict(true, Some(&both), &full), Some(repoints.clone()));
        // a rebuild whose digest is not known yet changes a released version too
        let unknown = Planned {
            digest: None,
            ..full.clone()
        };
        assert!(conflict(true, Some(&both), &unknown).is_some());
        let same = Planned {
            digest: Some(
                "sha256:4444444444444444444444444444444444444444444444444444444444444444".into(),
            ),
            ..amd
        };
        assert_eq!(conflict(true, Some(&both), &same), None);
        assert_eq!(conflict(true, None, &full), None);
        let refused = [
            ("base".to_string(), narrows.clone()),
            ("base-v1".to_string(), narrows),
            ("top-v1".to_string(), repoints),
        ];
        assert_eq!(
            refusal("r/x", &refused).message(),
            "no public tag moved: r/x:{base,base-v1} list linux/arm64, which this release does not build; \
             r/x:top-v1 is already released as sha256:4444444444444444444444444444444444444444444444444444444444444444; release every platform the tags list and \
             leave released versions alone, or pass --force-tags"
        );
    }

    #[test]
    fn a_hold_is_lifted_only_by_the_same_gates() {
        let d = format!("sha256:{}", "a".repeat(64));
        assert_eq!(held_tag(&d), format!("held-{}", "a".repeat(64)));
        let manifest = |bytes: Vec<u8>| Manifest {
            digest: super::super::registry::digest_of_bytes(&bytes),
            bytes,
            media_type: OCI_INDEX.into(),
        };
        let first = EarlierHold::new(&["scan", "sign"], &["scan found 1 HIGH".into()]);
        let m = manifest(held_marker(&d, &first));
        assert!(m.parsed().unwrap().manifests.is_empty(), "nothing to pull");
        let hold = EarlierHold::parse(&m, &d).unwrap();
        assert_eq!(hold, first);
        assert!(EarlierHold::parse(
            &m,
            "sha256:6666666666666666666666666666666666666666666666666666666666666666"
        )
        .is_none());
        assert!(!hold.lifted_by(&[]));
        assert!(!hold.lifted_by(&["scan"]));
        assert!(hold.lifted_by(&["scan", "sbom", "sign"]));
        assert_eq!(
            hold.reason("this index"),
            "an earlier release's gates held this index (scan found 1 HIGH); release it with --scan --sign to check it again"
        );
        // a narrower second hold of the same digest does not loosen the first
        let both = EarlierHold::new(&["sign"], &["its parent base is held".into()]).and(Some(hold));
        assert!(!both.lifted_by(&["sign"]));
        assert!(both.lifted_by(&["scan", "sign"]));
        assert_eq!(both.reasons, "scan found 1 HIGH; its parent base is held");
        // a lifted marker holds nothing
        assert!(EarlierHold::parse(&manifest(lifted_marker(&d, &["scan", "sign"])), &d).is_none());
        assert_eq!(public_tags("top", Some("v1")), ["top", "top-v1"]);
    }
}
