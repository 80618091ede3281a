//! P4, fleet: 32 token managers (standing in for 32 processes) sharing one Redis,
//! against 32 with their own memory stores, side by side under the same load.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use auth_core::oauth2::OAuth2Source;
use auth_core::store::{RedisStore, StoreKey};
use auth_core::{ClientSecret, ManagerStats, TokenManager, TokenStore};
use serde_json::json;

use crate::contenders::Tally;
use crate::report::{Report, Table, verdict};
use crate::server::{BenchServer, SECRET};

/// A private `redis-server` on a free loopback port, killed on drop.
#[derive(Debug)]
pub struct RedisServer {
    port: u16,
    child: Child,
}

impl RedisServer {
    /// Starts one (no persistence) and waits until it accepts connections.
    pub fn start() -> anyhow::Result<Self> {
        let port = TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).context("free port")?.port();
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("cannot start redis-server (is Redis installed?)")?;
        let server = Self { port, child };
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if Instant::now() > deadline {
                bail!("redis-server did not listen on port {port} within 10 s");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(server)
    }

    /// `redis://127.0.0.1:PORT/`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sizes of P4.
#[derive(Debug, Clone)]
pub struct Params {
    /// Managers per fleet.
    pub instances: usize,
    /// Callers per manager.
    pub callers: usize,
    /// Pause between one caller's calls.
    pub pause: Duration,
    /// Token lifetime.
    pub lifetime: Duration,
    /// Length of the run.
    pub duration: Duration,
    /// Identity provider latency.
    pub idp_delay: Duration,
}

impl Params {
    /// 32 instances over three 12 s lifetimes (12 s: above ours' 10 s lifetime floor).
    pub fn full() -> Self {
        Self {
            instances: 32,
            callers: 4,
            pause: Duration::from_millis(10),
            lifetime: Duration::from_secs(12),
            duration: Duration::from_secs(36),
            idp_delay: Duration::from_millis(250),
        }
    }
    /// A few seconds: the cold start only.
    pub fn quick() -> Self {
        Self { duration: Duration::from_secs(2), ..Self::full() }
    }
}

/// Figures of one fleet.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Row {
    /// `redis` or `memory`.
    pub store: &'static str,
    /// Token requests the server received from this fleet.
    pub token_requests: u64,
    /// Token lifetimes elapsed during the run.
    pub lifetimes: f64,
    /// Token requests per lifetime of wall time.
    pub per_lifetime: f64,
    /// `token()` calls.
    pub tally: Tally,
    /// Summed manager statistics.
    pub fetches: u64,
    /// Tokens taken from the store rather than fetched.
    pub from_store: u64,
}

fn source(server: &BenchServer, id: &str) -> anyhow::Result<OAuth2Source> {
    OAuth2Source::builder(server.token_url(), id, ClientSecret::new(SECRET))
        .build()
        .map_err(|e| anyhow::anyhow!("source: {e}"))
}

async fn drive<T: TokenStore>(
    managers: Vec<TokenManager<OAuth2Source, T>>,
    p: &Params,
) -> (Tally, ManagerStats) {
    let deadline = Instant::now() + p.duration;
    let mut tasks = Vec::new();
    for m in &managers {
        for _ in 0..p.callers {
            let (m, pause) = (m.clone(), p.pause);
            tasks.push(tokio::spawn(async move {
                let mut tally = Tally::default();
                while Instant::now() < deadline {
                    match m.token().await {
                        Ok(_) => tally.ok += 1,
                        Err(_) => tally.failed += 1,
                    }
                    tokio::time::sleep(pause).await;
                }
                tally
            }));
        }
    }
    let mut tally = Tally::default();
    for t in tasks {
        match t.await {
            Ok(t) => tally.merge(t),
            Err(_) => tally.failed += 1,
        }
    }
    let mut stats = ManagerStats::default();
    for m in &managers {
        let s = m.stats();
        stats.fetches += s.fetches;
        stats.from_store += s.from_store;
    }
    (tally, stats)
}

/// Runs P4 against `server` with a fresh Redis.
pub async fn run(server: &BenchServer, p: &Params) -> anyhow::Result<(Report, Vec<Row>)> {
    let redis = RedisServer::start()?;
    server.set_delay(p.idp_delay);
    server.set_lifetime(p.lifetime);
    let key = StoreKey::new("bench", [7; 32]).map_err(|e| anyhow::anyhow!("store key: {e}"))?;
    let mut shared = Vec::new();
    let mut alone = Vec::new();
    for _ in 0..p.instances {
        // A store (and connection) per manager, as 32 processes would have.
        let store = RedisStore::builder(redis.url(), key.clone())
            .build()
            .map_err(|e| anyhow::anyhow!("redis store: {e}"))?;
        shared.push(TokenManager::builder(source(server, "p4-redis")?).store(store).build());
        alone.push(TokenManager::new(source(server, "p4-memory")?));
    }
    let start = Instant::now();
    let ((redis_tally, redis_stats), (memory_tally, memory_stats)) =
        tokio::join!(drive(shared, p), drive(alone, p));
    let lifetimes = start.elapsed().as_secs_f64() / p.lifetime.as_secs_f64();
    server.set_lifetime(Duration::from_secs(3600));
    drop(redis);

    let row = |store, id: &str, tally: Tally, stats: ManagerStats| {
        let token_requests = server.counts(id).token_requests;
        Row {
            store,
            token_requests,
            lifetimes,
            per_lifetime: token_requests as f64 / lifetimes.max(1.0),
            tally,
            fetches: stats.fetches,
            from_store: stats.from_store,
        }
    };
    let rows = vec![
        row("redis", "p4-redis", redis_tally, redis_stats),
        row("memory", "p4-memory", memory_tally, memory_stats),
    ];
    // Per refresh cycle: one cycle is what a single manager does on its own, so the
    // memory fleet's requests / instances; independent of where refresh-ahead falls.
    let cycles = rows[1].token_requests as f64 / p.instances as f64;
    let mut table = Table::new(&[
        "fleet",
        "token requests",
        "lifetimes elapsed",
        "per lifetime",
        "per refresh cycle",
        "token() calls",
        "failed",
        "taken from the store",
    ]);
    for r in &rows {
        table.row(vec![
            format!("{} x {}", p.instances, r.store),
            r.token_requests.to_string(),
            format!("{:.1}", r.lifetimes),
            format!("{:.1}", r.per_lifetime),
            format!("{:.1}", r.token_requests as f64 / cycles.max(1.0)),
            r.tally.total().to_string(),
            r.tally.failures().to_string(),
            r.from_store.to_string(),
        ]);
    }
    let met = rows[0].token_requests as f64 / cycles.max(1.0) <= 1.0 && rows[0].tally.failures() == 0;
    let markdown = format!(
        "## P4 fleet: {n} instances sharing Redis vs {n} with memory stores\n\n\
         Token lifetime {} s, identity provider latency {} ms, {} callers per instance calling `token()` \
         every {} ms for {} s; both fleets at once.\n\n{}\n\
         Target 1 vs {n} per refresh cycle: {}.\n",
        p.lifetime.as_secs_f64(),
        p.idp_delay.as_millis(),
        p.callers,
        p.pause.as_millis(),
        p.duration.as_secs_f64(),
        table.markdown(),
        verdict(met),
        n = p.instances,
    );
    let data = json!({
        "params": {
            "instances": p.instances,
            "callers": p.callers,
            "lifetime_s": p.lifetime.as_secs_f64(),
            "duration_s": p.duration.as_secs_f64(),
            "idp_delay_ms": p.idp_delay.as_millis() as u64,
        },
        "rows": rows,
    });
    Ok((Report { part: "p4", markdown, data }, rows))
}
