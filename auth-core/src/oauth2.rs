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

use std::fmt;

use async_trait::async_trait;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use reqwest::header::{AUTHORIZATION, HeaderMap};
use url::Url;
use zeroize::Zeroizing;

use crate::endpoint::{EndpointConfig, TokenEndpoint, TokenRequestBody, sensitive_header};
use crate::error::{Error, Result};
use crate::secret::{ClientSecret, RefreshToken};
use crate::source::{CacheKey, CredentialSource, FetchContext, RequestExtras};
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

/// What a token request asks for: scopes, audience, resource indicators and extra
/// parameters. Everything here changes which token is issued, so all of it goes
/// into the cache key.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct GrantParams {
    scopes: Vec<String>,
    audience: Option<String>,
    resources: Vec<String>,
    params: Vec<(String, String)>,
}

impl fmt::Debug for GrantParams {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GrantParams")
            .field("scopes", &self.scopes)
            .field("audience", &self.audience)
            .field("resources", &self.resources)
            // Extra parameters can carry secrets (an API key, an assertion): names only.
            .field("params", &self.params.iter().map(|(k, _)| k).collect::<Vec<_>>())
            .finish()
    }
}

impl GrantParams {
    /// Adds scopes.
    pub fn add_scopes<I, T>(&mut self, scopes: I)
    where
        I: IntoIterator<Item = T>,
        T: Into<String>,
    {
        self.scopes.extend(scopes.into_iter().map(Into::into));
    }

    /// Sets the `audience` parameter.
    pub fn set_audience(&mut self, audience: impl Into<String>) {
        self.audience = Some(audience.into());
    }

    /// Adds a `resource` indicator (RFC 8707).
    pub fn add_resource(&mut self, resource: impl Into<String>) {
        self.resources.push(resource.into());
    }

    /// Adds another parameter.
    pub fn add_param(&mut self, name: impl Into<String>, value: impl Into<String>) {
        self.params.push((name.into(), value.into()));
    }

    /// The scopes, in the order given.
    pub fn scopes(&self) -> &[String] {
        &self.scopes
    }

    /// The scopes joined by spaces, as the `scope` parameter wants them.
    pub fn scope(&self) -> Option<String> {
        (!self.scopes.is_empty()).then(|| self.scopes.join(" "))
    }

    /// Appends these parameters to a token request form.
    pub fn append_to(&self, form: &mut Vec<(String, Zeroizing<String>)>) {
        if let Some(scope) = self.scope() {
            form.push(("scope".into(), Zeroizing::new(scope)));
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
    }

    /// The cache key of a request with these parameters.
    pub fn cache_key(&self, provider: &str, token_url: &str, client_id: &str) -> CacheKey {
        let mut key = CacheKey::builder(provider, token_url, client_id).scopes(self.scopes.iter().cloned());
        if let Some(aud) = &self.audience {
            key = key.audience(aud.clone());
        }
        // Keyed as the form field they become, so equal requests get equal keys.
        for r in &self.resources {
            key = key.param("resource", r.clone());
        }
        for (k, v) in &self.params {
            key = key.param(k.clone(), v.clone());
        }
        key.build()
    }

    /// Parameter values, for scrubbing from echoed errors (they may carry secrets).
    fn values(&self) -> impl Iterator<Item = &str> {
        self.params.iter().map(|(_, v)| v.as_str())
    }
}

/// A client id and secret, and how they are presented.
#[derive(Clone)]
pub struct ClientAuth {
    id: String,
    secret: ClientSecret,
    method: ClientAuthMethod,
    basic: BasicEncoding,
}

impl fmt::Debug for ClientAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientAuth")
            .field("id", &self.id)
            .field("secret", &self.secret)
            .field("method", &self.method)
            .field("basic", &self.basic)
            .finish()
    }
}

impl ClientAuth {
    /// `id` and `secret`, presented with `method`.
    pub fn new(id: impl Into<String>, secret: ClientSecret, method: ClientAuthMethod) -> Self {
        Self { id: id.into(), secret, method, basic: BasicEncoding::default() }
    }

    /// Sets how Basic credentials are encoded.
    pub fn with_basic_encoding(mut self, basic: BasicEncoding) -> Self {
        self.basic = basic;
        self
    }

    /// The client id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The secret.
    pub fn secret(&self) -> &ClientSecret {
        &self.secret
    }

    /// The presentation method.
    pub fn method(&self) -> ClientAuthMethod {
        self.method
    }

    /// Refuses combinations that cannot be sent.
    pub fn check(&self) -> Result<()> {
        if self.id.is_empty() {
            return Err(Error::configuration("the client id is empty"));
        }
        if self.method == ClientAuthMethod::ClientSecretBasic
            && self.basic == BasicEncoding::Raw
            && self.id.contains(':')
        {
            return Err(Error::configuration(
                "the client id contains `:`, which raw HTTP Basic cannot carry; \
                 use form-url-encoded Basic or client_secret_post",
            ));
        }
        Ok(())
    }

    /// Authenticates a request: returns the headers to send and adds form fields.
    pub fn apply(&self, form: &mut Vec<(String, Zeroizing<String>)>) -> Result<HeaderMap> {
        let mut headers = HeaderMap::new();
        match self.method {
            ClientAuthMethod::ClientSecretBasic => {
                let credentials = basic_credentials(&self.id, &self.secret, self.basic);
                let value = Zeroizing::new(format!("Basic {}", STANDARD.encode(credentials.as_bytes())));
                headers.insert(AUTHORIZATION, sensitive_header(&value)?);
            }
            ClientAuthMethod::ClientSecretPost | ClientAuthMethod::JsonBody => {
                form.push(("client_id".into(), Zeroizing::new(self.id.clone())));
                form.push(("client_secret".into(), Zeroizing::new(self.secret.expose_secret().to_owned())));
            }
        }
        Ok(headers)
    }

    /// The base64 text of the Basic credentials when this method sends them, for
    /// scrubbing a server's echo of the `Authorization` header from its errors.
    pub fn basic_encoded(&self) -> Option<Zeroizing<String>> {
        (self.method == ClientAuthMethod::ClientSecretBasic).then(|| {
            let credentials = basic_credentials(&self.id, &self.secret, self.basic);
            Zeroizing::new(STANDARD.encode(credentials.as_bytes()))
        })
    }

    /// The body in this method's format.
    pub fn body(&self, form: Vec<(String, Zeroizing<String>)>) -> TokenRequestBody {
        if self.method == ClientAuthMethod::JsonBody { json_body(form) } else { TokenRequestBody::Form(form) }
    }
}

/// A form as a JSON object of strings.
pub fn json_body(form: Vec<(String, Zeroizing<String>)>) -> TokenRequestBody {
    let mut object = serde_json::Map::new();
    for (k, v) in form {
        object.insert(k, serde_json::Value::String(v.to_string()));
    }
    TokenRequestBody::Json(Zeroizing::new(serde_json::Value::Object(object).to_string()))
}

/// Gets tokens with the client credentials grant.
#[derive(Debug, Clone)]
pub struct ClientCredentials {
    endpoint: TokenEndpoint,
    client: ClientAuth,
    grant: GrantParams,
    revocation_url: Option<Url>,
    extras: Option<RequestExtras>,
    key: CacheKey,
}

/// Builds [`ClientCredentials`].
#[derive(Debug)]
pub struct ClientCredentialsBuilder {
    token_url: String,
    provider: String,
    client: ClientAuth,
    grant: GrantParams,
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
            provider: "oauth2".into(),
            client: ClientAuth::new(client_id, secret, ClientAuthMethod::default()),
            grant: GrantParams::default(),
            revocation_url: None,
            extras: None,
            endpoint: EndpointConfig::default(),
        }
    }

    /// The client id.
    pub fn client_id(&self) -> &str {
        self.client.id()
    }

    /// The token endpoint.
    pub fn endpoint(&self) -> &TokenEndpoint {
        &self.endpoint
    }

    async fn send(
        &self,
        ctx: &FetchContext,
        mut form: Vec<(String, Zeroizing<String>)>,
        sent_secret: Option<&str>,
    ) -> Result<Token> {
        let headers = self.client.apply(&mut form)?;
        let basic = self.client.basic_encoded();
        let mut secrets = self.secrets(sent_secret);
        secrets.extend(basic.as_deref().map(String::as_str));
        self.endpoint.request_token(ctx, headers, self.client.body(form), &secrets).await
    }

    /// Everything secret this request sent, for scrubbing from echoed errors.
    fn secrets<'a>(&'a self, sent: Option<&'a str>) -> Vec<&'a str> {
        let mut all = vec![self.client.secret().expose_secret()];
        all.extend(sent);
        all.extend(self.grant.values());
        all
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

    async fn fetch(&self, ctx: &FetchContext) -> Result<Token> {
        let mut form = vec![("grant_type".to_owned(), Zeroizing::new("client_credentials".to_owned()))];
        self.grant.append_to(&mut form);
        self.send(ctx, form, None).await
    }

    fn supports_refresh(&self) -> bool {
        true
    }

    async fn refresh(&self, ctx: &FetchContext, refresh_token: &RefreshToken) -> Result<Option<Token>> {
        let mut form = vec![
            ("grant_type".to_owned(), Zeroizing::new("refresh_token".to_owned())),
            ("refresh_token".to_owned(), Zeroizing::new(refresh_token.expose_secret().to_owned())),
        ];
        if let Some(scope) = self.grant.scope() {
            form.push(("scope".into(), Zeroizing::new(scope)));
        }
        self.send(ctx, form, Some(refresh_token.expose_secret())).await.map(Some)
    }

    async fn revoke(&self, token: &Token) -> Result<bool> {
        let Some(url) = &self.revocation_url else { return Ok(false) };
        let value = token.access_token().expose_secret();
        let mut form = vec![
            ("token".to_owned(), Zeroizing::new(value.to_owned())),
            ("token_type_hint".to_owned(), Zeroizing::new("access_token".to_owned())),
        ];
        let headers = self.client.apply(&mut form)?;
        let basic = self.client.basic_encoded();
        let mut secrets = self.secrets(Some(value));
        secrets.extend(basic.as_deref().map(String::as_str));
        self.endpoint.post_status(url, headers, self.client.body(form), &secrets).await?;
        Ok(true)
    }

    fn request_extras(&self) -> Option<&RequestExtras> {
        self.extras.as_ref()
    }
}

impl ClientCredentialsBuilder {
    /// How the client authenticates (default `client_secret_basic`).
    pub fn auth_method(mut self, method: ClientAuthMethod) -> Self {
        self.client.method = method;
        self
    }

    /// How Basic credentials are encoded (default form-url-encoded, per RFC 6749).
    pub fn basic_encoding(mut self, encoding: BasicEncoding) -> Self {
        self.client.basic = encoding;
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
        self.grant.add_scopes(scopes);
        self
    }

    /// Sets the `audience` parameter.
    pub fn audience(mut self, audience: impl Into<String>) -> Self {
        self.grant.set_audience(audience);
        self
    }

    /// Adds a `resource` indicator (RFC 8707).
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

    /// Headers and query parameters to add to every API request.
    pub fn request_extras(mut self, extras: RequestExtras) -> Self {
        self.extras = Some(extras);
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
    pub fn build(self) -> Result<ClientCredentials> {
        self.client.check()?;
        let endpoint = TokenEndpoint::new(&self.token_url, self.endpoint)?;
        let revocation_url = self.revocation_url.as_deref().map(|u| endpoint.check_url(u)).transpose()?;
        let key = self.grant.cache_key(&self.provider, endpoint.url().as_str(), self.client.id());
        Ok(ClientCredentials {
            endpoint,
            client: self.client,
            grant: self.grant,
            revocation_url,
            extras: self.extras,
            key,
        })
    }
}

impl crate::endpoint::EndpointOptions for ClientCredentialsBuilder {
    fn endpoint_config(&mut self) -> &mut crate::endpoint::EndpointConfig {
        &mut self.endpoint
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::endpoint::EndpointOptions;
    use std::time::Duration;

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
