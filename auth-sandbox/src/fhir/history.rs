//! History (http.html#history): of an instance, a type or the whole system, as a
//! Bundle of type `history`, newest first, paged, cut with `_since`. A deletion is an
//! entry without a resource whose `request.method` is DELETE.

use axum::http::StatusCode;
use serde_json::{Value, json};

use super::exchange::{Answer, Req, etag};
use super::store::Data;
use super::{FhirStore, instant};

/// Whose history.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Scope<'a> {
    System,
    Type(&'a str),
    Instance(&'a str, &'a str),
}

fn bad(diagnostics: impl Into<String>) -> Answer {
    Answer::error(StatusCode::BAD_REQUEST, "invalid", diagnostics)
}

/// `GET [base]/_history`, `GET [type]/_history`, `GET [type]/[id]/_history`.
pub(crate) fn history(store: &FhirStore, data: &Data, scope: Scope<'_>, req: &Req) -> Answer {
    if let Scope::Instance(t, id) = scope
        && data.versions(t, id).is_none()
    {
        return Answer::error(StatusCode::NOT_FOUND, "not-found", format!("{t}/{id} is not known"));
    }
    let strict = req.prefer().strict;
    let mut count = super::DEFAULT_PAGE_SIZE;
    let mut page = 1usize;
    let mut since: Option<i64> = None;
    let mut kept: Vec<(String, String)> = Vec::new();
    for (key, value) in &req.query {
        match key.as_str() {
            "_count" => match value.parse::<usize>() {
                Ok(n) if (1..=1000).contains(&n) => count = n,
                _ => return bad("_count must be between 1 and 1000"),
            },
            k if k == store.page_param() => match value.parse::<usize>() {
                Ok(n) if n >= 1 => page = n,
                _ => return bad("the page number must be 1 or more"),
            },
            "_since" => match instant::parse_range(value) {
                Some((start, _)) => {
                    since = Some(start);
                    kept.push((key.clone(), value.clone()));
                }
                None => return bad(format!("_since={value} is not an instant")),
            },
            "_format" | "_pretty" => kept.push((key.clone(), value.clone())),
            k if store.vendor_params().iter().any(|v| v == k) => kept.push((key.clone(), value.clone())),
            // `_at` and `_list` are not supported; other names are not history parameters.
            _ if strict => {
                return Answer::error(
                    StatusCode::BAD_REQUEST,
                    "not-supported",
                    format!("the history parameter {key} is not supported (Prefer: handling=strict)"),
                );
            }
            _ => {}
        }
    }
    let in_scope = |t: &str, id: &str| match scope {
        Scope::System => true,
        Scope::Type(st) => st == t,
        Scope::Instance(st, sid) => st == t && sid == id,
    };
    let all: Vec<(&str, &str, &super::store::Version)> = data
        .log
        .iter()
        .rev()
        .filter(|(t, id, _)| in_scope(t, id))
        .filter_map(|(t, id, n)| data.version(t, id, *n).map(|v| (t.as_str(), id.as_str(), v)))
        .filter(|(_, _, v)| since.is_none_or(|s| v.updated >= s))
        .collect();
    let total = all.len();
    let base = store.base();
    let path = match scope {
        Scope::System => format!("{base}/_history"),
        Scope::Type(t) => format!("{base}/{t}/_history"),
        Scope::Instance(t, id) => format!("{base}/{t}/{id}/_history"),
    };
    let link = |p: usize| {
        let mut q = form_urlencoded::Serializer::new(String::new());
        q.extend_pairs(&kept);
        q.append_pair("_count", &count.to_string());
        q.append_pair(store.page_param(), &p.to_string());
        format!("{path}?{}", q.finish())
    };
    let Some(skip) = (page - 1).checked_mul(count) else {
        return bad("the page number is out of range");
    };
    let last = total.div_ceil(count).max(1);
    let mut links =
        vec![json!({"relation": "self", "url": link(page)}), json!({"relation": "first", "url": link(1)})];
    if page > 1 {
        links.push(json!({"relation": "previous", "url": link((page - 1).min(last))}));
    }
    if skip.saturating_add(count) < total {
        links.push(json!({"relation": "next", "url": link(page.saturating_add(1))}));
    }
    links.push(json!({"relation": "last", "url": link(last)}));
    let entries: Vec<Value> = all
        .iter()
        .skip(skip)
        .take(count)
        .map(|(t, id, v)| {
            // A create's request is `POST [type]`; every other interaction names the instance.
            let url = if v.kind.method() == "POST" { (*t).to_owned() } else { format!("{t}/{id}") };
            let mut entry = json!({
                "fullUrl": format!("{base}/{t}/{id}"),
                "request": {"method": v.kind.method(), "url": url},
                "response": {
                    "status": v.kind.status(),
                    "etag": etag(v.number),
                    "lastModified": instant::format(v.updated),
                }
            });
            if let Some(resource) = &v.resource {
                entry["resource"] = resource.clone();
            }
            entry
        })
        .collect();
    let mut bundle = json!({"resourceType": "Bundle", "type": "history", "total": total, "link": links});
    if !entries.is_empty() {
        bundle["entry"] = Value::Array(entries);
    }
    Answer::ok(bundle)
}
