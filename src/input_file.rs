//! The one reader of the files a user names or a project holds: config files (`ocx.json`,
//! Headjack's `config.yaml`), `variants.yaml`, devcontainer.json, release metadata files, and
//! `--creds-stdin`. Each is untrusted input, so each is read the same way:
//! - it must be a regular file (or a link to one). A dangling or looping link is an error, not
//!   "no file" (defaults would silently apply); a FIFO, device, socket or directory is refused by
//!   name before anything blocks on it (opening a FIFO waits for a writer forever, and signals
//!   cannot interrupt that open). The file is opened non-blocking and checked again, so one
//!   swapped in after the check is refused too;
//! - it is read up to a limit no real file reaches ([`Limit`]), said in the error;
//! - YAML aliases are expanded within a budget before the file is deserialized
//!   ([`parse_yaml`]; serde_yaml_ng limits alias *jumps*, not what they expand to, so one 1 MB
//!   anchored string aliased 2,000 times took 2.2 GB), and JSON nesting is bounded before a
//!   recursive parser sees it ([`check_json_depth`]; json5's parser overflowed the stack on a
//!   devcontainer.json nested 8,000 levels deep).
//!
//! Every refusal is one line (exit 2) naming the file and what to do.

use crate::error::UserError;
use camino::Utf8Path;
use std::io::Read;

const KIB: u64 = 1 << 10;
const MIB: u64 = 1 << 20;

/// What a file is and the most it may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Limit {
    /// What the file is, for messages ("release metadata file").
    pub what: &'static str,
    pub max: u64,
}

/// A release metadata file: a few KB per variant.
pub(crate) const METADATA: Limit = Limit {
    what: "a release metadata file",
    max: 16 * MIB,
};
/// `variants.yaml`: a few lines per variant.
pub(crate) const VARIANTS: Limit = Limit {
    what: "variants.yaml",
    max: MIB,
};
/// A devcontainer.json.
pub(crate) const DEVCONTAINER: Limit = Limit {
    what: "a devcontainer.json",
    max: MIB,
};
/// A config file (`ocx.json`, Headjack's `config.yaml`), or an engine's login file.
pub(crate) const CONFIG: Limit = Limit {
    what: "a config file",
    max: MIB,
};
/// `--creds-stdin`: `user:password` (a registry token is a few KB at most).
pub(crate) const CREDS: Limit = Limit {
    what: "--creds-stdin",
    max: 64 * KIB,
};

/// The deepest nesting of arrays and objects a JSON or YAML input may have.
pub(crate) const MAX_DEPTH: usize = 64;

/// What YAML aliases may expand to, in bytes of scalars plus 16 per node.
pub(crate) const MAX_YAML_EXPANSION: usize = 16 << 20;

/// `n` bytes as a user reads it: `64 KiB`, `16 MiB`.
pub(crate) fn size(n: u64) -> String {
    if n >= MIB && n % MIB == 0 {
        format!("{} MiB", n / MIB)
    } else if n >= KIB && n % KIB == 0 {
        format!("{} KiB", n / KIB)
    } else {
        format!("{n} bytes")
    }
}

/// What is at a path, when it is not a regular file: `a FIFO (named pipe)`, `a directory`.
fn kind_of(t: std::fs::FileType) -> Option<&'static str> {
    use std::os::unix::fs::FileTypeExt;
    Some(if t.is_file() {
        return None;
    } else if t.is_dir() {
        "a directory"
    } else if t.is_fifo() {
        "a FIFO (named pipe)"
    } else if t.is_char_device() {
        "a character device"
    } else if t.is_block_device() {
        "a block device"
    } else if t.is_socket() {
        "a socket"
    } else {
        "not a regular file"
    })
}

fn not_regular(path: &Utf8Path, target: Option<&str>, kind: &str) -> UserError {
    let what = match target {
        Some(t) => format!("{path} is a symlink to {t}, which is {kind}"),
        None => format!("{path} is {kind}"),
    };
    UserError::file(format!(
        "{what}, not a regular file; replace it with a file or remove it"
    ))
}

/// Whether something is at `path` that should be read: `Ok(false)` when nothing is there,
/// `Ok(true)` for a regular file or a link to one, and the one-line refusal for anything else
/// (a dangling or looping link, a FIFO, a device, a directory). For discovery: a file that is
/// there but cannot be read is an error, never "no file".
pub(crate) fn present(path: &Utf8Path) -> Result<bool, UserError> {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(UserError::file(format!("cannot read {path}: {e}"))),
    };
    if !meta.file_type().is_symlink() {
        return match kind_of(meta.file_type()) {
            None => Ok(true),
            Some(k) => Err(not_regular(path, None, k)),
        };
    }
    let target = std::fs::read_link(path)
        .map(|t| t.display().to_string())
        .unwrap_or_default();
    match std::fs::metadata(path) {
        Ok(m) => match kind_of(m.file_type()) {
            None => Ok(true),
            Some(k) => Err(not_regular(path, Some(&target), k)),
        },
        Err(e) => Err(UserError::file(format!(
            "{path} is a symlink to {target}, which cannot be read ({e}); fix or remove the link"
        ))),
    }
}

/// The text of the file at `path`, `None` if nothing is there (see the module doc).
pub(crate) fn read(path: &Utf8Path, limit: Limit) -> Result<Option<String>, UserError> {
    if !present(path)? {
        return Ok(None);
    }
    read_present(path, limit).map(Some)
}

/// The text of the file at `path`, which must be there: `missing` says what to do when it is
/// not (`pass --images-dir ...`).
pub(crate) fn read_required(
    path: &Utf8Path,
    limit: Limit,
    missing: &str,
) -> Result<String, UserError> {
    match read(path, limit)? {
        Some(t) => Ok(t),
        None => Err(UserError::file(format!("{path} does not exist; {missing}"))),
    }
}

fn read_present(path: &Utf8Path, limit: Limit) -> Result<String, UserError> {
    use std::os::unix::fs::OpenOptionsExt;
    let cannot = |e: std::io::Error| UserError::file(format!("cannot read {path}: {e}"));
    // non-blocking: a FIFO swapped in after the check opens at once instead of waiting
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
        .map_err(cannot)?;
    let meta = file.metadata().map_err(cannot)?;
    if let Some(k) = kind_of(meta.file_type()) {
        return Err(not_regular(path, None, k));
    }
    let too_big = || {
        UserError::file(format!(
            "{path} is larger than {} ({} may hold at most that); check that it is the file you meant",
            size(limit.max),
            limit.what
        ))
    };
    if meta.len() > limit.max {
        return Err(too_big());
    }
    let mut bytes = Vec::new();
    file.take(limit.max + 1)
        .read_to_end(&mut bytes)
        .map_err(cannot)?;
    if bytes.len() as u64 > limit.max {
        return Err(too_big());
    }
    String::from_utf8(bytes).map_err(|e| {
        UserError::file(format!(
            "{path} is not UTF-8 text (invalid byte at offset {})",
            e.utf8_error().valid_up_to()
        ))
    })
}

/// At most `limit.max` bytes of text from a stream (stdin), as [`read`] reads a file.
pub(crate) fn read_stream(stream: impl Read, limit: Limit) -> Result<String, UserError> {
    let mut bytes = Vec::new();
    stream
        .take(limit.max + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| UserError::file(format!("cannot read {}: {e}", limit.what)))?;
    if bytes.len() as u64 > limit.max {
        return Err(UserError::file(format!(
            "{} got more than {} on stdin; pipe only what it reads",
            limit.what,
            size(limit.max)
        )));
    }
    String::from_utf8(bytes)
        .map_err(|_| UserError::file(format!("{} is not UTF-8 text", limit.what)))
}

/// Deserializes YAML after checking what its aliases expand to (at most
/// [`MAX_YAML_EXPANSION`]) and how deep it nests (at most [`MAX_DEPTH`]). `Err` is the reason,
/// one line, for the caller to prefix with the file.
pub(crate) fn parse_yaml<T: serde::de::DeserializeOwned>(text: &str) -> Result<T, String> {
    use serde::de::DeserializeSeed;
    let mut budget = Expansion {
        left: MAX_YAML_EXPANSION,
        depth: 0,
        over: None,
    };
    if let Err(e) = (&mut budget).deserialize(serde_yaml_ng::Deserializer::from_str(text)) {
        return Err(match budget.over {
            Some(why) => why.to_string(),
            None => e.to_string().replace('\n', " "),
        });
    }
    serde_yaml_ng::from_str(text).map_err(|e| e.to_string().replace('\n', " "))
}

/// Why a YAML document was refused before it was deserialized.
#[derive(Debug, Clone, Copy)]
enum Over {
    Expansion,
    Depth,
}

impl std::fmt::Display for Over {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Over::Expansion => write!(
                f,
                "its aliases (*name) expand to more than {}; write the values out or alias less",
                size(MAX_YAML_EXPANSION as u64)
            ),
            Over::Depth => write!(f, "it nests deeper than {MAX_DEPTH} levels"),
        }
    }
}

/// Walks a YAML document as serde_yaml_ng expands it (an alias replays its anchor's events, so
/// scalars are borrowed from the one document, never copied), charging each node 16 bytes plus
/// its scalar's length.
struct Expansion {
    left: usize,
    depth: usize,
    over: Option<Over>,
}

impl Expansion {
    fn spend<E: serde::de::Error>(&mut self, n: usize) -> Result<(), E> {
        match self.left.checked_sub(n + 16) {
            Some(l) => {
                self.left = l;
                Ok(())
            }
            None => {
                self.over = Some(Over::Expansion);
                Err(E::custom(Over::Expansion))
            }
        }
    }

    fn nest<E: serde::de::Error>(&mut self) -> Result<(), E> {
        self.spend(0)?;
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            self.over = Some(Over::Depth);
            return Err(E::custom(Over::Depth));
        }
        Ok(())
    }
}

impl<'de> serde::de::DeserializeSeed<'de> for &mut Expansion {
    type Value = ();
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> serde::de::Visitor<'de> for &mut Expansion {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("any YAML")
    }
    fn visit_bool<E: serde::de::Error>(self, _: bool) -> Result<(), E> {
        self.spend(0)
    }
    fn visit_i64<E: serde::de::Error>(self, _: i64) -> Result<(), E> {
        self.spend(0)
    }
    fn visit_u64<E: serde::de::Error>(self, _: u64) -> Result<(), E> {
        self.spend(0)
    }
    fn visit_f64<E: serde::de::Error>(self, _: f64) -> Result<(), E> {
        self.spend(0)
    }
    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<(), E> {
        self.spend(v.len())
    }
    fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<(), E> {
        self.spend(v.len())
    }
    fn visit_unit<E: serde::de::Error>(self) -> Result<(), E> {
        self.spend(0)
    }
    fn visit_none<E: serde::de::Error>(self) -> Result<(), E> {
        self.spend(0)
    }
    fn visit_some<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
    fn visit_newtype_struct<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        self.nest()?;
        while seq.next_element_seed(&mut *self)?.is_some() {}
        self.depth -= 1;
        Ok(())
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        self.nest()?;
        while map.next_key_seed(&mut *self)?.is_some() {
            map.next_value_seed(&mut *self)?;
        }
        self.depth -= 1;
        Ok(())
    }
    /// A tagged node (`!tag value`).
    fn visit_enum<A: serde::de::EnumAccess<'de>>(self, data: A) -> Result<(), A::Error> {
        use serde::de::VariantAccess;
        let (_, variant) = data.variant::<serde::de::IgnoredAny>()?;
        variant.newtype_variant_seed(self)
    }
}

/// Refuses JSON (or JSON5: comments, single-quoted strings) that nests arrays and objects
/// deeper than [`MAX_DEPTH`], before a recursive parser sees it. Brackets inside strings and
/// comments do not count; anything else malformed is left to the parser.
pub(crate) fn check_json_depth(text: &str) -> Result<(), String> {
    let b = text.as_bytes();
    let (mut i, mut depth) = (0usize, 0usize);
    while i < b.len() {
        match b[i] {
            q @ (b'"' | b'\'') => {
                i += 1;
                while i < b.len() && b[i] != q {
                    i += if b[i] == b'\\' { 2 } else { 1 };
                }
            }
            b'/' if b.get(i + 1) == Some(&b'/') => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                i += 2;
                while i + 1 < b.len() && !(b[i] == b'*' && b[i + 1] == b'/') {
                    i += 1;
                }
                i += 1;
            }
            b'[' | b'{' => {
                depth += 1;
                if depth > MAX_DEPTH {
                    return Err(format!("it nests deeper than {MAX_DEPTH} levels"));
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
        i += 1;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use camino::Utf8PathBuf;

    fn dir() -> (tempfile::TempDir, Utf8PathBuf) {
        let d = tempfile::tempdir().unwrap();
        let p = Utf8PathBuf::from_path_buf(d.path().to_owned()).unwrap();
        (d, p)
    }

    fn fifo(path: &Utf8Path) {
        let c = std::ffi::CString::new(path.as_str()).unwrap();
        // SAFETY: mkfifo on a path we own, with a valid C string
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    }

    #[test]
    fn dangling_links_fifos_and_devices_are_refused_by_name_and_absence_is_not() {
        let (_d, root) = dir();
        assert_eq!(read(&root.join("missing.json"), CONFIG).unwrap(), None);
        std::os::unix::fs::symlink(root.join("nowhere"), root.join("dangling.json")).unwrap();
        let err = read(&root.join("dangling.json"), CONFIG).unwrap_err();
        assert!(err.message().contains("is a symlink to"), "{err}");
        std::os::unix::fs::symlink(root.join("loop.json"), root.join("loop.json")).unwrap();
        assert!(read(&root.join("loop.json"), CONFIG)
            .unwrap_err()
            .message()
            .contains("cannot be read"));
        fifo(&root.join("fifo.json"));
        let err = read(&root.join("fifo.json"), CONFIG).unwrap_err();
        assert_eq!(
            err.message(),
            format!(
                "{root}/fifo.json is a FIFO (named pipe), not a regular file; replace it with a file or remove it"
            )
        );
        std::os::unix::fs::symlink("/dev/zero", root.join("z.json")).unwrap();
        let err = read(&root.join("z.json"), METADATA).unwrap_err();
        assert!(
            err.message().contains(
                "is a symlink to /dev/zero, which is a character device, not a regular file"
            ),
            "{err}"
        );
        assert!(read(&root, CONFIG)
            .unwrap_err()
            .message()
            .contains("is a directory"));
        std::fs::write(root.join("ok.json"), "{}").unwrap();
        assert_eq!(
            read(&root.join("ok.json"), CONFIG).unwrap().as_deref(),
            Some("{}")
        );
        std::fs::write(root.join("big.yaml"), vec![b'a'; (MIB + 1) as usize]).unwrap();
        assert_eq!(
            read(&root.join("big.yaml"), VARIANTS).unwrap_err().message(),
            format!("{root}/big.yaml is larger than 1 MiB (variants.yaml may hold at most that); check that it is the file you meant")
        );
        let err = read_stream(std::io::repeat(0).take(10 << 20), CREDS).unwrap_err();
        assert_eq!(
            err.message(),
            "--creds-stdin got more than 64 KiB on stdin; pipe only what it reads"
        );
    }

    #[test]
    fn yaml_aliases_expand_within_a_budget_and_nesting_is_bounded() {
        #[derive(serde::Deserialize, Debug)]
        struct Any {
            #[allow(dead_code)]
            a: serde_yaml_ng::Value,
        }
        let anchored = format!("a:\n  - &x \"{}\"\n", "y".repeat(1 << 20));
        let mut bomb = anchored.clone();
        for _ in 0..2000 {
            bomb.push_str("  - *x\n");
        }
        let started = std::time::Instant::now();
        let err = parse_yaml::<Any>(&bomb).unwrap_err();
        assert!(
            err.starts_with("its aliases (*name) expand to more than 16 MiB"),
            "{err}"
        );
        assert!(started.elapsed() < std::time::Duration::from_secs(2));
        // a few aliases are fine
        let mut some = anchored;
        for _ in 0..3 {
            some.push_str("  - *x\n");
        }
        assert!(parse_yaml::<Any>(&some).is_ok());
        let deep = format!("a: {}1{}\n", "[".repeat(100), "]".repeat(100));
        assert_eq!(
            parse_yaml::<Any>(&deep).unwrap_err(),
            "it nests deeper than 64 levels"
        );
    }

    #[test]
    fn json_nesting_is_bounded_outside_strings_and_comments() {
        assert!(check_json_depth(&format!("{}{}", "[".repeat(8000), "]".repeat(8000))).is_err());
        let ok = format!(
            "{{\"a\": \"{}\", 'b': '[[[', // [[[[\n /* {{{{{{ */ \"c\": [[1]]}}",
            "[".repeat(500)
        );
        assert!(check_json_depth(&ok).is_ok());
        assert!(check_json_depth(&"[".repeat(64)).is_ok());
        assert!(check_json_depth(&"{\"a\":".repeat(65)).is_err());
    }
}
