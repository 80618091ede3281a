//! The complete-status manifest (Bulk Data IG §"Response - Complete Status"),
//! read leniently: servers differ (see `bulk-data-and-dpop.md` §1.6).

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};

/// What a finished export produced.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct ExportManifest {
    /// The server's time when the export ran: the `_since` of the next one.
    pub transaction_time: String,
    /// The kick-off URL (optional here: later versions of the IG drop it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request: Option<String>,
    /// Whether the files need the access token (`true` also when a server sends
    /// the string `"true"`, as one Oracle product does).
    #[serde(deserialize_with = "bool_or_string")]
    pub requires_access_token: bool,
    /// The data files, one resource type each, several per type possible.
    #[serde(default)]
    pub output: Vec<ExportFile>,
    /// Files of transaction Bundles listing deletions (with `_since`), if any.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub deleted: Vec<ExportFile>,
    /// Files of OperationOutcomes: errors, warnings and information (`outcome`
    /// in later drafts of the IG).
    #[serde(default, alias = "outcome")]
    pub error: Vec<ExportFile>,
    /// Every other member (`extension`, a server's own), kept as sent.
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

/// One file of a manifest. Its `Debug` shows the URL's origin only: a file URL
/// can be a capability URL (a presigned S3 URL, say) whose path and query are the
/// credential.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ExportFile {
    /// The resource type every line holds.
    #[serde(rename = "type")]
    pub resource_type: String,
    /// Where to download it.
    pub url: String,
    /// How many resources it holds, when the server says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<u64>,
}

impl fmt::Debug for ExportFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let origin = url::Url::parse(&self.url)
            .map(|u| format!("{}/[redacted]", u.origin().ascii_serialization()))
            .unwrap_or_else(|_| "[redacted]".to_owned());
        f.debug_struct("ExportFile")
            .field("resource_type", &self.resource_type)
            .field("url", &origin)
            .field("count", &self.count)
            .finish()
    }
}

/// Which list of the manifest a file is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FileKind {
    /// `output`: data.
    Output,
    /// `error`: OperationOutcomes.
    Error,
    /// `deleted`: Bundles of deletions.
    Deleted,
}

impl FileKind {
    /// `output`, `error` or `deleted`.
    pub fn as_str(self) -> &'static str {
        match self {
            FileKind::Output => "output",
            FileKind::Error => "error",
            FileKind::Deleted => "deleted",
        }
    }
}

/// A file of a manifest with its place in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileEntry {
    /// Which list it is in.
    pub kind: FileKind,
    /// Its position in the manifest, counting `output`, then `error`, then
    /// `deleted`: the same on every process reading the same manifest.
    pub index: usize,
    /// The file.
    pub file: ExportFile,
}

impl FileEntry {
    /// The name its state is kept under (`file-<index>`).
    pub fn item(&self) -> String {
        format!("file-{}", self.index)
    }
}

impl ExportManifest {
    /// Every file, in manifest order: `output`, then `error`, then `deleted`.
    pub fn entries(&self) -> Vec<FileEntry> {
        let lists = [
            (FileKind::Output, &self.output),
            (FileKind::Error, &self.error),
            (FileKind::Deleted, &self.deleted),
        ];
        lists
            .into_iter()
            .flat_map(|(kind, files)| files.iter().map(move |f| (kind, f)))
            .enumerate()
            .map(|(index, (kind, file))| FileEntry { kind, index, file: file.clone() })
            .collect()
    }

    /// The resource types of `output`, each once, in manifest order.
    pub fn output_types(&self) -> Vec<&str> {
        let mut types: Vec<&str> = Vec::new();
        for f in &self.output {
            if !types.contains(&f.resource_type.as_str()) {
                types.push(&f.resource_type);
            }
        }
        types
    }
}

fn bool_or_string<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Flag {
        Bool(bool),
        Text(String),
    }
    match Flag::deserialize(d)? {
        Flag::Bool(b) => Ok(b),
        Flag::Text(t) if t.eq_ignore_ascii_case("true") => Ok(true),
        Flag::Text(t) if t.eq_ignore_ascii_case("false") => Ok(false),
        Flag::Text(_) => Err(serde::de::Error::custom("requiresAccessToken is neither true nor false")),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_manifest_reads_leniently_and_lists_files_in_order() {
        let m: ExportManifest = serde_json::from_str(
            r#"{"transactionTime": "2021-01-01T00:00:00Z", "requiresAccessToken": "true",
                "output": [{"type": "Patient", "url": "https://x/p1"}, {"type": "Observation", "url": "https://x/o1", "count": 1000},
                           {"type": "Patient", "url": "https://x/p2"}],
                "outcome": [{"type": "OperationOutcome", "url": "https://x/e1"}],
                "extension": {"https://example.com/extra": true}, "message": "hapi"}"#,
        )
        .unwrap();
        assert!(m.requires_access_token);
        assert_eq!(m.request, None);
        assert_eq!(m.output_types(), ["Patient", "Observation"]);
        let e = m.entries();
        assert_eq!(e.len(), 4);
        assert_eq!((e[3].kind, e[3].index, e[3].file.url.as_str()), (FileKind::Error, 3, "https://x/e1"));
        assert_eq!(e[1].file.count, Some(1000));
        assert!(m.other.contains_key("extension") && m.other.contains_key("message"));
        let bad = serde_json::from_str::<ExportManifest>(
            r#"{"transactionTime": "t", "requiresAccessToken": "maybe", "output": [], "error": []}"#,
        );
        assert!(bad.is_err());
        let shown = format!(
            "{:?}",
            ExportFile {
                resource_type: "Patient".into(),
                url: "https://bucket.example/f1.ndjson?X-Amz-Signature=abc".into(),
                count: None
            }
        );
        assert!(
            shown.contains("https://bucket.example/[redacted]") && !shown.contains("Signature"),
            "{shown}"
        );
    }
}
