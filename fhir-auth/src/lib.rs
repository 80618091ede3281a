//! # fhir-auth
//!
//! Talk to FHIR servers from Rust with typed methods while OAuth 2.0
//! client-credentials tokens are acquired, cached, refreshed and attached for you.
//! This is the one crate an application depends on; it gathers the workspace's
//! crates behind features, as tokio does:
//!
//! | here | from | feature |
//! |---|---|---|
//! | the token engine at the root: [`TokenManager`], [`AuthClient`], [`CredentialSource`], [`oauth2`], [`store`], … | `auth-core` | always |
//! | [`fhir`]: the FHIR model and REST runtime | `auth-fhir` | always |
//! | [`authenticated_api`]: typed FHIR clients checked at compile time | `auth-macros` | `macros` (default) |
//! | one module per vendor: `santedb`, `aidbox`, `msk`, `graphnet`, `smart` | `auth-providers` | the vendor's name, or `providers` for all |
//! | `store::RedisStore`, one token for a whole fleet | `auth-core` | `redis` |
//! | `tower::AuthLayer`: authenticate any tower HTTP service (hyper-util, tonic) | `auth-core` | `tower` |
//! | `middleware::AuthMiddleware` for `reqwest-middleware` | `auth-core` | `reqwest-middleware` |
//! | counters and histograms through the `metrics` facade ([`metrics`] names them) | `auth-core` | `metrics` |
//!
//! `full` turns everything on.

pub use auth_core::*;
pub use auth_fhir as fhir;

#[cfg(feature = "macros")]
pub use auth_macros::authenticated_api;

#[cfg(feature = "aidbox")]
pub use auth_providers::aidbox;
#[cfg(feature = "graphnet")]
pub use auth_providers::graphnet;
#[cfg(feature = "msk")]
pub use auth_providers::msk;
#[cfg(feature = "santedb")]
pub use auth_providers::santedb;
#[cfg(feature = "smart")]
pub use auth_providers::smart;

// Compiles the README's examples as doctests, so they cannot rot (they use the
// optional parts, so with every feature on, as the README's test command runs).
#[doc = include_str!("../../README.md")]
#[cfg(all(doctest, feature = "full"))]
pub struct ReadmeDoctests;
