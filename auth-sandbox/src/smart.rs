//! The SMART Backend Services emulator: an authorization server that takes a signed
//! client assertion (`private_key_jwt`, RFC 7523) as HL7 SMART App Launch 2.x
//! specifies, and a FHIR API that accepts the tokens it issued.
//!
//! * `GET {base}/fhir/.well-known/smart-configuration`: the discovery document,
//!   listing the token endpoint, `private_key_jwt`, `RS384`/`ES384` and the
//!   `client_credentials` grant (all mandatory for backend services).
//! * `POST {base}/auth/token`: form-encoded `grant_type=client_credentials`,
//!   `scope` (`system/…` scopes only), `client_assertion_type` (exactly
//!   [`CLIENT_ASSERTION_TYPE`]) and `client_assertion`: a JWT whose header names a
//!   registered `kid` and its algorithm, signed with the client's key, with
//!   `iss` = `sub` = the client id, `aud` = the token URL, `exp` in the future and at
//!   most five minutes away, and a `jti` never seen before. A good request gets an
//!   opaque bearer token for [`SandboxConfig::token_lifetime`], with `expires_in`
//!   and the granted `scope`; a bad assertion `401 invalid_client`, other mistakes
//!   `400` with the RFC 6749 code.
//! * `{base}/fhir/…`: the shared FHIR server ([`crate::fhir`]); a missing, unknown, expired or
//!   revoked bearer gets `401` with `WWW-Authenticate: Bearer error="invalid_token"`.
//!
//! The seeded client ([`SEED_CLIENT_ID`], kid [`SEED_KEY_ID`]) signs with an ES384
//! key generated when the emulator starts ([`SmartEmulator::private_key`]); tests
//! can register clients with keys of their own ([`SmartEmulator::register_client`]).
//! Assumption where SMART leaves a choice: the token path, and that the
//! authorization server checks `exp` on its own clock ([`SandboxConfig::clock`]).

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use auth_core::PrivateKeyPem;
use axum::extract::rejection::FormRejection;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Form, Json, Router};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Value, json};

use super::SandboxConfig;
use super::faults::{self, Faults};
use super::fhir::{FhirStore, header_str, outcome_json, sample_patients};
use super::tokens::{Refusal, TokenRegistry};
/// `client_assertion_type` of a JWT client assertion (RFC 7523).
pub(crate) const CLIENT_ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
/// The longest lifetime SMART allows an assertion.
const MAX_ASSERTION_LIFETIME: Duration = Duration::from_secs(300);

/// The algorithms SMART Backend Services clients sign their assertions with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyAlgorithm {
    /// RSASSA-PKCS1-v1_5 with SHA-384.
    Rs384,
    /// ECDSA on P-384 with SHA-384.
    Es384,
}

/// Path of the token endpoint under the emulator's base.
pub(crate) const TOKEN_PATH: &str = "/auth/token";
/// Path of the FHIR API under the emulator's base.
pub(crate) const FHIR_PATH: &str = "/fhir";
/// The seeded backend client.
pub(crate) const SEED_CLIENT_ID: &str = "sandbox-backend-client";
/// The `kid` of the seeded client's key.
pub(crate) const SEED_KEY_ID: &str = "sandbox-key-1";
/// Leeway for the assertion's `exp` against the server's clock.
const LEEWAY_SECS: u64 = 60;

/// What the token endpoint saw in one request (the assertion itself is left out).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SmartTokenRequest {
    /// The `iss` of the assertion, if it could be read.
    pub client_id: Option<String>,
    /// The `scope` field.
    pub scope: Option<String>,
    /// The HTTP status answered.
    pub status: u16,
}

struct ClientKey {
    kid: String,
    alg: KeyAlgorithm,
    public_pem: String,
}

#[derive(Default)]
struct Books {
    clients: HashMap<String, ClientKey>,
    seen_jti: HashSet<String>,
    token_log: Vec<SmartTokenRequest>,
}

struct Inner {
    base: String,
    lifetime: Duration,
    registry: TokenRegistry,
    store: Arc<FhirStore>,
    faults: Faults,
    idp_faults: Faults,
    private_key: PrivateKeyPem,
    books: Mutex<Books>,
}

impl Inner {
    fn books(&self) -> MutexGuard<'_, Books> {
        self.books.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn token_url(&self) -> String {
        format!("{}{TOKEN_PATH}", self.base)
    }
}

/// The SMART Backend Services emulator.
pub struct SmartEmulator {
    inner: Arc<Inner>,
}

impl fmt::Debug for SmartEmulator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The private key is a secret, if only a test one.
        f.debug_struct("SmartEmulator")
            .field("base", &self.inner.base)
            .field("lifetime", &self.inner.lifetime)
            .field("clients", &self.inner.books().clients.len())
            .field("token_requests", &self.inner.registry.requests())
            .finish_non_exhaustive()
    }
}

fn io_error(what: &str, e: impl fmt::Display) -> std::io::Error {
    std::io::Error::other(format!("{what}: {e}"))
}

impl SmartEmulator {
    pub(crate) async fn start(public_base: &str, config: &SandboxConfig) -> std::io::Result<Self> {
        let base = public_base.trim_end_matches('/').to_owned();
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384)
            .map_err(|e| io_error("cannot generate the SMART client key", e))?;
        let store = FhirStore::new(format!("{base}{FHIR_PATH}"));
        store.seed(sample_patients());
        store.set_token_url(format!("{base}{TOKEN_PATH}"));
        let emulator = Self {
            inner: Arc::new(Inner {
                base,
                lifetime: config.token_lifetime,
                registry: TokenRegistry::new(config.clock.clone()).with_marker(&config.token_marker),
                store,
                faults: Faults::default(),
                idp_faults: Faults::default(),
                private_key: PrivateKeyPem::new(key.serialize_pem()),
                books: Mutex::default(),
            }),
        };
        emulator.register_client(SEED_CLIENT_ID, SEED_KEY_ID, KeyAlgorithm::Es384, &key.public_key_pem());
        Ok(emulator)
    }

    pub(crate) fn router(&self) -> Router {
        let inner = &self.inner;
        let fhir = inner.store.router().layer(middleware::from_fn_with_state(inner.clone(), require_bearer));
        let idp = Router::new()
            .route(TOKEN_PATH, post(token))
            .route(&format!("{FHIR_PATH}/.well-known/smart-configuration"), get(discovery))
            .with_state(inner.clone())
            .layer(middleware::from_fn_with_state(inner.idp_faults.clone(), faults::apply));
        Router::new()
            .merge(idp)
            .nest(FHIR_PATH, fhir)
            .layer(middleware::from_fn_with_state(inner.faults.clone(), faults::apply))
    }

    /// The emulator's base URL (`{sandbox}/smart`).
    pub fn base_url(&self) -> &str {
        &self.inner.base
    }

    /// The token URL.
    pub fn token_url(&self) -> String {
        self.inner.token_url()
    }

    /// The FHIR base URL (discovery lives under it).
    pub fn fhir_base(&self) -> String {
        format!("{}{FHIR_PATH}", self.inner.base)
    }

    /// The seeded client id.
    pub fn client_id(&self) -> &str {
        SEED_CLIENT_ID
    }

    /// The `kid` of the seeded client's key.
    pub fn key_id(&self) -> &str {
        SEED_KEY_ID
    }

    /// The seeded client's private key (ES384, PKCS#8 PEM), generated at start.
    pub fn private_key(&self) -> PrivateKeyPem {
        self.inner.private_key.clone()
    }

    /// Registers (or replaces) a client whose assertions verify with `public_pem`
    /// (SPKI PEM) under `alg`, announced as `kid`.
    pub fn register_client(&self, client_id: &str, kid: &str, alg: KeyAlgorithm, public_pem: &str) {
        let key = ClientKey { kid: kid.to_owned(), alg, public_pem: public_pem.to_owned() };
        self.inner.books().clients.insert(client_id.to_owned(), key);
        self.inner.registry.register(client_id, kid);
    }

    /// Token requests received in all (including refused ones).
    pub fn token_requests(&self) -> u64 {
        self.inner.registry.requests()
    }

    /// Token requests whose assertion named `client_id` as its issuer.
    pub fn token_requests_for(&self, client_id: &str) -> u64 {
        self.inner.registry.requests_for(client_id)
    }

    /// FHIR requests received.
    pub fn api_requests(&self) -> u64 {
        self.inner.registry.api_requests()
    }

    /// FHIR requests the API answered 401 (no valid bearer).
    pub fn api_rejections(&self) -> u64 {
        self.inner.registry.api_rejections()
    }

    /// Every token request received, oldest first.
    pub fn token_log(&self) -> Vec<SmartTokenRequest> {
        self.inner.books().token_log.clone()
    }

    /// Issued tokens, clients and request counters.
    pub fn registry(&self) -> &TokenRegistry {
        &self.inner.registry
    }

    /// The FHIR data.
    pub fn fhir_store(&self) -> &Arc<FhirStore> {
        &self.inner.store
    }

    /// Revokes every token issued so far (the API then answers 401).
    pub fn revoke_all(&self) {
        self.inner.registry.revoke_all();
    }

    /// Fault knobs for every route.
    pub fn faults(&self) -> &Faults {
        &self.inner.faults
    }

    /// Fault knobs for the authorization server only (token endpoint and
    /// discovery); the FHIR API is left alone.
    pub fn idp_faults(&self) -> &Faults {
        &self.inner.idp_faults
    }
}

fn oauth_error(status: StatusCode, code: &str, description: &str) -> Response {
    let body = json!({"error": code, "error_description": description});
    (status, [(header::CACHE_CONTROL, "no-store")], Json(body)).into_response()
}

async fn discovery(State(inner): State<Arc<Inner>>) -> Json<Value> {
    Json(json!({
        "issuer": inner.base,
        "token_endpoint": inner.token_url(),
        "token_endpoint_auth_methods_supported": ["private_key_jwt"],
        "token_endpoint_auth_signing_alg_values_supported": ["RS384", "ES384"],
        "grant_types_supported": ["client_credentials"],
        "scopes_supported": ["system/*.rs", "system/Patient.rs", "system/Observation.rs"],
        "capabilities": ["client-confidential-asymmetric", "permission-v2"],
    }))
}

async fn token(
    State(inner): State<Arc<Inner>>,
    form: Result<Form<HashMap<String, String>>, FormRejection>,
) -> Response {
    // An unreadable body reads as an empty form: `invalid_request` below.
    let form = form.map(|Form(f)| f).unwrap_or_default();
    let client_id = form
        .get("client_assertion")
        .and_then(|a| auth_core::token::jwt_claims(a))
        .and_then(|claims| claims.get("iss").and_then(Value::as_str).map(str::to_owned));
    inner.registry.count_request(client_id.as_deref());
    let response = match issue(&inner, &form, client_id.as_deref()) {
        Ok(body) => (StatusCode::OK, [(header::CACHE_CONTROL, "no-store")], Json(body)).into_response(),
        Err(response) => response,
    };
    let record = SmartTokenRequest {
        client_id,
        scope: form.get("scope").cloned(),
        status: response.status().as_u16(),
    };
    inner.books().token_log.push(record);
    response
}

fn issue(inner: &Inner, form: &HashMap<String, String>, client_id: Option<&str>) -> Result<Value, Response> {
    let field = |name: &str| form.get(name).map(String::as_str).filter(|v| !v.is_empty());
    match field("grant_type") {
        Some("client_credentials") => {}
        Some(_) => {
            return Err(oauth_error(
                StatusCode::BAD_REQUEST,
                "unsupported_grant_type",
                "client_credentials only",
            ));
        }
        None => {
            return Err(oauth_error(StatusCode::BAD_REQUEST, "invalid_request", "grant_type is required"));
        }
    }
    if field("client_assertion_type") != Some(CLIENT_ASSERTION_TYPE) {
        return Err(oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "client_assertion_type must be jwt-bearer",
        ));
    }
    let Some(scope) = field("scope") else {
        return Err(oauth_error(StatusCode::BAD_REQUEST, "invalid_scope", "scope is required"));
    };
    if !scope.split(' ').all(|s| s.starts_with("system/")) {
        return Err(oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_scope",
            "backend services grant system/ scopes only",
        ));
    }
    let Some(assertion) = field("client_assertion") else {
        return Err(oauth_error(StatusCode::BAD_REQUEST, "invalid_request", "client_assertion is required"));
    };
    let bad = |why: &str| oauth_error(StatusCode::UNAUTHORIZED, "invalid_client", why);
    let Some(client_id) = client_id else { return Err(bad("the client assertion cannot be read")) };
    let header =
        jsonwebtoken::decode_header(assertion).map_err(|_| bad("the client assertion cannot be read"))?;
    let (alg, pem) = {
        let books = inner.books();
        let Some(client) = books.clients.get(client_id) else { return Err(bad("unknown client")) };
        if header.kid.as_deref() != Some(client.kid.as_str()) {
            return Err(bad("unknown kid"));
        }
        let alg = match client.alg {
            KeyAlgorithm::Rs384 => Algorithm::RS384,
            _ => Algorithm::ES384,
        };
        (alg, client.public_pem.clone())
    };
    if header.alg != alg || header.typ.as_deref() != Some("JWT") {
        return Err(bad("unexpected assertion header"));
    }
    let key = match alg {
        Algorithm::RS384 => DecodingKey::from_rsa_pem(pem.as_bytes()),
        _ => DecodingKey::from_ec_pem(pem.as_bytes()),
    }
    .map_err(|_| bad("the client's registered key is unusable"))?;
    let token_url = inner.token_url();
    let mut validation = Validation::new(alg);
    validation.set_audience(&[token_url.as_str()]);
    validation.set_issuer(&[client_id]);
    validation.set_required_spec_claims(&["exp", "iss", "sub", "aud"]);
    // `exp` is judged below, on the emulator's clock.
    validation.validate_exp = false;
    let claims = jsonwebtoken::decode::<Value>(assertion, &key, &validation)
        .map_err(|_| bad("the client assertion does not verify"))?
        .claims;
    if claims.get("sub").and_then(Value::as_str) != Some(client_id) {
        return Err(bad("sub must equal iss"));
    }
    let now = inner.registry.now_secs();
    let exp = claims.get("exp").and_then(Value::as_u64).unwrap_or(0);
    if exp.saturating_add(LEEWAY_SECS) <= now || exp > now + MAX_ASSERTION_LIFETIME.as_secs() + LEEWAY_SECS {
        return Err(bad("the client assertion is expired or lives longer than five minutes"));
    }
    let Some(jti) = claims.get("jti").and_then(Value::as_str) else { return Err(bad("jti is required")) };
    if !inner.books().seen_jti.insert(jti.to_owned()) {
        return Err(bad("the client assertion was already used"));
    }
    let access_token = inner.registry.opaque("smart-");
    inner.registry.issue(&access_token, client_id, inner.lifetime, Some(scope.to_owned()));
    Ok(json!({
        "access_token": access_token,
        "token_type": "bearer",
        "expires_in": inner.lifetime.as_secs(),
        "scope": scope,
    }))
}

async fn require_bearer(State(inner): State<Arc<Inner>>, request: Request, next: Next) -> Response {
    inner.registry.count_api_request();
    match inner.registry.validate(header_str(request.headers(), "authorization")) {
        Ok(_) => next.run(request).await,
        Err(refusal) => {
            inner.registry.count_api_rejection();
            let challenge = match refusal {
                Refusal::Missing => r#"Bearer realm="fhir""#,
                Refusal::Unknown | Refusal::Expired | Refusal::Revoked => {
                    r#"Bearer realm="fhir", error="invalid_token", error_description="the access token is not valid""#
                }
            };
            let mut response =
                (StatusCode::UNAUTHORIZED, Json(outcome_json("login", "a valid bearer token is required")))
                    .into_response();
            response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static(challenge));
            response
        }
    }
}
