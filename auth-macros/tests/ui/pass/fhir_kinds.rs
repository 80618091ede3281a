//! Every endpoint kind beyond plain GET/POST/PUT/DELETE, and the code that calls
//! them, as an application writes it.
use auth_core::Result;
use auth_fhir::{
    Bundle, Created, FhirClient, FhirResponse, JsonResource, OperationOutcome, Patient, SearchParams,
    Transaction, TransactionResponse,
};
use auth_macros::authenticated_api;
use json_patch::Patch;
use serde_json::Value;

pub struct Records {
    fhir: FhirClient,
}

#[authenticated_api]
impl Records {
    #[patch("Patient/{id}")]
    pub async fn patch(&self, id: &str, #[body] ops: &Patch, #[if_match] version: Option<&str>) -> Result<Patient>;

    /// A JSON Patch as plain JSON, under a version that must match.
    #[patch("Patient/{id}")]
    pub async fn patch_json(&self, id: &str, #[body] ops: &Value, #[if_match] version: u32) -> Result<JsonResource>;

    #[put("Patient/{id}")]
    pub async fn update(&self, id: &str, #[body] p: &Patient, #[if_match] version: Option<&str>) -> Result<Patient>;

    #[put("Patient")]
    pub async fn upsert(&self, #[query] identifier: &str, #[body] p: &Patient) -> Result<Created<Patient>>;

    #[delete("Patient/{id}")]
    pub async fn delete(&self, id: &str, #[if_match] version: Option<&str>) -> Result<()>;

    #[delete("Patient")]
    pub async fn delete_where(&self, #[params] condition: &SearchParams, #[query] identifier: Option<&str>) -> Result<()>;

    #[history("Patient/{id}")]
    pub async fn versions(&self, id: &str, #[query("_count")] count: Option<u32>) -> Result<Bundle<Patient>>;

    #[history("Patient")]
    pub async fn type_history(&self, #[query("_since")] since: &str) -> Result<Bundle<Patient>>;

    #[history]
    #[scope("system/*.s")]
    pub async fn changes(&self, #[params] params: &SearchParams) -> Result<Bundle<JsonResource>>;

    #[history]
    #[scope("system/*.s")]
    pub async fn changes_raw(&self) -> Result<FhirResponse>;

    #[operation("Patient/{id}/$everything")]
    pub async fn everything(&self, id: &str) -> Result<Bundle<JsonResource>>;

    /// The path is about Patients, the answer is not: operations may return anything.
    #[operation("Patient/$validate")]
    pub async fn validate(&self, #[body] p: &Patient) -> Result<OperationOutcome>;

    #[operation("Patient/$match")]
    pub async fn find(&self, #[body] parameters: &JsonResource) -> Result<Bundle<Patient>>;

    #[operation("$ping")]
    #[scope(none)]
    pub async fn ping(&self) -> Result<FhirResponse>;

    #[operation("Patient/{id}/$everything", get)]
    pub async fn everything_since(&self, id: &str, #[query("_since")] since: &str) -> Result<Bundle<JsonResource>>;

    #[transaction]
    #[scope("system/Patient.cu", "system/Observation.c")]
    pub async fn submit(&self, #[body] bundle: &Transaction) -> Result<TransactionResponse>;

    #[transaction]
    #[scope("system/Patient.cu")]
    pub async fn submit_json(&self, #[body] bundle: &JsonResource, #[header("Prefer")] prefer: &str) -> Result<Bundle<JsonResource>>;
}

pub async fn use_every_method(r: &Records, p: &Patient) -> Result<()> {
    let ops: Patch = serde_json::from_value(serde_json::json!([{"op": "replace", "path": "/gender", "value": "female"}]))
        .map_err(|e| auth_core::Error::configuration(e.to_string()))?;
    let _: Patient = r.patch("1", &ops, Some("2")).await?;
    let _: JsonResource = r.patch_json("1", &serde_json::to_value(&ops).unwrap_or_default(), 2).await?;
    let _: Patient = r.update("1", p, None).await?;
    let created: Created<Patient> = r.upsert("urn:system|1", p).await?;
    let _ = created.created;
    r.delete("1", Some("3")).await?;
    r.delete_where(&SearchParams::new(), Some("urn:system|1")).await?;
    let _: Bundle<Patient> = r.versions("1", Some(10)).await?;
    let _: Bundle<Patient> = r.type_history("2024-01-01").await?;
    let _: Bundle<JsonResource> = r.changes(&SearchParams::new().add("_count", "5")).await?;
    let _: FhirResponse = r.changes_raw().await?;
    let _: Bundle<JsonResource> = r.everything("1").await?;
    let _: OperationOutcome = r.validate(p).await?;
    let _: Bundle<Patient> = r.find(&JsonResource::new("Parameters")).await?;
    let _: FhirResponse = r.ping().await?;
    let _: Bundle<JsonResource> = r.everything_since("1", "2024-01-01").await?;
    let mut tx = Transaction::new();
    tx.create(p)?;
    let response: TransactionResponse = r.submit(&tx).await?;
    let _ = response.all_succeeded();
    let _: Bundle<JsonResource> = r.submit_json(&tx.to_bundle(), "return=minimal").await?;
    Ok(())
}

fn main() {}
