//! `status --traffic`: per context and destination, the configured weight next to what
//! Prometheus saw (share of requests, success rate, p99), once or redrawn with `--watch`.

use std::io::Write as _;
use std::time::Duration;

use anyhow::Result;
use futures::future::join_all;

use super::analysis::{selector, Queries};
use super::cli::{Args, StatusArgs};
use super::facts;
use super::plan::Plan;
use super::steps::Interrupt;
use crate::api::Cluster;
use crate::duration::HumanDuration;
use crate::error::{one_line, usage};
use crate::prom::{Endpoint, Prometheus};
use crate::{table, Io};

/// The default `--window` of `status --traffic`.
pub const DEFAULT_WINDOW: Duration = Duration::from_secs(300);

/// How often `--watch` redraws.
const REFRESH: Duration = Duration::from_secs(2);

/// Width of the bar of a 100% share.
const BAR: usize = 30;

/// `status --traffic`, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct Traffic {
    /// One Prometheus for every context, or one per context.
    pub endpoints: Vec<Endpoint>,
    /// The range of the queries.
    pub window: Duration,
    /// `--watch`.
    pub watch: bool,
}

impl Traffic {
    /// Validates `status` flags; `None` without `--traffic`.
    pub fn plan(s: &StatusArgs, args: &Args) -> Result<Option<Self>> {
        let endpoints = args.prom.endpoints()?;
        if !s.traffic {
            if !endpoints.is_empty() {
                return Err(usage("--prometheus", "with status, give --traffic too"));
            }
            if args.window.is_some() {
                return Err(usage("--window", "with status, give --traffic too"));
            }
            return Ok(None);
        }
        if endpoints.is_empty() {
            return Err(usage(
                "--traffic",
                "needs --prometheus URL (one for all contexts, or one per --context)",
            ));
        }
        let contexts = args.kube.contexts.len().max(1);
        super::analysis::one_per_context(endpoints.len(), contexts)?;
        if s.read.output.is_some() {
            return Err(usage("-o", "does not go with --traffic"));
        }
        let window = args.window.map_or(DEFAULT_WINDOW, |w| w.0);
        if window < Duration::from_secs(1) {
            return Err(usage("--window", "must be 1s or more"));
        }
        Ok(Some(Self {
            endpoints,
            window,
            watch: s.watch,
        }))
    }
}

/// One destination's line.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// Context.
    pub context: String,
    /// VirtualService name.
    pub name: String,
    /// Destination as shown.
    pub destination: String,
    /// Configured weight.
    pub weight: u32,
    /// Requests over the window.
    pub requests: f64,
    /// Share of the route's requests (`None`: the route saw none).
    pub share: Option<f64>,
    /// 1 - 5xx share (`None`: no requests).
    pub success: Option<f64>,
    /// p99 in milliseconds.
    pub p99: Option<f64>,
}

fn pct(x: Option<f64>) -> String {
    x.map_or_else(|| "-".to_string(), |v| format!("{:.1}%", v * 100.0))
}

/// CONTEXT VIRTUALSERVICE DESTINATION WEIGHT SHARE SUCCESS P99 [bar].
pub fn render(rows: &[Row], bars: bool) -> String {
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            let mut v = vec![
                r.context.clone(),
                r.name.clone(),
                r.destination.clone(),
                format!("{}%", r.weight),
                pct(r.share),
                pct(r.success),
                r.p99
                    .map_or_else(|| "-".to_string(), |p| format!("{p:.0}ms")),
            ];
            if bars {
                let n = r.share.map_or(0, |s| {
                    // Rounded to whole cells of a 30-cell bar; clamp guards the cast.
                    (s.clamp(0.0, 1.0) * BAR as f64).round() as usize
                });
                v.push(format!("{}{}", "#".repeat(n), ".".repeat(BAR - n)));
            }
            v
        })
        .collect();
    let mut headers = vec![
        "context",
        "virtualservice",
        "destination",
        "weight",
        "share",
        "success",
        "p99",
    ];
    if bars {
        headers.push("observed");
    }
    table::render(&headers, &cells)
}

async fn value(prom: &Prometheus, q: &str) -> Result<Option<f64>> {
    Ok(prom.value(q).await?.filter(|v| v.is_finite()))
}

/// Reads the routes and asks Prometheus, for every context at once.
async fn rows(
    plan: &Plan,
    traffic: &Traffic,
    clusters: &[Cluster],
    proms: &[Prometheus],
) -> Result<(Vec<Row>, Vec<String>)> {
    let reads = join_all(clusters.iter().enumerate().map(|(i, cluster)| {
        let prom = &proms[i.min(proms.len() - 1)];
        cluster_rows(plan, traffic, cluster, prom)
    }))
    .await;
    let mut rows = Vec::new();
    let mut missing = Vec::new();
    for read in reads {
        match read? {
            Ok(r) => rows.extend(r),
            Err(m) => missing.push(m),
        }
    }
    Ok((rows, missing))
}

/// One context's rows; `Err` with the text of what is missing when it has no route to show.
async fn cluster_rows(
    plan: &Plan,
    traffic: &Traffic,
    cluster: &Cluster,
    prom: &Prometheus,
) -> Result<std::result::Result<Vec<Row>, String>> {
    let found = match facts::status_routes(plan, cluster).await? {
        Ok(f) => f,
        Err(m) => return Ok(Err(m)),
    };
    let mut rows = Vec::new();
    for (vs, routes) in &found {
        for r in routes {
            let mut route_rows = Vec::new();
            for (d, w) in r.destinations.iter().zip(&r.weights) {
                let q = Queries::new(&selector(d, &cluster.namespace), traffic.window);
                let requests = value(prom, &q.requests).await?.unwrap_or(0.0);
                let (success, p99) = if requests > 0.0 {
                    (
                        value(prom, &q.error_rate).await?.map(|e| 1.0 - e),
                        value(prom, &q.p99).await?,
                    )
                } else {
                    (None, None)
                };
                route_rows.push(Row {
                    context: cluster.context.clone(),
                    name: vs.name().to_string(),
                    destination: d.to_string(),
                    weight: *w,
                    requests,
                    share: None,
                    success,
                    p99,
                });
            }
            let total: f64 = route_rows.iter().map(|r| r.requests).sum();
            if total > 0.0 {
                for r in &mut route_rows {
                    r.share = Some(r.requests / total);
                }
            }
            rows.extend(route_rows);
        }
    }
    Ok(Ok(rows))
}

/// Prints the table once, or redraws it every few seconds with `--watch` until a signal.
pub(super) async fn run(
    plan: &Plan,
    traffic: &Traffic,
    clusters: &[Cluster],
    io: &mut Io,
) -> Result<()> {
    let proms = traffic
        .endpoints
        .iter()
        .map(Prometheus::connect)
        .collect::<Result<Vec<_>>>()?;
    let title = format!(
        "Observed over the last {} (Prometheus {})",
        HumanDuration(traffic.window),
        proms
            .iter()
            .map(|p| p.endpoint().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    );
    if !traffic.watch {
        let (rows, missing) = rows(plan, traffic, clusters, &proms).await?;
        io.note(&title)?;
        io.out.write_all(render(&rows, false).as_bytes())?;
        return if missing.is_empty() {
            Ok(())
        } else {
            Err(anyhow::anyhow!(missing.join("; ")))
        };
    }
    let mut interrupt = Interrupt::catch().await;
    loop {
        // Each refresh reads the weights again: a walk in another terminal moves them.
        let drawn = match rows(plan, traffic, clusters, &proms).await {
            Ok((rows, missing)) => {
                let mut text = render(&rows, io.terminal);
                for m in missing {
                    text.push_str(&format!("{m}\n"));
                }
                text
            }
            Err(e) => format!("{}\n", one_line(&e)),
        };
        if io.terminal {
            // Home and clear, then the new table: a redraw in place.
            write!(
                io.out,
                "\x1b[H\x1b[2J{title}, every {} (Ctrl-C stops)\n\n{drawn}",
                HumanDuration(REFRESH)
            )?;
        } else {
            writeln!(io.out, "{title}\n{drawn}")?;
        }
        io.out.flush()?;
        if !interrupt
            .wait(REFRESH, "", false, &mut std::io::sink())
            .await
        {
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_shows_weight_next_to_what_was_seen() {
        let row = |d: &str, w, share, success, p99| Row {
            context: "cluster1".into(),
            name: "pc".into(),
            destination: d.into(),
            weight: w,
            requests: 1.0,
            share,
            success,
            p99,
        };
        let rows = vec![
            row("vm", 80, Some(0.79), Some(1.0), Some(12.0)),
            row("gke", 20, Some(0.21), Some(0.9), Some(480.4)),
            row("idle", 0, None, None, None),
        ];
        insta::assert_snapshot!(render(&rows, true));
    }
}
