//! A small in-memory FHIR R4 server shared by every emulator, as strict as a real
//! one (<https://hl7.org/fhir/R4/http.html>): any resource type, every version kept.
//!
//! | module | what it holds |
//! |---|---|
//! | `rest` | routing; read, vread, create, update, delete, their conditional forms (http.html) |
//! | `search` | search parameters, matching, paging, `_include`/`_revinclude`, `_summary`, `_elements` (search.html) |
//! | `history` | instance, type and system history (http.html#history) |
//! | `patch` | JSON Patch (http.html#patch) |
//! | `transaction` | batch and transaction Bundles (http.html#transaction, bundle.html#transaction) |
//! | `operations` | `$versions`, `$ping`, `[type]/$count`, `Patient/[id]/$everything` (operations.html) |
//! | `export` | Bulk Data `$export` (IG v2.0.0): kick-off, status, manifest, cancel; its knobs and counters |
//! | `export_files` | the export's NDJSON files: ranges, streaming, synthetic files, the second origin |
//! | `capability` | the CapabilityStatement (`metadata`) |
//! | `store` | versions by type and id, and the order they were written in |
//! | `exchange` | one interaction's request and answer, `Prefer`, ETags |
//! | `instant` | FHIR instants and dateTimes as milliseconds |
//! | `types` | the resource types kept, and valid ids |
//!
//! Every error is an OperationOutcome (`application/fhir+json`). Resources are kept
//! as JSON, so fields this server does not know survive a read-modify-update.
//!
//! Authentication is not its business: each emulator wraps [`FhirStore::router`] in
//! its vendor's bearer checks, and tells the store its token URL
//! ([`FhirStore::set_token_url`]) for the CapabilityStatement.
//!
//! Knobs for tests: [`FhirStore::throttle_next`] answers the next requests 429 or
//! 503 with `Retry-After`; [`FhirStore::state_changes`] and [`FhirStore::writes`]
//! tell what requests really changed; [`FhirStore::set_require_if_match`] makes
//! updates without `If-Match` fail 428.
//!
//! Bulk Data export (FHIR Bulk Data Access IG v2.0.0,
//! <https://hl7.org/fhir/uv/bulkdata/STU2/export.html>), strict, under the same
//! bearer check as every other route (paths relative to the FHIR base):
//!
//! | request | answer |
//! |---|---|
//! | `GET\|POST $export`, `Patient/$export`, `Group/[id]/$export` | `202`, `Content-Location: [base]/$export-status/[job]` (absolute; job ids are 32 hex digits), an OperationOutcome (information) |
//! | `GET $export-status/[job]` | `202` with `X-Progress: "<n>% complete"` and `Retry-After: <s>` while running; then `200`, `application/json`, `Expires`, the manifest |
//! | `DELETE $export-status/[job]` | `202` and an OperationOutcome; afterwards the job's status and files are `404` |
//! | `GET $export-file/[job]/[n]` | file `n` (from 1: the `output` files in manifest order, then the `error` file), `application/fhir+ndjson`, `Content-Length`, `Accept-Ranges: bytes`, `Range: bytes=…` → `206` |
//!
//! * Kick-off: `Accept` must be `application/fhir+json` (else 400 "The Accept header
//!   must be application/fhir+json") and `Prefer` must hold `respond-async` (else
//!   400 "The Prefer header must be respond-async"). Parameters, by GET in the
//!   query or by POST as a Parameters body (`Content-Type: application/fhir+json`,
//!   else 415): `_type` (`valueString`; comma list; repeats are joined; a name that
//!   is not a resource type is 400), `_since` (`valueInstant`; a FHIR instant to
//!   the second with a zone, else 400; a resource is exported if its
//!   `meta.lastUpdated` is strictly after it), `_typeFilter` (`valueString`;
//!   `Type?criteria` with this server's search parameters, several per value
//!   separated by commas, a comma starting a new query only where `Type?` follows
//!   it; OR-ed per type; a type without one is exported whole), `_outputFormat`
//!   (`valueString`: `application/fhir+ndjson`, `application/ndjson` or `ndjson`,
//!   else 400). Any other parameter (and a POST's query string) is 400
//!   `not-supported`, unless `Prefer` also holds `handling=lenient`, which ignores
//!   it ([`ExportRequest::ignored`]); the manifest does not report it. A Group that
//!   is not there is 404. Levels: system = every live resource; `Patient` = every
//!   Patient, and every resource whose `subject` or `patient` refers to a live
//!   Patient; `Group` = the same for the Patients of its `member[].entity`.
//! * The data are snapshotted at kick-off, when `transactionTime` is taken: after
//!   every version exported and before any later write, so `_since` with it picks
//!   up exactly what changed since.
//! * Status: a job answers 202 to its first [`FhirStore::set_export_ready_after_polls`]
//!   polls (default 1; `<n>%` = polls × 100 / (that + 1)), then the manifest, as
//!   often as asked. A poll that comes sooner than the `Retry-After` of the previous
//!   202 (less 100 ms, on real time) is 429 (`throttled`, with `Retry-After`) and
//!   does not count. Unknown or deleted jobs are 404.
//! * Manifest: `transactionTime`, `request` (the kick-off URL, a POST's without
//!   query), `requiresAccessToken`, `output` (one entry per file: `type`, `url`,
//!   `count`; [`FhirStore::set_export_resources_per_file`] resources a file, types
//!   in name order, resources by id; `[]` when nothing matched), `error` (`[]`, or
//!   one file, [`FhirStore::set_export_error_file`]); no `deleted`.
//! * Files: each line is the stored resource's JSON text (numbers keep theirs:
//!   `72.50`) and a `\n`, the last line too. They exist once a poll has answered
//!   the manifest, until the job is deleted.
//!
//! Its knobs: [`FhirStore::set_export_ready_after_polls`],
//! [`FhirStore::set_export_retry_after`], [`FhirStore::set_export_resources_per_file`],
//! [`FhirStore::set_export_error_file`], [`FhirStore::set_export_requires_access_token`],
//! [`FhirStore::fail_next_export`] (500 `exception`),
//! [`FhirStore::transient_status_failures`] (500 `transient`),
//! [`FhirStore::set_export_max_running`] (429 at kick-off),
//! [`FhirStore::set_export_ranges`], [`FhirStore::drop_export_file_after`] (a
//! download cut mid-body), [`FhirStore::set_export_synthetic`] (large files made on
//! the fly) and [`FhirStore::start_export_origin`] (output files on a second origin
//! without a bearer check); [`FhirStore::export_stats`], [`FhirStore::export_jobs`]
//! and [`FhirStore::export_job`] tell what happened.

mod capability;
mod exchange;
mod export;
mod export_files;
mod history;
mod instant;
mod operations;
mod patch;
mod rest;
mod search;
mod store;
mod transaction;
mod types;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::SystemTime;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use serde_json::{Value, json};

use exchange::{Answer, Req};
pub use export::{ExportJob, ExportJobState, ExportLevel, ExportRequest, ExportStats};
use store::{Current, Data};

/// The FHIR JSON media type.
pub const FHIR_JSON: &str = "application/fhir+json";

/// Default page size of a search or history.
pub const DEFAULT_PAGE_SIZE: usize = 10;

/// The largest request body the store reads (a bigger one is answered 413).
pub const MAX_BODY: usize = 16 * 1024 * 1024;

/// What `Retry-After` says in a throttled answer (RFC 9110 §10.2.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryAfter {
    /// A number of seconds.
    Seconds(u64),
    /// An HTTP-date.
    At(SystemTime),
}

/// One version written by a client's interaction (create, update, patch or delete;
/// seeds are not counted), as [`FhirStore::writes`] lists them.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Write {
    /// `create`, `update`, `patch` or `delete`.
    pub interaction: &'static str,
    /// The resource type.
    pub resource_type: String,
    /// The logical id.
    pub id: String,
    /// The version written.
    pub version: u64,
}

#[derive(Debug, Default)]
struct Settings {
    token_url: Option<String>,
    require_if_match: bool,
    read_only: bool,
    vendor_params: Vec<String>,
}

#[derive(Debug)]
struct Throttle {
    remaining: u64,
    status: StatusCode,
    retry_after: Option<RetryAfter>,
}

/// An in-memory FHIR R4 server.
#[derive(Debug)]
pub struct FhirStore {
    base: String,
    page_param: String,
    data: Mutex<Data>,
    settings: Mutex<Settings>,
    throttle: Mutex<Option<Throttle>>,
    throttled: AtomicU64,
    state_changes: AtomicU64,
    export: export::Export,
}

/// A JSON answer with the FHIR media type.
pub fn fhir_json(status: StatusCode, body: &Value) -> Response {
    (status, [(header::CONTENT_TYPE, FHIR_JSON)], body.to_string()).into_response()
}

/// An OperationOutcome answer.
pub fn outcome(status: StatusCode, code: &str, diagnostics: &str) -> Response {
    fhir_json(status, &outcome_json(code, diagnostics))
}

/// An OperationOutcome resource with one error issue.
pub fn outcome_json(code: &str, diagnostics: &str) -> Value {
    exchange::issue("error", code, diagnostics)
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl FhirStore {
    /// A store whose public FHIR base URL (used in `Location`, `fullUrl` and paging
    /// links) is `base`, paging with the `_page` query parameter.
    pub fn new(base: impl Into<String>) -> Arc<Self> {
        Self::with_page_param(base, "_page")
    }

    /// As [`FhirStore::new`], with another name for the page parameter (MSK uses `page`).
    pub fn with_page_param(base: impl Into<String>, page_param: &str) -> Arc<Self> {
        Arc::new(Self {
            base: base.into().trim_end_matches('/').to_owned(),
            page_param: page_param.to_owned(),
            data: Mutex::default(),
            settings: Mutex::default(),
            throttle: Mutex::default(),
            throttled: AtomicU64::new(0),
            state_changes: AtomicU64::new(0),
            export: export::Export::default(),
        })
    }

    fn data(&self) -> MutexGuard<'_, Data> {
        lock(&self.data)
    }

    /// The public base URL.
    pub fn base(&self) -> &str {
        &self.base
    }

    pub(crate) fn page_param(&self) -> &str {
        &self.page_param
    }

    /// Routes, relative to the FHIR base: every path under it goes to the store,
    /// which answers unknown ones 404 and wrong methods 405, as OperationOutcomes.
    pub fn router(self: &Arc<Self>) -> Router {
        Router::new().route("/", any(handle)).route("/{*path}", any(handle)).with_state(self.clone())
    }

    /// Names the token endpoint in the CapabilityStatement's `rest.security`
    /// (the SMART `oauth-uris` extension). Each emulator sets its own.
    pub fn set_token_url(&self, url: impl Into<String>) {
        lock(&self.settings).token_url = Some(url.into());
    }

    /// The token URL the CapabilityStatement announces, if set.
    pub fn token_url(&self) -> Option<String> {
        lock(&self.settings).token_url.clone()
    }

    /// Requires `If-Match` on update and patch of an existing resource: without one
    /// the answer is `428 Precondition Required` (http.html#concurrency).
    pub fn set_require_if_match(&self, required: bool) {
        lock(&self.settings).require_if_match = required;
    }

    pub(crate) fn require_if_match(&self) -> bool {
        lock(&self.settings).require_if_match
    }

    /// Refuses every write with 405 and says so in the CapabilityStatement (MSK).
    pub fn set_read_only(&self, read_only: bool) {
        lock(&self.settings).read_only = read_only;
    }

    pub(crate) fn read_only(&self) -> bool {
        lock(&self.settings).read_only
    }

    /// Query parameters the emulator's own layer reads (MSK's study and partner id):
    /// searches accept them without a warning and carry them into paging links.
    pub fn set_vendor_params(&self, names: &[&str]) {
        lock(&self.settings).vendor_params = names.iter().map(|n| (*n).to_owned()).collect();
    }

    pub(crate) fn vendor_params(&self) -> Vec<String> {
        lock(&self.settings).vendor_params.clone()
    }

    /// Answers the next `n` FHIR requests with `status` (429 or 503, typically) and,
    /// if given, `Retry-After`, before looking at them: nothing they ask is done.
    /// Replaces a throttle still running; `n = 0` ends it.
    pub fn throttle_next(&self, n: u64, status: StatusCode, retry_after: Option<RetryAfter>) {
        *lock(&self.throttle) = (n > 0).then_some(Throttle { remaining: n, status, retry_after });
    }

    /// Requests answered by [`FhirStore::throttle_next`] so far.
    pub fn throttled(&self) -> u64 {
        self.throttled.load(Ordering::Relaxed)
    }

    fn take_throttle(&self) -> Option<Response> {
        let mut guard = lock(&self.throttle);
        let throttle = guard.as_mut()?;
        throttle.remaining -= 1;
        let (status, retry_after) = (throttle.status, throttle.retry_after);
        if throttle.remaining == 0 {
            *guard = None;
        }
        drop(guard);
        self.throttled.fetch_add(1, Ordering::Relaxed);
        let code = if status == StatusCode::TOO_MANY_REQUESTS { "throttled" } else { "transient" };
        let mut response =
            outcome(status, code, "the server is busy: try again later (throttled by the sandbox)");
        let value = match retry_after {
            Some(RetryAfter::Seconds(s)) => Some(s.to_string()),
            Some(RetryAfter::At(at)) => Some(httpdate::fmt_http_date(at)),
            None => None,
        };
        if let Some(v) = value.and_then(|v| HeaderValue::from_str(&v).ok()) {
            response.headers_mut().insert(header::RETRY_AFTER, v);
        }
        Some(response)
    }

    /// Requests that changed the data (a create, update, patch, delete, or a batch or
    /// transaction that wrote anything; a transaction counts once). A request that
    /// was refused, throttled or rolled back does not count.
    pub fn state_changes(&self) -> u64 {
        self.state_changes.load(Ordering::Relaxed)
    }

    /// Every version a client's interaction wrote, oldest first.
    pub fn writes(&self) -> Vec<Write> {
        self.data().writes.clone()
    }

    /// Adds resources as they are (ids kept if present, assigned if not; a resource
    /// without `resourceType` is taken as a Patient), as version 1.
    pub fn seed(&self, resources: impl IntoIterator<Item = Value>) {
        let mut data = self.data();
        for r in resources {
            if r.is_object() {
                data.seed(r);
            }
        }
    }

    /// The current version of `Patient/{id}`.
    pub fn get(&self, id: &str) -> Option<Value> {
        self.read("Patient", id)
    }

    /// The current version of `{resource_type}/{id}` (`None` if unknown or deleted).
    pub fn read(&self, resource_type: &str, id: &str) -> Option<Value> {
        match self.data().current(resource_type, id) {
            Current::Live(v) => v.resource.clone(),
            _ => None,
        }
    }

    /// Every version of `{resource_type}/{id}`, oldest first; `None` for a deletion.
    pub fn versions(&self, resource_type: &str, id: &str) -> Vec<Option<Value>> {
        self.data()
            .versions(resource_type, id)
            .map(|v| v.iter().map(|v| v.resource.clone()).collect())
            .unwrap_or_default()
    }

    /// Live resources of every type.
    pub fn len(&self) -> usize {
        self.data().live(None).count()
    }

    /// Live resources of one type.
    pub fn count(&self, resource_type: &str) -> usize {
        self.data().live(Some(resource_type)).count()
    }

    /// Whether there are no live resources.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every resource body received by a create or update (also as a batch or
    /// transaction entry, after its references were rewritten), oldest first, as
    /// sent; kept even when the write was then refused (a stale `If-Match`).
    pub fn received(&self) -> Vec<Value> {
        self.data().received.clone()
    }
}

/// Percent-decodes a path segment (`None` if it is not UTF-8 once decoded); a `%`
/// not followed by two hex digits stays as it is.
pub(crate) fn percent_decode(segment: &str) -> Option<String> {
    percent_encoding::percent_decode_str(segment).decode_utf8().ok().map(std::borrow::Cow::into_owned)
}

/// Every request: the throttle, then the interaction under the data lock (so each
/// is atomic), then the answer.
async fn handle(State(store): State<Arc<FhirStore>>, request: Request) -> Response {
    if let Some(throttled) = store.take_throttle() {
        return throttled;
    }
    let (parts, body) = request.into_parts();
    let body = match axum::body::to_bytes(body, MAX_BODY).await {
        Ok(b) => b,
        Err(_) => {
            return Answer::error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too-costly",
                format!("the body is over {MAX_BODY} bytes or could not be read"),
            )
            .into_response();
        }
    };
    let segments: Option<Vec<String>> =
        parts.uri.path().split('/').filter(|s| !s.is_empty()).map(percent_decode).collect();
    let Some(segments) = segments else {
        return Answer::error(
            StatusCode::BAD_REQUEST,
            "invalid",
            "the path is not valid percent-encoded UTF-8",
        )
        .into_response();
    };
    let req = Req {
        method: parts.method,
        segments,
        query: parse_query(parts.uri.query()),
        headers: parts.headers,
        body,
        resource: None,
        assigned_id: None,
    };
    // Bulk Data export answers with headers, media types and streamed bodies of its
    // own, and takes the data lock itself (a snapshot at kick-off).
    let path_and_query = parts.uri.path_and_query().map_or("", |pq| pq.as_str());
    if let Some(response) = export::route(&store, &req, path_and_query) {
        return response;
    }
    let answer = {
        let mut data = store.data();
        let before = data.writes.len();
        let answer = rest::dispatch(&store, &mut data, &req);
        if data.writes.len() != before {
            store.state_changes.fetch_add(1, Ordering::Relaxed);
        }
        answer
    };
    answer.into_response()
}

fn parse_query(raw: Option<&str>) -> Vec<(String, String)> {
    raw.map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect()).unwrap_or_default()
}

/// A few patients to start with: enough for three pages at `_count=2`.
pub fn sample_patients() -> Vec<Value> {
    let names = [
        ("Chalmers", "Peter", "12345"),
        ("Chalmers", "Jim", "12346"),
        ("Windsor", "Anne", "22345"),
        ("Chalk", "Patricia", "32345"),
        ("Smith", "John", "42345"),
        ("Chalmers", "Alice", "52345"),
    ];
    names
        .iter()
        .map(|(family, given, mrn)| {
            json!({
                "resourceType": "Patient",
                "identifier": [{"system": "urn:oid:1.2.36.146.595.217.0.1", "value": mrn}],
                "name": [{"use": "official", "family": family, "given": [given]}],
                "gender": "unknown",
                "extension": [{"url": "https://example.org/fhir/StructureDefinition/sandbox", "valueString": "seeded"}]
            })
        })
        .collect()
}

/// Header map lookup helper for emulators: a header as text.
pub fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// Splits a query into pairs (for emulators that check vendor parameters).
pub fn query_pairs(raw: Option<&str>) -> HashMap<String, String> {
    parse_query(raw).into_iter().collect()
}
