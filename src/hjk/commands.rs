//! One entry point per `hjk images` command, taking what its command line says as plain data:
//! the front end (`cli/hjk.rs`) parses and makes one call here, and everything a test could
//! want to reach (opening the session, reading the auth choice against the config, the remote
//! builder seen in the environment) happens on this side.

use super::boot::{self, BootOptions, Target};
use super::release::gates::GateFlags;
use super::release::{self, MergeSpec, ReleaseSpec};
use super::{auth_settings, images, resolve, ImagesOptions, Session};
use crate::backend::Remote;
use crate::report::ProgressMode;
use anyhow::Result;
use camino::{Utf8Path, Utf8PathBuf};
use std::collections::BTreeMap;

type Vars = BTreeMap<String, String>;

/// `hjk images build`'s own flags.
pub struct BuildFlags {
    pub push: bool,
    pub no_cache: bool,
    pub no_fastfail: bool,
    /// `--cache-repo`.
    pub cache_repo: Option<String>,
}

/// `--cache-repo REPO`, checked.
fn cache_repo(repo: Option<&str>) -> Result<Option<crate::image_ref::ImageRef>> {
    Ok(repo
        .map(|r| {
            crate::image_ref::ImageRef::parse(r)
                .map_err(|e| crate::error::UserError(format!("invalid --cache-repo: {}", e.0)))
        })
        .transpose()?)
}

/// What `release` and `merge` share: the auth choice as given (`--auth`, `--creds-stdin`),
/// the metadata file, the gates and `--force-tags`.
pub struct PublishFlags {
    pub auth: Option<String>,
    pub creds_stdin: bool,
    pub metadata_file: Option<Utf8PathBuf>,
    pub gates: GateFlags,
    pub force_tags: bool,
    /// `--registry-timeout` (or `HJK_REGISTRY_TIMEOUT`), in seconds.
    pub registry_timeout: Option<u64>,
}

impl PublishFlags {
    fn registry_timeout(&self) -> std::time::Duration {
        self.registry_timeout
            .map(std::time::Duration::from_secs)
            .unwrap_or(super::release::registry::DEFAULT_TIMEOUT)
    }
}

/// `hjk images release`'s own flags.
pub struct ReleaseFlags {
    pub push_by_digest: bool,
    /// `--builder`: a remote builder by name.
    pub builder: Option<String>,
    /// `--connection`: a named engine connection.
    pub connection: Option<String>,
    pub no_cache: bool,
    /// `--provenance` (true) or `--no-provenance` (false); neither: where the engine can.
    pub provenance: Option<bool>,
    /// `--source-date-epoch`.
    pub source_date_epoch: Option<u64>,
    /// `--cache-repo`.
    pub cache_repo: Option<String>,
    /// `--keep-stage`.
    pub keep_stage: bool,
}

/// `hjk images merge`'s own arguments.
pub struct MergeArgs {
    pub files: Vec<Utf8PathBuf>,
    pub version: Option<String>,
    pub backend: Option<String>,
    pub images_dir: Utf8PathBuf,
    pub progress: ProgressMode,
}

pub async fn build(
    opts: &ImagesOptions,
    vars: &Vars,
    variants: Vec<String>,
    flags: BuildFlags,
) -> Result<u8> {
    let mut s = Session::open(opts, vars, variants)?;
    s.spec.push = flags.push;
    s.spec.no_cache = flags.no_cache;
    s.spec.no_fastfail = flags.no_fastfail;
    s.spec.cache_repo = cache_repo(flags.cache_repo.as_deref())?;
    images::build_command(&s).await
}

pub async fn release(
    opts: &ImagesOptions,
    vars: &Vars,
    variants: Vec<String>,
    publish: PublishFlags,
    flags: ReleaseFlags,
) -> Result<u8> {
    let mut s = Session::open(opts, vars, variants)?;
    let registry_timeout = publish.registry_timeout();
    let spec = ReleaseSpec {
        variants: s.spec.variants.clone(),
        platforms: s.spec.platforms.clone(),
        registry: s.spec.registry.clone(),
        version: s.spec.version.clone(),
        base_image: s.spec.base_image.clone(),
        push_by_digest: flags.push_by_digest,
        metadata_file: publish.metadata_file,
        gates: publish.gates,
        auth: auth_settings(publish.auth.as_deref(), &s.config, publish.creds_stdin)?,
        remote: Remote {
            builder: flags.builder,
            connection: flags.connection,
            container_host: vars.contains_key("CONTAINER_HOST"),
        },
        no_cache: flags.no_cache,
        force_tags: publish.force_tags,
        registry_timeout,
        keep_stage: flags.keep_stage,
        extras: release::Extras {
            provenance: flags.provenance,
            epoch: epoch(&s.engine, flags.source_date_epoch, vars, &opts.images_dir).await?,
            cache_repo: cache_repo(flags.cache_repo.as_deref())?,
        },
    };
    release::release_command(&mut s.engine, &s.graph, &spec, vars).await
}

/// The time a release writes into its images: `--source-date-epoch`, else `SOURCE_DATE_EPOCH`
/// (the reproducible-builds convention), else the commit time of the last commit that touched
/// the images directory, so the same commit gives the same digests on every machine. `None`
/// outside a git checkout.
async fn epoch(
    engine: &crate::engine::Engine,
    flag: Option<u64>,
    vars: &Vars,
    images_dir: &Utf8Path,
) -> Result<Option<release::Epoch>> {
    if let Some(seconds) = flag {
        return Ok(Some(release::Epoch {
            seconds,
            from: "--source-date-epoch".into(),
            explicit: true,
        }));
    }
    if let Some(v) = vars.get("SOURCE_DATE_EPOCH") {
        let seconds = v.trim().parse().map_err(|_| {
            crate::error::UserError(format!(
                "SOURCE_DATE_EPOCH={v:?} is not a number of seconds since 1970"
            ))
        })?;
        return Ok(Some(release::Epoch {
            seconds,
            from: "SOURCE_DATE_EPOCH".into(),
            explicit: true,
        }));
    }
    let git = crate::invocation::Invocation::new("git")
        .args([
            "-C",
            images_dir.as_str(),
            "log",
            "-1",
            "--format=%ct,%h",
            "--",
            ".",
        ])
        .read_only();
    let out = match engine.tool(&git).await {
        Ok(out) => out,
        Err(e) if crate::error::interruption(&e).is_some() => return Err(e),
        Err(_) => return Ok(None),
    };
    let text = out.stdout.trim().to_string();
    let Some((seconds, commit)) = text.split_once(',') else {
        return Ok(None);
    };
    Ok(seconds.parse().ok().map(|seconds| release::Epoch {
        seconds,
        from: format!("the time of commit {commit}, the last to change {images_dir}"),
        explicit: false,
    }))
}

pub async fn merge(vars: &Vars, args: MergeArgs, publish: PublishFlags) -> Result<u8> {
    let version = args
        .version
        .as_deref()
        .map(images::parse_version)
        .transpose()?;
    let (mut engine, cfg) = super::open_merge_engine(args.backend.as_deref(), vars, args.progress)?;
    let registry_timeout = publish.registry_timeout();
    let spec = MergeSpec {
        files: args.files,
        images_dir: args.images_dir,
        version,
        metadata_file: publish.metadata_file,
        gates: publish.gates,
        auth: auth_settings(publish.auth.as_deref(), &cfg, publish.creds_stdin)?,
        force_tags: publish.force_tags,
        registry_timeout,
    };
    release::merge_command(&mut engine, &spec, vars).await
}

pub async fn digest(
    opts: &ImagesOptions,
    vars: &Vars,
    variant: String,
    metadata_file: Option<&Utf8Path>,
) -> Result<u8> {
    let s = Session::open(opts, vars, vec![variant.clone()])?;
    release::digest_command(&s, &variant, metadata_file).await
}

pub async fn list(opts: &ImagesOptions, vars: &Vars, json: bool) -> Result<u8> {
    let s = Session::open(opts, vars, Vec::new())?;
    images::list_command(&s, json).await
}

/// `hjk images resolve`'s arguments.
pub struct ResolveArgs<'a> {
    /// `--project`, else the current directory.
    pub project: Option<&'a Utf8Path>,
    pub image: Option<&'a str>,
    pub config: Option<&'a Utf8Path>,
    pub backend: Option<&'a str>,
    pub build: bool,
    pub json: bool,
}

pub async fn resolve(vars: &Vars, args: ResolveArgs<'_>) -> Result<u8> {
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
pub struct BootArgs {
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
            Err(e) => Err(crate::error::UserError(format!(
                "{:?} is neither a variant in {} nor an image reference: {}",
                args.target, args.images_dir, e.0
            ))
            .into()),
        },
    }
}

pub async fn boot(vars: &Vars, args: BootArgs) -> Result<u8> {
    let cfg = super::config::load(vars)?;
    let platform = match &args.platform {
        Some(p) => {
            let mut list = crate::platform::Platform::parse_list(p)?;
            if list.len() != 1 {
                return Err(crate::error::UserError(format!(
                    "--platform {p}: boot one platform at a time, e.g. linux/arm64"
                ))
                .into());
            }
            list.pop()
        }
        None => None,
    };
    let registry = match &args.registry {
        Some(r) => super::config::parse_registry(r)?,
        None => cfg.registry.clone(),
    };
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
    let engine = super::open_engine(args.backend.as_deref(), &cfg, vars, reporter, false)?;
    let (image, labels) = boot::local_image(&engine, &target, &registry).await?;
    let booted = boot::boot(&engine, &image, &labels, &opts).await?;
    engine.reporter().result(
        format!("{}\n", booted.line()),
        serde_json::to_value(&booted)?,
    );
    Ok(crate::error::EXIT_OK)
}

/// `hjk images verify`'s arguments.
pub struct VerifyArgs {
    pub targets: Vec<String>,
    /// `--all`: every variant of this images directory.
    pub all: Option<Utf8PathBuf>,
    /// `--version`: variants under `<variant>-<version>`.
    pub version: Option<String>,
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

pub async fn verify(vars: &Vars, args: VerifyArgs) -> Result<u8> {
    use super::release::gates::tools::Trust;
    let (engine, cfg) =
        super::open_merge_engine(args.backend.as_deref(), vars, ProgressMode::Plain)?;
    let registry = match &args.registry {
        Some(r) => super::config::parse_registry(r)?,
        None => cfg.registry.clone(),
    };
    let trust = match (args.key, args.identity_regexp, args.oidc_issuer) {
        (Some(k), None, None) => Trust::Key(k),
        (None, Some(identity_regexp), Some(oidc_issuer)) => Trust::Keyless {
            identity_regexp,
            oidc_issuer,
        },
        _ => {
            return Err(crate::error::UserError(
                "say what the signatures must verify with: --key PATH (a cosign public key), or --certificate-identity-regexp and --certificate-oidc-issuer (keyless)".into(),
            )
            .into())
        }
    };
    let version = args
        .version
        .as_deref()
        .map(images::parse_version)
        .transpose()?;
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
        auth: auth_settings(args.auth.as_deref(), &cfg, args.creds_stdin)?,
        json: args.json,
        registry_timeout: args
            .registry_timeout
            .map(std::time::Duration::from_secs)
            .unwrap_or(super::release::registry::DEFAULT_TIMEOUT),
    };
    super::verify::verify_command(&engine, &spec, vars).await
}
