//! What the images do at run time, on real parts where a full image build is out of reach (the
//! real base image downloads gigabytes): dind's iptables backend choice runs in a Debian
//! container that has both iptables backends, exactly as the image runs it before dockerd; and
//! base's sudo `secure_path` line runs with sudo there too.

use crate::util::dockerfile::{images_dir, parse_dockerfile};
use crate::util::{engine_stdout, need, Need};
use std::process::Command;

/// Debian with iptables (both backends, nf_tables the default alternative, as on Ubuntu) and
/// sudo, built once from the shared local Debian image and kept for later runs.
const IMAGE: &str = "localhost/supply-iptables-test:1";

fn test_image() {
    let exists = Command::new("podman")
        .args(["image", "exists", IMAGE])
        .status()
        .unwrap()
        .success();
    if exists {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("Dockerfile"),
        "FROM localhost/local/debian:bookworm\n\
         RUN apt-get update -qq && apt-get install -y -qq --no-install-recommends iptables sudo kmod >/dev/null \
         && rm -rf /var/lib/apt/lists/*\n",
    )
    .unwrap();
    engine_stdout(
        "podman",
        &["build", "-q", "-t", IMAGE, dir.path().to_str().unwrap()],
    );
}

/// Runs `script` with sh in a fresh container of the test image; returns stdout+stderr.
fn run(podman_args: &[&str], script: &str) -> String {
    let backend = images_dir().join("dind/headjack-iptables-backend");
    let mount = format!(
        "{}:/usr/local/sbin/headjack-iptables-backend:ro",
        backend.display()
    );
    let mut args = vec!["run", "--rm", "-v", &mount];
    args.extend_from_slice(podman_args);
    args.extend([IMAGE, "sh", "-c", script]);
    let out = Command::new("podman").args(&args).output().unwrap();
    let text = script_output(&out);
    assert!(out.status.success(), "podman {args:?}:\n{text}");
    text
}

/// What the script printed (stdout, then stderr), without podman's own log lines: on a
/// cgroup v1 host where a container made a controller hierarchy that is not mounted on the
/// host (systemd with `--cgroupns=host` does), podman warns on every run that it could not
/// place conmon in it.
fn script_output(out: &std::process::Output) -> String {
    let stderr: String = String::from_utf8_lossy(&out.stderr)
        .lines()
        .filter(|l| !(l.starts_with("time=\"") && l.contains(" level=warning ")))
        .map(|l| format!("{l}\n"))
        .collect();
    format!("{}{stderr}", String::from_utf8_lossy(&out.stdout))
}

/// The line the script prints for one case, after `== <case>`, with iptables' version as `vX`.
fn case(out: &str, name: &str) -> String {
    let marker = format!("== {name}\n");
    let start = out
        .find(&marker)
        .unwrap_or_else(|| panic!("no case {name}:\n{out}"))
        + marker.len();
    let line = out[start..].lines().next().unwrap_or("");
    regex::Regex::new(r"iptables v[0-9.]+ ")
        .unwrap()
        .replace(line, "iptables vX ")
        .into_owned()
}

#[test]
#[ignore = "needs podman: scripts/test-engines.sh up, then make test"]
fn dind_picks_the_iptables_backend_at_start() {
    need(&[Need::Podman]);
    test_image();
    let b = "/usr/local/sbin/headjack-iptables-backend";
    // cases in one privileged container, the legacy-tables one last (its tables stay)
    let script = format!(
        "set -e; \
         echo '== probe'; if iptables-nft -nL >/dev/null 2>&1; then echo nft-answers; else echo nft-silent; fi; \
         echo '== detect'; {b} 2>&1; \
         echo '== forced legacy'; DOCKER_IPTABLES_LEGACY=1 {b} 2>&1; \
         echo '== forced nft'; DOCKER_IPTABLES_LEGACY= {b} 2>&1; \
         echo '== from pid 1'; env -u DOCKER_IPTABLES_LEGACY {b} 2>&1; \
         mkdir /tmp/stub && printf '#!/bin/sh\\nexit 1\\n' >/tmp/stub/iptables-nft && chmod +x /tmp/stub/iptables-nft; \
         echo '== no nf_tables'; PATH=/tmp/stub:$PATH {b} 2>&1; \
         echo '== legacy probe'; if iptables-legacy -nL >/dev/null 2>&1; then echo legacy-answers; else echo legacy-silent; fi; \
         echo '== legacy tables'; {b} 2>&1; \
         echo '== alternative'; readlink -f /etc/alternatives/iptables; readlink -f /etc/alternatives/ip6tables"
    );
    // PID 1 (this sh) has DOCKER_IPTABLES_LEGACY=1 for the "from pid 1" case only: the other
    // cases set or unset it in their own environment, and the script prefers its own
    let pid1 = run(
        &["--privileged", "-e", "DOCKER_IPTABLES_LEGACY=1"],
        &format!(
            "env -u DOCKER_IPTABLES_LEGACY sh -c '{}'",
            script.replace('\'', "'\\''")
        ),
    );
    // the sh that runs the cases has no DOCKER_IPTABLES_LEGACY: only PID 1 has it
    assert_eq!(
        case(&pid1, "from pid 1"),
        "headjack-iptables-backend: iptables vX (legacy) (DOCKER_IPTABLES_LEGACY is set)"
    );
    // the same cases without the variable anywhere
    let out = run(&["--privileged"], &script);
    let nft = case(&out, "probe") == "nft-answers";
    let detected = if nft {
        "headjack-iptables-backend: iptables vX (nf_tables) (nf_tables answers)"
    } else {
        "headjack-iptables-backend: iptables vX (legacy) (nf_tables does not answer, legacy does)"
    };
    assert_eq!(case(&out, "detect"), detected, "{out}");
    assert_eq!(
        case(&out, "forced legacy"),
        "headjack-iptables-backend: iptables vX (legacy) (DOCKER_IPTABLES_LEGACY is set)"
    );
    assert_eq!(
        case(&out, "forced nft"),
        "headjack-iptables-backend: iptables vX (nf_tables) (DOCKER_IPTABLES_LEGACY is empty)"
    );
    assert_eq!(case(&out, "from pid 1"), detected, "{out}");
    assert_eq!(
        case(&out, "no nf_tables"),
        "headjack-iptables-backend: iptables vX (legacy) (nf_tables does not answer, legacy does)"
    );
    if case(&out, "legacy probe") == "legacy-answers" {
        // listing with iptables-legacy created its filter table in this network namespace
        assert_eq!(
            case(&out, "legacy tables"),
            "headjack-iptables-backend: iptables vX (legacy) (legacy iptables tables already exist)"
        );
        assert!(
            out.ends_with("/usr/sbin/xtables-legacy-multi\n/usr/sbin/xtables-legacy-multi\n"),
            "{out}"
        );
    } else {
        eprintln!("note: this kernel has no legacy iptables; that case is not checked");
    }
    // without NET_ADMIN neither backend answers: nf_tables stays, and dockerd will say why
    let out = run(&[], &format!("echo '== unprivileged'; {b} 2>&1"));
    assert_eq!(
        case(&out, "unprivileged"),
        "headjack-iptables-backend: iptables vX (nf_tables) (neither backend answers; dockerd will report why)"
    );
}

#[test]
#[ignore = "needs podman: scripts/test-engines.sh up, then make test"]
fn sudo_keeps_the_toolchains_on_path() {
    need(&[Need::Podman]);
    test_image();
    let text = std::fs::read_to_string(images_dir().join("base/Dockerfile")).unwrap();
    let insts = parse_dockerfile(&text);
    let path_env = insts
        .iter()
        .find_map(|i| {
            (i.keyword == "ENV")
                .then(|| i.args.strip_prefix("PATH="))
                .flatten()
        })
        .expect("base sets ENV PATH");
    let path = path_env.replace(
        "${PATH}",
        "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    );
    assert!(path.starts_with("/opt/rust/cargo/bin:"), "{path}");
    // the commands of base's RUN that write the sudoers drop-in, as the Dockerfile has them
    let run = insts
        .iter()
        .find(|i| i.keyword == "RUN" && i.args.contains("secure_path"))
        .expect("base writes sudo's secure_path");
    let lines: Vec<&str> = run
        .args
        .split("&&")
        .map(str::trim)
        .filter(|c| c.contains("secure-path") || c.contains("secure_path"))
        .collect();
    assert_eq!(lines.len(), 3, "{lines:?}");
    let script = format!(
        "export PATH='{path}'; {} && sudo sh -c 'echo \"$PATH\"'",
        lines.join(" && ")
    );
    let out = run_plain(&script);
    assert!(
        out.contains("/etc/sudoers.d/secure-path: parsed OK"),
        "{out}"
    );
    assert_eq!(out.lines().last().unwrap(), path, "{out}");
}

fn run_plain(script: &str) -> String {
    let out = Command::new("podman")
        .args(["run", "--rm", IMAGE, "sh", "-c", script])
        .output()
        .unwrap();
    let text = script_output(&out);
    assert!(out.status.success(), "{text}");
    text
}
