//! Helpers shared by the integration tests: managers wired to a test identity
//! provider, on the system clock or a manual one; Medplum's FHIR server ([`medplum`]).

use std::time::Duration;

use auth_core::clock::ManualClock;
use auth_core::manager::{ManagerConfig, RetryPolicy};
use auth_core::oauth2::OAuth2Source;
use auth_core::{MemoryStore, TokenManager};
use auth_providers::msk::{MskSource, MskSourceBuilder};
use auth_providers::smart::{SigningAlgorithm, SmartSource, SmartSourceBuilder};
use auth_sandbox::idp::TestIdentityProvider;
use auth_sandbox::{MskEmulator, SmartEmulator};

pub mod medplum;

/// A client credentials source for the provider's default client.
pub fn source(idp: &TestIdentityProvider) -> OAuth2Source {
    let (id, secret) = idp.credentials();
    OAuth2Source::builder(idp.token_url(), id, secret)
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
) -> (TestIdentityProvider, TokenManager<OAuth2Source, MemoryStore>, ManualClock) {
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

/// A source builder for the MSK emulator's registered client, partner and study.
pub fn msk_source(msk: &MskEmulator) -> MskSourceBuilder {
    MskSource::builder(msk.base_url(), msk.client_id(), msk.client_secret())
        .partner_id(msk.partner_id())
        .research_study(msk.research_study())
}

/// A source builder for the SMART emulator's seeded client, with the token URL
/// given and `system/Patient.rs` as its scope.
pub fn smart_source(smart: &SmartEmulator) -> SmartSourceBuilder {
    SmartSource::builder(smart.client_id(), smart.private_key(), SigningAlgorithm::Es384, smart.key_id())
        .token_url(smart.token_url())
        .scopes(["system/Patient.rs"])
}

/// Set in a child process started by [`run_in_child`], to the name of the test it runs.
pub const CHILD_ENV: &str = "FHIR_AUTH_TEST_CHILD";

/// Runs the ignored test `name` (its path in the suite, `module::test`) of this
/// test binary in a process of its own, and asserts that it ran and passed.
///
/// For tests that need the whole process: a global log subscriber or panic hook,
/// or environment variables read at start-up. `configure` adds what the child
/// needs to the command.
pub fn run_in_child(name: &str, configure: impl FnOnce(&mut std::process::Command)) {
    let exe = std::env::current_exe().expect("the test binary's path");
    let mut command = std::process::Command::new(exe);
    command.args(["--exact", name, "--ignored", "--nocapture", "--test-threads=1"]).env(CHILD_ENV, name);
    configure(&mut command);
    let output = command.output().expect("the test binary runs again");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{name} failed in its own process:\n{stdout}\n{stderr}");
    assert!(stdout.contains("1 passed"), "{name} did not run in its own process:\n{stdout}\n{stderr}");
}

/// Fails loudly unless this process was started by [`run_in_child`] for `name`:
/// such a test must not run beside others (it takes over the whole process).
pub fn assert_child(name: &str) {
    let started_for = std::env::var(CHILD_ENV).unwrap_or_default();
    assert_eq!(
        started_for, name,
        "{name} takes over its process; it runs in a child started by its parent test"
    );
}

/// Every log line of the process, from every crate at `TRACE`, kept in memory for
/// a leak check. Installs the global subscriber: only in a test that runs in a
/// process of its own ([`run_in_child`]).
pub fn capture_all_logs() -> CapturedLogs {
    let logs = CapturedLogs::default();
    let writer = logs.clone();
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_span_events(tracing_subscriber::fmt::format::FmtSpan::FULL)
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .init();
    logs
}

/// The log lines [`capture_all_logs`] kept.
#[derive(Clone, Default)]
pub struct CapturedLogs(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl CapturedLogs {
    /// Everything logged so far.
    pub fn text(&self) -> String {
        let bytes = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

impl std::io::Write for CapturedLogs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner).extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A store whose removals take `0` (as a remote store's take a while): for races
/// between a removal and a fetch.
#[derive(Debug, Default)]
pub struct SlowRemove(pub Duration, pub auth_core::MemoryStore);

#[async_trait::async_trait]
impl auth_core::TokenStore for SlowRemove {
    async fn get(
        &self,
        key: &auth_core::CacheKey,
    ) -> auth_core::Result<Option<std::sync::Arc<auth_core::Token>>> {
        self.1.get(key).await
    }
    async fn put(
        &self,
        key: &auth_core::CacheKey,
        token: std::sync::Arc<auth_core::Token>,
    ) -> auth_core::Result<()> {
        self.1.put(key, token).await
    }
    async fn remove(&self, key: &auth_core::CacheKey, token: &auth_core::Token) -> auth_core::Result<bool> {
        tokio::time::sleep(self.0).await;
        self.1.remove(key, token).await
    }
    async fn try_lease(
        &self,
        key: &auth_core::CacheKey,
        ttl: Duration,
    ) -> auth_core::Result<Option<auth_core::store::Lease>> {
        self.1.try_lease(key, ttl).await
    }
    async fn release(&self, lease: &auth_core::store::Lease) -> auth_core::Result<()> {
        self.1.release(lease).await
    }
}
