//! The engine-neutral build model: what to build ([`BuildRequest`]), what an engine knows about
//! an image ([`ImageInfo`]), and what to run ([`RunSpec`]). Workflows produce these; backends
//! turn them into [`crate::invocation::Invocation`]s.

use crate::image_ref::ImageRef;
use crate::platform::Platform;
use camino::Utf8PathBuf;
use std::collections::{BTreeMap, BTreeSet};

/// Where a build's result goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Output {
    /// Into the engine's local image store (if the engine can keep it: see `Backend::can_load`).
    Load,
    /// To the registry named by the tags.
    Push,
    /// An OCI layout tarball at this path.
    Oci(Utf8PathBuf),
}

/// When the engine should pull the FROM image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum PullPolicy {
    /// Pull only if not present locally (every engine's default).
    #[default]
    Missing,
    Always,
    Never,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct BuildRequest {
    pub context: Utf8PathBuf,
    pub dockerfile: Utf8PathBuf,
    /// The first tag names the result (and the local multi-platform image, where an engine
    /// makes one).
    pub tags: Vec<ImageRef>,
    pub platforms: Vec<Platform>,
    pub build_args: BTreeMap<String, String>,
    /// Build arguments whose values come from the user's environment (they may be secrets):
    /// passed by name (`--build-arg NAME`), the value only in the builder's environment, so it
    /// never shows in argv, logs or `--dry-run` output.
    pub env_args: BTreeMap<String, String>,
    pub labels: BTreeMap<String, String>,
    pub target: Option<String>,
    pub no_cache: bool,
    pub pull: PullPolicy,
    pub output: Output,
    /// The FROM image exists only in the engine's local store (built by us just before), so
    /// a builder that cannot see that store (a remote builder) must refuse.
    pub local_parent: bool,
    /// The `ARG` names the Dockerfile declares, when known: a builder that must pass the
    /// platform arguments itself passes only these (others draw an "unused" warning).
    pub declared_args: Option<BTreeSet<String>>,
    /// A registry repository the build imports its layer cache from and exports it to, so a
    /// runner that starts empty rebuilds only what changed (`Capability::RegistryCache`).
    pub cache: Option<ImageRef>,
    /// `SOURCE_DATE_EPOCH`: the time written into the image and, where the builder can, onto
    /// every file in its layers, so the same inputs give the same digest
    /// (`Capability::ReproducibleTimes`).
    pub source_date_epoch: Option<u64>,
    /// Attach a provenance attestation (SLSA, `mode=max`) to what a release stages
    /// (`Capability::Provenance`).
    pub provenance: bool,
}

impl BuildRequest {
    pub(crate) fn new(context: Utf8PathBuf, dockerfile: Utf8PathBuf, tag: ImageRef) -> Self {
        BuildRequest {
            context,
            dockerfile,
            tags: vec![tag],
            platforms: vec![Platform::host()],
            build_args: BTreeMap::new(),
            env_args: BTreeMap::new(),
            labels: BTreeMap::new(),
            target: None,
            no_cache: false,
            pull: PullPolicy::Missing,
            output: Output::Load,
            local_parent: false,
            declared_args: None,
            cache: None,
            source_date_epoch: None,
            provenance: false,
        }
    }

    /// Whether the Dockerfile declares `ARG name` (true when unknown).
    pub(crate) fn declares_arg(&self, name: &str) -> bool {
        self.declared_args.as_ref().is_none_or(|a| a.contains(name))
    }

    pub(crate) fn primary_tag(&self) -> &ImageRef {
        &self.tags[0]
    }

    pub(crate) fn is_multi_platform(&self) -> bool {
        self.platforms.len() > 1
    }
}

/// What one `image inspect` tells us about one requested reference.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct ImageInfo {
    pub exists: bool,
    pub id: Option<String>,
    /// Parsed where the engine's answer enters ([`crate::backend::Inspected::BadAnswer`]).
    pub digest: Option<crate::digest::ImageDigest>,
    pub labels: BTreeMap<String, String>,
    /// Architectures present: one for an image, several for a manifest list.
    pub architectures: Vec<String>,
    /// The image's default user (`USER`), if it sets one.
    pub user: Option<String>,
}

impl ImageInfo {
    pub(crate) fn missing() -> Self {
        ImageInfo::default()
    }

    pub(crate) fn label(&self, key: &str) -> Option<&str> {
        self.labels.get(key).map(String::as_str)
    }
}

/// A bind mount from host to container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Mount {
    pub host: Utf8PathBuf,
    pub container: Utf8PathBuf,
    pub read_only: bool,
}

/// Who a container runs as. A UID alone takes its primary group and its supplementary groups
/// from the image's `/etc/passwd` and `/etc/group` (so `%sudo` rules and a `docker` group
/// work); with a GID too, the container runtimes add no supplementary groups at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RunAs {
    pub uid: u32,
    pub gid: Option<u32>,
}

impl RunAs {
    /// `uid:gid`: for a user the image has no passwd entry for (or root, whatever its group).
    pub(crate) fn ids(uid: u32, gid: u32) -> Self {
        RunAs {
            uid,
            gid: Some(gid),
        }
    }

    /// The UID alone: the image's passwd entry decides the groups.
    pub(crate) fn uid(uid: u32) -> Self {
        RunAs { uid, gid: None }
    }
}

impl std::fmt::Display for RunAs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.gid {
            Some(g) => write!(f, "{}:{g}", self.uid),
            None => write!(f, "{}", self.uid),
        }
    }
}

/// A container to run in the foreground.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct RunSpec {
    pub image: String,
    /// A name we choose, so a container that outlives an interrupted session can be removed.
    pub name: Option<String>,
    pub command: Vec<String>,
    pub mounts: Vec<Mount>,
    pub workdir: Option<Utf8PathBuf>,
    /// Environment variable names passed through from our environment (`-e NAME`), never values.
    pub env_names: Vec<String>,
    /// Who to run as (`--user`).
    pub user: Option<RunAs>,
    /// Replaces the image's ENTRYPOINT (a probe runs `/bin/sh` whatever the image runs).
    pub entrypoint: Option<String>,
    pub tty: bool,
    pub interactive: bool,
    pub platform: Option<Platform>,
    pub remove: bool,
    /// Start it in the background (`--detach`): a container that boots an init and is checked
    /// with `exec`.
    pub detach: bool,
    /// Engine flags as the image's labels ask for them (`--privileged`, `--systemd=always`),
    /// already spelled for the engine ([`crate::backend::runner_flags`]).
    pub flags: Vec<String>,
}

/// A Dockerfile's instructions as logical lines: continuations joined, comment lines dropped
/// (also inside a continuation), the way the builders read them.
pub(crate) fn instructions(dockerfile: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut logical = String::new();
    for raw in dockerfile.lines() {
        let t = raw.trim();
        if t.starts_with('#') {
            continue;
        }
        if let Some(body) = t.strip_suffix('\\') {
            logical.push_str(body);
            logical.push(' ');
            continue;
        }
        logical.push_str(t);
        let line = std::mem::take(&mut logical);
        if !line.trim().is_empty() {
            out.push(line);
        }
    }
    if !logical.trim().is_empty() {
        out.push(logical);
    }
    out
}

/// The `ARG` names a Dockerfile declares, in any stage. Quoting and defaults do not matter for
/// the name.
pub(crate) fn declared_args(dockerfile: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for line in instructions(dockerfile) {
        let mut words = line.split_whitespace();
        if words.next().is_some_and(|w| w.eq_ignore_ascii_case("ARG")) {
            for w in words {
                let name = w.split('=').next().unwrap_or("");
                if !name.is_empty() {
                    out.insert(name.to_string());
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn declared_args_in_every_stage() {
        let text = "ARG BASE_IMAGE=x\nFROM ${BASE_IMAGE}\n# ARG NOPE\narg TARGETARCH\nARG A=1 \\\n  B\nRUN echo\n";
        let got: Vec<String> = declared_args(text).into_iter().collect();
        assert_eq!(got, ["A", "B", "BASE_IMAGE", "TARGETARCH"]);
    }
}
