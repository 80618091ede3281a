//! P1, overhead: closed-loop HTTP throughput with 32 tasks per contender, warm
//! cache, long-lived token. Contenders take turns in short rounds (order rotated
//! each round) so machine drift hits all alike; the ratio to raw is taken within
//! each round.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::contenders::{self, Api, Contender, Kind, Tally};
use crate::report::{Report, Table, median, quantile, ratio, verdict};
use crate::server::BenchServer;

/// Sizes of P1.
#[derive(Debug, Clone)]
pub struct Params {
    /// Concurrent tasks per contender.
    pub tasks: usize,
    /// Measured rounds (plus one discarded warm-up round).
    pub rounds: usize,
    /// Time per contender per round.
    pub round: Duration,
}

impl Params {
    /// The figure: 32 tasks; 20 rounds of 500 ms slices (a shared machine drifts).
    pub fn full() -> Self {
        Self { tasks: 32, rounds: 20, round: Duration::from_millis(500) }
    }
    /// A few seconds.
    pub fn quick() -> Self {
        Self { tasks: 32, rounds: 2, round: Duration::from_millis(200) }
    }
}

/// Measured figures of one contender.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Row {
    /// Contender.
    pub kind: Kind,
    /// Requests per second in each measured slice.
    pub per_round: Vec<f64>,
    /// All calls over all rounds.
    pub tally: Tally,
    /// Accepted requests per second over all rounds.
    pub throughput: f64,
    /// Median over rounds of (this / mean of the raw slices just before and after);
    /// for raw itself, of one raw slice over the previous one (the noise floor).
    pub median_ratio: f64,
    /// Smallest per-round ratio.
    pub min_ratio: f64,
    /// Quartiles of the per-round ratios.
    pub ratio_quartiles: (f64, f64),
}

/// Runs `tasks` closed loops of `call` for `time`.
pub async fn closed_loop(c: &Arc<dyn Contender>, tasks: usize, time: Duration) -> (Tally, Duration) {
    let start = Instant::now();
    let deadline = start + time;
    let workers: Vec<_> = (0..tasks)
        .map(|_| {
            let c = c.clone();
            tokio::spawn(async move {
                let mut tally = Tally::default();
                while Instant::now() < deadline {
                    tally.add(c.call().await);
                }
                tally
            })
        })
        .collect();
    let mut tally = Tally::default();
    for w in workers {
        match w.await {
            Ok(t) => tally.merge(t),
            Err(_) => tally.failed += 1,
        }
    }
    (tally, start.elapsed())
}

/// Runs P1 against `server`.
pub async fn run(server: &BenchServer, p: &Params) -> anyhow::Result<(Report, Vec<Row>)> {
    server.set_lifetime(Duration::from_secs(3600));
    server.set_delay(Duration::ZERO);
    let api = Api::new(server, false)?;
    let mut contenders = Vec::new();
    let kinds = Kind::ALL.iter().copied().chain([Kind::OursTokenOnly, Kind::AuthClientStatic]);
    for kind in kinds {
        let c = contenders::build(kind, server, &api, &format!("p1-{}", kind.slug())).await?;
        c.call().await; // warm: the token is cached before anything is measured
        contenders.push(c);
    }
    let n = contenders.len();
    let mut per_round = vec![Vec::new(); n];
    let mut tallies = vec![Tally::default(); n];
    let mut ratios = vec![Vec::new(); n];
    // Raw runs before and after every other contender, and each contender is
    // compared with the mean of its two neighbouring raw slices: on a shared
    // machine, load changes within seconds, and only adjacent slices see the same.
    for round in 0..=p.rounds {
        let order: Vec<usize> = (1..n).map(|k| 1 + (k - 1 + round) % (n - 1)).collect();
        let (tally, elapsed) = closed_loop(&contenders[0], p.tasks, p.round).await;
        let mut raw_before = tally.ok as f64 / elapsed.as_secs_f64();
        if round > 0 {
            tallies[0].merge(tally);
            per_round[0].push(raw_before);
        }
        for i in order {
            let (tally, elapsed) = closed_loop(&contenders[i], p.tasks, p.round).await;
            let rate = tally.ok as f64 / elapsed.as_secs_f64();
            let (raw_tally, raw_elapsed) = closed_loop(&contenders[0], p.tasks, p.round).await;
            let raw_after = raw_tally.ok as f64 / raw_elapsed.as_secs_f64();
            if round > 0 {
                tallies[i].merge(tally);
                per_round[i].push(rate);
                ratios[i].push(rate / ((raw_before + raw_after) / 2.0));
                tallies[0].merge(raw_tally);
                per_round[0].push(raw_after);
                ratios[0].push(raw_after / raw_before);
            }
            raw_before = raw_after;
        }
    }
    let rows: Vec<Row> = (0..n)
        .map(|i| Row {
            kind: contenders[i].kind(),
            throughput: per_round[i].iter().sum::<f64>() / per_round[i].len().max(1) as f64,
            per_round: per_round[i].clone(),
            tally: tallies[i],
            median_ratio: median(&ratios[i]),
            min_ratio: ratios[i].iter().copied().fold(f64::INFINITY, f64::min),
            ratio_quartiles: {
                let mut r = ratios[i].clone();
                r.sort_by(f64::total_cmp);
                (quantile(&r, 0.25), quantile(&r, 0.75))
            },
        })
        .collect();

    let mut table = Table::new(&[
        "contender",
        "req/s (mean of rounds)",
        "ratio to raw (median of rounds)",
        "middle half of rounds",
        "worst round",
        "calls",
        "failed",
    ]);
    for r in &rows {
        table.row(vec![
            r.kind.label().to_owned(),
            format!("{:.0}", r.throughput),
            ratio(r.median_ratio),
            format!("{} - {}", ratio(r.ratio_quartiles.0), ratio(r.ratio_quartiles.1)),
            ratio(r.min_ratio),
            r.tally.total().to_string(),
            r.tally.failures().to_string(),
        ]);
    }
    let ratio_of = |kind| rows.iter().find(|r| r.kind == kind).map_or(f64::NAN, |r| r.median_ratio);
    let ours = ratio_of(Kind::Ours);
    let token_only = ratio_of(Kind::OursTokenOnly);
    let markdown = format!(
        "## P1 overhead: HTTP throughput, {} tasks, warm cache\n\n\
         {} rounds; in each, every contender runs one {} ms slice between two raw slices and is \
         compared with their mean (order rotated each round, one warm-up round discarded). Raw's own \
         ratio is one raw slice over the previous one: the noise floor. HTTP/1.1 on loopback, same \
         reqwest client for all.\n\n{}\n\
         Targets: ours (`AuthClient`) >= 0.99x raw, the static bearer on the same reqwest client: {} \
         ({}); `token()` + a plain send >= 0.995x: {} ({}). The static bearer through `AuthClient` \
         ({}) is `AuthClient`'s request path alone.\n",
        p.tasks,
        p.rounds,
        p.round.as_millis(),
        table.markdown(),
        verdict(ours >= 0.99),
        ratio(ours),
        verdict(token_only >= 0.995),
        ratio(token_only),
        ratio(ratio_of(Kind::AuthClientStatic)),
    );
    let data = json!({"params": {"tasks": p.tasks, "rounds": p.rounds, "round_ms": p.round.as_millis() as u64}, "rows": rows});
    Ok((Report { part: "p1", markdown, data }, rows))
}
