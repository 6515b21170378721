//! The VM's `istio-token`: a TokenRequest for the group's ServiceAccount, audience `istio-ca`.
//!
//! The token is a credential: it never reaches stdout, stderr or a `Debug` print; only its
//! expiry is shown.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use base64::Engine as _;
use serde_json::{json, Value};

use crate::duration::HumanDuration;

/// The audience istiod's CA accepts.
pub const AUDIENCE: &str = "istio-ca";
/// The shortest lifetime the API server grants.
pub const MIN_SECONDS: u64 = 600;

/// `--token-duration`: at least 10 minutes, as the API server requires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenDuration(pub Duration);

impl Default for TokenDuration {
    fn default() -> Self {
        TokenDuration(Duration::from_secs(3600))
    }
}

impl FromStr for TokenDuration {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let d = s.parse::<HumanDuration>()?.0;
        if d.as_secs() < MIN_SECONDS {
            return Err(format!(
                "token duration {s:?} is too short: the API server grants at least 10m"
            ));
        }
        if d.as_secs() > u64::from(u32::MAX) {
            return Err(format!("token duration {s:?} is too long"));
        }
        Ok(TokenDuration(d))
    }
}

impl fmt::Display for TokenDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        HumanDuration(self.0).fmt(f)
    }
}

/// The TokenRequest body.
pub fn request(namespace: &str, service_account: &str, lifetime: TokenDuration) -> Value {
    json!({
        "apiVersion": "authentication.k8s.io/v1",
        "kind": "TokenRequest",
        "metadata": {"name": service_account, "namespace": namespace},
        "spec": {"audiences": [AUDIENCE], "expirationSeconds": lifetime.0.as_secs()},
    })
}

/// A minted token and when it expires.
#[derive(Clone, PartialEq, Eq)]
pub struct Minted {
    /// The token itself: write it to the file, never print it.
    pub token: String,
    /// `status.expirationTimestamp` (RFC 3339).
    pub expires: String,
}

impl fmt::Debug for Minted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Minted")
            .field("token", &"<redacted>")
            .field("expires", &self.expires)
            .finish()
    }
}

/// Reads the TokenRequest the server answered.
pub fn from_response(v: &Value) -> Result<Minted, String> {
    let token = v
        .pointer("/status/token")
        .and_then(Value::as_str)
        .filter(|t| !t.is_empty())
        .ok_or("the TokenRequest answer has no status.token")?;
    let expires = v
        .pointer("/status/expirationTimestamp")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    Ok(Minted {
        token: token.to_string(),
        expires,
    })
}

/// The `exp` claim of a JWT (seconds since the epoch), without checking the signature: only to
/// tell the user when the token on disk expires.
pub fn jwt_expiry(token: &str) -> Option<i64> {
    let payload = token.trim().split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    let claims: Value = serde_json::from_slice(&bytes).ok()?;
    claims["exp"].as_i64()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_are_bounded() {
        assert_eq!(
            "1h".parse::<TokenDuration>().map(|d| d.0.as_secs()),
            Ok(3600)
        );
        assert!("10m".parse::<TokenDuration>().is_ok());
        for bad in ["5m", "0", "abc", "-1h", "9999999h"] {
            assert!(bad.parse::<TokenDuration>().is_err(), "{bad}");
        }
    }

    #[test]
    fn the_token_never_shows_in_debug() {
        let m = Minted {
            token: "secret.value.sig".into(),
            expires: "2026-01-01T01:00:00Z".into(),
        };
        assert!(!format!("{m:?}").contains("secret"));
    }

    #[test]
    fn reads_the_expiry_claim() {
        let enc =
            |v: &Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
        let t = format!(
            "{}.{}.sig",
            enc(&json!({"alg": "RS256"})),
            enc(&json!({"exp": 1_767_229_200}))
        );
        assert_eq!(jwt_expiry(&t), Some(1_767_229_200));
        assert_eq!(jwt_expiry("garbage"), None);
        let body = request("vm", "sa", TokenDuration::default());
        assert_eq!(body["spec"]["audiences"][0], "istio-ca");
        assert_eq!(body["spec"]["expirationSeconds"], 3600);
    }
}
