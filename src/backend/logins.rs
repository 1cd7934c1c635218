//! What an engine is already logged in with: the formats of its login files (docker's
//! `config.json`, containers/image's `auth.json`) and the `docker-credential-*` helper protocol.
//! Pure: a file's text and a host in, a fact out; [`crate::engine::Engine::stored_credentials`]
//! reads the files and runs the helper. Engine knowledge, so it lives here and not in a workflow.

use crate::invocation::Invocation;
use std::fmt;

/// A user name and its secret. `Debug` hides the secret.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Credentials({}, password hidden)", self.username)
    }
}

impl Credentials {
    /// `user:password`, split at the first colon; `None` unless both parts are there.
    pub(crate) fn from_pair(text: &str) -> Option<Credentials> {
        match text.split_once(':') {
            Some((u, p)) if !u.is_empty() && !p.is_empty() => Some(Credentials {
                username: u.to_string(),
                password: p.to_string(),
            }),
            _ => None,
        }
    }

    /// The base64 `user:password` of a login file's `auth` field.
    pub(crate) fn from_basic(b64: &str) -> Option<Credentials> {
        use base64::Engine as _;
        let bytes = base64::engine::general_purpose::STANDARD.decode(b64).ok()?;
        // docker pads some entries with NULs, containers/image trims them too
        Credentials::from_pair(String::from_utf8(bytes).ok()?.trim_end_matches('\0'))
    }

    /// The `auth` field a login file holds for these credentials.
    pub(crate) fn basic(&self) -> String {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD
            .encode(format!("{}:{}", self.username, self.password))
    }
}

/// What one login file says about one registry host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum StoredLogin {
    /// The credentials are in the file.
    Basic(Credentials),
    /// A `docker-credential-<name>` helper holds them.
    Helper(String),
    /// Nothing for this host here; the next file may have it.
    Missing,
}

/// Which program reads the file, since the two read the same keys in a different order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reader {
    /// The docker CLI (`cli/config/configfile`): `credHelpers[host]`, else `credsStore`, else
    /// `auths[host]`.
    DockerCli,
    /// containers/image (podman, skopeo, buildah): `credHelpers[host]`, else `auths[host]`
    /// (also under a normalized key: `https://host/v1/` or `docker.io` spellings); it does
    /// not read `credsStore`.
    ContainersImage,
}

/// What `text` (a login file) says about the repository `repo` (`host/path`), read the way
/// `reader` reads it. A file that is not JSON says nothing (the engine would fail on it, not
/// us).
pub(crate) fn stored_login(text: &str, repo: &str, reader: Reader) -> StoredLogin {
    let host = repo.split('/').next().unwrap_or(repo);
    let Ok(v) = serde_json::from_str::<serde_json::Value>(text) else {
        return StoredLogin::Missing;
    };
    let helper = |h: &serde_json::Value| h.as_str().filter(|h| !h.is_empty()).map(String::from);
    if let Some(h) = v
        .get("credHelpers")
        .and_then(|m| m.get(host))
        .and_then(helper)
    {
        return StoredLogin::Helper(h);
    }
    if reader == Reader::DockerCli {
        if let Some(h) = v.get("credsStore").and_then(helper) {
            return StoredLogin::Helper(h);
        }
    }
    let Some(auths) = v.get("auths").and_then(|a| a.as_object()) else {
        return StoredLogin::Missing;
    };
    let want = normalize(host);
    let entry = match reader {
        // the docker CLI reads every key as a host
        Reader::DockerCli => auths.get(host).or_else(|| {
            auths
                .iter()
                .find(|(k, _)| normalize(k) == want)
                .map(|(_, e)| e)
        }),
        // containers/image: the most specific `host/namespace` key first, then the host; a
        // namespaced key (`podman login ghcr.io/org`) is for repositories under it only
        Reader::ContainersImage => scopes(repo).find_map(|scope| auths.get(scope)).or_else(|| {
            auths
                .iter()
                .find(|(k, _)| !namespaced(k) && normalize(k) == want)
                .map(|(_, e)| e)
        }),
    };
    match entry
        .and_then(|e| e.get("auth"))
        .and_then(|a| a.as_str())
        .and_then(Credentials::from_basic)
    {
        Some(c) => StoredLogin::Basic(c),
        None => StoredLogin::Missing,
    }
}

/// `host/a/b`, then `host/a`, then `host`: the keys containers/image tries for a repository.
fn scopes(repo: &str) -> impl Iterator<Item = &str> {
    std::iter::successors(Some(repo), |r| r.rfind('/').map(|i| &r[..i]))
}

/// A `host/namespace` key: no scheme (a scheme marks the older `https://host/v1/` form, whose
/// path is not a namespace) and a path.
fn namespaced(key: &str) -> bool {
    !key.contains("://") && key.contains('/')
}

/// A login file key as a bare host: no scheme, no path; docker.io's spellings are one host.
fn normalize(key: &str) -> String {
    let bare = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    let host = bare.split('/').next().unwrap_or(bare);
    match host {
        "registry-1.docker.io" | "docker.io" | "index.docker.io" => "docker.io".into(),
        h => h.to_string(),
    }
}

/// `docker-credential-<helper> get` with the host on stdin; `None` for a helper name that is
/// not a plain program name (it becomes part of a program path).
pub(crate) fn helper_get(helper: &str, host: &str) -> Option<Invocation> {
    let plain = !helper.is_empty()
        && helper
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
        && !helper.starts_with('.');
    plain.then(|| {
        Invocation::new(format!("docker-credential-{helper}"))
            .arg("get")
            .stdin(host.as_bytes().to_vec())
            .read_only()
    })
}

/// The credentials in a helper's `get` reply (`{"Username": .., "Secret": ..}`).
pub(crate) fn helper_reply(stdout: &str) -> Option<Credentials> {
    let j: serde_json::Value = serde_json::from_str(stdout).ok()?;
    let u = j.get("Username")?.as_str()?;
    let s = j.get("Secret")?.as_str()?;
    (!u.is_empty() && !s.is_empty()).then(|| Credentials {
        username: u.into(),
        password: s.into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn basic(u: &str, p: &str) -> String {
        Credentials {
            username: u.into(),
            password: p.into(),
        }
        .basic()
    }

    #[test]
    fn auths_helpers_and_the_order_each_reader_uses() {
        let file = format!(
            r#"{{"auths": {{"r.io": {{"auth": "{}"}}, "https://index.docker.io/v1/": {{"auth": "{}"}}}},
                "credHelpers": {{"gcr.io": "gcloud"}}, "credsStore": "desktop"}}"#,
            basic("u", "p:q"),
            basic("hub", "h")
        );
        // docker: the store wins over the file's own entry
        assert_eq!(
            stored_login(&file, "r.io", Reader::DockerCli),
            StoredLogin::Helper("desktop".into())
        );
        let StoredLogin::Basic(c) = stored_login(&file, "r.io", Reader::ContainersImage) else {
            panic!()
        };
        assert_eq!((c.username.as_str(), c.password.as_str()), ("u", "p:q"));
        assert_eq!(
            stored_login(&file, "gcr.io", Reader::ContainersImage),
            StoredLogin::Helper("gcloud".into())
        );
        let StoredLogin::Basic(c) = stored_login(&file, "docker.io", Reader::ContainersImage)
        else {
            panic!()
        };
        assert_eq!(c.username, "hub");
        assert_eq!(
            stored_login(&file, "other.io", Reader::ContainersImage),
            StoredLogin::Missing
        );
        assert_eq!(
            stored_login("not json", "r.io", Reader::DockerCli),
            StoredLogin::Missing
        );
        assert_eq!(format!("{c:?}"), "Credentials(hub, password hidden)");
    }

    #[test]
    fn a_namespaced_podman_login_is_for_its_namespace_only() {
        let file = format!(
            r#"{{"auths": {{"ghcr.io/otherorg": {{"auth": "{}"}}, "ghcr.io/gilmanlab": {{"auth": "{}"}}}}}}"#,
            basic("other", "o"),
            basic("ours", "p")
        );
        let r = Reader::ContainersImage;
        let StoredLogin::Basic(c) = stored_login(&file, "ghcr.io/gilmanlab/headjack", r) else {
            panic!()
        };
        assert_eq!(c.username, "ours");
        assert_eq!(
            stored_login(&file, "ghcr.io/third/x", r),
            StoredLogin::Missing
        );
        let with_host = file.replacen(
            "{\"auths\": {",
            &format!(
                r#"{{"auths": {{"ghcr.io": {{"auth": "{}"}}, "#,
                basic("any", "a")
            ),
            1,
        );
        let StoredLogin::Basic(c) = stored_login(&with_host, "ghcr.io/third/x", r) else {
            panic!("{with_host}")
        };
        assert_eq!(c.username, "any");
    }

    #[test]
    fn helper_calls_and_replies() {
        let inv = helper_get("secretservice", "r.io").unwrap();
        assert_eq!(
            inv.to_string(),
            "docker-credential-secretservice get <stdin>"
        );
        assert_eq!(inv.stdin.as_deref(), Some(&b"r.io"[..]));
        assert!(inv.read_only);
        assert!(helper_get("../../bin/sh", "r.io").is_none());
        assert!(helper_get("", "r.io").is_none());
        let c = helper_reply(r#"{"ServerURL":"r.io","Username":"bot","Secret":"s"}"#).unwrap();
        assert_eq!((c.username.as_str(), c.password.as_str()), ("bot", "s"));
        assert!(helper_reply("credentials not found in native keychain").is_none());
        assert_eq!(
            Credentials::from_basic(&basic("a", "b")).unwrap().password,
            "b"
        );
        assert!(Credentials::from_pair("nocolon").is_none());
    }
}
