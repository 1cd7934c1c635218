//! Release versions (`1.2.3`, `v1.4.0`, `2.0.0-rc.1`): the one grammar both tools accept, since a
//! version ends up in image tags, labels and cache paths.

use std::sync::OnceLock;

/// Whether `s` is `[v]X.Y.Z[-pre]`, with at most 40 pre-release characters from
/// `[0-9A-Za-z.]`: always a valid tag suffix, never anything a shell or Dockerfile reads.
pub fn is_release(s: &str) -> bool {
    static RE: OnceLock<regex::Regex> = OnceLock::new();
    RE.get_or_init(|| {
        regex::Regex::new(r"^v?\d{1,6}\.\d{1,6}\.\d{1,6}(-[0-9A-Za-z.]{1,40})?$").expect("version")
    })
    .is_match(s)
}

/// Sort key for `X.Y.Z[-pre]`: numeric parts, then a pre-release sorts before its release.
pub fn sort_key(v: &str) -> (Vec<u64>, String) {
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
        for bad in ["latest", "1.2", "1.2.3;id", "1.2.3\nRUN x", "v1.2.3-"] {
            assert!(!is_release(bad), "{bad}");
        }
        let mut v = vec!["1.10.0", "1.9.9", "1.18.18", "1.18.2", "1.18.2-rc.1"];
        v.sort_by_key(|s| sort_key(s));
        assert_eq!(v, ["1.9.9", "1.10.0", "1.18.2-rc.1", "1.18.2", "1.18.18"]);
    }
}
