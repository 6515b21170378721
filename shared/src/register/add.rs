//! Registering: read the cluster, plan the writes purely from what is there, write them.

use std::io::Write as _;

use std::net::IpAddr;

use anyhow::Result;
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::build::{self, endpoints, service_entry, workload_entry};
use super::facts::{self, Facts};
use super::plan::{service_entry_name, Mode, Registration};
use crate::api::{Cluster, WriteMode};
use crate::cli::DryRun;
use crate::istio::{ServiceEntry, ServicePort};
use crate::objects;
use crate::output;
use crate::write::{self, Step};
use crate::Io;

/// Registers `reg` in one cluster and prints the result lines.
pub(super) async fn register(
    cluster: &Cluster,
    reg: &Registration,
    args: &super::Args,
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
pub(super) struct Planned {
    /// The namespace to create first (`--create-namespace`, and it is missing).
    pub namespace: Option<Value>,
    /// The writes, in order.
    pub steps: Vec<Step>,
    /// What the user should know before the writes (changed ports, a Service left alone).
    pub warnings: Vec<String>,
}

/// Reads one cluster and plans the registration's writes there, printing the plan's warnings
/// prefixed with `prefix` (the context, when there are several).
pub(super) async fn plan_register(
    cluster: &Cluster,
    reg: &Registration,
    create_namespace: bool,
    prefix: &str,
    io: &mut Io,
) -> Result<Planned> {
    let facts = facts::read(cluster, reg).await?;
    let planned = plan(reg, &facts, create_namespace)?;
    for w in &planned.warnings {
        io.warn(format!("{prefix}{w}"))?;
    }
    Ok(planned)
}

/// The writes that make the cluster described by `facts` hold `reg`; pure.
pub(super) fn plan(reg: &Registration, facts: &Facts, create_namespace: bool) -> Result<Planned> {
    let ns = reg.namespace.as_str();
    let namespace = if facts.namespace_exists {
        None
    } else if create_namespace {
        Some(objects::new_object(&objects::core("Namespace"), None, ns))
    } else {
        anyhow::bail!(
            "namespace {ns:?} not found in context {:?}: create it, or pass --create-namespace",
            facts.context
        );
    };
    let mut warnings = Vec::new();
    let mut steps = Vec::new();
    if let Some(step) = service_step(reg, facts.service.as_ref(), &mut warnings)? {
        steps.push(step);
    }
    let version = facts.version.as_str();
    match reg.mode {
        Mode::ServiceEntry => {
            let existing = facts.list.clone();
            let old: Option<ServiceEntry> = existing.as_ref().map(objects::read).transpose()?;
            let known = old.as_ref().map(build::service_entry_ips);
            let ips = build::union(&known.unwrap_or_default(), &reg.ips);
            let desired = build::service_entry_object(reg, version, &ips);
            if let Some(old) = &old {
                if old.spec.ports != desired.spec.ports {
                    warnings.push(format!(
                        "ports of serviceentry/{} change from {} to {}",
                        service_entry_name(&reg.service),
                        compact_ports(old.spec.ports.as_deref()),
                        compact_ports(desired.spec.ports.as_deref())
                    ));
                }
            }
            let (r, v) = (reg.clone(), version.to_string());
            let rebase = move |now: Option<&Value>| {
                let ips = build::union(&ips_in(now, build::service_entry_ips)?, &r.ips);
                Ok(Some(Step::apply(service_entry(&r, &v, &ips), now.cloned())))
            };
            steps.push(Step::cas(
                Step::apply(desired.to_value(), existing),
                objects::istio("ServiceEntry", version),
                Some(ns),
                &service_entry_name(&reg.service),
                rebase,
            ));
        }
        Mode::WorkloadEntry => {
            for (ip, existing) in &facts.workload_entries {
                steps.push(Step::apply(
                    workload_entry(reg, version, ip),
                    existing.clone(),
                ));
            }
        }
        Mode::Endpoints => {
            let existing = facts.list.clone();
            let known = ips_in(existing.as_ref(), build::endpoints_ips)?;
            let ips = build::union(&known, &reg.ips);
            let r = reg.clone();
            let rebase = move |now: Option<&Value>| {
                let ips = build::union(&ips_in(now, build::endpoints_ips)?, &r.ips);
                Ok(Some(Step::apply(endpoints(&r, &ips), now.cloned())))
            };
            steps.push(Step::cas(
                Step::apply(endpoints(reg, &ips), existing),
                objects::core("Endpoints"),
                Some(ns),
                &reg.service,
                rebase,
            ));
        }
    }
    Ok(Planned {
        namespace,
        steps,
        warnings,
    })
}

/// The VM addresses already in the endpoint list `list` (none when it is absent), read typed.
fn ips_in<T: DeserializeOwned>(
    list: Option<&Value>,
    ips_of: fn(&T) -> Vec<IpAddr>,
) -> Result<Vec<IpAddr>> {
    Ok(match list {
        Some(obj) => ips_of(&objects::read(obj)?),
        None => Vec::new(),
    })
}

/// The Service write: none for a Service kubectl-mesh does not manage (it is left as it is).
fn service_step(
    reg: &Registration,
    existing: Option<&Value>,
    warnings: &mut Vec<String>,
) -> Result<Option<Step>> {
    let desired = build::service_object(reg);
    Ok(match existing {
        Some(old) if !objects::is_managed(old) => {
            warnings.push(format!(
                "service/{} exists and was not created by kubectl-mesh: leaving it as it is (its ports: {})",
                reg.service,
                build::service_ports(&objects::read(old)?).join(", ")
            ));
            None
        }
        Some(old) => {
            let before = build::service_ports(&objects::read(old)?);
            let after = build::service_ports(&desired);
            if before != after {
                warnings.push(format!(
                    "ports of service/{} change from [{}] to [{}]",
                    reg.service,
                    before.join(", "),
                    after.join(", ")
                ));
            }
            Some(Step::apply(objects::to_value(&desired), Some(old.clone())))
        }
        None => Some(Step::apply(objects::to_value(&desired), None)),
    })
}

/// ServiceEntry ports as `[name:number/PROTOCOL, ...]`, for a warning.
fn compact_ports(ports: Option<&[ServicePort]>) -> String {
    let items: Vec<String> = ports
        .unwrap_or_default()
        .iter()
        .map(|p| {
            format!(
                "{}:{}/{}",
                p.name.as_deref().unwrap_or(""),
                p.number,
                p.protocol.as_deref().unwrap_or("")
            )
        })
        .collect();
    format!("[{}]", items.join(", "))
}
