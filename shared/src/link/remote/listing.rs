//! `--mode remote-secret --list`: the remote secrets a cluster holds, for which cluster ID,
//! who made each, and whether its token still works: a SelfSubjectAccessReview sent with the
//! secret's own kubeconfig asks the source API server whether the token may list what istiod
//! reads.

use std::io::Write as _;
use std::time::Duration;

use anyhow::Result;
use base64::Engine as _;
use serde_json::{json, Value};

use tokio::task::JoinSet;

use super::super::Args;
use super::plan::Plan;
use super::{age, build, facts, probe};
use crate::api::{self, Cluster};
use crate::duration::HumanDuration;
use crate::link::GatewayRef;
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

/// What `--list` and `check` learn about one remote secret, with its own credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    /// TOKEN WORKS.
    pub works: String,
    /// TOKEN AGE.
    pub age: String,
    /// EXPIRES.
    pub expires: String,
    /// GATEWAY (`None`: not probed).
    pub gateway: Option<String>,
}

/// Looks at one remote secret's kubeconfig: whether its token works, how old it is, when it
/// expires, and (with `gw`) whether the source's east-west gateway Service, read with the same
/// credentials, answers.
pub async fn inspect(kubeconfig: String, gw: Option<GatewayRef>) -> Seen {
    let token = serde_yaml::from_str::<Value>(&kubeconfig)
        .ok()
        .and_then(|d| d["users"][0]["user"]["token"].as_str().map(String::from));
    let client = remote_client(&kubeconfig).await;
    let works = match &client {
        Ok((c, server)) => token_works_with(c, server).await,
        Err(e) => e.clone(),
    };
    let (age, expires) = match &token {
        Some(t) => (
            age::token_age(t, client.as_ref().ok().map(|(c, _)| c)).await,
            expiry(t),
        ),
        None => ("-".to_string(), "-".to_string()),
    };
    let gateway = match (gw, &client) {
        (None, _) => None,
        (Some(_), Err(_)) => Some("unknown: the kubeconfig cannot be used".to_string()),
        (Some(gw), Ok((c, _))) => Some(gateway_cell(c, &gw).await),
    };
    Seen {
        works,
        age,
        expires,
        gateway,
    }
}

/// Reads the gateway Service in the source with the remote secret's client, then probes it.
async fn gateway_cell(client: &kube::Client, gw: &GatewayRef) -> String {
    let path = format!("/api/v1/namespaces/{}/services/{}", gw.namespace, gw.name);
    let Ok(req) = http::Request::get(path)
        .header("Accept", "application/json")
        .body(Vec::new())
    else {
        return "unknown: the request cannot be built".into();
    };
    match client.request::<Value>(req).await {
        Ok(svc) => probe::cell(Some(&svc)).await,
        Err(kube::Error::Api(s)) if s.code == 404 => probe::cell(None).await,
        Err(kube::Error::Api(s)) => format!("unknown: reading Service {gw} answered {}", s.code),
        Err(_) => "unknown: the source did not answer".into(),
    }
}

/// `--list --to B [--from A]`: B's remote secrets (only A's, when --from names it). Both
/// clusters are connected at once.
pub(super) async fn list(args: &Args, plan: &Plan, io: &mut Io) -> Result<()> {
    let mut contexts = vec![plan.to.clone()];
    if !plan.from.is_empty() {
        contexts.push(plan.from.clone());
    }
    let (kc, targets) = api::resolve_targets(&args.kube, &contexts)?;
    let source = async {
        match targets.get(1) {
            Some(t) => Cluster::connect(&kc, t, &args.kube).await.map(Some),
            None => Ok(None),
        }
    };
    let (b, a) = tokio::join!(Cluster::connect(&kc, &targets[0], &args.kube), source);
    let b = b?;
    let only = match a? {
        Some(a) => {
            let ns = &plan.istio_namespace;
            Some(facts::cluster_id(&a, ns, plan.cluster_id.as_deref(), io).await?)
        }
        None => plan.cluster_id.clone(),
    };
    run(
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

/// Prints the table of `b`'s remote secrets (only `only`'s, when given), each secret looked at
/// concurrently; `gw` is the east-west gateway Service probed in each source.
pub async fn run(
    b: &Cluster,
    ns: &str,
    only: Option<&str>,
    gw: &GatewayRef,
    io: &mut Io,
) -> Result<()> {
    let selector = format!("{}=true", build::MULTICLUSTER_LABEL);
    let secrets = b
        .list(&objects::core("Secret"), Some(ns), Some(&selector))
        .await?;
    let mut rows = Vec::new();
    let mut looks = JoinSet::new();
    for s in &secrets {
        let id = cluster_id(s);
        if only.is_some_and(|o| o != id) {
            continue;
        }
        let made_by = if objects::is_managed(s) {
            "kubectl-mesh"
        } else {
            "other"
        };
        let server = build::access_of(s, &id)
            .map(|a| a.server)
            .unwrap_or_else(|| "-".into());
        let row = rows.len();
        match kubeconfig_text(s, &id) {
            None => rows.push(vec![
                id.clone(),
                objects::name(s).to_string(),
                server,
                made_by.to_string(),
                format!("no: no kubeconfig under key {id:?}"),
                "-".into(),
                "-".into(),
                "-".into(),
            ]),
            Some(text) => {
                rows.push(vec![
                    id,
                    objects::name(s).to_string(),
                    server,
                    made_by.to_string(),
                ]);
                let gw = gw.clone();
                looks.spawn(async move { (row, inspect(text, Some(gw)).await) });
            }
        }
    }
    while let Some(done) = looks.join_next().await {
        let (row, seen) = done?;
        rows[row].extend([
            seen.works,
            seen.age,
            seen.expires,
            seen.gateway.unwrap_or_else(|| "-".into()),
        ]);
    }
    if rows.is_empty() {
        io.note(format!(
            "No remote secrets found in context {} (namespace {ns}).",
            b.context
        ))?;
        return Ok(());
    }
    io.out.write_all(table(&rows).as_bytes())?;
    Ok(())
}

/// The cluster a remote secret reaches: its annotation, else the key its kubeconfig is under.
fn cluster_id(secret: &Value) -> String {
    secret["metadata"]["annotations"][build::CLUSTER_ANNOTATION]
        .as_str()
        .or_else(|| {
            secret["data"]
                .as_object()
                .and_then(|d| d.keys().next())
                .map(String::as_str)
        })
        .unwrap_or("")
        .to_string()
}

fn table(rows: &[Vec<String>]) -> String {
    crate::table::render(
        &[
            "cluster id",
            "secret",
            "server",
            "made by",
            "token works",
            "token age",
            "expires",
            "gateway",
        ],
        rows,
    )
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

/// A client for the source API server from a remote secret's kubeconfig, with short time
/// limits, and the server's URL; or the TOKEN WORKS answer saying why there is none.
pub async fn remote_client(kubeconfig: &str) -> Result<(kube::Client, String), String> {
    let Ok(kc) = kube::config::Kubeconfig::from_yaml(kubeconfig) else {
        return Err("no: the kubeconfig does not parse".into());
    };
    let Ok(mut config) =
        kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default()).await
    else {
        return Err("no: the kubeconfig is incomplete".into());
    };
    let server = config.cluster_url.to_string();
    config.connect_timeout = Some(REVIEW_TIMEOUT);
    config.read_timeout = Some(REVIEW_TIMEOUT);
    let Ok(client) = kube::Client::try_from(config) else {
        return Err("no: no client can be built from the kubeconfig".into());
    };
    Ok((client, server))
}

/// Asks the source API server, with the secret's own kubeconfig, whether its token may list
/// what istiod reads. The answer never quotes the token.
pub async fn token_works(kubeconfig: &str) -> String {
    match remote_client(kubeconfig).await {
        Ok((client, server)) => token_works_with(&client, &server).await,
        Err(e) => e,
    }
}

async fn token_works_with(client: &kube::Client, server: &str) -> String {
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
