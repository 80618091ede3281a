//! Benchmarks of the token path against the alternatives.
//!
//! - `benches/bearer.rs` (criterion): the cost of getting the header from a warm cache;
//! - the `loadbench` binary: the load harness of issue 8 (P1 throughput, P2 herd,
//!   P3 rollover with its chart, P4 fleet), built from the modules here;
//!   `cargo run -p bench --release --bin loadbench -- all` writes `bench/results/`.
//!
//! The unit tests run the harness at toy sizes and check behaviour, never timing.
#![allow(clippy::expect_used)] // a benchmark whose setup fails should stop loudly

pub mod bearer;
pub mod chart;
pub mod contenders;
pub mod export;
pub mod fleet;
pub mod herd;
pub mod p1_throughput;
pub mod report;
pub mod rollover;
pub mod server;

#[cfg(test)]
mod smoke;
