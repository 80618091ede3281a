//! The macro's own attributes: the options of `#[authenticated_api(...)]`, the
//! endpoint attributes (`#[get("…")]` …) and the parameter roles (`#[query]` …).
//! Each is read here once; the rest of the macro works on what they hold.

use proc_macro2::{Span, TokenStream};
use quote::ToTokens;
use syn::parse::{ParseStream, Parser};
use syn::punctuated::Punctuated;
use syn::spanned::Spanned;
use syn::{Attribute, Expr, FnArg, Ident, Lit, LitStr, Meta, Signature, Token};

use crate::ctxt::Ctxt;

/// Options of `#[authenticated_api(...)]`.
pub(crate) struct Options {
    /// The field of `self` holding the `FhirClient` (`client = api`; `fhir` if not
    /// given).
    pub(crate) client: Ident,
    /// The path of the FHIR runtime (`crate = "my_reexport::fhir"`); `None` when
    /// not given, and then it is found from the user's `Cargo.toml`.
    pub(crate) krate: Option<syn::Path>,
}

const OPTIONS: &str = "`client`, `crate`";

/// Reads the options. An option in error is reported and left at its default:
/// nothing expands while an error stands, and the other options are still read.
pub(crate) fn options(cx: &Ctxt, tokens: TokenStream) -> Options {
    let mut client: Option<Ident> = None;
    let mut krate: Option<syn::Path> = None;
    let metas = match Punctuated::<Meta, Token![,]>::parse_terminated.parse2(tokens) {
        Ok(metas) => metas,
        Err(e) => {
            cx.syn_error(e);
            Punctuated::new()
        }
    };
    for meta in &metas {
        let path = meta.path();
        if path.is_ident("client") {
            if let Some(ident) = name_value(cx, meta, "client = api").and_then(|v| client_field(cx, v)) {
                set_once(cx, &mut client, ident, path);
            }
        } else if path.is_ident("crate") {
            if let Some(krate_path) =
                name_value(cx, meta, "crate = \"my_crate::fhir\"").and_then(|v| runtime_path(cx, v))
            {
                set_once(cx, &mut krate, krate_path, path);
            }
        } else {
            cx.error(
                path.span(),
                format!(
                    "unknown option `{}` of #[authenticated_api]; the options are: {OPTIONS}",
                    path.to_token_stream()
                ),
            );
        }
    }
    Options { client: client.unwrap_or_else(|| Ident::new("fhir", Span::call_site())), krate }
}

/// The value of `name = value`, or an error showing `example`.
fn name_value<'m>(cx: &Ctxt, meta: &'m Meta, example: &str) -> Option<&'m Expr> {
    match meta {
        Meta::NameValue(nv) => Some(&nv.value),
        other => {
            cx.error(other.span(), format!("expected a value: `{example}`"));
            None
        }
    }
}

fn set_once<T>(cx: &Ctxt, slot: &mut Option<T>, value: T, path: &syn::Path) {
    if slot.is_some() {
        cx.error(path.span(), format!("`{}` is given twice", path.to_token_stream()));
    } else {
        *slot = Some(value);
    }
}

fn client_field(cx: &Ctxt, value: &Expr) -> Option<Ident> {
    if let Expr::Path(p) = value
        && p.qself.is_none()
        && let Some(ident) = p.path.get_ident()
    {
        return Some(ident.clone());
    }
    cx.error(value.span(), "`client` takes the name of the field holding the FhirClient: `client = api`");
    None
}

/// `crate = "…"`: a plain module path (no generic arguments), spanned at the
/// string so that a path that does not resolve is reported there by rustc too.
fn runtime_path(cx: &Ctxt, value: &Expr) -> Option<syn::Path> {
    let lit = match value {
        Expr::Lit(syn::ExprLit { lit: Lit::Str(lit), .. }) => lit,
        other => {
            cx.error(other.span(), "`crate` takes a path in a string: `crate = \"my_crate::fhir\"`");
            return None;
        }
    };
    match lit.parse_with(syn::Path::parse_mod_style) {
        Ok(path) => Some(path),
        Err(_) => {
            cx.error(
                lit.span(),
                format!(
                    "`{}` is not a path; `crate` names the FHIR runtime as it is reachable here, e.g. \"my_crate::fhir\"",
                    lit.value()
                ),
            );
            None
        }
    }
}

/// What an endpoint does: which endpoint attribute it has.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Get,
    Post,
    Put,
    Patch,
    Delete,
    /// `#[history]`, `#[history("Patient")]`, `#[history("Patient/{id}")]`: a GET of
    /// the path's `_history`.
    History,
    /// `#[operation("Patient/{id}/$everything")]`, by POST or, with `get`, by GET.
    Operation,
    /// `#[transaction]`: a Bundle posted to the base.
    Transaction,
}

/// Every endpoint attribute, for the messages that list them.
pub(crate) const ENDPOINTS: &str = "#[get(\"…\")], #[post(\"…\")], #[put(\"…\")], #[patch(\"…\")], #[delete(\"…\")], #[history], #[operation(\"…\")] or #[transaction]";

impl Kind {
    /// The kind `attr` is (`#[get(…)]` → `Get`), or `None` if it is not an
    /// endpoint attribute.
    pub(crate) fn of(attr: &Attribute) -> Option<Self> {
        let ident = attr.path().get_ident()?;
        match ident.to_string().as_str() {
            "get" => Some(Self::Get),
            "post" => Some(Self::Post),
            "put" => Some(Self::Put),
            "patch" => Some(Self::Patch),
            "delete" => Some(Self::Delete),
            "history" => Some(Self::History),
            "operation" => Some(Self::Operation),
            "transaction" => Some(Self::Transaction),
            _ => None,
        }
    }
}

/// The HTTP method an endpoint sends.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Method {
    Get,
    Post,
    Put,
    Patch,
    Delete,
}

impl Method {
    /// The method's name in HTTP.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Get => "GET",
            Self::Post => "POST",
            Self::Put => "PUT",
            Self::Patch => "PATCH",
            Self::Delete => "DELETE",
        }
    }
}

/// The arguments of an endpoint attribute.
pub(crate) struct EndpointArgs {
    /// The path literal; `None` for `#[history]` (the whole server's) and
    /// `#[transaction]`, which have none.
    pub(crate) path: Option<LitStr>,
    pub(crate) method: Method,
}

/// Reads the arguments of `attr`, an attribute of kind `kind`.
pub(crate) fn endpoint_args(attr: &Attribute, kind: Kind) -> syn::Result<EndpointArgs> {
    let name = attr.path().to_token_stream().to_string();
    let method = match kind {
        Kind::Get | Kind::History => Method::Get,
        Kind::Post | Kind::Operation | Kind::Transaction => Method::Post,
        Kind::Put => Method::Put,
        Kind::Patch => Method::Patch,
        Kind::Delete => Method::Delete,
    };
    match (kind, &attr.meta) {
        (Kind::Transaction, Meta::Path(_)) => Ok(EndpointArgs { path: None, method }),
        (Kind::Transaction, other) => Err(syn::Error::new(
            other.span(),
            "#[transaction] takes no arguments: it posts its #[body] to the FHIR base",
        )),
        (Kind::History, Meta::Path(_)) => Ok(EndpointArgs { path: None, method }),
        (_, Meta::List(_)) => attr.parse_args_with(|input: ParseStream| {
            let path = input.parse::<LitStr>().map_err(|e| {
                syn::Error::new(e.span(), format!("#[{name}] takes the path as a string: {}", example(kind)))
            })?;
            let method = if kind == Kind::Operation { operation_method(input)? } else { method };
            if !input.is_empty() {
                let rest: TokenStream = input.parse()?;
                return Err(syn::Error::new(
                    rest.span(),
                    format!(
                        "unexpected tokens after the path; #[{name}] takes only the path, e.g. {}",
                        example(kind)
                    ),
                ));
            }
            Ok(EndpointArgs { path: Some(path), method })
        }),
        (_, other) => Err(syn::Error::new(
            other.span(),
            format!("#[{name}] takes the path as a string: {}", example(kind)),
        )),
    }
}

/// `#[operation("…")]` is a POST; `#[operation("…", get)]` a GET.
fn operation_method(input: ParseStream) -> syn::Result<Method> {
    if input.is_empty() {
        return Ok(Method::Post);
    }
    input.parse::<Token![,]>()?;
    let option: Ident = input.parse().map_err(|e| syn::Error::new(e.span(), OPERATION_OPTION))?;
    if option != "get" {
        return Err(syn::Error::new(option.span(), OPERATION_OPTION));
    }
    Ok(Method::Get)
}

const OPERATION_OPTION: &str = "the only option of #[operation] is `get`, to call the operation by GET with #[query] parameters: #[operation(\"Patient/{id}/$everything\", get)]; without it the call is a POST";

/// An attribute of `kind` as it is written, for messages.
fn example(kind: Kind) -> &'static str {
    match kind {
        Kind::Get => "#[get(\"Patient/{id}\")]",
        Kind::Post => "#[post(\"Patient\")]",
        Kind::Put => "#[put(\"Patient/{id}\")]",
        Kind::Patch => "#[patch(\"Patient/{id}\")]",
        Kind::Delete => "#[delete(\"Patient/{id}\")]",
        Kind::History => "#[history(\"Patient/{id}\")], or #[history] for the whole server's",
        Kind::Operation => "#[operation(\"Patient/{id}/$everything\")]",
        Kind::Transaction => "#[transaction]",
    }
}

/// What a parameter is for.
pub(crate) enum Role {
    /// Fills the `{placeholder}` of this name.
    Path(String),
    /// A query parameter with this name.
    Query(String),
    /// A whole `SearchParams`.
    Params,
    /// A header with this name.
    Header(LitStr),
    /// The request body.
    Body,
    /// `If-Match: W/"<version>"` from a version id.
    IfMatch,
}

const ROLES: [&str; 6] = ["path", "query", "params", "header", "body", "if_match"];

/// The roles as a user writes them, for messages.
pub(crate) const ROLE_NAMES: &str = "#[path], #[query], #[params], #[header(\"…\")], #[body] or #[if_match]";

/// Whether `attr` is one of the parameter roles, which the macro removes.
fn is_role(attr: &Attribute) -> bool {
    attr.path().get_ident().is_some_and(|i| ROLES.iter().any(|r| i == r))
}

/// The role `attr` gives the parameter `param`: `None` if `attr` is not a role
/// attribute (`#[allow(…)]` and the like stay on the parameter).
pub(crate) fn role(attr: &Attribute, param: &Ident) -> Option<syn::Result<Role>> {
    if !is_role(attr) {
        return None;
    }
    let ident = attr.path().get_ident()?;
    Some(if ident == "path" {
        optional_name(attr).map(|n| Role::Path(n.unwrap_or_else(|| param.to_string())))
    } else if ident == "query" {
        optional_name(attr).map(|n| Role::Query(n.unwrap_or_else(|| param.to_string())))
    } else if ident == "params" {
        no_args(attr).map(|()| Role::Params)
    } else if ident == "body" {
        no_args(attr).map(|()| Role::Body)
    } else if ident == "if_match" {
        no_args(attr).map(|()| Role::IfMatch)
    } else {
        attr.parse_args::<LitStr>().map(Role::Header).map_err(|_| {
            syn::Error::new(attr.span(), "#[header] takes the header's name: #[header(\"If-Match\")]")
        })
    })
}

fn optional_name(attr: &Attribute) -> syn::Result<Option<String>> {
    match &attr.meta {
        Meta::Path(_) => Ok(None),
        _ => attr.parse_args::<LitStr>().map(|l| Some(l.value())),
    }
}

fn no_args(attr: &Attribute) -> syn::Result<()> {
    match &attr.meta {
        Meta::Path(_) => Ok(()),
        other => Err(syn::Error::new(
            other.span(),
            format!("#[{}] takes no arguments", attr.path().to_token_stream()),
        )),
    }
}

/// The attributes of a method without the endpoint and `#[scope]` attributes,
/// which are the macro's and unknown to rustc.
pub(crate) fn without_endpoint(attrs: &[Attribute]) -> impl Iterator<Item = &Attribute> {
    attrs.iter().filter(|a| Kind::of(a).is_none() && !crate::scope::is_scope(a))
}

/// The signature as written, less the parameter roles (the output is compiled by
/// rustc, which does not know `#[query]`).
pub(crate) fn without_roles(sig: &Signature) -> Signature {
    let mut sig = sig.clone();
    for input in &mut sig.inputs {
        if let FnArg::Typed(arg) = input {
            arg.attrs.retain(|a| !is_role(a));
        }
    }
    sig
}
