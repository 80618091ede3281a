#![allow(unused_imports)] // each case imports the same names; not all use them
use auth_core::Result;
use auth_fhir::{Bundle, FhirClient, Resource, ResourceType};
use auth_macros::authenticated_api;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize)]
pub struct Observation {
    id: Option<String>,
}

impl ResourceType for Observation {
    const TYPE: &'static str = "Observation";
}

impl Resource for Observation {
    fn id(&self) -> Option<&str> {
        self.id.as_deref()
    }
    fn version_id(&self) -> Option<&str> {
        None
    }
}

pub struct Client {
    fhir: FhirClient,
}

#[authenticated_api]
impl Client {
    #[get("Patient/{id}")]
    pub async fn read(&self, id: &str) -> Result<Bundle<Observation>>;
}

fn main() {}
