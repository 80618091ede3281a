//! Batch and transaction Bundles: a typed builder whose entries can point at each
//! other through `urn:uuid:` full URLs, and the server's answer read back as one
//! outcome per entry.
//!
//! ```
//! use auth_fhir::transaction::Transaction;
//! use auth_fhir::{JsonResource, Patient};
//!
//! # fn demo() -> auth_core::Result<()> {
//! let mut tx = Transaction::new();
//! let patient = tx.create(&Patient::new().with_name("Chalmers", ["Peter"]))?;
//! let mut observation = JsonResource::new("Observation");
//! observation.0.insert("subject".into(), serde_json::json!({"reference": patient.as_str()}));
//! tx.create(&observation)?;
//! // fhir.transaction(&tx).await? answers with the patient's outcome at
//! // response.outcome(&patient), its Location the id the server gave it.
//! # Ok(()) }
//! ```

use std::fmt;

use bytes::Bytes;
use reqwest::Method;
use reqwest::header::HeaderMap;
use serde::{Deserialize, Serialize, Serializer};
use serde_json::{Map, Value, json};

use auth_core::{Error, ResponseProblem, Result};

use crate::client::{FhirClient, type_name};
use crate::model::{JsonResource, OperationOutcome, Resource};
use crate::search::SearchParams;

/// Whether the server applies the entries all or nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BundleKind {
    /// All or nothing: one failed entry fails the whole Bundle.
    Transaction,
    /// Each entry on its own; each has its own outcome.
    Batch,
}

impl BundleKind {
    fn as_str(self) -> &'static str {
        match self {
            Self::Transaction => "transaction",
            Self::Batch => "batch",
        }
    }
}

/// How other entries point at the resource an entry creates or updates: its
/// `urn:uuid:` full URL (a create, a conditional update), which the server
/// rewrites to the real id, or `Type/id` (an update). Also finds the entry's
/// outcome in the response ([`TransactionResponse::outcome`]).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct EntryRef {
    index: usize,
    full_url: String,
}

impl EntryRef {
    /// `urn:uuid:…` or `Type/id`: the value for a Reference's `reference`.
    pub fn as_str(&self) -> &str {
        &self.full_url
    }

    /// A Reference to the entry's resource, for another entry to hold.
    pub fn reference(&self) -> crate::Reference {
        crate::Reference { reference: Some(self.full_url.clone()), ..crate::Reference::default() }
    }

    /// The entry's position in the Bundle.
    pub fn index(&self) -> usize {
        self.index
    }
}

impl fmt::Display for EntryRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.full_url)
    }
}

/// A batch or transaction Bundle being built.
#[derive(Debug, Clone, PartialEq)]
pub struct Transaction {
    kind: BundleKind,
    entries: Vec<Value>,
}

impl Default for Transaction {
    fn default() -> Self {
        Self::new()
    }
}

impl Transaction {
    /// An empty transaction (all or nothing).
    pub fn new() -> Self {
        Self { kind: BundleKind::Transaction, entries: Vec::new() }
    }

    /// An empty batch (each entry on its own).
    pub fn batch() -> Self {
        Self { kind: BundleKind::Batch, entries: Vec::new() }
    }

    /// Which kind.
    pub fn kind(&self) -> BundleKind {
        self.kind
    }

    /// How many entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Creates `resource` (`POST [type]`); other entries reference it by the
    /// returned [`EntryRef`].
    pub fn create<R: Resource>(&mut self, resource: &R) -> Result<EntryRef> {
        let kind = type_name(resource)?.to_owned();
        self.push_with_uuid(resource, json!({"method": "POST", "url": kind}))
    }

    /// Creates `resource` unless one matches `condition` (`If-None-Exist`); either
    /// way, references to the returned [`EntryRef`] end up at the one resource.
    pub fn create_if_none_exist<R: Resource>(
        &mut self,
        resource: &R,
        condition: &SearchParams,
    ) -> Result<EntryRef> {
        let kind = type_name(resource)?.to_owned();
        let request = json!({"method": "POST", "url": kind, "ifNoneExist": condition.to_query()});
        self.push_with_uuid(resource, request)
    }

    /// Updates (or creates with its id) `resource` (`PUT [type]/[id]`), with
    /// `if_match` only if the server still has that version.
    pub fn update<R: Resource>(&mut self, resource: &R, if_match: Option<&str>) -> Result<EntryRef> {
        let kind = type_name(resource)?;
        let id = resource.id().ok_or_else(|| Error::configuration("a resource needs an id to be updated"))?;
        let mut request = json!({"method": "PUT", "url": format!("{kind}/{id}")});
        if let Some(version) = if_match {
            request["ifMatch"] = Value::String(format!("W/\"{version}\""));
        }
        let full_url = format!("{kind}/{id}");
        Ok(self.push(Some(to_value(resource)?), request, full_url))
    }

    /// Updates the one resource that matches `condition`, or creates it
    /// (`PUT [type]?condition`); references to the returned [`EntryRef`] end up there.
    pub fn update_where<R: Resource>(&mut self, resource: &R, condition: &SearchParams) -> Result<EntryRef> {
        let url = conditional_url(type_name(resource)?, condition, "update")?;
        self.push_with_uuid(resource, json!({"method": "PUT", "url": url}))
    }

    /// Deletes `[type]/[id]`. Returns the entry's index in the response's entries.
    pub fn delete(&mut self, resource_type: &str, id: &str) -> Result<usize> {
        let url = format!("{}/{}", segment(resource_type)?, segment(id)?);
        Ok(self.push(None, json!({"method": "DELETE", "url": url}), String::new()).index)
    }

    /// Deletes what matches `condition` (`DELETE [type]?condition`).
    pub fn delete_where(&mut self, resource_type: &str, condition: &SearchParams) -> Result<usize> {
        let url = conditional_url(segment(resource_type)?, condition, "delete")?;
        Ok(self.push(None, json!({"method": "DELETE", "url": url}), String::new()).index)
    }

    /// Reads `[type]/[id]` (in a batch, with the other entries' results).
    pub fn read(&mut self, resource_type: &str, id: &str) -> Result<usize> {
        let url = format!("{}/{}", segment(resource_type)?, segment(id)?);
        Ok(self.push(None, json!({"method": "GET", "url": url}), String::new()).index)
    }

    /// Searches `[type]?params`; the entry's resource is the result Bundle.
    pub fn search(&mut self, resource_type: &str, params: &SearchParams) -> Result<usize> {
        let mut url = segment(resource_type)?.to_owned();
        if !params.is_empty() {
            url = format!("{url}?{}", params.to_query());
        }
        Ok(self.push(None, json!({"method": "GET", "url": url}), String::new()).index)
    }

    /// The Bundle, as sent.
    pub fn to_bundle(&self) -> JsonResource {
        let mut bundle = JsonResource::new("Bundle");
        bundle.0.insert("type".into(), Value::String(self.kind.as_str().into()));
        bundle.0.insert("entry".into(), Value::Array(self.entries.clone()));
        bundle
    }

    fn push_with_uuid<R: Resource>(&mut self, resource: &R, request: Value) -> Result<EntryRef> {
        let full_url = format!("urn:uuid:{}", uuid::Uuid::new_v4());
        Ok(self.push(Some(to_value(resource)?), request, full_url))
    }

    fn push(&mut self, resource: Option<Value>, request: Value, full_url: String) -> EntryRef {
        let mut entry = Map::new();
        if !full_url.is_empty() {
            entry.insert("fullUrl".into(), Value::String(full_url.clone()));
        }
        if let Some(resource) = resource {
            entry.insert("resource".into(), resource);
        }
        entry.insert("request".into(), request);
        self.entries.push(Value::Object(entry));
        EntryRef { index: self.entries.len() - 1, full_url }
    }
}

/// As its Bundle ([`Transaction::to_bundle`]), so that it can be the body of an
/// `#[authenticated_api]` `#[transaction]` endpoint.
impl Serialize for Transaction {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        self.to_bundle().serialize(serializer)
    }
}

fn to_value<R: Resource>(resource: &R) -> Result<Value> {
    serde_json::to_value(resource)
        .map_err(|e| Error::configuration(format!("the resource cannot be written as JSON: {e}")))
}

/// A type or id as one URL path segment: nothing that would add a path or a query.
fn segment(s: &str) -> Result<&str> {
    let bad = s.is_empty() || s == "." || s == ".." || s.contains(['/', '?', '#', ' ']);
    if bad {
        return Err(Error::configuration(format!("`{s}` is not a valid resource type or id")));
    }
    Ok(s)
}

fn conditional_url(kind: &str, condition: &SearchParams, what: &str) -> Result<String> {
    if condition.is_empty() {
        return Err(Error::configuration(format!("a conditional {what} needs search parameters")));
    }
    Ok(format!("{kind}?{}", condition.to_query()))
}

/// One entry's outcome in a batch or transaction response.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct EntryOutcome {
    /// The HTTP status the entry got (`201` of `201 Created`).
    pub status: u16,
    /// Where the resource is (`Patient/123/_history/1`), for a create or update.
    pub location: Option<String>,
    /// The version in its ETag (`W/"1"` → `1`).
    pub version_id: Option<String>,
    /// When the resource last changed.
    pub last_modified: Option<String>,
    /// The server's OperationOutcome for this entry (a failed batch entry has one).
    pub outcome: Option<OperationOutcome>,
    /// The resource, if the server returned it.
    pub resource: Option<JsonResource>,
}

impl EntryOutcome {
    /// Whether the entry succeeded (2xx).
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The id in [`EntryOutcome::location`].
    pub fn id(&self) -> Option<&str> {
        let location = self.location.as_deref()?;
        let path = location.split('?').next().unwrap_or(location);
        let parts: Vec<&str> = path.trim_end_matches('/').split('/').collect();
        match parts.iter().rposition(|p| *p == "_history") {
            Some(i) if i >= 1 => Some(parts[i - 1]),
            Some(_) => None,
            None => parts.last().copied().filter(|s| !s.is_empty()),
        }
    }

    /// The returned resource as type `R`, if there is one.
    pub fn resource_as<R: Resource>(&self) -> Result<Option<R>> {
        let Some(resource) = &self.resource else { return Ok(None) };
        serde_json::to_value(resource)
            .and_then(serde_json::from_value)
            .map(Some)
            .map_err(|e| response_problem(format!("an entry's resource is not a {}: {e}", R::TYPE)))
    }
}

/// The server's answer to a batch or transaction: its Bundle and one outcome per
/// entry, in the order the entries were sent.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct TransactionResponse {
    /// The response Bundle (`batch-response` or `transaction-response`), whole.
    pub bundle: JsonResource,
    /// One per entry sent.
    pub entries: Vec<EntryOutcome>,
}

impl TransactionResponse {
    /// The outcome of the entry `entry` names.
    pub fn outcome(&self, entry: &EntryRef) -> Option<&EntryOutcome> {
        self.entries.get(entry.index)
    }

    /// Whether every entry succeeded.
    pub fn all_succeeded(&self) -> bool {
        self.entries.iter().all(EntryOutcome::is_success)
    }

    /// Reads a response Bundle.
    pub fn from_bundle(bundle: JsonResource) -> Result<Self> {
        let kind = bundle.0.get("type").and_then(Value::as_str).unwrap_or_default();
        if bundle.0.get("resourceType").and_then(Value::as_str) != Some("Bundle")
            || !matches!(kind, "batch-response" | "transaction-response")
        {
            return Err(response_problem(format!(
                "the answer is not a batch-response or transaction-response Bundle (type `{kind}`)"
            )));
        }
        let raw = bundle.0.get("entry").cloned().unwrap_or(Value::Array(Vec::new()));
        let raw: Vec<RawEntry> = serde_json::from_value(raw)
            .map_err(|e| response_problem(format!("the response entries do not parse: {e}")))?;
        let entries = raw.into_iter().map(RawEntry::into_outcome).collect::<Result<_>>()?;
        Ok(Self { bundle, entries })
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawEntry {
    resource: Option<JsonResource>,
    response: Option<RawResponse>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawResponse {
    status: String,
    location: Option<String>,
    etag: Option<String>,
    last_modified: Option<String>,
    outcome: Option<OperationOutcome>,
}

impl RawEntry {
    fn into_outcome(self) -> Result<EntryOutcome> {
        let response = self.response.ok_or_else(|| response_problem("an entry has no response".into()))?;
        let status = response
            .status
            .split_whitespace()
            .next()
            .and_then(|code| code.parse::<u16>().ok())
            .filter(|code| (100..600).contains(code))
            .ok_or_else(|| response_problem("an entry's status is not an HTTP status".into()))?;
        let version_id = response
            .etag
            .map(|t| t.trim().trim_start_matches("W/").trim_matches('"').to_owned())
            .filter(|v| !v.is_empty());
        Ok(EntryOutcome {
            status,
            location: response.location,
            version_id,
            last_modified: response.last_modified,
            outcome: response.outcome,
            resource: self.resource,
        })
    }
}

fn response_problem(message: String) -> Error {
    Error::invalid_response("FHIR transaction", 200, ResponseProblem::Other(message))
}

impl FhirClient {
    /// Sends a batch or transaction (`POST [base]`). A transaction the server
    /// rejects is an error with its OperationOutcome; a batch answers with each
    /// entry's outcome, failed ones included. Never retried: it may create.
    pub async fn transaction(&self, bundle: &Transaction) -> Result<TransactionResponse> {
        self.transaction_json(&bundle.to_bundle()).await
    }

    /// Sends a batch or transaction Bundle written elsewhere (a file, another
    /// library), as [`FhirClient::transaction`] does.
    pub async fn transaction_json(&self, bundle: &JsonResource) -> Result<TransactionResponse> {
        let kind = bundle.0.get("type").and_then(Value::as_str);
        if bundle.0.get("resourceType").and_then(Value::as_str) != Some("Bundle")
            || !matches!(kind, Some("batch" | "transaction"))
        {
            return Err(Error::configuration(
                "a transaction needs a Bundle of type `transaction` or `batch`",
            ));
        }
        let body = serde_json::to_vec(bundle)
            .map(Bytes::from)
            .map_err(|e| Error::configuration(format!("the Bundle cannot be written as JSON: {e}")))?;
        // `POST [base]`: no trailing `/`, which some servers route elsewhere.
        let url = self.url(&[])?;
        let response = self.send(Method::POST, url, HeaderMap::new(), Some(body)).await?;
        TransactionResponse::from_bundle(response.resource()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Patient;

    #[test]
    fn entries_reference_each_other_by_urn_uuid() {
        let mut tx = Transaction::new();
        let p = tx.create(&Patient::new()).unwrap();
        assert!(p.as_str().starts_with("urn:uuid:") && p.as_str().len() == 45, "{p}");
        let mut obs = JsonResource::new("Observation");
        obs.0.insert("subject".into(), json!({"reference": p.as_str()}));
        let o = tx.create(&obs).unwrap();
        tx.delete("Patient", "old").unwrap();
        tx.update_where(&Patient::new(), &SearchParams::new().add("identifier", "x|1")).unwrap();
        assert_ne!(p, o);
        let bundle = serde_json::to_value(tx.to_bundle()).unwrap();
        assert_eq!(bundle["type"], "transaction");
        assert_eq!(bundle["entry"][0]["fullUrl"], p.as_str());
        assert_eq!(bundle["entry"][0]["request"], json!({"method": "POST", "url": "Patient"}));
        assert_eq!(bundle["entry"][1]["resource"]["subject"]["reference"], p.as_str());
        assert_eq!(bundle["entry"][2]["request"], json!({"method": "DELETE", "url": "Patient/old"}));
        assert_eq!(bundle["entry"][3]["request"]["url"], "Patient?identifier=x%7C1");
    }

    #[test]
    fn a_transaction_serializes_as_its_bundle() {
        let mut tx = Transaction::batch();
        tx.read("Patient", "1").unwrap();
        assert_eq!(serde_json::to_value(&tx).unwrap(), serde_json::to_value(tx.to_bundle()).unwrap());
    }

    #[test]
    fn bad_entries_are_refused() {
        let mut tx = Transaction::batch();
        assert!(tx.delete("Patient", "../x").is_err());
        assert!(tx.delete_where("Patient", &SearchParams::new()).is_err());
        assert!(tx.create(&JsonResource(Map::new())).is_err(), "no resourceType");
        assert!(tx.is_empty());
    }

    #[test]
    fn responses_read_into_outcomes() {
        let bundle: JsonResource = serde_json::from_value(json!({
            "resourceType": "Bundle", "type": "batch-response",
            "entry": [
                {"response": {"status": "201 Created", "location": "Patient/7/_history/1", "etag": "W/\"1\""}},
                {"response": {"status": "404", "outcome": {"resourceType": "OperationOutcome",
                    "issue": [{"severity": "error", "code": "not-found"}]}}}
            ]
        }))
        .unwrap();
        let r = TransactionResponse::from_bundle(bundle).unwrap();
        assert_eq!(r.entries[0].status, 201);
        assert_eq!(r.entries[0].id(), Some("7"));
        assert_eq!(r.entries[0].version_id.as_deref(), Some("1"));
        assert!(!r.entries[1].is_success() && r.entries[1].outcome.is_some());
        assert!(!r.all_succeeded());
        let bad: JsonResource =
            serde_json::from_value(json!({"resourceType": "Bundle", "type": "batch-response",
            "entry": [{"response": {"status": "lovely"}}]}))
            .unwrap();
        assert!(TransactionResponse::from_bundle(bad).is_err());
    }
}
