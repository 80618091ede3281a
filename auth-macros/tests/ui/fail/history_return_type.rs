#![allow(unused_imports)] // each case imports the same names; not all use them
use auth_core::Result;
use auth_fhir::{Bundle, Created, FhirClient, Patient};
use auth_macros::authenticated_api;
use auth_fhir::{FhirResponse, JsonResource};

// A history is a Bundle: rustc reports any other return type there.

pub struct Client {
    fhir: FhirClient,
}

#[authenticated_api]
impl Client {
    #[history("Patient/{id}")]
    pub async fn one(&self, id: &str) -> Result<Patient>;

    #[history] #[scope("system/*.s")]
    pub async fn system(&self) -> Result<JsonResource>;

    #[history("Patient")]
    pub async fn nothing(&self) -> Result<()>;

    // Fine.
    #[history("Patient")]
    pub async fn of_type(&self) -> Result<Bundle<Patient>>;

    #[history] #[scope("system/*.s")]
    pub async fn raw(&self) -> Result<FhirResponse>;
}

fn main() {}
