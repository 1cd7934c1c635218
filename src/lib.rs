//! agent-images: builds and runs the container images CLI coding agents run in, on docker
//! (buildx or classic), podman and Apple `container`. ARCHITECTURE.md describes the layers;
//! `backend/` is the only module that knows one engine from another.

// Everything not used by the two binaries or the tests is pub(crate), so the compiler finds dead
// code. Nobody reads these docs as a public API: `cargo doc` documents every item
// (`.cargo/config.toml`), and a public module's docs may link to the crate-private items that
// do its work.
#![allow(rustdoc::private_intra_doc_links)]

pub(crate) mod backend;
pub(crate) mod build;
pub(crate) mod build_inputs;
pub mod cli;
pub mod digest;
pub(crate) mod dirs;
pub(crate) mod disk;
pub mod engine;
pub mod error;
pub(crate) mod exec;
pub(crate) mod fingerprint;
pub mod hjk;
pub mod http;
pub mod image_ref;
pub(crate) mod input_file;
pub(crate) mod interrupt;
pub(crate) mod invocation;
pub(crate) mod lock;
pub mod ocx;
pub(crate) mod output_file;
pub mod platform;
pub mod report;
pub(crate) mod version;
