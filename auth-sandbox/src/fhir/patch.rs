//! PATCH with JSON Patch (RFC 6902; http.html#patch): `Content-Type:
//! application/json-patch+json`, or in a Bundle a Binary of that content type.
//! FHIRPath Patch (a Parameters body) is not supported: 415.

use axum::http::StatusCode;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::Value;

use super::FhirStore;
use super::exchange::{Answer, Req, media_type};
use super::rest::{check_if_match, written};
use super::search;
use super::store::{Current, Data, Kind};

const JSON_PATCH: &str = "application/json-patch+json";

fn unsupported(what: &str) -> Answer {
    Answer::error(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "not-supported",
        format!("PATCH takes {JSON_PATCH} (JSON Patch), not {what}; FHIRPath Patch is not supported"),
    )
}

/// The patch document of a request.
fn document(req: &Req) -> Result<json_patch::Patch, Answer> {
    let bytes = match &req.resource {
        // bundle.html#patch: in a Bundle the patch travels as a Binary.
        Some(resource) => {
            let rt = resource.get("resourceType").and_then(Value::as_str).unwrap_or_default();
            let content_type = resource.get("contentType").and_then(Value::as_str);
            if rt != "Binary" || media_type(content_type).as_deref() != Some(JSON_PATCH) {
                return Err(unsupported(&format!("a {rt} resource")));
            }
            let data = resource.get("data").and_then(Value::as_str).unwrap_or_default();
            STANDARD.decode(data).map_err(|_| {
                Answer::error(StatusCode::BAD_REQUEST, "structure", "the Binary's data is not base64")
            })?
        }
        None => {
            let media = media_type(req.header("content-type"));
            if media.as_deref() != Some(JSON_PATCH) {
                return Err(unsupported(media.as_deref().unwrap_or("a body without Content-Type")));
            }
            req.body.to_vec()
        }
    };
    serde_json::from_slice(&bytes).map_err(|e| {
        Answer::error(
            StatusCode::BAD_REQUEST,
            "structure",
            format!("the body is not a JSON Patch document: {e}"),
        )
    })
}

/// `PATCH [type]/[id]`: the patch applied to the current version, honouring
/// `If-Match`; a patch that does not apply is 422, and so is one that would change
/// the resource's `id` or `resourceType`.
pub(crate) fn patch(store: &FhirStore, data: &mut Data, t: &str, id: &str, req: &Req) -> Answer {
    let doc = match document(req) {
        Ok(d) => d,
        Err(e) => return e,
    };
    let current = match data.current(t, id) {
        Current::Missing => {
            return Answer::error(StatusCode::NOT_FOUND, "not-found", format!("{t}/{id} is not known"));
        }
        Current::Deleted(_) => {
            return Answer::error(StatusCode::GONE, "deleted", format!("{t}/{id} was deleted"));
        }
        Current::Live(v) => v.clone(),
    };
    if let Err(e) = check_if_match(store, req, Some(&current)) {
        return e;
    }
    let Some(mut resource) = current.resource.clone() else {
        return Answer::error(StatusCode::GONE, "deleted", format!("{t}/{id} was deleted"));
    };
    if let Err(e) = json_patch::patch(&mut resource, &doc) {
        return Answer::error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "processing",
            format!("the patch does not apply to {t}/{id}: {e}"),
        );
    }
    let same_type = resource.get("resourceType").and_then(Value::as_str) == Some(t);
    let same_id = resource.get("id").and_then(Value::as_str) == Some(id);
    if !resource.is_object() || !same_type || !same_id {
        return Answer::error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "business-rule",
            "a patch may not change a resource's id or resourceType",
        );
    }
    let version = data.write(t, id, Kind::Patch, Some(resource));
    written(store, StatusCode::OK, t, id, &version, req.prefer())
}

/// `PATCH [type]?criteria` (http.html#patch: as conditional update, no match 404,
/// several 412).
pub(crate) fn conditional(store: &FhirStore, data: &mut Data, t: &str, req: &Req) -> Answer {
    if req.query.is_empty() {
        return Answer::error(
            StatusCode::BAD_REQUEST,
            "invalid",
            format!("PATCH {t} needs an id or search criteria (conditional patch)"),
        );
    }
    let ids = match search::criteria(t, &req.query) {
        Ok(filters) => search::matching_ids(data, store.base(), t, &filters),
        Err(e) => return e,
    };
    match ids.as_slice() {
        [] => Answer::error(StatusCode::NOT_FOUND, "not-found", format!("no {t} matches the criteria")),
        [id] => patch(store, data, t, &id.clone(), req),
        more => Answer::error(
            StatusCode::PRECONDITION_FAILED,
            "multiple-matches",
            format!("the criteria match {} {t} resources", more.len()),
        ),
    }
}
