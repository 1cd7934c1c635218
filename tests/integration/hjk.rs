//! hjk without real engines: `images resolve` tables, bad input, and `images build --dry-run`
//! plans for the real images/ on all three backends (fake CLIs on PATH).

use crate::util::argv::Argv;
use crate::util::fake::Script;
use crate::util::{summary_rows, TestEnv};
use std::path::Path;

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// `hjk images resolve` in a project with the given files; returns (exit code, stdout, stderr).
fn resolve(
    files: &[(&str, &str)],
    config: Option<&str>,
    args: &[&str],
) -> (i32, String, String, TestEnv) {
    let env = TestEnv::new();
    for (path, content) in files {
        env.write(&format!("project/{path}"), content);
    }
    if let Some(c) = config {
        env.write("config/headjack/config.yaml", c);
    }
    let mut all = vec!["images", "resolve"];
    all.extend_from_slice(args);
    let out = env.hjk(&all).output();
    let root = env.project().canonicalize().unwrap().display().to_string();
    (
        out.code,
        out.stdout.replace(&root, "[PROJECT]"),
        out.stderr,
        env,
    )
}

struct Case<'a> {
    name: &'a str,
    files: &'a [(&'a str, &'a str)],
    config: Option<&'a str>,
    args: &'a [&'a str],
    want: &'a str,
}

#[test]
fn resolve_sources_and_precedence() {
    let dc_image = (
        ".devcontainer/devcontainer.json",
        r#"{ "image": "mcr.microsoft.com/devcontainers/base:ubuntu" }"#,
    );
    let dc_build = (
        ".devcontainer.json",
        "// JSON with comments, as devcontainer.json allows\n{\n  /* build from a Dockerfile */\n  \"build\": { \"dockerfile\": \"docker/Dev.Dockerfile\", \"context\": \"..\", \"args\": { \"X\": \"1\", }, },\n}\n",
    );
    let df = ("docker/Dev.Dockerfile", "FROM scratch\n");
    let cfg = Some("default:\n  base_image: registry.example/org/agent:1\n");
    let digest = format!("alpine@sha256:{}", "a".repeat(64));
    let digest_want = format!("registry docker.io/library/{digest}\n");
    let cases = [
        Case {
            name: "default from config",
            files: &[],
            config: cfg,
            args: &[],
            want: "default registry.example/org/agent:1\n",
        },
        Case {
            name: "built-in default",
            files: &[],
            config: None,
            args: &[],
            want: "default ghcr.io/gilmanlab/headjack:base\n",
        },
        Case {
            name: "devcontainer image beats default",
            files: &[dc_image],
            config: cfg,
            args: &[],
            want: "devcontainer mcr.microsoft.com/devcontainers/base:ubuntu\n",
        },
        Case {
            name: "devcontainer build with comments",
            files: &[dc_build, df],
            config: cfg,
            args: &[],
            want: "devcontainer [PROJECT]/docker/Dev.Dockerfile\n",
        },
        Case {
            name: ".devcontainer/ beats .devcontainer.json",
            files: &[dc_image, dc_build, df],
            config: None,
            args: &[],
            want: "devcontainer mcr.microsoft.com/devcontainers/base:ubuntu\n",
        },
        Case {
            name: "--image ref beats devcontainer",
            files: &[dc_image],
            config: cfg,
            args: &["--image", "ubuntu"],
            want: "registry docker.io/library/ubuntu:latest\n",
        },
        Case {
            name: "--image Dockerfile path",
            files: &[dc_image, df],
            config: cfg,
            args: &["--image", "docker/Dev.Dockerfile"],
            want: "dockerfile [PROJECT]/docker/Dev.Dockerfile\n",
        },
        Case {
            name: "--image Containerfile path",
            files: &[("Containerfile", "FROM scratch\n")],
            config: None,
            args: &["--image", "./Containerfile"],
            want: "dockerfile [PROJECT]/Containerfile\n",
        },
        Case {
            name: "IPv6 registry host",
            files: &[],
            config: None,
            args: &["--image", "[::1]:5000/team/img:v1"],
            want: "registry [::1]:5000/team/img:v1\n",
        },
        Case {
            name: "registry with port",
            files: &[],
            config: None,
            args: &["--image", "localhost:5000/img"],
            want: "registry localhost:5000/img:latest\n",
        },
        Case {
            name: "uppercase tag is fine",
            files: &[],
            config: None,
            args: &["--image", "ubuntu:Noble"],
            want: "registry docker.io/library/ubuntu:Noble\n",
        },
        Case {
            name: "digest",
            files: &[],
            config: None,
            args: &["--image", &digest],
            want: &digest_want,
        },
    ];
    for c in cases {
        let (code, stdout, stderr, _env) = resolve(c.files, c.config, c.args);
        assert_eq!((code, stdout.as_str()), (0, c.want), "{}: {stderr}", c.name);
    }
}

#[test]
fn resolve_rejects_bad_references_in_one_line() {
    let long = format!("a/{}", "b".repeat(300));
    for bad in [
        "Ubuntu",
        "ubuntu:tag with space",
        "ubuntu@sha256:abc",
        "[::1/img",
        "[zz::1]:5000/img",
        long.as_str(),
        "-rm",
        "img:",
        "a//b",
    ] {
        let (code, _out, stderr, _env) = resolve(&[], None, &[&format!("--image={bad}")]);
        assert_eq!(code, 2, "{bad}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{bad}: {stderr}");
        assert!(
            stderr.starts_with("error: invalid image reference"),
            "{bad}: {stderr}"
        );
    }
}

#[test]
fn resolve_json_and_devcontainer_build_args() {
    let (code, out, stderr, _env) = resolve(
        &[(".devcontainer/devcontainer.json", "{\n // comment\n \"build\": {\"dockerfile\": \"Dockerfile\", \"args\": {\"VARIANT\": \"noble\"}}\n}"), (".devcontainer/Dockerfile", "FROM scratch\n")],
        None,
        &["--json"],
    );
    assert_eq!(code, 0, "{stderr}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["kind"], "devcontainer");
    assert_eq!(v["dockerfile"], "[PROJECT]/.devcontainer/Dockerfile");
    assert_eq!(v["context"], "[PROJECT]/.devcontainer");
    assert_eq!(v["build_args"]["VARIANT"], "noble");
}

#[test]
fn resolve_bad_devcontainer_and_config_are_exit_2() {
    let (code, _o, stderr, _e) = resolve(&[(".devcontainer.json", "{ \"image\": ")], None, &[]);
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.starts_with("error: malformed ") && stderr.lines().count() == 1,
        "{stderr}"
    );
    let (code, _o, stderr, _e) = resolve(&[], Some("default:\n  base_image: [\n"), &[]);
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.starts_with("error: malformed config ") && stderr.lines().count() == 1,
        "{stderr}"
    );
}

/// Issue 16: `~/.config/headjack/config.yaml` is Headjack's whole config file. Its runner's
/// sections (`runtime.flags` as images/README.md shows it, `agents`, `storage`) are read past
/// without a word; a key nobody defines gets one warning; a key hjk reads is still checked.
#[test]
fn a_shared_headjack_config_is_read_past() {
    let shared = "runtime:\n  name: podman\n  flags:\n    memory: 4g\ndefault:\n  base_image: registry.example/org/agent:1\n  agent: claude\nagents:\n  claude:\n    env:\n      CLAUDE_CODE_MAX_TURNS: \"100\"\nstorage:\n  worktrees: ~/.local/share/headjack/git\n";
    let (code, stdout, stderr, _e) = resolve(&[], Some(shared), &[]);
    assert_eq!((code, stderr.as_str()), (0, ""), "{stdout}");
    assert_eq!(stdout, "default registry.example/org/agent:1\n");
    let typo = format!("{shared}images:\n  regsitry: x\n");
    let (code, _o, stderr, _e) = resolve(&[], Some(&typo), &[]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stderr.starts_with("warning: ")
            && stderr
                .trim_end()
                .ends_with("has keys hjk does not read, left as they are: images.regsitry")
            && stderr.lines().count() == 1,
        "{stderr}"
    );
    let bad = shared.replace("name: podman", "name: lxc");
    let (code, _o, stderr, _e) = resolve(&[], Some(&bad), &[]);
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.starts_with("error: runtime.name: unknown backend \"lxc\""),
        "{stderr}"
    );
}

fn build_env(engine: &str) -> TestEnv {
    let env = TestEnv::new();
    env.fake(engine);
    env
}

/// `hjk images build --images-dir <repo>/images ARGS...` against whatever engine `env` has.
fn build_real(env: &TestEnv, args: &[&str]) -> crate::util::Out {
    real_build(env, args).output()
}

/// `hjk images build --images-dir <this checkout's images> ARGS`, to be checked and run.
fn real_build(env: &TestEnv, args: &[&str]) -> crate::util::Run {
    let images = repo().join("images").display().to_string();
    let mut all = vec!["images", "build", "--images-dir", images.as_str()];
    all.extend_from_slice(args);
    env.hjk(&all)
}

#[test]
fn unknown_variant_lists_known_ones() {
    let env = build_env("podman");
    let out = build_real(&env, &["--variant", "dinb"]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert_eq!(
        out.stderr.trim(),
        "error: unknown variant \"dinb\"; known variants: base, systemd, dind"
    );
    assert!(env.log().is_empty());
}

#[test]
fn unknown_platform_and_malformed_config_are_exit_2() {
    let env = build_env("podman");
    let out = build_real(&env, &["--variant", "dind", "--platform", "linux/riscv64"]);
    assert_eq!(out.code, 2);
    assert_eq!(
        out.stderr.trim(),
        "error: unknown platform \"linux/riscv64\"; supported: linux/amd64, linux/arm64"
    );
    env.write(
        "config/headjack/config.yaml",
        "runtime:\n  name: podman\n images: x\n",
    );
    let out = build_real(&env, &["--variant", "dind"]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.stderr.starts_with("error: malformed config ") && out.stderr.lines().count() == 1,
        "{}",
        out.stderr
    );
    assert!(env.log().is_empty());
}

#[test]
fn buildx_multi_platform_without_push_needs_the_containerd_image_store() {
    let env = build_env("docker");
    env.script(&Script {
        buildx_overlay2: true,
        ..Script::default()
    });
    let out = build_real(
        &env,
        &["--variant", "dind", "--platform", "linux/amd64,linux/arm64"],
    );
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.stderr.contains(
            "`docker` driver on the overlay2 image store, which cannot build several platforms"
        ),
        "{}",
        out.stderr
    );
    assert!(
        !env.log().iter().any(|a| a.contains(&"build".to_string())),
        "{:?}",
        env.log()
    );

    // on the containerd image store: one build per variant, both platforms, kept locally,
    // each child FROM its parent's local tag
    let env = build_env("docker");
    let out = build_real(
        &env,
        &["--variant", "dind", "--platform", "linux/amd64,linux/arm64"],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    let log = env.log();
    let builds: Vec<&Vec<String>> = log.iter().filter(|a| a.is(&["buildx", "build"])).collect();
    assert_eq!(builds.len(), 3, "{log:?}");
    for (b, parent) in builds
        .iter()
        .zip([None, Some("headjack:base"), Some("headjack:systemd")])
    {
        assert!(
            b.has_flag("--platform", "linux/amd64,linux/arm64") && b.has("--load"),
            "{b:?}"
        );
        if let Some(p) = parent {
            assert!(
                b.windows(2).any(|w| w[0] == "--build-arg"
                    && w[1].starts_with("BASE_IMAGE=")
                    && w[1].ends_with(p)),
                "{b:?}"
            );
        }
    }
}

#[test]
fn dry_run_plans_for_the_real_images_on_every_backend() {
    let re = regex::Regex::new("fingerprint=[0-9a-f]{64}").unwrap();
    let images = repo().join("images").display().to_string();
    for (engine, extra) in [
        ("docker", &["--push"][..]),
        ("podman", &[][..]),
        ("container", &[][..]),
    ] {
        let env = build_env(engine);
        // a builder that can build several platforms (the default `docker` driver cannot)
        env.script(&Script {
            buildx_driver: Some("docker-container".into()),
            ..Script::default()
        });
        let mut args = vec![
            "--variant",
            "dind",
            "--platform",
            "linux/amd64,linux/arm64",
            "--version",
            "v1.2.3",
            "--dry-run",
        ];
        args.extend_from_slice(extra);
        let out = real_build(&env, &args).run();
        // only read-only queries ran: the inspect and docker's builder probes
        for argv in env.log() {
            assert!(
                argv.is(&["image", "inspect"]) || argv.is(&["buildx", "inspect"]),
                "{engine}: dry-run spawned {argv:?}"
            );
        }
        let stdout = re
            .replace_all(&out.stdout.replace(&images, "[IMAGES]"), "fingerprint=[FP]")
            .into_owned();
        let order: Vec<usize> = ["/base", "/systemd", "/dind"]
            .iter()
            .map(|v| stdout.find(&format!("[IMAGES]{v}")).unwrap_or(usize::MAX))
            .collect();
        assert!(
            order[0] < order[1] && order[1] < order[2],
            "{engine}: base, then systemd, then dind:\n{stdout}"
        );
        insta::assert_snapshot!(format!("hjk_dry_run_{engine}"), stdout);
    }
}

#[test]
fn a_failed_arch_stops_the_build_unless_no_fastfail() {
    let run_with = |extra: &[&str]| {
        let env = build_env("podman");
        env.script(&Script {
            build_fails_when: Some("--platform linux/arm64".into()),
            ..Script::default()
        });
        let mut args = vec!["--variant", "dind", "--platform", "linux/amd64,linux/arm64"];
        args.extend_from_slice(extra);
        let out = real_build(&env, &args).status(1).run();
        assert!(
            out.stderr
                .contains("1 of 6 image(s) failed: ghcr.io/gilmanlab/headjack:base-arm64 (build)"),
            "{}",
            out.stderr
        );
        summary_rows(&out.stdout)
            .into_iter()
            .map(|(v, p, r)| format!("{v} {p} {r}"))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        run_with(&[]),
        [
            "base linux/amd64 built",
            "base linux/arm64 FAILED",
            "systemd linux/amd64 skipped",
            "systemd linux/arm64 skipped",
            "dind linux/amd64 skipped",
            "dind linux/arm64 skipped"
        ]
    );
    assert_eq!(
        run_with(&["--no-fastfail"]),
        [
            "base linux/amd64 built",
            "base linux/arm64 FAILED",
            "systemd linux/amd64 built",
            "systemd linux/arm64 skipped",
            "dind linux/amd64 built",
            "dind linux/arm64 skipped"
        ]
    );
}

#[test]
fn buildx_multi_platform_push_builds_each_variant_once_for_both_platforms() {
    let env = build_env("docker");
    env.script(&Script {
        buildx_driver: Some("docker-container".into()),
        ..Script::default()
    });
    let out = build_real(
        &env,
        &[
            "--variant",
            "dind",
            "--platform",
            "linux/amd64,linux/arm64",
            "--registry",
            "127.0.0.1:5000/hj",
            "--push",
        ],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    let log = env.log();
    let builds: Vec<&Vec<String>> = log.iter().filter(|a| a.is(&["buildx", "build"])).collect();
    assert_eq!(builds.len(), 3, "{log:?}");
    for (b, parent) in builds.iter().zip([
        None,
        Some("127.0.0.1:5000/hj:base"),
        Some("127.0.0.1:5000/hj:systemd"),
    ]) {
        assert!(b.has_flag("--platform", "linux/amd64,linux/arm64"), "{b:?}");
        assert!(b.has("--push") && !b.has("--load"), "{b:?}");
        if let Some(p) = parent {
            assert!(
                b.has_flag("--build-arg", &format!("BASE_IMAGE={p}")),
                "{b:?}"
            );
        }
    }
    assert_eq!(
        summary_rows(&out.stdout)
            .iter()
            .filter(|r| r.2 == "built")
            .count(),
        3,
        "{}",
        out.stdout
    );
}

/// `hjk images build --cache-repo`: each build imports and exports its layer cache under one
/// tag per variant (and platform, when it builds one); an engine without a registry cache
/// refuses before building.
#[test]
fn build_cache_repo_tags_one_cache_per_variant() {
    let env = build_env("docker");
    let out = build_real(
        &env,
        &[
            "--variant",
            "systemd",
            "--platform",
            "linux/arm64",
            "--cache-repo",
            "127.0.0.1:5000/hj-cache",
        ],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    let builds: Vec<Vec<String>> = env
        .log()
        .into_iter()
        .filter(|a| a.is(&["buildx", "build"]))
        .collect();
    assert_eq!(builds.len(), 2, "{builds:?}");
    for (b, v) in builds.iter().zip(["base", "systemd"]) {
        let text = b.join(" ");
        assert!(
            text.contains(&format!(
                "--cache-from type=registry,ref=127.0.0.1:5000/hj-cache:{v}-arm64 --cache-to type=registry,ref=127.0.0.1:5000/hj-cache:{v}-arm64,mode=max"
            )),
            "{text}"
        );
    }
    let env = build_env("docker");
    env.script(&Script {
        no_buildx: true,
        ..Script::default()
    });
    let out = build_real(
        &env,
        &[
            "--variant",
            "base",
            "--cache-repo",
            "127.0.0.1:5000/hj-cache",
        ],
    );
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.stderr.contains(
            "docker cannot make a registry build cache (--cache-repo) (the classic builder"
        ),
        "{}",
        out.stderr
    );
    env.assert_nothing_built();
}
