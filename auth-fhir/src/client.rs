//! The FHIR REST runtime: the interactions of FHIR R4 over an [`AuthClient`], so
//! every call carries a valid token, the vendor's extras, and one replay after a
//! rejected token. Generated clients (`#[authenticated_api]`) call into this.

use std::collections::HashSet;
use std::fmt;
use std::pin::Pin;

use bytes::Bytes;
use futures_core::Stream;
use reqwest::header::{ACCEPT, CONTENT_TYPE, ETAG, HeaderMap, HeaderName, HeaderValue, IF_MATCH, LOCATION};
use reqwest::{Method, Response, StatusCode};
use url::Url;

use auth_core::endpoint::{content_type, read_capped};
use auth_core::{AuthClient, Error, ResponseProblem, Result};

use crate::error::FhirError;
use crate::model::{Bundle, CapabilityStatement, JsonResource, OperationOutcome, Resource, ResourceType};

/// The FHIR JSON media type.
pub const FHIR_JSON: &str = "application/fhir+json";

/// Default cap on a FHIR response body (a page of a search can be large).
pub const DEFAULT_MAX_BODY: usize = 16 * 1024 * 1024;

/// Default cap on the pages one search stream follows.
pub const DEFAULT_MAX_PAGES: usize = 10_000;

/// Search parameters, in order; a name may repeat (`date=ge2020&date=lt2021`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SearchParams(Vec<(String, String)>);

impl SearchParams {
    /// No parameters.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a parameter.
    pub fn add(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.0.push((name.into(), value.into()));
        self
    }

    /// Adds a parameter in place.
    pub fn push(&mut self, name: impl Into<String>, value: impl Into<String>) {
        self.0.push((name.into(), value.into()));
    }

    /// Adds every parameter of `other`.
    pub fn extend_from(&mut self, other: &SearchParams) {
        self.0.extend(other.0.iter().cloned());
    }

    /// The parameters.
    pub fn pairs(&self) -> &[(String, String)] {
        &self.0
    }

    /// As a query string (`name=x&_count=10`).
    pub fn to_query(&self) -> String {
        let mut s = form_urlencoded::Serializer::new(String::new());
        for (k, v) in &self.0 {
            s.append_pair(k, v);
        }
        s.finish()
    }
}

impl<K: Into<String>, V: Into<String>> FromIterator<(K, V)> for SearchParams {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        Self(iter.into_iter().map(|(k, v)| (k.into(), v.into())).collect())
    }
}

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
        Ok(Self { api, base, max_body: DEFAULT_MAX_BODY, max_pages: DEFAULT_MAX_PAGES })
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
    /// server's OperationOutcome.
    pub async fn send(
        &self,
        method: Method,
        url: Url,
        headers: HeaderMap,
        body: Option<Bytes>,
    ) -> Result<FhirResponse> {
        let mut request = self.api.request(method, url).header(ACCEPT, FHIR_JSON);
        for (name, value) in &headers {
            request = request.header(name.clone(), value.clone());
        }
        if let Some(body) = body {
            request = request.header(CONTENT_TYPE, FHIR_JSON).body(body);
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

    /// `GET [base]/[type]?params`: the first page.
    pub async fn search<R: Resource>(&self, params: &SearchParams) -> Result<Bundle<R>> {
        let mut url = self.url(&[type_of::<R>()?])?;
        if !params.pairs().is_empty() {
            url.set_query(Some(&params.to_query()));
        }
        self.send(Method::GET, url, HeaderMap::new(), None).await?.json()
    }

    /// The page after `bundle`, following its `next` link; `None` on the last page.
    /// A `next` link to another origin is refused: the token must not go there.
    pub async fn next_page<R: Resource>(&self, bundle: &Bundle<R>) -> Result<Option<Bundle<R>>> {
        let Some(next) = bundle.next_link() else { return Ok(None) };
        let url = self.same_origin(next)?;
        self.send(Method::GET, url, HeaderMap::new(), None).await?.json().map(Some)
    }

    /// Every match of a search, page after page, as a stream.
    ///
    /// The stream ends with an error, after the matches of the pages read, when a
    /// `next` link repeats one already followed (a loop) or the pages pass the cap
    /// ([`FhirClient::with_max_pages`]).
    pub fn search_all<R: Resource>(
        &self,
        params: SearchParams,
    ) -> Pin<Box<dyn Stream<Item = Result<R>> + Send>> {
        let client = self.clone();
        let start = Paging { next: Some(Page::First(params)), followed: HashSet::new(), pages: 0 };
        let pages = futures_util::stream::try_unfold(start, move |mut paging| {
            let client = client.clone();
            async move {
                let bundle: Bundle<R> = match paging.next.take() {
                    None => return Ok(None),
                    Some(Page::First(params)) => client.search(&params).await?,
                    Some(Page::Next(url)) => {
                        client.send(Method::GET, url, HeaderMap::new(), None).await?.json()?
                    }
                };
                paging.pages += 1;
                let mut stop = None;
                if let Some(link) = bundle.next_link() {
                    match client.same_origin(link) {
                        Err(refused) => stop = Some(refused),
                        Ok(url) if !paging.followed.insert(url.clone()) => {
                            stop = Some(paging_problem(format!(
                                "the server's next links loop (page {} links to a page already read); stopped",
                                paging.pages
                            )));
                        }
                        Ok(_) if paging.pages >= client.max_pages => {
                            stop = Some(paging_problem(format!(
                                "the search goes on past {} pages; stopped (raise FhirClient::with_max_pages \
                                 for searches that long)",
                                client.max_pages
                            )));
                        }
                        Ok(url) => paging.next = Some(Page::Next(url)),
                    }
                }
                // A stop is delivered after the matches of the last page read.
                let mut items: Vec<Result<R>> = bundle.into_matches().map(Ok).collect();
                items.extend(stop.map(Err));
                Ok(Some((futures_util::stream::iter(items), paging)))
            }
        });
        Box::pin(futures_util::TryStreamExt::try_flatten(pages))
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
        let url = self.url(&[type_of::<R>()?])?;
        let body = to_body(resource)?;
        let response = self.send(Method::POST, url, headers, Some(body)).await?;
        Created::from_response(&response)
    }

    /// `PUT [base]/[type]/[id]`; with `if_match` (a version id), only if the server
    /// still has that version.
    pub async fn update<R: Resource>(&self, resource: &R, if_match: Option<&str>) -> Result<R> {
        let id = resource.id().ok_or_else(|| Error::configuration("a resource needs an id to be updated"))?;
        let url = self.url(&[type_of::<R>()?, id])?;
        let mut headers = HeaderMap::new();
        if let Some(version) = if_match {
            headers.insert(IF_MATCH, header_value(&format!("W/\"{version}\""))?);
        }
        let body = to_body(resource)?;
        self.send(Method::PUT, url, headers, Some(body)).await?.resource()
    }

    /// `DELETE [base]/[type]/[id]`.
    pub async fn delete(&self, resource_type: &str, id: &str) -> Result<()> {
        let url = self.url(&[resource_type, id])?;
        self.send(Method::DELETE, url, HeaderMap::new(), None).await.map(drop)
    }

    /// `GET [base]/metadata`: the server's CapabilityStatement, typed (what it does
    /// not name is in its `extra`).
    pub async fn capabilities(&self) -> Result<CapabilityStatement> {
        let url = self.url(&["metadata"])?;
        self.send(Method::GET, url, HeaderMap::new(), None).await?.resource()
    }

    fn same_origin(&self, link: &str) -> Result<Url> {
        let url = self.base.join(link).map_err(|_| {
            Error::invalid_response(
                "FHIR search",
                200,
                ResponseProblem::Other("the next link is not a URL".into()),
            )
        })?;
        if url.origin() != self.base.origin() {
            return Err(Error::invalid_response(
                "FHIR search",
                200,
                ResponseProblem::Other(format!(
                    "the next link points to another origin ({}); not followed, the token must not go there",
                    url.host_str().unwrap_or_default()
                )),
            ));
        }
        Ok(url)
    }
}

enum Page {
    First(SearchParams),
    Next(Url),
}

/// Where a search stream is: what to read next, what it has followed.
struct Paging {
    next: Option<Page>,
    followed: HashSet<Url>,
    pages: usize,
}

fn paging_problem(message: String) -> Error {
    Error::invalid_response("FHIR search", 200, ResponseProblem::Other(message))
}

fn type_of<R: Resource>() -> Result<&'static str> {
    if R::TYPE == JsonResource::TYPE {
        return Err(Error::configuration(
            "JsonResource has no fixed type: use read_json or a typed resource",
        ));
    }
    Ok(R::TYPE)
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
            return Err(FhirError::into_error(status.as_u16(), outcome, content_type(&headers), body.len()));
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
