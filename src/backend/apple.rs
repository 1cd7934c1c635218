//! Apple `container`: `container build` with one `--arch` per platform, and image commands
//! under `container image ...`. It has no build contexts beyond the directory, which is why
//! parents are built by us and referenced by tag.

use super::{common_build_flags, labels_at, Backend, BackendKind};
use crate::build::{BuildRequest, ImageInfo, Output, RunSpec};
use crate::error::UserError;
use crate::image_ref::ImageRef;
use crate::invocation::Invocation;

pub struct Apple {
    program: String,
}

impl Apple {
    pub fn new(program: impl Into<String>) -> Self {
        Apple {
            program: program.into(),
        }
    }

    fn cmd(&self) -> Invocation {
        Invocation::new(&self.program)
    }
}

impl Backend for Apple {
    fn kind(&self) -> BackendKind {
        BackendKind::Apple
    }

    fn check_build(&self, _req: &BuildRequest) -> Result<(), UserError> {
        Ok(())
    }

    fn build(&self, req: &BuildRequest) -> Vec<Invocation> {
        let mut inv = self.cmd().arg("build");
        for t in &req.tags {
            inv = inv.args(["--tag", t.as_str()]);
        }
        for p in &req.platforms {
            inv = inv.args(["--arch", p.arch()]);
        }
        inv = inv.args(["--os", "linux"]);
        inv = inv.args(common_build_flags(req));
        if let Output::Oci(p) = &req.output {
            inv = inv.args(["--output".to_string(), format!("type=oci,dest={p}")]);
        }
        inv = inv.args(["--progress", "plain"]).arg(req.context.as_str());
        let mut out = vec![inv];
        if req.output == Output::Push {
            out.extend(
                req.tags
                    .iter()
                    .map(|t| self.push(t, req.is_multi_platform())),
            );
        }
        out
    }

    fn inspect(&self, refs: &[&ImageRef]) -> Invocation {
        self.cmd()
            .args(["image", "inspect"])
            .args(refs.iter().map(|r| r.as_str()))
    }

    fn parse_inspect(&self, refs: &[&ImageRef], stdout: &str) -> Option<Vec<ImageInfo>> {
        let entries: Vec<serde_json::Value> = if stdout.trim().is_empty() {
            Vec::new()
        } else {
            serde_json::from_str(stdout).ok()?
        };
        let mut out = vec![ImageInfo::missing(); refs.len()];
        for e in &entries {
            let name = e
                .get("name")
                .or_else(|| e.pointer("/reference"))
                .and_then(|n| n.as_str())
                .unwrap_or("");
            let i = refs.iter().position(|r| r.matches_engine_name(name))?;
            let digest = e
                .pointer("/index/digest")
                .or_else(|| e.pointer("/descriptor/digest"))
                .and_then(|d| d.as_str())
                .map(String::from);
            let variants = e
                .get("variants")
                .and_then(|v| v.as_array())
                .cloned()
                .unwrap_or_default();
            let mut labels = Default::default();
            let mut architectures = Vec::new();
            for v in &variants {
                let arch = v
                    .pointer("/platform/architecture")
                    .and_then(|a| a.as_str())
                    .unwrap_or("");
                if arch.is_empty() || arch == "unknown" {
                    continue;
                }
                architectures.push(arch.to_string());
                let l = labels_at(v.pointer("/config/config/Labels"));
                if !l.is_empty() {
                    labels = l;
                }
            }
            out[i] = ImageInfo {
                exists: true,
                id: digest.clone(),
                digest,
                labels,
                architectures,
            };
        }
        Some(out)
    }

    fn pull(&self, image: &ImageRef) -> Invocation {
        self.cmd().args(["image", "pull", image.as_str()])
    }

    fn tag(&self, src: &ImageRef, dst: &ImageRef) -> Invocation {
        self.cmd()
            .args(["image", "tag", src.as_str(), dst.as_str()])
    }

    fn push(&self, image: &ImageRef, _multi_platform: bool) -> Invocation {
        self.cmd().args(["image", "push", image.as_str()])
    }

    fn remove(&self, images: &[&ImageRef]) -> Invocation {
        self.cmd()
            .args(["image", "delete"])
            .args(images.iter().map(|r| r.as_str()))
    }

    fn run(&self, spec: &RunSpec) -> Invocation {
        let mut inv = self.cmd().arg("run").args(super::common_run_flags(spec));
        if let Some(p) = spec.platform {
            inv = inv.args(["--arch", p.arch()]);
        }
        inv.arg(&spec.image).args(spec.command.iter().cloned())
    }
}
