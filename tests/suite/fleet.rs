//! Fleet-wide token sharing on Redis: many token managers (standing in for many
//! processes) share one token through a `RedisStore`, survive Redis going away,
//! and never leave a token readable in Redis.
//!
//! Each test starts its own `redis-server` on a free loopback port and kills it
//! when done; none touches a shared Redis.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use auth_core::oauth2::OAuth2Source;
use auth_core::store::{RedisStore, StoreKey};
use auth_core::{TokenManager, TokenStore};
use auth_sandbox::idp::TestIdentityProvider;
use integration_tests::source;

const REDIS_SERVER: &str = "redis-server";

/// A private `redis-server` child process, killed on drop.
pub(crate) struct RedisServer {
    port: u16,
    child: Option<Child>,
}

impl RedisServer {
    /// On a port that was free a moment ago. Another process can take it in
    /// between; then this server exits at once and another port is tried.
    pub(crate) fn start() -> Self {
        for _ in 0..5 {
            let port =
                TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("free port").port();
            let mut server = Self { port, child: None };
            server.restart();
            if server.child.as_mut().is_some_and(|c| matches!(c.try_wait(), Ok(None))) {
                return server;
            }
            server.child = None;
        }
        panic!("{REDIS_SERVER} could not keep a free port in 5 tries");
    }

    /// (Re)starts the server on the same port, empty (no persistence).
    fn restart(&mut self) {
        assert!(self.child.is_none(), "already running");
        let child = Command::new(REDIS_SERVER)
            .args([
                "--port",
                &self.port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .args(["--daemonize", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {REDIS_SERVER} (is Redis installed?): {e}"));
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            // Exited: the port was taken meanwhile (`start` tries another).
            if self.child.as_mut().is_some_and(|c| !matches!(c.try_wait(), Ok(None))) {
                return;
            }
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                // Listening, and still ours: the one that bound is this child.
                std::thread::sleep(Duration::from_millis(50));
                return;
            }
            assert!(Instant::now() < deadline, "redis-server did not start listening on {}", self.port);
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Freezes (`STOP`) or thaws (`CONT`) the server: a Redis that accepts
    /// connections but never answers.
    fn signal(&self, signal: &str) {
        let pid = self.child.as_ref().expect("running").id().to_string();
        let status = Command::new("kill").args([&format!("-{signal}"), &pid]).status().expect("kill runs");
        assert!(status.success());
    }

    pub(crate) fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// Every (key, value) pair in the server, read directly.
    async fn dump(&self) -> Vec<(String, Vec<u8>)> {
        let client = redis::Client::open(self.url()).unwrap();
        let mut c = client.get_multiplexed_async_connection().await.unwrap();
        let keys: Vec<String> = redis::cmd("KEYS").arg("*").query_async(&mut c).await.unwrap();
        let mut out = Vec::new();
        for key in keys {
            let value: Option<Vec<u8>> = redis::cmd("GET").arg(&key).query_async(&mut c).await.unwrap();
            out.push((key, value.unwrap_or_default()));
        }
        out
    }

    async fn pttl(&self, key: &str) -> i64 {
        let client = redis::Client::open(self.url()).unwrap();
        let mut c = client.get_multiplexed_async_connection().await.unwrap();
        redis::cmd("PTTL").arg(key).query_async(&mut c).await.unwrap()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

fn store(redis: &RedisServer, id: &str, byte: u8) -> RedisStore {
    RedisStore::builder(redis.url(), StoreKey::new(id, [byte; 32]).unwrap()).build().unwrap()
}

type Manager = TokenManager<OAuth2Source, RedisStore>;

fn managers(idp: &TestIdentityProvider, store: &RedisStore, n: usize) -> Vec<Manager> {
    (0..n).map(|_| TokenManager::builder(source(idp)).store(store.clone()).build()).collect()
}

/// `per_manager` concurrent `token()` calls on each manager; returns the distinct
/// token values and the number of failed calls.
async fn load(managers: &[Manager], per_manager: usize) -> (std::collections::HashSet<String>, usize) {
    let calls: Vec<_> = managers
        .iter()
        .flat_map(|m| (0..per_manager).map(move |_| m.clone()))
        .map(|m| {
            tokio::spawn(async move { m.token().await.map(|t| t.access_token().expose_secret().to_owned()) })
        })
        .collect();
    let (mut values, mut failed) = (std::collections::HashSet::new(), 0);
    for call in calls {
        match call.await.unwrap() {
            Ok(v) => {
                values.insert(v);
            }
            Err(_) => failed += 1,
        }
    }
    (values, failed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn thirty_two_managers_on_one_redis_make_one_token_request() {
    let redis = RedisServer::start();
    let idp = TestIdentityProvider::start().await.unwrap();
    // A slow provider widens the window in which every manager wants the token.
    idp.set_delay(Duration::from_millis(200));
    idp.set_lifetime(Some(Duration::from_secs(120)));
    let store = store(&redis, "k1", 7);
    let fleet = managers(&idp, &store, 32);

    let (values, failed) = load(&fleet, 50).await;
    assert_eq!(failed, 0);
    assert_eq!(idp.token_requests(), 1, "32 managers x 50 callers: exactly one token request");
    assert_eq!(values.len(), 1, "everyone holds the same token");
    let fetches: u64 = fleet.iter().map(|m| m.stats().fetches).sum();
    let from_store: u64 = fleet.iter().map(|m| m.stats().from_store).sum();
    assert_eq!((fetches, from_store), (1, 31), "one manager fetched, 31 took it from Redis");

    // At rest: one token entry, expiring with the token, encrypted, named by fingerprint.
    let token = values.into_iter().next().unwrap();
    let token_key = store.token_key(fleet[0].cache_key());
    let pttl = redis.pttl(&token_key).await;
    assert!((100_000..=120_000).contains(&pttl), "entry TTL follows the token's lifetime: {pttl} ms");
    for (key, value) in redis.dump().await {
        assert!(!key.contains("test-client"), "no client id in key names: {key}");
        let value = String::from_utf8_lossy(&value);
        assert!(!value.contains(&token), "token in clear text under {key}");
    }
    println!("fleet: 32 managers x 50 calls -> {} token request(s)", idp.token_requests());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_killed_mid_run_fails_no_call_and_sharing_resumes_when_it_returns() {
    let mut redis = RedisServer::start();
    let idp = TestIdentityProvider::start().await.unwrap();
    idp.set_delay(Duration::from_millis(50));
    let store = store(&redis, "k1", 7);
    let fleet = managers(&idp, &store, 32);
    let (_, failed) = load(&fleet, 10).await;
    assert_eq!((failed, idp.token_requests()), (0, 1));

    // Steady load from every manager while Redis dies and comes back.
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let workers: Vec<_> = fleet
        .iter()
        .flat_map(|m| (0..4).map(move |_| m.clone()))
        .map(|m| {
            let (stop, ok, failed) = (stop.clone(), ok.clone(), failed.clone());
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    match m.token().await {
                        Ok(_) => ok.fetch_add(1, Ordering::Relaxed),
                        Err(_) => failed.fetch_add(1, Ordering::Relaxed),
                    };
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            })
        })
        .collect();

    tokio::time::sleep(Duration::from_millis(200)).await;
    redis.kill();
    // The token is rejected fleet-wide while Redis is gone: every manager must
    // fetch anew, without a lease and without a store.
    let current = fleet[0].token().await.unwrap();
    for m in &fleet {
        m.invalidate(&current).await;
    }
    tokio::time::sleep(Duration::from_millis(800)).await;
    let during_outage = idp.token_requests() - 1;
    assert!(during_outage >= 1, "managers fetched during the outage");

    redis.restart();
    let key = fleet[0].cache_key().clone();
    let deadline = Instant::now() + Duration::from_secs(10);
    while store.get(&key).await.is_err() {
        assert!(Instant::now() < deadline, "the store did not reconnect to the restarted Redis");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.await.unwrap();
    }
    let (ok, failed) = (ok.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    assert_eq!(failed, 0, "no call failed because Redis was gone ({ok} succeeded)");
    assert!(ok > 100, "the load really ran: {ok} calls");

    // Sharing resumes: a fresh fleet shares one fetch through the restarted Redis.
    let before = idp.token_requests();
    let fresh = managers(&idp, &store, 32);
    let (values, failed) = load(&fresh, 20).await;
    assert_eq!(failed, 0);
    assert_eq!(idp.token_requests() - before, 1, "one token request for the fresh fleet");
    assert_eq!(values.len(), 1);
    println!(
        "outage: {ok} calls ok, {failed} failed, {during_outage} fetch(es) without Redis; after restart 32 fresh managers -> {} request(s)",
        idp.token_requests() - before
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_key_is_a_miss_and_nothing_is_readable_in_redis() {
    let redis = RedisServer::start();
    let idp = TestIdentityProvider::start().await.unwrap();
    let right = store(&redis, "k1", 7);
    let a = TokenManager::builder(source(&idp)).store(right.clone()).build();
    let first = a.token().await.unwrap();
    assert_eq!(idp.token_requests(), 1);

    // Same key id, other bytes: the entry does not authenticate.
    let wrong_bytes = store(&redis, "k1", 8);
    assert!(wrong_bytes.get(a.cache_key()).await.unwrap().is_none(), "undecryptable entry is a miss");
    let b = TokenManager::builder(source(&idp)).store(wrong_bytes).build();
    let second = b.token().await.unwrap();
    assert_eq!(idp.token_requests(), 2, "the wrong key refetched");
    assert!(!second.same_value(&first));

    // Another key id that this store does not know: a miss too.
    let unknown_id = store(&redis, "k9", 7);
    assert!(unknown_id.get(a.cache_key()).await.unwrap().is_none());

    // Rotation: current k2, k1 kept for reading, reads what k1 wrote.
    right.put(a.cache_key(), first.clone()).await.unwrap();
    let rotated = RedisStore::builder(redis.url(), StoreKey::new("k2", [9; 32]).unwrap())
        .old_key(StoreKey::new("k1", [7; 32]).unwrap())
        .build()
        .unwrap();
    let read = rotated.get(a.cache_key()).await.unwrap().expect("old key still decrypts");
    assert!(read.same_value(&first));
    let drift = read.expires_at().duration_since(first.expires_at()).unwrap_or_else(|e| e.duration());
    assert!(drift < Duration::from_millis(1), "expiry survives the round trip");

    // Compare-and-delete: a different token does not remove the entry; the same one does.
    assert!(!rotated.remove(a.cache_key(), &second).await.unwrap());
    assert!(rotated.remove(a.cache_key(), &first).await.unwrap());
    assert!(rotated.get(a.cache_key()).await.unwrap().is_none());

    // Raw read of everything in Redis: no token value in clear.
    right.put(a.cache_key(), first.clone()).await.unwrap();
    let dump = redis.dump().await;
    assert!(!dump.is_empty());
    for (key, value) in dump {
        let value = String::from_utf8_lossy(&value);
        for token in [&first, &second] {
            assert!(!value.contains(token.access_token().expose_secret()), "token in clear text under {key}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_whose_holder_died_lapses_and_another_manager_fetches() {
    let redis = RedisServer::start();
    let idp = TestIdentityProvider::start().await.unwrap();
    let store = store(&redis, "k1", 7);
    let fleet = managers(&idp, &store, 4);

    // A "process" takes the lease and dies without releasing it. (Timed from
    // before the lease exists: the lease cannot lapse sooner than 1 s after that.)
    let started = Instant::now();
    let dead = store.try_lease(fleet[0].cache_key(), Duration::from_secs(1)).await.unwrap();
    assert!(dead.is_some());
    drop(dead);

    let (values, failed) = load(&fleet, 10).await;
    let waited = started.elapsed();
    assert_eq!(failed, 0);
    assert_eq!(values.len(), 1);
    assert_eq!(idp.token_requests(), 1, "once the lease lapsed, one manager fetched for all");
    assert!(waited >= Duration::from_secs(1), "nobody fetched while the lease was held: {waited:?}");
    assert!(waited < Duration::from_secs(5), "the lapsed lease was taken over promptly: {waited:?}");
    println!("dead holder: waited {waited:?}, {} token request(s)", idp.token_requests());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_redis_fails_no_call_and_holds_callers_only_briefly() {
    let redis = RedisServer::start();
    let idp = TestIdentityProvider::start().await.unwrap();
    let store = store(&redis, "k1", 7);
    let fleet = managers(&idp, &store, 4);
    let first = fleet[0].token().await.unwrap();

    redis.signal("STOP");
    let started = Instant::now();
    let error = store.get(fleet[0].cache_key()).await.unwrap_err();
    assert_eq!(error.kind(), auth_core::ErrorKind::Store);
    // The call timeout is 250 ms; 2 s leaves room for a loaded machine.
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "bounded by the call timeout: {:?}",
        started.elapsed()
    );
    for m in &fleet {
        m.invalidate(&first).await;
    }
    let started = Instant::now();
    let (values, failed) = load(&fleet, 10).await;
    let took = started.elapsed();
    assert_eq!(failed, 0, "a hung Redis fails no call");
    assert!(!values.contains(first.access_token().expose_secret()));
    assert!(took < Duration::from_secs(5), "callers were not held up by the hung Redis: {took:?}");
    redis.signal("CONT");
    println!("hung redis: {} token request(s), load took {took:?}", idp.token_requests());
}
