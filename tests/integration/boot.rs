//! `hjk images boot` on real podman and real dockerd, on the stand-in hierarchy
//! ([`crate::standin`]): each variant started from its own labels the way Headjack's runner
//! starts it, systemd `running`, dockerd answering inside dind and running a container, the
//! session user of `io.headjack.exec.user`; a failed unit fails the boot with the unit and its
//! journal; the container is gone afterwards, also after Ctrl-C; a flag the engine refuses is
//! named.

use crate::util::argv::Argv;
use crate::util::fake::Script;
use crate::util::standin::{env_with_standin, StandIn};
use crate::util::{need, wait, Need, TestEnv};
use std::process::Command;
use std::time::{Duration, Instant};

/// `hjk images build --variant V` of the stand-in (a no-op once built: content-addressed repo).
fn build(env: &TestEnv, s: &StandIn, engine: &str, variant: &str) {
    let started = Instant::now();
    let mut args = s.argv(&["build", "--variant", variant], &s.repo, engine);
    args.extend(["--progress", "plain"]);
    env.hjk(&args).run();
    eprintln!(
        "built the stand-in {variant} on {engine} in {:.1}s",
        started.elapsed().as_secs_f64()
    );
}

fn boot(env: &TestEnv, s: &StandIn, engine: &str, args: &[&str]) -> crate::util::Out {
    let mut all = s.argv(&["boot"], &s.repo, engine);
    all.extend_from_slice(args);
    let started = Instant::now();
    let out = env.hjk(&all).output();
    eprintln!(
        "hjk images boot {args:?} on {engine}: exit {} in {:.1}s\n{}{}",
        out.code,
        started.elapsed().as_secs_f64(),
        out.stdout,
        out.stderr
    );
    assert_eq!(leftovers_of(engine, &out.stderr), Vec::<String>::new());
    out
}

/// The containers named `prefix*` that still exist (a boot's are `hjk-boot-<pid>-<n>`, so a
/// test looks only at its own: other tests boot at the same time).
fn containers(engine: &str, prefix: &str) -> Vec<String> {
    let out = Command::new(engine)
        .args([
            "ps",
            "-a",
            "--filter",
            &format!("name={prefix}"),
            "--format",
            "{{.Names}}",
        ])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(String::from)
        .collect()
}

/// The containers the boots that printed `stderr` started (their `booting ... in NAME` line
/// names them) that still exist.
fn leftovers_of(engine: &str, stderr: &str) -> Vec<String> {
    stderr
        .lines()
        .filter_map(|l| l.split(" in hjk-boot-").nth(1))
        .filter_map(|rest| rest.split_whitespace().next())
        .flat_map(|n| containers(engine, &format!("hjk-boot-{n}")))
        .collect()
}

fn boots_the_hierarchy(engine: &str) {
    let (env, s) = env_with_standin();
    build(&env, &s, engine, "dind");
    build(&env, &s, engine, "broken");

    let out = boot(&env, &s, engine, &["dind", "--json"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(v["systemd"], "running", "{v}");
    assert_eq!(v["exec_user"], "developer", "{v}");
    assert!(v["docker"].as_str().is_some_and(|d| !d.is_empty()), "{v}");
    assert_eq!(v["inner_run"], true, "{v}");
    assert_eq!(v["init"], serde_json::json!(["/lib/systemd/systemd"]));
    // the flags are the label's, as the runner spells them
    let flags: Vec<String> = v["flags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f.as_str().unwrap().to_string())
        .collect();
    match engine {
        "podman" => assert_eq!(
            flags,
            [
                "--cgroupns=host",
                "--privileged",
                "--systemd=always",
                "--volume=/sys/fs/cgroup:/sys/fs/cgroup:rw"
            ]
        ),
        _ => assert!(flags.contains(&"--cgroupns=host".to_string()), "{flags:?}"),
    }

    let out = boot(&env, &s, engine, &["systemd"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stdout.contains("booted on") && out.stdout.contains("systemd running"),
        "{}",
        out.stdout
    );

    let out = boot(&env, &s, engine, &["base"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stdout
            .contains("`sleep infinity` running; sessions run as developer"),
        "{}",
        out.stdout
    );

    // an enabled unit that fails: exit 1, the unit, its journal lines
    let out = boot(&env, &s, engine, &["broken", "--timeout", "120"]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(
        out.stderr
            .contains("did not boot: systemd is degraded: hjk-fails.service failed")
            && out.stderr.contains("failed units: hjk-fails.service")
            && out.stderr.contains("journal lines ---"),
        "{}",
        out.stderr
    );
    // allowed by name, it passes as degraded
    let out = boot(
        &env,
        &s,
        engine,
        &["broken", "--allow-failed", "hjk-fails.service"],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stdout
            .contains("systemd degraded (allowed: hjk-fails.service)"),
        "{}",
        out.stdout
    );
}

#[test]
#[ignore = "needs podman: scripts/test-engines.sh up, then make test"]
fn boots_the_standin_hierarchy_on_podman() {
    need(&[Need::Podman]);
    boots_the_hierarchy("podman");
}

#[test]
#[ignore = "needs docker: scripts/test-engines.sh up, then make test"]
fn boots_the_standin_hierarchy_on_docker() {
    need(&[Need::Docker]);
    boots_the_hierarchy("docker");
}

/// Ctrl-C while waiting for systemd: exit 130 and the container is removed.
#[test]
#[ignore = "needs podman: scripts/test-engines.sh up, then make test"]
fn ctrl_c_during_a_boot_removes_the_container() {
    need(&[Need::Podman]);
    let engine = "podman";
    let (env, s) = env_with_standin();
    build(&env, &s, engine, "systemd");
    let mut child = Command::new(assert_cmd::cargo::cargo_bin("hjk"))
        .env_clear()
        .envs(&env.vars)
        .current_dir(env.project())
        .args(s.argv(&["boot", "systemd"], &s.repo, engine))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mine = format!("hjk-boot-{}-", child.id());
    wait::until("a boot container", Duration::from_secs(60), || {
        (!containers(engine, &mine).is_empty()).then_some(())
    });
    let started = Instant::now();
    // SAFETY: kill(2) on the child we spawned
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let status = child.wait().unwrap();
    eprintln!(
        "stopped {:.1}s after the container appeared",
        started.elapsed().as_secs_f64()
    );
    assert_eq!(status.code(), Some(130));
    assert_eq!(containers(engine, &mine), Vec::<String>::new());
}

/// A flag of the label the engine refuses is named, with the engine's words and the fix.
#[test]
#[ignore = "needs podman: scripts/test-engines.sh up, then make test"]
fn a_refused_label_flag_is_named() {
    need(&[Need::Podman]);
    let engine = "podman";
    let (env, s) = env_with_standin();
    build(&env, &s, engine, "flagged");
    let out = boot(&env, &s, engine, &["flagged"]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    let first = out
        .stderr
        .lines()
        .find(|l| l.starts_with("error: "))
        .unwrap();
    assert!(
        first.starts_with("error: podman refused `--bogus-flag=1`, which the image's io.headjack.podman.flags label asks for: \"Error: unknown flag: --bogus-flag")
            && first.contains("runtime.flags"),
        "{}",
        out.stderr
    );
}

/// docker's refusal of `--privileged` under user-namespace remapping, which this machine's
/// daemon cannot be made to give without reconfiguring it: the fake engine replays moby's own
/// message (daemon/create.go), and the error names the flag, the message and the fix.
#[test]
fn a_refused_privileged_flag_is_named() {
    let env = TestEnv::new();
    env.fake("docker");
    env.images_exist(&[(
        "hjk-fake/x:dind",
        r#"{"io.headjack.init": "/lib/systemd/systemd", "io.headjack.docker.flags": "privileged=true cgroupns=host"}"#,
    )]);
    env.script(&Script {
        run_exit: Some(125),
        run_stderr: Some("docker: Error response from daemon: privileged mode is incompatible with user namespaces.  You must run the container in the host namespace when running privileged mode.\nSee 'docker run --help'.\n".into()),
        ..Script::default()
    });
    let out = env
        .hjk(&["images", "boot", "hjk-fake/x:dind", "--backend", "docker"])
        .output();
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(
        out.stderr.contains("error: docker refused `--privileged`, which the image's io.headjack.docker.flags label asks for: \"docker: Error response from daemon: privileged mode is incompatible with user namespaces."),
        "{}",
        out.stderr
    );
    // the container is removed all the same
    assert!(
        env.log()
            .iter()
            .any(|a| a.is(&["rm"]) && a.has("--volumes")),
        "{:?}",
        env.log()
    );
}

/// arm64 under qemu (`--ignored`: emulated apt-get makes the build minutes): the stand-in
/// systemd for linux/arm64, booted with `--platform linux/arm64`. Seen here (podman 4.3.1,
/// qemu-user-static, docs/hjk-images.md "arm64 under qemu"): systemd starts under emulation and comes up
/// `degraded` in about 11 s, because systemd-sysusers, systemd-tmpfiles-setup and
/// systemd-tmpfiles-setup-dev exit with status 243/CREDENTIALS; with those three allowed, the
/// rest of the boot passes.
#[test]
#[ignore = "slow, needs podman: minutes of arm64 apt-get under qemu, so make test leaves it out; cargo test --test integration boot::boots_systemd_for_arm64_under_qemu -- --ignored"]
fn boots_systemd_for_arm64_under_qemu() {
    need(&[Need::Podman]);
    let engine = "podman";
    let (env, s) = env_with_standin();
    let started = Instant::now();
    let mut args = s.argv(&["build", "--variant", "systemd"], &s.repo, engine);
    args.extend([
        "--platform",
        "linux/arm64",
        "--base-image",
        "local/debian:bookworm-arm64",
        "--progress",
        "plain",
    ]);
    env.hjk(&args).run();
    eprintln!("built arm64 in {:.1}s", started.elapsed().as_secs_f64());
    let plain = ["systemd", "--platform", "linux/arm64", "--timeout", "600"];
    let out = boot(&env, &s, engine, &plain);
    if out.code != 0 {
        assert!(
            out.stderr.contains("status=243/CREDENTIALS"),
            "{}",
            out.stderr
        );
        let mut allowed = plain.to_vec();
        for unit in [
            "systemd-sysusers.service",
            "systemd-tmpfiles-setup.service",
            "systemd-tmpfiles-setup-dev.service",
        ] {
            allowed.extend(["--allow-failed", unit]);
        }
        let out = boot(&env, &s, engine, &allowed);
        assert_eq!(out.code, 0, "{}", out.stderr);
    }
}
