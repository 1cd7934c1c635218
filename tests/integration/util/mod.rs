//! The one helper module of the integration tests: test modules share code only through it.
//! Here: a hermetic environment per test ([`TestEnv`]: its own HOME, XDG dirs, project directory
//! and a bin dir at the front of PATH for fake or recording engines; tests pass env to the
//! child process only, the test process's own environment is never mutated), the command
//! checker [`Run`], and in submodules: what a test needs from outside ([`need`]), the fakes'
//! typed script ([`fake`]), the recorded invocations ([`argv`]), waiting on a condition
//! ([`wait`]), child processes and signals ([`process`]), the password registry and release
//! fixture ([`registry`]), the images' Dockerfiles ([`dockerfile`]) and the stand-in hierarchy
//! ([`standin`]).

pub mod argv;
pub mod dockerfile;
pub mod fake;
pub mod need;
pub mod process;
pub mod real;
pub mod registry;
pub mod standin;
pub mod wait;

pub use need::{need, Need};

use argv::Argv;

use assert_cmd::Command;
use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

pub struct TestEnv {
    pub dir: tempfile::TempDir,
    pub vars: BTreeMap<String, String>,
}

pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// Where real-engine tests keep downloaded opencode binaries, shared across tests and runs so
/// each version is fetched once.
pub fn shared_cache() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("target/test-cache")
}

impl TestEnv {
    pub fn new() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("ai-test-")
            .tempdir()
            .unwrap();
        let root = dir.path();
        for d in ["home", "config", "cache", "bin", "project", "fake"] {
            std::fs::create_dir_all(root.join(d)).unwrap();
        }
        let mut vars = BTreeMap::new();
        // only the test's own bin dir: the machine's real engines must not be detected
        vars.insert("PATH".into(), root.join("bin").display().to_string());
        vars.insert("HOME".into(), root.join("home").display().to_string());
        vars.insert(
            "XDG_CONFIG_HOME".into(),
            root.join("config").display().to_string(),
        );
        vars.insert(
            "XDG_CACHE_HOME".into(),
            root.join("cache").display().to_string(),
        );
        vars.insert(
            "FAKE_LOG".into(),
            root.join("fake/log").display().to_string(),
        );
        vars.insert("FAKE_DIR".into(), root.join("fake").display().to_string());
        vars.insert("CI".into(), "true".into());
        TestEnv { dir, vars }
    }

    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    pub fn project(&self) -> PathBuf {
        self.root().join("project")
    }

    pub fn bin(&self) -> PathBuf {
        self.root().join("bin")
    }

    /// Installs the fake engine under `name` (docker, podman or container). Apple's `container`
    /// has its own, `fake-container`, whose replies are taken from apple/container's source.
    pub fn fake(&self, name: &str) -> &Self {
        let script = match name {
            "container" => "fake-bin/fake-container",
            _ => "fake-bin/fake-engine",
        };
        std::os::unix::fs::symlink(fixtures().join(script), self.bin().join(name)).unwrap();
        self
    }

    /// Puts an image in the fake `container`'s store: `name` with `labels` (a JSON object or
    /// `null`) on each of `arches`, as `container image inspect` prints it.
    pub fn apple_image(&self, name: &str, labels: &str, arches: &[&str]) -> &Self {
        let full = agent_images::image_ref::ImageRef::parse(name)
            .unwrap()
            .normalized();
        let file = format!("images/{}.json", full.replace('/', "%"));
        self.write(
            &format!("fake/{file}"),
            &format!("{}\n", apple_inspect_entry(&full, labels, arches)),
        )
    }

    /// Puts a wrapper named `name` first on PATH that records each argv, then runs the real one.
    pub fn recording(&self, name: &str, real: &str) -> &Self {
        let script = format!(
            "#!/bin/sh\n{{ printf '%s' {name}; for a in \"$@\"; do printf '\\t%s' \"$a\"; done; printf '\\n'; }} >>\"$FAKE_LOG\"\nexec {real} \"$@\"\n"
        );
        self.write_exe(name, &script);
        self
    }

    pub fn write_exe(&self, name: &str, body: &str) {
        let p = self.bin().join(name);
        std::fs::write(&p, body).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    /// Steers the fakes (fake-engine, fake-container, fake-supply-chain) by `script`, which
    /// replaces the one before.
    pub fn script(&self, script: &fake::Script) -> &Self {
        std::fs::write(self.root().join("fake/script"), script.text()).unwrap();
        self
    }

    /// The pid a fake recorded while it sleeps, once it has (see [`fake::Build::Hangs`]).
    pub fn fake_pid(&self, which: fake::Pid) -> i32 {
        let text = wait::file(
            &self.root().join("fake").join(which.file()),
            std::time::Duration::from_secs(30),
        );
        text.trim().parse().unwrap()
    }

    /// The signals a build under [`fake::Build::HangsThroughSignals`] has noted so far.
    pub fn fake_signals(&self) -> Vec<String> {
        std::fs::read_to_string(self.root().join("fake/build.signals"))
            .unwrap_or_default()
            .lines()
            .map(String::from)
            .collect()
    }

    pub fn write(&self, rel: &str, content: &str) -> &Self {
        let p = self.root().join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, content).unwrap();
        self
    }

    /// A `docker` first on PATH that is the machine's docker CLI, run in a private mount
    /// namespace whose CLI plugin directories are empty: the classic builder on the same
    /// daemon, as for a user whose docker has no buildx plugin. (The plugin lives in a system
    /// directory every docker CLI searches, so hiding it is the only way to lose it.)
    pub fn classic_docker(&self) -> &Self {
        let cli = self.classic_docker_cli();
        std::os::unix::fs::symlink(cli, self.bin().join("docker")).unwrap();
        self
    }

    /// The program [`TestEnv::classic_docker`] puts first on PATH, under its own name
    /// (`docker-noplugin` in the bin dir), for a recording wrapper to run.
    pub fn classic_docker_cli(&self) -> String {
        let real = ["/usr/local/bin/docker", "/usr/bin/docker"]
            .into_iter()
            .find(|p| Path::new(p).exists())
            .expect("a docker CLI");
        let unshare = if unsafe { libc::geteuid() } == 0 {
            "unshare --mount"
        } else {
            "unshare --map-root-user --mount"
        };
        let dirs = "/usr/local/lib/docker/cli-plugins /usr/local/libexec/docker/cli-plugins \
                    /usr/lib/docker/cli-plugins /usr/libexec/docker/cli-plugins \"$HOME/.docker/cli-plugins\"";
        let script = format!(
            "#!/bin/sh\nexec {unshare} -- /bin/sh -c 'for d in {dirs}; do [ -d \"$d\" ] && mount -t tmpfs none \"$d\"; done; exec {real} \"$@\"' docker \"$@\"\n"
        );
        self.write_exe("docker-noplugin", &script);
        self.bin().join("docker-noplugin").display().to_string()
    }

    /// Adds the machine's PATH after the test's bin dir (real engines, npm).
    pub fn with_system_path(&mut self) -> &mut Self {
        let p = format!(
            "{}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            self.bin().display()
        );
        self.set("PATH", p)
    }

    pub fn set(&mut self, k: &str, v: impl Into<String>) -> &mut Self {
        self.vars.insert(k.into(), v.into());
        self
    }

    /// opencode from files outside the project (`<root>/bins/<asset>`, one per `(asset,
    /// bytes)`), named in the environment: a project's own ocx.json may not point outside it.
    pub fn opencode_files(&mut self, files: &[(&str, &[u8])]) -> &mut Self {
        let bins = self.root().join("bins");
        std::fs::create_dir_all(&bins).unwrap();
        for (asset, bytes) in files {
            std::fs::write(bins.join(asset), bytes).unwrap();
        }
        let source = format!("file:{}/{{asset}}", bins.display());
        self.set("OCX_OPENCODE_SOURCE", source)
    }

    /// Each recorded invocation as its argv.
    pub fn log(&self) -> Vec<Vec<String>> {
        std::fs::read_to_string(self.root().join("fake/log"))
            .unwrap_or_default()
            .lines()
            .map(|l| l.split('\t').map(String::from).collect())
            .collect()
    }

    /// No recorded invocation is a `build`.
    pub fn assert_nothing_built(&self) {
        let log = self.log();
        assert!(!log.iter().any(|l| l.is(&["build"])), "{log:?}");
    }

    /// No recorded invocation built or pushed anything.
    pub fn assert_nothing_built_or_pushed(&self) {
        let log = self.log();
        assert!(
            !log.iter().any(|l| l.is(&["build"]) || l.is(&["push"])),
            "{log:?}"
        );
    }

    pub fn clear_log(&self) {
        let _ = std::fs::remove_file(self.root().join("fake/log"));
    }

    pub fn cmd(&self, bin: &str) -> Command {
        let mut c = Command::cargo_bin(bin).unwrap();
        c.env_clear().envs(&self.vars).current_dir(self.project());
        c
    }

    /// `ocx ARGS`, to be checked and run (see [`Run`]).
    pub fn ocx(&self, args: &[&str]) -> Run {
        let mut c = self.cmd("ocx");
        c.args(args);
        Run::new(c)
    }

    /// `hjk ARGS`, to be checked and run (see [`Run`]).
    pub fn hjk(&self, args: &[&str]) -> Run {
        let mut c = self.cmd("hjk");
        c.args(args);
        Run::new(c)
    }

    /// The fake engine reports exactly these images as present (docker's inspect shape, which
    /// podman's parser reads too), each with `labels` (a JSON object or `null`), and any other
    /// as missing, whichever names one inspect asks for.
    pub fn images_exist(&self, images: &[(&str, &str)]) -> &Self {
        let dir = self.root().join("fake/images");
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        for (tag, labels) in images {
            let key = tag.replace(['/', ':', '@'], "_");
            std::fs::write(dir.join(key), docker_inspect_entry(tag, labels)).unwrap();
        }
        self
    }
}

/// One `container image inspect` entry as apple/container 1.2.2 prints it: its
/// `ImageResource` (`Sources/ContainerResource/Image/ImageResource.swift`), `name` the full
/// reference, one variant per architecture with the OCI image config (labels there). Written
/// compact, with `"name":"..."` as the fake's `image tag` expects.
pub fn apple_inspect_entry(full_name: &str, labels: &str, arches: &[&str]) -> String {
    let d = "3".repeat(64);
    let variants: Vec<String> = arches
        .iter()
        .map(|a| {
            let variant = if *a == "arm64" { r#","variant":"v8""# } else { "" };
            format!(
                r#"{{"config":{{"architecture":"{a}","config":{{"Labels":{labels}}},"os":"linux","rootfs":{{"diff_ids":[],"type":"layers"}}}},"digest":"sha256:{d}","platform":{{"architecture":"{a}","os":"linux"{variant}}},"size":1000}}"#
            )
        })
        .collect();
    format!(
        r#"{{"configuration":{{"creationDate":"2026-06-01T10:00:00Z","descriptor":{{"digest":"sha256:{d}","mediaType":"application/vnd.oci.image.index.v1+json","size":1609}},"name":"{full_name}"}},"id":"{d}","variants":[{}]}}"#,
        variants.join(",")
    )
}

/// One `docker image inspect` entry as the engine prints it.
pub fn docker_inspect_entry(tag: &str, labels: &str) -> String {
    format!(
        r#"{{"Id": "sha256:{}", "RepoTags": ["{tag}"], "RepoDigests": [], "Architecture": "amd64", "Config": {{"Labels": {labels}}}}}"#,
        "1".repeat(64)
    )
}

/// A command under test and what it must do, checked by [`Run::run`]: the builder just's
/// tests use, so each test states its expectations instead of repeating assertion blocks.
#[must_use]
pub struct Run {
    cmd: Command,
    status: i32,
    stderr_has: Vec<String>,
    stdout_has: Vec<String>,
    one_line_error: bool,
}

impl Run {
    fn new(cmd: Command) -> Self {
        Run {
            cmd,
            status: 0,
            stderr_has: Vec::new(),
            stdout_has: Vec::new(),
            one_line_error: false,
        }
    }

    /// The exit code it must end with (default 0).
    pub fn status(mut self, code: i32) -> Self {
        self.status = code;
        self
    }

    pub fn stderr_has(mut self, text: impl Into<String>) -> Self {
        self.stderr_has.push(text.into());
        self
    }

    pub fn stdout_has(mut self, text: impl Into<String>) -> Self {
        self.stdout_has.push(text.into());
        self
    }

    /// Bad input: exit 2 and exactly one `error: ` line on stderr.
    pub fn bad_input(mut self) -> Self {
        self.status = 2;
        self.one_line_error = true;
        self
    }

    /// Runs it without checking anything: for helpers that check the exit code themselves.
    pub fn output(self) -> Out {
        run(self.cmd)
    }

    /// Runs it and checks every expectation; returns the output for more.
    pub fn run(self) -> Out {
        let out = run(self.cmd);
        let show = format!("stdout:\n{}\nstderr:\n{}", out.stdout, out.stderr);
        assert_eq!(out.code, self.status, "exit code; {show}");
        if self.one_line_error {
            assert_eq!(out.stderr.lines().count(), 1, "one line; {show}");
            assert!(out.stderr.starts_with("error: "), "{show}");
        }
        for t in &self.stderr_has {
            assert!(
                out.stderr.contains(t.as_str()),
                "{t:?} not on stderr; {show}"
            );
        }
        for t in &self.stdout_has {
            assert!(
                out.stdout.contains(t.as_str()),
                "{t:?} not on stdout; {show}"
            );
        }
        out
    }
}

/// Output of a finished command as text.
pub struct Out {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

pub fn run(mut c: Command) -> Out {
    let o = c.output().unwrap();
    Out {
        code: o.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
    }
}

/// A minimal HTTP/1.1 file server on 127.0.0.1 for download tests (GitHub API and release
/// assets, URL-template mirrors). Serves `files` by path; anything else is a 404.
pub fn serve(files: BTreeMap<String, Vec<u8>>) -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    serve_listener(listener, files);
    port
}

pub fn serve_listener(listener: std::net::TcpListener, files: BTreeMap<String, Vec<u8>>) {
    use std::io::{BufRead, BufReader, Write};
    std::thread::spawn(move || {
        for stream in listener.incoming().take(200) {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut line = String::new();
            if reader.read_line(&mut line).is_err() {
                continue;
            }
            loop {
                let mut h = String::new();
                if reader.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
                    break;
                }
            }
            let path = line.split_whitespace().nth(1).unwrap_or("/").to_string();
            let (status, body) = match files.get(&path) {
                Some(b) => ("200 OK", b.clone()),
                None => ("404 Not Found", b"not found".to_vec()),
            };
            let _ = write!(
                stream,
                "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = stream.write_all(&body);
        }
    });
}

/// A listener that counts the connections made to it: proof that nothing went to the network.
pub fn counting_server() -> (u16, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let hits = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let h = hits.clone();
    std::thread::spawn(move || {
        for s in listener.incoming() {
            h.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            drop(s);
        }
    });
    (port, hits)
}

/// `ocx build` of several platforms on classic docker: after the warning that buildx is
/// missing, one error line, exit 2; nothing was downloaded (`hits` counts the source's
/// requests) and nothing built.
pub fn refused_before_the_download(env: &TestEnv, hits: &std::sync::atomic::AtomicUsize) {
    env.ocx(&["build"])
        .status(2)
        .stderr_has("\nerror: the classic docker builder cannot build several platforms")
        .run();
    assert_eq!(
        hits.load(std::sync::atomic::Ordering::SeqCst),
        0,
        "downloaded first"
    );
    let builds: Vec<_> = env.log().into_iter().filter(|a| a.is(&["build"])).collect();
    assert!(builds.is_empty(), "{builds:?}");
}

/// A gzipped tarball holding one file.
pub fn tar_gz(name: &str, content: &[u8]) -> Vec<u8> {
    let mut builder = tar::Builder::new(flate2::write::GzEncoder::new(
        Vec::new(),
        flate2::Compression::fast(),
    ));
    let mut header = tar::Header::new_gnu();
    header.set_size(content.len() as u64);
    header.set_mode(0o755);
    header.set_cksum();
    builder.append_data(&mut header, name, content).unwrap();
    builder.into_inner().unwrap().finish().unwrap()
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The rows of hjk's summary table as (variant, platform, result).
pub fn summary_rows(stdout: &str) -> Vec<(String, String, String)> {
    stdout
        .lines()
        .skip(1)
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f[0].to_string(), f[1].to_string(), f[2].to_string())
        })
        .collect()
}

/// The architectures a podman manifest list names, sorted.
pub fn manifest_arches(image: &str) -> Vec<String> {
    let out = succeeds(std::process::Command::new("podman").args(["manifest", "inspect", image]));
    index_arches(&out.stdout)
}

/// The architectures of every manifest an image index (its JSON) lists, sorted.
pub fn index_arches(index: &[u8]) -> Vec<String> {
    let m: serde_json::Value = serde_json::from_slice(index).unwrap();
    let mut arches: Vec<String> = m["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["platform"]["architecture"].as_str().unwrap().to_string())
        .collect();
    arches.sort();
    arches
}

/// The final ocx image for `repo:version` and a container user: ocx appends the first 8 hex
/// of sha256("<uid>:<gid>:<username>") to the tag (`ocx::user_tag`).
pub fn ocx_tag(repo_version: &str, uid: u32, gid: u32, username: Option<&str>) -> String {
    let hex = sha256_hex(format!("{uid}:{gid}:{}", username.unwrap_or("")).as_bytes());
    format!("{repo_version}-{}", &hex[..8])
}

/// `<engine> ARGS`, which must succeed: its stdout, trimmed.
pub fn engine_stdout(engine: &str, args: &[&str]) -> String {
    let out = succeeds(std::process::Command::new(engine).args(args));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Runs `cmd`, which must exit 0 (else the test fails with the command and its stderr).
pub fn succeeds(cmd: &mut std::process::Command) -> std::process::Output {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// ELF's e_machine for x86-64 and for aarch64.
pub const X86_64: u8 = 62;
pub const AARCH64: u8 = 183;

/// What ocx takes for an opencode binary of `machine` (a 64-bit little-endian ELF header):
/// 4096 bytes, `fill` after the header fields it reads, so two fills are two binaries.
pub fn fake_elf(machine: u8, fill: u8) -> Vec<u8> {
    let mut b = vec![fill; 4096];
    b[..4].copy_from_slice(b"\x7fELF");
    b[4] = 2;
    b[5] = 1;
    b[18] = machine;
    b[19] = 0;
    b
}

/// tests/fixtures/`name` copied to `to` in the test's directory (a test edits its copy): the
/// copy's path.
pub fn copy_fixture_dir(env: &TestEnv, name: &str, to: &str) -> String {
    let dst = env.root().join(to);
    copy_dir(&fixtures().join(name), &dst);
    dst.display().to_string()
}

/// Copies the tree at `src` to `dst` (regular files and directories).
pub fn copy_dir(src: &Path, dst: &Path) {
    std::fs::create_dir_all(dst).unwrap();
    for e in std::fs::read_dir(src).unwrap() {
        let e = e.unwrap();
        let to = dst.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &to);
        } else {
            std::fs::copy(e.path(), &to).unwrap();
        }
    }
}

/// Test modules share code only through this one: none exports an item, none reaches into
/// another.
#[test]
fn helpers_live_only_in_util() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/integration");
    // a path through another test module: `crate::faults::x`, `super::release::y`
    let reach = regex::Regex::new(r"\b(?:crate|super)::([a-z_0-9]+)::").unwrap();
    let mut wrong = Vec::new();
    for e in std::fs::read_dir(&dir).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_none_or(|x| x != "rs") || p.ends_with("main.rs") {
            continue;
        }
        let text = std::fs::read_to_string(&p).unwrap();
        for (i, l) in text.lines().enumerate() {
            let t = l.trim_start();
            let shared = t.starts_with("pub ") || t.starts_with("pub(");
            let reaches = reach
                .captures_iter(l)
                .any(|c| &c[1] != "util" && &c[1] != "super");
            if shared || reaches {
                wrong.push(format!("{}:{}: {l}", p.display(), i + 1));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "share it through util/:\n{}",
        wrong.join("\n")
    );
}
