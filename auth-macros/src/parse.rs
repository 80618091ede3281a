//! Parsing: turn the annotated `impl` block into a model of the API, collecting
//! every error instead of stopping at the first.

use proc_macro2::{Span, TokenStream};
use quote::ToTokens;
use syn::parse::Parser;
use syn::spanned::Spanned;
use syn::{
    Attribute, FnArg, Ident, ImplItem, ItemImpl, LitStr, Pat, ReturnType, Signature, TraitItemFn, Type,
    Visibility,
};

use crate::ctxt::Ctxt;

/// Options of `#[authenticated_api(...)]`.
pub struct ApiOptions {
    /// The field of `self` holding the `FhirClient`.
    pub client: Ident,
}

/// The HTTP method of an endpoint.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Verb {
    Get,
    Post,
    Put,
    Delete,
}

impl Verb {
    pub fn from_ident(ident: &Ident) -> Option<Self> {
        match ident.to_string().as_str() {
            "get" => Some(Self::Get),
            "post" => Some(Self::Post),
            "put" => Some(Self::Put),
            "delete" => Some(Self::Delete),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Get => "GET",
            Self::Post => "POST",
            Self::Put => "PUT",
            Self::Delete => "DELETE",
        }
    }
}

/// What a parameter is for.
#[derive(Clone)]
pub enum Role {
    /// Fills the `{placeholder}` of the same name (or the one named).
    Path(String),
    /// A query parameter with this name.
    Query(String),
    /// A whole `SearchParams`.
    Params,
    /// A header with this name.
    Header(LitStr),
    /// The request body.
    Body,
}

/// One parameter of an endpoint.
pub struct Param {
    pub ident: Ident,
    pub ty: Type,
    pub role: Role,
    /// Whether the role was written out (`#[path]`) or inferred from the name.
    pub explicit: bool,
    /// Span of the role attribute, or of the parameter.
    pub span: Span,
}

/// One endpoint: an `async fn` with a verb attribute.
pub struct Endpoint {
    pub attrs: Vec<Attribute>,
    pub vis: Visibility,
    /// The signature with our parameter attributes removed.
    pub sig: Signature,
    pub verb: Verb,
    pub template: LitStr,
    pub params: Vec<Param>,
    /// `T` of `Result<T>`, if the return type has that shape.
    pub success: Option<Type>,
}

/// The whole annotated block.
pub struct Api {
    pub options: ApiOptions,
    pub item: ItemImpl,
    pub endpoints: Vec<Endpoint>,
    /// Items of the block that are not endpoints, kept as they are.
    pub others: Vec<ImplItem>,
}

const API_OPTIONS: &str = "`client`";

pub fn options(cx: &Ctxt, attr: TokenStream) -> ApiOptions {
    let mut client = Ident::new("fhir", Span::call_site());
    let parser = syn::meta::parser(|meta| {
        if meta.path.is_ident("client") {
            client = meta.value()?.parse()?;
            Ok(())
        } else {
            Err(meta.error(format!(
                "unknown option `{}` of #[authenticated_api]; the options are: {API_OPTIONS}",
                meta.path.to_token_stream()
            )))
        }
    });
    if let Err(e) = parser.parse2(attr) {
        cx.push(e);
    }
    ApiOptions { client }
}

pub fn api(cx: &Ctxt, options: ApiOptions, item: ItemImpl) -> Api {
    let mut endpoints = Vec::new();
    let mut others = Vec::new();
    for impl_item in &item.items {
        match endpoint_of(cx, impl_item) {
            Some(endpoint) => endpoints.push(endpoint),
            None => {
                // A verb attribute left on a kept item (already reported) would add
                // a second, confusing "cannot find attribute" error.
                let mut kept = impl_item.clone();
                if let ImplItem::Fn(f) = &mut kept {
                    f.attrs.retain(|a| Verb::from_ident_path(a).is_none());
                }
                others.push(kept);
            }
        }
    }
    Api { options, item, endpoints, others }
}

/// An item is an endpoint if it carries a verb attribute. Bodiless `fn`s in an
/// `impl` reach us as verbatim tokens, so they are re-read as trait-style fns.
fn endpoint_of(cx: &Ctxt, item: &ImplItem) -> Option<Endpoint> {
    let (attrs, vis, sig) = match item {
        ImplItem::Fn(f) => {
            if verb_attr(&f.attrs).is_some() {
                cx.push(syn::Error::new(
                    f.block.span(),
                    "an endpoint has no body: end the signature with `;` and the macro writes the body",
                ));
            }
            return None;
        }
        ImplItem::Verbatim(tokens) => {
            let (vis, rest) = split_visibility(tokens.clone());
            let f: TraitItemFn = syn::parse2(rest).ok()?;
            (f.attrs, vis, f.sig)
        }
        _ => return None,
    };
    let Some((verb, verb_attr)) = verb_attr(&attrs).map(|(v, a)| (v, a.clone())) else {
        cx.push(syn::Error::new(
            sig.ident.span(),
            "a method without a body needs an endpoint attribute: #[get(\"…\")], #[post(\"…\")], #[put(\"…\")] or #[delete(\"…\")]",
        ));
        return None;
    };
    let template = match verb_attr.parse_args_with(|input: syn::parse::ParseStream| {
        let lit: LitStr = input.parse()?;
        if !input.is_empty() {
            let rest: TokenStream = input.parse()?;
            return Err(syn::Error::new(
                rest.span(),
                "unexpected tokens after the path; an endpoint attribute takes only the path, e.g. #[get(\"Patient/{id}\")]",
            ));
        }
        Ok(lit)
    }) {
        Ok(lit) => lit,
        Err(e) => {
            cx.push(e);
            LitStr::new("", verb_attr.span())
        }
    };
    let mut sig = sig;
    let params = params(cx, &mut sig);
    let success = success_type(&sig.output);
    let attrs = attrs.into_iter().filter(|a| Verb::from_ident_path(a).is_none()).collect();
    Some(Endpoint { attrs, vis, sig, verb, template, params, success })
}

impl Verb {
    fn from_ident_path(attr: &Attribute) -> Option<Self> {
        attr.path().get_ident().and_then(Self::from_ident)
    }
}

fn verb_attr(attrs: &[Attribute]) -> Option<(Verb, &Attribute)> {
    attrs.iter().find_map(|a| Verb::from_ident_path(a).map(|v| (v, a)))
}

fn split_visibility(tokens: TokenStream) -> (Visibility, TokenStream) {
    // `pub async fn f(&self);` — syn's trait fns have no visibility; peel it off.
    let parsed: syn::Result<(Vec<Attribute>, Visibility, TokenStream)> =
        (|input: syn::parse::ParseStream| {
            let attrs = input.call(Attribute::parse_outer)?;
            let vis: Visibility = input.parse()?;
            let rest: TokenStream = input.parse()?;
            Ok((attrs, vis, rest))
        })
        .parse2(tokens.clone());
    match parsed {
        Ok((attrs, vis, rest)) => {
            let mut out = TokenStream::new();
            for a in attrs {
                a.to_tokens(&mut out);
            }
            out.extend(rest);
            (vis, out)
        }
        Err(_) => (Visibility::Inherited, tokens),
    }
}

/// Reads and strips `#[path]`, `#[query]`, `#[params]`, `#[header(..)]`, `#[body]`.
fn params(cx: &Ctxt, sig: &mut Signature) -> Vec<Param> {
    let mut out = Vec::new();
    for input in sig.inputs.iter_mut() {
        let FnArg::Typed(arg) = input else { continue };
        let Pat::Ident(pat) = &*arg.pat else {
            cx.push(syn::Error::new(arg.pat.span(), "endpoint parameters must be plain names"));
            continue;
        };
        let ident = pat.ident.clone();
        let mut role: Option<(Role, Span)> = None;
        let mut kept = Vec::new();
        for attr in arg.attrs.drain(..) {
            let Some(name) = attr.path().get_ident().map(Ident::to_string) else {
                kept.push(attr);
                continue;
            };
            let parsed = match name.as_str() {
                "path" => optional_name(&attr).map(|n| Role::Path(n.unwrap_or_else(|| ident.to_string()))),
                "query" => optional_name(&attr).map(|n| Role::Query(n.unwrap_or_else(|| ident.to_string()))),
                "params" => no_args(&attr).map(|()| Role::Params),
                "body" => no_args(&attr).map(|()| Role::Body),
                "header" => attr.parse_args::<LitStr>().map(Role::Header).map_err(|_| {
                    syn::Error::new(attr.span(), "#[header] takes the header's name: #[header(\"If-Match\")]")
                }),
                _ => {
                    kept.push(attr);
                    continue;
                }
            };
            match parsed {
                Ok(r) if role.is_some() => {
                    let _ = r;
                    cx.push(syn::Error::new(
                        attr.span(),
                        "a parameter has one role: path, query, params, header or body",
                    ));
                }
                Ok(r) => role = Some((r, attr.path().span())),
                Err(e) => cx.push(e),
            }
        }
        arg.attrs = kept;
        let (role, span, explicit) = match role {
            Some((role, span)) => (role, span, true),
            None => (Role::Path(ident.to_string()), ident.span(), false),
        };
        out.push(Param { ident, ty: (*arg.ty).clone(), role, explicit, span });
    }
    out
}

fn optional_name(attr: &Attribute) -> syn::Result<Option<String>> {
    match &attr.meta {
        syn::Meta::Path(_) => Ok(None),
        _ => attr.parse_args::<LitStr>().map(|l| Some(l.value())),
    }
}

fn no_args(attr: &Attribute) -> syn::Result<()> {
    match &attr.meta {
        syn::Meta::Path(_) => Ok(()),
        other => Err(syn::Error::new(
            other.span(),
            format!("#[{}] takes no arguments", attr.path().to_token_stream()),
        )),
    }
}

/// `T` in `-> Result<T>` / `-> Result<T, E>` / `-> auth_core::Result<T>`.
fn success_type(output: &ReturnType) -> Option<Type> {
    let ReturnType::Type(_, ty) = output else { return None };
    let Type::Path(path) = &**ty else { return None };
    let last = path.path.segments.last()?;
    if last.ident != "Result" {
        return None;
    }
    let syn::PathArguments::AngleBracketed(args) = &last.arguments else { return None };
    match args.args.first()? {
        syn::GenericArgument::Type(t) => Some(t.clone()),
        _ => None,
    }
}
