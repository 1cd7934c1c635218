//! Content digests (`sha256:<64 hex>`), parsed once where they enter: a registry's reply, an
//! engine's output, a metadata file, a command-line argument. Past that boundary a digest is an
//! [`ImageDigest`], so nothing downstream checks it again before it reaches argv or a path.

use crate::error::UserError;
use oci_spec::image::{Digest, DigestAlgorithm};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::str::FromStr;

/// A sha256 content digest, `sha256:` and 64 lowercase hex digits: an
/// [`oci_spec::image::Digest`] whose algorithm is sha256. It serializes as that string, so the
/// metadata file's format is the string it always was.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ImageDigest(Digest);

impl ImageDigest {
    /// Parses `sha256:<64 hex>`; anything else (another algorithm, a short or uppercase value,
    /// a shell word) is refused with the text it was given.
    pub fn parse(s: &str) -> Result<ImageDigest, UserError> {
        match Digest::from_str(s) {
            Ok(d) if *d.algorithm() == DigestAlgorithm::Sha256 => Ok(ImageDigest(d)),
            _ => Err(UserError::reference(format!(
                "{s:?} is not a sha256 digest (sha256:<64 hex digits>)"
            ))),
        }
    }

    /// The digest of `bytes`, as registries compute a manifest's.
    pub(crate) fn of_bytes(bytes: &[u8]) -> ImageDigest {
        use sha2::Digest as _;
        let hex = crate::fingerprint::hex(&sha2::Sha256::digest(bytes));
        ImageDigest::parse(&format!("sha256:{hex}")).expect("a sha256 hex is a digest")
    }

    /// The whole digest, `sha256:<hex>`.
    pub fn as_str(&self) -> &str {
        self.0.as_ref()
    }

    /// The 64 hex digits after `sha256:`.
    pub(crate) fn hex(&self) -> &str {
        self.0.digest()
    }
}

/// `<repository>@<digest>`: the one place a reference by digest is spelled.
pub(crate) fn by_digest(repository: &str, digest: &ImageDigest) -> String {
    format!("{repository}@{digest}")
}

impl fmt::Display for ImageDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ImageDigest {
    type Err = UserError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ImageDigest::parse(s)
    }
}

impl AsRef<str> for ImageDigest {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl std::ops::Deref for ImageDigest {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl PartialEq<str> for ImageDigest {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for ImageDigest {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl PartialEq<String> for ImageDigest {
    fn eq(&self, other: &String) -> bool {
        self.as_str() == other
    }
}

impl PartialOrd for ImageDigest {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for ImageDigest {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.as_str().cmp(other.as_str())
    }
}

/// Test fixtures spell digests as literals; a literal that is not one is a broken test.
#[cfg(test)]
impl From<&str> for ImageDigest {
    fn from(s: &str) -> ImageDigest {
        ImageDigest::parse(s).unwrap()
    }
}

impl Serialize for ImageDigest {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for ImageDigest {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        ImageDigest::parse(&s).map_err(|e| serde::de::Error::custom(e.message()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn parses_sha256_only_and_keeps_the_string() {
        let d = ImageDigest::parse(D).unwrap();
        assert_eq!(d.to_string(), D);
        assert_eq!(d.hex(), &D[7..]);
        assert_eq!(serde_json::to_string(&d).unwrap(), format!("\"{D}\""));
        assert_eq!(
            serde_json::from_str::<ImageDigest>(&format!("\"{D}\"")).unwrap(),
            d
        );
        for bad in [
            "sha256:abc; rm -rf /",
            "sha256:ff",
            "",
            &D.to_uppercase(),
            &format!("sha512:{}", &D[7..]),
        ] {
            assert_eq!(
                ImageDigest::parse(bad).unwrap_err().message(),
                format!("{bad:?} is not a sha256 digest (sha256:<64 hex digits>)")
            );
        }
        assert_eq!(by_digest("r.io/a/b", &d), format!("r.io/a/b@{D}"));
        assert_eq!(
            ImageDigest::of_bytes(b"").as_str(),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }
}
