//! The release gates (`hjk::release::gates::run`) in the failures the real cosign, syft and
//! trivy cannot be made to produce here, against fakes of them
//! (tests/fixtures/fake-bin/fake-supply-chain): vulnerability findings (trivy's DB cannot be
//! downloaded on this machine), a trivy that dies mid-scan, a signature the registry refuses
//! after the key checked out, and the promotion rule each of them drives (a failed scan or
//! signature moves no public tag). Driven through the library, as the release calls it between
//! "everything is pushed by digest" and "tags move". What works is tested with the real tools
//! in `supply_chain.rs`.

use crate::util::fake::Script;
use crate::util::{fixtures, TestEnv};
use agent_images::digest::ImageDigest;
use agent_images::engine::Engine;
use agent_images::error;
use agent_images::hjk::release::gates::run::{self as gates, Published, PublishedVariant, Verdict};
use agent_images::hjk::release::gates::tools::{self as sc, GateOptions};
use agent_images::hjk::release::promote::public_tags;
use agent_images::image_ref::ImageRef;
use agent_images::platform::Platform;
use agent_images::report::{Event, Reporter};
use camino::Utf8PathBuf;
use std::collections::BTreeMap;
use std::ffi::OsString;
use std::sync::{Arc, Mutex};

/// Keeps every event, so a test can look at dry-run commands and warnings.
#[derive(Default)]
struct Collect(Mutex<Vec<Event>>);
impl Reporter for Collect {
    fn event(&self, ev: Event) {
        self.0.lock().unwrap().push(ev);
    }
}

fn digest(n: u32) -> ImageDigest {
    ImageDigest::parse(&format!("sha256:{n:064x}")).unwrap()
}

/// base -> systemd -> dind (the first `n` of them), each for amd64 and arm64, with distinct
/// digests: variant i has index 10*i+1, amd64 10*i+2, arm64 10*i+3.
fn published(n: usize) -> Published {
    let names = ["base", "systemd", "dind"];
    Published {
        registry: ImageRef::parse("ghcr.io/gilmanlab/headjack").unwrap(),
        variants: (0..n)
            .map(|i| {
                let base = 10 * (i as u32 + 1);
                PublishedVariant {
                    name: names[i].into(),
                    parent: i.checked_sub(1).map(|p| names[p].to_string()),
                    dir: Some(Utf8PathBuf::from(format!(
                        "{}/images/{}",
                        env!("CARGO_MANIFEST_DIR"),
                        names[i]
                    ))),
                    index_digest: digest(base + 1),
                    platforms: vec![
                        (Platform::LinuxAmd64, digest(base + 2)),
                        (Platform::LinuxArm64, digest(base + 3)),
                    ],
                }
            })
            .collect(),
    }
}

/// Every public tag the promotion lets move, for version v1.4.0, named the way the release's
/// promotion names them (`hjk::release::promote::public_tags` of each variant that may move).
fn moving_tags(promo: &gates::Promotion, p: &Published) -> Vec<String> {
    promo
        .moves
        .iter()
        .flat_map(|v| public_tags(v, Some("v1.4.0")))
        .map(|t| format!("{}:{t}", p.registry))
        .collect()
}

struct Setup {
    env: TestEnv,
    engine: Engine,
    events: Arc<Collect>,
    opts: GateOptions,
    path: OsString,
}

/// A test env with fake docker, cosign, syft and trivy on its PATH, and every gate asked for.
fn setup(dry_run: bool) -> Setup {
    let env = TestEnv::new();
    env.fake("docker");
    for tool in ["cosign", "syft", "trivy"] {
        std::os::unix::fs::symlink(
            fixtures().join("fake-bin/fake-supply-chain"),
            env.bin().join(tool),
        )
        .unwrap();
    }
    let path = OsString::from(env.vars["PATH"].clone());
    let events = Arc::new(Collect::default());
    let engine = Engine::open(None, Some(&path), events.clone(), dry_run).unwrap();
    let out = Utf8PathBuf::from_path_buf(env.root().join("out")).unwrap();
    let opts = GateOptions::new(true, true, true, out, None, &BTreeMap::new()).unwrap();
    Setup {
        env,
        engine,
        events,
        opts,
        path,
    }
}

impl Setup {
    fn auth_dir(&self) -> Utf8PathBuf {
        Utf8PathBuf::from_path_buf(self.env.root().join("auth")).unwrap()
    }

    async fn run(&self, published: &Published) -> gates::GateReport {
        let tools = sc::check_tools(&self.opts, Some(&self.path)).unwrap();
        let auth = self.auth_dir();
        gates::run_gates(
            &self.engine,
            published,
            &self.opts,
            &tools,
            Some(&auth),
            None,
        )
        .await
        .unwrap()
    }

    /// The recorded tool calls, one line each, with the test's temp dir as `[ROOT]`.
    fn calls(&self) -> Vec<String> {
        let root = self.env.root().display().to_string();
        self.env
            .log()
            .iter()
            .map(|argv| {
                let mut argv = argv.clone();
                argv[0] = argv[0].rsplit('/').next().unwrap_or(&argv[0]).to_string();
                argv.join(" ").replace(&root, "[ROOT]")
            })
            .collect()
    }
}

/// A fake trivy: vulnerability findings need trivy's DB, which cannot be downloaded here (the
/// real scanner finds the planted secret instead, in supply_chain.rs).
#[tokio::test(flavor = "current_thread")]
async fn failing_scan_moves_no_public_tag() {
    let s = setup(false);
    let p = published(3);
    // systemd's arm64 image has findings; base is clean
    s.env.script(&Script {
        trivy_finds_when: Some(digest(23).to_string()),
        ..Script::default()
    });
    let report = s.run(&p).await;
    let systemd = report.get("systemd").unwrap();
    assert_eq!(systemd.scan.verdict, Verdict::Failed);
    let arm = &systemd.scan.platforms[1];
    assert_eq!((arm.findings["HIGH"], arm.findings["CRITICAL"]), (1, 1));
    assert!(systemd.scan.platforms[0].findings.is_empty());
    assert!(!systemd.signed);
    // neither systemd nor dind (built on it) is signed
    let calls = s.calls();
    for idx in [digest(21), digest(31)] {
        assert!(
            !calls
                .iter()
                .any(|c| c.starts_with("cosign") && c.contains(idx.as_str())),
            "{calls:#?}"
        );
    }
    assert!(calls
        .iter()
        .any(|c| c.starts_with("cosign sign") && c.contains(digest(11).as_str())));
    let promo = gates::promotion(&p, &report);
    assert_eq!(promo.moves, ["base"]);
    assert!(!promo.may_move("systemd") && !promo.may_move("dind"));
    let tags = moving_tags(&promo, &p);
    assert_eq!(
        tags,
        [
            "ghcr.io/gilmanlab/headjack:base",
            "ghcr.io/gilmanlab/headjack:base-v1.4.0"
        ]
    );
    let err = promo.held_error().unwrap();
    assert_eq!(error::exit_code(&err), 1);
    assert_eq!(
        err.to_string(),
        "2 variant(s) failed a release gate and keep their public tags where they were: \
         systemd (scan found 1 CRITICAL, 1 HIGH: CVE-2026-0001 in openssl 3.0.13-0ubuntu3.5, \
         CVE-2026-0002 in libc6 2.39-0ubuntu8.4; not signed; SBOM not attested), \
         dind (not signed; SBOM not attested; its parent systemd is held)"
    );
    let summary = report.summary();
    assert!(
        summary.contains("systemd      FAILED   1 CRITICAL, 1 HIGH         2      NO"),
        "{summary}"
    );
    // the user was told at once, with the gate's severities
    let warned = s.events.0.lock().unwrap().iter().any(|e| {
        matches!(e, Event::Message { level: "warning", text }
            if text == "systemd (linux/arm64): scan found 1 CRITICAL, 1 HIGH at CRITICAL,HIGH: \
                CVE-2026-0001 in openssl 3.0.13-0ubuntu3.5, CVE-2026-0002 in libc6 2.39-0ubuntu8.4")
    });
    assert!(warned);
}

/// A fake trivy: one that dies in the middle of a scan of a pushed image (a registry or DB
/// failure after the DB check passed) cannot be made on demand with the real one.
#[tokio::test(flavor = "current_thread")]
async fn a_trivy_error_is_not_a_finding_but_still_holds() {
    let s = setup(false);
    let p = published(1);
    s.env.script(&Script {
        trivy_errors_when: Some(digest(12).to_string()),
        ..Script::default()
    });
    let report = s.run(&p).await;
    let base = report.get("base").unwrap();
    assert_eq!(base.scan.verdict, Verdict::Error);
    assert_eq!(base.scan.platforms[0].verdict, Verdict::Error);
    assert_eq!(base.scan.platforms[1].verdict, Verdict::Passed);
    assert!(
        base.errors[0].starts_with("scan of linux/amd64: trivy exited with Some(1): ")
            && base.errors[0].contains("FATAL"),
        "{:?}",
        base.errors
    );
    let promo = gates::promotion(&p, &report);
    assert!(promo.moves.is_empty());
    assert_eq!(
        promo.held[0].reasons,
        ["scan could not run", "not signed", "SBOM not attested"]
    );
}

/// A fake cosign: a signature the registry refuses after the key checked out before the build
/// cannot be made with the real one against a registry that accepts the release's pushes.
#[tokio::test(flavor = "current_thread")]
async fn a_failed_signature_holds_the_variant_and_its_children() {
    let s = setup(false);
    let p = published(2);
    s.env.script(&Script {
        cosign_fails_when: Some(digest(11).to_string()),
        ..Script::default()
    });
    let report = s.run(&p).await;
    let base = report.get("base").unwrap();
    assert!(!base.signed);
    assert!(
        base.errors[0].starts_with("signing: command failed with exit code 1: "),
        "{:?}",
        base.errors
    );
    // no attestation after a failed signature, and the child is not signed either
    assert!(!s.calls().iter().any(|c| c.starts_with("cosign attest")));
    assert_eq!(
        report.get("systemd").unwrap().errors,
        ["not signed: its parent base failed a gate"]
    );
    let promo = gates::promotion(&p, &report);
    assert!(promo.moves.is_empty(), "{promo:?}");
    assert_eq!(promo.held.len(), 2);
}

/// No tool runs: the fakes only stand on PATH, recording that nothing was started.
#[tokio::test(flavor = "current_thread")]
async fn dry_run_prints_the_gate_commands_and_runs_none() {
    let s = setup(true);
    let report = s.run(&published(1)).await;
    assert!(s.env.log().is_empty(), "{:?}", s.env.log());
    assert!(!s.env.root().join("out").exists());
    let commands: Vec<String> = s
        .events
        .0
        .lock()
        .unwrap()
        .iter()
        .filter_map(|e| match e {
            Event::Command { command, ran } => {
                assert!(!ran);
                Some(command.clone())
            }
            _ => None,
        })
        .collect();
    // 2 scans, 2 SBOMs, 1 signature, 2 attestations
    assert_eq!(commands.len(), 7, "{commands:#?}");
    assert!(
        commands[4].contains("cosign sign --yes --recursive ghcr.io/gilmanlab/headjack@sha256:")
    );
    assert!(gates::promotion(&published(1), &report).may_move("base"));
}

#[test]
fn a_missing_tool_is_exit_2_before_anything_runs() {
    let s = setup(false);
    std::fs::remove_file(s.env.bin().join("trivy")).unwrap();
    std::fs::remove_file(s.env.bin().join("cosign")).unwrap();
    let err: anyhow::Error = sc::check_tools(&s.opts, Some(&s.path)).unwrap_err().into();
    assert_eq!(error::exit_code(&err), 2);
    assert_eq!(
        error::user_error_in(&err).map(error::UserError::kind),
        Some(error::ErrorKind::Tool)
    );
    let lines = error::render(&err);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(
        lines[0].starts_with(
            "error: --scan needs `trivy`, which is not on PATH: install it from https://trivy.dev/"
        ) && lines[0].contains(
            "; --sign needs `cosign`, which is not on PATH: install it from https://docs.sigstore.dev/"
        ) && lines[0].ends_with("; nothing was built or pushed"),
        "{lines:?}"
    );
    assert!(s.env.log().is_empty());
}

#[test]
fn published_digests_are_parsed_once_and_order_is_checked() {
    // a digest reaches argv only as an ImageDigest, which refuses anything but sha256:<64 hex>
    let err = ImageDigest::parse("sha256:abc; rm -rf /").unwrap_err();
    assert_eq!(
        err.message(),
        "\"sha256:abc; rm -rf /\" is not a sha256 digest (sha256:<64 hex digits>)"
    );
    assert_eq!(err.kind(), error::ErrorKind::Reference);
    assert!(published(2).validate().is_ok());
    let mut p = published(2);
    p.variants.reverse();
    let err = p.validate().unwrap_err();
    assert_eq!(
        err.message(),
        "variant systemd is listed before its parent base"
    );
    assert_eq!(err.kind(), error::ErrorKind::Metadata);
}
