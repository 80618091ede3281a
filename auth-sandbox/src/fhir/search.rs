//! Search (search.html): the parameters each type supports, how a query is read
//! and refused, matching, sorting, paging, `_include` / `_revinclude`, `_summary`,
//! `_elements`, and the searchset Bundle. Conditional interactions (create, update,
//! delete, patch) and conditional references use the same matching with stricter
//! reading ([`criteria`]).

use std::collections::BTreeSet;

use axum::http::StatusCode;
use serde_json::{Map, Value, json};

use super::exchange::{Answer, Prefer};
use super::store::{Data, Version};
use super::{FhirStore, instant, types};

/// A search parameter's type (search.html#ptypes), as far as this server goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ParamType {
    Id,
    Token,
    String,
    Reference,
    Date,
    Uri,
}

impl ParamType {
    pub(crate) fn code(self) -> &'static str {
        match self {
            ParamType::Id | ParamType::Token => "token",
            ParamType::String => "string",
            ParamType::Reference => "reference",
            ParamType::Date => "date",
            ParamType::Uri => "uri",
        }
    }
}

/// A search parameter: its name, type, the elements it reads (dotted paths, arrays
/// flattened at every step; choice types spelled out), and for a reference
/// parameter the one type it points to, if only one (`patient` → Patient).
#[derive(Debug)]
pub(crate) struct ParamDef {
    pub(crate) name: &'static str,
    pub(crate) kind: ParamType,
    pub(crate) paths: &'static [&'static str],
    pub(crate) target: Option<&'static str>,
}

const fn p(name: &'static str, kind: ParamType, paths: &'static [&'static str]) -> ParamDef {
    ParamDef { name, kind, paths, target: None }
}

const fn r(name: &'static str, paths: &'static [&'static str], target: Option<&'static str>) -> ParamDef {
    ParamDef { name, kind: ParamType::Reference, paths, target }
}

use ParamType::{Date, Id, String as Str, Token, Uri};

/// Parameters every resource type has (resource.html#search).
pub(crate) const COMMON: &[ParamDef] = &[
    p("_id", Id, &["id"]),
    p("_lastUpdated", Date, &["meta.lastUpdated"]),
    p("_tag", Token, &["meta.tag"]),
    p("_security", Token, &["meta.security"]),
    p("_profile", Uri, &["meta.profile"]),
    p("_source", Uri, &["meta.source"]),
];

const PATIENT: &[ParamDef] = &[
    p("name", Str, &["name"]),
    p("family", Str, &["name.family"]),
    p("given", Str, &["name.given"]),
    p("identifier", Token, &["identifier"]),
    p("gender", Token, &["gender"]),
    p("birthdate", Date, &["birthDate"]),
    p("active", Token, &["active"]),
    r("general-practitioner", &["generalPractitioner"], None),
    r("organization", &["managingOrganization"], Some("Organization")),
];

const OBSERVATION: &[ParamDef] = &[
    r("subject", &["subject"], None),
    r("patient", &["subject"], Some("Patient")),
    r("encounter", &["encounter"], Some("Encounter")),
    r("performer", &["performer"], None),
    p("code", Token, &["code"]),
    p("status", Token, &["status"]),
    p("category", Token, &["category"]),
    p("date", Date, &["effectiveDateTime", "effectivePeriod", "effectiveInstant"]),
    p("identifier", Token, &["identifier"]),
];

const CONDITION: &[ParamDef] = &[
    r("subject", &["subject"], None),
    r("patient", &["subject"], Some("Patient")),
    r("encounter", &["encounter"], Some("Encounter")),
    p("code", Token, &["code"]),
    p("clinical-status", Token, &["clinicalStatus"]),
    p("verification-status", Token, &["verificationStatus"]),
    p("category", Token, &["category"]),
    p("onset-date", Date, &["onsetDateTime", "onsetPeriod"]),
    p("identifier", Token, &["identifier"]),
];

const ENCOUNTER: &[ParamDef] = &[
    r("subject", &["subject"], None),
    r("patient", &["subject"], Some("Patient")),
    p("status", Token, &["status"]),
    p("class", Token, &["class"]),
    p("type", Token, &["type"]),
    p("date", Date, &["period"]),
    p("identifier", Token, &["identifier"]),
];

const PROCEDURE: &[ParamDef] = &[
    r("subject", &["subject"], None),
    r("patient", &["subject"], Some("Patient")),
    r("encounter", &["encounter"], Some("Encounter")),
    p("code", Token, &["code"]),
    p("status", Token, &["status"]),
    p("date", Date, &["performedDateTime", "performedPeriod"]),
    p("identifier", Token, &["identifier"]),
];

const DIAGNOSTIC_REPORT: &[ParamDef] = &[
    r("subject", &["subject"], None),
    r("patient", &["subject"], Some("Patient")),
    r("encounter", &["encounter"], Some("Encounter")),
    r("result", &["result"], Some("Observation")),
    p("code", Token, &["code"]),
    p("status", Token, &["status"]),
    p("category", Token, &["category"]),
    p("date", Date, &["effectiveDateTime", "effectivePeriod"]),
    p("identifier", Token, &["identifier"]),
];

const MEDICATION_REQUEST: &[ParamDef] = &[
    r("subject", &["subject"], None),
    r("patient", &["subject"], Some("Patient")),
    r("encounter", &["encounter"], Some("Encounter")),
    p("code", Token, &["medicationCodeableConcept"]),
    p("status", Token, &["status"]),
    p("intent", Token, &["intent"]),
    p("authoredon", Date, &["authoredOn"]),
    p("identifier", Token, &["identifier"]),
];

const ALLERGY_INTOLERANCE: &[ParamDef] = &[
    r("patient", &["patient"], Some("Patient")),
    p("code", Token, &["code"]),
    p("clinical-status", Token, &["clinicalStatus"]),
    p("identifier", Token, &["identifier"]),
];

const IMMUNIZATION: &[ParamDef] = &[
    r("patient", &["patient"], Some("Patient")),
    p("status", Token, &["status"]),
    p("vaccine-code", Token, &["vaccineCode"]),
    p("date", Date, &["occurrenceDateTime"]),
    p("identifier", Token, &["identifier"]),
];

const CARE_PLAN: &[ParamDef] = &[
    r("subject", &["subject"], None),
    r("patient", &["subject"], Some("Patient")),
    p("status", Token, &["status"]),
    p("category", Token, &["category"]),
    p("identifier", Token, &["identifier"]),
];

const DOCUMENT_REFERENCE: &[ParamDef] = &[
    r("subject", &["subject"], None),
    r("patient", &["subject"], Some("Patient")),
    p("status", Token, &["status"]),
    p("type", Token, &["type"]),
    p("category", Token, &["category"]),
    p("identifier", Token, &["identifier"]),
];

const SERVICE_REQUEST: &[ParamDef] = &[
    r("subject", &["subject"], None),
    r("patient", &["subject"], Some("Patient")),
    r("encounter", &["encounter"], Some("Encounter")),
    p("code", Token, &["code"]),
    p("status", Token, &["status"]),
    p("identifier", Token, &["identifier"]),
];

const PRACTITIONER: &[ParamDef] = &[
    p("name", Str, &["name"]),
    p("family", Str, &["name.family"]),
    p("given", Str, &["name.given"]),
    p("identifier", Token, &["identifier"]),
];

const ORGANIZATION: &[ParamDef] = &[
    p("name", Str, &["name", "alias"]),
    p("identifier", Token, &["identifier"]),
    p("type", Token, &["type"]),
];

/// The type's own parameters (besides [`COMMON`]). Types not listed search on the
/// common ones only.
pub(crate) fn params_of(t: &str) -> &'static [ParamDef] {
    match t {
        "Patient" => PATIENT,
        "Observation" => OBSERVATION,
        "Condition" => CONDITION,
        "Encounter" => ENCOUNTER,
        "Procedure" => PROCEDURE,
        "DiagnosticReport" => DIAGNOSTIC_REPORT,
        "MedicationRequest" => MEDICATION_REQUEST,
        "AllergyIntolerance" => ALLERGY_INTOLERANCE,
        "Immunization" => IMMUNIZATION,
        "CarePlan" => CARE_PLAN,
        "DocumentReference" => DOCUMENT_REFERENCE,
        "ServiceRequest" => SERVICE_REQUEST,
        "Practitioner" => PRACTITIONER,
        "Organization" => ORGANIZATION,
        _ => &[],
    }
}

/// A parameter of `t` (or, with no type, a common one) by name.
pub(crate) fn find(t: Option<&str>, name: &str) -> Option<&'static ParamDef> {
    COMMON.iter().chain(t.map(params_of).unwrap_or_default()).find(|d| d.name == name)
}

/// Parameters that shape the result rather than select (search.html#return).
const RESULT_PARAMS: &[&str] = &[
    "_count",
    "_summary",
    "_total",
    "_elements",
    "_sort",
    "_include",
    "_revinclude",
    "_include:iterate",
    "_revinclude:iterate",
    "_include:recurse",
    "_revinclude:recurse",
];

/// Parameters the emulators' own layers answer (content negotiation): accepted
/// everywhere, carried into paging links, never a filter.
const FORMAT_PARAMS: &[&str] = &["_format", "_pretty"];

/// A modifier (search.html#modifiers) this server understands.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Modifier {
    None,
    Missing(bool),
    Not,
    Exact,
    Contains,
    /// `subject:Patient=123`.
    Type(String),
}

/// One parameter of the query: its values are alternatives (`a,b`: a OR b); two
/// filters are both required (search.html#combining).
#[derive(Debug, Clone)]
pub(crate) struct Filter {
    def: &'static ParamDef,
    modifier: Modifier,
    values: Vec<String>,
}

/// An `_include` or `_revinclude` (search.html#include): `Source:param[:Target]`.
#[derive(Debug, Clone)]
struct Include {
    source: String,
    param: &'static ParamDef,
    target: Option<String>,
    iterate: bool,
}

/// A query, read.
#[derive(Debug, Default)]
pub(crate) struct Search {
    filters: Vec<Filter>,
    count: usize,
    page: usize,
    summary_count: bool,
    includes: Vec<Include>,
    revincludes: Vec<Include>,
    sort: Vec<(String, bool)>,
    elements: Option<Vec<String>>,
    types: Option<Vec<String>>,
    /// Parameters ignored, for the warning entry (search.mode = outcome).
    warnings: Vec<String>,
    /// What the server used, for the `self` and paging links (search.html#conformance).
    used: Vec<(String, String)>,
}

fn bad(diagnostics: impl Into<String>) -> Answer {
    Answer::error(StatusCode::BAD_REQUEST, "invalid", diagnostics)
}

/// Splits a parameter value at unescaped commas (search.html#escaping: `\,` is a comma).
fn split_values(value: &str) -> Vec<String> {
    let mut out = vec![String::new()];
    let mut chars = value.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some(next @ (',' | '$' | '|' | '\\')) => {
                    out.last_mut().into_iter().for_each(|s| s.push(next))
                }
                Some(other) => out.last_mut().into_iter().for_each(|s| {
                    s.push('\\');
                    s.push(other);
                }),
                None => out.last_mut().into_iter().for_each(|s| s.push('\\')),
            },
            ',' => out.push(String::new()),
            c => out.last_mut().into_iter().for_each(|s| s.push(c)),
        }
    }
    out.retain(|v| !v.is_empty());
    out
}

/// A date search value: its comparator (search.html#prefix) and the range it stands for.
fn date_value(value: &str) -> Option<(&str, (i64, i64))> {
    let (prefix, rest) = match value.get(..2) {
        Some(p @ ("eq" | "ne" | "gt" | "lt" | "ge" | "le" | "sa" | "eb")) => (p, &value[2..]),
        _ => ("eq", value),
    };
    Some((prefix, instant::parse_range(rest)?))
}

fn parse_modifier(def: &ParamDef, modifier: Option<&str>, values: &[String]) -> Result<Modifier, Answer> {
    let Some(m) = modifier else { return Ok(Modifier::None) };
    let unsupported = || {
        Answer::error(
            StatusCode::BAD_REQUEST,
            "not-supported",
            format!("the modifier :{m} is not supported on {} ({})", def.name, def.kind.code()),
        )
    };
    match (m, def.kind) {
        ("missing", _) => match values {
            [v] if v == "true" || v == "false" => Ok(Modifier::Missing(v == "true")),
            _ => Err(bad(format!("{}:missing takes true or false", def.name))),
        },
        ("not", ParamType::Token | ParamType::Id) => Ok(Modifier::Not),
        ("exact", ParamType::String) => Ok(Modifier::Exact),
        ("contains", ParamType::String) => Ok(Modifier::Contains),
        (t, ParamType::Reference) if types::is_stored(t) => Ok(Modifier::Type(t.to_owned())),
        _ => Err(unsupported()),
    }
}

fn parse_include(value: &str, iterate: bool, rev: bool) -> Result<Include, Answer> {
    let what = if rev { "_revinclude" } else { "_include" };
    let parts: Vec<&str> = value.split(':').collect();
    let (source, param, target) = match parts.as_slice() {
        [s, p] => (*s, *p, None),
        [s, p, t] => (*s, *p, Some(*t)),
        _ => return Err(bad(format!("{what}={value}: expected Type:parameter[:TargetType]"))),
    };
    if !types::is_stored(source) || target.is_some_and(|t| !types::is_stored(t)) {
        return Err(bad(format!("{what}={value}: unknown resource type")));
    }
    let Some(def) = find(Some(source), param).filter(|d| d.kind == ParamType::Reference) else {
        return Err(bad(format!("{what}={value}: {source} has no reference parameter {param}")));
    };
    Ok(Include { source: source.to_owned(), param: def, target: target.map(str::to_owned), iterate })
}

impl Search {
    /// Reads a search query against type `t` (`None`: a system search). Unknown
    /// parameters are ignored and reported (search.mode = outcome), or refused
    /// with 400 under `Prefer: handling=strict` (search.html#errors).
    pub(crate) fn parse(
        store: &FhirStore,
        t: Option<&str>,
        query: &[(String, String)],
        prefer: Prefer,
    ) -> Result<Search, Answer> {
        let page_param = store.page_param();
        let vendor = store.vendor_params();
        let mut search = Search { count: super::DEFAULT_PAGE_SIZE, page: 1, ..Search::default() };
        for (key, value) in query {
            let keep = || (key.clone(), value.clone());
            if key == page_param {
                search.page = match value.parse::<usize>() {
                    Ok(n) if n >= 1 => n,
                    _ => return Err(bad("the page number must be 1 or more")),
                };
                continue;
            }
            if FORMAT_PARAMS.contains(&key.as_str()) || vendor.iter().any(|v| v == key) {
                search.used.push(keep());
                continue;
            }
            if RESULT_PARAMS.contains(&key.as_str()) {
                search.result_param(t, key, value, prefer)?;
                continue;
            }
            if key == "_type" && t.is_none() {
                let names = split_values(value);
                if let Some(unknown) = names.iter().find(|n| !types::is_stored(n)) {
                    return Err(bad(format!("_type: {unknown} is not a resource type this server knows")));
                }
                search.types = Some(names);
                search.used.push(keep());
                continue;
            }
            let (name, modifier) = match key.split_once(':') {
                Some((n, m)) => (n, Some(m)),
                None => (key.as_str(), None),
            };
            let Some(def) = find(t, name) else {
                search.unknown(key, prefer)?;
                continue;
            };
            let values = split_values(value);
            if values.is_empty() {
                // search.html#errors: a parameter with no value is ignored.
                continue;
            }
            let modifier = parse_modifier(def, modifier, &values)?;
            if def.kind == ParamType::Date
                && !matches!(modifier, Modifier::Missing(_))
                && let Some(v) = values.iter().find(|v| date_value(v).is_none())
            {
                return Err(bad(format!(
                    "{key}={v}: not a date (prefix eq|ne|gt|lt|ge|le|sa|eb, then a date)"
                )));
            }
            search.filters.push(Filter { def, modifier, values });
            search.used.push(keep());
        }
        Ok(search)
    }

    fn unknown(&mut self, key: &str, prefer: Prefer) -> Result<(), Answer> {
        if prefer.strict {
            return Err(Answer::error(
                StatusCode::BAD_REQUEST,
                "not-supported",
                format!("unknown search parameter {key} (Prefer: handling=strict)"),
            ));
        }
        self.warnings.push(format!("the search parameter {key} is not supported and was ignored"));
        Ok(())
    }

    fn result_param(
        &mut self,
        t: Option<&str>,
        key: &str,
        value: &str,
        prefer: Prefer,
    ) -> Result<(), Answer> {
        match key {
            "_count" => {
                self.count = match value.parse::<usize>() {
                    Ok(n) if n <= 1000 => n,
                    _ => return Err(bad("_count must be between 0 and 1000")),
                };
                // `_count=0`: how many, no entries.
                self.summary_count |= self.count == 0;
                return Ok(());
            }
            "_summary" => match value {
                "count" => self.summary_count = true,
                "false" => {}
                "true" | "text" | "data" => {
                    return self.unknown(&format!("_summary={value}"), prefer);
                }
                _ => return Err(bad(format!("_summary={value}: expected true|text|data|count|false"))),
            },
            "_total" => {
                if !matches!(value, "none" | "estimate" | "accurate") {
                    return Err(bad(format!("_total={value}: expected none|estimate|accurate")));
                }
            }
            "_elements" => {
                self.elements = Some(split_values(value));
            }
            "_sort" => {
                for field in split_values(value) {
                    let (name, desc) = match field.strip_prefix('-') {
                        Some(n) => (n.to_owned(), true),
                        None => (field.clone(), false),
                    };
                    if find(t, &name).is_none() {
                        self.unknown(&format!("_sort={field}"), prefer)?;
                        continue;
                    }
                    self.sort.push((name, desc));
                }
            }
            _ => {
                let rev = key.starts_with("_revinclude");
                let iterate = key.contains(':');
                let include = parse_include(value, iterate, rev)?;
                if rev { self.revincludes.push(include) } else { self.includes.push(include) }
            }
        }
        self.used.push((key.to_owned(), value.to_owned()));
        Ok(())
    }
}

/// Reads the criteria of a conditional interaction or reference (http.html#ccreate,
/// #cond-update, #3.1.0.7.1, bundle.html#references): filters only, and every
/// parameter must be understood, since ignoring one would widen the match and
/// change or delete the wrong resource.
pub(crate) fn criteria(t: &str, query: &[(String, String)]) -> Result<Vec<Filter>, Answer> {
    let mut filters = Vec::new();
    for (key, value) in query {
        if FORMAT_PARAMS.contains(&key.as_str()) {
            continue;
        }
        let (name, modifier) = match key.split_once(':') {
            Some((n, m)) => (n, Some(m)),
            None => (key.as_str(), None),
        };
        let Some(def) = find(Some(t), name) else {
            return Err(Answer::error(
                StatusCode::BAD_REQUEST,
                "not-supported",
                format!("conditional criteria: {key} is not a search parameter of {t} this server supports"),
            ));
        };
        let values = split_values(value);
        if values.is_empty() {
            return Err(bad(format!("conditional criteria: {key} has no value")));
        }
        let modifier = parse_modifier(def, modifier, &values)?;
        if def.kind == ParamType::Date
            && !matches!(modifier, Modifier::Missing(_))
            && values.iter().any(|v| date_value(v).is_none())
        {
            return Err(bad(format!("conditional criteria: {key}={value} is not a date")));
        }
        filters.push(Filter { def, modifier, values });
    }
    if filters.is_empty() {
        return Err(bad(format!("conditional criteria for {t} are empty")));
    }
    Ok(filters)
}

/// Ids of the live resources of type `t` that match every filter.
pub(crate) fn matching_ids(data: &Data, base: &str, t: &str, filters: &[Filter]) -> Vec<String> {
    data.live(Some(t))
        .filter(|(_, _, v)| v.resource.as_ref().is_some_and(|r| filters.iter().all(|f| f.matches(r, base))))
        .map(|(_, id, _)| id.to_owned())
        .collect()
}

/// The values at a dotted path; arrays are flattened at every step.
pub(crate) fn values<'a>(value: &'a Value, path: &str) -> Vec<&'a Value> {
    let mut current = vec![value];
    for step in path.split('.') {
        let mut next = Vec::new();
        for v in current {
            match v.get(step) {
                Some(Value::Array(items)) => next.extend(items.iter()),
                Some(item) => next.push(item),
                None => {}
            }
        }
        current = next;
    }
    current
}

/// `(type, id)` of a literal reference to a resource on this server: `Patient/1`,
/// `{base}/Patient/1`, `Patient/1/_history/2`. `None` for anything else (another
/// server, a contained `#ref`, a `urn:`).
pub(crate) fn split_reference(reference: &str, base: &str) -> Option<(String, String)> {
    let local = match reference.strip_prefix(base) {
        Some(rest) => rest.strip_prefix('/')?,
        None if reference.contains("://") || reference.starts_with("urn:") => return None,
        None => reference,
    };
    let mut parts = local.split('/');
    let (t, id) = (parts.next()?, parts.next()?);
    match (parts.next(), parts.next(), parts.next()) {
        (None, _, _) | (Some("_history"), Some(_), None) => {}
        _ => return None,
    }
    (types::is_stored(t) && types::is_valid_id(id)).then(|| (t.to_owned(), id.to_owned()))
}

/// Every string under an element, skipping what is not text to search (a HumanName's
/// `use`, periods, extensions).
fn strings<'a>(value: &'a Value, out: &mut Vec<&'a str>) {
    match value {
        Value::String(s) => out.push(s),
        Value::Array(items) => items.iter().for_each(|i| strings(i, out)),
        Value::Object(map) => map
            .iter()
            .filter(|(k, _)| !matches!(k.as_str(), "use" | "period" | "extension" | "id"))
            .for_each(|(_, v)| strings(v, out)),
        _ => {}
    }
}

fn token_matches(element: &Value, query: &str) -> bool {
    let (system, code) = match query.split_once('|') {
        Some((s, c)) => (Some(s), c),
        None => (None, query),
    };
    let pair = |sys: Option<&str>, c: Option<&str>| {
        let system_ok = match system {
            None => true,
            Some("") => sys.is_none_or(str::is_empty),
            Some(s) => sys == Some(s),
        };
        system_ok && ((code.is_empty() && system.is_some()) || c == Some(code))
    };
    match element {
        // A primitive code's system is implied by its element: only the code is compared.
        Value::String(s) => s == code,
        Value::Bool(b) => code == if *b { "true" } else { "false" },
        Value::Object(map) => {
            let text = |m: &Map<String, Value>, k: &str| m.get(k).and_then(Value::as_str).map(str::to_owned);
            if let Some(codings) = map.get("coding").and_then(Value::as_array) {
                codings
                    .iter()
                    .filter_map(Value::as_object)
                    .any(|c| pair(text(c, "system").as_deref(), text(c, "code").as_deref()))
            } else if map.contains_key("code") {
                pair(text(map, "system").as_deref(), text(map, "code").as_deref())
            } else {
                pair(text(map, "system").as_deref(), text(map, "value").as_deref())
            }
        }
        _ => false,
    }
}

/// The range a stored date, dateTime, instant or Period covers.
fn target_range(element: &Value) -> Option<(i64, i64)> {
    match element {
        Value::String(s) => instant::parse_range(s),
        Value::Object(map) => {
            let start = map.get("start").and_then(Value::as_str).and_then(instant::parse_range).map(|r| r.0);
            let end = map.get("end").and_then(Value::as_str).and_then(instant::parse_range).map(|r| r.1);
            if start.is_none() && end.is_none() {
                return None;
            }
            Some((start.unwrap_or(i64::MIN), end.unwrap_or(i64::MAX)))
        }
        _ => None,
    }
}

/// search.html#prefix: how a target range compares to a search value's range.
fn date_matches(element: &Value, query: &str) -> bool {
    let (Some((prefix, (sl, su))), Some((tl, tu))) = (date_value(query), target_range(element)) else {
        return false;
    };
    let eq = tl >= sl && tu <= su;
    match prefix {
        "eq" => eq,
        "ne" => !eq,
        "gt" => tu > su,
        "lt" => tl < sl,
        "ge" => tu > su || eq,
        "le" => tl < sl || eq,
        "sa" => tl >= su,
        "eb" => tu <= sl,
        _ => false,
    }
}

impl Filter {
    fn matches(&self, resource: &Value, base: &str) -> bool {
        let elements: Vec<&Value> = self.def.paths.iter().flat_map(|p| values(resource, p)).collect();
        match &self.modifier {
            Modifier::Missing(missing) => elements.is_empty() == *missing,
            Modifier::Not => {
                !self.values.iter().any(|v| elements.iter().any(|e| self.value_matches(e, v, base)))
            }
            _ => self.values.iter().any(|v| elements.iter().any(|e| self.value_matches(e, v, base))),
        }
    }

    fn value_matches(&self, element: &Value, query: &str, base: &str) -> bool {
        match self.def.kind {
            ParamType::Id => element.as_str() == Some(query),
            ParamType::Uri => element.as_str() == Some(query),
            ParamType::Token => token_matches(element, query),
            ParamType::Date => date_matches(element, query),
            ParamType::String => {
                let mut texts = Vec::new();
                strings(element, &mut texts);
                let q = query.to_lowercase();
                texts.iter().any(|t| match self.modifier {
                    Modifier::Exact => *t == query,
                    Modifier::Contains => t.to_lowercase().contains(&q),
                    // search.html#string: case-insensitive, matching the start.
                    _ => t.to_lowercase().starts_with(&q),
                })
            }
            ParamType::Reference => {
                let Some(reference) = element.get("reference").and_then(Value::as_str) else { return false };
                let Some((rt, rid)) = split_reference(reference, base) else {
                    return reference == query;
                };
                let q = query.strip_prefix(base).map(|s| s.trim_start_matches('/')).unwrap_or(query);
                let (qt, qid) = match q.split_once('/') {
                    Some((t, rest)) => (Some(t), rest.split('/').next().unwrap_or_default()),
                    None => match &self.modifier {
                        Modifier::Type(t) => (Some(t.as_str()), q),
                        _ => (None, q),
                    },
                };
                self.def.target.is_none_or(|t| t == rt) && qt.is_none_or(|t| t == rt) && qid == rid
            }
        }
    }
}

/// References a resource makes through a reference parameter, as (type, id) on this server.
fn references_of(resource: &Value, def: &ParamDef, base: &str) -> Vec<(String, String)> {
    def.paths
        .iter()
        .flat_map(|p| values(resource, p))
        .filter_map(|e| e.get("reference").and_then(Value::as_str))
        .filter_map(|r| split_reference(r, base))
        .filter(|(t, _)| def.target.is_none_or(|target| target == t))
        .collect()
}

type Hit<'a> = (&'a str, &'a str, &'a Version);

fn sort_key(hit: &Hit<'_>, name: &str, t: Option<&str>) -> Option<String> {
    let resource = hit.2.resource.as_ref()?;
    let def = find(t.or(Some(hit.0)), name)?;
    let first = def.paths.iter().flat_map(|p| values(resource, p)).next()?;
    match def.kind {
        ParamType::Date => {
            target_range(first).map(|(l, _)| format!("{:020}", i128::from(l) - i128::from(i64::MIN)))
        }
        _ => {
            let mut texts = Vec::new();
            strings(first, &mut texts);
            texts.first().map(|s| s.to_lowercase())
        }
    }
}

fn subset(resource: &Value, elements: &[String]) -> Value {
    let Some(map) = resource.as_object() else { return resource.clone() };
    let mut out: Map<String, Value> = map
        .iter()
        .filter(|(k, _)| {
            matches!(k.as_str(), "resourceType" | "id" | "meta") || elements.iter().any(|e| e == *k)
        })
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    // search.html#elements: a subset is marked SUBSETTED.
    let meta = out.entry("meta").or_insert_with(|| json!({}));
    if let Some(meta) = meta.as_object_mut() {
        let tags = meta.entry("tag").or_insert_with(|| json!([]));
        if let Some(tags) = tags.as_array_mut() {
            tags.push(json!({"system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue", "code": "SUBSETTED"}));
        }
    }
    Value::Object(out)
}

/// The resources `_include` and `_revinclude` add for a page of matches.
fn included<'a>(data: &'a Data, base: &str, page: &[Hit<'a>], search: &Search) -> Vec<Hit<'a>> {
    let mut seen: BTreeSet<(String, String)> =
        page.iter().map(|(t, id, _)| ((*t).to_owned(), (*id).to_owned())).collect();
    let mut added: Vec<Hit<'a>> = Vec::new();
    let mut sources: Vec<Hit<'a>> = page.to_vec();
    // `:iterate` follows the included ones again; a few rounds reach any real graph.
    for round in 0..5 {
        let mut fresh: Vec<Hit<'a>> = Vec::new();
        for inc in search.includes.iter().filter(|i| round == 0 || i.iterate) {
            for (_, _, version) in sources.iter().filter(|(t, _, _)| *t == inc.source) {
                let Some(resource) = &version.resource else { continue };
                for (rt, rid) in references_of(resource, inc.param, base) {
                    if inc.target.as_deref().is_some_and(|target| target != rt)
                        || !seen.insert((rt.clone(), rid.clone()))
                    {
                        continue;
                    }
                    if let Some((name, ids)) = data.resources.get_key_value(&rt)
                        && let Some((id, versions)) = ids.get_key_value(&rid)
                        && let Some(v) = versions.last().filter(|v| v.resource.is_some())
                    {
                        fresh.push((name.as_str(), id.as_str(), v));
                    }
                }
            }
        }
        for inc in search.revincludes.iter().filter(|i| round == 0 || i.iterate) {
            let wanted: BTreeSet<(String, String)> = sources
                .iter()
                .filter(|(t, _, _)| inc.target.as_deref().is_none_or(|target| target == *t))
                .map(|(t, id, _)| ((*t).to_owned(), (*id).to_owned()))
                .collect();
            for hit in data.live(Some(&inc.source)) {
                let Some(resource) = &hit.2.resource else { continue };
                if references_of(resource, inc.param, base).iter().any(|r| wanted.contains(r))
                    && seen.insert((hit.0.to_owned(), hit.1.to_owned()))
                {
                    fresh.push(hit);
                }
            }
        }
        if fresh.is_empty() {
            break;
        }
        added.extend(fresh.iter().copied());
        sources = fresh;
    }
    added
}

/// `GET [base]/[type]?…` or `GET [base]?…` (search.html, http.html#search): a
/// searchset Bundle, paged with `_count` and the store's page parameter.
pub(crate) fn search(
    store: &FhirStore,
    data: &Data,
    t: Option<&str>,
    query: &[(String, String)],
    prefer: Prefer,
) -> Answer {
    let search = match Search::parse(store, t, query, prefer) {
        Ok(s) => s,
        Err(e) => return e,
    };
    let base = store.base();
    let mut hits: Vec<Hit<'_>> = data
        .live(t)
        .filter(|(name, _, _)| search.types.as_ref().is_none_or(|ts| ts.iter().any(|x| x == name)))
        .filter(|(_, _, v)| {
            v.resource.as_ref().is_some_and(|r| search.filters.iter().all(|f| f.matches(r, base)))
        })
        .collect();
    for (name, desc) in search.sort.iter().rev() {
        // Stable sorts, last key first: the first key decides, the next ones break ties.
        hits.sort_by(|a, b| {
            let (ka, kb) = match name.as_str() {
                "_id" => (Some(a.1.to_owned()), Some(b.1.to_owned())),
                "_lastUpdated" => {
                    (Some(format!("{:020}", a.2.updated)), Some(format!("{:020}", b.2.updated)))
                }
                _ => (sort_key(a, name, t), sort_key(b, name, t)),
            };
            // Resources without a value come last either way.
            match (ka, kb) {
                (Some(x), Some(y)) if *desc => y.cmp(&x),
                (Some(x), Some(y)) => x.cmp(&y),
                (Some(_), None) => std::cmp::Ordering::Less,
                (None, Some(_)) => std::cmp::Ordering::Greater,
                (None, None) => std::cmp::Ordering::Equal,
            }
        });
    }
    let total = hits.len();
    let path = t.map(|t| format!("{base}/{t}")).unwrap_or_else(|| base.to_owned());
    let link = |page: usize| {
        let mut q = form_urlencoded::Serializer::new(String::new());
        q.extend_pairs(&search.used);
        if !search.summary_count {
            q.append_pair("_count", &search.count.to_string());
            q.append_pair(store.page_param(), &page.to_string());
        }
        format!("{path}?{}", q.finish())
    };
    let mut bundle = json!({"resourceType": "Bundle", "type": "searchset", "total": total});
    let mut entries: Vec<Value> = Vec::new();
    if search.summary_count {
        bundle["link"] = json!([{"relation": "self", "url": link(1)}]);
    } else {
        // Page numbers come from the request: no arithmetic on them may overflow.
        let Some(skip) = (search.page - 1).checked_mul(search.count) else {
            return bad("the page number is out of range");
        };
        let page: Vec<Hit<'_>> = hits.iter().skip(skip).take(search.count).copied().collect();
        let last = total.div_ceil(search.count).max(1);
        let mut links = vec![
            json!({"relation": "self", "url": link(search.page)}),
            json!({"relation": "first", "url": link(1)}),
        ];
        if search.page > 1 {
            links.push(json!({"relation": "previous", "url": link((search.page - 1).min(last))}));
        }
        if skip.saturating_add(search.count) < total {
            links.push(json!({"relation": "next", "url": link(search.page.saturating_add(1))}));
        }
        links.push(json!({"relation": "last", "url": link(last)}));
        bundle["link"] = Value::Array(links);
        for (name, id, v) in &page {
            let Some(resource) = &v.resource else { continue };
            let resource = match &search.elements {
                Some(elements) => subset(resource, elements),
                None => resource.clone(),
            };
            entries.push(json!({"fullUrl": format!("{base}/{name}/{id}"), "resource": resource, "search": {"mode": "match"}}));
        }
        for (name, id, v) in included(data, base, &page, &search) {
            entries.push(json!({"fullUrl": format!("{base}/{name}/{id}"), "resource": v.resource, "search": {"mode": "include"}}));
        }
    }
    if !search.warnings.is_empty() {
        let issues: Vec<Value> = search
            .warnings
            .iter()
            .map(|w| json!({"severity": "warning", "code": "not-supported", "diagnostics": w}))
            .collect();
        entries.push(json!({
            "resource": {"resourceType": "OperationOutcome", "issue": issues},
            "search": {"mode": "outcome"}
        }));
    }
    if !entries.is_empty() {
        bundle["entry"] = Value::Array(entries);
    }
    Answer::ok(bundle)
}

/// How many live resources of `t` match a query (the `$count` operation).
pub(crate) fn count(
    store: &FhirStore,
    data: &Data,
    t: &str,
    query: &[(String, String)],
    prefer: Prefer,
) -> Result<usize, Answer> {
    let search = Search::parse(store, Some(t), query, prefer)?;
    if prefer.strict && !search.warnings.is_empty() {
        return Err(bad(search.warnings.join("; ")));
    }
    let base = store.base();
    Ok(data
        .live(Some(t))
        .filter(|(_, _, v)| {
            v.resource.as_ref().is_some_and(|r| search.filters.iter().all(|f| f.matches(r, base)))
        })
        .count())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_split_on_unescaped_commas() {
        assert_eq!(split_values("a,b\\,c,,"), vec!["a".to_owned(), "b,c".to_owned()]);
    }

    #[test]
    fn tokens_and_dates() {
        let coding = json!({"coding": [{"system": "http://loinc.org", "code": "1234-5"}]});
        assert!(token_matches(&coding, "http://loinc.org|1234-5"));
        assert!(token_matches(&coding, "1234-5"));
        assert!(token_matches(&coding, "http://loinc.org|"));
        assert!(!token_matches(&coding, "|1234-5"));
        let day = json!("2024-05-01");
        assert!(date_matches(&day, "2024-05"));
        assert!(date_matches(&day, "gt2024-04-30"));
        assert!(!date_matches(&day, "gt2024-05-01"));
        assert!(date_matches(&day, "ge2024-05-01"));
        assert!(date_matches(&day, "le2024-05-01"));
        assert!(date_matches(&day, "lt2024-05-02"));
    }

    #[test]
    fn references() {
        let base = "http://x/fhir";
        assert_eq!(split_reference("Patient/1", base), Some(("Patient".into(), "1".into())));
        assert_eq!(
            split_reference("http://x/fhir/Patient/1/_history/3", base),
            Some(("Patient".into(), "1".into()))
        );
        assert_eq!(split_reference("http://y/fhir/Patient/1", base), None);
        assert_eq!(split_reference("urn:uuid:1", base), None);
        assert_eq!(split_reference("Nope/1", base), None);
    }
}
