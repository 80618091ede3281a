//! P1's profile: `calls` API calls of one contender, one after the other, on a
//! single-threaded runtime with the loopback server in the same process, so that
//! valgrind counts the same work on every run however loaded the machine is.
//!
//! ```sh
//! cargo build -p bench --release --bin p1profile
//! # allocations per call: the difference between two run lengths, over the extra calls
//! valgrind --tool=dhat --dhat-out-file=/tmp/ours-1k.json target/release/p1profile ours 1000
//! valgrind --tool=dhat --dhat-out-file=/tmp/ours-2k.json target/release/p1profile ours 2000
//! # instructions by function (AuthClient::execute, try_clone, token(), send_with, …)
//! valgrind --tool=callgrind target/release/p1profile ours 2000
//! ```
//!
//! Contenders: `raw`, `ours`, `ours-token-only`, `authclient-static` (see `contenders.rs`).

use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, bail};
use bench::contenders::{self, Api, Contender, Kind, Outcome};
use bench::server::BenchServer;

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let slug = args.next().unwrap_or_else(|| "ours".to_owned());
    let calls: u64 = args.next().map_or(Ok(1000), |n| n.parse()).context("calls: a number")?;
    let kind = [Kind::Raw, Kind::Ours, Kind::OursTokenOnly, Kind::AuthClientStatic]
        .into_iter()
        .find(|k| k.slug() == slug)
        .with_context(|| format!("unknown contender {slug}"))?;
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(async {
        let server = BenchServer::start().await?;
        server.set_lifetime(std::time::Duration::from_secs(3600));
        let api = Api::new(&server, false)?;
        let contender: Arc<dyn Contender> = contenders::build(kind, &server, &api, "profile").await?;
        // Warm: the token fetched, the connection open.
        if contender.call().await != Outcome::Ok {
            bail!("the warm-up call failed");
        }
        let started = Instant::now();
        for _ in 0..calls {
            if contender.call().await != Outcome::Ok {
                bail!("a call failed");
            }
        }
        let elapsed = started.elapsed();
        println!("{slug}: {calls} calls, {:.1} µs each", elapsed.as_secs_f64() * 1e6 / calls as f64);
        Ok(())
    })
}
