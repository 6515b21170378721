//! One file per verb of `kubectl mesh-vm`: `group`, `files`, `refresh`, `status`.

pub(super) mod files;
pub(super) mod group;
pub(super) mod refresh;
pub(super) mod status;
