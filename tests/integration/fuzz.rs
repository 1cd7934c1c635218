//! Fuzzing on stable Rust with proptest (cargo-fuzz needs nightly): the config loaders (ocx
//! and hjk), the devcontainer.json reader, variants.yaml, release metadata files and the
//! image-reference parser get generated input
//! until a time budget runs out: `FUZZ_SECONDS` per target (default 3; `make test` gives 30,
//! `make fuzz` 600). The properties:
//! - no input panics; every rejection is one line (what a user sees);
//! - the reference parser agrees with the distribution grammar: an oracle built here from the
//!   constants of distribution/reference's regexp.go and a port of `ParseNormalizedNamed`
//!   (normalize.go) and `Parse` (reference.go), with go-digest's digest rules.
//!
//! A failure prints the shrunk input. Inputs are random per run (proptest's OS-seeded RNG).

use agent_images::hjk::devcontainer;
use agent_images::image_ref::ImageRef;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use regex::Regex;
use std::collections::BTreeMap;
use std::fmt::Debug;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Runs `check` on values of `strategy` until the budget is spent; panics with the shrunk
/// failing input.
fn fuzz<S>(name: &str, strategy: S, check: impl Fn(S::Value) -> Result<(), TestCaseError>)
where
    S: Strategy,
    S::Value: Debug,
{
    let secs: f64 = std::env::var("FUZZ_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3.0);
    let deadline = Instant::now() + Duration::from_secs_f64(secs);
    let mut cases = 0u64;
    while Instant::now() < deadline || cases == 0 {
        // a runner counts its cases for life: a fresh one (freshly seeded) per batch
        let mut runner = TestRunner::new(Config {
            cases: 256,
            failure_persistence: None,
            ..Config::default()
        });
        if let Err(e) = runner.run(&strategy, &check) {
            panic!("fuzz {name}: {e}");
        }
        cases += 256;
    }
    eprintln!("fuzz {name}: {cases} cases in {secs} s");
}

// ---------------------------------------------------------------------------------------
// The oracle: distribution/reference's grammar, from its regexp.go constants.

const ALPHANUMERIC: &str = r"[a-z0-9]+";
const SEPARATOR: &str = r"(?:[._]|__|[-]+)";
const DOMAIN_NAME_COMPONENT: &str = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])";
const OPTIONAL_PORT: &str = r"(?::[0-9]+)?";
/// Go's `\w` is ASCII.
const TAG: &str = r"[0-9A-Za-z_][0-9A-Za-z_.-]{0,127}";
const DIGEST_PAT: &str = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*[:][[:xdigit:]]{32,}";
const IDENTIFIER: &str = r"([a-f0-9]{64})";
const IPV6_ADDRESS: &str = r"\[(?:[a-fA-F0-9:]+)\]";

fn optional(res: &[&str]) -> String {
    format!("(?:{})?", res.concat())
}
fn any_times(res: &[&str]) -> String {
    format!("(?:{})*", res.concat())
}
fn capture(res: &[&str]) -> String {
    format!("({})", res.concat())
}
fn anchored(res: &[&str]) -> String {
    format!("^{}$", res.concat())
}

struct Grammar {
    reference: Regex,
    name: Regex,
    identifier: Regex,
}

fn grammar() -> &'static Grammar {
    static G: OnceLock<Grammar> = OnceLock::new();
    G.get_or_init(|| {
        let domain_name = format!(
            "{DOMAIN_NAME_COMPONENT}{}",
            any_times(&[r"\.", DOMAIN_NAME_COMPONENT])
        );
        let host = format!("(?:{domain_name}|{IPV6_ADDRESS})");
        let domain_and_port = format!("{host}{OPTIONAL_PORT}");
        let path_component = format!("{ALPHANUMERIC}{}", any_times(&[SEPARATOR, ALPHANUMERIC]));
        let remote_name = format!("{path_component}{}", any_times(&["/", &path_component]));
        let name_pat = format!("{}{remote_name}", optional(&[&domain_and_port, "/"]));
        let reference_pat = anchored(&[
            &capture(&[&name_pat]),
            &optional(&[":", &capture(&[TAG])]),
            &optional(&["@", &capture(&[DIGEST_PAT])]),
        ]);
        let anchored_name = anchored(&[
            &optional(&[&capture(&[&domain_and_port]), "/"]),
            &capture(&[&remote_name]),
        ]);
        Grammar {
            reference: Regex::new(&reference_pat).unwrap(),
            name: Regex::new(&anchored_name).unwrap(),
            identifier: Regex::new(&anchored(&[IDENTIFIER])).unwrap(),
        }
    })
}

/// (domain, path, tag, digest) as `ParseNormalizedNamed` + `TagNameOnly` give them.
type Parsed = (String, String, Option<String>, Option<String>);

/// normalize.go's `splitDockerDomain`.
fn split_docker_domain(name: &str) -> (String, String) {
    let Some((maybe_domain, maybe_remote)) = name.split_once('/') else {
        return ("docker.io".into(), format!("library/{name}"));
    };
    let (domain, remote) = if maybe_domain == "localhost" {
        (maybe_domain.to_string(), maybe_remote.to_string())
    } else if maybe_domain == "index.docker.io" {
        ("docker.io".into(), maybe_remote.to_string())
    } else if maybe_domain.contains(['.', ':']) || maybe_domain.to_lowercase() != maybe_domain {
        (maybe_domain.to_string(), maybe_remote.to_string())
    } else {
        ("docker.io".into(), name.to_string())
    };
    if domain == "docker.io" && !remote.contains('/') {
        return (domain, format!("library/{remote}"));
    }
    (domain, remote)
}

/// normalize.go's `ParseNormalizedNamed`, then reference.go's `Parse`, then go-digest's
/// `Digest.Validate`.
fn oracle(s: &str) -> Option<Parsed> {
    let g = grammar();
    if g.identifier.is_match(s) {
        return None;
    }
    let (domain, remainder) = split_docker_domain(s);
    let remote = remainder.split(':').next().unwrap_or("");
    if remote.to_lowercase() != remote {
        return None;
    }
    let full = format!("{domain}/{remainder}");
    let m = g.reference.captures(&full)?;
    let name = g.name.captures(&m[1])?;
    let domain = name.get(1).map(|d| d.as_str()).unwrap_or("").to_string();
    let path = name[2].to_string();
    if path.len() > 255 {
        return None;
    }
    let tag = m.get(2).map(|t| t.as_str().to_string());
    let digest = m.get(3).map(|d| d.as_str().to_string());
    if let Some(d) = &digest {
        let (alg, hex) = d.split_once(':')?;
        let len = match alg {
            "sha256" => 64,
            "sha384" => 96,
            "sha512" => 128,
            _ => return None,
        };
        if hex.len() != len || !hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return None;
        }
    }
    let tag = match (&tag, &digest) {
        (None, None) => Some("latest".into()),
        _ => tag,
    };
    Some((domain, path, tag, digest))
}

fn ours(s: &str) -> Result<Parsed, String> {
    let r = ImageRef::parse(s).map_err(|e| e.to_string())?;
    Ok((
        r.registry().to_string(),
        r.repository().to_string(),
        r.tag().map(String::from),
        r.digest().map(String::from),
    ))
}

// ---------------------------------------------------------------------------------------
// Generators: mostly near the grammar, so both sides of every rule get exercised.

fn domain() -> impl Strategy<Value = String> {
    let component = "[a-zA-Z0-9]([a-zA-Z0-9-]{0,6}[a-zA-Z0-9])?";
    prop_oneof![
        Just("localhost".to_string()),
        Just("index.docker.io".to_string()),
        Just("docker.io".to_string()),
        proptest::string::string_regex(component).unwrap(),
        proptest::string::string_regex(&format!("{component}(\\.{component}){{1,3}}")).unwrap(),
        proptest::string::string_regex(r"\[[0-9a-fA-F:]{1,12}\]").unwrap(),
        proptest::string::string_regex(r"\[[0-9a-fA-F:%.g]{1,12}\]?").unwrap(),
        proptest::string::string_regex("[A-Za-z_]{1,6}").unwrap(),
    ]
    .prop_flat_map(|d| {
        prop_oneof![
            Just(d.clone()),
            proptest::string::string_regex("[0-9]{1,5}")
                .unwrap()
                .prop_map(move |p| format!("{d}:{p}")),
        ]
    })
}

fn path_component() -> impl Strategy<Value = String> {
    prop_oneof![
        8 => proptest::string::string_regex("[a-z0-9]{1,6}((\\.|_|__|-{1,3})[a-z0-9]{1,6}){0,2}").unwrap(),
        1 => proptest::string::string_regex("[a-zA-Z0-9._-]{1,8}").unwrap(),
        1 => (250usize..260).prop_map(|n| "a".repeat(n)),
    ]
}

fn tag() -> impl Strategy<Value = String> {
    prop_oneof![
        proptest::string::string_regex("[0-9A-Za-z_][0-9A-Za-z_.-]{0,10}").unwrap(),
        (125usize..132).prop_map(|n| format!("v{}", "1".repeat(n))),
        proptest::string::string_regex("[.-][a-z]{0,3}").unwrap(),
    ]
}

fn digest() -> impl Strategy<Value = String> {
    let alg = prop_oneof![
        Just("sha256"),
        Just("sha384"),
        Just("sha512"),
        Just("SHA256"),
        Just("md5"),
        Just("sha256+b64")
    ];
    let hex = prop_oneof![
        (Just(64usize), Just(false)),
        (Just(96usize), Just(false)),
        (Just(128usize), Just(false)),
        (Just(64usize), Just(true)),
        (31usize..66, Just(false)),
    ];
    (alg, hex, any::<u64>()).prop_map(|(a, (n, upper), seed)| {
        let digits = if upper {
            "0123456789ABCDEF"
        } else {
            "0123456789abcdef"
        };
        let hex: String = (0..n)
            .map(|i| digits.as_bytes()[((seed >> (i % 60)) as usize + i) % 16] as char)
            .collect();
        format!("{a}:{hex}")
    })
}

fn reference() -> impl Strategy<Value = String> {
    let structured = (
        proptest::option::of(domain()),
        proptest::collection::vec(path_component(), 1..4),
        proptest::option::of(tag()),
        proptest::option::weighted(0.3, digest()),
    )
        .prop_map(|(d, path, t, dg)| {
            let mut s = d.map(|d| format!("{d}/")).unwrap_or_default();
            s.push_str(&path.join("/"));
            if let Some(t) = t {
                s.push(':');
                s.push_str(&t);
            }
            if let Some(dg) = dg {
                s.push('@');
                s.push_str(&dg);
            }
            s
        })
        .boxed();
    let mutated = (
        structured.clone(),
        any::<usize>(),
        "[a-zA-Z0-9._:/@\\[\\]-]",
        any::<bool>(),
    )
        .prop_map(|(s, at, c, insert)| {
            let chars: Vec<char> = s.chars().collect();
            let i = at % (chars.len() + 1);
            let mut out: String = chars[..i].iter().collect();
            if insert {
                out.push_str(&c);
            }
            out.extend(chars[(i + usize::from(!insert)).min(chars.len())..].iter());
            out
        });
    prop_oneof![
        6 => structured,
        3 => mutated,
        1 => proptest::string::string_regex("[a-f0-9]{64}(:[a-z]{1,3})?").unwrap(),
        1 => proptest::string::string_regex("[a-zA-Z0-9._:/@\\[\\]-]{0,30}").unwrap(),
    ]
}

#[test]
fn fuzz_image_reference_agrees_with_the_distribution_grammar() {
    use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
    let (valid, invalid) = (AtomicU64::new(0), AtomicU64::new(0));
    fuzz("image reference", reference(), |s| {
        let want = oracle(&s);
        let got = ours(&s);
        if let Err(e) = &got {
            prop_assert!(!e.contains('\n'), "{s:?}: multi-line error {e:?}");
        }
        if want.is_some() { &valid } else { &invalid }.fetch_add(1, Relaxed);
        // `parse` gives the usual shapes their verdict without the grammar regex; `ours`
        // then asks for the grammar's reading, so a quick verdict the grammar does not share
        // fails here (as a panic in `ImageRef::reference`)
        prop_assert_eq!(got.ok(), want, "{:?}", s);
        Ok(())
    });
    let (v, i) = (valid.into_inner(), invalid.into_inner());
    eprintln!("image reference: {v} valid, {i} invalid by the grammar");
    // the generator must exercise both sides of the grammar
    assert!(v * 10 > v + i && i * 10 > v + i, "{v} valid, {i} invalid");
}

#[test]
fn fuzz_image_reference_never_panics_on_any_text() {
    fuzz("image reference, any text", any::<String>(), |s| {
        let _ = ImageRef::parse(&s);
        let _ = ImageRef::parse(&s).map(|r| (r.has_explicit_registry(), r.normalized()));
        Ok(())
    });
}

// ---------------------------------------------------------------------------------------
// devcontainer.json

/// JSON-with-comments text shaped like devcontainer.json, with variables, odd types and junk.
fn devcontainer_text() -> impl Strategy<Value = String> {
    let var = prop_oneof![
        Just("${localEnv:TZ:America/Los_Angeles}"),
        Just("${localEnv:HOME}"),
        Just("${localEnv}"),
        Just("${localEnv:}"),
        Just("${env:X:a:b}"),
        Just("${localWorkspaceFolder}"),
        Just("${localWorkspaceFolderBasename}"),
        Just("${containerWorkspaceFolder}"),
        Just("${devcontainerId}"),
        Just("${containerEnv:PATH}"),
        Just("${"),
        Just("${}"),
        Just("${unknown:x}"),
    ];
    let string = prop_oneof![
        proptest::string::string_regex("[a-zA-Z0-9./:_-]{0,12}").unwrap(),
        (var.clone(), "[a-z./]{0,4}").prop_map(|(v, s)| format!("{v}{s}")),
    ]
    .prop_map(serde_json::Value::String);
    let scalar = prop_oneof![
        string.clone(),
        any::<i64>().prop_map(serde_json::Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(serde_json::Value::from),
        any::<bool>().prop_map(serde_json::Value::from),
        Just(serde_json::Value::Null),
    ];
    let value = scalar.prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::Array),
            proptest::collection::btree_map(
                prop_oneof![
                    Just("image".to_string()),
                    Just("build".to_string()),
                    Just("dockerfile".to_string()),
                    Just("dockerFile".to_string()),
                    Just("context".to_string()),
                    Just("args".to_string()),
                    Just("target".to_string()),
                    Just("features".to_string()),
                    Just("options".to_string()),
                    Just("dockerComposeFile".to_string()),
                    Just("service".to_string()),
                    Just("workspaceFolder".to_string()),
                    "[a-zA-Z]{1,6}",
                ],
                inner,
                0..5
            )
            .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    });
    let top = proptest::collection::btree_map(
        prop_oneof![
            Just("image".to_string()),
            Just("build".to_string()),
            Just("dockerFile".to_string()),
            Just("context".to_string()),
            Just("features".to_string()),
            Just("dockerComposeFile".to_string()),
            Just("service".to_string()),
            Just("workspaceFolder".to_string()),
            "[a-z]{1,5}",
        ],
        value,
        0..6,
    )
    .prop_map(|m| {
        serde_json::to_string_pretty(&serde_json::Value::Object(m.into_iter().collect())).unwrap()
    });
    let with_comments = (
        top.clone(),
        any::<usize>(),
        prop_oneof![
            Just("// c\n"),
            Just("/* c */"),
            Just(","),
            Just("\u{feff}"),
            Just("}"),
            Just("\"")
        ],
    )
        .prop_map(|(t, at, junk)| {
            let mut i = at % (t.len() + 1);
            while !t.is_char_boundary(i) {
                i -= 1;
            }
            format!("{}{junk}{}", &t[..i], &t[i..])
        });
    prop_oneof![4 => top, 3 => with_comments, 1 => any::<String>()]
}

#[test]
fn fuzz_devcontainer_reader_never_panics() {
    let env: BTreeMap<String, String> = [("HOME".to_string(), "/root".to_string())].into();
    fuzz("devcontainer.json", devcontainer_text(), |text| {
        let ctx = devcontainer::Context {
            env: &env,
            workspace: camino::Utf8Path::new("/home/u/proj"),
        };
        let file = camino::Utf8Path::new("/home/u/proj/.devcontainer/devcontainer.json");
        match devcontainer::parse(file, &text, &ctx) {
            Ok(c) => {
                let _ = c.needs_cli();
            }
            Err(e) => prop_assert!(!e.message().contains('\n'), "{text:?}: {e:?}"),
        }
        Ok(())
    });
}

// ---------------------------------------------------------------------------------------
// Config loaders, from files on disk, as users write them.

fn yaml_text() -> impl Strategy<Value = String> {
    let key = prop_oneof![
        Just("runtime"),
        Just("default"),
        Just("images"),
        Just("name"),
        Just("base_image"),
        Just("registry"),
        Just("x")
    ];
    let scalar = prop_oneof![
        Just("podman".to_string()),
        Just("apple".to_string()),
        Just("Ubuntu".to_string()),
        Just("ghcr.io/a/b:1".to_string()),
        Just("[".to_string()),
        Just("~".to_string()),
        Just("&a".to_string()),
        Just("*a".to_string()),
        Just("!!binary x".to_string()),
        "[a-zA-Z0-9:/._-]{0,10}",
    ];
    let lines =
        proptest::collection::vec((0usize..3, key, scalar, any::<bool>()), 0..6).prop_map(|ls| {
            ls.into_iter()
                .map(|(indent, k, v, nested)| {
                    if nested {
                        format!("{}{k}:\n", "  ".repeat(indent))
                    } else {
                        format!("{}{k}: {v}\n", "  ".repeat(indent))
                    }
                })
                .collect::<String>()
        });
    prop_oneof![4 => lines, 1 => any::<String>()]
}

#[test]
fn fuzz_hjk_config_loader_never_panics() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("config");
    std::fs::create_dir_all(home.join("headjack")).unwrap();
    let file = home.join("headjack/config.yaml");
    let env_value = proptest::option::of(prop_oneof![
        Just("docker".to_string()),
        "[a-zA-Z0-9:/.\\[\\]_-]{0,12}"
    ]);
    fuzz(
        "hjk config.yaml",
        (yaml_text(), env_value),
        |(text, env)| {
            std::fs::write(&file, &text).unwrap();
            let mut vars: BTreeMap<String, String> = BTreeMap::new();
            vars.insert("XDG_CONFIG_HOME".into(), home.display().to_string());
            if let Some(v) = env {
                vars.insert("HJK_DEFAULT_BASE_IMAGE".into(), v.clone());
                vars.insert("HJK_RUNTIME_NAME".into(), v);
            }
            if let Err(e) = agent_images::hjk::config::load(&vars) {
                prop_assert!(!e.message().contains('\n'), "{text:?}: {e:?}");
            }
            Ok(())
        },
    );
}

fn ocx_json_text() -> impl Strategy<Value = String> {
    let key = prop_oneof![
        Just("custom_base_image"),
        Just("custom_base_dockerfile"),
        Just("opencode_version"),
        Just("opencode_variant"),
        Just("username"),
        Just("uid"),
        Just("gid"),
        Just("platforms"),
        Just("backend"),
        Just("image_name"),
        Just("unknown"),
    ];
    let value = prop_oneof![
        "[a-zA-Z0-9:/._ -]{0,12}".prop_map(serde_json::Value::String),
        any::<i64>().prop_map(serde_json::Value::from),
        Just(serde_json::json!(1.5)),
        Just(serde_json::json!(null)),
        Just(serde_json::json!(true)),
        Just(serde_json::json!(["linux/amd64", "linux/arm64"])),
        Just(serde_json::json!([1, 2])),
        Just(serde_json::json!({"a": 1})),
    ];
    let obj = proptest::collection::btree_map(key, value, 0..5).prop_map(|m| {
        serde_json::Value::Object(m.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
            .to_string()
    });
    prop_oneof![4 => obj, 1 => any::<String>(), 1 => Just("[]".to_string())]
}

#[test]
fn fuzz_ocx_config_loader_never_panics() {
    use agent_images::ocx::config::{load, ConfigEnv, Flags};
    let dir = tempfile::tempdir().unwrap();
    let root = camino::Utf8PathBuf::from_path_buf(dir.path().to_owned()).unwrap();
    let (home, project) = (root.join("config"), root.join("proj"));
    std::fs::create_dir_all(home.join("ocx")).unwrap();
    std::fs::create_dir_all(&project).unwrap();
    let env_value = proptest::option::of("[a-zA-Z0-9:/._ -]{0,12}");
    fuzz(
        "ocx.json",
        (ocx_json_text(), ocx_json_text(), env_value),
        |(global, local, env)| {
            std::fs::write(home.join("ocx/ocx.json"), &global).unwrap();
            std::fs::write(project.join("ocx.json"), &local).unwrap();
            let mut vars = BTreeMap::new();
            if let Some(v) = env {
                vars.insert("OCX_CUSTOM_BASE_IMAGE".to_string(), v.clone());
                vars.insert("OCX_UID".to_string(), v);
            }
            let env = ConfigEnv {
                vars,
                config_home: Some(home.clone()),
                host_uid: 1000,
                host_gid: 1000,
            };
            if let Err(e) = load(&project, &env, &Flags::default()) {
                prop_assert!(!e.message().contains('\n'), "{global:?} {local:?}: {e:?}");
            }
            Ok(())
        },
    );
}

// ---------------------------------------------------------------------------------------
// variants.yaml and release metadata files (issue 18): read from disk as hjk reads them.

/// variants.yaml text: lists of variants with good and bad names, dirs and parents, anchors and
/// aliases (a small alias bomb among them), deep nesting, and any text.
fn variants_yaml_text() -> impl Strategy<Value = String> {
    let name = prop_oneof![
        Just("base".to_string()),
        Just("dind".to_string()),
        Just("base-amd64".to_string()),
        Just("".to_string()),
        Just("Base".to_string()),
        "[a-z0-9-]{1,45}",
        "[a-z.:/ _-]{1,6}",
    ];
    let dir = prop_oneof![
        Just("base".to_string()),
        Just("..".to_string()),
        Just("/etc".to_string()),
        Just("a/../../b".to_string()),
        Just(".".to_string()),
        "[a-z/.]{0,8}",
    ];
    let variant = (
        name.clone(),
        proptest::option::of(name),
        dir,
        proptest::option::of("[a-z ]{0,8}"),
        any::<bool>(),
    )
        .prop_map(|(n, parent, dir, desc, extra)| {
            let mut v = format!("  - name: {n:?}\n    dir: {dir:?}\n");
            if let Some(p) = parent {
                v.push_str(&format!("    parent: {p:?}\n"));
            }
            if let Some(d) = desc {
                v.push_str(&format!("    description: {d:?}\n"));
            }
            if extra {
                v.push_str("    unknown: 1\n");
            }
            v
        });
    let list = proptest::collection::vec(variant, 0..6)
        .prop_map(|vs| format!("variants:\n{}", vs.concat()));
    let aliases = (1usize..400, 1usize..3000).prop_map(|(len, n)| {
        let mut t = format!(
            "variants:\n  - name: base\n    dir: base\n    description: &x \"{}\"\nx:\n",
            "y".repeat(len * 1000)
        );
        for _ in 0..n {
            t.push_str("  - *x\n");
        }
        t
    });
    let deep = (1usize..200).prop_map(|d| format!("variants: {}{}", "[".repeat(d), "]".repeat(d)));
    prop_oneof![
        6 => list,
        1 => aliases,
        1 => deep,
        1 => Just("variants: []\n".to_string()),
        1 => any::<String>()
    ]
}

#[test]
fn fuzz_variants_yaml_loader_never_panics() {
    let dir = tempfile::tempdir().unwrap();
    let root = camino::Utf8PathBuf::from_path_buf(dir.path().to_owned()).unwrap();
    std::fs::create_dir_all(root.join("base")).unwrap();
    fuzz("variants.yaml", variants_yaml_text(), |text| {
        std::fs::write(root.join("variants.yaml"), &text).unwrap();
        let started = Instant::now();
        match agent_images::hjk::variants::Graph::load(&root) {
            Ok(g) => {
                // what is accepted is a graph a release can tag
                prop_assert!(!g.variants.is_empty());
                for (i, v) in g.variants.iter().enumerate() {
                    prop_assert!(v.name.len() <= agent_images::hjk::variants::MAX_NAME);
                    if let Some(p) = &v.parent {
                        prop_assert!(g.variants[..i].iter().any(|o| &o.name == p));
                    }
                }
            }
            Err(e) => prop_assert!(!e.message().contains('\n'), "{text:?}: {e:?}"),
        }
        prop_assert!(
            started.elapsed() < Duration::from_secs(2),
            "took {:?}",
            started.elapsed()
        );
        Ok(())
    });
}

/// A release metadata file: a valid one with fields replaced by odd values, deep nesting, or
/// any text.
fn metadata_text() -> impl Strategy<Value = String> {
    let valid = serde_json::json!({
        "schema": 1, "registry": "127.0.0.1:5001/hj", "version": "v0.1.0", "partial": true,
        "variants": [{
            "name": "base", "parent": null, "index_digest": null, "tags": [], "parent_ref": null,
            "platforms": {"linux/amd64": {
                "digest": format!("sha256:{}", "a".repeat(64)),
                "media_type": "application/vnd.oci.image.manifest.v1+json", "size": 100,
                "stage_tag": "stage-base-amd64-x", "fingerprint": "f", "base": null,
                "result": "built"}},
            "sbom": [], "signed": false, "scan": null, "held": [], "inputs": "i"
        }]
    });
    let odd = prop_oneof![
        Just(serde_json::Value::Null),
        Just(serde_json::json!(-1)),
        Just(serde_json::json!(1e300)),
        Just(serde_json::json!("linux/s390x")),
        Just(serde_json::json!({"a": []})),
        Just(serde_json::json!([[[[1]]]])),
        "[a-zA-Z0-9:/._ -]{0,12}".prop_map(serde_json::Value::String),
    ];
    let path = prop_oneof![
        Just(vec!["schema"]),
        Just(vec!["registry"]),
        Just(vec!["version"]),
        Just(vec!["partial"]),
        Just(vec!["variants"]),
        Just(vec!["variants", "0"]),
        Just(vec!["variants", "0", "name"]),
        Just(vec!["variants", "0", "platforms"]),
        Just(vec!["variants", "0", "platforms", "linux/amd64"]),
        Just(vec!["variants", "0", "platforms", "linux/amd64", "size"]),
        Just(vec!["variants", "0", "platforms", "linux/amd64", "digest"]),
    ];
    let mutated = proptest::collection::vec((path, odd), 0..4).prop_map(move |edits| {
        let mut v = valid.clone();
        for (path, new) in edits {
            if let Some(slot) = path.iter().try_fold(&mut v, |cur, k| match cur {
                serde_json::Value::Object(m) => m.get_mut(*k),
                serde_json::Value::Array(a) => k.parse::<usize>().ok().and_then(|i| a.get_mut(i)),
                _ => None,
            }) {
                *slot = new;
            }
        }
        serde_json::to_string(&v).unwrap()
    });
    let deep = (1usize..5000).prop_map(|d| format!("{}{}", "[".repeat(d), "]".repeat(d)));
    prop_oneof![6 => mutated, 1 => deep, 1 => any::<String>()]
}

#[test]
fn fuzz_metadata_reader_never_panics() {
    let dir = tempfile::tempdir().unwrap();
    let file = camino::Utf8PathBuf::from_path_buf(dir.path().join("meta.json")).unwrap();
    fuzz("release metadata", metadata_text(), |text| {
        std::fs::write(&file, &text).unwrap();
        match agent_images::hjk::release::metadata::Metadata::read(&file) {
            // what is read is what is written back
            Ok(m) => {
                m.write(&file).unwrap();
                let again = agent_images::hjk::release::metadata::Metadata::read(&file).unwrap();
                prop_assert_eq!(m, again);
            }
            Err(e) => prop_assert!(!e.message().contains('\n'), "{text:?}: {e:?}"),
        }
        Ok(())
    });
}
