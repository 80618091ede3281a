//! The model of an annotated block: what `parse.rs` builds, `valid.rs` checks and
//! `expand.rs` writes out. It borrows the syntax tree (`syntax.rs`) and holds
//! parsed values: the path template is parsed once, here, and an endpoint that
//! could not be read is left out of the model (its error is already recorded, so
//! the block is never expanded from it).

use proc_macro2::Span;
use syn::{Ident, ImplItem, Type};

use crate::attr::{Kind, Method, Options, Role};
use crate::scope::{Declared, Derived};
use crate::syntax::{BodilessFn, ImplBlock};
use crate::template::Template;

/// The whole block.
pub(crate) struct Api<'a> {
    pub(crate) original: &'a ImplBlock,
    pub(crate) options: Options,
    /// The items in the order written.
    pub(crate) items: Vec<Item<'a>>,
}

/// One item of the block.
pub(crate) enum Item<'a> {
    Endpoint(Endpoint<'a>),
    /// An item the macro leaves as it is (a method with a body, a constant, …).
    Kept(&'a ImplItem),
}

/// One endpoint: `#[get("Patient/{id}")] async fn read(&self, id: &str) -> Result<Patient>;`.
pub(crate) struct Endpoint<'a> {
    pub(crate) original: &'a BodilessFn,
    pub(crate) kind: Kind,
    /// What it sends: the kind's method, or for an operation the one chosen.
    pub(crate) method: Method,
    /// The path as written: for a history, without its `_history`.
    pub(crate) template: Template,
    /// The parameters after `&self`.
    pub(crate) params: Vec<Param<'a>>,
    pub(crate) success: Success<'a>,
    /// The SMART scope its interaction and resource type need.
    pub(crate) derived: Derived,
    /// `#[scope(…)]`, which replaces the derived scope.
    pub(crate) declared: Option<Declared>,
}

/// One parameter of an endpoint.
pub(crate) struct Param<'a> {
    pub(crate) ident: &'a Ident,
    pub(crate) ty: &'a Type,
    pub(crate) role: Role,
    /// Where the role was written (`#[path]`, `#[query]`, …); `None` when it is
    /// inferred from the name (a path parameter).
    pub(crate) role_span: Option<Span>,
}

impl Param<'_> {
    /// Where to report a mistake about this parameter: its role attribute, or its
    /// name when it has none.
    pub(crate) fn span(&self) -> Span {
        self.role_span.unwrap_or_else(|| self.ident.span())
    }
}

/// `T` in the endpoint's `-> Result<T>`.
pub(crate) struct Success<'a> {
    pub(crate) ty: &'a Type,
    /// Whether `T` means the same outside the `impl` (it names no `Self`, generic
    /// or lifetime of the block or the method), so that a free `const` can check
    /// it against the path's resource type.
    pub(crate) stands_alone: bool,
}
