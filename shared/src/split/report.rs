//! What mesh-split prints: the tables (before → after, status and the step plan; the
//! per-context state after a failed write is the shared write's, `write::across`), the result
//! line of each write and the notes on taking a route list over.

use std::io::Write as _;

use anyhow::Result;

use super::ownership::Decision;
use super::route::Route;
use super::site::Site;
use super::weights::slash;
use crate::api::Applied;
use crate::cli::DryRun;
use crate::{output, table, Io};

/// One destination of one context, before and after.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// Context name.
    pub context: String,
    /// Destination as shown.
    pub destination: String,
    /// Weight before (`None`: the VirtualService is created).
    pub before: Option<u32>,
    /// Weight after.
    pub after: u32,
}

/// The rows of one context: `route` before, `after` weights.
pub fn changes(context: &str, route: &Route, before: Option<&[u32]>, after: &[u32]) -> Vec<Change> {
    route
        .destinations
        .iter()
        .enumerate()
        .map(|(i, d)| Change {
            context: context.to_string(),
            destination: d.to_string(),
            before: before.and_then(|b| b.get(i).copied()),
            after: after.get(i).copied().unwrap_or(0),
        })
        .collect()
}

/// CONTEXT DESTINATION BEFORE AFTER.
pub fn before_after(rows: &[Change]) -> String {
    let rows: Vec<Vec<String>> = rows
        .iter()
        .map(|c| {
            vec![
                c.context.clone(),
                c.destination.clone(),
                c.before.map_or_else(|| "-".to_string(), |b| b.to_string()),
                c.after.to_string(),
            ]
        })
        .collect();
    table::render(&["context", "destination", "before", "after"], &rows)
}

/// One row of `status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusRow {
    /// Context name.
    pub context: String,
    /// VirtualService name.
    pub name: String,
    /// Route id.
    pub route: String,
    /// Destination as shown.
    pub destination: String,
    /// Current weight.
    pub weight: u32,
    /// Recorded previous weight, if any.
    pub previous: Option<u32>,
}

/// CONTEXT VIRTUALSERVICE ROUTE DESTINATION WEIGHT PREVIOUS.
pub fn status(rows: &[StatusRow]) -> String {
    let rows: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            vec![
                r.context.clone(),
                r.name.clone(),
                r.route.clone(),
                r.destination.clone(),
                r.weight.to_string(),
                r.previous
                    .map_or_else(|| "-".to_string(), |p| p.to_string()),
            ]
        })
        .collect();
    table::render(
        &[
            "context",
            "virtualservice",
            "route",
            "destination",
            "weight",
            "previous",
        ],
        &rows,
    )
}

/// STEP WEIGHTS THEN: `plan[context][step]`, with the context names when they differ.
pub fn step_plan(contexts: &[String], plan: &[Vec<Vec<u32>>], interval: &str) -> String {
    let steps = plan.first().map_or(0, Vec::len);
    let rows: Vec<Vec<String>> = (0..steps)
        .map(|k| {
            let first = plan.first().map(|p| &p[k]);
            let same = plan.iter().all(|p| Some(&p[k]) == first);
            let weights = if same {
                first.map(|w| slash(w)).unwrap_or_default()
            } else {
                let parts: Vec<String> = contexts
                    .iter()
                    .zip(plan)
                    .map(|(c, p)| format!("{c} {}", slash(&p[k])))
                    .collect();
                parts.join(", ")
            };
            let then = if k + 1 == steps {
                "done".to_string()
            } else {
                format!("wait {interval}")
            };
            vec![(k + 1).to_string(), weights, then]
        })
        .collect();
    table::render(&["step", "weights", "then"], &rows)
}

/// One result line per site, `CONTEXT: kubectl's line`.
pub(super) fn result_lines(
    sites: &[Site],
    applied: &[Applied],
    dry_run: DryRun,
    io: &mut Io,
) -> Result<()> {
    for (site, a) in sites.iter().zip(applied) {
        io.note(format!(
            "{}: {}",
            site.context(),
            output::result_line(&a.object, a.outcome, dry_run)
        ))?;
    }
    Ok(())
}

/// The before → after table of every site.
pub(super) fn print_table(sites: &[Site], after: &[Vec<u32>], io: &mut Io) -> Result<()> {
    let mut rows: Vec<Change> = Vec::new();
    for (site, a) in sites.iter().zip(after) {
        rows.extend(changes(
            site.context(),
            &site.route,
            site.start.as_deref(),
            a,
        ));
    }
    io.out.write_all(before_after(&rows).as_bytes())?;
    Ok(())
}

/// Says whose route list is taken over, once every cluster has passed validation.
pub(super) fn ownership_notes(sites: &[Site], io: &mut Io) -> Result<()> {
    for site in sites {
        let field = format!("spec.{}", site.route.at.kind.field());
        match &site.decision {
            Decision::TakeOver(from) => io.note(format!(
                "{}: taking over {field} from {} (kubectl by hand)",
                site.describe(),
                from.join(", ")
            ))?,
            Decision::Forced(from) => io.warn(format!(
                "{}: {field} is managed by {}; --force-conflicts takes it over, and {} may change it back",
                site.describe(),
                from.join(", "),
                from.join(", ")
            ))?,
            Decision::Free | Decision::Refuse(_) => {}
        }
    }
    Ok(())
}

/// Warns when the contexts of a set start from different weights.
pub(super) fn start_disagreement(sites: &[Site], io: &mut Io) -> Result<()> {
    if sites.len() < 2 {
        return Ok(());
    }
    let starts: Vec<Option<&Vec<u32>>> = sites.iter().map(|s| s.start.as_ref()).collect();
    if starts.iter().all(|s| *s == starts[0]) {
        return Ok(());
    }
    let parts: Vec<String> = sites
        .iter()
        .map(|s| {
            format!(
                "{} {}",
                s.context(),
                s.start.as_deref().map_or("absent".to_string(), slash)
            )
        })
        .collect();
    io.warn(format!(
        "the contexts do not agree now: {}",
        parts.join(", ")
    ))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::split::route::{Destination, RouteKind, RouteRef};

    #[test]
    fn before_after_reads_like_kubectl() {
        let route = Route {
            at: RouteRef {
                kind: RouteKind::Http,
                index: 0,
                name: None,
            },
            destinations: vec![
                Destination::host("a"),
                Destination::host("a-gke.default.global"),
            ],
            weights: vec![100, 0],
        };
        let mut rows = changes("cluster1", &route, Some(&[100, 0]), &[80, 20]);
        rows.extend(changes("cluster2", &route, None, &[80, 20]));
        assert_eq!(
            before_after(&rows),
            "CONTEXT    DESTINATION            BEFORE   AFTER
cluster1   a                      100      80
cluster1   a-gke.default.global   0        20
cluster2   a                      -        80
cluster2   a-gke.default.global   -        20
"
        );
    }

    #[test]
    fn step_plan_names_contexts_only_when_they_differ() {
        let same = vec![vec![vec![80, 20], vec![0, 100]]; 2];
        let ctx = vec!["c1".to_string(), "c2".to_string()];
        assert_eq!(
            step_plan(&ctx, &same, "2m"),
            "STEP   WEIGHTS   THEN\n1      80/20     wait 2m\n2      0/100     done\n"
        );
        let differ = vec![vec![vec![80, 20]], vec![vec![20, 80]]];
        assert!(step_plan(&ctx, &differ, "2m").contains("c1 80/20, c2 20/80"));
    }
}
