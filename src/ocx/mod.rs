//! The ocx workflows: `ocx build`, `ocx opencode`, `ocx exec` and `ocx config show`.
//!
//! [`Project::ensure`] is the whole build, as named steps: `resolve_version`, `inspect_state`
//! (the one engine call a no-op costs: base and final image, while the base's inputs are hashed
//! alongside; the final image's labels say which opencode binaries it holds), then, when
//! something must be built, `inspect_binaries`, `check_all` (every build the engine would
//! refuse, before any download or build), `fetch_binaries`, `build_base`, `base_facts` (one
//! probe container per base image ID, cached), `build_binaries`, then `build_final` unless the
//! fingerprint says the image is current.

pub(crate) mod base;
pub mod config;
pub(crate) mod dockerfile;
pub(crate) mod opencode;
pub(crate) mod paths;
pub(crate) mod probe;
pub(crate) mod user;

use crate::backend::Capability;
use crate::build::{BuildRequest, ImageInfo, Mount, Output, RunAs, RunSpec};
use crate::build_inputs;
use crate::engine::{Choice, Engine, Ran};
use crate::error::{user_error, ErrorKind, UserError};
use crate::exec::{Attach, CommandFailed};
use crate::fingerprint::{self, Fingerprint};
use crate::image_ref::ImageRef;
use crate::platform::Platform;
use crate::report::{self, ProgressMode, Reporter};
use crate::version::Version;
use anyhow::{Context as _, Result};
use base::{missing_base, resolve_base, Base};
use camino::Utf8PathBuf;
use config::{Config, ConfigEnv, Flags, Source, KEYS};
use opencode::{Binary, Fetcher, OpencodeVariant};
use paths::Trust;
use probe::BaseFacts;
use std::collections::BTreeMap;
use std::ffi::OsString;
use std::io::IsTerminal;
use std::sync::Arc;
use user::UserPlan;

/// Provider credentials passed into the container by name (`--env NAME`), so their values
/// never appear in argv, logs or `--dry-run` output.
pub(crate) const PASSTHROUGH_ENV: &[&str] = &[
    "ANTHROPIC_API_KEY",
    "OPENAI_API_KEY",
    "OPENAI_BASE_URL",
    "GEMINI_API_KEY",
    "GOOGLE_API_KEY",
    "GOOGLE_GENERATIVE_AI_API_KEY",
    "GOOGLE_CLOUD_PROJECT",
    "OPENROUTER_API_KEY",
    "GROQ_API_KEY",
    "MISTRAL_API_KEY",
    "DEEPSEEK_API_KEY",
    "XAI_API_KEY",
    "TOGETHER_API_KEY",
    "FIREWORKS_API_KEY",
    "CEREBRAS_API_KEY",
    "AZURE_OPENAI_API_KEY",
    "AZURE_OPENAI_ENDPOINT",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_REGION",
    "AWS_PROFILE",
    "GITHUB_TOKEN",
    "OPENCODE_CONFIG",
    "TERM",
    "COLORTERM",
];

/// Keep the generated build contexts under this directory instead of temp dirs removed after
/// the build: each run writes into a fresh `<n>/` subdirectory, `<n>/final/` for the image and
/// `<n>/opencode-<variant>-<arch>/` for a binary image. For debugging, and for
/// `scripts/bench.sh` to build the same context raw.
pub(crate) const ENV_KEEP_CONTEXT: &str = "OCX_KEEP_CONTEXT";

/// The repository of the per-version opencode binary images.
pub(crate) const BINARY_REPO: &str = "ocx-opencode";

/// Everything a workflow run depends on from outside, so tests can build it explicitly.
pub(crate) struct Context {
    pub project: Utf8PathBuf,
    pub env: ConfigEnv,
    pub flags: Flags,
    pub progress: ProgressMode,
    pub dry_run: bool,
}

impl Context {
    fn path_var(&self) -> Option<OsString> {
        self.env.vars.get("PATH").map(OsString::from)
    }
}

#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct BuildOptions {
    pub force: bool,
    pub rebuild_base: bool,
}

/// A project ocx works on: its config, its engine and where its base comes from.
pub(crate) struct Project {
    pub config: Config,
    engine: Engine,
    base: Base,
    dir: Utf8PathBuf,
    vars: BTreeMap<String, String>,
    /// `~/.cache/ocx`: `opencode/` binaries, `bases/` probe answers.
    cache_root: Utf8PathBuf,
    trust: Trust,
    keep_context: Option<Utf8PathBuf>,
    /// This run's fresh subdirectory of `keep_context`, made when the first context is written.
    keep_run: std::sync::Mutex<Option<Utf8PathBuf>>,
    /// The download client, built by the first download (a no-op builds none).
    http: crate::http::LazyClient,
}

/// The image `ensure` made current, and what running it needs.
#[derive(Debug, Clone)]
pub(crate) struct Image {
    pub reference: ImageRef,
    /// The opencode version in the image (`1.18.18`: see [`config::OpencodeVersion`]).
    /// The container user's home.
    pub home: Utf8PathBuf,
    /// Who the container runs as (see [`UserPlan::run_as`]).
    pub user: RunAs,
}

/// One opencode binary image: for a variant and a platform.
#[derive(Debug, Clone)]
struct BinaryImage {
    variant: OpencodeVariant,
    platform: Platform,
    reference: ImageRef,
}

/// What the engine has now: the one inspect a no-op build costs.
struct State {
    base: ImageInfo,
    image: ImageInfo,
    /// Per binary image, in the order of `Project::binary_images`: asked only when something
    /// must be built (a no-op reads the binaries from the final image's label).
    binaries: Vec<ImageInfo>,
    /// The hash of the base's inputs (a base built from a Dockerfile only).
    base_inputs: Option<String>,
}

/// Everything the final image is made of, decided: what a no-op compares and a build renders.
struct Design {
    plan: UserPlan,
    variant: OpencodeVariant,
    /// The probe found no C library on the base (see [`BaseFacts::no_libc`]).
    no_libc: bool,
    /// `ocx-opencode:<version>-<variant>`, the binary images' name without the arch.
    binary_prefix: String,
    /// Covers the image as [`dockerfile::Render::canonical`] renders it, and every input.
    fingerprint: String,
    /// The sha256 of the opencode binary the image holds, per platform.
    shas: BTreeMap<Platform, String>,
    /// Where a passed `opencode --version` proof of this binary on this C library is
    /// recorded; `None` when the base's C library is not fully known, or for several
    /// platforms (the probe sees one), so the proof always runs.
    proof: Option<Utf8PathBuf>,
}

fn reporter(mode: ProgressMode) -> Arc<dyn Reporter> {
    Arc::from(report::reporter(mode))
}

impl Project {
    /// Reads and checks every input; nothing here calls an engine or the network.
    pub(crate) fn open(ctx: &Context) -> Result<Project> {
        let config = config::load(&ctx.project, &ctx.env, &ctx.flags)?;
        let trust = Trust::new(&ctx.project, ctx.env.global_config_dir().as_deref());
        let base = resolve_base(&config, &ctx.project, &trust)?;
        paths::check_file_source(&config, &trust)?;
        let keep_context = paths::keep_context_dir(&ctx.env.vars)?;
        let choice = config.backend.map(|b| Choice {
            value: b.name().to_string(),
            from: config
                .sources
                .get("backend")
                .map(|s| s.to_string())
                .unwrap_or_default(),
        });
        let engine = Engine::open(
            choice.as_ref(),
            ctx.path_var().as_ref(),
            reporter(ctx.progress),
            ctx.dry_run,
        )?;
        let cache_root = crate::dirs::cache_home(&ctx.env.vars)
            .ok_or_else(|| {
                UserError::setting("cannot find a cache directory: set HOME or XDG_CACHE_HOME")
            })?
            .join("ocx");
        Ok(Project {
            config,
            engine,
            base,
            dir: ctx.project.clone(),
            vars: ctx.env.vars.clone(),
            cache_root,
            trust,
            keep_context,
            keep_run: Default::default(),
            http: Default::default(),
        })
    }

    fn fetcher(&self, variant: OpencodeVariant) -> Fetcher<'_> {
        Fetcher {
            source: &self.config.opencode_source,
            trust: &self.trust,
            source_origin: self
                .config
                .sources
                .get("opencode_source")
                .unwrap_or(&Source::Default),
            variant,
            cache_dir: self.cache_root.join("opencode"),
            vars: &self.vars,
            engine: &self.engine,
            http: &self.http,
        }
    }

    /// The final image name: `ocx-<sanitized base>:<version>-<user>`, or
    /// `ocx:<version>-<user>` on the default base. `<user>` is [`user_tag`]: two projects or
    /// two users on one daemon with other uid/gid/username get their own image instead of
    /// rebuilding each other's on every switch.
    fn final_image(&self, version: &str) -> Result<ImageRef> {
        let user = user_tag(
            self.config.uid,
            self.config.gid,
            self.config.username.as_ref().map(|u| u.as_str()),
        );
        Ok(ImageRef::parse(&format!(
            "{}:{version}-{user}",
            final_repo(&self.base)
        ))?)
    }

    /// The documented name, `ocx-<base>:<version>` (ocx's spec, `docker run ocx-myimg:1.2.3`):
    /// moved to the final image of whoever built last on this engine. The user-keyed tag stays
    /// beside it, so users sharing a daemon never rebuild over each other.
    fn shared_image(&self, version: &str) -> Result<ImageRef> {
        Ok(ImageRef::parse(&format!(
            "{}:{version}",
            final_repo(&self.base)
        ))?)
    }

    /// Points the shared tag at the image just built, or found current by a run that had to ask
    /// the engine more than the no-op's inspect. The no-op itself leaves it alone: naming it
    /// in that inspect would cost ~10 ms more on the containerd image store, and the tag
    /// already points at this user's image unless another user of the daemon built since (the
    /// user-keyed tag is each user's own).
    async fn point_shared(&self, shared: &ImageRef, image: &ImageRef) -> Result<()> {
        self.engine.tag(image, shared).await
    }

    /// The binary images a build may use: for the configured variant, or (unset) for both
    /// variants the base's libc may pick, so a no-op needs no second inspect.
    fn binary_images(&self, version: &str) -> Result<Vec<BinaryImage>> {
        let variants = match self.config.opencode_variant {
            Some(v) => vec![v],
            None => vec![OpencodeVariant::Standard, OpencodeVariant::Musl],
        };
        let mut out = Vec::new();
        for v in variants {
            for p in &self.config.platforms {
                out.push(BinaryImage {
                    variant: v,
                    platform: *p,
                    reference: ImageRef::parse(&format!(
                        "{}-{}",
                        binary_prefix(version, v),
                        p.arch()
                    ))?,
                });
            }
        }
        Ok(out)
    }

    /// Makes the image current: one inspect when it already is, otherwise builds what is
    /// missing or stale.
    pub(crate) async fn ensure(&self, opts: BuildOptions) -> Result<Image> {
        if opts.rebuild_base && matches!(self.base, Base::Image(_)) {
            return user_error(
                ErrorKind::Setting,
                "--rebuild-base needs custom_base_dockerfile; without one ocx cannot rebuild the base",
            );
        }
        let version = self.resolve_version().await?;
        let image = self.final_image(&version)?;
        let shared = self.shared_image(&version)?;
        let bins = self.binary_images(&version)?;
        let mut state = self.inspect_state(&image).await?;
        let base_stale = state.base.exists
            && state
                .base_inputs
                .as_deref()
                .is_some_and(|fp| state.base.label(build_inputs::LABEL) != Some(fp));
        let build_base = !state.base.exists || opts.rebuild_base || base_stale;

        // the no-op: everything current, decided from that one inspect and cached files
        if !build_base && state.image.exists && !opts.force {
            if let Some(done) = self.current(&image, &version, &state).await? {
                return Ok(done);
            }
        }
        if !state.base.exists && matches!(self.base, Base::Image(_)) {
            return Err(missing_base(self.base.image()).into());
        }
        state.binaries = self.inspect_binaries(&bins).await?;
        self.check_all(build_base).await?;
        // with a chosen variant, verified binaries come first: a bad download must not leave
        // a freshly built base behind (unset, the base decides the variant, so it comes first)
        let mut fetched = match self.config.opencode_variant {
            Some(v) => self.fetch_binaries(&version, v, &state, &bins).await?,
            None => BTreeMap::new(),
        };
        let base_info = if build_base {
            if base_stale {
                self.engine.reporter().info(&format!(
                    "{} changed since {} was built",
                    self.base_dockerfile_name(),
                    self.base.image()
                ));
            }
            self.build_base(state.base.exists, state.base_inputs.clone())
                .await?
        } else {
            state.base.clone()
        };
        if build_base {
            if let Some(done) = self
                .speculate(&image, &shared, &version, &state, &bins, &base_info)
                .await?
            {
                return Ok(done);
            }
        }
        let facts = self.base_facts(&base_info).await?;
        let variant = self.variant(&facts);
        if self.config.opencode_variant.is_none() {
            fetched = self
                .fetch_binaries(&version, variant, &state, &bins)
                .await?;
        }
        let shas = self
            .build_binaries(&version, variant, &state, &bins, fetched)
            .await?;
        let design = self.design(&version, &base_info, &facts, variant, &shas)?;
        let home = Utf8PathBuf::from(&design.plan.home);
        let user = design.plan.run_as();
        if state.image.exists
            && state.image.label(fingerprint::LABEL) == Some(design.fingerprint.as_str())
            && state.image.label(dockerfile::LABEL_BINARIES)
                == Some(binaries_label(variant, &design.shas).as_str())
            && !opts.force
        {
            self.engine
                .reporter()
                .info(&format!("{image} is up to date"));
            self.point_shared(&shared, &image).await?;
            return Ok(Image {
                reference: image,
                home,
                user,
            });
        }
        self.engine.reporter().info(&design.plan.describe());
        self.build_final(&image, &version, &design).await?;
        self.point_shared(&shared, &image).await?;
        if !self.engine.dry_run() {
            self.engine
                .reporter()
                .info(&format!("built {image} (also tagged {shared})"));
        }
        Ok(Image {
            reference: image,
            home,
            user,
        })
    }

    /// The no-op check: the final image is current if its fingerprint matches what would be
    /// built now, with the opencode binaries its label says it holds (see [`binaries_label`]),
    /// which must be the variant the base needs, for every platform. Reads the base's cached
    /// probe (probing it if the cache was cleared); `None` when something must be built.
    async fn current(
        &self,
        image: &ImageRef,
        version: &Version,
        state: &State,
    ) -> Result<Option<Image>> {
        let facts = self.base_facts(&state.base).await?;
        let variant = self.variant(&facts);
        let Some(shas) = state
            .image
            .label(dockerfile::LABEL_BINARIES)
            .and_then(|l| parse_binaries_label(l, variant, &self.config.platforms))
        else {
            return Ok(None);
        };
        let design = self.design(version, &state.base, &facts, variant, &shas)?;
        if state.image.label(fingerprint::LABEL) != Some(design.fingerprint.as_str()) {
            return Ok(None);
        }
        self.engine
            .reporter()
            .info(&format!("{image} is up to date"));
        Ok(Some(Image {
            reference: image.clone(),
            home: Utf8PathBuf::from(&design.plan.home),
            user: design.plan.run_as(),
        }))
    }

    /// After a base edit the new base is probed (its image ID is new), and while that container
    /// runs, the final image is built on what the previous base held: an edit rarely changes
    /// its users or its C library, and the probe costs about as long as the build waits for
    /// it. If the facts did change, `None`: `ensure` then goes on as without this, and builds
    /// the image again on the new facts. Only when the previous base's facts are on record and
    /// the binaries they call for are already built.
    async fn speculate(
        &self,
        image: &ImageRef,
        shared: &ImageRef,
        version: &Version,
        state: &State,
        bins: &[BinaryImage],
        base: &ImageInfo,
    ) -> Result<Option<Image>> {
        let dir = self.cache_root.join("bases");
        let cached = |id: Option<&str>| {
            id.and_then(|i| probe::cache_file(&dir, i))
                .and_then(|f| probe::load(&f))
        };
        if self.engine.dry_run() || cached(base.id.as_deref()).is_some() {
            return Ok(None);
        }
        let Some(before) = cached(state.base.id.as_deref()) else {
            return Ok(None);
        };
        let variant = self.variant(&before);
        let mut shas = BTreeMap::new();
        for (b, info) in bins.iter().zip(&state.binaries) {
            if b.variant != variant {
                continue;
            }
            match binary_sha(info) {
                Some(sha) => shas.insert(b.platform, sha.to_string()),
                None => return Ok(None),
            };
        }
        let design = self.design(version, base, &before, variant, &shas)?;
        self.engine.reporter().info(&design.plan.describe());
        let (facts, built) = futures_util::future::join(
            self.base_facts(base),
            self.build_final(image, version, &design),
        )
        .await;
        let facts = facts?;
        if facts != before {
            if let Err(e) = built {
                // an interruption ends the run; any other failure was the old facts' plan
                if crate::error::interruption(&e).is_some() {
                    return Err(e);
                }
            }
            self.engine.reporter().info(&format!(
                "{} holds other users or another C library than before: building again",
                self.base.image()
            ));
            return Ok(None);
        }
        built?;
        self.point_shared(shared, image).await?;
        self.engine
            .reporter()
            .info(&format!("built {image} (also tagged {shared})"));
        Ok(Some(Image {
            reference: image.clone(),
            home: Utf8PathBuf::from(&design.plan.home),
            user: design.plan.run_as(),
        }))
    }

    /// `latest` becomes a concrete version (a read-only query, so `--dry-run` does it too).
    async fn resolve_version(&self) -> Result<Version> {
        self.fetcher(self.config.opencode_variant.unwrap_or_default())
            .resolve(&self.config.opencode_version, &self.config.platforms)
            .await
    }

    /// One inspect naming the base and the final image; the base's inputs are hashed at the
    /// same time, so a large context costs no extra wall time.
    async fn inspect_state(&self, image: &ImageRef) -> Result<State> {
        let refs = vec![self.base.image(), image];
        let hashing = match &self.base {
            Base::Dockerfile {
                dockerfile,
                context,
                ..
            } => {
                let (d, c, p) = (
                    dockerfile.clone(),
                    context.clone(),
                    self.config.platforms.clone(),
                );
                Some(tokio::task::spawn_blocking(move || {
                    build_inputs::fingerprint(&d, &c, &p)
                }))
            }
            _ => None,
        };
        let mut infos = self.engine.inspect(&refs).await?;
        let base_inputs = match hashing {
            Some(h) => Some(h.await.context("hashing the base's inputs")?),
            None => None,
        };
        let image_info = infos.pop().unwrap_or_default();
        let mut base_info = infos.pop().unwrap_or_default();
        // dry-run cannot build a base that has no Dockerfile: assume the user has it
        if self.engine.dry_run() && matches!(self.base, Base::Image(_)) {
            base_info.exists = true;
        }
        Ok(State {
            base: base_info,
            image: image_info,
            binaries: Vec::new(),
            base_inputs,
        })
    }

    /// The binary images a build may use: one more inspect, only when something is built.
    async fn inspect_binaries(&self, bins: &[BinaryImage]) -> Result<Vec<ImageInfo>> {
        let refs: Vec<&ImageRef> = bins.iter().map(|b| &b.reference).collect();
        self.engine.inspect(&refs).await
    }

    fn base_dockerfile_name(&self) -> String {
        match &self.base {
            Base::Dockerfile { dockerfile, .. } => format!("{dockerfile} or a file it copies"),
            _ => "the base".into(),
        }
    }

    /// Every build this run may start, checked by the engine (its probes, then `check_build`)
    /// before anything is downloaded or built: a build it would refuse fails first.
    async fn check_all(&self, build_base: bool) -> Result<()> {
        let platforms = &self.config.platforms;
        let placeholder = Utf8PathBuf::from("<generated-context>");
        let mut reqs = Vec::new();
        if build_base {
            let mut r = BuildRequest::new(
                placeholder.clone(),
                placeholder.join("Dockerfile"),
                self.base.image().clone(),
            );
            r.platforms = platforms.clone();
            reqs.push(r);
        }
        for p in platforms {
            let mut r = BuildRequest::new(
                placeholder.clone(),
                placeholder.join("Dockerfile"),
                self.base.image().clone(),
            );
            r.platforms = vec![*p];
            reqs.push(r);
        }
        let mut r = BuildRequest::new(
            placeholder.clone(),
            placeholder.join("Dockerfile"),
            self.base.image().clone(),
        );
        r.platforms = platforms.clone();
        r.local_parent = true;
        reqs.push(r);
        for r in &reqs {
            self.engine.prepare(r).await?;
        }
        Ok(())
    }

    /// The verified binaries of `variant` whose binary image is missing, by platform.
    async fn fetch_binaries(
        &self,
        version: &str,
        variant: OpencodeVariant,
        state: &State,
        bins: &[BinaryImage],
    ) -> Result<BTreeMap<Platform, Binary>> {
        let fetcher = self.fetcher(variant);
        let mut out = BTreeMap::new();
        for (b, info) in bins.iter().zip(&state.binaries) {
            if b.variant != variant || binary_sha(info).is_some() {
                continue;
            }
            let p = b.platform;
            if self.engine.dry_run() {
                let bin = fetcher.cached(version, p).unwrap_or_else(|| {
                    let asset = opencode::asset_name(p, variant);
                    self.engine.note(&format!(
                        "download {asset} {version} from {} and verify its checksum",
                        self.config.opencode_source
                    ));
                    Binary {
                        platform: p,
                        asset,
                        path: "<download>".into(),
                        published: "<checksum>".into(),
                        sha256: "<sha256>".into(),
                    }
                });
                out.insert(p, bin);
                continue;
            }
            let bin = fetcher
                .fetch(version, p)
                .await
                .with_context(|| format!("getting opencode {version} for {p}"))?;
            out.insert(p, bin);
        }
        Ok(out)
    }

    async fn build_base(&self, existed: bool, inputs: Option<String>) -> Result<ImageInfo> {
        let base = self.base.image();
        let _default_ctx;
        let (dockerfile, context) = match &self.base {
            Base::Image(_) => return Err(missing_base(base).into()),
            Base::Dockerfile {
                dockerfile,
                context,
                ..
            } => (dockerfile.clone(), context.clone()),
            Base::Default(_) => {
                let dir = tempfile::Builder::new().prefix("ocx-base-").tempdir()?;
                let d = utf8(dir.path())?;
                crate::disk::write(&d.join("Dockerfile"), dockerfile::DEFAULT_BASE_DOCKERFILE)?;
                _default_ctx = dir;
                (d.join("Dockerfile"), d)
            }
        };
        self.engine.reporter().info(&format!(
            "{} base image {base} from {dockerfile}",
            if existed { "rebuilding" } else { "building" }
        ));
        let mut req = BuildRequest::new(context, dockerfile.clone(), base.clone());
        req.platforms = self.config.platforms.clone();
        req.output = Output::Load;
        req.declared_args = std::fs::read_to_string(&dockerfile)
            .ok()
            .map(|t| crate::build::declared_args(&t));
        if let Some(fp) = inputs {
            req.labels.insert(build_inputs::LABEL.into(), fp);
        }
        self.engine
            .build(&req)
            .await
            .with_context(|| format!("building the base image {base}"))?;
        if self.engine.dry_run() {
            return Ok(ImageInfo {
                exists: true,
                ..Default::default()
            });
        }
        let info = self
            .engine
            .inspect(&[base])
            .await?
            .pop()
            .unwrap_or_default();
        if !info.exists {
            anyhow::bail!("the base image {base} was built but the engine does not list it");
        }
        Ok(info)
    }

    /// What the base holds (users, libc): from the cache by image ID, else one probe
    /// container. In `--dry-run` before the base exists, assumed.
    async fn base_facts(&self, base: &ImageInfo) -> Result<BaseFacts> {
        let Some(id) = base.id.as_deref() else {
            if self.engine.dry_run() {
                self.engine.note(&format!(
                    "probe {} for its users and libc once it is built",
                    self.base.image()
                ));
                return Ok(BaseFacts::assumed());
            }
            anyhow::bail!("the engine reported no ID for {}", self.base.image());
        };
        let file = probe::cache_file(&self.cache_root.join("bases"), id);
        if let Some(facts) = file.as_deref().and_then(probe::load) {
            return Ok(facts);
        }
        let platforms = &self.config.platforms;
        let host = Platform::host();
        let platform = if platforms.contains(&host) {
            (platforms.len() > 1).then_some(host)
        } else {
            platforms.first().copied()
        };
        let spec = RunSpec {
            image: self.base.image().to_string(),
            command: vec!["-c".into(), probe::script()],
            entrypoint: Some("/bin/sh".into()),
            user: Some(RunAs::ids(0, 0)),
            platform,
            remove: true,
            ..Default::default()
        };
        let facts = match self
            .engine
            .run_captured(&spec)
            .await
            .with_context(|| format!("probing the base image {}", self.base.image()))?
        {
            Ran::Output(out) => probe::parse(&out.stdout)
                .with_context(|| format!("probing the base image {}", self.base.image()))?,
            Ran::NoSuchCommand => BaseFacts::shell_less(),
        };
        if let Some(f) = &file {
            probe::store(f, &facts);
        }
        Ok(facts)
    }

    /// The configured variant, or the one the base's libc needs.
    fn variant(&self, facts: &BaseFacts) -> OpencodeVariant {
        match self.config.opencode_variant {
            Some(v) => v,
            None if !facts.musl.is_empty() => OpencodeVariant::Musl,
            None => OpencodeVariant::Standard,
        }
    }

    /// Makes sure each platform's binary image of `variant` exists; returns the sha256 of the
    /// binary each holds. A missing one is built from the verified binary in the cache.
    async fn build_binaries(
        &self,
        version: &str,
        variant: OpencodeVariant,
        state: &State,
        bins: &[BinaryImage],
        fetched: BTreeMap<Platform, Binary>,
    ) -> Result<BTreeMap<Platform, String>> {
        let mut shas = BTreeMap::new();
        for (b, info) in bins.iter().zip(&state.binaries) {
            if b.variant != variant {
                continue;
            }
            if let Some(sha) = binary_sha(info) {
                shas.insert(b.platform, sha.to_string());
                continue;
            }
            let bin = fetched
                .get(&b.platform)
                .cloned()
                .ok_or_else(|| anyhow::anyhow!("no verified opencode binary for {}", b.platform))?;
            let sha = self.build_binary(version, b, bin).await?;
            shas.insert(b.platform, sha);
        }
        if variant == OpencodeVariant::Musl && self.config.opencode_variant.is_none() {
            self.engine.reporter().info(&format!(
                "{} has a musl loader: using opencode_variant musl",
                self.base.image()
            ));
        }
        Ok(shas)
    }

    /// Builds one binary image from a cached binary, checked against our digest as it is
    /// copied into the context; a modified cache entry is downloaded again.
    async fn build_binary(&self, version: &str, b: &BinaryImage, bin: Binary) -> Result<String> {
        let (ctx, _tmp) = self.context_dir(&format!(
            "opencode-{}-{}",
            b.variant.name(),
            b.platform.arch()
        ))?;
        let mut bin = bin;
        if !self.engine.dry_run() {
            if let Err(e) = opencode::copy_verified(&bin, &ctx.join("opencode")) {
                let Some(corrupt) = e.downcast_ref::<opencode::Corrupt>() else {
                    return Err(e);
                };
                self.engine
                    .reporter()
                    .warn(&format!("{corrupt}; fetching it again"));
                let fetcher = self.fetcher(b.variant);
                fetcher.forget(version, b.platform);
                bin = fetcher.fetch(version, b.platform).await.with_context(|| {
                    format!("the cached opencode {version} for {} was modified, and fetching it again failed", b.platform)
                })?;
                opencode::copy_verified(&bin, &ctx.join("opencode"))?;
            }
            crate::disk::write(
                &ctx.join("Dockerfile"),
                dockerfile::render_binary(version, &bin.asset, &bin.sha256),
            )?;
        }
        self.engine.reporter().info(&format!(
            "building {} (opencode {version}, {})",
            b.reference, bin.asset
        ));
        let mut req = BuildRequest::new(ctx.clone(), ctx.join("Dockerfile"), b.reference.clone());
        req.platforms = vec![b.platform];
        req.output = Output::Load;
        req.declared_args = Some(Default::default());
        self.engine
            .build(&req)
            .await
            .with_context(|| format!("building {}", b.reference))?;
        Ok(bin.sha256)
    }

    /// A directory for a generated context: under OCX_KEEP_CONTEXT (kept), else a temp dir
    /// (removed when the guard drops). In `--dry-run` nothing is created.
    fn context_dir(&self, name: &str) -> Result<(Utf8PathBuf, Option<tempfile::TempDir>)> {
        if self.engine.dry_run() {
            return Ok((Utf8PathBuf::from("<generated-context>"), None));
        }
        if let Some(keep) = &self.keep_context {
            let mut run = self.keep_run.lock().unwrap_or_else(|e| e.into_inner());
            if run.is_none() {
                let d = paths::fresh_numbered_dir(keep).with_context(|| {
                    format!("creating a directory in {ENV_KEEP_CONTEXT} {keep}")
                })?;
                self.engine
                    .reporter()
                    .info(&format!("keeping the generated contexts in {d}"));
                *run = Some(d);
            }
            let d = run.as_ref().expect("set above").join(name);
            crate::disk::context(std::fs::create_dir_all(&d), &d, None)
                .with_context(|| format!("creating {ENV_KEEP_CONTEXT} {d}"))?;
            return Ok((d, None));
        }
        let tmp = utf8(&std::env::temp_dir())?;
        let dir = crate::disk::context(
            tempfile::Builder::new().prefix("ocx-context-").tempdir(),
            &tmp,
            None,
        )?;
        Ok((utf8(dir.path())?, Some(dir)))
    }

    /// Decides the user, renders the final Dockerfile and fingerprints it with every input.
    fn design(
        &self,
        version: &str,
        base: &ImageInfo,
        facts: &BaseFacts,
        variant: OpencodeVariant,
        shas: &BTreeMap<Platform, String>,
    ) -> Result<Design> {
        // a Headjack image ends as root and names its session user in a label: that user is
        // the base's user, as its USER would be
        let base_user = base
            .label(crate::backend::runner_flags::LABEL_EXEC_USER)
            .or(base.user.as_deref());
        let plan = user::plan(
            facts,
            base_user,
            &user::Wanted {
                username: self.config.username.as_ref(),
                uid: self.config.uid,
                gid: self.config.gid,
            },
        )?;
        let prefix = binary_prefix(version, variant);
        let canonical = dockerfile::Render {
            base: self.base.image(),
            version,
            binary_image_prefix: &prefix,
            user: &plan,
            link: false,
            prove: true,
        }
        .canonical();
        // format 2: the image carries its binaries' label, which a no-op reads
        let mut f = Fingerprint::new()
            .add("format", "2")
            .add("dockerfile", &canonical)
            .add("setup-user.sh", dockerfile::SETUP_USER_SCRIPT)
            .add("base-id", base.id.as_deref().unwrap_or(""))
            .add("platforms", Platform::join(&self.config.platforms));
        for (p, sha) in shas {
            f = f.add(&format!("opencode-{p}"), sha);
        }
        let proof = match (
            facts.libc_signature(),
            shas.values().collect::<Vec<_>>().as_slice(),
        ) {
            (Some(libc), [sha]) => Some(
                self.cache_root.join("proofs").join(
                    Fingerprint::new()
                        .add("opencode-sha256", sha.as_str())
                        .add("libc", libc)
                        .finish(),
                ),
            ),
            _ => None,
        };
        Ok(Design {
            plan,
            variant,
            no_libc: facts.no_libc(),
            binary_prefix: prefix,
            shas: shas.clone(),
            fingerprint: f.finish(),
            proof,
        })
    }

    /// The Dockerfile `build_final` sends: the canonical image, linked where the builder can,
    /// and without the `--version` proof where this binary already passed it on this C library
    /// (that proof ran as a build step once; it costs about a second on every base edit).
    fn rendered(&self, version: &str, d: &Design) -> (String, bool) {
        let prove = !d.proof.as_ref().is_some_and(|p| p.exists());
        let text = dockerfile::render(&dockerfile::Render {
            base: self.base.image(),
            version,
            binary_image_prefix: &d.binary_prefix,
            user: &d.plan,
            link: self.engine.assumes(Capability::CopyLink),
            prove,
        });
        (text, prove)
    }

    async fn build_final(&self, image: &ImageRef, version: &str, d: &Design) -> Result<()> {
        // a small generated context: the project directory is never sent to the engine
        let (ctx, _tmp) = self.context_dir("final")?;
        let (rendered, proving) = self.rendered(version, d);
        if !self.engine.dry_run() {
            crate::disk::write(&ctx.join("Dockerfile"), &rendered)?;
            crate::disk::write(&ctx.join("setup-user.sh"), dockerfile::SETUP_USER_SCRIPT)?;
            if dockerfile::needs_home_skeleton(&d.plan) {
                for dir in dockerfile::home_skeleton_dirs() {
                    let dir = ctx.join(dir);
                    crate::disk::context(std::fs::create_dir_all(&dir), &dir, None)?;
                }
            }
        }
        let mut req = BuildRequest::new(ctx.clone(), ctx.join("Dockerfile"), image.clone());
        req.platforms = self.config.platforms.clone();
        req.labels
            .insert(fingerprint::LABEL.into(), d.fingerprint.clone());
        req.labels.insert(
            dockerfile::LABEL_BINARIES.into(),
            binaries_label(d.variant, &d.shas),
        );
        req.output = Output::Load;
        req.local_parent = true;
        req.declared_args = Some(crate::build::declared_args(&rendered));
        match self.engine.build(&req).await {
            Ok(()) => {
                if let (true, Some(p), false) = (proving, &d.proof, self.engine.dry_run()) {
                    // best effort: without the record the proof just runs again next time
                    let _ = p.parent().map(std::fs::create_dir_all);
                    let _ = std::fs::write(p, version);
                }
                Ok(())
            }
            Err(e) => Err(match self.variant_mismatch(&e, version, d) {
                Some(user) => user.into(),
                None => e.context(format!("building {image}")),
            }),
        }
    }

    /// A failure at the `opencode --version` step that says this build of opencode cannot run
    /// on the base (no loader, a missing library, an illegal instruction), which one key fixes.
    /// Any other failure there (a read-only /tmp) stays a build failure with its output.
    fn variant_mismatch(&self, e: &anyhow::Error, version: &str, d: &Design) -> Option<UserError> {
        let failed = e.downcast_ref::<CommandFailed>()?;
        let step = failed.step.as_ref()?;
        if !step.text.contains("--version") {
            return None;
        }
        let asset = opencode::asset_name(
            self.config
                .platforms
                .first()
                .copied()
                .unwrap_or_else(Platform::host),
            d.variant,
        );
        // the line the binary (or the loader) printed, not the engine's summary of it
        let lines: Vec<String> = failed
            .tail
            .iter()
            .map(|l| strip_ansi(l).trim().to_string())
            .filter(|l| !l.is_empty() && !self.engine.step_failure(l))
            .collect();
        let markers = [
            "no such file",
            "not found",
            "error loading",
            "illegal instruction",
            "exec format",
            "error relocating",
        ];
        let why = lines.iter().find(|l| {
            let l = l.to_ascii_lowercase();
            markers.iter().any(|m| l.contains(m))
        })?;
        let origin = match self.config.sources.get("opencode_variant") {
            Some(s) => format!("from {s}"),
            None if d.no_libc => "by default".into(),
            None => "picked from the base's libc".into(),
        };
        let fix = match d.variant {
            _ if d.no_libc => {
                "the base has no C library (no /lib*/ld-linux-* or /lib/ld-musl-* loader), and every opencode build needs one: use a base with glibc, or musl with libstdc++ and libgcc"
            }
            OpencodeVariant::Musl | OpencodeVariant::BaselineMusl => {
                "set opencode_variant to standard for a glibc base, or add libstdc++ and libgcc to a musl base (apk add libstdc++ libgcc)"
            }
            _ => "set opencode_variant to musl for a musl (Alpine) base, or to baseline for a CPU without AVX2",
        };
        Some(UserError::base(format!(
            "opencode {version} ({asset}, opencode_variant {} {origin}) does not run on {} as uid {}: {why:?}; {fix}",
            d.variant.name(),
            self.base.image(),
            d.plan.uid
        )))
    }

    /// The container spec for running `command` on the project.
    pub(crate) fn run_spec(&self, image: &Image, command: Vec<String>) -> Result<RunSpec> {
        let home = &image.home;
        let mut mounts = vec![Mount {
            host: self.dir.clone(),
            container: self.dir.clone(),
            read_only: false,
        }];
        if let Some(host_home) = crate::dirs::home(&self.vars) {
            for rel in [".config/opencode", ".local/share/opencode"] {
                let host = host_home.join(rel);
                // created by us so the engine doesn't create them root-owned
                if !self.engine.dry_run() && !host.exists() {
                    std::fs::create_dir_all(&host).with_context(|| format!("creating {host}"))?;
                    // as root with another configured uid, hand them to the container user
                    std::os::unix::fs::chown(&host, Some(self.config.uid), Some(self.config.gid))
                        .ok();
                }
                mounts.push(Mount {
                    host,
                    container: home.join(rel),
                    read_only: false,
                });
            }
        }
        let env_names = PASSTHROUGH_ENV
            .iter()
            .filter(|n| self.vars.contains_key(**n))
            .map(|n| n.to_string())
            .collect();
        Ok(RunSpec {
            image: image.reference.to_string(),
            name: Some(format!("ocx-{}", std::process::id())),
            command,
            mounts,
            workdir: Some(self.dir.clone()),
            env_names,
            user: Some(image.user),
            tty: std::io::stdin().is_terminal(),
            interactive: true,
            platform: None,
            remove: true,
            entrypoint: None,
            detach: false,
            flags: Vec::new(),
        })
    }
}

/// `text` without terminal escape sequences (the classic docker builder colors its output).
fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            if chars.peek() == Some(&'[') {
                chars.next();
                for n in chars.by_ref() {
                    if n.is_ascii_alphabetic() {
                        break;
                    }
                }
            }
            continue;
        }
        out.push(c);
    }
    out
}

/// `ocx-<sanitized base>`, or `ocx` on the default base.
fn final_repo(base: &Base) -> String {
    match base {
        Base::Default(_) => "ocx".to_string(),
        b => format!("ocx-{}", b.image().sanitized_name()),
    }
}

/// 8 hex of the container user the config asks for: the first 8 hex digits of the sha256 of
/// `<uid>:<gid>:<username or nothing>`.
pub(crate) fn user_tag(uid: u32, gid: u32, username: Option<&str>) -> String {
    use sha2::Digest;
    let text = format!("{uid}:{gid}:{}", username.unwrap_or(""));
    fingerprint::hex(&sha2::Sha256::digest(text.as_bytes()))[..8].to_string()
}

/// The final image's [`dockerfile::LABEL_BINARIES`]: `<variant> <platform>=<sha256> ...`, the
/// opencode binaries it holds, so a no-op needs no inspect of the binary images.
fn binaries_label(variant: OpencodeVariant, shas: &BTreeMap<Platform, String>) -> String {
    let mut out = variant.name().to_string();
    for (p, sha) in shas {
        out.push_str(&format!(" {p}={sha}"));
    }
    out
}

/// The shas of [`binaries_label`] text, if it is of `variant` and names exactly `platforms`.
fn parse_binaries_label(
    text: &str,
    variant: OpencodeVariant,
    platforms: &[Platform],
) -> Option<BTreeMap<Platform, String>> {
    let mut words = text.split_whitespace();
    if words.next()? != variant.name() {
        return None;
    }
    let mut shas = BTreeMap::new();
    for w in words {
        let (p, sha) = w.split_once('=')?;
        let p: Platform = p.parse().ok()?;
        if sha.len() != 64 || !sha.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        shas.insert(p, sha.to_string());
    }
    let mut want: Vec<Platform> = platforms.to_vec();
    want.sort();
    want.dedup();
    (shas.keys().copied().collect::<Vec<_>>() == want).then_some(shas)
}

/// `ocx-opencode:<version>-<variant>`; the arch is appended per platform.
fn binary_prefix(version: &str, variant: OpencodeVariant) -> String {
    format!("{BINARY_REPO}:{version}-{}", variant.name())
}

/// The sha256 a binary image holds, if it exists and is one of ours.
fn binary_sha(info: &ImageInfo) -> Option<&str> {
    info.label(dockerfile::LABEL_BINARY_SHA256)
        .filter(|s| info.exists && s.len() == 64)
}

fn utf8(p: &std::path::Path) -> Result<Utf8PathBuf> {
    Utf8PathBuf::from_path_buf(p.to_owned())
        .map_err(|p| anyhow::anyhow!("non-UTF-8 temporary path {}", p.display()))
}

/// `ocx build`
pub(crate) async fn build(ctx: &Context, opts: BuildOptions) -> Result<u8> {
    Project::open(ctx)?.ensure(opts).await?;
    Ok(crate::error::EXIT_OK)
}

/// `ocx opencode ARGS`: opencode itself, with ARGS, in the image.
pub(crate) async fn opencode(ctx: &Context, args: Vec<String>) -> Result<u8> {
    let mut command = vec![dockerfile::BINARY_PATH.to_string()];
    command.extend(args);
    run(ctx, command).await
}

/// `ocx opencode ARGS` and `ocx exec CMD`: ensures the image, then runs in it; returns the
/// child's exit code (wrapped into a byte the way a shell shows it).
pub(crate) async fn run(ctx: &Context, command: Vec<String>) -> Result<u8> {
    let project = Project::open(ctx)?;
    let image = project.ensure(BuildOptions::default()).await?;
    let spec = project.run_spec(&image, command)?;
    let attach = Attach {
        terminal: spec.tty,
        capture_stdout: ctx.progress == ProgressMode::Json,
    };
    let code = project.engine.run_interactive(&spec, attach).await?;
    Ok((code & 0xff) as u8)
}

/// `ocx config show`: every key, its value and where the value came from. An unset backend
/// shows the engine detection would pick, and why.
pub(crate) fn show_config(ctx: &Context) -> Result<u8> {
    let config = config::load(&ctx.project, &ctx.env, &ctx.flags)?;
    let mut text = String::new();
    let mut rows = Vec::new();
    for key in KEYS {
        let mut value = config.value(key.name);
        let mut source = config.sources.get(key.name).map(|s| s.to_string());
        if key.name == "backend" && value.is_none() {
            let path = ctx.path_var();
            (value, source) = match crate::backend::detect::first_on_path(path.as_ref()) {
                Some(kind) => (Some(kind.to_string()), Some("detected on PATH".into())),
                None => (None, Some("none found on PATH".into())),
            };
        }
        let shown = value.clone().unwrap_or_else(|| "(unset)".into());
        let src = source.clone().unwrap_or_else(|| "unset".into());
        text.push_str(&format!("{:<24} {shown:<40} {src}\n", key.name));
        rows.push(serde_json::json!({"key": key.name, "value": value, "source": source}));
    }
    // the two names the image gets: for this user, and the documented shared one
    let trust = Trust::new(&ctx.project, ctx.env.global_config_dir().as_deref());
    if let Ok(base) = resolve_base(&config, &ctx.project, &trust) {
        let version = match config.value("opencode_version").as_deref() {
            Some("latest") | None => "<latest version>".to_string(),
            Some(v) => v.to_string(),
        };
        let user = user_tag(
            config.uid,
            config.gid,
            config.username.as_ref().map(|u| u.as_str()),
        );
        let repo = final_repo(&base);
        for (key, value, source) in [
            (
                "image",
                format!("{repo}:{version}-{user}"),
                format!("for uid {}, gid {}", config.uid, config.gid),
            ),
            (
                "shared image",
                format!("{repo}:{version}"),
                "moved to each build's image".to_string(),
            ),
        ] {
            text.push_str(&format!("{key:<24} {value:<40} {source}\n"));
            rows.push(serde_json::json!({"key": key, "value": value, "source": source}));
        }
    }
    reporter(ctx.progress).result(text, serde_json::Value::Array(rows));
    Ok(crate::error::EXIT_OK)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_binaries_label_must_name_the_variant_and_every_platform() {
        let (a, b) = ("a".repeat(64), "b".repeat(64));
        let shas: BTreeMap<Platform, String> = [
            (Platform::LinuxAmd64, a.clone()),
            (Platform::LinuxArm64, b.clone()),
        ]
        .into();
        let label = binaries_label(OpencodeVariant::Musl, &shas);
        assert_eq!(label, format!("musl linux/amd64={a} linux/arm64={b}"));
        assert_eq!(
            parse_binaries_label(&label, OpencodeVariant::Musl, &Platform::ALL),
            Some(shas)
        );
        // the base now needs the other variant, or another set of platforms: not current
        assert_eq!(
            parse_binaries_label(&label, OpencodeVariant::Standard, &Platform::ALL),
            None
        );
        assert_eq!(
            parse_binaries_label(&label, OpencodeVariant::Musl, &[Platform::LinuxAmd64]),
            None
        );
        for bad in ["", "musl", "musl linux/amd64=xyz", "musl linux/s390x=aa"] {
            assert_eq!(
                parse_binaries_label(bad, OpencodeVariant::Musl, &[Platform::LinuxAmd64]),
                None,
                "{bad}"
            );
        }
    }
}
