//! Docker: `docker buildx build` when the buildx plugin answers, otherwise the classic builder
//! (`DOCKER_BUILDKIT=0 docker build`), which is single-platform and does not set TARGETARCH.

use super::{common_build_flags, common_run_flags, labels_at, match_inspect, Backend, BackendKind};
use crate::build::{BuildRequest, ImageInfo, Output, PullPolicy, RunSpec};
use crate::error::UserError;
use crate::exec::Captured;
use crate::image_ref::ImageRef;
use crate::invocation::Invocation;
use crate::platform::Platform;
use std::sync::OnceLock;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Builder {
    Buildx,
    Classic,
}

pub struct Docker {
    program: String,
    builder: OnceLock<Builder>,
    /// The current buildx builder's driver (`docker`, `docker-container`, ...), learned only
    /// for multi-platform builds, where the `docker` driver cannot work.
    driver: OnceLock<String>,
}

impl Docker {
    pub fn new(program: impl Into<String>) -> Self {
        Docker {
            program: program.into(),
            builder: OnceLock::new(),
            driver: OnceLock::new(),
        }
    }

    /// A backend whose builder is already known (tests, dry-run snapshots).
    pub fn with_builder(program: impl Into<String>, builder: Builder) -> Self {
        let d = Docker::new(program);
        let _ = d.builder.set(builder);
        d
    }

    /// Dry-run plans assume buildx when nothing was probed.
    pub fn builder(&self) -> Builder {
        *self.builder.get().unwrap_or(&Builder::Buildx)
    }

    fn cmd(&self) -> Invocation {
        Invocation::new(&self.program)
    }
}

impl Backend for Docker {
    fn kind(&self) -> BackendKind {
        BackendKind::Docker
    }

    fn probe(&self, req: &BuildRequest) -> Option<Invocation> {
        match self.builder.get() {
            None => Some(self.cmd().args(["buildx", "version"])),
            Some(Builder::Buildx) if req.is_multi_platform() && self.driver.get().is_none() => {
                Some(self.cmd().args(["buildx", "inspect"]))
            }
            _ => None,
        }
    }

    fn learn(&self, probe: &Invocation, out: &Captured) -> Option<String> {
        if probe.args.get(1).map(String::as_str) == Some("version") {
            let b = if out.success {
                Builder::Buildx
            } else {
                Builder::Classic
            };
            let _ = self.builder.set(b);
            return (b == Builder::Classic).then(|| {
                "docker buildx is not available (`docker buildx version` failed); using the classic \
                 builder, which builds one platform at a time. Install the buildx plugin \
                 (docker-buildx-plugin) for multi-platform builds."
                    .to_string()
            });
        }
        let driver = out
            .stdout
            .lines()
            .find_map(|l| {
                l.trim()
                    .strip_prefix("Driver:")
                    .map(|d| d.trim().to_string())
            })
            .unwrap_or_else(|| "unknown".into());
        let _ = self.driver.set(driver);
        None
    }

    fn check_build(&self, req: &BuildRequest) -> Result<(), UserError> {
        let multi = req.is_multi_platform();
        match self.builder() {
            Builder::Classic if multi => Err(UserError(format!(
                "the classic docker builder cannot build several platforms ({}); install the \
                 buildx plugin, or use --backend podman",
                Platform::join(&req.platforms)
            ))),
            Builder::Classic if matches!(req.output, Output::Oci(_)) => Err(UserError(
                "the classic docker builder cannot write OCI output; install the buildx plugin"
                    .into(),
            )),
            Builder::Buildx if multi && req.output == Output::Load => Err(UserError(format!(
                "docker cannot load a multi-platform image ({}) into its image store; add --push \
                 or OCI output, build one platform, or use --backend podman",
                Platform::join(&req.platforms)
            ))),
            Builder::Buildx if multi && self.driver.get().map(String::as_str) == Some("docker") => {
                Err(UserError(
                    "the current buildx builder uses the `docker` driver, which cannot build \
                     several platforms; run `docker buildx create --use --driver docker-container` \
                     first"
                        .into(),
                ))
            }
            _ => Ok(()),
        }
    }

    fn build(&self, req: &BuildRequest) -> Vec<Invocation> {
        let mut inv = match self.builder() {
            Builder::Buildx => self.cmd().args(["buildx", "build"]),
            // without DOCKER_BUILDKIT=0 a buildx-less client refuses to build at all
            Builder::Classic => self.cmd().env("DOCKER_BUILDKIT", "0").arg("build"),
        };
        for t in &req.tags {
            inv = inv.args(["--tag", t.as_str()]);
        }
        inv = inv.args(["--platform".to_string(), Platform::join(&req.platforms)]);
        if self.builder() == Builder::Classic {
            // the classic builder leaves the automatic platform args empty
            let p = req.platforms[0];
            for (k, v) in [
                ("TARGETPLATFORM", p.to_string()),
                ("TARGETOS", "linux".into()),
                ("TARGETARCH", p.arch().into()),
            ] {
                if !req.build_args.contains_key(k) {
                    inv = inv.args(["--build-arg".to_string(), format!("{k}={v}")]);
                }
            }
        }
        inv = inv.args(common_build_flags(req));
        match req.pull {
            PullPolicy::Always => inv = inv.arg("--pull"),
            PullPolicy::Missing | PullPolicy::Never => {}
        }
        if self.builder() == Builder::Buildx {
            inv = match &req.output {
                Output::Load => inv.arg("--load"),
                Output::Push => inv.arg("--push"),
                Output::Oci(p) => inv.args(["--output".to_string(), format!("type=oci,dest={p}")]),
            };
            inv = inv.args(["--progress", "plain"]);
        }
        inv = inv.arg(req.context.as_str());
        let mut out = vec![inv];
        if self.builder() == Builder::Classic && req.output == Output::Push {
            out.extend(req.tags.iter().map(|t| self.push(t, false)));
        }
        out
    }

    fn inspect(&self, refs: &[&ImageRef]) -> Invocation {
        self.cmd()
            .args(["image", "inspect"])
            .args(refs.iter().map(|r| r.as_str()))
    }

    fn parse_inspect(&self, refs: &[&ImageRef], stdout: &str) -> Option<Vec<ImageInfo>> {
        match_inspect(refs, stdout, |v| ImageInfo {
            exists: true,
            id: v.get("Id").and_then(|i| i.as_str()).map(String::from),
            digest: v
                .get("RepoDigests")
                .and_then(|d| d.get(0))
                .and_then(|d| d.as_str())
                .and_then(|d| d.split_once('@'))
                .map(|(_, d)| d.to_string()),
            labels: labels_at(v.pointer("/Config/Labels")),
            architectures: v
                .get("Architecture")
                .and_then(|a| a.as_str())
                .map(String::from)
                .into_iter()
                .collect(),
        })
    }

    fn pull(&self, image: &ImageRef) -> Invocation {
        self.cmd().args(["pull", image.as_str()])
    }

    fn tag(&self, src: &ImageRef, dst: &ImageRef) -> Invocation {
        self.cmd().args(["tag", src.as_str(), dst.as_str()])
    }

    fn push(&self, image: &ImageRef, _multi_platform: bool) -> Invocation {
        self.cmd().args(["push", image.as_str()])
    }

    fn remove(&self, images: &[&ImageRef]) -> Invocation {
        self.cmd()
            .args(["image", "rm"])
            .args(images.iter().map(|r| r.as_str()))
    }

    fn run(&self, spec: &RunSpec) -> Invocation {
        let mut inv = self.cmd().arg("run").args(common_run_flags(spec));
        if let Some(p) = spec.platform {
            inv = inv.args(["--platform".to_string(), p.to_string()]);
        }
        inv.arg(&spec.image).args(spec.command.iter().cloned())
    }
}
