//! Authenticated requests: attach `Authorization: Bearer …` (marked sensitive) and
//! the vendor's per-request extras, and when the server says the token is bad,
//! drop that exact token and replay the request once with a fresh one.
//!
//! "The token is bad" means a 401, or any status whose `WWW-Authenticate` carries
//! `error="invalid_token"` (SanteDB answers an invalid bearer with 403). A 403 with
//! `insufficient_scope` is final: a new token with the same scopes would not help.
//! The replay happens at most once, and only if the body can be sent again.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use reqwest::header::AUTHORIZATION;
use reqwest::{Method, Request, RequestBuilder, Response, StatusCode};

use crate::challenge::{Challenge, challenge_for, challenges};
use crate::dpop::{self, DPOP, Dpop};
use crate::error::{Error, Result};
use crate::manager::{Invalidation, TokenManager};
use crate::profile::{ApiProfile, Rejection, RejectionVerdict};
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
        let token = self.auth.token().await?;
        let response = self.send_proven(request, &token).await?;
        let challenge = match verdict(&response, &token) {
            Verdict::Accepted => return Ok(response),
            Verdict::InsufficientScope(challenge) => return Err(Error::insufficient_scope(challenge)),
            Verdict::Rejected(challenge) => challenge,
        };
        let status = response.status().as_u16();
        if self.profile.wants_rejection_body() {
            let (parts, read, body) = read_for_judging(response).await?;
            match self.profile.judge_rejection(&Rejection::new(status, challenge.as_ref(), &read)) {
                RejectionVerdict::TokenRejected => {}
                RejectionVerdict::NotTokenRelated => {
                    return Ok(Response::from(::http::Response::from_parts(parts, body)));
                }
                RejectionVerdict::Configuration(message) => return Err(Error::configuration(message)),
            }
        } else {
            match self.profile.judge_rejection(&Rejection::new(status, challenge.as_ref(), &[])) {
                RejectionVerdict::TokenRejected => {}
                RejectionVerdict::NotTokenRelated => return Ok(response),
                RejectionVerdict::Configuration(message) => return Err(Error::configuration(message)),
            }
            drop(response);
        }
        if let Invalidation::Held { retry_after } = self.auth.invalidate(&token).await {
            // A fresh token was already tried for this rejection, in vain: no replay.
            return Err(Error::unauthorized_held(status, challenge, retry_after));
        }
        let Some(replay) = replay else {
            tracing::debug!(status, "token rejected; request body cannot be replayed");
            return Err(Error::unauthorized(status, challenge));
        };
        tracing::debug!(status, "token rejected; replaying once with a fresh token");
        let fresh = self.auth.token().await?;
        let response = self.send_proven(replay, &fresh).await?;
        match verdict(&response, &fresh) {
            Verdict::Accepted => Ok(response),
            Verdict::InsufficientScope(challenge) => Err(Error::insufficient_scope(challenge)),
            Verdict::Rejected(challenge) => {
                let status = response.status().as_u16();
                match self.auth.replacement_rejected(&fresh).await {
                    Some(hold) => Err(Error::unauthorized_held(status, challenge, hold)),
                    None => Err(Error::unauthorized(status, challenge)),
                }
            }
        }
    }

    /// Sends `request` with `token`. A DPoP-bound token goes with a proof, and a
    /// server's `use_dpop_nonce` challenge is answered by sending once more, with
    /// its nonce in a new proof (RFC 9449 §9): that is not a rejected token.
    async fn send_proven(&self, request: Request, token: &Token) -> Result<Response> {
        let dpop = match (token.is_dpop(), self.auth.dpop()) {
            (false, _) => return self.send_with(request, token, None).await,
            (true, Some(dpop)) => dpop,
            (true, None) => {
                return Err(Error::configuration(
                    "the token is DPoP-bound, but the authenticator has no DPoP key to prove it with",
                ));
            }
        };
        let spare = request.try_clone();
        let response = self.send_with(request, token, Some(dpop)).await?;
        dpop.remember_nonce(response.url(), response.headers());
        if !is_nonce_challenge(&response) || dpop.nonce(response.url()).is_none() {
            return Ok(response);
        }
        let Some(spare) = spare else {
            tracing::debug!("the server asks for a DPoP nonce; the request body cannot be sent again");
            return Ok(response);
        };
        tracing::debug!("the server asks for a DPoP nonce; sending once more with it");
        drop(response);
        let response = self.send_with(spare, token, Some(dpop)).await?;
        dpop.remember_nonce(response.url(), response.headers());
        Ok(response)
    }

    async fn send_with(&self, mut request: Request, token: &Token, dpop: Option<&Dpop>) -> Result<Response> {
        request.headers_mut().insert(AUTHORIZATION, token.authorization_header());
        for (name, value) in self.profile.headers() {
            if !request.headers().contains_key(name) {
                request.headers_mut().insert(name.clone(), value.clone());
            }
        }
        // A server's paging links often carry the vendor's parameters already
        // (MSK's next links hold `researchstudy`): add only what is missing.
        let present: Vec<String> = request.url().query_pairs().map(|(k, _)| k.into_owned()).collect();
        let missing: Vec<(&str, &str)> =
            self.profile.expose_query().filter(|(k, _)| !present.iter().any(|p| p == k)).collect();
        if !missing.is_empty() {
            let mut pairs = request.url_mut().query_pairs_mut();
            for (k, v) in missing {
                pairs.append_pair(k, v);
            }
        }
        // Made last, for the URL as it goes out; new for every attempt.
        if let Some(dpop) = dpop {
            let proof = dpop.proof(request.method(), request.url(), Some(token.access_token()))?;
            request.headers_mut().insert(DPOP, proof);
        }
        self.http.execute(request).await.map_err(|e| Error::transport(API_REQUEST, e))
    }
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

/// Cap on what of a rejection's body is read for judging: an error document's
/// first 64 KiB say what it is about.
const REJECTION_BODY_CAP: usize = 64 * 1024;

/// Reads the first [`REJECTION_BODY_CAP`] bytes of a rejection for judging, and
/// keeps the response whole: if the judge hands it back to the caller, its body is
/// what was read followed by the rest, still unread.
async fn read_for_judging(
    mut response: Response,
) -> Result<(::http::response::Parts, Vec<u8>, reqwest::Body)> {
    let mut parts = ::http::Response::new(()).into_parts().0;
    parts.status = response.status();
    parts.version = response.version();
    parts.headers = response.headers().clone();
    let mut read = Vec::new();
    let mut complete = true;
    while let Some(chunk) = response.chunk().await.map_err(|e| Error::transport(API_REQUEST, e))? {
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
    Ok((parts, read, body))
}

enum Verdict {
    Accepted,
    Rejected(Option<Challenge>),
    InsufficientScope(Challenge),
}

/// Whether a response is RFC 9449 §9's nonce challenge: 401 and
/// `WWW-Authenticate: DPoP error="use_dpop_nonce"`.
fn is_nonce_challenge(response: &Response) -> bool {
    response.status() == StatusCode::UNAUTHORIZED
        && challenges(response.headers())
            .iter()
            .any(|c| c.is_scheme(dpop::SCHEME) && c.error() == Some(dpop::USE_DPOP_NONCE))
}

fn verdict(response: &Response, token: &Token) -> Verdict {
    let status = response.status();
    if status.is_success() {
        return Verdict::Accepted;
    }
    // The challenge of the scheme the token went with speaks about it.
    let scheme = if token.is_dpop() { dpop::SCHEME } else { "Bearer" };
    let challenge = challenge_for(response.headers(), scheme);
    match challenge {
        Some(c) if c.is_insufficient_scope() => Verdict::InsufficientScope(c),
        Some(c) if c.is_invalid_token() => Verdict::Rejected(Some(c)),
        c if status == StatusCode::UNAUTHORIZED => Verdict::Rejected(c),
        _ => Verdict::Accepted,
    }
}
