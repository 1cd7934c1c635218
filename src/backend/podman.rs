//! Podman: `podman build` with `--format docker` (OCI format drops SHELL and HEALTHCHECK; but see
//! `build` for reproducible builds), and
//! `--manifest` for multi-platform builds, since one image ID cannot hold several platforms.
//! <https://docs.podman.io/en/v4.3/markdown/podman-build.1.html>

use super::compat::{build_flags, csv_field, DockerCli};
use super::logins::Reader;
use super::{
    hint_from, labels_at, AuthStore, Backend, BackendKind, Capability, ImageCommands, Inspected,
    Login, MultiPlatform, Remote, Stage,
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

/// The name podman stores a locally built image under: names without a registry host get
/// `localhost/` (docker would say `docker.io/library/`).
fn local_name(r: &ImageRef) -> String {
    if r.has_explicit_registry() {
        r.as_str().to_string()
    } else {
        format!("localhost/{}", r.as_str())
    }
}

pub(crate) struct Podman {
    cli: DockerCli,
    /// Rootless podman maps the host user into the container only with `--userns=keep-id`.
    rootless: bool,
    /// A remote client (`--connection`, `CONTAINER_HOST`): it has no `push --digestfile`.
    remote: bool,
    /// Our uid: where containers/image keeps the logins when `XDG_RUNTIME_DIR` is unset.
    uid: u32,
}

impl Podman {
    pub(crate) fn new(program: impl Into<String>, rootless: bool) -> Self {
        Podman {
            // podman's `rm --force` otherwise waits 10 s for a PID 1 that ignores SIGTERM
            cli: DockerCli::new(program, &["--time", "0"]),
            rootless,
            remote: false,
            uid: 0,
        }
    }

    pub(crate) fn for_uid(mut self, uid: u32) -> Self {
        self.uid = uid;
        self
    }

    fn cmd(&self) -> Invocation {
        self.cli.cmd()
    }

    fn push(&self, image: &ImageRef) -> Invocation {
        self.cmd().args([
            "push".to_string(),
            image.to_string(),
            format!("docker://{image}"),
        ])
    }

    fn push_list(&self, list: &ImageRef) -> Invocation {
        self.cmd().args([
            "manifest".to_string(),
            "push".into(),
            "--all".into(),
            list.to_string(),
            format!("docker://{list}"),
        ])
    }
}

impl OutputParser for Podman {
    fn step(&self, line: &str) -> Option<Step> {
        use std::sync::OnceLock;
        // buildah prefixes each platform's lines with `[linux/arm64] ` when building several,
        // and each stage's with `[2/2] ` in a multi-stage build
        static RE: OnceLock<regex::Regex> = OnceLock::new();
        let re = RE.get_or_init(|| {
            regex::Regex::new(r"^(?:\[[^\]]+\] )*STEP (\d+)/(\d+): (.*)$").expect("step")
        });
        super::step_from(re, line)
    }

    fn hint(&self, tail: &[String]) -> Option<String> {
        hint_from(
            tail,
            &[
                ("cannot connect to podman", "check `podman system connection list`, CONTAINER_HOST or `--connection`; on macOS start the machine with `podman machine start`"),
                ("no space left on device", "podman's storage is full: `podman system prune` frees unused images and build cache"),
                ("setrlimit", "podman cannot raise resource limits here; cap default_ulimits in containers.conf"),
            ],
        )
    }

    /// buildah's `Error: building at STEP "RUN ...": while running runtime: exit status 1`.
    fn step_failure(&self, line: &str) -> bool {
        line.trim_start().starts_with("Error: building at STEP")
    }
}

impl Backend for Podman {
    fn kind(&self) -> BackendKind {
        BackendKind::Podman
    }

    fn check_build(&self, req: &BuildRequest) -> Result<(), UserError> {
        super::check_capabilities(self, req)
    }

    /// buildah 1.28 (podman 4.3) refuses `COPY --link` ("COPY only supports the --chmod, --chown
    /// and --from flags") and makes no attestations; it has its own registry cache (a
    /// repository of layers, `--cache-to/--cache-from`) and `--timestamp`, which sets the
    /// image's time and every file's in its layers.
    /// <https://docs.podman.io/en/v4.3/markdown/podman-build.1.html>
    fn supports(&self, c: Capability) -> bool {
        match c {
            Capability::CopyLink | Capability::Provenance => false,
            Capability::RegistryCache | Capability::ReproducibleTimes => true,
        }
    }

    fn build(&self, req: &BuildRequest) -> Vec<Invocation> {
        // the docker format keeps SHELL and HEALTHCHECK, but its config also records the build
        // container's id and hostname and an intermediate parent id, new on every build: a
        // build that must be reproducible (SOURCE_DATE_EPOCH) is written in the OCI format
        let format = match req.source_date_epoch {
            Some(_) => "oci",
            None => "docker",
        };
        let mut inv = self.cmd().args(["build", "--format", format]);
        let multi = req.is_multi_platform();
        let primary = req.primary_tag();
        if multi {
            // a manifest list named by the first tag
            inv = inv.args(["--manifest", primary.as_str()]);
        } else {
            for t in &req.tags {
                inv = inv.args(["--tag", t.as_str()]);
            }
        }
        inv = inv.args(["--platform".to_string(), Platform::join(&req.platforms)]);
        let mut flags = build_flags(req);
        // --file is a CSV-parsed list in podman: a `,` or `"` in the path would split it
        flags[1] = csv_field(&flags[1]);
        inv = inv.args(flags);
        inv = inv.arg(match req.pull {
            PullPolicy::Missing => "--pull=missing",
            PullPolicy::Always => "--pull=always",
            PullPolicy::Never => "--pull=never",
        });
        // podman 4's layer cache does not key on --platform, so a second platform can reuse
        // the first one's RUN layers; a multi-platform build stays correct only without it
        if multi && !req.no_cache {
            inv = inv.arg("--layers=false");
        }
        if let Some(epoch) = req.source_date_epoch {
            inv = inv.args(["--timestamp".to_string(), epoch.to_string()]);
        }
        // its cache is a repository of layer images, untagged (podman picks the tags); it
        // needs the layer cache on, which a single-platform build has by default
        if let (Some(cache), false) = (&req.cache, multi) {
            let repo = cache.name_as_written().to_string();
            inv = inv.args([
                "--cache-from".to_string(),
                repo.clone(),
                "--cache-to".into(),
                repo,
            ]);
        }
        inv = inv.arg(req.context.as_str());
        // podman 4.3 exits at once on SIGINT/SIGTERM, even mid-commit: it leaves its working
        // container and, in a commit, a half-written image that breaks `podman images` for
        // every user of the store; its steps' processes are stopped instead, so the step fails
        // and podman cleans up (or ends an ENV/LABEL/COPY step and the build)
        inv = inv.stopped_by_helpers();
        let mut out = Vec::new();
        if multi {
            // a stale list would keep old instances; podman 4.3 has no `manifest rm --ignore`,
            // and `rmi` refuses lists
            out.push(
                self.cmd()
                    .args(["manifest", "rm", primary.as_str()])
                    .may_fail(),
            );
        }
        out.push(inv);
        if multi {
            for extra in &req.tags[1..] {
                out.push(self.cli.tag(primary, extra));
            }
        }
        match &req.output {
            Output::Load => {}
            Output::Push if multi => out.extend(req.tags.iter().map(|t| self.push_list(t))),
            Output::Push => out.extend(req.tags.iter().map(|t| self.push(t))),
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

    fn multi_platform(&self) -> MultiPlatform {
        MultiPlatform::PerPlatformThenList
    }

    fn commands(&self) -> &dyn ImageCommands {
        &self.cli
    }

    fn parse_inspect(&self, refs: &[&ImageRef], out: &Captured) -> Inspected {
        let names_match = |r: &ImageRef, n: &str| self.names_match(r, n);
        self.cli.parse_inspect(refs, out, names_match, |v| {
            let id = v.get("Id").and_then(|i| i.as_str()).map(|i| {
                if i.starts_with("sha256:") {
                    i.to_string()
                } else {
                    format!("sha256:{i}")
                }
            });
            let digest = v.get("Digest").and_then(|d| d.as_str());
            let digest = super::reported_digest("Digest", digest)?;
            let labels = labels_at(v.get("Labels").or_else(|| v.pointer("/Config/Labels")));
            Ok(DockerCli::info(v, id, digest, labels))
        })
    }

    /// Podman reports locally built short names as `localhost/<name>`.
    fn names_match(&self, want: &ImageRef, engine_name: &str) -> bool {
        // the common answers first: the full grammar check costs ~60 ms once per process
        if engine_name == local_name(want) || engine_name == want.as_str() {
            return true;
        }
        let Ok(other) = ImageRef::parse(engine_name) else {
            return false;
        };
        other == *want || other.as_str() == local_name(want) || engine_name == local_name(want)
    }

    fn publish(&self, tags: &[ImageRef], instances: &[&ImageRef]) -> Vec<Invocation> {
        let mut out = Vec::new();
        for tag in tags {
            if instances.is_empty() {
                out.push(self.push(tag));
            } else {
                out.extend(self.assemble_list(tag, instances));
                out.push(self.push_list(tag));
            }
        }
        out
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
        let keep_id = self.rootless && spec.user.is_some();
        self.cli
            .run(spec, if keep_id { &["--userns=keep-id"] } else { &[] })
    }

    fn configure(&mut self, remote: &Remote) -> Result<(), UserError> {
        if remote.builder.is_some() {
            return Err(UserError::engine(
                "--builder is a docker buildx option; podman builds with its own engine (use --connection NAME for a remote podman)",
            ));
        }
        if let Some(c) = &remote.connection {
            self.cli.global = vec!["--connection".into(), c.clone()];
        }
        self.remote = remote.connection.is_some() || remote.container_host;
        Ok(())
    }

    /// <https://docs.podman.io/en/v4.3/markdown/podman-login.1.html>: `--authfile`, or
    /// `REGISTRY_AUTH_FILE` for every later command.
    fn auth_store(
        &self,
        dir: &Utf8Path,
        _vars: &BTreeMap<String, String>,
        _host: &str,
    ) -> AuthStore {
        AuthStore {
            env: vec![(
                "REGISTRY_AUTH_FILE".into(),
                dir.join("auth.json").to_string(),
            )],
            ..Default::default()
        }
    }

    fn login_files(&self, vars: &BTreeMap<String, String>) -> Vec<Utf8PathBuf> {
        login_files(vars, self.uid, cfg!(target_os = "macos"))
    }

    fn login_reader(&self) -> Reader {
        Reader::ContainersImage
    }

    fn login(&self, login: &Login, dir: &Utf8Path) -> Invocation {
        let mut extra = vec!["--authfile".to_string(), dir.join("auth.json").to_string()];
        if login.plain_http {
            extra.push("--tls-verify=false".into());
        }
        self.cli.login(login, &extra)
    }

    /// Builds under the staging tag, then `push --digestfile` (a local client only; podman 4.3
    /// hides the flag on remote clients). A child's FROM is a registry digest, so a plain-HTTP
    /// registry needs `--tls-verify=false` on the build too.
    fn stage(&self, req: &BuildRequest, stage: &Stage) -> Vec<Invocation> {
        let mut req = req.clone();
        req.tags = vec![stage.tag.clone()];
        req.output = Output::Load;
        let mut out = self.build(&req);
        let tls = stage.plain_http.then(|| "--tls-verify=false".to_string());
        if let (Some(t), Some(build)) = (&tls, out.last_mut()) {
            let ctx = build.args.pop().unwrap_or_default();
            build.args.push(t.clone());
            build.args.push(ctx);
        }
        let mut push = self.cmd().arg("push").args(tls);
        if !self.remote {
            push = push.args(["--digestfile", stage.digest_file.as_str()]);
        }
        out.push(push.args([stage.tag.to_string(), format!("docker://{}", stage.tag)]));
        out
    }

    fn staged_digest(&self, text: &str) -> Option<String> {
        let d = text.trim();
        (!self.remote && d.starts_with("sha256:")).then(|| d.to_string())
    }

    fn store_check(&self) -> Option<Invocation> {
        Some(self.cmd().args(["images", "--quiet"]).read_only())
    }

    /// containers/storage's `locating item named "manifest" for image with ID "<id>" (consider
    /// removing the image to resolve the issue)`: an image record whose manifest was never
    /// written. `rmi --force` by id is the fix podman names.
    fn broken_image(&self, out: &Captured) -> Option<(String, Invocation)> {
        use std::sync::OnceLock;
        static RE: OnceLock<regex::Regex> = OnceLock::new();
        let re = RE.get_or_init(|| {
            regex::Regex::new(r#"for image with ID "([0-9a-f]{64})""#).expect("broken image")
        });
        if out.success {
            return None;
        }
        let id = re.captures(&out.stderr)?[1].to_string();
        let rm = self.cmd().args(["rmi", "--force", id.as_str()]);
        Some((id, rm))
    }
}

/// The files podman reads logins from, in its order (containers/image `getAuthFilePaths`, as in
/// podman 4): the primary file (`REGISTRY_AUTH_FILE`; else on macOS
/// `~/.config/containers/auth.json`; else `$XDG_RUNTIME_DIR/containers/auth.json`, or
/// `/run/containers/<uid>/auth.json` when it is unset: root, CI, ssh sessions), then
/// `$XDG_CONFIG_HOME/containers/auth.json`, then docker's `config.json`.
/// <https://github.com/containers/image/blob/main/docs/containers-auth.json.5.md>
fn login_files(vars: &BTreeMap<String, String>, uid: u32, macos: bool) -> Vec<Utf8PathBuf> {
    let set = |k: &str| vars.get(k).filter(|v| !v.is_empty()).map(Utf8PathBuf::from);
    let config_home = crate::dirs::config_home(vars);
    let primary = match (set("REGISTRY_AUTH_FILE"), macos) {
        (Some(f), _) => Some(f),
        (None, true) => crate::dirs::home(vars).map(|h| h.join(".config/containers/auth.json")),
        (None, false) => Some(match set("XDG_RUNTIME_DIR") {
            Some(d) => d.join("containers/auth.json"),
            None => Utf8PathBuf::from(format!("/run/containers/{uid}/auth.json")),
        }),
    };
    let mut out: Vec<Utf8PathBuf> = Vec::new();
    for f in primary
        .into_iter()
        .chain(config_home.map(|c| c.join("containers/auth.json")))
        .chain(super::docker_config_file(vars))
    {
        if !out.contains(&f) {
            out.push(f);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::{Login, Remote, Stage};
    use crate::build::RunAs;

    #[test]
    fn login_files_in_podmans_order() {
        let vars = |kv: &[(&str, &str)]| -> BTreeMap<String, String> {
            kv.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        // root in CI or over ssh: no XDG_RUNTIME_DIR
        assert_eq!(
            login_files(&vars(&[("HOME", "/root")]), 0, false),
            [
                "/run/containers/0/auth.json",
                "/root/.config/containers/auth.json",
                "/root/.docker/config.json"
            ]
        );
        let v = vars(&[
            ("HOME", "/home/u"),
            ("XDG_RUNTIME_DIR", "/run/user/1000"),
            ("XDG_CONFIG_HOME", "/cfg"),
            ("DOCKER_CONFIG", "/dc"),
        ]);
        assert_eq!(
            login_files(&v, 1000, false),
            [
                "/run/user/1000/containers/auth.json",
                "/cfg/containers/auth.json",
                "/dc/config.json"
            ]
        );
        assert_eq!(
            login_files(&vars(&[("HOME", "/Users/u")]), 501, true)[0],
            "/Users/u/.config/containers/auth.json"
        );
        let mut v = v;
        v.insert("REGISTRY_AUTH_FILE".into(), "/a.json".into());
        assert_eq!(login_files(&v, 1000, false)[0], "/a.json");
        assert_eq!(
            Podman::new("podman", false).login_reader(),
            Reader::ContainersImage
        );
    }

    fn req(platforms: &[Platform], output: Output) -> BuildRequest {
        crate::backend::test_request("hj:base", "hj:base-v1", platforms, output)
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
    fn a_dockerfile_path_with_a_comma_is_quoted_for_podmans_csv_parser() {
        let p = Podman::new("podman", false);
        let mut r = req(&[Platform::LinuxAmd64], Output::Load);
        r.dockerfile = "/a,b/Docker\"file".into();
        let inv = &p.build(&r)[0];
        assert!(
            inv.args
                .windows(2)
                .any(|w| w == ["--file", "\"/a,b/Docker\"\"file\""]),
            "{inv}"
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
    }

    #[test]
    fn publishing_per_platform_instances_assembles_then_pushes_each_list() {
        let p = Podman::new("podman", false);
        let tags = [
            ImageRef::parse("r.io/hj:top").unwrap(),
            ImageRef::parse("r.io/hj:top-v1").unwrap(),
        ];
        let a = ImageRef::parse("r.io/hj:top-amd64").unwrap();
        let b = ImageRef::parse("hj:top-arm64").unwrap();
        let argv: Vec<String> = p
            .publish(&tags, &[&a, &b])
            .iter()
            .map(|i| i.to_string())
            .collect();
        assert_eq!(argv.len(), 10);
        assert_eq!(argv[0], "podman manifest rm r.io/hj:top");
        assert_eq!(
            argv[3],
            "podman manifest add r.io/hj:top containers-storage:localhost/hj:top-arm64"
        );
        assert_eq!(
            argv[4],
            "podman manifest push --all r.io/hj:top docker://r.io/hj:top"
        );
        assert_eq!(
            p.publish(&tags[..1], &[])[0].argv(),
            ["podman", "push", "r.io/hj:top", "docker://r.io/hj:top"]
        );
    }

    #[test]
    fn podman_inspect_shape_and_localhost_names() {
        let p = Podman::new("podman", false);
        let r = ImageRef::parse("ocx-dev:1").unwrap();
        let out = r#"[{"Id":"abc","Digest":"sha256:defdefdefdefdefdefdefdefdefdefdefdefdefdefdefdefdefdefdefdefdefd","RepoTags":["localhost/ocx-dev:1"],"Architecture":"amd64","Labels":{"io.agent-images.fingerprint":"f"}}]"#;
        let Inspected::Facts(mut infos) = p.parse_inspect(&[&r], &Captured::stdout(out)) else {
            panic!()
        };
        let info = infos.pop().unwrap();
        assert_eq!(
            (info.id.as_deref(), info.digest.as_deref()),
            (
                Some("sha256:abc"),
                Some("sha256:defdefdefdefdefdefdefdefdefdefdefdefdefdefdefdefdefdefdefdefdefd")
            )
        );
        assert_eq!(info.label("io.agent-images.fingerprint"), Some("f"));
        assert!(p.names_match(&r, "localhost/ocx-dev:1"));
        assert!(p.names_match(&r, "docker.io/library/ocx-dev:1"));
        assert!(!p.names_match(&r, "localhost/ocx-dev:2"));
        let r = ImageRef::parse("local/debian:bookworm").unwrap();
        assert!(p.names_match(&r, "localhost/local/debian:bookworm"));
        let bad = r#"[{"Id":"abc","Digest":"sha256:def","RepoTags":["localhost/local/debian:bookworm"]}]"#;
        assert_eq!(
            p.parse_inspect(&[&r], &Captured::stdout(bad)),
            Inspected::BadAnswer(
                "Digest: \"sha256:def\" is not a sha256 digest (sha256:<64 hex digits>)".into()
            )
        );
    }

    #[test]
    fn rootless_run_keeps_the_host_user() {
        let spec = RunSpec {
            image: "x".into(),
            user: Some(RunAs::uid(1000)),
            remove: true,
            ..Default::default()
        };
        assert_eq!(
            Podman::new("podman", true).run(&spec).to_string(),
            "podman run --userns=keep-id --rm --user 1000 x"
        );
        assert_eq!(
            Podman::new("podman", false).run(&spec).to_string(),
            "podman run --rm --user 1000 x"
        );
    }

    fn login() -> Login {
        Login {
            host: "127.0.0.1:5001".into(),
            username: "bot".into(),
            password: "s3cret".into(),
            plain_http: true,
        }
    }

    #[test]
    fn release_login_and_stage_with_digestfile_and_a_remote_connection() {
        let mut p = Podman::new("podman", false);
        let inv = p.login(&login(), Utf8Path::new("/t/a"));
        assert_eq!(
            inv.to_string(),
            "podman login --username bot --password-stdin --authfile /t/a/auth.json --tls-verify=false 127.0.0.1:5001 <stdin>"
        );
        assert_eq!(inv.stdin.as_deref(), Some(&b"s3cret"[..]));
        assert_eq!(
            p.auth_store(Utf8Path::new("/t/a"), &BTreeMap::new(), "127.0.0.1:5001")
                .env,
            [(
                "REGISTRY_AUTH_FILE".to_string(),
                "/t/a/auth.json".to_string()
            )]
        );
        let stage = Stage {
            tag: ImageRef::parse("127.0.0.1:5001/hj:stage-base-arm64-abc").unwrap(),
            layout: "/t/l.oci".into(),
            digest_file: "/t/d".into(),
            plain_http: true,
        };
        let invs = p.stage(&req(&[Platform::LinuxArm64], Output::Push), &stage);
        assert_eq!(invs.len(), 2);
        assert!(invs[0].to_string().starts_with(
            "podman build --format docker --tag 127.0.0.1:5001/hj:stage-base-arm64-abc --platform linux/arm64 "
        ));
        assert!(
            invs[0].to_string().ends_with(" --tls-verify=false /ctx"),
            "{}",
            invs[0]
        );
        assert_eq!(
            invs[1].to_string(),
            "podman push --tls-verify=false --digestfile /t/d 127.0.0.1:5001/hj:stage-base-arm64-abc docker://127.0.0.1:5001/hj:stage-base-arm64-abc"
        );
        assert_eq!(p.staged_digest("sha256:ab\n").as_deref(), Some("sha256:ab"));

        p.configure(&Remote {
            connection: Some("mac".into()),
            ..Default::default()
        })
        .unwrap();
        let invs = p.stage(&req(&[Platform::LinuxArm64], Output::Load), &stage);
        assert!(invs[1]
            .to_string()
            .starts_with("podman --connection mac push "));
        assert!(!invs[1].args.contains(&"--digestfile".to_string()));
        assert_eq!(
            p.staged_digest("sha256:ab"),
            None,
            "read back from the registry"
        );
        assert!(p
            .configure(&Remote {
                builder: Some("b".into()),
                ..Default::default()
            })
            .is_err());
    }

    #[test]
    fn buildah_step_failure_summary() {
        let p = Podman::new("podman", false);
        assert!(p.step_failure("Error: building at STEP \"RUN /usr/local/bin/opencode --version\": while running runtime: exit status 127"));
        assert!(
            !p.step_failure("Error relocating /usr/local/bin/opencode: fcntl64: symbol not found")
        );
    }

    #[test]
    fn buildah_steps_with_a_platform_prefix() {
        let p = Podman::new("podman", false);
        let s = p.step("[linux/arm64] STEP 6/12: RUN sh setup").unwrap();
        assert_eq!(
            (s.current, s.total, s.text.as_str()),
            (6, 12, "RUN sh setup")
        );
        assert_eq!(p.step("--> 1234abcd"), None);
        let s = p
            .step("[linux/amd64] [2/2] STEP 9/13: RUN [\"opencode\",\"--version\"]")
            .unwrap();
        assert_eq!((s.current, s.total), (9, 13), "platform and stage prefixes");
    }

    /// Issue 18: podman is stopped through its steps' processes, never signalled itself, and a
    /// half-written image its store cannot read is named by id, with the removal podman asks for.
    #[test]
    fn builds_are_stopped_through_their_helpers_and_a_broken_image_is_named() {
        let p = Podman::new("podman", false);
        let invs = p.build(&req(&[Platform::LinuxAmd64], Output::Push));
        assert_eq!(invs[0].stop, crate::invocation::StopBy::Helpers);
        assert_eq!(invs[1].stop, crate::invocation::StopBy::Signal, "the push");
        let id = "28819be3feb6519dd7af0327ce0b9dd5a7429c5ae50b1b5b9f5402d99ab1e8d8";
        let out = Captured::failed(
            125,
            &format!("Error: locating item named \"manifest\" for image with ID \"{id}\" (consider removing the image to resolve the issue): file does not exist\n"),
        );
        let (got, rm) = p.broken_image(&out).unwrap();
        assert_eq!(got, id);
        assert_eq!(rm.to_string(), format!("podman rmi --force {id}"));
        assert!(p.broken_image(&Captured::stdout("abc\n")).is_none());
        assert_eq!(
            p.store_check().unwrap().to_string(),
            "podman images --quiet"
        );
    }
}
