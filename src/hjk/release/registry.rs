//! Registry reads and index writes for a release, through the `oci-client` crate (no
//! hand-written HTTP): manifests by tag or digest with the exact bytes their digest is of, image
//! configs (labels, layer diff ids), and manifest lists pushed by digest or under a tag.
//!
//! A loopback registry (`localhost`, `127.0.0.0/8`, `[::1]`) is spoken to over plain HTTP, the
//! way Apple's `--scheme auto` and dockerd's default insecure range treat it; every other host
//! over HTTPS.
//!
//! A flaky registry: connecting and every wait for bytes are bounded (`--registry-timeout`,
//! `HJK_REGISTRY_TIMEOUT`, 60 s by default), and a registry that does not answer in time ends the
//! run with one line naming it and the limit. Every call is idempotent (reads, manifest PUTs by
//! digest or tag, a blob upload session as a whole), so one the registry fails transiently (5xx,
//! 429, a reset or refused connection) is made again with backoff, up to [`ATTEMPTS`] times,
//! saying so; a timeout is not retried.
//!
//! Trust and proxies are the opencode download's (`crate::http`): the platform's CAs plus those
//! `SSL_CERT_FILE`/`SSL_CERT_DIR` name, and `HTTPS_PROXY`/`HTTP_PROXY`/`NO_PROXY`. A certificate
//! no trusted CA signed ends the run in one line naming `SSL_CERT_FILE`, and is not retried.

use crate::digest::ImageDigest;
use crate::error::{Interrupted, UserError};
use crate::image_ref::ImageRef;
use anyhow::{anyhow, Result};
use camino::{Utf8Path, Utf8PathBuf};
use oci_client::client::ClientProtocol;
use oci_client::errors::{OciDistributionError, OciErrorCode};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

/// How long connecting, and each wait for the registry's next bytes, may take by default.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// How many times in all a call is made when the registry fails it transiently.
pub(crate) const ATTEMPTS: u32 = 5;

pub(crate) const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub(crate) const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub(crate) const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub(crate) const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const ACCEPT: [&str; 4] = [OCI_INDEX, DOCKER_LIST, OCI_MANIFEST, DOCKER_MANIFEST];

/// Whether `host` (with an optional port) is a loopback address, spoken to over plain HTTP.
pub(crate) fn plain_http(host: &str) -> bool {
    let name = match host.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or(""),
        None => host.split(':').next().unwrap_or(""),
    };
    name == "localhost"
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// A manifest as the registry stores it: the bytes, their digest and media type.
#[derive(Debug, Clone)]
pub struct Manifest {
    pub bytes: Vec<u8>,
    pub digest: ImageDigest,
    pub media_type: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Descriptor {
    #[serde(default)]
    pub media_type: String,
    pub digest: ImageDigest,
    #[serde(default)]
    pub size: i64,
    #[serde(default)]
    pub platform: Option<PlatformField>,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub(crate) struct PlatformField {
    pub architecture: String,
    pub os: String,
}

/// The fields of an image manifest or an index a release reads.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Parsed {
    #[serde(default)]
    pub media_type: Option<String>,
    #[serde(default)]
    pub config: Option<Descriptor>,
    #[serde(default)]
    pub layers: Vec<Descriptor>,
    #[serde(default)]
    pub manifests: Vec<Descriptor>,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
}

/// BuildKit's annotations on an index entry that is an attestation manifest: what it is, and
/// the digest of the image it is about.
/// <https://docs.docker.com/build/metadata/attestations/attestation-storage/>
pub(crate) const ATTESTATION_TYPE: &str = "vnd.docker.reference.type";
pub(crate) const ATTESTATION_FOR: &str = "vnd.docker.reference.digest";
pub(crate) const ATTESTATION_MANIFEST: &str = "attestation-manifest";

impl Parsed {
    /// An index's attestation manifest about the image `digest`, if it lists one.
    pub(crate) fn attestation_for(&self, digest: &str) -> Option<&Descriptor> {
        self.manifests.iter().find(|d| {
            d.annotations.get(ATTESTATION_TYPE).map(String::as_str) == Some(ATTESTATION_MANIFEST)
                && d.annotations.get(ATTESTATION_FOR).map(String::as_str) == Some(digest)
        })
    }

    /// An index's image for `platform` (attestation entries, `unknown/unknown`, never match).
    pub(crate) fn entry_for(&self, platform: crate::platform::Platform) -> Option<&Descriptor> {
        self.manifests.iter().find(|d| {
            d.platform
                .as_ref()
                .is_some_and(|f| f.os == "linux" && f.architecture == platform.arch())
        })
    }
}

impl Manifest {
    pub(crate) fn parsed(&self) -> Result<Parsed> {
        serde_json::from_slice(&self.bytes)
            .map_err(|e| anyhow!("the registry returned a manifest that is not JSON: {e}"))
    }

    pub fn is_index(&self) -> bool {
        self.media_type == OCI_INDEX || self.media_type == DOCKER_LIST
    }
}

/// What a release reads from an image config: labels and the layer chain.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImageConfig {
    pub architecture: String,
    pub labels: BTreeMap<String, String>,
    pub diff_ids: Vec<String>,
}

#[derive(Deserialize, Default)]
struct RawConfig {
    #[serde(default)]
    architecture: String,
    #[serde(default)]
    config: Option<RawInner>,
    #[serde(default)]
    rootfs: Option<RawRootfs>,
}

#[derive(Deserialize, Default)]
struct RawInner {
    #[serde(rename = "Labels", default)]
    labels: Option<BTreeMap<String, String>>,
}

#[derive(Deserialize, Default)]
struct RawRootfs {
    #[serde(default)]
    diff_ids: Vec<String>,
}

/// One repository in one registry, with the credentials a release resolved.
pub struct Registry {
    client: Client,
    auth: RegistryAuth,
    host: String,
    repository: String,
    user: Option<String>,
    timeout: Duration,
    reporter: Arc<dyn crate::report::Reporter>,
}

impl Registry {
    /// `repo` is the release's repository (`ghcr.io/gilmanlab/headjack`); `creds` the user name
    /// and password, or `None` to read anonymously; `timeout` bounds connecting and each wait
    /// for bytes; retries are reported to `reporter`. Fails only when `SSL_CERT_FILE` or
    /// `SSL_CERT_DIR` name nothing usable (see [`crate::http`]).
    pub fn new(
        repo: &ImageRef,
        creds: Option<crate::hjk::release::auth::Credentials>,
        timeout: Duration,
        reporter: Arc<dyn crate::report::Reporter>,
    ) -> Result<Registry> {
        let host = repo.registry().to_string();
        let protocol = if plain_http(&host) {
            ClientProtocol::HttpsExcept(vec![host.clone()])
        } else {
            ClientProtocol::Https
        };
        // trust (SSL_CERT_FILE), proxies and user agent: the download's configuration, from
        // `crate::http`; the timeout is reqwest's: connecting, then from sending a request until
        // its headers, then between body reads
        let client = crate::http::registry_client(protocol, timeout)?;
        let user = creds.as_ref().map(|c| c.username.clone());
        let auth = match creds {
            Some(c) => RegistryAuth::Basic(c.username, c.password),
            None => RegistryAuth::Anonymous,
        };
        Ok(Registry {
            client,
            auth,
            host,
            repository: repo.repository().to_string(),
            user,
            timeout,
            reporter,
        })
    }

    /// `<repository>@sha256:...` for a digest, `<repository>:<tag>` for a tag.
    pub(crate) fn shown(&self, tag_or_digest: &str) -> String {
        match tag_or_digest.starts_with("sha256:") {
            true => format!("{}@{tag_or_digest}", self.name()),
            false => format!("{}:{tag_or_digest}", self.name()),
        }
    }

    /// Whether the registry answers at all (its `/v2/` and, where it asks for one, a token for
    /// reading the repository), asked before anything is built: a registry that hangs ends the
    /// run here, in one line, instead of after the builds.
    pub(crate) async fn reachable(&self) -> Result<()> {
        let r = self.reference("hjk-reachable");
        let doing = format!("connecting to read {}", self.name());
        self.call(&doing, || {
            self.client
                .auth(&r, &self.auth, oci_client::RegistryOperation::Pull)
        })
        .await?
        .map_err(|e| self.failed(e, &doing))?;
        Ok(())
    }

    /// Runs a registry call (each one hjk makes is idempotent), again after a transient failure
    /// ([`transient`]) with backoff (0.5 s, 1 s, 2 s, 4 s), at most [`ATTEMPTS`] times in all;
    /// stops at once on Ctrl-C/SIGTERM, also while it waits.
    async fn call<T, F, Fut>(
        &self,
        doing: &str,
        mut call: F,
    ) -> Result<Result<T, OciDistributionError>, Interrupted>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, OciDistributionError>>,
    {
        let mut attempt = 1;
        loop {
            match guarded(call()).await? {
                Err(e) if attempt < ATTEMPTS && transient(&e) => {
                    let wait = Duration::from_millis(500 << (attempt - 1));
                    self.reporter.warn(&format!(
                        "registry {}: {doing}: {}; trying again in {:.1} s ({}/{ATTEMPTS})",
                        self.host,
                        why(&e),
                        wait.as_secs_f64(),
                        attempt + 1
                    ));
                    guarded(tokio::time::sleep(wait)).await?;
                    attempt += 1;
                }
                got => return Ok(got),
            }
        }
    }

    pub(crate) fn host(&self) -> &str {
        &self.host
    }

    /// `<host>/<repository>`, the name tags and digests are appended to.
    pub(crate) fn name(&self) -> String {
        format!("{}/{}", self.host, self.repository)
    }

    /// A tag or a `sha256:` digest in this repository.
    fn reference(&self, tag_or_digest: &str) -> Reference {
        if tag_or_digest.starts_with("sha256:") {
            Reference::with_digest(
                self.host.clone(),
                self.repository.clone(),
                tag_or_digest.into(),
            )
        } else {
            Reference::with_tag(
                self.host.clone(),
                self.repository.clone(),
                tag_or_digest.into(),
            )
        }
    }

    /// The manifest under a tag or digest, or `None` if the registry has none.
    pub async fn manifest(&self, tag_or_digest: &str) -> Result<Option<Manifest>> {
        let r = self.reference(tag_or_digest);
        let doing = format!("reading {}", self.shown(tag_or_digest));
        let got = self
            .call(&doing, || {
                self.client.pull_manifest_raw(&r, &self.auth, &ACCEPT)
            })
            .await?;
        match got {
            Ok((bytes, digest)) => {
                let media_type = serde_json::from_slice::<Parsed>(&bytes)
                    .ok()
                    .and_then(|p| p.media_type)
                    .unwrap_or_else(|| OCI_MANIFEST.to_string());
                let digest = ImageDigest::parse(&digest).map_err(|e| {
                    anyhow!(
                        "{doing}: the registry answered with a bad digest: {}",
                        e.message()
                    )
                })?;
                Ok(Some(Manifest {
                    bytes: bytes.to_vec(),
                    digest,
                    media_type,
                }))
            }
            Err(e) if not_found(&e) => Ok(None),
            Err(e) => Err(self.failed(e, &doing)),
        }
    }

    /// The image manifest for `platform` under a tag or digest: the manifest itself, or, when
    /// the engine pushed an index (Apple's `container` keeps even a one-platform image as one),
    /// the index's entry for that platform. `None` if there is neither.
    pub async fn platform_manifest(
        &self,
        tag_or_digest: &str,
        platform: crate::platform::Platform,
    ) -> Result<Option<Manifest>> {
        let Some(m) = self.manifest(tag_or_digest).await? else {
            return Ok(None);
        };
        if !m.is_index() {
            return Ok(Some(m));
        }
        match m.parsed()?.entry_for(platform) {
            Some(d) => self.manifest(&d.digest).await,
            None => Ok(None),
        }
    }

    /// The image manifest for `platform` under a tag or digest (see
    /// [`Registry::platform_manifest`]) and, when the tag holds an index with one, the
    /// attestation manifest about it.
    pub(crate) async fn platform_manifest_attested(
        &self,
        tag_or_digest: &str,
        platform: crate::platform::Platform,
    ) -> Result<Option<(Manifest, Option<Descriptor>)>> {
        let Some(m) = self.manifest(tag_or_digest).await? else {
            return Ok(None);
        };
        if !m.is_index() {
            return Ok(Some((m, None)));
        }
        let parsed = m.parsed()?;
        let Some(d) = parsed.entry_for(platform) else {
            return Ok(None);
        };
        let attestation = parsed.attestation_for(&d.digest).cloned();
        Ok(self.manifest(&d.digest).await?.map(|m| (m, attestation)))
    }

    /// A blob of this repository (an attestation's statement), at most `limit` bytes.
    pub(crate) async fn blob(&self, digest: &str, limit: usize) -> Result<Vec<u8>> {
        let r = self.reference(digest);
        let doing = format!("reading blob {}", self.shown(digest));
        let buf = self
            .call(&doing, || async {
                let mut buf: Vec<u8> = Vec::new();
                self.client.pull_blob(&r, digest, &mut buf).await?;
                Ok(buf)
            })
            .await?
            .map_err(|e| self.failed(e, &doing))?;
        if buf.len() > limit {
            return Err(anyhow!("blob {digest} is larger than {limit} bytes"));
        }
        Ok(buf)
    }

    /// The digest a tag points at, or `None` if the tag does not exist (one HEAD request).
    pub(crate) async fn digest_of(&self, tag: &str) -> Result<Option<ImageDigest>> {
        let r = self.reference(tag);
        let doing = format!("reading {}", self.shown(tag));
        let got = self
            .call(&doing, || self.client.fetch_manifest_digest(&r, &self.auth))
            .await?;
        match got {
            Ok(d) => ImageDigest::parse(&d).map(Some).map_err(|e| {
                anyhow!(
                    "{doing}: the registry answered with a bad digest: {}",
                    e.message()
                )
            }),
            Err(e) if not_found(&e) => Ok(None),
            Err(e) => Err(self.failed(e, &doing)),
        }
    }

    /// The config an image manifest names.
    pub async fn config(&self, manifest: &Manifest) -> Result<ImageConfig> {
        let parsed = manifest.parsed()?;
        let config = parsed
            .config
            .ok_or_else(|| anyhow!("manifest {} names no config", manifest.digest))?;
        let r = self.reference(&manifest.digest);
        let doing = format!("reading config {}", self.shown(&config.digest));
        let buf = self
            .call(&doing, || async {
                let mut buf: Vec<u8> = Vec::new();
                self.client
                    .pull_blob(&r, config.digest.as_str(), &mut buf)
                    .await?;
                Ok(buf)
            })
            .await?
            .map_err(|e| self.failed(e, &doing))?;
        let raw: RawConfig = serde_json::from_slice(&buf)
            .map_err(|e| anyhow!("config {} is not an image config: {e}", config.digest))?;
        Ok(ImageConfig {
            architecture: raw.architecture,
            labels: raw.config.and_then(|c| c.labels).unwrap_or_default(),
            diff_ids: raw.rootfs.map(|r| r.diff_ids).unwrap_or_default(),
        })
    }

    /// Pushes manifest bytes under a tag, or by their own digest (`sha256:...`: untagged).
    pub(crate) async fn put_manifest(
        &self,
        tag_or_digest: &str,
        bytes: &[u8],
        media_type: &str,
    ) -> Result<()> {
        let r = self.reference(tag_or_digest);
        let doing = format!("pushing {}", self.shown(tag_or_digest));
        self.call(&doing, || async {
            let content_type = media_type.parse().map_err(|_| {
                OciDistributionError::GenericError(Some(format!("bad media type {media_type}")))
            })?;
            self.client
                .push_manifest_raw(&r, bytes.to_vec(), content_type)
                .await
        })
        .await?
        .map_err(|e| self.failed(e, &doing))?;
        Ok(())
    }

    /// Pushes an OCI image layout (what an engine's OCI layout export wrote): each blob
    /// the registry lacks, streamed from its file, then the manifests the layout's index names
    /// (children first), by digest, and its top manifest under `tag`. Every blob is checked
    /// against its digest as it is read, so what lands under the digest the metadata names is
    /// what the builder wrote. Returns the top manifest.
    pub(crate) async fn push_layout(&self, dir: &Utf8Path, tag: &str) -> Result<Manifest> {
        let index: Parsed = serde_json::from_slice(&read_blob_file(&dir.join("index.json"))?)
            .map_err(|e| anyhow!("{dir}/index.json is not an OCI index: {e}"))?;
        let top = match index.manifests.as_slice() {
            [one] => one.clone(),
            other => {
                return Err(anyhow!(
                    "{dir}/index.json names {} images, not one",
                    other.len()
                ))
            }
        };
        let r = self.reference(tag);
        let doing = format!("logging in to push {}", self.name());
        self.call(&doing, || {
            self.client
                .auth(&r, &self.auth, oci_client::RegistryOperation::Push)
        })
        .await?
        .map_err(|e| self.failed(e, &doing))?;
        let bytes = self.push_tree(dir, &top, 0).await?;
        self.put_manifest(tag, &bytes, &top.media_type).await?;
        Ok(Manifest {
            bytes,
            digest: top.digest,
            media_type: top.media_type,
        })
    }

    /// Pushes what `desc` (a manifest or an index in the layout) needs, then `desc` itself by
    /// digest; returns its bytes.
    fn push_tree<'a>(
        &'a self,
        dir: &'a Utf8Path,
        desc: &'a Descriptor,
        depth: usize,
    ) -> std::pin::Pin<Box<dyn Future<Output = Result<Vec<u8>>> + 'a>> {
        Box::pin(async move {
            if depth > 4 {
                return Err(anyhow!("the OCI layout in {dir} nests indexes too deep"));
            }
            let bytes = read_blob_file(&blob_path(dir, &desc.digest))?;
            if digest_of_bytes(&bytes) != desc.digest {
                return Err(anyhow!(
                    "{} in {dir} does not match its digest",
                    desc.digest
                ));
            }
            let parsed: Parsed = serde_json::from_slice(&bytes)
                .map_err(|e| anyhow!("{} in {dir} is not a manifest: {e}", desc.digest))?;
            for child in &parsed.manifests {
                self.push_tree(dir, child, depth + 1).await?;
            }
            for blob in parsed.config.iter().chain(&parsed.layers) {
                self.push_blob_file(dir, blob).await?;
            }
            // the top one goes under its tag, by the caller
            if depth > 0 {
                self.put_manifest(&desc.digest, &bytes, &desc.media_type)
                    .await?;
            }
            Ok(bytes)
        })
    }

    /// One blob of a layout, unless the registry has it already. The upload session is one
    /// attempt: one that fails is started again, from the blob's first byte.
    async fn push_blob_file(&self, dir: &Utf8Path, blob: &Descriptor) -> Result<()> {
        let r = self.reference(&blob.digest);
        let doing = format!("pushing blob {} to {}", blob.digest, self.name());
        let path = blob_path(dir, &blob.digest);
        let size = u64::try_from(blob.size).ok();
        self.call(&doing, || async {
            if self.client.blob_exists(&r, &blob.digest).await? {
                return Ok(());
            }
            let file = std::fs::File::open(&path)?;
            let chunks = layout_chunks(file, blob.digest.to_string());
            self.client
                .push_blob_stream(&r, chunks, &blob.digest, size)
                .await
                .map(drop)
        })
        .await?
        .map_err(|e| self.failed(e, &doing))
    }

    /// Rejected credentials are one line for the user to fix (exit 2); everything else a
    /// failure with the registry's own words.
    fn failed(&self, e: OciDistributionError, doing: &str) -> anyhow::Error {
        if timed_out(&e) {
            return anyhow!(
                "registry {} did not answer within {} s while {doing}; check that it is up and reachable, or allow it longer with --registry-timeout SECONDS (or HJK_REGISTRY_TIMEOUT)",
                self.host,
                self.timeout.as_secs()
            );
        }
        if unauthorized(&e) {
            let who = match &self.user {
                Some(u) => format!("the credentials of {u}"),
                None => "anonymous access (no credentials found)".into(),
            };
            return UserError::credentials(format!(
                "registry {} refused {who} (401 Unauthorized) while {doing}; check the password or token, or pick another --auth mode",
                self.host
            ))
            .into();
        }
        let text = format!(
            "registry {}: {doing}: {}",
            self.host,
            crate::http::describe_oci(&e)
        );
        // a certificate no trusted CA signed: the user names the CA (SSL_CERT_FILE)
        match crate::http::refused_certificate(&e) {
            Some(rustls::CertificateError::UnknownIssuer) => UserError::trust(text).into(),
            _ => anyhow!(text),
        }
    }
}

/// The file of one layout blob as chunks for a streamed upload, hashed as they are read: a blob
/// that does not match its digest fails the upload instead of landing under that digest.
fn layout_chunks(
    file: std::fs::File,
    want: String,
) -> impl futures_util::Stream<Item = Result<bytes::Bytes, OciDistributionError>> {
    futures_util::stream::unfold(
        (file, sha2::Sha256::default(), want, false),
        |(mut file, mut hasher, want, done)| async move {
            use sha2::Digest;
            use std::io::Read;
            if done {
                return None;
            }
            let mut buf = vec![0u8; 4 << 20];
            match file.read(&mut buf) {
                Ok(0) => {
                    let got = format!(
                        "sha256:{}",
                        crate::fingerprint::hex(&hasher.finalize_reset())
                    );
                    if got == want {
                        None
                    } else {
                        let e = OciDistributionError::GenericError(Some(format!(
                            "{want} in the layout does not match its digest ({got})"
                        )));
                        Some((Err(e), (file, hasher, want, true)))
                    }
                }
                Ok(n) => {
                    buf.truncate(n);
                    hasher.update(&buf);
                    Some((Ok(bytes::Bytes::from(buf)), (file, hasher, want, false)))
                }
                Err(e) => Some((
                    Err(OciDistributionError::IoError(e)),
                    (file, hasher, want, true),
                )),
            }
        },
    )
}

/// A failure worth another try: the registry said 5xx or 429, or the connection was refused,
/// reset or dropped before the answer. A timeout is not (a hung registry would hold the run for
/// [`ATTEMPTS`] timeouts), nor anything the registry meant (4xx).
fn transient(e: &OciDistributionError) -> bool {
    let status = |code: u16| code >= 500 || code == 429;
    // a refused server certificate is a connection error to reqwest, but is refused again
    if crate::http::refused_certificate(e).is_some() {
        return false;
    }
    match e {
        OciDistributionError::ServerError { code, .. } => status(*code),
        OciDistributionError::RequestError(r) => {
            !r.is_timeout()
                && match r.status() {
                    Some(s) => status(s.as_u16()),
                    None => r.is_connect() || r.is_request() || r.is_body(),
                }
        }
        OciDistributionError::IoError(io) => matches!(
            io.kind(),
            std::io::ErrorKind::ConnectionReset
                | std::io::ErrorKind::ConnectionAborted
                | std::io::ErrorKind::BrokenPipe
                | std::io::ErrorKind::UnexpectedEof
        ),
        _ => false,
    }
}

fn timed_out(e: &OciDistributionError) -> bool {
    match e {
        OciDistributionError::RequestError(r) => r.is_timeout(),
        _ => false,
    }
}

/// What went wrong, short, for a retry line.
fn why(e: &OciDistributionError) -> String {
    match e {
        OciDistributionError::ServerError { code, .. } => format!("it answered HTTP {code}"),
        OciDistributionError::RequestError(r) => match r.status() {
            Some(s) => format!("it answered HTTP {}", s.as_u16()),
            None if r.is_connect() => "could not connect".into(),
            None => "the connection was dropped before the answer".into(),
        },
        other => other.to_string(),
    }
}

fn unauthorized(e: &OciDistributionError) -> bool {
    match e {
        OciDistributionError::UnauthorizedError { .. }
        | OciDistributionError::AuthenticationFailure(_) => true,
        OciDistributionError::RegistryError { envelope, .. } => envelope
            .errors
            .iter()
            .any(|x| matches!(x.code, OciErrorCode::Unauthorized | OciErrorCode::Denied)),
        OciDistributionError::ServerError { code, .. } => *code == 401 || *code == 403,
        _ => false,
    }
}

fn not_found(e: &OciDistributionError) -> bool {
    match e {
        OciDistributionError::ImageManifestNotFoundError(_) => true,
        OciDistributionError::RegistryError { envelope, .. } => envelope.errors.iter().any(|x| {
            matches!(
                x.code,
                OciErrorCode::ManifestUnknown
                    | OciErrorCode::NameUnknown
                    | OciErrorCode::BlobUnknown
            )
        }),
        OciDistributionError::ServerError { code, .. } => *code == 404,
        _ => false,
    }
}

/// Runs a registry call, but stops at once on Ctrl-C/SIGTERM (the temporary auth store is then
/// removed by the unwinding workflow).
async fn guarded<T>(fut: impl Future<Output = T>) -> Result<T, Interrupted> {
    crate::interrupt::until_stopped(fut).await
}

/// Where an OCI layout keeps the blob of `digest` (a sha256 digest, so a layout cannot name a
/// path outside itself).
fn blob_path(dir: &Utf8Path, digest: &ImageDigest) -> Utf8PathBuf {
    dir.join("blobs/sha256").join(digest.hex())
}

/// A manifest, index or `index.json` of a layout: small files, read whole (at most 4 MiB, the
/// registries' own manifest limit).
fn read_blob_file(path: &Utf8Path) -> Result<Vec<u8>> {
    use std::io::Read;
    let mut out = Vec::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(4 << 20 | 1).read_to_end(&mut out))
        .map_err(|e| anyhow!("reading {path}: {e}"))?;
    if out.len() > 4 << 20 {
        return Err(anyhow!("{path} is larger than a manifest may be (4 MiB)"));
    }
    Ok(out)
}

/// The digest of manifest bytes, as registries compute it.
pub(crate) fn digest_of_bytes(bytes: &[u8]) -> ImageDigest {
    ImageDigest::of_bytes(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_index_entry_is_picked_by_platform_never_an_attestation() {
        let parsed: Parsed = serde_json::from_str(
            r#"{"mediaType": "application/vnd.oci.image.index.v1+json", "manifests": [
                {"digest": "sha256:3333333333333333333333333333333333333333333333333333333333333333", "platform": {"architecture": "unknown", "os": "unknown"}},
                {"digest": "sha256:2222222222222222222222222222222222222222222222222222222222222222", "platform": {"architecture": "arm64", "os": "linux", "variant": "v8"}},
                {"digest": "sha256:1111111111111111111111111111111111111111111111111111111111111111", "platform": {"architecture": "amd64", "os": "linux"}}]}"#,
        )
        .unwrap();
        let pick = |p| parsed.entry_for(p).map(|d| d.digest.as_str());
        assert_eq!(
            pick(crate::platform::Platform::LinuxAmd64),
            Some("sha256:1111111111111111111111111111111111111111111111111111111111111111")
        );
        assert_eq!(
            pick(crate::platform::Platform::LinuxArm64),
            Some("sha256:2222222222222222222222222222222222222222222222222222222222222222")
        );
        let only_att: Parsed = serde_json::from_str(
            r#"{"manifests": [{"digest": "sha256:3333333333333333333333333333333333333333333333333333333333333333", "platform": {"architecture": "unknown", "os": "unknown"}}]}"#,
        )
        .unwrap();
        assert!(only_att
            .entry_for(crate::platform::Platform::LinuxAmd64)
            .is_none());
    }

    #[test]
    fn loopback_hosts_are_plain_http() {
        for h in [
            "127.0.0.1:5001",
            "localhost:5000",
            "localhost",
            "[::1]:5000",
            "127.1.2.3",
        ] {
            assert!(plain_http(h), "{h}");
        }
        for h in [
            "ghcr.io",
            "registry.example:5000",
            "10.0.0.1:5000",
            "[2001:db8::1]:5000",
        ] {
            assert!(!plain_http(h), "{h}");
        }
    }

    #[test]
    fn manifests_and_indexes_parse() {
        let m = Manifest {
            bytes: br#"{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v2+json","config":{"mediaType":"x","digest":"sha256:cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc","size":1},"layers":[{"mediaType":"l","digest":"sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa","size":2}]}"#.to_vec(),
            digest: "sha256:eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee".into(),
            media_type: DOCKER_MANIFEST.into(),
        };
        let p = m.parsed().unwrap();
        assert_eq!(
            p.config.unwrap().digest,
            "sha256:cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc"
        );
        assert_eq!(
            p.layers[0].digest,
            "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
        );
        assert!(!m.is_index());
        assert_eq!(
            digest_of_bytes(b"abc"),
            "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
