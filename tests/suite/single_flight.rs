//! Single flight: however many callers arrive at once, one token request is made
//! and everyone shares its result, success or error.

use std::sync::Arc;
use std::time::Duration;

use auth_core::{ErrorKind, MemoryStore, OAuthErrorCode, TokenManager};
use auth_sandbox::idp::{TestIdentityProvider, TokenBehavior};
use integration_tests::source;

const CALLERS: usize = 1_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_concurrent_first_callers_make_one_token_request() {
    let idp = TestIdentityProvider::start().await.unwrap();
    // A slow provider widens the window in which callers pile up.
    idp.set_delay(Duration::from_millis(200));
    let manager = TokenManager::new(source(&idp));

    let barrier = Arc::new(tokio::sync::Barrier::new(CALLERS));
    let calls: Vec<_> = (0..CALLERS)
        .map(|_| {
            let (m, b) = (manager.clone(), barrier.clone());
            tokio::spawn(async move {
                b.wait().await;
                m.token().await
            })
        })
        .collect();
    let mut values = std::collections::HashSet::new();
    for call in calls {
        let token = call.await.unwrap().expect("every caller gets a token");
        values.insert(token.access_token().expose_secret().to_owned());
    }
    assert_eq!(idp.token_requests(), 1, "exactly one token request for {CALLERS} callers");
    assert_eq!(values.len(), 1, "all callers share the one token");
    assert_eq!(manager.stats().fetches, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failure_is_shared_too_and_remembered_briefly() {
    let idp = TestIdentityProvider::start().await.unwrap();
    idp.set_delay(Duration::from_millis(100));
    idp.set_behavior(TokenBehavior::OAuthError { status: 401, code: "invalid_client".into() });
    let manager = TokenManager::new(source(&idp));

    let calls: Vec<_> = (0..CALLERS)
        .map(|_| {
            let m = manager.clone();
            tokio::spawn(async move { m.token().await })
        })
        .collect();
    for call in calls {
        let error = call.await.unwrap().expect_err("the provider refuses");
        assert_eq!(error.kind(), ErrorKind::OAuth);
        assert_eq!(error.oauth_error().map(|e| e.code.clone()), Some(OAuthErrorCode::InvalidClient));
        assert!(!error.is_retryable());
    }
    // invalid_client is not retried, and the failure is remembered: a second wave of
    // callers does not reach the provider either.
    for _ in 0..100 {
        assert!(manager.token().await.is_err());
    }
    assert_eq!(idp.token_requests(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn managers_sharing_a_store_share_one_fetch() {
    let idp = TestIdentityProvider::start().await.unwrap();
    idp.set_delay(Duration::from_millis(300));
    let store = Arc::new(MemoryStore::new());
    // Four managers, as four components of one service would have, with equal keys.
    let managers: Vec<_> =
        (0..4).map(|_| TokenManager::builder(source(&idp)).store(store.clone()).build()).collect();
    let calls: Vec<_> = (0..400)
        .map(|i| {
            let m = managers[i % 4].clone();
            tokio::spawn(async move { m.token().await.map(|t| t.access_token().expose_secret().to_owned()) })
        })
        .collect();
    let mut values = std::collections::HashSet::new();
    for call in calls {
        values.insert(call.await.unwrap().unwrap());
    }
    assert_eq!(idp.token_requests(), 1, "the lease lets one manager fetch for all");
    assert_eq!(values.len(), 1);
    let from_store: u64 = managers.iter().map(|m| m.stats().from_store).sum();
    assert_eq!(from_store, 3, "the other three managers took the token from the store");
}
