//! The cross-crate integration suite, over real HTTP on loopback: one module per
//! behaviour it proves, one test binary (linking once is most of CI's time).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod bad_input;
mod bulk_export;
mod canary_engine;
mod canary_providers;
mod client_auth;
mod conformance;
mod dpop;
mod fetch_bounds;
mod fhir_client;
mod fhir_interactions;
mod fhir_retries;
mod fleet;
mod idp_outage;
mod key_rotation;
mod medplum;
mod metrics;
mod refresh_ahead;
mod replay;
mod reqwest_middleware;
mod robustness;
mod scopes;
mod shared_store;
mod single_flight;
mod token_parsing;
mod tower_layer;
mod transport;
