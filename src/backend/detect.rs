//! Which engine to use: `--backend` flag > `OCX_BACKEND`/`HJK_*` env > config > the first engine
//! found on PATH. The PATH lookup is injectable so tests don't depend on the machine.

use super::apple::Apple;
use super::docker::Docker;
use super::podman::Podman;
use super::{Backend, BackendKind};
use crate::error::UserError;
use std::ffi::OsString;
use std::path::PathBuf;

/// Finds a program on a PATH; production uses `which::which_in`.
pub(crate) fn find_on_path(program: &str, path: Option<&OsString>) -> Option<PathBuf> {
    let cwd = std::env::current_dir().ok()?;
    which::which_in(program, path.cloned(), cwd).ok()
}

/// Picks and constructs a backend. `explicit` is the first of flag, env and config that is set,
/// with a label naming where it came from for the error message.
pub(crate) fn detect(
    explicit: Option<(&str, &str)>,
    path: Option<&OsString>,
) -> Result<Box<dyn Backend>, UserError> {
    let kind = match explicit {
        Some((value, from)) => {
            let kind: BackendKind = value
                .parse()
                .map_err(|e: UserError| e.reword(|m| format!("{m} (from {from})")))?;
            if find_on_path(kind.program(), path).is_none() {
                return Err(UserError::engine(format!(
                    "backend {kind} (from {from}) was chosen but `{}` is not on PATH; install {}",
                    kind.program(),
                    kind.install_hint()
                )));
            }
            kind
        }
        None => first_on_path(path).ok_or_else(no_engine)?,
    };
    Ok(construct(kind))
}

/// The engine detection picks when nothing is chosen, if any is installed.
pub(crate) fn first_on_path(path: Option<&OsString>) -> Option<BackendKind> {
    BackendKind::ALL
        .into_iter()
        .find(|k| find_on_path(k.program(), path).is_some())
}

pub(crate) fn construct(kind: BackendKind) -> Box<dyn Backend> {
    match kind {
        BackendKind::Docker => Box::new(Docker::new(kind.program())),
        // SAFETY: geteuid and getuid have no preconditions and cannot fail
        BackendKind::Podman => Box::new(
            Podman::new(kind.program(), unsafe { libc::geteuid() } != 0)
                .for_uid(unsafe { libc::getuid() }),
        ),
        BackendKind::Apple => Box::new(Apple::new(kind.program())),
    }
}

/// A backend for a command that runs only tools and registry calls, never a build (`hjk images
/// merge` on a machine with no engine installed and none chosen): the docker CLI's, whose
/// login files are the ones the tools read too.
pub(crate) fn tools_only() -> Box<dyn Backend> {
    construct(BackendKind::Docker)
}

fn no_engine() -> UserError {
    let looked: Vec<String> = BackendKind::ALL
        .iter()
        .map(|k| format!("`{}`", k.program()))
        .collect();
    let hints: Vec<&str> = BackendKind::ALL.iter().map(|k| k.install_hint()).collect();
    UserError::engine(format!(
        "no container engine found: looked for {} on PATH; install one of: {}; or set --backend",
        looked.join(", "),
        hints.join("; ")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fake_path(programs: &[&str]) -> (tempfile::TempDir, OsString) {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        for p in programs {
            let f = dir.path().join(p);
            std::fs::write(&f, "#!/bin/sh\n").unwrap();
            std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        let path = dir.path().as_os_str().to_owned();
        (dir, path)
    }

    #[test]
    fn first_found_on_path_wins_in_documented_order() {
        let (_d, path) = fake_path(&["podman", "container"]);
        assert_eq!(
            detect(None, Some(&path)).unwrap().kind(),
            BackendKind::Podman
        );
        let (_d, path) = fake_path(&["container"]);
        assert_eq!(
            detect(None, Some(&path)).unwrap().kind(),
            BackendKind::Apple
        );
    }

    #[test]
    fn explicit_choice_beats_path_order() {
        let (_d, path) = fake_path(&["docker", "podman"]);
        let b = detect(Some(("podman", "--backend")), Some(&path)).unwrap();
        assert_eq!(b.kind(), BackendKind::Podman);
    }

    #[test]
    fn nothing_found_names_every_engine() {
        let (_d, path) = fake_path(&[]);
        let err = detect(None, Some(&path)).err().unwrap();
        for p in [
            "`docker`",
            "`podman`",
            "`container`",
            "apt-get install podman",
        ] {
            assert!(err.message().contains(p), "{err}");
        }
    }

    #[test]
    fn unknown_backend_says_where_it_came_from() {
        let (_d, path) = fake_path(&["docker"]);
        let err = detect(Some(("rkt", "OCX_BACKEND")), Some(&path))
            .err()
            .unwrap();
        assert_eq!(
            err.message(),
            "unknown backend \"rkt\"; choose one of: docker, podman, container (Apple) (from OCX_BACKEND)"
        );
    }
}
