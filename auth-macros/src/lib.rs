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
//! ## Parameters
//!
//! - one named like a `{placeholder}` fills it (or `#[path("name")]` names it);
//! - `#[query]` / `#[query("name")]`: a query parameter (an `Option` is left out
//!   when `None`);
//! - `#[params]`: a whole `SearchParams`;
//! - `#[header("Name")]`: a header (an `Option` is left out when `None`);
//! - `#[if_match]`: on `#[put]`, `#[patch]` and `#[delete]`, a version id sent
//!   as `If-Match: W/"<version>"`, so the change is refused (412) if someone else
//!   changed the resource since (an `Option` is left out when `None`);
//! - `#[body]`: the request body, written as JSON (anything `Serialize`).
//!
//! ## Endpoints
//!
//! The attributes `#[get]`, `#[post]`, `#[put]`, `#[delete]` send their method to
//! their path. Beside them:
//!
//! **`#[patch("Type/{id}")]`** changes one resource with a JSON Patch: its
//! `#[body]` (a `json_patch::Patch`, or anything that serializes to the array of
//! operations) is sent as `application/json-patch+json`.
//!
//! **Conditional update and delete**: `#[put("Patient")]` and
//! `#[delete("Patient")]`, with no id, send their `#[query]` / `#[params]`
//! parameters as the search that says which resource (`PUT
//! Patient?identifier=…`). A conditional update answers like a create:
//! `Created<R>` says whether the resource was created or replaced. If every
//! condition parameter is `None` at run time, the call fails before it is sent.
//!
//! ```
//! use auth_core::Result;
//! use auth_fhir::{Created, FhirClient, Patient};
//!
//! pub struct Patients { fhir: FhirClient }
//!
//! #[auth_macros::authenticated_api]
//! impl Patients {
//!     /// `ops` is a JSON Patch: `[{"op": "replace", "path": "/gender", "value": "female"}]`.
//!     #[patch("Patient/{id}")]
//!     pub async fn patch(&self, id: &str, #[body] ops: &serde_json::Value, #[if_match] version: Option<&str>) -> Result<Patient>;
//!
//!     #[put("Patient")]
//!     pub async fn upsert(&self, #[query] identifier: &str, #[body] patient: &Patient) -> Result<Created<Patient>>;
//!
//!     #[delete("Patient")]
//!     pub async fn delete_by_identifier(&self, #[query] identifier: &str) -> Result<()>;
//! }
//! ```
//!
//! **`#[history("Type/{id}")]`, `#[history("Type")]`, `#[history]`**: the
//! versions of one resource, of a type, or of the whole server (a GET of the
//! path's `_history`), newest first, as a `Bundle`; `_count`, `_since` and `_at`
//! are `#[query]` parameters.
//!
//! **`#[operation("…/$name")]`** calls an operation on the server (`"$name"`), a
//! type (`"Patient/$match"`) or one resource (`"Patient/{id}/$everything"`): a
//! POST of its `#[body]` (typically a `Parameters` resource; with no `#[body]`,
//! an empty `Parameters`), or with `#[operation("…", get)]` a GET whose inputs
//! are `#[query]` / `#[params]` parameters (for operations that change
//! nothing). An operation may return any resource.
//!
//! **`#[transaction]`** posts its `#[body]`, a `Transaction` (batch or
//! transaction Bundle), to the FHIR base; `TransactionResponse` reads the
//! answer as one outcome per entry.
//!
//! ```
//! use auth_core::Result;
//! use auth_fhir::{Bundle, FhirClient, JsonResource, Patient, SearchParams, Transaction, TransactionResponse};
//!
//! pub struct Records { fhir: FhirClient }
//!
//! #[auth_macros::authenticated_api]
//! impl Records {
//!     #[history("Patient/{id}")]
//!     pub async fn versions(&self, id: &str, #[query("_count")] count: Option<u32>) -> Result<Bundle<Patient>>;
//!
//!     #[history]
//!     #[scope("system/*.s")]
//!     pub async fn changes(&self, #[query("_since")] since: &str) -> Result<Bundle<JsonResource>>;
//!
//!     #[operation("Patient/{id}/$everything")]
//!     pub async fn everything(&self, id: &str) -> Result<Bundle<JsonResource>>;
//!
//!     #[operation("Patient/$match")]
//!     pub async fn find_matches(&self, #[body] parameters: &JsonResource) -> Result<Bundle<Patient>>;
//!
//!     #[operation("$versions", get)]
//!     #[scope(none)]
//!     pub async fn fhir_versions(&self, #[params] params: &SearchParams) -> Result<JsonResource>;
//!
//!     #[transaction]
//!     #[scope("system/Patient.cu", "system/Observation.c")]
//!     pub async fn submit(&self, #[body] bundle: &Transaction) -> Result<TransactionResponse>;
//! }
//! ```
//!
//! ## Scopes: least privilege
//!
//! Every generated client gets `SCOPES`, the SMART v2 scopes its endpoints need
//! and no more, derived from each endpoint's interaction and resource type and
//! merged per type into SMART's shortest form (`system/Patient.rs`, not
//! `system/Patient.r system/Patient.s`), sorted:
//!
//! | endpoint | needs |
//! |---|---|
//! | `#[get("Patient/{id}")]`, `#[get("Patient/{id}/_history/{vid}")]`, `#[history("Patient/{id}")]` | `system/Patient.r` |
//! | `#[get("Patient")]`, `#[post("Patient/_search")]`, `#[history("Patient")]` | `system/Patient.s` |
//! | `#[post("Patient")]` | `system/Patient.c` |
//! | `#[put("Patient/{id}")]`, `#[put("Patient")]` (conditional), `#[patch(…)]` | `system/Patient.u` |
//! | `#[delete("Patient/{id}")]`, `#[delete("Patient")]` (conditional) | `system/Patient.d` |
//! | `#[operation("Patient/…/$name")]` | `system/Patient.r` |
//! | `#[get("metadata")]` | nothing |
//!
//! `#[scope("system/Observation.rs", …)]` on an endpoint replaces what is
//! derived for it (an operation that writes, or reaches other types, as
//! `$everything` does); `#[scope(none)]` says it needs none. SMART defines no
//! scopes for operations or transactions, so an endpoint whose path names no
//! resource type (a `#[transaction]`, an operation on the server, the history
//! of the whole server) must declare its scopes: it is a compile error
//! otherwise, at the method's name.
//!
//! Ask for exactly those with the token manager: one manager serves several
//! scope sets, one cached token each.
//!
//! ```no_run
//! use auth_core::{AuthClient, ClientSecret, Result, TokenManager, oauth2::OAuth2Source};
//! use auth_fhir::{Bundle, FhirClient, Patient};
//!
//! pub struct Patients { fhir: FhirClient }
//!
//! #[auth_macros::authenticated_api]
//! impl Patients {
//!     #[get("Patient/{id}")]
//!     pub async fn read(&self, id: &str) -> Result<Patient>;
//!     #[get("Patient")]
//!     pub async fn search(&self, #[query] name: &str) -> Result<Bundle<Patient>>;
//! }
//!
//! # async fn demo() -> Result<()> {
//! assert_eq!(Patients::SCOPES, ["system/Patient.rs"]);
//! let source = OAuth2Source::builder("https://idp.example/token", "c", ClientSecret::new("s"))
//!     .scopes(["system/*.rs"]) // the broad set, for the clients that need it
//!     .build()?;
//! let tokens = TokenManager::new(source);
//! let narrow = AuthClient::new(tokens.scoped(Patients::SCOPES)?)?; // a token for system/Patient.rs only
//! let patients = Patients { fhir: FhirClient::new(narrow, "https://fhir.example/r4")? };
//! # let _ = patients; Ok(()) }
//! ```
//!
//! ## Options
//!
//! - `client = field`: the field of `self` holding the `FhirClient` (default:
//!   `fhir`).
//! - `crate = "path"`: where the FHIR runtime is, as a path that resolves where
//!   the block is written (default: found for you, below).
//!
//! Any other option is refused.
//!
//! ## Which crate the generated code calls
//!
//! The generated methods call the FHIR runtime, the `auth-fhir` crate: its
//! `FhirClient`, `SearchParams` and the support functions in its hidden
//! `__private` module. A proc macro has no `$crate`, so the macro reads the
//! `Cargo.toml` of the crate being compiled (its `[dependencies]`,
//! `[dev-dependencies]` and target-specific tables, following `workspace = true`)
//! and uses, in order:
//!
//! 1. `::fhir_auth::fhir` if the crate depends on the `fhir-auth` facade, under
//!    the name it gave it (`fhir = { package = "fhir-auth", … }` gives
//!    `::fhir::fhir`);
//! 2. otherwise `::auth_fhir` if it depends on `auth-fhir`, again under the name
//!    it gave it (`rt = { package = "auth-fhir", … }` gives `::rt`);
//! 3. otherwise `::auth_fhir`: in `auth-fhir`'s own doctests, tests and examples,
//!    which see it by that name, and in a crate that depends on neither, where
//!    rustc's error then names the crate that is missing.
//!
//! (The facade's own doctests and tests take step 2: `fhir-auth` depends on
//! `auth-fhir`.)
//!
//! `crate = "…"` always wins, and nothing is read then. Use it when the runtime is
//! reached some other way, through a re-export, or when the facade is only a
//! dev-dependency but the macro is used in the library (the lookup does not tell
//! the tables apart):
//!
//! ```
//! /// The application reaches the FHIR runtime through its own module.
//! mod platform {
//!     pub use auth_fhir as fhir;
//! }
//!
//! use auth_core::Result;
//! use platform::fhir::{FhirClient, Patient};
//!
//! pub struct Records { api: FhirClient }
//!
//! #[auth_macros::authenticated_api(client = api, crate = "crate::platform::fhir")]
//! impl Records {
//!     #[get("Patient/{id}")]
//!     pub async fn patient(&self, id: &str) -> Result<Patient>;
//! }
//! # fn main() {}
//! ```
//!
//! A string that is not a plain path (`crate = "not a path"`) is a compile error
//! at the string; a path that does not resolve is reported by rustc there too.
//!
//! ## Checks
//!
//! Checked at compile time, every mistake reported at once, at its own span:
//! - every `{placeholder}` has a parameter, and every path parameter a placeholder;
//! - the path is relative, with whole-segment placeholders, no query, no `..`;
//! - at most one `#[body]`, none on GET or DELETE (a history, an operation called
//!   with `get`), and exactly one on PUT, PATCH and `#[transaction]`;
//! - a PATCH's path names one resource (`Type/{id}`);
//! - a PUT or DELETE of a type (`"Patient"`, no id) has a `#[query]` or
//!   `#[params]` parameter: its condition (without one, a server may delete every
//!   resource of the type);
//! - a history's path is a resource, a type or none, without `_history` (the
//!   macro adds it), and it returns a `Bundle` (or `FhirResponse`), checked at the
//!   return type;
//! - an operation's path ends in a valid `$name` and is on the server, a type or
//!   one resource; `get` is its only option;
//! - a `#[transaction]` takes no path, `#[query]` or `#[params]` parameters;
//! - `#[if_match]` only on PUT, PATCH and DELETE, once, and not beside a
//!   `#[header("If-Match")]`;
//! - no `Authorization` header parameter (the token manager owns it);
//! - a path about a resource type (`Patient/{id}`) returns that type (or a
//!   `Bundle`/`Created` of it, `JsonResource`, `FhirResponse` or `()`); rustc
//!   reports a mismatch at the return type. Operations are exempt: they may
//!   return any resource;
//! - endpoints are `async fn(&self, …) -> Result<T>`; unknown options are refused;
//! - an endpoint whose path names no resource type declares its `#[scope(…)]`,
//!   and a declared scope is a SMART v2 scope (`<context>/<Type or *>.<letters
//!   of cruds, in order>`), one `#[scope]` per endpoint.
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
//! rules between the parts; `scope.rs` derives and merges the SMART scopes;
//! `expand.rs` writes the methods, reaching the runtime
//! through `runtime.rs`'s path; `fallback.rs` writes the block when there are
//! errors. Every error goes to the `Ctxt` of `ctxt.rs`, which combines them.

#![warn(missing_docs, unreachable_pub)]

mod ast;
mod attr;
mod ctxt;
mod expand;
mod fallback;
mod parse;
mod runtime;
mod scope;
mod syntax;
mod template;
mod valid;

use proc_macro::TokenStream;

/// Generates the bodies of typed FHIR endpoints. See the crate documentation.
#[proc_macro_attribute]
pub fn authenticated_api(attr: TokenStream, item: TokenStream) -> TokenStream {
    expand::authenticated_api(attr.into(), item.into(), runtime::from_manifest).into()
}

#[cfg(test)]
mod snapshots;
