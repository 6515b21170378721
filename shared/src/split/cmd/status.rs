//! `kubectl mesh-split status`: the weights of every split route per context (and recorded
//! previous weights), a warning where the contexts disagree; `--traffic` hands over to
//! `traffic.rs`.

use std::collections::BTreeMap;
use std::io::Write as _;

use anyhow::{anyhow, Result};
use futures::future::join_all;
use serde_json::Value;

use crate::api::Cluster;
use crate::istio::VirtualService;
use crate::objects;
use crate::output;
use crate::split::build::{self, Previous};
use crate::split::facts;
use crate::split::plan::Plan;
use crate::split::report::{self, StatusRow};
use crate::split::route::Route;
use crate::split::traffic;
use crate::split::weights::slash;
use crate::Io;

/// Weights of one route, per context.
type PerContext = Vec<(String, Vec<u32>)>;

/// What `status` found in every context.
#[derive(Default)]
struct Found {
    rows: Vec<StatusRow>,
    /// The VirtualServices, for `-o`.
    objs: Vec<Value>,
    /// What is missing in a context, one text each.
    missing: Vec<String>,
    /// (vs, route) -> weights per context, to warn when contexts disagree.
    seen: BTreeMap<(String, String), PerContext>,
}

/// `kubectl mesh-split status [TARGET]`.
pub(in crate::split) async fn run(plan: &Plan, clusters: &[Cluster], io: &mut Io) -> Result<()> {
    if let Some(t) = &plan.traffic {
        return traffic::run(plan, t, clusters, io).await;
    }
    let mut found = Found::default();
    let reads = join_all(clusters.iter().map(|c| facts::status_routes(plan, c))).await;
    for (cluster, read) in clusters.iter().zip(reads) {
        match read? {
            Ok(vss) => found.add(&cluster.context, vss),
            Err(m) => found.missing.push(m),
        }
    }
    match plan.output() {
        Some(format) => output::print_objects(&mut io.out, format, &found.objs)?,
        None if !found.rows.is_empty() => {
            io.out.write_all(report::status(&found.rows).as_bytes())?
        }
        None => {}
    }
    warn_disagreement(&found.seen, io)?;
    if found.missing.is_empty() {
        Ok(())
    } else {
        Err(anyhow!(found.missing.join("; ")))
    }
}

impl Found {
    /// The rows of one context's VirtualServices and routes.
    fn add(&mut self, context: &str, vss: Vec<(VirtualService, Vec<Route>)>) {
        for (vs, routes) in vss {
            let prev = build::read_previous(&vs).and_then(Result::ok);
            for r in &routes {
                let recorded = prev
                    .as_ref()
                    .filter(|p| {
                        p.route == r.at.to_string() && p.destination_list() == r.destinations
                    })
                    .map(Previous::weights);
                self.seen
                    .entry((vs.name().to_string(), r.at.to_string()))
                    .or_default()
                    .push((context.to_string(), r.weights.clone()));
                for (i, d) in r.destinations.iter().enumerate() {
                    self.rows.push(StatusRow {
                        context: context.to_string(),
                        name: vs.name().to_string(),
                        route: r.at.to_string(),
                        destination: d.to_string(),
                        weight: r.weights[i],
                        previous: recorded.as_ref().and_then(|p| p.get(i).copied()),
                    });
                }
            }
            self.objs.push(objects::for_display(vs.to_value()));
        }
    }
}

/// Warns for each route whose weights differ between contexts.
fn warn_disagreement(seen: &BTreeMap<(String, String), PerContext>, io: &mut Io) -> Result<()> {
    for ((name, route), per) in seen {
        if per.len() > 1 && per.iter().any(|(_, w)| *w != per[0].1) {
            let parts: Vec<String> = per
                .iter()
                .map(|(c, w)| format!("{c} {}", slash(w)))
                .collect();
            io.warn(format!(
                "vs/{name} route {route}: the contexts do not agree: {}",
                parts.join(", ")
            ))?;
        }
    }
    Ok(())
}
