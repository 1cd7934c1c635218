//! The one place that spawns processes. Every engine call goes through [`Runner`], so dry-run,
//! streaming, progress, Ctrl-C and error reporting behave the same for all backends.

use crate::invocation::Invocation;
use crate::progress::{parse_step, Event, Reporter};
use anyhow::{anyhow, Context, Result};
use std::collections::VecDeque;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWriteExt, BufReader};
use tokio::process::Command;

/// How many trailing output lines a failure shows.
pub const TAIL_LINES: usize = 20;

/// What a captured process printed.
#[derive(Debug, Clone, Default)]
pub struct Captured {
    pub success: bool,
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Captured {
    /// A successful run that printed `stdout` (tests, recorded output).
    pub fn stdout(stdout: &str) -> Self {
        Captured {
            success: true,
            code: Some(0),
            stdout: stdout.to_string(),
            stderr: String::new(),
        }
    }
}

/// A process failed. Shows the exact command and the last lines it printed.
#[derive(Debug)]
pub struct CommandFailed {
    pub command: String,
    pub code: Option<i32>,
    pub tail: Vec<String>,
    pub hint: Option<String>,
}

impl std::fmt::Display for CommandFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.code {
            Some(c) => write!(f, "command failed with exit code {c}: {}", self.command)?,
            None => write!(f, "command was killed by a signal: {}", self.command)?,
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

/// The user pressed Ctrl-C; the child was killed.
#[derive(Debug)]
pub struct Interrupted;

impl std::fmt::Display for Interrupted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("interrupted; the engine process was stopped")
    }
}

impl std::error::Error for Interrupted {}

/// Spawns invocations. With `dry_run` it prints each command (shell-quoted) to stdout instead
/// and pretends it succeeded with empty output, so workflows plan as if nothing existed yet.
pub struct Runner {
    dry_run: bool,
    reporter: Arc<dyn Reporter>,
}

impl Runner {
    pub fn new(reporter: Arc<dyn Reporter>, dry_run: bool) -> Self {
        Runner { dry_run, reporter }
    }

    pub fn dry_run(&self) -> bool {
        self.dry_run
    }

    pub fn reporter(&self) -> &dyn Reporter {
        self.reporter.as_ref()
    }

    /// In dry-run mode, prints a note (as a shell comment) about work that is not an engine
    /// command, such as a download.
    pub fn note(&self, text: &str) {
        if self.dry_run {
            println!("# {text}");
        }
    }

    fn command(inv: &Invocation) -> Command {
        let mut cmd = Command::new(&inv.program);
        cmd.args(&inv.args)
            .envs(inv.env.iter().map(|(k, v)| (k, v)))
            .kill_on_drop(true)
            .stdin(if inv.stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            });
        cmd
    }

    fn spawn_error(inv: &Invocation, e: std::io::Error) -> anyhow::Error {
        anyhow!("could not start `{}`: {e}", inv.program)
    }

    /// Runs to completion and returns its output; a non-zero exit is not an error here, since
    /// callers like `image inspect` treat "missing" as an answer.
    pub async fn capture(&self, inv: &Invocation) -> Result<Captured> {
        if self.dry_run {
            println!("{inv}");
            return Ok(Captured {
                success: true,
                code: Some(0),
                ..Default::default()
            });
        }
        let mut cmd = Self::command(inv);
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = cmd.spawn().map_err(|e| Self::spawn_error(inv, e))?;
        feed_stdin(&mut child, inv).await?;
        let out = tokio::select! {
            out = child.wait_with_output() => out.with_context(|| format!("waiting for {inv}"))?,
            _ = tokio::signal::ctrl_c() => return Err(Interrupted.into()),
        };
        Ok(Captured {
            success: out.status.success(),
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        })
    }

    /// Runs and requires success; a failure is a [`CommandFailed`] with the output tail.
    pub async fn check(&self, inv: &Invocation) -> Result<Captured> {
        let out = self.capture(inv).await?;
        if !out.success {
            let mut tail: Vec<String> = out
                .stdout
                .lines()
                .chain(out.stderr.lines())
                .map(String::from)
                .collect();
            let n = tail.len().saturating_sub(TAIL_LINES);
            tail.drain(..n);
            return Err(CommandFailed {
                command: inv.to_string(),
                code: out.code,
                tail,
                hint: None,
            }
            .into());
        }
        Ok(out)
    }

    /// Runs a long process (a build), streaming stdout and stderr concurrently to the reporter
    /// line by line, turning step lines into progress, and keeping the last lines for errors.
    /// Ctrl-C kills the child and returns [`Interrupted`].
    pub async fn stream(&self, inv: &Invocation) -> Result<()> {
        if self.dry_run {
            println!("{inv}");
            return Ok(());
        }
        let started = Instant::now();
        self.reporter.event(Event::Start {
            command: inv.to_string(),
        });
        let mut cmd = Self::command(inv);
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = cmd.spawn().map_err(|e| Self::spawn_error(inv, e))?;
        feed_stdin(&mut child, inv).await?;
        let tail = Arc::new(Mutex::new(VecDeque::with_capacity(TAIL_LINES)));
        let out = pump(
            child.stdout.take(),
            "stdout",
            self.reporter.clone(),
            tail.clone(),
        );
        let err = pump(
            child.stderr.take(),
            "stderr",
            self.reporter.clone(),
            tail.clone(),
        );
        let finished = {
            let waited = async {
                let (_, _, status) = tokio::join!(out, err, child.wait());
                status
            };
            tokio::select! {
                status = waited => Some(status),
                _ = tokio::signal::ctrl_c() => None,
            }
        };
        let Some(status) = finished else {
            // kill and reap, so no engine process outlives us (kill_on_drop would not reap)
            let _ = child.kill().await;
            self.reporter.event(Event::Finish {
                command: inv.to_string(),
                success: false,
                seconds: started.elapsed().as_secs_f64(),
            });
            return Err(Interrupted.into());
        };
        let status = status.with_context(|| format!("waiting for {inv}"))?;
        self.reporter.event(Event::Finish {
            command: inv.to_string(),
            success: status.success(),
            seconds: started.elapsed().as_secs_f64(),
        });
        if !status.success() && inv.may_fail {
            return Ok(());
        }
        if !status.success() {
            let tail: Vec<String> = tail.lock().unwrap().iter().cloned().collect();
            let hint = hint_for(&tail);
            return Err(CommandFailed {
                command: inv.to_string(),
                code: status.code(),
                tail,
                hint,
            }
            .into());
        }
        Ok(())
    }

    /// Runs with the terminal attached (an agent session) and returns the child's exit code, so
    /// a wrapper can pass it through. Ctrl-C reaches the child through the terminal; we keep
    /// waiting for it instead of dying first.
    pub async fn interactive(&self, inv: &Invocation) -> Result<i32> {
        if self.dry_run {
            println!("{inv}");
            return Ok(0);
        }
        let mut cmd = Command::new(&inv.program);
        cmd.args(&inv.args)
            .envs(inv.env.iter().map(|(k, v)| (k, v)))
            .kill_on_drop(true);
        let mut child = cmd.spawn().map_err(|e| Self::spawn_error(inv, e))?;
        loop {
            tokio::select! {
                status = child.wait() => {
                    let status = status.with_context(|| format!("waiting for {inv}"))?;
                    use std::os::unix::process::ExitStatusExt;
                    return Ok(status.code().unwrap_or_else(|| 128 + status.signal().unwrap_or(0)));
                }
                _ = tokio::signal::ctrl_c() => continue,
            }
        }
    }
}

async fn feed_stdin(child: &mut tokio::process::Child, inv: &Invocation) -> Result<()> {
    if let (Some(data), Some(mut stdin)) = (&inv.stdin, child.stdin.take()) {
        stdin
            .write_all(data)
            .await
            .context("writing to the engine's stdin")?;
        drop(stdin);
    }
    Ok(())
}

async fn pump(
    stream: Option<impl AsyncRead + Unpin>,
    name: &'static str,
    reporter: Arc<dyn Reporter>,
    tail: Arc<Mutex<VecDeque<String>>>,
) {
    let Some(stream) = stream else { return };
    let mut lines = BufReader::new(stream).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        if let Some(step) = parse_step(&line) {
            reporter.event(Event::Step(step));
        }
        {
            let mut t = tail.lock().unwrap();
            if t.len() == TAIL_LINES {
                t.pop_front();
            }
            t.push_back(line.clone());
        }
        reporter.event(Event::Line { stream: name, line });
    }
}

/// Known failures in engine output, with what to do about them.
fn hint_for(tail: &[String]) -> Option<String> {
    let text = tail.join("\n");
    let hints = [
        ("exec format error", "the base image lacks this architecture or qemu binfmt is not installed; install qemu-user-static"),
        ("no space left on device", "free disk space, e.g. `podman system prune` or `docker system prune`"),
        ("permission denied while trying to connect to the docker daemon", "add yourself to the docker group or use --backend podman"),
        ("Cannot connect to the Docker daemon", "start dockerd (e.g. `sudo systemctl start docker`) or use --backend podman"),
        ("manifest unknown", "the base image tag does not exist in the registry; check the name"),
    ];
    hints
        .iter()
        .find(|(needle, _)| text.contains(needle))
        .map(|(_, h)| h.to_string())
}
