//! DPoP (RFC 9449) against a real authorization server, oidc-provider 9.13.3
//! (the conformance suite's, with `features.dPoP` on, nonces from a 32-byte
//! secret, and required for one client), and against a resource server of our
//! own that verifies proofs as RFC 9449 §4.3 says and asks oidc-provider
//! (RFC 7662 introspection) which key each token is bound to.
//!
//! Proven: tokens bound to our key (`cnf.jkt` in the introspection equals our
//! thumbprint) with ES256, RS256 and PS256 proofs; the token endpoint's nonce
//! challenge answered by exactly one retry, with a new assertion under
//! `private_key_jwt`; the resource server's nonce challenge answered by exactly
//! one retry with a new proof; replayed proofs refused by both servers; a DPoP
//! token refused by a source without DPoP, and a bearer token by one with it;
//! the tower layer and the reqwest middleware proving the key as `AuthClient` does.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use auth_core::dpop::Dpop;
use auth_core::keys::{Jwk, JwsAlgorithm, PrivateKey, jwk_thumbprint, sha256_base64url};
use auth_core::oauth2::OAuth2Source;
use auth_core::{
    AuthClient, ClientSecret, CredentialSource, EndpointOptions, ErrorKind, FetchContext, PrivateKeyPem,
    ResponseProblem, TokenManager,
};
use auth_providers::smart::{CLIENT_ASSERTION_TYPE, SigningAlgorithm, SmartSource};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use crate::conformance::{FORM, OidcServer, form, shared_server};

/// A `client_secret_basic` client whose tokens are opaque (introspectable).
pub(crate) const CLIENT: &str = "dpop-client";
pub(crate) const SECRET: &str = "dpop-secret-0123456789";
/// A `private_key_jwt` client whose proofs must carry the server's nonce.
pub(crate) const NONCE_CLIENT: &str = "dpop-nonce-client";
const SCOPE: &str = "system/Patient.rs";

fn source(server: &OidcServer, dpop: Option<Dpop>) -> OAuth2Source {
    let mut b = OAuth2Source::builder(server.token_url(), CLIENT, ClientSecret::new(SECRET)).scopes([SCOPE]);
    if let Some(dpop) = dpop {
        b = b.dpop(dpop);
    }
    b.build().expect("valid configuration")
}

/// RFC 7662: what oidc-provider knows of `token`.
async fn introspect(server: &OidcServer, token: &str) -> Value {
    reqwest::Client::new()
        .post(format!("{}/token/introspection", server.issuer))
        .basic_auth("opaque-basic-client", Some("basic-secret-0123456789"))
        .header("content-type", FORM)
        .body(form(&[("token", token)]))
        .send()
        .await
        .expect("introspection")
        .json()
        .await
        .expect("JSON")
}

/// Token requests oidc-provider saw with a proof of `dpop`'s key.
async fn token_requests(server: &OidcServer, dpop: &Dpop) -> u64 {
    let jwk = serde_json::to_value(dpop.key().public_jwk()).expect("a JWK");
    let id = jwk.get("x").or_else(|| jwk.get("n")).and_then(Value::as_str).expect("x or n").to_owned();
    let answer: Value = reqwest::get(format!("{}/__test/dpop-requests/{id}", server.issuer))
        .await
        .expect("test route")
        .json()
        .await
        .expect("JSON");
    answer["count"].as_u64().expect("a count")
}

#[tokio::test]
async fn tokens_are_bound_to_our_key_with_every_proof_algorithm() {
    let server = shared_server();
    for alg in [JwsAlgorithm::Es256, JwsAlgorithm::Rs256, JwsAlgorithm::Ps256] {
        let dpop = Dpop::new(PrivateKey::generate(alg).expect("a key"));
        let manager = TokenManager::new(source(server, Some(dpop.clone())));
        assert_eq!(manager.cache_key().dpop_jkt(), Some(dpop.thumbprint()), "{alg}");
        let token = manager.token().await.unwrap_or_else(|e| panic!("{alg}: {e}"));
        assert_eq!(token.token_type(), "DPoP", "{alg}");
        assert!(token.authorization_header().to_str().expect("ASCII").starts_with("DPoP "));
        let answer = introspect(server, token.access_token().expose_secret()).await;
        assert_eq!(answer["active"], true, "{alg}: {answer}");
        assert_eq!(answer["token_type"], "DPoP", "{alg}: {answer}");
        assert_eq!(answer["cnf"]["jkt"], dpop.thumbprint(), "{alg}: bound to another key: {answer}");
    }
    // Without DPoP, the same client gets a bearer token with no binding: the
    // binding above is the proof's doing.
    let token = TokenManager::new(source(server, None)).token().await.expect("a bearer token");
    let answer = introspect(server, token.access_token().expose_secret()).await;
    assert_eq!(token.token_type(), "Bearer");
    assert!(answer.get("cnf").is_none(), "{answer}");
}

#[tokio::test]
async fn the_token_endpoints_nonce_is_answered_by_one_retry_with_a_new_assertion() {
    let server = shared_server();
    let smart = |dpop: Dpop| {
        SmartSource::builder(
            NONCE_CLIENT,
            PrivateKeyPem::new(server.es384.private.as_str()),
            SigningAlgorithm::Es384,
            "es-key",
        )
        .token_url(server.token_url())
        .scopes([SCOPE])
        .dpop(dpop)
        .build()
        .expect("valid configuration")
    };

    // The challenge is real: a proof without a nonce is refused with one.
    let bare = Dpop::generate().expect("a key");
    let url = reqwest::Url::parse(&server.token_url()).expect("URL");
    let assertion = smart(bare.clone()).sign_assertion(&server.token_url()).expect("an assertion");
    let refused = reqwest::Client::new()
        .post(server.token_url())
        .header("content-type", FORM)
        .header("dpop", bare.proof(&Method::POST, &url, None).expect("a proof"))
        .body(form(&[
            ("grant_type", "client_credentials"),
            ("scope", SCOPE),
            ("client_assertion_type", CLIENT_ASSERTION_TYPE),
            ("client_assertion", assertion.as_str()),
        ]))
        .send()
        .await
        .expect("token request");
    assert_eq!(refused.status(), 400);
    assert!(refused.headers().contains_key("dpop-nonce"), "{:?}", refused.headers());
    let body: Value = refused.json().await.expect("JSON");
    assert_eq!(body["error"], "use_dpop_nonce", "{body}");

    // Our source: the challenge, one retry with the nonce and a new assertion
    // (the first one's jti is spent: re-sending it would be invalid_client).
    let dpop = Dpop::generate().expect("a key");
    let source = smart(dpop.clone());
    let token = source.fetch(&FetchContext::default()).await.expect("a token after one retry");
    assert_eq!(token.token_type(), "DPoP");
    assert_eq!(token_requests(server, &dpop).await, 2, "the challenge, then exactly one retry");
    assert!(dpop.nonce(&url).is_some(), "the nonce is kept for the token endpoint's origin");
    let answer = introspect(server, token.access_token().expose_secret()).await;
    assert_eq!(answer["cnf"]["jkt"], dpop.thumbprint(), "{answer}");
    // The kept nonce is sent at once: no second challenge.
    source.fetch(&FetchContext::default()).await.expect("a second token");
    assert_eq!(token_requests(server, &dpop).await, 3);
}

#[tokio::test]
async fn a_replayed_proof_is_refused_by_the_token_endpoint() {
    let server = shared_server();
    let dpop = Dpop::generate().expect("a key");
    let url = reqwest::Url::parse(&server.token_url()).expect("URL");
    let proof = dpop.proof(&Method::POST, &url, None).expect("a proof");
    let post = |proof: HeaderValue| {
        reqwest::Client::new()
            .post(server.token_url())
            .basic_auth(CLIENT, Some(SECRET))
            .header("content-type", FORM)
            .header("dpop", proof)
            .body(form(&[("grant_type", "client_credentials"), ("scope", SCOPE)]))
            .send()
    };
    let first = post(proof.clone()).await.expect("first POST");
    assert_eq!(first.status(), 200, "the first use is accepted");
    let second = post(proof).await.expect("second POST");
    assert_eq!(second.status(), 400, "a replayed proof must be refused");
    // oidc-provider says only `invalid_grant` ("DPoP proof JWT Replay detected"
    // stays in its log).
    let body: Value = second.json().await.expect("JSON");
    assert_eq!(body["error"], "invalid_grant", "{body}");
    // The same request with a new proof goes through: the replay was refused.
    let fresh = post(dpop.proof(&Method::POST, &url, None).expect("a proof")).await.expect("third POST");
    assert_eq!(fresh.status(), 200);
}

/// A token endpoint on loopback answering with `body`: a real answer of
/// oidc-provider's, handed to a source it was not meant for.
async fn serving(body: String) -> String {
    let app = axum::Router::new().route(
        "/token",
        axum::routing::post(move || {
            let body = body.clone();
            async move { ([("content-type", "application/json")], body) }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}/token", listener.local_addr().expect("address"));
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}

#[tokio::test]
async fn a_dpop_token_is_refused_without_dpop_and_a_bearer_token_with_it() {
    let server = shared_server();
    let url = reqwest::Url::parse(&server.token_url()).expect("URL");
    let raw = |proof: Option<HeaderValue>| async move {
        let mut request = reqwest::Client::new()
            .post(server.token_url())
            .basic_auth(CLIENT, Some(SECRET))
            .header("content-type", FORM)
            .body(form(&[("grant_type", "client_credentials"), ("scope", SCOPE)]));
        if let Some(proof) = proof {
            request = request.header("dpop", proof);
        }
        request.send().await.expect("token request").text().await.expect("body")
    };
    let dpop = Dpop::generate().expect("a key");
    let bound = raw(Some(dpop.proof(&Method::POST, &url, None).expect("a proof"))).await;
    assert!(bound.contains(r#""token_type":"DPoP""#), "{bound}");
    let bearer = raw(None).await;
    assert!(bearer.contains(r#""token_type":"Bearer""#), "{bearer}");

    let without = OAuth2Source::builder(serving(bound).await, CLIENT, ClientSecret::new(SECRET))
        .build()
        .expect("valid configuration");
    let err = without.fetch(&FetchContext::default()).await.expect_err("a DPoP token without DPoP");
    assert_eq!(err.kind(), ErrorKind::InvalidResponse, "{err}");
    assert_eq!(err.response_problem(), Some(&ResponseProblem::UnexpectedDpopToken));
    assert!(err.to_string().contains("turn DPoP on"), "{err}");

    let bearer_url = serving(bearer).await;
    let with = |dpop: Dpop| {
        OAuth2Source::builder(bearer_url.clone(), CLIENT, ClientSecret::new(SECRET))
            .dpop(dpop)
            .build()
            .expect("valid configuration")
    };
    let err = with(Dpop::generate().expect("a key"))
        .fetch(&FetchContext::default())
        .await
        .expect_err("a bearer token with DPoP");
    assert!(matches!(err.response_problem(), Some(ResponseProblem::UnboundToken { .. })), "{err:?}");
    let allowed = with(Dpop::generate().expect("a key").allow_bearer(true))
        .fetch(&FetchContext::default())
        .await
        .expect("allowed");
    assert!(!allowed.is_dpop());
}

/// What the resource server saw of one request.
#[derive(Debug, Clone)]
struct Seen {
    jti: String,
    nonce: Option<String>,
    status: u16,
}

/// A FHIR-ish resource server that accepts only DPoP-bound tokens, proven.
struct ResourceServer {
    base: String,
    issuer: String,
    /// The nonce it requires (RFC 9449 §9), if any.
    nonce: Option<String>,
    jtis: Mutex<HashSet<String>>,
    log: Mutex<Vec<Seen>>,
}

impl ResourceServer {
    async fn start(issuer: &str, nonce: Option<&str>) -> Arc<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("address"));
        let rs = Arc::new(Self {
            base,
            issuer: issuer.to_owned(),
            nonce: nonce.map(str::to_owned),
            jtis: Mutex::default(),
            log: Mutex::default(),
        });
        let app = axum::Router::new()
            .route("/fhir/Patient/{id}", axum::routing::get(patient))
            .with_state(rs.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        rs
    }

    fn log(&self) -> Vec<Seen> {
        self.log.lock().expect("log").clone()
    }

    /// RFC 9449 §4.3 and §7.1, in order; the error code and description of the
    /// first check that fails.
    async fn check(&self, path: &str, headers: &HeaderMap) -> Result<(String, Option<String>), Refusal> {
        let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
        let token = text("authorization")
            .and_then(|a| a.strip_prefix("DPoP ").map(str::to_owned))
            .ok_or(Refusal::token("not a DPoP token"))?;
        let proof = text("dpop").ok_or(Refusal::proof("no DPoP proof"))?;
        let header = jsonwebtoken::decode_header(&proof).map_err(|_| Refusal::proof("not a JWT"))?;
        if header.typ.as_deref() != Some("dpop+jwt") {
            return Err(Refusal::proof("typ is not dpop+jwt"));
        }
        let jwk: Jwk = header.jwk.clone().ok_or(Refusal::proof("no jwk"))?;
        let key = jsonwebtoken::DecodingKey::from_jwk(&jwk).map_err(|_| Refusal::proof("bad jwk"))?;
        let mut validation = jsonwebtoken::Validation::new(header.alg);
        validation.validate_exp = false;
        validation.validate_aud = false;
        validation.required_spec_claims.clear();
        let claims = jsonwebtoken::decode::<Value>(&proof, &key, &validation)
            .map_err(|_| Refusal::proof("the signature does not verify"))?
            .claims;
        let claim = |name: &str| claims[name].as_str().map(str::to_owned);
        if claim("htm").as_deref() != Some("GET") {
            return Err(Refusal::proof("htm mismatch"));
        }
        if claim("htu") != Some(format!("{}{path}", self.base)) {
            return Err(Refusal::proof("htu mismatch"));
        }
        if claim("ath") != Some(sha256_base64url(token.as_bytes())) {
            return Err(Refusal::proof("ath mismatch"));
        }
        let now = SystemTime::now().duration_since(UNIX_EPOCH).expect("after 1970").as_secs();
        if claims["iat"].as_u64().is_none_or(|iat| now.abs_diff(iat) > 60) {
            return Err(Refusal::proof("iat is not recent"));
        }
        let jti = claim("jti").ok_or(Refusal::proof("no jti"))?;
        if !self.jtis.lock().expect("jtis").insert(jti.clone()) {
            return Err(Refusal::proof("replayed proof"));
        }
        let nonce = claim("nonce");
        if self.nonce.is_some() && nonce != self.nonce {
            return Err(Refusal {
                jti: Some(jti),
                nonce,
                ..Refusal::new("use_dpop_nonce", "a nonce is required")
            });
        }
        let answer: Value = reqwest::Client::new()
            .post(format!("{}/token/introspection", self.issuer))
            .basic_auth("opaque-basic-client", Some("basic-secret-0123456789"))
            .header("content-type", FORM)
            .body(form(&[("token", token.as_str())]))
            .send()
            .await
            .map_err(|_| Refusal::token("introspection failed"))?
            .json()
            .await
            .map_err(|_| Refusal::token("introspection failed"))?;
        if answer["active"] != true || answer["cnf"]["jkt"] != jwk_thumbprint(&jwk) {
            return Err(Refusal::token("the token is not bound to the proof's key"));
        }
        Ok((jti, nonce))
    }
}

struct Refusal {
    error: &'static str,
    description: &'static str,
    jti: Option<String>,
    nonce: Option<String>,
}

impl Refusal {
    fn new(error: &'static str, description: &'static str) -> Self {
        Self { error, description, jti: None, nonce: None }
    }
    fn proof(description: &'static str) -> Self {
        Self::new("invalid_dpop_proof", description)
    }
    fn token(description: &'static str) -> Self {
        Self::new("invalid_token", description)
    }
}

async fn patient(
    State(rs): State<Arc<ResourceServer>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let path = format!("/fhir/Patient/{id}");
    match rs.check(&path, &headers).await {
        Ok((jti, nonce)) => {
            rs.log.lock().expect("log").push(Seen { jti, nonce, status: 200 });
            (
                [("content-type", "application/fhir+json")],
                format!(r#"{{"resourceType":"Patient","id":"{id}"}}"#),
            )
                .into_response()
        }
        Err(refusal) => {
            rs.log.lock().expect("log").push(Seen {
                jti: refusal.jti.unwrap_or_default(),
                nonce: refusal.nonce,
                status: 401,
            });
            let challenge = format!(
                r#"DPoP error="{}", error_description="{}", algs="ES256""#,
                refusal.error, refusal.description
            );
            let mut response = (StatusCode::UNAUTHORIZED, [("www-authenticate", challenge)]).into_response();
            if let Some(nonce) = &rs.nonce {
                response.headers_mut().insert("dpop-nonce", HeaderValue::from_str(nonce).expect("a nonce"));
            }
            response
        }
    }
}

#[tokio::test]
async fn api_requests_prove_the_key_and_answer_the_resource_servers_nonce_once() {
    let server = shared_server();
    let rs = ResourceServer::start(&server.issuer, Some("rs-nonce-1")).await;
    let dpop = Dpop::generate().expect("a key");
    let client = AuthClient::new(TokenManager::new(source(server, Some(dpop.clone())))).expect("a client");
    let url = format!("{}/fhir/Patient/7?_elements=id#top", rs.base);

    let response = client.get(&url).send().await.expect("a response");
    assert_eq!(response.status(), 200, "{:?}", rs.log());
    let log = rs.log();
    assert_eq!(log.len(), 2, "the challenge, then exactly one retry: {log:?}");
    assert_eq!((log[0].status, log[0].nonce.as_deref()), (401, None));
    assert_eq!((log[1].status, log[1].nonce.as_deref()), (200, Some("rs-nonce-1")));
    assert_ne!(log[0].jti, log[1].jti, "a new proof for the retry");

    // The nonce is kept for the origin: the next call goes through at once.
    let response = client.get(format!("{}/fhir/Patient/8", rs.base)).send().await.expect("a response");
    assert_eq!(response.status(), 200);
    assert_eq!(rs.log().len(), 3);

    // A proof sent twice is refused the second time.
    let token = client.authenticator().token().await.expect("the cached token");
    let target = reqwest::Url::parse(&format!("{}/fhir/Patient/9", rs.base)).expect("URL");
    let proof = dpop.proof(&Method::GET, &target, Some(token.access_token())).expect("a proof");
    let send = || {
        reqwest::Client::new()
            .get(target.clone())
            .header("authorization", token.authorization_header())
            .header("dpop", proof.clone())
            .send()
    };
    assert_eq!(send().await.expect("first").status(), 200);
    let replayed = send().await.expect("second");
    assert_eq!(replayed.status(), 401);
    let challenge = replayed.headers()["www-authenticate"].to_str().expect("ASCII").to_owned();
    assert!(challenge.contains("replayed proof"), "{challenge}");

    // A token bound to another key is refused, however good its proof.
    let other = Dpop::generate().expect("a key");
    let proof = other.proof(&Method::GET, &target, Some(token.access_token())).expect("a proof");
    let stolen = reqwest::Client::new()
        .get(target.clone())
        .header("authorization", token.authorization_header())
        .header("dpop", proof)
        .send()
        .await
        .expect("a response");
    assert_eq!(stolen.status(), 401, "a leaked token is useless without its key");
}

/// The tower layer (over hyper-util's client) and the reqwest middleware run
/// the flow `AuthClient` runs: each request proven, the resource server's nonce
/// challenge answered by exactly one retry with a new proof, the nonce kept for
/// its origin; a nonce challenge is no rejected token.
#[tokio::test]
async fn the_tower_layer_and_the_middleware_prove_the_key_and_answer_the_nonce_once() {
    use auth_core::middleware::AuthMiddleware;
    use auth_core::tower::AuthLayer;
    use bytes::Bytes;
    use http_body_util::Full;
    use hyper_util::client::legacy::Client;
    use hyper_util::rt::TokioExecutor;
    use tower::{Layer, ServiceExt};

    fn assert_one_retry(log: &[Seen], nonce: &str) {
        assert_eq!(log.len(), 2, "the challenge, then exactly one retry: {log:?}");
        assert_eq!((log[0].status, log[0].nonce.as_deref()), (401, None));
        assert_eq!((log[1].status, log[1].nonce.as_deref()), (200, Some(nonce)));
        assert_ne!(log[0].jti, log[1].jti, "a new proof for the retry");
    }

    let server = shared_server();
    let dpop = Dpop::generate().expect("a key");
    let manager = TokenManager::new(source(server, Some(dpop.clone())));

    // tower: hyper-util's client under the layer.
    let rs = ResourceServer::start(&server.issuer, Some("rs-nonce-tower")).await;
    let hyper = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let service = AuthLayer::new(manager.clone()).layer(hyper);
    let get = |url: String| http::Request::get(url).body(Full::<Bytes>::default()).expect("a request");
    let response = service
        .clone()
        .oneshot(get(format!("{}/fhir/Patient/7?_elements=id", rs.base)))
        .await
        .expect("a response");
    assert_eq!(response.status(), 200, "{:?}", rs.log());
    assert_one_retry(&rs.log(), "rs-nonce-tower");
    let response =
        service.clone().oneshot(get(format!("{}/fhir/Patient/8", rs.base))).await.expect("a response");
    assert_eq!(response.status(), 200);
    assert_eq!(rs.log().len(), 3, "the kept nonce goes at once");

    // reqwest-middleware.
    let rs = ResourceServer::start(&server.issuer, Some("rs-nonce-middleware")).await;
    let http = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
        .with(AuthMiddleware::new(manager.clone()))
        .build();
    let response = http.get(format!("{}/fhir/Patient/7#top", rs.base)).send().await.expect("a response");
    assert_eq!(response.status(), 200, "{:?}", rs.log());
    assert_one_retry(&rs.log(), "rs-nonce-middleware");
    let response = http.get(format!("{}/fhir/Patient/8", rs.base)).send().await.expect("a response");
    assert_eq!(response.status(), 200);
    assert_eq!(rs.log().len(), 3, "the kept nonce goes at once");

    let stats = manager.stats();
    assert_eq!((stats.rejections, stats.replays), (0, 0), "a nonce challenge rejects no token");
    assert_eq!(
        dpop.nonce(&reqwest::Url::parse(&rs.base).expect("URL")).as_deref(),
        Some("rs-nonce-middleware")
    );
}
