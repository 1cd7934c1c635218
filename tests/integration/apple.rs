//! Apple `container` (issue 14, item 8): the real `ocx`/`hjk` against `fake-container`, whose
//! replies are taken from apple/container 1.2.2's source. Each test is a case where the real
//! CLI would do something other than asked without saying so, or say it in its own words.

use crate::util::argv::Argv;
use crate::util::fake::Script;
use crate::util::{fake_elf, fixtures, TestEnv, X86_64};

const BASE: &str = "myproject-dev";

/// An ocx project on the fake `container`, for linux/amd64, its opencode from a local file.
fn project(extra: &str) -> TestEnv {
    let mut env = TestEnv::new();
    env.fake("container");
    env.opencode_files(&[("opencode-linux-x64", &fake_elf(X86_64, 0))]);
    env.write(
        "project/ocx.json",
        &format!(
            r#"{{"custom_base_image": "{BASE}", "opencode_version": "1.2.3", "uid": 1000, "gid": 1000, "username": "dev", "platforms": ["linux/amd64"]{extra}}}"#
        ),
    );
    env
}

/// A refusal is the run's last word, one `error: ` line (progress lines may come before it).
fn last_line_is_the_error(stderr: &str) -> bool {
    let errors: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("error: "))
        .collect();
    errors.len() == 1 && stderr.trim_end().lines().last() == Some(errors[0])
}

fn ran(env: &TestEnv, sub: &str) -> Vec<Vec<String>> {
    env.log().into_iter().filter(|a| a.is(&[sub])).collect()
}

/// 1.2.2 reports a base without /bin/sh as exit 1 "failed to find target executable", not 127:
/// ocx takes it as a shell-less base, as it does on docker and podman.
#[test]
fn issue14_a_base_without_a_shell_is_recognised_from_apples_reply() {
    let env = project("");
    env.apple_image(BASE, "{}", &["amd64"]);
    env.script(&Script {
        no_shell: true,
        ..Script::default()
    });
    let out = env
        .ocx(&["build"])
        .status(0)
        .stderr_has("(the base has no /bin/sh")
        .run();
    let probe = ran(&env, "run");
    assert_eq!(probe.len(), 1, "{:?}", env.log());
    assert!(probe[0].has_flag("--entrypoint", "/bin/sh"), "{probe:?}");
    assert!(!out.stderr.contains("could not answer"), "{}", out.stderr);
}

/// A Dockerfile of 16 KiB is refused by `container build` only after it has started the
/// builder VM; ocx refuses it before any build, in one line, and 1 byte less builds.
#[test]
fn issue14_a_16_kib_dockerfile_is_refused_before_the_build() {
    let env = project(r#", "custom_base_dockerfile": "Dockerfile.dev""#);
    let pad = |len: usize| {
        let mut text = "FROM scratch\n".to_string();
        text.push_str(&"#".repeat(len - text.len() - 1));
        text.push('\n');
        text
    };
    env.write("project/Dockerfile.dev", &pad(16 * 1024));
    let out = env
        .ocx(&["build"])
        .status(2)
        .stderr_has("Dockerfile.dev is 16384 bytes, and Apple container refuses a Dockerfile of 16 KiB or more (apple/container#735)")
        .run();
    assert!(last_line_is_the_error(&out.stderr), "{}", out.stderr);
    assert!(ran(&env, "build").is_empty(), "{:?}", env.log());

    env.write("project/Dockerfile.dev", &pad(16 * 1024 - 1));
    env.ocx(&["build"]).status(0).run();
    assert!(!ran(&env, "build").is_empty(), "{:?}", env.log());
}

/// `--build-arg NAME` would reach the build as `NAME=""` (the CLI never reads the
/// environment): refused, without printing the value.
#[test]
fn issue14_a_build_arg_from_the_environment_is_refused() {
    let mut env = TestEnv::new();
    env.fake("container");
    crate::util::copy_dir(
        &fixtures().join("devcontainers/target-numeric"),
        &env.project(),
    );
    let secret = format!("Secret/Zone-{}", std::process::id());
    env.set("TZ", &secret);
    let out = env
        .hjk(&["images", "resolve", "--build", "--backend", "container"])
        .status(2)
        .stderr_has("error: Apple container cannot pass build arguments from the environment (TZ): it would build with them empty")
        .run();
    assert!(last_line_is_the_error(&out.stderr), "{}", out.stderr);
    assert!(!out.stderr.contains(&secret) && !out.stdout.contains(&secret));
    assert!(ran(&env, "build").is_empty(), "{:?}", env.log());
}

/// Apple's `--mount` has no CSV quoting: a path with `"` or `:` goes as it is (the fake, like
/// Parser.swift, would reject a quoted field as an unknown directive), and one with `,` or `=`
/// is refused before anything runs.
#[test]
fn issue14_mounts_are_written_for_apples_parser() {
    let mut env = project("");
    env.apple_image(BASE, "{}", &["amd64"]);
    let home = env.root().join("it's \"my\":home");
    std::fs::create_dir_all(&home).unwrap();
    env.set("HOME", home.display().to_string());
    env.script(&Script {
        run_exit: Some(3),
        ..Script::default()
    });
    env.ocx(&["opencode", "--version"]).status(3).run();
    let session = ran(&env, "run")
        .into_iter()
        .find(|a| !a.has("--entrypoint"))
        .unwrap();
    let want = format!(
        "type=bind,source={}/.config/opencode,target=/home/dev/.config/opencode",
        home.display()
    );
    assert!(session.contains(&want), "{session:?}");

    let home = env.root().join("my,home");
    std::fs::create_dir_all(&home).unwrap();
    env.set("HOME", home.display().to_string());
    env.clear_log();
    let out = env
        .ocx(&["opencode", "--version"])
        .status(2)
        .stderr_has(format!(
            "error: Apple container cannot mount {}/.config/opencode: its `--mount` splits at every ',' and '='",
            home.display()
        ))
        .run();
    assert!(last_line_is_the_error(&out.stderr), "{}", out.stderr);
    assert!(
        !env.log()
            .iter()
            .any(|a| a.is(&["run"]) && !a.has("--entrypoint")),
        "{:?}",
        env.log()
    );
}

/// With a non-default `registry.domain`, `image pull` of a short name would store the image
/// from that registry, while a Dockerfile's FROM means Docker Hub; hjk names Docker Hub.
#[test]
fn issue14_a_pulled_base_is_the_image_a_from_line_names() {
    let env = TestEnv::new();
    env.fake("container");
    env.script(&Script {
        registry_domain: Some("registry.example.com".into()),
        ..Script::default()
    });
    let images = fixtures().join("hierarchy").display().to_string();
    env.hjk(&[
        "images",
        "build",
        "--images-dir",
        &images,
        "--variant",
        "base",
        "--platform",
        "linux/arm64",
        "--base-image",
        "local/debian:bookworm",
        "--backend",
        "container",
    ])
    .status(0)
    .run();
    let pulls = ran(&env, "image");
    assert!(
        pulls
            .iter()
            .any(|a| a[2..] == ["pull", "docker.io/local/debian:bookworm"]),
        "{pulls:?}"
    );
    let store = env.root().join("fake/images");
    assert!(store.join("docker.io%local%debian:bookworm.json").exists());
    assert!(!store
        .join("registry.example.com%local%debian:bookworm.json")
        .exists());
}

/// `hjk images resolve --build` removes the older builds of a config through `image list
/// --format json`, which 1.2.2 has (before, nothing was listed on Apple).
#[test]
fn issue14_older_builds_are_found_by_image_list() {
    let env = TestEnv::new();
    env.fake("container");
    crate::util::copy_dir(
        &fixtures().join("devcontainers/legacy-dockerfile"),
        &env.project(),
    );
    let resolve = || {
        env.hjk(&["images", "resolve", "--build", "--backend", "container"])
            .status(0)
            .run()
            .stdout
            .trim()
            .to_string()
    };
    let first = resolve();
    env.write(
        "project/Dockerfile",
        &format!(
            "{}RUN echo edited\n",
            std::fs::read_to_string(env.project().join("Dockerfile")).unwrap()
        ),
    );
    env.clear_log();
    let second = resolve();
    assert_ne!(first, second);
    let log = env.log();
    assert!(
        log.iter()
            .any(|a| a[1..] == ["image", "list", "--format", "json"]),
        "{log:?}"
    );
    assert!(
        log.iter().any(|a| a[1..]
            == [
                "image".to_string(),
                "delete".into(),
                format!("docker.io/library/{first}")
            ]),
        "{log:?}"
    );
    let store = env.root().join("fake/images");
    let name = |i: &str| format!("docker.io%library%{}.json", i.replace('/', "%"));
    assert!(!store.join(name(&first)).exists());
    assert!(store.join(name(&second)).exists());
}
