//! Collects every error of one expansion, so the user sees them all at once
//! (as serde_derive's `Ctxt` does), each at its own span.

use std::cell::RefCell;

use proc_macro2::TokenStream;

#[derive(Default)]
pub struct Ctxt {
    errors: RefCell<Vec<syn::Error>>,
}

impl Ctxt {
    pub fn push(&self, error: syn::Error) {
        self.errors.borrow_mut().push(error);
    }

    pub fn error(&self, span: proc_macro2::Span, message: impl std::fmt::Display) {
        self.push(syn::Error::new(span, message));
    }

    pub fn has_errors(&self) -> bool {
        !self.errors.borrow().is_empty()
    }

    /// The errors as `compile_error!` invocations.
    pub fn to_compile_errors(&self) -> TokenStream {
        self.errors.borrow().iter().map(syn::Error::to_compile_error).collect()
    }
}
