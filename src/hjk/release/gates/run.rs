//! The release gates and the promotion rule. A release pushes every image and index by digest,
//! untagged; then [`run_gates`] scans, SBOMs, signs and attests those digests, and
//! [`promotion`] says which variants' public tags (`<variant>`, `<variant>-<version>`) may move.
//! A variant whose scan found something, whose signature or attestation failed, or whose parent
//! is held moves no tag: users never pull by tag a build that failed a gate, and a child tag
//! never points at a build whose parent tag stayed behind.
//!
//! Order per variant, parents first: scan each platform image, write each SBOM, then sign the
//! index recursively and attest each SBOM. Only a build that passed its scan (and whose parent
//! is not held) is signed, so a valid signature means "passed the gates", not only "built here".

use super::tools::{self as sc, GateOptions, Signing, Tools};
use crate::digest::ImageDigest;
use crate::engine::Engine;
use crate::error::UserError;
use crate::image_ref::ImageRef;
use crate::platform::Platform;
use anyhow::Result;
use camino::{Utf8Path, Utf8PathBuf};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// What a release pushed, by digest, untagged: the input of the gates.
#[derive(Debug, Clone)]
pub struct Published {
    /// The repository, e.g. `ghcr.io/gilmanlab/headjack` (no tag).
    pub registry: ImageRef,
    /// Parents before children.
    pub variants: Vec<PublishedVariant>,
}

#[derive(Debug, Clone)]
pub struct PublishedVariant {
    pub name: String,
    /// The parent variant, when it is part of this release (its gates then hold this one).
    pub parent: Option<String>,
    /// The variant's directory (`images/<dir>`), where `.trivyignore` is looked for.
    pub dir: Option<Utf8PathBuf>,
    /// The digest of the index (manifest list) naming every platform image.
    pub index_digest: ImageDigest,
    /// Each platform image's manifest digest.
    pub platforms: Vec<(Platform, ImageDigest)>,
}

impl Published {
    /// Parents must come first (the digests are [`ImageDigest`]s, checked where they were read).
    pub fn validate(&self) -> Result<(), UserError> {
        let mut seen: Vec<&str> = Vec::new();
        for v in &self.variants {
            if let Some(p) = &v.parent {
                let later =
                    self.variants.iter().any(|o| &o.name == p) && !seen.contains(&p.as_str());
                if later {
                    return Err(UserError::metadata(format!(
                        "variant {} is listed before its parent {p}",
                        v.name
                    )));
                }
            }
            seen.push(&v.name);
        }
        Ok(())
    }

    fn image(&self, digest: &ImageDigest) -> String {
        sc::by_digest(self.registry.name_as_written(), digest)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// No fixable finding at the gated severities.
    Passed,
    /// trivy found something ([`sc::FINDINGS_EXIT`]).
    Failed,
    /// trivy could not scan (its own failure: registry, DB download, ...).
    Error,
    /// Not asked for.
    Skipped,
}

/// One platform's scan.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PlatformScan {
    pub platform: Platform,
    pub verdict: Verdict,
    /// Findings by severity (only the gated severities, after `.trivyignore`).
    pub findings: BTreeMap<String, u64>,
    /// Each finding: what and where (a CVE and its package, a secret and its file).
    #[serde(default)]
    pub found: Vec<sc::Finding>,
    pub report: Option<Utf8PathBuf>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Scan {
    /// Failed if any platform failed, Error if any could not be scanned (and none failed).
    pub verdict: Verdict,
    pub severity: Option<String>,
    pub ignorefile: Option<Utf8PathBuf>,
    pub platforms: Vec<PlatformScan>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Sbom {
    pub platform: Platform,
    pub path: Utf8PathBuf,
    /// The SBOM is attached to the platform image as a signed SPDX attestation.
    pub attested: bool,
}

/// The boot gate of one variant (`--boot`, run by [`crate::hjk::release::gates`] through
/// [`crate::hjk::boot`]): each platform this machine runs natively booted, or why not.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BootResult {
    pub passed: bool,
    pub booted: Vec<Platform>,
    /// Platforms this machine would only emulate: not booted, not held for it.
    pub skipped: Vec<Platform>,
    /// Why it failed, one line.
    pub reason: Option<String>,
}

/// The gates of one variant, as the metadata file records them.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VariantGates {
    pub variant: String,
    /// `<repo>@<index digest>`.
    pub index: String,
    pub sboms: Vec<Sbom>,
    /// The index and every platform manifest carry a signature.
    pub signed: bool,
    pub scan: Scan,
    /// The boot gate, when asked for.
    #[serde(default)]
    pub boot: Option<BootResult>,
    /// Why a gate did not pass, one line each.
    pub errors: Vec<String>,
}

/// Every variant's gates, plus what was asked, so the promotion rule needs nothing else.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GateReport {
    pub sbom: bool,
    pub sign: bool,
    pub scan: bool,
    #[serde(default)]
    pub boot: bool,
    pub signing: Option<Signing>,
    pub variants: Vec<VariantGates>,
}

impl GateReport {
    pub fn get(&self, variant: &str) -> Option<&VariantGates> {
        self.variants.iter().find(|g| g.variant == variant)
    }

    /// Why this variant's own gates did not pass (empty: they passed).
    pub(crate) fn failures(&self, g: &VariantGates, platforms: usize) -> Vec<String> {
        let mut why = Vec::new();
        if self.scan {
            match g.scan.verdict {
                Verdict::Passed => {}
                Verdict::Failed => why.push(format!(
                    "scan found {}: {}",
                    shown_findings(&g.scan),
                    named_findings(&g.scan.platforms)
                )),
                _ => why.push("scan could not run".into()),
            }
        }
        if self.sbom && g.sboms.len() < platforms {
            why.push(format!("{} of {platforms} SBOM(s) written", g.sboms.len()));
        }
        if self.sign && !g.signed {
            why.push("not signed".into());
        }
        if self.sign && self.sbom && g.sboms.iter().any(|s| !s.attested) {
            why.push("SBOM not attested".into());
        }
        if self.boot {
            match &g.boot {
                Some(b) if b.passed => {}
                Some(b) => why.push(b.reason.clone().unwrap_or_else(|| "boot failed".into())),
                None => why.push("no boot ran".into()),
            }
        }
        why
    }

    /// One row per variant: scan verdict and findings, SBOMs, signature.
    pub fn summary(&self) -> String {
        let mut out = format!(
            "{:<12} {:<8} {:<26} {:<6} {:<6} {}\n",
            "VARIANT", "SCAN", "FINDINGS", "SBOMS", "SIGNED", "BOOT"
        );
        for g in &self.variants {
            let scan = match g.scan.verdict {
                Verdict::Passed => "passed",
                Verdict::Failed => "FAILED",
                Verdict::Error => "ERROR",
                Verdict::Skipped => "-",
            };
            let findings = if g.scan.verdict == Verdict::Skipped {
                "-".to_string()
            } else {
                shown_findings(&g.scan)
            };
            let signed = match (self.sign, g.signed) {
                (false, _) => "-",
                (true, true) => "yes",
                (true, false) => "NO",
            };
            let boot = match (&g.boot, self.boot) {
                (_, false) | (None, _) => "-".to_string(),
                (Some(b), true) if b.passed => match b.skipped.is_empty() {
                    true => "booted".to_string(),
                    false => format!(
                        "booted ({} not: emulated)",
                        b.skipped
                            .iter()
                            .map(|p| p.to_string())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                },
                (Some(_), true) => "FAILED".to_string(),
            };
            out.push_str(&format!(
                "{:<12} {:<8} {:<26} {:<6} {:<6} {}\n",
                g.variant,
                scan,
                findings,
                g.sboms.len(),
                signed,
                boot
            ));
        }
        out
    }
}

/// The findings by name and place (`secret private-key (Asymmetric Private Key) in
/// /etc/x.pem`), each once however many platforms have it; the first three, then how many more.
fn named_findings(platforms: &[PlatformScan]) -> String {
    let mut names: Vec<String> = Vec::new();
    for f in platforms.iter().flat_map(|p| &p.found) {
        let d = f.describe();
        if !names.contains(&d) {
            names.push(d);
        }
    }
    let more = names.len().saturating_sub(3);
    names.truncate(3);
    let mut text = names.join(", ");
    if more > 0 {
        text.push_str(&format!(" and {more} more (see the scan reports)"));
    }
    text
}

/// `2 HIGH, 1 CRITICAL` (most severe first), or `none`.
fn shown_findings(scan: &Scan) -> String {
    let mut total: BTreeMap<&str, u64> = BTreeMap::new();
    for p in &scan.platforms {
        for (sev, n) in &p.findings {
            *total.entry(sev.as_str()).or_insert(0) += n;
        }
    }
    let order = ["CRITICAL", "HIGH", "MEDIUM", "LOW", "UNKNOWN"];
    let parts: Vec<String> = order
        .iter()
        .filter_map(|s| total.get(s).map(|n| format!("{n} {s}")))
        .collect();
    if parts.is_empty() {
        "none".into()
    } else {
        parts.join(", ")
    }
}

/// Runs the requested gates on every published variant, parents first, and records each
/// outcome. A tool that fails is recorded against its variant (so the report is complete and
/// the promotion rule holds that variant back); only an interruption stops the run.
/// `auth_dir`: a directory with `config.json` for the registry (None: the tools' defaults).
/// `boots`: the boot gate's results by variant, when it ran (before these gates, so a variant
/// that did not boot is not signed).
pub async fn run_gates(
    engine: &Engine,
    published: &Published,
    opts: &GateOptions,
    tools: &Tools,
    auth_dir: Option<&Utf8Path>,
    boots: Option<&BTreeMap<String, BootResult>>,
) -> Result<GateReport> {
    published.validate()?;
    if opts.uses_tools() && !engine.dry_run() {
        std::fs::create_dir_all(&opts.out_dir)
            .map_err(|e| UserError::file(format!("cannot create {}: {e}", opts.out_dir)))?;
    }
    let mut report = GateReport {
        sbom: opts.sbom,
        sign: opts.sign,
        scan: opts.scan,
        boot: boots.is_some(),
        signing: opts.sign.then_some(opts.signing),
        variants: Vec::new(),
    };
    let gates = Gates {
        engine,
        published,
        opts,
        tools,
        auth_dir,
    };
    for v in &published.variants {
        let parent_held = v.parent.as_ref().and_then(|p| {
            let pv = published.variants.iter().find(|o| &o.name == p)?;
            let pg = report.get(p)?;
            (!report.failures(pg, pv.platforms.len()).is_empty()).then(|| p.clone())
        });
        let mut g = VariantGates {
            variant: v.name.clone(),
            index: published.image(&v.index_digest),
            sboms: Vec::new(),
            signed: false,
            scan: Scan {
                verdict: Verdict::Skipped,
                severity: opts.scan.then(|| opts.severity.clone()),
                ignorefile: None,
                platforms: Vec::new(),
            },
            boot: boots.map(|b| b.get(&v.name).cloned().unwrap_or_default()),
            errors: Vec::new(),
        };
        let booted = g.boot.as_ref().is_none_or(|b| b.passed);
        if opts.scan {
            gates.scan_variant(v, &mut g).await?;
        }
        if opts.sbom {
            gates.sbom_variant(v, &mut g).await?;
        }
        if opts.sign {
            if let Some(p) = &parent_held {
                g.errors
                    .push(format!("not signed: its parent {p} failed a gate"));
            } else if opts.scan && g.scan.verdict != Verdict::Passed {
                g.errors.push("not signed: the scan did not pass".into());
            } else if !booted {
                g.errors.push("not signed: it did not boot".into());
            } else {
                gates.sign_variant(v, &mut g).await?;
            }
        }
        report.variants.push(g);
    }
    Ok(report)
}

/// Records a tool failure against the variant; an interruption stops everything.
fn failed(g: &mut VariantGates, what: &str, e: anyhow::Error) -> Result<()> {
    if crate::error::interruption(&e).is_some() {
        return Err(e);
    }
    let first = format!("{e:#}").lines().next().unwrap_or("").to_string();
    g.errors.push(format!("{what}: {first}"));
    Ok(())
}

/// What every gate of a release needs, shared by the per-variant steps.
#[derive(Clone, Copy)]
struct Gates<'a> {
    engine: &'a Engine,
    published: &'a Published,
    opts: &'a GateOptions,
    tools: &'a Tools,
    auth_dir: Option<&'a Utf8Path>,
}

/// A gate command on one published image and one file (the SBOM it writes or attests).
type OnFile =
    fn(&Tools, &GateOptions, &str, &Utf8Path, Option<&Utf8Path>) -> crate::invocation::Invocation;

impl Gates<'_> {
    /// Runs `command` on the published image `digest` and `file`, streaming its output.
    async fn run_on_file(
        &self,
        command: OnFile,
        digest: &ImageDigest,
        file: &Utf8Path,
    ) -> Result<()> {
        let image = self.published.image(digest);
        let inv = command(self.tools, self.opts, &image, file, self.auth_dir);
        self.engine.tool_stream(&inv).await
    }

    async fn scan_variant(&self, v: &PublishedVariant, g: &mut VariantGates) -> Result<()> {
        let reporter = self.engine.reporter();
        let ignorefile = v
            .dir
            .as_ref()
            .map(|d| d.join(sc::TRIVYIGNORE))
            .filter(|f| f.is_file());
        g.scan.ignorefile = ignorefile.clone();
        for (platform, digest) in &v.platforms {
            let image = self.published.image(digest);
            let report = self.opts.scan_report_path(&v.name, *platform);
            reporter.info(&format!("scanning {} ({platform})", v.name));
            let inv = sc::scan(
                self.tools,
                self.opts,
                &image,
                &report,
                ignorefile.as_deref(),
                self.auth_dir,
            );
            let mut result = PlatformScan {
                platform: *platform,
                verdict: Verdict::Error,
                findings: BTreeMap::new(),
                found: Vec::new(),
                report: None,
            };
            match self.engine.tool(&inv).await {
                Err(e) => failed(g, &format!("scan of {platform}"), e)?,
                Ok(_) if self.engine.dry_run() => result.verdict = Verdict::Passed,
                Ok(out) => {
                    let found = std::fs::read_to_string(&report)
                        .map_err(|e| e.to_string())
                        .and_then(|t| sc::findings(&t).map_err(|e| e.to_string()));
                    let counted = |f: &[sc::Finding]| {
                        let mut c = BTreeMap::new();
                        for x in f {
                            *c.entry(x.severity.clone()).or_insert(0) += 1;
                        }
                        c
                    };
                    match (out.code, found) {
                        (Some(0), Ok(f)) => {
                            result.verdict = Verdict::Passed;
                            result.findings = counted(&f);
                            result.found = f;
                            result.report = Some(report);
                        }
                        (Some(sc::FINDINGS_EXIT), Ok(f)) => {
                            result.verdict = Verdict::Failed;
                            result.findings = counted(&f);
                            result.found = f;
                            result.report = Some(report);
                        }
                        (code, counts) => {
                            let why = match (code, counts) {
                                (Some(0 | sc::FINDINGS_EXIT), Err(e)) => {
                                    format!("unreadable report {report}: {e}")
                                }
                                (code, _) => {
                                    let last = out.tail().last().cloned().unwrap_or_default();
                                    format!("trivy exited with {code:?}: {last}")
                                }
                            };
                            g.errors.push(format!("scan of {platform}: {why}"));
                        }
                    }
                }
            }
            if result.verdict == Verdict::Failed {
                let one = Scan {
                    platforms: vec![result.clone()],
                    ..g.scan.clone()
                };
                reporter.warn(&format!(
                    "{} ({platform}): scan found {} at {}: {}",
                    v.name,
                    shown_findings(&one),
                    self.opts.severity,
                    named_findings(&one.platforms)
                ));
            }
            g.scan.platforms.push(result);
        }
        let verdicts: Vec<Verdict> = g.scan.platforms.iter().map(|p| p.verdict).collect();
        g.scan.verdict = if verdicts.contains(&Verdict::Failed) {
            Verdict::Failed
        } else if verdicts.contains(&Verdict::Error) {
            Verdict::Error
        } else {
            Verdict::Passed
        };
        Ok(())
    }

    async fn sbom_variant(&self, v: &PublishedVariant, g: &mut VariantGates) -> Result<()> {
        for (platform, digest) in &v.platforms {
            let path = self.opts.sbom_path(&v.name, *platform);
            match self.run_on_file(sc::sbom, digest, &path).await {
                Err(e) => failed(g, &format!("SBOM of {platform}"), e)?,
                Ok(()) if !self.engine.dry_run() && !path.is_file() => g
                    .errors
                    .push(format!("SBOM of {platform}: syft wrote no {path}")),
                Ok(()) => g.sboms.push(Sbom {
                    platform: *platform,
                    path,
                    attested: false,
                }),
            }
        }
        Ok(())
    }

    async fn sign_variant(&self, v: &PublishedVariant, g: &mut VariantGates) -> Result<()> {
        let inv = sc::sign(self.tools, self.opts, &g.index, self.auth_dir);
        if let Err(e) = self.engine.tool_stream(&inv).await {
            return failed(g, "signing", e);
        }
        // with a key, what was signed is checked the way users will check it: the index and
        // every platform manifest, each by digest
        if let Some(check) = &self.opts.check_signatures {
            let images = std::iter::once(("index".to_string(), g.index.clone())).chain(
                v.platforms
                    .iter()
                    .map(|(p, d)| (p.to_string(), self.published.image(d))),
            );
            for (what, image) in images {
                let inv = sc::verify_signature(self.tools, check, &image, self.auth_dir);
                let out = self.engine.tool(&inv).await?;
                if !out.success && !self.engine.dry_run() {
                    let last = out.tail().last().cloned().unwrap_or_default();
                    g.errors.push(format!(
                        "signing: the signature of the {what} {image} does not verify: {last}"
                    ));
                    return Ok(());
                }
            }
        }
        g.signed = true;
        for i in 0..g.sboms.len() {
            let (platform, path) = (g.sboms[i].platform, g.sboms[i].path.clone());
            // every SBOM is of one of the variant's platforms
            let Some((_, digest)) = v.platforms.iter().find(|(p, _)| *p == platform) else {
                continue;
            };
            match self.run_on_file(sc::attest, digest, &path).await {
                Ok(()) => g.sboms[i].attested = true,
                Err(e) => failed(g, &format!("attestation of {platform}"), e)?,
            }
        }
        Ok(())
    }
}

/// A variant that keeps its public tags where they were, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Held {
    pub variant: String,
    pub reasons: Vec<String>,
}

/// Which variants' public tags may move.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Promotion {
    pub moves: Vec<String>,
    pub held: Vec<Held>,
}

/// The promotion rule: a variant moves its tags only if every gate that was asked for passed
/// on it and its parent (when part of this release) moves too.
pub fn promotion(published: &Published, report: &GateReport) -> Promotion {
    let mut moves: Vec<String> = Vec::new();
    let mut held: Vec<Held> = Vec::new();
    for v in &published.variants {
        let mut reasons = match report.get(&v.name) {
            Some(g) => report.failures(g, v.platforms.len()),
            None if report.sbom || report.sign || report.scan => vec!["no gate ran".into()],
            None => Vec::new(),
        };
        if let Some(p) = &v.parent {
            if held.iter().any(|h| &h.variant == p) {
                reasons.push(format!("its parent {p} is held"));
            }
        }
        if reasons.is_empty() {
            moves.push(v.name.clone());
        } else {
            held.push(Held {
                variant: v.name.clone(),
                reasons,
            });
        }
    }
    Promotion { moves, held }
}

impl Promotion {
    pub fn may_move(&self, variant: &str) -> bool {
        self.moves.iter().any(|m| m == variant)
    }

    /// The error a release ends with when something is held (exit 1), naming each variant and
    /// why; None when every variant moved.
    pub fn held_error(&self) -> Option<anyhow::Error> {
        if self.held.is_empty() {
            return None;
        }
        let each: Vec<String> = self
            .held
            .iter()
            .map(|h| format!("{} ({})", h.variant, h.reasons.join("; ")))
            .collect();
        Some(anyhow::anyhow!(
            "{} variant(s) failed a release gate and keep their public tags where they were: {}",
            self.held.len(),
            each.join(", ")
        ))
    }
}
