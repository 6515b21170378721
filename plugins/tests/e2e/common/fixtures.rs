//! Seed objects the end-to-end tests share with the benchmark (`tests/bench`): each is a file in
//! `tests/fixtures/`, compiled in, so both seed exactly the same objects.

/// cluster1's migration VirtualService at 100/0, as the sample's `vs-0-cluster1.yaml` has it.
pub const VS_CLUSTER1: &str = include_str!("../../../../tests/fixtures/vs-0-cluster1.yaml");

/// cluster2's migration VirtualService at 100/0, as the sample's `vs-0-cluster2.yaml` has it.
pub const VS_CLUSTER2: &str = include_str!("../../../../tests/fixtures/vs-0-cluster2.yaml");

/// Both migration VirtualServices, each routed to its cluster by `kube-emu/cluster`.
pub const MIGRATION: &str = include_str!("../../../../tests/fixtures/migration.yaml");

/// cluster1's east-west gateway (35.0.0.1:15443), for mesh-link.
pub const GATEWAY_CLUSTER1: &str = include_str!("../../../../tests/fixtures/gateway-cluster1.yaml");

/// The Service `productcatalogservice` (grpc 3550), in every cluster.
pub const PRODUCTCATALOGSERVICE: &str =
    include_str!("../../../../tests/fixtures/productcatalogservice.yaml");
