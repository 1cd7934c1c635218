//! `hjk images build | list | resolve` (Headjack): clap definitions and the call into
//! [`crate::hjk`].

use crate::hjk::{images, resolve, ImagesOptions, Session};
use crate::report::ProgressMode;
use camino::Utf8PathBuf;
use clap::{Args, Parser, Subcommand};
use std::process::ExitCode;

#[derive(Parser, Debug)]
#[command(
    name = "hjk",
    version,
    about = "Headjack: build and pick the images coding agents run in"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Top,
}

#[derive(Subcommand, Debug)]
pub enum Top {
    /// The Headjack image hierarchy.
    Images {
        #[command(subcommand)]
        command: ImagesCommand,
    },
}

#[derive(Args, Debug, Clone)]
pub struct EngineArgs {
    /// Engine: docker, podman or container (Apple). Default: runtime.name, then the first on PATH.
    #[arg(long)]
    pub backend: Option<String>,
    /// Directory holding variants.yaml and one directory per variant.
    #[arg(long, env = "HJK_IMAGES_DIR", default_value = "images")]
    pub images_dir: Utf8PathBuf,
    /// Repository for the tags `<registry>:<variant>` (default: images.registry).
    #[arg(long)]
    pub registry: Option<String>,
    /// Comma-separated platforms, e.g. linux/amd64,linux/arm64 (default: this machine's).
    #[arg(long)]
    pub platform: Option<String>,
    /// Also tag `<registry>:<variant>-<version>` and set the VERSION build argument (vX.Y.Z).
    #[arg(long)]
    pub version: Option<String>,
    /// Override the root variant's BASE_IMAGE (a mirror, or a local image in tests).
    #[arg(long)]
    pub base_image: Option<String>,
}

impl EngineArgs {
    fn options(&self, progress: ProgressMode, dry_run: bool) -> ImagesOptions {
        ImagesOptions {
            backend: self.backend.clone(),
            images_dir: self.images_dir.clone(),
            registry: self.registry.clone(),
            platform: self.platform.clone(),
            version: self.version.clone(),
            base_image: self.base_image.clone(),
            progress,
            dry_run,
        }
    }
}

#[derive(Subcommand, Debug)]
pub enum ImagesCommand {
    /// Build a variant and its ancestors, skipping the ones that are current.
    Build {
        /// The variant to build (with its parents).
        #[arg(long, conflicts_with = "all", required_unless_present = "all")]
        variant: Option<String>,
        /// Build every variant.
        #[arg(long)]
        all: bool,
        #[command(flatten)]
        engine: EngineArgs,
        /// Push the tags after every build succeeded.
        #[arg(long)]
        push: bool,
        /// Build every layer again instead of reusing the engine's cache.
        #[arg(long)]
        no_cache: bool,
        /// Print every engine command that would run and run none (read-only queries such as
        /// inspect still run, so the plan is the real one).
        #[arg(long)]
        dry_run: bool,
        /// Keep building the other platforms and variants after a failure.
        #[arg(long)]
        no_fastfail: bool,
        /// Progress output: auto (a bar on a terminal), plain, or json (one event per line).
        #[arg(long, value_enum, default_value = "auto")]
        progress: ProgressMode,
    },
    /// Variants, their parents, local tags, and whether each is built and current.
    List {
        #[command(flatten)]
        engine: EngineArgs,
        /// Print the rows as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Which image an agent session in this project uses: --image, else the project's
    /// devcontainer.json, else default.base_image. With --build, builds it first and prints the
    /// reference to run.
    Resolve {
        /// A Dockerfile/Containerfile path (relative to the project) or an image reference.
        #[arg(long, conflicts_with = "config")]
        image: Option<String>,
        /// The devcontainer.json to use (relative to the project), e.g.
        /// .devcontainer/python/devcontainer.json; needed when several sub-folders have one.
        #[arg(long)]
        config: Option<Utf8PathBuf>,
        /// Project directory (default: the current directory).
        #[arg(long)]
        project: Option<Utf8PathBuf>,
        /// Build the Dockerfile or devcontainer image first (skipped when current), then print
        /// the reference to run; features and dockerComposeFile go to `devcontainer build`.
        #[arg(long)]
        build: bool,
        /// Engine for --build: docker, podman or container (Apple). Default: runtime.name,
        /// then the first on PATH.
        #[arg(long, requires = "build")]
        backend: Option<String>,
        /// Print an object instead of `<kind> <image>` (with --build, it has the `image` to run).
        #[arg(long)]
        json: bool,
    },
}

pub fn main() -> ExitCode {
    super::main(run)
}

pub async fn run(cli: Cli) -> anyhow::Result<u8> {
    let vars = crate::dirs::process_env();
    let Top::Images { command } = cli.command;
    match command {
        ImagesCommand::Build {
            variant,
            all: _,
            engine,
            push,
            no_cache,
            dry_run,
            no_fastfail,
            progress,
        } => {
            let opts = engine.options(progress, dry_run);
            let mut s = Session::open(&opts, &vars, variant.into_iter().collect())?;
            s.spec.push = push;
            s.spec.no_cache = no_cache;
            s.spec.no_fastfail = no_fastfail;
            images::build_command(&s).await
        }
        ImagesCommand::List { engine, json } => {
            let s = Session::open(
                &engine.options(ProgressMode::Plain, false),
                &vars,
                Vec::new(),
            )?;
            images::list_command(&s, json).await
        }
        ImagesCommand::Resolve {
            image,
            config,
            project,
            build,
            backend,
            json,
        } => {
            let project = super::project_dir(project.as_deref())?;
            let req = resolve::Request {
                project: &project,
                image: image.as_deref(),
                config: config.as_deref(),
                vars: &vars,
            };
            resolve::command(&req, backend.as_deref(), build, json).await
        }
    }
}
