//! How old the token in a remote secret is. A bound token says it itself (`iat`); a
//! Secret-based (legacy) token never expires and carries no `iat`, so its age is the age of the
//! token Secret it names, read in the source cluster with the remote secret's own credentials
//! (the reader ClusterRole may get Secrets). The token is decoded, never shown.

use std::time::Duration;

use base64::Engine as _;
use serde_json::Value;

use crate::duration;

/// What a token says about itself, from its JWT claims (the signature is not checked: this is
/// only for display).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claims {
    /// A bound token (TokenRequest): issued at `iat`, expires at `exp` (seconds since the epoch).
    Bound {
        /// `iat`.
        issued: i64,
        /// `exp`.
        expires: i64,
    },
    /// A legacy token, stored in the Secret `namespace/name` of the source cluster.
    Legacy {
        /// The token Secret's namespace.
        namespace: String,
        /// The token Secret's name.
        name: String,
    },
    /// Not a Kubernetes service-account JWT (a static token, say): no age to tell.
    Opaque,
}

/// The claims of `token` that tell its age.
pub fn claims(token: &str) -> Claims {
    let Some(c) = payload(token) else {
        return Claims::Opaque;
    };
    if let (Some(issued), Some(expires)) = (c["iat"].as_i64(), c["exp"].as_i64()) {
        return Claims::Bound { issued, expires };
    }
    match (
        c["kubernetes.io/serviceaccount/namespace"].as_str(),
        c["kubernetes.io/serviceaccount/secret.name"].as_str(),
    ) {
        (Some(ns), Some(name)) => Claims::Legacy {
            namespace: ns.to_string(),
            name: name.to_string(),
        },
        _ => Claims::Opaque,
    }
}

fn payload(token: &str) -> Option<Value> {
    let part = token.trim().split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(part.trim_end_matches('='))
        .ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// kubectl's AGE of something made at `since` (seconds since the epoch), seen at `now`.
pub fn age_since(since: i64, now: i64) -> String {
    duration::age(Duration::from_secs(now.saturating_sub(since).max(0) as u64))
}

/// The age of an object from its `metadata.creationTimestamp`, seen at `now`; `None` when it
/// has none.
pub fn created(obj: &Value) -> Option<i64> {
    obj["metadata"]["creationTimestamp"]
        .as_str()?
        .parse::<jiff::Timestamp>()
        .ok()
        .map(|t| t.as_second())
}

/// Seconds since the epoch, now.
pub fn now() -> i64 {
    jiff::Timestamp::now().as_second()
}

/// The TOKEN AGE cell: the token's own `iat` when it is bound; for a legacy token the age of
/// its Secret in the source cluster, read with `client` (the remote secret's credentials, and
/// only its metadata: the server is asked for a PartialObjectMetadata, so the token is not
/// even sent back); `unknown` when neither can be told.
pub async fn token_age(token: &str, client: Option<&kube::Client>) -> String {
    match claims(token) {
        Claims::Bound { issued, .. } => age_since(issued, now()),
        Claims::Opaque => "unknown".into(),
        Claims::Legacy { namespace, name } => {
            let Some(client) = client else {
                return "unknown".into();
            };
            match secret_metadata(client, &namespace, &name).await {
                Some(meta) => {
                    created(&meta).map_or_else(|| "unknown".into(), |t| age_since(t, now()))
                }
                None => "unknown".into(),
            }
        }
    }
}

async fn secret_metadata(client: &kube::Client, ns: &str, name: &str) -> Option<Value> {
    let req = http::Request::get(format!("/api/v1/namespaces/{ns}/secrets/{name}"))
        .header(
            "Accept",
            "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1,application/json",
        )
        .body(Vec::new())
        .ok()?;
    let answer = tokio::time::timeout(Duration::from_secs(10), client.request::<Value>(req))
        .await
        .ok()?
        .ok()?;
    // Only the metadata is kept, whatever the server sent.
    Some(serde_json::json!({"metadata": answer["metadata"].clone()}))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jwt(claims: &Value) -> String {
        let enc = |v: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v);
        format!(
            "{}.{}.sig",
            enc(br#"{"alg":"RS256"}"#),
            enc(claims.to_string().as_bytes())
        )
    }

    #[test]
    fn bound_legacy_and_opaque_tokens() {
        let bound = jwt(&serde_json::json!({"iat": 100, "exp": 7300, "sub": "x"}));
        assert_eq!(
            claims(&bound),
            Claims::Bound {
                issued: 100,
                expires: 7300
            }
        );
        let legacy = jwt(&serde_json::json!({
            "iss": "kubernetes/serviceaccount",
            "kubernetes.io/serviceaccount/namespace": "istio-system",
            "kubernetes.io/serviceaccount/secret.name": "tok",
        }));
        assert_eq!(
            claims(&legacy),
            Claims::Legacy {
                namespace: "istio-system".into(),
                name: "tok".into()
            }
        );
        assert_eq!(claims("not-a-jwt"), Claims::Opaque);
        assert_eq!(claims("a.%%%.c"), Claims::Opaque);
    }

    #[test]
    fn ages_read_like_kubectl() {
        assert_eq!(age_since(1000, 1030), "30s");
        assert_eq!(age_since(0, 12 * 60), "12m");
        assert_eq!(age_since(0, 3 * 3600 + 5), "3h");
        assert_eq!(age_since(0, 5 * 86_400), "5d");
        // A clock behind the server's is not a negative age.
        assert_eq!(age_since(100, 90), "0s");
        let obj = serde_json::json!({"metadata": {"creationTimestamp": "2026-12-01T00:00:00Z"}});
        let t = created(&obj).expect("timestamp");
        assert_eq!(age_since(t, t + 4 * 86_400), "4d");
        assert_eq!(created(&serde_json::json!({})), None);
    }
}
