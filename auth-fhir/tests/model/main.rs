//! auth-fhir's integration tests, one binary: the model against the official FHIR
//! R4 examples.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod examples;
