//! Target platforms. Each engine and upstream project spells an architecture differently
//! (docker `arm64`, opencode `arm64`/`x64`, uname `aarch64`/`x86_64`), so the mapping lives here once.

use crate::error::UserError;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum Platform {
    LinuxAmd64,
    LinuxArm64,
}

impl Platform {
    pub const ALL: [Platform; 2] = [Platform::LinuxAmd64, Platform::LinuxArm64];

    /// The OCI/docker architecture name, also the value of `TARGETARCH`.
    pub fn arch(self) -> &'static str {
        match self {
            Platform::LinuxAmd64 => "amd64",
            Platform::LinuxArm64 => "arm64",
        }
    }

    /// The architecture in opencode's release asset names.
    pub(crate) fn opencode_arch(self) -> &'static str {
        match self {
            Platform::LinuxAmd64 => "x64",
            Platform::LinuxArm64 => "arm64",
        }
    }

    /// What `uname -m` prints inside a container of this platform.
    #[cfg(test)]
    pub(crate) fn uname(self) -> &'static str {
        match self {
            Platform::LinuxAmd64 => "x86_64",
            Platform::LinuxArm64 => "aarch64",
        }
    }

    /// The platform of the machine we run on; the default target.
    pub(crate) fn host() -> Platform {
        if cfg!(target_arch = "aarch64") {
            Platform::LinuxArm64
        } else {
            Platform::LinuxAmd64
        }
    }

    /// Parses a comma-separated list, rejecting duplicates so a build never runs twice.
    pub(crate) fn parse_list(s: &str) -> Result<Vec<Platform>, UserError> {
        let mut out = Vec::new();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let p: Platform = part.parse()?;
            if !out.contains(&p) {
                out.push(p);
            }
        }
        if out.is_empty() {
            return Err(UserError::setting(format!(
                "no platform given in {s:?}; use linux/amd64, linux/arm64 or both"
            )));
        }
        Ok(out)
    }

    pub(crate) fn join(platforms: &[Platform]) -> String {
        platforms
            .iter()
            .map(|p| p.to_string())
            .collect::<Vec<_>>()
            .join(",")
    }
}

impl FromStr for Platform {
    type Err = UserError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "linux/amd64" | "amd64" | "linux/x86_64" | "x86_64" => Ok(Platform::LinuxAmd64),
            "linux/arm64" | "arm64" | "linux/aarch64" | "aarch64" | "linux/arm64/v8" => {
                Ok(Platform::LinuxArm64)
            }
            _ => Err(UserError::setting(format!(
                "unknown platform {s:?}; supported: linux/amd64, linux/arm64"
            ))),
        }
    }
}

impl TryFrom<String> for Platform {
    type Error = UserError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<Platform> for String {
    fn from(p: Platform) -> String {
        p.to_string()
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "linux/{}", self.arch())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_aliases_and_lists() {
        assert_eq!("aarch64".parse::<Platform>().unwrap(), Platform::LinuxArm64);
        assert_eq!(
            Platform::parse_list("linux/amd64, linux/arm64,linux/amd64").unwrap(),
            vec![Platform::LinuxAmd64, Platform::LinuxArm64]
        );
        let err = Platform::parse_list("linux/s390x").unwrap_err();
        assert_eq!(
            err.message(),
            "unknown platform \"linux/s390x\"; supported: linux/amd64, linux/arm64"
        );
    }

    #[test]
    fn names_per_consumer() {
        assert_eq!(Platform::LinuxAmd64.opencode_arch(), "x64");
        assert_eq!(Platform::LinuxArm64.uname(), "aarch64");
        assert_eq!(Platform::LinuxArm64.to_string(), "linux/arm64");
    }
}
