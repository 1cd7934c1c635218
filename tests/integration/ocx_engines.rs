//! ocx on real engines: podman and dockerd (classic builder, since no buildx plugin exists
//! here), with the real opencode binary from npm. Needs `scripts/test-engines.sh up`.

use crate::util::{engine_available, manifest_arches, shared_cache, TestEnv};
use std::os::unix::fs::MetadataExt;

const OPENCODE: &str = "1.18.18";

/// A project whose base already has a UID-1000 user (like ubuntu:24.04's `ubuntu`) owning GID
/// 1000, and whose default user is not root; ocx is asked for user `dev` with 1000:1000.
fn colliding_project(engine: &str) -> TestEnv {
    let mut env = TestEnv::new();
    env.with_system_path();
    env.set("XDG_CACHE_HOME", shared_cache().display().to_string());
    env.write(
        "project/docker/Dockerfile.dev",
        "FROM local/debian:bookworm\nRUN groupadd -g 1000 ubuntu && useradd -m -u 1000 -g 1000 -s /bin/bash ubuntu && echo dotfile >/home/ubuntu/.marker\nUSER ubuntu\n",
    );
    env.write(
        "project/ocx.json",
        &format!(
            r#"{{"custom_base_image": "ocx-e2e/{engine}-dev", "custom_base_dockerfile": "docker/Dockerfile.dev",
                "opencode_version": "{OPENCODE}", "opencode_source": "npm", "uid": 1000, "gid": 1000, "username": "dev"}}"#
        ),
    );
    // the host user in this scenario is 1000, who owns the project
    std::os::unix::fs::chown(env.project(), Some(1000), Some(1000)).unwrap();
    env
}

fn e2e(engine: &str, real: &str) {
    let env = colliding_project(engine);
    env.recording(engine, real);
    let out = env
        .ocx(&[
            "--backend",
            engine,
            "--progress",
            "plain",
            "build",
            "--rebuild-base",
            "--force",
        ])
        .status(0)
        .run();
    let image = crate::util::ocx_tag(
        &format!("ocx-ocx-e2e-{engine}-dev:{OPENCODE}"),
        1000,
        1000,
        Some("dev"),
    );
    let shared = format!("ocx-ocx-e2e-{engine}-dev:{OPENCODE}");
    assert!(
        out.stderr
            .contains(&format!("built {image} (also tagged {shared})")),
        "{}",
        out.stderr
    );
    if engine == "docker" {
        assert!(
            out.stderr
                .contains("warning: docker buildx is not available"),
            "{}",
            out.stderr
        );
        // a docker 23+ client prints its legacy-builder notice on every classic build; the
        // warning above explains it once, and the notice itself is not shown
        assert!(
            !out.stderr.contains("DEPRECATED")
                && !out.stderr.contains("BuildKit is currently disabled"),
            "{}",
            out.stderr
        );
    }

    // second build: one engine process, one inspect naming base and final image, no build
    env.clear_log();
    let out = env.ocx(&["--backend", engine, "build"]).status(0).run();
    let base = format!("ocx-e2e/{engine}-dev");
    assert_eq!(
        env.log(),
        [vec![
            engine.to_string(),
            "image".into(),
            "inspect".into(),
            base,
            format!("ocx-opencode:{OPENCODE}-standard-amd64"),
            format!("ocx-opencode:{OPENCODE}-musl-amd64"),
            image.clone(),
            shared.clone()
        ]]
    );
    // issue 16: the documented name runs the image just built (`docker run ocx-myimg:1.2.3`)
    let ran = crate::util::engine_stdout(
        engine,
        &[
            "run",
            "--rm",
            &shared,
            "/usr/local/bin/opencode",
            "--version",
        ],
    );
    assert_eq!(ran, OPENCODE);
    assert!(
        out.stderr.contains(&format!("{image} is up to date")),
        "{}",
        out.stderr
    );

    let out = env
        .ocx(&["--backend", engine, "opencode", "--version"])
        .output();
    assert_eq!(
        (out.code, out.stdout.trim()),
        (0, OPENCODE),
        "{}",
        out.stderr
    );

    let out = env.ocx(&["--backend", engine, "exec", "--", "sh", "-c", "id -u; id -g; id -un; getent passwd ubuntu || echo no-ubuntu; echo $HOME; cat $HOME/.marker; getent passwd dev | cut -d: -f7; touch written-in-container; exit 7"]).output();
    assert_eq!(out.code, 7, "exit code passes through: {}", out.stderr);
    // username dev wins: the base's `ubuntu` (uid 1000) was renamed, not duplicated, its
    // home moved with it, and its shell stayed
    assert_eq!(
        out.stdout.lines().collect::<Vec<_>>(),
        [
            "1000",
            "1000",
            "dev",
            "no-ubuntu",
            "/home/dev",
            "dotfile",
            "/bin/bash"
        ]
    );
    let meta = std::fs::metadata(env.project().join("written-in-container")).unwrap();
    assert_eq!((meta.uid(), meta.gid()), (1000, 1000));
}

#[test]
fn podman_builds_real_opencode_for_a_colliding_uid() {
    if engine_available("podman") {
        e2e("podman", "/usr/bin/podman");
    }
}

#[test]
fn docker_classic_builds_real_opencode_for_a_colliding_uid() {
    if engine_available("docker") {
        let real = which::which("docker").unwrap();
        e2e("docker", real.to_str().unwrap());
    }
}

#[test]
fn podman_multi_arch_manifest_has_both_arches() {
    if !engine_available("podman") {
        return;
    }
    let mut env = TestEnv::new();
    env.with_system_path();
    env.set("XDG_CACHE_HOME", shared_cache().display().to_string());
    env.write(
        "project/Dockerfile.base",
        "ARG TARGETARCH\nFROM local/debian:bookworm-${TARGETARCH}\n",
    );
    env.write(
        "project/ocx.json",
        &format!(
            r#"{{"custom_base_image": "ocx-e2e/debian-multi", "custom_base_dockerfile": "Dockerfile.base", "opencode_version": "{OPENCODE}",
                "opencode_source": "npm", "uid": 1001, "gid": 1001, "username": "dev", "platforms": ["linux/amd64", "linux/arm64"]}}"#
        ),
    );
    env.ocx(&["--backend", "podman", "build", "--rebuild-base", "--force"])
        .status(0)
        .run();
    let image = crate::util::ocx_tag(
        &format!("ocx-ocx-e2e-debian-multi:{OPENCODE}"),
        1001,
        1001,
        Some("dev"),
    );
    assert_eq!(manifest_arches(&image), ["amd64", "arm64"]);
    // the arm64 image's opencode is an aarch64 ELF (e_machine 183) that ran in the build
    // (under qemu), and its user was made
    let out = std::process::Command::new("podman")
        .args([
            "run",
            "--rm",
            "--platform",
            "linux/arm64",
            &image,
            "sh",
            "-c",
            "uname -m; od -An -tu1 -j18 -N2 /usr/local/bin/opencode; id",
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<String> = stdout
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect();
    assert_eq!(
        lines,
        [
            "aarch64",
            "183 0",
            "uid=1001(dev) gid=1001(dev) groups=1001(dev)"
        ],
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Real dockerd without buildx: a build of several platforms, which the classic builder cannot
/// do, is refused before the opencode download (the release source is a counting server) and
/// before any build.
#[test]
fn docker_classic_refuses_several_platforms_before_any_download() {
    if !engine_available("docker") {
        return;
    }
    let (port, hits) = crate::ocx_input::counting_server();
    let mut env = TestEnv::new();
    env.with_system_path();
    env.set("OCX_GITHUB_API_URL", format!("http://127.0.0.1:{port}"));
    env.write(
        "project/ocx.json",
        r#"{"custom_base_image": "local/debian:bookworm", "opencode_version": "1.2.3", "backend": "docker",
            "platforms": ["linux/amd64", "linux/arm64"]}"#,
    );
    let real = which::which("docker").unwrap();
    env.recording("docker", real.to_str().unwrap());
    crate::ocx_input::refused_before_the_download(&env, &hits);
}
