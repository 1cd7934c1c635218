//! `--boot` as a release gate (issue 16): a variant that does not boot is held exactly like one
//! whose scan failed. A release of the stand-in's `broken` (systemd with an enabled unit that
//! fails, [`crate::standin`]) on real podman to the loopback registry: base and systemd boot and
//! move their tags; broken moves none, says why in the summary, the metadata file and the exit
//! code, gets a held marker in the registry, and a later release without `--boot` still moves
//! no tag of it.

use crate::util::standin::env_with_standin;
use crate::util::{need, Need};
use std::process::Command;

/// The raw manifest a tag of the loopback registry (no password) names, if any.
fn manifest(reference: &str) -> Option<serde_json::Value> {
    let out = Command::new("skopeo")
        .args(["inspect", "--raw", "--tls-verify=false"])
        .arg(format!("docker://{reference}"))
        .output()
        .unwrap();
    out.status
        .success()
        .then(|| serde_json::from_slice(&out.stdout).unwrap())
}

#[test]
#[ignore = "needs podman: scripts/test-engines.sh up, then make test"]
fn a_variant_that_does_not_boot_is_held_like_a_failed_scan() {
    need(&[Need::Podman]);
    let (env, s) = env_with_standin();
    // content-addressed: a rerun of this test reuses what the registry has
    let repo = format!("127.0.0.1:5000/{}", s.repo.replace('/', "-boot-gate/"));
    let meta = env.root().join("release.json").display().to_string();
    let release = |extra: &[&str]| {
        let mut args = s.argv(
            &[
                "release",
                "--variant",
                "broken",
                "--platform",
                "linux/amd64",
            ],
            &repo,
            "podman",
        );
        args.extend(["--metadata-file", &meta, "--progress", "plain"]);
        args.extend_from_slice(extra);
        let started = std::time::Instant::now();
        let out = env.hjk(&args).output();
        eprintln!(
            "release {extra:?}: exit {} in {:.1}s\n{}",
            out.code,
            started.elapsed().as_secs_f64(),
            out.stdout
        );
        out
    };
    let out = release(&["--boot"]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    let last = out.stderr.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("error: 1 variant(s) failed a release gate and keep their public tags where they were: broken (linux/amd64: boot failed: systemd is degraded: hjk-fails.service failed"),
        "{}",
        out.stderr
    );
    // the gates' summary: a BOOT column
    let rows: Vec<&str> = out
        .stderr
        .lines()
        .filter(|l| l.ends_with(" booted") || l.ends_with(" FAILED"))
        .collect();
    assert_eq!(rows.len(), 3, "{}", out.stderr);
    assert!(
        rows[2].starts_with("broken ") && rows[2].ends_with(" FAILED"),
        "{rows:?}"
    );
    let m: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&meta).unwrap()).unwrap();
    let by_name = |n: &str| {
        m["variants"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["name"] == n)
            .unwrap()
            .clone()
    };
    assert_eq!(by_name("systemd")["boot"], "passed");
    assert_eq!(by_name("systemd")["tags"], serde_json::json!(["systemd"]));
    let broken = by_name("broken");
    assert!(broken["tags"].as_array().unwrap().is_empty(), "{broken}");
    assert!(
        broken["boot"]
            .as_str()
            .unwrap()
            .contains("hjk-fails.service"),
        "{broken}"
    );
    // the hold is in the registry, on the index, naming the boot gate
    let index = broken["index_digest"].as_str().unwrap();
    let marker = manifest(&format!(
        "{repo}:held-{}",
        index.trim_start_matches("sha256:")
    ))
    .expect("a held marker");
    assert_eq!(marker["annotations"]["io.agent-images.held.gates"], "boot");
    assert!(manifest(&format!("{repo}:broken")).is_none());
    assert!(manifest(&format!("{repo}:systemd")).is_some());

    // without --boot, an earlier release's hold still holds
    let out = release(&[]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(
        out.stderr
            .contains("an earlier release's gates held this index")
            && out.stderr.contains("--boot"),
        "{}",
        out.stderr
    );
    assert!(manifest(&format!("{repo}:broken")).is_none());
    let _ = Command::new("sh")
        .args(["-c", &format!("podman images --format '{{{{.Repository}}}}:{{{{.Tag}}}}' | grep '^{repo}' | xargs -r podman rmi -f >/dev/null 2>&1")])
        .output();
}
