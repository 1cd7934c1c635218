//! Argument parsing for the two binaries. Thin: each command calls one workflow function.

pub mod hjk;
pub mod ocx;

use std::process::ExitCode;

/// Runs an async workflow on a current-thread runtime and maps its result to an exit code.
pub(crate) fn finish(result: anyhow::Result<u8>) -> ExitCode {
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            if e.chain().any(|c| c.is::<crate::exec::Interrupted>()) {
                eprintln!("error: {e}");
                return ExitCode::from(130);
            }
            crate::error::report(&e);
            ExitCode::from(crate::error::exit_code(&e))
        }
    }
}

pub(crate) fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// clap's own errors (unknown flags, bad values) are bad input too: exit 2, one line.
pub(crate) fn parse_or_exit<T: clap::Parser>() -> Result<T, ExitCode> {
    T::try_parse().map_err(|e| {
        let code = if e.use_stderr() { 2 } else { 0 };
        let _ = e.print();
        ExitCode::from(code)
    })
}
