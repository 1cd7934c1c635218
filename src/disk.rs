//! Writing the files ocx owns (the binary cache, build contexts) with errors a user can act on:
//! a full disk names the path, how much was being written and how much is free there.

use anyhow::{anyhow, Result};
use camino::Utf8Path;

/// `std::fs::write`, with [`io_error`]'s messages.
pub(crate) fn write(path: &Utf8Path, bytes: impl AsRef<[u8]>) -> Result<()> {
    let bytes = bytes.as_ref();
    std::fs::write(path, bytes).map_err(|e| io_error(path, Some(bytes.len() as u64), e))
}

/// An I/O error on `path` as a user reads it. ENOSPC gets the numbers; anything else the path.
pub(crate) fn io_error(path: &Utf8Path, needed: Option<u64>, e: std::io::Error) -> anyhow::Error {
    if e.raw_os_error() == Some(libc::ENOSPC) {
        let free = free_bytes(path)
            .map(|f| format!("{} free", size(f)))
            .unwrap_or_else(|| "free space unknown".into());
        let need = needed
            .map(|n| format!("{} needed, ", size(n)))
            .unwrap_or_default();
        return anyhow!(
            "no space left on the device holding {path} ({need}{free}); free some space (or point XDG_CACHE_HOME / TMPDIR elsewhere) and retry"
        );
    }
    anyhow::Error::from(e).context(format!("writing {path}"))
}

/// Bytes available to us on the filesystem holding `path` (or its nearest existing parent).
pub(crate) fn free_bytes(path: &Utf8Path) -> Option<u64> {
    let mut p = Some(path);
    while let Some(cur) = p {
        if cur.exists() {
            let c = std::ffi::CString::new(cur.as_str()).ok()?;
            // SAFETY: statvfs fills the struct we pass; the path is a valid C string
            let mut s: libc::statvfs = unsafe { std::mem::zeroed() };
            if unsafe { libc::statvfs(c.as_ptr(), &mut s) } == 0 {
                return Some(s.f_bavail as u64 * s.f_frsize as u64);
            }
            return None;
        }
        p = cur.parent();
    }
    None
}

pub(crate) fn size(n: u64) -> String {
    const MIB: u64 = 1 << 20;
    if n >= MIB {
        format!("{:.1} MiB", n as f64 / MIB as f64)
    } else {
        format!("{n} bytes")
    }
}

/// [`io_error`] for one step of a longer write (create, write).
pub(crate) fn context<T>(r: std::io::Result<T>, path: &Utf8Path, needed: Option<u64>) -> Result<T> {
    r.map_err(|e| io_error(path, needed, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_disk_names_the_path_and_the_numbers() {
        // /dev/full answers every write with ENOSPC
        let err = write(Utf8Path::new("/dev/full"), vec![0u8; 3 << 20]).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.starts_with("no space left on the device holding /dev/full (3.0 MiB needed, "),
            "{msg}"
        );
        assert!(msg.contains(" free); free some space"), "{msg}");
        let err = write(Utf8Path::new("/nonexistent-dir/x"), "x").unwrap_err();
        assert_eq!(err.to_string(), "writing /nonexistent-dir/x");
    }
}
