//! Whether istiod in the target cluster has the source cluster synced, from its
//! `/debug/clusterz`: a JSON list of `{id, secretName, syncStatus}` (istio's
//! `cluster.DebugInfo`; the config cluster first, with no secret name, then one entry per
//! cluster read from a remote secret; `syncStatus` is `synced`, `syncing`, `timeout` or
//! `closed`). istiod serves `/debug` on its HTTP port 8080 (and its monitoring port 15014)
//! without authentication only to requests from localhost, so it is read through the address
//! `--istiod-debug` names (a port forward), else tried through the API server's pod proxy.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::Deserialize;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::api::Cluster;
use crate::objects;

/// istiod's HTTP port, which serves `/debug`.
pub const DEBUG_PORT: u16 = 8080;
/// The path.
pub const CLUSTERZ: &str = "/debug/clusterz";
/// How long istiod may take to answer.
const TIMEOUT: Duration = Duration::from_secs(10);

/// `--istiod-debug URL|HOST:PORT`: where istiod's debug port is reached (plain HTTP).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DebugAddress {
    /// Host name or IP.
    pub host: String,
    /// Port.
    pub port: u16,
}

impl FromStr for DebugAddress {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || {
            format!(
                "{s:?} is not HOST:PORT or http://HOST:PORT (e.g. localhost:{DEBUG_PORT} after kubectl port-forward -n istio-system deploy/istiod {DEBUG_PORT})"
            )
        };
        if s.starts_with("https://") {
            return Err(format!(
                "{s:?}: istiod serves /debug over plain HTTP: use http://HOST:PORT or HOST:PORT"
            ));
        }
        let rest = s.strip_prefix("http://").unwrap_or(s);
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        if rest.contains('/') {
            return Err(format!(
                "{s:?}: give the address only, without a path ({CLUSTERZ} is added)"
            ));
        }
        let (host, port) = rest.rsplit_once(':').ok_or_else(bad)?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let port: u16 = port.parse().map_err(|_| bad())?;
        if host.is_empty() || port == 0 {
            return Err(bad());
        }
        Ok(DebugAddress {
            host: host.to_string(),
            port,
        })
    }
}

impl fmt::Display for DebugAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&super::probe::endpoint(&self.host, self.port))
    }
}

/// One entry of `/debug/clusterz`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Remote {
    /// The cluster ID.
    pub id: String,
    /// The remote secret it was read from; empty for istiod's own cluster.
    #[serde(rename = "secretName", default)]
    pub secret_name: String,
    /// `synced`, `syncing`, `timeout` or `closed`.
    #[serde(rename = "syncStatus", default)]
    pub sync_status: String,
}

/// Parses a `/debug/clusterz` answer.
pub fn parse(body: &str) -> Result<Vec<Remote>, String> {
    serde_json::from_str(body).map_err(|e| {
        format!("its {CLUSTERZ} is not the list of clusters this version expects: {e}")
    })
}

/// What was learnt from istiod: its clusters and where they were read, or why nothing was.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// istiod answered (`from` says where: an address, or a pod through the API server).
    Clusters {
        /// Where the answer came from.
        from: String,
        /// The entries.
        clusters: Vec<Remote>,
    },
    /// istiod could not be read.
    Unreachable(String),
}

/// The verdict on istiod's sync of the source: `Ok(text)` for ✔, `Err(text)` for ×, and
/// `None` when istiod could not be read (the skipped line, with how to make it readable).
pub struct Sync {
    /// ✔/× and the text; `None` when skipped.
    pub verdict: Option<Result<String, String>>,
    /// The skipped line's text.
    pub skipped: String,
}

/// Judges the answer for source cluster `a_id` (context `a_ctx`) in target context `b_ctx`.
pub fn judge(a: (&str, &str), b_ctx: &str, ns: &str, secret: &str, answer: &Answer) -> Sync {
    let (a_ctx, a_id) = a;
    let restart = format!(
        "restart it: kubectl rollout restart deployment/istiod -n {ns} --context {b_ctx} (istiod can keep a remote cluster's old state and credentials until it restarts, istio/istio#60612)"
    );
    let (from, clusters) = match answer {
        Answer::Unreachable(why) => {
            return Sync {
                verdict: None,
                skipped: format!(
                    "skipped: whether istiod in {b_ctx} syncs {a_ctx}: {why}; to check it, run kubectl port-forward -n {ns} deploy/istiod {DEBUG_PORT} --context {b_ctx} and add --istiod-debug localhost:{DEBUG_PORT}"
                ),
            }
        }
        Answer::Clusters { from, clusters } => (from, clusters),
    };
    let verdict = match clusters
        .iter()
        .find(|c| c.id == a_id && !c.secret_name.is_empty())
    {
        Some(c) if c.sync_status == "synced" => Ok(format!(
            "istiod in {b_ctx} has synced {a_id} ({a_ctx}) from secret {} ({CLUSTERZ} at {from})",
            c.secret_name
        )),
        Some(c) => Err(format!(
            "istiod in {b_ctx} reads {a_id} ({a_ctx}) from secret {} but its sync status is {} ({CLUSTERZ} at {from}): {restart}",
            c.secret_name,
            if c.sync_status.is_empty() { "empty" } else { &c.sync_status }
        )),
        None => {
            let listed: Vec<String> = clusters
                .iter()
                .map(|c| {
                    if c.secret_name.is_empty() {
                        format!("{} (its own)", c.id)
                    } else {
                        c.id.clone()
                    }
                })
                .collect();
            Err(format!(
                "istiod in {b_ctx} does not read {a_id} ({a_ctx}) from a remote secret; it lists {} ({CLUSTERZ} at {from}): once {b_ctx} holds {secret}, {restart}",
                if listed.is_empty() { "nothing".to_string() } else { listed.join(", ") }
            ))
        }
    };
    Sync {
        verdict: Some(verdict),
        skipped: String::new(),
    }
}

/// Reads `/debug/clusterz` at `addr` (plain HTTP/1.0).
pub async fn read_at(addr: &DebugAddress) -> Answer {
    match tokio::time::timeout(TIMEOUT, get(addr)).await {
        Ok(Ok(body)) => match parse(&body) {
            Ok(clusters) => Answer::Clusters {
                from: addr.to_string(),
                clusters,
            },
            Err(e) => Answer::Unreachable(format!("istiod at {addr}: {e}")),
        },
        Ok(Err(e)) => Answer::Unreachable(format!("{CLUSTERZ} at {addr}: {e}")),
        Err(_) => Answer::Unreachable(format!(
            "{CLUSTERZ} at {addr}: no answer within {}s",
            TIMEOUT.as_secs()
        )),
    }
}

async fn get(addr: &DebugAddress) -> Result<String, String> {
    let mut s = tokio::net::TcpStream::connect((addr.host.as_str(), addr.port))
        .await
        .map_err(|e| e.to_string())?;
    let host = addr.to_string();
    s.write_all(
        format!("GET {CLUSTERZ} HTTP/1.0\r\nHost: {host}\r\nAccept: application/json\r\n\r\n")
            .as_bytes(),
    )
    .await
    .map_err(|e| e.to_string())?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).await.map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| "the answer is not HTTP".to_string())?;
    match head.split_whitespace().nth(1) {
        Some("200") => Ok(body.to_string()),
        Some("401") => Err(
            "istiod answered 401: it serves /debug without authentication only to localhost".into(),
        ),
        Some(code) => Err(format!("istiod answered HTTP {code}")),
        None => Err("the answer is not HTTP".into()),
    }
}

/// Reads `/debug/clusterz` of the istiod pods (`app=istiod`) in `ns` of `b` through the API
/// server's pod proxy, the first that answers.
pub async fn read_via_pods(b: &Cluster, ns: &str) -> Answer {
    let pods = match b
        .list(&objects::core("Pod"), Some(ns), Some("app=istiod"))
        .await
    {
        Ok(p) => p,
        Err(e) => return Answer::Unreachable(format!("cannot list istiod's pods: {e:#}")),
    };
    if pods.is_empty() {
        return Answer::Unreachable(format!(
            "no istiod pod (app=istiod) in {ns} of {} to reach through the API server",
            b.context
        ));
    }
    let mut why = Vec::new();
    for pod in &pods {
        let name = objects::name(pod);
        let path = format!("/api/v1/namespaces/{ns}/pods/{name}:{DEBUG_PORT}/proxy{CLUSTERZ}");
        match tokio::time::timeout(TIMEOUT, b.get_path(&path)).await {
            Ok(Ok(v)) => match serde_json::from_value::<Vec<Remote>>(v) {
                Ok(clusters) => {
                    return Answer::Clusters {
                        from: format!("pod {name} through the API server"),
                        clusters,
                    }
                }
                Err(e) => why.push(format!("pod {name}: {e}")),
            },
            Ok(Err(kube::Error::Api(s))) if s.code == 401 => why.push(format!(
                "pod {name} answered 401 through the API server's pod proxy (istiod serves /debug without authentication only to localhost)"
            )),
            Ok(Err(kube::Error::Api(s))) => {
                why.push(format!("pod {name}: the pod proxy answered {}", s.code))
            }
            Ok(Err(_)) => why.push(format!("pod {name}: no answer through the pod proxy")),
            Err(_) => why.push(format!(
                "pod {name}: no answer within {}s",
                TIMEOUT.as_secs()
            )),
        }
    }
    Answer::Unreachable(why.join("; "))
}

#[cfg(test)]
mod tests {
    use super::*;

    const CLUSTERZ_BODY: &str = r#"[
  {"id": "cluster2", "secretName": "", "syncStatus": "synced"},
  {"id": "cluster1", "secretName": "istio-system/istio-remote-secret-cluster1", "syncStatus": "synced"}
]"#;

    fn answer(body: &str) -> Answer {
        Answer::Clusters {
            from: "localhost:8080".into(),
            clusters: parse(body).expect("clusterz"),
        }
    }

    #[test]
    fn addresses() {
        let a: DebugAddress = "localhost:8080".parse().expect("addr");
        assert_eq!((a.host.as_str(), a.port), ("localhost", 8080));
        let a: DebugAddress = "http://127.0.0.1:15014/".parse().expect("addr");
        assert_eq!(a.to_string(), "127.0.0.1:15014");
        for bad in [
            "localhost",
            "https://x:8080",
            "x:0",
            "x:port",
            "http://x:8080/debug/clusterz",
            ":80",
        ] {
            assert!(bad.parse::<DebugAddress>().is_err(), "{bad}");
        }
    }

    #[test]
    fn synced_missing_and_stuck() {
        let ok = judge(
            ("c1", "cluster1"),
            "c2",
            "istio-system",
            "istio-remote-secret-cluster1",
            &answer(CLUSTERZ_BODY),
        );
        assert!(matches!(ok.verdict, Some(Ok(_))));
        let missing = judge(
            ("c1", "cluster1"),
            "c2",
            "istio-system",
            "istio-remote-secret-cluster1",
            &answer(r#"[{"id": "cluster2", "secretName": "", "syncStatus": "synced"}]"#),
        );
        let Some(Err(text)) = missing.verdict else {
            panic!("not a ×")
        };
        assert!(text.contains("it lists cluster2 (its own)"), "{text}");
        assert!(
            text.contains("kubectl rollout restart deployment/istiod -n istio-system --context c2"),
            "{text}"
        );
        assert!(text.contains("istio/istio#60612"), "{text}");
        let stuck = judge(
            ("c1", "cluster1"),
            "c2",
            "istio-system",
            "s",
            &answer(
                r#"[{"id": "cluster1", "secretName": "istio-system/s", "syncStatus": "timeout"}]"#,
            ),
        );
        assert!(matches!(stuck.verdict, Some(Err(ref t)) if t.contains("sync status is timeout")));
        let skipped = judge(
            ("c1", "cluster1"),
            "c2",
            "ns",
            "s",
            &Answer::Unreachable("why".into()),
        );
        assert!(skipped.verdict.is_none());
        assert!(skipped
            .skipped
            .contains("kubectl port-forward -n ns deploy/istiod 8080 --context c2"));
        assert!(parse("<html>").is_err());
    }
}
