//! `hjk images build | list | resolve` (Headjack).

use std::process::ExitCode;

pub fn main() -> ExitCode {
    eprintln!("error: hjk images is not implemented yet");
    ExitCode::from(1)
}
