//! Expansion: a body for every endpoint, calling auth-core's FHIR runtime.
//! With errors, a fallback of the same methods with `unimplemented!()` bodies is
//! emitted beside them, so the caller's code still type-checks and the user sees
//! only the real mistakes.

use proc_macro2::TokenStream;
use quote::{ToTokens, format_ident, quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{ImplItem, ItemImpl, Type};

use crate::ctxt::Ctxt;
use crate::parse::{self, Api, Endpoint, Role, Verb};
use crate::template::{self, Segment};
use crate::validate;

pub fn authenticated_api(attr: TokenStream, item: TokenStream) -> TokenStream {
    let cx = Ctxt::default();
    let options = parse::options(&cx, attr);
    let item: ItemImpl = match syn::parse2(item) {
        Ok(item) => item,
        Err(e) => {
            let mut e = e;
            e.combine(syn::Error::new(
                e.span(),
                "#[authenticated_api] goes on an `impl` block of a client struct",
            ));
            return e.to_compile_error();
        }
    };
    let api = parse::api(&cx, options, item);
    validate::api(&cx, &api);
    if cx.has_errors() {
        let errors = cx.to_compile_errors();
        let fallback = assemble(&api, api.endpoints.iter().map(fallback_method).collect());
        return quote! { #errors #fallback };
    }
    let methods = api.endpoints.iter().map(|e| method(&api, e)).collect();
    let checks = api.endpoints.iter().filter_map(|e| type_check(&api, e));
    let block = assemble(&api, methods);
    quote! { #block #(#checks)* }
}

/// `const _: () = assert!(…)` beside the impl: a free constant is evaluated even by
/// `cargo check`, unlike a `const {}` block inside a method body. Skipped when the
/// type names the impl's generics or `Self`, which a free item cannot see.
fn type_check(api: &Api, e: &Endpoint) -> Option<TokenStream> {
    let segments = template::parse(&e.template.value()).ok()?;
    let expected = template::resource_type(&segments)?;
    let success = e.success.as_ref()?;
    let generic_names: Vec<String> = api.item.generics.type_params().map(|t| t.ident.to_string()).collect();
    let mentions = |ty: &Type| {
        ty.to_token_stream().into_iter().any(|t| {
            let text = t.to_string();
            text == "Self" || generic_names.contains(&text)
        })
    };
    if mentions(success) {
        return None;
    }
    let p = quote!(::auth_fhir::__private);
    let message = format!(
        "the path `{}` is about {expected} resources, but the return type holds another resource type",
        e.template.value().replace('{', "{{").replace('}', "}}")
    );
    Some(quote_spanned! {success.span()=>
        const _: () = ::core::assert!(#p::returns::<#success>(#expected), #message);
    })
}

fn assemble(api: &Api, methods: Vec<TokenStream>) -> TokenStream {
    let ItemImpl { attrs, defaultness, unsafety, impl_token, generics, trait_, self_ty, .. } = &api.item;
    let (impl_generics, _, where_clause) = generics.split_for_impl();
    let trait_part = trait_.as_ref().map(|(bang, path, for_token)| quote!(#bang #path #for_token));
    let others: Vec<&ImplItem> = api.others.iter().collect();
    quote! {
        #(#attrs)*
        #defaultness #unsafety #impl_token #impl_generics #trait_part #self_ty #where_clause {
            #(#others)*
            #(#methods)*
        }
    }
}

fn fallback_method(e: &Endpoint) -> TokenStream {
    let Endpoint { attrs, vis, sig, params, .. } = e;
    let idents = params.iter().map(|p| &p.ident);
    quote! {
        #(#attrs)*
        #[allow(unused_variables, clippy::unused_async)]
        #vis #sig {
            let _ = (#(&#idents,)*);
            ::core::unimplemented!("#[authenticated_api] reported errors for this method")
        }
    }
}

fn is_option(ty: &Type) -> bool {
    match ty {
        Type::Path(p) => p.qself.is_none() && p.path.segments.last().is_some_and(|s| s.ident == "Option"),
        Type::Reference(r) => is_option(&r.elem),
        _ => false,
    }
}

fn method(api: &Api, e: &Endpoint) -> TokenStream {
    let Endpoint { attrs, vis, sig, verb, template: lit, params, success, .. } = e;
    let client = &api.options.client;
    let p = quote!(::auth_fhir::__private);
    let segments = template::parse(&lit.value()).unwrap_or_default();

    let mut prelude = Vec::new();
    let segment_exprs: Vec<TokenStream> = segments
        .iter()
        .map(|s| match s {
            Segment::Literal(text) => quote!(#text),
            Segment::Placeholder(name) => {
                let param = params.iter().find(|p| matches!(&p.role, Role::Path(n) if n == name));
                let local = format_ident!("__segment_{}", name);
                if let Some(param) = param {
                    let ident = &param.ident;
                    prelude.push(quote_spanned!(param.ty.span()=> let #local = #p::segment(&#ident);));
                }
                quote!(&#local)
            }
        })
        .collect();

    let mut query = Vec::new();
    let mut headers = Vec::new();
    let mut body = quote!(::core::option::Option::None);
    for param in params {
        let ident = &param.ident;
        match &param.role {
            Role::Path(_) => {}
            Role::Query(name) if is_option(&param.ty) => query.push(quote! {
                if let ::core::option::Option::Some(__v) = &#ident { __query.push(#name, #p::text(__v)); }
            }),
            Role::Query(name) => query.push(quote_spanned!(param.ty.span()=> __query.push(#name, #p::text(&#ident));)),
            Role::Params => query.push(quote_spanned!(param.ty.span()=> __query.extend_from(&#ident);)),
            Role::Header(name) if is_option(&param.ty) => headers.push(quote! {
                if let ::core::option::Option::Some(__v) = &#ident { #p::header(&mut __headers, #name, &#p::text(__v))?; }
            }),
            Role::Header(name) => {
                headers.push(quote_spanned!(param.ty.span()=> #p::header(&mut __headers, #name, &#p::text(&#ident))?;))
            }
            Role::Body => body = quote_spanned!(param.ty.span()=> ::core::option::Option::Some(#p::body(&#ident)?)),
        }
    }

    let method = match verb {
        Verb::Get => quote!(#p::Method::GET),
        Verb::Post => quote!(#p::Method::POST),
        Verb::Put => quote!(#p::Method::PUT),
        Verb::Delete => quote!(#p::Method::DELETE),
    };
    let success = success.clone().unwrap_or_else(|| syn::parse_quote!(()));

    // `mut` only where something is added: generated code must not warn.
    let query_mut = (!query.is_empty()).then(|| quote!(mut));
    let headers_mut = (!headers.is_empty()).then(|| quote!(mut));
    quote! {
        #(#attrs)*
        // `Ok(…?)` converts into the user's error type, which may not be ours.
        #[allow(clippy::needless_question_mark)]
        #vis #sig {
            let __fhir: &::auth_fhir::FhirClient = &self.#client;
            #(#prelude)*
            let mut __url = __fhir.url(&[#(#segment_exprs),*])?;
            let #query_mut __query = ::auth_fhir::SearchParams::new();
            #(#query)*
            #p::set_query(&mut __url, &__query);
            let #headers_mut __headers = #p::HeaderMap::new();
            #(#headers)*
            let __response = __fhir.send(#method, __url, __headers, #body).await?;
            ::core::result::Result::Ok(<#success as #p::FromResponse>::from_response(__response)?)
        }
    }
}
