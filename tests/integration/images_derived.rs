//! Issue 16: the derived Dockerfile Headjack's customization guide documents builds:
//! `FROM ghcr.io/gilmanlab/headjack:base`, `RUN apt-get update && apt-get install -y ...`, then a
//! version-manager install (`RUN pyenv install 3.11.9 && pyenv global 3.11.9`). Here it is built
//! FROM the stand-in base ([`crate::standin`]), which ends with images/base's own last lines,
//! with the stand-in's manager (rbenv, the family pyenv, nodenv and goenv come from) installing
//! a version offline. Afterwards the session user the image's `io.headjack.exec.user` label
//! names can still use the manager: install another version, switch, rehash, run it.

use crate::util::standin::env_with_standin;
use crate::util::{engine_stdout, need, succeeds, Need, TestEnv};
use std::process::Command;

/// A ruby-build definition installing a one-file "version" from a local tarball.
fn definition(dir: &std::path::Path, version: &str) {
    let src = dir.join(format!("src/standin-{version}/bin"));
    std::fs::create_dir_all(&src).unwrap();
    let bin = src.join("ruby");
    std::fs::write(&bin, format!("#!/bin/sh\necho standin {version}\n")).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
    let tarball = dir.join(format!("standin-{version}.tar.gz"));
    let ok = Command::new("tar")
        .arg("-C")
        .arg(dir.join("src"))
        .arg("-czf")
        .arg(&tarball)
        .arg(format!("standin-{version}"))
        .status()
        .unwrap();
    assert!(ok.success());
    std::fs::write(
        dir.join(version),
        format!("install_package \"standin-{version}\" \"file:///defs/standin-{version}.tar.gz\" copy\n"),
    )
    .unwrap();
}

fn guide_example(engine: &str) {
    let (env, s) = env_with_standin();
    env.hjk(&s.argv(&["build", "--variant", "base"], &s.repo, engine))
        .run();
    let ctx = env.root().join("derived");
    definition(&ctx.join("defs"), "1.0.0");
    definition(&ctx.join("defs"), "2.0.0");
    // the guide's example, the stand-in's manager in pyenv's place; the COPY only brings the
    // offline definitions the stand-in installs from
    std::fs::write(
        ctx.join("Dockerfile"),
        format!(
            "FROM {}:base\nCOPY defs /defs\nRUN apt-get update && apt-get install -y --no-install-recommends jq && rm -rf /var/lib/apt/lists/*\nRUN rbenv install /defs/1.0.0 && rbenv global 1.0.0\n",
            s.repo
        ),
    )
    .unwrap();
    let tag = format!("hjk-derived-{}:{engine}", std::process::id());
    // as a user builds it: the engine's own default build, no hjk flags
    succeeds(
        Command::new(engine)
            .args(["build", "-q", "-t", &tag])
            .arg(&ctx),
    );
    let user = engine_stdout(
        engine,
        &[
            "image",
            "inspect",
            "--format",
            "{{index .Config.Labels \"io.headjack.exec.user\"}}",
            &tag,
        ],
    );
    assert_eq!(user, "developer");
    let script = "set -e; jq --version >/dev/null; id -un; stat -c %U /opt/rbenv/versions/1.0.0 /opt/rbenv/version; ruby; \
         rbenv install /defs/2.0.0 >/dev/null 2>&1; rbenv global 2.0.0; rbenv rehash; ruby; rbenv versions --bare | tr '\\n' ' '";
    let ran = engine_stdout(
        engine,
        &["run", "--rm", "--user", &user, &tag, "sh", "-c", script],
    );
    let _ = Command::new(engine).args(["rmi", "-f", &tag]).output();
    assert_eq!(
        ran.lines().collect::<Vec<_>>(),
        [
            "developer",
            "developer",
            "developer",
            "standin 1.0.0",
            "standin 2.0.0",
            "1.0.0 2.0.0"
        ],
        "{ran}"
    );
}

#[test]
#[ignore = "needs podman: scripts/test-engines.sh up, then make test"]
fn the_guides_derived_dockerfile_builds_on_podman() {
    need(&[Need::Podman]);
    guide_example("podman");
}

#[test]
#[ignore = "needs docker: scripts/test-engines.sh up, then make test"]
fn the_guides_derived_dockerfile_builds_on_docker() {
    need(&[Need::Docker]);
    guide_example("docker");
}

/// `hjk images resolve --build --json` names the session user the built image's
/// `io.headjack.exec.user` label asks for (a Headjack image's USER is root).
#[test]
#[ignore = "needs podman: scripts/test-engines.sh up, then make test"]
fn resolve_build_names_the_exec_user() {
    need(&[Need::Podman]);
    let mut env = TestEnv::new();
    env.with_system_path();
    env.write(
        "project/Dockerfile.agent",
        &format!(
            "FROM localhost/local/busybox:amd64\nLABEL io.headjack.exec.user=developer io.agent-images.test={}\n",
            std::process::id()
        ),
    );
    let out = env
        .hjk(&[
            "images",
            "resolve",
            "--image",
            "Dockerfile.agent",
            "--build",
            "--backend",
            "podman",
            "--json",
        ])
        .run();
    let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    let _ = Command::new("podman")
        .args(["rmi", "-f", v["image"].as_str().unwrap_or("none")])
        .output();
    assert_eq!(v["exec_user"], "developer", "{v}");
    assert_eq!(v["outcome"], "built", "{v}");
}
