use auth_core::Result;
use auth_fhir::{Bundle, Created, FhirClient, FhirResponse, JsonResource, Patient, SearchParams};
use auth_macros::authenticated_api;

#[derive(Clone)]
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

    /// Ordinary methods stay as they are.
    pub fn base(&self) -> &str {
        self.fhir.base().as_str()
    }
}

fn main() {}
