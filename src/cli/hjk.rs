//! `hjk images build | list | resolve` (Headjack).

use super::{finish, parse_or_exit, runtime};
use crate::backend::detect;
use crate::engine::Engine;
use crate::error::UserError;
use crate::exec::Runner;
use crate::hjk::images::{self, BuildSpec, Outcome};
use crate::hjk::{config, resolve, variants::Graph};
use crate::image_ref::ImageRef;
use crate::platform::Platform;
use crate::progress::{self, ProgressMode};
use anyhow::anyhow;
use camino::Utf8PathBuf;
use clap::{Args, Parser, Subcommand};
use std::collections::BTreeMap;
use std::ffi::OsString;
use std::process::ExitCode;
use std::sync::Arc;

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
    /// Engine: docker, podman or container (Apple). Default: runtime.name, then PATH.
    #[arg(long)]
    pub backend: Option<String>,
    /// Directory holding variants.yaml and one directory per variant.
    #[arg(long, env = "HJK_IMAGES_DIR", default_value = "images")]
    pub images_dir: Utf8PathBuf,
    /// Repository for the tags `<registry>:<variant>` (default: images.registry).
    #[arg(long)]
    pub registry: Option<String>,
    /// Comma-separated platforms (default: this machine's).
    #[arg(long)]
    pub platform: Option<String>,
    /// Also tag `<registry>:<variant>-<version>`.
    #[arg(long)]
    pub version: Option<String>,
    /// Override the root variant's BASE_IMAGE (a mirror, or a local image in tests).
    #[arg(long)]
    pub base_image: Option<String>,
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
        /// Push the tags after building.
        #[arg(long)]
        push: bool,
        #[arg(long)]
        no_cache: bool,
        /// Print every engine command that would run and run none.
        #[arg(long)]
        dry_run: bool,
        /// Keep building the other platforms and variants after a failure.
        #[arg(long)]
        no_fastfail: bool,
        #[arg(long, value_enum, default_value = "auto")]
        progress: ProgressMode,
    },
    /// Variants, their parents, local tags, and whether each is built and current.
    List {
        #[command(flatten)]
        engine: EngineArgs,
        #[arg(long)]
        json: bool,
    },
    /// Which image `hjk run` would use here.
    Resolve {
        /// A Dockerfile/Containerfile path or an image reference.
        #[arg(long)]
        image: Option<String>,
        /// Project directory (default: the current directory).
        #[arg(long)]
        project: Option<Utf8PathBuf>,
        #[arg(long)]
        json: bool,
    },
}

pub fn main() -> ExitCode {
    let cli = match parse_or_exit::<Cli>() {
        Ok(c) => c,
        Err(code) => return code,
    };
    finish(runtime().block_on(run(cli)))
}

struct Setup {
    engine: Engine,
    graph: Graph,
    spec: BuildSpec,
}

fn setup(
    args: &EngineArgs,
    vars: &BTreeMap<String, String>,
    variants: Vec<String>,
    progress: ProgressMode,
    dry_run: bool,
) -> anyhow::Result<Setup> {
    let cfg = config::load(vars)?;
    let graph = Graph::load(&args.images_dir)?;
    for v in &variants {
        graph.get(v)?;
    }
    let platforms = match &args.platform {
        Some(p) => Platform::parse_list(p)?,
        None => vec![Platform::host()],
    };
    let registry = match &args.registry {
        Some(r) => config::parse_registry(r)?,
        None => cfg.registry.clone(),
    };
    let version = args
        .version
        .as_deref()
        .map(images::parse_version)
        .transpose()?;
    let base_image = args
        .base_image
        .as_deref()
        .map(ImageRef::parse)
        .transpose()?;
    let explicit = match (&args.backend, &cfg.runtime) {
        (Some(b), _) => Some((b.clone(), "--backend".to_string())),
        (None, Some((k, src))) => Some((k.name().to_string(), src.clone())),
        _ => None,
    };
    let path = vars.get("PATH").map(OsString::from);
    let backend = detect::detect(
        explicit.as_ref().map(|(b, f)| (b.as_str(), f.as_str())),
        path.as_ref(),
    )?;
    let reporter: Arc<dyn progress::Reporter> = Arc::from(progress::reporter(progress));
    let engine = Engine::new(backend, Runner::new(reporter, dry_run));
    let spec = BuildSpec {
        variants,
        platforms,
        registry,
        version,
        push: false,
        no_cache: false,
        no_fastfail: false,
        base_image,
    };
    Ok(Setup {
        engine,
        graph,
        spec,
    })
}

pub async fn run(cli: Cli) -> anyhow::Result<u8> {
    let vars: BTreeMap<String, String> = std::env::vars().collect();
    let Top::Images { command } = cli.command;
    match command {
        ImagesCommand::Build {
            variant,
            all,
            engine,
            push,
            no_cache,
            dry_run,
            no_fastfail,
            progress,
        } => {
            let graph_names =
                |g: &Graph| g.names().into_iter().map(String::from).collect::<Vec<_>>();
            let mut s = setup(
                &engine,
                &vars,
                variant.clone().into_iter().collect(),
                progress,
                dry_run,
            )?;
            if all {
                s.spec.variants = graph_names(&s.graph);
            }
            s.spec.push = push;
            s.spec.no_cache = no_cache;
            s.spec.no_fastfail = no_fastfail;
            let results = images::build(&s.engine, &s.graph, &s.spec).await?;
            if !dry_run {
                if progress == ProgressMode::Json {
                    for r in &results {
                        println!("{}", serde_json::json!({"event": "result", "result": r}));
                    }
                } else {
                    print!("{}", images::summary(&results));
                }
            }
            let failed: Vec<&str> = results
                .iter()
                .filter(|r| r.outcome == Outcome::Failed)
                .map(|r| r.tag.as_str())
                .collect();
            if !failed.is_empty() {
                let first = results
                    .iter()
                    .find(|r| r.outcome == Outcome::Failed)
                    .and_then(|r| r.error.clone())
                    .unwrap_or_default();
                return Err(anyhow!(
                    "{} build(s) failed: {}\n{first}",
                    failed.len(),
                    failed.join(", ")
                ));
            }
            Ok(0)
        }
        ImagesCommand::List { engine, json } => {
            let mut s = setup(&engine, &vars, Vec::new(), ProgressMode::Plain, false)?;
            s.spec.variants = s.graph.names().into_iter().map(String::from).collect();
            let rows = images::list(&s.engine, &s.graph, &s.spec).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&rows)?);
            } else {
                print!("{}", images::list_table(&rows));
            }
            Ok(0)
        }
        ImagesCommand::Resolve {
            image,
            project,
            json,
        } => {
            let cfg = config::load(&vars)?;
            let project = match project {
                Some(p) => p,
                None => Utf8PathBuf::from_path_buf(std::env::current_dir()?)
                    .map_err(|p| anyhow!("non-UTF-8 directory {}", p.display()))?,
            };
            let project = project
                .canonicalize_utf8()
                .map_err(|e| UserError(format!("project directory {project}: {e}")))?;
            let r = resolve::resolve(&project, image.as_deref(), &cfg.base_image)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&r)?);
            } else {
                println!("{}", r.line());
            }
            Ok(0)
        }
    }
}
