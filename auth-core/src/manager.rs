//! The token manager: keeps one source's token, shares one fetch among all callers,
//! refreshes ahead of expiry in the background, and serves the still-valid token
//! while the identity provider is failing.
//!
//! Lifecycle of a cached token (times relative to its lifetime `L`):
//!
//! ```text
//! issued ──── fresh ────▶ refresh_at ── refreshing ──▶ usable_until ─▶ expires_at
//!            hot path:       one caller starts a        callers wait for
//!            return it       background refresh;        a new token
//!                            everyone gets the current
//! ```
//!
//! `refresh_at` is at 80 % of `L` (or earlier if [`ManagerConfig::refresh_before`]
//! says so, never before half of `L`), made earlier by a random jitter of up to
//! 5 % of `L` so a fleet does
//! not refresh in step. `usable_until` leaves a small margin before expiry so a
//! token never reaches a server already expired.
//!
//! The manager never sleeps on its [`Clock`]: every decision compares against it on
//! access. A [`ManualClock`](crate::clock::ManualClock) therefore drives the whole
//! lifecycle in tests without touching the async runtime's timers.

use std::cell::RefCell;
use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use arc_swap::ArcSwapOption;
use sha2::{Digest, Sha256};
use thread_local::ThreadLocal;
use tokio::runtime::Handle;
use tokio::sync::watch;
use tracing::Instrument;

use crate::clock::{Clock, SystemClock, earlier, secs};
use crate::error::{Error, Result};
use crate::metrics::{ManagerMetrics, StoreOp};
use crate::source::{CacheKey, CredentialSource, FetchContext, WithScopes};
use crate::store::{Lease, MemoryStore, TokenStore};
use crate::token::{MAX_LIFETIME, Token};

/// When to refresh, how to retry, how long to wait.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct ManagerConfig {
    /// Refresh once this fraction of the lifetime has passed (default 0.8): a
    /// one-hour token is renewed 12 minutes early, which is also how long an
    /// identity provider outage goes unnoticed by callers.
    pub refresh_ratio: f64,
    /// …or at least this long before expiry, whichever is earlier, but never before
    /// half of the lifetime (default 0: the ratio alone decides). A fixed lead makes
    /// short tokens refresh at half-life, twice per lifetime.
    pub refresh_before: Duration,
    /// Refresh up to this fraction of the lifetime earlier still, at random (default 0.05).
    pub refresh_jitter: f64,
    /// Stop handing out a token this long before it expires, at most a tenth of its
    /// lifetime (default 5 s), so it does not expire on its way to the server.
    pub expiry_margin: Duration,
    /// Never start background refreshes closer together than this (default 1 s); a
    /// provider that re-issues a nearly expired token cannot make us spin.
    pub min_refresh_interval: Duration,
    /// Retry and backoff.
    pub retry: RetryPolicy,
    /// Longest a caller waits for a token before getting a timeout (default 30 s).
    pub wait_timeout: Duration,
    /// How long a fetch lease lasts if its holder dies (default 10 s). The holder
    /// renews it while its fetch runs (stores that can: memory, Redis), so a slow
    /// fetch keeps it and a dead holder stalls the others this long at most.
    pub lease_ttl: Duration,
    /// The longest one fetch may take, store and lease included (default 60 s):
    /// a source or store whose future never completes is cut off with a timeout,
    /// and the next caller starts a new fetch.
    pub fetch_timeout: Duration,
}

impl Default for ManagerConfig {
    fn default() -> Self {
        Self {
            refresh_ratio: 0.8,
            refresh_before: Duration::ZERO,
            refresh_jitter: 0.05,
            expiry_margin: Duration::from_secs(5),
            min_refresh_interval: Duration::from_secs(1),
            retry: RetryPolicy::default(),
            wait_timeout: Duration::from_secs(30),
            lease_ttl: Duration::from_secs(10),
            fetch_timeout: Duration::from_secs(60),
        }
    }
}

impl ManagerConfig {
    /// The same settings with every value forced into a workable range, so a typo
    /// in a configuration file cannot make arithmetic overflow or a ratio go negative.
    pub fn sanitized(mut self) -> Self {
        const DAY: Duration = Duration::from_secs(24 * 3600);
        let fraction = |x: f64, max: f64| if x.is_finite() { x.clamp(0.0, max) } else { 0.0 };
        self.refresh_ratio =
            if self.refresh_ratio.is_finite() { self.refresh_ratio.clamp(0.0, 1.0) } else { 0.8 };
        self.refresh_jitter = fraction(self.refresh_jitter, 0.5);
        self.refresh_before = self.refresh_before.min(DAY);
        self.expiry_margin = self.expiry_margin.min(DAY);
        self.min_refresh_interval = self.min_refresh_interval.min(DAY);
        self.wait_timeout = self.wait_timeout.clamp(Duration::from_millis(1), DAY);
        self.lease_ttl = self.lease_ttl.clamp(Duration::from_millis(100), DAY);
        self.fetch_timeout = self.fetch_timeout.clamp(Duration::from_millis(1), DAY);
        let r = &mut self.retry;
        r.attempts = r.attempts.clamp(1, 10);
        r.attempt_delay = r.attempt_delay.min(DAY);
        r.max_attempt_delay = r.max_attempt_delay.min(DAY);
        r.backoff_max = r.backoff_max.min(DAY);
        r.backoff_base = r.backoff_base.min(r.backoff_max);
        r.retry_after_cap = r.retry_after_cap.min(DAY);
        r.non_retryable_ttl = r.non_retryable_ttl.min(DAY);
        r.shared_failure_max = r.shared_failure_max.min(DAY);
        self
    }
}

/// How failed token requests are retried.
///
/// Two levels: a few quick *attempts* inside one fetch (for a dropped connection),
/// then, once a fetch has failed, a *backoff* during which the failure is remembered
/// and returned to callers that have no valid token, so a herd cannot hammer a
/// failing provider. `Retry-After` is honoured at both levels.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct RetryPolicy {
    /// Attempts per fetch for retryable errors (default 3; 1 = no inline retry).
    pub attempts: u32,
    /// Delay before the second attempt, doubled each time (default 100 ms).
    pub attempt_delay: Duration,
    /// Longest delay between attempts; a longer `Retry-After` ends the fetch (default 2 s).
    pub max_attempt_delay: Duration,
    /// Backoff after the first failed fetch, doubled per consecutive failure, with
    /// jitter (default 1 s).
    pub backoff_base: Duration,
    /// Longest backoff (default 60 s).
    pub backoff_max: Duration,
    /// Longest `Retry-After` honoured (default 5 minutes).
    pub retry_after_cap: Duration,
    /// How long a non-retryable failure (`invalid_client`, …) is remembered (default 5 s).
    pub non_retryable_ttl: Duration,
    /// Longest a failure is shared through the store with the managers waiting on
    /// the same fetch (default 5 s): the fleet backs off together, briefly; the
    /// manager that failed remembers its own backoff, `Retry-After` included.
    pub shared_failure_max: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            attempts: 3,
            attempt_delay: Duration::from_millis(100),
            max_attempt_delay: Duration::from_secs(2),
            backoff_base: Duration::from_secs(1),
            backoff_max: Duration::from_secs(60),
            retry_after_cap: Duration::from_secs(300),
            non_retryable_ttl: Duration::from_secs(5),
            shared_failure_max: Duration::from_secs(5),
        }
    }
}

impl RetryPolicy {
    /// How long to remember the failure of the `consecutive`-th failed fetch in a row.
    pub fn backoff(&self, error: &Error, consecutive: u32) -> Duration {
        if !error.is_retryable() {
            return self.non_retryable_ttl;
        }
        let exp = self.backoff_base.saturating_mul(1u32 << consecutive.saturating_sub(1).min(20));
        let exp = exp.min(self.backoff_max);
        // "Equal jitter": at least half the backoff, so the bound is predictable.
        let jittered = secs(exp.as_secs_f64() * (0.5 + fastrand::f64() * 0.5), exp);
        let asked = error.retry_after().unwrap_or_default().min(self.retry_after_cap);
        jittered.max(asked)
    }

    fn attempt_delay(&self, attempt: u32, retry_after: Option<Duration>) -> Option<Duration> {
        let exp = self.attempt_delay.saturating_mul(1u32 << attempt.saturating_sub(1).min(16));
        let delay = exp.max(retry_after.unwrap_or_default());
        (delay <= self.max_attempt_delay).then_some(delay)
    }
}

/// Counters of what a manager has done, for dashboards and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ManagerStats {
    /// Calls to [`CredentialSource::fetch`], counting each attempt.
    pub fetches: u64,
    /// Calls to [`CredentialSource::refresh`].
    pub refreshes: u64,
    /// Fetches that ended in an error after all attempts.
    pub failures: u64,
    /// Tokens taken from the store instead of fetched (another manager fetched them).
    pub from_store: u64,
    /// Tokens dropped because a server rejected them.
    pub invalidations: u64,
    /// Times a rejection was held off because a fresh token did not cure it.
    pub holds: u64,
    /// API calls sent again after a 429, a 503 or a failed connection, by a
    /// client that retries them (the FHIR client does; see [`Authenticator::api_retried`](crate::client::Authenticator::api_retried)).
    pub api_retries: u64,
    /// API answers judged to reject a token of this manager's (see
    /// [`Authenticator::token_rejected`](crate::client::Authenticator::token_rejected)).
    pub rejections: u64,
    /// API requests sent again with a fresh token after a rejection.
    pub replays: u64,
}

#[derive(Debug, Default)]
struct Counters {
    fetches: AtomicU64,
    refreshes: AtomicU64,
    failures: AtomicU64,
    from_store: AtomicU64,
    invalidations: AtomicU64,
    holds: AtomicU64,
    api_retries: AtomicU64,
    rejections: AtomicU64,
    replays: AtomicU64,
}

fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

/// Caches, shares and refreshes the tokens of one [`CredentialSource`].
///
/// Cheap to clone: clones share everything. Needs a Tokio runtime (background
/// refreshes are spawned onto it).
///
/// ```
/// # use auth_core::{TokenManager, oauth2::OAuth2Source, ClientSecret};
/// # async fn demo() -> auth_core::Result<()> {
/// let source = OAuth2Source::builder(
///     "https://idp.example/token", "my-client", ClientSecret::new("s3cret"))
///     .scopes(["system/Patient.rs"])
///     .build()?;
/// let tokens = TokenManager::new(source);
/// let token = tokens.token().await?;          // fetched once, then cached
/// println!("valid for {:?}", token.remaining(std::time::SystemTime::now()));
/// # Ok(()) }
/// ```
pub struct TokenManager<S, T = MemoryStore> {
    shared: Arc<Shared<S, T>>,
}

impl<S, T> Clone for TokenManager<S, T> {
    fn clone(&self) -> Self {
        Self { shared: self.shared.clone() }
    }
}

impl<S: CredentialSource, T: TokenStore> fmt::Debug for TokenManager<S, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenManager")
            .field("source", &self.shared.source)
            .field("store", &self.shared.store)
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

struct Shared<S, T> {
    source: S,
    /// Shared with the managers of other scope sets ([`TokenManager::scoped`]).
    store: Arc<T>,
    /// The managers of other scope sets, one per set, made on first use.
    scoped: Mutex<HashMap<Vec<String>, TokenManager<S, T>>>,
    clock: Arc<dyn Clock>,
    ctx: FetchContext,
    config: ManagerConfig,
    current: ArcSwapOption<Cached>,
    state: Mutex<State>,
    /// Monotonic nanoseconds before which no background refresh may start: lets the
    /// hot path skip the state lock while a refresh runs or a backoff holds.
    refresh_gate: AtomicU64,
    counters: Counters,
    metrics: ManagerMetrics,
    /// The hot path's view of `current`, one per thread (see [`Local`]).
    local: ThreadLocal<RefCell<Option<Local>>>,
    /// Bumped after every change of `current`: a thread's [`Local`] taken under
    /// another generation is out of date.
    generation: AtomicU64,
}

/// What a thread remembers of the cached token between its calls to
/// [`TokenManager::token`]: enough to hand it out again while it is fresh, without
/// loading `current` (arc_swap's load writes a per-thread debt slot twice, the most
/// costly part of the hot path after the clock). Only the fresh case is served from
/// here; everything else (refresh ahead, expiry, a new token) takes the full path.
/// A thread that stops calling keeps its copy of a replaced token until its next
/// call or the manager's drop; it is never handed out again.
struct Local {
    /// `Shared::generation` read before `current` was.
    generation: u64,
    token: Arc<Token>,
    refresh_at: SystemTime,
}

struct Cached {
    token: Arc<Token>,
    /// Each thread's own copy of `token`, made on its first use: handing out clones
    /// of one shared `Arc` makes every core fight over its reference count.
    per_thread: ThreadLocal<Arc<Token>>,
    refresh_at: SystemTime,
    usable_until: SystemTime,
}

impl Cached {
    fn for_this_thread(&self) -> Arc<Token> {
        self.per_thread.get_or(|| Arc::new(self.token.unshared())).clone()
    }
}

type Outcome = Option<Result<Arc<Token>>>;

/// Deadlines here are monotonic readings of the clock: a wall-clock step must not
/// stretch a backoff.
#[derive(Default)]
struct State {
    inflight: Option<watch::Receiver<Outcome>>,
    failure: Option<Failure>,
    refresh_not_before: Option<Duration>,
    /// Hashes of the last tokens a server rejected: never adopted again from a store.
    rejected: Vec<[u8; 32]>,
    /// While a rejection that fresh tokens do not cure is held off: no rejected
    /// token is dropped, so none is fetched, until then.
    hold: Option<Hold>,
    /// Backing off a failure, no look at the store before this.
    probe_not_before: Option<Duration>,
    /// The running fetch's task, to stop it on shutdown.
    task: Option<tokio::task::AbortHandle>,
    /// The fetch lease this manager holds, to give it back on shutdown.
    lease: Option<Lease>,
}

/// A rejection no fresh token cured, and how long it is held off.
struct Hold {
    until: Duration,
    /// Holds in a row, for the exponential length.
    consecutive: u32,
}

/// What [`TokenManager::invalidate`] did with a rejected token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Invalidation {
    /// It was the cached token, and is gone: the next caller fetches a new one.
    Dropped,
    /// It was no longer the cached one (another caller already replaced it).
    NotCurrent,
    /// Kept: a token fetched to replace a rejected one was rejected too, so the
    /// rejection is likely not about the token, and no token is dropped (so none
    /// fetched) for this reason for `retry_after`.
    Held {
        /// How long the hold lasts from now.
        retry_after: Duration,
    },
}

impl Invalidation {
    /// Whether the token was dropped.
    pub fn dropped(self) -> bool {
        self == Self::Dropped
    }
}

struct Failure {
    error: Error,
    retry_at: Duration,
    consecutive: u32,
}

const REMEMBERED_REJECTIONS: usize = 8;

fn fingerprint(token: &Token) -> [u8; 32] {
    Sha256::digest(token.access_token().expose_secret().as_bytes()).into()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reason {
    /// No usable token: callers are waiting.
    Needed,
    /// The token is still usable; getting the next one ahead of time.
    Refresh,
    /// A failure is being backed off: only look whether another manager sharing
    /// the store has stored a token since, never ask the provider.
    Probe,
}

/// Backing off a failure, the store is looked at no more often than this (another
/// manager sharing it may have stored a token that this one could use).
const PROBE_INTERVAL: Duration = Duration::from_secs(1);

/// Builds a [`TokenManager`].
///
/// The result does not depend on the order of the calls: [`ManagerBuilder::config`]
/// sets every setting, and the single-setting calls ([`ManagerBuilder::retry`],
/// [`ManagerBuilder::refresh_ahead`]) win over it wherever they come.
#[derive(Debug)]
pub struct ManagerBuilder<S, T> {
    source: S,
    store: T,
    clock: Arc<dyn Clock>,
    config: ManagerConfig,
    retry: Option<RetryPolicy>,
    refresh_ahead: Option<(Duration, f64)>,
}

impl<S: CredentialSource> TokenManager<S, MemoryStore> {
    /// A manager with the in-memory store, the system clock and default settings.
    pub fn new(source: S) -> Self {
        Self::builder(source).build()
    }

    /// Starts configuring a manager.
    pub fn builder(source: S) -> ManagerBuilder<S, MemoryStore> {
        ManagerBuilder {
            source,
            store: MemoryStore::new(),
            clock: Arc::new(SystemClock),
            config: ManagerConfig::default(),
            retry: None,
            refresh_ahead: None,
        }
    }
}

impl<S: CredentialSource, T: TokenStore> ManagerBuilder<S, T> {
    /// Keeps tokens in `store` (share an `Arc<MemoryStore>`, or a fleet-wide store).
    pub fn store<U: TokenStore>(self, store: U) -> ManagerBuilder<S, U> {
        ManagerBuilder {
            source: self.source,
            store,
            clock: self.clock,
            config: self.config,
            retry: self.retry,
            refresh_ahead: self.refresh_ahead,
        }
    }

    /// Reads time from `clock` (a [`ManualClock`](crate::clock::ManualClock) in tests).
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// Sets every setting ([`ManagerBuilder::retry`] and
    /// [`ManagerBuilder::refresh_ahead`] still win, called before or after).
    pub fn config(mut self, config: ManagerConfig) -> Self {
        self.config = config;
        self
    }

    /// Sets the retry policy.
    pub fn retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = Some(retry);
        self
    }

    /// Sets when to refresh: `before` expiry or at `ratio` of the lifetime, whichever is earlier.
    pub fn refresh_ahead(mut self, before: Duration, ratio: f64) -> Self {
        self.refresh_ahead = Some((before, ratio));
        self
    }

    /// Finishes the manager. Out-of-range settings are brought into range
    /// (see [`ManagerConfig::sanitized`]).
    pub fn build(mut self) -> TokenManager<S, T> {
        if let Some(retry) = self.retry.take() {
            self.config.retry = retry;
        }
        if let Some((before, ratio)) = self.refresh_ahead.take() {
            self.config.refresh_before = before;
            self.config.refresh_ratio = ratio;
        }
        TokenManager::with_parts(self.source, Arc::new(self.store), self.clock, self.config.sanitized())
    }
}

impl<S: CredentialSource, T: TokenStore> TokenManager<S, T> {
    fn with_parts(source: S, store: Arc<T>, clock: Arc<dyn Clock>, config: ManagerConfig) -> Self {
        // Each manager (a scoped one too) takes its handles once, labelled with its provider.
        let metrics = ManagerMetrics::new(source.cache_key().provider());
        TokenManager {
            shared: Arc::new(Shared {
                source,
                store,
                scoped: Mutex::new(HashMap::new()),
                ctx: FetchContext::new(clock.clone()),
                clock,
                config,
                current: ArcSwapOption::empty(),
                state: Mutex::new(State::default()),
                refresh_gate: AtomicU64::new(0),
                counters: Counters::default(),
                metrics,
                local: ThreadLocal::new(),
                generation: AtomicU64::new(0),
            }),
        }
    }
}

impl<S: CredentialSource, T: TokenStore> TokenManager<S, T> {
    /// A valid token: the cached one, or a new one if there is none.
    ///
    /// Waits only when no usable token exists; all callers waiting at that moment
    /// share one fetch and its result, success or error. Near expiry the cached token
    /// is returned at once while one background refresh gets the next.
    pub async fn token(&self) -> Result<Arc<Token>> {
        let now = self.shared.clock.now_coarse();
        if let Some(token) = self.shared.local_fresh(now) {
            self.shared.metrics.cache_hit();
            return Ok(token);
        }
        let generation = self.shared.generation.load(Ordering::Acquire);
        if let Some(cached) = &*self.shared.current.load() {
            if now < cached.refresh_at {
                self.shared.metrics.cache_hit();
                return Ok(self.shared.keep_local(generation, cached));
            }
            if now < cached.usable_until {
                self.shared.start_refresh();
                self.shared.metrics.cache_hit();
                return Ok(cached.for_this_thread());
            }
        }
        self.shared.metrics.cache_miss();
        let started = Instant::now();
        let span = tracing::debug_span!("token_wait", provider = self.shared.source.cache_key().provider());
        let result = self.shared.clone().wait_for_token().instrument(span).await;
        self.shared.metrics.waited(started.elapsed());
        result
    }

    /// The cached token if it is usable now, without fetching or refreshing.
    pub fn cached(&self) -> Option<Arc<Token>> {
        let now = self.shared.clock.now();
        self.shared.current.load_full().filter(|c| now < c.usable_until).map(|c| c.token.clone())
    }

    /// Drops `token` because a server rejected it, if it is still the cached one.
    ///
    /// A newer token that another caller already fetched is kept: only the exact
    /// rejected value is dropped, here and in the store. While a rejection that a
    /// fresh token did not cure is held off ([`TokenManager::replacement_rejected`]),
    /// nothing is dropped: [`Invalidation::Held`].
    pub async fn invalidate(&self, token: &Token) -> Invalidation {
        let key = self.shared.source.cache_key();
        if let Some(retry_after) = self.shared.held() {
            return Invalidation::Held { retry_after };
        }
        // Remembered first, so a fetch that starts meanwhile cannot adopt it
        // from the store.
        self.shared.remember_rejected(token);
        // The store before memory: once memory forgets the token, callers fetch,
        // and that fetch must not find the rejected token still in the store.
        if let Err(e) = self.shared.store.remove(key, token).await {
            self.shared.metrics.store_error(StoreOp::Remove);
            tracing::warn!(key = %key, error = %e, "could not remove rejected token from store");
        }
        if self.shared.forget(token) {
            bump(&self.shared.counters.invalidations);
            tracing::info!(key = %key, "token rejected by server; dropped");
            Invalidation::Dropped
        } else {
            Invalidation::NotCurrent
        }
    }

    /// Says that a request replayed with `token`, fetched to replace a rejected
    /// one, was rejected too: the rejection is likely not about the token (a
    /// gateway in front, a wrong audience, a server clock ahead of the identity
    /// provider's). Rather than a token request per call, rejected tokens are kept
    /// for a while (the retry policy's backoff, doubling while it goes on) and the
    /// calls fail at once. Returns how long.
    pub fn replacement_rejected(&self, token: &Token) -> Duration {
        let _ = token;
        let mono = self.shared.mono();
        let retry = &self.shared.config.retry;
        let mut state = self.shared.lock();
        if let Some(hold) = state.hold.as_ref().filter(|h| h.until > mono) {
            return hold.until - mono;
        }
        // Holds in a row double; after a quiet spell as long as the longest hold,
        // the next one starts short again.
        let consecutive = match &state.hold {
            Some(hold) if mono.saturating_sub(hold.until) < retry.backoff_max => {
                hold.consecutive.saturating_add(1)
            }
            _ => 1,
        };
        let length = retry
            .backoff_base
            .saturating_mul(1u32 << consecutive.saturating_sub(1).min(20))
            .min(retry.backoff_max);
        state.hold = Some(Hold { until: mono.saturating_add(length), consecutive });
        tracing::warn!(
            key = %self.shared.source.cache_key(),
            hold_ms = length.as_millis() as u64,
            "a token fetched to replace a rejected one was rejected too; not fetching another for a while"
        );
        bump(&self.shared.counters.holds);
        length
    }

    /// Drops the cached token and tells the identity provider it is no longer needed.
    /// Returns whether the provider was told.
    ///
    /// The token is forgotten as a rejected one is: remembered first, removed from
    /// the store, then from memory, so a fetch running meanwhile cannot take the
    /// revoked token back from the store.
    pub async fn revoke(&self) -> Result<bool> {
        let Some(cached) = self.shared.current.load_full() else { return Ok(false) };
        let key = self.shared.source.cache_key();
        self.shared.remember_rejected(&cached.token);
        if let Err(e) = self.shared.store.remove(key, &cached.token).await {
            self.shared.metrics.store_error(StoreOp::Remove);
            tracing::warn!(key = %key, error = %e, "could not remove revoked token from store");
        }
        self.shared.forget(&cached.token);
        self.shared.source.revoke(&cached.token).await
    }

    /// Stops this manager's fetch in flight and gives back the fetch lease it
    /// holds. Call it before the runtime shuts down, when managers share a store:
    /// a lease left behind holds the others until it lapses ([`ManagerConfig::lease_ttl`]).
    /// The manager stays usable: a later caller fetches again.
    pub async fn shutdown(&self) {
        let (task, lease) = {
            let mut state = self.shared.lock();
            (state.task.take(), state.lease.take())
        };
        if let Some(task) = task {
            task.abort();
        }
        if let Some(lease) = lease
            && let Err(e) = self.shared.store.release(&lease).await
        {
            self.shared.metrics.store_error(StoreOp::Release);
            tracing::warn!(key = %self.cache_key(), error = %e, "could not release the fetch lease on shutdown");
        }
    }

    /// The source tokens come from.
    pub fn source(&self) -> &S {
        &self.shared.source
    }

    /// The store tokens are kept in.
    pub fn store(&self) -> &T {
        &self.shared.store
    }

    /// The manager of tokens with exactly `scopes` (order and duplicates do not
    /// matter): the same source asking for those scopes, on the same store,
    /// clock and settings. One per scope set, made on first use and kept, each
    /// with its own cached token, so a client that needs little asks for little
    /// (`TokenManager::scoped(Patients::SCOPES)`, with the scopes
    /// `#[authenticated_api]` derived) while another one asks for more. This
    /// manager's own scopes give this manager.
    pub fn scoped<I, X>(&self, scopes: I) -> Result<TokenManager<S, T>>
    where
        S: WithScopes,
        I: IntoIterator<Item = X>,
        X: AsRef<str>,
    {
        let mut scopes: Vec<String> = scopes.into_iter().map(|s| s.as_ref().to_owned()).collect();
        scopes.retain(|s| !s.trim().is_empty());
        scopes.sort();
        scopes.dedup();
        if scopes == self.shared.source.scopes() {
            return Ok(self.clone());
        }
        let mut scoped = self.shared.scoped.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(manager) = scoped.get(&scopes) {
            return Ok(manager.clone());
        }
        let source = self.shared.source.with_scopes(&scopes)?;
        let shared = &self.shared;
        let manager =
            Self::with_parts(source, shared.store.clone(), shared.clock.clone(), shared.config.clone());
        scoped.insert(scopes, manager.clone());
        Ok(manager)
    }

    /// The settings in effect (after [`ManagerConfig::sanitized`]).
    pub fn config(&self) -> &ManagerConfig {
        &self.shared.config
    }

    /// The key tokens are cached under.
    pub fn cache_key(&self) -> &CacheKey {
        self.shared.source.cache_key()
    }

    /// Counts an API answer judged to reject this manager's token (see [`ManagerStats::rejections`]).
    pub(crate) fn count_rejection(&self) {
        bump(&self.shared.counters.rejections);
        self.shared.metrics.rejection();
    }

    /// Counts a replay with a fresh token (see [`ManagerStats::replays`]).
    pub(crate) fn count_replay(&self) {
        bump(&self.shared.counters.replays);
        self.shared.metrics.replay();
    }

    /// Counts an API call that a client sent again (see [`ManagerStats::api_retries`]).
    pub fn api_retried(&self) {
        bump(&self.shared.counters.api_retries);
    }

    /// What this manager has done so far.
    pub fn stats(&self) -> ManagerStats {
        let c = &self.shared.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        ManagerStats {
            fetches: get(&c.fetches),
            refreshes: get(&c.refreshes),
            failures: get(&c.failures),
            from_store: get(&c.from_store),
            invalidations: get(&c.invalidations),
            holds: get(&c.holds),
            api_retries: get(&c.api_retries),
            rejections: get(&c.rejections),
            replays: get(&c.replays),
        }
    }
}

impl<S: CredentialSource, T: TokenStore> Shared<S, T> {
    /// This thread's copy of the cached token, if `current` has not changed since the
    /// thread took it and the token is fresh at `now`.
    fn local_fresh(&self, now: SystemTime) -> Option<Arc<Token>> {
        let slot = self.local.get()?.borrow();
        let local = slot.as_ref()?;
        let current = local.generation == self.generation.load(Ordering::Acquire);
        (current && now < local.refresh_at).then(|| local.token.clone())
    }

    /// Remembers `cached`, read from `current` under `generation`, for this thread's
    /// next calls; returns this thread's copy of its token.
    fn keep_local(&self, generation: u64, cached: &Cached) -> Arc<Token> {
        let token = cached.for_this_thread();
        let local = Local { generation, token: token.clone(), refresh_at: cached.refresh_at };
        if let Ok(mut slot) = self.local.get_or(|| RefCell::new(None)).try_borrow_mut() {
            *slot = Some(local);
        }
        token
    }

    /// Replaces the cached token (`None`: forgets it), and so every thread's [`Local`].
    fn set_current(&self, cached: Option<Arc<Cached>>) {
        self.current.store(cached);
        self.generation.fetch_add(1, Ordering::AcqRel);
    }

    /// How long rejections are still held off, if they are.
    fn held(&self) -> Option<Duration> {
        let mono = self.mono();
        self.lock().hold.as_ref().filter(|h| h.until > mono).map(|h| h.until - mono)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // State updates are single assignments; a poisoned lock holds consistent data.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Remembers `token` as refused (rejected or revoked): never adopted from a
    /// store again.
    fn remember_rejected(&self, token: &Token) {
        let mut state = self.lock();
        let hash = fingerprint(token);
        if !state.rejected.contains(&hash) {
            if state.rejected.len() == REMEMBERED_REJECTIONS {
                state.rejected.remove(0);
            }
            state.rejected.push(hash);
        }
    }

    /// Drops `token` from memory if it is still the cached one; whether it was.
    fn forget(&self, token: &Token) -> bool {
        let _state = self.lock();
        let current = self.current.load_full();
        if current.as_ref().is_some_and(|c| c.token.same_value(token)) {
            self.set_current(None);
            true
        } else {
            false
        }
    }

    fn schedule(&self, token: Arc<Token>) -> Cached {
        let cfg = &self.config;
        let life = token.lifetime().as_secs_f64();
        let ahead = cfg.refresh_before.as_secs_f64().max(life * (1.0 - cfg.refresh_ratio));
        let ahead = (ahead + fastrand::f64() * cfg.refresh_jitter * life).min(life * 0.5);
        let margin = cfg.expiry_margin.as_secs_f64().min(life * 0.1);
        let expires = token.expires_at();
        let usable_until = earlier(expires, secs(margin, MAX_LIFETIME));
        let refresh_at = earlier(expires, secs(ahead, MAX_LIFETIME)).min(usable_until);
        Cached { token, per_thread: ThreadLocal::new(), refresh_at, usable_until }
    }

    fn mono(&self) -> Duration {
        self.clock.monotonic()
    }

    /// Starts one background refresh unless one is running or backoff forbids it.
    fn start_refresh(self: &Arc<Self>) {
        let mono = self.mono();
        if nanos(mono) < self.refresh_gate.load(Ordering::Acquire) {
            return;
        }
        // Refreshing runs on a Tokio runtime; polled outside one (another
        // executor), the current token still serves until it is no longer usable.
        let Ok(runtime) = Handle::try_current() else { return };
        let state = self.lock();
        if state.inflight.is_some()
            || state.failure.as_ref().is_some_and(|f| f.retry_at > mono)
            || state.refresh_not_before.is_some_and(|t| t > mono)
        {
            return;
        }
        self.metrics.refresh_ahead();
        self.spawn_fetch(state, Reason::Refresh, &runtime);
    }

    /// Starts the one fetch, in a task of its own, and returns its outcome's
    /// channel. Takes the state lock's guard and releases it before the task
    /// exists: a runtime that is shutting down drops a new task on the spot, and
    /// the fetch's guard then publishes its end, which takes the lock again.
    fn spawn_fetch(
        self: &Arc<Self>,
        mut state: MutexGuard<'_, State>,
        reason: Reason,
        runtime: &Handle,
    ) -> watch::Receiver<Outcome> {
        let (tx, rx) = watch::channel(None);
        state.inflight = Some(rx.clone());
        self.refresh_gate.store(u64::MAX, Ordering::Release);
        drop(state);
        let mut guard = FetchGuard { shared: self.clone(), tx: Some(tx), reason };
        let deadline = self.config.fetch_timeout;
        // A task of its own: the fetch completes (and is shared) even if the caller
        // that started it is cancelled. Bounded as a whole: a source or store whose
        // future never completes must not hold every later caller.
        let task = runtime.spawn(async move {
            let result = match tokio::time::timeout(deadline, guard.shared.run_fetch(reason)).await {
                Ok(result) => result,
                Err(_) => {
                    let key = guard.shared.source.cache_key();
                    tracing::warn!(key = %key, after_ms = deadline.as_millis() as u64, "token fetch cut off");
                    Err(Error::timeout("token fetch", deadline))
                }
            };
            if let Some(tx) = guard.tx.take() {
                guard.shared.finish(result, reason, tx);
            }
        });
        // The task may be over already (a runtime shutting down): only a running
        // one is worth stopping.
        if !task.is_finished() {
            let mut state = self.lock();
            if state.inflight.as_ref().is_some_and(|r| r.same_channel(&rx)) {
                state.task = Some(task.abort_handle());
            }
        }
        rx
    }

    async fn wait_for_token(self: Arc<Self>) -> Result<Arc<Token>> {
        let mut rx = {
            let mut state = self.lock();
            let now = self.clock.now();
            if let Some(cached) = self.current.load_full().filter(|c| now < c.usable_until) {
                return Ok(cached.token.clone());
            }
            let mono = self.mono();
            let backing_off = state.failure.as_ref().filter(|f| f.retry_at > mono).map(|f| f.error.clone());
            // Fetching and waiting both run on Tokio (a task, a timer).
            let runtime = match Handle::try_current() {
                Ok(runtime) => runtime,
                Err(_) if backing_off.is_some() => return Err(backing_off.unwrap_or_else(no_runtime)),
                Err(_) => return Err(no_runtime()),
            };
            match (&state.inflight, backing_off) {
                (Some(rx), _) => rx.clone(),
                (None, None) => self.spawn_fetch(state, Reason::Needed, &runtime),
                // Backing off: the provider is not asked, but another manager sharing
                // the store may have stored a token since (one look at a time).
                (None, Some(error)) => {
                    if state.probe_not_before.is_some_and(|t| t > mono) {
                        return Err(error);
                    }
                    state.probe_not_before = Some(mono.saturating_add(PROBE_INTERVAL));
                    self.spawn_fetch(state, Reason::Probe, &runtime)
                }
            }
        };
        // Already over (the runtime dropped the task on the spot): no timer needed.
        if let Some(result) = rx.borrow().clone() {
            return result;
        }
        let wait = self.config.wait_timeout;
        match tokio::time::timeout(wait, rx.wait_for(Option::is_some)).await {
            Err(_) => Err(Error::timeout("waiting for a token", wait)),
            Ok(Err(_)) => Err(Error::internal("the token fetch ended without a result")),
            Ok(Ok(outcome)) => match &*outcome {
                Some(result) => result.clone(),
                None => Err(Error::internal("the token fetch ended without a result")),
            },
        }
    }

    /// Publishes a fetch's result: to the cache, the failure memory and every waiter.
    fn finish(&self, result: Result<Arc<Token>>, reason: Reason, tx: watch::Sender<Outcome>) {
        let mono = self.mono();
        {
            let mut state = self.lock();
            let gate = match &result {
                Ok(token) => {
                    self.set_current(Some(Arc::new(self.schedule(token.clone()))));
                    state.failure = None;
                    state.probe_not_before = None;
                    let not_before = mono.saturating_add(self.config.min_refresh_interval);
                    state.refresh_not_before = Some(not_before);
                    not_before
                }
                // A look at the store found nothing: the failure being backed off
                // stands as it was (no new failure, no longer backoff).
                Err(_) if reason == Reason::Probe => state.failure.as_ref().map_or(mono, |f| f.retry_at),
                Err(error) => {
                    bump(&self.counters.failures);
                    let consecutive = state.failure.as_ref().map_or(1, |f| f.consecutive.saturating_add(1));
                    let retry_at = mono.saturating_add(self.config.retry.backoff(error, consecutive));
                    state.failure = Some(Failure { error: error.clone(), retry_at, consecutive });
                    retry_at
                }
            };
            state.inflight = None;
            state.task = None;
            self.refresh_gate.store(nanos(gate), Ordering::Release);
        }
        tx.send_replace(Some(result));
    }

    async fn run_fetch(self: &Arc<Self>, reason: Reason) -> Result<Arc<Token>> {
        let key = self.source.cache_key();
        let span =
            tracing::info_span!("token_fetch", provider = key.provider(), key = %key, reason = ?reason);
        async {
            if reason == Reason::Probe {
                return self.probe_store().await;
            }
            let started = Instant::now();
            let result = self.fetch_shared(reason).await;
            let took = started.elapsed();
            self.metrics.fetched(took, result.is_ok());
            let latency_ms = took.as_millis() as u64;
            match &result {
                Ok(token) => tracing::info!(
                    outcome = "ok",
                    latency_ms,
                    lifetime_secs = token.lifetime().as_secs(),
                    expiry_source = ?token.expiry_source(),
                    "token ready"
                ),
                Err(error) => tracing::warn!(
                    outcome = "error",
                    latency_ms,
                    kind = ?error.kind(),
                    retryable = error.is_retryable(),
                    error = %error,
                    "token fetch failed"
                ),
            }
            result
        }
        .instrument(span)
        .await
    }

    /// Backing off a failure: a token another manager stored since, or the failure.
    async fn probe_store(&self) -> Result<Arc<Token>> {
        if let Some(token) = self.fresh_from_store(Reason::Needed).await {
            tracing::info!(key = %self.source.cache_key(), "backing off, but another manager stored a token: using it");
            return Ok(token);
        }
        let remembered = self.lock().failure.as_ref().map(|f| f.error.clone());
        Err(remembered.unwrap_or_else(|| Error::internal("a store look without a failure to back off")))
    }

    /// Gets a token through the store: take a fresh one if another manager stored
    /// it, else take the lease and fetch (renewing the lease meanwhile, and sharing
    /// a failure through the store), else wait for the lease holder's token, or its
    /// failure.
    async fn fetch_shared(self: &Arc<Self>, reason: Reason) -> Result<Arc<Token>> {
        let key = self.source.cache_key();
        let give_up_waiting = Instant::now() + self.config.wait_timeout;
        let mut poll = Duration::from_millis(5);
        loop {
            if let Some(token) = self.fresh_from_store(reason).await {
                return Ok(token);
            }
            // A manager with a failure of its own keeps its own backoff (it just
            // ended, so it is trying again); one without backs off with the fleet.
            let own_failure = self.lock().failure.is_some();
            if !own_failure && let Some(error) = self.shared_failure().await {
                return Err(error);
            }
            match self.store.try_lease(key, self.config.lease_ttl).await {
                Ok(Some(lease)) => {
                    let mut held = HeldLease { shared: self.clone(), lease: Some(lease.clone()) };
                    self.lock().lease = Some(lease.clone());
                    // The previous holder may have stored its token just before releasing.
                    let result = match self.fresh_from_store(reason).await {
                        Some(token) => Ok(token),
                        None => self.fetch_holding(reason, &lease).await,
                    };
                    if let Err(error) = &result {
                        // The others back off with this one rather than each try the
                        // failing provider in turn.
                        let retry = &self.config.retry;
                        let ttl = retry.backoff(error, 1).min(retry.shared_failure_max);
                        if let Err(e) = self.store.put_failure(key, ttl).await {
                            self.metrics.store_error(StoreOp::Failure);
                            tracing::warn!(key = %key, error = %e, "could not share the failure through the store");
                        }
                    }
                    self.lock().lease = None;
                    if let Some(lease) = held.lease.take()
                        && let Err(e) = self.store.release(&lease).await
                    {
                        self.metrics.store_error(StoreOp::Release);
                        tracing::warn!(key = %key, error = %e, "could not release fetch lease; it will lapse");
                    }
                    return result;
                }
                // The holder renews its lease while it fetches: wait for its token
                // (or its failure) as long as a caller would.
                Ok(None) if Instant::now() < give_up_waiting => {
                    tokio::time::sleep(poll).await;
                    poll = (poll * 2).min(Duration::from_millis(200));
                }
                Ok(None) => {
                    tracing::warn!(key = %key, "lease holder produced no token in time; fetching anyway");
                    return self.fetch_and_store(reason).await;
                }
                Err(e) => {
                    self.metrics.store_error(StoreOp::Lease);
                    tracing::warn!(key = %key, error = %e, "token store unavailable; fetching without a lease");
                    return self.fetch_and_store(reason).await;
                }
            }
        }
    }

    /// A failure another manager sharing the store recorded, as this manager's
    /// error: it backs off with the fleet for as long as is left.
    async fn shared_failure(&self) -> Option<Error> {
        let key = self.source.cache_key();
        match self.store.failure(key).await {
            Ok(Some(left)) => {
                tracing::info!(key = %key, left_ms = left.as_millis() as u64, "another manager's fetch just failed; backing off with it");
                Some(Error::shared_failure(left))
            }
            Ok(None) => None,
            Err(e) => {
                self.metrics.store_error(StoreOp::Failure);
                tracing::warn!(key = %key, error = %e, "token store read failed; treating as no shared failure");
                None
            }
        }
    }

    /// Fetches while holding `lease`, renewing it every third of its life so it
    /// outlives a slow fetch (and lapses soon after a holder that died).
    async fn fetch_holding(&self, reason: Reason, lease: &Lease) -> Result<Arc<Token>> {
        let ttl = self.config.lease_ttl;
        let fetch = self.fetch_and_store(reason);
        tokio::pin!(fetch);
        loop {
            tokio::select! {
                result = &mut fetch => return result,
                () = tokio::time::sleep(ttl / 3) => {
                    match self.store.renew(lease, ttl).await {
                        Ok(true) => {}
                        Ok(false) => tracing::debug!(key = %self.source.cache_key(), "fetch lease not renewed (lapsed, or the store cannot)"),
                        Err(e) => {
                            self.metrics.store_error(StoreOp::Renew);
                            tracing::warn!(key = %self.source.cache_key(), error = %e, "could not renew the fetch lease");
                        }
                    }
                }
            }
        }
    }

    async fn fresh_from_store(&self, reason: Reason) -> Option<Arc<Token>> {
        let key = self.source.cache_key();
        let token = match self.store.get(key).await {
            Ok(token) => token?,
            Err(e) => {
                self.metrics.store_error(StoreOp::Get);
                tracing::warn!(key = %key, error = %e, "token store read failed; treating as a miss");
                return None;
            }
        };
        let now = self.clock.now();
        let scheduled = self.schedule(token);
        let fresh = match reason {
            Reason::Needed | Reason::Probe => now < scheduled.usable_until,
            Reason::Refresh => now < scheduled.refresh_at,
        };
        let current = self.current.load_full();
        let same_as_current = current.is_some_and(|c| c.token.same_value(&scheduled.token));
        let rejected = self.lock().rejected.contains(&fingerprint(&scheduled.token));
        if fresh && !same_as_current && !rejected {
            bump(&self.counters.from_store);
            Some(scheduled.token)
        } else {
            None
        }
    }

    async fn fetch_and_store(&self, reason: Reason) -> Result<Arc<Token>> {
        let token = Arc::new(self.fetch_from_source(reason).await?);
        let key = self.source.cache_key();
        if let Err(e) = self.store.put(key, token.clone()).await {
            self.metrics.store_error(StoreOp::Put);
            tracing::warn!(key = %key, error = %e, "token store write failed; token kept in this process");
        }
        Ok(token)
    }

    async fn fetch_from_source(&self, mut reason: Reason) -> Result<Token> {
        if reason == Reason::Refresh
            && self.source.supports_refresh()
            && let Some(current) = self.current.load_full()
            && let Some(refresh_token) = current.token.refresh_token()
        {
            bump(&self.counters.refreshes);
            let refreshed = match self.time_left_usable() {
                Some(left) => tokio::time::timeout(left, self.source.refresh(&self.ctx, refresh_token)).await,
                None => Ok(self.source.refresh(&self.ctx, refresh_token).await),
            };
            match &refreshed {
                Ok(Ok(Some(_))) => self.metrics.token_request(Ok(())),
                Ok(Ok(None)) => {}
                Ok(Err(e)) => self.metrics.token_request(Err(e.kind())),
                Err(_) => self.metrics.token_request(Err(crate::ErrorKind::Timeout)),
            }
            match refreshed {
                // RFC 6749 §6: without a new refresh token, the old one stays valid.
                Ok(Ok(Some(token))) if token.refresh_token().is_none() => {
                    return Ok(token.with_refresh_token(refresh_token.clone()));
                }
                Ok(Ok(Some(token))) => return Ok(token),
                Ok(Ok(None)) => {}
                Ok(Err(e)) => tracing::info!(error = %e, "refresh grant failed; requesting a new token"),
                Err(_) => tracing::info!("refresh grant outlasted the current token; requesting a new token"),
            }
        }
        let retry = &self.config.retry;
        let mut attempt = 1;
        loop {
            bump(&self.counters.fetches);
            // Ahead of expiry, an attempt may last only as long as the current
            // token is handed out: past that, callers wait on this fetch, and a
            // hung attempt would hand them its timeout.
            let bound = if reason == Reason::Refresh { self.time_left_usable() } else { None };
            let outcome = match bound {
                Some(left) => tokio::time::timeout(left, self.source.fetch(&self.ctx)).await.ok(),
                None => Some(self.source.fetch(&self.ctx).await),
            };
            match &outcome {
                Some(Ok(_)) => self.metrics.token_request(Ok(())),
                Some(Err(e)) => self.metrics.token_request(Err(e.kind())),
                None => self.metrics.token_request(Err(crate::ErrorKind::Timeout)),
            }
            let error = match outcome {
                Some(Ok(token)) => return Ok(token),
                Some(Err(error)) => error,
                None if self.time_left_usable().is_none() => {
                    // The current token is no longer usable: fetch for the callers
                    // now waiting, with every attempt the policy allows.
                    tracing::info!("refresh outlasted the current token; fetching for the waiting callers");
                    reason = Reason::Needed;
                    attempt = 1;
                    continue;
                }
                None => Error::timeout("token request", bound.unwrap_or_default()),
            };
            if !error.is_retryable() || attempt >= retry.attempts {
                return Err(error);
            }
            let Some(delay) = retry.attempt_delay(attempt, error.retry_after()) else {
                return Err(error);
            };
            tracing::debug!(attempt, delay_ms = delay.as_millis() as u64, error = %error, "retrying token request");
            tokio::time::sleep(delay).await;
            attempt += 1;
        }
    }

    /// How long the cached token is still handed out, on the manager's clock;
    /// `None` if there is none or it no longer is.
    fn time_left_usable(&self) -> Option<Duration> {
        let current = self.current.load_full()?;
        current.usable_until.duration_since(self.clock.now()).ok().filter(|left| !left.is_zero())
    }
}

fn no_runtime() -> Error {
    Error::configuration(
        "the token manager fetches tokens on a Tokio runtime, and token() was polled outside one",
    )
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// Publishes an error if the fetch task ends without a result: a panicking source
/// or store, or a runtime shutting down. Without it the manager would wait forever
/// on a fetch that no longer exists.
struct FetchGuard<S: CredentialSource, T: TokenStore> {
    shared: Arc<Shared<S, T>>,
    tx: Option<watch::Sender<Outcome>>,
    reason: Reason,
}

impl<S: CredentialSource, T: TokenStore> Drop for FetchGuard<S, T> {
    fn drop(&mut self) {
        if let Some(tx) = self.tx.take() {
            tracing::error!(key = %self.shared.source.cache_key(), "token fetch ended without a result (panic or shutdown)");
            self.shared.finish(
                Err(Error::internal("the token fetch ended without a result")),
                self.reason,
                tx,
            );
        }
    }
}

/// Gives a fetch lease back if the fetch holding it panics or is dropped, so other
/// managers do not wait out the lease's full lifetime for a holder that is gone.
struct HeldLease<S: CredentialSource, T: TokenStore> {
    shared: Arc<Shared<S, T>>,
    lease: Option<Lease>,
}

impl<S: CredentialSource, T: TokenStore> Drop for HeldLease<S, T> {
    fn drop(&mut self) {
        let Some(lease) = self.lease.take() else { return };
        {
            let mut state = self.shared.lock();
            if state.lease.as_ref() == Some(&lease) {
                state.lease = None;
            }
        }
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let shared = self.shared.clone();
            runtime.spawn(async move {
                let _ = shared.store.release(&lease).await;
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oauth2::OAuth2Source;
    use crate::secret::ClientSecret;

    fn source() -> OAuth2Source {
        match OAuth2Source::builder("https://idp.example/token", "c", ClientSecret::new("s")).build() {
            Ok(source) => source,
            Err(e) => panic!("valid configuration refused: {e}"),
        }
    }

    #[test]
    fn the_builder_does_not_depend_on_the_order_of_calls() {
        let config = ManagerConfig {
            wait_timeout: Duration::from_secs(7),
            retry: RetryPolicy { attempts: 9, ..RetryPolicy::default() },
            ..ManagerConfig::default()
        };
        let retry = RetryPolicy { attempts: 2, ..RetryPolicy::default() };
        let ahead = (Duration::from_secs(42), 0.6);
        let before = TokenManager::builder(source())
            .retry(retry.clone())
            .refresh_ahead(ahead.0, ahead.1)
            .config(config.clone())
            .build();
        let after = TokenManager::builder(source())
            .config(config)
            .retry(retry)
            .refresh_ahead(ahead.0, ahead.1)
            .build();
        assert_eq!(before.config(), after.config());
        let c = after.config();
        assert_eq!((c.retry.attempts, c.wait_timeout), (2, Duration::from_secs(7)));
        assert_eq!((c.refresh_before, c.refresh_ratio), (Duration::from_secs(42), 0.6));
    }

    #[test]
    fn one_manager_per_scope_set() {
        let source = OAuth2Source::builder("https://idp.example/token", "c", ClientSecret::new("s"))
            .scopes(["system/Patient.rs", "system/Observation.rs"])
            .build()
            .unwrap();
        let broad = TokenManager::new(source);
        let narrow = broad.scoped(["system/Patient.r"]).unwrap();
        assert_eq!(narrow.cache_key().scopes(), ["system/Patient.r"]);
        assert_eq!(narrow.cache_key().client_id(), "c");
        assert_ne!(narrow.cache_key(), broad.cache_key());
        // Made once per set, whatever the order and duplicates.
        let again = broad.scoped(["system/Patient.r", "system/Patient.r"]).unwrap();
        assert!(Arc::ptr_eq(&narrow.shared, &again.shared));
        // Its own scopes give itself.
        let same = broad.scoped(["system/Observation.rs", "system/Patient.rs"]).unwrap();
        assert!(Arc::ptr_eq(&same.shared, &broad.shared));
        // The store is shared.
        assert!(Arc::ptr_eq(&narrow.shared.store, &broad.shared.store));
    }
}
