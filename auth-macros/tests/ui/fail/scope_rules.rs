#![allow(unused_imports)] // each case imports the same names; not all use them
use auth_core::Result;
use auth_fhir::{Bundle, Created, FhirClient, Patient};
use auth_macros::authenticated_api;
use auth_fhir::{JsonResource, Transaction, TransactionResponse};

// Where the path names no resource type, the endpoint declares its SMART
// scopes; a declared scope is a SMART v2 scope.

pub struct Client {
    fhir: FhirClient,
}

#[authenticated_api]
impl Client {
    #[transaction]
    pub async fn submit(&self, #[body] bundle: &Transaction) -> Result<TransactionResponse>;

    #[operation("$reindex")]
    pub async fn reindex(&self) -> Result<JsonResource>;

    #[history]
    pub async fn changes(&self) -> Result<Bundle<JsonResource>>;

    #[get("{kind}/{id}")]
    pub async fn anything(&self, kind: &str, id: &str) -> Result<JsonResource>;

    #[get("Patient/{id}/Observation")]
    pub async fn compartment(&self, id: &str) -> Result<Bundle<JsonResource>>;

    #[get("Patient/{id}")]
    #[scope("Patient.read")]
    pub async fn v1_style(&self, id: &str) -> Result<Patient>;

    #[get("Patient/{id}")]
    #[scope("system/Patient.sr")]
    pub async fn out_of_order(&self, id: &str) -> Result<Patient>;

    #[get("Patient/{id}")]
    #[scope("system/Patient.r")]
    #[scope("system/Patient.s")]
    pub async fn twice(&self, id: &str) -> Result<Patient>;

    #[get("Patient/{id}")]
    #[scope(all)]
    pub async fn unknown_word(&self, id: &str) -> Result<Patient>;

    #[get("Patient/{id}")]
    #[scope()]
    pub async fn empty(&self, id: &str) -> Result<Patient>;
}

fn main() {}
