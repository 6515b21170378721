//! `kubectl mesh-register --list`: what kubectl-mesh registered, as a `kubectl get`-like table.

use std::collections::BTreeMap;
use std::io::Write as _;

use anyhow::Result;
use k8s_openapi::api::core::v1::Endpoints;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde_json::Value;

use super::plan::Mode;
use crate::api::Cluster;
use crate::cli::OutputFormat;
use crate::duration::age_at;
use crate::istio::{ServiceEntry, WorkloadEntry};
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

fn ports_of_map(map: Option<&BTreeMap<String, u32>>) -> Vec<String> {
    let mut ports: Vec<(u32, String)> = map
        .into_iter()
        .flatten()
        .map(|(k, v)| (*v, format!("{k}:{v}")))
        .collect();
    ports.sort();
    ports.into_iter().map(|(_, s)| s).collect()
}

/// The AGE cell of an object.
fn age(meta: &ObjectMeta) -> String {
    age_at(meta.creation_timestamp.as_ref().map(|t| t.0))
}

/// Rows from the managed ServiceEntries, WorkloadEntries and Endpoints found (pure).
pub fn rows(
    service_entries: &[ServiceEntry],
    workload_entries: &[WorkloadEntry],
    endpoints: &[Endpoints],
) -> Vec<Row> {
    let mut rows = Vec::new();
    for se in service_entries {
        let Some(name) = se.name().strip_prefix("mesh-expansion-") else {
            continue;
        };
        rows.push(Row {
            namespace: se.namespace().unwrap_or("").to_string(),
            name: name.to_string(),
            mode: Mode::ServiceEntry,
            host: se.spec.hosts.first().cloned().unwrap_or_default(),
            addresses: super::build::service_entry_ips(se)
                .iter()
                .map(ToString::to_string)
                .collect(),
            ports: se
                .spec
                .ports
                .iter()
                .flatten()
                .map(|p| format!("{}:{}", p.name.as_deref().unwrap_or(""), p.number))
                .collect(),
            age: age(&se.metadata),
        });
    }
    let mut groups: BTreeMap<(String, String), Vec<&WorkloadEntry>> = BTreeMap::new();
    for we in workload_entries {
        let Some(app) = we.metadata.labels.as_ref().and_then(|l| l.get("app")) else {
            continue;
        };
        let ns = we.namespace().unwrap_or("").to_string();
        groups.entry((ns, app.clone())).or_default().push(we);
    }
    for ((ns, app), wes) in groups {
        let oldest = wes
            .iter()
            .min_by_key(|w| w.metadata.creation_timestamp.clone())
            .copied();
        rows.push(Row {
            host: format!("{app}.{ns}.svc"),
            namespace: ns,
            name: app,
            mode: Mode::WorkloadEntry,
            addresses: wes.iter().filter_map(|w| w.spec.address.clone()).collect(),
            ports: wes
                .first()
                .map(|w| ports_of_map(w.spec.ports.as_ref()))
                .unwrap_or_default(),
            age: oldest.map(|w| age(&w.metadata)).unwrap_or_default(),
        });
    }
    for ep in endpoints {
        let ns = ep.metadata.namespace.clone().unwrap_or_default();
        let name = ep.metadata.name.clone().unwrap_or_default();
        let first = ep.subsets.as_ref().and_then(|s| s.first());
        rows.push(Row {
            host: format!("{name}.{ns}.svc"),
            namespace: ns,
            name,
            mode: Mode::Endpoints,
            addresses: super::build::endpoints_ips(ep)
                .iter()
                .map(ToString::to_string)
                .collect(),
            ports: first
                .and_then(|s| s.ports.as_ref())
                .into_iter()
                .flatten()
                .map(|p| format!("{}:{}", p.name.as_deref().unwrap_or(""), p.port))
                .collect(),
            age: age(&ep.metadata),
        });
    }
    rows.sort_by(|a, b| {
        (&a.namespace, &a.name, a.mode.name()).cmp(&(&b.namespace, &b.name, b.mode.name()))
    });
    rows
}

/// NAME MODE HOST ADDRESSES PORTS AGE of one row.
fn cells(r: &Row) -> [String; 6] {
    [
        r.name.clone(),
        r.mode.name().to_string(),
        r.host.clone(),
        r.addresses.join(","),
        r.ports.join(","),
        r.age.clone(),
    ]
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
            let mut row = cells(r).to_vec();
            if all_namespaces {
                row.insert(0, r.namespace.clone());
            }
            row
        })
        .collect();
    table::render(&headers, &body)
}

/// What kubectl-mesh registered in one cluster: its ServiceEntries, WorkloadEntries and
/// Endpoints, as read (what `-o` prints) and as table rows (read typed).
pub struct Found {
    shown: Vec<Value>,
    rows: Vec<Row>,
}

impl Found {
    /// The objects, as `-o` prints them.
    pub fn objects(self) -> Vec<Value> {
        self.shown
    }

    /// The table's rows.
    pub fn rows(&self) -> Vec<Row> {
        self.rows.clone()
    }
}

/// Reads what is registered in the cluster's namespace, or everywhere; a malformed object is
/// an error naming it.
pub async fn read(cluster: &Cluster, all_namespaces: bool) -> Result<Found> {
    let ns = (!all_namespaces).then_some(cluster.namespace.as_str());
    let selector = format!("{MANAGED_BY_KEY}={MANAGED_BY_VALUE}");
    let (service_entries, workload_entries) = match cluster.served_istio_version().await? {
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
    let endpoints = cluster
        .list(&objects::core("Endpoints"), ns, Some(&selector))
        .await?;
    let rows = rows(
        &typed(&service_entries)?,
        &typed(&workload_entries)?,
        &typed(&endpoints)?,
    );
    let shown = service_entries
        .into_iter()
        .filter(|s| objects::name(s).starts_with("mesh-expansion-"))
        .chain(workload_entries)
        .chain(endpoints)
        .map(objects::for_display)
        .collect();
    Ok(Found { shown, rows })
}

fn typed<T: serde::de::DeserializeOwned>(objs: &[Value]) -> Result<Vec<T>> {
    objs.iter().map(objects::read).collect()
}

/// Lists what is registered in the cluster's namespace, or everywhere.
pub async fn run(
    cluster: &Cluster,
    all_namespaces: bool,
    format: Option<OutputFormat>,
    io: &mut Io,
) -> Result<()> {
    let found = read(cluster, all_namespaces).await?;
    if let Some(f) = format {
        return output::print_objects(&mut io.out, f, &found.objects());
    }
    let rows = found.rows();
    if rows.is_empty() {
        let scope = if all_namespaces {
            "any namespace".to_string()
        } else {
            format!("namespace {}", cluster.namespace)
        };
        io.note(format!(
            "No VM services registered by kubectl-mesh in {scope}."
        ))?;
        return Ok(());
    }
    io.out.write_all(render(&rows, all_namespaces).as_bytes())?;
    Ok(())
}

/// How one service differs between the contexts listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Difference {
    /// The DIFFERS cell: `addresses`, `ports`, `mode`, `not-in:CONTEXT`, comma-separated.
    pub cell: String,
    /// Each difference spelled out per context, for the warning.
    pub detail: Vec<String>,
}

/// The services (namespace, name) whose mode, addresses or ports differ between the contexts,
/// or that some context lacks (pure).
pub fn differences(
    rows: &[(String, Row)],
    contexts: &[String],
) -> BTreeMap<(String, String), Difference> {
    let mut by_service: BTreeMap<(String, String), Vec<(&String, &Row)>> = BTreeMap::new();
    for (context, row) in rows {
        by_service
            .entry((row.namespace.clone(), row.name.clone()))
            .or_default()
            .push((context, row));
    }
    let mut out = BTreeMap::new();
    for (key, found) in by_service {
        let mut cells = Vec::new();
        let mut detail = Vec::new();
        let sorted = |v: &[String]| {
            let mut v = v.to_vec();
            v.sort();
            v.join(",")
        };
        type Facet = (&'static str, fn(&Row) -> Vec<String>);
        let facets: [Facet; 3] = [
            ("mode", |r| vec![r.mode.name().to_string()]),
            ("addresses", |r| r.addresses.clone()),
            ("ports", |r| r.ports.clone()),
        ];
        for (facet, of) in facets {
            let values: Vec<String> = found.iter().map(|&(_, r)| sorted(&of(r))).collect();
            if values.iter().any(|v| *v != values[0]) {
                cells.push(facet.to_string());
                let each: Vec<String> = found
                    .iter()
                    .zip(&values)
                    .map(|((c, _), v)| format!("{c} {}", if v.is_empty() { "-" } else { v }))
                    .collect();
                detail.push(format!("{facet}: {}", each.join(", ")));
            }
        }
        for context in contexts {
            if !found.iter().any(|(c, _)| *c == context) {
                cells.push(format!("not-in:{context}"));
                detail.push(format!("not registered in {context}"));
            }
        }
        if !cells.is_empty() {
            out.insert(
                key,
                Difference {
                    cell: cells.join(","),
                    detail,
                },
            );
        }
    }
    out
}

/// The table across contexts: CONTEXT first, and DIFFERS last (`-` where the contexts agree).
pub fn render_across(
    rows: &[(String, Row)],
    differences: &BTreeMap<(String, String), Difference>,
    all_namespaces: bool,
) -> String {
    let mut headers = vec!["CONTEXT"];
    if all_namespaces {
        headers.push("NAMESPACE");
    }
    headers.extend([
        "NAME",
        "MODE",
        "HOST",
        "ADDRESSES",
        "PORTS",
        "AGE",
        "DIFFERS",
    ]);
    let mut sorted: Vec<&(String, Row)> = rows.iter().collect();
    // A service's contexts side by side, in the order of --context.
    sorted.sort_by_key(|(_, r)| (r.namespace.clone(), r.name.clone()));
    let body: Vec<Vec<String>> = sorted
        .into_iter()
        .map(|(context, r)| {
            let mut row = vec![context.clone()];
            if all_namespaces {
                row.push(r.namespace.clone());
            }
            let differs = differences
                .get(&(r.namespace.clone(), r.name.clone()))
                .map_or("-".to_string(), |d| d.cell.clone());
            row.extend(cells(r));
            row.push(differs);
            row
        })
        .collect();
    table::render(&headers, &body)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(name: &str, addresses: &[&str], ports: &[&str]) -> Row {
        Row {
            namespace: "default".into(),
            name: name.into(),
            mode: Mode::ServiceEntry,
            host: format!("{name}.default.svc.cluster.local"),
            addresses: addresses.iter().map(|s| s.to_string()).collect(),
            ports: ports.iter().map(|s| s.to_string()).collect(),
            age: "5m".into(),
        }
    }

    #[test]
    fn differences_name_what_is_not_the_same_in_every_context() {
        let contexts = vec!["c1".to_string(), "c2".to_string()];
        let rows = vec![
            (
                "c1".to_string(),
                row("pc", &["10.0.0.1", "10.0.0.2"], &["grpc:3550"]),
            ),
            ("c1".to_string(), row("same", &["10.0.0.9"], &["http:80"])),
            ("c1".to_string(), row("lonely", &["10.0.0.5"], &["http:80"])),
            (
                "c2".to_string(),
                row("pc", &["10.0.0.2", "10.0.0.1"], &["grpc:3551"]),
            ),
            ("c2".to_string(), row("same", &["10.0.0.9"], &["http:80"])),
        ];
        let d = differences(&rows, &contexts);
        let key = |n: &str| ("default".to_string(), n.to_string());
        // The order of the addresses is not a difference; the port is.
        assert_eq!(d[&key("pc")].cell, "ports");
        assert_eq!(
            d[&key("pc")].detail,
            vec!["ports: c1 grpc:3550, c2 grpc:3551".to_string()]
        );
        assert_eq!(d[&key("lonely")].cell, "not-in:c2");
        assert!(!d.contains_key(&key("same")));
        let table = render_across(&rows, &d, false);
        let lines: Vec<&str> = table.lines().collect();
        assert!(lines[0].starts_with("CONTEXT   NAME"), "{table}");
        assert!(lines[0].ends_with("DIFFERS"), "{table}");
        // A service's contexts side by side.
        assert!(lines[1].starts_with("c1        lonely"), "{table}");
        assert!(
            lines[2].starts_with("c1        pc") && lines[2].ends_with("ports"),
            "{table}"
        );
        assert!(lines[3].starts_with("c2        pc"), "{table}");
        assert!(
            lines[4].starts_with("c1        same") && lines[4].ends_with("-"),
            "{table}"
        );
    }
}
