//! `kubectl mesh-link --mode remote-secret`: make istiod in --to discover the services of
//! --from the way Istio 1.8 and later link clusters, through a remote secret holding a
//! kubeconfig for a reader identity in --from, written in both clusters all or nothing.

pub mod age;
pub mod build;
pub mod check;
pub mod facts;
pub mod istiod;
pub mod ledger;
pub mod listing;
pub mod network;
pub mod probe;

use std::io::Write as _;
use std::sync::Mutex;

use anyhow::Result;
use serde_json::{json, Value};

use super::Args;
use crate::api::{self, Applied, Cluster, WriteMode};
use crate::cli::DryRun;
use crate::error::usage;
use crate::kubeconfig;
use crate::names;
use crate::objects;
use crate::vm::control_plane::NETWORK_LABEL;
use crate::vm::detect::{ClusterNetwork, ControlPlane};
use crate::vm::token::TokenDuration;
use crate::write::across::{self, Failed, Restored, Site};
use crate::write::{self, Step, Written};
use crate::Io;
use build::Access;

/// A validated remote-secret command line.
#[derive(Debug, Clone)]
struct Plan {
    from: String,
    to: String,
    istio_namespace: String,
    cluster_id: Option<String>,
    server: Option<String>,
    token_duration: Option<TokenDuration>,
    rotate: bool,
    /// `--network`, or a network named by `--from-network`/`--to-network`.
    network: bool,
}

/// Checks the flags of `--mode remote-secret`, before any request.
fn plan(args: &Args) -> Result<Plan> {
    if !args.kube.contexts.is_empty() {
        return Err(usage(
            "--context",
            "mesh-link works on two clusters: name them with --from and --to (the current context is never used)",
        ));
    }
    let unsupported = [
        (!args.services.is_empty(), "SERVICE"),
        (args.all, "--all"),
        (args.selector.is_some(), "--selector"),
        (args.prune, "--prune"),
        (args.setup_dns, "--setup-dns"),
        (args.list && args.write.output.is_some(), "--output"),
        (args.gateway_address.is_some(), "--gateway-address"),
    ];
    if let Some((_, flag)) = unsupported.iter().find(|(given, _)| *given) {
        return Err(usage(
            flag,
            "not available with --mode remote-secret (it links whole clusters: --from, --to and the remote-secret flags)",
        ));
    }
    let conflicts = [
        (
            args.bidirectional && args.cluster_id.is_some(),
            "--cluster-id",
            "names --from's cluster ID only: with --bidirectional both are detected (or link each direction on its own)",
        ),
        (
            args.bidirectional && args.remote_server.is_some(),
            "--remote-server",
            "names --from's API server only: with --bidirectional link each direction on its own",
        ),
        (
            args.unlink && args.bidirectional,
            "--unlink",
            "undoes one direction: run it once per direction",
        ),
        (
            args.list && (args.token_duration.is_some() || args.remote_server.is_some()),
            "--list",
            "shows the remote secrets: --token-duration and --remote-server are for linking",
        ),
        (
            args.network && (args.unlink || args.list),
            "--network",
            "checks the east-west gateway when linking: not with --unlink or --list",
        ),
        (
            args.rotate && (args.unlink || args.list || args.command.is_some()),
            "--rotate",
            "replaces the token of a link: not with --unlink, --list or check",
        ),
        (
            args.rotate && args.bidirectional,
            "--rotate",
            "replaces one target's token: run it once per direction",
        ),
        (
            (args.from_network.is_some() || args.to_network.is_some())
                && (args.unlink || args.list || args.command.is_some()),
            if args.from_network.is_some() { "--from-network" } else { "--to-network" },
            "labels the Istio namespace when linking: not with --unlink, --list or check",
        ),
        (
            args.unlink && args.token_duration.is_some(),
            "--token-duration",
            "makes a token: not with --unlink",
        ),
    ];
    if let Some((_, flag, why)) = conflicts.iter().find(|(given, _, _)| *given) {
        return Err(usage(flag, why));
    }
    let from = match (&args.from, args.list) {
        (None, true) => String::new(),
        _ => args.from.clone().ok_or_else(|| {
            usage(
            "--from",
            "required: the context of the cluster whose services istiod in --to should discover",
        )
        })?,
    };
    let to = args.to.clone().ok_or_else(|| {
        usage(
            "--to",
            "required: the context of the cluster whose istiod gets the remote secret",
        )
    })?;
    if from == to {
        return Err(usage("--to", "must name another context than --from"));
    }
    names::dns1123_label(&args.istio_namespace).map_err(|e| usage("--istio-namespace", e))?;
    if let Some(id) = &args.cluster_id {
        names::dns1123_label(id).map_err(|e| usage("--cluster-id", e))?;
    }
    for (flag, net) in [
        ("--from-network", &args.from_network),
        ("--to-network", &args.to_network),
    ] {
        if let Some(n) = net {
            names::label_value(n)
                .ok()
                .filter(|()| !n.is_empty())
                .ok_or_else(|| {
                    usage(
                        flag,
                        format!("{n:?} is not a network name (a label value: up to 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit)"),
                    )
                })?;
        }
    }
    if let Some(s) = &args.remote_server {
        let ok = s
            .parse::<http::Uri>()
            .ok()
            .filter(|u| u.scheme_str() == Some("https") && u.host().is_some());
        if ok.is_none() {
            return Err(usage(
                "--remote-server",
                format!("{s:?} is not an https:// URL of an API server"),
            ));
        }
    }
    Ok(Plan {
        from,
        to,
        istio_namespace: args.istio_namespace.clone(),
        cluster_id: args.cluster_id.clone(),
        server: args.remote_server.clone(),
        token_duration: args.token_duration,
        rotate: args.rotate,
        network: args.network || args.from_network.is_some() || args.to_network.is_some(),
    })
}

/// Runs `kubectl mesh-link --mode remote-secret`.
pub async fn run(args: &Args, io: &mut Io) -> Result<()> {
    let plan = plan(args)?;
    let kc = kubeconfig::load(&args.kube)?;
    let known = kubeconfig::context_names(&kc);
    for (flag, ctx) in [("--from", &plan.from), ("--to", &plan.to)] {
        if !ctx.is_empty() && !known.iter().any(|k| k == ctx) {
            return Err(usage(
                flag,
                format!(
                    "context {ctx:?} not found in the kubeconfig (known: {})",
                    known.join(", ")
                ),
            ));
        }
    }
    if args.istiod_debug.is_some() && args.command.is_none() {
        return Err(usage(
            "--istiod-debug",
            "is where check reads istiod's /debug/clusterz: only with check",
        ));
    }
    if args.list {
        return list(args, &plan, io).await;
    }
    if args.command.is_some() {
        let (kc, targets) =
            api::resolve_targets(&args.kube, &[plan.from.clone(), plan.to.clone()])?;
        let a = Cluster::connect(&kc, &targets[0], &args.kube).await?;
        let b = Cluster::connect(&kc, &targets[1], &args.kube).await?;
        let net = args.network.then_some(&args.eastwest_gateway);
        let how = check::Reach {
            network: net,
            istiod_debug: args.istiod_debug.as_ref(),
        };
        return check::run(&a, &b, &plan.istio_namespace, how, io).await;
    }
    let from_endpoint = facts::endpoint(&kc, &plan.from, plan.server.as_deref())?;
    let to_endpoint = if args.bidirectional {
        Some(facts::endpoint(&kc, &plan.to, None)?)
    } else {
        None
    };
    let (kc, targets) = api::resolve_targets(&args.kube, &[plan.from.clone(), plan.to.clone()])?;
    let a = Cluster::connect(&kc, &targets[0], &args.kube).await?;
    let b = Cluster::connect(&kc, &targets[1], &args.kube).await?;
    let mode = args.write.mode();
    let ns = plan.istio_namespace.as_str();
    for c in [&a, &b] {
        if !c.has_namespace(ns).await? {
            anyhow::bail!(
                "namespace {ns:?} not found in context {:?}: is Istio installed there? (--istio-namespace names another)",
                c.context
            );
        }
    }
    let a_id = cluster_id(&a, ns, plan.cluster_id.as_deref(), io).await?;
    let b_id = if args.bidirectional || args.unlink {
        cluster_id(&b, ns, None, io).await?
    } else {
        // Only for the reader's ledger of who uses it: detected quietly.
        ControlPlane::new(&b, ns, None).cluster_id(None).await?.0
    };
    if a_id == b_id {
        anyhow::bail!(
            "contexts {:?} and {:?} have the same cluster ID {a_id:?}: istiod tells clusters apart by it, so give each cluster its own (--cluster-id names --from's)",
            a.context,
            b.context
        );
    }

    let net = plan.network.then(|| Network {
        gateway: args.eastwest_gateway.clone(),
        expose: args.expose_services,
    });
    let net = net.as_ref();
    // The networks of both clusters, and the label writes that make them known to the other
    // cluster's istiod: with --network, not with --unlink.
    let mut labels = (None, None);
    let nets = match plan.network && !args.unlink {
        false => None,
        true => {
            let (na, la) = network_of(
                &a,
                ns,
                &a_id,
                args.from_network.as_deref(),
                "--from-network",
                io,
            )
            .await?;
            let (nb, lb) = network_of(
                &b,
                ns,
                &b_id,
                args.to_network.as_deref(),
                "--to-network",
                io,
            )
            .await?;
            if na.name.is_empty() || na.name == nb.name {
                anyhow::bail!(
                    "--network is for clusters on separate networks, and {} and {} are not ({} / {}): label each cluster's {ns} namespace with topology.istio.io/network (--from-network, --to-network), or drop --network",
                    a.context,
                    b.context,
                    na,
                    nb
                );
            }
            labels = (la, lb);
            Some((na.name, nb.name))
        }
    };
    let mut sides = Vec::new();
    if args.unlink {
        let (target, source) = unlink_sides(&a, &b, ns, &a_id, &b_id, io).await?;
        sides.push((&b, target));
        sides.push((&a, source));
    } else {
        let one = Direction {
            src: &a,
            dst: &b,
            src_id: &a_id,
            dst_id: &b_id,
            endpoint: from_endpoint,
            networks: nets.clone(),
        };
        let (mut source, mut target, revoke) = link_sides(&one, &plan, net, io).await?;
        // The labels go first, with the first direction's writes in each cluster.
        for (role, label) in [(&mut source, labels.0), (&mut target, labels.1)] {
            match role {
                Role::Source { steps, .. } | Role::Target { pre: steps, .. } => {
                    steps.splice(0..0, label);
                }
                Role::Plain(_) => {}
            }
        }
        sides.push((&a, source));
        sides.push((&b, target));
        if let Some(revoke) = revoke {
            sides.push((&a, revoke));
        }
        if let Some(endpoint) = to_endpoint {
            let back = Direction {
                src: &b,
                dst: &a,
                src_id: &b_id,
                dst_id: &a_id,
                endpoint,
                networks: nets.map(|(na, nb)| (nb, na)),
            };
            let (source, target, _) = link_sides(&back, &plan, net, io).await?;
            sides.push((&b, source));
            sides.push((&a, target));
        }
    }
    let shared: Vec<Shared> = sides
        .iter()
        .map(|(_, role)| Shared {
            token: Mutex::new(match role {
                Role::Source { kept, .. } => kept.clone(),
                _ => None,
            }),
        })
        .collect();
    let sites: Vec<Side<'_>> = sides
        .into_iter()
        .enumerate()
        .map(|(i, (cluster, role))| Side {
            cluster,
            role,
            // A target takes its token from the source just before it.
            shared: &shared[i - i % 2],
            results: Mutex::new(Vec::new()),
        })
        .collect();
    let how = across::Across {
        mode,
        interrupt: None,
        check_with: "kubectl mesh-link check --mode remote-secret",
    };
    across::commit(&sites, &how, &mut io.err).await?;
    print(&sites, args, mode, io)?;
    if plan.rotate && mode.dry_run == DryRun::None {
        io.warn(format!(
            "istiod in {} may go on using the old credentials until it restarts (istio/istio#60612): see that it still syncs {} with kubectl mesh-link check --mode remote-secret --from {} --to {}",
            b.context, a.context, a.context, b.context
        ))?;
    }
    Ok(())
}

/// `--list --to B [--from A]`.
async fn list(args: &Args, plan: &Plan, io: &mut Io) -> Result<()> {
    let mut contexts = vec![plan.to.clone()];
    if !plan.from.is_empty() {
        contexts.push(plan.from.clone());
    }
    let (kc, targets) = api::resolve_targets(&args.kube, &contexts)?;
    let b = Cluster::connect(&kc, &targets[0], &args.kube).await?;
    let only = match targets.get(1) {
        Some(t) => {
            let a = Cluster::connect(&kc, t, &args.kube).await?;
            Some(cluster_id(&a, &plan.istio_namespace, plan.cluster_id.as_deref(), io).await?)
        }
        None => plan.cluster_id.clone(),
    };
    listing::run(
        &b,
        &plan.istio_namespace,
        only.as_deref(),
        &args.eastwest_gateway,
        io,
    )
    .await?;
    io.out.flush()?;
    Ok(())
}

/// Prints what each side did: result lines, or the objects with Secret data redacted.
fn print(sites: &[Side<'_>], args: &Args, mode: WriteMode, io: &mut Io) -> Result<()> {
    let per: Vec<(String, Vec<Applied>)> = sites
        .iter()
        .map(|s| (s.cluster.context.clone(), take(&s.results)))
        .collect();
    match args.write.output {
        Some(format) => {
            let shown: Vec<(String, Vec<Value>)> = per
                .into_iter()
                .map(|(ctx, rs)| {
                    let objs = rs
                        .into_iter()
                        .filter(|r| r.outcome != crate::api::Outcome::Deleted)
                        .map(|r| {
                            let obj = objects::for_display(r.object);
                            if args.show_secrets {
                                obj
                            } else {
                                build::redacted(obj)
                            }
                        })
                        .collect();
                    (ctx, objs)
                })
                .collect();
            crate::output::print_per_context(&mut io.out, format, &shown)?;
        }
        None => {
            for (ctx, rs) in per {
                for r in rs {
                    std::io::Write::write_all(
                        &mut io.out,
                        format!(
                            "{} (context {ctx})\n",
                            crate::output::result_line(&r.object, r.outcome, mode.dry_run)
                        )
                        .as_bytes(),
                    )?;
                }
            }
        }
    }
    Ok(())
}

/// A cluster's ID, printed with where it came from, and checked fit to name a Secret.
async fn cluster_id(c: &Cluster, ns: &str, flag: Option<&str>, io: &mut Io) -> Result<String> {
    let (id, source) = ControlPlane::new(c, ns, None).cluster_id(flag).await?;
    if let Err(e) = names::dns1123_label(&id) {
        anyhow::bail!(
            "the cluster ID of context {:?}, {id:?} ({source}), cannot name a remote secret: {e}; pass --cluster-id",
            c.context
        );
    }
    io.note(format!(
        "cluster ID of context {}: {id} ({source})",
        c.context
    ))?;
    Ok(id)
}

/// One direction of a link: istiod in `dst` learns to read `src`.
struct Direction<'a> {
    src: &'a Cluster,
    dst: &'a Cluster,
    src_id: &'a str,
    dst_id: &'a str,
    /// `src`'s API server URL and CA.
    endpoint: (String, Vec<u8>),
    /// With `--network`: the networks of `src` and `dst`.
    networks: Option<(String, String)>,
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
        steps.extend(east_west(d, &networks.0, net, io).await?);
    }
    let reader = facts::reader(a, ns).await?;
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
    let secret_name = build::remote_secret_name(d.src_id);
    let existing = b
        .get(&objects::core("Secret"), Some(ns), &secret_name)
        .await?;
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
    let mut revoke = None;
    let token = if plan.rotate {
        if existing.is_none() {
            anyhow::bail!(
                "--rotate replaces the token of a remote secret, and context {:?} holds no Secret {ns}/{secret_name}: link first (without --rotate)",
                b.context
            );
        }
        revoke = old_token(d, &reader, in_use, current.as_deref(), io)?;
        match plan.token_duration {
            Some(dur) => TokenSource::Bound(dur),
            None => {
                let mut stamp = crate::time::now().max(0) as u64;
                while reader
                    .tokens
                    .iter()
                    .any(|t| objects::name(t) == build::dedicated_token_name(d.dst_id, stamp))
                {
                    stamp += 1;
                }
                let name = build::dedicated_token_name(d.dst_id, stamp);
                steps.push(Step::apply(
                    build::dedicated_token_secret(ns, &name, d.dst_id),
                    None,
                ));
                TokenSource::Secret(name)
            }
        }
    } else {
        match (plan.token_duration, in_use) {
            (Some(dur), _) => {
                io.warn(format!(
                    "--token-duration {dur}: the remote secret holds a token that expires; rerun this command before it does, or istiod in {} stops seeing {}",
                    b.context, a.context
                ))?;
                TokenSource::Bound(dur)
            }
            // The token the target holds now (from the shared Secret or the target's own, made
            // by --rotate), so a rerun keeps it; else the shared one, made when missing.
            (None, holding) => match holding.or(reader.token_secret.as_ref()) {
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
            },
        }
    };
    let (server, ca_pem) = d.endpoint.clone();
    // A bound token still good for more than half the lifetime asked for is kept, so that a
    // rerun changes nothing.
    let kept = match (&token, &existing, plan.rotate) {
        (TokenSource::Bound(dur), Some(s), false) => build::access_of(s, d.src_id)
            .filter(|acc| acc.server == server && acc.ca_pem == ca_pem)
            .filter(|acc| {
                let left =
                    crate::vm::token::jwt_expiry(&acc.token).unwrap_or(0) - crate::time::now();
                left > (dur.0.as_secs() / 2) as i64
            })
            .map(|acc| acc.token),
        _ => None,
    };
    Ok((
        Role::Source {
            steps,
            token,
            namespace: ns.to_string(),
            kept,
        },
        Role::Target {
            namespace: ns.to_string(),
            cluster_id: d.src_id.to_string(),
            server,
            ca_pem,
            existing,
            cas: plan.rotate,
            pre: Vec::new(),
        },
        revoke,
    ))
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

/// `--network`: the settings of the east-west gateway.
struct Network {
    gateway: crate::link::GatewayRef,
    expose: bool,
}

/// `--network`: the two clusters are on different networks and the source's east-west gateway
/// can carry the traffic; with `--expose-services`, the step applying its Gateway.
async fn east_west(
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
    let found = ControlPlane::new(c, ns, None).network(Some(id)).await?;
    let namespace = c.get(&objects::core("Namespace"), None, ns).await?;
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

/// `--unlink`: the target's secret goes; the source's reader identity goes too when
/// kubectl-mesh made it and its ledger names no other cluster.
async fn unlink_sides(
    a: &Cluster,
    b: &Cluster,
    ns: &str,
    a_id: &str,
    b_id: &str,
    io: &mut Io,
) -> Result<(Role, Role)> {
    let secret_name = build::remote_secret_name(a_id);
    let mut target = Vec::new();
    match b
        .get(&objects::core("Secret"), Some(ns), &secret_name)
        .await?
    {
        None => io.note(format!(
            "secret/{secret_name} not found in context {}: nothing to unlink there",
            b.context
        ))?,
        Some(s) if !objects::is_managed(&s) => anyhow::bail!(
            "Secret {ns}/{secret_name} in context {:?} was not made by kubectl-mesh (no app.kubernetes.io/managed-by: kubectl-mesh label): it was left as it is; delete it with kubectl if it should go",
            b.context
        ),
        Some(s) => target.push(Step::Delete { existing: s }),
    }
    let reader = facts::reader(a, ns).await?;
    let mut source = Vec::new();
    if let Some(sa) = reader.service_account.filter(objects::is_managed) {
        let others: Vec<String> = ledger::users(&sa)
            .into_iter()
            .filter(|u| u != b_id)
            .collect();
        if others.is_empty() {
            let mine = reader
                .tokens
                .into_iter()
                .chain([reader.binding, reader.cluster_role].into_iter().flatten());
            for obj in mine.filter(objects::is_managed) {
                source.push(Step::Delete { existing: obj });
            }
            source.push(Step::Delete { existing: sa });
            return Ok((Role::Plain(target), Role::Plain(source)));
        }
        io.note(format!(
            "the reader identity in context {} stays: the remote secrets of {} use it",
            a.context,
            others.join(", ")
        ))?;
        source.push(ledger::record(ns, Some(sa), b_id, false));
    }
    // The target's own tokens (made by --rotate) go with its secret, whoever else reads A.
    for own in reader.tokens {
        if build::dedicated_to(&own) == Some(b_id) && objects::is_managed(&own) {
            source.push(Step::Delete { existing: own });
        }
    }
    Ok((Role::Plain(target), Role::Plain(source)))
}

/// The compare-and-swap write of a rotated remote secret: sent only over the secret as read;
/// when another writer changed it meanwhile, sent again over what is there, unless that already
/// holds the new token.
fn replace(namespace: &str, cluster_id: &str, desired: Value, existing: Option<Value>) -> Step {
    let name = objects::name(&desired).to_string();
    let id = cluster_id.to_string();
    let want = desired.clone();
    let rebase = move |now: Option<&Value>| {
        let token = |s: &Value| build::access_of(s, &id).map(|acc| acc.token);
        match now {
            Some(n) if token(n).is_some() && token(n) == token(&want) => None,
            _ => Some(Step::apply(want.clone(), now.cloned())),
        }
    };
    Step::Cas {
        step: Box::new(Step::apply(desired, existing)),
        kind: objects::core("Secret"),
        namespace: Some(namespace.to_string()),
        name,
        rebase: crate::write::Rebase(std::sync::Arc::new(rebase)),
    }
}

fn take(m: &Mutex<Vec<Applied>>) -> Vec<Applied> {
    m.lock()
        .map(|mut v| std::mem::take(&mut *v))
        .unwrap_or_default()
}

/// Where the reader's token comes from.
#[derive(Debug, Clone)]
enum TokenSource {
    /// The token controller's token in this Secret of the Istio namespace.
    Secret(String),
    /// A TokenRequest of this lifetime.
    Bound(TokenDuration),
}

/// What the source's write hands to the target's.
struct Shared {
    token: Mutex<Option<String>>,
}

enum Role {
    /// The reader identity and its token.
    Source {
        steps: Vec<Step>,
        token: TokenSource,
        namespace: String,
        /// A token of an earlier run, still good.
        kept: Option<String>,
    },
    /// The remote secret, made once the token is known.
    Target {
        namespace: String,
        cluster_id: String,
        server: String,
        ca_pem: Vec<u8>,
        existing: Option<Value>,
        /// `--rotate`: replace the secret only as it was read (another writer's change is
        /// rebased on, never overwritten unseen).
        cas: bool,
        /// Writes before the secret's (the Istio namespace's network label).
        pre: Vec<Step>,
    },
    /// Steps known in advance (`--unlink`).
    Plain(Vec<Step>),
}

/// One cluster's share of the run.
struct Side<'a> {
    cluster: &'a Cluster,
    role: Role,
    shared: &'a Shared,
    results: Mutex<Vec<Applied>>,
}

/// Shown in place of a token a dry run has not minted (only with --show-secrets).
const DRY_RUN_TOKEN: &str = "<the token the real run reads or mints>";

impl Side<'_> {
    fn keep(&self, written: &Written) {
        if let Ok(mut r) = self.results.lock() {
            *r = written.results();
        }
    }

    /// The reader's token, once the source's objects are written.
    async fn token(
        &self,
        source: &TokenSource,
        namespace: &str,
        mode: WriteMode,
    ) -> Result<String> {
        if let Some(t) = self.shared.token.lock().ok().and_then(|t| t.clone()) {
            return Ok(t);
        }
        let dry = mode.dry_run != DryRun::None;
        match source {
            TokenSource::Secret(name) => {
                if dry {
                    let now = self
                        .cluster
                        .get(&objects::core("Secret"), Some(namespace), name)
                        .await?;
                    return Ok(now
                        .as_ref()
                        .and_then(facts::token_of)
                        .unwrap_or_else(|| DRY_RUN_TOKEN.to_string()));
                }
                facts::wait_token(self.cluster, namespace, name).await
            }
            TokenSource::Bound(_) if dry => Ok(DRY_RUN_TOKEN.to_string()),
            TokenSource::Bound(d) => {
                let body = json!({
                    "apiVersion": "authentication.k8s.io/v1",
                    "kind": "TokenRequest",
                    "spec": {"expirationSeconds": d.0.as_secs()},
                });
                let answer = self
                    .cluster
                    .post_subresource(
                        &objects::core("ServiceAccount"),
                        namespace,
                        build::READER_SA,
                        "token",
                        &body,
                    )
                    .await?;
                answer["status"]["token"]
                    .as_str()
                    .filter(|t| !t.is_empty())
                    .map(String::from)
                    .ok_or_else(|| {
                        anyhow::anyhow!(
                            "the TokenRequest for ServiceAccount {namespace}/{} in context {:?} answered no token",
                            build::READER_SA,
                            self.cluster.context
                        )
                    })
            }
        }
    }
}

impl Site for Side<'_> {
    type Written = Written;

    fn context(&self) -> &str {
        &self.cluster.context
    }

    fn left_at(&self) -> String {
        "as this run left it".to_string()
    }

    async fn write(&self, mode: WriteMode) -> std::result::Result<Written, Failed<Written>> {
        match &self.role {
            Role::Source {
                steps,
                token,
                namespace,
                ..
            } => {
                let written = write::execute_kept(self.cluster, steps.clone(), mode).await?;
                match self.token(token, namespace, mode).await {
                    Ok(t) => {
                        if let Ok(mut slot) = self.shared.token.lock() {
                            *slot = Some(t);
                        }
                    }
                    Err(e) => {
                        let undo = written.undo(self.cluster).await;
                        return Err(e.context(undo.sentence()).into());
                    }
                }
                self.keep(&written);
                Ok(written)
            }
            Role::Target {
                namespace,
                cluster_id,
                server,
                ca_pem,
                existing,
                cas,
                pre,
            } => {
                let token = self
                    .shared
                    .token
                    .lock()
                    .ok()
                    .and_then(|t| t.clone())
                    .ok_or_else(|| anyhow::anyhow!("no token was read from the source cluster"))?;
                let access = Access {
                    server: server.clone(),
                    ca_pem: ca_pem.clone(),
                    token,
                };
                let desired = build::remote_secret(namespace, cluster_id, &access);
                let step = if *cas {
                    replace(namespace, cluster_id, desired, existing.clone())
                } else {
                    Step::apply(desired, existing.clone())
                };
                let mut steps = pre.clone();
                steps.push(step);
                let written = write::execute_kept(self.cluster, steps, mode).await?;
                self.keep(&written);
                Ok(written)
            }
            Role::Plain(steps) => {
                let written = write::execute_kept(self.cluster, steps.clone(), mode).await?;
                self.keep(&written);
                Ok(written)
            }
        }
    }

    fn unchanged(written: &Written) -> bool {
        written.unchanged()
    }

    async fn put_back(&self, written: &Written, _in_doubt: bool) -> Result<Restored> {
        Ok(written.put_back(self.cluster).await)
    }
}
