//! Errors and the one place they become exit codes. A user can fix bad input (2); a failed
//! build, engine or environment is not theirs to fix in the command line (1); a signal stops us
//! (128 + signal, so Ctrl-C is 130); a closed stdout ends quietly (0), as ripgrep does.
//! Keeping "bad input" and "interrupted" distinct types lets the front ends find them anywhere
//! in an error chain while the workflows still add context with `anyhow::Context`. Bad input
//! carries an [`ErrorKind`], so code and tests tell refusals apart without matching text.

use std::fmt;

/// What was wrong with the input, so a caller (or a test) can tell one refusal from another
/// without reading the message. The kind says what is wrong, not where it was written: a bad
/// image reference is a [`ErrorKind::Reference`] in a flag, a config file or devcontainer.json.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// An image reference, digest or registry repository that does not parse or has the wrong
    /// shape (a tag where a repository belongs).
    Reference,
    /// A flag, environment variable or config key holds a value it does not accept (an unknown
    /// platform, backend, auth mode or scanner; a bad `--version` or username), or settings
    /// that cannot go together (`--creds-stdin` without `--auth raw`).
    Setting,
    /// A config file (ocx.json, hjk's config.yaml, variants.yaml, devcontainer.json) does not
    /// parse, or describes something that cannot be built.
    Config,
    /// Release metadata files: missing, malformed, another schema, or not of one release.
    Metadata,
    /// A file or directory the input names is missing, of the wrong type, unreadable,
    /// unwritable, too large or not UTF-8 (a Dockerfile, an output file, the project).
    File,
    /// No container engine, or the chosen engine or builder cannot do what was asked.
    Engine,
    /// A program besides the engine is missing or cannot do its part: cosign, syft, trivy
    /// (and its DB), npm, the Dev Containers CLI, 1Password's `op`.
    Tool,
    /// Registry credentials that are missing, malformed or refused.
    Credentials,
    /// A signing or verification key (cosign) that is missing, unreadable or does not match.
    Signing,
    /// TLS trust: unusable CA certificates in `SSL_CERT_FILE`/`SSL_CERT_DIR`, or a server
    /// certificate no trusted CA signed.
    Trust,
    /// The base image cannot host what ocx adds: its users, or a libc the opencode build
    /// does not run on.
    Base,
    /// Something the input names does not exist: a variant, an image (local or pullable), an
    /// opencode release.
    NotFound,
    /// The registry holds what a release must not overwrite (a tag moved since it was read), or
    /// lacks what the metadata files name.
    Registry,
}

/// Bad input the user can fix: what kind of input, and a message of one line that says what
/// to do next. It displays as the message alone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserError {
    kind: ErrorKind,
    message: String,
}

impl UserError {
    pub(crate) fn new(kind: ErrorKind, message: impl Into<String>) -> UserError {
        UserError {
            kind,
            message: message.into(),
        }
    }

    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    pub fn message(&self) -> &str {
        &self.message
    }

    /// The same kind with a new message made from the old one, e.g. to say where a bad value
    /// came from: `e.reword(|m| format!("{m} (from {source})"))`.
    pub(crate) fn reword(self, f: impl FnOnce(&str) -> String) -> UserError {
        let message = f(&self.message);
        UserError { message, ..self }
    }
}

macro_rules! kinds {
    ($($name:ident => $kind:ident),* $(,)?) => {
        impl UserError {
            $(
                #[doc = concat!("A `UserError` of kind [`ErrorKind::", stringify!($kind), "`].")]
                pub(crate) fn $name(message: impl Into<String>) -> UserError {
                    UserError::new(ErrorKind::$kind, message)
                }
            )*
        }
    };
}

kinds! {
    reference => Reference,
    setting => Setting,
    config => Config,
    metadata => Metadata,
    file => File,
    engine => Engine,
    tool => Tool,
    credentials => Credentials,
    signing => Signing,
    trust => Trust,
    base => Base,
    not_found => NotFound,
    registry => Registry,
}

impl fmt::Display for UserError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for UserError {}

/// Shorthand for `Err(UserError::new(kind, msg).into())`.
pub(crate) fn user_error<T>(kind: ErrorKind, msg: impl Into<String>) -> anyhow::Result<T> {
    Err(UserError::new(kind, msg).into())
}

/// The bad input anywhere in an error's chain, under whatever context was added to it.
pub fn user_error_in(err: &anyhow::Error) -> Option<&UserError> {
    err.chain().find_map(|c| c.downcast_ref::<UserError>())
}

/// Why the work stopped early: a signal, or our stdout was closed by the reader.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Interrupted {
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

pub(crate) fn signal_name(sig: i32) -> &'static str {
    match sig {
        libc::SIGINT => "SIGINT (Ctrl-C)",
        libc::SIGTERM => "SIGTERM",
        libc::SIGHUP => "SIGHUP",
        _ => "a signal",
    }
}

/// Exit code for success.
pub(crate) const EXIT_OK: u8 = 0;
/// Exit code for a build, engine or environment failure.
pub(crate) const EXIT_FAILURE: u8 = 1;
/// Exit code for bad input.
pub(crate) const EXIT_USAGE: u8 = 2;

/// The exit code for an interruption: 128 + signal, like a shell reports a killed child.
pub(crate) fn interrupted_code(i: Interrupted) -> u8 {
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
    if user_error_in(err).is_some() {
        EXIT_USAGE
    } else {
        EXIT_FAILURE
    }
}

pub(crate) fn interruption(err: &anyhow::Error) -> Option<Interrupted> {
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
    if let Some(user) = user_error_in(err) {
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
        let err = user_error::<()>(ErrorKind::Setting, "bad")
            .context("while loading")
            .unwrap_err();
        assert_eq!(exit_code(&err), 2);
        assert_eq!(render(&err), ["error: bad"]);
        assert_eq!(exit_code(&anyhow::anyhow!("build failed")), 1);
    }

    #[test]
    fn the_kind_survives_context_and_display_is_the_message_alone() {
        let e = UserError::credentials("registry ghcr.io refused the token");
        assert_eq!(e.to_string(), "registry ghcr.io refused the token");
        assert_eq!(format!("{e}"), e.message());
        let err = anyhow::Error::from(e.clone())
            .context("logging in")
            .context("releasing base");
        let found = user_error_in(&err).expect("the UserError is in the chain");
        assert_eq!(found, &e);
        assert_eq!(found.kind(), ErrorKind::Credentials);
        assert_eq!(exit_code(&err), 2);
        assert_eq!(render(&err), ["error: registry ghcr.io refused the token"]);
        assert!(user_error_in(&anyhow::anyhow!("build failed")).is_none());
    }

    #[test]
    fn rewording_keeps_the_kind() {
        let e = UserError::reference("invalid image reference \"A\"")
            .reword(|m| format!("custom_base_image: {m} (from env OCX_CUSTOM_BASE_IMAGE)"));
        assert_eq!(e.kind(), ErrorKind::Reference);
        assert_eq!(
            e.message(),
            "custom_base_image: invalid image reference \"A\" (from env OCX_CUSTOM_BASE_IMAGE)"
        );
        let err = user_error::<()>(ErrorKind::File, "x does not exist").unwrap_err();
        assert_eq!(
            user_error_in(&err).map(UserError::kind),
            Some(ErrorKind::File)
        );
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
