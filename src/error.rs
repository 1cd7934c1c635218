//! Exit codes: a user can fix bad input (2); a failed build or engine fault is ours or theirs (1).
//! Keeping "bad input" a distinct type lets the front ends map it to exit code 2 wherever in the
//! error chain it sits, while still wrapping it with `anyhow::Context`.

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

/// Exit code for bad input.
pub const EXIT_USAGE: u8 = 2;
/// Exit code for a build or engine failure.
pub const EXIT_FAILURE: u8 = 1;

/// The exit code an error deserves: 2 if any cause is a [`UserError`].
pub fn exit_code(err: &anyhow::Error) -> u8 {
    if err.chain().any(|c| c.is::<UserError>()) {
        EXIT_USAGE
    } else {
        EXIT_FAILURE
    }
}

/// Prints an error the way users read it: `error: <first line>` then the cause chain.
/// A `UserError` is printed alone on one line; its wrappers add nothing a user needs.
pub fn report(err: &anyhow::Error) {
    if let Some(user) = err.chain().find_map(|c| c.downcast_ref::<UserError>()) {
        eprintln!("error: {user}");
        return;
    }
    eprintln!("error: {err}");
    for cause in err.chain().skip(1) {
        eprintln!("  caused by: {cause}");
    }
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
        assert_eq!(exit_code(&anyhow::anyhow!("build failed")), 1);
    }
}
