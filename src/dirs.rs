//! The process environment and the XDG base directories, computed from a passed-in
//! environment so tests stay hermetic.

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
pub(crate) fn config_home(vars: &BTreeMap<String, String>) -> Option<Utf8PathBuf> {
    base(vars, "XDG_CONFIG_HOME", ".config")
}

/// `$XDG_CACHE_HOME` or `~/.cache`.
pub(crate) fn cache_home(vars: &BTreeMap<String, String>) -> Option<Utf8PathBuf> {
    base(vars, "XDG_CACHE_HOME", ".cache")
}

/// `~`, for the opencode state directories we mount.
pub(crate) fn home(vars: &BTreeMap<String, String>) -> Option<Utf8PathBuf> {
    vars.get("HOME")
        .filter(|h| !h.is_empty())
        .map(Utf8PathBuf::from)
}

/// The environment as UTF-8 strings. A variable whose name or value is not UTF-8 cannot be one
/// we read (ours are all ASCII names with text values), so it is left out instead of panicking
/// the way `std::env::vars` does; one of ours with a non-UTF-8 value is reported.
pub(crate) fn process_env() -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for (k, v) in std::env::vars_os() {
        match (k.into_string(), v.into_string()) {
            (Ok(k), Ok(v)) => {
                out.insert(k, v);
            }
            (Ok(k), Err(_)) if k.starts_with("OCX_") || k.starts_with("HJK_") => {
                crate::report::stderr(&format!(
                    "warning: ignoring {k}: its value is not valid UTF-8\n"
                ));
            }
            _ => {}
        }
    }
    out
}

/// The project directory: `--project` or the current directory, canonical and UTF-8. A path
/// the user can fix is exit 2.
pub(crate) fn project_dir(
    flag: Option<&camino::Utf8Path>,
) -> Result<camino::Utf8PathBuf, crate::error::UserError> {
    use crate::error::UserError;
    let dir = match flag {
        Some(p) => p.to_owned(),
        None => {
            let cwd = std::env::current_dir()
                .map_err(|e| UserError::file(format!("cannot read the current directory: {e}")))?;
            camino::Utf8PathBuf::from_path_buf(cwd).map_err(|p| {
                UserError::file(format!(
                    "the project path {} is not valid UTF-8; rename it or pass --project",
                    p.display()
                ))
            })?
        }
    };
    dir.canonicalize_utf8()
        .map_err(|e| UserError::file(format!("project directory {dir}: {e}")))
}
