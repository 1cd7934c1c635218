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
            Some(Builder::Buildx)
                if (req.is_multi_platform() || req.local_parent) && self.driver.get().is_none() =>
            {
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
            Builder::Buildx
                if req.local_parent
                    && self.driver.get().is_some_and(|d| d != "docker") =>
            {
                Err(UserError(format!(
                    "the current buildx builder uses the `{}` driver, which cannot see images in the local docker store that this build is FROM; run `docker buildx use default`, or push the parent first (--push)",
                    self.driver.get().map(String::as_str).unwrap_or_default()
                )))
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

    fn parse_inspect(&self, refs: &[&ImageRef], out: &Captured) -> Option<Vec<ImageInfo>> {
        match_inspect(refs, &out.stdout, |v| ImageInfo {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::build::Mount;

    fn req(platforms: &[Platform], output: Output) -> BuildRequest {
        let mut r = BuildRequest::new(
            "/ctx".into(),
            "/ctx/Dockerfile".into(),
            ImageRef::parse("reg.io/a/b:1").unwrap(),
        );
        r.tags
            .push(ImageRef::parse("reg.io/a/b:latest-dev").unwrap());
        r.platforms = platforms.to_vec();
        r.build_args
            .insert("BASE_IMAGE".into(), "reg.io/a/base:1".into());
        r.labels.insert("k".into(), "v".into());
        r.target = Some("final".into());
        r.output = output;
        r
    }

    #[test]
    fn buildx_single_multi_and_oci() {
        let d = Docker::with_builder("docker", Builder::Buildx);
        let single = d.build(&req(&[Platform::LinuxAmd64], Output::Load));
        assert_eq!(
            single[0].to_string(),
            "docker buildx build --tag reg.io/a/b:1 --tag reg.io/a/b:latest-dev --platform linux/amd64 --file /ctx/Dockerfile \
             --build-arg BASE_IMAGE=reg.io/a/base:1 --label k=v --target final --load --progress plain /ctx"
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
        assert!(d.check_build(&req(&Platform::ALL, Output::Load)).is_err());
        assert!(d.check_build(&req(&Platform::ALL, Output::Push)).is_ok());
    }

    #[test]
    fn container_driver_cannot_build_from_a_local_parent() {
        let d = Docker::with_builder("docker", Builder::Buildx);
        let mut r = req(&[Platform::LinuxAmd64], Output::Load);
        r.local_parent = true;
        let probe = d.probe(&r).unwrap();
        assert_eq!(probe.argv(), ["docker", "buildx", "inspect"]);
        d.learn(
            &probe,
            &Captured::stdout("Name: b\nDriver: docker-container\n"),
        );
        assert!(d.check_build(&r).unwrap_err().0.contains(
            "`docker-container` driver, which cannot see images in the local docker store"
        ));
        r.local_parent = false;
        assert!(d.check_build(&r).is_ok());
    }

    #[test]
    fn classic_sets_platform_args_and_pushes_separately() {
        let d = Docker::with_builder("docker", Builder::Classic);
        let mut r = req(&[Platform::LinuxArm64], Output::Push);
        r.pull = PullPolicy::Always;
        let invs = d.build(&r);
        assert_eq!(
            invs[0].env,
            [("DOCKER_BUILDKIT".to_string(), "0".to_string())]
        );
        assert_eq!(invs[0].args[0], "build");
        assert!(invs[0].to_string().contains("--build-arg TARGETARCH=arm64"));
        assert!(
            invs[0].args.contains(&"--pull".into()) && !invs[0].args.contains(&"--push".into())
        );
        assert_eq!(invs[1].argv(), ["docker", "push", "reg.io/a/b:1"]);
        assert_eq!(invs[2].argv(), ["docker", "push", "reg.io/a/b:latest-dev"]);
        let err = d
            .check_build(&req(&Platform::ALL, Output::Load))
            .unwrap_err();
        assert!(err
            .0
            .starts_with("the classic docker builder cannot build several platforms"));
    }

    #[test]
    fn image_operations_and_run() {
        let d = Docker::new("docker");
        let a = ImageRef::parse("a:1").unwrap();
        let b = ImageRef::parse("b:2").unwrap();
        assert_eq!(
            d.inspect(&[&a, &b]).argv(),
            ["docker", "image", "inspect", "a:1", "b:2"]
        );
        assert_eq!(d.tag(&a, &b).argv(), ["docker", "tag", "a:1", "b:2"]);
        assert_eq!(d.remove(&[&a]).argv(), ["docker", "image", "rm", "a:1"]);
        let spec = RunSpec {
            image: "a:1".into(),
            command: vec!["opencode".into()],
            mounts: vec![Mount {
                host: "/p".into(),
                container: "/p".into(),
                read_only: true,
            }],
            workdir: Some("/p".into()),
            env_names: vec!["OPENAI_API_KEY".into()],
            user: Some((1000, 1001)),
            tty: true,
            interactive: true,
            platform: Some(Platform::LinuxArm64),
            remove: true,
        };
        assert_eq!(
            d.run(&spec).to_string(),
            "docker run --rm -i -t -v /p:/p:ro -w /p -e OPENAI_API_KEY --user 1000:1001 --platform linux/arm64 a:1 opencode"
        );
    }

    #[test]
    fn inspect_output_maps_to_requests_even_with_missing_images() {
        let d = Docker::new("docker");
        let a = ImageRef::parse("local/a:1").unwrap();
        let b = ImageRef::parse("b:2").unwrap();
        let out = r#"[{"Id":"sha256:aaa","RepoTags":["b:2"],"RepoDigests":["b@sha256:ddd"],"Architecture":"arm64","Config":{"Labels":{"x":"y"}}}]"#;
        let infos = d.parse_inspect(&[&a, &b], &Captured::stdout(out)).unwrap();
        assert!(!infos[0].exists);
        assert_eq!(infos[1].id.as_deref(), Some("sha256:aaa"));
        assert_eq!(infos[1].digest.as_deref(), Some("sha256:ddd"));
        assert_eq!(infos[1].architectures, ["arm64"]);
        assert_eq!(infos[1].label("x"), Some("y"));
    }
}
