//! `ocx build | opencode | exec | config show`: clap definitions and the call into
//! [`crate::ocx`]. Every config key's flag is generated from [`crate::ocx::config::KEYS`].

// The doc comments of the clap definitions are the --help text, where `<version>` and a URL
// are meant as written, not as HTML or a link.
#![allow(rustdoc::invalid_html_tags, rustdoc::bare_urls)]

use crate::ocx::config::{ConfigEnv, Flags, KEYS};
use crate::ocx::{self, BuildOptions, Context};
use crate::report::ProgressMode;
use camino::Utf8PathBuf;
use clap::{Arg, ArgMatches, Args, FromArgMatches, Parser, Subcommand};
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
    #[command(flatten)]
    pub config: ConfigFlags,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Args, Debug, Default)]
pub struct Global {
    /// Progress output: auto (a bar on a terminal), plain, or json (one event per line).
    #[arg(long, global = true, value_enum, default_value = "auto")]
    pub progress: ProgressMode,
    /// Print every engine command that would run, shell-quoted, and run none (read-only
    /// queries such as inspect still run, so the plan is the real one).
    #[arg(long, global = true)]
    pub dry_run: bool,
    /// Project directory (default: the current directory).
    #[arg(long, global = true)]
    pub project: Option<Utf8PathBuf>,
}

/// One `--<key>` flag per config key, global to every subcommand.
#[derive(Debug, Default, Clone)]
pub struct ConfigFlags(pub Flags);

impl FromArgMatches for ConfigFlags {
    fn from_arg_matches(m: &ArgMatches) -> Result<Self, clap::Error> {
        let mut flags = Flags::default();
        for k in KEYS {
            flags.set(k.name, m.get_one::<String>(k.name).cloned());
        }
        Ok(ConfigFlags(flags))
    }

    fn update_from_arg_matches(&mut self, m: &ArgMatches) -> Result<(), clap::Error> {
        *self = Self::from_arg_matches(m)?;
        Ok(())
    }
}

impl Args for ConfigFlags {
    fn augment_args(cmd: clap::Command) -> clap::Command {
        KEYS.iter().fold(cmd, |cmd, k| {
            // clap wants 'static names; these are built once per process
            let long: &'static str = Box::leak(k.flag()[2..].to_string().into_boxed_str());
            let mut arg = Arg::new(k.name)
                .long(long)
                .value_name(k.value_name)
                .help(k.help)
                .global(true);
            if let Some(a) = k.alias {
                arg = arg.alias(a);
            }
            cmd.arg(arg)
        })
    }

    fn augment_args_for_update(cmd: clap::Command) -> clap::Command {
        Self::augment_args(cmd)
    }
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Build ocx-<base>:<version>-<user> unless it is up to date, and tag it ocx-<base>:<version>.
    Build {
        /// Rebuild even if the image is up to date.
        #[arg(long)]
        force: bool,
        /// Rebuild the base image from custom_base_dockerfile even if it is current.
        #[arg(long)]
        rebuild_base: bool,
    },
    /// Make sure the image is current, then run opencode in it on this project. Put `--`
    /// before opencode's own flags: `ocx opencode -- --help` shows opencode's help.
    Opencode {
        /// Arguments for opencode.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Like `opencode`, but run any command in the container: `ocx exec -- CMD ARGS...`.
    Exec {
        /// The command and its arguments.
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

pub fn main() -> ExitCode {
    super::main(run)
}

pub(crate) async fn run(cli: Cli) -> anyhow::Result<u8> {
    let ctx = Context {
        project: crate::dirs::project_dir(cli.global.project.as_deref())?,
        env: ConfigEnv::from_process(),
        flags: cli.config.0,
        progress: cli.global.progress,
        dry_run: cli.global.dry_run,
    };
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
            .await
        }
        Command::Opencode { args } => ocx::opencode(&ctx, args).await,
        Command::Exec { command } => ocx::run(&ctx, command).await,
        Command::Config {
            command: ConfigCommand::Show,
        } => ocx::show_config(&ctx),
    }
}
