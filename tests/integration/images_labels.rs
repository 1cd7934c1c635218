//! The run-time labels of images/ read the way Headjack's runner reads them
//! (GilmanLab/headjack `internal/flags` and `internal/instance`): `io.headjack.init` is the command
//! after the image, split on whitespace; `io.headjack.<runtime>.flags` is whitespace-separated
//! `key=value` pairs turned into `--key=value`, sorted by key. The runner reads only the label of
//! its own runtime, from the image's config in the registry, so labels are inherited from parents.
//!
//! The pure test parses the Dockerfiles' LABEL lines; the podman test builds those same lines into
//! a chain of small images, pushes it to the loopback registry and reads the labels back from
//! there, as the runner would.

use crate::util::dockerfile::{images_dir, parse_dockerfile, variants};
use crate::util::standin::label_lines;
use crate::util::{engine_stdout, need, succeeds, Need};
use std::collections::BTreeMap;
use std::process::Command;

/// A flag value as the runner's `flags.Flags` holds it.
#[derive(Debug, Clone, PartialEq)]
enum Flag {
    Str(String),
    Bool(bool),
    List(Vec<String>),
}

/// `flags.FromLabel`: fields split on whitespace; `key=value` on the first `=`; `true`/`false`
/// (any case) are booleans; a bare key is true; a repeated string key becomes a list; a string
/// after a boolean replaces it.
fn from_label(label: &str) -> BTreeMap<String, Flag> {
    let mut out: BTreeMap<String, Flag> = BTreeMap::new();
    for part in label.split_whitespace() {
        let (key, value) = match part.split_once('=') {
            Some((k, v)) => (k, Some(v)),
            None => (part, None),
        };
        if key.is_empty() {
            continue;
        }
        let Some(value) = value else {
            out.insert(key.into(), Flag::Bool(true));
            continue;
        };
        match value.to_lowercase().as_str() {
            "true" => {
                out.insert(key.into(), Flag::Bool(true));
                continue;
            }
            "false" => {
                out.insert(key.into(), Flag::Bool(false));
                continue;
            }
            _ => {}
        }
        let next = match out.remove(key) {
            Some(Flag::Str(e)) => Flag::List(vec![e, value.into()]),
            Some(Flag::List(mut l)) => {
                l.push(value.into());
                Flag::List(l)
            }
            _ => Flag::Str(value.into()),
        };
        out.insert(key.into(), next);
    }
    out
}

/// `Flags.ToArgs`: sorted by key; `--key=value`, `--key` for true, nothing for false, one flag
/// per list value.
fn to_args(flags: &BTreeMap<String, Flag>) -> Vec<String> {
    let mut args = Vec::new();
    for (k, v) in flags {
        match v {
            Flag::Str(s) => args.push(format!("--{k}={s}")),
            Flag::Bool(true) => args.push(format!("--{k}")),
            Flag::Bool(false) => {}
            Flag::List(l) => args.extend(l.iter().map(|s| format!("--{k}={s}"))),
        }
    }
    args
}

/// The runner's `run` argv for an image with these labels (`buildRunArgs`, mounts left out).
fn runner_argv(labels: &BTreeMap<String, String>, runtime: &str) -> Vec<String> {
    let mut args: Vec<String> = ["run", "--detach", "--name", "hj"].map(String::from).into();
    if let Some(l) = labels.get(&format!("io.headjack.{runtime}.flags")) {
        args.extend(to_args(&from_label(l)));
    }
    args.push("IMAGE".into());
    let init = labels
        .get("io.headjack.init")
        .map(String::as_str)
        .unwrap_or("sleep infinity");
    args.extend(init.split_whitespace().map(String::from));
    args
}

/// The `key=value` pairs of a LABEL instruction (values in double quotes may hold spaces).
fn label_pairs(args: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut chars = args.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        if chars.peek().is_none() {
            return out;
        }
        let mut word = (String::new(), String::new());
        let mut in_value = false;
        let mut quoted = false;
        while let Some(c) = chars.next() {
            match c {
                '"' => quoted = !quoted,
                '\\' if quoted => {
                    if let Some(n) = chars.next() {
                        if in_value {
                            word.1.push(n)
                        } else {
                            word.0.push(n)
                        }
                    }
                }
                '=' if !in_value && !quoted => in_value = true,
                c if c.is_whitespace() && !quoted => break,
                c => {
                    if in_value {
                        word.1.push(c)
                    } else {
                        word.0.push(c)
                    }
                }
            }
        }
        out.push(word);
    }
}

/// The `io.headjack.*` labels a Dockerfile sets itself.
fn own_labels(text: &str) -> BTreeMap<String, String> {
    parse_dockerfile(text)
        .iter()
        .filter(|i| i.keyword == "LABEL")
        .flat_map(|i| label_pairs(&i.args))
        .filter(|(k, _)| k.starts_with("io.headjack."))
        .collect()
}

/// Each variant's labels as its image has them: its parent's, then its own on top.
fn effective_labels() -> BTreeMap<String, BTreeMap<String, String>> {
    let mut out: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    for v in variants() {
        let text = std::fs::read_to_string(images_dir().join(&v.dir).join("Dockerfile")).unwrap();
        let mut labels = v
            .parent
            .as_ref()
            .map(|p| out[p].clone())
            .unwrap_or_default();
        labels.extend(own_labels(&text));
        out.insert(v.name.clone(), labels);
    }
    out
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

const SYSTEMD_DOCKER: [&str; 5] = [
    "--cgroupns=host",
    "--privileged",
    "--tmpfs=/run",
    "--tmpfs=/run/lock",
    "--volume=/sys/fs/cgroup:/sys/fs/cgroup:rw",
];

/// What the runner runs for each variant on each runtime.
fn check_runner_argv(labels: &BTreeMap<String, BTreeMap<String, String>>) {
    let run = |flags: &[&str], init: &[&str]| -> Vec<String> {
        let mut v = strings(&["run", "--detach", "--name", "hj"]);
        v.extend(strings(flags));
        v.push("IMAGE".into());
        v.extend(strings(init));
        v
    };
    let systemd = ["/lib/systemd/systemd"];
    let sleep = ["sleep", "infinity"];
    assert_eq!(runner_argv(&labels["base"], "podman"), run(&[], &sleep));
    assert_eq!(runner_argv(&labels["base"], "docker"), run(&[], &sleep));
    assert_eq!(
        runner_argv(&labels["systemd"], "podman"),
        run(&["--systemd=always"], &systemd)
    );
    assert_eq!(
        runner_argv(&labels["systemd"], "docker"),
        run(&SYSTEMD_DOCKER, &systemd)
    );
    assert_eq!(
        runner_argv(&labels["dind"], "podman"),
        run(
            &[
                "--cgroupns=host",
                "--privileged",
                "--systemd=always",
                "--volume=/sys/fs/cgroup:/sys/fs/cgroup:rw"
            ],
            &systemd
        )
    );
    assert_eq!(
        runner_argv(&labels["dind"], "docker"),
        run(&SYSTEMD_DOCKER, &systemd)
    );
    // no flags for Apple's runner: its `container run` has none of these
    assert_eq!(runner_argv(&labels["dind"], "apple"), run(&[], &systemd));
}

#[test]
fn runner_reads_the_labels_as_intended() {
    let labels = effective_labels();
    check_runner_argv(&labels);
    for (variant, l) in &labels {
        // the old raw-flag schema is gone; every flags label is key=value pairs, not CLI flags
        assert!(
            !l.keys().any(|k| k.starts_with("io.headjack.run.")),
            "{variant}: {l:?}"
        );
        for (k, v) in l.iter().filter(|(k, _)| k.ends_with(".flags")) {
            for key in from_label(v).keys() {
                assert!(
                    key.chars().all(|c| c.is_ascii_lowercase() || c == '-'),
                    "{variant}: {k} has key {key:?}; write flags as key=value without dashes"
                );
            }
        }
    }
}

#[test]
fn the_runner_rules_as_implemented_here() {
    let f = from_label("vol=/a privileged=TRUE x=false vol=/b  a=b=c bare vol=/c x=str");
    assert_eq!(
        to_args(&f),
        strings(&[
            "--a=b=c",
            "--bare",
            "--privileged",
            "--vol=/a",
            "--vol=/b",
            "--vol=/c",
            "--x=str"
        ])
    );
    assert!(to_args(&from_label("systemd=false")).is_empty());
    // what the old labels would have given the runner: broken flags
    assert_eq!(
        to_args(&from_label("--systemd=always --privileged")),
        strings(&["----privileged", "----systemd=always"])
    );
    assert_eq!(
        label_pairs(r#"a="x y" b=z io.c="q\"r""#),
        [("a", "x y"), ("b", "z"), ("io.c", "q\"r")].map(|(k, v)| (k.to_string(), v.to_string()))
    );
}

#[test]
#[ignore = "needs podman: scripts/test-engines.sh up, then make test"]
fn labels_read_back_from_a_registry() {
    need(&[Need::Podman]);
    let dir = tempfile::tempdir().unwrap();
    let repo = format!("127.0.0.1:5000/supply-labels-{}", std::process::id());
    let mut parent = "localhost/local/busybox:amd64".to_string();
    let mut built = Vec::new();
    let mut from_registry = BTreeMap::new();
    for v in variants() {
        let text = std::fs::read_to_string(images_dir().join(&v.dir).join("Dockerfile")).unwrap();
        let ctx = dir.path().join(&v.name);
        std::fs::create_dir_all(&ctx).unwrap();
        std::fs::write(
            ctx.join("Dockerfile"),
            format!("FROM {parent}\nARG VERSION=dev\n{}", label_lines(&text)),
        )
        .unwrap();
        let tag = format!("{repo}:{}", v.name);
        engine_stdout(
            "podman",
            &["build", "-q", "-t", &tag, ctx.to_str().unwrap()],
        );
        built.push(tag.clone());
        engine_stdout("podman", &["push", "-q", "--tls-verify=false", &tag]);
        let out = succeeds(Command::new("skopeo").args([
            "inspect",
            "--tls-verify=false",
            &format!("docker://{tag}"),
        ]));
        let inspect: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let labels: BTreeMap<String, String> = inspect["Labels"]
            .as_object()
            .unwrap()
            .iter()
            .filter(|(k, _)| k.starts_with("io.headjack."))
            .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
            .collect();
        from_registry.insert(v.name.clone(), labels);
        parent = tag;
    }
    for tag in built.iter().rev() {
        let _ = Command::new("podman").args(["rmi", "-f", tag]).output();
    }
    // the builder read the LABEL lines as the pure test does, and inheritance holds
    assert_eq!(from_registry, effective_labels());
    check_runner_argv(&from_registry);
}
