//! A real OAuth 2.0 identity provider and protected API on loopback, for tests and
//! demos .
//!
//! It speaks HTTP for real, so tests exercise the same code paths as production:
//! it counts token requests, can be slowed down or made to fail on demand, issues
//! opaque or JWT tokens on a clock you control, and its API accepts only tokens it
//! issued and that have not expired or been revoked.
//!
//! ```
//! use auth_sandbox::testkit::TestIdentityProvider;
//! use auth_core::{TokenManager, oauth2::OAuth2Source};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> auth_core::Result<()> {
//! let idp = TestIdentityProvider::start().await?;
//! let (id, secret) = idp.credentials();
//! let tokens = TokenManager::new(OAuth2Source::builder(idp.token_url(), id, secret).build()?);
//! tokens.token().await?;
//! tokens.token().await?;
//! assert_eq!(idp.token_requests(), 1);
//! # Ok(()) }
//! ```

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, post};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde_json::{Value, json};
use tokio::task::JoinHandle;

use auth_core::ClientSecret;
use auth_core::clock::{Clock, SystemClock};
use auth_core::{Error, Result};

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
#[derive(Clone, Default)]
#[non_exhaustive]
pub struct RecordedRequest {
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

impl RecordedRequest {
    /// A form field by name.
    pub fn field(&self, name: &str) -> Option<&str> {
        self.form.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
}

impl fmt::Debug for RecordedRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Holds test secrets; keep them out of test output too.
        f.debug_struct("RecordedRequest")
            .field("form_fields", &self.form.iter().map(|(k, _)| k).collect::<Vec<_>>())
            .field("content_type", &self.content_type)
            .finish_non_exhaustive()
    }
}

/// What the protected API saw in one accepted request (the bearer is left out).
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct ApiRequest {
    /// The query string, if any.
    pub query: Option<String>,
    /// Every header but `Authorization`.
    pub headers: Vec<(String, String)>,
}

impl ApiRequest {
    /// A header by (lowercase) name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
}

struct Issued {
    expires_at: SystemTime,
    revoked: bool,
}

struct Knobs {
    lifetime: Option<Duration>,
    expires_in_as_string: bool,
    jwt: bool,
    refresh_tokens: bool,
    token_type: String,
    delay: Duration,
    behavior: TokenBehavior,
    queued: VecDeque<TokenBehavior>,
    api: ApiBehavior,
    clients: HashMap<String, String>,
    requests: Vec<RecordedRequest>,
    api_log: Vec<ApiRequest>,
    issued: HashMap<String, Issued>,
}

struct Inner {
    clock: Arc<dyn Clock>,
    knobs: Mutex<Knobs>,
    token_requests: AtomicU64,
    refresh_requests: AtomicU64,
    api_requests: AtomicU64,
    api_rejections: AtomicU64,
    serial: AtomicU64,
}

impl Inner {
    fn knobs(&self) -> MutexGuard<'_, Knobs> {
        self.knobs.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// An OAuth 2.0 identity provider and a protected API, served on `127.0.0.1`.
///
/// Stops serving when dropped.
pub struct TestIdentityProvider {
    addr: SocketAddr,
    inner: Arc<Inner>,
    server: JoinHandle<()>,
}

impl fmt::Debug for TestIdentityProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TestIdentityProvider")
            .field("addr", &self.addr)
            .field("token_requests", &self.token_requests())
            .finish_non_exhaustive()
    }
}

impl Drop for TestIdentityProvider {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// The client id registered by default.
pub const CLIENT_ID: &str = "test-client";
/// The client secret registered by default.
pub const CLIENT_SECRET: &str = "test-secret";

impl TestIdentityProvider {
    /// Starts on a free loopback port, on the system clock.
    pub async fn start() -> Result<Self> {
        Self::start_with_clock(SystemClock).await
    }

    /// Starts on a free loopback port; expiry is judged on `clock`.
    pub async fn start_with_clock(clock: impl Clock) -> Result<Self> {
        let inner = Arc::new(Inner {
            clock: Arc::new(clock),
            knobs: Mutex::new(Knobs {
                lifetime: Some(Duration::from_secs(300)),
                expires_in_as_string: false,
                jwt: false,
                refresh_tokens: false,
                token_type: "Bearer".into(),
                delay: Duration::ZERO,
                behavior: TokenBehavior::Issue,
                queued: VecDeque::new(),
                api: ApiBehavior::Validate,
                clients: HashMap::from([(CLIENT_ID.to_owned(), CLIENT_SECRET.to_owned())]),
                requests: Vec::new(),
                api_log: Vec::new(),
                issued: HashMap::new(),
            }),
            token_requests: AtomicU64::new(0),
            refresh_requests: AtomicU64::new(0),
            api_requests: AtomicU64::new(0),
            api_rejections: AtomicU64::new(0),
            serial: AtomicU64::new(0),
        });
        let app = Router::new()
            .route("/token", post(token_endpoint))
            .route("/api/{*path}", any(api_endpoint))
            .with_state(inner.clone());
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
        Ok(Self { addr, inner, server })
    }

    /// `http://127.0.0.1:PORT`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The token endpoint.
    pub fn token_url(&self) -> String {
        format!("{}/token", self.base_url())
    }

    /// A protected API URL; any path below `/api/` works.
    pub fn api_url(&self, path: &str) -> String {
        format!("{}/api/{}", self.base_url(), path.trim_start_matches('/'))
    }

    /// The default client's id and secret.
    pub fn credentials(&self) -> (String, ClientSecret) {
        (CLIENT_ID.to_owned(), ClientSecret::new(CLIENT_SECRET))
    }

    /// Registers another client.
    pub fn register_client(&self, id: &str, secret: &str) {
        self.inner.knobs().clients.insert(id.to_owned(), secret.to_owned());
    }

    /// Sets `expires_in` of issued tokens (`None`: omit it).
    pub fn set_lifetime(&self, lifetime: Option<Duration>) {
        self.inner.knobs().lifetime = lifetime;
    }

    /// Sends `expires_in` as a JSON string.
    pub fn set_expires_in_as_string(&self, on: bool) {
        self.inner.knobs().expires_in_as_string = on;
    }

    /// Issues JWT access tokens (with `exp` on the provider's clock) instead of opaque ones.
    pub fn set_jwt(&self, on: bool) {
        self.inner.knobs().jwt = on;
    }

    /// Issues refresh tokens too.
    pub fn set_refresh_tokens(&self, on: bool) {
        self.inner.knobs().refresh_tokens = on;
    }

    /// Sets the `token_type` sent (default `Bearer`).
    pub fn set_token_type(&self, token_type: &str) {
        self.inner.knobs().token_type = token_type.to_owned();
    }

    /// Delays every token response by `delay`.
    pub fn set_delay(&self, delay: Duration) {
        self.inner.knobs().delay = delay;
    }

    /// Sets what the token endpoint does from now on.
    pub fn set_behavior(&self, behavior: TokenBehavior) {
        let mut k = self.inner.knobs();
        k.queued.clear();
        k.behavior = behavior;
    }

    /// Makes the next `n` token requests behave as `behavior`, then back to normal.
    pub fn fail_next(&self, n: usize, behavior: TokenBehavior) {
        let mut k = self.inner.knobs();
        k.queued.extend(std::iter::repeat_n(behavior, n));
    }

    /// Sets what the protected API does.
    pub fn set_api_behavior(&self, behavior: ApiBehavior) {
        self.inner.knobs().api = behavior;
    }

    /// Revokes every token issued so far: the API rejects them from now on.
    pub fn revoke_all(&self) {
        self.inner.knobs().issued.values_mut().for_each(|t| t.revoked = true);
    }

    /// Token requests received (`client_credentials` and `refresh_token` grants).
    pub fn token_requests(&self) -> u64 {
        self.inner.token_requests.load(Ordering::SeqCst)
    }

    /// Token requests with `grant_type=refresh_token`.
    pub fn refresh_requests(&self) -> u64 {
        self.inner.refresh_requests.load(Ordering::SeqCst)
    }

    /// API requests received.
    pub fn api_requests(&self) -> u64 {
        self.inner.api_requests.load(Ordering::SeqCst)
    }

    /// API requests rejected for their token.
    pub fn api_rejections(&self) -> u64 {
        self.inner.api_rejections.load(Ordering::SeqCst)
    }

    /// Every token request received, oldest first.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.inner.knobs().requests.clone()
    }

    /// Every API request accepted, oldest first.
    pub fn api_log(&self) -> Vec<ApiRequest> {
        self.inner.knobs().api_log.clone()
    }

    /// Tokens issued so far.
    pub fn issued(&self) -> usize {
        self.inner.knobs().issued.len()
    }
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

fn record(headers: &HeaderMap, body: &[u8]) -> RecordedRequest {
    let authorization = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let pair = authorization.as_deref().and_then(split_basic);
    let basic_raw =
        pair.as_deref().and_then(|p| p.split_once(':')).map(|(a, b)| (a.to_owned(), b.to_owned()));
    let basic_decoded = basic_raw.as_ref().map(|(a, b)| (form_decode(a), form_decode(b)));
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).map(str::to_owned);
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
    RecordedRequest { authorization, basic_decoded, basic_raw, form, content_type }
}

fn oauth_error(status: u16, code: &str) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST);
    (status, axum::Json(json!({"error": code, "error_description": format!("test provider says {code}")})))
        .into_response()
}

/// An unsigned-in-effect JWT carrying `claims`, for tests of expiry resolution.
pub fn fake_jwt(claims: &Value) -> String {
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
    let payload = URL_SAFE_NO_PAD.encode(claims.to_string());
    // Not a real signature: nothing here verifies it, the provider looks tokens up.
    format!("{header}.{payload}.{}", URL_SAFE_NO_PAD.encode(b"test-signature"))
}

async fn token_endpoint(State(inner): State<Arc<Inner>>, headers: HeaderMap, body: Bytes) -> Response {
    inner.token_requests.fetch_add(1, Ordering::SeqCst);
    let request = record(&headers, &body);
    let (delay, behavior) = {
        let mut k = inner.knobs();
        k.requests.push(request.clone());
        let behavior = k.queued.pop_front().unwrap_or_else(|| k.behavior.clone());
        (k.delay, behavior)
    };
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    match behavior {
        TokenBehavior::Issue => {}
        TokenBehavior::OAuthError { status, code } => return oauth_error(status, &code),
        TokenBehavior::Status(s) => {
            return StatusCode::from_u16(s).unwrap_or(StatusCode::BAD_GATEWAY).into_response();
        }
        TokenBehavior::Raw { status, content_type, body } => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
            return (status, [(header::CONTENT_TYPE, content_type)], body).into_response();
        }
        TokenBehavior::RetryAfter(secs) => {
            return (StatusCode::SERVICE_UNAVAILABLE, [(header::RETRY_AFTER, secs.to_string())])
                .into_response();
        }
    }

    // Client authentication: exactly one method (RFC 6749 §2.3).
    let in_body = request
        .field("client_id")
        .map(|id| (id.to_owned(), request.field("client_secret").unwrap_or_default().to_owned()));
    let client = match (&request.basic_decoded, in_body) {
        (Some(_), Some(_)) => return oauth_error(400, "invalid_request"),
        (Some(pair), None) => pair.clone(),
        (None, Some(pair)) => pair,
        (None, None) => return oauth_error(401, "invalid_client"),
    };
    let mut k = inner.knobs();
    if k.clients.get(&client.0) != Some(&client.1) {
        return oauth_error(401, "invalid_client");
    }
    match request.field("grant_type") {
        Some("client_credentials") => {}
        Some("refresh_token") => {
            inner.refresh_requests.fetch_add(1, Ordering::SeqCst);
            let known = request.field("refresh_token").is_some_and(|t| t.starts_with("rt-"));
            if !known {
                return oauth_error(400, "invalid_grant");
            }
        }
        _ => return oauth_error(400, "unsupported_grant_type"),
    }

    let n = inner.serial.fetch_add(1, Ordering::SeqCst) + 1;
    let now = inner.clock.now();
    let lifetime = k.lifetime.unwrap_or(Duration::from_secs(300));
    let expires_at = now + lifetime;
    let exp = expires_at.duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let access_token = if k.jwt {
        fake_jwt(&json!({"sub": client.0, "exp": exp, "jti": format!("{n}-{}", fastrand::u64(..))}))
    } else {
        format!("at-{n}-{:016x}", fastrand::u64(..))
    };
    k.issued.insert(access_token.clone(), Issued { expires_at, revoked: false });
    let mut response = json!({
        "access_token": access_token,
        "token_type": k.token_type,
        "scope": request.field("scope"),
    });
    if let Some(l) = k.lifetime {
        response["expires_in"] =
            if k.expires_in_as_string { json!(l.as_secs().to_string()) } else { json!(l.as_secs()) };
    }
    if k.refresh_tokens {
        response["refresh_token"] = json!(format!("rt-{n}"));
    }
    drop(k);
    let mut resp = axum::Json(response).into_response();
    resp.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

async fn api_endpoint(
    State(inner): State<Arc<Inner>>,
    uri: Uri,
    headers: HeaderMap,
    _body: Bytes,
) -> Response {
    inner.api_requests.fetch_add(1, Ordering::SeqCst);
    let reject = |status: StatusCode, challenge: &'static str| {
        inner.api_rejections.fetch_add(1, Ordering::SeqCst);
        (status, [(header::WWW_AUTHENTICATE, challenge)]).into_response()
    };
    let k = inner.knobs();
    match k.api {
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
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, t)| t.to_owned());
    let Some(token) = token else {
        return reject(StatusCode::UNAUTHORIZED, r#"Bearer realm="test""#);
    };
    let now = inner.clock.now();
    let valid = k.issued.get(&token).is_some_and(|t| !t.revoked && now < t.expires_at);
    if !valid {
        return if k.api == ApiBehavior::SanteDbStyle {
            reject(
                StatusCode::FORBIDDEN,
                r#"bearer realm="test" error="invalid_token" error_description="Invalid bearer token""#,
            )
        } else {
            reject(
                StatusCode::UNAUTHORIZED,
                r#"Bearer realm="test", error="invalid_token", error_description="expired or revoked""#,
            )
        };
    }
    drop(k);
    let seen = ApiRequest {
        query: uri.query().map(str::to_owned),
        headers: headers
            .iter()
            .filter(|(name, _)| *name != header::AUTHORIZATION)
            .map(|(n, v)| (n.as_str().to_owned(), v.to_str().unwrap_or_default().to_owned()))
            .collect(),
    };
    inner.knobs().api_log.push(seen);
    axum::Json(json!({"ok": true})).into_response()
}
