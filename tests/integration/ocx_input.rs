//! Bad input: each is one line on stderr, exit code 2, and no engine build started.

use crate::util::fake::Script;
use crate::util::{counting_server, need, refused_before_the_download, Need, TestEnv};

/// Runs `ocx ARGS`, expects bad input naming `needle`, and that no engine build started.
fn assert_bad_input(env: &TestEnv, args: &[&str], needle: &str) {
    env.ocx(args).bad_input().stderr_has(needle).run();
    let builds: Vec<_> = env
        .log()
        .into_iter()
        .filter(|a| a.iter().any(|x| x == "build"))
        .collect();
    assert!(builds.is_empty(), "a build started: {builds:?}");
}

fn env_with_config(json: &str) -> TestEnv {
    let env = TestEnv::new();
    env.fake("podman").write("project/ocx.json", json);
    env
}

#[test]
fn malformed_ocx_json_names_line_and_column() {
    let env = env_with_config("{\n  \"opencode_version\": \"1.2.3\"\n  \"username\": \"x\"\n}\n");
    assert_bad_input(&env, &["build"], "line 3 column 3");
}

#[test]
fn invalid_custom_base_image() {
    let env = env_with_config(r#"{"custom_base_image": "My Project:dev"}"#);
    assert_bad_input(
        &env,
        &["build"],
        "invalid image reference \"My Project:dev\"",
    );
}

#[test]
fn username_with_newline_or_shell_metacharacters() {
    for bad in ["dev\\nUSER root", "dev;rm -rf /", "$(id)", "dev`id`"] {
        let env = env_with_config(&format!(
            r#"{{"username": "{bad}", "opencode_version": "1.0.0"}}"#
        ));
        assert_bad_input(&env, &["build"], "invalid username");
    }
}

#[test]
fn version_with_newline_or_shell_metacharacters() {
    for bad in ["1.2.3\\nRUN id", "1.2.3;id", "$(id)", "latest && id"] {
        let env = env_with_config(&format!(r#"{{"opencode_version": "{bad}"}}"#));
        assert_bad_input(&env, &["build"], "invalid opencode_version");
    }
    let env = env_with_config("{}");
    assert_bad_input(
        &env,
        &["build", "--opencode-version", "1.0|id"],
        "(from flag --opencode-version)",
    );
}

#[test]
fn missing_dockerfile_lists_both_paths_tried() {
    let env = env_with_config(
        r#"{"custom_base_image": "dev", "custom_base_dockerfile": "docker/Dockerfile.dev", "opencode_version": "1.0.0"}"#,
    );
    let out = env.ocx(&["build"]).status(2).run();
    let project = env.project().canonicalize().unwrap();
    let global = env.root().join("config/ocx/project/docker/Dockerfile.dev");
    assert_eq!(
        out.stderr.trim(),
        format!("error: custom_base_dockerfile docker/Dockerfile.dev not found; tried {}/docker/Dockerfile.dev and {}", project.display(), global.display())
    );
    assert!(
        env.log().is_empty(),
        "no engine call at all: {:?}",
        env.log()
    );
}

#[test]
fn dockerfile_found_in_global_config_dir_is_used_with_its_context() {
    let env = env_with_config(
        r#"{"custom_base_image": "dev", "custom_base_dockerfile": "Dockerfile.dev", "opencode_version": "1.0.0"}"#,
    );
    env.write("config/ocx/project/Dockerfile.dev", "FROM scratch\n");
    let out = env.ocx(&["build", "--dry-run"]).status(0).run();
    let ctx = env.root().join("config/ocx/project");
    assert!(
        out.stdout
            .contains(&format!("--file {}/Dockerfile.dev", ctx.display())),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout
            .contains(&format!("--pull=missing {}\n", ctx.display())),
        "{}",
        out.stdout
    );
}

#[test]
fn no_engine_on_path() {
    let mut env = TestEnv::new();
    let bin = env.bin().display().to_string();
    env.set("PATH", bin);
    env.write("project/ocx.json", r#"{"opencode_version": "1.0.0"}"#);
    assert_bad_input(
        &env,
        &["build"],
        "no container engine found: looked for `docker`, `podman`, `container` on PATH",
    );
}

#[test]
fn unknown_backend() {
    let env = env_with_config(r#"{"opencode_version": "1.0.0"}"#);
    assert_bad_input(
        &env,
        &["build", "--backend", "rkt"],
        "unknown backend \"rkt\"",
    );
    let mut env = env_with_config(r#"{"opencode_version": "1.0.0"}"#);
    env.set("OCX_BACKEND", "lxc");
    assert_bad_input(&env, &["build"], "(from env OCX_BACKEND)");
}

#[test]
fn chosen_backend_not_installed() {
    let env = env_with_config(r#"{"opencode_version": "1.0.0", "backend": "docker"}"#);
    assert_bad_input(&env, &["build"], "backend docker (from");
}

#[test]
fn missing_custom_base_without_dockerfile() {
    let env = env_with_config(
        r#"{"custom_base_image": "myproject-dev", "opencode_version": "1.0.0", "opencode_source": "file:bins/{asset}"}"#,
    );
    let out = env.ocx(&["build"]).output();
    assert_eq!(out.code, 2);
    assert!(out.stderr.starts_with("error: custom base image myproject-dev not found and no custom_base_dockerfile configured"), "{}", out.stderr);
    assert_eq!(env.log().len(), 1, "only the inspect: {:?}", env.log());
}

#[test]
fn unknown_config_key_is_rejected() {
    let env = env_with_config(r#"{"custom_base": "x"}"#);
    assert_bad_input(&env, &["build"], "unknown field `custom_base`");
}

#[test]
fn config_show_prints_values_and_sources() {
    let mut env = TestEnv::new();
    env.write(
        "config/ocx/ocx.json",
        r#"{"username": "globaluser", "uid": 1500}"#,
    );
    env.write(
        "project/ocx.json",
        r#"{"custom_base_image": "myproject-dev", "opencode_version": "1.18.18"}"#,
    );
    env.set("OCX_GID", "1600");
    let out = env
        .ocx(&["config", "show", "--opencode-source", "npm"])
        .status(0)
        .run();
    let root = env.root().display().to_string();
    let shown = out.stdout.replace(&root, "[ROOT]");
    let line = |key: &str| {
        shown
            .lines()
            .find(|l| l.starts_with(key))
            .unwrap()
            .split_whitespace()
            .map(String::from)
            .collect::<Vec<_>>()
    };
    assert_eq!(
        line("custom_base_image"),
        [
            "custom_base_image",
            "myproject-dev",
            "[ROOT]/project/ocx.json"
        ]
    );
    assert_eq!(
        line("username"),
        ["username", "globaluser", "[ROOT]/config/ocx/ocx.json"]
    );
    assert_eq!(line("gid"), ["gid", "1600", "env", "OCX_GID"]);
    assert_eq!(
        line("opencode_source"),
        ["opencode_source", "npm", "flag", "--opencode-source"]
    );
    assert_eq!(
        line("custom_base_dockerfile"),
        ["custom_base_dockerfile", "(unset)", "unset"]
    );
}

#[test]
fn an_invalid_base_image_fails_before_resolving_latest() {
    let (port, hits) = counting_server();
    let mut env = env_with_config(r#"{"custom_base_image": "Upper/Case"}"#);
    env.set("OCX_GITHUB_API_URL", format!("http://127.0.0.1:{port}"));
    assert_bad_input(
        &env,
        &["build"],
        "error: custom_base_image: invalid image reference \"Upper/Case\"",
    );
    let out = env.ocx(&["build"]).output();
    assert!(out.stderr.contains("/project/ocx.json)"), "{}", out.stderr);
    assert_eq!(hits.load(std::sync::atomic::Ordering::SeqCst), 0);
    assert!(env.log().is_empty(), "no engine call: {:?}", env.log());
}

#[test]
fn a_build_the_engine_refuses_is_refused_before_the_download() {
    let (port, hits) = counting_server();
    let mut env = TestEnv::new();
    env.fake("docker").script(&Script {
        no_buildx: true,
        ..Script::default()
    });
    env.images_exist(&[("multi-dev", "null")]);
    env.set("OCX_GITHUB_API_URL", format!("http://127.0.0.1:{port}"));
    env.write(
        "project/ocx.json",
        r#"{"custom_base_image": "multi-dev", "opencode_version": "1.2.3", "platforms": ["linux/amd64", "linux/arm64"]}"#,
    );
    refused_before_the_download(&env, &hits);
}

#[test]
fn every_config_key_is_a_flag_with_help() {
    let env = TestEnv::new();
    let out = env.ocx(&["build", "--help"]).status(0).run();
    for key in [
        "--custom-base-image",
        "--custom-base-dockerfile",
        "--custom-base-context",
        "--opencode-version",
        "--opencode-source",
        "--opencode-variant",
        "--backend",
        "--platforms",
        "--username",
        "--uid",
        "--gid",
    ] {
        assert!(out.stdout.contains(key), "{key} missing from --help");
    }
    let env = env_with_config(r#"{"opencode_version": "1.0.0"}"#);
    assert_bad_input(
        &env,
        &["build", "--opencode-variant", "glibc"],
        "invalid opencode_variant \"glibc\"",
    );
}

/// With a pinned version too, an invalid `custom_base_image` is bad input before the first
/// engine call: on real podman and docker (behind a recording wrapper), nothing is called.
#[test]
#[ignore = "needs podman and docker: scripts/test-engines.sh up, then make test"]
fn an_invalid_base_image_with_a_pinned_version_calls_no_engine() {
    need(&[Need::Podman, Need::Docker]);
    for engine in ["podman", "docker"] {
        let mut env = TestEnv::new();
        env.with_system_path();
        env.recording(engine, &format!("/usr/bin/{engine}"));
        for base in ["Foo/Bar", "foo/Bar:1"] {
            env.write(
                "project/ocx.json",
                &format!(
                    r#"{{"custom_base_image": "{base}", "opencode_version": "1.18.18", "backend": "{engine}"}}"#
                ),
            );
            env.ocx(&["build"])
                .bad_input()
                .stderr_has(format!(
                    "error: custom_base_image: invalid image reference \"{base}\": repository names must be lowercase"
                ))
                .run();
            assert!(env.log().is_empty(), "{engine}: {:?}", env.log());
        }
    }
}

/// Every declared key is read from its environment variable and from its flag, not only listed:
/// a key added to `KEYS` but not to the resolver would show as unset here.
#[test]
fn every_declared_key_is_read_from_env_and_flag() {
    use agent_images::ocx::config::KEYS;
    let sample = |name: &str| -> &str {
        match name {
            "custom_base_image" => "acme/dev:1",
            "custom_base_dockerfile" => "Dockerfile.dev",
            "custom_base_context" => "ctx",
            "opencode_version" => "1.2.3",
            "opencode_source" => "npm",
            "opencode_variant" => "musl",
            "backend" => "podman",
            "platforms" => "linux/arm64",
            "username" => "someone",
            "uid" => "1234",
            "gid" => "2345",
            other => panic!("no sample value for the new key {other}: add one here"),
        }
    };
    let mut env = TestEnv::new();
    for k in KEYS {
        env.set(&format!("OCX_{}", k.name.to_uppercase()), sample(k.name));
    }
    let shown = env.ocx(&["config", "show"]).status(0).run().stdout;
    for k in KEYS {
        let var = format!("OCX_{}", k.name.to_uppercase());
        let line: Vec<&str> = shown
            .lines()
            .find(|l| l.split_whitespace().next() == Some(k.name))
            .unwrap_or_else(|| panic!("{} not shown:\n{shown}", k.name))
            .split_whitespace()
            .collect();
        assert_eq!(line, [k.name, sample(k.name), "env", &var], "{shown}");
    }
    let mut args = vec!["config".to_string(), "show".to_string()];
    for k in KEYS {
        args.push(format!("--{}", k.name.replace('_', "-")));
        args.push(sample(k.name).to_string());
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let shown = TestEnv::new().ocx(&args).status(0).run().stdout;
    for k in KEYS {
        let flag = format!("--{}", k.name.replace('_', "-"));
        let line: Vec<&str> = shown
            .lines()
            .find(|l| l.split_whitespace().next() == Some(k.name))
            .unwrap()
            .split_whitespace()
            .collect();
        assert_eq!(line, [k.name, sample(k.name), "flag", &flag], "{shown}");
    }
}

/// With no engine on PATH, `config show` says so on the backend row (and still exits 0: it
/// shows, it does not build).
#[test]
fn config_show_says_when_no_engine_is_on_path() {
    let env = TestEnv::new();
    let out = env.ocx(&["config", "show"]).status(0).run();
    let row: Vec<&str> = out
        .stdout
        .lines()
        .find(|l| l.starts_with("backend "))
        .unwrap()
        .split_whitespace()
        .collect();
    assert_eq!(
        row,
        ["backend", "(unset)", "none", "found", "on", "PATH"],
        "{}",
        out.stdout
    );
    env.fake("podman");
    let out = env.ocx(&["config", "show"]).status(0).run();
    assert!(
        out.stdout
            .lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>()
                == ["backend", "podman", "detected", "on", "PATH"]),
        "{}",
        out.stdout
    );
}
