//! The command line of `kubectl mesh-vm`: the clap definitions of `group`, `files`, `refresh`
//! and `status`, and the one list type clap parses itself (`--ports`).

use std::net::IpAddr;
use std::path::PathBuf;
use std::str::FromStr;

use clap::{ArgAction, ArgGroup, Args as ClapArgs, Parser, Subcommand};

use super::group::{self, Locality, Network, ObjectName};
use super::mtls::MtlsMode;
use super::probe::{AnyProbeSpec, ExecProbeSpec, GrpcProbeSpec, HttpProbeSpec, TcpProbeSpec};
use super::token::TokenDuration;
use crate::addr::parse_ip;
use crate::cli::{KubeArgs, ReadArgs, WriteArgs};
use crate::duration::HumanDuration;
use crate::gateway::IngressService;
use crate::names::{Annotation, Label};
use crate::ports::{self, PortSpec};

const EXAMPLES: &str = "Examples:
  # The WorkloadGroup of Istio's VM example (creates the ServiceAccount if missing; the
  # network defaults to the cluster's), and a PERMISSIVE PeerAuthentication for its VMs
  kubectl mesh-vm group analytics -n vm -l app=analytics,version=v0 \\
    --ports http=8080,grpc=8082,tcp=8083 --probe-http 127.0.0.1:8080/ --mtls permissive

  # Print it without a cluster
  kubectl mesh-vm group analytics -n vm --ports http=8080 --dry-run=client -o yaml

  # The five files for a VM of the group (0600, in a 0700 directory)
  kubectl mesh-vm files analytics -n vm --out-dir ./analytics-vm --autoregister

  # Renew the token and the gateway address (e.g. every 30 minutes from cron)
  kubectl mesh-vm refresh analytics -n vm --out-dir ./analytics-vm

  # The group's WorkloadEntries
  kubectl mesh-vm status analytics -n vm";

/// `kubectl mesh-vm`.
#[derive(Debug, Parser)]
#[command(
    name = "kubectl mesh-vm",
    bin_name = "kubectl mesh-vm",
    version,
    about = "Bring VMs into an Istio mesh: the WorkloadGroup, the VM's bootstrap files, renewal, status",
    long_about = "Bring VMs into an Istio mesh.\n\n\
        `group` applies the WorkloadGroup; `files` writes the five files a VM needs \
        (cluster.env, mesh.yaml, root-cert.pem, istio-token, hosts) like `istioctl x workload \
        entry configure`, but deterministic, private (0600) and never with an empty hosts file; \
        `refresh` renews the token and the gateway address; `status` lists the group's WorkloadEntries.",
    after_help = EXAMPLES
)]
pub struct Args {
    /// Cluster selection.
    #[command(flatten)]
    pub kube: KubeArgs,
    /// The subcommand.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create or update a WorkloadGroup (and its ServiceAccount if missing)
    Group(Box<GroupArgs>),
    /// Write cluster.env, mesh.yaml, root-cert.pem, istio-token and hosts for a VM of a group
    Files(Box<FilesArgs>),
    /// Renew istio-token and re-detect the gateway address in a directory `files` wrote
    Refresh(RefreshArgs),
    /// List a group's WorkloadEntries and their health
    Status(StatusArgs),
}

/// A comma-separated list of ports, `grpc=3550,http=8080`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortList(pub Vec<PortSpec>);

impl FromStr for PortList {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        ports::parse_list(s).map(PortList)
    }
}

/// `mesh-vm group`.
#[derive(Debug, ClapArgs)]
#[command(group(ArgGroup::new("probe_kind").multiple(false)))]
pub struct GroupArgs {
    /// Name of the WorkloadGroup (required unless -f)
    #[arg(value_name = "NAME", required_unless_present = "filename")]
    pub name: Option<ObjectName>,

    /// Apply the WorkloadGroup in this file instead of building one from flags
    #[arg(short = 'f', long = "filename", value_name = "FILE",
          conflicts_with_all = ["ports", "labels", "annotations", "service_account", "network", "locality", "weight", "probe_kind"])]
    pub filename: Option<PathBuf>,

    /// Ports of the VMs, NAME=PORT or NAME:PORT, comma-separated (repeatable), e.g. grpc=3550,http=8080
    #[arg(short = 'p', long, value_name = "PORTS", action = ArgAction::Append)]
    pub ports: Vec<PortList>,

    /// Labels of the group's WorkloadEntries, KEY=VALUE (comma-separated or repeated)
    #[arg(short = 'l', long = "labels", value_name = "KEY=VALUE", value_delimiter = ',', action = ArgAction::Append)]
    pub labels: Vec<Label>,

    /// Annotations of the group's WorkloadEntries, KEY=VALUE (repeat the flag; values may hold commas)
    #[arg(short = 'a', long = "annotations", value_name = "KEY=VALUE", action = ArgAction::Append)]
    pub annotations: Vec<Annotation>,

    /// The ServiceAccount the VMs run as (created when missing)
    #[arg(short = 's', long = "service-account", visible_alias = "serviceAccount",
          value_name = "NAME", default_value = group::DEFAULT_SERVICE_ACCOUNT)]
    pub service_account: ObjectName,

    /// The network the VMs are on (default: the cluster's, detected; e.g. network1)
    #[arg(long, value_name = "NETWORK")]
    pub network: Option<Network>,

    /// The VMs' locality, REGION[/ZONE[/SUBZONE]]
    #[arg(long, value_name = "LOCALITY")]
    pub locality: Option<Locality>,

    /// Load-balancing weight of each VM
    #[arg(short = 'w', long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub weight: Option<u32>,

    /// HTTP readiness probe: [http://|https://][HOST:]PORT[/PATH], e.g. 127.0.0.1:8080/ready
    #[arg(long, value_name = "[HOST:]PORT[/PATH]", group = "probe_kind")]
    pub probe_http: Option<HttpProbeSpec>,

    /// TCP readiness probe: [HOST:]PORT
    #[arg(long, value_name = "[HOST:]PORT", group = "probe_kind")]
    pub probe_tcp: Option<TcpProbeSpec>,

    /// gRPC health-check readiness probe: PORT[/SERVICE]
    #[arg(long, value_name = "PORT[/SERVICE]", group = "probe_kind")]
    pub probe_grpc: Option<GrpcProbeSpec>,

    /// Command readiness probe, split at spaces (no shell quoting)
    #[arg(long, value_name = "COMMAND", group = "probe_kind")]
    pub probe_exec: Option<ExecProbeSpec>,

    /// Readiness probe in one flag: KIND:SPEC with KIND http, https, tcp, grpc or exec
    #[arg(long, value_name = "KIND:SPEC", group = "probe_kind")]
    pub probe: Option<AnyProbeSpec>,

    /// Also apply PeerAuthentication NAME selecting exactly the VMs' labels, with this mTLS mode
    #[arg(long, value_enum, value_name = "MODE")]
    pub mtls: Option<MtlsMode>,

    /// Write the PeerAuthentication even when its selector also matches Pods or workloads
    #[arg(long, requires = "mtls")]
    pub force: bool,

    /// Which control plane.
    #[command(flatten)]
    pub control_plane: ControlPlaneArgs,

    /// Time between probes (e.g. 5s)
    #[arg(long, value_name = "DURATION", requires = "probe_kind")]
    pub probe_period: Option<HumanDuration>,

    /// Time before the first probe (e.g. 1s)
    #[arg(long, value_name = "DURATION", requires = "probe_kind")]
    pub probe_initial_delay: Option<HumanDuration>,

    /// Time before a probe times out
    #[arg(long, value_name = "DURATION", requires = "probe_kind")]
    pub probe_timeout: Option<HumanDuration>,

    /// Failures in a row that make a VM unready
    #[arg(long, value_name = "N", requires = "probe_kind")]
    pub probe_failure_threshold: Option<u32>,

    /// Successes in a row that make a VM ready again
    #[arg(long, value_name = "N", requires = "probe_kind")]
    pub probe_success_threshold: Option<u32>,

    /// Output and dry-run.
    #[command(flatten)]
    pub write: WriteArgs,
}

/// The control plane a command reads: its revision and namespace.
#[derive(Debug, Clone, ClapArgs)]
pub struct ControlPlaneArgs {
    /// The control-plane revision (Deployment istiod-REV, ConfigMaps istio-REV and
    /// istio-sidecar-injector-REV, whose mesh config names the root namespace)
    #[arg(short = 'r', long, value_name = "REVISION")]
    pub revision: Option<String>,

    /// The namespace istiod runs in (the root namespace unless the mesh config says otherwise)
    #[arg(
        short = 'i',
        long,
        value_name = "NAMESPACE",
        default_value = "istio-system",
        visible_alias = "istioNamespace"
    )]
    pub istio_namespace: String,
}

/// Flags shared by `files` and `refresh`: the token and the gateway address.
#[derive(Debug, Clone, ClapArgs)]
pub struct RenewArgs {
    /// Lifetime of istio-token (at least 10m; the API server may cap it)
    #[arg(
        long,
        value_name = "DURATION",
        default_value = "1h",
        visible_alias = "tokenDuration"
    )]
    pub token_duration: TokenDuration,

    /// The east-west gateway Service the VM reaches istiod through, SERVICE[.NAMESPACE]
    #[arg(
        long,
        value_name = "SERVICE[.NS]",
        default_value = "istio-eastwestgateway",
        visible_alias = "ingressService"
    )]
    pub ingress_service: IngressService,

    /// The gateway's IP address, instead of reading it from the Service
    #[arg(long, value_name = "IP", value_parser = parse_ip, visible_alias = "ingressIP")]
    pub ingress_ip: Option<IpAddr>,

    /// How long to wait for the gateway Service to get an address (e.g. 5m)
    #[arg(long, value_name = "DURATION", default_value = "0")]
    pub wait: HumanDuration,

    /// Write an empty hosts file when the gateway has no address (istioctl's behaviour)
    #[arg(long)]
    pub allow_empty_hosts: bool,

    /// Which control plane.
    #[command(flatten)]
    pub control_plane: ControlPlaneArgs,
}

/// `mesh-vm files`.
#[derive(Debug, ClapArgs)]
pub struct FilesArgs {
    /// Name of the WorkloadGroup (required unless -f)
    #[arg(value_name = "NAME", required_unless_present = "filename")]
    pub name: Option<ObjectName>,

    /// Read the WorkloadGroup from this file instead of the cluster
    #[arg(
        short = 'f',
        long = "filename",
        value_name = "FILE",
        conflicts_with = "name"
    )]
    pub filename: Option<PathBuf>,

    /// Directory to write the five files into (created 0700 when missing)
    #[arg(long, value_name = "DIR")]
    pub out_dir: PathBuf,

    /// Write into a directory that holds other files
    #[arg(long)]
    pub force: bool,

    /// The cluster ID (default: the injector's clusterName, else istiod's CLUSTER_ID, else Kubernetes)
    #[arg(long, value_name = "ID", visible_alias = "clusterID")]
    pub cluster_id: Option<String>,

    /// Make istiod create a WorkloadEntry when the VM connects
    #[arg(long)]
    pub autoregister: bool,

    /// Capture the VM's DNS queries in the sidecar: true or false
    #[arg(long, value_name = "BOOL", default_value_t = true, num_args = 0..=1, require_equals = true,
          default_missing_value = "true", action = ArgAction::Set)]
    pub capture_dns: bool,

    /// The VM's address on the cluster's network (ISTIO_SVC_IP)
    #[arg(long, value_name = "IP", value_parser = parse_ip, visible_alias = "internalIP")]
    pub internal_ip: Option<IpAddr>,

    /// The VM's address as the mesh reaches it through NAT (ISTIO_SVC_IP, probes rewritten)
    #[arg(long, value_name = "IP", value_parser = parse_ip, conflicts_with = "internal_ip", visible_alias = "externalIP")]
    pub external_ip: Option<IpAddr>,

    /// Token and gateway.
    #[command(flatten)]
    pub renew: RenewArgs,
}

/// `mesh-vm refresh`.
#[derive(Debug, ClapArgs)]
pub struct RefreshArgs {
    /// Name of the WorkloadGroup
    #[arg(value_name = "NAME")]
    pub name: ObjectName,

    /// The directory `mesh-vm files` wrote
    #[arg(long, value_name = "DIR")]
    pub out_dir: PathBuf,

    /// Token and gateway.
    #[command(flatten)]
    pub renew: RenewArgs,
}

/// `mesh-vm status`.
#[derive(Debug, ClapArgs)]
pub struct StatusArgs {
    /// Name of the WorkloadGroup
    #[arg(value_name = "NAME")]
    pub name: ObjectName,

    /// Which control plane.
    #[command(flatten)]
    pub control_plane: ControlPlaneArgs,

    /// Output format.
    #[command(flatten)]
    pub read: ReadArgs,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory as _;

    #[test]
    fn clap_definition_is_consistent() {
        Args::command().debug_assert();
    }

    fn parse(args: &[&str]) -> Result<Args, clap::Error> {
        let mut v = vec!["kubectl-mesh_vm"];
        v.extend_from_slice(args);
        Args::try_parse_from(v)
    }

    #[test]
    fn malformed_input_is_a_usage_error() {
        for bad in [
            &["group", "foo", "--ports", "grpc:"][..],
            &["group", "foo", "--ports", "grpc=0"],
            &["group", "foo", "--ports", "grpc"],
            &["group", "foo", "--probe", "udp:53"],
            &["group", "foo", "--probe-http", "8080", "--probe-tcp", "22"],
            &["group", "foo", "--probe-period", "5s"],
            &["group", "foo", "--locality", "a//b"],
            &["files", "foo", "--out-dir", "d", "--token-duration", "soon"],
            &["files", "foo", "--out-dir", "d", "--wait", "1x"],
            &[
                "files",
                "foo",
                "--out-dir",
                "d",
                "--internal-ip",
                "10.0.0.1",
                "--external-ip",
                "10.0.0.2",
            ],
            &["files", "foo", "--out-dir", "d", "--capture-dns=maybe"],
            &[
                "files",
                "foo",
                "--out-dir",
                "d",
                "--ingress-ip",
                "gw.example.com",
            ],
            &["files", "foo"],
            &["status"],
        ] {
            let e = parse(bad).expect_err(&bad.join(" "));
            assert!(e.use_stderr(), "{bad:?}");
        }
    }

    #[test]
    fn capture_dns_takes_an_optional_value() {
        let files = |extra: &[&str]| {
            let mut v = vec!["files", "foo", "--out-dir", "d"];
            v.extend_from_slice(extra);
            match parse(&v).expect("parse").command {
                Command::Files(f) => f.capture_dns,
                _ => panic!("files"),
            }
        };
        assert!(files(&[]));
        assert!(files(&["--capture-dns"]));
        assert!(!files(&["--capture-dns=false"]));
    }
}
