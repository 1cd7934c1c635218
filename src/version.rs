//! Release versions (`1.2.3`, `v1.4.0`, `2.0.0-rc.1`): the one grammar both tools accept, since a
//! version ends up in image tags, labels and cache paths.

/// Whether `s` is `[v]X.Y.Z[-pre]` (ASCII digits, 1-6 each), with 1-40 pre-release characters
/// from `[0-9A-Za-z.]`: always a valid tag suffix, never anything a shell or Dockerfile reads.
/// Checked by hand: compiling a regex for it cost a no-op `ocx build` a third of its own time.
pub(crate) fn is_release(s: &str) -> bool {
    let s = s.strip_prefix('v').unwrap_or(s);
    let (core, pre) = match s.split_once('-') {
        Some((c, p)) => (c, Some(p)),
        None => (s, None),
    };
    let numbers: Vec<&str> = core.split('.').collect();
    numbers.len() == 3
        && numbers
            .iter()
            .all(|n| (1..=6).contains(&n.len()) && n.bytes().all(|b| b.is_ascii_digit()))
        && pre.is_none_or(|p| {
            (1..=40).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.')
        })
}

/// A release version, checked once by [`is_release`] where it enters (a flag, a metadata
/// file): always a valid tag suffix. Displays and serializes as the string it was given.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Version(String);

impl Version {
    /// `s` as a release version, or the `--version` flag's own refusal.
    pub(crate) fn parse(s: &str) -> Result<Version, crate::error::UserError> {
        if is_release(s) {
            Ok(Version(s.to_string()))
        } else {
            Err(crate::error::UserError::setting(format!(
                "invalid --version {s:?}: use vX.Y.Z, e.g. v1.4.0"
            )))
        }
    }
}

impl std::fmt::Display for Version {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::str::FromStr for Version {
    type Err = crate::error::UserError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Version::parse(s)
    }
}

impl std::ops::Deref for Version {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl PartialEq<str> for Version {
    fn eq(&self, other: &str) -> bool {
        self.0 == other
    }
}

impl PartialEq<&str> for Version {
    fn eq(&self, other: &&str) -> bool {
        self.0 == *other
    }
}

impl serde::Serialize for Version {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> serde::Deserialize<'de> for Version {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Version::parse(&s).map_err(|e| serde::de::Error::custom(e.message()))
    }
}

/// Test fixtures spell versions as literals; a literal that is not one is a broken test.
#[cfg(test)]
impl From<&str> for Version {
    fn from(s: &str) -> Version {
        Version::parse(s).unwrap()
    }
}

/// Sort key for `X.Y.Z[-pre]`: numeric parts, then a pre-release sorts before its release.
pub(crate) fn sort_key(v: &str) -> (Vec<u64>, String) {
    let v = v.strip_prefix('v').unwrap_or(v);
    let (core, pre) = v.split_once('-').unwrap_or((v, "~"));
    (
        core.split('.').map(|n| n.parse().unwrap_or(0)).collect(),
        pre.to_string(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn releases_and_their_order() {
        for ok in ["1.2.3", "v1.4.0", "2.0.0-rc.1"] {
            assert!(is_release(ok), "{ok}");
        }
        for bad in [
            "latest",
            "1.2",
            "1.2.3;id",
            "1.2.3\nRUN x",
            "v1.2.3-",
            "vv1.2.3",
            "1.2.3.4",
            "1..3",
            "1234567.0.0",
            "1.2.3-a-b",
            "1.٣.3",
        ] {
            assert!(!is_release(bad), "{bad}");
        }
        let mut v = vec!["1.10.0", "1.9.9", "1.18.18", "1.18.2", "1.18.2-rc.1"];
        v.sort_by_key(|s| sort_key(s));
        assert_eq!(v, ["1.9.9", "1.10.0", "1.18.2-rc.1", "1.18.2", "1.18.18"]);
    }
}
