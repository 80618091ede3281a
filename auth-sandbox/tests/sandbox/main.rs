//! The sandbox spoken to directly: its FHIR store, and its robustness as a
//! standalone server. One test binary for the crate.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod fhir_store;
mod robustness;
