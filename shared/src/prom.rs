//! Instant queries against Prometheus's HTTP API (`GET /api/v1/query`), over the same hyper and
//! rustls stack the Kubernetes client uses (a `kube::Client` pointed at Prometheus), with a
//! bearer token or basic auth that is never shown, and a CA file for TLS.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{anyhow, Result};
use base64::Engine as _;
use clap::Args as ClapArgs;
use http::{HeaderName, HeaderValue, Request, Uri};
use kube::{Client, Config};
use serde_json::Value;

use crate::error::usage;

/// The environment variable that may hold the basic-auth password.
pub const PASSWORD_ENV: &str = "MESH_PROMETHEUS_PASSWORD";

/// How long one query may take before it counts as failed.
const QUERY_TIMEOUT: Duration = Duration::from_secs(10);

/// The Prometheus flags, shared by the walk and `status --traffic`.
#[derive(Debug, Clone, Default, ClapArgs)]
pub struct PromArgs {
    /// Prometheus base URL; repeat it in --context order for one per cluster
    #[arg(long = "prometheus", value_name = "URL", global = true, action = clap::ArgAction::Append)]
    pub urls: Vec<String>,

    /// Bearer token for Prometheus (prefer --prometheus-token-file: a flag shows in ps)
    #[arg(long, value_name = "TOKEN", global = true)]
    pub prometheus_token: Option<String>,

    /// File holding the bearer token for Prometheus
    #[arg(long, value_name = "PATH", global = true)]
    pub prometheus_token_file: Option<PathBuf>,

    /// Basic-auth user for Prometheus; the password comes from --prometheus-password-file or $MESH_PROMETHEUS_PASSWORD
    #[arg(long, value_name = "USER", global = true)]
    pub prometheus_user: Option<String>,

    /// File holding the basic-auth password for Prometheus
    #[arg(long, value_name = "PATH", global = true)]
    pub prometheus_password_file: Option<PathBuf>,

    /// CA bundle (PEM) that signed Prometheus's TLS certificate
    #[arg(long, value_name = "PATH", global = true)]
    pub prometheus_ca_file: Option<PathBuf>,
}

/// A credential kept out of every `Debug` and `Display`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// How to authenticate to Prometheus.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Auth {
    /// No credentials.
    None,
    /// `Authorization: Bearer`.
    Bearer(Secret),
    /// `Authorization: Basic`.
    Basic {
        /// The user.
        user: String,
        /// The password.
        password: Secret,
    },
}

/// One Prometheus, validated: where, how to authenticate, which CA to trust.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// The base URL (no credentials in it).
    pub url: Uri,
    /// Credentials.
    pub auth: Auth,
    /// CA bundle for TLS.
    pub ca_file: Option<PathBuf>,
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.url.to_string().trim_end_matches('/'))
    }
}

fn read_secret(flag: &str, path: &Path) -> Result<String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| usage(flag, format!("cannot read {}: {e}", path.display())))?;
    let text = text.trim().to_string();
    if text.is_empty() {
        return Err(usage(flag, format!("{} is empty", path.display())));
    }
    Ok(text)
}

/// Parses one `--prometheus` value: an http or https URL with a host and no credentials.
pub fn parse_url(s: &str) -> Result<Uri> {
    const ACCEPTED: &str =
        "expected an http:// or https:// URL such as http://prometheus.istio-system:9090";
    if s.contains('@') {
        // `user:password@`, possibly in a malformed URL: the text is never repeated.
        return Err(usage(
            "--prometheus",
            "credentials in the URL are not accepted: use --prometheus-user with --prometheus-password-file, or --prometheus-token-file",
        ));
    }
    let uri: Uri = s
        .trim()
        .parse()
        .map_err(|_| usage("--prometheus", format!("{s:?} is not a URL: {ACCEPTED}")))?;
    let scheme_ok = matches!(uri.scheme_str(), Some("http" | "https"));
    if uri.authority().is_none() || !scheme_ok {
        return Err(usage(
            "--prometheus",
            format!("{s:?} is not a URL: {ACCEPTED}"),
        ));
    }
    if uri.query().is_some() {
        return Err(usage(
            "--prometheus",
            format!("{s:?} has a query string: give the base URL only"),
        ));
    }
    Ok(uri)
}

impl PromArgs {
    /// Validates the flags (reading the credential files) into one [`Endpoint`] per URL.
    pub fn endpoints(&self) -> Result<Vec<Endpoint>> {
        let has_other = self.prometheus_token.is_some()
            || self.prometheus_token_file.is_some()
            || self.prometheus_user.is_some()
            || self.prometheus_password_file.is_some()
            || self.prometheus_ca_file.is_some();
        if self.urls.is_empty() {
            if has_other {
                return Err(usage(
                    "--prometheus",
                    "missing: the Prometheus credential and CA flags need --prometheus URL",
                ));
            }
            return Ok(Vec::new());
        }
        let token = match (&self.prometheus_token, &self.prometheus_token_file) {
            (Some(_), Some(_)) => {
                return Err(usage(
                    "--prometheus-token",
                    "give either --prometheus-token or --prometheus-token-file, not both",
                ))
            }
            (Some(t), None) if t.trim().is_empty() => {
                return Err(usage("--prometheus-token", "is empty"))
            }
            (Some(t), None) => Some(t.trim().to_string()),
            (None, Some(p)) => Some(read_secret("--prometheus-token-file", p)?),
            (None, None) => None,
        };
        let password = match &self.prometheus_password_file {
            Some(p) => Some(read_secret("--prometheus-password-file", p)?),
            None => std::env::var(PASSWORD_ENV).ok().filter(|v| !v.is_empty()),
        };
        let auth = match (token, &self.prometheus_user, password) {
            (Some(_), Some(_), _) => {
                return Err(usage(
                    "--prometheus-user",
                    "give a bearer token or basic auth, not both",
                ))
            }
            (Some(t), None, _) => Auth::Bearer(Secret(t)),
            (None, Some(user), Some(password)) => {
                if user.is_empty() || user.contains(':') {
                    return Err(usage(
                        "--prometheus-user",
                        "must be non-empty and without ':'",
                    ));
                }
                Auth::Basic {
                    user: user.clone(),
                    password: Secret(password),
                }
            }
            (None, Some(_), None) => {
                return Err(usage(
                    "--prometheus-user",
                    format!("needs a password: --prometheus-password-file PATH or ${PASSWORD_ENV}"),
                ))
            }
            (None, None, _) if self.prometheus_password_file.is_some() => {
                return Err(usage(
                    "--prometheus-password-file",
                    "needs --prometheus-user",
                ))
            }
            (None, None, _) => Auth::None,
        };
        if let Some(ca) = &self.prometheus_ca_file {
            if !ca.is_file() {
                return Err(usage(
                    "--prometheus-ca-file",
                    format!("{} is not a readable file", ca.display()),
                ));
            }
        }
        self.urls
            .iter()
            .map(|u| {
                Ok(Endpoint {
                    url: parse_url(u)?,
                    auth: auth.clone(),
                    ca_file: self.prometheus_ca_file.clone(),
                })
            })
            .collect()
    }
}

/// One series of an instant vector: its labels and value.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// The series labels.
    pub labels: serde_json::Map<String, Value>,
    /// The value (NaN and infinities as Prometheus sends them).
    pub value: f64,
}

/// A connected Prometheus.
#[derive(Clone)]
pub struct Prometheus {
    client: Client,
    endpoint: Endpoint,
}

impl fmt::Debug for Prometheus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Prometheus({})", self.endpoint)
    }
}

/// Percent-encodes a query parameter value (RFC 3986 unreserved characters pass).
fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

impl Prometheus {
    /// A client for `endpoint`; connects lazily, on the first query.
    pub fn connect(endpoint: &Endpoint) -> Result<Self> {
        let mut config = Config::new(endpoint.url.clone());
        config.connect_timeout = Some(QUERY_TIMEOUT);
        config.read_timeout = Some(QUERY_TIMEOUT);
        config.write_timeout = Some(QUERY_TIMEOUT);
        // A failed query is a failed check; retrying hides it for no gain at this cadence.
        config.default_retry = false;
        config.root_cert_file.clone_from(&endpoint.ca_file);
        config.proxy_url =
            crate::proxy::choose(None, &endpoint.url, &crate::proxy::Env::from_process())?;
        let header = match &endpoint.auth {
            Auth::None => None,
            Auth::Bearer(t) => Some(format!("Bearer {}", t.0)),
            Auth::Basic { user, password } => Some(format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!("{user}:{}", password.0))
            )),
        };
        if let Some(h) = header {
            let mut value = HeaderValue::from_str(&h).map_err(|_| {
                anyhow!("the Prometheus credentials hold characters a header cannot carry")
            })?;
            value.set_sensitive(true);
            config
                .headers
                .push((HeaderName::from_static("authorization"), value));
        }
        let client = Client::try_from(config).map_err(|e| {
            anyhow!(
                "building a client for Prometheus at {endpoint}: {}",
                crate::error::one_line(&e.into())
            )
        })?;
        Ok(Self {
            client,
            endpoint: endpoint.clone(),
        })
    }

    /// The endpoint, for messages.
    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// Runs an instant query; the samples of the vector (a scalar is one unlabelled sample).
    pub async fn query(&self, promql: &str) -> Result<Vec<Sample>> {
        let what = || format!("query Prometheus at {}", self.endpoint);
        let req = Request::get(format!("/api/v1/query?query={}", encode(promql)))
            .body(kube::client::Body::empty())
            .map_err(|e| anyhow!("{}: {e}", what()))?;
        let resp = self
            .client
            .send(req)
            .await
            .map_err(|e| anyhow!("{}: {}", what(), crate::error::one_line(&e.into())))?;
        let status = resp.status();
        let body = resp.into_body().collect_bytes().await.map_err(|e| {
            anyhow!(
                "{}: reading the answer: {}",
                what(),
                crate::error::one_line(&e.into())
            )
        })?;
        parse_answer(status, &body).map_err(|e| anyhow!("{}: {e}", what()))
    }

    /// The value of a query that yields at most one series; `None` when it yields none.
    pub async fn value(&self, promql: &str) -> Result<Option<f64>> {
        Ok(self.query(promql).await?.first().map(|s| s.value))
    }
}

/// Reads an answer of `/api/v1/query`.
pub fn parse_answer(status: http::StatusCode, body: &[u8]) -> Result<Vec<Sample>> {
    let json: Option<Value> = serde_json::from_slice(body).ok();
    let Some(json) = json else {
        return Err(anyhow!(
            "answered HTTP {status} with a body that is not Prometheus JSON{}",
            if status.is_success() {
                ": is the URL Prometheus's base URL?"
            } else {
                ""
            }
        ));
    };
    if json["status"] != "success" {
        let kind = json["errorType"].as_str().unwrap_or("error");
        let msg = json["error"].as_str().unwrap_or("no message");
        return Err(anyhow!("answered HTTP {status}, {kind}: {msg}"));
    }
    let data = &json["data"];
    let num = |v: &Value| -> Result<f64> {
        v.get(1)
            .and_then(Value::as_str)
            .and_then(|s| s.parse::<f64>().ok())
            .ok_or_else(|| anyhow!("answered a sample that is not [time, \"number\"]: {v}"))
    };
    match data["resultType"].as_str() {
        Some("vector") => data["result"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default()
            .iter()
            .map(|s| {
                Ok(Sample {
                    labels: s["metric"].as_object().cloned().unwrap_or_default(),
                    value: num(&s["value"])?,
                })
            })
            .collect(),
        Some("scalar") => Ok(vec![Sample {
            labels: serde_json::Map::new(),
            value: num(&data["result"])?,
        }]),
        other => Err(anyhow!(
            "answered result type {} where an instant vector was expected",
            other.unwrap_or("none")
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(urls: &[&str]) -> PromArgs {
        PromArgs {
            urls: urls.iter().map(|s| s.to_string()).collect(),
            ..PromArgs::default()
        }
    }

    #[test]
    fn urls_are_checked_and_credentials_never_echoed() {
        assert!(args(&["http://127.0.0.1:9090"]).endpoints().is_ok());
        let e = args(&["ftp://x"]).endpoints().unwrap_err().to_string();
        assert!(
            e.starts_with("--prometheus: \"ftp://x\" is not a URL"),
            "{e}"
        );
        let e = args(&["http://me:hunter2@prom:9090"])
            .endpoints()
            .unwrap_err()
            .to_string();
        assert!(!e.contains("hunter2"), "{e}");
        let e = PromArgs {
            prometheus_user: Some("u".into()),
            ..args(&["http://p:9090"])
        }
        .endpoints()
        .unwrap_err()
        .to_string();
        assert!(e.starts_with("--prometheus-user: needs a password"), "{e}");
    }

    #[test]
    fn the_token_is_redacted_in_debug() {
        let eps = PromArgs {
            prometheus_token: Some("s3cret".into()),
            ..args(&["https://p:9090"])
        }
        .endpoints()
        .expect("valid");
        assert_eq!(eps[0].auth, Auth::Bearer(Secret("s3cret".into())));
        assert!(!format!("{eps:?}").contains("s3cret"));
    }

    #[test]
    fn answers_parse_and_errors_say_what_prometheus_said() {
        let ok = br#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{"le":"5"},"value":[1,"0.25"]}]}}"#;
        let s = parse_answer(http::StatusCode::OK, ok).expect("vector");
        assert_eq!(s[0].value, 0.25);
        assert_eq!(s[0].labels["le"], "5");
        let bad = br#"{"status":"error","errorType":"bad_data","error":"parse error"}"#;
        let e = parse_answer(http::StatusCode::BAD_REQUEST, bad).unwrap_err();
        assert_eq!(
            e.to_string(),
            "answered HTTP 400 Bad Request, bad_data: parse error"
        );
        let e = parse_answer(http::StatusCode::OK, b"<html>").unwrap_err();
        assert!(e.to_string().contains("is the URL Prometheus's base URL?"));
    }

    #[test]
    fn encoding_keeps_promql_intact() {
        assert_eq!(encode("a{b=\"c\"}[5s]"), "a%7Bb%3D%22c%22%7D%5B5s%5D");
    }
}
