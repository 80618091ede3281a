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

use crate::challenge::{Challenge, bearer_challenge};
use crate::error::{Error, Result};
use crate::manager::TokenManager;
use crate::source::{CredentialSource, RequestExtras};
use crate::store::TokenStore;
use crate::token::Token;

/// What an authenticated client needs from a token manager. Object safe, so one
/// client type serves every source and store.
#[async_trait]
pub trait Authenticator: Send + Sync + fmt::Debug + 'static {
    /// A valid token.
    async fn token(&self) -> Result<Arc<Token>>;
    /// Drops `token` because a server rejected it.
    async fn invalidate(&self, token: &Token) -> bool;
    /// Headers and query parameters to add to every request.
    fn request_extras(&self) -> Option<&RequestExtras>;
}

#[async_trait]
impl<S: CredentialSource, T: TokenStore> Authenticator for TokenManager<S, T> {
    async fn token(&self) -> Result<Arc<Token>> {
        TokenManager::token(self).await
    }
    async fn invalidate(&self, token: &Token) -> bool {
        TokenManager::invalidate(self, token).await
    }
    fn request_extras(&self) -> Option<&RequestExtras> {
        self.source().request_extras()
    }
}

/// An HTTP client that authenticates every request.
///
/// ```no_run
/// # use auth_core::{AuthClient, TokenManager, oauth2::ClientCredentials, ClientSecret};
/// # async fn demo() -> auth_core::Result<()> {
/// # let source = ClientCredentials::builder("https://idp/token", "c", ClientSecret::new("s")).build()?;
/// let client = AuthClient::new(TokenManager::new(source))?;
/// let response = client.send(client.get("https://fhir.example/r4/Patient/123")).await?;
/// # let _ = response; Ok(()) }
/// ```
#[derive(Clone)]
pub struct AuthClient {
    http: reqwest::Client,
    auth: Arc<dyn Authenticator>,
}

impl fmt::Debug for AuthClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthClient").field("auth", &self.auth).finish_non_exhaustive()
    }
}

impl AuthClient {
    /// A client with a default HTTP client (30 s timeout).
    pub fn new(auth: impl Authenticator) -> Result<Self> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .map_err(|e| Error::configuration(format!("cannot build the HTTP client: {e}")))?;
        Ok(Self::with_http_client(http, auth))
    }

    /// A client on top of your own `reqwest::Client` (for proxies, TLS settings, pools).
    pub fn with_http_client(http: reqwest::Client, auth: impl Authenticator) -> Self {
        Self { http, auth: Arc::new(auth) }
    }

    /// A client sharing an authenticator with others.
    pub fn with_shared(http: reqwest::Client, auth: Arc<dyn Authenticator>) -> Self {
        Self { http, auth }
    }

    /// The authenticator.
    pub fn authenticator(&self) -> &Arc<dyn Authenticator> {
        &self.auth
    }

    /// The underlying HTTP client.
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// Starts a request; finish it with [`AuthClient::send`].
    pub fn request(&self, method: Method, url: impl reqwest::IntoUrl) -> RequestBuilder {
        self.http.request(method, url)
    }

    /// Starts a GET.
    pub fn get(&self, url: impl reqwest::IntoUrl) -> RequestBuilder {
        self.http.get(url)
    }

    /// Starts a POST.
    pub fn post(&self, url: impl reqwest::IntoUrl) -> RequestBuilder {
        self.http.post(url)
    }

    /// Builds and sends a request made with this client's builders.
    pub async fn send(&self, builder: RequestBuilder) -> Result<Response> {
        let request = builder
            .build()
            .map_err(|e| Error::configuration(format!("cannot build the request: {}", e.without_url())))?;
        self.execute(request).await
    }

    /// Sends a request with a bearer token, replaying it once if the token is rejected.
    ///
    /// Any response is returned as it is, except: a token still rejected after the
    /// replay (or not replayable) is [`ErrorKind::Unauthorized`](crate::ErrorKind),
    /// and `insufficient_scope` is [`ErrorKind::InsufficientScope`](crate::ErrorKind).
    pub async fn execute(&self, request: Request) -> Result<Response> {
        let replay = request.try_clone();
        let token = self.auth.token().await?;
        let response = self.send_with(request, &token).await?;
        let challenge = match verdict(&response) {
            Verdict::Accepted => return Ok(response),
            Verdict::InsufficientScope(challenge) => return Err(Error::insufficient_scope(challenge)),
            Verdict::Rejected(challenge) => challenge,
        };
        self.auth.invalidate(&token).await;
        let status = response.status().as_u16();
        drop(response);
        let Some(replay) = replay else {
            tracing::debug!(status, "token rejected; request body cannot be replayed");
            return Err(Error::unauthorized(status, challenge));
        };
        tracing::debug!(status, "token rejected; replaying once with a fresh token");
        let fresh = self.auth.token().await?;
        let response = self.send_with(replay, &fresh).await?;
        match verdict(&response) {
            Verdict::Accepted => Ok(response),
            Verdict::InsufficientScope(challenge) => Err(Error::insufficient_scope(challenge)),
            Verdict::Rejected(challenge) => Err(Error::unauthorized(response.status().as_u16(), challenge)),
        }
    }

    async fn send_with(&self, mut request: Request, token: &Token) -> Result<Response> {
        request.headers_mut().insert(AUTHORIZATION, token.bearer_header());
        if let Some(extras) = self.auth.request_extras() {
            for (name, value) in extras.headers() {
                if !request.headers().contains_key(name) {
                    request.headers_mut().insert(name.clone(), value.clone());
                }
            }
            if !extras.query_params().is_empty() {
                let mut pairs = request.url_mut().query_pairs_mut();
                for (k, v) in extras.query_params() {
                    pairs.append_pair(k, v);
                }
            }
        }
        self.http.execute(request).await.map_err(|e| Error::transport("API request", e))
    }
}

enum Verdict {
    Accepted,
    Rejected(Option<Challenge>),
    InsufficientScope(Challenge),
}

fn verdict(response: &Response) -> Verdict {
    let status = response.status();
    if status.is_success() {
        return Verdict::Accepted;
    }
    let challenge = bearer_challenge(response.headers());
    match challenge {
        Some(c) if c.is_insufficient_scope() => Verdict::InsufficientScope(c),
        Some(c) if c.is_invalid_token() => Verdict::Rejected(Some(c)),
        c if status == StatusCode::UNAUTHORIZED => Verdict::Rejected(c),
        _ => Verdict::Accepted,
    }
}
