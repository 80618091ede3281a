//! The P1 micro-benchmark's table: read back what criterion measured in
//! `benches/bearer.rs` (`cargo bench -p bench --bench bearer`) and set it side by side.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use serde_json::{Value, json};

use crate::report::{Report, Table, verdict};

/// Where criterion keeps its results: `$CARGO_TARGET_DIR/criterion`, else the
/// workspace's `target/criterion`.
pub fn criterion_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join("target"));
    target.join("criterion")
}

/// `(contender, median ns)` of one criterion group, in the bench's order of names.
fn group(dir: &Path, group: &str) -> anyhow::Result<Vec<(String, f64)>> {
    let path = dir.join(group);
    let mut out = Vec::new();
    for entry in
        std::fs::read_dir(&path).with_context(|| format!("read {} (run the bench first)", path.display()))?
    {
        let new = entry?.path().join("new");
        let Ok(meta) = std::fs::read_to_string(new.join("benchmark.json")) else { continue };
        let meta: Value = serde_json::from_str(&meta)?;
        let estimates: Value = serde_json::from_str(&std::fs::read_to_string(new.join("estimates.json"))?)?;
        let name = meta["function_id"].as_str().unwrap_or_default().to_owned();
        let median = estimates["median"]["point_estimate"].as_f64().unwrap_or(f64::NAN);
        out.push((name, median));
    }
    Ok(out)
}

/// The P1 table from the last `cargo bench -p bench --bench bearer`.
pub fn report() -> anyhow::Result<Report> {
    let dir = criterion_dir();
    let single = group(&dir, "bearer_single-thread")?;
    let two = group(&dir, "bearer_two-threads-contended")?;
    let find = |rows: &[(String, f64)], name: &str| rows.iter().find(|(n, _)| n == name).map(|r| r.1);
    let Some(static_single) = find(&single, "static header") else { bail!("no static-header baseline") };
    let static_two = find(&two, "static header").unwrap_or(f64::NAN);
    let order = [
        "static header",
        "static header, built at run time",
        "floor: a held Arc<Token>",
        "ours: TokenManager",
        "oauth2-rs + tokio Mutex cache",
        "oauth2-rs + racy RwLock cache",
        "middle 0.5",
    ];
    let mut table = Table::new(&[
        "contender",
        "single thread (ns)",
        "× static",
        "two threads contended (core-ns)",
        "× static",
    ]);
    let mut data = Vec::new();
    for name in order {
        let (Some(s), t) = (find(&single, name), find(&two, name).unwrap_or(f64::NAN)) else { continue };
        table.row(vec![
            name.to_owned(),
            format!("{s:.1}"),
            format!("{:.2}", s / static_single),
            format!("{t:.1}"),
            format!("{:.2}", t / static_two),
        ]);
        data.push(json!({ "contender": name, "single_ns": s, "contended_core_ns": t }));
    }
    let ours_single = find(&single, "ours: TokenManager").unwrap_or(f64::NAN);
    let ours_two = find(&two, "ours: TokenManager").unwrap_or(f64::NAN);
    let (x_single, x_two) = (ours_single / static_single, ours_two / static_two);
    let markdown = format!(
        "## P1 overhead: the bearer from a warm cache (criterion medians)\n\n\
         `cargo bench -p bench --bench bearer`; every contender in one run. Contended: two tasks on \
         two worker threads, core time per acquisition (wall × 2 / operations).\n\n{}\n\
         Target ours <= 1.5x the static header single thread: {} ({x_single:.2}x, {ours_single:.1} ns); \
         <= 2x contended: {} ({x_two:.2}x, {ours_two:.1} core-ns).\n",
        table.markdown(),
        verdict(x_single <= 1.5),
        verdict(x_two <= 2.0),
    );
    Ok(Report { part: "p1-bearer", markdown, data: Value::Array(data) })
}
