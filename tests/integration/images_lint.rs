//! Lint for the Headjack image hierarchy under `images/`: hadolint (an ignored test without it,
//! which `make test` runs), and our own supply-chain checks, which need no tool and always run. Each check is also run against a small bad Dockerfile, so it is known
//! to be able to fail.

use crate::util::dockerfile::{images_dir, parse_dockerfile, variants, Instruction};
use crate::util::{need, Need};
use regex::Regex;
use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

/// (display name, text) of every Dockerfile listed in variants.yaml.
fn dockerfiles() -> Vec<(String, String)> {
    variants()
        .iter()
        .map(|v| {
            let rel = format!("images/{}/Dockerfile", v.dir);
            let text = std::fs::read_to_string(images_dir().join(&v.dir).join("Dockerfile"))
                .unwrap_or_else(|e| panic!("{rel}: {e}"));
            (rel, text)
        })
        .collect()
}

/// Defaults of the `ARG NAME=value` instructions.
fn arg_defaults(insts: &[Instruction]) -> Vec<(String, String)> {
    insts
        .iter()
        .filter(|i| i.keyword == "ARG")
        .filter_map(|i| {
            let (k, v) = i.args.split_once('=')?;
            Some((k.trim().to_string(), v.trim().trim_matches('"').to_string()))
        })
        .collect()
}

/// Shell commands of a RUN body, split on `&&`, `||`, `;` and `|`.
fn shell_commands(body: &str) -> Vec<&str> {
    let sep = Regex::new(r"&&|\|\||;|\|").unwrap();
    sep.split(body)
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .collect()
}

// ---------------------------------------------------------------------------------------------
// check: every FROM is `FROM ${BASE_IMAGE}`, after `ARG BASE_IMAGE=<default>`

fn check_from_base_image(text: &str) -> Vec<String> {
    let insts = parse_dockerfile(text);
    let mut errors = Vec::new();
    let froms: Vec<&Instruction> = insts.iter().filter(|i| i.keyword == "FROM").collect();
    if froms.is_empty() {
        errors.push("no FROM instruction".to_string());
    }
    for f in &froms {
        let image = f
            .args
            .split_whitespace()
            .find(|t| !t.starts_with("--"))
            .unwrap_or("");
        if image != "${BASE_IMAGE}" {
            errors.push(format!(
                "line {}: FROM {} must be FROM ${{BASE_IMAGE}} so hjk can chain variants",
                f.line, f.args
            ));
        }
    }
    if let Some(first) = froms.first() {
        let declared = insts.iter().take_while(|i| i.line < first.line).any(|i| {
            i.keyword == "ARG"
                && i.args
                    .strip_prefix("BASE_IMAGE=")
                    .is_some_and(|v| !v.trim_matches('"').is_empty())
        });
        if !declared {
            errors.push(format!(
                "line {}: FROM needs a preceding ARG BASE_IMAGE=<default image>",
                first.line
            ));
        }
    }
    errors
}

// ---------------------------------------------------------------------------------------------
// check: every curl/wget download is verified later in the same RUN

fn check_downloads_verified(text: &str) -> Vec<String> {
    // curl/wget in command position (not, say, in an apt-get package list)
    let download = Regex::new(
        r"(?:^|&&|\|\||;|\||\(|\bthen\b|\bdo\b|\belse\b)\s*(?:[A-Za-z_][A-Za-z0-9_]*=\S*\s+)*(curl|wget)\b",
    )
    .unwrap();
    let piped_to_shell = Regex::new(r"^[^&;]*?\|\s*(?:sudo\s+)?(?:ba|z|da)?sh\b").unwrap();
    let sha_check = Regex::new(r"\bsha(?:256|512)sum\s+(?:-\S*\s+)*(?:-c|--check)\b").unwrap();
    let gpg_fingerprint = Regex::new(r"\bgpg\b[^&;]*--show-keys").unwrap();
    let mut errors = Vec::new();
    for i in parse_dockerfile(text) {
        if i.keyword == "ADD" && i.args.contains("://") && !i.args.contains("--checksum=") {
            errors.push(format!(
                "line {}: ADD of a URL without --checksum=sha256:...",
                i.line
            ));
        }
        if i.keyword != "RUN" {
            continue;
        }
        for m in download.captures_iter(&i.args) {
            let tool = m.get(1).unwrap();
            let rest = &i.args[tool.end()..];
            if piped_to_shell.is_match(rest) {
                errors.push(format!(
                    "line {}: {} output is piped into a shell",
                    i.line,
                    tool.as_str()
                ));
                continue;
            }
            let gpg_checked = gpg_fingerprint.is_match(rest) && rest.contains("!=");
            if !sha_check.is_match(rest) && !gpg_checked {
                errors.push(format!(
                    "line {}: {} download is not followed by `sha256sum -c` (or a gpg --show-keys fingerprint check) in the same RUN",
                    i.line,
                    tool.as_str()
                ));
            }
        }
    }
    errors
}

// ---------------------------------------------------------------------------------------------
// check: no `latest`, every image reference tagged, every npm package pinned

/// A registry reference with a tag or a digest (`name:tag`, `name@sha256:...`, or both).
fn image_ref_is_pinned(r: &str) -> bool {
    let digest = Regex::new(r"@sha256:[0-9a-f]{64}$").unwrap();
    if digest.is_match(r) {
        return true;
    }
    let last = r.rsplit('/').next().unwrap_or(r);
    match last.split_once(':') {
        Some((name, tag)) => {
            !name.is_empty() && !tag.is_empty() && !tag.eq_ignore_ascii_case("latest")
        }
        None => false,
    }
}

fn check_pinned_references(text: &str) -> Vec<String> {
    let insts = parse_dockerfile(text);
    let args = arg_defaults(&insts);
    let latest = Regex::new(r"(?i)[:@]latest\b").unwrap();
    let npm_install = Regex::new(r"^(?:\S+=\S+\s+)*npm\s+(?:install|i|add)\b(.*)$").unwrap();
    let npx = Regex::new(r"^(?:\S+=\S+\s+)*npx\b(.*)$").unwrap();
    let npm_spec = Regex::new(r"^(?:@[a-z0-9._-]+/)?[a-z0-9._-]+@(.+)$").unwrap();
    let exact = Regex::new(r"^\d+\.\d+\.\d+(?:-[0-9A-Za-z.-]+)?$").unwrap();
    let var = Regex::new(r"^\$\{?([A-Za-z_][A-Za-z0-9_]*)\}?$").unwrap();
    let resolve = |v: &str| -> Option<String> {
        match var.captures(v) {
            Some(c) => args
                .iter()
                .find(|(k, _)| k == &c[1])
                .map(|(_, d)| d.clone()),
            None => Some(v.to_string()),
        }
    };
    let mut errors = Vec::new();
    for i in &insts {
        if latest.is_match(&i.args) {
            errors.push(format!(
                "line {}: `latest` is not a pinned version: {}",
                i.line, i.args
            ));
        }
        match i.keyword.as_str() {
            "ARG" => {
                if let Some(v) = i.args.strip_prefix("BASE_IMAGE=") {
                    let v = v.trim_matches('"');
                    if !image_ref_is_pinned(v) {
                        errors.push(format!(
                            "line {}: BASE_IMAGE default {v:?} is not pinned to a tag or digest",
                            i.line
                        ));
                    }
                }
            }
            "FROM" => {
                let image = i
                    .args
                    .split_whitespace()
                    .find(|t| !t.starts_with("--"))
                    .unwrap_or("");
                if !image.contains('$') && image != "scratch" && !image_ref_is_pinned(image) {
                    errors.push(format!(
                        "line {}: image {image:?} is not pinned to a tag or digest",
                        i.line
                    ));
                }
            }
            "COPY" => {
                for from in i
                    .args
                    .split_whitespace()
                    .filter_map(|t| t.strip_prefix("--from="))
                {
                    let from = from.split(',').next().unwrap_or(from);
                    // a bare word is a build stage; a registry path or a tag makes an image
                    if (from.contains('/') || from.contains(':')) && !image_ref_is_pinned(from) {
                        errors.push(format!(
                            "line {}: image {from:?} is not pinned to a tag or digest",
                            i.line
                        ));
                    }
                }
            }
            _ => {}
        }
        if i.keyword != "RUN" {
            continue;
        }
        for cmd in shell_commands(&i.args) {
            let specs: Vec<&str> = if let Some(c) = npm_install.captures(cmd) {
                c.get(1)
                    .unwrap()
                    .as_str()
                    .split_whitespace()
                    .filter(|t| !t.starts_with('-'))
                    .collect()
            } else if let Some(c) = npx.captures(cmd) {
                // the package is npx's first non-option argument
                c.get(1)
                    .unwrap()
                    .as_str()
                    .split_whitespace()
                    .filter(|t| !t.starts_with('-'))
                    .take(1)
                    .collect()
            } else {
                continue;
            };
            for spec in specs {
                let spec = spec.trim_matches(|c| c == '"' || c == '\'');
                let version = npm_spec
                    .captures(spec)
                    .and_then(|c| resolve(c.get(1).unwrap().as_str()));
                match version {
                    Some(v) if exact.is_match(&v) => {}
                    Some(v) => errors.push(format!(
                        "line {}: npm package {spec} resolves to {v:?}, not an exact version",
                        i.line
                    )),
                    None => errors.push(format!(
                        "line {}: npm package {spec} is not pinned to an exact version (pkg@x.y.z)",
                        i.line
                    )),
                }
            }
        }
    }
    errors
}

// ---------------------------------------------------------------------------------------------
// check: arch-specific URLs use ${TARGETARCH} or a variable derived from it

/// Variables a RUN derives from TARGETARCH: assigned from an expression that mentions one, or
/// assigned inside a `case` on one.
fn arch_derived_vars(body: &str) -> BTreeSet<String> {
    let assign =
        Regex::new(r#"(?:^|[\s;&|(])([A-Za-z_][A-Za-z0-9_]*)=("[^"]*"|'[^']*'|[^\s;&|)]*)"#)
            .unwrap();
    let case = Regex::new(r#"\bcase\s+"?\$\{?([A-Za-z_][A-Za-z0-9_]*)[^\s]*\s+in\b(.*?)\besac\b"#)
        .unwrap();
    let mut derived: BTreeSet<String> = ["TARGETARCH".to_string()].into();
    let mentions = |expr: &str, set: &BTreeSet<String>| {
        set.iter()
            .any(|v| expr.contains(&format!("${v}")) || expr.contains(&format!("${{{v}")))
    };
    loop {
        let before = derived.len();
        for c in assign.captures_iter(body) {
            if mentions(&c[2], &derived) {
                derived.insert(c[1].to_string());
            }
        }
        for c in case.captures_iter(body) {
            if derived.contains(&c[1]) {
                for a in assign.captures_iter(&c[2]) {
                    derived.insert(a[1].to_string());
                }
            }
        }
        if derived.len() == before {
            return derived;
        }
    }
}

fn check_arch_urls(text: &str) -> Vec<String> {
    let url = Regex::new(r#"https?://[^\s"'<>]+"#).unwrap();
    let literal_arch =
        Regex::new(r"(?i)(amd64|arm64|aarch64|x86_64|x86-64|\bx64\b|armv[67]l?|armhf|i[36]86|ppc64le|s390x|riscv64)")
            .unwrap();
    let var_ref = Regex::new(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)").unwrap();
    let archy = Regex::new(r"(?i)arch|triple|platform").unwrap();
    let mut errors = Vec::new();
    for i in parse_dockerfile(text) {
        if i.keyword != "RUN" && i.keyword != "ADD" {
            continue;
        }
        let derived = arch_derived_vars(&i.args);
        for u in url.find_iter(&i.args).map(|m| m.as_str()) {
            // ${VAR} names are not literal architecture strings
            let literal = var_ref.replace_all(u, "");
            if let Some(m) = literal_arch.find(&literal) {
                errors.push(format!(
                    "line {}: URL {u} hard-codes the architecture {:?}; use ${{TARGETARCH}} or a variable derived from it",
                    i.line,
                    m.as_str()
                ));
            }
            if u.contains("$(") {
                errors.push(format!(
                    "line {}: URL {u} computes part of itself with $(...); derive it from ${{TARGETARCH}}",
                    i.line
                ));
            }
            for v in var_ref.captures_iter(u) {
                if archy.is_match(&v[1]) && !derived.contains(&v[1]) {
                    errors.push(format!(
                        "line {}: URL {u} uses ${} which is not derived from ${{TARGETARCH}}",
                        i.line, &v[1]
                    ));
                }
            }
        }
    }
    errors
}

// ---------------------------------------------------------------------------------------------
// tests

fn assert_all_clean(check: fn(&str) -> Vec<String>) {
    let mut failures = Vec::new();
    for (name, text) in dockerfiles() {
        for e in check(&text) {
            failures.push(format!("{name}: {e}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

fn assert_flags(check: fn(&str) -> Vec<String>, bad: &str, needle: &str) {
    let errors = check(bad);
    assert!(
        errors.iter().any(|e| e.contains(needle)),
        "expected an error containing {needle:?} for:\n{bad}\ngot: {errors:#?}"
    );
}

#[test]
#[ignore = "needs hadolint: scripts/install-tools.sh test, then make test"]
fn hadolint_passes() {
    need(&[Need::Hadolint]);
    let hadolint = which::which("hadolint").unwrap();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut cmd = Command::new(&hadolint);
    cmd.current_dir(root)
        .args(["--no-color", "--config", "images/.hadolint.yaml"]);
    for v in variants() {
        cmd.arg(format!("images/{}/Dockerfile", v.dir));
    }
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("running {}: {e}", hadolint.display()));
    assert!(
        out.status.success(),
        "hadolint failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn variant_graph_matches_the_dockerfiles() {
    let vs = variants();
    let digest = Regex::new(r"@sha256:[0-9a-f]{64}$").unwrap();
    assert_eq!(vs[0].name, "base", "the first variant is the root");
    for (i, v) in vs.iter().enumerate() {
        if let Some(p) = &v.parent {
            assert!(
                vs[..i].iter().any(|o| &o.name == p),
                "variant {}'s parent {p} is not declared before it",
                v.name
            );
        }
        let text = std::fs::read_to_string(images_dir().join(&v.dir).join("Dockerfile"))
            .unwrap_or_else(|e| panic!("variant {}: {e}", v.name));
        let default = arg_defaults(&parse_dockerfile(&text))
            .into_iter()
            .find(|(k, _)| k == "BASE_IMAGE")
            .map(|(_, d)| d)
            .unwrap_or_else(|| panic!("variant {}: no ARG BASE_IMAGE default", v.name));
        match &v.parent {
            // a child builds FROM its parent: the default is the parent's published tag
            Some(p) => assert_eq!(
                default,
                format!("ghcr.io/gilmanlab/headjack:{p}"),
                "variant {}'s BASE_IMAGE default",
                v.name
            ),
            // the root starts from a digest, so its builds are reproducible
            None => assert!(
                digest.is_match(&default),
                "root variant {} must pin BASE_IMAGE by digest, got {default}",
                v.name
            ),
        }
    }
    // every Dockerfile under images/ belongs to a declared variant
    let dirs: BTreeSet<String> = vs.iter().map(|v| v.dir.clone()).collect();
    for entry in std::fs::read_dir(images_dir()).unwrap() {
        let entry = entry.unwrap();
        if entry.path().join("Dockerfile").is_file() {
            let name = entry.file_name().to_string_lossy().into_owned();
            assert!(
                dirs.contains(&name),
                "images/{name}/Dockerfile is not listed in variants.yaml"
            );
        }
    }
}

#[test]
fn every_dockerfile_has_oci_labels_and_version_arg() {
    for (name, text) in dockerfiles() {
        for label in ["title", "description", "source", "licenses", "version"] {
            assert!(
                text.contains(&format!("org.opencontainers.image.{label}=")),
                "{name}: missing label org.opencontainers.image.{label}"
            );
        }
        assert!(
            text.contains("ARG VERSION=dev"),
            "{name}: missing ARG VERSION=dev"
        );
    }
}

#[test]
fn every_from_is_the_base_image_arg() {
    assert_all_clean(check_from_base_image);
    let good = "ARG BASE_IMAGE=ubuntu:24.04\nFROM ${BASE_IMAGE}\nRUN true\n";
    assert_eq!(check_from_base_image(good), Vec::<String>::new());
    assert_flags(
        check_from_base_image,
        "FROM ubuntu:24.04\n",
        "must be FROM ${BASE_IMAGE}",
    );
    assert_flags(
        check_from_base_image,
        "FROM ${BASE_IMAGE}\n",
        "preceding ARG BASE_IMAGE",
    );
    assert_flags(
        check_from_base_image,
        "FROM ${BASE_IMAGE}\nARG BASE_IMAGE=ubuntu:24.04\n",
        "preceding ARG BASE_IMAGE",
    );
    assert_flags(
        check_from_base_image,
        "ARG BASE_IMAGE=ubuntu:24.04\nFROM ${BASE_IMAGE} AS build\nFROM debian:12\n",
        "FROM debian:12",
    );
}

#[test]
fn every_download_is_verified_in_the_same_run() {
    assert_all_clean(check_downloads_verified);
    let good = "RUN curl -fsSLo /tmp/x https://example.com/x \\\n && echo \"abc  /tmp/x\" | sha256sum -c -\n";
    assert_eq!(check_downloads_verified(good), Vec::<String>::new());
    // apt-get installing the curl package is not a download
    let apt = "RUN apt-get install -y --no-install-recommends ca-certificates curl wget\n";
    assert_eq!(check_downloads_verified(apt), Vec::<String>::new());
    assert_flags(
        check_downloads_verified,
        "RUN curl -fsSLo /tmp/x https://example.com/x && tar -xf /tmp/x\n",
        "not followed by `sha256sum -c`",
    );
    // the check must come after the download, in the same RUN
    assert_flags(
        check_downloads_verified,
        "RUN echo \"abc  /tmp/x\" | sha256sum -c - && wget -O /tmp/x https://example.com/x\n",
        "wget download is not followed",
    );
    assert_flags(
        check_downloads_verified,
        "RUN wget -O /tmp/x https://example.com/x\nRUN echo \"abc  /tmp/x\" | sha256sum -c -\n",
        "wget download is not followed",
    );
    assert_flags(
        check_downloads_verified,
        "RUN curl -fsSL https://example.com/install.sh | bash && echo \"abc  x\" | sha256sum -c -\n",
        "piped into a shell",
    );
    assert_flags(
        check_downloads_verified,
        "ADD https://example.com/x /x\n",
        "ADD of a URL",
    );
    // a key download passes only with a fingerprint comparison after it
    let key_ok = "RUN curl -fsSLo k.asc https://example.com/gpg \\\n && fpr=\"$(gpg --with-colons --show-keys k.asc | awk -F: '$1==\"fpr\"{print $10; exit}')\" \\\n && if [ \"$fpr\" != \"9DC858229FC7DD38854AE2D88D81803C0EBFCD88\" ]; then exit 1; fi\n";
    assert_eq!(check_downloads_verified(key_ok), Vec::<String>::new());
    assert_flags(
        check_downloads_verified,
        "RUN curl -fsSLo k.asc https://example.com/gpg && gpg --dearmor -o /k.gpg k.asc\n",
        "not followed by `sha256sum -c`",
    );
}

#[test]
fn no_latest_and_every_reference_pinned() {
    assert_all_clean(check_pinned_references);
    let good = "ARG BASE_IMAGE=ghcr.io/o/i:base\nARG CLI_VERSION=1.2.3\nFROM ${BASE_IMAGE}\n\
                RUN npm install -g --no-fund \"@scope/cli@${CLI_VERSION}\" other@4.5.6 && npx -y tool@1.0.0 --help\n";
    assert_eq!(check_pinned_references(good), Vec::<String>::new());
    assert_flags(
        check_pinned_references,
        "ARG BASE_IMAGE=ubuntu:latest\n",
        "`latest`",
    );
    assert_flags(
        check_pinned_references,
        "ARG BASE_IMAGE=ubuntu\n",
        "not pinned to a tag or digest",
    );
    assert_flags(
        check_pinned_references,
        "ARG BASE_IMAGE=localhost:5000/ubuntu\n",
        "not pinned to a tag or digest",
    );
    assert_flags(
        check_pinned_references,
        "FROM ubuntu\n",
        "not pinned to a tag or digest",
    );
    assert_flags(
        check_pinned_references,
        "COPY --from=docker.io/library/busybox /bin/sh /sh\n",
        "not pinned to a tag or digest",
    );
    assert_flags(
        check_pinned_references,
        "RUN npm install -g @openai/codex@latest\n",
        "`latest`",
    );
    assert_flags(
        check_pinned_references,
        "RUN npm install --global @google/gemini-cli\n",
        "not pinned to an exact version",
    );
    assert_flags(
        check_pinned_references,
        "RUN npm i -g typescript@^5.4.0\n",
        "not an exact version",
    );
    assert_flags(
        check_pinned_references,
        "ARG CLI_VERSION=next\nRUN npm install -g \"cli@${CLI_VERSION}\"\n",
        "not an exact version",
    );
    assert_flags(
        check_pinned_references,
        "RUN npx create-thing\n",
        "not pinned",
    );
}

#[test]
fn arch_specific_urls_follow_targetarch() {
    assert_all_clean(check_arch_urls);
    let good = "ARG TARGETARCH\nRUN arch=\"${TARGETARCH:-$(dpkg --print-architecture)}\" \\\n \
                && case \"${arch}\" in amd64) triple=x86_64-unknown-linux-gnu ;; arm64) triple=aarch64-unknown-linux-gnu ;; esac \\\n \
                && curl -o r https://example.com/${triple}/rustup-init \\\n \
                && curl -o g https://example.com/gh_linux_${arch}.tar.gz \\\n \
                && curl -o y \"https://example.com/yq_linux_${TARGETARCH}\"\n";
    assert_eq!(check_arch_urls(good), Vec::<String>::new());
    assert_flags(
        check_arch_urls,
        "RUN curl -o g https://example.com/gh_2.0.0_linux_amd64.tar.gz\n",
        "hard-codes the architecture \"amd64\"",
    );
    assert_flags(
        check_arch_urls,
        "RUN curl -o n https://nodejs.org/dist/v22.0.0/node-v22.0.0-linux-x64.tar.gz\n",
        "hard-codes the architecture \"x64\"",
    );
    assert_flags(
        check_arch_urls,
        "RUN ARCH=$(uname -m) && curl -o r https://example.com/${ARCH}/rustup-init\n",
        "not derived from ${TARGETARCH}",
    );
    assert_flags(
        check_arch_urls,
        "RUN curl -o r https://example.com/$(uname -m)/rustup-init\n",
        "$(...)",
    );
}

/// dind chooses its iptables backend at start: the script and the docker.service drop-in that
/// runs it are copied where the drop-in expects them, and no backend is fixed at build time.
#[test]
fn dind_iptables_choice_is_wired_into_docker_service() {
    use std::os::unix::fs::PermissionsExt;
    let dir = images_dir().join("dind");
    let text = std::fs::read_to_string(dir.join("Dockerfile")).unwrap();
    let insts = parse_dockerfile(&text);
    let copies: Vec<&str> = insts
        .iter()
        .filter(|i| i.keyword == "COPY")
        .map(|i| i.args.as_str())
        .collect();
    assert!(
        copies.contains(&"headjack-iptables-backend /usr/local/sbin/headjack-iptables-backend"),
        "{copies:?}"
    );
    assert!(
        copies.contains(&"10-headjack-iptables.conf /etc/systemd/system/docker.service.d/10-headjack-iptables.conf"),
        "{copies:?}"
    );
    let dropin = std::fs::read_to_string(dir.join("10-headjack-iptables.conf")).unwrap();
    let lines: Vec<&str> = dropin
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .collect();
    assert_eq!(
        lines,
        [
            "[Service]",
            "ExecStartPre=/usr/local/sbin/headjack-iptables-backend"
        ]
    );
    let script = dir.join("headjack-iptables-backend");
    let mode = script.metadata().unwrap().permissions().mode();
    assert_eq!(
        mode & 0o755,
        0o755,
        "COPY keeps the mode: the script must be executable"
    );
    assert!(Command::new("sh")
        .arg("-n")
        .arg(&script)
        .status()
        .unwrap()
        .success());
    if let Ok(sc) = which::which("shellcheck") {
        let out = Command::new(sc).arg(&script).output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
    assert!(
        !Regex::new(r"update-alternatives\s+--set\s+ip6?tables")
            .unwrap()
            .is_match(&text),
        "dind must not fix an iptables backend at build time"
    );
}

/// Docker's apt repository is Ubuntu's, picked by the Ubuntu codename, so Ubuntu derivatives
/// (whose $ID is not `ubuntu`) get a URL that exists.
#[test]
fn dind_docker_repo_works_on_ubuntu_derivatives() {
    let text = std::fs::read_to_string(images_dir().join("dind/Dockerfile")).unwrap();
    let urls: Vec<&str> = Regex::new(r"https://download\.docker\.com/\S+")
        .unwrap()
        .find_iter(&text)
        .map(|m| m.as_str())
        .collect();
    assert_eq!(urls.len(), 2, "{urls:?}");
    for u in urls {
        assert!(
            u.starts_with("https://download.docker.com/linux/ubuntu"),
            "{u}"
        );
    }
    assert!(text.contains(r#"${UBUNTU_CODENAME:-${VERSION_CODENAME}}"#));
    assert!(!text.contains("${ID}") && !text.contains("VERSION_ID"));
}
