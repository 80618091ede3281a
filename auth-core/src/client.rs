//! Authenticated requests: attach `Authorization: Bearer …` (marked sensitive) and
//! the vendor's per-request extras, and when the server says the token is bad,
//! drop that exact token and replay the request once with a fresh one. A
//! DPoP-bound token goes as `Authorization: DPoP …` with a new proof for each send,
//! and a server's `use_dpop_nonce` challenge gets one more send with its nonce
//! (see [`crate::dpop`]).
//!
//! "The token is bad" means a 401, or any status whose `WWW-Authenticate` carries
//! `error="invalid_token"` (SanteDB answers an invalid bearer with 403). A 403 with
//! `insufficient_scope` is final: a new token with the same scopes would not help.
//! The replay happens at most once, and only if the body can be sent again.
//!
//! The flow itself lives in `exchange.rs`, shared with the tower layer and the
//! reqwest middleware: this module only says how reqwest sends and reads.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use reqwest::header::HeaderMap;
use reqwest::{Method, Request, RequestBuilder, Response, StatusCode};
use url::Url;

use crate::dpop::Dpop;
use crate::error::{Error, Result};
use crate::exchange::{Outcome, REJECTION_BODY_CAP, Transport, attach_headers, exchange, missing_query};
use crate::manager::{Invalidation, TokenManager};
use crate::profile::ApiProfile;
use crate::source::CredentialSource;
use crate::store::TokenStore;
use crate::token::Token;

/// What a failed API request (as opposed to a token request) says it was doing:
/// [`Error::operation`] of its transport errors and timeouts.
pub const API_REQUEST: &str = "API request";

/// Default timeout of an API request made with [`AuthClient::new`]'s HTTP client.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// What an authenticated client needs from a token manager: a token, a way to
/// drop one a server rejected, and to say when a fresh token did not help either.
/// Object safe, so one client type serves every source and store.
#[async_trait]
pub trait Authenticator: Send + Sync + fmt::Debug + 'static {
    /// A valid token.
    async fn token(&self) -> Result<Arc<Token>>;
    /// Drops `token` because a server rejected it (see [`Invalidation`]).
    async fn invalidate(&self, token: &Token) -> Invalidation;
    /// The replay of a request was rejected too, with `token`, fetched to replace
    /// a rejected one: the rejection is likely not about the token. Returns how
    /// long no rejected token will be dropped (so none fetched) for this reason.
    async fn replacement_rejected(&self, token: &Token) -> Option<Duration> {
        let _ = token;
        None
    }
    /// A client sent an API call again (after a 429, a 503 or a failed
    /// connection); counted in [`ManagerStats::api_retries`](crate::ManagerStats::api_retries).
    fn api_retried(&self) {}
    /// An API answered with a rejection judged to be about the token (counted in
    /// [`ManagerStats::rejections`](crate::ManagerStats::rejections)).
    fn token_rejected(&self) {}
    /// A request is sent again with a fresh token after a rejection (counted in
    /// [`ManagerStats::replays`](crate::ManagerStats::replays)).
    fn replaying(&self) {}
    /// The DPoP key the tokens are bound to, if they are: API requests carry a
    /// proof of it (see [`crate::dpop`]).
    fn dpop(&self) -> Option<&Dpop> {
        None
    }
}

#[async_trait]
impl<S: CredentialSource, T: TokenStore> Authenticator for TokenManager<S, T> {
    async fn token(&self) -> Result<Arc<Token>> {
        TokenManager::token(self).await
    }
    async fn invalidate(&self, token: &Token) -> Invalidation {
        TokenManager::invalidate(self, token).await
    }
    async fn replacement_rejected(&self, token: &Token) -> Option<Duration> {
        Some(TokenManager::replacement_rejected(self, token))
    }
    fn api_retried(&self) {
        TokenManager::api_retried(self);
    }
    fn token_rejected(&self) {
        TokenManager::count_rejection(self);
    }
    fn replaying(&self) {
        TokenManager::count_replay(self);
    }
    fn dpop(&self) -> Option<&Dpop> {
        self.source().dpop()
    }
}

#[async_trait]
impl<A: Authenticator + ?Sized> Authenticator for Arc<A> {
    async fn token(&self) -> Result<Arc<Token>> {
        (**self).token().await
    }
    async fn invalidate(&self, token: &Token) -> Invalidation {
        (**self).invalidate(token).await
    }
    async fn replacement_rejected(&self, token: &Token) -> Option<Duration> {
        (**self).replacement_rejected(token).await
    }
    fn api_retried(&self) {
        (**self).api_retried();
    }
    fn token_rejected(&self) {
        (**self).token_rejected();
    }
    fn replaying(&self) {
        (**self).replaying();
    }
    fn dpop(&self) -> Option<&Dpop> {
        (**self).dpop()
    }
}

/// An HTTP client that authenticates every request.
///
/// Requests are started with [`AuthClient::get`] and friends and sent with
/// [`AuthRequest::send`], which always goes through authentication: there is no
/// way to send one of its requests without a token by accident. What a vendor's
/// API wants on every request, and how its rejections are judged, is the client's
/// [`ApiProfile`].
///
/// ```no_run
/// # use auth_core::{ApiProfile, AuthClient, TokenManager, oauth2::OAuth2Source, ClientSecret};
/// # async fn demo() -> auth_core::Result<()> {
/// # let source = OAuth2Source::builder("https://idp/token", "c", ClientSecret::new("s")).build()?;
/// let client = AuthClient::builder(TokenManager::new(source))
///     .profile(ApiProfile::new().header("x-partnerid", "ACME")?)
///     .build()?;
/// let response = client
///     .get("https://fhir.example/r4/Patient")
///     .query(&[("name", "Chalmers")])
///     .header("Accept", "application/fhir+json")
///     .send()
///     .await?;
/// # let _ = response; Ok(()) }
/// ```
#[derive(Clone)]
pub struct AuthClient {
    http: reqwest::Client,
    auth: Arc<dyn Authenticator>,
    profile: ApiProfile,
    allow_insecure_http: bool,
}

impl fmt::Debug for AuthClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthClient")
            .field("auth", &self.auth)
            .field("profile", &self.profile)
            .field("allow_insecure_http", &self.allow_insecure_http)
            .finish_non_exhaustive()
    }
}

/// Builds an [`AuthClient`].
#[derive(Debug)]
#[must_use = "a builder does nothing until built"]
pub struct AuthClientBuilder {
    auth: Arc<dyn Authenticator>,
    http: Option<reqwest::Client>,
    profile: ApiProfile,
    allow_insecure_http: bool,
}

/// Follows redirects within one origin only. reqwest drops `Authorization` on a
/// cross-host hop but not a vendor's secret headers (an API-gateway key), so a
/// cross-origin redirect is handed back to the caller instead of followed.
pub fn same_origin_redirects() -> reqwest::redirect::Policy {
    reqwest::redirect::Policy::custom(|attempt| {
        let first = attempt.previous().first().map(|u| u.origin());
        if attempt.previous().len() > 10 {
            attempt.error("too many redirects")
        } else if first.is_some_and(|origin| origin != attempt.url().origin()) {
            attempt.stop()
        } else {
            attempt.follow()
        }
    })
}

impl AuthClientBuilder {
    /// Sends requests with your own `reqwest::Client` (proxies, TLS settings,
    /// pools). Start from [`crate::tls::client_builder`] to keep the library's trust
    /// (webpki roots plus your CAs) rather than reqwest's default (the system's
    /// store), and give it [`same_origin_redirects`] (or no redirects) if the profile
    /// adds secret headers: reqwest's default policy would carry them to other hosts.
    pub fn http_client(mut self, http: reqwest::Client) -> Self {
        self.http = Some(http);
        self
    }

    /// What the vendor's API wants on every request, and how its rejections are
    /// judged (default: nothing added, every rejection trusted).
    pub fn profile(mut self, profile: ApiProfile) -> Self {
        self.profile = profile;
        self
    }

    /// Allows sending the token over plain `http://` to hosts other than loopback
    /// (refused by default: the token would travel in clear text). Only for closed
    /// test networks.
    pub fn allow_insecure_http(mut self, allow: bool) -> Self {
        self.allow_insecure_http = allow;
        self
    }

    /// Builds the client; without [`AuthClientBuilder::http_client`], one with a
    /// [`DEFAULT_TIMEOUT`], same-origin redirects only, trusting the webpki roots
    /// (see [`crate::tls`]).
    pub fn build(self) -> Result<AuthClient> {
        let http = match self.http {
            Some(http) => http,
            None => crate::tls::client_builder(&[], None)?
                .timeout(DEFAULT_TIMEOUT)
                .redirect(same_origin_redirects())
                .build()
                .map_err(|e| Error::configuration(format!("cannot build the HTTP client: {e}")))?,
        };
        Ok(AuthClient {
            http,
            auth: self.auth,
            profile: self.profile,
            allow_insecure_http: self.allow_insecure_http,
        })
    }
}

impl AuthClient {
    /// A client with the default HTTP client and an empty profile (see
    /// [`AuthClientBuilder::build`]).
    pub fn new(auth: impl Authenticator) -> Result<Self> {
        Self::builder(auth).build()
    }

    /// Starts configuring a client that gets its tokens from `auth` (a
    /// [`TokenManager`], or an `Arc<dyn Authenticator>` shared with other clients).
    pub fn builder(auth: impl Authenticator) -> AuthClientBuilder {
        AuthClientBuilder {
            auth: Arc::new(auth),
            http: None,
            profile: ApiProfile::default(),
            allow_insecure_http: false,
        }
    }

    /// The same client, allowing plain `http://` (see
    /// [`AuthClientBuilder::allow_insecure_http`]).
    pub fn with_insecure_http(mut self, allow: bool) -> Self {
        self.allow_insecure_http = allow;
        self
    }

    /// Whether plain `http://` to hosts other than loopback is allowed (see
    /// [`AuthClientBuilder::allow_insecure_http`]).
    pub fn allows_insecure_http(&self) -> bool {
        self.allow_insecure_http
    }

    /// The authenticator.
    pub fn authenticator(&self) -> &Arc<dyn Authenticator> {
        &self.auth
    }

    /// The API profile.
    pub fn profile(&self) -> &ApiProfile {
        &self.profile
    }

    /// The underlying HTTP client (requests sent on it directly carry no token).
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// Starts a request.
    pub fn request(&self, method: Method, url: impl reqwest::IntoUrl) -> AuthRequest {
        AuthRequest { client: self.clone(), builder: self.http.request(method, url) }
    }

    /// Starts a GET.
    pub fn get(&self, url: impl reqwest::IntoUrl) -> AuthRequest {
        self.request(Method::GET, url)
    }

    /// Starts a POST.
    pub fn post(&self, url: impl reqwest::IntoUrl) -> AuthRequest {
        self.request(Method::POST, url)
    }

    /// Starts a PUT.
    pub fn put(&self, url: impl reqwest::IntoUrl) -> AuthRequest {
        self.request(Method::PUT, url)
    }

    /// Starts a DELETE.
    pub fn delete(&self, url: impl reqwest::IntoUrl) -> AuthRequest {
        self.request(Method::DELETE, url)
    }

    /// Sends a request with a bearer token, replaying it once if the token is rejected.
    ///
    /// Any response is returned as it is, except: a token still rejected after the
    /// replay (or not replayable) is [`ErrorKind::Unauthorized`](crate::ErrorKind),
    /// `insufficient_scope` is [`ErrorKind::InsufficientScope`](crate::ErrorKind),
    /// and a rejection the profile's judge calls a configuration mistake is
    /// [`ErrorKind::Configuration`](crate::ErrorKind).
    pub async fn execute(&self, request: Request) -> Result<Response> {
        // The bearer is a password for the API: it goes out encrypted, or to this machine.
        crate::endpoint::check_scheme(request.url(), self.allow_insecure_http)?;
        let replay = request.try_clone();
        let mut transport = Reqwest(&self.http);
        match exchange(&*self.auth, &self.profile, &mut transport, request, replay).await {
            Outcome::Answer(response) => Ok(response),
            Outcome::Refused(error, _) | Outcome::Failed(error) | Outcome::Transport(error) => Err(error),
        }
    }
}

/// reqwest's client as the [`Transport`] of an exchange.
struct Reqwest<'a>(&'a reqwest::Client);

impl Transport for Reqwest<'_> {
    type Request = Request;
    type Response = Response;
    type Error = Error;

    fn attach(request: &mut Request, token: &Token, profile: &ApiProfile) {
        attach_to_reqwest(request, token, profile);
    }

    fn method(request: &Request) -> &Method {
        request.method()
    }

    fn url(request: &Request) -> Option<Url> {
        Some(request.url().clone())
    }

    fn headers_mut(request: &mut Request) -> &mut HeaderMap {
        request.headers_mut()
    }

    async fn split(&mut self, request: Request) -> Result<(Request, Option<Request>)> {
        let copy = request.try_clone();
        Ok((request, copy))
    }

    async fn send(&mut self, request: Request) -> Result<Response> {
        self.0.execute(request).await.map_err(|e| Error::transport(API_REQUEST, e))
    }

    fn status(response: &Response) -> StatusCode {
        response.status()
    }

    fn headers(response: &Response) -> &HeaderMap {
        response.headers()
    }

    fn answered_from(response: &Response) -> Option<&Url> {
        Some(response.url())
    }

    async fn read_for_judging(response: Response) -> Result<(Response, Vec<u8>)> {
        read_reqwest_for_judging(response).await.map_err(|e| Error::transport(API_REQUEST, e))
    }
}

/// The bearer and the profile's extras on a reqwest request (see
/// [`exchange::attach_headers`](crate::exchange)).
pub(crate) fn attach_to_reqwest(request: &mut Request, token: &Token, profile: &ApiProfile) {
    attach_headers(request.headers_mut(), token, profile);
    if profile.query_names().next().is_none() {
        return;
    }
    let missing: Vec<(&str, &str)> = missing_query(profile, request.url().query()).collect();
    if !missing.is_empty() {
        request.url_mut().query_pairs_mut().extend_pairs(missing);
    }
}

/// Reads the first [`REJECTION_BODY_CAP`] bytes of a rejection for judging, and
/// keeps the response whole: if the judge hands it back to the caller, its body is
/// what was read followed by the rest, still unread.
pub(crate) async fn read_reqwest_for_judging(
    mut response: Response,
) -> std::result::Result<(Response, Vec<u8>), reqwest::Error> {
    let mut parts = ::http::Response::new(()).into_parts().0;
    parts.status = response.status();
    parts.version = response.version();
    parts.headers = response.headers().clone();
    let mut read = Vec::new();
    let mut complete = true;
    while let Some(chunk) = response.chunk().await? {
        read.extend_from_slice(&chunk);
        if read.len() >= REJECTION_BODY_CAP {
            complete = false;
            break;
        }
    }
    let body = if complete {
        reqwest::Body::from(read.clone())
    } else {
        let head = futures_util::stream::once(std::future::ready(Ok::<_, reqwest::Error>(
            bytes::Bytes::from(read.clone()),
        )));
        reqwest::Body::wrap_stream(futures_util::StreamExt::chain(head, response.bytes_stream()))
    };
    read.truncate(REJECTION_BODY_CAP);
    Ok((Response::from(::http::Response::from_parts(parts, body)), read))
}

/// A request being built; [`AuthRequest::send`] authenticates and sends it.
#[derive(Debug)]
#[must_use = "a request does nothing until sent"]
pub struct AuthRequest {
    client: AuthClient,
    builder: RequestBuilder,
}

impl AuthRequest {
    /// Adds a header.
    pub fn header<K, V>(self, name: K, value: V) -> Self
    where
        reqwest::header::HeaderName: TryFrom<K>,
        <reqwest::header::HeaderName as TryFrom<K>>::Error: Into<::http::Error>,
        reqwest::header::HeaderValue: TryFrom<V>,
        <reqwest::header::HeaderValue as TryFrom<V>>::Error: Into<::http::Error>,
    {
        self.with(|b| b.header(name, value))
    }

    /// Adds query parameters.
    pub fn query<Q: serde::Serialize + ?Sized>(self, query: &Q) -> Self {
        self.with(|b| b.query(query))
    }

    /// Sets a JSON body.
    pub fn json<B: serde::Serialize + ?Sized>(self, body: &B) -> Self {
        self.with(|b| b.json(body))
    }

    /// Sets the body.
    pub fn body(self, body: impl Into<reqwest::Body>) -> Self {
        self.with(|b| b.body(body))
    }

    /// Sets a timeout for this request.
    pub fn timeout(self, timeout: Duration) -> Self {
        self.with(|b| b.timeout(timeout))
    }

    /// Anything else reqwest's builder can do.
    pub fn with(mut self, f: impl FnOnce(RequestBuilder) -> RequestBuilder) -> Self {
        self.builder = f(self.builder);
        self
    }

    /// Authenticates and sends the request (see [`AuthClient::execute`]).
    pub async fn send(self) -> Result<Response> {
        let request = self
            .builder
            .build()
            .map_err(|e| Error::configuration(format!("cannot build the request: {}", e.without_url())))?;
        self.client.execute(request).await
    }
}
