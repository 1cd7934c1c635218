//! One entry point per `hjk images` command: the front end (`cli/hjk.rs`) parses and makes one
//! call here; each resolves its command's settings once ([`super::settings`]: flags, env and
//! config), opens the session and hands the settings whole to the workflow.

use super::boot::{self, BootOptions, Target};
use super::release;
use super::settings::{
    auth_setting, registry_setting, registry_timeout, BuildSettings, ImagesSettings, MergeSettings,
    ReleaseSettings,
};
use super::{images, resolve, Session};
use crate::cli::hjk::{BuildCommand, EngineArgs, MergeCommand, ReleaseCommand};
use crate::report::ProgressMode;
use anyhow::Result;
use camino::{Utf8Path, Utf8PathBuf};
use std::collections::BTreeMap;

type Vars = BTreeMap<String, String>;

pub(crate) async fn build(vars: &Vars, cmd: BuildCommand) -> Result<u8> {
    let (cfg, graph) = Session::load(vars, &cmd.engine.images_dir)?;
    let settings = BuildSettings::resolve(cmd, &cfg, &graph)?;
    let s = Session::open(vars, &settings.images.engine, cfg, graph)?;
    images::build_command(&s, &settings).await
}

pub(crate) async fn release(vars: &Vars, cmd: ReleaseCommand) -> Result<u8> {
    let (cfg, graph) = Session::load(vars, &cmd.engine.images_dir)?;
    let mut settings = ReleaseSettings::resolve(cmd, vars, &cfg, &graph)?;
    let mut s = Session::open(vars, &settings.images.engine, cfg, graph)?;
    if settings.extras.epoch.is_none() {
        settings.extras.epoch =
            release::commit_epoch(&s.engine, &settings.images.images_dir).await?;
    }
    release::release_command(&mut s.engine, &s.graph, &settings, vars).await
}

pub(crate) async fn merge(vars: &Vars, cmd: MergeCommand) -> Result<u8> {
    let cfg = super::config::load(vars)?;
    let settings = MergeSettings::resolve(cmd, vars, &cfg)?;
    let mut engine = super::open_merge_engine(&settings.engine, &cfg, vars)?;
    release::merge_command(&mut engine, &settings, vars).await
}

pub(crate) async fn digest(
    vars: &Vars,
    args: &EngineArgs,
    variant: String,
    metadata_file: Option<&Utf8Path>,
) -> Result<u8> {
    let (cfg, graph) = Session::load(vars, &args.images_dir)?;
    let settings = ImagesSettings::of(
        args,
        vec![variant.clone()],
        &cfg,
        &graph,
        ProgressMode::Plain,
    )?;
    let s = Session::open(vars, &settings.engine, cfg, graph)?;
    release::digest_command(&s, &settings, &variant, metadata_file).await
}

pub(crate) async fn list(vars: &Vars, args: &EngineArgs, json: bool) -> Result<u8> {
    let (cfg, graph) = Session::load(vars, &args.images_dir)?;
    let settings = ImagesSettings::of(args, Vec::new(), &cfg, &graph, ProgressMode::Plain)?;
    let s = Session::open(vars, &settings.engine, cfg, graph)?;
    images::list_command(&s, &BuildSettings::listing(settings), json).await
}

/// `hjk images resolve`'s arguments.
pub(crate) struct ResolveArgs<'a> {
    /// `--project`, else the current directory.
    pub project: Option<&'a Utf8Path>,
    pub image: Option<&'a str>,
    pub config: Option<&'a Utf8Path>,
    pub backend: Option<&'a str>,
    pub build: bool,
    pub json: bool,
}

pub(crate) async fn resolve(vars: &Vars, args: ResolveArgs<'_>) -> Result<u8> {
    let project = crate::dirs::project_dir(args.project)?;
    let req = resolve::Request {
        project: &project,
        image: args.image,
        config: args.config,
        vars,
    };
    resolve::command(&req, args.backend, args.build, args.json).await
}

/// `hjk images boot`'s arguments.
pub(crate) struct BootArgs {
    /// A variant of `images_dir`, or an image reference.
    pub target: String,
    pub backend: Option<String>,
    pub images_dir: Utf8PathBuf,
    pub registry: Option<String>,
    pub platform: Option<String>,
    pub timeout_seconds: Option<u64>,
    pub allow_failed: Vec<String>,
    pub json: bool,
}

/// A variant when the images directory declares one of that name, else a reference.
fn boot_target(args: &BootArgs) -> Result<Target> {
    match super::variants::Graph::load(&args.images_dir) {
        Ok(g) if g.get(&args.target).is_ok() => Ok(Target::Variant(args.target.clone())),
        _ => match crate::image_ref::ImageRef::parse(&args.target) {
            Ok(i) => Ok(Target::Image(i)),
            Err(e) => Err(e
                .reword(|m| {
                    format!(
                        "{:?} is neither a variant in {} nor an image reference: {m}",
                        args.target, args.images_dir
                    )
                })
                .into()),
        },
    }
}

pub(crate) async fn boot(vars: &Vars, args: BootArgs) -> Result<u8> {
    let cfg = super::config::load(vars)?;
    let platform = match &args.platform {
        Some(p) => {
            let mut list = crate::platform::Platform::parse_list(p)?;
            if list.len() != 1 {
                return Err(crate::error::UserError::setting(format!(
                    "--platform {p}: boot one platform at a time, e.g. linux/arm64"
                ))
                .into());
            }
            list.pop()
        }
        None => None,
    };
    let registry = registry_setting(args.registry.as_deref(), &cfg)?;
    let target = boot_target(&args)?;
    let opts = BootOptions {
        timeout: args
            .timeout_seconds
            .map(std::time::Duration::from_secs)
            .unwrap_or(boot::DEFAULT_TIMEOUT),
        allow_failed: args.allow_failed.clone(),
        platform,
    };
    let reporter: std::sync::Arc<dyn crate::report::Reporter> = match args.json {
        true => std::sync::Arc::new(crate::report::DataReporter),
        false => std::sync::Arc::new(crate::report::PlainReporter),
    };
    let choice = super::settings::EngineSettings::resolve(
        args.backend.clone(),
        &cfg,
        ProgressMode::Plain,
        false,
    );
    let engine = super::open_engine(choice.backend.as_ref(), &cfg, vars, reporter, false)?;
    let (image, labels) = boot::local_image(&engine, &target, &registry).await?;
    let booted = boot::boot(&engine, &image, &labels, &opts).await?;
    engine.reporter().result(
        format!("{}\n", booted.line()),
        serde_json::to_value(&booted)?,
    );
    Ok(crate::error::EXIT_OK)
}

/// `hjk images verify`'s arguments.
pub(crate) struct VerifyArgs {
    pub targets: Vec<String>,
    /// `--all`: every variant of this images directory.
    pub all: Option<Utf8PathBuf>,
    /// `--version`: variants under `<variant>-<version>`.
    pub version: Option<crate::version::Version>,
    pub registry: Option<String>,
    pub backend: Option<String>,
    pub auth: Option<String>,
    pub creds_stdin: bool,
    /// `--key PATH`, else the keyless identity (`--certificate-identity-regexp`,
    /// `--certificate-oidc-issuer`).
    pub key: Option<Utf8PathBuf>,
    pub identity_regexp: Option<String>,
    pub oidc_issuer: Option<String>,
    pub ignore_tlog: bool,
    pub json: bool,
    pub registry_timeout: Option<u64>,
}

pub(crate) async fn verify(vars: &Vars, args: VerifyArgs) -> Result<u8> {
    use super::release::gates::tools::Trust;
    let cfg = super::config::load(vars)?;
    let choice = super::settings::EngineSettings::resolve(
        args.backend.clone(),
        &cfg,
        ProgressMode::Plain,
        false,
    );
    let engine = super::open_merge_engine(&choice, &cfg, vars)?;
    let registry = registry_setting(args.registry.as_deref(), &cfg)?;
    let trust = match (args.key, args.identity_regexp, args.oidc_issuer) {
        (Some(k), None, None) => Trust::Key(k),
        (None, Some(identity_regexp), Some(oidc_issuer)) => Trust::Keyless {
            identity_regexp,
            oidc_issuer,
        },
        _ => {
            return Err(crate::error::UserError::setting(
                "say what the signatures must verify with: --key PATH (a cosign public key), or --certificate-identity-regexp and --certificate-oidc-issuer (keyless)",
            )
            .into())
        }
    };
    let version = args.version;
    let mut targets = args.targets;
    if let Some(dir) = &args.all {
        let graph = super::variants::Graph::load(dir)?;
        targets = graph.names().into_iter().map(String::from).collect();
    }
    let spec = super::verify::VerifySpec {
        targets,
        version,
        registry,
        trust,
        ignore_tlog: args.ignore_tlog,
        auth: auth_setting(args.auth.as_deref(), &cfg, args.creds_stdin)?,
        json: args.json,
        registry_timeout: registry_timeout(args.registry_timeout),
    };
    super::verify::verify_command(&engine, &spec, vars).await
}
