//! SMART Backend Services over real HTTP on loopback, against a small axum token
//! endpoint that records what it is sent: the assertion's header and claims
//! (checked with the public key), a new `jti` per request, every PEM form the
//! issue names, a bad key refused at build, and discovery with its failure modes.
//! Keys are generated per run with the `openssl` command line.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use auth_core::{CredentialSource, ErrorKind, FetchContext, PrivateKeyPem, TokenManager};
use auth_providers::smart::{CLIENT_ASSERTION_TYPE, SigningAlgorithm, SmartConfiguration, SmartSource};
use axum::extract::State;
use axum::routing::{get, post};
use axum::{Form, Json, Router};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Value, json};

/// A key pair in every PEM form under test.
pub(crate) struct Keys {
    /// PKCS#8 (`PRIVATE KEY`).
    pub(crate) pkcs8: String,
    /// PKCS#1 for RSA, SEC1 for EC.
    traditional: String,
    public: String,
}

fn openssl(args: &[&str]) -> String {
    let out = Command::new("openssl").args(args).output().expect("openssl must be installed for these tests");
    assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).expect("PEM is ASCII")
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("smart-test-{}-{}", std::process::id(), fastrand_suffix()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir.join(name)
}

fn fastrand_suffix() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or_default()
}

pub(crate) fn keys(alg: SigningAlgorithm) -> Keys {
    let path = scratch("key.pem");
    let p = path.to_str().expect("utf-8 path");
    match alg {
        SigningAlgorithm::Rs384 => {
            openssl(&["genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", p]);
        }
        _ => {
            openssl(&["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-384", "-out", p]);
        }
    }
    let keys = key_forms(&path, alg);
    let _ = std::fs::remove_dir_all(path.parent().expect("parent"));
    keys
}

fn key_forms(path: &Path, alg: SigningAlgorithm) -> Keys {
    let p = path.to_str().expect("utf-8 path");
    let traditional = match alg {
        SigningAlgorithm::Rs384 => openssl(&["rsa", "-in", p, "-traditional"]),
        _ => openssl(&["ec", "-in", p]),
    };
    Keys {
        pkcs8: std::fs::read_to_string(path).expect("key file"),
        traditional,
        public: openssl(&["pkey", "-in", p, "-pubout"]),
    }
}

/// What the test token endpoint saw and how its discovery document reads.
#[derive(Clone, Default)]
struct Seen {
    forms: Arc<Mutex<Vec<HashMap<String, String>>>>,
    smart_config: Arc<Mutex<Option<Value>>>,
}

async fn token(State(seen): State<Seen>, Form(form): Form<HashMap<String, String>>) -> Json<Value> {
    seen.forms.lock().expect("lock").push(form);
    Json(json!({"access_token": "opaque-token", "token_type": "Bearer", "expires_in": 300}))
}

async fn smart_config(State(seen): State<Seen>) -> axum::response::Response {
    use axum::response::IntoResponse;
    match seen.smart_config.lock().expect("lock").clone() {
        Some(doc) => Json(doc).into_response(),
        None => axum::http::StatusCode::NOT_FOUND.into_response(),
    }
}

/// Starts the server; returns its base URL (`http://127.0.0.1:port`).
async fn server(seen: Seen) -> String {
    let app = Router::new()
        .route("/token", post(token))
        .route("/fhir/.well-known/smart-configuration", get(smart_config))
        .with_state(seen);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    format!("http://{addr}")
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).expect("after 1970").as_secs()
}

/// Verifies the assertion with the public key and checks every SMART rule.
fn check_assertion(form: &HashMap<String, String>, keys: &Keys, alg: Algorithm, token_url: &str) -> String {
    assert_eq!(form.get("grant_type").map(String::as_str), Some("client_credentials"));
    assert_eq!(form.get("client_assertion_type").map(String::as_str), Some(CLIENT_ASSERTION_TYPE));
    assert_eq!(form.get("scope").map(String::as_str), Some("system/Observation.rs system/Patient.rs"));
    assert!(!form.contains_key("client_secret"));
    let assertion = form.get("client_assertion").expect("client_assertion sent");
    let header = jsonwebtoken::decode_header(assertion).expect("a JWT");
    assert_eq!(header.alg, alg);
    assert_eq!(header.kid.as_deref(), Some("key-1"));
    assert_eq!(header.typ.as_deref(), Some("JWT"));
    let key = match alg {
        Algorithm::RS384 => DecodingKey::from_rsa_pem(keys.public.as_bytes()),
        _ => DecodingKey::from_ec_pem(keys.public.as_bytes()),
    }
    .expect("public key");
    let mut validation = Validation::new(alg);
    validation.set_audience(&[token_url]);
    validation.set_issuer(&["backend-client"]);
    validation.set_required_spec_claims(&["exp", "iss", "sub", "aud"]);
    let claims =
        jsonwebtoken::decode::<Value>(assertion, &key, &validation).expect("signature verifies").claims;
    assert_eq!(claims["sub"], "backend-client");
    let exp = claims["exp"].as_u64().expect("numeric exp");
    assert!(exp > now() && exp <= now() + 300, "exp {exp} must be at most 5 minutes ahead");
    claims["jti"].as_str().expect("jti").to_owned()
}

fn source(keys_pem: &str, alg: SigningAlgorithm, token_url: &str) -> auth_core::Result<SmartSource> {
    SmartSource::builder("backend-client", PrivateKeyPem::new(keys_pem), alg, "key-1")
        .token_url(token_url)
        .scopes(["system/Patient.rs", "system/Observation.rs"])
        .build()
}

#[tokio::test]
async fn every_pem_form_signs_a_verifiable_assertion_with_a_new_jti_each_time() {
    let seen = Seen::default();
    let base = server(seen.clone()).await;
    let token_url = format!("{base}/token");
    for (alg, jose) in
        [(SigningAlgorithm::Rs384, Algorithm::RS384), (SigningAlgorithm::Es384, Algorithm::ES384)]
    {
        let keys = keys(alg);
        for pem in [&keys.pkcs8, &keys.traditional] {
            let source = source(pem, alg, &token_url).expect("key accepted");
            assert!(!format!("{source:?}").contains("PRIVATE"), "Debug must not print the key");
            let ctx = FetchContext::default();
            // Two fetches straight from the source: two assertions.
            source.fetch(&ctx).await.expect("token");
            source.fetch(&ctx).await.expect("token");
            let forms: Vec<_> = seen.forms.lock().expect("lock").drain(..).collect();
            assert_eq!(forms.len(), 2);
            let a = check_assertion(&forms[0], &keys, jose, &token_url);
            let b = check_assertion(&forms[1], &keys, jose, &token_url);
            assert_ne!(a, b, "every token request needs a fresh jti");
        }
    }
}

/// The assertion's `exp` stays well inside SMART's five minutes (a client clock a
/// minute ahead must not turn every fetch into `invalid_client`), and its `aud` is
/// the token URL exactly as configured, not a normalised rewrite of it.
#[tokio::test]
async fn the_assertion_keeps_a_margin_and_names_the_token_url_as_given() {
    let seen = Seen::default();
    let base = server(seen.clone()).await;
    // Reaches /token, but spelled unlike Url's normal form.
    let as_given = format!("{base}/fhir/../token");
    let keys = keys(SigningAlgorithm::Es384);
    let source = source(&keys.pkcs8, SigningAlgorithm::Es384, &as_given).expect("key accepted");
    source.fetch(&FetchContext::default()).await.expect("token");
    let form = seen.forms.lock().expect("lock").pop().expect("a token request");
    let claims = Value::Object(
        auth_core::token::jwt_claims(form.get("client_assertion").expect("sent")).expect("a JWT"),
    );
    assert_eq!(claims["aud"], as_given.as_str(), "aud exactly as configured");
    let (iat, exp) = (claims["iat"].as_u64().expect("iat"), claims["exp"].as_u64().expect("exp"));
    assert!(exp > iat && exp - iat <= 120, "exp {} s after iat: leave a margin inside 300 s", exp - iat);
}

#[tokio::test]
async fn works_through_the_token_manager() {
    let seen = Seen::default();
    let base = server(seen.clone()).await;
    let keys = keys(SigningAlgorithm::Es384);
    let manager =
        TokenManager::new(source(&keys.pkcs8, SigningAlgorithm::Es384, &format!("{base}/token")).unwrap());
    let token = manager.token().await.expect("token");
    assert_eq!(token.access_token().expose_secret(), "opaque-token");
    assert_eq!(seen.forms.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn bad_keys_are_configuration_errors_at_build() {
    let url = "https://idp.example/token";
    let rsa = keys(SigningAlgorithm::Rs384);
    let ec = keys(SigningAlgorithm::Es384);
    let garbage = "-----BEGIN PRIVATE KEY-----\nbm90IGEga2V5IGF0IGFsbA==\n-----END PRIVATE KEY-----\n";
    let cases = [
        ("garbage", garbage, SigningAlgorithm::Rs384),
        ("garbage", garbage, SigningAlgorithm::Es384),
        ("not pem", "hello", SigningAlgorithm::Es384),
        ("EC key for RS384 (pkcs8)", &ec.pkcs8, SigningAlgorithm::Rs384),
        ("EC key for RS384 (sec1)", &ec.traditional, SigningAlgorithm::Rs384),
        ("RSA key for ES384 (pkcs8)", &rsa.pkcs8, SigningAlgorithm::Es384),
        ("RSA key for ES384 (pkcs1)", &rsa.traditional, SigningAlgorithm::Es384),
        ("public key", &rsa.public, SigningAlgorithm::Rs384),
    ];
    for (what, pem, alg) in cases {
        let err = source(pem, alg, url).err().unwrap_or_else(|| panic!("{what} accepted"));
        assert_eq!(err.kind(), ErrorKind::Configuration, "{what}: {err}");
        assert!(!err.to_string().contains("bm90"), "{what}: the key text leaked: {err}");
        assert!(!format!("{err:?}").contains("MII"), "{what}: the key text leaked");
    }
    // The other configuration rules.
    let no_scope =
        SmartSource::builder("c", PrivateKeyPem::new(ec.pkcs8.as_str()), SigningAlgorithm::Es384, "k")
            .token_url(url)
            .build();
    assert!(no_scope.err().is_some_and(|e| e.to_string().contains("scope")));
    let nowhere =
        SmartSource::builder("c", PrivateKeyPem::new(ec.pkcs8.as_str()), SigningAlgorithm::Es384, "k")
            .scopes(["system/*.rs"])
            .build();
    assert!(nowhere.err().is_some_and(|e| e.kind() == ErrorKind::Configuration));
    let no_kid =
        SmartSource::builder("c", PrivateKeyPem::new(ec.pkcs8.as_str()), SigningAlgorithm::Es384, " ")
            .token_url(url)
            .scopes(["system/*.rs"])
            .build();
    assert!(no_kid.err().is_some_and(|e| e.to_string().contains("kid")));
}

fn discovering(pem: &str, alg: SigningAlgorithm, base: &str) -> SmartSource {
    SmartSource::builder("backend-client", PrivateKeyPem::new(pem), alg, "key-1")
        .fhir_base(format!("{base}/fhir/"))
        .scopes(["system/Patient.rs", "system/Observation.rs"])
        .build()
        .expect("builds without contacting the server")
}

#[tokio::test]
async fn discovery_finds_the_token_endpoint_and_fails_clearly() {
    let seen = Seen::default();
    let base = server(seen.clone()).await;
    let token_url = format!("{base}/token");
    let keys = keys(SigningAlgorithm::Es384);
    let ctx = FetchContext::default();

    // No document: a configuration error that says so.
    let err = discovering(&keys.pkcs8, SigningAlgorithm::Es384, &base).fetch(&ctx).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Configuration, "{err}");
    assert!(err.to_string().contains("404"), "{err}");

    // private_key_jwt not offered.
    *seen.smart_config.lock().unwrap() = Some(json!({
        "token_endpoint": token_url,
        "token_endpoint_auth_methods_supported": ["client_secret_basic"],
        "token_endpoint_auth_signing_alg_values_supported": ["ES384"],
    }));
    let err = discovering(&keys.pkcs8, SigningAlgorithm::Es384, &base).fetch(&ctx).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Configuration);
    assert!(err.to_string().contains("private_key_jwt"), "{err}");

    // The chosen algorithm not offered.
    *seen.smart_config.lock().unwrap() = Some(json!({
        "token_endpoint": token_url,
        "token_endpoint_auth_methods_supported": ["private_key_jwt"],
        "token_endpoint_auth_signing_alg_values_supported": ["RS384"],
    }));
    let err = discovering(&keys.pkcs8, SigningAlgorithm::Es384, &base).fetch(&ctx).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Configuration);
    assert!(err.to_string().contains("ES384") && err.to_string().contains("RS384"), "{err}");

    // A document without a token endpoint.
    *seen.smart_config.lock().unwrap() = Some(json!({"issuer": base}));
    let err = discovering(&keys.pkcs8, SigningAlgorithm::Es384, &base).fetch(&ctx).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidResponse, "{err}");

    // A good document: the token comes from the discovered endpoint, `aud` is it.
    *seen.smart_config.lock().unwrap() = Some(json!({
        "token_endpoint": token_url,
        "token_endpoint_auth_methods_supported": ["private_key_jwt", "client_secret_basic"],
        "token_endpoint_auth_signing_alg_values_supported": ["RS384", "ES384"],
        "grant_types_supported": ["client_credentials"],
    }));
    let source = discovering(&keys.pkcs8, SigningAlgorithm::Es384, &base);
    assert!(source.token_url().is_none());
    source.fetch(&ctx).await.expect("token");
    assert_eq!(source.token_url().map(|u| u.as_str()), Some(token_url.as_str()));
    let form = seen.forms.lock().unwrap().pop().expect("a token request");
    check_assertion(&form, &keys, Algorithm::ES384, &token_url);
}

#[test]
fn configuration_document_parsing() {
    assert_eq!(SmartConfiguration::from_json(b"<html>").unwrap_err().kind(), ErrorKind::InvalidResponse);
    assert_eq!(SmartConfiguration::from_json(b"[1]").unwrap_err().kind(), ErrorKind::InvalidResponse);
    assert!(SmartConfiguration::from_json(br#"{"token_endpoint": 7}"#).is_err());
    let doc = SmartConfiguration::from_json(br#"{"token_endpoint":"https://idp/token"}"#).unwrap();
    // Lists SMART makes mandatory are not guessed.
    let err = doc.check(SigningAlgorithm::Rs384).unwrap_err();
    assert!(err.to_string().contains("missing"), "{err}");
    let grants = SmartConfiguration::from_json(
        br#"{"token_endpoint":"https://idp/token","token_endpoint_auth_methods_supported":["private_key_jwt"],
            "token_endpoint_auth_signing_alg_values_supported":["RS384"],"grant_types_supported":["authorization_code"]}"#,
    )
    .unwrap();
    assert!(grants.check(SigningAlgorithm::Rs384).unwrap_err().to_string().contains("client_credentials"));
    assert_eq!(SigningAlgorithm::parse("ES384").unwrap(), SigningAlgorithm::Es384);
    assert!(SigningAlgorithm::parse("HS256").is_err());
}

/// The SMART emulator's own rules, spoken to with this source and by hand.
mod against_the_emulator {
    use auth_core::{CredentialSource, ErrorKind, FetchContext};
    use auth_providers::smart::{CLIENT_ASSERTION_TYPE, SigningAlgorithm, SmartSource};
    use auth_sandbox::{Sandbox, SandboxConfig};
    use serde_json::Value;

    async fn post(url: &str, form: &[(&str, &str)]) -> (u16, Value) {
        let body: String = form_urlencoded::Serializer::new(String::new()).extend_pairs(form).finish();
        let response = reqwest::Client::new()
            .post(url)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    #[tokio::test]
    async fn discovery_token_and_api() {
        let sandbox = Sandbox::start(SandboxConfig::default()).await.unwrap();
        let smart = sandbox.smart();
        let source = SmartSource::builder(
            smart.client_id(),
            smart.private_key(),
            SigningAlgorithm::Es384,
            smart.key_id(),
        )
        .fhir_base(smart.fhir_base())
        .scopes(["system/Patient.rs"])
        .build()
        .unwrap();
        let token = source.fetch(&FetchContext::default()).await.unwrap();
        assert_eq!(source.token_url().map(|u| u.to_string()), Some(smart.token_url()));
        assert_eq!(token.scope(), Some("system/Patient.rs"));
        let api = reqwest::Client::new();
        let url = format!("{}/Patient/pat-1", smart.fhir_base());
        let ok = api.get(&url).bearer_auth(token.access_token().expose_secret()).send().await.unwrap();
        assert_eq!(ok.status(), 200);
        smart.revoke_all();
        let refused = api.get(&url).bearer_auth(token.access_token().expose_secret()).send().await.unwrap();
        assert_eq!(refused.status(), 401);
        let challenge = refused.headers().get("www-authenticate").unwrap().to_str().unwrap();
        assert!(challenge.contains(r#"error="invalid_token""#), "{challenge}");
        assert_eq!(smart.api_rejections(), 1);
        assert_eq!(smart.token_requests(), 1);
    }

    async fn send(url: &str, form: [(&'static str, String); 4]) -> (u16, Value) {
        let pairs: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
        post(url, &pairs).await
    }

    #[tokio::test]
    async fn bad_assertions_are_refused() {
        let sandbox = Sandbox::start(SandboxConfig::default()).await.unwrap();
        let smart = sandbox.smart();
        let url = smart.token_url();
        let source = SmartSource::builder(
            smart.client_id(),
            smart.private_key(),
            SigningAlgorithm::Es384,
            smart.key_id(),
        )
        .token_url(smart.token_url())
        .scopes(["system/Patient.rs"])
        .build()
        .unwrap();
        let assertion = source.sign_assertion(&url).unwrap();
        let form = |assertion: &str, scope: &'static str| {
            [
                ("grant_type", "client_credentials"),
                ("scope", scope),
                ("client_assertion_type", CLIENT_ASSERTION_TYPE),
                ("client_assertion", assertion),
            ]
            .map(|(k, v)| (k, v.to_owned()))
        };
        let (status, body) = send(&url, form(&assertion, "system/Patient.rs")).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["token_type"], "bearer");
        // The same assertion again: a replayed jti.
        let (status, body) = send(&url, form(&assertion, "system/Patient.rs")).await;
        assert_eq!((status, body["error"].as_str()), (401, Some("invalid_client")));
        // Signed for another audience.
        let elsewhere = source.sign_assertion("https://elsewhere.example/token").unwrap();
        let (status, _) = send(&url, form(&elsewhere, "system/Patient.rs")).await;
        assert_eq!(status, 401);
        // Unknown kid.
        let other_kid =
            SmartSource::builder(smart.client_id(), smart.private_key(), SigningAlgorithm::Es384, "other")
                .token_url(smart.token_url())
                .scopes(["system/Patient.rs"])
                .build()
                .unwrap();
        let err = other_kid.fetch(&FetchContext::default()).await.unwrap_err();
        assert_eq!(err.oauth_error().map(|e| e.status), Some(401), "{err}");
        // A user scope.
        let fresh = source.sign_assertion(&url).unwrap();
        let (status, body) = send(&url, form(&fresh, "user/Patient.rs")).await;
        assert_eq!((status, body["error"].as_str()), (400, Some("invalid_scope")));
        // Not a JWT at all.
        let (status, _) = send(&url, form("not-a-jwt", "system/Patient.rs")).await;
        assert_eq!(status, 401);
        assert_eq!(smart.token_requests(), 6);
        let statuses: Vec<u16> = smart.token_log().iter().map(|r| r.status).collect();
        assert_eq!(statuses, [200, 401, 401, 401, 400, 401]);
        assert_eq!(err.kind(), ErrorKind::OAuth);
    }
}
