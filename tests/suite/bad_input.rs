//! The bad-input matrix: every kind of broken answer a token endpoint or a FHIR
//! server can give, served over real HTTP on 127.0.0.1 by a tiny server that sends
//! exactly the status, headers and bytes of each case.
//!
//! Each case names the specific typed outcome it expects (the [`ErrorKind`] and,
//! where the API has one, the [`ResponseProblem`], the [`OAuthError`], the
//! challenge or the OperationOutcome) and every case checks that:
//! - nothing panics (each case runs in its own task; a panic fails the case by name);
//! - no secret appears in the error's `Display`, `Debug` (plain and pretty) or in
//!   any error of its `source()` chain: not the client secret, not the Basic
//!   credentials it travels in, not any token value the case serves.
//!
//! Some of these cases also live in parsing.rs, client_auth.rs and fhir_client.rs;
//! the matrix is meant to be complete on its own.

use std::collections::BTreeMap;
use std::error::Error as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use auth_core::oauth2::OAuth2Source;
use auth_core::source::FetchContext;
use auth_core::token::ExpirySource;
use auth_core::{
    AuthClient, ClientSecret, CredentialSource, EndpointOptions, Error, ErrorKind, OAuthErrorCode,
    ResponseProblem, TokenManager,
};
use auth_fhir::{Bundle, FhirClient, FhirErrorExt, Patient, SearchParams};
use auth_sandbox::idp::fake_jwt;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderValue, Response, StatusCode};
use axum::routing::{any, post};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use futures_util::TryStreamExt;
use integration_tests::serve;
use serde_json::{Value, json};

const CLIENT_ID: &str = "matrix-client";
const SECRET: &str = "CANARY-client-secret-b4d1e7";
/// The token the endpoint issues for the FHIR cases.
const ACCESS: &str = "CANARY-access-token-9e7f21c3";
/// Cap on token responses in this matrix (FHIR bodies get the same cap).
const CAP: usize = 64 * 1024;

// ---------------------------------------------------------------------------
// The server: answers with whatever the current case says.

#[derive(Clone)]
enum Bytes {
    Full(Vec<u8>),
    /// `count` chunks of `size` spaces, without a Content-Length.
    Streamed {
        size: usize,
        count: usize,
    },
}

#[derive(Clone)]
struct Canned {
    status: u16,
    headers: Vec<(&'static str, Vec<u8>)>,
    body: Bytes,
}

impl Canned {
    fn new(status: u16, content_type: Option<&str>, body: impl Into<Vec<u8>>) -> Self {
        let headers = content_type.map(|c| ("content-type", c.as_bytes().to_vec())).into_iter().collect();
        Self { status, headers, body: Bytes::Full(body.into()) }
    }
    fn json(status: u16, body: impl Into<Vec<u8>>) -> Self {
        Self::new(status, Some("application/json"), body)
    }
    fn fhir(status: u16, body: &Value) -> Self {
        Self::new(status, Some("application/fhir+json"), body.to_string())
    }
    fn header(mut self, name: &'static str, value: impl Into<Vec<u8>>) -> Self {
        self.headers.push((name, value.into()));
        self
    }
}

#[derive(Clone)]
struct Mock {
    token: Arc<Mutex<Canned>>,
    fhir: Arc<Mutex<Canned>>,
    fhir_hits: Arc<AtomicU64>,
}

fn good_token() -> Canned {
    Canned::json(200, format!(r#"{{"access_token":"{ACCESS}","token_type":"Bearer","expires_in":300}}"#))
}

impl Mock {
    fn new() -> Self {
        Self {
            token: Arc::new(Mutex::new(good_token())),
            fhir: Arc::new(Mutex::new(Canned::fhir(200, &json!({"resourceType": "Bundle"})))),
            fhir_hits: Arc::default(),
        }
    }
}

fn respond(canned: Canned) -> Response<Body> {
    let mut response = Response::builder().status(StatusCode::from_u16(canned.status).unwrap());
    for (name, value) in &canned.headers {
        response = response.header(*name, HeaderValue::from_bytes(value).unwrap());
    }
    let body = match canned.body {
        Bytes::Full(bytes) => Body::from(bytes),
        Bytes::Streamed { size, count } => {
            let chunks = (0..count).map(move |_| Ok::<_, std::io::Error>(vec![b' '; size]));
            Body::from_stream(futures_util::stream::iter(chunks))
        }
    };
    response.body(body).unwrap()
}

async fn start(mock: Mock) -> String {
    let app = axum::Router::new()
        .route(
            "/token",
            post(|State(m): State<Mock>| async move { respond(m.token.lock().unwrap().clone()) }),
        )
        .route(
            "/fhir/{*path}",
            any(|State(m): State<Mock>| async move {
                m.fhir_hits.fetch_add(1, Ordering::SeqCst);
                respond(m.fhir.lock().unwrap().clone())
            }),
        )
        .with_state(mock);
    format!("http://{}", serve(app).await)
}

// ---------------------------------------------------------------------------
// Cases.

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Category {
    TokenBody,
    TokenFields,
    Expiry,
    Jwt,
    TokenError,
    VendorError,
    WwwAuthenticate,
    Fhir,
    Paging,
}

#[derive(Clone, Copy)]
enum Op {
    /// `read::<Patient>("1")`.
    Read,
    /// `search::<Patient>` then `next_page`.
    SearchNext,
    /// `search_all::<Patient>`, collected.
    SearchAll,
}

enum Input {
    /// A client-credentials token request answered with this.
    Token(Canned),
    /// A FHIR call (with a good token) answered with this.
    Fhir(Canned, Op),
}

#[derive(Debug)]
enum Want {
    /// A token with this lifetime (±2 s), decided by this source.
    Token(u64, ExpirySource),
    /// `InvalidResponse` with exactly this problem.
    Problem(ResponseProblem),
    /// `InvalidResponse` whose problem is described in words containing this.
    ProblemSays(&'static str),
    /// An RFC 6749 error.
    OAuth { code: OAuthErrorCode, status: u16, retryable: bool, description: Option<&'static str> },
    /// A 5xx/429 without an OAuth body.
    Unavailable { status: u16, retry_after: Option<u64> },
    /// The API kept rejecting the token (after the one replay).
    Unauthorized { status: u16, error: Option<&'static str> },
    /// `insufficient_scope`, with the scope the server wants.
    InsufficientScope { scope: Option<&'static str> },
    /// A FHIR error status, with the OperationOutcome's first issue code if any.
    Fhir { status: u16, issue: Option<&'static str>, diagnostics: Option<&'static str> },
    /// A FHIR search that succeeded: this many matches, and whether a next page came.
    Matches { count: usize, next_page: Option<bool> },
}

struct Case {
    name: &'static str,
    category: Category,
    input: Input,
    want: Want,
    /// Token values served by this case, which must not show up either.
    secrets: Vec<String>,
}

fn case(name: &'static str, category: Category, input: Input, want: Want) -> Case {
    Case { name, category, input, want, secrets: Vec::new() }
}

impl Case {
    fn secret(mut self, value: impl Into<String>) -> Self {
        self.secrets.push(value.into());
        self
    }
}

fn token(body: impl Into<Vec<u8>>) -> Input {
    Input::Token(Canned::json(200, body))
}

fn not_json(content_type: Option<&str>, body: &[u8]) -> Want {
    Want::Problem(ResponseProblem::NotJson { content_type: content_type.map(str::to_owned), len: body.len() })
}

fn unexpected(content_type: Option<&str>, body: &str) -> Want {
    Want::Problem(ResponseProblem::UnexpectedStatus {
        content_type: content_type.map(str::to_owned),
        len: body.len(),
    })
}

fn wrong_type(field: &'static str, expected: &'static str) -> Want {
    Want::Problem(ResponseProblem::WrongType { field, expected })
}

fn exp_in(secs: i64) -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() as i64 + secs
}

fn b64url(s: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s)
}

fn bundle(entries: &[Value], links: &[(&str, String)]) -> Value {
    let mut b = json!({"resourceType": "Bundle", "type": "searchset", "total": entries.len()});
    if !links.is_empty() {
        b["link"] = links.iter().map(|(rel, url)| json!({"relation": rel, "url": url})).collect();
    }
    if !entries.is_empty() {
        b["entry"] = entries.iter().map(|r| json!({"resource": r, "search": {"mode": "match"}})).collect();
    }
    b
}

fn patient(id: &str) -> Value {
    json!({"resourceType": "Patient", "id": id, "name": [{"family": "Matrix"}]})
}

fn cases(own: &str, elsewhere: &str) -> Vec<Case> {
    use Category::*;
    use ExpirySource::{AccessTokenExp, Default as Dflt, ExpiresIn, IdTokenExp};

    let html = "<!DOCTYPE html><html><body><h1>502 Bad Gateway</h1></body></html>";
    let jwt_ok = fake_jwt(&json!({"sub": "m", "jti": "CANARY-jwt-1", "exp": exp_in(900)}));
    let jwt_past = fake_jwt(&json!({"sub": "m", "jti": "CANARY-jwt-2", "exp": exp_in(-600)}));
    let jwt_no_exp = fake_jwt(&json!({"sub": "m", "jti": "CANARY-jwt-3"}));
    let jwt_str_exp = fake_jwt(&json!({"jti": "CANARY-jwt-4", "exp": "tomorrow"}));
    let jwt_huge_exp = fake_jwt(&json!({"jti": "CANARY-jwt-5", "exp": 1e300}));
    let jwt_bad_b64 = format!("{}.CANARY*jwt*payload*not*base64.c2ln", b64url(r#"{"alg":"HS256"}"#));
    let jwt_not_object = format!("{}.{}.c2ln", b64url(r#"{"alg":"HS256"}"#), b64url("[1,2,3]"));
    let jwt_four = format!("{jwt_ok}.extra");
    let id_past = fake_jwt(&json!({"jti": "CANARY-id-token-1", "exp": exp_in(120)}));
    let basic = STANDARD.encode(format!("{CLIENT_ID}:{SECRET}"));

    let mut v = vec![
        // ---- token responses that are not a token response at all
        case("plain text 200", TokenBody, Input::Token(Canned::new(200, Some("text/plain"),
            format!("access_token={ACCESS}&expires_in=300"))),
            not_json(Some("text/plain"), format!("access_token={ACCESS}&expires_in=300").as_bytes())),
        case("HTML page 200", TokenBody, Input::Token(Canned::new(200, Some("text/html"), html)),
            not_json(Some("text/html"), html.as_bytes())),
        case("empty 200", TokenBody, Input::Token(Canned::new(200, None, "")),
            Want::Problem(ResponseProblem::Empty)),
        case("whitespace 200", TokenBody, token(" \r\n\t "), Want::Problem(ResponseProblem::Empty)),
        case("larger than the cap (Content-Length)", TokenBody,
            token(format!(r#"{{"access_token":"{ACCESS}","pad":"{}"}}"#, "x".repeat(CAP))),
            Want::Problem(ResponseProblem::TooLarge { limit: CAP })),
        case("larger than the cap (streamed)", TokenBody,
            Input::Token(Canned { status: 200, headers: vec![], body: Bytes::Streamed { size: 8192, count: 16 } }),
            Want::Problem(ResponseProblem::TooLarge { limit: CAP })),
        case("truncated JSON", TokenBody, token(format!(r#"{{"access_token":"{ACCESS}","expires_in":3"#)),
            not_json(Some("application/json"), format!(r#"{{"access_token":"{ACCESS}","expires_in":3"#).as_bytes())),
        case("not UTF-8", TokenBody, token(b"{\"access_token\":\"\xff\xfe\"}".to_vec()),
            not_json(Some("application/json"), b"{\"access_token\":\"\xff\xfe\"}")),
        case("UTF-8 byte order mark", TokenBody, token(format!("\u{feff}{{\"access_token\":\"{ACCESS}\"}}")),
            not_json(Some("application/json"), format!("\u{feff}{{\"access_token\":\"{ACCESS}\"}}").as_bytes())),
        case("nested 10 000 deep", TokenBody, token("[".repeat(10_000)),
            not_json(Some("application/json"), "[".repeat(10_000).as_bytes())),
        case("JSON array", TokenBody, token("[1,2]"), Want::Problem(ResponseProblem::NotAnObject)),
        case("JSON string", TokenBody, token(format!(r#""{ACCESS}""#)), Want::Problem(ResponseProblem::NotAnObject)),
        case("JSON null", TokenBody, token("null"), Want::Problem(ResponseProblem::NotAnObject)),
        // ---- fields missing or of the wrong type
        case("missing access_token", TokenFields, token(r#"{"token_type":"Bearer","expires_in":3600}"#),
            Want::Problem(ResponseProblem::MissingAccessToken)),
        case("null access_token", TokenFields, token(r#"{"access_token":null}"#),
            Want::Problem(ResponseProblem::MissingAccessToken)),
        case("empty access_token", TokenFields, token(r#"{"access_token":""}"#),
            Want::Problem(ResponseProblem::EmptyAccessToken)),
        case("numeric access_token", TokenFields, token(r#"{"access_token":4711}"#),
            wrong_type("access_token", "a string")),
        case("object access_token", TokenFields, token(format!(r#"{{"access_token":{{"value":"{ACCESS}"}}}}"#)),
            wrong_type("access_token", "a string")),
        case("access_token with a line break", TokenFields,
            token(format!(r#"{{"access_token":"{ACCESS}\r\nX-Injected: 1"}}"#)),
            Want::ProblemSays("cannot be sent in an HTTP header")).secret(format!("{ACCESS}\r\nX-Injected: 1")),
        case("access_token with non-ASCII", TokenFields, token(r#"{"access_token":"CANARY-tök€n-ümlaut-1"}"#),
            Want::ProblemSays("cannot be sent in an HTTP header")).secret("CANARY-tök€n-ümlaut-1"),
        case("access_token with a space", TokenFields, token(r#"{"access_token":"CANARY-two words-token"}"#),
            Want::ProblemSays("cannot be sent in an HTTP header")).secret("CANARY-two words-token"),
        case("token_type mac", TokenFields, token(format!(r#"{{"access_token":"{ACCESS}","token_type":"mac"}}"#)),
            Want::Problem(ResponseProblem::UnsupportedTokenType { token_type: "mac".into() })),
        // A DPoP-bound token to a source without DPoP: unusable, and said so.
        case("token_type DPoP", TokenFields, token(format!(r#"{{"access_token":"{ACCESS}","token_type":"DPoP"}}"#)),
            Want::Problem(ResponseProblem::UnexpectedDpopToken)),
        case("token_type empty", TokenFields, token(format!(r#"{{"access_token":"{ACCESS}","token_type":""}}"#)),
            Want::Problem(ResponseProblem::UnsupportedTokenType { token_type: String::new() })),
        case("token_type a number", TokenFields, token(format!(r#"{{"access_token":"{ACCESS}","token_type":1}}"#)),
            wrong_type("token_type", "a string")),
        case("scope an array", TokenFields, token(format!(r#"{{"access_token":"{ACCESS}","scope":["a","b"]}}"#)),
            wrong_type("scope", "a string")),
        case("refresh_token a number", TokenFields,
            token(format!(r#"{{"access_token":"{ACCESS}","refresh_token":12}}"#)),
            wrong_type("refresh_token", "a string")),
        case("id_token an object", TokenFields, token(format!(r#"{{"access_token":"{ACCESS}","id_token":{{}}}}"#)),
            wrong_type("id_token", "a string")),
        case("extra fields of every type", TokenFields, token(format!(
            r#"{{"access_token":"{ACCESS}","expires_in":120,"consented_on":1610000000,"patient":"123","nested":{{"a":[1,{{"b":null}}]}},"flag":true,"refresh_token":"CANARY-refresh-77"}}"#)),
            Want::Token(120, ExpiresIn)).secret("CANARY-refresh-77"),
        // Found by fuzz/token_response (crash-b9384ffe…): a field whose name contains
        // the token value. The token is accepted; Debug shows field names only.
        case("a field named after the token", TokenFields,
            token(r#"{"access_token":"AAAAAAAAAAAAAAA","eAAAAAAAAAAAAAAAAAAAAAAsixi_eprn":3600}"#),
            Want::Token(300, Dflt)),
        // Found by fuzz/token_response (crash-3a9080ad…): a token spelled like a field.
        case("a token spelled like a field name", TokenFields, token(r#"{"access_token":"access_token"}"#),
            Want::Token(300, Dflt)),
        case("access_token twice (the last wins)", TokenFields,
            token(format!(r#"{{"access_token":"CANARY-first-token-1","access_token":"{ACCESS}","expires_in":60}}"#)),
            Want::Token(60, ExpiresIn)).secret("CANARY-first-token-1"),
        // ---- expires_in
        case("expires_in negative", Expiry, token(format!(r#"{{"access_token":"{ACCESS}","expires_in":-3600}}"#)),
            Want::Token(10, ExpiresIn)),
        case("expires_in zero", Expiry, token(format!(r#"{{"access_token":"{ACCESS}","expires_in":0}}"#)),
            Want::Token(10, ExpiresIn)),
        case("expires_in absurd (1e12)", Expiry, token(format!(r#"{{"access_token":"{ACCESS}","expires_in":1e12}}"#)),
            Want::Token(86_400, ExpiresIn)),
        case("expires_in near f64::MAX", Expiry,
            token(format!(r#"{{"access_token":"{ACCESS}","expires_in":1.7e308}}"#)),
            Want::Token(86_400, ExpiresIn)),
        // Valid JSON (serde_json's `arbitrary_precision` reads it): beyond f64 is cut like near it.
        case("expires_in beyond f64 (1e400)", Expiry,
            token(format!(r#"{{"access_token":"{ACCESS}","expires_in":1e400}}"#)),
            Want::Token(86_400, ExpiresIn)),
        case("expires_in under a second", Expiry, token(format!(r#"{{"access_token":"{ACCESS}","expires_in":0.2}}"#)),
            Want::Token(1, ExpiresIn)),
        case("expires_in a fraction", Expiry, token(format!(r#"{{"access_token":"{ACCESS}","expires_in":59.99}}"#)),
            Want::Token(60, ExpiresIn)),
        case("expires_in a numeric string", Expiry,
            token(format!(r#"{{"access_token":"{ACCESS}","expires_in":"1800"}}"#)),
            Want::Token(1800, ExpiresIn)),
        case("expires_in a word", Expiry, token(format!(r#"{{"access_token":"{ACCESS}","expires_in":"soon"}}"#)),
            wrong_type("expires_in", "a number")),
        case("expires_in NaN as a string", Expiry,
            token(format!(r#"{{"access_token":"{ACCESS}","expires_in":"NaN"}}"#)),
            wrong_type("expires_in", "a number")),
        case("expires_in infinity as a string", Expiry,
            token(format!(r#"{{"access_token":"{ACCESS}","expires_in":"-inf"}}"#)),
            wrong_type("expires_in", "a number")),
        case("expires_in a boolean", Expiry, token(format!(r#"{{"access_token":"{ACCESS}","expires_in":true}}"#)),
            wrong_type("expires_in", "a number")),
        case("expires_in an object", Expiry,
            token(format!(r#"{{"access_token":"{ACCESS}","expires_in":{{"seconds":60}}}}"#)),
            wrong_type("expires_in", "a number")),
        // ---- JWT access and id tokens
        case("JWT exp, no expires_in", Jwt, token(format!(r#"{{"access_token":"{jwt_ok}"}}"#)),
            Want::Token(900, AccessTokenExp)).secret(&jwt_ok),
        case("JWT exp earlier than expires_in", Jwt, token(format!(r#"{{"access_token":"{jwt_ok}","expires_in":3600}}"#)),
            Want::Token(900, AccessTokenExp)).secret(&jwt_ok),
        case("JWT exp in the past", Jwt, token(format!(r#"{{"access_token":"{jwt_past}","expires_in":3600}}"#)),
            Want::Token(10, AccessTokenExp)).secret(&jwt_past),
        case("JWT without exp", Jwt, token(format!(r#"{{"access_token":"{jwt_no_exp}"}}"#)),
            Want::Token(300, Dflt)).secret(&jwt_no_exp),
        case("JWT exp a string", Jwt, token(format!(r#"{{"access_token":"{jwt_str_exp}","expires_in":600}}"#)),
            Want::Token(600, ExpiresIn)).secret(&jwt_str_exp),
        case("JWT exp 1e300", Jwt, token(format!(r#"{{"access_token":"{jwt_huge_exp}"}}"#)),
            Want::Token(86_400, AccessTokenExp)).secret(&jwt_huge_exp),
        case("JWT payload bad base64", Jwt, token(format!(r#"{{"access_token":"{jwt_bad_b64}","expires_in":600}}"#)),
            Want::Token(600, ExpiresIn)).secret(&jwt_bad_b64),
        case("JWT payload not an object", Jwt, token(format!(r#"{{"access_token":"{jwt_not_object}"}}"#)),
            Want::Token(300, Dflt)).secret(&jwt_not_object),
        case("JWT with four segments", Jwt, token(format!(r#"{{"access_token":"{jwt_four}"}}"#)),
            Want::Token(300, Dflt)).secret(&jwt_four),
        case("id_token exp decides", Jwt,
            token(format!(r#"{{"access_token":"{ACCESS}","expires_in":3600,"id_token":"{id_past}"}}"#)),
            Want::Token(120, IdTokenExp)).secret(&id_past),
        case("id_token not a JWT", Jwt,
            token(format!(r#"{{"access_token":"{ACCESS}","expires_in":60,"id_token":"CANARY-opaque-id-9"}}"#)),
            Want::Token(60, ExpiresIn)).secret("CANARY-opaque-id-9"),
        // ---- RFC 6749 error responses
        case("invalid_client 401", TokenError, Input::Token(Canned::json(401, r#"{"error":"invalid_client"}"#)),
            Want::OAuth { code: OAuthErrorCode::InvalidClient, status: 401, retryable: false, description: None }),
        case("invalid_scope 400", TokenError,
            Input::Token(Canned::json(400, r#"{"error":"invalid_scope","error_description":"no such scope"}"#)),
            Want::OAuth { code: OAuthErrorCode::InvalidScope, status: 400, retryable: false, description: Some("no such scope") }),
        case("temporarily_unavailable 503", TokenError,
            Input::Token(Canned::json(503, r#"{"error":"temporarily_unavailable"}"#).header("retry-after", "7")),
            Want::OAuth { code: OAuthErrorCode::TemporarilyUnavailable, status: 503, retryable: true, description: None }),
        case("non-standard code 400", TokenError, Input::Token(Canned::json(400, r#"{"error":"mfa_required"}"#)),
            Want::OAuth { code: OAuthErrorCode::Other("mfa_required".into()), status: 400, retryable: false, description: None }),
        case("non-standard code 502", TokenError, Input::Token(Canned::json(502, r#"{"error":"upstream_down"}"#)),
            Want::OAuth { code: OAuthErrorCode::Other("upstream_down".into()), status: 502, retryable: true, description: None }),
        case("error code not a string", TokenError,
            Input::Token(Canned::json(400, r#"{"error":400,"error_description":"bad"}"#)),
            unexpected(Some("application/json"), r#"{"error":400,"error_description":"bad"}"#)),
        case("error_description not a string", TokenError,
            Input::Token(Canned::json(401, r#"{"error":"invalid_client","error_description":["a"]}"#)),
            Want::OAuth { code: OAuthErrorCode::InvalidClient, status: 401, retryable: false, description: None }),
        case("error_description echoes the secret", TokenError,
            Input::Token(Canned::json(401, format!(r#"{{"error":"invalid_client","error_description":"secret {SECRET} is wrong"}}"#))),
            Want::OAuth { code: OAuthErrorCode::InvalidClient, status: 401, retryable: false, description: Some("secret [redacted] is wrong") }),
        case("error_description echoes the Basic header", TokenError,
            Input::Token(Canned::json(401, format!(r#"{{"error":"invalid_client","error_description":"bad Authorization: Basic {basic}"}}"#))),
            Want::OAuth { code: OAuthErrorCode::InvalidClient, status: 401, retryable: false, description: Some("bad Authorization: Basic [redacted]") }),
        case("error code echoes the secret", TokenError,
            Input::Token(Canned::json(400, format!(r#"{{"error":"{SECRET}"}}"#))),
            Want::OAuth { code: OAuthErrorCode::Other("[redacted]".into()), status: 400, retryable: false, description: None }),
        case("an OAuth error with status 200", TokenError,
            Input::Token(Canned::json(200, r#"{"error":"invalid_client","error_description":"unknown client"}"#)),
            Want::OAuth { code: OAuthErrorCode::InvalidClient, status: 200, retryable: false, description: Some("unknown client") }),
        case("400 with an empty body", TokenError, Input::Token(Canned::new(400, None, "")),
            Want::Problem(ResponseProblem::Empty)),
        case("503 with an HTML page", TokenError, Input::Token(Canned::new(503, Some("text/html"), html)),
            Want::Unavailable { status: 503, retry_after: None }),
        case("429 with Retry-After", TokenError, Input::Token(Canned::new(429, None, "").header("retry-after", "30")),
            Want::Unavailable { status: 429, retry_after: Some(30) }),
        case("503 with a garbage Retry-After", TokenError,
            Input::Token(Canned::new(503, None, "").header("retry-after", "in a while")),
            Want::Unavailable { status: 503, retry_after: None }),
        case("error body larger than the cap", TokenError,
            Input::Token(Canned::json(400, format!(r#"{{"error":"invalid_request","pad":"{}"}}"#, "x".repeat(CAP)))),
            Want::Problem(ResponseProblem::TooLarge { limit: CAP })),
        // ---- each vendor's error shape at the token endpoint
        case("SanteDB OAuthErrorBehavior 500", VendorError,
            Input::Token(Canned::json(500, r#"{"error":"unspecified_error","error_description":"Object reference not set to an instance of an object."}"#)),
            Want::OAuth { code: OAuthErrorCode::Other("unspecified_error".into()), status: 500, retryable: true,
                description: Some("Object reference not set to an instance of an object.") }),
        case("SanteDB OAuthErrorBehavior 400", VendorError,
            Input::Token(Canned::json(400, r#"{"error":"invalid_grant","error_description":"Invalid client credentials"}"#)),
            Want::OAuth { code: OAuthErrorCode::InvalidGrant, status: 400, retryable: false, description: Some("Invalid client credentials") }),
        case("SanteDB RestServiceFault 401", VendorError,
            Input::Token(Canned::json(401, r#"{"$type":"RestServiceFault","type":"SecurityException","message":"Authentication failed"}"#)),
            unexpected(Some("application/json"), r#"{"$type":"RestServiceFault","type":"SecurityException","message":"Authentication failed"}"#)),
        case("IBM API Connect 401", VendorError,
            Input::Token(Canned::json(401, r#"{"httpCode":"401","httpMessage":"Unauthorized","moreInformation":"Invalid client id or secret."}"#)),
            unexpected(Some("application/json"), r#"{"httpCode":"401","httpMessage":"Unauthorized","moreInformation":"Invalid client id or secret."}"#)),
        case("IBM API Connect 500", VendorError,
            Input::Token(Canned::json(500, r#"{"httpCode":"500","httpMessage":"Internal Server Error","moreInformation":"Backend unavailable"}"#)),
            Want::Unavailable { status: 500, retry_after: None }),
        case("Azure APIM 401", VendorError,
            Input::Token(Canned::json(401, r#"{"statusCode":401,"message":"Access denied due to invalid subscription key."}"#)),
            unexpected(Some("application/json"), r#"{"statusCode":401,"message":"Access denied due to invalid subscription key."}"#)),
        case("Azure APIM 429", VendorError,
            Input::Token(Canned::json(429, r#"{"statusCode":429,"message":"Rate limit is exceeded. Try again in 5 seconds."}"#).header("retry-after", "5")),
            Want::Unavailable { status: 429, retry_after: Some(5) }),
        case("OperationOutcome from the token endpoint", VendorError,
            Input::Token(Canned::fhir(400, &json!({"resourceType":"OperationOutcome","issue":[{"severity":"error","code":"security","diagnostics":"bad client"}]}))),
            unexpected(Some("application/fhir+json"), &json!({"resourceType":"OperationOutcome","issue":[{"severity":"error","code":"security","diagnostics":"bad client"}]}).to_string())),
        // ---- WWW-Authenticate on API calls (every one replayed once, then refused)
        case("401 Bearer invalid_token", WwwAuthenticate,
            Input::Fhir(Canned::new(401, None, "").header("www-authenticate", r#"Bearer realm="fhir", error="invalid_token", error_description="expired""#), Op::Read),
            Want::Unauthorized { status: 401, error: Some("invalid_token") }),
        case("401 without a challenge", WwwAuthenticate, Input::Fhir(Canned::new(401, None, ""), Op::Read),
            Want::Unauthorized { status: 401, error: None }),
        case("401 Basic only", WwwAuthenticate,
            Input::Fhir(Canned::new(401, None, "").header("www-authenticate", r#"Basic realm="gateway""#), Op::Read),
            Want::Unauthorized { status: 401, error: None }),
        case("SanteDB 403 lowercase, space separated", WwwAuthenticate,
            Input::Fhir(Canned::new(403, None, "").header("www-authenticate", r#"bearer realm="santedb" error="invalid_token" error_description="Invalid bearer token""#), Op::Read),
            Want::Unauthorized { status: 403, error: Some("invalid_token") }),
        case("several challenges in one header", WwwAuthenticate,
            Input::Fhir(Canned::new(401, None, "").header("www-authenticate", r#"Basic realm="a", Negotiate abc==, Bearer error="invalid_token""#), Op::Read),
            Want::Unauthorized { status: 401, error: Some("invalid_token") }),
        case("403 insufficient_scope", WwwAuthenticate,
            Input::Fhir(Canned::new(403, None, "").header("www-authenticate", r#"Bearer error="insufficient_scope", scope="system/Patient.rs""#), Op::Read),
            Want::InsufficientScope { scope: Some("system/Patient.rs") }),
        case("insufficient_scope unquoted, upper case", WwwAuthenticate,
            Input::Fhir(Canned::new(403, None, "").header("www-authenticate", "BEARER error=insufficient_scope"), Op::Read),
            Want::InsufficientScope { scope: None }),
        case("garbage challenge", WwwAuthenticate,
            Input::Fhir(Canned::new(401, None, "").header("www-authenticate", r#"= ,, "\ error="#), Op::Read),
            Want::Unauthorized { status: 401, error: Some("") }),
        case("unterminated quote", WwwAuthenticate,
            Input::Fhir(Canned::new(401, None, "").header("www-authenticate", r#"Bearer error="invalid_token"#), Op::Read),
            Want::Unauthorized { status: 401, error: Some("invalid_token") }),
        case("challenge not UTF-8", WwwAuthenticate,
            Input::Fhir(Canned::new(401, None, "").header("www-authenticate", b"Bearer error=\"invalid_token\", realm=\"\xff\"".to_vec()), Op::Read),
            Want::Unauthorized { status: 401, error: None }),
        case("challenge echoes the token", WwwAuthenticate,
            Input::Fhir(Canned::new(401, None, "").header("www-authenticate",
                format!(r#"Bearer error="invalid_token", error_description="token {ACCESS} has expired""#)), Op::Read),
            Want::Unauthorized { status: 401, error: Some("invalid_token") }),
        case("403 without a challenge is a FHIR error", WwwAuthenticate,
            Input::Fhir(Canned::fhir(403, &json!({"resourceType":"OperationOutcome","issue":[{"severity":"error","code":"forbidden"}]})), Op::Read),
            Want::Fhir { status: 403, issue: Some("forbidden"), diagnostics: None }),
        // ---- FHIR responses
        case("read: wrong resourceType", Fhir,
            Input::Fhir(Canned::fhir(200, &json!({"resourceType": "Observation", "id": "1"})), Op::Read),
            Want::ProblemSays("expected resourceType `Patient`, found `Observation`")),
        case("read: resourceType carries data", Fhir,
            Input::Fhir(Canned::fhir(200, &json!({"resourceType": format!("Patient {ACCESS}"), "id": "1"})), Op::Read),
            Want::ProblemSays("expected resourceType `Patient`")),
        case("read: no resourceType", Fhir, Input::Fhir(Canned::fhir(200, &json!({"id": "1"})), Op::Read),
            Want::ProblemSays("does not match the expected type")),
        case("read: element of the wrong type", Fhir,
            Input::Fhir(Canned::fhir(200, &json!({"resourceType": "Patient", "id": "1", "gender": 12, "name": [{"family": "CANARY-surname-0042"}]})), Op::Read),
            Want::ProblemSays("does not match the expected type")).secret("CANARY-surname-0042"),
        case("read: a mistyped value quoting our own words", Fhir,
            Input::Fhir(Canned::fhir(200, &json!({"resourceType": "Patient", "id": "1",
                "name": "expected resourceType `Patient`, found `CANARY-patient-data-1`"})), Op::Read),
            Want::ProblemSays("does not match the expected type")).secret("CANARY-patient-data-1"),
        case("read: truncated JSON", Fhir,
            Input::Fhir(Canned::new(200, Some("application/fhir+json"), r#"{"resourceType":"Patient","id":"1","name":[{"fam"#), Op::Read),
            not_json(Some("application/fhir+json"), br#"{"resourceType":"Patient","id":"1","name":[{"fam"#)),
        case("read: empty 200", Fhir, Input::Fhir(Canned::new(200, Some("application/fhir+json"), ""), Op::Read),
            Want::Problem(ResponseProblem::Empty)),
        case("read: HTML 200", Fhir, Input::Fhir(Canned::new(200, Some("text/html"), html), Op::Read),
            not_json(Some("text/html"), html.as_bytes())),
        case("read: larger than the cap", Fhir,
            Input::Fhir(Canned::fhir(200, &json!({"resourceType": "Patient", "id": "1", "pad": "x".repeat(CAP)})), Op::Read),
            Want::Problem(ResponseProblem::TooLarge { limit: CAP })),
        case("read: streamed past the cap", Fhir,
            Input::Fhir(Canned { status: 200, headers: vec![], body: Bytes::Streamed { size: 8192, count: 16 } }, Op::Read),
            Want::Problem(ResponseProblem::TooLarge { limit: CAP })),
        case("404 OperationOutcome", Fhir,
            Input::Fhir(Canned::fhir(404, &json!({"resourceType":"OperationOutcome","issue":[{"severity":"error","code":"not-found","diagnostics":"Patient/1 is not known"}]})), Op::Read),
            Want::Fhir { status: 404, issue: Some("not-found"), diagnostics: Some("Patient/1 is not known") }),
        case("500 HTML page", Fhir, Input::Fhir(Canned::new(500, Some("text/html"), html), Op::Read),
            Want::Fhir { status: 500, issue: None, diagnostics: None }),
        case("400 malformed OperationOutcome", Fhir,
            Input::Fhir(Canned::fhir(400, &json!({"resourceType":"OperationOutcome","issue":{"code":"invalid"}})), Op::Read),
            Want::Fhir { status: 400, issue: None, diagnostics: None }),
        case("OperationOutcome echoes the token", Fhir,
            Input::Fhir(Canned::fhir(400, &json!({"resourceType":"OperationOutcome","issue":[{"severity":"error","code":"security",
                "diagnostics": format!("Authorization: Bearer {ACCESS} was refused"), "details": {"text": format!("token {ACCESS}")}}]})), Op::Read),
            Want::Fhir { status: 400, issue: Some("security"), diagnostics: Some("Authorization: Bearer [redacted] was refused") }),
        case("error body larger than the cap", Fhir,
            Input::Fhir(Canned::new(500, Some("text/html"), "x".repeat(CAP + 1)), Op::Read),
            Want::Problem(ResponseProblem::TooLarge { limit: CAP })),
        // ---- Bundles and paging
        case("search: a Patient instead of a Bundle", Paging, Input::Fhir(Canned::fhir(200, &patient("1")), Op::SearchNext),
            Want::ProblemSays("expected resourceType `Bundle`, found `Patient`")),
        case("search: truncated Bundle", Paging,
            Input::Fhir(Canned::new(200, Some("application/fhir+json"), r#"{"resourceType":"Bundle","entry":[{"resource":{"resourceType":"Pat"#), Op::SearchNext),
            not_json(Some("application/fhir+json"), br#"{"resourceType":"Bundle","entry":[{"resource":{"resourceType":"Pat"#)),
        case("search: Bundle without links", Paging,
            Input::Fhir(Canned::fhir(200, &bundle(&[patient("1"), patient("2")], &[])), Op::SearchNext),
            Want::Matches { count: 2, next_page: Some(false) }),
        case("search all: Bundle without links", Paging,
            Input::Fhir(Canned::fhir(200, &bundle(&[patient("1"), patient("2")], &[])), Op::SearchAll),
            Want::Matches { count: 2, next_page: None }),
        case("search: entries of another type", Paging,
            Input::Fhir(Canned::fhir(200, &bundle(&[json!({"resourceType": "Observation", "id": "o"}), patient("1")], &[])), Op::SearchNext),
            Want::Matches { count: 1, next_page: Some(false) }),
        case("search: an entry that is not a valid Patient", Paging,
            Input::Fhir(Canned::fhir(200, &bundle(&[json!({"resourceType": "Patient", "birthDate": 1970})], &[])), Op::SearchNext),
            Want::ProblemSays("does not match the expected type")),
        case("search: link is null", Paging,
            Input::Fhir(Canned::fhir(200, &json!({"resourceType": "Bundle", "link": null})), Op::SearchNext),
            Want::ProblemSays("does not match the expected type")),
        case("next link to another origin", Paging,
            Input::Fhir(Canned::fhir(200, &bundle(&[patient("1")], &[("next", format!("{elsewhere}/fhir/Patient?page=2"))])), Op::SearchNext),
            Want::ProblemSays("another origin")),
        case("next link to another origin (search all)", Paging,
            Input::Fhir(Canned::fhir(200, &bundle(&[patient("1")], &[("next", format!("{elsewhere}/fhir/Patient?page=2"))])), Op::SearchAll),
            Want::ProblemSays("another origin")),
        case("next link to the same port by another name", Paging,
            Input::Fhir(Canned::fhir(200, &bundle(&[patient("1")], &[("next", own.replace("127.0.0.1", "localhost") + "/fhir/Patient?page=2")])), Op::SearchNext),
            Want::ProblemSays("another origin")),
        case("next link switching to https", Paging,
            Input::Fhir(Canned::fhir(200, &bundle(&[patient("1")], &[("next", own.replace("http://", "https://") + "/fhir/Patient?page=2")])), Op::SearchNext),
            Want::ProblemSays("another origin")),
        case("next link protocol-relative to another host", Paging,
            Input::Fhir(Canned::fhir(200, &bundle(&[patient("1")], &[("next", "//evil.example/fhir/Patient?page=2".into())])), Op::SearchNext),
            Want::ProblemSays("another origin")),
        case("next link that is not a URL", Paging,
            Input::Fhir(Canned::fhir(200, &bundle(&[patient("1")], &[("next", "http://[::1/fhir".into())])), Op::SearchNext),
            Want::ProblemSays("not a URL")),
    ];
    // Every case also checks the Basic credentials the secret travelled in.
    for c in &mut v {
        c.secrets.push(basic.clone());
    }
    v
}

// ---------------------------------------------------------------------------
// Running a case.

enum Outcome {
    // Boxed: a token is far larger than the other outcomes.
    Token(Box<auth_core::Token>),
    Matches(usize, Option<bool>),
    Failed(Error),
}

async fn run(base: &str, mock: &Mock, input: Input) -> Outcome {
    let source = OAuth2Source::builder(format!("{base}/token"), CLIENT_ID, ClientSecret::new(SECRET))
        .max_body(CAP)
        .build()
        .unwrap();
    match input {
        Input::Token(canned) => {
            *mock.token.lock().unwrap() = canned;
            match source.fetch(&FetchContext::default()).await {
                Ok(t) => Outcome::Token(Box::new(t)),
                Err(e) => Outcome::Failed(e),
            }
        }
        Input::Fhir(canned, op) => {
            *mock.token.lock().unwrap() = good_token();
            *mock.fhir.lock().unwrap() = canned;
            let api = AuthClient::new(TokenManager::new(source)).unwrap();
            let fhir = FhirClient::new(api, &format!("{base}/fhir")).unwrap().with_max_body(CAP);
            let result = match op {
                Op::Read => fhir.read::<Patient>("1").await.map(|_| Outcome::Matches(1, None)),
                Op::SearchNext => {
                    async {
                        let page: Bundle<Patient> =
                            fhir.search(&SearchParams::new().add("name", "x")).await?;
                        let count = page.matches().count();
                        let next = fhir.next_page(&page).await?;
                        Ok::<_, Error>(Outcome::Matches(count, Some(next.is_some())))
                    }
                    .await
                }
                Op::SearchAll => fhir
                    .search_all::<Patient>(SearchParams::new().add("name", "x"))
                    .try_collect::<Vec<_>>()
                    .await
                    .map(|all| Outcome::Matches(all.len(), None)),
            };
            result.unwrap_or_else(Outcome::Failed)
        }
    }
}

/// Display, Debug and pretty Debug of the error and of every error in its chain.
fn everything_shown(e: &Error) -> String {
    let mut text = format!("{e}\n{e:?}\n{e:#?}");
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(&format!("\n{s}\n{s:?}"));
        source = s.source();
    }
    text
}

/// What is wrong with `outcome` for `want`, if anything.
fn judge(outcome: &Outcome, want: &Want) -> Option<String> {
    let e = match (outcome, want) {
        (Outcome::Token(t), Want::Token(secs, from)) => {
            let got = t.lifetime().as_secs();
            // A JWT's exp was fixed when the table was built, some seconds ago.
            let slack =
                if matches!(from, ExpirySource::AccessTokenExp | ExpirySource::IdTokenExp) { 60 } else { 2 };
            if got > secs + 2 || got + slack < *secs || t.expiry_source() != *from {
                return Some(format!("token lifetime {got}s from {:?}", t.expiry_source()));
            }
            return None;
        }
        (Outcome::Matches(n, next), Want::Matches { count, next_page }) => {
            return (n != count || next != next_page).then(|| format!("{n} matches, next page {next:?}"));
        }
        (Outcome::Failed(e), _) => e,
        (Outcome::Token(t), _) => return Some(format!("accepted a token: {t:?}")),
        (Outcome::Matches(n, _), _) => return Some(format!("succeeded with {n} matches")),
    };
    let shown = || format!("{:?}: {e}", e.kind());
    match want {
        Want::Token(..) | Want::Matches { .. } => Some(format!("failed: {}", shown())),
        Want::Problem(p) => (e.kind() != ErrorKind::InvalidResponse || e.response_problem() != Some(p))
            .then(|| format!("{} / {:?}", shown(), e.response_problem())),
        Want::ProblemSays(text) => {
            let ok = e.kind() == ErrorKind::InvalidResponse
                && matches!(e.response_problem(), Some(ResponseProblem::Other(t)) if t.contains(text));
            (!ok).then(|| format!("{} / {:?}", shown(), e.response_problem()))
        }
        Want::OAuth { code, status, retryable, description } => {
            let o = e.oauth_error();
            let ok = e.kind() == ErrorKind::OAuth
                && o.is_some_and(|o| {
                    o.code == *code && o.status == *status && o.description.as_deref() == *description
                })
                && e.is_retryable() == *retryable;
            (!ok).then(|| format!("{} / {o:?} retryable {}", shown(), e.is_retryable()))
        }
        Want::Unavailable { status, retry_after } => {
            let ok = e.kind() == ErrorKind::Unavailable
                && e.status() == Some(*status)
                && e.retry_after() == retry_after.map(Duration::from_secs)
                && e.is_retryable();
            (!ok).then(|| format!("{} / retry after {:?}", shown(), e.retry_after()))
        }
        Want::Unauthorized { status, error } => {
            let ok = e.kind() == ErrorKind::Unauthorized
                && e.status() == Some(*status)
                && e.challenge().and_then(|c| c.error()) == *error
                && !e.is_retryable();
            (!ok).then(|| format!("{} / {:?}", shown(), e.challenge()))
        }
        Want::InsufficientScope { scope } => {
            let ok = e.kind() == ErrorKind::InsufficientScope
                && e.challenge().is_some_and(|c| c.is_insufficient_scope() && c.scope() == *scope);
            (!ok).then(|| format!("{} / {:?}", shown(), e.challenge()))
        }
        Want::Fhir { status, issue, diagnostics } => {
            let first = e.operation_outcome().and_then(|o| o.issue.first());
            let ok = e.kind() == ErrorKind::Api
                && e.status() == Some(*status)
                && first.and_then(|i| i.code.as_deref()) == *issue
                && first.and_then(|i| i.diagnostics.as_deref()) == *diagnostics;
            (!ok).then(|| format!("{} / {first:?}", shown()))
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_matrix() {
    let mock = Mock::new();
    let base = start(mock.clone()).await;
    // Where cross-origin next links point: it must never be asked anything.
    let elsewhere_mock = Mock::new();
    let elsewhere = start(elsewhere_mock.clone()).await;

    let cases = cases(&base, &elsewhere);
    let mut failures = Vec::new();
    let mut per_category: BTreeMap<Category, usize> = BTreeMap::new();
    for c in cases {
        *per_category.entry(c.category).or_default() += 1;
        let (b, m) = (base.clone(), mock.clone());
        let outcome = match tokio::spawn(async move { run(&b, &m, c.input).await }).await {
            Ok(outcome) => outcome,
            Err(panic) => {
                failures.push(format!("{}: panicked: {panic}", c.name));
                continue;
            }
        };
        if let Some(problem) = judge(&outcome, &c.want) {
            failures.push(format!("{}: want {:?}, got {problem}", c.name, c.want));
        }
        let shown = match &outcome {
            Outcome::Failed(e) => everything_shown(e),
            Outcome::Token(t) => format!("{t:?} {t:#?}"),
            Outcome::Matches(..) => String::new(),
        };
        for secret in [SECRET, ACCESS].iter().copied().chain(c.secrets.iter().map(String::as_str)) {
            if shown.contains(secret) {
                failures.push(format!("{}: leaks {secret:?} in\n{shown}", c.name));
            }
        }
        if shown.to_ascii_lowercase().contains("canary") {
            failures.push(format!("{}: leaks a canary in\n{shown}", c.name));
        }
    }
    let total: usize = per_category.values().sum();
    eprintln!("{total} cases: {per_category:?}");
    assert!(total >= 40, "the matrix has {total} cases");
    assert_eq!(elsewhere_mock.fhir_hits.load(Ordering::SeqCst), 0, "a cross-origin next link was followed");
    assert!(failures.is_empty(), "{} of {total} cases failed:\n{}", failures.len(), failures.join("\n"));
}
