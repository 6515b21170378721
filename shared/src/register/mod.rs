//! `kubectl mesh-register`: register (and deregister, and list) a VM service in the mesh.

mod build;
mod listing;
mod plan;
mod several;

pub use build::{
    endpoints, fresh, service, service_entry, workload_entry, SERVICE_ACCOUNTS_ANNOTATION,
};
pub use plan::{service_entry_name, workload_entry_name, Mode, Registration};

use std::net::IpAddr;

use anyhow::Result;
use clap::Parser;
use serde_json::{json, Value};

use crate::addr::IpList;
use crate::api::{Cluster, WriteMode};
use crate::cli::{DryRun, KubeArgs, WriteArgs};
use crate::error::usage;
use crate::names::{self, Annotation, Label};
use crate::objects::{self, MANAGED_BY_KEY, MANAGED_BY_VALUE};
use crate::output;
use crate::ports::{self, PortSpec};
use crate::write::{self, restorable, Step};
use crate::Io;

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

    #[allow(missing_docs)]
    #[command(flatten)]
    pub kube: KubeArgs,

    #[allow(missing_docs)]
    #[command(flatten)]
    pub write: WriteArgs,
}

fn parse_subdomain(s: &str) -> Result<String, String> {
    names::dns1123_subdomain(s).map(|()| s.to_string())
}

enum Action {
    Register(Registration),
    Delete { service: String, ip: IpAddr },
    List,
}

const SYNOPSIS: &str = "kubectl mesh-register SERVICE IP[,IP...] [NAME:]PORT...";

fn action(args: &Args, namespace: &str) -> Result<Action> {
    if args.list {
        if args.service.is_some() {
            return Err(usage("--list", "takes no SERVICE, IP or PORT arguments"));
        }
        return Ok(Action::List);
    }
    let service = args
        .service
        .clone()
        .ok_or_else(|| usage("SERVICE", format!("missing: {SYNOPSIS}")))?;
    let ips = args
        .ips
        .clone()
        .ok_or_else(|| usage("IP", format!("missing: {SYNOPSIS}")))?;
    if args.delete {
        if !args.ports.is_empty() {
            return Err(usage(
                "--delete",
                "takes SERVICE and one IP, no ports: kubectl mesh-register --delete SERVICE IP",
            ));
        }
        let [ip] = ips.0.as_slice() else {
            return Err(usage("IP", "--delete takes one IP address at a time"));
        };
        return Ok(Action::Delete { service, ip: *ip });
    }
    for ip in &ips.0 {
        crate::addr::check_workload(ip).map_err(|e| usage("IP", e))?;
    }
    if args.ports.is_empty() {
        return Err(usage(
            "PORT",
            format!("at least one port is required: {SYNOPSIS}"),
        ));
    }
    ports::check_unique(&args.ports).map_err(|e| usage("PORT", e))?;
    if let Some(net) = &args.network {
        names::dns1123_subdomain(net).map_err(|e| usage("--network", e))?;
    }
    Ok(Action::Register(Registration {
        service,
        namespace: namespace.to_string(),
        ips: ips.0,
        ports: args.ports.clone(),
        mode: args.mode,
        labels: names::label_map(&args.labels),
        annotations: names::annotation_map(&args.annotations),
        service_account: args.service_account.clone(),
        network: args.network.clone(),
        cluster_domain: args.cluster_domain.clone(),
    }))
}

/// Runs `kubectl mesh-register`.
pub async fn run(args: Args, io: &mut Io) -> Result<()> {
    let mode = args.write.mode();
    if args.kube.contexts.len() > 1 {
        return several::run(&args, mode, io).await;
    }
    if args.write.dry_run == DryRun::Client && !args.list && !args.delete {
        // A fresh registration needs no cluster: print it from the input alone.
        let namespace = args.kube.offline_namespace();
        let Action::Register(reg) = action(&args, &namespace)? else {
            return Ok(());
        };
        let objs = fresh(&reg, objects::ISTIO_VERSIONS[0]);
        return print_client_dry_run(io, &args.write, objs);
    }
    warn_link_local(&args, io)?;
    let cluster = Cluster::connect_one(&args.kube).await?;
    let namespace = cluster.namespace.clone();
    match action(&args, &namespace)? {
        Action::List => listing::run(&cluster, args.all_namespaces, args.write.output, io).await,
        Action::Delete { service, ip } => {
            deregister(&cluster, &namespace, &service, ip, &args.write, mode, io).await
        }
        Action::Register(reg) => register(&cluster, &reg, &args, mode, io).await,
    }
}

/// Validates the arguments once before connecting (the namespace is filled in after), and
/// warns of link-local addresses.
fn warn_link_local(args: &Args, io: &mut Io) -> Result<()> {
    if let Action::Register(reg) = action(args, "default")? {
        for ip in reg.ips.iter().filter(|ip| crate::addr::is_link_local(ip)) {
            io.warn(format_args!(
                "{ip} is link-local: only hosts on the VM's own link can reach it"
            ))?;
        }
    }
    Ok(())
}

fn print_client_dry_run(io: &mut Io, write: &WriteArgs, objs: Vec<Value>) -> Result<()> {
    let results: Vec<crate::api::Applied> = objs
        .into_iter()
        .map(|object| crate::api::Applied {
            object,
            outcome: crate::api::Outcome::Created,
        })
        .collect();
    output::print_results(&mut io.out, write.output, DryRun::Client, &results)
}

async fn register(
    cluster: &Cluster,
    reg: &Registration,
    args: &Args,
    mode: WriteMode,
    io: &mut Io,
) -> Result<()> {
    let planned = plan_register(cluster, reg, args.create_namespace, "", io).await?;
    if let Some(ns) = &planned.namespace {
        let created = cluster.apply_over(ns, None, mode).await?;
        if mode.dry_run == DryRun::None {
            writeln!(
                io.out,
                "{}",
                output::result_line(&created.object, created.outcome, mode.dry_run)
            )?;
        }
    }
    let results = write::execute(cluster, planned.steps, mode).await?;
    output::print_results(&mut io.out, args.write.output, mode.dry_run, &results)
}

/// What a registration writes in one cluster, from what is there now.
struct Planned {
    /// The namespace to create first (`--create-namespace`, and it is missing).
    namespace: Option<Value>,
    /// The writes, in order.
    steps: Vec<Step>,
}

/// Reads one cluster and plans the registration's writes there; warnings start with
/// `prefix` (the context, when there are several).
async fn plan_register(
    cluster: &Cluster,
    reg: &Registration,
    create_namespace: bool,
    prefix: &str,
    io: &mut Io,
) -> Result<Planned> {
    let version = if reg.mode == Mode::Endpoints {
        objects::ISTIO_VERSIONS[0].to_string()
    } else {
        cluster.istio_version().await?
    };
    let ns = reg.namespace.as_str();
    let mut steps = Vec::new();
    let namespace = if cluster.has_namespace(ns).await? {
        None
    } else if create_namespace {
        Some(objects::new_object(&objects::core("Namespace"), None, ns))
    } else {
        anyhow::bail!(
            "namespace {ns:?} not found in context {:?}: create it, or pass --create-namespace",
            cluster.context
        );
    };

    let svc_kind = objects::core("Service");
    let existing_svc = cluster.get(&svc_kind, Some(ns), &reg.service).await?;
    let desired_svc = service(reg);
    match &existing_svc {
        Some(old) if !objects::is_managed(old) => {
            io.warn(format!(
                "{prefix}service/{} exists and was not created by kubectl-mesh: leaving it as it is (its ports: {})",
                reg.service,
                build::service_ports(old).join(", ")
            ))?;
        }
        Some(old) => {
            let (before, after) = (
                build::service_ports(old),
                build::service_ports(&desired_svc),
            );
            if before != after {
                io.warn(format!(
                    "{prefix}ports of service/{} change from [{}] to [{}]",
                    reg.service,
                    before.join(", "),
                    after.join(", ")
                ))?;
            }
            steps.push(Step::apply(desired_svc, existing_svc.clone()));
        }
        None => steps.push(Step::apply(desired_svc, None)),
    }

    match reg.mode {
        Mode::ServiceEntry => {
            let kind = objects::istio("ServiceEntry", &version);
            let existing = cluster
                .get(&kind, Some(ns), &service_entry_name(&reg.service))
                .await?;
            let ips = build::union(
                &existing
                    .as_ref()
                    .map(build::service_entry_ips)
                    .unwrap_or_default(),
                &reg.ips,
            );
            let desired = service_entry(reg, &version, &ips);
            if let Some(old) = &existing {
                if old["spec"]["ports"] != desired["spec"]["ports"] {
                    io.warn(format!(
                        "{prefix}ports of serviceentry/{} change from {} to {}",
                        service_entry_name(&reg.service),
                        compact_ports(&old["spec"]["ports"]),
                        compact_ports(&desired["spec"]["ports"])
                    ))?;
                }
            }
            let (r, v) = (reg.clone(), version.clone());
            let rebase = move |now: Option<&Value>| {
                let ips = build::union(
                    &now.map(build::service_entry_ips).unwrap_or_default(),
                    &r.ips,
                );
                Some(Step::apply(service_entry(&r, &v, &ips), now.cloned()))
            };
            steps.push(cas(
                Step::apply(desired, existing),
                kind,
                ns,
                &service_entry_name(&reg.service),
                rebase,
            ));
        }
        Mode::WorkloadEntry => {
            let kind = objects::istio("WorkloadEntry", &version);
            for ip in &reg.ips {
                let existing = cluster
                    .get(&kind, Some(ns), &workload_entry_name(&reg.service, ip))
                    .await?;
                steps.push(Step::apply(workload_entry(reg, &version, ip), existing));
            }
        }
        Mode::Endpoints => {
            let kind = objects::core("Endpoints");
            let existing = cluster.get(&kind, Some(ns), &reg.service).await?;
            let ips = build::union(
                &existing
                    .as_ref()
                    .map(build::endpoints_ips)
                    .unwrap_or_default(),
                &reg.ips,
            );
            let r = reg.clone();
            let rebase = move |now: Option<&Value>| {
                let ips = build::union(&now.map(build::endpoints_ips).unwrap_or_default(), &r.ips);
                Some(Step::apply(endpoints(&r, &ips), now.cloned()))
            };
            steps.push(cas(
                Step::apply(endpoints(reg, &ips), existing),
                kind,
                ns,
                &reg.service,
                rebase,
            ));
        }
    }

    Ok(Planned { namespace, steps })
}

/// A write of an endpoint list that concurrent registrations of the same service also write:
/// a compare-and-swap, recomputed from a fresh read when another run got there first.
fn cas(
    step: Step,
    kind: objects::Kind,
    namespace: &str,
    name: &str,
    rebase: impl Fn(Option<&Value>) -> Option<Step> + Send + Sync + 'static,
) -> Step {
    Step::Cas {
        step: Box::new(step),
        kind,
        namespace: Some(namespace.to_string()),
        name: name.to_string(),
        rebase: write::Rebase(std::sync::Arc::new(rebase)),
    }
}

/// Deregistering `ip` from a list as it is now: nothing when it is gone already, a delete when
/// it was the last address, else the list without it.
fn without_ip(
    now: Option<&Value>,
    ip: IpAddr,
    ips_of: fn(&Value) -> Vec<IpAddr>,
    set_ips: &dyn Fn(&Value, &[IpAddr]) -> Value,
) -> Option<Step> {
    let now = now?;
    let ips = ips_of(now);
    if !ips.contains(&ip) {
        return None;
    }
    let rest: Vec<IpAddr> = ips.into_iter().filter(|i| *i != ip).collect();
    if rest.is_empty() {
        return Some(Step::Delete {
            existing: now.clone(),
        });
    }
    Some(Step::apply(set_ips(now, &rest), Some(now.clone())))
}

fn service_entry_without(se: &Value, rest: &[IpAddr]) -> Value {
    let keep: Vec<Value> = se["spec"]["endpoints"]
        .as_array()
        .map(|eps| {
            eps.iter()
                .filter(|e| {
                    // Only the deregistered address goes; anything else (even a hostname) stays.
                    e["address"]
                        .as_str()
                        .and_then(|a| a.parse::<IpAddr>().ok())
                        .is_none_or(|a| rest.contains(&a))
                })
                .cloned()
                .collect()
        })
        .unwrap_or_default();
    let mut desired = restorable(se);
    desired["spec"]["endpoints"] = json!(keep);
    desired
}

fn endpoints_without(ep: &Value, rest: &[IpAddr]) -> Value {
    let mut desired = restorable(ep);
    let addresses: Vec<Value> = rest.iter().map(|i| json!({"ip": i.to_string()})).collect();
    if let Some(subsets) = desired["subsets"].as_array_mut() {
        for s in subsets.iter_mut() {
            s["addresses"] = json!(addresses);
        }
    }
    desired
}

fn compact_ports(ports: &Value) -> String {
    let items: Vec<String> = ports
        .as_array()
        .map(|ps| {
            ps.iter()
                .map(|p| {
                    format!(
                        "{}:{}/{}",
                        p["name"].as_str().unwrap_or(""),
                        p["number"],
                        p["protocol"].as_str().unwrap_or("")
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    format!("[{}]", items.join(", "))
}

use std::io::Write as _;

async fn deregister(
    cluster: &Cluster,
    ns: &str,
    service: &str,
    ip: IpAddr,
    write: &WriteArgs,
    mode: WriteMode,
    io: &mut Io,
) -> Result<()> {
    let steps = plan_deregister(cluster, ns, service, ip, "", io).await?;
    let results = write::execute(cluster, steps, mode).await?;
    output::print_results(&mut io.out, write.output, mode.dry_run, &results)
}

/// Reads one cluster and plans the removal of `ip` there, in whichever mode it was registered;
/// notes start with `prefix`.
async fn plan_deregister(
    cluster: &Cluster,
    ns: &str,
    service: &str,
    ip: IpAddr,
    prefix: &str,
    io: &mut Io,
) -> Result<Vec<Step>> {
    // Endpoints mode needs no Istio: without it, look there only.
    let version = cluster.served_istio_version().await?;
    let svc_kind = objects::core("Service");
    let mut steps = Vec::new();
    let mut found = false;
    let mut last_gone = false;

    if let Some(version) = &version {
        let se_kind = objects::istio("ServiceEntry", version);
        if let Some(se) = cluster
            .get(&se_kind, Some(ns), &service_entry_name(service))
            .await?
        {
            let ips = build::service_entry_ips(&se);
            if ips.contains(&ip) {
                found = true;
                last_gone = ips.len() == 1;
                let rebase = move |now: Option<&Value>| {
                    without_ip(now, ip, build::service_entry_ips, &service_entry_without)
                };
                if let Some(step) = rebase(Some(&se)) {
                    let name = objects::name(&se).to_string();
                    steps.push(cas(step, se_kind.clone(), ns, &name, rebase));
                }
            }
        }
        if !found {
            let we_kind = objects::istio("WorkloadEntry", version);
            if let Some(we) = cluster
                .get(&we_kind, Some(ns), &workload_entry_name(service, &ip))
                .await?
            {
                found = true;
                let selector = format!("app={service},{MANAGED_BY_KEY}={MANAGED_BY_VALUE}");
                let others = cluster
                    .list(&we_kind, Some(ns), Some(&selector))
                    .await?
                    .into_iter()
                    .filter(|w| objects::name(w) != objects::name(&we))
                    .count();
                last_gone = others == 0;
                steps.push(Step::Delete { existing: we });
            }
        }
    }
    if !found {
        let ep_kind = objects::core("Endpoints");
        if let Some(ep) = cluster.get(&ep_kind, Some(ns), service).await? {
            let ips = build::endpoints_ips(&ep);
            if ips.contains(&ip) && objects::is_managed(&ep) {
                found = true;
                last_gone = ips.len() == 1;
                let rebase = move |now: Option<&Value>| {
                    without_ip(now, ip, build::endpoints_ips, &endpoints_without)
                };
                if let Some(step) = rebase(Some(&ep)) {
                    steps.push(cas(step, ep_kind.clone(), ns, service, rebase));
                }
            }
        }
    }
    if !found {
        anyhow::bail!("{ip} is not registered for service {service} in namespace {ns} (context {:?}): see kubectl mesh-register --list", cluster.context);
    }
    if last_gone {
        if let Some(svc) = cluster.get(&svc_kind, Some(ns), service).await? {
            if objects::is_managed(&svc) {
                steps.push(Step::Delete { existing: svc });
            } else {
                io.note(format!(
                    "{prefix}service/{service} was not created by kubectl-mesh: kept"
                ))?;
            }
        }
    }
    Ok(steps)
}

#[cfg(test)]
mod tests;
