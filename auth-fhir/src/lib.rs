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
//! | [`retry`] | [`FhirRetry`]: calls safe to repeat retried on 429, 503 and failed connections |
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
pub mod history;
pub mod model;
pub mod operation;
pub mod patch;
pub mod reference;
pub mod retry;
pub mod search;
pub mod transaction;

#[doc(hidden)]
#[path = "private.rs"]
pub mod __private;

pub use client::{Created, FHIR_JSON, FhirClient, FhirResponse};
pub use error::{FhirError, FhirErrorExt};
pub use history::History;
pub use model::{
    Address, Bundle, BundleEntry, BundleLink, CodeableConcept, Coding, ContactPoint, EntryResource,
    Extension, HumanName, Identifier, JsonResource, Meta, OperationOutcome, OperationOutcomeIssue, Patient,
    Reference, Resource, ResourceType,
};
pub use operation::Operation;
pub use patch::JSON_PATCH;
pub use reference::ReferenceContext;
pub use retry::{FhirRetry, FhirStats};
pub use search::{FhirStream, SearchParams};
pub use transaction::{BundleKind, EntryOutcome, EntryRef, Transaction, TransactionResponse};
