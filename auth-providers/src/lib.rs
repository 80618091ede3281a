//! # auth-providers
//!
//! Credential sources for the vendors this project was specified from, each a
//! [`CredentialSource`](auth_core::CredentialSource) with a typed builder, one
//! module (and one cargo feature, all on by default) per vendor. Their emulators
//! live in the `auth-sandbox` crate.
//!
//! | module | vendor |
//! |---|---|
//! | [`santedb`] | SanteDB 2.x and 3.x (device authentication, mutual TLS, id_token claims, sign-out) |
//! | [`aidbox`] | Aidbox (Basic or JSON client authentication, session revocation) |
//! | [`msk`] | MSK Blaze FHIR API behind IBM API Connect (partner id, research study) |
//! | [`graphnet`] | Graphnet CareCentric behind Azure API Management (JWT expiry, subscription key) |
//! | [`smart`] | SMART Backend Services (`private_key_jwt` with RS384 or ES384, discovery); Aidbox supports it too |
//!
//! The generic OAuth 2.0 client credentials source, for every other server, is
//! [`auth_core::oauth2::OAuth2Source`].

#[cfg(feature = "aidbox")]
pub mod aidbox;
#[cfg(feature = "graphnet")]
pub mod graphnet;
#[cfg(feature = "msk")]
pub mod msk;
#[cfg(feature = "santedb")]
pub mod santedb;
#[cfg(feature = "smart")]
pub mod smart;

// Compiles the code in the guide for provider authors, so it cannot rot.
#[doc = include_str!("../PROVIDERS.md")]
#[cfg(doctest)]
pub struct ProvidersGuideDoctests;
