//! The Aidbox emulator: `POST /auth/token` for the client credentials and refresh
//! token grants, Sessions closed by `DELETE /Session` and `DELETE /fhir/Session`,
//! and the FHIR API at `/fhir` (the shared [`crate::fhir`] server), all as strict as Aidbox's documentation.
//!
//! Clients are Aidbox `Client` resources (`secret`, `grant_types`,
//! `auth.client_credentials.{token_format, access_token_expiration, refresh_token}`);
//! two are registered at start: the documentation's own example
//! ([`AidboxEmulator::SEED_CLIENT_ID`]: `api-client` / `verysecret`, the simple
//! configuration: opaque tokens, no refresh) and a JWT client with rotating
//! refresh tokens ([`AidboxEmulator::JWT_CLIENT_ID`]).
//!
//! What the emulator holds to, and where it comes from:
//!
//! | rule | source |
//! |---|---|
//! | Basic + form, JSON body, and form `client_id`/`client_secret` are accepted | docs; SMART configuration |
//! | Basic is `base64(id ':' secret)` with nothing url-decoded | docs |
//! | two client authentication methods at once: `400 invalid_request` | RFC 6749 §2.3 |
//! | wrong secret or unknown client: `401 invalid_client` (+ `WWW-Authenticate: Basic` after Basic) | RFC 6749 §5.2 |
//! | unknown grant: `400 unsupported_grant_type`; grant not in `grant_types`: `400 unauthorized_client` | RFC 6749 §5.2 |
//! | opaque tokens come without `expires_in`; JWTs with `expires_in` and `exp` (and `aud` from `audience`) | docs' examples |
//! | `"refresh_token": null` from clients set up so (a SMART backend client) | docs' SMART example |
//! | refresh tokens are single use (rotated) | RFC 6749 §6 |
//! | an expired, unknown or revoked bearer gets `401` on the API | docs (security hardening) |
//!
//! The exact `error_description` texts are this emulator's: Aidbox does not document them.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use auth_core::ClientSecret;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::{Next, from_fn_with_state};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Map, Value, json};

use super::SandboxConfig;
use super::faults::{Faults, apply};
use super::fhir::{FhirStore, fhir_json, header_str, outcome_json, sample_patients};
use super::tokens::{Refusal, TokenRegistry, hs256_jwt};

/// One token request as the emulator received it.
///
/// Holds test credentials and tokens; its `Debug` shows field names only.
#[derive(Clone)]
pub struct AidboxTokenRequest {
    /// The HTTP method.
    pub method: String,
    /// The path, including the sandbox prefix (`/aidbox/auth/token`).
    pub path: String,
    /// `Content-Type`, as sent.
    pub content_type: Option<String>,
    /// `Authorization`, as sent.
    pub authorization: Option<String>,
    /// `(id, secret)` from a Basic header, split at the first `:` without decoding.
    pub basic: Option<(String, String)>,
    /// The body's fields (form pairs, or a JSON object's members), in order.
    pub fields: Vec<(String, String)>,
    /// The body exactly as received.
    pub body: String,
    /// The client id the request named (Basic or body), if any.
    pub client_id: Option<String>,
}

impl AidboxTokenRequest {
    /// A body field by name.
    pub fn field(&self, name: &str) -> Option<&str> {
        self.fields.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    /// The names of the body's fields, in order.
    pub fn field_names(&self) -> Vec<&str> {
        self.fields.iter().map(|(k, _)| k.as_str()).collect()
    }
}

impl fmt::Debug for AidboxTokenRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AidboxTokenRequest")
            .field("method", &self.method)
            .field("path", &self.path)
            .field("content_type", &self.content_type)
            .field("authorization", &self.authorization.as_ref().map(|_| "[redacted]"))
            .field("fields", &self.field_names())
            .field("client_id", &self.client_id)
            .finish_non_exhaustive()
    }
}

/// One Session close (`DELETE /Session` or `DELETE /fhir/Session`) that succeeded.
///
/// Holds the bearer token; its `Debug` leaves it out.
#[derive(Clone)]
pub struct AidboxSessionRequest {
    /// The path, including the sandbox prefix (`/aidbox/Session`, `/aidbox/fhir/Session`).
    pub path: String,
    /// The bearer token that was presented (and whose Session was closed).
    pub bearer: String,
    /// The client the Session belonged to.
    pub client_id: String,
}

impl fmt::Debug for AidboxSessionRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AidboxSessionRequest")
            .field("path", &self.path)
            .field("client_id", &self.client_id)
            .finish_non_exhaustive()
    }
}

/// An Aidbox `Client` resource, as far as token issuing goes.
#[derive(Clone)]
struct ClientConfig {
    secret: String,
    grant_types: Vec<String>,
    jwt: bool,
    access_token_expiration: Option<Duration>,
    refresh_token: bool,
    /// Send `"refresh_token": null` when no refresh token is issued.
    null_refresh_token: bool,
    /// Send `expires_in` with JWTs (Aidbox does; off to test `exp`-only answers).
    send_expires_in: bool,
    /// Whether an AccessPolicy links this client (without one the API answers 403).
    access_policy: bool,
}

impl ClientConfig {
    fn simple(secret: &str) -> Self {
        Self {
            secret: secret.to_owned(),
            grant_types: vec!["client_credentials".into()],
            jwt: false,
            access_token_expiration: None,
            refresh_token: false,
            null_refresh_token: false,
            send_expires_in: true,
            access_policy: true,
        }
    }

    /// Reads the fields of a `Client` resource this emulator understands.
    fn from_resource(resource: &Value) -> Result<(String, Self), String> {
        let id = resource.get("id").and_then(Value::as_str).filter(|s| !s.is_empty());
        let id = id.ok_or("Client.id is required")?;
        let secret = resource.get("secret").and_then(Value::as_str).ok_or("Client.secret is required")?;
        let mut config = Self::simple(secret);
        config.grant_types = match resource.get("grant_types") {
            None => Vec::new(),
            Some(Value::Array(items)) => items
                .iter()
                .map(|g| g.as_str().map(str::to_owned).ok_or("Client.grant_types must be strings"))
                .collect::<Result<_, _>>()?,
            Some(_) => return Err("Client.grant_types must be an array".into()),
        };
        if let Some(cc) = resource.pointer("/auth/client_credentials") {
            config.jwt = match cc.get("token_format").and_then(Value::as_str) {
                None | Some("opaque") => false,
                Some("jwt") => true,
                Some(other) => return Err(format!("unknown token_format {other}")),
            };
            // The docs' table says `token_expiration`, their examples `access_token_expiration`.
            let expiration = cc.get("access_token_expiration").or_else(|| cc.get("token_expiration"));
            config.access_token_expiration = match expiration {
                None | Some(Value::Null) => None,
                Some(v) => Some(Duration::from_secs(
                    v.as_u64()
                        .filter(|s| *s > 0)
                        .ok_or("access_token_expiration must be positive seconds")?,
                )),
            };
            config.refresh_token = cc.get("refresh_token").and_then(Value::as_bool).unwrap_or(false);
        }
        Ok((id.to_owned(), config))
    }
}

/// A Session: Aidbox creates one per access token.
#[derive(Debug, Clone)]
struct Session {
    id: String,
    client_id: String,
    audience: Option<String>,
    active: bool,
    start: u64,
}

impl Session {
    fn resource(&self) -> Value {
        let mut r = json!({
            "resourceType": "Session",
            "id": self.id,
            "active": self.active,
            "client": {"id": self.client_id, "resourceType": "Client"},
            "start": self.start,
        });
        if let Some(aud) = &self.audience {
            r["audience"] = json!(aud);
        }
        r
    }
}

#[derive(Default)]
struct Books {
    clients: HashMap<String, ClientConfig>,
    /// Access token → its Session.
    sessions: HashMap<String, Session>,
    /// Refresh token → the audience of the Session it continues.
    refresh_audience: HashMap<String, Option<String>>,
    token_log: Vec<AidboxTokenRequest>,
    session_log: Vec<AidboxSessionRequest>,
    last_response: Option<Value>,
}

struct Inner {
    base: String,
    /// Path of `base`, to report paths as the client sent them.
    prefix: String,
    registry: TokenRegistry,
    store: Arc<FhirStore>,
    faults: Faults,
    idp_faults: Faults,
    default_lifetime: Duration,
    signing_key: Vec<u8>,
    books: Mutex<Books>,
}

impl Inner {
    fn books(&self) -> MutexGuard<'_, Books> {
        self.books.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The Aidbox emulator.
pub struct AidboxEmulator {
    base: String,
    inner: Arc<Inner>,
}

impl fmt::Debug for AidboxEmulator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AidboxEmulator")
            .field("base", &self.base)
            .field("token_requests", &self.token_requests())
            .finish_non_exhaustive()
    }
}

impl AidboxEmulator {
    /// The id of the documentation's example client.
    pub const SEED_CLIENT_ID: &'static str = "api-client";
    /// The secret of the documentation's example client.
    pub const SEED_CLIENT_SECRET: &'static str = "verysecret";
    /// A client issuing JWTs (600 s) with rotating refresh tokens.
    pub const JWT_CLIENT_ID: &'static str = "jwt-client";
    /// The secret of [`AidboxEmulator::JWT_CLIENT_ID`].
    pub const JWT_CLIENT_SECRET: &'static str = "jwt-client-secret";
    /// `error_description` of a wrong secret or unknown client.
    pub const WRONG_CREDENTIALS_DESCRIPTION: &'static str = "Wrong client_id or client_secret";
    /// `error_description` of a request using two client authentication methods.
    pub const TWO_METHODS_DESCRIPTION: &'static str =
        "Client authentication must use one method: Authorization header or client_secret in the body";

    pub(crate) async fn start(public_base: &str, config: &SandboxConfig) -> std::io::Result<Self> {
        let base = public_base.trim_end_matches('/').to_owned();
        let prefix =
            url::Url::parse(&base).map(|u| u.path().trim_end_matches('/').to_owned()).unwrap_or_default();
        let store = FhirStore::new(format!("{base}/fhir"));
        store.seed(sample_patients());
        store.set_token_url(format!("{base}/auth/token"));
        let signing_key: Vec<u8> = (0..32).map(|_| fastrand::u8(..)).collect();
        let inner = Arc::new(Inner {
            base: base.clone(),
            prefix,
            registry: TokenRegistry::new(config.clock.clone()).with_marker(&config.token_marker),
            store,
            faults: Faults::default(),
            idp_faults: Faults::default(),
            default_lifetime: config.token_lifetime,
            signing_key,
            books: Mutex::default(),
        });
        let emulator = Self { base, inner };
        emulator.install(Self::SEED_CLIENT_ID, ClientConfig::simple(Self::SEED_CLIENT_SECRET));
        let mut jwt = ClientConfig::simple(Self::JWT_CLIENT_SECRET);
        jwt.jwt = true;
        jwt.access_token_expiration = Some(Duration::from_secs(600));
        jwt.refresh_token = true;
        emulator.install(Self::JWT_CLIENT_ID, jwt);
        Ok(emulator)
    }

    pub(crate) fn router(&self) -> Router {
        let inner = &self.inner;
        let bearer = || from_fn_with_state(inner.clone(), require_bearer);
        let fhir = Router::new()
            .route("/Session", get(list_sessions).delete(close_fhir_session))
            .with_state(inner.clone())
            .merge(inner.store.router())
            .layer(bearer());
        let root_session = Router::new()
            .route("/Session", get(list_sessions).delete(close_root_session))
            .with_state(inner.clone())
            .layer(bearer());
        let idp = Router::new()
            .route("/auth/token", post(token_endpoint))
            .with_state(inner.clone())
            .layer(from_fn_with_state(inner.idp_faults.clone(), apply));
        Router::new()
            .merge(idp)
            .merge(root_session)
            .nest("/fhir", fhir)
            .layer(from_fn_with_state(inner.faults.clone(), apply))
    }

    fn install(&self, id: &str, config: ClientConfig) {
        self.inner.registry.register(id, &config.secret);
        self.inner.books().clients.insert(id.to_owned(), config);
    }

    fn update(&self, id: &str, f: impl FnOnce(&mut ClientConfig)) -> bool {
        match self.inner.books().clients.get_mut(id) {
            Some(c) => {
                f(c);
                true
            }
            None => false,
        }
    }

    /// The emulator's base URL (`{sandbox}/aidbox`).
    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// `{base}/auth/token`.
    pub fn token_url(&self) -> String {
        format!("{}/auth/token", self.base)
    }

    /// The FHIR API base, `{base}/fhir`.
    pub fn fhir_base(&self) -> String {
        format!("{}/fhir", self.base)
    }

    /// `{base}/Session`.
    pub fn session_url(&self) -> String {
        format!("{}/Session", self.base)
    }

    /// `{base}/fhir/Session`.
    pub fn fhir_session_url(&self) -> String {
        format!("{}/fhir/Session", self.base)
    }

    /// The documentation's example client id, `api-client`.
    pub fn client_id(&self) -> &str {
        Self::SEED_CLIENT_ID
    }

    /// The documentation's example client secret, `verysecret`.
    pub fn client_secret(&self) -> ClientSecret {
        ClientSecret::new(Self::SEED_CLIENT_SECRET)
    }

    /// The documentation's example client: `api-client` / `verysecret`.
    pub fn credentials(&self) -> (String, ClientSecret) {
        (self.client_id().to_owned(), self.client_secret())
    }

    /// The JWT client with refresh tokens.
    pub fn jwt_credentials(&self) -> (String, ClientSecret) {
        (Self::JWT_CLIENT_ID.to_owned(), ClientSecret::new(Self::JWT_CLIENT_SECRET))
    }

    /// Registers (or replaces) a simple client: `grant_types: [client_credentials]`,
    /// opaque tokens, no refresh, linked to an allow-all AccessPolicy.
    pub fn register_client(&self, id: &str, secret: &str) {
        self.install(id, ClientConfig::simple(secret));
    }

    /// Registers (or replaces) a client from an Aidbox `Client` resource, as
    /// `PUT /Client/{id}` would: `id`, `secret`, `grant_types`,
    /// `auth.client_credentials.{token_format, access_token_expiration, refresh_token}`.
    /// The client is linked to an allow-all AccessPolicy.
    pub fn put_client(&self, resource: &Value) -> Result<(), String> {
        let (id, config) = ClientConfig::from_resource(resource)?;
        self.install(&id, config);
        Ok(())
    }

    /// Switches a client between JWT (`true`) and opaque tokens. False if unknown.
    pub fn set_jwt(&self, client_id: &str, jwt: bool) -> bool {
        self.update(client_id, |c| c.jwt = jwt)
    }

    /// Turns refresh tokens on or off for a client. False if unknown.
    pub fn set_refresh_token(&self, client_id: &str, on: bool) -> bool {
        self.update(client_id, |c| c.refresh_token = on)
    }

    /// Sets `access_token_expiration` (`None`: the sandbox's token lifetime). False if unknown.
    pub fn set_access_token_expiration(&self, client_id: &str, expiration: Option<Duration>) -> bool {
        self.update(client_id, |c| c.access_token_expiration = expiration)
    }

    /// Sends `"refresh_token": null` when no refresh token is issued, as the SMART
    /// backend example does. False if unknown.
    pub fn set_null_refresh_token(&self, client_id: &str, on: bool) -> bool {
        self.update(client_id, |c| c.null_refresh_token = on)
    }

    /// Sends (default) or leaves out `expires_in` on JWT answers. False if unknown.
    pub fn set_send_expires_in(&self, client_id: &str, on: bool) -> bool {
        self.update(client_id, |c| c.send_expires_in = on)
    }

    /// Sets the client's `grant_types`. False if unknown.
    pub fn set_grant_types(&self, client_id: &str, grant_types: &[&str]) -> bool {
        self.update(client_id, |c| c.grant_types = grant_types.iter().map(|g| (*g).to_owned()).collect())
    }

    /// Links (`true`) or unlinks the client's AccessPolicy; without one the API
    /// answers 403, as Aidbox does for a client no policy allows. False if unknown.
    pub fn set_access_policy(&self, client_id: &str, allowed: bool) -> bool {
        self.update(client_id, |c| c.access_policy = allowed)
    }

    /// Token requests received.
    pub fn token_requests(&self) -> u64 {
        self.inner.registry.requests()
    }

    /// Token requests that named `client_id` (in Basic or the body).
    pub fn token_requests_for(&self, client_id: &str) -> u64 {
        self.inner.registry.requests_for(client_id)
    }

    /// Token requests with `grant_type=refresh_token`.
    pub fn refresh_requests(&self) -> u64 {
        self.inner.registry.refresh_requests()
    }

    /// Requests to the bearer-protected routes (FHIR API and Sessions).
    pub fn api_requests(&self) -> u64 {
        self.inner.registry.api_requests()
    }

    /// API requests refused for their bearer token (401).
    pub fn api_rejections(&self) -> u64 {
        self.inner.registry.api_rejections()
    }

    /// Every token request, oldest first.
    pub fn token_log(&self) -> Vec<AidboxTokenRequest> {
        self.inner.books().token_log.clone()
    }

    /// The last token request.
    pub fn last_token_request(&self) -> Option<AidboxTokenRequest> {
        self.inner.books().token_log.last().cloned()
    }

    /// The body of the last successful token answer.
    pub fn last_response(&self) -> Option<Value> {
        self.inner.books().last_response.clone()
    }

    /// Every Session closed through the API, oldest first.
    pub fn session_log(&self) -> Vec<AidboxSessionRequest> {
        self.inner.books().session_log.clone()
    }

    /// Sessions still active (not closed; expiry not considered).
    pub fn active_sessions(&self) -> usize {
        self.inner.books().sessions.values().filter(|s| s.active).count()
    }

    /// Closes every Session, as an administrator would: every token issued so far
    /// is refused from now on.
    pub fn close_all_sessions(&self) {
        self.inner.registry.revoke_all();
        self.inner.books().sessions.values_mut().for_each(|s| s.active = false);
    }

    /// The FHIR store behind `/fhir`.
    pub fn fhir_store(&self) -> &Arc<FhirStore> {
        &self.inner.store
    }

    /// The registry of clients and issued tokens.
    pub fn registry(&self) -> &TokenRegistry {
        &self.inner.registry
    }

    /// The fault knobs (latency, 503s, dropped connections) of every route.
    pub fn faults(&self) -> &Faults {
        &self.inner.faults
    }

    /// Fault knobs for the identity provider only (`/auth/token`, refresh grants
    /// included); the FHIR API and session routes are left alone.
    pub fn idp_faults(&self) -> &Faults {
        &self.inner.idp_faults
    }
}

/// An RFC 6749 §5.2 error answer.
fn oauth_error(status: StatusCode, code: &str, description: &str) -> Response {
    let body = json!({"error": code, "error_description": description});
    (status, [(header::CACHE_CONTROL, "no-store"), (header::PRAGMA, "no-cache")], axum::Json(body))
        .into_response()
}

enum ClientAuthn {
    /// Id and secret, from Basic (`true`) or the body.
    Secret { id: String, secret: String, basic: bool },
    /// Only a `client_id` in the body (Aidbox's refresh example).
    IdOnly(String),
}

impl ClientAuthn {
    fn id(&self) -> &str {
        match self {
            Self::Secret { id, .. } | Self::IdOnly(id) => id,
        }
    }
}

fn parse_basic(value: &str) -> Option<(String, String)> {
    let (scheme, rest) = value.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = String::from_utf8(STANDARD.decode(rest.trim()).ok()?).ok()?;
    // Aidbox documents `base64(Client.id + ':' + Client.secret)`: no url-decoding.
    let (id, secret) = decoded.split_once(':')?;
    Some((id.to_owned(), secret.to_owned()))
}

/// The body's fields, or the error answer for a body Aidbox would refuse.
fn parse_fields(content_type: Option<&str>, body: &[u8]) -> Result<Vec<(String, String)>, Response> {
    let media = content_type.map(|c| c.split(';').next().unwrap_or_default().trim().to_ascii_lowercase());
    match media.as_deref() {
        Some("application/x-www-form-urlencoded") => Ok(form_urlencoded::parse(body).into_owned().collect()),
        Some("application/json") => match serde_json::from_slice::<Value>(body) {
            Ok(Value::Object(members)) => members
                .into_iter()
                .map(|(k, v)| match v {
                    Value::String(s) => Ok((k, s)),
                    _ => Err(oauth_error(
                        StatusCode::BAD_REQUEST,
                        "invalid_request",
                        &format!("{k} must be a string"),
                    )),
                })
                .collect(),
            _ => {
                Err(oauth_error(StatusCode::BAD_REQUEST, "invalid_request", "The body is not a JSON object"))
            }
        },
        _ => Err(oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "Content-Type must be application/x-www-form-urlencoded or application/json",
        )),
    }
}

/// Which client the request authenticates as, or the error answer (RFC 6749 §2.3).
fn client_authn(
    authorization: Option<&str>,
    basic: Option<&(String, String)>,
    fields: &[(String, String)],
) -> Result<ClientAuthn, Response> {
    let field = |name: &str| fields.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
    if authorization.is_some() && basic.is_none() {
        return Err(oauth_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "Authorization header must be Basic base64(client_id:client_secret)",
        ));
    }
    match (basic, field("client_id"), field("client_secret")) {
        (Some(_), _, Some(_)) => Err(oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            AidboxEmulator::TWO_METHODS_DESCRIPTION,
        )),
        (Some((id, _)), Some(body_id), None) if *id != body_id => Err(oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "client_id in the body does not match the Authorization header",
        )),
        (Some((id, secret)), _, None) => {
            Ok(ClientAuthn::Secret { id: id.clone(), secret: secret.clone(), basic: true })
        }
        (None, Some(id), Some(secret)) => Ok(ClientAuthn::Secret { id, secret, basic: false }),
        (None, None, Some(_)) => Err(oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "client_secret given without client_id",
        )),
        (None, Some(id), None) => Ok(ClientAuthn::IdOnly(id)),
        (None, None, None) => {
            Err(oauth_error(StatusCode::UNAUTHORIZED, "invalid_client", "Client authentication is required"))
        }
    }
}

fn wrong_credentials(basic: bool) -> Response {
    let mut response = oauth_error(
        StatusCode::UNAUTHORIZED,
        "invalid_client",
        AidboxEmulator::WRONG_CREDENTIALS_DESCRIPTION,
    );
    if basic {
        // RFC 6749 §5.2: a 401 after Basic names the scheme the client used.
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Basic realm=\"aidbox\""));
    }
    response
}

/// A random (v4) UUID, as Aidbox names sessions and `jti`s.
fn uuid() -> String {
    uuid::Uuid::new_v4().to_string()
}

async fn token_endpoint(
    State(inner): State<Arc<Inner>>,
    method: Method,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let authorization = header_str(&headers, "authorization").map(str::to_owned);
    let content_type = header_str(&headers, "content-type").map(str::to_owned);
    let basic = authorization.as_deref().and_then(parse_basic);
    let parsed = parse_fields(content_type.as_deref(), &body);
    let fields = parsed.as_ref().map(Vec::clone).unwrap_or_default();
    let client_id = basic
        .as_ref()
        .map(|(id, _)| id.clone())
        .or_else(|| fields.iter().find(|(k, _)| k == "client_id").map(|(_, v)| v.clone()));
    inner.registry.count_request(client_id.as_deref());
    inner.books().token_log.push(AidboxTokenRequest {
        method: method.to_string(),
        path: format!("{}/auth/token", inner.prefix),
        content_type,
        authorization: authorization.clone(),
        basic: basic.clone(),
        fields: fields.clone(),
        body: String::from_utf8_lossy(&body).into_owned(),
        client_id,
    });
    if let Err(refusal) = parsed {
        return refusal;
    }
    match issue(&inner, authorization.as_deref(), basic.as_ref(), &fields) {
        Ok(answer) => {
            inner.books().last_response = Some(answer.clone());
            let mut response = axum::Json(answer).into_response();
            let h = response.headers_mut();
            h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
            response
        }
        Err(refusal) => refusal,
    }
}

/// Checks a token request and issues its answer.
fn issue(
    inner: &Inner,
    authorization: Option<&str>,
    basic: Option<&(String, String)>,
    fields: &[(String, String)],
) -> Result<Value, Response> {
    let field = |name: &str| fields.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
    // RFC 6749 §3.2: parameters must not repeat.
    for (i, (name, _)) in fields.iter().enumerate() {
        if fields[..i].iter().any(|(k, _)| k == name) {
            return Err(oauth_error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                &format!("Parameter {name} is repeated"),
            ));
        }
    }
    let grant = match field("grant_type") {
        None | Some("") => {
            return Err(oauth_error(StatusCode::BAD_REQUEST, "invalid_request", "grant_type is required"));
        }
        Some(g @ ("client_credentials" | "refresh_token")) => g,
        Some(other) => {
            return Err(oauth_error(
                StatusCode::BAD_REQUEST,
                "unsupported_grant_type",
                &format!("Unsupported grant_type {other}"),
            ));
        }
    };
    let authn = client_authn(authorization, basic, fields)?;
    let client = inner.books().clients.get(authn.id()).cloned();
    let Some(client) = client else {
        return Err(wrong_credentials(matches!(authn, ClientAuthn::Secret { basic: true, .. })));
    };
    match &authn {
        ClientAuthn::Secret { secret, basic, .. } => {
            if !inner.registry.check(authn.id(), secret) {
                return Err(wrong_credentials(*basic));
            }
        }
        // Aidbox's refresh example names the client without a secret; nothing else may.
        ClientAuthn::IdOnly(_) if grant == "refresh_token" => {}
        ClientAuthn::IdOnly(_) => {
            return Err(oauth_error(StatusCode::UNAUTHORIZED, "invalid_client", "client_secret is required"));
        }
    }
    let client_id = authn.id().to_owned();
    let audience = if grant == "refresh_token" {
        inner.registry.count_refresh();
        if !client.refresh_token {
            return Err(oauth_error(
                StatusCode::BAD_REQUEST,
                "unauthorized_client",
                "Refresh tokens are not enabled for this client",
            ));
        }
        let Some(presented) = field("refresh_token").filter(|t| !t.is_empty()) else {
            return Err(oauth_error(StatusCode::BAD_REQUEST, "invalid_request", "refresh_token is required"));
        };
        // Redeeming consumes it: a refresh token works once (rotation).
        match inner.registry.redeem_refresh(presented) {
            Some(owner) if owner == client_id => {}
            _ => {
                return Err(oauth_error(StatusCode::BAD_REQUEST, "invalid_grant", "Invalid refresh_token"));
            }
        }
        inner.books().refresh_audience.remove(presented).flatten()
    } else {
        if !client.grant_types.iter().any(|g| g == "client_credentials") {
            return Err(oauth_error(
                StatusCode::BAD_REQUEST,
                "unauthorized_client",
                "Client is not allowed to use grant_type client_credentials",
            ));
        }
        field("audience").map(str::to_owned)
    };

    let lifetime = client.access_token_expiration.unwrap_or(inner.default_lifetime);
    let now = inner.registry.now_secs();
    let session_id = uuid();
    let access_token = if client.jwt {
        let mut claims = json!({
            "iss": inner.base,
            "sub": client_id,
            "iat": now,
            "jti": session_id,
            "exp": now.saturating_add(lifetime.as_secs()),
        });
        if let Some(aud) = &audience {
            claims["aud"] = json!(aud);
        }
        hs256_jwt(&claims, &inner.signing_key)
    } else {
        // Aidbox's opaque tokens are base64 of a UUID (`ZjQyNGFh…` in the docs).
        inner.registry.mark(&STANDARD.encode(uuid()))
    };
    inner.registry.issue(&access_token, &client_id, lifetime, field("scope").map(str::to_owned));

    let mut answer = Map::new();
    answer.insert("token_type".into(), json!("Bearer"));
    if client.jwt && client.send_expires_in {
        answer.insert("expires_in".into(), json!(lifetime.as_secs()));
    }
    answer.insert("access_token".into(), json!(access_token));
    if client.refresh_token {
        let refresh = hs256_jwt(
            &json!({"iss": inner.base, "sub": client_id, "jti": uuid(), "typ": "refresh"}),
            &inner.signing_key,
        );
        inner.registry.issue_refresh(&refresh, &client_id);
        inner.books().refresh_audience.insert(refresh.clone(), audience.clone());
        answer.insert("refresh_token".into(), json!(refresh));
    } else if client.null_refresh_token {
        answer.insert("refresh_token".into(), Value::Null);
    }
    let session = Session { id: session_id, client_id, audience, active: true, start: now };
    inner.books().sessions.insert(access_token, session);
    Ok(Value::Object(answer))
}

/// The bearer token of a request that passed [`require_bearer`].
#[derive(Clone)]
struct Caller {
    token: String,
    client_id: String,
}

fn bearer_of(headers: &HeaderMap) -> Option<String> {
    header_str(headers, "authorization")
        .and_then(|v| v.trim().split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, t)| t.trim().to_owned())
}

/// Lets through requests with a live bearer token from a client an AccessPolicy
/// allows: 401 otherwise (403 for a client no policy allows).
async fn require_bearer(State(inner): State<Arc<Inner>>, mut request: Request, next: Next) -> Response {
    inner.registry.count_api_request();
    let refused = |diagnostics: &str| {
        inner.registry.count_api_rejection();
        fhir_json(StatusCode::UNAUTHORIZED, &outcome_json("login", diagnostics))
    };
    let issued = match inner.registry.validate(header_str(request.headers(), "authorization")) {
        Ok(issued) => issued,
        Err(Refusal::Missing) => return refused("Authentication required: no bearer token"),
        Err(Refusal::Unknown) => return refused("Invalid access token"),
        Err(Refusal::Expired) => return refused("Access token expired"),
        Err(Refusal::Revoked) => return refused("Session is closed"),
    };
    let allowed = inner.books().clients.get(&issued.client_id).is_some_and(|c| c.access_policy);
    if !allowed {
        return fhir_json(StatusCode::FORBIDDEN, &outcome_json("forbidden", "Access Denied"));
    }
    let token = bearer_of(request.headers()).unwrap_or_default();
    request.extensions_mut().insert(Caller { token, client_id: issued.client_id });
    next.run(request).await
}

async fn close_root_session(State(inner): State<Arc<Inner>>, request: Request) -> Response {
    close_session(&inner, "/Session", &request)
}

async fn close_fhir_session(State(inner): State<Arc<Inner>>, request: Request) -> Response {
    close_session(&inner, "/fhir/Session", &request)
}

fn close_session(inner: &Inner, path: &str, request: &Request) -> Response {
    let Some(caller) = request.extensions().get::<Caller>().cloned() else {
        return fhir_json(StatusCode::UNAUTHORIZED, &outcome_json("login", "Authentication required"));
    };
    inner.registry.revoke(&caller.token);
    let mut books = inner.books();
    let session = books.sessions.get_mut(&caller.token).map(|s| {
        s.active = false;
        s.resource()
    });
    books.session_log.push(AidboxSessionRequest {
        path: format!("{}{path}", inner.prefix),
        bearer: caller.token,
        client_id: caller.client_id,
    });
    drop(books);
    fhir_json(StatusCode::OK, &session.unwrap_or_else(|| json!({"resourceType": "Session", "active": false})))
}

/// `GET /Session`: the caller's client's Sessions.
async fn list_sessions(State(inner): State<Arc<Inner>>, request: Request) -> Response {
    let Some(caller) = request.extensions().get::<Caller>().cloned() else {
        return fhir_json(StatusCode::UNAUTHORIZED, &outcome_json("login", "Authentication required"));
    };
    let entries: Vec<Value> = inner
        .books()
        .sessions
        .values()
        .filter(|s| s.client_id == caller.client_id)
        .map(|s| json!({"resource": s.resource()}))
        .collect();
    fhir_json(
        StatusCode::OK,
        &json!({"resourceType": "Bundle", "type": "searchset", "total": entries.len(), "entry": entries}),
    )
}
