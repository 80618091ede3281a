#![allow(unused_imports)] // each case imports the same names; not all use them
use auth_core::Result;
use auth_fhir::{Bundle, Created, FhirClient, Patient};
use auth_macros::authenticated_api;
use auth_fhir::{FhirResponse, JsonResource, SearchParams};

// One mistake in a large block: rustc shows the macro's one error and nothing
// else (no "missing body", no "cannot find attribute", no "no method named" from
// the code below that calls every method).

pub struct Client {
    fhir: FhirClient,
}

#[authenticated_api]
impl Client {
    /// Reads a patient.
    #[get("Patient/{id}")]
    pub async fn read(&self, id: &str) -> Result<Patient>;

    #[get("Patient/{id}/_history/{vid}")]
    pub async fn vread(&self, id: &str, #[path("vid")] version: u32) -> Result<Patient>;

    #[get("Patient")]
    pub async fn search(&self, #[query] name: &str, #[query("_count")] count: Option<u32>) -> Result<Bundle<Patient>>;

    #[get("Patient")]
    pub async fn search_any(&self, #[params] params: &SearchParams) -> Result<Bundle<Patient>>;

    // The mistake: a GET has no body.
    #[get("Patient")]
    pub async fn search_by_example(&self, #[body] example: &Patient) -> Result<Bundle<Patient>>;

    #[post("Patient")]
    pub async fn create(&self, #[body] p: &Patient, #[header("If-None-Exist")] condition: Option<&str>) -> Result<Created<Patient>>;

    #[put("Patient/{id}")]
    pub async fn update(&self, id: &str, #[body] p: &Patient, #[header("If-Match")] version: Option<&str>) -> Result<Patient>;

    #[delete("Patient/{id}")]
    pub async fn delete(&self, id: &str) -> Result<()>;

    #[get("metadata")]
    pub async fn capabilities(&self) -> Result<JsonResource>;

    #[get("Observation/{id}")]
    pub async fn raw(&self, id: &str) -> Result<FhirResponse>;

    pub fn base(&self) -> &str {
        self.fhir.base().as_str()
    }
}

pub async fn use_every_method(c: &Client, p: &Patient) -> Result<()> {
    let _: Patient = c.read("1").await?;
    let _: Patient = c.vread("1", 2).await?;
    let _: Bundle<Patient> = c.search("Smith", Some(10)).await?;
    let _: Bundle<Patient> = c.search_any(&SearchParams::new()).await?;
    let _: Bundle<Patient> = c.search_by_example(p).await?;
    let _: Created<Patient> = c.create(p, None).await?;
    let _: Patient = c.update("1", p, Some("W/\"1\"")).await?;
    c.delete("1").await?;
    let _: JsonResource = c.capabilities().await?;
    let _: FhirResponse = c.raw("1").await?;
    let _: &str = c.base();
    Ok(())
}

fn main() {}
