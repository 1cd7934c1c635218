//! Apple `container` (issue 14, item 8): the real `ocx`/`hjk` against `fake-container`, whose
//! replies are taken from apple/container 1.2.2's source. Each test is a case where the real
//! CLI would do something other than asked without saying so, or say it in its own words.

use crate::util::{fixtures, TestEnv};

fn ran(env: &TestEnv, sub: &str) -> Vec<Vec<String>> {
    env.log().into_iter().filter(|a| a[1] == sub).collect()
}

/// With a non-default `registry.domain`, `image pull` of a short name would store the image
/// from that registry, while a Dockerfile's FROM means Docker Hub; hjk names Docker Hub.
#[test]
fn issue14_a_pulled_base_is_the_image_a_from_line_names() {
    let env = TestEnv::new();
    env.fake("container");
    env.fake_reply("registry-domain", "registry.example.com");
    let images = fixtures().join("hierarchy").display().to_string();
    env.hjk(&[
        "images",
        "build",
        "--images-dir",
        &images,
        "--variant",
        "base",
        "--platform",
        "linux/arm64",
        "--base-image",
        "local/debian:bookworm",
        "--backend",
        "container",
    ])
    .status(0)
    .run();
    let pulls = ran(&env, "image");
    assert!(
        pulls
            .iter()
            .any(|a| a[2..] == ["pull", "docker.io/local/debian:bookworm"]),
        "{pulls:?}"
    );
    let store = env.root().join("fake/images");
    assert!(store.join("docker.io%local%debian:bookworm.json").exists());
    assert!(!store
        .join("registry.example.com%local%debian:bookworm.json")
        .exists());
}
