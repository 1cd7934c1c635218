//! `ocx`: run the opencode agent in a container built from your own base image.

use std::process::ExitCode;

fn main() -> ExitCode {
    agent_images::cli::ocx::main()
}
