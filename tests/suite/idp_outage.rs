//! An identity provider outage under load: no FHIR call fails while the provider
//! fails half its token requests for a minute.
//!
//! The identity provider fails 50 % of token requests (a third each: 503, a reset
//! connection, a hang past the client's timeout) for 60 s while ~1,000 FHIR calls
//! per second run against the healthy FHIR API. Tokens live 20 s, so the manager
//! must renew several times *during* the outage. Asserted:
//!
//! * 0 failed FHIR calls, and no token rejected by the API;
//! * token requests during the outage within the bound the manager's retry policy
//!   allows ([`max_token_requests`], derived from the configuration, not guessed);
//! * recovery: once the provider is healthy, a token issued after the outage is in use.
//!
//! Real HTTP on loopback, the sandbox's emulators, the vendors' real sources.
//! `FAULTS_OUTAGE_SECS` shortens the outage for local iteration (default 60, the
//! issue's); `FAULTS_VENDORS` picks the vendors (default `graphnet,smart`, run at
//! the same time, each with its own driver; `FAULTS_RATE` calls/s in all, default
//! 1000, shared between them); `FAULTS_MAX_IN_FLIGHT` caps each driver's calls
//! under way (default 256); `FAULTS_TOKEN_TIMEOUT_MS` sets the token request
//! timeout (default 2000); `FAULTS_SEED` picks which requests fail (seeded, so a
//! run repeats); `FAULTS_MIX=hang|5xx|reset` makes every failure one
//! kind instead of a third each. The report printed gives the rate actually achieved: a
//! debug build on a busy machine may not reach the rate asked.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use auth_core::{AuthClient, CredentialSource, EndpointOptions, ManagerConfig, RetryPolicy, TokenManager};
use auth_fhir::{FhirClient, Patient};
use auth_providers::graphnet::GraphnetSource;
use auth_providers::smart::SmartSource;
use auth_sandbox::faults::{FaultStats, Faults};
use auth_sandbox::{Sandbox, SandboxConfig};
use tokio::sync::Mutex;

/// Lifetime of issued tokens: several renewals must happen during the outage.
const LIFETIME: Duration = Duration::from_secs(20);
/// The client's timeout for one token request (`FAULTS_TOKEN_TIMEOUT_MS`, default
/// 2 s); a hung request costs this much. Short, so a fetch that meets hangs still
/// ends inside the refresh window (half the lifetime less the expiry margin: 8 s),
/// but not so short that a healthy answer on a busy machine times out.
fn token_timeout() -> Duration {
    Duration::from_millis(env_u64("FAULTS_TOKEN_TIMEOUT_MS", 2000))
}
/// Fraction of token requests that fail during the outage.
const OUTAGE_RATE: f64 = 0.5;
/// Seeds which token requests fail, so a run repeats (`FAULTS_SEED` to vary it).
const OUTAGE_SEED: u64 = 0x5eed_0f0a_7a6e;

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// The manager's settings: the library's defaults, but refresh ahead at half of
/// the lifetime (`refresh_before` longer than half of it), as for any token
/// shorter than two minutes under the pre-issue-9 default of 60 s. The default
/// ratio alone (80 %, less the expiry margin) would leave a 20 s token a renewal
/// window of 2-3 s, shorter than a fetch that meets a hang and retries; half-life
/// gives 8 s. The bound below is derived from whatever these settings are.
fn manager_config() -> ManagerConfig {
    let mut config = ManagerConfig::default();
    config.refresh_before = Duration::from_secs(60);
    config.retry = RetryPolicy::default();
    config
}

/// The shortest gap, between the starts of two consecutive fetches, that the
/// manager allows after a fetch ended in `state`: `0` a success, `k` the k-th
/// failed fetch in a row.
///
/// * After a success the next fetch is the refresh ahead of the new token: not
///   before half its lifetime (`ManagerConfig` docs: "never before half"), and not
///   before `min_refresh_interval`. The lifetime the client sees can be a second
///   short of the configured one (JWT `exp` is in whole seconds), hence `- 1 s`.
///   (A fetch caused by the API rejecting a token would not wait; the test
///   asserts that the API rejected none.)
/// * After the k-th failure in a row the failure is remembered for the backoff,
///   `backoff_base * 2^(k-1)` capped at `backoff_max`, times a jitter of at least
///   0.5 (`RetryPolicy::backoff`); no fetch starts before it ends, whether a
///   refresh or a caller without a token. No `Retry-After` is sent here.
fn min_gap(config: &ManagerConfig, lifetime: Duration, state: usize) -> Duration {
    if state == 0 {
        let half = lifetime.saturating_sub(Duration::from_secs(1)) / 2;
        return half.max(config.min_refresh_interval);
    }
    let r = &config.retry;
    let exp = r.backoff_base.saturating_mul(1u32 << (state - 1).min(20)).min(r.backoff_max);
    exp / 2
}

/// The most token requests the manager can make in `window`: the most fetches
/// whose starts fit in it (the longest sequence of outcomes whose minimal gaps sum
/// to at most `window`, found by dynamic programming over "failures in a row"),
/// plus one fetch already under way when the window opens, times the requests one
/// fetch makes (`attempts`, and one more for a refresh grant if the source has one).
fn max_token_requests(
    config: &ManagerConfig,
    lifetime: Duration,
    window: Duration,
    refresh_grant: bool,
) -> u64 {
    const STATES: usize = 40;
    // earliest[k]: the earliest start, relative to the first, of the n-th fetch
    // given that it leaves the manager in state k (0 = success, k = k-th failure).
    let mut earliest = vec![Some(Duration::ZERO); STATES];
    earliest[0] = Some(Duration::ZERO);
    let mut starts = 1u64;
    loop {
        let mut next = vec![None::<Duration>; STATES];
        for (k, at) in earliest.iter().enumerate() {
            let Some(at) = at else { continue };
            let start = *at + min_gap(config, lifetime, k);
            if start > window {
                continue;
            }
            // The next fetch may succeed (state 0) or fail (state k + 1).
            for outcome in [0, (k + 1).min(STATES - 1)] {
                if next[outcome].is_none_or(|t| start < t) {
                    next[outcome] = Some(start);
                }
            }
        }
        if next.iter().all(Option::is_none) {
            break;
        }
        earliest = next;
        starts += 1;
    }
    let per_fetch = u64::from(config.retry.attempts) + u64::from(refresh_grant);
    (starts + 1) * per_fetch
}

#[derive(Default)]
struct Tally {
    started: AtomicU64,
    ok: AtomicU64,
    failed: AtomicU64,
    /// Failed calls at whose end the manager held no usable token.
    failed_without_token: AtomicU64,
    max_latency_us: AtomicU64,
}

/// Open loop: starts `rate` calls per second whatever the answers' pace, until
/// `halt`, with at most `max_in_flight` under way, like a client's connection pool
/// (unbounded, a machine that falls behind would open connections until the
/// loopback listener refuses them, which tests the machine, not the library). Late
/// calls start as soon as a slot frees up (the schedule is caught up in bursts).
async fn drive(
    fhir: FhirClient,
    rate: u64,
    max_in_flight: usize,
    tally: Arc<Tally>,
    errors: Arc<Mutex<Vec<String>>>,
    halt: Arc<std::sync::atomic::AtomicBool>,
    has_token: Arc<dyn Fn() -> bool + Send + Sync>,
) {
    let period = Duration::from_secs_f64(1.0 / rate as f64);
    let mut ticks = tokio::time::interval(period);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let slots = Arc::new(tokio::sync::Semaphore::new(max_in_flight));
    let mut calls = tokio::task::JoinSet::new();
    let mut n = 0u64;
    while !halt.load(Ordering::Relaxed) {
        ticks.tick().await;
        let Ok(slot) = slots.clone().acquire_owned().await else { break };
        n += 1;
        let fhir = fhir.clone();
        let tally = tally.clone();
        let errors = errors.clone();
        let has_token = has_token.clone();
        tally.started.fetch_add(1, Ordering::Relaxed);
        calls.spawn(async move {
            let _slot = slot;
            let started = Instant::now();
            let id = format!("pat-{}", n % 6 + 1);
            match fhir.read::<Patient>(&id).await {
                Ok(_) => {
                    tally.ok.fetch_add(1, Ordering::Relaxed);
                }
                Err(e) => {
                    tally.failed.fetch_add(1, Ordering::Relaxed);
                    if !has_token() {
                        tally.failed_without_token.fetch_add(1, Ordering::Relaxed);
                    }
                    let mut errors = errors.lock().await;
                    if errors.len() < 20 {
                        errors.push(format!("{:?}: {e} ({e:?})", e.kind()));
                    }
                }
            }
            let us = started.elapsed().as_micros() as u64;
            tally.max_latency_us.fetch_max(us, Ordering::Relaxed);
        });
        // Reap finished calls so the set does not grow for the whole run.
        while calls.try_join_next().is_some() {}
    }
    while calls.join_next().await.is_some() {}
}

/// One vendor under test: its manager, FHIR client and identity provider knobs.
struct Subject<'a, S: CredentialSource> {
    name: &'static str,
    manager: TokenManager<S>,
    fhir: FhirClient,
    idp: Faults,
    refresh_grant: bool,
    /// FHIR requests the API refused for the token (must stay 0).
    api_rejections: Box<dyn Fn() -> u64 + Send + Sync + 'a>,
    /// Tokens the provider issued so far.
    issued: Box<dyn Fn() -> u64 + Send + Sync + 'a>,
}

/// Printed with `Debug` (which dead-code analysis ignores).
#[allow(dead_code)]
#[derive(Debug)]
struct Report {
    name: &'static str,
    calls: u64,
    achieved_rate: f64,
    ok: u64,
    failed: u64,
    failed_without_token: u64,
    max_latency: Duration,
    outage_requests: u64,
    outage_stats: FaultStats,
    bound: u64,
    api_rejections: u64,
    invalidations: u64,
    issued_during_outage: u64,
    fetch_failures: u64,
    recovered_after: Option<Duration>,
    without_token: Duration,
}

async fn run<S: CredentialSource + 'static>(s: Subject<'_, S>, rate: u64, outage: Duration) -> Report {
    let config = manager_config();
    // Warm up: first token, connections open, then the outage, then the recovery.
    let warmup = Duration::from_secs(2);
    // The first token (not under test: retried, in case the machine is busy).
    let mut first = s.manager.token().await;
    for _ in 0..10 {
        if first.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        first = s.manager.token().await;
    }
    first.expect("a token before the outage");
    let tally = Arc::new(Tally::default());
    let errors = Arc::new(Mutex::new(Vec::new()));
    let started = Instant::now();
    let recovery_limit = LIFETIME * 2;
    let max_in_flight = env_u64("FAULTS_MAX_IN_FLIGHT", 256) as usize;
    let halt = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let watched = s.manager.clone();
    let has_token = Arc::new(move || watched.cached().is_some());
    let driver = tokio::spawn(drive(
        s.fhir.clone(),
        rate,
        max_in_flight,
        tally.clone(),
        errors.clone(),
        halt.clone(),
        has_token,
    ));
    // How long the manager had no usable token, sampled every 50 ms.
    let watched = s.manager.clone();
    let without_ms = Arc::new(AtomicU64::new(0));
    let without = without_ms.clone();
    let watch = tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_millis(50)).await;
            if watched.cached().is_none() {
                without.fetch_add(50, Ordering::Relaxed);
            }
        }
    });

    tokio::time::sleep(warmup).await;
    let before = s.idp.stats();
    let issued_before = (s.issued)();
    s.idp.set_hang_for(token_timeout() * 10);
    s.idp.seed(env_u64("FAULTS_SEED", OUTAGE_SEED));
    match std::env::var("FAULTS_MIX").as_deref() {
        // Every failure of one kind, for experiments.
        Ok("hang") => s.idp.set_hang_rate(OUTAGE_RATE),
        Ok("5xx") => s.idp.set_error_rate(OUTAGE_RATE),
        Ok("reset") => s.idp.set_drop_rate(OUTAGE_RATE),
        _ => s.idp.set_outage(OUTAGE_RATE),
    }
    let outage_started = Instant::now();
    tokio::time::sleep(outage).await;
    // What the manager holds as the provider comes back (a token it fetched
    // during the outage, or none).
    let held = s.manager.cached().map(|t| t.expires_at()).unwrap_or(SystemTime::UNIX_EPOCH);
    s.idp.clear();
    let healed_at = Instant::now();
    let outage_window = outage_started.elapsed();
    let after = s.idp.stats();
    let issued_at_heal = (s.issued)();
    let issued_during_outage = issued_at_heal - issued_before;

    // Recovery: the provider issued a token after it came back, and the manager
    // uses a token newer than the one it held then.
    let mut recovery_errors = Vec::new();
    let recovered_after = loop {
        match s.manager.token().await {
            Ok(token) if token.expires_at() > held && (s.issued)() > issued_at_heal => {
                break Some(healed_at.elapsed());
            }
            Ok(_) => {}
            Err(e) => recovery_errors.push(format!("{e}")),
        }
        if healed_at.elapsed() >= recovery_limit {
            break None;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    // Keep the load on a little after recovery, then stop the driver.
    tokio::time::sleep(Duration::from_secs(1)).await;
    // Every call started is finished: `calls == ok + failed`.
    halt.store(true, Ordering::Relaxed);
    let driven = started.elapsed();
    driver.await.unwrap();
    watch.abort();

    let calls = tally.started.load(Ordering::Relaxed);
    let ok = tally.ok.load(Ordering::Relaxed);
    let failed = tally.failed.load(Ordering::Relaxed);
    let outage_stats = after.since(&before);
    let invalidations = s.manager.stats().invalidations;
    let report = Report {
        name: s.name,
        calls,
        achieved_rate: calls as f64 / driven.as_secs_f64(),
        ok,
        failed,
        failed_without_token: tally.failed_without_token.load(Ordering::Relaxed),
        max_latency: Duration::from_micros(tally.max_latency_us.load(Ordering::Relaxed)),
        outage_requests: outage_stats.requests,
        outage_stats,
        bound: max_token_requests(&config, LIFETIME, outage_window, s.refresh_grant),
        api_rejections: (s.api_rejections)(),
        invalidations,
        issued_during_outage,
        fetch_failures: s.manager.stats().failures,
        recovered_after,
        without_token: Duration::from_millis(without_ms.load(Ordering::Relaxed)),
    };
    let errors = errors.lock().await.clone();
    eprintln!("{report:#?}\nfirst errors: {errors:#?}\nrecovery errors: {recovery_errors:#?}");
    assert!(
        report.recovered_after.is_some(),
        "{}: no fresh token {recovery_limit:?} after the provider recovered",
        s.name
    );
    assert_eq!(report.failed, 0, "{}: FHIR calls failed while a valid token existed: {errors:#?}", s.name);
    // No token reached the API expired or was refused: the renewals came in time.
    assert_eq!(report.api_rejections, 0, "{}: the API rejected tokens during the outage", s.name);
    assert_eq!(report.invalidations, 0, "{}: tokens were dropped as rejected", s.name);
    // The outage was real (faults were injected; the dice are seeded, so the same
    // requests fault every run) and tokens were renewed through it (one per
    // lifetime of outage at least).
    let o = &report.outage_stats;
    assert!(o.faulted() > 0, "{}: no fault injected in {} token requests", s.name, o.requests);
    let needed = outage.as_secs() / LIFETIME.as_secs();
    assert!(
        report.issued_during_outage >= needed,
        "{}: {} tokens issued during a {outage:?} outage; at least {needed} are needed",
        s.name,
        report.issued_during_outage
    );
    assert!(
        report.outage_requests <= report.bound,
        "{}: {} token requests during the outage; the retry policy allows at most {}",
        s.name,
        report.outage_requests,
        report.bound
    );
    report
}

fn graphnet(sandbox: &Sandbox) -> Subject<'_, GraphnetSource> {
    let g = sandbox.graphnet();
    let source =
        GraphnetSource::builder(g.token_url(), g.client_id(), g.client_secret(), g.subscription_key())
            .timeout(token_timeout())
            .build()
            .unwrap();
    let manager = TokenManager::builder(source).config(manager_config()).build();
    let fhir = FhirClient::new(
        AuthClient::builder(manager.clone()).profile(manager.source().api_profile()).build().unwrap(),
        &g.fhir_base(),
    )
    .unwrap();
    Subject {
        name: "graphnet",
        manager,
        fhir,
        idp: g.idp_faults().clone(),
        refresh_grant: false,
        api_rejections: Box::new(move || g.api_rejections()),
        issued: Box::new(move || g.registry().issued_count() as u64),
    }
}

fn smart(sandbox: &Sandbox) -> Subject<'_, SmartSource> {
    let e = sandbox.smart();
    let source = integration_tests::smart_source(e).timeout(token_timeout()).build().unwrap();
    let manager = TokenManager::builder(source).config(manager_config()).build();
    let fhir = FhirClient::new(
        AuthClient::builder(manager.clone()).profile(manager.source().api_profile()).build().unwrap(),
        &e.fhir_base(),
    )
    .unwrap();
    Subject {
        name: "smart",
        manager,
        fhir,
        idp: e.idp_faults().clone(),
        refresh_grant: false,
        api_rejections: Box::new(move || e.api_rejections()),
        issued: Box::new(move || e.registry().issued_count() as u64),
    }
}

/// The load tests take the whole machine: one at a time.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identity_provider_outage_under_load() {
    let _serial = SERIAL.lock().await;
    let outage = Duration::from_secs(env_u64("FAULTS_OUTAGE_SECS", 60));
    let rate = env_u64("FAULTS_RATE", 1000);
    let vendors = std::env::var("FAULTS_VENDORS").unwrap_or_else(|_| "graphnet,smart".into());
    let vendors: Vec<&str> = vendors.split(',').map(str::trim).filter(|v| !v.is_empty()).collect();
    let per_vendor = (rate / vendors.len().max(1) as u64).max(1);
    let sandbox = Sandbox::start(SandboxConfig::default().with_token_lifetime(LIFETIME)).await.unwrap();
    let runs = vendors.iter().map(|v| {
        let sandbox = &sandbox;
        async move {
            match *v {
                "graphnet" => run(graphnet(sandbox), per_vendor, outage).await,
                "smart" => run(smart(sandbox), per_vendor, outage).await,
                other => panic!("FAULTS_VENDORS: unknown vendor {other} (graphnet, smart)"),
            }
        }
    });
    let reports = futures_util::future::join_all(runs).await;
    let calls: u64 = reports.iter().map(|r| r.calls).sum();
    let failed: u64 = reports.iter().map(|r| r.failed).sum();
    let achieved: f64 = reports.iter().map(|r| r.achieved_rate).sum();
    eprintln!("in all: {calls} FHIR calls, {achieved:.0}/s achieved of {rate}/s asked, {failed} failed");
}

#[test]
fn the_bound_follows_the_policy() {
    let config = manager_config();
    // With no time, one fetch may start, plus one under way: two fetches.
    let per = u64::from(config.retry.attempts);
    assert_eq!(max_token_requests(&config, LIFETIME, Duration::ZERO, false), 2 * per);
    // Only failures: fetches start at 0, 0.5, 1.5, 3.5, 7.5 s (0.5·2^k backoffs).
    let only_failures =
        max_token_requests(&config, Duration::from_secs(3600), Duration::from_millis(7_500), false);
    assert_eq!(only_failures, (5 + 1) * per);
    // Monotonic in the window.
    let a = max_token_requests(&config, LIFETIME, Duration::from_secs(30), false);
    let b = max_token_requests(&config, LIFETIME, Duration::from_secs(60), false);
    assert!(a < b, "{a} < {b}");
}

/// The knobs themselves: `idp_faults().set_outage(0.5)` fails about half the token
/// requests, with all three kinds of fault, while the FHIR API stays healthy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idp_faults_fail_only_the_identity_provider() {
    let _serial = SERIAL.lock().await;
    let sandbox = Sandbox::start(SandboxConfig::default()).await.unwrap();
    let subject = graphnet(&sandbox);
    subject.manager.token().await.unwrap();
    let g = sandbox.graphnet();
    g.idp_faults().set_hang_for(Duration::from_secs(5));
    g.idp_faults().set_outage(0.5);
    assert_eq!(g.idp_faults().get().hang_rate, 0.5 / 3.0);
    assert_eq!(g.faults().get().error_rate, 0.0, "the emulator-wide knobs are separate");

    let http = reqwest::Client::builder().timeout(Duration::from_millis(1500)).build().unwrap();
    let body = "grant_type=client_credentials&client_id=%5Bclient-id-value%5D&client_secret=%5Bclient-secret-value%5D";
    let token_requests = (0..120).map(|_| {
        let request = http
            .post(g.token_url())
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send();
        async move {
            match request.await {
                Ok(r) if r.status() == 503 => "503",
                Ok(r) => match r.bytes().await {
                    Ok(_) => "ok",
                    Err(e) if e.is_timeout() => "hang",
                    Err(_) => "drop",
                },
                Err(e) if e.is_timeout() => "hang",
                Err(_) => "drop",
            }
        }
    });
    let fhir_calls = (0..120).map(|i| {
        let fhir = subject.fhir.clone();
        async move { fhir.read::<Patient>(&format!("pat-{}", i % 6 + 1)).await }
    });
    let (outcomes, fhir) = tokio::join!(
        futures_util::future::join_all(token_requests),
        futures_util::future::join_all(fhir_calls)
    );
    let count = |kind: &str| outcomes.iter().filter(|o| **o == kind).count() as u64;
    let stats = g.idp_faults().stats();
    eprintln!(
        "120 token requests; client saw {} ok, {} 503, {} dropped, {} timed out; knobs: {stats:?}",
        count("ok"),
        count("503"),
        count("drop"),
        count("hang")
    );
    // Server side counts: the client's view blurs a slow answer on a busy machine
    // into a hang, and its pool may transparently resend a request whose pooled
    // connection a drop had just killed.
    assert!(stats.requests > 120, "the knobs saw every token request: {stats:?}");
    assert!(stats.errors > 0 && stats.drops > 0 && stats.hangs > 0, "every kind of fault: {stats:?}");
    let healthy = stats.requests - stats.faulted();
    assert!((30..=90).contains(&healthy), "about half pass: {stats:?}");
    assert!(count("503") <= stats.errors && count("503") > 0);
    let failed: Vec<_> = fhir.iter().filter_map(|r| r.as_ref().err()).collect();
    assert!(failed.is_empty(), "the FHIR API is not part of the outage: {failed:?}");
    g.idp_faults().clear();
    assert_eq!(g.idp_faults().get(), auth_sandbox::faults::FaultConfig::default());
}
