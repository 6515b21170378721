//! kubectl mesh-split (in progress).
