//! Collects every error of one expansion, so the user sees them all at once, each
//! at its own span. This is serde_derive's `Ctxt`: parsing and validation push
//! errors and carry on; `check` hands them back as one `syn::Error`.

use std::cell::RefCell;
use std::fmt::Display;
use std::thread;

use proc_macro2::Span;

/// The errors found so far.
///
/// Dropping a `Ctxt` without calling [`Ctxt::check`] panics: an error pushed and
/// then forgotten would let a broken API expand as if it were fine, so forgetting
/// is a bug in this macro, caught by the first test that reaches it.
pub(crate) struct Ctxt {
    // `None` once checked: that is how `Drop` tells a checked context from a
    // forgotten one. A `RefCell` so that the parse and validation passes can share
    // `&Ctxt` while they borrow the syntax tree.
    errors: RefCell<Option<Vec<syn::Error>>>,
}

impl Ctxt {
    /// An empty context, which must be [checked](Ctxt::check).
    pub(crate) fn new() -> Self {
        Self { errors: RefCell::new(Some(Vec::new())) }
    }

    /// Records `message` at `span`.
    pub(crate) fn error(&self, span: Span, message: impl Display) {
        self.syn_error(syn::Error::new(span, message));
    }

    /// Records an error syn produced (it carries its own span).
    pub(crate) fn syn_error(&self, error: syn::Error) {
        // `check` takes `self`, so the list is always there while `&self` is.
        if let Some(errors) = self.errors.borrow_mut().as_mut() {
            errors.push(error);
        }
    }

    /// How many errors are recorded so far: a rule that only matters once the
    /// rest of an endpoint is right compares it before and after.
    pub(crate) fn len(&self) -> usize {
        self.errors.borrow().as_ref().map_or(0, Vec::len)
    }

    /// Every recorded error combined into one, in the order they were found, or
    /// `Ok` if there were none.
    pub(crate) fn check(self) -> syn::Result<()> {
        let errors = self.errors.borrow_mut().take().unwrap_or_default();
        let mut errors = errors.into_iter();
        let Some(mut combined) = errors.next() else { return Ok(()) };
        for error in errors {
            combined.combine(error);
        }
        Err(combined)
    }
}

impl Drop for Ctxt {
    fn drop(&mut self) {
        // Not while unwinding from another panic: a double panic aborts and hides
        // the first message.
        if !thread::panicking() && self.errors.borrow().is_some() {
            #[allow(clippy::panic, reason = "a bug in this macro, not a user's mistake: see the type's docs")]
            {
                panic!("forgot to check for errors");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_combines_every_error_in_order() {
        let cx = Ctxt::new();
        cx.error(Span::call_site(), "first");
        cx.syn_error(syn::Error::new(Span::call_site(), "second"));
        let messages: Vec<String> = cx.check().unwrap_err().into_iter().map(|e| e.to_string()).collect();
        assert_eq!(messages, ["first", "second"]);
    }

    #[test]
    fn no_errors_is_ok() {
        assert!(Ctxt::new().check().is_ok());
    }

    #[test]
    #[should_panic(expected = "forgot to check for errors")]
    fn forgetting_to_check_panics() {
        let cx = Ctxt::new();
        cx.error(Span::call_site(), "lost");
        drop(cx);
    }
}
