//! Progress reporting. The runner turns engine output into [`Event`]s; a [`Reporter`] shows them
//! as an indicatif bar (TTY), plain lines, or one JSON object per line for machines.

use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;
use std::io::{IsTerminal, Write};
use std::sync::Mutex;
use std::time::Duration;

/// How progress is shown; the `--progress` flag.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum ProgressMode {
    /// A progress bar on a terminal, plain lines otherwise.
    #[default]
    Auto,
    Plain,
    Json,
}

/// A build step as the engine numbers it: `STEP 2/5` (buildah), `Step 2/5` (classic docker),
/// `#7 [2/5]` (BuildKit).
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
    /// A message from the workflow ("up to date", a warning, a summary row).
    Message { level: &'static str, text: String },
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
}

/// Picks the reporter for a mode: a bar only on a terminal outside CI.
pub fn reporter(mode: ProgressMode) -> Box<dyn Reporter> {
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

/// Every output line to stderr, prefixed so it is clear which process printed it.
pub struct PlainReporter;

impl Reporter for PlainReporter {
    fn event(&self, ev: Event) {
        let mut err = std::io::stderr().lock();
        let _ = match ev {
            Event::Start { command } => writeln!(err, "+ {command}"),
            Event::Line { line, .. } => writeln!(err, "  {line}"),
            Event::Step(_) | Event::Finish { .. } => Ok(()),
            Event::Message {
                level: "info",
                text,
            } => writeln!(err, "{text}"),
            Event::Message { level, text } => writeln!(err, "{level}: {text}"),
        };
    }
}

/// One JSON object per line on stdout.
pub struct JsonReporter;

impl Reporter for JsonReporter {
    fn event(&self, ev: Event) {
        if let Ok(s) = serde_json::to_string(&ev) {
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "{s}");
        }
    }
}

/// A bar showing the current build step; output lines are kept off the screen (the runner
/// keeps the tail for errors).
#[derive(Default)]
pub struct BarReporter {
    bar: Mutex<Option<ProgressBar>>,
}

impl Reporter for BarReporter {
    fn event(&self, ev: Event) {
        let mut slot = self.bar.lock().unwrap();
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
                let line = if level == "info" {
                    text
                } else {
                    format!("{level}: {text}")
                };
                match slot.as_ref() {
                    Some(bar) => bar.println(line),
                    None => eprintln!("{line}"),
                }
            }
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

/// Parses the step counters all three engines print. Kept in one place because each backend
/// only chooses which of these formats its engine emits.
pub fn parse_step(line: &str) -> Option<Step> {
    use std::sync::OnceLock;
    static RE: OnceLock<regex::Regex> = OnceLock::new();
    let re = RE.get_or_init(|| {
        regex::Regex::new(
            r"^(?:\[[^\]]+\] )?(?:STEP (\d+)/(\d+): |Step (\d+)/(\d+) : |#\d+ \[(?:[^\]]*\s)?(\d+)/(\d+)\] )(.*)$",
        )
        .expect("step regex")
    });
    let c = re.captures(line.trim_end())?;
    let pick = |a: usize| c.get(a).or_else(|| c.get(a + 2)).or_else(|| c.get(a + 4));
    Some(Step {
        current: pick(1)?.as_str().parse().ok()?,
        total: pick(2)?.as_str().parse().ok()?,
        text: c.get(7).map(|m| m.as_str().to_string()).unwrap_or_default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_each_engines_step_lines() {
        let cases = [
            ("STEP 2/5: RUN useradd dev", 2, 5, "RUN useradd dev"),
            (
                "Step 3/7 : COPY opencode /usr/local/bin/",
                3,
                7,
                "COPY opencode /usr/local/bin/",
            ),
            ("#6 [2/4] RUN apt-get update", 2, 4, "RUN apt-get update"),
            ("#9 [linux/arm64 3/4] COPY x y", 3, 4, "COPY x y"),
            (
                "[linux/arm64] STEP 6/12: RUN sh setup",
                6,
                12,
                "RUN sh setup",
            ),
        ];
        for (line, cur, total, text) in cases {
            let s = parse_step(line).unwrap_or_else(|| panic!("{line}"));
            assert_eq!((s.current, s.total, s.text.as_str()), (cur, total, text));
        }
        assert_eq!(parse_step("#6 DONE 0.1s"), None);
        assert_eq!(parse_step("--> 1234abcd"), None);
    }
}
