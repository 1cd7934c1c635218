//! The Headjack images under `images/` as hjk reads them, and their Dockerfiles as
//! instructions.

use agent_images::hjk::variants::{Graph, Variant};
use std::path::{Path, PathBuf};

pub fn images_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("images")
}

/// The variants as hjk reads them (the library's own parser, so the lint sees what hjk builds).
pub fn variants() -> Vec<Variant> {
    let dir = camino::Utf8PathBuf::from_path_buf(images_dir()).unwrap();
    let g = Graph::load(&dir).unwrap_or_else(|e| panic!("{e}"));
    assert!(
        !g.variants.is_empty(),
        "images/variants.yaml lists no variants"
    );
    g.variants
}

/// One Dockerfile instruction: continuation lines joined, comment lines dropped.
#[derive(Debug)]
pub struct Instruction {
    pub line: usize,
    pub keyword: String,
    pub args: String,
}

pub fn parse_dockerfile(text: &str) -> Vec<Instruction> {
    let mut out = Vec::new();
    let mut current: Option<(usize, String)> = None;
    for (i, raw) in text.lines().enumerate() {
        let trimmed = raw.trim();
        // comment lines are dropped, also inside a continued instruction (as docker does)
        if trimmed.starts_with('#') || (current.is_none() && trimmed.is_empty()) {
            continue;
        }
        let (continues, body) = match trimmed.strip_suffix('\\') {
            Some(b) => (true, b),
            None => (false, trimmed),
        };
        let (start, mut acc) = current.take().unwrap_or((i + 1, String::new()));
        if !acc.is_empty() {
            acc.push(' ');
        }
        acc.push_str(body);
        if continues {
            current = Some((start, acc));
        } else {
            out.push(instruction(start, &acc));
        }
    }
    if let Some((start, acc)) = current {
        out.push(instruction(start, &acc));
    }
    out
}

fn instruction(line: usize, text: &str) -> Instruction {
    let text = text.trim();
    let (kw, args) = text.split_once(char::is_whitespace).unwrap_or((text, ""));
    Instruction {
        line,
        keyword: kw.to_ascii_uppercase(),
        args: args.trim().to_string(),
    }
}
