//! Docker: `docker buildx build` when the buildx plugin answers, otherwise the classic builder
//! (`DOCKER_BUILDKIT=0 docker build`), which is single-platform and does not set TARGETARCH.
//! What buildx can do also depends on its current builder: the default `docker` driver on the
//! containerd image store (Docker 29's default for new installs) keeps several platforms in one
//! image and exports caches and attestations; on the older overlay2 store it can do neither.
//! <https://docs.docker.com/reference/cli/docker/buildx/build/>,
//! <https://docs.docker.com/reference/cli/docker/image/build_legacy/>,
//! <https://docs.docker.com/build/builders/drivers/docker/>

use super::compat::{build_flags, DockerCli};
use super::{
    hint_from, labels_at, AuthStore, Backend, BackendKind, Capability, ImageCommands, Inspected,
    Login, Probe, ProbeKind, ReleaseNeeds, Remote, Stage, StoreFile,
};
use crate::build::{BuildRequest, Output, PullPolicy, RunSpec};
use crate::error::UserError;
use crate::exec::{Captured, OutputParser};
use crate::image_ref::ImageRef;
use crate::invocation::Invocation;
use crate::platform::Platform;
use crate::report::Step;
use camino::{Utf8Path, Utf8PathBuf};
use std::collections::BTreeMap;
use std::sync::OnceLock;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Builder {
    Buildx,
    Classic,
}

pub(crate) struct Docker {
    cli: DockerCli,
    /// buildx `--builder NAME`, passed to every buildx call.
    builder_name: Option<String>,
    builder: OnceLock<Builder>,
    /// The current buildx builder: its driver and, for the `docker` driver, the daemon's image
    /// store. Learned once, before the first build.
    driver: OnceLock<Driver>,
}

/// What `docker buildx inspect` says about the current builder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Driver {
    /// `docker`, `docker-container`, `kubernetes`, `remote`.
    pub name: String,
    /// The daemon keeps images in containerd (the BuildKit worker's
    /// `org.mobyproject.buildkit.worker.containerd.*` labels), so the `docker` driver can hold
    /// several platforms in one image and export caches and attestations.
    pub containerd_store: bool,
}

impl Driver {
    /// Whether this builder can export what only BuildKit's own exporters write (registry
    /// caches, attestations, several platforms in one image): every driver but `docker` on
    /// the overlay2 store.
    fn exports(&self) -> bool {
        self.name != "docker" || self.containerd_store
    }

    /// `docker buildx inspect`'s `Driver:` line and the worker labels under `Labels:`.
    pub(crate) fn parse(text: &str) -> Driver {
        let name = text
            .lines()
            .find_map(|l| {
                l.trim()
                    .strip_prefix("Driver:")
                    .map(|d| d.trim().to_string())
            })
            .unwrap_or_else(|| "unknown".into());
        let containerd_store = text.lines().any(|l| {
            l.trim()
                .starts_with("org.mobyproject.buildkit.worker.containerd.")
        });
        Driver {
            name,
            containerd_store,
        }
    }
}

/// The docker 23+ client prints this block on every classic build; the warning we give when
/// we fall back says why, once, and the block itself is kept out of the output.
const LEGACY_NOTICE: [&str; 4] = [
    "DEPRECATED: The legacy builder is deprecated",
    "Install the buildx component to build images with BuildKit",
    "https://docs.docker.com/go/buildx/",
    "BuildKit is currently disabled; enable it by removing the DOCKER_BUILDKIT=0",
];

/// The last line of the notice's DOCKER_BUILDKIT=0 form, matched whole: alone it is too
/// common a word to match inside other lines.
const LEGACY_NOTICE_END: &str = "environment-variable.";

impl Docker {
    pub(crate) fn new(program: impl Into<String>) -> Self {
        Docker {
            cli: DockerCli::new(program, &[]),
            builder_name: None,
            builder: OnceLock::new(),
            driver: OnceLock::new(),
        }
    }

    /// A backend whose builder is already known (tests).
    #[cfg(test)]
    pub(crate) fn with_builder(program: impl Into<String>, builder: Builder) -> Self {
        let d = Docker::new(program);
        let _ = d.builder.set(builder);
        d
    }

    /// Before the probe has answered, plans assume buildx.
    pub(crate) fn builder(&self) -> Builder {
        *self.builder.get().unwrap_or(&Builder::Buildx)
    }

    /// Whether the current builder can export caches, attestations and multi-platform images;
    /// before the probe has answered, plans assume it can.
    fn exports(&self) -> bool {
        self.builder() == Builder::Buildx && self.driver.get().is_none_or(Driver::exports)
    }

    /// A local image of several platforms: buildx on a builder that exports them into the
    /// daemon's containerd store.
    fn loads_multi_platform(&self) -> bool {
        self.builder() == Builder::Buildx
            && self
                .driver
                .get()
                .is_none_or(|d| d.name == "docker" && d.containerd_store)
    }

    fn cmd(&self) -> Invocation {
        self.cli.cmd()
    }
}

impl OutputParser for Docker {
    fn step(&self, line: &str) -> Option<Step> {
        use std::sync::OnceLock;
        static CLASSIC: OnceLock<regex::Regex> = OnceLock::new();
        let re =
            CLASSIC.get_or_init(|| regex::Regex::new(r"^Step (\d+)/(\d+) : (.*)$").expect("step"));
        super::step_from(re, line).or_else(|| super::buildkit_step(line))
    }

    fn hint(&self, tail: &[String]) -> Option<String> {
        hint_from(
            tail,
            &[
                ("permission denied while trying to connect to the docker daemon", "add yourself to the docker group, or use --backend podman"),
                ("cannot connect to the docker daemon", "start dockerd (e.g. `sudo systemctl start docker`), check DOCKER_HOST / `docker context ls`, or use --backend podman"),
                ("no space left on device", "docker's storage is full: `docker system prune` frees unused images and build cache"),
            ],
        )
    }

    fn noise(&self, line: &str) -> bool {
        LEGACY_NOTICE.iter().any(|n| line.contains(n)) || line.trim() == LEGACY_NOTICE_END
    }

    /// The classic builder's `The command '...' returned a non-zero code: 127`, BuildKit's
    /// `ERROR: failed to solve: process "..." did not complete successfully`.
    fn step_failure(&self, line: &str) -> bool {
        line.contains("returned a non-zero code") || super::buildkit_step_failure(line)
    }
}

impl Backend for Docker {
    fn kind(&self) -> BackendKind {
        BackendKind::Docker
    }

    fn probe(&self, req: &BuildRequest) -> Option<Probe> {
        let _ = req;
        // one process answers both questions, once per process and only before the first
        // build: whether the plugin is there (a docker CLI without it says `buildx` is not a
        // docker command) and what its current builder can do (driver, image store). Each
        // plugin call costs ~0.15 s of Go start-up; this one is the only one.
        if self.builder.get().is_some() {
            return None;
        }
        let mut invocation = self.cmd().args(["buildx", "inspect"]).read_only();
        if let Some(b) = &self.builder_name {
            invocation = invocation.arg(b);
        }
        Some(Probe {
            kind: ProbeKind::Builder,
            invocation,
        })
    }

    fn learn(&self, probe: ProbeKind, out: &Captured) -> Option<String> {
        match probe {
            ProbeKind::Builder => {
                let text = format!("{}\n{}", out.stdout, out.stderr).to_ascii_lowercase();
                // the CLI's words for a plugin it cannot find; any other failure (a daemon
                // down, a builder name that does not exist) is buildx's, and the build will
                // say it in full
                let missing = !out.success
                    && ["is not a docker command", "unknown command"]
                        .iter()
                        .any(|m| text.contains(m));
                if !missing {
                    let _ = self.builder.set(Builder::Buildx);
                    let _ = self.driver.set(Driver::parse(&out.stdout));
                    return None;
                }
                let _ = self.builder.set(Builder::Classic);
                Some(
                    "docker buildx is not available (`docker buildx inspect`: buildx is not a \
                     docker command); using the classic builder, which builds one platform at a \
                     time (the docker client's \"legacy builder is deprecated\" notice is about \
                     this, and is not shown). Install the buildx plugin (docker-buildx-plugin) \
                     for BuildKit and multi-platform builds."
                        .to_string(),
                )
            }
        }
    }

    fn check_build(&self, req: &BuildRequest) -> Result<(), UserError> {
        let multi = req.is_multi_platform();
        let platforms = Platform::join(&req.platforms);
        let driver = self.driver.get();
        let driver_name = driver.map(|d| d.name.as_str());
        match self.builder() {
            Builder::Classic if multi => Err(UserError::engine(format!(
                "the classic docker builder cannot build several platforms ({platforms}); install \
                 the buildx plugin, build one platform (--platform), or use --backend podman"
            ))),
            Builder::Classic if matches!(req.output, Output::Oci(_)) => Err(UserError::engine(
                "the classic docker builder cannot write an OCI archive; install the buildx plugin, or use --backend podman",
            )),
            Builder::Classic if req.pull == PullPolicy::Never => Err(UserError::engine(
                "the classic docker builder has no way to forbid pulling the base image; install the buildx plugin, or use --backend podman",
            )),
            Builder::Buildx if multi && driver_name == Some("docker") && !self.exports() => {
                Err(UserError::engine(format!(
                    "the current buildx builder uses the `docker` driver on the overlay2 image \
                     store, which cannot build several platforms ({platforms}); enable the \
                     containerd image store (\"features\": {{\"containerd-snapshotter\": true}} in \
                     daemon.json), or run `docker buildx create --use --driver docker-container`"
                )))
            }
            Builder::Buildx if multi && req.output == Output::Load && !self.loads_multi_platform() => {
                Err(UserError::engine(format!(
                    "docker cannot load a multi-platform image ({platforms}) into its image store \
                     from this builder; build one platform (--platform), publish it (hjk --push), \
                     use the `docker` driver on the containerd image store, or use --backend podman"
                )))
            }
            Builder::Buildx if req.local_parent && driver_name.is_some_and(|d| d != "docker") => {
                Err(UserError::engine(format!(
                    "the current buildx builder uses the `{}` driver, which cannot see images in \
                     the local docker store that this build is FROM; run `docker buildx use \
                     default`, or publish the parent first (hjk --push)",
                    driver_name.unwrap_or_default()
                )))
            }
            _ => super::check_capabilities(self, req),
        }
    }

    /// BuildKit's: `COPY --link` with buildx; caches, attestations and rewritten timestamps
    /// with a builder that exports them (see `Driver::exports`). The classic builder has none.
    fn supports(&self, c: Capability) -> bool {
        match c {
            Capability::CopyLink => self.builder() == Builder::Buildx,
            Capability::RegistryCache | Capability::Provenance | Capability::ReproducibleTimes => {
                self.exports()
            }
        }
    }

    fn builder_note(&self) -> String {
        match (self.builder(), self.driver.get()) {
            (Builder::Classic, _) => " (the classic builder: the buildx plugin is missing)".into(),
            (Builder::Buildx, Some(d)) if !d.exports() => {
                " (buildx's `docker` driver on the overlay2 image store)".into()
            }
            _ => String::new(),
        }
    }

    fn build(&self, req: &BuildRequest) -> Vec<Invocation> {
        let classic = self.builder() == Builder::Classic;
        let mut inv = if classic {
            // without DOCKER_BUILDKIT=0 a buildx-less client refuses to build at all
            self.cmd().env("DOCKER_BUILDKIT", "0").arg("build")
        } else {
            let inv = self.cmd().args(["buildx", "build"]);
            match &self.builder_name {
                Some(b) => inv.args(["--builder", b]),
                None => inv,
            }
        };
        for t in &req.tags {
            inv = inv.args(["--tag", t.as_str()]);
        }
        inv = inv.args(["--platform".to_string(), Platform::join(&req.platforms)]);
        if classic {
            // the classic builder leaves the automatic platform args empty; pass the ones the
            // Dockerfile declares (others make it warn that they were not consumed)
            let p = req.platforms[0];
            for (k, v) in [
                ("TARGETPLATFORM", p.to_string()),
                ("TARGETOS", "linux".into()),
                ("TARGETARCH", p.arch().into()),
            ] {
                if !req.build_args.contains_key(k) && req.declares_arg(k) {
                    inv = inv.args(["--build-arg".to_string(), format!("{k}={v}")]);
                }
            }
        }
        inv = inv.args(build_flags(req));
        if req.pull == PullPolicy::Always {
            inv = inv.arg("--pull");
        }
        if let Some(epoch) = req.source_date_epoch {
            // BuildKit reads it as a build argument: the image's times, and, with
            // `rewrite-timestamp` on an exporter that allows it, every file's
            inv = inv.args([
                "--build-arg".to_string(),
                format!("SOURCE_DATE_EPOCH={epoch}"),
            ]);
        }
        if let Some(cache) = &req.cache {
            inv = inv.args([
                "--cache-from".to_string(),
                format!("type=registry,ref={cache}"),
                "--cache-to".into(),
                format!("type=registry,ref={cache},mode=max,ignore-error=true"),
            ]);
        }
        if !classic {
            inv = match &req.output {
                Output::Load => inv.arg("--load"),
                Output::Push => inv.arg("--push"),
                Output::Oci(p) => inv.args(["--output".to_string(), format!("type=oci,dest={p}")]),
            };
            // buildx attaches a provenance attestation by default where it can; a local image
            // has no use for it, and writing it costs time on every build
            inv = inv.arg(if req.provenance {
                "--provenance=mode=max"
            } else {
                "--provenance=false"
            });
            inv = inv.args(["--progress", "plain"]);
        }
        if classic {
            // a failed step's container is removed too (the classic builder keeps it by
            // default, and ocx's build-time `opencode --version` check may fail)
            inv = inv.arg("--force-rm");
        }
        inv = inv.arg(req.context.as_str());
        let mut out = vec![inv];
        if classic && req.output == Output::Push {
            out.extend(
                req.tags
                    .iter()
                    .map(|t| self.cmd().args(["push", t.as_str()])),
            );
        }
        out
    }

    fn can_load(&self, platforms: &[Platform]) -> bool {
        platforms.len() <= 1 || self.builder() == Builder::Classic || self.loads_multi_platform()
    }

    fn commands(&self) -> &dyn ImageCommands {
        &self.cli
    }

    fn parse_inspect(&self, refs: &[&ImageRef], out: &Captured) -> Inspected {
        let names_match = |r: &ImageRef, n: &str| self.names_match(r, n);
        self.cli.parse_inspect(refs, out, names_match, |v| {
            let digest = v
                .get("RepoDigests")
                .and_then(|d| d.get(0))
                .and_then(|d| d.as_str())
                .and_then(|d| d.split_once('@'))
                .map(|(_, d)| d);
            let digest = super::reported_digest("RepoDigests", digest)?;
            let id = v.get("Id").and_then(|i| i.as_str()).map(String::from);
            Ok(DockerCli::info(
                v,
                id,
                digest,
                labels_at(v.pointer("/Config/Labels")),
            ))
        })
    }

    /// docker's store holds one platform per tag, so per-platform instances cannot be
    /// assembled locally; each tag is pushed as it is.
    fn publish(&self, tags: &[ImageRef], _instances: &[&ImageRef]) -> Vec<Invocation> {
        tags.iter()
            .map(|t| self.cmd().args(["push", t.as_str()]))
            .collect()
    }

    fn run(&self, spec: &RunSpec) -> Invocation {
        self.cli.run(spec, &[])
    }

    fn configure(&mut self, remote: &Remote) -> Result<(), UserError> {
        if remote.connection.is_some() {
            return Err(UserError::engine(
                "--connection is a podman option; for a remote docker set DOCKER_HOST or use a docker context (`docker context use NAME`)",
            ));
        }
        self.builder_name = remote.builder.clone();
        Ok(())
    }

    fn check_release(&self, needs: &ReleaseNeeds) -> Result<(), UserError> {
        if self.builder() == Builder::Classic && needs.platforms.len() > 1 {
            return Err(UserError::engine(format!(
                "the classic docker builder releases one platform per machine, not {}: run \
                 `hjk images release --platform linux/amd64 --push-by-digest --metadata-file \
                 amd64.json` here and the same for arm64 on an arm64 machine, then `hjk images \
                 merge amd64.json arm64.json`; or install the buildx plugin",
                Platform::join(&needs.platforms)
            )));
        }
        if self.builder() == Builder::Classic && self.builder_name.is_some() {
            return Err(UserError::engine(
                "--builder needs the buildx plugin, and this docker has only the classic builder",
            ));
        }
        Ok(())
    }

    /// <https://docs.docker.com/reference/cli/docker/#environment-variables>: `DOCKER_CONFIG`
    /// moves the whole client configuration, so the user's current context, contexts, buildx
    /// builders and CLI plugins are carried over into ours. The store's `config.json` starts
    /// with an empty `auths` entry for the host: a config without any auth makes the docker CLI
    /// pick the platform's default credential helper (`secretservice`, `pass`, `osxkeychain`,
    /// `desktop`) if one is on PATH, and `login` would then put the release's secret in the
    /// user's keychain, over the user's own login for that host, where it outlives the store.
    fn auth_store(&self, dir: &Utf8Path, vars: &BTreeMap<String, String>, host: &str) -> AuthStore {
        let user = vars
            .get("DOCKER_CONFIG")
            .map(Utf8PathBuf::from)
            .or_else(|| {
                vars.get("HOME")
                    .map(|h| Utf8PathBuf::from(h).join(".docker"))
            });
        let mut store = AuthStore {
            env: vec![("DOCKER_CONFIG".into(), dir.to_string())],
            files: vec![StoreFile {
                name: "config.json".into(),
                content: serde_json::json!({"auths": {host: {}}}),
                copy_from: user.as_ref().map(|u| u.join("config.json")),
                copy_keys: vec!["currentContext"],
            }],
            ..Default::default()
        };
        if let Some(user) = user {
            for d in ["contexts", "buildx", "cli-plugins"] {
                store.links.push((user.join(d), d.into()));
            }
        }
        store
    }

    fn login_files(&self, vars: &BTreeMap<String, String>) -> Vec<Utf8PathBuf> {
        super::docker_config_file(vars).into_iter().collect()
    }

    fn login(&self, login: &Login, dir: &Utf8Path) -> Invocation {
        // dockerd treats 127.0.0.0/8 as an insecure registry by default: nothing to add
        self.cli
            .login(login, &[])
            .env("DOCKER_CONFIG", dir.as_str())
    }

    /// buildx writes the image as an OCI layout (`--output type=oci,tar=false`) for the
    /// workflow to push by digest, with its `--metadata-file` naming that digest: on the
    /// containerd image store the image exporter always unpacks, which rules out
    /// `rewrite-timestamp`, and only rewritten file times make the digest reproducible. The
    /// provenance attestation, when asked for, is in the layout's index beside the image. The
    /// classic builder builds, then `docker push`es.
    fn stage(&self, req: &BuildRequest, stage: &Stage) -> Vec<Invocation> {
        let mut req = req.clone();
        req.tags = vec![stage.tag.clone()];
        req.output = Output::Oci(stage.layout.clone());
        if self.builder() == Builder::Classic {
            req.output = Output::Load;
            let mut out = self.build(&req);
            out.push(self.cmd().args(["push", stage.tag.as_str()]));
            return out;
        }
        let mut out = self.build(&req);
        if let Some(build) = out.last_mut() {
            let args = std::mem::take(&mut build.args);
            let mut skip = false;
            for a in args {
                if skip {
                    skip = false;
                    continue;
                }
                match a.as_str() {
                    "--output" => {
                        let mut output = format!("type=oci,dest={},tar=false", stage.layout);
                        if req.source_date_epoch.is_some() {
                            output.push_str(",rewrite-timestamp=true");
                        }
                        build.args.extend([
                            "--output".to_string(),
                            output,
                            "--metadata-file".into(),
                            stage.digest_file.to_string(),
                        ]);
                        skip = true;
                    }
                    "--tag" => skip = true,
                    _ => build.args.push(a),
                }
            }
        }
        out
    }

    fn stage_layout(&self) -> bool {
        self.builder() == Builder::Buildx
    }

    fn staged_digest(&self, text: &str) -> Option<String> {
        let v: serde_json::Value = serde_json::from_str(text).ok()?;
        v.get("containerimage.digest")?.as_str().map(String::from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::Login;
    use crate::build::{Mount, RunAs};

    fn req(platforms: &[Platform], output: Output) -> BuildRequest {
        let mut r = crate::backend::test_request(
            "reg.io/a/b:1",
            "reg.io/a/b:latest-dev",
            platforms,
            output,
        );
        r.build_args
            .insert("BASE_IMAGE".into(), "reg.io/a/base:1".into());
        r.labels.insert("k".into(), "v".into());
        r.target = Some("final".into());
        r
    }

    /// `docker buildx inspect` of the default builder on dockerd 26.1.5 with the containerd
    /// image store, as printed on the machine the tests run on.
    const INSPECT_CONTAINERD: &str = "Name:          default
Driver:        docker
Last Activity: 2026-12-07 04:58:46 +0000 UTC

Nodes:
Name:             default
Endpoint:         default
Status:           running
BuildKit version: v0.0.0+unknown
Platforms:        linux/amd64, linux/amd64/v2, linux/amd64/v3, linux/amd64/v4, linux/arm64, linux/riscv64
Labels:
 org.mobyproject.buildkit.worker.containerd.namespace: moby
 org.mobyproject.buildkit.worker.containerd.uuid:      71069fcd-1358-4c0d-8e8c-b4a49f393a16
 org.mobyproject.buildkit.worker.executor:             containerd
 org.mobyproject.buildkit.worker.hostname:             vm
 org.mobyproject.buildkit.worker.moby.host-gateway-ip: 172.17.0.1
 org.mobyproject.buildkit.worker.network:              host
 org.mobyproject.buildkit.worker.selinux.enabled:      false
 org.mobyproject.buildkit.worker.snapshotter:          overlayfs
";

    /// The same daemon version on the overlay2 image store (a second dockerd started with
    /// `--storage-driver overlay2`): no containerd worker labels.
    const INSPECT_OVERLAY2: &str = "Name:          default
Driver:        docker
Last Activity: 2026-12-07 04:58:46 +0000 UTC

Nodes:
Name:             default
Endpoint:         default
Status:           running
BuildKit version: v0.0.0+unknown
Platforms:        linux/amd64, linux/amd64/v2, linux/arm64, linux/riscv64
Labels:
 org.mobyproject.buildkit.worker.moby.host-gateway-ip: 10.99.0.1
";

    /// A docker backend whose probe answered: `buildx inspect` of its builder.
    fn probed(inspect: &str) -> Docker {
        let d = Docker::new("docker");
        let r = req(&[Platform::LinuxAmd64], Output::Load);
        let probe = d.probe(&r).unwrap();
        assert_eq!(probe.kind, ProbeKind::Builder);
        assert_eq!(probe.invocation.argv(), ["docker", "buildx", "inspect"]);
        assert!(probe.invocation.read_only);
        assert_eq!(d.learn(probe.kind, &Captured::stdout(inspect)), None);
        assert!(d.probe(&r).is_none(), "one probe, once");
        d
    }

    #[test]
    fn a_cli_without_the_plugin_falls_back_in_either_clis_words() {
        for said in [
            "docker: unknown command: docker buildx\n\nRun 'docker --help' for more information\n",
            "docker: 'buildx' is not a docker command.\nSee 'docker --help'\n",
        ] {
            let d = Docker::new("docker");
            let r = req(&[Platform::LinuxAmd64], Output::Load);
            let probe = d.probe(&r).unwrap();
            let warning = d.learn(probe.kind, &Captured::failed(1, said)).unwrap();
            assert!(
                warning.starts_with("docker buildx is not available"),
                "{warning}"
            );
            assert_eq!(d.builder(), Builder::Classic);
        }
        // a daemon that is down is not a missing plugin: buildx stays, and its build says why
        let d = Docker::new("docker");
        let r = req(&[Platform::LinuxAmd64], Output::Load);
        let probe = d.probe(&r).unwrap();
        let down = "ERROR: Cannot connect to the Docker daemon at unix:///var/run/docker.sock. Is the docker daemon running?\n";
        assert_eq!(d.learn(probe.kind, &Captured::failed(1, down)), None);
        assert_eq!(d.builder(), Builder::Buildx);
    }

    #[test]
    fn buildx_single_multi_and_oci() {
        let d = Docker::with_builder("docker", Builder::Buildx);
        let single = d.build(&req(&[Platform::LinuxAmd64], Output::Load));
        assert_eq!(
            single[0].to_string(),
            "docker buildx build --tag reg.io/a/b:1 --tag reg.io/a/b:latest-dev --platform linux/amd64 --file /ctx/Dockerfile \
             --build-arg BASE_IMAGE=reg.io/a/base:1 --label k=v --target final --load --provenance=false --progress plain /ctx"
        );
        let multi = d.build(&req(&Platform::ALL, Output::Push));
        assert_eq!(multi.len(), 1);
        assert!(
            multi[0]
                .to_string()
                .contains("--platform linux/amd64,linux/arm64 ")
                && multi[0].args.contains(&"--push".into())
        );
        let oci = d.build(&req(&Platform::ALL, Output::Oci("/out/img.tar".into())));
        assert!(oci[0]
            .args
            .windows(2)
            .any(|w| w == ["--output", "type=oci,dest=/out/img.tar"]));
        // the containerd image store keeps several platforms in one local image
        let d = probed(INSPECT_CONTAINERD);
        assert!(d.check_build(&req(&Platform::ALL, Output::Load)).is_ok());
        assert!(d.can_load(&Platform::ALL));
        for c in [
            Capability::CopyLink,
            Capability::RegistryCache,
            Capability::Provenance,
            Capability::ReproducibleTimes,
        ] {
            assert!(d.supports(c), "{c:?}");
        }
    }

    #[test]
    fn the_docker_driver_on_overlay2_cannot_build_multi_arch_or_export() {
        let d = probed(INSPECT_OVERLAY2);
        let err = d
            .check_build(&req(&Platform::ALL, Output::Push))
            .unwrap_err();
        assert!(
            err.message().contains(
                "`docker` driver on the overlay2 image store, which cannot build several platforms"
            ) && err.message().contains("containerd-snapshotter"),
            "{err}"
        );
        assert!(!d.can_load(&Platform::ALL) && d.can_load(&[Platform::LinuxArm64]));
        assert!(d.supports(Capability::CopyLink));
        assert!(!d.supports(Capability::RegistryCache) && !d.supports(Capability::Provenance));
        let mut r = req(&[Platform::LinuxAmd64], Output::Load);
        r.provenance = true;
        let err = d.check_build(&r).unwrap_err();
        assert_eq!(
            err.message(),
            "docker cannot make provenance attestations (--provenance) (buildx's `docker` driver on the overlay2 image store); leave it out, or use an engine that can (docker with the buildx plugin can make all of them)"
        );
        assert_eq!(
            Driver::parse(INSPECT_CONTAINERD),
            Driver {
                name: "docker".into(),
                containerd_store: true
            }
        );
    }

    #[test]
    fn container_driver_cannot_build_from_a_local_parent() {
        let d = probed("Name: b\nDriver: docker-container\n");
        let mut r = req(&[Platform::LinuxAmd64], Output::Load);
        r.local_parent = true;
        assert!(d.check_build(&r).unwrap_err().message().contains(
            "`docker-container` driver, which cannot see images in the local docker store"
        ));
        r.local_parent = false;
        assert!(d.check_build(&r).is_ok());
    }

    #[test]
    fn classic_passes_declared_platform_args_and_pushes_separately() {
        let d = Docker::with_builder("docker", Builder::Classic);
        let mut r = req(&[Platform::LinuxArm64], Output::Push);
        r.pull = PullPolicy::Always;
        r.declared_args = Some(["TARGETARCH".to_string()].into());
        let invs = d.build(&r);
        assert_eq!(
            invs[0].env,
            [("DOCKER_BUILDKIT".to_string(), "0".to_string())]
        );
        assert_eq!(invs[0].args[0], "build");
        assert_eq!(
            invs[0].args[invs[0].args.len() - 2..],
            ["--force-rm", "/ctx"],
            "no failed step's container is left behind"
        );
        let text = invs[0].to_string();
        assert!(text.contains("--build-arg TARGETARCH=arm64"), "{text}");
        assert!(!text.contains("TARGETOS"), "undeclared: {text}");
        assert!(
            invs[0].args.contains(&"--pull".into()) && !invs[0].args.contains(&"--push".into())
        );
        assert_eq!(invs[1].argv(), ["docker", "push", "reg.io/a/b:1"]);
        assert_eq!(invs[2].argv(), ["docker", "push", "reg.io/a/b:latest-dev"]);
        let err = d
            .check_build(&req(&Platform::ALL, Output::Load))
            .unwrap_err();
        assert!(err
            .message()
            .starts_with("the classic docker builder cannot build several platforms"));
        r.pull = PullPolicy::Never;
        assert!(d.check_build(&r).is_err(), "refused, not ignored");
    }

    #[test]
    fn release_stage_buildx_writes_a_layout_and_classic_pushes_after() {
        let stage = Stage {
            tag: ImageRef::parse("127.0.0.1:5001/hj:stage-top-arm64-abc").unwrap(),
            digest_file: "/t/m.json".into(),
            layout: "/t/top.oci".into(),
            plain_http: true,
        };
        let mut d = Docker::with_builder("docker", Builder::Buildx);
        d.configure(&Remote {
            builder: Some("remote-bk".into()),
            ..Default::default()
        })
        .unwrap();
        let mut r = req(&[Platform::LinuxArm64], Output::Push);
        let invs = d.stage(&r, &stage);
        assert_eq!(invs.len(), 1);
        let text = invs[0].to_string();
        assert!(
            text.starts_with("docker buildx build --builder remote-bk --platform linux/arm64 "),
            "{text}"
        );
        assert!(
            text.contains(" --output type=oci,dest=/t/top.oci,tar=false --metadata-file /t/m.json --provenance=false "),
            "{text}"
        );
        assert!(
            !text.contains("--tag") && !text.contains("--load") && !text.contains("--push"),
            "{text}"
        );
        assert!(d.stage_layout(), "the workflow pushes the layout");
        // a reproducible, attested release: timestamps rewritten in the layout, provenance
        // beside the image, the layer cache in the registry
        r.source_date_epoch = Some(1_700_000_000);
        r.provenance = true;
        r.cache = Some(ImageRef::parse("127.0.0.1:5001/hj-cache:top-arm64").unwrap());
        let text = d.stage(&r, &stage)[0].to_string();
        for want in [
            " --build-arg SOURCE_DATE_EPOCH=1700000000 ",
            " --cache-from type=registry,ref=127.0.0.1:5001/hj-cache:top-arm64 ",
            " --cache-to type=registry,ref=127.0.0.1:5001/hj-cache:top-arm64,mode=max,ignore-error=true ",
            " --output type=oci,dest=/t/top.oci,tar=false,rewrite-timestamp=true --metadata-file /t/m.json --provenance=mode=max ",
        ] {
            assert!(text.contains(want), "{want} in {text}");
        }
        assert!(d.check_build(&r).is_ok());
        assert_eq!(
            d.staged_digest(r#"{"containerimage.digest": "sha256:ff", "image.name": "x"}"#)
                .as_deref(),
            Some("sha256:ff")
        );
        assert!(d
            .check_release(&ReleaseNeeds {
                platforms: Platform::ALL.to_vec(),
                login: true
            })
            .is_ok());

        let c = Docker::with_builder("docker", Builder::Classic);
        assert!(!c.stage_layout());
        let err = c.check_build(&r).unwrap_err();
        assert!(
            err.message().starts_with(
                "docker cannot make a registry build cache (--cache-repo) (the classic builder"
            ),
            "{err}"
        );
        let invs = c.stage(&req(&[Platform::LinuxAmd64], Output::Push), &stage);
        assert_eq!(
            invs[1].argv(),
            ["docker", "push", "127.0.0.1:5001/hj:stage-top-arm64-abc"]
        );
        assert_eq!(c.staged_digest("{}"), None);
        let err = c
            .check_release(&ReleaseNeeds {
                platforms: Platform::ALL.to_vec(),
                login: true,
            })
            .unwrap_err();
        assert!(
            err.message()
                .contains("then `hjk images merge amd64.json arm64.json`"),
            "{err}"
        );
    }

    #[test]
    fn release_login_keeps_the_users_contexts_builders_and_plugins() {
        let d = Docker::new("docker");
        let mut vars = BTreeMap::new();
        vars.insert("HOME".to_string(), "/home/u".to_string());
        let store = d.auth_store(Utf8Path::new("/t/a"), &vars, "ghcr.io");
        assert_eq!(
            store.env,
            [("DOCKER_CONFIG".to_string(), "/t/a".to_string())]
        );
        let config = &store.files[0];
        assert_eq!(config.name, "config.json");
        assert_eq!(
            config.copy_from.as_deref(),
            Some(Utf8Path::new("/home/u/.docker/config.json"))
        );
        assert_eq!(config.copy_keys, ["currentContext"]);
        // an auth entry, so the CLI never falls back to a keychain helper
        assert_eq!(
            config.content,
            serde_json::json!({"auths": {"ghcr.io": {}}})
        );
        let links: Vec<&str> = store.links.iter().map(|(_, to)| to.as_str()).collect();
        assert_eq!(links, ["contexts", "buildx", "cli-plugins"]);
        let login = Login {
            host: "ghcr.io".into(),
            username: "bot".into(),
            password: "tok".into(),
            plain_http: false,
        };
        let inv = d.login(&login, Utf8Path::new("/t/a"));
        assert_eq!(
            inv.to_string(),
            "DOCKER_CONFIG=/t/a docker login --username bot --password-stdin ghcr.io <stdin>"
        );
        assert!(!inv.args.iter().any(|a| a.contains("tok")));
        assert!(Docker::new("docker")
            .configure(&Remote {
                connection: Some("c".into()),
                ..Default::default()
            })
            .is_err());
    }

    #[test]
    fn image_operations_and_run() {
        let d = Docker::new("docker");
        let a = ImageRef::parse("a:1").unwrap();
        let b = ImageRef::parse("b:2").unwrap();
        let c = d.commands();
        let inspect = c.inspect(&[&a, &b]);
        assert_eq!(inspect.argv(), ["docker", "image", "inspect", "a:1", "b:2"]);
        assert!(inspect.read_only);
        assert_eq!(c.tag(&a, &b).argv(), ["docker", "tag", "a:1", "b:2"]);
        assert_eq!(c.remove(&[&a]).argv(), ["docker", "image", "rm", "a:1"]);
        assert_eq!(
            c.remove_container("ocx-1").argv(),
            ["docker", "rm", "--force", "ocx-1"]
        );
        let spec = RunSpec {
            image: "a:1".into(),
            name: Some("ocx-run-1".into()),
            command: vec!["opencode".into()],
            mounts: vec![Mount {
                host: "/p".into(),
                container: "/p".into(),
                read_only: true,
            }],
            workdir: Some("/p".into()),
            env_names: vec!["OPENAI_API_KEY".into()],
            user: Some(RunAs::ids(1000, 1001)),
            tty: true,
            interactive: true,
            platform: Some(Platform::LinuxArm64),
            remove: true,
            entrypoint: Some("/bin/sh".into()),
            ..Default::default()
        };
        assert_eq!(
            d.run(&spec).to_string(),
            "docker run --rm --name ocx-run-1 -i -t --mount type=bind,source=/p,target=/p,readonly --workdir /p --env OPENAI_API_KEY --user 1000:1001 --entrypoint /bin/sh --platform linux/arm64 a:1 opencode"
        );
        let no_sh = Captured::failed(127, "docker: Error response from daemon: failed to create shim task: OCI runtime create failed: runc create failed: unable to start container process: exec: \"/bin/sh\": stat /bin/sh: no such file or directory: unknown.\n");
        assert!(d.missing_executable(&no_sh));
        assert!(!d.missing_executable(&Captured::failed(1, "no such file or directory")));
    }

    #[test]
    fn inspect_output_maps_to_requests_even_with_missing_images() {
        let d = Docker::new("docker");
        let a = ImageRef::parse("local/a:1").unwrap();
        let b = ImageRef::parse("b:2").unwrap();
        let out = r#"[{"Id":"sha256:aaa","RepoTags":["b:2"],"RepoDigests":["b@sha256:dddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddd"],"Architecture":"arm64","Config":{"User":"node","Labels":{"x":"y"}}}]"#;
        let Inspected::Facts(infos) = d.parse_inspect(&[&a, &b], &Captured::stdout(out)) else {
            panic!()
        };
        assert!(!infos[0].exists);
        assert_eq!(infos[1].id.as_deref(), Some("sha256:aaa"));
        assert_eq!(
            infos[1].digest.as_deref(),
            Some(format!("sha256:{}", "d".repeat(64)).as_str())
        );
        assert_eq!(infos[1].architectures, ["arm64"]);
        assert_eq!(infos[1].label("x"), Some("y"));
        assert_eq!(infos[1].user.as_deref(), Some("node"));
    }

    /// A digest is parsed where the engine's answer enters: one that is not `sha256:<64 hex>`
    /// is a bad answer, never a fact passed on.
    #[test]
    fn a_reported_digest_that_is_not_one_is_a_bad_answer() {
        let d = Docker::new("docker");
        let b = ImageRef::parse("b:2").unwrap();
        for out in [
            r#"[{"Id":"sha256:aaa","RepoTags":["b:2"],"RepoDigests":["b@sha256:ddd"]}]"#,
            r#"[{"Id":"sha256:aaa","RepoTags":["b:2"],"RepoDigests":["b@md5:ddd"]},{"Id":"sha256:bbb","RepoTags":["y:1"]}]"#,
        ] {
            match d.parse_inspect(&[&b], &Captured::stdout(out)) {
                Inspected::BadAnswer(m) => assert!(
                    m.starts_with("RepoDigests: ") && m.contains("is not a sha256 digest"),
                    "{m}"
                ),
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn step_failure_summaries_of_both_builders() {
        let d = Docker::new("docker");
        assert!(d.step_failure(
            "The command '/usr/local/bin/opencode --version' returned a non-zero code: 127"
        ));
        assert!(d.step_failure("ERROR: failed to solve: process \"/usr/local/bin/opencode --version\" did not complete successfully: exit code: 127"));
        assert!(!d.step_failure("/bin/sh: 1: /usr/local/bin/opencode: not found"));
    }

    #[test]
    fn steps_in_both_builders_formats_and_the_legacy_notice_is_noise() {
        let d = Docker::new("docker");
        let s = d.step("Step 3/7 : COPY opencode /usr/local/bin/").unwrap();
        assert_eq!((s.current, s.total), (3, 7));
        assert_eq!(d.step("#6 [2/4] RUN apt-get update").unwrap().current, 2);
        assert!(d.noise(
            "DEPRECATED: The legacy builder is deprecated and will be removed in a future release."
        ));
        // the form docker 28 prints when DOCKER_BUILDKIT=0 is set, as the classic path does
        assert!(d.noise(
            "            BuildKit is currently disabled; enable it by removing the DOCKER_BUILDKIT=0"
        ));
        assert!(d.noise("            environment-variable."));
        assert!(!d.noise("Step 1/2 : FROM x"));
        assert!(!d.noise("Step 2/2 : RUN echo environment-variable."));
        let h = d.hint(&[
            "Cannot connect to the Docker daemon at unix:///x. Is the docker daemon running?"
                .into(),
        ]);
        assert!(h.unwrap().contains("start dockerd"));
    }
}
