//! One interaction as the store handles it, whether it came over HTTP or as an
//! entry of a batch or transaction Bundle: [`Req`] in, [`Answer`] out. An answer
//! becomes an HTTP response or a Bundle entry's `response` (bundle.html#transaction-response).

use axum::body::Bytes;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::{FHIR_JSON, instant};

/// A request to the store.
#[derive(Debug, Clone)]
pub(crate) struct Req {
    pub(crate) method: Method,
    /// Path segments relative to the FHIR base, percent-decoded.
    pub(crate) segments: Vec<String>,
    /// Query pairs, decoded, in order.
    pub(crate) query: Vec<(String, String)>,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Bytes,
    /// A body already parsed (a Bundle entry's resource).
    pub(crate) resource: Option<Value>,
    /// The id a transaction assigned to a create ahead of time, so references to the
    /// entry's `urn:uuid:` could be rewritten before it ran (bundle.html#transaction).
    pub(crate) assigned_id: Option<String>,
}

impl Req {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok()).map(str::trim)
    }

    pub(crate) fn prefer(&self) -> Prefer {
        Prefer::parse(&self.headers)
    }
}

/// What `Prefer` asked for (http.html#ops, search.html#errors).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Prefer {
    pub(crate) ret: Return,
    /// `handling=strict`: unknown search parameters are errors.
    pub(crate) strict: bool,
}

/// `Prefer: return=…`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum Return {
    Minimal,
    #[default]
    Representation,
    OperationOutcome,
}

impl Prefer {
    pub(crate) fn parse(headers: &HeaderMap) -> Prefer {
        let mut prefer = Prefer::default();
        for value in headers.get_all("prefer").iter().filter_map(|v| v.to_str().ok()) {
            for pref in value.split([',', ';']).map(str::trim) {
                let Some((name, v)) = pref.split_once('=') else { continue };
                let v = v.trim().trim_matches('"');
                match (name.trim().to_ascii_lowercase().as_str(), v) {
                    ("return", "minimal") => prefer.ret = Return::Minimal,
                    ("return", "representation") => prefer.ret = Return::Representation,
                    ("return", "OperationOutcome") => prefer.ret = Return::OperationOutcome,
                    ("handling", "strict") => prefer.strict = true,
                    ("handling", "lenient") => prefer.strict = false,
                    _ => {}
                }
            }
        }
        prefer
    }
}

/// The store's answer.
#[derive(Debug, Clone)]
pub(crate) struct Answer {
    pub(crate) status: StatusCode,
    pub(crate) body: Option<Value>,
    pub(crate) etag: Option<u64>,
    pub(crate) location: Option<String>,
    pub(crate) last_modified: Option<i64>,
    /// `Allow`, with a 405.
    pub(crate) allow: Option<&'static str>,
}

impl Answer {
    pub(crate) fn new(status: StatusCode, body: Option<Value>) -> Answer {
        Answer { status, body, etag: None, location: None, last_modified: None, allow: None }
    }

    pub(crate) fn ok(body: Value) -> Answer {
        Answer::new(StatusCode::OK, Some(body))
    }

    /// An error answer: an OperationOutcome with one issue (operationoutcome.html).
    pub(crate) fn error(status: StatusCode, code: &str, diagnostics: impl Into<String>) -> Answer {
        Answer::new(status, Some(issue("error", code, &diagnostics.into())))
    }

    pub(crate) fn not_allowed(allow: &'static str, what: &str) -> Answer {
        let mut a = Answer::error(
            StatusCode::METHOD_NOT_ALLOWED,
            "not-supported",
            format!("{what} does not support this method (allowed: {allow})"),
        );
        a.allow = Some(allow);
        a
    }

    pub(crate) fn is_success(&self) -> bool {
        self.status.is_success()
    }

    /// `"201 Created"`, as `Bundle.entry.response.status` writes it.
    pub(crate) fn status_line(&self) -> String {
        match self.status.canonical_reason() {
            Some(reason) => format!("{} {reason}", self.status.as_u16()),
            None => self.status.as_u16().to_string(),
        }
    }

    pub(crate) fn into_response(self) -> Response {
        let mut response = match &self.body {
            Some(body) => {
                (self.status, [(header::CONTENT_TYPE, FHIR_JSON)], body.to_string()).into_response()
            }
            None => self.status.into_response(),
        };
        let headers = response.headers_mut();
        if let Some(v) = self.etag.and_then(|v| HeaderValue::from_str(&etag(v)).ok()) {
            headers.insert(header::ETAG, v);
        }
        if let Some(v) = self.location.as_deref().and_then(|l| HeaderValue::from_str(l).ok()) {
            headers.insert(header::LOCATION, v);
        }
        if let Some(v) = self.last_modified.and_then(|ms| HeaderValue::from_str(&instant::http_date(ms)).ok())
        {
            headers.insert(header::LAST_MODIFIED, v);
        }
        if let Some(allow) = self.allow {
            headers.insert(header::ALLOW, HeaderValue::from_static(allow));
        }
        response
    }
}

/// A weak ETag for a version (http.html#versioning).
pub(crate) fn etag(version: u64) -> String {
    format!("W/\"{version}\"")
}

/// The version an `If-Match` (or `Bundle.entry.request.ifMatch`) names: `W/"3"`,
/// also `"3"` and `3`. `None` for anything else.
pub(crate) fn parse_etag(value: &str) -> Option<u64> {
    let v = value.trim();
    let v = v.strip_prefix("W/").unwrap_or(v);
    let v = v.strip_prefix('"').and_then(|v| v.strip_suffix('"')).unwrap_or(v);
    v.parse().ok()
}

/// An OperationOutcome with one issue.
pub(crate) fn issue(severity: &str, code: &str, diagnostics: &str) -> Value {
    json!({
        "resourceType": "OperationOutcome",
        "issue": [{"severity": severity, "code": code, "diagnostics": diagnostics}]
    })
}

/// Whether a `Content-Type` names FHIR JSON (or plain JSON, which FHIR servers take
/// as the same: http.html#mime-type). A request without one is taken as JSON too:
/// lenient, as most servers are with a body they can parse.
pub(crate) fn is_json(content_type: Option<&str>) -> bool {
    let Some(ct) = content_type else { return true };
    let mime = ct.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
    matches!(mime.as_str(), "application/fhir+json" | "application/json" | "application/json+fhir")
}

/// The media type of a request, without parameters, lower-case.
pub(crate) fn media_type(content_type: Option<&str>) -> Option<String> {
    content_type.map(|ct| ct.split(';').next().unwrap_or_default().trim().to_ascii_lowercase())
}

/// The resource in a request's body: a JSON object, or a 415 / 400 answer.
pub(crate) fn resource_body(req: &Req) -> Result<Value, Answer> {
    if let Some(resource) = &req.resource {
        return Ok(resource.clone());
    }
    let content_type = req.header("content-type");
    if !is_json(content_type) {
        return Err(Answer::error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "not-supported",
            format!("this server reads application/fhir+json, not {}", content_type.unwrap_or_default()),
        ));
    }
    let value: Value = serde_json::from_slice(&req.body).map_err(|e| {
        Answer::error(StatusCode::BAD_REQUEST, "structure", format!("the body is not valid JSON: {e}"))
    })?;
    if !value.is_object() {
        return Err(Answer::error(StatusCode::BAD_REQUEST, "structure", "the body is not a JSON object"));
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etags_and_prefer() {
        assert_eq!(parse_etag("W/\"3\""), Some(3));
        assert_eq!(parse_etag("\"4\""), Some(4));
        assert_eq!(parse_etag("W/\"x\""), None);
        let mut h = HeaderMap::new();
        h.insert("prefer", HeaderValue::from_static("return=minimal, handling=strict"));
        assert_eq!(Prefer::parse(&h), Prefer { ret: Return::Minimal, strict: true });
        assert!(is_json(Some("application/fhir+json; charset=utf-8")));
        assert!(!is_json(Some("application/fhir+xml")));
    }
}
