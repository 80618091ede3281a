//! FHIR R4: a light model ([`model`]) and the REST runtime ([`client`]) that
//! generated clients call.

pub mod client;
pub mod model;

#[doc(hidden)]
#[path = "private.rs"]
pub mod __private;

pub use client::{Created, FhirClient, FhirResponse, SearchParams};
pub use model::{
    Address, Bundle, BundleEntry, BundleLink, CodeableConcept, Coding, ContactPoint, EntryResource,
    Extension, HumanName, Identifier, JsonResource, Meta, OperationOutcome, OperationOutcomeIssue, Patient,
    Reference, Resource, ResourceType,
};
