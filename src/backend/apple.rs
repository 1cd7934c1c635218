//! Apple `container`: `container build` with one `--arch` per platform, and image commands
//! under `container image ...`. It has no build contexts beyond the directory, which is why
//! parents are built by us and referenced by tag.

use super::{common_build_flags, labels_at, Backend, BackendKind};
use crate::build::{BuildRequest, ImageInfo, Output, RunSpec};
use crate::error::UserError;
use crate::exec::Captured;
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

    /// Two shapes exist: 0.x prints `{name, index: {digest}, variants}`, 1.x prints
    /// `{id, configuration: {name, descriptor: {digest}}, variants}`. Labels and architecture
    /// live in `variants[]` in both; `unknown/unknown` variants are attestations.
    fn parse_inspect(&self, refs: &[&ImageRef], out: &Captured) -> Option<Vec<ImageInfo>> {
        let entries: Vec<serde_json::Value> = if out.stdout.trim().is_empty() {
            Vec::new()
        } else {
            serde_json::from_str(&out.stdout).ok()?
        };
        // 1.x prints nothing at all when any one image is missing: ask one at a time
        if !out.success && entries.is_empty() && refs.len() > 1 {
            return None;
        }
        let mut infos = vec![ImageInfo::missing(); refs.len()];
        for e in &entries {
            let name = e
                .get("name")
                .or_else(|| e.pointer("/configuration/name"))
                .and_then(|n| n.as_str())
                .unwrap_or("");
            let i = refs.iter().position(|r| r.matches_engine_name(name))?;
            let digest = e
                .pointer("/index/digest")
                .or_else(|| e.pointer("/configuration/descriptor/digest"))
                .and_then(|d| d.as_str())
                .map(String::from);
            let mut labels = Default::default();
            let mut architectures = Vec::new();
            for v in e
                .get("variants")
                .and_then(|v| v.as_array())
                .into_iter()
                .flatten()
            {
                let arch = v
                    .pointer("/platform/architecture")
                    .and_then(|a| a.as_str())
                    .unwrap_or("unknown");
                if arch == "unknown" {
                    continue;
                }
                architectures.push(arch.to_string());
                let l = labels_at(v.pointer("/config/config/Labels"));
                if !l.is_empty() {
                    labels = l;
                }
            }
            infos[i] = ImageInfo {
                exists: true,
                id: digest.clone(),
                digest,
                labels,
                architectures,
            };
        }
        Some(infos)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::platform::Platform;

    const OLD: &str = r#"[{"name":"docker.io/library/ocx-dev:1","index":{"mediaType":"application/vnd.oci.image.index.v1+json","digest":"sha256:1111","size":856},
        "variants":[{"platform":{"os":"linux","architecture":"arm64","variant":"v8"},"config":{"architecture":"arm64","os":"linux","config":{"Labels":{"k":"v"}}},"size":3},
                    {"platform":{"os":"unknown","architecture":"unknown"},"config":{},"size":1}]}]"#;
    const NEW: &str = r#"[{"configuration":{"creationDate":"2026-06-01T10:00:00Z","descriptor":{"digest":"sha256:2222","mediaType":"application/vnd.oci.image.index.v1+json","size":856},"name":"docker.io/library/ocx-dev:1"},
        "id":"2222","variants":[{"config":{"architecture":"amd64","os":"linux","config":{"Labels":{"k":"w"}}},"configDigest":"sha256:3333","digest":"sha256:4444","platform":{"architecture":"amd64","os":"linux"},"size":3}]}]"#;

    #[test]
    fn both_inspect_shapes() {
        let a = Apple::new("container");
        let r = ImageRef::parse("ocx-dev:1").unwrap();
        let old = a
            .parse_inspect(&[&r], &Captured::stdout(OLD))
            .unwrap()
            .pop()
            .unwrap();
        assert_eq!(
            (
                old.digest.as_deref(),
                old.architectures.clone(),
                old.label("k")
            ),
            (Some("sha256:1111"), vec!["arm64".to_string()], Some("v"))
        );
        let new = a
            .parse_inspect(&[&r], &Captured::stdout(NEW))
            .unwrap()
            .pop()
            .unwrap();
        assert_eq!(
            (
                new.digest.as_deref(),
                new.architectures.clone(),
                new.label("k")
            ),
            (Some("sha256:2222"), vec!["amd64".to_string()], Some("w"))
        );
    }

    #[test]
    fn a_missing_image_on_1x_means_asking_one_at_a_time() {
        let a = Apple::new("container");
        let (x, y) = (
            ImageRef::parse("x:1").unwrap(),
            ImageRef::parse("y:1").unwrap(),
        );
        let failed = Captured {
            success: false,
            code: Some(1),
            ..Default::default()
        };
        assert!(a.parse_inspect(&[&x, &y], &failed).is_none());
        assert!(!a.parse_inspect(&[&x], &failed).unwrap()[0].exists);
    }

    #[test]
    fn build_repeats_arch_and_image_commands_live_under_image() {
        let a = Apple::new("container");
        let mut req = BuildRequest::new(
            "/c".into(),
            "/c/Dockerfile".into(),
            ImageRef::parse("hj:dind").unwrap(),
        );
        req.platforms = Platform::ALL.to_vec();
        req.output = Output::Push;
        let invs = a.build(&req);
        assert_eq!(invs[0].to_string(), "container build --tag hj:dind --arch amd64 --arch arm64 --os linux --file /c/Dockerfile --progress plain /c");
        assert_eq!(invs[1].argv(), ["container", "image", "push", "hj:dind"]);
        let src = ImageRef::parse("a:1").unwrap();
        assert_eq!(
            a.tag(&src, &req.tags[0]).argv(),
            ["container", "image", "tag", "a:1", "hj:dind"]
        );
        assert_eq!(
            a.remove(&[&src]).argv(),
            ["container", "image", "delete", "a:1"]
        );
        let spec = RunSpec {
            image: "a:1".into(),
            command: vec!["sh".into()],
            env_names: vec!["GEMINI_API_KEY".into()],
            user: Some((501, 20)),
            remove: true,
            platform: Some(Platform::LinuxAmd64),
            ..Default::default()
        };
        assert_eq!(
            a.run(&spec).to_string(),
            "container run --rm -e GEMINI_API_KEY --user 501:20 --arch amd64 a:1 sh"
        );
    }
}
