//! The docker-compatible CLI that docker and podman share: `image inspect` as a JSON array,
//! `pull`, `tag`, `image rm`, `run` flags and the common build flags. Each of the two backends
//! holds a [`DockerCli`] and adds only what differs.

use super::{ImageCommands, Inspected};
use crate::build::{BuildRequest, ImageInfo, Mount, RunSpec};
use crate::digest::ImageDigest;
use crate::exec::Captured;
use crate::image_ref::ImageRef;
use crate::invocation::Invocation;

pub(crate) struct DockerCli {
    pub program: String,
    /// Options before the subcommand on every call (podman `--connection NAME`).
    pub global: Vec<String>,
    /// What `rm --force` needs besides the name to remove a running container at once.
    rm_now: &'static [&'static str],
}

impl ImageCommands for DockerCli {
    fn inspect(&self, refs: &[&ImageRef]) -> Invocation {
        super::image_inspect(self.cmd(), refs)
    }

    fn pull(&self, image: &ImageRef) -> Invocation {
        self.cmd().args(["pull", image.as_str()])
    }

    fn tag(&self, src: &ImageRef, dst: &ImageRef) -> Invocation {
        self.cmd().args(["tag", src.as_str(), dst.as_str()])
    }

    fn remove(&self, images: &[&ImageRef]) -> Invocation {
        self.cmd()
            .args(["image", "rm"])
            .args(images.iter().map(|r| r.as_str()))
    }

    fn list(&self, repo: &str) -> Option<Invocation> {
        Some(
            self.cmd()
                .args(["image", "ls", "--format", "{{.Repository}}:{{.Tag}}", repo])
                .read_only(),
        )
    }

    fn remove_container(&self, name: &str) -> Invocation {
        self.cmd()
            .args(["rm", "--force"])
            .args(self.rm_now.iter().copied())
            .arg(name)
            .may_fail()
    }

    fn discard_container(&self, name: &str) -> Invocation {
        self.cmd()
            .args(["rm", "--force", "--volumes"])
            .args(self.rm_now.iter().copied())
            .arg(name)
            .may_fail()
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

impl DockerCli {
    pub(crate) fn new(program: impl Into<String>, rm_now: &'static [&'static str]) -> Self {
        DockerCli {
            program: program.into(),
            rm_now,
            global: Vec::new(),
        }
    }

    pub(crate) fn cmd(&self) -> Invocation {
        Invocation::new(&self.program).args(self.global.iter().cloned())
    }

    /// `login --username U --password-stdin [extra] host`, the password on stdin.
    pub(crate) fn login(&self, login: &super::Login, extra: &[String]) -> Invocation {
        self.cmd()
            .args(["login", "--username", &login.username, "--password-stdin"])
            .args(extra.iter().cloned())
            .arg(&login.host)
            .stdin(login.password.as_bytes().to_vec())
    }

    /// The facts both CLIs report under the same keys; `id`, `digest` and `labels` come from
    /// where each keeps them.
    pub(crate) fn info(
        v: &serde_json::Value,
        id: Option<String>,
        digest: Option<ImageDigest>,
        labels: std::collections::BTreeMap<String, String>,
    ) -> ImageInfo {
        ImageInfo {
            exists: true,
            id,
            digest,
            labels,
            architectures: v
                .get("Architecture")
                .and_then(|a| a.as_str())
                .map(String::from)
                .into_iter()
                .collect(),
            user: v
                .pointer("/Config/User")
                .or_else(|| v.get("User"))
                .and_then(|u| u.as_str())
                .map(String::from),
        }
    }

    /// `run` with the flags both CLIs spell the same; `extra` goes right after `run`.
    pub(crate) fn run(&self, spec: &RunSpec, extra: &[&str]) -> Invocation {
        let mut inv = self.cmd().arg("run").args(extra.iter().copied());
        inv = inv.args(run_flags(spec, csv_mount));
        if let Some(p) = spec.platform {
            inv = inv.args(["--platform".to_string(), p.to_string()]);
        }
        inv.arg(&spec.image).args(spec.command.iter().cloned())
    }

    /// Matches the JSON array both CLIs print to the requests. The array skips missing images
    /// but keeps request order, so entries are matched by name first, then by position. A
    /// failure whose every error line says "not found" is an answer; anything else (a dead
    /// daemon, no permission) is the engine failing.
    pub(crate) fn parse_inspect(
        &self,
        refs: &[&ImageRef],
        out: &Captured,
        names_match: impl Fn(&ImageRef, &str) -> bool,
        to_info: impl Fn(&serde_json::Value) -> Result<ImageInfo, String>,
    ) -> Inspected {
        if !out.success && !only_not_found(&out.stderr) {
            return Inspected::EngineFailed(engine_error(out));
        }
        let entries: Vec<serde_json::Value> = if out.stdout.trim().is_empty() {
            Vec::new()
        } else {
            match serde_json::from_str(&out.stdout) {
                Ok(e) => e,
                Err(_) => return Inspected::EngineFailed(engine_error(out)),
            }
        };
        if entries.len() == refs.len() {
            return match entries.iter().map(&to_info).collect() {
                Ok(infos) => Inspected::Facts(infos),
                Err(e) => Inspected::BadAnswer(e),
            };
        }
        let mut infos = vec![ImageInfo::missing(); refs.len()];
        let mut taken = vec![false; refs.len()];
        for entry in &entries {
            let names: Vec<String> = string_list(entry, "RepoTags")
                .chain(string_list(entry, "RepoDigests"))
                .collect();
            // the name as written (podman: under `localhost/`) first, for every request: the
            // full grammar check behind `names_match` costs ~60 ms once per process, as much
            // as the whole inspect of a no-op build
            let exact = |r: &ImageRef, n: &str| {
                let n = n.strip_prefix("localhost/").unwrap_or(n);
                n == r.as_str()
                    || (r.name_as_written() == r.as_str()
                        && n.strip_suffix(":latest") == Some(r.as_str()))
            };
            let free = |i: &usize| !taken[*i];
            let hit = refs
                .iter()
                .enumerate()
                .find(|(i, r)| free(i) && names.iter().any(|n| exact(r, n)))
                .or_else(|| {
                    refs.iter().enumerate().find(|(i, r)| {
                        free(i)
                            && names.iter().any(|n| {
                                names_match(r, n) || r.digest().is_some_and(|d| n.ends_with(d))
                            })
                    })
                });
            match hit {
                Some((i, _)) => {
                    taken[i] = true;
                    infos[i] = match to_info(entry) {
                        Ok(info) => info,
                        Err(e) => return Inspected::BadAnswer(e),
                    };
                }
                // an untagged entry (a manifest-list instance) with something missing
                None => return Inspected::Ambiguous,
            }
        }
        Inspected::Facts(infos)
    }
}

fn string_list<'a>(v: &'a serde_json::Value, key: &str) -> impl Iterator<Item = String> + 'a {
    v.get(key)
        .and_then(|a| a.as_array())
        .into_iter()
        .flatten()
        .filter_map(|s| s.as_str().map(String::from))
}

/// Both CLIs say so in their own words when an image is missing.
fn only_not_found(stderr: &str) -> bool {
    let markers = ["no such image", "image not known", "not found"];
    let lines: Vec<String> = stderr
        .lines()
        .map(|l| l.trim().to_ascii_lowercase())
        .filter(|l| !l.is_empty())
        .collect();
    !lines.is_empty() && lines.iter().all(|l| markers.iter().any(|m| l.contains(m)))
}

fn engine_error(out: &Captured) -> String {
    let text = out.stderr.trim();
    if text.is_empty() {
        format!("exit code {}", out.code.unwrap_or(-1))
    } else {
        text.lines().take(3).collect::<Vec<_>>().join(" ")
    }
}

/// `--file`, `--build-arg`, `--label`, `--target`, `--no-cache`: spelled the same by all three
/// CLIs.
pub(crate) fn build_flags(req: &BuildRequest) -> Vec<String> {
    let mut a = vec!["--file".to_string(), req.dockerfile.to_string()];
    for (k, v) in &req.build_args {
        a.push("--build-arg".into());
        a.push(format!("{k}={v}"));
    }
    // the value is in the builder's environment (see `BuildRequest::env_args`)
    for k in req.env_args.keys() {
        a.push("--build-arg".into());
        a.push(k.clone());
    }
    for (k, v) in &req.labels {
        a.push("--label".into());
        a.push(format!("{k}={v}"));
    }
    if let Some(t) = &req.target {
        a.push("--target".into());
        a.push(t.clone());
    }
    if req.no_cache {
        a.push("--no-cache".into());
    }
    a
}

/// Mounts, workdir, env names, user and container name: the same on all three `run`s, but for
/// how a `--mount` value is written (`mount`: [`csv_mount`] for docker and podman).
pub(crate) fn run_flags(spec: &RunSpec, mount: fn(&Mount) -> String) -> Vec<String> {
    let mut a = Vec::new();
    if spec.remove {
        a.push("--rm".into());
    }
    if let Some(n) = &spec.name {
        a.push("--name".into());
        a.push(n.clone());
    }
    if spec.interactive {
        a.push("-i".into());
    }
    if spec.tty {
        a.push("-t".into());
    }
    for m in &spec.mounts {
        a.push("--mount".into());
        a.push(mount(m));
    }
    if let Some(w) = &spec.workdir {
        a.push("--workdir".into());
        a.push(w.to_string());
    }
    for name in &spec.env_names {
        a.push("--env".into());
        a.push(name.clone());
    }
    if let Some(u) = spec.user {
        a.push("--user".into());
        a.push(u.to_string());
    }
    if let Some(e) = &spec.entrypoint {
        a.push("--entrypoint".into());
        a.push(e.clone());
    }
    if spec.detach {
        a.push("--detach".into());
    }
    a.extend(spec.flags.iter().cloned());
    a
}

/// A `--mount` value with CSV quoting, so a `:` or `,` in a path cannot split the value the way
/// it would with `-v`.
pub(crate) fn csv_mount(m: &Mount) -> String {
    let mut v = format!(
        "type=bind,{},{}",
        csv_field(&format!("source={}", m.host)),
        csv_field(&format!("target={}", m.container))
    );
    if m.read_only {
        v.push_str(",readonly");
    }
    v
}

/// Whether a `run` failed because the command (or entrypoint) does not exist in the image:
/// docker and podman both exit 127 and say so in runc's words.
pub(crate) fn missing_executable(out: &Captured) -> bool {
    let text = out.stderr.to_ascii_lowercase();
    out.code == Some(127)
        && (text.contains("no such file or directory")
            || text.contains("executable file not found")
            || text.contains("not found"))
}

/// Whether an `exec` failed because the container stopped: docker says "is not running",
/// podman "container state improper" (or, once removed, that there is no such container).
pub(crate) fn container_stopped(out: &Captured) -> bool {
    let text = out.stderr.to_ascii_lowercase();
    !out.success
        && [
            "is not running",
            "container state improper",
            "no such container",
            "no container with name or id",
        ]
        .iter()
        .any(|m| text.contains(m))
}

/// One field of a CSV-parsed flag value (`--mount`): quoted when it holds `,`, `"` or a line
/// break, the way Go's encoding/csv reads it, which docker and podman both use (unquoted, a
/// line break ends the record and the rest of the path is lost).
pub(crate) fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_fields_quote_what_go_would_split_on() {
        assert_eq!(csv_field("source=/a/b"), "source=/a/b");
        assert_eq!(csv_field("source=/a,b"), "\"source=/a,b\"");
        assert_eq!(csv_field("source=/a\"b"), "\"source=/a\"\"b\"");
        assert_eq!(csv_field("source=/a\nb"), "\"source=/a\nb\"");
        assert_eq!(csv_field("source=/a\rb"), "\"source=/a\rb\"");
    }

    #[test]
    fn missing_is_an_answer_but_a_dead_daemon_is_not() {
        let cli = DockerCli::new("docker", &[]);
        let a = ImageRef::parse("a:1").unwrap();
        let to = |_: &serde_json::Value| Ok(ImageInfo::missing());
        let same = |r: &ImageRef, n: &str| ImageRef::parse(n).is_ok_and(|n| n == *r);
        let missing = Captured {
            success: false,
            code: Some(1),
            stdout: "[]\n".into(),
            stderr: "Error response from daemon: no such image: a:1: No such image: a:1\n".into(),
        };
        assert!(matches!(
            cli.parse_inspect(&[&a], &missing, same, to),
            Inspected::Facts(v) if !v[0].exists
        ));
        let podman = Captured::failed(125, "Error: inspecting object: a:1: image not known\n");
        assert!(matches!(
            cli.parse_inspect(&[&a], &podman, same, to),
            Inspected::Facts(_)
        ));
        let dead = Captured {
            stdout: "[]\n".into(),
            ..Captured::failed(1, "Cannot connect to the Docker daemon at unix:///tmp/x.sock. Is the docker daemon running?\n")
        };
        match cli.parse_inspect(&[&a], &dead, same, to) {
            Inspected::EngineFailed(m) => assert!(m.starts_with("Cannot connect"), "{m}"),
            other => panic!("{other:?}"),
        }
    }

    /// A boot's container: detached, then the label's flags, the image and its init.
    #[test]
    fn a_boot_runs_detached_with_the_label_flags() {
        let spec = RunSpec {
            image: "r:dind".into(),
            name: Some("hjk-boot-1-0".into()),
            command: vec!["/lib/systemd/systemd".into()],
            detach: true,
            flags: vec!["--privileged".into(), "--systemd=always".into()],
            ..Default::default()
        };
        assert_eq!(
            DockerCli::new("podman", &["--time", "0"]).run(&spec, &[]).to_string(),
            "podman run --name hjk-boot-1-0 --detach --privileged --systemd=always r:dind /lib/systemd/systemd"
        );
        let cli = DockerCli::new("docker", &[]);
        assert_eq!(
            cli.exec("n", Some("developer"), &["id".into(), "-un".into()])
                .to_string(),
            "docker exec --user developer n id -un"
        );
        assert_eq!(
            cli.discard_container("n").to_string(),
            "docker rm --force --volumes n"
        );
    }

    #[test]
    fn mounts_are_csv_quoted() {
        let spec = RunSpec {
            mounts: vec![crate::build::Mount {
                host: "/p/a:b,c\"d".into(),
                container: "/w".into(),
                read_only: true,
            }],
            ..Default::default()
        };
        assert_eq!(
            run_flags(&spec, csv_mount),
            [
                "--mount",
                "type=bind,\"source=/p/a:b,c\"\"d\",target=/w,readonly"
            ]
        );
    }
}
