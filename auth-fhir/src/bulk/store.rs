//! Where an export's progress is kept, so an interrupted export continues instead
//! of starting again, and so several processes can share one export's downloads:
//! the [`ExportStore`] trait, kept in memory ([`MemoryExportStore`]), in a
//! directory ([`DirExportStore`]), or in Redis (`RedisExportStore`, feature `redis`).

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use auth_core::{Error, Result};

/// What is kept of one export: enough to come back to it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ExportRecord {
    /// The job's status URL (`Content-Location` of the kick-off).
    pub status_url: String,
    /// The kick-off's [`ExportRequest::key`](super::ExportRequest::key): a saved
    /// job is only taken up again by the same request.
    pub request: String,
}

impl ExportRecord {
    /// A record of the job at `status_url`, kicked off by the request with key `request`.
    pub fn new(status_url: impl Into<String>, request: impl Into<String>) -> Self {
        Self { status_url: status_url.into(), request: request.into() }
    }
}

/// The right to work on one item of an export (its kick-off, or one file), held
/// until released or lapsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    key: String,
    item: String,
    holder: String,
}

impl Claim {
    /// A claim on `item` of export `key` by a fresh random holder.
    pub fn new(key: &str, item: &str) -> Self {
        let holder = format!("{:016x}{:016x}", fastrand::u64(..), fastrand::u64(..));
        Self { key: key.to_owned(), item: item.to_owned(), holder }
    }

    /// The export's key.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The item claimed (`kickoff`, `file-3`).
    pub fn item(&self) -> &str {
        &self.item
    }

    /// The holder's random id.
    pub fn holder(&self) -> &str {
        &self.holder
    }
}

/// Keeps exports' records, which of their files are done, and claims.
///
/// A claim lapses by itself after its `ttl` if its holder dies; the holder renews
/// it while it works. Everything here is about progress, not data: no file's
/// content, no token.
#[async_trait]
pub trait ExportStore: Send + Sync + fmt::Debug + 'static {
    /// The record of export `key`, if one is kept.
    async fn load(&self, key: &str) -> Result<Option<ExportRecord>>;

    /// Keeps `record` as export `key`'s (replacing one kept before, whose done
    /// files are forgotten with it).
    async fn save(&self, key: &str, record: &ExportRecord) -> Result<()>;

    /// Forgets export `key`: its record, done files and claims.
    async fn remove(&self, key: &str) -> Result<()>;

    /// Tries to claim `item` of export `key` for `ttl`; `None` if someone holds it.
    async fn try_claim(&self, key: &str, item: &str, ttl: Duration) -> Result<Option<Claim>>;

    /// Extends `claim` to `ttl` from now if its holder still has it; whether it did.
    async fn renew(&self, claim: &Claim, ttl: Duration) -> Result<bool>;

    /// Gives `claim` back (a claim that lapsed and was taken by another holder is
    /// left alone).
    async fn release(&self, claim: &Claim) -> Result<()>;

    /// Records that `item` of export `key` is done.
    async fn mark_done(&self, key: &str, item: &str) -> Result<()>;

    /// The items of export `key` that are done.
    async fn done(&self, key: &str) -> Result<BTreeSet<String>>;
}

#[async_trait]
impl<T: ExportStore + ?Sized> ExportStore for Arc<T> {
    async fn load(&self, key: &str) -> Result<Option<ExportRecord>> {
        (**self).load(key).await
    }
    async fn save(&self, key: &str, record: &ExportRecord) -> Result<()> {
        (**self).save(key, record).await
    }
    async fn remove(&self, key: &str) -> Result<()> {
        (**self).remove(key).await
    }
    async fn try_claim(&self, key: &str, item: &str, ttl: Duration) -> Result<Option<Claim>> {
        (**self).try_claim(key, item, ttl).await
    }
    async fn renew(&self, claim: &Claim, ttl: Duration) -> Result<bool> {
        (**self).renew(claim, ttl).await
    }
    async fn release(&self, claim: &Claim) -> Result<()> {
        (**self).release(claim).await
    }
    async fn mark_done(&self, key: &str, item: &str) -> Result<()> {
        (**self).mark_done(key, item).await
    }
    async fn done(&self, key: &str) -> Result<BTreeSet<String>> {
        (**self).done(key).await
    }
}

/// Claims held in this process, by (export, item): holder and deadline.
#[derive(Debug, Default)]
struct Claims(Mutex<HashMap<(String, String), (String, Instant)>>);

impl Claims {
    fn try_claim(&self, key: &str, item: &str, ttl: Duration) -> Option<Claim> {
        let mut held = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        let slot = (key.to_owned(), item.to_owned());
        if held.get(&slot).is_some_and(|(_, until)| *until > now) {
            return None;
        }
        let claim = Claim::new(key, item);
        held.insert(slot, (claim.holder.clone(), now + ttl));
        Some(claim)
    }

    fn renew(&self, claim: &Claim, ttl: Duration) -> bool {
        let mut held = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        match held.get_mut(&(claim.key.clone(), claim.item.clone())) {
            Some((holder, until)) if *holder == claim.holder && *until > Instant::now() => {
                *until = Instant::now() + ttl;
                true
            }
            _ => false,
        }
    }

    fn release(&self, claim: &Claim) {
        let mut held = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let slot = (claim.key.clone(), claim.item.clone());
        if held.get(&slot).is_some_and(|(holder, _)| *holder == claim.holder) {
            held.remove(&slot);
        }
    }

    fn forget(&self, key: &str) {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).retain(|(k, _), _| k != key);
    }
}

/// Keeps exports in this process's memory: progress survives a failed run (the
/// next [`BulkExport::run`](super::BulkExport::run) continues), not a restart.
#[derive(Debug, Default)]
pub struct MemoryExportStore {
    records: Mutex<HashMap<String, (ExportRecord, BTreeSet<String>)>>,
    claims: Claims,
}

impl MemoryExportStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn records(&self) -> std::sync::MutexGuard<'_, HashMap<String, (ExportRecord, BTreeSet<String>)>> {
        self.records.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[async_trait]
impl ExportStore for MemoryExportStore {
    async fn load(&self, key: &str) -> Result<Option<ExportRecord>> {
        Ok(self.records().get(key).map(|(r, _)| r.clone()))
    }
    async fn save(&self, key: &str, record: &ExportRecord) -> Result<()> {
        self.records().insert(key.to_owned(), (record.clone(), BTreeSet::new()));
        Ok(())
    }
    async fn remove(&self, key: &str) -> Result<()> {
        self.records().remove(key);
        self.claims.forget(key);
        Ok(())
    }
    async fn try_claim(&self, key: &str, item: &str, ttl: Duration) -> Result<Option<Claim>> {
        Ok(self.claims.try_claim(key, item, ttl))
    }
    async fn renew(&self, claim: &Claim, ttl: Duration) -> Result<bool> {
        Ok(self.claims.renew(claim, ttl))
    }
    async fn release(&self, claim: &Claim) -> Result<()> {
        self.claims.release(claim);
        Ok(())
    }
    async fn mark_done(&self, key: &str, item: &str) -> Result<()> {
        if let Some((_, done)) = self.records().get_mut(key) {
            done.insert(item.to_owned());
        }
        Ok(())
    }
    async fn done(&self, key: &str) -> Result<BTreeSet<String>> {
        Ok(self.records().get(key).map(|(_, d)| d.clone()).unwrap_or_default())
    }
}

/// Keeps exports as JSON files in a directory (`<key>.json`, written whole and
/// renamed into place, so a process killed mid-write leaves the previous state):
/// progress survives a restart of one process. Claims are held in memory, so the
/// directory is for one process at a time; a fleet shares a Redis store.
#[derive(Debug)]
pub struct DirExportStore {
    dir: PathBuf,
    claims: Claims,
    io: tokio::sync::Mutex<()>,
}

#[derive(Serialize, Deserialize)]
struct DirState {
    record: ExportRecord,
    #[serde(default)]
    done: BTreeSet<String>,
}

impl DirExportStore {
    /// A store in `dir` (created when first written to).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into(), claims: Claims::default(), io: tokio::sync::Mutex::new(()) }
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn path(&self, key: &str) -> Result<PathBuf> {
        let safe = !key.is_empty()
            && key.len() <= 200
            && key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
            && !key.starts_with('.');
        if !safe {
            return Err(Error::configuration(
                "an export key is 1 to 200 letters, digits, `-`, `_` and `.` (it names a file)",
            ));
        }
        Ok(self.dir.join(format!("{key}.json")))
    }

    async fn read(&self, key: &str) -> Result<Option<DirState>> {
        let path = self.path(key)?;
        match tokio::fs::read(&path).await {
            Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| {
                Error::store(format!("the export state {} is not readable: {e}", path.display()))
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::store(format!("reading the export state {}: {e}", path.display()))),
        }
    }

    async fn write(&self, key: &str, state: &DirState) -> Result<()> {
        let path = self.path(key)?;
        let io =
            |e: std::io::Error| Error::store(format!("writing the export state {}: {e}", path.display()));
        tokio::fs::create_dir_all(&self.dir).await.map_err(io)?;
        let tmp = path.with_extension("json.tmp");
        let bytes = serde_json::to_vec_pretty(state)
            .map_err(|e| Error::store(format!("the export state did not serialise: {e}")))?;
        tokio::fs::write(&tmp, bytes).await.map_err(io)?;
        tokio::fs::rename(&tmp, &path).await.map_err(io)
    }
}

#[async_trait]
impl ExportStore for DirExportStore {
    async fn load(&self, key: &str) -> Result<Option<ExportRecord>> {
        Ok(self.read(key).await?.map(|s| s.record))
    }
    async fn save(&self, key: &str, record: &ExportRecord) -> Result<()> {
        let _guard = self.io.lock().await;
        self.write(key, &DirState { record: record.clone(), done: BTreeSet::new() }).await
    }
    async fn remove(&self, key: &str) -> Result<()> {
        let _guard = self.io.lock().await;
        let path = self.path(key)?;
        self.claims.forget(key);
        match tokio::fs::remove_file(&path).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::store(format!("removing the export state {}: {e}", path.display()))),
        }
    }
    async fn try_claim(&self, key: &str, item: &str, ttl: Duration) -> Result<Option<Claim>> {
        Ok(self.claims.try_claim(key, item, ttl))
    }
    async fn renew(&self, claim: &Claim, ttl: Duration) -> Result<bool> {
        Ok(self.claims.renew(claim, ttl))
    }
    async fn release(&self, claim: &Claim) -> Result<()> {
        self.claims.release(claim);
        Ok(())
    }
    async fn mark_done(&self, key: &str, item: &str) -> Result<()> {
        let _guard = self.io.lock().await;
        let Some(mut state) = self.read(key).await? else { return Ok(()) };
        if state.done.insert(item.to_owned()) {
            self.write(key, &state).await?;
        }
        Ok(())
    }
    async fn done(&self, key: &str) -> Result<BTreeSet<String>> {
        Ok(self.read(key).await?.map(|s| s.done).unwrap_or_default())
    }
}
