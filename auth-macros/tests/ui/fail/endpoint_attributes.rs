#![allow(unused_imports)] // each case imports the same names; not all use them
use auth_core::Result;
use auth_fhir::{Bundle, Created, FhirClient, Patient};
use auth_macros::authenticated_api;

// A bodiless method needs one endpoint attribute; the message lists them all.

pub struct Client {
    fhir: FhirClient,
}

#[authenticated_api]
impl Client {
    /// Forgot the attribute.
    pub async fn read(&self, id: &str) -> Result<Patient>;

    #[get("Patient/{id}")]
    #[history("Patient/{id}")]
    pub async fn two(&self, id: &str) -> Result<Patient>;

    #[patch]
    pub async fn no_path(&self, #[body] ops: &serde_json::Value) -> Result<Patient>;
}

fn main() {}
