#![allow(unused_imports)] // each case imports the same names; not all use them
use auth_core::Result;
use auth_fhir::{Bundle, Created, FhirClient, Patient};
use auth_macros::authenticated_api;
use auth_fhir::JsonResource;

// An operation's path ends in a valid `$name`, on the server, a type or one
// resource; `get` is its only option, and a GET takes no body.

pub struct Client {
    fhir: FhirClient,
}

#[authenticated_api]
impl Client {
    #[operation("Patient/{id}/everything")]
    pub async fn no_dollar(&self, id: &str) -> Result<JsonResource>;

    #[operation("Patient/$everything/{id}")]
    pub async fn not_last(&self, id: &str) -> Result<JsonResource>;

    #[operation("Patient/$every.thing")]
    pub async fn bad_name(&self) -> Result<JsonResource>;

    #[operation("Patient/{id}/_history/$meta")]
    pub async fn too_deep(&self, id: &str) -> Result<JsonResource>;

    #[operation("Patient/{id}/$everything", get)]
    pub async fn get_with_body(&self, id: &str, #[body] input: &JsonResource) -> Result<Bundle<JsonResource>>;

    #[operation("$ping", post)]
    pub async fn post_option(&self) -> Result<JsonResource>;

    #[operation]
    pub async fn no_path(&self) -> Result<JsonResource>;
}

fn main() {}
