//! The release metadata file (`--metadata-file`): what a release published, for tools and
//! people to read instead of logs, and what `hjk images merge` reads from per-architecture
//! runs. The schema is documented in docs/release.md ("Release metadata"); `schema` changes when a field
//! changes meaning. It never holds a secret.

use crate::digest::ImageDigest;
use crate::error::UserError;
use crate::platform::Platform;
use camino::Utf8Path;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

pub(crate) const SCHEMA: u32 = 1;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Metadata {
    pub schema: u32,
    /// The repository, e.g. `ghcr.io/gilmanlab/headjack`.
    pub registry: String,
    pub version: Option<crate::version::Version>,
    /// `true` for a `--push-by-digest` run: per-platform images only, no index, no tags.
    pub partial: bool,
    /// Variants in graph order, parents first.
    pub variants: Vec<VariantRecord>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VariantRecord {
    pub name: String,
    pub parent: Option<String>,
    /// The index (manifest list) digest; `null` in a partial file.
    pub index_digest: Option<ImageDigest>,
    /// The public tags that point at the index (after promotion), e.g. `dind`, `dind-v1.4.0`.
    pub tags: Vec<String>,
    /// `<registry>@<parent's index digest>`; `null` for the root or in a partial file.
    pub parent_ref: Option<String>,
    pub platforms: BTreeMap<Platform, PlatformRecord>,
    /// SBOM files written for this variant (the gates step fills this).
    pub sbom: Vec<String>,
    /// Whether the index was signed (the gates step fills this).
    pub signed: bool,
    /// The scan verdict (`passed`, `failed`), or `null` when no scan ran.
    pub scan: Option<String>,
    /// Why the public tags did not move (a gate of this release or of an earlier one held the
    /// index); empty when they moved or when nothing was promoted (a partial file).
    #[serde(default)]
    pub held: Vec<String>,
    /// The boot gate: `passed`, or why not (`null`: no boot ran).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub boot: Option<String>,
    /// The hash of the variant's Dockerfile and build context, so `merge` can tell that the
    /// per-platform files were built from the same inputs (`null` in files from before it).
    #[serde(default)]
    pub inputs: Option<String>,
}

impl VariantRecord {
    /// A variant as staged: its platform images, and nothing yet of what comes after them (no
    /// index or tags; no gate has run).
    pub(crate) fn staged(
        name: String,
        parent: Option<String>,
        platforms: BTreeMap<Platform, PlatformRecord>,
        inputs: String,
    ) -> Self {
        VariantRecord {
            name,
            parent,
            index_digest: None,
            tags: Vec::new(),
            parent_ref: None,
            platforms,
            sbom: Vec::new(),
            signed: false,
            scan: None,
            held: Vec::new(),
            boot: None,
            inputs: Some(inputs),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlatformRecord {
    /// The per-platform manifest digest.
    pub digest: ImageDigest,
    pub media_type: String,
    pub size: i64,
    /// The content-addressed staging tag the manifest was pushed under.
    pub stage_tag: String,
    /// The fingerprint of every input (the `io.agent-images.fingerprint` label).
    pub fingerprint: String,
    /// `<registry>@<parent's digest for this platform>`, what it was built FROM.
    pub base: Option<String>,
    /// `built` or `reused` (already in the registry with the same inputs).
    pub result: PlatformResult,
    /// The provenance attestation the builder made for this image (BuildKit's attestation
    /// manifest, listed in the index as platform `unknown/unknown`); `null` without one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attestation: Option<Attestation>,
}

/// How a per-platform image came to be in the release that recorded it: the metadata file's
/// `result`, written as `built` or `reused`. (A merge publishes records as they were written,
/// so "merged" is only ever a summary row's origin, never a record's result.)
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PlatformResult {
    /// Built and pushed under its staging tag.
    Built,
    /// In the registry already with the same fingerprint.
    Reused,
}

impl PlatformResult {
    /// The summary row's origin for a record made by this run.
    pub(super) fn origin(self) -> super::summary::Origin {
        match self {
            PlatformResult::Built => super::summary::Origin::Built,
            PlatformResult::Reused => super::summary::Origin::Reused,
        }
    }
}

/// An attestation manifest: what an index lists to attach it to its image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attestation {
    pub digest: ImageDigest,
    pub media_type: String,
    pub size: i64,
}

impl Metadata {
    /// Writes the file through [`crate::output_file::write`]: a fresh temporary file in the same
    /// directory, renamed over the target.
    pub fn write(&self, path: &Utf8Path) -> anyhow::Result<()> {
        let text = serde_json::to_string_pretty(self)? + "\n";
        crate::output_file::write(path, text.as_bytes())
    }

    /// Reads a metadata file, which must be there.
    pub fn read(path: &Utf8Path) -> Result<Metadata, UserError> {
        Metadata::read_if_present(path)?.ok_or_else(|| {
            UserError::metadata(format!(
                "metadata file {path} does not exist; name the file a release wrote"
            ))
        })
    }

    /// Reads a metadata file; `None` when nothing is at `path` (a dangling link, a FIFO or a
    /// device is an error). Read as every input is ([`crate::input_file`]): at most 16 MiB.
    pub(crate) fn read_if_present(path: &Utf8Path) -> Result<Option<Metadata>, UserError> {
        let Some(text) = crate::input_file::read(path, crate::input_file::METADATA)? else {
            return Ok(None);
        };
        let m: Metadata = serde_json::from_str(&text)
            .map_err(|e| UserError::metadata(format!("malformed metadata file {path}: {e}")))?;
        if m.schema != SCHEMA {
            return Err(UserError::metadata(format!(
                "metadata file {path} has schema {}, this hjk reads {SCHEMA}",
                m.schema
            )));
        }
        Ok(Some(m))
    }

    pub(crate) fn variant(&self, name: &str) -> Option<&VariantRecord> {
        self.variants.iter().find(|v| v.name == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `result` is an enum in memory and the same strings in the file: each value survives a
    /// write and a read, and a value no release writes is refused as the file is read.
    #[test]
    fn the_result_round_trips_through_the_file_as_its_string() {
        for (result, text) in [
            (PlatformResult::Built, "built"),
            (PlatformResult::Reused, "reused"),
        ] {
            let rec = PlatformRecord {
                digest: ImageDigest::of_bytes(text.as_bytes()),
                media_type: "application/vnd.oci.image.manifest.v1+json".into(),
                size: 10,
                stage_tag: "t".into(),
                fingerprint: "f".into(),
                base: None,
                result,
                attestation: None,
            };
            let json = serde_json::to_value(&rec).unwrap();
            assert_eq!(json["result"], text);
            assert_eq!(serde_json::from_value::<PlatformRecord>(json).unwrap(), rec);
        }
        for bad in ["merged", "Built", ""] {
            let err = serde_json::from_str::<PlatformResult>(&format!("{bad:?}")).unwrap_err();
            assert!(
                err.to_string().contains("expected `built` or `reused`"),
                "{err}"
            );
        }
        assert_eq!(
            PlatformResult::Reused.origin(),
            super::super::summary::Origin::Reused
        );
    }
}
