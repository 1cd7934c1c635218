//! Waiting on a condition: the one place the tests poll, so no test sleeps for a time and hopes.
//! Every limit is a guard against a hang, never a timing goal.

use std::io::Read;
use std::process::{Child, ExitStatus};
use std::time::{Duration, Instant};

/// How often a condition is looked at again.
const TICK: Duration = Duration::from_millis(20);

/// Calls `f` until it returns `Some`, for at most `limit`; `None` when it never did.
pub fn poll<T>(limit: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let start = Instant::now();
    loop {
        if let Some(t) = f() {
            return Some(t);
        }
        if start.elapsed() > limit {
            return None;
        }
        std::thread::sleep(TICK);
    }
}

/// [`poll`], failing the test with `what` (what never happened) when `limit` passes.
pub fn until<T>(what: &str, limit: Duration, f: impl FnMut() -> Option<T>) -> T {
    poll(limit, f).unwrap_or_else(|| panic!("{what}: not within {limit:?}"))
}

/// Whether `cond` came to hold within `limit`; the caller asserts, with its own message.
pub fn holds(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    poll(limit, || cond().then_some(())).is_some()
}

/// The exit of `child` (killed, and the test failed, after `limit`).
pub fn exit_status(child: &mut Child, limit: Duration) -> ExitStatus {
    poll(limit, || child.try_wait().unwrap()).unwrap_or_else(|| {
        let _ = child.kill();
        let _ = child.wait();
        panic!("the process did not exit within {limit:?}")
    })
}

/// [`exit_status`], then what the child printed (its pipes, when they were not taken).
pub fn exit(child: &mut Child, limit: Duration) -> (ExitStatus, String, String) {
    let status = exit_status(child, limit);
    let mut out = String::new();
    let mut err = String::new();
    if let Some(mut o) = child.stdout.take() {
        o.read_to_string(&mut out).ok();
    }
    if let Some(mut e) = child.stderr.take() {
        e.read_to_string(&mut err).ok();
    }
    (status, out, err)
}

/// The content of `path` once it exists and is not empty (a fake writes its pid there).
pub fn file(path: &std::path::Path, limit: Duration) -> String {
    until(&format!("{} appears", path.display()), limit, || {
        std::fs::read_to_string(path).ok().filter(|t| !t.is_empty())
    })
}
