//! Validation: the rules between the parts of an endpoint that parsing could read,
//! each broken rule reported at the span of the mistake, all of them together.
//! The rules every endpoint follows come first, then those of one kind.

use std::collections::HashSet;

use crate::ast::{Api, Endpoint, Item, Param};
use crate::attr::{Kind, Method, Role};
use crate::ctxt::Ctxt;
use crate::scope::Derived;
use crate::template::{self, Segment};

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
        let before = cx.len();
        self.check_path_parameters(cx);
        self.check_body(cx);
        self.check_headers(cx);
        self.check_if_match(cx);
        match self.kind {
            Kind::Put | Kind::Delete => self.check_condition(cx),
            Kind::Patch => self.check_patch_path(cx),
            Kind::History => self.check_history_path(cx),
            Kind::Operation => self.check_operation_path(cx),
            Kind::Transaction => self.check_transaction_params(cx),
            Kind::Get | Kind::Post => {}
        }
        // Last, and only for an endpoint otherwise right: what scope a
        // mistaken path needs is not worth a message of its own.
        if cx.len() == before {
            self.check_scope(cx);
        }
    }

    /// Both directions: every placeholder bound once, every path parameter used.
    fn check_path_parameters(&self, cx: &Ctxt) {
        let path = &self.template.source;
        let placeholders: Vec<&str> = self.template.placeholders().map(|(name, _)| name).collect();
        let mut bound = HashSet::new();
        for p in &self.params {
            let Role::Path(name) = &p.role else { continue };
            if !placeholders.contains(&name.as_str()) {
                // Said better by the transaction's own rule.
                if self.kind == Kind::Transaction {
                    continue;
                }
                let message = match (p.role_span.is_some(), path.is_empty()) {
                    (true, false) => {
                        format!("#[path] names `{name}`, but the path `{path}` has no `{{{name}}}`")
                    }
                    (true, true) => format!("#[path] names `{name}`, but this endpoint has no path"),
                    (false, false) => format!(
                        "`{}` is not in the path `{path}`: mark it #[query], #[params], #[header(\"…\")] or #[body]",
                        p.ident
                    ),
                    (false, true) => format!(
                        "`{}` fills no placeholder (this endpoint has no path): mark it #[query], #[params], #[header(\"…\")] or #[body]",
                        p.ident
                    ),
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

    /// A scope the macro can derive, or one declared: an endpoint whose path
    /// names no resource type cannot be given least privilege otherwise.
    fn check_scope(&self, cx: &Ctxt) {
        if self.declared.is_some() || !matches!(self.derived, Derived::Unknown) {
            return;
        }
        let name = &self.original.sig.ident;
        let what = match self.kind {
            Kind::Transaction => {
                "a #[transaction] needs the scopes of its entries (SMART defines none for transactions)"
                    .to_owned()
            }
            Kind::History => "the history of the whole server reaches every resource type".to_owned(),
            Kind::Operation => format!(
                "the operation `{}` is on no resource type (SMART defines no scopes for operations)",
                self.template.source
            ),
            _ if self.template.resource_type.is_some() => format!(
                "which permission a {} of `{}` needs is not known to the macro",
                self.method.name(),
                self.template.source
            ),
            _ => format!("the path `{}` names no resource type", self.template.source),
        };
        cx.error(
            name.span(),
            format!(
                "`{name}` needs its SMART scopes declared: {what}, so the client's SCOPES cannot be derived for it; add #[scope(\"system/Patient.rs\", …)] naming what it reads and writes, or #[scope(none)] if it needs none"
            ),
        );
    }

    /// At most one body, none where HTTP has none, and one where the request is
    /// nothing without it.
    fn check_body(&self, cx: &Ctxt) {
        let mut bodies = self.params.iter().filter(|p| matches!(p.role, Role::Body));
        let first = bodies.next();
        for extra in bodies {
            cx.error(extra.span(), "an endpoint has at most one #[body]");
        }
        match first {
            Some(body) if matches!(self.method, Method::Get | Method::Delete) => {
                let message = match self.kind {
                    Kind::History => {
                        "a history is read by GET and has no #[body]; `_count` and `_since` are #[query] parameters"
                            .to_owned()
                    }
                    Kind::Operation => {
                        "an operation called by GET takes no #[body]: pass its inputs as #[query] or #[params] parameters, or drop `get` to POST the body"
                            .to_owned()
                    }
                    _ => format!("a {} request has no body; use #[query] parameters", self.method.name()),
                };
                cx.error(body.span(), message);
            }
            Some(_) => {}
            None => {
                let missing = match self.kind {
                    Kind::Put => {
                        "a PUT sends the whole resource: add a #[body] parameter (e.g. `#[body] patient: &Patient`)"
                    }
                    Kind::Patch => {
                        "a PATCH sends a JSON Patch: add a #[body] parameter (a `json_patch::Patch`, or a `serde_json::Value` array of operations)"
                    }
                    Kind::Transaction => {
                        "a #[transaction] sends a Bundle: add a #[body] parameter (e.g. `#[body] bundle: &Transaction`)"
                    }
                    _ => return,
                };
                cx.error(self.template.span, missing);
            }
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

    /// One `#[if_match]`, on a change, and no `If-Match` header beside it.
    fn check_if_match(&self, cx: &Ctxt) {
        let mut versions = self.params.iter().filter(|p| matches!(p.role, Role::IfMatch));
        let Some(first) = versions.next() else { return };
        for extra in versions {
            cx.error(extra.span(), "an endpoint has at most one #[if_match]");
        }
        if !matches!(self.kind, Kind::Put | Kind::Patch | Kind::Delete) {
            cx.error(
                first.span(),
                "#[if_match] goes on #[put], #[patch] and #[delete] endpoints: it makes the change conditional on the version the server has",
            );
        }
        for p in &self.params {
            if let Role::Header(name) = &p.role
                && name.value().eq_ignore_ascii_case("if-match")
            {
                cx.error(
                    name.span(),
                    format!("If-Match is already sent from the #[if_match] parameter `{}`", first.ident),
                );
            }
        }
    }

    /// `PUT Patient` and `DELETE Patient` (no id) are conditional: they name the
    /// resource by a search, and need one.
    fn check_condition(&self, cx: &Ctxt) {
        if self.template.segments.len() != 1 || self.params.iter().any(Param::is_condition) {
            return;
        }
        let path = &self.template.source;
        let message = if self.kind == Kind::Delete {
            format!(
                "a DELETE of `{path}` with no id is a conditional delete: add a #[query] or #[params] parameter as its condition (without one, a server may delete every resource of the type), or delete one resource: \"{path}/{{id}}\""
            )
        } else {
            format!(
                "a PUT to `{path}` with no id is a conditional update: add a #[query] or #[params] parameter to say which resource it replaces, or update one resource: \"{path}/{{id}}\""
            )
        };
        cx.error(self.template.span, message);
    }

    fn check_patch_path(&self, cx: &Ctxt) {
        if !self.template.is_instance() {
            cx.error(
                self.template.span,
                format!(
                    "a PATCH changes one resource: its path is `Type/{{id}}`, e.g. \"Patient/{{id}}\", not `{}`",
                    self.template.source
                ),
            );
        }
    }

    /// The history of one resource, of a type, or (no path) of the server; the
    /// macro adds `_history`.
    fn check_history_path(&self, cx: &Ctxt) {
        let segments = &self.template.segments;
        let source = &self.template.source;
        if segments.last().and_then(Segment::literal) == Some("_history") {
            let attr = match source.strip_suffix("/_history") {
                Some(path) => format!("#[history(\"{path}\")]"),
                None => "#[history]".to_owned(),
            };
            cx.error(
                self.template.span,
                format!("leave `_history` out of the path: {attr} reads `{source}`"),
            );
        } else if segments.len() > 1 && !self.template.is_instance() {
            cx.error(
                self.template.span,
                format!(
                    "a history is of one resource (\"Patient/{{id}}\"), of a type (\"Patient\"), or of the whole server (#[history], no path), not `{source}`"
                ),
            );
        }
    }

    /// `…/$name` last, on the server, a type or one resource.
    fn check_operation_path(&self, cx: &Ctxt) {
        let segments = &self.template.segments;
        let source = &self.template.source;
        let is_operation = |s: &Segment| s.literal().is_some_and(|t| t.starts_with('$'));
        let Some(at) = segments.iter().position(is_operation) else {
            cx.error(
                self.template.span,
                format!(
                    "an operation's path ends in its `$name`: \"$name\" on the server, \"Patient/$name\" on a type, \"Patient/{{id}}/$name\" on one resource; `{source}` has none"
                ),
            );
            return;
        };
        let name = segments[at].literal().unwrap_or_default();
        if at + 1 != segments.len() {
            cx.error(
                self.template.span,
                format!("the operation `{name}` must be the last segment of the path"),
            );
        } else if !is_operation_name(name) {
            cx.error(
                self.template.span,
                format!("`{name}` is not an operation name: `$` and then letters, digits, `-` or `_`, e.g. `$everything`"),
            );
        } else if at > 2 || (at == 2 && !template::is_instance(&segments[..at])) {
            cx.error(
                self.template.span,
                format!(
                    "an operation is called on the server (\"{name}\"), on a type (\"Patient/{name}\") or on one resource (\"Patient/{{id}}/{name}\"), not on `{}`",
                    source.strip_suffix(&format!("/{name}")).unwrap_or(source)
                ),
            );
        }
    }

    /// A transaction goes to the base: it has nothing to put in a path or query.
    fn check_transaction_params(&self, cx: &Ctxt) {
        for p in &self.params {
            if matches!(p.role, Role::Path(_) | Role::Query(_) | Role::Params) {
                cx.error(
                    p.span(),
                    format!(
                        "a #[transaction] posts its Bundle to the FHIR base: it takes a #[body] (and #[header] parameters), so `{}` has no place",
                        p.ident
                    ),
                );
            }
        }
    }
}

impl Param<'_> {
    /// Whether the parameter adds to the query: a search condition.
    fn is_condition(&self) -> bool {
        matches!(self.role, Role::Query(_) | Role::Params)
    }
}

/// What FHIR allows after the `$` (as the runtime's `Operation` checks it).
fn is_operation_name(segment: &str) -> bool {
    segment.strip_prefix('$').is_some_and(|n| {
        !n.is_empty() && n.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operation_names() {
        for good in ["$everything", "$match", "$ping", "$lastn", "$validate-code", "$x_1"] {
            assert!(is_operation_name(good), "{good}");
        }
        for bad in ["$", "everything", "$every thing", "$a.b", "$é", "$$x"] {
            assert!(!is_operation_name(bad), "{bad}");
        }
    }
}
