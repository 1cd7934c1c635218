//! `hjk images resolve` on devcontainer layouts shaped like real public ones
//! (tests/fixtures/devcontainers/<layout>): a table of `resolve --json` results, then real
//! `--build`s on docker and podman, and the delegation of features to the real Dev Containers
//! CLI (`@devcontainers/cli`, installed by scripts/test-engines.sh) with a local feature.

use crate::util::argv::Argv;
use crate::util::{copy_dir, fixtures, need, Need, TestEnv};
use serde_json::{json, Value};

/// A test env whose project is a copy of the fixture layout.
fn layout(name: &str) -> TestEnv {
    let env = TestEnv::new();
    copy_dir(&fixtures().join("devcontainers").join(name), &env.project());
    env
}

fn project_root(env: &TestEnv) -> String {
    env.project().canonicalize().unwrap().display().to_string()
}

/// Runs `hjk images resolve ARGS` and returns (code, stdout with the project as [PROJECT],
/// stderr with it too).
fn run(env: &TestEnv, args: &[&str]) -> (i32, String, String) {
    let mut all = vec!["images", "resolve"];
    all.extend_from_slice(args);
    let out = env.hjk(&all).output();
    let root = project_root(env);
    (
        out.code,
        out.stdout.replace(&root, "[PROJECT]"),
        out.stderr.replace(&root, "[PROJECT]"),
    )
}

/// A fake `devcontainer` on PATH: resolution only checks that it is there.
fn with_fake_cli(env: &TestEnv) {
    env.write_exe("devcontainer", "#!/bin/sh\nexit 0\n");
}

struct Case {
    layout: &'static str,
    args: &'static [&'static str],
    env: &'static [(&'static str, &'static str)],
    cli: bool,
    want: Value,
}

#[test]
fn resolve_json_for_real_world_layouts() {
    let cases = [
        Case {
            layout: "subfolder-one",
            args: &[],
            env: &[],
            cli: false,
            want: json!({"kind": "devcontainer", "file": "[PROJECT]/.devcontainer/python/devcontainer.json",
                "reference": "mcr.microsoft.com/devcontainers/python:1-3.12-bullseye"}),
        },
        Case {
            layout: "subfolder-several",
            args: &["--config", ".devcontainer/go/devcontainer.json"],
            env: &[],
            cli: false,
            want: json!({"kind": "devcontainer", "file": "[PROJECT]/.devcontainer/go/devcontainer.json",
                "dockerfile": "[PROJECT]/.devcontainer/go/Dockerfile", "context": "[PROJECT]/.devcontainer/go",
                "build_args": {"GO_VERSION": "1.22"}}),
        },
        Case {
            layout: "claude-code",
            args: &[],
            env: &[],
            cli: false,
            want: json!({"kind": "devcontainer", "file": "[PROJECT]/.devcontainer/devcontainer.json",
                "dockerfile": "[PROJECT]/.devcontainer/Dockerfile", "context": "[PROJECT]/.devcontainer",
                "build_args": {"TZ": "America/Los_Angeles", "CLAUDE_CODE_VERSION": "latest",
                    "GIT_DELTA_VERSION": "0.18.2", "ZSH_IN_DOCKER_VERSION": "1.2.0"}}),
        },
        Case {
            layout: "claude-code",
            args: &[],
            env: &[("TZ", "Europe/Berlin")],
            cli: false,
            // a value from the environment may be a secret: shown by its origin only
            want: json!({"kind": "devcontainer", "file": "[PROJECT]/.devcontainer/devcontainer.json",
                "dockerfile": "[PROJECT]/.devcontainer/Dockerfile", "context": "[PROJECT]/.devcontainer",
                "build_args": {"TZ": "<from localEnv:TZ>", "CLAUDE_CODE_VERSION": "latest",
                    "GIT_DELTA_VERSION": "0.18.2", "ZSH_IN_DOCKER_VERSION": "1.2.0"}}),
        },
        Case {
            layout: "image-env",
            args: &[],
            env: &[],
            cli: false,
            want: json!({"kind": "devcontainer", "file": "[PROJECT]/.devcontainer.json",
                "reference": "mcr.microsoft.com/devcontainers/base:bookworm"}),
        },
        Case {
            layout: "image-env",
            args: &[],
            env: &[("DEV_IMAGE", "ghcr.io/acme/dev:2")],
            cli: false,
            want: json!({"kind": "devcontainer", "file": "[PROJECT]/.devcontainer.json",
                "reference": "ghcr.io/acme/dev:2"}),
        },
        Case {
            layout: "target-numeric",
            args: &[],
            env: &[],
            cli: false,
            want: json!({"kind": "devcontainer", "file": "[PROJECT]/.devcontainer/devcontainer.json",
                "dockerfile": "[PROJECT]/.devcontainer/Dockerfile", "context": "[PROJECT]/.devcontainer",
                "target": "dev",
                "build_args": {"NODE_VERSION": "18", "INSTALL_ZSH": "true", "UPGRADE_PACKAGES": "false",
                    "TZ": "America/Los_Angeles"}}),
        },
        Case {
            layout: "features",
            args: &[],
            env: &[],
            cli: true,
            want: json!({"kind": "devcontainer", "file": "[PROJECT]/.devcontainer/devcontainer.json",
                "reference": "mcr.microsoft.com/devcontainers/base:ubuntu",
                "features": ["./my-feature", "ghcr.io/devcontainers/features/node:1"],
                "built_by": "devcontainer build"}),
        },
        Case {
            layout: "compose",
            args: &[],
            env: &[],
            cli: true,
            want: json!({"kind": "devcontainer", "file": "[PROJECT]/.devcontainer/devcontainer.json",
                "compose_files": ["[PROJECT]/docker-compose.yml", "[PROJECT]/.devcontainer/docker-compose.extend.yml"],
                "service": "app", "built_by": "devcontainer build"}),
        },
        Case {
            layout: "legacy-dockerfile",
            args: &[],
            env: &[],
            cli: false,
            want: json!({"kind": "devcontainer", "file": "[PROJECT]/.devcontainer/devcontainer.json",
                "dockerfile": "[PROJECT]/Dockerfile", "context": "[PROJECT]"}),
        },
        Case {
            // no context: the Dockerfile's directory, as the reference CLI does
            layout: "legacy-no-context",
            args: &[],
            env: &[],
            cli: false,
            want: json!({"kind": "devcontainer", "file": "[PROJECT]/.devcontainer/devcontainer.json",
                "dockerfile": "[PROJECT]/docker/Dockerfile", "context": "[PROJECT]/docker"}),
        },
        Case {
            layout: "image-only",
            args: &[],
            env: &[],
            cli: false,
            want: json!({"kind": "devcontainer", "file": "[PROJECT]/.devcontainer.json",
                "reference": "mcr.microsoft.com/devcontainers/base:ubuntu"}),
        },
        Case {
            layout: "context-dotdot",
            args: &[],
            env: &[],
            cli: false,
            want: json!({"kind": "devcontainer", "file": "[PROJECT]/.devcontainer/devcontainer.json",
                "dockerfile": "[PROJECT]/.devcontainer/Dockerfile", "context": "[PROJECT]"}),
        },
    ];
    for c in cases {
        let mut env = layout(c.layout);
        for (k, v) in c.env {
            env.set(k, *v);
        }
        if c.cli {
            with_fake_cli(&env);
        }
        let mut args = vec!["--json"];
        args.extend_from_slice(c.args);
        let (code, stdout, stderr) = run(&env, &args);
        assert_eq!(code, 0, "{} {:?}: {stderr}", c.layout, c.args);
        let got: Value = serde_json::from_str(&stdout).unwrap();
        assert_eq!(got, c.want, "{} {:?} {:?}", c.layout, c.args, c.env);
    }
}

#[test]
fn several_subfolder_configs_are_listed() {
    let env = layout("subfolder-several");
    env.hjk(&["images", "resolve"])
        .bad_input()
        .stderr_has("2 devcontainer configs found: .devcontainer/go/devcontainer.json, .devcontainer/node/devcontainer.json; pick one with --config PATH")
        .run();
    env.hjk(&[
        "images",
        "resolve",
        "--config",
        ".devcontainer/node/devcontainer.json",
    ])
    .stdout_has("devcontainer mcr.microsoft.com/devcontainers/javascript-node:1-20-bullseye")
    .run();
    env.hjk(&[
        "images",
        "resolve",
        "--config",
        ".devcontainer/rust/devcontainer.json",
    ])
    .bad_input()
    .stderr_has("--config .devcontainer/rust/devcontainer.json: no such file")
    .run();
}

#[test]
fn features_and_compose_without_the_cli_name_what_and_the_fix() {
    for (name, what) in [
        (
            "features",
            "uses features (./my-feature, ghcr.io/devcontainers/features/node:1), which hjk does not build itself",
        ),
        (
            "compose",
            "uses dockerComposeFile (docker-compose.yml, docker-compose.extend.yml), which hjk does not build itself",
        ),
    ] {
        let env = layout(name);
        env.hjk(&["images", "resolve"])
            .bad_input()
            .stderr_has(what)
            .stderr_has("npm install -g @devcontainers/cli")
            .run();
    }
}

#[test]
fn image_paths_are_paths_and_references_stay_references() {
    let env = TestEnv::new();
    for f in [
        "Dockerfile.dev",
        "Containerfile.fedora",
        "build/Dockerfile.alpine",
        "dev.dockerfile",
        "tools.Containerfile",
        "ubuntu",
    ] {
        env.write(&format!("project/{f}"), "FROM scratch\n");
    }
    let root = project_root(&env);
    for (arg, want) in [
        (
            "Dockerfile.dev",
            format!("dockerfile {root}/Dockerfile.dev"),
        ),
        (
            "Containerfile.fedora",
            format!("dockerfile {root}/Containerfile.fedora"),
        ),
        (
            "build/Dockerfile.alpine",
            format!("dockerfile {root}/build/Dockerfile.alpine"),
        ),
        (
            "dev.dockerfile",
            format!("dockerfile {root}/dev.dockerfile"),
        ),
        (
            "tools.Containerfile",
            format!("dockerfile {root}/tools.Containerfile"),
        ),
        // an existing file is a path, whatever its name
        ("ubuntu", format!("dockerfile {root}/ubuntu")),
        (
            "debian:12",
            "registry docker.io/library/debian:12".to_string(),
        ),
        // a reference that merely contains the word, with a tag
        (
            "acme/dockerfile-lint:1",
            "registry docker.io/acme/dockerfile-lint:1".to_string(),
        ),
    ] {
        env.hjk(&["images", "resolve", "--image", arg])
            .stdout_has(format!("{want}\n"))
            .run();
    }
    for (arg, err) in [
        (
            "other.dockerfile",
            "--image other.dockerfile: no such Dockerfile",
        ),
        (
            "DOCKERFILE.prod",
            "--image DOCKERFILE.prod: no such Dockerfile",
        ),
        ("./missing", "--image ./missing: no such Dockerfile"),
        (
            "Containerfile.arch",
            "--image Containerfile.arch: no such Dockerfile",
        ),
        (
            "ci/build.CONTAINERFILE",
            "--image ci/build.CONTAINERFILE: no such Dockerfile",
        ),
        (
            "dev.containerfile",
            "--image dev.containerfile: no such Dockerfile",
        ),
    ] {
        env.hjk(&["images", "resolve", "--image", arg])
            .bad_input()
            .stderr_has(err)
            .run();
    }
}

#[test]
fn resolve_help_points_at_no_missing_command() {
    let env = TestEnv::new();
    let out = env.hjk(&["images", "resolve", "--help"]).run();
    assert!(!out.stdout.contains("hjk run"), "{}", out.stdout);
    for flag in ["--config", "--build", "--backend", "--image", "--json"] {
        assert!(out.stdout.contains(flag), "{flag}: {}", out.stdout);
    }
}

fn rmi(engine: &str, image: &str) {
    let _ = std::process::Command::new(engine)
        .args(["image", "rm", "--force", image])
        .output();
}

fn run_in(engine: &str, image: &str, cmd: &str) -> String {
    crate::util::engine_stdout(engine, &["run", "--rm", image, "sh", "-c", cmd])
}

/// `resolve --build` again, unchanged: it prints `image`, says it is up to date, and its only
/// engine call is one `image inspect`.
fn no_op_is_one_inspect(env: &TestEnv, engine: &str, image: &str) {
    env.clear_log();
    let (code, stdout, stderr) = run(env, &["--build", "--backend", engine]);
    assert_eq!(
        (code, stdout.as_str()),
        (0, format!("{image}\n").as_str()),
        "{stderr}"
    );
    assert!(stderr.contains("is up to date"), "{stderr}");
    let calls = env.log();
    assert_eq!(calls.len(), 1, "a no-op is one engine call: {calls:?}");
    assert!(calls[0].is(&["image", "inspect"]), "{calls:?}");
}

/// What the engine lists of the tests' project repository, for the message of a failed check
/// that the older build was removed (it failed once under a loaded CI run on docker's
/// containerd store, and never alone).
fn project_images(engine: &str) -> String {
    let out = std::process::Command::new(engine)
        .args([
            "image",
            "ls",
            "--format",
            "{{.Repository}}:{{.Tag}}",
            "hjk-project",
        ])
        .output()
        .unwrap();
    format!(
        "{engine} image ls hjk-project: {}",
        String::from_utf8_lossy(&out.stdout)
    )
}

fn image_exists(engine: &str, image: &str) -> bool {
    std::process::Command::new(engine)
        .args(["image", "inspect", image])
        .output()
        .unwrap()
        .status
        .success()
}

/// `resolve --build` on a devcontainer with a target, numeric args and `${localEnv:...}`: it
/// builds through the engine; the second run is one `image inspect` and says up-to-date; an
/// edit rebuilds and removes the older image; rewriting the same bytes, or a file the
/// Dockerfile does not COPY, changes nothing. The arg whose value comes from the environment
/// (it may be a secret) reaches the build by name only: never argv, the log or `--json`.
fn build_target_numeric(engine: &str) {
    let mut env = layout("target-numeric");
    env.with_system_path();
    let secret = format!("Secret/Zone-{}", std::process::id());
    env.set("TZ", &secret);
    env.recording(engine, &format!("/usr/bin/{engine}"));
    let (code, stdout, stderr) = run(&env, &["--build", "--json", "--backend", engine]);
    assert_eq!(code, 0, "{stderr}");
    let v: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(v["outcome"], "built", "{v}");
    assert_eq!(v["build_args"]["TZ"], "<from localEnv:TZ>", "{v}");
    let image = v["image"].as_str().unwrap().to_string();
    assert!(image.starts_with("hjk-project:devcontainer-"), "{image}");
    assert_eq!(
        run_in(engine, &image, "cat /tz /dev-args"),
        format!("{secret}\n18 true")
    );
    let build = env
        .log()
        .into_iter()
        .find(|a| a.iter().any(|x| x == "build"))
        .unwrap();
    assert!(build.has_flag("--build-arg", "TZ"), "{build:?}");
    let all = std::fs::read_to_string(env.root().join("fake/log")).unwrap();
    for (what, text) in [("argv", &all), ("stdout", &stdout), ("stderr", &stderr)] {
        assert!(!text.contains(&secret), "the value is in {what}: {text}");
    }
    no_op_is_one_inspect(&env, engine, &image);
    // the same bytes rewritten (a checkout), and a file the Dockerfile never copies
    let dockerfile = env.project().join(".devcontainer/Dockerfile");
    std::fs::write(&dockerfile, std::fs::read(&dockerfile).unwrap()).unwrap();
    // a later mtime than the build saw, without waiting for the clock to move
    let later = std::fs::metadata(&dockerfile).unwrap().modified().unwrap()
        + std::time::Duration::from_secs(2);
    std::fs::File::options()
        .write(true)
        .open(&dockerfile)
        .unwrap()
        .set_modified(later)
        .unwrap();
    env.write("project/.devcontainer/notes.txt", "not copied\n");
    let (code, stdout, stderr) = run(&env, &["--build", "--backend", engine]);
    assert_eq!((code, stdout.trim()), (0, image.as_str()), "{stderr}");
    assert!(stderr.contains("is up to date"), "{stderr}");
    env.write(
        "project/.devcontainer/Dockerfile",
        &std::fs::read_to_string(&dockerfile)
            .unwrap()
            .replace("/dev-args", "/dev-args2"),
    );
    let (code, stdout, stderr) = run(&env, &["--build", "--json", "--backend", engine]);
    assert_eq!(code, 0, "{stderr}");
    let v: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(v["outcome"], "built", "{v}");
    let edited = v["image"].as_str().unwrap().to_string();
    assert_ne!(edited, image);
    assert_eq!(run_in(engine, &edited, "cat /dev-args2"), "18 true");
    assert!(
        stderr.contains(&format!("removed the older {image}")),
        "{stderr}\n{}",
        project_images(engine)
    );
    assert!(!image_exists(engine, &image), "{image} is left behind");
    assert!(image_exists(engine, &edited));
    rmi(engine, &edited);
}

#[test]
#[ignore = "needs docker: scripts/test-engines.sh up, then make test"]
fn docker_resolve_build_carries_target_and_args_and_no_op_is_one_inspect() {
    need(&[Need::Docker]);
    build_target_numeric("docker");
}

#[test]
#[ignore = "needs podman: scripts/test-engines.sh up, then make test"]
fn podman_resolve_build_carries_target_and_args_and_no_op_is_one_inspect() {
    need(&[Need::Podman]);
    build_target_numeric("podman");
}

/// `--image Dockerfile.dev --build` with the context ".." layout's file on docker.
#[test]
#[ignore = "needs docker: scripts/test-engines.sh up, then make test"]
fn docker_resolve_build_of_an_image_path_and_a_dotdot_context() {
    need(&[Need::Docker]);
    let mut env = layout("context-dotdot");
    env.with_system_path();
    env.write(
        "project/Dockerfile.dev",
        "FROM local/busybox:amd64\nRUN echo dev > /dev.txt\n",
    );
    let out = env
        .hjk(&[
            "images",
            "resolve",
            "--build",
            "--image",
            "Dockerfile.dev",
            "--backend",
            "docker",
        ])
        .run();
    let image = out.stdout.trim().to_string();
    assert!(image.starts_with("hjk-project:dockerfile-"), "{image}");
    assert_eq!(run_in("docker", &image, "cat /dev.txt"), "dev");
    let out = env
        .hjk(&["images", "resolve", "--build", "--backend", "docker"])
        .run();
    let dc = out.stdout.trim().to_string();
    assert_eq!(
        run_in("docker", &dc, "cat /tmp/requirements.txt"),
        "requests==2.32.3"
    );
    rmi("docker", &image);
    rmi("docker", &dc);
}

/// Features go to the real `devcontainer build` (from npm), on docker, with a local feature and
/// a base image that is already local, so no network is needed. The second run is one inspect.
#[test]
#[ignore = "needs docker and devcontainer CLI: scripts/test-engines.sh up, then make test"]
fn docker_features_are_delegated_to_the_real_devcontainer_cli() {
    need(&[Need::Docker, Need::DevcontainerCli]);
    let mut env = layout("local-feature");
    env.with_system_path();
    env.set("GREETING", "hi from the test");
    env.recording("docker", "/usr/bin/docker");
    let (code, stdout, stderr) = run(&env, &["--build", "--json", "--backend", "docker"]);
    assert_eq!(code, 0, "{stderr}");
    let v: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(v["outcome"], "built", "{v}");
    assert_eq!(v["built_by"], "devcontainer build");
    let image = v["image"].as_str().unwrap().to_string();
    assert_eq!(
        run_in("docker", &image, "cat /etc/my-feature"),
        "hi from the test"
    );
    no_op_is_one_inspect(&env, "docker", &image);
    // another option value is another image
    env.set("GREETING", "changed");
    let (code, stdout, stderr) = run(&env, &["--build", "--json", "--backend", "docker"]);
    assert_eq!(code, 0, "{stderr}");
    let v: Value = serde_json::from_str(&stdout).unwrap();
    let second = v["image"].as_str().unwrap().to_string();
    assert_ne!(second, image);
    assert_eq!(run_in("docker", &second, "cat /etc/my-feature"), "changed");
    // the CLI's own progress is streamed as it runs (its log goes to stderr), and the older
    // build of this config is gone
    assert!(stderr.contains("@devcontainers/cli"), "{stderr}");
    assert!(
        stderr.contains(&format!("removed the older {image}")),
        "{stderr}\n{}",
        project_images("docker")
    );
    assert!(!image_exists("docker", &image));
    rmi("docker", &second);
}

/// A compose config goes to the real `devcontainer build` (from npm) on docker, which builds
/// the config's service with Debian's docker-compose (v1; this docker has no compose plugin)
/// from the public Rails + Postgres layout (two compose files, one in the parent directory).
/// The tag hjk names holds what the service's Dockerfile built; the second run is one inspect.
#[test]
#[ignore = "needs docker and devcontainer CLI and docker-compose: scripts/test-engines.sh up, then make test"]
fn docker_compose_is_delegated_to_the_real_devcontainer_cli() {
    need(&[Need::Docker, Need::DevcontainerCli, Need::DockerCompose]);
    let mut env = layout("compose");
    env.with_system_path();
    env.recording("docker", "/usr/bin/docker");
    env.write(
        "project/Dockerfile",
        "FROM local/busybox:amd64\nCOPY app.txt /app.txt\n",
    );
    let nonce = format!(
        "{:?}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
    );
    env.write("project/app.txt", &nonce);
    let (code, stdout, stderr) = run(&env, &["--build", "--json", "--backend", "docker"]);
    assert_eq!(code, 0, "{stderr}");
    let v: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(
        (&v["outcome"], &v["built_by"], &v["service"]),
        (&"built".into(), &"devcontainer build".into(), &"app".into()),
        "{v}"
    );
    assert!(stderr.contains("@devcontainers/cli"), "{stderr}");
    let image = v["image"].as_str().unwrap().to_string();
    assert_eq!(run_in("docker", &image, "cat /app.txt"), nonce);
    no_op_is_one_inspect(&env, "docker", &image);
    rmi("docker", &image);
}

/// A stand-in for `devcontainer build`, for what the real one cannot show cheaply: records its
/// argv and answers like the CLI, with the image it was asked to name.
const FAKE_CLI: &str = r#"#!/bin/sh
{ printf 'devcontainer'; for a in "$@"; do printf '\t%s' "$a"; done; printf '\n'; } >>"$FAKE_LOG"
while [ $# -gt 0 ]; do
  case $1 in --image-name) name=$2; shift ;; esac
  shift
done
echo "[fake devcontainer] building $name" >&2
printf '{"outcome":"success","imageName":["%s"]}\n' "$name"
"#;

/// A compose config is delegated with a tag that covers what the service's `build` reads:
/// editing the Dockerfile the compose file builds, or a file it copies, is a new image; a
/// file it does not copy is not.
#[test]
fn a_compose_services_build_inputs_are_in_the_delegated_tag() {
    let env = layout("compose");
    env.fake("docker");
    env.write_exe("devcontainer", FAKE_CLI);
    env.write(
        "project/Dockerfile",
        "FROM local/busybox:amd64\nCOPY app.txt /app.txt\n",
    );
    env.write("project/app.txt", "1\n");
    let build = || {
        let (code, stdout, stderr) = run(&env, &["--build", "--json", "--backend", "docker"]);
        assert_eq!(code, 0, "{stderr}");
        assert!(
            stderr.contains("[fake devcontainer] building hjk-project:devcontainer-"),
            "streamed: {stderr}"
        );
        let v: Value = serde_json::from_str(&stdout).unwrap();
        assert_eq!(v["outcome"], "built", "{v}");
        v["image"].as_str().unwrap().to_string()
    };
    let first = build();
    env.write("project/README.md", "not copied\n");
    assert_eq!(build(), first, "a file the service's build does not copy");
    env.write("project/app.txt", "2\n");
    let second = build();
    assert_ne!(second, first, "a file the Dockerfile copies");
    env.write(
        "project/Dockerfile",
        "FROM local/busybox:amd64\nCOPY app.txt /app.txt\nRUN true\n",
    );
    let third = build();
    assert_ne!(third, second, "the Dockerfile the compose file builds");
    let named: Vec<String> = env
        .log()
        .into_iter()
        .filter(|a| a[0] == "devcontainer")
        .map(|a| a[a.iter().position(|x| x == "--image-name").unwrap() + 1].clone())
        .collect();
    assert_eq!(named, [first.clone(), first, second, third]);
}
