#![allow(unused_imports)] // each case imports the same names; not all use them
use auth_core::Result;
use auth_fhir::{Bundle, Created, FhirClient, Patient};
use auth_macros::authenticated_api;
use auth_fhir::SearchParams;

// PUT and DELETE of a type (no id) are conditional: they need a condition. A PUT
// sends the resource.

pub struct Client {
    fhir: FhirClient,
}

#[authenticated_api]
impl Client {
    #[delete("Patient")]
    pub async fn delete_everything(&self) -> Result<()>;

    #[delete("Patient")]
    pub async fn header_is_no_condition(&self, #[header("X-Reason")] why: &str) -> Result<()>;

    #[put("Patient")]
    pub async fn update_which(&self, #[body] p: &Patient) -> Result<Created<Patient>>;

    #[put("Patient/{id}")]
    pub async fn update_nothing(&self, id: &str) -> Result<Patient>;

    #[put("Patient")]
    pub async fn neither(&self) -> Result<Created<Patient>>;

    // Fine: conditions given.
    #[put("Patient")]
    pub async fn upsert(&self, #[query] identifier: &str, #[body] p: &Patient) -> Result<Created<Patient>>;

    #[delete("Patient")]
    pub async fn delete_where(&self, #[params] condition: &SearchParams) -> Result<()>;
}

fn main() {}
