//! `--mode remote-secret --list`: the remote secrets a cluster holds, for which cluster ID,
//! who made each, and whether its token still works: a SelfSubjectAccessReview sent with the
//! secret's own kubeconfig asks the source API server whether the token may list what istiod
//! reads.

use std::time::Duration;

use anyhow::Result;
use base64::Engine as _;
use serde_json::{json, Value};

use super::build;
use crate::api::Cluster;
use crate::duration::HumanDuration;
use crate::objects;
use crate::Io;

/// What istiod lists in a remote cluster: (API group, resource).
pub const READS: [(&str, &str); 4] = [
    ("", "services"),
    ("discovery.k8s.io", "endpointslices"),
    ("", "pods"),
    ("", "namespaces"),
];

/// How long one review may take: a source cluster that does not answer is reported, not waited on.
const REVIEW_TIMEOUT: Duration = Duration::from_secs(10);

/// Prints the table of `b`'s remote secrets (only `only`'s, when given).
pub async fn run(b: &Cluster, ns: &str, only: Option<&str>, io: &mut Io) -> Result<()> {
    let selector = format!("{}=true", build::MULTICLUSTER_LABEL);
    let secrets = b
        .list(&objects::core("Secret"), Some(ns), Some(&selector))
        .await?;
    let mut rows = Vec::new();
    for s in &secrets {
        let id = s["metadata"]["annotations"][build::CLUSTER_ANNOTATION]
            .as_str()
            .or_else(|| {
                s["data"]
                    .as_object()
                    .and_then(|d| d.keys().next())
                    .map(String::as_str)
            })
            .unwrap_or("")
            .to_string();
        if only.is_some_and(|o| o != id) {
            continue;
        }
        let made_by = if objects::is_managed(s) {
            "kubectl-mesh"
        } else {
            "other"
        };
        let (server, works, expires) = match kubeconfig_text(s, &id) {
            None => (
                "-".to_string(),
                format!("no: no kubeconfig under key {id:?}"),
                "-".to_string(),
            ),
            Some(text) => {
                let server = build::access_of(s, &id)
                    .map(|a| a.server)
                    .unwrap_or_else(|| "-".into());
                let expires = build::access_of(s, &id)
                    .map(|a| expiry(&a.token))
                    .unwrap_or_else(|| "-".into());
                (server, token_works(&text).await, expires)
            }
        };
        rows.push(vec![
            id,
            objects::name(s).to_string(),
            server,
            made_by.to_string(),
            works,
            expires,
        ]);
    }
    if rows.is_empty() {
        io.note(format!(
            "No remote secrets found in context {} (namespace {ns}).",
            b.context
        ))?;
        return Ok(());
    }
    let table = crate::table::render(
        &[
            "cluster id",
            "secret",
            "server",
            "made by",
            "token works",
            "expires",
        ],
        &rows,
    );
    io.out.write_all(table.as_bytes())?;
    Ok(())
}

fn kubeconfig_text(secret: &Value, id: &str) -> Option<String> {
    let encoded = secret["data"][id].as_str()?;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .ok()?;
    String::from_utf8(bytes).ok()
}

/// `never` for a token without expiry, else how long it has left (or has been expired).
fn expiry(token: &str) -> String {
    let Some(exp) = crate::vm::token::jwt_expiry(token) else {
        return "never".into();
    };
    let left = exp - crate::time::now();
    let d = |secs: i64| HumanDuration(Duration::from_secs(secs.unsigned_abs()));
    if left > 0 {
        format!("in {}", d(left))
    } else {
        format!("expired {} ago", d(left))
    }
}

/// Asks the source API server, with the secret's own kubeconfig, whether its token may list
/// what istiod reads. The answer never quotes the token.
pub async fn token_works(kubeconfig: &str) -> String {
    let Ok(kc) = kube::config::Kubeconfig::from_yaml(kubeconfig) else {
        return "no: the kubeconfig does not parse".into();
    };
    let Ok(mut config) =
        kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default()).await
    else {
        return "no: the kubeconfig is incomplete".into();
    };
    let server = config.cluster_url.to_string();
    config.connect_timeout = Some(REVIEW_TIMEOUT);
    config.read_timeout = Some(REVIEW_TIMEOUT);
    let Ok(client) = kube::Client::try_from(config) else {
        return "no: no client can be built from the kubeconfig".into();
    };
    let mut denied = Vec::new();
    for (group, resource) in READS {
        let review = json!({
            "apiVersion": "authorization.k8s.io/v1",
            "kind": "SelfSubjectAccessReview",
            "spec": {"resourceAttributes": {"verb": "list", "group": group, "resource": resource}},
        });
        let Ok(body) = serde_json::to_vec(&review) else {
            return "unknown: the review cannot be encoded".into();
        };
        let Ok(req) = http::Request::post("/apis/authorization.k8s.io/v1/selfsubjectaccessreviews")
            .header("Content-Type", "application/json")
            .body(body)
        else {
            return "unknown: the review cannot be sent".into();
        };
        match client.request::<Value>(req).await {
            Ok(v) if v["status"]["allowed"] == true => {}
            Ok(_) => denied.push(resource),
            Err(kube::Error::Api(s)) if s.code == 401 => {
                return "no: the token is refused (401)".into()
            }
            Err(kube::Error::Api(s)) => return format!("no: the review failed ({})", s.code),
            Err(_) => return format!("unknown: {server} did not answer"),
        }
    }
    if denied.is_empty() {
        "yes".into()
    } else {
        format!("no: may not list {}", denied.join(", "))
    }
}
