#![allow(unused_imports)] // each case imports the same names; not all use them
use auth_core::Result;
use auth_fhir::{Bundle, Created, FhirClient, Patient};
use auth_macros::authenticated_api;

// A history is of a resource, a type or the server; the macro adds `_history`.

pub struct Client {
    fhir: FhirClient,
}

#[authenticated_api]
impl Client {
    #[history("Patient/{id}/_history")]
    pub async fn written_out(&self, id: &str) -> Result<Bundle<Patient>>;

    #[history("_history")]
    pub async fn system_written_out(&self) -> Result<Bundle<Patient>>;

    #[history("Patient/{id}/Observation")]
    pub async fn compartment(&self, id: &str) -> Result<Bundle<Patient>>;

    #[history("Patient")]
    pub async fn with_body(&self, #[body] p: &Patient) -> Result<Bundle<Patient>>;

    #[history]
    pub async fn system(&self, since: &str) -> Result<Bundle<Patient>>;

    #[history()]
    pub async fn empty_parens(&self) -> Result<Bundle<Patient>>;
}

fn main() {}
