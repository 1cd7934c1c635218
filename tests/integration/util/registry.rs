//! The password registry on 127.0.0.1:5001 that scripts/test-engines.sh starts (bcrypt
//! htpasswd, access log), the release fixture (tests/fixtures/release) and what a release test
//! reads back: every registry read goes through skopeo with an auth file, so no password is
//! ever an argument, ours or the test's.

use super::{fixtures, sha256_hex, TestEnv};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

pub const REGISTRY: &str = "127.0.0.1:5001";
pub const USER: &str = "hjk-release";

fn state_dir() -> PathBuf {
    PathBuf::from(
        std::env::var("AGENT_IMAGES_ENGINE_STATE")
            .unwrap_or_else(|_| "/var/tmp/agent-images-engines".into()),
    )
}

/// Where scripts/test-engines.sh keeps the password registry's password.
pub fn password_file() -> PathBuf {
    state_dir().join("auth-registry/password")
}

/// The password registry's password (a test calls `need(&[Need::Registry])` first).
pub fn password() -> String {
    std::fs::read_to_string(password_file())
        .unwrap_or_else(|e| panic!("{}: {e}", password_file().display()))
        .trim()
        .to_string()
}

/// A repository no other test or run uses. Its local images (the staged builds and what
/// merge or verify pulled) are removed from podman and docker when it drops, so `make test`
/// does not grow the engines' storage by a few hundred MB per run.
pub fn fresh_repo(name: &str) -> Repo {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    Repo(format!(
        "{REGISTRY}/hjk-test/{name}-{}-{nanos}",
        std::process::id()
    ))
}

pub struct Repo(String);

impl std::ops::Deref for Repo {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for Repo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl Drop for Repo {
    fn drop(&mut self) {
        for engine in ["podman", "docker"] {
            // the tags first (an image another repository also names only loses ours), then
            // what is left under this name with digests only (a pull by digest), one by one:
            // podman gives up on a whole list at the first image it may not remove
            for by_id in [false, true] {
                let Ok(out) = Command::new(engine)
                    .args(["images", "--format", "{{.ID}} {{.Repository}} {{.Tag}}"])
                    .output()
                else {
                    break;
                };
                let names: std::collections::BTreeSet<String> =
                    String::from_utf8_lossy(&out.stdout)
                        .lines()
                        .filter_map(|l| {
                            let mut w = l.split(' ');
                            Some((w.next()?, w.next()?, w.next()?))
                        })
                        .filter(|(_, r, t)| *r == self.0 && by_id == (*t == "<none>"))
                        .map(|(id, r, t)| if by_id { id.into() } else { format!("{r}:{t}") })
                        .collect();
                let batches: Vec<Vec<String>> = if by_id {
                    names.into_iter().map(|n| vec![n]).collect()
                } else {
                    vec![names.into_iter().collect()]
                };
                for b in batches.into_iter().filter(|b| !b.is_empty()) {
                    let _ = Command::new(engine)
                        .arg("rmi")
                        .args(&b)
                        .stdout(Stdio::null())
                        .stderr(Stdio::null())
                        .status();
                }
            }
        }
    }
}

/// The release fixture (tests/fixtures/release), copied into the test's directory.
pub fn copy_fixture(env: &TestEnv) -> String {
    super::copy_fixture_dir(env, "release", "images")
}

/// A skopeo auth file (0600) in the test's own directory.
pub fn authfile(env: &TestEnv, pw: &str) -> PathBuf {
    use base64::Engine as _;
    let p = env.root().join("skopeo-auth.json");
    let token = base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{pw}"));
    std::fs::write(
        &p,
        format!(r#"{{"auths":{{"{REGISTRY}":{{"auth":"{token}"}}}}}}"#),
    )
    .unwrap();
    p
}

/// `skopeo inspect --raw [--config]`: the registry's own bytes.
pub fn raw(auth: &Path, reference: &str, config: bool) -> Option<Vec<u8>> {
    let mut c = Command::new("skopeo");
    c.args(["inspect", "--raw", "--tls-verify=false", "--authfile"])
        .arg(auth);
    if config {
        c.arg("--config");
    }
    let out = c.arg(format!("docker://{reference}")).output().unwrap();
    out.status.success().then_some(out.stdout)
}

pub fn json(bytes: &[u8]) -> serde_json::Value {
    serde_json::from_slice(bytes).unwrap()
}

pub fn read_meta(path: &Path) -> serde_json::Value {
    json(&std::fs::read(path).unwrap())
}

/// Everything a release promises, read back independently with skopeo: each tag is the
/// index, whose digest is the sha256 of the registry's bytes; the index lists exactly
/// `arches`; each platform's digest is the sha256 of its raw manifest; base labels name the
/// parent's digest for that platform; the layers chain.
pub fn assert_published(
    auth: &Path,
    repo: &str,
    meta: &serde_json::Value,
    version: &str,
    arches: &[&str],
) {
    let mut diff_ids: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
    let mut digests: BTreeMap<(String, String), String> = BTreeMap::new();
    for v in meta["variants"].as_array().unwrap() {
        let name = v["name"].as_str().unwrap();
        let index_digest = v["index_digest"].as_str().unwrap();
        for tag in [name.to_string(), format!("{name}-{version}")] {
            let bytes = raw(auth, &format!("{repo}:{tag}"), false).expect(&tag);
            assert_eq!(
                format!("sha256:{}", sha256_hex(&bytes)),
                index_digest,
                "{tag}"
            );
            let index = json(&bytes);
            // images; an attestation (BuildKit's provenance) is listed as `unknown/unknown`
            let mut listed: Vec<&str> = index["manifests"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|m| m["platform"]["os"] == "linux")
                .map(|m| m["platform"]["architecture"].as_str().unwrap())
                .collect();
            listed.sort();
            assert_eq!(listed, arches, "{tag}");
            for m in index["manifests"].as_array().unwrap() {
                if m["platform"]["os"] != "linux" {
                    assert_eq!(m["platform"]["architecture"], "unknown", "{tag}: {m}");
                    assert_eq!(
                        m["annotations"]["vnd.docker.reference.type"], "attestation-manifest",
                        "{tag}: {m}"
                    );
                }
            }
        }
        for (platform, rec) in v["platforms"].as_object().unwrap() {
            let arch = platform.split('/').nth(1).unwrap().to_string();
            let digest = rec["digest"].as_str().unwrap();
            let bytes = raw(auth, &format!("{repo}@{digest}"), false).unwrap();
            assert_eq!(format!("sha256:{}", sha256_hex(&bytes)), digest);
            let cfg = json(&raw(auth, &format!("{repo}@{digest}"), true).unwrap());
            assert_eq!(cfg["architecture"], arch.as_str(), "{name} {platform}");
            let ids: Vec<String> = cfg["rootfs"]["diff_ids"]
                .as_array()
                .unwrap()
                .iter()
                .map(|d| d.as_str().unwrap().to_string())
                .collect();
            if let Some(parent) = v["parent"].as_str() {
                let pd = &digests[&(parent.to_string(), arch.clone())];
                let labels = &cfg["config"]["Labels"];
                assert_eq!(labels["org.opencontainers.image.base.digest"], pd.as_str());
                assert_eq!(
                    labels["org.opencontainers.image.base.name"],
                    format!("{repo}@{pd}").as_str()
                );
                let pl = &diff_ids[&(parent.to_string(), arch.clone())];
                assert!(
                    ids.starts_with(pl),
                    "{name} {platform} does not build on {parent}"
                );
            }
            diff_ids.insert((name.to_string(), arch.clone()), ids);
            digests.insert((name.to_string(), arch), digest.to_string());
        }
    }
}

/// Lines of the password registry's access log naming `repo` that upload something.
pub fn uploads(repo: &str) -> usize {
    let path = repo.split_once('/').unwrap().1;
    std::fs::read_to_string(state_dir().join("auth-registry.log"))
        .unwrap_or_default()
        .lines()
        .filter(|l| {
            l.contains(path)
                && (l.contains("\"PUT ") || l.contains("\"POST ") || l.contains("\"PATCH "))
        })
        .count()
}

/// What every registry test starts from: the password, a hermetic env with the machine's PATH
/// and the credentials in `HJK_REGISTRY_CREDS`, the fixture, a skopeo auth file and a fresh
/// repository (a test calls `need` for the registry and its engine first).
pub struct Setup {
    pub pw: String,
    pub env: TestEnv,
    pub images: String,
    pub auth: PathBuf,
    pub repo: Repo,
}

pub fn setup(name: &str) -> Setup {
    let pw = password();
    let mut env = TestEnv::new();
    env.with_system_path();
    env.set("HJK_REGISTRY_CREDS", format!("{USER}:{pw}"));
    let images = copy_fixture(&env);
    let auth = authfile(&env, &pw);
    Setup {
        pw,
        env,
        images,
        auth,
        repo: fresh_repo(name),
    }
}

pub fn release_args<'a>(
    images: &'a str,
    repo: &'a str,
    platform: &'a str,
    meta: &'a str,
) -> Vec<&'a str> {
    vec![
        "images",
        "release",
        "--all",
        "--images-dir",
        images,
        "--registry",
        repo,
        "--platform",
        platform,
        "--version",
        "v0.1.0",
        "--metadata-file",
        meta,
        "--progress",
        "plain",
    ]
}

/// `make TARGET` in this checkout with the test's env, hjk and registry (`AUTH=raw`,
/// `BACKEND=podman`, `VERSION=v0.1.0`, then `extra`); fails the test unless it succeeds.
pub fn run_make(
    env: &TestEnv,
    images: &str,
    repo: &str,
    target: &str,
    extra: &[String],
) -> (String, String) {
    let hjk = assert_cmd::cargo::cargo_bin("hjk").display().to_string();
    let out = Command::new("make")
        .env_clear()
        .envs(&env.vars)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["-s", target])
        .arg(format!("HJK={hjk}"))
        .arg(format!("IMAGES_DIR={images}"))
        .arg(format!("REGISTRY={repo}"))
        .args(["AUTH=raw", "BACKEND=podman", "VERSION=v0.1.0"])
        .args(extra)
        .output()
        .unwrap();
    let text = (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    assert!(
        out.status.success(),
        "make {target}: {}\n{}",
        text.0,
        text.1
    );
    text
}

/// Fake cosign, syft and trivy (tests/fixtures/fake-bin/fake-supply-chain) in the test's bin dir.
pub fn fake_gate_tools(env: &TestEnv) {
    for tool in ["cosign", "syft", "trivy"] {
        std::os::unix::fs::symlink(
            fixtures().join("fake-bin/fake-supply-chain"),
            env.bin().join(tool),
        )
        .unwrap();
    }
}

/// The password of the test signing keys (not a secret: it opens test keys only).
pub const KEY_PASSWORD: &str = "hjk-test-signing-key";

/// `cosign generate-key-pair` in `<root>/<name>`: (private key, public key).
pub fn keypair(env: &TestEnv, name: &str) -> (PathBuf, PathBuf) {
    let dir = env.root().join(name);
    std::fs::create_dir_all(&dir).unwrap();
    super::succeeds(
        Command::new("cosign")
            .arg("generate-key-pair")
            .current_dir(&dir)
            .env("COSIGN_PASSWORD", KEY_PASSWORD),
    );
    (dir.join("cosign.key"), dir.join("cosign.pub"))
}

/// Signing with `key` from the environment, as a release does (`COSIGN_KEY`, `COSIGN_PASSWORD`).
pub fn sign_with(env: &mut TestEnv, key: &Path) {
    env.set("COSIGN_KEY", std::fs::read_to_string(key).unwrap());
    env.set("COSIGN_PASSWORD", KEY_PASSWORD);
}

/// The `hjk-auth-*` directories (hjk's temporary login stores) under `tmp`.
pub fn auth_dirs(tmp: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(tmp)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("hjk-auth-")
        })
        .collect()
}
