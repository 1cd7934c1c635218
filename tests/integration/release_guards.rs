//! What a release refuses before its real work, and what it cleans up when stopped in the
//! middle: `--creds-stdin` from a terminal or a pipe nobody closes, a metadata file that cannot
//! be written, flags `--push-by-digest` would ignore, the logins an engine already has (podman's
//! own files, a docker credential helper), and the temporary auth stores after SIGTERM. The
//! registry is the password registry on 127.0.0.1:5001 (see release.rs).

use crate::util::argv::Argv;
use crate::util::fake::{Build, Pid, Script};
use crate::util::real::busybox_images;
use crate::util::registry::{
    auth_dirs, authfile, copy_fixture, fake_gate_tools, fresh_repo, password, raw, read_meta,
    release_args, setup, Setup, REGISTRY, USER,
};
use crate::util::{need, succeeds, wait, Need, TestEnv};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

fn hjk(env: &TestEnv, args: &[&str]) -> Command {
    let mut c = Command::new(assert_cmd::cargo::cargo_bin("hjk"));
    c.env_clear()
        .envs(&env.vars)
        .current_dir(env.project())
        .args(args);
    c
}

/// Waits for `child` to exit; a child still running after a minute is killed and the test
/// fails (a hang is the failure these tests look for, not a slow run).
fn exit_code(child: &mut Child) -> Option<i32> {
    wait::exit_status(child, Duration::from_secs(60)).code()
}

/// The pid a fake records when it starts sleeping; fails if hjk ends before it.
fn fake_pid(env: &TestEnv, which: Pid, child: &mut Child) -> i32 {
    let file = env.root().join("fake").join(which.file());
    wait::until(
        &format!("{}", file.display()),
        Duration::from_secs(60),
        || {
            if let Some(s) = child.try_wait().unwrap() {
                panic!("hjk exited ({s}) before {} appeared", file.display());
            }
            let text = std::fs::read_to_string(&file).ok()?;
            text.trim().parse().ok()
        },
    )
}

/// Whether a thread of `pid` is blocked in `read(0, ...)`.
fn reading_stdin(pid: u32) -> bool {
    let want = format!("{} 0x0 ", libc::SYS_read);
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .map(|tasks| {
            tasks.flatten().any(|t| {
                std::fs::read_to_string(t.path().join("syscall"))
                    .is_ok_and(|s| s.starts_with(&want))
            })
        })
        .unwrap_or(false)
}

fn sigterm(child: &Child) {
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
}

/// `--creds-stdin` refuses a terminal (the secret would echo, and nobody would know hjk is
/// waiting), and a pipe nobody closes no longer keeps it alive after SIGTERM.
#[test]
fn creds_stdin_refuses_a_terminal_and_gives_way_to_sigterm() {
    let env = TestEnv::new();
    env.fake("podman");
    let images = copy_fixture(&env);
    let repo = format!("{REGISTRY}/hjk-test/stdin");
    let meta = env.root().join("m.json").display().to_string();
    let mut args = release_args(&images, &repo, "linux/amd64", &meta);
    args.extend(["--backend", "podman", "--auth", "raw", "--creds-stdin"]);

    let (mut master, mut slave) = (0, 0);
    let opened = unsafe {
        libc::openpty(
            &mut master,
            &mut slave,
            std::ptr::null_mut(),
            std::ptr::null(),
            std::ptr::null(),
        )
    };
    assert_eq!(opened, 0, "openpty");
    use std::os::fd::FromRawFd;
    let tty = unsafe { std::os::fd::OwnedFd::from_raw_fd(slave) };
    let out = hjk(&env, &args).stdin(Stdio::from(tty)).output().unwrap();
    unsafe { libc::close(master) };
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.starts_with("error: --creds-stdin reads user:password from a pipe, not a terminal"),
        "{stderr}"
    );

    let mut child = hjk(&env, &args)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // hold the write end open, as a forgotten `cat |` would
    let stdin = child.stdin.take().unwrap();
    assert!(
        wait::holds(Duration::from_secs(60), || reading_stdin(child.id())),
        "hjk never read its stdin"
    );
    sigterm(&child);
    assert_eq!(exit_code(&mut child), Some(143));
    drop(stdin);
    assert!(env.log().is_empty(), "{:?}", env.log());
}

/// Bad flags and a metadata file that cannot be written are exit 2 before anything is built
/// or pushed; `--dry-run` names the gates it would run.
#[test]
#[ignore = "needs registry: scripts/test-engines.sh up, then make test"]
fn release_and_merge_refuse_up_front() {
    need(&[Need::Registry]);
    let pw = password();
    let mut env = TestEnv::new();
    env.fake("podman");
    // no gate tool runs here (refusals and a dry run): the fakes only stand on PATH
    fake_gate_tools(&env);
    env.set("HJK_REGISTRY_CREDS", format!("{USER}:{pw}"));
    env.set("HJK_AUTH", "raw");
    let images = copy_fixture(&env);
    let repo = fresh_repo("guards");
    let gone = "/nonexistent/dir/r.json";
    let mut args = release_args(&images, &repo, "linux/amd64", gone);
    args.extend(["--backend", "podman"]);
    env.hjk(&args)
        .bad_input()
        .stderr_has("--metadata-file /nonexistent/dir/r.json: the directory /nonexistent/dir does not exist")
        .run();
    let meta = env.root().join("m.json").display().to_string();
    let mut args = release_args(&images, &repo, "linux/amd64", &meta);
    args.extend(["--backend", "podman", "--push-by-digest", "--scan"]);
    env.hjk(&args)
        .bad_input()
        .stderr_has("--push-by-digest stops before the gates")
        .run();
    assert!(env.log().is_empty(), "{:?}", env.log());

    // merge checks its metadata file before any registry call or gate
    let part = env.root().join("amd64.json");
    std::fs::write(
        &part,
        format!(
            r#"{{"schema": 1, "registry": "{repo}", "version": "v0.1.0", "partial": true, "variants": [
                {{"name": "base", "parent": null, "index_digest": null, "tags": [], "parent_ref": null,
                  "platforms": {{}}, "sbom": [], "signed": false, "scan": null}}]}}"#
        ),
    )
    .unwrap();
    env.hjk(&[
        "images",
        "merge",
        part.to_str().unwrap(),
        "--metadata-file",
        gone,
    ])
    .bad_input()
    .stderr_has("the directory /nonexistent/dir does not exist")
    .run();

    let gates_dir = env.root().join("gates").display().to_string();
    let mut args = release_args(&images, &repo, "linux/amd64", &meta);
    args.extend([
        "--backend",
        "podman",
        "--dry-run",
        "--sbom",
        "--sign",
        "--scan",
    ]);
    args.extend(["--gates-dir", &gates_dir]);
    let out = env.hjk(&args).run();
    assert!(
        out.stdout
            .contains("then: push each variant's index by digest, verify, run the gates (scan, sbom, sign), promote the tags"),
        "{}",
        out.stdout
    );
}

/// docker-config mode finds what podman is logged in with in `$XDG_CONFIG_HOME/containers/
/// auth.json` (podman reads it after its primary file; the primary is
/// `/run/containers/<uid>/auth.json` when `XDG_RUNTIME_DIR` is unset): the registry reads get
/// the credentials instead of going anonymous.
#[test]
#[ignore = "needs podman and registry: scripts/test-engines.sh up, then make test"]
fn docker_config_mode_reads_podmans_own_login_files() {
    need(&[Need::Podman, Need::Registry]);
    let Setup {
        pw,
        mut env,
        images,
        repo,
        ..
    } = setup("podman-login");
    env.vars.remove("HJK_REGISTRY_CREDS");
    // an empty primary file's directory: the test never reads the machine's own logins
    let runtime = env.root().join("run");
    std::fs::create_dir_all(&runtime).unwrap();
    env.set("XDG_RUNTIME_DIR", runtime.display().to_string());
    let auth = authfile(&env, &pw);
    let dir = env.root().join("config/containers");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::rename(auth, dir.join("auth.json")).unwrap();
    let meta = env.root().join("m.json").display().to_string();
    let mut args = release_args(&images, &repo, "linux/amd64", &meta);
    args.extend(["--backend", "podman", "--auth", "docker-config"]);
    let out = env.hjk(&args).run();
    assert!(
        out.stdout.contains("top          index          tagged"),
        "{}",
        out.stdout
    );
}

/// docker-config mode with docker: a `credsStore` helper holds the login; hjk asks it (`get`,
/// the host on stdin) and reads the registry with what it answers.
#[test]
#[ignore = "needs registry: scripts/test-engines.sh up, then make test"]
fn docker_config_mode_asks_the_credential_helper() {
    need(&[Need::Registry]);
    let pw = password();
    let env = TestEnv::new();
    env.fake("docker");
    let images = copy_fixture(&env);
    let asked = env.root().join("asked");
    env.write_exe(
        "docker-credential-hjktest",
        &format!(
            "#!/bin/sh\n/bin/cat >{}\nprintf '{{\"ServerURL\":\"{REGISTRY}\",\"Username\":\"{USER}\",\"Secret\":\"%s\"}}' \"$(/bin/cat {})\"\n",
            asked.display(),
            env.root().join("secret").display()
        ),
    );
    std::fs::write(env.root().join("secret"), &pw).unwrap();
    env.write("home/.docker/config.json", r#"{"credsStore": "hjktest"}"#);
    let repo = fresh_repo("helper");
    let meta = env.root().join("m.json").display().to_string();
    let mut args = release_args(&images, &repo, "linux/amd64", &meta);
    args.extend(["--backend", "docker", "--dry-run"]);
    let out = env.hjk(&args).run();
    assert!(out.stdout.contains("docker buildx build"), "{}", out.stdout);
    assert_eq!(std::fs::read_to_string(&asked).unwrap(), REGISTRY);
    // without the helper the same release is anonymous, which this registry refuses
    std::fs::remove_file(env.bin().join("docker-credential-hjktest")).unwrap();
    env.hjk(&args)
        .bad_input()
        .stderr_has("refused anonymous access (no credentials found)")
        .run();
}

/// SIGTERM in the middle of a release (a fake build that sleeps) removes the engine's
/// temporary auth store and exits 143: podman's `REGISTRY_AUTH_FILE` and docker's
/// `DOCKER_CONFIG`.
#[test]
#[ignore = "needs registry: scripts/test-engines.sh up, then make test"]
fn sigterm_mid_release_removes_the_auth_store() {
    need(&[Need::Registry]);
    let pw = password();
    for engine in ["podman", "docker"] {
        let mut env = TestEnv::new();
        env.fake(engine);
        // the classic builder, which logs in with DOCKER_CONFIG
        env.script(&Script {
            build: Build::Hangs,
            no_buildx: true,
            ..Script::default()
        });
        let tmp = env.root().join("tmp");
        std::fs::create_dir_all(&tmp).unwrap();
        env.set("TMPDIR", tmp.display().to_string());
        env.set("HJK_REGISTRY_CREDS", format!("{USER}:{pw}"));
        let images = copy_fixture(&env);
        let repo = fresh_repo("sigterm");
        let meta = env.root().join("m.json").display().to_string();
        let mut args = release_args(&images, &repo, "linux/amd64", &meta);
        args.extend(["--backend", engine, "--auth", "raw"]);
        let mut child = hjk(&env, &args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        fake_pid(&env, Pid::Build, &mut child);
        let dirs = auth_dirs(&tmp);
        assert_eq!(dirs.len(), 1, "{engine}: {dirs:?}");
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&dirs[0]).unwrap().permissions().mode() & 0o777,
            0o700
        );
        sigterm(&child);
        assert_eq!(exit_code(&mut child), Some(143), "{engine}");
        assert!(
            auth_dirs(&tmp).is_empty(),
            "{engine}: {:?}",
            auth_dirs(&tmp)
        );
        let login = env.log().into_iter().find(|l| l.is(&["login"])).unwrap();
        assert!(!login.join(" ").contains(&pw));
    }
}

/// SIGTERM while a gate runs (a fake trivy that sleeps: the real one cannot be held in the
/// middle of a scan on demand) removes the tools' temporary `DOCKER_CONFIG`, which holds the
/// registry credentials, and exits 143.
#[test]
#[ignore = "needs podman and registry: scripts/test-engines.sh up, then make test"]
fn sigterm_during_the_gates_removes_the_tools_auth_dir() {
    need(&[Need::Podman, Need::Registry]);
    let Setup {
        mut env,
        images,
        repo,
        ..
    } = setup("sigterm-gates");
    fake_gate_tools(&env);
    env.script(&Script {
        trivy_hangs: true,
        ..Script::default()
    });
    let tmp = env.root().join("tmp");
    std::fs::create_dir_all(&tmp).unwrap();
    env.set("TMPDIR", tmp.display().to_string());
    let meta = env.root().join("m.json").display().to_string();
    let gates_dir = env.root().join("gates").display().to_string();
    let mut args = release_args(&images, &repo, "linux/amd64", &meta);
    args.extend(["--backend", "podman", "--auth", "raw", "--scan"]);
    args.extend(["--gates-dir", &gates_dir]);
    let mut child = hjk(&env, &args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    fake_pid(&env, Pid::Trivy, &mut child);
    // the engine's login store is closed by now; the tools' is in use
    let dirs = auth_dirs(&tmp);
    assert_eq!(dirs.len(), 1, "{dirs:?}");
    let config = std::fs::read_to_string(dirs[0].join("config.json")).unwrap();
    assert!(config.contains(REGISTRY), "{config}");
    sigterm(&child);
    assert_eq!(exit_code(&mut child), Some(143));
    assert!(auth_dirs(&tmp).is_empty(), "{:?}", auth_dirs(&tmp));
}

/// The password registry's htpasswd file is made with the password on stdin (`htpasswd -i`),
/// never in an argv, and is 0600: `scripts/test-engines.sh auth-registry` with a fake
/// htpasswd, docker-registry and curl, in a state directory of the test's own.
#[test]
fn the_test_registrys_password_never_reaches_an_argv() {
    let env = TestEnv::new();
    let state = env.root().join("state");
    std::fs::create_dir_all(state.join("auth-registry")).unwrap();
    std::fs::write(state.join("auth-registry/password"), "s3cret-pw\n").unwrap();
    let seen = env.root().join("htpasswd.seen");
    env.write_exe(
        "htpasswd",
        &format!(
            "#!/bin/sh\n{{ echo \"argv: $*\"; echo \"stdin: $(cat)\"; }} >{}\necho 'hjk-release:$2y$05$hash'\n",
            seen.display()
        ),
    );
    env.write_exe("docker-registry", "#!/bin/sh\nexit 0\n");
    env.write_exe("curl", "#!/bin/sh\nprintf 401\n");
    succeeds(
        Command::new(Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/test-engines.sh"))
            .arg("auth-registry")
            .env("PATH", format!("{}:/usr/bin:/bin", env.bin().display()))
            .env("AGENT_IMAGES_ENGINE_STATE", &state),
    );
    let seen = std::fs::read_to_string(&seen).unwrap();
    assert!(seen.contains("stdin: s3cret-pw"), "{seen}");
    let argv = seen.lines().next().unwrap();
    assert!(!argv.contains("s3cret"), "{argv}");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(state.join("auth-registry/htpasswd"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
}

/// `ghcr`, `gcp` and `op` each log in with their own source of the secret, for real, on real
/// podman against the password registry: `GITHUB_ACTOR`/`GITHUB_TOKEN`; `oauth2accesstoken`
/// with the token a (fake) `gcloud auth print-access-token` prints; `op read` of the two
/// references in the user's config. Each pushes a one-variant release, read back with skopeo.
/// The secret is in no tool's argv and in none of hjk's output. A missing source is exit 2
/// naming it, before anything is built.
#[test]
#[ignore = "needs podman and registry: scripts/test-engines.sh up, then make test"]
fn ghcr_gcp_and_op_log_in_with_their_own_secret_source() {
    need(&[Need::Podman, Need::Registry]);
    let pw = password();
    let mut env = TestEnv::new();
    env.with_system_path();
    env.recording("podman", "/usr/bin/podman");
    // the credential tools: each records its argv and prints what the real one would
    let log = env.root().join("tools.log");
    for (tool, body) in [
        (
            "gcloud",
            format!(
                "[ \"$*\" = 'auth print-access-token' ] || exit 3\necho '{pw}'"
            ),
        ),
        (
            "op",
            format!(
                "case \"$*\" in\n  'read op://ci/registry/username') echo {USER} ;;\n  'read op://ci/registry/password') echo '{pw}' ;;\n  *) exit 3 ;;\nesac"
            ),
        ),
    ] {
        let path = env.bin().join(tool);
        std::fs::write(
            &path,
            format!(
                "#!/bin/sh\necho \"{tool} $*\" >>'{}'\n{body}\n",
                log.display()
            ),
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let images = busybox_images(
        &env,
        "ARG BASE_IMAGE=local/busybox:amd64\nFROM ${BASE_IMAGE}\nRUN echo auth-modes > /auth-modes\n",
    );
    let auth = authfile(&env, &pw);
    let release = |env: &TestEnv, mode: &str, repo: &str| {
        let meta = env
            .root()
            .join(format!("{mode}.json"))
            .display()
            .to_string();
        let mut args = release_args(&images, repo, "linux/amd64", &meta);
        args.extend(["--backend", "podman", "--auth", mode]);
        (env.hjk(&args).output(), meta)
    };

    // a missing source: one line, exit 2, nothing built
    env.clear_log();
    let repo = fresh_repo("auth-ghcr");
    let (out, _) = release(&env, "ghcr", &repo);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert_eq!(
        out.stderr.trim(),
        "error: --auth ghcr needs GITHUB_ACTOR in the environment"
    );
    let (out, _) = release(&env, "op", &repo);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.stderr
            .trim()
            .starts_with("error: --auth op needs images.auth.op.username_ref"),
        "{}",
        out.stderr
    );
    env.assert_nothing_built_or_pushed();

    env.set("GITHUB_ACTOR", USER)
        .set("GITHUB_TOKEN", pw.clone());
    std::fs::create_dir_all(env.root().join("config/headjack")).unwrap();
    std::fs::write(
        env.root().join("config/headjack/config.yaml"),
        "images:\n  auth:\n    op:\n      username_ref: op://ci/registry/username\n      password_ref: op://ci/registry/password\n",
    )
    .unwrap();
    for mode in ["ghcr", "gcp", "op"] {
        env.clear_log();
        let repo = fresh_repo(&format!("auth-{mode}"));
        let (out, meta) = release(&env, mode, &repo);
        assert_eq!(out.code, 0, "{mode}: {}", out.stderr);
        assert!(
            !out.stdout.contains(&pw) && !out.stderr.contains(&pw),
            "{mode}: the secret was printed"
        );
        let log = env.log();
        assert!(log.iter().any(|l| l.is(&["login"])), "{mode}: {log:?}");
        assert!(
            !log.iter().any(|l| l.iter().any(|a| a.contains(&pw))),
            "{mode}: the secret is in a podman argv"
        );
        // what the registry holds under the public tag is the index the metadata names
        let m = read_meta(Path::new(&meta));
        let bytes = raw(&auth, &format!("{repo}:base"), false)
            .unwrap_or_else(|| panic!("{mode}: no {repo}:base"));
        assert_eq!(
            m["variants"][0]["index_digest"],
            format!("sha256:{}", crate::util::sha256_hex(&bytes)),
            "{mode}"
        );
    }
    let calls = std::fs::read_to_string(&log).unwrap();
    assert_eq!(
        calls.lines().collect::<Vec<_>>(),
        [
            "gcloud auth print-access-token",
            "op read op://ci/registry/username",
            "op read op://ci/registry/password",
        ]
    );
}
