//! The seam between a release and its gates (`--sbom`, `--sign`, `--scan`, `--boot`): between
//! "every image and index is in the registry by digest, untagged" and "public tags move". The
//! release workflow calls [`Gates::check`] before anything is built or pushed (the tools must be
//! on PATH) and [`Gates::run`] after every index was pushed and verified; only the variants the
//! promotion rule lets through get their tags. The gates themselves (syft, cosign, trivy, the
//! promotion rule) live in [`tools`] and [`run`]; this module turns a release's flags and
//! metadata into that module's inputs, and its report back into the metadata file. The boot
//! gate runs here, first ([`boot_variants`], through [`crate::hjk::boot`]): a variant that does
//! not boot is held exactly like one whose scan failed, and is not signed.

pub mod run;
pub mod tools;

use self::run::{self as sc_gates, BootResult, Promotion, Published, PublishedVariant, Verdict};
use self::tools::{self as sc, GateOptions, Tools};
use super::auth::Credentials;
use super::metadata::Metadata;
use crate::engine::Engine;
use crate::error::UserError;
use crate::hjk::boot::{self, BootFailed, BootOptions};
use crate::image_ref::ImageRef;
use crate::platform::Platform;
use anyhow::Result;
use camino::{Utf8Path, Utf8PathBuf};
use std::collections::BTreeMap;

/// The gates of one release, checked and ready to run.
pub(crate) struct Gates {
    opts: GateOptions,
    tools: Tools,
    /// `--key`'s public key (its key material), to compare with `COSIGN_KEY`'s.
    key: Option<(Utf8PathBuf, String)>,
}

/// A flag that only means something with a gate that was not asked for.
fn needs_gate(flag: &str, given: bool, gate_on: bool, gate: &str) -> Result<(), UserError> {
    if given && !gate_on {
        return Err(UserError::setting(format!(
            "{flag} is for {gate}, which this release does not run: add {gate} or leave {flag} out"
        )));
    }
    Ok(())
}

impl GateOptions {
    /// The gate flags of `release` and `merge` (`--sign`, `--sbom`, `--scan`, `--boot` and how),
    /// with `COSIGN_KEY` from `vars`, as the one value the gates run with. A flag that only means
    /// something with a gate that was not asked for is refused. Without a gate nothing else is
    /// read (`--scan-severity` alone is not checked).
    pub(crate) fn resolve(
        args: &crate::cli::hjk::ReleaseArgs,
        vars: &BTreeMap<String, String>,
    ) -> Result<GateOptions, UserError> {
        needs_gate("--scanners", args.scanners.is_some(), args.scan, "--scan")?;
        needs_gate(
            "--scan-db-repository",
            args.scan_db_repository.is_some(),
            args.scan,
            "--scan",
        )?;
        needs_gate(
            "--scan-cache-dir",
            args.scan_cache_dir.is_some(),
            args.scan,
            "--scan",
        )?;
        needs_gate("--key", args.key.is_some(), args.sign, "--sign")?;
        needs_gate(
            "--tlog-upload",
            args.tlog_upload.is_some(),
            args.sign,
            "--sign",
        )?;
        let mut opts = GateOptions::none(args.gates_dir.clone());
        opts.boot = args.boot.then(|| BootOptions {
            timeout: args
                .boot_timeout
                .map(std::time::Duration::from_secs)
                .unwrap_or(boot::DEFAULT_TIMEOUT),
            ..Default::default()
        });
        if !(args.sign || args.sbom || args.scan || args.boot) {
            return Ok(opts);
        }
        let boot = opts.boot.take();
        let mut opts = GateOptions::new(
            args.sbom,
            args.sign,
            args.scan,
            args.gates_dir.clone(),
            args.scan_severity.as_deref(),
            vars,
        )?;
        opts.boot = boot;
        if let Some(s) = &args.scanners {
            opts.scanners = sc::parse_scanners(s)?;
        }
        opts.trivy_db = sc::TrivyDb {
            repository: args.scan_db_repository.clone(),
            cache_dir: args.scan_cache_dir.clone(),
        };
        opts.tlog_upload = args
            .tlog_upload
            .is_none_or(|t| t == crate::cli::hjk::TlogUpload::True);
        opts.key = args.key.clone();
        Ok(opts)
    }
}

impl Gates {
    /// Checks the options and finds the tools on PATH, before anything is built or pushed
    /// (a missing tool is exit 2 with an install hint). `None` when no gate was asked for.
    pub(crate) fn check(
        mut opts: GateOptions,
        plain_http: bool,
        vars: &BTreeMap<String, String>,
    ) -> Result<Option<Gates>, UserError> {
        if !opts.any() {
            return Ok(None);
        }
        opts.plain_http = plain_http;
        let path = vars.get("PATH").map(std::ffi::OsString::from);
        let tools = sc::check_tools(&opts, path.as_ref())?;
        if opts.scans_vulns() && opts.trivy_db.offline() {
            let dir = opts.trivy_db.cache_dir.clone().unwrap_or_default();
            let db = sc::TrivyDb::db_file(&dir);
            if !db.is_file() {
                return Err(sc::no_db(&format!(
                    "--scan-cache-dir {dir} holds none ({db} is missing)"
                )));
            }
        }
        let key = match (&opts.key, opts.sign) {
            (Some(k), true) => Some((k.clone(), read_public_key(k)?)),
            _ => None,
        };
        if opts.sign {
            match opts.signing {
                sc::Signing::Key => {}
                sc::Signing::Keyless if key.is_some() => {
                    let path = key.as_ref().map(|(p, _)| p.as_str()).unwrap_or_default();
                    return Err(UserError::signing(format!(
                        "--key {} names the public key to sign with, but {} is not set: put the private key (cosign generate-key-pair) in {} and its password in COSIGN_PASSWORD; nothing was built or pushed",
                        path,
                        sc::ENV_COSIGN_KEY,
                        sc::ENV_COSIGN_KEY
                    )));
                }
                sc::Signing::Keyless if !opts.tlog_upload => {
                    return Err(UserError::signing(
                        "--tlog-upload=false needs a signing key: a keyless signature is checked against the transparency log entry made when it was signed (its certificate lives 10 minutes); set COSIGN_KEY (and COSIGN_PASSWORD), or upload to the log",
                    ));
                }
                sc::Signing::Keyless => {}
            }
        }
        Ok(Some(Gates { opts, tools, key }))
    }

    /// What the gates must learn from their tools before anything is built or pushed (after
    /// [`Gates::check`]): with a signing key, its public half (`cosign public-key`: a password
    /// that does not open `COSIGN_KEY`, or a key that is not `--key`'s, is exit 2), kept as
    /// `<gates-dir>/cosign.pub` and used to verify every signature the release makes; with the
    /// vuln scanner, trivy's DB, downloaded once (none to be had is exit 2: the scan fails
    /// closed).
    pub(crate) async fn prepare(&mut self, engine: &Engine) -> Result<()> {
        if self.opts.sign && self.opts.signing == sc::Signing::Key {
            let out = engine.tool(&sc::public_key(&self.tools).may_fail()).await?;
            let derived = sc::public_key_body(&out.stdout).filter(|_| out.success);
            let Some(body) = derived else {
                let last = out.tail().last().cloned().unwrap_or_default();
                return Err(UserError::signing(format!(
                    "cosign cannot read the signing key in {} ({}): check {} and COSIGN_PASSWORD; nothing was built or pushed",
                    sc::ENV_COSIGN_KEY,
                    last.trim(),
                    sc::ENV_COSIGN_KEY
                ))
                .into());
            };
            let path = match &self.key {
                Some((path, want)) if *want != body => {
                    return Err(UserError::signing(format!(
                        "the signing key in {} does not match --key {path}: its public key is another one; sign with the private key of {path}, or pass the public key of the one in {}; nothing was built or pushed",
                        sc::ENV_COSIGN_KEY,
                        sc::ENV_COSIGN_KEY
                    ))
                    .into());
                }
                Some((path, _)) => path.clone(),
                None if engine.dry_run() => self.opts.out_dir.join("cosign.pub"),
                None => {
                    let path = self.opts.out_dir.join("cosign.pub");
                    std::fs::create_dir_all(&self.opts.out_dir).map_err(|e| {
                        UserError::file(format!("cannot create {}: {e}", self.opts.out_dir))
                    })?;
                    std::fs::write(&path, &out.stdout)
                        .map_err(|e| UserError::file(format!("cannot write {path}: {e}")))?;
                    path
                }
            };
            self.opts.check_signatures = Some(sc::VerifyOptions {
                trust: sc::Trust::Key(path),
                ignore_tlog: !self.opts.tlog_upload,
                plain_http: self.opts.plain_http,
            });
        }
        if self.opts.scans_vulns() && !self.opts.trivy_db.offline() {
            let inv = sc::download_db(&self.tools, &self.opts.trivy_db).may_fail();
            let out = engine.tool(&inv).await?;
            if !out.success {
                let all = format!("{}\n{}", out.stdout, out.stderr);
                return Err(sc::no_db(&sc::db_failure(&all)).into());
            }
        }
        Ok(())
    }

    /// The gates asked for, by flag name (`scan`, `sbom`, `sign`): what a held marker records
    /// and what a later release must run again to lift it.
    pub(crate) fn names(&self) -> Vec<&'static str> {
        let o = &self.opts;
        [
            (o.scan, "scan"),
            (o.sbom, "sbom"),
            (o.sign, "sign"),
            (o.boot.is_some(), "boot"),
        ]
        .into_iter()
        .filter_map(|(on, n)| on.then_some(n))
        .collect()
    }

    /// Runs the gates on the staged release (`meta` holds every index and per-platform digest),
    /// records SBOM paths, signatures and scan verdicts in it, and returns which variants may
    /// move their tags. `dirs`: each variant's directory (its `.trivyignore`), where known.
    pub(crate) async fn run(
        &self,
        engine: &Engine,
        meta: &mut Metadata,
        dirs: &BTreeMap<String, Utf8PathBuf>,
        creds: Option<&Credentials>,
    ) -> Result<Promotion> {
        let published = Published {
            registry: ImageRef::parse(&meta.registry)?,
            variants: meta
                .variants
                .iter()
                .map(|v| {
                    Ok(PublishedVariant {
                        name: v.name.clone(),
                        parent: v.parent.clone(),
                        dir: dirs.get(&v.name).cloned(),
                        index_digest: v.index_digest.clone().ok_or_else(|| {
                            UserError::metadata(format!(
                                "{}: the metadata names no index digest",
                                v.name
                            ))
                        })?,
                        platforms: v
                            .platforms
                            .iter()
                            .map(|(p, r)| (*p, r.digest.clone()))
                            .collect(),
                    })
                })
                .collect::<Result<_, UserError>>()?,
        };
        let boots = match &self.opts.boot {
            Some(b) => {
                let stage_tags: BTreeMap<(String, Platform), String> = meta
                    .variants
                    .iter()
                    .flat_map(|v| {
                        v.platforms
                            .iter()
                            .map(|(p, r)| ((v.name.clone(), *p), r.stage_tag.clone()))
                    })
                    .collect();
                Some(boot_variants(engine, &published, &stage_tags, b).await?)
            }
            None => None,
        };
        let host = published.registry.registry().to_string();
        let auth = ToolAuth::new(creds, &host)?;
        if self.opts.sign && !self.opts.tlog_upload {
            engine.reporter().warn(
                "--tlog-upload=false: the signatures and SBOM attestations are not in a transparency log; verify them with `hjk images verify --key <public key> --insecure-ignore-tlog`",
            );
        }
        let report = sc_gates::run_gates(
            engine,
            &published,
            &self.opts,
            &self.tools,
            auth.as_ref().map(|a| a.dir.as_path()),
            boots.as_ref(),
        )
        .await?;
        engine.reporter().info(&report.summary());
        for v in &mut meta.variants {
            if let Some(g) = report.get(&v.name) {
                v.sbom = g.sboms.iter().map(|s| s.path.to_string()).collect();
                v.signed = g.signed;
                v.scan = match g.scan.verdict {
                    Verdict::Passed => Some("passed".into()),
                    Verdict::Failed => Some("failed".into()),
                    Verdict::Error => Some("error".into()),
                    Verdict::Skipped => None,
                };
                v.boot = g.boot.as_ref().map(|b| match (&b.reason, b.passed) {
                    (_, true) => "passed".to_string(),
                    (Some(r), false) => r.clone(),
                    (None, false) => "failed".to_string(),
                });
            }
        }
        Ok(sc_gates::promotion(&published, &report))
    }
}

/// The boot gate: each variant's platform images that this machine runs natively, booted by
/// digest (pulled if the engine does not have them) the way `hjk images boot` boots them.
/// Platforms this machine would only emulate are skipped and say so (systemd under qemu is
/// not a verdict on the image; docs/hjk-images.md, "arm64 under qemu"). A boot that fails is the variant's
/// reason to be held; only an interruption stops the release.
pub(crate) async fn boot_variants(
    engine: &Engine,
    published: &Published,
    stage_tags: &BTreeMap<(String, Platform), String>,
    opts: &BootOptions,
) -> Result<BTreeMap<String, BootResult>> {
    let mut out = BTreeMap::new();
    let host = Platform::host();
    for v in &published.variants {
        let mut r = BootResult::default();
        for (platform, digest) in &v.platforms {
            if *platform != host {
                r.skipped.push(*platform);
                continue;
            }
            let image =
                ImageRef::parse(&sc::by_digest(published.registry.name_as_written(), digest))?;
            let staged = stage_tags
                .get(&(v.name.clone(), *platform))
                .filter(|t| !t.is_empty())
                .map(|t| published.registry.with_tag(t))
                .transpose()?;
            engine
                .reporter()
                .info(&format!("booting {} ({platform})", v.name));
            match boot_one(engine, &image, staged.as_ref(), opts).await {
                Ok(()) => r.booted.push(*platform),
                Err(e) if crate::error::interruption(&e).is_some() => return Err(e),
                Err(e) => {
                    let why = match e.downcast_ref::<BootFailed>() {
                        Some(f) => f.short(),
                        None => format!(
                            "boot could not run: {}",
                            format!("{e:#}").lines().next().unwrap_or("")
                        ),
                    };
                    engine
                        .reporter()
                        .warn(&format!("{} ({platform}): {e:#}", v.name));
                    r.reason = Some(format!("{platform}: {why}"));
                }
            }
        }
        r.passed = r.reason.is_none();
        out.insert(v.name.clone(), r);
    }
    Ok(out)
}

/// Boots one published image: the engine's local copy (under its content-addressed staging
/// tag, which this machine built and pushed, or by digest), else pulled by digest.
async fn boot_one(
    engine: &Engine,
    image: &ImageRef,
    staged: Option<&ImageRef>,
    opts: &BootOptions,
) -> Result<()> {
    let mut names = vec![image];
    names.extend(staged);
    let local = engine
        .inspect(&names)
        .await?
        .into_iter()
        .zip(names.iter().copied())
        .find(|(i, _)| i.exists);
    let (info, name) = match local {
        Some(found) => found,
        None => {
            if !engine.pull(image).await? {
                anyhow::bail!(
                    "{} could not pull {image}: log the engine in to the registry (it pulls with its own login) or release from the machine that built it",
                    engine.kind()
                );
            }
            let info = engine.inspect(&[image]).await?.pop().unwrap_or_default();
            (info, image)
        }
    };
    boot::boot(engine, name, &info.labels, opts).await?;
    Ok(())
}

/// The key material of the public key file `--key` names (exit 2 when it is missing or not a
/// PEM public key).
pub(crate) fn read_public_key(path: &Utf8Path) -> Result<String, UserError> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        UserError::signing(format!(
            "cannot read --key {path}: {e}; pass the cosign public key (cosign.pub from cosign generate-key-pair)"
        ))
    })?;
    sc::public_key_body(&text).ok_or_else(|| {
        UserError::signing(format!(
            "--key {path} is not a PEM public key (-----BEGIN PUBLIC KEY-----); pass cosign.pub, not the private key"
        ))
    })
}

/// A `DOCKER_CONFIG` directory for the tools (cosign, syft and trivy all read that client
/// config, whatever engine built the images): a `config.json` holding the credentials this
/// release resolved (in docker-config mode, the ones found in the engine's login files), 0600 in
/// a 0700 directory of its own, removed when dropped. It is not the engine's login store: that
/// one may hold a credential-helper reference or an engine-specific file the tools cannot read.
/// `None` without credentials (anonymous reads): the tools then use their own defaults.
pub(crate) struct ToolAuth {
    _dir: tempfile::TempDir,
    pub dir: Utf8PathBuf,
}

impl ToolAuth {
    pub(crate) fn new(creds: Option<&Credentials>, host: &str) -> Result<Option<ToolAuth>> {
        let Some(c) = creds else { return Ok(None) };
        let (tmp, dir) = super::auth::private_dir()?;
        let config = serde_json::json!({"auths": {host: {"auth": c.basic()}}});
        super::auth::write_private(&dir.join("config.json"), config.to_string().as_bytes())?;
        Ok(Some(ToolAuth { _dir: tmp, dir }))
    }
}

/// The directories of the variants a release names, for their `.trivyignore`.
pub(crate) fn variant_dirs(graph: &crate::hjk::variants::Graph) -> BTreeMap<String, Utf8PathBuf> {
    graph
        .variants
        .iter()
        .map(|v| (v.name.clone(), graph.dir(v)))
        .collect()
}

/// The same, from `images_dir` if it holds a `variants.yaml` (merge runs in a checkout).
pub(crate) fn dirs_if_present(images_dir: &Utf8Path) -> BTreeMap<String, Utf8PathBuf> {
    crate::hjk::variants::Graph::load(images_dir)
        .map(|g| variant_dirs(&g))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_gates_need_no_tools_and_a_missing_tool_is_refused_up_front() {
        let vars: BTreeMap<String, String> =
            [("PATH".to_string(), "/nonexistent".to_string())].into();
        assert!(
            Gates::check(GateOptions::none("/tmp/g".into()), false, &vars)
                .unwrap()
                .is_none()
        );
        let err = Gates::check(
            GateOptions {
                scan: true,
                ..GateOptions::none("/tmp/g".into())
            },
            false,
            &vars,
        )
        .err()
        .unwrap();
        assert!(err.message().starts_with("--scan needs `trivy`"), "{err}");
    }

    #[test]
    fn the_tools_auth_file_is_private_and_goes_away() {
        use std::os::unix::fs::PermissionsExt;
        let c = Credentials {
            username: "u".into(),
            password: "p".into(),
        };
        let a = ToolAuth::new(Some(&c), "127.0.0.1:5001").unwrap().unwrap();
        let f = a.dir.join("config.json");
        assert_eq!(
            std::fs::metadata(&f).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert!(std::fs::read_to_string(&f)
            .unwrap()
            .contains("127.0.0.1:5001"));
        let dir = a.dir.clone();
        drop(a);
        assert!(!dir.exists());
        assert!(ToolAuth::new(None, "h").unwrap().is_none());
    }
}
