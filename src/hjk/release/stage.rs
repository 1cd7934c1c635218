//! Phase 3: build what the survey did not find and push it under its staging tag, one lane per
//! platform, the lanes concurrently.

use super::metadata::Attestation;
use super::registry::{self, Manifest, Registry};
use crate::backend::Stage;
use crate::build::BuildRequest;
use crate::digest::ImageDigest;
use crate::engine::Engine;
use crate::fingerprint::{self};
use crate::hjk::plan::Step;
use crate::image_ref::ImageRef;
use crate::platform::Platform;
use anyhow::{anyhow, Result};
use camino::{Utf8Path, Utf8PathBuf};
use std::collections::BTreeMap;
use std::time::Instant;

use super::*;

/// The local images a release built, by staging tag (see [`super::release_command`]).
pub(super) type Built = std::sync::Mutex<Vec<ImageRef>>;

/// Phase 3: builds and pushes what the survey did not find, parents first on each platform,
/// the platforms concurrently (arm64 under emulation overlaps amd64).
pub(super) async fn stage(
    engine: &Engine,
    registry: &Registry,
    spec: &ReleaseSettings,
    steps: &[Step],
    applied: &Applied,
    slots: &mut BTreeMap<(usize, Platform), Slot>,
    built: &Built,
) -> Result<Vec<Row>> {
    let tmp = tempfile::Builder::new().prefix("hjk-release-").tempdir()?;
    let tmp_path = Utf8PathBuf::from_path_buf(tmp.path().to_owned())
        .map_err(|p| anyhow!("non-UTF-8 temp dir {}", p.display()))?;
    let lanes = spec.images.platforms.iter().map(|p| {
        let mine: BTreeMap<usize, Slot> = steps
            .iter()
            .enumerate()
            .map(|(i, _)| (i, slots[&(i, *p)].clone()))
            .collect();
        lane(
            engine, registry, spec, steps, applied, *p, mine, &tmp_path, built,
        )
    });
    let results = futures_util::future::join_all(lanes).await;
    let mut rows = Vec::new();
    let mut first_err = None;
    for (p, r) in spec.images.platforms.iter().zip(results) {
        match r {
            Ok(mine) => {
                for (i, s) in mine {
                    rows.push(Row {
                        variant: steps[i].name.clone(),
                        platform: p.to_string(),
                        result: s.origin(),
                        seconds: s.seconds,
                        digest: s.digest.clone(),
                    });
                    slots.insert((i, *p), s);
                }
            }
            Err(e) => {
                // an interruption wins over whatever else failed
                if first_err.is_none() || crate::error::interruption(&e).is_some() {
                    first_err = Some(e);
                }
            }
        }
    }
    if let Some(e) = first_err {
        return Err(e);
    }
    rows.sort_by_key(|r| {
        (
            steps.iter().position(|u| u.name == r.variant),
            r.platform.clone(),
        )
    });
    Ok(rows)
}

/// One platform's chain, parents first.
#[allow(clippy::too_many_arguments)]
pub(super) async fn lane(
    engine: &Engine,
    registry: &Registry,
    spec: &ReleaseSettings,
    steps: &[Step],
    applied: &Applied,
    p: Platform,
    mut mine: BTreeMap<usize, Slot>,
    tmp: &Utf8Path,
    built: &Built,
) -> Result<BTreeMap<usize, Slot>> {
    let plain_http = registry::plain_http(registry.host());
    for (i, u) in steps.iter().enumerate() {
        if mine[&i].reused {
            continue;
        }
        // the parent's digest on this platform is known now (reused or just pushed)
        let base = match u.parent {
            Some(pi) => Some(match &mine[&pi].digest {
                Some(d) => crate::digest::by_digest(&registry.name(), d),
                None => format!("{}@<digest of {} {p}>", registry.name(), steps[pi].name),
            }),
            None => mine[&i].base.clone(),
        };
        let fp = if u.parent.is_some() {
            fingerprint_of(
                u,
                p,
                spec.images.version.as_deref(),
                base.as_deref(),
                None,
                applied,
            )
        } else {
            mine[&i].fingerprint.clone()
        };
        let stage_tag = stage_tag(&u.name, p, &fp);
        let tag = spec.images.registry.with_tag(&stage_tag)?;
        built
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(tag.clone());
        let mut req = BuildRequest::new(u.context.clone(), u.dockerfile.clone(), tag.clone());
        req.platforms = vec![p];
        req.declared_args = Some(u.declared.clone());
        req.no_cache = spec.no_cache;
        req.provenance = applied.provenance;
        req.source_date_epoch = applied.epoch;
        req.cache = match &applied.cache_repo {
            Some(c) => Some(c.with_tag(&format!("{}-{}", u.name, p.arch()))?),
            None => None,
        };
        req.labels.insert(fingerprint::LABEL.into(), fp.clone());
        if let Some(v) = &spec.images.version {
            // only where the Dockerfile declares it: the classic builder warns about the rest
            if u.declared.contains("VERSION") {
                req.build_args.insert("VERSION".into(), v.to_string());
            }
            req.labels.insert(LABEL_VERSION.into(), v.to_string());
        }
        if let Some(b) = &base {
            if u.parent.is_some() || spec.images.base_image.is_some() {
                req.build_args.insert("BASE_IMAGE".into(), b.clone());
            }
            req.labels.insert(LABEL_BASE_NAME.into(), b.clone());
            if let Some((_, d)) = b.split_once('@') {
                req.labels.insert(LABEL_BASE_DIGEST.into(), d.to_string());
            }
        }
        let stage = Stage {
            tag,
            digest_file: tmp.join(format!("{}-{}.digest", u.name, p.arch())),
            layout: tmp.join(format!("{}-{}.oci", u.name, p.arch())),
            plain_http,
        };
        engine
            .reporter()
            .info(&format!("building {} ({p}) -> {}", u.name, stage.tag));
        let started = Instant::now();
        let staged = engine.stage(&req, &stage).await?;
        if let (Some(layout), true) = (&staged.layout, engine.dry_run()) {
            engine.note(&format!(
                "push the OCI layout {layout} to {}:{stage_tag}, by the digest the builder wrote to {}",
                registry.name(),
                stage.digest_file
            ));
        }
        let reported = match (&staged.layout, engine.dry_run()) {
            (Some(layout), false) => {
                let top = registry.push_layout(layout, &stage_tag).await?;
                if staged.digest.as_ref().is_some_and(|d| *d != top.digest) {
                    return Err(anyhow!(
                        "the builder reported {} for {} ({p}), but its layout holds {}",
                        staged.digest.map(|d| d.to_string()).unwrap_or_default(),
                        u.name,
                        top.digest
                    ));
                }
                let _ = std::fs::remove_dir_all(layout);
                Some(top.digest)
            }
            _ => staged.digest,
        };
        let seconds = started.elapsed().as_secs_f64();
        let (digest, media_type, size, attested) = if engine.dry_run() {
            (None, String::new(), 0, None)
        } else {
            let (m, att) = pushed(registry, &stage_tag, reported, p).await?;
            if applied.provenance && att.is_none() {
                return Err(anyhow!(
                    "{} ({p}) was built with a provenance attestation, but {}:{stage_tag} lists none",
                    u.name,
                    registry.name()
                ));
            }
            (
                Some(m.digest.clone()),
                m.media_type.clone(),
                m.bytes.len() as i64,
                att.map(attestation),
            )
        };
        mine.insert(
            i,
            Slot {
                fingerprint: fp,
                stage_tag,
                base,
                digest,
                media_type,
                size,
                attestation: attested,
                reused: false,
                seconds,
            },
        );
    }
    Ok(mine)
}

/// The image manifest just pushed for `p`: by the digest the engine reported, else under its
/// staging tag (the platform's entry, if the engine pushed an index).
pub(super) async fn pushed(
    registry: &Registry,
    stage_tag: &str,
    reported: Option<ImageDigest>,
    p: Platform,
) -> Result<(Manifest, Option<registry::Descriptor>)> {
    let key = reported.map_or_else(|| stage_tag.to_string(), |d| d.to_string());
    registry
        .platform_manifest_attested(&key, p)
        .await?
        .ok_or_else(|| {
            anyhow!(
                "{}:{key} is not in the registry right after pushing it (or holds no {p} image)",
                registry.name()
            )
        })
}

pub(super) fn attestation(d: registry::Descriptor) -> Attestation {
    Attestation {
        digest: d.digest,
        media_type: d.media_type,
        size: d.size,
    }
}
