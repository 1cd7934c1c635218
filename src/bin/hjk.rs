//! `hjk` (Headjack): build and pick the images coding agents run in.

use std::process::ExitCode;

fn main() -> ExitCode {
    agent_images::cli::hjk::main()
}
