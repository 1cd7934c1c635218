//! One "stop" for the whole process. SIGINT, SIGTERM and SIGHUP, and a closed stdout, all end up
//! here, and every wait in the program (a child process, a download, a registry call) selects on
//! [`wait`]. A second signal escalates: the runner then kills its child at once instead of
//! waiting for it to clean up.
//!
//! Once tokio registers a handler, a signal no longer kills us by default, so after
//! [`install`] every signal must be handled through here.

use crate::error::Interrupted;
use std::sync::OnceLock;
use tokio::sync::watch;

#[derive(Debug, Clone, Copy, Default)]
struct State {
    first: Option<Interrupted>,
    last: Option<Interrupted>,
    count: u32,
}

fn channel() -> &'static watch::Sender<State> {
    static TX: OnceLock<watch::Sender<State>> = OnceLock::new();
    TX.get_or_init(|| watch::channel(State::default()).0)
}

/// Starts listening for SIGINT, SIGTERM and SIGHUP. Needs a tokio runtime; call once, early.
pub(crate) fn install() -> std::io::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    for (kind, num) in [
        (SignalKind::interrupt(), libc::SIGINT),
        (SignalKind::terminate(), libc::SIGTERM),
        (SignalKind::hangup(), libc::SIGHUP),
    ] {
        let mut s = signal(kind)?;
        tokio::spawn(async move {
            while s.recv().await.is_some() {
                trigger(Interrupted::Signal(num));
            }
        });
    }
    Ok(())
}

/// Records a stop. The first reason is the one reported; later ones count as escalation.
pub(crate) fn trigger(why: Interrupted) {
    channel().send_modify(|s| {
        s.first.get_or_insert(why);
        s.last = Some(why);
        s.count += 1;
    });
}

/// The reason, if the process has been asked to stop.
pub(crate) fn current() -> Option<Interrupted> {
    channel().borrow().first
}

/// Resolves when the process is asked to stop.
pub(crate) async fn wait() -> Interrupted {
    wait_where(|_| true).await
}

/// Resolves on the first stop for which `pred` holds (an interactive session leaves a
/// terminal's Ctrl-C to the child and waits only for SIGTERM/SIGHUP).
pub(crate) async fn wait_where(pred: impl Fn(Interrupted) -> bool) -> Interrupted {
    let mut rx = channel().subscribe();
    let got = rx.wait_for(|s| s.last.is_some_and(&pred)).await;
    match got {
        Ok(s) => s.last.unwrap_or(Interrupted::Signal(libc::SIGINT)),
        // the sender is static and never dropped
        Err(_) => std::future::pending().await,
    }
}

/// Resolves when a second stop arrives (the user pressed Ctrl-C again).
pub(crate) async fn escalated() {
    let mut rx = channel().subscribe();
    if rx.wait_for(|s| s.count >= 2).await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// Fails with [`Interrupted`] if a stop has been requested; for loops that do blocking work in
/// small pieces (copying or unpacking a file checks between them).
pub(crate) fn check() -> Result<(), Interrupted> {
    match current() {
        Some(i) => Err(i),
        None => Ok(()),
    }
}

/// Runs `fut`, but gives up on it at once (dropping it, which closes its connections) when the
/// process is asked to stop: a download or a request waits on nothing else.
pub(crate) async fn until_stopped<T>(
    fut: impl std::future::Future<Output = T>,
) -> Result<T, Interrupted> {
    tokio::select! {
        v = fut => Ok(v),
        why = wait() => Err(why),
    }
}
