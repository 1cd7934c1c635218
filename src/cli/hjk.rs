//! `hjk images build | release | merge | verify | digest | list | resolve | boot` (Headjack):
//! clap definitions and one call per command into [`crate::hjk::commands`].

// The doc comments of the clap definitions are the --help text, where `<version>` and a URL
// are meant as written, not as HTML or a link.
#![allow(rustdoc::invalid_html_tags, rustdoc::bare_urls)]

use crate::hjk::commands::{self, BootArgs, ResolveArgs, VerifyArgs};
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

/// Which variants a build or release covers: one with its parents, or all.
#[derive(Args, Debug, Clone)]
pub struct Which {
    /// The variant, with its parents.
    #[arg(long, conflicts_with = "all", required_unless_present = "all")]
    pub variant: Option<String>,
    /// Every variant in variants.yaml, parents first.
    #[arg(long)]
    pub all: bool,
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
    #[arg(long, value_parser = crate::version::Version::parse)]
    pub version: Option<crate::version::Version>,
    /// Override the root variant's BASE_IMAGE (a mirror, or a local image in tests).
    #[arg(long)]
    pub base_image: Option<String>,
}

/// Flags `release` and `merge` share: auth, metadata, gates.
#[derive(Args, Debug, Clone)]
pub struct ReleaseArgs {
    /// Registry credentials: docker-config (what the engine is logged in with), ghcr
    /// (GITHUB_ACTOR + GITHUB_TOKEN), gcp (gcloud access token), op (1Password refs from
    /// images.auth.op), raw (user:password from HJK_REGISTRY_CREDS or --creds-stdin).
    /// Default: HJK_AUTH, then images.auth.mode, then docker-config.
    #[arg(long)]
    pub auth: Option<String>,
    /// With --auth raw: read user:password from stdin.
    #[arg(long)]
    pub creds_stdin: bool,
    /// Write what was published (digests, tags, parents, gates) as JSON to this file.
    #[arg(long)]
    pub metadata_file: Option<Utf8PathBuf>,
    /// Gate: sign each index and its platforms (cosign) before any tag moves.
    #[arg(long)]
    pub sign: bool,
    /// Gate: an SPDX SBOM per platform image (syft), attested, before any tag moves.
    #[arg(long)]
    pub sbom: bool,
    /// Gate: scan each platform image (trivy); a finding moves no tag.
    #[arg(long)]
    pub scan: bool,
    /// The trivy severities that fail --scan, comma-separated.
    #[arg(long, value_name = "LIST")]
    pub scan_severity: Option<String>,
    /// What --scan looks for, trivy's scanners, comma-separated: vuln (needs trivy's
    /// vulnerability DB) and/or secret (runs offline). Default: vuln,secret.
    #[arg(long, value_name = "LIST")]
    pub scanners: Option<String>,
    /// Where trivy downloads its vulnerability DB from (a mirror of ghcr.io/aquasecurity/trivy-db),
    /// before anything is built.
    #[arg(long, value_name = "REPO")]
    pub scan_db_repository: Option<String>,
    /// A trivy cache directory holding the vulnerability DB (db/trivy.db), used as it is unless
    /// --scan-db-repository is given too.
    #[arg(long, value_name = "DIR")]
    pub scan_cache_dir: Option<Utf8PathBuf>,
    /// cosign's --tlog-upload: false keeps signatures and attestations out of the transparency
    /// log (for a log that cannot be reached; needs COSIGN_KEY). Default: true (upload).
    #[arg(
        long,
        value_name = "BOOL",
        value_enum,
        num_args = 0..=1,
        default_missing_value = "true",
        require_equals = true
    )]
    pub tlog_upload: Option<TlogUpload>,
    /// With --sign and COSIGN_KEY: the cosign public key the signatures must verify with; a
    /// COSIGN_KEY that is not its private half is refused before anything is built.
    #[arg(long, value_name = "PATH")]
    pub key: Option<Utf8PathBuf>,
    /// Where --sbom and --scan write SBOMs and scan reports.
    #[arg(long, default_value = "target/release-gates")]
    pub gates_dir: Utf8PathBuf,
    /// Move public tags even when that drops platforms their index lists or re-points an
    /// already released <variant>-<version> (both are refused by default).
    #[arg(long)]
    pub force_tags: bool,
    /// Gate: boot each variant the way Headjack's runner would (as `hjk images boot` does, on
    /// the platforms this machine runs natively); one that does not come up moves no tag.
    #[arg(long)]
    pub boot: bool,
    /// How long each --boot may take, in seconds (default 180).
    #[arg(long, value_name = "SECONDS")]
    pub boot_timeout: Option<u64>,
    /// How long connecting to the registry, and each wait for its answer, may take (default
    /// 60). A registry that fails a request with 5xx or a dropped connection is asked again.
    #[arg(long, env = "HJK_REGISTRY_TIMEOUT", value_name = "SECONDS",
          value_parser = clap::value_parser!(u64).range(1..=86400))]
    pub registry_timeout: Option<u64>,
}

/// `--tlog-upload=true|false`, cosign's flag.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlogUpload {
    /// Upload signatures and attestations to the transparency log (cosign's default).
    True,
    /// Keep them out of it; verify with --insecure-ignore-tlog.
    False,
}

// `hjk images build`: its flags, which hjk::settings::BuildSettings resolves.
#[derive(Args, Debug)]
pub struct BuildCommand {
    #[command(flatten)]
    pub which: Which,
    #[command(flatten)]
    pub engine: EngineArgs,
    /// Push the tags after every build succeeded.
    #[arg(long)]
    pub push: bool,
    /// Build every layer again instead of reusing the engine's cache.
    #[arg(long)]
    pub no_cache: bool,
    /// Print every engine command that would run and run none (read-only queries such as
    /// inspect still run, so the plan is the real one).
    #[arg(long)]
    pub dry_run: bool,
    /// Keep building the other platforms and variants after a failure.
    #[arg(long)]
    pub no_fastfail: bool,
    /// Import the build cache from, and export it to, this registry repository (one tag per
    /// variant), so a machine that starts empty rebuilds only what changed.
    #[arg(long, value_name = "REPO")]
    pub cache_repo: Option<String>,
    /// Progress output: auto (a bar on a terminal), plain, or json (one event per line).
    #[arg(long, value_enum, default_value = "auto")]
    pub progress: ProgressMode,
}

// `hjk images release`: its flags, which hjk::settings::ReleaseSettings resolves.
#[derive(Args, Debug)]
pub struct ReleaseCommand {
    #[command(flatten)]
    pub which: Which,
    #[command(flatten)]
    pub engine: EngineArgs,
    #[command(flatten)]
    pub release: ReleaseArgs,
    /// Stop after pushing this machine's per-platform images (no index, no tags); combine
    /// the metadata files of several machines with `hjk images merge`.
    #[arg(long)]
    pub push_by_digest: bool,
    /// docker buildx: the builder to use (a remote BuildKit or Kubernetes driver).
    #[arg(long)]
    pub builder: Option<String>,
    /// podman: the `podman system connection` to use (CONTAINER_HOST is honoured too).
    #[arg(long)]
    pub connection: Option<String>,
    /// Build every layer again and push new images even if the registry has them.
    #[arg(long)]
    pub no_cache: bool,
    /// Require a provenance attestation (SLSA, mode=max) per image; by default each image
    /// gets one where the engine can make it (docker with buildx).
    #[arg(long, conflicts_with = "no_provenance")]
    pub provenance: bool,
    /// Make no provenance attestations.
    #[arg(long)]
    pub no_provenance: bool,
    /// The time written into every image and onto every file in it, so the same inputs
    /// give the same digests. Default: SOURCE_DATE_EPOCH, else the time of the last commit
    /// that changed the images directory.
    #[arg(long, value_name = "SECONDS")]
    pub source_date_epoch: Option<u64>,
    /// Import the build cache from, and export it to, this registry repository (one tag per
    /// variant and platform), so a machine that starts empty rebuilds only what changed.
    #[arg(long, value_name = "REPO")]
    pub cache_repo: Option<String>,
    /// Keep the local images built under their stage-* tags (by default they are removed
    /// once the release ends; the registry keeps its copies).
    #[arg(long)]
    pub keep_stage: bool,
    /// Print the engine commands that would run; registry reads and inspect still run.
    #[arg(long)]
    pub dry_run: bool,
    /// Progress output: auto (a bar on a terminal), plain, or json (one event per line).
    #[arg(long, value_enum, default_value = "auto")]
    pub progress: ProgressMode,
}

// `hjk images merge`: its arguments, which hjk::settings::MergeSettings resolves.
#[derive(Args, Debug)]
pub struct MergeCommand {
    /// The metadata files, one per machine.
    #[arg(required = true)]
    pub files: Vec<Utf8PathBuf>,
    /// The release version (tags `<variant>-<version>`): the one the files' images were
    /// built with, which is the default; another one is refused.
    #[arg(long, value_parser = crate::version::Version::parse)]
    pub version: Option<crate::version::Version>,
    /// Engine for the credential tools and gates (default: runtime.name, then the first on PATH).
    #[arg(long)]
    pub backend: Option<String>,
    /// Directory holding variants.yaml, for each variant's .trivyignore (optional here).
    #[arg(long, env = "HJK_IMAGES_DIR", default_value = "images")]
    pub images_dir: Utf8PathBuf,
    #[command(flatten)]
    pub release: ReleaseArgs,
    /// Progress output: auto (a bar on a terminal), plain, or json (one event per line).
    #[arg(long, value_enum, default_value = "auto")]
    pub progress: ProgressMode,
}

#[derive(Subcommand, Debug)]
pub enum ImagesCommand {
    /// Build a variant and its ancestors, skipping the ones that are current.
    Build(BuildCommand),
    /// Publish variants by digest, parents first: build each platform, push it, make the
    /// indexes, verify them, then move the public tags. Rebuilds nothing whose inputs the
    /// registry already has.
    Release(ReleaseCommand),
    /// Make the indexes and tags of a release from the metadata files of `release
    /// --push-by-digest` runs on several machines (one per platform).
    Merge(MergeCommand),
    /// Check what a release promises before trusting a pulled image: the signature of the index
    /// and of every platform manifest, each platform's signed SBOM attestation, BuildKit's
    /// provenance where the index lists one, and that each child's base is a signed parent.
    /// Prints a table of image x check; exits 0 only when all pass.
    Verify {
        /// Variants (`dind`: the tag <registry>:dind) or image references (by tag or
        /// @sha256: digest).
        #[arg(
            required_unless_present = "all",
            conflicts_with = "all",
            value_name = "VARIANT|REFERENCE"
        )]
        targets: Vec<String>,
        /// Every variant in --images-dir's variants.yaml, parents first.
        #[arg(long)]
        all: bool,
        /// Directory holding variants.yaml (for --all).
        #[arg(long, env = "HJK_IMAGES_DIR", default_value = "images")]
        images_dir: Utf8PathBuf,
        /// Read a variant under its versioned tag <registry>:<variant>-<version> instead.
        #[arg(long, value_parser = crate::version::Version::parse)]
        version: Option<crate::version::Version>,
        /// Repository a variant name is looked up in (default: images.registry).
        #[arg(long)]
        registry: Option<String>,
        /// Registry credentials, as for release (default: HJK_AUTH, then images.auth.mode,
        /// then docker-config).
        #[arg(long)]
        auth: Option<String>,
        /// With --auth raw: read user:password from stdin.
        #[arg(long)]
        creds_stdin: bool,
        /// The cosign public key the images were signed with.
        #[arg(long, value_name = "PATH", conflicts_with_all = ["certificate_identity_regexp", "certificate_oidc_issuer"])]
        key: Option<Utf8PathBuf>,
        /// Keyless: a regular expression the signing certificate's identity must match, e.g.
        /// ^https://github.com/gilmanlab/agent-images/
        #[arg(long, value_name = "REGEXP", requires = "certificate_oidc_issuer")]
        certificate_identity_regexp: Option<String>,
        /// Keyless: the OIDC issuer of the signing certificate, e.g.
        /// https://token.actions.githubusercontent.com
        #[arg(long, value_name = "URL", requires = "certificate_identity_regexp")]
        certificate_oidc_issuer: Option<String>,
        /// For signatures a release made with --tlog-upload=false: do not look for them in the
        /// transparency log (cosign's flag).
        #[arg(long)]
        insecure_ignore_tlog: bool,
        /// Engine whose login files hold the credentials (--auth docker-config).
        #[arg(long)]
        backend: Option<String>,
        /// Print the rows as JSON.
        #[arg(long)]
        json: bool,
        /// How long connecting to the registry, and each wait for its answer, may take (default
        /// 60).
        #[arg(long, env = "HJK_REGISTRY_TIMEOUT", value_name = "SECONDS",
              value_parser = clap::value_parser!(u64).range(1..=86400))]
        registry_timeout: Option<u64>,
    },
    /// Print a variant's digest: the index digest from a release metadata file, else the local
    /// image's digest (or id).
    Digest {
        /// The variant whose digest to print.
        #[arg(long)]
        variant: String,
        #[command(flatten)]
        engine: EngineArgs,
        /// A release metadata file to read the digest from, if it has the variant.
        #[arg(long)]
        metadata_file: Option<Utf8PathBuf>,
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
    /// Start an image the way Headjack's runner would (its io.headjack.init and the engine's
    /// flags label), wait until it is up (systemd `running`; for dind also `docker info` and a
    /// container run inside), then remove it. Exit 1 with the failed units and the journal's
    /// last lines when it does not come up.
    Boot {
        /// A variant (what `hjk images build` made for it) or an image reference (booted as it is).
        target: String,
        /// Engine: docker, podman or container (Apple). Default: runtime.name, then the first on PATH.
        #[arg(long)]
        backend: Option<String>,
        /// Directory holding variants.yaml (for a variant name).
        #[arg(long, env = "HJK_IMAGES_DIR", default_value = "images")]
        images_dir: Utf8PathBuf,
        /// Repository of the variant's tag `<registry>:<variant>` (default: images.registry).
        #[arg(long)]
        registry: Option<String>,
        /// The platform to run, e.g. linux/arm64 (emulated where this machine is another).
        #[arg(long)]
        platform: Option<String>,
        /// How long the boot may take, in seconds (default 180).
        #[arg(long, value_name = "SECONDS")]
        timeout: Option<u64>,
        /// A unit allowed to fail (systemd `degraded` by it alone passes); repeatable. The image's
        /// io.headjack.boot.allow-failed label adds its own.
        #[arg(long, value_name = "UNIT")]
        allow_failed: Vec<String>,
        /// Print what the boot showed as an object.
        #[arg(long)]
        json: bool,
    },
}

pub fn main() -> ExitCode {
    super::main(run)
}

pub(crate) async fn run(cli: Cli) -> anyhow::Result<u8> {
    let vars = crate::dirs::process_env();
    let Top::Images { command } = cli.command;
    match command {
        ImagesCommand::Build(cmd) => commands::build(&vars, cmd).await,
        ImagesCommand::Release(cmd) => commands::release(&vars, cmd).await,
        ImagesCommand::Merge(cmd) => commands::merge(&vars, cmd).await,
        ImagesCommand::Verify {
            targets,
            all,
            images_dir,
            version,
            registry,
            auth,
            creds_stdin,
            key,
            certificate_identity_regexp,
            certificate_oidc_issuer,
            insecure_ignore_tlog,
            backend,
            json,
            registry_timeout,
        } => {
            let args = VerifyArgs {
                targets,
                all: all.then_some(images_dir),
                version,
                registry,
                backend,
                auth,
                creds_stdin,
                key,
                identity_regexp: certificate_identity_regexp,
                oidc_issuer: certificate_oidc_issuer,
                ignore_tlog: insecure_ignore_tlog,
                json,
                registry_timeout,
            };
            commands::verify(&vars, args).await
        }
        ImagesCommand::Digest {
            variant,
            engine,
            metadata_file,
        } => commands::digest(&vars, &engine, variant, metadata_file.as_deref()).await,
        ImagesCommand::List { engine, json } => commands::list(&vars, &engine, json).await,
        ImagesCommand::Resolve {
            image,
            config,
            project,
            build,
            backend,
            json,
        } => {
            let args = ResolveArgs {
                project: project.as_deref(),
                image: image.as_deref(),
                config: config.as_deref(),
                backend: backend.as_deref(),
                build,
                json,
            };
            commands::resolve(&vars, args).await
        }
        ImagesCommand::Boot {
            target,
            backend,
            images_dir,
            registry,
            platform,
            timeout,
            allow_failed,
            json,
        } => {
            let args = BootArgs {
                target,
                backend,
                images_dir,
                registry,
                platform,
                timeout_seconds: timeout,
                allow_failed,
                json,
            };
            commands::boot(&vars, args).await
        }
    }
}
