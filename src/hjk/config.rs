//! Headjack config: defaults < `~/.config/headjack/config.yaml` < `HJK_*` env < flags.
//!
//! The file is Headjack's whole config: its runner's sections (`runtime.flags`, `agents`,
//! `storage`, ...) live beside the keys hjk reads. hjk keeps those sections as they are and
//! reads past them ([`HjkConfig::ignored`]); only the keys it reads are checked.

use super::release::auth::{check_op_ref, AuthMode, ENV_AUTH};
use crate::backend::BackendKind;
use crate::error::UserError;
use crate::image_ref::ImageRef;
use camino::Utf8PathBuf;
use serde::Deserialize;
use std::collections::BTreeMap;

pub(crate) const DEFAULT_REGISTRY: &str = "ghcr.io/gilmanlab/headjack";
pub(crate) const DEFAULT_BASE_IMAGE: &str = "ghcr.io/gilmanlab/headjack:base";

/// Environment overrides, one per key.
pub(crate) const ENV_RUNTIME: &str = "HJK_RUNTIME_NAME";
pub(crate) const ENV_BASE_IMAGE: &str = "HJK_DEFAULT_BASE_IMAGE";
pub(crate) const ENV_REGISTRY: &str = "HJK_IMAGES_REGISTRY";

/// The keys hjk does not read, by section: kept in the file, skipped here.
type Other = BTreeMap<String, serde_yaml_ng::Value>;

#[derive(Debug, Default, Deserialize)]
struct RawConfig {
    runtime: Option<RawRuntime>,
    default: Option<RawDefault>,
    images: Option<RawImages>,
    #[serde(flatten)]
    other: Other,
}

#[derive(Debug, Default, Deserialize)]
struct RawRuntime {
    name: Option<String>,
    #[serde(flatten)]
    other: Other,
}

#[derive(Debug, Default, Deserialize)]
struct RawDefault {
    base_image: Option<String>,
    #[serde(flatten)]
    other: Other,
}

#[derive(Debug, Default, Deserialize)]
struct RawImages {
    registry: Option<String>,
    auth: Option<RawAuth>,
    #[serde(flatten)]
    other: Other,
}

#[derive(Debug, Default, Deserialize)]
struct RawAuth {
    mode: Option<String>,
    op: Option<RawOp>,
    #[serde(flatten)]
    other: Other,
}

#[derive(Debug, Default, Deserialize)]
struct RawOp {
    username_ref: Option<String>,
    password_ref: Option<String>,
    #[serde(flatten)]
    other: Other,
}

/// Keys of Headjack's own config that its runner reads and hjk does not (Headjack's
/// `internal/config`, and `runtime.flags`, which images/README.md describes): skipped without
/// a word. Any other key hjk does not know is skipped with one warning, since it may be a typo
/// of one it reads.
const HEADJACK_KEYS: &[&str] = &[
    "runtime.flags",
    "default.agent",
    "default.multiplexer",
    "agents",
    "storage",
];

/// `section.key` for each key of `other`.
fn dotted(section: &str, other: &Other) -> Vec<String> {
    other
        .keys()
        .map(|k| match section {
            "" => k.clone(),
            s => format!("{s}.{k}"),
        })
        .collect()
}

#[derive(Debug, Clone)]
pub struct HjkConfig {
    /// `runtime.name` (Headjack's spelling): the backend, and where the choice came from.
    pub backend: Option<(BackendKind, String)>,
    pub base_image: ImageRef,
    /// A repository: tags are `<registry>:<variant>`.
    pub registry: ImageRef,
    /// `images.auth.mode` (or `HJK_AUTH`) and where it came from.
    pub auth_mode: Option<(AuthMode, String)>,
    /// `images.auth.op.username_ref` and `password_ref`.
    pub op_refs: Option<(String, String)>,
    /// Keys in the file that hjk does not read and Headjack does not define either (a typo,
    /// a newer Headjack's): skipped, and named once in a warning ([`HjkConfig::warn_ignored`]).
    pub ignored: Vec<String>,
    /// The config file, for messages.
    pub file: String,
}

impl HjkConfig {
    /// One warning naming the keys hjk skipped, if any.
    pub(crate) fn warn_ignored(&self, reporter: &dyn crate::report::Reporter) {
        if !self.ignored.is_empty() {
            reporter.warn(&format!(
                "{} has keys hjk does not read, left as they are: {}",
                self.file,
                self.ignored.join(", ")
            ));
        }
    }
}

pub(crate) fn config_path(vars: &BTreeMap<String, String>) -> Option<Utf8PathBuf> {
    crate::dirs::config_home(vars).map(|h| h.join("headjack/config.yaml"))
}

/// `runtime.name` says `apple` where ocx says `container`; both parse to the same backend.
pub fn load(vars: &BTreeMap<String, String>) -> Result<HjkConfig, UserError> {
    let path = config_path(vars);
    let text = match &path {
        Some(p) => crate::input_file::read(p, crate::input_file::CONFIG)?,
        None => None,
    };
    let raw: RawConfig = match text {
        Some(text) if !text.trim().is_empty() => {
            crate::input_file::parse_yaml(&text).map_err(|e| {
                let p = path.as_ref().map(|p| p.to_string()).unwrap_or_default();
                UserError::config(format!("malformed config {p}: {e}"))
            })?
        }
        _ => RawConfig::default(),
    };
    let file = path.map(|p| p.to_string()).unwrap_or_default();
    let ignored = ignored_keys(&raw);
    let pick = |env: &str, v: Option<String>| -> Option<(String, String)> {
        vars.get(env)
            .map(|e| (e.clone(), format!("env {env}")))
            .or(v.map(|v| (v, file.clone())))
    };
    let backend = match pick(ENV_RUNTIME, raw.runtime.and_then(|r| r.name)) {
        Some((v, src)) => {
            let kind: BackendKind = v
                .parse()
                .map_err(|e: UserError| e.reword(|m| format!("runtime.name: {m} (from {src})")))?;
            Some((kind, src))
        }
        None => None,
    };
    let (base, src) = pick(ENV_BASE_IMAGE, raw.default.and_then(|d| d.base_image))
        .unwrap_or((DEFAULT_BASE_IMAGE.into(), "default".into()));
    let base_image = ImageRef::parse(&base)
        .map_err(|e| e.reword(|m| format!("default.base_image: {m} (from {src})")))?;
    let images = raw.images.unwrap_or_default();
    let auth = images.auth.unwrap_or_default();
    let auth_mode = match pick(ENV_AUTH, auth.mode) {
        Some((v, src)) => Some((
            v.parse::<AuthMode>()
                .map_err(|e| e.reword(|m| format!("images.auth.mode: {m} (from {src})")))?,
            src,
        )),
        None => None,
    };
    let op = auth.op.unwrap_or_default();
    let op_refs = match (op.username_ref, op.password_ref) {
        (Some(u), Some(p)) => {
            check_op_ref("images.auth.op.username_ref", &u)?;
            check_op_ref("images.auth.op.password_ref", &p)?;
            Some((u, p))
        }
        (None, None) => None,
        _ => {
            return Err(UserError::config(format!(
                "images.auth.op needs both username_ref and password_ref (in {file})"
            )))
        }
    };
    let (reg, src) =
        pick(ENV_REGISTRY, images.registry).unwrap_or((DEFAULT_REGISTRY.into(), "default".into()));
    let registry = parse_registry(&reg)
        .map_err(|e| e.reword(|m| format!("images.registry: {m} (from {src})")))?;
    Ok(HjkConfig {
        backend,
        base_image,
        registry,
        auth_mode,
        op_refs,
        ignored,
        file,
    })
}

/// The keys of the file hjk does not read, minus Headjack's own ([`HEADJACK_KEYS`]).
fn ignored_keys(raw: &RawConfig) -> Vec<String> {
    let mut keys = dotted("", &raw.other);
    if let Some(r) = &raw.runtime {
        keys.extend(dotted("runtime", &r.other));
    }
    if let Some(d) = &raw.default {
        keys.extend(dotted("default", &d.other));
    }
    if let Some(i) = &raw.images {
        keys.extend(dotted("images", &i.other));
        if let Some(a) = &i.auth {
            keys.extend(dotted("images.auth", &a.other));
            if let Some(o) = &a.op {
                keys.extend(dotted("images.auth.op", &o.other));
            }
        }
    }
    keys.retain(|k| !HEADJACK_KEYS.contains(&k.as_str()));
    keys
}

/// A registry repository has no tag or digest of its own.
pub(crate) fn parse_registry(s: &str) -> Result<ImageRef, UserError> {
    let r = ImageRef::parse(s)?;
    if r.digest().is_some() || r.name_as_written() != s {
        return Err(UserError::reference(format!(
            "registry {s:?} must be a repository without tag or digest, e.g. ghcr.io/org/headjack"
        )));
    }
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars_with(
        yaml: Option<&str>,
        env: &[(&str, &str)],
    ) -> (tempfile::TempDir, BTreeMap<String, String>) {
        let dir = tempfile::tempdir().unwrap();
        if let Some(y) = yaml {
            std::fs::create_dir_all(dir.path().join("headjack")).unwrap();
            std::fs::write(dir.path().join("headjack/config.yaml"), y).unwrap();
        }
        let mut vars: BTreeMap<String, String> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        vars.insert("XDG_CONFIG_HOME".into(), dir.path().display().to_string());
        (dir, vars)
    }

    #[test]
    fn env_beats_file_beats_default() {
        let (_d, vars) = vars_with(
            Some("runtime:\n  name: apple\nimages:\n  registry: registry.example/hj\n"),
            &[(ENV_REGISTRY, "127.0.0.1:5000/hj")],
        );
        let c = load(&vars).unwrap();
        assert_eq!(c.backend.unwrap().0, BackendKind::Apple);
        assert_eq!(c.registry.as_str(), "127.0.0.1:5000/hj");
        assert_eq!(c.base_image.as_str(), DEFAULT_BASE_IMAGE);
    }

    #[test]
    fn malformed_yaml_is_one_line_with_position() {
        let (_d, vars) = vars_with(Some("runtime:\n  name: [x\n"), &[]);
        let err = load(&vars).unwrap_err();
        assert!(err.message().starts_with("malformed config "), "{err}");
        assert!(err.message().contains("line"), "{err}");
        assert!(!err.message().contains('\n'));
    }

    /// Issue 16: Headjack's whole config file, with the runner's sections, is read past; a key
    /// nobody defines is named in a warning; the keys hjk reads are still checked.
    #[test]
    fn headjack_sections_are_kept_and_read_keys_still_checked() {
        let yaml = "runtime:\n  name: docker\n  flags:\n    memory: 4g\n    systemd: always\ndefault:\n  base_image: ghcr.io/gilmanlab/headjack:dind\n  agent: claude\n  multiplexer: tmux\nagents:\n  claude:\n    env:\n      CLAUDE_CODE_MAX_TURNS: \"100\"\nstorage:\n  worktrees: ~/.local/share/headjack/git\n";
        let (_d, vars) = vars_with(Some(yaml), &[]);
        let c = load(&vars).unwrap();
        assert_eq!(c.backend.unwrap().0, BackendKind::Docker);
        assert_eq!(c.base_image.as_str(), "ghcr.io/gilmanlab/headjack:dind");
        assert!(c.ignored.is_empty(), "{:?}", c.ignored);
        let (_d, vars) = vars_with(Some("runtime:\n  nmae: x\nextra: 1\n"), &[]);
        assert_eq!(load(&vars).unwrap().ignored, ["extra", "runtime.nmae"]);
        let (_d, vars) = vars_with(Some("runtime:\n  name: lxc\n  flags: {}\n"), &[]);
        assert!(load(&vars)
            .unwrap_err()
            .message()
            .starts_with("runtime.name: unknown backend"));
        let (_d, vars) = vars_with(Some("default:\n  base_image: [a]\n  agent: x\n"), &[]);
        assert!(load(&vars)
            .unwrap_err()
            .message()
            .starts_with("malformed config"));
    }

    #[test]
    fn auth_mode_and_op_refs() {
        let yaml = "images:\n  auth:\n    mode: op\n    op:\n      username_ref: op://ci/reg/user\n      password_ref: op://ci/reg/password\n";
        let (_d, vars) = vars_with(Some(yaml), &[]);
        let c = load(&vars).unwrap();
        assert_eq!(c.auth_mode.unwrap().0, AuthMode::Op);
        assert_eq!(c.op_refs.unwrap().1, "op://ci/reg/password");
        let (_d, vars) = vars_with(Some(yaml), &[(ENV_AUTH, "ghcr")]);
        assert_eq!(
            load(&vars).unwrap().auth_mode.unwrap(),
            (AuthMode::Ghcr, "env HJK_AUTH".into())
        );
        let (_d, vars) = vars_with(
            Some("images:\n  auth:\n    op:\n      username_ref: op://a/b/c\n"),
            &[],
        );
        assert!(load(&vars)
            .unwrap_err()
            .message()
            .contains("needs both username_ref and password_ref"));
    }

    #[test]
    fn bad_values_name_their_key() {
        let (_d, vars) = vars_with(None, &[(ENV_RUNTIME, "lxc")]);
        assert!(load(&vars)
            .unwrap_err()
            .message()
            .starts_with("runtime.name: unknown backend \"lxc\""));
        let (_d, vars) = vars_with(None, &[(ENV_REGISTRY, "ghcr.io/x:tag")]);
        assert!(load(&vars)
            .unwrap_err()
            .message()
            .contains("must be a repository without tag"));
    }
}
