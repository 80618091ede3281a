//! The sandbox spoken to directly: its FHIR server (interaction by interaction, and
//! behind each emulator), the test identity provider on the shared registry and
//! fault knobs, and its robustness as a standalone server. One test binary for the
//! crate.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod fhir_common;
mod fhir_emulators;
mod fhir_export;
mod fhir_history;
mod fhir_knobs;
mod fhir_operations;
mod fhir_patch;
mod fhir_rest;
mod fhir_search;
mod fhir_store;
mod fhir_transaction;
mod idp;
mod robustness;
