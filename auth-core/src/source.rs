//! Where tokens come from: the [`CredentialSource`] trait and the [`CacheKey`]
//! that names what a source hands out. What a vendor adds to API requests is not a
//! source's business: see [`ApiProfile`](crate::ApiProfile).
//!
//! A source only knows how to talk to its identity provider. How tokens are kept,
//! shared and refreshed is the token manager's business, so every vendor gets
//! single flight, refresh ahead and stale-while-error without writing any of it.

use std::fmt;
use std::sync::Arc;
use std::time::SystemTime;

use async_trait::async_trait;
use sha2::{Digest, Sha256};

use crate::clock::{Clock, SystemClock};
use crate::dpop::Dpop;
use crate::error::Result;
use crate::secret::RefreshToken;
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

    /// The DPoP key its tokens are bound to, if the source uses DPoP: API
    /// requests then prove possession of it (see [`crate::dpop`]).
    fn dpop(&self) -> Option<&Dpop> {
        None
    }
}

/// A source that can ask for other scopes: the same client, provider and
/// settings with exactly `scopes` (see [`TokenManager::scoped`](crate::TokenManager::scoped),
/// which keeps one token per scope set).
pub trait WithScopes: CredentialSource + Sized {
    /// The same source, asking for exactly `scopes` (its own are replaced).
    fn with_scopes(&self, scopes: &[String]) -> Result<Self>;

    /// The scopes it asks for, sorted.
    fn scopes(&self) -> &[String] {
        self.cache_key().scopes()
    }
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
    fn dpop(&self) -> Option<&Dpop> {
        (**self).dpop()
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

    /// The thumbprint of the DPoP key the tokens are bound to, if they are (see
    /// [`crate::dpop`]): tokens bound to one key are never shared with a client
    /// holding another key, or none.
    pub fn dpop_jkt(&self) -> Option<&str> {
        self.params.iter().find(|(k, _)| k == DPOP_JKT).map(|(_, v)| v.as_str())
    }

    /// The same key for tokens bound to the DPoP key of thumbprint `jkt`.
    pub fn bound_to(&self, jkt: &str) -> CacheKey {
        self.with_param(DPOP_JKT, jkt)
    }

    /// The same key with the parameter `name` set to `value` (replacing any
    /// value it had).
    pub fn with_param(&self, name: &str, value: &str) -> CacheKey {
        let mut builder = CacheKey::builder(&self.provider, &self.token_url, &self.client_id)
            .scopes(self.scopes.iter().cloned());
        builder.audiences = self.audiences.clone();
        builder.params = self.params.iter().filter(|(k, _)| k != name).cloned().collect();
        builder.param(name, value).build()
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

/// The parameter of a [`CacheKey`] naming the DPoP key tokens are bound to.
const DPOP_JKT: &str = "dpop_jkt";

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
}
