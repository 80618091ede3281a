//! No fetch can wedge the manager or its caller's thread: a source or store whose
//! future never completes is cut off and the next caller starts again; a fetch
//! that cannot start (no Tokio runtime, or one shutting down) is an error, not a
//! deadlock; and revoking a token cannot let a concurrent fetch take it back.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use auth_core::clock::ManualClock;
use auth_core::oauth2::OAuth2Source;
use auth_core::source::FetchContext;
use auth_core::store::Lease;
use auth_core::{
    CacheKey, CredentialSource, ErrorKind, MemoryStore, Result, Token, TokenManager, TokenStore,
};
use auth_sandbox::idp::TestIdentityProvider;
use integration_tests::{SlowRemove, predictable, source};

/// A source whose first fetch never completes, as a custom source with a bug (or
/// a socket without a timeout) does; later fetches behave.
#[derive(Debug)]
struct HangsOnce {
    inner: OAuth2Source,
    armed: AtomicBool,
}

#[async_trait]
impl CredentialSource for HangsOnce {
    fn cache_key(&self) -> &CacheKey {
        self.inner.cache_key()
    }
    async fn fetch(&self, ctx: &FetchContext) -> Result<Token> {
        if self.armed.swap(false, Ordering::SeqCst) {
            std::future::pending::<()>().await;
        }
        self.inner.fetch(ctx).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_source_is_cut_off_and_the_next_caller_starts_a_new_fetch() {
    let idp = TestIdentityProvider::start().await.unwrap();
    let clock = ManualClock::new();
    let mut config = predictable();
    config.fetch_timeout = Duration::from_millis(300);
    config.wait_timeout = Duration::from_secs(20);
    let manager = TokenManager::builder(HangsOnce { inner: source(&idp), armed: AtomicBool::new(true) })
        .clock(clock.clone())
        .config(config)
        .build();

    let started = Instant::now();
    let first = manager.token().await.expect_err("the hung fetch is cut off");
    assert_eq!(first.kind(), ErrorKind::Timeout, "{first}");
    assert!(started.elapsed() < Duration::from_secs(5), "cut off at the bound, not the caller's 20 s");

    // Past the backoff the failure earned, the next caller starts afresh.
    clock.advance(Duration::from_secs(120));
    let token = tokio::time::timeout(Duration::from_secs(5), manager.token())
        .await
        .expect("not stuck behind the hung fetch")
        .expect("a token from a new fetch");
    assert!(!token.access_token().expose_secret().is_empty());
    assert_eq!(idp.token_requests(), 1);
}

/// A store whose `get` never completes once armed.
#[derive(Debug, Default)]
struct HangingStore {
    inner: MemoryStore,
    armed: AtomicBool,
}

#[async_trait]
impl TokenStore for HangingStore {
    async fn get(&self, key: &CacheKey) -> Result<Option<Arc<Token>>> {
        if self.armed.swap(false, Ordering::SeqCst) {
            std::future::pending::<()>().await;
        }
        self.inner.get(key).await
    }
    async fn put(&self, key: &CacheKey, token: Arc<Token>) -> Result<()> {
        self.inner.put(key, token).await
    }
    async fn remove(&self, key: &CacheKey, token: &Token) -> Result<bool> {
        self.inner.remove(key, token).await
    }
    async fn try_lease(&self, key: &CacheKey, ttl: Duration) -> Result<Option<Lease>> {
        self.inner.try_lease(key, ttl).await
    }
    async fn release(&self, lease: &Lease) -> Result<()> {
        self.inner.release(lease).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_store_is_cut_off_too() {
    let idp = TestIdentityProvider::start().await.unwrap();
    let clock = ManualClock::new();
    let mut config = predictable();
    config.fetch_timeout = Duration::from_millis(300);
    config.wait_timeout = Duration::from_secs(20);
    let store = HangingStore { inner: MemoryStore::new(), armed: AtomicBool::new(true) };
    let manager =
        TokenManager::builder(source(&idp)).store(store).clock(clock.clone()).config(config).build();
    let first = manager.token().await.expect_err("the hung store is cut off");
    assert_eq!(first.kind(), ErrorKind::Timeout, "{first}");
    clock.advance(Duration::from_secs(120));
    tokio::time::timeout(Duration::from_secs(5), manager.token())
        .await
        .expect("not wedged")
        .expect("a token");
}

/// Runs `f` on a thread of its own and fails the test if it has not returned
/// within `within` (the thread is left behind: the test has already failed).
fn returns_within<T: Send + 'static>(within: Duration, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(within).expect("it returned instead of hanging the thread")
}

#[test]
fn a_fetch_outside_a_tokio_runtime_is_an_error_not_a_deadlock() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (idp, manager) = runtime.block_on(async {
        let idp = TestIdentityProvider::start().await.unwrap();
        let manager = TokenManager::new(source(&idp));
        (idp, manager)
    });
    // Polled by another executor, outside any Tokio runtime.
    let outside = manager.clone();
    let started = Instant::now();
    let result = returns_within(Duration::from_secs(10), move || futures_executor::block_on(outside.token()));
    eprintln!("token() outside a Tokio runtime returned in {:?}", started.elapsed());
    let error = result.expect_err("no runtime to fetch on");
    assert_eq!(error.kind(), ErrorKind::Configuration, "{error}");
    assert!(error.to_string().contains("Tokio runtime"), "{error}");
    // The manager is not poisoned by it: inside the runtime it works.
    runtime.block_on(manager.token()).expect("a token inside the runtime");
    assert_eq!(idp.token_requests(), 1);
}

#[test]
fn a_fetch_on_a_runtime_that_has_shut_down_is_an_error_not_a_deadlock() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let handle = runtime.handle().clone();
    let (idp, manager) = runtime.block_on(async {
        let idp = TestIdentityProvider::start().await.unwrap();
        let manager = TokenManager::new(source(&idp));
        (idp, manager)
    });
    drop(idp);
    returns_within(Duration::from_secs(10), move || runtime.shutdown_timeout(Duration::from_secs(1)));
    // Inside the dead runtime's context a task can still be spawned, and is
    // dropped on the spot: the fetch must publish its end, not deadlock on it.
    let started = Instant::now();
    let result = returns_within(Duration::from_secs(10), move || handle.block_on(manager.token()));
    eprintln!("token() on a runtime that shut down returned in {:?}", started.elapsed());
    let error = result.expect_err("no runtime left to fetch on");
    assert!(matches!(error.kind(), ErrorKind::Internal | ErrorKind::Configuration), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_token_is_never_taken_back_by_a_concurrent_fetch() {
    let idp = TestIdentityProvider::start().await.unwrap();
    let manager = TokenManager::builder(source(&idp))
        .store(SlowRemove(Duration::from_millis(300), MemoryStore::new()))
        .build();
    let revoked = manager.token().await.unwrap();
    let revoking = {
        let m = manager.clone();
        tokio::spawn(async move { m.revoke().await })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    // While the store is still removing it, a caller needs a token (until the
    // provider is told, the token being revoked may still serve).
    manager.token().await.unwrap();
    revoking.await.unwrap().unwrap();
    let after = manager.token().await.unwrap();
    assert!(!after.same_value(&revoked), "the revoked token was taken back from the store");
    assert_eq!(manager.stats().from_store, 0, "nothing was adopted from the store");
    assert_eq!(idp.token_requests(), 2);
}
