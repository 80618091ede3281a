//! Metrics through the `metrics` facade: a scripted run against the test identity
//! provider on virtual time, recorded by a local `DebuggingRecorder`, figure by
//! figure; and the README's table checked against what the recorder saw.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use auth_core::metrics::{self as names, ALL};
use auth_core::{AuthClient, CacheKey, ErrorKind, MemoryStore, Token, TokenManager, TokenStore};
use auth_sandbox::idp::{TestIdentityProvider, TokenBehavior};
use integration_tests::{eventually, predictable, source};
use metrics_util::debugging::{DebugValue, DebuggingRecorder};

/// A store whose writes always fail (a Redis that refuses them): the manager
/// keeps its token in memory and says so in `auth_token_store_errors_total`.
#[derive(Debug, Default)]
struct RefusesWrites(MemoryStore);

#[async_trait::async_trait]
impl TokenStore for RefusesWrites {
    async fn get(&self, key: &CacheKey) -> auth_core::Result<Option<Arc<Token>>> {
        self.0.get(key).await
    }
    async fn put(&self, _: &CacheKey, _: Arc<Token>) -> auth_core::Result<()> {
        Err(auth_core::Error::store("the store refuses writes"))
    }
    async fn remove(&self, key: &CacheKey, token: &Token) -> auth_core::Result<bool> {
        self.0.remove(key, token).await
    }
    async fn try_lease(
        &self,
        key: &CacheKey,
        ttl: Duration,
    ) -> auth_core::Result<Option<auth_core::store::Lease>> {
        self.0.try_lease(key, ttl).await
    }
    async fn release(&self, lease: &auth_core::store::Lease) -> auth_core::Result<()> {
        self.0.release(lease).await
    }
}

/// One recorded series: its name and labels, and its value.
type Series = BTreeMap<(String, Vec<(String, String)>), DebugValue>;

fn series(recorder: &DebuggingRecorder) -> Series {
    recorder
        .snapshotter()
        .snapshot()
        .into_vec()
        .into_iter()
        .map(|(key, _, _, value)| {
            let key = key.key();
            let labels = key.labels().map(|l| (l.key().to_owned(), l.value().to_owned())).collect();
            ((key.name().to_owned(), labels), value)
        })
        .collect()
}

fn counter(series: &Series, name: &str, labels: &[(&str, &str)]) -> u64 {
    let labels = labels.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
    match series.get(&(name.to_owned(), labels)) {
        Some(DebugValue::Counter(n)) => *n,
        other => panic!("{name} {other:?}"),
    }
}

fn samples(series: &Series, name: &str, labels: &[(&str, &str)]) -> Vec<f64> {
    let labels = labels.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
    match series.get(&(name.to_owned(), labels)) {
        Some(DebugValue::Histogram(values)) => values.iter().map(|v| v.into_inner()).collect(),
        other => panic!("{name} {other:?}"),
    }
}

/// The README's metrics table: each row's name and its label names.
fn readme_table() -> BTreeMap<String, BTreeSet<String>> {
    let readme = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md"));
    let section = readme.split("### Metrics").nth(1).expect("README has a Metrics section");
    let ticked =
        |cell: &str| -> Vec<String> { cell.split('`').skip(1).step_by(2).map(str::to_owned).collect() };
    section
        .lines()
        .take_while(|l| !l.starts_with("## "))
        .filter(|l| l.starts_with("| `auth_"))
        .map(|row| {
            let cells: Vec<&str> = row.split('|').collect();
            let name = ticked(cells[1]).remove(0);
            (name, ticked(cells[3]).into_iter().collect())
        })
        .collect()
}

#[tokio::test]
async fn a_scripted_run_records_these_figures_and_the_readme_names_them_all() {
    let recorder = DebuggingRecorder::new();
    let clock = auth_core::clock::ManualClock::new();
    let idp = TestIdentityProvider::start_with_clock(clock.clone()).await.unwrap();
    // The manager takes its handles from the recorder in force when it is built:
    // recorded to from any thread or task after that, without a global recorder.
    let manager = ::metrics::with_local_recorder(&recorder, || {
        TokenManager::builder(source(&idp))
            .clock(clock.clone())
            .config(predictable())
            .store(RefusesWrites::default())
            .build()
    });
    let client = AuthClient::new(manager.clone()).unwrap();

    // 1. Five calls: one miss that fetches, four hits.
    for _ in 0..5 {
        client.get(idp.api_url("Patient/1")).send().await.unwrap();
    }
    // 2. The server forgets its tokens: a hit that is rejected, a replay, a miss that fetches.
    idp.revoke_all();
    client.get(idp.api_url("Patient/1")).send().await.unwrap();
    // 3. 250 s into a 300 s token (refresh at 80 %): a hit that starts one refresh ahead.
    let before = manager.cached().unwrap();
    clock.advance(Duration::from_secs(250));
    client.get(idp.api_url("Patient/1")).send().await.unwrap();
    assert!(
        eventually(Duration::from_secs(5), || manager.cached().is_some_and(|t| !t.same_value(&before))).await,
        "the refresh ahead did not land"
    );
    // 4. The provider now refuses the client and the server forgets the token: a
    //    hit rejected, a replay whose token request fails with an OAuth error.
    idp.set_behavior(TokenBehavior::OAuthError { status: 401, code: "invalid_client".into() });
    idp.revoke_all();
    let error = client.get(idp.api_url("Patient/1")).send().await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::OAuth);

    let s = series(&recorder);
    let p = ("provider", "oauth2");
    assert_eq!(counter(&s, names::TOKEN_REQUESTS, &[p, ("outcome", "ok")]), 3);
    assert_eq!(counter(&s, names::TOKEN_REQUESTS, &[p, ("outcome", "oauth")]), 1);
    assert_eq!(counter(&s, names::TOKEN_REQUESTS, &[p, ("outcome", "transport")]), 0);
    assert_eq!(counter(&s, names::CACHE_HITS, &[p]), 7, "4 + 1 + 1 + 1");
    assert_eq!(counter(&s, names::CACHE_MISSES, &[p]), 3, "the first call and the two replays");
    assert_eq!(counter(&s, names::REFRESHES_AHEAD, &[p]), 1);
    assert_eq!(counter(&s, names::REJECTIONS, &[p]), 2);
    assert_eq!(counter(&s, names::REPLAYS, &[p]), 2);
    assert_eq!(counter(&s, names::STORE_ERRORS, &[p, ("operation", "put")]), 3, "one per token fetched");
    assert_eq!(counter(&s, names::STORE_ERRORS, &[p, ("operation", "get")]), 0);
    let fetched = samples(&s, names::FETCH_DURATION, &[p, ("outcome", "ok")]);
    assert_eq!(fetched.len(), 3);
    assert!(fetched.iter().all(|secs| (0.0..5.0).contains(secs)), "{fetched:?}");
    assert_eq!(samples(&s, names::FETCH_DURATION, &[p, ("outcome", "error")]).len(), 1);
    assert_eq!(samples(&s, names::WAIT_DURATION, &[p]).len(), 3, "one wait per miss");
    assert_eq!(idp.token_requests(), 4, "the recorder counted what the provider saw");

    // No label holds a token, a secret or a client id.
    let (id, secret) = idp.credentials();
    for (_, labels) in s.keys() {
        for (_, value) in labels {
            assert!(![id.as_str(), secret.expose_secret()].contains(&value.as_str()), "{value}");
            assert!(value.len() < 20, "a label value that looks like data: {value}");
        }
    }

    // The README's table is what the recorder saw: the same names, the same labels.
    let table = readme_table();
    assert_eq!(table.keys().map(String::as_str).collect::<BTreeSet<_>>(), ALL.into_iter().collect());
    let mut seen: BTreeMap<&str, BTreeSet<String>> = BTreeMap::new();
    for (name, labels) in s.keys() {
        seen.entry(name.as_str()).or_default().extend(labels.iter().map(|(k, _)| k.clone()));
    }
    for (name, labels) in &table {
        assert_eq!(seen.get(name.as_str()), Some(labels), "{name}: README labels against the recorder's");
    }
    assert_eq!(seen.len(), table.len(), "the recorder saw a metric the README does not list: {seen:?}");
}
