//! What a base image holds that the generated image depends on: its users and groups, its
//! `/etc/sudoers.d` entries, a few tools, and whether it has a musl loader. One short container
//! run (`--entrypoint /bin/sh --user 0:0`) prints them; the answer is cached by image ID under
//! `~/.cache/ocx/bases/`, so a base is probed once, and a no-op build reads a file instead.
//!
//! A base without `/bin/sh` (distroless, scratch) cannot be probed; it is recorded as shell-less,
//! and the user is then mapped without editing `/etc/passwd` (see `super::user`).

use camino::{Utf8Path, Utf8PathBuf};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

/// Bump when the script or [`BaseFacts`] change, so old cache entries are not read.
const FORMAT: &str = "ocx-probe 3";

/// The tools whose presence the user setup may depend on.
const TOOLS: &[&str] = &["awk", "chown", "mkdir", "cp", "mv", "bash", "sudo"];

/// Run with `/bin/sh -c`; prints one section per fact. Nothing here depends on a value from
/// the user's config.
pub(crate) fn script() -> String {
    format!(
        "echo '{FORMAT}'; \
         echo '[passwd]'; cat /etc/passwd 2>/dev/null; \
         echo '[group]'; cat /etc/group 2>/dev/null; \
         echo '[sudoers.d]'; ls -1 /etc/sudoers.d 2>/dev/null; \
         echo '[tools]'; for t in {}; do command -v \"$t\" >/dev/null 2>&1 && echo \"$t\"; done; \
         echo '[musl]'; ls -1 /lib/ld-musl-* 2>/dev/null; \
         echo '[glibc]'; ls -1 /lib*/ld-linux-* /lib/*/ld-linux-* 2>/dev/null; \
         echo '[libc]'; for f in {}; do [ -e \"$f\" ] && {{ cksum \"$f\" 2>/dev/null || echo \"? $f\"; }}; done; \
         echo '[end]'",
        TOOLS.join(" "),
        LIBC_FILES.join(" ")
    )
}

/// What opencode's build-time `--version` proof depends on in a base: the dynamic loaders, the
/// C library and the C++ runtime the binary links (every opencode build needs `libstdc++` and
/// `libgcc_s`; on musl they are separate packages), checksummed so an edit of any of them is
/// seen. Paths are globs for the usual multiarch layouts.
const LIBC_FILES: &[&str] = &[
    "/lib/ld-musl-*",
    "/lib*/ld-linux-*",
    "/lib/*/ld-linux-*",
    "/lib*/libc.so.6",
    "/lib/*/libc.so.6",
    "/usr/lib*/libc.so.6",
    "/usr/lib/*/libc.so.6",
    "/lib*/libstdc++.so.6",
    "/usr/lib*/libstdc++.so.6",
    "/usr/lib/*/libstdc++.so.6",
    "/lib*/libgcc_s.so.1",
    "/lib/*/libgcc_s.so.1",
    "/usr/lib*/libgcc_s.so.1",
    "/usr/lib/*/libgcc_s.so.1",
];

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct PasswdEntry {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    pub home: String,
    pub shell: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct GroupEntry {
    pub name: String,
    pub gid: u32,
    pub members: Vec<String>,
}

/// What the probe found in a base image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub(crate) struct BaseFacts {
    /// `/bin/sh` exists: the user setup can run, and the rest of these facts are known.
    pub shell: bool,
    pub passwd: Vec<PasswdEntry>,
    pub groups: Vec<GroupEntry>,
    /// File names in `/etc/sudoers.d`.
    pub sudoers: Vec<String>,
    pub tools: BTreeSet<String>,
    /// Paths of musl dynamic loaders (`/lib/ld-musl-x86_64.so.1`).
    pub musl: Vec<String>,
    /// Paths of glibc dynamic loaders (`/lib64/ld-linux-x86-64.so.2`). With neither kind the
    /// base has no C library at all (a static busybox), and no opencode build runs on it.
    #[serde(default)]
    pub glibc: Vec<String>,
    /// `cksum` lines of `LIBC_FILES` (a line starting with `?` when a file could not be
    /// checksummed): what a proven opencode binary needs from the base.
    #[serde(default)]
    pub libc: Vec<String>,
}

impl BaseFacts {
    /// A base with no `/bin/sh`: nothing else could be learned.
    pub(crate) fn shell_less() -> Self {
        BaseFacts::default()
    }

    /// What a plan assumes about a base that does not exist yet (`--dry-run` before the base
    /// is built): a glibc base with a shell and only root.
    pub(crate) fn assumed() -> Self {
        BaseFacts {
            shell: true,
            passwd: vec![PasswdEntry {
                name: "root".into(),
                uid: 0,
                gid: 0,
                home: "/root".into(),
                shell: "/bin/sh".into(),
            }],
            groups: vec![GroupEntry {
                name: "root".into(),
                gid: 0,
                members: vec![],
            }],
            tools: TOOLS.iter().map(|t| t.to_string()).collect(),
            glibc: vec!["/lib64/ld-linux-x86-64.so.2".into()],
            ..Default::default()
        }
    }

    /// The probe ran and found no dynamic loader of either libc: nothing but static binaries
    /// run on this base.
    pub(crate) fn no_libc(&self) -> bool {
        self.shell && self.musl.is_empty() && self.glibc.is_empty()
    }

    /// A digest of the base's C library and C++ runtime, the part of a base an opencode binary
    /// depends on: two bases with the same signature run the same binary alike. `None` when it
    /// is not fully known (no shell, no loader, a file `cksum` could not read).
    pub(crate) fn libc_signature(&self) -> Option<String> {
        if !self.shell
            || self.no_libc()
            || self.libc.is_empty()
            || self.libc.iter().any(|l| l.starts_with('?'))
        {
            return None;
        }
        let mut f = crate::fingerprint::Fingerprint::new();
        for (i, line) in self.libc.iter().enumerate() {
            f = f.add(&i.to_string(), line);
        }
        Some(f.finish())
    }

    pub(crate) fn has(&self, tool: &str) -> bool {
        self.tools.contains(tool)
    }

    pub(crate) fn user_by_uid(&self, uid: u32) -> Option<&PasswdEntry> {
        self.passwd.iter().find(|p| p.uid == uid)
    }

    pub(crate) fn user_by_name(&self, name: &str) -> Option<&PasswdEntry> {
        self.passwd.iter().find(|p| p.name == name)
    }

    pub(crate) fn group_by_gid(&self, gid: u32) -> Option<&GroupEntry> {
        self.groups.iter().find(|g| g.gid == gid)
    }

    pub(crate) fn group_by_name(&self, name: &str) -> Option<&GroupEntry> {
        self.groups.iter().find(|g| g.name == name)
    }
}

/// Parses the script's output. Malformed passwd/group lines are skipped, as libc does.
/// Output that is not the script's is the engine's or the image's fault, not the user's.
pub(crate) fn parse(out: &str) -> anyhow::Result<BaseFacts> {
    let mut lines = out.lines();
    if lines.next().map(str::trim) != Some(FORMAT) || !out.contains("\n[end]") {
        anyhow::bail!(
            "the probe printed something unexpected: {:?}",
            out.chars().take(200).collect::<String>()
        );
    }
    let mut facts = BaseFacts {
        shell: true,
        ..Default::default()
    };
    let mut section = "";
    for line in lines {
        let line = line.trim_end_matches('\r');
        if line.starts_with('[') && line.ends_with(']') {
            section = match line {
                "[passwd]" => "passwd",
                "[group]" => "group",
                "[sudoers.d]" => "sudoers",
                "[tools]" => "tools",
                "[musl]" => "musl",
                "[glibc]" => "glibc",
                "[libc]" => "libc",
                "[end]" => break,
                _ => "",
            };
            continue;
        }
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let f: Vec<&str> = line.split(':').collect();
        match section {
            "passwd" if f.len() >= 7 => {
                if let (Ok(uid), Ok(gid)) = (f[2].parse(), f[3].parse()) {
                    facts.passwd.push(PasswdEntry {
                        name: f[0].into(),
                        uid,
                        gid,
                        home: f[5].into(),
                        shell: f[6].into(),
                    });
                }
            }
            "group" if f.len() >= 3 => {
                if let Ok(gid) = f[2].parse() {
                    facts.groups.push(GroupEntry {
                        name: f[0].into(),
                        gid,
                        members: f
                            .get(3)
                            .map(|m| {
                                m.split(',')
                                    .filter(|x| !x.is_empty())
                                    .map(String::from)
                                    .collect()
                            })
                            .unwrap_or_default(),
                    });
                }
            }
            "sudoers" => facts.sudoers.push(line.to_string()),
            "tools" => {
                facts.tools.insert(line.to_string());
            }
            "musl" => facts.musl.push(line.to_string()),
            "glibc" => facts.glibc.push(line.to_string()),
            "libc" => facts.libc.push(line.to_string()),
            _ => {}
        }
    }
    Ok(facts)
}

/// Where the facts of the image with `id` are cached; `None` for an ID that is not plain hex
/// (it becomes a file name).
pub(crate) fn cache_file(dir: &Utf8Path, id: &str) -> Option<Utf8PathBuf> {
    let hex = id.strip_prefix("sha256:").unwrap_or(id);
    (hex.len() >= 12 && hex.len() <= 128 && hex.chars().all(|c| c.is_ascii_hexdigit()))
        .then(|| dir.join(format!("{hex}.json")))
}

/// The cached facts, if a readable entry of this format is there.
pub(crate) fn load(file: &Utf8Path) -> Option<BaseFacts> {
    let text = std::fs::read_to_string(file).ok()?;
    let v: serde_json::Value = serde_json::from_str(&text).ok()?;
    if v.get("format")?.as_str()? != FORMAT {
        return None;
    }
    serde_json::from_value(v.get("facts")?.clone()).ok()
}

/// Stores the facts (written aside and renamed, so a reader never sees half a file). A cache
/// that cannot be written costs one more probe next time, nothing else.
pub(crate) fn store(file: &Utf8Path, facts: &BaseFacts) {
    let Some(dir) = file.parent() else { return };
    let _ = std::fs::create_dir_all(dir);
    let body = serde_json::json!({"format": FORMAT, "facts": facts});
    if let Ok(tmp) = tempfile::NamedTempFile::new_in(dir) {
        if std::fs::write(tmp.path(), body.to_string()).is_ok() {
            let _ = tmp.persist(file);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) const DEBIAN_NODE: &str = "ocx-probe 3\n[passwd]\nroot:x:0:0:root:/root:/bin/bash\nnode:x:1000:1000::/home/node:/bin/bash\n[group]\nroot:x:0:\nsudo:x:27:node\nnode:x:1000:\n[sudoers.d]\nREADME\nnode\n[tools]\nawk\nbash\n[musl]\n[glibc]\n/lib64/ld-linux-x86-64.so.2\n[libc]\n2871232 210968 /lib64/ld-linux-x86-64.so.2\n[end]\n";

    #[test]
    fn parses_every_section() {
        let f = parse(DEBIAN_NODE).unwrap();
        assert!(f.shell);
        assert_eq!(f.user_by_uid(1000).unwrap().home, "/home/node");
        assert_eq!(f.group_by_name("sudo").unwrap().members, ["node"]);
        assert_eq!(f.sudoers, ["README", "node"]);
        assert!(f.has("bash") && !f.has("sudo"));
        assert!(f.musl.is_empty());
        assert_eq!(f.glibc, ["/lib64/ld-linux-x86-64.so.2"]);
        assert_eq!(f.libc, ["2871232 210968 /lib64/ld-linux-x86-64.so.2"]);
        let sig = f.libc_signature().unwrap();
        let mut edited = f.clone();
        edited.libc[0] = "1 210968 /lib64/ld-linux-x86-64.so.2".into();
        assert_ne!(
            edited.libc_signature().unwrap(),
            sig,
            "an edited loader is another libc"
        );
        edited
            .libc
            .push("? /usr/lib/x86_64-linux-gnu/libstdc++.so.6".into());
        assert_eq!(edited.libc_signature(), None, "unreadable: not known");
        assert_eq!(BaseFacts::shell_less().libc_signature(), None);
        // a cache entry from before the glibc section reads as "no glibc loader seen"
        let old: BaseFacts = serde_json::from_str(
            r#"{"shell":true,"passwd":[],"groups":[],"sudoers":[],"tools":[],"musl":[]}"#,
        )
        .unwrap();
        assert!(old.glibc.is_empty());
    }

    #[test]
    fn rejects_output_that_is_not_ours() {
        assert!(parse("fake run\n").is_err());
        assert!(parse("ocx-probe 3\n[passwd]\n").is_err(), "cut short");
    }

    #[test]
    fn caches_by_hex_id_only() {
        let d = tempfile::tempdir().unwrap();
        let dir = Utf8Path::from_path(d.path()).unwrap();
        assert!(cache_file(dir, "sha256:../../etc").is_none());
        let file = cache_file(dir, &format!("sha256:{}", "ab".repeat(32))).unwrap();
        let facts = parse(DEBIAN_NODE).unwrap();
        store(&file, &facts);
        assert_eq!(load(&file), Some(facts));
    }
}
