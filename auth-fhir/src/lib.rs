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
//!
//! ```no_run
//! use auth_core::oauth2::OAuth2Source;
//! use auth_core::{AuthClient, ClientSecret, TokenManager};
//! use auth_fhir::{FhirClient, FhirErrorExt, Patient, SearchParams};
//!
//! # async fn demo() -> auth_core::Result<()> {
//! let source = OAuth2Source::builder("https://idp.example/token", "my-client", ClientSecret::new("s"))
//!     .scopes(["system/Patient.rs"])
//!     .build()?;
//! let fhir = FhirClient::new(AuthClient::new(TokenManager::new(source))?, "https://fhir.example/r4")?;
//! let found = fhir.search::<Patient>(&SearchParams::new().add("name", "Chalmers")).await?;
//! for patient in found.matches() {
//!     println!("{:?}", patient.id);
//! }
//! match fhir.read::<Patient>("no-such-id").await {
//!     Err(e) => println!("{:?}", e.operation_outcome().map(|o| &o.issue)),
//!     Ok(patient) => println!("{patient:?}"),
//! }
//! # Ok(()) }
//! ```

pub mod client;
pub mod error;
pub mod model;

#[doc(hidden)]
#[path = "private.rs"]
pub mod __private;

pub use client::{Created, FHIR_JSON, FhirClient, FhirResponse, SearchParams};
pub use error::{FhirError, FhirErrorExt};
pub use model::{
    Address, AllergyIntolerance, Binary, Bundle, BundleEntry, BundleEntryRequest, BundleEntryResponse,
    BundleEntrySearch, BundleLink, CapabilityStatement, CodeableConcept, Coding, Condition, ContactPoint,
    Decimal, DiagnosticReport, Encounter, EntryResource, Extension, Group, HumanName, Identifier,
    Immunization, JsonResource, Location, MedicationRequest, Meta, Observation, OperationOutcome,
    OperationOutcomeIssue, Organization, Parameters, Patient, Practitioner, PractitionerRole, Procedure,
    Quantity, Reference, Resource, ResourceType,
};
