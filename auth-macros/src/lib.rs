//! # auth-macros
//!
//! `#[authenticated_api]` turns bodiless `async fn` signatures in an `impl` block of
//! a client struct into typed FHIR calls. Every call gets its token from the
//! client's token manager, carries the vendor's per-request extras, and is
//! replayed once if the server rejects the token.
//!
//! ```
//! use auth_core::Result;
//! use auth_fhir::{Bundle, Created, FhirClient, Patient};
//!
//! pub struct Patients { fhir: FhirClient }
//!
//! #[auth_macros::authenticated_api]
//! impl Patients {
//!     #[get("Patient/{id}")]
//!     pub async fn read(&self, id: &str) -> Result<Patient>;
//!
//!     #[get("Patient")]
//!     pub async fn search(&self, #[query] name: &str, #[query("_count")] count: Option<u32>) -> Result<Bundle<Patient>>;
//!
//!     #[post("Patient")]
//!     pub async fn create(&self, #[body] patient: &Patient) -> Result<Created<Patient>>;
//! }
//! ```
//!
//! Parameters: one named like a `{placeholder}` fills it (or `#[path("name")]`);
//! `#[query]` / `#[query("name")]` (an `Option` is left out when `None`);
//! `#[params]` for a whole `SearchParams`; `#[header("Name")]`; `#[body]`.
//!
//! Checked at compile time, every mistake reported at once:
//! - every `{placeholder}` has a parameter, and every path parameter a placeholder;
//! - the path is relative, with whole-segment placeholders, no query, no `..`;
//! - at most one `#[body]`, and none on GET or DELETE;
//! - no `Authorization` header parameter (the token manager owns it);
//! - a path about a resource type (`Patient/{id}`) returns that type (or a
//!   `Bundle`/`Created` of it, `JsonResource`, `FhirResponse` or `()`);
//! - endpoints are `async fn(&self, …) -> Result<T>`; unknown options are refused.

mod ctxt;
mod expand;
mod parse;
mod template;
mod validate;

use proc_macro::TokenStream;

/// Generates the bodies of typed FHIR endpoints. See the crate documentation.
#[proc_macro_attribute]
pub fn authenticated_api(attr: TokenStream, item: TokenStream) -> TokenStream {
    expand::authenticated_api(attr.into(), item.into()).into()
}

#[cfg(test)]
mod snapshots;
