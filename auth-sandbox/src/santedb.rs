//! The SanteDB emulator: an OAuth service (`/auth/oauth2_token`, `/auth/signout`)
//! and a FHIR service (`/fhir`, the shared [`crate::fhir`] server), as strict as
//! SanteDB 2.x and 3.x are documented to be (see
//! `shared/reference/provider-wire-specs.md` §1).
//!
//! Two listeners share one identity provider: the sandbox's plain-HTTP port (under
//! `/santedb`), and an HTTPS port of its own that refuses, during the TLS handshake,
//! any client without a certificate signed by the emulator's CA (the node then
//! authenticates by that certificate). Each listener has its own Patient data, so
//! paging links and `Location` headers stay on the listener that issued them.
//!
//! What it enforces, and answers like SanteDB:
//!
//! | request | answer |
//! |---|---|
//! | a body that is not `application/x-www-form-urlencoded` | `400 invalid_request` |
//! | an empty form | `400 invalid_request` "request is empty." |
//! | device credentials that do not split into two parts | `403 unspecified_error` "Malformed HTTP Basic Header" |
//! | unknown device or wrong device secret | `401 unspecified_error` "Invalid device credentials" |
//! | an unknown `grant_type` | `400 unsupported_grant_type` |
//! | no `client_id` | `400 invalid_grant` "invalid client_id" |
//! | wrong or missing `client_secret` | `400 invalid_client` "invalid client_secret" |
//! | no node authentication while one is required | `400 unauthorized_client` |
//! | a refresh token that was used, abandoned or never issued | `400 invalid_grant` "invalid refresh token" |
//! | FHIR without a bearer | `401`, `WWW-Authenticate: bearer realm="…"` |
//! | FHIR with an expired bearer | `401`, `bearer realm="…" error="invalid_token" …` |
//! | FHIR with an unknown or signed-out bearer | `403`, `bearer realm="…" error="invalid_token" …` |
//! | FHIR without `Accept: application/fhir+json` (or `_format=json`) | XML (`application/fhir+xml`), SanteDB's default; `406` for an `Accept` it can serve neither way |
//!
//! The version knob ([`SanteDbEmulator::set_version`]) switches between 2.x (device
//! credentials in `X-Device-Authorization`, `Authorization: Basic` is the
//! *application*, `expires_in` in milliseconds, no sign-out) and 3.x (device in
//! `Authorization: Basic`, `expires_in` in seconds, `/auth/signout`).

use std::collections::HashMap;
use std::fmt;
use std::io;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime};

use auth_core::{ClientSecret, DeviceSecret, PrivateKeyPem};
use axum::body::{Body, Bytes};
use axum::extract::{Extension, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Router, body};
use axum_server::tls::TlsInfo;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Map, Value, json};

use super::SandboxConfig;
use super::faults::{self, Faults};
use super::fhir::{self, FhirStore, header_str, outcome_json, query_pairs, sample_patients};
use super::tls::{CertificateAuthority, IssuedCertificate, TlsServer, mtls_server_config};
use super::tokens::{Refusal, TokenRegistry, hs256_jwt};
/// The token endpoint, relative to the server root.
pub(crate) const TOKEN_PATH: &str = "/auth/oauth2_token";
/// The 3.x sign-out endpoint, relative to the server root.
pub(crate) const SIGNOUT_PATH: &str = "/auth/signout";
/// The FHIR base, relative to the server root.
pub(crate) const FHIR_PATH: &str = "/fhir";
/// The FHIR JSON media type.
const FHIR_JSON: &str = "application/fhir+json";
/// The id_token claim naming the application.
pub(crate) const CLAIM_APPLICATION_ID: &str = "urn:santedb:org:claim:appid";
/// The id_token claim naming the device.
pub(crate) const CLAIM_DEVICE_ID: &str = "urn:santedb:org:claim:devid";

/// The SanteDB server generation the emulator plays.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum SanteDbServerVersion {
    /// 2.x: device credentials in `X-Device-Authorization`, `expires_in` in milliseconds.
    V2,
    /// 3.x: device credentials in `Authorization: Basic`, `expires_in` in seconds, sign-out.
    #[default]
    V3,
}

/// The FHIR XML media type, SanteDB's default answer.
const FHIR_XML: &str = "application/fhir+xml";

/// The policies (scopes) the sandbox grants to every application: SanteDB-style OIDs.
const POLICIES: [&str; 3] =
    ["1.3.6.1.4.1.33349.3.1.5.9.2.1", "1.3.6.1.4.1.33349.3.1.5.9.2.2.0", "1.3.6.1.4.1.33349.3.1.5.9.2.2.1"];

const DEVICE_REQUIRED: &str = "client_credentials grant type requires device authentication either using X509 \
     or X-Device-Authorization or enabling the DeviceAuthorizationAccessBehavior in the configuration.";

#[derive(Debug, Clone, Copy)]
struct Settings {
    version: SanteDbServerVersion,
    require_device: bool,
    refresh_tokens: bool,
    accept_refresh: bool,
    id_token: bool,
    expires_in_elapsed: Duration,
}

struct App {
    secret: String,
    key: String,
}

struct Session {
    client_id: String,
    device_key: Option<String>,
    policies: Vec<String>,
    access_tokens: Vec<String>,
    refresh_token: Option<String>,
    not_after: SystemTime,
    abandoned: bool,
}

#[derive(Default)]
struct Books {
    apps: HashMap<String, App>,
    /// device id → (secret, key)
    devices: HashMap<String, (String, String)>,
    /// client certificate DER → device id
    certificates: HashMap<Vec<u8>, String>,
    sessions: HashMap<String, Session>,
    /// refresh token → session id
    refresh: HashMap<String, String>,
    token_log: Vec<SanteDbTokenRequest>,
    api_log: Vec<SanteDbApiRequest>,
}

struct Shared {
    registry: TokenRegistry,
    lifetime: Duration,
    faults: Faults,
    idp_faults: Faults,
    settings: Mutex<Settings>,
    books: Mutex<Books>,
}

impl Shared {
    fn books(&self) -> MutexGuard<'_, Books> {
        self.books.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn settings(&self) -> Settings {
        *self.settings.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn update(&self, f: impl FnOnce(&mut Settings)) {
        f(&mut self.settings.lock().unwrap_or_else(PoisonError::into_inner));
    }

    fn register_app(&self, client_id: &str, secret: &str) {
        self.registry.register(client_id, secret);
        self.books().apps.insert(client_id.to_owned(), App { secret: secret.to_owned(), key: uuid() });
    }

    fn register_device(&self, device_id: &str, secret: &str) {
        self.books().devices.insert(device_id.to_owned(), (secret.to_owned(), uuid()));
    }
}

/// A request the emulator's OAuth service received (token or sign-out), exactly as
/// it arrived: for asserting what a client put on the wire.
///
/// `Debug` shows names only: the values carry client and device secrets.
#[derive(Clone)]
#[non_exhaustive]
pub struct SanteDbTokenRequest {
    /// The HTTP method.
    pub method: Method,
    /// The path relative to the SanteDB root (`/auth/oauth2_token`).
    pub path: String,
    /// The request headers.
    pub headers: HeaderMap,
    /// The body as sent (lossy UTF-8).
    pub body: String,
    /// The body decoded as a form, in order (empty unless the body was a form).
    pub form: Vec<(String, String)>,
    /// Whether it arrived on the mutual-TLS listener.
    pub mutual_tls: bool,
    /// The device the client certificate belongs to, on the mutual-TLS listener.
    pub certificate_device: Option<String>,
}

impl SanteDbTokenRequest {
    /// A header's value as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        header_str(&self.headers, name)
    }

    /// The first form field called `name`.
    pub fn field(&self, name: &str) -> Option<&str> {
        self.form.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    /// The form's field names, in order.
    pub fn field_names(&self) -> Vec<&str> {
        self.form.iter().map(|(k, _)| k.as_str()).collect()
    }
}

impl fmt::Debug for SanteDbTokenRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SanteDbTokenRequest")
            .field("method", &self.method)
            .field("path", &self.path)
            .field("headers", &self.headers.keys().collect::<Vec<_>>())
            .field("form", &self.field_names())
            .field("mutual_tls", &self.mutual_tls)
            .field("certificate_device", &self.certificate_device)
            .finish()
    }
}

/// A request the emulator's FHIR service received, and how it was answered.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct SanteDbApiRequest {
    /// The HTTP method.
    pub method: Method,
    /// The path relative to the SanteDB root (`/fhir/Patient/…`).
    pub path: String,
    /// The query string.
    pub query: Option<String>,
    /// The `Accept` header.
    pub accept: Option<String>,
    /// Whether an `Authorization` header was sent.
    pub authorization: bool,
    /// The status answered.
    pub status: u16,
    /// The `Content-Type` answered.
    pub content_type: Option<String>,
}

/// The SanteDB emulator.
pub struct SanteDbEmulator {
    base: String,
    shared: Arc<Shared>,
    store: Arc<FhirStore>,
    mtls_store: Arc<FhirStore>,
    ca: CertificateAuthority,
    client_cert: IssuedCertificate,
    tls: TlsServer,
}

impl fmt::Debug for SanteDbEmulator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SanteDbEmulator")
            .field("base", &self.base)
            .field("mtls_base", &self.mtls_base_url())
            .field("settings", &self.shared.settings())
            .finish_non_exhaustive()
    }
}

impl SanteDbEmulator {
    /// The application of the vendor's "Obtaining a session" guide.
    pub const CLIENT_ID: &'static str = "EXAMPLE_APPLICATION";
    /// Its secret, as in the guide (note the `$`, which a form body must encode).
    pub const CLIENT_SECRET: &'static str = "4toXrw0x-SpM1K4c7D$M0OkJcA1OgW4HeOlV";
    /// The device of the guide.
    pub const DEVICE_ID: &'static str = "EXAMPLE_DEVICE_NODE";
    /// Its secret, as in the guide.
    pub const DEVICE_SECRET: &'static str = "qlcEtboF-H5XdK4x1t-arL5GaG4svF9TkL5a";
    /// The device the generated client certificate belongs to.
    pub const CERT_DEVICE_ID: &'static str = "EXAMPLE_CERT_NODE";

    pub(crate) async fn start(public_base: &str, config: &SandboxConfig) -> io::Result<Self> {
        let shared = Arc::new(Shared {
            registry: TokenRegistry::new(config.clock.clone()).with_marker(&config.token_marker),
            lifetime: config.token_lifetime,
            faults: Faults::default(),
            idp_faults: Faults::default(),
            settings: Mutex::new(Settings {
                version: SanteDbServerVersion::default(),
                require_device: true,
                refresh_tokens: true,
                accept_refresh: true,
                id_token: true,
                expires_in_elapsed: Duration::ZERO,
            }),
            books: Mutex::default(),
        });
        shared.register_app(Self::CLIENT_ID, Self::CLIENT_SECRET);
        shared.register_device(Self::DEVICE_ID, Self::DEVICE_SECRET);

        let base = public_base.trim_end_matches('/').to_owned();
        let store = FhirStore::new(format!("{base}{FHIR_PATH}"));
        store.seed(sample_patients());
        store.set_token_url(format!("{base}{TOKEN_PATH}"));

        let ca = CertificateAuthority::new("SanteDB sandbox CA")?;
        let server_cert = ca.issue_server(&["127.0.0.1", "localhost"])?;
        let client_cert = ca.issue_client(Self::CERT_DEVICE_ID)?;
        // A certificate device has a secret nobody knows: it can only use its certificate.
        shared.register_device(Self::CERT_DEVICE_ID, &random_hex(32));
        shared.books().certificates.insert(client_cert.cert_der().to_vec(), Self::CERT_DEVICE_ID.to_owned());

        let listener = std::net::TcpListener::bind(("127.0.0.1", 0))?;
        let mtls_base = format!("https://{}", listener.local_addr()?);
        let mtls_store = FhirStore::new(format!("{mtls_base}{FHIR_PATH}"));
        mtls_store.seed(sample_patients());
        mtls_store.set_token_url(format!("{mtls_base}{TOKEN_PATH}"));
        let tls_config = mtls_server_config(&ca, &server_cert)?;
        let tls = TlsServer::serve_on(listener, app(&shared, &mtls_store), tls_config).await?;
        Ok(Self { base, shared, store, mtls_store, ca, client_cert, tls })
    }

    pub(crate) fn router(&self) -> Router {
        app(&self.shared, &self.store)
    }

    /// The emulator's base URL: the SanteDB root on the plain-HTTP listener.
    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// `{root}/auth/oauth2_token` on the plain-HTTP listener.
    pub fn token_url(&self) -> String {
        format!("{}{TOKEN_PATH}", self.base)
    }

    /// `{root}/auth/signout` on the plain-HTTP listener.
    pub fn signout_url(&self) -> String {
        format!("{}{SIGNOUT_PATH}", self.base)
    }

    /// `{root}/fhir` on the plain-HTTP listener.
    pub fn fhir_base(&self) -> String {
        format!("{}{FHIR_PATH}", self.base)
    }

    /// The SanteDB root on the mutual-TLS listener, `https://127.0.0.1:PORT`.
    pub fn mtls_base_url(&self) -> String {
        self.tls.base_url()
    }

    /// The token endpoint on the mutual-TLS listener.
    pub fn mtls_token_url(&self) -> String {
        format!("{}{TOKEN_PATH}", self.tls.base_url())
    }

    /// The FHIR base on the mutual-TLS listener.
    pub fn mtls_fhir_base(&self) -> String {
        format!("{}{FHIR_PATH}", self.tls.base_url())
    }

    /// The CA certificate (PEM) that signed the HTTPS listener's certificate and
    /// that client certificates must chain to.
    pub fn ca_cert_pem(&self) -> &str {
        self.ca.cert_pem()
    }

    /// A client certificate (PEM) for device [`SanteDbEmulator::CERT_DEVICE_ID`].
    pub fn client_cert_pem(&self) -> &str {
        self.client_cert.cert_pem()
    }

    /// The private key (PKCS#8 PEM) of [`SanteDbEmulator::client_cert_pem`].
    pub fn client_key_pem(&self) -> &PrivateKeyPem {
        self.client_cert.key_pem()
    }

    /// Issues a client certificate for a new device `device_id`, which can then
    /// authenticate by that certificate alone.
    pub fn issue_client_certificate(&self, device_id: &str) -> io::Result<IssuedCertificate> {
        let cert = self.ca.issue_client(device_id)?;
        self.shared.register_device(device_id, &random_hex(32));
        self.shared.books().certificates.insert(cert.cert_der().to_vec(), device_id.to_owned());
        Ok(cert)
    }

    /// TLS handshakes the HTTPS listener refused (no or an untrusted client certificate).
    pub fn refused_handshakes(&self) -> u64 {
        self.tls.refused_handshakes()
    }

    /// The guide's application id.
    pub fn client_id(&self) -> &str {
        Self::CLIENT_ID
    }

    /// The guide's application secret.
    pub fn client_secret(&self) -> ClientSecret {
        ClientSecret::new(Self::CLIENT_SECRET)
    }

    /// The guide's application id and secret.
    pub fn credentials(&self) -> (String, ClientSecret) {
        (self.client_id().to_owned(), self.client_secret())
    }

    /// The guide's device id.
    pub fn device_id(&self) -> &str {
        Self::DEVICE_ID
    }

    /// The guide's device secret.
    pub fn device_secret(&self) -> DeviceSecret {
        DeviceSecret::new(Self::DEVICE_SECRET)
    }

    /// Registers (or replaces) an application.
    pub fn register_client(&self, client_id: &str, secret: &ClientSecret) {
        self.shared.register_app(client_id, secret.expose_secret());
    }

    /// Registers (or replaces) a device.
    pub fn register_device(&self, device_id: &str, secret: &DeviceSecret) {
        self.shared.register_device(device_id, secret.expose_secret());
    }

    /// The policies every application is granted (what `scope=*` yields).
    pub fn policies(&self) -> Vec<String> {
        POLICIES.iter().map(|p| (*p).to_owned()).collect()
    }

    /// Behaves as SanteDB `version` (default 3.x).
    pub fn set_version(&self, version: SanteDbServerVersion) {
        self.shared.update(|s| s.version = version);
    }

    /// The version it behaves as.
    pub fn version(&self) -> SanteDbServerVersion {
        self.shared.settings().version
    }

    /// Whether a client grant needs an authenticated node (default on; off is
    /// SanteDB's `allowNodelessClientAuth`).
    pub fn set_require_device(&self, on: bool) {
        self.shared.update(|s| s.require_device = on);
    }

    /// Whether sessions come with a refresh token (default on).
    pub fn set_refresh_tokens(&self, on: bool) {
        self.shared.update(|s| s.refresh_tokens = on);
    }

    /// Whether the refresh grant works (default on); off, every refresh token is
    /// answered `invalid_grant`, as after a server restart.
    pub fn set_accept_refresh(&self, on: bool) {
        self.shared.update(|s| s.accept_refresh = on);
    }

    /// Whether responses carry an id_token (default on, as SanteDB always does in
    /// bearer mode); off exercises a client's `expires_in` fallback.
    pub fn set_id_token(&self, on: bool) {
        self.shared.update(|s| s.id_token = on);
    }

    /// Time the server "spends" between creating a session and writing its
    /// `expires_in` (default zero). The vendor guide's `1799984` is a 30-minute
    /// session answered 16 ms after it began.
    pub fn set_expires_in_elapsed(&self, elapsed: Duration) {
        self.shared.update(|s| s.expires_in_elapsed = elapsed);
    }

    /// Abandons every session: their access tokens answer 403 `invalid_token`, their
    /// refresh tokens `invalid_grant`.
    pub fn abandon_all_sessions(&self) {
        let mut books = self.shared.books();
        let sids: Vec<String> = books.sessions.keys().cloned().collect();
        for sid in sids {
            abandon(&self.shared.registry, &mut books, &sid);
        }
    }

    /// Issued tokens, clients and request counts.
    pub fn registry(&self) -> &TokenRegistry {
        &self.shared.registry
    }

    /// Token requests received in all (both listeners), whatever their outcome.
    pub fn token_requests(&self) -> u64 {
        self.shared.registry.requests()
    }

    /// Token requests that named `client_id`, whatever their outcome.
    pub fn token_requests_for(&self, client_id: &str) -> u64 {
        self.shared.registry.requests_for(client_id)
    }

    /// Token requests with `grant_type=refresh_token`, whatever their outcome.
    pub fn refresh_requests(&self) -> u64 {
        self.shared.registry.refresh_requests()
    }

    /// Requests to the FHIR service (both listeners).
    pub fn api_requests(&self) -> u64 {
        self.shared.registry.api_requests()
    }

    /// FHIR requests refused for their bearer token (401 or 403).
    pub fn api_rejections(&self) -> u64 {
        self.shared.registry.api_rejections()
    }

    /// Every request to the OAuth service, token and sign-out (both listeners),
    /// oldest first.
    pub fn token_log(&self) -> Vec<SanteDbTokenRequest> {
        self.shared.books().token_log.clone()
    }

    /// Every request to the FHIR service (both listeners), oldest first.
    pub fn api_log(&self) -> Vec<SanteDbApiRequest> {
        self.shared.books().api_log.clone()
    }

    /// Forgets the recorded requests (not the counts).
    pub fn clear_records(&self) {
        let mut books = self.shared.books();
        books.token_log.clear();
        books.api_log.clear();
    }

    /// The fault knobs (latency, 5xx, dropped connections), on both listeners.
    pub fn faults(&self) -> &Faults {
        &self.shared.faults
    }

    /// Fault knobs for the identity provider only (token and sign-out endpoints, on
    /// both listeners); the FHIR API is left alone.
    pub fn idp_faults(&self) -> &Faults {
        &self.shared.idp_faults
    }

    /// The Patient data of the plain-HTTP listener.
    pub fn fhir_store(&self) -> &Arc<FhirStore> {
        &self.store
    }

    /// The Patient data of the mutual-TLS listener.
    pub fn mtls_fhir_store(&self) -> &Arc<FhirStore> {
        &self.mtls_store
    }
}

fn app(shared: &Arc<Shared>, store: &Arc<FhirStore>) -> Router {
    let fhir = store.router().layer(middleware::from_fn_with_state(shared.clone(), fhir_guard));
    let idp = Router::new()
        .route(TOKEN_PATH, post(token))
        .route(SIGNOUT_PATH, post(signout).get(signout))
        .with_state(shared.clone())
        .layer(middleware::from_fn_with_state(shared.idp_faults.clone(), faults::apply));
    Router::new()
        .merge(idp)
        .nest(FHIR_PATH, fhir)
        .layer(middleware::from_fn_with_state(shared.faults.clone(), faults::apply))
}

/// A random (v4) UUID, as SanteDB keys applications, devices and sessions.
fn uuid() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// Upper-case hex of `bytes` random bytes: SanteDB 2.x's opaque session tokens are
/// 96 such characters.
fn random_hex(bytes: usize) -> String {
    (0..bytes).map(|_| format!("{:02X}", fastrand::u8(..))).collect()
}

fn oauth_error(status: StatusCode, code: &str, description: &str) -> Response {
    let body = json!({"error": code, "error_description": description});
    (status, [(header::CONTENT_TYPE, "application/json")], body.to_string()).into_response()
}

/// A thrown exception rendered by SanteDB's `OAuthErrorBehavior`.
fn unspecified(status: StatusCode, description: &str) -> Response {
    oauth_error(status, "unspecified_error", description)
}

fn is_form(headers: &HeaderMap) -> bool {
    header_str(headers, "content-type")
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/x-www-form-urlencoded"))
}

/// `basic <base64>` → the decoded text, if the scheme is Basic (any case).
fn basic_payload(value: &str) -> Option<Result<String, ()>> {
    let (scheme, rest) = value.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = STANDARD.decode(rest.trim()).ok().and_then(|b| String::from_utf8(b).ok());
    Some(decoded.ok_or(()))
}

/// What authenticated besides the application: the device, and on 2.x an
/// application principal from `Authorization: Basic`.
struct Principals {
    device: Option<String>,
    basic_app: Option<String>,
}

fn authenticate_node(
    shared: &Shared,
    settings: &Settings,
    headers: &HeaderMap,
    certificate_device: Option<String>,
) -> Result<Principals, Response> {
    let malformed = || unspecified(StatusCode::FORBIDDEN, "Malformed HTTP Basic Header");
    let bad_device = || unspecified(StatusCode::UNAUTHORIZED, "Invalid device credentials");
    let device_ok = |id: &str, secret: &str| {
        shared.books().devices.get(id).is_some_and(|(s, _)| s == secret).then(|| id.to_owned())
    };
    let mut principals = Principals { device: None, basic_app: None };
    match settings.version {
        SanteDbServerVersion::V2 => {
            if let Some(value) = header_str(headers, "x-device-authorization") {
                let text = basic_payload(value).ok_or_else(malformed)?.map_err(|()| malformed())?;
                // 2.x (2022) splits at the first `:` only.
                let (id, secret) = text.split_once(':').ok_or_else(malformed)?;
                principals.device = Some(device_ok(id, secret).ok_or_else(bad_device)?);
            }
            if let Some(Ok(text)) = header_str(headers, "authorization").and_then(basic_payload) {
                // On 2.x, `Authorization: Basic` is the application, not the device.
                let app = text
                    .split_once(':')
                    .filter(|(id, secret)| shared.registry.check(id, secret))
                    .map(|(id, _)| id.to_owned());
                principals.basic_app =
                    Some(app.ok_or_else(|| {
                        unspecified(StatusCode::UNAUTHORIZED, "Invalid client credentials")
                    })?);
            } else if header_str(headers, "authorization").and_then(basic_payload).is_some() {
                return Err(malformed());
            }
        }
        SanteDbServerVersion::V3 => {
            // X-Device-Authorization is no longer read by the 3.x OAuth service.
            if let Some(payload) = header_str(headers, "authorization").and_then(basic_payload) {
                let text = payload.map_err(|()| malformed())?;
                let parts: Vec<&str> = text.split(':').collect();
                let [id, secret] = parts.as_slice() else { return Err(malformed()) };
                principals.device = Some(device_ok(id, secret).ok_or_else(bad_device)?);
            }
        }
    }
    if principals.device.is_none() {
        principals.device = certificate_device;
    }
    Ok(principals)
}

async fn token(
    State(shared): State<Arc<Shared>>,
    tls: Option<Extension<Arc<TlsInfo>>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let settings = shared.settings();
    let certificate_device = tls.as_ref().and_then(|Extension(info)| {
        let der = info.peer_certificates.first()?;
        shared.books().certificates.get(der).cloned()
    });
    let form: Vec<(String, String)> =
        if is_form(&headers) { form_urlencoded::parse(&body).into_owned().collect() } else { Vec::new() };
    shared.books().token_log.push(SanteDbTokenRequest {
        method,
        path: uri.path().to_owned(),
        headers: headers.clone(),
        body: String::from_utf8_lossy(&body).into_owned(),
        form: form.clone(),
        mutual_tls: tls.is_some(),
        certificate_device: certificate_device.clone(),
    });
    let field = |name: &str| form.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
    let named_client = field("client_id").map(str::to_owned);
    if field("grant_type").is_some_and(|g| g.trim().eq_ignore_ascii_case("refresh_token")) {
        shared.registry.count_refresh();
    }

    let result = (|| {
        if !body.is_empty() && !is_form(&headers) {
            return Err(oauth_error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "the token endpoint consumes application/x-www-form-urlencoded only",
            ));
        }
        if form.is_empty() {
            return Err(oauth_error(StatusCode::BAD_REQUEST, "invalid_request", "request is empty."));
        }
        let principals = authenticate_node(&shared, &settings, &headers, certificate_device)?;
        let client_id = named_client.clone().or(principals.basic_app.clone());
        let grant_type = field("grant_type").unwrap_or_default().trim().to_ascii_lowercase();
        match grant_type.as_str() {
            "client_credentials" => {
                client_credentials(&shared, &settings, client_id, field("client_secret"), &principals, field)
            }
            "refresh_token" => {
                refresh(&shared, &settings, client_id, field("client_secret"), &principals, field)
            }
            other => Err(oauth_error(
                StatusCode::BAD_REQUEST,
                "unsupported_grant_type",
                &format!("unsupported grant type {other}"),
            )),
        }
    })();
    shared.registry.count_request(named_client.as_deref());
    match result {
        Ok(body) => {
            (StatusCode::OK, [(header::CONTENT_TYPE, "application/json")], body.to_string()).into_response()
        }
        Err(response) => response,
    }
}

/// Authenticates the application: from the form, or (2.x) the Basic principal.
fn authenticate_app(
    shared: &Shared,
    client_id: Option<&str>,
    secret: Option<&str>,
    principals: &Principals,
) -> Result<bool, Response> {
    let Some(client_id) = client_id else { return Ok(false) };
    let by_basic = principals.basic_app.as_deref() == Some(client_id) && secret.is_none();
    if by_basic || secret.is_some_and(|s| shared.registry.check(client_id, s)) {
        Ok(true)
    } else {
        Err(oauth_error(StatusCode::BAD_REQUEST, "invalid_client", "invalid client_secret"))
    }
}

fn require_node(settings: &Settings, principals: &Principals) -> Result<(), Response> {
    if principals.device.is_none() && settings.require_device {
        return Err(oauth_error(StatusCode::BAD_REQUEST, "unauthorized_client", DEVICE_REQUIRED));
    }
    Ok(())
}

fn client_credentials<'a>(
    shared: &Shared,
    settings: &Settings,
    client_id: Option<String>,
    secret: Option<&str>,
    principals: &Principals,
    field: impl Fn(&str) -> Option<&'a str>,
) -> Result<Value, Response> {
    let Some(client_id) = client_id.filter(|c| !c.is_empty()) else {
        return Err(oauth_error(StatusCode::BAD_REQUEST, "invalid_grant", "invalid client_id"));
    };
    authenticate_app(shared, Some(&client_id), secret, principals)?;
    require_node(settings, principals)?;
    let policies = granted(settings, field("scope"))?;
    let device_key = device_key(shared, principals);
    let sid = uuid();
    let mut books = shared.books();
    books.sessions.insert(
        sid.clone(),
        Session {
            client_id,
            device_key,
            policies,
            access_tokens: Vec::new(),
            refresh_token: None,
            not_after: shared.registry.now(),
            abandoned: false,
        },
    );
    Ok(issue(shared, settings, &mut books, &sid, field("nonce")))
}

fn refresh<'a>(
    shared: &Shared,
    settings: &Settings,
    client_id: Option<String>,
    secret: Option<&str>,
    principals: &Principals,
    field: impl Fn(&str) -> Option<&'a str>,
) -> Result<Value, Response> {
    let Some(client_id) = client_id.filter(|c| !c.is_empty()) else {
        return Err(oauth_error(StatusCode::BAD_REQUEST, "invalid_request", "missing client_id"));
    };
    authenticate_app(shared, Some(&client_id), secret, principals)?;
    require_node(settings, principals)?;
    let Some(presented) = field("refresh_token").filter(|t| !t.is_empty()) else {
        return Err(oauth_error(StatusCode::BAD_REQUEST, "invalid_grant", "missing refresh token"));
    };
    let invalid = || oauth_error(StatusCode::BAD_REQUEST, "invalid_grant", "invalid refresh token");
    if !settings.accept_refresh {
        return Err(invalid());
    }
    let mut books = shared.books();
    let sid = books.refresh.get(presented).cloned().ok_or_else(invalid)?;
    let owner = books.sessions.get(&sid).filter(|s| !s.abandoned).map(|s| s.client_id.clone());
    match owner {
        None => return Err(invalid()),
        Some(owner) if owner != client_id => {
            return Err(oauth_error(
                StatusCode::BAD_REQUEST,
                "invalid_client",
                "refresh token was issued to another application",
            ));
        }
        Some(_) => {}
    }
    // Rotation: each refresh token works once.
    books.refresh.remove(presented);
    shared.registry.redeem_refresh(presented);
    Ok(issue(shared, settings, &mut books, &sid, field("nonce")))
}

fn granted(settings: &Settings, scope: Option<&str>) -> Result<Vec<String>, Response> {
    let separators: &[char] = match settings.version {
        // 2.x split the scope at `;`; accept spaces too.
        SanteDbServerVersion::V2 => &[';', ' '],
        SanteDbServerVersion::V3 => &[' '],
    };
    let asked: Vec<&str> = scope.unwrap_or("*").split(separators).filter(|s| !s.is_empty()).collect();
    if asked.is_empty() || asked.contains(&"*") {
        return Ok(POLICIES.iter().map(|p| (*p).to_owned()).collect());
    }
    match asked.iter().find(|p| !POLICIES.contains(p)) {
        Some(p) => {
            Err(oauth_error(StatusCode::BAD_REQUEST, "invalid_scope", &format!("policy {p} is not granted")))
        }
        None => Ok(asked.into_iter().map(str::to_owned).collect()),
    }
}

fn device_key(shared: &Shared, principals: &Principals) -> Option<String> {
    let id = principals.device.as_deref()?;
    shared.books().devices.get(id).map(|(_, key)| key.clone())
}

/// Issues a new access token (and refresh token, id_token) for session `sid`,
/// extending it by the configured lifetime.
fn issue(shared: &Shared, settings: &Settings, books: &mut Books, sid: &str, nonce: Option<&str>) -> Value {
    let lifetime = shared.lifetime;
    let now = shared.registry.now();
    let now_secs = shared.registry.now_secs();
    let access = shared.registry.mark(&random_hex(48));
    let refresh = settings.refresh_tokens.then(|| shared.registry.mark(&random_hex(48)));
    let Books { apps, sessions, refresh: refresh_map, .. } = books;
    let Some(session) = sessions.get_mut(sid) else { return json!({}) };
    session.not_after = now.checked_add(lifetime).unwrap_or(now);
    session.access_tokens.push(access.clone());
    shared.registry.issue(&access, &session.client_id, lifetime, Some(session.policies.join(" ")));
    if let Some(r) = &refresh {
        shared.registry.issue_refresh(r, &session.client_id);
        refresh_map.insert(r.clone(), sid.to_owned());
        session.refresh_token = Some(r.clone());
    }
    let mut body = Map::new();
    body.insert("access_token".into(), json!(access));
    if settings.id_token
        && let Some(app) = apps.get(&session.client_id)
    {
        let mut claims = json!({
            "iss": "SANTEDB-SANDBOX",
            "aud": [session.client_id],
            "sub": app.key,
            "sid": sid,
            "jti": uuid(),
            "name": session.client_id,
            "iat": now_secs,
            "nbf": now_secs,
            "exp": now_secs.saturating_add(lifetime.as_secs()),
            "scope": session.policies,
            CLAIM_APPLICATION_ID: app.key,
        });
        if let Value::Object(c) = &mut claims {
            if let Some(device) = &session.device_key {
                c.insert(CLAIM_DEVICE_ID.into(), json!(device));
            }
            if let Some(n) = nonce {
                c.insert("nonce".into(), json!(n));
            }
        }
        body.insert("id_token".into(), json!(hs256_jwt(&claims, app.secret.as_bytes())));
    }
    body.insert("token_type".into(), json!("bearer"));
    let left = lifetime.saturating_sub(settings.expires_in_elapsed);
    let expires_in = match settings.version {
        SanteDbServerVersion::V2 => left.as_millis() as u64,
        SanteDbServerVersion::V3 => left.as_secs(),
    };
    body.insert("expires_in".into(), json!(expires_in));
    if let Some(r) = refresh {
        body.insert("refresh_token".into(), json!(r));
    }
    if let Some(n) = nonce {
        body.insert("nonce".into(), json!(n));
    }
    Value::Object(body)
}

fn abandon(registry: &TokenRegistry, books: &mut Books, sid: &str) {
    let Some(session) = books.sessions.get_mut(sid) else { return };
    session.abandoned = true;
    for token in &session.access_tokens {
        registry.revoke(token);
    }
    if let Some(r) = session.refresh_token.take() {
        registry.redeem_refresh(&r);
        books.refresh.remove(&r);
    }
}

async fn signout(
    State(shared): State<Arc<Shared>>,
    tls: Option<Extension<Arc<TlsInfo>>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut form: Vec<(String, String)> =
        if is_form(&headers) { form_urlencoded::parse(&body).into_owned().collect() } else { Vec::new() };
    if method == Method::GET {
        form = query_pairs(uri.query()).into_iter().collect();
    }
    shared.books().token_log.push(SanteDbTokenRequest {
        method,
        path: uri.path().to_owned(),
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
        form: form.clone(),
        mutual_tls: tls.is_some(),
        certificate_device: None,
    });
    if shared.settings().version == SanteDbServerVersion::V2 {
        return (StatusCode::NOT_FOUND, "no such endpoint in SanteDB 2.x").into_response();
    }
    let field = |name: &str| form.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
    let invalid_token = || oauth_error(StatusCode::BAD_REQUEST, "invalid_request", "invalid token");
    let Some(hint) = field("id_token_hint") else { return invalid_token() };
    let Some(claims) = verify_id_token(&shared, hint) else { return invalid_token() };
    let audience = |c: &str| match claims.get("aud") {
        Some(Value::Array(a)) => a.iter().any(|v| v.as_str() == Some(c)),
        Some(Value::String(s)) => s == c,
        _ => false,
    };
    if field("client_id").is_some_and(|c| !audience(c)) {
        return invalid_token();
    }
    let Some(sid) = claims.get("sid").and_then(Value::as_str) else { return invalid_token() };
    let now = shared.registry.now();
    let mut books = shared.books();
    let live = books.sessions.get(sid).is_some_and(|s| !s.abandoned && now < s.not_after);
    if !live {
        return oauth_error(StatusCode::BAD_REQUEST, "invalid_request", "invalid session");
    }
    abandon(&shared.registry, &mut books, sid);
    (StatusCode::OK, [(header::CACHE_CONTROL, "no-store")]).into_response()
}

/// The claims of an id_token this server signed (HS256 with the audience's secret).
fn verify_id_token(shared: &Shared, id_token: &str) -> Option<Map<String, Value>> {
    let unverified = auth_core::token::jwt_claims(id_token)?;
    let audiences: Vec<String> = match unverified.get("aud") {
        Some(Value::Array(a)) => a.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect(),
        Some(Value::String(s)) => vec![s.clone()],
        _ => Vec::new(),
    };
    let books = shared.books();
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::HS256);
    // The session, on the registry's clock, decides whether it is over.
    validation.validate_exp = false;
    validation.validate_aud = false;
    validation.required_spec_claims.clear();
    audiences.iter().filter_map(|aud| books.apps.get(aud)).find_map(|app| {
        let key = jsonwebtoken::DecodingKey::from_secret(app.secret.as_bytes());
        jsonwebtoken::decode::<Map<String, Value>>(id_token, &key, &validation).ok().map(|d| d.claims)
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Json,
    Xml,
    NotAcceptable,
}

/// `_format` first, then the first media range of `Accept` that can be served
/// (q-values are not weighed). No `Accept` at all means XML, SanteDB's default.
fn negotiate(accept: Option<&str>, query: Option<&str>) -> Format {
    let kind = |media: &str| {
        let media = media.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
        match media.as_str() {
            "json" | FHIR_JSON | "application/json+fhir" | "application/json" => Some(Format::Json),
            "xml"
            | "application/fhir+xml"
            | "application/xml+fhir"
            | "application/xml"
            | "text/xml"
            | "*/*"
            | "application/*" => Some(Format::Xml),
            _ => None,
        }
    };
    if let Some(format) = query_pairs(query).get("_format") {
        return kind(format).unwrap_or(Format::NotAcceptable);
    }
    match accept.map(str::trim).filter(|a| !a.is_empty()) {
        None => Format::Xml,
        Some(accept) => accept.split(',').find_map(kind).unwrap_or(Format::NotAcceptable),
    }
}

async fn fhir_guard(State(shared): State<Arc<Shared>>, request: Request, next: Next) -> Response {
    let method = request.method().clone();
    let path = format!("{FHIR_PATH}{}", request.uri().path());
    let query = request.uri().query().map(str::to_owned);
    let accept = header_str(request.headers(), "accept").map(str::to_owned);
    let authorization = header_str(request.headers(), "authorization").map(str::to_owned);
    let realm = header_str(request.headers(), "host").unwrap_or("santedb").to_owned();
    let format = negotiate(accept.as_deref(), query.as_deref());
    let render = if format == Format::Json { Format::Json } else { Format::Xml };

    shared.registry.count_api_request();
    let response = match shared.registry.validate(authorization.as_deref()) {
        Err(refusal) => {
            shared.registry.count_api_rejection();
            let (status, challenge) = match refusal {
                // No credentials: a challenge without an error code (RFC 6750 §3).
                Refusal::Missing => (StatusCode::UNAUTHORIZED, format!("bearer realm=\"{realm}\"")),
                Refusal::Expired => (
                    StatusCode::UNAUTHORIZED,
                    format!(
                        "bearer realm=\"{realm}\" error=\"invalid_token\" error_description=\"Session expired\""
                    ),
                ),
                Refusal::Unknown | Refusal::Revoked => (
                    StatusCode::FORBIDDEN,
                    format!(
                        "bearer realm=\"{realm}\" error=\"invalid_token\" error_description=\"Invalid bearer token\""
                    ),
                ),
            };
            let mut response =
                render_value(status, &outcome_json("security", "authentication failed"), render);
            if let Ok(value) = HeaderValue::from_str(&challenge) {
                response.headers_mut().insert(header::WWW_AUTHENTICATE, value);
            }
            response
        }
        Ok(_) if format == Format::NotAcceptable => render_value(
            StatusCode::NOT_ACCEPTABLE,
            &outcome_json(
                "not-supported",
                "this server answers application/fhir+json or application/fhir+xml",
            ),
            Format::Xml,
        ),
        Ok(_) if format == Format::Json => next.run(request).await,
        Ok(_) => to_xml(next.run(request).await).await,
    };
    shared.books().api_log.push(SanteDbApiRequest {
        method,
        path,
        query,
        accept,
        authorization: authorization.is_some(),
        status: response.status().as_u16(),
        content_type: header_str(response.headers(), "content-type").map(str::to_owned),
    });
    response
}

fn render_value(status: StatusCode, value: &Value, format: Format) -> Response {
    match format {
        Format::Json => fhir::fhir_json(status, value),
        _ => (status, [(header::CONTENT_TYPE, FHIR_XML)], fhir_xml(value)).into_response(),
    }
}

/// Re-renders a JSON answer of the FHIR store as FHIR XML.
async fn to_xml(response: Response) -> Response {
    let (mut parts, body) = response.into_parts();
    let Ok(bytes) = body::to_bytes(body, 16 * 1024 * 1024).await else {
        return (StatusCode::INTERNAL_SERVER_ERROR, "cannot read the answer").into_response();
    };
    let Ok(value) = serde_json::from_slice::<Value>(&bytes) else {
        return Response::from_parts(parts, Body::from(bytes));
    };
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(FHIR_XML));
    Response::from_parts(parts, Body::from(fhir_xml(&value)))
}

/// FHIR XML for a JSON resource: elements in JSON key order, primitives as
/// `value` attributes, extension URLs as attributes, contained resources wrapped.
fn fhir_xml(value: &Value) -> String {
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"utf-8\"?>");
    if let Value::Object(map) = value {
        write_resource(&mut out, map);
    }
    out
}

fn write_resource(out: &mut String, map: &Map<String, Value>) {
    let name =
        map.get("resourceType").and_then(Value::as_str).filter(|n| is_xml_name(n)).unwrap_or("Resource");
    out.push_str(&format!("<{name} xmlns=\"http://hl7.org/fhir\">"));
    for (k, v) in map.iter().filter(|(k, _)| *k != "resourceType") {
        write_element(out, k, v);
    }
    out.push_str(&format!("</{name}>"));
}

fn write_element(out: &mut String, name: &str, value: &Value) {
    if !is_xml_name(name) {
        return;
    }
    match value {
        Value::Null => {}
        Value::Array(items) => items.iter().for_each(|item| write_element(out, name, item)),
        Value::Object(map) if map.contains_key("resourceType") => {
            out.push_str(&format!("<{name}>"));
            write_resource(out, map);
            out.push_str(&format!("</{name}>"));
        }
        Value::Object(map) => {
            let url = map.get("url").and_then(Value::as_str).filter(|_| name.ends_with("xtension"));
            match url {
                Some(url) => out.push_str(&format!("<{name} url=\"{}\">", escape(url))),
                None => out.push_str(&format!("<{name}>")),
            }
            for (k, v) in map.iter().filter(|(k, _)| url.is_none() || *k != "url") {
                write_element(out, k, v);
            }
            out.push_str(&format!("</{name}>"));
        }
        Value::String(s) => out.push_str(&format!("<{name} value=\"{}\"/>", escape(s))),
        other => out.push_str(&format!("<{name} value=\"{other}\"/>")),
    }
}

fn is_xml_name(name: &str) -> bool {
    name.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&apos;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negotiation() {
        assert_eq!(negotiate(None, None), Format::Xml);
        assert_eq!(negotiate(Some("application/fhir+json"), None), Format::Json);
        assert_eq!(negotiate(Some("text/html, application/json;q=0.9"), None), Format::Json);
        assert_eq!(negotiate(Some("*/*"), None), Format::Xml);
        assert_eq!(negotiate(Some("text/html"), None), Format::NotAcceptable);
        assert_eq!(negotiate(None, Some("_format=json")), Format::Json);
        assert_eq!(negotiate(Some("application/fhir+json"), Some("_format=xml")), Format::Xml);
    }

    #[test]
    fn xml_rendering() {
        let xml = fhir_xml(&json!({
            "resourceType": "Bundle",
            "entry": [{"resource": {"resourceType": "Patient", "id": "p1",
                "name": [{"family": "O'Brien & <Co>"}],
                "extension": [{"url": "https://x", "valueString": "v"}]}}],
            "total": 1,
        }));
        assert!(xml.contains("<Bundle xmlns=\"http://hl7.org/fhir\">"), "{xml}");
        assert!(
            xml.contains("<resource><Patient xmlns=\"http://hl7.org/fhir\"><extension url=\"https://x\">"),
            "{xml}"
        );
        assert!(xml.contains("<family value=\"O&apos;Brien &amp; &lt;Co&gt;\"/>"), "{xml}");
        assert!(xml.contains("<total value=\"1\"/>"), "{xml}");
    }
}
