//! `hjk images merge`: the indexes and tags of a one-machine release from the metadata files of
//! `--push-by-digest` runs.

use super::auth::{self};
use super::gates::{self, Gates};
use super::metadata::{Metadata, VariantRecord, SCHEMA};
use super::promote::public_tags;
use super::registry::{self, Registry};
use crate::digest::ImageDigest;
use crate::engine::Engine;
use crate::error::UserError;
use crate::image_ref::ImageRef;
use crate::platform::Platform;
use anyhow::Result;
use camino::{Utf8Path, Utf8PathBuf};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use super::check::check_gates_dir;
use super::*;
use crate::hjk::settings::MergeSettings;

/// `hjk images merge A.json B.json`: the indexes and tags of a one-machine release, from the
/// per-platform digests of `--push-by-digest` runs.
pub(crate) async fn merge_command(
    engine: &mut Engine,
    spec: &MergeSettings,
    vars: &BTreeMap<String, String>,
) -> Result<u8> {
    let started = Instant::now();
    sweep_credentials(engine);
    let parts: Vec<Metadata> = spec
        .files
        .iter()
        .map(|f| Metadata::read(f))
        .collect::<Result<_, _>>()?;
    let meta = combine(&parts, spec.version.as_deref(), &spec.files)?;
    if let Some(f) = &spec.publish.metadata_file {
        let inputs: Vec<(&Utf8Path, &str)> = spec
            .files
            .iter()
            .map(|f| (f.as_path(), "a metadata file it merges"))
            .collect();
        crate::output_file::check("--metadata-file", f, &inputs, &[])?;
    }
    check_gates_dir(&spec.publish.gates)?;
    let repo = crate::hjk::config::parse_registry(&meta.registry)?;
    let mut gates = Gates::check(
        spec.publish.gates.clone(),
        registry::plain_http(repo.registry()),
        vars,
    )?;
    let creds = auth::resolve(&spec.publish.auth, vars, engine, &repo).await?;
    if let Some(g) = &mut gates {
        g.prepare(engine).await?;
    }
    let registry = Registry::new(
        &repo,
        creds.clone(),
        spec.publish.registry_timeout,
        engine.shared_reporter(),
    )?;
    registry.reachable().await?;
    check_staged(&registry, &meta).await?;
    let publishing = Publishing {
        gates: gates.as_ref(),
        dirs: gates::dirs_if_present(&spec.images_dir),
        creds: creds.as_ref(),
        force_tags: spec.publish.force_tags,
        surveyed: None,
    };
    let rows: Vec<Row> = meta
        .variants
        .iter()
        .flat_map(|v| {
            v.platforms.iter().map(|(p, r)| Row {
                variant: v.name.clone(),
                platform: p.to_string(),
                result: Origin::Merged,
                seconds: 0.0,
                digest: Some(r.digest.clone()),
            })
        })
        .collect();
    let file = spec.publish.metadata_file.as_deref();
    conclude(engine, &registry, &publishing, meta, &rows, file, started).await
}

/// Every per-platform image (and attestation) the merged files name is in the registry, read
/// all at once before anything is pushed: an index naming a missing one is refused by the
/// registry (a raw 400) after the indexes before it went up.
pub(super) async fn check_staged(registry: &Registry, meta: &Metadata) -> Result<()> {
    let named: Vec<(String, Platform, ImageDigest)> = meta
        .variants
        .iter()
        .flat_map(|v| {
            v.platforms.iter().flat_map(move |(p, r)| {
                std::iter::once(r.digest.clone())
                    .chain(r.attestation.iter().map(|a| a.digest.clone()))
                    .map(move |d| (v.name.clone(), *p, d))
            })
        })
        .collect();
    let found =
        futures_util::future::join_all(named.iter().map(|(_, _, d)| registry.digest_of(d))).await;
    let mut missing = Vec::new();
    for ((v, p, d), got) in named.iter().zip(found) {
        if got?.is_none() {
            missing.push(format!("{v} {p} {d}"));
        }
    }
    if missing.is_empty() {
        return Ok(());
    }
    Err(UserError::registry(format!(
        "{} does not have what the metadata files name: {}; merge the files of `hjk images release --push-by-digest` runs that pushed to it",
        registry.name(),
        missing.join(", ")
    ))
    .into())
}

/// Several partial files into one: the same registry, version, variants and inputs, disjoint
/// platforms, parents before children. `version` (`merge --version`) must be the files' own:
/// it is built into every image (the `VERSION` build argument and the version label), so a tag
/// `<variant>-<version>` can only name the version the images carry.
pub(super) fn combine(
    parts: &[Metadata],
    version: Option<&str>,
    files: &[Utf8PathBuf],
) -> Result<Metadata, UserError> {
    let first = parts
        .first()
        .ok_or_else(|| UserError::metadata("merge needs at least one metadata file"))?;
    if let Some(v) = version.filter(|v| Some(*v) != first.version.as_deref()) {
        return Err(UserError::setting(format!(
            "--version {v} does not match {}, whose images were built as {}; the version is part of every image, so merge with --version {} or release again",
            files[0],
            first.version.as_deref().unwrap_or("no version"),
            first.version.as_deref().unwrap_or("(none)")
        )));
    }
    // the files are input too: their names become tags, checked before anything is pushed
    // (their version is a `Version`, checked as the file was read)
    let mut out = Metadata {
        schema: SCHEMA,
        registry: first.registry.clone(),
        version: first.version.clone(),
        partial: false,
        variants: Vec::new(),
    };
    for (m, f) in parts.iter().zip(files) {
        for v in &m.variants {
            for tag in public_tags(&v.name, first.version.as_deref()) {
                format!("{}:{tag}", m.registry)
                    .parse::<ImageRef>()
                    .map_err(|e| e.reword(|m| format!("{f}: variant {:?}: {m}", v.name)))?;
            }
        }
        if m.registry != first.registry {
            return Err(UserError::metadata(format!(
                "{f} is for registry {}, {} for {}; merge files of one release",
                m.registry, files[0], first.registry
            )));
        }
        if m.version != first.version {
            return Err(UserError::metadata(format!(
                "{f} was built for version {:?}, {} for {:?}; the version is part of every image",
                m.version, files[0], first.version
            )));
        }
        for v in &m.variants {
            let slot = match out.variants.iter().position(|o| o.name == v.name) {
                Some(i) => &mut out.variants[i],
                None => {
                    out.variants.push(VariantRecord {
                        platforms: BTreeMap::new(),
                        index_digest: None,
                        tags: Vec::new(),
                        parent_ref: None,
                        held: Vec::new(),
                        ..v.clone()
                    });
                    out.variants.last_mut().expect("just pushed")
                }
            };
            if let (Some(a), Some(b)) = (&slot.inputs, &v.inputs) {
                if a != b {
                    return Err(UserError::metadata(format!(
                        "{f} and {} were built from different inputs for {} (its Dockerfile or build context changed between the runs); release every platform from one checkout",
                        files[0], v.name
                    )));
                }
            }
            if slot.parent != v.parent {
                return Err(UserError::metadata(format!(
                    "{f} gives {} the parent {:?}, another file {:?}; merge files of one release",
                    v.name, v.parent, slot.parent
                )));
            }
            for (p, r) in &v.platforms {
                if slot.platforms.insert(*p, r.clone()).is_some() {
                    return Err(UserError::metadata(format!(
                        "{} for {p} is in more than one file; merge one file per platform",
                        v.name
                    )));
                }
            }
        }
    }
    for (i, v) in out.variants.iter().enumerate() {
        if let Some(p) = &v.parent {
            if !out.variants[..i].iter().any(|o| &o.name == p) {
                return Err(UserError::metadata(format!(
                    "variant {} is listed before its parent {p} (or without it); merge the files `hjk images release --push-by-digest` wrote",
                    v.name
                )));
            }
        }
    }
    let all: BTreeSet<Platform> = out
        .variants
        .iter()
        .flat_map(|v| v.platforms.keys().copied())
        .collect();
    for v in &out.variants {
        if let Some(p) = all.iter().find(|p| !v.platforms.contains_key(p)) {
            return Err(UserError::metadata(format!(
                "variant {} has no {p} image in these files; every variant needs every platform",
                v.name
            )));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hjk::release::assemble::tests::rec;

    fn partial(platform: Platform, digest: &str) -> Metadata {
        let mut platforms = BTreeMap::new();
        platforms.insert(platform, rec(digest, registry::DOCKER_MANIFEST));
        Metadata {
            schema: SCHEMA,
            registry: "127.0.0.1:5001/hjk".into(),
            version: Some("v1.0.0".into()),
            partial: true,
            variants: vec![VariantRecord::staged(
                "base".into(),
                None,
                platforms,
                "in".into(),
            )],
        }
    }

    /// `sha256:` and 64 times `c`.
    fn digest(c: char) -> String {
        format!("sha256:{}", c.to_string().repeat(64))
    }

    /// The two partial files of a two-platform release, one per machine.
    fn two_halves() -> [Metadata; 2] {
        [
            partial(Platform::LinuxArm64, &digest('b')),
            partial(Platform::LinuxAmd64, &digest('a')),
        ]
    }

    #[test]
    fn merge_combines_platforms_and_refuses_overlaps_and_gaps() {
        let files: Vec<Utf8PathBuf> = vec!["a.json".into(), "b.json".into()];
        let m = combine(&two_halves(), None, &files).unwrap();
        assert_eq!(m.variants[0].platforms.len(), 2);
        assert!(!m.partial);
        let err = combine(
            &[
                partial(Platform::LinuxArm64, &digest('b')),
                partial(Platform::LinuxArm64, &digest('c')),
            ],
            None,
            &files,
        )
        .unwrap_err();
        assert!(err.message().contains("more than one file"), "{err}");
        let mut other = partial(Platform::LinuxAmd64, &digest('a'));
        other.registry = "ghcr.io/x/y".into();
        let err = combine(
            &[partial(Platform::LinuxArm64, &digest('b')), other],
            None,
            &files,
        )
        .unwrap_err();
        assert!(
            err.message().contains("is for registry ghcr.io/x/y"),
            "{err}"
        );
    }

    #[test]
    fn merge_takes_the_files_version_and_refuses_another() {
        let files: Vec<Utf8PathBuf> = vec!["a.json".into(), "b.json".into()];
        let parts = two_halves();
        // no --version: the files' own, so the versioned tags are not dropped
        let m = combine(&parts, None, &files).unwrap();
        assert_eq!(m.version.as_deref(), Some("v1.0.0"));
        assert_eq!(
            combine(&parts, Some("v1.0.0"), &files).unwrap().version,
            m.version
        );
        let err = combine(&parts, Some("v9.9.9"), &files).unwrap_err();
        assert_eq!(
            err.message(),
            "--version v9.9.9 does not match a.json, whose images were built as v1.0.0; the version is part of every image, so merge with --version v1.0.0 or release again"
        );
        // a hand-edited version or name that makes no tag is refused before any push
        let text = serde_json::to_string(&parts[0])
            .unwrap()
            .replace("\"v1.0.0\"", "\"v1 x\"");
        let err = serde_json::from_str::<Metadata>(&text).unwrap_err();
        assert!(
            err.to_string().starts_with("invalid --version \"v1 x\""),
            "{err}"
        );
        let mut bad = parts.clone();
        bad[1].variants[0].name = "Base!".into();
        let err = combine(&bad, None, &files).unwrap_err();
        assert!(
            err.message().starts_with("b.json: variant \"Base!\": "),
            "{err}"
        );
    }

    #[test]
    fn merge_refuses_other_inputs_and_children_before_parents() {
        let files: Vec<Utf8PathBuf> = vec!["a.json".into(), "b.json".into()];
        let mut b = partial(Platform::LinuxAmd64, &digest('a'));
        b.variants[0].inputs = Some("changed".into());
        let err = combine(
            &[partial(Platform::LinuxArm64, &digest('b')), b],
            None,
            &files,
        )
        .unwrap_err();
        assert!(
            err.message()
                .contains("were built from different inputs for base"),
            "{err}"
        );
        // a hand-edited file with the child first is refused, not a panic in verify
        let mut child_first = partial(Platform::LinuxArm64, &digest('b'));
        let mut child = child_first.variants[0].clone();
        child.name = "top".into();
        child.parent = Some("base".into());
        child_first.variants.insert(0, child);
        let err = combine(&[child_first], None, &files[..1]).unwrap_err();
        assert!(
            err.message()
                .starts_with("variant top is listed before its parent base"),
            "{err}"
        );
    }
}
