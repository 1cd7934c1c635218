//! The plan of `hjk images build`, `list` and `release`: one walk over the variant graph (the
//! variants asked for and their ancestors, deduped, parents first), each step holding what its
//! Dockerfile says (read once) and the hash of what its build reads ([`crate::build_inputs`],
//! the one hasher). A build lays the plan out as local nodes (`hjk::images`), a release adds
//! what the registry holds per platform (`hjk::release`'s survey); neither walks the graph
//! again. [`fingerprint`] is the one recipe of a variant node's identity, for both.

use super::variants::Graph;
use crate::build_inputs;
use crate::fingerprint::Fingerprint;
use crate::image_ref::ImageRef;
use crate::platform::Platform;
use anyhow::Result;
use camino::Utf8PathBuf;
use std::collections::BTreeSet;

/// The variants to build, parents before children.
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    pub steps: Vec<Step>,
}

/// One variant of the plan: where it builds from, what its Dockerfile declares, and the hash of
/// everything its build reads.
#[derive(Debug, Clone)]
pub(crate) struct Step {
    pub name: String,
    /// The parent's index in [`Plan::steps`] (always before this one).
    pub parent: Option<usize>,
    pub dockerfile: Utf8PathBuf,
    pub context: Utf8PathBuf,
    /// The `ARG`s the Dockerfile declares: only those are passed (the classic builder warns
    /// about the rest).
    pub declared: BTreeSet<String>,
    /// The default of `ARG BASE_IMAGE=...`, if any (may name `${TARGETARCH}`).
    pub base_default: Option<String>,
    /// [`build_inputs::of_text`] of the Dockerfile and its context: the Dockerfile,
    /// `.dockerignore` and what it COPYs/ADDs, by content, for every platform alike.
    pub inputs: String,
}

impl Plan {
    /// The one walk: `wanted` and their ancestors, each once, in the graph's order (parents are
    /// declared before children). Each Dockerfile is read once here.
    pub(crate) fn walk(graph: &Graph, wanted: &[String]) -> Result<Plan> {
        let mut names: Vec<&str> = Vec::new();
        for w in wanted {
            for v in graph.chain(w)? {
                if !names.contains(&v.name.as_str()) {
                    names.push(&v.name);
                }
            }
        }
        names.sort_by_key(|n| graph.variants.iter().position(|v| v.name == *n));
        let mut steps: Vec<Step> = Vec::new();
        for n in names {
            let v = graph.get(n)?;
            let dockerfile = graph.dockerfile(v)?;
            let text = std::fs::read_to_string(&dockerfile)?;
            let context = graph.dir(v);
            let parent = match &v.parent {
                Some(p) => Some(
                    steps
                        .iter()
                        .position(|s| &s.name == p)
                        .ok_or_else(|| anyhow::anyhow!("parent {p} of {n} was not planned"))?,
                ),
                None => None,
            };
            steps.push(Step {
                name: v.name.clone(),
                parent,
                inputs: build_inputs::of_text(&text, &context, &[]),
                declared: crate::build::declared_args(&text),
                base_default: base_arg_default(&text),
                dockerfile,
                context,
            });
        }
        Ok(Plan { steps })
    }
}

impl Step {
    /// A root's base for a build of `platforms`: `--base-image`, else the Dockerfile's default,
    /// with `TARGETARCH` filled in for a build of one platform.
    pub(crate) fn base(
        &self,
        spec_base: Option<&ImageRef>,
        platforms: &[Platform],
    ) -> Option<String> {
        match (spec_base, platforms) {
            (Some(b), _) => Some(b.to_string()),
            (None, [p]) => self.base_default.as_ref().map(|d| {
                d.replace("${TARGETARCH}", p.arch())
                    .replace("$TARGETARCH", p.arch())
            }),
            (None, _) => self.base_default.clone(),
        }
    }
}

/// What a variant node is built from and with, besides its step's inputs.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Identity<'a> {
    pub platforms: &'a [Platform],
    /// `--version`.
    pub version: Option<&'a str>,
    /// What the node is FROM, by content: for a child its parent (`<registry>@<digest>` in a
    /// release, the parent's own fingerprint in a local build), for a root its base reference.
    pub base: Option<&'a str>,
    /// The local image id of a root base named by tag (a child's parent carries it already).
    pub root_base_id: Option<&'a str>,
    /// A provenance attestation is made (a release on a builder that exports).
    pub provenance: bool,
    /// `SOURCE_DATE_EPOCH`, where the builder makes times reproducible.
    pub epoch: Option<u64>,
}

/// The hjk variant node recipe: the identity of one variant on its platforms, from its step's
/// inputs, its version, what it is FROM and what the builder adds to the image (its times, an
/// attestation), so two builds that differ in any of them make different images. Stored as
/// the fingerprint label of every local node and staged image, and in a staging tag.
pub(crate) fn fingerprint(step: &Step, id: &Identity) -> String {
    let mut f = Fingerprint::new()
        .add("inputs", &step.inputs)
        .add("platforms", Platform::join(id.platforms))
        .add("version", id.version.unwrap_or(""))
        .add("base", id.base.unwrap_or(""))
        .add("root-base-id", id.root_base_id.unwrap_or(""));
    if id.provenance {
        f = f.add("provenance", "mode=max");
    }
    if let Some(e) = id.epoch {
        f = f.add("source-date-epoch", e.to_string());
    }
    f.finish()
}

/// The default of `ARG BASE_IMAGE=...` in a Dockerfile, if it has one.
fn base_arg_default(dockerfile: &str) -> Option<String> {
    crate::build::instructions(dockerfile)
        .into_iter()
        .find_map(|l| {
            let rest = l.trim().strip_prefix("ARG ")?.trim();
            rest.strip_prefix("BASE_IMAGE=")
                .map(|v| v.trim_matches('"').to_string())
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use camino::Utf8Path;

    fn images(root: &Utf8Path) -> Graph {
        std::fs::write(
            root.join("variants.yaml"),
            "variants:\n - {name: base, dir: base}\n - {name: mid, parent: base, dir: mid}\n - {name: top, parent: mid, dir: top}\n - {name: other, parent: base, dir: other}\n",
        )
        .unwrap();
        for (d, text) in [
            ("base", "ARG BASE_IMAGE=\"debian-${TARGETARCH}\"\nFROM ${BASE_IMAGE}\nARG VERSION\nCOPY app/ /app/\n"),
            ("mid", "ARG BASE_IMAGE\nFROM ${BASE_IMAGE}\n"),
            ("top", "ARG BASE_IMAGE\nFROM ${BASE_IMAGE}\n"),
            ("other", "ARG BASE_IMAGE\nFROM ${BASE_IMAGE}\n"),
        ] {
            std::fs::create_dir_all(root.join(d).join("app")).unwrap();
            std::fs::write(root.join(d).join("Dockerfile"), text).unwrap();
        }
        Graph::load(root).unwrap()
    }

    #[test]
    fn one_walk_parents_first_deduped_with_the_dockerfile_facts() {
        let t = tempfile::tempdir().unwrap();
        let root = Utf8PathBuf::from_path_buf(t.path().to_owned()).unwrap();
        let g = images(&root);
        let plan = Plan::walk(&g, &["top".into(), "other".into(), "mid".into()]).unwrap();
        let names: Vec<&str> = plan.steps.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["base", "mid", "top", "other"]);
        let parents: Vec<Option<usize>> = plan.steps.iter().map(|s| s.parent).collect();
        assert_eq!(parents, [None, Some(0), Some(1), Some(0)]);
        let base = &plan.steps[0];
        assert!(base.declared.contains("VERSION") && base.declared.contains("BASE_IMAGE"));
        assert_eq!(
            base.base(None, &[Platform::LinuxArm64]).as_deref(),
            Some("debian-arm64")
        );
        assert_eq!(
            base.base(None, &[Platform::LinuxAmd64, Platform::LinuxArm64])
                .as_deref(),
            Some("debian-${TARGETARCH}")
        );
    }

    /// The inputs are `build_inputs`': a file the Dockerfile copies counts, any other file in
    /// the context (a `.trivyignore`, a FIFO) does not, and is never opened.
    #[test]
    fn inputs_are_what_the_build_reads() {
        let t = tempfile::tempdir().unwrap();
        let root = Utf8PathBuf::from_path_buf(t.path().to_owned()).unwrap();
        let g = images(&root);
        let walk = || {
            Plan::walk(&g, &["base".into()]).unwrap().steps[0]
                .inputs
                .clone()
        };
        let first = walk();
        std::fs::write(root.join("base/.trivyignore"), "CVE-0000-0000\n").unwrap();
        let fifo = std::ffi::CString::new(root.join("base/pipe").as_str()).unwrap();
        assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o644) }, 0);
        assert_eq!(walk(), first);
        std::fs::write(root.join("base/app/x"), "1").unwrap();
        assert_ne!(walk(), first);
    }

    #[test]
    fn every_part_of_a_node_identity_counts() {
        let t = tempfile::tempdir().unwrap();
        let root = Utf8PathBuf::from_path_buf(t.path().to_owned()).unwrap();
        let plan = Plan::walk(&images(&root), &["mid".into()]).unwrap();
        let p = [Platform::LinuxAmd64];
        let id = Identity {
            platforms: &p,
            ..Identity::default()
        };
        let step = &plan.steps[1];
        let fp = fingerprint(step, &id);
        assert_eq!(fp, fingerprint(step, &id));
        let arm = [Platform::LinuxArm64];
        for other in [
            Identity {
                platforms: &arm,
                ..id
            },
            Identity {
                version: Some("v1.0.0"),
                ..id
            },
            Identity {
                base: Some("r@sha256:00"),
                ..id
            },
            Identity {
                root_base_id: Some("sha256:01"),
                ..id
            },
            Identity {
                provenance: true,
                ..id
            },
            Identity {
                epoch: Some(1),
                ..id
            },
        ] {
            assert_ne!(fingerprint(step, &other), fp, "{other:?}");
        }
        assert_ne!(fingerprint(&plan.steps[0], &id), fp, "the inputs");
    }
}
