//! The library behind the kubectl-mesh plugins: shared flags, typed input, pure object builders,
//! and the single module (`api`) that talks to Kubernetes.
//!
//! Each plugin's `main` parses its `cli` struct, calls `<plugin>::run`, and maps the error
//! to an exit code through `app` and `error`.

pub mod addr;
pub mod api;
pub mod app;
pub mod cli;
pub mod complete;
pub mod duration;
pub mod error;
pub mod gateway;
pub mod interrupt;
pub mod io;
pub mod istio;
pub mod kubeconfig;
pub mod names;
pub mod objects;
pub mod output;
pub mod overrides;
pub mod ports;
pub mod prom;
pub mod prompt;
pub mod proxy;
pub mod table;
pub mod time;
pub mod verbose;
pub mod write;

pub mod link;
pub mod register;
pub mod split;
pub mod vm;

pub use error::MeshError;
pub use io::Io;
