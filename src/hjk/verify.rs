//! `hjk images verify <variant|reference>...`: what a person who pulls the images checks before
//! trusting them, in one command. For each target (a variant's public tag `<registry>:<variant>`,
//! or any reference by tag or digest) it reads the index from the registry and checks, per
//! image:
//! - the index and every platform manifest carry a signature that verifies (`cosign verify`,
//!   by digest) against `--key`, or the keyless identity;
//! - every platform manifest has a signed SPDX SBOM attestation about it (`cosign
//!   verify-attestation --type spdxjson`, its statement's subject the image's digest);
//! - where the index lists a BuildKit provenance attestation for it, that it holds SLSA
//!   provenance (the index, whose signature is checked, names the attestation by digest);
//! - a child's base label (`org.opencontainers.image.base.name`) names a parent digest in the
//!   same repository, and that parent manifest's signature verifies too.
//!
//! It prints a table of image x check (`ok`, `FAILED`, `-` where a check does not apply) and
//! exits 0 only when every check passed, 1 when one failed (naming the image and why), 2 for
//! input to fix (no cosign, an unreadable key, a bad reference), before any check runs.

use super::release::auth::{self, AuthSettings};
use super::release::gates::tools::{self as sc, Trust, VerifyOptions};
use super::release::gates::{read_public_key, ToolAuth};
use super::release::registry::{self, Registry};
use super::release::{provenance_of, LABEL_BASE_DIGEST, LABEL_BASE_NAME};
use crate::backend::detect::find_on_path;
use crate::engine::Engine;
use crate::error::UserError;
use crate::image_ref::ImageRef;
use anyhow::{anyhow, Result};
use serde::Serialize;
use std::collections::BTreeMap;

/// What `hjk images verify` was asked.
#[derive(Debug, Clone)]
pub(crate) struct VerifySpec {
    /// Variant names (`dind`: `<registry>:dind`) or references (`<repo>:<tag>`, `<repo>@sha256:`).
    pub targets: Vec<String>,
    /// `--registry`, else `images.registry`: where a variant name is looked up.
    pub registry: ImageRef,
    /// `--version`: a variant name means `<registry>:<variant>-<version>`.
    pub version: Option<crate::version::Version>,
    pub trust: Trust,
    /// `--insecure-ignore-tlog`: for signatures a release made with `--tlog-upload=false`.
    pub ignore_tlog: bool,
    pub auth: AuthSettings,
    /// `--json`: the rows as JSON on stdout.
    pub json: bool,
    /// `--registry-timeout`.
    pub registry_timeout: std::time::Duration,
}

/// One check's outcome in a cell of the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub(crate) enum Cell {
    #[serde(rename = "ok")]
    Ok,
    #[serde(rename = "FAILED")]
    Failed,
    /// Not applicable: an index has no SBOM, an image without a provenance attestation.
    #[serde(rename = "-")]
    NotApplicable,
}

impl Cell {
    fn shown(self) -> &'static str {
        match self {
            Cell::Ok => "ok",
            Cell::Failed => "FAILED",
            Cell::NotApplicable => "-",
        }
    }
}

/// The checks of one image, the columns of the table.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Checks {
    pub signature: Cell,
    pub sbom: Cell,
    pub provenance: Cell,
    pub base_signed: Cell,
}

/// One row: an index, or one platform manifest of it.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Row {
    /// The target as given (a variant name or a reference).
    pub target: String,
    /// `index`, `linux/amd64`, ...
    pub platform: String,
    /// `<repo>@<digest>`.
    pub image: String,
    pub checks: Checks,
    /// Why each failed check failed, one line each.
    pub problems: Vec<String>,
}

impl Row {
    fn passed(&self) -> bool {
        self.problems.is_empty()
    }
}

/// A target, resolved: its repository and the tag or digest to read.
#[derive(Debug, Clone)]
struct Target {
    given: String,
    repo: ImageRef,
    key: String,
}

/// A target is a variant name when it has no `/`, `:` or `@` (`dind`: `<registry>:dind`, or
/// `<registry>:dind-<version>`), else a reference.
fn target(given: &str, registry: &ImageRef, version: Option<&str>) -> Result<Target, UserError> {
    let reference = given.contains(['/', ':', '@']);
    let r = if reference {
        ImageRef::parse(given)
            .map_err(|e| e.reword(|m| format!("{given:?} is not an image reference: {m}")))?
    } else {
        let tag = match version {
            Some(v) => format!("{given}-{v}"),
            None => given.to_string(),
        };
        registry
            .with_tag(&tag)
            .map_err(|e| e.reword(|m| format!("{given:?} is not a variant name: {m}")))?
    };
    let key = match (r.digest(), r.tag()) {
        (Some(d), _) => d.to_string(),
        (None, Some(t)) => t.to_string(),
        (None, None) => "latest".to_string(),
    };
    let repo = ImageRef::parse(&format!("{}/{}", r.registry(), r.repository()))?;
    Ok(Target {
        given: given.to_string(),
        repo,
        key,
    })
}

/// `hjk images verify`.
pub(crate) async fn verify_command(
    engine: &Engine,
    spec: &VerifySpec,
    vars: &BTreeMap<String, String>,
) -> Result<u8> {
    // input first: cosign, the key, every target; nothing is read before they pass
    let path = vars.get("PATH").map(std::ffi::OsString::from);
    let cosign = find_on_path("cosign", path.as_ref()).ok_or_else(|| {
        UserError::tool(
            "hjk images verify needs `cosign`, which is not on PATH: install it from https://docs.sigstore.dev/cosign/system_config/installation/ (GitHub Actions: sigstore/cosign-installer)",
        )
    })?;
    if let Trust::Key(k) = &spec.trust {
        read_public_key(k)?;
    }
    let targets: Vec<Target> = spec
        .targets
        .iter()
        .map(|t| target(t, &spec.registry, spec.version.as_deref()))
        .collect::<Result<_, _>>()?;
    let mut repos: Vec<ImageRef> = Vec::new();
    for t in &targets {
        if !repos
            .iter()
            .any(|r| r.name_as_written() == t.repo.name_as_written())
        {
            repos.push(t.repo.clone());
        }
    }
    if spec.auth.creds_stdin && repos.len() > 1 {
        return Err(UserError::setting(
            "--creds-stdin reads one set of credentials: verify the images of one repository at a time",
        )
        .into());
    }
    let tools = sc::Tools::with_cosign(cosign);
    let mut rows: Vec<Row> = Vec::new();
    for repo in &repos {
        let creds = auth::resolve(&spec.auth, vars, engine, repo).await?;
        let reg = Registry::new(
            repo,
            creds.clone(),
            spec.registry_timeout,
            engine.shared_reporter(),
        )?;
        let tool_auth = ToolAuth::new(creds.as_ref(), repo.registry())?;
        let ctx = Ctx {
            engine,
            registry: &reg,
            tools: &tools,
            opts: VerifyOptions {
                trust: spec.trust.clone(),
                ignore_tlog: spec.ignore_tlog,
                plain_http: registry::plain_http(repo.registry()),
            },
            auth_dir: tool_auth.as_ref().map(|a| a.dir.as_path()),
        };
        for t in targets
            .iter()
            .filter(|t| t.repo.name_as_written() == repo.name_as_written())
        {
            rows.extend(ctx.target(t).await?);
        }
    }
    let failed: Vec<&Row> = rows.iter().filter(|r| !r.passed()).collect();
    let data = serde_json::json!({"passed": failed.is_empty(), "images": rows});
    if spec.json {
        use crate::report::Reporter as _;
        crate::report::DataReporter.result(String::new(), data);
    } else {
        engine.reporter().result(table(&rows), data);
    }
    if failed.is_empty() {
        return Ok(crate::error::EXIT_OK);
    }
    let each: Vec<String> = failed
        .iter()
        .map(|r| {
            format!(
                "{} ({} {}): {}",
                r.image,
                r.target,
                r.platform,
                r.problems.join("; ")
            )
        })
        .collect();
    Err(anyhow!(
        "{} of {} image(s) failed verification: {}",
        failed.len(),
        rows.len(),
        each.join(", ")
    ))
}

/// The table: one row per image, one column per check.
pub(crate) fn table(rows: &[Row]) -> String {
    let width = rows
        .iter()
        .map(|r| r.target.len())
        .max()
        .unwrap_or(0)
        .max("TARGET".len());
    let mut out = format!(
        "{:<width$}  {:<12} {:<10} {:<7} {:<11} {:<12} {}\n",
        "TARGET", "PLATFORM", "SIGNATURE", "SBOM", "PROVENANCE", "BASE-SIGNED", "IMAGE"
    );
    for r in rows {
        let c = &r.checks;
        out.push_str(&format!(
            "{:<width$}  {:<12} {:<10} {:<7} {:<11} {:<12} {}\n",
            r.target,
            r.platform,
            c.signature.shown(),
            c.sbom.shown(),
            c.provenance.shown(),
            c.base_signed.shown(),
            r.image
        ));
    }
    out
}

/// What the checks of one repository share.
struct Ctx<'a> {
    engine: &'a Engine,
    registry: &'a Registry,
    tools: &'a sc::Tools,
    opts: VerifyOptions,
    auth_dir: Option<&'a camino::Utf8Path>,
}

impl Ctx<'_> {
    fn image(&self, digest: &str) -> String {
        format!("{}@{digest}", self.registry.name())
    }

    /// The rows of one target: its index and each platform manifest it lists (a single
    /// manifest: one row).
    async fn target(&self, t: &Target) -> Result<Vec<Row>> {
        let Some(top) = self.registry.manifest(&t.key).await? else {
            return Ok(vec![Row {
                target: t.given.clone(),
                platform: "-".into(),
                image: format!("{}:{}", self.registry.name(), t.key),
                checks: Checks {
                    signature: Cell::Failed,
                    sbom: Cell::Failed,
                    provenance: Cell::NotApplicable,
                    base_signed: Cell::NotApplicable,
                },
                problems: vec!["not in the registry".into()],
            }]);
        };
        if !top.is_index() {
            let config = self.registry.config(&top).await?;
            let platform = format!("linux/{}", config.architecture);
            let row = self
                .platform_row(t, &platform, &top.digest, None, &config.labels)
                .await?;
            return Ok(vec![row]);
        }
        let parsed = top.parsed()?;
        let parsed = &parsed;
        let mut index_row = Row {
            target: t.given.clone(),
            platform: "index".into(),
            image: self.image(&top.digest),
            checks: Checks {
                signature: Cell::Failed,
                sbom: Cell::NotApplicable,
                provenance: Cell::NotApplicable,
                base_signed: Cell::NotApplicable,
            },
            problems: Vec::new(),
        };
        index_row.checks.signature = self
            .signature(&index_row.image, None, &mut index_row.problems)
            .await?;
        let mut rows = vec![index_row];
        let images = parsed
            .manifests
            .iter()
            .filter(|m| m.platform.as_ref().is_some_and(|p| p.os != "unknown"));
        let mut pending = Vec::new();
        for m in images {
            let p = m.platform.as_ref().expect("filtered");
            let platform = format!("{}/{}", p.os, p.architecture);
            pending.push(async move {
                let Some(manifest) = self.registry.manifest(&m.digest).await? else {
                    return Ok(Row {
                        target: t.given.clone(),
                        platform,
                        image: self.image(&m.digest),
                        checks: Checks {
                            signature: Cell::Failed,
                            sbom: Cell::Failed,
                            provenance: Cell::NotApplicable,
                            base_signed: Cell::NotApplicable,
                        },
                        problems: vec!["the index lists it, but it is not in the registry".into()],
                    });
                };
                let config = self.registry.config(&manifest).await?;
                self.platform_row(t, &platform, &m.digest, Some(parsed), &config.labels)
                    .await
            });
        }
        for r in futures_util::future::join_all(pending).await {
            rows.push(r?);
        }
        Ok(rows)
    }

    async fn platform_row(
        &self,
        t: &Target,
        platform: &str,
        digest: &str,
        index: Option<&registry::Parsed>,
        labels: &BTreeMap<String, String>,
    ) -> Result<Row> {
        let image = self.image(digest);
        let mut problems = Vec::new();
        let signature = self.signature(&image, None, &mut problems).await?;
        let sbom = self.sbom(&image, digest, &mut problems).await?;
        let provenance = match index.filter(|i| i.attestation_for(digest).is_some()) {
            None => Cell::NotApplicable,
            Some(i) => match provenance_of(self.registry, i, digest, None).await? {
                Ok(()) => Cell::Ok,
                Err(why) => {
                    problems.push(format!("provenance: {why}"));
                    Cell::Failed
                }
            },
        };
        let base_signed = match self.parent(labels) {
            None => Cell::NotApplicable,
            Some(Err(why)) => {
                problems.push(format!("base-signed: {why}"));
                Cell::Failed
            }
            Some(Ok(parent)) => {
                self.signature(&parent, Some("base-signed"), &mut problems)
                    .await?
            }
        };
        Ok(Row {
            target: t.given.clone(),
            platform: platform.to_string(),
            image,
            checks: Checks {
                signature,
                sbom,
                provenance,
                base_signed,
            },
            problems,
        })
    }

    /// The parent this image names in its base labels, when it is in this repository (a root
    /// built on someone else's image has no parent of ours to check).
    fn parent(&self, labels: &BTreeMap<String, String>) -> Option<Result<String, String>> {
        let name = labels.get(LABEL_BASE_NAME)?;
        let (repo, digest) = name.split_once('@')?;
        if repo != self.registry.name() {
            return None;
        }
        if labels.get(LABEL_BASE_DIGEST).map(String::as_str) != Some(digest) {
            return Some(Err(format!(
                "{LABEL_BASE_NAME}={name} and {LABEL_BASE_DIGEST}={:?} disagree",
                labels.get(LABEL_BASE_DIGEST)
            )));
        }
        Some(Ok(name.clone()))
    }

    /// `cosign verify` of one image by digest: the row's own (`parent` None), or its parent's.
    async fn signature(
        &self,
        image: &str,
        parent: Option<&str>,
        problems: &mut Vec<String>,
    ) -> Result<Cell> {
        let inv = sc::verify_signature(self.tools, &self.opts, image, self.auth_dir);
        let out = self.engine.tool(&inv).await?;
        if out.success {
            return Ok(Cell::Ok);
        }
        problems.push(match parent {
            None => format!("signature: {}", cosign_error(&out)),
            Some(what) => format!("{what}: its base {image}: {}", cosign_error(&out)),
        });
        Ok(Cell::Failed)
    }

    /// `cosign verify-attestation --type spdxjson`: a signed SPDX statement about this digest.
    async fn sbom(&self, image: &str, digest: &str, problems: &mut Vec<String>) -> Result<Cell> {
        let inv =
            sc::verify_attestation(self.tools, &self.opts, image, sc::SBOM_TYPE, self.auth_dir);
        let out = self.engine.tool(&inv).await?;
        if !out.success {
            problems.push(format!("sbom: {}", cosign_error(&out)));
            return Ok(Cell::Failed);
        }
        let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
        let about_it = sc::attested_statements(&out.stdout).iter().any(|s| {
            s["predicateType"] == sc::SBOM_PREDICATE
                && s["subject"]
                    .as_array()
                    .is_some_and(|subj| subj.iter().any(|x| x["digest"]["sha256"] == hex))
        });
        if !about_it {
            problems.push(format!(
                "sbom: no verified SPDX statement names {digest} as its subject"
            ));
            return Ok(Cell::Failed);
        }
        Ok(Cell::Ok)
    }
}

/// cosign's own reason, one line: its `Error: ...` line, else its last line.
fn cosign_error(out: &crate::exec::Captured) -> String {
    let text = format!("{}\n{}", out.stderr, out.stdout);
    let line = text
        .lines()
        .find(|l| l.starts_with("Error: "))
        .or_else(|| text.lines().rev().find(|l| !l.trim().is_empty()))
        .unwrap_or("cosign failed");
    let line = line.strip_prefix("Error: ").unwrap_or(line).trim();
    line.trim_end_matches(':').chars().take(300).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reg() -> ImageRef {
        ImageRef::parse("ghcr.io/gilmanlab/headjack").unwrap()
    }

    #[test]
    fn a_name_is_a_variant_and_anything_else_a_reference() {
        let t = target("dind", &reg(), None).unwrap();
        assert_eq!(
            (t.repo.name_as_written(), t.key.as_str()),
            ("ghcr.io/gilmanlab/headjack", "dind")
        );
        assert_eq!(
            target("dind", &reg(), Some("v1.4.0")).unwrap().key,
            "dind-v1.4.0"
        );
        let d = format!("sha256:{}", "a".repeat(64));
        let t = target(&format!("127.0.0.1:5001/x/y@{d}"), &reg(), None).unwrap();
        assert_eq!(
            (t.repo.name_as_written(), t.key.as_str()),
            ("127.0.0.1:5001/x/y", d.as_str())
        );
        let t = target("127.0.0.1:5001/x/y:top-v1", &reg(), Some("v2")).unwrap();
        assert_eq!(t.key, "top-v1");
        let e = target("Not A Name!", &reg(), None).unwrap_err();
        assert!(
            e.message()
                .starts_with("\"Not A Name!\" is not a variant name"),
            "{e}"
        );
    }

    #[test]
    fn the_table_is_image_by_check() {
        let row = |platform: &str, sig: Cell, sbom: Cell| Row {
            target: "top".into(),
            platform: platform.into(),
            image: "r@sha256:1".into(),
            checks: Checks {
                signature: sig,
                sbom,
                provenance: Cell::NotApplicable,
                base_signed: Cell::Ok,
            },
            problems: Vec::new(),
        };
        let text = table(&[
            row("index", Cell::Ok, Cell::NotApplicable),
            row("linux/amd64", Cell::Failed, Cell::Ok),
        ]);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            "TARGET  PLATFORM     SIGNATURE  SBOM    PROVENANCE  BASE-SIGNED  IMAGE"
        );
        assert_eq!(
            lines[2],
            "top     linux/amd64  FAILED     ok      -           ok           r@sha256:1"
        );
        let json = serde_json::to_value(row("index", Cell::Ok, Cell::NotApplicable)).unwrap();
        assert_eq!(json["checks"]["sbom"], "-");
        assert_eq!(json["checks"]["signature"], "ok");
    }

    #[test]
    fn cosigns_reason_is_one_line() {
        let out = crate::exec::Captured::failed(
            1,
            "Error: no signatures found\nmain.go:74: error during command execution: no signatures found\n",
        );
        assert_eq!(cosign_error(&out), "no signatures found");
    }
}
