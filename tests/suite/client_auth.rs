//! Client authentication as the identity provider sees it on the wire, and the
//! transport rules of token requests.

use std::time::Duration;

use auth_core::EndpointOptions;
use auth_core::oauth2::OAuth2Source;
use auth_core::request::{BasicEncoding, ClientAuthMethod};
use auth_core::source::FetchContext;
use auth_core::{ClientSecret, CredentialSource, ErrorKind, OAuthErrorCode, ResponseProblem};
use auth_sandbox::idp::{TestIdentityProvider, TokenBehavior};
use integration_tests::serve;

const AWKWARD_ID: &str = "id: %+/= x";
const AWKWARD_SECRET: &str = "p: %+/= s";

#[tokio::test]
async fn client_secret_basic_is_encoded_per_rfc_6749_section_2_3_1() {
    let idp = TestIdentityProvider::start().await.unwrap();
    idp.register_client(AWKWARD_ID, AWKWARD_SECRET);
    let source = OAuth2Source::builder(idp.token_url(), AWKWARD_ID, ClientSecret::new(AWKWARD_SECRET))
        .build()
        .unwrap();
    source.fetch(&FetchContext::default()).await.expect("the provider decodes and accepts the credentials");
    let seen = idp.token_log().pop().unwrap();
    // On the wire: each part form-url-encoded, then joined and base64-encoded.
    assert_eq!(seen.basic_raw, Some(("id%3A+%25%2B%2F%3D+x".to_owned(), "p%3A+%25%2B%2F%3D+s".to_owned())));
    assert_eq!(seen.basic_decoded, Some((AWKWARD_ID.to_owned(), AWKWARD_SECRET.to_owned())));
    assert_eq!(seen.field("client_secret"), None, "exactly one authentication method");
    assert_eq!(seen.field("grant_type"), Some("client_credentials"));
}

#[tokio::test]
async fn raw_basic_sends_the_credentials_as_they_are() {
    let idp = TestIdentityProvider::start().await.unwrap();
    idp.register_client("raw-id", AWKWARD_SECRET);
    let source = OAuth2Source::builder(idp.token_url(), "raw-id", ClientSecret::new(AWKWARD_SECRET))
        .basic_encoding(BasicEncoding::Raw)
        .build()
        .unwrap();
    let error =
        source.fetch(&FetchContext::default()).await.expect_err("an RFC-decoding server cannot read raw `%`");
    assert_eq!(error.oauth_error().map(|e| e.code.clone()), Some(OAuthErrorCode::InvalidClient));
    let seen = idp.token_log().pop().unwrap();
    assert_eq!(seen.basic_raw, Some(("raw-id".to_owned(), AWKWARD_SECRET.to_owned())));
}

#[tokio::test]
async fn client_secret_post_and_json_bodies() {
    let idp = TestIdentityProvider::start().await.unwrap();
    idp.register_client(AWKWARD_ID, AWKWARD_SECRET);
    for (method, content_type) in [
        (ClientAuthMethod::ClientSecretPost, "application/x-www-form-urlencoded"),
        (ClientAuthMethod::JsonBody, "application/json"),
    ] {
        let source = OAuth2Source::builder(idp.token_url(), AWKWARD_ID, ClientSecret::new(AWKWARD_SECRET))
            .auth_method(method)
            .scopes(["system/Patient.rs", "system/Observation.rs"])
            .audience("https://fhir.example/r4")
            .resource("https://fhir.example/r4")
            .param("tenant", "t-1")
            .build()
            .unwrap();
        source.fetch(&FetchContext::default()).await.unwrap_or_else(|e| panic!("{method:?}: {e}"));
        let seen = idp.token_log().pop().unwrap();
        assert_eq!(seen.content_type.as_deref(), Some(content_type));
        assert_eq!(seen.authorization, None, "{method:?}: no Basic header as well");
        assert_eq!(seen.field("client_id"), Some(AWKWARD_ID));
        assert_eq!(seen.field("client_secret"), Some(AWKWARD_SECRET));
        assert_eq!(seen.field("scope"), Some("system/Patient.rs system/Observation.rs"));
        assert_eq!(seen.field("audience"), Some("https://fhir.example/r4"));
        assert_eq!(seen.field("resource"), Some("https://fhir.example/r4"));
        assert_eq!(seen.field("tenant"), Some("t-1"));
    }
}

#[tokio::test]
async fn token_requests_do_not_follow_redirects() {
    use axum::http::{StatusCode, header};
    // A server that redirects the token request (and the secret) elsewhere.
    let elsewhere = TestIdentityProvider::start().await.unwrap();
    let target = elsewhere.token_url();
    let app = axum::Router::new().route(
        "/token",
        axum::routing::post(move || {
            let target = target.clone();
            async move { (StatusCode::TEMPORARY_REDIRECT, [(header::LOCATION, target)]) }
        }),
    );
    let addr = serve(app).await;

    let (id, secret) = elsewhere.credentials();
    let source = OAuth2Source::builder(format!("http://{addr}/token"), id, secret).build().unwrap();
    let error = source.fetch(&FetchContext::default()).await.expect_err("a redirect is not a token");
    assert_eq!(error.status(), Some(307));
    assert_eq!(elsewhere.token_requests(), 0, "the secret never reached the redirect target");
}

#[tokio::test]
async fn the_response_body_is_capped() {
    let idp = TestIdentityProvider::start().await.unwrap();
    let (id, secret) = idp.credentials();
    let big = format!(r#"{{"access_token":"a","padding":"{}"}}"#, "x".repeat(2 * 1024 * 1024));
    idp.set_behavior(TokenBehavior::Raw { status: 200, content_type: "application/json".into(), body: big });
    let source = OAuth2Source::builder(idp.token_url(), id.clone(), secret.clone()).build().unwrap();
    let error = source.fetch(&FetchContext::default()).await.unwrap_err();
    assert_eq!(error.response_problem(), Some(&ResponseProblem::TooLarge { limit: 1024 * 1024 }));

    let small = OAuth2Source::builder(idp.token_url(), id, secret).max_body(100).build().unwrap();
    idp.set_behavior(TokenBehavior::Raw {
        status: 200,
        content_type: "application/json".into(),
        body: format!(r#"{{"access_token":"{}"}}"#, "a".repeat(200)),
    });
    assert_eq!(
        small.fetch(&FetchContext::default()).await.unwrap_err().response_problem(),
        Some(&ResponseProblem::TooLarge { limit: 100 })
    );
}

#[tokio::test]
async fn token_requests_time_out() {
    let idp = TestIdentityProvider::start().await.unwrap();
    idp.set_delay(Duration::from_secs(5));
    let (id, secret) = idp.credentials();
    let source = OAuth2Source::builder(idp.token_url(), id, secret)
        .timeout(Duration::from_millis(200))
        .build()
        .unwrap();
    let started = std::time::Instant::now();
    let error = source.fetch(&FetchContext::default()).await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Timeout);
    assert!(error.is_retryable());
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[tokio::test]
async fn plain_http_to_a_remote_host_is_refused_before_anything_is_sent() {
    let error = OAuth2Source::builder("http://idp.example.org/token", "c", ClientSecret::new("s"))
        .build()
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Configuration);
    assert!(error.to_string().contains("refusing plain http://"), "{error}");
}

#[tokio::test]
async fn a_streamed_body_without_length_is_capped_while_reading() {
    // No Content-Length, and no end: only a cap enforced while reading stops it
    // (a client reading it all first would never return).
    let app = axum::Router::new().route(
        "/token",
        axum::routing::post(|| async {
            let chunk = axum::body::Bytes::from(vec![b' '; 64 * 1024]);
            let endless = futures_util::stream::repeat_with(move || Ok::<_, std::io::Error>(chunk.clone()));
            axum::body::Body::from_stream(endless)
        }),
    );
    let addr = serve(app).await;
    let source =
        OAuth2Source::builder(format!("http://{addr}/token"), "c", ClientSecret::new("s")).build().unwrap();
    let error =
        tokio::time::timeout(std::time::Duration::from_secs(10), source.fetch(&FetchContext::default()))
            .await
            .expect("stopped at the cap, not after an endless body")
            .unwrap_err();
    assert_eq!(error.response_problem(), Some(&ResponseProblem::TooLarge { limit: 1024 * 1024 }));
}
