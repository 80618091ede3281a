//! Least privilege from the macro: the SMART v2 scopes `#[authenticated_api]`
//! derives for a client, and a token from oidc-provider restricted to them.

/// Scopes the provider knows besides the suite's default ones: those the
/// generated client below needs.
pub(crate) const EXTRA_SCOPES: &[&str] = &["system/Observation.c", "system/Patient.r"];
