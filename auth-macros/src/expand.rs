//! Expansion: parse, validate, and write a body for every endpoint, calling the
//! FHIR runtime through one path (`crate = "…"` or the one found in the user's
//! `Cargo.toml`). With errors, `fallback.rs` writes the block instead.

use proc_macro2::TokenStream;
use quote::{ToTokens, format_ident, quote, quote_spanned};
use syn::Type;
use syn::spanned::Spanned;

use crate::ast::{Api, Endpoint, Item};
use crate::attr::{self, Kind, Method, Role};
use crate::ctxt::Ctxt;
use crate::fallback;
use crate::scope;
use crate::syntax::ImplBlock;
use crate::template::Segment;

/// The whole macro. `default_runtime` gives the runtime's path when the block
/// has no `crate = "…"`; it is called only then (it reads `Cargo.toml`).
pub(crate) fn authenticated_api(
    attr: TokenStream,
    item: TokenStream,
    default_runtime: impl FnOnce() -> syn::Path,
) -> TokenStream {
    let block: ImplBlock = match syn::parse2(item) {
        Ok(block) => block,
        Err(mut e) => {
            e.combine(syn::Error::new(
                e.span(),
                "#[authenticated_api] goes on an `impl` block of a client struct",
            ));
            return e.to_compile_error();
        }
    };
    let cx = Ctxt::new();
    let api = Api::from_syn(&cx, attr, &block);
    api.validate(&cx);
    match cx.check() {
        Ok(()) => expand(&api, default_runtime),
        Err(errors) => fallback::expand(&block, &errors),
    }
}

fn expand(api: &Api, default_runtime: impl FnOnce() -> syn::Path) -> TokenStream {
    let found;
    let runtime = match &api.options.krate {
        Some(path) => path,
        None => {
            found = default_runtime();
            &found
        }
    };
    let items = api.items.iter().map(|item| match item {
        Item::Endpoint(e) => method(api, runtime, e),
        Item::Kept(item) => item.to_token_stream(),
    });
    let scopes = scopes(api);
    let block = api.original.with_items(quote!(#scopes #(#items)*));
    let checks = api.items.iter().map(|item| match item {
        Item::Endpoint(e) => type_checks(runtime, e),
        Item::Kept(_) => TokenStream::new(),
    });
    quote! { #block #(#checks)* }
}

/// `const _: () = assert!(…)` beside the block: a free constant is evaluated even
/// by `cargo check`, unlike a `const {}` block inside a method body. Spanned at
/// the user's return type, so rustc reports a mismatch there. Skipped where the
/// type only means something inside the block (see `Success::stands_alone`).
///
/// The return type must agree with the path's resource type, except for an
/// operation, which may return anything (`Patient/{id}/$everything` returns a
/// Bundle of every type); a history must return a Bundle.
fn type_checks(runtime: &syn::Path, e: &Endpoint) -> TokenStream {
    if !e.success.stands_alone {
        return TokenStream::new();
    }
    let success = e.success.ty;
    let p = quote!(#runtime::__private);
    let mut checks = Vec::new();
    if let Some(expected) = &e.template.resource_type
        && e.kind != Kind::Operation
    {
        let message = format_literal(&format!(
            "the path `{}` is about {expected} resources, but the return type holds another resource type",
            e.template.source
        ));
        checks.push(quote_spanned! {success.span()=>
            const _: () = ::core::assert!(#p::returns::<#success>(#expected), #message);
        });
    }
    if e.kind == Kind::History {
        let bundle = format!("Bundle<{}>", e.template.resource_type.as_deref().unwrap_or("JsonResource"));
        let message = format_literal(&format!(
            "a history is a Bundle of versions: return `{bundle}` (or `FhirResponse`)"
        ));
        checks.push(quote_spanned! {success.span()=>
            const _: () = ::core::assert!(#p::returns_bundle::<#success>(), #message);
        });
    }
    quote!(#(#checks)*)
}

/// `SCOPES`: the SMART v2 scopes the client's endpoints need, derived or
/// declared, merged per resource type (see `scope.rs`).
fn scopes(api: &Api) -> TokenStream {
    // A trait's impl cannot take an item the trait does not have.
    if api.original.header.trait_.is_some() {
        return TokenStream::new();
    }
    let endpoints = api.items.iter().filter_map(|item| match item {
        Item::Endpoint(e) => Some((&e.derived, e.declared.as_ref())),
        Item::Kept(_) => None,
    });
    let scopes = scope::merge(endpoints);
    let list = scopes.join(" ");
    let doc = format!(
        " The SMART v2 scopes this client's endpoints need, and no more: `{list}`. Give them to the token manager with `TokenManager::scoped(Self::SCOPES)` (or a source's `with_scopes`) for a token that allows exactly this."
    );
    quote! {
        #[doc = #doc]
        #[allow(dead_code)]
        pub const SCOPES: &'static [&'static str] = &[#(#scopes),*];
    }
}

/// `text` as a format string that prints it: `assert!`'s message is one.
fn format_literal(text: &str) -> String {
    text.replace('{', "{{").replace('}', "}}")
}

fn is_option(ty: &Type) -> bool {
    match ty {
        Type::Path(p) => p.qself.is_none() && p.path.segments.last().is_some_and(|s| s.ident == "Option"),
        Type::Reference(r) => is_option(&r.elem),
        _ => false,
    }
}

fn method(api: &Api, runtime: &syn::Path, e: &Endpoint) -> TokenStream {
    let client = &api.options.client;
    let p = quote!(#runtime::__private);
    let attrs = attr::without_endpoint(&e.original.attrs);
    let vis = &e.original.vis;
    let sig = attr::without_roles(&e.original.sig);

    // Validation bound each placeholder to exactly one path parameter, whose
    // segment is computed into a local named after the placeholder.
    let mut segments_of_params = Vec::new();
    let mut query = Vec::new();
    let mut headers = Vec::new();
    // First, so that a `#[header("Content-Type")]` still has the last word.
    if e.kind == Kind::Patch {
        headers.push(quote!(#p::json_patch(&mut __headers);));
    }
    let mut body = if e.kind == Kind::Operation && e.method == Method::Post {
        // What servers expect of an operation called without input.
        quote!(::core::option::Option::Some(#p::no_parameters()))
    } else {
        quote!(::core::option::Option::None)
    };
    for param in &e.params {
        let ident = param.ident;
        // Calls spanned at the parameter's type: a type the runtime cannot send
        // (not `Display`, not `Serialize`) is reported there.
        let span = param.ty.span();
        match &param.role {
            Role::Path(name) => {
                let local = format_ident!("__segment_{}", name);
                segments_of_params.push(quote_spanned!(span=> let #local = #p::segment(&#ident);));
            }
            Role::Query(name) if is_option(param.ty) => query.push(quote! {
                if let ::core::option::Option::Some(__v) = &#ident { __query.push(#name, #p::text(__v)); }
            }),
            Role::Query(name) => query.push(quote_spanned!(span=> __query.push(#name, #p::text(&#ident));)),
            Role::Params => query.push(quote_spanned!(span=> __query.extend_from(&#ident);)),
            Role::Header(name) if is_option(param.ty) => headers.push(quote! {
                if let ::core::option::Option::Some(__v) = &#ident { #p::header(&mut __headers, #name, &#p::text(__v))?; }
            }),
            Role::Header(name) => {
                headers.push(quote_spanned!(span=> #p::header(&mut __headers, #name, &#p::text(&#ident))?;))
            }
            Role::IfMatch if is_option(param.ty) => headers.push(quote! {
                if let ::core::option::Option::Some(__v) = &#ident { #p::if_match(&mut __headers, &#p::text(__v))?; }
            }),
            Role::IfMatch => {
                headers.push(quote_spanned!(span=> #p::if_match(&mut __headers, &#p::text(&#ident))?;))
            }
            Role::Body => body = quote_spanned!(span=> ::core::option::Option::Some(#p::body(&#ident)?)),
        }
    }
    let mut segments: Vec<TokenStream> = e
        .template
        .segments
        .iter()
        .map(|s| match s {
            Segment::Literal(text) => quote!(#text),
            Segment::Placeholder { name, .. } => {
                let local = format_ident!("__segment_{}", name);
                quote!(&#local)
            }
        })
        .collect();
    if e.kind == Kind::History {
        segments.push(quote!("_history"));
    }
    // No segments (a transaction): `[base]` itself, without a trailing `/`.
    let url = quote!(__fhir.url(&[#(#segments),*])?);
    // `PUT Patient?…` and `DELETE Patient?…`: validation made sure of a
    // condition parameter, but every one may be `None` at run time.
    let condition = match e.kind {
        Kind::Put | Kind::Delete if e.template.segments.len() == 1 => {
            let interaction = if e.kind == Kind::Put { "update" } else { "delete" };
            Some(quote!(#p::condition(&__query, #interaction)?;))
        }
        _ => None,
    };

    let method = match e.method {
        Method::Get => quote!(#p::Method::GET),
        Method::Post => quote!(#p::Method::POST),
        Method::Put => quote!(#p::Method::PUT),
        Method::Patch => quote!(#p::Method::PATCH),
        Method::Delete => quote!(#p::Method::DELETE),
    };
    let success = e.success.ty;

    // `mut` only where something is added: generated code must not warn.
    let query_mut = (!query.is_empty()).then(|| quote!(mut));
    let headers_mut = (!headers.is_empty()).then(|| quote!(mut));
    quote! {
        #(#attrs)*
        // `Ok(…?)` converts into the user's error type, which may not be ours.
        #[allow(clippy::needless_question_mark)]
        #vis #sig {
            // `client`'s own span points a missing field at `client = …`.
            let __fhir: &#runtime::FhirClient = &self.#client;
            #(#segments_of_params)*
            let mut __url = #url;
            let #query_mut __query = #runtime::SearchParams::new();
            #(#query)*
            #condition
            #p::set_query(&mut __url, &__query);
            let #headers_mut __headers = #p::HeaderMap::new();
            #(#headers)*
            let __response = __fhir.send(#method, __url, __headers, #body).await?;
            ::core::result::Result::Ok(<#success as #p::FromResponse>::from_response(__response)?)
        }
    }
}
