//! P3, rollover: a slow identity provider, short-lived tokens, an open-loop load.
//!
//! Every contender runs at the same time, each with its own schedule of requests
//! at a fixed rate, so the machine's state at any moment is the same for all.
//! Latency is measured from when a request was due, not when it was sent: a
//! contender that stalls is charged for the requests queued behind the stall
//! (no coordinated omission).

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::json;

use crate::contenders::{self, Api, Contender, Kind, Outcome, Tally};
use crate::report::{Report, Table, quantile, ratio, refresh_events, verdict};
use crate::server::{BenchServer, Counts};

/// Sizes of P3.
#[derive(Debug, Clone)]
pub struct Params {
    /// Requests per second per contender.
    pub rate: f64,
    /// Length of the run.
    pub duration: Duration,
    /// Token lifetime.
    pub lifetime: Duration,
    /// Identity provider latency.
    pub idp_delay: Duration,
}

impl Params {
    /// The figures: 250 ms provider, 3 s tokens, 500 req/s for 15 s.
    pub fn full() -> Self {
        Self {
            rate: 500.0,
            duration: Duration::from_secs(15),
            lifetime: Duration::from_secs(3),
            idp_delay: Duration::from_millis(250),
        }
    }
    /// A few seconds.
    pub fn quick() -> Self {
        Self {
            rate: 200.0,
            duration: Duration::from_secs(3),
            lifetime: Duration::from_secs(1),
            idp_delay: Duration::from_millis(100),
        }
    }
}

/// One request: when it was due (seconds from the start), its latency, its outcome.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Sample {
    /// Due time, seconds since the start of the run.
    pub t: f64,
    /// Milliseconds from due to done.
    pub ms: f64,
    /// How it ended.
    pub outcome: Outcome,
}

/// Figures of one contender.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    /// Contender.
    pub kind: Kind,
    /// Median latency, ms.
    pub p50: f64,
    /// 99th percentile, ms.
    pub p99: f64,
    /// Maximum, ms.
    pub max: f64,
    /// Calls.
    pub tally: Tally,
    /// Token requests, from construction to the end.
    pub token_requests: u64,
    /// What the server saw (401s include those ours replayed).
    pub server: Counts,
    /// When token requests arrived, seconds since the start (negative: before it).
    pub token_times: Vec<f64>,
    /// Token requests grouped into refresh events (within the provider's latency).
    pub refresh_events: u64,
    /// Requests beyond the first of each event.
    pub duplicates: u64,
}

/// Everything P3 measured.
#[derive(Debug, Clone, Serialize)]
pub struct Outcomes {
    /// Per contender figures.
    pub rows: Vec<Row>,
    /// Per contender samples, in the order of `rows`.
    pub samples: Vec<Vec<Sample>>,
    /// Lifetimes that ended strictly inside the run.
    pub rollovers: u64,
}

async fn open_loop(c: Arc<dyn Contender>, rate: f64, duration: Duration, start: Instant) -> Vec<Sample> {
    let period = Duration::from_secs_f64(1.0 / rate);
    let n = (duration.as_secs_f64() * rate) as u32;
    let mut pending = Vec::with_capacity(n as usize);
    for i in 0..n {
        let due = start + period * i;
        tokio::time::sleep_until(due.into()).await;
        let c = c.clone();
        pending.push(tokio::spawn(async move {
            let outcome = c.call().await;
            Sample { t: (due - start).as_secs_f64(), ms: due.elapsed().as_secs_f64() * 1e3, outcome }
        }));
    }
    let mut samples = Vec::with_capacity(pending.len());
    for p in pending {
        if let Ok(s) = p.await {
            samples.push(s);
        }
    }
    samples
}

/// Runs P3 against `server`.
pub async fn measure(server: &BenchServer, p: &Params) -> anyhow::Result<Outcomes> {
    server.set_delay(p.idp_delay);
    server.set_lifetime(p.lifetime);
    let api = Api::new(server, false)?;
    let mut contenders = Vec::new();
    for kind in Kind::ALL {
        contenders.push(contenders::build(kind, server, &api, &format!("p3-{}", kind.slug())).await?);
    }
    // Warm: P3 is about rollovers, not the cold start (P2 measures that), and middle
    // has its first token from construction anyway. The token target counts this fetch.
    let warmed_on_server = server.elapsed();
    for c in &contenders {
        c.call().await;
    }
    let start = Instant::now() + Duration::from_millis(20);
    let start_on_server = server.elapsed() + 0.020;
    let runs: Vec<_> =
        contenders.iter().map(|c| tokio::spawn(open_loop(c.clone(), p.rate, p.duration, start))).collect();
    let mut samples = Vec::new();
    for r in runs {
        samples.push(r.await.unwrap_or_default());
    }
    let mut rows = Vec::new();
    for (c, s) in contenders.iter().zip(&samples) {
        let mut ms: Vec<f64> = s.iter().map(|s| s.ms).collect();
        ms.sort_by(f64::total_cmp);
        let mut tally = Tally::default();
        s.iter().for_each(|s| tally.add(s.outcome));
        let server_counts = server.counts(c.client_id());
        let token_times: Vec<f64> =
            server.token_times(c.client_id()).iter().map(|t| t - start_on_server).collect();
        let (refresh_events, duplicates) = refresh_events(&token_times, p.idp_delay.as_secs_f64());
        rows.push(Row {
            kind: c.kind(),
            p50: quantile(&ms, 0.5),
            p99: quantile(&ms, 0.99),
            max: ms.last().copied().unwrap_or(f64::NAN),
            tally,
            token_requests: server_counts.token_requests,
            server: server_counts,
            token_times,
            refresh_events,
            duplicates,
        });
    }
    server.set_lifetime(Duration::from_secs(3600));
    // Expiries inside the run of a chain of tokens starting at the warm-up fetch,
    // which was a little before the start.
    let lead = start_on_server - warmed_on_server;
    let rollovers = ((p.duration.as_secs_f64() + lead) / p.lifetime.as_secs_f64()).ceil() as u64 - 1;
    Ok(Outcomes { rows, samples, rollovers })
}

/// The table and verdicts of a P3 run.
pub fn report(p: &Params, o: &Outcomes) -> Report {
    let raw_p99 = o.rows.iter().find(|r| r.kind == Kind::Raw).map_or(f64::NAN, |r| r.p99);
    let mut table = Table::new(&[
        "contender",
        "p50 ms",
        "p99 ms",
        "max ms",
        "p99 / raw p99",
        "failed calls",
        "token requests",
        "refresh events",
        "401s seen by the server",
    ]);
    for r in &o.rows {
        table.row(vec![
            r.kind.label().to_owned(),
            format!("{:.2}", r.p50),
            format!("{:.2}", r.p99),
            format!("{:.1}", r.max),
            ratio(r.p99 / raw_p99),
            r.tally.failures().to_string(),
            r.token_requests.to_string(),
            r.refresh_events.to_string(),
            r.server.api_rejected.to_string(),
        ]);
    }
    let ours = o.rows.iter().find(|r| r.kind == Kind::Ours);
    let p99_met = ours.is_some_and(|r| r.p99 <= 1.1 * raw_p99);
    let failures_met = ours.is_some_and(|r| r.tally.failures() == 0);
    let tokens_met = ours.is_some_and(|r| r.token_requests <= o.rollovers + 1);
    let markdown = format!(
        "## P3 rollover: {} req/s open loop for {} s, token lifetime {} s, identity provider latency {} ms\n\n\
         All contenders at once, HTTP/1.1, latency from when each request was due. \
         {} rollovers inside the run, so the token target is <= {}. Each contender made one call \
         before the start (warm cache); token requests count from there.\n\n{}\n\
         Targets ours: p99 <= 1.1x raw p99: {}; 0 failures: {}; token requests <= rollovers + 1: {}.\n\n\
         Chart: `rollover.svg` (worst latency per 100 ms, log scale; ticks: token requests).\n",
        p.rate,
        p.duration.as_secs_f64(),
        p.lifetime.as_secs_f64(),
        p.idp_delay.as_millis(),
        o.rollovers,
        o.rollovers + 1,
        table.markdown(),
        verdict(p99_met),
        verdict(failures_met),
        verdict(tokens_met),
    );
    let data = json!({
        "params": {
            "rate": p.rate,
            "duration_s": p.duration.as_secs_f64(),
            "lifetime_s": p.lifetime.as_secs_f64(),
            "idp_delay_ms": p.idp_delay.as_millis() as u64,
        },
        "rollovers": o.rollovers,
        "rows": o.rows,
        // [due s, latency ms, outcome (0 ok, 1 rejected, 2 failed)], rounded: the
        // file stays small enough to keep next to the tables.
        "sample_columns": ["t_s", "latency_ms", "outcome"],
        "samples": o.rows.iter().zip(&o.samples).map(|(r, s)| json!({
            "kind": r.kind,
            "samples": s.iter().map(|s| json!([
                (s.t * 1e4).round() / 1e4,
                (s.ms * 1e3).round() / 1e3,
                s.outcome as u8,
            ])).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
    });
    Report { part: "p3", markdown, data }
}
