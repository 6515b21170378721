//! Whether a cluster's east-west gateway answers where the other cluster's sidecars will send
//! cross-network traffic: a TCP connect to its external address on the port istiod gives them,
//! timed. istiod takes that port from the Service's `networking.istio.io/gatewayPort` label,
//! else 15443, and uses the gateway only when the Service has that port
//! (`pilot/pkg/serviceregistry/kube/controller/network.go`, `getGatewayDetails`); the probe does
//! the same.

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::gateway::{self, MULTICLUSTER_PORT};

/// The label istiod reads a gateway's cross-network port from.
pub const GATEWAY_PORT_LABEL: &str = "networking.istio.io/gatewayPort";

/// How long a connect may take before the gateway is called unreachable.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// The port istiod sends cross-network traffic to on this gateway Service: the
/// `networking.istio.io/gatewayPort` label, else 15443, and only when the Service has it.
pub fn gateway_port(svc: &Value) -> Result<u16, String> {
    let port = match svc["metadata"]["labels"][GATEWAY_PORT_LABEL].as_str() {
        // istiod logs a bad label and falls back to 15443.
        Some(p) => p.parse::<u16>().unwrap_or(MULTICLUSTER_PORT),
        None => MULTICLUSTER_PORT,
    };
    let has = svc["spec"]["ports"].as_array().is_some_and(|ps| {
        ps.iter()
            .any(|p| p["port"].as_u64() == Some(u64::from(port)))
    });
    if has {
        Ok(port)
    } else {
        Err(format!("the Service has no port {port}"))
    }
}

/// The gateway's external address, by the one rule of [`gateway::address_of`]: a
/// load-balancer IP, else an external IP, else a load-balancer hostname.
pub fn gateway_host(svc: &Value) -> Option<String> {
    gateway::address_of(svc).map(|a| a.as_endpoint())
}

/// Where to probe the gateway Service: `host:port`, or why it cannot be.
pub fn target(svc: &Value) -> Result<(String, u16), String> {
    let port = gateway_port(svc)?;
    let host = gateway_host(svc).ok_or_else(|| {
        "the Service has no external address (status.loadBalancer.ingress, spec.externalIPs)"
            .to_string()
    })?;
    Ok((host, port))
}

/// `host:port`, bracketing an IPv6 address.
pub fn endpoint(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// Connects to `host:port` and closes again; how long the connect took, or why it failed.
pub async fn connect(host: &str, port: u16) -> Result<Duration, String> {
    let start = Instant::now();
    match tokio::time::timeout(
        CONNECT_TIMEOUT,
        tokio::net::TcpStream::connect((host, port)),
    )
    .await
    {
        Ok(Ok(_stream)) => Ok(start.elapsed()),
        Ok(Err(e)) => Err(connect_error(&e)),
        Err(_) => Err(format!("no answer within {}s", CONNECT_TIMEOUT.as_secs())),
    }
}

fn connect_error(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::ConnectionRefused => "connection refused".into(),
        _ => e.to_string(),
    }
}

/// A connect time as a person reads it: `0.4ms`, `12ms`.
pub fn latency(d: Duration) -> String {
    let ms = d.as_secs_f64() * 1000.0;
    if ms < 10.0 {
        format!("{ms:.1}ms")
    } else {
        format!("{}ms", d.as_millis())
    }
}

/// The GATEWAY cell of `--list` for the gateway Service (`None`: no such Service).
pub async fn cell(svc: Option<&Value>) -> String {
    let Some(svc) = svc else {
        return "-".into();
    };
    match target(svc) {
        Err(why) => format!("unreachable: {why}"),
        Ok((host, port)) => match connect(&host, port).await {
            Ok(d) => format!("{} ({})", endpoint(&host, port), latency(d)),
            Err(why) => format!("unreachable: {}: {why}", endpoint(&host, port)),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn svc(labels: Value, ports: Value, status: Value) -> Value {
        json!({"metadata": {"labels": labels}, "spec": {"ports": ports}, "status": status})
    }

    #[test]
    fn the_port_is_istiods() {
        let lb = json!({"loadBalancer": {"ingress": [{"ip": "203.0.113.7"}]}});
        let plain = svc(json!({}), json!([{"port": 15443}]), lb.clone());
        assert_eq!(target(&plain), Ok(("203.0.113.7".into(), 15443)));
        let labelled = svc(
            json!({GATEWAY_PORT_LABEL: "40000"}),
            json!([{"port": 15443}, {"port": 40000}]),
            lb.clone(),
        );
        assert_eq!(gateway_port(&labelled), Ok(40000));
        // A label naming a port the Service lacks: istiod does not use the gateway.
        let missing = svc(
            json!({GATEWAY_PORT_LABEL: "40000"}),
            json!([{"port": 15443}]),
            lb.clone(),
        );
        assert!(gateway_port(&missing).is_err());
        // A label that is not a number: istiod falls back to 15443.
        let bad = svc(
            json!({GATEWAY_PORT_LABEL: "x"}),
            json!([{"port": 15443}]),
            lb,
        );
        assert_eq!(gateway_port(&bad), Ok(15443));
    }

    #[test]
    fn the_address_is_the_load_balancers_else_an_external_ip() {
        let s = json!({"spec": {"externalIPs": ["198.51.100.4"], "ports": [{"port": 15443}]}});
        assert_eq!(gateway_host(&s).as_deref(), Some("198.51.100.4"));
        let lb = json!({"spec": {"externalIPs": ["198.51.100.4"]}, "status": {"loadBalancer": {"ingress": [{"hostname": "gw.example.com"}]}}});
        assert_eq!(gateway_host(&lb).as_deref(), Some("198.51.100.4"));
        let named =
            json!({"status": {"loadBalancer": {"ingress": [{"hostname": "gw.example.com"}]}}});
        assert_eq!(gateway_host(&named).as_deref(), Some("gw.example.com"));
        assert!(target(&json!({"spec": {"ports": [{"port": 15443}]}})).is_err());
        assert_eq!(endpoint("2001:db8::1", 15443), "[2001:db8::1]:15443");
    }

    #[test]
    fn latencies() {
        assert_eq!(latency(Duration::from_micros(400)), "0.4ms");
        assert_eq!(latency(Duration::from_millis(12)), "12ms");
    }

    #[tokio::test]
    async fn reachable_and_refused() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        assert!(connect("127.0.0.1", port).await.is_ok());
        drop(listener);
        assert_eq!(
            connect("127.0.0.1", port).await,
            Err("connection refused".into())
        );
    }
}
