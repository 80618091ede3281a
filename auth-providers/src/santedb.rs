//! SanteDB 2.x and 3.x: the OAuth 2.0 client credentials grant with node (device)
//! authentication, mutual TLS, id_token claims, refresh and sign-out.
//!
//! What SanteDB does differently from RFC 6749, and what this source does about it:
//!
//! | SanteDB | here |
//! |---|---|
//! | `POST {root}/auth/oauth2_token`, form body only; `client_id`/`client_secret` in the body | always a form; the client credentials go in the body |
//! | the calling machine (the *node*) authenticates too: 2.x `X-Device-Authorization: BASIC …`, 3.x `Authorization: Basic …`, or a client certificate | [`SanteDbSourceBuilder::device`], [`SanteDbSourceBuilder::client_certificate`]; the header follows [`SanteDbVersion`] |
//! | Basic credentials are split at every `:` and never url-decoded | sent raw; a 3.x device secret with `:` is refused when building |
//! | `expires_in` is milliseconds on 2.x, seconds on 3.x | the id_token's `exp` decides first, then `expires_in` in the version's unit |
//! | `scope=*` asks for every granted policy | the default scope |
//! | refresh wants the client credentials again, and may rotate the refresh token | sent; the manager stores the rotated token and falls back to client credentials |
//! | FHIR answers XML unless asked for `application/fhir+json` | added to every API request by [`SanteDbSource::api_profile`] |
//! | an invalid bearer is a **403** with `WWW-Authenticate: bearer … error="invalid_token"` | [`AuthClient`](auth_core::AuthClient) replays once on it |
//! | 3.x sign-out: `POST /auth/signout` with `id_token_hint` | [`CredentialSource::revoke`] |
//!
//! ```no_run
//! use auth_core::{AuthClient, ClientSecret, DeviceSecret, TokenManager};
//! use auth_providers::santedb::{SanteDbSource, SanteDbVersion};
//!
//! # async fn demo() -> auth_core::Result<()> {
//! let source = SanteDbSource::builder(
//!     "https://mpi.example:8443",
//!     "EXAMPLE_APPLICATION",
//!     ClientSecret::new(std::env::var("SANTEDB_CLIENT_SECRET").unwrap_or_default()),
//! )
//! .version(SanteDbVersion::V3)
//! .device("EXAMPLE_DEVICE_NODE", DeviceSecret::new(std::env::var("SANTEDB_DEVICE_SECRET").unwrap_or_default()))
//! .build()?;
//! let fhir = source.fhir_base().clone();
//! let client = AuthClient::builder(TokenManager::new(source.clone()))
//!     .http_client(source.api_http_client().clone())
//!     .profile(source.api_profile())
//!     .build()?;
//! let patients = client.get(format!("{fhir}/Patient?name=Chalmers")).send().await?;
//! # let _ = patients; Ok(()) }
//! ```

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use auth_core::client::same_origin_redirects;
use auth_core::endpoint::{EndpointConfig, EndpointOptions, TokenEndpoint};
use auth_core::error::ResponseProblem;
use auth_core::request::{BasicEncoding, ClientAuth, ClientAuthMethod, GrantParams, TokenRequest};
use auth_core::token::{ExpirySource, jwt_claims, jwt_exp, parse_token_response};
use auth_core::{
    ApiProfile, CacheKey, ClientSecret, CredentialSource, DeviceSecret, Error, ExpiresInUnit, ExpiryPolicy,
    FetchContext, IdToken, PrivateKeyPem, RefreshToken, Result, Token,
};
use reqwest::header::{AUTHORIZATION, HeaderName};
use reqwest::{Certificate, Identity};
use serde_json::{Map, Value};
use url::Url;
use zeroize::Zeroizing;

/// The provider kind in cache keys.
pub const PROVIDER: &str = "santedb";
/// The token endpoint, relative to the server root.
pub const TOKEN_PATH: &str = "/auth/oauth2_token";
/// The 3.x sign-out endpoint, relative to the server root.
pub const SIGNOUT_PATH: &str = "/auth/signout";
/// The FHIR base, relative to the server root (SanteDB's default).
pub const FHIR_PATH: &str = "/fhir";
/// The 2.x header carrying the device credentials.
pub const DEVICE_HEADER: &str = "X-Device-Authorization";
/// The `token_type` SanteDB sends when configured to hand out JWTs as access tokens.
pub const JWT_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:jwt";
/// The FHIR JSON media type, which SanteDB needs in `Accept` to answer in JSON
/// rather than XML. (The FHIR crate defines it too; the providers stand below it
/// and do not depend on it. `FhirClient` sends it on every request anyway: this
/// is for requests made with `AuthClient` directly.)
const FHIR_JSON: &str = "application/fhir+json";
/// The scope that asks for every policy the application was granted.
pub const ALL_POLICIES: &str = "*";

/// The id_token claim naming the application (client) the session belongs to.
pub const CLAIM_APPLICATION_ID: &str = "urn:santedb:org:claim:appid";
/// The id_token claim naming the device (node) the session belongs to.
pub const CLAIM_DEVICE_ID: &str = "urn:santedb:org:claim:devid";
/// The id_token claim naming the user, for user sessions.
pub const CLAIM_USER_ID: &str = "urn:santedb:org:claim:usrid";

/// The SanteDB server generation, which decides how the node authenticates and
/// what `expires_in` counts in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum SanteDbVersion {
    /// 2.x ("Montreal"): device credentials in `X-Device-Authorization`,
    /// `expires_in` in milliseconds.
    V2,
    /// 3.x: device credentials in `Authorization: Basic`, `expires_in` in seconds,
    /// sign-out at `/auth/signout`.
    #[default]
    V3,
}

impl SanteDbVersion {
    /// What this version's `expires_in` counts in.
    pub fn expires_in_unit(self) -> ExpiresInUnit {
        match self {
            Self::V2 => ExpiresInUnit::Milliseconds,
            Self::V3 => ExpiresInUnit::Seconds,
        }
    }

    /// Where this version reads the device credentials from.
    pub fn device_header(self) -> DeviceHeader {
        match self {
            Self::V2 => DeviceHeader::XDeviceAuthorization,
            Self::V3 => DeviceHeader::AuthorizationBasic,
        }
    }

    /// Whether this version has the `/auth/signout` endpoint.
    pub fn has_sign_out(self) -> bool {
        self == Self::V3
    }

    /// `2` or `3`.
    pub fn major(self) -> u8 {
        match self {
            Self::V2 => 2,
            Self::V3 => 3,
        }
    }
}

/// Which header carries the device credentials.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeviceHeader {
    /// `X-Device-Authorization: BASIC base64(id:secret)` (2.x, and the vendor's
    /// "Obtaining a session" guide). 2.x splits at the first `:`, so the secret may
    /// contain one.
    XDeviceAuthorization,
    /// `Authorization: Basic base64(id:secret)` (3.x). Split at every `:`, so the
    /// secret must not contain one.
    AuthorizationBasic,
}

/// How the calling machine proves who it is, as configured.
#[derive(Clone)]
enum Node {
    None,
    Device { id: String, secret: DeviceSecret },
    Certificate { cert_pem: String, key: PrivateKeyPem },
}

impl fmt::Debug for Node {
    // Not derived: a certificate chain prints as its size.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::None => f.write_str("None"),
            Self::Device { id, secret } => {
                f.debug_struct("Device").field("id", id).field("secret", secret).finish()
            }
            Self::Certificate { cert_pem, key } => f
                .debug_struct("Certificate")
                .field("cert_pem", &format_args!("<{} bytes>", cert_pem.len()))
                .field("key", key)
                .finish(),
        }
    }
}

/// The node authentication a built source uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum NodeAuth {
    /// No node authentication (the server must allow node-less client grants).
    None,
    /// Device id and secret in the given header.
    Device(DeviceHeader),
    /// A client certificate presented in the TLS handshake.
    ClientCertificate,
}

/// Gets SanteDB sessions with the client credentials grant.
#[derive(Clone)]
pub struct SanteDbSource {
    endpoint: TokenEndpoint,
    client: ClientAuth,
    grant: GrantParams,
    version: SanteDbVersion,
    device: Option<(HeaderName, String, DeviceSecret)>,
    node: NodeAuth,
    refresh: bool,
    signout_url: Option<Url>,
    fhir_base: Url,
    profile: ApiProfile,
    api_http: reqwest::Client,
    key: CacheKey,
}

impl fmt::Debug for SanteDbSource {
    // Not derived: the device header name and the HTTP client add only noise.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SanteDbSource")
            .field("endpoint", &self.endpoint)
            .field("client", &self.client)
            .field("grant", &self.grant)
            .field("version", &self.version)
            .field("device_id", &self.device.as_ref().map(|(_, id, _)| id))
            .field("node", &self.node)
            .field("refresh", &self.refresh)
            .field("signout_url", &self.signout_url.as_ref().map(Url::as_str))
            .field("fhir_base", &self.fhir_base.as_str())
            .field("profile", &self.profile)
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

/// Builds a [`SanteDbSource`] source.
pub struct SanteDbSourceBuilder {
    root: String,
    token_url: Option<String>,
    signout_url: Option<String>,
    fhir_base: Option<String>,
    client_id: String,
    secret: ClientSecret,
    version: SanteDbVersion,
    device_header: Option<DeviceHeader>,
    node: Node,
    scopes: Vec<String>,
    unit: Option<ExpiresInUnit>,
    expiry: ExpiryPolicy,
    refresh: bool,
    sign_out: Option<bool>,
    root_pems: Vec<Vec<u8>>,
    endpoint: EndpointConfig,
    profile: Option<ApiProfile>,
}

impl fmt::Debug for SanteDbSourceBuilder {
    // Not derived: the root certificates' PEM bytes add only noise.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SanteDbSourceBuilder")
            .field("root", &self.root)
            .field("token_url", &self.token_url)
            .field("client_id", &self.client_id)
            .field("secret", &self.secret)
            .field("version", &self.version)
            .field("device_header", &self.device_header)
            .field("node", &self.node)
            .field("scopes", &self.scopes)
            .field("endpoint", &self.endpoint)
            .finish_non_exhaustive()
    }
}

impl SanteDbSource {
    /// Starts a source for application `client_id` on the server at `root` (the
    /// token endpoint is `{root}/auth/oauth2_token`, the FHIR base `{root}/fhir`).
    pub fn builder(
        root: impl Into<String>,
        client_id: impl Into<String>,
        secret: ClientSecret,
    ) -> SanteDbSourceBuilder {
        SanteDbSourceBuilder {
            root: root.into(),
            token_url: None,
            signout_url: None,
            fhir_base: None,
            client_id: client_id.into(),
            secret,
            version: SanteDbVersion::default(),
            device_header: None,
            node: Node::None,
            scopes: Vec::new(),
            unit: None,
            expiry: ExpiryPolicy::default(),
            refresh: true,
            sign_out: None,
            root_pems: Vec::new(),
            endpoint: EndpointConfig::default(),
            profile: None,
        }
    }

    /// The application (client) id.
    pub fn client_id(&self) -> &str {
        self.client.id()
    }

    /// The server generation this source speaks to.
    pub fn version(&self) -> SanteDbVersion {
        self.version
    }

    /// How the node authenticates.
    pub fn node_auth(&self) -> NodeAuth {
        self.node
    }

    /// The token endpoint.
    pub fn token_url(&self) -> &Url {
        self.endpoint.url()
    }

    /// The sign-out endpoint, when [`CredentialSource::revoke`] signs out.
    pub fn signout_url(&self) -> Option<&Url> {
        self.signout_url.as_ref()
    }

    /// The FHIR base URL.
    pub fn fhir_base(&self) -> &Url {
        &self.fhir_base
    }

    /// What SanteDB's API wants of every request: `Accept: application/fhir+json`
    /// (it answers XML otherwise), plus what [`SanteDbSourceBuilder::api_profile`]
    /// added.
    pub fn api_profile(&self) -> ApiProfile {
        self.profile.clone()
    }

    /// The token endpoint's hardened HTTP client and settings.
    pub fn endpoint(&self) -> &TokenEndpoint {
        &self.endpoint
    }

    /// An HTTP client for API requests with the same TLS settings as token requests
    /// (extra root certificates, and the client certificate in mutual TLS), following
    /// same-origin redirects only. Hand it to
    /// [`AuthClientBuilder::http_client`](auth_core::AuthClientBuilder::http_client): a
    /// server that asks for a client certificate on the token endpoint usually asks
    /// for it on the FHIR endpoint too.
    pub fn api_http_client(&self) -> &reqwest::Client {
        &self.api_http
    }

    /// The claims of `token`'s id_token, read without checking the signature (fine
    /// for display and scheduling; use [`SanteDbSource::verify_claims`] to trust them).
    /// `Ok(None)` when the server sent no id_token.
    pub fn claims(&self, token: &Token) -> Result<Option<SanteDbClaims>> {
        token.id_token().map(SanteDbClaims::from_id_token).transpose()
    }

    /// The claims of `token`'s id_token after checking its HS256 signature with this
    /// application's client secret (how SanteDB signs when it has no RSA key). The
    /// expiry is not checked here: compare [`SanteDbClaims::expires_at`] with your clock.
    pub fn verify_claims(&self, token: &Token) -> Result<SanteDbClaims> {
        let id_token = token
            .id_token()
            .ok_or_else(|| id_token_problem("the token response carried no id_token".into()))?;
        let header = jsonwebtoken::decode_header(id_token.expose_secret())
            .map_err(|_| id_token_problem("the id_token is not a JWT".into()))?;
        if header.alg != jsonwebtoken::Algorithm::HS256 {
            return Err(id_token_problem(format!(
                "the id_token is signed with {:?}, not HS256 with the client secret; verify it against \
                 the server's JWKS",
                header.alg
            )));
        }
        auth_core::tls::install_default_provider();
        let key = jsonwebtoken::DecodingKey::from_secret(self.client.secret().expose_secret().as_bytes());
        let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::HS256);
        // Time is the caller's business (their clock may be virtual); only the signature is checked.
        validation.validate_exp = false;
        validation.validate_aud = false;
        validation.required_spec_claims.clear();
        let data = jsonwebtoken::decode::<Map<String, Value>>(id_token.expose_secret(), &key, &validation)
            .map_err(|_| {
                id_token_problem("the id_token signature does not match the client secret".into())
            })?;
        Ok(SanteDbClaims::from_map(data.claims))
    }

    /// Adds the application's credentials to the body (SanteDB reads them nowhere
    /// else) and the node's to its header, raw rather than form-url-encoded:
    /// SanteDB base64-decodes and splits, nothing more.
    fn authenticated(&self, request: TokenRequest) -> TokenRequest {
        let mut request = request.client_in_body(&self.client);
        if let Some((name, id, secret)) = &self.device {
            let scheme = if *name == AUTHORIZATION { "Basic" } else { "BASIC" };
            request =
                request.basic_auth(name.clone(), scheme, id, secret.expose_secret(), BasicEncoding::Raw);
        }
        request
    }

    async fn send(&self, ctx: &FetchContext, request: TokenRequest) -> Result<Token> {
        let token = self.endpoint.request_token(ctx, request).await?;
        self.id_token_expiry_first(token)
    }

    /// SanteDB's id_token `exp` is the session's end, in both versions; `expires_in`
    /// changed unit between them. The endpoint takes the earliest of all it knows,
    /// which lets a misconfigured unit (3.x seconds read as milliseconds) cut a
    /// 30-minute session to seconds; so whenever the id_token has an `exp`, the
    /// response is judged again without `expires_in`.
    fn id_token_expiry_first(&self, token: Token) -> Result<Token> {
        let options = &self.endpoint.config().parse;
        if !options.expiry.use_jwt_exp || token.expiry_source() == ExpirySource::IdTokenExp {
            return Ok(token);
        }
        let Some(id_token) = token.id_token().filter(|t| jwt_exp(t.expose_secret()).is_some()) else {
            return Ok(token);
        };
        let mut fields = vec![
            ("access_token", token.access_token().expose_secret()),
            ("token_type", token.token_type()),
            ("id_token", id_token.expose_secret()),
        ];
        fields.extend(token.scope().map(|s| ("scope", s)));
        fields.extend(token.refresh_token().map(|r| ("refresh_token", r.expose_secret())));
        let extra = serde_json::to_vec(token.extra()).map(|v| v.len()).unwrap_or(0);
        // Sized up front so the buffer holding the tokens is never reallocated (and
        // left behind unwiped); JSON escaping at most doubles header-safe values.
        let capacity = fields.iter().map(|(k, v)| k.len() + 2 * v.len() + 8).sum::<usize>() + extra + 16;
        let mut body = Zeroizing::new(Vec::with_capacity(capacity));
        let unwritable = |_| id_token_problem("the token response cannot be re-read".into());
        body.push(b'{');
        for (i, (name, value)) in fields.iter().enumerate() {
            if i > 0 {
                body.push(b',');
            }
            serde_json::to_writer(&mut *body, name).map_err(unwritable)?;
            body.push(b':');
            serde_json::to_writer(&mut *body, value).map_err(unwritable)?;
        }
        for (name, value) in token.extra() {
            body.push(b',');
            serde_json::to_writer(&mut *body, name).map_err(unwritable)?;
            body.push(b':');
            serde_json::to_writer(&mut *body, value).map_err(unwritable)?;
        }
        body.push(b'}');
        let rejudged = parse_token_response(&body, token.issued_at(), options)
            .map_err(|problem| Error::invalid_response("token request", 200, problem))?;
        if rejudged.expires_at() != token.expires_at() {
            tracing::debug!(
                id_token_lifetime_secs = rejudged.lifetime().as_secs_f64(),
                expires_in_lifetime_secs = token.lifetime().as_secs_f64(),
                "expiry taken from the id_token, not expires_in"
            );
        }
        Ok(rejudged)
    }
}

fn id_token_problem(message: String) -> Error {
    Error::invalid_response("id_token", 200, ResponseProblem::Other(message))
}

#[async_trait]
impl CredentialSource for SanteDbSource {
    fn cache_key(&self) -> &CacheKey {
        &self.key
    }

    fn dpop(&self) -> Option<&auth_core::dpop::Dpop> {
        self.endpoint.config().dpop.as_ref()
    }

    async fn fetch(&self, ctx: &FetchContext) -> Result<Token> {
        // Field order as in the vendor's guide: grant_type, scope, client_id, client_secret.
        let request = TokenRequest::grant("client_credentials").grant_params(&self.grant);
        self.send(ctx, self.authenticated(request)).await
    }

    fn supports_refresh(&self) -> bool {
        self.refresh
    }

    async fn refresh(&self, ctx: &FetchContext, refresh_token: &RefreshToken) -> Result<Option<Token>> {
        if !self.refresh {
            return Ok(None);
        }
        // SanteDB's refresh handler needs the application credentials as well as the
        // token ("missing client_id" otherwise), and the node as for any token request.
        let request =
            TokenRequest::grant("refresh_token").secret_param("refresh_token", refresh_token.expose_secret());
        self.send(ctx, self.authenticated(request)).await.map(Some)
    }

    async fn revoke(&self, token: &Token) -> Result<bool> {
        let (Some(url), Some(id_token)) = (&self.signout_url, token.id_token()) else {
            return Ok(false);
        };
        let request = TokenRequest::post()
            .secret_param("id_token_hint", id_token.expose_secret())
            .param("client_id", self.client.id());
        self.endpoint.send(url, request).await?;
        Ok(true)
    }
}

impl SanteDbSourceBuilder {
    /// The server generation (default 3.x). Decides the device header and the unit
    /// of `expires_in`, and whether [`CredentialSource::revoke`] signs out.
    pub fn version(mut self, version: SanteDbVersion) -> Self {
        self.version = version;
        self
    }

    /// Authenticates the node with a device id and secret (sent raw in HTTP Basic
    /// form, in the header [`SanteDbVersion::device_header`] names). Replaces any
    /// client certificate.
    pub fn device(mut self, device_id: impl Into<String>, secret: DeviceSecret) -> Self {
        self.node = Node::Device { id: device_id.into(), secret };
        self
    }

    /// Sends the device credentials in this header whatever the version says, for
    /// servers between the two (a 2.x server patched to read `Authorization`, say).
    pub fn device_header(mut self, header: DeviceHeader) -> Self {
        self.device_header = Some(header);
        self
    }

    /// Authenticates the node with a client certificate (mutual TLS): `cert_pem` is
    /// the certificate, optionally followed by its chain; `key_pem` its private key
    /// (PKCS#8, PKCS#1 or SEC1 PEM). Replaces any device credentials. The token URL
    /// must be `https://`.
    pub fn client_certificate(mut self, cert_pem: impl Into<String>, key_pem: PrivateKeyPem) -> Self {
        self.node = Node::Certificate { cert_pem: cert_pem.into(), key: key_pem };
        self
    }

    /// No node authentication (the default): only for servers that allow node-less
    /// client grants (`allowNodelessClientAuth`).
    pub fn no_node_auth(mut self) -> Self {
        self.node = Node::None;
        self
    }

    /// Trusts an extra root certificate (PEM), for a server with a private CA.
    pub fn root_certificate_pem(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.root_pems.push(pem.into());
        self
    }

    /// Policies (scopes) to ask for; without any, `*` asks for every granted policy.
    /// They are sent space-separated, as 3.x and 2.x since 2022 split them; for an
    /// older 2.x server, which splits at `;`, pass one scope already joined with `;`.
    pub fn scopes<I, T>(mut self, scopes: I) -> Self
    where
        I: IntoIterator<Item = T>,
        T: Into<String>,
    {
        self.scopes.extend(scopes.into_iter().map(Into::into));
        self
    }

    /// What `expires_in` counts in, whatever the version says. It only matters when
    /// the response has no id_token with an `exp`.
    pub fn expires_in_unit(mut self, unit: ExpiresInUnit) -> Self {
        self.unit = Some(unit);
        self
    }

    /// How expiry is resolved (default lifetime, bounds, JWT `exp` on or off). The
    /// unit of `expires_in` in `policy` is replaced by the version's unit, or by
    /// [`SanteDbSourceBuilder::expires_in_unit`].
    pub fn expiry(mut self, policy: ExpiryPolicy) -> Self {
        self.expiry = policy;
        self
    }

    /// Whether to use the refresh grant when the server issued a refresh token
    /// (default on). Off, a new session is requested with client credentials instead.
    pub fn refresh(mut self, on: bool) -> Self {
        self.refresh = on;
        self
    }

    /// Whether [`CredentialSource::revoke`] signs the session out with
    /// `POST /auth/signout` (default: on for 3.x, off for 2.x, which has no such endpoint).
    pub fn sign_out(mut self, on: bool) -> Self {
        self.sign_out = Some(on);
        self
    }

    /// The token endpoint, if not `{root}/auth/oauth2_token`.
    pub fn token_url(mut self, url: impl Into<String>) -> Self {
        self.token_url = Some(url.into());
        self
    }

    /// The sign-out endpoint, if not `{root}/auth/signout`.
    pub fn signout_url(mut self, url: impl Into<String>) -> Self {
        self.signout_url = Some(url.into());
        self
    }

    /// The FHIR base, if not `{root}/fhir`.
    pub fn fhir_base(mut self, url: impl Into<String>) -> Self {
        self.fhir_base = Some(url.into());
        self
    }

    /// Headers and query parameters to add to every API request (an
    /// `X-SanteDBClient-Claim`, say). `Accept: application/fhir+json` is added unless
    /// this profile sets `Accept` itself.
    pub fn api_profile(mut self, profile: ApiProfile) -> Self {
        self.profile = Some(profile);
        self
    }

    /// Checks the configuration and builds the source.
    pub fn build(self) -> Result<SanteDbSource> {
        let client = ClientAuth::new(self.client_id, self.secret, ClientAuthMethod::ClientSecretPost);
        client.check()?;
        if client.secret().is_empty() {
            return Err(Error::configuration("the SanteDB client secret is empty"));
        }
        let root = self.root.trim_end_matches('/');
        let token_url = self.token_url.unwrap_or_else(|| format!("{root}{TOKEN_PATH}"));

        let mut endpoint = self.endpoint;
        for pem in &self.root_pems {
            let certs = Certificate::from_pem_bundle(pem)
                .ok()
                .filter(|c| !c.is_empty())
                .ok_or_else(|| Error::configuration("a root certificate is not a valid PEM certificate"))?;
            endpoint.root_certificates.extend(certs);
        }
        let header = self.device_header.unwrap_or(self.version.device_header());
        let (device, node, node_key) = match self.node {
            Node::None => (None, NodeAuth::None, "none".to_owned()),
            Node::Device { id, secret } => {
                check_device(&id, &secret, header, self.version)?;
                let name = match header {
                    DeviceHeader::XDeviceAuthorization => HeaderName::from_static("x-device-authorization"),
                    DeviceHeader::AuthorizationBasic => AUTHORIZATION,
                };
                let key = format!("device:{id}");
                (Some((name, id, secret)), NodeAuth::Device(header), key)
            }
            Node::Certificate { cert_pem, key } => {
                // reqwest wants the key and the certificate in one PEM buffer.
                let mut both =
                    Zeroizing::new(Vec::with_capacity(key.expose_secret().len() + cert_pem.len() + 1));
                both.extend_from_slice(key.expose_secret().as_bytes());
                both.push(b'\n');
                both.extend_from_slice(cert_pem.as_bytes());
                let identity = Identity::from_pem(&both).map_err(|_| {
                    Error::configuration(
                        "the client certificate or its key is not valid PEM \
                         (expected CERTIFICATE blocks and one PRIVATE KEY block)",
                    )
                })?;
                endpoint.identity = Some(identity);
                (None, NodeAuth::ClientCertificate, format!("certificate:{cert_pem}"))
            }
        };

        let unit = self.unit.unwrap_or(self.version.expires_in_unit());
        endpoint.parse =
            endpoint.parse.clone().with_expiry(self.expiry.with_unit(unit)).accept_token_type(JWT_TOKEN_TYPE);
        let endpoint = TokenEndpoint::new(&token_url, endpoint)?;
        if node == NodeAuth::ClientCertificate && endpoint.url().scheme() != "https" {
            return Err(Error::configuration(
                "a client certificate is presented in the TLS handshake, so the token URL must be https://",
            ));
        }

        let signout_url = if self.sign_out.unwrap_or(self.version.has_sign_out()) {
            let url = self.signout_url.unwrap_or_else(|| format!("{root}{SIGNOUT_PATH}"));
            Some(endpoint.check_url(&url)?)
        } else {
            None
        };
        let fhir_base = self.fhir_base.unwrap_or_else(|| format!("{root}{FHIR_PATH}"));
        let fhir_base = endpoint.check_url(&fhir_base)?;

        let mut profile = self.profile.unwrap_or_default();
        if !profile.headers().contains_key(reqwest::header::ACCEPT) {
            profile = profile.header("Accept", FHIR_JSON)?;
        }
        let api_http = api_client(endpoint.config())?;

        let mut grant = GrantParams::default();
        if self.scopes.is_empty() {
            grant.add_scopes([ALL_POLICIES]);
        } else {
            grant.add_scopes(self.scopes);
        }
        // The node and version change what session is issued, so they are part of the key.
        let key = endpoint.config().bind_cache_key(
            CacheKey::builder(PROVIDER, endpoint.url().as_str(), client.id())
                .scopes(grant.scopes().iter().cloned())
                .param("node", node_key)
                .param("version", self.version.major().to_string())
                .build(),
        );
        Ok(SanteDbSource {
            endpoint,
            client,
            grant,
            version: self.version,
            device,
            node,
            refresh: self.refresh,
            signout_url,
            fhir_base,
            profile,
            api_http,
            key,
        })
    }
}

fn check_device(
    id: &str,
    secret: &DeviceSecret,
    header: DeviceHeader,
    version: SanteDbVersion,
) -> Result<()> {
    if id.is_empty() {
        return Err(Error::configuration("the SanteDB device id is empty"));
    }
    if id.contains(':') {
        return Err(Error::configuration(
            "the SanteDB device id contains `:`; SanteDB splits HTTP Basic credentials at `:`, \
             so this device can never authenticate",
        ));
    }
    if secret.is_empty() {
        return Err(Error::configuration("the SanteDB device secret is empty"));
    }
    if header == DeviceHeader::AuthorizationBasic && secret.expose_secret().contains(':') {
        return Err(Error::configuration(format!(
            "the SanteDB device secret contains `:`; SanteDB {}.x reads `Authorization: Basic` without \
             url-decoding and refuses credentials that split into more than two parts at `:`, so this \
             secret can never authenticate. Have the administrator issue a device secret without `:` \
             (or use a client certificate)",
            version.major()
        )));
    }
    Ok(())
}

fn api_client(config: &EndpointConfig) -> Result<reqwest::Client> {
    auth_core::tls::client_builder(&config.root_certificates, config.identity.as_ref())?
        .timeout(Duration::from_secs(30))
        .redirect(same_origin_redirects())
        .build()
        .map_err(|e| Error::configuration(format!("cannot build the HTTP client: {e}")))
}

/// What a SanteDB id_token says about the session.
///
/// SanteDB's own claims (`urn:santedb:org:claim:appid`, `…:devid`, `…:usrid`) are
/// read directly, or from the `extensions.santedb` object of servers using the
/// extended claim mapper.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct SanteDbClaims {
    /// `iss`: the configured issuer name (not necessarily a URL).
    pub issuer: Option<String>,
    /// `aud`: the application name and client id.
    pub audience: Vec<String>,
    /// `sub`: the principal.
    pub subject: Option<String>,
    /// `sid`: the session id (what sign-out abandons).
    pub session_id: Option<String>,
    /// `scope`: the policy OIDs granted to the session.
    pub policies: Vec<String>,
    /// The application's id.
    pub application_id: Option<String>,
    /// The device's id, when a node authenticated.
    pub device_id: Option<String>,
    /// The user's id, for user sessions.
    pub user_id: Option<String>,
    /// `name`.
    pub name: Option<String>,
    /// `exp`: when the session ends.
    pub expires_at: Option<SystemTime>,
    /// `iat`.
    pub issued_at: Option<SystemTime>,
    /// `nbf`.
    pub not_before: Option<SystemTime>,
    /// Every other claim, as sent.
    pub other: Map<String, Value>,
}

impl SanteDbClaims {
    /// Reads the claims of an id_token without checking its signature.
    pub fn from_id_token(id_token: &IdToken) -> Result<Self> {
        let claims = jwt_claims(id_token.expose_secret())
            .ok_or_else(|| id_token_problem("the id_token is not a JWT whose claims can be read".into()))?;
        Ok(Self::from_map(claims))
    }

    /// The claims of `token`'s id_token, if it has one (signature not checked).
    pub fn from_token(token: &Token) -> Result<Option<Self>> {
        token.id_token().map(Self::from_id_token).transpose()
    }

    fn from_map(mut claims: Map<String, Value>) -> Self {
        let mut take_str = |name: &str| match claims.remove(name) {
            Some(Value::String(s)) => Some(s),
            Some(other @ (Value::Number(_) | Value::Bool(_))) => Some(other.to_string()),
            _ => None,
        };
        let issuer = take_str("iss");
        let subject = take_str("sub");
        let session_id = take_str("sid");
        let name = take_str("name");
        let mut application_id = take_str(CLAIM_APPLICATION_ID);
        let mut device_id = take_str(CLAIM_DEVICE_ID);
        let mut user_id = take_str(CLAIM_USER_ID);
        if let Some(ext) = claims.get("extensions").and_then(|e| e.get("santedb")) {
            let field = |k: &str| ext.get(k).and_then(Value::as_str).map(str::to_owned);
            application_id = application_id.or_else(|| field("appid"));
            device_id = device_id.or_else(|| field("devid"));
            user_id = user_id.or_else(|| field("usrid"));
        }
        let audience = string_list(claims.remove("aud"));
        let policies = string_list(claims.remove("scope"));
        let mut time = |name: &str| claims.remove(name).as_ref().and_then(epoch_time);
        let expires_at = time("exp");
        let issued_at = time("iat");
        let not_before = time("nbf");
        Self {
            issuer,
            audience,
            subject,
            session_id,
            policies,
            application_id,
            device_id,
            user_id,
            name,
            expires_at,
            issued_at,
            not_before,
            other: claims,
        }
    }
}

/// A claim that may be one string, space-separated strings, or an array of strings.
fn string_list(value: Option<Value>) -> Vec<String> {
    match value {
        Some(Value::String(s)) => s.split_whitespace().map(str::to_owned).collect(),
        Some(Value::Array(items)) => {
            items.into_iter().filter_map(|v| v.as_str().map(str::to_owned)).collect()
        }
        _ => Vec::new(),
    }
}

fn epoch_time(value: &Value) -> Option<SystemTime> {
    let secs = match value {
        Value::Number(n) => n.as_f64()?,
        Value::String(s) => s.trim().parse().ok()?,
        _ => return None,
    };
    Duration::try_from_secs_f64(secs).ok().and_then(|d| UNIX_EPOCH.checked_add(d))
}

impl EndpointOptions for SanteDbSourceBuilder {
    fn endpoint_config(&mut self) -> &mut EndpointConfig {
        &mut self.endpoint
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn builder() -> SanteDbSourceBuilder {
        SanteDbSource::builder(
            "https://santedb.example:8443/",
            "EXAMPLE_APPLICATION",
            ClientSecret::new("app-secret"),
        )
    }

    #[test]
    fn urls_follow_the_root() {
        let Ok(s) = builder().build() else { panic!("valid configuration refused") };
        assert_eq!(s.token_url().as_str(), "https://santedb.example:8443/auth/oauth2_token");
        assert_eq!(s.signout_url().map(Url::as_str), Some("https://santedb.example:8443/auth/signout"));
        assert_eq!(s.fhir_base().as_str(), "https://santedb.example:8443/fhir");
        let Ok(v2) = builder().version(SanteDbVersion::V2).build() else { panic!("refused") };
        assert!(v2.signout_url().is_none(), "2.x has no sign-out endpoint");
    }

    #[test]
    fn device_secrets_with_a_colon() {
        let colon = || DeviceSecret::new("abc:def");
        let err = builder().device("NODE", colon()).build().err();
        let text = err.as_ref().map(ToString::to_string).unwrap_or_default();
        assert!(text.contains("contains `:`") && !text.contains("abc:def"), "{text}");
        assert!(builder().version(SanteDbVersion::V2).device("NODE", colon()).build().is_ok());
        assert!(builder().device("NO:DE", DeviceSecret::new("x")).build().is_err());
    }

    #[test]
    fn claims_accept_strings_arrays_and_extensions() {
        let claims = SanteDbClaims::from_map(
            serde_json::from_str(
                r#"{"aud":"a","scope":"p1 p2","exp":1700000000,"extensions":{"santedb":{"devid":"d"}}}"#,
            )
            .unwrap_or_default(),
        );
        assert_eq!(claims.audience, ["a"]);
        assert_eq!(claims.policies, ["p1", "p2"]);
        assert_eq!(claims.device_id.as_deref(), Some("d"));
        assert_eq!(claims.expires_at, UNIX_EPOCH.checked_add(Duration::from_secs(1_700_000_000)));
    }
}
