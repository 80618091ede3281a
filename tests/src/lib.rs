//! Helpers shared by the integration tests: managers wired to a test identity
//! provider, on the system clock or a manual one.

use std::time::Duration;

use auth_core::clock::ManualClock;
use auth_core::manager::{ManagerConfig, RetryPolicy};
use auth_core::oauth2::ClientCredentials;
use auth_core::testkit::TestIdentityProvider;
use auth_core::{MemoryStore, TokenManager};

/// A client credentials source for the provider's default client.
pub fn source(idp: &TestIdentityProvider) -> ClientCredentials {
    let (id, secret) = idp.credentials();
    ClientCredentials::builder(idp.token_url(), id, secret)
        .scopes(["system/Patient.rs"])
        .build()
        .expect("valid test configuration")
}

/// Settings with no jitter and no inline retries, so virtual-time tests can predict
/// exactly when a refresh happens and how many requests it makes.
pub fn predictable() -> ManagerConfig {
    let mut config = ManagerConfig::default();
    config.refresh_jitter = 0.0;
    config.retry = RetryPolicy::default();
    config.retry.attempts = 1;
    config
}

/// A provider and a manager sharing one manual clock.
pub async fn on_virtual_time(
    config: ManagerConfig,
) -> (TestIdentityProvider, TokenManager<ClientCredentials, MemoryStore>, ManualClock) {
    let clock = ManualClock::new();
    let idp = TestIdentityProvider::start_with_clock(clock.clone()).await.expect("provider starts");
    let manager = TokenManager::builder(source(&idp)).clock(clock.clone()).config(config).build();
    (idp, manager, clock)
}

/// Polls `cond` every 5 ms for up to `within`; true if it became true.
pub async fn eventually(within: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + within;
    while tokio::time::Instant::now() < deadline {
        if cond() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    cond()
}

/// Serves `app` on a free loopback port until the test ends; returns its address.
pub async fn serve(app: axum::Router) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("a free loopback port");
    let addr = listener.local_addr().expect("bound address");
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}
