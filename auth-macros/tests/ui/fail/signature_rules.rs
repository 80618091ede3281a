#![allow(unused_imports)] // each case imports the same names; not all use them
use auth_core::Result;
use auth_fhir::{Bundle, Created, FhirClient, Patient};
use auth_macros::authenticated_api;

pub struct Client {
    fhir: FhirClient,
}

#[authenticated_api]
impl Client {
    #[get("Patient/{id}")]
    pub fn read(&self, id: &str) -> Result<Patient>;

    #[get("Patient/{id}")]
    pub async fn read_owned(self, id: &str) -> Result<Patient>;

    #[get("Patient/{id}")]
    pub async fn read_plain(&self, id: &str) -> Patient;
}
fn main() {}
