//! Bulk Data export end to end, over real HTTP against the sandbox's strict
//! `$export` server behind the SMART Backend Services emulator: kick-off by GET and
//! POST, polling through 429 and transient failures, exact bytes across dropped
//! connections, the token only where it belongs, tokens expiring mid-export,
//! resume without a second kick-off, and a fleet sharing one export through Redis.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use auth_core::{AuthClient, ErrorKind, TokenManager};
use auth_fhir::bulk::{
    BulkExport, DirExportStore, DirSink, ExportDownloads, ExportEvent, ExportPolling, ExportRequest,
    ExportStatus, ExportStore, FileKind, MemoryExportStore, PollEvent, RedisExportStore,
};
use auth_fhir::model::ObservationValue;
use auth_fhir::{FhirClient, FhirErrorExt, Observation, OperationOutcome};
use auth_sandbox::fhir::{ExportLevel, FhirStore, sample_patients};
use auth_sandbox::{Sandbox, SandboxConfig};
use integration_tests::smart_source;
use serde_json::{Value, json};

use crate::fleet::RedisServer;

struct Setup {
    sandbox: Sandbox,
}

impl Setup {
    async fn start(token_lifetime: Duration) -> Self {
        let sandbox =
            Sandbox::start(SandboxConfig::default().with_token_lifetime(token_lifetime)).await.unwrap();
        let store = sandbox.smart().fhir_store();
        store.seed(sample_patients());
        store.seed(observations());
        Self { sandbox }
    }

    fn store(&self) -> &Arc<FhirStore> {
        self.sandbox.smart().fhir_store()
    }

    /// A client of its own, as another process would have.
    fn fhir(&self) -> FhirClient {
        let source = smart_source(self.sandbox.smart()).scopes(["system/*.rs"]).build().unwrap();
        let api = AuthClient::new(TokenManager::new(source)).unwrap();
        FhirClient::new(api, &self.sandbox.smart().fhir_base()).unwrap()
    }
}

/// Five Observations of 72.50 kg, parsed from text so the decimal keeps its zero.
fn observations() -> Vec<Value> {
    (0..5)
        .map(|i| {
            serde_json::from_str(&format!(
                r#"{{"resourceType": "Observation", "id": "obs-{i}", "status": "final",
                    "code": {{"text": "body weight"}}, "valueQuantity": {{"value": 72.50, "unit": "kg"}}}}"#
            ))
            .unwrap()
        })
        .collect()
}

fn temp_dir(name: &str) -> PathBuf {
    let dir =
        std::env::temp_dir().join(format!("fhir-auth-bulk-{}-{name}-{}", std::process::id(), fastrand()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn fastrand() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64
}

/// Polling that does not dawdle in tests (the server's Retry-After still rules).
fn quick() -> ExportPolling {
    let mut p = ExportPolling::default();
    p.first_backoff = Duration::from_millis(50);
    p
}

fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path).unwrap().lines().map(str::to_owned).collect()
}

/// Each line of synthetic file `n`: `syn-{n}-{i}`, 1024 bytes with its `\n`.
fn assert_synthetic(path: &Path, files: usize, lines_per_file: usize) {
    let bytes = std::fs::read(path).unwrap();
    assert_eq!(bytes.len(), files * lines_per_file * 1024, "{}", path.display());
    for (k, line) in bytes.chunks(1024).enumerate() {
        let (n, i) = (k / lines_per_file + 1, k % lines_per_file);
        assert_eq!(line[1023], b'\n');
        let v: Value = serde_json::from_slice(&line[..1023]).unwrap();
        assert_eq!(v["id"], format!("syn-{n}-{i}"), "line {k}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_system_export_downloads_every_file_once_with_the_bytes_as_sent() {
    let s = Setup::start(Duration::from_secs(300)).await;
    s.store().set_export_error_file(true);
    let fhir = s.fhir();
    let events = Arc::new(Mutex::new(Vec::new()));
    let seen = events.clone();
    let export = BulkExport::new(&fhir, ExportRequest::system().types(["Patient", "Observation"]))
        .polling(quick())
        .on_event(move |e| seen.lock().unwrap().push(e.clone()));
    let parts = temp_dir("system-parts");
    let sink = DirSink::new(&parts);
    let report = export.run(&sink).await.unwrap();
    assert!(report.kicked_off);
    let manifest = &report.export.manifest;
    let (patients, observations) = (s.store().count("Patient"), s.store().count("Observation"));
    assert_eq!(observations, 5);
    // Two resources per file; one error file.
    let files = patients.div_ceil(2) + observations.div_ceil(2);
    assert_eq!((manifest.output.len(), manifest.error.len()), (files, 1));
    assert!(manifest.requires_access_token);
    assert_eq!(report.files.len(), files + 1);
    assert!(report.files.iter().all(|f| f.sent_token && f.reconnects == 0));
    let stats = s.store().export_stats();
    assert_eq!(stats.kickoffs_accepted, 1);
    assert_eq!(stats.polls_too_early, 0, "a poll came before the Retry-After");
    assert_eq!(stats.file_requests_by_file.len(), files + 1);
    assert!(stats.file_requests_by_file.values().all(|n| *n == 1), "{:?}", stats.file_requests_by_file);
    // The manifest as received is kept byte for byte.
    let raw: Value = serde_json::from_slice(&report.export.raw).unwrap();
    assert_eq!(raw["transactionTime"], manifest.transaction_time.as_str());

    let out = temp_dir("system-out");
    let assembled = sink.assemble(manifest, &out).await.unwrap();
    let names: Vec<String> =
        assembled.iter().map(|f| f.path.file_name().unwrap().to_string_lossy().into_owned()).collect();
    assert_eq!(names, ["Observation.ndjson", "Patient.ndjson", "errors.ndjson"]);
    assert_eq!(assembled.iter().map(|f| f.count).collect::<Vec<_>>(), [5, patients as u64, 2]);
    let obs = lines(&out.join("Observation.ndjson"));
    assert_eq!(obs.len(), 5);
    // Each line as the server sent it: the decimal keeps its trailing zero.
    assert!(obs.iter().all(|l| l.contains(r#""value":72.50"#)), "{obs:?}");
    let ids: BTreeSet<String> = obs
        .iter()
        .map(|l| serde_json::from_str::<Value>(l).unwrap()["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids, (0..5).map(|i| format!("obs-{i}")).collect());
    for line in lines(&out.join("errors.ndjson")) {
        serde_json::from_str::<OperationOutcome>(&line).unwrap();
    }
    let events = events.lock().unwrap();
    assert!(matches!(events.first(), Some(ExportEvent::KickedOff)));
    assert!(
        events
            .iter()
            .any(|e| matches!(e, ExportEvent::Poll(PollEvent::InProgress { progress: Some(_), .. })))
    );
    assert_eq!(events.iter().filter(|e| matches!(e, ExportEvent::FileDone(_))).count(), files + 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn kick_off_parameters_reach_the_server_by_get_and_by_post() {
    let s = Setup::start(Duration::from_secs(300)).await;
    s.store().seed([json!({"resourceType": "Group", "id": "g1", "type": "person", "actual": true,
                           "member": [{"entity": {"reference": "Patient/p1"}}]})]);
    let fhir = s.fhir();
    let base = ExportRequest::patients()
        .types(["Observation", "Patient"])
        .since("2020-01-01T00:00:00Z")
        .type_filter("Observation?status=final")
        .type_filter("Observation?code=x|y&date=gt2018-07-01T00:00:00Z");
    for request in [base.clone(), base.clone().post()] {
        let job = fhir.export(&request).await.unwrap();
        let id = job.status_url().path_segments().unwrap().next_back().unwrap().to_owned();
        let seen = s.store().export_job(&id).unwrap().request;
        assert_eq!(seen.level, ExportLevel::Patient);
        assert_eq!(seen.method, if request.is_post() { "POST" } else { "GET" });
        assert_eq!(seen.types, Some(vec!["Observation".to_owned(), "Patient".to_owned()]));
        assert_eq!(seen.since.as_deref(), Some("2020-01-01T00:00:00Z"));
        assert_eq!(
            seen.type_filters,
            ["Observation?status=final", "Observation?code=x|y&date=gt2018-07-01T00:00:00Z"]
        );
    }
    let group = fhir.export(&ExportRequest::group("g1").unwrap()).await.unwrap();
    let id = group.status_url().path_segments().unwrap().next_back().unwrap().to_owned();
    assert_eq!(s.store().export_job(&id).unwrap().request.level, ExportLevel::Group("g1".into()));
    // A refused kick-off is a FHIR error with the server's OperationOutcome.
    let missing = fhir.export(&ExportRequest::group("nope").unwrap()).await.unwrap_err();
    assert_eq!(missing.kind(), ErrorKind::Api);
    assert!(missing.operation_outcome().is_some());
    // Bad parameters never leave the process.
    let before = s.store().export_stats();
    let bad = fhir.export(&ExportRequest::system().since("yesterday")).await.unwrap_err();
    assert_eq!(bad.kind(), ErrorKind::Configuration);
    assert_eq!(s.store().export_stats().kickoffs_refused, before.kickoffs_refused);
}

#[tokio::test(flavor = "multi_thread")]
async fn polling_honours_retry_after_and_rides_out_429_and_transient_failures() {
    let s = Setup::start(Duration::from_secs(300)).await;
    s.store().set_export_ready_after_polls(2);
    s.store().set_export_retry_after(1);
    let fhir = s.fhir();
    let job = fhir.export(&ExportRequest::system().types(["Patient"])).await.unwrap();
    // Poll by hand: 202 with progress and Retry-After, then too soon: 429.
    let ExportStatus::InProgress(first) = job.poll().await.unwrap() else { panic!("ready at once") };
    assert_eq!(first.retry_after, Some(Duration::from_secs(1)));
    assert!(first.progress.is_some());
    let too_soon = job.poll().await.unwrap_err();
    assert_eq!(too_soon.kind(), ErrorKind::Api);
    // Now the loop: it waits as asked, and two transient failures do not end it.
    s.store().transient_status_failures(2);
    let events = Arc::new(Mutex::new(Vec::new()));
    let seen = events.clone();
    let started = Instant::now();
    let done = job.wait(&quick(), move |e| seen.lock().unwrap().push(e.clone())).await.unwrap();
    assert_eq!(done.manifest.output.len(), s.store().count("Patient").div_ceil(2));
    let events = events.lock().unwrap();
    let retried = events.iter().filter(|e| matches!(e, PollEvent::Retrying { .. })).count();
    let too_soon = events.iter().filter(|e| matches!(e, PollEvent::TooSoon { .. })).count() as u64;
    assert_eq!(retried, 2, "{events:?}");
    assert!(started.elapsed() >= Duration::from_millis(900), "the Retry-After of 1 s was not waited");
    let stats = s.store().export_stats();
    assert_eq!(stats.transient_failures, 2);
    // Early polls: ours by hand, and the loop's first (it did not know of the 429
    // before it); once told, it never came early again.
    assert!(too_soon <= 1, "{events:?}");
    assert_eq!(stats.polls_too_early, 1 + too_soon);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failed_job_is_a_fhir_error_and_a_cancelled_one_is_gone() {
    let s = Setup::start(Duration::from_secs(300)).await;
    s.store().set_export_retry_after(0);
    let fhir = s.fhir();
    s.store().fail_next_export();
    let job = fhir.export(&ExportRequest::system()).await.unwrap();
    let failed = job.wait(&quick(), |_| {}).await.unwrap_err();
    assert_eq!(failed.kind(), ErrorKind::Api);
    let outcome = failed.operation_outcome().unwrap();
    assert_eq!(outcome.issue[0].code.as_deref(), Some("exception"));

    let job = fhir.export(&ExportRequest::system()).await.unwrap();
    job.cancel().await.unwrap();
    assert_eq!(s.store().export_stats().cancels, 1);
    let gone = job.poll().await.unwrap_err();
    assert_eq!(gone.kind(), ErrorKind::Api);
    // Cancelling again is not an error: the job is gone either way.
    job.cancel().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn typed_resources_stream_from_files_and_errors_read_as_operation_outcomes() {
    let s = Setup::start(Duration::from_secs(300)).await;
    s.store().set_export_error_file(true);
    s.store().set_export_retry_after(0);
    let fhir = s.fhir();
    let job = fhir.export(&ExportRequest::system().types(["Observation"])).await.unwrap();
    let done = job.wait(&quick(), |_| {}).await.unwrap();
    let downloads = ExportDownloads::new(&fhir, &done.manifest);
    let mut seen = 0;
    for file in &done.manifest.output {
        let mut lines = downloads.open(file).await.unwrap().lines();
        while let Some(obs) = lines.next_resource::<Observation>().await.unwrap() {
            let Some(ObservationValue::Quantity(q)) = &obs.value else { panic!("no quantity") };
            assert_eq!(q.value.as_ref().unwrap().as_str(), "72.50");
            seen += 1;
        }
    }
    assert_eq!(seen, 5);
    let mut errors = downloads.open(&done.manifest.error[0]).await.unwrap().lines();
    let mut issues = 0;
    while let Some(outcome) = errors.next_resource::<OperationOutcome>().await.unwrap() {
        issues += outcome.issue.len();
    }
    assert!(issues >= 2);
    // A line that is not the type asked for says where, not what.
    let mut wrong = downloads.open(&done.manifest.output[0]).await.unwrap().lines();
    let e = wrong.next_resource::<OperationOutcome>().await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidResponse);
    assert!(!e.to_string().contains("72.50"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dropped_connections_resume_and_the_output_stays_exact() {
    let s = Setup::start(Duration::from_secs(300)).await;
    s.store().set_export_retry_after(0);
    s.store().set_export_synthetic("Observation", 3, 256 * 1024);
    for ranges in [true, false] {
        s.store().set_export_ranges(ranges);
        // The next three file answers are cut 100 000 bytes in (not on a line
        // boundary); a resumed answer may be cut again.
        s.store().drop_export_file_after(100_000, 3);
        let before = s.store().export_stats();
        let export = BulkExport::new(&s.fhir(), ExportRequest::system())
            .key(format!("drop-{ranges}"))
            .polling(quick());
        let sink = DirSink::new(temp_dir("drop-parts"));
        let report = export.run(&sink).await.unwrap();
        let reconnects = u64::from(report.files.iter().map(|f| f.reconnects).sum::<u32>());
        let out = temp_dir("drop-out");
        let assembled = sink.assemble(&report.export.manifest, &out).await.unwrap();
        assert_eq!(assembled[0].count, 3 * 256);
        assert_synthetic(&out.join("Observation.ndjson"), 3, 256);
        let stats = s.store().export_stats();
        let dropped = stats.dropped_downloads - before.dropped_downloads;
        assert!(dropped >= 2, "ranges {ranges}: {dropped} drops");
        // Each drop, one reconnection: from where it stopped when the server takes
        // ranges, from the start (skipping what arrived) when it does not.
        assert_eq!(reconnects, dropped, "ranges {ranges}");
        let ranged = stats.range_requests - before.range_requests;
        assert_eq!(ranged, if ranges { dropped } else { 0 }, "ranges {ranges}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tokens_expire_and_refresh_during_an_export_without_a_failed_download() {
    // Tokens live one second; every request takes 150 ms more.
    let s = Setup::start(Duration::from_secs(1)).await;
    s.store().set_export_retry_after(0);
    s.store().set_export_synthetic("Observation", 12, 64 * 1024);
    s.sandbox.smart().faults().set_latency(Duration::from_millis(150));
    let export = BulkExport::new(&s.fhir(), ExportRequest::system()).polling(quick());
    let sink = DirSink::new(temp_dir("expiry-parts"));
    let started = Instant::now();
    let report = export.run(&sink).await.unwrap();
    assert!(started.elapsed() > Duration::from_secs(2), "the export must outlive a token");
    assert_eq!(report.files.len(), 12);
    let stats = s.store().export_stats();
    assert!(stats.file_requests_by_file.values().all(|n| *n == 1), "a download was tried twice: {stats:?}");
    assert!(s.sandbox.smart().token_requests() >= 2, "no token was refreshed");
    let out = temp_dir("expiry-out");
    sink.assemble(&report.export.manifest, &out).await.unwrap();
    assert_synthetic(&out.join("Observation.ndjson"), 12, 64);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_token_goes_to_no_origin_but_the_fhir_servers_unless_trusted() {
    let s = Setup::start(Duration::from_secs(300)).await;
    s.store().set_export_retry_after(0);
    // Files on another origin that needs no token (capability URLs): none is sent.
    let origin = s.store().start_export_origin(false).await.unwrap();
    // One store for the runs below, as one process keeps it.
    let kept: Arc<dyn ExportStore> = Arc::new(MemoryExportStore::new());
    let report = BulkExport::new(&s.fhir(), ExportRequest::system().types(["Patient"]))
        .key("capability")
        .polling(quick())
        .run(&DirSink::new(temp_dir("origin-parts")))
        .await
        .unwrap();
    assert!(!report.export.manifest.requires_access_token);
    assert!(report.files.iter().all(|f| !f.sent_token));
    let patient_files = s.store().count("Patient").div_ceil(2) as u64;
    let stats = s.store().export_stats();
    assert_eq!(stats.origin_requests, patient_files);
    assert_eq!(stats.origin_authorized_requests, 0);

    // Files on another origin that say they need the token: refused, not sent.
    s.store().start_export_origin(true).await.unwrap();
    let request = ExportRequest::system().types(["Patient"]);
    let refused = BulkExport::new(&s.fhir(), request.clone())
        .key("untrusted")
        .shared_store(kept.clone())
        .polling(quick())
        .run(&DirSink::new(temp_dir("origin-parts")))
        .await
        .unwrap_err();
    assert_eq!(refused.kind(), ErrorKind::Configuration);
    assert!(refused.to_string().contains("not the FHIR server's origin"), "{refused}");
    assert_eq!(s.store().export_stats().origin_authorized_requests, 0);
    assert_eq!(s.store().export_stats().origin_requests, patient_files);
    // Trusted explicitly: sent.
    let origin_now = s.store().export_jobs().last().unwrap().output_urls[0].clone();
    let trusted = BulkExport::new(&s.fhir(), request)
        .key("untrusted")
        .shared_store(kept)
        .polling(quick())
        .trust_origin(origin_now)
        .run(&DirSink::new(temp_dir("origin-parts")))
        .await
        .unwrap();
    assert!(!trusted.kicked_off, "the job kept under the same key is taken up again");
    assert!(trusted.files.iter().all(|f| f.sent_token));
    assert_eq!(s.store().export_stats().origin_authorized_requests, patient_files);
    drop(origin);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_interrupted_export_resumes_without_a_second_kick_off() {
    let s = Setup::start(Duration::from_secs(300)).await;
    s.store().set_export_retry_after(0);
    s.store().set_export_synthetic("Observation", 6, 64 * 1024);
    s.sandbox.smart().faults().set_latency(Duration::from_millis(50));
    let state = temp_dir("resume-state");
    let parts = temp_dir("resume-parts");
    // First run: stopped (the future dropped, as a killed process stops) after two files.
    let done = Arc::new(tokio::sync::Notify::new());
    let count = Arc::new(Mutex::new(0));
    let (notify, counter) = (done.clone(), count.clone());
    let first = BulkExport::new(&s.fhir(), ExportRequest::system())
        .store(DirExportStore::new(&state))
        .polling(quick())
        .on_event(move |e| {
            if matches!(e, ExportEvent::FileDone(_)) {
                let mut c = counter.lock().unwrap();
                *c += 1;
                if *c == 2 {
                    notify.notify_one();
                }
            }
        });
    let sink = DirSink::new(&parts);
    tokio::select! {
        r = first.run(&sink) => panic!("finished before it was stopped: {r:?}"),
        () = done.notified() => {}
    }
    drop(first);
    // Second run, a new client and store object on the same directory: no kick-off.
    let second = BulkExport::new(&s.fhir(), ExportRequest::system())
        .store(DirExportStore::new(&state))
        .polling(quick());
    let report = second.run(&sink).await.unwrap();
    assert!(!report.kicked_off);
    assert_eq!(s.store().export_stats().kickoffs_accepted, 1);
    assert!(report.files.len() <= 4, "files done before were downloaded again: {}", report.files.len());
    let stats = s.store().export_stats();
    // At most the one file in flight when stopped was requested twice.
    assert!(stats.file_requests_by_file.values().filter(|n| **n > 1).count() <= 1, "{stats:?}");
    let out = temp_dir("resume-out");
    sink.assemble(&report.export.manifest, &out).await.unwrap();
    assert_synthetic(&out.join("Observation.ndjson"), 6, 64);
    // A different request under the same name is refused, not mixed in.
    let other = BulkExport::new(&s.fhir(), ExportRequest::patients())
        .key(second.export_key())
        .store(DirExportStore::new(&state));
    assert_eq!(other.run(&sink).await.unwrap_err().kind(), ErrorKind::Configuration);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_fleet_shares_one_export_through_redis_one_kick_off_each_file_once() {
    let redis = RedisServer::start();
    let s = Setup::start(Duration::from_secs(300)).await;
    s.store().set_export_retry_after(0);
    s.store().set_export_synthetic("Observation", 9, 64 * 1024);
    s.sandbox.smart().faults().set_latency(Duration::from_millis(100));
    // A process died holding file 0: its claim lapses and another takes the file.
    let dead = RedisExportStore::new(&redis.url()).unwrap();
    let held = dead.try_claim("nightly", "file-0", Duration::from_secs(1)).await.unwrap();
    assert!(held.is_some());
    let mut workers = Vec::new();
    for n in 0..3 {
        let export = BulkExport::new(&s.fhir(), ExportRequest::system())
            .key("nightly")
            .store(RedisExportStore::new(&redis.url()).unwrap())
            .claim_ttl(Duration::from_secs(1))
            .polling(quick());
        let parts = temp_dir(&format!("fleet-{n}"));
        workers.push(tokio::spawn(async move {
            let report = export.run(&DirSink::new(&parts)).await.unwrap();
            (report, parts)
        }));
    }
    let mut taken = Vec::new();
    let mut kicked_off = 0;
    let mut working = 0;
    for w in workers {
        let (report, parts) = w.await.unwrap();
        kicked_off += usize::from(report.kicked_off);
        working += usize::from(!report.files.is_empty());
        for f in &report.files {
            assert_eq!(f.kind, FileKind::Output);
            let piece = std::fs::read_dir(&parts)
                .unwrap()
                .map(|e| e.unwrap().path())
                .find(|p| p.file_name().unwrap().to_string_lossy().starts_with(&format!("{:05}.", f.index)))
                .unwrap();
            assert_eq!(std::fs::metadata(piece).unwrap().len(), 64 * 1024);
            taken.push(f.index);
        }
    }
    taken.sort_unstable();
    assert_eq!(taken, (0..9).collect::<Vec<_>>(), "every file exactly once across the fleet");
    assert_eq!(kicked_off, 1);
    assert!(working >= 2, "the downloads were not shared");
    let stats = s.store().export_stats();
    assert_eq!(stats.kickoffs_accepted, 1);
    assert!(stats.file_requests_by_file.values().all(|n| *n == 1), "{stats:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_memory_store_keeps_claims_apart() {
    let store = MemoryExportStore::new();
    let a = store.try_claim("k", "file-1", Duration::from_millis(200)).await.unwrap().unwrap();
    assert!(store.try_claim("k", "file-1", Duration::from_secs(1)).await.unwrap().is_none());
    assert!(store.renew(&a, Duration::from_millis(200)).await.unwrap());
    tokio::time::sleep(Duration::from_millis(300)).await;
    let b = store.try_claim("k", "file-1", Duration::from_secs(1)).await.unwrap().unwrap();
    // The lapsed holder's release leaves the new holder alone.
    store.release(&a).await.unwrap();
    assert!(store.try_claim("k", "file-1", Duration::from_secs(1)).await.unwrap().is_none());
    assert!(!store.renew(&a, Duration::from_secs(1)).await.unwrap());
    store.release(&b).await.unwrap();
    assert!(store.try_claim("k", "file-1", Duration::from_secs(1)).await.unwrap().is_some());
}
