//! ocx configuration. Layers merge in order, later wins: built-in defaults,
//! `~/.config/ocx/ocx.json`, `./ocx.json`, `OCX_<KEY>` env vars, then flags. Every value is
//! validated into a type here, so nothing unchecked reaches a Dockerfile line or an argv.

use crate::backend::BackendKind;
use crate::error::UserError;
use crate::image_ref::ImageRef;
use crate::platform::Platform;
use camino::{Utf8Path, Utf8PathBuf};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::fmt;

/// The keys, in the order `config show` prints them.
pub const KEYS: [&str; 10] = [
    "custom_base_image",
    "custom_base_dockerfile",
    "opencode_version",
    "opencode_source",
    "opencode_variant",
    "backend",
    "platforms",
    "username",
    "uid",
    "gid",
];

/// One config file as written: every field optional, unknown keys rejected.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    pub custom_base_image: Option<String>,
    pub custom_base_dockerfile: Option<String>,
    pub opencode_version: Option<String>,
    pub opencode_source: Option<String>,
    pub opencode_variant: Option<String>,
    pub backend: Option<String>,
    pub platforms: Option<PlatformsValue>,
    pub username: Option<String>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
}

/// `platforms` may be a list or a comma-separated string.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum PlatformsValue {
    List(Vec<String>),
    Joined(String),
}

/// Where a value came from, for `ocx config show` and error messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Default,
    File(Utf8PathBuf),
    Env(String),
    Flag(String),
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Default => f.write_str("default"),
            Source::File(p) => write!(f, "{p}"),
            Source::Env(v) => write!(f, "env {v}"),
            Source::Flag(v) => write!(f, "flag {v}"),
        }
    }
}

/// A username safe for useradd/adduser and for a Dockerfile line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Username(String);

impl Username {
    pub fn parse(s: &str) -> Result<Self, UserError> {
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
            Err(UserError(format!(
                "invalid username {s:?}: use 1-32 characters from a-z, 0-9, _ and -, starting with a letter or _"
            )))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// `latest` or a concrete `X.Y.Z` (a leading `v` is accepted and dropped).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OpencodeVersion {
    Latest,
    Exact(String),
}

impl OpencodeVersion {
    pub fn parse(s: &str) -> Result<Self, UserError> {
        if s == "latest" {
            return Ok(OpencodeVersion::Latest);
        }
        let v = s.strip_prefix('v').unwrap_or(s);
        let re = regex::Regex::new(r"^\d{1,6}\.\d{1,6}\.\d{1,6}(-[0-9A-Za-z.]{1,40})?$")
            .expect("version regex");
        if re.is_match(v) {
            Ok(OpencodeVersion::Exact(v.to_string()))
        } else {
            Err(UserError(format!(
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
    pub fn parse(s: &str) -> Result<Self, UserError> {
        let bad = |why: &str| UserError(format!("invalid opencode_source {s:?}: {why}"));
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
    pub opencode_version: OpencodeVersion,
    pub opencode_source: OpencodeSource,
    /// Which upstream build: standard, baseline (no AVX2), musl (Alpine), baseline-musl.
    pub opencode_variant: super::opencode::Variant,
    pub backend: Option<BackendKind>,
    pub platforms: Vec<Platform>,
    pub username: Username,
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
    pub fn from_process() -> Self {
        let vars: BTreeMap<String, String> = std::env::vars().collect();
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

    pub fn global_config_dir(&self) -> Option<Utf8PathBuf> {
        self.config_home.as_ref().map(|h| h.join("ocx"))
    }
}

/// Values given on the command line; the last and strongest layer.
#[derive(Debug, Clone, Default)]
pub struct Flags {
    pub values: Vec<(&'static str, String, &'static str)>,
}

impl Flags {
    pub fn set(&mut self, key: &'static str, value: Option<String>, flag: &'static str) {
        if let Some(v) = value {
            self.values.push((key, v, flag));
        }
    }
}

/// A layer's value before validation: its text and where it came from.
type Layer = BTreeMap<&'static str, (String, Source)>;

fn raw_to_layer(raw: RawConfig, src: &Source, layer: &mut Layer) {
    let mut put = |k: &'static str, v: Option<String>| {
        if let Some(v) = v {
            layer.insert(k, (v, src.clone()));
        }
    };
    put("custom_base_image", raw.custom_base_image);
    put("custom_base_dockerfile", raw.custom_base_dockerfile);
    put("opencode_version", raw.opencode_version);
    put("opencode_source", raw.opencode_source);
    put("opencode_variant", raw.opencode_variant);
    put("backend", raw.backend);
    put(
        "platforms",
        raw.platforms.map(|p| match p {
            PlatformsValue::List(l) => l.join(","),
            PlatformsValue::Joined(s) => s,
        }),
    );
    put("username", raw.username);
    put("uid", raw.uid.map(|u| u.to_string()));
    put("gid", raw.gid.map(|g| g.to_string()));
}

/// Reads one config file, if it exists. A syntax error names the file, line and column.
pub fn read_file(path: &Utf8Path) -> Result<Option<RawConfig>, UserError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(UserError(format!("cannot read {path}: {e}"))),
    };
    serde_json::from_str(&text)
        .map(Some)
        .map_err(|e| UserError(format!("malformed config {path}: {e}")))
}

/// Merges every layer and validates the result.
pub fn load(project: &Utf8Path, env: &ConfigEnv, flags: &Flags) -> Result<Config, UserError> {
    let mut layer: Layer = BTreeMap::new();
    let mut files = Vec::new();
    if let Some(dir) = env.global_config_dir() {
        files.push(dir.join("ocx.json"));
    }
    files.push(project.join("ocx.json"));
    for f in files {
        if let Some(raw) = read_file(&f)? {
            raw_to_layer(raw, &Source::File(f.clone()), &mut layer);
        }
    }
    for key in KEYS {
        let var = format!("OCX_{}", key.to_ascii_uppercase());
        if let Some(v) = env.vars.get(&var) {
            layer.insert(key, (v.clone(), Source::Env(var)));
        }
    }
    for (key, v, flag) in &flags.values {
        layer.insert(key, (v.clone(), Source::Flag(flag.to_string())));
    }
    resolve(layer, env)
}

fn resolve(mut layer: Layer, env: &ConfigEnv) -> Result<Config, UserError> {
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
    let at = |e: UserError, s: &Source| UserError(format!("{} (from {s})", e.0));

    let custom_base_image = match take("custom_base_image", None) {
        // screened now; the grammar check runs in `Config::validate_base`
        Some((v, s)) => Some(ImageRef::parse_deferred(&v).map_err(|e| at(e, &s))?),
        None => None,
    };
    let custom_base_dockerfile = match take("custom_base_dockerfile", None) {
        Some((v, s)) => {
            if v.is_empty() || v.chars().any(|c| c.is_control()) {
                return Err(at(
                    UserError(format!("invalid custom_base_dockerfile {v:?}")),
                    &s,
                ));
            }
            Some(Utf8PathBuf::from(v))
        }
        None => None,
    };
    let (v, s) = take("opencode_version", Some("latest".into())).expect("default");
    let opencode_version = OpencodeVersion::parse(&v).map_err(|e| at(e, &s))?;
    let (v, s) = take("opencode_source", Some("github".into())).expect("default");
    let opencode_source = OpencodeSource::parse(&v).map_err(|e| at(e, &s))?;
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
                    UserError(format!(
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
    let default_user = if uid == 0 { "root" } else { "developer" };
    let (v, s) = take("username", Some(default_user.into())).expect("default");
    let username = Username::parse(&v).map_err(|e| at(e, &s))?;
    if (uid == 0) != (username.as_str() == "root") {
        return Err(at(
            UserError(format!(
                "username {:?} does not fit uid {uid}: root is uid 0 and uid 0 is root",
                username.as_str()
            )),
            &s,
        ));
    }
    let (v, s) = take("opencode_variant", Some("standard".into())).expect("default");
    let opencode_variant = super::opencode::Variant::parse(&v).map_err(|e| at(e, &s))?;
    Ok(Config {
        custom_base_image,
        custom_base_dockerfile,
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
    /// The grammar check of `custom_base_image`, naming the value's origin.
    pub fn validate_base(&self) -> Result<(), UserError> {
        if let Some(r) = &self.custom_base_image {
            if let Err(e) = r.validated() {
                let src = self
                    .sources
                    .get("custom_base_image")
                    .map(|s| s.to_string())
                    .unwrap_or_default();
                return Err(UserError(format!("{} (from {src})", e.0)));
            }
        }
        Ok(())
    }

    /// `key = value  (source)` lines for `ocx config show`.
    pub fn show(&self) -> String {
        let mut out = String::new();
        for key in KEYS {
            let value = match key {
                "custom_base_image" => self.custom_base_image.as_ref().map(|r| r.to_string()),
                "custom_base_dockerfile" => {
                    self.custom_base_dockerfile.as_ref().map(|p| p.to_string())
                }
                "opencode_version" => Some(self.opencode_version.to_string()),
                "opencode_source" => Some(self.opencode_source.to_string()),
                "opencode_variant" => Some(self.opencode_variant.name().to_string()),
                "backend" => self.backend.map(|b| b.to_string()),
                "platforms" => Some(Platform::join(&self.platforms)),
                "username" => Some(self.username.as_str().to_string()),
                "uid" => Some(self.uid.to_string()),
                "gid" => Some(self.gid.to_string()),
                _ => None,
            };
            let src = self
                .sources
                .get(key)
                .map(|s| s.to_string())
                .unwrap_or_else(|| "unset".into());
            let value = value.unwrap_or_else(|| "(unset)".into());
            out.push_str(&format!("{key:<24} {value:<40} {src}\n"));
        }
        out
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
        flags.set("username", Some("flaguser".into()), "--username");
        let c = load(&project, &env, &flags).unwrap();
        assert_eq!(c.opencode_version, OpencodeVersion::Exact("1.2.3".into()));
        assert_eq!(c.username.as_str(), "flaguser");
        assert_eq!((c.uid, c.gid), (42, 1235));
        assert_eq!(c.platforms, vec![Platform::LinuxArm64]);
        assert_eq!(c.sources["uid"], Source::Env("OCX_UID".into()));
        assert_eq!(c.sources["gid"], Source::Default);
        assert_eq!(
            c.sources["opencode_version"],
            Source::File(project.join("ocx.json"))
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
        assert!(err.0.contains("line 3 column 3"), "{err}");
        assert!(err.0.starts_with("malformed config "), "{err}");
    }

    #[test]
    fn unknown_keys_are_rejected() {
        let (_t, home, project) = dirs();
        std::fs::write(project.join("ocx.json"), r#"{"custom_base":"x"}"#).unwrap();
        let err = load(&project, &env_with(&[], &home), &Flags::default()).unwrap_err();
        assert!(err.0.contains("unknown field `custom_base`"), "{err}");
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
            assert!(!err.0.contains('\n'), "one line: {err:?}");
            assert!(err.0.ends_with(&format!("(from env {key})")), "{err}");
        }
    }

    #[test]
    fn base_image_grammar_errors_name_their_source() {
        let (_t, home, project) = dirs();
        let env = env_with(&[("OCX_CUSTOM_BASE_IMAGE", "Upper/case")], &home);
        let c = load(&project, &env, &Flags::default()).unwrap();
        let err = c.validate_base().unwrap_err();
        assert!(err.0.ends_with("(from env OCX_CUSTOM_BASE_IMAGE)"), "{err}");
        assert!(
            err.0.contains("repository names must be lowercase"),
            "{err}"
        );
    }

    #[test]
    fn a_root_host_building_for_uid_1000_gets_a_developer_user() {
        let (_t, home, project) = dirs();
        let mut env = env_with(&[("OCX_UID", "1000")], &home);
        env.host_uid = 0;
        let c = load(&project, &env, &Flags::default()).unwrap();
        assert_eq!((c.username.as_str(), c.uid), ("developer", 1000));
        let env = env_with(&[("OCX_USERNAME", "root")], &home);
        let err = load(&project, &env, &Flags::default()).unwrap_err();
        assert!(
            err.0.starts_with("username \"root\" does not fit uid 1234"),
            "{err}"
        );
    }

    #[test]
    fn root_host_defaults_to_root_user() {
        let (_t, home, project) = dirs();
        let mut env = env_with(&[], &home);
        env.host_uid = 0;
        env.host_gid = 0;
        let c = load(&project, &env, &Flags::default()).unwrap();
        assert_eq!((c.username.as_str(), c.uid), ("root", 0));
    }
}
