//! A small in-memory FHIR R4 server for Patient, shared by every emulator: read,
//! vread, search by name and identifier with Bundle paging, create (also
//! conditional, with `If-None-Exist`), update (with `If-Match`), delete, and
//! `metadata`. Errors are OperationOutcomes. Resources are kept as JSON, so fields
//! this server does not know survive a read-modify-update untouched.
//!
//! Authentication is not its business: each emulator wraps this router in its
//! vendor's bearer checks.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Value, json};

/// The FHIR JSON media type.
pub const FHIR_JSON: &str = "application/fhir+json";

/// Default page size of a search.
pub const DEFAULT_PAGE_SIZE: usize = 10;

#[derive(Debug, Default)]
struct Data {
    /// id → every version, oldest first; `None` marks a deletion.
    history: BTreeMap<String, Vec<Option<Value>>>,
    next_id: u64,
    received: Vec<Value>,
}

/// An in-memory Patient store with a FHIR REST face.
#[derive(Debug)]
pub struct FhirStore {
    base: String,
    page_param: String,
    data: Mutex<Data>,
}

/// A JSON answer with the FHIR media type.
pub fn fhir_json(status: StatusCode, body: &Value) -> Response {
    (status, [(header::CONTENT_TYPE, FHIR_JSON)], body.to_string()).into_response()
}

/// An OperationOutcome answer.
pub fn outcome(status: StatusCode, code: &str, diagnostics: &str) -> Response {
    fhir_json(status, &outcome_json(code, diagnostics))
}

/// An OperationOutcome resource.
pub fn outcome_json(code: &str, diagnostics: &str) -> Value {
    json!({
        "resourceType": "OperationOutcome",
        "issue": [{"severity": "error", "code": code, "diagnostics": diagnostics}]
    })
}

impl FhirStore {
    /// A store whose public FHIR base URL (used in `Location` and paging links) is
    /// `base`, paging with the `_page` query parameter.
    pub fn new(base: impl Into<String>) -> Arc<Self> {
        Self::with_page_param(base, "_page")
    }

    /// As [`FhirStore::new`], with another name for the page parameter (MSK uses `page`).
    pub fn with_page_param(base: impl Into<String>, page_param: &str) -> Arc<Self> {
        Arc::new(Self {
            base: base.into().trim_end_matches('/').to_owned(),
            page_param: page_param.to_owned(),
            data: Mutex::default(),
        })
    }

    fn data(&self) -> MutexGuard<'_, Data> {
        self.data.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The public base URL.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// Routes, relative to the FHIR base.
    pub fn router(self: &Arc<Self>) -> Router {
        Router::new()
            .route("/metadata", get(metadata))
            .route("/Patient", get(search).post(create))
            .route("/Patient/{id}", get(read).put(update).delete(delete))
            .route("/Patient/{id}/_history/{vid}", get(vread))
            .with_state(self.clone())
    }

    /// Adds patients as they are (ids kept if present, assigned if not).
    pub fn seed(&self, patients: impl IntoIterator<Item = Value>) {
        let mut data = self.data();
        for mut p in patients {
            let id = match p.get("id").and_then(Value::as_str) {
                Some(id) => id.to_owned(),
                None => {
                    data.next_id += 1;
                    format!("pat-{}", data.next_id)
                }
            };
            stamp(&mut p, &id, 1);
            data.history.insert(id, vec![Some(p)]);
        }
    }

    /// The current version of a patient.
    pub fn get(&self, id: &str) -> Option<Value> {
        self.data().history.get(id).and_then(|v| v.last().cloned().flatten())
    }

    /// Live patients.
    pub fn len(&self) -> usize {
        self.data().history.values().filter(|v| v.last().is_some_and(Option::is_some)).count()
    }

    /// Whether there are no live patients.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every resource body received by create and update, oldest first, exactly as sent.
    pub fn received(&self) -> Vec<Value> {
        self.data().received.clone()
    }

    fn current(data: &Data, id: &str) -> Result<Value, Response> {
        match data.history.get(id).map(|v| v.last().cloned().flatten()) {
            None => Err(outcome(StatusCode::NOT_FOUND, "not-found", &format!("Patient/{id} is not known"))),
            Some(None) => Err(outcome(StatusCode::GONE, "deleted", &format!("Patient/{id} was deleted"))),
            Some(Some(p)) => Ok(p),
        }
    }

    fn matches(&self, query: &[(String, String)]) -> Vec<Value> {
        let data = self.data();
        data.history
            .values()
            .filter_map(|v| v.last().cloned().flatten())
            .filter(|p| query.iter().all(|(k, v)| matches_param(p, k, v)))
            .collect()
    }
}

fn stamp(p: &mut Value, id: &str, version: u64) {
    if let Value::Object(m) = p {
        m.insert("resourceType".into(), json!("Patient"));
        m.insert("id".into(), json!(id));
        let meta = m.entry("meta").or_insert_with(|| json!({}));
        if let Value::Object(meta) = meta {
            meta.insert("versionId".into(), json!(version.to_string()));
            meta.insert("lastUpdated".into(), json!(httpdate::fmt_http_date(std::time::SystemTime::now())));
        }
    }
}

fn version_of(p: &Value) -> u64 {
    p.pointer("/meta/versionId").and_then(Value::as_str).and_then(|v| v.parse().ok()).unwrap_or(1)
}

fn etag(version: u64) -> HeaderValue {
    HeaderValue::from_str(&format!("W/\"{version}\"")).unwrap_or(HeaderValue::from_static("W/\"1\""))
}

/// FHIR string search: case-insensitive "starts with" on any part of any name.
fn matches_param(p: &Value, key: &str, value: &str) -> bool {
    let value_lc = value.to_lowercase();
    match key {
        "name" | "family" | "given" => {
            let names = p.get("name").and_then(Value::as_array).cloned().unwrap_or_default();
            names.iter().any(|n| {
                let mut parts: Vec<String> = Vec::new();
                if key != "given" {
                    parts.extend(n.get("family").and_then(Value::as_str).map(str::to_owned));
                }
                if key != "family"
                    && let Some(given) = n.get("given").and_then(Value::as_array)
                {
                    parts.extend(given.iter().filter_map(Value::as_str).map(str::to_owned));
                }
                if key == "name" {
                    parts.extend(n.get("text").and_then(Value::as_str).map(str::to_owned));
                }
                parts.iter().any(|part| part.to_lowercase().starts_with(&value_lc))
            })
        }
        "identifier" => {
            let (system, code) = match value.split_once('|') {
                Some((s, c)) => (Some(s), c),
                None => (None, value),
            };
            let ids = p.get("identifier").and_then(Value::as_array).cloned().unwrap_or_default();
            ids.iter().any(|i| {
                let sys_ok =
                    system.is_none_or(|s| s.is_empty() || i.get("system").and_then(Value::as_str) == Some(s));
                sys_ok && i.get("value").and_then(Value::as_str) == Some(code)
            })
        }
        "_id" => p.get("id").and_then(Value::as_str) == Some(value),
        // Paging and format parameters, and vendor parameters, do not filter.
        _ => true,
    }
}

fn parse_query(raw: Option<&str>) -> Vec<(String, String)> {
    raw.map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect()).unwrap_or_default()
}

const CONTROL: [&str; 2] = ["_count", "_format"];

async fn metadata(State(store): State<Arc<FhirStore>>) -> Response {
    fhir_json(
        StatusCode::OK,
        &json!({
            "resourceType": "CapabilityStatement",
            "status": "active",
            "kind": "instance",
            "fhirVersion": "4.0.1",
            "format": ["json"],
            "implementation": {"description": "auth-providers sandbox", "url": store.base},
            "rest": [{
                "mode": "server",
                "resource": [{
                    "type": "Patient",
                    "interaction": [{"code": "read"}, {"code": "vread"}, {"code": "search-type"},
                                     {"code": "create"}, {"code": "update"}, {"code": "delete"}],
                    "searchParam": [{"name": "name", "type": "string"}, {"name": "identifier", "type": "token"},
                                    {"name": "family", "type": "string"}, {"name": "given", "type": "string"}]
                }]
            }]
        }),
    )
}

async fn search(State(store): State<Arc<FhirStore>>, RawQuery(raw): RawQuery) -> Response {
    let query = parse_query(raw.as_deref());
    let count = match query.iter().find(|(k, _)| k == "_count").map(|(_, v)| v.parse::<usize>()) {
        None => DEFAULT_PAGE_SIZE,
        Some(Ok(n)) if (1..=1000).contains(&n) => n,
        Some(_) => return outcome(StatusCode::BAD_REQUEST, "invalid", "_count must be between 1 and 1000"),
    };
    let page = match query.iter().find(|(k, _)| *k == store.page_param).map(|(_, v)| v.parse::<usize>()) {
        None => 1,
        Some(Ok(n)) if n >= 1 => n,
        Some(_) => return outcome(StatusCode::BAD_REQUEST, "invalid", "the page number must be 1 or more"),
    };
    let filters: Vec<(String, String)> = query
        .iter()
        .filter(|(k, _)| !CONTROL.contains(&k.as_str()) && *k != store.page_param)
        .cloned()
        .collect();
    let all = store.matches(&filters);
    let total = all.len();
    let link = |p: usize| {
        let mut q = form_urlencoded::Serializer::new(String::new());
        for (k, v) in query.iter().filter(|(k, _)| *k != store.page_param && k != "_count") {
            q.append_pair(k, v);
        }
        q.append_pair("_count", &count.to_string());
        q.append_pair(&store.page_param, &p.to_string());
        format!("{}/Patient?{}", store.base, q.finish())
    };
    // Page numbers come from the request: no arithmetic on them may overflow.
    let Some(seen) = page.checked_mul(count) else {
        return outcome(StatusCode::BAD_REQUEST, "invalid", "the page number is out of range");
    };
    let mut links = vec![json!({"relation": "self", "url": link(page)})];
    if seen < total {
        links.push(json!({"relation": "next", "url": link(page.saturating_add(1))}));
    }
    if page > 1 {
        links.push(json!({"relation": "previous", "url": link(page - 1)}));
    }
    let entries: Vec<Value> = all
        .into_iter()
        .skip((page - 1).saturating_mul(count))
        .take(count)
        .map(|p| {
            let id = p.get("id").and_then(Value::as_str).unwrap_or_default().to_owned();
            json!({"fullUrl": format!("{}/Patient/{id}", store.base), "resource": p, "search": {"mode": "match"}})
        })
        .collect();
    fhir_json(
        StatusCode::OK,
        &json!({"resourceType": "Bundle", "type": "searchset", "total": total, "link": links, "entry": entries}),
    )
}

fn with_version_headers(store: &FhirStore, status: StatusCode, p: &Value) -> Response {
    let id = p.get("id").and_then(Value::as_str).unwrap_or_default();
    let version = version_of(p);
    let mut response = fhir_json(status, p);
    response.headers_mut().insert(header::ETAG, etag(version));
    if let Ok(location) = HeaderValue::from_str(&format!("{}/Patient/{id}/_history/{version}", store.base)) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    response
}

async fn read(State(store): State<Arc<FhirStore>>, Path(id): Path<String>) -> Response {
    let data = store.data();
    match FhirStore::current(&data, &id) {
        Ok(p) => {
            let mut r = with_version_headers(&store, StatusCode::OK, &p);
            r.headers_mut().remove(header::LOCATION);
            r
        }
        Err(e) => e,
    }
}

async fn vread(State(store): State<Arc<FhirStore>>, Path((id, vid)): Path<(String, String)>) -> Response {
    let data = store.data();
    let Some(versions) = data.history.get(&id) else {
        return outcome(StatusCode::NOT_FOUND, "not-found", &format!("Patient/{id} is not known"));
    };
    let found =
        vid.parse::<usize>().ok().and_then(|v| v.checked_sub(1)).and_then(|i| versions.get(i)).cloned();
    match found {
        Some(Some(p)) => with_version_headers(&store, StatusCode::OK, &p),
        Some(None) => outcome(StatusCode::GONE, "deleted", "that version is a deletion"),
        None => outcome(StatusCode::NOT_FOUND, "not-found", &format!("Patient/{id} has no version {vid}")),
    }
}

fn parse_patient(body: &[u8]) -> Result<Value, Response> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|_| outcome(StatusCode::BAD_REQUEST, "structure", "the body is not valid JSON"))?;
    if value.get("resourceType").and_then(Value::as_str) != Some("Patient") {
        return Err(outcome(StatusCode::BAD_REQUEST, "invalid", "resourceType must be Patient"));
    }
    Ok(value)
}

async fn create(State(store): State<Arc<FhirStore>>, headers: HeaderMap, body: Bytes) -> Response {
    let mut patient = match parse_patient(&body) {
        Ok(p) => p,
        Err(e) => return e,
    };
    if let Some(condition) = headers.get("if-none-exist").and_then(|v| v.to_str().ok()) {
        let query = parse_query(Some(condition.trim_start_matches('?')));
        let found = store.matches(&query);
        match found.len() {
            0 => {}
            1 => return with_version_headers(&store, StatusCode::OK, &found[0]),
            n => {
                return outcome(
                    StatusCode::PRECONDITION_FAILED,
                    "duplicate",
                    &format!("If-None-Exist matched {n} patients"),
                );
            }
        }
    }
    let mut data = store.data();
    data.received.push(patient.clone());
    data.next_id += 1;
    let id = format!("pat-{}", data.next_id);
    stamp(&mut patient, &id, 1);
    data.history.insert(id, vec![Some(patient.clone())]);
    drop(data);
    with_version_headers(&store, StatusCode::CREATED, &patient)
}

async fn update(
    State(store): State<Arc<FhirStore>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut patient = match parse_patient(&body) {
        Ok(p) => p,
        Err(e) => return e,
    };
    if patient.get("id").and_then(Value::as_str) != Some(id.as_str()) {
        return outcome(StatusCode::BAD_REQUEST, "invalid", "the resource id must match the URL");
    }
    let mut data = store.data();
    data.received.push(patient.clone());
    let current = data.history.get(&id).and_then(|v| v.last().cloned().flatten());
    if let Some(wanted) = headers.get(header::IF_MATCH).and_then(|v| v.to_str().ok()) {
        let have = current.as_ref().map(version_of);
        let wanted = wanted.trim().trim_start_matches("W/").trim_matches('"');
        if have.map(|v| v.to_string()).as_deref() != Some(wanted) {
            return outcome(
                StatusCode::PRECONDITION_FAILED,
                "conflict",
                &format!("If-Match {wanted} does not match the current version {}", have.unwrap_or(0)),
            );
        }
    }
    let versions = data.history.entry(id.clone()).or_default();
    let version = versions.len() as u64 + 1;
    stamp(&mut patient, &id, version);
    versions.push(Some(patient.clone()));
    drop(data);
    let status = if current.is_some() { StatusCode::OK } else { StatusCode::CREATED };
    with_version_headers(&store, status, &patient)
}

async fn delete(State(store): State<Arc<FhirStore>>, Path(id): Path<String>) -> Response {
    let mut data = store.data();
    match data.history.get_mut(&id) {
        Some(versions) if versions.last().is_some_and(Option::is_some) => {
            versions.push(None);
            StatusCode::NO_CONTENT.into_response()
        }
        Some(_) => StatusCode::NO_CONTENT.into_response(),
        None => outcome(StatusCode::NOT_FOUND, "not-found", &format!("Patient/{id} is not known")),
    }
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
