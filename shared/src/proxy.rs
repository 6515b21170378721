//! Which proxy the requests to one API server go through, by kubectl's rules: the kubeconfig
//! cluster's `proxy-url` always; otherwise `HTTPS_PROXY` (`HTTP_PROXY` for an `http://`
//! server), never for localhost or a loopback address, and not for a host `NO_PROXY` names.
//! A proxy's credentials are never shown: [`redact`] takes them out of any text.

use std::net::IpAddr;

use http::Uri;

use crate::error::usage;

/// The proxy settings of the environment, read once.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Env {
    /// `HTTPS_PROXY`, else `https_proxy`.
    pub https: Option<String>,
    /// `HTTP_PROXY`, else `http_proxy`.
    pub http: Option<String>,
    /// `NO_PROXY`, else `no_proxy`.
    pub no_proxy: Option<String>,
}

impl Env {
    /// Reads the process environment (upper case first, as Go's net/http does).
    pub fn from_process() -> Self {
        let any = |names: [&str; 2]| {
            names
                .iter()
                .find_map(|n| std::env::var(n).ok().filter(|v| !v.trim().is_empty()))
        };
        Self {
            https: any(["HTTPS_PROXY", "https_proxy"]),
            http: any(["HTTP_PROXY", "http_proxy"]),
            no_proxy: any(["NO_PROXY", "no_proxy"]),
        }
    }
}

/// The proxy for `server`: `from_kubeconfig` (the cluster's `proxy-url`) when set, else the
/// environment's. A malformed proxy URL is a usage error that names where it came from and
/// never shows its credentials.
pub fn choose(
    from_kubeconfig: Option<&str>,
    server: &Uri,
    env: &Env,
) -> anyhow::Result<Option<Uri>> {
    if let Some(p) = from_kubeconfig.filter(|p| !p.trim().is_empty()) {
        return parse(p, "proxy-url").map(Some);
    }
    let https = server.scheme_str() != Some("http");
    let (value, name) = if https {
        (env.https.as_deref(), "HTTPS_PROXY")
    } else {
        (env.http.as_deref(), "HTTP_PROXY")
    };
    let Some(value) = value else {
        return Ok(None);
    };
    let host = server
        .host()
        .unwrap_or("")
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_ascii_lowercase();
    let port = server.port_u16().unwrap_or(if https { 443 } else { 80 });
    if is_local(&host)
        || env
            .no_proxy
            .as_deref()
            .is_some_and(|n| excluded(n, &host, port))
    {
        return Ok(None);
    }
    parse(value, name).map(Some)
}

/// Go's rule: requests to localhost and loopback addresses never use the environment's proxy.
fn is_local(host: &str) -> bool {
    host == "localhost"
        || host.ends_with(".localhost")
        || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// Whether `NO_PROXY` exempts `host:port`: `*`, an IP, a CIDR, or a domain (`example.com` and
/// `.example.com` both cover the domain and its subdomains), each optionally with `:port`.
fn excluded(list: &str, host: &str, port: u16) -> bool {
    list.split(',')
        .map(|e| e.trim().to_ascii_lowercase())
        .filter(|e| !e.is_empty())
        .any(|entry| {
            if entry == "*" {
                return true;
            }
            if let Some((net, bits)) = entry.split_once('/') {
                let (Ok(net), Ok(bits), Ok(ip)) = (
                    net.parse::<IpAddr>(),
                    bits.parse::<u8>(),
                    host.parse::<IpAddr>(),
                ) else {
                    return false;
                };
                return in_cidr(ip, net, bits);
            }
            let (name, want_port) = split_port(&entry);
            if want_port.is_some_and(|p| p != port) {
                return false;
            }
            if let (Ok(a), Ok(b)) = (name.parse::<IpAddr>(), host.parse::<IpAddr>()) {
                return a == b;
            }
            let name = name.trim_start_matches("*.").trim_start_matches('.');
            host == name || host.ends_with(&format!(".{name}"))
        })
}

fn split_port(entry: &str) -> (&str, Option<u16>) {
    // An IPv6 address has colons of its own: only `[addr]:port` carries a port.
    if let Some(rest) = entry.strip_prefix('[') {
        if let Some((addr, tail)) = rest.split_once(']') {
            return (addr, tail.strip_prefix(':').and_then(|p| p.parse().ok()));
        }
    }
    match entry.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') => match p.parse() {
            Ok(p) => (h, Some(p)),
            Err(_) => (entry, None),
        },
        _ => (entry, None),
    }
}

fn in_cidr(ip: IpAddr, net: IpAddr, bits: u8) -> bool {
    match (ip, net) {
        (IpAddr::V4(a), IpAddr::V4(n)) if bits <= 32 => {
            let mask = u32::MAX.checked_shl(32 - u32::from(bits)).unwrap_or(0);
            u32::from(a) & mask == u32::from(n) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(n)) if bits <= 128 => {
            let mask = u128::MAX.checked_shl(128 - u32::from(bits)).unwrap_or(0);
            u128::from(a) & mask == u128::from(n) & mask
        }
        _ => false,
    }
}

/// Parses a proxy URL as Go does (no scheme means `http://`); the error names its source and
/// shows the URL without credentials.
fn parse(value: &str, source: &str) -> anyhow::Result<Uri> {
    let value = value.trim();
    let full = if value.contains("://") {
        value.to_string()
    } else {
        format!("http://{value}")
    };
    let bad = |why: &str| {
        usage(
            source,
            format!(
                "{:?} is not a proxy URL ({why}): expected http://HOST:PORT, https://HOST:PORT or socks5://HOST:PORT",
                redact(value)
            ),
        )
    };
    let uri: Uri = full.parse().map_err(|_| bad("it does not parse"))?;
    if !matches!(uri.scheme_str(), Some("http" | "https" | "socks5")) {
        return Err(bad("unsupported scheme"));
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err(bad("no host"));
    }
    Ok(uri)
}

/// `text` with the credentials of every URL in it replaced by `***` (`http://u:p@h` →
/// `http://***@h`).
pub fn redact(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("://") {
        let (head, tail) = rest.split_at(i + 3);
        out.push_str(head);
        let end = tail
            .find(|c: char| c.is_whitespace() || matches!(c, '/' | '"' | '\'' | ')' | ']' | ','))
            .unwrap_or(tail.len());
        let authority = &tail[..end];
        match authority.rfind('@') {
            Some(at) => {
                out.push_str("***");
                out.push_str(&authority[at..]);
            }
            None => out.push_str(authority),
        }
        rest = &tail[end..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(https: Option<&str>, no_proxy: Option<&str>) -> Env {
        Env {
            https: https.map(String::from),
            http: None,
            no_proxy: no_proxy.map(String::from),
        }
    }

    fn pick(kc: Option<&str>, server: &str, e: &Env) -> Option<String> {
        let server: Uri = server.parse().expect("uri");
        choose(kc, &server, e)
            .expect("choose")
            .map(|u| u.to_string())
    }

    #[test]
    fn the_kubeconfig_proxy_always_wins_and_the_environment_skips_loopback() {
        let e = env(Some("http://u:p@proxy:3128"), None);
        assert_eq!(
            pick(None, "https://10.0.0.1:6443", &e).as_deref(),
            Some("http://u:p@proxy:3128/")
        );
        for local in [
            "https://127.0.0.1:6443",
            "https://localhost:6443",
            "https://[::1]:6443",
        ] {
            assert_eq!(pick(None, local, &e), None, "{local}");
            assert_eq!(
                pick(Some("socks5://127.0.0.1:1080"), local, &e).as_deref(),
                Some("socks5://127.0.0.1:1080/"),
                "{local}"
            );
        }
        assert_eq!(
            pick(None, "http://10.0.0.1:8080", &e),
            None,
            "http uses HTTP_PROXY"
        );
        assert_eq!(
            pick(None, "https://10.0.0.1", &env(Some("proxy:3128"), None)).as_deref(),
            Some("http://proxy:3128/")
        );
    }

    #[test]
    fn no_proxy_names_hosts_domains_ips_cidrs_and_ports() {
        let cases = [
            ("*", "https://api.example.com", true),
            ("example.com", "https://api.example.com", true),
            (".example.com", "https://example.com", true),
            ("*.example.com", "https://a.b.example.com", true),
            ("example.com", "https://badexample.com", false),
            ("10.0.0.0/8", "https://10.1.2.3:6443", true),
            ("10.0.0.0/8", "https://11.1.2.3:6443", false),
            ("fd00::/8", "https://[fd00::5]:6443", true),
            ("10.1.2.3", "https://10.1.2.3:6443", true),
            ("10.1.2.3:443", "https://10.1.2.3:6443", false),
            ("10.1.2.3:6443", "https://10.1.2.3:6443", true),
            ("[fd00::5]:6443", "https://[fd00::5]:6443", true),
            (
                " other.org , API.example.com ",
                "https://api.example.com",
                true,
            ),
        ];
        for (list, server, skipped) in cases {
            let got = pick(None, server, &env(Some("http://proxy:3128"), Some(list)));
            assert_eq!(got.is_none(), skipped, "NO_PROXY={list:?} {server}");
        }
    }

    #[test]
    fn a_bad_proxy_url_names_its_source_and_never_its_password() {
        let server: Uri = "https://10.0.0.1".parse().expect("uri");
        for (kc, e, source) in [
            (
                Some("ftp://u:hunter2@proxy:21"),
                Env::default(),
                "proxy-url",
            ),
            (None, env(Some("http://u:hunter2@"), None), "HTTPS_PROXY"),
        ] {
            let err = choose(kc, &server, &e).expect_err("bad").to_string();
            assert!(err.starts_with(source), "{err}");
            assert!(!err.contains("hunter2"), "{err}");
            assert_eq!(
                crate::error::exit_code(&choose(kc, &server, &e).expect_err("bad")),
                2
            );
        }
    }

    #[test]
    fn redact_takes_credentials_out_of_every_url() {
        assert_eq!(
            redact("configured proxy http://u:secret@127.0.0.1:3128/ failed; see https://h/x"),
            "configured proxy http://***@127.0.0.1:3128/ failed; see https://h/x"
        );
        assert_eq!(redact("\"socks5://a@b:1\""), "\"socks5://***@b:1\"");
        assert_eq!(redact("no url here"), "no url here");
    }
}
