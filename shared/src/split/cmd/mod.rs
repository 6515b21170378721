//! One file per verb of `kubectl mesh-split`: set weights, `undo`, `status`.

pub(super) mod set;
pub(super) mod status;
pub(super) mod undo;
