//! What mesh-split reads from its clusters, every cluster at once: the connections, the
//! VirtualService TARGET names in each, the routes `status` shows, and the read-back after a
//! write. Results are used in the order of the clusters, so the first failure met is the one
//! reading them one after another would meet.

use anyhow::{anyhow, Result};
use futures::future::join_all;

use super::plan::Plan;
use super::route::{self, Route, RouteSelector};
use super::site::Site;
use super::target::{self, Target};
use super::weights::slash;
use crate::api::{self, Cluster};
use crate::cli::KubeArgs;
use crate::error::{usage, MeshError};
use crate::istio::VirtualService;
use crate::objects::{self, Kind};

/// Connects to every given context at once (the current one when none); a context given twice
/// is a usage error before any connection.
pub(super) async fn connect(kube: &KubeArgs) -> Result<Vec<Cluster>> {
    let (kc, targets) = api::resolve_targets(kube, &kube.contexts)?;
    for (i, t) in targets.iter().enumerate() {
        if targets[..i].iter().any(|o| o.context == t.context) {
            return Err(usage("--context", format!("{} is given twice", t.context)));
        }
    }
    Cluster::connect_all(&kc, &targets, kube).await
}

/// The VirtualService kind `cluster` serves.
pub(super) async fn vs_kind(cluster: &Cluster) -> Result<Kind> {
    Ok(objects::istio(
        "VirtualService",
        &cluster.istio_version().await?,
    ))
}

/// The VirtualService kind `cluster` serves and the VirtualService TARGET names there.
async fn read_target(cluster: &Cluster, target: &Target) -> Result<(Kind, Option<VirtualService>)> {
    let kind = vs_kind(cluster).await?;
    let live = find(cluster, &kind, target).await?;
    Ok((kind, live))
}

/// [`read_target`] in every cluster at once.
pub(super) async fn read_targets(
    clusters: &[Cluster],
    target: &Target,
) -> Vec<Result<(Kind, Option<VirtualService>)>> {
    join_all(clusters.iter().map(|c| read_target(c, target))).await
}

/// The VirtualServices of `cluster`'s namespace, typed. One that does not read as a
/// VirtualService (a real API server validates them, so only a hand-fed store holds such a
/// thing) is left out of the search rather than failing it: it is someone else's object, and
/// the one TARGET names is read strictly by [`get`].
pub(super) async fn list(cluster: &Cluster, kind: &Kind) -> Result<Vec<VirtualService>> {
    let ns = cluster.namespace.as_str();
    let all = cluster.list(kind, Some(ns), None).await?;
    Ok(all
        .iter()
        .filter_map(|v| VirtualService::read(v).ok())
        .collect())
}

/// The VirtualService TARGET names in `cluster`; `None` when there is none.
pub(super) async fn find(
    cluster: &Cluster,
    kind: &Kind,
    target: &Target,
) -> Result<Option<VirtualService>> {
    let ns = cluster.namespace.as_str();
    match target {
        Target::Vs(name) => get(cluster, kind, ns, name).await,
        Target::Host(host) => {
            let all = list(cluster, kind).await?;
            let mut hits: Vec<VirtualService> = all
                .into_iter()
                .filter(|vs| target::matches(vs, target, ns))
                .collect();
            if hits.len() > 1 {
                // A gateway VirtualService may share the host; the split one is what counts.
                let split: Vec<VirtualService> = hits
                    .iter()
                    .filter(|vs| !route::splittable(vs).is_empty())
                    .cloned()
                    .collect();
                if split.len() == 1 {
                    hits = split;
                }
            }
            if hits.len() > 1 {
                let names: Vec<String> = hits.iter().map(|v| format!("vs/{}", v.name())).collect();
                return Err(usage(
                    "TARGET",
                    format!(
                        "host {host} is in several VirtualServices in namespace {ns} (context {}): {}: name one as vs/NAME",
                        cluster.context,
                        names.join(", ")
                    ),
                ));
            }
            Ok(hits.pop())
        }
    }
}

/// The VirtualService `ns/name` in `cluster`, typed; `None` when there is none.
async fn get(
    cluster: &Cluster,
    kind: &Kind,
    ns: &str,
    name: &str,
) -> Result<Option<VirtualService>> {
    let got = cluster.get(kind, Some(ns), name).await?;
    got.as_ref().map(VirtualService::read).transpose()
}

/// TARGET is in none of the VirtualServices of `cluster`'s namespace.
pub(super) fn not_found(cluster: &Cluster, target: &Target, create_hint: bool) -> anyhow::Error {
    let ns = &cluster.namespace;
    let hint = if create_hint {
        ": name one as vs/NAME, or create one with --create --to HOST_A,HOST_B"
    } else {
        ""
    };
    match target {
        Target::Vs(name) => anyhow!(
            "VirtualService {ns}/{name} not found in context {}",
            cluster.context
        ),
        Target::Host(h) => anyhow!(
            "no VirtualService in namespace {ns} (context {}) routes host {h}{hint}",
            cluster.context
        ),
    }
}

/// The VirtualServices `status` shows in one cluster, each with the routes to show; `Err` with
/// the text of what is missing when there is none.
pub(super) async fn status_routes(
    plan: &Plan,
    cluster: &Cluster,
) -> Result<std::result::Result<Vec<(VirtualService, Vec<Route>)>, String>> {
    let kind = vs_kind(cluster).await?;
    let ns = cluster.namespace.as_str();
    let vss: Vec<VirtualService> = match &plan.target {
        Some(t) => find(cluster, &kind, t).await?.into_iter().collect(),
        None => list(cluster, &kind)
            .await?
            .into_iter()
            .filter(|v| !route::splittable(v).is_empty())
            .collect(),
    };
    if vss.is_empty() {
        return Ok(Err(match &plan.target {
            Some(t) => not_found(cluster, t, false).to_string(),
            None => format!(
                "no VirtualService in namespace {ns} (context {}) has a route with two or more destinations",
                cluster.context
            ),
        }));
    }
    Ok(Ok(vss
        .into_iter()
        .map(|vs| {
            let routes = shown_routes(&vs, plan.route.as_ref());
            (vs, routes)
        })
        .collect()))
}

/// The routes `status` shows of `vs`: the one `--route` names, else the split ones, else all.
fn shown_routes(vs: &VirtualService, selector: Option<&RouteSelector>) -> Vec<Route> {
    match selector {
        Some(sel) => route::routes(vs)
            .into_iter()
            .filter(|r| sel.matches(&r.at))
            .collect(),
        None => {
            let s = route::splittable(vs);
            if s.is_empty() {
                route::routes(vs)
            } else {
                s
            }
        }
    }
}

/// Reads every site back, all at once, and compares with what was sent.
pub(super) async fn read_back(sites: &[Site], want: &[Vec<u32>]) -> Result<()> {
    let mut diffs = Vec::new();
    let reads = join_all(
        sites
            .iter()
            .map(|site| get(&site.cluster, &site.kind, &site.namespace, &site.name)),
    )
    .await;
    for ((site, w), got) in sites.iter().zip(want).zip(reads) {
        let got = got?;
        let sel = RouteSelector::At(site.route.at.kind, site.route.at.index);
        let found = got
            .as_ref()
            .and_then(|vs| route::select(vs, Some(&sel)).ok());
        match found {
            None => diffs.push(format!("{}: the route is gone", site.describe())),
            Some(r) if r.destinations != site.route.destinations => diffs.push(format!(
                "{}: the destinations are now {}",
                site.describe(),
                r.describe()
            )),
            Some(r) if r.weights != *w => diffs.push(format!(
                "{}: reads {}, not {} (another controller may have changed it back)",
                site.describe(),
                slash(&r.weights),
                slash(w)
            )),
            Some(_) => {}
        }
    }
    if diffs.is_empty() {
        Ok(())
    } else {
        Err(MeshError::Check(format!("read back: {}", diffs.join("; "))).into())
    }
}
