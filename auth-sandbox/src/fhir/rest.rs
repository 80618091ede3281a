//! Routing of one interaction (http.html#summary) and the instance and type level
//! interactions: read, vread, create (conditional too), update (as create, and
//! conditional), delete (conditional too), and search by POST.

use axum::http::{Method, StatusCode};
use serde_json::{Value, json};

use super::exchange::{Answer, Prefer, Req, Return, issue, media_type, parse_etag, resource_body};
use super::store::{Current, Data, Kind, Version};
use super::{FhirStore, capability, history, operations, patch, search, transaction, types};

/// Answers one interaction against `data`.
pub(crate) fn dispatch(store: &FhirStore, data: &mut Data, req: &Req) -> Answer {
    let segments: Vec<&str> = req.segments.iter().map(String::as_str).collect();
    let method = &req.method;
    let get = *method == Method::GET || *method == Method::HEAD;
    let prefer = req.prefer();
    // A read-only server refuses every write before looking further (MSK: http.html#ops, 405).
    let harmless = get
        || *method == Method::POST && segments.last().is_some_and(|s| *s == "_search" || s.starts_with('$'));
    if store.read_only() && !harmless {
        return Answer::not_allowed("GET", "this read-only server");
    }
    match segments.as_slice() {
        [] if *method == Method::POST => transaction::process(store, data, req),
        [] if get => search::search(store, data, None, &req.query, prefer),
        [] => Answer::not_allowed("GET, POST", "the server base"),
        ["metadata"] if get => Answer::ok(capability::statement(store)),
        ["metadata"] => Answer::not_allowed("GET", "metadata"),
        ["_history"] if get => history::history(store, data, history::Scope::System, req),
        ["_history"] => Answer::not_allowed("GET", "history"),
        ["_search"] if *method == Method::POST => form_search(store, data, None, req),
        ["_search"] => Answer::not_allowed("POST", "_search"),
        [op] if op.starts_with('$') => operations::invoke(store, data, req, None, None, &op[1..]),
        [t, ..] if !types::is_stored(t) => Answer::error(
            StatusCode::NOT_FOUND,
            "not-supported",
            format!("{t} is not a resource type this server supports"),
        ),
        [t] => match *method {
            Method::GET | Method::HEAD => search::search(store, data, Some(t), &req.query, prefer),
            Method::POST => create(store, data, t, req),
            Method::PUT => conditional_update(store, data, t, req),
            Method::DELETE => conditional_delete(store, data, t, req),
            Method::PATCH => patch::conditional(store, data, t, req),
            _ => Answer::not_allowed("GET, POST, PUT, PATCH, DELETE", t),
        },
        [t, "_history"] if get => history::history(store, data, history::Scope::Type(t), req),
        [_, "_history"] => Answer::not_allowed("GET", "history"),
        [t, "_search"] if *method == Method::POST => form_search(store, data, Some(t), req),
        [_, "_search"] => Answer::not_allowed("POST", "_search"),
        [t, op] if op.starts_with('$') => operations::invoke(store, data, req, Some(t), None, &op[1..]),
        [_, id, ..] if !types::is_valid_id(id) => Answer::error(
            StatusCode::BAD_REQUEST,
            "invalid",
            format!("{id:?} is not a valid id (datatypes.html#id: [A-Za-z0-9-.]{{1,64}})"),
        ),
        [t, id] => match *method {
            Method::GET | Method::HEAD => read(data, t, id),
            Method::PUT => update(store, data, t, id, req),
            Method::PATCH => patch::patch(store, data, t, id, req),
            Method::DELETE => delete(store, data, t, id, req),
            _ => Answer::not_allowed("GET, PUT, PATCH, DELETE", "a resource"),
        },
        [t, id, "_history"] if get => history::history(store, data, history::Scope::Instance(t, id), req),
        [_, _, "_history"] => Answer::not_allowed("GET", "history"),
        [t, id, op] if op.starts_with('$') => {
            operations::invoke(store, data, req, Some(t), Some(id), &op[1..])
        }
        [t, id, "_history", vid] if get => vread(store, data, t, id, vid),
        [_, _, "_history", _] => Answer::not_allowed("GET", "a version"),
        _ => Answer::error(
            StatusCode::NOT_FOUND,
            "not-found",
            format!("no interaction at /{}", segments.join("/")),
        ),
    }
}

/// The answer to a read of a version: the resource, `ETag`, `Last-Modified`.
pub(crate) fn found(version: &Version) -> Answer {
    let mut a = Answer::new(StatusCode::OK, version.resource.clone());
    a.etag = Some(version.number);
    a.last_modified = Some(version.updated);
    a
}

fn not_found(t: &str, id: &str) -> Answer {
    Answer::error(StatusCode::NOT_FOUND, "not-found", format!("{t}/{id} is not known"))
}

fn gone(t: &str, id: &str, version: &Version) -> Answer {
    // http.html#read: a deleted resource is 410 Gone.
    let mut a = Answer::error(StatusCode::GONE, "deleted", format!("{t}/{id} was deleted"));
    a.etag = Some(version.number);
    a.last_modified = Some(version.updated);
    a
}

/// `GET [type]/[id]` (http.html#read).
fn read(data: &Data, t: &str, id: &str) -> Answer {
    match data.current(t, id) {
        Current::Missing => not_found(t, id),
        Current::Deleted(v) => gone(t, id, v),
        Current::Live(v) => found(v),
    }
}

/// `GET [type]/[id]/_history/[vid]` (http.html#vread): older versions stay readable
/// after a delete; the deletion itself reads 410.
fn vread(store: &FhirStore, data: &Data, t: &str, id: &str, vid: &str) -> Answer {
    if data.versions(t, id).is_none() {
        return not_found(t, id);
    }
    match vid.parse::<u64>().ok().and_then(|n| data.version(t, id, n)) {
        Some(v) if v.resource.is_some() => {
            let mut a = found(v);
            a.location = Some(format!("{}/{t}/{id}/_history/{}", store.base(), v.number));
            a
        }
        Some(v) => gone(t, id, v),
        None => Answer::error(StatusCode::NOT_FOUND, "not-found", format!("{t}/{id} has no version {vid}")),
    }
}

/// The answer to a write: `Location` (…/_history/n), `ETag`, `Last-Modified`, and
/// the body `Prefer: return` asked for (http.html#ops).
pub(crate) fn written(
    store: &FhirStore,
    status: StatusCode,
    t: &str,
    id: &str,
    version: &Version,
    prefer: Prefer,
) -> Answer {
    let body = match prefer.ret {
        Return::Minimal => None,
        Return::Representation => version.resource.clone(),
        Return::OperationOutcome => Some(issue(
            "information",
            "informational",
            &format!("{t}/{id} version {} written ({})", version.number, version.kind.method()),
        )),
    };
    let mut a = Answer::new(status, body);
    a.etag = Some(version.number);
    a.last_modified = Some(version.updated);
    a.location = Some(format!("{}/{t}/{id}/_history/{}", store.base(), version.number));
    a
}

/// The body's `resourceType` must be the URL's (http.html#create, #update).
pub(crate) fn check_type(resource: &Value, t: &str) -> Result<(), Answer> {
    match resource.get("resourceType").and_then(Value::as_str) {
        Some(rt) if rt == t => Ok(()),
        Some(rt) => Err(Answer::error(
            StatusCode::BAD_REQUEST,
            "invalid",
            format!("the body is a {rt}, the URL names {t}"),
        )),
        None => Err(Answer::error(StatusCode::BAD_REQUEST, "required", "the body has no resourceType")),
    }
}

/// Query pairs of a conditional header's value: `identifier=x` (or `Patient?identifier=x`).
pub(crate) fn condition_query(value: &str) -> Vec<(String, String)> {
    let query = value.split_once('?').map_or(value, |(_, q)| q);
    form_urlencoded::parse(query.as_bytes()).into_owned().collect()
}

/// Checks `If-Match` against the current version (http.html#concurrency): 412 when
/// stale, 400 when not an ETag, 428 when the server requires one and none came.
pub(crate) fn check_if_match(store: &FhirStore, req: &Req, current: Option<&Version>) -> Result<(), Answer> {
    match req.header("if-match") {
        Some(value) => {
            let Some(wanted) = parse_etag(value) else {
                return Err(Answer::error(
                    StatusCode::BAD_REQUEST,
                    "invalid",
                    format!("If-Match {value} is not an ETag"),
                ));
            };
            let have = current.map(|v| v.number);
            if have != Some(wanted) {
                return Err(Answer::error(
                    StatusCode::PRECONDITION_FAILED,
                    "conflict",
                    format!(
                        "If-Match W/\"{wanted}\" does not match the current version {}",
                        have.map_or("(none)".to_owned(), |h| format!("W/\"{h}\""))
                    ),
                ));
            }
            Ok(())
        }
        None if store.require_if_match() && current.is_some() => Err(Answer::error(
            StatusCode::PRECONDITION_REQUIRED,
            "required",
            "this server requires If-Match on updates (version-aware updates)",
        )),
        None => Ok(()),
    }
}

/// `POST [type]` (http.html#create), with `If-None-Exist` (#ccreate): 0 matches
/// create, 1 match answers 200 with the match and creates nothing, 2+ → 412.
fn create(store: &FhirStore, data: &mut Data, t: &str, req: &Req) -> Answer {
    let resource = match resource_body(req).and_then(|r| check_type(&r, t).map(|()| r)) {
        Ok(r) => r,
        Err(e) => return e,
    };
    data.received.push(resource.clone());
    if let Some(condition) = req.header("if-none-exist") {
        let ids = match search::criteria(t, &condition_query(condition)) {
            Ok(filters) => search::matching_ids(data, store.base(), t, &filters),
            Err(e) => return e,
        };
        match ids.as_slice() {
            [] => {}
            [id] => {
                let Current::Live(v) = data.current(t, id) else { return not_found(t, id) };
                return written(store, StatusCode::OK, t, id, v, req.prefer());
            }
            more => {
                return Answer::error(
                    StatusCode::PRECONDITION_FAILED,
                    "multiple-matches",
                    format!("If-None-Exist matched {} {t} resources", more.len()),
                );
            }
        }
    }
    // http.html#create: an id in the body is ignored; the server assigns one.
    let id = req.assigned_id.clone().unwrap_or_else(|| data.new_id(t));
    let version = data.write(t, &id, Kind::Create, Some(resource));
    written(store, StatusCode::CREATED, t, &id, &version, req.prefer())
}

/// Writes `resource` as the next version of `t/id`, after the `If-Match` check:
/// 200, or 201 when the id had no live resource (update as create, http.html#upsert).
fn put(store: &FhirStore, data: &mut Data, t: &str, id: &str, resource: Value, req: &Req) -> Answer {
    let current = match data.current(t, id) {
        Current::Live(v) => Some(v.clone()),
        _ => None,
    };
    if let Err(e) = check_if_match(store, req, current.as_ref()) {
        return e;
    }
    let (kind, status) = match current {
        Some(_) => (Kind::Update, StatusCode::OK),
        None => (Kind::UpdateCreate, StatusCode::CREATED),
    };
    let version = data.write(t, id, kind, Some(resource));
    written(store, status, t, id, &version, req.prefer())
}

/// `PUT [type]/[id]` (http.html#update): the body's id must be the URL's.
fn update(store: &FhirStore, data: &mut Data, t: &str, id: &str, req: &Req) -> Answer {
    let resource = match resource_body(req).and_then(|r| check_type(&r, t).map(|()| r)) {
        Ok(r) => r,
        Err(e) => return e,
    };
    if resource.get("id").and_then(Value::as_str) != Some(id) {
        return Answer::error(
            StatusCode::BAD_REQUEST,
            "invalid",
            format!("the resource's id must be {id}, as in the URL (http.html#update)"),
        );
    }
    data.received.push(resource.clone());
    put(store, data, t, id, resource, req)
}

/// `PUT [type]?criteria` (http.html#cond-update): no match creates (with the body's
/// id if it has one), one match is updated (a different id in the body is 400),
/// several → 412.
fn conditional_update(store: &FhirStore, data: &mut Data, t: &str, req: &Req) -> Answer {
    if req.query.is_empty() {
        return Answer::error(
            StatusCode::BAD_REQUEST,
            "invalid",
            format!("PUT {t} needs an id (PUT {t}/[id]) or search criteria (conditional update)"),
        );
    }
    let filters = match search::criteria(t, &req.query) {
        Ok(f) => f,
        Err(e) => return e,
    };
    let mut resource = match resource_body(req).and_then(|r| check_type(&r, t).map(|()| r)) {
        Ok(r) => r,
        Err(e) => return e,
    };
    data.received.push(resource.clone());
    let body_id = resource.get("id").and_then(Value::as_str).map(str::to_owned);
    let ids = search::matching_ids(data, store.base(), t, &filters);
    let id = match (ids.as_slice(), body_id) {
        ([], Some(id)) if types::is_valid_id(&id) => id,
        ([], Some(id)) => {
            return Answer::error(StatusCode::BAD_REQUEST, "invalid", format!("{id:?} is not a valid id"));
        }
        ([], None) => req.assigned_id.clone().unwrap_or_else(|| data.new_id(t)),
        ([found], Some(id)) if *found != id => {
            return Answer::error(
                StatusCode::BAD_REQUEST,
                "invalid",
                format!("the criteria match {t}/{found}, but the body's id is {id}"),
            );
        }
        ([found], _) => found.clone(),
        (more, _) => {
            return Answer::error(
                StatusCode::PRECONDITION_FAILED,
                "multiple-matches",
                format!("the criteria match {} {t} resources", more.len()),
            );
        }
    };
    if let Value::Object(map) = &mut resource {
        map.insert("id".into(), json!(id));
    }
    put(store, data, t, &id, resource, req)
}

/// `DELETE [type]/[id]` (http.html#delete): 204, also for a resource that is already
/// deleted or never existed, as the spec asks. `If-Match`, when sent, must name the
/// current version.
fn delete(store: &FhirStore, data: &mut Data, t: &str, id: &str, req: &Req) -> Answer {
    let Current::Live(current) = data.current(t, id) else {
        return Answer::new(StatusCode::NO_CONTENT, None);
    };
    if req.header("if-match").is_some()
        && let Err(e) = check_if_match(store, req, Some(&current.clone()))
    {
        return e;
    }
    let version = data.write(t, id, Kind::Delete, None);
    let mut a = Answer::new(StatusCode::NO_CONTENT, None);
    a.etag = Some(version.number);
    a
}

/// `DELETE [type]?criteria` (http.html#3.1.0.7.1), single-match mode: no match 204,
/// one match deleted, several → 412.
fn conditional_delete(store: &FhirStore, data: &mut Data, t: &str, req: &Req) -> Answer {
    if req.query.is_empty() {
        return Answer::error(
            StatusCode::BAD_REQUEST,
            "invalid",
            format!("DELETE {t} needs an id or search criteria (conditional delete)"),
        );
    }
    let ids = match search::criteria(t, &req.query) {
        Ok(filters) => search::matching_ids(data, store.base(), t, &filters),
        Err(e) => return e,
    };
    match ids.as_slice() {
        [] => Answer::new(StatusCode::NO_CONTENT, None),
        [id] => delete(store, data, t, &id.clone(), req),
        more => Answer::error(
            StatusCode::PRECONDITION_FAILED,
            "multiple-matches",
            format!("the criteria match {} {t} resources; this server deletes one at a time", more.len()),
        ),
    }
}

/// `POST [type]/_search` (http.html#search): the form body's parameters and the
/// query's, with the same answer as GET.
fn form_search(store: &FhirStore, data: &Data, t: Option<&str>, req: &Req) -> Answer {
    let media = media_type(req.header("content-type"));
    if media.as_deref() != Some("application/x-www-form-urlencoded") {
        return Answer::error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "not-supported",
            "POST _search takes application/x-www-form-urlencoded (http.html#search)",
        );
    }
    let mut params = req.query.clone();
    params.extend(form_urlencoded::parse(&req.body).into_owned());
    search::search(store, data, t, &params, req.prefer())
}
