//! Every request to an identity provider, built one way: the grant, how the client
//! authenticates ([`ClientAuth`]), what the request asks for ([`GrantParams`]),
//! extra parameters and headers, and the body format. The generic source and
//! every vendor build on [`TokenRequest`]; [`TokenEndpoint`](crate::endpoint::TokenEndpoint)
//! sends it.
//!
//! A request knows which of its parts are secret: a value given as a secret
//! parameter or header, the client secret and its Basic encoding, a refresh token,
//! an assertion. When a server echoes any of them into its error text, it is
//! replaced by `[redacted]` before the error exists, so scrubbing cannot be
//! forgotten by a caller. Every value is wiped from memory when the request is
//! dropped.
//!
//! ```
//! use auth_core::ClientSecret;
//! use auth_core::request::{ClientAuth, ClientAuthMethod, TokenRequest};
//!
//! let client = ClientAuth::new("my-client", ClientSecret::new("s3cret"), ClientAuthMethod::ClientSecretBasic);
//! let request = TokenRequest::grant("client_credentials").client_auth(&client).param("scope", "system/Patient.rs");
//! assert!(!format!("{request:?}").contains("s3cret"));
//! ```

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use reqwest::Method;
use reqwest::header::{AUTHORIZATION, HeaderMap, HeaderName, HeaderValue};
use zeroize::Zeroizing;

use crate::error::{Error, Result};
use crate::secret::ClientSecret;
use crate::source::CacheKey;

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
    /// As they are, for servers that do not decode (SanteDB, Aidbox). A `:` in the
    /// client id cannot be sent this way and is refused when building.
    Raw,
}

/// A client id and secret, and how they are presented.
#[derive(Debug, Clone)]
pub struct ClientAuth {
    id: String,
    secret: ClientSecret,
    method: ClientAuthMethod,
    basic: BasicEncoding,
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

    /// Sets how the credentials are presented.
    pub fn with_method(mut self, method: ClientAuthMethod) -> Self {
        self.method = method;
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

    /// How Basic credentials are encoded.
    pub fn basic_encoding(&self) -> BasicEncoding {
        self.basic
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
}

/// `id:secret` as RFC 6749 §2.3.1 wants it (each form-url-encoded) or raw.
pub fn basic_credentials(id: &str, secret: &str, encoding: BasicEncoding) -> Zeroizing<String> {
    match encoding {
        BasicEncoding::FormUrlEncoded => {
            let enc =
                |s: &str| Zeroizing::new(form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>());
            Zeroizing::new(format!("{}:{}", enc(id).as_str(), enc(secret).as_str()))
        }
        BasicEncoding::Raw => Zeroizing::new(format!("{id}:{secret}")),
    }
}

/// What a token request asks for: scopes, audience, resource indicators and extra
/// parameters. Everything here changes which token is issued, so all of it goes
/// into the cache key ([`GrantParams::cache_key`]).
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

    /// Replaces the scopes.
    pub fn set_scopes<I, T>(&mut self, scopes: I)
    where
        I: IntoIterator<Item = T>,
        T: Into<String>,
    {
        self.scopes = scopes.into_iter().map(Into::into).collect();
    }

    /// Sets the `audience` parameter.
    pub fn set_audience(&mut self, audience: impl Into<String>) {
        self.audience = Some(audience.into());
    }

    /// Adds a `resource` indicator (RFC 8707).
    pub fn add_resource(&mut self, resource: impl Into<String>) {
        self.resources.push(resource.into());
    }

    /// Adds another parameter. Its value is treated as a secret in error messages.
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
}

/// The body format of a [`TokenRequest`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BodyFormat {
    /// `application/x-www-form-urlencoded`, as RFC 6749 wants.
    #[default]
    Form,
    /// A JSON object of strings, for servers that take JSON (Aidbox).
    Json,
    /// No body (a `DELETE`).
    None,
}

/// A body ready to send: its content type and bytes (wiped on drop).
pub(crate) type Body = (&'static str, Zeroizing<Vec<u8>>);

struct Param {
    name: String,
    value: Zeroizing<String>,
    secret: bool,
}

/// A request to an identity provider: a token grant, or a revocation, sign-out or
/// session close, which carry tokens too.
///
/// Built by chaining; a header value HTTP cannot carry is reported when the
/// request is sent, as a configuration error that does not quote it.
pub struct TokenRequest {
    method: Method,
    params: Vec<Param>,
    headers: HeaderMap,
    format: BodyFormat,
    secrets: Vec<Zeroizing<String>>,
    error: Option<Error>,
}

impl fmt::Debug for TokenRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Values hold client secrets, assertions and tokens: names only.
        f.debug_struct("TokenRequest")
            .field("method", &self.method)
            .field("params", &self.params.iter().map(|p| p.name.as_str()).collect::<Vec<_>>())
            .field("headers", &self.headers.keys().collect::<Vec<_>>())
            .field("format", &self.format)
            .finish_non_exhaustive()
    }
}

impl TokenRequest {
    /// A `POST` with a form body and no parameters yet: revocation (RFC 7009), a
    /// vendor's sign-out, or a grant whose parameters must come in a given order.
    pub fn post() -> Self {
        Self {
            method: Method::POST,
            params: Vec::new(),
            headers: HeaderMap::new(),
            format: BodyFormat::Form,
            secrets: Vec::new(),
            error: None,
        }
    }

    /// A token request for `grant_type` (`client_credentials`, `refresh_token`, …).
    pub fn grant(grant_type: &str) -> Self {
        Self::post().param("grant_type", grant_type)
    }

    /// A `DELETE` without a body (Aidbox closes a Session this way).
    pub fn delete() -> Self {
        Self { method: Method::DELETE, format: BodyFormat::None, ..Self::post() }
    }

    /// Adds a parameter.
    pub fn param(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.params.push(Param { name: name.into(), value: Zeroizing::new(value.into()), secret: false });
        self
    }

    /// Adds a parameter whose value is secret (a client secret, a refresh token, an
    /// assertion): it is redacted wherever a server echoes it.
    pub fn secret_param(mut self, name: impl Into<String>, value: &str) -> Self {
        self.secrets.push(Zeroizing::new(value.to_owned()));
        self.params.push(Param { name: name.into(), value: Zeroizing::new(value.to_owned()), secret: true });
        self
    }

    /// Adds the parameters of `grant`: `scope`, `audience`, `resource` and the extra
    /// ones (whose values are treated as secrets).
    pub fn grant_params(mut self, grant: &GrantParams) -> Self {
        if let Some(scope) = grant.scope() {
            self = self.param("scope", scope);
        }
        if let Some(aud) = &grant.audience {
            self = self.param("audience", aud.as_str());
        }
        for r in &grant.resources {
            self = self.param("resource", r.as_str());
        }
        for (k, v) in &grant.params {
            self = self.secret_param(k.as_str(), v);
        }
        self
    }

    /// Authenticates the client as `client` says: an `Authorization: Basic` header,
    /// or `client_id` and `client_secret` in the body (a JSON body for
    /// [`ClientAuthMethod::JsonBody`]).
    pub fn client_auth(self, client: &ClientAuth) -> Self {
        match client.method {
            ClientAuthMethod::ClientSecretBasic => self.basic_auth(
                AUTHORIZATION,
                "Basic",
                &client.id,
                client.secret.expose_secret(),
                client.basic,
            ),
            ClientAuthMethod::ClientSecretPost => self.client_in_body(client),
            ClientAuthMethod::JsonBody => self.client_in_body(client).json(),
        }
    }

    /// `client_id` and `client_secret` in the body, whatever the client's method.
    pub fn client_in_body(self, client: &ClientAuth) -> Self {
        self.param("client_id", client.id.as_str())
            .secret_param("client_secret", client.secret.expose_secret())
    }

    /// Adds a header `name: {scheme} base64(id:secret)`, marked sensitive (for the
    /// client, or for a device as SanteDB authenticates nodes). The secret and the
    /// base64 text are redacted wherever a server echoes them.
    pub fn basic_auth(
        mut self,
        name: HeaderName,
        scheme: &str,
        id: &str,
        secret: &str,
        encoding: BasicEncoding,
    ) -> Self {
        self.secrets.push(Zeroizing::new(secret.to_owned()));
        let credentials = basic_credentials(id, secret, encoding);
        let value = Zeroizing::new(format!("{scheme} {}", STANDARD.encode(credentials.as_bytes())));
        self.secret_header(name, &value)
    }

    /// Adds a header.
    pub fn header(mut self, name: HeaderName, value: &str) -> Self {
        match HeaderValue::from_str(value) {
            Ok(value) => {
                self.headers.append(name, value);
            }
            Err(_) => self.fail(format!("the value of header `{name}` has characters HTTP does not allow")),
        }
        self
    }

    /// Adds a header whose value is secret: marked sensitive (never logged by the
    /// HTTP stack), and redacted wherever a server echoes it, whole or any of its
    /// parts (`Basic xyz` also redacts `xyz`).
    pub fn secret_header(mut self, name: HeaderName, value: &str) -> Self {
        match HeaderValue::from_str(value) {
            Ok(mut header) => {
                header.set_sensitive(true);
                self.headers.append(name, header);
                // `Scheme credentials`: the credentials are the secret (so an echo
                // reads `Basic [redacted]`); a bare value is secret whole.
                let mut parts = value.split_whitespace();
                match (parts.next(), parts.next()) {
                    (Some(_scheme), Some(_)) => {
                        self.secrets
                            .extend(value.split_whitespace().skip(1).map(|p| Zeroizing::new(p.to_owned())));
                    }
                    _ => self.secrets.push(Zeroizing::new(value.to_owned())),
                }
            }
            Err(_) => {
                self.fail(format!("a credential for header `{name}` has characters HTTP does not allow"))
            }
        }
        self
    }

    /// Sends the parameters as a JSON object of strings instead of a form.
    pub fn json(mut self) -> Self {
        if self.format == BodyFormat::Form {
            self.format = BodyFormat::Json;
        }
        self
    }

    /// The HTTP method.
    pub fn method(&self) -> &Method {
        &self.method
    }

    /// The body format.
    pub fn format(&self) -> BodyFormat {
        self.format
    }

    /// The value of parameter `name`, if it is not secret.
    pub fn param_value(&self, name: &str) -> Option<&str> {
        self.params.iter().find(|p| p.name == name && !p.secret).map(|p| p.value.as_str())
    }

    /// Everything secret this request carries, for scrubbing a server's echo.
    pub(crate) fn secrets(&self) -> Vec<&str> {
        self.secrets.iter().map(|s| s.as_str()).collect()
    }

    /// The headers to send.
    pub(crate) fn headers(&self) -> &HeaderMap {
        &self.headers
    }

    /// The body: its content type and bytes (wiped on drop), or `None` for no body.
    /// Fails with the first invalid header given while building.
    pub(crate) fn body(&self) -> Result<Option<Body>> {
        if let Some(error) = &self.error {
            return Err(error.clone());
        }
        Ok(match self.format {
            BodyFormat::None => None,
            BodyFormat::Form => {
                let mut text = Zeroizing::new(String::new());
                {
                    let mut form = form_urlencoded::Serializer::new(&mut *text);
                    for p in &self.params {
                        form.append_pair(&p.name, &p.value);
                    }
                }
                Some(("application/x-www-form-urlencoded", Zeroizing::new(text.as_bytes().to_vec())))
            }
            BodyFormat::Json => {
                // Written straight into one buffer sized up front (JSON escaping at
                // most sextuples a character), so no copy of a secret is left
                // behind unwiped by a reallocation or an intermediate `Value`.
                let capacity =
                    self.params.iter().map(|p| 6 * (p.name.len() + p.value.len()) + 6).sum::<usize>() + 2;
                let mut bytes = Zeroizing::new(Vec::with_capacity(capacity));
                let unwritable = |_| Error::internal("a token request body could not be written");
                bytes.push(b'{');
                for (i, p) in self.params.iter().enumerate() {
                    if i > 0 {
                        bytes.push(b',');
                    }
                    serde_json::to_writer(&mut *bytes, &p.name).map_err(unwritable)?;
                    bytes.push(b':');
                    serde_json::to_writer(&mut *bytes, p.value.as_str()).map_err(unwritable)?;
                }
                bytes.push(b'}');
                Some(("application/json", bytes))
            }
        })
    }

    fn fail(&mut self, message: String) {
        if self.error.is_none() {
            self.error = Some(Error::configuration(message));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body_text(request: &TokenRequest) -> String {
        let Ok(Some((_, bytes))) = request.body() else { panic!("a body") };
        String::from_utf8(bytes.to_vec()).unwrap_or_default()
    }

    #[test]
    fn basic_encoding_per_rfc_6749() {
        assert_eq!(
            basic_credentials("id: %+/= x", "p: %+/= s", BasicEncoding::FormUrlEncoded).as_str(),
            "id%3A+%25%2B%2F%3D+x:p%3A+%25%2B%2F%3D+s"
        );
        assert_eq!(basic_credentials("id", "p: %+/= s", BasicEncoding::Raw).as_str(), "id:p: %+/= s");
        // Unreserved characters are left alone.
        assert_eq!(
            basic_credentials(
                "a.b_c*d",
                "qlcEtboF-H5XdK4x1t-arL5GaG4svF9TkL5a",
                BasicEncoding::FormUrlEncoded
            )
            .as_str(),
            "a.b_c*d:qlcEtboF-H5XdK4x1t-arL5GaG4svF9TkL5a"
        );
    }

    #[test]
    fn every_client_auth_method_knows_its_secrets() {
        let secret = ClientSecret::new("p:s x");
        for method in [
            ClientAuthMethod::ClientSecretBasic,
            ClientAuthMethod::ClientSecretPost,
            ClientAuthMethod::JsonBody,
        ] {
            let client = ClientAuth::new("id", secret.clone(), method);
            let request = TokenRequest::grant("client_credentials").client_auth(&client);
            let secrets = request.secrets();
            assert!(secrets.contains(&"p:s x"), "{method:?}: {secrets:?}");
            if method == ClientAuthMethod::ClientSecretBasic {
                let encoded = STANDARD.encode("id:p%3As+x");
                assert!(secrets.contains(&encoded.as_str()), "{secrets:?}");
                assert!(request.headers()[AUTHORIZATION].is_sensitive());
                assert_eq!(body_text(&request), "grant_type=client_credentials");
            } else if method == ClientAuthMethod::JsonBody {
                assert_eq!(
                    serde_json::from_str::<serde_json::Value>(&body_text(&request)).ok(),
                    Some(
                        serde_json::json!({"grant_type":"client_credentials","client_id":"id","client_secret":"p:s x"})
                    )
                );
            } else {
                assert_eq!(
                    body_text(&request),
                    "grant_type=client_credentials&client_id=id&client_secret=p%3As+x"
                );
            }
            assert!(!format!("{request:?}").contains("p:s x"));
        }
    }

    #[test]
    fn grant_params_keep_their_order_and_extra_values_are_secret() {
        let mut grant = GrantParams::default();
        grant.add_scopes(["a", "b"]);
        grant.set_audience("https://fhir");
        grant.add_resource("https://r");
        grant.add_param("tenant", "t-secret-1");
        let request = TokenRequest::grant("client_credentials").grant_params(&grant);
        assert_eq!(
            body_text(&request),
            "grant_type=client_credentials&scope=a+b&audience=https%3A%2F%2Ffhir&resource=https%3A%2F%2Fr&tenant=t-secret-1"
        );
        assert_eq!(request.secrets(), ["t-secret-1"]);
        assert_eq!(request.param_value("scope"), Some("a b"));
        assert_eq!(request.param_value("tenant"), None, "secret values are not handed out");
    }

    #[test]
    fn a_bad_header_is_a_configuration_error_that_does_not_quote_it() {
        let request =
            TokenRequest::post().secret_header(HeaderName::from_static("x-key"), "line\nbreak-secret");
        let Err(e) = request.body() else { panic!("refused") };
        assert_eq!(e.kind(), crate::ErrorKind::Configuration);
        assert!(!e.to_string().contains("break-secret"), "{e}");
        let delete = TokenRequest::delete().secret_header(AUTHORIZATION, "Bearer tok-123");
        assert!(matches!(delete.body(), Ok(None)));
        assert_eq!(delete.secrets(), ["tok-123"]);
    }
}
