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
//! ## Options
//!
//! - `client = field`: the field of `self` holding the `FhirClient` (default:
//!   `fhir`).
//!
//! Any other option is refused.
//!
//! ## Checks
//!
//! Checked at compile time, every mistake reported at once, at its own span:
//! - every `{placeholder}` has a parameter, and every path parameter a placeholder;
//! - the path is relative, with whole-segment placeholders, no query, no `..`;
//! - at most one `#[body]`, and none on GET or DELETE;
//! - no `Authorization` header parameter (the token manager owns it);
//! - a path about a resource type (`Patient/{id}`) returns that type (or a
//!   `Bundle`/`Created` of it, `JsonResource`, `FhirResponse` or `()`); rustc
//!   reports a mismatch at the return type;
//! - endpoints are `async fn(&self, …) -> Result<T>`; unknown options are refused.
//!
//! When there are mistakes, the macro emits its errors and the block with every
//! endpoint given a placeholder body, so rustc adds no errors of its own about
//! the block ("missing body", "cannot find attribute `get`") or about code that
//! calls its methods: the errors are the macro's, and only those.
//!
//! ## Inside
//!
//! As serde_derive and thiserror are built: `syntax.rs` reads the block (syn keeps
//! a method without a body as bare tokens); `parse.rs` builds the model of
//! `ast.rs`, which borrows that syntax tree, reading the options and attributes
//! with `attr.rs` and each path once with `template.rs`; `valid.rs` checks the
//! rules between the parts; `expand.rs` writes the methods; `fallback.rs` writes the block when there are
//! errors. Every error goes to the `Ctxt` of `ctxt.rs`, which combines them.

#![warn(missing_docs, unreachable_pub)]

mod ast;
mod attr;
mod ctxt;
mod expand;
mod fallback;
mod parse;
mod syntax;
mod template;
mod valid;

use proc_macro::TokenStream;

/// Generates the bodies of typed FHIR endpoints. See the crate documentation.
#[proc_macro_attribute]
pub fn authenticated_api(attr: TokenStream, item: TokenStream) -> TokenStream {
    expand::authenticated_api(attr.into(), item.into()).into()
}

#[cfg(test)]
mod snapshots;
