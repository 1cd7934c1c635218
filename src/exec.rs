//! The one place that spawns processes. Every engine and tool call goes through [`Runner`], so
//! dry-run, streaming, progress, signals and error reporting behave the same for all of them.
//!
//! Stopping: on SIGINT/SIGTERM/SIGHUP (see [`crate::interrupt`]) the runner forwards the signal
//! to its child and gives it [`STOP_GRACE`] to clean up (an engine removes its working
//! container or cancels the build), then kills it; a second Ctrl-C kills at once. A builder
//! that must not be signalled itself ([`StopBy::Helpers`]: one that exits mid-commit) is
//! stopped through the processes its steps start. Children that do not
//! need the terminal run in their own process group, so a terminal's Ctrl-C reaches them once,
//! through us, and never twice.

use crate::error::Interrupted;
use crate::interrupt;
use crate::invocation::{Invocation, StopBy};
use crate::report::{Event, Reporter, Step};
use anyhow::{anyhow, Context, Result};
use std::collections::VecDeque;
use std::os::unix::process::ExitStatusExt;
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};

/// How many trailing output lines a failure shows.
pub(crate) const TAIL_LINES: usize = 20;

/// How long a child gets to exit after we forward a stop signal, before it is killed.
pub(crate) const STOP_GRACE: Duration = Duration::from_secs(10);

/// How long a builder stopped through its helpers ([`StopBy::Helpers`]) gets to end the step
/// it is in (a COPY or a commit of a large layer) before it is killed anyway. Its helpers get
/// the signal for [`STOP_GRACE`], then SIGKILL.
pub(crate) const BUILD_GRACE: Duration = Duration::from_secs(60);

/// What a captured process printed (decoded lossily: engines may print any bytes).
#[derive(Debug, Clone, Default)]
pub(crate) struct Captured {
    pub success: bool,
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Captured {
    /// A successful run that printed `stdout` (tests, recorded output).
    pub(crate) fn stdout(stdout: &str) -> Self {
        Captured {
            success: true,
            code: Some(0),
            stdout: stdout.to_string(),
            stderr: String::new(),
        }
    }

    /// A failed run that printed `stderr`.
    #[cfg(test)]
    pub(crate) fn failed(code: i32, stderr: &str) -> Self {
        Captured {
            success: false,
            code: Some(code),
            stdout: String::new(),
            stderr: stderr.to_string(),
        }
    }

    /// The last [`TAIL_LINES`] lines of both streams.
    pub(crate) fn tail(&self) -> Vec<String> {
        let mut tail: Vec<String> = self
            .stdout
            .lines()
            .chain(self.stderr.lines())
            .map(String::from)
            .collect();
        let n = tail.len().saturating_sub(TAIL_LINES);
        tail.drain(..n);
        tail
    }
}

/// A process failed. Shows the exact command and the last lines it printed.
#[derive(Debug)]
pub(crate) struct CommandFailed {
    pub command: String,
    pub code: Option<i32>,
    pub tail: Vec<String>,
    pub hint: Option<String>,
    /// The last build step the engine reported, so a caller can tell which step failed.
    pub step: Option<Step>,
}

impl std::fmt::Display for CommandFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let at = self
            .step
            .as_ref()
            .map(|s| format!(" at step {}/{} ({})", s.current, s.total, s.text))
            .unwrap_or_default();
        match self.code {
            Some(c) => write!(f, "command failed with exit code {c}{at}: {}", self.command)?,
            None => write!(f, "command was killed by a signal{at}: {}", self.command)?,
        }
        if !self.tail.is_empty() {
            write!(f, "\n--- last {} lines of output ---", self.tail.len())?;
            for l in &self.tail {
                write!(f, "\n{l}")?;
            }
            write!(f, "\n---")?;
        }
        if let Some(h) = &self.hint {
            write!(f, "\nhint: {h}")?;
        }
        Ok(())
    }
}

impl std::error::Error for CommandFailed {}

/// What a runner needs to know about a program's output: its build-step lines and the hints
/// for its known failures. Backends implement it for their engine; tools use [`NoParser`].
pub(crate) trait OutputParser: Sync {
    fn step(&self, _line: &str) -> Option<Step> {
        None
    }
    fn hint(&self, _tail: &[String]) -> Option<String> {
        None
    }
    /// A line that only alarms and tells the user nothing (the backend explains it once).
    fn noise(&self, _line: &str) -> bool {
        false
    }
    /// The engine's own summary of a failed step (not what the step's program printed), so a
    /// workflow reading a failure's last lines can tell the two apart.
    fn step_failure(&self, _line: &str) -> bool {
        false
    }
}

pub(crate) struct NoParser;
impl OutputParser for NoParser {}

/// How an interactive child is attached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Attach {
    /// Our stdin is a terminal the child reads: it stays in our process group, and a Ctrl-C
    /// from the terminal reaches it directly (opencode's TUI handles it), so we do not forward
    /// SIGINT; SIGTERM and SIGHUP are still forwarded.
    pub terminal: bool,
    /// Its stdout becomes `line` events instead of ours (`--progress json` keeps stdout JSON).
    pub capture_stdout: bool,
}

/// Spawns invocations. With `dry_run` it reports each command instead of running it and
/// pretends it succeeded with empty output; read-only queries still run, so the plan a dry run
/// prints is the plan a real run follows.
#[derive(Clone)]
pub(crate) struct Runner {
    dry_run: bool,
    reporter: Arc<dyn Reporter>,
}

impl Runner {
    pub(crate) fn new(reporter: Arc<dyn Reporter>, dry_run: bool) -> Self {
        Runner { dry_run, reporter }
    }

    pub(crate) fn dry_run(&self) -> bool {
        self.dry_run
    }

    pub(crate) fn reporter(&self) -> &dyn Reporter {
        self.reporter.as_ref()
    }

    /// The reporter, for a part of a workflow that outlives a borrow (a registry client).
    pub(crate) fn shared_reporter(&self) -> Arc<dyn Reporter> {
        self.reporter.clone()
    }

    /// In dry-run mode, reports work that is not a command (a download) as a `#` comment.
    pub(crate) fn note(&self, text: &str) {
        if self.dry_run {
            self.reporter.event(Event::Command {
                command: format!("# {text}"),
                ran: false,
            });
        }
    }

    fn stopping<'a>(&'a self, inv: &'a Invocation) -> Stopping<'a> {
        Stopping {
            by: inv.stop,
            program: &inv.program,
            reporter: self.reporter.as_ref(),
        }
    }

    /// Whether to run `inv` for real; in dry-run mode, reports it either way.
    fn runs(&self, inv: &Invocation) -> bool {
        if self.dry_run {
            self.reporter.event(Event::Command {
                command: inv.to_string(),
                ran: inv.read_only,
            });
            return inv.read_only;
        }
        true
    }

    fn command(inv: &Invocation, own_group: bool) -> Command {
        let mut cmd = Command::new(&inv.program);
        cmd.args(&inv.args)
            .envs(inv.env.iter().map(|(k, v)| (k, v)))
            .envs(inv.secret_env.iter().map(|(k, v)| (k, v)))
            .kill_on_drop(true)
            .stdin(if inv.stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            });
        if own_group {
            cmd.process_group(0);
        }
        cmd
    }

    fn spawn(inv: &Invocation, cmd: &mut Command) -> Result<Child> {
        cmd.spawn().map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                crate::error::UserError::tool(format!(
                    "could not start `{}`: it is not on PATH; install it or fix PATH",
                    inv.program
                ))
                .into()
            } else {
                anyhow!("could not start `{}`: {e}", inv.program)
            }
        })
    }

    /// Runs to completion and returns its output; a non-zero exit is not an error here, since
    /// callers like `image inspect` treat "missing" as an answer.
    pub(crate) async fn capture(&self, inv: &Invocation) -> Result<Captured> {
        if !self.runs(inv) {
            return Ok(Captured::stdout(""));
        }
        interrupt::check()?;
        let mut cmd = Self::command(inv, true);
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = Self::spawn(inv, &mut cmd)?;
        feed_stdin(&mut child, inv).await?;
        let out = tokio::spawn(read_all(child.stdout.take()));
        let err = tokio::spawn(read_all(child.stderr.take()));
        let status = wait_or_stop(&mut child, false, &self.stopping(inv)).await;
        let (out, err) = (
            drained(out).await.unwrap_or_default(),
            drained(err).await.unwrap_or_default(),
        );
        let status = status.with_context(|| format!("running {inv}"))?;
        Ok(Captured {
            success: status.success(),
            code: status.code(),
            stdout: String::from_utf8_lossy(&out).into_owned(),
            stderr: String::from_utf8_lossy(&err).into_owned(),
        })
    }

    /// Runs to completion even though a stop was requested: for the cleanup an interruption
    /// itself needs (removing a container the interrupted session left).
    pub(crate) async fn capture_ignoring_stop(&self, inv: &Invocation) -> Result<Captured> {
        let mut cmd = Self::command(inv, true);
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        let child = Self::spawn(inv, &mut cmd)?;
        let out = child.wait_with_output().await?;
        Ok(Captured {
            success: out.status.success(),
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        })
    }

    /// Runs and requires success; a failure is a [`CommandFailed`] with the output tail.
    pub(crate) async fn check(
        &self,
        inv: &Invocation,
        parser: &dyn OutputParser,
    ) -> Result<Captured> {
        let out = self.capture(inv).await?;
        if !out.success && !inv.may_fail {
            let tail = out.tail();
            return Err(CommandFailed {
                command: inv.to_string(),
                code: out.code,
                hint: parser.hint(&tail),
                tail,
                step: None,
            }
            .into());
        }
        Ok(out)
    }

    /// Runs a long process (a build), streaming stdout and stderr concurrently to the reporter
    /// line by line, turning step lines into progress, and keeping the last lines for errors.
    pub(crate) async fn stream(&self, inv: &Invocation, parser: &dyn OutputParser) -> Result<()> {
        self.stream_keeping(inv, parser, false).await.map(|_| ())
    }

    /// [`Runner::stream`], also returning how it ended and (with `keep_stdout`) all of its
    /// stdout: for a tool that prints its progress and then a result line (`devcontainer
    /// build`). With `may_fail` a failure is returned, not raised.
    pub(crate) async fn stream_keeping(
        &self,
        inv: &Invocation,
        parser: &dyn OutputParser,
        keep_stdout: bool,
    ) -> Result<Captured> {
        if !self.runs(inv) {
            return Ok(Captured::stdout(""));
        }
        interrupt::check()?;
        let started = Instant::now();
        let command = inv.to_string();
        self.reporter.event(Event::Start {
            command: command.clone(),
        });
        let mut cmd = Self::command(inv, true);
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = Self::spawn(inv, &mut cmd)?;
        feed_stdin(&mut child, inv).await?;
        let seen = Arc::new(Mutex::new(Seen {
            stdout: keep_stdout.then(String::new),
            ..Seen::default()
        }));
        // steps are parsed here, where the parser lives; the pumps only move bytes to lines
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(&'static str, String)>();
        let pumps = [
            tokio::spawn(pump(child.stdout.take(), "stdout", tx.clone())),
            tokio::spawn(pump(child.stderr.take(), "stderr", tx)),
        ];
        let reporter = self.reporter.clone();
        let seen2 = seen.clone();
        // a tool given secrets in its environment may print them (a CLI logging the build
        // command it runs): they never reach the screen or an error's tail
        let secrets: Vec<String> = inv
            .secret_env
            .iter()
            .map(|(_, v)| v.clone())
            .filter(|v| v.len() >= 4)
            .collect();
        let forward = async move {
            while let Some((stream, line)) = rx.recv().await {
                let line = secrets
                    .iter()
                    .fold(line, |l, s| l.replace(s.as_str(), "<redacted>"));
                if parser.noise(&line) {
                    continue;
                }
                let step = parser.step(&line);
                {
                    let mut s = seen2.lock().unwrap_or_else(|p| p.into_inner());
                    if s.tail.len() == TAIL_LINES {
                        s.tail.pop_front();
                    }
                    s.tail.push_back(line.clone());
                    if let Some(st) = &step {
                        s.step = Some(st.clone());
                    }
                    if let (Some(out), "stdout") = (s.stdout.as_mut(), stream) {
                        out.push_str(&line);
                        out.push('\n');
                    }
                }
                if let Some(st) = step {
                    reporter.event(Event::Step(st));
                }
                reporter.event(Event::Line { stream, line });
            }
        };
        let stopping = self.stopping(inv);
        let (status, ()) = tokio::join!(
            async {
                let st = wait_or_stop(&mut child, false, &stopping).await;
                for p in pumps {
                    let _ = drained(p).await;
                }
                st
            },
            forward
        );
        let seconds = started.elapsed().as_secs_f64();
        let ok = status.as_ref().map(|s| s.success()).unwrap_or(false);
        self.reporter.event(Event::Finish {
            command: command.clone(),
            success: ok,
            seconds,
        });
        let status = status.with_context(|| format!("running {command}"))?;
        let seen = std::mem::take(&mut *seen.lock().unwrap_or_else(|p| p.into_inner()));
        if !status.success() && !inv.may_fail {
            let tail: Vec<String> = seen.tail.into_iter().collect();
            return Err(CommandFailed {
                command,
                code: status.code(),
                hint: parser.hint(&tail),
                tail,
                step: seen.step,
            }
            .into());
        }
        Ok(Captured {
            success: status.success(),
            code: status.code(),
            stdout: seen.stdout.unwrap_or_default(),
            stderr: String::new(),
        })
    }

    /// Runs with the terminal attached (an agent session) and returns the child's exit code, so
    /// a wrapper can pass it through.
    ///
    /// `on_stop` runs as soon as a stop is requested, before the child is signalled: for a
    /// container whose PID 1 ignores signals, removing the container is what stops it.
    pub(crate) async fn interactive(
        &self,
        inv: &Invocation,
        attach: Attach,
        on_stop: Option<&Invocation>,
    ) -> Result<i32> {
        if !self.runs(inv) {
            return Ok(0);
        }
        interrupt::check()?;
        let mut cmd = Command::new(&inv.program);
        cmd.args(&inv.args)
            .envs(inv.env.iter().map(|(k, v)| (k, v)))
            .kill_on_drop(true);
        if !attach.terminal {
            cmd.process_group(0);
        }
        if attach.capture_stdout {
            cmd.stdout(Stdio::piped());
        }
        let mut child = Self::spawn(inv, &mut cmd)?;
        let pump = tokio::spawn({
            let reporter = self.reporter.clone();
            let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
            let p = pump(child.stdout.take(), "stdout", tx);
            async move {
                let fwd = async {
                    while let Some((stream, line)) = rx.recv().await {
                        reporter.event(Event::Line { stream, line });
                    }
                };
                tokio::join!(p, fwd);
            }
        });
        let status = match on_stop {
            None => wait_or_stop(&mut child, attach.terminal, &self.stopping(inv)).await,
            Some(cleanup) => {
                let terminal = attach.terminal;
                tokio::select! {
                    status = child.wait() => status.map_err(Into::into),
                    why = interrupt::wait_where(|w| !(terminal && w == Interrupted::Signal(libc::SIGINT))) => {
                        let _ = tokio::time::timeout(STOP_GRACE, self.capture_ignoring_stop(cleanup)).await;
                        stop(&mut child, why, &self.stopping(inv)).await;
                        Err(why.into())
                    }
                }
            }
        };
        let _ = drained(pump).await;
        let status = status.with_context(|| format!("running {inv}"))?;
        Ok(status
            .code()
            .unwrap_or_else(|| 128 + status.signal().unwrap_or(0)))
    }
}

#[derive(Default)]
struct Seen {
    tail: VecDeque<String>,
    step: Option<Step>,
    /// All of stdout, when the caller reads a result from it ([`Runner::stream_keeping`]).
    stdout: Option<String>,
}

/// How [`stop`] stops a child, and whom it tells when that takes a while.
struct Stopping<'a> {
    by: StopBy,
    program: &'a str,
    reporter: &'a dyn Reporter,
}

/// Waits for the child; on a stop request forwards the signal, waits [`STOP_GRACE`] (or a
/// second stop), kills what is left, and fails with [`Interrupted`]. `terminal`: a terminal
/// Ctrl-C already reached the child, so SIGINT is not forwarded (nor counted as a stop).
async fn wait_or_stop(child: &mut Child, terminal: bool, how: &Stopping<'_>) -> Result<ExitStatus> {
    let why = tokio::select! {
        status = child.wait() => return Ok(status?),
        why = interrupt::wait_where(|w| !(terminal && w == Interrupted::Signal(libc::SIGINT))) => why,
    };
    stop(child, why, how).await;
    Err(why.into())
}

/// Stops a child the way a terminal's Ctrl-C would, but in an order that lets engines clean
/// up: first the helpers in the child's process group (an engine's runtime monitor, which then
/// stops the RUN container, so the engine sees the step fail and removes its working container,
/// which one engine does not do when it is signalled itself), then the child, then, after
/// [`STOP_GRACE`] or a second stop, SIGKILL for the whole group. A child stopped
/// [`StopBy::Helpers`] is never signalled itself (see [`stop_through_helpers`]).
async fn stop(child: &mut Child, why: Interrupted, how: &Stopping<'_>) {
    let sig = match why {
        Interrupted::Signal(libc::SIGINT) => libc::SIGINT,
        _ => libc::SIGTERM,
    };
    let Some(pid) = child.id() else {
        let _ = child.wait().await;
        return;
    };
    let pid = pid as i32;
    if how.by == StopBy::Helpers {
        return stop_through_helpers(child, pid, sig, how).await;
    }
    let helpers = group_members(pid);
    let deadline = tokio::time::Instant::now() + STOP_GRACE;
    if !helpers.is_empty() {
        for h in &helpers {
            // SAFETY: kill(2) on a process in our child's process group
            unsafe { libc::kill(*h, sig) };
        }
        let half = tokio::time::Instant::now() + STOP_GRACE / 2;
        tokio::select! {
            _ = child.wait() => return,
            _ = tokio::time::sleep_until(half) => {}
            _ = interrupt::escalated() => return kill_group(child, pid).await,
        }
    }
    // SAFETY: kill(2) on a pid we spawned and have not reaped yet
    unsafe { libc::kill(pid, sig) };
    tokio::select! {
        _ = child.wait() => return,
        _ = tokio::time::sleep_until(deadline) => {}
        _ = interrupt::escalated() => {}
    }
    kill_group(child, pid).await;
}

/// Signals the other processes in the child's group, again every 100 ms as new ones appear (the
/// next RUN step's container), SIGKILL for them after [`STOP_GRACE`], until the child exits on
/// its own: its step failed and it cleaned up, or it finished a step that starts no process.
/// Only after [`BUILD_GRACE`] or a second stop is the child itself killed.
async fn stop_through_helpers(child: &mut Child, pid: i32, sig: i32, how: &Stopping<'_>) {
    let start = tokio::time::Instant::now();
    let mut told = false;
    loop {
        let sig = match start.elapsed() < STOP_GRACE {
            true => sig,
            false => libc::SIGKILL,
        };
        for h in group_members(pid) {
            // SAFETY: kill(2) on a process in our child's process group, never the child
            unsafe { libc::kill(h, sig) };
        }
        tokio::select! {
            _ = child.wait() => return,
            _ = tokio::time::sleep(Duration::from_millis(100)) => {}
            _ = interrupt::escalated() => break,
        }
        if !told && start.elapsed() > Duration::from_secs(3) {
            told = true;
            how.reporter.warn(&format!(
                "waiting for `{}` to end the step it is in (killed mid-step it can leave a half-written image); press Ctrl-C again to kill it now",
                how.program
            ));
        }
        if start.elapsed() >= BUILD_GRACE {
            break;
        }
    }
    kill_group(child, pid).await;
}

async fn kill_group(child: &mut Child, pid: i32) {
    // the whole group: whatever the engine started and could not clean up
    // SAFETY: kill(2) on the process group of a child we spawned
    unsafe { libc::kill(-pid, libc::SIGKILL) };
    let _ = child.kill().await;
}

/// The other processes in process group `pgid` (Linux: read from /proc). Empty where /proc
/// is missing; the child alone is then signalled.
fn group_members(pgid: i32) -> Vec<i32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&pid| pid != pgid)
        .filter(|&pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|stat| {
                    // pid (comm) state ppid pgrp ...; comm may hold spaces and parentheses
                    let rest = &stat[stat.rfind(')')? + 1..];
                    rest.split_whitespace().nth(2)?.parse::<i32>().ok()
                })
                == Some(pgid)
        })
        .collect()
}

async fn feed_stdin(child: &mut Child, inv: &Invocation) -> Result<()> {
    if let (Some(data), Some(mut stdin)) = (&inv.stdin, child.stdin.take()) {
        match stdin.write_all(data).await {
            // a child that exits without reading its stdin is judged by its exit status
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
            r => r.context("writing to the child's stdin")?,
        }
        drop(stdin);
    }
    Ok(())
}

async fn read_all(stream: Option<impl AsyncRead + Unpin>) -> Vec<u8> {
    let mut buf = Vec::new();
    if let Some(mut s) = stream {
        let _ = s.read_to_end(&mut buf).await;
    }
    buf
}

/// Joins an output task, but not forever: a grandchild that inherited the pipe (a daemon the
/// engine started) can keep it open after the child itself exited.
async fn drained<T>(task: tokio::task::JoinHandle<T>) -> Option<T> {
    match tokio::time::timeout(Duration::from_secs(5), task).await {
        Ok(Ok(v)) => Some(v),
        _ => None,
    }
}

/// Splits a stream into lines. Reads bytes and decodes lossily, so a non-UTF-8 byte never stops
/// the draining (a child blocked on a full pipe would hang, or die of a broken pipe).
async fn pump(
    stream: Option<impl AsyncRead + Unpin>,
    name: &'static str,
    tx: tokio::sync::mpsc::UnboundedSender<(&'static str, String)>,
) {
    let Some(stream) = stream else { return };
    let mut reader = BufReader::new(stream);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        match reader.read_until(b'\n', &mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(_) => {
                while buf.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
                    buf.pop();
                }
                let line = String::from_utf8_lossy(&buf).into_owned();
                if tx.send((name, line)).is_err() {
                    // nobody listens any more; keep draining so the child never blocks
                    continue;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::Event;

    struct Collect(Mutex<Vec<String>>);
    impl Reporter for Collect {
        fn event(&self, ev: Event) {
            if let Event::Line { line, .. } = ev {
                self.0.lock().unwrap().push(line);
            }
        }
    }

    #[tokio::test(flavor = "current_thread")]
    async fn non_utf8_output_is_drained_and_decoded_lossily() {
        let rep = Arc::new(Collect(Mutex::new(Vec::new())));
        let runner = Runner::new(rep.clone(), false);
        // 10000 lines with an invalid byte each (about 100 KB, more than a 64 KiB pipe
        // buffer), then a marker
        let script = r#"i=0; while [ $i -lt 10000 ]; do printf 'caf\351 %s\n' $i; i=$((i+1)); done; echo done"#;
        let inv = Invocation::new("sh").args(["-c", script]);
        runner.stream(&inv, &NoParser).await.unwrap();
        let lines = rep.0.lock().unwrap();
        assert_eq!(lines.len(), 10001);
        assert_eq!(lines[0], "caf\u{fffd} 0");
        assert_eq!(lines.last().unwrap(), "done");
    }

    /// A tool given a secret in its environment may print it (a CLI logging the command it
    /// runs): the reported lines and an error's tail show it masked; stdout kept for a
    /// result is masked too.
    #[tokio::test(flavor = "current_thread")]
    async fn secret_env_values_are_masked_in_streamed_output() {
        let rep = Arc::new(Collect(Mutex::new(Vec::new())));
        let runner = Runner::new(rep.clone(), false);
        let secret = ("NPM_TOKEN".to_string(), "npm_s3cr3t_value".to_string());
        let inv = Invocation::new("sh")
            .args([
                "-c",
                "echo \"run --build-arg NPM_TOKEN=$NPM_TOKEN\"; echo \"$NPM_TOKEN\" >&2; exit 1",
            ])
            .secret_envs([(&secret.0, &secret.1)]);
        let err = runner.stream(&inv, &NoParser).await.unwrap_err();
        let failed = err.downcast_ref::<CommandFailed>().unwrap();
        let shown = format!(
            "{:?} {:?} {}",
            rep.0.lock().unwrap(),
            failed.tail,
            failed.command
        );
        assert!(!shown.contains("npm_s3cr3t_value"), "{shown}");
        assert!(shown.contains("NPM_TOKEN=<redacted>"), "{shown}");
        let out = runner
            .stream_keeping(&inv.clone().may_fail(), &NoParser, true)
            .await
            .unwrap();
        assert!(
            !out.success && out.stdout.contains("NPM_TOKEN=<redacted>"),
            "{}",
            out.stdout
        );
    }

    #[tokio::test(flavor = "current_thread")]
    async fn failure_names_the_command_and_keeps_the_tail() {
        let rep = Arc::new(Collect(Mutex::new(Vec::new())));
        let runner = Runner::new(rep, false);
        let inv = Invocation::new("sh").args(["-c", "echo one; echo two >&2; exit 3"]);
        let err = runner.stream(&inv, &NoParser).await.unwrap_err();
        let failed = err.downcast_ref::<CommandFailed>().unwrap();
        assert_eq!(failed.code, Some(3));
        let mut tail = failed.tail.clone();
        tail.sort();
        assert_eq!(tail, ["one", "two"]);
        let out = runner
            .capture(&Invocation::new("sh").args(["-c", "printf 'a\\377'; exit 4"]))
            .await
            .unwrap();
        assert_eq!((out.code, out.stdout.as_str()), (Some(4), "a\u{fffd}"));
    }
}
