//! What `#[authenticated_api]` expansions call. Not a public API: it may change in
//! any release, in step with auth-macros.

use std::fmt::Display;

use bytes::Bytes;
pub use reqwest::Method;
pub use reqwest::header::HeaderMap;
use reqwest::header::{CONTENT_TYPE, HeaderName, HeaderValue, IF_MATCH};
use url::Url;

use auth_core::{Error, Result};

use crate::client::{Created, FhirResponse, if_match_header};
use crate::model::Resource;
use crate::patch::JSON_PATCH;
use crate::search::SearchParams;
use crate::transaction::TransactionResponse;

/// A value as a path segment (percent-encoded later, by `FhirClient::url`).
pub fn segment(value: &impl Display) -> String {
    value.to_string()
}

/// A value as query or header text.
pub fn text(value: &impl Display) -> String {
    value.to_string()
}

/// Adds a header, refusing values HTTP does not allow.
pub fn header(headers: &mut HeaderMap, name: &'static str, value: &str) -> Result<()> {
    let value = HeaderValue::from_str(value).map_err(|_| {
        Error::configuration(format!("the value for header `{name}` has characters HTTP does not allow"))
    })?;
    headers.insert(HeaderName::from_static_lowercase(name)?, value);
    Ok(())
}

trait FromStaticLowercase: Sized {
    fn from_static_lowercase(name: &'static str) -> Result<Self>;
}

impl FromStaticLowercase for HeaderName {
    fn from_static_lowercase(name: &'static str) -> Result<Self> {
        HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| Error::configuration(format!("`{name}` is not a valid header name")))
    }
}

/// A request body as JSON.
pub fn body<T: serde::Serialize + ?Sized>(value: &T) -> Result<Bytes> {
    serde_json::to_vec(value)
        .map(Bytes::from)
        .map_err(|e| Error::configuration(format!("the body cannot be written as JSON: {e}")))
}

/// Sends the body as a JSON Patch: without this, `FhirClient::send` labels it
/// FHIR JSON.
pub fn json_patch(headers: &mut HeaderMap) {
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(JSON_PATCH));
}

/// `If-Match: W/"<version>"` from a version id (`3`, or `W/"3"` as an ETag has it).
pub fn if_match(headers: &mut HeaderMap, version: &str) -> Result<()> {
    headers.insert(IF_MATCH, if_match_header(version)?);
    Ok(())
}

/// The body of an operation called by POST without input: servers expect one,
/// an empty `Parameters`, as `FhirClient::operation_response` sends it.
pub fn no_parameters() -> Bytes {
    Bytes::from_static(br#"{"resourceType":"Parameters"}"#)
}

/// Refuses a conditional update or delete whose every condition was `None`: with
/// no condition, a server may apply it to every resource of the type.
pub fn condition(query: &SearchParams, interaction: &str) -> Result<()> {
    if query.is_empty() {
        return Err(Error::configuration(format!(
            "a conditional {interaction} needs search parameters, and every one was left out"
        )));
    }
    Ok(())
}

/// Sets the query of `url` (nothing if `query` is empty).
pub fn set_query(url: &mut Url, query: &SearchParams) {
    if !query.pairs().is_empty() {
        url.set_query(Some(&query.to_query()));
    }
}

/// What an endpoint can return.
pub trait FromResponse: Sized {
    /// The resource type the value holds; `"Resource"` or `""` for any.
    const RESOURCE_TYPE: &'static str;
    /// What the value makes of the body, for the checks of the return type.
    const READS: Reads;
    /// Builds the value from a successful response.
    fn from_response(response: FhirResponse) -> Result<Self>;
}

/// What a return type makes of the response body.
#[derive(Debug, Clone, Copy)]
pub enum Reads {
    /// A resource of this `resourceType` (`"Bundle"` for a `Bundle<R>`,
    /// `"Resource"` for a resource of any type).
    Resource(&'static str),
    /// The response as it came.
    Response,
    /// Nothing.
    Nothing,
}

impl<R: Resource> FromResponse for R {
    const RESOURCE_TYPE: &'static str = R::CONTENT;
    const READS: Reads = Reads::Resource(R::TYPE);
    fn from_response(response: FhirResponse) -> Result<Self> {
        response.resource()
    }
}

impl<R: Resource> FromResponse for Created<R> {
    const RESOURCE_TYPE: &'static str = R::CONTENT;
    const READS: Reads = Reads::Resource(R::TYPE);
    fn from_response(response: FhirResponse) -> Result<Self> {
        Created::from_response(&response)
    }
}

impl FromResponse for () {
    const RESOURCE_TYPE: &'static str = "";
    const READS: Reads = Reads::Nothing;
    fn from_response(_: FhirResponse) -> Result<Self> {
        Ok(())
    }
}

impl FromResponse for FhirResponse {
    const RESOURCE_TYPE: &'static str = "";
    const READS: Reads = Reads::Response;
    fn from_response(response: FhirResponse) -> Result<Self> {
        Ok(response)
    }
}

/// A `transaction-response` or `batch-response` Bundle, one outcome per entry.
impl FromResponse for TransactionResponse {
    const RESOURCE_TYPE: &'static str = "";
    const READS: Reads = Reads::Resource("Bundle");
    fn from_response(response: FhirResponse) -> Result<Self> {
        TransactionResponse::from_bundle(response.resource()?)
    }
}

const fn str_eq(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
}

/// Whether `T` can be what a path about `expected` resources returns.
pub const fn returns<T: FromResponse>(expected: &str) -> bool {
    let found = T::RESOURCE_TYPE;
    found.is_empty() || str_eq(found, "Resource") || str_eq(found, expected)
}

/// Whether `T` reads a Bundle (or takes the response as it came): what a history
/// returns.
pub const fn returns_bundle<T: FromResponse>() -> bool {
    match T::READS {
        Reads::Resource(found) => str_eq(found, "Bundle"),
        Reads::Response => true,
        Reads::Nothing => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Bundle, JsonResource, Patient};

    #[test]
    fn a_history_returns_a_bundle_or_the_response() {
        const ACCEPTED: [bool; 3] = [
            returns_bundle::<Bundle<Patient>>(),
            returns_bundle::<Bundle<JsonResource>>(),
            returns_bundle::<FhirResponse>(),
        ];
        const REFUSED: [bool; 4] = [
            returns_bundle::<Patient>(),
            returns_bundle::<JsonResource>(),
            returns_bundle::<Created<Patient>>(),
            returns_bundle::<()>(),
        ];
        assert_eq!(ACCEPTED, [true; 3]);
        assert_eq!(REFUSED, [false; 4]);
    }

    #[test]
    fn a_conditional_call_needs_a_condition() {
        assert!(condition(&SearchParams::new(), "delete").is_err());
        assert!(condition(&SearchParams::new().add("identifier", "x|1"), "delete").is_ok());
    }

    #[test]
    fn a_patch_is_labelled_json_patch_and_if_match_is_weak() {
        let mut headers = HeaderMap::new();
        json_patch(&mut headers);
        if_match(&mut headers, "3").unwrap();
        assert_eq!(headers[CONTENT_TYPE], "application/json-patch+json");
        assert_eq!(headers[IF_MATCH], "W/\"3\"");
    }
}
