//! `fhir-auth export`: a Bulk Data export into a directory, resumable.
//!
//! `DIR/<Type>.ndjson` (every output file of a type, in manifest order),
//! `DIR/errors.ndjson` (only when there are error files), `DIR/manifest.json`
//! (as received). The job's state lives in `DIR/.fhir-auth-export/`: run the same
//! command again after an interruption and it takes the same job up again (no
//! second kick-off) and downloads only the files not done yet.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use auth_fhir::bulk::{
    BulkExport, DirExportStore, DirSink, ExportEvent, ExportRequest, ExportStore, FileKind, PollEvent,
};
use serde_json::{Value, json};

use crate::connect::Connection;
use crate::error::CliError;
use crate::output::{live_progress, note, out_json, quiet};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// The export's name in its state directory (one export per `--out`).
const KEY: &str = "export";
/// Marks an export whose files were put together.
const ASSEMBLED: &str = "assembled";
const STATE_DIR: &str = ".fhir-auth-export";

/// What `fhir-auth export` was asked for.
#[derive(Debug)]
pub(crate) struct ExportArgs {
    pub out: PathBuf,
    pub patient: bool,
    pub group: Option<String>,
    pub types: Vec<String>,
    pub since: Option<String>,
    pub type_filters: Vec<String>,
    pub post: bool,
    pub trust_origins: Vec<String>,
    pub cancel: bool,
    pub json: bool,
}

impl ExportArgs {
    fn request(&self) -> Result<ExportRequest, CliError> {
        let mut request = match (&self.group, self.patient) {
            (Some(_), true) => return Err(CliError::config("--patient and --group exclude each other")),
            (Some(id), false) => ExportRequest::group(id)?,
            (None, true) => ExportRequest::patients(),
            (None, false) => ExportRequest::system(),
        };
        request = request.types(&self.types);
        if let Some(since) = &self.since {
            request = request.since(since);
        }
        for filter in &self.type_filters {
            request = request.type_filter(filter);
        }
        if self.post {
            request = request.post();
        }
        Ok(request)
    }
}

pub(crate) async fn run(conn: &Connection, args: ExportArgs) -> Result<(), CliError> {
    let request = args.request()?;
    let fhir = conn.fhir().await?;
    let state_dir = args.out.join(STATE_DIR);
    let store = Arc::new(DirExportStore::new(state_dir.join("state")));
    let mut export = BulkExport::new(&fhir, request.clone()).key(KEY).shared_store(store.clone());
    for origin in &args.trust_origins {
        export = export.trust_origin(origin.clone());
    }
    if args.cancel {
        return cancel(&export, &state_dir, args.json).await;
    }
    let saved = store.load(KEY).await?;
    if let Some(record) = &saved {
        if record.request != request.key() {
            return Err(CliError::config(format!(
                "{} holds another export (other parameters); use another --out, or `--cancel` that one first",
                args.out.display()
            )));
        }
        if store.done(KEY).await?.contains(ASSEMBLED) {
            let summary = read_summary(&state_dir).await?;
            note(&format!("the export in {} is already complete", args.out.display()));
            print_summary(&summary, args.json);
            return Ok(());
        }
    }

    let progress = Arc::new(Mutex::new(Reporter::new()));
    let reporter = progress.clone();
    let export =
        export.on_event(move |event| reporter.lock().unwrap_or_else(PoisonError::into_inner).event(event));
    let sink = DirSink::new(state_dir.join("parts"));
    let report = export.run(&sink).await;
    progress.lock().unwrap_or_else(PoisonError::into_inner).finish();
    let report = report?;

    let manifest = &report.export.manifest;
    tokio::fs::create_dir_all(&args.out)
        .await
        .map_err(|e| CliError::io(args.out.display().to_string(), e))?;
    let manifest_path = args.out.join("manifest.json");
    tokio::fs::write(&manifest_path, &report.export.raw)
        .await
        .map_err(|e| CliError::io(manifest_path.display().to_string(), e))?;
    let assembled = sink.assemble(manifest, &args.out).await?;
    let output: Vec<Value> = assembled
        .iter()
        .filter(|f| f.kind == FileKind::Output)
        .map(|f| json!({"type": f.resource_type, "count": f.count, "path": f.path.display().to_string()}))
        .collect();
    let mut summary = json!({"transactionTime": manifest.transaction_time, "output": output});
    let errors: Vec<&_> = assembled.iter().filter(|f| f.kind == FileKind::Error).collect();
    if let Some(e) = errors.first() {
        summary["error"] = json!({"count": e.count, "path": e.path.display().to_string()});
    }
    if let Some(d) = assembled.iter().find(|f| f.kind == FileKind::Deleted) {
        summary["deleted"] = json!({"count": d.count, "path": d.path.display().to_string()});
    }
    let summary_path = state_dir.join("summary.json");
    tokio::fs::write(&summary_path, summary.to_string())
        .await
        .map_err(|e| CliError::io(summary_path.display().to_string(), e))?;
    store.mark_done(KEY, ASSEMBLED).await?;
    print_summary(&summary, args.json);
    Ok(())
}

async fn cancel(export: &BulkExport, state_dir: &Path, json_out: bool) -> Result<(), CliError> {
    if !export.cancel().await? {
        return Err(CliError::config(format!("there is no export to cancel in {}", state_dir.display())));
    }
    if let Err(e) = tokio::fs::remove_dir_all(state_dir).await
        && e.kind() != std::io::ErrorKind::NotFound
    {
        return Err(CliError::io(state_dir.display().to_string(), e));
    }
    if json_out {
        out_json(&json!({"cancelled": true}));
    } else {
        note("the export was cancelled on the server");
    }
    Ok(())
}

async fn read_summary(state_dir: &Path) -> Result<Value, CliError> {
    let path = state_dir.join("summary.json");
    let bytes = tokio::fs::read(&path).await.map_err(|e| CliError::io(path.display().to_string(), e))?;
    serde_json::from_slice(&bytes).map_err(|e| CliError::config(format!("{}: {e}", path.display())))
}

fn print_summary(summary: &Value, json_out: bool) {
    if json_out {
        out_json(summary);
        return;
    }
    let files = summary["output"].as_array().map(Vec::as_slice).unwrap_or_default();
    for f in files {
        crate::output::out(&format!(
            "{:<24} {:>10} resources  {}",
            f["type"].as_str().unwrap_or_default(),
            f["count"],
            f["path"].as_str().unwrap_or_default()
        ));
    }
    if let Some(e) = summary.get("error") {
        crate::output::out(&format!(
            "{:<24} {:>10} issues     {}",
            "errors",
            e["count"],
            e["path"].as_str().unwrap_or_default()
        ));
    }
    crate::output::out(&format!(
        "transactionTime {}",
        summary["transactionTime"].as_str().unwrap_or_default()
    ));
}

/// Progress on stderr: a live bar on a terminal (`indicatif`), plain lines
/// otherwise, nothing with `--quiet`.
struct Reporter {
    live: Option<ProgressBar>,
    quiet: bool,
    started: Instant,
    files: usize,
    done: usize,
    resources: u64,
    bytes: u64,
}

impl Reporter {
    fn new() -> Self {
        let live = live_progress().then(|| {
            let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
            if let Ok(style) = ProgressStyle::with_template("{spinner} {msg} {elapsed:.dim}") {
                bar.set_style(style);
            }
            bar.enable_steady_tick(Duration::from_millis(120));
            bar
        });
        Self { live, quiet: quiet(), started: Instant::now(), files: 0, done: 0, resources: 0, bytes: 0 }
    }

    fn line(&mut self, text: &str) {
        match &self.live {
            Some(bar) => bar.set_message(text.to_owned()),
            None if self.quiet => {}
            None => eprintln!("{text}"),
        }
    }

    /// Once the manifest is in: the bar counts files.
    fn files_known(&mut self) {
        if let Some(bar) = &self.live {
            bar.set_length(self.files as u64);
            bar.set_position(self.done as u64);
            if let Ok(style) =
                ProgressStyle::with_template("{spinner} [{bar:30}] {pos}/{len} files  {msg} {elapsed:.dim}")
            {
                bar.set_style(style.progress_chars("=> "));
            }
        }
    }

    fn event(&mut self, event: &ExportEvent) {
        match event {
            ExportEvent::KickedOff => self.line("export kicked off"),
            ExportEvent::Resumed => self.line("export taken up again (no new kick-off)"),
            ExportEvent::Poll(PollEvent::InProgress { progress, wait }) => {
                let text = format!(
                    "waiting for the server: {} (next poll in {:.1} s)",
                    progress.as_deref().unwrap_or("in progress"),
                    wait.as_secs_f64()
                );
                self.line(&text);
            }
            ExportEvent::Poll(PollEvent::TooSoon { wait }) => {
                self.line(&format!(
                    "the server asks to poll less often: waiting {:.1} s",
                    wait.as_secs_f64()
                ));
            }
            ExportEvent::Poll(PollEvent::Retrying { error, wait }) => {
                self.line(&format!("status poll failed ({error}); again in {:.1} s", wait.as_secs_f64()));
            }
            ExportEvent::Complete { files, done } => {
                self.files = *files;
                self.done = *done;
                self.started = Instant::now();
                self.line(&format!("export ready: {files} files ({done} already downloaded)"));
                self.files_known();
            }
            ExportEvent::Bytes { bytes, .. } => {
                self.bytes += bytes;
                if self.live.is_some() {
                    let text = self.status();
                    self.line(&text);
                }
            }
            ExportEvent::FileDone(file) => {
                self.done += 1;
                self.resources += file.resources;
                if let Some(bar) = &self.live {
                    bar.set_position(self.done as u64);
                }
                let text = if self.live.is_some() {
                    self.status()
                } else {
                    format!(
                        "file {}/{}: {} {} resources, {} bytes",
                        self.done, self.files, file.resource_type, file.resources, file.bytes
                    )
                };
                self.line(&text);
            }
            ExportEvent::WaitingForOthers { pending } => {
                self.line(&format!("{pending} files are being downloaded by other processes"));
            }
            _ => {}
        }
    }

    fn status(&self) -> String {
        let secs = self.started.elapsed().as_secs_f64().max(0.001);
        format!(
            "resources {}  {:.1} MB  {:.1} MB/s",
            self.resources,
            self.bytes as f64 / 1e6,
            self.bytes as f64 / 1e6 / secs
        )
    }

    fn finish(&mut self) {
        if let Some(bar) = &self.live {
            bar.finish_and_clear();
        }
    }
}
