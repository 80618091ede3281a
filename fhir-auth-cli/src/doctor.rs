//! `fhir-auth doctor`: what the server really does, probed with a handful of
//! requests (one token, the CapabilityStatement, a one-entry search, the same
//! search with a deliberately wrong bearer, the SMART configuration), and what to
//! configure where it differs from the defaults.
//!
//! The probes are made by hand on the connection's own HTTP client, with the
//! vendor's headers and query parameters, because the point is to see what the
//! library would smooth over: the raw `expires_in`, the status and challenge of
//! a refusal, `Retry-After`, the `Date` header. Nothing is retried but a 429 or
//! 503 that says when (once, and only for a short wait): the doctor must not
//! hammer a server that is already struggling.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use auth_core::challenge::challenges;
use auth_core::endpoint::{check_url, read_capped, retry_after};
use auth_core::token::jwt_claims;
use auth_core::{Error, Token};
use http::header::{ACCEPT, AUTHORIZATION, DATE, HeaderValue};
use serde::Serialize;
use serde_json::{Map, Value, json};
use url::Url;

use crate::commands::issued_expired;
use crate::connect::{Connection, shown};
use crate::deadline;
use crate::error::CliError;
use crate::output::{Style, out, out_json};

/// Bodies the doctor reads are small (a CapabilityStatement is the largest).
const MAX_BODY: usize = 4 * 1024 * 1024;
/// The longest `Retry-After` the doctor waits out before its one retry.
const LONGEST_WAIT: Duration = Duration::from_secs(5);
/// The bearer of the rejection probe: obviously not a token, and no secret.
const WRONG_TOKEN: &str = "fhir-auth-doctor-deliberately-wrong-token";

/// What `expires_in` is read as, and on what evidence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
enum Unit {
    Seconds,
    Milliseconds,
    Absent,
}

/// Everything the doctor found; `--json` prints it as it is.
#[derive(Debug, Serialize)]
struct Profile {
    provider: String,
    fhir_base: Option<String>,
    /// Why no token was obtained, when none was.
    token_error: Option<String>,
    token_type: Option<String>,
    /// `expires_in` as stated.
    expires_in: Option<f64>,
    expires_in_unit: Unit,
    /// `jwt_exp` (a JWT's `exp` confirmed it), `magnitude` (no JWT: a value over a
    /// day read as milliseconds), `rfc6749` (no JWT: seconds, as the RFC says).
    expires_in_unit_basis: Option<&'static str>,
    /// Which JWT has an `exp`: `access_token` or `id_token`.
    jwt_exp_from: Option<&'static str>,
    /// From arrival to the JWT `exp`, on our clock.
    jwt_lifetime_seconds: Option<f64>,
    jwt_exp_agrees: Option<bool>,
    /// The lifetime the library settled on.
    token_lifetime_seconds: Option<u64>,
    /// Why the token was useless from the start, if it was.
    token_expired_on_issue: Option<String>,
    rejected_token_status: Option<u16>,
    rejected_token_scheme: Option<String>,
    rejected_token_error: Option<String>,
    rejected_token_error_description: Option<String>,
    /// A 429 or 503 seen during the probes: its status and `Retry-After`.
    retry_after: Option<Value>,
    /// Whether the `next` link of a `_count=1` search stays on the base's origin
    /// (null: no next link, or no searchset came back).
    next_links_same_origin: Option<bool>,
    next_link_origin: Option<String>,
    search_status: Option<u16>,
    fhir_version: Option<String>,
    /// The token URL the CapabilityStatement names (SMART `oauth-uris`).
    capability_token_url: Option<String>,
    smart_configuration: Option<Value>,
    smart_configuration_status: Option<u16>,
    /// Server clock minus ours, from `Date` (positive: the server is ahead).
    clock_skew_seconds: Option<i64>,
    suggested: Suggestion,
}

#[derive(Debug, Serialize)]
struct Suggestion {
    provider: String,
    /// Long option names and values (`<yours>` where only the operator knows).
    options: Map<String, Value>,
    /// Why, one line each; empty when the current settings fit.
    reasons: Vec<String>,
}

/// One answer, read whole.
struct Answer {
    status: u16,
    headers: http::HeaderMap,
    body: Vec<u8>,
    /// Server `Date` minus the middle of our request, in seconds.
    skew: Option<i64>,
}

impl Answer {
    fn json(&self) -> Option<Map<String, Value>> {
        // MSK labels its JSON text/plain: the body decides, not the header.
        serde_json::from_slice::<Value>(&self.body).ok()?.as_object().cloned()
    }
}

struct Prober<'a> {
    conn: &'a Connection,
    base: Url,
    retry_after: Option<Value>,
}

impl Prober<'_> {
    /// GET `path` under the base, with the vendor's headers and query, and `bearer`.
    async fn get(
        &mut self,
        path: &str,
        query: &[(&str, &str)],
        bearer: Option<&str>,
    ) -> Result<Answer, CliError> {
        let mut url = self.base.clone();
        url.set_path(&format!("{}/{path}", self.base.path().trim_end_matches('/')));
        {
            let mut pairs = url.query_pairs_mut();
            for (k, v) in self.conn.profile().expose_query().chain(query.iter().copied()) {
                pairs.append_pair(k, v);
            }
        }
        if url.query() == Some("") {
            url.set_query(None);
        }
        deadline::waiting_for(format!("the FHIR server at {}", shown(url.as_str())));
        let mut answer = self.send(&url, bearer).await?;
        if matches!(answer.status, 429 | 503) {
            let wait = retry_after(&answer.headers);
            self.retry_after.get_or_insert_with(|| {
                json!({
                    "status": answer.status,
                    "retry_after_seconds": wait.map(|w| w.as_secs_f64()),
                    "path": path,
                })
            });
            if let Some(wait) = wait.filter(|w| *w <= LONGEST_WAIT) {
                tokio::time::sleep(wait).await;
                answer = self.send(&url, bearer).await?;
            }
        }
        Ok(answer)
    }

    async fn send(&self, url: &Url, bearer: Option<&str>) -> Result<Answer, CliError> {
        let mut request = self
            .conn
            .api_http()
            .get(url.clone())
            .headers(self.conn.profile().headers().clone())
            .header(ACCEPT, "application/fhir+json, application/json;q=0.9");
        if let Some(bearer) = bearer {
            let mut value = HeaderValue::from_str(&format!("Bearer {bearer}"))
                .map_err(|_| CliError::config("the token cannot be sent in a header"))?;
            value.set_sensitive(true);
            request = request.header(AUTHORIZATION, value);
        }
        let sent = SystemTime::now();
        let response = request.send().await.map_err(|e| Error::transport("doctor probe", e))?;
        let received = SystemTime::now();
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = read_capped(response, MAX_BODY, "doctor probe").await?.to_vec();
        let skew = headers.get(DATE).and_then(|v| v.to_str().ok()).and_then(httpdate_secs).map(|server| {
            let middle = (secs(sent) + secs(received)) / 2.0;
            // `Date` has whole seconds: compare with ours to the second.
            (server - middle.floor()) as i64
        });
        Ok(Answer { status, headers, body, skew })
    }
}

fn secs(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs_f64()
}

fn httpdate_secs(value: &str) -> Option<f64> {
    // IMF-fixdate (RFC 9110 §5.6.7), what every server sends.
    let parsed = jiff::fmt::rfc2822::parse(value).ok()?;
    Some(parsed.timestamp().as_second() as f64)
}

/// Server text made safe to print: no control characters, bounded.
fn clean(text: &str) -> String {
    text.chars().filter(|c| !c.is_control()).take(200).collect()
}

/// How `expires_in` reads against the token's JWT `exp`, if any.
fn read_unit(token: &Token, profile: &mut Profile) {
    let issued = secs(token.issued_at());
    let exp = [
        ("access_token", Some(token.access_token().expose_secret())),
        ("id_token", token.id_token().map(|t| t.expose_secret())),
    ]
    .into_iter()
    .find_map(|(which, value)| Some((which, value.and_then(auth_core::token::jwt_exp)?)));
    if let Some((which, exp)) = exp {
        profile.jwt_exp_from = Some(which);
        profile.jwt_lifetime_seconds = Some(((exp - issued) * 10.0).round() / 10.0);
    }
    let Some(stated) = token.stated_expires_in() else {
        profile.expires_in_unit = Unit::Absent;
        return;
    };
    // Network time and whole-second `exp` values: a few seconds, or a few percent.
    let close = |a: f64, b: f64| (a - b).abs() <= 5.0_f64.max(b.abs() * 0.05);
    match profile.jwt_lifetime_seconds {
        Some(jwt) if jwt > 0.0 && stated > 0.0 => {
            if close(stated, jwt) {
                (profile.expires_in_unit, profile.jwt_exp_agrees) = (Unit::Seconds, Some(true));
                profile.expires_in_unit_basis = Some("jwt_exp");
            } else if close(stated / 1000.0, jwt) {
                (profile.expires_in_unit, profile.jwt_exp_agrees) = (Unit::Milliseconds, Some(true));
                profile.expires_in_unit_basis = Some("jwt_exp");
            } else {
                (profile.expires_in_unit, profile.jwt_exp_agrees) = (Unit::Seconds, Some(false));
                profile.expires_in_unit_basis = Some("rfc6749");
            }
        }
        jwt => {
            // An `exp` already passed disagrees with any positive `expires_in`.
            profile.jwt_exp_agrees = jwt.map(|j| j <= 0.0 && stated <= 0.0);
            // Without a JWT, only the size can tell: more than a day in seconds is
            // unusual, and read as milliseconds it is a usual lifetime.
            if jwt.is_none() && stated > 86_400.0 && stated / 1000.0 <= 86_400.0 {
                profile.expires_in_unit = Unit::Milliseconds;
                profile.expires_in_unit_basis = Some("magnitude");
            } else {
                profile.expires_in_unit = Unit::Seconds;
                profile.expires_in_unit_basis = Some("rfc6749");
            }
        }
    }
}

/// `fhir-auth doctor [--json]`.
pub(crate) async fn run(conn: &Connection, json_out: bool) -> Result<(), CliError> {
    let base_text = conn.fhir_base()?.to_owned();
    // The rule every API request follows: no token over plain http to another host.
    let base = check_url(&base_text, false)?;
    let mut profile = Profile {
        provider: conn.provider.clone(),
        fhir_base: Some(shown(&base_text)),
        token_error: None,
        token_type: None,
        expires_in: None,
        expires_in_unit: Unit::Absent,
        expires_in_unit_basis: None,
        jwt_exp_from: None,
        jwt_lifetime_seconds: None,
        jwt_exp_agrees: None,
        token_lifetime_seconds: None,
        token_expired_on_issue: None,
        rejected_token_status: None,
        rejected_token_scheme: None,
        rejected_token_error: None,
        rejected_token_error_description: None,
        retry_after: None,
        next_links_same_origin: None,
        next_link_origin: None,
        search_status: None,
        fhir_version: None,
        capability_token_url: None,
        smart_configuration: None,
        smart_configuration_status: None,
        clock_skew_seconds: None,
        suggested: Suggestion { provider: conn.provider.clone(), options: Map::new(), reasons: Vec::new() },
    };

    // 1. A token, and what its response said about its lifetime.
    let mut failure = None;
    let token = match conn.token().await {
        Ok(token) => Some(token),
        Err(e) => {
            // Probing goes on without one: an unknown server still shows its
            // discovery document and how it refuses a token.
            profile.token_error = Some(clean(&e.to_string()));
            failure = Some(e);
            None
        }
    };
    let mut id_token_claims = None;
    let mut access_claims = None;
    if let Some(token) = &token {
        profile.token_type = Some(token.token_type().to_owned());
        profile.expires_in = token.stated_expires_in();
        profile.token_lifetime_seconds = Some(token.lifetime().as_secs());
        profile.token_expired_on_issue = issued_expired(token);
        read_unit(token, &mut profile);
        access_claims = jwt_claims(token.access_token().expose_secret());
        id_token_claims = token.id_token().and_then(|t| jwt_claims(t.expose_secret()));
    }
    let bearer = token.as_ref().map(|t| t.access_token().expose_secret().to_owned());

    let mut prober = Prober { conn, base: base.clone(), retry_after: None };
    let mut skews = Vec::new();

    // 2. The CapabilityStatement.
    let metadata = prober.get("metadata", &[], bearer.as_deref()).await?;
    skews.extend(metadata.skew);
    if let Some(statement) =
        metadata.json().filter(|m| m.get("resourceType") == Some(&json!("CapabilityStatement")))
    {
        profile.fhir_version = statement.get("fhirVersion").and_then(Value::as_str).map(clean);
        profile.capability_token_url = capability_token_url(&statement).map(|u| shown(&u));
    }

    // 3. A search of one entry per page: where its next link points.
    if bearer.is_some() {
        let search = prober.get("Patient", &[("_count", "1")], bearer.as_deref()).await?;
        skews.extend(search.skew);
        profile.search_status = Some(search.status);
        let next = search
            .json()
            .filter(|b| b.get("resourceType") == Some(&json!("Bundle")))
            .and_then(|b| next_link(&b));
        if let Some(next) = next.and_then(|n| base.join(&n).ok()) {
            let same = next.origin() == base.origin();
            profile.next_links_same_origin = Some(same);
            if !same {
                profile.next_link_origin = Some(next.origin().ascii_serialization());
            }
        }
    }

    // 4. The same search with a deliberately wrong token.
    let refused = prober.get("Patient", &[("_count", "1")], Some(WRONG_TOKEN)).await?;
    skews.extend(refused.skew);
    profile.rejected_token_status = Some(refused.status);
    let challenge = challenges(&refused.headers).into_iter().next();
    if let Some(c) = challenge {
        profile.rejected_token_scheme = Some(clean(&c.scheme));
        profile.rejected_token_error = c.error().map(clean);
        profile.rejected_token_error_description = c.error_description().map(clean);
    }

    // 5. The SMART configuration: public by the specification, so no token.
    let smart = prober.get(".well-known/smart-configuration", &[], None).await?;
    skews.extend(smart.skew);
    profile.smart_configuration_status = Some(smart.status);
    if (200..300).contains(&smart.status)
        && let Some(doc) = smart.json().filter(|d| d.contains_key("token_endpoint"))
    {
        let pick = |k: &str| doc.get(k).cloned().unwrap_or(Value::Null);
        profile.smart_configuration = Some(json!({
            "token_endpoint": doc.get("token_endpoint").and_then(Value::as_str).map(shown),
            "token_endpoint_auth_methods_supported": pick("token_endpoint_auth_methods_supported"),
            "token_endpoint_auth_signing_alg_values_supported": pick("token_endpoint_auth_signing_alg_values_supported"),
            "grant_types_supported": pick("grant_types_supported"),
        }));
    }
    profile.retry_after = prober.retry_after.take();
    // The median of the answers' skews: one slow answer must not decide it.
    skews.sort_unstable();
    profile.clock_skew_seconds = skews.get(skews.len() / 2).copied();

    suggest(&mut profile, access_claims.as_ref(), id_token_claims.as_ref(), token.as_deref(), conn);
    if json_out {
        out_json(&profile);
    } else {
        print_profile(&profile);
    }
    // The profile is printed either way; the exit code still says whether the
    // credentials work.
    match (failure, profile.token_expired_on_issue) {
        (Some(e), _) => Err(e),
        (None, Some(problem)) => Err(CliError::Auth(problem)),
        (None, None) => Ok(()),
    }
}

fn capability_token_url(statement: &Map<String, Value>) -> Option<String> {
    let rest = statement.get("rest")?.as_array()?;
    rest.iter()
        .filter_map(|r| r.pointer("/security/extension")?.as_array())
        .flatten()
        .filter(|e| e.get("url").and_then(Value::as_str).is_some_and(|u| u.ends_with("/oauth-uris")))
        .filter_map(|e| e.get("extension")?.as_array())
        .flatten()
        .find(|e| e.get("url") == Some(&json!("token")))
        .and_then(|e| e.get("valueUri")?.as_str().map(str::to_owned))
}

fn next_link(bundle: &Map<String, Value>) -> Option<String> {
    bundle
        .get("link")?
        .as_array()?
        .iter()
        .find(|l| l.get("relation") == Some(&json!("next")))
        .and_then(|l| l.get("url")?.as_str().map(str::to_owned))
}

/// Which vendor the answers look like, from what each is known to send.
fn fingerprint(
    profile: &Profile,
    access: Option<&Map<String, Value>>,
    id: Option<&Map<String, Value>>,
    token: Option<&Token>,
    conn: &Connection,
) -> Option<&'static str> {
    let smart_only = profile.smart_configuration.as_ref().is_some_and(|s| {
        let methods = s["token_endpoint_auth_methods_supported"].as_array().cloned().unwrap_or_default();
        methods.iter().any(|m| m == "private_key_jwt")
            && !methods.iter().any(|m| m == "client_secret_basic" || m == "client_secret_post")
    });
    if id.is_some_and(|c| c.keys().any(|k| k.starts_with("urn:santedb:")))
        || (profile.rejected_token_status == Some(403)
            && profile.rejected_token_scheme.as_deref() == Some("bearer"))
    {
        return Some("santedb");
    }
    if access.is_some_and(|c| c.contains_key("authorised_apis")) {
        return Some("graphnet");
    }
    if token.is_some_and(|t| t.extra().contains_key("consented_on")) {
        return Some("msk");
    }
    if smart_only {
        return Some("smart");
    }
    if conn.token_url().is_some_and(|u| u.trim_end_matches('/').ends_with("/auth/token"))
        && profile.expires_in_unit == Unit::Absent
    {
        return Some("aidbox");
    }
    None
}

/// What to configure: the vendor the answers point to, and each difference from
/// the defaults that the configuration should know about.
fn suggest(
    profile: &mut Profile,
    access: Option<&Map<String, Value>>,
    id: Option<&Map<String, Value>>,
    token: Option<&Token>,
    conn: &Connection,
) {
    let current = profile.provider.clone();
    let vendor = fingerprint(profile, access, id, token, conn);
    let mut reasons = Vec::new();
    let mut options = Map::new();
    let provider = match vendor {
        Some(v) if v != current => {
            reasons.push(format!("the answers look like {v}: --provider {v} knows its quirks"));
            match v {
                "msk" => {
                    options.insert("partner-id".into(), json!("<yours>"));
                    options.insert("research-study".into(), json!("<yours>"));
                }
                "graphnet" => {
                    options.insert("subscription-key".into(), json!("<yours>"));
                }
                "smart" => {
                    options.insert("private-key".into(), json!("<your PEM file>"));
                    options.insert("key-id".into(), json!("<yours>"));
                    let algs = profile.smart_configuration.as_ref().and_then(|s| {
                        s["token_endpoint_auth_signing_alg_values_supported"].as_array().cloned()
                    });
                    let alg = algs
                        .unwrap_or_default()
                        .into_iter()
                        .find(|a| a == "ES384" || a == "RS384")
                        .unwrap_or_else(|| json!("ES384"));
                    options.insert("alg".into(), alg);
                }
                _ => {}
            }
            v.to_owned()
        }
        _ => current.clone(),
    };
    if profile.expires_in_unit == Unit::Milliseconds {
        if provider == "santedb" {
            options.insert("santedb-version".into(), json!("2"));
        }
        reasons.push(if provider == "santedb" {
            "expires_in counts milliseconds, as SanteDB 2.x does: --santedb-version 2".to_owned()
        } else {
            "expires_in counts milliseconds: the library reads it so with \
             ExpiryPolicy::with_unit(ExpiresInUnit::Milliseconds) (in the CLI, only --provider santedb \
             --santedb-version 2 does)"
                .to_owned()
        });
    }
    if profile.expires_in_unit == Unit::Absent
        && profile.jwt_exp_from.is_none()
        && profile.token_type.is_some()
    {
        reasons.push(
            "the token's lifetime is stated nowhere (no expires_in, no JWT exp): it is taken to live \
             5 minutes and renewed when the API rejects it"
                .to_owned(),
        );
    }
    if profile.jwt_exp_agrees == Some(false) {
        reasons.push(
            "expires_in and the JWT exp disagree: when expires_in is the one to trust, \
             ExpiryPolicy::with_expires_in_first(true) (what --provider aidbox does)"
                .to_owned(),
        );
    }
    if let Some(problem) = &profile.token_expired_on_issue {
        reasons.push(format!("{problem}: check the identity provider's clock and token settings"));
    }
    if let Some(skew) = profile.clock_skew_seconds.filter(|s| s.abs() > 30) {
        reasons.push(format!(
            "the server's clock is {} s {} ours: JWT exp times are off by as much",
            skew.abs(),
            if skew > 0 { "ahead of" } else { "behind" }
        ));
    }
    match (profile.rejected_token_status, profile.rejected_token_error.as_deref()) {
        (Some(s), _) if (200..300).contains(&s) => reasons.push(format!(
            "a deliberately wrong token was accepted (HTTP {s}): this endpoint does not check tokens"
        )),
        (Some(401), _) | (Some(_), Some("invalid_token")) => {}
        (Some(s), _) => reasons.push(format!(
            "a wrong token gets HTTP {s} without WWW-Authenticate error=\"invalid_token\": the client \
             cannot tell it from a refusal a new token would not cure, so it does not replay"
        )),
        (None, _) => {}
    }
    if profile.next_links_same_origin == Some(false) {
        reasons.push(format!(
            "paging links lead to another origin ({}): the token is not sent there",
            profile.next_link_origin.as_deref().unwrap_or("?")
        ));
    }
    if profile.token_error.is_some() && vendor.is_none() {
        reasons.push("no token was obtained: check the credentials and the token URL".to_owned());
    }
    profile.suggested = Suggestion { provider, options, reasons };
}

fn print_profile(p: &Profile) {
    let s = Style::stdout();
    let row = |name: &str, value: String| out(&format!("  {name:<15} {value}"));
    out(&s.bold(&format!(
        "fhir-auth doctor: --provider {} at {}",
        p.provider,
        p.fhir_base.as_deref().unwrap_or("?")
    )));
    match &p.token_error {
        Some(e) => row("token", s.red(&format!("none: {e}"))),
        None => {
            let stated = match p.expires_in {
                Some(n) => format!("expires_in {n} → {}", unit_name(p.expires_in_unit)),
                None => "no expires_in".to_owned(),
            };
            let jwt = match (p.jwt_exp_from, p.jwt_lifetime_seconds, p.jwt_exp_agrees) {
                (Some(from), Some(l), Some(agrees)) => {
                    format!(
                        "; the {} exp says {l:.0} s: {}",
                        from.replace('_', " "),
                        if agrees { "agrees" } else { "disagrees" }
                    )
                }
                (Some(from), Some(l), None) => format!("; the {} exp says {l:.0} s", from.replace('_', " ")),
                _ => "; not a JWT".to_owned(),
            };
            row("token", format!("{}, {stated}{jwt}", p.token_type.as_deref().unwrap_or("?")));
            if let Some(problem) = &p.token_expired_on_issue {
                row("", s.red(problem));
            }
        }
    }
    let refusal = match p.rejected_token_status {
        Some(status) => match (&p.rejected_token_scheme, &p.rejected_token_error) {
            (Some(scheme), Some(error)) => {
                format!("HTTP {status}, WWW-Authenticate {scheme} error=\"{error}\"")
            }
            (Some(scheme), None) => format!("HTTP {status}, WWW-Authenticate {scheme} without an error"),
            _ => format!("HTTP {status}, no WWW-Authenticate"),
        },
        None => "not probed".to_owned(),
    };
    row("wrong token", refusal);
    row(
        "Retry-After",
        match &p.retry_after {
            Some(r) => match r["retry_after_seconds"].as_f64() {
                Some(secs) => format!("HTTP {} came with Retry-After: {secs} s", r["status"]),
                None => format!("HTTP {} came without Retry-After", r["status"]),
            },
            None => "not observed (no 429 or 503 during the probe)".to_owned(),
        },
    );
    row(
        "paging",
        match (p.next_links_same_origin, &p.next_link_origin) {
            (Some(true), _) => "next links stay on the server's origin".to_owned(),
            (Some(false), origin) => {
                format!("next links lead to {}", origin.as_deref().unwrap_or("another origin"))
            }
            (None, _) => match p.search_status {
                Some(status) => format!("no next link to judge (a _count=1 search answered HTTP {status})"),
                None => "not probed (no token)".to_owned(),
            },
        },
    );
    row(
        "FHIR version",
        p.fhir_version.clone().unwrap_or_else(|| "unknown (no CapabilityStatement)".to_owned()),
    );
    row(
        "SMART config",
        match &p.smart_configuration {
            Some(c) => format!(
                "token endpoint {}, auth methods {}",
                c["token_endpoint"].as_str().unwrap_or("?"),
                c["token_endpoint_auth_methods_supported"]
            ),
            None => format!("none (HTTP {})", p.smart_configuration_status.unwrap_or(0)),
        },
    );
    row(
        "clock skew",
        match p.clock_skew_seconds {
            Some(s) => format!("{s} s (from the Date header; positive: the server is ahead)"),
            None => "unknown (no Date header)".to_owned(),
        },
    );
    let options: String = p
        .suggested
        .options
        .iter()
        .map(|(k, v)| format!(" --{k} {}", v.as_str().map(str::to_owned).unwrap_or_else(|| v.to_string())))
        .collect();
    out(&s.bold(&format!("suggested: --provider {}{options}", p.suggested.provider)));
    if p.suggested.reasons.is_empty() {
        out(&s.green("  the current settings fit what the server does"));
    }
    for reason in &p.suggested.reasons {
        out(&format!("  - {reason}"));
    }
}

fn unit_name(unit: Unit) -> &'static str {
    match unit {
        Unit::Seconds => "seconds",
        Unit::Milliseconds => "milliseconds",
        Unit::Absent => "absent",
    }
}
