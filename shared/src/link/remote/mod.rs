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
use crate::vm::detect::ControlPlane;
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
    let mode = WriteMode {
        dry_run: args.write.dry_run,
        force: args.write.force_conflicts,
    };
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

    let net = args.network.then(|| Network {
        gateway: args.eastwest_gateway.clone(),
        expose: args.expose_services,
    });
    let net = net.as_ref();
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
        };
        let (source, target) = link_sides(&one, ns, plan.token_duration, net, io).await?;
        sides.push((&a, source));
        sides.push((&b, target));
        if let Some(endpoint) = to_endpoint {
            let back = Direction {
                src: &b,
                dst: &a,
                src_id: &b_id,
                dst_id: &a_id,
                endpoint,
            };
            let (source, target) = link_sides(&back, ns, plan.token_duration, net, io).await?;
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
    print(&sites, args, mode, io)
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
}

/// Reads both clusters of a direction and plans the source's and the target's writes.
async fn link_sides(
    d: &Direction<'_>,
    ns: &str,
    token_duration: Option<TokenDuration>,
    net: Option<&Network>,
    io: &mut Io,
) -> Result<(Role, Role)> {
    let (a, b) = (d.src, d.dst);
    let mut steps = Vec::new();
    if let Some(net) = net {
        steps.extend(east_west(d, ns, net, io).await?);
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
    let token = match token_duration {
        Some(dur) => {
            io.warn(format!(
                "--token-duration {dur}: the remote secret holds a token that expires; rerun this command before it does, or istiod in {} stops seeing {}",
                b.context, a.context
            ))?;
            TokenSource::Bound(dur)
        }
        None => match &reader.token_secret {
            Some(s) if !objects::is_managed(s) => {
                io.note(format!(
                    "{} exists in context {}: its token is used",
                    crate::output::type_and_name(s),
                    a.context
                ))?;
                TokenSource::Secret(objects::name(s).to_string())
            }
            existing => {
                steps.push(Step::apply(build::token_secret(ns), existing.clone()));
                TokenSource::Secret(build::token_secret_name())
            }
        },
    };
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
    let (server, ca_pem) = d.endpoint.clone();
    // A bound token still good for more than half the lifetime asked for is kept, so that a
    // rerun changes nothing.
    let kept = match (&token, &existing) {
        (TokenSource::Bound(dur), Some(s)) => build::access_of(s, d.src_id)
            .filter(|acc| acc.server == server && acc.ca_pem == ca_pem)
            .filter(|acc| {
                let left = crate::vm::token::jwt_expiry(&acc.token).unwrap_or(0) - unix_now();
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
        },
    ))
}

/// `--network`: the settings of the east-west gateway.
struct Network {
    gateway: crate::link::GatewayRef,
    expose: bool,
}

/// `--network`: the two clusters are on different networks and the source's east-west gateway
/// can carry the traffic; with `--expose-services`, the step applying its Gateway.
async fn east_west(d: &Direction<'_>, ns: &str, net: &Network, io: &mut Io) -> Result<Vec<Step>> {
    let (a, b) = (d.src, d.dst);
    let na = ControlPlane::new(a, ns, None)
        .network(Some(d.src_id))
        .await?;
    let nb = ControlPlane::new(b, ns, None)
        .network(Some(d.dst_id))
        .await?;
    io.note(format!("network of context {}: {na}", a.context))?;
    io.note(format!("network of context {}: {nb}", b.context))?;
    if na.name.is_empty() || na.name == nb.name {
        anyhow::bail!(
            "--network is for clusters on separate networks, and {} and {} are not ({} / {}): label each cluster's {ns} namespace with topology.istio.io/network, or drop --network",
            a.context,
            b.context,
            na,
            nb
        );
    }
    let gw = &net.gateway;
    let svc = a
        .get(&objects::core("Service"), Some(&gw.namespace), &gw.name)
        .await?;
    let problems = network::gateway_problems(svc.as_ref(), gw, &na.name);
    if !problems.is_empty() {
        anyhow::bail!(
            "the east-west gateway of context {:?} cannot carry {}'s traffic: {}",
            a.context,
            na.name,
            problems.join("; ")
        );
    }
    io.note(format!(
        "east-west gateway of context {}: {gw} on network {}, port 15443",
        a.context, na.name
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
            let mine = [reader.token_secret, reader.binding, reader.cluster_role];
            for obj in mine.into_iter().flatten().filter(objects::is_managed) {
                source.push(Step::Delete { existing: obj });
            }
            source.push(Step::Delete { existing: sa });
        } else {
            io.note(format!(
                "the reader identity in context {} stays: the remote secrets of {} use it",
                a.context,
                others.join(", ")
            ))?;
            source.push(ledger::record(ns, Some(sa), b_id, false));
        }
    }
    Ok((Role::Plain(target), Role::Plain(source)))
}

/// Seconds since the Unix epoch.
fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
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

    fn before(&self) -> Option<String> {
        None
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
                let step = Step::apply(desired, existing.clone());
                let written = write::execute_kept(self.cluster, vec![step], mode).await?;
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
        let r = written.undo(self.cluster).await;
        Ok(Restored {
            complete: r.complete(),
            state: r.sentence(),
        })
    }
}
