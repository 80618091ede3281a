#![allow(unused_imports)] // each case imports the same names; not all use them
use auth_core::Result;
use auth_fhir::{Bundle, Created, FhirClient, Patient};
use auth_macros::authenticated_api;

pub struct Client {
    fhir: FhirClient,
}

#[authenticated_api]
impl Client {
    #[get("https://other.example/Patient/{id}")]
    pub async fn absolute(&self, id: &str) -> Result<Patient>;

    #[get("Patient/../Observation")]
    pub async fn dots(&self) -> Result<Patient>;

    #[get("Patient?name={name}")]
    pub async fn query_in_path(&self, name: &str) -> Result<Bundle<Patient>>;

    #[get("Patient/x{id}")]
    pub async fn partial(&self, id: &str) -> Result<Patient>;
}
fn main() {}
