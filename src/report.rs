//! Every line a user sees goes through here: engine output and progress, dry-run commands,
//! warnings, results and hints. One [`Reporter`] per run shows them as a progress bar (a
//! terminal), plain lines, or one JSON object per line on stdout (`--progress json`), so a
//! machine reading stdout never gets anything but JSON.
//!
//! Writing to a closed stdout (`hjk images list | head -1`) must not panic: the write fails
//! with a broken pipe, which stops the run quietly through [`crate::interrupt`].

use crate::error::Interrupted;
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;
use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::Duration;

/// How progress is shown; the `--progress` flag.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum ProgressMode {
    /// A progress bar on a terminal outside CI, plain lines otherwise.
    #[default]
    Auto,
    /// Every engine output line on stderr, prefixed; results on stdout.
    Plain,
    /// One JSON object per line on stdout (start, line, step, finish, message, command, result); nothing else on stdout.
    Json,
}

/// A build step as the engine numbers it; backends parse their engine's format into this.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Step {
    pub current: u32,
    pub total: u32,
    pub text: String,
}

#[derive(Debug, Clone, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// A process starts.
    Start { command: String },
    /// A line of its output.
    Line { stream: &'static str, line: String },
    /// The engine reports a new build step.
    Step(Step),
    /// The process ended.
    Finish {
        command: String,
        success: bool,
        seconds: f64,
    },
    /// A message from the workflow ("up to date", a warning, a hint).
    Message { level: &'static str, text: String },
    /// `--dry-run`: a command in the plan. `ran` is true for read-only queries (inspect, probes),
    /// which do run, so the plan is the one a real run would follow.
    Command { command: String, ran: bool },
    /// What the command produces: a table or a line in plain mode, `data` in JSON mode.
    Result {
        #[serde(skip)]
        text: String,
        data: serde_json::Value,
    },
}

pub trait Reporter: Send + Sync {
    fn event(&self, ev: Event);

    fn info(&self, text: &str) {
        self.event(Event::Message {
            level: "info",
            text: text.to_string(),
        });
    }

    fn warn(&self, text: &str) {
        self.event(Event::Message {
            level: "warning",
            text: text.to_string(),
        });
    }

    fn hint(&self, text: &str) {
        self.event(Event::Message {
            level: "hint",
            text: text.to_string(),
        });
    }

    /// The command's output: `text` for people, `data` for `--progress json` / `--json`.
    fn result(&self, text: String, data: serde_json::Value) {
        self.event(Event::Result { text, data });
    }
}

/// For `--json` output flags: the result's data alone, pretty-printed on stdout (what scripts
/// parse), and everything else as plain lines on stderr.
pub(crate) struct DataReporter;

impl Reporter for DataReporter {
    fn event(&self, ev: Event) {
        match ev {
            Event::Result { data, .. } => stdout(&line(
                serde_json::to_string_pretty(&data).unwrap_or_default(),
            )),
            Event::Command { command, .. } => stderr(&line(command)),
            ev => PlainReporter.event(ev),
        }
    }
}

/// Picks the reporter for a mode: a bar only on a terminal outside CI.
pub(crate) fn reporter(mode: ProgressMode) -> Box<dyn Reporter> {
    match mode {
        ProgressMode::Json => Box::new(JsonReporter),
        ProgressMode::Plain => Box::new(PlainReporter),
        ProgressMode::Auto => {
            if std::io::stderr().is_terminal() && std::env::var_os("CI").is_none() {
                Box::new(BarReporter::default())
            } else {
                Box::new(PlainReporter)
            }
        }
    }
}

static STDOUT_CLOSED: AtomicBool = AtomicBool::new(false);

/// Writes to stdout. A broken pipe stops the run (quietly, exit 0) instead of panicking, and
/// nothing more is written.
pub(crate) fn stdout(text: &str) {
    if STDOUT_CLOSED.load(Ordering::Relaxed) {
        return;
    }
    let mut out = std::io::stdout().lock();
    let res = out.write_all(text.as_bytes()).and_then(|_| out.flush());
    if let Err(e) = res {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            STDOUT_CLOSED.store(true, Ordering::Relaxed);
            crate::interrupt::trigger(Interrupted::ClosedOutput);
        }
    }
}

/// Writes to stderr or stdout; for text printed before any reporter exists (clap's help).
/// Whether text for stderr (`to_stderr`) or stdout may carry terminal styles: the stream is a
/// terminal and `NO_COLOR` is unset (no-color.org).
pub(crate) fn styles_on(to_stderr: bool) -> bool {
    use std::io::IsTerminal;
    let terminal = if to_stderr {
        std::io::stderr().is_terminal()
    } else {
        std::io::stdout().is_terminal()
    };
    terminal && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

pub(crate) fn stdout_or_stderr(text: &str, to_stderr: bool) {
    if to_stderr {
        stderr(text)
    } else {
        stdout(text)
    }
}

/// Writes to stderr; a closed stderr is ignored (there is nowhere left to say anything).
pub(crate) fn stderr(text: &str) {
    let mut err = std::io::stderr().lock();
    let _ = err.write_all(text.as_bytes());
}

fn line(text: impl AsRef<str>) -> String {
    let mut s = text.as_ref().to_string();
    if !s.ends_with('\n') {
        s.push('\n');
    }
    s
}

/// Engine output to stderr, prefixed so it is clear which process printed it; results and
/// dry-run commands to stdout.
pub struct PlainReporter;

impl Reporter for PlainReporter {
    fn event(&self, ev: Event) {
        match ev {
            Event::Start { command } => stderr(&line(format!("+ {command}"))),
            Event::Line { line: l, .. } => stderr(&line(format!("  {l}"))),
            Event::Step(_) | Event::Finish { .. } => {}
            Event::Message {
                level: "info",
                text,
            } => stderr(&line(text)),
            Event::Message { level, text } => stderr(&line(format!("{level}: {text}"))),
            Event::Command { command, .. } => stdout(&line(command)),
            Event::Result { text, .. } => stdout(&text),
        }
    }
}

/// One JSON object per line on stdout; nothing else is written there.
pub(crate) struct JsonReporter;

impl Reporter for JsonReporter {
    fn event(&self, ev: Event) {
        let value = match ev {
            // the data itself is the event, with its kind added
            Event::Result { data, .. } => serde_json::json!({"event": "result", "result": data}),
            ev => serde_json::to_value(&ev).unwrap_or_default(),
        };
        stdout(&line(value.to_string()));
    }
}

/// A bar showing the current build step; output lines are kept off the screen (the runner
/// keeps the tail for errors).
#[derive(Default)]
pub(crate) struct BarReporter {
    bar: Mutex<Option<ProgressBar>>,
}

impl Reporter for BarReporter {
    fn event(&self, ev: Event) {
        let mut slot = self.bar.lock().unwrap_or_else(|p| p.into_inner());
        match ev {
            Event::Start { command } => {
                let bar = ProgressBar::new(0);
                bar.set_style(
                    ProgressStyle::with_template(
                        "{spinner} [{elapsed}] {bar:20} {pos}/{len} {msg}",
                    )
                    .unwrap_or_else(|_| ProgressStyle::default_bar()),
                );
                bar.enable_steady_tick(Duration::from_millis(120));
                bar.set_message(truncate(&command, 70));
                *slot = Some(bar);
            }
            Event::Step(step) => {
                if let Some(bar) = slot.as_ref() {
                    bar.set_length(step.total as u64);
                    bar.set_position(step.current as u64);
                    bar.set_message(truncate(&step.text, 70));
                }
            }
            Event::Line { .. } => {}
            Event::Finish { .. } => {
                if let Some(bar) = slot.take() {
                    bar.finish_and_clear();
                }
            }
            Event::Message { level, text } => {
                let text = if level == "info" {
                    text
                } else {
                    format!("{level}: {text}")
                };
                match slot.as_ref() {
                    Some(bar) => bar.println(text),
                    None => stderr(&line(text)),
                }
            }
            Event::Command { command, .. } => stdout(&line(command)),
            Event::Result { text, .. } => stdout(&text),
        }
    }
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        s.chars().take(n - 1).chain(std::iter::once('…')).collect()
    }
}
