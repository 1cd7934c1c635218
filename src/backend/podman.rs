//! Podman: `podman build` with `--format docker` (OCI format drops SHELL and HEALTHCHECK), and
//! `--manifest` for multi-platform builds, since one image ID cannot hold several platforms.

use super::{common_build_flags, common_run_flags, labels_at, match_inspect, Backend, BackendKind};
use crate::build::{BuildRequest, ImageInfo, Output, PullPolicy, RunSpec};
use crate::error::UserError;
use crate::image_ref::ImageRef;
use crate::invocation::Invocation;
use crate::platform::Platform;

pub struct Podman {
    program: String,
    /// Rootless podman maps the host user into the container only with `--userns=keep-id`.
    rootless: bool,
}

impl Podman {
    pub fn new(program: impl Into<String>, rootless: bool) -> Self {
        Podman {
            program: program.into(),
            rootless,
        }
    }

    fn cmd(&self) -> Invocation {
        Invocation::new(&self.program)
    }
}

impl Backend for Podman {
    fn kind(&self) -> BackendKind {
        BackendKind::Podman
    }

    fn check_build(&self, _req: &BuildRequest) -> Result<(), UserError> {
        Ok(())
    }

    fn build(&self, req: &BuildRequest) -> Vec<Invocation> {
        let mut inv = self.cmd().args(["build", "--format", "docker"]);
        let multi = req.is_multi_platform();
        let primary = req.primary_tag();
        if multi {
            // a manifest list named by the first tag; a stale list would keep old instances,
            // so it is removed first (podman 4.3 has no `manifest rm --ignore`, and `rmi` refuses lists)
            inv = inv.args(["--manifest", primary.as_str()]);
        } else {
            for t in &req.tags {
                inv = inv.args(["--tag", t.as_str()]);
            }
        }
        inv = inv.args(["--platform".to_string(), Platform::join(&req.platforms)]);
        inv = inv.args(common_build_flags(req));
        inv = inv.arg(match req.pull {
            PullPolicy::Missing => "--pull=missing",
            PullPolicy::Always => "--pull=always",
            PullPolicy::Never => "--pull=never",
        });
        // podman 4's layer cache does not key on --platform, so a second platform can reuse
        // the first one's RUN layers; a per-platform build stays correct only without it
        if multi && !req.no_cache {
            inv = inv.arg("--layers=false");
        }
        inv = inv.arg(req.context.as_str());
        let mut out = Vec::new();
        if multi {
            out.push(
                self.cmd()
                    .args(["manifest", "rm", primary.as_str()])
                    .may_fail(),
            );
        }
        out.push(inv);
        if multi {
            for extra in &req.tags[1..] {
                out.push(self.tag(primary, extra));
            }
        }
        match &req.output {
            Output::Load => {}
            Output::Push => out.extend(req.tags.iter().map(|t| self.push(t, multi))),
            Output::Oci(p) => {
                let dest = format!("oci-archive:{p}");
                out.push(if multi {
                    self.cmd()
                        .args(["manifest", "push", "--all", primary.as_str(), &dest])
                } else {
                    self.cmd().args(["push", primary.as_str(), &dest])
                });
            }
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
            id: v.get("Id").and_then(|i| i.as_str()).map(|i| {
                if i.starts_with("sha256:") {
                    i.to_string()
                } else {
                    format!("sha256:{i}")
                }
            }),
            digest: v.get("Digest").and_then(|d| d.as_str()).map(String::from),
            labels: labels_at(v.get("Labels").or_else(|| v.pointer("/Config/Labels"))),
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

    fn push(&self, image: &ImageRef, multi_platform: bool) -> Invocation {
        let dest = format!("docker://{}", image.as_str());
        if multi_platform {
            self.cmd()
                .args(["manifest", "push", "--all", image.as_str(), &dest])
        } else {
            self.cmd().args(["push", image.as_str(), &dest])
        }
    }

    fn remove(&self, images: &[&ImageRef]) -> Invocation {
        self.cmd()
            .args(["image", "rm"])
            .args(images.iter().map(|r| r.as_str()))
    }

    fn run(&self, spec: &RunSpec) -> Invocation {
        let mut inv = self.cmd().arg("run");
        if self.rootless && spec.user.is_some() {
            inv = inv.arg("--userns=keep-id");
        }
        inv = inv.args(common_run_flags(spec));
        if let Some(p) = spec.platform {
            inv = inv.args(["--platform".to_string(), p.to_string()]);
        }
        inv.arg(&spec.image).args(spec.command.iter().cloned())
    }
}
