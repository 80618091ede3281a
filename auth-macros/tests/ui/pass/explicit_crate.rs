//! `crate = "…"` names the FHIR runtime: directly, or through a re-export.
use auth_core::Result;
use auth_fhir::{Bundle, Created, FhirClient, Patient, SearchParams};
use auth_macros::authenticated_api;

/// An application's own way to the runtime.
mod platform {
    pub use auth_fhir as fhir;
}

pub struct Direct {
    fhir: FhirClient,
}

#[authenticated_api(crate = "auth_fhir")]
impl Direct {
    #[get("Patient/{id}")]
    pub async fn read(&self, id: &str) -> Result<Patient>;

    #[get("Patient")]
    pub async fn search(&self, #[params] params: &SearchParams, #[query("_count")] count: Option<u32>) -> Result<Bundle<Patient>>;
}

pub struct Reexported {
    api: FhirClient,
}

#[authenticated_api(client = api, crate = "crate::platform::fhir")]
impl Reexported {
    #[post("Patient")]
    pub async fn create(&self, #[body] p: &Patient, #[header("If-None-Exist")] condition: Option<&str>) -> Result<Created<Patient>>;

    #[delete("Patient/{id}")]
    pub async fn delete(&self, id: &str) -> Result<()>;
}

pub async fn use_them(direct: &Direct, reexported: &Reexported, p: &Patient) -> Result<()> {
    let _: Patient = direct.read("1").await?;
    let _: Bundle<Patient> = direct.search(&SearchParams::new(), Some(10)).await?;
    let _: Created<Patient> = reexported.create(p, None).await?;
    reexported.delete("1").await
}

fn main() {}
