//! `kubectl mesh-link --mode remote-secret` (linking and `--rotate`): read both clusters of each
//! direction and plan the writes: the reader identity and its token in the source, the remote
//! secret in the target.

use anyhow::Result;
use serde_json::{json, Value};

use super::super::Args;
use super::apply::{Role, TokenSource};
use super::east_west::{self, Network};
use super::plan::Plan;
use super::{build, facts, ledger};
use crate::api::Cluster;
use crate::objects;
use crate::write::Step;
use crate::Io;

/// One direction of a link: istiod in `dst` learns to read `src`.
pub(super) struct Direction<'a> {
    pub(super) src: &'a Cluster,
    pub(super) dst: &'a Cluster,
    pub(super) src_id: &'a str,
    pub(super) dst_id: &'a str,
    /// `src`'s API server URL and CA.
    pub(super) endpoint: (String, Vec<u8>),
    /// With `--network`: the networks of `src` and `dst`.
    pub(super) networks: Option<(String, String)>,
}

/// The API server URLs and CAs of --from, and of --to when linking both ways.
pub(super) type Endpoints = ((String, Vec<u8>), Option<(String, Vec<u8>)>);

/// The writes of a link, in the order they are made: --from's reader identity, --to's remote
/// secret, --from's revocation of an old token (`--rotate`), then the way back when linking
/// both ways. Both directions are read at once.
pub(super) async fn sides<'c>(
    args: &Args,
    plan: &Plan,
    (a, b): (&'c Cluster, &'c Cluster),
    (a_id, b_id): (&str, &str),
    (from_endpoint, to_endpoint): Endpoints,
    io: &mut Io,
) -> Result<Vec<(&'c Cluster, Role)>> {
    let ns = plan.istio_namespace.as_str();
    let net = plan.network.then(|| Network {
        gateway: args.eastwest_gateway.clone(),
        expose: args.expose_services,
    });
    let net = net.as_ref();
    // The networks of both clusters, and the label writes that make them known to the other
    // cluster's istiod: with --network.
    let (nets, labels) = match plan.network {
        false => (None, (None, None)),
        true => {
            let n = east_west::networks(args, (a, b), ns, (a_id, b_id), io).await?;
            (Some(n.names), n.labels)
        }
    };
    let one = Direction {
        src: a,
        dst: b,
        src_id: a_id,
        dst_id: b_id,
        endpoint: from_endpoint,
        networks: nets.clone(),
    };
    let back = to_endpoint.map(|endpoint| Direction {
        src: b,
        dst: a,
        src_id: b_id,
        dst_id: a_id,
        endpoint,
        networks: nets.map(|(na, nb)| (nb, na)),
    });
    let ((mut ia, ha), (mut ib, hb)) = (Io::held(io.terminal), Io::held(io.terminal));
    let way_back = async {
        match &back {
            Some(back) => link_sides(back, plan, net, &mut ib).await.map(Some),
            None => Ok(None),
        }
    };
    let there = link_sides(&one, plan, net, &mut ia);
    let ((mut source, mut target, revoke), back) =
        facts::in_order(io, (there, ha), (way_back, hb)).await?;
    // The labels go first, with the first direction's writes in each cluster.
    for (role, label) in [(&mut source, labels.0), (&mut target, labels.1)] {
        match role {
            Role::Source { steps, .. } | Role::Target { pre: steps, .. } => {
                steps.splice(0..0, label);
            }
            Role::Plain(_) => {}
        }
    }
    let mut sides = vec![(a, source), (b, target)];
    sides.extend(revoke.map(|revoke| (a, revoke)));
    if let Some((source, target, _)) = back {
        sides.push((b, source));
        sides.push((a, target));
    }
    Ok(sides)
}

/// Reads both clusters of a direction and plans the source's and the target's writes, and with
/// `--rotate` the source's revocation of the old token, written last.
async fn link_sides(
    d: &Direction<'_>,
    plan: &Plan,
    net: Option<&Network>,
    io: &mut Io,
) -> Result<(Role, Role, Option<Role>)> {
    let (a, b) = (d.src, d.dst);
    let ns = plan.istio_namespace.as_str();
    let mut steps = Vec::new();
    if let (Some(net), Some(networks)) = (net, &d.networks) {
        steps.extend(east_west::east_west(d, &networks.0, net, io).await?);
    }
    let secret_name = build::remote_secret_name(d.src_id);
    let secret_kind = objects::core("Secret");
    let (reader, existing) = tokio::join!(
        facts::reader(a, ns),
        b.get(&secret_kind, Some(ns), &secret_name)
    );
    let reader = reader?;
    steps.extend(reader_steps(d, ns, &reader, io)?);
    let existing = existing?;
    if let Some(s) = &existing {
        if s["metadata"]["annotations"][build::CLUSTER_ANNOTATION] != json!(d.src_id) {
            anyhow::bail!(
                "Secret {ns}/{secret_name} in context {:?} exists and is not a remote secret for cluster {:?}: it was left as it is",
                b.context,
                d.src_id
            );
        }
    }
    let current = existing
        .as_ref()
        .and_then(|s| build::access_of(s, d.src_id))
        .map(|acc| acc.token);
    let in_use = current.as_deref().and_then(|t| reader.holding(t));
    let (token, revoke) = if plan.rotate {
        if existing.is_none() {
            anyhow::bail!(
                "--rotate replaces the token of a remote secret, and context {:?} holds no Secret {ns}/{secret_name}: link first (without --rotate)",
                b.context
            );
        }
        let revoke = old_token(d, &reader, in_use, current.as_deref(), io)?;
        (rotated_token(d, plan, &reader, &mut steps), revoke)
    } else {
        (
            token_source(d, plan, &reader, in_use, &mut steps, io)?,
            None,
        )
    };
    let (server, ca_pem) = d.endpoint.clone();
    let kept = kept_token(d, &token, existing.as_ref(), plan.rotate);
    let source = Role::Source {
        steps,
        token,
        namespace: ns.to_string(),
        kept,
    };
    let target = Role::Target {
        namespace: ns.to_string(),
        cluster_id: d.src_id.to_string(),
        server,
        ca_pem,
        existing,
        cas: plan.rotate,
        pre: Vec::new(),
    };
    Ok((source, target, revoke))
}

/// The writes of the source's reader identity: its ServiceAccount (with the ledger of the
/// targets using it), ClusterRole and binding, each unless someone else made it.
fn reader_steps(
    d: &Direction<'_>,
    ns: &str,
    reader: &facts::Reader,
    io: &mut Io,
) -> Result<Vec<Step>> {
    let a = d.src;
    let mut steps = Vec::new();
    match &reader.service_account {
        Some(obj) if !objects::is_managed(obj) => io.note(format!(
            "{} exists in context {}: used as it is",
            crate::output::type_and_name(obj),
            a.context
        ))?,
        existing => steps.push(ledger::record(ns, existing.clone(), d.dst_id, true)),
    }
    for (existing, desired) in [
        (&reader.cluster_role, build::cluster_role(ns)),
        (&reader.binding, build::cluster_role_binding(ns)),
    ] {
        match existing {
            // Istio's install made it (or someone did by hand): used as it is, never changed.
            Some(obj) if !objects::is_managed(obj) => io.note(format!(
                "{} exists in context {}: used as it is",
                crate::output::type_and_name(obj),
                a.context
            ))?,
            _ => steps.push(Step::apply(desired, existing.clone())),
        }
    }
    Ok(steps)
}

/// `--rotate`: a new token for the target, bound or in a token Secret of its own (added to
/// `steps`).
fn rotated_token(
    d: &Direction<'_>,
    plan: &Plan,
    reader: &facts::Reader,
    steps: &mut Vec<Step>,
) -> TokenSource {
    if let Some(dur) = plan.token_duration {
        return TokenSource::Bound(dur);
    }
    let mut stamp = crate::time::now().max(0) as u64;
    while reader
        .tokens
        .iter()
        .any(|t| objects::name(t) == build::dedicated_token_name(d.dst_id, stamp))
    {
        stamp += 1;
    }
    let name = build::dedicated_token_name(d.dst_id, stamp);
    let ns = plan.istio_namespace.as_str();
    steps.push(Step::apply(
        build::dedicated_token_secret(ns, &name, d.dst_id),
        None,
    ));
    TokenSource::Secret(name)
}

/// Without `--rotate`: a bound token (`--token-duration`), else the token the target holds now
/// (`in_use`, so a rerun keeps it), else the shared one, made when missing (added to `steps`).
fn token_source(
    d: &Direction<'_>,
    plan: &Plan,
    reader: &facts::Reader,
    in_use: Option<&Value>,
    steps: &mut Vec<Step>,
    io: &mut Io,
) -> Result<TokenSource> {
    let (a, b) = (d.src, d.dst);
    let ns = plan.istio_namespace.as_str();
    if let Some(dur) = plan.token_duration {
        io.warn(format!(
            "--token-duration {dur}: the remote secret holds a token that expires; rerun this command before it does, or istiod in {} stops seeing {}",
            b.context, a.context
        ))?;
        return Ok(TokenSource::Bound(dur));
    }
    // The token the target holds now (from the shared Secret or the target's own, made by
    // --rotate), so a rerun keeps it; else the shared one, made when missing.
    Ok(match in_use.or(reader.token_secret.as_ref()) {
        Some(s) if !objects::is_managed(s) => {
            io.note(format!(
                "{} exists in context {}: its token is used",
                crate::output::type_and_name(s),
                a.context
            ))?;
            TokenSource::Secret(objects::name(s).to_string())
        }
        Some(s) => {
            steps.push(Step::apply(
                build::token_secret_like(ns, s),
                Some(s.clone()),
            ));
            TokenSource::Secret(objects::name(s).to_string())
        }
        None => {
            steps.push(Step::apply(build::token_secret(ns), None));
            TokenSource::Secret(build::token_secret_name())
        }
    })
}

/// A bound token still good for more than half the lifetime asked for is kept, so that a
/// rerun changes nothing.
fn kept_token(
    d: &Direction<'_>,
    token: &TokenSource,
    existing: Option<&Value>,
    rotate: bool,
) -> Option<String> {
    let (server, ca_pem) = &d.endpoint;
    match (token, existing, rotate) {
        (TokenSource::Bound(dur), Some(s), false) => build::access_of(s, d.src_id)
            .filter(|acc| acc.server == *server && acc.ca_pem == *ca_pem)
            .filter(|acc| {
                let left =
                    crate::vm::token::jwt_expiry(&acc.token).unwrap_or(0) - crate::time::now();
                left > (dur.0.as_secs() / 2) as i64
            })
            .map(|acc| acc.token),
        _ => None,
    }
}

/// `--rotate`: what becomes of the token the target holds now. A token Secret kubectl-mesh made
/// is deleted (which revokes its token) once no other target holds it; anything else is said,
/// with what to do about it.
fn old_token(
    d: &Direction<'_>,
    reader: &facts::Reader,
    in_use: Option<&Value>,
    current: Option<&str>,
    io: &mut Io,
) -> Result<Option<Role>> {
    let a = &d.src.context;
    let Some(old) = in_use else {
        match current.and_then(crate::vm::token::jwt_expiry) {
            Some(exp) => io.note(format!(
                "the old token is a bound token: it expires by itself at {}",
                jiff::Timestamp::from_second(exp)
                    .map(|t| t.to_string())
                    .unwrap_or_else(|_| exp.to_string())
            ))?,
            None => io.note(format!(
                "the old token is in no token Secret of context {a}: nothing to revoke"
            ))?,
        }
        return Ok(None);
    };
    let shown = crate::output::type_and_name(old);
    let delete_hint = format!(
        "kubectl delete secret {} -n {} --context {a}",
        objects::name(old),
        objects::namespace(old).unwrap_or_default()
    );
    if !objects::is_managed(old) {
        io.warn(format!(
            "the old token stays valid: kubectl-mesh did not make {shown} in context {a}; once no cluster uses it, revoke it with: {delete_hint}"
        ))?;
        return Ok(None);
    }
    let others: Option<Vec<String>> = match build::dedicated_to(old) {
        Some(only) => Some(
            vec![only.to_string()]
                .into_iter()
                .filter(|t| t != d.dst_id)
                .collect(),
        ),
        // The shared token: held by every target in the ledger that has no token of its own.
        None => reader
            .service_account
            .as_ref()
            .filter(|sa| objects::is_managed(sa))
            .map(|sa| {
                let own: Vec<&str> = reader
                    .tokens
                    .iter()
                    .filter_map(build::dedicated_to)
                    .collect();
                ledger::users(sa)
                    .into_iter()
                    .filter(|u| u != d.dst_id && !own.contains(&u.as_str()))
                    .collect()
            }),
    };
    match others {
        Some(others) if others.is_empty() => Ok(Some(Role::Plain(vec![Step::Delete {
            existing: old.clone(),
        }]))),
        Some(others) => {
            io.warn(format!(
                "the old token stays valid: the remote secrets of {} hold it too ({shown}, context {a}); rotate them as well (--rotate --to each), and the last rotation revokes it",
                others.join(", ")
            ))?;
            Ok(None)
        }
        None => {
            io.warn(format!(
                "the old token stays valid: the reader identity in context {a} was not made by kubectl-mesh, so which clusters hold its token is not known; once none does, revoke it with: {delete_hint}"
            ))?;
            Ok(None)
        }
    }
}
