//! P1, the token path's own cost: getting the `Authorization` value for a request
//! from a warm cache, every contender side by side in one run:
//!
//! - a static header (the physical limit: no cache at all), and the same built at run
//!   time from a string (how a static bearer from a configuration is sent; its clone
//!   bumps a reference count);
//! - the floor of this API: a thread's own `Arc<Token>` held already, cloned with its
//!   header (what any implementation of `token()` + `bearer_header()` pays at least);
//! - oauth2-rs behind `tokio::sync::Mutex<Option<Token>>`, the common hand-written cache;
//! - oauth2-rs behind an `RwLock` checked without single flight (the "racy" cache);
//! - `middle` 0.5 (`Authorizer::authorization_header`, as its own reqwest client uses it);
//! - ours: `TokenManager::token()` then `bearer_header()`, what `AuthClient` does.
//!
//! The hand-written caches keep a ready `HeaderValue`, the kindest version of them.
//! Single thread, and two threads contending: the contended figure is core time per
//! acquisition (wall time × 2 / operations). `cargo bench -p bench --bench bearer`.

// A benchmark whose setup fails, or whose warm cache goes cold, must stop loudly.
#![allow(clippy::expect_used, clippy::unreachable)]

use std::cell::RefCell;
use std::future::Future;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant, SystemTime};

use auth_core::AccessToken;
use auth_core::oauth2::OAuth2Source;
use auth_core::{Token, TokenManager};
use auth_sandbox::idp::TestIdentityProvider;
use criterion::{Criterion, criterion_group, criterion_main};
use oauth2::basic::BasicClient;
use oauth2::{AuthUrl, ClientId, ClientSecret, TokenResponse, TokenUrl};
use reqwest::header::HeaderValue;

/// One way to get the header for the next request.
trait Bearer: Send + Sync + 'static {
    fn bearer(&self) -> impl Future<Output = HeaderValue> + Send;
}

struct Static(HeaderValue);

impl Bearer for Static {
    async fn bearer(&self) -> HeaderValue {
        self.0.clone()
    }
}

/// The floor of `token()` + `bearer_header()`: this thread's own token, held already
/// (no lookup, no clock, no shared counter): one `Arc` clone and one header clone.
struct HeldToken(String);

thread_local! {
    static HELD: RefCell<Option<Arc<Token>>> = const { RefCell::new(None) };
}

impl Bearer for HeldToken {
    async fn bearer(&self) -> HeaderValue {
        let token = HELD.with(|held| {
            held.borrow_mut()
                .get_or_insert_with(|| {
                    let now = SystemTime::now();
                    let expires = now + Duration::from_secs(3600);
                    Arc::new(Token::new(AccessToken::new(self.0.clone()), now, expires).expect("token"))
                })
                .clone()
        });
        token.bearer_header()
    }
}

/// A hand-written cache's entry: the header and when it stops being good.
#[derive(Clone)]
struct Entry {
    header: HeaderValue,
    expires: Instant,
}

struct MutexCache(tokio::sync::Mutex<Option<Entry>>);

impl Bearer for MutexCache {
    async fn bearer(&self) -> HeaderValue {
        let guard = self.0.lock().await;
        match &*guard {
            Some(e) if Instant::now() < e.expires => e.header.clone(),
            _ => unreachable!("the benchmark keeps the cache warm"),
        }
    }
}

struct RacyCache(RwLock<Option<Entry>>);

impl Bearer for RacyCache {
    async fn bearer(&self) -> HeaderValue {
        let guard = self.0.read().unwrap_or_else(std::sync::PoisonError::into_inner);
        match &*guard {
            Some(e) if Instant::now() < e.expires => e.header.clone(),
            _ => unreachable!("the benchmark keeps the cache warm"),
        }
    }
}

struct Middle(middle::BasicClientCredentialAuthorizer);

impl Bearer for Middle {
    async fn bearer(&self) -> HeaderValue {
        use middle::Authorizer;
        Arc::unwrap_or_clone(self.0.authorization_header().expect("middle has a token"))
    }
}

struct Ours(TokenManager<OAuth2Source>);

impl Bearer for Ours {
    async fn bearer(&self) -> HeaderValue {
        self.0.token().await.expect("cached").bearer_header()
    }
}

struct Contenders {
    _idp: TestIdentityProvider,
    fixed: Arc<Static>,
    runtime: Arc<Static>,
    held: Arc<HeldToken>,
    mutex: Arc<MutexCache>,
    racy: Arc<RacyCache>,
    middle: Arc<Middle>,
    ours: Arc<Ours>,
}

/// Every contender with a warm cache, the caches filled by real token requests.
fn contenders(rt: &tokio::runtime::Runtime) -> Contenders {
    rt.block_on(async {
        let idp = TestIdentityProvider::start().await.expect("identity provider");
        idp.set_lifetime(Some(Duration::from_secs(3600)));
        let (id, secret) = idp.credentials();

        let http = reqwest012::Client::builder()
            .redirect(reqwest012::redirect::Policy::none())
            .build()
            .expect("reqwest 0.12 client");
        let oauth = BasicClient::new(ClientId::new(id.clone()))
            .set_client_secret(ClientSecret::new(secret.expose_secret().to_owned()))
            .set_auth_uri(AuthUrl::new(idp.base_url().to_owned()).expect("url"))
            .set_token_uri(TokenUrl::new(idp.token_url()).expect("url"));
        let response =
            oauth.exchange_client_credentials().request_async(&http).await.expect("oauth2-rs token");
        let access = response.access_token().secret().to_owned();
        let header = HeaderValue::try_from(format!("Bearer {access}")).expect("header value");
        let entry = Entry { header, expires: Instant::now() + Duration::from_secs(3000) };

        let middle = middle::BasicClientCredentialAuthorizerBuilder::new(
            &id,
            secret.expose_secret(),
            idp.token_url().parse().expect("url"),
        )
        .set_http_client(http)
        .build()
        .await
        .expect("middle authorizer");

        let source = OAuth2Source::builder(idp.token_url(), id, secret).build().expect("source");
        let manager = TokenManager::new(source);
        manager.token().await.expect("first token");

        Contenders {
            _idp: idp,
            fixed: Arc::new(Static(HeaderValue::from_static("Bearer static-token-for-the-baseline"))),
            runtime: Arc::new(Static(
                HeaderValue::try_from(format!("Bearer {access}")).expect("header value"),
            )),
            held: Arc::new(HeldToken(access)),
            mutex: Arc::new(MutexCache(tokio::sync::Mutex::new(Some(entry.clone())))),
            racy: Arc::new(RacyCache(RwLock::new(Some(entry)))),
            middle: Arc::new(Middle(middle)),
            ours: Arc::new(Ours(manager)),
        }
    })
}

const STATIC: &str = "static header";
const RUNTIME: &str = "static header, built at run time";
const HELD_TOKEN: &str = "floor: a held Arc<Token>";
const MUTEX: &str = "oauth2-rs + tokio Mutex cache";
const RACY: &str = "oauth2-rs + racy RwLock cache";
const MIDDLE: &str = "middle 0.5";
const OURS: &str = "ours: TokenManager";

fn single_thread(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let all = contenders(&rt);
    let mut group = c.benchmark_group("bearer/single-thread");
    // Each contender right after the others, in one group: drift hits all alike.
    group.bench_function(STATIC, |b| b.to_async(&rt).iter(|| all.fixed.bearer()));
    group.bench_function(RUNTIME, |b| b.to_async(&rt).iter(|| all.runtime.bearer()));
    group.bench_function(HELD_TOKEN, |b| b.to_async(&rt).iter(|| all.held.bearer()));
    group.bench_function(OURS, |b| b.to_async(&rt).iter(|| all.ours.bearer()));
    group.bench_function(MUTEX, |b| b.to_async(&rt).iter(|| all.mutex.bearer()));
    group.bench_function(RACY, |b| b.to_async(&rt).iter(|| all.racy.bearer()));
    group.bench_function(MIDDLE, |b| b.to_async(&rt).iter(|| all.middle.bearer()));
    group.finish();
}

fn contended(c: &mut Criterion) {
    let rt =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    let all = contenders(&rt);
    let mut group = c.benchmark_group("bearer/two-threads-contended");
    group.bench_function(STATIC, |b| b.iter_custom(|n| run_two(&rt, n, &all.fixed)));
    group.bench_function(RUNTIME, |b| b.iter_custom(|n| run_two(&rt, n, &all.runtime)));
    group.bench_function(HELD_TOKEN, |b| b.iter_custom(|n| run_two(&rt, n, &all.held)));
    group.bench_function(OURS, |b| b.iter_custom(|n| run_two(&rt, n, &all.ours)));
    group.bench_function(MUTEX, |b| b.iter_custom(|n| run_two(&rt, n, &all.mutex)));
    group.bench_function(RACY, |b| b.iter_custom(|n| run_two(&rt, n, &all.racy)));
    group.bench_function(MIDDLE, |b| b.iter_custom(|n| run_two(&rt, n, &all.middle)));
    group.finish();
}

/// Two tasks on two worker threads, each doing half of `iters` acquisitions at once;
/// returns core time (wall × 2). Each task holds its own handle, so the only shared
/// state is the contender's.
fn run_two<B: Bearer>(rt: &tokio::runtime::Runtime, iters: u64, contender: &Arc<B>) -> Duration {
    let per_task = iters.div_ceil(2);
    let started = Instant::now();
    rt.block_on(async {
        let tasks: Vec<_> = (0..2)
            .map(|_| {
                let c = contender.clone();
                tokio::spawn(async move {
                    for _ in 0..per_task {
                        std::hint::black_box(c.bearer().await);
                    }
                })
            })
            .collect();
        for t in tasks {
            let _ = t.await;
        }
    });
    started.elapsed() * 2
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(3));
    targets = single_thread, contended
}
criterion_main!(benches);
