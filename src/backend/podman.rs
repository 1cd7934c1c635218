//! Podman: `podman build` with `--format docker` (OCI format drops SHELL and HEALTHCHECK), and
//! `--manifest` for multi-platform builds, since one image ID cannot hold several platforms.

use super::{common_build_flags, common_run_flags, labels_at, match_inspect, Backend, BackendKind};
use crate::build::{BuildRequest, ImageInfo, Output, PullPolicy, RunSpec};
use crate::error::UserError;
use crate::exec::Captured;
use crate::image_ref::ImageRef;
use crate::invocation::Invocation;
use crate::platform::Platform;

/// The name podman stores a locally built image under: short names get `localhost/`.
fn local_name(r: &ImageRef) -> String {
    let first = r.as_str().split('/').next().unwrap_or("");
    let has_domain = r.as_str().contains('/')
        && (first.contains('.') || first.contains(':') || first == "localhost");
    if has_domain {
        r.as_str().to_string()
    } else {
        format!("localhost/{}", r.as_str())
    }
}

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

    fn parse_inspect(&self, refs: &[&ImageRef], out: &Captured) -> Option<Vec<ImageInfo>> {
        match_inspect(refs, &out.stdout, |v| ImageInfo {
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

    fn multi_platform(&self) -> super::MultiPlatform {
        super::MultiPlatform::PerPlatformThenList
    }

    fn assemble_list(&self, list: &ImageRef, instances: &[&ImageRef]) -> Vec<Invocation> {
        let mut out = vec![
            // a stale list would keep old instances; podman 4.3 has no `manifest rm --ignore`
            self.cmd()
                .args(["manifest", "rm", list.as_str()])
                .may_fail(),
            self.cmd().args(["manifest", "create", list.as_str()]),
        ];
        for i in instances {
            out.push(self.cmd().args([
                "manifest",
                "add",
                list.as_str(),
                &format!("containers-storage:{}", local_name(i)),
            ]));
        }
        out
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

#[cfg(test)]
mod tests {
    use super::*;

    fn req(platforms: &[Platform], output: Output) -> BuildRequest {
        let mut r = BuildRequest::new(
            "/ctx".into(),
            "/ctx/Dockerfile".into(),
            ImageRef::parse("hj:base").unwrap(),
        );
        r.tags.push(ImageRef::parse("hj:base-v1").unwrap());
        r.platforms = platforms.to_vec();
        r.output = output;
        r
    }

    #[test]
    fn single_platform_uses_docker_format_and_tags() {
        let p = Podman::new("podman", false);
        let invs = p.build(&req(&[Platform::LinuxAmd64], Output::Push));
        assert_eq!(
            invs[0].to_string(),
            "podman build --format docker --tag hj:base --tag hj:base-v1 --platform linux/amd64 --file /ctx/Dockerfile --pull=missing /ctx"
        );
        assert_eq!(
            invs[1].argv(),
            ["podman", "push", "hj:base", "docker://hj:base"]
        );
    }

    #[test]
    fn multi_platform_builds_a_fresh_manifest_list() {
        let p = Podman::new("podman", false);
        let invs = p.build(&req(&Platform::ALL, Output::Oci("/o.tar".into())));
        assert_eq!(invs[0].argv(), ["podman", "manifest", "rm", "hj:base"]);
        assert!(invs[0].may_fail);
        assert!(invs[1].to_string().starts_with(
            "podman build --format docker --manifest hj:base --platform linux/amd64,linux/arm64 "
        ));
        assert_eq!(invs[2].argv(), ["podman", "tag", "hj:base", "hj:base-v1"]);
        assert_eq!(
            invs[3].argv(),
            [
                "podman",
                "manifest",
                "push",
                "--all",
                "hj:base",
                "oci-archive:/o.tar"
            ]
        );
        assert_eq!(
            p.push(&ImageRef::parse("r.io/x:1").unwrap(), true).argv(),
            [
                "podman",
                "manifest",
                "push",
                "--all",
                "r.io/x:1",
                "docker://r.io/x:1"
            ]
        );
    }

    #[test]
    fn assembles_lists_from_local_per_platform_images() {
        let p = Podman::new("podman", false);
        let list = ImageRef::parse("hj:top").unwrap();
        let a = ImageRef::parse("hj:top-amd64").unwrap();
        let b = ImageRef::parse("localhost:5000/hj:top-arm64").unwrap();
        let invs = p.assemble_list(&list, &[&a, &b]);
        let argv: Vec<String> = invs.iter().map(|i| i.to_string()).collect();
        assert_eq!(
            argv,
            [
                "podman manifest rm hj:top",
                "podman manifest create hj:top",
                "podman manifest add hj:top containers-storage:localhost/hj:top-amd64",
                "podman manifest add hj:top containers-storage:localhost:5000/hj:top-arm64",
            ]
        );
    }

    #[test]
    fn podman_inspect_shape() {
        let p = Podman::new("podman", false);
        let r = ImageRef::parse("ocx-dev:1").unwrap();
        let out = r#"[{"Id":"abc","Digest":"sha256:def","RepoTags":["localhost/ocx-dev:1"],"Architecture":"amd64","Labels":{"io.agent-images.fingerprint":"f"}}]"#;
        let info = p
            .parse_inspect(&[&r], &Captured::stdout(out))
            .unwrap()
            .pop()
            .unwrap();
        assert_eq!(
            (info.id.as_deref(), info.digest.as_deref()),
            (Some("sha256:abc"), Some("sha256:def"))
        );
        assert_eq!(info.label("io.agent-images.fingerprint"), Some("f"));
    }

    #[test]
    fn rootless_run_keeps_the_host_user() {
        let spec = RunSpec {
            image: "x".into(),
            user: Some((1000, 1000)),
            remove: true,
            ..Default::default()
        };
        assert_eq!(
            Podman::new("podman", true).run(&spec).to_string(),
            "podman run --userns=keep-id --rm --user 1000:1000 x"
        );
        assert_eq!(
            Podman::new("podman", false).run(&spec).to_string(),
            "podman run --rm --user 1000:1000 x"
        );
    }
}
