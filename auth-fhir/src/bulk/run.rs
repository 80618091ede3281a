//! A whole export, kicked off once (or taken up again), waited for, and downloaded,
//! by one process or shared by several through an [`ExportStore`].

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use auth_core::{Error, Result};

use super::download::ExportDownloads;
use super::job::{CompletedExport, ExportJob, ExportPolling, PollEvent};
use super::manifest::{FileEntry, FileKind};
use super::request::ExportRequest;
use super::sink::{ExportSink, LineCounter};
use super::store::{Claim, ExportRecord, ExportStore, MemoryExportStore};
use crate::client::FhirClient;

/// How long a claim on the kick-off or on a file lasts unless renewed (its
/// holder renews it every third of this while it works; a holder that dies holds
/// the others up this long at most).
pub const CLAIM_TTL: Duration = Duration::from_secs(30);
/// How often a process with nothing left to claim looks again at the files others
/// hold (one of them may die).
pub const FLEET_RECHECK: Duration = Duration::from_millis(500);
/// The item name of the kick-off's claim.
const KICKOFF: &str = "kickoff";

/// What a [`BulkExport`] reports as it goes (for progress bars and logs).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum ExportEvent {
    /// A new job was kicked off.
    KickedOff,
    /// A job kept in the store was taken up again: no kick-off.
    Resumed,
    /// A status poll.
    Poll(PollEvent),
    /// The manifest is in: `files` files to download.
    Complete {
        /// Files in the manifest.
        files: usize,
        /// Files already done (by an earlier run or another process).
        done: usize,
    },
    /// This process began a file.
    FileStarted {
        /// Its place in the manifest.
        index: usize,
        /// Its resource type.
        resource_type: String,
    },
    /// Bytes of a file arrived.
    Bytes {
        /// Its place in the manifest.
        index: usize,
        /// How many.
        bytes: u64,
    },
    /// This process finished a file.
    FileDone(FileReport),
    /// Every file left is held by another process; waiting for them.
    WaitingForOthers {
        /// Files not yet done.
        pending: usize,
    },
}

/// One file this process downloaded.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct FileReport {
    /// Its place in the manifest.
    pub index: usize,
    /// Which list of the manifest.
    pub kind: FileKind,
    /// Its resource type.
    pub resource_type: String,
    /// Bytes received (without a line break added after an unterminated last line).
    pub bytes: u64,
    /// Resources (non-blank lines).
    pub resources: u64,
    /// The manifest's `count`, if it gave one.
    pub expected: Option<u64>,
    /// Times the connection dropped and the download resumed.
    pub reconnects: u32,
    /// Whether the requests carried the access token.
    pub sent_token: bool,
}

/// What [`BulkExport::run`] did.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct ExportReport {
    /// The finished export's manifest.
    pub export: CompletedExport,
    /// Whether this run kicked the job off (`false`: it was taken up again).
    pub kicked_off: bool,
    /// The files this process downloaded (others were done before, or by others).
    pub files: Vec<FileReport>,
}

type Listener = Arc<dyn Fn(&ExportEvent) + Send + Sync>;

/// A Bulk Data export run whole: kicked off (once, whatever happens), polled until
/// done, and every file downloaded into an [`ExportSink`], with its progress kept
/// in an [`ExportStore`] so that:
///
/// * run again after a failure or a crash (with a store that survives one), it
///   takes the same job up again instead of kicking off another, and downloads
///   only the files not done yet;
/// * several processes sharing a store (Redis) share the job: one kicks it off,
///   each downloads one file at a time under a claim, and a process that dies
///   leaves its file to the others once its claim lapses.
///
/// ```no_run
/// # async fn demo(fhir: auth_fhir::FhirClient) -> auth_core::Result<()> {
/// use auth_fhir::bulk::{BulkExport, DirExportStore, DirSink, ExportRequest};
///
/// let request = ExportRequest::system().types(["Patient", "Observation"]);
/// let export = BulkExport::new(&fhir, request).store(DirExportStore::new("out/.state"));
/// let sink = DirSink::new("out/.parts");
/// let report = export.run(&sink).await?;
/// for file in sink.assemble(&report.export.manifest, "out".as_ref()).await? {
///     println!("{}: {} resources", file.path.display(), file.count);
/// }
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct BulkExport {
    fhir: FhirClient,
    request: ExportRequest,
    key: String,
    store: Arc<dyn ExportStore>,
    polling: ExportPolling,
    trusted: Vec<String>,
    claim_ttl: Duration,
    listener: Option<Listener>,
}

impl fmt::Debug for BulkExport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BulkExport")
            .field("request", &self.request)
            .field("key", &self.key)
            .field("store", &self.store)
            .finish_non_exhaustive()
    }
}

impl BulkExport {
    /// An export of `request` from `fhir`, kept in memory under the request's
    /// [`key`](ExportRequest::key).
    pub fn new(fhir: &FhirClient, request: ExportRequest) -> Self {
        Self {
            fhir: fhir.clone(),
            key: request.key(),
            request,
            store: Arc::new(MemoryExportStore::new()),
            polling: ExportPolling::default(),
            trusted: Vec::new(),
            claim_ttl: CLAIM_TTL,
            listener: None,
        }
    }

    /// Keeps the export's progress in `store`.
    pub fn store(mut self, store: impl ExportStore) -> Self {
        self.store = Arc::new(store);
        self
    }

    /// Keeps the export's progress in a shared `store`.
    pub fn shared_store(mut self, store: Arc<dyn ExportStore>) -> Self {
        self.store = store;
        self
    }

    /// Names the export in the store (default: the request's key). Processes
    /// that share a job use the same name.
    pub fn key(mut self, key: impl Into<String>) -> Self {
        self.key = key.into();
        self
    }

    /// How the status is polled.
    pub fn polling(mut self, polling: ExportPolling) -> Self {
        self.polling = polling;
        self
    }

    /// Sends the token to files on `url`'s origin too, when the manifest requires
    /// it (see [`ExportDownloads::trust_origin`]).
    pub fn trust_origin(mut self, url: impl Into<String>) -> Self {
        self.trusted.push(url.into());
        self
    }

    /// How long claims last (default [`CLAIM_TTL`]).
    pub fn claim_ttl(mut self, ttl: Duration) -> Self {
        self.claim_ttl = ttl.max(Duration::from_millis(300));
        self
    }

    /// Calls `listener` with every [`ExportEvent`].
    pub fn on_event(mut self, listener: impl Fn(&ExportEvent) + Send + Sync + 'static) -> Self {
        self.listener = Some(Arc::new(listener));
        self
    }

    fn emit(&self, event: ExportEvent) {
        if let Some(listener) = &self.listener {
            listener(&event);
        }
    }

    /// The job: the one kept in the store, or a new one kicked off (by exactly one
    /// of the processes sharing the store). Whether this call kicked it off.
    pub async fn start(&self) -> Result<(ExportJob, bool)> {
        loop {
            if let Some(job) = self.saved().await? {
                self.emit(ExportEvent::Resumed);
                return Ok((job, false));
            }
            if let Some(claim) = self.store.try_claim(&self.key, KICKOFF, self.claim_ttl).await? {
                let result = self.kick_off().await;
                self.store.release(&claim).await?;
                return result;
            }
            // Another process is kicking it off: its record comes shortly.
            tokio::time::sleep(FLEET_RECHECK).await;
        }
    }

    async fn saved(&self) -> Result<Option<ExportJob>> {
        let Some(record) = self.store.load(&self.key).await? else { return Ok(None) };
        if record.request != self.request.key() {
            return Err(Error::configuration(format!(
                "the export `{}` kept in the store was kicked off by another request; \
                 use another key, or cancel that one first",
                self.key
            )));
        }
        ExportJob::resume(self.fhir.clone(), &record.status_url).map(Some)
    }

    async fn kick_off(&self) -> Result<(ExportJob, bool)> {
        // Someone may have saved it between our look and our claim.
        if let Some(job) = self.saved().await? {
            self.emit(ExportEvent::Resumed);
            return Ok((job, false));
        }
        let job = self.fhir.export(&self.request).await?;
        self.store.save(&self.key, &ExportRecord::new(job.status_url().as_str(), self.request.key())).await?;
        self.emit(ExportEvent::KickedOff);
        Ok((job, true))
    }

    /// Waits for the job to finish (kicking it off if need be) and returns its
    /// manifest, without downloading anything.
    pub async fn wait(&self) -> Result<(ExportJob, bool, CompletedExport)> {
        let (job, kicked_off) = self.start().await?;
        let done = job.wait(&self.polling, |e| self.emit(ExportEvent::Poll(e.clone()))).await?;
        Ok((job, kicked_off, done))
    }

    /// Runs the export to its end: every file of the manifest downloaded into
    /// `sink` (by this process or by another sharing the store).
    pub async fn run(&self, sink: &dyn ExportSink) -> Result<ExportReport> {
        let (_, kicked_off, export) = self.wait().await?;
        let downloads = ExportDownloads::new(&self.fhir, &export.manifest)
            .trust_origins(self.trusted.iter().map(String::as_str))?;
        let entries = export.manifest.entries();
        let done = self.store.done(&self.key).await?;
        let already = entries.iter().filter(|e| done.contains(&e.item())).count();
        self.emit(ExportEvent::Complete { files: entries.len(), done: already });
        let mut files = Vec::new();
        loop {
            let done = self.store.done(&self.key).await?;
            let pending: Vec<&FileEntry> = entries.iter().filter(|e| !done.contains(&e.item())).collect();
            if pending.is_empty() {
                break;
            }
            let mut progressed = false;
            for entry in &pending {
                if let Some(report) = self.take(&downloads, entry, sink).await? {
                    files.push(report);
                    progressed = true;
                }
            }
            if !progressed {
                self.emit(ExportEvent::WaitingForOthers { pending: pending.len() });
                tokio::time::sleep(FLEET_RECHECK).await;
            }
        }
        Ok(ExportReport { export, kicked_off, files })
    }

    /// Downloads `entry` if no one else holds or has done it.
    async fn take(
        &self,
        downloads: &ExportDownloads,
        entry: &FileEntry,
        sink: &dyn ExportSink,
    ) -> Result<Option<FileReport>> {
        let item = entry.item();
        let Some(claim) = self.store.try_claim(&self.key, &item, self.claim_ttl).await? else {
            return Ok(None);
        };
        // Done by another holder that released its claim just before ours.
        if self.store.done(&self.key).await?.contains(&item) {
            self.store.release(&claim).await?;
            return Ok(None);
        }
        let result = self.holding(&claim, self.download(downloads, entry, sink)).await;
        // Marked done before the claim goes, so no one takes the file up again.
        let marked = match &result {
            Ok(_) => self.store.mark_done(&self.key, &item).await,
            Err(_) => Ok(()),
        };
        let released = self.store.release(&claim).await;
        let report = result?;
        marked?;
        released?;
        self.emit(ExportEvent::FileDone(report.clone()));
        Ok(Some(report))
    }

    /// Runs `work` while renewing `claim`.
    async fn holding<T>(&self, claim: &Claim, work: impl Future<Output = Result<T>>) -> Result<T> {
        let renew = async {
            loop {
                tokio::time::sleep(self.claim_ttl / 3).await;
                match self.store.renew(claim, self.claim_ttl).await {
                    Ok(true) => {}
                    Ok(false) => tracing::warn!(item = claim.item(), "lost the claim on an export file"),
                    Err(e) => tracing::warn!(error = %e, "could not renew the claim on an export file"),
                }
            }
        };
        tokio::select! {
            result = work => result,
            () = renew => Err(Error::configuration("unreachable: the renewal loop ended")),
        }
    }

    async fn download(
        &self,
        downloads: &ExportDownloads,
        entry: &FileEntry,
        sink: &dyn ExportSink,
    ) -> Result<FileReport> {
        self.emit(ExportEvent::FileStarted {
            index: entry.index,
            resource_type: entry.file.resource_type.clone(),
        });
        let mut download = downloads.open(&entry.file).await?;
        let mut file = sink.begin(entry).await?;
        let mut lines = LineCounter::default();
        while let Some(chunk) = download.chunk().await? {
            lines.feed(&chunk);
            file.write(&chunk).await?;
            self.emit(ExportEvent::Bytes { index: entry.index, bytes: chunk.len() as u64 });
        }
        if lines.unterminated() {
            // One resource per line, even when files are put together.
            file.write(b"\n").await?;
        }
        file.commit().await?;
        let resources = lines.finish();
        if entry.file.count.is_some_and(|c| c != resources) {
            tracing::warn!(
                index = entry.index,
                expected = entry.file.count,
                resources,
                "an export file holds another number of resources than its manifest says"
            );
        }
        Ok(FileReport {
            index: entry.index,
            kind: entry.kind,
            resource_type: entry.file.resource_type.clone(),
            bytes: download.position(),
            resources,
            expected: entry.file.count,
            reconnects: download.reconnects(),
            sent_token: download.sends_token(),
        })
    }

    /// Cancels the job kept in the store, if any (`DELETE` on its status URL),
    /// and forgets it. Whether there was one.
    pub async fn cancel(&self) -> Result<bool> {
        let Some(record) = self.store.load(&self.key).await? else { return Ok(false) };
        ExportJob::resume(self.fhir.clone(), &record.status_url)?.cancel().await?;
        self.store.remove(&self.key).await?;
        Ok(true)
    }

    /// The store.
    pub fn export_store(&self) -> &Arc<dyn ExportStore> {
        &self.store
    }

    /// The name the export is kept under.
    pub fn export_key(&self) -> &str {
        &self.key
    }
}
