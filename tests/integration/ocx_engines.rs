//! ocx on real engines: podman, dockerd with buildx (BuildKit) and the same dockerd through a
//! docker CLI without the plugin (the classic builder), with the real opencode binary from npm.
//! Needs `scripts/test-engines.sh up`.

use crate::util::real::real_env;
use crate::util::{manifest_arches, need, Need, TestEnv};
use std::os::unix::fs::MetadataExt;

const OPENCODE: &str = "1.18.18";

/// A project whose base already has a UID-1000 user (like ubuntu:24.04's `ubuntu`) owning GID
/// 1000, and whose default user is not root; ocx is asked for user `dev` with 1000:1000.
fn colliding_project(engine: &str) -> TestEnv {
    let env = real_env();
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

/// The program a lane runs: podman, the machine's docker (with buildx), or the same docker
/// without its plugin.
fn lane_program(env: &TestEnv, lane: &str) -> (&'static str, String) {
    match lane {
        "podman" => ("podman", "/usr/bin/podman".into()),
        "docker" => (
            "docker",
            which::which("docker").unwrap().display().to_string(),
        ),
        "docker-classic" => ("docker", env.classic_docker_cli()),
        other => panic!("no lane {other}"),
    }
}

fn e2e(lane: &str) {
    let env = colliding_project(lane);
    let (engine, real) = lane_program(&env, lane);
    env.recording(engine, &real);
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
        &format!("ocx-ocx-e2e-{lane}-dev:{OPENCODE}"),
        1000,
        1000,
        Some("dev"),
    );
    let shared = format!("ocx-ocx-e2e-{lane}-dev:{OPENCODE}");
    assert!(
        out.stderr
            .contains(&format!("built {image} (also tagged {shared})")),
        "{}",
        out.stderr
    );
    // BuildKit copies the binary with --link; buildah and the classic builder have no --link
    assert_eq!(
        out.stderr.contains("COPY --link --from=opencode"),
        lane == "docker",
        "{}",
        out.stderr
    );
    if lane == "docker-classic" {
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

    // second build: one engine process, one inspect naming base and final image (whose label
    // says which opencode binary it holds), no build
    env.clear_log();
    let out = env.ocx(&["--backend", engine, "build"]).status(0).run();
    let base = format!("ocx-e2e/{lane}-dev");
    assert_eq!(
        env.log(),
        [vec![
            engine.to_string(),
            "image".into(),
            "inspect".into(),
            base,
            image.clone()
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
#[ignore = "needs podman: scripts/test-engines.sh up, then make test"]
fn podman_builds_real_opencode_for_a_colliding_uid() {
    need(&[Need::Podman]);
    e2e("podman");
}

#[test]
#[ignore = "needs docker: scripts/test-engines.sh up, then make test"]
fn docker_buildx_builds_real_opencode_for_a_colliding_uid() {
    need(&[Need::Docker]);
    e2e("docker");
}

#[test]
#[ignore = "needs docker-classic: scripts/test-engines.sh up, then make test"]
fn docker_classic_builds_real_opencode_for_a_colliding_uid() {
    need(&[Need::DockerClassic]);
    e2e("docker-classic");
}

/// The opencode binary's layer after an edit of the base that touches the directory the binary
/// goes into: BuildKit's `COPY --link` keeps the very layer (same digest), where a plain COPY,
/// as buildah does it, is made again on the new base (another digest).
fn layer_after_a_base_edit(lane: &str) -> (String, String) {
    let env = real_env();
    let dockerfile =
        |n: u32| format!("FROM local/debian:bookworm\nRUN echo {n} >/usr/local/bin/edit-marker\n");
    env.write("project/Dockerfile", &dockerfile(1));
    env.write(
        "project/ocx.json",
        &format!(
            r#"{{"custom_base_image": "ocx-e2e/{lane}-link", "custom_base_dockerfile": "Dockerfile",
                "opencode_version": "{OPENCODE}", "opencode_source": "npm", "uid": 1000, "gid": 1000, "backend": "{lane}"}}"#
        ),
    );
    let image = crate::util::ocx_tag(
        &format!("ocx-ocx-e2e-{lane}-link:{OPENCODE}"),
        1000,
        1000,
        None,
    );
    // the binary's layer is the first one after the base's
    let binary_layer = || {
        let layers = |image: &str| -> Vec<String> {
            let out = crate::util::engine_stdout(
                lane,
                &[
                    "image",
                    "inspect",
                    "--format",
                    "{{json .RootFS.Layers}}",
                    image,
                ],
            );
            serde_json::from_str(&out).unwrap()
        };
        let base = layers(&format!("ocx-e2e/{lane}-link"));
        layers(&image)[base.len()].clone()
    };
    env.ocx(&["build", "--rebuild-base"]).status(0).run();
    let before = binary_layer();
    env.write("project/Dockerfile", &dockerfile(2));
    env.ocx(&["--progress", "plain", "build"])
        .status(0)
        .stderr_has("changed since")
        .stderr_has(format!("built {image}"))
        .run();
    (before, binary_layer())
}

#[test]
#[ignore = "needs docker: scripts/test-engines.sh up, then make test"]
fn docker_buildx_keeps_the_opencode_layer_across_a_base_edit() {
    need(&[Need::Docker]);
    let (before, after) = layer_after_a_base_edit("docker");
    assert_eq!(before, after, "COPY --link keeps the binary's layer");
}

#[test]
#[ignore = "needs podman: scripts/test-engines.sh up, then make test"]
fn podman_copies_the_opencode_layer_again_after_a_base_edit() {
    need(&[Need::Podman]);
    let (before, after) = layer_after_a_base_edit("podman");
    assert_ne!(before, after, "without --link the layer is made again");
}

/// One `ocx build` for amd64 and arm64: podman makes a manifest list of per-platform builds,
/// buildx one build for both, kept as one local image on the containerd image store.
fn multi_arch(engine: &str) {
    let env = real_env();
    env.write(
        "project/Dockerfile.base",
        "ARG TARGETARCH=${TARGETARCH}\nFROM local/debian:bookworm-${TARGETARCH}\n",
    );
    env.write(
        "project/ocx.json",
        &format!(
            r#"{{"custom_base_image": "ocx-e2e/{engine}-multi", "custom_base_dockerfile": "Dockerfile.base", "opencode_version": "{OPENCODE}",
                "opencode_source": "npm", "uid": 1001, "gid": 1001, "username": "dev", "platforms": ["linux/amd64", "linux/arm64"]}}"#
        ),
    );
    env.ocx(&["--backend", engine, "build", "--rebuild-base", "--force"])
        .status(0)
        .run();
    let image = crate::util::ocx_tag(
        &format!("ocx-ocx-e2e-{engine}-multi:{OPENCODE}"),
        1001,
        1001,
        Some("dev"),
    );
    if engine == "podman" {
        assert_eq!(manifest_arches(&image), ["amd64", "arm64"]);
    }
    // each platform's opencode is an ELF of its machine (e_machine 62 x86-64, 183 aarch64)
    // that ran in the build (arm64 under qemu), and its user was made
    for (platform, machine, elf) in [
        ("linux/amd64", "x86_64", "62 0"),
        ("linux/arm64", "aarch64", "183 0"),
    ] {
        let out = std::process::Command::new(engine)
            .args([
                "run",
                "--rm",
                "--platform",
                platform,
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
            [machine, elf, "uid=1001(dev) gid=1001(dev) groups=1001(dev)"],
            "{platform}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
#[ignore = "needs podman: scripts/test-engines.sh up, then make test"]
fn podman_multi_arch_manifest_has_both_arches() {
    need(&[Need::Podman]);
    multi_arch("podman");
}

#[test]
#[ignore = "needs docker: scripts/test-engines.sh up, then make test"]
fn docker_buildx_multi_arch_image_has_both_arches() {
    need(&[Need::Docker]);
    multi_arch("docker");
}

/// Real dockerd without buildx: a build of several platforms, which the classic builder cannot
/// do, is refused before the opencode download (the release source is a counting server) and
/// before any build.
#[test]
#[ignore = "needs docker-classic: scripts/test-engines.sh up, then make test"]
fn docker_classic_refuses_several_platforms_before_any_download() {
    need(&[Need::DockerClassic]);
    let (port, hits) = crate::util::counting_server();
    let mut env = TestEnv::new();
    env.with_system_path();
    env.set("OCX_GITHUB_API_URL", format!("http://127.0.0.1:{port}"));
    env.write(
        "project/ocx.json",
        r#"{"custom_base_image": "local/debian:bookworm", "opencode_version": "1.2.3", "backend": "docker",
            "platforms": ["linux/amd64", "linux/arm64"]}"#,
    );
    let real = env.classic_docker_cli();
    env.recording("docker", &real);
    crate::util::refused_before_the_download(&env, &hits);
}
