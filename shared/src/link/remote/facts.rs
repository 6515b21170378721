//! What a remote-secret link reads before it writes: where the target reaches the source's API
//! server (from the kubeconfig, or `--remote-server`), and the reader identity and token the
//! source cluster already holds, and each cluster's connection and ID. Both clusters are read
//! at once, and what the reads print comes out in the order of one after the other.

use std::time::Duration;

use anyhow::{anyhow, Result};
use base64::Engine as _;
use kube::config::Kubeconfig;
use serde_json::Value;

use super::build::{self, rbac, READER_SA, SA_NAME_ANNOTATION, SA_TOKEN_TYPE};
use crate::api::{self, Cluster};
use crate::cli::KubeArgs;
use crate::io::Held;
use crate::names;
use crate::objects;
use crate::vm::detect::ControlPlane;
use crate::Io;

/// The source API server's URL and CA, from the kubeconfig context that reaches it.
pub fn endpoint(kc: &Kubeconfig, context: &str, server: Option<&str>) -> Result<(String, Vec<u8>)> {
    let cluster_name = kc
        .contexts
        .iter()
        .find(|c| c.name == context)
        .and_then(|c| c.context.as_ref())
        .map(|c| c.cluster.clone())
        .ok_or_else(|| anyhow!("context {context:?} names no cluster in the kubeconfig"))?;
    let cluster = kc
        .clusters
        .iter()
        .find(|c| c.name == cluster_name)
        .and_then(|c| c.cluster.as_ref())
        .ok_or_else(|| {
            anyhow!("cluster {cluster_name:?} of context {context:?} is not in the kubeconfig")
        })?;
    let url = match server {
        Some(s) => s.to_string(),
        None => cluster.server.clone().ok_or_else(|| {
            anyhow!("cluster {cluster_name:?} of context {context:?} has no server: pass --remote-server")
        })?,
    };
    let ca = if let Some(data) = &cluster.certificate_authority_data {
        base64::engine::general_purpose::STANDARD
            .decode(data.trim())
            .map_err(|e| {
                anyhow!("certificate-authority-data of cluster {cluster_name:?} is not base64: {e}")
            })?
    } else if let Some(path) = &cluster.certificate_authority {
        std::fs::read(path).map_err(|e| {
            anyhow!("cannot read certificate-authority {path:?} of cluster {cluster_name:?}: {e}")
        })?
    } else {
        anyhow::bail!(
            "cluster {cluster_name:?} of context {context:?} names no CA (certificate-authority[-data]): the remote secret needs one for istiod to trust the server"
        );
    };
    Ok((url, ca))
}

/// The reader identity as the source cluster holds it.
pub struct Reader {
    /// ServiceAccount `istio-reader-service-account`.
    pub service_account: Option<Value>,
    /// ClusterRole `istio-reader-clusterrole-<NS>`.
    pub cluster_role: Option<Value>,
    /// Its ClusterRoleBinding.
    pub binding: Option<Value>,
    /// The shared `kubernetes.io/service-account-token` Secret for the ServiceAccount: the one
    /// kubectl-mesh (or istioctl) named, else the first found that is not one target's own, as
    /// istioctl picks it.
    pub token_secret: Option<Value>,
    /// Every token Secret for the ServiceAccount, the targets' own (`--rotate`) included.
    pub tokens: Vec<Value>,
}

impl Reader {
    /// The token Secret holding `token`, if one does.
    pub fn holding(&self, token: &str) -> Option<&Value> {
        self.tokens
            .iter()
            .find(|s| token_of(s).as_deref() == Some(token))
    }
}

/// Reads the reader identity of `istio_namespace`.
pub async fn reader(a: &Cluster, istio_namespace: &str) -> Result<Reader> {
    let role = build::reader_role_name(istio_namespace);
    let sa_kind = objects::core("ServiceAccount");
    let secret_kind = objects::core("Secret");
    let (role_kind, binding_kind) = (rbac("ClusterRole"), rbac("ClusterRoleBinding"));
    // Read at once; a failure is reported in this order all the same.
    let (service_account, cluster_role, binding, secrets) = tokio::join!(
        a.get(&sa_kind, Some(istio_namespace), READER_SA),
        a.get(&role_kind, None, &role),
        a.get(&binding_kind, None, &role),
        a.list(&secret_kind, Some(istio_namespace), None),
    );
    let (service_account, cluster_role, binding) = (service_account?, cluster_role?, binding?);
    let secrets = secrets?;
    let mut tokens: Vec<Value> = secrets
        .into_iter()
        .filter(|s| {
            s["type"] == SA_TOKEN_TYPE
                && s["metadata"]["annotations"][SA_NAME_ANNOTATION] == READER_SA
        })
        .collect();
    let named = build::token_secret_name();
    tokens.sort_by_key(|s| objects::name(s) != named);
    let token_secret = tokens
        .iter()
        .find(|s| build::dedicated_to(s).is_none())
        .cloned();
    Ok(Reader {
        service_account,
        cluster_role,
        binding,
        token_secret,
        tokens,
    })
}

/// The token in a token Secret, once the token controller has filled it in.
pub fn token_of(secret: &Value) -> Option<String> {
    let data = secret["data"]["token"].as_str()?;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(data)
        .ok()?;
    String::from_utf8(bytes).ok().filter(|t| !t.is_empty())
}

/// How long the token controller gets to fill in a new token Secret.
pub const TOKEN_WAIT: Duration = Duration::from_secs(30);

/// Waits until the token controller has filled in the token Secret `name`.
pub async fn wait_token(a: &Cluster, istio_namespace: &str, name: &str) -> Result<String> {
    let deadline = tokio::time::Instant::now() + TOKEN_WAIT;
    loop {
        let secret = a
            .get(&objects::core("Secret"), Some(istio_namespace), name)
            .await?;
        if let Some(token) = secret.as_ref().and_then(token_of) {
            return Ok(token);
        }
        if tokio::time::Instant::now() >= deadline {
            anyhow::bail!(
                "Secret {istio_namespace}/{name} in context {:?} got no token within {}s: no token controller filled it in (is kube-controller-manager running?); --token-duration uses a TokenRequest instead",
                a.context,
                TOKEN_WAIT.as_secs()
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Connects to `from` and `to` at once; `from`'s failure is the one reported when both fail.
pub async fn connect(kube: &KubeArgs, from: &str, to: &str) -> Result<(Cluster, Cluster)> {
    let (kc, targets) = api::resolve_targets(kube, &[from.to_string(), to.to_string()])?;
    let (a, b) = tokio::join!(
        Cluster::connect(&kc, &targets[0], kube),
        Cluster::connect(&kc, &targets[1], kube)
    );
    Ok((a?, b?))
}

/// Runs two reads at once, each printing to its own held streams, then replays what they
/// printed in order and returns the first failure first: the same output and error as running
/// one after the other (the second's output is dropped when the first fails).
pub async fn in_order<A, B>(
    io: &mut Io,
    first: (impl std::future::Future<Output = Result<A>>, Held),
    second: (impl std::future::Future<Output = Result<B>>, Held),
) -> Result<(A, B)> {
    let (a, b) = tokio::join!(first.0, second.0);
    first.1.replay(io)?;
    let a = a?;
    second.1.replay(io)?;
    Ok((a, b?))
}

/// Fails unless both clusters have the Istio namespace `ns`, read at once.
pub async fn istio_namespaces(clusters: [&Cluster; 2], ns: &str) -> Result<()> {
    let found = futures::future::join_all(clusters.iter().map(|c| c.has_namespace(ns))).await;
    for (c, found) in clusters.iter().zip(found) {
        if !found? {
            anyhow::bail!(
                "namespace {ns:?} not found in context {:?}: is Istio installed there? (--istio-namespace names another)",
                c.context
            );
        }
    }
    Ok(())
}

/// A cluster's ID, printed with where it came from, and checked fit to name a Secret.
pub async fn cluster_id(c: &Cluster, ns: &str, flag: Option<&str>, io: &mut Io) -> Result<String> {
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

/// The cluster IDs of --from (`flag`, else detected) and of --to, read at once; --to's is
/// printed and checked only when `show_to` (else it only names --to in the reader's ledger).
pub async fn cluster_ids(
    (a, b): (&Cluster, &Cluster),
    ns: &str,
    flag: Option<&str>,
    show_to: bool,
    io: &mut Io,
) -> Result<(String, String)> {
    let ((mut ia, ha), (mut ib, hb)) = (Io::held(io.terminal), Io::held(io.terminal));
    let to = async {
        match show_to {
            true => cluster_id(b, ns, None, &mut ib).await,
            false => Ok(ControlPlane::new(b, ns, None).cluster_id(None).await?.0),
        }
    };
    in_order(io, (cluster_id(a, ns, flag, &mut ia), ha), (to, hb)).await
}
