//! Refresh ahead, stale-while-error and backoff, on virtual time.
//!
//! The provider and the manager share a `ManualClock`; HTTP is real. Time only
//! moves when the test says, so "the token is 245 s old" is exact.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use auth_core::clock::Clock;
use auth_core::token::Token;
use auth_core::{ErrorKind, Result};
use auth_sandbox::idp::TokenBehavior;
use integration_tests::{eventually, on_virtual_time, predictable};

const LIFETIME: u64 = 300;

/// Runs `n` concurrent callers and returns what they got.
async fn callers<M>(manager: &M, n: usize) -> Vec<Result<Arc<Token>>>
where
    M: Clone + Send + Sync + 'static + Caller,
{
    let calls: Vec<_> = (0..n)
        .map(|_| {
            let m = manager.clone();
            tokio::spawn(async move { m.call().await })
        })
        .collect();
    let mut out = Vec::with_capacity(n);
    for c in calls {
        out.push(c.await.unwrap());
    }
    out
}

trait Caller {
    fn call(&self) -> impl std::future::Future<Output = Result<Arc<Token>>> + Send;
}

impl<S: auth_core::CredentialSource, T: auth_core::TokenStore> Caller for auth_core::TokenManager<S, T> {
    fn call(&self) -> impl std::future::Future<Output = Result<Arc<Token>>> + Send {
        self.token()
    }
}

/// A 3 s token is renewed once per lifetime, at 80 %, not at half-life: a fixed
/// lead such as "60 s before expiry" would double the requests for short tokens.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_token_is_refreshed_once_per_lifetime() {
    let (idp, manager, clock) = on_virtual_time(predictable()).await;
    idp.set_lifetime(Some(Duration::from_secs(3)));
    let mut current = manager.token().await.unwrap();
    for lifetime in 1..=5u64 {
        clock.advance(Duration::from_millis(2300)); // past half, short of 80 %
        assert!(manager.token().await.unwrap().same_value(&current));
        assert_eq!(idp.token_requests(), lifetime, "no refresh before 80 % of the lifetime");
        clock.advance(Duration::from_millis(200)); // 2.5 s: past 80 % (2.4 s)
        manager.token().await.unwrap();
        assert!(eventually(Duration::from_secs(5), || idp.token_requests() == lifetime + 1).await);
        assert!(
            eventually(Duration::from_secs(5), || manager.cached().is_some_and(|t| !t.same_value(&current)))
                .await
        );
        current = manager.token().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_near_expiry_is_refreshed_in_the_background() {
    let (idp, manager, clock) = on_virtual_time(predictable()).await;
    let first = manager.token().await.unwrap();
    assert_eq!(first.lifetime(), Duration::from_secs(LIFETIME));

    // 200 s in: still fresh, nothing happens.
    clock.advance(Duration::from_secs(200));
    for r in callers(&manager, 200).await {
        assert!(r.unwrap().same_value(&first));
    }
    assert_eq!(idp.token_requests(), 1);

    // 245 s in: past refresh_at (240 s = 80 % of the lifetime).
    // Every caller is answered at once with the current token; one refresh runs.
    clock.advance(Duration::from_secs(45));
    idp.set_delay(Duration::from_millis(100));
    for r in callers(&manager, 500).await {
        let t = r.unwrap();
        assert!(t.same_value(&first), "callers are not held up by the refresh");
    }
    assert!(eventually(Duration::from_secs(5), || idp.token_requests() == 2).await);
    // The provider counts a request on arrival, then takes 100 ms to answer.
    assert!(
        eventually(Duration::from_secs(5), || manager.cached().is_some_and(|t| !t.same_value(&first))).await
    );
    let second = manager.token().await.unwrap();
    assert!(!second.same_value(&first), "the refreshed token is served");
    assert_eq!(idp.token_requests(), 2, "exactly one refresh");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_rollovers_never_hand_out_an_expired_token_and_refresh_once_each() {
    let (idp, manager, clock) = on_virtual_time(predictable()).await;
    manager.token().await.unwrap();
    let mut issued_at = clock.now_secs();
    let mut expected_requests = 1;
    let mut seen = HashSet::new();
    // 20 rollovers in 10-second steps, 100 concurrent callers per step.
    while expected_requests < 21 {
        clock.advance(Duration::from_secs(10));
        let now = clock.now();
        for r in callers(&manager, 100).await {
            let t = r.expect("a valid token exists at every step");
            assert!(t.expires_at() > now, "a caller received an expired token");
            assert!(t.remaining(now) >= Duration::from_secs(5), "the expiry margin is kept");
            seen.insert(t.access_token().expose_secret().to_owned());
        }
        if clock.now_secs() - issued_at >= 240 {
            expected_requests += 1;
            issued_at = clock.now_secs();
            assert!(
                eventually(Duration::from_secs(5), || idp.token_requests() == expected_requests).await,
                "refresh {expected_requests} did not happen"
            );
            // Let the refresh land so the next step sees the new token.
            assert!(
                eventually(Duration::from_secs(5), || manager
                    .cached()
                    .is_some_and(|t| t.issued_at() >= clock.now()))
                .await
            );
        }
        assert_eq!(idp.token_requests(), expected_requests, "exactly one request per rollover");
    }
    let last = manager.token().await.unwrap();
    seen.insert(last.access_token().expose_secret().to_owned());
    assert_eq!(seen.len() as u64, idp.token_requests(), "every issued token was used");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_provider_is_survived_until_the_token_expires_then_the_error_is_typed() {
    let (idp, manager, clock) = on_virtual_time(predictable()).await;
    let token = manager.token().await.unwrap();
    idp.set_behavior(TokenBehavior::Status(503));

    // From 241 s to 294 s (usable until 295 s: 5 s margin) callers keep succeeding with
    // the old token while background refreshes fail.
    clock.advance(Duration::from_secs(240));
    for _ in 241..=294 {
        clock.advance(Duration::from_secs(1));
        for r in callers(&manager, 20).await {
            assert!(r.expect("stale-while-error: the valid token is served").same_value(&token));
        }
        // Let any background refresh finish before time moves on.
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let during = idp.token_requests() - 1;
    // 54 one-second steps; exponential backoff (1, 2, 4, 8, 16, 32 s, each ×0.5–1)
    // allows at most 8 attempts, where no backoff would make 54.
    eprintln!("503 for 54 s of virtual time: {during} refresh attempts");
    assert!((3..=8).contains(&during), "{during} refresh attempts in 54 s");

    // Past the margin: no usable token, so callers get the typed error.
    clock.advance(Duration::from_secs(2));
    for r in callers(&manager, 50).await {
        let e = r.expect_err("no valid token and the provider is down");
        assert_eq!(e.kind(), ErrorKind::Unavailable);
        assert_eq!(e.status(), Some(503));
        assert!(e.is_retryable());
    }
    let after_expiry = idp.token_requests() - 1 - during;
    eprintln!("50 callers after expiry: {after_expiry} token requests");
    assert!(after_expiry <= 1, "a herd without a token does not hammer the provider: {after_expiry}");

    // The provider recovers: once the backoff has passed, callers get a new token.
    idp.set_behavior(TokenBehavior::Issue);
    clock.advance(Duration::from_secs(61));
    let fresh = manager.token().await.expect("recovered");
    assert!(!fresh.same_value(&token));
    assert!(fresh.expires_at() > clock.now());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_after_is_honoured() {
    let (idp, manager, clock) = on_virtual_time(predictable()).await;
    idp.set_behavior(TokenBehavior::RetryAfter(30));
    let e = manager.token().await.expect_err("503");
    assert_eq!(e.retry_after(), Some(Duration::from_secs(30)));
    idp.set_behavior(TokenBehavior::Issue);
    clock.advance(Duration::from_secs(20));
    assert!(manager.token().await.is_err(), "still inside Retry-After: the remembered error");
    assert_eq!(idp.token_requests(), 1);
    clock.advance(Duration::from_secs(11));
    manager.token().await.expect("after Retry-After a new request is made");
    assert_eq!(idp.token_requests(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_retryable_errors_are_not_retried_but_not_remembered_forever() {
    let mut config = predictable();
    config.retry.attempts = 5;
    let (idp, manager, clock) = on_virtual_time(config).await;
    idp.set_behavior(TokenBehavior::OAuthError { status: 400, code: "invalid_scope".into() });
    assert_eq!(manager.token().await.unwrap_err().kind(), ErrorKind::OAuth);
    assert_eq!(idp.token_requests(), 1, "invalid_scope gets no inline retry");
    idp.set_behavior(TokenBehavior::Issue);
    clock.advance(Duration::from_secs(6));
    manager.token().await.expect("a fixed configuration works after 5 s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transient_errors_are_retried_inline() {
    let mut config = predictable();
    config.retry.attempts = 3;
    config.retry.attempt_delay = Duration::from_millis(10);
    let (idp, manager, _clock) = on_virtual_time(config).await;
    idp.fail_next(2, TokenBehavior::Status(502));
    manager.token().await.expect("third attempt succeeds");
    assert_eq!(idp.token_requests(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_tokens_are_used_when_issued() {
    let (idp, manager, clock) = on_virtual_time(predictable()).await;
    idp.set_refresh_tokens(true);
    let first = manager.token().await.unwrap();
    assert!(first.refresh_token().is_some());
    clock.advance(Duration::from_secs(250));
    manager.token().await.unwrap();
    assert!(eventually(Duration::from_secs(5), || idp.refresh_requests() == 1).await);
    let last = idp.token_log().pop().unwrap();
    assert_eq!(last.field("grant_type"), Some("refresh_token"));
    assert_eq!(last.field("refresh_token"), Some("rt-1"));
    assert_eq!(manager.stats().refreshes, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn short_tokens_reissued_each_lifetime_are_refreshed_once_each_at_80_percent() {
    // (That a token born inside its refresh window cannot make the manager spin
    // is proven in robustness.rs, where the guard is what stops it.)
    let (idp, manager, clock) = on_virtual_time(predictable()).await;
    // Every token lives 12 s: renewed at 9.6 s, 80 % of it.
    idp.set_lifetime(Some(Duration::from_secs(12)));
    manager.token().await.unwrap();
    for _ in 0..200 {
        clock.advance(Duration::from_millis(100));
        manager.token().await.unwrap();
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    // 20 s of virtual time: the first token, and refreshes at 9.6 s and 19.2 s.
    // Refreshing at half-life (a fixed lead longer than the token) would make 4.
    assert!(eventually(Duration::from_secs(5), || idp.token_requests() == 3).await);
    assert_eq!(idp.token_requests(), 3, "{} requests", idp.token_requests());
}

trait NowSecs {
    fn now_secs(&self) -> u64;
}

impl NowSecs for auth_core::clock::ManualClock {
    fn now_secs(&self) -> u64 {
        use auth_core::clock::Clock;
        self.now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()
    }
}

/// A refresh that hangs past the point where the current token stops being
/// handed out must not hand its timeout to the callers then waiting: its attempt
/// lasts only as long as the current token is usable, then the fetch goes on for
/// them with a fresh attempt.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refresh_hanging_past_the_usable_point_is_retried_for_the_waiting_callers() {
    use auth_core::EndpointOptions;
    let clock = auth_core::clock::ManualClock::new();
    let idp = auth_sandbox::idp::TestIdentityProvider::start_with_clock(clock.clone()).await.unwrap();
    idp.set_lifetime(Some(Duration::from_secs(100)));
    let (id, secret) = idp.credentials();
    let source = auth_core::oauth2::OAuth2Source::builder(idp.token_url(), id, secret)
        .timeout(Duration::from_secs(4))
        .build()
        .unwrap();
    let manager = auth_core::TokenManager::builder(source).clock(clock.clone()).config(predictable()).build();
    let first = manager.token().await.unwrap();
    // A 100 s token: refreshed from 80 s, handed out until 95 s (a 5 s margin).
    clock.advance(Duration::from_secs(93));
    idp.set_delay(Duration::from_secs(10)); // the refresh hangs, past the endpoint's 4 s timeout
    assert!(manager.token().await.unwrap().same_value(&first), "starts the refresh");
    assert!(
        eventually(Duration::from_secs(5), || idp.token_requests() == 2).await,
        "the refresh is on the wire"
    );
    idp.set_delay(Duration::ZERO);
    clock.advance(Duration::from_secs(3)); // 96 s: the current token is no longer handed out
    let next = manager.token().await.expect("a new token, not the hung refresh's timeout");
    assert!(!next.same_value(&first));
}
