//! The ocx workflows: `ocx build`, `ocx opencode`, `ocx exec` and `ocx config show`.

pub mod config;
pub mod dockerfile;
pub mod opencode;

use crate::backend::detect;
use crate::build::{BuildRequest, ImageInfo, Mount, Output, RunSpec};
use crate::engine::Engine;
use crate::error::{user_error, UserError};
use crate::exec::Runner;
use crate::fingerprint::{self, Fingerprint};
use crate::image_ref::ImageRef;
use crate::platform::Platform;
use crate::progress::{self, ProgressMode};
use anyhow::{Context as _, Result};
use camino::{Utf8Path, Utf8PathBuf};
use config::{Config, ConfigEnv, Flags};
use opencode::{Binary, Fetcher};
use std::collections::BTreeMap;
use std::ffi::OsString;
use std::io::IsTerminal;
use std::sync::Arc;

/// Provider credentials passed into the container by name (`-e NAME`), so their values never
/// appear in argv, logs or `--dry-run` output.
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

/// A resolved ocx run: config, engine and the concrete image names.
pub struct Plan {
    pub config: Config,
    pub engine: Engine,
    pub version: String,
    pub image: ImageRef,
    base: Base,
    vars: BTreeMap<String, String>,
    cache_dir: Utf8PathBuf,
}

pub fn plan(ctx: &Context) -> Result<Plan> {
    let config = config::load(&ctx.project, &ctx.env, &ctx.flags)?;
    let explicit = config.backend.map(|b| {
        let from = config
            .sources
            .get("backend")
            .map(|s| s.to_string())
            .unwrap_or_default();
        (b.name().to_string(), from)
    });
    let backend = detect::detect(
        explicit.as_ref().map(|(b, f)| (b.as_str(), f.as_str())),
        ctx.path_var().as_ref(),
    )?;
    let reporter: Arc<dyn progress::Reporter> = Arc::from(progress::reporter(ctx.progress));
    let engine = Engine::new(backend, Runner::new(reporter, ctx.dry_run));
    let cache_dir = crate::dirs::cache_home(&ctx.env.vars)
        .ok_or_else(|| {
            UserError("cannot find a cache directory: set HOME or XDG_CACHE_HOME".into())
        })?
        .join("ocx/opencode");
    let base = resolve_base(&config, &ctx.project, &ctx.env)?;
    Ok(Plan {
        config,
        engine,
        version: String::new(),
        image: base.image().clone(),
        base,
        vars: ctx.env.vars.clone(),
        cache_dir,
    })
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

impl Plan {
    fn fetcher(&self) -> Fetcher<'_> {
        Fetcher {
            source: &self.config.opencode_source,
            variant: self.config.opencode_variant,
            cache_dir: self.cache_dir.clone(),
            vars: &self.vars,
            runner: &self.engine.runner,
        }
    }

    /// The final image name: `ocx-<sanitized base>:<version>`, or `ocx:<version>` on the default base.
    fn final_image(&self) -> Result<ImageRef> {
        let repo = match &self.base {
            Base::Default(_) => "ocx".to_string(),
            b => format!("ocx-{}", b.image().sanitized_name()),
        };
        Ok(ImageRef::parse_deferred(&format!(
            "{repo}:{}",
            self.version
        ))?)
    }

    /// Makes the image current: one inspect when it already is, otherwise builds what is missing.
    pub async fn ensure(&mut self, opts: BuildOptions) -> Result<bool> {
        let runner = &self.engine.runner;
        self.version = if runner.dry_run()
            && self.config.opencode_version == config::OpencodeVersion::Latest
        {
            runner.note("opencode_version latest is resolved to a concrete version at build time");
            "latest".into()
        } else {
            self.fetcher()
                .resolve(&self.config.opencode_version, &self.config.platforms)
                .await?
        };
        self.image = self.final_image()?;
        let base = self.base.image().clone();
        let mut infos = self.engine.inspect(&[&base, &self.image]).await?;
        let final_info = infos.pop().unwrap_or_default();
        let mut base_info = infos.pop().unwrap_or_default();
        // If the engine found both images by these names it has accepted them as references
        // itself, and a no-op needs no grammar check (see ImageRef); anything else passes the
        // check before it builds or runs.
        if !(base_info.exists && final_info.exists) || opts.force || opts.rebuild_base {
            self.validate_refs(&base)?;
        }
        // dry-run cannot see the store: a base with no way to build it is assumed present
        if runner.dry_run() && matches!(self.base, Base::Image(_)) {
            base_info.exists = true;
        }
        if opts.rebuild_base && matches!(self.base, Base::Image(_)) {
            return user_error("--rebuild-base needs custom_base_dockerfile; without one ocx cannot rebuild the base");
        }
        if !base_info.exists && matches!(self.base, Base::Image(_)) {
            return Err(missing_base(&base).into());
        }
        // verified binaries first: a bad download must not leave a freshly built base behind
        let binaries = self.binaries().await?;
        if !base_info.exists || opts.rebuild_base {
            base_info = self.build_base(&base, base_info.exists).await?;
        }
        let rendered = dockerfile::render(&dockerfile::Render {
            base: &base,
            version: &self.version,
            username: &self.config.username,
            uid: self.config.uid,
            gid: self.config.gid,
        });
        let fp = self.fingerprint(&rendered, &base_info, &binaries);
        if final_info.exists
            && final_info.label(fingerprint::LABEL) == Some(fp.as_str())
            && !opts.force
        {
            runner
                .reporter()
                .info(&format!("{} is up to date", self.image));
            return Ok(false);
        }
        self.validate_refs(&base)?;
        self.build_final(&rendered, &binaries, fp).await?;
        if !runner.dry_run() {
            runner.reporter().info(&format!("built {}", self.image));
        }
        Ok(true)
    }

    fn validate_refs(&self, base: &ImageRef) -> Result<(), UserError> {
        self.config.validate_base()?;
        base.validated()?;
        self.image.validated()?;
        Ok(())
    }

    async fn build_base(&self, base: &ImageRef, existed: bool) -> Result<ImageInfo> {
        let runner = &self.engine.runner;
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
                let d = Utf8PathBuf::from_path_buf(dir.path().to_owned())
                    .map_err(|_| anyhow::anyhow!("non-UTF-8 temp dir"))?;
                std::fs::write(d.join("Dockerfile"), dockerfile::DEFAULT_BASE_DOCKERFILE)?;
                _default_ctx = dir;
                (d.join("Dockerfile"), d)
            }
        };
        runner.reporter().info(&format!(
            "{} base image {base} from {dockerfile}",
            if existed { "rebuilding" } else { "building" }
        ));
        let mut req = BuildRequest::new(context, dockerfile, base.clone());
        req.platforms = self.config.platforms.clone();
        req.output = Output::Load;
        self.engine
            .build(&req)
            .await
            .context(format!("building the base image {base}"))?;
        if runner.dry_run() {
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

    async fn binaries(&self) -> Result<Vec<Binary>> {
        let fetcher = self.fetcher();
        let mut out = Vec::new();
        for p in &self.config.platforms {
            if self.engine.runner.dry_run() {
                match fetcher.cached(&self.version, *p) {
                    Some(b) => out.push(b),
                    None => {
                        let asset = opencode::asset_name(*p, self.config.opencode_variant);
                        self.engine.runner.note(&format!(
                            "download {asset} {} from {} and verify its checksum",
                            self.version, self.config.opencode_source
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
                    .fetch(&self.version, *p)
                    .await
                    .with_context(|| format!("getting opencode {} for {p}", self.version))?,
            );
        }
        Ok(out)
    }

    fn fingerprint(&self, rendered: &str, base: &ImageInfo, binaries: &[Binary]) -> String {
        let mut f = Fingerprint::new()
            .add("dockerfile", rendered)
            .add("setup-user.sh", dockerfile::SETUP_USER_SCRIPT)
            .add("base-id", base.id.as_deref().unwrap_or(""))
            .add("version", &self.version)
            .add("username", self.config.username.as_str())
            .add("uid", self.config.uid.to_string())
            .add("gid", self.config.gid.to_string())
            .add("platforms", Platform::join(&self.config.platforms));
        for b in binaries {
            f = f.add(&b.asset, &b.published);
        }
        f.finish()
    }

    async fn build_final(&self, rendered: &str, binaries: &[Binary], fp: String) -> Result<()> {
        // a small generated context: the project directory is never sent to the engine
        let dir = tempfile::Builder::new().prefix("ocx-context-").tempdir()?;
        let mut ctx = Utf8PathBuf::from_path_buf(dir.path().to_owned())
            .map_err(|_| anyhow::anyhow!("non-UTF-8 temp dir"))?;
        if let Some(keep) = self.vars.get(ENV_KEEP_CONTEXT) {
            ctx = Utf8PathBuf::from(keep);
            std::fs::create_dir_all(&ctx)
                .with_context(|| format!("creating {ENV_KEEP_CONTEXT} {ctx}"))?;
        }
        let ctx = if self.engine.runner.dry_run() {
            Utf8PathBuf::from("<generated-context>")
        } else {
            ctx
        };
        if !self.engine.runner.dry_run() {
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
        let mut req = BuildRequest::new(ctx.clone(), ctx.join("Dockerfile"), self.image.clone());
        req.platforms = self.config.platforms.clone();
        req.labels.insert(fingerprint::LABEL.into(), fp);
        req.output = Output::Load;
        req.local_parent = true;
        self.engine
            .build(&req)
            .await
            .with_context(|| format!("building {}", self.image))?;
        drop(dir);
        Ok(())
    }

    /// The container spec for running `command` on the project.
    pub fn run_spec(&self, project: &Utf8Path, command: Vec<String>) -> Result<RunSpec> {
        let home = if self.config.uid == 0 {
            Utf8PathBuf::from("/root")
        } else {
            Utf8PathBuf::from(format!("/home/{}", self.config.username.as_str()))
        };
        let mut mounts = vec![Mount {
            host: project.to_owned(),
            container: project.to_owned(),
            read_only: false,
        }];
        if let Some(host_home) = crate::dirs::home(&self.vars) {
            for rel in [".config/opencode", ".local/share/opencode"] {
                let host = host_home.join(rel);
                // created by us so the engine doesn't create them root-owned
                if !self.engine.runner.dry_run() && !host.exists() {
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
        let tty = std::io::stdin().is_terminal();
        Ok(RunSpec {
            image: self.image.to_string(),
            command,
            mounts,
            workdir: Some(project.to_owned()),
            env_names,
            user: Some((self.config.uid, self.config.gid)),
            tty,
            interactive: true,
            platform: None,
            remove: true,
        })
    }
}

fn missing_base(base: &ImageRef) -> UserError {
    UserError(format!(
        "custom base image {base} not found and no custom_base_dockerfile configured; pull or build {base} first, or set custom_base_dockerfile"
    ))
}

/// `ocx build`
pub async fn build(ctx: &Context, opts: BuildOptions) -> Result<()> {
    let mut plan = plan(ctx)?;
    plan.ensure(opts).await?;
    Ok(())
}

/// `ocx opencode ARGS` and `ocx exec CMD`: ensures the image, then runs in it; returns the
/// child's exit code.
pub async fn run(ctx: &Context, command: Vec<String>) -> Result<i32> {
    let mut plan = plan(ctx)?;
    plan.ensure(BuildOptions::default()).await?;
    let spec = plan.run_spec(&ctx.project, command)?;
    plan.engine.run_interactive(&spec).await
}

/// `ocx config show`
pub fn show_config(ctx: &Context) -> Result<String> {
    Ok(config::load(&ctx.project, &ctx.env, &ctx.flags)?.show())
}
