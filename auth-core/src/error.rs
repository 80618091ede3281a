//! One opaque error type, queried with [`Error::kind`] and friends (as reqwest does),
//! so that adding a failure mode never breaks a caller's `match`.
//!
//! No error ever carries a raw response body: a token endpoint's body holds the
//! token, a FHIR server's body holds patient data. What was wrong is described
//! instead (status, content type, length, the name of the offending field).

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::challenge::Challenge;

/// Shorthand for results in this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong while getting a token or making an authenticated call.
///
/// Cheap to clone (it is shared by every caller of one failed token request).
#[derive(Clone)]
pub struct Error {
    inner: Arc<Inner>,
}

struct Inner {
    repr: Repr,
    source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

/// The broad class of an [`Error`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The identity provider answered with an RFC 6749 §5.2 error (see [`Error::oauth`]).
    OAuth,
    /// The connection failed: refused, reset, DNS, TLS.
    Transport,
    /// A request took longer than its timeout.
    Timeout,
    /// A server answered 5xx or 429 without an OAuth error body: it is down, overloaded
    /// or rate limiting. Retryable.
    Unavailable,
    /// A server answered with something that is not what the protocol promises.
    InvalidResponse,
    /// The client was configured with values that cannot work.
    Configuration,
    /// The API rejected the token even after one fresh token was tried.
    Unauthorized,
    /// The API says the token lacks a scope (RFC 6750 `insufficient_scope`); a new
    /// token would not help.
    InsufficientScope,
    /// The token store failed.
    Store,
    /// A bug or a broken invariant in this library.
    Internal,
    /// An API (a resource server) answered an error status. The layer that made
    /// the call attaches what the server said (a FHIR OperationOutcome, say): see
    /// [`Error::api_detail`].
    Api,
}

/// What was wrong with a response. Never contains the body itself.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ResponseProblem {
    /// The body is not JSON (an HTML error page from a gateway, say).
    NotJson {
        /// The `Content-Type` the server sent, if any.
        content_type: Option<String>,
        /// Length of the body in bytes.
        len: usize,
    },
    /// The JSON is not an object.
    NotAnObject,
    /// The body is larger than the configured cap.
    TooLarge {
        /// The cap, in bytes.
        limit: usize,
    },
    /// The body is empty.
    Empty,
    /// `access_token` is absent or `null`.
    MissingAccessToken,
    /// `access_token` is the empty string.
    EmptyAccessToken,
    /// A field has the wrong JSON type.
    WrongType {
        /// The field's name.
        field: &'static str,
        /// What the field should have been.
        expected: &'static str,
    },
    /// `token_type` is not `Bearer` (in any case) and the source does not accept it.
    UnsupportedTokenType {
        /// The type the server sent.
        token_type: String,
    },
    /// The server issued a DPoP-bound token (`token_type: DPoP`) to a source
    /// without DPoP: it could not be used without the key it is bound to.
    UnexpectedDpopToken,
    /// DPoP is on, but the server issued a token not bound to the key (RFC 9449
    /// §5 allows it; [`Dpop::allow_bearer`](crate::dpop::Dpop::allow_bearer) accepts it).
    UnboundToken {
        /// The type the server sent.
        token_type: String,
    },
    /// An error status without a recognisable error body.
    UnexpectedStatus {
        /// The `Content-Type` the server sent, if any.
        content_type: Option<String>,
        /// Length of the body in bytes.
        len: usize,
    },
    /// The server answered with a redirect. Token requests never follow one: it
    /// could carry the client secret to another host.
    Redirect {
        /// The origin (`scheme://host:port`) `Location` pointed to, if it was a URL.
        location: Option<String>,
    },
    /// Anything else, described in words.
    Other(String),
}

impl fmt::Display for ResponseProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ct = |c: &Option<String>| c.clone().unwrap_or_else(|| "no content type".into());
        match self {
            Self::NotJson { content_type, len } => {
                write!(f, "body is not JSON ({}, {len} bytes)", ct(content_type))
            }
            Self::NotAnObject => f.write_str("body is JSON but not an object"),
            Self::TooLarge { limit } => write!(f, "body is larger than the {limit}-byte cap"),
            Self::Empty => f.write_str("body is empty"),
            Self::MissingAccessToken => f.write_str("`access_token` is missing"),
            Self::EmptyAccessToken => f.write_str("`access_token` is empty"),
            Self::WrongType { field, expected } => write!(f, "`{field}` is not {expected}"),
            Self::UnsupportedTokenType { token_type } => {
                write!(f, "token_type `{token_type}` is not supported (expected Bearer)")
            }
            Self::UnexpectedDpopToken => f.write_str(
                "the server issued a DPoP-bound token (token_type DPoP), but this source does not use DPoP: \
                 turn DPoP on for it (`dpop(…)`, `--dpop`), or register the client for bearer tokens",
            ),
            Self::UnboundToken { token_type } => write!(
                f,
                "DPoP is on, but the server issued a `{token_type}` token, not bound to our key \
                 (allow it with Dpop::allow_bearer if that is acceptable)"
            ),
            Self::UnexpectedStatus { content_type, len } => {
                write!(f, "error status without an OAuth error body ({}, {len} bytes)", ct(content_type))
            }
            Self::Redirect { location } => {
                f.write_str("the server redirected")?;
                if let Some(origin) = location {
                    write!(f, " to {origin}")?;
                }
                f.write_str("; redirects are not followed for token requests (configure the final URL)")
            }
            Self::Other(text) => f.write_str(text),
        }
    }
}

/// The error codes of RFC 6749 §5.2, plus `temporarily_unavailable` and
/// `server_error` (§4.1.2.1), which some servers also send from the token endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum OAuthErrorCode {
    /// `invalid_request`
    InvalidRequest,
    /// `invalid_client`: wrong client id or secret.
    InvalidClient,
    /// `invalid_grant`
    InvalidGrant,
    /// `unauthorized_client`
    UnauthorizedClient,
    /// `unsupported_grant_type`
    UnsupportedGrantType,
    /// `invalid_scope`
    InvalidScope,
    /// `temporarily_unavailable`
    TemporarilyUnavailable,
    /// `server_error`
    ServerError,
    /// Any other code, as the server spelled it.
    Other(String),
}

impl OAuthErrorCode {
    /// Parses a code as sent on the wire.
    pub fn parse(code: &str) -> Self {
        match code {
            "invalid_request" => Self::InvalidRequest,
            "invalid_client" => Self::InvalidClient,
            "invalid_grant" => Self::InvalidGrant,
            "unauthorized_client" => Self::UnauthorizedClient,
            "unsupported_grant_type" => Self::UnsupportedGrantType,
            "invalid_scope" => Self::InvalidScope,
            "temporarily_unavailable" => Self::TemporarilyUnavailable,
            "server_error" => Self::ServerError,
            other => Self::Other(other.to_owned()),
        }
    }

    /// The code as sent on the wire.
    pub fn as_str(&self) -> &str {
        match self {
            Self::InvalidRequest => "invalid_request",
            Self::InvalidClient => "invalid_client",
            Self::InvalidGrant => "invalid_grant",
            Self::UnauthorizedClient => "unauthorized_client",
            Self::UnsupportedGrantType => "unsupported_grant_type",
            Self::InvalidScope => "invalid_scope",
            Self::TemporarilyUnavailable => "temporarily_unavailable",
            Self::ServerError => "server_error",
            Self::Other(code) => code,
        }
    }
}

impl fmt::Display for OAuthErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An error response from a token endpoint (RFC 6749 §5.2).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct OAuthError {
    /// The `error` code.
    pub code: OAuthErrorCode,
    /// `error_description`, with anything that looks like our own secret removed.
    pub description: Option<String>,
    /// `error_uri`.
    pub uri: Option<String>,
    /// The HTTP status of the response.
    pub status: u16,
    /// The server's `Retry-After`, if it sent one.
    pub retry_after: Option<Duration>,
}

impl OAuthError {
    /// An error with just a code and status.
    pub fn new(code: OAuthErrorCode, status: u16) -> Self {
        Self { code, description: None, uri: None, status, retry_after: None }
    }

    /// Whether asking again later can succeed. `invalid_client`, `unauthorized_client`,
    /// `invalid_grant` and `invalid_scope` are configuration problems and never are;
    /// `temporarily_unavailable`, `server_error`, 5xx and 429 are.
    pub fn is_retryable(&self) -> bool {
        match self.code {
            OAuthErrorCode::InvalidClient
            | OAuthErrorCode::UnauthorizedClient
            | OAuthErrorCode::InvalidGrant
            | OAuthErrorCode::InvalidScope
            | OAuthErrorCode::UnsupportedGrantType
            | OAuthErrorCode::InvalidRequest => false,
            OAuthErrorCode::TemporarilyUnavailable | OAuthErrorCode::ServerError => true,
            OAuthErrorCode::Other(_) => self.status >= 500 || self.status == 429,
        }
    }
}

impl fmt::Display for OAuthError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (HTTP {})", self.code, self.status)?;
        if let Some(d) = &self.description {
            write!(f, ": {d}")?;
        }
        Ok(())
    }
}

#[derive(Debug)]
enum Repr {
    OAuth(OAuthError),
    Transport { what: String },
    Timeout { what: String, after: Duration },
    Unavailable { what: String, status: u16, retry_after: Option<Duration> },
    InvalidResponse { what: String, status: u16, problem: ResponseProblem },
    Configuration(String),
    Unauthorized { status: u16, challenge: Option<Challenge>, hold: Option<Duration> },
    InsufficientScope { challenge: Challenge },
    Store(String),
    Internal(String),
    Api { status: u16, detail: Box<dyn std::error::Error + Send + Sync> },
    SharedFailure { retry_after: Duration },
}

impl fmt::Display for Repr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::OAuth(e) => write!(f, "token request refused: {e}"),
            Self::Transport { what } => write!(f, "{what} failed: could not reach the server"),
            Self::Timeout { what, after } if after.is_zero() => write!(f, "{what} timed out"),
            Self::Timeout { what, after } => write!(f, "{what} timed out after {after:?}"),
            Self::Unavailable { what, status, retry_after } => {
                write!(f, "{what} failed: the server is unavailable (HTTP {status})")?;
                if let Some(after) = retry_after {
                    write!(f, ", retry after {}s", after.as_secs())?;
                }
                Ok(())
            }
            Self::InvalidResponse { what, status, problem } => {
                write!(f, "invalid response from {what} (HTTP {status}): {problem}")
            }
            Self::Configuration(msg) => write!(f, "invalid configuration: {msg}"),
            Self::Unauthorized { status, challenge, hold } => {
                write!(f, "the server rejected a freshly fetched token (HTTP {status})")?;
                if let Some(c) = challenge {
                    write!(f, ": {c}")?;
                }
                if let Some(hold) = hold {
                    write!(
                        f,
                        "; a token fetched to replace a rejected one was rejected too, so the rejection is \
                         likely not about the token (a gateway in front, a wrong audience, a server clock \
                         ahead of the identity provider's): no new token is fetched for it for {}s",
                        hold.as_secs().max(1)
                    )?;
                }
                Ok(())
            }
            Self::InsufficientScope { challenge } => {
                write!(f, "the token lacks a required scope: {challenge}")
            }
            Self::Store(msg) => write!(f, "token store failed: {msg}"),
            Self::Internal(msg) => write!(f, "internal error: {msg}"),
            Self::Api { detail, .. } => fmt::Display::fmt(detail, f),
            Self::SharedFailure { retry_after } => write!(
                f,
                "another instance sharing the token store failed to get a token just now; backing off \
                 with it, retry after {}s",
                retry_after.as_secs().max(1)
            ),
        }
    }
}

/// Server text with anything that looks like a credential replaced by `[redacted]`.
///
/// Errors keep some server text (a challenge's `error_description`, an
/// OperationOutcome's `diagnostics`) because it says what went wrong, but servers
/// echo the token they refused there, and the error does not know which token that
/// was. So every run of token characters (RFC 6750 `b64token`: letters, digits and
/// `-._~+/=`) at least 20 long that mixes letters and digits is taken for one:
/// opaque tokens, JWTs, API keys. Ordinary words survive; long random ids (UUIDs)
/// are redacted too, the price of not knowing.
pub fn redact_credentials(text: &str) -> String {
    const MIN: usize = 20;
    let is_token_char = |c: char| c.is_ascii_alphanumeric() || "-._~+/=".contains(c);
    let mut out = String::with_capacity(text.len());
    let mut run_start: Option<usize> = None;
    let flush = |out: &mut String, run: &str| {
        let looks_secret = run.len() >= MIN
            && run.bytes().any(|b| b.is_ascii_digit())
            && run.bytes().any(|b| b.is_ascii_alphabetic());
        out.push_str(if looks_secret { "[redacted]" } else { run });
    };
    for (i, c) in text.char_indices() {
        match (is_token_char(c), run_start) {
            (true, None) => run_start = Some(i),
            (true, Some(_)) => {}
            (false, Some(start)) => {
                flush(&mut out, &text[start..i]);
                run_start = None;
                out.push(c);
            }
            (false, None) => out.push(c),
        }
    }
    if let Some(start) = run_start {
        flush(&mut out, &text[start..]);
    }
    out
}

/// A challenge with [`redact_credentials`] applied to every parameter but the ones
/// that are names, not text (`error`, `scope`, `realm`).
fn redact_challenge(mut challenge: Challenge) -> Challenge {
    for (name, value) in &mut challenge.params {
        if !matches!(name.as_str(), "error" | "scope" | "realm") {
            *value = redact_credentials(value);
        }
    }
    challenge
}

impl Error {
    fn new(repr: Repr, source: Option<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        Self { inner: Arc::new(Inner { repr, source }) }
    }

    /// An RFC 6749 error response.
    pub fn oauth(error: OAuthError) -> Self {
        Self::new(Repr::OAuth(error), None)
    }

    /// A transport failure while doing `what` (for example "token request").
    pub fn transport(what: impl Into<String>, source: reqwest::Error) -> Self {
        let what = what.into();
        if source.is_timeout() {
            // reqwest reports its own deadline as a transport error; callers care
            // about the difference.
            return Self::new(
                Repr::Timeout { what, after: Duration::ZERO },
                Some(Box::new(source.without_url())),
            );
        }
        Self::new(Repr::Transport { what }, Some(Box::new(source.without_url())))
    }

    /// A request that exceeded its deadline.
    pub fn timeout(what: impl Into<String>, after: Duration) -> Self {
        Self::new(Repr::Timeout { what: what.into(), after }, None)
    }

    /// A 5xx or 429 answer without an OAuth error body.
    pub fn unavailable(what: impl Into<String>, status: u16, retry_after: Option<Duration>) -> Self {
        Self::new(Repr::Unavailable { what: what.into(), status, retry_after }, None)
    }

    /// Another manager sharing the token store failed to get a token just now:
    /// this one backs off with it for `retry_after` instead of trying the failing
    /// provider in turn.
    pub fn shared_failure(retry_after: Duration) -> Self {
        Self::new(Repr::SharedFailure { retry_after }, None)
    }

    /// A response that breaks the protocol.
    pub fn invalid_response(what: impl Into<String>, status: u16, problem: ResponseProblem) -> Self {
        Self::new(Repr::InvalidResponse { what: what.into(), status, problem }, None)
    }

    /// A configuration that cannot work.
    pub fn configuration(message: impl Into<String>) -> Self {
        Self::new(Repr::Configuration(message.into()), None)
    }

    /// A token rejected by the API even after a replay with a fresh one.
    ///
    /// Credential-like text in the challenge's parameters (see
    /// [`redact_credentials`]) is replaced: servers echo the rejected bearer token
    /// in `error_description`.
    pub fn unauthorized(status: u16, challenge: Option<Challenge>) -> Self {
        Self::new(Repr::Unauthorized { status, challenge: challenge.map(redact_challenge), hold: None }, None)
    }

    /// A rejection that a fresh token did not cure either: the manager holds off
    /// fetching new tokens for it for `hold` ([`Error::retry_after`]).
    pub fn unauthorized_held(status: u16, challenge: Option<Challenge>, hold: Duration) -> Self {
        let challenge = challenge.map(redact_challenge);
        Self::new(Repr::Unauthorized { status, challenge, hold: Some(hold) }, None)
    }

    /// A token rejected for lack of scope (the challenge redacted as for
    /// [`Error::unauthorized`]).
    pub fn insufficient_scope(challenge: Challenge) -> Self {
        Self::new(Repr::InsufficientScope { challenge: redact_challenge(challenge) }, None)
    }

    /// A token store failure.
    pub fn store(message: impl Into<String>) -> Self {
        Self::new(Repr::Store(message.into()), None)
    }

    /// A token store failure caused by another error.
    pub fn store_with(
        message: impl Into<String>,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        Self::new(Repr::Store(message.into()), Some(Box::new(source)))
    }

    /// An error status from an API, described by the layer that made the call
    /// (the FHIR crate attaches the server's OperationOutcome). `detail`'s `Display`
    /// becomes this error's message, so it must never quote a response body: it
    /// may hold patient data.
    pub fn api(status: u16, detail: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self::new(Repr::Api { status, detail: Box::new(detail) }, None)
    }

    /// What the API layer attached to an [`ErrorKind::Api`] error, if it is a `T`.
    pub fn api_detail<T: std::error::Error + 'static>(&self) -> Option<&T> {
        match &self.inner.repr {
            Repr::Api { detail, .. } => detail.downcast_ref(),
            _ => None,
        }
    }

    pub(crate) fn internal(message: impl Into<String>) -> Self {
        Self::new(Repr::Internal(message.into()), None)
    }

    /// The class of this error.
    pub fn kind(&self) -> ErrorKind {
        match &self.inner.repr {
            Repr::OAuth(_) => ErrorKind::OAuth,
            Repr::Transport { .. } => ErrorKind::Transport,
            Repr::Timeout { .. } => ErrorKind::Timeout,
            Repr::Unavailable { .. } => ErrorKind::Unavailable,
            Repr::InvalidResponse { .. } => ErrorKind::InvalidResponse,
            Repr::Configuration(_) => ErrorKind::Configuration,
            Repr::Unauthorized { .. } => ErrorKind::Unauthorized,
            Repr::InsufficientScope { .. } => ErrorKind::InsufficientScope,
            Repr::Store(_) => ErrorKind::Store,
            Repr::Internal(_) => ErrorKind::Internal,
            Repr::Api { .. } => ErrorKind::Api,
            Repr::SharedFailure { .. } => ErrorKind::Unavailable,
        }
    }

    /// The RFC 6749 error, when the identity provider sent one.
    pub fn oauth_error(&self) -> Option<&OAuthError> {
        match &self.inner.repr {
            Repr::OAuth(e) => Some(e),
            _ => None,
        }
    }

    /// What was wrong with a response, for [`ErrorKind::InvalidResponse`].
    pub fn response_problem(&self) -> Option<&ResponseProblem> {
        match &self.inner.repr {
            Repr::InvalidResponse { problem, .. } => Some(problem),
            _ => None,
        }
    }

    /// The `WWW-Authenticate` challenge, for [`ErrorKind::Unauthorized`] and
    /// [`ErrorKind::InsufficientScope`].
    pub fn challenge(&self) -> Option<&Challenge> {
        match &self.inner.repr {
            Repr::Unauthorized { challenge, .. } => challenge.as_ref(),
            Repr::InsufficientScope { challenge } => Some(challenge),
            _ => None,
        }
    }

    /// The HTTP status behind this error, if there was a response.
    pub fn status(&self) -> Option<u16> {
        match &self.inner.repr {
            Repr::OAuth(e) => Some(e.status),
            Repr::InvalidResponse { status, .. }
            | Repr::Unauthorized { status, .. }
            | Repr::Unavailable { status, .. }
            | Repr::Api { status, .. } => Some(*status),
            Repr::InsufficientScope { .. } => Some(403),
            _ => None,
        }
    }

    /// Whether trying again later can succeed: network failures, timeouts, 5xx, 429
    /// and `temporarily_unavailable` are; configuration errors and the RFC 6749
    /// client errors are not.
    pub fn is_retryable(&self) -> bool {
        match &self.inner.repr {
            Repr::OAuth(e) => e.is_retryable(),
            Repr::Transport { .. }
            | Repr::Timeout { .. }
            | Repr::Unavailable { .. }
            | Repr::Store(_)
            | Repr::Internal(_)
            | Repr::SharedFailure { .. } => true,
            Repr::InvalidResponse { status, .. } | Repr::Api { status, .. } => {
                *status >= 500 || *status == 429
            }
            Repr::Configuration(_) | Repr::Unauthorized { .. } | Repr::InsufficientScope { .. } => false,
        }
    }

    /// How long to wait before trying again, if known: the server's `Retry-After`,
    /// or how long the manager holds off after a rejection no token cures.
    pub fn retry_after(&self) -> Option<Duration> {
        match &self.inner.repr {
            Repr::OAuth(e) => e.retry_after,
            Repr::Unavailable { retry_after, .. } => *retry_after,
            Repr::Unauthorized { hold, .. } => *hold,
            Repr::SharedFailure { retry_after } => Some(*retry_after),
            _ => None,
        }
    }

    /// What was being done when it failed (`"token request"`,
    /// [`API_REQUEST`](crate::client::API_REQUEST), …), for the kinds that say:
    /// transport failures, timeouts, unavailable servers and invalid responses.
    pub fn operation(&self) -> Option<&str> {
        match &self.inner.repr {
            Repr::Transport { what }
            | Repr::Timeout { what, .. }
            | Repr::Unavailable { what, .. }
            | Repr::InvalidResponse { what, .. } => Some(what),
            _ => None,
        }
    }

    /// True when both values are the same shared error (one failed fetch).
    pub fn same_as(&self, other: &Error) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Error");
        d.field("kind", &self.kind()).field("repr", &self.inner.repr);
        if let Some(source) = &self.inner.source {
            d.field("source", source);
        }
        d.finish()
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.inner.repr, f)
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.inner.source.as_deref().map(|e| e as &(dyn std::error::Error + 'static))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classification_follows_rfc_6749() {
        for code in ["invalid_client", "unauthorized_client", "invalid_grant", "invalid_scope"] {
            let e = Error::oauth(OAuthError::new(OAuthErrorCode::parse(code), 400));
            assert!(!e.is_retryable(), "{code} must not be retried");
            assert_eq!(e.oauth_error().map(|o| o.code.as_str()), Some(code));
        }
        let busy = Error::oauth(OAuthError::new(OAuthErrorCode::TemporarilyUnavailable, 503));
        assert!(busy.is_retryable());
        let odd = Error::oauth(OAuthError::new(OAuthErrorCode::parse("mfa_required"), 400));
        assert!(!odd.is_retryable());
        assert_eq!(
            odd.oauth_error().map(|o| o.code.clone()),
            Some(OAuthErrorCode::Other("mfa_required".into()))
        );
        let odd5xx = Error::oauth(OAuthError::new(OAuthErrorCode::parse("unspecified_error"), 502));
        assert!(odd5xx.is_retryable());
        assert!(Error::invalid_response("x", 503, ResponseProblem::Empty).is_retryable());
        assert!(!Error::invalid_response("x", 200, ResponseProblem::MissingAccessToken).is_retryable());
        assert!(!Error::configuration("bad").is_retryable());
    }

    #[test]
    fn credential_like_text_is_redacted() {
        let jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJlMTIz";
        assert_eq!(
            redact_credentials(&format!("Bearer {jwt} expired; token at-1-0123456789abcdef too")),
            "Bearer [redacted] expired; token [redacted] too"
        );
        for plain in [
            "The access token expired",
            "Patient/123 is not known",
            "HAPI-0971: Resource Patient/example is not known",
            "scope system/Patient.rs system/Observation.rs",
            "abcdefghijklmnopqrstuvwxyz without digits",
            "",
            "ü ß 日本",
        ] {
            assert_eq!(redact_credentials(plain), plain);
        }
        let challenge = Challenge {
            scheme: "Bearer".into(),
            params: vec![
                ("error".into(), "invalid_token".into()),
                ("error_description".into(), "token CANARY-0123456789-abcdef is bad".into()),
            ],
        };
        let e = Error::unauthorized(401, Some(challenge));
        assert!(!format!("{e} {e:?}").contains("CANARY"), "{e:?}");
        assert_eq!(e.challenge().and_then(Challenge::error), Some("invalid_token"));
    }

    #[test]
    fn display_names_the_problem_not_the_body() {
        let e = Error::invalid_response(
            "token request",
            200,
            ResponseProblem::NotJson { content_type: Some("text/html".into()), len: 5120 },
        );
        assert_eq!(
            e.to_string(),
            "invalid response from token request (HTTP 200): body is not JSON (text/html, 5120 bytes)"
        );
        assert_eq!(e.kind(), ErrorKind::InvalidResponse);
    }
}
