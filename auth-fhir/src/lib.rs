//! # auth-fhir
//!
//! FHIR R4 on top of the [`auth_core`] token engine: a typed model ([`model`]), the
//! REST runtime ([`client`]) whose every call carries a valid token, FHIR failures
//! with their OperationOutcome ([`error`]), and the runtime support that
//! `#[authenticated_api]` expansions call.
//!
//! | module | holds |
//! |---|---|
//! | [`bulk`] | Bulk Data `$export`: kick-off, polling, streamed downloads, resume, a fleet sharing one export |
//! | [`client`] | [`FhirClient`]: read, vread, create, update and conditional update, delete and conditional delete, capabilities and the R4 check |
//! | [`search`] | [`SearchParams`]; search by GET or POST, `_summary=count`, pages as streams, included resources |
//! | [`history`] | [`History`]: instance, type and system history, paged |
//! | [`patch`] | JSON Patch under `If-Match`, and a patch computed from two versions |
//! | [`transaction`] | [`Transaction`]: batch and transaction Bundles with `urn:uuid:` references, read back as per-entry outcomes |
//! | [`operation`] | [`Operation`]: `$operations` at system, type and instance level, by POST or GET |
//! | [`reference`](mod@reference) | resolving a Reference: contained, in a Bundle, relative, or on the same server |
//! | [`model`] | typed resources generated from the official R4 definitions, the generic [`Bundle<R>`](Bundle), [`Decimal`], and [`JsonResource`] for every other type |
//! | [`instant`] | FHIR instants read and written with `jiff`: [`parse_instant`](instant::parse_instant), [`format_instant`](instant::format_instant) |
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
//!
//! ## The typed model
//!
//! Generated from the StructureDefinitions of FHIR R4 4.0.1 (by
//! `auth-fhir/codegen/generate.py`; its output is committed): [`Patient`],
//! [`Observation`], [`Encounter`], [`Condition`], [`Practitioner`],
//! [`PractitionerRole`], [`Organization`], [`Location`], [`MedicationRequest`],
//! [`AllergyIntolerance`], [`Procedure`], [`DiagnosticReport`], [`Immunization`],
//! [`Group`], [`Binary`], [`OperationOutcome`], [`Parameters`] and
//! [`CapabilityStatement`], with their backbone elements (`Encounter.participant`
//! is [`EncounterParticipant`](model::EncounterParticipant)) and every data type
//! they use ([`CodeableConcept`], [`Reference`], [`Quantity`], [`Period`](model::Period),
//! [`Timing`](model::Timing), [`Dosage`](model::Dosage), …). Every element is an
//! `Option` or a `Vec`; a choice element is an enum, written back under its own key:
//!
//! ```
//! use auth_fhir::model::{Observation, ObservationValue};
//!
//! let text = r#"{"resourceType": "Observation", "status": "final", "code": {"text": "glucose"},
//!               "valueQuantity": {"value": 6.30, "unit": "mmol/l"}, "_status": {"id": "s1"}}"#;
//! let mut obs: Observation = serde_json::from_str(text)?;
//! if let Some(ObservationValue::Quantity(q)) = &obs.value {
//!     assert_eq!(q.value.as_ref().map(|v| v.as_str()), Some("6.30"));
//! }
//! obs.status = Some("amended".into());
//! let back = serde_json::to_string(&obs)?;
//! assert!(back.contains(r#""valueQuantity":{"value":6.30,"unit":"mmol/l"}"#));
//! assert!(back.contains(r#""_status":{"id":"s1"}"#)); // kept: the model does not name it
//! # Ok::<(), serde_json::Error>(())
//! ```
//!
//! Nothing a server sends is lost: every struct keeps the elements it does not name
//! (primitive extensions such as `_birthDate`, elements of later FHIR versions) in
//! its `extra`, and writes them back, so a read-modify-update returns all of it.
//! Every official example of these types reads and writes back unchanged
//! (`auth-fhir/tests/model/examples.rs`). An extension's value stays JSON
//! ([`Extension::value`]). The rules and the full list are in [`model`].
//!
//! ## Decimals
//!
//! A FHIR `decimal` is a [`Decimal`]: the number's text, so `1.50` stays `1.50` (FHIR
//! requires its precision to survive). This crate turns on serde_json's
//! `arbitrary_precision`, which is what keeps it, and which makes every
//! `serde_json::Value` keep its numbers' text too: a [`JsonResource`] sends back the
//! decimals it read. (serde_json spells an exponent `e+`/`e-`: `1E3` comes back as
//! `1e+3`, the same number with the same digits.)
//!
//! ## A resource type of your own
//!
//! Any type that implements [`ResourceType`] and [`Resource`] (serde's `Serialize`
//! and `Deserialize`, a type name, an id) works with [`FhirClient`], in a
//! [`Bundle`], and as the return type of an `#[authenticated_api]` method:
//!
//! ```
//! use auth_fhir::model::TypeTag;
//! use auth_fhir::{Bundle, Decimal, Resource, ResourceType};
//! use serde::{Deserialize, Serialize};
//! use serde_json::{Map, Value};
//!
//! /// An Appointment, with the elements this application reads.
//! #[derive(Debug, Clone, Serialize, Deserialize)]
//! #[serde(rename_all = "camelCase")]
//! struct Appointment {
//!     resource_type: TypeTag<Appointment>, // refuses any other resourceType
//!     #[serde(default, skip_serializing_if = "Option::is_none")]
//!     id: Option<String>,
//!     #[serde(default, skip_serializing_if = "Option::is_none")]
//!     status: Option<String>,
//!     #[serde(default, skip_serializing_if = "Option::is_none")]
//!     priority_score: Option<Decimal>,
//!     /// Everything else, kept for the update.
//!     #[serde(flatten)]
//!     extra: Map<String, Value>,
//! }
//!
//! impl ResourceType for Appointment {
//!     const TYPE: &'static str = "Appointment";
//! }
//!
//! impl Resource for Appointment {
//!     fn id(&self) -> Option<&str> {
//!         self.id.as_deref()
//!     }
//!     fn version_id(&self) -> Option<&str> {
//!         self.extra.get("meta")?.get("versionId")?.as_str()
//!     }
//! }
//!
//! let page: Bundle<Appointment> = serde_json::from_str(
//!     r#"{"resourceType": "Bundle", "type": "searchset", "entry": [{"resource":
//!        {"resourceType": "Appointment", "id": "a1", "status": "booked", "priorityScore": 0.50,
//!         "participant": [{"status": "accepted"}]}}]}"#,
//! )?;
//! let a = page.matches().next().unwrap();
//! assert_eq!((a.id(), a.status.as_deref()), (Some("a1"), Some("booked")));
//! assert_eq!(a.priority_score.as_ref().map(Decimal::as_str), Some("0.50"));
//! assert!(a.extra.contains_key("participant"));
//! // With a client: fhir.read::<Appointment>("a1"), fhir.search::<Appointment>(&params), …
//! # Ok::<(), serde_json::Error>(())
//! ```
//!
//! A `#[serde(flatten)]` catch-all map is safe; a flattened `Option<enum>` for a
//! choice element is not: serde drops the choice's value on the way in (the key ends
//! up in neither the field nor the map), which is why this crate's model has its own
//! codec. Use [`Decimal`] for a FHIR decimal, so its precision survives.
//!
//! ## Regenerating the model
//!
//! `python3 auth-fhir/codegen/generate.py` (Python 3.11, standard library; npm
//! fetches the definitions), then `cargo test -p auth-fhir`: see
//! `auth-fhir/codegen/README.md`.

pub mod bulk;
pub mod client;
pub mod error;
pub mod history;
pub mod instant;
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
    Address, AllergyIntolerance, Binary, Bundle, BundleEntry, BundleEntryRequest, BundleEntryResponse,
    BundleEntrySearch, BundleLink, CapabilityStatement, CodeableConcept, Coding, Condition, ContactPoint,
    Decimal, DiagnosticReport, Encounter, EntryResource, Extension, Group, HumanName, Identifier,
    Immunization, JsonResource, Location, MedicationRequest, Meta, Observation, OperationOutcome,
    OperationOutcomeIssue, Organization, Parameters, Patient, Practitioner, PractitionerRole, Procedure,
    Quantity, Reference, Resource, ResourceType,
};
pub use operation::Operation;
pub use patch::JSON_PATCH;
pub use reference::ReferenceContext;
pub use retry::{FhirRetry, FhirStats};
pub use search::{FhirStream, SearchParams};
pub use transaction::{BundleKind, EntryOutcome, EntryRef, Transaction, TransactionResponse};
