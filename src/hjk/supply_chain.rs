//! The supply-chain tools of a release as commands (data): syft writes an SPDX SBOM per platform
//! image, cosign signs the index (and, with `--recursive`, every platform manifest) and attests
//! each SBOM, trivy gates on vulnerabilities. Everything is addressed by digest, so what is
//! signed, attested and scanned is exactly what was pushed, whatever a tag says meanwhile.
//!
//! The tools are found on PATH before anything is pushed ([`check_tools`]); each call is an
//! [`Invocation`] built here and run by [`super::gates`] through `Engine::tool`. No secret is
//! in an argv: registry credentials reach the tools through `DOCKER_CONFIG` (a directory the
//! release logged in to), a signing key through `--key env://COSIGN_KEY` (the tool reads the
//! variable it inherits; `COSIGN_PASSWORD` likewise).

pub mod gates;

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
pub const FINDINGS_EXIT: i32 = 3;

/// The severities that fail the scan gate unless `--scan-severity` says otherwise.
pub const DEFAULT_SEVERITY: &str = "CRITICAL,HIGH";

/// trivy's severity names.
const SEVERITIES: [&str; 5] = ["UNKNOWN", "LOW", "MEDIUM", "HIGH", "CRITICAL"];

/// The environment variable that selects key-based signing; cosign reads the PEM from it.
pub const ENV_COSIGN_KEY: &str = "COSIGN_KEY";

/// The per-variant file of accepted findings, in the variant's directory.
pub const TRIVYIGNORE: &str = ".trivyignore";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Tool {
    Cosign,
    Syft,
    Trivy,
}

impl Tool {
    pub fn program(self) -> &'static str {
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
    pub fn from_env(vars: &BTreeMap<String, String>) -> Signing {
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
    /// Where SBOMs and scan reports are written (created if missing).
    pub out_dir: Utf8PathBuf,
    /// Comma-separated trivy severities that fail the scan.
    pub severity: String,
    pub signing: Signing,
    /// The registry speaks plain HTTP (a loopback test registry): each tool is told so.
    pub plain_http: bool,
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
            out_dir,
            severity: parse_severity(severity.unwrap_or(DEFAULT_SEVERITY))?,
            signing: Signing::from_env(vars),
            plain_http: false,
        })
    }

    pub fn any(&self) -> bool {
        self.sbom || self.sign || self.scan
    }

    /// The tools these options need, in the order they run.
    pub fn tools(&self) -> Vec<Tool> {
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

    pub fn sbom_path(&self, variant: &str, platform: Platform) -> Utf8PathBuf {
        self.out_dir
            .join(format!("{variant}-{}.spdx.json", platform.arch()))
    }

    pub fn scan_report_path(&self, variant: &str, platform: Platform) -> Utf8PathBuf {
        self.out_dir
            .join(format!("{variant}-{}.trivy.json", platform.arch()))
    }
}

/// Normalizes a comma-separated severity list (`high,critical` -> `HIGH,CRITICAL`).
pub fn parse_severity(s: &str) -> Result<String, UserError> {
    let mut out: Vec<String> = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let up = part.to_ascii_uppercase();
        if !SEVERITIES.contains(&up.as_str()) {
            return Err(UserError(format!(
                "unknown scan severity {part:?}; use a comma-separated list of {}",
                SEVERITIES.join(", ")
            )));
        }
        if !out.contains(&up) {
            out.push(up);
        }
    }
    if out.is_empty() {
        return Err(UserError(format!(
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
    Err(UserError(format!(
        "{}; nothing was built or pushed",
        each.join("; ")
    )))
}

/// A reference by digest: `<repository>@<digest>`.
pub fn by_digest(repository: &str, digest: &str) -> String {
    format!("{repository}@{digest}")
}

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
pub fn sbom(
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
    auth_env(inv, auth_dir)
}

/// The flags `sign` and `attest` share: non-interactive, the key by name, plain HTTP.
fn cosign_common(opts: &GateOptions) -> Vec<String> {
    let mut args = vec!["--yes".to_string()];
    if opts.signing == Signing::Key {
        args.extend(["--key".to_string(), format!("env://{ENV_COSIGN_KEY}")]);
    }
    if opts.plain_http {
        args.push("--allow-http-registry".into());
    }
    args
}

/// `cosign sign --yes --recursive <repo>@<index digest>`: the index and every manifest in it.
pub fn sign(
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

/// `cosign attest --yes --type spdxjson --predicate <sbom> <repo>@<platform digest>`. cosign
/// attest has no `--recursive`, so each platform image is attested with its own SBOM.
pub fn attest(
    tools: &Tools,
    opts: &GateOptions,
    image: &str,
    sbom: &Utf8Path,
    auth_dir: Option<&Utf8Path>,
) -> Invocation {
    let inv = Invocation::new(tools.program(Tool::Cosign))
        .arg("attest")
        .args(cosign_common(opts))
        .args(["--type", "spdxjson", "--predicate", sbom.as_str()])
        .arg(image);
    auth_env(inv, auth_dir)
}

/// `trivy image` of one platform image from the registry, JSON report to `report`, exit
/// [`FINDINGS_EXIT`] on fixable findings at the gated severities. `ignorefile`: the variant's
/// accepted findings.
pub fn scan(
    tools: &Tools,
    opts: &GateOptions,
    image: &str,
    report: &Utf8Path,
    ignorefile: Option<&Utf8Path>,
    auth_dir: Option<&Utf8Path>,
) -> Invocation {
    let mut inv = Invocation::new(tools.program(Tool::Trivy)).args([
        "image",
        "--image-src",
        "remote",
        "--severity",
        &opts.severity,
        "--ignore-unfixed",
        "--exit-code",
        &FINDINGS_EXIT.to_string(),
        "--format",
        "json",
        "--output",
        report.as_str(),
    ]);
    if let Some(f) = ignorefile {
        inv = inv.args(["--ignorefile", f.as_str()]);
    }
    if opts.plain_http {
        inv = inv.arg("--insecure");
    }
    // findings are an answer, not a failure: the gate reads the exit code
    auth_env(inv.arg(image), auth_dir).may_fail()
}

/// Counts the vulnerabilities in a trivy JSON report by severity.
pub fn count_findings(report: &str) -> Result<BTreeMap<String, u64>, serde_json::Error> {
    let v: serde_json::Value = serde_json::from_str(report)?;
    let mut counts = BTreeMap::new();
    for result in v["Results"].as_array().into_iter().flatten() {
        for vuln in result["Vulnerabilities"].as_array().into_iter().flatten() {
            let sev = vuln["Severity"].as_str().unwrap_or("UNKNOWN").to_string();
            *counts.entry(sev).or_insert(0) += 1;
        }
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
            out_dir: "/out".into(),
            severity: DEFAULT_SEVERITY.into(),
            signing,
            plain_http,
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
            e.0,
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
        assert!(!err.0.contains('\n'));
        assert!(
            err.0.starts_with(
                "--scan needs `trivy`, which is not on PATH: install it from https://trivy.dev/"
            ),
            "{}",
            err.0
        );
        assert!(err.0.contains("; --sign needs `cosign`"), "{}", err.0);
        assert!(!err.0.contains("--sbom needs"), "{}", err.0);
        assert!(err.0.ends_with("nothing was built or pushed"));
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
