//! The arguments of `kubectl mesh-register`, as clap parses them.

use clap::Parser;

use super::plan::Mode;
use crate::addr::IpList;
use crate::cli::{KubeArgs, WriteArgs};
use crate::names::{self, Annotation, Label};
use crate::ports::PortSpec;

const EXAMPLES: &str = "Examples:
  # Register a VM's gRPC service (Service + ServiceEntry)
  kubectl mesh-register productcatalog 10.128.0.13 grpc:3550

  # Add a second VM to the same service; running the same command again changes nothing
  kubectl mesh-register productcatalog 10.128.0.14 grpc:3550

  # The modern way: a Service with a selector and one WorkloadEntry per VM
  kubectl mesh-register productcatalog 10.128.0.13,10.128.0.14 grpc:3550 --mode workloadentry -s productcatalog

  # Register it in every cluster that calls it: all are checked, then written, or none is
  kubectl mesh-register productcatalog 10.128.0.13 grpc:3550 --context cluster1 --context cluster2

  # Print the objects without a cluster
  kubectl mesh-register productcatalog 10.128.0.13 grpc:3550 --dry-run=client -o yaml

  # Remove one VM; the last one takes the objects with it
  kubectl mesh-register --delete productcatalog 10.128.0.13

  # What is registered, in every namespace
  kubectl mesh-register --list -A";

/// Register a VM service in the Istio mesh: a Service plus a ServiceEntry, WorkloadEntries or Endpoints.
#[derive(Debug, Parser)]
#[command(name = "kubectl mesh-register", bin_name = "kubectl mesh-register", version, after_help = EXAMPLES)]
pub struct Args {
    /// The Service name (DNS-1035: lower-case letters, digits, '-', starting with a letter)
    #[arg(value_name = "SERVICE", value_parser = names::parse_service)]
    pub service: Option<String>,

    /// The VM addresses, IPv4 or IPv6, comma-separated
    #[arg(value_name = "IP[,IP...]")]
    pub ips: Option<IpList>,

    /// Ports as [NAME:]PORT: grpc:3550, http-web:8080, or a bare 3550 (80/8080 http, 443 https, 3306 mysql, else tcp)
    ///
    /// The part of NAME before the first '-' selects the Istio protocol: http, http2, https, grpc,
    /// grpc-web, tcp, tls, mongo, mysql, redis.
    #[arg(value_name = "[NAME:]PORT")]
    pub ports: Vec<PortSpec>,

    /// How the service is represented in the cluster
    #[arg(long, value_enum, default_value = "serviceentry")]
    pub mode: Mode,

    /// Labels for the workloads and objects, KEY=VALUE (repeatable or comma-separated)
    #[arg(
        short = 'l',
        long = "labels",
        value_name = "KEY=VALUE",
        value_delimiter = ','
    )]
    pub labels: Vec<Label>,

    /// Annotations for the Service, KEY=VALUE (repeatable; a value may contain commas)
    #[arg(short = 'a', long = "annotations", value_name = "KEY=VALUE")]
    pub annotations: Vec<Annotation>,

    /// The service account the VM workloads run as
    #[arg(short = 's', long = "serviceaccount", value_name = "NAME", default_value = "default", value_parser = parse_subdomain)]
    pub service_account: String,

    /// The network the VMs are on (WorkloadEntry and ServiceEntry endpoints)
    #[arg(long, value_name = "NETWORK")]
    pub network: Option<String>,

    /// The cluster's DNS domain, for the ServiceEntry host
    #[arg(long, value_name = "DOMAIN", default_value = "cluster.local", value_parser = parse_subdomain)]
    pub cluster_domain: String,

    /// Create the namespace if it does not exist
    #[arg(long)]
    pub create_namespace: bool,

    /// Deregister: remove the IP from SERVICE, and the objects once no address is left
    #[arg(long, conflicts_with = "list")]
    pub delete: bool,

    /// List registered VM services as a table
    #[arg(long)]
    pub list: bool,

    /// With --list: every namespace
    #[arg(short = 'A', long, requires = "list")]
    pub all_namespaces: bool,

    /// kubectl's cluster, auth and verbosity flags.
    #[command(flatten)]
    pub kube: KubeArgs,

    /// `--dry-run`, `-o` and `--force-conflicts`.
    #[command(flatten)]
    pub write: WriteArgs,
}

fn parse_subdomain(s: &str) -> Result<String, String> {
    names::dns1123_subdomain(s).map(|()| s.to_string())
}
