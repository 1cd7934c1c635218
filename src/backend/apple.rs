//! Apple `container`: `container build` with one `--arch` per platform, and image commands
//! under `container image ...`. It has no build contexts beyond the directory, which is why
//! parents are built by us and referenced by tag. Its builder is BuildKit, so step lines are
//! BuildKit's. <https://github.com/apple/container/blob/main/docs/command-reference.md>

use super::compat::{build_flags, run_flags};
use super::{
    hint_from, labels_at, AuthStore, Backend, BackendKind, ImageCommands, Inspected, Login, Stage,
};
use crate::build::{BuildRequest, ImageInfo, Output, PullPolicy, RunSpec};
use crate::error::UserError;
use crate::exec::{Captured, OutputParser};
use crate::image_ref::ImageRef;
use crate::invocation::Invocation;
use crate::report::Step;
use camino::Utf8Path;
use std::collections::BTreeMap;

/// `container image ...` and `container delete`: Apple's spelling of the image commands.
pub struct AppleCli {
    program: String,
}

impl AppleCli {
    fn cmd(&self) -> Invocation {
        Invocation::new(&self.program)
    }
}

impl ImageCommands for AppleCli {
    fn inspect(&self, refs: &[&ImageRef]) -> Invocation {
        super::image_inspect(self.cmd(), refs)
    }

    fn pull(&self, image: &ImageRef) -> Invocation {
        self.cmd().args(["image", "pull", image.as_str()])
    }

    fn tag(&self, src: &ImageRef, dst: &ImageRef) -> Invocation {
        self.cmd()
            .args(["image", "tag", src.as_str(), dst.as_str()])
    }

    fn remove(&self, images: &[&ImageRef]) -> Invocation {
        self.cmd()
            .args(["image", "delete"])
            .args(images.iter().map(|r| r.as_str()))
    }
    fn remove_container(&self, name: &str) -> Invocation {
        self.cmd().args(["delete", "--force", name]).may_fail()
    }

    fn exec(&self, name: &str, user: Option<&str>, command: &[String]) -> Invocation {
        let mut inv = self.cmd().arg("exec");
        if let Some(u) = user {
            inv = inv.args(["--user", u]);
        }
        inv.arg(name).args(command.iter().cloned()).may_fail()
    }

    fn logs(&self, name: &str) -> Invocation {
        self.cmd().args(["logs", name]).may_fail()
    }
}

pub struct Apple {
    cli: AppleCli,
}

impl Apple {
    pub fn new(program: impl Into<String>) -> Self {
        Apple {
            cli: AppleCli {
                program: program.into(),
            },
        }
    }

    fn cmd(&self) -> Invocation {
        self.cli.cmd()
    }
}

impl OutputParser for Apple {
    fn step(&self, line: &str) -> Option<Step> {
        super::buildkit_step(line)
    }

    fn step_failure(&self, line: &str) -> bool {
        super::buildkit_step_failure(line)
    }

    fn hint(&self, tail: &[String]) -> Option<String> {
        hint_from(
            tail,
            &[(
                "xpc connection error",
                "the container system service is not running: `container system start`",
            )],
        )
    }
}

impl Backend for Apple {
    fn kind(&self) -> BackendKind {
        BackendKind::Apple
    }

    /// `container build` has no pull-policy flag: it always resolves the base from its own
    /// store or the registry, so a policy other than the default would be silently ignored.
    fn check_build(&self, req: &BuildRequest) -> Result<(), UserError> {
        if req.pull != PullPolicy::Missing {
            return Err(UserError(
                "Apple container's builder has no pull policy flag; drop the pull option or use --backend docker/podman".into(),
            ));
        }
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
        inv = inv.args(build_flags(req));
        if let Output::Oci(p) = &req.output {
            inv = inv.args(["--output".to_string(), format!("type=oci,dest={p}")]);
        }
        inv = inv.args(["--progress", "plain"]).arg(req.context.as_str());
        let mut out = vec![inv];
        if req.output == Output::Push {
            out.extend(self.publish(&req.tags, &[]));
        }
        out
    }

    fn commands(&self) -> &dyn ImageCommands {
        &self.cli
    }

    /// Two shapes exist: 0.x prints `{name, index: {digest}, variants}`, 1.x prints
    /// `{id, configuration: {name, descriptor: {digest}}, variants}`. Labels and architecture
    /// live in `variants[]` in both; `unknown/unknown` variants are attestations.
    fn parse_inspect(&self, refs: &[&ImageRef], out: &Captured) -> Inspected {
        let entries: Vec<serde_json::Value> = if out.stdout.trim().is_empty() {
            Vec::new()
        } else {
            match serde_json::from_str(&out.stdout) {
                Ok(e) => e,
                Err(_) => return Inspected::EngineFailed(out.stderr.trim().to_string()),
            }
        };
        let err = out.stderr.to_ascii_lowercase();
        let missing = err.contains("not found") || err.contains("notfound");
        if !out.success && !missing {
            return Inspected::EngineFailed(out.stderr.trim().to_string());
        }
        // 1.x prints nothing at all when any one image is missing: ask one at a time
        if !out.success && entries.is_empty() && refs.len() > 1 {
            return Inspected::Ambiguous;
        }
        let mut infos = vec![ImageInfo::missing(); refs.len()];
        for e in &entries {
            let name = e
                .get("name")
                .or_else(|| e.pointer("/configuration/name"))
                .and_then(|n| n.as_str())
                .unwrap_or("");
            let Some(i) = refs.iter().position(|r| self.names_match(r, name)) else {
                return Inspected::Ambiguous;
            };
            let digest = e
                .pointer("/index/digest")
                .or_else(|| e.pointer("/configuration/descriptor/digest"))
                .and_then(|d| d.as_str())
                .map(String::from);
            let mut labels = Default::default();
            let mut architectures = Vec::new();
            let mut user = None;
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
                user = user.or_else(|| {
                    v.pointer("/config/config/User")
                        .and_then(|u| u.as_str())
                        .map(String::from)
                });
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
                user,
            };
        }
        Inspected::Facts(infos)
    }

    /// Apple's store keeps one image with every architecture it was built for, so a tag is
    /// pushed whole; per-platform instances are never built on this engine.
    fn publish(&self, tags: &[ImageRef], _instances: &[&ImageRef]) -> Vec<Invocation> {
        tags.iter()
            .map(|t| self.cmd().args(["image", "push", t.as_str()]))
            .collect()
    }

    fn run(&self, spec: &RunSpec) -> Invocation {
        let mut inv = self.cmd().arg("run").args(run_flags(spec));
        if let Some(p) = spec.platform {
            inv = inv.args(["--arch", p.arch()]);
        }
        inv.arg(&spec.image).args(spec.command.iter().cloned())
    }

    /// Apple keeps registry logins in the macOS keychain, not in a file we could point it at;
    /// a release logs in, and logs out again when it ends. So a release's login replaces the
    /// user's own keychain login for that host, and the logout then removes it (README, the
    /// engine table).
    fn auth_store(
        &self,
        _dir: &Utf8Path,
        _vars: &BTreeMap<String, String>,
        _host: &str,
    ) -> AuthStore {
        AuthStore::default()
    }

    fn login(&self, login: &Login, _dir: &Utf8Path) -> Invocation {
        self.cmd()
            .args(["registry", "login"])
            .args(scheme(login.plain_http))
            .args([
                "--username",
                &login.username,
                "--password-stdin",
                &login.host,
            ])
            .stdin(login.password.as_bytes().to_vec())
    }

    fn logout(&self, host: &str) -> Option<Invocation> {
        Some(self.cmd().args(["registry", "logout", host]).may_fail())
    }

    /// `container build` one `--arch`, then `container image push`, which reports no digest
    /// (the workflow reads it back from the registry).
    fn stage(&self, req: &BuildRequest, stage: &Stage) -> Vec<Invocation> {
        let mut req = req.clone();
        req.tags = vec![stage.tag.clone()];
        req.output = Output::Load;
        let mut out = self.build(&req);
        out.push(
            self.cmd()
                .args(["image", "push"])
                .args(scheme(stage.plain_http))
                .arg(stage.tag.as_str()),
        );
        out
    }
}

/// `--scheme http` for a loopback registry (Apple's `auto` would pick it too, but saying so
/// keeps the plan explicit).
fn scheme(plain_http: bool) -> Vec<&'static str> {
    if plain_http {
        vec!["--scheme", "http"]
    } else {
        Vec::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::build::RunAs;
    use crate::platform::Platform;

    const OLD: &str = r#"[{"name":"docker.io/library/ocx-dev:1","index":{"mediaType":"application/vnd.oci.image.index.v1+json","digest":"sha256:1111","size":856},
        "variants":[{"platform":{"os":"linux","architecture":"arm64","variant":"v8"},"config":{"architecture":"arm64","os":"linux","config":{"Labels":{"k":"v"}}},"size":3},
                    {"platform":{"os":"unknown","architecture":"unknown"},"config":{},"size":1}]}]"#;
    const NEW: &str = r#"[{"configuration":{"creationDate":"2026-06-01T10:00:00Z","descriptor":{"digest":"sha256:2222","mediaType":"application/vnd.oci.image.index.v1+json","size":856},"name":"docker.io/library/ocx-dev:1"},
        "id":"2222","variants":[{"config":{"architecture":"amd64","os":"linux","config":{"Labels":{"k":"w"}}},"configDigest":"sha256:3333","digest":"sha256:4444","platform":{"architecture":"amd64","os":"linux"},"size":3}]}]"#;

    #[test]
    fn a_pull_policy_it_would_ignore_is_refused() {
        let a = Apple::new("container");
        let mut req = BuildRequest::new(
            "ctx".into(),
            "ctx/Dockerfile".into(),
            ImageRef::parse("x:1").unwrap(),
        );
        assert!(a.check_build(&req).is_ok());
        for p in [PullPolicy::Always, PullPolicy::Never] {
            req.pull = p;
            let err = a.check_build(&req).unwrap_err();
            assert!(err.0.contains("has no pull policy flag"), "{err}");
        }
    }

    #[test]
    fn both_inspect_shapes() {
        let a = Apple::new("container");
        let r = ImageRef::parse("ocx-dev:1").unwrap();
        let facts = |out: &str| match a.parse_inspect(&[&r], &Captured::stdout(out)) {
            Inspected::Facts(mut v) => v.pop().unwrap(),
            other => panic!("{other:?}"),
        };
        let old = facts(OLD);
        assert_eq!(
            (
                old.digest.as_deref(),
                old.architectures.clone(),
                old.label("k")
            ),
            (Some("sha256:1111"), vec!["arm64".to_string()], Some("v"))
        );
        let new = facts(NEW);
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
        let failed = Captured::failed(1, "Error: notFound: \"x:1\"");
        assert_eq!(a.parse_inspect(&[&x, &y], &failed), Inspected::Ambiguous);
        assert!(matches!(a.parse_inspect(&[&x], &failed), Inspected::Facts(v) if !v[0].exists));
        let down = Captured::failed(1, "Error: XPC connection error: Connection invalid");
        assert!(matches!(
            a.parse_inspect(&[&x], &down),
            Inspected::EngineFailed(_)
        ));
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
            a.commands().tag(&src, &req.tags[0]).argv(),
            ["container", "image", "tag", "a:1", "hj:dind"]
        );
        assert_eq!(
            a.commands().remove(&[&src]).argv(),
            ["container", "image", "delete", "a:1"]
        );
        let spec = RunSpec {
            image: "a:1".into(),
            command: vec!["sh".into()],
            env_names: vec!["GEMINI_API_KEY".into()],
            user: Some(RunAs::ids(501, 20)),
            remove: true,
            platform: Some(Platform::LinuxAmd64),
            ..Default::default()
        };
        assert_eq!(
            a.run(&spec).to_string(),
            "container run --rm --env GEMINI_API_KEY --user 501:20 --arch amd64 a:1 sh"
        );
    }
}
