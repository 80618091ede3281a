#![allow(unused_imports)] // each case imports the same names; not all use them
use auth_core::Result;
use auth_fhir::{Bundle, Created, FhirClient, Patient};
use auth_macros::authenticated_api;

// A well-formed path that does not resolve: rustc reports it, once, at the string.

pub struct Client {
    fhir: FhirClient,
}

#[authenticated_api(crate = "auth_fhir::runtime")]
impl Client {
    #[get("Patient/{id}")]
    pub async fn read(&self, id: &str) -> Result<Patient>;

    #[post("Patient")]
    pub async fn create(&self, #[body] p: &Patient, #[query] mode: Option<&str>) -> Result<Created<Patient>>;
}

fn main() {}
