//! Operations (operations.html): `$name` at system, type and instance level, by GET
//! (simple parameters in the query) or POST (a Parameters body).
//!
//! | level | operation | answer |
//! |---|---|---|
//! | system | `$versions` (capabilities.html#versions) | Parameters: `version`, `default` |
//! | system | `$ping` (sandbox) | Parameters: `status` = ok, `time` |
//! | type | `[type]/$count` (sandbox) | Parameters: `count` (valueInteger), for the search parameters given |
//! | instance | `Patient/[id]/$everything` (patient-operation-everything.html) | searchset Bundle: the patient, what refers to it, what those refer to |
//!
//! Anything else is 404 with an OperationOutcome (`not-supported`).

use std::collections::BTreeSet;

use axum::http::{Method, StatusCode};
use serde_json::{Value, json};

use super::exchange::{Answer, Prefer, Req, resource_body};
use super::search::{self, split_reference};
use super::store::{Current, Data};
use super::{FhirStore, instant, types};

fn bad(diagnostics: impl Into<String>) -> Answer {
    Answer::error(StatusCode::BAD_REQUEST, "invalid", diagnostics)
}

/// The operation's input parameters as name/value text: the query of a GET, the
/// Parameters body of a POST (primitive `value[x]` only).
fn inputs(req: &Req) -> Result<Vec<(String, String)>, Answer> {
    if req.method != Method::POST {
        return Ok(req.query.clone());
    }
    let body = resource_body(req)?;
    if body.get("resourceType").and_then(Value::as_str) != Some("Parameters") {
        return Err(bad(
            "an operation invoked by POST takes a Parameters resource (operations.html#executing)",
        ));
    }
    let mut out = Vec::new();
    for p in body.get("parameter").and_then(Value::as_array).into_iter().flatten() {
        let name = p.get("name").and_then(Value::as_str).ok_or_else(|| bad("a parameter has no name"))?;
        let value = p
            .as_object()
            .and_then(|m| m.iter().find(|(k, _)| k.starts_with("value")).map(|(_, v)| v))
            .ok_or_else(|| {
                bad(format!("parameter {name}: only primitive value[x] parameters are supported"))
            })?;
        let text = match value {
            Value::String(s) => s.clone(),
            Value::Number(n) => n.to_string(),
            Value::Bool(b) => b.to_string(),
            _ => {
                return Err(bad(format!(
                    "parameter {name}: only primitive value[x] parameters are supported"
                )));
            }
        };
        out.push((name.to_owned(), text));
    }
    Ok(out)
}

fn parameters(params: Value) -> Answer {
    Answer::ok(json!({"resourceType": "Parameters", "parameter": params}))
}

/// Invokes `$name` on the system (`t` None), a type, or an instance.
pub(crate) fn invoke(
    store: &FhirStore,
    data: &Data,
    req: &Req,
    t: Option<&str>,
    id: Option<&str>,
    name: &str,
) -> Answer {
    if !matches!(req.method, Method::GET | Method::HEAD | Method::POST) {
        return Answer::not_allowed("GET, POST", "an operation");
    }
    let params = match inputs(req) {
        Ok(p) => p,
        Err(e) => return e,
    };
    match (name, t, id) {
        ("versions", None, None) => parameters(json!([
            {"name": "version", "valueCode": "4.0"},
            {"name": "default", "valueCode": "4.0"}
        ])),
        ("ping", None, None) => parameters(json!([
            {"name": "status", "valueString": "ok"},
            {"name": "time", "valueInstant": instant::format(instant::now_ms())}
        ])),
        ("count", Some(t), None) => {
            // Every parameter must be understood: a count of something else is wrong.
            let strict = Prefer { strict: true, ..req.prefer() };
            match search::count(store, data, t, &params, strict) {
                Ok(n) => parameters(json!([{"name": "count", "valueInteger": n}])),
                Err(e) => e,
            }
        }
        ("everything", Some("Patient"), Some(id)) => everything(store, data, id, &params),
        _ => {
            let level = match (t, id) {
                (None, _) => "system".to_owned(),
                (Some(t), None) => format!("type ({t})"),
                (Some(t), Some(_)) => format!("instance ({t})"),
            };
            Answer::error(
                StatusCode::NOT_FOUND,
                "not-supported",
                format!("the operation ${name} is not supported at {level} level"),
            )
        }
    }
}

/// Every reference anywhere in a resource, as (type, id) on this server.
fn references(value: &Value, base: &str, out: &mut BTreeSet<(String, String)>) {
    match value {
        Value::Object(map) => {
            if let Some(r) =
                map.get("reference").and_then(Value::as_str).and_then(|r| split_reference(r, base))
            {
                out.insert(r);
            }
            map.values().for_each(|v| references(v, base, out));
        }
        Value::Array(items) => items.iter().for_each(|v| references(v, base, out)),
        _ => {}
    }
}

/// `Patient/[id]/$everything`: the patient, every resource that refers to it, and
/// the resources those refer to (Practitioner, Organization, Medication…), with
/// `_since` and `_type` (patient-operation-everything.html).
fn everything(store: &FhirStore, data: &Data, id: &str, params: &[(String, String)]) -> Answer {
    let mut since = None;
    let mut only: Option<Vec<String>> = None;
    for (key, value) in params {
        match key.as_str() {
            "_since" => match instant::parse_range(value) {
                Some((start, _)) => since = Some(start),
                None => return bad(format!("_since={value} is not an instant")),
            },
            "_type" => {
                let names: Vec<String> = value.split(',').map(str::trim).map(str::to_owned).collect();
                if let Some(unknown) = names.iter().find(|n| !types::is_stored(n)) {
                    return bad(format!("_type: {unknown} is not a resource type"));
                }
                only = Some(names);
            }
            "_count" | "_format" | "_pretty" => {}
            k if store.vendor_params().iter().any(|v| v == k) => {}
            other => {
                return Answer::error(
                    StatusCode::BAD_REQUEST,
                    "not-supported",
                    format!("$everything has no parameter {other}"),
                );
            }
        }
    }
    let patient = match data.current("Patient", id) {
        Current::Missing => {
            return Answer::error(StatusCode::NOT_FOUND, "not-found", format!("Patient/{id} is not known"));
        }
        Current::Deleted(_) => {
            return Answer::error(StatusCode::GONE, "deleted", format!("Patient/{id} was deleted"));
        }
        Current::Live(v) => v,
    };
    let base = store.base();
    let me = ("Patient".to_owned(), id.to_owned());
    let mut picked: Vec<(String, String)> = vec![me.clone()];
    let mut seen: BTreeSet<(String, String)> = BTreeSet::from([me.clone()]);
    let mut referred = BTreeSet::new();
    for (t, rid, v) in data.live(None) {
        let Some(resource) = &v.resource else { continue };
        let mut refs = BTreeSet::new();
        references(resource, base, &mut refs);
        if refs.contains(&me) && seen.insert((t.to_owned(), rid.to_owned())) {
            picked.push((t.to_owned(), rid.to_owned()));
            referred.extend(refs);
        }
    }
    if let Some(resource) = &patient.resource {
        references(resource, base, &mut referred);
    }
    for r in referred {
        if seen.insert(r.clone()) {
            picked.push(r);
        }
    }
    let entries: Vec<Value> = picked
        .iter()
        .filter(|(t, _)| only.as_ref().is_none_or(|o| o.contains(t)))
        .filter_map(|(t, rid)| match data.current(t, rid) {
            Current::Live(v) if since.is_none_or(|s| v.updated >= s) => Some(json!({
                "fullUrl": format!("{base}/{t}/{rid}"),
                "resource": v.resource,
                "search": {"mode": "match"}
            })),
            _ => None,
        })
        .collect();
    Answer::ok(
        json!({"resourceType": "Bundle", "type": "searchset", "total": entries.len(), "entry": entries}),
    )
}
