//! kubectl mesh-link (in progress).
