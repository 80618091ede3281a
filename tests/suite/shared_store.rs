//! Managers sharing one token store (as the processes of a fleet share Redis):
//! the fetch lease outlives a slow fetch, a failure is shared so the fleet backs
//! off together, a manager backing off still takes a token another one stored,
//! and a manager shutting down gives its lease back.

use std::sync::Arc;
use std::time::{Duration, Instant};

use auth_core::clock::{Clock, ManualClock};
use auth_core::manager::{ManagerConfig, RetryPolicy};
use auth_core::oauth2::OAuth2Source;
use auth_core::{ErrorKind, MemoryStore, TokenManager};
use auth_sandbox::idp::{TestIdentityProvider, TokenBehavior};
use integration_tests::{eventually, predictable, source};

type Manager = TokenManager<OAuth2Source, Arc<MemoryStore>>;

fn manager(
    idp: &TestIdentityProvider,
    store: &Arc<MemoryStore>,
    clock: &ManualClock,
    config: ManagerConfig,
) -> Manager {
    TokenManager::builder(source(idp)).store(store.clone()).clock(clock.clone()).config(config).build()
}

/// Case 3: the lease lives 200 ms and the identity provider takes 600 ms. The
/// holder renews its lease, so the second manager waits for its token instead of
/// fetching a second one when the lease would have lapsed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_fetch_keeps_its_lease_and_two_managers_fetch_once() {
    let clock = ManualClock::new();
    let idp = TestIdentityProvider::start_with_clock(clock.clone()).await.unwrap();
    idp.set_delay(Duration::from_millis(600));
    let store = Arc::new(MemoryStore::new());
    let mut config = predictable();
    config.lease_ttl = Duration::from_millis(200);
    let (a, b) = (manager(&idp, &store, &clock, config.clone()), manager(&idp, &store, &clock, config));
    let (ta, tb) = tokio::join!(a.token(), b.token());
    let (ta, tb) = (ta.unwrap(), tb.unwrap());
    assert!(ta.same_value(&tb), "both got the one token");
    assert_eq!(idp.token_requests(), 1, "one fetch for two managers");
}

/// Case 3: the lease holder's fetch fails; the other manager, waiting on the
/// lease, backs off with it instead of taking the lease and trying again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failure_is_shared_and_the_fleet_backs_off_together() {
    let clock = ManualClock::new();
    let idp = TestIdentityProvider::start_with_clock(clock.clone()).await.unwrap();
    idp.set_delay(Duration::from_millis(300));
    idp.set_behavior(TokenBehavior::RetryAfter(30));
    let store = Arc::new(MemoryStore::new());
    let (a, b) = (manager(&idp, &store, &clock, predictable()), manager(&idp, &store, &clock, predictable()));
    let (ea, eb) = tokio::join!(a.token(), b.token());
    let (ea, eb) = (ea.unwrap_err(), eb.unwrap_err());
    assert_eq!(idp.token_requests(), 1, "the second manager did not try the failing provider again");
    assert_eq!((ea.kind(), eb.kind()), (ErrorKind::Unavailable, ErrorKind::Unavailable), "{ea} / {eb}");
    // The one that failed keeps the provider's 30 s; the fleet shares a short backoff.
    assert!(ea.retry_after().is_some_and(|d| d >= Duration::from_secs(30)), "{ea}");
    let shared = RetryPolicy::default().shared_failure_max;
    assert!(eb.retry_after().is_some_and(|d| !d.is_zero() && d <= shared), "{eb}");
}

/// Case 2: A's refresh fails with 503 and `Retry-After: 120`; B's succeeds and
/// stores its token. Past the usable time of A's old token, A is still backing
/// off, yet it must hand out B's token rather than its remembered failure.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_remembered_failure_does_not_hide_a_token_another_manager_stored() {
    let clock = ManualClock::new();
    let idp = TestIdentityProvider::start_with_clock(clock.clone()).await.unwrap();
    idp.set_lifetime(Some(Duration::from_secs(300)));
    let store = Arc::new(MemoryStore::new());
    // A shares its failure briefly: B, refreshing after that, goes to the provider.
    let mut config = predictable();
    config.retry.shared_failure_max = Duration::from_millis(50);
    let (a, b) = (manager(&idp, &store, &clock, config.clone()), manager(&idp, &store, &clock, config));
    let first = a.token().await.unwrap();
    assert!(b.token().await.unwrap().same_value(&first), "B takes A's token from the store");

    // At 80 % of the lifetime A refreshes, and the provider says: come back in 2 minutes.
    clock.advance(Duration::from_secs(241));
    idp.fail_next(1, TokenBehavior::RetryAfter(120));
    assert!(a.token().await.unwrap().same_value(&first), "the current token still serves");
    assert!(eventually(Duration::from_secs(5), || a.stats().failures == 1).await, "A's refresh failed");
    // A moment later, B refreshes, and gets a new token, which it stores.
    tokio::time::sleep(Duration::from_millis(100)).await;
    clock.advance(Duration::from_secs(2));
    b.token().await.unwrap();
    assert!(eventually(Duration::from_secs(5), || idp.token_requests() == 3).await, "B's refresh ran");
    assert!(eventually(Duration::from_secs(5), || b.cached().is_some_and(|t| !t.same_value(&first))).await);
    let from_b = b.cached().unwrap();

    // Past the usable time of A's old token, well inside A's 120 s backoff.
    clock.advance(Duration::from_secs(60));
    let token = a.token().await.expect("B's token, not A's remembered failure");
    assert!(token.same_value(&from_b));
    assert_eq!(idp.token_requests(), 3, "A did not ask the provider during its backoff");
    let _ = clock.now();
}

/// Case 3: a manager shutting down with a fetch in flight gives its lease back,
/// so another manager sharing the store fetches at once rather than waiting for
/// the lease to lapse.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manager_shutting_down_gives_its_lease_back() {
    let clock = ManualClock::new();
    let idp = TestIdentityProvider::start_with_clock(clock.clone()).await.unwrap();
    let store = Arc::new(MemoryStore::new());
    let mut config = predictable();
    config.lease_ttl = Duration::from_secs(60);
    let (a, b) = (manager(&idp, &store, &clock, config.clone()), manager(&idp, &store, &clock, config));
    idp.set_delay(Duration::from_secs(30));
    let stuck = {
        let a = a.clone();
        tokio::spawn(async move { a.token().await })
    };
    assert!(eventually(Duration::from_secs(5), || idp.token_requests() == 1).await, "A is fetching");
    idp.set_delay(Duration::ZERO);
    a.shutdown().await;
    let started = Instant::now();
    let token =
        tokio::time::timeout(Duration::from_secs(10), b.token()).await.expect("B is not held").unwrap();
    assert!(started.elapsed() < Duration::from_secs(5), "B did not wait for A's 60 s lease to lapse");
    assert!(!token.access_token().expose_secret().is_empty());
    assert!(stuck.await.unwrap().is_err(), "A's caller is told its fetch stopped");
}
