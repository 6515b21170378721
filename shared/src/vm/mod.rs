//! kubectl mesh-vm (in progress).
