//! What the macro writes when it found mistakes (as thiserror's `fallback.rs`
//! does): the errors, and the block with a stub body in every endpoint.
//!
//! Emitting only the errors would drop the block, and rustc would add an error
//! for every call of every method; emitting the block as written would add
//! "missing body" and "cannot find attribute `get`" errors for every endpoint.
//! With stubs, the user sees the macro's errors and nothing else. Built from the
//! syntax tree, not the model, because the model leaves out what it could not
//! read.

use proc_macro2::TokenStream;
use quote::{ToTokens, quote};
use syn::{Attribute, ImplItem, Signature, Visibility};

use crate::attr::{self, Kind};
use crate::syntax::{ImplBlock, Member};

/// `errors`, and `block` with every endpoint stubbed.
pub(crate) fn expand(block: &ImplBlock, errors: &syn::Error) -> TokenStream {
    let errors = errors.to_compile_error();
    let items = block.members.iter().map(|member| match member {
        Member::Bodiless(f) => stub(&f.attrs, &f.vis, &f.sig),
        // An endpoint written with a body: its body goes too, so that only the
        // macro's error is about it.
        Member::Item(ImplItem::Fn(f)) if f.attrs.iter().any(|a| Kind::of(a).is_some()) => {
            stub(&f.attrs, &f.vis, &f.sig)
        }
        Member::Item(item) => item.to_token_stream(),
    });
    let block = block.with_items(quote!(#(#items)*));
    quote! { #errors #block }
}

/// The method as declared, less the macro's attributes, with a body that
/// type-checks whatever the return type and is never run: the program does not
/// build while the errors stand.
fn stub(attrs: &[Attribute], vis: &Visibility, sig: &Signature) -> TokenStream {
    let attrs = attr::without_endpoint(attrs);
    let sig = attr::without_roles(sig);
    quote! {
        #(#attrs)*
        #[allow(unused_variables, clippy::unused_async)]
        #vis #sig {
            ::core::unreachable!()
        }
    }
}
