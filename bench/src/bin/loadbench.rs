//! The load harness of issue 8: `loadbench [p1|p2|p3|p4|p6|all|bearer] [--quick]`.
//!
//! `bearer` runs nothing: it tabulates the last `cargo bench -p bench --bench bearer`.
//!
//! Run it in release mode (`cargo run -p bench --release --bin loadbench -- all`);
//! it prints each part's table and writes `bench/results/<part>.md`, `<part>.json`
//! and, for P3, `rollover.svg`. CI builds it but does not run it.

use std::time::Instant;

use anyhow::bail;
use bench::report::{Report, results_dir};
use bench::server::BenchServer;
use bench::{chart, export, fleet, herd, p1_throughput, rollover};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut quick = false;
    let mut parts = Vec::new();
    for arg in std::env::args().skip(1) {
        match arg.as_str() {
            "--quick" => quick = true,
            "p1" | "p2" | "p3" | "p4" | "p6" | "bearer" => parts.push(arg),
            "all" => parts.extend(["p1", "p2", "p3", "p4", "p6"].map(String::from)),
            "-h" | "--help" => {
                println!("usage: loadbench [p1|p2|p3|p4|p6|all|bearer]... [--quick]");
                return Ok(());
            }
            other => {
                bail!(
                    "unknown argument {other:?} (usage: loadbench [p1|p2|p3|p4|p6|all|bearer]... [--quick])"
                )
            }
        }
    }
    if parts.is_empty() {
        parts.extend(["p1", "p2", "p3", "p4"].map(String::from));
    }
    if cfg!(debug_assertions) {
        eprintln!("warning: a debug build; figures mean little (use --release)");
    }
    let dir = results_dir();
    for part in parts {
        let started = Instant::now();
        // A fresh server per part, so no part inherits another's tokens or counters.
        let server = BenchServer::start().await?;
        let report: Report = match part.as_str() {
            "bearer" => bench::bearer::report()?,
            "p1" => {
                let p = if quick { p1_throughput::Params::quick() } else { p1_throughput::Params::full() };
                p1_throughput::run(&server, &p).await?.0
            }
            "p2" => {
                let p = if quick { herd::Params::quick() } else { herd::Params::full() };
                herd::run(&server, &p).await?.0
            }
            "p3" => {
                let p = if quick { rollover::Params::quick() } else { rollover::Params::full() };
                let outcomes = rollover::measure(&server, &p).await?;
                let title = format!(
                    "P3: latency across rollovers ({} req/s, {} s tokens, {} ms identity provider)",
                    p.rate,
                    p.lifetime.as_secs_f64(),
                    p.idp_delay.as_millis()
                );
                std::fs::create_dir_all(&dir)?;
                chart::rollover_svg(&dir.join("rollover.svg"), &outcomes, p.duration.as_secs_f64(), &title)?;
                rollover::report(&p, &outcomes)
            }
            "p4" => {
                let p = if quick { fleet::Params::quick() } else { fleet::Params::full() };
                fleet::run(&server, &p).await?.0
            }
            "p6" => {
                let p = if quick { export::Params::quick() } else { export::Params::full() };
                // The CLI whose memory is measured: FHIR_AUTH_BIN, else the release build beside this one.
                let bin = std::env::var_os("FHIR_AUTH_BIN").map(std::path::PathBuf::from).or_else(|| {
                    std::env::current_exe()
                        .ok()
                        .map(|exe| exe.with_file_name("fhir-auth"))
                        .filter(|p| p.exists())
                });
                if bin.is_none() {
                    eprintln!(
                        "note: no fhir-auth binary (cargo build --release -p fhir-auth-cli); P6 memory skipped"
                    );
                }
                export::run(&p, bin.as_deref()).await?
            }
            _ => unreachable!("arguments were checked above"),
        };
        println!("{}", report.markdown);
        println!("({} took {:.1} s)\n", part, started.elapsed().as_secs_f64());
        report.write(&dir)?;
    }
    println!("results in {}", dir.display());
    Ok(())
}
