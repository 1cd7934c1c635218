//! The end of a release or merge: the summary table, then the metadata file.

use super::metadata::Metadata;
use crate::digest::ImageDigest;
use crate::engine::Engine;
use anyhow::{anyhow, Result};
use camino::Utf8Path;
use serde::Serialize;
use std::time::Instant;

/// How one variant on one platform came to be in a release.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum Origin {
    /// Built and pushed under its staging tag.
    Built,
    /// In the registry already with the same fingerprint.
    Reused,
    /// Staged by another run, published from its metadata file (`hjk images merge`).
    Merged,
}

impl Origin {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Origin::Built => "built",
            Origin::Reused => "reused",
            Origin::Merged => "merged",
        }
    }
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.as_str())
    }
}

/// One row of the summary (and of `--progress json`'s result).
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Row {
    pub variant: String,
    pub platform: String,
    pub result: Origin,
    pub seconds: f64,
    pub digest: Option<ImageDigest>,
}

/// The summary, then the metadata file. The summary comes first: when the file cannot be
/// written (a full disk) after the tags moved, what was published is still shown, the error
/// (exit 1) names it, and an earlier file at that path is removed rather than left to pass for
/// this release's record.
pub(super) fn finish(
    engine: &Engine,
    file: Option<&Utf8Path>,
    meta: &Metadata,
    rows: &[Row],
    started: Instant,
) -> Result<()> {
    summary(engine, meta, rows, started);
    let Some(f) = file else {
        return Ok(());
    };
    let Err(e) = meta.write(f) else {
        return Ok(());
    };
    let old = match std::fs::symlink_metadata(f) {
        Ok(m) if m.is_file() && std::fs::remove_file(f).is_ok() => {
            format!("; the earlier {f}, which described another run, was removed")
        }
        _ => String::new(),
    };
    let published: Vec<String> = meta
        .variants
        .iter()
        .filter_map(|v| {
            let d = v.index_digest.as_ref()?;
            let tags = match (meta.partial, v.tags.is_empty()) {
                (true, _) => "staged, no tag".to_string(),
                (false, true) => "held, no tag moved".to_string(),
                (false, false) => format!("tagged {}", v.tags.join(", ")),
            };
            Some(format!("{} {}@{d} ({tags})", v.name, meta.registry))
        })
        .collect();
    let what = match (published.is_empty(), meta.partial) {
        (true, true) => format!(
            "the per-platform images are pushed ({})",
            meta.variants
                .iter()
                .flat_map(|v| v
                    .platforms
                    .iter()
                    .map(move |(p, r)| format!("{} {p} {}", v.name, r.digest)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        (true, false) => "nothing was published".to_string(),
        (false, _) => format!("published: {}", published.join("; ")),
    };
    Err(anyhow!(
        "the release metadata file {f} could not be written: {e}{old}; {what} (the summary above has it too)"
    ))
}

pub(super) fn summary(engine: &Engine, meta: &Metadata, rows: &[Row], started: Instant) {
    let mut text = format!(
        "{:<12} {:<14} {:<8} {:>8}  {}\n",
        "VARIANT", "PLATFORM", "RESULT", "TIME", "DIGEST"
    );
    for r in rows {
        text.push_str(&format!(
            "{:<12} {:<14} {:<8} {:>7.1}s  {}\n",
            r.variant,
            r.platform,
            r.result,
            r.seconds,
            r.digest.as_deref().unwrap_or("-")
        ));
    }
    for v in &meta.variants {
        if let Some(d) = &v.index_digest {
            let result = match (meta.partial, v.tags.is_empty()) {
                (true, _) => "staged",
                (false, false) => "tagged",
                (false, true) => "held",
            };
            let line = format!(
                "{:<12} {:<14} {:<8} {:>8}  {d} {}",
                v.name,
                "index",
                result,
                "",
                v.tags
                    .iter()
                    .map(|t| format!("{}:{t}", meta.registry))
                    .collect::<Vec<_>>()
                    .join(" ")
            );
            text.push_str(line.trim_end());
            text.push('\n');
        }
    }
    text.push_str(&format!(
        "released in {:.1}s\n",
        started.elapsed().as_secs_f64()
    ));
    engine
        .reporter()
        .result(text, serde_json::json!({"rows": rows, "metadata": meta}));
}
