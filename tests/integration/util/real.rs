//! Projects, image hierarchies and stores on the real engines.
//!
//! [`PodmanStore`]: podman on a store of the test's own (`CONTAINERS_STORAGE_CONF`, holding a
//! copy of local/busybox:amd64): a test that breaks it breaks nobody else's builds, and every
//! working container in it is the test's.

use super::{shared_cache, TestEnv};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// hjk builds of a one-variant busybox hierarchy, so real-engine fault tests stay fast.
pub fn busybox_images(env: &TestEnv, dockerfile: &str) -> String {
    let dir = env.root().join("images");
    std::fs::create_dir_all(dir.join("base")).unwrap();
    std::fs::write(
        dir.join("variants.yaml"),
        "variants:\n  - name: base\n    dir: base\n",
    )
    .unwrap();
    std::fs::write(dir.join("base/Dockerfile"), dockerfile).unwrap();
    dir.display().to_string()
}

/// A test env on the machine's engines that shares the opencode download cache
/// ([`shared_cache`]).
pub fn real_env() -> TestEnv {
    let mut env = TestEnv::new();
    env.with_system_path();
    env.set("XDG_CACHE_HOME", shared_cache().display().to_string());
    env
}

/// A uid-0 project on a real engine FROM local/debian:bookworm with the real opencode: the
/// cheapest real image to run things in.
pub fn real_project(engine: &str, project: &Path) -> TestEnv {
    let env = real_env();
    std::fs::create_dir_all(project).unwrap();
    std::fs::write(
        project.join("ocx.json"),
        format!(
            r#"{{"custom_base_image": "local/debian:bookworm", "opencode_version": "1.18.18", "opencode_source": "npm",
                "uid": 0, "gid": 0, "backend": "{engine}", "platforms": "linux/amd64"}}"#
        ),
    )
    .unwrap();
    env
}

/// A podman store of the test's own , removed when it drops.
pub struct PodmanStore {
    root: PathBuf,
    conf: PathBuf,
}

impl PodmanStore {
    /// A store under the test's directory, named in `env` for every podman hjk or ocx runs,
    /// holding `localhost/local/busybox:amd64` (saved from the machine's store, loaded here).
    pub fn new(env: &mut TestEnv) -> PodmanStore {
        let root = env.root().join("podman-store");
        std::fs::create_dir_all(&root).unwrap();
        let conf = root.join("storage.conf");
        std::fs::write(
            &conf,
            format!(
                "[storage]\ndriver = \"overlay\"\ngraphroot = \"{}\"\nrunroot = \"{}\"\n",
                root.join("graph").display(),
                root.join("run").display()
            ),
        )
        .unwrap();
        env.set("CONTAINERS_STORAGE_CONF", conf.display().to_string());
        let store = PodmanStore { root, conf };
        let tar = store.root.join("busybox.tar");
        let saved = Command::new("podman")
            .args(["save", "--quiet", "-o"])
            .arg(&tar)
            .arg("localhost/local/busybox:amd64")
            .output()
            .unwrap();
        assert!(saved.status.success(), "{saved:?}");
        let loaded = store.podman(&["load", "--quiet", "-i", tar.to_str().unwrap()]);
        assert!(loaded.status.success(), "{loaded:?}");
        std::fs::remove_file(&tar).unwrap();
        store
    }

    pub fn podman(&self, args: &[&str]) -> Output {
        Command::new("podman")
            .env("CONTAINERS_STORAGE_CONF", &self.conf)
            .args(args)
            .output()
            .unwrap()
    }

    /// `podman images`: `Err` with podman's words when it cannot list the store.
    pub fn listing(&self) -> Result<String, String> {
        let out = self.podman(&["images", "--all"]);
        match out.status.success() {
            true => Ok(String::from_utf8_lossy(&out.stdout).into_owned()),
            false => Err(String::from_utf8_lossy(&out.stderr).into_owned()),
        }
    }

    /// Every container in the store, buildah's working containers included (`--external`).
    pub fn containers(&self) -> Vec<String> {
        let out = self.podman(&[
            "ps",
            "--all",
            "--external",
            "--format",
            "{{.Names}} {{.Image}}",
        ]);
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(String::from)
            .collect()
    }
}

impl Drop for PodmanStore {
    fn drop(&mut self) {
        let ids = self.podman(&["ps", "--all", "--external", "--quiet"]);
        for id in String::from_utf8_lossy(&ids.stdout).split_whitespace() {
            self.podman(&["rm", "--force", id]);
        }
        self.podman(&["rmi", "--all", "--force"]);
        // what podman left mounted under the store, deepest first
        let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
        let mut under: Vec<&str> = mounts
            .lines()
            .filter_map(|l| l.split_whitespace().nth(1))
            .filter(|m| Path::new(m).starts_with(&self.root))
            .collect();
        under.sort_by_key(|m| std::cmp::Reverse(m.len()));
        for m in under {
            let _ = Command::new("umount").args(["-l", m]).status();
        }
        let _ = std::fs::remove_dir_all(&self.root);
    }
}
