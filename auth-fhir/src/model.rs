//! The FHIR R4 model: typed resources and data types generated from the official
//! StructureDefinitions, the hand-written generic [`Bundle`], and [`JsonResource`]
//! for every other type.
//!
//! | what | types |
//! |---|---|
//! | resources | [`Patient`], [`Observation`], [`Encounter`], [`Condition`], [`Practitioner`], [`PractitionerRole`], [`Organization`], [`Location`], [`MedicationRequest`], [`AllergyIntolerance`], [`Procedure`], [`DiagnosticReport`], [`Immunization`], [`Group`], [`Binary`], [`OperationOutcome`], [`Parameters`], [`CapabilityStatement`] |
//! | containers | [`Bundle<R>`](Bundle), its [`BundleEntry<R>`](BundleEntry) with [`BundleEntryRequest`], [`BundleEntryResponse`], [`BundleEntrySearch`], and [`BundleLink`] |
//! | any other resource | [`JsonResource`] |
//! | data types | [`CodeableConcept`], [`Coding`], [`Reference`], [`Quantity`] (and its profiles [`Age`], [`Count`], [`Distance`], [`Duration`], [`SimpleQuantity`], [`MoneyQuantity`]), [`Period`], [`Range`], [`Ratio`], [`Identifier`], [`HumanName`], [`Address`], [`ContactPoint`], [`Attachment`], [`Annotation`], [`Timing`], [`Dosage`], [`SampledData`], [`Money`], [`Meta`], [`Narrative`], [`Signature`], [`Extension`], … |
//! | the primitive `decimal` | [`Decimal`], exactly as written |
//!
//! How they are shaped:
//! * every element is a field named in snake case (`birthDate` → `birth_date`;
//!   `type` → `type_`, `use` → `use_`), an `Option` or, when it repeats, a `Vec`,
//!   required ones included: a server may send less than the specification asks,
//!   and a read must not fail on it;
//! * a backbone element is a struct named for its path (`Encounter.participant` →
//!   [`EncounterParticipant`]);
//! * a choice element (`value[x]`) is an enum with one variant per type
//!   ([`ObservationValue::Quantity`], [`ObservationValue::String`], …), written back
//!   under its own key (`valueQuantity`);
//! * codes, dates and URIs are `String`s; `integer` is `i32`, `positiveInt` and
//!   `unsignedInt` are `u32`, `decimal` is [`Decimal`];
//! * an extension's value stays JSON in its `extra` (see [`Extension::value`]);
//! * nothing is lost: every struct keeps the elements it does not name in `extra`
//!   (primitive extensions such as `_birthDate`, elements of later FHIR versions),
//!   so a read-modify-update sends back everything the server sent.

// The codec's macros are used by the modules after it.
#[macro_use]
mod codec;
mod bundle;
mod decimal;
mod generated;
mod methods;
mod resource;

pub use bundle::{Bundle, BundleEntry, BundleSearch, BundleTag, EntryResource};
pub use decimal::{Decimal, DecimalError};
pub use generated::*;
pub use resource::{JsonResource, Resource, ResourceType, TypeTag};

#[cfg(test)]
mod tests;
