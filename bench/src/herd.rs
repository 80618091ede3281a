//! P2, herd: many concurrent callers on HTTP/2 (one connection, many streams).
//!
//! - cold: a fresh contender, then N callers released at once, one call each;
//!   token requests are counted separately at construction (middle fetches
//!   eagerly) and during the herd;
//! - rollover: a warm contender, then N callers calling back to back from the
//!   moment its token is issued until `tail` after it expires.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::contenders::{self, Api, Contender, Kind, Tally};
use crate::report::{Report, Table, refresh_events, verdict};
use crate::server::{BenchServer, Counts};

/// Sizes of P2.
#[derive(Debug, Clone)]
pub struct Params {
    /// Concurrent callers.
    pub callers: usize,
    /// Identity provider latency: the window in which a herd can form.
    pub idp_delay: Duration,
    /// Token lifetime in the rollover run.
    pub lifetime: Duration,
    /// How long the busy callers go on after the first token expires.
    pub tail: Duration,
    /// Run the rollover half.
    pub rollover: bool,
}

impl Params {
    /// The figure: 10,000 callers. The rollover lifetime is 12 s, above ours'
    /// default 10 s lifetime floor (P3 shows what a shorter one does).
    pub fn full() -> Self {
        Self {
            callers: 10_000,
            idp_delay: Duration::from_millis(250),
            lifetime: Duration::from_secs(12),
            tail: Duration::from_secs(2),
            rollover: true,
        }
    }
    /// A few seconds.
    pub fn quick() -> Self {
        Self {
            callers: 1_000,
            idp_delay: Duration::from_millis(100),
            lifetime: Duration::from_secs(1),
            tail: Duration::from_millis(300),
            rollover: true,
        }
    }
}

/// Cold herd figures of one contender.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ColdRow {
    /// Contender.
    pub kind: Kind,
    /// Token requests made while constructing it.
    pub at_construction: u64,
    /// Token requests made by the herd.
    pub during_herd: u64,
    /// Calls.
    pub tally: Tally,
    /// Wall time of the herd.
    pub herd_ms: f64,
}

/// Rollover figures of one contender.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RolloverRow {
    /// Contender.
    pub kind: Kind,
    /// Token lifetimes that ended while the callers ran.
    pub rollovers: u64,
    /// Token lifetimes of wall time the callers ran.
    pub lifetimes: f64,
    /// Token requests while the callers ran.
    pub token_requests: u64,
    /// Those requests grouped into refresh events (arrivals within the provider's
    /// latency of each other are one event).
    pub refresh_events: u64,
    /// Requests beyond the first of each event: a herd that got through.
    pub duplicates: u64,
    /// Calls.
    pub tally: Tally,
    /// What the server saw, including 401s that ours replayed.
    pub server: Counts,
}

/// N callers released at once, one call each.
pub async fn cold_herd(c: &Arc<dyn Contender>, callers: usize) -> (Tally, Duration) {
    let (go, ready) = tokio::sync::watch::channel(false);
    let tasks: Vec<_> = (0..callers)
        .map(|_| {
            let (c, mut ready) = (c.clone(), ready.clone());
            tokio::spawn(async move {
                let _ = ready.wait_for(|go| *go).await;
                c.call().await
            })
        })
        .collect();
    // Let every task reach the gate, so the herd really is concurrent.
    tokio::task::yield_now().await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    let start = Instant::now();
    let _ = go.send(true);
    let mut tally = Tally::default();
    for t in tasks {
        match t.await {
            Ok(outcome) => tally.add(outcome),
            Err(_) => tally.failed += 1,
        }
    }
    (tally, start.elapsed())
}

/// The cold half for one contender.
pub async fn cold(server: &BenchServer, api: &Api, kind: Kind, callers: usize) -> anyhow::Result<ColdRow> {
    let id = format!("p2-cold-{}", kind.slug());
    let c = contenders::build(kind, server, api, &id).await?;
    let built = server.counts(&id);
    let (tally, took) = cold_herd(&c, callers).await;
    let herd = server.counts(&id).since(built);
    Ok(ColdRow {
        kind,
        at_construction: built.token_requests,
        during_herd: herd.token_requests,
        tally,
        herd_ms: took.as_secs_f64() * 1e3,
    })
}

/// The rollover half for one contender.
pub async fn rollover(
    server: &BenchServer,
    api: &Api,
    kind: Kind,
    p: &Params,
) -> anyhow::Result<RolloverRow> {
    let id = format!("p2-roll-{}", kind.slug());
    let c = contenders::build(kind, server, api, &id).await?;
    c.call().await; // warm: the token whose expiry we cross is issued about now
    let before = server.counts(&id);
    let since = server.elapsed();
    // From right after the warm call: the token it got expires `lifetime` from now.
    let (tally, ran) = crate::p1_throughput::closed_loop(&c, p.callers, p.lifetime + p.tail).await;
    let server_counts = server.counts(&id).since(before);
    let times: Vec<f64> = server.token_times(&id).into_iter().filter(|t| *t >= since).collect();
    let (refresh_events, duplicates) = refresh_events(&times, p.idp_delay.as_secs_f64());
    Ok(RolloverRow {
        kind,
        rollovers: (ran.as_secs_f64() / p.lifetime.as_secs_f64()).floor() as u64,
        lifetimes: ran.as_secs_f64() / p.lifetime.as_secs_f64(),
        token_requests: server_counts.token_requests,
        refresh_events,
        duplicates,
        tally,
        server: server_counts,
    })
}

/// Runs P2 against `server`.
pub async fn run(
    server: &BenchServer,
    p: &Params,
) -> anyhow::Result<(Report, Vec<ColdRow>, Vec<RolloverRow>)> {
    server.set_delay(p.idp_delay);
    server.set_lifetime(Duration::from_secs(3600));
    let api = Api::new(server, true)?;
    let mut cold_rows = Vec::new();
    for kind in Kind::ALL {
        cold_rows.push(cold(server, &api, kind, p.callers).await?);
    }
    let mut roll_rows = Vec::new();
    if p.rollover {
        server.set_lifetime(p.lifetime);
        for kind in Kind::ALL {
            roll_rows.push(rollover(server, &api, kind, p).await?);
        }
        server.set_lifetime(Duration::from_secs(3600));
    }

    let mut cold_table = Table::new(&[
        "contender",
        "token requests at construction",
        "token requests by the herd",
        "failed calls",
        "herd wall time (ms)",
    ]);
    for r in &cold_rows {
        cold_table.row(vec![
            r.kind.label().to_owned(),
            r.at_construction.to_string(),
            r.during_herd.to_string(),
            r.tally.failures().to_string(),
            format!("{:.0}", r.herd_ms),
        ]);
    }
    let mut roll_table = Table::new(&[
        "contender",
        "lifetimes elapsed",
        "token requests",
        "refresh events",
        "duplicate requests",
        "calls",
        "failed calls",
        "401s seen by the server",
    ]);
    for r in &roll_rows {
        roll_table.row(vec![
            r.kind.label().to_owned(),
            format!("{:.2}", r.lifetimes),
            r.token_requests.to_string(),
            r.refresh_events.to_string(),
            r.duplicates.to_string(),
            r.tally.total().to_string(),
            r.tally.failures().to_string(),
            r.server.api_rejected.to_string(),
        ]);
    }
    let ours_cold = cold_rows.iter().find(|r| r.kind == Kind::Ours);
    let cold_met =
        ours_cold.is_some_and(|r| r.at_construction == 0 && r.during_herd == 1 && r.tally.failures() == 0);
    let ours_roll = roll_rows.iter().find(|r| r.kind == Kind::Ours);
    let no_duplicates = ours_roll.is_some_and(|r| r.duplicates == 0 && r.tally.failures() == 0);
    let per_lifetime = ours_roll.is_some_and(|r| r.token_requests <= r.rollovers && r.tally.failures() == 0);
    let (ours_requests, ours_lifetimes) = ours_roll.map_or((0, 0.0), |r| (r.token_requests, r.lifetimes));
    let mut markdown = format!(
        "## P2 herd: {} callers on HTTP/2\n\n\
         Identity provider latency {} ms. Cold: a fresh contender, then every caller at once, one call each.\n\n{}\n\
         Target ours: 1 token request cold, none at construction, 0 failed calls: {}.\n",
        p.callers,
        p.idp_delay.as_millis(),
        cold_table.markdown(),
        verdict(cold_met),
    );
    if p.rollover {
        markdown += &format!(
            "\nRollover: token lifetime {} s; a warm contender, then every caller calling back to back \
             until {} ms after its token expired. Token requests exclude the warm-up fetch; requests \
             arriving within the provider's latency of each other count as one refresh event.\n\n{}\n\
             Target ours, at most 1 token request per rollover and 0 failed calls: counted per refresh \
             (no duplicate request) {}; counted per token lifetime elapsed ({} requests in {:.2} lifetimes) {}.\n",
            p.lifetime.as_secs_f64(),
            p.tail.as_millis(),
            roll_table.markdown(),
            verdict(no_duplicates),
            ours_requests,
            ours_lifetimes,
            verdict(per_lifetime),
        );
    }
    let data = json!({
        "params": {
            "callers": p.callers,
            "idp_delay_ms": p.idp_delay.as_millis() as u64,
            "lifetime_s": p.lifetime.as_secs_f64(),
            "tail_ms": p.tail.as_millis() as u64,
        },
        "cold": cold_rows,
        "rollover": roll_rows,
    });
    Ok((Report { part: "p2", markdown, data }, cold_rows, roll_rows))
}
