//! Validation: the rules between the parts of an endpoint that parsing could read,
//! each broken rule reported at the span of the mistake, all of them together.

use std::collections::HashSet;

use crate::ast::{Api, Endpoint, Item};
use crate::attr::{Role, Verb};
use crate::ctxt::Ctxt;

impl Api<'_> {
    /// Reports every broken rule to `cx`.
    pub(crate) fn validate(&self, cx: &Ctxt) {
        for item in &self.items {
            if let Item::Endpoint(endpoint) = item {
                endpoint.validate(cx);
            }
        }
    }
}

impl Endpoint<'_> {
    fn validate(&self, cx: &Ctxt) {
        self.check_path_parameters(cx);
        self.check_body(cx);
        self.check_headers(cx);
    }

    /// Both directions: every placeholder bound once, every path parameter used.
    fn check_path_parameters(&self, cx: &Ctxt) {
        let path = &self.template.source;
        let placeholders: Vec<&str> = self.template.placeholders().map(|(name, _)| name).collect();
        let mut bound = HashSet::new();
        for p in &self.params {
            let Role::Path(name) = &p.role else { continue };
            if !placeholders.contains(&name.as_str()) {
                let message = if p.role_span.is_some() {
                    format!("#[path] names `{name}`, but the path `{path}` has no `{{{name}}}`")
                } else {
                    format!(
                        "`{}` is not in the path `{path}`: mark it #[query], #[params], #[header(\"…\")] or #[body]",
                        p.ident
                    )
                };
                cx.error(p.span(), message);
            } else if !bound.insert(name.as_str()) {
                cx.error(p.span(), format!("`{{{name}}}` is already bound to another parameter"));
            }
        }
        for (name, span) in self.template.placeholders() {
            if !bound.contains(name) {
                cx.error(
                    span,
                    format!("`{{{name}}}` in the path has no parameter; add one named `{name}` (or #[path(\"{name}\")])"),
                );
            }
        }
    }

    /// At most one body, and none where HTTP has none.
    fn check_body(&self, cx: &Ctxt) {
        let mut bodies = self.params.iter().filter(|p| matches!(p.role, Role::Body));
        let first = bodies.next();
        for extra in bodies {
            cx.error(extra.span(), "an endpoint has at most one #[body]");
        }
        if let Some(body) = first
            && matches!(self.verb, Verb::Get | Verb::Delete)
        {
            cx.error(
                body.span(),
                format!("a {} request has no body; use #[query] parameters", self.verb.name()),
            );
        }
    }

    /// Header names HTTP allows, and not the one the token manager owns.
    fn check_headers(&self, cx: &Ctxt) {
        for p in &self.params {
            let Role::Header(name) = &p.role else { continue };
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
