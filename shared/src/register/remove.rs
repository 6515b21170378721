//! Deregistering: remove one VM address, and the objects with the last one.

use std::net::IpAddr;

use anyhow::Result;
use k8s_openapi::api::core::v1::{EndpointAddress, Endpoints};
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::build;
use super::plan::{service_entry_name, workload_entry_name};
use crate::api::{Cluster, WriteMode};
use crate::cli::WriteArgs;
use crate::istio::ServiceEntry;
use crate::objects::{self, MANAGED_BY_KEY, MANAGED_BY_VALUE};
use crate::output;
use crate::write::{self, restorable, Step};
use crate::Io;

/// Removes `ip` from `service` in one cluster and prints the result lines.
pub(super) async fn deregister(
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
pub(super) async fn plan_deregister(
    cluster: &Cluster,
    ns: &str,
    service: &str,
    ip: IpAddr,
    prefix: &str,
    io: &mut Io,
) -> Result<Vec<Step>> {
    // Endpoints mode needs no Istio: without it, look there only.
    let version = cluster.served_istio_version().await?;
    let mut found = None;
    if let Some(version) = &version {
        found = in_service_entry(cluster, ns, service, ip, version).await?;
        if found.is_none() {
            found = in_workload_entry(cluster, ns, service, ip, version).await?;
        }
    }
    if found.is_none() {
        found = in_endpoints(cluster, ns, service, ip).await?;
    }
    let Some(Found {
        mut steps,
        last_gone,
    }) = found
    else {
        anyhow::bail!("{ip} is not registered for service {service} in namespace {ns} (context {:?}): see kubectl mesh-register --list", cluster.context);
    };
    if last_gone {
        let svc_kind = objects::core("Service");
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

/// Where the address was registered: the writes that take it out, and whether it was the
/// service's last address (so its Service goes too).
struct Found {
    steps: Vec<Step>,
    last_gone: bool,
}

/// The address in the service's ServiceEntry (ServiceEntry mode).
async fn in_service_entry(
    cluster: &Cluster,
    ns: &str,
    service: &str,
    ip: IpAddr,
    version: &str,
) -> Result<Option<Found>> {
    let se_kind = objects::istio("ServiceEntry", version);
    let Some(se) = cluster
        .get(&se_kind, Some(ns), &service_entry_name(service))
        .await?
    else {
        return Ok(None);
    };
    let ips = build::service_entry_ips(&objects::read(&se)?);
    if !ips.contains(&ip) {
        return Ok(None);
    }
    let steps = cas_without(
        &se,
        se_kind,
        ns,
        ip,
        build::service_entry_ips,
        service_entry_without,
    )?;
    Ok(Some(Found {
        steps,
        last_gone: ips.len() == 1,
    }))
}

/// The address's own WorkloadEntry (WorkloadEntry mode).
async fn in_workload_entry(
    cluster: &Cluster,
    ns: &str,
    service: &str,
    ip: IpAddr,
    version: &str,
) -> Result<Option<Found>> {
    let we_kind = objects::istio("WorkloadEntry", version);
    let Some(we) = cluster
        .get(&we_kind, Some(ns), &workload_entry_name(service, &ip))
        .await?
    else {
        return Ok(None);
    };
    let selector = format!("app={service},{MANAGED_BY_KEY}={MANAGED_BY_VALUE}");
    let others = cluster
        .list(&we_kind, Some(ns), Some(&selector))
        .await?
        .into_iter()
        .filter(|w| objects::name(w) != objects::name(&we))
        .count();
    Ok(Some(Found {
        steps: vec![Step::Delete { existing: we }],
        last_gone: others == 0,
    }))
}

/// The address in the service's Endpoints, when kubectl-mesh wrote them (Endpoints mode).
async fn in_endpoints(
    cluster: &Cluster,
    ns: &str,
    service: &str,
    ip: IpAddr,
) -> Result<Option<Found>> {
    let ep_kind = objects::core("Endpoints");
    let Some(ep) = cluster.get(&ep_kind, Some(ns), service).await? else {
        return Ok(None);
    };
    let ips = build::endpoints_ips(&objects::read(&ep)?);
    if !ips.contains(&ip) || !objects::is_managed(&ep) {
        return Ok(None);
    }
    let steps = cas_without(
        &ep,
        ep_kind,
        ns,
        ip,
        build::endpoints_ips,
        endpoints_without,
    )?;
    Ok(Some(Found {
        steps,
        last_gone: ips.len() == 1,
    }))
}

/// The compare-and-swap write that takes `ip` out of the address list `read` (none when it is
/// gone already): sent over the object as read, recomputed by [`without_ip`] if it changed.
fn cas_without<T: DeserializeOwned + 'static>(
    read: &Value,
    kind: objects::Kind,
    ns: &str,
    ip: IpAddr,
    ips_of: fn(&T) -> Vec<IpAddr>,
    set_ips: fn(T, &[IpAddr]) -> Value,
) -> Result<Vec<Step>> {
    let rebase = move |now: Option<&Value>| without_ip(now, ip, ips_of, set_ips);
    let name = objects::name(read).to_string();
    Ok(rebase(Some(read))?
        .map(|step| Step::cas(step, kind, Some(ns), &name, rebase))
        .into_iter()
        .collect())
}

/// Deregistering `ip` from a list as it is now: nothing when it is gone already, a delete when
/// it was the last address, else the list without it. The object is typed to read and change
/// its addresses; a malformed one stops the write with an error naming it.
fn without_ip<T: DeserializeOwned>(
    now: Option<&Value>,
    ip: IpAddr,
    ips_of: fn(&T) -> Vec<IpAddr>,
    set_ips: fn(T, &[IpAddr]) -> Value,
) -> Result<Option<Step>> {
    let Some(now) = now else {
        return Ok(None);
    };
    let ips = ips_of(&objects::read(now)?);
    if !ips.contains(&ip) {
        return Ok(None);
    }
    let rest: Vec<IpAddr> = ips.into_iter().filter(|i| *i != ip).collect();
    if rest.is_empty() {
        return Ok(Some(Step::Delete {
            existing: now.clone(),
        }));
    }
    // The apply repeats the whole object as read (`restorable`), with only the addresses changed.
    let desired = set_ips(objects::read(&restorable(now))?, &rest);
    Ok(Some(Step::apply(desired, Some(now.clone()))))
}

/// A ServiceEntry with only the endpoints at `rest` (and any that are not addresses).
fn service_entry_without(mut se: ServiceEntry, rest: &[IpAddr]) -> Value {
    let keep = se
        .spec
        .endpoints
        .take()
        .unwrap_or_default()
        .into_iter()
        .filter(|e| {
            // Only the deregistered address goes; anything else (even a hostname) stays.
            e.address
                .as_deref()
                .and_then(|a| a.parse::<IpAddr>().ok())
                .is_none_or(|a| rest.contains(&a))
        })
        .collect();
    se.spec.endpoints = Some(keep);
    se.to_value()
}

/// Endpoints whose subsets list exactly `rest`.
fn endpoints_without(mut ep: Endpoints, rest: &[IpAddr]) -> Value {
    let addresses: Vec<EndpointAddress> = rest
        .iter()
        .map(|i| EndpointAddress {
            ip: i.to_string(),
            ..EndpointAddress::default()
        })
        .collect();
    for s in ep.subsets.iter_mut().flatten() {
        s.addresses = Some(addresses.clone());
    }
    objects::to_value(&ep)
}
