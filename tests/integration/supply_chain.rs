//! The release gates with the real cosign, syft and trivy (`scripts/install-tools.sh test`
//! installs them; ignored tests without them, which `make test` runs) against the password registry on 127.0.0.1:5001,
//! on the small fixture `tests/fixtures/supply` (base apt-installs `tree`, app adds a file,
//! leaky plants a fake private key), and `hjk images verify` after such a release. No fake
//! here: what a fake cannot tell (a signature that verifies, an SBOM that lists what apt
//! installed, a secret the scanner finds) is what these tests check. The tools get the
//! registry's credentials from hjk (a `DOCKER_CONFIG` of their own); this test's own cosign
//! calls get them from a 0700 directory too, never in an argv.

use crate::util::registry::{
    keypair, raw, read_meta, setup, sign_with, Setup, KEY_PASSWORD, REGISTRY, USER,
};
use crate::util::{copy_fixture_dir, need, succeeds, Need, TestEnv};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The supply fixture, copied into the test's directory (a test edits its copy).
fn copy_supply(env: &TestEnv) -> String {
    copy_fixture_dir(env, "supply", "supply")
}

/// A release of the supply fixture (`images`, a copy) that signs with a fresh key pair from
/// the environment (`HJK_AUTH=raw`); `root` is the test's directory, `meta` and `gates_dir` the
/// release's outputs there.
struct Signed {
    setup: Setup,
    images: String,
    public: PathBuf,
    root: String,
    meta: String,
    gates_dir: String,
}

fn signed(name: &str) -> Signed {
    let mut setup = setup(name);
    setup.env.set("HJK_AUTH", "raw");
    let images = copy_supply(&setup.env);
    let (key, public) = keypair(&setup.env, "keys");
    sign_with(&mut setup.env, &key);
    let root = setup.env.root().display().to_string();
    Signed {
        images,
        public,
        meta: format!("{root}/release.json"),
        gates_dir: format!("{root}/gates"),
        root,
        setup,
    }
}

/// A `DOCKER_CONFIG` directory (0700, its config.json 0600) for this test's own cosign calls.
fn docker_config(env: &TestEnv, pw: &str) -> PathBuf {
    use base64::Engine as _;
    use std::os::unix::fs::PermissionsExt;
    let dir = env.root().join("docker-config");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
    let token = base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{pw}"));
    let file = dir.join("config.json");
    std::fs::write(
        &file,
        format!(r#"{{"auths":{{"{REGISTRY}":{{"auth":"{token}"}}}}}}"#),
    )
    .unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
    dir
}

/// `cosign ARGS` as a user checks a release (with `--key`, no transparency log, plain HTTP).
fn cosign_ok(config: &Path, args: &[&str]) -> String {
    let out = succeeds(
        Command::new("cosign")
            .args(args)
            .env("DOCKER_CONFIG", config),
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `hjk images release` of `variant` (with its parents) on `engine`, as the gates tests run it.
fn release_args(
    images: &str,
    repo: &str,
    variant: &str,
    platforms: &str,
    version: &str,
    meta: &str,
    engine: &str,
) -> Vec<String> {
    [
        "images",
        "release",
        "--images-dir",
        images,
        "--registry",
        repo,
        "--platform",
        platforms,
        "--version",
        version,
        "--metadata-file",
        meta,
        "--progress",
        "plain",
        "--backend",
        engine,
    ]
    .into_iter()
    .map(String::from)
    .chain(match variant {
        "--all" => vec!["--all".to_string()],
        v => vec!["--variant".to_string(), v.to_string()],
    })
    .collect()
}

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

/// The gates with a key, no transparency log, and the offline scanner.
fn gate_flags(gates_dir: &str, public: &Path) -> Vec<String> {
    [
        "--sbom",
        "--sign",
        "--scan",
        "--scanners",
        "secret",
        "--tlog-upload=false",
        "--key",
        &public.display().to_string(),
        "--gates-dir",
        gates_dir,
    ]
    .into_iter()
    .map(String::from)
    .collect()
}

/// `hjk images verify ARGS` against `repo` with the test key, as JSON: (exit code, rows, stderr).
/// `hjk images verify TARGETS` of `repo` with `public`, no transparency log, to be checked and
/// run.
fn verify_run(env: &TestEnv, repo: &str, public: &Path, targets: &[&str]) -> crate::util::Run {
    let key = public.display().to_string();
    let mut args = vec!["images", "verify", "--registry", repo, "--key", &key];
    args.extend(["--insecure-ignore-tlog", "--auth", "raw"]);
    args.extend(targets);
    env.hjk(&args)
}

fn verify_json(
    env: &TestEnv,
    repo: &str,
    public: &Path,
    targets: &[&str],
) -> (i32, Vec<serde_json::Value>, String) {
    let mut targets = targets.to_vec();
    targets.push("--json");
    let out = verify_run(env, repo, public, &targets).output();
    let data: serde_json::Value = serde_json::from_str(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}\n{}", out.stdout, out.stderr));
    let rows = data["images"].as_array().unwrap().clone();
    assert_eq!(data["passed"], out.code == 0, "{}", out.stdout);
    (out.code, rows, out.stderr)
}

/// `(target, platform) -> [signature, sbom, provenance, base_signed]` of the verify rows.
fn cells(rows: &[serde_json::Value]) -> Vec<(String, String, [String; 4])> {
    rows.iter()
        .map(|r| {
            let c = &r["checks"];
            let s = |k: &str| c[k].as_str().unwrap().to_string();
            (
                r["target"].as_str().unwrap().to_string(),
                r["platform"].as_str().unwrap().to_string(),
                [s("signature"), s("sbom"), s("provenance"), s("base_signed")],
            )
        })
        .collect()
}

fn package_names(spdx: &Path) -> Vec<String> {
    let doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(spdx).unwrap()).unwrap();
    assert_eq!(doc["spdxVersion"], "SPDX-2.3", "{}", spdx.display());
    doc["packages"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p["name"].as_str().map(String::from))
        .collect()
}

/// A two-platform podman release with every gate, the real tools, a key made with `cosign
/// generate-key-pair` and no transparency log: the index and each platform manifest verify by
/// digest, each platform image has a verified SPDX attestation whose SBOM lists what apt
/// installed, and `hjk images verify` passes. Then `app`'s tag moves to an unsigned build (a
/// release without gates): `hjk images verify app` fails, naming it.
#[test]
#[ignore = "needs podman and registry and cosign, syft, trivy: scripts/test-engines.sh up and scripts/install-tools.sh supply, then make test"]
fn podman_release_signs_attests_and_verifies_then_an_unsigned_tag_fails() {
    need(&[Need::Podman, Need::Registry, Need::SupplyTools]);
    let Signed {
        setup:
            Setup {
                pw,
                env,
                auth,
                repo,
                ..
            },
        images,
        public,
        root,
        meta,
        gates_dir,
    } = signed("supply-podman");
    let mut args = release_args(
        &images,
        &repo,
        "app",
        "linux/amd64,linux/arm64",
        "v0.1.0",
        &meta,
        "podman",
    );
    args.extend(gate_flags(&gates_dir, &public));
    env.hjk(&strs(&args))
        .stderr_has("the signatures and SBOM attestations are not in a transparency log")
        .run();
    let m = read_meta(Path::new(&meta));
    let config = docker_config(&env, &pw);
    let pub_s = public.display().to_string();
    let verify = [
        "--key",
        &pub_s,
        "--insecure-ignore-tlog",
        "--allow-http-registry",
    ];
    for v in m["variants"].as_array().unwrap() {
        let name = v["name"].as_str().unwrap();
        assert_eq!(v["signed"], true, "{name}");
        assert_eq!(v["scan"], "passed", "{name}");
        assert_eq!(v["sbom"].as_array().unwrap().len(), 2, "{name}");
        // the index and every platform manifest, each by digest
        let index = format!("{repo}@{}", v["index_digest"].as_str().unwrap());
        cosign_ok(&config, &[&["verify"][..], &verify, &[&index]].concat());
        for (platform, rec) in v["platforms"].as_object().unwrap() {
            let image = format!("{repo}@{}", rec["digest"].as_str().unwrap());
            cosign_ok(&config, &[&["verify"][..], &verify, &[&image]].concat());
            let out = cosign_ok(
                &config,
                &[
                    &["verify-attestation", "--type", "spdxjson"][..],
                    &verify,
                    &[&image],
                ]
                .concat(),
            );
            assert!(out.contains("\"payloadType\""), "{name} {platform}: {out}");
            // the SBOM lists what apt installed in base (and app inherits)
            let arch = platform.split('/').nth(1).unwrap();
            let sbom = PathBuf::from(format!("{gates_dir}/{name}-{arch}.spdx.json"));
            let names = package_names(&sbom);
            assert!(
                names.iter().any(|n| n == "tree"),
                "{name} {platform}: {names:?}"
            );
        }
    }
    // the release kept the public key it signed with beside the SBOMs only when not given one
    assert!(!Path::new(&format!("{gates_dir}/cosign.pub")).exists());

    // the people who pull it: every check passes
    let out = verify_run(&env, &repo, &public, &["app", "base"])
        .stdout_has("TARGET  PLATFORM     SIGNATURE  SBOM    PROVENANCE  BASE-SIGNED  IMAGE")
        .run();
    eprintln!("verify after the release:\n{}", out.stdout);
    let (code, rows, _) = verify_json(&env, &repo, &public, &["app", "base"]);
    assert_eq!(code, 0);
    let ok = |s: &str| s.to_string();
    let dash = || "-".to_string();
    assert_eq!(
        cells(&rows),
        [
            (
                "app".into(),
                "index".into(),
                [ok("ok"), dash(), dash(), dash()]
            ),
            (
                "app".into(),
                "linux/amd64".into(),
                [ok("ok"), ok("ok"), dash(), ok("ok")]
            ),
            (
                "app".into(),
                "linux/arm64".into(),
                [ok("ok"), ok("ok"), dash(), ok("ok")]
            ),
            (
                "base".into(),
                "index".into(),
                [ok("ok"), dash(), dash(), dash()]
            ),
            // base is FROM local/debian, not one of ours: no parent signature to check
            (
                "base".into(),
                "linux/amd64".into(),
                [ok("ok"), ok("ok"), dash(), dash()]
            ),
            (
                "base".into(),
                "linux/arm64".into(),
                [ok("ok"), ok("ok"), dash(), dash()]
            ),
        ]
    );
    // a plain reference by digest works the same
    let app_index = m["variants"][1]["index_digest"]
        .as_str()
        .unwrap()
        .to_string();
    let by_digest = format!("{repo}@{app_index}");
    let (code, rows, _) = verify_json(&env, &repo, &public, &[&by_digest]);
    assert_eq!((code, rows.len()), (0, 3));

    // app's tags move to an unsigned build: a new app released without the gates, over the
    // same (signed) base
    std::fs::write(
        format!("{images}/app/Dockerfile"),
        "ARG BASE_IMAGE=hjk-supply-fixture:base\nFROM ${BASE_IMAGE}\nRUN echo unsigned > /etc/hjk-variant\n",
    )
    .unwrap();
    let meta2 = format!("{root}/unsigned.json");
    let mut args = release_args(
        &images,
        &repo,
        "app",
        "linux/amd64,linux/arm64",
        "v0.1.0",
        &meta2,
        "podman",
    );
    args.push("--force-tags".into());
    env.hjk(&strs(&args)).run();
    let unsigned = read_meta(Path::new(&meta2))["variants"][1]["index_digest"]
        .as_str()
        .unwrap()
        .to_string();
    assert_ne!(unsigned, app_index);
    let out = verify_run(&env, &repo, &public, &["app"])
        .status(1)
        .stderr_has(format!(
            "{repo}@{unsigned} (app index): signature: no signatures found"
        ))
        .stderr_has("image(s) failed verification")
        .run();
    eprintln!(
        "verify after app moved to an unsigned build:\n{}{}",
        out.stdout, out.stderr
    );
    let (code, rows, _) = verify_json(&env, &repo, &public, &["app"]);
    assert_eq!(code, 1);
    let failed = || "FAILED".to_string();
    assert_eq!(
        cells(&rows),
        [
            (
                "app".into(),
                "index".into(),
                [failed(), dash(), dash(), dash()]
            ),
            // its base is still the signed base
            (
                "app".into(),
                "linux/amd64".into(),
                [failed(), failed(), dash(), ok("ok")]
            ),
            (
                "app".into(),
                "linux/arm64".into(),
                [failed(), failed(), dash(), ok("ok")]
            ),
        ]
    );
    // what was signed still verifies by digest; only the tags moved
    let (code, _, _) = verify_json(&env, &repo, &public, &[&by_digest]);
    assert_eq!(code, 0);
    let moved = raw(&auth, &format!("{repo}:app-v0.1.0"), false).unwrap();
    assert_eq!(
        format!("sha256:{}", crate::util::sha256_hex(&moved)),
        unsigned
    );
}

/// A buildx release of the whole fixture with the real gates: trivy's secret scanner, offline,
/// finds the planted key in `leaky`, whose tags do not move while `base` and `app` are signed,
/// attested and promoted; the hold names the finding and the file. `hjk images verify` then
/// passes on `app`, BuildKit's provenance attestation included, and fails on `leaky`, which
/// has no public tag.
#[test]
#[ignore = "needs docker and registry and cosign, syft, trivy: scripts/test-engines.sh up and scripts/install-tools.sh supply, then make test"]
fn buildx_release_holds_the_variant_with_a_planted_key_and_verifies_provenance() {
    need(&[Need::Docker, Need::Registry, Need::SupplyTools]);
    let Signed {
        setup: Setup {
            env, auth, repo, ..
        },
        images,
        public,
        meta,
        gates_dir,
        ..
    } = signed("supply-buildx");
    let mut args = release_args(
        &images,
        &repo,
        "--all",
        "linux/amd64",
        "v0.1.0",
        &meta,
        "docker",
    );
    args.extend(gate_flags(&gates_dir, &public));
    let finding = "secret private-key (Asymmetric Private Key) in /etc/hjk-fixture/deploy.pem";
    let out = env
        .hjk(&strs(&args))
        .status(1)
        .stderr_has(format!(
            "1 variant(s) failed a release gate and keep their public tags where they were: leaky (scan found 1 HIGH: {finding}; not signed; SBOM not attested)"
        ))
        .stderr_has(format!("warning: leaky (linux/amd64): scan found 1 HIGH at CRITICAL,HIGH: {finding}"))
        .run();
    let m = read_meta(Path::new(&meta));
    let leaky = &m["variants"][2];
    assert_eq!(leaky["name"], "leaky");
    assert_eq!(leaky["scan"], "failed");
    assert_eq!(leaky["tags"], serde_json::json!([]), "{}", out.stdout);
    assert!(
        leaky["held"][0].as_str().unwrap().contains(finding),
        "{leaky}"
    );
    for tag in ["leaky", "leaky-v0.1.0"] {
        assert!(
            raw(&auth, &format!("{repo}:{tag}"), false).is_none(),
            "{tag} moved"
        );
    }
    for tag in ["base", "base-v0.1.0", "app", "app-v0.1.0"] {
        assert!(
            raw(&auth, &format!("{repo}:{tag}"), false).is_some(),
            "{tag}"
        );
    }
    // one SBOM per image, syft's: the buildx stage made provenance only
    let report = std::fs::read_to_string(format!("{gates_dir}/leaky-amd64.trivy.json")).unwrap();
    assert!(report.contains("/etc/hjk-fixture/deploy.pem"));

    let out = verify_run(&env, &repo, &public, &["app"]).run();
    eprintln!("verify of a buildx release:\n{}", out.stdout);
    let (code, rows, _) = verify_json(&env, &repo, &public, &["app"]);
    assert_eq!(code, 0);
    let c = cells(&rows);
    assert_eq!(c.len(), 2, "{c:?}");
    assert_eq!(c[1].2, ["ok", "ok", "ok", "ok"], "{c:?}");
    let (code, rows, stderr) = verify_json(&env, &repo, &public, &["leaky"]);
    assert_eq!(code, 1);
    assert_eq!(rows[0]["problems"][0], "not in the registry", "{stderr}");
}

/// Input is checked before anything is built or pushed, each refusal one line and exit 2: a key
/// `--key` does not name, no key at all, a password that does not open it, trivy's vuln DB out
/// of reach or missing from a cache directory, a missing or private `--key` for verify, and no
/// cosign. The engine is a fake that records its argv: none of them reaches a build.
#[test]
#[ignore = "needs cosign, syft, trivy: scripts/install-tools.sh supply, then make test"]
fn bad_keys_and_no_vulnerability_db_are_refused_before_anything_is_pushed() {
    need(&[Need::SupplyTools]);
    let mut env = TestEnv::new();
    env.fake("podman");
    for tool in ["cosign", "syft", "trivy"] {
        std::os::unix::fs::symlink(which::which(tool).unwrap(), env.bin().join(tool)).unwrap();
    }
    env.set("HJK_AUTH", "raw");
    env.set("HJK_REGISTRY_CREDS", "u:p");
    let images = copy_supply(&env);
    let (key_a, _) = keypair(&env, "a");
    let (_, pub_b) = keypair(&env, "b");
    let meta = env.root().join("m.json").display().to_string();
    let base = release_args(
        &images,
        &format!("{REGISTRY}/hjk-test/refused"),
        "app",
        "linux/amd64",
        "v0.1.0",
        &meta,
        "podman",
    );
    let gates = env.root().join("gates").display().to_string();
    let with = |extra: &[&str]| -> Vec<String> {
        let mut a = base.clone();
        a.extend(["--gates-dir".to_string(), gates.clone()]);
        a.extend(extra.iter().map(|s| s.to_string()));
        a
    };
    let pub_b_s = pub_b.display().to_string();
    // --key, but no COSIGN_KEY
    env.hjk(&strs(&with(&["--sign", "--key", &pub_b_s])))
        .bad_input()
        .stderr_has(format!(
            "--key {pub_b_s} names the public key to sign with, but COSIGN_KEY is not set"
        ))
        .run();
    // COSIGN_KEY is another key's
    sign_with(&mut env, &key_a);
    env.hjk(&strs(&with(&["--sign", "--key", &pub_b_s])))
        .bad_input()
        .stderr_has(format!(
            "the signing key in COSIGN_KEY does not match --key {pub_b_s}"
        ))
        .run();
    // a password that does not open it
    env.set("COSIGN_PASSWORD", "wrong");
    env.hjk(&strs(&with(&["--sign"])))
        .bad_input()
        .stderr_has("cosign cannot read the signing key in COSIGN_KEY (")
        .run();
    // the private key where the public one belongs
    env.set("COSIGN_PASSWORD", KEY_PASSWORD);
    let key_a_s = key_a.display().to_string();
    env.hjk(&strs(&with(&["--sign", "--key", &key_a_s])))
        .bad_input()
        .stderr_has("is not a PEM public key")
        .run();
    // no transparency log needs a key
    env.vars.remove("COSIGN_KEY");
    env.hjk(&strs(&with(&["--sign", "--tlog-upload=false"])))
        .bad_input()
        .stderr_has("--tlog-upload=false needs a signing key")
        .run();
    // the vuln scanner with no DB to be had (a repository nobody listens at, so the answer is
    // the same with or without a network): fails closed, naming where a DB can come from
    env.hjk(&strs(&with(&["--scan", "--scan-db-repository", "127.0.0.1:9/trivy-db:2"])))
        .bad_input()
        .stderr_has("--scan with the vuln scanner needs trivy's vulnerability DB, and trivy could not download it")
        .stderr_has("--scan-db-repository REPO")
        .stderr_has("--scan-cache-dir DIR")
        .stderr_has("nothing was built or pushed")
        .run();
    let empty = env.root().join("empty-cache").display().to_string();
    std::fs::create_dir_all(&empty).unwrap();
    env.hjk(&strs(&with(&["--scan", "--scan-cache-dir", &empty])))
        .bad_input()
        .stderr_has(format!(
            "--scan-cache-dir {empty} holds none ({empty}/db/trivy.db is missing)"
        ))
        .run();
    // --scanners is for --scan
    env.hjk(&strs(&with(&["--sbom", "--scanners", "secret"])))
        .bad_input()
        .stderr_has("--scanners is for --scan")
        .run();
    env.assert_nothing_built_or_pushed();
    // verify: a missing key, a private key, no cosign
    let missing = env.root().join("nope.pub").display().to_string();
    env.hjk(&["images", "verify", "app", "--key", &missing])
        .bad_input()
        .stderr_has(format!("cannot read --key {missing}"))
        .run();
    env.hjk(&["images", "verify", "app", "--key", &key_a_s])
        .bad_input()
        .stderr_has("is not a PEM public key")
        .run();
    env.hjk(&["images", "verify", "app"])
        .bad_input()
        .stderr_has("--key PATH (a cosign public key), or --certificate-identity-regexp and --certificate-oidc-issuer")
        .run();
    std::fs::remove_file(env.bin().join("cosign")).unwrap();
    env.hjk(&["images", "verify", "app", "--key", &pub_b_s])
        .bad_input()
        .stderr_has("hjk images verify needs `cosign`, which is not on PATH")
        .run();
}
