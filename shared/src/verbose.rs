//! kubectl's `-v` levels on stderr, in klog's line format: 4 the decisions a command makes, 6
//! one line per API request (method, URL, status, latency), 7 with the request headers, 8 with
//! the response headers and both bodies, 9 and 10 with longer bodies.
//!
//! Nothing secret is printed at any level: `Authorization` is masked as kubectl masks it,
//! `Proxy-Authorization` and cookies entirely; bodies lose Secret `data`/`stringData`, a
//! TokenRequest's `status.token`, credential fields, JWTs and kubeconfig-like text, and the
//! kubeconfig user's own token or password wherever it appears, before they are truncated as
//! client-go truncates them.

use std::future::Future;
use std::io::Write as _;
use std::pin::Pin;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use http::{HeaderMap, Request, Response};
use http_body_util::BodyExt as _;
use kube::client::{Body, ClientBuilder, ConfigExt as _, DynBody};
use kube::{Client, Config};
use secrecy::ExposeSecret as _;
use serde_json::Value;
use tower::{BoxError, Layer, Service};

static LEVEL: AtomicU8 = AtomicU8::new(0);

/// Sets the process's verbosity (`-v`), once, right after parsing.
pub fn set_level(level: u8) {
    LEVEL.store(level, Ordering::Relaxed);
}

/// The verbosity `-v` set (0 without it).
pub fn level() -> u8 {
    LEVEL.load(Ordering::Relaxed)
}

/// Whether lines of `level` are printed.
pub fn enabled(level: u8) -> bool {
    self::level() >= level
}

/// Writes one klog-style line, `I1205 06:16:00.051670   17689 file.rs:42] message`, to stderr.
#[doc(hidden)]
pub fn emit(file: &str, line: u32, msg: std::fmt::Arguments<'_>) {
    let file = file.rsplit(['/', '\\']).next().unwrap_or(file);
    let now = jiff::Timestamp::now().strftime("%m%d %H:%M:%S%.6f");
    let pid = std::process::id();
    let _ = writeln!(
        std::io::stderr().lock(),
        "I{now} {pid:>7} {file}:{line}] {msg}"
    );
}

/// `vlog!(4, "...", args)`: one stderr line when `-v` is at least the level.
#[macro_export]
macro_rules! vlog {
    ($level:expr, $($arg:tt)+) => {
        if $crate::verbose::enabled($level) {
            $crate::verbose::emit(file!(), line!(), format_args!($($arg)+));
        }
    };
}

/// What stands in for a secret value in a body.
pub const REDACTED: &str = "<redacted>";

/// Object keys whose string values are credentials wherever they appear in a body.
const CREDENTIAL_KEYS: [&str; 9] = [
    "token",
    "password",
    "client-key-data",
    "id-token",
    "refresh-token",
    "access-token",
    "client-secret",
    "bearertoken",
    "privatekey",
];

/// Takes secrets out of what is logged.
#[derive(Debug, Default, Clone)]
pub struct Redactor {
    /// The kubeconfig user's credentials, masked wherever they appear.
    known: Vec<String>,
}

impl Redactor {
    /// Knows the credentials of a client configuration (its token, its token file's content,
    /// its password), so they are masked even where no rule would find them.
    pub fn for_config(config: &Config) -> Self {
        let a = &config.auth_info;
        let mut known: Vec<String> = Vec::new();
        if let Some(t) = &a.token {
            known.push(t.expose_secret().to_string());
        }
        if let Some(p) = &a.password {
            known.push(p.expose_secret().to_string());
        }
        if let Some(text) = a
            .token_file
            .as_ref()
            .and_then(|f| std::fs::read_to_string(f).ok())
        {
            known.push(text.trim().to_string());
        }
        // Too short a value would mask innocent text; no real credential is this short.
        known.retain(|k| k.len() >= 6);
        Self { known }
    }

    /// Any text: the known credentials and JWTs masked.
    pub fn text(&self, text: &str) -> String {
        let mut out = mask_jwts(text);
        for k in &self.known {
            if out.contains(k.as_str()) {
                out = out.replace(k.as_str(), "<masked>");
            }
        }
        out
    }

    /// A header value as kubectl prints it: `Authorization` as `Bearer <masked>`, and (beyond
    /// kubectl) `Proxy-Authorization` and cookies as `<masked>`.
    pub fn header(&self, name: &str, value: &[u8]) -> String {
        let value = String::from_utf8_lossy(value);
        match name.to_ascii_lowercase().as_str() {
            "authorization" => mask_authorization(&value),
            "proxy-authorization" | "cookie" | "set-cookie" => "<masked>".to_string(),
            _ => self.text(&value),
        }
    }

    /// A body, redacted, then truncated for `level` as client-go truncates: 1024 bytes at 8,
    /// 10240 at 9, whole from 10.
    pub fn body(&self, bytes: &[u8], level: u8) -> String {
        let text = match std::str::from_utf8(bytes) {
            Ok(t) if !t.bytes().any(|b| b < 0x0a) => t,
            // The plugins speak JSON; anything else binary is not shown rather than dumped.
            _ => return format!("[{} bytes of binary data, not shown]", bytes.len()),
        };
        let text = match serde_json::from_str::<Value>(text) {
            Ok(mut v) => {
                if redact_json(&mut v, false) {
                    v.to_string()
                } else {
                    text.to_string()
                }
            }
            Err(_) => text.to_string(),
        };
        // Servers end their JSON with a newline; kubectl's log line shows none.
        truncate(self.text(&text).trim_end_matches('\n'), level)
    }
}

/// client-go's `maskValue`: the scheme of a known kind stays, the credential goes.
fn mask_authorization(value: &str) -> String {
    if value.is_empty() {
        return String::new();
    }
    let scheme = value.split(' ').next().unwrap_or(value);
    if !matches!(
        scheme.to_ascii_lowercase().as_str(),
        "bearer" | "basic" | "negotiate"
    ) {
        return "<masked>".to_string();
    }
    if value.len() > scheme.len() + 1 {
        format!("{scheme} <masked>")
    } else {
        scheme.to_string()
    }
}

/// Redacts in place; true when anything changed. `secret` marks the items of a SecretList,
/// which carry no `kind` of their own.
fn redact_json(v: &mut Value, secret: bool) -> bool {
    let mut changed = false;
    match v {
        Value::Object(map) => {
            let kind = map.get("kind").and_then(Value::as_str).map(String::from);
            if secret || kind.as_deref() == Some("Secret") {
                for field in ["data", "stringData"] {
                    if let Some(Value::Object(data)) = map.get_mut(field) {
                        for value in data.values_mut() {
                            *value = Value::String(REDACTED.into());
                            changed = true;
                        }
                    }
                }
                // `kubectl apply` keeps the whole Secret, data and all, in an annotation.
                if let Some(Value::Object(ann)) = map
                    .get_mut("metadata")
                    .and_then(|m| m.get_mut("annotations"))
                {
                    if let Some(last) =
                        ann.get_mut("kubectl.kubernetes.io/last-applied-configuration")
                    {
                        *last = Value::String(REDACTED.into());
                        changed = true;
                    }
                }
            }
            let list_of_secrets = kind.as_deref() == Some("SecretList");
            for (key, child) in map.iter_mut() {
                let lower = key.to_ascii_lowercase();
                if CREDENTIAL_KEYS.contains(&lower.as_str()) && child.is_string() {
                    *child = Value::String(REDACTED.into());
                    changed = true;
                } else {
                    changed |= redact_json(child, list_of_secrets && key == "items");
                }
            }
        }
        Value::Array(items) => {
            for item in items {
                changed |= redact_json(item, secret);
            }
        }
        Value::String(s) if holds_credentials(s) => {
            *s = REDACTED.into();
            changed = true;
        }
        _ => {}
    }
    changed
}

/// Text that carries credentials the way a kubeconfig does (`token: ...` lines and the like),
/// e.g. a kubeconfig kept in a ConfigMap.
fn holds_credentials(s: &str) -> bool {
    s.contains('\n')
        && s.lines().any(|l| {
            let l = l.trim_start().trim_start_matches("- ").to_ascii_lowercase();
            CREDENTIAL_KEYS
                .iter()
                .any(|k| l.starts_with(&format!("{k}:")) && l.len() > k.len() + 1)
        })
}

/// Every JWT (`eyJ...`.`...`.`...`: service account tokens, OIDC tokens) replaced by `<masked>`.
fn mask_jwts(text: &str) -> String {
    let b64 = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_';
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("eyJ") {
        out.push_str(&rest[..i]);
        let tail = &rest[i..];
        // Three base64url segments joined by dots, the last one possibly empty.
        let mut end = 0;
        let mut dots = 0;
        for (j, c) in tail.char_indices() {
            if b64(c) {
                end = j + c.len_utf8();
            } else if c == '.' && dots < 2 {
                dots += 1;
                end = j + 1;
            } else {
                break;
            }
        }
        if dots == 2 && end > 10 {
            out.push_str("<masked>");
            rest = &tail[end..];
        } else {
            out.push_str("eyJ");
            rest = &tail[3..];
        }
    }
    out.push_str(rest);
    out
}

/// client-go's `truncateBody`: the first 1024 bytes at level 8, 10240 at 9, all from 10, and
/// how many were left out.
fn truncate(text: &str, level: u8) -> String {
    let max = match level {
        0..=8 => 1024,
        9 => 10240,
        _ => return text.to_string(),
    };
    if text.len() <= max {
        return text.to_string();
    }
    let mut cut = max;
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{} [truncated {} chars]", &text[..cut], text.len() - cut)
}

/// A client whose every request is logged from the inside of kube's stack, after the
/// `Authorization` and impersonation headers are set and the URL is whole, as client-go's
/// debugging round tripper sees them: kube's stack is built without the credentials,
/// impersonation and retries, and those layers are put back outside the logging one.
pub fn client(config: Config) -> Result<Client, kube::Error> {
    let redactor = Arc::new(Redactor::for_config(&config));
    let auth = config.auth_layer()?;
    let headers = config.extra_headers_layer()?;
    let base = config.base_uri_layer();
    let retry = config
        .default_retry
        .then(|| tower::retry::RetryLayer::new(kube::client::retry::RetryPolicy::server_retry()));
    let mut inner = config;
    inner.default_retry = false;
    inner.headers.clear();
    let a = &mut inner.auth_info;
    a.impersonate = None;
    a.impersonate_uid = None;
    a.impersonate_groups = None;
    a.impersonate_user_extra = None;
    if auth.is_some() {
        // The token (or password, or exec plugin) is added by `auth` above the log instead.
        // A client certificate stays: it is TLS, below HTTP.
        a.token = None;
        a.token_file = None;
        a.username = None;
        a.password = None;
        a.auth_provider = None;
        a.exec = None;
    }
    // kube's base-URI layer below keeps a whole URL as it is (it joins only the path).
    Ok(ClientBuilder::try_from(inner)?
        .with_layer(&ShareLayer)
        .with_layer(&LogLayer(redactor))
        .with_layer(&headers)
        .with_layer(&tower::util::option_layer(auth))
        .with_layer(&tower::util::option_layer(retry))
        .with_layer(&base)
        .build())
}

/// Makes kube's boxed (not clonable) stack clonable, as the auth and retry layers need: calls
/// are made under a lock, and return their own futures, so they do not wait on each other.
struct ShareLayer;

impl<S> Layer<S> for ShareLayer {
    type Service = Shared<S>;
    fn layer(&self, inner: S) -> Shared<S> {
        Shared(Arc::new(Mutex::new(inner)))
    }
}

struct Shared<S>(Arc<Mutex<S>>);

impl<S> Clone for Shared<S> {
    fn clone(&self) -> Self {
        Shared(self.0.clone())
    }
}

impl<S: Service<R>, R> Service<R> for Shared<S> {
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .poll_ready(cx)
    }

    fn call(&mut self, req: R) -> S::Future {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .call(req)
    }
}

struct LogLayer(Arc<Redactor>);

impl<S> Layer<S> for LogLayer {
    type Service = Log<S>;
    fn layer(&self, inner: S) -> Log<S> {
        Log {
            inner,
            redactor: self.0.clone(),
        }
    }
}

#[derive(Clone)]
struct Log<S> {
    inner: S,
    redactor: Arc<Redactor>,
}

type Answer = Result<Response<Body>, BoxError>;

impl<S> Service<Request<Body>> for Log<S>
where
    S: Service<Request<Body>, Response = Response<Box<DynBody>>>,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
{
    type Response = Response<Body>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Answer> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        let level = level();
        let r = self.redactor.clone();
        let method = req.method().to_string();
        let url = r.text(&req.uri().to_string());
        let request_headers = headers(&r, req.headers());
        // The plugins' bodies are whole in memory, so a copy costs nothing.
        let request_body = (level >= 8).then(|| req.body().try_clone()).flatten();
        let start = Instant::now();
        let answer = self.inner.call(req);
        Box::pin(async move {
            if let Some(body) = request_body {
                let bytes = body.collect_bytes().await.unwrap_or_default();
                crate::vlog!(8, "\"Request Body\" body={:?}", r.body(&bytes, level));
            }
            if level >= 7 {
                crate::vlog!(7, "{method} {url}");
                crate::vlog!(7, "Request Headers:");
                for (k, v) in &request_headers {
                    crate::vlog!(7, "    {k}: {v}");
                }
            }
            let response = match answer.await {
                Ok(r) => r,
                Err(e) => {
                    let ms = start.elapsed().as_millis();
                    // client-go's line for a request without an answer: an empty status.
                    if level >= 7 {
                        crate::vlog!(7, "Response Status:  in {ms} milliseconds");
                    } else {
                        crate::vlog!(6, "{method} {url}  in {ms} milliseconds");
                    }
                    return Err(e.into());
                }
            };
            let ms = start.elapsed().as_millis();
            let code = response.status();
            let status = format!(
                "{} {}",
                code.as_str(),
                code.canonical_reason().unwrap_or_default()
            );
            let status = status.trim_end();
            if level >= 7 {
                crate::vlog!(7, "Response Status: {status} in {ms} milliseconds");
            } else {
                crate::vlog!(6, "{method} {url} {status} in {ms} milliseconds");
            }
            if level >= 8 {
                crate::vlog!(8, "Response Headers:");
                for (k, v) in headers(&r, response.headers()) {
                    crate::vlog!(8, "    {k}: {v}");
                }
            }
            let (parts, body) = response.into_parts();
            let bytes: Bytes = body.collect().await?.to_bytes();
            crate::vlog!(8, "\"Response Body\" body={:?}", r.body(&bytes, level));
            Ok(Response::from_parts(parts, Body::from(bytes)))
        })
    }
}

/// Header names and masked values, in the order sent.
fn headers(r: &Redactor, map: &HeaderMap) -> Vec<(String, String)> {
    map.iter()
        .map(|(k, v)| (canonical(k.as_str()), r.header(k.as_str(), v.as_bytes())))
        .collect()
}

/// `content-type` as Go prints it: `Content-Type`.
fn canonical(name: &str) -> String {
    name.split('-')
        .map(|part| {
            let mut c = part.chars();
            match c.next() {
                Some(first) => first.to_ascii_uppercase().to_string() + c.as_str(),
                None => String::new(),
            }
        })
        .collect::<Vec<_>>()
        .join("-")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const JWT: &str = "eyJhbGciOiJSUzI1NiIsImtpZCI6IjEifQ.eyJzdWIiOiJzeXN0ZW06c2VydmljZWFjY291bnQifQ.c2lnbmF0dXJl";

    fn redactor() -> Redactor {
        Redactor {
            known: vec!["kubeconfig-bearer-0123".into()],
        }
    }

    #[test]
    fn authorization_is_masked_as_client_go_masks_it() {
        let r = redactor();
        assert_eq!(r.header("Authorization", b"Bearer abc"), "Bearer <masked>");
        assert_eq!(
            r.header("authorization", b"Basic dXNlcjpw"),
            "Basic <masked>"
        );
        assert_eq!(r.header("Authorization", b"Bearer"), "Bearer");
        assert_eq!(r.header("Authorization", b"Custom abc"), "<masked>");
        assert_eq!(r.header("Proxy-Authorization", b"Basic x"), "<masked>");
        assert_eq!(r.header("Cookie", b"session=x"), "<masked>");
        assert_eq!(r.header("Accept", b"application/json"), "application/json");
        assert_eq!(
            r.header("X-Echo", b"kubeconfig-bearer-0123"),
            "<masked>",
            "a known credential in any header"
        );
    }

    #[test]
    fn secret_data_tokens_and_credentials_leave_bodies() {
        let r = redactor();
        let secret = json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "s", "annotations": {
                "kubectl.kubernetes.io/last-applied-configuration": "{\"data\":{\"k\":\"c2VjcmV0\"}}"}},
            "data": {"k": "c2VjcmV0"}, "stringData": {"p": "plain-secret"}
        });
        let list = json!({"kind": "SecretList", "items": [{"metadata": {"name": "a"}, "data": {"k": "c2VjcmV0"}}]});
        let token =
            json!({"kind": "TokenRequest", "status": {"token": JWT, "expirationTimestamp": "x"}});
        let kubeconfig = json!({"kind": "ConfigMap", "data": {
            "config": "users:\n- name: u\n  user:\n    token: opaque-token-value\n"}});
        let known =
            json!({"kind": "ConfigMap", "data": {"note": "the kubeconfig-bearer-0123 leaked"}});
        for body in [secret, list, token, kubeconfig, known] {
            let out = r.body(body.to_string().as_bytes(), 8);
            for bad in [
                "c2VjcmV0",
                "plain-secret",
                JWT,
                "opaque-token-value",
                "kubeconfig-bearer-0123",
            ] {
                assert!(!out.contains(bad), "{bad} in {out}");
            }
        }
        let token = json!({"kind": "TokenRequest", "status": {"token": "opaque"}});
        let out = r.body(token.to_string().as_bytes(), 8);
        assert!(out.contains(r#""token":"<redacted>""#), "{out}");
    }

    #[test]
    fn ordinary_bodies_are_printed_as_sent() {
        let r = redactor();
        let text = r#"{"kind":"Service","metadata":{"name":"x"},"spec":{"ports":[{"port":80}]}}"#;
        assert_eq!(r.body(text.as_bytes(), 8), text);
        assert_eq!(r.body(b"", 8), "");
        assert_eq!(r.body(b"404 page not found", 8), "404 page not found");
        assert_eq!(r.body(&[0, 1, 2], 8), "[3 bytes of binary data, not shown]");
    }

    #[test]
    fn bodies_are_truncated_as_client_go_truncates_them() {
        let long = "a".repeat(2000);
        assert_eq!(
            truncate(&long, 8),
            format!("{} [truncated 976 chars]", &long[..1024])
        );
        assert_eq!(truncate(&long, 9), long);
        assert_eq!(
            truncate(&"b".repeat(20000), 9).len(),
            10240 + " [truncated 9760 chars]".len()
        );
        assert_eq!(truncate(&long, 10), long);
        // Never inside a character.
        let wide = "é".repeat(600);
        assert!(truncate(&wide, 8).starts_with(&"é".repeat(512)));
    }

    #[test]
    fn jwts_are_masked_in_any_text() {
        assert_eq!(mask_jwts(&format!("token {JWT} end")), "token <masked> end");
        assert_eq!(mask_jwts("eyJ alone, eyJx.y"), "eyJ alone, eyJx.y");
    }

    #[test]
    fn header_names_are_canonical() {
        assert_eq!(canonical("content-type"), "Content-Type");
        assert_eq!(canonical("impersonate-user"), "Impersonate-User");
    }

    #[test]
    fn klog_timestamps_have_microseconds() {
        let t: jiff::Timestamp = "2026-12-05T06:16:00.05167Z".parse().expect("ts");
        assert_eq!(
            t.strftime("%m%d %H:%M:%S%.6f").to_string(),
            "1205 06:16:00.051670"
        );
    }
}
