//! ocx and what it must not lose or trust: the user's files next to OCX_KEEP_CONTEXT, a cache
//! that was modified, paths a cloned project's ocx.json names, and base names two projects
//! could share. Fake engines (these need no image), real files.

use crate::util::{docker_inspect_entry, sha256_hex, TestEnv};
use std::os::unix::fs::MetadataExt;

const BASE: &str = "integrity-dev";

fn fake_elf(machine: u8, fill: u8) -> Vec<u8> {
    let mut b = vec![fill; 4096];
    b[..4].copy_from_slice(b"\x7fELF");
    b[4] = 2;
    b[5] = 1;
    b[18] = machine;
    b[19] = 0;
    b
}

/// A podman project whose opencode comes from a file outside it (named by the environment,
/// which is trusted); the base exists.
fn project() -> TestEnv {
    let mut env = TestEnv::new();
    env.fake("podman");
    env.opencode_files(&[("opencode-linux-x64", &fake_elf(62, 7))]);
    env.write(
        "project/ocx.json",
        &format!(
            r#"{{"custom_base_image": "{BASE}", "opencode_version": "1.2.3", "opencode_variant": "standard", "uid": 1000, "gid": 1000}}"#
        ),
    );
    env.images_exist(&[(BASE, "null")]);
    env
}

fn cached_binary(env: &TestEnv) -> std::path::PathBuf {
    env.root()
        .join("cache/ocx/opencode/1.2.3/opencode-linux-x64/opencode")
}

#[test]
fn keep_context_refuses_a_directory_with_files_and_writes_nothing() {
    let mut env = project();
    env.write("project/Dockerfile", "FROM mine\n");
    env.write("project/setup-user.sh", "echo mine\n");
    let project = env.project().display().to_string();
    env.set("OCX_KEEP_CONTEXT", project);
    env.ocx(&["build"])
        .bad_input()
        .stderr_has("OCX_KEEP_CONTEXT")
        .stderr_has("is not empty")
        .run();
    assert_eq!(
        std::fs::read_to_string(env.project().join("Dockerfile")).unwrap(),
        "FROM mine\n"
    );
    assert_eq!(
        std::fs::read_to_string(env.project().join("setup-user.sh")).unwrap(),
        "echo mine\n"
    );
    assert!(env.log().is_empty(), "checked before any engine call");
}

#[test]
fn a_kept_binary_is_a_copy_editing_it_leaves_the_cache_alone() {
    let mut env = project();
    let keep = env.root().join("kept");
    env.set("OCX_KEEP_CONTEXT", keep.display().to_string());
    env.ocx(&["build"]).status(0).run();
    let kept = keep.join("opencode-standard-amd64/opencode");
    let cached = cached_binary(&env);
    assert_eq!(std::fs::read(&kept).unwrap(), fake_elf(62, 7));
    assert_ne!(
        std::fs::metadata(&kept).unwrap().ino(),
        std::fs::metadata(&cached).unwrap().ino()
    );
    std::fs::write(&kept, b"edited").unwrap();
    assert_eq!(std::fs::read(&cached).unwrap(), fake_elf(62, 7));
    assert!(keep.join("final/Dockerfile").is_file());
}

#[test]
fn dry_run_with_keep_context_creates_nothing() {
    let mut env = project();
    let keep = env.root().join("kept");
    env.set("OCX_KEEP_CONTEXT", keep.display().to_string());
    env.ocx(&["build", "--dry-run"]).status(0).run();
    assert!(!keep.exists(), "{keep:?} was created");
}

#[test]
fn a_modified_cache_entry_is_fetched_again_before_use() {
    let mut env = project();
    env.ocx(&["build"]).status(0).run();
    // flip bytes in the cached binary; its binary image is gone (as after `podman rmi`)
    let cached = cached_binary(&env);
    let mut bytes = std::fs::read(&cached).unwrap();
    for b in &mut bytes[100..116] {
        *b ^= 0xff;
    }
    std::fs::write(&cached, &bytes).unwrap();
    let keep = env.root().join("kept");
    env.set("OCX_KEEP_CONTEXT", keep.display().to_string());
    env.ocx(&["build", "--progress", "plain"])
        .status(0)
        .stderr_has("was modified")
        .stderr_has("fetching it again")
        .run();
    let good = fake_elf(62, 7);
    assert_eq!(
        std::fs::read(keep.join("opencode-standard-amd64/opencode")).unwrap(),
        good,
        "what went into the image is the verified binary"
    );
    assert_eq!(
        std::fs::read(&cached).unwrap(),
        good,
        "the cache is repaired"
    );
    // the binary image is labeled with the digest of what went in
    let dockerfile =
        std::fs::read_to_string(keep.join("opencode-standard-amd64/Dockerfile")).unwrap();
    assert!(dockerfile.contains(&sha256_hex(&good)), "{dockerfile}");
}

#[test]
fn a_modified_cache_entry_that_cannot_be_fetched_again_fails() {
    let env = project();
    env.ocx(&["build"]).status(0).run();
    let cached = cached_binary(&env);
    std::fs::write(&cached, fake_elf(62, 9)).unwrap();
    std::fs::remove_file(env.root().join("bins/opencode-linux-x64")).unwrap();
    env.clear_log();
    // a `file:` source that is gone is the user's to fix (exit 2); a download that fails is 1
    env.ocx(&["build", "--progress", "plain"])
        .status(2)
        .stderr_has("was modified")
        .stderr_has("cannot read opencode_source file")
        .run();
    let builds: Vec<_> = env.log().into_iter().filter(|a| a[1] == "build").collect();
    assert!(builds.is_empty(), "{builds:?}");
}

#[test]
fn the_final_image_fingerprint_covers_the_binary_it_holds() {
    let env = project();
    env.ocx(&["build"]).status(0).run();
    let fp = |log: Vec<Vec<String>>| {
        log.iter()
            .flat_map(|a| a.iter())
            .find_map(|a| a.strip_prefix("io.agent-images.fingerprint="))
            .unwrap()
            .to_string()
    };
    let first = fp(env.log());
    // the same image, but the binary image now holds other bytes
    let bin = |elf: &[u8]| {
        docker_inspect_entry(
            "ocx-opencode:1.2.3-standard-amd64",
            &format!(
                r#"{{"io.agent-images.opencode.sha256": "{}"}}"#,
                sha256_hex(elf)
            ),
        )
    };
    let final_image = |fp: &str| {
        docker_inspect_entry(
            &crate::util::ocx_tag("ocx-integrity-dev:1.2.3", 1000, 1000, None),
            &format!(r#"{{"io.agent-images.fingerprint": "{fp}"}}"#),
        )
    };
    env.fake_reply(
        "inspect.json",
        &format!(
            "[{}, {}, {}]",
            docker_inspect_entry(BASE, "null"),
            bin(&fake_elf(62, 7)),
            final_image(&first)
        ),
    );
    env.clear_log();
    env.ocx(&["build"])
        .status(0)
        .stderr_has("is up to date")
        .run();
    env.fake_reply(
        "inspect.json",
        &format!(
            "[{}, {}, {}]",
            docker_inspect_entry(BASE, "null"),
            bin(&fake_elf(62, 8)),
            final_image(&first)
        ),
    );
    env.clear_log();
    env.ocx(&["build"]).status(0).stderr_has("built").run();
    assert_ne!(fp(env.log()), first);
}

/// A cloned repository's ocx.json naming files outside it: one line, exit 2, naming the key
/// and the file, before any engine call.
#[test]
fn project_config_paths_must_stay_inside_the_project() {
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("Dockerfile"), "FROM scratch\n").unwrap();
    let out = outside.path().display().to_string();
    for (json, key, file) in [
        (
            r#"{"custom_base_dockerfile": "../../../../../../../../etc/passwd"}"#.to_string(),
            "custom_base_dockerfile",
            "/etc/passwd".to_string(),
        ),
        (
            r#"{"custom_base_dockerfile": "/etc/passwd"}"#.into(),
            "custom_base_dockerfile",
            "/etc/passwd".into(),
        ),
        (
            r#"{"custom_base_dockerfile": "link/Dockerfile"}"#.into(),
            "custom_base_dockerfile",
            format!("{out}/Dockerfile"),
        ),
        (
            r#"{"custom_base_dockerfile": "Dockerfile", "custom_base_context": "/etc"}"#.into(),
            "custom_base_context",
            "/etc".into(),
        ),
        (
            r#"{"custom_base_dockerfile": "Dockerfile", "custom_base_context": ".."}"#.into(),
            "custom_base_context",
            String::new(),
        ),
        (
            format!(
                r#"{{"opencode_source": "file:{out}/{{asset}}", "opencode_version": "1.0.0"}}"#
            ),
            "opencode_source",
            out.clone(),
        ),
    ] {
        let env = TestEnv::new();
        env.fake("podman");
        env.write("project/ocx.json", &json);
        env.write("project/Dockerfile", "FROM scratch\n");
        std::os::unix::fs::symlink(outside.path(), env.project().join("link")).unwrap();
        let o = env
            .ocx(&["build"])
            .bad_input()
            .stderr_has(format!("error: {key} in "))
            .stderr_has("/project/ocx.json")
            .stderr_has(file)
            .run();
        assert!(o.stderr.contains("outside"), "{}", o.stderr);
        assert!(env.log().is_empty(), "{json}: {:?}", env.log());
    }
}

#[test]
fn the_users_own_config_env_and_flags_may_name_any_path() {
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("Dockerfile.dev"), "FROM scratch\n").unwrap();
    let dockerfile = outside.path().join("Dockerfile.dev").display().to_string();
    let mut env = TestEnv::new();
    env.fake("podman");
    env.write("project/ocx.json", r#"{"opencode_version": "1.0.0"}"#);
    env.set("OCX_CUSTOM_BASE_DOCKERFILE", dockerfile.clone());
    env.ocx(&["build", "--dry-run"])
        .status(0)
        .stdout_has(format!("--file {dockerfile}"))
        .run();
    env.vars.remove("OCX_CUSTOM_BASE_DOCKERFILE");
    env.write(
        "config/ocx/ocx.json",
        &format!(r#"{{"custom_base_dockerfile": "{dockerfile}"}}"#),
    );
    env.ocx(&["build", "--dry-run"])
        .status(0)
        .stdout_has(format!("--file {dockerfile}"))
        .run();
}

#[test]
fn custom_base_context_is_relative_to_the_project() {
    let env = TestEnv::new();
    env.fake("podman");
    env.write(
        "project/ocx.json",
        r#"{"custom_base_dockerfile": ".devcontainer/Dockerfile", "custom_base_context": ".", "opencode_version": "1.0.0"}"#,
    );
    env.write(
        "project/.devcontainer/Dockerfile",
        "FROM scratch\nCOPY . /src\n",
    );
    let project = env.project().canonicalize().unwrap().display().to_string();
    env.ocx(&["build", "--dry-run"])
        .status(0)
        .stdout_has(format!("--file {project}/.devcontainer/Dockerfile"))
        .stdout_has(format!("--pull=missing {project}\n"))
        .run();
}

/// `/a/app` and `/b/app` must not share (and overwrite) one base image.
#[test]
fn projects_with_the_same_dirname_get_different_base_names() {
    let root = tempfile::tempdir().unwrap();
    let re = regex::Regex::new("^ocx-base-app-[0-9a-f]{8}:latest$").unwrap();
    let mut names = Vec::new();
    for parent in ["a", "b"] {
        let env = TestEnv::new();
        env.fake("podman");
        let dir = root.path().join(parent).join("app");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("Dockerfile"), "FROM scratch\n").unwrap();
        std::fs::write(
            dir.join("ocx.json"),
            r#"{"custom_base_dockerfile": "Dockerfile", "opencode_version": "1.0.0"}"#,
        )
        .unwrap();
        let out = env
            .ocx(&["build", "--dry-run", "--project", dir.to_str().unwrap()])
            .status(0)
            .run();
        let first = out.stdout.lines().next().unwrap().to_string();
        let base = first.split_whitespace().nth(3).unwrap().to_string();
        assert!(re.is_match(&base), "{base}");
        names.push(base);
    }
    assert_ne!(names[0], names[1]);
}
