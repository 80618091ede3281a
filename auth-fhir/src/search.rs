//! Search: by `GET` or `POST [type]/_search`, a `_summary=count` total, and pages
//! followed as a stream, refusing `next` links that leave the server or loop.

use std::collections::HashSet;
use std::pin::Pin;

use bytes::Bytes;
use futures_core::Stream;
use reqwest::Method;
use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderValue};
use url::Url;

use auth_core::{Error, ResponseProblem, Result};

use crate::client::{FhirClient, type_of};
use crate::model::{Bundle, Resource};

/// A stream of results, each page's or each resource's; ends at the first error.
pub type FhirStream<T> = Pin<Box<dyn Stream<Item = Result<T>> + Send>>;

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

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// As a query string (`name=x&_count=10`).
    pub fn to_query(&self) -> String {
        let mut s = form_urlencoded::Serializer::new(String::new());
        for (k, v) in &self.0 {
            s.append_pair(k, v);
        }
        s.finish()
    }

    /// Parses a query string (`name=x&_count=10`), decoding it.
    pub fn from_query(query: &str) -> Self {
        form_urlencoded::parse(query.trim_start_matches('?').as_bytes()).into_owned().collect()
    }
}

impl<K: Into<String>, V: Into<String>> FromIterator<(K, V)> for SearchParams {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        Self(iter.into_iter().map(|(k, v)| (k.into(), v.into())).collect())
    }
}

impl FhirClient {
    /// `GET [base]/[type]?params`: the first page. `_include`d resources come in
    /// the same bundle, apart from the matches (see [`Bundle::included`]).
    pub async fn search<R: Resource>(&self, params: &SearchParams) -> Result<Bundle<R>> {
        let url = self.search_url::<R>(params)?;
        self.get(url).await?.json()
    }

    /// `POST [base]/[type]/_search` with the parameters as a form: for queries too
    /// long for a URL, or that should not appear in server logs. Retried like a
    /// `GET`: a search changes nothing.
    pub async fn search_post<R: Resource>(&self, params: &SearchParams) -> Result<Bundle<R>> {
        let (url, body) = self.search_form::<R>(params)?;
        self.post_form(url, body).await?.json()
    }

    /// How many resources match (`_summary=count`): the server counts, nothing
    /// else comes back.
    pub async fn count<R: Resource>(&self, params: &SearchParams) -> Result<u64> {
        let mut params = params.clone();
        params.0.retain(|(k, _)| k != "_summary" && k != "_count");
        params.push("_summary", "count");
        let bundle: Bundle<R> = self.search(&params).await?;
        bundle.total.map(u64::from).ok_or_else(|| {
            Error::invalid_response(
                "FHIR search",
                200,
                ResponseProblem::Other("the server sent no total for _summary=count".into()),
            )
        })
    }

    /// The page after `bundle`, following its `next` link; `None` on the last page.
    /// A `next` link to another origin is refused: the token must not go there.
    pub async fn next_page<R: Resource>(&self, bundle: &Bundle<R>) -> Result<Option<Bundle<R>>> {
        let Some(next) = bundle.next_link() else { return Ok(None) };
        let url = self.same_origin(next, "FHIR search")?;
        self.get(url).await?.json().map(Some)
    }

    /// Every match of a search, page after page, as a stream.
    ///
    /// The stream ends with an error, after the matches of the pages read, when a
    /// `next` link repeats one already followed (a loop), leaves the server, or the
    /// pages pass the cap ([`FhirClient::with_max_pages`]).
    pub fn search_all<R: Resource>(&self, params: SearchParams) -> FhirStream<R> {
        let pages = match self.search_url::<R>(&params) {
            Ok(url) => self.pages::<R>(url, "FHIR search"),
            Err(e) => Box::pin(futures_util::stream::iter([Err(e)])),
        };
        let matches = futures_util::TryStreamExt::map_ok(pages, |bundle| {
            futures_util::stream::iter(bundle.into_matches().map(Ok).collect::<Vec<_>>())
        });
        Box::pin(futures_util::TryStreamExt::try_flatten(matches))
    }

    /// Every page of a search (matches and `_include`d resources), as a stream; see
    /// [`FhirClient::search_all`] for how it ends.
    pub fn search_pages<R: Resource>(&self, params: SearchParams) -> FhirStream<Bundle<R>> {
        match self.search_url::<R>(&params) {
            Ok(url) => self.pages(url, "FHIR search"),
            Err(e) => Box::pin(futures_util::stream::iter([Err(e)])),
        }
    }

    fn search_url<R: Resource>(&self, params: &SearchParams) -> Result<Url> {
        let mut url = self.url(&[type_of::<R>()?])?;
        if !params.is_empty() {
            url.set_query(Some(&params.to_query()));
        }
        Ok(url)
    }

    fn search_form<R: Resource>(&self, params: &SearchParams) -> Result<(Url, Bytes)> {
        Ok((self.url(&[type_of::<R>()?, "_search"])?, Bytes::from(params.to_query())))
    }

    pub(crate) async fn get(&self, url: Url) -> Result<crate::FhirResponse> {
        self.send(Method::GET, url, HeaderMap::new(), None).await
    }

    async fn post_form(&self, url: Url, body: Bytes) -> Result<crate::FhirResponse> {
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/x-www-form-urlencoded"));
        self.send(Method::POST, url, headers, Some(body)).await
    }

    /// Pages from `first` (a `GET`) on, following `next` links on this server only, with no
    /// loop and at most [`FhirClient::with_max_pages`] pages. A stop is delivered
    /// after the last page read.
    pub(crate) fn pages<R: Resource>(&self, first: Url, what: &'static str) -> FhirStream<Bundle<R>> {
        let client = self.clone();
        let start = Paging { next: Some(first), followed: HashSet::new(), pages: 0, stop: None };
        Box::pin(futures_util::stream::try_unfold(start, move |mut paging| {
            let client = client.clone();
            async move {
                if let Some(stop) = paging.stop.take() {
                    return Err(stop);
                }
                let Some(url) = paging.next.take() else { return Ok(None) };
                let bundle: Bundle<R> = client.get(url).await?.json()?;
                paging.pages += 1;
                if let Some(link) = bundle.next_link() {
                    match client.same_origin(link, what) {
                        Err(refused) => paging.stop = Some(refused),
                        Ok(url) if !paging.followed.insert(url.clone()) => {
                            paging.stop = Some(paging_problem(
                                what,
                                format!(
                                    "the server's next links loop (page {} links to a page already read); stopped",
                                    paging.pages
                                ),
                            ));
                        }
                        Ok(_) if paging.pages >= client.max_pages() => {
                            paging.stop = Some(paging_problem(
                                what,
                                format!(
                                    "the pages go on past {} pages; stopped (raise FhirClient::with_max_pages for \
                                     reads that long)",
                                    client.max_pages()
                                ),
                            ));
                        }
                        Ok(url) => paging.next = Some(url),
                    }
                }
                Ok(Some((bundle, paging)))
            }
        }))
    }

    /// `link` resolved against the base, if it stays on the server's origin.
    pub(crate) fn same_origin(&self, link: &str, what: &str) -> Result<Url> {
        let url =
            self.base().join(link).map_err(|_| paging_problem(what, "the next link is not a URL".into()))?;
        if url.origin() != self.base().origin() {
            return Err(paging_problem(
                what,
                format!(
                    "a link points to another origin ({}); not followed, the token must not go there",
                    url.host_str().unwrap_or_default()
                ),
            ));
        }
        Ok(url)
    }
}

impl<R: Resource> Bundle<R> {
    /// The resources of type `T` that `_include` or `_revinclude` brought in
    /// (search mode `include`), apart from the matches. A [`JsonResource`](crate::JsonResource)
    /// `T` takes every included resource.
    pub fn included<T: Resource>(&self) -> Result<Vec<T>> {
        let included = self.entry.iter().filter(|e| e.search_mode() == Some("include"));
        let mut found = Vec::new();
        for entry in included {
            let value = match &entry.resource {
                Some(crate::EntryResource::Typed(r)) => {
                    serde_json::to_value(r).map_err(|e| Error::configuration(e.to_string()))?
                }
                Some(crate::EntryResource::Other(v)) => v.clone(),
                None => continue,
            };
            let kind = value.get("resourceType").and_then(serde_json::Value::as_str);
            if T::TYPE == <crate::JsonResource as crate::ResourceType>::TYPE || kind == Some(T::TYPE) {
                found.push(serde_json::from_value(value).map_err(|e| {
                    paging_problem("FHIR search", format!("an included {} does not parse: {e}", T::TYPE))
                })?);
            }
        }
        Ok(found)
    }
}

/// Where a paged read is: what to read next, what it has followed.
struct Paging {
    next: Option<Url>,
    followed: HashSet<Url>,
    pages: usize,
    /// An error to end the stream with, after the page that led to it.
    stop: Option<Error>,
}

fn paging_problem(what: &str, message: String) -> Error {
    Error::invalid_response(what, 200, ResponseProblem::Other(message))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_round_trip_with_repeats_and_escapes() {
        let params =
            SearchParams::new().add("date", "ge2020").add("date", "lt2021").add("name", "Du Marché&co");
        let query = params.to_query();
        assert_eq!(query, "date=ge2020&date=lt2021&name=Du+March%C3%A9%26co");
        assert_eq!(SearchParams::from_query(&format!("?{query}")), params);
    }
}
