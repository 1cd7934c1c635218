//! The one HTTP stack. The opencode download (`ocx::opencode`) and the registry client
//! (`hjk::registry`, through oci-client) both speak HTTP through reqwest 0.13 with rustls and
//! the platform's certificate verifier, configured here, once:
//!
//! - **Trust**: the platform's store (rustls-platform-verifier: on Linux the system bundle, or
//!   instead what `SSL_CERT_FILE` / `SSL_CERT_DIR` name, as OpenSSL reads them; on macOS and
//!   Windows their own stores, which ignore those variables), plus the certificates in
//!   `SSL_CERT_FILE` and `SSL_CERT_DIR`, loaded here once and added to both clients, so a
//!   corporate CA named there is trusted on every OS, by the download and the registry alike.
//! - **Proxies**: `HTTPS_PROXY`, `HTTP_PROXY`, `ALL_PROXY` and `NO_PROXY` (either case), read by
//!   reqwest when a client is built, with curl's rules. Neither client sets a proxy of its own:
//!   that would turn the environment's off.
//! - **User agent**: [`USER_AGENT`] (GitHub's API refuses requests without one).
//!
//! oci-client 0.18 builds its own `reqwest::Client` from a `ClientConfig` and cannot take ours,
//! so the registry gets the same configuration ([`oci_config`]), not the same client object.
//!
//! The TLS stack reads the process environment itself (rustls-native-certs, reqwest's proxy
//! matcher), so this module reads `SSL_CERT_FILE` and `SSL_CERT_DIR` from there too, not from a
//! workflow's copy of it: both must see the same values. Nothing here runs before something is
//! downloaded or a registry is read, so a no-op build builds no client.

use crate::error::UserError;
use anyhow::{anyhow, Result};
use std::error::Error as StdError;
use std::sync::OnceLock;
use std::time::Duration;

/// What both clients send as `User-Agent`.
pub const USER_AGENT: &str = concat!("agent-images/", env!("CARGO_PKG_VERSION"));
/// A PEM file of CA certificates to trust (OpenSSL's variable).
pub const SSL_CERT_FILE: &str = "SSL_CERT_FILE";
/// Directories (`:`-separated) of PEM files of CA certificates to trust (OpenSSL's variable).
pub const SSL_CERT_DIR: &str = "SSL_CERT_DIR";

/// How long the download waits for a connection, and then for each read.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(20);
pub const READ_TIMEOUT: Duration = Duration::from_secs(120);

/// The configuration both clients are built from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Settings {
    /// DER certificates from `SSL_CERT_FILE` and `SSL_CERT_DIR`, trusted beside the platform's.
    pub extra_roots: Vec<Vec<u8>>,
}

impl Settings {
    /// Reads `SSL_CERT_FILE` and `SSL_CERT_DIR` through `var`. A variable that names nothing
    /// readable is the user's to fix (one line, exit 2), before any connection.
    pub fn from_env(var: impl Fn(&str) -> Option<String>) -> Result<Settings, UserError> {
        let mut roots = Vec::new();
        if let Some(file) = var(SSL_CERT_FILE) {
            if file.is_empty() {
                return Err(UserError(format!(
                    "{SSL_CERT_FILE} is set but empty: unset it, or name a PEM file of CA certificates"
                )));
            }
            let path = std::path::Path::new(&file);
            let got = rustls_native_certs::load_certs_from_paths(Some(path), None);
            refuse_errors(SSL_CERT_FILE, &file, &got.errors)?;
            if got.certs.is_empty() {
                return Err(UserError(format!(
                    "{SSL_CERT_FILE}={file} holds no PEM certificate (-----BEGIN CERTIFICATE-----)"
                )));
            }
            roots.extend(got.certs.iter().map(|c| c.to_vec()));
        }
        if let Some(dirs) = var(SSL_CERT_DIR) {
            for dir in std::env::split_paths(&dirs).filter(|d| !d.as_os_str().is_empty()) {
                let got = rustls_native_certs::load_certs_from_paths(None, Some(&dir));
                refuse_errors(SSL_CERT_DIR, &dir.display().to_string(), &got.errors)?;
                roots.extend(got.certs.iter().map(|c| c.to_vec()));
            }
        }
        roots.sort();
        roots.dedup();
        Ok(Settings { extra_roots: roots })
    }

    /// This process's settings, read once.
    pub fn get() -> Result<&'static Settings, UserError> {
        static SETTINGS: OnceLock<Result<Settings, UserError>> = OnceLock::new();
        SETTINGS
            .get_or_init(|| Settings::from_env(|k| std::env::var(k).ok()))
            .as_ref()
            .map_err(Clone::clone)
    }

    /// The download client: these roots, the environment's proxies, [`USER_AGENT`], redirects
    /// followed (GitHub's release assets redirect), [`CONNECT_TIMEOUT`] and [`READ_TIMEOUT`].
    pub fn client(&self) -> Result<reqwest::Client> {
        let failed = |e: reqwest::Error| match self.extra_roots.is_empty() {
            true => anyhow!("setting up the HTTP client: {}", describe(&e)),
            false => anyhow!(
                "setting up the HTTP client with the CA certificates of {SSL_CERT_FILE}/{SSL_CERT_DIR}: {}",
                describe(&e)
            ),
        };
        let roots = self
            .extra_roots
            .iter()
            .map(|der| reqwest::Certificate::from_der(der))
            .collect::<Result<Vec<_>, _>>()
            .map_err(failed)?;
        reqwest::Client::builder()
            .user_agent(USER_AGENT)
            .tls_certs_merge(roots)
            .connect_timeout(CONNECT_TIMEOUT)
            .read_timeout(READ_TIMEOUT)
            .build()
            .map_err(failed)
    }

    /// The registry client's configuration: the same roots and user agent, and no proxy of its
    /// own (oci-client then leaves reqwest to read the environment's, as the download does).
    pub fn oci_config(&self) -> oci_client::client::ClientConfig {
        use oci_client::client::{Certificate, CertificateEncoding, ClientConfig};
        ClientConfig {
            extra_root_certificates: self
                .extra_roots
                .iter()
                .map(|der| Certificate {
                    encoding: CertificateEncoding::Der,
                    data: der.clone(),
                })
                .collect(),
            user_agent: USER_AGENT,
            https_proxy: None,
            http_proxy: None,
            no_proxy: None,
            ..Default::default()
        }
    }
}

fn refuse_errors(
    var: &str,
    value: &str,
    errors: &[rustls_native_certs::Error],
) -> Result<(), UserError> {
    match errors.first() {
        None => Ok(()),
        Some(e) => Err(UserError(format!(
            "{var}={value} cannot be used: {e}; name readable PEM files of CA certificates, or unset it"
        ))),
    }
}

/// The registry client's configuration from this process's settings (see
/// [`Settings::oci_config`]); the caller adds what is its own (the protocol).
pub fn oci_config() -> Result<oci_client::client::ClientConfig, UserError> {
    Ok(Settings::get()?.oci_config())
}

/// The registry client. oci-client's own `Client::new` replaces a configuration it cannot
/// build with its defaults (and only logs it), which would drop the roots above; this fails
/// instead.
pub fn oci_client(config: oci_client::client::ClientConfig) -> Result<oci_client::Client> {
    oci_client::Client::try_from(config)
        .map_err(|e| anyhow!("setting up the registry client: {}", describe_oci(&e)))
}

/// The download client, built on first use (a no-op build never builds one).
#[derive(Default)]
pub struct LazyClient(OnceLock<reqwest::Client>);

impl LazyClient {
    pub fn get(&self) -> Result<&reqwest::Client> {
        if let Some(c) = self.0.get() {
            return Ok(c);
        }
        let c = Settings::get()?.client()?;
        Ok(self.0.get_or_init(|| c))
    }
}

/// A failed request in one line: a certificate the trust store refused names the server and,
/// when no trusted CA signed it, `SSL_CERT_FILE`; anything else is its chain of causes.
pub fn describe(err: &reqwest::Error) -> String {
    let server = err.url().and_then(|u| {
        let host = u.host_str()?;
        Some(match u.port_or_known_default() {
            Some(p) => format!("{host}:{p}"),
            None => host.to_string(),
        })
    });
    describe_chain(err, server.as_deref())
}

/// [`describe`] for an oci-client error (its request errors are reqwest's).
pub fn describe_oci(err: &oci_client::errors::OciDistributionError) -> String {
    match err {
        oci_client::errors::OciDistributionError::RequestError(e) => describe(e),
        other => describe_chain(other, None),
    }
}

fn describe_chain(err: &(dyn StdError + 'static), server: Option<&str>) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut next = Some(err);
    while let Some(e) = next {
        if let Some(rustls::Error::InvalidCertificate(why)) = rustls_error(e) {
            return refused_certificate(why, server);
        }
        let text = e.to_string();
        // reqwest and hyper repeat their source's text in their own now and then
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        next = e.source();
    }
    parts.join(": ")
}

/// A rustls error in the chain, also where it hides inside an `io::Error` (whose `source` skips
/// the error it wraps).
fn rustls_error<'a>(e: &'a (dyn StdError + 'static)) -> Option<&'a rustls::Error> {
    if let Some(tls) = e.downcast_ref::<rustls::Error>() {
        return Some(tls);
    }
    e.downcast_ref::<std::io::Error>()
        .and_then(|io| io.get_ref())
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
}

fn refused_certificate(why: &rustls::CertificateError, server: Option<&str>) -> String {
    let whose = match server {
        Some(s) => format!("the TLS certificate of {s}"),
        None => "the server's TLS certificate".to_string(),
    };
    match why {
        rustls::CertificateError::UnknownIssuer => format!(
            "{whose} is not signed by a CA this machine trusts (invalid peer certificate: {why}); if your own CA signs it, name the CA's PEM file in {SSL_CERT_FILE}"
        ),
        _ => format!("{whose} was refused (invalid peer certificate: {why})"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_read_the_certificate_variables_and_refuse_what_they_cannot_use() {
        let none = Settings::from_env(|_| None).unwrap();
        assert!(none.extra_roots.is_empty());
        let dir = tempfile::tempdir().unwrap();
        let empty_var = Settings::from_env(|k| (k == SSL_CERT_FILE).then(String::new));
        assert!(empty_var.unwrap_err().0.contains("set but empty"));
        let missing = dir.path().join("missing.pem").display().to_string();
        let err = Settings::from_env(|k| (k == SSL_CERT_FILE).then(|| missing.clone()))
            .unwrap_err()
            .0;
        assert!(
            err.starts_with(&format!("SSL_CERT_FILE={missing} cannot be used: ")),
            "{err}"
        );
        let not_pem = dir.path().join("notes.txt");
        std::fs::write(&not_pem, "no certificate here\n").unwrap();
        let not_pem = not_pem.display().to_string();
        let err = Settings::from_env(|k| (k == SSL_CERT_FILE).then(|| not_pem.clone()))
            .unwrap_err()
            .0;
        assert!(err.contains("holds no PEM certificate"), "{err}");
        // an empty directory adds nothing and is no error; an empty entry is skipped
        let d = dir.path().display().to_string();
        let s = Settings::from_env(|k| (k == SSL_CERT_DIR).then(|| format!(":{d}"))).unwrap();
        assert!(s.extra_roots.is_empty());
    }

    #[test]
    fn the_registry_gets_the_same_roots_and_user_agent_and_no_proxy_of_its_own() {
        let s = Settings {
            extra_roots: vec![vec![0x30, 0x03, 0x02, 0x01, 0x01]],
        };
        let c = s.oci_config();
        assert_eq!(c.extra_root_certificates.len(), 1);
        assert_eq!(c.extra_root_certificates[0].data, s.extra_roots[0]);
        assert_eq!(c.user_agent, USER_AGENT);
        assert!(c.https_proxy.is_none() && c.http_proxy.is_none());
    }
}
