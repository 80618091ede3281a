//! Where downloaded files go: the [`ExportSink`] trait, and [`DirSink`], which
//! writes each file to a directory and then puts them together by type.

use std::fmt;
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufWriter};

use auth_core::{Error, Result};

use super::manifest::{ExportManifest, FileEntry, FileKind};

/// Takes the bytes of the files a [`BulkExport`](super::BulkExport) downloads.
///
/// [`ExportSink::begin`] may be called again for a file begun before (by this
/// process, or by another whose claim lapsed): the new file replaces the old one.
/// A file counts as done once [`SinkFile::commit`] returns.
#[async_trait]
pub trait ExportSink: Send + Sync + fmt::Debug {
    /// Starts writing `entry`'s file afresh.
    async fn begin(&self, entry: &FileEntry) -> Result<Box<dyn SinkFile>>;
}

/// One file being written.
#[async_trait]
pub trait SinkFile: Send {
    /// Appends the next bytes, exactly as the server sent them.
    async fn write(&mut self, bytes: &[u8]) -> Result<()>;
    /// The file is complete: make it so (rename it into place, say).
    async fn commit(self: Box<Self>) -> Result<()>;
}

/// Writes each file as `<index>.<kind>.<Type>.ndjson` in a directory (through a
/// `.part` file renamed when complete, so a half-written file never looks done),
/// and [`DirSink::assemble`]s them by type afterwards.
#[derive(Debug, Clone)]
pub struct DirSink {
    dir: PathBuf,
}

/// One file [`DirSink::assemble`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct AssembledFile {
    /// The resource type (`OperationOutcome` for the errors, `Bundle` for deletions).
    pub resource_type: String,
    /// Which list of the manifest it comes from.
    pub kind: FileKind,
    /// Where it is.
    pub path: PathBuf,
    /// Resources (non-blank lines) it holds.
    pub count: u64,
    /// Its size.
    pub bytes: u64,
}

const COPY_BUFFER: usize = 256 * 1024;

impl DirSink {
    /// A sink writing into `dir` (created if need be).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn path(&self, entry: &FileEntry) -> Result<PathBuf> {
        let t = &entry.file.resource_type;
        if t.is_empty() || !t.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(Error::invalid_response(
                "Bulk Data manifest",
                200,
                auth_core::ResponseProblem::Other("a file's type is not a resource type".into()),
            ));
        }
        Ok(self.dir.join(format!("{:05}.{}.{t}.ndjson", entry.index, entry.kind.as_str())))
    }

    /// Puts the downloaded files of `manifest` together in `out`, each group in
    /// manifest order: `<Type>.ndjson` for each output type, `errors.ndjson` for
    /// the error files and `deleted.ndjson` for the deletions (each only when
    /// there are some), one resource per line, bytes as downloaded. The pieces
    /// are removed once every group is written.
    pub async fn assemble(&self, manifest: &ExportManifest, out: &Path) -> Result<Vec<AssembledFile>> {
        let entries = manifest.entries();
        let mut groups: Vec<(FileKind, String, Vec<&FileEntry>)> = Vec::new();
        for entry in &entries {
            let name = match entry.kind {
                FileKind::Output => entry.file.resource_type.clone(),
                FileKind::Error => "errors".to_owned(),
                FileKind::Deleted => "deleted".to_owned(),
            };
            match groups.iter_mut().find(|(k, n, _)| *k == entry.kind && *n == name) {
                Some((_, _, members)) => members.push(entry),
                None => groups.push((entry.kind, name, vec![entry])),
            }
        }
        let io = |path: &Path, e: std::io::Error| Error::store(format!("{}: {e}", path.display()));
        tokio::fs::create_dir_all(out).await.map_err(|e| io(out, e))?;
        let mut written = Vec::new();
        let mut buffer = vec![0u8; COPY_BUFFER];
        for (kind, name, members) in groups {
            let path = out.join(format!("{name}.ndjson"));
            let tmp = out.join(format!(".{name}.ndjson.part"));
            let file = tokio::fs::File::create(&tmp).await.map_err(|e| io(&tmp, e))?;
            let mut writer = BufWriter::with_capacity(COPY_BUFFER, file);
            let (mut count, mut bytes) = (0u64, 0u64);
            for entry in &members {
                let piece = self.path(entry)?;
                let mut reader = tokio::fs::File::open(&piece).await.map_err(|e| io(&piece, e))?;
                let mut lines = LineCounter::default();
                loop {
                    let n = reader.read(&mut buffer).await.map_err(|e| io(&piece, e))?;
                    let Some(chunk) = buffer.get(..n).filter(|c| !c.is_empty()) else { break };
                    lines.feed(chunk);
                    writer.write_all(chunk).await.map_err(|e| io(&tmp, e))?;
                    bytes += n as u64;
                }
                if lines.unterminated() {
                    writer.write_all(b"\n").await.map_err(|e| io(&tmp, e))?;
                    bytes += 1;
                }
                count += lines.finish();
            }
            writer.flush().await.map_err(|e| io(&tmp, e))?;
            drop(writer);
            tokio::fs::rename(&tmp, &path).await.map_err(|e| io(&path, e))?;
            let resource_type = members.first().map(|e| e.file.resource_type.clone()).unwrap_or_default();
            written.push(AssembledFile { resource_type, kind, path, count, bytes });
        }
        for entry in &entries {
            let piece = self.path(entry)?;
            if let Err(e) = tokio::fs::remove_file(&piece).await
                && e.kind() != std::io::ErrorKind::NotFound
            {
                return Err(io(&piece, e));
            }
        }
        Ok(written)
    }
}

#[async_trait]
impl ExportSink for DirSink {
    async fn begin(&self, entry: &FileEntry) -> Result<Box<dyn SinkFile>> {
        let path = self.path(entry)?;
        let tmp = path.with_extension("ndjson.part");
        tokio::fs::create_dir_all(&self.dir)
            .await
            .map_err(|e| Error::store(format!("{}: {e}", self.dir.display())))?;
        let file = tokio::fs::File::create(&tmp)
            .await
            .map_err(|e| Error::store(format!("{}: {e}", tmp.display())))?;
        Ok(Box::new(DirFile { writer: BufWriter::with_capacity(COPY_BUFFER, file), tmp, path }))
    }
}

struct DirFile {
    writer: BufWriter<tokio::fs::File>,
    tmp: PathBuf,
    path: PathBuf,
}

#[async_trait]
impl SinkFile for DirFile {
    async fn write(&mut self, bytes: &[u8]) -> Result<()> {
        self.writer.write_all(bytes).await.map_err(|e| Error::store(format!("{}: {e}", self.tmp.display())))
    }

    async fn commit(mut self: Box<Self>) -> Result<()> {
        let io = |p: &Path, e: std::io::Error| Error::store(format!("{}: {e}", p.display()));
        self.writer.flush().await.map_err(|e| io(&self.tmp, e))?;
        self.writer.get_ref().sync_data().await.map_err(|e| io(&self.tmp, e))?;
        tokio::fs::rename(&self.tmp, &self.path).await.map_err(|e| io(&self.path, e))
    }
}

/// Counts resources (non-blank lines) in bytes fed in pieces.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct LineCounter {
    lines: u64,
    /// Whether the line being read has something other than whitespace.
    content: bool,
    /// Whether the last byte seen ended a line (or nothing was seen).
    at_line_start: bool,
    seen: bool,
}

impl LineCounter {
    pub(crate) fn feed(&mut self, bytes: &[u8]) {
        for b in bytes {
            match b {
                b'\n' => {
                    if self.content {
                        self.lines += 1;
                    }
                    self.content = false;
                }
                b if b.is_ascii_whitespace() => {}
                _ => self.content = true,
            }
        }
        if let Some(last) = bytes.last() {
            self.seen = true;
            self.at_line_start = *last == b'\n';
        }
    }

    /// Whether the bytes end inside a line (so a line break must follow before
    /// another file's bytes).
    pub(crate) fn unterminated(&self) -> bool {
        self.seen && !self.at_line_start
    }

    /// The count, the last line included even without its line break.
    pub(crate) fn finish(self) -> u64 {
        self.lines + u64::from(self.content)
    }
}

#[cfg(test)]
mod tests {
    use super::LineCounter;

    #[test]
    fn lines_are_counted_across_pieces() {
        let mut c = LineCounter::default();
        for piece in [&b"{\"a\":1}\n{\"b\""[..], b":2}\n\n  \n{\"c\":3}"] {
            c.feed(piece);
        }
        assert!(c.unterminated());
        assert_eq!(c.finish(), 3);
        let mut d = LineCounter::default();
        d.feed(b"{}\r\n{}\n");
        assert!(!d.unterminated());
        assert_eq!(d.finish(), 2);
        assert_eq!(LineCounter::default().finish(), 0);
    }
}
