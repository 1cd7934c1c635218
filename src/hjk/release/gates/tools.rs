//! The supply-chain tools of a release as commands (data): syft writes an SPDX SBOM per platform
//! image, cosign signs the index (and, with `--recursive`, every platform manifest) and attests
//! each SBOM, trivy gates on vulnerabilities and secrets. Everything is addressed by digest, so
//! what is signed, attested and scanned is exactly what was pushed, whatever a tag says
//! meanwhile. `hjk images verify` checks the same things with `cosign verify` and
//! `cosign verify-attestation` ([`verify_signature`], [`verify_attestation`]).
//!
//! The tools are found on PATH before anything is pushed ([`check_tools`]); each call is an
//! [`Invocation`] built here and run by [`super::run`] (or [`crate::hjk::verify`]) through
//! `Engine::tool`. No secret is in an argv: registry credentials reach the tools through
//! `DOCKER_CONFIG` (a 0700 directory of their own), a signing key through
//! `--key env://COSIGN_KEY` (the tool reads the variable it inherits; `COSIGN_PASSWORD`
//! likewise).

use crate::backend::detect::find_on_path;
use crate::error::UserError;
use crate::invocation::Invocation;
use crate::platform::Platform;
use camino::{Utf8Path, Utf8PathBuf};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::PathBuf;

/// trivy's exit code when it found vulnerabilities at the gated severities. trivy itself exits 1
/// on any fatal error, so findings get a code of their own and the two are never confused.
pub(crate) const FINDINGS_EXIT: i32 = 3;

/// The severities that fail the scan gate unless `--scan-severity` says otherwise.
pub(crate) const DEFAULT_SEVERITY: &str = "CRITICAL,HIGH";

/// trivy's severity names.
const SEVERITIES: [&str; 5] = ["UNKNOWN", "LOW", "MEDIUM", "HIGH", "CRITICAL"];

/// What `--scan` runs unless `--scanners` says otherwise (trivy's own names).
pub(crate) const DEFAULT_SCANNERS: &str = "vuln,secret";

/// The cosign attestation type of the SBOMs (`cosign attest --type spdxjson`), and the in-toto
/// predicate type cosign writes for it.
pub(crate) const SBOM_TYPE: &str = "spdxjson";
pub(crate) const SBOM_PREDICATE: &str = "https://spdx.dev/Document";

/// The trivy scanners a scan gate can run (trivy's names): `vuln` needs trivy's vulnerability
/// DB, `secret` runs offline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scanner {
    Vuln,
    Secret,
}

impl Scanner {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Scanner::Vuln => "vuln",
            Scanner::Secret => "secret",
        }
    }
}

/// `vuln,secret` -> the scanners, each once, in trivy's order. Only the scanners whose
/// findings the gate reads are accepted.
pub(crate) fn parse_scanners(s: &str) -> Result<Vec<Scanner>, UserError> {
    let mut out = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let sc = match part.to_ascii_lowercase().as_str() {
            "vuln" => Scanner::Vuln,
            "secret" => Scanner::Secret,
            _ => {
                return Err(UserError::setting(format!(
                    "unknown scanner {part:?} in --scanners; use vuln and/or secret (trivy's names), e.g. --scanners secret"
                )))
            }
        };
        if !out.contains(&sc) {
            out.push(sc);
        }
    }
    if out.is_empty() {
        return Err(UserError::setting(format!(
            "no scanner given in --scanners {s:?}; e.g. --scanners {DEFAULT_SCANNERS}"
        )));
    }
    out.sort();
    Ok(out)
}

/// Where trivy gets its vulnerability DB: `--scan-db-repository` (an OCI repository or mirror
/// holding `trivy-db`, downloaded once before anything is built), `--scan-cache-dir` (a trivy
/// cache that holds `db/trivy.db`, used as it is when no repository is given), else trivy's
/// own defaults (`TRIVY_DB_REPOSITORY`, `TRIVY_CACHE_DIR` and the rest of its environment).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrivyDb {
    pub repository: Option<String>,
    pub cache_dir: Option<Utf8PathBuf>,
}

impl TrivyDb {
    /// A cache directory given without a repository is used as it is, never updated.
    pub(crate) fn offline(&self) -> bool {
        self.cache_dir.is_some() && self.repository.is_none()
    }

    /// The file trivy reads its vulnerability DB from, under a cache directory.
    pub(crate) fn db_file(dir: &Utf8Path) -> Utf8PathBuf {
        dir.join("db/trivy.db")
    }
}

/// The environment variable that selects key-based signing; cosign reads the PEM from it.
pub(crate) const ENV_COSIGN_KEY: &str = "COSIGN_KEY";

/// The per-variant file of accepted findings, in the variant's directory.
pub(crate) const TRIVYIGNORE: &str = ".trivyignore";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Tool {
    Cosign,
    Syft,
    Trivy,
}

impl Tool {
    pub(crate) fn program(self) -> &'static str {
        match self {
            Tool::Cosign => "cosign",
            Tool::Syft => "syft",
            Tool::Trivy => "trivy",
        }
    }

    /// The release flag that needs this tool.
    fn flag(self) -> &'static str {
        match self {
            Tool::Cosign => "--sign",
            Tool::Syft => "--sbom",
            Tool::Trivy => "--scan",
        }
    }

    /// Where to get it, and the GitHub Action that installs it.
    fn install_hint(self) -> (&'static str, &'static str) {
        match self {
            Tool::Cosign => (
                "https://docs.sigstore.dev/cosign/system_config/installation/",
                "sigstore/cosign-installer",
            ),
            Tool::Syft => (
                "https://github.com/anchore/syft#installation",
                "anchore/sbom-action/download-syft",
            ),
            Tool::Trivy => (
                "https://trivy.dev/latest/getting-started/installation/",
                "aquasecurity/setup-trivy",
            ),
        }
    }
}

/// How cosign signs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Signing {
    /// Sigstore's keyless flow: a short-lived Fulcio certificate for the CI's OIDC identity
    /// (GitHub Actions: `permissions: id-token: write`), logged in Rekor.
    #[default]
    Keyless,
    /// `COSIGN_KEY` holds a private key (PEM); `COSIGN_PASSWORD` its password.
    Key,
}

impl Signing {
    /// Key mode when `COSIGN_KEY` is set (non-empty), keyless otherwise.
    pub(crate) fn from_env(vars: &BTreeMap<String, String>) -> Signing {
        match vars.get(ENV_COSIGN_KEY) {
            Some(v) if !v.is_empty() => Signing::Key,
            _ => Signing::Keyless,
        }
    }
}

/// Which gates a release runs and how.
#[derive(Debug, Clone)]
pub struct GateOptions {
    /// `--sbom`: an SPDX JSON SBOM per platform image (attested too when signing).
    pub sbom: bool,
    /// `--sign`: sign each index recursively, attest each SBOM.
    pub sign: bool,
    /// `--scan`: trivy gates each platform image.
    pub scan: bool,
    /// `--scanners`: what the scan looks for.
    pub scanners: Vec<Scanner>,
    /// Where the vuln scanner's DB comes from.
    pub trivy_db: TrivyDb,
    /// cosign uploads signatures and attestations to the transparency log (cosign's
    /// `--tlog-upload`, default true).
    pub tlog_upload: bool,
    /// Where SBOMs and scan reports are written (created if missing).
    pub out_dir: Utf8PathBuf,
    /// Comma-separated trivy severities that fail the scan.
    pub severity: String,
    pub signing: Signing,
    /// The registry speaks plain HTTP (a loopback test registry): each tool is told so.
    pub plain_http: bool,
    /// After signing, `cosign verify` each signed digest this way (key mode: with the public
    /// key), so "signed" means "verifies as users will verify it".
    pub check_signatures: Option<VerifyOptions>,
    /// `--boot` (and `--boot-timeout`): each variant is started as Headjack's runner would,
    /// and must come up.
    pub boot: Option<crate::hjk::boot::BootOptions>,
    /// `--key`: the public key the signatures must verify with; `COSIGN_KEY` must be its
    /// private half.
    pub key: Option<Utf8PathBuf>,
}

impl GateOptions {
    /// Checks the severity list; `signing` from `COSIGN_KEY` in `vars`.
    pub fn new(
        sbom: bool,
        sign: bool,
        scan: bool,
        out_dir: Utf8PathBuf,
        severity: Option<&str>,
        vars: &BTreeMap<String, String>,
    ) -> Result<GateOptions, UserError> {
        Ok(GateOptions {
            sbom,
            sign,
            scan,
            scanners: parse_scanners(DEFAULT_SCANNERS)?,
            trivy_db: TrivyDb::default(),
            tlog_upload: true,
            out_dir,
            severity: parse_severity(severity.unwrap_or(DEFAULT_SEVERITY))?,
            signing: Signing::from_env(vars),
            plain_http: false,
            check_signatures: None,
            boot: None,
            key: None,
        })
    }

    /// No gate: what a release without `--sign`, `--sbom`, `--scan` or `--boot` runs.
    pub(crate) fn none(out_dir: Utf8PathBuf) -> GateOptions {
        GateOptions {
            sbom: false,
            sign: false,
            scan: false,
            scanners: vec![Scanner::Vuln, Scanner::Secret],
            trivy_db: TrivyDb::default(),
            tlog_upload: true,
            out_dir,
            severity: DEFAULT_SEVERITY.into(),
            signing: Signing::Keyless,
            plain_http: false,
            check_signatures: None,
            boot: None,
            key: None,
        }
    }

    /// Whether the scan needs trivy's vulnerability DB.
    pub(crate) fn scans_vulns(&self) -> bool {
        self.scan && self.scanners.contains(&Scanner::Vuln)
    }

    /// Whether any gate runs (`--boot` included).
    pub(crate) fn any(&self) -> bool {
        self.uses_tools() || self.boot.is_some()
    }

    /// Whether a gate that runs cosign, syft or trivy was asked for.
    pub(crate) fn uses_tools(&self) -> bool {
        self.sbom || self.sign || self.scan
    }

    /// The tools these options need, in the order they run.
    pub(crate) fn tools(&self) -> Vec<Tool> {
        let mut out = Vec::new();
        if self.scan {
            out.push(Tool::Trivy);
        }
        if self.sbom {
            out.push(Tool::Syft);
        }
        if self.sign {
            out.push(Tool::Cosign);
        }
        out
    }

    pub(crate) fn sbom_path(&self, variant: &str, platform: Platform) -> Utf8PathBuf {
        self.out_dir
            .join(format!("{variant}-{}.spdx.json", platform.arch()))
    }

    pub(crate) fn scan_report_path(&self, variant: &str, platform: Platform) -> Utf8PathBuf {
        self.out_dir
            .join(format!("{variant}-{}.trivy.json", platform.arch()))
    }
}

/// Normalizes a comma-separated severity list (`high,critical` -> `HIGH,CRITICAL`).
pub(crate) fn parse_severity(s: &str) -> Result<String, UserError> {
    let mut out: Vec<String> = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let up = part.to_ascii_uppercase();
        if !SEVERITIES.contains(&up.as_str()) {
            return Err(UserError::setting(format!(
                "unknown scan severity {part:?}; use a comma-separated list of {}",
                SEVERITIES.join(", ")
            )));
        }
        if !out.contains(&up) {
            out.push(up);
        }
    }
    if out.is_empty() {
        return Err(UserError::setting(format!(
            "no scan severity given in {s:?}; e.g. {DEFAULT_SEVERITY}"
        )));
    }
    Ok(out.join(","))
}

/// The tools found on PATH, one absolute path each (the ones the options do not need are None).
#[derive(Debug, Clone, Default)]
pub struct Tools {
    cosign: Option<PathBuf>,
    syft: Option<PathBuf>,
    trivy: Option<PathBuf>,
}

impl Tools {
    /// Only cosign, at `path` (`hjk images verify`).
    pub(crate) fn with_cosign(path: PathBuf) -> Tools {
        Tools {
            cosign: Some(path),
            ..Tools::default()
        }
    }

    fn program(&self, tool: Tool) -> String {
        let found = match tool {
            Tool::Cosign => &self.cosign,
            Tool::Syft => &self.syft,
            Tool::Trivy => &self.trivy,
        };
        found
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| tool.program().to_string())
    }
}

/// Finds every tool the options need on `path`, before anything is pushed. A missing tool is
/// one line (exit 2) naming each missing tool, the flag that needs it and where to get it.
pub fn check_tools(opts: &GateOptions, path: Option<&OsString>) -> Result<Tools, UserError> {
    let mut tools = Tools::default();
    let mut missing = Vec::new();
    for tool in opts.tools() {
        match find_on_path(tool.program(), path) {
            Some(p) => match tool {
                Tool::Cosign => tools.cosign = Some(p),
                Tool::Syft => tools.syft = Some(p),
                Tool::Trivy => tools.trivy = Some(p),
            },
            None => missing.push(tool),
        }
    }
    if missing.is_empty() {
        return Ok(tools);
    }
    let each: Vec<String> = missing
        .iter()
        .map(|t| {
            let (url, action) = t.install_hint();
            format!(
                "{} needs `{}`, which is not on PATH: install it from {url} (GitHub Actions: {action})",
                t.flag(),
                t.program(),
            )
        })
        .collect();
    Err(UserError::tool(format!(
        "{}; nothing was built or pushed",
        each.join("; ")
    )))
}

pub(crate) use crate::digest::by_digest;

/// Where the tools find registry credentials: `DOCKER_CONFIG=<dir>` (the dir holds
/// `config.json`, the format every engine's login writes). None: each tool's default keychain.
fn auth_env(inv: Invocation, auth_dir: Option<&Utf8Path>) -> Invocation {
    match auth_dir {
        Some(d) => inv.env("DOCKER_CONFIG", d.as_str()),
        None => inv,
    }
}

/// `syft scan registry:<repo>@<digest> -o spdx-json=<file>`: the `registry:` scheme reads the
/// image from the registry (never a local daemon's copy of a similar name).
pub(crate) fn sbom(
    tools: &Tools,
    opts: &GateOptions,
    image: &str,
    out: &Utf8Path,
    auth_dir: Option<&Utf8Path>,
) -> Invocation {
    let mut inv = Invocation::new(tools.program(Tool::Syft)).args([
        "scan".to_string(),
        format!("registry:{image}"),
        "-o".to_string(),
        format!("spdx-json={out}"),
    ]);
    if opts.plain_http {
        inv = inv.env("SYFT_REGISTRY_INSECURE_USE_HTTP", "true");
    }
    // syft asks the network for a newer syft on every run; a release has no use for that
    auth_env(inv.env("SYFT_CHECK_FOR_APP_UPDATE", "false"), auth_dir)
}

/// The flags `sign` and `attest` share: non-interactive, the key by name, the transparency
/// log, plain HTTP.
fn cosign_common(opts: &GateOptions) -> Vec<String> {
    let mut args = vec!["--yes".to_string()];
    if opts.signing == Signing::Key {
        args.extend(["--key".to_string(), format!("env://{ENV_COSIGN_KEY}")]);
    }
    if !opts.tlog_upload {
        args.push("--tlog-upload=false".into());
    }
    if opts.plain_http {
        args.push("--allow-http-registry".into());
    }
    args
}

/// `cosign public-key --key env://COSIGN_KEY`: the public half of the signing key (it also
/// proves `COSIGN_PASSWORD` opens it), compared with `--key` before anything is pushed.
pub(crate) fn public_key(tools: &Tools) -> Invocation {
    Invocation::new(tools.program(Tool::Cosign))
        .args(["public-key", "--key"])
        .arg(format!("env://{ENV_COSIGN_KEY}"))
        .read_only()
}

/// The key material of a PEM public key (its base64 body, whitespace removed), so two files
/// that differ only in line breaks compare equal. None: not a PEM public key.
pub(crate) fn public_key_body(pem: &str) -> Option<String> {
    let start = pem.find("-----BEGIN PUBLIC KEY-----")? + "-----BEGIN PUBLIC KEY-----".len();
    let end = start + pem[start..].find("-----END PUBLIC KEY-----")?;
    let body: String = pem[start..end]
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    let ok = !body.is_empty()
        && body
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/' || b == b'=');
    ok.then_some(body)
}

/// What a signature must have been made with, for `cosign verify`: a public key, or a keyless
/// identity (the certificate Fulcio issued to a CI's OIDC identity).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Trust {
    /// `--key PATH`: a cosign public key.
    Key(Utf8PathBuf),
    /// `--certificate-identity-regexp` and `--certificate-oidc-issuer`.
    Keyless {
        identity_regexp: String,
        oidc_issuer: String,
    },
}

/// How `cosign verify` and `cosign verify-attestation` are run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyOptions {
    pub trust: Trust,
    /// `--insecure-ignore-tlog`: for signatures made with `--tlog-upload=false`.
    pub ignore_tlog: bool,
    pub plain_http: bool,
}

fn verify_common(v: &VerifyOptions) -> Vec<String> {
    let mut args = match &v.trust {
        Trust::Key(k) => vec!["--key".to_string(), k.to_string()],
        Trust::Keyless {
            identity_regexp,
            oidc_issuer,
        } => vec![
            "--certificate-identity-regexp".to_string(),
            identity_regexp.clone(),
            "--certificate-oidc-issuer".to_string(),
            oidc_issuer.clone(),
        ],
    };
    if v.ignore_tlog {
        args.push("--insecure-ignore-tlog".into());
    }
    if v.plain_http {
        args.push("--allow-http-registry".into());
    }
    args
}

/// `cosign verify <trust> <repo>@<digest>`: the image's signature. Its answer is its exit code
/// (and the verified payloads on stdout), so a failure is returned, not raised.
pub(crate) fn verify_signature(
    tools: &Tools,
    v: &VerifyOptions,
    image: &str,
    auth_dir: Option<&Utf8Path>,
) -> Invocation {
    let inv = Invocation::new(tools.program(Tool::Cosign))
        .arg("verify")
        .args(verify_common(v))
        .args(["--output", "json"])
        .arg(image)
        .may_fail();
    auth_env(inv, auth_dir)
}

/// `cosign verify-attestation --type <kind> <trust> <repo>@<digest>`: the signed attestations
/// of that type about the image; stdout holds each as a DSSE envelope (one JSON per line).
pub(crate) fn verify_attestation(
    tools: &Tools,
    v: &VerifyOptions,
    image: &str,
    kind: &str,
    auth_dir: Option<&Utf8Path>,
) -> Invocation {
    let inv = Invocation::new(tools.program(Tool::Cosign))
        .args(["verify-attestation", "--type", kind])
        .args(verify_common(v))
        .arg(image)
        .may_fail();
    auth_env(inv, auth_dir)
}

/// The in-toto statements in `cosign verify-attestation`'s stdout (one DSSE envelope per line,
/// its payload base64), as JSON.
pub(crate) fn attested_statements(stdout: &str) -> Vec<serde_json::Value> {
    use base64::Engine as _;
    stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l.trim()).ok())
        .filter_map(|env| {
            let payload = env["payload"].as_str()?;
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(payload)
                .ok()?;
            serde_json::from_slice(&bytes).ok()
        })
        .collect()
}

/// `cosign sign --yes --recursive <repo>@<index digest>`: the index and every manifest in it.
pub(crate) fn sign(
    tools: &Tools,
    opts: &GateOptions,
    index: &str,
    auth_dir: Option<&Utf8Path>,
) -> Invocation {
    let inv = Invocation::new(tools.program(Tool::Cosign))
        .arg("sign")
        .args(cosign_common(opts))
        .arg("--recursive")
        .arg(index);
    auth_env(inv, auth_dir)
}

/// `cosign attest --yes --type spdxjson --replace --predicate <sbom> <repo>@<platform digest>`.
/// cosign attest has no `--recursive`, so each platform image is attested with its own SBOM.
/// `--replace`: a rerun (a newer syft) replaces the image's SBOM attestation instead of adding
/// a second one that may disagree with the first.
pub(crate) fn attest(
    tools: &Tools,
    opts: &GateOptions,
    image: &str,
    sbom: &Utf8Path,
    auth_dir: Option<&Utf8Path>,
) -> Invocation {
    let inv = Invocation::new(tools.program(Tool::Cosign))
        .arg("attest")
        .args(cosign_common(opts))
        .args([
            "--type",
            SBOM_TYPE,
            "--replace",
            "--predicate",
            sbom.as_str(),
        ])
        .arg(image);
    auth_env(inv, auth_dir)
}

/// `trivy image` of one platform image from the registry with the chosen scanners, JSON report
/// to `report`, exit [`FINDINGS_EXIT`] on findings at the gated severities (vulnerabilities:
/// fixable ones). `ignorefile`: the variant's accepted findings. The vulnerability DB is never
/// downloaded here (`--skip-db-update`): [`download_db`] fetched it once, before anything was
/// built, or `--scan-cache-dir` holds it.
pub(crate) fn scan(
    tools: &Tools,
    opts: &GateOptions,
    image: &str,
    report: &Utf8Path,
    ignorefile: Option<&Utf8Path>,
    auth_dir: Option<&Utf8Path>,
) -> Invocation {
    let scanners: Vec<&str> = opts.scanners.iter().map(|s| s.name()).collect();
    let mut inv = Invocation::new(tools.program(Tool::Trivy)).args([
        "image",
        "--image-src",
        "remote",
        "--scanners",
        &scanners.join(","),
        "--severity",
        &opts.severity,
    ]);
    if opts.scanners.contains(&Scanner::Vuln) {
        inv = inv.arg("--ignore-unfixed");
    }
    inv = inv.args([
        "--exit-code",
        &FINDINGS_EXIT.to_string(),
        "--skip-db-update",
    ]);
    if let Some(d) = &opts.trivy_db.cache_dir {
        inv = inv.args(["--cache-dir", d.as_str()]);
    }
    inv = inv.args(["--format", "json", "--output", report.as_str()]);
    if let Some(f) = ignorefile {
        inv = inv.args(["--ignorefile", f.as_str()]);
    }
    if opts.plain_http {
        inv = inv.arg("--insecure");
    }
    // findings are an answer, not a failure: the gate reads the exit code
    auth_env(inv.arg(image), auth_dir).may_fail()
}

/// `trivy image --download-db-only`: the vulnerability DB, fetched once before anything is
/// built (from `--scan-db-repository`, else trivy's default repositories), so that a DB that
/// cannot be had refuses the release up front and every scan uses the same DB.
pub(crate) fn download_db(tools: &Tools, db: &TrivyDb) -> Invocation {
    let mut inv = Invocation::new(tools.program(Tool::Trivy)).args(["image", "--download-db-only"]);
    if let Some(r) = &db.repository {
        inv = inv.args(["--db-repository", r.as_str()]);
    }
    if let Some(d) = &db.cache_dir {
        inv = inv.args(["--cache-dir", d.as_str()]);
    }
    inv
}

/// The one line a release ends with when trivy's vulnerability DB cannot be had: what failed
/// (`why`), and the ways to give trivy a DB. The scan fails closed: nothing is built or pushed.
pub(crate) fn no_db(why: &str) -> UserError {
    UserError::tool(format!(
        "--scan with the vuln scanner needs trivy's vulnerability DB, and {why}: give trivy a DB it can reach with --scan-db-repository REPO (a mirror of ghcr.io/aquasecurity/trivy-db) or TRIVY_DB_REPOSITORY, or a cache directory that holds one with --scan-cache-dir DIR (db/trivy.db, e.g. from `trivy image --download-db-only --cache-dir DIR` where it can be reached), or scan without it (--scanners secret); nothing was built or pushed"
    ))
}

/// What trivy said when it could not download its DB, as a short phrase: the repository it
/// tried, where its FATAL line names one.
pub(crate) fn db_failure(output: &str) -> String {
    let fatal = output
        .lines()
        .rev()
        .find(|l| l.contains("FATAL"))
        .unwrap_or_else(|| output.lines().last().unwrap_or(""));
    if let Some(i) = fatal.find("failed to download artifact from ") {
        let rest = &fatal[i + "failed to download artifact from ".len()..];
        let repo = rest.split(": ").next().unwrap_or(rest);
        return format!("trivy could not download it from {repo}");
    }
    let text = fatal
        .split_once("Fatal error")
        .map(|(_, t)| t)
        .unwrap_or(fatal)
        .trim();
    let short: String = text.chars().take(200).collect();
    format!("trivy could not download it ({short})")
}

/// One finding of a scan: what it is and where.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finding {
    pub severity: String,
    /// `vulnerability` or `secret`.
    pub kind: String,
    /// The CVE, or the secret rule's id (`private-key`).
    pub id: String,
    /// The package (a vulnerability) or the file (a secret).
    pub target: String,
    /// The rule's title (a secret) or the package's installed version (a vulnerability).
    pub title: String,
}

impl Finding {
    /// `secret private-key (Asymmetric Private Key) in /etc/x.pem`, `CVE-1 in openssl 3.0`.
    pub(crate) fn describe(&self) -> String {
        match self.kind.as_str() {
            "secret" => format!("secret {} ({}) in {}", self.id, self.title, self.target),
            _ => format!("{} in {} {}", self.id, self.target, self.title),
        }
    }
}

/// The findings in a trivy JSON report: vulnerabilities and secrets (trivy already left out
/// the severities not gated and the `.trivyignore` entries).
pub(crate) fn findings(report: &str) -> Result<Vec<Finding>, serde_json::Error> {
    let v: serde_json::Value = serde_json::from_str(report)?;
    let text = |x: &serde_json::Value| x.as_str().unwrap_or("").to_string();
    let mut out = Vec::new();
    for result in v["Results"].as_array().into_iter().flatten() {
        for vuln in result["Vulnerabilities"].as_array().into_iter().flatten() {
            out.push(Finding {
                severity: vuln["Severity"].as_str().unwrap_or("UNKNOWN").to_string(),
                kind: "vulnerability".into(),
                id: text(&vuln["VulnerabilityID"]),
                target: text(&vuln["PkgName"]),
                title: text(&vuln["InstalledVersion"]),
            });
        }
        for secret in result["Secrets"].as_array().into_iter().flatten() {
            out.push(Finding {
                severity: secret["Severity"].as_str().unwrap_or("UNKNOWN").to_string(),
                kind: "secret".into(),
                id: text(&secret["RuleID"]),
                target: text(&result["Target"]),
                title: text(&secret["Title"]),
            });
        }
    }
    Ok(out)
}

/// Counts the findings (vulnerabilities and secrets) in a trivy JSON report by severity.
#[cfg(test)]
pub(crate) fn count_findings(report: &str) -> Result<BTreeMap<String, u64>, serde_json::Error> {
    let mut counts = BTreeMap::new();
    for f in findings(report)? {
        *counts.entry(f.severity).or_insert(0) += 1;
    }
    Ok(counts)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(signing: Signing, plain_http: bool) -> GateOptions {
        GateOptions {
            sbom: true,
            sign: true,
            scan: true,
            scanners: vec![Scanner::Vuln, Scanner::Secret],
            trivy_db: TrivyDb::default(),
            tlog_upload: true,
            out_dir: "/out".into(),
            severity: DEFAULT_SEVERITY.into(),
            signing,
            plain_http,
            check_signatures: None,
            boot: None,
            key: None,
        }
    }

    const IDX: &str = "ghcr.io/gilmanlab/headjack@sha256:aaaa";
    const IMG: &str = "ghcr.io/gilmanlab/headjack@sha256:bbbb";

    #[test]
    fn command_lines() {
        let t = Tools::default();
        let o = opts(Signing::Keyless, false);
        let auth = Some(Utf8Path::new("/tmp/auth"));
        let lines = [
            sign(&t, &o, IDX, auth).to_string(),
            attest(&t, &o, IMG, "/out/base-amd64.spdx.json".into(), None).to_string(),
            sbom(&t, &o, IMG, "/out/base-amd64.spdx.json".into(), None).to_string(),
            scan(
                &t,
                &o,
                IMG,
                "/out/base-amd64.trivy.json".into(),
                Some("images/base/.trivyignore".into()),
                None,
            )
            .to_string(),
        ];
        insta::assert_snapshot!(lines.join("\n"));
        let key = opts(Signing::Key, true);
        let lines = [
            sign(&t, &key, IDX, None).to_string(),
            attest(&t, &key, IMG, "/out/x.spdx.json".into(), None).to_string(),
            sbom(&t, &key, IMG, "/out/x.spdx.json".into(), None).to_string(),
            scan(&t, &key, IMG, "/out/x.trivy.json".into(), None, None).to_string(),
        ];
        insta::assert_snapshot!("key_mode_plain_http", lines.join("\n"));
    }

    #[test]
    fn scan_may_fail_and_keys_stay_out_of_argv() {
        let t = Tools::default();
        let o = opts(Signing::Key, false);
        assert!(scan(&t, &o, IMG, "/r".into(), None, None).may_fail);
        let inv = sign(&t, &o, IDX, None);
        assert!(inv.args.contains(&"env://COSIGN_KEY".to_string()));
        assert!(inv.env.is_empty(), "{:?}", inv.env);
    }

    #[test]
    fn signing_mode_follows_cosign_key() {
        let mut vars = BTreeMap::new();
        assert_eq!(Signing::from_env(&vars), Signing::Keyless);
        vars.insert("COSIGN_KEY".into(), String::new());
        assert_eq!(Signing::from_env(&vars), Signing::Keyless);
        vars.insert("COSIGN_KEY".into(), "-----BEGIN ENCRYPTED SIGSTORE".into());
        assert_eq!(Signing::from_env(&vars), Signing::Key);
    }

    #[test]
    fn severities_are_checked_and_normalized() {
        assert_eq!(
            parse_severity("high, critical,HIGH").unwrap(),
            "HIGH,CRITICAL"
        );
        let e = parse_severity("HIGH,SEVERE").unwrap_err();
        assert_eq!(
            e.message(),
            "unknown scan severity \"SEVERE\"; use a comma-separated list of UNKNOWN, LOW, MEDIUM, HIGH, CRITICAL"
        );
        assert!(parse_severity(" , ").is_err());
    }

    #[test]
    fn missing_tools_are_one_line_naming_flag_and_hint() {
        let dir = tempfile::tempdir().unwrap();
        let path: OsString = dir.path().as_os_str().to_owned();
        let bin = dir.path().join("syft");
        std::fs::write(&bin, "#!/bin/sh\n").unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
        let o = opts(Signing::Keyless, false);
        let err = check_tools(&o, Some(&path)).unwrap_err();
        assert!(!err.message().contains('\n'));
        assert!(
            err.message().starts_with(
                "--scan needs `trivy`, which is not on PATH: install it from https://trivy.dev/"
            ),
            "{}",
            err.message()
        );
        assert!(
            err.message().contains("; --sign needs `cosign`"),
            "{}",
            err.message()
        );
        assert!(!err.message().contains("--sbom needs"), "{}", err.message());
        assert!(err.message().ends_with("nothing was built or pushed"));
        // only what the options ask for is needed
        let only_sbom = GateOptions {
            sign: false,
            scan: false,
            ..o
        };
        let tools = check_tools(&only_sbom, Some(&path)).unwrap();
        assert_eq!(tools.program(Tool::Syft), bin.display().to_string());
    }

    #[test]
    fn scanners_tlog_and_the_db_reach_the_commands() {
        let t = Tools::default();
        let mut o = opts(Signing::Key, true);
        o.scanners = parse_scanners("secret").unwrap();
        o.tlog_upload = false;
        o.trivy_db.cache_dir = Some("/cache".into());
        let scan = scan(&t, &o, IMG, "/r.json".into(), None, None).to_string();
        assert_eq!(
            scan,
            "trivy image --image-src remote --scanners secret --severity CRITICAL,HIGH --exit-code 3 --skip-db-update --cache-dir /cache --format json --output /r.json --insecure ghcr.io/gilmanlab/headjack@sha256:bbbb"
        );
        let sign = sign(&t, &o, IDX, None).to_string();
        assert_eq!(
            sign,
            "cosign sign --yes --key env://COSIGN_KEY --tlog-upload=false --allow-http-registry --recursive ghcr.io/gilmanlab/headjack@sha256:aaaa"
        );
        let attest = attest(&t, &o, IMG, "/s.json".into(), None).to_string();
        assert!(
            attest.contains(" --tlog-upload=false ") && attest.contains(" --replace "),
            "{attest}"
        );
        let db = TrivyDb {
            repository: Some("mirror.example/trivy-db:2".into()),
            cache_dir: Some("/cache".into()),
        };
        assert!(!db.offline());
        assert_eq!(
            download_db(&t, &db).to_string(),
            "trivy image --download-db-only --db-repository mirror.example/trivy-db:2 --cache-dir /cache"
        );
        assert!(TrivyDb {
            repository: None,
            cache_dir: Some("/c".into())
        }
        .offline());
        assert_eq!(
            public_key(&t).to_string(),
            "cosign public-key --key env://COSIGN_KEY"
        );
    }

    #[test]
    fn verify_commands_with_a_key_and_keyless() {
        let t = Tools::default();
        let key = VerifyOptions {
            trust: Trust::Key("/k/cosign.pub".into()),
            ignore_tlog: true,
            plain_http: true,
        };
        let v = verify_signature(&t, &key, IMG, Some("/tmp/auth".into()));
        assert!(v.may_fail);
        assert_eq!(
            v.to_string(),
            "DOCKER_CONFIG=/tmp/auth cosign verify --key /k/cosign.pub --insecure-ignore-tlog --allow-http-registry --output json ghcr.io/gilmanlab/headjack@sha256:bbbb"
        );
        // the workflow's keyless identity: only ever run as argv here (no OIDC, no Fulcio)
        let keyless = VerifyOptions {
            trust: Trust::Keyless {
                identity_regexp: "^https://github.com/gilmanlab/agent-images/".into(),
                oidc_issuer: "https://token.actions.githubusercontent.com".into(),
            },
            ignore_tlog: false,
            plain_http: false,
        };
        assert_eq!(
            verify_attestation(&t, &keyless, IMG, SBOM_TYPE, None).to_string(),
            "cosign verify-attestation --type spdxjson --certificate-identity-regexp ^https://github.com/gilmanlab/agent-images/ --certificate-oidc-issuer https://token.actions.githubusercontent.com ghcr.io/gilmanlab/headjack@sha256:bbbb"
        );
        // keyless signing: no key flag, the tlog as cosign defaults
        let o = opts(Signing::Keyless, false);
        assert_eq!(
            sign(&t, &o, IDX, None).to_string(),
            "cosign sign --yes --recursive ghcr.io/gilmanlab/headjack@sha256:aaaa"
        );
    }

    #[test]
    fn scanners_are_trivys_names_checked_up_front() {
        assert_eq!(
            parse_scanners("secret, VULN,secret").unwrap(),
            [Scanner::Vuln, Scanner::Secret]
        );
        let e = parse_scanners("vuln,misconfig").unwrap_err();
        assert_eq!(
            e.message(),
            "unknown scanner \"misconfig\" in --scanners; use vuln and/or secret (trivy's names), e.g. --scanners secret"
        );
        assert!(parse_scanners(",").is_err());
    }

    #[test]
    fn public_keys_compare_by_their_key_material() {
        let a = "-----BEGIN PUBLIC KEY-----\nMFkwEw\nYHKo==\n-----END PUBLIC KEY-----\n";
        let b = "-----BEGIN PUBLIC KEY-----\nMFkwEwYHKo==\n-----END PUBLIC KEY-----";
        assert_eq!(public_key_body(a), public_key_body(b));
        assert_eq!(public_key_body(a).as_deref(), Some("MFkwEwYHKo=="));
        assert!(public_key_body("-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----\nx\n").is_none());
        assert!(public_key_body("-----BEGIN PUBLIC KEY-----\n-----END PUBLIC KEY-----").is_none());
    }

    #[test]
    fn a_db_download_failure_is_one_line_naming_the_repository() {
        // what trivy 0.59.1 printed here, with no route to its DB
        let out = "2026-12-07T06:01:41Z\tINFO\t[vulndb] Downloading artifact...\trepo=\"mirror.gcr.io/aquasec/trivy-db:2\"\n2026-12-07T06:01:41Z\tFATAL\tFatal error\tinit error: DB error: failed to download vulnerability DB: OCI artifact error: failed to download vulnerability DB: failed to download artifact from mirror.gcr.io/aquasec/trivy-db:2: OCI repository error: 1 error occurred:\n\t* Get \"https://mirror.gcr.io/v2/\": dial tcp: lookup mirror.gcr.io: no such host\n";
        let why = db_failure(out);
        assert_eq!(
            why,
            "trivy could not download it from mirror.gcr.io/aquasec/trivy-db:2"
        );
        let e = no_db(&why);
        assert!(!e.message().contains('\n'));
        assert!(
            e.message().contains("--scan-db-repository REPO")
                && e.message().contains("--scan-cache-dir DIR")
        );
        assert_eq!(
            db_failure("2026\tFATAL\tFatal error\tsomething else"),
            "trivy could not download it (something else)"
        );
    }

    #[test]
    fn secrets_are_findings_with_their_file() {
        // the shape trivy 0.59.1 writes for the planted key of tests/fixtures/supply
        let report = r#"{"Results": [{"Target": "/etc/hjk-fixture/deploy.pem", "Class": "secret",
            "Secrets": [{"RuleID": "private-key", "Category": "AsymmetricPrivateKey",
            "Severity": "HIGH", "Title": "Asymmetric Private Key", "StartLine": 1}]}]}"#;
        let f = findings(report).unwrap();
        assert_eq!(
            f[0].describe(),
            "secret private-key (Asymmetric Private Key) in /etc/hjk-fixture/deploy.pem"
        );
        assert_eq!(count_findings(report).unwrap().get("HIGH"), Some(&1));
    }

    #[test]
    fn attested_statements_are_decoded_from_dsse_lines() {
        use base64::Engine as _;
        let stmt = r#"{"_type":"https://in-toto.io/Statement/v0.1","predicateType":"https://spdx.dev/Document","subject":[{"name":"r","digest":{"sha256":"bbbb"}}],"predicate":{"spdxVersion":"SPDX-2.3"}}"#;
        let line = serde_json::json!({
            "payloadType": "application/vnd.in-toto+json",
            "payload": base64::engine::general_purpose::STANDARD.encode(stmt),
            "signatures": [{"sig": "x"}],
        });
        let got = attested_statements(&format!("{line}\nnot json\n"));
        assert_eq!(got.len(), 1);
        assert_eq!(got[0]["predicateType"], SBOM_PREDICATE);
    }

    #[test]
    fn findings_are_counted_by_severity() {
        let report = r#"{"Results": [
            {"Target": "x", "Vulnerabilities": [{"Severity": "HIGH"}, {"Severity": "CRITICAL"}, {"Severity": "HIGH"}]},
            {"Target": "y"}
        ]}"#;
        let c = count_findings(report).unwrap();
        assert_eq!(c.get("HIGH"), Some(&2));
        assert_eq!(c.get("CRITICAL"), Some(&1));
        assert!(count_findings(r#"{"Results": null}"#).unwrap().is_empty());
        assert!(count_findings("not json").is_err());
    }
}
