//! One integration test binary (as ripgrep does): the real `ocx`/`hjk` binaries against fake
//! engines, real podman and real dockerd.

mod apple;
mod boot;
mod boot_gate;
mod docs;
mod faults;
mod faults_input;
mod faults_registry;
mod faults_store;
mod fuzz;
mod gates;
mod hjk;
mod hjk_devcontainer;
mod hjk_engines;
mod http_tls;
mod images_derived;
mod images_labels;
mod images_lint;
mod images_runtime;
mod ocx_bases;
mod ocx_engines;
mod ocx_fake;
mod ocx_input;
mod ocx_integrity;
mod release;
mod release_guards;
mod supply_chain;
mod util;
mod workflow_lint;
