//! Parsing: the syntax tree into the model (`ast.rs`). Reads the grammar of an
//! endpoint, `#[verb("path")] async fn name(&self, params…) -> Result<T>;`,
//! reporting every departure from it and carrying on, so that one compile shows
//! every mistake. Rules between the parts (placeholders against parameters, …)
//! are `valid.rs`'s.

use proc_macro2::{TokenStream, TokenTree};
use quote::ToTokens;
use syn::spanned::Spanned;
use syn::{
    FnArg, GenericArgument, GenericParam, Generics, Ident, ImplItem, Pat, PatType, PathArguments, ReturnType,
    Type,
};

use crate::ast::{Api, Endpoint, Item, Param, Success};
use crate::attr::{self, ENDPOINTS, Kind, ROLE_NAMES};
use crate::ctxt::Ctxt;
use crate::scope;
use crate::syntax::{BodilessFn, ImplBlock, Member};
use crate::template::Template;

impl<'a> Api<'a> {
    /// The model of `block`, with the options in `attr`. Items that cannot be
    /// read are reported to `cx` and left out.
    pub(crate) fn from_syn(cx: &Ctxt, attr: TokenStream, block: &'a ImplBlock) -> Self {
        let options = attr::options(cx, attr);
        let items = block.members.iter().filter_map(|member| item(cx, block, member)).collect();
        Api { original: block, options, items }
    }
}

fn item<'a>(cx: &Ctxt, block: &ImplBlock, member: &'a Member) -> Option<Item<'a>> {
    match member {
        Member::Bodiless(f) => Endpoint::from_syn(cx, block, f).map(Item::Endpoint),
        Member::Item(ImplItem::Fn(f)) if f.attrs.iter().any(|a| Kind::of(a).is_some()) => {
            cx.error(
                f.block.span(),
                "an endpoint has no body: end the signature with `;` and the macro writes the body",
            );
            None
        }
        Member::Item(other) => Some(Item::Kept(other)),
    }
}

impl<'a> Endpoint<'a> {
    fn from_syn(cx: &Ctxt, block: &ImplBlock, f: &'a BodilessFn) -> Option<Self> {
        let sig = &f.sig;
        let mut kinds = f.attrs.iter().filter_map(|a| Kind::of(a).map(|k| (k, a)));
        let Some((kind, kind_attr)) = kinds.next() else {
            cx.error(
                sig.ident.span(),
                format!("a method without a body needs an endpoint attribute: {ENDPOINTS}"),
            );
            return None;
        };
        for (_, extra) in kinds {
            cx.error(
                extra.path().span(),
                format!("an endpoint has only one endpoint attribute, one of: {ENDPOINTS}"),
            );
        }
        // Every part is read, whatever failed before it, so that all its mistakes
        // are reported; the endpoint is built only if all of them could be.
        let target = attr::endpoint_args(kind_attr, kind)
            .and_then(|args| {
                let template = match &args.path {
                    Some(lit) => Template::parse(lit)?,
                    None => Template::base(kind_attr.path().span()),
                };
                Ok((args.method, template))
            })
            .map_err(|e| cx.syn_error(e));
        if sig.asyncness.is_none() {
            cx.error(sig.fn_token.span, "endpoints are `async fn`");
        }
        match sig.inputs.first() {
            Some(FnArg::Receiver(r)) if r.reference.is_some() && r.mutability.is_none() => {}
            Some(other) => cx.error(other.span(), "an endpoint takes `&self` first"),
            None => cx.error(sig.ident.span(), "an endpoint takes `&self` first"),
        }
        let params = params(cx, sig.inputs.iter());
        let success = success(cx, block, f);
        let declared = scope::declared(&f.attrs).map_err(|e| cx.syn_error(e));
        let (method, template) = target.ok()?;
        let derived = scope::derive(kind, &template);
        Some(Endpoint {
            original: f,
            kind,
            method,
            template,
            params: params?,
            success: success?,
            derived,
            declared: declared.ok()?,
        })
    }
}

/// The typed parameters (the receiver is checked above), or `None` if one could
/// not be read.
fn params<'a>(cx: &Ctxt, inputs: impl Iterator<Item = &'a FnArg>) -> Option<Vec<Param<'a>>> {
    let mut all = Some(Vec::new());
    for input in inputs {
        let FnArg::Typed(arg) = input else { continue };
        match (param(cx, arg), all.as_mut()) {
            (Some(p), Some(all)) => all.push(p),
            (Some(_), None) => {}
            (None, _) => all = None,
        }
    }
    all
}

fn param<'a>(cx: &Ctxt, arg: &'a PatType) -> Option<Param<'a>> {
    let Pat::Ident(pat) = &*arg.pat else {
        cx.error(arg.pat.span(), "endpoint parameters must be plain names");
        return None;
    };
    let ident = &pat.ident;
    let mut role = None;
    let mut readable = true;
    for attr in &arg.attrs {
        match attr::role(attr, ident) {
            None => {}
            Some(Err(e)) => {
                cx.syn_error(e);
                readable = false;
            }
            Some(Ok(_)) if role.is_some() => {
                cx.error(attr.span(), format!("a parameter has one role: {ROLE_NAMES}"));
                readable = false;
            }
            Some(Ok(r)) => role = Some((r, attr.path().span())),
        }
    }
    if !readable {
        return None;
    }
    let (role, role_span) = match role {
        Some((role, span)) => (role, Some(span)),
        // No role: a path parameter filling the placeholder of its name.
        None => (attr::Role::Path(ident.to_string()), None),
    };
    Some(Param { ident, ty: &arg.ty, role, role_span })
}

/// `T` of `-> Result<T>` (`Result<T, E>`, `auth_core::Result<T>`, …).
fn success<'a>(cx: &Ctxt, block: &ImplBlock, f: &'a BodilessFn) -> Option<Success<'a>> {
    let Some(ty) = result_ok(&f.sig.output) else {
        let span = match &f.sig.output {
            ReturnType::Default => f.sig.ident.span(),
            ReturnType::Type(_, ty) => ty.span(),
        };
        cx.error(
            span,
            "an endpoint returns `auth_core::Result<T>` (T: a resource, Bundle<R>, Created<R>, FhirResponse or ())",
        );
        return None;
    };
    let local = local_names(&block.header.generics).chain(local_names(&f.sig.generics)).collect::<Vec<_>>();
    Some(Success { ty, stands_alone: !mentions(ty.to_token_stream(), &local) })
}

fn result_ok(output: &ReturnType) -> Option<&Type> {
    let ReturnType::Type(_, ty) = output else { return None };
    let Type::Path(path) = &**ty else { return None };
    let last = path.path.segments.last()?;
    if last.ident != "Result" {
        return None;
    }
    let PathArguments::AngleBracketed(args) = &last.arguments else { return None };
    match args.args.first()? {
        GenericArgument::Type(t) => Some(t),
        _ => None,
    }
}

/// The type and const parameters of `generics`: names a free item cannot see.
fn local_names(generics: &Generics) -> impl Iterator<Item = &Ident> {
    generics.params.iter().filter_map(|p| match p {
        GenericParam::Type(t) => Some(&t.ident),
        GenericParam::Const(c) => Some(&c.ident),
        GenericParam::Lifetime(_) => None,
    })
}

/// Whether `tokens` name `Self`, one of `local`, a lifetime other than
/// `'static`, or an `impl Trait`: what only means something inside the block.
fn mentions(tokens: TokenStream, local: &[&Ident]) -> bool {
    let mut after_quote = false;
    for token in tokens {
        let hit = match &token {
            TokenTree::Group(g) => mentions(g.stream(), local),
            TokenTree::Ident(i) if after_quote => i != "static",
            TokenTree::Ident(i) => i == "Self" || i == "impl" || local.contains(&i),
            TokenTree::Punct(_) | TokenTree::Literal(_) => false,
        };
        if hit {
            return true;
        }
        after_quote = matches!(&token, TokenTree::Punct(p) if p.as_char() == '\'');
    }
    false
}

#[cfg(test)]
mod tests {
    use proc_macro2::Span;
    use quote::quote;

    use super::*;

    #[test]
    fn what_a_free_const_cannot_name() {
        let t = Ident::new("T", Span::call_site());
        let local = [&t];
        for inside in
            [quote!(Self), quote!(Vec<T>), quote!(Option<(u8, T)>), quote!([T; 2]), quote!(Cow<'a, str>)]
        {
            assert!(mentions(inside.clone(), &local), "{inside}");
        }
        for outside in [quote!(Patient), quote!(Bundle<Patient>), quote!(&'static str), quote!(Tee)] {
            assert!(!mentions(outside.clone(), &local), "{outside}");
        }
    }
}
