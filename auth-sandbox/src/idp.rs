//! The test identity provider: a generic OAuth 2.0 token endpoint and a protected
//! API on loopback, for the engine's tests, benchmarks and demos.
//!
//! It speaks HTTP for real, so tests exercise the same code paths as production. Its
//! books are the sandbox's own: clients, issued tokens (expiry on a clock you
//! control, revocation) and request counts live in a [`TokenRegistry`], its delay
//! and failure knobs are [`Faults`], as for every vendor emulator. What it adds is
//! scripting: what the token endpoint answers next ([`TokenBehavior`]), how the API
//! judges tokens ([`ApiBehavior`]), and the shape of a good answer (JWT or opaque
//! tokens, `expires_in` as a number, a string or absent, refresh tokens).
//!
//! Routes: `POST /token` (the `client_credentials` and `refresh_token` grants, client
//! authentication by Basic or form fields, exactly one of them) and `/api/{path}`
//! (any method; tokens this provider issued, not expired nor revoked).
//!
//! ```
//! use auth_sandbox::idp::TestIdentityProvider;
//! use auth_core::{TokenManager, oauth2::OAuth2Source};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> auth_core::Result<()> {
//! let idp = TestIdentityProvider::start().await?;
//! let tokens = TokenManager::new(
//!     OAuth2Source::builder(idp.token_url(), idp.client_id(), idp.client_secret()).build()?,
//! );
//! tokens.token().await?;
//! tokens.token().await?;
//! assert_eq!(idp.token_requests(), 1);
//! # Ok(()) }
//! ```

use std::collections::VecDeque;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::middleware::from_fn_with_state;
use axum::response::{IntoResponse, Response};
use axum::routing::{any, post};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde_json::{Value, json};
use tokio::task::JoinHandle;

use auth_core::ClientSecret;
use auth_core::clock::{Clock, SystemClock};
use auth_core::{Error, Result};

use crate::faults::{self, Faults};
use crate::fhir::header_str;
use crate::tokens::{Refusal, TokenRegistry};

/// The client id registered by default.
pub const CLIENT_ID: &str = "test-client";
/// The client secret registered by default.
pub const CLIENT_SECRET: &str = "test-secret";

/// `expires_in` (and token lifetime) unless [`TestIdentityProvider::set_lifetime`] says otherwise.
const DEFAULT_LIFETIME: Duration = Duration::from_secs(300);

/// What the token endpoint does with a request.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum TokenBehavior {
    /// Issue a token.
    Issue,
    /// Answer this status with an RFC 6749 error body.
    OAuthError {
        /// HTTP status.
        status: u16,
        /// The `error` code.
        code: String,
    },
    /// Answer this status with an empty body (a gateway's 503, say).
    Status(u16),
    /// Answer with exactly this status, content type and body.
    Raw {
        /// HTTP status.
        status: u16,
        /// `Content-Type`.
        content_type: String,
        /// The body.
        body: String,
    },
    /// Answer 503 with `Retry-After: secs`.
    RetryAfter(u64),
}

/// What the protected API does with a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum ApiBehavior {
    /// Accept tokens this provider issued that have not expired or been revoked.
    #[default]
    Validate,
    /// Reject everything with 401 and `error="invalid_token"`.
    RejectAll,
    /// Reject everything with 403 and `error="insufficient_scope"`.
    InsufficientScope,
    /// Reject invalid tokens like SanteDB: 403 with a lowercase, space-separated challenge.
    SanteDbStyle,
}

/// What the provider saw in one token request.
///
/// Holds test credentials; its `Debug` shows field names only.
#[derive(Clone, Default)]
#[non_exhaustive]
pub struct IdpTokenRequest {
    /// The `Authorization` header as sent.
    pub authorization: Option<String>,
    /// `(client_id, client_secret)` decoded from Basic per RFC 6749 §2.3.1.
    pub basic_decoded: Option<(String, String)>,
    /// `(client_id, client_secret)` split from Basic without url-decoding.
    pub basic_raw: Option<(String, String)>,
    /// The form (or JSON) fields.
    pub form: Vec<(String, String)>,
    /// `Content-Type` of the request.
    pub content_type: Option<String>,
}

impl IdpTokenRequest {
    /// A form field by name.
    pub fn field(&self, name: &str) -> Option<&str> {
        self.form.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    /// The client the request names: Basic first, else the form's `client_id`.
    fn client_id(&self) -> Option<&str> {
        self.basic_decoded.as_ref().map(|(id, _)| id.as_str()).or_else(|| self.field("client_id"))
    }
}

impl fmt::Debug for IdpTokenRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Holds test secrets; keep them out of test output too.
        f.debug_struct("IdpTokenRequest")
            .field("form_fields", &self.form.iter().map(|(k, _)| k).collect::<Vec<_>>())
            .field("content_type", &self.content_type)
            .finish_non_exhaustive()
    }
}

/// What the protected API saw in one accepted request (the bearer is left out).
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct IdpApiRequest {
    /// The query string, if any.
    pub query: Option<String>,
    /// Every header but `Authorization`.
    pub headers: Vec<(String, String)>,
}

impl IdpApiRequest {
    /// A header by (lowercase) name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
}

/// How a good token answer looks, and what the endpoints do next.
struct Script {
    lifetime: Option<Duration>,
    expires_in_as_string: bool,
    jwt: bool,
    refresh_tokens: bool,
    token_type: String,
    behavior: TokenBehavior,
    queued: VecDeque<TokenBehavior>,
    api: ApiBehavior,
}

/// The script and what the provider recorded, under one lock.
struct Books {
    script: Script,
    token_log: Vec<IdpTokenRequest>,
    api_log: Vec<IdpApiRequest>,
}

struct Inner {
    registry: TokenRegistry,
    faults: Faults,
    idp_faults: Faults,
    books: Mutex<Books>,
}

impl Inner {
    fn books(&self) -> MutexGuard<'_, Books> {
        self.books.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// An OAuth 2.0 identity provider and a protected API, served on `127.0.0.1`.
///
/// Stops serving when dropped.
pub struct TestIdentityProvider {
    base: String,
    inner: Arc<Inner>,
    server: JoinHandle<()>,
}

impl fmt::Debug for TestIdentityProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The registry's Debug is counts only; the script holds no secret.
        f.debug_struct("TestIdentityProvider")
            .field("base", &self.base)
            .field("registry", &self.inner.registry)
            .finish_non_exhaustive()
    }
}

impl Drop for TestIdentityProvider {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl TestIdentityProvider {
    /// Starts on a free loopback port, on the system clock.
    pub async fn start() -> Result<Self> {
        Self::start_with_clock(SystemClock).await
    }

    /// Starts on a free loopback port; expiry is judged on `clock`.
    pub async fn start_with_clock(clock: impl Clock) -> Result<Self> {
        let registry = TokenRegistry::new(Arc::new(clock));
        registry.register(CLIENT_ID, CLIENT_SECRET);
        let inner = Arc::new(Inner {
            registry,
            faults: Faults::default(),
            idp_faults: Faults::default(),
            books: Mutex::new(Books {
                script: Script {
                    lifetime: Some(DEFAULT_LIFETIME),
                    expires_in_as_string: false,
                    jwt: false,
                    refresh_tokens: false,
                    token_type: "Bearer".into(),
                    behavior: TokenBehavior::Issue,
                    queued: VecDeque::new(),
                    api: ApiBehavior::Validate,
                },
                token_log: Vec::new(),
                api_log: Vec::new(),
            }),
        });
        let idp = Router::new()
            .route("/token", post(token_endpoint))
            .with_state(inner.clone())
            .layer(from_fn_with_state(inner.idp_faults.clone(), faults::apply));
        let app = Router::new()
            .merge(idp)
            .route("/api/{*path}", any(api_endpoint))
            .with_state(inner.clone())
            .layer(from_fn_with_state(inner.faults.clone(), faults::apply));
        // Clients of this server (a plain `reqwest::Client::new()` in tests and demos
        // included) need the process' TLS crypto provider: the library's.
        auth_core::tls::install_default_provider();
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
            .await
            .map_err(|e| Error::configuration(format!("cannot bind a loopback port: {e}")))?;
        let addr = listener
            .local_addr()
            .map_err(|e| Error::configuration(format!("cannot read the bound address: {e}")))?;
        let server = tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                tracing::error!(error = %e, "test identity provider stopped");
            }
        });
        Ok(Self { base: format!("http://{addr}"), inner, server })
    }

    /// `http://127.0.0.1:PORT`.
    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// The token endpoint, `{base}/token`.
    pub fn token_url(&self) -> String {
        format!("{}/token", self.base)
    }

    /// The protected API's base, `{base}/api`: any path below it works.
    pub fn fhir_base(&self) -> String {
        format!("{}/api", self.base)
    }

    /// A protected API URL; any path below `/api/` works.
    pub fn api_url(&self, path: &str) -> String {
        format!("{}/{}", self.fhir_base(), path.trim_start_matches('/'))
    }

    /// The default client's id ([`CLIENT_ID`]).
    pub fn client_id(&self) -> &str {
        CLIENT_ID
    }

    /// The default client's secret ([`CLIENT_SECRET`]).
    pub fn client_secret(&self) -> ClientSecret {
        ClientSecret::new(CLIENT_SECRET)
    }

    /// The default client's id and secret.
    pub fn credentials(&self) -> (String, ClientSecret) {
        (self.client_id().to_owned(), self.client_secret())
    }

    /// Registers (or replaces) a client.
    pub fn register_client(&self, id: &str, secret: &str) {
        self.inner.registry.register(id, secret);
    }

    fn script(&self, f: impl FnOnce(&mut Script)) {
        f(&mut self.inner.books().script);
    }

    /// Sets `expires_in` of issued tokens (`None`: omit it; tokens then live the
    /// default five minutes).
    pub fn set_lifetime(&self, lifetime: Option<Duration>) {
        self.script(|s| s.lifetime = lifetime);
    }

    /// Sends `expires_in` as a JSON string.
    pub fn set_expires_in_as_string(&self, on: bool) {
        self.script(|s| s.expires_in_as_string = on);
    }

    /// Issues JWT access tokens (with `exp` on the provider's clock) instead of opaque ones.
    pub fn set_jwt(&self, on: bool) {
        self.script(|s| s.jwt = on);
    }

    /// Issues refresh tokens too.
    pub fn set_refresh_tokens(&self, on: bool) {
        self.script(|s| s.refresh_tokens = on);
    }

    /// Sets the `token_type` sent (default `Bearer`).
    pub fn set_token_type(&self, token_type: &str) {
        self.script(|s| s.token_type = token_type.to_owned());
    }

    /// Delays every token answer by `delay`: the latency knob of
    /// [`TestIdentityProvider::idp_faults`]. The request is counted and recorded on
    /// arrival, its answer sent `delay` later.
    pub fn set_delay(&self, delay: Duration) {
        self.inner.idp_faults.set_latency(delay);
    }

    /// Sets what the token endpoint does from now on (and forgets [`fail_next`](Self::fail_next)).
    pub fn set_behavior(&self, behavior: TokenBehavior) {
        self.script(|s| {
            s.queued.clear();
            s.behavior = behavior;
        });
    }

    /// Makes the next `n` token requests behave as `behavior`, then back to normal.
    pub fn fail_next(&self, n: usize, behavior: TokenBehavior) {
        self.script(|s| s.queued.extend(std::iter::repeat_n(behavior, n)));
    }

    /// Sets what the protected API does.
    pub fn set_api_behavior(&self, behavior: ApiBehavior) {
        self.script(|s| s.api = behavior);
    }

    /// Revokes every token issued so far: the API rejects them from now on.
    pub fn revoke_all(&self) {
        self.inner.registry.revoke_all();
    }

    /// Token requests received (`client_credentials` and `refresh_token` grants),
    /// whatever their outcome; not those a fault knob answered.
    pub fn token_requests(&self) -> u64 {
        self.inner.registry.requests()
    }

    /// Token requests that named `client_id` (in Basic or the form).
    pub fn token_requests_for(&self, client_id: &str) -> u64 {
        self.inner.registry.requests_for(client_id)
    }

    /// Token requests with `grant_type=refresh_token` from an authenticated client.
    pub fn refresh_requests(&self) -> u64 {
        self.inner.registry.refresh_requests()
    }

    /// API requests received.
    pub fn api_requests(&self) -> u64 {
        self.inner.registry.api_requests()
    }

    /// API requests rejected for their token (or by [`ApiBehavior`]).
    pub fn api_rejections(&self) -> u64 {
        self.inner.registry.api_rejections()
    }

    /// Every token request received, oldest first.
    pub fn token_log(&self) -> Vec<IdpTokenRequest> {
        self.inner.books().token_log.clone()
    }

    /// Every API request accepted, oldest first.
    pub fn api_log(&self) -> Vec<IdpApiRequest> {
        self.inner.books().api_log.clone()
    }

    /// Clients, issued tokens and request counters.
    pub fn registry(&self) -> &TokenRegistry {
        &self.inner.registry
    }

    /// Fault knobs (latency, 503s, dropped connections, hangs) for every route.
    pub fn faults(&self) -> &Faults {
        &self.inner.faults
    }

    /// Fault knobs for the token endpoint only; the API is left alone.
    pub fn idp_faults(&self) -> &Faults {
        &self.inner.idp_faults
    }
}

/// An unsigned-in-effect JWT carrying `claims`, for tests of expiry resolution.
pub fn fake_jwt(claims: &Value) -> String {
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
    let payload = URL_SAFE_NO_PAD.encode(claims.to_string());
    // Not a real signature: nothing here verifies it, the provider looks tokens up.
    format!("{header}.{payload}.{}", URL_SAFE_NO_PAD.encode(b"test-signature"))
}

fn split_basic(header: &str) -> Option<String> {
    let (scheme, rest) = header.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let bytes = STANDARD.decode(rest.trim()).ok()?;
    String::from_utf8(bytes).ok()
}

fn form_decode(s: &str) -> String {
    form_urlencoded::parse(format!("x={s}").as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

fn record(headers: &HeaderMap, body: &[u8]) -> IdpTokenRequest {
    let authorization = header_str(headers, header::AUTHORIZATION.as_str()).map(str::to_owned);
    let pair = authorization.as_deref().and_then(split_basic);
    let basic_raw =
        pair.as_deref().and_then(|p| p.split_once(':')).map(|(a, b)| (a.to_owned(), b.to_owned()));
    let basic_decoded = basic_raw.as_ref().map(|(a, b)| (form_decode(a), form_decode(b)));
    let content_type = header_str(headers, header::CONTENT_TYPE.as_str()).map(str::to_owned);
    let form = if content_type.as_deref().is_some_and(|c| c.starts_with("application/json")) {
        match serde_json::from_slice::<Value>(body) {
            Ok(Value::Object(m)) => m
                .into_iter()
                .map(|(k, v)| (k, v.as_str().map(str::to_owned).unwrap_or_else(|| v.to_string())))
                .collect(),
            _ => Vec::new(),
        }
    } else {
        form_urlencoded::parse(body).into_owned().collect()
    };
    IdpTokenRequest { authorization, basic_decoded, basic_raw, form, content_type }
}

fn oauth_error(status: u16, code: &str) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST);
    (status, axum::Json(json!({"error": code, "error_description": format!("test provider says {code}")})))
        .into_response()
}

/// The scripted answer, if the script says not to issue.
fn scripted(behavior: TokenBehavior) -> Option<Response> {
    Some(match behavior {
        TokenBehavior::Issue => return None,
        TokenBehavior::OAuthError { status, code } => oauth_error(status, &code),
        TokenBehavior::Status(s) => {
            StatusCode::from_u16(s).unwrap_or(StatusCode::BAD_GATEWAY).into_response()
        }
        TokenBehavior::Raw { status, content_type, body } => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
            (status, [(header::CONTENT_TYPE, content_type)], body).into_response()
        }
        TokenBehavior::RetryAfter(secs) => {
            (StatusCode::SERVICE_UNAVAILABLE, [(header::RETRY_AFTER, secs.to_string())]).into_response()
        }
    })
}

async fn token_endpoint(State(inner): State<Arc<Inner>>, headers: HeaderMap, body: Bytes) -> Response {
    let request = record(&headers, &body);
    inner.registry.count_request(request.client_id());
    let behavior = {
        let mut books = inner.books();
        books.token_log.push(request.clone());
        let script = &mut books.script;
        script.queued.pop_front().unwrap_or_else(|| script.behavior.clone())
    };
    if let Some(answer) = scripted(behavior) {
        return answer;
    }

    // Client authentication: exactly one method (RFC 6749 §2.3).
    let in_body = request
        .field("client_id")
        .map(|id| (id.to_owned(), request.field("client_secret").unwrap_or_default().to_owned()));
    let (client_id, secret) = match (&request.basic_decoded, in_body) {
        (Some(_), Some(_)) => return oauth_error(400, "invalid_request"),
        (Some(pair), None) => pair.clone(),
        (None, Some(pair)) => pair,
        (None, None) => return oauth_error(401, "invalid_client"),
    };
    let registry = &inner.registry;
    if !registry.check(&client_id, &secret) {
        return oauth_error(401, "invalid_client");
    }
    match request.field("grant_type") {
        Some("client_credentials") => {}
        Some("refresh_token") => {
            registry.count_refresh();
            // Not rotated: a refresh token this provider issued to this client keeps working.
            let owner = request.field("refresh_token").and_then(|t| registry.refresh_owner(t));
            if owner.as_deref() != Some(client_id.as_str()) {
                return oauth_error(400, "invalid_grant");
            }
        }
        _ => return oauth_error(400, "unsupported_grant_type"),
    }

    let (lifetime, expires_in_as_string, jwt, refresh_tokens, token_type) = {
        let books = inner.books();
        let s = &books.script;
        (s.lifetime, s.expires_in_as_string, s.jwt, s.refresh_tokens, s.token_type.clone())
    };
    let n = registry.serial();
    let lives = lifetime.unwrap_or(DEFAULT_LIFETIME).min(crate::tokens::MAX_SANDBOX_LIFETIME);
    let access_token = if jwt {
        let exp = registry.now_secs().saturating_add(lives.as_secs());
        fake_jwt(&json!({"sub": client_id, "exp": exp, "jti": format!("{n}-{}", fastrand::u64(..))}))
    } else {
        format!("at-{n}-{:016x}", fastrand::u64(..))
    };
    registry.issue(&access_token, &client_id, lives, request.field("scope").map(str::to_owned));
    let mut answer = json!({
        "access_token": access_token,
        "token_type": token_type,
        "scope": request.field("scope"),
    });
    if let Some(l) = lifetime {
        answer["expires_in"] =
            if expires_in_as_string { json!(l.as_secs().to_string()) } else { json!(l.as_secs()) };
    }
    if refresh_tokens {
        let refresh = format!("rt-{n}");
        registry.issue_refresh(&refresh, &client_id);
        answer["refresh_token"] = json!(refresh);
    }
    let mut response = axum::Json(answer).into_response();
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

async fn api_endpoint(
    State(inner): State<Arc<Inner>>,
    uri: Uri,
    headers: HeaderMap,
    _body: Bytes,
) -> Response {
    let registry = &inner.registry;
    registry.count_api_request();
    let reject = |status: StatusCode, challenge: &'static str| {
        registry.count_api_rejection();
        (status, [(header::WWW_AUTHENTICATE, challenge)]).into_response()
    };
    let api = inner.books().script.api;
    match api {
        ApiBehavior::RejectAll => {
            return reject(StatusCode::UNAUTHORIZED, r#"Bearer realm="test", error="invalid_token""#);
        }
        ApiBehavior::InsufficientScope => {
            return reject(
                StatusCode::FORBIDDEN,
                r#"Bearer realm="test", error="insufficient_scope", scope="system/*.rs""#,
            );
        }
        ApiBehavior::Validate | ApiBehavior::SanteDbStyle => {}
    }
    match registry.validate(header_str(&headers, header::AUTHORIZATION.as_str())) {
        Ok(_) => {}
        Err(Refusal::Missing) => return reject(StatusCode::UNAUTHORIZED, r#"Bearer realm="test""#),
        Err(Refusal::Unknown | Refusal::Expired | Refusal::Revoked) if api == ApiBehavior::SanteDbStyle => {
            return reject(
                StatusCode::FORBIDDEN,
                r#"bearer realm="test" error="invalid_token" error_description="Invalid bearer token""#,
            );
        }
        Err(Refusal::Unknown | Refusal::Expired | Refusal::Revoked) => {
            return reject(
                StatusCode::UNAUTHORIZED,
                r#"Bearer realm="test", error="invalid_token", error_description="expired or revoked""#,
            );
        }
    }
    let seen = IdpApiRequest {
        query: uri.query().map(str::to_owned),
        headers: headers
            .iter()
            .filter(|(name, _)| *name != header::AUTHORIZATION)
            .map(|(n, v)| (n.as_str().to_owned(), v.to_str().unwrap_or_default().to_owned()))
            .collect(),
    };
    inner.books().api_log.push(seen);
    axum::Json(json!({"ok": true})).into_response()
}
