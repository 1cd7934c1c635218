//! The hostile-environment sweep (issue 9): signals at each stage, a dead daemon, concurrent
//! multi-arch builds, non-UTF-8 output, odd paths and closed pipes. Fake engines where the
//! fault is ours to provoke; real podman and dockerd where only the real engine shows it.

use crate::util::argv::Argv;
use crate::util::fake::Pid;
use crate::util::fake::{Build, Script};
use crate::util::process::{alive, hjk_bin, ocx_bin, signal, spawn, stderr_until};
use crate::util::real::{busybox_images, real_env, real_project};
use crate::util::{fake_elf, fixtures, need, wait, Need, TestEnv, X86_64};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BASE: &str = "faults-dev";

/// A project on a fake engine whose base exists and whose opencode comes from a local file
/// outside the project (named by the environment: a project's ocx.json may not point there).
fn fake_project(engine: &str) -> TestEnv {
    let mut env = TestEnv::new();
    env.fake(engine);
    env.opencode_files(&[("opencode-linux-x64", &fake_elf(X86_64, 0))]);
    env.write(
        "project/ocx.json",
        &format!(
            r#"{{"custom_base_image": "{BASE}", "opencode_version": "1.2.3", "uid": 1000, "gid": 1000, "username": "dev", "platforms": "linux/amd64"}}"#
        ),
    );
    env.images_exist(&[(BASE, "null")]);
    env
}

fn leftover_contexts(env: &TestEnv) -> Vec<String> {
    env.log()
        .iter()
        .filter(|a| a.get(1).map(String::as_str) == Some("build"))
        .filter_map(|a| a.last().cloned())
        .filter(|ctx| Path::new(ctx).exists())
        .collect()
}

#[test]
fn sigterm_and_sighup_stop_a_build_like_ctrl_c() {
    for (sig, code) in [
        (libc::SIGINT, 130),
        (libc::SIGTERM, 143),
        (libc::SIGHUP, 129),
    ] {
        let env = fake_project("podman");
        env.script(&Script {
            build: Build::Hangs,
            ..Script::default()
        });
        let mut child = spawn(&env, &ocx_bin(), &["build"]);
        let engine = env.fake_pid(Pid::Build);
        signal(child.id(), sig);
        let (status, _, stderr) = wait::exit(&mut child, Duration::from_secs(8));
        assert_eq!(status.code(), Some(code), "signal {sig}: {stderr}");
        assert!(stderr.contains("error: interrupted by "), "{stderr}");
        assert!(
            wait::holds(Duration::from_secs(5), || !alive(engine)),
            "signal {sig}: engine {engine} survived"
        );
        assert_eq!(
            leftover_contexts(&env),
            Vec::<String>::new(),
            "signal {sig}"
        );
    }
}

/// `ocx build` on a fake podman whose build ignores signals: the env, the running ocx and the
/// fake engine's pid.
fn stubborn_build() -> (TestEnv, Child, i32) {
    let env = fake_project("podman");
    env.script(&Script {
        build: Build::HangsThroughSignals,
        ..Script::default()
    });
    let child = spawn(&env, &ocx_bin(), &["build"]);
    let engine = env.fake_pid(Pid::Build);
    (env, child, engine)
}

#[test]
fn an_engine_that_ignores_the_signal_is_killed_after_the_grace_period_or_a_second_ctrl_c() {
    // a second Ctrl-C does not wait for the grace period
    let (env, mut child, engine) = stubborn_build();
    signal(child.id(), libc::SIGINT);
    // the first press reaches the build's step (which dies of it) and leaves the build alive
    wait::until(
        "the build's step gets the SIGINT",
        Duration::from_secs(5),
        || {
            env.fake_signals()
                .contains(&"INT".to_string())
                .then_some(())
        },
    );
    assert!(alive(engine), "the engine got time to clean up");
    signal(child.id(), libc::SIGINT);
    // well under the 10 s grace period: the second press killed it
    let (status, _, _) = wait::exit(&mut child, Duration::from_secs(5));
    assert_eq!(status.code(), Some(130));
    assert!(
        wait::holds(Duration::from_secs(5), || !alive(engine)),
        "engine {engine} survived a second Ctrl-C"
    );

    // one SIGTERM: the stubborn engine is killed when the grace period ends
    let (env, mut child, engine) = stubborn_build();
    signal(child.id(), libc::SIGTERM);
    let (status, _, _) = wait::exit(&mut child, Duration::from_secs(20));
    assert_eq!(status.code(), Some(143));
    assert!(
        env.fake_signals().contains(&"TERM".to_string()),
        "the SIGTERM never reached the build's step: {:?}",
        env.fake_signals()
    );
    assert!(
        wait::holds(Duration::from_secs(5), || !alive(engine)),
        "engine {engine} outlived the grace period"
    );
}

/// A server that answers the checksum at once and then trickles the binary, one byte per
/// 100 ms: a download that would take hours. Returns the port and a flag set when the binary
/// request arrived.
fn trickle_server(body_len: usize) -> (u16, std::sync::Arc<std::sync::atomic::AtomicBool>) {
    use std::sync::atomic::{AtomicBool, Ordering};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let started = std::sync::Arc::new(AtomicBool::new(false));
    let flag = started.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().take(4) {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut line = String::new();
            let _ = reader.read_line(&mut line);
            loop {
                let mut h = String::new();
                if reader.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
                    break;
                }
            }
            if line.contains(".sha256") {
                let body = format!("{}  x\n", "a".repeat(64));
                let _ = write!(
                    stream,
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                continue;
            }
            flag.store(true, Ordering::SeqCst);
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Length: {body_len}\r\nConnection: close\r\n\r\n"
            );
            std::thread::spawn(move || {
                for _ in 0..body_len {
                    if stream.write_all(b"x").is_err() {
                        return;
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
            });
        }
    });
    (port, started)
}

#[test]
fn ctrl_c_during_the_download_stops_at_once() {
    let (port, started) = trickle_server(100_000);
    let env = TestEnv::new();
    env.fake("podman");
    env.images_exist(&[(BASE, "null")]);
    env.write(
        "project/ocx.json",
        &format!(
            r#"{{"custom_base_image": "{BASE}", "opencode_version": "9.9.9", "opencode_source": "http://127.0.0.1:{port}/{{asset}}", "uid": 1000, "gid": 1000, "platforms": "linux/amd64"}}"#
        ),
    );
    let mut child = spawn(&env, &ocx_bin(), &["build"]);
    wait::until(
        "the binary's download starts",
        Duration::from_secs(10),
        || {
            started
                .load(std::sync::atomic::Ordering::SeqCst)
                .then_some(())
        },
    );
    signal(child.id(), libc::SIGINT);
    let signalled = Instant::now();
    // the download needs hours; before the fix ocx waited for it (138 s measured). The 5 s
    // bound only catches a hang; the time it took is printed (`--nocapture`), not asserted
    let (status, _, stderr) = wait::exit(&mut child, Duration::from_secs(5));
    eprintln!("ocx stopped {:?} after SIGINT", signalled.elapsed());
    assert_eq!(status.code(), Some(130), "{stderr}");
    assert!(stderr.contains("interrupted by SIGINT"), "{stderr}");
    let cache = env.root().join("cache/ocx/opencode/9.9.9");
    let left: Vec<_> = std::fs::read_dir(&cache)
        .map(|d| d.filter_map(|e| e.ok()).map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "the cache holds {left:?}");
}

#[test]
fn an_interrupt_stops_hjk_even_with_no_fastfail() {
    let env = TestEnv::new();
    env.fake("podman");
    env.script(&Script {
        build: Build::Hangs,
        ..Script::default()
    });
    let images = Path::new(env!("CARGO_MANIFEST_DIR")).join("images");
    let images = images.display().to_string();
    let mut child = spawn(
        &env,
        &hjk_bin(),
        &[
            "images",
            "build",
            "--variant",
            "dind",
            "--images-dir",
            &images,
            "--no-fastfail",
            "--platform",
            "linux/amd64",
        ],
    );
    env.fake_pid(Pid::Build);
    signal(child.id(), libc::SIGINT);
    let (status, _, stderr) = wait::exit(&mut child, Duration::from_secs(8));
    assert_eq!(status.code(), Some(130), "{stderr}");
    let builds = env.log().iter().filter(|a| a.is(&["build"])).count();
    assert_eq!(builds, 1, "it went on building: {:?}", env.log());
}

/// `hjk images build --variant base --images-dir IMAGES --registry REGISTRY --platform P`,
/// then `extra`.
fn base_build_args<'a>(
    images: &'a str,
    registry: &'a str,
    platform: &'a str,
    extra: &[&'a str],
) -> Vec<&'a str> {
    let mut args = vec![
        "images",
        "build",
        "--variant",
        "base",
        "--images-dir",
        images,
        "--registry",
        registry,
        "--platform",
        platform,
    ];
    args.extend_from_slice(extra);
    args
}

/// Real podman, no cache, plain progress: what a base build on a real engine adds.
const REAL_PODMAN: [&str; 5] = ["--backend", "podman", "--no-cache", "--progress", "plain"];

/// `hjk images build --variant base` of the hierarchy fixture on a fake podman told to fail
/// by `script`; the env lives as long as the run.
fn base_build_failing(
    script: Script,
    registry: &str,
    platform: &str,
    push: bool,
) -> (TestEnv, crate::util::Run) {
    let env = TestEnv::new();
    env.fake("podman").script(&script);
    let images = fixtures().join("hierarchy").display().to_string();
    let push: &[&str] = if push { &["--push"] } else { &[] };
    let run = env
        .hjk(&base_build_args(&images, registry, platform, push))
        .status(1);
    (env, run)
}

#[test]
fn a_push_failure_is_reported_as_one() {
    let (_env, run) = base_build_failing(
        Script {
            push_fails: true,
            ..Script::default()
        },
        "127.0.0.1:5000/faults/push",
        "linux/amd64",
        true,
    );
    let out = run
        .stderr_has("1 of 1 image(s) failed: 127.0.0.1:5000/faults/push:base (push)")
        .stdout_has("PUSH-FAILED")
        .run();
    assert!(!out.stdout.contains(" FAILED"), "{}", out.stdout);
}

/// When assembling a multi-platform list fails, the summary is still printed, naming that step.
#[test]
fn a_failed_manifest_list_still_prints_the_summary() {
    let (_env, run) = base_build_failing(
        Script {
            manifest_add_fails: true,
            ..Script::default()
        },
        "localhost/faults/list",
        "linux/amd64,linux/arm64",
        false,
    );
    let out = run
        .stderr_has("(manifest list)")
        .stdout_has("LIST-FAILED")
        .run();
    let rows = crate::util::summary_rows(&out.stdout);
    assert_eq!(
        rows,
        [
            ("base".into(), "linux/amd64".into(), "LIST-FAILED".into()),
            ("base".into(), "linux/arm64".into(), "LIST-FAILED".into()),
        ],
        "{}",
        out.stdout
    );
}

#[test]
fn a_dead_engine_is_an_engine_error_not_a_missing_image() {
    let env = fake_project("docker");
    env.script(&Script {
        engine_down: true,
        ..Script::default()
    });
    std::fs::remove_dir_all(env.root().join("fake/images")).unwrap();
    let out = env
        .ocx(&["build"])
        .status(1)
        .stderr_has("docker could not answer `docker image inspect")
        .stderr_has("Cannot connect to the docker daemon")
        .run();
    assert!(!out.stderr.contains("not found"), "{}", out.stderr);
    let images = fixtures().join("hierarchy").display().to_string();
    env.hjk(&["images", "list", "--images-dir", &images])
        .status(1)
        .stderr_has("Cannot connect to the docker daemon")
        .run();
}

#[test]
#[ignore = "needs docker: scripts/test-engines.sh up, then make test"]
fn dead_docker_daemon_for_real() {
    need(&[Need::Docker]);
    let mut env = TestEnv::new();
    env.with_system_path();
    env.set("DOCKER_HOST", "unix:///nonexistent/docker.sock");
    env.write(
        "project/ocx.json",
        r#"{"custom_base_image": "local/debian:bookworm", "opencode_version": "1.18.18", "backend": "docker"}"#,
    );
    let out = env
        .ocx(&["build"])
        .status(1)
        .stderr_has("Cannot connect to the Docker daemon at unix:///nonexistent/docker.sock")
        .run();
    assert!(!out.stderr.contains("not found"), "{}", out.stderr);
    let images = fixtures().join("hierarchy").display().to_string();
    let out = env
        .hjk(&[
            "images",
            "list",
            "--images-dir",
            &images,
            "--backend",
            "docker",
        ])
        .status(1)
        .stderr_has("Cannot connect to the Docker daemon at unix:///nonexistent/docker.sock")
        .run();
    assert!(out.stdout.is_empty(), "no rows claiming 'built: no'");
}

/// Runs `bin args` with stdout already closed, as `| head -0` would leave it.
fn with_closed_stdout(env: &TestEnv, bin: &Path, args: &[&str]) -> (i32, String) {
    let mut fds = [0i32; 2];
    // SAFETY: pipe(2) fills two fds we then own
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
    // SAFETY: closing the read end we own; writes to the other end now fail with EPIPE
    unsafe { libc::close(fds[0]) };
    use std::os::fd::FromRawFd;
    // SAFETY: fds[1] is an open fd we own and hand over
    let write_end = unsafe { std::fs::File::from_raw_fd(fds[1]) };
    let out = Command::new(bin)
        .args(args)
        .env_clear()
        .envs(&env.vars)
        .current_dir(env.project())
        .stdout(Stdio::from(write_end))
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_closed_stdout_ends_every_command_quietly() {
    let env = fake_project("podman");
    let images = Path::new(env!("CARGO_MANIFEST_DIR")).join("images");
    let images = images.display().to_string();
    let cases: Vec<(std::path::PathBuf, Vec<&str>)> = vec![
        (ocx_bin(), vec!["--dry-run", "build"]),
        (ocx_bin(), vec!["--dry-run", "opencode", "--version"]),
        (ocx_bin(), vec!["--dry-run", "exec", "--", "true"]),
        (ocx_bin(), vec!["config", "show"]),
        (ocx_bin(), vec!["--help"]),
        (ocx_bin(), vec!["--version"]),
        (hjk_bin(), vec!["images", "list", "--images-dir", &images]),
        (
            hjk_bin(),
            vec!["images", "list", "--images-dir", &images, "--json"],
        ),
        (hjk_bin(), vec!["images", "resolve"]),
        (
            hjk_bin(),
            vec![
                "images",
                "build",
                "--variant",
                "dind",
                "--images-dir",
                &images,
                "--dry-run",
            ],
        ),
        (hjk_bin(), vec!["--help"]),
    ];
    closed_stdout_is_quiet(&env, cases);
}

/// Each of `cases` (binary, args) with stdout closed: exit 0, no panic, no error.
fn closed_stdout_is_quiet(env: &TestEnv, cases: Vec<(std::path::PathBuf, Vec<&str>)>) {
    for (bin, args) in cases {
        let (code, stderr) = with_closed_stdout(env, &bin, &args);
        assert_eq!(code, 0, "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
        assert!(!stderr.contains("error"), "{args:?}: {stderr}");
    }
}

/// The same for a release's dry run, which plans after reading the registry (the plain one
/// scripts/test-engines.sh runs).
#[test]
#[ignore = "needs plain registry: scripts/test-engines.sh up, then make test"]
fn a_closed_stdout_ends_a_release_dry_run_quietly() {
    need(&[Need::PlainRegistry]);
    let env = fake_project("podman");
    let release_fixture = fixtures().join("release").display().to_string();
    let repo = format!("127.0.0.1:5000/faults/closed-{}", std::process::id());
    let release = (
        hjk_bin(),
        vec![
            "images",
            "release",
            "--all",
            "--images-dir",
            &release_fixture,
            "--registry",
            &repo,
            "--platform",
            "linux/amd64",
            "--backend",
            "podman",
            "--base-image",
            "local/busybox:amd64",
            "--dry-run",
        ],
    );
    closed_stdout_is_quiet(&env, vec![release]);
}

#[test]
fn dry_run_with_json_progress_prints_only_json() {
    let env = fake_project("docker");
    env.write("project/Dockerfile.dev", "FROM scratch\n");
    let out = env
        .ocx(&[
            "--dry-run",
            "--progress",
            "json",
            "--custom-base-dockerfile",
            "Dockerfile.dev",
            "exec",
            "--",
            "true",
        ])
        .run();
    let images = Path::new(env!("CARGO_MANIFEST_DIR")).join("images");
    let images = images.display().to_string();
    let hjk = env
        .hjk(&[
            "images",
            "build",
            "--variant",
            "dind",
            "--images-dir",
            &images,
            "--dry-run",
            "--progress",
            "json",
        ])
        .run();
    for stdout in [out.stdout, hjk.stdout] {
        only_json_with_commands(&stdout);
    }
}

/// Every line of `stdout` is a JSON event, and some are `command` events.
fn only_json_with_commands(stdout: &str) {
    let mut kinds = Vec::new();
    for line in stdout.lines() {
        let v: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {line:?}\n{stdout}"));
        kinds.push(v["event"].as_str().unwrap().to_string());
    }
    assert!(kinds.iter().any(|k| k == "command"), "{kinds:?}");
}

/// The same for a release, which plans after reading the registry (the plain one
/// scripts/test-engines.sh runs).
#[test]
#[ignore = "needs plain registry: scripts/test-engines.sh up, then make test"]
fn a_release_dry_run_with_json_progress_prints_only_json() {
    need(&[Need::PlainRegistry]);
    let env = fake_project("podman");
    let release = env
        .hjk(&[
            "images",
            "release",
            "--all",
            "--images-dir",
            &fixtures().join("release").display().to_string(),
            "--registry",
            &format!("127.0.0.1:5000/faults/json-{}", std::process::id()),
            "--platform",
            "linux/amd64",
            "--backend",
            "podman",
            "--version",
            "v0.1.0",
            "--base-image",
            "local/busybox:amd64",
            "--dry-run",
            "--progress",
            "json",
        ])
        .status(0)
        .run();
    only_json_with_commands(&release.stdout);
}

#[test]
fn a_sessions_output_becomes_json_events_with_json_progress() {
    let env = fake_project("podman");
    env.script(&Script {
        inspect: Some(format!(
            "[{}, {}]",
            crate::util::docker_inspect_entry(BASE, "null"),
            crate::util::docker_inspect_entry(
                &crate::util::ocx_tag("ocx-faults-dev:1.2.3", 1000, 1000, Some("dev")),
                "null"
            )
        )),
        ..Script::default()
    });
    let out = env
        .ocx(&["--progress", "json", "exec", "--", "echo", "hi"])
        .run();
    let lines: Vec<serde_json::Value> = out
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l:?}")))
        .collect();
    assert!(
        lines
            .iter()
            .any(|v| v["event"] == "line" && v["line"] == "fake run"),
        "{}",
        out.stdout
    );
}

#[test]
fn non_utf8_environment_variables_do_not_panic() {
    use std::os::unix::ffi::OsStrExt;
    let env = fake_project("podman");
    let bad = std::ffi::OsStr::from_bytes(b"caf\xe9");
    let out = Command::new(ocx_bin())
        .args(["config", "show"])
        .env_clear()
        .envs(&env.vars)
        .env("SOME_VAR", bad)
        .env("OCX_USERNAME", bad)
        .current_dir(env.project())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("warning: ignoring OCX_USERNAME: its value is not valid UTF-8"),
        "{stderr}"
    );
    let out = Command::new(hjk_bin())
        .args(["images", "resolve"])
        .env_clear()
        .envs(&env.vars)
        .env("SOME_VAR", bad)
        .current_dir(env.project())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
}

#[test]
fn the_classic_builders_deprecation_notice_is_explained_once_and_not_shown() {
    let env = fake_project("docker");
    env.script(&Script {
        no_buildx: true,
        build_noise: true,
        ..Script::default()
    });
    let out = env.ocx(&["build", "--progress", "plain"]).run();
    assert!(
        !out.stderr.contains("DEPRECATED")
            && !out.stderr.contains("BuildKit is currently disabled")
            && !out.stderr.contains("environment-variable."),
        "{}",
        out.stderr
    );
    assert_eq!(
        out.stderr.matches("legacy builder is deprecated").count(),
        1,
        "{}",
        out.stderr
    );
}

#[test]
#[ignore = "needs podman: scripts/test-engines.sh up, then make test"]
fn concurrent_multi_arch_builds_of_one_tag_take_turns() {
    need(&[Need::Podman]);
    let mut env = TestEnv::new();
    env.with_system_path();
    let images = busybox_images(
        &env,
        "ARG TARGETARCH\nARG BASE_IMAGE=local/busybox:${TARGETARCH}\nFROM ${BASE_IMAGE}\nARG RUN_ID\nRUN echo \"$RUN_ID\" > /run-id\n",
    );
    let reg = "localhost/faults/race";
    let args = |n: &str| {
        vec![
            "images".to_string(),
            "build".into(),
            "--variant".into(),
            "base".into(),
            "--images-dir".into(),
            images.clone(),
            "--registry".into(),
            reg.into(),
            "--platform".into(),
            "linux/amd64,linux/arm64".into(),
            "--backend".into(),
            "podman".into(),
            "--version".into(),
            format!("v0.0.{n}"),
        ]
    };
    let children: Vec<Child> = ["1", "2"]
        .iter()
        .map(|n| {
            let a = args(n);
            let a: Vec<&str> = a.iter().map(String::as_str).collect();
            spawn(&env, &hjk_bin(), &a)
        })
        .collect();
    for mut c in children {
        let (status, stdout, stderr) = wait::exit(&mut c, Duration::from_secs(300));
        assert_eq!(status.code(), Some(0), "{stdout}\n{stderr}");
        assert!(stdout.starts_with("VARIANT"), "the summary: {stdout}");
    }
    assert_eq!(
        crate::util::manifest_arches(&format!("{reg}:base")),
        ["amd64", "arm64"]
    );
}

#[test]
#[ignore = "needs podman: scripts/test-engines.sh up, then make test"]
fn non_utf8_build_output_does_not_break_a_real_build() {
    need(&[Need::Podman]);
    let mut env = TestEnv::new();
    env.with_system_path();
    // more than a 64 KiB pipe buffer of lines with invalid UTF-8 (about 85 KB), then success
    let images = busybox_images(
        &env,
        "ARG BASE_IMAGE=local/busybox:amd64\nFROM ${BASE_IMAGE}\nRUN i=0; while [ $i -lt 6500 ]; do printf 'caf\\351 %s \\377\\376\\n' $i; i=$((i+1)); done\n",
    );
    env.hjk(&base_build_args(
        &images,
        "localhost/faults/bytes",
        "linux/amd64",
        &REAL_PODMAN,
    ))
    .stderr_has("caf\u{fffd} 6499")
    .run();
}

fn spawn_in(env: &TestEnv, dir: &Path, args: &[&str]) -> Child {
    Command::new(ocx_bin())
        .args(args)
        .env_clear()
        .envs(&env.vars)
        .current_dir(dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn containers(engine: &str, name: &str) -> String {
    let out = Command::new(engine)
        .args([
            "ps",
            "-a",
            "--filter",
            &format!("name={name}"),
            "--format",
            "{{.Names}}",
        ])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn exec_odd_paths_and_sigterm(engine: &str) {
    // a `:` breaks `-v`; `,`, `"` and a line break break CSV-parsed flag values
    let root = tempfile::tempdir().unwrap();
    let project = root.path().join("we:ird,pro\"ject\nline two");
    let env = real_project(engine, &project);
    let mut c = spawn_in(&env, &project, &["exec", "--", "pwd"]);
    let (status, stdout, stderr) = wait::exit(&mut c, Duration::from_secs(600));
    assert_eq!(status.code(), Some(0), "{stderr}");
    assert_eq!(
        stdout.trim(),
        project.canonicalize().unwrap().display().to_string()
    );

    // SIGTERM while a session runs: PID 1 (`sleep`) ignores it, so the container must be
    // removed by name, and ocx exits 143
    let mut c = spawn_in(&env, &project, &["exec", "--", "sleep", "300"]);
    let name = format!("ocx-{}", c.id());
    wait::holds(Duration::from_secs(20), || {
        !containers(engine, &name).is_empty()
    });
    assert_eq!(containers(engine, &name), name, "the session never started");
    signal(c.id(), libc::SIGTERM);
    let (status, _, stderr) = wait::exit(&mut c, Duration::from_secs(60));
    assert_eq!(status.code(), Some(143), "{stderr}");
    assert_eq!(containers(engine, &name), "", "{name} outlived ocx");
}

#[test]
#[ignore = "needs podman: scripts/test-engines.sh up, then make test"]
fn podman_exec_handles_odd_paths_and_sigterm() {
    need(&[Need::Podman]);
    exec_odd_paths_and_sigterm("podman");
}

#[test]
#[ignore = "needs docker: scripts/test-engines.sh up, then make test"]
fn docker_exec_handles_odd_paths_and_sigterm() {
    need(&[Need::Docker]);
    exec_odd_paths_and_sigterm("docker");
}

/// podman reads `--file` as CSV: a `,` or `"` in the Dockerfile's directory, or a line break in
/// the project's path, must reach it quoted. (A line break in a config value itself is refused
/// as input, exit 2.)
#[test]
#[ignore = "needs podman: scripts/test-engines.sh up, then make test"]
fn podman_dockerfile_path_with_a_comma_a_quote_and_a_line_break() {
    need(&[Need::Podman]);
    let env = real_env();
    let project = env.root().join("pro\nject");
    std::fs::create_dir_all(project.join("docker,\"x\"")).unwrap();
    std::fs::write(
        project.join("docker,\"x\"/Dockerfile"),
        "FROM local/debian:bookworm\nRUN echo ok > /built\n",
    )
    .unwrap();
    // builds the base from `dockerfile` (relative to the project) as `faults/<name>`
    let build = |name: &str, dockerfile: &str| {
        std::fs::write(
            project.join("ocx.json"),
            format!(
                r#"{{"custom_base_image": "faults/{name}", "custom_base_dockerfile": {},
                    "opencode_version": "1.18.18", "opencode_source": "npm", "uid": 0, "gid": 0,
                    "backend": "podman", "platforms": "linux/amd64"}}"#,
                serde_json::to_string(dockerfile).unwrap()
            ),
        )
        .unwrap();
        let mut c = env.cmd("ocx");
        c.args(["build", "--rebuild-base", "--force"])
            .current_dir(&project);
        let out = crate::util::run(c);
        assert_eq!(out.code, 0, "{}", out.stderr);
        assert!(
            out.stderr
                .contains(&format!("built ocx-faults-{name}:1.18.18")),
            "{}",
            out.stderr
        );
    };
    build("comma-base", "docker,\"x\"/Dockerfile");
    // a line break alone (nothing else in the path needs quoting)
    std::fs::write(
        project.join("Dockerfile"),
        "FROM local/debian:bookworm\nRUN echo plain > /built\n",
    )
    .unwrap();
    build("newline-base", "Dockerfile");
    // and a line break in the config value is bad input, named
    std::fs::write(
        project.join("ocx.json"),
        r#"{"custom_base_image": "faults/comma-base", "custom_base_dockerfile": "docker\ny/Dockerfile"}"#,
    )
    .unwrap();
    let mut c = env.cmd("ocx");
    c.args(["build"]).current_dir(&project);
    let out = crate::util::run(c);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.stderr.contains("invalid custom_base_dockerfile"),
        "{}",
        out.stderr
    );
}

#[test]
#[ignore = "needs podman: scripts/test-engines.sh up, then make test"]
fn podman_ctrl_c_leaves_no_working_container() {
    need(&[Need::Podman]);
    let mut env = TestEnv::new();
    env.with_system_path();
    // a base tag of our own, so our working container can be told from concurrent tests'
    let tagged = Command::new("podman")
        .args(["tag", "local/busybox:amd64", "faults-sigint-from:1"])
        .status()
        .unwrap();
    assert!(tagged.success());
    let images = busybox_images(
        &env,
        "ARG BASE_IMAGE=faults-sigint-from:1\nFROM ${BASE_IMAGE}\nRUN echo started; sleep 120\n",
    );
    let mut child = spawn(
        &env,
        &hjk_bin(),
        &base_build_args(
            &images,
            "localhost/faults/sigint",
            "linux/amd64",
            &REAL_PODMAN,
        ),
    );
    // wait until the RUN step runs
    // the rest of what hjk prints, drained so it never blocks and shown if an assertion fails
    let (_, rest) = stderr_until(&mut child, |l| l.trim() == "started");
    let working = || {
        let out = Command::new("podman")
            .args([
                "ps",
                "-a",
                "--external",
                "--format",
                "{{.Image}} {{.Names}}",
            ])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| l.contains("faults-sigint-from"))
            .map(String::from)
            .collect::<Vec<_>>()
    };
    assert!(!working().is_empty(), "no working container while building");
    signal(child.id(), libc::SIGINT);
    let start = Instant::now();
    let status = wait::exit_status(&mut child, Duration::from_secs(60));
    let stopped_after = start.elapsed();
    let rest = rest.join().unwrap();
    assert_eq!(
        status.code().or(status.signal().map(|s| 128 + s)),
        Some(130),
        "after {stopped_after:?}:\n{}",
        rest.join("\n")
    );
    wait::holds(Duration::from_secs(10), || working().is_empty());
    assert_eq!(
        working(),
        Vec::<String>::new(),
        "podman left its working container; hjk stopped after {stopped_after:?}:\n{}",
        rest.join("\n")
    );
    let ps = Command::new("pgrep")
        .args(["-a", "-f", "faults/sigint"])
        .output()
        .unwrap();
    let survivors = String::from_utf8_lossy(&ps.stdout);
    assert!(
        survivors.trim().is_empty(),
        "an engine process survived: {survivors}"
    );
}

// A hostile ocx.json: a dangling symlink is an error naming it (not "no config", which would
// apply the defaults), and a FIFO is refused instead of blocking the read forever.
#[test]
fn a_dangling_or_fifo_ocx_json_is_refused_naming_it() {
    let env = TestEnv::new();
    std::fs::create_dir_all(env.project()).unwrap();
    let config = env.project().join("ocx.json");
    // exit 2 and one line naming the file and why, without hanging
    let refused = |why: &str| {
        let mut child = spawn(&env, &ocx_bin(), &["--dry-run", "build"]);
        let (status, _, stderr) = wait::exit(&mut child, Duration::from_secs(20));
        assert_eq!(status.code(), Some(2), "{stderr}");
        assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
        assert!(
            stderr.contains(&config.display().to_string()) && stderr.contains(why),
            "{stderr}"
        );
    };
    std::os::unix::fs::symlink(env.root().join("gone.json"), &config).unwrap();
    refused("symlink");

    std::fs::remove_file(&config).unwrap();
    let c = std::ffi::CString::new(config.to_str().unwrap()).unwrap();
    // SAFETY: mkfifo on a path in our temporary directory, with a valid C string
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    refused("not a regular file");
}

/// ocx on a real engine, interrupted while the base builds (a RUN that sleeps) or while the
/// final image builds (the base's ONBUILD trigger sleeps there): ocx exits 128+signal, and no
/// build process, no build container and no generated context is left behind.
fn interrupt_a_real_ocx_build(lane: &str, stage: &str, sig: i32, code: i32) {
    let engine = if lane == "podman" { "podman" } else { "docker" };
    let mut env = real_env();
    if lane == "docker-classic" {
        env.classic_docker();
    }
    let tmp = env.root().join("tmp");
    std::fs::create_dir_all(&tmp).unwrap();
    env.set("TMPDIR", tmp.display().to_string());
    let marker = format!("faults-sig-{lane}-{stage}-{}", std::process::id());
    let from = format!("{marker}-from:1");
    let tagged = Command::new(engine)
        .args(["tag", "local/debian:bookworm", &from])
        .status()
        .unwrap();
    assert!(tagged.success());
    let step = format!("RUN echo started-{marker}; sleep 120");
    let dockerfile = match stage {
        "base" => format!("FROM {from}\n{step}\n"),
        _ => format!("FROM {from}\nONBUILD {step}\n"),
    };
    env.write("project/Dockerfile", &dockerfile);
    env.write(
        "project/ocx.json",
        &format!(
            r#"{{"custom_base_image": "faults/{marker}", "custom_base_dockerfile": "Dockerfile",
                "opencode_version": "1.18.18", "opencode_source": "npm", "uid": 0, "gid": 0,
                "backend": "{engine}", "platforms": "linux/amd64"}}"#
        ),
    );
    let mut child = spawn(&env, &ocx_bin(), &["--progress", "plain", "build"]);
    let started = format!("started-{marker}");
    let (_, rest) = stderr_until(&mut child, |l| l.trim().ends_with(&started));
    // the build's containers: podman's working containers name their image; the classic
    // builder's RUN containers descend from the tagged base; BuildKit runs its steps outside
    // docker's container list, so there it is the step's own process
    let build_containers = || {
        let out = match lane {
            "docker" => Command::new("pgrep")
                .args(["-a", "-f", &format!("started-{marker}")])
                .output(),
            "podman" => Command::new("podman")
                .args([
                    "ps",
                    "-a",
                    "--external",
                    "--format",
                    "{{.Image}} {{.Names}}",
                ])
                .output(),
            _ => Command::new("docker")
                .args([
                    "ps",
                    "-a",
                    "--filter",
                    &format!("ancestor={from}"),
                    "--format",
                    "{{.Image}} {{.Names}}",
                ])
                .output(),
        }
        .unwrap();
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| engine == "docker" || l.contains(&marker))
            .filter(|l| !l.is_empty())
            .map(String::from)
            .collect::<Vec<_>>()
    };
    assert!(
        !build_containers().is_empty(),
        "no build container while building"
    );
    signal(child.id(), sig);
    let status = wait::exit_status(&mut child, Duration::from_secs(60));
    let rest = rest.join().unwrap().join("\n");
    assert_eq!(status.code(), Some(code), "{rest}");
    assert!(rest.contains("error: interrupted by "), "{rest}");
    wait::holds(Duration::from_secs(10), || build_containers().is_empty());
    assert_eq!(build_containers(), Vec::<String>::new(), "{rest}");
    let ps = Command::new("pgrep")
        .args(["-a", "-f", &format!("started-{marker}")])
        .output()
        .unwrap();
    let survivors = String::from_utf8_lossy(&ps.stdout);
    assert!(survivors.trim().is_empty(), "survived: {survivors}");
    let left: Vec<_> = std::fs::read_dir(&tmp)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("ocx-context-"))
        .collect();
    assert_eq!(left, Vec::<String>::new(), "generated contexts left behind");
    // the names are this run's own: remove them, so runs do not pile up images
    let _ = Command::new(engine)
        .args(["rmi", &format!("faults/{marker}"), &from])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

#[test]
#[ignore = "needs podman: scripts/test-engines.sh up, then make test"]
fn podman_ocx_interrupted_in_the_base_or_the_final_build_leaves_nothing() {
    need(&[Need::Podman]);
    interrupt_a_real_ocx_build("podman", "base", libc::SIGINT, 130);
    interrupt_a_real_ocx_build("podman", "final", libc::SIGTERM, 143);
}

#[test]
#[ignore = "needs docker: scripts/test-engines.sh up, then make test"]
fn docker_ocx_interrupted_in_the_base_or_the_final_build_leaves_nothing() {
    need(&[Need::Docker]);
    interrupt_a_real_ocx_build("docker", "base", libc::SIGTERM, 143);
    interrupt_a_real_ocx_build("docker", "final", libc::SIGHUP, 129);
}

#[test]
#[ignore = "needs docker-classic: scripts/test-engines.sh up, then make test"]
fn docker_classic_ocx_interrupted_in_the_base_or_the_final_build_leaves_nothing() {
    need(&[Need::DockerClassic]);
    interrupt_a_real_ocx_build("docker-classic", "base", libc::SIGINT, 130);
    interrupt_a_real_ocx_build("docker-classic", "final", libc::SIGTERM, 143);
}
