//! What a build reads, hashed: an edit of a Dockerfile or of a file it COPYs changes the hash,
//! and nothing else does. One hasher for every build we skip when current: ocx stores it as a
//! label on the base it builds (`ocx build`), hjk puts it in the tag of what `resolve --build`
//! builds, and every node of `hjk images build` and `hjk images release` carries it
//! ([`crate::hjk::plan`]).
//!
//! Only what the build can read is hashed: the Dockerfile, `.dockerignore`, and the sources of
//! `COPY`/`ADD` (and of `RUN --mount` binds) that come from the context, minus what
//! `.dockerignore` excludes. A context holding 100k files the Dockerfile never copies costs a
//! few `stat`s. Sources the parser cannot pin down (a `$VAR` in a path) hash the whole context.
//! File contents are hashed, not timestamps, so a `touch` or a `git checkout` back and forth is
//! a no-op. Only regular files are opened: a FIFO, socket or device is recorded by its kind
//! (opening a FIFO would block until someone writes to it).

use crate::fingerprint::{hex, Fingerprint};
use crate::platform::Platform;
use camino::{Utf8Path, Utf8PathBuf};
use globset::{Glob, GlobBuilder, GlobMatcher};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::io::Read;

/// The label carrying the hash on a base ocx built.
pub(crate) const LABEL: &str = "io.agent-images.base-inputs";

/// The hash of everything a build of `dockerfile` in `context` reads.
pub(crate) fn fingerprint(
    dockerfile: &Utf8Path,
    context: &Utf8Path,
    platforms: &[Platform],
) -> String {
    let text = match std::fs::read(dockerfile) {
        Ok(b) => String::from_utf8_lossy(&b).into_owned(),
        Err(e) => format!("unreadable: {e}"),
    };
    of_text(&text, context, platforms)
}

/// [`fingerprint`] of a Dockerfile already read (`text`), for a caller that reads it once for
/// its other facts too ([`crate::hjk::plan`]).
pub(crate) fn of_text(text: &str, context: &Utf8Path, platforms: &[Platform]) -> String {
    let ignore_text = std::fs::read_to_string(context.join(".dockerignore")).unwrap_or_default();
    let ignore = Ignore::parse(&ignore_text);
    let mut files = BTreeMap::new();
    match sources(text) {
        Sources::Paths(paths) => {
            for p in paths {
                collect(context, &p, &ignore, &mut files);
            }
        }
        Sources::Everything => collect(context, ".", &ignore, &mut files),
    }
    let mut f = Fingerprint::new()
        .add("dockerfile", text)
        .add(".dockerignore", &ignore_text)
        .add("platforms", Platform::join(platforms));
    for (path, digest) in &files {
        f = f.add(path, digest);
    }
    f.finish()
}

/// The hash of every file under `dir` (a local devcontainer feature, which the Dev Containers
/// CLI copies whole), by content, with the same rules for links and special files.
pub(crate) fn tree(dir: &Utf8Path) -> String {
    let mut files = BTreeMap::new();
    walk(dir, ".", &Ignore::parse(""), &mut files);
    let mut f = Fingerprint::new();
    for (path, digest) in &files {
        f = f.add(path, digest);
    }
    f.finish()
}

#[derive(Debug, PartialEq, Eq)]
enum Sources {
    /// Paths or globs relative to the context.
    Paths(Vec<String>),
    /// A source could not be pinned down: hash the whole context.
    Everything,
}

/// The context paths the Dockerfile's COPY, ADD and `RUN --mount` read.
fn sources(text: &str) -> Sources {
    let mut paths = Vec::new();
    for line in crate::build::instructions(text) {
        let (word, rest) = line
            .trim()
            .split_once(char::is_whitespace)
            .unwrap_or((line.trim(), ""));
        let word = word.to_ascii_uppercase();
        let rest = rest.trim();
        match word.as_str() {
            "COPY" | "ADD" => {
                let (flags, args) = split_flags(rest);
                if flags.iter().any(|f| f.starts_with("--from=")) {
                    continue;
                }
                let args: Vec<String> = if args.starts_with('[') {
                    match serde_json::from_str(args) {
                        Ok(a) => a,
                        Err(_) => return Sources::Everything,
                    }
                } else {
                    args.split_whitespace().map(String::from).collect()
                };
                let Some((_dest, srcs)) = args.split_last() else {
                    continue;
                };
                for s in srcs {
                    if s.starts_with("<<") {
                        continue; // a heredoc: its text is in the Dockerfile
                    }
                    if word == "ADD" && (s.contains("://") || s.starts_with("git@")) {
                        continue; // remote: not in the context
                    }
                    if s.contains('$') {
                        return Sources::Everything;
                    }
                    paths.push(s.clone());
                }
            }
            "RUN" => {
                let (flags, _) = split_flags(rest);
                for f in flags {
                    let Some(spec) = f.strip_prefix("--mount=") else {
                        continue;
                    };
                    let kv: BTreeMap<&str, &str> = spec
                        .split(',')
                        .filter_map(|p| p.split_once('=').or(Some((p, ""))))
                        .collect();
                    let bind = kv.get("type").is_none_or(|t| *t == "bind");
                    if bind && !kv.contains_key("from") {
                        let src = kv
                            .get("source")
                            .or_else(|| kv.get("src"))
                            .copied()
                            .unwrap_or(".");
                        if src.contains('$') {
                            return Sources::Everything;
                        }
                        paths.push(src.to_string());
                    }
                }
            }
            _ => {}
        }
    }
    Sources::Paths(paths)
}

/// Leading `--flag` words, and the rest.
fn split_flags(rest: &str) -> (Vec<&str>, &str) {
    let mut flags = Vec::new();
    let mut r = rest.trim_start();
    while r.starts_with("--") {
        let end = r.find(char::is_whitespace).unwrap_or(r.len());
        flags.push(&r[..end]);
        r = r[end..].trim_start();
    }
    (flags, r)
}

/// `.dockerignore` as the builders read it: later lines win, `!` re-includes, and a pattern
/// that matches a directory excludes what is under it.
struct Ignore {
    rules: Vec<(GlobMatcher, bool)>,
    has_exceptions: bool,
}

impl Ignore {
    fn parse(text: &str) -> Ignore {
        let mut rules = Vec::new();
        for line in text.lines() {
            let t = line.trim();
            if t.is_empty() || t.starts_with('#') {
                continue;
            }
            let (exception, pat) = match t.strip_prefix('!') {
                Some(p) => (true, p.trim()),
                None => (false, t),
            };
            let pat = clean(pat);
            if pat.is_empty() {
                continue;
            }
            if let Ok(g) = glob(&pat) {
                rules.push((g, exception));
            }
        }
        let has_exceptions = rules.iter().any(|(_, e)| *e);
        Ignore {
            rules,
            has_exceptions,
        }
    }

    fn excluded(&self, rel: &str) -> bool {
        let mut out = false;
        for (g, exception) in &self.rules {
            let hit = g.is_match(rel) || parents(rel).any(|p| g.is_match(p));
            if hit {
                out = !exception;
            }
        }
        out
    }
}

fn glob(pat: &str) -> Result<GlobMatcher, globset::Error> {
    Ok(GlobBuilder::new(pat)
        .literal_separator(true)
        .backslash_escape(true)
        .build()
        .or_else(|_| Glob::new(&globset::escape(pat)))?
        .compile_matcher())
}

/// `a/b/c` -> `a`, `a/b`.
fn parents(rel: &str) -> impl Iterator<Item = &str> {
    rel.match_indices('/').map(move |(i, _)| &rel[..i])
}

/// A context-relative path as the builders clean it: no leading `/` or `./`, no `.` parts.
fn clean(p: &str) -> String {
    let parts: Vec<&str> = p
        .split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .collect();
    parts.join("/")
}

fn is_glob(p: &str) -> bool {
    p.contains(['*', '?', '['])
}

/// Adds the files `src` names (a path or a glob, relative to the context) with their digests.
fn collect(context: &Utf8Path, src: &str, ignore: &Ignore, files: &mut BTreeMap<String, String>) {
    let src = clean(src);
    if src.split('/').any(|c| c == "..") {
        files.insert(format!("outside:{src}"), String::new());
        return;
    }
    if !is_glob(&src) {
        walk(context, &src, ignore, files);
        return;
    }
    // list from the literal part of the pattern, as deep as the pattern reaches; hash what
    // matches (a matching directory brings its whole tree)
    let parts: Vec<&str> = src.split('/').collect();
    let literal: Vec<&str> = parts.iter().copied().take_while(|c| !is_glob(c)).collect();
    let depth = if src.contains("**") {
        usize::MAX
    } else {
        parts.len() - literal.len()
    };
    let Ok(matcher) = glob(&src) else {
        walk(context, ".", ignore, files);
        return;
    };
    let mut found = Vec::new();
    list(context, &literal.join("/"), depth, ignore, &mut found);
    for rel in found {
        if matcher.is_match(&rel) {
            walk(context, &rel, ignore, files);
        }
    }
    files.insert(format!("glob:{src}"), String::new());
}

/// The paths up to `depth` levels below `rel`, not ignored.
fn list(context: &Utf8Path, rel: &str, depth: usize, ignore: &Ignore, out: &mut Vec<String>) {
    if depth == 0 {
        return;
    }
    let Ok(entries) = std::fs::read_dir(context.join(rel)) else {
        return;
    };
    for e in entries.flatten() {
        let Ok(name) = e.file_name().into_string() else {
            continue;
        };
        let child = if rel.is_empty() {
            name
        } else {
            format!("{rel}/{name}")
        };
        if ignore.excluded(&child) && !ignore.has_exceptions {
            continue;
        }
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            list(context, &child, depth - 1, ignore, out);
        }
        out.push(child);
    }
}

/// Adds `rel` (a file, a symlink, or a directory's tree) unless ignored.
fn walk(context: &Utf8Path, rel: &str, ignore: &Ignore, files: &mut BTreeMap<String, String>) {
    let rel = clean(rel);
    let path: Utf8PathBuf = if rel.is_empty() {
        context.to_owned()
    } else {
        context.join(&rel)
    };
    if !rel.is_empty() && ignore.excluded(&rel) && !ignore.has_exceptions {
        return;
    }
    let meta = match std::fs::symlink_metadata(&path) {
        Ok(m) => m,
        Err(_) => {
            files.insert(rel, "missing".into());
            return;
        }
    };
    let ft = meta.file_type();
    if ft.is_dir() {
        let Ok(entries) = std::fs::read_dir(&path) else {
            files.insert(rel, "unreadable".into());
            return;
        };
        let mut names: Vec<String> = entries
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .collect();
        names.sort();
        for n in names {
            let child = if rel.is_empty() {
                n
            } else {
                format!("{rel}/{n}")
            };
            walk(context, &child, ignore, files);
        }
        return;
    }
    if ignore.excluded(&rel) {
        return;
    }
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};
    let digest = if ft.is_symlink() {
        format!(
            "link:{}",
            std::fs::read_link(&path)
                .map(|t| t.to_string_lossy().into_owned())
                .unwrap_or_default()
        )
    } else if ft.is_file() {
        format!(
            "{:o}:{}",
            meta.permissions().mode() & 0o7777,
            file_sha256(&path)
        )
    } else if ft.is_fifo() {
        "fifo".into()
    } else if ft.is_socket() {
        "socket".into()
    } else {
        "device".into()
    };
    files.insert(rel, digest);
}

fn file_sha256(path: &Utf8Path) -> String {
    let Ok(mut f) = std::fs::File::open(path) else {
        return "unreadable".into();
    };
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        match f.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => h.update(&buf[..n]),
            Err(_) => return "unreadable".into(),
        }
    }
    hex(&h.finalize())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx() -> (tempfile::TempDir, Utf8PathBuf) {
        let t = tempfile::tempdir().unwrap();
        let p = Utf8PathBuf::from_path_buf(t.path().to_owned()).unwrap();
        (t, p)
    }

    fn fp(c: &Utf8Path) -> String {
        fingerprint(&c.join("Dockerfile"), c, &[Platform::LinuxAmd64])
    }

    #[test]
    fn sources_of_copy_add_and_bind_mounts() {
        let text = "FROM x AS a\nCOPY --chown=1:1 a.txt b/ /dst/\nCOPY --from=a /x /y\n\
                    ADD https://example.com/f /f\nadd [\"c d\", \"/e\"]\nCOPY \\\n  # note\n  f* /g/\n\
                    RUN --mount=type=bind,source=req.txt,target=/r pip\nRUN --mount=type=cache,target=/c x\n\
                    COPY <<EOF /h\nEOF\n";
        assert_eq!(
            sources(text),
            Sources::Paths(
                ["a.txt", "b/", "c d", "f*", "req.txt"]
                    .map(String::from)
                    .to_vec()
            )
        );
        assert_eq!(sources("COPY ${SRC} /x\n"), Sources::Everything);
    }

    #[test]
    fn an_edit_of_a_copied_file_changes_it_and_other_files_do_not() {
        let (_t, c) = ctx();
        std::fs::write(c.join("Dockerfile"), "FROM x\nCOPY app/ /app/\n").unwrap();
        std::fs::create_dir_all(c.join("app/sub")).unwrap();
        std::fs::create_dir_all(c.join("big")).unwrap();
        std::fs::write(c.join("app/sub/a.txt"), "1").unwrap();
        std::fs::write(c.join("big/unrelated"), "1").unwrap();
        let first = fp(&c);
        std::fs::write(c.join("big/unrelated"), "2").unwrap();
        assert_eq!(fp(&c), first, "not copied");
        std::fs::write(c.join("app/sub/a.txt"), "2").unwrap();
        assert_ne!(fp(&c), first);
        std::fs::write(c.join("app/sub/a.txt"), "1").unwrap();
        assert_eq!(fp(&c), first, "content, not timestamps");
        std::fs::write(c.join("Dockerfile"), "FROM x\nCOPY app/ /app/\nRUN true\n").unwrap();
        assert_ne!(fp(&c), first);
    }

    /// A FIFO in a copied directory is recorded by kind, never opened (which would block the
    /// no-op until someone wrote to it).
    #[test]
    fn a_fifo_is_recorded_not_opened() {
        let (_t, c) = ctx();
        std::fs::write(c.join("Dockerfile"), "FROM x\nCOPY app/ /app/\n").unwrap();
        std::fs::create_dir_all(c.join("app")).unwrap();
        let fifo = std::ffi::CString::new(c.join("app/pipe").as_str()).unwrap();
        assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o644) }, 0);
        let (tx, rx) = std::sync::mpsc::channel();
        let dir = c.clone();
        std::thread::spawn(move || tx.send(fp(&dir)).unwrap());
        let first = rx
            .recv_timeout(std::time::Duration::from_secs(20))
            .expect("hashing returned with a FIFO in the context");
        std::fs::remove_file(c.join("app/pipe")).unwrap();
        std::fs::write(c.join("app/pipe"), "").unwrap();
        assert_ne!(fp(&c), first, "a FIFO and a file differ");
        assert_eq!(tree(&c.join("app")), tree(&c.join("app")));
    }

    #[test]
    fn dockerignore_is_honored_with_exceptions_and_globs() {
        let (_t, c) = ctx();
        std::fs::write(
            c.join("Dockerfile"),
            "FROM x\nCOPY . /src\nCOPY *.md /docs/\n",
        )
        .unwrap();
        std::fs::create_dir_all(c.join("node_modules/x")).unwrap();
        std::fs::create_dir_all(c.join("logs")).unwrap();
        std::fs::write(
            c.join(".dockerignore"),
            "node_modules\n**/*.log\n!keep.log\n",
        )
        .unwrap();
        std::fs::write(c.join("node_modules/x/i.js"), "1").unwrap();
        std::fs::write(c.join("logs/a.log"), "1").unwrap();
        std::fs::write(c.join("keep.log"), "1").unwrap();
        std::fs::write(c.join("README.md"), "1").unwrap();
        let first = fp(&c);
        std::fs::write(c.join("node_modules/x/i.js"), "2").unwrap();
        std::fs::write(c.join("logs/a.log"), "2").unwrap();
        assert_eq!(fp(&c), first, "ignored files do not count");
        std::fs::write(c.join("keep.log"), "2").unwrap();
        let second = fp(&c);
        assert_ne!(second, first, "an exception counts");
        std::fs::write(c.join("README.md"), "2").unwrap();
        assert_ne!(fp(&c), second);
        let ig = Ignore::parse("/build/\n*.tmp\n");
        assert!(ig.excluded("build/x/y") && ig.excluded("a.tmp") && !ig.excluded("d/a.tmp"));
    }
}
