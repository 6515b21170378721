//! `kubectl mesh-link check --mode remote-secret`: whether istiod in --to can discover --from
//! through a remote secret, one ✔/× line each. The facts are read first; each line is a pure
//! function of them.

use anyhow::Result;
use base64::Engine as _;
use serde_json::Value;

use super::build;
use super::istiod;
use super::listing;
use super::network;
use super::probe;
use crate::api::Cluster;
use crate::link::check::{release_of, root_cert_line, Line, Release};
use crate::link::GatewayRef;
use crate::objects;
use crate::vm::control_plane::with_revision;
use crate::vm::detect::ControlPlane;
use crate::Io;

/// The first release that reads remote secrets as this mode writes them.
const FIRST: Release = Release(1, 8, 0);

/// The Istio version line: at least 1.8 on both sides.
pub fn version_line(releases: &[(String, Result<Release, String>)]) -> Line {
    let (found, list) = match crate::link::check::known_releases(releases) {
        Ok(known) => known,
        Err(line) => return line,
    };
    match found.iter().find(|(_, r)| *r < FIRST) {
        Some((ctx, r)) => fail(format!(
            "Istio {list}: {ctx} runs {r}, older than 1.8: link it with the .global mode (the default), or upgrade it"
        )),
        None => ok(format!("Istio {list}: remote secrets are supported (1.8 and later)")),
    }
}

/// The cluster-ID line: the two IDs differ, and --to holds a remote secret for --from's.
pub fn cluster_id_line(
    (a_ctx, a_id): (&str, &str),
    (b_ctx, b_id): (&str, &str),
    secrets: &[Value],
) -> Line {
    if a_id == b_id {
        return fail(format!(
            "{a_ctx} and {b_ctx} have the same cluster ID {a_id:?}: istiod tells clusters apart by it; give each its own (values.global.multiCluster.clusterName)"
        ));
    }
    let name = build::remote_secret_name(a_id);
    match secrets.iter().find(|s| objects::name(s) == name) {
        None => {
            let others: Vec<String> = secrets
                .iter()
                .filter_map(|s| s["metadata"]["annotations"][build::CLUSTER_ANNOTATION].as_str())
                .map(String::from)
                .collect();
            let held = if others.is_empty() {
                "none".to_string()
            } else {
                others.join(", ")
            };
            fail(format!(
                "{b_ctx} holds no remote secret {name} for {a_ctx} (cluster ID {a_id}; it holds: {held}): run kubectl mesh-link --mode remote-secret --from {a_ctx} --to {b_ctx}"
            ))
        }
        Some(s) if s["metadata"]["annotations"][build::CLUSTER_ANNOTATION] != a_id => fail(format!(
            "secret {name} in {b_ctx} is annotated networking.istio.io/cluster={}, not {a_id}: istiod would name {a_ctx}'s endpoints after the wrong cluster",
            s["metadata"]["annotations"][build::CLUSTER_ANNOTATION].as_str().unwrap_or("(none)")
        )),
        Some(_) => ok(format!(
            "cluster IDs {a_id} ({a_ctx}) and {b_id} ({b_ctx}) differ, and {b_ctx} holds {name} for {a_id}"
        )),
    }
}

/// The mesh ID of a control plane: `defaultConfig.meshId` of its mesh config, else its trust
/// domain, as istiod defaults it.
pub fn mesh_id(mesh_cm: Option<&Value>) -> Result<String, String> {
    let Some(text) = mesh_cm.and_then(|c| c["data"]["mesh"].as_str()) else {
        return Err("no mesh config (ConfigMap istio, key mesh)".into());
    };
    let mesh: Value =
        serde_yaml::from_str(text).map_err(|e| format!("the mesh config is not YAML: {e}"))?;
    Ok(mesh["defaultConfig"]["meshId"]
        .as_str()
        .or(mesh["trustDomain"].as_str())
        .unwrap_or("cluster.local")
        .to_string())
}

/// The mesh-ID line.
pub fn mesh_id_line(a: (&str, Result<String, String>), b: (&str, Result<String, String>)) -> Line {
    match (&a.1, &b.1) {
        (Ok(x), Ok(y)) if x == y => ok(format!("{} and {} are in mesh {x}", a.0, b.0)),
        (Ok(x), Ok(y)) => fail(format!(
            "{} is in mesh {x} and {} in mesh {y}: one mesh needs one mesh ID (values.global.meshID) on both",
            a.0, b.0
        )),
        (Err(e), _) => fail(format!("cannot tell the mesh ID of {}: {e}", a.0)),
        (_, Err(e)) => fail(format!("cannot tell the mesh ID of {}: {e}", b.0)),
    }
}

/// The token line, from what `--list` would show of the secret: whether its token works, and
/// its age and expiry.
pub fn token_line(a_ctx: &str, b_ctx: &str, name: &str, seen: Option<&listing::Seen>) -> Line {
    let Some(seen) = seen else {
        return fail(format!("no token to try: {b_ctx} holds no {name}"));
    };
    let when = match seen.expires.as_str() {
        "never" => "never expires".to_string(),
        e if e.starts_with("in ") => format!("expires {e}"),
        e => e.to_string(),
    };
    let times = format!("token age {}, {when}", seen.age);
    match seen.works.as_str() {
        "yes" => ok(format!(
            "the token in {name} ({b_ctx}) may list services, endpointslices, pods and namespaces in {a_ctx} ({times})"
        )),
        other => fail(format!(
            "the token in {name} ({b_ctx}) does not work against {a_ctx}: {other} ({times}); rerun kubectl mesh-link --mode remote-secret --from {a_ctx} --to {b_ctx}"
        )),
    }
}

/// The gateway probe line: A's east-west gateway accepts a connection where B's sidecars will
/// send (`result`: the endpoint and the connect time, or why not).
pub fn probe_line(
    a_ctx: &str,
    gw: &GatewayRef,
    result: Result<(String, std::time::Duration), String>,
) -> Line {
    match result {
        Ok((endpoint, took)) => ok(format!(
            "{a_ctx}'s east-west gateway {gw} accepts connections on {endpoint} ({})",
            probe::latency(took)
        )),
        Err(why) => fail(format!(
            "{a_ctx}'s east-west gateway {gw} does not answer: {why}: the other cluster's sidecars reach {a_ctx}'s workloads through it; check its pods, load balancer and the firewall between the networks"
        )),
    }
}

/// How check reaches what is not an API object.
#[derive(Debug, Clone, Copy, Default)]
pub struct Reach<'a> {
    /// `--network`: --from's east-west gateway Service.
    pub network: Option<&'a GatewayRef>,
    /// `--istiod-debug`: where --to's istiod debug port answers.
    pub istiod_debug: Option<&'a istiod::DebugAddress>,
}

fn ok(text: String) -> Line {
    Line { ok: true, text }
}

fn fail(text: String) -> Line {
    Line { ok: false, text }
}

/// The network line: the two clusters are on different networks and --from's east-west
/// gateway Service can carry the traffic.
pub fn network_line(
    (a_ctx, a_net): (&str, &str),
    (b_ctx, b_net): (&str, &str),
    gw: &GatewayRef,
    svc: Option<&Value>,
) -> Line {
    if a_net.is_empty() || a_net == b_net {
        return fail(format!(
            "{a_ctx} and {b_ctx} are not on separate networks ({} / {}): label each cluster's Istio namespace with topology.istio.io/network, or check without --network",
            if a_net.is_empty() { "none" } else { a_net },
            if b_net.is_empty() { "none" } else { b_net }
        ));
    }
    let problems = network::gateway_problems(svc, gw, a_net);
    if problems.is_empty() {
        let port = svc
            .and_then(|s| probe::gateway_port(s).ok())
            .unwrap_or(crate::gateway::MULTICLUSTER_PORT);
        ok(format!(
            "{a_ctx} is on {a_net}, {b_ctx} on {b_net}; {a_ctx}'s east-west gateway {gw} carries {a_net} on {port}"
        ))
    } else {
        fail(format!(
            "{a_ctx}'s east-west gateway: {}",
            problems.join("; ")
        ))
    }
}

/// The expose-services line: a Gateway in --from passes `*.local` through on 15443.
pub fn expose_line(a_ctx: &str, gateways: &[Value]) -> Line {
    let exposes = |g: &Value| {
        g["spec"]["servers"].as_array().is_some_and(|servers| {
            servers.iter().any(|s| {
                s["port"]["number"] == 15443
                    && s["tls"]["mode"] == "AUTO_PASSTHROUGH"
                    && s["hosts"]
                        .as_array()
                        .is_some_and(|h| h.iter().any(|h| h == "*.local" || h == "*"))
            })
        })
    };
    match gateways.iter().find(|g| exposes(g)) {
        Some(g) => ok(format!(
            "Gateway {} in {a_ctx} exposes *.local on 15443 (AUTO_PASSTHROUGH)",
            objects::name(g)
        )),
        None => fail(format!(
            "no Gateway in {a_ctx} exposes *.local on 15443 with AUTO_PASSTHROUGH: run kubectl mesh-link --mode remote-secret --network --expose-services"
        )),
    }
}

/// Runs every check and prints one line each; exit 3 when any fails. With `net`, also the
/// network and expose-services lines.
pub async fn run(a: &Cluster, b: &Cluster, ns: &str, reach: Reach<'_>, io: &mut Io) -> Result<()> {
    let mut lines = vec![
        version_line(&[release(a, ns).await?, release(b, ns).await?]),
        root_cert_line(
            (&a.context, root_cert(a, ns).await?.as_ref()),
            (&b.context, root_cert(b, ns).await?.as_ref()),
        ),
    ];

    let a_id = ControlPlane::new(a, ns, None).cluster_id(None).await?.0;
    let b_id = ControlPlane::new(b, ns, None).cluster_id(None).await?.0;
    let selector = format!("{}=true", build::MULTICLUSTER_LABEL);
    let secrets = b
        .list(&objects::core("Secret"), Some(ns), Some(&selector))
        .await?;
    lines.push(cluster_id_line(
        (&a.context, &a_id),
        (&b.context, &b_id),
        &secrets,
    ));

    let cm = objects::core("ConfigMap");
    let mesh_a = a.get(&cm, Some(ns), "istio").await?;
    let mesh_b = b.get(&cm, Some(ns), "istio").await?;
    lines.push(mesh_id_line(
        (&a.context, mesh_id(mesh_a.as_ref())),
        (&b.context, mesh_id(mesh_b.as_ref())),
    ));

    if let Some(gw) = reach.network {
        network_lines((a, &a_id), (b, &b_id), ns, gw, &mut lines).await?;
    }

    let name = build::remote_secret_name(&a_id);
    let seen = match secret_kubeconfig(&secrets, &name, &a_id) {
        Some(t) => Some(listing::inspect(t, None).await),
        None => None,
    };
    lines.push(token_line(&a.context, &b.context, &name, seen.as_ref()));

    let skipped = match istiod_sync((a, &a_id), b, ns, &name, reach).await {
        Ok(line) => {
            lines.push(line);
            None
        }
        Err(skipped) => Some(skipped),
    };

    crate::link::check::finish(
        &mut io.out,
        &lines,
        skipped.as_deref(),
        &format!("{} -> {} (remote secret)", a.context, b.context),
    )
}

/// Whether istiod in --to has synced --from through the secret `name`, or why it could
/// not be asked (a skipped line, which counts neither way).
async fn istiod_sync(
    (a, a_id): (&Cluster, &str),
    b: &Cluster,
    ns: &str,
    name: &str,
    reach: Reach<'_>,
) -> Result<Line, String> {
    let answer = match reach.istiod_debug {
        Some(addr) => istiod::read_at(addr).await,
        None => istiod::read_via_pods(b, ns).await,
    };
    let sync = istiod::judge((&a.context, a_id), &b.context, ns, name, &answer);
    match sync.verdict {
        Some(Ok(text)) => Ok(ok(text)),
        Some(Err(text)) => Ok(fail(text)),
        None => Err(sync.skipped),
    }
}

/// The release of the istiod a context runs, for [`version_line`].
async fn release(c: &Cluster, ns: &str) -> Result<(String, Result<Release, String>)> {
    let d = c
        .get(
            &objects::deployment(),
            Some(ns),
            &with_revision("istiod", None),
        )
        .await?;
    Ok((
        c.context.clone(),
        d.as_ref()
            .map_or_else(|| Err(format!("no istiod Deployment in {ns}")), release_of),
    ))
}

/// The mesh's root certificate as istiod publishes it.
async fn root_cert(c: &Cluster, ns: &str) -> Result<Option<Value>> {
    let cm = objects::core("ConfigMap");
    c.get(&cm, Some(ns), "istio-ca-root-cert").await
}

/// The kubeconfig a remote secret holds for cluster `id`, when it is there and readable.
fn secret_kubeconfig(secrets: &[Value], name: &str, id: &str) -> Option<String> {
    secrets
        .iter()
        .find(|s| objects::name(s) == name)
        .and_then(|s| s["data"][id].as_str())
        .and_then(|d| base64::engine::general_purpose::STANDARD.decode(d).ok())
        .and_then(|b| String::from_utf8(b).ok())
}

/// With `--network`: the networks differ and --from's east-west gateway answers and exposes
/// `*.local`, since across networks the services of --from are reached only through it.
async fn network_lines(
    (a, a_id): (&Cluster, &str),
    (b, b_id): (&Cluster, &str),
    ns: &str,
    gw: &GatewayRef,
    lines: &mut Vec<Line>,
) -> Result<()> {
    let na = ControlPlane::new(a, ns, None).network(Some(a_id)).await?;
    let nb = ControlPlane::new(b, ns, None).network(Some(b_id)).await?;
    let svc = a
        .get(&objects::core("Service"), Some(&gw.namespace), &gw.name)
        .await?;
    lines.push(network_line(
        (&a.context, &na.name),
        (&b.context, &nb.name),
        gw,
        svc.as_ref(),
    ));
    lines.push(probe_line(
        &a.context,
        gw,
        probe_gateway(gw, svc.as_ref()).await,
    ));
    match a.istio_version().await {
        Ok(v) => {
            let gateways = a
                .list(&objects::istio("Gateway", &v), Some(&gw.namespace), None)
                .await?;
            lines.push(expose_line(&a.context, &gateways));
        }
        Err(e) => lines.push(fail(format!("{e:#}"))),
    }
    Ok(())
}

/// A TCP connection to the gateway's multicluster port: its endpoint and how long it took.
async fn probe_gateway(
    gw: &GatewayRef,
    svc: Option<&Value>,
) -> Result<(String, std::time::Duration), String> {
    match svc.map(probe::target) {
        None => Err(format!("Service {gw} not found")),
        Some(Err(why)) => Err(why),
        Some(Ok((host, port))) => {
            let endpoint = probe::endpoint(&host, port);
            probe::connect(&host, port)
                .await
                .map(|took| (endpoint.clone(), took))
                .map_err(|why| format!("{endpoint}: {why}"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn versions() {
        let l = version_line(&[
            ("c1".into(), Ok(Release(1, 24, 3))),
            ("c2".into(), Ok(Release(1, 8, 0))),
        ]);
        assert!(l.ok, "{l}");
        let l = version_line(&[
            ("c1".into(), Ok(Release(1, 24, 3))),
            ("c2".into(), Ok(Release(1, 7, 8))),
        ]);
        assert!(!l.ok);
        assert!(l.text.contains("c2 runs 1.7.8, older than 1.8"), "{l}");
    }

    #[test]
    fn cluster_ids_and_secrets() {
        let s = json!({"metadata": {"name": "istio-remote-secret-c1", "annotations": {"networking.istio.io/cluster": "c1"}}});
        assert!(cluster_id_line(("a", "c1"), ("b", "c2"), std::slice::from_ref(&s)).ok);
        assert!(!cluster_id_line(("a", "c1"), ("b", "c1"), std::slice::from_ref(&s)).ok);
        let none = cluster_id_line(("a", "c1"), ("b", "c2"), &[]);
        assert!(
            none.text
                .contains("holds no remote secret istio-remote-secret-c1"),
            "{none}"
        );
        let wrong = json!({"metadata": {"name": "istio-remote-secret-c1", "annotations": {"networking.istio.io/cluster": "x"}}});
        assert!(!cluster_id_line(("a", "c1"), ("b", "c2"), &[wrong]).ok);
    }

    #[test]
    fn networks_and_exposure() {
        let gw: GatewayRef = network::DEFAULT_GATEWAY.parse().expect("ref");
        let svc = json!({
            "metadata": {"labels": {"topology.istio.io/network": "n1"}},
            "spec": {"ports": [{"port": 15443}]},
            "status": {"loadBalancer": {"ingress": [{"ip": "192.0.2.1"}]}},
        });
        assert!(network_line(("a", "n1"), ("b", "n2"), &gw, Some(&svc)).ok);
        assert!(!network_line(("a", "n1"), ("b", "n1"), &gw, Some(&svc)).ok);
        assert!(!network_line(("a", "n1"), ("b", "n2"), &gw, None).ok);
        let g = network::cross_network_gateway("istio-system", "v1", &json!({}));
        assert!(expose_line("a", &[g]).ok);
        assert!(!expose_line("a", &[]).ok);
    }

    #[test]
    fn mesh_ids() {
        let cm = |m: &str| json!({"data": {"mesh": m}});
        assert_eq!(
            mesh_id(Some(&cm("defaultConfig:\n  meshId: mesh1\n"))),
            Ok("mesh1".into())
        );
        assert_eq!(mesh_id(Some(&cm("trustDomain: td\n"))), Ok("td".into()));
        assert_eq!(mesh_id(Some(&cm("{}\n"))), Ok("cluster.local".into()));
        assert!(mesh_id(None).is_err());
        assert!(!mesh_id_line(("a", Ok("m1".into())), ("b", Ok("m2".into()))).ok);
        assert!(mesh_id_line(("a", Ok("m1".into())), ("b", Ok("m1".into()))).ok);
    }
}
