//! # auth-fhir
//!
//! FHIR R4 on top of the [`auth_core`] token engine: a light model ([`model`]), the
//! REST runtime ([`client`]) whose every call carries a valid token, FHIR failures
//! with their OperationOutcome ([`error`]), and the runtime support that
//! `#[authenticated_api]` expansions call.
//!
//! | module | holds |
//! |---|---|
//! | [`client`] | [`FhirClient`]: read, vread, search with paging, create, update, delete, metadata |
//! | [`model`] | Patient, `Bundle<R>`, OperationOutcome, and [`JsonResource`] for every other type |
//! | [`error`] | [`FhirError`], the FHIR failure inside an [`auth_core::Error`] |

pub mod client;
pub mod error;
pub mod model;

#[doc(hidden)]
#[path = "private.rs"]
pub mod __private;

pub use client::{Created, FHIR_JSON, FhirClient, FhirResponse, SearchParams};
pub use error::{FhirError, FhirErrorExt};
pub use model::{
    Address, Bundle, BundleEntry, BundleLink, CodeableConcept, Coding, ContactPoint, EntryResource,
    Extension, HumanName, Identifier, JsonResource, Meta, OperationOutcome, OperationOutcomeIssue, Patient,
    Reference, Resource, ResourceType,
};
