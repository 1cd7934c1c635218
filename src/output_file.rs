//! The one writer of the files a user names for output (`--metadata-file`): the bytes go to a
//! fresh temporary file in the same directory (created with `O_EXCL` under a random name, so a
//! link planted at a predictable name is never followed), are synced, and the file is renamed
//! over the target: a reader sees the old file or the new one, never half of one. On any failure
//! the temporary file is removed; a full disk says so, with the numbers.
//!
//! Before a run does any work, [`check`] refuses a target that cannot be written (no such
//! directory, a directory, a FIFO or a device) or that is one of the run's own inputs.

use crate::error::UserError;
use anyhow::{anyhow, Result};
use camino::{Utf8Path, Utf8PathBuf};
use std::io::Write;

/// The directory a path's file lives in (`.` for a bare name).
fn parent(path: &Utf8Path) -> &Utf8Path {
    match path.parent() {
        Some(p) if !p.as_str().is_empty() => p,
        _ => Utf8Path::new("."),
    }
}

/// Where `path` lands once its directory's links are followed (the file itself is replaced,
/// never followed): for comparing an output with the inputs.
fn resolved(path: &Utf8Path) -> Option<Utf8PathBuf> {
    let dir = parent(path).canonicalize_utf8().ok()?;
    Some(dir.join(path.file_name()?))
}

/// Refuses, before anything runs, an output `path` (given as `flag`) that cannot be written
/// there, or that is one of `inputs` (files) or inside one of `input_dirs` (build contexts):
/// writing it would replace what the run reads.
pub(crate) fn check(
    flag: &str,
    path: &Utf8Path,
    inputs: &[(&Utf8Path, &str)],
    input_dirs: &[(&Utf8Path, &str)],
) -> Result<(), UserError> {
    let dir = parent(path);
    if path.file_name().is_none() {
        return Err(UserError::file(format!(
            "{flag} {path} names no file; name a file"
        )));
    }
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => {
            return Err(UserError::file(format!(
                "{flag} {path} is a directory; name a file"
            )))
        }
        Ok(m) if !m.is_file() && !m.file_type().is_symlink() => {
            return Err(UserError::file(format!(
                "{flag} {path} exists and is not a regular file (a FIFO or a device); name a regular file"
            )))
        }
        _ => {}
    }
    if !dir.is_dir() {
        return Err(UserError::file(format!(
            "{flag} {path}: the directory {dir} does not exist"
        )));
    }
    let out = resolved(path);
    for (input, what) in inputs {
        let same = match (&out, resolved(input), input.canonicalize_utf8().ok()) {
            (Some(o), Some(i), c) => *o == i || Some(o) == c.as_ref(),
            _ => false,
        };
        if same {
            return Err(UserError::file(format!(
                "{flag} {path} is {what}, which this run reads; name another file"
            )));
        }
    }
    for (input, what) in input_dirs {
        if let (Some(o), Ok(d)) = (&out, input.canonicalize_utf8()) {
            if o.starts_with(&d) {
                return Err(UserError::file(format!(
                    "{flag} {path} is inside {what} ({input}), which this run builds from; name a file elsewhere"
                )));
            }
        }
    }
    // the check leaves nothing behind: the temporary file is removed when dropped
    tempfile::Builder::new()
        .prefix(".hjk-check-")
        .tempfile_in(dir)
        .map(drop)
        .map_err(|e| UserError::file(format!("{flag} {path}: cannot write in {dir}: {e}")))
}

/// Writes `bytes` to `path` atomically (see the module doc), readable by all like a file the
/// user's shell would create (0644 before the umask).
pub(crate) fn write(path: &Utf8Path, bytes: &[u8]) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let dir = parent(path);
    let name = path.file_name().unwrap_or("out");
    let failed = |e: std::io::Error| io_error(path, bytes.len() as u64, e);
    let mut tmp = tempfile::Builder::new()
        .prefix(&format!(".{name}."))
        .suffix(".tmp")
        .permissions(std::fs::Permissions::from_mode(0o644))
        .tempfile_in(dir)
        .map_err(failed)?;
    tmp.as_file_mut().write_all(bytes).map_err(failed)?;
    tmp.as_file().sync_all().map_err(failed)?;
    tmp.persist(path).map_err(|e| failed(e.error))?;
    // the rename itself, durable
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

fn io_error(path: &Utf8Path, needed: u64, e: std::io::Error) -> anyhow::Error {
    if e.raw_os_error() == Some(libc::ENOSPC) || e.kind() == std::io::ErrorKind::StorageFull {
        let free = crate::disk::free_bytes(path)
            .map(|f| format!("{} free", crate::disk::size(f)))
            .unwrap_or_else(|| "free space unknown".into());
        return anyhow!(
            "no space left on the device holding {path} ({} needed, {free})",
            crate::disk::size(needed)
        );
    }
    anyhow!("cannot write {path}: {e}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir() -> (tempfile::TempDir, Utf8PathBuf) {
        let d = tempfile::tempdir().unwrap();
        let p = Utf8PathBuf::from_path_buf(d.path().to_owned()).unwrap();
        (d, p)
    }

    #[test]
    fn a_link_at_a_predictable_temp_name_is_never_followed_and_nothing_is_left() {
        let (_d, root) = dir();
        let victim = root.join("victim.txt");
        std::fs::write(&victim, "keep").unwrap();
        // the name the old writer used
        std::os::unix::fs::symlink(&victim, root.join("out.json.tmp")).unwrap();
        let out = root.join("out.json");
        write(&out, b"{}\n").unwrap();
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "keep");
        assert_eq!(std::fs::read_to_string(&out).unwrap(), "{}\n");
        let mut names: Vec<String> = std::fs::read_dir(&root)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(names, ["out.json", "out.json.tmp", "victim.txt"]);
        // a link at the target itself is replaced, not written through
        std::os::unix::fs::symlink(&victim, root.join("link.json")).unwrap();
        write(&root.join("link.json"), b"new").unwrap();
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "keep");
    }

    #[test]
    fn outputs_that_are_inputs_or_not_files_are_refused_up_front() {
        let (_d, root) = dir();
        let images = root.join("images");
        std::fs::create_dir_all(images.join("base")).unwrap();
        std::fs::write(images.join("variants.yaml"), "x").unwrap();
        let inputs = [(
            images.join("variants.yaml"),
            "the images directory's variants.yaml",
        )];
        let inputs: Vec<(&Utf8Path, &str)> =
            inputs.iter().map(|(p, w)| (p.as_path(), *w)).collect();
        let dirs = [(images.join("base"), "variant base's directory")];
        let dirs: Vec<(&Utf8Path, &str)> = dirs.iter().map(|(p, w)| (p.as_path(), *w)).collect();
        let err = check(
            "--metadata-file",
            &images.join("variants.yaml"),
            &inputs,
            &dirs,
        )
        .unwrap_err();
        assert_eq!(
            err.message(),
            format!("--metadata-file {images}/variants.yaml is the images directory's variants.yaml, which this run reads; name another file")
        );
        // the same file through another spelling
        let err = check(
            "--metadata-file",
            &images.join("base/../variants.yaml"),
            &inputs,
            &dirs,
        )
        .unwrap_err();
        assert!(err.message().contains("which this run reads"), "{err}");
        let err = check(
            "--metadata-file",
            &images.join("base/m.json"),
            &inputs,
            &dirs,
        )
        .unwrap_err();
        assert!(
            err.message().contains("is inside variant base's directory"),
            "{err}"
        );
        assert!(check("--metadata-file", &root.join("m.json"), &inputs, &dirs).is_ok());
        assert!(
            check("--metadata-file", Utf8Path::new("/dev/null"), &[], &[])
                .unwrap_err()
                .message()
                .contains("is not a regular file")
        );
        assert_eq!(
            check("--metadata-file", Utf8Path::new("/nonexistent/dir/r.json"), &[], &[]).unwrap_err().message(),
            "--metadata-file /nonexistent/dir/r.json: the directory /nonexistent/dir does not exist"
        );
        assert!(check("--metadata-file", &root, &[], &[])
            .unwrap_err()
            .message()
            .ends_with("is a directory; name a file"));
        assert_eq!(
            std::fs::read_dir(&root).unwrap().count(),
            1,
            "nothing left by the checks"
        );
    }
}
