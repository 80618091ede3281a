//! The Graphnet emulator: a token endpoint as Graphnet documents it, and a FHIR API
//! behind an Azure API Management gateway.
//!
//! * `POST {base}/vlive/hpca/oauth/token` (the path of Graphnet's documented
//!   example): `application/x-www-form-urlencoded` only, with `grant_type`,
//!   `client_id` and `client_secret` in the body (no Basic header, no repeated
//!   parameters). It answers exactly like the documented example,
//!   `{"token_type":"Bearer","access_token":"eyJ…","refresh_token":null}`, with no
//!   `expires_in`: the access token is an HS256-signed JWT whose `exp` is
//!   [`SandboxConfig::token_lifetime`] after issue on [`SandboxConfig::clock`], and
//!   whose [`DEFAULT_API_CLAIM`] claim lists the client's authorised APIs. Errors are
//!   RFC 6749 JSON with a description. [`GraphnetEmulator::set_opaque_tokens`] issues
//!   non-JWT tokens instead.
//! * `{base}/fhir/…`: the shared FHIR server ([`crate::fhir`]) behind APIM's checks, in APIM's
//!   order: the subscription key first (`401 {"statusCode":401,"message":"Access
//!   denied due to missing|invalid subscription key…"}`), then the bearer token
//!   (`401` with `WWW-Authenticate: Bearer error="invalid_token"`), then whether the
//!   token authorises the API (the first path segment, e.g. `Patient`; `403`). A
//!   batch or transaction (`POST {base}/fhir`) needs every API its entries name;
//!   system-level operations (`$…`) and `metadata` need none; system search and
//!   history (`_search`, `_history`) cross every API and are refused 403.
//!
//! Assumptions where Graphnet publishes nothing: the claim name, the invalid-client
//! status (400, the RFC 6749 default), the 403 body for an API the token does not
//! list, and that the token endpoint takes no subscription key (switch with
//! [`GraphnetEmulator::require_key_on_token_request`]).

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, UNIX_EPOCH};

use auth_core::{ClientSecret, SecretValue};
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::json;

use super::SandboxConfig;
use super::faults::{self, Faults};
use super::fhir::{FhirStore, header_str, sample_patients};
use super::tokens::{Refusal, TokenRegistry, hs256_jwt};
/// The claim listing a client's authorised APIs (Graphnet does not publish its
/// name; the provider's default is the same assumption).
pub(crate) const DEFAULT_API_CLAIM: &str = "authorised_apis";
/// Azure API Management's subscription key header.
pub(crate) const SUBSCRIPTION_KEY_HEADER: &str = "Ocp-Apim-Subscription-Key";

/// Path of the token endpoint under the emulator's base (as in Graphnet's example).
pub(crate) const TOKEN_PATH: &str = "/vlive/hpca/oauth/token";

/// The client id of Graphnet's documented example, taken literally.
pub(crate) const SEED_CLIENT_ID: &str = "[client-id-value]";
/// The client secret of Graphnet's documented example, taken literally.
pub(crate) const SEED_CLIENT_SECRET: &str = "[client-secret-value]";
/// The seeded APIM subscription key (32 hex digits, as Azure issues them).
pub(crate) const SEED_SUBSCRIPTION_KEY: &str = "5f1c0b6e9a2d4c7f8e5b1a0d6c9e2f47";
/// The APIs the seeded client is authorised for.
pub(crate) const SEED_APIS: [&str; 3] = ["Encounter", "Observation", "Patient"];

/// APIM's answer to a request without a subscription key.
pub(crate) const MISSING_KEY_BODY: &str = r#"{"statusCode":401,"message":"Access denied due to missing subscription key. Make sure to include subscription key when making requests to an API."}"#;
/// APIM's answer to a request with a wrong subscription key.
pub(crate) const INVALID_KEY_BODY: &str = r#"{"statusCode":401,"message":"Access denied due to invalid subscription key. Make sure to provide a valid key for an active subscription."}"#;

/// One token request as the emulator received it.
///
/// Holds the client secret and subscription key; its `Debug` shows names only.
#[derive(Clone, Default)]
#[non_exhaustive]
pub struct GraphnetTokenRequest {
    /// The HTTP method.
    pub method: String,
    /// The path, relative to the emulator's base.
    pub path: String,
    /// `Content-Type` as sent.
    pub content_type: Option<String>,
    /// `Accept` as sent.
    pub accept: Option<String>,
    /// `Authorization` as sent (Graphnet wants none on token requests).
    pub authorization: Option<String>,
    /// `Ocp-Apim-Subscription-Key` as sent.
    pub subscription_key: Option<String>,
    /// Names of every header sent, lowercase.
    pub header_names: Vec<String>,
    /// The body exactly as sent.
    pub body: String,
    /// The body decoded as a form, in order.
    pub form: Vec<(String, String)>,
}

impl GraphnetTokenRequest {
    /// A form field by name.
    pub fn field(&self, name: &str) -> Option<&str> {
        self.form.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    /// The names of the form fields, in order.
    pub fn field_names(&self) -> Vec<&str> {
        self.form.iter().map(|(k, _)| k.as_str()).collect()
    }
}

impl fmt::Debug for GraphnetTokenRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Holds client secrets and keys, even if only test ones.
        f.debug_struct("GraphnetTokenRequest")
            .field("method", &self.method)
            .field("path", &self.path)
            .field("content_type", &self.content_type)
            .field("header_names", &self.header_names)
            .field("form_fields", &self.field_names())
            .finish_non_exhaustive()
    }
}

/// One FHIR API request as the gateway received it.
#[derive(Clone, Default)]
#[non_exhaustive]
pub struct GraphnetApiRequest {
    /// The HTTP method.
    pub method: String,
    /// The path, relative to the FHIR base.
    pub path: String,
    /// `Ocp-Apim-Subscription-Key` as sent.
    pub subscription_key: Option<String>,
    /// The bearer token sent, if any.
    pub bearer: Option<String>,
    /// The status answered.
    pub status: u16,
}

impl fmt::Debug for GraphnetApiRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GraphnetApiRequest")
            .field("method", &self.method)
            .field("path", &self.path)
            .field("subscription_key", &self.subscription_key.as_ref().map(|_| "[redacted]"))
            .field("bearer", &self.bearer.as_ref().map(|_| "[redacted]"))
            .field("status", &self.status)
            .finish()
    }
}

#[derive(Debug, Default, Clone, Copy)]
struct Knobs {
    opaque_tokens: bool,
    key_on_token_request: bool,
}

#[derive(Default)]
struct Books {
    knobs: Knobs,
    apis: HashMap<String, Vec<String>>,
    keys: HashSet<String>,
    token_log: Vec<GraphnetTokenRequest>,
    api_log: Vec<GraphnetApiRequest>,
}

struct Inner {
    base: String,
    lifetime: Duration,
    registry: TokenRegistry,
    store: Arc<FhirStore>,
    faults: Faults,
    idp_faults: Faults,
    signing_key: Vec<u8>,
    books: Mutex<Books>,
}

impl Inner {
    fn books(&self) -> MutexGuard<'_, Books> {
        self.books.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The Graphnet emulator.
pub struct GraphnetEmulator {
    inner: Arc<Inner>,
}

impl fmt::Debug for GraphnetEmulator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Clients, keys and the signing key are secrets, if only test ones.
        f.debug_struct("GraphnetEmulator")
            .field("base", &self.inner.base)
            .field("lifetime", &self.inner.lifetime)
            .field("knobs", &self.inner.books().knobs)
            .finish_non_exhaustive()
    }
}

impl GraphnetEmulator {
    pub(crate) async fn start(public_base: &str, config: &SandboxConfig) -> std::io::Result<Self> {
        let base = public_base.trim_end_matches('/').to_owned();
        let registry = TokenRegistry::new(config.clock.clone()).with_marker(&config.token_marker);
        let store = FhirStore::new(format!("{base}/fhir"));
        store.seed(sample_patients());
        store.set_token_url(format!("{base}{TOKEN_PATH}"));
        let signing_key = format!("graphnet-sandbox-{:016x}{:016x}", fastrand::u64(..), fastrand::u64(..));
        let emulator = Self {
            inner: Arc::new(Inner {
                base,
                lifetime: config.token_lifetime,
                registry,
                store,
                faults: Faults::default(),
                idp_faults: Faults::default(),
                signing_key: signing_key.into_bytes(),
                books: Mutex::default(),
            }),
        };
        emulator.register_client(SEED_CLIENT_ID, SEED_CLIENT_SECRET, &SEED_APIS);
        emulator.add_subscription_key(SEED_SUBSCRIPTION_KEY);
        Ok(emulator)
    }

    pub(crate) fn router(&self) -> Router {
        let fhir =
            self.inner.store.router().layer(middleware::from_fn_with_state(self.inner.clone(), gateway));
        let idp = Router::new()
            .route(TOKEN_PATH, post(token))
            .with_state(self.inner.clone())
            .layer(middleware::from_fn_with_state(self.inner.idp_faults.clone(), faults::apply));
        Router::new()
            .merge(idp)
            .nest("/fhir", fhir)
            .layer(middleware::from_fn_with_state(self.inner.faults.clone(), faults::apply))
    }

    /// The emulator's base URL.
    pub fn base_url(&self) -> &str {
        &self.inner.base
    }

    /// The token URL.
    pub fn token_url(&self) -> String {
        format!("{}{TOKEN_PATH}", self.inner.base)
    }

    /// The FHIR base URL (behind the gateway).
    pub fn fhir_base(&self) -> String {
        format!("{}/fhir", self.inner.base)
    }

    /// The seeded client id: Graphnet's example, `[client-id-value]`, taken literally.
    pub fn client_id(&self) -> &str {
        SEED_CLIENT_ID
    }

    /// The seeded client secret.
    pub fn client_secret(&self) -> ClientSecret {
        ClientSecret::new(SEED_CLIENT_SECRET)
    }

    /// The seeded client's id and secret.
    pub fn credentials(&self) -> (String, ClientSecret) {
        (self.client_id().to_owned(), self.client_secret())
    }

    /// The seeded subscription key.
    pub fn subscription_key(&self) -> SecretValue {
        SecretValue::new(SEED_SUBSCRIPTION_KEY)
    }

    /// The name of the claim listing authorised APIs in issued tokens.
    pub fn api_claim(&self) -> &'static str {
        DEFAULT_API_CLAIM
    }

    /// The APIs `client_id` is authorised for, sorted.
    pub fn authorised_apis(&self, client_id: &str) -> Vec<String> {
        self.inner.books().apis.get(client_id).cloned().unwrap_or_default()
    }

    /// Registers (or replaces) a client authorised for `apis`.
    pub fn register_client(&self, client_id: &str, secret: &str, apis: &[&str]) {
        self.inner.registry.register(client_id, secret);
        let mut apis: Vec<String> = apis.iter().map(|a| (*a).to_owned()).collect();
        apis.sort();
        apis.dedup();
        self.inner.books().apis.insert(client_id.to_owned(), apis);
    }

    /// Accepts another subscription key at the gateway.
    pub fn add_subscription_key(&self, key: &str) {
        self.inner.books().keys.insert(key.to_owned());
    }

    /// Issues opaque (non-JWT) tokens instead of JWTs.
    pub fn set_opaque_tokens(&self, on: bool) {
        self.inner.books().knobs.opaque_tokens = on;
    }

    /// Makes the token endpoint require the subscription key, as if it sat behind
    /// the gateway too (Graphnet does not say; default off).
    pub fn require_key_on_token_request(&self, on: bool) {
        self.inner.books().knobs.key_on_token_request = on;
    }

    /// Token requests received in all.
    pub fn token_requests(&self) -> u64 {
        self.inner.registry.requests()
    }

    /// Token requests received that named `client_id`.
    pub fn token_requests_for(&self, client_id: &str) -> u64 {
        self.inner.registry.requests_for(client_id)
    }

    /// Every token request received, oldest first.
    pub fn token_log(&self) -> Vec<GraphnetTokenRequest> {
        self.inner.books().token_log.clone()
    }

    /// The latest token request.
    pub fn last_token_request(&self) -> Option<GraphnetTokenRequest> {
        self.inner.books().token_log.last().cloned()
    }

    /// Every FHIR API request received at the gateway, oldest first.
    pub fn api_log(&self) -> Vec<GraphnetApiRequest> {
        self.inner.books().api_log.clone()
    }

    /// FHIR API requests received at the gateway.
    pub fn api_requests(&self) -> u64 {
        self.inner.registry.api_requests()
    }

    /// FHIR API requests the gateway answered 401 (subscription key or bearer).
    pub fn api_rejections(&self) -> u64 {
        self.inner.registry.api_rejections()
    }

    /// Issued tokens, clients and request counters.
    pub fn registry(&self) -> &TokenRegistry {
        &self.inner.registry
    }

    /// The FHIR data behind the gateway.
    pub fn fhir_store(&self) -> &Arc<FhirStore> {
        &self.inner.store
    }

    /// Latency, 5xx and dropped-connection knobs for every route.
    pub fn faults(&self) -> &Faults {
        &self.inner.faults
    }

    /// Fault knobs for the identity provider only (the token endpoint); the
    /// gateway and FHIR API are left alone.
    pub fn idp_faults(&self) -> &Faults {
        &self.inner.idp_faults
    }

    /// Forgets every token issued so far (as after a key rotation).
    pub fn revoke_all(&self) {
        self.inner.registry.revoke_all();
    }
}

fn oauth_error(status: StatusCode, code: &str, description: &str) -> Response {
    let body = json!({"error": code, "error_description": description});
    (
        status,
        [(header::CONTENT_TYPE, "application/json"), (header::CACHE_CONTROL, "no-store")],
        body.to_string(),
    )
        .into_response()
}

fn apim_json(status: StatusCode, body: String) -> Response {
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// APIM's subscription-key check; `Err` is its answer.
fn check_key(inner: &Inner, headers: &HeaderMap) -> Result<(), Response> {
    match header_str(headers, SUBSCRIPTION_KEY_HEADER).map(str::trim) {
        None | Some("") => Err(apim_json(StatusCode::UNAUTHORIZED, MISSING_KEY_BODY.to_owned())),
        Some(key) if inner.books().keys.contains(key) => Ok(()),
        Some(_) => Err(apim_json(StatusCode::UNAUTHORIZED, INVALID_KEY_BODY.to_owned())),
    }
}

fn media_type(headers: &HeaderMap) -> Option<String> {
    header_str(headers, header::CONTENT_TYPE.as_str())
        .map(|v| v.split(';').next().unwrap_or_default().trim().to_ascii_lowercase())
}

async fn token(
    State(inner): State<Arc<Inner>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let text = String::from_utf8_lossy(&body).into_owned();
    let form: Vec<(String, String)> = form_urlencoded::parse(text.as_bytes()).into_owned().collect();
    let field = |name: &str| form.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
    let is_form = media_type(&headers).as_deref() == Some("application/x-www-form-urlencoded");
    let client_id = if is_form { field("client_id") } else { None };
    inner.registry.count_request(client_id.as_deref());
    let knobs = {
        let mut books = inner.books();
        books.token_log.push(GraphnetTokenRequest {
            method: method.to_string(),
            path: uri.path().to_owned(),
            content_type: header_str(&headers, header::CONTENT_TYPE.as_str()).map(str::to_owned),
            accept: header_str(&headers, header::ACCEPT.as_str()).map(str::to_owned),
            authorization: header_str(&headers, header::AUTHORIZATION.as_str()).map(str::to_owned),
            subscription_key: header_str(&headers, SUBSCRIPTION_KEY_HEADER).map(str::to_owned),
            header_names: headers.keys().map(|k| k.as_str().to_owned()).collect(),
            body: text.clone(),
            form: form.clone(),
        });
        books.knobs
    };

    if knobs.key_on_token_request
        && let Err(refused) = check_key(&inner, &headers)
    {
        return refused;
    }
    if !is_form {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "The request body must be application/x-www-form-urlencoded",
        );
    }
    let mut seen = HashSet::new();
    if let Some((name, _)) = form.iter().find(|(k, _)| !seen.insert(k.as_str())) {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            &format!("The parameter '{name}' is repeated"),
        );
    }
    if headers.contains_key(header::AUTHORIZATION) {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "Client credentials must be sent as client_id and client_secret in the request body",
        );
    }
    match field("grant_type").as_deref() {
        None | Some("") => {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "The grant_type parameter is missing",
            );
        }
        Some("client_credentials") => {}
        Some(_) => {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "unsupported_grant_type",
                "Only the client_credentials grant is supported",
            );
        }
    }
    let (Some(client_id), Some(secret)) = (client_id.filter(|c| !c.is_empty()), field("client_secret"))
    else {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "The client_id and client_secret parameters are required",
        );
    };
    if !inner.registry.check(&client_id, &secret) {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_client",
            "Client authentication failed: unknown client or wrong client secret",
        );
    }

    let now = inner.registry.now_secs();
    let exp = now.saturating_add(inner.lifetime.as_secs());
    let access_token = if knobs.opaque_tokens {
        inner.registry.opaque("gn-")
    } else {
        let apis = inner.books().apis.get(&client_id).cloned().unwrap_or_default();
        let claims = json!({
            "iss": format!("{}/vlive/hpca", inner.base),
            "sub": client_id,
            "client_id": client_id,
            "aud": format!("{}/fhir", inner.base),
            "iat": now,
            "nbf": now,
            "exp": exp,
            "jti": inner.registry.opaque("jti-"),
            DEFAULT_API_CLAIM: apis,
        });
        hs256_jwt(&claims, &inner.signing_key)
    };
    // The gateway expires the token at its `exp`, to the second, as the client reads it.
    let expires_at = UNIX_EPOCH.checked_add(Duration::from_secs(exp)).unwrap_or(UNIX_EPOCH);
    let lifetime = expires_at.duration_since(inner.registry.now()).unwrap_or_default();
    inner.registry.issue(&access_token, &client_id, lifetime, None);
    // Written out by hand: the documented example has this field order, which a
    // serialised map would not keep.
    let body = format!(r#"{{"token_type":"Bearer","access_token":"{access_token}","refresh_token":null}}"#);
    (
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, "application/json; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
            (header::PRAGMA, "no-cache"),
        ],
        body,
    )
        .into_response()
}

/// Azure API Management in front of the FHIR server.
/// The APIs a batch or transaction Bundle's entries name (the first segment of each
/// `request.url`, an absolute URL's path after `/fhir/`). Garbage names none: the
/// store refuses it with 400.
fn bundle_apis(body: &[u8]) -> Vec<String> {
    let Ok(bundle) = serde_json::from_slice::<serde_json::Value>(body) else { return Vec::new() };
    let entries = bundle.get("entry").and_then(serde_json::Value::as_array).cloned().unwrap_or_default();
    entries
        .iter()
        .filter_map(|e| e.pointer("/request/url").and_then(serde_json::Value::as_str))
        .map(|url| {
            let relative = match url.split_once("/fhir/") {
                Some((_, rest)) if url.contains("://") => rest,
                _ => url,
            };
            let path = relative.split('?').next().unwrap_or_default();
            path.trim_start_matches('/').split('/').next().unwrap_or_default().to_owned()
        })
        .collect()
}

async fn gateway(State(inner): State<Arc<Inner>>, request: Request, next: Next) -> Response {
    // A batch or transaction is checked against every API it touches: its body is
    // read here and handed on.
    let (request, entry_apis) =
        if request.method() == Method::POST && request.uri().path().trim_matches('/').is_empty() {
            let (parts, body) = request.into_parts();
            let Ok(bytes) = axum::body::to_bytes(body, super::fhir::MAX_BODY).await else {
                return apim_json(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    json!({"statusCode": 413, "message": "Request entity too large"}).to_string(),
                );
            };
            let apis = bundle_apis(&bytes);
            (Request::from_parts(parts, axum::body::Body::from(bytes)), apis)
        } else {
            (request, Vec::new())
        };
    let headers = request.headers();
    let path = request.uri().path().to_owned();
    let bearer = header_str(headers, header::AUTHORIZATION.as_str())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, t)| t.trim().to_owned());
    let mut record = GraphnetApiRequest {
        method: request.method().to_string(),
        path: path.clone(),
        subscription_key: header_str(headers, SUBSCRIPTION_KEY_HEADER).map(str::to_owned),
        bearer,
        status: 0,
    };
    let response = match admit(&inner, headers, &path, &entry_apis) {
        Ok(()) => next.run(request).await,
        Err(refused) => refused,
    };
    record.status = response.status().as_u16();
    inner.registry.count_api_request();
    if record.status == 401 {
        inner.registry.count_api_rejection();
    }
    inner.books().api_log.push(record);
    response
}

fn admit(inner: &Inner, headers: &HeaderMap, path: &str, entry_apis: &[String]) -> Result<(), Response> {
    check_key(inner, headers)?;
    let issued =
        inner.registry.validate(header_str(headers, header::AUTHORIZATION.as_str())).map_err(unauthorized)?;
    let api = path.trim_start_matches('/').split('/').next().unwrap_or_default();
    let books = inner.books();
    let granted = books.apis.get(&issued.client_id);
    let check = |api: &str| {
        if granted.is_some_and(|apis| apis.iter().any(|a| a == api)) {
            Ok(())
        } else {
            Err(apim_json(
                StatusCode::FORBIDDEN,
                json!({"statusCode": 403, "message": format!("The access token does not authorise the {api} API.")})
                    .to_string(),
            ))
        }
    };
    // The capability statement and system operations describe the server, not an
    // API a token is granted; a batch or transaction needs each API it names.
    if api.is_empty() {
        return entry_apis.iter().try_for_each(|a| check(a));
    }
    if api == "metadata" || api.starts_with('$') {
        return Ok(());
    }
    check(api)
}

fn unauthorized(refusal: Refusal) -> Response {
    let challenge = match refusal {
        // RFC 6750 §3.1: no error code when no credentials were sent.
        Refusal::Missing => r#"Bearer realm="graphnet""#,
        Refusal::Expired => {
            r#"Bearer realm="graphnet", error="invalid_token", error_description="The access token expired""#
        }
        Refusal::Unknown | Refusal::Revoked => {
            r#"Bearer realm="graphnet", error="invalid_token", error_description="The access token is invalid""#
        }
    };
    let mut response = apim_json(
        StatusCode::UNAUTHORIZED,
        r#"{"statusCode":401,"message":"Unauthorized. Access token is missing or invalid."}"#.to_owned(),
    );
    response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static(challenge));
    response
}
