//! HTTPS serving: a CA plus a leaf certificate (shared per process), hyper 1 over tokio-rustls,
//! authentication, faults and the request log.

use crate::{lock, Cluster, FaultAction, LoggedRequest};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response};
use std::sync::{Arc, OnceLock};

struct Tls {
    ca_pem: String,
    config: Arc<rustls::ServerConfig>,
}

fn make_tls() -> anyhow::Result<Tls> {
    use rcgen::{
        BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose,
        IsCa, KeyPair, KeyUsagePurpose,
    };
    let ca_key = KeyPair::generate()?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "kube-emu-ca");
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca = CertifiedIssuer::self_signed(ca_params, ca_key)?;
    let leaf_key = KeyPair::generate()?;
    let mut lp = CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])?;
    lp.is_ca = IsCa::ExplicitNoCa;
    lp.distinguished_name.push(DnType::CommonName, "kube-emu");
    lp.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    lp.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    let leaf = lp.signed_by(&leaf_key, &ca)?;
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(leaf_key.serialize_der().into());
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_no_client_auth()
    .with_single_cert(vec![leaf.der().clone(), ca.der().clone()], key)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Tls {
        ca_pem: ca.pem(),
        config: Arc::new(config),
    })
}

fn tls() -> anyhow::Result<&'static Tls> {
    static TLS: OnceLock<Tls> = OnceLock::new();
    if let Some(t) = TLS.get() {
        return Ok(t);
    }
    let t = make_tls()?;
    Ok(TLS.get_or_init(|| t))
}

/// The PEM of the CA that signs the servers' certificate (one per process).
pub fn tls_ca_pem() -> String {
    tls().map(|t| t.ca_pem.clone()).unwrap_or_default()
}

pub(crate) fn tls_config() -> anyhow::Result<Arc<rustls::ServerConfig>> {
    Ok(tls()?.config.clone())
}

pub(crate) async fn serve(
    listener: tokio::net::TcpListener,
    cluster: Arc<Cluster>,
    tls: Arc<rustls::ServerConfig>,
) {
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        let cluster = cluster.clone();
        tokio::spawn(async move {
            // The TLS handshake's round trip, as a far-away server costs it.
            pause(cluster.latency()).await;
            let Ok(stream) = acceptor.accept(tcp).await else {
                return;
            };
            let svc = hyper::service::service_fn(move |req| handle(cluster.clone(), req));
            let _ = hyper::server::conn::http1::Builder::new()
                .keep_alive(true)
                .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                .await;
        });
    }
}

/// Sleeps, unless there is nothing to wait for.
async fn pause(d: std::time::Duration) {
    if !d.is_zero() {
        tokio::time::sleep(d).await;
    }
}

#[derive(Debug)]
struct ResetConnection;
impl std::fmt::Display for ResetConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("connection reset by fault injection")
    }
}
impl std::error::Error for ResetConnection {}

fn header<'a>(req: &'a Request<hyper::body::Incoming>, name: &str) -> &'a str {
    req.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

async fn handle(
    cluster: Arc<Cluster>,
    req: Request<hyper::body::Incoming>,
) -> Result<Response<Full<Bytes>>, ResetConnection> {
    let method = req.method().as_str().to_string();
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or("").to_string();
    let user_agent = header(&req, "user-agent").to_string();
    let accept = header(&req, "accept").to_string();
    let content_type = header(&req, "content-type").to_string();
    let auth = header(&req, "authorization").to_string();
    let body = match req.into_body().collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => return Err(ResetConnection),
    };
    let mut entry = LoggedRequest {
        method: method.clone(),
        path: path.clone(),
        query: query.clone(),
        status: 0,
        user_agent,
    };
    // A far-away server: the request arrives after half the round trip, and the answer takes
    // the other half to come back (below).
    let latency = cluster.latency();
    pause(latency / 2).await;
    let fault = cluster.take_fault(&method, &path);
    let resp = match fault.clone() {
        Some(FaultAction::Reset) => {
            lock(&cluster.log).push(entry);
            return Err(ResetConnection);
        }
        Some(FaultAction::Status(code)) => crate::util::simple_status(
            code,
            &format!("injected fault: {}", crate::util::reason_for(code)),
        ),
        Some(FaultAction::DelayThenStatus(d, code)) => {
            tokio::time::sleep(d).await;
            crate::util::simple_status(
                code,
                &format!("injected fault: {}", crate::util::reason_for(code)),
            )
        }
        Some(FaultAction::Body(text)) => {
            let mut r = crate::util::simple_status(200, "");
            r.body = text.into_bytes();
            r.content_type = "application/json";
            r
        }
        other => {
            if let Some(FaultAction::Delay(d)) = other {
                tokio::time::sleep(d).await;
            }
            let anonymous_ok = matches!(
                path.as_str(),
                "/version" | "/healthz" | "/livez" | "/readyz"
            );
            let expected = format!("Bearer {}", lock(&cluster.token));
            let user = if auth == expected {
                Some(crate::api::authz::User::Admin)
            } else {
                auth.strip_prefix("Bearer ")
                    .and_then(|t| cluster.core.authenticate(t))
            };
            let denied = user
                .as_ref()
                .and_then(|u| cluster.core.authorize(u, &method, &path, &query));
            if !anonymous_ok && user.is_none() {
                crate::util::status(401, "Unauthorized", "Unauthorized", None)
            } else if let (Some(u), true) = (
                &user,
                method == "POST" && path == crate::api::authz::SSAR_PATH,
            ) {
                cluster.core.self_subject_access_review(u, &body)
            } else if let Some(forbidden) = denied {
                forbidden
            } else {
                let r = crate::api::Request {
                    method: &method,
                    path: &path,
                    query: &query,
                    accept: &accept,
                    content_type: &content_type,
                    user_agent: &entry.user_agent,
                    body: &body,
                };
                cluster.core.handle(&r)
            }
        }
    };
    let resp = match fault {
        Some(FaultAction::StoreThenStatus(code)) => crate::util::simple_status(
            code,
            &format!(
                "injected fault after the change was stored: {}",
                crate::util::reason_for(code)
            ),
        ),
        _ => resp,
    };
    entry.status = resp.status;
    lock(&cluster.log).push(entry);
    if let Some(FaultAction::StallAfter(d)) = fault.clone() {
        // The request took effect; only the answer is late, as when a client times out
        // on a server that is slow to reply.
        tokio::time::sleep(d).await;
    }
    pause(latency - latency / 2).await;
    let mut b = Response::builder()
        .status(resp.status)
        .header("content-type", resp.content_type)
        .header("cache-control", "no-cache, private");
    for w in &resp.warnings {
        let escaped = w.replace('\\', "\\\\").replace('"', "\\\"");
        b = b.header("warning", format!("299 - \"{escaped}\""));
    }
    Ok(b.body(Full::new(Bytes::from(resp.body)))
        .unwrap_or_else(|_| Response::new(Full::new(Bytes::new()))))
}
