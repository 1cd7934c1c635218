//! How Headjack's runner starts an image, from the image's own labels: `io.headjack.init` is
//! the command after the image (split on whitespace; `sleep infinity` without it), and
//! `io.headjack.<runtime>.flags` holds whitespace-separated `key=value` pairs, each becoming
//! `--key=value` (`key=true` or a bare key `--key`, `key=false` nothing, a repeated key the flag
//! once per value), sorted by key. Each engine reads only its own label. These are the runner's
//! rules (GilmanLab/headjack `internal/flags`, `internal/instance`); the test of images/'s labels
//! (`tests/integration/images_labels.rs`) checks them independently.
//!
//! It lives in `backend/` because the label's name and the flags' spelling are an engine's, and
//! so is telling apart an engine that refused one of these flags from any other failure.

use super::BackendKind;
use std::collections::BTreeMap;

/// The command the runner puts after the image.
pub(crate) const LABEL_INIT: &str = "io.headjack.init";
/// The user agent sessions run as (`exec --user`); every Headjack variant carries it, and ocx,
/// `hjk images resolve --build` and `hjk images boot` honour it.
pub(crate) const LABEL_EXEC_USER: &str = "io.headjack.exec.user";
/// What the runner runs without an init label.
pub(crate) const DEFAULT_INIT: &[&str] = &["sleep", "infinity"];

/// The flags label the runner of `kind` reads.
pub(crate) fn label(kind: BackendKind) -> &'static str {
    match kind {
        BackendKind::Docker => "io.headjack.docker.flags",
        BackendKind::Podman => "io.headjack.podman.flags",
        BackendKind::Apple => "io.headjack.apple.flags",
    }
}

/// One flag's value, as the runner's `flags.Flags` holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Value {
    Str(String),
    Bool(bool),
    List(Vec<String>),
}

/// A parsed flags label: `flags.FromLabel`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct RunnerFlags(BTreeMap<String, Value>);

impl RunnerFlags {
    /// Fields split on whitespace; `key=value` on the first `=`; `true`/`false` (any case) are
    /// booleans; a bare key is true; a repeated string key becomes a list; a string after a
    /// boolean replaces it.
    pub(crate) fn parse(label: &str) -> RunnerFlags {
        let mut out: BTreeMap<String, Value> = BTreeMap::new();
        for part in label.split_whitespace() {
            let (key, value) = match part.split_once('=') {
                Some((k, v)) => (k, Some(v)),
                None => (part, None),
            };
            if key.is_empty() {
                continue;
            }
            let next = match value.map(|v| (v, v.to_ascii_lowercase())) {
                None => Value::Bool(true),
                Some((_, l)) if l == "true" => Value::Bool(true),
                Some((_, l)) if l == "false" => Value::Bool(false),
                Some((v, _)) => match out.remove(key) {
                    Some(Value::Str(e)) => Value::List(vec![e, v.into()]),
                    Some(Value::List(mut l)) => {
                        l.push(v.into());
                        Value::List(l)
                    }
                    _ => Value::Str(v.into()),
                },
            };
            out.insert(key.into(), next);
        }
        RunnerFlags(out)
    }

    /// `Flags.ToArgs`: sorted by key; `--key=value`, `--key` for true, nothing for false, one
    /// flag per list value.
    pub(crate) fn to_args(&self) -> Vec<String> {
        let mut args = Vec::new();
        for (k, v) in &self.0 {
            match v {
                Value::Str(s) => args.push(format!("--{k}={s}")),
                Value::Bool(true) => args.push(format!("--{k}")),
                Value::Bool(false) => {}
                Value::List(l) => args.extend(l.iter().map(|s| format!("--{k}={s}"))),
            }
        }
        args
    }
}

/// The init command of an image with these labels.
pub(crate) fn init(labels: &BTreeMap<String, String>) -> Vec<String> {
    match labels.get(LABEL_INIT).map(|s| s.split_whitespace()) {
        Some(words) if labels[LABEL_INIT].split_whitespace().next().is_some() => {
            words.map(String::from).collect()
        }
        _ => DEFAULT_INIT.iter().map(|s| s.to_string()).collect(),
    }
}

/// What engines say when they will not start a container with a flag the host does not allow
/// (a short capability set, user-namespace remapping, a rootless engine, an unknown flag), and
/// which flag each message is about (`None`: the flag is named in the message itself).
const REFUSALS: &[(&str, Option<&str>)] = &[
    // moby daemon/create.go, verifyPlatformContainerSettings with userns-remap
    (
        "privileged mode is incompatible with user namespaces",
        Some("--privileged"),
    ),
    // runc/crun applying the capabilities --privileged asks for
    ("apply caps", Some("--privileged")),
    ("unable to set capabilities", Some("--privileged")),
    ("cannot set capabilities", Some("--privileged")),
    ("operation not permitted", None),
    // a flag this engine does not have (docker's and podman's cobra, Apple's parser)
    ("unknown flag", None),
    ("unknown option", None),
];

/// The flag of `flags` an engine refused, if its output (`tail`) says it refused one. The flag
/// is the one the message names (`--systemd`, `--privileged`), else the one the message is known
/// to be about; a permission error naming no flag is put on the first privileged-looking one.
pub(crate) fn refused(tail: &[String], flags: &[String]) -> Option<String> {
    if flags.is_empty() {
        return None;
    }
    let text = tail.join("\n").to_ascii_lowercase();
    let (_, about) = REFUSALS.iter().find(|(m, _)| text.contains(m))?;
    let name = |f: &String| f.split('=').next().unwrap_or(f).to_ascii_lowercase();
    // the message names the flag (`unknown flag: --bogus`)
    if let Some(f) = flags.iter().find(|f| {
        let n = name(f);
        text.split(|c: char| c.is_whitespace() || c == '\'' || c == '"' || c == ':')
            .any(|w| w == n)
    }) {
        return Some(f.clone());
    }
    let wanted = match about {
        Some(a) => vec![*a],
        None => vec!["--privileged", "--cgroupns", "--systemd", "--volume"],
    };
    wanted
        .iter()
        .find_map(|w| flags.iter().find(|f| name(f) == *w))
        .cloned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn the_runner_rules() {
        let f =
            RunnerFlags::parse("vol=/a privileged=TRUE x=false vol=/b  a=b=c bare vol=/c x=str");
        assert_eq!(
            f.to_args(),
            s(&[
                "--a=b=c",
                "--bare",
                "--privileged",
                "--vol=/a",
                "--vol=/b",
                "--vol=/c",
                "--x=str"
            ])
        );
        assert!(RunnerFlags::parse("systemd=false").to_args().is_empty());
        let mut labels = BTreeMap::new();
        assert_eq!(init(&labels), s(&["sleep", "infinity"]));
        labels.insert(
            LABEL_INIT.to_string(),
            " /lib/systemd/systemd  --x ".to_string(),
        );
        assert_eq!(init(&labels), s(&["/lib/systemd/systemd", "--x"]));
        labels.insert(LABEL_INIT.to_string(), "  ".to_string());
        assert_eq!(init(&labels), s(&["sleep", "infinity"]));
    }

    #[test]
    fn a_refusal_is_put_on_its_flag() {
        let flags = s(&["--cgroupns=host", "--privileged", "--tmpfs=/run"]);
        let moby = s(&["docker: Error response from daemon: privileged mode is incompatible with user namespaces.  You must run the container in the host namespace when running privileged mode."]);
        assert_eq!(refused(&moby, &flags).as_deref(), Some("--privileged"));
        let unknown = s(&["Error: unknown flag: --bogus", "See 'podman run --help'"]);
        let with_bogus = s(&["--bogus=1", "--systemd=always"]);
        assert_eq!(refused(&unknown, &with_bogus).as_deref(), Some("--bogus=1"));
        assert_eq!(refused(&s(&["Error: no such image"]), &flags), None);
        assert_eq!(refused(&moby, &[]), None);
    }
}
