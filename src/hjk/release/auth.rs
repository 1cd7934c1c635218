//! Registry credentials for a release, in five modes (`--auth`, `HJK_AUTH`,
//! `images.auth.mode`):
//! - `docker-config` (default): whatever the engine is already logged in with; the registry
//!   reads use the same stored credentials (the engine's login files, with credential
//!   helpers);
//! - `ghcr`: `GITHUB_ACTOR` + `GITHUB_TOKEN`;
//! - `gcp`: `oauth2accesstoken` + `gcloud auth print-access-token`;
//! - `op`: `op read` of `images.auth.op.username_ref` and `password_ref`;
//! - `raw`: `user:password` from `HJK_REGISTRY_CREDS` or `--creds-stdin`.
//!
//! A secret is never an argument or a log line: it reaches the engine on the stdin of
//! `login --password-stdin`, which writes it into a temporary store (a 0700 directory, files
//! 0600) that [`LoginStore`] removes when it is dropped, on success, failure and interruption.
//! A run killed outright (SIGKILL, a crash) cannot remove it: each store holds a lock for as
//! long as its process lives, and every later release or merge removes the stores whose lock
//! nobody holds ([`sweep_stale`]).

pub(crate) use crate::backend::Credentials;
use crate::backend::Login;
use crate::engine::Engine;
use crate::error::UserError;
use crate::image_ref::ImageRef;
use crate::invocation::Invocation;
use anyhow::Result;
use camino::Utf8PathBuf;
use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

pub(crate) const ENV_AUTH: &str = "HJK_AUTH";
pub(crate) const ENV_CREDS: &str = "HJK_REGISTRY_CREDS";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMode {
    DockerConfig,
    Ghcr,
    Gcp,
    Op,
    Raw,
}

impl AuthMode {
    pub(crate) const NAMES: &'static str = "docker-config, ghcr, gcp, op, raw";

    pub(crate) fn name(self) -> &'static str {
        match self {
            AuthMode::DockerConfig => "docker-config",
            AuthMode::Ghcr => "ghcr",
            AuthMode::Gcp => "gcp",
            AuthMode::Op => "op",
            AuthMode::Raw => "raw",
        }
    }
}

impl FromStr for AuthMode {
    type Err = UserError;
    fn from_str(s: &str) -> Result<Self, UserError> {
        Ok(match s.trim() {
            "docker-config" => AuthMode::DockerConfig,
            "ghcr" => AuthMode::Ghcr,
            "gcp" => AuthMode::Gcp,
            "op" => AuthMode::Op,
            "raw" => AuthMode::Raw,
            _ => {
                return Err(UserError::setting(format!(
                    "unknown auth mode {s:?}; choose one of: {}",
                    AuthMode::NAMES
                )))
            }
        })
    }
}

impl fmt::Display for AuthMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The auth settings after flag > env > config > default.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AuthSettings {
    pub mode: AuthMode,
    /// `images.auth.op.username_ref` / `password_ref` (`op://vault/item/field`).
    pub op_refs: Option<(String, String)>,
    /// `--creds-stdin`: the raw mode's `user:password` is read from stdin.
    pub creds_stdin: bool,
}

/// `op://vault/item/field`, with nothing a shell or a flag parser could misread.
pub(crate) fn check_op_ref(key: &str, r: &str) -> Result<(), UserError> {
    let ok = r.starts_with("op://")
        && r.len() > 5
        && !r.chars().any(|c| c.is_whitespace() || c.is_control());
    if ok {
        Ok(())
    } else {
        Err(UserError::setting(format!(
            "{key} {r:?} must be a 1Password secret reference like op://vault/item/field"
        )))
    }
}

/// `user:password` (split at the first colon).
fn parse_raw(text: &str, from: &str) -> Result<Credentials, UserError> {
    let text = text.trim_end_matches(['\n', '\r']);
    Credentials::from_pair(text).ok_or_else(|| {
        UserError::credentials(format!(
            "--auth raw needs user:password in {from} (got {} characters without a user:password shape)",
            text.len()
        ))
    })
}

/// `--creds-stdin`: `user:password` from a pipe or a file. A terminal is refused (the secret
/// would echo, and a forgotten pipe would wait forever); the read runs on its own thread and
/// gives way to Ctrl-C/SIGTERM, which tokio's signal handlers would otherwise leave waiting
/// for an EOF that never comes.
async fn creds_from_stdin() -> Result<Credentials> {
    use std::io::IsTerminal;
    if std::io::stdin().is_terminal() {
        return Err(UserError::credentials(
            "--creds-stdin reads user:password from a pipe, not a terminal: e.g. `printf '%s:%s' \"$USER_NAME\" \"$TOKEN\" | hjk images release ... --creds-stdin`, or set HJK_REGISTRY_CREDS",
        )
        .into());
    }
    let (tx, rx) = tokio::sync::oneshot::channel();
    // a plain thread, not the runtime's blocking pool: an abandoned read must not hold up the
    // runtime's shutdown
    std::thread::spawn(move || {
        let _ = tx.send(crate::input_file::read_stream(
            std::io::stdin(),
            crate::input_file::CREDS,
        ));
    });
    let text = tokio::select! {
        got = rx => got.map_err(|_| anyhow::anyhow!("the stdin reader stopped"))??,
        why = crate::interrupt::wait() => return Err(why.into()),
    };
    Ok(parse_raw(&text, "stdin")?)
}

/// Resolves the credentials of `settings.mode` for `host`. `docker-config` returns the stored
/// ones if any (for the registry reads; the engine uses its own login); the others return what
/// the release logs in with.
pub(crate) async fn resolve(
    settings: &AuthSettings,
    vars: &BTreeMap<String, String>,
    engine: &Engine,
    repo: &ImageRef,
) -> Result<Option<Credentials>> {
    let need = |k: &str| -> Result<String, UserError> {
        vars.get(k)
            .filter(|v| !v.is_empty())
            .cloned()
            .ok_or_else(|| {
                UserError::credentials(format!(
                    "--auth {} needs {k} in the environment",
                    settings.mode
                ))
            })
    };
    Ok(Some(match settings.mode {
        AuthMode::DockerConfig => {
            let name = format!("{}/{}", repo.registry(), repo.repository());
            return engine.stored_credentials(vars, &name).await;
        }
        AuthMode::Ghcr => Credentials {
            username: need("GITHUB_ACTOR")?,
            password: need("GITHUB_TOKEN")?,
        },
        AuthMode::Raw if settings.creds_stdin => creds_from_stdin().await?,
        AuthMode::Raw => parse_raw(&need(ENV_CREDS)?, ENV_CREDS)?,
        AuthMode::Gcp => Credentials {
            username: "oauth2accesstoken".into(),
            password: secret_output(
                engine,
                vars,
                Invocation::new("gcloud").args(["auth", "print-access-token"]),
                "gcloud (Google Cloud SDK)",
            )
            .await?,
        },
        AuthMode::Op => {
            let (u, p) = settings.op_refs.clone().ok_or_else(|| {
                UserError::credentials(
                    "--auth op needs images.auth.op.username_ref and images.auth.op.password_ref in ~/.config/headjack/config.yaml",
                )
            })?;
            let read = |r: String| Invocation::new("op").args(["read".to_string(), r]);
            Credentials {
                username: secret_output(engine, vars, read(u), "the 1Password CLI (op)").await?,
                password: secret_output(engine, vars, read(p), "the 1Password CLI (op)").await?,
            }
        }
    }))
}

/// Runs a credential tool; its stdout is the secret. The tool must be on PATH (else exit 2
/// with an install hint); it runs in dry-run mode too (it changes nothing).
async fn secret_output(
    engine: &Engine,
    vars: &BTreeMap<String, String>,
    inv: Invocation,
    what: &str,
) -> Result<String> {
    let program = inv.program.clone();
    let path = vars.get("PATH").map(std::ffi::OsString::from);
    if crate::backend::detect::find_on_path(&program, path.as_ref()).is_none() {
        return Err(UserError::tool(format!(
            "`{program}` is not on PATH; install {what} or pick another --auth mode"
        ))
        .into());
    }
    let out = engine.tool(&inv.read_only()).await?;
    let s = out.stdout.trim().to_string();
    if s.is_empty() {
        return Err(UserError::credentials(format!("`{program}` printed no credential")).into());
    }
    Ok(s)
}

/// The name every private directory starts with, in the temporary directory.
const STORE_PREFIX: &str = "hjk-auth-";
/// In a private directory: the lock its process holds while it lives.
const STORE_LOCK: &str = ".lock";

/// A private temporary directory (0700) for files that hold a secret, removed when the
/// `TempDir` is dropped: on success, failure and interruption (which unwinds through the
/// workflow). It holds a lock until the process exits, however it exits, so a later run can
/// tell a directory whose run was killed from one in use ([`sweep_stale`]).
pub(crate) fn private_dir() -> Result<(tempfile::TempDir, Utf8PathBuf)> {
    let dir = tempfile::Builder::new().prefix(STORE_PREFIX).tempdir()?;
    let path = Utf8PathBuf::from_path_buf(dir.path().to_owned())
        .map_err(|p| anyhow::anyhow!("non-UTF-8 temp dir {}", p.display()))?;
    set_mode(&path, 0o700)?;
    hold_lock(&path)?;
    Ok((dir, path))
}

/// The locks of this process's private directories, held until it exits (the kernel drops them
/// on any exit, SIGKILL included); after a directory is removed its lock holds nothing.
fn held() -> &'static std::sync::Mutex<Vec<std::fs::File>> {
    static HELD: std::sync::OnceLock<std::sync::Mutex<Vec<std::fs::File>>> =
        std::sync::OnceLock::new();
    HELD.get_or_init(Default::default)
}

/// Takes `<dir>/.lock`: locked under another name first, then renamed into place, so a sweeper
/// never finds the lock file unlocked while its process lives.
fn hold_lock(dir: &camino::Utf8Path) -> Result<()> {
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::OpenOptionsExt;
    let new = dir.join(".lock.new");
    let f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&new)?;
    // SAFETY: flock on a file descriptor we own
    if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        return Err(anyhow::anyhow!(
            "cannot lock {new}: {}",
            std::io::Error::last_os_error()
        ));
    }
    std::fs::rename(&new, dir.join(STORE_LOCK))?;
    held().lock().unwrap_or_else(|p| p.into_inner()).push(f);
    Ok(())
}

/// Removes the private directories (they hold credentials) that runs killed outright left in
/// the temporary directory: ours (by owner), whose lock no process holds. One without a lock
/// file is left alone: an hjk from before the locks made it, and it may still be running.
/// Returns how many were removed. Every release and merge calls it first.
pub(crate) fn sweep_stale() -> usize {
    sweep_stale_in(&std::env::temp_dir())
}

fn sweep_stale_in(tmp: &std::path::Path) -> usize {
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::MetadataExt;
    let Ok(entries) = std::fs::read_dir(tmp) else {
        return 0;
    };
    // SAFETY: geteuid has no failure mode
    let me = unsafe { libc::geteuid() };
    let mut removed = 0;
    for e in entries.flatten() {
        let name = e.file_name();
        if !name.to_string_lossy().starts_with(STORE_PREFIX) {
            continue;
        }
        let dir = e.path();
        // never through a link: only a real directory of ours
        let Ok(meta) = std::fs::symlink_metadata(&dir) else {
            continue;
        };
        if !meta.is_dir() || meta.uid() != me {
            continue;
        }
        let stale = match std::fs::File::open(dir.join(STORE_LOCK)) {
            Ok(f) => {
                // SAFETY: flock on a file descriptor we own; released when `f` is dropped
                let got = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
                got == 0
            }
            // no lock: made by an hjk from before the locks, which may still be running
            Err(_) => false,
        };
        if stale && std::fs::remove_dir_all(&dir).is_ok() {
            removed += 1;
        }
    }
    removed
}

/// Writes a new file holding a secret, 0600 from the start.
pub(crate) fn write_private(path: &camino::Utf8Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?
        .write_all(bytes)?;
    Ok(())
}

/// The engine's temporary credential store for one release: a private directory that exists
/// from the login until this value is dropped (every exit path, including an interruption,
/// which unwinds through the workflow). Apple keeps logins in the keychain, so it is logged out
/// instead (see [`LoginStore::close`]).
pub(crate) struct LoginStore {
    dir: tempfile::TempDir,
    host: String,
}

impl LoginStore {
    /// Creates the store, carries over what the engine needs from the user's own config, logs
    /// in with the password on stdin, and points every later engine call at the store.
    pub(crate) async fn open(
        engine: &mut Engine,
        creds: &Credentials,
        host: &str,
        plain_http: bool,
        vars: &BTreeMap<String, String>,
    ) -> Result<LoginStore> {
        let (dir, path) = private_dir()?;
        let store = engine.auth_store(&path, vars, host);
        for f in &store.files {
            let mut out = f.content.as_object().cloned().unwrap_or_default();
            let user = f
                .copy_from
                .as_ref()
                .and_then(|from| crate::input_file::read(from, crate::input_file::CONFIG).ok())
                .flatten()
                .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok());
            for k in &f.copy_keys {
                if let Some(x) = user.as_ref().and_then(|v| v.get(*k)) {
                    out.insert(k.to_string(), x.clone());
                }
            }
            write_private(
                &path.join(&f.name),
                serde_json::Value::Object(out).to_string().as_bytes(),
            )?;
        }
        for (from, to) in &store.links {
            if from.exists() {
                std::os::unix::fs::symlink(from, path.join(to))?;
            }
        }
        let login = Login {
            host: host.to_string(),
            username: creds.username.clone(),
            password: creds.password.clone(),
            plain_http,
        };
        let me = LoginStore {
            dir,
            host: host.to_string(),
        };
        engine.login(&login, &path).await?;
        // whatever the engine wrote there holds the secret: owner-only
        for e in std::fs::read_dir(me.dir.path())?.flatten() {
            if e.file_type().is_ok_and(|t| t.is_file()) {
                if let Ok(p) = Utf8PathBuf::from_path_buf(e.path()) {
                    set_mode(&p, 0o600)?;
                }
            }
        }
        engine.set_env(store.env);
        Ok(me)
    }

    /// Logs out where a login outlives the store (Apple), then removes the store.
    pub(crate) async fn close(self, engine: &mut Engine) {
        engine.logout(&self.host).await;
        engine.set_env(Vec::new());
    }
}

fn set_mode(p: &camino::Utf8Path, mode: u32) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_and_raw_credentials() {
        assert_eq!("gcp".parse::<AuthMode>().unwrap(), AuthMode::Gcp);
        assert_eq!(
            "token".parse::<AuthMode>().unwrap_err().message(),
            "unknown auth mode \"token\"; choose one of: docker-config, ghcr, gcp, op, raw"
        );
        let c = parse_raw("bot:pa:ss\n", "stdin").unwrap();
        assert_eq!((c.username.as_str(), c.password.as_str()), ("bot", "pa:ss"));
        let err = parse_raw("s3cret", "stdin").unwrap_err();
        assert!(
            !err.message().contains("s3cret"),
            "the secret is never echoed: {err}"
        );
        assert!(!format!("{c:?}").contains("pa:ss"));
    }

    #[test]
    fn op_refs() {
        assert!(check_op_ref("k", "op://vault/item/password").is_ok());
        assert!(check_op_ref("k", "op://v/i f").is_err());
        assert!(check_op_ref("k", "--help").is_err());
    }

    /// Issue 18, item 11: a store whose run was killed holds no lock and is swept; one in use
    /// (its lock held) and one of someone else's name are left alone.
    #[test]
    fn stores_of_killed_runs_are_swept_and_live_ones_kept() {
        let tmp = tempfile::tempdir().unwrap();
        let killed = tmp.path().join("hjk-auth-killed");
        std::fs::create_dir(&killed).unwrap();
        std::fs::write(killed.join(".lock"), "").unwrap();
        std::fs::write(killed.join("auth.json"), "secret").unwrap();
        let live = tmp.path().join("hjk-auth-live");
        std::fs::create_dir(&live).unwrap();
        let lock = std::fs::File::create(live.join(".lock")).unwrap();
        use std::os::fd::AsRawFd;
        // SAFETY: flock on a file we own, as a live run holds it
        assert_eq!(unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX) }, 0);
        // no lock file: an older hjk's, maybe running
        let young = tmp.path().join("hjk-auth-young");
        std::fs::create_dir(&young).unwrap();
        let other = tmp.path().join("other-dir");
        std::fs::create_dir(&other).unwrap();
        assert_eq!(sweep_stale_in(tmp.path()), 1);
        assert!(!killed.exists());
        assert!(live.exists() && young.exists() && other.exists());
        // a store of this process holds its lock while the process lives
        let (dir, path) = private_dir().unwrap();
        let again = std::fs::File::open(path.join(".lock")).unwrap();
        // SAFETY: flock on a file we own
        let got = unsafe { libc::flock(again.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        assert_ne!(got, 0, "the lock is held");
        drop(dir);
    }
}
