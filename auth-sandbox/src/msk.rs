//! An emulator of MSK's Blaze FHIR API behind IBM API Connect, as strict as MSK's
//! developer guide:
//!
//! * `POST {base}/msk-apim/external/msk-oidc/oauth2/token` takes a form body of
//!   exactly `client_id`, `client_secret`, `grant_type=client_credentials` and
//!   `scope=full`, and answers like the guide's example:
//!   `{"token_type":"Bearer","access_token":"AAIg…","scope":"full","expires_in":3600,"consented_on":…}`
//!   (`expires_in` follows [`SandboxConfig::token_lifetime`]). Errors are RFC 6749
//!   JSON, as API Connect's OAuth provider sends them.
//! * `{base}/msk-apim/external/v2/crit/blaze/api` is the FHIR base. The gateway
//!   refuses a missing, unknown, revoked or expired bearer with its own 401
//!   document (`{"httpCode":"401","httpMessage":"Unauthorized","moreInformation":…}`);
//!   Blaze then wants `x-partnerid` (401 OperationOutcome "Api Key was not
//!   provided" / "Incorrect Partnerid name"), `researchstudy` on everything but
//!   `metadata` and Patient by id (400), a study the partner may read (403), and
//!   labels its JSON `text/plain` unless asked for `_format=json`. Searches page
//!   with `page=N`, 50 per page by default, and their links carry `researchstudy`
//!   and `x-partnerid`.
//!
//! The registered client reproduces the guide's example exchange: client id
//! `MSK_PROVIDED_CLIENTID`, secret `MSK_PROVIDED_SECRET`; the study is `FHIR-T`,
//! the one in the guide's Patient example.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use auth_core::ClientSecret;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use base64::Engine;
use base64::engine::general_purpose::STANDARD_NO_PAD;
use serde_json::{Value, json};

use super::SandboxConfig;
use super::faults::{self, Faults};
use super::fhir::{FHIR_JSON, FhirStore, header_str, sample_patients};
use super::tokens::TokenRegistry;
/// Path of the token endpoint below the gateway.
pub(crate) const TOKEN_PATH: &str = "/msk-apim/external/msk-oidc/oauth2/token";
/// Path of the FHIR base (API v2) below the gateway.
pub(crate) const FHIR_PATH: &str = "/msk-apim/external/v2/crit/blaze/api";
/// The header naming the partner on every API request.
pub(crate) const PARTNER_ID_HEADER: &str = "x-partnerid";
/// The query parameter naming the MSK study on every API request.
pub(crate) const RESEARCH_STUDY_PARAM: &str = "researchstudy";

/// The client id of MSK's example token request.
const CLIENT_ID: &str = "MSK_PROVIDED_CLIENTID";
/// The client secret of MSK's example token request.
const CLIENT_SECRET: &str = "MSK_PROVIDED_SECRET";
/// MSK's guide leaves the partner id as `{partnerId}`; this one follows the
/// guide's naming of the other placeholders.
const PARTNER_ID: &str = "MSK_PROVIDED_PARTNERID";
/// The study of the guide's Patient example.
const RESEARCH_STUDY: &str = "FHIR-T";
/// Blaze's documented default page size.
const DEFAULT_COUNT: &str = "50";
/// What the API Connect gateway says when a request fails its security checks.
const APIC_MORE_INFORMATION: &str = "Cannot pass the security checks that are required by the target API or operation, Enable debug headers for more details.";

/// Both record types have the same shape: what arrived, as sent.
macro_rules! recorded_request {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        ///
        /// `Debug` shows names, not values: a token request body holds a client
        /// secret, an API request a bearer token.
        #[derive(Clone)]
        pub struct $name {
            method: String,
            path: String,
            query: Vec<(String, String)>,
            headers: Vec<(String, String)>,
            body: String,
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_struct(stringify!($name))
                    .field("method", &self.method)
                    .field("path", &self.path)
                    .field("query", &self.query.iter().map(|(k, _)| k).collect::<Vec<_>>())
                    .field("headers", &self.headers.iter().map(|(k, _)| k).collect::<Vec<_>>())
                    .field("body_len", &self.body.len())
                    .finish()
            }
        }

        impl $name {
            fn new(method: &Method, path: String, uri: &Uri, headers: &HeaderMap, body: &[u8]) -> Self {
                Self {
                    method: method.as_str().to_owned(),
                    path,
                    query: pairs(uri.query()),
                    headers: headers
                        .iter()
                        .map(|(k, v)| {
                            (k.as_str().to_owned(), String::from_utf8_lossy(v.as_bytes()).into_owned())
                        })
                        .collect(),
                    body: String::from_utf8_lossy(body).into_owned(),
                }
            }

            /// The HTTP method.
            pub fn method(&self) -> &str {
                &self.method
            }

            /// The path as sent, from the sandbox root (`/msk/msk-apim/…`).
            pub fn path(&self) -> &str {
                &self.path
            }

            /// The query parameters, in order, decoded.
            pub fn query(&self) -> &[(String, String)] {
                &self.query
            }

            /// Every value of query parameter `name`, in order.
            pub fn query_values(&self, name: &str) -> Vec<&str> {
                self.query.iter().filter(|(k, _)| k == name).map(|(_, v)| v.as_str()).collect()
            }

            /// The headers, names lowercased, in order.
            pub fn headers(&self) -> &[(String, String)] {
                &self.headers
            }

            /// The first value of header `name` (case-insensitive).
            pub fn header(&self, name: &str) -> Option<&str> {
                self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
            }

            /// The body, as text.
            pub fn body(&self) -> &str {
                &self.body
            }

            /// The body read as an `application/x-www-form-urlencoded` form, in order.
            pub fn form(&self) -> Vec<(String, String)> {
                pairs(Some(&self.body))
            }
        }
    };
}

recorded_request!(
    /// One token request as the emulator received it, for tests to assert the wire format.
    MskTokenRequest
);

recorded_request!(
    /// One FHIR API request as the gateway received it (before any check; the body
    /// is not kept).
    MskApiRequest
);

fn pairs(raw: Option<&str>) -> Vec<(String, String)> {
    raw.map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect()).unwrap_or_default()
}

#[derive(Debug, Clone)]
struct Partner {
    client_id: String,
    studies: HashSet<String>,
}

struct Shared {
    registry: TokenRegistry,
    lifetime: Duration,
    /// Path of the sandbox mount (`/msk`), so logged paths read as sent.
    mount: String,
    partners: Mutex<HashMap<String, Partner>>,
    token_log: Mutex<Vec<MskTokenRequest>>,
    api_log: Mutex<Vec<MskApiRequest>>,
}

impl fmt::Debug for Shared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Not the registry itself: its Debug lists client secrets and issued tokens.
        f.debug_struct("Shared")
            .field("token_requests", &self.registry.requests())
            .field("issued", &self.registry.issued_count())
            .field("lifetime", &self.lifetime)
            .field("mount", &self.mount)
            .field("partners", &lock(&self.partners).keys().collect::<Vec<_>>())
            .field("token_log", &lock(&self.token_log).len())
            .field("api_log", &lock(&self.api_log).len())
            .finish()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The MSK emulator.
#[derive(Debug)]
pub struct MskEmulator {
    base: String,
    shared: Arc<Shared>,
    store: Arc<FhirStore>,
    faults: Faults,
    idp_faults: Faults,
}

impl MskEmulator {
    pub(crate) async fn start(public_base: &str, config: &SandboxConfig) -> std::io::Result<Self> {
        let base = public_base.trim_end_matches('/').to_owned();
        let mount = url::Url::parse(&base)
            .map(|u| u.path().trim_end_matches('/').to_owned())
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
        let registry = TokenRegistry::new(config.clock.clone()).with_marker(&config.token_marker);
        registry.register(CLIENT_ID, CLIENT_SECRET);
        let shared = Arc::new(Shared {
            registry,
            lifetime: config.token_lifetime,
            mount,
            partners: Mutex::default(),
            token_log: Mutex::default(),
            api_log: Mutex::default(),
        });
        let store = FhirStore::with_page_param(format!("{base}{FHIR_PATH}"), "page");
        // Blaze at MSK is read and search only; the gateway's own parameters pass
        // through the store untouched (and stay in paging links).
        store.set_read_only(true);
        store.set_vendor_params(&[RESEARCH_STUDY_PARAM, PARTNER_ID_HEADER]);
        store.set_token_url(format!("{base}{TOKEN_PATH}"));
        store.seed(guide_patients());
        store.seed(sample_patients());
        let emulator = Self { base, shared, store, faults: Faults::default(), idp_faults: Faults::default() };
        emulator.register_partner(PARTNER_ID, CLIENT_ID, [RESEARCH_STUDY]);
        Ok(emulator)
    }

    pub(crate) fn router(&self) -> Router {
        let fhir = Router::new()
            .nest(FHIR_PATH, self.store.router())
            .layer(middleware::from_fn_with_state(self.shared.clone(), blaze_gate));
        let idp = Router::new()
            .route(TOKEN_PATH, any(token))
            .with_state(self.shared.clone())
            .layer(middleware::from_fn_with_state(self.idp_faults.clone(), faults::apply));
        Router::new()
            .merge(idp)
            .merge(fhir)
            .layer(middleware::from_fn_with_state(self.faults.clone(), faults::apply))
    }

    /// The emulator's base URL (the gateway root).
    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// The token URL.
    pub fn token_url(&self) -> String {
        format!("{}{TOKEN_PATH}", self.base)
    }

    /// The FHIR base URL.
    pub fn fhir_base(&self) -> String {
        format!("{}{FHIR_PATH}", self.base)
    }

    /// The registered client id (`MSK_PROVIDED_CLIENTID`, from MSK's example).
    pub fn client_id(&self) -> &str {
        CLIENT_ID
    }

    /// The registered client's secret (`MSK_PROVIDED_SECRET`, from MSK's example).
    pub fn client_secret(&self) -> ClientSecret {
        ClientSecret::new(CLIENT_SECRET)
    }

    /// The registered client's id and secret.
    pub fn credentials(&self) -> (String, ClientSecret) {
        (self.client_id().to_owned(), self.client_secret())
    }

    /// The registered client's partner id.
    pub fn partner_id(&self) -> &str {
        PARTNER_ID
    }

    /// The study the registered partner may read (`FHIR-T`).
    pub fn research_study(&self) -> &str {
        RESEARCH_STUDY
    }

    /// Registers (or replaces) a client.
    pub fn register_client(&self, client_id: &str, secret: &str) {
        self.shared.registry.register(client_id, secret);
    }

    /// Registers (or replaces) a partner id belonging to `client_id`, allowed to read `studies`.
    pub fn register_partner<I, S>(&self, partner_id: &str, client_id: &str, studies: I)
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let partner = Partner {
            client_id: client_id.to_owned(),
            studies: studies.into_iter().map(Into::into).collect(),
        };
        lock(&self.shared.partners).insert(partner_id.to_owned(), partner);
    }

    /// Issued tokens, clients and token request counters.
    pub fn registry(&self) -> &TokenRegistry {
        &self.shared.registry
    }

    /// Revokes every token issued so far (the gateway then answers 401).
    pub fn revoke_all(&self) {
        self.shared.registry.revoke_all();
    }

    /// Fault knobs for every endpoint of this emulator.
    pub fn faults(&self) -> &Faults {
        &self.faults
    }

    /// Fault knobs for the identity provider only (the token endpoint); the FHIR
    /// API is left alone.
    pub fn idp_faults(&self) -> &Faults {
        &self.idp_faults
    }

    /// The FHIR data behind the API.
    pub fn fhir_store(&self) -> &Arc<FhirStore> {
        &self.store
    }

    /// Token requests received in all, whatever their outcome.
    pub fn token_requests(&self) -> u64 {
        self.shared.registry.requests()
    }

    /// Token requests that named `client_id`.
    pub fn token_requests_for(&self, client_id: &str) -> u64 {
        self.shared.registry.requests_for(client_id)
    }

    /// Every token request, oldest first.
    pub fn token_log(&self) -> Vec<MskTokenRequest> {
        lock(&self.shared.token_log).clone()
    }

    /// Every FHIR API request, oldest first, as sent (before any check).
    pub fn api_log(&self) -> Vec<MskApiRequest> {
        lock(&self.shared.api_log).clone()
    }

    /// FHIR API requests received in all.
    pub fn api_requests(&self) -> u64 {
        self.shared.registry.api_requests()
    }

    /// FHIR API requests the gateway refused for their bearer token (401).
    pub fn api_rejections(&self) -> u64 {
        self.shared.registry.api_rejections()
    }
}

/// The three patients of MSK's Patient example, in study `FHIR-T`.
fn guide_patients() -> Vec<Value> {
    let ext = |name: &str, value: &str| json!({"url": format!("https://fhir.mskcc.org/structure-definitions/#{name}"), "valueString": value});
    [("10081001", "1988"), ("10081004", "1976"), ("10081007", "1948")]
        .iter()
        .map(|(id, born)| {
            json!({
                "resourceType": "Patient",
                "id": id,
                "extension": [ext("IDB.Protocol", RESEARCH_STUDY), ext("Race", "White"),
                              ext("Ethnicity", "NON"), ext("SponsorID", "C3861001")],
                "identifier": [{"system": "https://fhir.mskcc.org/structure-definitions/#SubjectStudyId", "value": id}],
                "gender": "male",
                "birthDate": born
            })
        })
        .collect()
}

// ---------------------------------------------------------------------------
// Token endpoint (IBM API Connect's OAuth provider)
// ---------------------------------------------------------------------------

const FIELDS: [&str; 4] = ["client_id", "client_secret", "grant_type", "scope"];

fn oauth_error(status: StatusCode, code: &str, description: &str) -> Response {
    let body = json!({"error": code, "error_description": description}).to_string();
    (
        status,
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::CACHE_CONTROL, "no-store"),
            (header::PRAGMA, "no-cache"),
        ],
        body,
    )
        .into_response()
}

async fn token(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let request =
        MskTokenRequest::new(&method, format!("{}{}", shared.mount, uri.path()), &uri, &headers, &body);
    let form = request.form();
    let first = |name: &str| form.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
    shared.registry.count_request(first("client_id"));
    lock(&shared.token_log).push(request.clone());

    if method != Method::POST {
        let mut r = apic_error(StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed", "Use POST.");
        r.headers_mut().insert(header::ALLOW, HeaderValue::from_static("POST"));
        return r;
    }
    let form_type = header_str(&headers, "content-type")
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/x-www-form-urlencoded"));
    if !form_type {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "The request body must be application/x-www-form-urlencoded",
        );
    }
    if headers.contains_key(header::AUTHORIZATION) {
        // API Connect's own wording for a client that authenticates twice.
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "Multiple OAuth client credentials are provided",
        );
    }
    let mut seen = HashSet::new();
    for (name, _) in &form {
        if !FIELDS.contains(&name.as_str()) {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                &format!("Unexpected parameter: {name}"),
            );
        }
        if !seen.insert(name.as_str()) {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                &format!("Repeated parameter: {name}"),
            );
        }
    }
    match first("grant_type") {
        None | Some("") => {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "Missing required parameter: grant_type",
            );
        }
        Some("client_credentials") => {}
        Some(_) => {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "unsupported_grant_type",
                "Only the client_credentials grant type is supported",
            );
        }
    }
    let (Some(client_id), Some(secret)) = (first("client_id"), first("client_secret")) else {
        return oauth_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "Missing required parameters: client_id and client_secret",
        );
    };
    if !shared.registry.check(client_id, secret) {
        return oauth_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "Client authentication failed: unknown client_id or wrong client_secret",
        );
    }
    match first("scope") {
        None | Some("") => {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "Missing required parameter: scope",
            );
        }
        Some("full") => {}
        Some(_) => {
            return oauth_error(StatusCode::BAD_REQUEST, "invalid_scope", "The only scope offered is: full");
        }
    }

    let access_token = apic_token(&shared.registry, client_id);
    shared.registry.issue(&access_token, client_id, shared.lifetime, Some("full".to_owned()));
    // Written out rather than through `json!`, to keep the field order of MSK's
    // example (serde_json sorts object keys).
    let body = format!(
        r#"{{"token_type":"Bearer","access_token":"{access_token}","scope":"full","expires_in":{},"consented_on":{}}}"#,
        shared.lifetime.as_secs(),
        shared.registry.now_secs(),
    );
    (
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::CACHE_CONTROL, "no-store"),
            (header::PRAGMA, "no-cache"),
        ],
        body,
    )
        .into_response()
}

/// An API Connect style opaque token: `AAIg`, the client id in base64 (as in MSK's
/// example, whose token decodes to a 32-hex-digit client id), then random bytes.
fn apic_token(registry: &TokenRegistry, client_id: &str) -> String {
    let mut random = registry.serial().to_be_bytes().to_vec();
    random.extend((0..88).map(|_| fastrand::u8(..)));
    registry.mark(&format!("AAIg{}{}", STANDARD_NO_PAD.encode(client_id), STANDARD_NO_PAD.encode(random)))
}

// ---------------------------------------------------------------------------
// FHIR API: the gateway's bearer check, then Blaze's own rules
// ---------------------------------------------------------------------------

/// The gateway's error document.
fn apic_error(status: StatusCode, message: &str, more: &str) -> Response {
    let body =
        json!({"httpCode": status.as_u16().to_string(), "httpMessage": message, "moreInformation": more});
    (status, [(header::CONTENT_TYPE, "application/json")], body.to_string()).into_response()
}

/// A Blaze OperationOutcome, shaped like MSK's documented example (text in
/// `details.text`), labelled as Blaze labels everything.
fn blaze_outcome(status: StatusCode, code: &str, text: &str, json: bool) -> Response {
    let body = json!({
        "resourceType": "OperationOutcome",
        "issue": [{"severity": "error", "code": code, "details": {"text": text}}]
    });
    let content_type = if json { FHIR_JSON } else { "text/plain; charset=utf-8" };
    (status, [(header::CONTENT_TYPE, content_type)], body.to_string()).into_response()
}

/// Whether a request may leave out `researchstudy`: `metadata`, and Patient by id
/// ("Patient … require one of the following: researchstudy or {id}").
fn study_optional(relative: &str) -> bool {
    let parts: Vec<&str> = relative.trim_matches('/').split('/').collect();
    match parts.as_slice() {
        ["metadata"] => true,
        [resource, id] | [resource, id, "_history", _] => {
            resource.eq_ignore_ascii_case("patient") && !id.starts_with('_')
        }
        _ => false,
    }
}

async fn blaze_gate(State(shared): State<Arc<Shared>>, mut request: Request, next: Next) -> Response {
    let path = request.uri().path().to_owned();
    // This layer runs outside the nested FHIR router, before it strips its prefix
    // (the sandbox's `/msk` is already gone).
    let relative = path.strip_prefix(FHIR_PATH).unwrap_or(&path).to_owned();
    let full_path = format!("{}{FHIR_PATH}{relative}", shared.mount);
    shared.registry.count_api_request();
    lock(&shared.api_log).push(MskApiRequest::new(
        request.method(),
        full_path,
        request.uri(),
        request.headers(),
        &[],
    ));

    // 1. The gateway: a bearer it issued, still valid.
    let authorization = header_str(request.headers(), "authorization");
    let issued = match shared.registry.validate(authorization) {
        Ok(issued) => issued,
        Err(refusal) => {
            tracing::debug!(?refusal, "msk gateway refused the bearer");
            shared.registry.count_api_rejection();
            return apic_error(StatusCode::UNAUTHORIZED, "Unauthorized", APIC_MORE_INFORMATION);
        }
    };

    let query = pairs(request.uri().query());
    let values = |name: &str| -> Vec<String> {
        query.iter().filter(|(k, _)| k == name).map(|(_, v)| v.clone()).collect()
    };
    let json = values("_format").first().is_some_and(|f| {
        matches!(f.to_ascii_lowercase().as_str(), "json" | "application/json" | "application/fhir+json")
    });

    // 2. Blaze: the partner id, from the header or, as paging links carry it, the query.
    let from_query = values(PARTNER_ID_HEADER);
    let partner_id = header_str(request.headers(), PARTNER_ID_HEADER)
        .map(str::to_owned)
        .or_else(|| from_query.first().cloned())
        .filter(|p| !p.trim().is_empty());
    let Some(partner_id) = partner_id else {
        return blaze_outcome(StatusCode::UNAUTHORIZED, "security", "Api Key was not provided", json);
    };
    if from_query.iter().any(|q| *q != partner_id) {
        return blaze_outcome(StatusCode::UNAUTHORIZED, "security", "Incorrect Partnerid name", json);
    }
    let partner = lock(&shared.partners).get(&partner_id).cloned();
    let Some(partner) = partner.filter(|p| p.client_id == issued.client_id) else {
        return blaze_outcome(StatusCode::UNAUTHORIZED, "security", "Incorrect Partnerid name", json);
    };

    // 3. Read and search only, JSON only.
    if request.method() != Method::GET {
        let mut r = blaze_outcome(
            StatusCode::METHOD_NOT_ALLOWED,
            "not-supported",
            "Only read and search are supported",
            json,
        );
        r.headers_mut().insert(header::ALLOW, HeaderValue::from_static("GET"));
        return r;
    }
    if let Some(format) = values("_format").first()
        && !json
    {
        return blaze_outcome(
            StatusCode::NOT_ACCEPTABLE,
            "not-supported",
            &format!(
                "_format `{format}` is not supported: MSK HL7 FHIR server only exposes data in JSON format"
            ),
            false,
        );
    }
    for name in [RESEARCH_STUDY_PARAM, "_format", "_count", "page"] {
        let mut distinct = values(name);
        distinct.sort();
        distinct.dedup();
        if distinct.len() > 1 {
            return blaze_outcome(
                StatusCode::BAD_REQUEST,
                "invalid",
                &format!("Conflicting values for query parameter {name}"),
                json,
            );
        }
    }

    // 4. The study: required except for metadata and Patient by id.
    match values(RESEARCH_STUDY_PARAM).first() {
        None if !study_optional(&relative) => {
            return blaze_outcome(
                StatusCode::BAD_REQUEST,
                "required",
                "Missing required query parameter: researchstudy (the MSK unique study number)",
                json,
            );
        }
        Some(study) if !partner.studies.contains(study) => {
            return blaze_outcome(StatusCode::FORBIDDEN, "security", "Access to protocol denied", json);
        }
        _ => {}
    }

    // Blaze builds its paging links from the query it understood: repeats folded,
    // the partner id carried along, the default page size stated.
    let mut normalized: Vec<(String, String)> = Vec::with_capacity(query.len() + 2);
    for pair in query {
        if !normalized.contains(&pair) {
            normalized.push(pair);
        }
    }
    if !normalized.iter().any(|(k, _)| k == PARTNER_ID_HEADER) {
        normalized.push((PARTNER_ID_HEADER.to_owned(), partner_id));
    }
    if !normalized.iter().any(|(k, _)| k == "_count") {
        normalized.push(("_count".to_owned(), DEFAULT_COUNT.to_owned()));
    }
    let query = form_urlencoded::Serializer::new(String::new()).extend_pairs(&normalized).finish();
    let rewritten = format!("{path}?{query}");
    match rewritten.parse::<Uri>() {
        Ok(uri) => *request.uri_mut() = uri,
        Err(_) => return blaze_outcome(StatusCode::BAD_REQUEST, "invalid", "Malformed query", json),
    }

    let mut response = next.run(request).await;
    if !json {
        // As MSK's searching guide warns: JSON, but labelled text/plain.
        response
            .headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    }
    response
}
