//! Issue 18, item 1 and "done when" 2: a signal to hjk or ocx during any kind of build step
//! (RUN, ENV/LABEL, COPY, the commit after a step) leaves the engine's store usable and no build
//! container or step process behind, on real podman and real dockerd (BuildKit).
//!
//! podman runs on a store of the test's own (`CONTAINERS_STORAGE_CONF`, holding a copy of
//! local/busybox:amd64): a test that breaks it breaks nobody else's builds, and every working
//! container in it is the test's. podman 4.3 exits at once on SIGINT/SIGTERM, even mid-commit;
//! signalled itself it left its working container every time and, in a commit, a half-written
//! image after which `podman images` failed for every user of the store until `podman rmi -f`.

use crate::util::process::{hjk_bin, ocx_bin, spawn_group, stderr_until};
use crate::util::real::{busybox_images, real_project, PodmanStore};
use crate::util::registry::{raw, release_args, setup};
use crate::util::{need, wait, Need, TestEnv};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The kinds of build step a signal can land in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StepKind {
    Run,
    EnvLabel,
    Copy,
    Commit,
}

impl StepKind {
    const ALL: [StepKind; 4] = [
        StepKind::Run,
        StepKind::EnvLabel,
        StepKind::Copy,
        StepKind::Commit,
    ];

    /// A Dockerfile FROM `from` whose build is in this kind of step when a line it prints
    /// matches [`StepKind::trigger`]. `marker` is unique to the run.
    fn dockerfile(self, from: &str, marker: &str) -> String {
        match self {
            // the RUN line itself ends in `sleep 120`, its output in the marker
            StepKind::Run => format!("FROM {from}\nRUN echo started-{marker}; sleep 120\n"),
            StepKind::EnvLabel => {
                let mut d = format!("FROM {from}\nRUN echo started-{marker}; true\n");
                for i in 0..40 {
                    d.push_str(&format!("ENV E{i}=x{i}\nLABEL l{i}=x{i}\n"));
                }
                d
            }
            StepKind::Copy => {
                format!("FROM {from}\nRUN echo started-{marker}; true\nCOPY big.bin /big.bin\n")
            }
            // the step writes 200 MB and ends: the signal lands in the commit of that layer
            StepKind::Commit => format!(
                "FROM {from}\nRUN head -c 200000000 /dev/urandom > /big && echo written-{marker} && true\n"
            ),
        }
    }

    /// How long after the trigger line the signal is sent: a commit starts when the step's
    /// process has ended (podman took 3 s to commit the 200 MB layer).
    fn delay(self) -> Duration {
        match self {
            StepKind::Commit => Duration::from_millis(700),
            _ => Duration::ZERO,
        }
    }

    /// Whether `line` (what hjk or ocx printed) says the build is in this kind of step.
    fn trigger(self, engine: &str, line: &str, marker: &str) -> bool {
        let line = line.trim();
        match (self, engine) {
            (StepKind::Run, _) => line.ends_with(&format!("started-{marker}")),
            // podman commits each ENV and LABEL as a step; BuildKit only records them, after
            // the RUN before them
            (StepKind::EnvLabel, "podman") => line.contains("ENV E2=x2"),
            (StepKind::EnvLabel, _) => line.ends_with(&format!("started-{marker}")),
            (StepKind::Copy, _) => line.contains("COPY big.bin /big.bin"),
            (StepKind::Commit, _) => line.ends_with(&format!("written-{marker}")),
        }
    }
}

/// Reads the child's stderr until `trigger` matches a line, then after `delay` signals its
/// whole process group with `sig`; returns its exit code, everything it printed and how long
/// it took to stop.
fn signal_when(
    mut child: Child,
    sig: i32,
    delay: Duration,
    trigger: impl Fn(&str) -> bool,
) -> (Option<i32>, String, Duration) {
    // the step started; the lines go on while we wait (the child must never block on a full
    // pipe)
    let (mut seen, rest) = stderr_until(&mut child, trigger);
    // where in the step the signal lands (a commit has no line of its own to wait for), not a
    // wait for something to happen
    std::thread::sleep(delay);
    // SAFETY: kill(2) on the process group of a child this test started
    unsafe { libc::kill(-(child.id() as i32), sig) };
    let signalled = Instant::now();
    let status =
        wait::poll(Duration::from_secs(120), || child.try_wait().unwrap()).unwrap_or_else(|| {
            let _ = child.kill();
            panic!("no exit within 120 s of the signal:\n{}", seen.join("\n"))
        });
    let took = signalled.elapsed();
    seen.extend(rest.join().unwrap());
    (status.code(), seen.join("\n"), took)
}

/// `hjk images build` of a one-variant hierarchy whose Dockerfile has `kind`'s step, on
/// `engine`, signalled with `sig` in that step: exit 128+sig, nothing left running, and the
/// engine's store lists its images.
fn signal_hjk_in(engine: &str, kind: StepKind, sig: i32) {
    let mut env = TestEnv::new();
    env.with_system_path();
    let marker = format!("faults18-{}-{:?}-{}", engine, kind, std::process::id()).to_lowercase();
    let store = (engine == "podman").then(|| PodmanStore::new(&mut env));
    let from = match engine {
        "podman" => "localhost/local/busybox:amd64".to_string(),
        _ => {
            let from = format!("{marker}-from:1");
            let tagged = Command::new("docker")
                .args(["tag", "local/busybox:amd64", &from])
                .status()
                .unwrap();
            assert!(tagged.success());
            from
        }
    };
    let images = busybox_images(&env, &kind.dockerfile(&from, &marker));
    if kind == StepKind::Copy {
        big_file(&Path::new(&images).join("base/big.bin"));
    }
    let registry = format!("localhost/{marker}");
    let child = spawn_group(
        &env,
        &hjk_bin(),
        &[
            "images",
            "build",
            "--variant",
            "base",
            "--images-dir",
            &images,
            "--registry",
            &registry,
            "--platform",
            "linux/amd64",
            "--backend",
            engine,
            "--no-cache",
            "--progress",
            "plain",
        ],
    );
    let (code, printed, took) = signal_when(child, sig, kind.delay(), |l| {
        kind.trigger(engine, l, &marker)
    });
    eprintln!("{engine} {kind:?}: hjk stopped {took:?} after signal {sig}");
    assert_eq!(code, Some(128 + sig), "{engine} {kind:?}:\n{printed}");
    assert!(printed.contains("error: interrupted by "), "{printed}");
    match &store {
        Some(store) => assert_podman_store_clean(store, &printed),
        None => assert_docker_clean(&marker, &printed),
    }
    if engine == "docker" {
        let _ = Command::new("docker")
            .args(["rmi", &from, &format!("{registry}:base")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// 200 MB of random bytes: a COPY of it takes podman a second or so.
fn big_file(path: &Path) {
    let out = Command::new("head")
        .args(["-c", "200000000", "/dev/urandom"])
        .stdout(std::fs::File::create(path).unwrap())
        .status()
        .unwrap();
    assert!(out.success());
}

/// No working container is left in the test's podman store (within 20 s), no temporary image
/// of an interrupted commit (`<hex>-tmp`), and `podman images` lists the store.
fn assert_podman_store_clean(store: &PodmanStore, printed: &str) {
    wait::holds(Duration::from_secs(20), || store.containers().is_empty());
    assert_eq!(
        store.containers(),
        Vec::<String>::new(),
        "build containers left behind:\n{printed}"
    );
    let listing = store
        .listing()
        .unwrap_or_else(|e| panic!("podman images fails: {e}\n{printed}"));
    assert!(!listing.contains("-tmp "), "{listing}\n{printed}");
    let tagged: Vec<&str> = listing
        .lines()
        .filter(|l| !l.starts_with("<none>"))
        .collect();
    eprintln!(
        "podman images after the signal: {} images; tagged:\n{}",
        listing.lines().count() - 1,
        tagged.join("\n")
    );
}

/// No step process of this run is left (BuildKit's steps are not docker containers), and
/// `docker images` lists the store.
fn assert_docker_clean(marker: &str, printed: &str) {
    let survivors = || {
        let out = Command::new("pgrep")
            .args(["-a", "-f", marker])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    wait::holds(Duration::from_secs(20), || survivors().is_empty());
    assert_eq!(survivors(), "", "a step process survived:\n{printed}");
    let images = Command::new("docker").args(["images"]).output().unwrap();
    assert!(
        images.status.success(),
        "docker images fails: {}\n{printed}",
        String::from_utf8_lossy(&images.stderr)
    );
}

#[test]
#[ignore = "needs podman: scripts/test-engines.sh up, then make test"]
fn podman_a_signal_in_any_build_step_leaves_the_store_usable_and_no_container() {
    need(&[Need::Podman]);
    for (kind, sig) in
        StepKind::ALL
            .into_iter()
            .zip([libc::SIGINT, libc::SIGTERM, libc::SIGTERM, libc::SIGHUP])
    {
        signal_hjk_in("podman", kind, sig);
    }
}

#[test]
#[ignore = "needs docker: scripts/test-engines.sh up, then make test"]
fn docker_a_signal_in_any_build_step_leaves_the_store_usable_and_no_step_process() {
    need(&[Need::Docker]);
    for (kind, sig) in
        StepKind::ALL
            .into_iter()
            .zip([libc::SIGTERM, libc::SIGINT, libc::SIGTERM, libc::SIGTERM])
    {
        signal_hjk_in("docker", kind, sig);
    }
}

/// ocx builds through the same engine code: SIGTERM to ocx while podman commits ENV and LABEL
/// steps of the base leaves the store as clean.
#[test]
#[ignore = "needs podman: scripts/test-engines.sh up, then make test"]
fn podman_sigterm_to_ocx_in_env_steps_leaves_the_store_usable() {
    need(&[Need::Podman]);
    let root = tempfile::tempdir().unwrap();
    let project = root.path().join("project");
    let mut env = real_project("podman", &project);
    let store = PodmanStore::new(&mut env);
    let marker = format!("faults18-ocx-{}", std::process::id());
    std::fs::write(
        project.join("Dockerfile"),
        StepKind::EnvLabel.dockerfile("localhost/local/busybox:amd64", &marker),
    )
    .unwrap();
    std::fs::write(
        project.join("ocx.json"),
        format!(
            r#"{{"custom_base_image": "faults/{marker}", "custom_base_dockerfile": "Dockerfile",
                "opencode_version": "1.18.18", "opencode_source": "npm", "uid": 0, "gid": 0,
                "backend": "podman", "platforms": "linux/amd64"}}"#
        ),
    )
    .unwrap();
    let child = Command::new(ocx_bin())
        .args(["--progress", "plain", "build"])
        .env_clear()
        .envs(&env.vars)
        .current_dir(&project)
        .process_group(0)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (code, printed, took) = signal_when(child, libc::SIGTERM, Duration::ZERO, |l| {
        StepKind::EnvLabel.trigger("podman", l, &marker)
    });
    eprintln!("ocx stopped {took:?} after SIGTERM");
    assert_eq!(code, Some(143), "{printed}");
    assert_podman_store_clean(&store, &printed);
}

/// Item 1 as reported: `setsid $REL --no-cache --registry R & sleep 0.2; kill -TERM -- -$!` with
/// a variant `FROM local/busybox:amd64`, `ENV A=1`, `ENV B=1` (and a few more, so the signal
/// lands among them): exit 143, no build container, `podman images` works, nothing public.
#[test]
#[ignore = "needs podman and registry: scripts/test-engines.sh up, then make test"]
fn podman_sigterm_to_a_release_in_env_steps_leaves_the_store_usable() {
    need(&[Need::Podman, Need::Registry]);
    let s = setup("faults-env-sigterm");
    let mut env = s.env;
    let store = PodmanStore::new(&mut env);
    let mut dockerfile = "FROM localhost/local/busybox:amd64\nENV A=1\nENV B=1\n".to_string();
    for i in 0..30 {
        dockerfile.push_str(&format!("ENV C{i}={i}\n"));
    }
    let images = busybox_images(&env, &dockerfile);
    let meta = env.root().join("meta.json").display().to_string();
    let mut args = release_args(&images, &s.repo, "linux/amd64", &meta);
    args.extend(["--backend", "podman", "--auth", "raw", "--no-cache"]);
    let child = spawn_group(&env, &hjk_bin(), &args);
    let (code, printed, took) = signal_when(child, libc::SIGTERM, Duration::ZERO, |l| {
        l.contains("STEP 2/") && l.contains("ENV A=1")
    });
    eprintln!("hjk release stopped {took:?} after SIGTERM");
    assert_eq!(code, Some(143), "{printed}");
    assert_podman_store_clean(&store, &printed);
    assert!(
        raw(&s.auth, &format!("{}:base", s.repo), false).is_none(),
        "a tag moved: {printed}"
    );
    assert!(!Path::new(&meta).exists(), "{printed}");
}
