//! What a `.global` run reads before it writes, through the one API client: the clusters'
//! connections, the Services and gateway of each source, the ServiceEntries of each target.
//! Every cluster is read at once; errors are still reported in the order of the directions.

use std::collections::BTreeSet;

use anyhow::Result;
use futures::future::join_all;
use kube::config::Kubeconfig;
use serde_json::Value;

use super::plan::{Options, Plan, Selection};
use super::report::Report;
use super::service_entry::{self, Listed, SourceService};
use crate::api::Cluster;
use crate::cli::KubeArgs;
use crate::error::MeshError;
use crate::gateway::{self, AddressSource, GatewayAddress, GatewayRef, MULTICLUSTER_PORT};
use crate::kubeconfig::Target;
use crate::objects;

/// Connects to the target and, when named, the source at once; the target's failure is the
/// one reported when both fail.
pub(super) async fn connect(
    kc: &Kubeconfig,
    dst: &Target,
    src: Option<&Target>,
    args: &KubeArgs,
) -> Result<(Cluster, Option<Cluster>)> {
    let src = async {
        match src {
            Some(t) => Cluster::connect(kc, t, args).await.map(Some),
            None => Ok(None),
        }
    };
    let (dst, src) = tokio::join!(Cluster::connect(kc, dst, args), src);
    Ok((dst?, src?))
}

/// The directions of a run: `(source, target)` pairs.
pub(super) fn directions<'a>(
    src: &'a Cluster,
    dst: &'a Cluster,
    two_way: bool,
) -> Vec<(&'a Cluster, &'a Cluster)> {
    if two_way {
        vec![(src, dst), (dst, src)]
    } else {
        vec![(src, dst)]
    }
}

/// What the reads found for one direction.
pub(super) struct Facts<'a> {
    pub(super) src: &'a Cluster,
    pub(super) dst: &'a Cluster,
    /// Names of every Service of the namespace in the source.
    pub(super) all_services: BTreeSet<String>,
    /// The selected Services that can be linked.
    pub(super) linkable: Vec<SourceService>,
    pub(super) gateway: Option<GatewayAddress>,
    pub(super) version: String,
    /// Every ServiceEntry of the target, in every namespace.
    pub(super) ses: Vec<Listed>,
}

/// Reads everything every direction needs, all at once; fails before any write when a
/// prerequisite is missing (the first direction's failure first).
pub(super) async fn gather_all<'a>(
    pairs: Vec<(&'a Cluster, &'a Cluster)>,
    plan: &Plan,
    opts: &Options,
    prune: bool,
    report: &mut Report,
) -> Result<Vec<Facts<'a>>> {
    let reads = pairs
        .into_iter()
        .map(|(s, d)| gather(s, d, plan, opts, prune));
    let mut facts = Vec::new();
    for read in join_all(reads).await {
        let (f, notes) = read?;
        report.notes.extend(notes.notes);
        report.warnings.extend(notes.warnings);
        facts.push(f);
    }
    Ok(facts)
}

/// Reads everything one direction needs, with the notes it has for stderr.
async fn gather<'a>(
    src: &'a Cluster,
    dst: &'a Cluster,
    plan: &Plan,
    opts: &Options,
    prune: bool,
) -> Result<(Facts<'a>, Report)> {
    // The two clusters are read at the same time: neither read depends on the other.
    let ((all_services, linkable, gateway, notes), (version, ses)) =
        tokio::try_join!(read_source(src, plan, opts, prune), read_target(dst))?;
    let facts = Facts {
        src,
        dst,
        all_services,
        linkable,
        gateway,
        version,
        ses,
    };
    Ok((facts, notes))
}

fn is_api_server(svc: &Value) -> bool {
    objects::name(svc) == "kubernetes" && objects::namespace(svc) == Some("default")
}

/// The source side of a direction: every Service name of the namespace, the selected Services
/// that can be linked, the gateway address, and notes for stderr.
async fn read_source(
    src: &Cluster,
    plan: &Plan,
    opts: &Options,
    prune: bool,
) -> Result<(
    BTreeSet<String>,
    Vec<SourceService>,
    Option<GatewayAddress>,
    Report,
)> {
    let mut report = Report::default();
    let (selected, all_services) = services(src, plan, &opts.namespace, prune).await?;
    let linkable = linkable(src, plan, &selected, &mut report)?;
    let gateway = if linkable.is_empty() {
        None
    } else {
        Some(
            gateway_address(
                src,
                &opts.gateway,
                opts.gateway_address.as_ref(),
                &mut report,
            )
            .await?,
        )
    };
    Ok((all_services, linkable, gateway, report))
}

/// The selected Services of the namespace, and the names of every Service there (of the
/// selected ones only, when a selector picks them and nothing is pruned).
async fn services(
    src: &Cluster,
    plan: &Plan,
    ns: &str,
    prune: bool,
) -> Result<(Vec<Value>, BTreeSet<String>)> {
    let svc_kind = objects::core("Service");
    let names = |svcs: &[Value]| svcs.iter().map(|s| objects::name(s).to_string()).collect();
    if let Selection::Selector(sel) = &plan.selection {
        let selected = src.list(&svc_kind, Some(ns), Some(sel.as_str())).await?;
        let all = if prune {
            names(&src.list(&svc_kind, Some(ns), None).await?)
        } else {
            names(&selected)
        };
        return Ok((selected, all));
    }
    let svcs = src.list(&svc_kind, Some(ns), None).await?;
    let all = names(&svcs);
    let selected = match &plan.selection {
        Selection::Names(names) => svcs
            .into_iter()
            .filter(|s| names.iter().any(|n| n == objects::name(s)))
            .collect(),
        Selection::All => svcs,
        _ => Vec::new(),
    };
    Ok((selected, all))
}

/// The selected Services that can be linked, by name; a note for each one (or port) left out.
fn linkable(
    src: &Cluster,
    plan: &Plan,
    selected: &[Value],
    report: &mut Report,
) -> Result<Vec<SourceService>> {
    let mut linkable = Vec::new();
    for svc in selected {
        if is_api_server(svc) && !matches!(plan.selection, Selection::Names(_)) {
            continue; // The API server is reachable in every cluster; linking it only confuses.
        }
        match service_entry::source_service(&objects::read(svc)?) {
            Ok(s) => {
                if !s.skipped_ports.is_empty() {
                    report.note(format!(
                        "service/{} in {}: ports {} are not TCP and are left out",
                        s.name,
                        src.context,
                        s.skipped_ports.join(", ")
                    ));
                }
                linkable.push(s);
            }
            Err(why) => report.note(format!("skipped: {why} (context {})", src.context)),
        }
    }
    linkable.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(linkable)
}

/// The target side of a direction: the served Istio version and every ServiceEntry, in every
/// namespace, without their managedFields (most of a listed object, and nothing here reads them).
async fn read_target(dst: &Cluster) -> Result<(String, Vec<Listed>)> {
    let version = dst.istio_version().await?;
    let ses = dst
        .list(&objects::istio("ServiceEntry", &version), None, None)
        .await?
        .into_iter()
        .map(objects::for_display)
        .collect();
    Ok((version, service_entry::read_listed(ses)?))
}

/// The source gateway's address: exit 1 when it has none, exit 3 when it lacks port 15443.
async fn gateway_address(
    src: &Cluster,
    gw: &GatewayRef,
    flag: Option<&GatewayAddress>,
    report: &mut Report,
) -> Result<GatewayAddress> {
    let svc = src.get(&objects::core("Service"), Some(&gw.namespace), &gw.name).await?.ok_or_else(|| {
        anyhow::anyhow!(
            "gateway service {gw} not found in context {:?}: name the ingress gateway with --gateway-service NAME[.NAMESPACE]",
            src.context
        )
    })?;
    if !gateway::exposes_multicluster_port(&svc) {
        return Err(MeshError::Check(format!(
            "gateway service {gw} in context {:?} does not expose port {MULTICLUSTER_PORT}: .global traffic enters there; install the gateways with Istio's multicluster values (port {MULTICLUSTER_PORT} named tls), then check with kubectl mesh-link check",
            src.context
        ))
        .into());
    }
    match gateway::choose(&svc, flag) {
        Some((addr, source)) => {
            if source != AddressSource::Flag {
                if let Some(f) = flag.filter(|f| **f != addr) {
                    report.warnings.push(format!("--gateway-address {f} is not used: gateway service {gw} in {} has the load-balancer address {addr}", src.context));
                }
            }
            if source == AddressSource::LoadBalancerHostname {
                report.note(format!(
                    "gateway service {gw} in {} has the hostname {addr}: the endpoints keep the name, and Envoy resolves it (resolution DNS)",
                    src.context
                ));
            }
            Ok(addr)
        }
        None => anyhow::bail!(
            "gateway service {gw} in context {:?} has no load-balancer IP or hostname (status.loadBalancer is empty): wait for the load balancer, or pass --gateway-address IP|HOSTNAME",
            src.context
        ),
    }
}

/// A pool outside 240.0.0.0/4 may hold addresses real workloads have: warn, and refuse it when
/// a Service of a target cluster already has a cluster IP in it (its traffic would go to the
/// remote cluster instead), before anything is written.
pub(super) async fn check_pool(
    facts: &[Facts<'_>],
    opts: &Options,
    report: &mut Report,
) -> Result<()> {
    if !opts.pool.routable() {
        return Ok(());
    }
    report.warnings.push(format!(
        "--address-pool {} is routable: a .global address there hides any pod, Service or VM that has it from the calling cluster's sidecars; {} is never routed",
        opts.pool,
        super::pool::DEFAULT_POOL
    ));
    let mut seen = BTreeSet::new();
    let targets: Vec<&Cluster> = facts
        .iter()
        .map(|f| f.dst)
        .filter(|d| seen.insert(d.context.as_str()))
        .collect();
    let kind = objects::core("Service");
    let lists = join_all(targets.iter().map(|d| d.list(&kind, None, None))).await;
    for (dst, services) in targets.into_iter().zip(lists) {
        let services = services?;
        if let Some((svc, ip)) = services.iter().find_map(|s| Some((s, in_pool(s, opts)?))) {
            return Err(crate::error::usage(
                "--address-pool",
                format!(
                    "{} contains {ip}, the cluster IP of Service {}/{} in context {}: give a range no Service uses, such as {}",
                    opts.pool,
                    objects::namespace(svc).unwrap_or(""),
                    objects::name(svc),
                    dst.context,
                    super::pool::DEFAULT_POOL
                ),
            ));
        }
    }
    Ok(())
}

/// The first cluster IP of `svc` inside `--address-pool`.
fn in_pool(svc: &Value, opts: &Options) -> Option<std::net::Ipv4Addr> {
    svc["spec"]["clusterIPs"]
        .as_array()
        .into_iter()
        .flatten()
        .chain(std::iter::once(&svc["spec"]["clusterIP"]))
        .filter_map(|v| v.as_str()?.parse::<std::net::Ipv4Addr>().ok())
        .find(|ip| opts.pool.contains(*ip))
}

/// The links one unlink direction deletes, as read from its target.
pub(super) struct Linked<'a> {
    pub(super) src: &'a Cluster,
    pub(super) dst: &'a Cluster,
    pub(super) version: String,
    pub(super) links: Vec<Listed>,
}

/// Reads the links of every direction that the selection names, all at once (the first
/// direction's failure first).
pub(super) async fn linked<'a>(
    pairs: Vec<(&'a Cluster, &'a Cluster)>,
    plan: &Plan,
    ns: &str,
) -> Result<Vec<Linked<'a>>> {
    let reads = pairs.into_iter().map(|(s, d)| linked_one(s, d, plan, ns));
    join_all(reads).await.into_iter().collect()
}

/// The links from `src` in `dst`'s namespace `ns` among the selection.
async fn linked_one<'a>(
    src: &'a Cluster,
    dst: &'a Cluster,
    plan: &Plan,
    ns: &str,
) -> Result<Linked<'a>> {
    let entries = async {
        let version = dst.istio_version().await?;
        let ses = dst
            .list(&objects::istio("ServiceEntry", &version), Some(ns), None)
            .await?;
        anyhow::Ok((version, ses))
    };
    let wanted = async {
        anyhow::Ok(match &plan.selection {
            Selection::Names(n) => Some(n.iter().cloned().collect::<BTreeSet<String>>()),
            Selection::Selector(sel) => Some(
                src.list(&objects::core("Service"), Some(ns), Some(sel.as_str()))
                    .await?
                    .iter()
                    .map(|v| objects::name(v).to_string())
                    .collect(),
            ),
            _ => None,
        })
    };
    let (entries, wanted) = tokio::join!(entries, wanted);
    let (version, ses) = entries?;
    let wanted = wanted?;
    let links = service_entry::read_listed(ses)?
        .into_iter()
        .filter(|se| {
            service_entry::is_link(se)
                && service_entry::source(se) == Some(src.context.as_str())
                && service_entry::service_of(se)
                    .is_some_and(|svc| wanted.as_ref().is_none_or(|w| w.contains(svc)))
        })
        .collect();
    Ok(Linked {
        src,
        dst,
        version,
        links,
    })
}
