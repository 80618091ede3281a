//! A tower [`Layer`](tower_layer::Layer) that authenticates the requests of any
//! tower HTTP service: hyper-util's client, a tonic `Channel`, anything taking an
//! `http::Request<B>` and answering an `http::Response<B>`. Feature `tower`.
//!
//! The same flow as [`AuthClient`] (one implementation, in
//! `exchange.rs`): the bearer and the [`ApiProfile`]'s extras on every request,
//! the profile's judge on every rejection, the rejected token dropped and the
//! request replayed once with a fresh one. gRPC's UNAUTHENTICATED (`grpc-status:
//! 16` in the answer's headers) counts as a rejected token. With a DPoP-bound
//! token, every send (the replay and the answer to a `use_dpop_nonce` challenge
//! included) carries a new proof for the request's method and URI; a URI without
//! scheme and host (tonic's, unless the client was given its origin with
//! `Grpc::with_origin`) cannot be proven, and fails with an [`Error`]
//! (configuration).
//!
//! ```no_run
//! # use auth_core::{TokenManager, oauth2::OAuth2Source, ClientSecret};
//! # use auth_core::tower::AuthLayer;
//! # fn demo(source: OAuth2Source) {
//! use tower_layer::Layer;
//! let tokens = TokenManager::new(source);
//! // Request bodies that are `Clone` (hyper-util's `Full<Bytes>`, `String`) are
//! // cloned for the replay:
//! let layer = AuthLayer::new(tokens.clone());
//! // Others (a tonic `Channel`'s body) are read ahead when they are small and
//! // complete at once, and rebuilt with the function given:
//! // let layer = AuthLayer::new(tokens).buffer_bodies(64 * 1024, tonic::body::Body::new);
//! # let _ = layer; }
//! ```
//!
//! **What a caller gets back.** Unlike [`AuthClient`], which
//! turns a final rejection into an [`Error`], the layer hands the server's own
//! answer back (a 401 after the replay, a 403 `insufficient_scope`, a gRPC
//! UNAUTHENTICATED): a layer in someone else's stack keeps its answers the shape
//! that stack expects. The service's errors are the inner service's, or an
//! [`Error`] (no token could be had, a plain `http://` URI to another host, or the
//! profile's judge calling a rejection a configuration mistake), boxed; downcast
//! to tell them apart.
//!
//! **The replay needs the body again.** [`AuthLayer::new`] requires `B: Clone`
//! and clones it before sending. [`AuthLayer::buffer_bodies`] takes any body:
//! what the body holds *at once* (without waiting), up to a limit, is read ahead
//! and kept for the replay; a body that is longer or still streaming (a gRPC
//! client stream, an upload) goes through unbuffered and is not replayed (its
//! rejected token is still dropped, so the next call gets a fresh one).
//!
//! **Plain http.** A request whose URI has a scheme goes out only over https or to
//! a loopback host (see [`AuthLayer::allow_insecure_http`]); a URI without one
//! (tonic's, whose channel adds the origin) is the channel's business.
//!
//! The response body is a [`BufferedBody`]: the inner body as it is, or, after a
//! rejection was read for judging, what was read followed by the rest.

use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use futures_util::future::BoxFuture;
use http::uri::PathAndQuery;
use http::{HeaderMap, Method, Request, Response, StatusCode, Uri};
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use tower_service::Service;
use url::Url;

use crate::client::{AuthClient, Authenticator};
use crate::endpoint::check_scheme_of;
use crate::error::Error;
use crate::exchange::{Outcome, REJECTION_BODY_CAP, Transport, attach_headers, exchange, missing_query};
use crate::profile::ApiProfile;
use crate::token::Token;

/// Errors of an [`AuthService`]: the inner service's, or an [`Error`], boxed.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Authenticates the requests of the service it wraps (see the [module](self)).
#[derive(Clone)]
pub struct AuthLayer<K = CloneBody> {
    shared: Arc<Shared>,
    keep: K,
}

#[derive(Clone)]
struct Shared {
    auth: Arc<dyn Authenticator>,
    profile: ApiProfile,
    allow_insecure_http: bool,
}

impl fmt::Debug for Shared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthLayer")
            .field("auth", &self.auth)
            .field("profile", &self.profile)
            .field("allow_insecure_http", &self.allow_insecure_http)
            .finish()
    }
}

impl<K: fmt::Debug> fmt::Debug for AuthLayer<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("AuthLayer").field(&self.shared).field(&self.keep).finish()
    }
}

impl AuthLayer<CloneBody> {
    /// A layer taking its tokens from `auth` (a [`TokenManager`](crate::TokenManager),
    /// or an `Arc<dyn Authenticator>` shared with other clients), with an empty
    /// profile, cloning request bodies for the replay.
    pub fn new(auth: impl Authenticator) -> Self {
        let shared =
            Shared { auth: Arc::new(auth), profile: ApiProfile::default(), allow_insecure_http: false };
        Self { shared: Arc::new(shared), keep: CloneBody }
    }

    /// A layer with `client`'s authenticator, profile and http setting: the
    /// same tokens and the same vendor extras as the client's own requests.
    pub fn from_client(client: &AuthClient) -> Self {
        let shared = Shared {
            auth: client.authenticator().clone(),
            profile: client.profile().clone(),
            allow_insecure_http: client.allows_insecure_http(),
        };
        Self { shared: Arc::new(shared), keep: CloneBody }
    }
}

impl<K> AuthLayer<K> {
    /// What the vendor's API wants on every request, and how its rejections are
    /// judged (default: nothing added, every rejection trusted).
    pub fn profile(mut self, profile: ApiProfile) -> Self {
        Arc::make_mut(&mut self.shared).profile = profile;
        self
    }

    /// Allows sending the token over plain `http://` to hosts other than loopback
    /// (refused by default). Only for closed test networks.
    pub fn allow_insecure_http(mut self, allow: bool) -> Self {
        Arc::make_mut(&mut self.shared).allow_insecure_http = allow;
        self
    }

    /// Keeps request bodies that are not `Clone` for the replay by reading ahead
    /// what they hold at once, up to `limit` bytes, and rebuilding the body type
    /// the inner service takes with `rebuild` (for tonic: `tonic::body::Body::new`).
    /// A body longer than `limit`, or one that would make the request wait (a
    /// client stream), is sent through as it comes and not replayed.
    pub fn buffer_bodies<F>(self, limit: usize, rebuild: F) -> AuthLayer<BufferBodies<F>> {
        AuthLayer { shared: self.shared, keep: BufferBodies { limit, rebuild } }
    }
}

impl<S, K: Clone> tower_layer::Layer<S> for AuthLayer<K> {
    type Service = AuthService<S, K>;

    fn layer(&self, inner: S) -> Self::Service {
        AuthService { inner, shared: self.shared.clone(), keep: self.keep.clone() }
    }
}

/// The service an [`AuthLayer`] makes of another one.
#[derive(Clone)]
pub struct AuthService<S, K = CloneBody> {
    inner: S,
    shared: Arc<Shared>,
    keep: K,
}

impl<S: fmt::Debug, K: fmt::Debug> fmt::Debug for AuthService<S, K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthService")
            .field("inner", &self.inner)
            .field("layer", &self.shared)
            .field("keep", &self.keep)
            .finish()
    }
}

impl<S, K, ReqB, ResB> Service<Request<ReqB>> for AuthService<S, K>
where
    S: Service<Request<ReqB>, Response = Response<ResB>> + Clone + Send + 'static,
    S::Future: Send,
    S::Error: Into<BoxError>,
    K: KeepBody<ReqB>,
    ReqB: Send + 'static,
    ResB: Body<Data = Bytes> + Unpin + Send + 'static,
    ResB::Error: Into<BoxError>,
{
    type Response = Response<BufferedBody<ResB>>;
    type Error = BoxError;
    type Future = BoxFuture<'static, Result<Self::Response, BoxError>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, request: Request<ReqB>) -> Self::Future {
        // The service made ready goes with this call; its clone serves the next
        // (tower's rule: only a service that said ready may be called).
        let clone = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, clone);
        let shared = self.shared.clone();
        let keep = self.keep.clone();
        Box::pin(async move {
            check_uri(request.uri(), shared.allow_insecure_http)?;
            let (parts, body) = request.into_parts();
            let (body, copy) = keep.keep(body).await?;
            let replay = copy.map(|copy| Request::from_parts(parts.clone(), copy));
            let request = Request::from_parts(parts, body);
            let mut transport = Tower { inner, ready: true, keep, body: PhantomData };
            match exchange(&*shared.auth, &shared.profile, &mut transport, request, replay).await {
                Outcome::Answer(response) | Outcome::Refused(_, response) => Ok(response),
                Outcome::Failed(error) => Err(error.into()),
                Outcome::Transport(error) => Err(error),
            }
        })
    }
}

/// Plain `http://` only to loopback, unless allowed (the rule of every other
/// request, [`check_scheme_of`]); a URI without a scheme is the inner service's to
/// complete.
fn check_uri(uri: &Uri, allow_insecure_http: bool) -> Result<(), Error> {
    match uri.scheme_str() {
        None => Ok(()),
        Some(scheme) => check_scheme_of(scheme, uri.host(), allow_insecure_http),
    }
}

/// A tower service as the [`Transport`] of an exchange.
struct Tower<S, K, ReqB> {
    inner: S,
    /// Whether `inner` said it is ready and has not been called since.
    ready: bool,
    /// How a request body is copied (for a DPoP nonce retry).
    keep: K,
    body: PhantomData<fn(ReqB)>,
}

impl<S, K, ReqB, ResB> Transport for Tower<S, K, ReqB>
where
    S: Service<Request<ReqB>, Response = Response<ResB>> + Send,
    S::Future: Send,
    S::Error: Into<BoxError>,
    K: KeepBody<ReqB>,
    ReqB: Send + 'static,
    ResB: Body<Data = Bytes> + Unpin + Send,
    ResB::Error: Into<BoxError>,
{
    type Request = Request<ReqB>;
    type Response = Response<BufferedBody<ResB>>;
    type Error = BoxError;

    fn attach(request: &mut Request<ReqB>, token: &Token, profile: &ApiProfile) {
        attach_headers(request.headers_mut(), token, profile);
        if profile.query_names().next().is_none() {
            return;
        }
        let uri = request.uri();
        let missing: Vec<(&str, &str)> = missing_query(profile, uri.query()).collect();
        if missing.is_empty() {
            return;
        }
        let query = uri.query().unwrap_or_default().to_owned();
        let query = form_urlencoded::Serializer::for_suffix(query, 0).extend_pairs(missing).finish();
        let path_and_query = format!("{}?{query}", uri.path());
        let mut parts = uri.clone().into_parts();
        // Always valid: a valid path and form-encoded pairs; if not, the request
        // goes without the parameters and the server says what is missing.
        match PathAndQuery::try_from(path_and_query) {
            Ok(pq) => {
                parts.path_and_query = Some(pq);
                match Uri::from_parts(parts) {
                    Ok(uri) => *request.uri_mut() = uri,
                    Err(_) => tracing::warn!("could not add the profile's query parameters to the URI"),
                }
            }
            Err(_) => tracing::warn!("could not add the profile's query parameters to the URI"),
        }
    }

    fn method(request: &Request<ReqB>) -> &Method {
        request.method()
    }

    fn url(request: &Request<ReqB>) -> Option<Url> {
        let uri = request.uri();
        if uri.scheme().is_none() || uri.authority().is_none() {
            return None;
        }
        Url::parse(&uri.to_string()).ok()
    }

    fn headers_mut(request: &mut Request<ReqB>) -> &mut HeaderMap {
        request.headers_mut()
    }

    async fn split(
        &mut self,
        request: Request<ReqB>,
    ) -> Result<(Request<ReqB>, Option<Request<ReqB>>), BoxError> {
        let (parts, body) = request.into_parts();
        let (body, copy) = self.keep.keep(body).await?;
        let copy = copy.map(|copy| Request::from_parts(parts.clone(), copy));
        Ok((Request::from_parts(parts, body), copy))
    }

    async fn send(&mut self, request: Request<ReqB>) -> Result<Self::Response, BoxError> {
        if !self.ready {
            std::future::poll_fn(|cx| self.inner.poll_ready(cx)).await.map_err(Into::into)?;
        }
        self.ready = false;
        let response = self.inner.call(request).await.map_err(Into::into)?;
        Ok(response.map(BufferedBody::new))
    }

    fn status(response: &Self::Response) -> StatusCode {
        response.status()
    }

    fn headers(response: &Self::Response) -> &HeaderMap {
        response.headers()
    }

    async fn read_for_judging(response: Self::Response) -> Result<(Self::Response, Vec<u8>), BoxError> {
        let (parts, mut body) = response.into_parts();
        let mut read = BytesMut::new();
        let mut trailers = None;
        let mut rest = body.rest.take();
        while read.len() < REJECTION_BODY_CAP {
            let Some(inner) = rest.as_mut() else { break };
            match inner.frame().await {
                None => rest = None,
                Some(frame) => match frame.map_err(Into::<BoxError>::into)?.into_data() {
                    Ok(data) => read.extend_from_slice(&data),
                    Err(frame) => {
                        trailers = frame.into_trailers().ok();
                        rest = None;
                    }
                },
            }
        }
        let head = read.freeze();
        let judged = head.get(..REJECTION_BODY_CAP).unwrap_or(&head).to_vec();
        let body = BufferedBody { head: Some(head), trailers, rest };
        Ok((Response::from_parts(parts, body), judged))
    }
}

/// A body of which the first bytes were read ahead (kept for a replay, or read to
/// judge a rejection), followed by the rest; or simply the inner body.
pub struct BufferedBody<B> {
    head: Option<Bytes>,
    trailers: Option<HeaderMap>,
    rest: Option<B>,
}

impl<B> fmt::Debug for BufferedBody<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Lengths only: a body can hold patient data.
        f.debug_struct("BufferedBody")
            .field("head_len", &self.head.as_ref().map(Bytes::len))
            .field("streaming", &self.rest.is_some())
            .finish()
    }
}

impl<B> BufferedBody<B> {
    /// `inner` as it is.
    pub fn new(inner: B) -> Self {
        Self { head: None, trailers: None, rest: Some(inner) }
    }

    /// A body that is `head` alone.
    fn complete(head: Bytes, trailers: Option<HeaderMap>) -> Self {
        Self { head: Some(head), trailers, rest: None }
    }
}

impl<B> Body for BufferedBody<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if let Some(head) = self.head.take().filter(|h| !h.is_empty()) {
            return Poll::Ready(Some(Ok(Frame::data(head))));
        }
        if let Some(rest) = self.rest.as_mut() {
            match Pin::new(rest).poll_frame(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(frame)) => return Poll::Ready(Some(frame.map_err(Into::into))),
                Poll::Ready(None) => self.rest = None,
            }
        }
        Poll::Ready(self.trailers.take().map(|t| Ok(Frame::trailers(t))))
    }

    fn is_end_stream(&self) -> bool {
        self.head.as_ref().is_none_or(Bytes::is_empty)
            && self.trailers.is_none()
            && self.rest.as_ref().is_none_or(Body::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        let head = self.head.as_ref().map_or(0, |h| h.len() as u64);
        let rest = self.rest.as_ref().map_or_else(|| SizeHint::with_exact(0), Body::size_hint);
        // The upper bound first: `set_lower` insists on staying under it.
        let mut hint = SizeHint::new();
        if let Some(upper) = rest.upper() {
            hint.set_upper(upper.saturating_add(head));
        }
        hint.set_lower(rest.lower().saturating_add(head));
        hint
    }
}

/// How a request body is kept for the one replay after a rejected token.
pub trait KeepBody<B>: Clone + Send + Sync + 'static {
    /// The body to send now and, if it can be sent twice, a copy for the replay.
    fn keep(&self, body: B) -> impl Future<Output = Result<(B, Option<B>), BoxError>> + Send;
}

/// Keeps a `Clone` body by cloning it ([`AuthLayer::new`]).
#[derive(Debug, Clone, Copy, Default)]
pub struct CloneBody;

impl<B: Clone + Send + 'static> KeepBody<B> for CloneBody {
    async fn keep(&self, body: B) -> Result<(B, Option<B>), BoxError> {
        let copy = body.clone();
        Ok((body, Some(copy)))
    }
}

/// Keeps a body by reading ahead what it holds at once ([`AuthLayer::buffer_bodies`]).
#[derive(Clone)]
pub struct BufferBodies<F> {
    limit: usize,
    rebuild: F,
}

impl<F> fmt::Debug for BufferBodies<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BufferBodies").field("limit", &self.limit).finish_non_exhaustive()
    }
}

impl<B, F> KeepBody<B> for BufferBodies<F>
where
    B: Body<Data = Bytes> + Unpin + Send + 'static,
    B::Error: Into<BoxError>,
    F: Fn(BufferedBody<B>) -> B + Clone + Send + Sync + 'static,
{
    async fn keep(&self, mut body: B) -> Result<(B, Option<B>), BoxError> {
        let mut head = BytesMut::new();
        loop {
            if body.is_end_stream() {
                let head = head.freeze();
                let copy = (self.rebuild)(BufferedBody::complete(head.clone(), None));
                return Ok(((self.rebuild)(BufferedBody::complete(head, None)), Some(copy)));
            }
            // What the body holds without waiting: a frame now, or none.
            let now = std::future::poll_fn(|cx| match Pin::new(&mut body).poll_frame(cx) {
                Poll::Ready(frame) => Poll::Ready(Some(frame)),
                Poll::Pending => Poll::Ready(None),
            })
            .await;
            match now {
                // The body waits for its producer (a stream): send it as it comes.
                None => break,
                Some(None) => {
                    let head = head.freeze();
                    let copy = (self.rebuild)(BufferedBody::complete(head.clone(), None));
                    return Ok(((self.rebuild)(BufferedBody::complete(head, None)), Some(copy)));
                }
                Some(Some(frame)) => match frame.map_err(Into::<BoxError>::into)?.into_data() {
                    Ok(data) => {
                        head.extend_from_slice(&data);
                        if head.len() > self.limit {
                            break;
                        }
                    }
                    // Trailers end a body.
                    Err(frame) => {
                        let trailers = frame.into_trailers().ok();
                        let head = head.freeze();
                        let copy = (self.rebuild)(BufferedBody::complete(head.clone(), trailers.clone()));
                        return Ok(((self.rebuild)(BufferedBody::complete(head, trailers)), Some(copy)));
                    }
                },
            }
        }
        let body = BufferedBody { head: Some(head.freeze()), trailers: None, rest: Some(body) };
        Ok(((self.rebuild)(body), None))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_http_only_to_loopback() {
        let uri = |s: &str| s.parse::<Uri>().ok().unwrap_or_default();
        assert!(check_uri(&uri("https://fhir.example/r4"), false).is_ok());
        assert!(check_uri(&uri("http://127.0.0.1:8080/x"), false).is_ok());
        assert!(check_uri(&uri("http://[::1]:8080/x"), false).is_ok());
        assert!(check_uri(&uri("http://localhost/x"), false).is_ok());
        assert!(
            check_uri(&uri("/pkg.Service/Method"), false).is_ok(),
            "tonic's URIs: the channel adds the origin"
        );
        let refused = check_uri(&uri("http://fhir.example/r4"), false);
        assert!(refused.is_err_and(|e| e.kind() == crate::ErrorKind::Configuration));
        assert!(check_uri(&uri("http://fhir.example/r4"), true).is_ok());
    }
}
