//! The WorkloadGroup's readiness probe: typed, parsed from flags or a file, emitted as Istio's shape.
//!
//! The same JSON goes into the WorkloadGroup (`spec.probe`) and into the VM's `mesh.yaml`
//! (`defaultConfig.readinessProbe`), so one type serves both.

use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::ports::parse_number;

/// A readiness probe as Istio's `ReadinessProbe` message spells it (proto-JSON, camelCase).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Probe {
    /// Seconds after start before the first probe.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub initial_delay_seconds: u32,
    /// Seconds before a probe times out.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub timeout_seconds: u32,
    /// Seconds between probes.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub period_seconds: u32,
    /// Successes in a row that make the workload ready again.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub success_threshold: u32,
    /// Failures in a row that make the workload unready.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub failure_threshold: u32,
    /// An HTTP GET.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_get: Option<HttpGet>,
    /// A TCP connect.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcp_socket: Option<TcpSocket>,
    /// A command run on the VM.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exec: Option<Exec>,
    /// A gRPC health check.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grpc: Option<Grpc>,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// `httpGet`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpGet {
    /// Request path.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub path: String,
    /// Port, 1-65535.
    pub port: u16,
    /// Host to connect to (default: the workload's address).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub host: String,
    /// `HTTP` or `HTTPS` (empty: HTTP).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub scheme: String,
    /// Extra request headers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub http_headers: Vec<Header>,
}

/// One `httpHeaders` entry.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Header {
    /// Header name.
    pub name: String,
    /// Header value.
    #[serde(default)]
    pub value: String,
}

/// `tcpSocket`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TcpSocket {
    /// Host to connect to (default: the workload's address).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub host: String,
    /// Port, 1-65535.
    pub port: u16,
}

/// `exec`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Exec {
    /// The command and its arguments.
    pub command: Vec<String>,
}

/// `grpc`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Grpc {
    /// Port, 1-65535.
    pub port: u16,
    /// The service name sent in the health check (empty: the server's overall health).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub service: String,
}

impl Probe {
    /// How many actions are set; Istio wants at most one.
    pub fn actions(&self) -> usize {
        usize::from(self.http_get.is_some())
            + usize::from(self.tcp_socket.is_some())
            + usize::from(self.exec.is_some())
            + usize::from(self.grpc.is_some())
    }

    /// Checks what serde cannot: one action, ports in range, a scheme Istio knows, a command.
    pub fn validate(&self) -> Result<(), String> {
        match self.actions() {
            1 => {}
            0 => {
                return Err(
                    "the probe has no action: give one of httpGet, tcpSocket, exec, grpc".into(),
                )
            }
            _ => return Err(
                "the probe has several actions: give only one of httpGet, tcpSocket, exec, grpc"
                    .into(),
            ),
        }
        let port = self
            .http_get
            .as_ref()
            .map(|h| h.port)
            .or(self.tcp_socket.as_ref().map(|t| t.port))
            .or(self.grpc.as_ref().map(|g| g.port));
        if port == Some(0) {
            return Err("probe port 0: expected a port from 1 to 65535".into());
        }
        if let Some(h) = &self.http_get {
            if !matches!(h.scheme.as_str(), "" | "HTTP" | "HTTPS") {
                return Err(format!(
                    "probe scheme {:?}: expected HTTP or HTTPS",
                    h.scheme
                ));
            }
            for hd in &h.http_headers {
                if hd.name.is_empty()
                    || !hd
                        .name
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
                {
                    return Err(format!(
                        "probe header name {:?}: expected letters, digits, '-' and '_'",
                        hd.name
                    ));
                }
            }
        }
        if let Some(e) = &self.exec {
            if e.command.is_empty() || e.command.iter().any(String::is_empty) {
                return Err("probe exec command is empty".into());
            }
        }
        Ok(())
    }
}

/// `--probe-http [http://|https://][HOST:]PORT[/PATH]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpProbeSpec(pub HttpGet);

impl FromStr for HttpProbeSpec {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        const ACCEPTED: &str =
            "expected [http://|https://][HOST:]PORT[/PATH], e.g. 8080, 8080/ready or 127.0.0.1:8080/";
        let (scheme, rest) = if let Some(r) = s.strip_prefix("https://") {
            ("HTTPS", r)
        } else if let Some(r) = s.strip_prefix("http://") {
            ("", r)
        } else {
            ("", s)
        };
        let (hostport, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        let (host, port) = split_host_port(hostport).map_err(|e| format!("{e} ({ACCEPTED})"))?;
        if path.chars().any(char::is_whitespace) {
            return Err(format!(
                "invalid probe path {path:?}: no spaces ({ACCEPTED})"
            ));
        }
        Ok(HttpProbeSpec(HttpGet {
            path: path.to_string(),
            port,
            host,
            scheme: scheme.to_string(),
            http_headers: Vec::new(),
        }))
    }
}

/// `--probe-tcp [HOST:]PORT`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TcpProbeSpec(pub TcpSocket);

impl FromStr for TcpProbeSpec {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (host, port) =
            split_host_port(s).map_err(|e| format!("{e} (expected [HOST:]PORT, e.g. 3306)"))?;
        Ok(TcpProbeSpec(TcpSocket { host, port }))
    }
}

/// `--probe-grpc PORT[/SERVICE]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrpcProbeSpec(pub Grpc);

impl FromStr for GrpcProbeSpec {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (port, service) = s.split_once('/').unwrap_or((s, ""));
        let port = parse_number(port).map_err(|e| {
            format!("{e} (expected PORT[/SERVICE], e.g. 8082 or 8082/grpc.health.v1.Health)")
        })?;
        Ok(GrpcProbeSpec(Grpc {
            port,
            service: service.to_string(),
        }))
    }
}

/// `--probe-exec "CMD ARG..."`: split at whitespace (no shell quoting).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecProbeSpec(pub Exec);

impl FromStr for ExecProbeSpec {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let command: Vec<String> = s.split_whitespace().map(String::from).collect();
        if command.is_empty() {
            return Err("empty command (expected a command and its arguments, e.g. \"/usr/bin/check --quick\")".into());
        }
        Ok(ExecProbeSpec(Exec { command }))
    }
}

/// `--probe KIND:SPEC`, the one-flag form: `http:8080/ready`, `tcp:3306`, `grpc:8082`, `exec:CMD`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnyProbeSpec(pub Probe);

impl FromStr for AnyProbeSpec {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        const KINDS: &str = "expected KIND:SPEC with KIND one of http, https, tcp, grpc, exec (e.g. http:8080/ready, tcp:3306, grpc:8082, exec:/bin/check)";
        let (kind, spec) = s
            .split_once(':')
            .ok_or_else(|| format!("invalid probe {s:?}: {KINDS}"))?;
        let mut p = Probe::default();
        match kind.to_ascii_lowercase().as_str() {
            "http" => p.http_get = Some(spec.parse::<HttpProbeSpec>()?.0),
            "https" => {
                let mut h = spec.parse::<HttpProbeSpec>()?.0;
                h.scheme = "HTTPS".into();
                p.http_get = Some(h);
            }
            "tcp" => p.tcp_socket = Some(spec.parse::<TcpProbeSpec>()?.0),
            "grpc" => p.grpc = Some(spec.parse::<GrpcProbeSpec>()?.0),
            "exec" => p.exec = Some(spec.parse::<ExecProbeSpec>()?.0),
            other => return Err(format!("unknown probe kind {other:?}: {KINDS}")),
        }
        Ok(AnyProbeSpec(p))
    }
}

/// `HOST:PORT` or `PORT`; IPv6 hosts in brackets (`[::1]:8080`).
fn split_host_port(s: &str) -> Result<(String, u16), String> {
    if let Some(rest) = s.strip_prefix('[') {
        let (host, port) = rest
            .split_once("]:")
            .ok_or_else(|| format!("invalid address {s:?}: an IPv6 host is written [ADDR]:PORT"))?;
        return Ok((host.to_string(), parse_number(port)?));
    }
    match s.rsplit_once(':') {
        Some((host, port)) => {
            if host.is_empty() || host.contains(':') || host.chars().any(char::is_whitespace) {
                return Err(format!("invalid host in {s:?}"));
            }
            Ok((host.to_string(), parse_number(port)?))
        }
        None => Ok((String::new(), parse_number(s)?)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_probe_forms() {
        let h = |s: &str| s.parse::<HttpProbeSpec>().map(|x| x.0);
        assert_eq!(
            h("8080").map(|x| (x.port, x.path)),
            Ok((8080, String::new()))
        );
        assert_eq!(h("8080/ready").map(|x| x.path), Ok("/ready".into()));
        let full = h("127.0.0.1:8080/").expect("parse");
        assert_eq!(
            (full.host.as_str(), full.port, full.path.as_str()),
            ("127.0.0.1", 8080, "/")
        );
        assert_eq!(
            h("https://localhost:8443/hz").map(|x| x.scheme),
            Ok("HTTPS".into())
        );
        assert_eq!(h("[::1]:80/").map(|x| x.host), Ok("::1".into()));
        for bad in [
            "", "0", "http:", "x:", "8080 /a", "70000", "a:b:80", "8080x",
        ] {
            assert!(h(bad).is_err(), "{bad} should fail");
        }
    }

    #[test]
    fn other_probe_kinds() {
        assert_eq!("3306".parse::<TcpProbeSpec>().map(|t| t.0.port), Ok(3306));
        assert_eq!(
            "8082/grpc.health.v1.Health"
                .parse::<GrpcProbeSpec>()
                .map(|g| g.0.service),
            Ok("grpc.health.v1.Health".into())
        );
        assert_eq!(
            "/bin/check  --quick"
                .parse::<ExecProbeSpec>()
                .map(|e| e.0.command),
            Ok(vec!["/bin/check".to_string(), "--quick".to_string()])
        );
        assert!("   ".parse::<ExecProbeSpec>().is_err());
        assert!("grpc".parse::<GrpcProbeSpec>().is_err());
    }

    #[test]
    fn one_flag_form_names_unknown_kinds() {
        assert!("http:8080/ready".parse::<AnyProbeSpec>().is_ok());
        assert_eq!(
            "https:8443"
                .parse::<AnyProbeSpec>()
                .map(|p| p.0.http_get.map(|h| h.scheme)),
            Ok(Some("HTTPS".into()))
        );
        let e = "udp:53".parse::<AnyProbeSpec>().expect_err("udp");
        assert!(e.contains("unknown probe kind \"udp\""), "{e}");
        assert!("8080".parse::<AnyProbeSpec>().is_err());
    }

    #[test]
    fn validation() {
        let mut p = Probe::default();
        assert!(p.validate().is_err());
        p.tcp_socket = Some(TcpSocket {
            host: String::new(),
            port: 1,
        });
        assert!(p.validate().is_ok());
        p.exec = Some(Exec {
            command: vec!["x".into()],
        });
        assert!(p.validate().is_err());
        p.exec = None;
        p.tcp_socket = Some(TcpSocket {
            host: String::new(),
            port: 0,
        });
        assert!(p.validate().is_err());
    }
}
