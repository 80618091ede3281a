#![allow(clippy::expect_used)] // a benchmark whose setup fails should stop loudly
//! P1, the token path's own cost: getting the `Authorization` value for a request
//! from a warm cache, side by side in one run:
//!
//! - a static header (the physical limit: no cache at all);
//! - the common hand-written cache: `tokio::sync::Mutex<Option<Token>>`;
//! - ours: `TokenManager::token()` (lock-free read, expiry check on every call).
//!
//! Single thread, and two threads contending. `cargo bench -p bench --bench bearer`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use auth_core::TokenManager;
use auth_core::oauth2::ClientCredentials;
use auth_core::testkit::TestIdentityProvider;
use criterion::{Criterion, criterion_group, criterion_main};
use reqwest::header::HeaderValue;

fn warm_manager(rt: &tokio::runtime::Runtime) -> (TestIdentityProvider, TokenManager<ClientCredentials>) {
    rt.block_on(async {
        let idp = TestIdentityProvider::start().await.expect("identity provider");
        idp.set_lifetime(Some(Duration::from_secs(3600)));
        let (id, secret) = idp.credentials();
        let source = ClientCredentials::builder(idp.token_url(), id, secret).build().expect("source");
        let manager = TokenManager::new(source);
        manager.token().await.expect("first token");
        (idp, manager)
    })
}

fn single_thread(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let (_idp, manager) = warm_manager(&rt);
    let fixed = HeaderValue::from_static("Bearer static-token-for-the-baseline");
    let mutex = tokio::sync::Mutex::new(Some(fixed.clone()));

    let mut group = c.benchmark_group("bearer/single-thread");
    group.bench_function("static header", |b| b.iter(|| std::hint::black_box(fixed.clone())));
    group.bench_function("tokio Mutex<Option<Token>>", |b| {
        b.to_async(&rt).iter(|| async { std::hint::black_box(mutex.lock().await.clone()) })
    });
    group.bench_function("auth-core TokenManager", |b| {
        b.to_async(&rt).iter(|| async {
            let token = manager.token().await.expect("cached");
            std::hint::black_box(token.bearer_header())
        })
    });
    group.finish();
}

/// Two threads each doing `iters` acquisitions at once; reports core-time per
/// acquisition (wall time × 2 / operations), as the baselines in the issue do.
fn contended(c: &mut Criterion) {
    let rt =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    let (_idp, manager) = warm_manager(&rt);
    let fixed = HeaderValue::from_static("Bearer static-token-for-the-baseline");
    let mutex = Arc::new(tokio::sync::Mutex::new(Some(fixed.clone())));

    let mut group = c.benchmark_group("bearer/two-threads-contended");
    group.bench_function("static header", |b| {
        b.iter_custom(|iters| {
            let f = fixed.clone();
            run_two(&rt, iters, move || {
                let f = f.clone();
                async move {
                    std::hint::black_box(f.clone());
                }
            })
        })
    });
    group.bench_function("tokio Mutex<Option<Token>>", |b| {
        b.iter_custom(|iters| {
            let m = mutex.clone();
            run_two(&rt, iters, move || {
                let m = m.clone();
                async move {
                    std::hint::black_box(m.lock().await.clone());
                }
            })
        })
    });
    group.bench_function("auth-core TokenManager", |b| {
        b.iter_custom(|iters| {
            let m = manager.clone();
            run_two(&rt, iters, move || {
                let m = m.clone();
                async move {
                    let token = m.token().await.expect("cached");
                    std::hint::black_box(token.bearer_header());
                }
            })
        })
    });
    group.finish();
}

fn run_two<F, Fut>(rt: &tokio::runtime::Runtime, iters: u64, op: F) -> Duration
where
    F: Fn() -> Fut + Send + Sync + Clone + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let per_thread = iters.div_ceil(2);
    let started = Instant::now();
    rt.block_on(async {
        let tasks: Vec<_> = (0..2)
            .map(|_| {
                let op = op.clone();
                tokio::spawn(async move {
                    for _ in 0..per_thread {
                        op().await;
                    }
                })
            })
            .collect();
        for t in tasks {
            let _ = t.await;
        }
    });
    // Core-time per operation: two cores busy for the wall time.
    started.elapsed() * 2
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(3));
    targets = single_thread, contended
}
criterion_main!(benches);
