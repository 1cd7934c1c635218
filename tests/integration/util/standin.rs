//! A stand-in for images/ that real engines can build here (no internet; Debian's mirror is
//! reachable): `base` is Debian with a `developer` user and a version manager (Debian's rbenv,
//! under /opt like images/base's managers), ending with images/base's own last lines; `systemd`
//! is images/systemd/Dockerfile as it is; `dind` is images/dind/Dockerfile with its one step
//! that fetches Docker CE from download.docker.com replaced by Debian's docker.io. Every
//! `io.headjack.*` label is read from images/'s Dockerfiles at test time, so a change there is
//! what the boot tests exercise. Two more variants for failure tests: `broken` (systemd with an
//! enabled unit that fails) and `flagged` (a flags label the engine does not know).
//!
//! The directory is content-addressed ([`StandIn::repo`]): hjk's own no-op check then builds
//! the hierarchy once per engine and reuses it on later runs.

use super::dockerfile::images_dir;
use super::sha256_hex;
use super::TestEnv;
use std::path::Path;

/// The marker line in images/base/Dockerfile from which its lines are copied as they are.
pub const BASE_TAIL_MARKER: &str = "# --- How derived images build";

pub struct StandIn {
    /// `hjk-standin/<12 hex of every file>`: the registry the tests build into.
    pub repo: String,
    /// Where it is written, as text for an argv.
    dir: String,
}

/// A test env with the machine's engines on its PATH and the stand-in written into it.
pub fn env_with_standin() -> (TestEnv, StandIn) {
    let mut env = TestEnv::new();
    env.with_system_path();
    let standin = StandIn::write(env.root());
    (env, standin)
}

/// The LABEL instructions of a Dockerfile, verbatim.
pub fn label_lines(text: &str) -> String {
    let mut out = String::new();
    let mut inside = false;
    for line in text.lines() {
        if line.starts_with("LABEL ") {
            inside = true;
        }
        if inside {
            out.push_str(line);
            out.push('\n');
            inside = line.trim_end().ends_with('\\');
        }
    }
    assert!(!out.is_empty(), "no LABEL lines");
    out
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(images_dir().join(rel)).unwrap()
}

/// images/base/Dockerfile from [`BASE_TAIL_MARKER`] on.
pub fn base_tail() -> String {
    let text = read("base/Dockerfile");
    let at = text
        .find(BASE_TAIL_MARKER)
        .expect("images/base/Dockerfile has the marker of its last lines");
    text[at..].to_string()
}

/// The stand-in base: Debian, developer (uid 1000), rbenv in /opt/rbenv owned by developer,
/// installed as developer like images/base's managers, then images/base's last lines.
fn base_dockerfile() -> String {
    format!(
        "ARG BASE_IMAGE=local/debian:bookworm\nFROM ${{BASE_IMAGE}}\nARG VERSION=dev\n{labels}\
RUN apt-get update -qq \\\n && apt-get install -y -qq --no-install-recommends rbenv ruby-build >/dev/null \\\n && rm -rf /var/lib/apt/lists/* \\\n && useradd --create-home --uid 1000 --shell /bin/bash developer \\\n && install -d -o developer -g developer /opt/rbenv /opt/rbenv/bin\n\
ENV RBENV_ROOT=/opt/rbenv\nENV PATH=/opt/rbenv/shims:/opt/rbenv/bin:${{PATH}}\n\
USER 1000:1000\nWORKDIR /home/developer\n\
RUN ln -s /usr/lib/rbenv/libexec/rbenv /opt/rbenv/bin/rbenv && rbenv --version\n\n{tail}",
        labels = label_lines(&read("base/Dockerfile")),
        tail = base_tail()
    )
}

/// images/dind/Dockerfile with the instruction that fetches Docker CE replaced by Debian's
/// docker.io (and the iptables and kmod it installs beside it).
fn dind_dockerfile() -> String {
    let text = read("dind/Dockerfile");
    let mut out = String::new();
    let mut block: Vec<&str> = Vec::new();
    let mut replaced = false;
    for line in text.lines() {
        if block.is_empty() && !line.starts_with("RUN ") {
            out.push_str(line);
            out.push('\n');
            continue;
        }
        block.push(line);
        if line.trim_end().ends_with('\\') {
            continue;
        }
        let run = block.join("\n");
        if run.contains("download.docker.com") {
            out.push_str("RUN apt-get update -qq \\\n && apt-get install -y -qq --no-install-recommends docker.io iptables kmod >/dev/null \\\n && rm -rf /var/lib/apt/lists/* \\\n && docker --version\n");
            replaced = true;
        } else {
            out.push_str(&run);
            out.push('\n');
        }
        block.clear();
    }
    assert!(
        replaced,
        "images/dind/Dockerfile no longer fetches Docker CE in one RUN"
    );
    out
}

/// systemd plus a unit that is enabled and fails at every boot.
const BROKEN: &str = "ARG BASE_IMAGE=x\nFROM ${BASE_IMAGE}\n\
RUN printf '[Unit]\\nDescription=fails on purpose\\n[Service]\\nType=oneshot\\nExecStart=/bin/false\\n[Install]\\nWantedBy=multi-user.target\\n' > /etc/systemd/system/hjk-fails.service \\\n && systemctl enable hjk-fails.service\n";

/// base plus a podman and docker flags label with a flag neither engine has.
const FLAGGED: &str = "ARG BASE_IMAGE=x\nFROM ${BASE_IMAGE}\n\
LABEL io.headjack.init=\"sleep infinity\" io.headjack.podman.flags=\"bogus-flag=1\" io.headjack.docker.flags=\"bogus-flag=1\"\n";

const VARIANTS: &str = "variants:\n  - name: base\n    dir: base\n  - name: systemd\n    parent: base\n    dir: systemd\n  - name: dind\n    parent: systemd\n    dir: dind\n  - name: broken\n    parent: systemd\n    dir: broken\n  - name: flagged\n    parent: base\n    dir: flagged\n";

impl StandIn {
    /// Writes the stand-in under `root` (a directory of the test's own).
    pub fn write(root: &Path) -> StandIn {
        let dir = root.join("standin");
        let files: Vec<(&str, String)> = vec![
            ("variants.yaml", VARIANTS.to_string()),
            ("base/Dockerfile", base_dockerfile()),
            ("base/headjack-as-owner", read("base/headjack-as-owner")),
            ("systemd/Dockerfile", read("systemd/Dockerfile")),
            ("dind/Dockerfile", dind_dockerfile()),
            (
                "dind/headjack-iptables-backend",
                read("dind/headjack-iptables-backend"),
            ),
            (
                "dind/10-headjack-iptables.conf",
                read("dind/10-headjack-iptables.conf"),
            ),
            ("broken/Dockerfile", BROKEN.to_string()),
            ("flagged/Dockerfile", FLAGGED.to_string()),
        ];
        let mut all = String::new();
        for (rel, content) in &files {
            let p = dir.join(rel);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(&p, content).unwrap();
            if !rel.ends_with("Dockerfile") && !rel.ends_with(".yaml") && !rel.ends_with(".conf") {
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
            }
            all.push_str(rel);
            all.push('\0');
            all.push_str(content);
            all.push('\0');
        }
        let repo = format!("hjk-standin/{}", &sha256_hex(all.as_bytes())[..12]);
        StandIn {
            repo,
            dir: dir.display().to_string(),
        }
    }

    /// `images <command...> --images-dir <the stand-in> --registry <registry> --backend
    /// <engine>`: how the tests build, boot and release the stand-in; they add the rest.
    pub fn argv<'a>(
        &'a self,
        command: &[&'a str],
        registry: &'a str,
        engine: &'a str,
    ) -> Vec<&'a str> {
        let mut all = vec!["images"];
        all.extend_from_slice(command);
        all.extend([
            "--images-dir",
            &self.dir,
            "--registry",
            registry,
            "--backend",
            engine,
        ]);
        all
    }
}
