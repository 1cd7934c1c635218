//! The one HTTP stack. The opencode download (`ocx::opencode`) and the registry client
//! (`hjk::release::registry`, through oci-client) both speak HTTP through reqwest 0.13 with rustls and
//! the platform's certificate verifier, configured in one place, [`Settings::config`]:
//!
//! - **Trust**: the platform's store (rustls-platform-verifier: on Linux the system bundle, or
//!   instead what `SSL_CERT_FILE` / `SSL_CERT_DIR` name, as OpenSSL and curl read them; on macOS
//!   and Windows their own stores, which ignore those variables), plus the certificates in
//!   `SSL_CERT_FILE` and `SSL_CERT_DIR`, loaded here once and added to both clients, so a
//!   corporate CA named there is trusted on every OS, by the download and the registry alike.
//! - **Proxies**: `HTTPS_PROXY`, `HTTP_PROXY`, `ALL_PROXY` and `NO_PROXY` (either case), read by
//!   reqwest when a client is built, with curl's rules (a loopback host goes through the proxy
//!   too unless `NO_PROXY` names it). Neither client sets a proxy of its own: that would turn the
//!   environment's off.
//! - **User agent**: [`USER_AGENT`] (GitHub's API refuses requests without one).
//! - **Timeouts**: connecting, and each wait for the server's next bytes; the download's are
//!   [`DOWNLOAD_TIMEOUTS`], the registry's come from `--registry-timeout`.
//!
//! oci-client 0.18 builds its own `reqwest::Client` from a `ClientConfig` (its `Client` keeps
//! that client private and has no constructor that takes one), so the two cannot be one client
//! object. Instead both are built from one `ClientConfig` made by [`Settings::config`]: the
//! registry's by oci-client ([`registry_client`]), the download's by [`download_client`], which
//! applies those fields the way oci-client does.
//!
//! The TLS stack reads the process environment itself (rustls-native-certs, reqwest's proxy
//! matcher), so this module reads `SSL_CERT_FILE` and `SSL_CERT_DIR` from there too, not from a
//! workflow's copy of it: both must see the same values. Nothing here runs before something is
//! downloaded or a registry is read, so a no-op build builds no client.
//!
//! A server certificate no trusted CA signed is the user's to fix (exit 2, one line naming
//! `SSL_CERT_FILE`), and never tried again: [`failure`], [`refused_certificate`].

use crate::error::UserError;
use anyhow::{anyhow, Result};
use oci_client::client::{Certificate, CertificateEncoding, ClientConfig, ClientProtocol};
use std::error::Error as StdError;
use std::sync::OnceLock;
use std::time::Duration;

/// What both clients send as `User-Agent`.
pub const USER_AGENT: &str = concat!("agent-images/", env!("CARGO_PKG_VERSION"));
/// A PEM file of CA certificates to trust (OpenSSL's variable).
pub(crate) const SSL_CERT_FILE: &str = "SSL_CERT_FILE";
/// Directories (`:`-separated) of PEM files of CA certificates to trust (OpenSSL's variable).
pub(crate) const SSL_CERT_DIR: &str = "SSL_CERT_DIR";

/// How long a client waits for a connection, and then for each piece of an answer (reqwest's
/// `read_timeout`: until the headers, then between reads of the body).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Timeouts {
    pub connect: Duration,
    pub read: Duration,
}

/// The opencode download's.
pub(crate) const DOWNLOAD_TIMEOUTS: Timeouts = Timeouts {
    connect: Duration::from_secs(20),
    read: Duration::from_secs(120),
};

/// The configuration both clients are built from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Settings {
    /// DER certificates from `SSL_CERT_FILE` and `SSL_CERT_DIR`, trusted beside the platform's.
    pub extra_roots: Vec<Vec<u8>>,
}

impl Settings {
    /// Reads `SSL_CERT_FILE` and `SSL_CERT_DIR` through `var`. A variable that names nothing
    /// readable is the user's to fix (one line, exit 2), before any connection.
    pub(crate) fn from_env(var: impl Fn(&str) -> Option<String>) -> Result<Settings, UserError> {
        let mut roots = Vec::new();
        if let Some(file) = var(SSL_CERT_FILE) {
            if file.is_empty() {
                return Err(UserError::trust(format!(
                    "{SSL_CERT_FILE} is set but empty: unset it, or name a PEM file of CA certificates"
                )));
            }
            let path = std::path::Path::new(&file);
            let got = rustls_native_certs::load_certs_from_paths(Some(path), None);
            refuse_errors(SSL_CERT_FILE, &file, &got.errors)?;
            if got.certs.is_empty() {
                return Err(UserError::trust(format!(
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
    pub(crate) fn get() -> Result<&'static Settings, UserError> {
        static SETTINGS: OnceLock<Result<Settings, UserError>> = OnceLock::new();
        SETTINGS
            .get_or_init(|| Settings::from_env(|k| std::env::var(k).ok()))
            .as_ref()
            .map_err(Clone::clone)
    }

    /// The one configuration both clients are built from: these roots beside the platform's,
    /// [`USER_AGENT`], `timeouts`, and no proxy of its own (reqwest then reads the
    /// environment's). Redirects are reqwest's default (followed, at most 10; GitHub's release
    /// assets redirect) in both.
    pub(crate) fn config(&self, timeouts: Timeouts) -> ClientConfig {
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
            connect_timeout: Some(timeouts.connect),
            read_timeout: Some(timeouts.read),
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
        Some(e) => Err(UserError::trust(format!(
            "{var}={value} cannot be used: {e}; name readable PEM files of CA certificates, or unset it"
        ))),
    }
}

/// The download client, from [`Settings::config`] with [`DOWNLOAD_TIMEOUTS`]: each field
/// applied as oci-client's `Client::try_from(ClientConfig)` applies it, so the two clients
/// differ only in what `config` was given.
pub(crate) fn download_client(settings: &Settings) -> Result<reqwest::Client> {
    let config = settings.config(DOWNLOAD_TIMEOUTS);
    let failed = |e: reqwest::Error| {
        match config.extra_root_certificates.is_empty() {
        true => anyhow!("setting up the HTTP client: {}", describe(&e)),
        false => anyhow!(
            "setting up the HTTP client with the CA certificates of {SSL_CERT_FILE}/{SSL_CERT_DIR}: {}",
            describe(&e)
        ),
    }
    };
    let roots = config
        .extra_root_certificates
        .iter()
        .map(|c| match c.encoding {
            CertificateEncoding::Der => reqwest::Certificate::from_der(&c.data),
            CertificateEncoding::Pem => reqwest::Certificate::from_pem(&c.data),
        })
        .collect::<Result<Vec<_>, _>>()
        .map_err(failed)?;
    let mut builder = reqwest::Client::builder()
        .tls_certs_merge(roots)
        .user_agent(config.user_agent);
    if let Some(t) = config.connect_timeout {
        builder = builder.connect_timeout(t);
    }
    if let Some(t) = config.read_timeout {
        builder = builder.read_timeout(t);
    }
    builder.build().map_err(failed)
}

/// The registry client for `protocol`, from [`Settings::config`] with `timeout` for connecting
/// and for each wait. oci-client's own `Client::new` replaces a configuration it cannot build
/// with its defaults (and only logs it), which would drop the roots; this fails instead.
pub(crate) fn registry_client(
    protocol: ClientProtocol,
    timeout: Duration,
) -> Result<oci_client::Client> {
    let config = ClientConfig {
        protocol,
        ..Settings::get()?.config(Timeouts {
            connect: timeout,
            read: timeout,
        })
    };
    oci_client::Client::try_from(config)
        .map_err(|e| anyhow!("setting up the registry client: {}", describe_oci(&e)))
}

/// The download client, built on first use (a no-op build never builds one).
#[derive(Default)]
pub(crate) struct LazyClient(OnceLock<reqwest::Client>);

impl LazyClient {
    pub(crate) fn get(&self) -> Result<&reqwest::Client> {
        if let Some(c) = self.0.get() {
            return Ok(c);
        }
        let c = download_client(Settings::get()?)?;
        Ok(self.0.get_or_init(|| c))
    }
}

/// A failed request as an error, `what` first (`GET <url>`): one the server's certificate
/// failed because no CA this machine trusts signed it is the user's to fix ([`UserError`]: one
/// line, naming `SSL_CERT_FILE`); anything else is its chain of causes.
pub(crate) fn failure(err: &reqwest::Error, what: &str) -> anyhow::Error {
    let text = format!("{what}: {}", describe(err));
    match refused_certificate(err) {
        Some(rustls::CertificateError::UnknownIssuer) => UserError::trust(text).into(),
        _ => anyhow!(text),
    }
}

/// A failed request in one line: a certificate the trust store refused names the server and,
/// when no trusted CA signed it, `SSL_CERT_FILE`; anything else is its chain of causes.
pub(crate) fn describe(err: &reqwest::Error) -> String {
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
pub(crate) fn describe_oci(err: &oci_client::errors::OciDistributionError) -> String {
    match err {
        oci_client::errors::OciDistributionError::RequestError(e) => describe(e),
        other => describe_chain(other, None),
    }
}

/// Why the server's certificate was refused, if that is what failed `err`: no attempt again
/// can succeed.
pub(crate) fn refused_certificate<'a>(
    err: &'a (dyn StdError + 'static),
) -> Option<&'a rustls::CertificateError> {
    let mut next = Some(err);
    while let Some(e) = next {
        if let Some(rustls::Error::InvalidCertificate(why)) = rustls_error(e) {
            return Some(why);
        }
        next = e.source();
    }
    None
}

fn describe_chain(err: &(dyn StdError + 'static), server: Option<&str>) -> String {
    if let Some(why) = refused_certificate(err) {
        return refused(why, server);
    }
    let mut parts: Vec<String> = Vec::new();
    let mut next = Some(err);
    while let Some(e) = next {
        let text = e.to_string();
        // reqwest and hyper repeat their source's text in their own now and then
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        next = e.source();
    }
    parts.join(": ")
}

/// A rustls error in the chain, also where it hides inside `io::Error`s (whose `source` skips
/// the error they wrap): hyper-util's connector wraps tokio-rustls's `io::Error(InvalidData,
/// rustls::Error)` in another `io::Error(Other, ..)`.
fn rustls_error<'a>(e: &'a (dyn StdError + 'static)) -> Option<&'a rustls::Error> {
    let mut e = e;
    loop {
        if let Some(tls) = e.downcast_ref::<rustls::Error>() {
            return Some(tls);
        }
        e = e.downcast_ref::<std::io::Error>()?.get_ref()?;
    }
}

fn refused(why: &rustls::CertificateError, server: Option<&str>) -> String {
    let whose = match server {
        Some(s) => format!("the TLS certificate of {s}"),
        None => "the server's TLS certificate".to_string(),
    };
    match why {
        rustls::CertificateError::UnknownIssuer => {
            let todo = match std::env::var(SSL_CERT_FILE) {
                Ok(file) => format!(
                    "{SSL_CERT_FILE}={file} does not hold the CA that signed it (on Linux that file replaces the system's CAs, so it must hold every CA to trust)"
                ),
                Err(_) => format!(
                    "if your own CA signs it (a company proxy, a private registry), name the CA's PEM file in {SSL_CERT_FILE}"
                ),
            };
            format!(
                "{whose} is not signed by a CA this machine trusts (invalid peer certificate: {why}); {todo}"
            )
        }
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
        let err = empty_var.unwrap_err();
        assert!(err.message().contains("set but empty"));
        assert_eq!(err.kind(), crate::error::ErrorKind::Trust);
        let missing = dir.path().join("missing.pem").display().to_string();
        let err = Settings::from_env(|k| (k == SSL_CERT_FILE).then(|| missing.clone()))
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with(&format!("SSL_CERT_FILE={missing} cannot be used: ")),
            "{err}"
        );
        let not_pem = dir.path().join("notes.txt");
        std::fs::write(&not_pem, "no certificate here\n").unwrap();
        let not_pem = not_pem.display().to_string();
        let err = Settings::from_env(|k| (k == SSL_CERT_FILE).then(|| not_pem.clone()))
            .unwrap_err()
            .to_string();
        assert!(err.contains("holds no PEM certificate"), "{err}");
        // an empty directory adds nothing and is no error; an empty entry is skipped
        let d = dir.path().display().to_string();
        let s = Settings::from_env(|k| (k == SSL_CERT_DIR).then(|| format!(":{d}"))).unwrap();
        assert!(s.extra_roots.is_empty());
    }

    #[test]
    fn both_clients_get_one_configuration_with_no_proxy_of_its_own() {
        let s = Settings {
            extra_roots: vec![vec![0x30, 0x03, 0x02, 0x01, 0x01]],
        };
        let t = Timeouts {
            connect: Duration::from_secs(3),
            read: Duration::from_secs(4),
        };
        let c = s.config(t);
        assert_eq!(c.extra_root_certificates.len(), 1);
        assert_eq!(c.extra_root_certificates[0].data, s.extra_roots[0]);
        assert!(c.tls_certs_only.is_empty(), "the platform's CAs stay");
        assert_eq!(c.user_agent, USER_AGENT);
        assert_eq!(c.connect_timeout, Some(t.connect));
        assert_eq!(c.read_timeout, Some(t.read));
        assert!(c.https_proxy.is_none() && c.http_proxy.is_none() && c.no_proxy.is_none());
        assert!(!c.accept_invalid_certificates);
        // a download client is built from it (the roots are real DER only in the integration
        // tests; the platform's store alone here)
        download_client(&Settings::default()).unwrap();
    }

    #[test]
    fn a_certificate_no_trusted_ca_signed_names_ssl_cert_file() {
        // as hyper-util's connector hands it over
        let err = std::io::Error::other(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer),
        ));
        let why = refused_certificate(&err).unwrap();
        assert_eq!(why, &rustls::CertificateError::UnknownIssuer);
        let text = describe_chain(&err, Some("r.example:443"));
        assert!(
            text.starts_with(
                "the TLS certificate of r.example:443 is not signed by a CA this machine trusts"
            ),
            "{text}"
        );
        assert!(text.contains("SSL_CERT_FILE"), "{text}");
        let expired = rustls::Error::InvalidCertificate(rustls::CertificateError::Expired);
        assert_eq!(
            describe_chain(&expired, None),
            "the server's TLS certificate was refused (invalid peer certificate: Expired)"
        );
        assert!(refused_certificate(&std::io::Error::other("reset")).is_none());
    }
}
