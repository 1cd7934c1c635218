//! Phases 4 and 5: each variant's index, pushed by digest, and everything read back from the
//! registry (platforms, base labels, layers, provenance).

use super::metadata::{Attestation, Metadata, PlatformRecord};
use super::registry::{self, Registry};
use crate::digest::ImageDigest;
use crate::engine::Engine;
use crate::fingerprint::{self};
use crate::platform::Platform;
use anyhow::{anyhow, Result};
use std::collections::BTreeMap;

use super::*;

/// The index of one variant: its platforms in a fixed order, so the same per-platform digests
/// always give the same index bytes and digest, from one machine or from a merge.
pub(crate) fn index_bytes(
    platforms: &BTreeMap<Platform, PlatformRecord>,
) -> (Vec<u8>, &'static str) {
    let docker = platforms
        .values()
        .all(|r| r.media_type == registry::DOCKER_MANIFEST && r.attestation.is_none());
    let media_type = if docker {
        registry::DOCKER_LIST
    } else {
        registry::OCI_INDEX
    };
    let images = platforms.iter().map(|(p, r)| {
        serde_json::json!({
            "mediaType": r.media_type,
            "digest": r.digest,
            "size": r.size,
            "platform": {"architecture": p.arch(), "os": "linux"},
            // what the image was built from, so a no-op release is one read per variant
            "annotations": {fingerprint::LABEL: r.fingerprint},
        })
    });
    // each image's attestation after the images, the way BuildKit lists them: platform
    // `unknown/unknown`, so no client takes one for an image, and the image's digest
    let attestations = platforms.values().filter_map(|r| {
        let a = r.attestation.as_ref()?;
        Some(serde_json::json!({
            "mediaType": a.media_type,
            "digest": a.digest,
            "size": a.size,
            "platform": {"architecture": "unknown", "os": "unknown"},
            "annotations": {
                registry::ATTESTATION_FOR: r.digest,
                registry::ATTESTATION_TYPE: registry::ATTESTATION_MANIFEST,
            },
        }))
    });
    let manifests: Vec<serde_json::Value> = images.chain(attestations).collect();
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": media_type,
        "manifests": manifests,
    });
    (serde_json::to_vec(&index).unwrap_or_default(), media_type)
}

/// Phase 4: each variant's index, pushed by its own digest (no tag yet) unless the registry
/// has it already.
pub(super) async fn assemble(
    engine: &Engine,
    registry: &Registry,
    meta: &mut Metadata,
) -> Result<BTreeMap<String, (Vec<u8>, &'static str)>> {
    let mut out = BTreeMap::new();
    for v in &mut meta.variants {
        let (bytes, media_type) = index_bytes(&v.platforms);
        let digest = registry::digest_of_bytes(&bytes);
        if registry.manifest(&digest).await?.is_none() {
            engine.reporter().info(&format!(
                "pushing the {} index {}@{digest}",
                v.name,
                registry.name()
            ));
            registry.put_manifest(&digest, &bytes, media_type).await?;
        }
        v.index_digest = Some(digest);
        out.insert(v.name.clone(), (bytes, media_type));
    }
    let by_name: BTreeMap<String, ImageDigest> = meta
        .variants
        .iter()
        .filter_map(|v| Some((v.name.clone(), v.index_digest.clone()?)))
        .collect();
    for v in &mut meta.variants {
        v.parent_ref = v
            .parent
            .as_ref()
            .and_then(|p| by_name.get(p))
            .map(|d| format!("{}@{d}", registry.name()));
    }
    Ok(out)
}

/// Phase 5: reads every index, manifest and config back from the registry: every platform is
/// in each index, a child's base labels name its parent's digest for that platform, and its
/// layers begin with its parent's layers (all of them, possibly with nothing after).
pub(super) async fn verify(registry: &Registry, meta: &Metadata) -> Result<()> {
    let mut diff_ids: BTreeMap<(String, Platform), Vec<String>> = BTreeMap::new();
    for v in &meta.variants {
        let digest = v.index_digest.as_deref().unwrap_or_default();
        let index = registry
            .manifest(digest)
            .await?
            .ok_or_else(|| anyhow!("index {digest} of {} is missing from the registry", v.name))?;
        let parsed = index.parsed()?;
        let listed: BTreeMap<String, ImageDigest> = parsed
            .manifests
            .iter()
            .filter(|m| m.platform.as_ref().is_some_and(|p| p.os == "linux"))
            .filter_map(|m| Some((m.platform.as_ref()?.architecture.clone(), m.digest.clone())))
            .collect();
        for (p, r) in &v.platforms {
            if listed.get(p.arch()) != Some(&r.digest) {
                return Err(anyhow!(
                    "verification failed: the {} index does not list {p} as {}",
                    v.name,
                    r.digest
                ));
            }
            if let Some(a) = &r.attestation {
                verify_provenance(registry, &parsed, &v.name, *p, &r.digest, a).await?;
            }
            let m = registry.manifest(&r.digest).await?.ok_or_else(|| {
                anyhow!("{} {p} {} is missing from the registry", v.name, r.digest)
            })?;
            let cfg = registry.config(&m).await?;
            if cfg.architecture != p.arch() {
                return Err(anyhow!(
                    "verification failed: {} {p} is a {} image",
                    v.name,
                    cfg.architecture
                ));
            }
            if let Some(parent) = &v.parent {
                let want = meta
                    .variant(parent)
                    .and_then(|pv| pv.platforms.get(p))
                    .map(|pr| pr.digest.to_string())
                    .unwrap_or_default();
                if cfg.labels.get(LABEL_BASE_DIGEST) != Some(&want) {
                    return Err(anyhow!(
                        "verification failed: {} {p} has {LABEL_BASE_DIGEST}={:?}, its parent {parent} is {want}",
                        v.name,
                        cfg.labels.get(LABEL_BASE_DIGEST)
                    ));
                }
                let pl = diff_ids.get(&(parent.clone(), *p)).ok_or_else(|| {
                    anyhow!(
                        "verification failed: {} is listed before its parent {parent}",
                        v.name
                    )
                })?;
                // a child may add no layer (a LABEL-only variant): its layers then equal its
                // parent's, which still begin with them
                if !cfg.diff_ids.starts_with(pl) {
                    return Err(anyhow!(
                        "verification failed: the layers of {} {p} do not begin with those of {parent}",
                        v.name
                    ));
                }
            }
            diff_ids.insert((v.name.clone(), *p), cfg.diff_ids);
        }
    }
    Ok(())
}

/// An image's provenance, read back: the index lists the attestation for the image's digest,
/// and the attestation holds an in-toto statement of SLSA provenance whose subject is the image.
pub(super) async fn verify_provenance(
    registry: &Registry,
    index: &registry::Parsed,
    variant: &str,
    p: Platform,
    image: &str,
    att: &Attestation,
) -> Result<()> {
    match provenance_of(registry, index, image, Some(&att.digest)).await? {
        Ok(()) => Ok(()),
        Err(why) => Err(anyhow!(
            "verification failed: the provenance of {variant} {p}: {why}"
        )),
    }
}

/// Whether `index` lists a provenance attestation about `image` (the one named `expected`,
/// when given) that holds an SLSA provenance statement about it: `Ok(Err(why))` when it does
/// not, `Err` when the registry could not be read. `hjk images verify` asks the same.
pub(crate) async fn provenance_of(
    registry: &Registry,
    index: &registry::Parsed,
    image: &str,
    expected: Option<&str>,
) -> Result<std::result::Result<(), String>> {
    let att = match index.attestation_for(image) {
        Some(d) if expected.is_none_or(|e| d.digest == e) => d.digest.clone(),
        _ => {
            return Ok(Err(format!(
                "the index does not list {} for {image}",
                expected.unwrap_or("a provenance attestation")
            )))
        }
    };
    let Some(m) = registry.manifest(&att).await? else {
        return Ok(Err(format!("{att} is missing from the registry")));
    };
    let Some(layer) = m.parsed()?.layers.into_iter().find(|l| {
        l.annotations
            .get("in-toto.io/predicate-type")
            .is_some_and(|t| t.starts_with("https://slsa.dev/provenance/"))
    }) else {
        return Ok(Err("it holds no SLSA provenance statement".into()));
    };
    let statement: serde_json::Value =
        match serde_json::from_slice(&registry.blob(&layer.digest, 16 << 20).await?) {
            Ok(v) => v,
            Err(e) => return Ok(Err(format!("its statement is not JSON: {e}"))),
        };
    // BuildKit leaves the subject empty in an attestation manifest (the index entry's
    // annotation says which image it is about); one that names subjects must name this image
    let hex = image.strip_prefix("sha256:").unwrap_or(image);
    let subjects = statement["subject"].as_array().cloned().unwrap_or_default();
    if !subjects.is_empty() && !subjects.iter().any(|x| x["digest"]["sha256"] == hex) {
        return Ok(Err(format!(
            "its statement is about {subjects:?}, not {image}"
        )));
    }
    let kind = statement["predicateType"].as_str().unwrap_or_default();
    if !kind.starts_with("https://slsa.dev/provenance/") || !statement["predicate"].is_object() {
        return Ok(Err(format!(
            "its statement is {kind:?}, not SLSA provenance"
        )));
    }
    Ok(Ok(()))
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    pub(crate) fn rec(digest: &str, media_type: &str) -> PlatformRecord {
        PlatformRecord {
            digest: digest.into(),
            media_type: media_type.into(),
            size: 10,
            stage_tag: "t".into(),
            fingerprint: "f".into(),
            base: None,
            result: super::super::metadata::PlatformResult::Built,
            attestation: None,
        }
    }

    #[test]
    fn attestations_follow_the_images_as_buildkit_lists_them() {
        let mut platforms = BTreeMap::new();
        for (p, d) in [
            (
                Platform::LinuxArm64,
                "sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb",
            ),
            (
                Platform::LinuxAmd64,
                "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
            ),
        ] {
            let mut r = rec(d, registry::OCI_MANIFEST);
            r.attestation = Some(Attestation {
                digest: match d.as_bytes()[7] {
                    b'a' => {
                        "sha256:7777777777777777777777777777777777777777777777777777777777777777"
                    }
                    _ => "sha256:8888888888888888888888888888888888888888888888888888888888888888",
                }
                .into(),
                media_type: registry::OCI_MANIFEST.into(),
                size: 5,
            });
            platforms.insert(p, r);
        }
        let (bytes, mt) = index_bytes(&platforms);
        assert_eq!(mt, registry::OCI_INDEX);
        let index: registry::Parsed = serde_json::from_slice(&bytes).unwrap();
        let listed: Vec<(&str, &str)> = index
            .manifests
            .iter()
            .map(|m| {
                let p = m.platform.as_ref().unwrap();
                (m.digest.as_str(), p.architecture.as_str())
            })
            .collect();
        assert_eq!(
            listed,
            [
                (
                    "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
                    "amd64"
                ),
                (
                    "sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb",
                    "arm64"
                ),
                (
                    "sha256:7777777777777777777777777777777777777777777777777777777777777777",
                    "unknown"
                ),
                (
                    "sha256:8888888888888888888888888888888888888888888888888888888888888888",
                    "unknown"
                )
            ]
        );
        assert_eq!(
            index
                .attestation_for(
                    "sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
                )
                .unwrap()
                .digest,
            "sha256:8888888888888888888888888888888888888888888888888888888888888888"
        );
        // an attestation is never taken for a platform
        assert_eq!(
            index.entry_for(Platform::LinuxArm64).unwrap().digest,
            "sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
        );
    }

    #[test]
    fn the_index_is_the_same_bytes_whatever_the_order_platforms_arrived_in() {
        let mut a = BTreeMap::new();
        a.insert(
            Platform::LinuxArm64,
            rec(
                "sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb",
                registry::DOCKER_MANIFEST,
            ),
        );
        a.insert(
            Platform::LinuxAmd64,
            rec(
                "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
                registry::DOCKER_MANIFEST,
            ),
        );
        let (bytes, mt) = index_bytes(&a);
        assert_eq!(mt, registry::DOCKER_LIST);
        let text = String::from_utf8(bytes).unwrap();
        assert!(
            text.find("sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa")
                .unwrap()
                < text
                    .find("sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb")
                    .unwrap(),
            "{text}"
        );
        a.insert(
            Platform::LinuxArm64,
            rec(
                "sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb",
                registry::OCI_MANIFEST,
            ),
        );
        assert_eq!(index_bytes(&a).1, registry::OCI_INDEX);
    }
}
