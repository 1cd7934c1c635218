//! One trait, three engines. A backend is pure: it turns requests into [`Invocation`]s and
//! engine output into facts. Every engine difference lives in its file and nowhere else.

pub mod apple;
pub mod detect;
pub mod docker;
pub mod podman;

use crate::build::{BuildRequest, ImageInfo, RunSpec};
use crate::error::UserError;
use crate::exec::Captured;
use crate::image_ref::ImageRef;
use crate::invocation::Invocation;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BackendKind {
    Docker,
    Podman,
    Apple,
}

impl BackendKind {
    /// In detection order: the first one found on PATH wins.
    pub const ALL: [BackendKind; 3] =
        [BackendKind::Docker, BackendKind::Podman, BackendKind::Apple];

    pub fn name(self) -> &'static str {
        match self {
            BackendKind::Docker => "docker",
            BackendKind::Podman => "podman",
            BackendKind::Apple => "container",
        }
    }

    /// The CLI this backend drives.
    pub fn program(self) -> &'static str {
        match self {
            BackendKind::Docker => "docker",
            BackendKind::Podman => "podman",
            BackendKind::Apple => "container",
        }
    }

    pub fn install_hint(self) -> &'static str {
        match self {
            BackendKind::Docker => "docker (with the buildx plugin): apt-get install docker.io",
            BackendKind::Podman => "podman: apt-get install podman",
            BackendKind::Apple => {
                "Apple container (macOS 26): https://github.com/apple/container/releases"
            }
        }
    }
}

impl FromStr for BackendKind {
    type Err = UserError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "docker" | "buildx" => Ok(BackendKind::Docker),
            "podman" => Ok(BackendKind::Podman),
            "container" | "apple" => Ok(BackendKind::Apple),
            _ => Err(UserError(format!(
                "unknown backend {s:?}; choose one of: docker, podman, container (Apple)"
            ))),
        }
    }
}

impl fmt::Display for BackendKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Everything the workflows need from an engine.
pub trait Backend: Send + Sync {
    fn kind(&self) -> BackendKind;

    /// A process whose result the backend needs before it can plan a build (e.g. whether the
    /// buildx plugin exists). Asked repeatedly until it returns `None`, and only before a build,
    /// so an up-to-date check stays a single engine call.
    fn probe(&self, _req: &BuildRequest) -> Option<Invocation> {
        None
    }

    /// Learns from a probe's result. Returns a warning to show the user, if any.
    fn learn(&self, _probe: &Invocation, _out: &Captured) -> Option<String> {
        None
    }

    /// Rejects, before anything runs, a request this engine cannot do.
    fn check_build(&self, req: &BuildRequest) -> Result<(), UserError>;

    /// The processes that build (and, if asked, push or export) the request, in order.
    fn build(&self, req: &BuildRequest) -> Vec<Invocation>;

    /// One call inspecting every reference.
    fn inspect(&self, refs: &[&ImageRef]) -> Invocation;

    /// Facts per requested reference, in request order. `None` if the output cannot be matched
    /// to the requests unambiguously (then the caller inspects one at a time).
    fn parse_inspect(&self, refs: &[&ImageRef], out: &Captured) -> Option<Vec<ImageInfo>>;

    fn pull(&self, image: &ImageRef) -> Invocation;
    fn tag(&self, src: &ImageRef, dst: &ImageRef) -> Invocation;
    fn push(&self, image: &ImageRef, multi_platform: bool) -> Invocation;
    fn remove(&self, images: &[&ImageRef]) -> Invocation;
    fn run(&self, spec: &RunSpec) -> Invocation;

    /// How a hierarchy build covers several platforms with this engine.
    fn multi_platform(&self) -> MultiPlatform {
        MultiPlatform::OneInvocation
    }

    /// Commands that (re)make `list` as a local manifest list of `instances` (one image per
    /// platform), for engines whose strategy is [`MultiPlatform::PerPlatformThenList`].
    fn assemble_list(&self, _list: &ImageRef, _instances: &[&ImageRef]) -> Vec<Invocation> {
        Vec::new()
    }
}

/// How an engine builds one image for several platforms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MultiPlatform {
    /// One build names every platform (buildx `--platform a,b`, Apple repeated `--arch`); the
    /// engine checks up front whether it can keep the result.
    OneInvocation,
    /// One build per platform, each tagged on its own, then a local manifest list (podman):
    /// every child is built FROM the exact per-platform image of its parent, which also keeps
    /// podman's platform-blind layer cache from mixing architectures.
    PerPlatformThenList,
}

/// Docker and podman both print `image inspect` as a JSON array, skipping missing images but
/// keeping request order. Matches entries to requests by tag first, then by position.
pub(crate) fn match_inspect(
    refs: &[&ImageRef],
    stdout: &str,
    to_info: impl Fn(&serde_json::Value) -> ImageInfo,
) -> Option<Vec<ImageInfo>> {
    let entries: Vec<serde_json::Value> = if stdout.trim().is_empty() {
        Vec::new()
    } else {
        serde_json::from_str(stdout).ok()?
    };
    if entries.len() == refs.len() {
        return Some(entries.iter().map(&to_info).collect());
    }
    let mut out = vec![ImageInfo::missing(); refs.len()];
    let mut taken = vec![false; refs.len()];
    for entry in &entries {
        let names = string_list(entry, "RepoTags").chain(string_list(entry, "RepoDigests"));
        let names: Vec<String> = names.collect();
        let hit = refs.iter().enumerate().find(|(i, r)| {
            !taken[*i]
                && names
                    .iter()
                    .any(|n| r.matches_engine_name(n) || r.digest().is_some_and(|d| n.ends_with(d)))
        });
        match hit {
            Some((i, _)) => {
                taken[i] = true;
                out[i] = to_info(entry);
            }
            // an untagged entry (a manifest-list instance) with something missing: ambiguous
            None => return None,
        }
    }
    Some(out)
}

fn string_list<'a>(v: &'a serde_json::Value, key: &str) -> impl Iterator<Item = String> + 'a {
    v.get(key)
        .and_then(|a| a.as_array())
        .into_iter()
        .flatten()
        .filter_map(|s| s.as_str().map(String::from))
}

pub(crate) fn labels_at(v: Option<&serde_json::Value>) -> BTreeMap<String, String> {
    v.and_then(|l| BTreeMap::<String, String>::deserialize(l).ok())
        .unwrap_or_default()
}

/// Common `--build-arg`/`--label`/`--target` flags, identical on all three CLIs.
pub(crate) fn common_build_flags(req: &BuildRequest) -> Vec<String> {
    let mut a = Vec::new();
    a.push("--file".into());
    a.push(req.dockerfile.to_string());
    for (k, v) in &req.build_args {
        a.push("--build-arg".into());
        a.push(format!("{k}={v}"));
    }
    for (k, v) in &req.labels {
        a.push("--label".into());
        a.push(format!("{k}={v}"));
    }
    if let Some(t) = &req.target {
        a.push("--target".into());
        a.push(t.clone());
    }
    if req.no_cache {
        a.push("--no-cache".into());
    }
    a
}

/// `-v`, `-w`, `-e NAME`, `--user` flags shared by `docker run` and `podman run`.
pub(crate) fn common_run_flags(spec: &RunSpec) -> Vec<String> {
    let mut a = Vec::new();
    if spec.remove {
        a.push("--rm".into());
    }
    if spec.interactive {
        a.push("-i".into());
    }
    if spec.tty {
        a.push("-t".into());
    }
    for m in &spec.mounts {
        let ro = if m.read_only { ":ro" } else { "" };
        a.push("-v".into());
        a.push(format!("{}:{}{ro}", m.host, m.container));
    }
    if let Some(w) = &spec.workdir {
        a.push("-w".into());
        a.push(w.to_string());
    }
    for name in &spec.env_names {
        a.push("-e".into());
        a.push(name.clone());
    }
    if let Some((u, g)) = spec.user {
        a.push("--user".into());
        a.push(format!("{u}:{g}"));
    }
    a
}
