//! `--network`: the clusters' networks, the labels that make each known to the other's istiod,
//! and the east-west gateway that carries the traffic between them.

use anyhow::Result;
use serde_json::json;

use super::super::Args;
use super::facts;
use super::linking::Direction;
use super::network;
use crate::api::Cluster;
use crate::link::GatewayRef;
use crate::objects;
use crate::vm::control_plane::NETWORK_LABEL;
use crate::vm::detect::{ClusterNetwork, ControlPlane};
use crate::write::Step;
use crate::Io;

/// The networks of --from and --to, and the label writes of each cluster's Istio namespace.
pub(super) struct Networks {
    /// The network names of --from and --to.
    pub(super) names: (String, String),
    /// The label writes, in --from and in --to.
    pub(super) labels: (Option<Step>, Option<Step>),
}

/// The networks of both clusters, read at once, and the label writes that make them known to
/// the other cluster's istiod; fails unless they are two networks.
pub(super) async fn networks(
    args: &Args,
    (a, b): (&Cluster, &Cluster),
    ns: &str,
    (a_id, b_id): (&str, &str),
    io: &mut Io,
) -> Result<Networks> {
    let ((mut ia, ha), (mut ib, hb)) = (Io::held(io.terminal), Io::held(io.terminal));
    let from = network_of(
        a,
        ns,
        a_id,
        args.from_network.as_deref(),
        "--from-network",
        &mut ia,
    );
    let to = network_of(
        b,
        ns,
        b_id,
        args.to_network.as_deref(),
        "--to-network",
        &mut ib,
    );
    let ((na, la), (nb, lb)) = facts::in_order(io, (from, ha), (to, hb)).await?;
    if na.name.is_empty() || na.name == nb.name {
        anyhow::bail!(
            "--network is for clusters on separate networks, and {} and {} are not ({} / {}): label each cluster's {ns} namespace with topology.istio.io/network (--from-network, --to-network), or drop --network",
            a.context,
            b.context,
            na,
            nb
        );
    }
    Ok(Networks {
        names: (na.name, nb.name),
        labels: (la, lb),
    })
}

/// `--network`: the settings of the east-west gateway.
pub(super) struct Network {
    pub(super) gateway: GatewayRef,
    pub(super) expose: bool,
}

/// `--network`: the two clusters are on different networks and the source's east-west gateway
/// can carry the traffic; with `--expose-services`, the step applying its Gateway.
pub(super) async fn east_west(
    d: &Direction<'_>,
    network: &str,
    net: &Network,
    io: &mut Io,
) -> Result<Vec<Step>> {
    let a = d.src;
    let gw = &net.gateway;
    let svc = a
        .get(&objects::core("Service"), Some(&gw.namespace), &gw.name)
        .await?;
    let problems = network::gateway_problems(svc.as_ref(), gw, network);
    if !problems.is_empty() {
        anyhow::bail!(
            "the east-west gateway of context {:?} cannot carry {network}'s traffic: {}",
            a.context,
            problems.join("; ")
        );
    }
    io.note(format!(
        "east-west gateway of context {}: {gw} on network {network}, port 15443",
        a.context
    ))?;
    if !net.expose {
        return Ok(Vec::new());
    }
    let version = a.istio_version().await?;
    let kind = objects::istio("Gateway", &version);
    let existing = a
        .get(&kind, Some(&gw.namespace), network::GATEWAY_NAME)
        .await?;
    match existing {
        Some(g) if !objects::is_managed(&g) => {
            io.note(format!(
                "{} exists in context {}: used as it is",
                crate::output::type_and_name(&g),
                a.context
            ))?;
            Ok(Vec::new())
        }
        existing => {
            let selector = svc
                .map(|s| s["spec"]["selector"].clone())
                .unwrap_or_default();
            let desired = network::cross_network_gateway(&gw.namespace, &version, &selector);
            Ok(vec![Step::apply(desired, existing)])
        }
    }
}

/// A cluster's network, printed with its source, and the write that labels its Istio namespace
/// with it when the label is missing: istiod in another cluster learns this cluster's network
/// only from that label (or its own meshNetworks), never from this cluster's istiod settings.
async fn network_of(
    c: &Cluster,
    ns: &str,
    id: &str,
    named: Option<&str>,
    flag: &str,
    io: &mut Io,
) -> Result<(ClusterNetwork, Option<Step>)> {
    let ns_kind = objects::core("Namespace");
    let (found, namespace) = tokio::join!(
        async { ControlPlane::new(c, ns, None).network(Some(id)).await },
        c.get(&ns_kind, None, ns)
    );
    let (found, namespace) = (found?, namespace?);
    let labelled = namespace
        .as_ref()
        .and_then(|n| n["metadata"]["labels"][NETWORK_LABEL].as_str())
        .map(String::from);
    let net = match named {
        Some(n) if !found.name.is_empty() && found.name != n => anyhow::bail!(
            "context {:?} is on network {found}, and {flag} says {n}: istiod already uses {}; fix the cluster's setting or the flag",
            c.context,
            found.name
        ),
        Some(n) => ClusterNetwork {
            name: n.to_string(),
            source: format!("from {flag}"),
        },
        None => found,
    };
    io.note(format!("network of context {}: {net}", c.context))?;
    if net.name.is_empty() || labelled.as_deref() == Some(net.name.as_str()) {
        return Ok((net, None));
    }
    let desired = json!({
        "apiVersion": "v1",
        "kind": "Namespace",
        // Only the one label: the namespace is the Istio install's, so it gets no managed-by label.
        "metadata": {"name": ns, "labels": {NETWORK_LABEL: net.name}},
    });
    Ok((net, Some(Step::apply(desired, namespace))))
}
