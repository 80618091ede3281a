//! The annotated `impl` block as written: the syntax tree that the model
//! (`ast.rs`) borrows from and the fallback (`fallback.rs`) rewrites.
//!
//! syn has no node for a method without a body, which is how endpoints are
//! written; it keeps one as verbatim tokens. They are parsed here, once, into
//! [`BodilessFn`], and owned by the block so that everything after can borrow.

use proc_macro2::TokenStream;
use quote::{ToTokens, quote};
use syn::parse::{Parse, ParseStream};
use syn::{Attribute, ImplItem, ItemImpl, Signature, Token, Visibility};

/// The `impl` block.
pub(crate) struct ImplBlock {
    /// Everything but the items: attributes, generics, trait, self type. Its
    /// `items` are moved into `members`.
    pub(crate) header: ItemImpl,
    /// The items, in the order written.
    pub(crate) members: Vec<Member>,
}

/// One item of the block.
#[allow(clippy::large_enum_variant, reason = "a few per block, built once and only borrowed after")]
pub(crate) enum Member {
    /// `async fn read(&self, …) -> Result<T>;`: what an endpoint looks like.
    Bodiless(BodilessFn),
    /// Anything else, as syn parsed it.
    Item(ImplItem),
}

/// A method signature ending in `;`.
pub(crate) struct BodilessFn {
    pub(crate) attrs: Vec<Attribute>,
    pub(crate) vis: Visibility,
    pub(crate) sig: Signature,
}

impl Parse for BodilessFn {
    fn parse(input: ParseStream) -> syn::Result<Self> {
        let attrs = input.call(Attribute::parse_outer)?;
        let vis = input.parse()?;
        let sig = input.parse()?;
        input.parse::<Token![;]>()?;
        Ok(Self { attrs, vis, sig })
    }
}

impl Parse for ImplBlock {
    fn parse(input: ParseStream) -> syn::Result<Self> {
        let mut header: ItemImpl = input.parse()?;
        let members = std::mem::take(&mut header.items)
            .into_iter()
            .map(|item| match item {
                ImplItem::Verbatim(tokens) => match syn::parse2::<BodilessFn>(tokens.clone()) {
                    Ok(f) => Member::Bodiless(f),
                    // Not a method (e.g. `const X: u32;`): rustc will say what it is.
                    Err(_) => Member::Item(ImplItem::Verbatim(tokens)),
                },
                other => Member::Item(other),
            })
            .collect();
        Ok(Self { header, members })
    }
}

impl ImplBlock {
    /// The block's header around `items`.
    pub(crate) fn with_items(&self, items: impl ToTokens) -> TokenStream {
        let ItemImpl { attrs, defaultness, unsafety, impl_token, generics, trait_, self_ty, .. } =
            &self.header;
        let (impl_generics, _, where_clause) = generics.split_for_impl();
        let trait_part = trait_.as_ref().map(|(bang, path, for_token)| quote!(#bang #path #for_token));
        quote! {
            #(#attrs)*
            #defaultness #unsafety #impl_token #impl_generics #trait_part #self_ty #where_clause {
                #items
            }
        }
    }
}
