//! hjk images build on real engines, with the fixture hierarchy in tests/fixtures/hierarchy
//! (FROM local/debian:bookworm-<arch>; systemd in the middle, docker.io on top, from the mirror).

use crate::util::argv::Argv;
use crate::util::{
    copy_fixture_dir, index_arches, manifest_arches, need, succeeds, summary_rows, Need, TestEnv,
};

/// The hierarchy fixture (tests/fixtures/hierarchy), copied into the test's directory.
fn copy_fixture(env: &TestEnv) -> String {
    copy_fixture_dir(env, "hierarchy", "images")
}

fn inspect(engine: &str, image: &str) -> serde_json::Value {
    let out = succeeds(std::process::Command::new(engine).args(["image", "inspect", image]));
    serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()[0].clone()
}

fn layers(engine: &str, image: &str) -> Vec<String> {
    inspect(engine, image)["RootFS"]["Layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_str().unwrap().to_string())
        .collect()
}

fn assert_chained(engine: &str, parent: &str, child: &str) {
    let (p, c) = (layers(engine, parent), layers(engine, child));
    assert!(
        c.len() > p.len() && c[..p.len()] == p[..],
        "{child} does not build on {parent}: {p:?} vs {c:?}"
    );
}

/// `hjk images build` of the fixture's `top` (in `images`) for amd64 and arm64 into `reg` on
/// `backend`, with plain progress.
fn both_arches_of_top<'a>(images: &'a str, reg: &'a str, backend: &'a str) -> Vec<&'a str> {
    vec![
        "images",
        "build",
        "--variant",
        "top",
        "--platform",
        "linux/amd64,linux/arm64",
        "--images-dir",
        images,
        "--registry",
        reg,
        "--backend",
        backend,
        "--progress",
        "plain",
    ]
}

/// `hjk ARGS` again: it succeeds and every row of its summary is up to date.
fn all_up_to_date(env: &TestEnv, args: &[&str]) {
    let out = env.hjk(args).status(0).run();
    assert!(
        summary_rows(&out.stdout)
            .iter()
            .all(|r| r.2 == "up-to-date"),
        "{}",
        out.stdout
    );
}

#[test]
#[ignore = "needs podman: scripts/test-engines.sh up, then make test"]
fn podman_builds_the_hierarchy_for_amd64_and_arm64() {
    need(&[Need::Podman]);
    let mut env = TestEnv::new();
    env.with_system_path();
    env.recording("podman", "/usr/bin/podman");
    let images = copy_fixture(&env);
    let reg = "localhost/hjk-e2e/podman";
    let args = both_arches_of_top(&images, reg, "podman");
    let out = env.hjk(&args).status(0).run();
    let got = summary_rows(&out.stdout);
    assert_eq!(got.len(), 6, "{}", out.stdout);
    assert!(
        got.iter().all(|r| r.2 == "built" || r.2 == "up-to-date"),
        "{}",
        out.stdout
    );

    assert_eq!(manifest_arches(&format!("{reg}:top")), ["amd64", "arm64"]);
    for arch in ["amd64", "arm64"] {
        assert_chained(
            "podman",
            &format!("{reg}:base-{arch}"),
            &format!("{reg}:middle-{arch}"),
        );
        assert_chained(
            "podman",
            &format!("{reg}:middle-{arch}"),
            &format!("{reg}:top-{arch}"),
        );
        assert_eq!(
            inspect("podman", &format!("{reg}:top-{arch}"))["Architecture"],
            arch
        );
    }

    // a second build rebuilds nothing: one engine call, an inspect of every node and list
    env.clear_log();
    all_up_to_date(&env, &args);
    let log = env.log();
    assert_eq!(log.len(), 1, "{log:?}");
    assert!(log[0].is(&["image", "inspect"]), "{log:?}");
    // (the fixture's root base depends on TARGETARCH, so it is not a fixed reference to inspect)
    assert_eq!(log[0].len(), 3 + 6 + 3, "6 nodes and 3 lists: {log:?}");

    // changing only the top Dockerfile rebuilds only top
    let top = format!("{images}/top/Dockerfile");
    let mut text = std::fs::read_to_string(&top).unwrap();
    text.push_str("LABEL io.example.changed=1\n");
    std::fs::write(&top, text).unwrap();
    let out = env.hjk(&args).status(0).run();
    let got = summary_rows(&out.stdout);
    let built: Vec<&str> = got
        .iter()
        .filter(|r| r.2 == "built")
        .map(|r| r.0.as_str())
        .collect();
    assert_eq!(built, ["top", "top"], "{}", out.stdout);

    // --push to the local registry: the pushed top is a two-arch list, tagged with the version
    let pushed = "127.0.0.1:5000/hjk-e2e/podman";
    let mut args = both_arches_of_top(&images, pushed, "podman");
    args.extend(["--version", "v0.2.0", "--push"]);
    env.hjk(&args).status(0).run();
    for tag in ["top", "top-v0.2.0", "base"] {
        let raw = succeeds(std::process::Command::new("skopeo").args([
            "inspect",
            "--raw",
            "--tls-verify=false",
            &format!("docker://{pushed}:{tag}"),
        ]));
        assert_eq!(index_arches(&raw.stdout), ["amd64", "arm64"], "{tag}");
    }
}

/// `hjk images build --platform linux/amd64,linux/arm64` on BuildKit with the containerd image
/// store: one `buildx build` per variant for both platforms, each child FROM its parent's
/// local two-platform image, and a no-op that is one inspect.
#[test]
#[ignore = "needs docker: scripts/test-engines.sh up, then make test"]
fn docker_buildx_builds_the_hierarchy_for_amd64_and_arm64_in_one_build_per_variant() {
    need(&[Need::Docker]);
    let mut env = TestEnv::new();
    env.with_system_path();
    env.recording(
        "docker",
        &which::which("docker").unwrap().display().to_string(),
    );
    let images = copy_fixture(&env);
    let reg = "hjk-e2e/buildx-multi";
    let mut args = both_arches_of_top(&images, reg, "docker");
    // everything built this time (a run before this one may have left the tags behind)
    args.push("--no-cache");
    let out = env.hjk(&args).status(0).run();
    args.pop();
    let got = summary_rows(&out.stdout);
    assert_eq!(
        got.iter()
            .map(|r| (r.0.as_str(), r.1.as_str()))
            .collect::<Vec<_>>(),
        [
            ("base", "linux/amd64,linux/arm64"),
            ("middle", "linux/amd64,linux/arm64"),
            ("top", "linux/amd64,linux/arm64")
        ],
        "{}",
        out.stdout
    );
    let builds: Vec<Vec<String>> = env
        .log()
        .into_iter()
        .filter(|a| a.is(&["buildx", "build"]))
        .collect();
    assert_eq!(builds.len(), 3, "{builds:?}");
    for (b, parent) in builds.iter().zip([None, Some("base"), Some("middle")]) {
        assert!(b.has_flag("--platform", "linux/amd64,linux/arm64"), "{b:?}");
        if let Some(p) = parent {
            let from = format!("BASE_IMAGE={reg}:{p}");
            assert!(b.contains(&from), "{from} in {b:?}");
        }
    }
    // each platform of the top image is that platform's, with the whole chain in it
    for (platform, machine) in [("linux/amd64", "x86_64"), ("linux/arm64", "aarch64")] {
        let out = std::process::Command::new("docker")
            .args([
                "run",
                "--rm",
                "--platform",
                platform,
                &format!("{reg}:top"),
                "sh",
                "-c",
                "uname -m; cat /etc/hjk-variant; command -v systemctl; command -v dockerd",
            ])
            .output()
            .unwrap();
        assert_eq!(
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .collect::<Vec<_>>(),
            [machine, "top", "/usr/bin/systemctl", "/usr/sbin/dockerd"],
            "{platform}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    env.clear_log();
    all_up_to_date(&env, &args);
    let log = env.log();
    assert_eq!(log.len(), 1, "one inspect: {log:?}");
    assert_eq!(log[0].len(), 3 + 3, "3 nodes: {log:?}");
}

#[test]
#[ignore = "needs docker: scripts/test-engines.sh up, then make test"]
fn docker_buildx_builds_the_hierarchy_chained() {
    need(&[Need::Docker]);
    docker_hierarchy_chained("docker");
}

#[test]
#[ignore = "needs docker-classic: scripts/test-engines.sh up, then make test"]
fn docker_classic_builds_the_hierarchy_chained() {
    need(&[Need::DockerClassic]);
    docker_hierarchy_chained("docker-classic");
}

/// One platform, three variants on real dockerd, through buildx (BuildKit) or, for the
/// `docker-classic` lane, a docker CLI without the plugin.
fn docker_hierarchy_chained(lane: &str) {
    let mut env = TestEnv::new();
    env.with_system_path();
    if lane == "docker-classic" {
        env.classic_docker();
    }
    let images = copy_fixture(&env);
    let reg = format!("hjk-e2e/{lane}");
    let reg = reg.as_str();
    let args = [
        "images",
        "build",
        "--all",
        "--images-dir",
        &images,
        "--registry",
        reg,
        "--backend",
        "docker",
        "--version",
        "v0.1.0",
    ];
    let out = env.hjk(&args).status(0).run();
    assert_eq!(
        summary_rows(&out.stdout)
            .iter()
            .map(|r| r.0.as_str())
            .collect::<Vec<_>>(),
        ["base", "middle", "top"]
    );
    assert_chained(
        "docker",
        &format!("{reg}:base-v0.1.0"),
        &format!("{reg}:middle-v0.1.0"),
    );
    assert_chained("docker", &format!("{reg}:middle"), &format!("{reg}:top"));
    assert_eq!(
        inspect("docker", &format!("{reg}:top"))["Config"]["Labels"]
            ["org.opencontainers.image.version"],
        "v0.1.0"
    );
    all_up_to_date(&env, &args);

    // a changed parent rebuilds its children too, even though their own files did not change
    let middle = format!("{images}/middle/Dockerfile");
    std::fs::write(
        &middle,
        std::fs::read_to_string(&middle).unwrap() + "LABEL io.example.middle=2\n",
    )
    .unwrap();
    let out = env.hjk(&args).status(0).run();
    let results: Vec<String> = summary_rows(&out.stdout)
        .into_iter()
        .map(|r| format!("{} {}", r.0, r.2))
        .collect();
    assert_eq!(
        results,
        ["base up-to-date", "middle built", "top built"],
        "{}",
        out.stdout
    );
    // the builder's own step lines are shown; the classic builder's without its warning
    // about build args the Dockerfile does not declare (middle and top declare no TARGETARCH)
    let steps = if lane == "docker-classic" {
        "Step 1/"
    } else {
        "[1/2] FROM"
    };
    assert!(
        out.stderr.contains(steps) && !out.stderr.contains("were not consumed"),
        "{}",
        out.stderr
    );
    assert_chained("docker", &format!("{reg}:middle"), &format!("{reg}:top"));

    // list: built and current until the top Dockerfile changes
    let list_args = [
        "images",
        "list",
        "--images-dir",
        &images,
        "--registry",
        reg,
        "--backend",
        "docker",
        "--version",
        "v0.1.0",
        "--json",
    ];
    let current = |env: &TestEnv| -> Vec<(String, Option<String>, bool, bool)> {
        let out = env.hjk(&list_args).status(0).run();
        let v: Vec<serde_json::Value> = serde_json::from_str(&out.stdout).unwrap();
        v.iter()
            .map(|r| {
                (
                    r["variant"].as_str().unwrap().to_string(),
                    r["parent"].as_str().map(String::from),
                    r["built"].as_bool().unwrap(),
                    r["current"].as_bool().unwrap(),
                )
            })
            .collect()
    };
    assert_eq!(
        current(&env),
        [
            ("base".into(), None, true, true),
            ("middle".into(), Some("base".into()), true, true),
            ("top".into(), Some("middle".into()), true, true)
        ]
    );
    std::fs::write(
        format!("{images}/top/Dockerfile"),
        std::fs::read_to_string(format!("{images}/top/Dockerfile")).unwrap() + "LABEL changed=1\n",
    )
    .unwrap();
    assert_eq!(
        current(&env)[2],
        ("top".into(), Some("middle".into()), true, false)
    );
    let mut table_args = list_args.to_vec();
    table_args.pop();
    let out = env.hjk(&table_args).output();
    assert!(
        out.stdout.starts_with("VARIANT      PARENT       TAG"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains(&format!("{reg}:top-v0.1.0")),
        "{}",
        out.stdout
    );
}

/// The images/ Dockerfiles that build without internet here (systemd as it is, dind with
/// Debian's docker.io in place of Docker CE, base's last lines; see `standin`) build with the
/// classic builder too, as they do with buildx and podman in the boot tests.
#[test]
#[ignore = "needs docker-classic: scripts/test-engines.sh up, then make test"]
fn docker_classic_builds_the_images_standin() {
    need(&[Need::DockerClassic]);
    let mut env = TestEnv::new();
    env.with_system_path();
    env.classic_docker();
    let standin = crate::util::standin::StandIn::write(env.root());
    let reg = format!("{}-classic", standin.repo);
    let mut args = standin.argv(&["build", "--variant", "dind"], &reg, "docker");
    args.extend(["--progress", "plain"]);
    let out = env.hjk(&args).status(0).run();
    // built by this lane (the registry name is the stand-in's content hash plus `-classic`),
    // now or by an earlier run: then up to date
    let rows = summary_rows(&out.stdout);
    assert!(
        rows.len() == 3
            && (out.stderr.contains("Step 1/") || rows.iter().all(|r| r.2 == "up-to-date")),
        "{}\n{}",
        out.stdout,
        out.stderr
    );
    for (variant, user) in [("systemd", "developer"), ("dind", "developer")] {
        let labels = &inspect("docker", &format!("{reg}:{variant}"))["Config"]["Labels"];
        assert_eq!(labels["io.headjack.variant"], variant);
        assert_eq!(labels["io.headjack.exec.user"], user);
    }
}

/// `hjk images build --cache-repo` on real BuildKit: the build exports its layer cache to the
/// registry under one tag per variant and platform, and the next build imports it from there
/// (hjk.rs checks the argv against a fake; this is the path for real). Whether an imported
/// cache replaces a missing local one is the release's test
/// (`release::docker_buildx_release_uses_a_registry_cache`): pruning BuildKit's cache here
/// would take it from the tests running beside this one.
#[test]
#[ignore = "needs docker and plain registry: scripts/test-engines.sh up, then make test"]
fn docker_buildx_build_exports_a_registry_cache_per_variant() {
    need(&[Need::Docker, Need::PlainRegistry]);
    let mut env = TestEnv::new();
    env.with_system_path();
    let run = std::process::id();
    let images = crate::util::real::busybox_images(
        &env,
        "FROM local/busybox:amd64\nRUN echo cached > /marker\n",
    );
    let cache = format!("127.0.0.1:5000/hjk-cache-test/c{run}");
    let reg = format!("hjk-cache-test/r{run}");
    let args = [
        "images",
        "build",
        "--all",
        "--images-dir",
        &images,
        "--registry",
        &reg,
        "--platform",
        "linux/amd64",
        "--cache-repo",
        &cache,
        "--backend",
        "docker",
        "--progress",
        "plain",
    ];
    let out = env.hjk(&args).output();
    assert_eq!(out.code, 0, "{}", out.stderr);
    // the cache is a manifest in the registry, under the variant and platform's tag
    succeeds(std::process::Command::new("skopeo").args([
        "inspect",
        "--raw",
        "--tls-verify=false",
        &format!("docker://{cache}:base-amd64"),
    ]));
    // the image was built, and its cache is read back from the registry by the next build
    succeeds(std::process::Command::new("docker").args(["image", "rm", &format!("{reg}:base")]));
    let out = env.hjk(&args).output();
    assert_eq!(out.code, 0, "{}", out.stderr);
    // BuildKit names the import on every build; it infers a manifest type only for one it found
    assert!(
        out.stderr
            .contains(&format!("importing cache manifest from {cache}:base-amd64"))
            && out.stderr.contains("inferred cache manifest type"),
        "{}",
        out.stderr
    );
    succeeds(std::process::Command::new("docker").args(["image", "rm", &format!("{reg}:base")]));
}
