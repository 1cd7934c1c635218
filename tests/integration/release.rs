//! `hjk images release` / `merge` against a real password-protected registry on 127.0.0.1:5001
//! (scripts/test-engines.sh starts it: bcrypt htpasswd, access log), with the small fixture in
//! tests/fixtures/release (FROM local/debian:bookworm-<arch>, one small layer per variant, so
//! arm64 under qemu costs seconds). Every registry read in these tests goes through skopeo with
//! an auth file, so no password is ever an argument, ours or the test's.

use crate::util::argv::Argv;
use crate::util::fake::Script;
use crate::util::registry::*;
use crate::util::{need, sha256_hex, summary_rows, wait, Need, TestEnv};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

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
    let status = wait::until("hjk ends", std::time::Duration::from_secs(600), || {
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
        child.try_wait().unwrap()
    });
    let out = crate::util::Out {
        code: status.code().unwrap_or(-1),
        stdout: out_t.join().unwrap(),
        stderr: err_t.join().unwrap(),
    };
    (out, seen)
}

#[test]
#[ignore = "needs podman and registry: scripts/test-engines.sh up, then make test"]
fn podman_release_publishes_by_digest_and_a_second_run_builds_and_uploads_nothing() {
    need(&[Need::Podman, Need::Registry]);
    let Setup {
        pw,
        mut env,
        images,
        auth,
        repo,
    } = setup("podman");
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
    env.assert_nothing_built_or_pushed();

    let (out, seen) = run_sampling(&env, &args, &format!("{USER}:{pw}\n"), &pw);
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    assert!(seen > 50, "sampled only {seen} command lines");
    let m = read_meta(&meta);
    assert_eq!(m["partial"], false);
    assert_published(&auth, &repo, &m, "v0.1.0", &["amd64", "arm64"]);
    // every podman argv, as podman got it (sampling /proc can miss a short-lived login)
    let log = env.log();
    assert!(log.iter().any(|l| l.is(&["login"])), "{log:?}");
    assert!(
        !log.iter().any(|l| l.iter().any(|a| a.contains(&pw))),
        "the password is in a podman argv"
    );
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
    assert!(log.iter().all(|l| l.is(&["image", "inspect"])), "{log:?}");
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

    // fewer platforms would narrow the public multi-arch tags: refused before anything is
    // built, every tag stays
    env.clear_log();
    args[8] = "linux/amd64";
    let (out, _) = run_sampling(&env, &args, &format!("{USER}:{pw}\n"), &pw);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.stderr.contains(&format!(
            "no public tag moved: {repo}:{{base,base-v0.1.0,middle,middle-v0.1.0,top,top-v0.1.0}} list linux/arm64, which this release does not build;"
        )),
        "{}",
        out.stderr
    );
    env.assert_nothing_built();
    assert_published(&auth, &repo, &m, "v0.1.0", &["amd64", "arm64"]);

    // changed inputs under a released version: refused up front too, unless --force-tags.
    // The new top adds no layer (LABEL only): its layers equal its parent's, which still
    // "begin with" them, so verification lets it through
    args[8] = "linux/amd64,linux/arm64";
    std::fs::write(
        format!("{images}/top/Dockerfile"),
        "ARG BASE_IMAGE=hjk-release-fixture:middle\nFROM ${BASE_IMAGE}\nLABEL edited=1\n",
    )
    .unwrap();
    let (out, _) = run_sampling(&env, &args, &format!("{USER}:{pw}\n"), &pw);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.stderr
            .contains(&format!("{repo}:top-v0.1.0 is already released as ")),
        "{}",
        out.stderr
    );
    env.assert_nothing_built();
    args.push("--force-tags");
    let (out, _) = run_sampling(&env, &args, &format!("{USER}:{pw}\n"), &pw);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let forced = read_meta(&meta);
    assert_ne!(
        forced["variants"][2]["index_digest"],
        m["variants"][2]["index_digest"]
    );
    assert_eq!(
        forced["variants"][1]["index_digest"],
        m["variants"][1]["index_digest"]
    );
    assert_published(&auth, &repo, &forced, "v0.1.0", &["amd64", "arm64"]);
}

/// A one-machine release first, then the same inputs as two per-arch runs and `merge`: merge
/// always assembles its indexes itself (no no-op shortcut), so equal index digests mean it
/// makes the bytes a one-machine release makes; the shape (platforms, tags, base labels, layer
/// chains) is checked on both.
#[test]
#[ignore = "needs podman and registry: scripts/test-engines.sh up, then make test"]
fn per_arch_runs_then_merge_give_the_indexes_of_one_run() {
    need(&[Need::Podman, Need::Registry]);
    merge_gives_the_indexes_of_one_run("podman");
}

/// The same on BuildKit, where each image comes with its provenance attestation: the merged
/// index lists the attestations the per-arch runs made, byte for byte as one machine does.
#[test]
#[ignore = "needs docker and registry: scripts/test-engines.sh up, then make test"]
fn buildx_per_arch_runs_then_merge_give_the_indexes_of_one_run() {
    need(&[Need::Docker, Need::Registry]);
    merge_gives_the_indexes_of_one_run("docker");
}

fn merge_gives_the_indexes_of_one_run(engine: &str) {
    let Setup {
        mut env,
        images,
        auth,
        repo,
        ..
    } = setup(&format!("merge-{engine}"));
    env.set("HJK_AUTH", "raw");
    let one = env.root().join("one.json").display().to_string();
    let mut args = release_args(&images, &repo, "linux/amd64,linux/arm64", &one);
    args.extend(["--backend", engine]);
    env.hjk(&args).run();
    let o = read_meta(Path::new(&one));
    assert_published(&auth, &repo, &o, "v0.1.0", &["amd64", "arm64"]);

    let files: Vec<String> = ["amd64", "arm64"]
        .iter()
        .map(|a| env.root().join(format!("{a}.json")).display().to_string())
        .collect();
    for (arch, file) in ["amd64", "arm64"].iter().zip(&files) {
        let platform = format!("linux/{arch}");
        let mut args = release_args(&images, &repo, &platform, file);
        args.extend(["--backend", engine, "--push-by-digest"]);
        env.hjk(&args).run();
        let m = read_meta(Path::new(file));
        assert_eq!(m["partial"], true);
        assert!(m["variants"][2]["index_digest"].is_null());
    }
    let merged = env.root().join("merged.json").display().to_string();
    let merge = |version: &str| {
        let mut a = vec!["images", "merge", &files[0], &files[1]];
        a.extend(["--metadata-file", &merged, "--progress", "plain"]);
        if !version.is_empty() {
            a.extend(["--version", version]);
        }
        env.hjk(&a)
    };
    // another version than the images carry: refused, nothing tagged
    merge("v9.9.9")
        .bad_input()
        .stderr_has("--version v9.9.9 does not match")
        .run();
    assert!(raw(&auth, &format!("{repo}:top-v9.9.9"), false).is_none());
    // without --version: the files' version, versioned tags included. merge assembles each
    // index from the files and records the digest of the bytes it made, so equal digests mean
    // equal indexes, whatever the registry already held
    let out = merge("").run();
    assert!(out.stdout.contains("index"), "{}", out.stdout);
    let m = read_meta(Path::new(&merged));
    assert_eq!(m["version"], "v0.1.0");
    assert_published(&auth, &repo, &m, "v0.1.0", &["amd64", "arm64"]);
    for i in 0..3 {
        assert_eq!(
            o["variants"][i]["index_digest"], m["variants"][i]["index_digest"],
            "variant {i}"
        );
        // BuildKit attests every image; podman makes no attestations
        for p in ["linux/amd64", "linux/arm64"] {
            let att = &m["variants"][i]["platforms"][p]["attestation"];
            assert_eq!(
                att.is_object(),
                engine == "docker",
                "variant {i} {p}: {att}"
            );
        }
    }
}

/// BuildKit's release: each image is built into an OCI layout with its file times rewritten to
/// SOURCE_DATE_EPOCH and a provenance attestation (mode=max) beside it, which hjk pushes by
/// the digest buildx's metadata file names. Each index lists every platform's attestation as
/// `unknown/unknown`, about that platform's image, holding an SLSA provenance statement (hjk's
/// verify phase read each one back). A second release reuses everything, attestations included.
#[test]
#[ignore = "needs docker and registry: scripts/test-engines.sh up, then make test"]
fn docker_buildx_release_attests_every_image_and_a_second_run_reuses_them() {
    need(&[Need::Docker, Need::Registry]);
    let Setup {
        mut env,
        images,
        auth,
        repo,
        ..
    } = setup("buildx");
    env.set("HJK_AUTH", "raw");
    env.recording(
        "docker",
        &which::which("docker").unwrap().display().to_string(),
    );
    let meta = env.root().join("buildx.json").display().to_string();
    let mut args = release_args(&images, &repo, "linux/amd64,linux/arm64", &meta);
    args.extend(["--backend", "docker", "--source-date-epoch", "1700000000"]);
    env.hjk(&args)
        .stderr_has("SOURCE_DATE_EPOCH=1700000000 (--source-date-epoch)")
        .run();
    let m = read_meta(Path::new(&meta));
    assert_published(&auth, &repo, &m, "v0.1.0", &["amd64", "arm64"]);
    let stages: Vec<Vec<String>> = env
        .log()
        .into_iter()
        .filter(|a| a.is(&["buildx", "build"]))
        .collect();
    assert_eq!(stages.len(), 6, "{stages:?}");
    for b in &stages {
        let text = b.join(" ");
        assert!(
            text.contains(",tar=false,rewrite-timestamp=true ")
                && text.contains(" --provenance=mode=max ")
                && text.contains(" --build-arg SOURCE_DATE_EPOCH=1700000000 "),
            "{text}"
        );
    }
    for v in m["variants"].as_array().unwrap() {
        let index = json(
            &raw(
                &auth,
                &format!("{repo}@{}", v["index_digest"].as_str().unwrap()),
                false,
            )
            .unwrap(),
        );
        for (p, rec) in v["platforms"].as_object().unwrap() {
            let att = rec["attestation"]["digest"]
                .as_str()
                .unwrap_or_else(|| panic!("{p}: {rec}"));
            let listed = index["manifests"]
                .as_array()
                .unwrap()
                .iter()
                .find(|e| e["digest"] == att)
                .unwrap_or_else(|| panic!("{p}: {att} not in {index}"));
            assert_eq!(
                listed["annotations"]["vnd.docker.reference.digest"],
                rec["digest"]
            );
            let manifest = json(&raw(&auth, &format!("{repo}@{att}"), false).unwrap());
            assert!(
                manifest["layers"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|l| l["annotations"]["in-toto.io/predicate-type"]
                        .as_str()
                        .is_some_and(|t| t.starts_with("https://slsa.dev/provenance/"))),
                "{manifest}"
            );
        }
    }
    // the same inputs again: nothing built, the attestations come along from the registry
    env.clear_log();
    let out = env.hjk(&args).run();
    assert_eq!(
        summary_rows(&out.stdout)
            .iter()
            .filter(|r| r.2 == "reused")
            .count(),
        6,
        "{}",
        out.stdout
    );
    assert!(
        !env.log().iter().any(|a| a.is(&["buildx", "build"])),
        "{:?}",
        env.log()
    );
    let again = read_meta(Path::new(&meta));
    for i in 0..3 {
        assert_eq!(
            again["variants"][i]["index_digest"],
            m["variants"][i]["index_digest"]
        );
    }
}

/// The same inputs, built twice with --no-cache from two copies of the files whose times
/// differ (two checkouts, both after the commit), into two fresh repositories: the same image
/// digests, on both engines that can rewrite the times (buildx's `rewrite-timestamp` clamps
/// every time after SOURCE_DATE_EPOCH to it; podman's `--timestamp` sets every time).
fn reproducible(engine: &str) {
    let Setup {
        mut env,
        auth,
        repo,
        ..
    } = setup(&format!("repro-{engine}"));
    env.set("HJK_AUTH", "raw");
    let digests = |copy: &str, repo: &str, mtime: &str| -> Vec<String> {
        let dir = env.root().join(copy);
        std::fs::create_dir_all(dir.join("files/etc")).unwrap();
        std::fs::write(
            dir.join("variants.yaml"),
            "variants:\n  - name: files\n    dir: files\n",
        )
        .unwrap();
        std::fs::write(
            dir.join("files/Dockerfile"),
            "ARG TARGETARCH=${TARGETARCH}\nARG BASE_IMAGE=local/busybox:${TARGETARCH}\nFROM ${BASE_IMAGE}\nCOPY etc/ /etc/app/\nCOPY tool.sh /usr/local/bin/tool.sh\n",
        )
        .unwrap();
        std::fs::write(dir.join("files/etc/app.conf"), "key = value\n").unwrap();
        std::fs::write(dir.join("files/tool.sh"), "#!/bin/sh\necho tool\n").unwrap();
        let touched = Command::new("find")
            .arg(&dir)
            .args(["-exec", "touch", "-d", mtime, "{}", "+"])
            .status()
            .unwrap();
        assert!(touched.success());
        let meta = env
            .root()
            .join(format!("{copy}.json"))
            .display()
            .to_string();
        let dir_s = dir.display().to_string();
        let mut args = release_args(&dir_s, repo, "linux/amd64", &meta);
        args.extend([
            "--backend",
            engine,
            "--no-cache",
            "--source-date-epoch",
            "1700000000",
        ]);
        env.hjk(&args).run();
        let m = read_meta(Path::new(&meta));
        assert_published(&auth, repo, &m, "v0.1.0", &["amd64"]);
        vec![m["variants"][0]["platforms"]["linux/amd64"]["digest"]
            .as_str()
            .unwrap()
            .to_string()]
    };
    let other = fresh_repo(&format!("repro-{engine}-2"));
    let first = digests("one", &repo, "2024-01-01 00:00:00");
    let second = digests("two", &other, "2025-06-01 12:34:56");
    assert_eq!(
        first, second,
        "the same inputs, another build: another image"
    );
}

#[test]
#[ignore = "needs docker and registry: scripts/test-engines.sh up, then make test"]
fn docker_buildx_release_digests_are_reproducible() {
    need(&[Need::Docker, Need::Registry]);
    reproducible("docker");
}

#[test]
#[ignore = "needs podman and registry: scripts/test-engines.sh up, then make test"]
fn podman_release_digests_are_reproducible() {
    need(&[Need::Podman, Need::Registry]);
    reproducible("podman");
}

/// `--cache-repo`: each stage exports its layer cache to the registry (buildx: BuildKit's cache
/// manifest under `<variant>-<arch>`, `mode=max`; podman: its own cache repository of layer
/// images) and imports it, so a machine that starts empty rebuilds only what changed (timed in
/// scripts/bench.sh). A second release into another repository imports that cache.
fn registry_cache(engine: &str) {
    let Setup {
        mut env,
        images,
        auth,
        repo,
        ..
    } = setup(&format!("cache-{engine}"));
    env.set("HJK_AUTH", "raw");
    let cache = fresh_repo(&format!("cache-{engine}-layers"));
    let meta = env.root().join("cached.json").display().to_string();
    let mut args = release_args(&images, &repo, "linux/amd64", &meta);
    args.extend(["--backend", engine, "--cache-repo", &cache]);
    env.hjk(&args).run();
    if engine == "docker" {
        for v in ["base", "middle", "top"] {
            // BuildKit's cache manifest: an index of the layers and the cache config
            let m = json(&raw(&auth, &format!("{cache}:{v}-amd64"), false).expect(v));
            assert!(
                m["manifests"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|e| e["mediaType"] == "application/vnd.buildkit.cacheconfig.v0"),
                "{v}: {m}"
            );
        }
    } else {
        let out = Command::new("skopeo")
            .args(["list-tags", "--tls-verify=false", "--authfile"])
            .arg(&auth)
            .arg(format!("docker://{cache}"))
            .output()
            .unwrap();
        let tags = json(&out.stdout);
        assert!(
            !tags["Tags"].as_array().map(Vec::is_empty).unwrap_or(true),
            "podman exported no cache: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // another repository, so nothing is reused from the registry: built again, from the cache
    let other = fresh_repo(&format!("cache-{engine}-2"));
    let mut args = release_args(&images, &other, "linux/amd64", &meta);
    args.extend(["--backend", engine, "--cache-repo", &cache]);
    let out = env.hjk(&args).run();
    if engine == "docker" {
        assert!(
            out.stderr
                .contains(&format!("importing cache manifest from {cache}:base-amd64")),
            "{}",
            out.stderr
        );
    }
}

#[test]
#[ignore = "needs docker and registry: scripts/test-engines.sh up, then make test"]
fn docker_buildx_release_uses_a_registry_cache() {
    need(&[Need::Docker, Need::Registry]);
    registry_cache("docker");
}

#[test]
#[ignore = "needs podman and registry: scripts/test-engines.sh up, then make test"]
fn podman_release_uses_a_registry_cache() {
    need(&[Need::Podman, Need::Registry]);
    registry_cache("podman");
}

/// The classic builder, for real: one platform, and two refused up front. Its login goes into
/// the temporary `DOCKER_CONFIG`, never into a keychain: with a `docker-credential-secretservice`
/// on PATH (the docker CLI's default store on Linux when a config holds no auth), the helper is
/// never called. And no docker argv holds the password.
#[test]
#[ignore = "needs docker-classic and registry: scripts/test-engines.sh up, then make test"]
fn docker_classic_releases_one_platform_and_refuses_two() {
    need(&[Need::DockerClassic, Need::Registry]);
    let Setup {
        pw,
        env,
        images,
        auth,
        repo,
    } = setup("docker");
    env.recording("docker", &env.classic_docker_cli());
    // a working keychain: `store` keeps what it is given, `get` returns it
    let helper_log = env.root().join("helper.log");
    let kept = env.root().join("keychain.json");
    env.write_exe(
        "docker-credential-secretservice",
        &format!(
            "#!/bin/sh\necho \"$1\" >>{log}\ncase \"$1\" in\n  store) cat >{kept} ;;\n  get) cat >/dev/null; cat {kept} 2>/dev/null || {{ echo 'credentials not found in native keychain'; exit 1; }} ;;\n  *) cat >/dev/null ;;\nesac\n",
            log = helper_log.display(),
            kept = kept.display()
        ),
    );
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
    let log = env.log();
    assert!(log.iter().any(|l| l.is(&["login"])), "{log:?}");
    assert!(
        !log.iter().any(|l| l.iter().any(|a| a.contains(&pw))),
        "the password is in a docker argv"
    );
    assert!(
        !helper_log.exists(),
        "docker stored the release's login in a keychain helper: {}",
        std::fs::read_to_string(&helper_log).unwrap_or_default()
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

/// The gates between staging and promotion: a scan that finds something in `top` holds `top`'s
/// tags, while `base` and `middle`, which passed, are signed and move; the hold is recorded in
/// the registry, a rerun without gates keeps it, and the same gates passing lift it. Fake
/// syft/cosign/trivy: the finding must go away while the image stays the same (a CVE withdrawn
/// from trivy's DB), which the real trivy cannot be made to do offline (the real gates holding a
/// variant: `supply_chain::buildx_release_holds_the_variant_with_a_planted_key_...`).
#[test]
#[ignore = "needs podman and registry: scripts/test-engines.sh up, then make test"]
fn a_failing_scan_holds_only_that_variants_tags() {
    need(&[Need::Podman, Need::Registry]);
    let Setup {
        env,
        images,
        auth,
        repo,
        ..
    } = setup("gates");
    scan_finds_something_in_top(&env, &images);
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
    let top = v(2)["index_digest"].as_str().unwrap().to_string();
    assert!(raw(&auth, &format!("{repo}@{top}"), false).is_some());
    assert!(
        out.stdout.contains(&format!(
            "top          index          held               {top}"
        )),
        "{}",
        out.stdout
    );
    assert!(
        v(2)["held"][0].as_str().unwrap().contains("scan found"),
        "{m}"
    );
    // and the hold is recorded in the registry, next to it: an index listing no image
    let marker = json(&raw(&auth, &format!("{repo}:held-{}", &top[7..]), false).unwrap());
    assert_eq!(marker["manifests"], serde_json::json!([]));
    assert_eq!(marker["annotations"]["io.agent-images.held"], top.as_str());
    assert_eq!(
        marker["annotations"]["io.agent-images.held.gates"],
        "sbom,scan,sign"
    );

    // a rerun without the gates (what `make image-push-all GATES=` would do) builds nothing new
    // and still moves no tag to the held index
    let plain: Vec<&str> = args[..args.len() - 5].to_vec();
    env.hjk(&plain)
        .status(1)
        .stderr_has("top (an earlier release's gates held this index (scan found")
        .stderr_has("release it with --sbom --scan --sign to check it again")
        .run();
    for tag in ["top", "top-v0.1.0"] {
        assert!(
            raw(&auth, &format!("{repo}:{tag}"), false).is_none(),
            "{tag} moved without the gates"
        );
    }
    // the same gates, passing now (the finding was fixed upstream): top moves
    env.script(&Script::default());
    env.hjk(&args).run();
    for tag in ["top", "top-v0.1.0"] {
        let bytes = raw(&auth, &format!("{repo}:{tag}"), false).expect(tag);
        assert_eq!(format!("sha256:{}", sha256_hex(&bytes)), top);
    }
}

/// buildx and Apple are fakes here, so the plan is what is checked (`--dry-run`: the registry
/// reads still run, against the real password registry).
#[test]
#[ignore = "needs registry: scripts/test-engines.sh up, then make test"]
fn buildx_and_apple_release_plans() {
    need(&[Need::Registry]);
    let pw = password();
    let mut env = TestEnv::new();
    env.fake("docker").fake("container");
    env.set("HJK_REGISTRY_CREDS", format!("{USER}:{pw}"));
    env.set("HJK_AUTH", "raw");
    let images = copy_fixture(&env);
    let repo = fresh_repo("plan");
    let meta = env.root().join("plan.json").display().to_string();
    let mut args = release_args(&images, &repo, "linux/amd64,linux/arm64", &meta);
    args.extend([
        "--backend",
        "docker",
        "--builder",
        "remote-bk",
        "--source-date-epoch",
        "1700000000",
        "--dry-run",
    ]);
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
        .find(|l| l.contains("buildx build --builder remote-bk") && l.contains("/top-arm64.oci,"))
        .unwrap_or_else(|| panic!("{}", out.stdout));
    // an OCI layout for hjk to push (timestamps rewritten, provenance beside the image)
    for want in [
        "--platform linux/arm64",
        " --output type=oci,dest=",
        "/top-arm64.oci,tar=false,rewrite-timestamp=true --metadata-file ",
        " --provenance=mode=max ",
        " --build-arg SOURCE_DATE_EPOCH=",
        "--build-arg 'BASE_IMAGE=127.0.0.1:5001/hjk-test/plan-",
    ] {
        assert!(arm_top.contains(want), "{want}: {arm_top}");
    }
    assert!(
        !arm_top.contains("--tag ") && !arm_top.contains("--push"),
        "{arm_top}"
    );
    // the fake was asked only read-only questions: the buildx probes and the base's inspect
    assert!(
        env.log()
            .iter()
            .all(|l| l.is(&["buildx", "inspect"]) || l.is(&["image", "inspect"])),
        "{:?}",
        env.log()
    );

    let mut args = release_args(&images, &repo, "linux/arm64", &meta);
    args.extend(["--backend", "container", "--dry-run"]);
    let out = env.hjk(&args).run();
    for want in [
        // the keychain is asked first: a login the user keeps there is not overwritten
        "container registry list --format json\n",
        "container registry login --scheme http --username hjk-release --password-stdin 127.0.0.1:5001 <stdin>",
        "container build --tag 127.0.0.1:5001/hjk-test/plan-",
        " --platform linux/arm64 --file ",
        // every platform the stage holds, whatever CONTAINER_DEFAULT_PLATFORM says
        "CONTAINER_DEFAULT_PLATFORM='' container image push --scheme http 127.0.0.1:5001/hjk-test/plan-",
    ] {
        assert!(out.stdout.contains(want), "{want}: {}", out.stdout);
    }
    assert!(!out.stdout.contains("--arch"), "{}", out.stdout);
    // `registry list --format json` as 1.2.2 prints it (RegistryList.swift)
    env.script(&Script {
        keychain_logins: Some(r#"[{"creationDate":"2026-01-02T03:04:05Z","id":"127.0.0.1:5001","labels":{},"modificationDate":"2026-01-02T03:04:05Z","name":"127.0.0.1:5001","username":"me"}]"#.into()),
        ..Script::default()
    });
    env.clear_log();
    let out = env
        .hjk(&args)
        .status(2)
        .stderr_has("error: your keychain holds a `container` login to 127.0.0.1:5001 (as me) that a release login would replace and then remove; release with --auth docker-config, or run `container registry logout 127.0.0.1:5001` first")
        .run();
    assert!(
        !out.stdout.contains("registry login") && !out.stdout.contains("container build"),
        "{}",
        out.stdout
    );
    let mut args = release_args(&images, &repo, "linux/arm64", &meta);
    args.extend(["--backend", "container", "--connection", "x"]);
    env.hjk(&args)
        .bad_input()
        .stderr_has("--connection is a podman option")
        .run();
}

/// The fake gate tools, whose trivy finds something in `top` (it matches top's .trivyignore
/// in its argv) and nothing elsewhere, until the script is replaced.
fn scan_finds_something_in_top(env: &TestEnv, images: &str) {
    fake_gate_tools(env);
    std::fs::write(format!("{images}/top/.trivyignore"), "CVE-0000-0000\n").unwrap();
    env.script(&Script {
        trivy_finds_when: Some("top/.trivyignore".into()),
        ..Script::default()
    });
}

/// jackpkgs ADR-030's contracts (issue 16) with the real gate tools (issue 15): `make release`
/// runs the gates (`GATES`: SBOM, signature, scan and boot) with the real cosign, syft and trivy
/// (a key from `cosign generate-key-pair`, no transparency log, the offline secret scanner
/// through `RELEASE_FLAGS`); the per-image recipes (`image-push`, `image-push-all`) run none
/// unless given `IMAGE_GATES`, and `image-push` takes its tag with `latest` as the default (only
/// the floating `<variant>` tag moves then).
#[test]
#[ignore = "needs podman and registry and cosign, syft, trivy: scripts/test-engines.sh up and scripts/install-tools.sh supply, then make test"]
fn make_release_runs_the_gates_and_the_per_image_recipes_do_not() {
    need(&[Need::Podman, Need::Registry, Need::SupplyTools]);
    let Setup {
        mut env,
        images,
        auth,
        repo,
        ..
    } = setup("make-gates");
    let (key, public) = keypair(&env, "keys");
    sign_with(&mut env, &key);
    let root = env.root().display().to_string();
    let flags = |release_flags: String| {
        vec![
            "PLATFORMS=linux/amd64".to_string(),
            format!("METADATA={root}/release.json"),
            format!("RELEASE_FLAGS=--gates-dir {root}/gates {release_flags}"),
        ]
    };
    let gated = flags(format!(
        "--scanners secret --tlog-upload=false --key {}",
        public.display()
    ));
    let (out, err) = run_make(&env, &images, &repo, "release", &gated);
    assert!(err.contains("not in a transparency log"), "{out}{err}");
    assert!(err.contains("booting top (linux/amd64)"), "{err}");
    let m = read_meta(&PathBuf::from(format!("{root}/release.json")));
    for v in m["variants"].as_array().unwrap() {
        assert_eq!(v["signed"], true, "{v}");
        assert_eq!(v["scan"], "passed", "{v}");
        assert_eq!(v["sbom"].as_array().unwrap().len(), 1, "{v}");
    }
    assert_eq!(m["variants"][2]["boot"], "passed");
    assert!(raw(&auth, &format!("{repo}:top-v0.1.0"), false).is_some());
    // the per-image recipes plan no gate
    let mut push = flags("--dry-run".into());
    push.extend(["VARIANT=top".into(), "TAG=v0.1.0".into()]);
    let (out, err) = run_make(&env, &images, &repo, "image-push", &push);
    assert!(!out.contains("run the gates"), "{out}");
    assert!(!err.contains("booting"), "{err}");
    // TAG defaults to latest: no version, only the floating tags
    let (out, err) = run_make(
        &env,
        &images,
        &repo,
        "image-push-all",
        &flags(String::new()),
    );
    assert!(!err.contains("booting") && !err.contains("scan"), "{err}");
    assert!(
        out.lines().any(|l| l.starts_with("top ")
            && l.contains(&format!("{repo}:top"))
            && !l.contains("top-latest")),
        "{out}"
    );
    assert!(raw(&auth, &format!("{repo}:top-latest"), false).is_none());
}

#[test]
#[ignore = "needs podman and registry: scripts/test-engines.sh up, then make test"]
fn make_targets_release_per_arch_merge_and_print_digests() {
    need(&[Need::Podman, Need::Registry]);
    let Setup {
        env,
        images,
        auth,
        repo,
        ..
    } = setup("make");
    let root = env.root().display().to_string();
    let make = |target: &str, extra: &[String]| {
        let mut all = vec!["GATES=".to_string()];
        all.extend(extra.iter().cloned());
        run_make(&env, &images, &repo, target, &all)
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
    // ADR-030's image-digest builds first (its table on stderr), then prints the local
    // image's digest alone on stdout
    let (out, err) = make("image-digest", &["VARIANT=top".into()]);
    assert!(
        out.trim().starts_with("sha256:") && out.lines().count() == 1,
        "{out}{err}"
    );
    assert!(err.contains("VARIANT"), "the build's table: {err}");
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

/// A hold follows the images, not only the index: after a two-platform release whose scan held
/// `top`, a release of amd64 alone without gates (another index over the same amd64 image)
/// moves no `top` tag either. The same gates passing lift the hold, and mark it lifted, so a
/// later rerun without gates is a plain no-op instead of failing on what is promoted. Fake
/// tools, for the same reason as `a_failing_scan_holds_only_that_variants_tags`: the finding
/// goes away on the same images.
#[test]
#[ignore = "needs podman and registry: scripts/test-engines.sh up, then make test"]
fn a_hold_covers_the_images_and_ends_when_the_gates_pass() {
    need(&[Need::Podman, Need::Registry]);
    let Setup {
        env,
        images,
        auth,
        repo,
        ..
    } = setup("holds");
    scan_finds_something_in_top(&env, &images);
    let meta = env.root().join("holds.json").display().to_string();
    let gates_dir = env.root().join("gates").display().to_string();
    let mut both = release_args(&images, &repo, "linux/amd64,linux/arm64", &meta);
    // --force-tags: the amd64-only run below narrows base's and middle's tags, which the
    // two-platform runs after it widen again
    both.extend(["--backend", "podman", "--auth", "raw", "--force-tags"]);
    let mut gated = both.clone();
    gated.extend(["--scan", "--gates-dir", &gates_dir]);
    env.hjk(&gated)
        .status(1)
        .stderr_has("keep their public tags where they were: top")
        .run();
    let m = read_meta(Path::new(&meta));
    let amd64 = m["variants"][2]["platforms"]["linux/amd64"]["digest"]
        .as_str()
        .unwrap()
        .to_string();
    let marker = json(&raw(&auth, &format!("{repo}:held-{}", &amd64[7..]), false).unwrap());
    assert_eq!(
        marker["annotations"]["io.agent-images.held"],
        amd64.as_str()
    );

    // amd64 alone, no gates: a new top index over the held amd64 image stays held
    let mut narrow = release_args(&images, &repo, "linux/amd64", &meta);
    narrow.extend(["--backend", "podman", "--auth", "raw", "--force-tags"]);
    env.hjk(&narrow)
        .status(1)
        .stderr_has("top (an earlier release's gates held its linux/amd64 image (scan found")
        .run();
    for tag in ["top", "top-v0.1.0"] {
        assert!(
            raw(&auth, &format!("{repo}:{tag}"), false).is_none(),
            "{tag} moved to a held image under another index"
        );
    }

    // the scan passes now: top moves, and its holds are marked lifted
    env.script(&Script::default());
    let out = env.hjk(&gated).status(0).run();
    assert!(out.stderr.contains("lifting the hold"), "{}", out.stderr);
    let marker = json(&raw(&auth, &format!("{repo}:held-{}", &amd64[7..]), false).unwrap());
    assert_eq!(
        marker["annotations"]["io.agent-images.held.lifted-by"],
        "scan"
    );
    let top = read_meta(Path::new(&meta))["variants"][2]["index_digest"]
        .as_str()
        .unwrap()
        .to_string();
    let bytes = raw(&auth, &format!("{repo}:top"), false).unwrap();
    assert_eq!(format!("sha256:{}", sha256_hex(&bytes)), top);
    // a rerun without gates: nothing held, nothing to do
    env.hjk(&both).status(0).run();
}

/// An engine that pushes even a one-platform image as an index (Apple's `container`) still
/// gives a release the platform's image manifest: read from the multi-arch busybox index that
/// scripts/test-engines.sh puts in the plain registry.
#[test]
#[ignore = "needs plain registry: scripts/test-engines.sh up, then make test"]
fn an_index_under_a_tag_resolves_to_the_platform_image() {
    need(&[Need::PlainRegistry]);
    use agent_images::hjk::release::registry::Registry;
    use agent_images::image_ref::ImageRef;
    use agent_images::platform::Platform;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let r = Registry::new(
        &ImageRef::parse("127.0.0.1:5000/local/busybox").unwrap(),
        None,
        agent_images::hjk::release::registry::DEFAULT_TIMEOUT,
        std::sync::Arc::new(agent_images::report::PlainReporter),
    )
    .unwrap();
    let index = rt.block_on(r.manifest("latest")).unwrap().unwrap();
    assert!(index.is_index(), "{}", index.media_type);
    for p in Platform::ALL {
        let m = rt
            .block_on(r.platform_manifest("latest", p))
            .unwrap()
            .unwrap_or_else(|| panic!("no {p} image"));
        assert!(!m.is_index(), "{p}: {}", m.media_type);
        assert_eq!(rt.block_on(r.config(&m)).unwrap().architecture, p.arch());
        // and by the index's own digest, as an engine that reports the digest it pushed does
        let by_digest = rt
            .block_on(r.platform_manifest(&index.digest, p))
            .unwrap()
            .unwrap();
        assert_eq!(by_digest.digest, m.digest);
    }
}
