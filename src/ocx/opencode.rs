//! The opencode binary: resolved to a concrete version, downloaded on the host, checked against
//! the checksum its source publishes, and cached by version and asset so later builds are
//! offline. A binary only enters the cache after its checksum matched.

use super::config::{OpencodeSource, OpencodeVersion};
use crate::engine::Engine;
use crate::error::UserError;
use crate::fingerprint::hex;
use crate::invocation::Invocation;
use crate::platform::Platform;
use crate::version::Version;
use anyhow::{anyhow, bail, Context, Result};
use base64::Engine as _;
use camino::{Utf8Path, Utf8PathBuf};
use sha2::{Digest, Sha256, Sha512};
use std::collections::BTreeMap;
use std::io::{Read, Write};

/// Environment variables that point the GitHub source elsewhere (a mirror, or a test server).
pub(crate) const ENV_GITHUB_API: &str = "OCX_GITHUB_API_URL";
pub(crate) const ENV_GITHUB_REPO: &str = "OCX_GITHUB_REPO";
const GITHUB_API: &str = "https://api.github.com";
const GITHUB_REPO: &str = "sst/opencode";
/// The most a source's JSON or `.sha256` document may hold, and the most a download may.
const DOCUMENT_LIMIT: usize = 64 << 20;
const DOWNLOAD_LIMIT: u64 = 1 << 30;

/// Upstream build variants. Chosen by the user, never detected from this machine's CPU: the
/// image runs elsewhere.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OpencodeVariant {
    #[default]
    Standard,
    Baseline,
    Musl,
    BaselineMusl,
}

impl OpencodeVariant {
    pub(crate) fn parse(s: &str) -> Result<Self, UserError> {
        match s {
            "standard" => Ok(OpencodeVariant::Standard),
            "baseline" => Ok(OpencodeVariant::Baseline),
            "musl" => Ok(OpencodeVariant::Musl),
            "baseline-musl" => Ok(OpencodeVariant::BaselineMusl),
            _ => Err(UserError::setting(format!(
                "invalid opencode_variant {s:?}: use standard, baseline, musl or baseline-musl"
            ))),
        }
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            OpencodeVariant::Standard => "standard",
            OpencodeVariant::Baseline => "baseline",
            OpencodeVariant::Musl => "musl",
            OpencodeVariant::BaselineMusl => "baseline-musl",
        }
    }

    fn suffix(self) -> &'static str {
        match self {
            OpencodeVariant::Standard => "",
            OpencodeVariant::Baseline => "-baseline",
            OpencodeVariant::Musl => "-musl",
            OpencodeVariant::BaselineMusl => "-baseline-musl",
        }
    }
}

/// `opencode-linux-<x64|arm64>[-baseline][-musl]`, as upstream names release assets and npm
/// packages.
pub(crate) fn asset_name(platform: Platform, variant: OpencodeVariant) -> String {
    format!(
        "opencode-linux-{}{}",
        platform.opencode_arch(),
        variant.suffix()
    )
}

/// A verified binary in the cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Binary {
    pub platform: Platform,
    pub asset: String,
    pub path: Utf8PathBuf,
    /// The checksum the source published for what we downloaded, e.g. `sha512-…` or `sha256:…`.
    pub published: String,
    /// Our own sha256 of the binary as it was verified, kept in the cache entry: every use
    /// checks the file against it (a cache is not trusted forever).
    pub sha256: String,
}

/// The cached file no longer hashes to what was verified when it was stored.
#[derive(Debug)]
pub(crate) struct Corrupt {
    pub path: Utf8PathBuf,
    pub want: String,
    pub got: String,
}

impl std::fmt::Display for Corrupt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the cached {} was modified: it hashes to sha256:{} but sha256:{} was verified when it was stored",
            self.path, self.got, self.want
        )
    }
}

impl std::error::Error for Corrupt {}

/// Copies the cached binary to `dst` (a copy, never a link: whoever edits `dst` must not edit
/// the cache), hashing the bytes as they are copied, so what lands in `dst` is exactly what was
/// checked. On a mismatch `dst` is removed.
pub(crate) fn copy_verified(b: &Binary, dst: &Utf8Path) -> Result<()> {
    let mut src = std::fs::File::open(&b.path).with_context(|| format!("opening {}", b.path))?;
    let size = std::fs::metadata(&b.path).map(|m| m.len()).ok();
    let mut out = crate::disk::context(std::fs::File::create(dst), dst, size)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        crate::interrupt::check()?;
        let n = src
            .read(&mut buf)
            .with_context(|| format!("reading {}", b.path))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
        crate::disk::context(out.write_all(&buf[..n]), dst, size)?;
    }
    drop(out);
    let got = hex(&h.finalize());
    if got != b.sha256 {
        let _ = std::fs::remove_file(dst);
        return Err(Corrupt {
            path: b.path.clone(),
            want: b.sha256.clone(),
            got,
        }
        .into());
    }
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dst, std::fs::Permissions::from_mode(0o755))?;
    Ok(())
}

/// A checksum mismatch: the source or the network is at fault, not the user's input (exit 1).
fn mismatch(what: &str, want: &str, got: &str) -> anyhow::Error {
    anyhow!(
        "checksum mismatch for {what}: the source publishes {want} but the download hashes to {got}; nothing was cached or built, retry or check the mirror"
    )
}

pub(crate) struct Fetcher<'a> {
    pub source: &'a OpencodeSource,
    /// Checks a `file:` source's path against where its config may point (see `super::paths`).
    pub trust: &'a super::paths::Trust,
    pub source_origin: &'a super::config::Source,
    pub variant: OpencodeVariant,
    pub cache_dir: Utf8PathBuf,
    pub vars: &'a BTreeMap<String, String>,
    pub engine: &'a Engine,
    /// Built when the first request is made: a build that downloads nothing builds no client.
    pub http: &'a crate::http::LazyClient,
}

/// What a source handed over: the archive (or the bare binary) as a file of the fetch's own,
/// already checked against the checksum the source published.
struct Archive {
    name: String,
    path: Utf8PathBuf,
    published: String,
}

impl Fetcher<'_> {
    fn github_api(&self) -> String {
        self.vars
            .get(ENV_GITHUB_API)
            .cloned()
            .unwrap_or_else(|| GITHUB_API.into())
    }

    fn github_repo(&self) -> String {
        self.vars
            .get(ENV_GITHUB_REPO)
            .cloned()
            .unwrap_or_else(|| GITHUB_REPO.into())
    }

    fn entry_dir(&self, version: &str, asset: &str) -> Utf8PathBuf {
        self.cache_dir.join(version).join(asset)
    }

    /// The cached binary, if a verified one is there. Its bytes are checked when it is used
    /// ([`copy_verified`]), not here: a no-op build does not read 180 MB.
    pub(crate) fn cached(&self, version: &str, platform: Platform) -> Option<Binary> {
        let asset = asset_name(platform, self.variant);
        let dir = self.entry_dir(version, &asset);
        let published = std::fs::read_to_string(dir.join("checksum")).ok()?;
        // entries from before our own digest was kept are fetched again
        let sha256 = std::fs::read_to_string(dir.join("sha256")).ok()?;
        let sha256 = sha256.trim().to_string();
        let path = dir.join("opencode");
        (path.is_file() && sha256.len() == 64).then(|| Binary {
            platform,
            asset,
            path,
            published: published.trim().to_string(),
            sha256,
        })
    }

    /// Drops a cache entry (found corrupt), so the next fetch downloads it again.
    pub(crate) fn forget(&self, version: &str, platform: Platform) {
        let asset = asset_name(platform, self.variant);
        let _ = std::fs::remove_dir_all(self.entry_dir(version, &asset));
    }

    /// Turns `latest` into a concrete version available for every platform. Offline, it falls
    /// back to the newest version already cached for all of them.
    pub(crate) async fn resolve(
        &self,
        version: &OpencodeVersion,
        platforms: &[Platform],
    ) -> Result<Version> {
        let v = match version {
            OpencodeVersion::Exact(v) => return Ok(v.clone()),
            // what a source answers goes into paths, tags and labels: it must be X.Y.Z too
            OpencodeVersion::Latest => {
                self.latest(platforms)
                    .await
                    .and_then(|v| match OpencodeVersion::parse(&v) {
                        Ok(OpencodeVersion::Exact(v)) => Ok(v),
                        _ => Err(anyhow!(
                            "the {} source answered {v:?} for the latest opencode version, which is not X.Y.Z",
                            self.source
                        )),
                    })
            }
        };
        match v {
            Ok(v) => Ok(v),
            Err(e) => match self.newest_cached(platforms) {
                Some(v) => {
                    self.engine.reporter().warn(&format!(
                        "could not resolve the latest opencode version ({e:#}); using {v} from the cache"
                    ));
                    Ok(v)
                }
                None => Err(e.context("resolving opencode_version \"latest\"; pin a version with opencode_version to build offline")),
            },
        }
    }

    /// The newest version cached for every platform; a directory whose name is not an
    /// opencode version (`X.Y.Z`, no `v`) is not one.
    fn newest_cached(&self, platforms: &[Platform]) -> Option<Version> {
        let mut versions: Vec<Version> = std::fs::read_dir(&self.cache_dir)
            .ok()?
            .filter_map(|e| {
                match OpencodeVersion::parse(&e.ok()?.file_name().into_string().ok()?) {
                    Ok(OpencodeVersion::Exact(v)) => Some(v),
                    _ => None,
                }
            })
            .filter(|v| platforms.iter().all(|p| self.cached(v, *p).is_some()))
            .collect();
        versions.sort_by_key(|v| crate::version::sort_key(v));
        versions.pop()
    }

    async fn latest(&self, platforms: &[Platform]) -> Result<String> {
        match self.source {
            OpencodeSource::Github => {
                let url = format!("{}/repos/{}/releases/latest", self.github_api(), self.github_repo());
                let rel: serde_json::Value = serde_json::from_slice(&self.http_get(&url).await?)
                    .with_context(|| format!("parsing {url}"))?;
                let tag = rel["tag_name"].as_str().ok_or_else(|| anyhow!("{url}: no tag_name"))?;
                Ok(tag.trim_start_matches('v').to_string())
            }
            OpencodeSource::Npm => {
                // the per-arch packages are published separately and can lag each other, so
                // take the newest version every requested arch has
                let mut common: Option<Vec<String>> = None;
                for p in platforms {
                    let pkg = asset_name(*p, self.variant);
                    let out = self.engine.tool(&Invocation::new("npm").args(["view", &pkg, "versions", "--json"]).read_only()).await?;
                    let vs: Vec<String> = serde_json::from_str(&out.stdout).with_context(|| format!("parsing `npm view {pkg} versions`"))?;
                    common = Some(match common {
                        None => vs,
                        Some(c) => c.into_iter().filter(|v| vs.contains(v)).collect(),
                    });
                }
                let mut vs: Vec<String> = common.unwrap_or_default().into_iter().filter(|v| !v.contains('-')).collect();
                vs.sort_by_key(|v| crate::version::sort_key(v));
                vs.pop().ok_or_else(|| anyhow!("no opencode version is published for all of {}", Platform::join(platforms)))
            }
            OpencodeSource::File(_) | OpencodeSource::Url(_) => Err(UserError::setting(
                "opencode_version \"latest\" needs the github or npm source; set opencode_version to X.Y.Z",
            )
            .into()),
        }
    }

    /// The verified binary for one platform, downloading it if it is not cached.
    pub(crate) async fn fetch(&self, version: &str, platform: Platform) -> Result<Binary> {
        if let Some(b) = self.cached(version, platform) {
            return Ok(b);
        }
        let asset = asset_name(platform, self.variant);
        // everything is written beside the final location and renamed, so an interrupted or
        // failed fetch never leaves a half entry that `cached` would trust
        let dir = self.entry_dir(version, &asset);
        let parent = dir.parent().unwrap_or(&dir);
        crate::disk::context(std::fs::create_dir_all(parent), parent, None)?;
        let tmp = crate::disk::context(
            tempfile::Builder::new()
                .prefix(".fetch-")
                .tempdir_in(parent),
            parent,
            None,
        )?;
        let tmp_path =
            Utf8Path::from_path(tmp.path()).ok_or_else(|| anyhow!("non-UTF-8 cache path"))?;
        // what a source hands over goes in here (`opencode` beside it is the entry's binary)
        let into = tmp_path.join("download");
        crate::disk::context(std::fs::create_dir(&into), &into, None)?;
        let archive = match self.source {
            OpencodeSource::Github => self.download_github(version, &asset, &into).await?,
            OpencodeSource::Npm => self.download_npm(version, &asset, &into).await?,
            OpencodeSource::Url(t) => {
                self.download_url(t, version, platform, &asset, &into)
                    .await?
            }
            OpencodeSource::File(t) => {
                self.read_file_source(t, version, platform, &asset, &into)?
            }
        };
        let binary = extract(&archive.name, &archive.path)?;
        check_elf(&binary, platform)
            .with_context(|| format!("{} from {}", archive.name, self.source))?;
        let _ = std::fs::remove_dir_all(&into);
        let published = archive.published;
        write_executable(&tmp_path.join("opencode"), &binary)?;
        crate::disk::write(&tmp_path.join("checksum"), &published)?;
        let sha256 = hex(&Sha256::digest(&binary));
        crate::disk::write(&tmp_path.join("sha256"), &sha256)?;
        let _ = std::fs::remove_dir_all(&dir);
        let kept = tmp.keep();
        if let Err(e) = std::fs::rename(&kept, &dir) {
            let _ = std::fs::remove_dir_all(&kept);
            // a concurrent ocx may have just put the same verified entry in place
            return self
                .cached(version, platform)
                .ok_or_else(|| anyhow!("moving into {dir}: {e}"));
        }
        Ok(Binary {
            platform,
            asset,
            path: dir.join("opencode"),
            published,
            sha256,
        })
    }

    /// A GET of `url` that the server answered with success, through the shared client.
    async fn request(&self, url: &str) -> Result<reqwest::Response> {
        let mut req = self.http.get()?.get(url);
        // a token raises GitHub's rate limit; it goes in a header, never in argv or logs, and
        // only to GitHub's own API, never to a mirror named by OCX_GITHUB_API_URL (reqwest
        // drops it on a redirect to another host)
        if let Some(t) = self.vars.get("GITHUB_TOKEN") {
            if url.starts_with(GITHUB_API) {
                req = req.bearer_auth(t);
            }
        }
        let resp = req
            .send()
            .await
            .map_err(|e| crate::http::failure(&e, &format!("GET {url}")))?;
        let status = resp.status();
        if !status.is_success() {
            bail!("GET {url}: the server answered {status}");
        }
        Ok(resp)
    }

    /// The next piece of a response body, or `None` at its end.
    async fn chunk(resp: &mut reqwest::Response, url: &str) -> Result<Option<bytes::Bytes>> {
        resp.chunk()
            .await
            .map_err(|e| crate::http::failure(&e, &format!("reading {url}")))
    }

    /// A small document (a release's JSON, a `.sha256`), in memory. Stops at once on Ctrl-C.
    async fn http_get(&self, url: &str) -> Result<Vec<u8>> {
        crate::interrupt::until_stopped(async {
            let mut resp = self.request(url).await?;
            let mut buf = Vec::new();
            while let Some(piece) = Self::chunk(&mut resp, url).await? {
                buf.extend_from_slice(&piece);
                if buf.len() > DOCUMENT_LIMIT {
                    bail!("{url} is larger than {} MiB", DOCUMENT_LIMIT >> 20);
                }
            }
            Ok(buf)
        })
        .await?
    }

    /// Streams `url` into the file `dst`, hashing it on the way; returns its sha256 (hex).
    /// Stops at once on Ctrl-C (the caller's temporary directory then goes with it).
    async fn download(&self, url: &str, dst: &Utf8Path) -> Result<String> {
        crate::interrupt::until_stopped(async {
            let mut resp = self.request(url).await?;
            let size = resp.content_length();
            if size.is_some_and(|n| n > DOWNLOAD_LIMIT) {
                bail!("{url} is larger than {} GiB", DOWNLOAD_LIMIT >> 30);
            }
            let mut out = crate::disk::context(std::fs::File::create(dst), dst, size)?;
            let mut hasher = Sha256::new();
            let mut got = 0u64;
            while let Some(piece) = Self::chunk(&mut resp, url).await? {
                got += piece.len() as u64;
                if got > DOWNLOAD_LIMIT {
                    bail!("{url} is larger than {} GiB", DOWNLOAD_LIMIT >> 30);
                }
                hasher.update(&piece);
                crate::disk::context(out.write_all(&piece), dst, size)?;
            }
            Ok(hex(&hasher.finalize()))
        })
        .await?
    }

    async fn download_github(
        &self,
        version: &str,
        asset: &str,
        into: &Utf8Path,
    ) -> Result<Archive> {
        let url = format!(
            "{}/repos/{}/releases/tags/v{version}",
            self.github_api(),
            self.github_repo()
        );
        let rel: serde_json::Value = serde_json::from_slice(&self.http_get(&url).await?)
            .with_context(|| format!("parsing {url}"))?;
        let assets = rel["assets"]
            .as_array()
            .ok_or_else(|| anyhow!("{url}: no assets"))?;
        let found = assets.iter().find(|a| {
            let n = a["name"].as_str().unwrap_or("");
            n == format!("{asset}.tar.gz") || n == format!("{asset}.zip")
        });
        let Some(a) = found else {
            return Err(UserError::not_found(format!(
                "opencode v{version} has no release asset {asset}.tar.gz or .zip on GitHub"
            ))
            .into());
        };
        let name = a["name"].as_str().unwrap_or_default().to_string();
        let digest = a["digest"].as_str().ok_or_else(|| {
            anyhow!("GitHub publishes no sha256 digest for {name}; refusing an unverified download (use opencode_source npm)")
        })?;
        let want = digest
            .strip_prefix("sha256:")
            .ok_or_else(|| anyhow!("unsupported digest {digest} for {name}"))?
            .to_ascii_lowercase();
        let dl = a["browser_download_url"]
            .as_str()
            .ok_or_else(|| anyhow!("{name}: no download URL"))?;
        let path = into.join("archive");
        let got = self.download(dl, &path).await?;
        if got != want {
            return Err(mismatch(
                &name,
                &format!("sha256:{want}"),
                &format!("sha256:{got}"),
            ));
        }
        Ok(Archive {
            name,
            path,
            published: format!("sha256:{want}"),
        })
    }

    async fn download_npm(&self, version: &str, pkg: &str, into: &Utf8Path) -> Result<Archive> {
        let spec = format!("{pkg}@{version}");
        let view = self
            .engine
            .tool(
                &Invocation::new("npm")
                    .args(["view", &spec, "dist.integrity", "--json"])
                    .read_only(),
            )
            .await?;
        let integrity: String = serde_json::from_str(view.stdout.trim()).map_err(|_| {
            UserError::not_found(format!("npm has no {spec}; check opencode_version"))
        })?;
        let out = self
            .engine
            .tool(&Invocation::new("npm").args([
                "pack",
                &spec,
                "--pack-destination",
                into.as_str(),
                "--json",
            ]))
            .await?;
        let packed: serde_json::Value =
            serde_json::from_str(&out.stdout).context("parsing `npm pack --json`")?;
        let file = packed[0]["filename"]
            .as_str()
            .ok_or_else(|| anyhow!("npm pack printed no filename"))?;
        let path = into.join(file.rsplit('/').next().unwrap_or(file));
        let want = integrity
            .strip_prefix("sha512-")
            .ok_or_else(|| anyhow!("unsupported npm integrity {integrity}"))?;
        let mut hasher = Sha512::new();
        std::fs::File::open(&path)
            .and_then(|mut f| std::io::copy(&mut f, &mut hasher))
            .with_context(|| format!("reading {path}"))?;
        let got = base64::engine::general_purpose::STANDARD.encode(hasher.finalize());
        if got != want {
            return Err(mismatch(&spec, &integrity, &format!("sha512-{got}")));
        }
        Ok(Archive {
            name: file.to_string(),
            path,
            published: integrity,
        })
    }

    async fn download_url(
        &self,
        template: &str,
        version: &str,
        p: Platform,
        asset: &str,
        into: &Utf8Path,
    ) -> Result<Archive> {
        let url = expand(template, version, p, asset);
        let sums = String::from_utf8_lossy(
            &self
                .http_get(&format!("{url}.sha256"))
                .await
                .context("fetching the published .sha256 next to the binary")?,
        )
        .into_owned();
        let want = sums
            .split_whitespace()
            .next()
            .unwrap_or("")
            .to_ascii_lowercase();
        if want.len() != 64 || !want.chars().all(|c| c.is_ascii_hexdigit()) {
            bail!("{url}.sha256 does not hold a sha256 checksum");
        }
        let name = url.rsplit('/').next().unwrap_or(asset).to_string();
        let path = into.join("archive");
        let got = self.download(&url, &path).await?;
        if got != want {
            return Err(mismatch(
                &url,
                &format!("sha256:{want}"),
                &format!("sha256:{got}"),
            ));
        }
        Ok(Archive {
            name,
            path,
            published: format!("sha256:{want}"),
        })
    }

    /// A `file:` source, copied into `into` as it is hashed, so what is unpacked is what was
    /// checked.
    fn read_file_source(
        &self,
        template: &Utf8Path,
        version: &str,
        p: Platform,
        asset: &str,
        into: &Utf8Path,
    ) -> Result<Archive> {
        let src = Utf8PathBuf::from(expand(template.as_str(), version, p, asset));
        self.trust
            .check("opencode_source", self.source_origin, &src)?;
        let cannot_read = |e: std::io::Error| {
            UserError::file(format!("cannot read opencode_source file {src}: {e}"))
        };
        let mut file = std::fs::File::open(&src).map_err(cannot_read)?;
        let size = file.metadata().map(|m| m.len()).ok();
        let name = src.file_name().unwrap_or(asset).to_string();
        let path = into.join("archive");
        let mut out = crate::disk::context(std::fs::File::create(&path), &path, size)?;
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; 1 << 20];
        loop {
            crate::interrupt::check()?;
            let n = file.read(&mut buf).map_err(cannot_read)?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            crate::disk::context(out.write_all(&buf[..n]), &path, size)?;
        }
        let got = hex(&hasher.finalize());
        let sums = Utf8PathBuf::from(format!("{src}.sha256"));
        if let Ok(s) = std::fs::read_to_string(&sums) {
            let want = s
                .split_whitespace()
                .next()
                .unwrap_or("")
                .to_ascii_lowercase();
            if want != got {
                return Err(mismatch(
                    src.as_str(),
                    &format!("sha256:{want}"),
                    &format!("sha256:{got}"),
                ));
            }
        }
        Ok(Archive {
            name,
            path,
            published: format!("sha256:{got}"),
        })
    }
}

fn expand(template: &str, version: &str, p: Platform, asset: &str) -> String {
    template
        .replace("{version}", version)
        .replace("{asset}", asset)
        .replace("{arch}", p.opencode_arch())
}

/// The `opencode` executable from a .tar.gz/.tgz or .zip at `path`, or the file itself.
fn extract(name: &str, path: &Utf8Path) -> Result<Vec<u8>> {
    let open = || std::fs::File::open(path).with_context(|| format!("opening {path}"));
    let is_ours = |p: &str| p.rsplit('/').next() == Some("opencode");
    if name.ends_with(".tar.gz") || name.ends_with(".tgz") {
        let gz = flate2::read::GzDecoder::new(std::io::BufReader::new(open()?));
        let mut ar = tar::Archive::new(gz);
        for entry in ar.entries()? {
            crate::interrupt::check()?;
            let mut entry = entry?;
            if is_ours(&entry.path()?.to_string_lossy()) {
                let mut buf = Vec::new();
                entry.read_to_end(&mut buf)?;
                return Ok(buf);
            }
        }
        bail!("{name} holds no `opencode` executable");
    }
    if name.ends_with(".zip") {
        let mut zip = zip::ZipArchive::new(std::io::BufReader::new(open()?))?;
        for i in 0..zip.len() {
            let mut f = zip.by_index(i)?;
            if is_ours(f.name()) {
                let mut buf = Vec::new();
                f.read_to_end(&mut buf)?;
                return Ok(buf);
            }
        }
        bail!("{name} holds no `opencode` executable");
    }
    let mut buf = Vec::new();
    open()?
        .read_to_end(&mut buf)
        .with_context(|| format!("reading {path}"))?;
    Ok(buf)
}

/// Refuses a binary for the wrong architecture before it goes into an image.
fn check_elf(bin: &[u8], p: Platform) -> Result<()> {
    if bin.len() < 20 || &bin[..4] != b"\x7fELF" {
        bail!("the opencode download is not a Linux (ELF) executable");
    }
    let machine = u16::from_le_bytes([bin[18], bin[19]]);
    let want = match p {
        Platform::LinuxAmd64 => 62,
        Platform::LinuxArm64 => 183,
    };
    if machine != want {
        bail!("the opencode download for {p} is an ELF binary for another architecture (e_machine {machine})");
    }
    Ok(())
}

fn write_executable(path: &Utf8Path, bytes: &[u8]) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    crate::disk::write(path, bytes)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn asset_names_follow_upstream() {
        assert_eq!(
            asset_name(Platform::LinuxAmd64, OpencodeVariant::Standard),
            "opencode-linux-x64"
        );
        assert_eq!(
            asset_name(Platform::LinuxArm64, OpencodeVariant::BaselineMusl),
            "opencode-linux-arm64-baseline-musl"
        );
        assert_eq!(
            asset_name(Platform::LinuxAmd64, OpencodeVariant::Musl),
            "opencode-linux-x64-musl"
        );
    }

    #[test]
    fn elf_arch_is_checked() {
        let mut elf = vec![0u8; 64];
        elf[..4].copy_from_slice(b"\x7fELF");
        elf[18] = 183;
        assert!(check_elf(&elf, Platform::LinuxArm64).is_ok());
        assert!(check_elf(&elf, Platform::LinuxAmd64).is_err());
        assert!(check_elf(b"#!/bin/sh\n echo hi.........", Platform::LinuxAmd64).is_err());
    }
}
