//! The end-to-end suites, one module per plugin or concern, linked into one test binary
//! (`cargo test -p kubectl-mesh --test e2e`) rather than one binary per suite, each of which
//! linked the whole harness, kube-emu and mesh-shared again. Filter by module path:
//! `cargo test -p kubectl-mesh --test e2e split::`.

#[macro_use]
mod common;

mod bad_input;
mod completion;
mod faults;
mod hardening;
mod krew;
mod kubectl_flags;
mod link;
mod link_remote;
mod proxy;
mod quickstart;
mod realcluster;
mod register;
mod security;
mod split;
mod split_metrics;
mod vm;
mod vm_agent;
