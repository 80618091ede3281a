//! Validation: every rule a user can break, each reported at the span of the
//! mistake, all of them together.

use std::collections::HashSet;

use syn::spanned::Spanned;

use crate::ctxt::Ctxt;
use crate::parse::{Api, Endpoint, Role, Verb};
use crate::template::{self, Segment};

pub fn api(cx: &Ctxt, api: &Api) {
    for endpoint in &api.endpoints {
        endpoint_rules(cx, endpoint);
    }
}

fn endpoint_rules(cx: &Ctxt, e: &Endpoint) {
    let sig = &e.sig;
    if sig.asyncness.is_none() {
        cx.error(sig.fn_token.span, "endpoints are `async fn`");
    }
    match sig.inputs.first() {
        Some(syn::FnArg::Receiver(r)) if r.reference.is_some() && r.mutability.is_none() => {}
        Some(other) => cx.error(other.span(), "an endpoint takes `&self` first"),
        None => cx.error(sig.ident.span(), "an endpoint takes `&self` first"),
    }
    if e.success.is_none() {
        let span = match &sig.output {
            syn::ReturnType::Default => sig.ident.span(),
            syn::ReturnType::Type(_, ty) => ty.span(),
        };
        cx.error(span, "an endpoint returns `auth_core::Result<T>` (T: a resource, Bundle<R>, Created<R>, FhirResponse or ())");
    }

    let segments = match template::parse(&e.template.value()) {
        Ok(s) => s,
        Err(message) => {
            if !e.template.value().is_empty() || !cx.has_errors() {
                cx.error(e.template.span(), message);
            }
            return;
        }
    };
    let placeholders: Vec<&str> = segments
        .iter()
        .filter_map(|s| match s {
            Segment::Placeholder(p) => Some(p.as_str()),
            Segment::Literal(_) => None,
        })
        .collect();

    // Both directions: every placeholder bound once, every path argument used.
    let mut bound = HashSet::new();
    for p in &e.params {
        if let Role::Path(name) = &p.role {
            if !placeholders.contains(&name.as_str()) {
                let message = if p.explicit {
                    format!(
                        "#[path] names `{name}`, but the path `{}` has no `{{{name}}}`",
                        e.template.value()
                    )
                } else {
                    format!(
                        "`{}` is not in the path `{}`: mark it #[query], #[params], #[header(\"…\")] or #[body]",
                        p.ident,
                        e.template.value()
                    )
                };
                cx.error(p.span, message);
            } else if !bound.insert(name.clone()) {
                cx.error(p.span, format!("`{{{name}}}` is already bound to another parameter"));
            }
        }
    }
    for name in &placeholders {
        if !bound.contains(*name) {
            cx.error(
                e.template.span(),
                format!("`{{{name}}}` in the path has no parameter; add one named `{name}` (or #[path(\"{name}\")])"),
            );
        }
    }

    let bodies: Vec<_> = e.params.iter().filter(|p| matches!(p.role, Role::Body)).collect();
    for extra in bodies.iter().skip(1) {
        cx.error(extra.span, "an endpoint has at most one #[body]");
    }
    if let Some(body) = bodies.first()
        && matches!(e.verb, Verb::Get | Verb::Delete)
    {
        cx.error(body.span, format!("a {} request has no body; use #[query] parameters", e.verb.name()));
    }
    for p in &e.params {
        if let Role::Header(name) = &p.role {
            let lower = name.value().to_ascii_lowercase();
            if lower == "authorization" {
                cx.error(
                    name.span(),
                    "the Authorization header is set from the token manager; it cannot be a parameter",
                );
            } else if lower.is_empty()
                || !lower.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_!#$%&'*+.^`|~".contains(&b))
            {
                cx.error(name.span(), format!("`{}` is not a valid header name", name.value()));
            }
        }
    }
}
