//! The write of a remote-secret run across both clusters, all or nothing through
//! [`across::commit`]: the source's reader identity first, then the target's remote secret
//! made with the token the source's write handed over. A failure puts back every cluster
//! already written, by the write engine's one rollback rule.

use std::sync::Mutex;

use anyhow::Result;
use serde_json::{json, Value};

use super::build::{self, Access};
use super::facts;
use crate::api::{Applied, Cluster, WriteMode};
use crate::cli::DryRun;
use crate::objects;
use crate::vm::token::TokenDuration;
use crate::write::across::{self, Failed, Restored, Site};
use crate::write::{self, Step, Written};
use crate::Io;

/// Writes the sides in order (each source just before its target), all or nothing; what each
/// cluster's writes did, by context.
pub(super) async fn commit(
    sides: Vec<(&Cluster, Role)>,
    mode: WriteMode,
    io: &mut Io,
) -> Result<Vec<(String, Vec<Applied>)>> {
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
        order: across::Order::OneByOne,
        mode,
        interrupt: None,
        check_with: "kubectl mesh-link check --mode remote-secret",
    };
    across::commit(&sites, &how, &mut io.err).await?;
    Ok(sites
        .iter()
        .map(|s| (s.cluster.context.clone(), take(&s.results)))
        .collect())
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
        Ok(match now {
            Some(n) if token(n).is_some() && token(n) == token(&want) => None,
            _ => Some(Step::apply(want.clone(), now.cloned())),
        })
    };
    Step::cas(
        Step::apply(desired, existing),
        objects::core("Secret"),
        Some(namespace),
        &name,
        rebase,
    )
}

fn take(m: &Mutex<Vec<Applied>>) -> Vec<Applied> {
    m.lock()
        .map(|mut v| std::mem::take(&mut *v))
        .unwrap_or_default()
}

/// Where the reader's token comes from.
#[derive(Debug, Clone)]
pub(super) enum TokenSource {
    /// The token controller's token in this Secret of the Istio namespace.
    Secret(String),
    /// A TokenRequest of this lifetime.
    Bound(TokenDuration),
}

/// What the source's write hands to the target's.
struct Shared {
    token: Mutex<Option<String>>,
}

pub(super) enum Role {
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

    /// A target's writes: those before the secret, then the remote secret made with the token
    /// the source handed over.
    fn target_steps(&self) -> Result<Vec<Step>> {
        let Role::Target {
            namespace,
            cluster_id,
            server,
            ca_pem,
            existing,
            cas,
            pre,
        } = &self.role
        else {
            return Ok(Vec::new());
        };
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
        Ok(steps)
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
            Role::Target { .. } => {
                let steps = self.target_steps()?;
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
