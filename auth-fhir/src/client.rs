//! The FHIR REST runtime: the interactions of FHIR R4 over an [`AuthClient`], so
//! every call carries a valid token, the vendor's extras, and one replay after a
//! rejected token. Generated clients (`#[authenticated_api]`) call into this.

use std::fmt;
use std::sync::Arc;

use bytes::Bytes;
use reqwest::header::{ACCEPT, CONTENT_TYPE, ETAG, HeaderMap, HeaderName, HeaderValue, IF_MATCH, LOCATION};
use reqwest::{Method, Response, StatusCode};
use url::Url;

use auth_core::endpoint::{content_type, read_capped, retry_after};
use auth_core::{AuthClient, Error, ResponseProblem, Result};

use crate::error::FhirError;
use crate::model::{CapabilityStatement, JsonResource, OperationOutcome, Resource, ResourceType};
use crate::retry::{FhirRetry, FhirStats, RetryState, retryable, safe_to_repeat};
use crate::search::SearchParams;

/// The FHIR JSON media type.
pub const FHIR_JSON: &str = "application/fhir+json";

/// Default cap on a FHIR response body (a page of a search can be large).
pub const DEFAULT_MAX_BODY: usize = 16 * 1024 * 1024;

/// Default cap on the pages one search stream follows.
pub const DEFAULT_MAX_PAGES: usize = 10_000;

/// The result of a create.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Created<R> {
    /// The id the server gave the resource (from `Location`, else the body).
    pub id: Option<String>,
    /// The version (from `ETag`, else `Location`, else the body).
    pub version_id: Option<String>,
    /// Whether it was created now (`false`: a conditional create found a match).
    pub created: bool,
    /// The resource as the server returned it, if it did.
    pub resource: Option<R>,
}

impl<R: Resource> Created<R> {
    /// Reads a create's answer: id and version from `Location` and `ETag`, else the body.
    pub fn from_response(response: &FhirResponse) -> Result<Self> {
        let (location_id, location_version) = response.location_parts();
        let resource: Option<R> = response.optional_resource()?;
        let body_id = resource.as_ref().and_then(|r| r.id().map(str::to_owned));
        let body_version = resource.as_ref().and_then(|r| r.version_id().map(str::to_owned));
        Ok(Created {
            id: location_id.or(body_id),
            version_id: response.etag_version().or(location_version).or(body_version),
            created: response.status() == StatusCode::CREATED,
            resource,
        })
    }
}

/// A FHIR server reached through an [`AuthClient`].
#[derive(Clone)]
pub struct FhirClient {
    api: AuthClient,
    base: Url,
    max_body: usize,
    max_pages: usize,
    retry: FhirRetry,
    retries: Arc<RetryState>,
    /// Set once the server's CapabilityStatement said R4, when that is checked.
    version_checked: Option<Arc<tokio::sync::OnceCell<()>>>,
}

impl fmt::Debug for FhirClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FhirClient").field("base", &self.base.as_str()).field("api", &self.api).finish()
    }
}

impl FhirClient {
    /// A client for the FHIR server at `base` (e.g. `https://fhir.example/r4`).
    ///
    /// Every request carries a bearer token, so plain `http://` is refused except to
    /// loopback, as are credentials in the URL.
    pub fn new(api: AuthClient, base: &str) -> Result<Self> {
        Self::checked(api, base, false)
    }

    /// As [`FhirClient::new`], allowing plain `http://` to any host. Only for
    /// closed test networks: the token travels in clear text.
    pub fn with_insecure_http(api: AuthClient, base: &str) -> Result<Self> {
        Self::checked(api, base, true)
    }

    fn checked(api: AuthClient, base: &str, allow_insecure_http: bool) -> Result<Self> {
        let mut base = auth_core::endpoint::check_url(base, allow_insecure_http)?;
        let api = if allow_insecure_http { api.with_insecure_http(true) } else { api };
        if !base.path().ends_with('/') {
            let path = format!("{}/", base.path());
            base.set_path(&path);
        }
        Ok(Self {
            api,
            base,
            max_body: DEFAULT_MAX_BODY,
            max_pages: DEFAULT_MAX_PAGES,
            retry: FhirRetry::default(),
            retries: RetryState::new(),
            version_checked: None,
        })
    }

    /// Caps response bodies at `bytes` (default 16 MiB).
    pub fn with_max_body(mut self, bytes: usize) -> Self {
        self.max_body = bytes;
        self
    }

    /// Ends a search stream with an error after `pages` pages (default
    /// [`DEFAULT_MAX_PAGES`]), so a server whose `next` links never end cannot
    /// grow a caller's memory without bound.
    pub fn with_max_pages(mut self, pages: usize) -> Self {
        self.max_pages = pages.max(1);
        self
    }

    /// Retries calls that are safe to repeat as `retry` says (default
    /// [`FhirRetry::default`]; [`FhirRetry::none`] turns them off).
    pub fn with_retry(mut self, retry: FhirRetry) -> Self {
        self.retry = retry;
        self
    }

    /// Before its first call, reads the server's CapabilityStatement and fails
    /// every call (kind [`InvalidResponse`](auth_core::ErrorKind::InvalidResponse))
    /// unless it says FHIR R4 (`4.0.x`): a server of another version would
    /// misread this model's resources. A failed check is tried again at the next call.
    pub fn with_r4_check(mut self) -> Self {
        self.version_checked = Some(Arc::new(tokio::sync::OnceCell::new()));
        self
    }

    async fn check_version(&self) -> Result<()> {
        let Some(checked) = &self.version_checked else { return Ok(()) };
        checked
            .get_or_try_init(|| async {
                let url = self.url(&["metadata"])?;
                let metadata: JsonResource =
                    self.send_once(&Method::GET, &url, &HeaderMap::new(), None).await?.resource()?;
                let version = metadata.0.get("fhirVersion").and_then(serde_json::Value::as_str).unwrap_or("");
                if version.starts_with("4.0.") {
                    return Ok(());
                }
                Err(Error::invalid_response(
                    "FHIR metadata",
                    200,
                    ResponseProblem::Other(format!(
                        "the server speaks FHIR `{version}`, not R4 (4.0.x); no call made"
                    )),
                ))
            })
            .await
            .map(drop)
    }

    /// What this client (and its clones) did: calls, retries, retries refused by
    /// the budget.
    pub fn stats(&self) -> FhirStats {
        self.retries.stats()
    }

    pub(crate) fn max_pages(&self) -> usize {
        self.max_pages
    }

    /// The base URL (ending in `/`).
    pub fn base(&self) -> &Url {
        &self.base
    }

    /// The authenticated HTTP client underneath.
    pub fn api(&self) -> &AuthClient {
        &self.api
    }

    /// `{base}/{segments…}`, each segment percent-encoded (an id cannot add a path).
    pub fn url(&self, segments: &[&str]) -> Result<Url> {
        let mut url = self.base.clone();
        {
            let mut path = url
                .path_segments_mut()
                .map_err(|()| Error::configuration("the FHIR base cannot have a path"))?;
            path.pop_if_empty();
            for s in segments {
                if s.is_empty() || *s == "." || *s == ".." {
                    return Err(Error::configuration(format!("`{s}` is not a valid path segment")));
                }
                path.push(s);
            }
        }
        Ok(url)
    }

    /// Sends one FHIR request and returns the response if its status is a success;
    /// an error status becomes [`ErrorKind::Api`](auth_core::ErrorKind::Api) with the
    /// server's OperationOutcome. A body is sent as `application/fhir+json` unless
    /// `headers` name another `Content-Type`. Retried as [`FhirClient::with_retry`]
    /// says when the interaction is safe to repeat.
    pub async fn send(
        &self,
        method: Method,
        url: Url,
        headers: HeaderMap,
        body: Option<Bytes>,
    ) -> Result<FhirResponse> {
        self.check_version().await?;
        let safe = safe_to_repeat(&method, url.path(), &headers);
        self.retries.call(&self.retry);
        let mut attempt = 1;
        loop {
            let error = match self.send_once(&method, &url, &headers, body.as_ref()).await {
                Ok(response) => return Ok(response),
                Err(error) => error,
            };
            let Some(retry_after) = retryable(&error).filter(|_| safe) else { return Err(error) };
            if attempt >= self.retry.attempts {
                return Err(error);
            }
            let Some(delay) = self.retry.delay(attempt, retry_after) else { return Err(error) };
            if !self.retries.withdraw(&self.retry) {
                tracing::debug!("FHIR retry budget spent; not retrying");
                return Err(error);
            }
            self.api.authenticator().api_retried();
            tracing::debug!(attempt, delay_ms = delay.as_millis() as u64, error = %error, "retrying a FHIR call");
            tokio::time::sleep(delay).await;
            attempt += 1;
        }
    }

    async fn send_once(
        &self,
        method: &Method,
        url: &Url,
        headers: &HeaderMap,
        body: Option<&Bytes>,
    ) -> Result<FhirResponse> {
        let mut request = self.api.request(method.clone(), url.clone()).header(ACCEPT, FHIR_JSON);
        for (name, value) in headers {
            request = request.header(name.clone(), value.clone());
        }
        if let Some(body) = body {
            if !headers.contains_key(CONTENT_TYPE) {
                request = request.header(CONTENT_TYPE, FHIR_JSON);
            }
            request = request.body(body.clone());
        }
        let response = request.send().await?;
        FhirResponse::read(response, self.max_body).await
    }

    /// `GET [base]/[type]/[id]`.
    pub async fn read<R: Resource>(&self, id: &str) -> Result<R> {
        let url = self.url(&[type_of::<R>()?, id])?;
        self.send(Method::GET, url, HeaderMap::new(), None).await?.resource()
    }

    /// `GET [base]/[type]/[id]` for a resource type this model does not write out.
    pub async fn read_json(&self, resource_type: &str, id: &str) -> Result<JsonResource> {
        let url = self.url(&[resource_type, id])?;
        self.send(Method::GET, url, HeaderMap::new(), None).await?.resource()
    }

    /// `GET [base]/[type]/[id]/_history/[vid]`.
    pub async fn vread<R: Resource>(&self, id: &str, version_id: &str) -> Result<R> {
        let url = self.url(&[type_of::<R>()?, id, "_history", version_id])?;
        self.send(Method::GET, url, HeaderMap::new(), None).await?.resource()
    }

    /// `POST [base]/[type]`.
    pub async fn create<R: Resource>(&self, resource: &R) -> Result<Created<R>> {
        self.create_with(resource, HeaderMap::new()).await
    }

    /// `POST [base]/[type]` with `If-None-Exist`: creates only if nothing matches.
    pub async fn create_if_none_exist<R: Resource>(
        &self,
        resource: &R,
        condition: &SearchParams,
    ) -> Result<Created<R>> {
        let mut headers = HeaderMap::new();
        headers.insert(HeaderName::from_static("if-none-exist"), header_value(&condition.to_query())?);
        self.create_with(resource, headers).await
    }

    async fn create_with<R: Resource>(&self, resource: &R, headers: HeaderMap) -> Result<Created<R>> {
        let url = self.url(&[type_name(resource)?])?;
        let body = to_body(resource)?;
        let response = self.send(Method::POST, url, headers, Some(body)).await?;
        Created::from_response(&response)
    }

    /// `PUT [base]/[type]/[id]`; with `if_match` (a version id), only if the server
    /// still has that version.
    pub async fn update<R: Resource>(&self, resource: &R, if_match: Option<&str>) -> Result<R> {
        let id = resource.id().ok_or_else(|| Error::configuration("a resource needs an id to be updated"))?;
        let url = self.url(&[type_name(resource)?, id])?;
        let mut headers = HeaderMap::new();
        if let Some(version) = if_match {
            headers.insert(IF_MATCH, if_match_header(version)?);
        }
        let body = to_body(resource)?;
        self.send(Method::PUT, url, headers, Some(body)).await?.resource()
    }

    /// `PUT [base]/[type]?condition`: updates the one resource that matches, or
    /// creates it when none does ([`Created::created`] says which); more than one
    /// match is an error (412). Safe to repeat, so retried like any `PUT`.
    pub async fn update_where<R: Resource>(
        &self,
        resource: &R,
        condition: &SearchParams,
    ) -> Result<Created<R>> {
        if condition.is_empty() {
            return Err(Error::configuration("a conditional update needs search parameters"));
        }
        let mut url = self.url(&[type_name(resource)?])?;
        url.set_query(Some(&condition.to_query()));
        let body = to_body(resource)?;
        let response = self.send(Method::PUT, url, HeaderMap::new(), Some(body)).await?;
        Created::from_response(&response)
    }

    /// `DELETE [base]/[type]/[id]`.
    pub async fn delete(&self, resource_type: &str, id: &str) -> Result<()> {
        let url = self.url(&[resource_type, id])?;
        self.send(Method::DELETE, url, HeaderMap::new(), None).await.map(drop)
    }

    /// `DELETE [base]/[type]?condition`: deletes what matches (a server may refuse
    /// more than one match with 412).
    pub async fn delete_where(&self, resource_type: &str, condition: &SearchParams) -> Result<()> {
        if condition.is_empty() {
            return Err(Error::configuration("a conditional delete needs search parameters"));
        }
        let mut url = self.url(&[resource_type])?;
        url.set_query(Some(&condition.to_query()));
        self.send(Method::DELETE, url, HeaderMap::new(), None).await.map(drop)
    }

    /// `GET [base]/metadata`: the server's CapabilityStatement, typed (what it does
    /// not name is in its `extra`).
    pub async fn capabilities(&self) -> Result<CapabilityStatement> {
        let url = self.url(&["metadata"])?;
        self.send(Method::GET, url, HeaderMap::new(), None).await?.resource()
    }
}

pub(crate) fn type_of<R: Resource>() -> Result<&'static str> {
    if R::TYPE == JsonResource::TYPE {
        return Err(Error::configuration(
            "JsonResource has no fixed type: use read_json or a typed resource",
        ));
    }
    Ok(R::TYPE)
}

/// The type of `resource`: its Rust type's, or for a [`JsonResource`] its own `resourceType`.
pub(crate) fn type_name<R: Resource>(resource: &R) -> Result<&str> {
    match resource.resource_type() {
        t if t == JsonResource::TYPE || t.is_empty() => {
            Err(Error::configuration("the resource has no resourceType"))
        }
        t => Ok(t),
    }
}

/// `If-Match: W/"<version>"` (servers ignore an unquoted one).
pub(crate) fn if_match_header(version: &str) -> Result<HeaderValue> {
    header_value(&format!("W/\"{}\"", version.trim().trim_start_matches("W/").trim_matches('"')))
}

fn header_value(s: &str) -> Result<HeaderValue> {
    HeaderValue::from_str(s)
        .map_err(|_| Error::configuration("a header value has characters HTTP does not allow"))
}

fn to_body<R: Resource>(resource: &R) -> Result<Bytes> {
    serde_json::to_vec(resource)
        .map(Bytes::from)
        .map_err(|e| Error::configuration(format!("the resource cannot be written as JSON: {e}")))
}

/// A successful FHIR response, read and capped.
pub struct FhirResponse {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

impl fmt::Debug for FhirResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The body can hold patient data: its size only.
        f.debug_struct("FhirResponse")
            .field("status", &self.status)
            .field("body_len", &self.body.len())
            .finish_non_exhaustive()
    }
}

impl FhirResponse {
    /// Reads `response`: a success is kept; an error status becomes a FHIR error.
    pub async fn read(response: Response, max_body: usize) -> Result<Self> {
        let status = response.status();
        let headers = response.headers().clone();
        let body = read_capped(response, max_body, "FHIR request").await?;
        if !status.is_success() {
            let outcome = serde_json::from_slice::<OperationOutcome>(&body).ok();
            let failure = FhirError::new(status.as_u16(), outcome, content_type(&headers), body.len())
                .with_retry_after(retry_after(&headers));
            return Err(failure.into());
        }
        Ok(Self { status, headers, body: Bytes::from(body.to_vec()) })
    }

    /// The status.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The headers.
    pub fn headers(&self) -> &HeaderMap {
        &self.headers
    }

    /// The body.
    pub fn body(&self) -> &Bytes {
        &self.body
    }

    /// The body as JSON of type `T`.
    pub fn json<T: serde::de::DeserializeOwned>(&self) -> Result<T> {
        decode(self.status, &self.headers, &self.body)
    }

    /// The body as a resource of type `R` (its `resourceType` is checked).
    pub fn resource<R: Resource>(&self) -> Result<R> {
        self.json()
    }

    /// The body as a resource, or `None` when the server sent none.
    pub fn optional_resource<R: Resource>(&self) -> Result<Option<R>> {
        if self.body.iter().all(u8::is_ascii_whitespace) {
            return Ok(None);
        }
        self.resource().map(Some)
    }

    /// The version in `ETag` (`W/"3"` → `3`).
    pub fn etag_version(&self) -> Option<String> {
        let tag = self.headers.get(ETAG)?.to_str().ok()?;
        Some(tag.trim().trim_start_matches("W/").trim_matches('"').to_owned()).filter(|v| !v.is_empty())
    }

    /// Id and version from `Location` (`…/Patient/123/_history/4`).
    pub fn location_parts(&self) -> (Option<String>, Option<String>) {
        let Some(location) = self.headers.get(LOCATION).and_then(|v| v.to_str().ok()) else {
            return (None, None);
        };
        let parts: Vec<&str> = location.trim_end_matches('/').split('/').collect();
        match parts.iter().rposition(|p| *p == "_history") {
            Some(i) if i >= 1 => (Some(parts[i - 1].to_owned()), parts.get(i + 1).map(|v| (*v).to_owned())),
            _ => (parts.last().map(|s| (*s).to_owned()), None),
        }
    }
}

/// Decodes a FHIR body. A mismatch says where, never what: the text could be
/// patient data.
fn decode<T: serde::de::DeserializeOwned>(status: StatusCode, headers: &HeaderMap, body: &[u8]) -> Result<T> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(Error::invalid_response("FHIR request", status.as_u16(), ResponseProblem::Empty));
    }
    serde_json::from_slice(body).map_err(|e| {
        let problem = match e.classify() {
            serde_json::error::Category::Syntax | serde_json::error::Category::Eof => {
                ResponseProblem::NotJson { content_type: content_type(headers), len: body.len() }
            }
            _ => ResponseProblem::Other(format!(
                "the body does not match the expected type (line {}, column {}){}",
                e.line(),
                e.column(),
                resource_type_hint(&e)
            )),
        };
        Error::invalid_response("FHIR request", status.as_u16(), problem)
    })
}

/// Our own "expected resourceType" messages name types, not data: keep them. Only
/// when the message is ours from its start: serde quotes a mistyped string value in
/// its own messages, and that value could contain the same words.
fn resource_type_hint(e: &serde_json::Error) -> String {
    let text = e.to_string();
    if text.starts_with("expected resourceType `") {
        format!(": {}", text.split(" at line").next().unwrap_or_default())
    } else {
        String::new()
    }
}
