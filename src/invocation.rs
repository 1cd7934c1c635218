//! Commands are data: an [`Invocation`] is everything needed to spawn an engine process, built
//! by a backend and asserted on in unit tests before anything runs. Its `Display` is the
//! shell-quoted command line that `--dry-run` prints and errors quote.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct Invocation {
    pub program: String,
    pub args: Vec<String>,
    /// Extra environment for the child, on top of ours. Never holds secrets: those are passed
    /// by name (`-e NAME`) and inherited, or through `stdin`.
    pub env: Vec<(String, String)>,
    /// Environment for the child whose values may be secrets (build arguments from the user's
    /// environment, passed by name): never shown, only the names are in the args.
    pub secret_env: Vec<(String, String)>,
    /// Bytes written to the child's stdin, e.g. a password for `login --password-stdin`.
    pub stdin: Option<Vec<u8>>,
    /// A failure is expected and harmless (removing something that may not exist, on a CLI
    /// with no `--ignore` flag for it); the runner reports it and goes on.
    pub may_fail: bool,
    /// Changes nothing (an inspect, a version probe), so `--dry-run` runs it for real and the
    /// plan it prints is the plan a real run follows.
    pub read_only: bool,
    /// How the runner stops it when we are asked to stop (see [`StopBy`]).
    pub stop: StopBy,
}

/// How a process is stopped when the user stops us (Ctrl-C, SIGTERM, SIGHUP).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum StopBy {
    /// The signal is forwarded to it (after the helpers in its process group), and it gets
    /// [`crate::exec::STOP_GRACE`] to clean up.
    #[default]
    Signal,
    /// The process itself is never signalled: only the other processes in its group (a build
    /// step's container, a copier), again each time new ones appear, so the step it runs fails
    /// and it cleans up as after any failed step, or it finishes the step it is in. For a
    /// builder that exits at once on a signal without cleaning up, mid-commit (one engine then
    /// leaves its working container and a half-written image that breaks every listing of
    /// the store). It gets [`crate::exec::BUILD_GRACE`]; a second stop kills it at once.
    Helpers,
}

impl Invocation {
    pub(crate) fn new(program: impl Into<String>) -> Self {
        Invocation {
            program: program.into(),
            ..Default::default()
        }
    }

    pub(crate) fn arg(mut self, a: impl Into<String>) -> Self {
        self.args.push(a.into());
        self
    }

    pub(crate) fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    pub(crate) fn may_fail(mut self) -> Self {
        self.may_fail = true;
        self
    }

    pub(crate) fn read_only(mut self) -> Self {
        self.read_only = true;
        self
    }

    /// Stopped through the helpers in its process group only (see [`StopBy::Helpers`]).
    pub(crate) fn stopped_by_helpers(mut self) -> Self {
        self.stop = StopBy::Helpers;
        self
    }

    /// Bytes for the child's stdin: how secrets reach a child (`login --password-stdin`).
    pub(crate) fn stdin(mut self, data: impl Into<Vec<u8>>) -> Self {
        self.stdin = Some(data.into());
        self
    }

    pub(crate) fn envs<I, K, V>(mut self, vars: I) -> Self
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        self.env
            .extend(vars.into_iter().map(|(k, v)| (k.into(), v.into())));
        self
    }

    pub(crate) fn env(mut self, k: impl Into<String>, v: impl Into<String>) -> Self {
        self.env.push((k.into(), v.into()));
        self
    }

    /// Adds environment whose values are never displayed (see [`Invocation::secret_env`]).
    pub(crate) fn secret_envs<'a>(
        mut self,
        vars: impl IntoIterator<Item = (&'a String, &'a String)>,
    ) -> Self {
        self.secret_env
            .extend(vars.into_iter().map(|(k, v)| (k.clone(), v.clone())));
        self
    }

    /// The argv as one list, program first; handy for assertions.
    #[cfg(test)]
    pub(crate) fn argv(&self) -> Vec<&str> {
        std::iter::once(self.program.as_str())
            .chain(self.args.iter().map(String::as_str))
            .collect()
    }
}

/// POSIX shell quoting: bare when every character is safe, else single quotes.
pub(crate) fn quote(s: &str) -> String {
    let safe = |c: char| c.is_ascii_alphanumeric() || "_-./:=@,+%^".contains(c);
    if !s.is_empty() && s.chars().all(safe) {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

impl fmt::Display for Invocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (k, v) in &self.env {
            write!(f, "{}={} ", k, quote(v))?;
        }
        write!(f, "{}", quote(&self.program))?;
        for a in &self.args {
            write!(f, " {}", quote(a))?;
        }
        if self.stdin.is_some() {
            write!(f, " <stdin>")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_env_is_never_displayed() {
        let secret = ("NPM_TOKEN".to_string(), "s3cret".to_string());
        let inv = Invocation::new("engine")
            .args(["build", "--build-arg", "NPM_TOKEN"])
            .secret_envs([(&secret.0, &secret.1)]);
        assert_eq!(inv.to_string(), "engine build --build-arg NPM_TOKEN");
        assert_eq!(inv.secret_env, [secret]);
    }

    #[test]
    fn display_is_shell_quoted() {
        let inv = Invocation::new("engine")
            .args(["build", "--label", "a=b c", "-t", "x:1"])
            .env("DOCKER_BUILDKIT", "0");
        assert_eq!(
            inv.to_string(),
            "DOCKER_BUILDKIT=0 engine build --label 'a=b c' -t x:1"
        );
        assert_eq!(quote("it's"), "'it'\\''s'");
        assert_eq!(quote("--pull=missing"), "--pull=missing");
        assert_eq!(quote("<ctx>/Dockerfile"), "'<ctx>/Dockerfile'");
    }
}
