//! `kubectl mesh-vm`: the WorkloadGroup for a set of VMs, the five files each VM needs to join the
//! mesh, renewing them, and the group's WorkloadEntries.
//!
//! `group` applies the WorkloadGroup; `files` does what `istioctl x workload entry configure`
//! does, deterministically and without its traps (empty `hosts`, world-readable token, wrong
//! cluster ID); `refresh` re-mints the token and re-detects the gateway for a cron job; `status`
//! lists the entries.

pub mod bootstrap;
pub mod control_plane;
pub mod detect;

#[cfg(test)]
mod golden;
pub mod goyaml;
pub mod group;
pub mod mtls;
pub mod outdir;
pub mod probe;
pub mod status;
pub mod token;

use std::collections::BTreeMap;
use std::io::Write as _;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::{Duration, Instant};

use crate::time;

use anyhow::Result;
use clap::{ArgAction, ArgGroup, Args as ClapArgs, Parser, Subcommand};
use serde_json::Value;

use crate::addr::parse_ip;
use crate::api::Cluster;
use crate::cli::{DryRun, KubeArgs, OutputFormat, ReadArgs, WriteArgs};
use crate::duration::HumanDuration;
use crate::error::usage;
use crate::io::Io;
use crate::names::{self, Annotation, Label};
use crate::objects;
use crate::output;
use crate::ports::{self, PortSpec};
use crate::write::{self, Step};

use crate::gateway::{self, Found, IngressService};
use bootstrap::SvcIp;
use control_plane::Object;
use detect::ControlPlane;
use group::{Group, Locality, Network, ObjectName, Template};
use mtls::MtlsMode;
use probe::{AnyProbeSpec, ExecProbeSpec, GrpcProbeSpec, HttpProbeSpec, Probe, TcpProbeSpec};
use token::TokenDuration;

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

/// Runs `kubectl mesh-vm`.
pub async fn run(args: Args, io: &mut Io) -> Result<()> {
    let kube = args.kube;
    if let Some(ns) = &kube.namespace {
        names::dns1123_label(ns).map_err(|e| usage("--namespace", e))?;
    }
    match args.command {
        Command::Group(g) => run_group(&kube, *g, io).await,
        Command::Files(f) => run_files(&kube, *f, io).await,
        Command::Refresh(r) => run_refresh(&kube, r, io).await,
        Command::Status(s) => run_status(&kube, s, io).await,
    }
}

fn secs(d: Option<HumanDuration>) -> u32 {
    d.map_or(0, |d| u32::try_from(d.0.as_secs()).unwrap_or(u32::MAX))
}

/// The group the flags describe.
pub fn group_from_flags(a: &GroupArgs, name: &str, namespace: &str) -> Result<Group> {
    let all: Vec<PortSpec> = a.ports.iter().flat_map(|l| l.0.clone()).collect();
    ports::check_unique(&all).map_err(|e| usage("--ports", e))?;
    let mut probe = if let Some(h) = &a.probe_http {
        Some(Probe {
            http_get: Some(h.0.clone()),
            ..Probe::default()
        })
    } else if let Some(t) = &a.probe_tcp {
        Some(Probe {
            tcp_socket: Some(t.0.clone()),
            ..Probe::default()
        })
    } else if let Some(g) = &a.probe_grpc {
        Some(Probe {
            grpc: Some(g.0.clone()),
            ..Probe::default()
        })
    } else if let Some(e) = &a.probe_exec {
        Some(Probe {
            exec: Some(e.0.clone()),
            ..Probe::default()
        })
    } else {
        a.probe.as_ref().map(|p| p.0.clone())
    };
    if let Some(p) = probe.as_mut() {
        p.period_seconds = secs(a.probe_period);
        p.initial_delay_seconds = secs(a.probe_initial_delay);
        p.timeout_seconds = secs(a.probe_timeout);
        p.failure_threshold = a.probe_failure_threshold.unwrap_or(0);
        p.success_threshold = a.probe_success_threshold.unwrap_or(0);
    }
    Ok(Group {
        name: name.to_string(),
        namespace: namespace.to_string(),
        labels: names::label_map(&a.labels),
        annotations: names::annotation_map(&a.annotations),
        template: Template {
            ports: all.iter().map(|p| (p.name.clone(), p.number)).collect(),
            service_account: a.service_account.0.clone(),
            network: a.network.as_ref().map(|n| n.0.clone()).unwrap_or_default(),
            locality: a.locality.as_ref().map(|l| l.0.clone()).unwrap_or_default(),
            weight: a.weight.unwrap_or(0),
            labels: BTreeMap::new(),
        },
        probe,
        ..Group::default()
    })
}

/// Reads the group and checks names: from `-f` or from flags.
fn parse_group(a: &GroupArgs, namespace: &str) -> Result<Group> {
    let g = match &a.filename {
        Some(path) => {
            let g = group::from_file(path, namespace)?;
            if !namespace.is_empty() && g.namespace != namespace {
                return Err(usage(
                    "--namespace",
                    format!(
                        "{} puts WorkloadGroup {} in namespace {:?}, not {namespace:?}",
                        path.display(),
                        g.name,
                        g.namespace
                    ),
                ));
            }
            if let Some(n) = &a.name {
                if n.0 != g.name {
                    return Err(usage(
                        "NAME",
                        format!(
                            "{} names WorkloadGroup {:?}, not {:?}",
                            path.display(),
                            g.name,
                            n.0
                        ),
                    ));
                }
            }
            g
        }
        None => {
            let name = a.name.as_ref().map(|n| n.0.as_str()).unwrap_or("");
            group_from_flags(a, name, namespace)?
        }
    };
    Ok(g.with_defaults())
}

/// The labels `--mtls` would select on, refused when there are none: a PeerAuthentication
/// without a selector applies to the whole namespace.
fn mtls_selector(group: &Group) -> Result<BTreeMap<String, String>> {
    let labels = group.workload_labels();
    if labels.is_empty() {
        return Err(usage(
            "--mtls",
            format!(
                "WorkloadGroup {} has no labels (-l): a PeerAuthentication without a selector would apply to every workload of namespace {}",
                group.name, group.namespace
            ),
        ));
    }
    Ok(labels)
}

fn selector_text(labels: &BTreeMap<String, String>) -> String {
    labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

async fn run_group(kube: &KubeArgs, a: GroupArgs, io: &mut Io) -> Result<()> {
    check_control_plane(
        a.control_plane.revision.as_deref(),
        &a.control_plane.istio_namespace,
    )?;
    if a.write.dry_run == DryRun::Client {
        let group = parse_group(&a, &kube.offline_namespace())?;
        let mut objs = vec![group.to_object(objects::ISTIO_VERSIONS[0])];
        if let Some(mode) = a.mtls {
            mtls_selector(&group)?;
            objs.push(mtls::peer_authentication(
                &group,
                mode,
                objects::SECURITY_VERSIONS[0],
            ));
        }
        let format = a.write.output.unwrap_or(OutputFormat::Yaml);
        return output::print_objects(&mut io.out, format, &objs);
    }
    let ns_flag = kube.namespace.clone();
    let mut group = parse_group(&a, ns_flag.as_deref().unwrap_or(""))?;
    let selector = match a.mtls {
        Some(_) => Some(mtls_selector(&group)?),
        None => None,
    };
    let cluster = Cluster::connect_one(kube).await?;
    if group.namespace.is_empty() {
        group.namespace = cluster.namespace.clone();
    }
    group_network(&cluster, &a, &mut group, io).await?;
    let version = cluster.istio_version().await?;
    let kind = objects::istio("WorkloadGroup", &version);
    let desired = group.to_object(&version);
    let existing = cluster
        .get(&kind, Some(&group.namespace), &group.name)
        .await?;
    let sa_kind = objects::core("ServiceAccount");
    let sa = &group.template.service_account;
    let mut steps = Vec::new();
    if cluster
        .get(&sa_kind, Some(&group.namespace), sa)
        .await?
        .is_none()
    {
        steps.push(Step::apply(
            group::service_account(&group.namespace, sa),
            None,
        ));
    }
    steps.push(Step::apply(desired, existing));
    if let (Some(mode), Some(selector)) = (a.mtls, selector) {
        check_mtls_selector(&cluster, &group, &selector, a.force, io).await?;
        let version = cluster.security_version().await?;
        let pa = mtls::peer_authentication(&group, mode, &version);
        let existing = cluster
            .get(
                &objects::peer_authentication(&version),
                Some(&group.namespace),
                &group.name,
            )
            .await?;
        steps.push(Step::apply(pa, existing));
    }
    let results = write::execute(&cluster, steps, a.write.mode()).await?;
    output::print_results(&mut io.out, a.write.output, a.write.dry_run, &results)
}

/// Detects the cluster's network and prints it; a group from flags without `--network` takes
/// it, and a network that differs is a warning naming both. With `--network` given the
/// detection is only a check, so a failure to read is a warning rather than the end.
async fn group_network(
    cluster: &Cluster,
    a: &GroupArgs,
    group: &mut Group,
    io: &mut Io,
) -> Result<()> {
    let mut cp = ControlPlane::new(
        cluster,
        &a.control_plane.istio_namespace,
        a.control_plane.revision.as_deref(),
    );
    let given = if a.network.is_some() {
        Some(format!("--network {}", group.template.network))
    } else if let (Some(path), false) = (&a.filename, group.template.network.is_empty()) {
        Some(format!(
            "network {} of {}",
            group.template.network,
            path.display()
        ))
    } else {
        None
    };
    let net = match cp.network(None).await {
        Ok(net) => net,
        Err(e) if given.is_some() => {
            return Ok(io.warn(format!(
                "cannot check the group's network against the cluster's: {}",
                crate::error::one_line(&e)
            ))?)
        }
        Err(e) => {
            return Err(e.context("cannot detect the cluster's network (give it with --network)"))
        }
    };
    io.note(format!("network: {net}"))?;
    match given {
        None if a.filename.is_none() => group.template.network = net.name,
        Some(given) if !net.name.is_empty() && group.template.network != net.name => {
            io.warn(format!(
                "{given} is not the cluster's network {} ({}): the VMs will reach the cluster's pods through its east-west gateway, not at their pod IPs; leave --network out to use {}",
                net.name, net.source, net.name
            ))?
        }
        _ => {}
    }
    Ok(())
}

/// Refuses (exit 2) a PeerAuthentication whose selector also matches Pods or workload templates
/// of the namespace, naming them; with `--force`, names them in a warning.
async fn check_mtls_selector(
    cluster: &Cluster,
    group: &Group,
    selector: &BTreeMap<String, String>,
    force: bool,
    io: &mut Io,
) -> Result<()> {
    let ns = &group.namespace;
    let text = selector_text(selector);
    let mut found = cluster
        .list(&objects::core("Pod"), Some(ns), Some(&text))
        .await?;
    for kind in [
        "Deployment",
        "StatefulSet",
        "DaemonSet",
        "ReplicaSet",
        "Job",
        "CronJob",
    ] {
        found.extend(
            cluster
                .list(&objects::workload(kind), Some(ns), None)
                .await?,
        );
    }
    let caught = mtls::caught(selector, &found);
    if caught.is_empty() {
        return Ok(());
    }
    let what = format!(
        "PeerAuthentication {ns}/{} selects {text}, which also matches {} in namespace {ns}",
        group.name,
        caught.join(", ")
    );
    if force {
        io.warn(format!("{what}: their mTLS mode changes too (--force)"))?;
        return Ok(());
    }
    Err(usage(
        "--mtls",
        format!("{what}, not only the VMs: give the group a label those lack (-l), or pass --force; nothing was written"),
    ))
}

/// Reads the group a `files`/`refresh`/`status` command is about from the cluster.
async fn fetch_group(cluster: &Cluster, namespace: &str, name: &str) -> Result<Group> {
    let version = cluster.istio_version().await?;
    let kind = objects::istio("WorkloadGroup", &version);
    match cluster.get(&kind, Some(namespace), name).await? {
        Some(obj) => Ok(Group::from_cluster(&obj)?.with_defaults()),
        None => anyhow::bail!(
            "WorkloadGroup {namespace}/{name} not found in context {:?}: create it with `kubectl mesh-vm group {name} -n {namespace} ...`",
            cluster.context
        ),
    }
}

async fn get_configmap(cluster: &Cluster, namespace: &str, name: &str) -> Result<Option<Value>> {
    cluster
        .get(&objects::core("ConfigMap"), Some(namespace), name)
        .await
}

/// Where the gateway address came from, for messages.
struct Gateway {
    ip: IpAddr,
    how: String,
}

/// Finds the gateway address, polling up to `--wait`. `Ok(None)` only with `--allow-empty-hosts`.
async fn gateway_address(
    cluster: &Cluster,
    renew: &RenewArgs,
    io: &mut Io,
) -> Result<Option<Gateway>> {
    if let Some(ip) = renew.ingress_ip {
        return Ok(Some(Gateway {
            ip,
            how: "from --ingress-ip".into(),
        }));
    }
    let svc_ns = renew
        .ingress_service
        .namespace
        .clone()
        .unwrap_or_else(|| renew.control_plane.istio_namespace.clone());
    let svc_name = renew.ingress_service.name.clone();
    let what = format!("Service {svc_ns}/{svc_name}");
    let deadline = Instant::now() + renew.wait.0;
    let spinner = (io.terminal && renew.wait.0 > Duration::ZERO).then(|| {
        let s = indicatif::ProgressBar::new_spinner();
        s.set_message(format!("waiting for an address on {what}"));
        s.enable_steady_tick(Duration::from_millis(120));
        s
    });
    let result = loop {
        let svc = cluster
            .get(&objects::core("Service"), Some(&svc_ns), &svc_name)
            .await?;
        let why = match svc.as_ref().map(gateway::from_service) {
            Some(Found::LoadBalancerIp(ip)) => {
                break Ok(Gateway {
                    ip,
                    how: format!("load-balancer IP of {what}"),
                })
            }
            Some(Found::ExternalIp(ip)) => {
                break Ok(Gateway {
                    ip,
                    how: format!("external IP of {what}"),
                })
            }
            Some(Found::Hostname(h)) => match gateway::resolve(&h) {
                Ok(ip) => {
                    if let Some(s) = &spinner {
                        s.finish_and_clear();
                    }
                    io.warn(format!(
                        "{what} has a load-balancer hostname ({h}), resolved to {ip}; the address may change: keep hosts fresh with `kubectl mesh-vm refresh` (or point the VM's DNS at {h})"
                    ))?;
                    break Ok(Gateway {
                        ip,
                        how: format!("{h}, the load-balancer hostname of {what}"),
                    });
                }
                Err(e) => e,
            },
            Some(Found::Nothing) => {
                format!("{what} has no load-balancer IP, external IP or hostname yet")
            }
            None => {
                format!("{what} not found: is the east-west gateway installed? (--ingress-service)")
            }
        };
        let now = Instant::now();
        if now >= deadline {
            break Err(why);
        }
        tokio::time::sleep((deadline - now).min(Duration::from_secs(1))).await;
    };
    if let Some(s) = spinner {
        s.finish_and_clear();
    }
    match result {
        Ok(g) => Ok(Some(g)),
        Err(why) if renew.allow_empty_hosts => {
            io.warn(format!("{why}; going on without a gateway address (--allow-empty-hosts): the VM cannot reach istiod until its hosts file has one"))?;
            Ok(None)
        }
        Err(why) => {
            let waited = if renew.wait.0 > Duration::ZERO {
                format!(" after waiting {}", renew.wait)
            } else {
                String::new()
            };
            anyhow::bail!(
                "no address for the VM to reach istiod through{waited}: {why}; wait for one (--wait 5m), give it (--ingress-ip IP), or accept an empty hosts file (--allow-empty-hosts); no file was written"
            )
        }
    }
}

/// Mints the token for the group's ServiceAccount.
async fn mint_token(
    cluster: &Cluster,
    group: &Group,
    lifetime: TokenDuration,
) -> Result<token::Minted> {
    let sa = &group.template.service_account;
    let ns = &group.namespace;
    let sa_kind = objects::core("ServiceAccount");
    if cluster.get(&sa_kind, Some(ns), sa).await?.is_none() {
        anyhow::bail!(
            "ServiceAccount {ns}/{sa} not found in context {:?}: the VMs of WorkloadGroup {} run as it; create it (`kubectl mesh-vm group` does)",
            cluster.context,
            group.name
        );
    }
    let body = token::request(ns, sa, lifetime);
    let answer = cluster
        .post_subresource(&sa_kind, ns, sa, "token", &body)
        .await?;
    token::from_response(&answer).map_err(|e| anyhow::anyhow!("{e}"))
}

fn expiry_words(expires: &str) -> String {
    match time::parse_rfc3339(expires) {
        Some(t) => format!(
            "expires {expires} (in {})",
            time::span_nearest(t - time::now())
        ),
        None if expires.is_empty() => "expiry unknown".into(),
        None => format!("expires {expires}"),
    }
}

async fn run_files(kube: &KubeArgs, a: FilesArgs, io: &mut Io) -> Result<()> {
    if let Some(id) = &a.cluster_id {
        if id.is_empty() || id.chars().any(char::is_whitespace) {
            return Err(usage(
                "--cluster-id",
                "expected a non-empty ID without spaces",
            ));
        }
    }
    check_revision(&a.renew)?;
    let state = outdir::check(&a.out_dir, a.force)?;
    let file_group = match &a.filename {
        Some(p) => {
            Some(group::from_file(p, kube.namespace.as_deref().unwrap_or(""))?.with_defaults())
        }
        None => None,
    };
    let cluster = Cluster::connect_one(kube).await?;
    let group = match file_group {
        Some(mut g) => {
            if g.namespace.is_empty() {
                g.namespace = cluster.namespace.clone();
            }
            g
        }
        None => {
            let name = a.name.as_ref().map(|n| n.0.as_str()).unwrap_or("");
            fetch_group(&cluster, &cluster.namespace, name).await?
        }
    };
    let renew = &a.renew;
    let ins = &renew.control_plane.istio_namespace;
    let rev = renew.control_plane.revision.as_deref();

    let mesh_cm_name = control_plane::with_revision("istio", rev);
    let mesh_cm = get_configmap(&cluster, ins, &mesh_cm_name).await?.ok_or_else(|| {
        anyhow::anyhow!(
            "ConfigMap {ins}/{mesh_cm_name} not found in context {:?}: is Istio installed in {ins} (--istio-namespace)? A revisioned control plane needs --revision",
            cluster.context
        )
    })?;
    let mesh = control_plane::parse_mesh(mesh_cm["data"]["mesh"].as_str().unwrap_or(""))
        .map_err(|e| anyhow::anyhow!("ConfigMap {ins}/{mesh_cm_name}: {e}"))?;

    let mut cp = ControlPlane::new(&cluster, ins, rev);
    cp.preload(Object::Mesh, Some(mesh_cm));
    let (cluster_id, source) = cp.cluster_id(a.cluster_id.as_deref()).await?;
    io.note(format!("cluster ID: {cluster_id} ({source})"))?;
    let network = cp.network(Some(&cluster_id)).await?;
    io.note(format!("network: {network}"))?;

    let gns = &group.namespace;
    let root = get_configmap(&cluster, gns, control_plane::ROOT_CERT_CONFIGMAP).await?;
    let root_cert = root
        .as_ref()
        .and_then(|cm| cm["data"][control_plane::ROOT_CERT_KEY].as_str())
        .filter(|s| !s.is_empty())
        .map(String::from)
        .ok_or_else(|| {
            let what = if root.is_some() { "has no root-cert.pem key" } else { "not found" };
            anyhow::anyhow!(
                "ConfigMap {} {what} in namespace {gns} (context {:?}): istiod writes it into every namespace it watches, so istiod may not be running, or may not watch {gns} (discoverySelectors)",
                control_plane::ROOT_CERT_CONFIGMAP,
                cluster.context
            )
        })?;

    let gateway = gateway_address(&cluster, renew, io).await?;
    if let Some(g) = &gateway {
        io.note(format!("gateway: {} ({})", g.ip, g.how))?;
    }
    let gateway_name = format!(
        "Service {}/{}{}",
        renew.ingress_service.namespace.as_deref().unwrap_or(ins),
        renew.ingress_service.name,
        gateway
            .as_ref()
            .map(|g| format!(" ({})", g.ip))
            .unwrap_or_default()
    );
    io.note(format!(
        "path: {}",
        control_plane::path(&group.template.network, &network.name, &gateway_name)
    ))?;
    let svc_ip = match (a.internal_ip, a.external_ip) {
        (Some(ip), _) => Some(SvcIp::Internal(ip)),
        (None, Some(ip)) => Some(SvcIp::External(ip)),
        _ => None,
    };
    let opts = bootstrap::Options {
        cluster_id,
        istio_namespace: ins.clone(),
        revision: renew.control_plane.revision.clone(),
        autoregister: a.autoregister,
        capture_dns: a.capture_dns,
        svc_ip,
    };
    let built = bootstrap::build(&group, &mesh, &opts)
        .map_err(|e| anyhow::anyhow!("WorkloadGroup {gns}/{}: {e}", group.name))?;
    for w in &built.warnings {
        io.warn(w)?;
    }
    let hosts = bootstrap::hosts(gateway.map(|g| g.ip), ins, rev);

    let minted = mint_token(&cluster, &group, renew.token_duration).await?;

    if let Some(w) = outdir::prepare(&a.out_dir, &state)? {
        io.warn(w)?;
    }
    let written = outdir::write_all(
        &a.out_dir,
        &[
            ("mesh.yaml", built.mesh_yaml.as_bytes()),
            ("cluster.env", built.cluster_env.as_bytes()),
            ("root-cert.pem", root_cert.as_bytes()),
            ("istio-token", minted.token.as_bytes()),
            ("hosts", hosts.as_bytes()),
        ],
    )?;
    io.note(format!(
        "istio-token: ServiceAccount {gns}/{}, audience {}, {}",
        group.template.service_account,
        token::AUDIENCE,
        expiry_words(&minted.expires)
    ))?;
    for path in written {
        writeln!(io.out, "{} written", path.display())?;
    }
    Ok(())
}

fn check_revision(renew: &RenewArgs) -> Result<()> {
    check_control_plane(
        renew.control_plane.revision.as_deref(),
        &renew.control_plane.istio_namespace,
    )
}

fn check_control_plane(revision: Option<&str>, istio_namespace: &str) -> Result<()> {
    if let Some(r) = revision {
        names::dns1123_label(r).map_err(|e| usage("--revision", e))?;
    }
    names::dns1123_label(istio_namespace).map_err(|e| usage("--istio-namespace", e))?;
    Ok(())
}

fn read_existing(dir: &Path, name: &str) -> Option<String> {
    let p = dir.join(name);
    let meta = std::fs::symlink_metadata(&p).ok()?;
    if !meta.is_file() {
        return None;
    }
    std::fs::read_to_string(p).ok()
}

async fn run_refresh(kube: &KubeArgs, a: RefreshArgs, io: &mut Io) -> Result<()> {
    check_revision(&a.renew)?;
    match std::fs::symlink_metadata(&a.out_dir) {
        Ok(m) if m.file_type().is_symlink() => {
            return Err(usage(
                "--out-dir",
                format!(
                    "{} is a symbolic link: give the real directory",
                    a.out_dir.display()
                ),
            ))
        }
        Ok(m) if m.is_dir() => {}
        _ => {
            return Err(usage(
                "--out-dir",
                format!(
                    "{} is not a directory written by `kubectl mesh-vm files`: run that first",
                    a.out_dir.display()
                ),
            ))
        }
    }
    let cluster = Cluster::connect_one(kube).await?;
    let group = fetch_group(&cluster, &cluster.namespace, &a.name.0).await?;
    let renew = &a.renew;
    let gateway = gateway_address(&cluster, renew, io).await?;
    let minted = mint_token(&cluster, &group, renew.token_duration).await?;

    let old_hosts = read_existing(&a.out_dir, "hosts");
    let old_exp = read_existing(&a.out_dir, "istio-token").and_then(|t| token::jwt_expiry(&t));
    let mut files: Vec<(&str, Vec<u8>)> = vec![("istio-token", minted.token.clone().into_bytes())];
    let new_hosts = gateway.as_ref().map(|g| {
        bootstrap::hosts(
            Some(g.ip),
            &renew.control_plane.istio_namespace,
            renew.control_plane.revision.as_deref(),
        )
    });
    if let Some(h) = &new_hosts {
        files.push(("hosts", h.clone().into_bytes()));
    }
    let refs: Vec<(&str, &[u8])> = files.iter().map(|(n, d)| (*n, d.as_slice())).collect();
    outdir::write_all(&a.out_dir, &refs)?;

    let was = match old_exp {
        Some(t) if t <= time::now() => {
            format!("; the old one expired {} ago", time::span(time::now() - t))
        }
        Some(t) => format!("; the old one had {} left", time::span(t - time::now())),
        None => String::new(),
    };
    writeln!(
        io.out,
        "istio-token renewed: {}{was}",
        expiry_words(&minted.expires)
    )?;
    match (&new_hosts, &old_hosts) {
        (None, _) => writeln!(io.out, "hosts left as it was: the gateway has no address")?,
        (Some(new), Some(old)) if new == old => {
            writeln!(io.out, "hosts unchanged: {}", new.trim_end())?
        }
        (Some(new), Some(old)) if !old.trim().is_empty() => writeln!(
            io.out,
            "hosts changed: {} (was {})",
            new.trim_end(),
            old.trim_end()
        )?,
        (Some(new), _) => writeln!(io.out, "hosts written: {}", new.trim_end())?,
    }
    Ok(())
}

async fn run_status(kube: &KubeArgs, a: StatusArgs, io: &mut Io) -> Result<()> {
    check_control_plane(
        a.control_plane.revision.as_deref(),
        &a.control_plane.istio_namespace,
    )?;
    let cluster = Cluster::connect_one(kube).await?;
    let ns = cluster.namespace.clone();
    let name = &a.name.0;
    let version = cluster.istio_version().await?;
    let group_obj = cluster
        .get(&objects::istio("WorkloadGroup", &version), Some(&ns), name)
        .await?;
    let group = match &group_obj {
        Some(obj) => Some(Group::from_cluster(obj)?),
        None => None,
    };
    let group_labels = group.as_ref().map(|g| g.labels.clone()).unwrap_or_default();
    let entries: Vec<Value> = cluster
        .list(&objects::istio("WorkloadEntry", &version), Some(&ns), None)
        .await?
        .into_iter()
        .filter(|e| status::belongs(e, name, &group_labels))
        .collect();
    if group_obj.is_none() && entries.is_empty() {
        anyhow::bail!(
            "WorkloadGroup {ns}/{name} not found in context {:?}, and no WorkloadEntry names it",
            cluster.context
        );
    }
    if let Some(format) = a.read.output {
        let objs: Vec<Value> = entries.into_iter().map(objects::for_display).collect();
        return output::print_objects(&mut io.out, format, &objs);
    }
    // The entries are what status is for: policies that cannot be read leave MTLS unknown.
    let policies = match Policies::read(&cluster, &ns, &a).await {
        Ok(p) => Some(p),
        Err(e) => {
            io.warn(format!("mTLS mode unknown: {}", crate::error::one_line(&e)))?;
            None
        }
    };
    let effective = |labels: &BTreeMap<String, String>| match &policies {
        Some(p) => p.effective(labels),
        None => mtls::Effective::unknown(),
    };
    if entries.is_empty() {
        let labels = group.map(|g| g.workload_labels()).unwrap_or_default();
        let e = effective(&labels);
        io.note(format!(
            "No WorkloadEntries found for WorkloadGroup {ns}/{name}. mTLS for its workloads: {} (policy {})",
            e.column(),
            e.policy
        ))?;
        return Ok(());
    }
    let mtls: Vec<mtls::Effective> = entries
        .iter()
        .map(|e| effective(&status::labels(e)))
        .collect();
    io.out
        .write_all(status::table(&entries, &mtls, time::now()).as_bytes())?;
    Ok(())
}

/// The PeerAuthentications that can decide a workload's mode: its namespace's and the root
/// namespace's (mesh config `rootNamespace`, else the Istio namespace).
struct Policies {
    in_namespace: Vec<Value>,
    in_root: Vec<Value>,
}

impl Policies {
    async fn read(cluster: &Cluster, ns: &str, a: &StatusArgs) -> Result<Policies> {
        let version = cluster.security_version().await?;
        let kind = objects::peer_authentication(&version);
        let mut cp = ControlPlane::new(
            cluster,
            &a.control_plane.istio_namespace,
            a.control_plane.revision.as_deref(),
        );
        let mesh = match cp.object(Object::Mesh).await? {
            Some(cm) => control_plane::parse_mesh(cm["data"]["mesh"].as_str().unwrap_or(""))
                .map_err(|e| {
                    anyhow::anyhow!(
                        "{}: {e}",
                        Object::Mesh.describe(
                            &a.control_plane.istio_namespace,
                            a.control_plane.revision.as_deref()
                        )
                    )
                })?,
            None => Value::Null,
        };
        let root = mesh["rootNamespace"]
            .as_str()
            .filter(|r| !r.is_empty())
            .unwrap_or(&a.control_plane.istio_namespace)
            .to_string();
        let in_namespace = cluster.list(&kind, Some(ns), None).await?;
        let in_root = if root == ns {
            in_namespace.clone()
        } else {
            cluster.list(&kind, Some(&root), None).await?
        };
        Ok(Policies {
            in_namespace,
            in_root,
        })
    }

    fn effective(&self, labels: &BTreeMap<String, String>) -> mtls::Effective {
        mtls::effective(labels, &self.in_namespace, &self.in_root)
    }
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
    fn both_port_spellings_build_the_same_group() {
        let a = parse(&[
            "group",
            "foo",
            "-p",
            "grpc:3550,http=8080",
            "-l",
            "app=foo",
            "--probe-http",
            "127.0.0.1:8080/",
        ])
        .expect("parse");
        let Command::Group(g) = a.command else {
            panic!("group")
        };
        let group = group_from_flags(&g, "foo", "bar").expect("group");
        assert_eq!(group.template.ports.get("grpc"), Some(&3550));
        assert_eq!(group.template.ports.get("http"), Some(&8080));
        assert_eq!(group.template.service_account, "default");
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
