//! Docker: `docker buildx build` when the buildx plugin answers, otherwise the classic builder
//! (`DOCKER_BUILDKIT=0 docker build`), which is single-platform and does not set TARGETARCH.
//! <https://docs.docker.com/reference/cli/docker/buildx/build/>,
//! <https://docs.docker.com/reference/cli/docker/image/build_legacy/>

use super::compat::{build_flags, DockerCli};
use super::{
    hint_from, labels_at, Backend, BackendKind, ImageCommands, Inspected, Probe, ProbeKind,
};
use crate::build::{BuildRequest, Output, PullPolicy, RunSpec};
use crate::error::UserError;
use crate::exec::{Captured, OutputParser};
use crate::image_ref::ImageRef;
use crate::invocation::Invocation;
use crate::platform::Platform;
use crate::report::Step;
use std::sync::OnceLock;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Builder {
    Buildx,
    Classic,
}

pub struct Docker {
    cli: DockerCli,
    builder: OnceLock<Builder>,
    /// The current buildx builder's driver (`docker`, `docker-container`, ...), learned only
    /// for multi-platform builds and builds FROM a local image, where it matters.
    driver: OnceLock<String>,
}

/// The docker 23+ client prints this block on every classic build; the warning we give when
/// we fall back says why, once, and the block itself is kept out of the output.
const LEGACY_NOTICE: [&str; 3] = [
    "DEPRECATED: The legacy builder is deprecated",
    "Install the buildx component to build images with BuildKit",
    "https://docs.docker.com/go/buildx/",
];

impl Docker {
    pub fn new(program: impl Into<String>) -> Self {
        Docker {
            cli: DockerCli::new(program, &[]),
            builder: OnceLock::new(),
            driver: OnceLock::new(),
        }
    }

    /// A backend whose builder is already known (tests).
    pub fn with_builder(program: impl Into<String>, builder: Builder) -> Self {
        let d = Docker::new(program);
        let _ = d.builder.set(builder);
        d
    }

    /// Before the probe has answered, plans assume buildx.
    pub fn builder(&self) -> Builder {
        *self.builder.get().unwrap_or(&Builder::Buildx)
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
        LEGACY_NOTICE.iter().any(|n| line.contains(n))
    }
}

impl Backend for Docker {
    fn kind(&self) -> BackendKind {
        BackendKind::Docker
    }

    fn probe(&self, req: &BuildRequest) -> Option<Probe> {
        let (kind, args) = match self.builder.get() {
            None => (ProbeKind::Builder, ["buildx", "version"]),
            Some(Builder::Buildx)
                if (req.is_multi_platform() || req.local_parent) && self.driver.get().is_none() =>
            {
                (ProbeKind::BuilderDriver, ["buildx", "inspect"])
            }
            _ => return None,
        };
        Some(Probe {
            kind,
            invocation: self.cmd().args(args).read_only(),
        })
    }

    fn learn(&self, probe: ProbeKind, out: &Captured) -> Option<String> {
        match probe {
            ProbeKind::Builder => {
                let b = if out.success {
                    Builder::Buildx
                } else {
                    Builder::Classic
                };
                let _ = self.builder.set(b);
                (b == Builder::Classic).then(|| {
                    "docker buildx is not available (`docker buildx version` failed); using the \
                     classic builder, which builds one platform at a time (the docker client's \
                     \"legacy builder is deprecated\" notice is about this, and is not shown). \
                     Install the buildx plugin (docker-buildx-plugin) for BuildKit and \
                     multi-platform builds."
                        .to_string()
                })
            }
            ProbeKind::BuilderDriver => {
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
        }
    }

    fn check_build(&self, req: &BuildRequest) -> Result<(), UserError> {
        let multi = req.is_multi_platform();
        let platforms = Platform::join(&req.platforms);
        let driver = self.driver.get().map(String::as_str);
        match self.builder() {
            Builder::Classic if multi => Err(UserError(format!(
                "the classic docker builder cannot build several platforms ({platforms}); install \
                 the buildx plugin, build one platform (--platform), or use --backend podman"
            ))),
            Builder::Classic if matches!(req.output, Output::Oci(_)) => Err(UserError(
                "the classic docker builder cannot write an OCI archive; install the buildx plugin, or use --backend podman"
                    .into(),
            )),
            Builder::Classic if req.pull == PullPolicy::Never => Err(UserError(
                "the classic docker builder has no way to forbid pulling the base image; install the buildx plugin, or use --backend podman"
                    .into(),
            )),
            Builder::Buildx if multi && req.output == Output::Load => Err(UserError(format!(
                "docker cannot load a multi-platform image ({platforms}) into its image store; \
                 build one platform (--platform), publish it (hjk --push), or use --backend podman"
            ))),
            Builder::Buildx if multi && driver == Some("docker") => Err(UserError(
                "the current buildx builder uses the `docker` driver, which cannot build several \
                 platforms; run `docker buildx create --use --driver docker-container` first"
                    .into(),
            )),
            Builder::Buildx if req.local_parent && driver.is_some_and(|d| d != "docker") => {
                Err(UserError(format!(
                    "the current buildx builder uses the `{}` driver, which cannot see images in \
                     the local docker store that this build is FROM; run `docker buildx use \
                     default`, or publish the parent first (hjk --push)",
                    driver.unwrap_or_default()
                )))
            }
            _ => Ok(()),
        }
    }

    fn build(&self, req: &BuildRequest) -> Vec<Invocation> {
        let classic = self.builder() == Builder::Classic;
        let mut inv = if classic {
            // without DOCKER_BUILDKIT=0 a buildx-less client refuses to build at all
            self.cmd().env("DOCKER_BUILDKIT", "0").arg("build")
        } else {
            self.cmd().args(["buildx", "build"])
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
        if !classic {
            inv = match &req.output {
                Output::Load => inv.arg("--load"),
                Output::Push => inv.arg("--push"),
                Output::Oci(p) => inv.args(["--output".to_string(), format!("type=oci,dest={p}")]),
            };
            inv = inv.args(["--progress", "plain"]);
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
        platforms.len() <= 1 || self.builder() == Builder::Classic
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
                .map(|(_, d)| d.to_string());
            let id = v.get("Id").and_then(|i| i.as_str()).map(String::from);
            DockerCli::info(v, id, digest, labels_at(v.pointer("/Config/Labels")))
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::build::Mount;

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
        assert!(!d.can_load(&Platform::ALL) && d.can_load(&[Platform::LinuxArm64]));
    }

    #[test]
    fn the_docker_driver_cannot_build_multi_arch() {
        let d = Docker::new("docker");
        let r = req(&Platform::ALL, Output::Push);
        let probe = d.probe(&r).unwrap();
        assert_eq!(probe.kind, ProbeKind::Builder);
        d.learn(
            probe.kind,
            &Captured::stdout("github.com/docker/buildx v0.19.3"),
        );
        let probe = d.probe(&r).unwrap();
        assert_eq!(probe.invocation.argv(), ["docker", "buildx", "inspect"]);
        d.learn(
            probe.kind,
            &Captured::stdout("Name: default\nDriver: docker\n"),
        );
        assert!(d.probe(&r).is_none(), "each probe runs once");
        let err = d.check_build(&r).unwrap_err();
        assert!(
            err.0
                .contains("`docker` driver, which cannot build several platforms"),
            "{err}"
        );
    }

    #[test]
    fn container_driver_cannot_build_from_a_local_parent() {
        let d = Docker::with_builder("docker", Builder::Buildx);
        let mut r = req(&[Platform::LinuxAmd64], Output::Load);
        r.local_parent = true;
        let probe = d.probe(&r).unwrap();
        assert_eq!(probe.kind, ProbeKind::BuilderDriver);
        assert_eq!(probe.invocation.argv(), ["docker", "buildx", "inspect"]);
        assert!(probe.invocation.read_only);
        d.learn(
            probe.kind,
            &Captured::stdout("Name: b\nDriver: docker-container\n"),
        );
        assert!(d.check_build(&r).unwrap_err().0.contains(
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
            .0
            .starts_with("the classic docker builder cannot build several platforms"));
        r.pull = PullPolicy::Never;
        assert!(d.check_build(&r).is_err(), "refused, not ignored");
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
            user: Some((1000, 1001)),
            tty: true,
            interactive: true,
            platform: Some(Platform::LinuxArm64),
            remove: true,
        };
        assert_eq!(
            d.run(&spec).to_string(),
            "docker run --rm --name ocx-run-1 -i -t --mount type=bind,source=/p,target=/p,readonly --workdir /p --env OPENAI_API_KEY --user 1000:1001 --platform linux/arm64 a:1 opencode"
        );
    }

    #[test]
    fn inspect_output_maps_to_requests_even_with_missing_images() {
        let d = Docker::new("docker");
        let a = ImageRef::parse("local/a:1").unwrap();
        let b = ImageRef::parse("b:2").unwrap();
        let out = r#"[{"Id":"sha256:aaa","RepoTags":["b:2"],"RepoDigests":["b@sha256:ddd"],"Architecture":"arm64","Config":{"User":"node","Labels":{"x":"y"}}}]"#;
        let Inspected::Facts(infos) = d.parse_inspect(&[&a, &b], &Captured::stdout(out)) else {
            panic!()
        };
        assert!(!infos[0].exists);
        assert_eq!(infos[1].id.as_deref(), Some("sha256:aaa"));
        assert_eq!(infos[1].digest.as_deref(), Some("sha256:ddd"));
        assert_eq!(infos[1].architectures, ["arm64"]);
        assert_eq!(infos[1].label("x"), Some("y"));
        assert_eq!(infos[1].user.as_deref(), Some("node"));
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
        assert!(!d.noise("Step 1/2 : FROM x"));
        let h = d.hint(&[
            "Cannot connect to the Docker daemon at unix:///x. Is the docker daemon running?"
                .into(),
        ]);
        assert!(h.unwrap().contains("start dockerd"));
    }
}
