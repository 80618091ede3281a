//! The generic OAuth 2.0 client credentials grant (RFC 6749 §4.4), for any
//! standards-following identity provider.
//!
//! ```no_run
//! use auth_core::oauth2::OAuth2Source;
//! use auth_core::request::ClientAuthMethod;
//! use auth_core::{ClientSecret, TokenManager};
//!
//! # async fn demo() -> auth_core::Result<()> {
//! let source = OAuth2Source::builder(
//!     "https://idp.example/oauth2/token",
//!     "my-client",
//!     ClientSecret::new(std::env::var("CLIENT_SECRET").unwrap_or_default()),
//! )
//! .auth_method(ClientAuthMethod::ClientSecretPost)
//! .scopes(["system/Patient.rs"])
//! .audience("https://fhir.example/r4")
//! .build()?;
//! let tokens = TokenManager::new(source);
//! let token = tokens.token().await?;
//! # let _ = token; Ok(()) }
//! ```

use async_trait::async_trait;
use url::Url;

use crate::dpop::Dpop;
use crate::endpoint::{EndpointConfig, EndpointOptions, TokenEndpoint};
use crate::error::Result;
use crate::profile::ApiProfile;
use crate::request::{BasicEncoding, ClientAuth, ClientAuthMethod, GrantParams, TokenRequest};
use crate::secret::{ClientSecret, RefreshToken};
use crate::source::{CacheKey, CredentialSource, FetchContext, WithScopes};
use crate::token::{ExpiryPolicy, Token};

/// The provider kind in cache keys (unless renamed with
/// [`OAuth2SourceBuilder::provider_name`]).
pub const PROVIDER: &str = "oauth2";

/// Gets tokens with the client credentials grant from any RFC 6749 server.
#[derive(Debug, Clone)]
pub struct OAuth2Source {
    endpoint: TokenEndpoint,
    client: ClientAuth,
    grant: GrantParams,
    revocation_url: Option<Url>,
    key: CacheKey,
}

/// Builds an [`OAuth2Source`].
#[derive(Debug)]
pub struct OAuth2SourceBuilder {
    token_url: String,
    provider: String,
    client: ClientAuth,
    grant: GrantParams,
    revocation_url: Option<String>,
    endpoint: EndpointConfig,
}

impl OAuth2Source {
    /// Starts a source for `client_id` at `token_url`.
    pub fn builder(
        token_url: impl Into<String>,
        client_id: impl Into<String>,
        secret: ClientSecret,
    ) -> OAuth2SourceBuilder {
        OAuth2SourceBuilder {
            token_url: token_url.into(),
            provider: PROVIDER.into(),
            client: ClientAuth::new(client_id, secret, ClientAuthMethod::default()),
            grant: GrantParams::default(),
            revocation_url: None,
            endpoint: EndpointConfig::default(),
        }
    }

    /// The client id.
    pub fn client_id(&self) -> &str {
        self.client.id()
    }

    /// The token URL.
    pub fn token_url(&self) -> &Url {
        self.endpoint.url()
    }

    /// The token endpoint.
    pub fn endpoint(&self) -> &TokenEndpoint {
        &self.endpoint
    }

    /// What the API wants of requests: nothing beyond the bearer, for a
    /// standards-following server (build your own [`ApiProfile`] for more).
    pub fn api_profile(&self) -> ApiProfile {
        ApiProfile::new()
    }
}

#[async_trait]
impl CredentialSource for OAuth2Source {
    fn cache_key(&self) -> &CacheKey {
        &self.key
    }

    async fn fetch(&self, ctx: &FetchContext) -> Result<Token> {
        let request =
            TokenRequest::grant("client_credentials").grant_params(&self.grant).client_auth(&self.client);
        self.endpoint.request_token(ctx, request).await
    }

    fn supports_refresh(&self) -> bool {
        true
    }

    async fn refresh(&self, ctx: &FetchContext, refresh_token: &RefreshToken) -> Result<Option<Token>> {
        let mut request =
            TokenRequest::grant("refresh_token").secret_param("refresh_token", refresh_token.expose_secret());
        if let Some(scope) = self.grant.scope() {
            request = request.param("scope", scope);
        }
        self.endpoint.request_token(ctx, request.client_auth(&self.client)).await.map(Some)
    }

    async fn revoke(&self, token: &Token) -> Result<bool> {
        let Some(url) = &self.revocation_url else { return Ok(false) };
        let request = TokenRequest::post()
            .secret_param("token", token.access_token().expose_secret())
            .param("token_type_hint", "access_token")
            .client_auth(&self.client);
        self.endpoint.send(url, request).await?;
        Ok(true)
    }

    fn dpop(&self) -> Option<&Dpop> {
        self.endpoint.config().dpop.as_ref()
    }
}

impl WithScopes for OAuth2Source {
    fn with_scopes(&self, scopes: &[String]) -> Result<Self> {
        let mut grant = self.grant.clone();
        grant.set_scopes(scopes.iter().cloned());
        let key = self.endpoint.config().bind_cache_key(grant.cache_key(
            self.key.provider(),
            self.endpoint.url().as_str(),
            self.client.id(),
        ));
        Ok(Self { grant, key, ..self.clone() })
    }
}

impl OAuth2SourceBuilder {
    /// How the client authenticates (default `client_secret_basic`).
    pub fn auth_method(mut self, method: ClientAuthMethod) -> Self {
        self.client = self.client.with_method(method);
        self
    }

    /// How Basic credentials are encoded (default form-url-encoded, per RFC 6749).
    pub fn basic_encoding(mut self, encoding: BasicEncoding) -> Self {
        self.client = self.client.with_basic_encoding(encoding);
        self
    }

    /// Names the provider kind in the cache key (default [`PROVIDER`]).
    pub fn provider_name(mut self, name: impl Into<String>) -> Self {
        self.provider = name.into();
        self
    }

    /// Adds scopes to request.
    pub fn scopes<I, T>(mut self, scopes: I) -> Self
    where
        I: IntoIterator<Item = T>,
        T: Into<String>,
    {
        self.grant.add_scopes(scopes);
        self
    }

    /// Sets the `audience` parameter: the API the token is for, for servers that
    /// take it (Auth0, Aidbox); part of the cache key, so one manager per audience.
    pub fn audience(mut self, audience: impl Into<String>) -> Self {
        self.grant.set_audience(audience);
        self
    }

    /// Adds a `resource` indicator (RFC 8707): the absolute URI of the API the
    /// token is for, which servers put in its audience; repeat for several. Part
    /// of the cache key, so one manager per set of resources.
    pub fn resource(mut self, resource: impl Into<String>) -> Self {
        self.grant.add_resource(resource);
        self
    }

    /// Adds another token-request parameter (part of the cache key; its value is
    /// treated as secret in error messages).
    pub fn param(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.grant.add_param(name, value);
        self
    }

    /// Enables [`CredentialSource::revoke`] against an RFC 7009 endpoint.
    pub fn revocation_url(mut self, url: impl Into<String>) -> Self {
        self.revocation_url = Some(url.into());
        self
    }

    /// How expiry is worked out (unit of `expires_in`, default lifetime, bounds).
    pub fn expiry(mut self, policy: ExpiryPolicy) -> Self {
        self.endpoint.parse.expiry = policy;
        self
    }

    /// Accepts a `token_type` other than Bearer.
    pub fn accept_token_type(mut self, token_type: impl Into<String>) -> Self {
        self.endpoint.parse.extra_token_types.push(token_type.into());
        self
    }

    /// Checks the configuration and builds the source.
    pub fn build(self) -> Result<OAuth2Source> {
        self.client.check()?;
        let endpoint = TokenEndpoint::new(&self.token_url, self.endpoint)?;
        let revocation_url = self.revocation_url.as_deref().map(|u| endpoint.check_url(u)).transpose()?;
        let key = endpoint.config().bind_cache_key(self.grant.cache_key(
            &self.provider,
            endpoint.url().as_str(),
            self.client.id(),
        ));
        Ok(OAuth2Source { endpoint, client: self.client, grant: self.grant, revocation_url, key })
    }
}

impl EndpointOptions for OAuth2SourceBuilder {
    fn endpoint_config(&mut self) -> &mut EndpointConfig {
        &mut self.endpoint
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn build_checks_configuration() {
        let b = |url: &str, id: &str| OAuth2Source::builder(url, id, ClientSecret::new("s"));
        assert!(b("https://idp/token", "c").build().is_ok());
        assert!(b("https://idp/token", "").build().is_err());
        assert!(b("http://idp.example/token", "c").build().is_err());
        assert!(b("https://idp/token", "a:b").basic_encoding(BasicEncoding::Raw).build().is_err());
        assert!(b("https://idp/token", "a:b").build().is_ok());
        assert!(b("https://idp/token", "c").timeout(Duration::ZERO).build().is_err());
        assert!(b("https://idp/token", "c").revocation_url("http://idp.example/revoke").build().is_err());
    }

    #[test]
    fn cache_key_has_the_request_identity_but_no_secret() {
        let src = OAuth2Source::builder("https://idp/token", "c", ClientSecret::new("hunter2-canary"))
            .scopes(["b", "a"])
            .audience("https://fhir")
            .param("tenant", "t1")
            .build()
            .unwrap();
        let key = src.cache_key();
        assert_eq!(key.scopes(), ["a", "b"]);
        assert_eq!(key.client_id(), "c");
        assert!(!format!("{key:?} {key}").contains("hunter2"));
        assert!(!format!("{src:?}").contains("hunter2"));
    }
}
