//! Path templates: `Patient/{id}/_history/{vid}`.

/// One segment of a template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment {
    Literal(String),
    Placeholder(String),
}

/// Splits a template into segments, or says what is wrong with it.
pub fn parse(template: &str) -> Result<Vec<Segment>, String> {
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
                    Ok(Segment::Placeholder(name.to_owned()))
                }
            } else if seg.contains('{') || seg.contains('}') {
                Err(format!("`{seg}`: a placeholder must be a whole segment, like `{{id}}`"))
            } else {
                Ok(Segment::Literal(seg.to_owned()))
            }
        })
        .collect()
}

/// The resource type a template is about: its first segment when it looks like one
/// (`Patient/{id}` → `Patient`; `metadata` → none).
pub fn resource_type(segments: &[Segment]) -> Option<&str> {
    match segments.first() {
        Some(Segment::Literal(s)) if s.starts_with(|c: char| c.is_ascii_uppercase()) => Some(s),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates() {
        assert_eq!(
            parse("Patient/{id}/_history/{vid}"),
            Ok(vec![
                Segment::Literal("Patient".into()),
                Segment::Placeholder("id".into()),
                Segment::Literal("_history".into()),
                Segment::Placeholder("vid".into()),
            ])
        );
        for bad in [
            "",
            "/Patient",
            "https://x/Patient",
            "Patient?x={y}",
            "Patient//x",
            "Patient/{}",
            "Patient/{a-b}",
            "a/../b",
            "Patient/x{id}",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
        assert_eq!(resource_type(&parse("Patient/{id}").unwrap_or_default()), Some("Patient"));
        assert_eq!(resource_type(&parse("metadata").unwrap_or_default()), None);
    }
}
