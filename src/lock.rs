//! A lock per image tag, so two runs that assemble or publish the same multi-platform tag at
//! once (two CI jobs, two terminals) take turns instead of interleaving an engine's
//! remove/create/add sequence. An advisory `flock` on a file under the runtime or cache dir: the
//! kernel drops it when the process dies, so a crash never leaves a stale lock.

use crate::interrupt;
use anyhow::{Context, Result};
use camino::{Utf8Path, Utf8PathBuf};
use std::os::fd::AsRawFd;
use std::time::Duration;

/// Held while alive.
pub(crate) struct TagLock {
    _file: std::fs::File,
}

/// Where locks live: `$XDG_RUNTIME_DIR/agent-images/locks`, else the cache dir's.
pub(crate) fn dir(vars: &std::collections::BTreeMap<String, String>) -> Option<Utf8PathBuf> {
    vars.get("XDG_RUNTIME_DIR")
        .filter(|d| d.starts_with('/') && Utf8Path::new(d).is_dir())
        .map(Utf8PathBuf::from)
        .or_else(|| crate::dirs::cache_home(vars))
        .map(|d| d.join("agent-images/locks"))
}

impl TagLock {
    /// Waits (interruptibly) until no other process holds the lock for `tag`.
    pub(crate) async fn acquire(dir: &Utf8Path, tag: &str) -> Result<TagLock> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating the lock dir {dir}"))?;
        let path = dir.join(format!("{}.lock", crate::image_ref::sanitize(tag)));
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .with_context(|| format!("opening the lock {path}"))?;
        loop {
            // SAFETY: flock on a file descriptor we own for the duration of the call
            if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
                return Ok(TagLock { _file: file });
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(100)) => {}
                why = interrupt::wait() => return Err(why.into()),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "current_thread")]
    async fn a_second_holder_waits_for_the_first() {
        let d = tempfile::tempdir().unwrap();
        let dir = Utf8Path::from_path(d.path()).unwrap();
        let first = TagLock::acquire(dir, "r.io/hj:top").await.unwrap();
        let second = tokio::time::timeout(
            Duration::from_millis(300),
            TagLock::acquire(dir, "r.io/hj:top"),
        )
        .await;
        assert!(second.is_err(), "acquired while held");
        let other = TagLock::acquire(dir, "r.io/hj:base").await;
        assert!(other.is_ok(), "another tag is independent");
        drop(first);
        assert!(TagLock::acquire(dir, "r.io/hj:top").await.is_ok());
    }
}
