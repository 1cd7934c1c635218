//! `hjk images build` and `hjk images list`: the [`Plan`] laid out as local nodes, each built
//! FROM the exact local tag of its freshly built parent (no engine-specific build contexts, so
//! the same plan runs on every engine).

use super::plan::{self, Plan};
use super::settings::BuildSettings;
use super::variants::Graph;
use super::Session;
use crate::backend::MultiPlatform;
use crate::build::{BuildRequest, ImageInfo, Output};
use crate::digest::ImageDigest;
use crate::engine::Engine;
use crate::fingerprint;
use crate::image_ref::ImageRef;
use crate::platform::Platform;
use crate::report::Reporter;
use anyhow::Result;
use serde::Serialize;
use std::collections::BTreeMap;
use std::time::Instant;

/// One build: a variant of the [`Plan`] for one platform, or for all of them, by the engine's
/// [`MultiPlatform`] strategy.
#[derive(Debug, Clone)]
pub(crate) struct Node {
    /// The variant's index in [`Plan::steps`].
    pub step: usize,
    pub platforms: Vec<Platform>,
    /// The tag this node's image gets locally; children are built FROM it.
    pub tag: ImageRef,
    pub extra_tags: Vec<ImageRef>,
    pub parent: Option<usize>,
    pub base_arg: Option<String>,
}

/// A multi-platform image made from per-platform nodes.
#[derive(Debug, Clone)]
pub(crate) struct List {
    pub tags: Vec<ImageRef>,
    pub nodes: Vec<usize>,
}

/// The [`Plan`] laid out as local builds: its nodes (parents first), the manifest lists of
/// per-platform nodes, and the root's base, whose id the fingerprints take.
#[derive(Debug, Clone)]
pub(crate) struct Nodes {
    pub plan: Plan,
    pub nodes: Vec<Node>,
    pub lists: Vec<List>,
    root_base: Option<ImageRef>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum Outcome {
    Built,
    UpToDate,
    /// The build failed.
    Failed,
    /// The image built (or was current) but publishing it failed.
    PushFailed,
    /// The per-platform images built but making the local multi-platform image failed.
    ListFailed,
    Skipped,
}

impl Outcome {
    pub(crate) fn failed(self) -> bool {
        matches!(
            self,
            Outcome::Failed | Outcome::PushFailed | Outcome::ListFailed
        )
    }

    /// The step a failure happened at, for messages.
    pub(crate) fn step(self) -> &'static str {
        match self {
            Outcome::PushFailed => "push",
            Outcome::ListFailed => "manifest list",
            _ => "build",
        }
    }

    fn shown(self) -> &'static str {
        match self {
            Outcome::Built => "built",
            Outcome::UpToDate => "up-to-date",
            Outcome::Failed => "FAILED",
            Outcome::PushFailed => "PUSH-FAILED",
            Outcome::ListFailed => "LIST-FAILED",
            Outcome::Skipped => "skipped",
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct NodeResult {
    pub variant: String,
    pub platform: String,
    pub tag: String,
    pub outcome: Outcome,
    pub seconds: f64,
    pub id: Option<String>,
    pub error: Option<String>,
}

/// Lays the plan out as nodes: one per variant for all platforms, or one per variant and
/// platform (then a manifest list per variant) where the engine builds platforms one by one.
pub(crate) fn nodes(graph: &Graph, spec: &BuildSettings, strategy: MultiPlatform) -> Result<Nodes> {
    let plan = Plan::walk(graph, &spec.images.variants)?;
    let per_platform =
        strategy == MultiPlatform::PerPlatformThenList && spec.images.platforms.len() > 1;
    let groups: Vec<Vec<Platform>> = if per_platform {
        spec.images.platforms.iter().map(|p| vec![*p]).collect()
    } else {
        vec![spec.images.platforms.clone()]
    };
    let tag = |variant: &str, suffix: Option<&str>| -> Result<ImageRef> {
        let t = match suffix {
            Some(s) => format!("{variant}-{s}"),
            None => variant.to_string(),
        };
        Ok(spec.images.registry.with_tag(&t)?)
    };
    let mut nodes: Vec<Node> = Vec::new();
    let mut lists = Vec::new();
    let mut root_base = None;
    for (si, v) in plan.steps.iter().enumerate() {
        let mut members = Vec::new();
        for group in &groups {
            let arch = per_platform.then(|| group[0].arch());
            // with several per-platform nodes, the plain tags name the manifest list instead
            let (node_tag, extra) = match (arch, &spec.images.version) {
                (Some(a), _) => (tag(&v.name, Some(a))?, vec![]),
                (None, Some(ver)) => (tag(&v.name, Some(ver))?, vec![tag(&v.name, None)?]),
                (None, None) => (tag(&v.name, None)?, vec![]),
            };
            let parent = match v.parent {
                Some(p) => Some(
                    nodes
                        .iter()
                        .position(|n| n.step == p && n.platforms == *group)
                        .ok_or_else(|| {
                            anyhow::anyhow!(
                                "parent {} of {} was not planned",
                                plan.steps[p].name,
                                v.name
                            )
                        })?,
                ),
                None => None,
            };
            let base_arg = match parent {
                Some(i) => Some(nodes[i].tag.to_string()),
                None => spec.images.base_image.as_ref().map(|b| b.to_string()),
            };
            if parent.is_none() {
                let b = base_arg.clone().or_else(|| v.base_default.clone());
                root_base = b.and_then(|b| ImageRef::parse(&b).ok());
            }
            members.push(nodes.len());
            nodes.push(Node {
                step: si,
                platforms: group.clone(),
                tag: node_tag,
                extra_tags: extra,
                parent,
                base_arg,
            });
        }
        if per_platform {
            let mut tags = vec![tag(&v.name, None)?];
            if let Some(ver) = &spec.images.version {
                tags.push(tag(&v.name, Some(ver))?);
            }
            lists.push(List {
                tags,
                nodes: members,
            });
        }
    }
    Ok(Nodes {
        plan,
        nodes,
        lists,
        root_base,
    })
}

impl Nodes {
    fn variant(&self, n: &Node) -> &str {
        &self.plan.steps[n.step].name
    }

    /// Each node's fingerprint ([`plan::fingerprint`]), parents first: a child is FROM its
    /// parent's fingerprint, a root from its base and the base's local id, so a new base
    /// rebuilds the whole chain.
    fn fingerprints(&self, spec: &BuildSettings, root_base_id: Option<&str>) -> Vec<String> {
        let mut out: Vec<String> = Vec::with_capacity(self.nodes.len());
        for n in &self.nodes {
            let step = &self.plan.steps[n.step];
            let base = match n.parent {
                Some(p) => Some(out[p].clone()),
                None => step.base(spec.images.base_image.as_ref(), &n.platforms),
            };
            let id = plan::Identity {
                platforms: &n.platforms,
                version: spec.images.version.as_deref(),
                base: base.as_deref(),
                root_base_id: root_base_id.filter(|_| n.parent.is_none()),
                ..plan::Identity::default()
            };
            out.push(plan::fingerprint(step, &id));
        }
        out
    }

    fn request(&self, n: &Node, spec: &BuildSettings, fp: &str, engine: &Engine) -> BuildRequest {
        let step = &self.plan.steps[n.step];
        let mut req =
            BuildRequest::new(step.context.clone(), step.dockerfile.clone(), n.tag.clone());
        req.tags.extend(n.extra_tags.iter().cloned());
        req.platforms = n.platforms.clone();
        if let Some(b) = &n.base_arg {
            req.build_args.insert("BASE_IMAGE".into(), b.clone());
        }
        if let Some(v) = &spec.images.version {
            // only where the Dockerfile declares it: the classic builder warns about the rest
            if step.declared.contains("VERSION") {
                req.build_args.insert("VERSION".into(), v.to_string());
            }
            req.labels
                .insert("org.opencontainers.image.version".into(), v.to_string());
        }
        req.labels.insert(fingerprint::LABEL.into(), fp.to_string());
        req.no_cache = spec.no_cache;
        req.declared_args = Some(step.declared.clone());
        req.cache = spec.cache_repo.as_ref().and_then(|c| {
            let tag = match n.platforms.as_slice() {
                [p] => format!("{}-{}", step.name, p.arch()),
                _ => step.name.clone(),
            };
            c.with_tag(&tag).ok()
        });
        // a child is FROM its parent's local tag unless the parent went to the registry
        let pushed_by_build = spec.push && !engine.can_load(&n.platforms);
        req.local_parent = n.parent.is_some() && !pushed_by_build;
        // what the engine cannot keep locally it publishes as it builds; the rest is
        // published after every build succeeded (see `publish`)
        req.output = if pushed_by_build {
            Output::Push
        } else {
            Output::Load
        };
        req
    }
}

/// `hjk images build`: builds what is not current, in order, publishes if asked, and always
/// reports one row per node, also when something failed.
pub(crate) async fn build_command(session: &Session, spec: &BuildSettings) -> Result<u8> {
    let results = build(&session.engine, &session.graph, spec).await?;
    let engine = &session.engine;
    if !engine.dry_run() {
        engine.reporter().result(
            summary(&results),
            serde_json::to_value(&results).unwrap_or_default(),
        );
    }
    let failed: Vec<&NodeResult> = results.iter().filter(|r| r.outcome.failed()).collect();
    match failed.first() {
        None => Ok(crate::error::EXIT_OK),
        Some(first) => Err(anyhow::anyhow!(
            "{} of {} image(s) failed: {}\n{}",
            failed.len(),
            results.len(),
            failed
                .iter()
                .map(|r| format!("{} ({})", r.tag, r.outcome.step()))
                .collect::<Vec<_>>()
                .join(", "),
            first.error.clone().unwrap_or_default()
        )),
    }
}

/// `hjk images list`; `json` prints the rows as a JSON array instead of a table.
pub(crate) async fn list_command(
    session: &Session,
    spec: &BuildSettings,
    json: bool,
) -> Result<u8> {
    let rows = list(&session.engine, &session.graph, spec).await?;
    let data = serde_json::to_value(&rows).unwrap_or_default();
    if json {
        crate::report::DataReporter.result(String::new(), data);
    } else {
        session.engine.reporter().result(list_table(&rows), data);
    }
    Ok(crate::error::EXIT_OK)
}

/// What the engine has for a plan: one inspect for every node, every manifest list and the
/// root's base; all a no-op costs.
struct State {
    nodes: Vec<ImageInfo>,
    lists: Vec<bool>,
    base_id: Option<String>,
}

async fn inspect_state(engine: &Engine, plan: &Nodes) -> Result<State> {
    let mut refs: Vec<&ImageRef> = plan.nodes.iter().map(|n| &n.tag).collect();
    refs.extend(plan.lists.iter().map(|l| &l.tags[0]));
    refs.extend(plan.root_base.as_ref());
    let mut infos = engine.inspect(&refs).await?;
    let base_info = plan.root_base.as_ref().and_then(|_| infos.pop());
    let lists = infos
        .split_off(plan.nodes.len())
        .iter()
        .map(|i| i.exists)
        .collect();
    Ok(State {
        nodes: infos,
        lists,
        base_id: base_identity(engine, plan, base_info).await?,
    })
}

/// Every build is checked (probes, engine limits) before the first one starts, so nothing is
/// half-built.
async fn check_all(engine: &Engine, reqs: &[BuildRequest], current: &[bool]) -> Result<()> {
    for (req, cur) in reqs.iter().zip(current) {
        if !cur {
            engine.prepare(req).await?;
        }
    }
    Ok(())
}

async fn build_nodes(
    engine: &Engine,
    plan: &Nodes,
    reqs: &[BuildRequest],
    current: &[bool],
    state: &State,
    spec: &BuildSettings,
) -> Result<Vec<NodeResult>> {
    let reporter = engine.reporter();
    let mut results: Vec<NodeResult> = Vec::new();
    let mut stop = false;
    for (i, (n, req)) in plan.nodes.iter().zip(reqs).enumerate() {
        let platform = Platform::join(&n.platforms);
        let mut row = NodeResult {
            variant: plan.variant(n).to_string(),
            platform,
            tag: n.tag.to_string(),
            outcome: Outcome::UpToDate,
            seconds: 0.0,
            id: state.nodes[i].id.clone(),
            error: None,
        };
        let parent_failed = n
            .parent
            .is_some_and(|p| matches!(results[p].outcome, Outcome::Failed | Outcome::Skipped));
        if stop || parent_failed {
            row.outcome = Outcome::Skipped;
            row.error = Some(if stop {
                "an earlier build failed".into()
            } else {
                "its parent failed".into()
            });
        } else if current[i] {
            reporter.info(&format!("{} ({}) is up to date", n.tag, row.platform));
        } else {
            reporter.info(&format!("building {} ({})", n.tag, row.platform));
            let started = Instant::now();
            match engine.build(req).await {
                Ok(()) => row.outcome = Outcome::Built,
                // an interrupt stops everything, whatever --no-fastfail says
                Err(e) if crate::error::interruption(&e).is_some() => return Err(e),
                Err(e) => {
                    row.outcome = Outcome::Failed;
                    row.error = Some(format!("{e:#}"));
                    stop = !spec.no_fastfail;
                }
            }
            row.seconds = started.elapsed().as_secs_f64();
        }
        results.push(row);
    }
    Ok(results)
}

/// Makes the local manifest lists of per-platform nodes, and publishes what the builds did
/// not push themselves. After any failure nothing is published: a release is all or none.
async fn publish(
    engine: &Engine,
    plan: &Nodes,
    reqs: &[BuildRequest],
    state: &State,
    spec: &BuildSettings,
    results: &mut [NodeResult],
) -> Result<()> {
    let push = spec.push && !results.iter().any(|r| r.outcome.failed());
    for (list, exists) in plan.lists.iter().zip(&state.lists) {
        let complete = list
            .nodes
            .iter()
            .all(|&i| matches!(results[i].outcome, Outcome::Built | Outcome::UpToDate));
        if !complete {
            continue;
        }
        let any_built = list
            .nodes
            .iter()
            .any(|&i| results[i].outcome == Outcome::Built);
        let instances: Vec<&ImageRef> = list.nodes.iter().map(|&i| &plan.nodes[i].tag).collect();
        if push {
            let pushed = engine.publish(&list.tags, &instances).await;
            mark(
                pushed,
                Outcome::PushFailed,
                list.nodes.iter().copied(),
                results,
            )?;
        } else if any_built || !exists || engine.dry_run() {
            for tag in &list.tags {
                let made = engine.assemble_list(tag, &instances).await;
                mark(
                    made,
                    Outcome::ListFailed,
                    list.nodes.iter().copied(),
                    results,
                )?;
            }
        }
    }
    if push && plan.lists.is_empty() {
        for (i, (n, req)) in plan.nodes.iter().zip(reqs).enumerate() {
            // a build whose output was the registry has published already
            if req.output == Output::Push && results[i].outcome == Outcome::Built {
                continue;
            }
            let tags: Vec<ImageRef> = std::iter::once(&n.tag)
                .chain(&n.extra_tags)
                .cloned()
                .collect();
            let pushed = engine.publish(&tags, &[]).await;
            mark(pushed, Outcome::PushFailed, [i], results)?;
        }
    }
    Ok(())
}

/// A step after the builds that failed is reported on its rows as that step's failure (a
/// push failure is not a build failure), and the other rows and the summary still come out.
fn mark(
    done: Result<()>,
    outcome: Outcome,
    rows: impl IntoIterator<Item = usize>,
    results: &mut [NodeResult],
) -> Result<()> {
    if let Err(e) = done {
        if crate::error::interruption(&e).is_some() {
            return Err(e);
        }
        for i in rows {
            results[i].outcome = outcome;
            results[i].error = Some(format!("{e:#}"));
        }
    }
    Ok(())
}

/// The ids of what was built, for the summary.
async fn record_ids(engine: &Engine, plan: &Nodes, results: &mut [NodeResult]) -> Result<()> {
    if engine.dry_run() {
        return Ok(());
    }
    let built: Vec<usize> = (0..results.len())
        .filter(|&i| results[i].outcome == Outcome::Built)
        .collect();
    if !built.is_empty() {
        let refs: Vec<&ImageRef> = built.iter().map(|&i| &plan.nodes[i].tag).collect();
        for (&i, info) in built.iter().zip(engine.inspect(&refs).await?) {
            results[i].id = info.id.or(info.digest.map(|d| d.to_string()));
        }
    }
    Ok(())
}

/// Builds what is not current, in order, and returns one result per node.
pub(crate) async fn build(
    engine: &Engine,
    graph: &Graph,
    spec: &BuildSettings,
) -> Result<Vec<NodeResult>> {
    let plan = nodes(graph, spec, engine.multi_platform())?;
    let state = inspect_state(engine, &plan).await?;
    let fps = plan.fingerprints(spec, state.base_id.as_deref());
    let requests = || -> Vec<BuildRequest> {
        plan.nodes
            .iter()
            .zip(&fps)
            .map(|(n, fp)| plan.request(n, spec, fp, engine))
            .collect()
    };
    let mut reqs = requests();
    let current = current_nodes(&plan, &state.nodes, &reqs, spec.no_cache);
    if current.iter().any(|c| !c) {
        // whether a build can keep its result locally is the builder's answer: asked now,
        // once, and only when something is built (a no-op stays one inspect)
        engine.learn_builder(&spec.images.platforms).await?;
        reqs = requests();
    }
    check_all(engine, &reqs, &current).await?;
    let mut results = build_nodes(engine, &plan, &reqs, &current, &state, spec).await?;
    publish(engine, &plan, &reqs, &state, spec, &mut results).await?;
    // the ids are for the summary only: a failure to read them must not hide the summary
    if !spec.push {
        let _ = record_ids(engine, &plan, &mut results).await;
    }
    Ok(results)
}

/// A digest-pinned root base is identified by its reference (hashed with the Dockerfile); only
/// a base named by tag needs its local image id to notice that it changed.
fn base_pinned(plan: &Nodes) -> bool {
    plan.root_base.as_ref().is_none_or(|b| b.digest().is_some())
}

/// The root base's id for the fingerprints. A tag-named base that is not local yet is pulled
/// first, so the id a build records is the one the next run sees.
async fn base_identity(
    engine: &Engine,
    plan: &Nodes,
    info: Option<ImageInfo>,
) -> Result<Option<String>> {
    if base_pinned(plan) {
        return Ok(None);
    }
    let (Some(base), Some(info)) = (&plan.root_base, info) else {
        return Ok(None);
    };
    if info.exists || engine.dry_run() {
        return Ok(info.id);
    }
    if !engine.pull(base).await? {
        return Ok(None);
    }
    Ok(engine.inspect(&[base]).await?.pop().and_then(|i| i.id))
}

/// A node is current when its label matches and its parent is current too: a rebuilt parent
/// always rebuilds its children.
fn current_nodes(
    plan: &Nodes,
    infos: &[ImageInfo],
    reqs: &[BuildRequest],
    no_cache: bool,
) -> Vec<bool> {
    let mut current: Vec<bool> = Vec::with_capacity(plan.nodes.len());
    for ((n, info), req) in plan.nodes.iter().zip(infos).zip(reqs) {
        let own = !no_cache
            && info.exists
            && info.label(fingerprint::LABEL)
                == req.labels.get(fingerprint::LABEL).map(String::as_str);
        let parent_ok = n.parent.is_none_or(|p| current[p]);
        current.push(own && parent_ok);
    }
    current
}

/// The end-of-build table: variant x platform, result, time, image id.
pub(crate) fn summary(results: &[NodeResult]) -> String {
    let mut out = format!(
        "{:<12} {:<24} {:<11} {:>8}  {}\n",
        "VARIANT", "PLATFORM", "RESULT", "TIME", "IMAGE"
    );
    for r in results {
        let outcome = r.outcome.shown();
        let id = r.id.as_deref().map(short_id).unwrap_or("-");
        out.push_str(&format!(
            "{:<12} {:<24} {:<11} {:>7.1}s  {} {}\n",
            r.variant, r.platform, outcome, r.seconds, r.tag, id
        ));
    }
    out
}

fn short_id(id: &str) -> &str {
    let hex = id.strip_prefix("sha256:").unwrap_or(id);
    &hex[..hex.len().min(12)]
}

/// One row of `hjk images list`.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct ListRow {
    pub variant: String,
    pub parent: Option<String>,
    pub tag: String,
    pub built: bool,
    pub current: bool,
    pub id: Option<String>,
    pub digest: Option<ImageDigest>,
}

pub(crate) async fn list(
    engine: &Engine,
    graph: &Graph,
    spec: &BuildSettings,
) -> Result<Vec<ListRow>> {
    let plan = nodes(graph, spec, engine.multi_platform())?;
    let mut refs: Vec<&ImageRef> = plan.nodes.iter().map(|n| &n.tag).collect();
    if let Some(b) = &plan.root_base {
        refs.push(b);
    }
    let mut infos: Vec<ImageInfo> = engine.inspect(&refs).await?;
    let base_info = plan.root_base.as_ref().and_then(|_| infos.pop());
    let base_id = base_info.filter(|_| !base_pinned(&plan)).and_then(|i| i.id);
    let fps = plan.fingerprints(spec, base_id.as_deref());
    let reqs: Vec<BuildRequest> = plan
        .nodes
        .iter()
        .zip(&fps)
        .map(|(n, fp)| plan.request(n, spec, fp, engine))
        .collect();
    let current = current_nodes(&plan, &infos, &reqs, false);
    let graph_parents: BTreeMap<&str, Option<&String>> = graph
        .variants
        .iter()
        .map(|v| (v.name.as_str(), v.parent.as_ref()))
        .collect();
    Ok(plan
        .nodes
        .iter()
        .zip(infos)
        .zip(current)
        .map(|((n, info), current)| ListRow {
            variant: plan.variant(n).to_string(),
            parent: graph_parents
                .get(plan.variant(n))
                .cloned()
                .flatten()
                .cloned(),
            tag: n.tag.to_string(),
            built: info.exists,
            current,
            id: info.id.clone(),
            digest: info.digest.clone(),
        })
        .collect())
}

pub(crate) fn list_table(rows: &[ListRow]) -> String {
    let mut out = format!(
        "{:<12} {:<12} {:<48} {:<6} {:<8} {:<13} {}\n",
        "VARIANT", "PARENT", "TAG", "BUILT", "CURRENT", "ID", "DIGEST"
    );
    for r in rows {
        out.push_str(&format!(
            "{:<12} {:<12} {:<48} {:<6} {:<8} {:<13} {}\n",
            r.variant,
            r.parent.as_deref().unwrap_or("-"),
            r.tag,
            if r.built { "yes" } else { "no" },
            if r.current { "yes" } else { "no" },
            r.id.as_deref().map(short_id).unwrap_or("-"),
            r.digest.as_deref().unwrap_or("-"),
        ));
    }
    out
}
