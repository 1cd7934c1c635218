//! `hjk images release` and `hjk images merge`: publish the hierarchy by digest, parents first.
//!
//! A release runs in phases, each one named function:
//! 1. [`check`]: gates (their tools, the signing key against `--key`, trivy's DB), engine
//!    limits and credentials, before anything is built or pushed;
//! 2. [`survey`]: per platform, which variants the registry already has with the same inputs
//!    (the fingerprint label on the image under its content-addressed staging tag);
//! 3. [`stage`]: per platform (the platforms concurrently), build what is not there, each
//!    child FROM `<registry>@<parent's digest for that platform>`, and push it to its staging
//!    tag; record the digests;
//! 4. [`assemble`]: per variant, the index (manifest list) of its platforms, pushed by digest,
//!    untagged;
//! 5. [`verify`]: read everything back: every platform in each index, base labels equal to the
//!    parent digests, each child's layers beginning with its parent's;
//! 6. gates ([`crate::hjk::gates::run`]): SBOM, signature, scan of the staged digests;
//! 7. promotion ([`super::promote`]): only now do the public tags `<variant>` and
//!    `<variant>-<version>` move, after every check that could refuse one passed;
//! 8. the metadata file.
//!
//! `--push-by-digest` stops after 3 (a partial metadata file); `merge` starts at 4 from such
//! files, so two machines give the same indexes and tags as one.

use super::auth::{self, AuthMode, AuthSettings, Credentials, LoginStore};
use super::gates::{self, GateFlags, Gates};
use super::metadata::{Attestation, Metadata, PlatformRecord, VariantRecord, SCHEMA};
use super::promote::{self, public_tags, Planned};
use super::registry::{self, Manifest, Registry};
use super::supply_chain::gates::Promotion;
use super::variants::Graph;
use crate::backend::{Capability, ReleaseNeeds, Remote, Stage};
use crate::build::BuildRequest;
use crate::engine::Engine;
use crate::error::UserError;
use crate::fingerprint::{self, Fingerprint};
use crate::image_ref::ImageRef;
use crate::platform::Platform;
use anyhow::{anyhow, Result};
use camino::{Utf8Path, Utf8PathBuf};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

pub const LABEL_BASE_NAME: &str = "org.opencontainers.image.base.name";
pub const LABEL_BASE_DIGEST: &str = "org.opencontainers.image.base.digest";
pub const LABEL_VERSION: &str = "org.opencontainers.image.version";

/// What `hjk images release` was asked to do.
#[derive(Debug, Clone)]
pub struct ReleaseSpec {
    pub variants: Vec<String>,
    pub platforms: Vec<Platform>,
    pub registry: ImageRef,
    pub version: Option<String>,
    pub base_image: Option<ImageRef>,
    pub push_by_digest: bool,
    pub metadata_file: Option<Utf8PathBuf>,
    pub gates: GateFlags,
    pub auth: AuthSettings,
    pub remote: Remote,
    pub no_cache: bool,
    /// `--force-tags`: move public tags even when that narrows their platforms or re-points a
    /// released `<variant>-<version>`.
    pub force_tags: bool,
    /// What the builds add to each image besides its layers (see [`Extras`]).
    pub extras: Extras,
    /// `--registry-timeout`: connecting, and each wait for the registry's bytes.
    pub registry_timeout: std::time::Duration,
    /// `--keep-stage`: keep the local images built under their staging tags.
    pub keep_stage: bool,
}

/// What a release asks of the builder beyond the image itself: each a backend capability,
/// either asked for (refused up front where the engine lacks it) or wanted where it can be had.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Extras {
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
pub struct Epoch {
    pub seconds: u64,
    /// `--source-date-epoch`, `SOURCE_DATE_EPOCH`, or the commit it was read from.
    pub from: String,
    /// Given by the user (refused where the engine cannot apply it), not read from git.
    pub explicit: bool,
}

/// What [`Extras`] come to on this engine: decided once, before anything is built.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Applied {
    provenance: bool,
    epoch: Option<u64>,
    cache_repo: Option<ImageRef>,
    /// What the release says about these before it builds anything (nothing, when everything
    /// is already in the registry).
    notes: Vec<String>,
}

impl Applied {
    /// Decides each extra against what the engine can do: one that was asked for and cannot
    /// be had is refused (exit 2) before anything is built; a default that cannot be had is
    /// dropped, saying so once.
    async fn decide(engine: &Engine, spec: &ReleaseSpec) -> Result<Applied> {
        let platforms = &spec.platforms;
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

/// One variant of the hierarchy, as a release needs it.
#[derive(Debug, Clone)]
struct Unit {
    name: String,
    parent: Option<usize>,
    dockerfile: Utf8PathBuf,
    context: Utf8PathBuf,
    declared: BTreeSet<String>,
    /// Dockerfile and context, hashed once for every platform.
    inputs: String,
    /// The root's `BASE_IMAGE` default (may name `${TARGETARCH}`).
    base_default: Option<String>,
}

/// One variant on one platform, after the survey or the build.
#[derive(Debug, Clone)]
struct Slot {
    fingerprint: String,
    stage_tag: String,
    base: Option<String>,
    /// Known once surveyed as present or once pushed.
    digest: Option<String>,
    media_type: String,
    size: i64,
    /// The provenance attestation about `digest`, where the builder made one.
    attestation: Option<Attestation>,
    reused: bool,
    seconds: f64,
}

/// One row of the summary (and of `--progress json`'s result).
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub variant: String,
    pub platform: String,
    pub result: String,
    pub seconds: f64,
    pub digest: Option<String>,
}

fn units(graph: &Graph, wanted: &[String]) -> Result<Vec<Unit>> {
    let mut names: Vec<&str> = Vec::new();
    for w in wanted {
        for v in graph.chain(w)? {
            if !names.contains(&v.name.as_str()) {
                names.push(&v.name);
            }
        }
    }
    names.sort_by_key(|n| graph.variants.iter().position(|v| v.name == *n));
    let mut out: Vec<Unit> = Vec::new();
    for n in names {
        let v = graph.get(n)?;
        let dockerfile = graph.dockerfile(v)?;
        let text = std::fs::read_to_string(&dockerfile)?;
        let context = graph.dir(v);
        let inputs = super::images::hash_context(
            &context,
            Fingerprint::new().add("dockerfile-path", dockerfile.file_name().unwrap_or("")),
        )?
        .finish();
        out.push(Unit {
            name: v.name.clone(),
            parent: v
                .parent
                .as_ref()
                .and_then(|p| out.iter().position(|u| &u.name == p)),
            dockerfile,
            context,
            declared: crate::build::declared_args(&text),
            inputs,
            base_default: super::images::base_arg_default(&text),
        });
    }
    Ok(out)
}

/// The content-addressed staging tag of one variant on one platform:
/// `stage-<variant>-<arch>-<first 20 hex of its input fingerprint>`.
fn stage_tag(variant: &str, p: Platform, fingerprint: &str) -> String {
    format!(
        "stage-{variant}-{}-{}",
        p.arch(),
        &fingerprint[..20.min(fingerprint.len())]
    )
}

/// The root's base for one platform: `--base-image`, else the Dockerfile's default with
/// `TARGETARCH` filled in.
fn root_base(spec_base: Option<&ImageRef>, unit: &Unit, p: Platform) -> Option<String> {
    match spec_base {
        Some(b) => Some(b.to_string()),
        None => unit.base_default.as_ref().map(|d| {
            d.replace("${TARGETARCH}", p.arch())
                .replace("$TARGETARCH", p.arch())
        }),
    }
}

/// `hjk images release`. However it ends (also interrupted), the local images it built under
/// their staging tags are removed unless `--keep-stage`: the registry holds them, and each
/// release would otherwise leave its own behind.
pub async fn release_command(
    engine: &mut Engine,
    graph: &Graph,
    spec: &ReleaseSpec,
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
    spec: &ReleaseSpec,
    vars: &BTreeMap<String, String>,
    built: &Built,
) -> Result<u8> {
    let started = Instant::now();
    let units = units(graph, &spec.variants)?;
    if let Some(f) = &spec.metadata_file {
        check_metadata_path(f, graph)?;
    }
    let (creds, gates) = check(engine, spec, vars).await?;
    let applied = Applied::decide(engine, spec).await?;
    let registry = Registry::new(
        &spec.registry,
        creds.clone(),
        spec.registry_timeout,
        engine.shared_reporter(),
    )?;
    registry.reachable().await?;
    // with gates asked for, they run again (a scan against today's database, a signature)
    let quick = !spec.no_cache && !spec.push_by_digest && gates.is_none();
    // the public indexes are read while the engine looks up the root base, not after
    let (root_ids, published) =
        futures_util::future::join(root_identities(engine, spec, &units), async {
            match quick {
                true => Some(read_public(&registry, spec, &units).await),
                false => None,
            }
        })
        .await;
    let root_ids = root_ids?;
    if let Some(published) = published {
        if let Some((meta, rows)) =
            unchanged(&registry, spec, &units, &root_ids, &applied, published?)?
        {
            engine
                .reporter()
                .info("every tag already points at an index built from these inputs");
            finish(engine, spec.metadata_file.as_deref(), &meta, &rows, started)?;
            return Ok(crate::error::EXIT_OK);
        }
    }
    let mut slots = survey(engine, &registry, spec, &units, &root_ids, &applied).await?;
    let mut surveyed = None;
    if !spec.push_by_digest {
        // a tag this release may not move is refused now, before hours of building; what each
        // tag holds now is what promotion compares it with before it swaps it
        let plans = planned(&registry, spec, &units, &slots);
        let (_, read) = promote::check(
            &registry,
            &plans,
            spec.version.as_deref(),
            spec.force_tags,
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
    let login = match (&creds, spec.auth.mode, needs_build) {
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
    let staged = stage(engine, &registry, spec, &units, &applied, &mut slots, built).await;
    if let Some(l) = login {
        l.close(engine).await;
    }
    let rows = staged?;
    let meta = record(spec, &registry, &units, &slots);
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
            finish(engine, spec.metadata_file.as_deref(), &meta, &rows, started)?;
        }
        return Ok(crate::error::EXIT_OK);
    }
    let publishing = Publishing {
        gates: gates.as_ref(),
        dirs: gates::variant_dirs(graph),
        creds: creds.as_ref(),
        force_tags: spec.force_tags,
        surveyed,
    };
    let file = spec.metadata_file.as_deref();
    conclude(engine, &registry, &publishing, meta, &rows, file, started).await
}

/// Each variant's tags as this release would set them, from the survey: the index digest when
/// every platform is already in the registry (an index is a function of its platforms), `None`
/// when something must be built first.
fn planned(
    registry: &Registry,
    spec: &ReleaseSpec,
    units: &[Unit],
    slots: &BTreeMap<(usize, Platform), Slot>,
) -> Vec<Planned> {
    let meta = record(spec, registry, units, slots);
    units
        .iter()
        .enumerate()
        .map(|(i, u)| {
            let all = spec.platforms.iter().all(|p| slots[&(i, *p)].reused);
            Planned {
                variant: u.name.clone(),
                digest: all.then(|| {
                    registry::digest_of_bytes(&index_bytes(&meta.variants[i].platforms).0)
                }),
                platforms: spec.platforms.iter().map(|p| p.to_string()).collect(),
            }
        })
        .collect()
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
pub async fn digest_command(
    session: &super::Session,
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
        Some(d) => d,
        None => {
            let tag = session.spec.registry.with_tag(variant)?;
            let info = session
                .engine
                .inspect(&[&tag])
                .await?
                .pop()
                .unwrap_or_default();
            match info.digest.or(info.id) {
                Some(d) if info.exists => d,
                _ => {
                    return Err(UserError(format!(
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

/// What `hjk images merge` was asked to do.
#[derive(Debug, Clone)]
pub struct MergeSpec {
    pub files: Vec<Utf8PathBuf>,
    /// Where `variants.yaml` is, if here (each variant's `.trivyignore` for the scan gate).
    pub images_dir: Utf8PathBuf,
    pub version: Option<String>,
    pub metadata_file: Option<Utf8PathBuf>,
    pub gates: GateFlags,
    pub auth: AuthSettings,
    pub force_tags: bool,
    /// `--registry-timeout`.
    pub registry_timeout: std::time::Duration,
}

/// `hjk images merge A.json B.json`: the indexes and tags of a one-machine release, from the
/// per-platform digests of `--push-by-digest` runs.
pub async fn merge_command(
    engine: &mut Engine,
    spec: &MergeSpec,
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
    if let Some(f) = &spec.metadata_file {
        let inputs: Vec<(&Utf8Path, &str)> = spec
            .files
            .iter()
            .map(|f| (f.as_path(), "a metadata file it merges"))
            .collect();
        crate::output_file::check("--metadata-file", f, &inputs, &[])?;
    }
    check_gates_dir(&spec.gates)?;
    let repo = crate::hjk::config::parse_registry(&meta.registry)?;
    let mut gates = Gates::check(&spec.gates, registry::plain_http(repo.registry()), vars)?;
    let creds = auth::resolve(&spec.auth, vars, engine, &repo).await?;
    if let Some(g) = &mut gates {
        g.prepare(engine).await?;
    }
    let registry = Registry::new(
        &repo,
        creds.clone(),
        spec.registry_timeout,
        engine.shared_reporter(),
    )?;
    registry.reachable().await?;
    check_staged(&registry, &meta).await?;
    let publishing = Publishing {
        gates: gates.as_ref(),
        dirs: gates::dirs_if_present(&spec.images_dir),
        creds: creds.as_ref(),
        force_tags: spec.force_tags,
        surveyed: None,
    };
    let rows: Vec<Row> = meta
        .variants
        .iter()
        .flat_map(|v| {
            v.platforms.iter().map(|(p, r)| Row {
                variant: v.name.clone(),
                platform: p.to_string(),
                result: "merged".into(),
                seconds: 0.0,
                digest: Some(r.digest.clone()),
            })
        })
        .collect();
    let file = spec.metadata_file.as_deref();
    conclude(engine, &registry, &publishing, meta, &rows, file, started).await
}

/// Every per-platform image (and attestation) the merged files name is in the registry, read
/// all at once before anything is pushed: an index naming a missing one is refused by the
/// registry (a raw 400) after the indexes before it went up.
async fn check_staged(registry: &Registry, meta: &Metadata) -> Result<()> {
    let named: Vec<(String, Platform, String)> = meta
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
    Err(UserError(format!(
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
fn combine(
    parts: &[Metadata],
    version: Option<&str>,
    files: &[Utf8PathBuf],
) -> Result<Metadata, UserError> {
    let first = parts
        .first()
        .ok_or_else(|| UserError("merge needs at least one metadata file".into()))?;
    if let Some(v) = version.filter(|v| Some(*v) != first.version.as_deref()) {
        return Err(UserError(format!(
            "--version {v} does not match {}, whose images were built as {}; the version is part of every image, so merge with --version {} or release again",
            files[0],
            first.version.as_deref().unwrap_or("no version"),
            first.version.as_deref().unwrap_or("(none)")
        )));
    }
    // the files are input too: their version and names become tags, checked before anything
    // is pushed
    if let Some(v) = &first.version {
        super::images::parse_version(v).map_err(|e| UserError(format!("{}: {}", files[0], e.0)))?;
    }
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
                    .map_err(|e| UserError(format!("{f}: variant {:?}: {}", v.name, e.0)))?;
            }
        }
        if m.registry != first.registry {
            return Err(UserError(format!(
                "{f} is for registry {}, {} for {}; merge files of one release",
                m.registry, files[0], first.registry
            )));
        }
        if m.version != first.version {
            return Err(UserError(format!(
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
                    return Err(UserError(format!(
                        "{f} and {} were built from different inputs for {} (its Dockerfile or build context changed between the runs); release every platform from one checkout",
                        files[0], v.name
                    )));
                }
            }
            if slot.parent != v.parent {
                return Err(UserError(format!(
                    "{f} gives {} the parent {:?}, another file {:?}; merge files of one release",
                    v.name, v.parent, slot.parent
                )));
            }
            for (p, r) in &v.platforms {
                if slot.platforms.insert(*p, r.clone()).is_some() {
                    return Err(UserError(format!(
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
                return Err(UserError(format!(
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
            return Err(UserError(format!(
                "variant {} has no {p} image in these files; every variant needs every platform",
                v.name
            )));
        }
    }
    Ok(out)
}

/// Removes the credential stores killed runs left behind (see [`auth::sweep_stale`]).
fn sweep_credentials(engine: &Engine) {
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
fn check_metadata_path(f: &Utf8Path, graph: &Graph) -> Result<(), UserError> {
    let yaml = graph.root.join(super::variants::FILE);
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
fn check_gates_dir(flags: &GateFlags) -> Result<(), UserError> {
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
        return Err(UserError(format!(
            "--gates-dir {dir}: {existing} is not a directory; pick a directory the SBOMs and scan reports can go to"
        )));
    }
    tempfile::Builder::new()
        .prefix(".hjk-check-")
        .tempfile_in(existing)
        .map(drop)
        .map_err(|e| {
            UserError(format!(
                "--gates-dir {dir}: cannot write in {existing} ({e}); pick a writable directory for the SBOMs and scan reports"
            ))
        })
}

/// Phase 1: everything that can refuse the release does so before anything is built or pushed:
/// the gates, the engine's limits, and the credentials (a wrong password is exit 2 here).
async fn check(
    engine: &mut Engine,
    spec: &ReleaseSpec,
    vars: &BTreeMap<String, String>,
) -> Result<(Option<Credentials>, Option<Gates>)> {
    if spec.push_by_digest {
        if spec.gates.any() {
            return Err(UserError(
                "--push-by-digest stops before the gates (nothing is promoted): pass --sbom, --sign and --scan to `hjk images merge`, which runs them on the merged indexes"
                    .into(),
            )
            .into());
        }
        if spec.force_tags {
            return Err(UserError(
                "--force-tags is for the run that moves tags: pass it to `hjk images merge`, not to --push-by-digest".into(),
            )
            .into());
        }
    }
    check_gates_dir(&spec.gates)?;
    let plain_http = registry::plain_http(spec.registry.registry());
    let mut gates = Gates::check(&spec.gates, plain_http, vars)?;
    engine.configure(&spec.remote)?;
    engine
        .check_release(&ReleaseNeeds {
            platforms: spec.platforms.clone(),
            login: spec.auth.mode != AuthMode::DockerConfig,
        })
        .await?;
    let creds = auth::resolve(&spec.auth, vars, engine, &spec.registry).await?;
    if let Some(g) = &mut gates {
        g.prepare(engine).await?;
    }
    Ok((creds, gates))
}

/// The identity of a root base named by tag: its local image id per platform (one inspect),
/// so a new base image changes the fingerprint. A digest-pinned base is its own identity.
async fn root_identities(
    engine: &Engine,
    spec: &ReleaseSpec,
    units: &[Unit],
) -> Result<BTreeMap<Platform, String>> {
    let Some(root) = units.first() else {
        return Ok(BTreeMap::new());
    };
    let mut refs: Vec<(Platform, ImageRef)> = Vec::new();
    for p in &spec.platforms {
        if let Some(b) = root_base(spec.base_image.as_ref(), root, *p) {
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

/// The no-op check: every public tag already points at an index whose per-platform entries
/// carry the fingerprints these inputs give (each child's computed from its parent's digest in
/// the parent's index). All reads go out at once, so this costs one round trip per tag, not per
/// image. `None` when anything differs; the release then goes through every phase.
/// What the public tags point at: per variant, the index under its last tag and the digests
/// of its other tags, all read at once.
struct Published {
    indexes: Vec<Option<Manifest>>,
    heads: Vec<Option<String>>,
}

async fn read_public(registry: &Registry, spec: &ReleaseSpec, units: &[Unit]) -> Result<Published> {
    let version = spec.version.as_deref();
    let tags: Vec<Vec<String>> = units
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
    Ok(Published {
        indexes: indexes.into_iter().collect::<Result<_>>()?,
        heads: heads.into_iter().collect::<Result<_>>()?,
    })
}

fn unchanged(
    registry: &Registry,
    spec: &ReleaseSpec,
    units: &[Unit],
    root_ids: &BTreeMap<Platform, String>,
    applied: &Applied,
    published: Published,
) -> Result<Option<(Metadata, Vec<Row>)>> {
    let version = spec.version.as_deref();
    let tags: Vec<Vec<String>> = units
        .iter()
        .map(|u| public_tags(&u.name, version))
        .collect();
    let indexes = published.indexes;
    let mut heads = published.heads.into_iter();
    let mut digests: BTreeMap<(usize, Platform), String> = BTreeMap::new();
    let mut variants = Vec::new();
    let mut rows = Vec::new();
    for ((i, u), index) in units.iter().enumerate().zip(indexes) {
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
        if images != spec.platforms.len() {
            return Ok(None);
        }
        let mut platforms = BTreeMap::new();
        for p in &spec.platforms {
            let Some(d) = parsed.manifests.iter().find(|m| {
                m.platform
                    .as_ref()
                    .is_some_and(|x| x.architecture == p.arch())
            }) else {
                return Ok(None);
            };
            let base = match u.parent {
                Some(pi) => Some(format!("{}@{}", registry.name(), digests[&(pi, *p)])),
                None => root_base(spec.base_image.as_ref(), u, *p),
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
                result: "reused".into(),
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
                    result: "reused".into(),
                    attestation: parsed.attestation_for(&d.digest).cloned().map(attestation),
                },
            );
        }
        variants.push(VariantRecord {
            name: u.name.clone(),
            parent: u.parent.map(|p| units[p].name.clone()),
            index_digest: Some(index.digest.clone()),
            tags: tags[i].clone(),
            parent_ref: u.parent.and_then(|p| {
                variants
                    .get(p)
                    .and_then(|v: &VariantRecord| v.index_digest.clone())
                    .map(|d| format!("{}@{d}", registry.name()))
            }),
            platforms,
            sbom: Vec::new(),
            signed: false,
            scan: None,
            held: Vec::new(),
            boot: None,
            inputs: Some(u.inputs.clone()),
        });
    }
    let meta = Metadata {
        schema: SCHEMA,
        registry: registry.name(),
        version: spec.version.clone(),
        partial: false,
        variants,
    };
    Ok(Some((meta, rows)))
}

/// The identity of one variant on one platform: its inputs, its parent (or root base) and what
/// the builder adds to the image (its times, an attestation), so two releases that differ in
/// any of them make different images.
fn fingerprint_of(
    unit: &Unit,
    p: Platform,
    version: Option<&str>,
    base: Option<&str>,
    root_id: Option<&str>,
    applied: &Applied,
) -> String {
    let mut f = Fingerprint::new()
        .add("inputs", &unit.inputs)
        .add("platform", p.to_string())
        .add("version", version.unwrap_or(""))
        .add("base", base.unwrap_or(""))
        .add("root-base-id", root_id.unwrap_or(""));
    if applied.provenance {
        f = f.add("provenance", "mode=max");
    }
    if let Some(e) = applied.epoch {
        f = f.add("source-date-epoch", e.to_string());
    }
    f.finish()
}

/// Phase 2: per platform and variant, whether the registry already has an image built from
/// the same inputs. A child's inputs include its parent's digest, so the walk stops reusing at
/// the first variant that must be built.
async fn survey(
    engine: &Engine,
    registry: &Registry,
    spec: &ReleaseSpec,
    units: &[Unit],
    root_ids: &BTreeMap<Platform, String>,
    applied: &Applied,
) -> Result<BTreeMap<(usize, Platform), Slot>> {
    let mut slots = BTreeMap::new();
    for p in &spec.platforms {
        for (i, u) in units.iter().enumerate() {
            let base = match u.parent {
                Some(pi) => {
                    let parent: &Slot = &slots[&(pi, *p)];
                    match (&parent.digest, parent.reused) {
                        (Some(d), true) => Some(format!("{}@{d}", registry.name())),
                        // the parent is rebuilt: so is every child
                        _ => None,
                    }
                }
                None => root_base(spec.base_image.as_ref(), u, *p),
            };
            let parent_rebuilt = u.parent.is_some() && base.is_none();
            // a child's parent digest already carries the root base's identity
            let root_id = root_ids.get(p).filter(|_| u.parent.is_none());
            let fp = fingerprint_of(
                u,
                *p,
                spec.version.as_deref(),
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

/// Phase 3: builds and pushes what the survey did not find, parents first on each platform,
/// the platforms concurrently (arm64 under emulation overlaps amd64).
/// The local images a release built, by staging tag (see [`release_command`]).
type Built = std::sync::Mutex<Vec<ImageRef>>;

async fn stage(
    engine: &Engine,
    registry: &Registry,
    spec: &ReleaseSpec,
    units: &[Unit],
    applied: &Applied,
    slots: &mut BTreeMap<(usize, Platform), Slot>,
    built: &Built,
) -> Result<Vec<Row>> {
    let tmp = tempfile::Builder::new().prefix("hjk-release-").tempdir()?;
    let tmp_path = Utf8PathBuf::from_path_buf(tmp.path().to_owned())
        .map_err(|p| anyhow!("non-UTF-8 temp dir {}", p.display()))?;
    let lanes = spec.platforms.iter().map(|p| {
        let mine: BTreeMap<usize, Slot> = units
            .iter()
            .enumerate()
            .map(|(i, _)| (i, slots[&(i, *p)].clone()))
            .collect();
        lane(
            engine, registry, spec, units, applied, *p, mine, &tmp_path, built,
        )
    });
    let results = futures_util::future::join_all(lanes).await;
    let mut rows = Vec::new();
    let mut first_err = None;
    for (p, r) in spec.platforms.iter().zip(results) {
        match r {
            Ok(mine) => {
                for (i, s) in mine {
                    rows.push(Row {
                        variant: units[i].name.clone(),
                        platform: p.to_string(),
                        result: if s.reused { "reused" } else { "built" }.into(),
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
            units.iter().position(|u| u.name == r.variant),
            r.platform.clone(),
        )
    });
    Ok(rows)
}

/// One platform's chain, parents first.
#[allow(clippy::too_many_arguments)]
async fn lane(
    engine: &Engine,
    registry: &Registry,
    spec: &ReleaseSpec,
    units: &[Unit],
    applied: &Applied,
    p: Platform,
    mut mine: BTreeMap<usize, Slot>,
    tmp: &Utf8Path,
    built: &Built,
) -> Result<BTreeMap<usize, Slot>> {
    let plain_http = registry::plain_http(registry.host());
    for (i, u) in units.iter().enumerate() {
        if mine[&i].reused {
            continue;
        }
        // the parent's digest on this platform is known now (reused or just pushed)
        let base = match u.parent {
            Some(pi) => {
                let d = mine[&pi]
                    .digest
                    .clone()
                    .unwrap_or_else(|| format!("<digest of {} {p}>", units[pi].name));
                Some(format!("{}@{d}", registry.name()))
            }
            None => mine[&i].base.clone(),
        };
        let fp = if u.parent.is_some() {
            fingerprint_of(
                u,
                p,
                spec.version.as_deref(),
                base.as_deref(),
                None,
                applied,
            )
        } else {
            mine[&i].fingerprint.clone()
        };
        let stage_tag = stage_tag(&u.name, p, &fp);
        let tag = spec.registry.with_tag(&stage_tag)?;
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
        if let Some(v) = &spec.version {
            // only where the Dockerfile declares it: the classic builder warns about the rest
            if u.declared.contains("VERSION") {
                req.build_args.insert("VERSION".into(), v.clone());
            }
            req.labels.insert(LABEL_VERSION.into(), v.clone());
        }
        if let Some(b) = &base {
            if u.parent.is_some() || spec.base_image.is_some() {
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
                        staged.digest.unwrap_or_default(),
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
async fn pushed(
    registry: &Registry,
    stage_tag: &str,
    reported: Option<String>,
    p: Platform,
) -> Result<(Manifest, Option<registry::Descriptor>)> {
    let key = reported.unwrap_or_else(|| stage_tag.to_string());
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

fn attestation(d: registry::Descriptor) -> Attestation {
    Attestation {
        digest: d.digest,
        media_type: d.media_type,
        size: d.size,
    }
}

/// The metadata of what is staged (no indexes yet).
fn record(
    spec: &ReleaseSpec,
    registry: &Registry,
    units: &[Unit],
    slots: &BTreeMap<(usize, Platform), Slot>,
) -> Metadata {
    Metadata {
        schema: SCHEMA,
        registry: registry.name(),
        version: spec.version.clone(),
        partial: spec.push_by_digest,
        variants: units
            .iter()
            .enumerate()
            .map(|(i, u)| VariantRecord {
                name: u.name.clone(),
                parent: u.parent.map(|p| units[p].name.clone()),
                index_digest: None,
                tags: Vec::new(),
                parent_ref: None,
                platforms: spec
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
                                result: if s.reused { "reused" } else { "built" }.into(),
                                attestation: s.attestation.clone(),
                            },
                        ))
                    })
                    .collect(),
                sbom: Vec::new(),
                signed: false,
                scan: None,
                held: Vec::new(),
                boot: None,
                inputs: Some(u.inputs.clone()),
            })
            .collect(),
    }
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

/// The index of one variant: its platforms in a fixed order, so the same per-platform digests
/// always give the same index bytes and digest, from one machine or from a merge.
pub fn index_bytes(platforms: &BTreeMap<Platform, PlatformRecord>) -> (Vec<u8>, &'static str) {
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
async fn assemble(
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
    let by_name: BTreeMap<String, String> = meta
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
async fn verify(registry: &Registry, meta: &Metadata) -> Result<()> {
    let mut diff_ids: BTreeMap<(String, Platform), Vec<String>> = BTreeMap::new();
    for v in &meta.variants {
        let digest = v.index_digest.as_deref().unwrap_or_default();
        let index = registry
            .manifest(digest)
            .await?
            .ok_or_else(|| anyhow!("index {digest} of {} is missing from the registry", v.name))?;
        let parsed = index.parsed()?;
        let listed: BTreeMap<String, String> = parsed
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
                    .map(|pr| pr.digest.clone())
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
async fn verify_provenance(
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

/// The summary, then the metadata file. The summary comes first: when the file cannot be
/// written (a full disk) after the tags moved, what was published is still shown, the error
/// (exit 1) names it, and an earlier file at that path is removed rather than left to pass for
/// this release's record.
fn finish(
    engine: &Engine,
    file: Option<&Utf8Path>,
    meta: &Metadata,
    rows: &[Row],
    started: Instant,
) -> Result<()> {
    summary(engine, meta, rows, started);
    let Some(f) = file else {
        return Ok(());
    };
    let Err(e) = meta.write(f) else {
        return Ok(());
    };
    let old = match std::fs::symlink_metadata(f) {
        Ok(m) if m.is_file() && std::fs::remove_file(f).is_ok() => {
            format!("; the earlier {f}, which described another run, was removed")
        }
        _ => String::new(),
    };
    let published: Vec<String> = meta
        .variants
        .iter()
        .filter_map(|v| {
            let d = v.index_digest.as_ref()?;
            let tags = match (meta.partial, v.tags.is_empty()) {
                (true, _) => "staged, no tag".to_string(),
                (false, true) => "held, no tag moved".to_string(),
                (false, false) => format!("tagged {}", v.tags.join(", ")),
            };
            Some(format!("{} {}@{d} ({tags})", v.name, meta.registry))
        })
        .collect();
    let what = match (published.is_empty(), meta.partial) {
        (true, true) => format!(
            "the per-platform images are pushed ({})",
            meta.variants
                .iter()
                .flat_map(|v| v
                    .platforms
                    .iter()
                    .map(move |(p, r)| format!("{} {p} {}", v.name, r.digest)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        (true, false) => "nothing was published".to_string(),
        (false, _) => format!("published: {}", published.join("; ")),
    };
    Err(anyhow!(
        "the release metadata file {f} could not be written: {e}{old}; {what} (the summary above has it too)"
    ))
}

fn summary(engine: &Engine, meta: &Metadata, rows: &[Row], started: Instant) {
    let mut text = format!(
        "{:<12} {:<14} {:<8} {:>8}  {}\n",
        "VARIANT", "PLATFORM", "RESULT", "TIME", "DIGEST"
    );
    for r in rows {
        text.push_str(&format!(
            "{:<12} {:<14} {:<8} {:>7.1}s  {}\n",
            r.variant,
            r.platform,
            r.result,
            r.seconds,
            r.digest.as_deref().unwrap_or("-")
        ));
    }
    for v in &meta.variants {
        if let Some(d) = &v.index_digest {
            let result = match (meta.partial, v.tags.is_empty()) {
                (true, _) => "staged",
                (false, false) => "tagged",
                (false, true) => "held",
            };
            let line = format!(
                "{:<12} {:<14} {:<8} {:>8}  {d} {}",
                v.name,
                "index",
                result,
                "",
                v.tags
                    .iter()
                    .map(|t| format!("{}:{t}", meta.registry))
                    .collect::<Vec<_>>()
                    .join(" ")
            );
            text.push_str(line.trim_end());
            text.push('\n');
        }
    }
    text.push_str(&format!(
        "released in {:.1}s\n",
        started.elapsed().as_secs_f64()
    ));
    engine
        .reporter()
        .result(text, serde_json::json!({"rows": rows, "metadata": meta}));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(digest: &str, media_type: &str) -> PlatformRecord {
        PlatformRecord {
            digest: digest.into(),
            media_type: media_type.into(),
            size: 10,
            stage_tag: "t".into(),
            fingerprint: "f".into(),
            base: None,
            result: "built".into(),
            attestation: None,
        }
    }

    #[test]
    fn attestations_follow_the_images_as_buildkit_lists_them() {
        let mut platforms = BTreeMap::new();
        for (p, d) in [
            (Platform::LinuxArm64, "sha256:b"),
            (Platform::LinuxAmd64, "sha256:a"),
        ] {
            let mut r = rec(d, registry::OCI_MANIFEST);
            r.attestation = Some(Attestation {
                digest: format!("{d}-att"),
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
                ("sha256:a", "amd64"),
                ("sha256:b", "arm64"),
                ("sha256:a-att", "unknown"),
                ("sha256:b-att", "unknown")
            ]
        );
        assert_eq!(
            index.attestation_for("sha256:b").unwrap().digest,
            "sha256:b-att"
        );
        // an attestation is never taken for a platform
        assert_eq!(
            index.entry_for(Platform::LinuxArm64).unwrap().digest,
            "sha256:b"
        );
    }

    #[test]
    fn the_index_is_the_same_bytes_whatever_the_order_platforms_arrived_in() {
        let mut a = BTreeMap::new();
        a.insert(
            Platform::LinuxArm64,
            rec("sha256:b", registry::DOCKER_MANIFEST),
        );
        a.insert(
            Platform::LinuxAmd64,
            rec("sha256:a", registry::DOCKER_MANIFEST),
        );
        let (bytes, mt) = index_bytes(&a);
        assert_eq!(mt, registry::DOCKER_LIST);
        let text = String::from_utf8(bytes).unwrap();
        assert!(
            text.find("sha256:a").unwrap() < text.find("sha256:b").unwrap(),
            "{text}"
        );
        a.insert(
            Platform::LinuxArm64,
            rec("sha256:b", registry::OCI_MANIFEST),
        );
        assert_eq!(index_bytes(&a).1, registry::OCI_INDEX);
    }

    fn partial(platform: Platform, digest: &str) -> Metadata {
        let mut platforms = BTreeMap::new();
        platforms.insert(platform, rec(digest, registry::DOCKER_MANIFEST));
        Metadata {
            schema: SCHEMA,
            registry: "127.0.0.1:5001/hjk".into(),
            version: Some("v1.0.0".into()),
            partial: true,
            variants: vec![VariantRecord {
                name: "base".into(),
                parent: None,
                index_digest: None,
                tags: vec![],
                parent_ref: None,
                platforms,
                sbom: vec![],
                signed: false,
                scan: None,
                held: vec![],
                boot: None,
                inputs: Some("in".into()),
            }],
        }
    }

    #[test]
    fn merge_combines_platforms_and_refuses_overlaps_and_gaps() {
        let files: Vec<Utf8PathBuf> = vec!["a.json".into(), "b.json".into()];
        let m = combine(
            &[
                partial(Platform::LinuxArm64, "sha256:b"),
                partial(Platform::LinuxAmd64, "sha256:a"),
            ],
            None,
            &files,
        )
        .unwrap();
        assert_eq!(m.variants[0].platforms.len(), 2);
        assert!(!m.partial);
        let err = combine(
            &[
                partial(Platform::LinuxArm64, "sha256:b"),
                partial(Platform::LinuxArm64, "sha256:c"),
            ],
            None,
            &files,
        )
        .unwrap_err();
        assert!(err.0.contains("more than one file"), "{err}");
        let mut other = partial(Platform::LinuxAmd64, "sha256:a");
        other.registry = "ghcr.io/x/y".into();
        let err = combine(
            &[partial(Platform::LinuxArm64, "sha256:b"), other],
            None,
            &files,
        )
        .unwrap_err();
        assert!(err.0.contains("is for registry ghcr.io/x/y"), "{err}");
    }

    #[test]
    fn merge_takes_the_files_version_and_refuses_another() {
        let files: Vec<Utf8PathBuf> = vec!["a.json".into(), "b.json".into()];
        let parts = [
            partial(Platform::LinuxArm64, "sha256:b"),
            partial(Platform::LinuxAmd64, "sha256:a"),
        ];
        // no --version: the files' own, so the versioned tags are not dropped
        let m = combine(&parts, None, &files).unwrap();
        assert_eq!(m.version.as_deref(), Some("v1.0.0"));
        assert_eq!(
            combine(&parts, Some("v1.0.0"), &files).unwrap().version,
            m.version
        );
        let err = combine(&parts, Some("v9.9.9"), &files).unwrap_err();
        assert_eq!(
            err.0,
            "--version v9.9.9 does not match a.json, whose images were built as v1.0.0; the version is part of every image, so merge with --version v1.0.0 or release again"
        );
        // a hand-edited version or name that makes no tag is refused before any push
        let mut bad = parts.clone();
        for p in &mut bad {
            p.version = Some("v1 x".into());
        }
        let err = combine(&bad, None, &files).unwrap_err();
        assert!(
            err.0.starts_with("a.json: invalid --version \"v1 x\""),
            "{err}"
        );
        let mut bad = parts.clone();
        bad[1].variants[0].name = "Base!".into();
        let err = combine(&bad, None, &files).unwrap_err();
        assert!(err.0.starts_with("b.json: variant \"Base!\": "), "{err}");
    }

    #[test]
    fn merge_refuses_other_inputs_and_children_before_parents() {
        let files: Vec<Utf8PathBuf> = vec!["a.json".into(), "b.json".into()];
        let mut b = partial(Platform::LinuxAmd64, "sha256:a");
        b.variants[0].inputs = Some("changed".into());
        let err = combine(
            &[partial(Platform::LinuxArm64, "sha256:b"), b],
            None,
            &files,
        )
        .unwrap_err();
        assert!(
            err.0.contains("were built from different inputs for base"),
            "{err}"
        );
        // a hand-edited file with the child first is refused, not a panic in verify
        let mut child_first = partial(Platform::LinuxArm64, "sha256:b");
        let mut child = child_first.variants[0].clone();
        child.name = "top".into();
        child.parent = Some("base".into());
        child_first.variants.insert(0, child);
        let err = combine(&[child_first], None, &files[..1]).unwrap_err();
        assert!(
            err.0
                .starts_with("variant top is listed before its parent base"),
            "{err}"
        );
    }
}
