//! The library behind the kubectl-mesh plugins.
