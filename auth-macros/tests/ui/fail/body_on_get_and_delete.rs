#![allow(unused_imports)] // each case imports the same names; not all use them
use auth_core::Result;
use auth_fhir::{Bundle, Created, FhirClient, Patient};
use auth_macros::authenticated_api;

pub struct Client {
    fhir: FhirClient,
}

#[authenticated_api]
impl Client {
    #[get("Patient")]
    pub async fn search(&self, #[body] filter: &Patient) -> Result<Bundle<Patient>>;

    #[delete("Patient/{id}")]
    pub async fn delete(&self, id: &str, #[body] why: &str) -> Result<()>;
}
fn main() {}
