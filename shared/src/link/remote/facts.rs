//! What a remote-secret link reads before it writes: where the target reaches the source's API
//! server (from the kubeconfig, or `--remote-server`), and the reader identity and token the
//! source cluster already holds.

use std::time::Duration;

use anyhow::{anyhow, Result};
use base64::Engine as _;
use kube::config::Kubeconfig;
use serde_json::Value;

use super::build::{self, rbac, READER_SA, SA_NAME_ANNOTATION, SA_TOKEN_TYPE};
use crate::api::Cluster;
use crate::objects;

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
    let service_account = a
        .get(
            &objects::core("ServiceAccount"),
            Some(istio_namespace),
            READER_SA,
        )
        .await?;
    let cluster_role = a.get(&rbac("ClusterRole"), None, &role).await?;
    let binding = a.get(&rbac("ClusterRoleBinding"), None, &role).await?;
    let secrets = a
        .list(&objects::core("Secret"), Some(istio_namespace), None)
        .await?;
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
