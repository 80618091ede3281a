//! The sandbox spoken to directly: its FHIR store, the test identity provider on the
//! shared registry and fault knobs, and its robustness as a standalone server. One
//! test binary for the crate.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod fhir_store;
mod idp;
mod robustness;
