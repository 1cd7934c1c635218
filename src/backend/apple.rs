//! Apple `container`: `container build --platform ...`, and image commands under `container
//! image ...`. It has no build contexts beyond the directory, which is why parents are built by
//! us and referenced by tag. Its builder is BuildKit in a VM, behind a shim, so step lines are
//! BuildKit's. <https://github.com/apple/container/blob/main/docs/command-reference.md>
//!
//! The CLI only runs on macOS, so this file is written from the source and tested against a
//! fake (`tests/fixtures/fake-bin/fake-container`) whose replies cite the same files. Read at
//! apple/container 1.2.2 (0190097d06df0b9065f4c2d2c7873c649d81d493, "1.2.2" below), the
//! apple/containerization 0.40.1 it pins (7800b4642171561c95b5f55500b19e5dce5acd45) and
//! apple/container-builder-shim 0.12.0 (1886669727cbe52bd838b9bd0db7eaa9efcb8ce6; 1.2.2 pins
//! 0.13.1, of which no copy could be had, and a later stored `pkg/build/buildopts.go` handles
//! build arguments the same way); paths are relative to those repositories.

use super::compat::{build_flags, run_flags};
use super::{
    hint_from, labels_at, AuthStore, Backend, BackendKind, ImageCommands, Inspected, Login, Stage,
};
use crate::build::{BuildRequest, ImageInfo, Mount, Output, PullPolicy, RunSpec};
use crate::error::UserError;
use crate::exec::{Captured, OutputParser};
use crate::image_ref::ImageRef;
use crate::invocation::Invocation;
use crate::platform::Platform;
use crate::report::Step;
use camino::Utf8Path;
use std::collections::BTreeMap;

/// Chooses the platform of `build`, `run`, `image push` and `image save` when no `--platform`
/// is given: over `--arch` for a build, and for a push or save it keeps only that platform of
/// the image (1.2.2 `Sources/Services/ContainerAPIService/Client/DefaultPlatform.swift`; an
/// empty value counts as unset).
const DEFAULT_PLATFORM: &str = "CONTAINER_DEFAULT_PLATFORM";

/// `container build` reads the Dockerfile into memory and refuses one of this many bytes or
/// more, after it has started the builder VM (1.2.2
/// `Sources/ContainerCommands/BuildCommand.swift`, apple/container#735).
const DOCKERFILE_LIMIT: u64 = 16 * 1024;

/// `container image ...` and `container delete`: Apple's spelling of the image commands.
pub(crate) struct AppleCli {
    program: String,
}

impl AppleCli {
    fn cmd(&self) -> Invocation {
        Invocation::new(&self.program)
    }

    /// `image push` of every platform the image holds: without `--platform` the push is limited
    /// to `CONTAINER_DEFAULT_PLATFORM`'s, so that is cleared
    /// (1.2.2 `Sources/ContainerCommands/Image/ImagePush.swift`).
    fn push(&self, tag: &ImageRef, plain_http: bool) -> Invocation {
        self.cmd()
            .env(DEFAULT_PLATFORM, "")
            .args(["image", "push"])
            .args(scheme(plain_http))
            .arg(qualified(tag))
    }
}

/// The name to hand an image command: a short name on Docker Hub, written out. `image pull`
/// and `image tag` put a short name under the configured `registry.domain` (1.2.2
/// `Sources/Services/ContainerAPIService/Client/ClientImage.swift` `normalizeReference`), while
/// a build's tags and a Dockerfile's `FROM` are normalized on docker.io whatever it says
/// (`BuildCommand.swift`: `Reference.normalize()`; BuildKit's `ParseNormalizedNamed`). Written
/// out, every command means the image the build means. Build tags need no such care.
fn qualified(r: &ImageRef) -> String {
    if r.has_explicit_registry() {
        return r.as_str().to_string();
    }
    let name = r.name_as_written();
    let rest = &r.as_str()[name.len()..];
    match name.contains('/') {
        true => format!("docker.io/{name}{rest}"),
        false => format!("docker.io/library/{name}{rest}"),
    }
}

impl ImageCommands for AppleCli {
    /// 1.2.2 `Sources/ContainerCommands/Image/ImageInspect.swift`.
    fn inspect(&self, refs: &[&ImageRef]) -> Invocation {
        self.cmd()
            .args(["image", "inspect"])
            .args(refs.iter().map(|r| qualified(r)))
            .read_only()
    }

    /// 1.2.2 `Sources/ContainerCommands/Image/ImagePull.swift`: a short name would be pulled
    /// from `registry.domain` (see `qualified`).
    fn pull(&self, image: &ImageRef) -> Invocation {
        self.cmd().args(["image", "pull", &qualified(image)])
    }

    /// 1.2.2 `Sources/ContainerCommands/Image/ImageTag.swift`: the target goes through
    /// `normalizeReference`, so it is written out (see `qualified`).
    fn tag(&self, src: &ImageRef, dst: &ImageRef) -> Invocation {
        self.cmd()
            .args(["image", "tag", &qualified(src), &qualified(dst)])
    }

    fn remove(&self, images: &[&ImageRef]) -> Invocation {
        self.cmd()
            .args(["image", "delete"])
            .args(images.iter().map(|r| qualified(r)))
    }

    fn remove_container(&self, name: &str) -> Invocation {
        self.cmd().args(["delete", "--force", name]).may_fail()
    }

    /// `image list --format json` prints every image (there is no filter) as the same entries
    /// `image inspect` prints (1.2.2 `Sources/ContainerCommands/Image/ImageList.swift`,
    /// `ListFormat.swift`, `OutputRendering.swift`); [`AppleCli::listed`] reads the names.
    fn list(&self, _repo: &str) -> Option<Invocation> {
        Some(
            self.cmd()
                .args(["image", "list", "--format", "json"])
                .read_only(),
        )
    }

    /// The full names (`docker.io/library/x:1`) in `image list --format json`: 1.x keeps them
    /// at `configuration.name`, 0.x at `name`.
    fn listed(&self, stdout: &str) -> Vec<String> {
        let entries: Vec<serde_json::Value> = serde_json::from_str(stdout).unwrap_or_default();
        entries
            .iter()
            .filter_map(|e| {
                e.pointer("/configuration/name")
                    .or_else(|| e.get("name"))
                    .and_then(|n| n.as_str())
                    .map(String::from)
            })
            .collect()
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

pub(crate) struct Apple {
    cli: AppleCli,
}

impl Apple {
    pub(crate) fn new(program: impl Into<String>) -> Self {
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

    /// "XPC connection error" is what the CLI says when its service is down (1.2.2
    /// `Sources/ContainerXPC/XPCClient.swift`). A step killed with 137 most likely ran out of
    /// the builder VM's memory, which is sized by `[build]` in config.toml, 2 CPUs and 2 GB
    /// unless set (1.2.2 `Sources/ContainerPersistence/ContainerSystemConfig.swift`).
    fn hint(&self, tail: &[String]) -> Option<String> {
        hint_from(
            tail,
            &[
                (
                    "xpc connection error",
                    "the container system service is not running: `container system start`",
                ),
                (
                    "exit code: 137",
                    "the step was killed, likely out of memory: Apple's builder VM has 2 CPUs and 2 GB unless `[build] cpus` and `memory` are set in ~/.config/container/config.toml",
                ),
            ],
        )
    }
}

impl Backend for Apple {
    fn kind(&self) -> BackendKind {
        BackendKind::Apple
    }

    /// What 1.2.2 would get wrong without a word:
    /// - `--build-arg NAME` (the value from the environment): the CLI passes the bare name on
    ///   (`Sources/ContainerCommands/BuildCommand.swift`, `Sources/ContainerBuild/Builder.swift`
    ///   `buildMetadata`), and the shim makes it `NAME=""`, which also overrides the
    ///   Dockerfile's default (container-builder-shim `pkg/build/buildopts.go`, `mapExtract`;
    ///   `pkg/build/build.go`). Passing the value in argv would show a secret, so it is
    ///   refused; a secret belongs in `--secret id=..,env=VAR` and `RUN --mount=type=secret`.
    /// - a pull policy of "never": `--pull` (since 0.10) only forces a pull; without it the
    ///   base comes from the store if there (`Sources/ContainerBuild/BuildImageResolver.swift`).
    /// - a Dockerfile of 16 KiB or more, refused only after the builder VM has started
    ///   (`DOCKERFILE_LIMIT`). Reading its size is the one file access here.
    fn check_build(&self, req: &BuildRequest) -> Result<(), UserError> {
        if !req.env_args.is_empty() {
            let names: Vec<&str> = req.env_args.keys().map(String::as_str).collect();
            return Err(UserError::engine(format!(
                "Apple container cannot pass build arguments from the environment ({}): it would build with them empty, over the Dockerfile's defaults; give them literal values (devcontainer.json build.args), or use --backend docker or podman",
                names.join(", ")
            )));
        }
        if req.pull == PullPolicy::Never {
            return Err(UserError::engine(
                "Apple container's build cannot be kept from pulling (its `--pull` only forces a pull); drop the pull option or use --backend docker or podman",
            ));
        }
        if let Ok(meta) = std::fs::metadata(&req.dockerfile) {
            if meta.len() >= DOCKERFILE_LIMIT {
                return Err(UserError::engine(format!(
                    "{} is {} bytes, and Apple container refuses a Dockerfile of 16 KiB or more (apple/container#735); shorten it or use --backend docker or podman",
                    req.dockerfile,
                    meta.len()
                )));
            }
        }
        super::check_capabilities(self, req)
    }

    /// Its builder is BuildKit's Dockerfile frontend (container-builder-shim's `go.mod` requires
    /// `github.com/moby/buildkit` v0.23.2), so `COPY --link` works; `container build` has no
    /// cache import/export, attestation or timestamp flags (`BuildCommand.swift`).
    fn supports(&self, c: super::Capability) -> bool {
        c == super::Capability::CopyLink
    }

    /// `container build --platform a,b`: `--platform` is the one spelling that
    /// `CONTAINER_DEFAULT_PLATFORM` cannot override; with `--arch` the variable wins and a
    /// two-arch build or a release stage holds one platform's content (1.2.2
    /// `Sources/ContainerCommands/BuildCommand.swift`). `--pull` forces a pull (there since
    /// 0.10). The default output loads the image into the store and tags it; an OCI archive is
    /// then written by `image save`, since there `--output type=oci,dest=P` means "load the
    /// archive at P" and `type=tar` is a root filesystem (`BuildCommand.swift`,
    /// `Sources/ContainerBuild/Builder.swift` `BuildExport`; container-builder-shim
    /// `pkg/build/build.go`). No `--cpus`/`--memory`: they size the builder VM, and a build
    /// asking other sizes than the running builder's stops and deletes it, under any other
    /// build using it (`Sources/ContainerCommands/Builder/BuilderStart.swift`).
    fn build(&self, req: &BuildRequest) -> Vec<Invocation> {
        let mut inv = self.cmd().arg("build");
        for t in &req.tags {
            inv = inv.args(["--tag", t.as_str()]);
        }
        inv = inv.args(["--platform".to_string(), Platform::join(&req.platforms)]);
        inv = inv.args(build_flags(req));
        if req.pull == PullPolicy::Always {
            inv = inv.arg("--pull");
        }
        inv = inv.args(["--progress", "plain"]).arg(req.context.as_str());
        let mut out = vec![inv];
        match &req.output {
            Output::Load => {}
            Output::Push => out.extend(self.publish(&req.tags, &[])),
            Output::Oci(p) => out.push(self.save(req.primary_tag(), p)),
        }
        out
    }

    fn commands(&self) -> &dyn ImageCommands {
        &self.cli
    }

    /// Two shapes exist: 0.x prints `{name, index: {digest}, variants}`, 1.x prints
    /// `{id, configuration: {name, descriptor: {digest}}, variants}` (1.2.2
    /// `Sources/ContainerResource/Image/ImageResource.swift`). Labels and architecture live in
    /// `variants[]` in both; `unknown/unknown` variants are attestations. Since 1.0 a missing
    /// image fails the whole call with nothing on stdout ("image not found: a, b"), and the
    /// entries come in no particular order (`Sources/ContainerCommands/Image/ImageInspect.swift`
    /// goes through a `Set`), so they are matched by name.
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
                .and_then(|d| d.as_str());
            let digest = match super::reported_digest("descriptor digest", digest) {
                Ok(d) => d,
                Err(e) => return Inspected::BadAnswer(e),
            };
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
                id: digest.as_ref().map(|d| d.to_string()),
                digest,
                labels,
                architectures,
                user,
            };
        }
        Inspected::Facts(infos)
    }

    /// Apple's store keeps one image with every architecture it was built for, so a tag is
    /// pushed whole (`AppleCli::push`); per-platform instances are never built on this engine.
    fn publish(&self, tags: &[ImageRef], _instances: &[&ImageRef]) -> Vec<Invocation> {
        tags.iter().map(|t| self.cli.push(t, false)).collect()
    }

    /// `--platform`, not `--arch`: `CONTAINER_DEFAULT_PLATFORM` overrides `--arch` for `run`
    /// too (1.2.2 `Sources/Services/ContainerAPIService/Client/DefaultPlatform.swift`
    /// `resolveWithDefaults`, `Sources/Services/ContainerAPIService/Client/Flags.swift`).
    /// Mounts are written without CSV quoting, which Apple does not read ([`Apple::check_run`]).
    fn run(&self, spec: &RunSpec) -> Invocation {
        let mut inv = self.cmd().arg("run").args(run_flags(spec, mount_value));
        if let Some(p) = spec.platform {
            inv = inv.args(["--platform".to_string(), p.to_string()]);
        }
        let image = ImageRef::parse(&spec.image)
            .map(|r| qualified(&r))
            .unwrap_or_else(|_| spec.image.clone());
        inv.arg(image).args(spec.command.iter().cloned())
    }

    /// `--mount` values are split at every `,` and every `=`, with no quoting (1.2.2
    /// `Sources/Services/ContainerAPIService/Client/Parser.swift` `mount`): a path holding
    /// either fails to parse, or names another directory. (A bind source must also be a
    /// directory there; ocx mounts only directories.)
    fn check_run(&self, spec: &RunSpec) -> Result<(), UserError> {
        for m in &spec.mounts {
            for p in [&m.host, &m.container] {
                if p.as_str().contains([',', '=']) {
                    return Err(UserError::engine(format!(
                        "Apple container cannot mount {p}: its `--mount` splits at every ',' and '=' and has no quoting; rename the directory or use --backend docker or podman"
                    )));
                }
            }
        }
        Ok(())
    }

    /// A command the image does not have (a base without `/bin/sh`): vminitd's exec fails with
    /// "failed to find target executable" (containerization
    /// `vminitd/Sources/vmexec/vmexec.swift`), and `container run` rethrows that error, so it
    /// exits 1 (swift-argument-parser's failure), never 127 (1.2.2
    /// `Sources/ContainerCommands/Container/ContainerRun.swift`).
    fn missing_executable(&self, out: &Captured) -> bool {
        out.code == Some(1) && out.stderr.contains("failed to find target executable")
    }

    /// Apple keeps registry logins in the macOS keychain, not in a file we could point it at;
    /// a release logs in, and logs out again when it ends. A login the user already keeps for
    /// the host would be replaced and then removed, so [`Apple::check_login`] refuses that.
    fn auth_store(
        &self,
        _dir: &Utf8Path,
        _vars: &BTreeMap<String, String>,
        _host: &str,
    ) -> AuthStore {
        AuthStore::default()
    }

    /// `registry list --format json`: the keychain's logins, each `{name: host, username,
    /// ...}` (1.2.2 `Sources/ContainerCommands/Registry/RegistryList.swift`,
    /// `Sources/ContainerResource/Registry/RegistryResource.swift`).
    fn keychain_logins(&self) -> Option<Invocation> {
        Some(
            self.cmd()
                .args(["registry", "list", "--format", "json"])
                .read_only(),
        )
    }

    /// `registry login` stores docker.io as registry-1.docker.io (1.2.2
    /// `Sources/ContainerCommands/Registry/RegistryLogin.swift`, containerization
    /// `Sources/ContainerizationOCI/Reference.swift` `resolveDomain`), so that is the name
    /// looked for. A listing that failed says nothing; the login then goes ahead.
    fn check_login(&self, host: &str, listing: &Captured) -> Result<(), UserError> {
        if !listing.success {
            return Ok(());
        }
        let stored = match host {
            "docker.io" => "registry-1.docker.io",
            h => h,
        };
        let entries: Vec<serde_json::Value> =
            serde_json::from_str(&listing.stdout).unwrap_or_default();
        let Some(e) = entries
            .iter()
            .find(|e| e.get("name").and_then(|n| n.as_str()) == Some(stored))
        else {
            return Ok(());
        };
        let user = e.get("username").and_then(|u| u.as_str()).unwrap_or("?");
        Err(UserError::credentials(format!(
            "your keychain holds a `container` login to {host} (as {user}) that a release login would replace and then remove; release with --auth docker-config, or run `container registry logout {host}` first"
        )))
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

    /// `container build --platform P`, then `container image push`, which reports no digest
    /// (the workflow reads it back from the registry).
    fn stage(&self, req: &BuildRequest, stage: &Stage) -> Vec<Invocation> {
        let mut req = req.clone();
        req.tags = vec![stage.tag.clone()];
        req.output = Output::Load;
        let mut out = self.build(&req);
        out.push(self.cli.push(&stage.tag, stage.plain_http));
        out
    }
}

impl Apple {
    /// `image save --output P` of every platform the image holds (1.2.2
    /// `Sources/ContainerCommands/Image/ImageSave.swift`: without `--platform`,
    /// `CONTAINER_DEFAULT_PLATFORM` picks one).
    fn save(&self, image: &ImageRef, path: &Utf8Path) -> Invocation {
        self.cmd().env(DEFAULT_PLATFORM, "").args([
            "image",
            "save",
            "--output",
            path.as_str(),
            &qualified(image),
        ])
    }
}

/// A `--mount` value as Apple's parser reads it: plain, since it knows no quoting.
fn mount_value(m: &Mount) -> String {
    let ro = if m.read_only { ",readonly" } else { "" };
    format!("type=bind,source={},target={}{ro}", m.host, m.container)
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

    const OLD: &str = r#"[{"name":"docker.io/library/ocx-dev:1","index":{"mediaType":"application/vnd.oci.image.index.v1+json","digest":"sha256:1111111111111111111111111111111111111111111111111111111111111111","size":856},
        "variants":[{"platform":{"os":"linux","architecture":"arm64","variant":"v8"},"config":{"architecture":"arm64","os":"linux","config":{"Labels":{"k":"v"}}},"size":3},
                    {"platform":{"os":"unknown","architecture":"unknown"},"config":{},"size":1}]}]"#;
    /// 1.2.2's `ImageResource`, as `image inspect` prints it (pretty, sorted keys).
    const NEW: &str = r#"[{"configuration":{"creationDate":"2026-06-01T10:00:00Z","descriptor":{"digest":"sha256:2222222222222222222222222222222222222222222222222222222222222222","mediaType":"application/vnd.oci.image.index.v1+json","size":856},"name":"docker.io/library/ocx-dev:1"},
        "id":"2222222222222222222222222222222222222222222222222222222222222222","variants":[{"config":{"architecture":"amd64","os":"linux","config":{"Labels":{"k":"w"},"User":"1000"},"rootfs":{"diff_ids":[],"type":"layers"}},"digest":"sha256:4444444444444444444444444444444444444444444444444444444444444444","platform":{"architecture":"amd64","os":"linux"},"size":3}]}]"#;

    fn req(platforms: &[Platform], output: Output) -> BuildRequest {
        let mut r = BuildRequest::new(
            "/c".into(),
            "/c/Dockerfile".into(),
            ImageRef::parse("hj:dind").unwrap(),
        );
        r.platforms = platforms.to_vec();
        r.output = output;
        r
    }

    fn refused(a: &Apple, r: &BuildRequest) -> String {
        a.check_build(r).unwrap_err().to_string()
    }

    #[test]
    fn issue14_pull_always_is_passed_and_never_is_refused() {
        let a = Apple::new("container");
        let mut r = req(&[Platform::LinuxArm64], Output::Load);
        assert!(a.check_build(&r).is_ok());
        assert!(!a.build(&r)[0].args.contains(&"--pull".to_string()));
        r.pull = PullPolicy::Always;
        assert!(a.check_build(&r).is_ok());
        assert_eq!(
            a.build(&r)[0].to_string(),
            "container build --tag hj:dind --platform linux/arm64 --file /c/Dockerfile --pull --progress plain /c"
        );
        r.pull = PullPolicy::Never;
        assert!(
            refused(&a, &r).contains("cannot be kept from pulling"),
            "{}",
            refused(&a, &r)
        );
    }

    #[test]
    fn issue14_build_args_from_the_environment_are_refused() {
        let a = Apple::new("container");
        let mut r = req(&[Platform::LinuxArm64], Output::Load);
        r.build_args.insert("TZ".into(), "UTC".into());
        assert!(a.check_build(&r).is_ok());
        r.env_args.insert("NPM_TOKEN".into(), "s3cret".into());
        r.env_args.insert("GH_TOKEN".into(), "other".into());
        let err = refused(&a, &r);
        assert!(
            err.starts_with("Apple container cannot pass build arguments from the environment (GH_TOKEN, NPM_TOKEN)"),
            "{err}"
        );
        assert!(!err.contains("s3cret") && !err.contains('\n'), "{err}");
    }

    #[test]
    fn issue14_a_dockerfile_of_16_kib_is_refused_before_the_build() {
        let a = Apple::new("container");
        let dir = tempfile::tempdir().unwrap();
        let file = camino::Utf8PathBuf::from_path_buf(dir.path().join("Dockerfile")).unwrap();
        let mut r = req(&[Platform::LinuxArm64], Output::Load);
        r.dockerfile = file.clone();
        // not written yet (ocx generates it later): nothing to check
        assert!(a.check_build(&r).is_ok());
        std::fs::write(&file, vec![b'#'; 16 * 1024 - 1]).unwrap();
        assert!(a.check_build(&r).is_ok());
        std::fs::write(&file, vec![b'#'; 16 * 1024]).unwrap();
        let err = refused(&a, &r);
        assert!(err.starts_with(&format!("{file} is 16384 bytes")), "{err}");
        assert!(err.contains("apple/container#735"), "{err}");
    }

    #[test]
    fn issue14_builds_and_runs_name_the_platform_not_the_arch() {
        let a = Apple::new("container");
        let invs = a.build(&req(&Platform::ALL, Output::Push));
        assert_eq!(
            invs[0].argv(),
            [
                "container",
                "build",
                "--tag",
                "hj:dind",
                "--platform",
                "linux/amd64,linux/arm64",
                "--file",
                "/c/Dockerfile",
                "--progress",
                "plain",
                "/c"
            ]
        );
        // the push takes every platform the image holds, whatever the variable says
        assert_eq!(
            invs[1].argv(),
            ["container", "image", "push", "docker.io/library/hj:dind"]
        );
        assert_eq!(invs[1].env, [(DEFAULT_PLATFORM.to_string(), String::new())]);
        assert_eq!(invs.len(), 2);
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
            "container run --rm --env GEMINI_API_KEY --user 501:20 --platform linux/amd64 docker.io/library/a:1 sh"
        );
    }

    #[test]
    fn issue14_an_oci_archive_is_loaded_then_saved() {
        let a = Apple::new("container");
        let invs = a.build(&req(&Platform::ALL, Output::Oci("/out/img.tar".into())));
        assert!(
            !invs[0].args.iter().any(|x| x.starts_with("--output")),
            "{}",
            invs[0]
        );
        assert_eq!(
            invs[1].to_string(),
            "CONTAINER_DEFAULT_PLATFORM='' container image save --output /out/img.tar docker.io/library/hj:dind"
        );
        assert_eq!(invs.len(), 2);
    }

    #[test]
    fn issue14_short_names_are_written_out_where_registry_domain_would_apply() {
        let a = Apple::new("container");
        let r = |s: &str| ImageRef::parse(s).unwrap();
        for (given, handed) in [
            ("ubuntu", "docker.io/library/ubuntu"),
            ("ubuntu:24.04@sha256:c35e29c9450151419d9448b0fd75374fec4fff364a27f176fb458d472dfc9e54", "docker.io/library/ubuntu:24.04@sha256:c35e29c9450151419d9448b0fd75374fec4fff364a27f176fb458d472dfc9e54"),
            ("org/tool:1", "docker.io/org/tool:1"),
            ("docker.io/org/tool:1", "docker.io/org/tool:1"),
            ("ghcr.io/a/b:1", "ghcr.io/a/b:1"),
            ("localhost:5000/x:1", "localhost:5000/x:1"),
            ("localhost/x", "localhost/x"),
        ] {
            assert_eq!(a.commands().pull(&r(given)).argv()[3], handed, "{given}");
        }
        let (src, dst) = (r("a:1"), r("b:2"));
        assert_eq!(
            a.commands().tag(&src, &dst).argv(),
            [
                "container",
                "image",
                "tag",
                "docker.io/library/a:1",
                "docker.io/library/b:2"
            ]
        );
        assert_eq!(
            a.commands().inspect(&[&src, &r("ghcr.io/x/y:1")]).argv(),
            [
                "container",
                "image",
                "inspect",
                "docker.io/library/a:1",
                "ghcr.io/x/y:1"
            ]
        );
        assert_eq!(
            a.commands().remove(&[&src]).argv(),
            ["container", "image", "delete", "docker.io/library/a:1"]
        );
        // a build's tags are normalized on docker.io by the CLI itself
        let b = a.build(&req(&[Platform::LinuxArm64], Output::Load));
        assert_eq!(b[0].argv()[2..4], ["--tag", "hj:dind"]);
    }

    #[test]
    fn issue14_mounts_are_plain_and_refused_where_apple_would_split_them() {
        let a = Apple::new("container");
        let spec = |host: &str, container: &str| RunSpec {
            image: "ghcr.io/x/y:1".into(),
            mounts: vec![Mount {
                host: host.into(),
                container: container.into(),
                read_only: true,
            }],
            ..Default::default()
        };
        // no CSV quoting: Apple would read the quote as part of the key
        let ok = spec("/p/it's \"here\":1", "/w");
        assert!(a.check_run(&ok).is_ok());
        assert_eq!(
            a.run(&ok).argv(),
            [
                "container",
                "run",
                "--mount",
                "type=bind,source=/p/it's \"here\":1,target=/w,readonly",
                "ghcr.io/x/y:1"
            ]
        );
        for (host, container) in [
            ("/p/a,b", "/w"),
            ("/p/a=b", "/w"),
            ("/p", "/w,x"),
            ("/p", "/w=x"),
        ] {
            let err = a.check_run(&spec(host, container)).unwrap_err().to_string();
            assert!(
                err.starts_with("Apple container cannot mount /")
                    && err.contains("splits at every ',' and '='"),
                "{err}"
            );
        }
    }

    #[test]
    fn issue14_a_missing_shell_is_recognised_from_apples_words_and_exit_code() {
        let a = Apple::new("container");
        // the message vminitd's exec writes, as `container run` ends with it (exit 1)
        let no_sh = Captured::failed(
            1,
            "Error: internalError: \"startProcess: failed to start process: internalError: \"vmexec error: internalError: \"failed to find target executable /bin/sh\"\"\"\n",
        );
        assert!(a.missing_executable(&no_sh));
        // runc's words and 127 are docker's and podman's, not Apple's
        let runc = Captured::failed(
            127,
            "exec: \"/bin/sh\": stat /bin/sh: no such file or directory",
        );
        assert!(!a.missing_executable(&runc));
        assert!(!a.missing_executable(&Captured::failed(1, "Error: path '/p' does not exist")));
        assert!(!a.missing_executable(&Captured::failed(
            2,
            "failed to find target executable /bin/sh"
        )));
    }

    #[test]
    fn issue14_image_list_names_and_keychain_logins() {
        let a = Apple::new("container");
        let list = a.commands().list("ignored").unwrap();
        assert_eq!(
            list.argv(),
            ["container", "image", "list", "--format", "json"]
        );
        assert!(list.read_only);
        let listed = format!(
            "[{},{}]",
            NEW.trim_start_matches('[').trim_end_matches(']'),
            OLD.trim_start_matches('[').trim_end_matches(']')
        );
        assert_eq!(
            a.commands().listed(&listed),
            ["docker.io/library/ocx-dev:1", "docker.io/library/ocx-dev:1"]
        );
        assert!(a.commands().listed("not json").is_empty());

        let keychain = a.keychain_logins().unwrap();
        assert_eq!(
            keychain.argv(),
            ["container", "registry", "list", "--format", "json"]
        );
        assert!(keychain.read_only);
        let listing = Captured::stdout(
            r#"[{"creationDate":"2026-01-02T03:04:05Z","id":"ghcr.io","labels":{},"modificationDate":"2026-01-02T03:04:05Z","name":"ghcr.io","username":"me"},{"creationDate":"2026-01-02T03:04:05Z","id":"registry-1.docker.io","labels":{},"modificationDate":"2026-01-02T03:04:05Z","name":"registry-1.docker.io","username":"hub"}]"#,
        );
        let err = a.check_login("ghcr.io", &listing).unwrap_err().to_string();
        assert!(
            err.starts_with("your keychain holds a `container` login to ghcr.io (as me)")
                && err.contains("`container registry logout ghcr.io`"),
            "{err}"
        );
        assert!(a
            .check_login("docker.io", &listing)
            .unwrap_err()
            .message()
            .contains("(as hub)"));
        assert!(a.check_login("127.0.0.1:5001", &listing).is_ok());
        assert!(a
            .check_login(
                "ghcr.io",
                &Captured::failed(1, "Error: XPC connection error")
            )
            .is_ok());
    }

    #[test]
    fn issue14_a_killed_step_points_at_the_builder_vms_size() {
        let a = Apple::new("container");
        let tail = vec![
            "Error: failed to solve: process \"/bin/sh -c make\" did not complete successfully: exit code: 137".to_string(),
        ];
        let hint = a.hint(&tail).unwrap();
        assert!(
            hint.contains("2 CPUs and 2 GB") && hint.contains("config.toml"),
            "{hint}"
        );
        assert_eq!(a.hint(&["exit code: 1".to_string()]), None);
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
            (
                Some("sha256:1111111111111111111111111111111111111111111111111111111111111111"),
                vec!["arm64".to_string()],
                Some("v")
            )
        );
        let new = facts(NEW);
        assert_eq!(
            (
                new.digest.as_deref(),
                new.architectures.clone(),
                new.label("k"),
                new.user.as_deref()
            ),
            (
                Some("sha256:2222222222222222222222222222222222222222222222222222222222222222"),
                vec!["amd64".to_string()],
                Some("w"),
                Some("1000")
            )
        );
    }

    #[test]
    fn a_missing_image_on_1x_means_asking_one_at_a_time() {
        let a = Apple::new("container");
        let (x, y) = (
            ImageRef::parse("x:1").unwrap(),
            ImageRef::parse("y:1").unwrap(),
        );
        // 1.2.2 ImageInspect.swift: nothing on stdout, the missing names sorted
        let failed = Captured::failed(1, "Error: image not found: docker.io/library/x:1\n");
        assert_eq!(a.parse_inspect(&[&x, &y], &failed), Inspected::Ambiguous);
        assert!(matches!(a.parse_inspect(&[&x], &failed), Inspected::Facts(v) if !v[0].exists));
        let down = Captured::failed(
            1,
            "Error: interrupted: \"XPC connection error: Connection invalid\"\nEnsure container system service has been started with `container system start`.\n",
        );
        assert!(matches!(
            a.parse_inspect(&[&x], &down),
            Inspected::EngineFailed(_)
        ));
    }

    #[test]
    fn a_reported_digest_that_is_not_one_is_a_bad_answer() {
        let a = Apple::new("container");
        let r = ImageRef::parse("ocx-dev:1").unwrap();
        let out = NEW.replacen(&format!("sha256:{}", "2".repeat(64)), "sha256:2222", 1);
        assert_eq!(
            a.parse_inspect(&[&r], &Captured::stdout(&out)),
            Inspected::BadAnswer(
                "descriptor digest: \"sha256:2222\" is not a sha256 digest (sha256:<64 hex digits>)"
                    .into()
            )
        );
    }
}
