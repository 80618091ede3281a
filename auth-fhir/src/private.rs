//! What `#[authenticated_api]` expansions call. Not a public API: it may change in
//! any release, in step with auth-macros.

use std::fmt::Display;

use bytes::Bytes;
pub use reqwest::Method;
pub use reqwest::header::HeaderMap;
use reqwest::header::{HeaderName, HeaderValue};
use url::Url;

use auth_core::{Error, Result};

use crate::client::{Created, FhirResponse};
use crate::model::Resource;
use crate::search::SearchParams;

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
    /// Builds the value from a successful response.
    fn from_response(response: FhirResponse) -> Result<Self>;
}

impl<R: Resource> FromResponse for R {
    const RESOURCE_TYPE: &'static str = R::CONTENT;
    fn from_response(response: FhirResponse) -> Result<Self> {
        response.resource()
    }
}

impl<R: Resource> FromResponse for Created<R> {
    const RESOURCE_TYPE: &'static str = R::CONTENT;
    fn from_response(response: FhirResponse) -> Result<Self> {
        Created::from_response(&response)
    }
}

impl FromResponse for () {
    const RESOURCE_TYPE: &'static str = "";
    fn from_response(_: FhirResponse) -> Result<Self> {
        Ok(())
    }
}

impl FromResponse for FhirResponse {
    const RESOURCE_TYPE: &'static str = "";
    fn from_response(response: FhirResponse) -> Result<Self> {
        Ok(response)
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
