//! The files of a Bulk Data export (export.html#file-request): their content (the
//! NDJSON snapshotted at kick-off, or synthetic lines made on the fly), byte
//! ranges (RFC 9110 §14), the streamed answer with the dropped-connection knob, and
//! the second origin that serves them without a bearer check.

use std::io;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use tokio::sync::oneshot;

use super::export::{Counters, NDJSON};
use super::{FhirStore, exchange, fhir_json, header_str};

/// Length of every synthetic line, its `\n` included.
pub(crate) const SYNTHETIC_LINE: u64 = 1024;

/// The largest piece of a body handed to hyper at once.
const CHUNK: u64 = 64 * 1024;

/// How long a dropped download waits before failing, so what was sent before is
/// flushed to the client first (hyper would otherwise abort with it still buffered).
const DROP_FLUSH: Duration = Duration::from_millis(100);

/// What a file holds.
#[derive(Debug)]
pub(crate) enum Content {
    /// NDJSON made at kick-off.
    Lines(Bytes),
    /// `lines` lines of [`SYNTHETIC_LINE`] bytes, made when sent: file `file` (from
    /// 1) of a synthetic export of `resource_type`.
    Synthetic { resource_type: String, file: usize, lines: u64 },
}

impl Content {
    pub(crate) fn len(&self) -> u64 {
        match self {
            Content::Lines(bytes) => bytes.len() as u64,
            Content::Synthetic { lines, .. } => lines.saturating_mul(SYNTHETIC_LINE),
        }
    }

    /// Up to `max` bytes from `offset`.
    fn read(&self, offset: u64, max: u64) -> Bytes {
        let end = offset.saturating_add(max).min(self.len());
        if offset >= end {
            return Bytes::new();
        }
        match self {
            Content::Lines(bytes) => {
                let (Ok(start), Ok(end)) = (usize::try_from(offset), usize::try_from(end)) else {
                    return Bytes::new();
                };
                bytes.slice(start..end)
            }
            Content::Synthetic { resource_type, file, .. } => {
                // The lines are all the same length: an offset maps to a line and a
                // column, and only the lines this piece covers are made.
                let mut out = Vec::with_capacity(usize::try_from(end - offset).unwrap_or(0));
                let mut at = offset;
                while at < end {
                    let (line, column) = (at / SYNTHETIC_LINE, at % SYNTHETIC_LINE);
                    let text = synthetic_line(resource_type, *file, line);
                    let take = (SYNTHETIC_LINE - column).min(end - at);
                    let from = usize::try_from(column).unwrap_or(0);
                    let to = usize::try_from(column + take).unwrap_or(0);
                    out.extend_from_slice(text.as_bytes().get(from..to).unwrap_or_default());
                    at += take;
                }
                Bytes::from(out)
            }
        }
    }
}

/// Line `line` (from 0) of synthetic file `file`: a resource of `resource_type`
/// with id `syn-{file}-{line}`, padded inside its narrative to exactly
/// [`SYNTHETIC_LINE`] bytes with the `\n`. An Observation also carries
/// `valueQuantity.value` `72.50`, a decimal whose text a client must keep.
pub(crate) fn synthetic_line(resource_type: &str, file: usize, line: u64) -> String {
    let body = if resource_type == "Observation" {
        r#""status":"final","code":{"text":"synthetic"},"valueQuantity":{"value":72.50,"unit":"kg","system":"http://unitsofmeasure.org","code":"kg"},"#
    } else {
        ""
    };
    let head = format!(
        r#"{{"resourceType":"{resource_type}","id":"syn-{file}-{line}",{body}"text":{{"status":"generated","div":"<div xmlns=\"http://www.w3.org/1999/xhtml\">"#
    );
    let tail = "</div>\"}}\n";
    // The knob only takes resource type names, so the head always leaves room.
    let pad = usize::try_from(SYNTHETIC_LINE).unwrap_or(0).saturating_sub(head.len() + tail.len());
    let mut text = head;
    text.extend(std::iter::repeat_n('x', pad));
    text.push_str(tail);
    text
}

/// A `Range` header, read against a body of `len` bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ask {
    /// No range, or one this server ignores (several ranges, another unit, a
    /// malformed one: RFC 9110 §14.2 lets a server ignore those).
    Whole,
    /// Bytes `start..=last`.
    Part(u64, u64),
    /// 416.
    Unsatisfiable,
}

fn parse_range(header: Option<&str>, len: u64) -> Ask {
    let Some(spec) = header.and_then(|h| h.trim().strip_prefix("bytes=")) else { return Ask::Whole };
    if spec.contains(',') {
        return Ask::Whole;
    }
    let Some((first, last)) = spec.trim().split_once('-') else { return Ask::Whole };
    let number = |s: &str| {
        (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())).then(|| s.parse::<u64>().ok()).flatten()
    };
    match (first, last) {
        ("", suffix) => match number(suffix) {
            Some(0) => Ask::Unsatisfiable,
            Some(_) if len == 0 => Ask::Unsatisfiable,
            Some(n) => Ask::Part(len - n.min(len), len - 1),
            None => Ask::Whole,
        },
        (first, "") => match number(first) {
            Some(start) if start < len => Ask::Part(start, len - 1),
            Some(_) => Ask::Unsatisfiable,
            None => Ask::Whole,
        },
        (first, last) => match (number(first), number(last)) {
            (Some(start), Some(end)) if start <= end && start < len => Ask::Part(start, end.min(len - 1)),
            (Some(start), Some(end)) if start <= end => Ask::Unsatisfiable,
            _ => Ask::Whole,
        },
    }
}

/// What the body stream carries along.
struct Sending {
    content: Arc<Content>,
    at: u64,
    end: u64,
    sent: u64,
    /// Fail the body once this many bytes went out.
    cut_after: Option<u64>,
    counters: Arc<Counters>,
}

/// A file's answer: 200 in full, or 206 for a `Range` when `ranges` is on (416 when
/// it cannot be met); streamed in pieces of 64 KiB; cut after `cut_after` bytes of
/// what this answer sends when the drop knob chose it.
pub(crate) fn respond(
    content: Arc<Content>,
    range: Option<&str>,
    ranges: bool,
    cut_after: Option<u64>,
    counters: Arc<Counters>,
) -> Response {
    let len = content.len();
    let ask = if ranges { parse_range(range, len) } else { Ask::Whole };
    let (status, start, end) = match ask {
        Ask::Whole => (StatusCode::OK, 0, len),
        Ask::Part(start, last) => (StatusCode::PARTIAL_CONTENT, start, last + 1),
        Ask::Unsatisfiable => {
            let mut response = fhir_json(
                StatusCode::RANGE_NOT_SATISFIABLE,
                &exchange::issue(
                    "error",
                    "invalid",
                    &format!("the file has {len} bytes: {}", range.unwrap_or_default()),
                ),
            );
            if let Ok(v) = HeaderValue::from_str(&format!("bytes */{len}")) {
                response.headers_mut().insert(header::CONTENT_RANGE, v);
            }
            return response;
        }
    };
    if status == StatusCode::PARTIAL_CONTENT {
        counters.range_requests.fetch_add(1, Ordering::Relaxed);
    }
    let state = Sending { content, at: start, end, sent: 0, cut_after, counters };
    let stream = futures_util::stream::unfold(Some(state), |state| async move {
        let mut s = state?;
        if s.at >= s.end {
            return None;
        }
        let room = match s.cut_after {
            Some(limit) if s.sent >= limit => {
                tokio::time::sleep(DROP_FLUSH).await;
                s.counters.dropped_downloads.fetch_add(1, Ordering::Relaxed);
                let error = io::Error::new(
                    io::ErrorKind::ConnectionReset,
                    "download cut by the sandbox (drop_export_file_after)",
                );
                return Some((Err(error), None));
            }
            Some(limit) => limit - s.sent,
            None => u64::MAX,
        };
        let piece = s.content.read(s.at, CHUNK.min(s.end - s.at).min(room));
        let n = piece.len() as u64;
        s.at += n;
        s.sent += n;
        s.counters.bytes_served.fetch_add(n, Ordering::Relaxed);
        Some((Ok::<Bytes, io::Error>(piece), Some(s)))
    });
    let mut response = Response::new(Body::from_stream(stream));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(NDJSON));
    // Set by hand: a streamed body has no length of its own, and a client must know
    // how much to expect (a cut download is then visibly short).
    if let Ok(v) = HeaderValue::from_str(&(end - start).to_string()) {
        headers.insert(header::CONTENT_LENGTH, v);
    }
    if ranges {
        headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    }
    if status == StatusCode::PARTIAL_CONTENT
        && let Ok(v) = HeaderValue::from_str(&format!("bytes {start}-{}/{len}", end - 1))
    {
        headers.insert(header::CONTENT_RANGE, v);
    }
    response
}

/// The second origin; it shuts down when this is dropped.
#[derive(Debug)]
pub(crate) struct Origin {
    pub(crate) base: String,
    /// Dropping it tells the server to stop: it stops accepting, and closes its
    /// idle keep-alive connections too (aborting the task would leave those open,
    /// and a pooled client connection could still be served).
    _shutdown: oneshot::Sender<()>,
}

/// Starts the second origin on `127.0.0.1:0`: `GET /files/{job}/{n}.ndjson` serves
/// file `n` of the job, as the FHIR base does, with no bearer check. It holds the
/// store weakly, so a dropped store is not kept alive by it.
pub(crate) async fn start_origin(store: Weak<FhirStore>) -> io::Result<Origin> {
    auth_core::tls::install_default_provider();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    let app = Router::new().route("/files/{job}/{file}", any(origin_file)).with_state(store);
    let (shutdown, stopped) = oneshot::channel::<()>();
    tokio::spawn(async move {
        let stopped = async {
            // Sent or dropped: either way, stop.
            let _ = stopped.await;
        };
        if let Err(e) = axum::serve(listener, app).with_graceful_shutdown(stopped).await {
            tracing::error!(error = %e, "the export file origin stopped");
        }
    });
    Ok(Origin { base, _shutdown: shutdown })
}

async fn origin_file(
    State(store): State<Weak<FhirStore>>,
    Path((job, file)): Path<(String, String)>,
    request: Request,
) -> Response {
    let Some(store) = store.upgrade() else {
        return (StatusCode::SERVICE_UNAVAILABLE, "the FHIR store is gone").into_response();
    };
    let counters = &store.export.counters;
    counters.origin_requests.fetch_add(1, Ordering::Relaxed);
    if request.headers().contains_key(header::AUTHORIZATION) {
        counters.origin_authorized.fetch_add(1, Ordering::Relaxed);
    }
    if request.method() != Method::GET {
        return super::outcome(
            StatusCode::METHOD_NOT_ALLOWED,
            "not-supported",
            "export files are read with GET",
        );
    }
    let n = file.strip_suffix(".ndjson").unwrap_or(&file);
    store.serve_export_file(&job, n, header_str(request.headers(), "range"))
}
