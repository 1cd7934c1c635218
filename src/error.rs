//! Errors and the one place they become exit codes. A user can fix bad input (2); a failed
//! build, engine or environment is not theirs to fix in the command line (1); a signal stops us
//! (128 + signal, so Ctrl-C is 130); a closed stdout ends quietly (0), as ripgrep does.
//! Keeping "bad input" and "interrupted" distinct types lets the front ends find them anywhere
//! in an error chain while the workflows still add context with `anyhow::Context`.

use std::fmt;

/// Bad input the user can fix: a malformed config, a bad image reference, a missing file.
/// The message is one line and says what to do next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserError(pub String);

impl fmt::Display for UserError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UserError {}

/// Shorthand for `Err(UserError(..).into())`.
pub fn user_error<T>(msg: impl Into<String>) -> anyhow::Result<T> {
    Err(UserError(msg.into()).into())
}

/// Why the work stopped early: a signal, or our stdout was closed by the reader.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interrupted {
    Signal(i32),
    /// `ocx ... | head -1`: the reader is gone, nothing more can be shown.
    ClosedOutput,
}

impl fmt::Display for Interrupted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Interrupted::Signal(s) => write!(f, "interrupted by {}", signal_name(*s)),
            Interrupted::ClosedOutput => f.write_str("stopped: the output pipe was closed"),
        }
    }
}

impl std::error::Error for Interrupted {}

pub fn signal_name(sig: i32) -> &'static str {
    match sig {
        libc::SIGINT => "SIGINT (Ctrl-C)",
        libc::SIGTERM => "SIGTERM",
        libc::SIGHUP => "SIGHUP",
        _ => "a signal",
    }
}

/// Exit code for success.
pub const EXIT_OK: u8 = 0;
/// Exit code for a build, engine or environment failure.
pub const EXIT_FAILURE: u8 = 1;
/// Exit code for bad input.
pub const EXIT_USAGE: u8 = 2;

/// The exit code for an interruption: 128 + signal, like a shell reports a killed child.
pub fn interrupted_code(i: Interrupted) -> u8 {
    match i {
        Interrupted::Signal(s) => (128 + s).clamp(0, 255) as u8,
        Interrupted::ClosedOutput => EXIT_OK,
    }
}

/// The exit code an error deserves. An interruption wins over whatever it caused.
pub fn exit_code(err: &anyhow::Error) -> u8 {
    if let Some(i) = interruption(err) {
        return interrupted_code(i);
    }
    if err.chain().any(|c| c.is::<UserError>()) {
        EXIT_USAGE
    } else {
        EXIT_FAILURE
    }
}

pub fn interruption(err: &anyhow::Error) -> Option<Interrupted> {
    err.chain()
        .find_map(|c| c.downcast_ref::<Interrupted>().copied())
}

/// The lines a user reads for an error: `error: <first line>` then the cause chain. A
/// `UserError` is one line on its own; its wrappers add nothing a user needs. An interruption
/// says so first, then where it happened. A closed output prints nothing: nobody reads it.
pub fn render(err: &anyhow::Error) -> Vec<String> {
    if let Some(i) = interruption(err) {
        if i == Interrupted::ClosedOutput {
            return Vec::new();
        }
        let mut out = vec![format!("error: {i}")];
        let context: Vec<String> = err
            .chain()
            .filter(|c| !c.is::<Interrupted>())
            .map(|c| c.to_string())
            .collect();
        if !context.is_empty() {
            out.push(format!("  while: {}", context.join(": ")));
        }
        return out;
    }
    if let Some(user) = err.chain().find_map(|c| c.downcast_ref::<UserError>()) {
        return vec![format!("error: {user}")];
    }
    let mut out = vec![format!("error: {err}")];
    for cause in err.chain().skip(1) {
        out.push(format!("  caused by: {cause}"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::Context;

    #[test]
    fn user_error_anywhere_in_chain_is_exit_2() {
        let err = user_error::<()>("bad")
            .context("while loading")
            .unwrap_err();
        assert_eq!(exit_code(&err), 2);
        assert_eq!(render(&err), ["error: bad"]);
        assert_eq!(exit_code(&anyhow::anyhow!("build failed")), 1);
    }

    #[test]
    fn interruptions_map_to_128_plus_signal_and_say_so_first() {
        let err =
            anyhow::Error::from(Interrupted::Signal(libc::SIGTERM)).context("building ocx-dev:1");
        assert_eq!(exit_code(&err), 143);
        assert_eq!(
            render(&err),
            [
                "error: interrupted by SIGTERM",
                "  while: building ocx-dev:1"
            ]
        );
        let err = anyhow::Error::from(Interrupted::Signal(libc::SIGINT));
        assert_eq!(exit_code(&err), 130);
        let err = anyhow::Error::from(Interrupted::ClosedOutput).context("listing");
        assert_eq!((exit_code(&err), render(&err).len()), (0, 0));
    }
}
