//! Image references, validated with the distribution grammar (via oci-spec) and normalized the
//! way docker does, so `ubuntu`, `docker.io/library/ubuntu:latest` and `index.docker.io/ubuntu`
//! compare equal.

use crate::error::UserError;
use oci_spec::distribution::Reference;
use std::fmt;
use std::str::FromStr;
use std::sync::{Arc, OnceLock};

/// A validated image reference. Keeps what the user wrote (engines resolve short names against
/// their own local stores, and an engine may not find `docker.io/local/x` for a local `local/x`)
/// alongside the docker-normalized form used for comparison and display.
///
/// oci-spec's grammar regex takes ~60 ms to compile (its tag class is Unicode `\w{0,127}`),
/// as long as the whole `image inspect` a no-op build costs. [`ImageRef::parse_deferred`]
/// therefore screens the text at once (so it is safe as an argv element) and leaves the full
/// grammar check to [`ImageRef::validated`], which workflows call before anything is built.
#[derive(Debug, Clone)]
pub struct ImageRef {
    original: String,
    parsed: Arc<OnceLock<Result<Reference, UserError>>>,
}

impl ImageRef {
    /// Screens and fully validates.
    pub fn parse(s: &str) -> Result<Self, UserError> {
        let r = Self::parse_deferred(s)?;
        r.validated()?;
        Ok(r)
    }

    /// Screens now (charset, no leading `-`); the grammar check runs on first use.
    pub fn parse_deferred(s: &str) -> Result<Self, UserError> {
        screen(s)?;
        Ok(ImageRef {
            original: s.to_string(),
            parsed: Arc::new(OnceLock::new()),
        })
    }

    fn full(&self) -> &Result<Reference, UserError> {
        self.parsed.get_or_init(|| full_parse(&self.original))
    }

    /// Runs the grammar check (once); the error is the one-line message a user sees.
    pub fn validated(&self) -> Result<&Self, UserError> {
        match self.full() {
            Ok(_) => Ok(self),
            Err(e) => Err(e.clone()),
        }
    }

    fn reference(&self) -> Option<&Reference> {
        self.full().as_ref().ok()
    }

    /// `docker.io/library/ubuntu:latest` for `ubuntu`.
    pub fn normalized(&self) -> String {
        self.reference()
            .map(|r| r.whole())
            .unwrap_or_else(|| self.original.clone())
    }

    /// The form to hand an engine: what the user wrote.
    pub fn as_str(&self) -> &str {
        &self.original
    }

    pub fn registry(&self) -> &str {
        self.reference().map(|r| r.registry()).unwrap_or("")
    }

    pub fn repository(&self) -> &str {
        self.reference().map(|r| r.repository()).unwrap_or("")
    }

    pub fn tag(&self) -> Option<&str> {
        self.reference().and_then(|r| r.tag())
    }

    pub fn digest(&self) -> Option<&str> {
        self.reference().and_then(|r| r.digest())
    }

    /// The same repository with another tag (e.g. `<registry>:<variant>-<version>`).
    pub fn with_tag(&self, tag: &str) -> Result<Self, UserError> {
        let name = self.name_as_written();
        format!("{name}:{tag}").parse()
    }

    /// What the user wrote, minus tag and digest.
    pub fn name_as_written(&self) -> &str {
        let s = self.original.split('@').next().unwrap_or(&self.original);
        match s.rfind(':') {
            Some(i) if !s[i + 1..].contains('/') => &s[..i],
            _ => s,
        }
    }

    /// Whether the reference names its registry host (`ghcr.io/x`, `localhost:5000/x`), by
    /// the distribution rule for the first path component. Engines resolve the rest against a
    /// default registry (each engine has its own; see the backends' `names_match`).
    pub fn has_explicit_registry(&self) -> bool {
        let s = self.name_as_written();
        match s.split_once('/') {
            Some((first, _)) => {
                first.contains(['.', ':'])
                    || first == "localhost"
                    || first.starts_with('[')
                    || first.chars().any(|c| c.is_ascii_uppercase())
            }
            None => false,
        }
    }

    /// A repository name derived from this reference: lowercase, with registry, path, tag and
    /// digest separators mapped to `-`. `ghcr.io/org/dev:1.2` becomes `ghcr-io-org-dev-1-2`.
    pub fn sanitized_name(&self) -> String {
        sanitize(&self.original)
    }
}

/// Maps any text to a valid repository path component (see [`ImageRef::sanitized_name`]).
pub fn sanitize(text: &str) -> String {
    {
        let mut out = String::with_capacity(text.len());
        for c in text.chars() {
            let c = c.to_ascii_lowercase();
            if c.is_ascii_lowercase() || c.is_ascii_digit() {
                out.push(c);
            } else if !out.ends_with('-') {
                out.push('-');
            }
        }
        let trimmed = out.trim_matches('-');
        // repository path components must stay well under the 255-char limit once prefixed
        trimmed
            .chars()
            .take(120)
            .collect::<String>()
            .trim_end_matches('-')
            .to_string()
    }
}

impl FromStr for ImageRef {
    type Err = UserError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ImageRef::parse(s)
    }
}

fn bad(s: &str, why: &str) -> UserError {
    UserError(format!(
        "invalid image reference {s:?}: {why}; expected [registry/]name[:tag][@digest], e.g. ubuntu:24.04"
    ))
}

/// The cheap part: only characters the grammar can contain, and nothing an engine CLI could
/// take for an option.
fn screen(s: &str) -> Result<(), UserError> {
    if s.is_empty() {
        return Err(bad(s, "it is empty"));
    }
    if s.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(bad(s, "it contains whitespace or control characters"));
    }
    if let Some(c) = s
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || "._-:/@[]".contains(*c)))
    {
        return Err(bad(s, &format!("{c:?} is not allowed")));
    }
    if s.starts_with(['-', '.', '_', ':', '/', '@']) {
        return Err(bad(s, "it must start with a letter, digit or ["));
    }
    if s.len() > 1024 {
        return Err(bad(s, "it is too long"));
    }
    Ok(())
}

fn full_parse(s: &str) -> Result<Reference, UserError> {
    let parsed = parse_with_ipv6_host(s).map_err(|e| bad(s, &e))?;
    // the grammar allows uppercase only in the domain and tag; docker rejects it in the path
    if parsed.repository().chars().any(|c| c.is_ascii_uppercase()) {
        return Err(bad(s, "repository names must be lowercase"));
    }
    Ok(parsed)
}

/// oci-spec's grammar predates bracketed IPv6 registry hosts (`[::1]:5000/img`), which the
/// distribution grammar accepts; parse the rest with a stand-in host and put the real one back.
fn parse_with_ipv6_host(s: &str) -> Result<Reference, String> {
    let Some(rest) = s.strip_prefix('[') else {
        return Reference::try_from(s).map_err(|e| e.to_string());
    };
    let (addr, after) = rest.split_once(']').ok_or("unclosed [ in registry host")?;
    addr.parse::<std::net::Ipv6Addr>()
        .map_err(|_| format!("[{addr}] is not an IPv6 address"))?;
    if !(after.starts_with('/') || after.starts_with(':')) {
        return Err("an IPv6 registry host must be followed by :port or /".into());
    }
    let stand_in = format!("ipv6.invalid{after}");
    let r = Reference::try_from(stand_in.as_str()).map_err(|e| e.to_string())?;
    if !r.registry().starts_with("ipv6.invalid") {
        return Err("an IPv6 address needs a repository path after it".into());
    }
    let registry = r
        .registry()
        .replacen("ipv6.invalid", &format!("[{addr}]"), 1);
    let repo = r.repository().to_string();
    Ok(match (r.tag(), r.digest()) {
        (Some(t), Some(d)) => Reference::with_tag_and_digest(registry, repo, t.into(), d.into()),
        (None, Some(d)) => Reference::with_digest(registry, repo, d.into()),
        (t, None) => Reference::with_tag(registry, repo, t.unwrap_or("latest").into()),
    })
}

impl PartialEq for ImageRef {
    fn eq(&self, other: &Self) -> bool {
        self.normalized() == other.normalized()
    }
}

impl Eq for ImageRef {}

impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.original)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes_like_docker() {
        for (input, want) in [
            ("ubuntu", "docker.io/library/ubuntu:latest"),
            ("ubuntu:24.04", "docker.io/library/ubuntu:24.04"),
            (
                "index.docker.io/library/ubuntu",
                "docker.io/library/ubuntu:latest",
            ),
            ("local/debian:bookworm", "docker.io/local/debian:bookworm"),
            ("ghcr.io/org/img:v1", "ghcr.io/org/img:v1"),
            ("localhost:5000/x", "localhost:5000/x:latest"),
            ("[::1]:5000/img:tag", "[::1]:5000/img:tag"),
        ] {
            assert_eq!(
                ImageRef::parse(input).unwrap().normalized(),
                want,
                "{input}"
            );
        }
    }

    #[test]
    fn digests_keep_no_default_tag() {
        let d = format!("ubuntu@sha256:{}", "a".repeat(64));
        let r = ImageRef::parse(&d).unwrap();
        assert_eq!(r.tag(), None);
        assert_eq!(r.digest().unwrap().len(), 71);
    }

    #[test]
    fn rejects_bad_references() {
        for bad in [
            "",
            "Ubuntu",
            "ubuntu:bad tag",
            "a\nRUN rm -rf /",
            "ubuntu;ls",
            "ubuntu$(id)",
            "ubuntu@sha256:abc",
            &"a".repeat(300),
            "-leading",
        ] {
            let err = ImageRef::parse(bad).unwrap_err();
            assert!(err.0.starts_with("invalid image reference"), "{bad}: {err}");
            assert!(!err.0.contains('\n'), "one line: {err:?}");
        }
    }

    #[test]
    fn sanitized_names_are_valid_repositories() {
        for (input, want) in [
            ("myproject-dev", "myproject-dev"),
            ("local/debian:bookworm", "local-debian-bookworm"),
            ("GHCR.io/org/img:V1.2", "ghcr-io-org-img-v1-2"),
            (
                "127.0.0.1:5000/local/busybox:latest",
                "127-0-0-1-5000-local-busybox-latest",
            ),
        ] {
            let got = ImageRef::parse(input).unwrap().sanitized_name();
            assert_eq!(got, want);
            assert!(ImageRef::parse(&format!("ocx-{got}:1.0.0")).is_ok());
        }
    }

    #[test]
    fn explicit_registry_hosts() {
        for (r, want) in [
            ("ocx-dev:1", false),
            ("local/debian:bookworm", false),
            ("localhost/x", true),
            ("ghcr.io/a/b", true),
            ("localhost:5000/x", true),
            ("[::1]:5000/x", true),
        ] {
            assert_eq!(
                ImageRef::parse(r).unwrap().has_explicit_registry(),
                want,
                "{r}"
            );
        }
    }
}
