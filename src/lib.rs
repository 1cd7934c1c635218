//! agent-images: builds and runs the container images CLI coding agents run in, on docker
//! (buildx or classic), podman and Apple `container`. ARCHITECTURE.md describes the layers;
//! `backend/` is the only module that knows one engine from another.

pub mod backend;
pub mod build;
pub mod build_inputs;
pub mod cli;
pub mod digest;
pub mod dirs;
pub mod disk;
pub mod engine;
pub mod error;
pub mod exec;
pub mod fingerprint;
pub mod hjk;
pub mod http;
pub mod image_ref;
pub mod input_file;
pub mod interrupt;
pub mod invocation;
pub mod lock;
pub mod ocx;
pub mod output_file;
pub mod platform;
pub mod report;
pub mod version;
