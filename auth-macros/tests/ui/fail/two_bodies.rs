#![allow(unused_imports)] // each case imports the same names; not all use them
use auth_core::Result;
use auth_fhir::{Bundle, Created, FhirClient, Patient};
use auth_macros::authenticated_api;

pub struct Client {
    fhir: FhirClient,
}

#[authenticated_api]
impl Client {
    #[post("Patient")]
    pub async fn create(&self, #[body] a: &Patient, #[body] b: &Patient) -> Result<Created<Patient>>;
}
fn main() {}
