//! Path templates: `Patient/{id}/_history/{vid}`, parsed once, when the endpoint
//! attribute is read; validation and expansion work on the segments.

use proc_macro2::Span;
use syn::LitStr;

/// A parsed path template.
pub(crate) struct Template {
    /// The path as written, for messages; empty for an endpoint without a path.
    pub(crate) source: String,
    /// Where to report a mistake about the path: the literal, or the endpoint
    /// attribute when it has none.
    pub(crate) span: Span,
    pub(crate) segments: Vec<Segment>,
    /// The resource type the path is about (`Patient/{id}` → `Patient`), which
    /// the return type must agree with; `None` for paths like `metadata`.
    pub(crate) resource_type: Option<String>,
}

/// One `/`-separated segment of a template.
pub(crate) enum Segment {
    /// Text sent as it is.
    Literal(String),
    /// `{name}`, filled from a parameter.
    Placeholder {
        name: String,
        /// The literal's span: stable Rust cannot point inside a string literal.
        span: Span,
    },
}

impl Segment {
    /// The text of a literal segment; `None` for a placeholder.
    pub(crate) fn literal(&self) -> Option<&str> {
        match self {
            Self::Literal(text) => Some(text),
            Self::Placeholder { .. } => None,
        }
    }
}

impl Template {
    /// Parses the literal of `#[get("…")]`, or says what is wrong with it (at
    /// the literal).
    pub(crate) fn parse(lit: &LitStr) -> syn::Result<Self> {
        let source = lit.value();
        let span = lit.span();
        let segments = segments(&source, span).map_err(|message| syn::Error::new(span, message))?;
        let resource_type = match segments.first() {
            Some(Segment::Literal(s)) if s.starts_with(|c: char| c.is_ascii_uppercase()) => Some(s.clone()),
            _ => None,
        };
        Ok(Self { source, span, segments, resource_type })
    }

    /// No path: the FHIR base itself (`#[transaction]`, `#[history]`), the
    /// attribute at `span`.
    pub(crate) fn base(span: Span) -> Self {
        Self { source: String::new(), span, segments: Vec::new(), resource_type: None }
    }

    /// Whether the path is about one resource: `Type/{id}` (or a literal id).
    pub(crate) fn is_instance(&self) -> bool {
        is_instance(&self.segments)
    }

    /// The `{placeholder}` names, in order.
    pub(crate) fn placeholders(&self) -> impl Iterator<Item = (&str, Span)> {
        self.segments.iter().filter_map(|s| match s {
            Segment::Placeholder { name, span } => Some((name.as_str(), *span)),
            Segment::Literal(_) => None,
        })
    }
}

/// Whether `segments` are `Type/{id}` (or a literal id), nothing after: one
/// resource. `_history`, `_search` and `$operation` are not ids.
pub(crate) fn is_instance(segments: &[Segment]) -> bool {
    match segments {
        [_, Segment::Placeholder { .. }] => true,
        [_, Segment::Literal(id)] => !id.starts_with(['_', '$']),
        _ => false,
    }
}

fn segments(template: &str, span: Span) -> Result<Vec<Segment>, String> {
    if template.is_empty() {
        return Err("the path is empty; give the path below the FHIR base, e.g. \"Patient/{id}\"".into());
    }
    if template.contains("://") || template.starts_with('/') {
        return Err("the path must be relative to the FHIR base (no scheme, host or leading `/`)".into());
    }
    if template.contains('?') || template.contains('#') {
        return Err("the path cannot hold a query or fragment; use #[query] parameters".into());
    }
    template
        .split('/')
        .map(|seg| {
            if seg.is_empty() {
                Err("the path has an empty segment (`//` or a trailing `/`)".to_owned())
            } else if seg == "." || seg == ".." {
                Err("the path cannot hold `.` or `..` segments".to_owned())
            } else if let Some(name) = seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                    Err(format!("`{seg}` is not a valid placeholder; use `{{name}}` with a parameter's name"))
                } else {
                    Ok(Segment::Placeholder { name: name.to_owned(), span })
                }
            } else if seg.contains('{') || seg.contains('}') {
                Err(format!("`{seg}`: a placeholder must be a whole segment, like `{{id}}`"))
            } else {
                Ok(Segment::Literal(seg.to_owned()))
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> syn::Result<Template> {
        Template::parse(&LitStr::new(text, Span::call_site()))
    }

    #[test]
    fn segments_and_resource_type() {
        let t = parse("Patient/{id}/_history/{vid}").unwrap();
        let shown: Vec<String> = t
            .segments
            .iter()
            .map(|s| match s {
                Segment::Literal(text) => text.clone(),
                Segment::Placeholder { name, .. } => format!("<{name}>"),
            })
            .collect();
        assert_eq!(shown, ["Patient", "<id>", "_history", "<vid>"]);
        assert_eq!(t.placeholders().map(|(n, _)| n).collect::<Vec<_>>(), ["id", "vid"]);
        assert_eq!(t.resource_type.as_deref(), Some("Patient"));
        assert_eq!(t.source, "Patient/{id}/_history/{vid}");
        assert_eq!(parse("metadata").unwrap().resource_type, None);
        assert_eq!(parse("{type}/{id}").unwrap().resource_type, None);
    }

    #[test]
    fn bad_templates() {
        for bad in [
            "",
            "/Patient",
            "https://x/Patient",
            "Patient?x={y}",
            "Patient#x",
            "Patient//x",
            "Patient/",
            "Patient/{}",
            "Patient/{a-b}",
            "a/../b",
            "a/./b",
            "Patient/x{id}",
            "Patient/{id",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }
}
