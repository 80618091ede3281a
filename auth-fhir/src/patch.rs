//! PATCH with JSON Patch (RFC 6902): change a few elements without sending the
//! whole resource; under `If-Match`, a concurrent update is refused, not lost.

use bytes::Bytes;
use reqwest::Method;
use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderValue};

use auth_core::{Error, Result};

use crate::client::{FhirClient, if_match_header, type_of};
use crate::model::{JsonResource, Resource};

/// A JSON Patch document (RFC 6902): the `json-patch` crate's, so an application
/// needs no dependency of its own to build one (`serde_json::from_value` of an
/// array of operations, or [`diff`]).
pub use json_patch::{Patch, PatchOperation};

/// The JSON Patch media type.
pub const JSON_PATCH: &str = "application/json-patch+json";

/// The patch that turns `before` into `after` (both of one type): send it with
/// [`FhirClient::patch`] to change only what differs.
pub fn diff<R: Resource>(before: &R, after: &R) -> Result<Patch> {
    let before = to_value(before)?;
    let after = to_value(after)?;
    Ok(json_patch::diff(&before, &after))
}

fn to_value<R: Resource>(resource: &R) -> Result<serde_json::Value> {
    serde_json::to_value(resource)
        .map_err(|e| Error::configuration(format!("the resource cannot be written as JSON: {e}")))
}

impl FhirClient {
    /// `PATCH [base]/[type]/[id]` with a JSON Patch; with `if_match` (a version
    /// id), only if the server still has that version. Returns the patched resource.
    /// Never retried: a patch such as an `add` to a list must not apply twice.
    pub async fn patch<R: Resource>(&self, id: &str, patch: &Patch, if_match: Option<&str>) -> Result<R> {
        self.patch_at(type_of::<R>()?, id, patch, if_match).await
    }

    /// As [`FhirClient::patch`] for a type named at run time.
    pub async fn patch_json(
        &self,
        resource_type: &str,
        id: &str,
        patch: &Patch,
        if_match: Option<&str>,
    ) -> Result<JsonResource> {
        self.patch_at(resource_type, id, patch, if_match).await
    }

    /// Sends what changed from `before` to `after` as a patch, under `If-Match` of
    /// `before`'s version when it has one: if someone else changed the resource
    /// since `before` was read, the server refuses (412) and nothing is lost.
    pub async fn patch_changes<R: Resource>(&self, before: &R, after: &R) -> Result<R> {
        let id = before.id().ok_or_else(|| Error::configuration("a resource needs an id to be patched"))?;
        if after.id() != Some(id) {
            return Err(Error::configuration("the two versions of a patched resource must have the same id"));
        }
        let patch = diff(before, after)?;
        self.patch_at(type_of::<R>()?, id, &patch, before.version_id()).await
    }

    async fn patch_at<R: Resource>(
        &self,
        resource_type: &str,
        id: &str,
        patch: &Patch,
        if_match: Option<&str>,
    ) -> Result<R> {
        let url = self.url(&[resource_type, id])?;
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static(JSON_PATCH));
        if let Some(version) = if_match {
            headers.insert(reqwest::header::IF_MATCH, if_match_header(version)?);
        }
        let body = serde_json::to_vec(patch)
            .map(Bytes::from)
            .map_err(|e| Error::configuration(format!("the patch cannot be written as JSON: {e}")))?;
        self.send(Method::PATCH, url, headers, Some(body)).await?.resource()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Patient;
    use serde_json::json;

    #[test]
    fn a_diff_changes_only_what_differs() {
        let before: Patient = serde_json::from_value(json!({
            "resourceType": "Patient", "id": "1", "gender": "male", "birthDate": "1970-01-01"
        }))
        .unwrap();
        let mut after = before.clone();
        after.gender = Some("female".into());
        let patch = serde_json::to_value(diff(&before, &after).unwrap()).unwrap();
        assert_eq!(patch, json!([{"op": "replace", "path": "/gender", "value": "female"}]));
    }
}
