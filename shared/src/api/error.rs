//! The one error type for a failed API call: which verb on which object in which context, and
//! what kind of failure it was, from which the exit code and every retry rule follow.

use std::fmt;

/// What was being done when the call failed, in kubectl's words.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(missing_docs)] // the variants are kubectl's verbs
pub enum Verb {
    Get,
    List,
    /// Reading which versions of an API group the server serves.
    Discover,
    Apply,
    Create,
    Update,
    Delete,
}

impl Verb {
    /// The word an error message uses ("cannot apply ...").
    pub fn word(self) -> &'static str {
        match self {
            Verb::Get => "get",
            Verb::List => "list",
            Verb::Discover => "discover",
            Verb::Apply => "apply",
            Verb::Create => "create",
            Verb::Update => "update",
            Verb::Delete => "delete",
        }
    }

    /// Whether the call may have changed the cluster.
    pub fn writes(self) -> bool {
        !matches!(self, Verb::Get | Verb::List | Verb::Discover)
    }
}

/// The kinds of failure callers act on differently.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// 401: the credentials were refused.
    Unauthorized,
    /// 403: RBAC refused the verb.
    Forbidden,
    /// The object changed or vanished since it was read (409 "modified", 404 on an apply, a 409
    /// on create or replace): the compare-and-swap lost, so the caller re-reads and retries.
    Conflict,
    /// A server-side apply met fields another manager owns (409 "conflict").
    FieldConflict,
    /// 404 where the caller needed the object.
    NotFound,
    /// A write that was sent but got no answer, or a 5xx: a server can answer 500 or 504 after
    /// etcd stored it (`etcdserver: request timed out`), so it may or may not have landed.
    InDoubt,
    /// Anything else: a transport failure on a read, a 4xx refusal, a broken answer.
    Other,
}

impl ErrorKind {
    /// The process exit code for a command that ends with this failure: kubectl exits 1 for
    /// every API failure, and so do we; usage (2), check (3), partial (4) and gate (5) failures
    /// are not API failures and have their own codes in `crate::error`.
    pub fn exit_code(self) -> u8 {
        crate::error::EXIT_FAILURE
    }
}

/// A failed API call.
#[derive(Debug, Clone)]
pub struct ApiError {
    /// What was being done.
    pub verb: Verb,
    /// The object or collection, e.g. `ServiceEntry istio-system/reviews`.
    pub object: String,
    /// The kubeconfig context the call went to.
    pub context: String,
    /// What kind of failure it was.
    pub kind: ErrorKind,
    /// What the server or the transport said (never a credential: transport text is redacted).
    pub detail: String,
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "cannot {} {} in context {:?}: {}",
            self.verb.word(),
            self.object,
            self.context,
            self.detail
        )
    }
}

impl std::error::Error for ApiError {}

impl ApiError {
    /// Classifies a kube client error. `limit` names the request timeout for a message about a
    /// call that got no answer.
    pub fn from_kube(
        err: &kube::Error,
        verb: Verb,
        object: &str,
        context: &str,
        limit: &str,
    ) -> Self {
        let (kind, detail) = classify(err, verb, context, limit);
        Self {
            verb,
            object: object.to_string(),
            context: context.to_string(),
            kind,
            detail,
        }
    }

    /// The kind of the first `ApiError` in an error chain, if any.
    pub fn kind_in(err: &anyhow::Error) -> Option<ErrorKind> {
        err.chain()
            .find_map(|c| c.downcast_ref::<ApiError>())
            .map(|e| e.kind)
    }
}

/// `err` with the kind of its API error changed (a caller that knows more than the status code,
/// e.g. that a POST before this failed apply landed), or `None` if it holds no API error.
pub fn reclassify(err: &anyhow::Error, kind: ErrorKind) -> Option<anyhow::Error> {
    let found = err.chain().find_map(|c| c.downcast_ref::<ApiError>())?;
    Some(
        ApiError {
            kind,
            ..found.clone()
        }
        .into(),
    )
}

/// Whether `err` is a write that may or may not have landed ([`ErrorKind::InDoubt`]).
pub fn in_doubt(err: &anyhow::Error) -> bool {
    ApiError::kind_in(err) == Some(ErrorKind::InDoubt)
}

/// Whether `err` is a lost compare-and-swap ([`ErrorKind::Conflict`]): re-read and try again.
pub fn conflict(err: &anyhow::Error) -> bool {
    ApiError::kind_in(err) == Some(ErrorKind::Conflict)
}

fn classify(err: &kube::Error, verb: Verb, context: &str, limit: &str) -> (ErrorKind, String) {
    let kube::Error::Api(s) = err else {
        let msg = crate::proxy::redact(&transport_message(err, limit));
        let detail = tls_hint(&msg).unwrap_or(msg);
        // A write with no answer may have been stored; a read with none is simply a failure.
        let kind = if verb.writes() {
            ErrorKind::InDoubt
        } else {
            ErrorKind::Other
        };
        return (kind, detail);
    };
    let detail = match s.code {
        401 => format!("Unauthorized: the credentials of context {context:?} were refused"),
        409 if verb == Verb::Apply && s.message.contains("conflict") => format!(
            "{} (rerun with --force-conflicts to take these fields over)",
            s.message
        ),
        _ if !s.message.is_empty() => format!("{} ({})", s.message, s.code),
        _ => format!("the server answered {} {}", s.code, s.reason),
    };
    let kind = match s.code {
        401 => ErrorKind::Unauthorized,
        403 => ErrorKind::Forbidden,
        409 if s.message.contains("modified") => ErrorKind::Conflict,
        409 if matches!(verb, Verb::Create | Verb::Update) => ErrorKind::Conflict,
        409 if verb == Verb::Apply && s.message.contains("conflict") => ErrorKind::FieldConflict,
        404 if verb == Verb::Apply => ErrorKind::Conflict,
        404 => ErrorKind::NotFound,
        c if c >= 500 && verb.writes() => ErrorKind::InDoubt,
        _ => ErrorKind::Other,
    };
    (kind, detail)
}

/// A transport failure in one line, its causes joined, a timeout said in the user's terms.
pub(crate) fn transport_message(err: &kube::Error, limit: &str) -> String {
    let mut msg = err.to_string();
    let mut source = std::error::Error::source(err);
    while let Some(s) = source {
        msg = format!("{msg}: {s}");
        source = s.source();
    }
    if msg.to_ascii_lowercase().contains("elapsed")
        || msg.to_ascii_lowercase().contains("timed out")
    {
        return format!("no answer within {limit} ({msg})");
    }
    msg
}

/// A refused server certificate, said plainly with the flag that fixes it, instead of the
/// nested "client error (Connect)" chain of the TLS library.
pub(crate) fn tls_hint(msg: &str) -> Option<String> {
    let at = msg.find("invalid peer certificate")?;
    let cause = msg[at..].trim_end();
    let (what, fix) = if cause.contains("UnknownIssuer") {
        (
            "is not signed by a trusted CA",
            "check --certificate-authority, or the kubeconfig cluster's certificate-authority",
        )
    } else if cause.contains("NotValidForName") {
        (
            "is not issued for the name connected to",
            "check --server and --tls-server-name, or the kubeconfig cluster's server and tls-server-name",
        )
    } else {
        (
            "was refused",
            "check --certificate-authority, or the kubeconfig cluster's certificate-authority",
        )
    };
    Some(format!(
        "TLS: the server's certificate {what} ({cause}): {fix}"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api(code: u16, message: &str) -> kube::Error {
        kube::Error::Api(
            kube::core::Status::failure(message, "")
                .with_code(code)
                .boxed(),
        )
    }

    fn kind(code: u16, message: &str, verb: Verb) -> ErrorKind {
        ApiError::from_kube(&api(code, message), verb, "X a/b", "c1", "1s").kind
    }

    #[test]
    fn kinds_follow_the_status_and_the_verb() {
        assert_eq!(kind(401, "", Verb::Get), ErrorKind::Unauthorized);
        assert_eq!(kind(403, "no", Verb::Apply), ErrorKind::Forbidden);
        assert_eq!(
            kind(409, "the object has been modified", Verb::Update),
            ErrorKind::Conflict
        );
        assert_eq!(
            kind(409, "already exists", Verb::Create),
            ErrorKind::Conflict
        );
        assert_eq!(
            kind(409, "Apply failed with 1 conflict", Verb::Apply),
            ErrorKind::FieldConflict
        );
        assert_eq!(kind(404, "gone", Verb::Apply), ErrorKind::Conflict);
        assert_eq!(kind(404, "gone", Verb::Delete), ErrorKind::NotFound);
        assert_eq!(kind(504, "timeout", Verb::Apply), ErrorKind::InDoubt);
        assert_eq!(kind(500, "boom", Verb::Get), ErrorKind::Other);
    }

    #[test]
    fn the_message_names_verb_object_and_context() {
        let e = ApiError::from_kube(
            &api(403, "forbidden"),
            Verb::Delete,
            "Secret ns/s",
            "c1",
            "",
        );
        assert_eq!(
            e.to_string(),
            "cannot delete Secret ns/s in context \"c1\": forbidden (403)"
        );
        let any: anyhow::Error = e.into();
        assert!(!in_doubt(&any) && !conflict(&any));
        assert_eq!(
            ApiError::kind_in(&any.context("outer")),
            Some(ErrorKind::Forbidden)
        );
    }

    #[test]
    fn a_refused_certificate_names_the_flag_that_fixes_it() {
        let msg = "ServiceError: client error (Connect): client error (Connect): invalid peer certificate: UnknownIssuer";
        assert_eq!(
            tls_hint(msg).as_deref(),
            Some("TLS: the server's certificate is not signed by a trusted CA (invalid peer certificate: UnknownIssuer): check --certificate-authority, or the kubeconfig cluster's certificate-authority")
        );
        assert!(tls_hint("connection refused").is_none());
    }
}
