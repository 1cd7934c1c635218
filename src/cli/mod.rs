//! Argument parsing for the two binaries. Thin: each command parses, calls one workflow
//! function, and turns its result into an exit code through [`crate::error`].

pub mod hjk;
pub mod ocx;

use std::future::Future;
use std::process::ExitCode;
use std::time::Duration;

/// Runs a front end: parse arguments (clap's own errors are bad input too: exit 2), start the
/// signal handling, run the workflow on a current-thread runtime, and print the error, if any.
pub(crate) fn main<T, F, Fut>(run: F) -> ExitCode
where
    T: clap::Parser,
    F: FnOnce(T) -> Fut,
    Fut: Future<Output = anyhow::Result<u8>>,
{
    let args = match T::try_parse() {
        Ok(a) => a,
        Err(e) => {
            let code = if e.use_stderr() {
                crate::error::EXIT_USAGE
            } else {
                crate::error::EXIT_OK
            };
            // styled only for a terminal: `--help | less` or a log file gets plain text
            let to_stderr = e.use_stderr();
            let styled = e.render();
            let text = if crate::report::styles_on(to_stderr) {
                styled.ansi().to_string()
            } else {
                styled.to_string()
            };
            // `--help | head -1` must not panic on the closed pipe
            crate::report::stdout_or_stderr(&text, to_stderr);
            return ExitCode::from(code);
        }
    };
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            crate::report::stderr(&format!("error: cannot start the async runtime: {e}\n"));
            return ExitCode::from(crate::error::EXIT_FAILURE);
        }
    };
    let result = rt.block_on(async {
        crate::interrupt::install()?;
        run(args).await
    });
    // a download thread blocked in a read must not keep the process alive after a stop
    rt.shutdown_timeout(Duration::from_millis(200));
    let result = match (result, crate::interrupt::current()) {
        // stdout closed under us: whatever happened after that, nobody is reading
        (_, Some(crate::error::Interrupted::ClosedOutput)) => {
            Err(crate::error::Interrupted::ClosedOutput.into())
        }
        (r, _) => r,
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            for line in crate::error::render(&e) {
                crate::report::stderr(&format!("{line}\n"));
            }
            ExitCode::from(crate::error::exit_code(&e))
        }
    }
}
