//! Reading a config file the user may not control (a cloned project's `ocx.json`): it must be a
//! regular file. A dangling symlink is an error, not "no config" (the defaults would silently
//! apply), and a FIFO or device is refused before it is opened (reading a FIFO blocks forever).

use crate::error::UserError;
use camino::Utf8Path;

/// The file's text, `None` if nothing is at `path`.
pub fn read(path: &Utf8Path) -> Result<Option<String>, UserError> {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(UserError(format!("cannot read {path}: {e}"))),
    };
    let meta = if meta.file_type().is_symlink() {
        std::fs::metadata(path).map_err(|e| {
            let target = std::fs::read_link(path)
                .map(|t| t.display().to_string())
                .unwrap_or_default();
            UserError(format!(
                "{path} is a symlink to {target}, which cannot be read ({e}); fix or remove the link"
            ))
        })?
    } else {
        meta
    };
    if !meta.is_file() {
        return Err(UserError(format!(
            "{path} is not a regular file; replace it with a file or remove it"
        )));
    }
    std::fs::read_to_string(path)
        .map(Some)
        .map_err(|e| UserError(format!("cannot read {path}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use camino::Utf8PathBuf;

    #[test]
    fn dangling_links_and_fifos_are_errors_and_absence_is_not() {
        let dir = tempfile::tempdir().unwrap();
        let root = Utf8PathBuf::from_path_buf(dir.path().to_owned()).unwrap();
        assert_eq!(read(&root.join("missing.json")).unwrap(), None);
        std::os::unix::fs::symlink(root.join("nowhere"), root.join("ocx.json")).unwrap();
        let err = read(&root.join("ocx.json")).unwrap_err();
        assert!(err.0.contains("is a symlink to"), "{err}");
        let fifo = root.join("fifo.json");
        let c = std::ffi::CString::new(fifo.as_str()).unwrap();
        // SAFETY: mkfifo on a path we own, with a valid C string
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let err = read(&fifo).unwrap_err();
        assert!(err
            .0
            .ends_with("is not a regular file; replace it with a file or remove it"));
        std::fs::write(root.join("ok.json"), "{}").unwrap();
        assert_eq!(read(&root.join("ok.json")).unwrap().as_deref(), Some("{}"));
    }
}
