//! ocx configuration. Layers merge in order, later wins: built-in defaults,
//! `~/.config/ocx/ocx.json`, `./ocx.json`, `OCX_<KEY>` env vars, then flags. Every value is
//! validated into a type here, so nothing unchecked reaches a Dockerfile line or an argv.

use crate::backend::BackendKind;
use crate::error::UserError;
use crate::image_ref::ImageRef;
use crate::platform::Platform;
use crate::version::Version;
use camino::{Utf8Path, Utf8PathBuf};
use std::collections::BTreeMap;
use std::fmt;

/// One config key: declared once, here. The flag (`--<name with dashes>`), the environment
/// variable (`OCX_<NAME>`), the `config show` row and docs/configuration.md's table all come from this, so
/// none of them can be missing for a key.
#[derive(Debug)]
pub struct Key {
    pub name: &'static str,
    /// The flag's value placeholder.
    pub value_name: &'static str,
    /// One line of `--help`.
    pub help: &'static str,
    /// docs/configuration.md's table cell: the values it takes and what it does.
    pub doc: &'static str,
    /// Another spelling the flag accepts.
    pub alias: Option<&'static str>,
}

impl Key {
    pub fn env(&self) -> String {
        format!("OCX_{}", self.name.to_ascii_uppercase())
    }

    pub fn flag(&self) -> String {
        format!("--{}", self.name.replace('_', "-"))
    }
}

/// Every key, in the order `config show` prints them.
pub const KEYS: &[Key] = &[
    Key {
        name: "custom_base_image",
        value_name: "IMAGE",
        help: "Base image to build FROM; the final image is ocx-<it, sanitized>:<version> (and :<version>-<user>)",
        doc: "an image reference; the final image is tagged `ocx-<it, sanitized>:<version>-<user>`, `<user>` being 8 hex of `uid`, `gid` and `username` (so users sharing a daemon get their own image), and `ocx-<it, sanitized>:<version>`, moved by each build to the image just built for its user. Without `custom_base_image` and `custom_base_dockerfile`, a built-in Debian base is used and the tags are `ocx:<version>-<user>` and `ocx:<version>`; with only a Dockerfile, the base is named `ocx-base-<project dirname>-<8 hex of the project path>`",
        alias: None,
    },
    Key {
        name: "custom_base_dockerfile",
        value_name: "PATH",
        help: "Dockerfile the base image is built from (rebuilt when it or what it COPYs changes)",
        doc: "a path, looked up as `./<path>` in the project, then `~/.config/ocx/<project-dirname>/<path>`. The base is built when missing, and rebuilt when the Dockerfile or a file it COPYs/ADDs changes (`.dockerignore` honored; or `--rebuild-base`). From the project's own `ocx.json` it must resolve inside the project or that config directory",
        alias: None,
    },
    Key {
        name: "custom_base_context",
        value_name: "PATH",
        help: "Build context of the base image, relative to the project (default: the Dockerfile's directory)",
        doc: "the base's build context, relative to the project (e.g. `.` for a `.devcontainer/Dockerfile` that expects the project root); default: the directory the Dockerfile is in. Same rule as `custom_base_dockerfile` for the project's `ocx.json`",
        alias: None,
    },
    Key {
        name: "opencode_version",
        value_name: "VERSION",
        help: "opencode version: latest or X.Y.Z",
        doc: "`latest` (resolved to a concrete version before tagging) or `X.Y.Z`",
        alias: None,
    },
    Key {
        name: "opencode_source",
        value_name: "SOURCE",
        help: "Where opencode comes from: github, npm, file:<path> or an https:// URL template",
        doc: "`github` (default; checked against GitHub's per-asset sha256 digest), `npm` (the `npm` CLI, so your registry config applies; checked against the sha512 integrity), `file:<path>` (`{asset}`, `{arch}`, `{version}` substituted; `<path>.sha256` checked if present; relative to the project when set in its `ocx.json`), or a URL template (`<url>.sha256` must exist)",
        alias: None,
    },
    Key {
        name: "opencode_variant",
        value_name: "VARIANT",
        help: "opencode build: standard, baseline (CPUs without AVX2), musl or baseline-musl (default: musl if the base has a musl loader, else standard)",
        doc: "`standard`, `baseline` (CPUs without AVX2), `musl` (Alpine bases; needs `libstdc++` and `libgcc` in the base) or `baseline-musl`. Unset: `musl` when the base image has `/lib/ld-musl-*`, else `standard` (the base decides, never the build machine). The build runs `opencode --version` as the container user, so a variant that cannot run on the base fails the build, naming this key",
        alias: None,
    },
    Key {
        name: "backend",
        value_name: "ENGINE",
        help: "Engine: docker, podman or container (Apple); default: the first one on PATH",
        doc: "`docker`, `podman` or `container`. Precedence: `--backend` > `OCX_BACKEND` > config > first of docker, podman, container on PATH",
        alias: None,
    },
    Key {
        name: "platforms",
        value_name: "PLATFORMS",
        help: "Comma-separated platforms, e.g. linux/amd64,linux/arm64 (default: this machine's)",
        doc: "`linux/amd64`, `linux/arm64`, or both (podman builds a manifest list; docker needs buildx, and the containerd image store to keep both in one local image)",
        alias: Some("platform"),
    },
    Key {
        name: "username",
        value_name: "NAME",
        help: "Container user name (default: adopt the base's user that has the UID)",
        doc: "unset (default): the base's user that holds `uid` is used as it is (name, home, shell, groups, sudo rules); else the base's non-root user gets `uid`/`gid` and its home is chowned; else a user `developer` is made. Set: that name wins (a user holding `uid` is renamed and its home moves to `/home/<name>`). `root` for uid 0",
        alias: None,
    },
    Key {
        name: "uid",
        value_name: "UID",
        help: "Container user's UID (default: yours)",
        doc: "the container user's UID; default: yours",
        alias: None,
    },
    Key {
        name: "gid",
        value_name: "GID",
        help: "Container user's primary GID (default: yours)",
        doc: "the container user's primary GID; default: yours. A group that already has the GID becomes the user's primary group (the Dev Containers CLI keeps the user's old GID then); otherwise the user's own group is renumbered",
        alias: None,
    },
];

/// The declaration of `name`; panics on a name that is not a key (a bug, not input).
pub(crate) fn key(name: &str) -> &'static Key {
    KEYS.iter()
        .find(|k| k.name == name)
        .unwrap_or_else(|| panic!("no config key {name}"))
}

/// Where a value came from, for `ocx config show` and error messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Default,
    /// The user's own config file (`~/.config/ocx/ocx.json`): trusted like env and flags.
    File(Utf8PathBuf),
    /// The project's `./ocx.json`, which comes with a cloned repository: the paths it names
    /// must stay inside the project (see `super::paths`).
    ProjectFile(Utf8PathBuf),
    Env(String),
    Flag(String),
}

impl Source {
    /// Whether the value came with the project rather than from the user.
    pub(crate) fn is_project(&self) -> bool {
        matches!(self, Source::ProjectFile(_))
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Default => f.write_str("default"),
            Source::File(p) | Source::ProjectFile(p) => write!(f, "{p}"),
            Source::Env(v) => write!(f, "env {v}"),
            Source::Flag(v) => write!(f, "flag {v}"),
        }
    }
}

/// A username safe for useradd/adduser and for a Dockerfile line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Username(String);

impl Username {
    pub(crate) fn parse(s: &str) -> Result<Self, UserError> {
        let ok = !s.is_empty()
            && s.len() <= 32
            && s.chars()
                .next()
                .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
            && s.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-');
        if ok {
            Ok(Username(s.to_string()))
        } else {
            Err(UserError::setting(format!(
                "invalid username {s:?}: use 1-32 characters from a-z, 0-9, _ and -, starting with a letter or _"
            )))
        }
    }

    pub(crate) fn as_str(&self) -> &str {
        &self.0
    }
}

/// `latest` or a concrete `X.Y.Z` (a leading `v` is accepted and dropped, so an opencode
/// [`Version`] never has one: it goes into tags and cache paths as `1.18.18`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OpencodeVersion {
    Latest,
    Exact(Version),
}

impl OpencodeVersion {
    pub(crate) fn parse(s: &str) -> Result<Self, UserError> {
        if s == "latest" {
            return Ok(OpencodeVersion::Latest);
        }
        let v = s.strip_prefix('v').unwrap_or(s);
        if crate::version::is_release(v) && !v.starts_with('v') {
            Ok(OpencodeVersion::Exact(Version::parse(v)?))
        } else {
            Err(UserError::setting(format!(
                "invalid opencode_version {s:?}: use \"latest\" or X.Y.Z, e.g. 1.18.18"
            )))
        }
    }
}

impl fmt::Display for OpencodeVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OpencodeVersion::Latest => f.write_str("latest"),
            OpencodeVersion::Exact(v) => f.write_str(v),
        }
    }
}

/// Where the opencode binary comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OpencodeSource {
    /// GitHub releases, checked against the sha256 digest GitHub publishes per asset.
    Github,
    /// The npm registry via the `npm` CLI (so the user's registry config applies), checked
    /// against the package's sha512 integrity.
    Npm,
    /// A local file or archive; `{asset}`, `{arch}` and `{version}` are substituted.
    File(Utf8PathBuf),
    /// A URL template; the checksum comes from `<url>.sha256` next to it.
    Url(String),
}

impl OpencodeSource {
    pub(crate) fn parse(s: &str) -> Result<Self, UserError> {
        let bad = |why: &str| UserError::setting(format!("invalid opencode_source {s:?}: {why}"));
        if s.chars().any(|c| c.is_control()) {
            return Err(bad("it contains control characters"));
        }
        match s {
            "github" => Ok(OpencodeSource::Github),
            "npm" => Ok(OpencodeSource::Npm),
            _ if s.starts_with("file:") => Ok(OpencodeSource::File(Utf8PathBuf::from(&s[5..]))),
            _ if s.starts_with("https://") || s.starts_with("http://") => {
                if s.contains("{asset}") || s.contains("{arch}") {
                    Ok(OpencodeSource::Url(s.to_string()))
                } else {
                    Err(bad("a URL template needs {asset} or {arch}, e.g. https://mirror/opencode/v{version}/{asset}.tar.gz"))
                }
            }
            _ => Err(bad(
                "use github, npm, file:<path> or an https:// URL template",
            )),
        }
    }
}

impl fmt::Display for OpencodeSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OpencodeSource::Github => f.write_str("github"),
            OpencodeSource::Npm => f.write_str("npm"),
            OpencodeSource::File(p) => write!(f, "file:{p}"),
            OpencodeSource::Url(u) => f.write_str(u),
        }
    }
}

/// The resolved, validated configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub custom_base_image: Option<ImageRef>,
    pub custom_base_dockerfile: Option<Utf8PathBuf>,
    /// The base's build context, relative to the project.
    pub custom_base_context: Option<Utf8PathBuf>,
    pub opencode_version: OpencodeVersion,
    pub opencode_source: OpencodeSource,
    /// Which upstream build: standard, baseline (no AVX2), musl (Alpine), baseline-musl.
    /// `None`: picked from the base image's libc.
    pub opencode_variant: Option<super::opencode::OpencodeVariant>,
    pub backend: Option<BackendKind>,
    pub platforms: Vec<Platform>,
    /// `None`: adopt the base's user (see `super::user`).
    pub username: Option<Username>,
    pub uid: u32,
    pub gid: u32,
    /// key -> where its value came from
    pub sources: BTreeMap<&'static str, Source>,
}

/// The environment the config is read in; passed in so tests never touch the process env.
#[derive(Debug, Clone, Default)]
pub struct ConfigEnv {
    pub vars: BTreeMap<String, String>,
    /// `$XDG_CONFIG_HOME` or `~/.config`
    pub config_home: Option<Utf8PathBuf>,
    pub host_uid: u32,
    pub host_gid: u32,
}

impl ConfigEnv {
    pub(crate) fn from_process() -> Self {
        let vars = crate::dirs::process_env();
        let config_home = crate::dirs::config_home(&vars);
        // SAFETY: getuid/getgid have no preconditions and cannot fail
        let (host_uid, host_gid) = unsafe { (libc::getuid(), libc::getgid()) };
        ConfigEnv {
            vars,
            config_home,
            host_uid,
            host_gid,
        }
    }

    pub(crate) fn global_config_dir(&self) -> Option<Utf8PathBuf> {
        self.config_home.as_ref().map(|h| h.join("ocx"))
    }
}

/// Values given on the command line; the last and strongest layer.
#[derive(Debug, Clone, Default)]
pub struct Flags {
    /// (key name, value)
    pub values: Vec<(&'static str, String)>,
}

impl Flags {
    pub(crate) fn set(&mut self, key: &str, value: Option<String>) {
        if let Some(v) = value {
            self.values.push((self::key(key).name, v));
        }
    }
}

/// A layer's value before validation: its text and where it came from.
type Layer = BTreeMap<&'static str, (String, Source)>;

/// A file's value as text: strings as they are, numbers in decimal, a list of strings joined
/// with commas (`platforms`). Anything else is not a value any key takes.
fn value_text(v: &serde_json::Value) -> Option<String> {
    match v {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        serde_json::Value::Array(items) => items
            .iter()
            .map(|i| i.as_str().map(String::from))
            .collect::<Option<Vec<_>>>()
            .map(|l| l.join(",")),
        _ => None,
    }
}

/// Reads one config file, if it exists, into a layer. A syntax error names the file, line and
/// column; an unknown key or a value of the wrong type names the key.
pub(crate) fn read_file(path: &Utf8Path, project: bool) -> Result<Option<Layer>, UserError> {
    let Some(text) = crate::input_file::read(path, crate::input_file::CONFIG)? else {
        return Ok(None);
    };
    let map: serde_json::Map<String, serde_json::Value> = serde_json::from_str(&text)
        .map_err(|e| UserError::config(format!("malformed config {path}: {e}")))?;
    let src = if project {
        Source::ProjectFile(path.to_owned())
    } else {
        Source::File(path.to_owned())
    };
    let mut layer = Layer::new();
    for (k, v) in &map {
        let Some(key) = KEYS.iter().find(|key| key.name == k) else {
            let known: Vec<String> = KEYS.iter().map(|k| format!("`{}`", k.name)).collect();
            return Err(UserError::config(format!(
                "malformed config {path}: unknown field `{k}`, expected one of {}",
                known.join(", ")
            )));
        };
        if v.is_null() {
            continue;
        }
        let text = value_text(v).ok_or_else(|| {
            UserError::config(format!(
                "malformed config {path}: {} must be a string, a number or a list of strings, not {v}",
                key.name
            ))
        })?;
        layer.insert(key.name, (text, src.clone()));
    }
    Ok(Some(layer))
}

/// Merges every layer and validates the result.
pub fn load(project: &Utf8Path, env: &ConfigEnv, flags: &Flags) -> Result<Config, UserError> {
    let mut layer: Layer = BTreeMap::new();
    let mut files = Vec::new();
    if let Some(dir) = env.global_config_dir() {
        files.push((dir.join("ocx.json"), false));
    }
    files.push((project.join("ocx.json"), true));
    for (f, from_project) in files {
        if let Some(l) = read_file(&f, from_project)? {
            layer.extend(l);
        }
    }
    for key in KEYS {
        let var = key.env();
        if let Some(v) = env.vars.get(&var) {
            layer.insert(key.name, (v.clone(), Source::Env(var)));
        }
    }
    for (key, v) in &flags.values {
        layer.insert(
            key,
            (v.clone(), Source::Flag(crate::ocx::config::key(key).flag())),
        );
    }
    resolve(layer, env, project)
}

/// A path value: not empty, no control characters.
fn path_value(key: &str, v: &str, s: &Source) -> Result<Utf8PathBuf, UserError> {
    if v.is_empty() || v.chars().any(|c| c.is_control()) {
        return Err(UserError::setting(format!(
            "invalid {key} {v:?} (from {s})"
        )));
    }
    Ok(Utf8PathBuf::from(v))
}

fn resolve(mut layer: Layer, env: &ConfigEnv, project: &Utf8Path) -> Result<Config, UserError> {
    let mut sources = BTreeMap::new();
    let mut take = |key: &'static str, default: Option<String>| -> Option<(String, Source)> {
        let v = layer
            .remove(key)
            .or_else(|| default.map(|d| (d, Source::Default)));
        if let Some((_, s)) = &v {
            sources.insert(key, s.clone());
        }
        v
    };
    // every error names the value's origin, so a user knows which layer to fix
    let at = |e: UserError, s: &Source| e.reword(|m| format!("{m} (from {s})"));

    let custom_base_image = match take("custom_base_image", None) {
        // the grammar check costs microseconds on the usual shapes (see `ImageRef`), so a
        // bad value fails here, naming its origin, before any engine call
        Some((v, s)) => Some(
            ImageRef::parse(&v)
                .map_err(|e| at(e.reword(|m| format!("custom_base_image: {m}")), &s))?,
        ),
        None => None,
    };
    let custom_base_dockerfile = match take("custom_base_dockerfile", None) {
        Some((v, s)) => Some(path_value("custom_base_dockerfile", &v, &s)?),
        None => None,
    };
    let custom_base_context = match take("custom_base_context", None) {
        Some((v, s)) => Some(path_value("custom_base_context", &v, &s)?),
        None => None,
    };
    let (v, s) = take("opencode_version", Some("latest".into())).expect("default");
    let opencode_version = OpencodeVersion::parse(&v).map_err(|e| at(e, &s))?;
    let (v, s) = take("opencode_source", Some("github".into())).expect("default");
    let mut opencode_source = OpencodeSource::parse(&v).map_err(|e| at(e, &s))?;
    // a relative file: in the project's ocx.json means a file in the project
    if let (OpencodeSource::File(p), true) = (&opencode_source, s.is_project()) {
        if p.is_relative() {
            opencode_source = OpencodeSource::File(project.join(p));
        }
    }
    let backend = match take("backend", None) {
        Some((v, s)) => Some(v.parse::<BackendKind>().map_err(|e| at(e, &s))?),
        None => None,
    };
    let (v, s) = take("platforms", Some(Platform::host().to_string())).expect("default");
    let platforms = Platform::parse_list(&v).map_err(|e| at(e, &s))?;
    let id = |key: &'static str, v: String, s: Source| -> Result<u32, UserError> {
        v.trim()
            .parse::<u32>()
            .ok()
            .filter(|n| *n < 1 << 31)
            .ok_or_else(|| {
                at(
                    UserError::setting(format!(
                        "invalid {key} {v:?}: use a number from 0 to 2147483647"
                    )),
                    &s,
                )
            })
    };
    let (v, s) = take("uid", Some(env.host_uid.to_string())).expect("default");
    let uid = id("uid", v, s)?;
    let (v, s) = take("gid", Some(env.host_gid.to_string())).expect("default");
    let gid = id("gid", v, s)?;
    let username = match take("username", None) {
        Some((v, s)) => {
            let u = Username::parse(&v).map_err(|e| at(e, &s))?;
            if (uid == 0) != (u.as_str() == "root") {
                return Err(at(
                    UserError::setting(format!(
                        "username {:?} does not fit uid {uid}: root is uid 0 and uid 0 is root",
                        u.as_str()
                    )),
                    &s,
                ));
            }
            Some(u)
        }
        None => None,
    };
    let opencode_variant = match take("opencode_variant", None) {
        Some((v, s)) => Some(super::opencode::OpencodeVariant::parse(&v).map_err(|e| at(e, &s))?),
        None => None,
    };
    Ok(Config {
        custom_base_image,
        custom_base_dockerfile,
        custom_base_context,
        opencode_version,
        opencode_source,
        opencode_variant,
        backend,
        platforms,
        username,
        uid,
        gid,
        sources,
    })
}

impl Config {
    /// The effective value of a key, as text (`None` when unset).
    pub(crate) fn value(&self, key: &str) -> Option<String> {
        match key {
            "custom_base_image" => self.custom_base_image.as_ref().map(|r| r.to_string()),
            "custom_base_dockerfile" => self.custom_base_dockerfile.as_ref().map(|p| p.to_string()),
            "custom_base_context" => self.custom_base_context.as_ref().map(|p| p.to_string()),
            "opencode_version" => Some(self.opencode_version.to_string()),
            "opencode_source" => Some(self.opencode_source.to_string()),
            "opencode_variant" => self.opencode_variant.map(|v| v.name().to_string()),
            "backend" => self.backend.map(|b| b.to_string()),
            "platforms" => Some(Platform::join(&self.platforms)),
            "username" => self.username.as_ref().map(|u| u.as_str().to_string()),
            "uid" => Some(self.uid.to_string()),
            "gid" => Some(self.gid.to_string()),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env_with(vars: &[(&str, &str)], home: &Utf8Path) -> ConfigEnv {
        ConfigEnv {
            vars: vars
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            config_home: Some(home.to_owned()),
            host_uid: 1234,
            host_gid: 1235,
        }
    }

    fn dirs() -> (tempfile::TempDir, Utf8PathBuf, Utf8PathBuf) {
        let t = tempfile::tempdir().unwrap();
        let root = Utf8PathBuf::from_path_buf(t.path().to_owned()).unwrap();
        let home = root.join("config");
        let project = root.join("proj");
        std::fs::create_dir_all(home.join("ocx")).unwrap();
        std::fs::create_dir_all(&project).unwrap();
        (t, home, project)
    }

    #[test]
    fn layers_merge_later_wins_and_sources_are_tracked() {
        let (_t, home, project) = dirs();
        std::fs::write(
            home.join("ocx/ocx.json"),
            r#"{"username":"global","opencode_version":"1.0.0","uid":7}"#,
        )
        .unwrap();
        std::fs::write(
            project.join("ocx.json"),
            r#"{"opencode_version":"1.2.3","platforms":["linux/arm64"]}"#,
        )
        .unwrap();
        let env = env_with(&[("OCX_UID", "42")], &home);
        let mut flags = Flags::default();
        flags.set("username", Some("flaguser".into()));
        let c = load(&project, &env, &flags).unwrap();
        assert_eq!(c.opencode_version, OpencodeVersion::Exact("1.2.3".into()));
        assert_eq!(c.username.unwrap().as_str(), "flaguser");
        assert_eq!((c.uid, c.gid), (42, 1235));
        assert_eq!(c.platforms, vec![Platform::LinuxArm64]);
        assert_eq!(c.sources["uid"], Source::Env("OCX_UID".into()));
        assert_eq!(c.sources["gid"], Source::Default);
        assert_eq!(
            c.sources["opencode_version"],
            Source::ProjectFile(project.join("ocx.json"))
        );
        assert!(c.sources["opencode_version"].is_project());
        assert!(!c.sources["uid"].is_project());
    }

    #[test]
    fn a_relative_file_source_in_the_project_config_is_in_the_project() {
        let (_t, home, project) = dirs();
        std::fs::write(
            project.join("ocx.json"),
            r#"{"opencode_source":"file:bins/{asset}"}"#,
        )
        .unwrap();
        let c = load(&project, &env_with(&[], &home), &Flags::default()).unwrap();
        assert_eq!(
            c.opencode_source,
            OpencodeSource::File(project.join("bins/{asset}"))
        );
        let env = env_with(&[("OCX_OPENCODE_SOURCE", "file:bins/{asset}")], &home);
        let c = load(&project, &env, &Flags::default()).unwrap();
        assert_eq!(
            c.opencode_source,
            OpencodeSource::File("bins/{asset}".into())
        );
    }

    #[test]
    fn malformed_json_names_line_and_column() {
        let (_t, home, project) = dirs();
        std::fs::write(
            project.join("ocx.json"),
            "{\n  \"username\": \"a\",\n  oops\n}",
        )
        .unwrap();
        let err = load(&project, &env_with(&[], &home), &Flags::default()).unwrap_err();
        assert!(err.message().contains("line 3 column 3"), "{err}");
        assert!(err.message().starts_with("malformed config "), "{err}");
        assert_eq!(err.kind(), crate::error::ErrorKind::Config);
    }

    #[test]
    fn unknown_keys_are_rejected() {
        let (_t, home, project) = dirs();
        std::fs::write(project.join("ocx.json"), r#"{"custom_base":"x"}"#).unwrap();
        let err = load(&project, &env_with(&[], &home), &Flags::default()).unwrap_err();
        assert!(
            err.message().contains("unknown field `custom_base`"),
            "{err}"
        );
        assert_eq!(err.kind(), crate::error::ErrorKind::Config);
    }

    #[test]
    fn injection_attempts_are_rejected() {
        for (key, val) in [
            ("OCX_USERNAME", "dev\nRUN rm -rf /"),
            ("OCX_USERNAME", "dev;id"),
            ("OCX_USERNAME", "$(id)"),
            ("OCX_OPENCODE_VERSION", "1.2.3\nRUN x"),
            ("OCX_OPENCODE_VERSION", "1.2.3;ls"),
            ("OCX_CUSTOM_BASE_IMAGE", "ubuntu\nRUN x"),
            ("OCX_UID", "1000 && id"),
            ("OCX_PLATFORMS", "linux/s390x"),
            ("OCX_BACKEND", "lxc"),
        ] {
            let (_t, home, project) = dirs();
            let err =
                load(&project, &env_with(&[(key, val)], &home), &Flags::default()).unwrap_err();
            assert!(!err.message().contains('\n'), "one line: {err:?}");
            assert!(
                err.message().ends_with(&format!("(from env {key})")),
                "{err}"
            );
            // the kind says what is wrong, not where it was set
            let kind = if key == "OCX_CUSTOM_BASE_IMAGE" {
                crate::error::ErrorKind::Reference
            } else {
                crate::error::ErrorKind::Setting
            };
            assert_eq!(err.kind(), kind, "{key}");
        }
    }

    #[test]
    fn base_image_grammar_errors_name_their_source() {
        let (_t, home, project) = dirs();
        let env = env_with(&[("OCX_CUSTOM_BASE_IMAGE", "upper/Case")], &home);
        let err = load(&project, &env, &Flags::default()).unwrap_err();
        assert!(err.message().starts_with("custom_base_image: "), "{err}");
        assert!(
            err.message().ends_with("(from env OCX_CUSTOM_BASE_IMAGE)"),
            "{err}"
        );
        assert!(
            err.message().contains("repository names must be lowercase"),
            "{err}"
        );
        assert_eq!(err.kind(), crate::error::ErrorKind::Reference);
    }

    #[test]
    fn username_is_unset_by_default_and_root_must_be_uid_0() {
        let (_t, home, project) = dirs();
        let mut env = env_with(&[("OCX_UID", "1000")], &home);
        env.host_uid = 0;
        let c = load(&project, &env, &Flags::default()).unwrap();
        assert_eq!((c.username, c.uid, c.opencode_variant), (None, 1000, None));
        let env = env_with(&[("OCX_USERNAME", "root")], &home);
        let err = load(&project, &env, &Flags::default()).unwrap_err();
        assert!(
            err.message()
                .starts_with("username \"root\" does not fit uid 1234"),
            "{err}"
        );
    }

    #[test]
    fn root_host_defaults_to_uid_0() {
        let (_t, home, project) = dirs();
        let mut env = env_with(&[], &home);
        env.host_uid = 0;
        env.host_gid = 0;
        let c = load(&project, &env, &Flags::default()).unwrap();
        assert_eq!((c.username, c.uid), (None, 0));
        let env = env_with(&[("OCX_USERNAME", "dev"), ("OCX_UID", "0")], &home);
        let err = load(&project, &env, &Flags::default()).unwrap_err();
        assert!(err.message().contains("does not fit uid 0"), "{err}");
    }
}
