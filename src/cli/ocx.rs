//! `ocx build | opencode | exec | config show`

use super::{finish, parse_or_exit, runtime};
use crate::ocx::config::{ConfigEnv, Flags};
use crate::ocx::{self, BuildOptions, Context};
use crate::progress::ProgressMode;
use anyhow::anyhow;
use camino::Utf8PathBuf;
use clap::{Args, Parser, Subcommand};
use std::process::ExitCode;

#[derive(Parser, Debug)]
#[command(
    name = "ocx",
    version,
    about = "Run the opencode agent in a container built from your own base image"
)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Args, Debug, Default)]
pub struct Global {
    /// Engine: docker, podman or container (Apple). Default: OCX_BACKEND, config, then PATH.
    #[arg(long, global = true)]
    pub backend: Option<String>,
    /// Progress output: auto (a bar on a terminal), plain, or json (one event per line).
    #[arg(long, global = true, value_enum, default_value = "auto")]
    pub progress: ProgressMode,
    /// Print every engine command that would run, shell-quoted, and run none.
    #[arg(long, global = true)]
    pub dry_run: bool,
    /// Project directory (default: the current directory).
    #[arg(long, global = true)]
    pub project: Option<Utf8PathBuf>,
    /// Base image to build FROM (overrides custom_base_image).
    #[arg(long, global = true)]
    pub custom_base_image: Option<String>,
    /// Dockerfile for the base image (overrides custom_base_dockerfile).
    #[arg(long, global = true)]
    pub custom_base_dockerfile: Option<String>,
    /// opencode version: latest or X.Y.Z.
    #[arg(long, global = true)]
    pub opencode_version: Option<String>,
    /// Where opencode comes from: github, npm, file:<path> or a URL template.
    #[arg(long, global = true)]
    pub opencode_source: Option<String>,
    /// Comma-separated platforms, e.g. linux/amd64,linux/arm64.
    #[arg(long, global = true, alias = "platform")]
    pub platforms: Option<String>,
    #[arg(long, global = true)]
    pub username: Option<String>,
    #[arg(long, global = true)]
    pub uid: Option<String>,
    #[arg(long, global = true)]
    pub gid: Option<String>,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Build ocx-<base>:<version> unless it is up to date.
    Build {
        /// Rebuild even if the image is up to date.
        #[arg(long)]
        force: bool,
        /// Rebuild the base image from custom_base_dockerfile even if it exists.
        #[arg(long)]
        rebuild_base: bool,
    },
    /// Make sure the image is current, then run opencode in it on this project.
    Opencode {
        /// Arguments for opencode.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Like `opencode`, but run any command in the container.
    Exec {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, required = true)]
        command: Vec<String>,
    },
    /// Configuration.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
}

#[derive(Subcommand, Debug)]
pub enum ConfigCommand {
    /// Print the effective config and where each value came from.
    Show,
}

impl Global {
    fn flags(&self) -> Flags {
        let mut f = Flags::default();
        f.set("backend", self.backend.clone(), "--backend");
        f.set(
            "custom_base_image",
            self.custom_base_image.clone(),
            "--custom-base-image",
        );
        f.set(
            "custom_base_dockerfile",
            self.custom_base_dockerfile.clone(),
            "--custom-base-dockerfile",
        );
        f.set(
            "opencode_version",
            self.opencode_version.clone(),
            "--opencode-version",
        );
        f.set(
            "opencode_source",
            self.opencode_source.clone(),
            "--opencode-source",
        );
        f.set("platforms", self.platforms.clone(), "--platforms");
        f.set("username", self.username.clone(), "--username");
        f.set("uid", self.uid.clone(), "--uid");
        f.set("gid", self.gid.clone(), "--gid");
        f
    }

    fn context(&self) -> anyhow::Result<Context> {
        let project = match &self.project {
            Some(p) => p.clone(),
            None => Utf8PathBuf::from_path_buf(std::env::current_dir()?)
                .map_err(|p| anyhow!("non-UTF-8 project path {}", p.display()))?,
        };
        let project = project
            .canonicalize_utf8()
            .map_err(|e| crate::error::UserError(format!("project directory {project}: {e}")))?;
        Ok(Context {
            project,
            env: ConfigEnv::from_process(),
            flags: self.flags(),
            progress: self.progress,
            dry_run: self.dry_run,
        })
    }
}

pub fn main() -> ExitCode {
    let cli = match parse_or_exit::<Cli>() {
        Ok(c) => c,
        Err(code) => return code,
    };
    finish(runtime().block_on(run(cli)))
}

pub async fn run(cli: Cli) -> anyhow::Result<u8> {
    let ctx = cli.global.context()?;
    match cli.command {
        Command::Build {
            force,
            rebuild_base,
        } => {
            ocx::build(
                &ctx,
                BuildOptions {
                    force,
                    rebuild_base,
                },
            )
            .await?;
            Ok(0)
        }
        Command::Opencode { args } => {
            let mut cmd = vec!["opencode".to_string()];
            cmd.extend(args);
            Ok(exit_byte(ocx::run(&ctx, cmd).await?))
        }
        Command::Exec { command } => Ok(exit_byte(ocx::run(&ctx, command).await?)),
        Command::Config {
            command: ConfigCommand::Show,
        } => {
            print!("{}", ocx::show_config(&ctx)?);
            Ok(0)
        }
    }
}

/// A child's exit status as ours; statuses beyond 255 wrap the way a shell shows them.
fn exit_byte(code: i32) -> u8 {
    (code & 0xff) as u8
}
