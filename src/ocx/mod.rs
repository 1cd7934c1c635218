//! The ocx workflows: `ocx build`, `ocx opencode`, `ocx exec` and `ocx config show`.
//!
//! [`Project::ensure`] is the whole build, as named steps: `resolve_version`, `inspect_state`
//! (the one engine call a no-op costs), `check_all` (every input and every build the engine
//! would refuse, before any download or build), `fetch_binaries`, `build_base`, then
//! `build_final` unless the fingerprint says the image is current.

pub mod config;
pub mod dockerfile;
pub mod opencode;

use crate::build::{BuildRequest, ImageInfo, Mount, Output, RunSpec};
use crate::engine::{Choice, Engine};
use crate::error::{user_error, UserError};
use crate::exec::Attach;
use crate::fingerprint::{self, Fingerprint};
use crate::image_ref::ImageRef;
use crate::platform::Platform;
use crate::report::{self, ProgressMode, Reporter};
use anyhow::{Context as _, Result};
use camino::{Utf8Path, Utf8PathBuf};
use config::{Config, ConfigEnv, Flags, KEYS};
use opencode::{Binary, Fetcher};
use std::collections::BTreeMap;
use std::ffi::OsString;
use std::io::IsTerminal;
use std::sync::Arc;

/// Provider credentials passed into the container by name (`--env NAME`), so their values
/// never appear in argv, logs or `--dry-run` output.
pub const PASSTHROUGH_ENV: &[&str] = &[
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

/// Keep the generated build context in this directory instead of a temp dir that is removed
/// after the build: for debugging, and for `scripts/bench.sh` to build the same context raw.
pub const ENV_KEEP_CONTEXT: &str = "OCX_KEEP_CONTEXT";

/// Everything a workflow run depends on from outside, so tests can build it explicitly.
pub struct Context {
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
pub struct BuildOptions {
    pub force: bool,
    pub rebuild_base: bool,
}

/// Where the FROM image comes from.
enum Base {
    /// An image that must already exist.
    Image(ImageRef),
    /// An image built from a Dockerfile when missing (or on --rebuild-base).
    Dockerfile {
        image: ImageRef,
        dockerfile: Utf8PathBuf,
        context: Utf8PathBuf,
    },
    /// The built-in default base.
    Default(ImageRef),
}

impl Base {
    fn image(&self) -> &ImageRef {
        match self {
            Base::Image(i) | Base::Dockerfile { image: i, .. } | Base::Default(i) => i,
        }
    }
}

/// A project ocx works on: its config, its engine and where its base comes from.
pub struct Project {
    pub config: Config,
    engine: Engine,
    base: Base,
    dir: Utf8PathBuf,
    vars: BTreeMap<String, String>,
    cache_dir: Utf8PathBuf,
}

/// The image `ensure` made current.
#[derive(Debug, Clone)]
pub struct Image {
    pub reference: ImageRef,
    pub version: String,
    pub built: bool,
}

/// What the engine has now: the one inspect a no-op build costs.
struct State {
    base: ImageInfo,
    image: ImageInfo,
}

fn reporter(mode: ProgressMode) -> Arc<dyn Reporter> {
    Arc::from(report::reporter(mode))
}

impl Project {
    pub fn open(ctx: &Context) -> Result<Project> {
        let config = config::load(&ctx.project, &ctx.env, &ctx.flags)?;
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
        let cache_dir = crate::dirs::cache_home(&ctx.env.vars)
            .ok_or_else(|| {
                UserError("cannot find a cache directory: set HOME or XDG_CACHE_HOME".into())
            })?
            .join("ocx/opencode");
        let base = resolve_base(&config, &ctx.project, &ctx.env)?;
        Ok(Project {
            config,
            engine,
            base,
            dir: ctx.project.clone(),
            vars: ctx.env.vars.clone(),
            cache_dir,
        })
    }

    fn fetcher(&self) -> Fetcher<'_> {
        Fetcher {
            source: &self.config.opencode_source,
            variant: self.config.opencode_variant,
            cache_dir: self.cache_dir.clone(),
            vars: &self.vars,
            engine: &self.engine,
        }
    }

    /// The final image name: `ocx-<sanitized base>:<version>`, or `ocx:<version>` on the
    /// default base.
    fn final_image(&self, version: &str) -> Result<ImageRef> {
        let repo = match &self.base {
            Base::Default(_) => "ocx".to_string(),
            b => format!("ocx-{}", b.image().sanitized_name()),
        };
        Ok(ImageRef::parse_deferred(&format!("{repo}:{version}"))?)
    }

    /// Makes the image current: one inspect when it already is, otherwise builds what is
    /// missing.
    pub async fn ensure(&self, opts: BuildOptions) -> Result<Image> {
        if opts.rebuild_base && matches!(self.base, Base::Image(_)) {
            return user_error(
                "--rebuild-base needs custom_base_dockerfile; without one ocx cannot rebuild the base",
            );
        }
        let version = self.resolve_version().await?;
        let image = self.final_image(&version)?;
        let mut state = self.inspect_state(&image).await?;
        let base = self.base.image();
        // If the engine found both images by these names it has accepted them as references
        // itself, and a no-op needs no grammar check (see ImageRef); anything else passes the
        // check before it builds or runs.
        let will_build = !(state.base.exists && state.image.exists) || opts.force;
        if will_build || opts.rebuild_base {
            self.validate_refs(&image)?;
        }
        if !state.base.exists && matches!(self.base, Base::Image(_)) {
            return Err(missing_base(base).into());
        }
        // verified binaries first: a bad download must not leave a freshly built base behind
        let binaries = self.fetch_binaries(&version).await?;
        if !state.base.exists || opts.rebuild_base {
            state.base = self.build_base(state.base.exists).await?;
        }
        let rendered = self.render(&version);
        let fp = self.fingerprint(&rendered, &version, &state.base, &binaries);
        if state.image.exists
            && state.image.label(fingerprint::LABEL) == Some(fp.as_str())
            && !opts.force
        {
            self.engine
                .reporter()
                .info(&format!("{image} is up to date"));
            return Ok(Image {
                reference: image,
                version,
                built: false,
            });
        }
        self.validate_refs(&image)?;
        self.build_final(&image, &rendered, &binaries, fp).await?;
        if !self.engine.dry_run() {
            self.engine.reporter().info(&format!("built {image}"));
        }
        Ok(Image {
            reference: image,
            version,
            built: true,
        })
    }

    /// `latest` becomes a concrete version (a read-only query, so `--dry-run` does it too).
    async fn resolve_version(&self) -> Result<String> {
        if self.config.opencode_version == config::OpencodeVersion::Latest {
            // a bad reference must fail as bad input before any network call
            self.config.validate_base()?;
        }
        self.fetcher()
            .resolve(&self.config.opencode_version, &self.config.platforms)
            .await
    }

    /// One inspect naming the base and the final image.
    async fn inspect_state(&self, image: &ImageRef) -> Result<State> {
        let mut infos = self.engine.inspect(&[self.base.image(), image]).await?;
        let image_info = infos.pop().unwrap_or_default();
        let mut base_info = infos.pop().unwrap_or_default();
        // dry-run cannot build a base that has no Dockerfile: assume the user has it
        if self.engine.dry_run() && matches!(self.base, Base::Image(_)) {
            base_info.exists = true;
        }
        Ok(State {
            base: base_info,
            image: image_info,
        })
    }

    fn validate_refs(&self, image: &ImageRef) -> Result<(), UserError> {
        self.config.validate_base()?;
        self.base.image().validated()?;
        image.validated()?;
        Ok(())
    }

    async fn fetch_binaries(&self, version: &str) -> Result<Vec<Binary>> {
        let fetcher = self.fetcher();
        let mut out = Vec::new();
        for p in &self.config.platforms {
            if self.engine.dry_run() {
                match fetcher.cached(version, *p) {
                    Some(b) => out.push(b),
                    None => {
                        let asset = opencode::asset_name(*p, self.config.opencode_variant);
                        self.engine.note(&format!(
                            "download {asset} {version} from {} and verify its checksum",
                            self.config.opencode_source
                        ));
                        out.push(Binary {
                            platform: *p,
                            asset,
                            path: "<download>".into(),
                            published: "<checksum>".into(),
                        });
                    }
                }
                continue;
            }
            out.push(
                fetcher
                    .fetch(version, *p)
                    .await
                    .with_context(|| format!("getting opencode {version} for {p}"))?,
            );
        }
        Ok(out)
    }

    async fn build_base(&self, existed: bool) -> Result<ImageInfo> {
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
                std::fs::write(d.join("Dockerfile"), dockerfile::DEFAULT_BASE_DOCKERFILE)?;
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

    fn render(&self, version: &str) -> String {
        dockerfile::render(&dockerfile::Render {
            base: self.base.image(),
            version,
            username: &self.config.username,
            uid: self.config.uid,
            gid: self.config.gid,
        })
    }

    fn fingerprint(
        &self,
        rendered: &str,
        version: &str,
        base: &ImageInfo,
        binaries: &[Binary],
    ) -> String {
        let mut f = Fingerprint::new()
            .add("dockerfile", rendered)
            .add("setup-user.sh", dockerfile::SETUP_USER_SCRIPT)
            .add("base-id", base.id.as_deref().unwrap_or(""))
            .add("version", version)
            .add("username", self.config.username.as_str())
            .add("uid", self.config.uid.to_string())
            .add("gid", self.config.gid.to_string())
            .add("platforms", Platform::join(&self.config.platforms));
        for b in binaries {
            f = f.add(&b.asset, &b.published);
        }
        f.finish()
    }

    async fn build_final(
        &self,
        image: &ImageRef,
        rendered: &str,
        binaries: &[Binary],
        fp: String,
    ) -> Result<()> {
        // a small generated context: the project directory is never sent to the engine
        let dir = tempfile::Builder::new().prefix("ocx-context-").tempdir()?;
        let mut ctx = utf8(dir.path())?;
        if let Some(keep) = self.vars.get(ENV_KEEP_CONTEXT) {
            ctx = Utf8PathBuf::from(keep);
            std::fs::create_dir_all(&ctx)
                .with_context(|| format!("creating {ENV_KEEP_CONTEXT} {ctx}"))?;
        }
        let ctx = if self.engine.dry_run() {
            Utf8PathBuf::from("<generated-context>")
        } else {
            ctx
        };
        if !self.engine.dry_run() {
            std::fs::write(ctx.join("Dockerfile"), rendered)?;
            std::fs::write(ctx.join("setup-user.sh"), dockerfile::SETUP_USER_SCRIPT)?;
            for b in binaries {
                let dst = ctx.join(dockerfile::binary_name(b.platform.arch()));
                if std::fs::hard_link(&b.path, &dst).is_err() {
                    std::fs::copy(&b.path, &dst)
                        .with_context(|| format!("copying {} into the build context", b.path))?;
                }
            }
        }
        let mut req = BuildRequest::new(ctx.clone(), ctx.join("Dockerfile"), image.clone());
        req.platforms = self.config.platforms.clone();
        req.labels.insert(fingerprint::LABEL.into(), fp);
        req.output = Output::Load;
        req.local_parent = true;
        req.declared_args = Some(crate::build::declared_args(rendered));
        self.engine
            .build(&req)
            .await
            .with_context(|| format!("building {image}"))?;
        drop(dir);
        Ok(())
    }

    /// The container spec for running `command` on the project.
    pub fn run_spec(&self, image: &Image, command: Vec<String>) -> Result<RunSpec> {
        let home = if self.config.uid == 0 {
            Utf8PathBuf::from("/root")
        } else {
            Utf8PathBuf::from(format!("/home/{}", self.config.username.as_str()))
        };
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
            user: Some((self.config.uid, self.config.gid)),
            tty: std::io::stdin().is_terminal(),
            interactive: true,
            platform: None,
            remove: true,
        })
    }
}

fn utf8(p: &std::path::Path) -> Result<Utf8PathBuf> {
    Utf8PathBuf::from_path_buf(p.to_owned())
        .map_err(|p| anyhow::anyhow!("non-UTF-8 temporary path {}", p.display()))
}

/// `custom_base_dockerfile` is looked up in the project first, then in
/// `~/.config/ocx/<project-dirname>/`; the context is the directory it was found in.
fn resolve_base(config: &Config, project: &Utf8Path, env: &ConfigEnv) -> Result<Base> {
    let Some(rel) = &config.custom_base_dockerfile else {
        return Ok(match &config.custom_base_image {
            Some(i) => Base::Image(i.clone()),
            None => {
                let h = Fingerprint::new()
                    .add("dockerfile", dockerfile::DEFAULT_BASE_DOCKERFILE)
                    .finish();
                Base::Default(ImageRef::parse_deferred(&format!(
                    "ocx-default-base:{}",
                    &h[..12]
                ))?)
            }
        });
    };
    let dirname = project.file_name().unwrap_or("project");
    let mut tried = vec![project.join(rel)];
    if let Some(g) = env.global_config_dir() {
        tried.push(g.join(dirname).join(rel));
    }
    let Some(found) = tried.iter().find(|p| p.is_file()) else {
        let list: Vec<String> = tried.iter().map(|p| p.to_string()).collect();
        return user_error(format!(
            "custom_base_dockerfile {rel} not found; tried {}",
            list.join(" and ")
        ));
    };
    let image = match &config.custom_base_image {
        Some(i) => i.clone(),
        None => ImageRef::parse_deferred(&format!(
            "ocx-base-{}:latest",
            crate::image_ref::sanitize(dirname)
        ))?,
    };
    let context = found
        .parent()
        .map(Utf8Path::to_owned)
        .unwrap_or_else(|| project.to_owned());
    Ok(Base::Dockerfile {
        image,
        dockerfile: found.clone(),
        context,
    })
}

fn missing_base(base: &ImageRef) -> UserError {
    UserError(format!(
        "custom base image {base} not found and no custom_base_dockerfile configured; pull or build {base} first, or set custom_base_dockerfile"
    ))
}

/// `ocx build`
pub async fn build(ctx: &Context, opts: BuildOptions) -> Result<u8> {
    Project::open(ctx)?.ensure(opts).await?;
    Ok(crate::error::EXIT_OK)
}

/// `ocx opencode ARGS` and `ocx exec CMD`: ensures the image, then runs in it; returns the
/// child's exit code (wrapped into a byte the way a shell shows it).
pub async fn run(ctx: &Context, command: Vec<String>) -> Result<u8> {
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
pub fn show_config(ctx: &Context) -> Result<u8> {
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
    reporter(ctx.progress).result(text, serde_json::Value::Array(rows));
    Ok(crate::error::EXIT_OK)
}
