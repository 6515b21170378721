//! `kubectl mesh-link --list`: the links a calling cluster holds, as a kubectl-like table.

use std::io::Write as _;

use anyhow::Result;
use serde_json::Value;

use super::service_entry::{self, Listed};
use crate::api::Cluster;
use crate::cli::OutputFormat;
use crate::objects;
use crate::output;
use crate::table;
use crate::Io;

/// The table of linked ServiceEntries: HOST, ADDRESS, GATEWAY, SOURCE, PORTS.
pub fn render(links: &[Listed]) -> String {
    let rows: Vec<Vec<String>> = links
        .iter()
        .map(|se| {
            vec![
                service_entry::hosts(se).join(","),
                service_entry::addresses(se).join(","),
                service_entry::gateway_text(se),
                service_entry::source(se).unwrap_or("").to_string(),
                service_entry::ports_text(se),
            ]
        })
        .collect();
    table::render(&["host", "address", "gateway", "source", "ports"], &rows)
}

/// Linked ServiceEntries among `ses`, optionally only those from one source context, sorted by
/// namespace and host.
pub fn links_of(ses: Vec<Listed>, from: Option<&str>) -> Vec<Listed> {
    let mut links: Vec<Listed> = ses
        .into_iter()
        .filter(|se| {
            service_entry::is_link(se) && from.is_none_or(|f| service_entry::source(se) == Some(f))
        })
        .collect();
    links.sort_by(|a, b| {
        (a.namespace(), service_entry::hosts(a).first().copied())
            .cmp(&(b.namespace(), service_entry::hosts(b).first().copied()))
    });
    links
}

/// Prints the links of `cluster` (one namespace, or all when `namespace` is `None`).
pub async fn run(
    cluster: &Cluster,
    from: Option<&str>,
    namespace: Option<&str>,
    format: Option<OutputFormat>,
    io: &mut Io,
) -> Result<()> {
    let version = cluster.istio_version().await?;
    let ses = cluster
        .list(&objects::istio("ServiceEntry", &version), namespace, None)
        .await?;
    let links = links_of(service_entry::read_listed(ses)?, from);
    if let Some(f) = format {
        let objs: Vec<Value> = links
            .into_iter()
            .map(|se| objects::for_display(se.served))
            .collect();
        return output::print_objects(&mut io.out, f, &objs);
    }
    if links.is_empty() {
        let scope = namespace.map_or_else(String::new, |n| format!(" in namespace {n}"));
        let source = from.map_or_else(String::new, |f| format!(" from {f}"));
        io.note(format!(
            "No links{source} found in context {}{scope}.",
            cluster.context
        ))?;
        return Ok(());
    }
    write!(io.out, "{}", render(&links))?;
    Ok(())
}
