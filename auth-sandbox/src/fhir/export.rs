//! Bulk Data export, as FHIR Bulk Data Access IG v2.0.0 specifies it: kick-off,
//! status and manifest, cancel, and the knobs and counters. The rules are in the
//! `fhir` module's documentation; the files themselves are `export_files`'.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use axum::body::Bytes;
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::exchange::{Answer, Req, is_json, issue, media_type};
use super::export_files::{self, Content, Origin};
use super::search::{self, Filter, split_reference};
use super::store::{Current, Data};
use super::{FHIR_JSON, FhirStore, fhir_json, instant, lock, types};

/// The NDJSON media type of export files (export.html#file-request).
pub(crate) const NDJSON: &str = "application/fhir+ndjson";

/// The `_outputFormat` values the IG makes every server accept.
const OUTPUT_FORMATS: &[&str] = &["application/fhir+ndjson", "application/ndjson", "ndjson"];

/// Slack for a poll that comes a little before the `Retry-After` it was given:
/// clocks and schedulers are not exact.
const POLL_SLACK: Duration = Duration::from_millis(100);

/// How long a manifest's files are promised to stay (`Expires`).
const EXPIRES_AFTER: Duration = Duration::from_secs(3600);

/// Which data an export covers (export.html#endpoint---all-patients, …).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ExportLevel {
    /// `[base]/$export`: every live resource.
    System,
    /// `[base]/Patient/$export`: Patients, and resources whose `subject` or
    /// `patient` refers to one.
    Patient,
    /// `[base]/Group/[id]/$export`: as `Patient`, for the Group's `member.entity`
    /// Patients only.
    Group(String),
}

/// A kick-off as the server read it (for tests that check what a client sent).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ExportRequest {
    /// The level.
    pub level: ExportLevel,
    /// `GET` or `POST`.
    pub method: String,
    /// `_type`, split at commas and joined across repeats; `None` if not sent.
    pub types: Option<Vec<String>>,
    /// `_since`, as sent.
    pub since: Option<String>,
    /// Each `_typeFilter` query (`Type?criteria`), after splitting and decoding.
    pub type_filters: Vec<String>,
    /// `_outputFormat`, as sent.
    pub output_format: Option<String>,
    /// Whether `Prefer` held `handling=lenient`.
    pub lenient: bool,
    /// Parameters ignored under `handling=lenient`, by name, in order.
    pub ignored: Vec<String>,
}

/// Where a job is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ExportJobState {
    /// Not ready yet (its polls answer 202), or failing but not yet said so.
    Running,
    /// A poll answered the manifest: its files can be downloaded.
    Complete,
    /// A poll answered 500 (`exception`): [`FhirStore::fail_next_export`].
    Failed,
    /// Cancelled or cleaned up by `DELETE`: its status and files are 404.
    Deleted,
}

/// One export job, as [`FhirStore::export_jobs`] lists them.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ExportJob {
    /// The job id (random hex).
    pub id: String,
    /// `Content-Location` of the kick-off.
    pub status_url: String,
    /// The manifest's `request`: the kick-off URL (a POST's without parameters).
    pub kickoff_url: String,
    /// The parameters read.
    pub request: ExportRequest,
    /// The manifest's `transactionTime`.
    pub transaction_time: String,
    /// Where it is.
    pub state: ExportJobState,
    /// Polls that counted toward readiness (429s and transient 500s do not).
    pub polls: u32,
    /// URLs of the manifest's `output` files, in order.
    pub output_urls: Vec<String>,
    /// URL of the `error` file, if the job has one.
    pub error_url: Option<String>,
}

/// What the export routes did so far (every job of the store).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ExportStats {
    /// Kick-offs answered 202.
    pub kickoffs_accepted: u64,
    /// Kick-offs answered anything else (400, 404, 405, 415, 429).
    pub kickoffs_refused: u64,
    /// Status requests (GET), whatever the answer.
    pub status_polls: u64,
    /// Status polls answered 429 for coming before `Retry-After`.
    pub polls_too_early: u64,
    /// Status polls answered 500 `transient` ([`FhirStore::transient_status_failures`]).
    pub transient_failures: u64,
    /// File requests at the FHIR base and the second origin, whatever the answer.
    pub file_requests: u64,
    /// File requests answered (200 or 206), by job id and file number.
    pub file_requests_by_file: BTreeMap<(String, usize), u64>,
    /// File answers that were 206 (a range honoured).
    pub range_requests: u64,
    /// Body bytes of files handed to the connection.
    pub bytes_served: u64,
    /// File downloads cut by [`FhirStore::drop_export_file_after`].
    pub dropped_downloads: u64,
    /// `DELETE`s answered 202.
    pub cancels: u64,
    /// Requests that reached the second origin.
    pub origin_requests: u64,
    /// Of those, requests that carried an `Authorization` header.
    pub origin_authorized_requests: u64,
}

#[derive(Debug, Default)]
pub(crate) struct Counters {
    kickoffs_accepted: AtomicU64,
    kickoffs_refused: AtomicU64,
    status_polls: AtomicU64,
    polls_too_early: AtomicU64,
    transient_failures: AtomicU64,
    file_requests: AtomicU64,
    pub(crate) range_requests: AtomicU64,
    pub(crate) bytes_served: AtomicU64,
    pub(crate) dropped_downloads: AtomicU64,
    cancels: AtomicU64,
    pub(crate) origin_requests: AtomicU64,
    pub(crate) origin_authorized: AtomicU64,
}

#[derive(Debug, Clone)]
struct Synthetic {
    resource_type: String,
    files: usize,
    lines: u64,
}

#[derive(Debug)]
struct Settings {
    ready_after_polls: u32,
    retry_after: u64,
    resources_per_file: usize,
    error_file: bool,
    requires_access_token: bool,
    fail_next: bool,
    transient: u32,
    max_running: Option<usize>,
    ranges: bool,
    /// Bytes to send, and how many more downloads to cut.
    drop: Option<(u64, u32)>,
    synthetic: Option<Synthetic>,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            ready_after_polls: 1,
            retry_after: 1,
            resources_per_file: 2,
            error_file: false,
            requires_access_token: true,
            fail_next: false,
            transient: 0,
            max_running: None,
            ranges: true,
            drop: None,
            synthetic: None,
        }
    }
}

#[derive(Debug)]
struct File {
    resource_type: String,
    url: String,
    count: u64,
    content: Arc<Content>,
}

#[derive(Debug)]
struct Job {
    id: String,
    status_url: String,
    kickoff_url: String,
    request: ExportRequest,
    transaction_time: i64,
    requires_access_token: bool,
    ready_after: u32,
    fails: bool,
    polls: u32,
    /// The earliest a poll is welcome: what the last 202 asked for.
    next_poll: Option<Instant>,
    state: ExportJobState,
    outputs: Vec<File>,
    error: Option<File>,
}

impl Job {
    /// File `n` (from 1): the outputs in order, then the error file.
    fn file(&self, n: usize) -> Option<&File> {
        let index = n.checked_sub(1)?;
        self.outputs.get(index).or_else(|| self.error.as_ref().filter(|_| index == self.outputs.len()))
    }

    fn info(&self) -> ExportJob {
        ExportJob {
            id: self.id.clone(),
            status_url: self.status_url.clone(),
            kickoff_url: self.kickoff_url.clone(),
            request: self.request.clone(),
            transaction_time: instant::format(self.transaction_time),
            state: self.state,
            polls: self.polls,
            output_urls: self.outputs.iter().map(|f| f.url.clone()).collect(),
            error_url: self.error.as_ref().map(|f| f.url.clone()),
        }
    }
}

#[derive(Debug, Default)]
struct Exports {
    settings: Settings,
    jobs: Vec<Job>,
    by_file: BTreeMap<(String, usize), u64>,
    origin: Option<Origin>,
}

/// The export state a store carries.
#[derive(Debug, Default)]
pub(crate) struct Export {
    state: Mutex<Exports>,
    pub(crate) counters: Arc<Counters>,
}

fn oo(status: StatusCode, severity: &str, code: &str, diagnostics: &str) -> Response {
    fhir_json(status, &issue(severity, code, diagnostics))
}

fn bad(diagnostics: impl AsRef<str>) -> Response {
    oo(StatusCode::BAD_REQUEST, "error", "invalid", diagnostics.as_ref())
}

fn not_supported(diagnostics: impl AsRef<str>) -> Response {
    oo(StatusCode::BAD_REQUEST, "error", "not-supported", diagnostics.as_ref())
}

fn unknown_job(id: &str) -> Response {
    oo(
        StatusCode::NOT_FOUND,
        "error",
        "not-found",
        &format!("there is no export job {id} (never started, or deleted)"),
    )
}

fn with_retry_after(mut response: Response, seconds: u64) -> Response {
    response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(seconds));
    response
}

/// The diagnostics of an error answer, to say it again in other words.
fn diagnostics(answer: &Answer) -> String {
    answer
        .body
        .as_ref()
        .and_then(|b| b["issue"][0]["diagnostics"].as_str())
        .unwrap_or("invalid search criteria")
        .to_owned()
}

/// Answers the export routes; `None` for any other path.
pub(crate) fn route(store: &FhirStore, req: &Req, path_and_query: &str) -> Option<Response> {
    let segments: Vec<&str> = req.segments.iter().map(String::as_str).collect();
    let response = match segments.as_slice() {
        ["$export"] => kickoff(store, req, path_and_query, ExportLevel::System),
        ["Patient", "$export"] => kickoff(store, req, path_and_query, ExportLevel::Patient),
        ["Group", id, "$export"] => kickoff(store, req, path_and_query, ExportLevel::Group((*id).to_owned())),
        ["$export-status", job] => match req.method {
            Method::GET => status(store, job),
            Method::DELETE => cancel(store, job),
            _ => Answer::not_allowed("GET, DELETE", "an export status").into_response(),
        },
        ["$export-file", job, n] => match req.method {
            Method::GET => store.serve_export_file(job, n, req.header("range")),
            _ => Answer::not_allowed("GET", "an export file").into_response(),
        },
        ["$export-status" | "$export-file", ..] => {
            oo(StatusCode::NOT_FOUND, "error", "not-found", "no such export job or file")
        }
        _ => return None,
    };
    Some(response)
}

fn kickoff(store: &FhirStore, req: &Req, path_and_query: &str, level: ExportLevel) -> Response {
    let counters = &store.export.counters;
    let response = match kickoff_checked(store, req, path_and_query, level) {
        Ok(accepted) => accepted,
        Err(refused) => refused,
    };
    let counter = if response.status() == StatusCode::ACCEPTED {
        &counters.kickoffs_accepted
    } else {
        &counters.kickoffs_refused
    };
    counter.fetch_add(1, Ordering::Relaxed);
    response
}

/// `Prefer` (RFC 7240) at kick-off: `respond-async`, and `handling=lenient`.
fn prefer(req: &Req) -> (bool, bool) {
    let (mut respond_async, mut lenient) = (false, false);
    for value in req.headers.get_all("prefer").iter().filter_map(|v| v.to_str().ok()) {
        for token in value.split([',', ';']).map(str::trim) {
            let token = token.to_ascii_lowercase();
            match token.split_once('=') {
                None if token == "respond-async" => respond_async = true,
                Some((name, v)) if name.trim() == "handling" => {
                    lenient = v.trim().trim_matches('"') == "lenient";
                }
                _ => {}
            }
        }
    }
    (respond_async, lenient)
}

/// The milliseconds of a FHIR `instant` (datatypes.html#instant): a date, a time to
/// the second at least, and a zone; nothing less precise.
fn instant_ms(text: &str) -> Option<i64> {
    let (date, time) = text.split_once('T')?;
    let clock = match time.strip_suffix('Z') {
        Some(clock) => clock,
        None => {
            let at = time.len().checked_sub(6)?;
            let (clock, zone) = (time.get(..at)?, time.get(at..)?);
            let b = zone.as_bytes();
            if !(matches!(b.first(), Some(b'+' | b'-')) && b.get(3) == Some(&b':')) {
                return None;
            }
            clock
        }
    };
    if date.len() != 10 || clock.split(':').count() != 3 {
        return None;
    }
    instant::parse_range(text).map(|(start, _)| start)
}

/// Splits a `_typeFilter` value into its queries. The IG separates them with
/// commas, but a query may hold commas of its own (`status=final,amended`: an OR);
/// a comma starts a new query only where a resource type and `?` follow it.
pub(crate) fn split_type_filters(value: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0;
    for (at, _) in value.match_indices(',') {
        let rest = value.get(at + 1..).unwrap_or_default();
        if rest.split_once('?').is_some_and(|(t, _)| types::is_stored(t)) {
            out.push(value.get(start..at).unwrap_or_default());
            start = at + 1;
        }
    }
    out.push(value.get(start..).unwrap_or_default());
    out
}

/// The parameters of a kick-off as name and text, from the query of a GET or the
/// Parameters body of a POST (whose `value[x]` must be of the parameter's type).
fn parameters(
    req: &Req,
    lenient: bool,
    ignored: &mut Vec<String>,
) -> Result<Vec<(String, String)>, Response> {
    if req.method == Method::GET {
        return Ok(req.query.clone());
    }
    if let Some((name, _)) = req.query.first() {
        if !lenient {
            return Err(not_supported(format!(
                "a POST kick-off takes its parameters in a Parameters body, not the query ({name})"
            )));
        }
        ignored.extend(req.query.iter().map(|(k, _)| k.clone()));
    }
    let content_type = req.header("content-type");
    if content_type.is_none() || !is_json(content_type) {
        return Err(oo(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "error",
            "not-supported",
            &format!(
                "a POST kick-off takes a Parameters resource as application/fhir+json, not {}",
                content_type.unwrap_or("a body without Content-Type")
            ),
        ));
    }
    let body: Value = serde_json::from_slice(&req.body).map_err(|e| {
        oo(StatusCode::BAD_REQUEST, "error", "structure", &format!("the body is not JSON: {e}"))
    })?;
    if body.get("resourceType").and_then(Value::as_str) != Some("Parameters") {
        return Err(bad("a POST kick-off takes a Parameters resource (export.html#query-parameters)"));
    }
    let mut out = Vec::new();
    for p in body.get("parameter").and_then(Value::as_array).into_iter().flatten() {
        let Some(name) = p.get("name").and_then(Value::as_str) else {
            return Err(bad("a parameter has no name"));
        };
        let wanted = match name {
            "_type" | "_typeFilter" | "_outputFormat" => "valueString",
            "_since" => "valueInstant",
            _ => {
                // Not one this server reads: the unknown-parameter rule decides.
                out.push((name.to_owned(), String::new()));
                continue;
            }
        };
        match p.get(wanted).and_then(Value::as_str) {
            Some(text) => out.push((name.to_owned(), text.to_owned())),
            None => return Err(bad(format!("the parameter {name} takes a {wanted}"))),
        }
    }
    Ok(out)
}

/// What a kick-off selects, read from its parameters.
#[derive(Debug, Default)]
struct Selection {
    types: Option<Vec<String>>,
    since: Option<(String, i64)>,
    type_filters: Vec<(String, String, Vec<Filter>)>,
    output_format: Option<String>,
}

fn select(
    store: &FhirStore,
    params: Vec<(String, String)>,
    lenient: bool,
    ignored: &mut Vec<String>,
) -> Result<Selection, Response> {
    let vendor = store.vendor_params();
    let mut s = Selection::default();
    for (name, value) in params {
        match name.as_str() {
            "_type" => {
                let types = s.types.get_or_insert_with(Vec::new);
                for t in value.split(',').map(str::trim) {
                    if !types::is_stored(t) {
                        return Err(bad(format!("_type: {t:?} is not a resource type this server knows")));
                    }
                    if !types.iter().any(|x| x == t) {
                        types.push(t.to_owned());
                    }
                }
            }
            "_since" => {
                if s.since.is_some() {
                    return Err(bad("_since is given twice"));
                }
                let Some(ms) = instant_ms(&value) else {
                    return Err(bad(format!(
                        "_since={value:?} is not a FHIR instant (YYYY-MM-DDThh:mm:ss[.sss](Z|+hh:mm); \
                         a + must be sent as %2B in a query)"
                    )));
                };
                s.since = Some((value, ms));
            }
            "_typeFilter" => {
                for query in split_type_filters(&value) {
                    let Some((t, criteria)) = query.split_once('?') else {
                        return Err(bad(format!("_typeFilter {query:?}: expected Type?criteria")));
                    };
                    if !types::is_stored(t) {
                        return Err(bad(format!("_typeFilter {query:?}: {t} is not a resource type")));
                    }
                    let pairs: Vec<(String, String)> =
                        form_urlencoded::parse(criteria.as_bytes()).into_owned().collect();
                    let filters = search::criteria(t, &pairs)
                        .map_err(|e| bad(format!("_typeFilter {query:?}: {}", diagnostics(&e))))?;
                    s.type_filters.push((t.to_owned(), query.to_owned(), filters));
                }
            }
            "_outputFormat" => {
                if !OUTPUT_FORMATS.contains(&value.as_str()) {
                    return Err(bad(format!(
                        "_outputFormat {value:?} is not supported (application/fhir+ndjson, application/ndjson, ndjson)"
                    )));
                }
                s.output_format = Some(value);
            }
            other if vendor.iter().any(|v| v == other) => {}
            other if lenient => ignored.push(other.to_owned()),
            other => {
                return Err(not_supported(format!(
                    "the parameter {other} is not supported by this server \
                     (Prefer: handling=lenient would ignore it)"
                )));
            }
        }
    }
    Ok(s)
}

/// The live Patient ids a level covers (`None`: the system level, everything).
fn patients_of(data: &Data, base: &str, level: &ExportLevel) -> Result<Option<BTreeSet<String>>, Response> {
    match level {
        ExportLevel::System => Ok(None),
        ExportLevel::Patient => {
            Ok(Some(data.live(Some("Patient")).map(|(_, id, _)| id.to_owned()).collect()))
        }
        ExportLevel::Group(id) => {
            let Current::Live(group) = data.current("Group", id) else {
                return Err(oo(
                    StatusCode::NOT_FOUND,
                    "error",
                    "not-found",
                    &format!("Group/{id} is not known"),
                ));
            };
            let members = group
                .resource
                .iter()
                .flat_map(|g| search::values(g, "member.entity.reference"))
                .filter_map(Value::as_str)
                .filter_map(|r| split_reference(r, base))
                .filter(|(t, pid)| t == "Patient" && matches!(data.current(t, pid), Current::Live(_)))
                .map(|(_, pid)| pid)
                .collect();
            Ok(Some(members))
        }
    }
}

/// Whether a resource belongs to one of `patients`: it is one, or its `subject` or
/// `patient` refers to one.
fn in_compartment(t: &str, id: &str, resource: &Value, patients: &BTreeSet<String>, base: &str) -> bool {
    if t == "Patient" {
        return patients.contains(id);
    }
    ["subject", "patient"]
        .iter()
        .flat_map(|path| search::values(resource, &format!("{path}.reference")))
        .filter_map(Value::as_str)
        .filter_map(|r| split_reference(r, base))
        .any(|(rt, rid)| rt == "Patient" && patients.contains(&rid))
}

/// The resources a job exports, as NDJSON lines by type (types in name order,
/// resources by id).
fn snapshot(
    data: &Data,
    base: &str,
    patients: Option<&BTreeSet<String>>,
    selection: &Selection,
) -> BTreeMap<String, Vec<String>> {
    let filtered: BTreeSet<&str> = selection.type_filters.iter().map(|(t, _, _)| t.as_str()).collect();
    let mut matching: BTreeSet<(String, String)> = BTreeSet::new();
    for (t, _, filters) in &selection.type_filters {
        for id in search::matching_ids(data, base, t, filters) {
            matching.insert((t.clone(), id));
        }
    }
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (t, id, version) in data.live(None) {
        let Some(resource) = &version.resource else { continue };
        let wanted = selection.types.as_ref().is_none_or(|ts| ts.iter().any(|x| x == t))
            && selection.since.as_ref().is_none_or(|(_, since)| version.updated > *since)
            && patients.is_none_or(|p| in_compartment(t, id, resource, p, base))
            && (!filtered.contains(t) || matching.contains(&(t.to_owned(), id.to_owned())));
        if wanted {
            // The stored JSON as it is: numbers keep their text (`72.50`).
            out.entry(t.to_owned()).or_default().push(resource.to_string());
        }
    }
    out
}

fn new_job_id() -> String {
    (0..16).map(|_| format!("{:02x}", fastrand::u8(..))).collect()
}

fn kickoff_checked(
    store: &FhirStore,
    req: &Req,
    path_and_query: &str,
    level: ExportLevel,
) -> Result<Response, Response> {
    if req.method != Method::GET && req.method != Method::POST {
        return Err(Answer::not_allowed("GET, POST", "$export").into_response());
    }
    if media_type(req.header("accept")).as_deref() != Some(FHIR_JSON) {
        return Err(bad("The Accept header must be application/fhir+json"));
    }
    let (respond_async, lenient) = prefer(req);
    if !respond_async {
        return Err(bad("The Prefer header must be respond-async"));
    }
    let base = store.base();
    if let ExportLevel::Group(id) = &level
        && !matches!(store.data().current("Group", id), Current::Live(_))
    {
        return Err(oo(StatusCode::NOT_FOUND, "error", "not-found", &format!("Group/{id} is not known")));
    }
    let mut ignored = Vec::new();
    let params = parameters(req, lenient, &mut ignored)?;
    let selection = select(store, params, lenient, &mut ignored)?;

    let mut guard = lock(&store.export.state);
    let ex = &mut *guard;
    let settings = &mut ex.settings;
    if let Some(max) = settings.max_running {
        let running = ex.jobs.iter().filter(|j| j.state == ExportJobState::Running).count();
        if running >= max {
            let refused = oo(
                StatusCode::TOO_MANY_REQUESTS,
                "error",
                "throttled",
                &format!("{running} export jobs are running (at most {max}): wait for one, or DELETE it"),
            );
            return Err(with_retry_after(refused, settings.retry_after.max(1)));
        }
    }
    let (transaction_time, lines) = {
        let mut data = store.data();
        let patients = patients_of(&data, base, &level)?;
        let lines = snapshot(&data, base, patients.as_ref(), &selection);
        // After every version it saw, before any later one: `_since` with this
        // instant picks up exactly what the snapshot missed.
        (data.tick(), lines)
    };
    let id = new_job_id();
    let status_url = format!("{base}/$export-status/{id}");
    let file_url = |n: usize| match &ex.origin {
        Some(origin) => format!("{}/files/{id}/{n}.ndjson", origin.base),
        None => format!("{base}/$export-file/{id}/{n}"),
    };
    let mut outputs = Vec::new();
    match &settings.synthetic {
        Some(syn) => {
            for file in 1..=syn.files {
                let content =
                    Content::Synthetic { resource_type: syn.resource_type.clone(), file, lines: syn.lines };
                outputs.push(File {
                    resource_type: syn.resource_type.clone(),
                    url: file_url(file),
                    count: syn.lines,
                    content: Arc::new(content),
                });
            }
        }
        None => {
            for (t, resources) in lines {
                for chunk in resources.chunks(settings.resources_per_file.max(1)) {
                    let mut text = String::new();
                    for line in chunk {
                        text.push_str(line);
                        text.push('\n');
                    }
                    outputs.push(File {
                        resource_type: t.clone(),
                        url: file_url(outputs.len() + 1),
                        count: chunk.len() as u64,
                        content: Arc::new(Content::Lines(Bytes::from(text))),
                    });
                }
            }
        }
    }
    let error = settings.error_file.then(|| {
        let lines = [
            issue("warning", "processing", "sandbox: an error file, as the error_file knob asked"),
            issue("information", "informational", &format!("sandbox: export job {id} ran")),
        ];
        let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
        File {
            resource_type: "OperationOutcome".to_owned(),
            // The error file stays on the FHIR base, second origin or not.
            url: format!("{base}/$export-file/{id}/{}", outputs.len() + 1),
            count: lines.len() as u64,
            content: Arc::new(Content::Lines(Bytes::from(text))),
        }
    });
    let request = ExportRequest {
        level,
        method: req.method.to_string(),
        types: selection.types,
        since: selection.since.map(|(text, _)| text),
        type_filters: selection.type_filters.into_iter().map(|(_, q, _)| q).collect(),
        output_format: selection.output_format,
        lenient,
        ignored,
    };
    // The manifest's `request` is the kick-off URL; a POST's parameters are not in it.
    let kickoff_url = match req.method {
        Method::POST => format!("{base}{}", path_and_query.split('?').next().unwrap_or_default()),
        _ => format!("{base}{path_and_query}"),
    };
    ex.jobs.push(Job {
        id: id.clone(),
        status_url: status_url.clone(),
        kickoff_url,
        request,
        transaction_time,
        requires_access_token: settings.requires_access_token,
        ready_after: settings.ready_after_polls,
        fails: std::mem::take(&mut settings.fail_next),
        polls: 0,
        next_poll: None,
        state: ExportJobState::Running,
        outputs,
        error,
    });
    let mut accepted = oo(
        StatusCode::ACCEPTED,
        "information",
        "informational",
        &format!("export job {id} started: poll {status_url}"),
    );
    if let Ok(v) = HeaderValue::from_str(&status_url) {
        accepted.headers_mut().insert(header::CONTENT_LOCATION, v);
    }
    Ok(accepted)
}

fn manifest(job: &Job) -> Value {
    let files = |files: &mut dyn Iterator<Item = &File>| -> Vec<Value> {
        files.map(|f| json!({"type": f.resource_type, "url": f.url, "count": f.count})).collect()
    };
    json!({
        "transactionTime": instant::format(job.transaction_time),
        "request": job.kickoff_url,
        "requiresAccessToken": job.requires_access_token,
        "output": files(&mut job.outputs.iter()),
        "error": files(&mut job.error.iter()),
    })
}

/// `GET [base]/$export-status/[job]` (export.html#bulk-data-status-request).
fn status(store: &FhirStore, id: &str) -> Response {
    let counters = &store.export.counters;
    counters.status_polls.fetch_add(1, Ordering::Relaxed);
    let mut guard = lock(&store.export.state);
    let ex = &mut *guard;
    let settings = &mut ex.settings;
    let Some(job) = ex.jobs.iter_mut().find(|j| j.id == id && j.state != ExportJobState::Deleted) else {
        return unknown_job(id);
    };
    let now = Instant::now();
    if let Some(welcome) = job.next_poll
        && now + POLL_SLACK < welcome
    {
        counters.polls_too_early.fetch_add(1, Ordering::Relaxed);
        let wait = u64::try_from((welcome - now).as_millis().div_ceil(1000)).unwrap_or(u64::MAX).max(1);
        let refused = oo(
            StatusCode::TOO_MANY_REQUESTS,
            "error",
            "throttled",
            "polled before the Retry-After of the previous answer: wait, then poll again",
        );
        return with_retry_after(refused, wait);
    }
    if settings.transient > 0 {
        settings.transient -= 1;
        counters.transient_failures.fetch_add(1, Ordering::Relaxed);
        // A failure of this poll, not of the job: no wait asked, none enforced.
        job.next_poll = None;
        return oo(
            StatusCode::INTERNAL_SERVER_ERROR,
            "error",
            "transient",
            "the status could not be read just now (transient_status_failures): try again later",
        );
    }
    job.polls = job.polls.saturating_add(1);
    if job.polls <= job.ready_after {
        let retry_after = settings.retry_after;
        job.next_poll = Some(now + Duration::from_secs(retry_after));
        let progress = u64::from(job.polls) * 100 / (u64::from(job.ready_after) + 1);
        let mut running = StatusCode::ACCEPTED.into_response();
        let headers = running.headers_mut();
        if let Ok(v) = HeaderValue::from_str(&format!("{progress}% complete")) {
            headers.insert("x-progress", v);
        }
        return with_retry_after(running, retry_after);
    }
    job.next_poll = None;
    if job.fails {
        job.state = ExportJobState::Failed;
        return oo(
            StatusCode::INTERNAL_SERVER_ERROR,
            "fatal",
            "exception",
            &format!("export job {id} failed (fail_next_export)"),
        );
    }
    job.state = ExportJobState::Complete;
    let mut ready = (StatusCode::OK, [(header::CONTENT_TYPE, "application/json")], manifest(job).to_string())
        .into_response();
    let expires = httpdate::fmt_http_date(SystemTime::now() + EXPIRES_AFTER);
    if let Ok(v) = HeaderValue::from_str(&expires) {
        ready.headers_mut().insert(header::EXPIRES, v);
    }
    ready
}

/// `DELETE [base]/$export-status/[job]` (export.html#bulk-data-delete-request).
fn cancel(store: &FhirStore, id: &str) -> Response {
    let mut guard = lock(&store.export.state);
    let Some(job) = guard.jobs.iter_mut().find(|j| j.id == id && j.state != ExportJobState::Deleted) else {
        return unknown_job(id);
    };
    job.state = ExportJobState::Deleted;
    // Its files go with it.
    for file in job.outputs.iter_mut().chain(job.error.iter_mut()) {
        file.content = Arc::new(Content::Lines(Bytes::new()));
    }
    store.export.counters.cancels.fetch_add(1, Ordering::Relaxed);
    oo(StatusCode::ACCEPTED, "information", "informational", &format!("export job {id} deleted"))
}

/// Knobs, counters and the second origin of the Bulk Data export.
impl FhirStore {
    /// Serves file `n` of `job` (the FHIR base's `$export-file` and the second
    /// origin both come here).
    pub(crate) fn serve_export_file(&self, job: &str, n: &str, range: Option<&str>) -> Response {
        let counters = &self.export.counters;
        counters.file_requests.fetch_add(1, Ordering::Relaxed);
        let (content, ranges, cut_after) = {
            let mut guard = lock(&self.export.state);
            let ex = &mut *guard;
            let found = n.parse::<usize>().ok().and_then(|n| {
                let j = ex.jobs.iter().find(|j| j.id == job && j.state == ExportJobState::Complete)?;
                Some((n, j.file(n)?.content.clone()))
            });
            let Some((n, content)) = found else {
                return oo(
                    StatusCode::NOT_FOUND,
                    "error",
                    "not-found",
                    &format!("export job {job} has no file {n} (unknown, not complete, or deleted)"),
                );
            };
            *ex.by_file.entry((job.to_owned(), n)).or_default() += 1;
            let cut_after = match &mut ex.settings.drop {
                Some((bytes, times)) if *times > 0 => {
                    *times -= 1;
                    Some(*bytes)
                }
                _ => None,
            };
            (content, ex.settings.ranges, cut_after)
        };
        export_files::respond(content, range, ranges, cut_after, counters.clone())
    }

    fn export_settings(&self, f: impl FnOnce(&mut Settings)) {
        f(&mut lock(&self.export.state).settings);
    }

    /// How many polls of a new job answer 202 before the manifest (default 1);
    /// 0 makes a job ready at its first poll. Read at kick-off.
    pub fn set_export_ready_after_polls(&self, polls: u32) {
        self.export_settings(|s| s.ready_after_polls = polls);
    }

    /// `Retry-After` of a 202 status answer, in seconds (default 1; 0 allowed). A
    /// poll sooner than it (less 100 ms) is answered 429. Read at each poll.
    pub fn set_export_retry_after(&self, seconds: u64) {
        self.export_settings(|s| s.retry_after = seconds);
    }

    /// Resources per output file (default 2, at least 1): a type with more gets
    /// several files. Read at kick-off.
    pub fn set_export_resources_per_file(&self, n: usize) {
        self.export_settings(|s| s.resources_per_file = n.max(1));
    }

    /// Gives new jobs an `error` file of two OperationOutcome lines (a warning and
    /// an information), on the FHIR base; off by default (`error` is empty).
    pub fn set_export_error_file(&self, on: bool) {
        self.export_settings(|s| s.error_file = on);
    }

    /// The manifest's `requiresAccessToken` for new jobs (default true).
    /// [`FhirStore::start_export_origin`] sets it too.
    pub fn set_export_requires_access_token(&self, required: bool) {
        self.export_settings(|s| s.requires_access_token = required);
    }

    /// The next job accepted fails: the poll that would answer its manifest, and
    /// every poll after, answer 500 with an OperationOutcome (`exception`).
    pub fn fail_next_export(&self) {
        self.export_settings(|s| s.fail_next = true);
    }

    /// The next `n` status polls (of any known job, that are not too early: 404 and
    /// 429 come first) answer 500 with an OperationOutcome whose code is
    /// `transient`, without `Retry-After`; they do not count toward readiness and
    /// lift any wait the previous answer asked for. Replaces a count still
    /// running; 0 ends it.
    pub fn transient_status_failures(&self, n: u32) {
        self.export_settings(|s| s.transient = n);
    }

    /// At most this many jobs running (neither complete, failed nor deleted): a
    /// kick-off beyond it is 429 with `Retry-After`. `None` (the default): no limit.
    pub fn set_export_max_running(&self, max: Option<usize>) {
        self.export_settings(|s| s.max_running = max);
    }

    /// Whether files honour `Range: bytes=…` (206, `Content-Range`) and say
    /// `Accept-Ranges: bytes` (default true). Off: a `Range` is ignored, 200 in full.
    pub fn set_export_ranges(&self, on: bool) {
        self.export_settings(|s| s.ranges = on);
    }

    /// The next `times` file answers (FHIR base or second origin, ranged or not) send
    /// `bytes` bytes of their body, then fail it: the connection is aborted
    /// mid-body, under a `Content-Length` that promised more. An answer no longer
    /// than `bytes` is sent whole (and still uses one of the `times`).
    pub fn drop_export_file_after(&self, bytes: u64, times: u32) {
        self.export_settings(|s| s.drop = (times > 0).then_some((bytes, times)));
    }

    /// New jobs export synthetic data *instead of* the store's (whatever their
    /// level, `_type`, `_since` and `_typeFilter`): `files` files of
    /// `resource_type`, each of `bytes_per_file / 1024` lines (at least one) of
    /// exactly 1024 bytes with the `\n`, made while they are sent (never held in
    /// memory). Line `i` (from 0) of file `n` (from 1) is the resource
    /// `syn-{n}-{i}` and starts at byte `i × 1024`; an Observation carries
    /// `valueQuantity.value` `72.50`. `files = 0` ends it; a `resource_type` that is
    /// not a FHIR resource type is ignored.
    pub fn set_export_synthetic(&self, resource_type: &str, files: usize, bytes_per_file: u64) {
        if files > 0 && !types::is_stored(resource_type) {
            tracing::warn!(resource_type, "set_export_synthetic: not a resource type; ignored");
            return;
        }
        let lines = (bytes_per_file / export_files::SYNTHETIC_LINE).max(1);
        self.export_settings(|s| {
            s.synthetic =
                (files > 0).then(|| Synthetic { resource_type: resource_type.to_owned(), files, lines });
        });
    }

    /// Starts a second origin, `http://127.0.0.1:PORT` (returned), that serves the
    /// files of jobs, with ranges and the drop knob, and no bearer check; it counts
    /// its requests and those that carried `Authorization` ([`ExportStats`]). While
    /// it runs, every *output* file of a new job is listed at
    /// `{origin}/files/{job}/{n}.ndjson` (the error file stays on the FHIR base),
    /// and `requiresAccessToken` is `requires_access_token`. Replaces an origin
    /// already running; it stops with the store or [`FhirStore::stop_export_origin`].
    pub async fn start_export_origin(
        self: &Arc<Self>,
        requires_access_token: bool,
    ) -> std::io::Result<String> {
        let origin = export_files::start_origin(Arc::downgrade(self)).await?;
        let base = origin.base.clone();
        let mut guard = lock(&self.export.state);
        guard.settings.requires_access_token = requires_access_token;
        guard.origin = Some(origin);
        Ok(base)
    }

    /// Stops the second origin: new jobs list their files on the FHIR base again
    /// (and `requiresAccessToken` is back to true). Files listed on it are gone.
    pub fn stop_export_origin(&self) {
        let mut guard = lock(&self.export.state);
        guard.origin = None;
        guard.settings.requires_access_token = true;
    }

    /// What the export routes did so far.
    pub fn export_stats(&self) -> ExportStats {
        let c = &self.export.counters;
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        ExportStats {
            kickoffs_accepted: load(&c.kickoffs_accepted),
            kickoffs_refused: load(&c.kickoffs_refused),
            status_polls: load(&c.status_polls),
            polls_too_early: load(&c.polls_too_early),
            transient_failures: load(&c.transient_failures),
            file_requests: load(&c.file_requests),
            file_requests_by_file: lock(&self.export.state).by_file.clone(),
            range_requests: load(&c.range_requests),
            bytes_served: load(&c.bytes_served),
            dropped_downloads: load(&c.dropped_downloads),
            cancels: load(&c.cancels),
            origin_requests: load(&c.origin_requests),
            origin_authorized_requests: load(&c.origin_authorized),
        }
    }

    /// Every job accepted, oldest first.
    pub fn export_jobs(&self) -> Vec<ExportJob> {
        lock(&self.export.state).jobs.iter().map(Job::info).collect()
    }

    /// One job by id.
    pub fn export_job(&self, id: &str) -> Option<ExportJob> {
        lock(&self.export.state).jobs.iter().find(|j| j.id == id).map(Job::info)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instants_must_be_precise_to_the_second_with_a_zone() {
        assert!(instant_ms("2024-01-01T00:00:00Z").is_some());
        assert!(instant_ms("2024-01-01T00:00:00.123+02:00").is_some());
        assert_eq!(instant_ms("2024-01-01T02:00:00+02:00"), instant_ms("2024-01-01T00:00:00Z"));
        for bad in
            ["2024-01-01", "2024-01-01T00:00Z", "2024-01-01T00:00:00", "2024-01-01T00:00:00 02:00", "x"]
        {
            assert_eq!(instant_ms(bad), None, "{bad}");
        }
    }

    #[test]
    fn type_filters_split_only_where_a_type_and_a_query_follow() {
        assert_eq!(
            split_type_filters("Observation?status=final,amended,Condition?code=1"),
            vec!["Observation?status=final,amended", "Condition?code=1"]
        );
        assert_eq!(split_type_filters("Observation?code=a"), vec!["Observation?code=a"]);
    }
}
