//! Resolving a Reference to the resource it points at: a contained `#id`, an
//! entry of the Bundle it came in (by `fullUrl`, `urn:uuid:` included), a
//! relative `Type/id`, or an absolute URL on the same server. A URL on another
//! server is refused: the token must not go there.

use serde_json::Value;
use url::Url;

use auth_core::{Error, Result};

use crate::client::FhirClient;
use crate::model::{Bundle, Resource};

/// Where a reference was found, for the references that only make sense there.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ReferenceContext {
    /// The resource holding the reference (its `contained` resources).
    container: Option<Value>,
    /// The Bundle it came in: each entry's `fullUrl` and resource.
    entries: Vec<(Option<String>, Value)>,
}

impl ReferenceContext {
    /// No context: only relative and absolute references resolve.
    pub fn new() -> Self {
        Self::default()
    }

    /// The reference sits in `resource`: `#id` finds its contained resources.
    pub fn within<R: Resource>(mut self, resource: &R) -> Result<Self> {
        self.container = Some(to_value(resource)?);
        Ok(self)
    }

    /// The reference came in `bundle`: its entries are found by `fullUrl` (a
    /// transaction's `urn:uuid:`), or by type and id.
    pub fn in_bundle<R: Resource>(mut self, bundle: &Bundle<R>) -> Result<Self> {
        for entry in &bundle.entry {
            if let Some(resource) = &entry.resource {
                self.entries.push((entry.full_url.clone(), to_value(resource)?));
            }
        }
        Ok(self)
    }

    fn contained(&self, id: &str) -> Option<&Value> {
        let container = self.container.as_ref()?;
        if id.is_empty() {
            return Some(container);
        }
        let contained = container.get("contained")?.as_array()?;
        contained.iter().find(|r| r.get("id").and_then(Value::as_str) == Some(id))
    }

    fn entry(&self, reference: &str, absolute: Option<&Url>) -> Option<&Value> {
        let by_full_url = self.entries.iter().find(|(full_url, _)| {
            full_url.as_deref().is_some_and(|f| f == reference || absolute.is_some_and(|a| f == a.as_str()))
        });
        if let Some((_, resource)) = by_full_url {
            return Some(resource);
        }
        // `Type/id` names an entry that came without a fullUrl, or with one on any base.
        let mut parts = reference.split('/');
        let (Some(kind), Some(id), None) = (parts.next(), parts.next(), parts.next()) else { return None };
        self.entries.iter().map(|(_, r)| r).find(|r| {
            r.get("resourceType").and_then(Value::as_str) == Some(kind)
                && r.get("id").and_then(Value::as_str) == Some(id)
        })
    }
}

fn to_value<T: serde::Serialize>(value: &T) -> Result<Value> {
    serde_json::to_value(value).map_err(|e| Error::configuration(format!("cannot be written as JSON: {e}")))
}

fn unresolvable(reference: &str, why: &str) -> Error {
    // A reference is an identifier, not patient data; quote at most its start.
    let shown: String = reference.chars().take(80).collect();
    Error::configuration(format!("the reference `{shown}` cannot be resolved: {why}"))
}

fn typed<R: Resource>(value: &Value, reference: &str) -> Result<R> {
    R::deserialize(value).map_err(|e| unresolvable(reference, &format!("it is not a {} ({e})", R::TYPE)))
}

impl FhirClient {
    /// The resource a [`Reference`](crate::Reference) points at (see
    /// [`FhirClient::resolve`]); one with only a logical `identifier` cannot be
    /// resolved by URL and is an error.
    pub async fn resolve_reference<R: Resource>(
        &self,
        reference: &crate::Reference,
        context: &ReferenceContext,
    ) -> Result<R> {
        let Some(target) = reference.reference.as_deref() else {
            return Err(Error::configuration(
                "the Reference has no `reference` (only an identifier or a display): nothing to resolve",
            ));
        };
        self.resolve(target, context).await
    }

    /// The resource `reference` points at, as `R`: looked up in `context` first
    /// (a contained `#id`, a Bundle entry), else read from this server.
    pub async fn resolve<R: Resource>(&self, reference: &str, context: &ReferenceContext) -> Result<R> {
        let reference = reference.trim();
        if let Some(id) = reference.strip_prefix('#') {
            let found =
                context.contained(id).ok_or_else(|| unresolvable(reference, "no such contained resource"))?;
            return typed(found, reference);
        }
        let absolute = Url::parse(reference).ok();
        let within_base = absolute.as_ref().filter(|_| !reference.starts_with("urn:")).cloned();
        let relative_url = match &absolute {
            Some(_) => None,
            None => Some(self.base().join(reference).map_err(|_| unresolvable(reference, "not a URL"))?),
        };
        if let Some(found) = context.entry(reference, relative_url.as_ref().or(within_base.as_ref())) {
            return typed(found, reference);
        }
        if reference.starts_with("urn:") {
            return Err(unresolvable(reference, "no entry of the Bundle has this fullUrl"));
        }
        let url = match (within_base, relative_url) {
            (Some(url), _) => {
                if url.origin() != self.base().origin() || !url.path().starts_with(self.base().path()) {
                    return Err(unresolvable(
                        reference,
                        "it points outside this FHIR server; not read, the token must not go there",
                    ));
                }
                url
            }
            (None, Some(url)) => url,
            (None, None) => return Err(unresolvable(reference, "not a URL")),
        };
        let path = url.path().strip_prefix(self.base().path()).unwrap_or_default();
        let segments: Vec<&str> = path.split('/').collect();
        let well_formed = matches!(segments.as_slice(), [t, id] | [t, id, "_history", _]
            if !t.is_empty() && !id.is_empty());
        if !well_formed || url.query().is_some() {
            return Err(unresolvable(reference, "not of the form Type/id or Type/id/_history/version"));
        }
        self.get(url).await?.resource()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{JsonResource, Patient};
    use serde_json::json;

    #[test]
    fn contained_and_bundle_entries_are_found() {
        let obs: JsonResource = serde_json::from_value(json!({
            "resourceType": "Observation",
            "contained": [{"resourceType": "Patient", "id": "p", "gender": "other"}]
        }))
        .unwrap();
        let ctx = ReferenceContext::new().within(&obs).unwrap();
        assert!(ctx.contained("p").is_some() && ctx.contained("q").is_none());
        let bundle: Bundle<JsonResource> = serde_json::from_value(json!({
            "resourceType": "Bundle", "type": "transaction",
            "entry": [
                {"fullUrl": "urn:uuid:6f6b", "resource": {"resourceType": "Patient", "id": "a"}},
                {"resource": {"resourceType": "Patient", "id": "b"}}
            ]
        }))
        .unwrap();
        let ctx = ctx.in_bundle(&bundle).unwrap();
        let a: Patient = typed(ctx.entry("urn:uuid:6f6b", None).unwrap(), "x").unwrap();
        assert_eq!(a.id.as_deref(), Some("a"));
        assert!(ctx.entry("Patient/b", None).is_some());
        assert!(ctx.entry("Patient/c", None).is_none());
        let wrong = typed::<Patient>(&json!({"resourceType": "Observation"}), "#o").unwrap_err();
        assert!(wrong.to_string().contains("not a Patient"), "{wrong}");
    }
}
