//! Which files a config may make ocx read. A project's own `ocx.json` comes with a cloned
//! repository, so the paths it names (`custom_base_dockerfile`, `custom_base_context`,
//! `file:` sources) must resolve, symlinks followed, inside the project or inside
//! `~/.config/ocx/<project dirname>/`; otherwise a repository could send `/etc` to the engine as
//! a build context. Paths from the user's own global config, the environment or flags are the
//! user's choice and are trusted. `OCX_KEEP_CONTEXT` gets each run's contexts in a new numbered
//! subdirectory, so ocx never writes over a user's files.

use super::config::{self, Config, Source};
use super::ENV_KEEP_CONTEXT;
use crate::error::UserError;
use camino::{Utf8Path, Utf8PathBuf};
use std::collections::BTreeMap;

/// The directories a project's config may name files in.
#[derive(Debug, Clone)]
pub(crate) struct Trust {
    project: Utf8PathBuf,
    /// `~/.config/ocx/<dirname>`, when there is a config home.
    global: Option<Utf8PathBuf>,
}

impl Trust {
    pub(crate) fn new(project: &Utf8Path, global_dir: Option<&Utf8Path>) -> Trust {
        Trust {
            project: project.to_owned(),
            global: global_dir.map(|g| g.join(project.file_name().unwrap_or("project"))),
        }
    }

    /// The per-project directory under the user's config (`~/.config/ocx/<dirname>`).
    pub(crate) fn global_dir(&self) -> Option<&Utf8Path> {
        self.global.as_deref()
    }

    fn roots(&self) -> Vec<Utf8PathBuf> {
        std::iter::once(&self.project)
            .chain(self.global.as_ref())
            .filter_map(|r| r.canonicalize_utf8().ok())
            .collect()
    }

    /// Checks `path`, the value of `key` from `source`, and returns it resolved (symlinks
    /// followed) when it exists. For a value from the project's `ocx.json` a path outside the
    /// project and its config directory is bad input naming the key and the file.
    pub(crate) fn check(
        &self,
        key: &str,
        source: &Source,
        path: &Utf8Path,
    ) -> Result<Utf8PathBuf, UserError> {
        self.check_value(key, source, path.as_str(), path)
    }

    /// [`Trust::check`] for a value that is not itself the path checked (a `file:` template,
    /// whose fixed directory is checked): the message names `value`.
    pub(crate) fn check_value(
        &self,
        key: &str,
        source: &Source,
        value: &str,
        path: &Utf8Path,
    ) -> Result<Utf8PathBuf, UserError> {
        let resolved = resolve(path);
        if !source.is_project() {
            return Ok(resolved);
        }
        if self.roots().iter().any(|r| resolved.starts_with(r)) {
            return Ok(resolved);
        }
        let dirs = std::iter::once(self.project.to_string())
            .chain(self.global.as_ref().map(|g| g.to_string()))
            .collect::<Vec<_>>()
            .join(" or ");
        Err(UserError::config(format!(
            "{key} in {source} names {value}, which resolves to {resolved}, outside {dirs}; a project's ocx.json may only name files inside those (set it in your own ~/.config/ocx/ocx.json, {}, or the {} flag to use another path)",
            super::config::key(key).env(),
            super::config::key(key).flag()
        )))
    }
}

/// `path` with symlinks followed, as far as it exists: the existing ancestor is canonicalized
/// and the rest appended (with `..` applied), so a path that does not exist yet cannot climb
/// out either.
pub(crate) fn resolve(path: &Utf8Path) -> Utf8PathBuf {
    if let Ok(c) = path.canonicalize_utf8() {
        return c;
    }
    let mut rest: Vec<String> = Vec::new();
    let mut cur = path.to_owned();
    loop {
        if let Ok(mut out) = cur.canonicalize_utf8() {
            for part in rest.iter().rev() {
                match part.as_str() {
                    ".." => {
                        out.pop();
                    }
                    "." => {}
                    p => out.push(p),
                }
            }
            return out;
        }
        // `file_name` skips a trailing `..`, so take the last component as written
        let Some(last) = cur.components().next_back() else {
            return path.to_owned();
        };
        rest.push(last.as_str().to_string());
        match cur.parent() {
            Some(parent) if !parent.as_str().is_empty() => cur = parent.to_owned(),
            _ => return path.to_owned(),
        }
    }
}

/// `OCX_KEEP_CONTEXT`: where kept contexts go. Each run writes into a fresh numbered
/// subdirectory ([`fresh_numbered_dir`]), so nothing of the user's is overwritten and an earlier
/// run's contexts never block a later run. Only an existing non-directory is refused.
pub(crate) fn keep_context_dir(
    vars: &BTreeMap<String, String>,
) -> Result<Option<Utf8PathBuf>, UserError> {
    let Some(keep) = vars.get(ENV_KEEP_CONTEXT) else {
        return Ok(None);
    };
    let dir = Utf8PathBuf::from(keep);
    match std::fs::metadata(&dir) {
        Ok(m) if !m.is_dir() => Err(UserError::file(format!(
            "{ENV_KEEP_CONTEXT} {dir} is not a directory; name a directory (ocx writes each run's generated contexts into a new numbered subdirectory of it)"
        ))),
        _ => Ok(Some(dir)),
    }
}

/// `parent/<n>` for the first `n` (from 1) that does not exist yet, created here: the
/// creation itself is the claim, so two runs at once never share one.
pub(crate) fn fresh_numbered_dir(parent: &Utf8Path) -> std::io::Result<Utf8PathBuf> {
    std::fs::create_dir_all(parent)?;
    for n in 1..=100_000u32 {
        let d = parent.join(n.to_string());
        match std::fs::create_dir(&d) {
            Ok(()) => return Ok(d),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
    Err(std::io::Error::other(format!(
        "{parent} already holds 100000 numbered directories"
    )))
}

/// A `file:` source from the project's `ocx.json` must point inside the project: its fixed
/// part (before the first `{placeholder}`) is checked now, the expanded path when it is read.
pub(crate) fn check_file_source(config: &Config, trust: &Trust) -> Result<(), UserError> {
    let config::OpencodeSource::File(template) = &config.opencode_source else {
        return Ok(());
    };
    let Some(src) = config.sources.get("opencode_source") else {
        return Ok(());
    };
    // the directory part before the first placeholder: `/a/b/` of `/a/b/{asset}`, `bins` of
    // `bins/opencode-{arch}`
    let t = template.as_str();
    let fixed = match t.find('{') {
        Some(i) => match t[..i].rfind('/') {
            Some(0) => Utf8PathBuf::from("/"),
            Some(j) => Utf8PathBuf::from(&t[..j]),
            None => Utf8PathBuf::from("."),
        },
        None => template.clone(),
    };
    trust.check_value(
        "opencode_source",
        src,
        &config.opencode_source.to_string(),
        &fixed,
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn project_paths_stay_inside_and_others_are_trusted() {
        let t = tempfile::tempdir().unwrap();
        let root = Utf8PathBuf::from_path_buf(t.path().canonicalize().unwrap()).unwrap();
        let project = root.join("app");
        std::fs::create_dir_all(project.join("docker")).unwrap();
        std::fs::write(project.join("docker/Dockerfile"), "FROM x\n").unwrap();
        std::os::unix::fs::symlink("/etc", project.join("etc-link")).unwrap();
        let trust = Trust::new(&project, Some(&root.join("config/ocx")));
        let proj = Source::ProjectFile(project.join("ocx.json"));
        assert!(trust
            .check(
                "custom_base_dockerfile",
                &proj,
                &project.join("docker/Dockerfile")
            )
            .is_ok());
        for bad in [
            "../../../etc/passwd",
            "/etc/passwd",
            "etc-link/passwd",
            "docker/../../x",
        ] {
            let err = trust
                .check("custom_base_dockerfile", &proj, &project.join(bad))
                .unwrap_err();
            assert!(
                err.message().starts_with("custom_base_dockerfile in "),
                "{err}"
            );
            assert!(
                err.message().contains("OCX_CUSTOM_BASE_DOCKERFILE"),
                "{err}"
            );
        }
        let user = Source::File(root.join("config/ocx/ocx.json"));
        assert_eq!(
            trust
                .check(
                    "custom_base_dockerfile",
                    &user,
                    Utf8Path::new("/etc/passwd")
                )
                .unwrap(),
            "/etc/passwd"
        );
        std::fs::create_dir_all(root.join("config/ocx/app")).unwrap();
        assert!(trust
            .check("custom_base_context", &proj, &root.join("config/ocx/app"))
            .is_ok());
    }

    #[test]
    fn a_file_source_template_is_checked_by_its_directory() {
        let t = tempfile::tempdir().unwrap();
        let root = Utf8PathBuf::from_path_buf(t.path().canonicalize().unwrap()).unwrap();
        let project = root.join("app");
        std::fs::create_dir_all(project.join("bins")).unwrap();
        let trust = Trust::new(&project, None);
        let config = |template: String| {
            let mut c = config::load(
                &project,
                &config::ConfigEnv::default(),
                &config::Flags::default(),
            )
            .unwrap();
            c.opencode_source = config::OpencodeSource::File(template.into());
            c.sources.insert(
                "opencode_source",
                Source::ProjectFile(project.join("ocx.json")),
            );
            c
        };
        assert!(
            check_file_source(&config(format!("{project}/bins/opencode-{{arch}}")), &trust).is_ok()
        );
        let err =
            check_file_source(&config(format!("{root}/elsewhere/{{asset}}")), &trust).unwrap_err();
        assert!(
            err.message()
                .contains(&format!("which resolves to {root}/elsewhere,")),
            "{err}"
        );
    }
}
