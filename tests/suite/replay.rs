//! The authenticated client: bearer attached, one replay after a rejected token,
//! never a loop, and only the rejected token dropped.

use std::time::Duration;

use auth_core::oauth2::OAuth2Source;
use auth_core::{ApiProfile, AuthClient, ErrorKind, SecretValue, TokenManager};
use auth_sandbox::idp::{ApiBehavior, TestIdentityProvider};
use integration_tests::{serve, source};

async fn setup() -> (TestIdentityProvider, TokenManager<OAuth2Source>, AuthClient) {
    let idp = TestIdentityProvider::start().await.unwrap();
    let manager = TokenManager::new(source(&idp));
    let client = AuthClient::new(manager.clone()).unwrap();
    (idp, manager, client)
}

#[tokio::test]
async fn a_rejected_token_is_replaced_and_the_request_replayed_once() {
    let (idp, _manager, client) = setup().await;
    let ok = client.get(idp.api_url("Patient/1")).send().await.unwrap();
    assert_eq!(ok.status(), 200);
    assert_eq!((idp.token_requests(), idp.api_requests()), (1, 1));

    // The server forgets every token (a restart, a revocation): the next call is
    // rejected once, a new token is fetched, the call is replayed and succeeds.
    idp.revoke_all();
    let body = r#"{"resourceType":"Patient"}"#;
    let ok = client.post(idp.api_url("Patient")).body(body).send().await.unwrap();
    assert_eq!(ok.status(), 200);
    assert_eq!(idp.token_requests(), 2);
    assert_eq!(idp.api_requests(), 3, "one rejected attempt and one replay");
    assert_eq!(idp.api_rejections(), 1);
}

#[tokio::test]
async fn a_server_that_always_rejects_gets_exactly_one_replay_then_a_typed_error() {
    let (idp, _manager, client) = setup().await;
    idp.set_api_behavior(ApiBehavior::RejectAll);
    let error = client.get(idp.api_url("Patient/1")).send().await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Unauthorized);
    assert_eq!(error.status(), Some(401));
    assert!(error.challenge().is_some_and(|c| c.is_invalid_token()));
    assert_eq!(idp.api_requests(), 2, "the original and one replay, no loop");
    assert_eq!(idp.token_requests(), 2);
}

/// A 401 that has nothing to do with the token (a gateway in front, a wrong
/// audience, a resource server whose clock rejects brand-new tokens): once a token
/// fetched to replace a rejected one is rejected too, the manager holds off
/// instead of fetching a token per call, and the error says why.
#[tokio::test]
async fn a_401_that_persists_costs_a_handful_of_token_requests_not_one_per_call() {
    let (idp, _manager, client) = setup().await;
    idp.set_api_behavior(ApiBehavior::RejectAll);
    let mut last = None;
    for _ in 0..20 {
        last = Some(client.get(idp.api_url("Patient/1")).send().await.unwrap_err());
    }
    let requests = idp.token_requests();
    assert!(requests <= 3, "{requests} token requests for 20 calls");
    let error = last.unwrap();
    assert_eq!(error.kind(), ErrorKind::Unauthorized, "{error}");
    assert!(error.retry_after().is_some(), "the error says when a new token will be tried: {error}");
    assert!(error.to_string().contains("not about the token"), "{error}");
    eprintln!("20 calls against an API that always answers 401: {requests} token requests");
}

#[tokio::test]
async fn santedb_style_403_invalid_token_triggers_the_replay() {
    let (idp, _manager, client) = setup().await;
    client.get(idp.api_url("Patient/1")).send().await.unwrap();
    idp.set_api_behavior(ApiBehavior::SanteDbStyle);
    idp.revoke_all();
    let ok = client.get(idp.api_url("Patient/1")).send().await.unwrap();
    assert_eq!(ok.status(), 200);
    assert_eq!(idp.api_rejections(), 1);
    assert_eq!(idp.token_requests(), 2);
}

#[tokio::test]
async fn insufficient_scope_is_final() {
    let (idp, _manager, client) = setup().await;
    idp.set_api_behavior(ApiBehavior::InsufficientScope);
    let error = client.get(idp.api_url("Patient/1")).send().await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::InsufficientScope);
    assert_eq!(error.challenge().and_then(|c| c.scope()), Some("system/*.rs"));
    assert_eq!(idp.api_requests(), 1, "no replay: a new token would not have more scope");
    assert_eq!(idp.token_requests(), 1);
}

#[tokio::test]
async fn a_streaming_body_is_not_replayed() {
    let (idp, _manager, client) = setup().await;
    client.get(idp.api_url("x")).send().await.unwrap();
    idp.revoke_all();
    let chunks: Vec<Result<&'static [u8], std::io::Error>> = vec![Ok(b"{}")];
    let body = reqwest::Body::wrap_stream(futures_util::stream::iter(chunks));
    let error = client.post(idp.api_url("Patient")).body(body).send().await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Unauthorized);
    assert_eq!(idp.api_requests(), 2, "the first call and the rejected one; no replay");
    // The rejected token was still dropped: the next call gets a fresh one.
    client.get(idp.api_url("x")).send().await.unwrap();
    assert_eq!(idp.token_requests(), 2);
}

#[tokio::test]
async fn invalidating_an_old_token_keeps_the_newer_one() {
    let (idp, manager, _client) = setup().await;
    let old = manager.token().await.unwrap();
    assert!(manager.invalidate(&old).await.dropped());
    let new = manager.token().await.unwrap();
    assert!(!new.same_value(&old));
    // A slow caller reports the old token as rejected after the new one arrived.
    assert!(!manager.invalidate(&old).await.dropped(), "the newer token must survive");
    assert!(manager.cached().is_some_and(|t| t.same_value(&new)));
    assert_eq!(idp.token_requests(), 2);
}

/// Each thread is handed its own copy of the cached token (so the hot path shares
/// no reference count); a rejection seen through any copy must drop it for all.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_token_rejected_on_one_thread_is_dropped_on_every_thread() {
    let (idp, manager, _client) = setup().await;
    let first = manager.token().await.unwrap();
    let copies: Vec<_> = (0..8)
        .map(|_| {
            let m = manager.clone();
            std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
                rt.block_on(m.token()).unwrap()
            })
        })
        .map(|t| t.join().unwrap())
        .collect();
    assert!(copies.iter().all(|c| c.same_value(&first)));
    assert_eq!(idp.token_requests(), 1);

    assert!(manager.invalidate(&copies[3]).await.dropped(), "a thread's copy identifies the cached token");
    let next = std::thread::spawn({
        let m = manager.clone();
        move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(m.token()).unwrap()
        }
    })
    .join()
    .unwrap();
    assert!(!next.same_value(&first), "another thread must not keep serving its copy");
    assert!(manager.token().await.unwrap().same_value(&next));
    assert_eq!(idp.token_requests(), 2);
}

#[tokio::test]
async fn concurrent_rejections_fetch_one_new_token() {
    let (idp, _manager, client) = setup().await;
    client.get(idp.api_url("x")).send().await.unwrap();
    idp.revoke_all();
    idp.set_delay(Duration::from_millis(100));
    let calls: Vec<_> = (0..50)
        .map(|_| {
            let (c, url) = (client.clone(), idp.api_url("x"));
            tokio::spawn(async move { c.get(url).send().await.map(|r| r.status().as_u16()) })
        })
        .collect();
    for call in calls {
        assert_eq!(call.await.unwrap().unwrap(), 200);
    }
    assert_eq!(idp.token_requests(), 2, "50 rejected callers share one new token");
}

#[tokio::test]
async fn vendor_extras_go_on_every_request() {
    let idp = TestIdentityProvider::start().await.unwrap();
    let (id, secret) = idp.credentials();
    let profile = ApiProfile::new()
        .header("x-partnerid", "partner-7")
        .unwrap()
        .secret_header("Ocp-Apim-Subscription-Key", &SecretValue::new("sub-key"))
        .unwrap()
        .query("_format", "json");
    let source = OAuth2Source::builder(idp.token_url(), id, secret).build().unwrap();
    let client = AuthClient::builder(TokenManager::new(source)).profile(profile).build().unwrap();
    client.get(idp.api_url("Patient?name=x")).send().await.unwrap();
    let seen = idp.api_log().pop().unwrap();
    assert_eq!(seen.header("x-partnerid"), Some("partner-7"));
    assert_eq!(seen.header("ocp-apim-subscription-key"), Some("sub-key"));
    assert_eq!(seen.query.as_deref(), Some("name=x&_format=json"));

    // A URL that already carries the parameter (a server's next link) keeps its own.
    client.get(idp.api_url("Patient?name=x&_format=json&page=2")).send().await.unwrap();
    let seen = idp.api_log().pop().unwrap();
    assert_eq!(seen.query.as_deref(), Some("name=x&_format=json&page=2"), "not repeated");
}

#[tokio::test]
async fn redirects_are_followed_within_the_origin_only() {
    use axum::http::{StatusCode, header};
    let idp = TestIdentityProvider::start().await.unwrap();
    let elsewhere = TestIdentityProvider::start().await.unwrap();
    let other = elsewhere.api_url("Patient/1");
    // A front API: /moved redirects within its own origin to /final, which answers
    // 200 only if the bearer and the vendor key came along; /gone redirects away.
    let app = axum::Router::new()
        .route(
            "/moved",
            axum::routing::get(|| async { (StatusCode::TEMPORARY_REDIRECT, [(header::LOCATION, "/final")]) }),
        )
        .route(
            "/final",
            axum::routing::get(|headers: axum::http::HeaderMap| async move {
                let bearer =
                    headers.get(header::AUTHORIZATION).is_some_and(|v| v.as_bytes().starts_with(b"Bearer "));
                let key = headers.get("ocp-apim-subscription-key").is_some_and(|v| v == "sub-key");
                if bearer && key { StatusCode::OK } else { StatusCode::BAD_REQUEST }
            }),
        )
        .route(
            "/gone",
            axum::routing::get(move || {
                let to = other.clone();
                async move { (StatusCode::TEMPORARY_REDIRECT, [(header::LOCATION, to)]) }
            }),
        );
    let front = serve(app).await;

    let (id, secret) = idp.credentials();
    let profile =
        ApiProfile::new().secret_header("Ocp-Apim-Subscription-Key", &SecretValue::new("sub-key")).unwrap();
    let source = OAuth2Source::builder(idp.token_url(), id, secret).build().unwrap();
    let client = AuthClient::builder(TokenManager::new(source)).profile(profile).build().unwrap();

    // Cross-origin: handed back, not followed; the other host sees nothing.
    let response = client.get(format!("http://{front}/gone")).send().await.unwrap();
    assert_eq!(response.status(), 307);
    assert_eq!(elsewhere.api_requests(), 0, "credentials never travel to another origin");

    // Same origin: followed, with the credentials.
    let response = client.get(format!("http://{front}/moved")).send().await.unwrap();
    assert_eq!(response.status(), 200);
}

/// A judge that, like MSK's, knows some 401s are not about the token.
#[derive(Debug)]
struct Judging;

impl auth_core::RejectionJudge for Judging {
    fn wants_body(&self) -> bool {
        true
    }
    fn judge(&self, r: &auth_core::Rejection<'_>) -> auth_core::RejectionVerdict {
        let body = String::from_utf8_lossy(r.body);
        if body.contains("Partnerid") {
            auth_core::RejectionVerdict::Configuration("the partner id is wrong".into())
        } else if body.contains("maintenance") {
            auth_core::RejectionVerdict::NotTokenRelated
        } else {
            auth_core::RejectionVerdict::TokenRejected
        }
    }
}

#[tokio::test]
async fn a_profile_can_say_a_rejection_is_not_about_the_token() {
    use axum::http::StatusCode;
    let idp = TestIdentityProvider::start().await.unwrap();
    let app = axum::Router::new()
        .route("/partner", axum::routing::get(|| async { (StatusCode::UNAUTHORIZED, r#"{"resourceType":"OperationOutcome","issue":[{"diagnostics":"Incorrect Partnerid name"}]}"#) }))
        .route("/maintenance", axum::routing::get(|| async { (StatusCode::UNAUTHORIZED, "down for maintenance") }));
    let front = serve(app).await;
    let manager = TokenManager::new(source(&idp));
    let client =
        AuthClient::builder(manager.clone()).profile(ApiProfile::new().judge(Judging)).build().unwrap();

    let error = client.get(format!("http://{front}/partner")).send().await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Configuration);
    assert!(error.to_string().contains("partner id"));

    let response = client.get(format!("http://{front}/maintenance")).send().await.unwrap();
    assert_eq!(response.status(), 401);
    assert_eq!(
        response.text().await.unwrap(),
        "down for maintenance",
        "the judged body reaches the caller intact"
    );

    assert_eq!(idp.token_requests(), 1, "no token was burnt on either answer");
    assert_eq!(manager.stats().invalidations, 0);
}

/// A 401 whose body is larger than what is read for judging (a gateway's HTML
/// page): judged on what was read, then replayed (a token problem) or handed to
/// the caller whole (not one), never failed for its size.
#[tokio::test]
async fn a_rejection_with_a_large_body_is_judged_on_what_was_read() {
    use std::sync::atomic::{AtomicU64, Ordering};

    use axum::http::StatusCode;
    let idp = TestIdentityProvider::start().await.unwrap();
    // 100 KiB of HTML, over the 64 KiB read for judging.
    let page = format!("<html>{}</html>", "x".repeat(100 * 1024));
    let calls = std::sync::Arc::new(AtomicU64::new(0));
    let (first_call, big) = (calls.clone(), page.clone());
    let app = axum::Router::new()
        .route(
            "/flaky",
            axum::routing::get(move || {
                let n = first_call.fetch_add(1, Ordering::SeqCst);
                let big = big.clone();
                async move {
                    if n == 0 { (StatusCode::UNAUTHORIZED, big) } else { (StatusCode::OK, "ok".to_owned()) }
                }
            }),
        )
        .route(
            "/maintenance",
            axum::routing::get(move || {
                let page = page.clone();
                async move { (StatusCode::UNAUTHORIZED, format!("maintenance{page}")) }
            }),
        );
    let front = serve(app).await;
    let manager = TokenManager::new(source(&idp));
    let client =
        AuthClient::builder(manager.clone()).profile(ApiProfile::new().judge(Judging)).build().unwrap();

    let replayed = client.get(format!("http://{front}/flaky")).send().await.expect("judged, then replayed");
    assert_eq!(replayed.status(), 200);
    assert_eq!(calls.load(Ordering::SeqCst), 2, "one rejection and one replay");

    let handed_back = client.get(format!("http://{front}/maintenance")).send().await.unwrap();
    assert_eq!(handed_back.status(), 401);
    let body = handed_back.text().await.unwrap();
    assert_eq!(
        body.len(),
        "maintenance".len() + 100 * 1024 + "<html></html>".len(),
        "the body reaches the caller whole"
    );
}
