//! Tables and result files.

use std::path::{Path, PathBuf};

use anyhow::Context;

/// What one part measured: a markdown section and its raw data.
#[derive(Debug)]
pub struct Report {
    /// `p1`, `p2`, …: the file name under `bench/results/`.
    pub part: &'static str,
    /// The section as printed.
    pub markdown: String,
    /// Everything measured, for `bench/results/<part>.json`.
    pub data: serde_json::Value,
}

impl Report {
    /// Writes `<dir>/<part>.md` and `<dir>/<part>.json`.
    pub fn write(&self, dir: &Path) -> anyhow::Result<()> {
        std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
        let md = dir.join(format!("{}.md", self.part));
        std::fs::write(&md, &self.markdown).with_context(|| format!("write {}", md.display()))?;
        let json = dir.join(format!("{}.json", self.part));
        let text = serde_json::to_string_pretty(&self.data).context("serialize results")?;
        std::fs::write(&json, text).with_context(|| format!("write {}", json.display()))?;
        Ok(())
    }
}

/// `bench/results`.
pub fn results_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("results")
}

/// A markdown table.
#[derive(Debug, Default)]
pub struct Table {
    headers: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with these column headers.
    pub fn new(headers: &[&str]) -> Self {
        Self { headers: headers.iter().map(|h| (*h).to_owned()).collect(), rows: Vec::new() }
    }

    /// Appends a row.
    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    /// The table in GitHub markdown.
    pub fn markdown(&self) -> String {
        let line = |cells: &[String]| format!("| {} |\n", cells.join(" | "));
        let mut out = line(&self.headers);
        out += &line(&self.headers.iter().map(|_| "---".to_owned()).collect::<Vec<_>>());
        for row in &self.rows {
            out += &line(row);
        }
        out
    }
}

/// The `q`-quantile (0..=1) of `sorted`, nearest rank.
pub fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

/// The median of `values` (unsorted).
pub fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    quantile(&v, 0.5)
}

/// `x` as a ratio like `0.98x`.
pub fn ratio(x: f64) -> String {
    if x.is_finite() { format!("{x:.3}x") } else { "n/a".to_owned() }
}

/// `ok` or `MISS`.
pub fn verdict(met: bool) -> &'static str {
    if met { "met" } else { "MISSED" }
}

/// Groups token request arrival times into refresh events: requests closer than
/// `gap` to the previous one belong to the same event (a herd, or a racy cache's
/// stampede). Returns (events, duplicate requests).
pub fn refresh_events(times: &[f64], gap: f64) -> (u64, u64) {
    let mut sorted = times.to_vec();
    sorted.sort_by(f64::total_cmp);
    let mut events = 0u64;
    let mut last = f64::NEG_INFINITY;
    for t in &sorted {
        if t - last > gap {
            events += 1;
        }
        last = *t;
    }
    (events, sorted.len() as u64 - events)
}
