//! The generic OAuth 2.0 client credentials grant (RFC 6749 §4.4), for any
//! standards-following identity provider.
//!
//! ```no_run
//! use auth_core::oauth2::{ClientAuthMethod, ClientCredentials};
//! use auth_core::{ClientSecret, TokenManager};
//!
//! # async fn demo() -> auth_core::Result<()> {
//! let source = ClientCredentials::builder(
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

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use reqwest::header::{AUTHORIZATION, HeaderMap};
use reqwest::{Certificate, Identity};
use url::Url;
use zeroize::Zeroizing;

use crate::clock::Clock;
use crate::endpoint::{EndpointConfig, TokenEndpoint, TokenRequestBody, sensitive_header};
use crate::error::{Error, Result};
use crate::secret::{ClientSecret, RefreshToken};
use crate::source::{CacheKey, CredentialSource, RequestExtras};
use crate::token::{ExpiryPolicy, Token};

/// How the client proves who it is to the token endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ClientAuthMethod {
    /// HTTP Basic with the client id and secret (RFC 6749 §2.3.1), the method every
    /// server must support.
    #[default]
    ClientSecretBasic,
    /// `client_id` and `client_secret` in the form body.
    ClientSecretPost,
    /// `client_id` and `client_secret` in a JSON body, for servers that take JSON.
    JsonBody,
}

/// How the id and secret are put into the Basic header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BasicEncoding {
    /// Form-url-encode each before base64, as RFC 6749 §2.3.1 requires.
    #[default]
    FormUrlEncoded,
    /// As they are, for servers that do not decode (SanteDB). A `:` in the client id
    /// cannot be sent this way and is refused when building.
    Raw,
}

/// Gets tokens with the client credentials grant.
#[derive(Debug, Clone)]
pub struct ClientCredentials {
    endpoint: TokenEndpoint,
    client_id: String,
    secret: ClientSecret,
    auth: ClientAuthMethod,
    basic: BasicEncoding,
    scopes: Vec<String>,
    audience: Option<String>,
    resources: Vec<String>,
    params: Vec<(String, String)>,
    revocation_url: Option<Url>,
    extras: Option<RequestExtras>,
    key: CacheKey,
}

/// Builds [`ClientCredentials`].
#[derive(Debug)]
pub struct ClientCredentialsBuilder {
    token_url: String,
    client_id: String,
    secret: ClientSecret,
    provider: String,
    auth: ClientAuthMethod,
    basic: BasicEncoding,
    scopes: Vec<String>,
    audience: Option<String>,
    resources: Vec<String>,
    params: Vec<(String, String)>,
    revocation_url: Option<String>,
    extras: Option<RequestExtras>,
    endpoint: EndpointConfig,
}

impl ClientCredentials {
    /// Starts a source for `client_id` at `token_url`.
    pub fn builder(
        token_url: impl Into<String>,
        client_id: impl Into<String>,
        secret: ClientSecret,
    ) -> ClientCredentialsBuilder {
        ClientCredentialsBuilder {
            token_url: token_url.into(),
            client_id: client_id.into(),
            secret,
            provider: "oauth2".into(),
            auth: ClientAuthMethod::default(),
            basic: BasicEncoding::default(),
            scopes: Vec::new(),
            audience: None,
            resources: Vec::new(),
            params: Vec::new(),
            revocation_url: None,
            extras: None,
            endpoint: EndpointConfig::default(),
        }
    }

    /// The client id.
    pub fn client_id(&self) -> &str {
        &self.client_id
    }

    /// The token endpoint.
    pub fn endpoint(&self) -> &TokenEndpoint {
        &self.endpoint
    }

    /// Headers and form fields that authenticate the client, per the configured method.
    fn authenticate(&self, form: &mut Vec<(String, Zeroizing<String>)>) -> Result<HeaderMap> {
        let mut headers = HeaderMap::new();
        match self.auth {
            ClientAuthMethod::ClientSecretBasic => {
                let credentials = basic_credentials(&self.client_id, &self.secret, self.basic);
                let value = Zeroizing::new(format!("Basic {}", STANDARD.encode(credentials.as_bytes())));
                headers.insert(AUTHORIZATION, sensitive_header(&value)?);
            }
            ClientAuthMethod::ClientSecretPost | ClientAuthMethod::JsonBody => {
                form.push(("client_id".into(), Zeroizing::new(self.client_id.clone())));
                form.push(("client_secret".into(), Zeroizing::new(self.secret.expose_secret().to_owned())));
            }
        }
        Ok(headers)
    }

    fn body(&self, form: Vec<(String, Zeroizing<String>)>) -> TokenRequestBody {
        if self.auth != ClientAuthMethod::JsonBody {
            return TokenRequestBody::Form(form);
        }
        let mut object = serde_json::Map::new();
        for (k, v) in form {
            object.insert(k, serde_json::Value::String(v.to_string()));
        }
        TokenRequestBody::Json(Zeroizing::new(serde_json::Value::Object(object).to_string()))
    }

    fn grant_form(&self, grant_type: &str) -> Vec<(String, Zeroizing<String>)> {
        let mut form = vec![("grant_type".to_owned(), Zeroizing::new(grant_type.to_owned()))];
        if !self.scopes.is_empty() {
            form.push(("scope".into(), Zeroizing::new(self.scopes.join(" "))));
        }
        if let Some(aud) = &self.audience {
            form.push(("audience".into(), Zeroizing::new(aud.clone())));
        }
        for r in &self.resources {
            form.push(("resource".into(), Zeroizing::new(r.clone())));
        }
        for (k, v) in &self.params {
            form.push((k.clone(), Zeroizing::new(v.clone())));
        }
        form
    }

    async fn send(&self, mut form: Vec<(String, Zeroizing<String>)>) -> Result<Token> {
        let headers = self.authenticate(&mut form)?;
        let body = self.body(form);
        self.endpoint.request_token(headers, body, &[self.secret.expose_secret()]).await
    }
}

/// `id:secret` as RFC 6749 §2.3.1 wants it (each form-url-encoded) or raw.
pub fn basic_credentials(id: &str, secret: &ClientSecret, encoding: BasicEncoding) -> Zeroizing<String> {
    match encoding {
        BasicEncoding::FormUrlEncoded => {
            let enc = |s: &str| form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
            Zeroizing::new(format!("{}:{}", enc(id), Zeroizing::new(enc(secret.expose_secret())).as_str()))
        }
        BasicEncoding::Raw => Zeroizing::new(format!("{id}:{}", secret.expose_secret())),
    }
}

#[async_trait]
impl CredentialSource for ClientCredentials {
    fn cache_key(&self) -> &CacheKey {
        &self.key
    }

    async fn fetch(&self) -> Result<Token> {
        self.send(self.grant_form("client_credentials")).await
    }

    fn supports_refresh(&self) -> bool {
        true
    }

    async fn refresh(&self, refresh_token: &RefreshToken) -> Result<Option<Token>> {
        let mut form = vec![
            ("grant_type".to_owned(), Zeroizing::new("refresh_token".to_owned())),
            ("refresh_token".to_owned(), Zeroizing::new(refresh_token.expose_secret().to_owned())),
        ];
        if !self.scopes.is_empty() {
            form.push(("scope".into(), Zeroizing::new(self.scopes.join(" "))));
        }
        self.send(form).await.map(Some)
    }

    async fn revoke(&self, token: &Token) -> Result<bool> {
        let Some(url) = &self.revocation_url else { return Ok(false) };
        let mut form = vec![
            ("token".to_owned(), Zeroizing::new(token.access_token().expose_secret().to_owned())),
            ("token_type_hint".to_owned(), Zeroizing::new("access_token".to_owned())),
        ];
        let headers = self.authenticate(&mut form)?;
        let body = self.body(form);
        self.endpoint.post_status(url, headers, body, &[self.secret.expose_secret()]).await?;
        Ok(true)
    }

    fn request_extras(&self) -> Option<&RequestExtras> {
        self.extras.as_ref()
    }
}

impl ClientCredentialsBuilder {
    /// How the client authenticates (default `client_secret_basic`).
    pub fn auth_method(mut self, method: ClientAuthMethod) -> Self {
        self.auth = method;
        self
    }

    /// How Basic credentials are encoded (default form-url-encoded, per RFC 6749).
    pub fn basic_encoding(mut self, encoding: BasicEncoding) -> Self {
        self.basic = encoding;
        self
    }

    /// Names the provider kind in the cache key (default `oauth2`).
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
        self.scopes.extend(scopes.into_iter().map(Into::into));
        self
    }

    /// Sets the `audience` parameter.
    pub fn audience(mut self, audience: impl Into<String>) -> Self {
        self.audience = Some(audience.into());
        self
    }

    /// Adds a `resource` indicator (RFC 8707).
    pub fn resource(mut self, resource: impl Into<String>) -> Self {
        self.resources.push(resource.into());
        self
    }

    /// Adds another token-request parameter (part of the cache key).
    pub fn param(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.params.push((name.into(), value.into()));
        self
    }

    /// Enables [`CredentialSource::revoke`] against an RFC 7009 endpoint.
    pub fn revocation_url(mut self, url: impl Into<String>) -> Self {
        self.revocation_url = Some(url.into());
        self
    }

    /// Headers and query parameters to add to every API request.
    pub fn request_extras(mut self, extras: RequestExtras) -> Self {
        self.extras = Some(extras);
        self
    }

    /// Timeout of each token request (default 10 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.endpoint.timeout = timeout;
        self
    }

    /// Cap on the token response body (default 1 MiB).
    pub fn max_body(mut self, bytes: usize) -> Self {
        self.endpoint.max_body = bytes;
        self
    }

    /// Allows `http://` to non-loopback hosts. Only for closed test networks.
    pub fn allow_insecure_http(mut self, allow: bool) -> Self {
        self.endpoint.allow_insecure_http = allow;
        self
    }

    /// Trusts an extra root certificate.
    pub fn add_root_certificate(mut self, cert: Certificate) -> Self {
        self.endpoint.root_certificates.push(cert);
        self
    }

    /// Presents a client certificate (mutual TLS).
    pub fn identity(mut self, identity: Identity) -> Self {
        self.endpoint.identity = Some(identity);
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

    /// Stamps responses with this clock (share it with the token manager in tests).
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.endpoint.clock = Arc::new(clock);
        self
    }

    /// Checks the configuration and builds the source.
    pub fn build(self) -> Result<ClientCredentials> {
        if self.client_id.is_empty() {
            return Err(Error::configuration("the client id is empty"));
        }
        if self.auth == ClientAuthMethod::ClientSecretBasic
            && self.basic == BasicEncoding::Raw
            && self.client_id.contains(':')
        {
            return Err(Error::configuration(
                "the client id contains `:`, which raw HTTP Basic cannot carry; \
                 use form-url-encoded Basic or client_secret_post",
            ));
        }
        let endpoint = TokenEndpoint::new(&self.token_url, self.endpoint)?;
        let revocation_url = self.revocation_url.as_deref().map(|u| endpoint.check_url(u)).transpose()?;
        let mut key = CacheKey::builder(self.provider, endpoint.url().as_str(), self.client_id.clone())
            .scopes(self.scopes.iter().cloned());
        if let Some(aud) = &self.audience {
            key = key.audience(aud.clone());
        }
        for r in &self.resources {
            key = key.audience(format!("resource={r}"));
        }
        for (k, v) in &self.params {
            key = key.param(k.clone(), v.clone());
        }
        Ok(ClientCredentials {
            endpoint,
            client_id: self.client_id,
            secret: self.secret,
            auth: self.auth,
            basic: self.basic,
            scopes: self.scopes,
            audience: self.audience,
            resources: self.resources,
            params: self.params,
            revocation_url,
            extras: self.extras,
            key: key.build(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_encoding_per_rfc_6749() {
        let secret = ClientSecret::new("p: %+/= s");
        assert_eq!(
            basic_credentials("id: %+/= x", &secret, BasicEncoding::FormUrlEncoded).as_str(),
            "id%3A+%25%2B%2F%3D+x:p%3A+%25%2B%2F%3D+s"
        );
        assert_eq!(basic_credentials("id", &secret, BasicEncoding::Raw).as_str(), "id:p: %+/= s");
        // Unreserved characters are left alone.
        let plain = ClientSecret::new("qlcEtboF-H5XdK4x1t-arL5GaG4svF9TkL5a");
        assert_eq!(
            basic_credentials("a.b_c*d", &plain, BasicEncoding::FormUrlEncoded).as_str(),
            "a.b_c*d:qlcEtboF-H5XdK4x1t-arL5GaG4svF9TkL5a"
        );
    }

    #[test]
    fn build_checks_configuration() {
        let b = |url: &str, id: &str| ClientCredentials::builder(url, id, ClientSecret::new("s"));
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
        let src = ClientCredentials::builder("https://idp/token", "c", ClientSecret::new("hunter2-canary"))
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
