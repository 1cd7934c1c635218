//! The variant graph, read from `images/variants.yaml`: the one place it is declared.

use crate::error::UserError;
use camino::{Utf8Path, Utf8PathBuf};
use serde::Deserialize;

pub(crate) const FILE: &str = "variants.yaml";

/// The longest variant name: it is part of every tag a release makes.
pub const MAX_NAME: usize = 41;

#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Variant {
    pub name: String,
    #[serde(default)]
    pub parent: Option<String>,
    pub dir: String,
    #[serde(default)]
    pub description: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    variants: Vec<Variant>,
}

#[derive(Debug, Clone)]
pub struct Graph {
    pub root: Utf8PathBuf,
    pub variants: Vec<Variant>,
}

impl Graph {
    pub fn load(images_dir: &Utf8Path) -> Result<Graph, UserError> {
        let path = images_dir.join(FILE);
        let text = crate::input_file::read_required(
            &path,
            crate::input_file::VARIANTS,
            &format!("pass --images-dir pointing at the directory with {FILE}"),
        )?;
        let file: File = crate::input_file::parse_yaml(&text)
            .map_err(|e| UserError::config(format!("malformed {path}: {e}")))?;
        let g = Graph {
            root: images_dir.to_owned(),
            variants: file.variants,
        };
        g.check()?;
        Ok(g)
    }

    fn check(&self) -> Result<(), UserError> {
        let file = self.root.join(FILE);
        if self.variants.is_empty() {
            return Err(UserError::config(format!(
                "{file} declares no variants; add one (name and dir), as images/variants.yaml does"
            )));
        }
        let name_ok = regex::Regex::new(r"^[a-z0-9][a-z0-9-]*$").expect("name regex");
        for (i, v) in self.variants.iter().enumerate() {
            if !name_ok.is_match(&v.name) {
                return Err(UserError::config(format!(
                    "variant name {:?} must be lowercase letters, digits and -, starting with a letter or digit",
                    v.name
                )));
            }
            if v.name.len() > MAX_NAME {
                return Err(UserError::config(format!(
                    "variant name {:?} is {} characters long; use at most {MAX_NAME} (the name is part of every tag a release makes)",
                    v.name,
                    v.name.len()
                )));
            }
            if self.variants[..i].iter().any(|o| o.name == v.name) {
                return Err(UserError::config(format!(
                    "variant {} is declared twice",
                    v.name
                )));
            }
            // a build of several platforms tags each platform `<variant>-<arch>`
            for o in &self.variants {
                if let Some(p) = crate::platform::Platform::ALL
                    .iter()
                    .find(|p| v.name == format!("{}-{}", o.name, p.arch()))
                {
                    return Err(UserError::config(format!(
                        "variants {} and {} would share the tag {} (a build of several platforms tags each platform <variant>-<arch>, e.g. {}-{}); rename {}",
                        o.name,
                        v.name,
                        v.name,
                        o.name,
                        p.arch(),
                        v.name
                    )));
                }
            }
            if v.dir.contains("..") || v.dir.starts_with('/') {
                return Err(UserError::config(format!(
                    "variant {} dir {:?} must be inside the images directory",
                    v.name, v.dir
                )));
            }
            self.contained(v)?;
            if let Some(p) = &v.parent {
                // parents are declared before children, so the graph is acyclic by construction
                if !self.variants[..i].iter().any(|o| &o.name == p) {
                    return Err(UserError::config(format!(
                        "variant {}'s parent {p} is not declared before it",
                        v.name
                    )));
                }
            }
        }
        Ok(())
    }

    /// A variant's directory must stay inside the images directory once links are followed:
    /// it is the build context, and everything in it can be copied into a published image.
    fn contained(&self, v: &Variant) -> Result<(), UserError> {
        let dir = self.dir(v);
        let (Ok(root), Ok(real)) = (self.root.canonicalize_utf8(), dir.canonicalize_utf8()) else {
            // a missing directory is refused where its Dockerfile is looked for
            return Ok(());
        };
        if !real.starts_with(&root) {
            return Err(UserError::config(format!(
                "variant {} dir {:?} resolves to {real}, outside the images directory {}; a build context must be inside it (replace the link with the directory)",
                v.name, v.dir, self.root
            )));
        }
        Ok(())
    }

    pub(crate) fn names(&self) -> Vec<&str> {
        self.variants.iter().map(|v| v.name.as_str()).collect()
    }

    pub(crate) fn get(&self, name: &str) -> Result<&Variant, UserError> {
        self.variants
            .iter()
            .find(|v| v.name == name)
            .ok_or_else(|| {
                UserError::not_found(format!(
                    "unknown variant {name:?}; known variants: {}",
                    self.names().join(", ")
                ))
            })
    }

    /// The variant and its ancestors, root first.
    pub(crate) fn chain(&self, name: &str) -> Result<Vec<&Variant>, UserError> {
        let mut out = vec![self.get(name)?];
        while let Some(p) = &out.last().expect("non-empty").parent {
            out.push(self.get(p)?);
        }
        out.reverse();
        Ok(out)
    }

    pub(crate) fn dir(&self, v: &Variant) -> Utf8PathBuf {
        self.root.join(&v.dir)
    }

    pub(crate) fn dockerfile(&self, v: &Variant) -> Result<Utf8PathBuf, UserError> {
        let d = self.dir(v);
        ["Dockerfile", "Containerfile"]
            .iter()
            .map(|f| d.join(f))
            .find(|p| p.is_file())
            .ok_or_else(|| UserError::file(format!("variant {} has no Dockerfile in {d}", v.name)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn graph(yaml: &str) -> Result<Graph, UserError> {
        let t = tempfile::tempdir().unwrap();
        let root = Utf8PathBuf::from_path_buf(t.path().to_owned()).unwrap();
        std::fs::write(root.join(FILE), yaml).unwrap();
        Graph::load(&root)
    }

    #[test]
    fn chain_is_root_first_and_unknown_lists_known() {
        let g = graph("variants:\n - {name: base, dir: base}\n - {name: systemd, parent: base, dir: systemd}\n - {name: dind, parent: systemd, dir: dind}\n").unwrap();
        let names: Vec<&str> = g
            .chain("dind")
            .unwrap()
            .iter()
            .map(|v| v.name.as_str())
            .collect();
        assert_eq!(names, ["base", "systemd", "dind"]);
        assert_eq!(
            g.get("dinb").unwrap_err().message(),
            "unknown variant \"dinb\"; known variants: base, systemd, dind"
        );
        assert_eq!(
            g.get("dinb").unwrap_err().kind(),
            crate::error::ErrorKind::NotFound
        );
    }

    #[test]
    fn parents_must_come_first() {
        let err = graph("variants:\n - {name: a, parent: b, dir: a}\n - {name: b, dir: b}\n")
            .unwrap_err();
        assert_eq!(
            err.message(),
            "variant a's parent b is not declared before it"
        );
        assert!(graph("variants:\n - {name: a, dir: ../x}\n").is_err());
    }

    #[test]
    fn names_collisions_empty_graphs_and_escaping_dirs_are_refused_up_front() {
        let long = "a".repeat(42);
        let err = graph(&format!("variants:\n - {{name: {long}, dir: a}}\n")).unwrap_err();
        assert_eq!(
            err.message(),
            format!("variant name \"{long}\" is 42 characters long; use at most 41 (the name is part of every tag a release makes)")
        );
        let err =
            graph("variants:\n - {name: x, dir: x}\n - {name: x-amd64, dir: y}\n").unwrap_err();
        assert!(
            err.message()
                .starts_with("variants x and x-amd64 would share the tag x-amd64"),
            "{err}"
        );
        let err = graph("variants: []\n").unwrap_err();
        assert!(err.message().ends_with("variants.yaml declares no variants; add one (name and dir), as images/variants.yaml does"), "{err}");
        let t = tempfile::tempdir().unwrap();
        let root = Utf8PathBuf::from_path_buf(t.path().to_owned()).unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(outside.path(), root.join("a")).unwrap();
        std::fs::write(root.join(FILE), "variants:\n - {name: a, dir: a}\n").unwrap();
        let err = Graph::load(&root).unwrap_err();
        assert!(err.message().contains("resolves to"), "{err}");
        assert!(
            err.message().contains("outside the images directory"),
            "{err}"
        );
    }
}
