//! `kubectl mesh-link --mode remote-secret`: make istiod in --to discover the services of
//! --from the way Istio 1.8 and later link clusters, through a remote secret holding a
//! kubeconfig for a reader identity in --from, written in both clusters all or nothing.

pub mod build;
pub mod facts;

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
        (args.command.is_some(), "check"),
        (!args.services.is_empty(), "SERVICE"),
        (args.all, "--all"),
        (args.selector.is_some(), "--selector"),
        (args.bidirectional, "--bidirectional"),
        (args.unlink, "--unlink"),
        (args.prune, "--prune"),
        (args.setup_dns, "--setup-dns"),
        (args.list, "--list"),
        (args.gateway_address.is_some(), "--gateway-address"),
    ];
    if let Some((_, flag)) = unsupported.iter().find(|(given, _)| *given) {
        return Err(usage(
            flag,
            "not available with --mode remote-secret (it links whole clusters: --from, --to and the remote-secret flags)",
        ));
    }
    let from = args.from.clone().ok_or_else(|| {
        usage(
            "--from",
            "required: the context of the cluster whose services istiod in --to should discover",
        )
    })?;
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
        if !known.iter().any(|k| k == ctx) {
            return Err(usage(
                flag,
                format!(
                    "context {ctx:?} not found in the kubeconfig (known: {})",
                    known.join(", ")
                ),
            ));
        }
    }
    let (server, ca_pem) = facts::endpoint(&kc, &plan.from, plan.server.as_deref())?;
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

    let (cluster_id, source) = ControlPlane::new(&a, ns, None)
        .cluster_id(plan.cluster_id.as_deref())
        .await?;
    if let Err(e) = names::dns1123_label(&cluster_id) {
        anyhow::bail!(
            "the cluster ID of context {:?}, {cluster_id:?} ({source}), cannot name a remote secret: {e}; pass --cluster-id",
            a.context
        );
    }
    io.note(format!(
        "cluster ID of context {}: {cluster_id} ({source})",
        a.context
    ))?;

    let reader = facts::reader(&a, ns).await?;
    let mut steps_a = Vec::new();
    for (existing, desired) in [
        (&reader.service_account, build::service_account(ns)),
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
            _ => steps_a.push(Step::apply(desired, existing.clone())),
        }
    }
    let token_source = match plan.token_duration {
        Some(d) => {
            io.warn(format!(
                "--token-duration {d}: the remote secret holds a token that expires; rerun this command before it does, or istiod in {} stops seeing {}",
                b.context, a.context
            ))?;
            TokenSource::Bound(d)
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
                steps_a.push(Step::apply(build::token_secret(ns), existing.clone()));
                TokenSource::Secret(build::token_secret_name())
            }
        },
    };
    let secret_name = build::remote_secret_name(&cluster_id);
    let existing_b = b
        .get(&objects::core("Secret"), Some(ns), &secret_name)
        .await?;
    if let Some(s) = &existing_b {
        if s["metadata"]["annotations"][build::CLUSTER_ANNOTATION] != json!(cluster_id) {
            anyhow::bail!(
                "Secret {ns}/{secret_name} in context {:?} exists and is not a remote secret for cluster {cluster_id:?}: it was left as it is",
                b.context
            );
        }
    }
    // A bound token still good for more than half the lifetime asked for is kept, so that a
    // rerun changes nothing.
    let kept = match (&token_source, &existing_b) {
        (TokenSource::Bound(d), Some(s)) => build::access_of(s, &cluster_id)
            .filter(|acc| acc.server == server && acc.ca_pem == ca_pem)
            .filter(|acc| {
                let left = crate::vm::token::jwt_expiry(&acc.token).unwrap_or(0) - unix_now();
                left > (d.0.as_secs() / 2) as i64
            })
            .map(|acc| acc.token),
        _ => None,
    };

    let shared = Shared {
        token: Mutex::new(kept),
        results_a: Mutex::new(Vec::new()),
        results_b: Mutex::new(Vec::new()),
    };
    let sites = [
        Side {
            cluster: &a,
            role: Role::Source {
                steps: steps_a,
                token: token_source,
                namespace: ns.to_string(),
            },
            shared: &shared,
        },
        Side {
            cluster: &b,
            role: Role::Target {
                namespace: ns.to_string(),
                cluster_id: cluster_id.clone(),
                server,
                ca_pem,
                existing: existing_b,
            },
            shared: &shared,
        },
    ];
    let how = across::Across {
        mode,
        interrupt: None,
        check_with: "kubectl mesh-link --mode remote-secret --dry-run=server",
    };
    across::commit(&sites, &how, &mut io.err).await?;

    let results_a = take(&shared.results_a);
    let results_b = take(&shared.results_b);
    match args.write.output {
        Some(format) => {
            let shown = |rs: &[Applied]| -> Vec<Value> {
                rs.iter()
                    .map(|r| {
                        let obj = objects::for_display(r.object.clone());
                        if args.show_secrets {
                            obj
                        } else {
                            build::redacted(obj)
                        }
                    })
                    .collect()
            };
            crate::output::print_per_context(
                &mut io.out,
                format,
                &[
                    (a.context.clone(), shown(&results_a)),
                    (b.context.clone(), shown(&results_b)),
                ],
            )?;
        }
        None => {
            for (cluster, rs) in [(&a, &results_a), (&b, &results_b)] {
                for r in rs {
                    std::io::Write::write_all(
                        &mut io.out,
                        format!(
                            "{} (context {})\n",
                            crate::output::result_line(&r.object, r.outcome, mode.dry_run),
                            cluster.context
                        )
                        .as_bytes(),
                    )?;
                }
            }
        }
    }
    Ok(())
}

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
    results_a: Mutex<Vec<Applied>>,
    results_b: Mutex<Vec<Applied>>,
}

enum Role {
    Source {
        steps: Vec<Step>,
        token: TokenSource,
        namespace: String,
    },
    Target {
        namespace: String,
        cluster_id: String,
        server: String,
        ca_pem: Vec<u8>,
        existing: Option<Value>,
    },
}

/// One cluster's share of the link.
struct Side<'a> {
    cluster: &'a Cluster,
    role: Role,
    shared: &'a Shared,
}

/// Shown in place of a token a dry run has not minted (only with --show-secrets).
const DRY_RUN_TOKEN: &str = "<the token the real run reads or mints>";

impl Side<'_> {
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
                if let Ok(mut r) = self.shared.results_a.lock() {
                    *r = written.results();
                }
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
                if let Ok(mut r) = self.shared.results_b.lock() {
                    *r = written.results();
                }
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
