//! Image references, validated with the distribution grammar (via oci-spec) and normalized the
//! way docker does, so `ubuntu`, `docker.io/library/ubuntu:latest` and `index.docker.io/ubuntu`
//! compare equal.

use crate::error::UserError;
use oci_spec::distribution::Reference;
use std::fmt;
use std::str::FromStr;
use std::sync::{Arc, OnceLock};

/// A validated image reference: every one is checked against the distribution grammar when it
/// is made, so none is ever invalid (there is no unchecked form). Keeps what the user wrote
/// (engines resolve short names against their own local stores, and an engine may not find
/// `docker.io/local/x` for a local `local/x`) alongside the docker-normalized form used for
/// comparison and display.
///
/// The verdict and the normalized form are two costs. oci-spec's grammar regex takes ~60 ms
/// to compile (its tag class is Unicode `\w{0,127}`), as long as the whole `image inspect` a
/// no-op build costs, and every name a no-op makes (the final image, the base, the binary
/// images) would pay it. So [`ImageRef::parse`] gives the verdict by hand for the usual shapes
/// (`[host[:port]/]path[:tag]`, see `plain_shape`, in microseconds), which accepts only what
/// the grammar accepts (unit tests and the fuzz test hold it to that), and runs the grammar
/// for anything else. The normalized form (registry, repository, tag, digest) is worked out
/// on first use, once per reference; a no-op build never asks for it.
///
/// (There used to be a `parse_deferred` that screened the text and left the grammar check for
/// later: its value looked validated but answered `""` for the registry of a name the grammar
/// rejects. The quick verdict made it unnecessary.)
#[derive(Debug, Clone)]
pub struct ImageRef {
    original: String,
    /// The grammar's reading of `original`, made on first use (or at once by `parse` when the
    /// quick check cannot give the verdict).
    parsed: Arc<OnceLock<Reference>>,
}

impl ImageRef {
    /// Screens (charset, no leading `-`, so it is safe as an argv element) and validates: by
    /// hand for the usual shapes, by the full grammar otherwise. The error is the one-line
    /// message a user sees.
    pub fn parse(s: &str) -> Result<Self, UserError> {
        screen(s)?;
        let parsed = OnceLock::new();
        if !plain_shape(s) {
            let _ = parsed.set(full_parse(s)?);
        }
        Ok(ImageRef {
            original: s.to_string(),
            parsed: Arc::new(parsed),
        })
    }

    /// The grammar's reading. `parse` accepted the text, by the grammar itself or by
    /// `plain_shape`, which accepts nothing the grammar rejects (tested), so this cannot fail.
    fn reference(&self) -> &Reference {
        self.parsed.get_or_init(|| {
            full_parse(&self.original).unwrap_or_else(|e| {
                panic!(
                    "the quick check accepted {:?}, the grammar did not: {e}",
                    self.original
                )
            })
        })
    }

    /// `docker.io/library/ubuntu:latest` for `ubuntu`.
    pub fn normalized(&self) -> String {
        self.reference().whole()
    }

    /// The form to hand an engine: what the user wrote.
    pub(crate) fn as_str(&self) -> &str {
        &self.original
    }

    /// `docker.io` for `ubuntu`; empty only for a name the grammar reads with no host (it
    /// takes `a_b.c/x` as a path, as Go does).
    pub fn registry(&self) -> &str {
        self.reference().registry()
    }

    pub fn repository(&self) -> &str {
        self.reference().repository()
    }

    pub fn tag(&self) -> Option<&str> {
        self.reference().tag()
    }

    pub fn digest(&self) -> Option<&str> {
        self.reference().digest()
    }

    /// The same repository with another tag (e.g. `<registry>:<variant>-<version>`).
    pub(crate) fn with_tag(&self, tag: &str) -> Result<Self, UserError> {
        let name = self.name_as_written();
        format!("{name}:{tag}").parse()
    }

    /// What the user wrote, minus tag and digest.
    pub(crate) fn name_as_written(&self) -> &str {
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
    pub(crate) fn sanitized_name(&self) -> String {
        sanitize(&self.original)
    }
}

/// Maps any text to a valid repository path component (see [`ImageRef::sanitized_name`]).
pub(crate) fn sanitize(text: &str) -> String {
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
    UserError::reference(format!(
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
    Ok(())
}

/// Whether `s` (already screened) is a reference of the usual shape that the full grammar
/// accepts: an optional host (`localhost`, or with a `.` or a port) made of DNS labels,
/// lowercase path components with the grammar's separators, an ASCII tag, a path that stays
/// under the length limit even with `library/`, and not an image ID. `false` says nothing:
/// digests, IPv6 hosts, uppercase first components and the rest go to [`full_parse`].
fn plain_shape(s: &str) -> bool {
    if s.contains(['@', '[']) {
        return false;
    }
    let (name, tag) = match s.rfind(':') {
        Some(i) if !s[i..].contains('/') => (&s[..i], Some(&s[i + 1..])),
        _ => (s, None),
    };
    if let Some(t) = tag {
        let ok = (1..=128).contains(&t.len())
            && !t.starts_with(['.', '-'])
            && t.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
        if !ok {
            return false;
        }
    }
    let mut comps: Vec<&str> = name.split('/').collect();
    if comps.len() > 1 {
        let first = comps[0];
        if first == "localhost" || first.contains(['.', ':']) {
            if !host_and_port(first) {
                return false;
            }
            comps.remove(0);
        }
    } else if tag.is_none()
        && name.len() == 64
        && name.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    {
        return false;
    }
    let path_len = comps.iter().map(|c| c.len() + 1).sum::<usize>() - 1;
    path_len + "library/".len() <= 255 && comps.iter().all(|c| path_component(c))
}

/// distribution's `domainAndPort` without IPv6: DNS labels of letters (any case), digits and
/// inner `-`, joined by `.`, then an optional `:port`.
fn host_and_port(s: &str) -> bool {
    let (host, port) = match s.split_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (s, None),
    };
    let label = |l: &str| {
        !l.is_empty()
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    host.split('.').all(label)
        && port.is_none_or(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
}

/// distribution's `pathComponent`: `[a-z0-9]+` runs joined by `.`, `_`, `__` or `-`+.
fn path_component(c: &str) -> bool {
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let b = c.as_bytes();
    if b.is_empty() || !alnum(b[0]) || !alnum(b[b.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if alnum(b[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len() && !alnum(b[i]) {
            i += 1;
        }
        let sep = &c[start..i];
        if !(sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|x| x == b'-')) {
            return false;
        }
    }
    true
}

/// Stands in for the registry host while oci-spec checks the rest (see [`full_parse`]).
const STAND_IN: &str = "stand-in.invalid";

/// distribution's `domainAndPort`, anchored: a DNS-like name (any case) or a bracketed IPv6
/// literal of hex digits and colons only (no zone, no dotted IPv4 tail), then an optional port.
fn domain_regex() -> &'static regex::Regex {
    static RE: OnceLock<regex::Regex> = OnceLock::new();
    RE.get_or_init(|| {
        let component = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])";
        let host = format!(r"(?:{component}(?:\.{component})*|\[(?:[a-fA-F0-9:]+)\])");
        regex::Regex::new(&format!(r"^{host}(?::[0-9]+)?$")).expect("domain regex")
    })
}

/// distribution's `splitDockerDomain` (normalize.go): the first component is a registry host
/// when it is `localhost`, contains `.` or `:`, or has an uppercase letter (repository paths
/// are lowercase, so such a component can only be a host); otherwise the name is on Docker Hub,
/// under `library/` when it has one component.
fn split_docker_domain(name: &str) -> (&str, String) {
    let Some((first, rest)) = name.split_once('/') else {
        return ("docker.io", format!("library/{name}"));
    };
    let (domain, remote) = if first == "index.docker.io" {
        ("docker.io", rest.to_string())
    } else if first == "localhost"
        || first.contains(['.', ':'])
        || first.chars().any(|c| c.is_ascii_uppercase())
    {
        (first, rest.to_string())
    } else {
        ("docker.io", name.to_string())
    };
    let remote = if domain == "docker.io" && !remote.contains('/') {
        format!("library/{remote}")
    } else {
        remote
    };
    (domain, remote)
}

/// `ParseNormalizedNamed` from distribution/reference, step by step:
/// 1. a bare 64-hex string is an image ID, never a name;
/// 2. split off the registry host as docker does (`Foo/bar`: the host is `Foo`);
/// 3. `Parse(domain + "/" + remainder)`: the grammar takes the first component as the host only
///    if it matches `domainAndPort`; otherwise the whole name is the path (so `a_b.c/x` is a
///    valid name with no host, exactly as in Go);
/// 4. path, tag, digest grammar and the 255-character path limit (the path alone, since
///    distribution v0.6.0) are oci-spec's, checked on the rest behind a stand-in host;
/// 5. a digest's hex is lowercase (go-digest), which oci-spec does not check.
fn full_parse(s: &str) -> Result<Reference, UserError> {
    if s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return Err(bad(
            s,
            "a 64-character hex string is an image ID, not a repository name",
        ));
    }
    let (domain, remainder) = split_docker_domain(s);
    let (registry, rest) = if domain_regex().is_match(domain) {
        (domain.to_string(), remainder)
    } else {
        (String::new(), format!("{domain}/{remainder}"))
    };
    let r = Reference::try_from(format!("{STAND_IN}/{rest}").as_str()).map_err(|e| {
        let why = match e {
            oci_spec::distribution::ParseError::ReferenceInvalidFormat
                if rest.chars().any(|c| c.is_ascii_uppercase())
                    && Reference::try_from(
                        format!("{STAND_IN}/{}", rest.to_ascii_lowercase()).as_str(),
                    )
                    .is_ok() =>
            {
                "repository names must be lowercase".to_string()
            }
            e => e.to_string(),
        };
        bad(s, &why)
    })?;
    if r.registry() != STAND_IN {
        return Err(bad(s, "invalid reference format"));
    }
    if let Some(d) = r.digest() {
        let hex = d.split_once(':').map(|(_, h)| h).unwrap_or("");
        if hex.bytes().any(|b| b.is_ascii_uppercase()) {
            return Err(bad(s, "a digest's hex must be lowercase"));
        }
    }
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

    /// distribution/reference's own edge cases (normalize_test.go, reference_test.go, v0.6.0).
    #[test]
    fn distribution_edge_cases() {
        let hex64 = "a".repeat(64);
        for (input, want) in [
            // an uppercase first component is a registry host, not an error
            ("Foo/bar", Some("Foo/bar:latest")),
            ("FOO/bar:v1", Some("FOO/bar:v1")),
            ("LOCALDOMAIN/fooo", Some("LOCALDOMAIN/fooo:latest")),
            ("My.Registry/x", Some("My.Registry/x:latest")),
            ("LOCALHOST:5000/x", Some("LOCALHOST:5000/x:latest")),
            ("foo/Bar", None),
            ("Ubuntu", None),
            ("My_Reg/x", None),
            // the host is the first component only if it is one by the grammar
            ("a_b.c/x", Some("a_b.c/x:latest")),
            // a bare 64-hex name is an image ID; with a tag it is a name
            (hex64.as_str(), None),
            // IPv6 exactly as the grammar: hex and colons in brackets, optional port
            ("[2001:db8::1]/repo", Some("[2001:db8::1]/repo:latest")),
            (
                "[2001:db8::1]:5000/repo",
                Some("[2001:db8::1]:5000/repo:latest"),
            ),
            ("[:::::]/repo", Some("[:::::]/repo:latest")),
            ("[AB]/x", Some("[AB]/x:latest")),
            ("[ab]/x", None),
            ("[fe80::1%eth0]:5000/repo", None),
            ("[::ffff:1.2.3.4]/x", None),
            ("[2001:db8::1]", None),
            ("[2001:db8::1]:5000", None),
            // digests: lowercase hex of the algorithm's length
            (&*format!("x@sha256:{}", "A".repeat(64)), None),
            (
                &*format!("x@sha512:{}", "b".repeat(128)),
                Some(&*format!("docker.io/library/x@sha512:{}", "b".repeat(128))),
            ),
        ] {
            let got = ImageRef::parse(input).map(|r| r.normalized()).ok();
            assert_eq!(got.as_deref(), want, "{input}");
        }
        let tagged = format!("{hex64}:v1");
        assert_eq!(
            ImageRef::parse(&tagged).unwrap().normalized(),
            format!("docker.io/library/{tagged}")
        );
    }

    /// The 255-character limit is on the path alone (distribution v0.6.0), `library/` included.
    #[test]
    fn name_length_limit_is_on_the_path() {
        let ok = format!("example.com/{}", "a".repeat(255));
        assert!(ImageRef::parse(&ok).is_ok());
        let long = format!("example.com/{}", "a".repeat(256));
        let err = ImageRef::parse(&long).unwrap_err();
        assert!(err.message().contains("255"), "{err}");
        assert!(ImageRef::parse(&"a".repeat(247)).is_ok());
        assert!(ImageRef::parse(&"a".repeat(248)).is_err());
    }

    #[test]
    fn digests_keep_no_default_tag() {
        let d = format!("ubuntu@sha256:{}", "a".repeat(64));
        let r = ImageRef::parse(&d).unwrap();
        assert_eq!(r.tag(), None);
        assert_eq!(r.digest().unwrap().len(), 71);
    }

    #[test]
    fn the_quick_check_agrees_with_the_full_one() {
        let full = |s: &str| screen(s).is_ok() && full_parse(s).is_ok();
        for s in [
            "ubuntu",
            "ubuntu:24.04",
            "local/debian:bookworm",
            "localhost:5000/a/b-c__d.e:v1",
            "My.Registry:443/x",
            "ghcr.io/acme/dev:2",
            "a--b/c",
            "Foo/Bar",
            "foo/Bar",
            "x:.tag",
            "a..b",
            "a-/b",
            "x-.io/y",
            "ubuntu@sha256:0123",
            &"a".repeat(64),
            &format!("{}:1", "a".repeat(64)),
            &format!("x.io/{}", "a".repeat(248)),
        ] {
            assert!(
                !plain_shape(s) || full(s),
                "{s}: the quick check accepts what the grammar rejects"
            );
            assert_eq!(ImageRef::parse(s).is_ok(), full(s), "{s}");
        }
        assert!(plain_shape("localhost:5000/a/b-c__d.e:v1") && !plain_shape("Foo/Bar"));
    }

    /// A reference given its verdict by the quick check answers what the grammar reads when
    /// asked, never an empty registry or repository.
    #[test]
    fn a_quickly_checked_reference_answers_like_a_fully_parsed_one() {
        for (s, registry, repository) in [
            (
                "ocx-default-base:0123456789ab",
                "docker.io",
                "library/ocx-default-base",
            ),
            (
                "ocx-base-app-01234567:latest",
                "docker.io",
                "library/ocx-base-app-01234567",
            ),
            (
                "ocx-opencode:1.18.18-musl-arm64",
                "docker.io",
                "library/ocx-opencode",
            ),
            ("local/debian:bookworm", "docker.io", "local/debian"),
            ("localhost:5000/x", "localhost:5000", "x"),
        ] {
            assert!(plain_shape(s), "{s}");
            let r = ImageRef::parse(s).unwrap();
            assert!(r.parsed.get().is_none(), "{s}: the grammar ran at parse");
            assert_eq!(
                (r.registry(), r.repository()),
                (registry, repository),
                "{s}"
            );
            assert_eq!(r, ImageRef::parse(&r.normalized()).unwrap(), "{s}");
        }
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
            assert!(
                err.message().starts_with("invalid image reference"),
                "{bad}: {err}"
            );
            assert!(!err.message().contains('\n'), "one line: {err:?}");
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
