#![allow(unused_imports)] // each case imports the same names; not all use them
use auth_core::Result;
use auth_fhir::{Bundle, Created, FhirClient, Patient};
use auth_macros::authenticated_api;

// A type the runtime cannot put in a path is reported by rustc at the parameter.

pub struct Id(String);

pub struct Client {
    fhir: FhirClient,
}

#[authenticated_api]
impl Client {
    #[get("Patient/{id}")]
    pub async fn read(&self, id: Id) -> Result<Patient>;
}

fn main() {}
