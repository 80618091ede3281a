//! Bulk Data export (FHIR Bulk Data Access IG v2.0.0, `$export`): the job SMART
//! Backend Services exists for.
//!
//! | module part | holds |
//! |---|---|
//! | [`ExportRequest`] | the kick-off: system, all patients or a Group; `_type`, `_since`, `_typeFilter`, `_outputFormat`; GET or POST |
//! | [`ExportJob`] | a job on the server: [`FhirClient::export`](crate::FhirClient::export) kicks one off, [`ExportJob::wait`] polls it (`Retry-After`, `X-Progress`, 429, transient failures), [`ExportJob::cancel`] deletes it |
//! | [`ExportManifest`] | the complete-status manifest, read leniently |
//! | [`ExportDownloads`] | files streamed in chunks or as typed lines ([`NdjsonLines`]), the token only where it belongs, dropped connections resumed |
//! | [`BulkExport`] | the whole job: kicked off once, resumed after a crash, files shared by a fleet under claims |
//! | [`ExportStore`] | where progress is kept: [`MemoryExportStore`], [`DirExportStore`], `RedisExportStore` (feature `redis`) |
//! | [`ExportSink`] | where files go: [`DirSink`] writes them and puts them together by type |
//!
//! The access token goes with a file request only when the manifest says
//! `requiresAccessToken: true`, and then only to the FHIR server's origin or one
//! trusted explicitly; tokens are fetched per request, so an export that outlives
//! many tokens downloads with a fresh one each time.
//!
//! ```no_run
//! # async fn demo(fhir: auth_fhir::FhirClient) -> auth_core::Result<()> {
//! use auth_fhir::bulk::{ExportDownloads, ExportPolling, ExportRequest};
//! use auth_fhir::Patient;
//!
//! let job = fhir.export(&ExportRequest::patients().types(["Patient"])).await?;
//! let done = job.wait(&ExportPolling::default(), |event| eprintln!("{event:?}")).await?;
//! let downloads = ExportDownloads::new(&fhir, &done.manifest);
//! for file in &done.manifest.output {
//!     let mut lines = downloads.open(file).await?.lines();
//!     while let Some(patient) = lines.next_resource::<Patient>().await? {
//!         println!("{:?}", patient.id);
//!     }
//! }
//! # Ok(()) }
//! ```

mod download;
mod job;
mod manifest;
#[cfg(feature = "redis")]
mod redis;
mod request;
mod run;
mod sink;
mod store;

pub use download::{
    DOWNLOAD_ATTEMPTS, ExportDownloads, FHIR_NDJSON, FILE_TIMEOUT, FileDownload, IDLE_TIMEOUT, MAX_LINE,
    NdjsonLines,
};
pub use job::{
    CompletedExport, ExportJob, ExportPolling, ExportProgress, ExportStatus, FIRST_BACKOFF, MAX_BACKOFF,
    MAX_RETRY_AFTER, MAX_TRANSIENT_FAILURES, MIN_POLL_DELAY, PollEvent,
};
pub use manifest::{ExportFile, ExportManifest, FileEntry, FileKind};
#[cfg(feature = "redis")]
pub use redis::RedisExportStore;
pub use request::{ExportLevel, ExportRequest};
pub use run::{BulkExport, CLAIM_TTL, ExportEvent, ExportReport, FLEET_RECHECK, FileReport};
pub use sink::{AssembledFile, DirSink, ExportSink, SinkFile};
pub use store::{Claim, DirExportStore, ExportRecord, ExportStore, MemoryExportStore};
