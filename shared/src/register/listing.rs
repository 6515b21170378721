//! `kubectl mesh-register --list`: what kubectl-mesh registered, as a `kubectl get`-like table.

use std::collections::BTreeMap;
use std::io::Write as _;

use anyhow::Result;
use serde_json::Value;

use super::plan::Mode;
use crate::api::Cluster;
use crate::cli::OutputFormat;
use crate::duration::age_of;
use crate::objects::{self, MANAGED_BY_KEY, MANAGED_BY_VALUE};
use crate::{output, table, Io};

/// One registered service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    /// Namespace.
    pub namespace: String,
    /// Service name.
    pub name: String,
    /// Representation.
    pub mode: Mode,
    /// Mesh host.
    pub host: String,
    /// VM addresses.
    pub addresses: Vec<String>,
    /// `name:port` list.
    pub ports: Vec<String>,
    /// Age of the oldest object.
    pub age: String,
}

fn ports_of_map(map: &Value) -> Vec<String> {
    let mut ports: Vec<(u64, String)> = map
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| {
                    (
                        v.as_u64().unwrap_or(0),
                        format!("{k}:{}", v.as_u64().unwrap_or(0)),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    ports.sort();
    ports.into_iter().map(|(_, s)| s).collect()
}

/// Rows from the managed ServiceEntries, WorkloadEntries and Endpoints found (pure).
pub fn rows(
    service_entries: &[Value],
    workload_entries: &[Value],
    endpoints: &[Value],
) -> Vec<Row> {
    let mut rows = Vec::new();
    for se in service_entries {
        let Some(name) = objects::name(se).strip_prefix("mesh-expansion-") else {
            continue;
        };
        rows.push(Row {
            namespace: objects::namespace(se).unwrap_or("").to_string(),
            name: name.to_string(),
            mode: Mode::ServiceEntry,
            host: se["spec"]["hosts"][0].as_str().unwrap_or("").to_string(),
            addresses: super::build::service_entry_ips(se)
                .iter()
                .map(ToString::to_string)
                .collect(),
            ports: se["spec"]["ports"]
                .as_array()
                .map(|ps| {
                    ps.iter()
                        .map(|p| format!("{}:{}", p["name"].as_str().unwrap_or(""), p["number"]))
                        .collect()
                })
                .unwrap_or_default(),
            age: age_of(se),
        });
    }
    let mut groups: BTreeMap<(String, String), Vec<&Value>> = BTreeMap::new();
    for we in workload_entries {
        let Some(app) = we["metadata"]["labels"]["app"].as_str() else {
            continue;
        };
        let ns = objects::namespace(we).unwrap_or("").to_string();
        groups.entry((ns, app.to_string())).or_default().push(we);
    }
    for ((ns, app), wes) in groups {
        let oldest = wes
            .iter()
            .min_by_key(|w| {
                w["metadata"]["creationTimestamp"]
                    .as_str()
                    .unwrap_or("")
                    .to_string()
            })
            .copied();
        rows.push(Row {
            host: format!("{app}.{ns}.svc"),
            namespace: ns,
            name: app,
            mode: Mode::WorkloadEntry,
            addresses: wes
                .iter()
                .filter_map(|w| w["spec"]["address"].as_str().map(String::from))
                .collect(),
            ports: wes
                .first()
                .map(|w| ports_of_map(&w["spec"]["ports"]))
                .unwrap_or_default(),
            age: oldest.map(age_of).unwrap_or_default(),
        });
    }
    for ep in endpoints {
        let ns = objects::namespace(ep).unwrap_or("").to_string();
        let name = objects::name(ep).to_string();
        rows.push(Row {
            host: format!("{name}.{ns}.svc"),
            namespace: ns,
            name,
            mode: Mode::Endpoints,
            addresses: super::build::endpoints_ips(ep)
                .iter()
                .map(ToString::to_string)
                .collect(),
            ports: ep["subsets"][0]["ports"]
                .as_array()
                .map(|ps| {
                    ps.iter()
                        .map(|p| format!("{}:{}", p["name"].as_str().unwrap_or(""), p["port"]))
                        .collect()
                })
                .unwrap_or_default(),
            age: age_of(ep),
        });
    }
    rows.sort_by(|a, b| {
        (&a.namespace, &a.name, a.mode.name()).cmp(&(&b.namespace, &b.name, b.mode.name()))
    });
    rows
}

/// Renders the rows; with a NAMESPACE column for `-A`, as kubectl does.
pub fn render(rows: &[Row], all_namespaces: bool) -> String {
    let mut headers = vec!["NAME", "MODE", "HOST", "ADDRESSES", "PORTS", "AGE"];
    if all_namespaces {
        headers.insert(0, "NAMESPACE");
    }
    let body: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            let mut row = vec![
                r.name.clone(),
                r.mode.name().to_string(),
                r.host.clone(),
                r.addresses.join(","),
                r.ports.join(","),
                r.age.clone(),
            ];
            if all_namespaces {
                row.insert(0, r.namespace.clone());
            }
            row
        })
        .collect();
    table::render(&headers, &body)
}

/// Lists what is registered in the cluster's namespace, or everywhere.
pub async fn run(
    cluster: &Cluster,
    all_namespaces: bool,
    format: Option<OutputFormat>,
    io: &mut Io,
) -> Result<()> {
    let ns = (!all_namespaces).then_some(cluster.namespace.as_str());
    let selector = format!("{MANAGED_BY_KEY}={MANAGED_BY_VALUE}");
    let (ses, wes) = match cluster.served_istio_version().await? {
        Some(v) => (
            cluster
                .list(&objects::istio("ServiceEntry", &v), ns, Some(&selector))
                .await?,
            cluster
                .list(&objects::istio("WorkloadEntry", &v), ns, Some(&selector))
                .await?,
        ),
        None => (Vec::new(), Vec::new()),
    };
    let eps = cluster
        .list(&objects::core("Endpoints"), ns, Some(&selector))
        .await?;
    if let Some(f) = format {
        let ses: Vec<Value> = ses
            .into_iter()
            .filter(|s| objects::name(s).starts_with("mesh-expansion-"))
            .collect();
        let all: Vec<Value> = ses
            .into_iter()
            .chain(wes)
            .chain(eps)
            .map(objects::for_display)
            .collect();
        return output::print_objects(&mut io.out, f, &all);
    }
    let rows = rows(&ses, &wes, &eps);
    if rows.is_empty() {
        let scope = ns.map_or("any namespace".to_string(), |n| format!("namespace {n}"));
        io.note(format!(
            "No VM services registered by kubectl-mesh in {scope}."
        ))?;
        return Ok(());
    }
    io.out.write_all(render(&rows, all_namespaces).as_bytes())?;
    Ok(())
}
