//! A hash of every input to a generated image, stored as an image label. Comparing it with the
//! label on the existing image is what makes a no-op build cost one `image inspect`.

use sha2::{Digest, Sha256};

/// The label that carries the fingerprint on ocx and hjk images.
pub(crate) const LABEL: &str = "io.agent-images.fingerprint";

#[derive(Default)]
pub(crate) struct Fingerprint {
    hasher: Sha256,
}

impl Fingerprint {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// Adds a named input. Names and lengths are hashed too, so ("ab","c") != ("a","bc").
    pub(crate) fn add(mut self, name: &str, value: impl AsRef<[u8]>) -> Self {
        let v = value.as_ref();
        self.hasher.update((name.len() as u64).to_le_bytes());
        self.hasher.update(name.as_bytes());
        self.hasher.update((v.len() as u64).to_le_bytes());
        self.hasher.update(v);
        self
    }

    pub(crate) fn finish(self) -> String {
        hex(&self.hasher.finalize())
    }
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_input_matters_and_boundaries_count() {
        let a = Fingerprint::new().add("x", "ab").add("y", "c").finish();
        let b = Fingerprint::new().add("x", "a").add("y", "bc").finish();
        let c = Fingerprint::new().add("x", "ab").add("y", "c").finish();
        assert_ne!(a, b);
        assert_eq!(a, c);
        assert_eq!(a.len(), 64);
    }
}
