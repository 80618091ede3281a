//! The reqwest-middleware integration over real HTTP, composed with
//! reqwest-retry and reqwest-tracing: one token for many calls, one replay after
//! a rejected token, retries that each carry the current bearer, and spans that
//! never hold the token.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use auth_core::middleware::AuthMiddleware;
use auth_core::oauth2::OAuth2Source;
use auth_core::{ApiProfile, AuthClient, ErrorKind, TokenManager};
use auth_sandbox::idp::{ApiBehavior, TestIdentityProvider};
use axum::http::{HeaderMap, StatusCode, header};
use integration_tests::{serve, source};
use reqwest_middleware::{ClientBuilder, ClientWithMiddleware};
use reqwest_retry::RetryTransientMiddleware;
use reqwest_retry::policies::ExponentialBackoff;
use reqwest_tracing::TracingMiddleware;

/// Tracing outermost, retries next, authentication innermost: every attempt the
/// retry middleware makes is authenticated with the token current at that moment.
fn client(auth: AuthMiddleware) -> ClientWithMiddleware {
    let retries = ExponentialBackoff::builder()
        .retry_bounds(std::time::Duration::from_millis(1), std::time::Duration::from_millis(10))
        .build_with_max_retries(2);
    ClientBuilder::new(reqwest::Client::new())
        .with(TracingMiddleware::default())
        .with(RetryTransientMiddleware::new_with_policy(retries))
        .with(auth)
        .build()
}

#[tokio::test]
async fn many_calls_one_token_and_one_replay_after_a_rejected_token() {
    let idp = TestIdentityProvider::start().await.unwrap();
    let manager = TokenManager::new(source(&idp));
    let http =
        client(AuthMiddleware::new(manager.clone()).profile(ApiProfile::new().query("_format", "json")));
    for _ in 0..10 {
        let response = http.get(idp.api_url("Patient/1")).send().await.unwrap();
        assert_eq!(response.status(), 200);
    }
    assert_eq!((idp.token_requests(), idp.api_requests()), (1, 10), "one token for ten calls");
    assert_eq!(idp.api_log().pop().unwrap().query.as_deref(), Some("_format=json"));

    idp.revoke_all();
    let response =
        http.post(idp.api_url("Patient")).body(r#"{"resourceType":"Patient"}"#).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(idp.token_requests(), 2);
    assert_eq!(idp.api_requests(), 12, "the rejected call and its replay");
    assert_eq!(idp.api_rejections(), 1);
    assert_eq!((manager.stats().rejections, manager.stats().replays), (1, 1));
}

#[tokio::test]
async fn a_server_that_always_rejects_gets_one_replay_and_no_retry_storm() {
    let idp = TestIdentityProvider::start().await.unwrap();
    idp.set_api_behavior(ApiBehavior::RejectAll);
    let http = client(AuthMiddleware::new(TokenManager::new(source(&idp))));
    let response = http.get(idp.api_url("Patient/1")).send().await.unwrap();
    assert_eq!(response.status(), 401, "the server's answer, for error_for_status to tell");
    assert_eq!(idp.api_requests(), 2, "the call and one replay; a 401 is not retried as transient");
    assert_eq!(idp.token_requests(), 2);
}

/// A server that answers 503 to its first call, then checks the bearer with the
/// identity provider: the retry middleware's second attempt must carry it too.
#[tokio::test]
async fn a_retried_call_is_authenticated_again_with_the_cached_token() {
    let idp = Arc::new(TestIdentityProvider::start().await.unwrap());
    let calls = Arc::new(AtomicU64::new(0));
    let (counted, checker) = (calls.clone(), idp.clone());
    let app = axum::Router::new().route(
        "/flaky",
        axum::routing::get(move |headers: HeaderMap| {
            let n = counted.fetch_add(1, Ordering::SeqCst);
            let valid = headers
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| checker.registry().validate(Some(v)).is_ok());
            async move {
                match (n, valid) {
                    (0, _) => StatusCode::SERVICE_UNAVAILABLE,
                    (_, true) => StatusCode::OK,
                    (_, false) => StatusCode::UNAUTHORIZED,
                }
            }
        }),
    );
    let front = serve(app).await;
    let http = client(AuthMiddleware::new(TokenManager::new(source(&idp))));
    let response = http.get(format!("http://{front}/flaky")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(calls.load(Ordering::SeqCst), 2, "one 503, one retry");
    assert_eq!(idp.token_requests(), 1, "the retry reused the cached token");
}

#[tokio::test]
async fn without_a_token_the_middleware_fails_with_the_crate_error() {
    let idp = TestIdentityProvider::start().await.unwrap();
    let (id, _) = idp.credentials();
    let wrong =
        OAuth2Source::builder(idp.token_url(), id, auth_core::ClientSecret::new("wrong")).build().unwrap();
    let http = client(AuthMiddleware::new(TokenManager::new(wrong)));
    let error = http.get(idp.api_url("Patient/1")).send().await.unwrap_err();
    // reqwest-retry wraps what the middleware inside it returned.
    let reqwest_middleware::Error::Middleware(error) = error else {
        panic!("not a middleware error: {error}")
    };
    let Some(reqwest_retry::RetryError::Error(reqwest_middleware::Error::Middleware(error))) =
        error.downcast_ref()
    else {
        panic!("not what reqwest-retry returns for a fatal error: {error}")
    };
    let error = error.downcast_ref::<auth_core::Error>().expect("the crate's error");
    assert_eq!(error.kind(), ErrorKind::OAuth);
    assert_eq!(idp.api_requests(), 0);
}

/// The middleware built from an `AuthClient` shares its tokens and profile.
#[tokio::test]
async fn from_client_shares_the_token_and_the_profile() {
    let idp = TestIdentityProvider::start().await.unwrap();
    let profile = ApiProfile::new().header("x-partnerid", "partner-7").unwrap();
    let auth = AuthClient::builder(TokenManager::new(source(&idp))).profile(profile).build().unwrap();
    auth.get(idp.api_url("a")).send().await.unwrap();
    let http = client(AuthMiddleware::from_client(&auth));
    http.get(idp.api_url("b")).send().await.unwrap();
    assert_eq!(idp.token_requests(), 1, "one token between the client and the middleware");
    assert_eq!(idp.api_log().pop().unwrap().header("x-partnerid"), Some("partner-7"));
}

/// reqwest-tracing's span and ours are in the log; the token is in neither.
/// In a process of its own: a log subscriber must be the whole process's to see
/// every span (tracing caches which call sites are enabled process-wide).
#[test]
fn spans_of_the_chain_never_hold_the_token() {
    integration_tests::run_in_child("reqwest_middleware::spans_in_a_process_of_their_own", |_| {});
}

#[tokio::test]
#[ignore = "run in its own process by spans_of_the_chain_never_hold_the_token"]
async fn spans_in_a_process_of_their_own() {
    integration_tests::assert_child("reqwest_middleware::spans_in_a_process_of_their_own");
    let logs = integration_tests::capture_all_logs();

    let idp = TestIdentityProvider::start().await.unwrap();
    let manager = TokenManager::new(source(&idp));
    let http = client(AuthMiddleware::new(manager.clone()));
    http.get(idp.api_url("Patient/1")).send().await.unwrap();
    let first = manager.cached().unwrap();
    idp.revoke_all();
    http.get(idp.api_url("Patient/1")).send().await.unwrap();
    let second = manager.cached().unwrap();

    let text = logs.text();
    assert!(text.contains("HTTP request"), "reqwest-tracing's span: {text}");
    assert!(text.contains("token_replay"), "our replay span: {text}");
    assert!(text.contains("token_fetch"), "our fetch span: {text}");
    for token in [first, second] {
        assert!(!text.contains(token.access_token().expose_secret()), "a token leaked into the log");
    }
}
