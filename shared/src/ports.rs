//! Port specs as users type them (`grpc:3550`, `http-web=8080`, `3550`) and Istio's protocols.

use std::fmt;
use std::str::FromStr;

/// The protocols Istio selects from a port name's prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Protocol {
    /// HTTP/1.1
    Http,
    /// HTTP/2
    Http2,
    /// TLS-wrapped HTTP
    Https,
    /// gRPC
    Grpc,
    /// gRPC-Web
    GrpcWeb,
    /// Opaque TCP
    Tcp,
    /// Opaque TLS
    Tls,
    /// MongoDB
    Mongo,
    /// MySQL
    Mysql,
    /// Redis
    Redis,
}

impl Protocol {
    /// Every protocol, in the order help texts list them.
    pub const ALL: [Protocol; 10] = [
        Protocol::Http,
        Protocol::Http2,
        Protocol::Https,
        Protocol::Grpc,
        Protocol::GrpcWeb,
        Protocol::Tcp,
        Protocol::Tls,
        Protocol::Mongo,
        Protocol::Mysql,
        Protocol::Redis,
    ];

    /// The lower-case prefix users type.
    pub fn prefix(self) -> &'static str {
        match self {
            Protocol::Http => "http",
            Protocol::Http2 => "http2",
            Protocol::Https => "https",
            Protocol::Grpc => "grpc",
            Protocol::GrpcWeb => "grpc-web",
            Protocol::Tcp => "tcp",
            Protocol::Tls => "tls",
            Protocol::Mongo => "mongo",
            Protocol::Mysql => "mysql",
            Protocol::Redis => "redis",
        }
    }

    /// The spelling Istio uses in `ports[].protocol`.
    pub fn istio_name(self) -> &'static str {
        match self {
            Protocol::Http => "HTTP",
            Protocol::Http2 => "HTTP2",
            Protocol::Https => "HTTPS",
            Protocol::Grpc => "GRPC",
            Protocol::GrpcWeb => "GRPC-Web",
            Protocol::Tcp => "TCP",
            Protocol::Tls => "TLS",
            Protocol::Mongo => "Mongo",
            Protocol::Mysql => "MySQL",
            Protocol::Redis => "Redis",
        }
    }

    /// Istio's rule: the part of a port name before the first `-` (with `grpc-web` as one word),
    /// case-insensitive. `None` when it names no known protocol.
    pub fn from_port_name(name: &str) -> Option<Protocol> {
        let lower = name.to_ascii_lowercase();
        if lower == "grpc-web" || lower.starts_with("grpc-web-") {
            return Some(Protocol::GrpcWeb);
        }
        let head = lower.split('-').next().unwrap_or("");
        Protocol::ALL
            .into_iter()
            .find(|p| *p != Protocol::GrpcWeb && p.prefix() == head)
    }

    /// From a Service port's `appProtocol` (`grpc`, `kubernetes.io/h2c`, `HTTP`...).
    pub fn from_app_protocol(app: &str) -> Option<Protocol> {
        match app.to_ascii_lowercase().as_str() {
            "kubernetes.io/h2c" => Some(Protocol::Http2),
            "kubernetes.io/ws" => Some(Protocol::Http),
            "kubernetes.io/wss" => Some(Protocol::Https),
            other => Protocol::from_port_name(other).filter(|p| p.prefix() == other),
        }
    }

    /// `http, http2, ...` for messages.
    pub fn list() -> String {
        Protocol::ALL
            .iter()
            .map(|p| p.prefix())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.istio_name())
    }
}

/// A validated, named port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortSpec {
    /// The port name (lower-case, a DNS-1123 label).
    pub name: String,
    /// 1-65535.
    pub number: u16,
    /// The protocol the name selects.
    pub protocol: Protocol,
}

const ACCEPTED: &str =
    "expected [NAME:]PORT, e.g. grpc:3550, http-web:8080 or 3550, with PORT 1-65535";

/// Parses a port number 1-65535.
pub fn parse_number(s: &str) -> Result<u16, String> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) || s.len() > 5 {
        return Err(format!(
            "invalid port {s:?}: expected a number from 1 to 65535"
        ));
    }
    match s.parse::<u32>() {
        Ok(n @ 1..=65535) => Ok(n as u16),
        _ => Err(format!(
            "invalid port {s:?}: expected a number from 1 to 65535"
        )),
    }
}

impl FromStr for PortSpec {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let split = s.find([':', '=']);
        let Some(i) = split else {
            let number = parse_number(s).map_err(|e| format!("{e} ({ACCEPTED})"))?;
            let (name, protocol) = match number {
                80 | 8080 => ("http".to_string(), Protocol::Http),
                443 => ("https".to_string(), Protocol::Https),
                3306 => ("mysql".to_string(), Protocol::Mysql),
                n => (format!("tcp-{n}"), Protocol::Tcp),
            };
            return Ok(PortSpec {
                name,
                number,
                protocol,
            });
        };
        let (name, port) = (&s[..i], &s[i + 1..]);
        if name.is_empty() {
            return Err(format!(
                "invalid port {s:?}: the name before '{}' is empty ({ACCEPTED})",
                &s[i..=i]
            ));
        }
        if port.is_empty() {
            return Err(format!(
                "invalid port {s:?}: no port number after the name ({ACCEPTED})"
            ));
        }
        let number = parse_number(port).map_err(|e| format!("{e} ({ACCEPTED})"))?;
        let name = name.to_ascii_lowercase();
        crate::names::dns1123_label(&name)
            .map_err(|e| format!("invalid port name in {s:?}: {e}"))?;
        let protocol = Protocol::from_port_name(&name).ok_or_else(|| {
            format!(
                "invalid port {s:?}: the name must start with a protocol ({}) optionally followed by -suffix",
                Protocol::list()
            )
        })?;
        Ok(PortSpec {
            name,
            number,
            protocol,
        })
    }
}

impl fmt::Display for PortSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.name, self.number)
    }
}

/// Parses a comma-separated list of port specs (`grpc=3550,http=8080`).
pub fn parse_list(s: &str) -> Result<Vec<PortSpec>, String> {
    let ports = s
        .split(',')
        .map(str::trim)
        .map(PortSpec::from_str)
        .collect::<Result<Vec<_>, _>>()?;
    check_unique(&ports)?;
    Ok(ports)
}

/// Port names and numbers must each be unique.
pub fn check_unique(ports: &[PortSpec]) -> Result<(), String> {
    for (i, a) in ports.iter().enumerate() {
        for b in &ports[i + 1..] {
            if a.name == b.name {
                return Err(format!(
                    "port name {:?} is used twice ({a} and {b}): give each port its own name",
                    a.name
                ));
            }
            if a.number == b.number {
                return Err(format!("port {} is given twice ({a} and {b})", a.number));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Result<PortSpec, String> {
        s.parse()
    }

    #[test]
    fn named_ports() {
        assert_eq!(
            p("grpc:3550"),
            Ok(PortSpec {
                name: "grpc".into(),
                number: 3550,
                protocol: Protocol::Grpc
            })
        );
        assert_eq!(p("http-web:8080").map(|x| x.protocol), Ok(Protocol::Http));
        assert_eq!(
            p("grpc-web:8080").map(|x| x.protocol),
            Ok(Protocol::GrpcWeb)
        );
        assert_eq!(
            p("GRPC:1").map(|x| (x.name, x.protocol)),
            Ok(("grpc".into(), Protocol::Grpc))
        );
        assert_eq!(p("http2=81").map(|x| x.protocol), Ok(Protocol::Http2));
        assert_eq!(p("mongo-db:27017").map(|x| x.protocol), Ok(Protocol::Mongo));
    }

    #[test]
    fn bare_ports_get_well_known_names() {
        assert_eq!(p("80").map(|x| x.name), Ok("http".into()));
        assert_eq!(p("8080").map(|x| x.protocol), Ok(Protocol::Http));
        assert_eq!(p("443").map(|x| x.protocol), Ok(Protocol::Https));
        assert_eq!(p("3306").map(|x| x.protocol), Ok(Protocol::Mysql));
        assert_eq!(
            p("3550").map(|x| (x.name, x.protocol)),
            Ok(("tcp-3550".into(), Protocol::Tcp))
        );
    }

    #[test]
    fn malformed_ports_are_refused() {
        for bad in [
            "0",
            "65536",
            "abc",
            "grpc:",
            ":3550",
            "smtp:25",
            "-1",
            "grpc:0",
            "grpc:1.5",
            "http_x:80",
            "",
            "99999999999",
            "grpc:+80",
            "web:80",
        ] {
            assert!(p(bad).is_err(), "{bad} should be refused");
        }
    }

    #[test]
    fn lists_and_duplicates() {
        assert_eq!(parse_list("grpc=3550,http=8080").map(|v| v.len()), Ok(2));
        assert!(parse_list("grpc=3550,grpc=8080").is_err());
        assert!(parse_list("80,8080").is_err());
        assert!(parse_list("grpc=3550,").is_err());
    }

    #[test]
    fn app_protocol() {
        assert_eq!(Protocol::from_app_protocol("grpc"), Some(Protocol::Grpc));
        assert_eq!(
            Protocol::from_app_protocol("kubernetes.io/h2c"),
            Some(Protocol::Http2)
        );
        assert_eq!(Protocol::from_app_protocol("grpc-foo"), None);
    }
}
