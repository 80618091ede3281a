//! Batch and transaction (http.html#transaction, bundle.html#transaction):
//! `POST [base]` with a Bundle of type `batch` or `transaction`.
//!
//! A batch runs each entry on its own and answers `batch-response` with each
//! entry's outcome. A transaction runs on a copy of the data in the spec's order
//! (DELETE, POST, PUT/PATCH, GET), with `urn:uuid:` full URLs given real ids and
//! every reference to them rewritten beforehand, and conditional references
//! (`Patient?identifier=…`) resolved; the copy replaces the data only if every
//! entry succeeded, so a failing entry leaves nothing applied.

use std::collections::{BTreeSet, HashMap};

use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use serde_json::{Value, json};

use super::exchange::{Answer, Req, resource_body};
use super::rest::{self, condition_query};
use super::store::{Current, Data};
use super::{FhirStore, search, types};

/// One entry, read.
#[derive(Debug)]
struct Entry {
    index: usize,
    full_url: Option<String>,
    req: Req,
    /// `METHOD url`, to name the entry in errors.
    label: String,
}

fn bad(diagnostics: impl Into<String>) -> Answer {
    Answer::error(StatusCode::BAD_REQUEST, "invalid", diagnostics)
}

fn decode_segment(segment: &str) -> Option<String> {
    super::percent_decode(segment)
}

/// Reads `Bundle.entry[index]`: its `request` (method, url, ifMatch, ifNoneExist,
/// ifNoneMatch, ifModifiedSince) and resource.
fn read_entry(store: &FhirStore, index: usize, entry: &Value, outer: &HeaderMap) -> Result<Entry, Answer> {
    let request = entry.get("request").ok_or_else(|| bad("the entry has no request"))?;
    let method = request.get("method").and_then(Value::as_str).unwrap_or_default();
    let url =
        request.get("url").and_then(Value::as_str).ok_or_else(|| bad("the entry's request has no url"))?;
    let label = format!("{method} {url}");
    let method = match method {
        "GET" => Method::GET,
        "HEAD" => Method::HEAD,
        "POST" => Method::POST,
        "PUT" => Method::PUT,
        "PATCH" => Method::PATCH,
        "DELETE" => Method::DELETE,
        other => {
            return Err(bad(format!(
                "request.method {other:?} is not GET, HEAD, POST, PUT, PATCH or DELETE"
            )));
        }
    };
    // An absolute URL must be this server's.
    let relative = match url.strip_prefix(store.base()) {
        Some(rest) => rest.trim_start_matches('/'),
        None if url.contains("://") => {
            return Err(bad(format!("{url} is not on this server ({})", store.base())));
        }
        None => url.trim_start_matches('/'),
    };
    let (path, query) = relative.split_once('?').unwrap_or((relative, ""));
    let segments = path
        .split('/')
        .filter(|s| !s.is_empty())
        .map(decode_segment)
        .collect::<Option<Vec<String>>>()
        .ok_or_else(|| bad(format!("{url}: the path is not valid percent-encoded UTF-8")))?;
    if segments.is_empty() && method == Method::POST {
        return Err(bad("a batch or transaction cannot contain another one"));
    }
    let mut headers = HeaderMap::new();
    for (field, name) in [
        ("ifMatch", "if-match"),
        ("ifNoneExist", "if-none-exist"),
        ("ifNoneMatch", "if-none-match"),
        ("ifModifiedSince", "if-modified-since"),
    ] {
        if let Some(value) = request.get(field).and_then(Value::as_str) {
            let value = HeaderValue::from_str(value)
                .map_err(|_| bad(format!("request.{field} is not a valid header value")))?;
            headers.insert(HeaderName::from_static(name), value);
        }
    }
    for prefer in outer.get_all("prefer") {
        headers.append(HeaderName::from_static("prefer"), prefer.clone());
    }
    let resource = entry.get("resource").cloned();
    let needs_body = matches!(method, Method::PUT | Method::PATCH)
        || method == Method::POST && !segments.last().is_some_and(|s| s == "_search" || s.starts_with('$'));
    if needs_body && resource.is_none() {
        return Err(bad(format!("{label} needs a resource")));
    }
    if resource.as_ref().is_some_and(|r| !r.is_object()) {
        return Err(bad("the entry's resource is not a JSON object"));
    }
    Ok(Entry {
        index,
        full_url: entry.get("fullUrl").and_then(Value::as_str).map(str::to_owned),
        req: Req {
            method,
            segments,
            query: form_urlencoded::parse(query.as_bytes()).into_owned().collect(),
            headers,
            body: Default::default(),
            resource: if needs_body { resource } else { None },
            assigned_id: None,
        },
        label,
    })
}

/// The entry's `response` (and resource or outcome) in a `*-response` Bundle.
fn response_entry(store: &FhirStore, answer: &Answer, full_url: Option<&str>) -> Value {
    let mut response = json!({"status": answer.status_line()});
    if let Some(location) = &answer.location {
        response["location"] = json!(location);
    }
    if let Some(v) = answer.etag {
        response["etag"] = json!(super::exchange::etag(v));
    }
    if let Some(ms) = answer.last_modified {
        response["lastModified"] = json!(super::instant::format(ms));
    }
    let mut entry = json!({});
    if answer.is_success() {
        if let Some(body) = &answer.body {
            if body.get("resourceType").and_then(Value::as_str) == Some("OperationOutcome") {
                response["outcome"] = body.clone();
            } else {
                entry["resource"] = body.clone();
            }
        }
        // The created or updated resource's own URL.
        let url = answer
            .location
            .as_deref()
            .and_then(|l| l.split("/_history/").next())
            .map(str::to_owned)
            .or_else(|| full_url.map(str::to_owned));
        if let Some(url) = url.filter(|u| u.starts_with(store.base())) {
            entry["fullUrl"] = json!(url);
        }
    } else if let Some(body) = &answer.body {
        response["outcome"] = body.clone();
    }
    entry["response"] = response;
    entry
}

/// An entry's failure as the whole transaction's: the entry named in the
/// diagnostics and in `issue.expression`.
fn entry_failed(entry: &Entry, answer: &Answer) -> Answer {
    let inner = answer
        .body
        .as_ref()
        .and_then(|b| b.pointer("/issue/0/diagnostics"))
        .and_then(Value::as_str)
        .unwrap_or("failed");
    let code = answer
        .body
        .as_ref()
        .and_then(|b| b.pointer("/issue/0/code"))
        .and_then(Value::as_str)
        .unwrap_or("processing");
    let mut failed = Answer::new(
        answer.status,
        Some(json!({
            "resourceType": "OperationOutcome",
            "issue": [{
                "severity": "error",
                "code": code,
                "diagnostics": format!("transaction failed at Bundle.entry[{}] ({}): {inner}; nothing was applied", entry.index, entry.label),
                "expression": [format!("Bundle.entry[{}]", entry.index)]
            }]
        })),
    );
    failed.allow = answer.allow;
    failed
}

/// `POST [base]` with a batch or transaction Bundle.
pub(crate) fn process(store: &FhirStore, data: &mut Data, req: &Req) -> Answer {
    let bundle = match resource_body(req) {
        Ok(b) => b,
        Err(e) => return e,
    };
    if bundle.get("resourceType").and_then(Value::as_str) != Some("Bundle") {
        return bad("POST [base] takes a Bundle of type batch or transaction");
    }
    let kind = bundle.get("type").and_then(Value::as_str).unwrap_or_default();
    let items = match bundle.get("entry") {
        None => Vec::new(),
        Some(Value::Array(items)) => items.clone(),
        Some(_) => return bad("Bundle.entry is not an array"),
    };
    match kind {
        "batch" => batch(store, data, &items, &req.headers),
        "transaction" => transaction(store, data, &items, &req.headers),
        other => bad(format!(
            "POST [base] takes a batch or transaction Bundle, not {other:?} (http.html#transaction)"
        )),
    }
}

/// Resolves conditional references (`"reference": "Patient?identifier=x"`) in place:
/// each must match exactly one resource (bundle.html#references).
fn resolve_conditional(store: &FhirStore, data: &Data, value: &mut Value) -> Result<(), Answer> {
    match value {
        Value::Object(map) => {
            if let Some(Value::String(reference)) = map.get_mut("reference")
                && let Some((t, query)) = reference.split_once('?')
                && !reference.contains("://")
            {
                if !types::is_stored(t) {
                    return Err(bad(format!("conditional reference {reference}: unknown type {t}")));
                }
                let filters = search::criteria(t, &condition_query(query))?;
                let ids = search::matching_ids(data, store.base(), t, &filters);
                match ids.as_slice() {
                    [id] => *reference = format!("{t}/{id}"),
                    other => {
                        return Err(Answer::error(
                            StatusCode::PRECONDITION_FAILED,
                            if other.is_empty() { "not-found" } else { "multiple-matches" },
                            format!(
                                "conditional reference {reference} matches {} resources, not one",
                                other.len()
                            ),
                        ));
                    }
                }
            }
            map.values_mut().try_for_each(|v| resolve_conditional(store, data, v))
        }
        Value::Array(items) => items.iter_mut().try_for_each(|v| resolve_conditional(store, data, v)),
        _ => Ok(()),
    }
}

/// Replaces every string equal to a mapped full URL, wherever it is in the resource
/// (references, uris, identifiers' values), and occurrences inside the narrative
/// (bundle.html#references: links in `<a href>` and `<img src>` too).
fn rewrite(value: &mut Value, map: &HashMap<String, String>, in_div: bool) {
    match value {
        Value::String(s) => {
            if let Some(to) = map.get(s.as_str()) {
                *s = to.clone();
            } else if in_div {
                for (from, to) in map {
                    if s.contains(from.as_str()) {
                        *s = s.replace(from.as_str(), to);
                    }
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|v| rewrite(v, map, false)),
        Value::Object(m) => m.iter_mut().for_each(|(k, v)| rewrite(v, map, k == "div")),
        _ => {}
    }
}

/// A `urn:uuid:` or `urn:oid:` reference left after rewriting: it points to nothing.
fn dangling(value: &Value) -> Option<String> {
    match value {
        Value::Object(map) => {
            if let Some(r) = map.get("reference").and_then(Value::as_str).filter(|r| r.starts_with("urn:")) {
                return Some(r.to_owned());
            }
            map.values().find_map(dangling)
        }
        Value::Array(items) => items.iter().find_map(dangling),
        _ => None,
    }
}

fn batch(store: &FhirStore, data: &mut Data, items: &[Value], outer: &HeaderMap) -> Answer {
    let mut entries = Vec::with_capacity(items.len());
    for (index, item) in items.iter().enumerate() {
        let answer = match read_entry(store, index, item, outer) {
            Err(e) => e,
            Ok(mut entry) => {
                // bundle.html#batch: entries may not depend on each other.
                let resolved = match entry.req.resource.as_mut() {
                    Some(resource) => resolve_conditional(store, data, resource).and_then(|()| match dangling(resource) {
                        Some(r) => Err(bad(format!("{r} refers to another entry; batch entries are independent (use a transaction)"))),
                        None => Ok(()),
                    }),
                    None => Ok(()),
                };
                match resolved {
                    Ok(()) => rest::dispatch(store, data, &entry.req),
                    Err(e) => e,
                }
            }
        };
        entries.push(response_entry(store, &answer, None));
    }
    Answer::ok(json!({"resourceType": "Bundle", "type": "batch-response", "entry": entries}))
}

/// Processing rank of an entry (bundle.html#transaction).
fn rank(method: &Method) -> u8 {
    match *method {
        Method::DELETE => 0,
        Method::POST => 1,
        Method::PUT | Method::PATCH => 2,
        _ => 3,
    }
}

fn transaction(store: &FhirStore, data: &mut Data, items: &[Value], outer: &HeaderMap) -> Answer {
    let mut entries = Vec::with_capacity(items.len());
    for (index, item) in items.iter().enumerate() {
        match read_entry(store, index, item, outer) {
            Ok(e) => entries.push(e),
            Err(e) => {
                let label = item.pointer("/request/method").and_then(Value::as_str).unwrap_or("?");
                let stub = Entry { index, full_url: None, req: empty_req(), label: label.to_owned() };
                return entry_failed(&stub, &e);
            }
        }
    }
    // bundle.html#transaction: two entries may not write the same resource.
    let mut targets = BTreeSet::new();
    for e in &entries {
        if matches!(e.req.method, Method::PUT | Method::PATCH | Method::DELETE)
            && e.req.segments.len() == 2
            && !targets.insert(e.req.segments.join("/"))
        {
            return entry_failed(
                e,
                &bad(format!("{} is written by more than one entry", e.req.segments.join("/"))),
            );
        }
    }
    let mut work = data.clone();
    let mut answers: Vec<Option<Answer>> = vec![None; entries.len()];
    let mut order: Vec<usize> = (0..entries.len()).collect();
    order.sort_by_key(|&i| rank(&entries[i].req.method));

    // 1. DELETE.
    for &i in order.iter().filter(|&&i| entries[i].req.method == Method::DELETE) {
        let answer = rest::dispatch(store, &mut work, &entries[i].req);
        if !answer.is_success() {
            return entry_failed(&entries[i], &answer);
        }
        answers[i] = Some(answer);
    }

    // 2. Ids for what POST and conditional PUT will create, so references to their
    //    full URLs can be rewritten before anything is written.
    let mut ids: HashMap<String, String> = HashMap::new();
    let mut matched: HashMap<usize, String> = HashMap::new();
    for &i in &order {
        let entry = &mut entries[i];
        let creates = match (&entry.req.method, entry.req.segments.as_slice()) {
            (&Method::POST, [t]) | (&Method::PUT, [t]) if types::is_stored(t) => Some(t.clone()),
            (&Method::PUT, [t, id]) => {
                if let Some(full) = &entry.full_url {
                    ids.insert(full.clone(), format!("{t}/{id}"));
                }
                None
            }
            _ => None,
        };
        let Some(t) = creates else { continue };
        let condition = if entry.req.method == Method::POST {
            entry.req.header("if-none-exist").map(condition_query)
        } else {
            Some(entry.req.query.clone())
        };
        let existing = match condition {
            Some(query) => match search::criteria(&t, &query) {
                Ok(filters) => search::matching_ids(&work, store.base(), &t, &filters),
                Err(e) => return entry_failed(entry, &e),
            },
            None => Vec::new(),
        };
        let body_id =
            entry.req.resource.as_ref().and_then(|r| r.get("id")).and_then(Value::as_str).map(str::to_owned);
        let id = match existing.as_slice() {
            // A conditional PUT that matches nothing keeps the body's id (http.html#cond-update).
            [] => match body_id.filter(|_| entry.req.method == Method::PUT) {
                Some(id) => id,
                None => {
                    let id = work.new_id(&t);
                    entry.req.assigned_id = Some(id.clone());
                    id
                }
            },
            [id] => {
                if entry.req.method == Method::POST {
                    matched.insert(i, id.clone());
                }
                id.clone()
            }
            more => {
                let e = Answer::error(
                    StatusCode::PRECONDITION_FAILED,
                    "multiple-matches",
                    format!("the condition matches {} {t} resources", more.len()),
                );
                return entry_failed(entry, &e);
            }
        };
        if let Some(full) = &entry.full_url {
            ids.insert(full.clone(), format!("{t}/{id}"));
        }
    }

    // 3. Conditional references resolved, full URLs rewritten, nothing left dangling.
    for &i in &order {
        let entry = &mut entries[i];
        let Some(resource) = entry.req.resource.as_mut() else { continue };
        if let Err(e) = resolve_conditional(store, &work, resource) {
            return entry_failed(entry, &e);
        }
        rewrite(resource, &ids, false);
        if let Some(r) = dangling(resource) {
            return entry_failed(
                entry,
                &bad(format!("{r} is not the fullUrl of any entry of this transaction")),
            );
        }
    }

    // 4. POST, PUT/PATCH, GET, in that order.
    for &i in order.iter().filter(|&&i| entries[i].req.method != Method::DELETE) {
        let entry = &entries[i];
        let answer = match matched.get(&i) {
            // If-None-Exist matched: nothing is created (http.html#ccreate).
            Some(id) => {
                let t = entry.req.segments.first().cloned().unwrap_or_default();
                match work.current(&t, id) {
                    Current::Live(v) => {
                        rest::written(store, StatusCode::OK, &t, id, &v.clone(), entry.req.prefer())
                    }
                    _ => Answer::error(StatusCode::NOT_FOUND, "not-found", format!("{t}/{id} is gone")),
                }
            }
            None => rest::dispatch(store, &mut work, &entry.req),
        };
        if !answer.is_success() {
            return entry_failed(entry, &answer);
        }
        answers[i] = Some(answer);
    }

    *data = work;
    let response: Vec<Value> = entries
        .iter()
        .zip(answers)
        .map(|(e, a)| {
            response_entry(
                store,
                &a.unwrap_or_else(|| Answer::new(StatusCode::OK, None)),
                e.full_url.as_deref(),
            )
        })
        .collect();
    Answer::ok(json!({"resourceType": "Bundle", "type": "transaction-response", "entry": response}))
}

fn empty_req() -> Req {
    Req {
        method: Method::GET,
        segments: Vec::new(),
        query: Vec::new(),
        headers: HeaderMap::new(),
        body: Default::default(),
        resource: None,
        assigned_id: None,
    }
}
