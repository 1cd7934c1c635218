//! XDG base directories, computed from a passed-in environment so tests stay hermetic.

use camino::Utf8PathBuf;
use std::collections::BTreeMap;

fn base(vars: &BTreeMap<String, String>, xdg: &str, fallback: &str) -> Option<Utf8PathBuf> {
    if let Some(v) = vars.get(xdg).filter(|v| v.starts_with('/')) {
        return Some(Utf8PathBuf::from(v));
    }
    vars.get("HOME")
        .filter(|h| !h.is_empty())
        .map(|h| Utf8PathBuf::from(h).join(fallback))
}

/// `$XDG_CONFIG_HOME` or `~/.config`.
pub fn config_home(vars: &BTreeMap<String, String>) -> Option<Utf8PathBuf> {
    base(vars, "XDG_CONFIG_HOME", ".config")
}

/// `$XDG_CACHE_HOME` or `~/.cache`.
pub fn cache_home(vars: &BTreeMap<String, String>) -> Option<Utf8PathBuf> {
    base(vars, "XDG_CACHE_HOME", ".cache")
}

/// `~`, for the opencode state directories we mount.
pub fn home(vars: &BTreeMap<String, String>) -> Option<Utf8PathBuf> {
    vars.get("HOME")
        .filter(|h| !h.is_empty())
        .map(Utf8PathBuf::from)
}
