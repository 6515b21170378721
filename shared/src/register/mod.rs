//! kubectl mesh-register (in progress).
