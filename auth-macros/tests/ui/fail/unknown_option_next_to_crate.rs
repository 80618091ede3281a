#![allow(unused_imports)] // each case imports the same names; not all use them
use auth_core::Result;
use auth_fhir::{Bundle, Created, FhirClient, Patient};
use auth_macros::authenticated_api;

pub struct Client {
    fhir: FhirClient,
}

#[authenticated_api(crate = "auth_fhir", cache = true)]
impl Client {
    #[get("Patient/{id}")]
    pub async fn read(&self, id: &str) -> Result<Patient>;
}

fn main() {}
