//! ocx against fake docker, podman and Apple `container` CLIs that record their argv. The real
//! engines' paths (build, no-op as one inspect, classic fallback, multi-arch, UID remapping) are
//! in ocx_engines.rs and ocx_bases.rs; what stays here is what a real engine cannot show or
//! cannot be made to do on this machine:
//! - Apple `container`, which runs only on macOS (its replies are taken from apple/container's
//!   source; see apple.rs);
//! - failures injected on purpose: a failed build, Ctrl-C during a build, a buildx builder with
//!   the docker-container driver, a daemon without the containerd image store, a checksum or
//!   architecture mismatch in the download;
//! - the exact argv and the number of engine calls (one `buildx inspect` probe, flag order);
//! - the opencode download from GitHub releases and URL templates, served locally.

use crate::util::argv::Argv;
use crate::util::fake::{Build, Pid, Script};
use crate::util::process::{alive, signal};
use crate::util::{fake_elf, serve, sha256_hex, tar_gz, wait, TestEnv, AARCH64, X86_64};
use std::collections::BTreeMap;
use std::time::Duration;

const BASE: &str = "myproject-dev";
/// The final image of `project`'s config (uid 1000, gid 1000, username dev).
fn final_tag() -> &'static str {
    static TAG: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
        crate::util::ocx_tag("ocx-myproject-dev:1.2.3", 1000, 1000, Some("dev"))
    });
    TAG.as_str()
}
/// The opencode binary images a build asks about (variant unset: both libcs).
const BIN: &str = "ocx-opencode:1.2.3-standard-amd64";
const BIN_MUSL: &str = "ocx-opencode:1.2.3-musl-amd64";

/// The inspect a docker build starts with, and all a no-op runs: base and final image in one
/// call (the final image's label names the binaries it holds).
fn the_one_inspect() -> [&'static str; 5] {
    ["docker", "image", "inspect", BASE, final_tag()]
}

/// The final image's label naming the binary `bin` for amd64, as ocx sets it.
fn binaries_label(bin: &[u8]) -> String {
    format!("standard linux/amd64={}", sha256_hex(bin))
}

/// The documented name (issue 16): `ocx-<base>:<version>`, moved to each build's image.
const SHARED_TAG: &str = "ocx-myproject-dev:1.2.3";

/// A project whose opencode comes from local files outside it, so no network is involved
/// (named in the environment: a project's own ocx.json may not point outside the project).
fn project(engine: &str, extra: &str) -> TestEnv {
    let mut env = TestEnv::new();
    env.fake(engine);
    env.opencode_files(&[
        ("opencode-linux-x64", &fake_elf(X86_64, 0)),
        ("opencode-linux-arm64", &fake_elf(AARCH64, 0)),
    ]);
    env.write(
        "project/ocx.json",
        &format!(
            r#"{{"custom_base_image": "{BASE}", "opencode_version": "1.2.3", "uid": 1000, "gid": 1000, "username": "dev"{extra}}}"#
        ),
    );
    env
}

fn label_of(argv: &[String]) -> String {
    let i = argv
        .iter()
        .position(|a| a.starts_with("io.agent-images.fingerprint="))
        .expect("fingerprint label in build argv");
    argv[i]
        .trim_start_matches("io.agent-images.fingerprint=")
        .to_string()
}

/// The builds of `tag` (docker buildx, docker classic, podman or Apple).
fn builds_of<'a>(log: &'a [Vec<String>], tag: &str) -> Vec<&'a Vec<String>> {
    log.iter()
        .filter(|a| (a.is(&["build"]) || a.is(&["buildx", "build"])) && a.has_flag("--tag", tag))
        .collect()
}

/// `run`s other than ocx's base probe.
fn runs(log: &[Vec<String>]) -> Vec<&Vec<String>> {
    log.iter()
        .filter(|a| a.is(&["run"]) && !a.has("--entrypoint"))
        .collect()
}

fn find<'a>(log: &'a [Vec<String>], words: &[&str]) -> Vec<&'a Vec<String>> {
    log.iter()
        .filter(|a| {
            a.len() > words.len() && a[1..=words.len()].iter().zip(words).all(|(x, w)| x == w)
        })
        .collect()
}

#[test]
fn buildx_single_arch_build_then_noop_is_one_inspect() {
    let env = project("docker", "");
    env.images_exist(&[(BASE, "null")]);
    env.ocx(&["build"]).status(0).run();
    let log = env.log();
    assert_eq!(log[0], the_one_inspect());
    // something must be built: then the binary images are asked about, and the builder,
    // before the first build
    assert_eq!(log[1], ["docker", "image", "inspect", BIN, BIN_MUSL]);
    let first_build = log.iter().position(|a| a.is(&["buildx", "build"])).unwrap();
    // one probe: `buildx inspect` says both that the plugin is there and what it can do
    let probes: Vec<usize> = (0..log.len())
        .filter(|&i| log[i][1] == "buildx" && log[i][2] != "build")
        .collect();
    assert_eq!(probes.len(), 1, "{log:?}");
    assert_eq!(log[probes[0]], ["docker", "buildx", "inspect"]);
    assert!(probes[0] < first_build, "{log:?}");
    // the binary image first (FROM scratch, only the binary), then the final image
    let bin = builds_of(&log, BIN);
    assert_eq!(bin.len(), 1, "{log:?}");
    let build = builds_of(&log, final_tag());
    assert_eq!(build.len(), 1, "{log:?}");
    let b = build[0];
    let ctx = b.last().unwrap();
    let expected: Vec<String> = [
        "docker",
        "buildx",
        "build",
        "--tag",
        final_tag(),
        "--platform",
        "linux/amd64",
        "--file",
        &format!("{ctx}/Dockerfile"),
        "--label",
        &format!("io.agent-images.fingerprint={}", label_of(b)),
        "--label",
        &format!(
            "io.agent-images.opencode.binaries={}",
            binaries_label(&fake_elf(X86_64, 0))
        ),
        "--load",
        "--provenance=false",
        "--progress",
        "plain",
        ctx,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    assert_eq!(b, &expected);
    assert!(
        !std::path::Path::new(ctx).exists()
            && !std::path::Path::new(bin[0].last().unwrap()).exists(),
        "the generated contexts are removed after the build"
    );

    // the engine now reports the images with the labels the builds set: nothing to do
    let fp = label_of(b);
    let final_labels = format!(
        r#"{{"io.agent-images.fingerprint": "{fp}", "io.agent-images.opencode.binaries": "{}"}}"#,
        binaries_label(&fake_elf(X86_64, 0))
    );
    let bin_labels = format!(
        r#"{{"io.agent-images.opencode.sha256": "{}"}}"#,
        sha256_hex(&fake_elf(X86_64, 0))
    );
    env.images_exist(&[
        (BASE, "null"),
        (BIN, &bin_labels),
        (final_tag(), &final_labels),
    ]);
    env.clear_log();
    let out = env.ocx(&["build"]).status(0).run();
    assert_eq!(env.log(), [the_one_inspect()]);
    assert!(
        out.stderr
            .contains(&format!("{} is up to date", final_tag())),
        "{}",
        out.stderr
    );

    env.clear_log();
    env.ocx(&["build", "--force"]).status(0).run();
    let log = env.log();
    assert_eq!(builds_of(&log, final_tag()).len(), 1, "--force rebuilds");
    assert!(builds_of(&log, BIN).is_empty(), "the binary image is kept");
}

/// On the overlay2 image store buildx's `docker` driver can neither build nor keep several
/// platforms: refused before any build. On the containerd store it is one build.
#[test]
fn buildx_multi_arch_needs_the_containerd_image_store() {
    let env = project("docker", r#", "platforms": "linux/amd64,linux/arm64""#);
    env.script(&Script {
        buildx_overlay2: true,
        ..Script::default()
    })
    .images_exist(&[(BASE, "null")]);
    env.ocx(&["build"])
        .status(2)
        .stderr_has("error: the current buildx builder uses the `docker` driver on the overlay2 image store, which cannot build several platforms (linux/amd64,linux/arm64); enable the containerd image store")
        .run();
    assert!(find(&env.log(), &["buildx", "build"]).is_empty());

    let env = project("docker", r#", "platforms": "linux/amd64,linux/arm64""#);
    env.images_exist(&[(BASE, "null")]);
    env.ocx(&["build"]).status(0).run();
    let log = env.log();
    let build = builds_of(&log, final_tag());
    assert_eq!(build.len(), 1, "{log:?}");
    let b = build[0];
    assert!(
        b.has_flag("--platform", "linux/amd64,linux/arm64") && b.has("--load"),
        "{b:?}"
    );
}

#[test]
fn docker_without_buildx_falls_back_to_classic_with_a_warning() {
    let env = project("docker", "");
    env.script(&Script {
        no_buildx: true,
        ..Script::default()
    })
    .images_exist(&[(BASE, "null")]);
    env.ocx(&["build", "--progress", "plain"])
        .stderr_has("warning: docker buildx is not available")
        .stderr_has(format!(
            "+ DOCKER_BUILDKIT=0 docker build --tag {}",
            final_tag()
        ))
        .run();
    let log = env.log();
    let b = builds_of(&log, final_tag())[0];
    assert!(b.has_flag("--build-arg", "TARGETARCH=amd64"), "{b:?}");
    assert!(!b.has("--load"));
}

#[test]
fn failed_build_shows_command_and_last_lines() {
    let env = project("podman", "");
    env.script(&Script {
        build_fails_when: Some(final_tag().into()),
        ..Script::default()
    })
    .images_exist(&[(BASE, "null")]);
    let out = env.ocx(&["build"]).status(1).run();
    assert!(
        out.stderr.contains(&format!(
            "caused by: command failed with exit code 1: podman build --format docker --tag {}",
            final_tag()
        )),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("--- last 1 lines of output ---"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr
            .contains("Error: building at STEP \"RUN ...\": exit status 1"),
        "{}",
        out.stderr
    );
}

/// Apple `container` (the fake built from apple/container 1.2.2's source): platforms by
/// `--platform`, names written out for the image commands, and a no-op of one inspect. The
/// variant is pinned: since 1.0 an inspect naming one missing image (the other libc's binary)
/// fails whole, and each image is then asked on its own.
#[test]
fn apple_builds_by_platform_then_noop_is_one_inspect() {
    let env = project(
        "container",
        r#", "platforms": ["linux/amd64", "linux/arm64"], "opencode_variant": "standard""#,
    );
    env.apple_image(BASE, "{}", &["amd64", "arm64"]);
    env.ocx(&["build"]).status(0).run();
    let log = env.log();
    // short names written out: a non-default registry.domain cannot send them elsewhere
    let base_inspect = ["image", "inspect", "docker.io/library/myproject-dev"];
    assert!(log[0].is(&base_inspect), "{log:?}");
    assert_eq!(log[0].len(), 4 + 1, "the base, then the final image");
    // the missing final image fails that inspect whole: one at a time
    assert!(log[1].is(&base_inspect), "{log:?}");
    // one binary image per arch, each built for its own platform
    let arm = builds_of(&log, "ocx-opencode:1.2.3-standard-arm64");
    assert!(arm[0].has_flag("--platform", "linux/arm64"), "{arm:?}");
    let b = builds_of(&log, final_tag())[0];
    let ctx = b.last().unwrap().clone();
    assert_eq!(
        b[..7],
        [
            "container",
            "build",
            "--tag",
            final_tag(),
            "--platform",
            "linux/amd64,linux/arm64",
            "--file"
        ]
        .map(String::from)
    );
    assert_eq!(
        b[b.len() - 3..],
        ["--progress".to_string(), "plain".into(), ctx]
    );
    assert!(!b.iter().any(|a| a == "--arch" || a == "--os"), "{b:?}");

    // the fake's store has what the builds tagged, with their `--label`s (the final image's
    // fingerprint); a binary image's label is in its generated Dockerfile, which the fake
    // does not read
    for (arch, elf) in [
        ("amd64", fake_elf(X86_64, 0)),
        ("arm64", fake_elf(AARCH64, 0)),
    ] {
        env.apple_image(
            &format!("ocx-opencode:1.2.3-standard-{arch}"),
            &format!(
                r#"{{"io.agent-images.opencode.sha256": "{}"}}"#,
                sha256_hex(&elf)
            ),
            &[arch],
        );
    }
    env.clear_log();
    let out = env.ocx(&["build"]).status(0).run();
    assert_eq!(env.log().len(), 1, "{:?}", env.log());
    assert!(out.stderr.contains("is up to date"), "{}", out.stderr);
}

/// `CONTAINER_DEFAULT_PLATFORM` overrides `--arch` in a real `container build`; with
/// `--platform` the build holds the platforms asked for (what the fake resolved is in its
/// `platforms` file).
#[test]
fn issue14_container_default_platform_does_not_change_what_is_built() {
    let mut env = project("container", r#", "platforms": ["linux/arm64"]"#);
    env.set("CONTAINER_DEFAULT_PLATFORM", "linux/amd64");
    env.apple_image(BASE, "{}", &["arm64"]);
    env.ocx(&["build"]).status(0).run();
    let resolved = std::fs::read_to_string(env.root().join("fake/platforms")).unwrap();
    let builds: Vec<&str> = resolved
        .lines()
        .filter(|l| l.starts_with("build "))
        .collect();
    assert!(!builds.is_empty(), "{resolved}");
    for b in &builds {
        assert!(b.ends_with(" : linux/arm64"), "{resolved}");
    }
}

#[test]
fn apple_run_passes_exit_code_and_env_by_name() {
    let mut env = project("container", "");
    env.set("ANTHROPIC_API_KEY", "sk-secret-value");
    env.script(&Script {
        run_exit: Some(3),
        ..Script::default()
    });
    env.apple_image(BASE, "{}", &["amd64"]);
    let out = env.ocx(&["opencode", "--version"]).status(3).run();
    let log = env.log();
    let r = runs(&log)[0];
    let project = env.project().canonicalize().unwrap().display().to_string();
    let home = env.root().join("home").display().to_string();
    let expected: Vec<String> = [
        "container",
        "run",
        "--rm",
        "--name",
        &r[4],
        "-i",
        "--mount",
        &format!("type=bind,source={project},target={project}"),
        "--mount",
        &format!("type=bind,source={home}/.config/opencode,target=/home/dev/.config/opencode"),
        "--mount",
        &format!(
            "type=bind,source={home}/.local/share/opencode,target=/home/dev/.local/share/opencode"
        ),
        "--workdir",
        &project,
        "--env",
        "ANTHROPIC_API_KEY",
        // a named user runs by uid, so it keeps its supplementary groups
        "--user",
        "1000",
        &format!("docker.io/library/{}", final_tag()),
        "/usr/local/bin/opencode",
        "--version",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    assert_eq!(r, &expected);
    let all = std::fs::read_to_string(env.root().join("fake/log")).unwrap();
    assert!(!all.contains("sk-secret-value") && !out.stderr.contains("sk-secret-value"));
}

#[test]
fn dry_run_prints_every_command_and_runs_none() {
    let re = regex::Regex::new("(fingerprint|base-inputs)=[0-9a-f]{64}").unwrap();
    let pid = regex::Regex::new("--name ocx-[0-9]+").unwrap();
    for engine in ["docker", "podman", "container"] {
        let mut env = project(engine, r#", "custom_base_dockerfile": "Dockerfile.dev""#);
        env.write("project/Dockerfile.dev", "FROM scratch\n");
        env.set("OPENAI_API_KEY", "sk-never-printed");
        let out = env
            .ocx(&[
                "opencode",
                "--dry-run",
                "--",
                "run",
                "fix the bug; don't stop",
            ])
            .output();
        assert_eq!(out.code, 0, "{}", out.stderr);
        // only read-only queries run: the inspect, and docker's builder probe
        let spawned = env.log();
        assert!(
            !spawned.is_empty()
                && spawned
                    .iter()
                    .all(|a| a.is(&["image", "inspect"]) || a.is(&["buildx", "inspect"])),
            "dry-run spawned {spawned:?}"
        );
        assert!(!out.stdout.contains("sk-never-printed"));
        let root = env.root().canonicalize().unwrap().display().to_string();
        let stdout = re
            .replace_all(&out.stdout.replace(&root, "[ROOT]"), "$1=[FP]")
            .into_owned();
        let stdout = pid.replace_all(&stdout, "--name ocx-[PID]").into_owned();
        insta::assert_snapshot!(format!("dry_run_{engine}"), stdout);
    }
}

/// A GitHub API + release download server serving one release with both assets.
fn github_server(version: &str, x64: &[u8], digest_override: Option<&str>) -> u16 {
    let mut files = BTreeMap::new();
    let asset = tar_gz("opencode", x64);
    let digest = digest_override
        .map(String::from)
        .unwrap_or_else(|| sha256_hex(&asset));
    files.insert("/dl/opencode-linux-x64.tar.gz".to_string(), asset);
    // the port is only known after binding, so URLs are relative to a placeholder fixed below
    let port = serve_later(files, move |port| {
        let rel = format!(
            r#"{{"tag_name": "v{version}", "assets": [{{"name": "opencode-linux-x64.tar.gz", "digest": "sha256:{digest}", "browser_download_url": "http://127.0.0.1:{port}/dl/opencode-linux-x64.tar.gz"}}]}}"#
        );
        vec![
            (
                format!("/repos/sst/opencode/releases/tags/v{version}"),
                rel.clone(),
            ),
            ("/repos/sst/opencode/releases/latest".to_string(), rel),
        ]
    });
    port
}

/// Binds first, then adds documents that need to know the port.
fn serve_later(
    mut files: BTreeMap<String, Vec<u8>>,
    docs: impl FnOnce(u16) -> Vec<(String, String)>,
) -> u16 {
    // the listener is kept from bind to serve: a port released in between can be taken by
    // another test's server
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    for (p, d) in docs(port) {
        files.insert(p, d.into_bytes());
    }
    crate::util::serve_listener(listener, files);
    port
}

fn github_project(port: u16, version: &str) -> TestEnv {
    let mut env = TestEnv::new();
    env.fake("podman");
    env.images_exist(&[(BASE, "null")]);
    env.set("OCX_GITHUB_API_URL", format!("http://127.0.0.1:{port}"));
    env.write("project/ocx.json", &format!(r#"{{"custom_base_image": "{BASE}", "opencode_version": "{version}", "uid": 1000, "gid": 1000}}"#));
    env
}

#[test]
fn github_source_downloads_verifies_caches_and_resolves_latest() {
    let port = github_server("2.0.1", &fake_elf(X86_64, 0), None);
    let env = github_project(port, "latest");
    env.ocx(&["build"]).status(0).run();
    let cached = env
        .root()
        .join("cache/ocx/opencode/2.0.1/opencode-linux-x64");
    assert_eq!(
        std::fs::read(cached.join("opencode")).unwrap(),
        fake_elf(X86_64, 0)
    );
    assert!(std::fs::read_to_string(cached.join("checksum"))
        .unwrap()
        .starts_with("sha256:"));
    assert_eq!(
        builds_of(
            &env.log(),
            &crate::util::ocx_tag("ocx-myproject-dev:2.0.1", 1000, 1000, None)
        )
        .len(),
        1,
        "latest resolved before tagging: {:?}",
        env.log()
    );
}

#[test]
fn checksum_mismatch_caches_nothing_and_builds_nothing() {
    let port = github_server("2.0.2", &fake_elf(X86_64, 0), Some(&"0".repeat(64)));
    let env = github_project(port, "2.0.2");
    // the source is at fault, not the input: exit 1
    env.ocx(&["build"])
        .status(1)
        .stderr_has("error: getting opencode 2.0.2 for linux/amd64")
        .stderr_has("caused by: checksum mismatch for opencode-linux-x64.tar.gz: the source publishes sha256:0000")
        .run();
    let cache = env.root().join("cache/ocx/opencode/2.0.2");
    let left: Vec<_> = std::fs::read_dir(&cache)
        .map(|d| d.filter_map(|e| e.ok()).map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "cache holds {left:?}");
    assert!(find(&env.log(), &["build"]).is_empty());
}

#[test]
fn url_template_source_checks_published_sha256() {
    let bin = fake_elf(X86_64, 0);
    let mut files = BTreeMap::new();
    files.insert("/mirror/3.0.0/opencode-linux-x64".to_string(), bin.clone());
    files.insert(
        "/mirror/3.0.0/opencode-linux-x64.sha256".to_string(),
        format!("{}  opencode-linux-x64\n", sha256_hex(&bin)).into_bytes(),
    );
    let port = serve(files);
    let env = TestEnv::new();
    env.fake("podman").images_exist(&[(BASE, "null")]);
    env.write(
        "project/ocx.json",
        &format!(r#"{{"custom_base_image": "{BASE}", "opencode_version": "3.0.0", "opencode_source": "http://127.0.0.1:{port}/mirror/{{version}}/{{asset}}", "uid": 1000, "gid": 1000}}"#),
    );
    env.ocx(&["build"]).status(0).run();
    let log = env.log();
    assert_eq!(
        builds_of(&log, "ocx-opencode:3.0.0-standard-amd64").len(),
        1
    );
    assert_eq!(
        builds_of(
            &log,
            &crate::util::ocx_tag("ocx-myproject-dev:3.0.0", 1000, 1000, None)
        )
        .len(),
        1
    );
}

#[test]
fn ctrl_c_kills_the_engine_and_removes_the_context() {
    let env = project("podman", "");
    env.script(&Script {
        build: Build::Hangs,
        ..Script::default()
    })
    .images_exist(&[(BASE, "null")]);
    let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin("ocx"))
        .arg("build")
        .env_clear()
        .envs(&env.vars)
        .current_dir(env.project())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let engine_pid = env.fake_pid(Pid::Build);
    signal(child.id(), libc::SIGINT);
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130));
    assert!(
        wait::holds(Duration::from_secs(5), || !alive(engine_pid)),
        "the engine process {engine_pid} survived Ctrl-C"
    );
    let log = env.log();
    let ctx = find(&log, &["build"])[0].last().unwrap().clone();
    assert!(
        !std::path::Path::new(&ctx).exists(),
        "{ctx} was left behind"
    );
}

#[test]
fn progress_json_is_one_event_per_line() {
    let env = project("podman", "");
    env.images_exist(&[(BASE, "null")]);
    let out = env.ocx(&["build", "--progress", "json"]).status(0).run();
    let events: Vec<serde_json::Value> = out
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let kinds: Vec<&str> = events
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    assert!(
        kinds.contains(&"start")
            && kinds.contains(&"step")
            && kinds.contains(&"line")
            && kinds.contains(&"finish"),
        "{kinds:?}"
    );
    // stdout and stderr are read concurrently, so steps from the two streams may interleave
    let mut steps: Vec<u64> = events
        .iter()
        .filter(|e| e["event"] == "step")
        .map(|e| e["current"].as_u64().unwrap() * 10 + e["total"].as_u64().unwrap())
        .collect();
    steps.sort();
    // the fake prints every engine's step format; podman's parser reads buildah's (once for
    // the binary image, once for the final image)
    assert_eq!(steps, [33, 33]);
    assert_eq!(
        events.last().unwrap()["text"],
        format!("built {} (also tagged {SHARED_TAG})", final_tag())
    );
}

#[test]
fn no_custom_base_uses_the_builtin_default_and_tags_ocx_version() {
    let env = TestEnv::new();
    env.fake("podman");
    env.write(
        "project/ocx.json",
        r#"{"opencode_version": "1.2.3", "uid": 1000, "gid": 1000}"#,
    );
    let default_tag = crate::util::ocx_tag("ocx:1.2.3", 1000, 1000, None);
    let out = env
        .ocx(&["build", "--dry-run"])
        .stdout_has(format!("--tag {} ", default_tag))
        .run();
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert!(
        lines[0].starts_with("podman image inspect ocx-default-base:")
            && lines[0].ends_with(&format!(" {default_tag}")),
        "{}",
        out.stdout
    );
    // the build also points the shared tag at the image
    assert!(
        lines.contains(&format!("podman tag {default_tag} ocx:1.2.3").as_str()),
        "{}",
        out.stdout
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("podman build --format docker --tag ocx-default-base:")),
        "{}",
        out.stdout
    );
}

#[test]
fn a_terminal_gets_a_progress_bar_instead_of_log_lines() {
    let mut env = project("podman", "");
    env.images_exist(&[(BASE, "null")]);
    env.vars.remove("CI");
    env.set("TERM", "xterm");
    // `script` gives ocx a pseudo-terminal, as a user's shell would
    let ocx = assert_cmd::cargo::cargo_bin("ocx");
    let mut c = std::process::Command::new("/usr/bin/script");
    c.args(["-qec", &format!("{} build", ocx.display()), "/dev/null"])
        .env_clear()
        .envs(&env.vars)
        .current_dir(env.project());
    let out = c.output().unwrap();
    let screen = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{screen}");
    assert!(
        screen.contains(&format!("built {}", final_tag())),
        "{screen}"
    );
    assert!(
        !screen.contains("+ podman build"),
        "plain log lines on a terminal: {screen}"
    );
    assert!(
        screen.contains("\u{1b}["),
        "no terminal control sequences, so no bar: {screen}"
    );
    // the bar counts the engine's steps (the fake prints three)
    assert!(
        screen.contains("/3 ") && (screen.contains('█') || screen.contains('░')),
        "{screen:?}"
    );
}

#[test]
fn buildx_container_driver_cannot_build_from_the_local_base() {
    let env = project("docker", "");
    env.script(&Script {
        buildx_driver: Some("docker-container".into()),
        ..Script::default()
    })
    .images_exist(&[(BASE, "null")]);
    let out = env.ocx(&["build"]).status(2).run();
    assert!(
        out.stderr.contains(
            "`docker-container` driver, which cannot see images in the local docker store"
        ),
        "{}",
        out.stderr
    );
    assert!(find(&env.log(), &["buildx", "build"]).is_empty());
}

#[test]
fn docker_run_is_recorded_with_the_project_mounted() {
    let env = project("docker", "");
    env.images_exist(&[(BASE, "null")]).script(&Script {
        run_exit: Some(5),
        ..Script::default()
    });
    env.ocx(&["opencode", "run", "hello"]).status(5).run();
    let log = env.log();
    let r = runs(&log)[0];
    let project = env.project().canonicalize().unwrap().display().to_string();
    assert_eq!(r[..3], ["docker", "run", "--rm"].map(String::from));
    assert!(
        r.windows(2).any(|w| w
            == [
                "--mount".to_string(),
                format!("type=bind,source={project},target={project}")
            ]),
        "{r:?}"
    );
    assert_eq!(
        r[r.len() - 4..],
        [final_tag(), "/usr/local/bin/opencode", "run", "hello"].map(String::from)
    );
}

/// With `opencode_variant` set, the binary is fetched before the base is built; unset, the
/// base's libc picks the variant, so the base comes first.
#[test]
fn a_checksum_mismatch_stops_before_the_base_is_built() {
    let port = github_server("2.0.3", &fake_elf(X86_64, 0), Some(&"0".repeat(64)));
    let env = github_project(port, "2.0.3");
    env.script(&Script {
        inspect: Some("[]".into()),
        ..Script::default()
    });
    env.write(
        "project/ocx.json",
        &format!(r#"{{"custom_base_image": "{BASE}", "custom_base_dockerfile": "Dockerfile.dev", "opencode_version": "2.0.3", "opencode_variant": "standard", "uid": 1000, "gid": 1000}}"#),
    );
    env.write("project/Dockerfile.dev", "FROM scratch\n");
    env.ocx(&["build"])
        .status(1)
        .stderr_has("checksum mismatch")
        .run();
    assert!(find(&env.log(), &["build"]).is_empty(), "{:?}", env.log());
}

#[test]
fn rebuild_base_needs_a_dockerfile() {
    let env = project("podman", "");
    env.images_exist(&[(BASE, "null")]);
    let out = env.ocx(&["build", "--rebuild-base"]).status(2).run();
    assert_eq!(out.stderr.trim(), "error: --rebuild-base needs custom_base_dockerfile; without one ocx cannot rebuild the base");
}

/// Two users, or two configs, on one daemon get their own final image: its tag ends in 8 hex
/// of uid, gid and username, so neither overwrites (and rebuilds) the other's.
#[test]
fn the_final_tag_depends_on_the_container_user() {
    let env = project("podman", "");
    env.images_exist(&[(BASE, "null")]);
    let tag = |flags: &[&str]| {
        let mut args = vec!["--dry-run", "build"];
        args.extend_from_slice(flags);
        let out = env.ocx(&args).status(0).run();
        let inspect = out.stdout.lines().next().unwrap().to_string();
        // the base, then the final image
        inspect.rsplit(' ').next().unwrap().to_string()
    };
    let mine = tag(&[]);
    assert_eq!(mine, final_tag());
    let others = [
        tag(&["--uid", "1001"]),
        tag(&["--gid", "1001"]),
        tag(&["--username", "other"]),
    ];
    for (i, t) in others.iter().enumerate() {
        assert!(t.starts_with("ocx-myproject-dev:1.2.3-"), "{t}");
        assert_ne!(t, &mine);
        assert!(!others[..i].contains(t), "{others:?}");
    }
}

/// Exit codes name who can fix it: a download for the wrong architecture is the source's fault,
/// not the input's (1); a project path that is not UTF-8 is the user's to rename (2).
#[test]
fn a_wrong_architecture_download_exits_1_and_a_non_utf8_project_exits_2() {
    let mut env = project("podman", r#", "platforms": "linux/amd64""#);
    env.images_exist(&[(BASE, "null")]);
    // the x64 asset is an aarch64 ELF
    env.opencode_files(&[("opencode-linux-x64", &fake_elf(AARCH64, 0))]);
    env.ocx(&["build"])
        .status(1)
        .stderr_has("is an ELF binary for another architecture (e_machine 183)")
        .run();
    env.assert_nothing_built();

    use std::os::unix::ffi::OsStrExt;
    let odd = env.root().join(std::ffi::OsStr::from_bytes(b"proj\xffect"));
    std::fs::create_dir_all(&odd).unwrap();
    let mut c = env.cmd("ocx");
    c.args(["config", "show"]).current_dir(&odd);
    let out = crate::util::run(c);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.stderr
            .contains("is not valid UTF-8; rename it or pass --project"),
        "{}",
        out.stderr
    );
}

/// `ocx opencode --help` is ocx's help and says how to reach opencode's; `-- --help` reaches it.
#[test]
fn opencode_help_documents_the_double_dash() {
    let env = project("podman", r#", "platforms": "linux/amd64""#);
    env.images_exist(&[(BASE, "null")]);
    env.ocx(&["opencode", "--help"])
        .status(0)
        .stdout_has(
            "Put `--` before opencode's own flags: `ocx opencode -- --help` shows opencode's help",
        )
        .run();
    let out = env
        .ocx(&["--dry-run", "opencode", "--", "--help"])
        .status(0)
        .run();
    // the last run is the session (the first is the probe of the base)
    let run = out
        .stdout
        .lines()
        .rfind(|l| l.starts_with("podman run "))
        .unwrap_or_else(|| panic!("{}", out.stdout));
    assert!(run.ends_with(" /usr/local/bin/opencode --help"), "{run}");
}
