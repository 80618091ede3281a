#![allow(unused_imports)] // each case imports the same names; not all use them
use auth_core::Result;
use auth_fhir::{Bundle, Created, FhirClient, Patient};
use auth_macros::authenticated_api;

pub struct A {
    fhir: FhirClient,
}

#[authenticated_api(crate = "not a path")]
impl A {
    #[get("Patient/{id}")]
    pub async fn read(&self, id: &str) -> Result<Patient>;
}

pub struct B {
    fhir: FhirClient,
}

#[authenticated_api(crate = "auth_fhir::<T>")]
impl B {
    #[get("Patient/{id}")]
    pub async fn read(&self, id: &str) -> Result<Patient>;
}

pub struct C {
    fhir: FhirClient,
}

#[authenticated_api(crate = auth_fhir)]
impl C {
    #[get("Patient/{id}")]
    pub async fn read(&self, id: &str) -> Result<Patient>;
}

pub struct D {
    fhir: FhirClient,
}

#[authenticated_api(crate = "auth_fhir", crate = "auth_fhir")]
impl D {
    #[get("Patient/{id}")]
    pub async fn read(&self, id: &str) -> Result<Patient>;
}

fn main() {}
