//! The harness at toy sizes: it compiles, runs, and the behaviours the tables are
//! about show up. No timing is asserted (CI machines are noisy).

use std::time::Duration;

use crate::contenders::{self, Api, Kind};
use crate::herd;
use crate::server::BenchServer;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cold_herd_counts_token_requests_per_contender() -> anyhow::Result<()> {
    let server = BenchServer::start().await?;
    // Long enough that a herd of 200 forms before the first token arrives.
    server.set_delay(Duration::from_millis(200));
    let api = Api::new(&server, true)?;

    let ours = herd::cold(&server, &api, Kind::Ours, 200).await?;
    assert_eq!((ours.at_construction, ours.during_herd), (0, 1), "ours: one request, made by the herd");
    assert_eq!(ours.tally.ok, 200, "{ours:?}");

    let racy = herd::cold(&server, &api, Kind::OAuthRacy, 200).await?;
    assert!(racy.during_herd > 1, "a cache without single flight lets the herd through: {racy:?}");
    assert_eq!(racy.tally.ok, 200, "{racy:?}");

    let mutex = herd::cold(&server, &api, Kind::OAuthMutex, 200).await?;
    assert_eq!(mutex.during_herd, 1, "{mutex:?}");

    let middle = herd::cold(&server, &api, Kind::Middle, 200).await?;
    assert_eq!((middle.at_construction, middle.during_herd), (1, 0), "middle fetches eagerly: {middle:?}");

    let raw = herd::cold(&server, &api, Kind::Raw, 200).await?;
    assert_eq!((raw.during_herd, raw.tally.ok), (0, 200), "{raw:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_validates_tokens_and_speaks_h2c() -> anyhow::Result<()> {
    let server = BenchServer::start().await?;
    server.set_lifetime(Duration::from_secs(1));
    let api = Api::new(&server, true)?;
    let response = api.http().get(server.api_url()).bearer_auth("never-issued").send().await?;
    assert_eq!(response.status(), reqwest::StatusCode::UNAUTHORIZED);
    assert_eq!(response.version(), reqwest::Version::HTTP_2, "the herd needs HTTP/2");

    let mutex = contenders::build(Kind::OAuthMutex, &server, &api, "smoke-mutex").await?;
    let header = mutex.header().await?;
    let ok = api.http().get(server.api_url()).header("authorization", header.clone()).send().await?;
    assert!(ok.status().is_success());
    // Expired tokens are rejected, as TestIdentityProvider's API rejects them.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let late = api.http().get(server.api_url()).header("authorization", header).send().await?;
    assert_eq!(late.status(), reqwest::StatusCode::UNAUTHORIZED);
    assert_eq!(server.counts("smoke-mutex").api_rejected, 1);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throughput_and_rollover_parts_run_end_to_end() -> anyhow::Result<()> {
    let server = BenchServer::start().await?;
    let p1 = crate::p1_throughput::Params { tasks: 4, rounds: 1, round: Duration::from_millis(50) };
    let (report, rows) = crate::p1_throughput::run(&server, &p1).await?;
    assert!(report.markdown.contains("| ours (defaults) |"), "{}", report.markdown);
    assert!(rows.iter().all(|r| r.tally.ok > 0 && r.tally.failures() == 0), "{rows:?}");

    // Tokens outlive the run by far, so the counts below do not depend on how
    // fast the machine is: one token, every call served.
    let p3 = crate::rollover::Params {
        rate: 50.0,
        duration: Duration::from_millis(600),
        lifetime: Duration::from_secs(30),
        idp_delay: Duration::from_millis(10),
    };
    let outcomes = crate::rollover::measure(&server, &p3).await?;
    let report = crate::rollover::report(&p3, &outcomes);
    assert!(report.markdown.contains("p99"));
    let ours = outcomes.rows.iter().find(|r| r.kind == Kind::Ours).expect("ours ran");
    assert_eq!((ours.tally.ok, ours.token_requests), (30, 1), "{ours:?}");
    let svg = std::env::temp_dir().join(format!("bench-smoke-{}.svg", std::process::id()));
    crate::chart::rollover_svg(&svg, &outcomes, 0.6, "smoke")?;
    let text = std::fs::read_to_string(&svg)?;
    std::fs::remove_file(&svg)?;
    assert!(text.contains("<svg") && text.contains("ours (defaults)"));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_part_runs_end_to_end() -> anyhow::Result<()> {
    let report = crate::export::run(&crate::export::Params::quick(), None).await?;
    assert_eq!(report.part, "p6");
    let ratios = report.data["ratios"].as_array().map(Vec::len);
    assert_eq!(ratios, Some(2), "{}", report.data);
    assert!(report.markdown.contains("ratio to plain reqwest"));
    Ok(())
}
