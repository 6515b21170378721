//! kube-emu: an in-memory Kubernetes API server for tests.
