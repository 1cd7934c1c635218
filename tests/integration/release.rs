//! `hjk images release` / `merge` against a real password-protected registry on 127.0.0.1:5001
//! (scripts/test-engines.sh starts it: bcrypt htpasswd, access log), with the small fixture in
//! tests/fixtures/release (FROM local/debian:bookworm-<arch>, one small layer per variant, so
//! arm64 under qemu costs seconds). Every registry read in these tests goes through skopeo with
//! an auth file, so no password is ever an argument, ours or the test's.

use crate::util::{engine_available, fixtures, sha256_hex, summary_rows, TestEnv};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

const REGISTRY: &str = "127.0.0.1:5001";
const USER: &str = "hjk-release";

fn state_dir() -> PathBuf {
    PathBuf::from(
        std::env::var("AGENT_IMAGES_ENGINE_STATE")
            .unwrap_or_else(|_| "/var/tmp/agent-images-engines".into()),
    )
}

/// The password registry's password, or `None` (a skip) when it is not running; a failure when
/// CI requires the engines.
fn password() -> Option<String> {
    let pw = std::fs::read_to_string(state_dir().join("auth-registry/password")).ok();
    let up = Command::new("curl")
        .args(["-s", "-o", "/dev/null", "-w", "%{http_code}"])
        .arg(format!("http://{REGISTRY}/v2/"))
        .output()
        .map(|o| o.stdout == b"401")
        .unwrap_or(false);
    let required = !std::env::var("AGENT_IMAGES_REQUIRE_ENGINES")
        .unwrap_or_default()
        .is_empty();
    match (pw, up) {
        (Some(p), true) => Some(p.trim().to_string()),
        _ if required => panic!(
            "the password registry on {REGISTRY} is not running; run scripts/test-engines.sh up"
        ),
        _ => {
            eprintln!("skipping: no password registry on {REGISTRY}");
            None
        }
    }
}

/// A repository no other test or run uses.
fn fresh_repo(name: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{REGISTRY}/hjk-test/{name}-{}-{nanos}", std::process::id())
}

fn copy_fixture(env: &TestEnv) -> String {
    let dst = env.root().join("images");
    for v in ["base", "middle", "top"] {
        std::fs::create_dir_all(dst.join(v)).unwrap();
        std::fs::copy(
            fixtures().join(format!("release/{v}/Dockerfile")),
            dst.join(format!("{v}/Dockerfile")),
        )
        .unwrap();
    }
    std::fs::copy(
        fixtures().join("release/variants.yaml"),
        dst.join("variants.yaml"),
    )
    .unwrap();
    dst.display().to_string()
}

/// A skopeo auth file (0600) in the test's own directory.
fn authfile(env: &TestEnv, pw: &str) -> PathBuf {
    use base64::Engine as _;
    let p = env.root().join("skopeo-auth.json");
    let token = base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{pw}"));
    std::fs::write(
        &p,
        format!(r#"{{"auths":{{"{REGISTRY}":{{"auth":"{token}"}}}}}}"#),
    )
    .unwrap();
    p
}

/// `skopeo inspect --raw [--config]`: the registry's own bytes.
fn raw(auth: &Path, reference: &str, config: bool) -> Option<Vec<u8>> {
    let mut c = Command::new("skopeo");
    c.args(["inspect", "--raw", "--tls-verify=false", "--authfile"])
        .arg(auth);
    if config {
        c.arg("--config");
    }
    let out = c.arg(format!("docker://{reference}")).output().unwrap();
    out.status.success().then_some(out.stdout)
}

fn json(bytes: &[u8]) -> serde_json::Value {
    serde_json::from_slice(bytes).unwrap()
}

fn read_meta(path: &Path) -> serde_json::Value {
    json(&std::fs::read(path).unwrap())
}

/// Everything a release promises, read back independently with skopeo: each tag is the
/// index, whose digest is the sha256 of the registry's bytes; the index lists exactly
/// `arches`; each platform's digest is the sha256 of its raw manifest; base labels name the
/// parent's digest for that platform; the layers chain.
fn assert_published(
    auth: &Path,
    repo: &str,
    meta: &serde_json::Value,
    version: &str,
    arches: &[&str],
) {
    let mut diff_ids: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
    let mut digests: BTreeMap<(String, String), String> = BTreeMap::new();
    for v in meta["variants"].as_array().unwrap() {
        let name = v["name"].as_str().unwrap();
        let index_digest = v["index_digest"].as_str().unwrap();
        for tag in [name.to_string(), format!("{name}-{version}")] {
            let bytes = raw(auth, &format!("{repo}:{tag}"), false).expect(&tag);
            assert_eq!(
                format!("sha256:{}", sha256_hex(&bytes)),
                index_digest,
                "{tag}"
            );
            let index = json(&bytes);
            let mut listed: Vec<&str> = index["manifests"]
                .as_array()
                .unwrap()
                .iter()
                .map(|m| m["platform"]["architecture"].as_str().unwrap())
                .collect();
            listed.sort();
            assert_eq!(listed, arches, "{tag}");
        }
        for (platform, rec) in v["platforms"].as_object().unwrap() {
            let arch = platform.split('/').nth(1).unwrap().to_string();
            let digest = rec["digest"].as_str().unwrap();
            let bytes = raw(auth, &format!("{repo}@{digest}"), false).unwrap();
            assert_eq!(format!("sha256:{}", sha256_hex(&bytes)), digest);
            let cfg = json(&raw(auth, &format!("{repo}@{digest}"), true).unwrap());
            assert_eq!(cfg["architecture"], arch.as_str(), "{name} {platform}");
            let ids: Vec<String> = cfg["rootfs"]["diff_ids"]
                .as_array()
                .unwrap()
                .iter()
                .map(|d| d.as_str().unwrap().to_string())
                .collect();
            if let Some(parent) = v["parent"].as_str() {
                let pd = &digests[&(parent.to_string(), arch.clone())];
                let labels = &cfg["config"]["Labels"];
                assert_eq!(labels["org.opencontainers.image.base.digest"], pd.as_str());
                assert_eq!(
                    labels["org.opencontainers.image.base.name"],
                    format!("{repo}@{pd}").as_str()
                );
                let pl = &diff_ids[&(parent.to_string(), arch.clone())];
                assert!(
                    ids.len() > pl.len() && ids[..pl.len()] == pl[..],
                    "{name} {platform} does not build on {parent}"
                );
            }
            diff_ids.insert((name.to_string(), arch.clone()), ids);
            digests.insert((name.to_string(), arch), digest.to_string());
        }
    }
}

/// Lines of the password registry's access log naming `repo` that upload something.
fn uploads(repo: &str) -> usize {
    let path = repo.split_once('/').unwrap().1;
    std::fs::read_to_string(state_dir().join("auth-registry.log"))
        .unwrap_or_default()
        .lines()
        .filter(|l| {
            l.contains(path)
                && (l.contains("\"PUT ") || l.contains("\"POST ") || l.contains("\"PATCH "))
        })
        .count()
}

/// What every registry test starts from: the password, a hermetic env with the machine's PATH
/// and the credentials in `HJK_REGISTRY_CREDS`, the fixture, a skopeo auth file and a fresh
/// repository. `None` (a skip) without the registry or the engine.
struct Setup {
    pw: String,
    env: TestEnv,
    images: String,
    auth: PathBuf,
    repo: String,
}

fn setup(engine: Option<&str>, name: &str) -> Option<Setup> {
    let pw = password()?;
    if engine.is_some_and(|e| !engine_available(e)) {
        return None;
    }
    let mut env = TestEnv::new();
    env.with_system_path();
    env.set("HJK_REGISTRY_CREDS", format!("{USER}:{pw}"));
    let images = copy_fixture(&env);
    let auth = authfile(&env, &pw);
    Some(Setup {
        pw,
        env,
        images,
        auth,
        repo: fresh_repo(name),
    })
}

fn release_args<'a>(
    images: &'a str,
    repo: &'a str,
    platform: &'a str,
    meta: &'a str,
) -> Vec<&'a str> {
    vec![
        "images",
        "release",
        "--all",
        "--images-dir",
        images,
        "--registry",
        repo,
        "--platform",
        platform,
        "--version",
        "v0.1.0",
        "--metadata-file",
        meta,
        "--progress",
        "plain",
    ]
}

/// Runs hjk with `stdin`, sampling every /proc/*/cmdline until it exits; returns the output and
/// how many command lines were seen, and fails if `secret` was in any of them.
fn run_sampling(
    env: &TestEnv,
    args: &[&str],
    stdin: &str,
    secret: &str,
) -> (crate::util::Out, usize) {
    let mut cmd = Command::new(assert_cmd::cargo::cargo_bin("hjk"));
    cmd.env_clear()
        .envs(&env.vars)
        .current_dir(env.project())
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let out_pipe = child.stdout.take().unwrap();
    let err_pipe = child.stderr.take().unwrap();
    let out_t = std::thread::spawn(move || std::io::read_to_string(out_pipe).unwrap_or_default());
    let err_t = std::thread::spawn(move || std::io::read_to_string(err_pipe).unwrap_or_default());
    let mut seen = 0;
    let status = loop {
        for e in std::fs::read_dir("/proc").unwrap().flatten() {
            if let Ok(c) = std::fs::read(e.path().join("cmdline")) {
                if c.is_empty() {
                    continue;
                }
                seen += 1;
                let text = String::from_utf8_lossy(&c);
                assert!(
                    !text.contains(secret),
                    "the password is in a command line: {text:?}"
                );
            }
        }
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    let out = crate::util::Out {
        code: status.code().unwrap_or(-1),
        stdout: out_t.join().unwrap(),
        stderr: err_t.join().unwrap(),
    };
    (out, seen)
}

#[test]
fn podman_release_publishes_by_digest_and_a_second_run_builds_and_uploads_nothing() {
    let Some(Setup {
        pw,
        mut env,
        images,
        auth,
        repo,
    }) = setup(Some("podman"), "podman")
    else {
        return;
    };
    // the password comes on stdin only
    env.vars.remove("HJK_REGISTRY_CREDS");
    env.recording("podman", "/usr/bin/podman");
    let tmp = env.root().join("tmp");
    std::fs::create_dir_all(&tmp).unwrap();
    env.set("TMPDIR", tmp.display().to_string());
    let meta = env.root().join("release.json");
    let meta_s = meta.display().to_string();
    let mut args = release_args(&images, &repo, "linux/amd64,linux/arm64", &meta_s);
    args.extend(["--backend", "podman", "--auth", "raw", "--creds-stdin"]);

    // a wrong password: one line, exit 2, nothing built or pushed
    let (out, _) = run_sampling(&env, &args, &format!("{USER}:not-{pw}\n"), &pw);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert_eq!(out.stderr.lines().count(), 1, "{}", out.stderr);
    assert!(
        out.stderr
            .contains("refused the credentials of hjk-release"),
        "{}",
        out.stderr
    );
    assert_eq!(uploads(&repo), 0);
    assert!(
        !env.log().iter().any(|l| l[1] == "build" || l[1] == "push"),
        "{:?}",
        env.log()
    );

    let (out, seen) = run_sampling(&env, &args, &format!("{USER}:{pw}\n"), &pw);
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    assert!(seen > 50, "sampled only {seen} command lines");
    let m = read_meta(&meta);
    assert_eq!(m["partial"], false);
    assert_published(&auth, &repo, &m, "v0.1.0", &["amd64", "arm64"]);
    // the temporary auth store is gone
    let left: Vec<_> = std::fs::read_dir(&tmp)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    assert!(left.is_empty(), "{left:?}");

    // a second release: no build, no push, no blob upload; only the base inspect
    let before = uploads(&repo);
    env.clear_log();
    let (out, _) = run_sampling(&env, &args, &format!("{USER}:{pw}\n"), &pw);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let rows = summary_rows(&out.stdout);
    assert_eq!(
        rows.iter().filter(|r| r.2 == "reused").count(),
        6,
        "{}",
        out.stdout
    );
    let log = env.log();
    assert!(
        log.iter().all(|l| l[1] == "image" && l[2] == "inspect"),
        "{log:?}"
    );
    assert_eq!(uploads(&repo), before, "the no-op uploaded something");
    let again = read_meta(&meta);
    for i in 0..3 {
        assert_eq!(
            again["variants"][i]["index_digest"],
            m["variants"][i]["index_digest"]
        );
        assert_eq!(
            again["variants"][i]["platforms"]["linux/arm64"]["result"],
            "reused"
        );
    }
}

#[test]
fn per_arch_runs_then_merge_give_the_indexes_of_one_run() {
    let Some(Setup {
        mut env,
        images,
        auth,
        repo,
        ..
    }) = setup(Some("podman"), "merge")
    else {
        return;
    };
    env.set("HJK_AUTH", "raw");
    let files: Vec<String> = ["amd64", "arm64"]
        .iter()
        .map(|a| env.root().join(format!("{a}.json")).display().to_string())
        .collect();
    for (arch, file) in ["amd64", "arm64"].iter().zip(&files) {
        let platform = format!("linux/{arch}");
        let mut args = release_args(&images, &repo, &platform, file);
        args.extend(["--backend", "podman", "--push-by-digest"]);
        env.hjk(&args).run();
        let m = read_meta(Path::new(file));
        assert_eq!(m["partial"], true);
        assert!(m["variants"][2]["index_digest"].is_null());
        // nothing public yet
        assert!(raw(&auth, &format!("{repo}:top"), false).is_none());
    }
    let merged = env.root().join("merged.json").display().to_string();
    let out = env
        .hjk(&[
            "images",
            "merge",
            &files[0],
            &files[1],
            "--version",
            "v0.1.0",
            "--metadata-file",
            &merged,
            "--progress",
            "plain",
        ])
        .run();
    assert!(out.stdout.contains("index"), "{}", out.stdout);
    let m = read_meta(Path::new(&merged));
    assert_published(&auth, &repo, &m, "v0.1.0", &["amd64", "arm64"]);

    // a one-machine release of the same inputs finds every image and makes the same indexes
    let one = env.root().join("one.json").display().to_string();
    let mut args = release_args(&images, &repo, "linux/amd64,linux/arm64", &one);
    args.extend(["--backend", "podman"]);
    let out = env.hjk(&args).run();
    assert!(
        summary_rows(&out.stdout)
            .iter()
            .take(6)
            .all(|r| r.2 == "reused"),
        "{}",
        out.stdout
    );
    let o = read_meta(Path::new(&one));
    for i in 0..3 {
        assert_eq!(
            o["variants"][i]["index_digest"],
            m["variants"][i]["index_digest"]
        );
    }
}

#[test]
fn docker_classic_releases_one_platform_and_refuses_two() {
    let Some(Setup {
        env,
        images,
        auth,
        repo,
        ..
    }) = setup(Some("docker"), "docker")
    else {
        return;
    };
    let meta = env.root().join("docker.json").display().to_string();
    let mut args = release_args(&images, &repo, "linux/amd64,linux/arm64", &meta);
    args.extend(["--backend", "docker", "--auth", "raw"]);
    env.hjk(&args)
        .status(2)
        .stderr_has("error: the classic docker builder releases one platform per machine")
        .run();
    assert_eq!(uploads(&repo), 0);
    args[8] = "linux/amd64";
    env.hjk(&args).run();
    assert_published(
        &auth,
        &repo,
        &read_meta(Path::new(&meta)),
        "v0.1.0",
        &["amd64"],
    );
}

#[test]
fn a_missing_gate_tool_is_refused_before_anything_is_pushed() {
    let env = TestEnv::new();
    env.fake("podman");
    let images = copy_fixture(&env);
    env.hjk(&[
        "images",
        "release",
        "--all",
        "--images-dir",
        &images,
        "--backend",
        "podman",
        "--scan",
    ])
    .bad_input()
    .stderr_has("--scan needs `trivy`, which is not on PATH")
    .stderr_has("nothing was built or pushed")
    .run();
    assert!(env.log().is_empty(), "{:?}", env.log());
}

/// The gates between staging and promotion, with fake syft/cosign/trivy (their commands are
/// covered in gates.rs): a scan that finds something in `top` holds `top`'s tags, while `base`
/// and `middle`, which passed, are signed and move.
#[test]
fn a_failing_scan_holds_only_that_variants_tags() {
    let Some(Setup {
        env,
        images,
        auth,
        repo,
        ..
    }) = setup(Some("podman"), "gates")
    else {
        return;
    };
    for tool in ["cosign", "syft", "trivy"] {
        std::os::unix::fs::symlink(
            fixtures().join("fake-bin/fake-supply-chain"),
            env.bin().join(tool),
        )
        .unwrap();
    }
    std::fs::write(format!("{images}/top/.trivyignore"), "CVE-0000-0000\n").unwrap();
    env.fake_reply("trivy-findings-match", "top/.trivyignore");
    let meta = env.root().join("gated.json").display().to_string();
    let gates_dir = env.root().join("gates").display().to_string();
    let mut args = release_args(&images, &repo, "linux/amd64", &meta);
    args.extend([
        "--backend",
        "podman",
        "--auth",
        "raw",
        "--sbom",
        "--sign",
        "--scan",
        "--gates-dir",
        &gates_dir,
    ]);
    let out = env
        .hjk(&args)
        .status(1)
        .stderr_has(
            "1 variant(s) failed a release gate and keep their public tags where they were: top",
        )
        .run();
    let m = read_meta(Path::new(&meta));
    let v = |i: usize| &m["variants"][i];
    assert_eq!(
        (v(0)["scan"].as_str(), v(0)["signed"].as_bool()),
        (Some("passed"), Some(true))
    );
    assert_eq!(
        (v(2)["scan"].as_str(), v(2)["signed"].as_bool()),
        (Some("failed"), Some(false))
    );
    assert_eq!(v(2)["tags"], serde_json::json!([]), "{}", out.stdout);
    assert!(v(1)["sbom"][0].as_str().unwrap().ends_with(".spdx.json"));
    for tag in ["base", "middle-v0.1.0"] {
        assert!(
            raw(&auth, &format!("{repo}:{tag}"), false).is_some(),
            "{tag}"
        );
    }
    for tag in ["top", "top-v0.1.0"] {
        assert!(
            raw(&auth, &format!("{repo}:{tag}"), false).is_none(),
            "{tag} moved"
        );
    }
    // the held index is in the registry by digest, for whoever fixes and gates it
    let top = v(2)["index_digest"].as_str().unwrap();
    assert!(raw(&auth, &format!("{repo}@{top}"), false).is_some());
}

/// buildx and Apple are fakes here, so the plan is what is checked (`--dry-run`: the registry
/// reads still run, against the real password registry).
#[test]
fn buildx_and_apple_release_plans() {
    let Some(pw) = password() else { return };
    let mut env = TestEnv::new();
    env.fake("docker").fake("container");
    env.set("HJK_REGISTRY_CREDS", format!("{USER}:{pw}"));
    env.set("HJK_AUTH", "raw");
    let images = copy_fixture(&env);
    let repo = fresh_repo("plan");
    let meta = env.root().join("plan.json").display().to_string();
    let mut args = release_args(&images, &repo, "linux/amd64,linux/arm64", &meta);
    args.extend(["--backend", "docker", "--builder", "remote-bk", "--dry-run"]);
    let out = env.hjk(&args).run();
    assert!(!out.stdout.contains(&pw) && !out.stderr.contains(&pw));
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert!(
        lines.iter().any(|l| l.starts_with("DOCKER_CONFIG=")
            && l.contains(
                " docker login --username hjk-release --password-stdin 127.0.0.1:5001 <stdin>"
            )),
        "{}",
        out.stdout
    );
    let arm_top = lines
        .iter()
        .find(|l| l.contains("buildx build --builder remote-bk") && l.contains("stage-top-arm64"))
        .unwrap_or_else(|| panic!("{}", out.stdout));
    for want in [
        "--platform linux/arm64",
        "--output type=image,name=127.0.0.1:5001/hjk-test/plan-",
        ",push=true,registry.insecure=true --provenance=false --metadata-file ",
        "--build-arg 'BASE_IMAGE=127.0.0.1:5001/hjk-test/plan-",
    ] {
        assert!(arm_top.contains(want), "{want}: {arm_top}");
    }
    assert!(!arm_top.contains("--tag "), "{arm_top}");
    // the fake was asked only read-only questions: the buildx probe and the base's inspect
    assert!(
        env.log()
            .iter()
            .all(|l| l[1..3] == ["buildx", "version"] || l[1..3] == ["image", "inspect"]),
        "{:?}",
        env.log()
    );

    let mut args = release_args(&images, &repo, "linux/arm64", &meta);
    args.extend(["--backend", "container", "--dry-run"]);
    let out = env.hjk(&args).run();
    for want in [
        "container registry login --scheme http --username hjk-release --password-stdin 127.0.0.1:5001 <stdin>",
        "container build --tag 127.0.0.1:5001/hjk-test/plan-",
        "--arch arm64 --os linux",
        "container image push --scheme http 127.0.0.1:5001/hjk-test/plan-",
    ] {
        assert!(out.stdout.contains(want), "{want}: {}", out.stdout);
    }
    let mut args = release_args(&images, &repo, "linux/arm64", &meta);
    args.extend(["--backend", "container", "--connection", "x"]);
    env.hjk(&args)
        .bad_input()
        .stderr_has("--connection is a podman option")
        .run();
}

/// SIGTERM in the middle of a release (a fake podman build that sleeps) removes the temporary
/// auth store and exits 143.
#[test]
fn sigterm_mid_release_removes_the_auth_store() {
    let Some(pw) = password() else { return };
    let mut env = TestEnv::new();
    env.fake("podman");
    env.fake_reply("build-sleep", "");
    let tmp = env.root().join("tmp");
    std::fs::create_dir_all(&tmp).unwrap();
    env.set("TMPDIR", tmp.display().to_string());
    env.set("HJK_REGISTRY_CREDS", format!("{USER}:{pw}"));
    let images = copy_fixture(&env);
    let repo = fresh_repo("sigterm");
    let meta = env.root().join("m.json").display().to_string();
    let mut args = release_args(&images, &repo, "linux/amd64", &meta);
    args.extend(["--backend", "podman", "--auth", "raw"]);
    let mut child = Command::new(assert_cmd::cargo::cargo_bin("hjk"))
        .env_clear()
        .envs(&env.vars)
        .current_dir(env.project())
        .args(&args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid_file = env.root().join("fake/build.pid");
    let auth_dirs = || -> Vec<PathBuf> {
        std::fs::read_dir(&tmp)
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .filter(|p| {
                p.file_name()
                    .unwrap()
                    .to_string_lossy()
                    .starts_with("hjk-auth-")
            })
            .collect()
    };
    for _ in 0..1200 {
        if pid_file.exists() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    if !pid_file.exists() {
        let _ = child.kill();
        let out = child.wait_with_output().unwrap();
        panic!(
            "the fake build never started: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let dirs = auth_dirs();
    assert_eq!(dirs.len(), 1, "{dirs:?}");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&dirs[0]).unwrap().permissions().mode() & 0o777,
        0o700
    );
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(143));
    assert!(auth_dirs().is_empty(), "{:?}", auth_dirs());
    let login = env.log().into_iter().find(|l| l[1] == "login").unwrap();
    assert!(!login.join(" ").contains(&pw));
}

#[test]
fn make_targets_release_per_arch_merge_and_print_digests() {
    let Some(Setup {
        env,
        images,
        auth,
        repo,
        ..
    }) = setup(Some("podman"), "make")
    else {
        return;
    };
    let hjk = assert_cmd::cargo::cargo_bin("hjk").display().to_string();
    let root = env.root().display().to_string();
    let make = |target: &str, extra: &[String]| {
        let mut c = Command::new("make");
        c.env_clear()
            .envs(&env.vars)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .args(["-s", target])
            .arg(format!("HJK={hjk}"))
            .arg(format!("IMAGES_DIR={images}"))
            .arg(format!("REGISTRY={repo}"))
            .args(["AUTH=raw", "BACKEND=podman", "VERSION=v0.1.0", "GATES="])
            .args(extra);
        let out = c.output().unwrap();
        let text = (
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        );
        assert!(
            out.status.success(),
            "make {target}: {}\n{}",
            text.0,
            text.1
        );
        text
    };
    let files: Vec<String> = ["amd64", "arm64"]
        .iter()
        .map(|a| format!("{root}/{a}.json"))
        .collect();
    for (a, f) in ["amd64", "arm64"].iter().zip(&files) {
        make(
            "image-release-arch",
            &[format!("PLATFORM=linux/{a}"), format!("ARCH_METADATA={f}")],
        );
    }
    let meta = format!("{root}/release.json");
    make(
        "image-merge",
        &[
            format!("MERGE_FILES={} {}", files[0], files[1]),
            format!("METADATA={meta}"),
        ],
    );
    let m = read_meta(Path::new(&meta));
    assert_published(&auth, &repo, &m, "v0.1.0", &["amd64", "arm64"]);
    let (out, _) = make(
        "image-digest",
        &["VARIANT=top".into(), format!("METADATA={meta}")],
    );
    assert_eq!(
        out.trim(),
        m["variants"][2]["index_digest"].as_str().unwrap()
    );
    // image-push-all of the same inputs is a no-op that keeps the tags
    let (out, _) = make(
        "image-push-all",
        &["TAG=v0.1.0".into(), format!("METADATA={meta}")],
    );
    assert_eq!(
        summary_rows(&out)
            .iter()
            .filter(|r| r.2 == "reused")
            .count(),
        6,
        "{out}"
    );
}
