#![allow(unused_imports)] // each case imports the same names; not all use them
use auth_core::Result;
use auth_fhir::{Bundle, Created, FhirClient, Patient};
use auth_macros::authenticated_api;
use serde_json::Value;

// A PATCH sends one JSON Patch to one resource; #[if_match] makes a change
// conditional, so it goes on changes only, once.

pub struct Client {
    fhir: FhirClient,
}

#[authenticated_api]
impl Client {
    #[patch("Patient/{id}")]
    pub async fn no_patch(&self, id: &str) -> Result<Patient>;

    #[patch("Patient")]
    pub async fn whole_type(&self, #[body] ops: &Value) -> Result<Patient>;

    #[patch("Patient/{id}/_history/{vid}")]
    pub async fn a_version(&self, id: &str, vid: &str, #[body] ops: &Value) -> Result<Patient>;

    #[get("Patient/{id}")]
    pub async fn read(&self, id: &str, #[if_match] version: &str) -> Result<Patient>;

    #[patch("Patient/{id}")]
    pub async fn twice(&self, id: &str, #[body] ops: &Value, #[if_match] a: &str, #[if_match] b: &str) -> Result<Patient>;

    #[put("Patient/{id}")]
    pub async fn both(&self, id: &str, #[body] p: &Patient, #[if_match] v: &str, #[header("if-match")] raw: &str) -> Result<Patient>;

    #[delete("Patient/{id}")]
    pub async fn with_args(&self, id: &str, #[if_match("W/1")] v: &str) -> Result<()>;
}

fn main() {}
