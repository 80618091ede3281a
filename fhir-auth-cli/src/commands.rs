//! What reads: `token`, `read`, `search`, `history`.

use std::time::{SystemTime, UNIX_EPOCH};

use auth_fhir::{Bundle, FhirClient, History, JsonResource, SearchParams};
use futures_util::TryStreamExt;
use http::{HeaderMap, Method};
use serde_json::{Map, Value, json};

use crate::connect::Connection;
use crate::error::CliError;
use auth_core::Token;
use auth_core::token::{jwt_claims, jwt_exp};

use crate::output::{Progress, Style, out, out_json, rfc3339};

/// `fhir-auth token`: one fresh token (the store is in memory: nothing is reused
/// across invocations), described; the value only with `--reveal`.
pub(crate) async fn token(conn: &Connection, json_out: bool, reveal: bool) -> Result<(), CliError> {
    let token = conn.token().await?;
    // The library floors such a lifetime (a service must not refetch in a loop),
    // but an operator asking "do my credentials work?" must hear the truth.
    if let Some(problem) = issued_expired(&token) {
        return Err(CliError::Auth(problem));
    }
    let now = SystemTime::now();
    // The lifetime as granted, not the manager's refresh point.
    let expires_in = token.remaining(now).as_secs();
    let mut report = Map::new();
    report.insert("provider".into(), json!(conn.provider));
    report.insert("token_type".into(), json!(token.token_type()));
    report.insert("expires_at".into(), json!(rfc3339(token.expires_at())));
    report.insert("expires_in".into(), json!(expires_in));
    report.insert("scope".into(), json!(token.scope()));
    // The RFC 7638 thumbprint of the key the token is bound to (DPoP).
    let jkt = conn.auth.dpop().map(|d| d.thumbprint().to_owned());
    if let Some(jkt) = &jkt {
        report.insert("jkt".into(), json!(jkt));
    }
    if let Some(claims) = jwt_claims(token.access_token().expose_secret()) {
        report.insert("claims".into(), Value::Object(claims));
    }
    if let Some(claims) = token.id_token().and_then(|t| jwt_claims(t.expose_secret())) {
        report.insert("id_token_claims".into(), Value::Object(claims));
    }
    if reveal {
        report.insert("access_token".into(), json!(token.access_token().expose_secret()));
    }
    if json_out {
        out_json(&report);
        return Ok(());
    }
    let s = Style::stdout();
    out(&format!("{} {} token from {}", s.green("✓"), token.token_type(), conn.provider));
    out(&format!("  expires at  {} (in {expires_in} s)", rfc3339(token.expires_at())));
    out(&format!("  scope       {}", token.scope().unwrap_or("(not stated)")));
    if let Some(jkt) = &jkt {
        out(&format!("  bound to    DPoP key {jkt}"));
    }
    for key in ["claims", "id_token_claims"] {
        if let Some(Value::Object(claims)) = report.get(key) {
            out(&format!("  {}", key.replace('_', " ")));
            for (k, v) in claims {
                out(&format!("    {k:<12} {v}"));
            }
        }
    }
    if reveal {
        out(&format!("  access token {}", token.access_token().expose_secret()));
    } else {
        out(&s.dim("  (the token itself is not shown; --reveal prints it)"));
    }
    Ok(())
}

/// Why `token` was unusable from the start, if it was: `expires_in` of zero or
/// less, or a JWT `exp` (access or id token) at or before the moment it arrived.
pub(crate) fn issued_expired(token: &Token) -> Option<String> {
    if let Some(stated) = token.stated_expires_in().filter(|n| *n <= 0.0) {
        return Some(format!("the server issued a token that is already expired (expires_in: {stated})"));
    }
    let issued = token.issued_at().duration_since(UNIX_EPOCH).unwrap_or_default().as_secs_f64();
    let tokens = [
        ("access token", Some(token.access_token().expose_secret())),
        ("id token", token.id_token().map(|t| t.expose_secret())),
    ];
    for (which, value) in tokens {
        if let Some(exp) = value.and_then(jwt_exp).filter(|exp| *exp <= issued) {
            return Some(format!(
                "the {which} is a JWT whose exp ({}) passed {:.0} s before it arrived: the server \
                 issued an expired token, or its clock and ours disagree by that much",
                jiff::Timestamp::from_second(exp as i64)
                    .map(|t| t.to_string())
                    .unwrap_or_else(|_| exp.to_string()),
                issued - exp
            ));
        }
    }
    None
}

pub(crate) fn check_type(resource_type: &str) -> Result<(), CliError> {
    let ok = resource_type.chars().next().is_some_and(|c| c.is_ascii_uppercase())
        && resource_type.chars().all(|c| c.is_ascii_alphanumeric());
    if ok { Ok(()) } else { Err(CliError::config(format!("`{resource_type}` is not a FHIR resource type"))) }
}

/// `fhir-auth read Type/id`.
pub(crate) async fn read(conn: &Connection, reference: &str) -> Result<(), CliError> {
    let (resource_type, id) = reference
        .split_once('/')
        .filter(|(t, id)| !t.is_empty() && !id.is_empty() && !id.contains('/'))
        .ok_or_else(|| CliError::config(format!("`{reference}` is not a reference: expected <Type>/<id>")))?;
    check_type(resource_type)?;
    let resource = conn.fhir().await?.read_json(resource_type, id).await?;
    out_json(&resource);
    Ok(())
}

/// `fhir-auth search Type name=value … [--all]`.
pub(crate) async fn search(
    conn: &Connection,
    resource_type: &str,
    params: &[String],
    all: bool,
    json_out: bool,
) -> Result<(), CliError> {
    check_type(resource_type)?;
    let fhir = conn.fhir().await?;
    let mut url = fhir.url(&[resource_type])?;
    {
        let mut query = url.query_pairs_mut();
        for p in params {
            let (k, v) = p.split_once('=').filter(|(k, _)| !k.is_empty()).ok_or_else(|| {
                CliError::config(format!("`{p}` is not a search parameter: expected name=value"))
            })?;
            query.append_pair(k, v);
        }
    }
    if url.query() == Some("") {
        url.set_query(None);
    }
    let mut progress = Progress::new();
    progress.update("searching…");
    let mut bundle: Bundle<JsonResource> =
        fhir.send(Method::GET, url, HeaderMap::new(), None).await?.json()?;
    let mut pages = 1;
    if all {
        let mut current = bundle.clone();
        // A server whose next link loops must not keep us (and our memory) forever.
        let mut visited: std::collections::HashSet<String> =
            current.next_link().map(str::to_owned).into_iter().collect();
        while let Some(next) = fetch_next(&fhir, &current).await? {
            pages += 1;
            if pages > MAX_PAGES {
                return Err(CliError::fhir_paging(format!("more than {MAX_PAGES} pages; stopped")));
            }
            if let Some(link) = next.next_link()
                && !visited.insert(link.to_owned())
            {
                return Err(CliError::fhir_paging(
                    "the server's next link loops back to a page already read",
                ));
            }
            bundle.entry.extend(next.entry.iter().cloned());
            progress.update(&format!("page {pages}: {} entries so far…", bundle.entry.len()));
            current = next;
        }
        // The merged bundle is the whole result: its paging links no longer apply.
        bundle.link.retain(|l| l.relation.as_deref() == Some("self"));
    }
    progress.clear();
    if json_out {
        out_json(&bundle);
        return Ok(());
    }
    let s = Style::stdout();
    for entry in &bundle.entry {
        let Some(resource) = entry.typed() else { continue };
        let id = resource.0.get("id").and_then(Value::as_str).unwrap_or("?");
        out(&format!("{}/{id}  {}", s.cyan(resource_type), summary(&resource.0)));
    }
    let total = bundle.total.map(|t| format!(" of {t}")).unwrap_or_default();
    let more = if bundle.next_link().is_some() { " (more pages: --all)" } else { "" };
    out(&s.dim(&format!("{} entries{total}, {pages} page(s){more}", bundle.entry.len())));
    Ok(())
}

/// The most pages `search --all` follows.
const MAX_PAGES: usize = 1000;

async fn fetch_next(
    fhir: &FhirClient,
    bundle: &Bundle<JsonResource>,
) -> Result<Option<Bundle<JsonResource>>, CliError> {
    Ok(fhir.next_page(bundle).await?)
}

/// A one-line description of a resource: a Patient's name, else its type.
fn summary(resource: &Map<String, Value>) -> String {
    let name = resource.get("name").and_then(Value::as_array).and_then(|n| n.first());
    match name {
        Some(n) => {
            let given: Vec<&str> = n
                .get("given")
                .and_then(Value::as_array)
                .map(|g| g.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            let family = n.get("family").and_then(Value::as_str).unwrap_or("");
            format!("{} {family}", given.join(" ")).trim().to_owned()
        }
        None => String::new(),
    }
}

/// `fhir-auth history Type/id | Type [--all] [--json]`: newest version first.
pub(crate) async fn history(
    conn: &Connection,
    target: &str,
    all: bool,
    json_out: bool,
) -> Result<(), CliError> {
    let of = match target.split_once('/') {
        None => {
            check_type(target)?;
            History::of_type(target)
        }
        Some((resource_type, id)) if !id.is_empty() && !id.contains('/') => {
            check_type(resource_type)?;
            History::instance(resource_type, id)
        }
        Some(_) => {
            return Err(CliError::config(format!("`{target}` is neither <Type>/<id> nor <Type>")));
        }
    };
    let fhir = conn.fhir().await?;
    let mut progress = Progress::new();
    progress.update("reading history…");
    let mut pages = fhir.history_pages::<JsonResource>(&of, &SearchParams::new());
    let mut bundle: Bundle<JsonResource> = match pages.try_next().await? {
        Some(first) => first,
        None => return Err(CliError::fhir_paging("the server sent no history Bundle")),
    };
    let mut count = 1;
    if all {
        while let Some(page) = pages.try_next().await? {
            count += 1;
            bundle.entry.extend(page.entry);
            progress.update(&format!("page {count}: {} versions so far…", bundle.entry.len()));
        }
        // The merged bundle is the whole history: its paging links no longer apply.
        bundle.link.retain(|l| l.relation.as_deref() == Some("self"));
    }
    progress.clear();
    if json_out {
        out_json(&bundle);
        return Ok(());
    }
    let s = Style::stdout();
    for entry in &bundle.entry {
        let request = entry.request.as_ref();
        let method = request.and_then(|r| r.method.as_deref()).unwrap_or("");
        let (kind, id, version, updated) = match entry.typed() {
            Some(r) => {
                let meta = r.0.get("meta");
                (
                    r.0.get("resourceType").and_then(Value::as_str).unwrap_or("?").to_owned(),
                    r.0.get("id").and_then(Value::as_str).unwrap_or("?").to_owned(),
                    meta.and_then(|m| m.get("versionId")).and_then(Value::as_str).unwrap_or("?").to_owned(),
                    meta.and_then(|m| m.get("lastUpdated")).and_then(Value::as_str).unwrap_or("").to_owned(),
                )
            }
            // A deleted version has no resource: its request URL names it.
            None => {
                let url = request.and_then(|r| r.url.as_deref()).unwrap_or("?");
                (url.to_owned(), String::new(), String::new(), String::new())
            }
        };
        let name = if id.is_empty() { kind } else { format!("{kind}/{id}") };
        let method = if method.is_empty() { String::new() } else { format!("  {method}") };
        out(&format!("{}  v{version}  {updated}{method}", s.cyan(&name)));
    }
    let more = if bundle.next_link().is_some() { " (more pages: --all)" } else { "" };
    out(&s.dim(&format!("{} versions, {count} page(s){more}", bundle.entry.len())));
    Ok(())
}
