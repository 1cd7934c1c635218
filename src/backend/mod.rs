//! One trait, three engines. A backend is pure: it turns requests into [`Invocation`]s and
//! engine output into facts. Every engine difference lives under this directory and nowhere
//! else: command lines, inspect shapes, local image naming, build-step formats, error hints,
//! how several platforms are built and published, and what an engine cannot do (refused up
//! front in [`Backend::check_build`], never silently ignored).
//!
//! docker and podman share the docker-compatible parts through [`compat::DockerCli`], so each of
//! their files shows only how it differs.

pub(crate) mod apple;
pub(crate) mod compat;
pub(crate) mod detect;
pub(crate) mod docker;
pub(crate) mod logins;
pub(crate) mod podman;
pub(crate) mod runner_flags;

pub(crate) use logins::{Credentials, StoredLogin};

use crate::build::{BuildRequest, ImageInfo, RunSpec};
use crate::error::UserError;
use crate::exec::{Captured, OutputParser};
use crate::image_ref::ImageRef;
use crate::invocation::Invocation;
use crate::platform::Platform;
use crate::report::Step;
use camino::{Utf8Path, Utf8PathBuf};
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
    pub(crate) const ALL: [BackendKind; 3] =
        [BackendKind::Docker, BackendKind::Podman, BackendKind::Apple];

    pub(crate) fn name(self) -> &'static str {
        match self {
            BackendKind::Docker => "docker",
            BackendKind::Podman => "podman",
            BackendKind::Apple => "container",
        }
    }

    /// The CLI this backend drives.
    pub(crate) fn program(self) -> &'static str {
        self.name()
    }

    /// The program a tool written for the docker CLI (the Dev Containers CLI's
    /// `--docker-path`) can drive in docker's place, if this engine's CLI is docker-compatible.
    pub(crate) fn docker_compatible_program(self) -> Option<&'static str> {
        match self {
            BackendKind::Docker | BackendKind::Podman => Some(self.program()),
            BackendKind::Apple => None,
        }
    }

    pub(crate) fn install_hint(self) -> &'static str {
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
            _ => Err(UserError::setting(format!(
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

/// What a builder can do that not every builder can. A workflow asks the question
/// ([`Backend::supports`]) instead of asking which engine it is; a request that needs one the
/// engine lacks is refused by [`Backend::check_build`]. Several platforms in one build is
/// answered by [`Backend::multi_platform`] and [`Backend::can_load`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Capability {
    /// `COPY --link`: a layer that does not depend on the layers below it, so a base edit
    /// reuses it instead of copying it again (BuildKit).
    /// <https://docs.docker.com/reference/dockerfile/#copy---link>
    CopyLink,
    /// A build's layer cache exported to a registry and imported from it
    /// ([`BuildRequest::cache`]).
    RegistryCache,
    /// A provenance attestation attached to what a release stages ([`BuildRequest::provenance`]).
    Provenance,
    /// `SOURCE_DATE_EPOCH` applied to the image and to the files in its layers, so a release
    /// of the same inputs has the same digest ([`BuildRequest::source_date_epoch`]).
    ReproducibleTimes,
}

impl Capability {
    /// What a user asks for when a request needs this capability, for refusals.
    pub(crate) fn asked_as(self) -> &'static str {
        match self {
            Capability::CopyLink => "`COPY --link`",
            Capability::RegistryCache => "a registry build cache (--cache-repo)",
            Capability::Provenance => "provenance attestations (--provenance)",
            Capability::ReproducibleTimes => "reproducible timestamps (--source-date-epoch)",
        }
    }

    /// The capabilities a request needs beyond a plain build.
    pub(crate) fn needed_by(req: &BuildRequest) -> Vec<Capability> {
        let mut out = Vec::new();
        if req.cache.is_some() {
            out.push(Capability::RegistryCache);
        }
        if req.provenance {
            out.push(Capability::Provenance);
        }
        if req.source_date_epoch.is_some() {
            out.push(Capability::ReproducibleTimes);
        }
        out
    }
}

/// Refuses a request that needs a capability this backend lacks (the common part of every
/// `check_build`).
pub(crate) fn check_capabilities(
    backend: &dyn Backend,
    req: &BuildRequest,
) -> Result<(), UserError> {
    match Capability::needed_by(req)
        .into_iter()
        .find(|c| !backend.supports(*c))
    {
        Some(c) => Err(refusal(backend, c)),
        None => Ok(()),
    }
}

/// The one-line refusal of a request for `c` on an engine that lacks it.
pub(crate) fn refusal(backend: &dyn Backend, c: Capability) -> UserError {
    UserError::engine(format!(
        "{} cannot make {}{}; leave it out, or use an engine that can (docker with the buildx plugin can make all of them)",
        backend.kind(),
        c.asked_as(),
        backend.builder_note()
    ))
}

/// What a probe asks, so a backend can tell its answers apart without reading argv.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ProbeKind {
    /// Which builder the CLI has and what it can do (docker: the buildx plugin and its current
    /// builder's driver and image store, or the classic builder).
    Builder,
}

/// A read-only process a backend needs to run before it can plan a build.
#[derive(Debug, Clone)]
pub(crate) struct Probe {
    pub kind: ProbeKind,
    pub invocation: Invocation,
}

/// What `image inspect` output says about the requested references.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Inspected {
    /// Facts per reference, in request order; a missing image is `exists: false`.
    Facts(Vec<ImageInfo>),
    /// The output cannot be matched to the requests; ask one reference at a time.
    Ambiguous,
    /// The engine itself failed (daemon down, no permission): not an answer about images.
    EngineFailed(String),
    /// The engine answered, but something in the answer is not what it must be (a digest
    /// that is not `sha256:<64 hex>`): what is wrong, for an error naming the command.
    BadAnswer(String),
}

/// A digest as an engine reported it, parsed where it enters: `Err` says what `what` was.
pub(crate) fn reported_digest(
    what: &str,
    d: Option<&str>,
) -> Result<Option<crate::digest::ImageDigest>, String> {
    d.map(|d| crate::digest::ImageDigest::parse(d).map_err(|e| format!("{what}: {}", e.message())))
        .transpose()
}

/// The image and container commands that are not builds: how a CLI spells them. docker and
/// podman share one implementation ([`compat::DockerCli`]); Apple has its own.
pub(crate) trait ImageCommands: Send + Sync {
    /// One read-only call inspecting every reference.
    fn inspect(&self, refs: &[&ImageRef]) -> Invocation;
    fn pull(&self, image: &ImageRef) -> Invocation;
    fn tag(&self, src: &ImageRef, dst: &ImageRef) -> Invocation;
    fn remove(&self, images: &[&ImageRef]) -> Invocation;
    /// Removes a container started by [`Backend::run`] that outlived an interrupted session,
    /// at once (its PID 1 may ignore the stop signal).
    fn remove_container(&self, name: &str) -> Invocation;
    /// Removes a container started by a boot check and the anonymous volumes it made (dind
    /// declares `/var/lib/docker` a volume), at once.
    fn discard_container(&self, name: &str) -> Invocation {
        self.remove_container(name)
    }
    /// Runs `command` in the running container `name`, as `user` if given.
    fn exec(&self, name: &str, user: Option<&str>, command: &[String]) -> Invocation;
    /// The container's output so far (a container that stopped: why).
    fn logs(&self, name: &str) -> Invocation;
    /// Lists the local images named `repo`, one `repository:tag` line each (read-only); the
    /// lines may name other repositories of the same image (podman prints every name of a
    /// matching image), so a caller matches them ([`Backend::names_match`]). `None` where this
    /// is not supported, and then nothing is listed.
    fn list(&self, _repo: &str) -> Option<Invocation> {
        None
    }

    /// The image names in what [`ImageCommands::list`] printed.
    fn listed(&self, stdout: &str) -> Vec<String> {
        stdout
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(String::from)
            .collect()
    }
}

/// Everything the workflows need from an engine. Pure: no method spawns anything.
pub(crate) trait Backend: OutputParser + Send + Sync {
    fn kind(&self) -> BackendKind;

    /// A process whose answer the backend needs before it can plan a build (e.g. whether the
    /// buildx plugin exists). Asked repeatedly until it returns `None`, and only before a
    /// build, so an up-to-date check stays a single engine call. Probes are read-only.
    fn probe(&self, _req: &BuildRequest) -> Option<Probe> {
        None
    }

    /// Learns from a probe's answer. Returns a warning to show the user, if any.
    fn learn(&self, _probe: ProbeKind, _out: &Captured) -> Option<String> {
        None
    }

    /// Rejects, before anything runs, a request this engine cannot do or would silently
    /// change (a pull policy it ignores, an output it cannot write).
    fn check_build(&self, req: &BuildRequest) -> Result<(), UserError>;

    /// Whether this engine's builder can do `c`. Before the probes have answered, a backend
    /// answers for the builder it assumes (docker: buildx).
    fn supports(&self, _c: Capability) -> bool {
        false
    }

    /// Which builder the engine's answers are about, for messages (" (the classic builder)").
    fn builder_note(&self) -> String {
        String::new()
    }

    /// The processes that build (and, if asked, push or export) the request, in order.
    fn build(&self, req: &BuildRequest) -> Vec<Invocation>;

    /// Whether a build for these platforms can be kept in the local image store; if not, a
    /// build that should be published pushes as part of the build itself.
    fn can_load(&self, _platforms: &[Platform]) -> bool {
        true
    }

    /// How a hierarchy build covers several platforms with this engine.
    fn multi_platform(&self) -> MultiPlatform {
        MultiPlatform::OneInvocation
    }

    /// Image and container commands (inspect, pull, tag, remove).
    fn commands(&self) -> &dyn ImageCommands;

    fn parse_inspect(&self, refs: &[&ImageRef], out: &Captured) -> Inspected;

    /// Whether the name the engine reports for a local image is `want` (podman stores short
    /// names as `localhost/<name>`).
    fn names_match(&self, want: &ImageRef, engine_name: &str) -> bool {
        ImageRef::parse(engine_name).is_ok_and(|n| n == *want)
    }

    /// Publishes local images under `tags`. `instances` are per-platform local images that
    /// together form each tag (built one platform at a time); empty when each tag already
    /// names a local image holding every platform.
    fn publish(&self, tags: &[ImageRef], instances: &[&ImageRef]) -> Vec<Invocation>;

    /// (Re)makes `list` as a local multi-platform image from per-platform `instances`.
    fn assemble_list(&self, _list: &ImageRef, _instances: &[&ImageRef]) -> Vec<Invocation> {
        Vec::new()
    }

    fn run(&self, spec: &RunSpec) -> Invocation;

    /// Rejects, before anything runs, a container this engine would start differently from
    /// the spec (a mount it cannot express).
    fn check_run(&self, _spec: &RunSpec) -> Result<(), UserError> {
        Ok(())
    }

    /// Whether a captured `run` failed because its command does not exist in the image (a
    /// base with no `/bin/sh`), as opposed to the command failing or the engine failing.
    fn missing_executable(&self, out: &Captured) -> bool {
        compat::missing_executable(out)
    }

    /// Whether an `exec` failed because its container is not running any more (its init
    /// exited), as opposed to the command failing.
    fn container_stopped(&self, out: &Captured) -> bool {
        compat::container_stopped(out)
    }

    /// Takes the remote-builder choices a release passes through (buildx `--builder`, podman
    /// `--connection`); refuses one this engine has no such thing for.
    fn configure(&mut self, remote: &Remote) -> Result<(), UserError> {
        remote.refuse_all(self.kind())
    }

    /// Rejects, before anything is built or pushed, a release this engine cannot do.
    fn check_release(&self, _needs: &ReleaseNeeds) -> Result<(), UserError> {
        Ok(())
    }

    /// Where this engine's own commands find the credentials of a release's login to `host`:
    /// the environment to set and the files to write first (with what they carry over from the
    /// user's own configuration).
    fn auth_store(&self, dir: &Utf8Path, vars: &BTreeMap<String, String>, host: &str) -> AuthStore;

    /// The files this engine keeps its registry logins in, in the order it reads them (each in
    /// the `{"auths": {host: {"auth": base64}}}` shape, possibly naming a credential helper).
    fn login_files(&self, _vars: &BTreeMap<String, String>) -> Vec<Utf8PathBuf> {
        Vec::new()
    }

    /// How this engine reads its login files (which key wins).
    fn login_reader(&self) -> logins::Reader {
        logins::Reader::DockerCli
    }

    /// A read-only listing of the logins the engine keeps where a release cannot set them
    /// aside (Apple's keychain), asked before a release logs in; `None` where logins live in a
    /// file the release replaces for its own run.
    fn keychain_logins(&self) -> Option<Invocation> {
        None
    }

    /// Refuses a release login to `host` that would overwrite one the user keeps, from what
    /// [`Backend::keychain_logins`] printed.
    fn check_login(&self, _host: &str, _listing: &Captured) -> Result<(), UserError> {
        Ok(())
    }

    /// `login --password-stdin` into the store at `dir`; the password goes on stdin only.
    fn login(&self, login: &Login, dir: &Utf8Path) -> Invocation;

    /// Forgets a login that outlives the process (Apple keeps it in the keychain).
    fn logout(&self, _host: &str) -> Option<Invocation> {
        None
    }

    /// Builds one platform of a release and pushes it to `stage`, writing the pushed manifest
    /// digest to `digest_file` where the engine can (see [`Backend::staged_digest`]).
    fn stage(&self, req: &BuildRequest, stage: &Stage) -> Vec<Invocation>;

    /// Whether [`Backend::stage`] writes an OCI layout to [`Stage::layout`] for the workflow to
    /// push (the digest in its digest file is then the layout's), instead of pushing itself.
    fn stage_layout(&self) -> bool {
        false
    }

    /// A read-only listing of the local image store, run after a build was interrupted: a
    /// builder killed while it committed a layer can leave a half-written image that breaks
    /// every listing of the store, for every user of it. `None`: nothing to check.
    fn store_check(&self) -> Option<Invocation> {
        None
    }

    /// From [`Backend::store_check`]'s output: the id of an image the store cannot read and the
    /// command that removes it.
    fn broken_image(&self, _out: &Captured) -> Option<(String, Invocation)> {
        None
    }

    /// The pushed digest from what [`Backend::stage`] wrote to its digest file; `None` when the
    /// engine cannot report it (the workflow then reads it back from the registry).
    fn staged_digest(&self, _digest_file_text: &str) -> Option<String> {
        None
    }
}

/// Remote builders a release passes through to every engine call. `DOCKER_HOST`, docker
/// contexts and `CONTAINER_HOST` are inherited from the environment as they are.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Remote {
    /// buildx `--builder NAME` (a remote BuildKit, a Kubernetes driver).
    pub builder: Option<String>,
    /// podman `--connection NAME` (a `podman system connection`).
    pub connection: Option<String>,
    /// `CONTAINER_HOST` is set: podman runs as a remote client.
    pub container_host: bool,
}

impl Remote {
    pub(crate) fn refuse_all(&self, kind: BackendKind) -> Result<(), UserError> {
        if self.builder.is_some() {
            return Err(UserError::engine(format!(
                "--builder is a docker buildx option; {kind} has no buildx builders (use --backend docker)"
            )));
        }
        if self.connection.is_some() {
            return Err(UserError::engine(format!(
                "--connection is a podman option; {kind} has no podman connections (use --backend podman)"
            )));
        }
        Ok(())
    }
}

/// What a release will ask of the engine, so it can refuse up front.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ReleaseNeeds {
    /// Every platform this machine builds.
    pub platforms: Vec<Platform>,
    /// Whether the release logs in (any auth mode but docker-config).
    pub login: bool,
}

/// docker's client config file: `$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`.
pub(crate) fn docker_config_file(vars: &BTreeMap<String, String>) -> Option<Utf8PathBuf> {
    match vars.get("DOCKER_CONFIG") {
        Some(d) => Some(Utf8PathBuf::from(d).join("config.json")),
        None => crate::dirs::home(vars).map(|h| h.join(".docker/config.json")),
    }
}

/// A registry login: user name and the secret, which only ever goes to a child's stdin.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Login {
    pub host: String,
    pub username: String,
    pub password: String,
    /// A loopback registry, spoken to over plain HTTP.
    pub plain_http: bool,
}

impl fmt::Debug for Login {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Login({}@{}, password hidden)", self.username, self.host)
    }
}

/// How an engine's commands find a release's credentials (see [`Backend::auth_store`]).
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct AuthStore {
    /// Set on every engine call after the login (`REGISTRY_AUTH_FILE`, `DOCKER_CONFIG`).
    pub env: Vec<(String, String)>,
    /// Files written into the store before the login (0600).
    pub files: Vec<StoreFile>,
    /// Paths in the store to link to the user's own (docker's `contexts` directory).
    pub links: Vec<(Utf8PathBuf, String)>,
}

/// One file of a temporary login store: a JSON object, plus top-level keys copied from the
/// user's own file (docker's `currentContext`, so the user's engine choice keeps working).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct StoreFile {
    pub name: String,
    pub content: serde_json::Value,
    pub copy_from: Option<Utf8PathBuf>,
    pub copy_keys: Vec<&'static str>,
}

/// Where one platform of a release goes: its content-addressed staging tag, which is also its
/// local name, and the file the engine writes the pushed digest to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Stage {
    pub tag: ImageRef,
    pub digest_file: Utf8PathBuf,
    /// An empty directory for an engine that exports an OCI layout ([`Backend::stage_layout`]).
    pub layout: Utf8PathBuf,
    /// A loopback registry, spoken to over plain HTTP.
    pub plain_http: bool,
}

/// How an engine builds one image for several platforms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum MultiPlatform {
    /// One build names every platform (buildx `--platform a,b`, Apple repeated `--arch`); the
    /// engine checks up front whether it can keep the result.
    OneInvocation,
    /// One build per platform, each tagged on its own, then a local manifest list (podman):
    /// every child is built FROM the exact per-platform image of its parent, which also keeps
    /// podman's platform-blind layer cache from mixing architectures.
    PerPlatformThenList,
}

/// `<cli> image inspect REFS...`: the same words on all three CLIs.
pub(crate) fn image_inspect(cli: Invocation, refs: &[&ImageRef]) -> Invocation {
    cli.args(["image", "inspect"])
        .args(refs.iter().map(|r| r.as_str()))
        .read_only()
}

/// A request for backend unit tests: `tag` plus `extra` tags, built for `platforms`.
#[cfg(test)]
pub(crate) fn test_request(
    tag: &str,
    extra: &str,
    platforms: &[Platform],
    output: crate::build::Output,
) -> BuildRequest {
    let mut r = BuildRequest::new(
        "/ctx".into(),
        "/ctx/Dockerfile".into(),
        ImageRef::parse(tag).unwrap(),
    );
    r.tags.push(ImageRef::parse(extra).unwrap());
    r.platforms = platforms.to_vec();
    r.output = output;
    r
}

pub(crate) fn labels_at(v: Option<&serde_json::Value>) -> BTreeMap<String, String> {
    v.and_then(|l| BTreeMap::<String, String>::deserialize(l).ok())
        .unwrap_or_default()
}

/// Failures every engine reports the same way, with what to do about them. `engine_hints` are
/// the backend's own, tried first.
pub(crate) fn hint_from(tail: &[String], engine_hints: &[(&str, &str)]) -> Option<String> {
    let text = tail.join("\n").to_ascii_lowercase();
    let common = [
        (
            "exec format error",
            "the base image lacks this architecture or qemu binfmt is not installed; install qemu-user-static",
        ),
        (
            "no space left on device",
            "the engine's storage is full: free disk space (remove unused images) and retry",
        ),
        (
            "manifest unknown",
            "the base image or tag does not exist in the registry; check the name",
        ),
    ];
    engine_hints
        .iter()
        .chain(common.iter())
        .find(|(needle, _)| text.contains(&needle.to_ascii_lowercase()))
        .map(|(_, h)| h.to_string())
}

/// Step lines in BuildKit's format: `#7 [2/5] RUN ...` or `#9 [linux/arm64 3/4] COPY ...`.
pub(crate) fn buildkit_step(line: &str) -> Option<Step> {
    use std::sync::OnceLock;
    static RE: OnceLock<regex::Regex> = OnceLock::new();
    let re = RE.get_or_init(|| {
        regex::Regex::new(r"^#\d+ \[(?:[^\]]*\s)?(\d+)/(\d+)\] (.*)$").expect("buildkit step")
    });
    step_from(re, line)
}

/// BuildKit's summary of a failed RUN (`ERROR: failed to solve: process "/bin/sh -c x" did not
/// complete successfully: exit code: 1`, and the `ERROR: process ...` line before it).
pub(crate) fn buildkit_step_failure(line: &str) -> bool {
    line.contains("did not complete successfully")
}

pub(crate) fn step_from(re: &regex::Regex, line: &str) -> Option<Step> {
    let c = re.captures(line.trim_end())?;
    Some(Step {
        current: c.get(1)?.as_str().parse().ok()?,
        total: c.get(2)?.as_str().parse().ok()?,
        text: c.get(3).map(|m| m.as_str().to_string()).unwrap_or_default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buildkit_steps_with_and_without_platform() {
        let s = buildkit_step("#9 [linux/arm64 3/4] COPY x y").unwrap();
        assert_eq!((s.current, s.total, s.text.as_str()), (3, 4, "COPY x y"));
        let s = buildkit_step("#6 [2/4] RUN apt-get update").unwrap();
        assert_eq!((s.current, s.total), (2, 4));
        assert_eq!(buildkit_step("#6 DONE 0.1s"), None);
    }

    #[test]
    fn engine_hints_come_before_common_ones() {
        let tail = vec!["Error: no space left on device".to_string()];
        assert!(hint_from(&tail, &[]).unwrap().contains("storage is full"));
        assert_eq!(
            hint_from(&tail, &[("no space left", "prune it")]).as_deref(),
            Some("prune it")
        );
        assert_eq!(hint_from(&["fine".into()], &[]), None);
    }
}
