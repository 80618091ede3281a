//! What a vendor's API expects of the requests made with its tokens: headers and
//! query parameters on every request (an API-gateway key, a partner id), and how
//! an answer that looks like a rejected token is judged. One value, an
//! [`ApiProfile`], that the [`AuthClient`](crate::AuthClient) holds; getting tokens
//! stays the [`CredentialSource`](crate::CredentialSource)'s job alone.
//!
//! ```
//! use auth_core::{ApiProfile, SecretValue};
//!
//! # fn demo() -> auth_core::Result<()> {
//! let profile = ApiProfile::new()
//!     .header("x-partnerid", "ACME")?
//!     .secret_header("Ocp-Apim-Subscription-Key", &SecretValue::new("key-from-your-vault"))?
//!     .query("_format", "json");
//! assert!(!format!("{profile:?}").contains("key-from-your-vault"));
//! # Ok(()) }
//! ```

use std::fmt;
use std::sync::Arc;

use reqwest::header::{HeaderMap, HeaderName, HeaderValue};

use crate::challenge::Challenge;
use crate::error::{Error, Result};
use crate::secret::SecretValue;

/// Headers and query parameters added to every API request, and the judge of
/// rejections. Cheap to clone.
#[derive(Clone, Default)]
pub struct ApiProfile {
    headers: HeaderMap,
    query: Vec<(String, QueryValue)>,
    judge: Option<Arc<dyn RejectionJudge>>,
}

#[derive(Clone)]
enum QueryValue {
    Plain(String),
    Secret(SecretValue),
}

impl QueryValue {
    fn expose(&self) -> &str {
        match self {
            Self::Plain(v) => v,
            Self::Secret(v) => v.expose_secret(),
        }
    }
}

impl fmt::Debug for ApiProfile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Sensitive header values and secret query values print as `[redacted]`
        // (HeaderValue's own Debug does that for sensitive values).
        let query: Vec<(&str, &str)> = self
            .query
            .iter()
            .map(|(k, v)| match v {
                QueryValue::Plain(v) => (k.as_str(), v.as_str()),
                QueryValue::Secret(_) => (k.as_str(), "[redacted]"),
            })
            .collect();
        f.debug_struct("ApiProfile")
            .field("headers", &self.headers)
            .field("query", &query)
            .field("judge", &self.judge)
            .finish()
    }
}

impl ApiProfile {
    /// Nothing added, every rejection trusted.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a header. Fails on a name or value HTTP does not allow.
    pub fn header(mut self, name: &str, value: &str) -> Result<Self> {
        let (name, value) = header_pair(name, value)?;
        self.headers.append(name, value);
        Ok(self)
    }

    /// Adds a header whose value is a secret (an API-gateway subscription key):
    /// marked sensitive, so it is never logged or printed.
    pub fn secret_header(mut self, name: &str, value: &SecretValue) -> Result<Self> {
        let (name, mut value) = header_pair(name, value.expose_secret())?;
        value.set_sensitive(true);
        self.headers.append(name, value);
        Ok(self)
    }

    /// Adds a query parameter.
    pub fn query(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.query.push((name.into(), QueryValue::Plain(value.into())));
        self
    }

    /// Adds a query parameter whose value is a secret (an API key sent in the
    /// query, as Azure API Management accepts `subscription-key`): never printed.
    pub fn secret_query(mut self, name: impl Into<String>, value: &SecretValue) -> Self {
        self.query.push((name.into(), QueryValue::Secret(value.clone())));
        self
    }

    /// Judges rejections with `judge` instead of trusting every one.
    pub fn judge(mut self, judge: impl RejectionJudge) -> Self {
        self.judge = Some(Arc::new(judge));
        self
    }

    /// The headers (sensitive values marked so).
    pub fn headers(&self) -> &HeaderMap {
        &self.headers
    }

    /// The names of the query parameters, in order.
    pub fn query_names(&self) -> impl Iterator<Item = &str> {
        self.query.iter().map(|(k, _)| k.as_str())
    }

    /// The query parameters with their values, secret ones included: for putting
    /// them on a request, never for printing.
    pub fn expose_query(&self) -> impl Iterator<Item = (&str, &str)> {
        self.query.iter().map(|(k, v)| (k.as_str(), v.expose()))
    }

    /// The judge, if rejections are not simply trusted.
    pub fn rejection_judge(&self) -> Option<&dyn RejectionJudge> {
        self.judge.as_deref()
    }

    /// Whether rejections need their body read to be judged.
    pub fn wants_rejection_body(&self) -> bool {
        self.judge.as_ref().is_some_and(|j| j.wants_body())
    }

    /// Judges `rejection` (see [`RejectionJudge`]); without a judge, the token is bad.
    pub fn judge_rejection(&self, rejection: &Rejection<'_>) -> RejectionVerdict {
        match &self.judge {
            Some(judge) => judge.judge(rejection),
            None => RejectionVerdict::TokenRejected,
        }
    }

    /// Whether there is nothing to add and nothing to judge.
    pub fn is_empty(&self) -> bool {
        self.headers.is_empty() && self.query.is_empty() && self.judge.is_none()
    }
}

fn header_pair(name: &str, value: &str) -> Result<(HeaderName, HeaderValue)> {
    let n = HeaderName::from_bytes(name.as_bytes())
        .map_err(|_| Error::configuration(format!("`{name}` is not a valid HTTP header name")))?;
    let v = HeaderValue::from_str(value).map_err(|_| {
        Error::configuration(format!("the value for header `{name}` is not a valid HTTP header value"))
    })?;
    Ok((n, v))
}

/// Judges an API answer that looks like a rejected token (a 401, or any status with
/// `WWW-Authenticate: … error="invalid_token"`). A vendor whose 401 can mean
/// something else (MSK answers a wrong partner id with 401) says so, and no token
/// is burnt replaying the request.
pub trait RejectionJudge: Send + Sync + fmt::Debug + 'static {
    /// Whether [`RejectionJudge::judge`] needs the response body.
    fn wants_body(&self) -> bool {
        false
    }

    /// What the rejection is about.
    fn judge(&self, rejection: &Rejection<'_>) -> RejectionVerdict;
}

/// An API answer that looks like a rejected token.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct Rejection<'a> {
    /// The HTTP status.
    pub status: u16,
    /// The bearer challenge, if the server sent one.
    pub challenge: Option<&'a Challenge>,
    /// The body (capped), if the judge asked for it; else empty.
    pub body: &'a [u8],
}

impl<'a> Rejection<'a> {
    /// A rejection with the given parts.
    pub fn new(status: u16, challenge: Option<&'a Challenge>, body: &'a [u8]) -> Self {
        Self { status, challenge, body }
    }
}

/// What a [`RejectionJudge`] makes of a [`Rejection`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RejectionVerdict {
    /// The token is bad: drop it and replay once with a new one.
    TokenRejected,
    /// Not about the token: hand the response to the caller as it is.
    NotTokenRelated,
    /// A configuration mistake (a wrong partner id, say): fail with a configuration
    /// error; a new token would not help. The text must not quote server text
    /// unredacted (see [`redact_credentials`](crate::error::redact_credentials)).
    Configuration(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profiles_validate_and_hide_secrets() {
        assert!(ApiProfile::new().header("bad header", "v").is_err());
        assert!(ApiProfile::new().header("x-partnerid", "line\nbreak").is_err());
        let profile = ApiProfile::new()
            .secret_header("Ocp-Apim-Subscription-Key", &SecretValue::new("canary-sub-key"))
            .map(|p| {
                p.query("_format", "json").secret_query("subscription-key", &SecretValue::new("canary-q"))
            });
        let Ok(profile) = profile else { panic!("valid header refused") };
        let debug = format!("{profile:?}");
        assert!(!debug.contains("canary"), "{debug}");
        assert!(debug.contains("_format") && debug.contains("json"), "{debug}");
        assert_eq!(profile.query_names().collect::<Vec<_>>(), ["_format", "subscription-key"]);
        assert_eq!(
            profile.expose_query().collect::<Vec<_>>(),
            [("_format", "json"), ("subscription-key", "canary-q")]
        );
        assert_eq!(profile.judge_rejection(&Rejection::new(401, None, b"")), RejectionVerdict::TokenRejected);
    }
}
