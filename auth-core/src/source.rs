//! Where tokens come from: the [`CredentialSource`] trait, the [`CacheKey`] that
//! names what a source hands out, and the [`RequestExtras`] a vendor wants on
//! every API request.
//!
//! A source only knows how to talk to its identity provider. How tokens are kept,
//! shared and refreshed is the token manager's business, so every vendor gets
//! single flight, refresh ahead and stale-while-error without writing any of it.

use std::fmt;
use std::sync::Arc;
use std::time::SystemTime;

use async_trait::async_trait;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use sha2::{Digest, Sha256};

use crate::challenge::Challenge;
use crate::clock::{Clock, SystemClock};
use crate::error::{Error, Result};
use crate::secret::{RefreshToken, SecretValue};
use crate::token::Token;

/// Gets tokens from one identity provider, for one client and one set of scopes.
#[async_trait]
pub trait CredentialSource: Send + Sync + fmt::Debug + 'static {
    /// Names the tokens this source hands out: two sources with equal keys are
    /// interchangeable, so their tokens may be shared. Never contains a secret.
    fn cache_key(&self) -> &CacheKey;

    /// Asks the identity provider for a new token. Stamp the response with
    /// [`FetchContext::now`], so expiry is judged on the manager's clock.
    async fn fetch(&self, ctx: &FetchContext) -> Result<Token>;

    /// Whether [`CredentialSource::refresh`] is worth calling.
    fn supports_refresh(&self) -> bool {
        false
    }

    /// Trades a refresh token for a new token. `Ok(None)` means this source does not
    /// refresh, and the manager falls back to [`CredentialSource::fetch`].
    async fn refresh(&self, ctx: &FetchContext, refresh_token: &RefreshToken) -> Result<Option<Token>> {
        let _ = (ctx, refresh_token);
        Ok(None)
    }

    /// Tells the identity provider the token is no longer needed (RFC 7009, or a
    /// vendor's sign-out). The default does nothing and reports so with `false`.
    async fn revoke(&self, token: &Token) -> Result<bool> {
        let _ = token;
        Ok(false)
    }

    /// Headers and query parameters the vendor requires on every API request made
    /// with this source's tokens (an API-gateway key, a partner id, …).
    fn request_extras(&self) -> Option<&RequestExtras> {
        None
    }

    /// Whether [`CredentialSource::judge_rejection`] needs the response body.
    fn wants_rejection_body(&self) -> bool {
        false
    }

    /// Judges an API answer that looks like a rejected token (a 401, or any status
    /// with `WWW-Authenticate: … error="invalid_token"`). The default trusts it. A
    /// vendor whose 401 can mean something else (MSK answers a wrong partner id with
    /// 401) says so here, and no token is burnt replaying the request.
    fn judge_rejection(&self, rejection: &Rejection<'_>) -> RejectionVerdict {
        let _ = rejection;
        RejectionVerdict::TokenRejected
    }
}

/// An API answer that looks like a rejected token.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct Rejection<'a> {
    /// The HTTP status.
    pub status: u16,
    /// The bearer challenge, if the server sent one.
    pub challenge: Option<&'a Challenge>,
    /// The body (capped), if the source asked for it; else empty.
    pub body: &'a [u8],
}

impl<'a> Rejection<'a> {
    /// A rejection with the given parts.
    pub fn new(status: u16, challenge: Option<&'a Challenge>, body: &'a [u8]) -> Self {
        Self { status, challenge, body }
    }
}

/// What a source makes of a [`Rejection`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RejectionVerdict {
    /// The token is bad: drop it and replay once with a new one.
    TokenRejected,
    /// Not about the token: hand the response to the caller as it is.
    NotTokenRelated,
    /// A configuration mistake (a wrong partner id, say): fail with a configuration
    /// error; a new token would not help.
    Configuration(String),
}

#[async_trait]
impl<S: CredentialSource + ?Sized> CredentialSource for Box<S> {
    fn cache_key(&self) -> &CacheKey {
        (**self).cache_key()
    }
    async fn fetch(&self, ctx: &FetchContext) -> Result<Token> {
        (**self).fetch(ctx).await
    }
    fn supports_refresh(&self) -> bool {
        (**self).supports_refresh()
    }
    async fn refresh(&self, ctx: &FetchContext, refresh_token: &RefreshToken) -> Result<Option<Token>> {
        (**self).refresh(ctx, refresh_token).await
    }
    async fn revoke(&self, token: &Token) -> Result<bool> {
        (**self).revoke(token).await
    }
    fn request_extras(&self) -> Option<&RequestExtras> {
        (**self).request_extras()
    }
    fn wants_rejection_body(&self) -> bool {
        (**self).wants_rejection_body()
    }
    fn judge_rejection(&self, rejection: &Rejection<'_>) -> RejectionVerdict {
        (**self).judge_rejection(rejection)
    }
}

/// What a source is told when asked for a token: the clock of the manager asking.
///
/// Responses must be stamped with [`FetchContext::now`]; a source with a clock of
/// its own could disagree with the manager and see every token as expired.
#[derive(Debug, Clone)]
pub struct FetchContext {
    clock: Arc<dyn Clock>,
}

impl FetchContext {
    /// A context on `clock`.
    pub fn new(clock: Arc<dyn Clock>) -> Self {
        Self { clock }
    }

    /// The current wall-clock time on the manager's clock.
    pub fn now(&self) -> SystemTime {
        self.clock.now()
    }

    /// The manager's clock.
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }
}

impl Default for FetchContext {
    /// The system clock: for calling a source directly, without a manager.
    fn default() -> Self {
        Self::new(Arc::new(SystemClock))
    }
}

/// The identity of a token request: provider kind, token URL, client id, sorted
/// scopes, audiences/resources and extra parameters.
///
/// The whole request identity is in the key (a coarse key hands tokens for one
/// scope to callers of another: Duende's v3 advisory). Stores name entries by
/// [`CacheKey::fingerprint`], a SHA-256 of the parts, so no key name reveals them.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct CacheKey {
    provider: String,
    token_url: String,
    client_id: String,
    scopes: Vec<String>,
    audiences: Vec<String>,
    params: Vec<(String, String)>,
    fingerprint: String,
}

impl CacheKey {
    /// Starts a key for `provider` (a short kind name such as `oauth2` or `santedb`).
    pub fn builder(
        provider: impl Into<String>,
        token_url: impl Into<String>,
        client_id: impl Into<String>,
    ) -> CacheKeyBuilder {
        CacheKeyBuilder {
            provider: provider.into(),
            token_url: token_url.into(),
            client_id: client_id.into(),
            scopes: Vec::new(),
            audiences: Vec::new(),
            params: Vec::new(),
        }
    }

    /// The provider kind.
    pub fn provider(&self) -> &str {
        &self.provider
    }

    /// The token URL.
    pub fn token_url(&self) -> &str {
        &self.token_url
    }

    /// The client id.
    pub fn client_id(&self) -> &str {
        &self.client_id
    }

    /// Scopes, sorted and without duplicates.
    pub fn scopes(&self) -> &[String] {
        &self.scopes
    }

    /// Hex SHA-256 of every part: stable across processes and releases, safe to
    /// use as a store key or in logs.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }
}

impl fmt::Debug for CacheKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CacheKey")
            .field("provider", &self.provider)
            .field("token_url", &self.token_url)
            .field("client_id", &self.client_id)
            .field("scopes", &self.scopes)
            .field("audiences", &self.audiences)
            // Extra parameters are caller-defined; show their names only.
            .field("params", &self.params.iter().map(|(k, _)| k).collect::<Vec<_>>())
            .field("fingerprint", &self.fingerprint)
            .finish()
    }
}

impl fmt::Display for CacheKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.provider, &self.fingerprint[..16])
    }
}

/// Builds a [`CacheKey`].
#[derive(Debug, Clone)]
pub struct CacheKeyBuilder {
    provider: String,
    token_url: String,
    client_id: String,
    scopes: Vec<String>,
    audiences: Vec<String>,
    params: Vec<(String, String)>,
}

impl CacheKeyBuilder {
    /// Adds scopes (order and duplicates do not matter).
    pub fn scopes<I, T>(mut self, scopes: I) -> Self
    where
        I: IntoIterator<Item = T>,
        T: Into<String>,
    {
        self.scopes.extend(scopes.into_iter().map(Into::into));
        self
    }

    /// Adds an audience or resource indicator.
    pub fn audience(mut self, audience: impl Into<String>) -> Self {
        self.audiences.push(audience.into());
        self
    }

    /// Adds an extra token-request parameter that changes what token is issued.
    pub fn param(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.params.push((name.into(), value.into()));
        self
    }

    /// Finishes the key.
    pub fn build(mut self) -> CacheKey {
        self.scopes.sort();
        self.scopes.dedup();
        self.audiences.sort();
        self.audiences.dedup();
        self.params.sort();
        let mut h = Sha256::new();
        // Length-prefixed parts, so ("ab","c") and ("a","bc") differ.
        let mut part = |s: &str| {
            h.update((s.len() as u64).to_le_bytes());
            h.update(s.as_bytes());
        };
        part(&self.provider);
        part(&self.token_url);
        part(&self.client_id);
        for list in [&self.scopes, &self.audiences] {
            part(&list.len().to_string());
            list.iter().for_each(|s| part(s));
        }
        part(&self.params.len().to_string());
        for (k, v) in &self.params {
            part(k);
            part(v);
        }
        let fingerprint = h.finalize().iter().map(|b| format!("{b:02x}")).collect();
        CacheKey {
            provider: self.provider,
            token_url: self.token_url,
            client_id: self.client_id,
            scopes: self.scopes,
            audiences: self.audiences,
            params: self.params,
            fingerprint,
        }
    }
}

/// Headers and query parameters added to every API request.
#[derive(Debug, Clone, Default)]
pub struct RequestExtras {
    headers: HeaderMap,
    query: Vec<(String, String)>,
}

impl RequestExtras {
    /// Nothing extra.
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
    /// marked sensitive, so it is never logged.
    pub fn secret_header(mut self, name: &str, value: &SecretValue) -> Result<Self> {
        let (name, mut value) = header_pair(name, value.expose_secret())?;
        value.set_sensitive(true);
        self.headers.append(name, value);
        Ok(self)
    }

    /// Adds a query parameter.
    pub fn query(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.query.push((name.into(), value.into()));
        self
    }

    /// The headers.
    pub fn headers(&self) -> &HeaderMap {
        &self.headers
    }

    /// The query parameters.
    pub fn query_params(&self) -> &[(String, String)] {
        &self.query
    }

    /// Whether there is nothing to add.
    pub fn is_empty(&self) -> bool {
        self.headers.is_empty() && self.query.is_empty()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_ignores_scope_order_and_duplicates() {
        let a = CacheKey::builder("oauth2", "https://idp/token", "c").scopes(["b", "a", "a"]).build();
        let b = CacheKey::builder("oauth2", "https://idp/token", "c").scopes(["a", "b"]).build();
        assert_eq!(a, b);
        assert_eq!(a.fingerprint(), b.fingerprint());
        assert_eq!(a.fingerprint().len(), 64);
    }

    #[test]
    fn every_part_changes_the_fingerprint() {
        let base = || CacheKey::builder("oauth2", "https://idp/token", "c").scopes(["a"]);
        let keys = [
            base().build(),
            CacheKey::builder("santedb", "https://idp/token", "c").scopes(["a"]).build(),
            CacheKey::builder("oauth2", "https://idp/token2", "c").scopes(["a"]).build(),
            CacheKey::builder("oauth2", "https://idp/token", "d").scopes(["a"]).build(),
            base().scopes(["b"]).build(),
            base().audience("https://fhir").build(),
            base().param("tenant", "1").build(),
            base().param("tenant", "2").build(),
        ];
        for (i, a) in keys.iter().enumerate() {
            for b in &keys[i + 1..] {
                assert_ne!(a.fingerprint(), b.fingerprint(), "{a:?} vs {b:?}");
            }
        }
    }

    #[test]
    fn extras_validate_and_hide_secrets() {
        assert!(RequestExtras::new().header("bad header", "v").is_err());
        assert!(RequestExtras::new().header("x-partnerid", "line\nbreak").is_err());
        let extras = RequestExtras::new()
            .secret_header("Ocp-Apim-Subscription-Key", &SecretValue::new("canary-sub-key"))
            .map(|e| e.query("_format", "json"));
        let Ok(extras) = extras else { panic!("valid header refused") };
        assert!(!format!("{extras:?}").contains("canary"));
        assert_eq!(extras.query_params(), [("_format".to_owned(), "json".to_owned())]);
    }
}
