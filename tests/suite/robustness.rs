//! What must not break the manager: a panicking source, a wall clock stepped back,
//! a slow store racing an invalidation, a provider that re-issues a token about to
//! expire.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use auth_core::clock::{Clock, ManualClock};
use auth_core::oauth2::OAuth2Source;
use auth_core::source::FetchContext;
use auth_core::{CacheKey, CredentialSource, ErrorKind, MemoryStore, Result, Token, TokenManager};
use auth_sandbox::idp::{TestIdentityProvider, TokenBehavior};
use integration_tests::{SlowRemove, eventually, on_virtual_time, predictable, source};

/// A source that panics on its first fetch, then behaves.
#[derive(Debug)]
struct PanicsOnce {
    inner: OAuth2Source,
    armed: AtomicBool,
}

#[async_trait]
impl CredentialSource for PanicsOnce {
    fn cache_key(&self) -> &CacheKey {
        self.inner.cache_key()
    }
    async fn fetch(&self, ctx: &FetchContext) -> Result<Token> {
        if self.armed.swap(false, Ordering::SeqCst) {
            panic!("a bug in a credential source");
        }
        self.inner.fetch(ctx).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_source_fails_one_fetch_not_the_manager() {
    let idp = TestIdentityProvider::start().await.unwrap();
    let manager = TokenManager::builder(PanicsOnce { inner: source(&idp), armed: AtomicBool::new(true) })
        .config(predictable())
        .build();
    let first = manager.token().await.expect_err("the fetch panicked");
    assert_eq!(first.kind(), ErrorKind::Internal);
    // The failure is remembered like any other (briefly); then the manager works again.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    // Well inside the 30 s lease lifetime: the panicked fetch gave its lease back.
    tokio::time::timeout(Duration::from_secs(5), manager.token())
        .await
        .expect("no stall on a lease left behind by the panicked fetch")
        .expect("the manager recovered");
    assert_eq!(idp.token_requests(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wall_clock_stepped_back_does_not_stretch_the_backoff() {
    let (idp, manager, clock) = on_virtual_time(predictable()).await;
    idp.set_behavior(TokenBehavior::Status(503));
    manager.token().await.expect_err("503");
    idp.set_behavior(TokenBehavior::Issue);
    // NTP steps the wall clock back an hour; only 2 s really pass.
    clock.set(clock.now() - Duration::from_secs(3600));
    clock.advance(Duration::from_secs(2));
    manager.token().await.expect("the 1 s backoff is over after 2 s, whatever the wall clock says");
    assert_eq!(idp.token_requests(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejected_token_is_never_taken_back_from_the_store() {
    let idp = TestIdentityProvider::start().await.unwrap();
    let manager = TokenManager::builder(source(&idp))
        .store(SlowRemove(Duration::from_millis(50), MemoryStore::new()))
        .build();
    let rejected = manager.token().await.unwrap();
    let invalidating = {
        let (m, t) = (manager.clone(), rejected.clone());
        tokio::spawn(async move { m.invalidate(&t).await })
    };
    // Callers keep asking while the store is still removing the rejected token.
    for _ in 0..20 {
        let t = manager.token().await.unwrap();
        if invalidating.is_finished() {
            assert!(!t.same_value(&rejected), "the rejected token came back");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(invalidating.await.unwrap().dropped());
    let after = manager.token().await.unwrap();
    assert!(!after.same_value(&rejected));
    assert_eq!(manager.stats().from_store, 0, "the rejected token was not adopted from the store");
}

/// A source whose tokens were issued long ago and expire soon: each one is inside
/// its refresh window the moment it arrives (a custom source, or a token shared
/// through a store by an instance that fetched it earlier).
#[derive(Debug)]
struct IssuedLongAgo(OAuth2Source);

#[async_trait]
impl CredentialSource for IssuedLongAgo {
    fn cache_key(&self) -> &CacheKey {
        self.0.cache_key()
    }
    async fn fetch(&self, ctx: &FetchContext) -> Result<Token> {
        let fresh = self.0.fetch(ctx).await?;
        let now = ctx.now();
        Token::new(
            fresh.access_token().clone(),
            now - Duration::from_secs(3600),
            now + Duration::from_secs(30),
        )
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_born_inside_their_refresh_window_cannot_make_the_manager_spin() {
    for (min_interval, most) in [(Duration::from_secs(1), 3), (Duration::ZERO, u64::MAX)] {
        let mut config = predictable();
        config.min_refresh_interval = min_interval;
        let clock = ManualClock::new();
        let idp = TestIdentityProvider::start_with_clock(clock.clone()).await.unwrap();
        let manager =
            TokenManager::builder(IssuedLongAgo(source(&idp))).clock(clock.clone()).config(config).build();
        manager.token().await.unwrap();
        // 200 calls over 2 s of virtual time, each letting a background refresh finish.
        for _ in 0..200 {
            clock.advance(Duration::from_millis(10));
            manager.token().await.unwrap();
            assert!(
                eventually(Duration::from_secs(1), || manager.stats().fetches == idp.token_requests()).await
            );
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let requests = idp.token_requests();
        eprintln!("min_refresh_interval {min_interval:?}: {requests} token requests for 200 calls in 2 s");
        assert!(requests <= most, "{requests} requests with min_refresh_interval {min_interval:?}");
        if min_interval.is_zero() {
            // Shows the test can fail: without the guard every call refreshes.
            assert!(requests > 50, "expected a spin without the guard, saw {requests}");
        }
    }
}
