//! P6, Bulk Data export: download throughput of our export downloads against a
//! plain reqwest stream of the same files with the same token (rounds alternate
//! which goes first; the ratio is taken within each round), and the CLI's peak
//! resident memory for a large export (GNU time, `%M`).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use auth_core::{AuthClient, TokenManager};
use auth_fhir::FhirClient;
use auth_fhir::bulk::{ExportDownloads, ExportPolling, ExportRequest};
use auth_providers::aidbox::AidboxSource;
use auth_sandbox::{Sandbox, SandboxConfig};
use serde_json::json;

use crate::report::{Report, Table, median, ratio, verdict};

/// Sizes of P6.
#[derive(Debug, Clone)]
pub struct Params {
    /// Files in the throughput export.
    pub files: usize,
    /// Bytes per file in the throughput export.
    pub file_bytes: u64,
    /// Measured rounds (each downloads every file once per contender).
    pub rounds: usize,
    /// Size of the export whose CLI memory is measured (0: skipped).
    pub memory_bytes: u64,
}

impl Params {
    /// The figures: throughput over 4 × 64 MiB, memory for a 1 GiB export.
    pub fn full() -> Self {
        Self { files: 4, file_bytes: 64 << 20, rounds: 7, memory_bytes: 1 << 30 }
    }
    /// Seconds.
    pub fn quick() -> Self {
        Self { files: 2, file_bytes: 4 << 20, rounds: 2, memory_bytes: 32 << 20 }
    }
}

async fn ours(downloads: &ExportDownloads, files: &[auth_fhir::bulk::ExportFile]) -> anyhow::Result<u64> {
    let mut total = 0;
    for f in files {
        let mut d = downloads.open(f).await?;
        while let Some(chunk) = d.chunk().await? {
            total += chunk.len() as u64;
        }
    }
    Ok(total)
}

async fn plain(
    http: &reqwest::Client,
    bearer: &str,
    files: &[auth_fhir::bulk::ExportFile],
) -> anyhow::Result<u64> {
    let mut total = 0;
    for f in files {
        let mut response = http
            .get(&f.url)
            .header("authorization", bearer)
            .header("accept", "application/fhir+ndjson")
            .send()
            .await?
            .error_for_status()?;
        while let Some(chunk) = response.chunk().await? {
            total += chunk.len() as u64;
        }
    }
    Ok(total)
}

fn fhir_client(sandbox: &Sandbox) -> anyhow::Result<FhirClient> {
    let a = sandbox.aidbox();
    let (id, secret) = a.credentials();
    let source = AidboxSource::builder(a.base_url(), id, secret).build()?;
    Ok(FhirClient::new(AuthClient::new(TokenManager::new(source))?, &a.fhir_base())?)
}

/// Runs P6; `cli` is the `fhir-auth` binary for the memory figure.
pub async fn run(p: &Params, cli: Option<&Path>) -> anyhow::Result<Report> {
    let sandbox = Sandbox::start(SandboxConfig::default()).await?;
    let store = sandbox.aidbox().fhir_store();
    store.set_export_retry_after(0);
    store.set_export_synthetic("Observation", p.files, p.file_bytes);
    let fhir = fhir_client(&sandbox)?;
    let job = fhir.export(&ExportRequest::system()).await?;
    let done = job.wait(&ExportPolling::default(), |_| {}).await?;
    let files = done.manifest.output.clone();
    let downloads = ExportDownloads::new(&fhir, &done.manifest);
    let token = fhir.api().authenticator().token().await?;
    let bearer = format!("Bearer {}", token.access_token().expose_secret());
    auth_core::tls::install_default_provider();
    let http = reqwest::Client::new();
    let expected = p.files as u64 * (p.file_bytes / 1024) * 1024;

    // Warm-up: connections and page cache on both paths.
    ours(&downloads, &files).await?;
    plain(&http, &bearer, &files).await?;
    let (mut ratios, mut ours_mbps, mut plain_mbps) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..p.rounds {
        let mut times = [Duration::ZERO; 2];
        let order: [usize; 2] = if round % 2 == 0 { [0, 1] } else { [1, 0] };
        for which in order {
            let started = Instant::now();
            let bytes = if which == 0 {
                ours(&downloads, &files).await?
            } else {
                plain(&http, &bearer, &files).await?
            };
            times[which] = started.elapsed();
            if bytes != expected {
                bail!("contender {which} read {bytes} bytes, not {expected}");
            }
        }
        let mbps = |t: Duration| expected as f64 / 1e6 / t.as_secs_f64();
        ours_mbps.push(mbps(times[0]));
        plain_mbps.push(mbps(times[1]));
        ratios.push(times[1].as_secs_f64() / times[0].as_secs_f64());
    }
    let ratio_median = median(&ratios);
    let memory = match cli {
        Some(bin) if p.memory_bytes > 0 => Some(cli_memory(&sandbox, bin, p.memory_bytes).await?),
        _ => None,
    };

    let mut table = Table::new(&["contender", "MB/s (median of rounds)", "ratio to plain reqwest"]);
    table.row(vec![
        "fhir-auth `ExportDownloads`".into(),
        format!("{:.0}", median(&ours_mbps)),
        ratio(ratio_median),
    ]);
    table.row(vec![
        "plain reqwest stream, same token".into(),
        format!("{:.0}", median(&plain_mbps)),
        ratio(1.0),
    ]);
    let mut markdown = format!(
        "### P6: Bulk Data export\n\nDownload throughput, {} files of {} MiB from the sandbox's `$export` over loopback, {} rounds alternating which contender goes first; the ratio is taken within each round.\n\n{}\nTarget ≥ 0.95×: {} (min round {}).\n",
        p.files,
        p.file_bytes >> 20,
        p.rounds,
        table.markdown(),
        verdict(ratio_median >= 0.95),
        ratio(ratios.iter().copied().fold(f64::INFINITY, f64::min)),
    );
    if let Some(m) = &memory {
        markdown += &format!(
            "\n`fhir-auth export` of {} MiB ({} files): peak resident memory **{:.1} MiB** (GNU time `%M`), {:.1} s wall. Target < 100 MiB: {}.\n",
            m.bytes >> 20,
            m.files,
            m.max_rss_kib as f64 / 1024.0,
            m.wall_secs,
            verdict(m.max_rss_kib < 100 * 1024)
        );
    }
    let data = json!({
        "files": p.files, "file_bytes": p.file_bytes, "rounds": p.rounds,
        "ours_mbps": ours_mbps, "plain_mbps": plain_mbps, "ratios": ratios, "median_ratio": ratio_median,
        "cli_memory": memory.as_ref().map(|m| json!({"bytes": m.bytes, "files": m.files, "max_rss_kib": m.max_rss_kib, "wall_secs": m.wall_secs})),
    });
    Ok(Report { part: "p6", markdown, data })
}

struct Memory {
    bytes: u64,
    files: usize,
    max_rss_kib: u64,
    wall_secs: f64,
}

/// Runs `fhir-auth export` under GNU time against a synthetic export of `bytes`.
async fn cli_memory(sandbox: &Sandbox, bin: &Path, bytes: u64) -> anyhow::Result<Memory> {
    let files = 4;
    sandbox.aidbox().fhir_store().set_export_synthetic("Observation", files, bytes / files as u64);
    let out: PathBuf = std::env::temp_dir().join(format!("fhir-auth-p6-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    let a = sandbox.aidbox();
    let (id, secret) = a.credentials();
    let started = Instant::now();
    let output = tokio::process::Command::new("/usr/bin/time")
        .args(["-f", "maxrss_kb=%M"])
        .arg(bin)
        .args(["export", "--out"])
        .arg(&out)
        .env("FHIR_AUTH_PROVIDER", "aidbox")
        .env("FHIR_AUTH_TOKEN_URL", a.token_url())
        .env("FHIR_AUTH_CLIENT_ID", id)
        .env("FHIR_AUTH_CLIENT_SECRET", secret.expose_secret())
        .output()
        .await
        .context("run /usr/bin/time (Debian package `time`)")?;
    let wall_secs = started.elapsed().as_secs_f64();
    let stderr = String::from_utf8_lossy(&output.stderr);
    if !output.status.success() {
        bail!("fhir-auth export failed: {stderr}");
    }
    let max_rss_kib = stderr
        .lines()
        .find_map(|l| l.strip_prefix("maxrss_kb="))
        .and_then(|v| v.trim().parse().ok())
        .with_context(|| format!("no %M in {stderr}"))?;
    let written = std::fs::metadata(out.join("Observation.ndjson"))?.len();
    let _ = std::fs::remove_dir_all(&out);
    if written != bytes / files as u64 / 1024 * 1024 * files as u64 {
        bail!("the CLI wrote {written} bytes, not {bytes}");
    }
    Ok(Memory { bytes, files, max_rss_kib, wall_secs })
}
