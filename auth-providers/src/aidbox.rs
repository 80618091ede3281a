//! Aidbox (Health Samurai): the client credentials grant at `POST {base}/auth/token`,
//! with the client authenticated by HTTP Basic and a form body (the default), by a
//! JSON body, or by `client_id`/`client_secret` in a form body; tokens that are
//! opaque or JWTs; a rotating refresh token when the Client is configured for one;
//! and revocation by closing the token's Session (`DELETE {base}/Session`, or
//! `DELETE {base}/fhir/Session` on newer versions).
//!
//! Aidbox's answers are lenient about RFC 6749: an opaque token comes without
//! `expires_in`, some versions send `"refresh_token": null`. Expiry is therefore
//! `expires_in` when sent, else the JWT `exp`, else the default lifetime (5 minutes,
//! see [`AidboxSourceBuilder::default_lifetime`]); when both `expires_in` and
//! `exp` are present the earlier wins (on Aidbox they agree).
//!
//! ```no_run
//! use auth_core::{AuthClient, ClientSecret, TokenManager};
//! use auth_providers::aidbox::{AidboxAuthStyle, AidboxSource, SessionEndpoint};
//!
//! # async fn demo() -> auth_core::Result<()> {
//! let source = AidboxSource::builder(
//!     "https://box.example.org",
//!     "api-client",
//!     ClientSecret::new(std::env::var("AIDBOX_CLIENT_SECRET").unwrap_or_default()),
//! )
//! .auth_style(AidboxAuthStyle::Json)
//! .audience("https://box.example.org/fhir")
//! .session_endpoint(SessionEndpoint::Fhir)
//! .build()?;
//! let fhir_base = source.fhir_base().clone();
//! let tokens = TokenManager::new(source);
//! let client = AuthClient::new(tokens.clone())?;
//! let patients = client.get(format!("{fhir_base}/Patient")).send().await?;
//! # let _ = patients;
//! tokens.revoke().await?; // closes the Aidbox Session
//! # Ok(()) }
//! ```

use std::time::Duration;

use async_trait::async_trait;
use auth_core::endpoint::{EndpointConfig, EndpointOptions, TokenEndpoint, check_url};
use auth_core::request::{BasicEncoding, ClientAuth, ClientAuthMethod, GrantParams, TokenRequest};
use auth_core::token::ExpiryPolicy;
use auth_core::{
    ApiProfile, CacheKey, ClientSecret, CredentialSource, Error, FetchContext, RefreshToken, Result, Token,
};
use reqwest::header::AUTHORIZATION;
use url::Url;
use zeroize::Zeroizing;

/// The provider kind in cache keys.
pub const PROVIDER: &str = "aidbox";

/// How the client id and secret travel to `POST {base}/auth/token`. Aidbox documents
/// the first two; its SMART configuration also advertises `client_secret_post`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AidboxAuthStyle {
    /// `Authorization: Basic base64(id:secret)` and a form body
    /// `grant_type=client_credentials` (RFC 6749 §4.4.2).
    #[default]
    BasicForm,
    /// A JSON body `{"grant_type", "client_id", "client_secret"}`, no `Authorization`.
    Json,
    /// A form body with `client_id` and `client_secret` (`client_secret_post`).
    FormPost,
}

impl AidboxAuthStyle {
    fn method(self) -> ClientAuthMethod {
        match self {
            Self::BasicForm => ClientAuthMethod::ClientSecretBasic,
            Self::Json => ClientAuthMethod::JsonBody,
            Self::FormPost => ClientAuthMethod::ClientSecretPost,
        }
    }
}

/// Where [`CredentialSource::revoke`] closes the token's Session.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum SessionEndpoint {
    /// `DELETE {base}/Session`, as most of Aidbox's pages show.
    #[default]
    Root,
    /// `DELETE {base}/fhir/Session`, as the current client-credentials page shows.
    Fhir,
    /// `DELETE` on this URL.
    Url(String),
    /// Do not close Sessions: `revoke` only drops the token locally.
    Disabled,
}

/// How a refresh-token request authenticates the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RefreshAuth {
    /// Exactly as the client credentials request does (RFC 6749 §6: a confidential
    /// client authenticates when refreshing).
    #[default]
    Client,
    /// Only `client_id` in the body, no secret, as Aidbox's refresh example shows.
    ClientIdOnly,
}

/// Gets Aidbox tokens with the client credentials grant, refreshes them with the
/// refresh token when Aidbox issues one, and revokes them by closing their Session.
#[derive(Debug)]
pub struct AidboxSource {
    base: String,
    fhir_base: Url,
    endpoint: TokenEndpoint,
    client: ClientAuth,
    grant: GrantParams,
    session_url: Option<Url>,
    refresh: bool,
    refresh_auth: RefreshAuth,
    key: CacheKey,
}

/// Builds an [`AidboxSource`].
#[derive(Debug)]
pub struct AidboxSourceBuilder {
    base: String,
    token_url: Option<String>,
    client_id: String,
    secret: ClientSecret,
    style: AidboxAuthStyle,
    basic: BasicEncoding,
    grant: GrantParams,
    session: SessionEndpoint,
    refresh: bool,
    refresh_auth: RefreshAuth,
    endpoint: EndpointConfig,
}

impl AidboxSource {
    /// Starts a source for `client_id` of the Aidbox at `base_url` (the URL the box
    /// is served at, without `/fhir`: `https://box.example.org`).
    pub fn builder(
        base_url: impl Into<String>,
        client_id: impl Into<String>,
        secret: ClientSecret,
    ) -> AidboxSourceBuilder {
        AidboxSourceBuilder {
            base: base_url.into(),
            token_url: None,
            client_id: client_id.into(),
            secret,
            style: AidboxAuthStyle::default(),
            // Aidbox documents the header as `base64(Client.id + ':' + Client.secret)`:
            // nothing is url-encoded first, so neither is anything here.
            basic: BasicEncoding::Raw,
            grant: GrantParams::default(),
            session: SessionEndpoint::default(),
            refresh: true,
            refresh_auth: RefreshAuth::default(),
            // The spec's order is expires_in, then JWT exp, then the default: a box
            // whose clock runs behind ours must not shrink every token.
            endpoint: {
                let mut config = EndpointConfig::default();
                config.parse.expiry = config.parse.expiry.with_expires_in_first(true);
                config
            },
        }
    }

    /// The box's base URL, without a trailing slash.
    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// The FHIR API base: `{base}/fhir`.
    pub fn fhir_base(&self) -> &Url {
        &self.fhir_base
    }

    /// The token URL (`{base}/auth/token` unless overridden).
    pub fn token_url(&self) -> &Url {
        self.endpoint.url()
    }

    /// Where Sessions are closed, if revocation is enabled.
    pub fn session_url(&self) -> Option<&Url> {
        self.session_url.as_ref()
    }

    /// The client id.
    pub fn client_id(&self) -> &str {
        self.client.id()
    }

    /// How the client authenticates.
    pub fn auth_style(&self) -> AidboxAuthStyle {
        match self.client.method() {
            ClientAuthMethod::ClientSecretBasic => AidboxAuthStyle::BasicForm,
            ClientAuthMethod::JsonBody => AidboxAuthStyle::Json,
            ClientAuthMethod::ClientSecretPost => AidboxAuthStyle::FormPost,
        }
    }

    /// The token endpoint.
    pub fn endpoint(&self) -> &TokenEndpoint {
        &self.endpoint
    }

    /// What Aidbox's API wants of requests: nothing beyond the bearer.
    pub fn api_profile(&self) -> ApiProfile {
        ApiProfile::new()
    }
}

#[async_trait]
impl CredentialSource for AidboxSource {
    fn cache_key(&self) -> &CacheKey {
        &self.key
    }

    fn dpop(&self) -> Option<&auth_core::dpop::Dpop> {
        self.endpoint.config().dpop.as_ref()
    }

    async fn fetch(&self, ctx: &FetchContext) -> Result<Token> {
        let request =
            TokenRequest::grant("client_credentials").grant_params(&self.grant).client_auth(&self.client);
        self.endpoint.request_token(ctx, request).await
    }

    fn supports_refresh(&self) -> bool {
        self.refresh
    }

    async fn refresh(&self, ctx: &FetchContext, refresh_token: &RefreshToken) -> Result<Option<Token>> {
        if !self.refresh {
            return Ok(None);
        }
        let mut request = TokenRequest::grant("refresh_token");
        if self.refresh_auth == RefreshAuth::ClientIdOnly {
            request = request.param("client_id", self.client.id());
        }
        request = request.secret_param("refresh_token", refresh_token.expose_secret());
        if let Some(scope) = self.grant.scope() {
            request = request.param("scope", scope);
        }
        request = match self.refresh_auth {
            RefreshAuth::Client => request.client_auth(&self.client),
            // Only the id, in the body format of the client's style, no secret.
            RefreshAuth::ClientIdOnly if self.client.method() == ClientAuthMethod::JsonBody => request.json(),
            RefreshAuth::ClientIdOnly => request,
        };
        self.endpoint.request_token(ctx, request).await.map(Some)
    }

    async fn revoke(&self, token: &Token) -> Result<bool> {
        let Some(url) = &self.session_url else { return Ok(false) };
        // The token endpoint's client: no redirects, its timeout and trust roots,
        // because this request carries the bearer token.
        let request = TokenRequest::delete().secret_header(AUTHORIZATION, &bearer(token));
        match self.endpoint.send(url, request).await {
            Ok(_) => Ok(true),
            // The Session is already closed or expired: what revoking wanted is true.
            Err(e) if e.status() == Some(401) => {
                tracing::debug!(status = 401, "aidbox session was no longer active");
                Ok(true)
            }
            Err(e) => Err(e),
        }
    }
}

/// `Bearer {token}`, wiped on drop.
fn bearer(token: &Token) -> Zeroizing<String> {
    Zeroizing::new(format!("Bearer {}", token.access_token().expose_secret()))
}

impl AidboxSourceBuilder {
    /// How the client authenticates (default HTTP Basic with a form body).
    pub fn auth_style(mut self, style: AidboxAuthStyle) -> Self {
        self.style = style;
        self
    }

    /// How the id and secret are put into the Basic header. Default
    /// [`BasicEncoding::Raw`], as Aidbox documents it; choose
    /// [`BasicEncoding::FormUrlEncoded`] for a proxy that follows RFC 6749 §2.3.1.
    pub fn basic_encoding(mut self, encoding: BasicEncoding) -> Self {
        self.basic = encoding;
        self
    }

    /// Adds scopes to request (Aidbox SMART clients need `system/…` scopes).
    pub fn scopes<I, T>(mut self, scopes: I) -> Self
    where
        I: IntoIterator<Item = T>,
        T: Into<String>,
    {
        self.grant.add_scopes(scopes);
        self
    }

    /// Sets the `audience` parameter: Aidbox puts it into the JWT `aud` claim.
    pub fn audience(mut self, audience: impl Into<String>) -> Self {
        self.grant.set_audience(audience);
        self
    }

    /// Uses this token URL instead of `{base}/auth/token`.
    pub fn token_url(mut self, url: impl Into<String>) -> Self {
        self.token_url = Some(url.into());
        self
    }

    /// Where revocation closes the Session (default `DELETE {base}/Session`).
    pub fn session_endpoint(mut self, session: SessionEndpoint) -> Self {
        self.session = session;
        self
    }

    /// Uses refresh tokens when Aidbox issues them (default on); off, every new token
    /// comes from a new client credentials request.
    pub fn refresh(mut self, on: bool) -> Self {
        self.refresh = on;
        self
    }

    /// How refresh requests authenticate (default: as the token request does).
    pub fn refresh_auth(mut self, auth: RefreshAuth) -> Self {
        self.refresh_auth = auth;
        self
    }

    /// Lifetime assumed when Aidbox says nothing (an opaque token without
    /// `expires_in`); default 5 minutes. An Aidbox opaque token may live much longer:
    /// a longer value here means fewer token requests, a rejected token is replaced
    /// either way.
    pub fn default_lifetime(mut self, lifetime: Duration) -> Self {
        self.endpoint.parse.expiry = self.endpoint.parse.expiry.clone().with_default_lifetime(lifetime);
        self
    }

    /// The whole expiry policy (unit, default lifetime, bounds, JWT `exp`).
    pub fn expiry(mut self, policy: ExpiryPolicy) -> Self {
        self.endpoint.parse.expiry = policy;
        self
    }

    /// Checks the configuration and builds the source.
    pub fn build(self) -> Result<AidboxSource> {
        let allow_http = self.endpoint.allow_insecure_http;
        let base = check_url(self.base.trim(), allow_http)?;
        if base.query().is_some() || base.fragment().is_some() {
            return Err(Error::configuration(
                "the Aidbox base URL must not have a query or fragment; give the URL the box is served at",
            ));
        }
        let base = base.as_str().trim_end_matches('/').to_owned();
        let token_url = self.token_url.unwrap_or_else(|| format!("{base}/auth/token"));
        let client =
            ClientAuth::new(self.client_id, self.secret, self.style.method()).with_basic_encoding(self.basic);
        client.check()?;
        let endpoint = TokenEndpoint::new(&token_url, self.endpoint)?;
        let session_url = match self.session {
            SessionEndpoint::Root => Some(format!("{base}/Session")),
            SessionEndpoint::Fhir => Some(format!("{base}/fhir/Session")),
            SessionEndpoint::Url(url) => Some(url),
            SessionEndpoint::Disabled => None,
        };
        let session_url = session_url.as_deref().map(|u| endpoint.check_url(u)).transpose()?;
        let key = endpoint.config().bind_cache_key(self.grant.cache_key(
            PROVIDER,
            endpoint.url().as_str(),
            client.id(),
        ));
        let fhir_base = check_url(&format!("{base}/fhir"), allow_http)?;
        Ok(AidboxSource {
            base,
            fhir_base,
            endpoint,
            client,
            grant: self.grant,
            session_url,
            refresh: self.refresh,
            refresh_auth: self.refresh_auth,
            key,
        })
    }
}

impl EndpointOptions for AidboxSourceBuilder {
    fn endpoint_config(&mut self) -> &mut EndpointConfig {
        &mut self.endpoint
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn builder(base: &str) -> AidboxSourceBuilder {
        AidboxSource::builder(base, "api-client", ClientSecret::new("verysecret-canary"))
    }

    #[test]
    fn urls_follow_the_base() {
        let src = builder("https://box.example.org/").build().unwrap();
        assert_eq!(src.token_url().as_str(), "https://box.example.org/auth/token");
        assert_eq!(src.fhir_base().as_str(), "https://box.example.org/fhir");
        assert_eq!(src.session_url().map(Url::as_str), Some("https://box.example.org/Session"));
        let src = builder("https://host/box").session_endpoint(SessionEndpoint::Fhir).build().unwrap();
        assert_eq!(src.token_url().as_str(), "https://host/box/auth/token");
        assert_eq!(src.session_url().map(Url::as_str), Some("https://host/box/fhir/Session"));
        let src = builder("https://host").session_endpoint(SessionEndpoint::Disabled).build().unwrap();
        assert!(src.session_url().is_none());
    }

    #[test]
    fn build_refuses_what_cannot_work() {
        assert!(builder("http://box.example.org").build().is_err());
        assert!(builder("https://box.example.org?x=1").build().is_err());
        assert!(builder("not a url").build().is_err());
        assert!(
            builder("https://h")
                .session_endpoint(SessionEndpoint::Url("http://evil".into()))
                .build()
                .is_err()
        );
        assert!(builder("https://h").timeout(Duration::ZERO).build().is_err());
        let colon = AidboxSource::builder("https://h", "a:b", ClientSecret::new("s"));
        assert!(colon.build().is_err(), "raw Basic cannot carry a colon in the id");
        let colon = AidboxSource::builder("https://h", "a:b", ClientSecret::new("s"));
        assert!(colon.auth_style(AidboxAuthStyle::Json).build().is_ok());
    }

    #[test]
    fn nothing_prints_the_secret() {
        let b = builder("https://box.example.org").audience("https://aud");
        assert!(!format!("{b:?}").contains("canary"));
        let src = b.build().unwrap();
        assert!(!format!("{src:?}").contains("canary"));
        assert_eq!(src.cache_key().provider(), PROVIDER);
        assert!(!format!("{:?}", src.cache_key()).contains("canary"));
    }
}
