//! The contenders: five ways of putting a client-credentials token on a request.
//!
//! Every contender sends its API requests with the same reqwest 0.13 client
//! ([`Api`]), so only the token path differs. The oauth2-rs based ones get their
//! own reqwest 0.12 client for token requests (what oauth2 5 speaks), redirects off.

use std::fmt;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow};
use async_trait::async_trait;
use auth_core::AccessToken;
use auth_core::oauth2::OAuth2Source;
use auth_core::{AuthClient, Authenticator, ClientSecret, ErrorKind, Invalidation, Token, TokenManager};
use middle::Authorizer;
use oauth2::basic::{
    BasicErrorResponse, BasicRevocationErrorResponse, BasicTokenIntrospectionResponse, BasicTokenResponse,
};
use oauth2::{EndpointNotSet, EndpointSet, StandardRevocableToken, TokenResponse};
use reqwest::StatusCode;
use reqwest::header::{AUTHORIZATION, HeaderValue};
use serde::Serialize;

use crate::server::{BenchServer, SECRET};

/// The API client every contender sends with, and the URL it calls.
#[derive(Debug, Clone)]
pub struct Api {
    http: reqwest::Client,
    url: String,
    h2: bool,
}

impl Api {
    /// Configured as `AuthClient::new` configures its own (30 s timeout, same-origin
    /// redirects); with `h2`, HTTP/2 with prior knowledge (one connection, many streams).
    pub fn new(server: &BenchServer, h2: bool) -> anyhow::Result<Self> {
        // reqwest is built without a TLS provider of its own: the library's.
        auth_core::tls::install_default_provider();
        let mut builder = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .redirect(auth_core::client::same_origin_redirects());
        if h2 {
            builder = builder.http2_prior_knowledge();
        }
        Ok(Self { http: builder.build().context("API client")?, url: server.api_url(), h2 })
    }

    /// The underlying reqwest client.
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }
}

/// How one API call ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Outcome {
    /// 2xx.
    Ok,
    /// The server rejected the token (after ours' replay, for ours).
    Rejected,
    /// No token could be had, a transport error, or another status.
    Failed,
}

impl Outcome {
    fn of(status: StatusCode) -> Self {
        if status.is_success() {
            Outcome::Ok
        } else if status == StatusCode::UNAUTHORIZED {
            Outcome::Rejected
        } else {
            Outcome::Failed
        }
    }
}

/// Which contender.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Kind {
    /// A static bearer: no token path at all, the physical limit.
    Raw,
    /// oauth2-rs behind `tokio::sync::Mutex<Option<Token>>`.
    OAuthMutex,
    /// oauth2-rs behind a check-then-fetch cache (no single flight).
    OAuthRacy,
    /// `middle` 0.5: eager fetch, background refresh task.
    Middle,
    /// `TokenManager` + `AuthClient`, default configuration.
    Ours,
    /// Ours' `TokenManager::token()` sent like the others (no `AuthClient`): P1's
    /// breakdown of where ours' overhead is, not a contender.
    OursTokenOnly,
    /// `AuthClient` on the same reqwest client with a static bearer (an
    /// `Authenticator` holding one token, no manager): what `AuthClient`'s request
    /// path costs by itself. P1's breakdown, not a contender.
    AuthClientStatic,
}

impl Kind {
    /// The five contenders of the issue, in the order tables list them.
    pub const ALL: [Kind; 5] = [Kind::Raw, Kind::Ours, Kind::OAuthMutex, Kind::OAuthRacy, Kind::Middle];

    /// Name in tables and charts.
    pub fn label(self) -> &'static str {
        match self {
            Kind::Raw => "raw (static bearer)",
            Kind::OAuthMutex => "oauth2-rs + Mutex cache",
            Kind::OAuthRacy => "oauth2-rs racy cache",
            Kind::Middle => "middle 0.5",
            Kind::Ours => "ours (defaults)",
            Kind::OursTokenOnly => "ours, token() + plain send (breakdown)",
            Kind::AuthClientStatic => "AuthClient, static bearer (breakdown)",
        }
    }

    /// Short name, for client ids and JSON.
    pub fn slug(self) -> &'static str {
        match self {
            Kind::Raw => "raw",
            Kind::OAuthMutex => "oauth2-mutex",
            Kind::OAuthRacy => "oauth2-racy",
            Kind::Middle => "middle",
            Kind::Ours => "ours",
            Kind::OursTokenOnly => "ours-token-only",
            Kind::AuthClientStatic => "authclient-static",
        }
    }
}

/// One way of authenticating API calls.
#[async_trait]
pub trait Contender: Send + Sync + fmt::Debug + 'static {
    /// Which contender this is.
    fn kind(&self) -> Kind;
    /// The client id it authenticates as (the server counts per client id).
    fn client_id(&self) -> &str;
    /// The API client and URL.
    fn api(&self) -> &Api;
    /// The `Authorization` value for the next request.
    async fn header(&self) -> anyhow::Result<HeaderValue>;
    /// One authenticated API call, body read to the end.
    async fn call(&self) -> Outcome {
        plain_call(self.api(), self.header().await).await
    }
}

/// Sends the API request with `header`, as every contender but ours does.
async fn plain_call(api: &Api, header: anyhow::Result<HeaderValue>) -> Outcome {
    let Ok(value) = header else { return Outcome::Failed };
    match api.http.get(&api.url).header(AUTHORIZATION, value).send().await {
        Ok(response) => {
            let outcome = Outcome::of(response.status());
            match response.bytes().await {
                Ok(_) => outcome,
                Err(_) => Outcome::Failed,
            }
        }
        Err(_) => Outcome::Failed,
    }
}

/// Builds a contender authenticating as `client_id` (middle fetches its first token here).
pub async fn build(
    kind: Kind,
    server: &BenchServer,
    api: &Api,
    client_id: &str,
) -> anyhow::Result<Arc<dyn Contender>> {
    let id = client_id.to_owned();
    let api = api.clone();
    Ok(match kind {
        Kind::Raw => {
            let token = server.mint(client_id, Duration::from_secs(100 * 24 * 3600));
            let header = bearer(&token)?;
            Arc::new(Raw { id, api, header })
        }
        Kind::OAuthMutex => Arc::new(OAuthMutex {
            oauth: OAuth::new(server, client_id, api.h2)?,
            id,
            api,
            cache: tokio::sync::Mutex::new(None),
        }),
        Kind::OAuthRacy => Arc::new(OAuthRacy {
            oauth: OAuth::new(server, client_id, api.h2)?,
            id,
            api,
            cache: RwLock::new(None),
        }),
        Kind::Middle => {
            let url = server.token_url().parse().context("token URL")?;
            let authorizer = middle::BasicClientCredentialAuthorizerBuilder::new(client_id, SECRET, url)
                .set_http_client(token_client(api.h2)?)
                .build()
                .await
                .map_err(|e| anyhow!("middle: {e}"))?;
            Arc::new(Middle { id, api, authorizer })
        }
        Kind::AuthClientStatic => {
            let token = server.mint(client_id, Duration::from_secs(100 * 24 * 3600));
            let now = std::time::SystemTime::now();
            let expires = now + Duration::from_secs(100 * 24 * 3600);
            let token = Token::new(AccessToken::new(token), now, expires).map_err(|e| anyhow!("{e}"))?;
            let client = AuthClient::builder(StaticToken(Arc::new(token)))
                .http_client(api.http.clone())
                .build()
                .map_err(|e| anyhow!("AuthClient: {e}"))?;
            Arc::new(ThroughAuthClient { id, api, client })
        }
        Kind::Ours | Kind::OursTokenOnly => {
            let source = OAuth2Source::builder(server.token_url(), client_id, ClientSecret::new(SECRET));
            let manager = TokenManager::new(source.build().map_err(|e| anyhow!("ours: {e}"))?);
            let client = AuthClient::builder(manager.clone())
                .http_client(api.http.clone())
                .build()
                .map_err(|e| anyhow!("ours: {e}"))?;
            Arc::new(Ours { plain: kind == Kind::OursTokenOnly, id, api, manager, client })
        }
    })
}

fn bearer(token: &str) -> anyhow::Result<HeaderValue> {
    let mut value =
        HeaderValue::from_str(&format!("Bearer {token}")).context("token is not a header value")?;
    value.set_sensitive(true);
    Ok(value)
}

/// A reqwest 0.12 client for oauth2-rs and middle: redirects off, as both advise.
fn token_client(h2: bool) -> anyhow::Result<reqwest012::Client> {
    let mut builder = reqwest012::Client::builder().redirect(reqwest012::redirect::Policy::none());
    if h2 {
        // 10,000 racy token requests over HTTP/1.1 would need 10,000 sockets.
        builder = builder.http2_prior_knowledge();
    }
    builder.build().context("reqwest 0.12 client")
}

#[derive(Debug)]
struct Raw {
    id: String,
    api: Api,
    header: HeaderValue,
}

#[async_trait]
impl Contender for Raw {
    fn kind(&self) -> Kind {
        Kind::Raw
    }
    fn client_id(&self) -> &str {
        &self.id
    }
    fn api(&self) -> &Api {
        &self.api
    }
    async fn header(&self) -> anyhow::Result<HeaderValue> {
        Ok(self.header.clone())
    }
}

type OAuthClient = oauth2::Client<
    BasicErrorResponse,
    BasicTokenResponse,
    BasicTokenIntrospectionResponse,
    StandardRevocableToken,
    BasicRevocationErrorResponse,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointSet,
>;

/// oauth2-rs as its README shows it, plus the expiry bookkeeping a user adds.
#[derive(Debug)]
struct OAuth {
    client: OAuthClient,
    http: reqwest012::Client,
}

#[derive(Debug, Clone)]
struct Cached {
    header: HeaderValue,
    expires_at: Option<Instant>,
}

impl Cached {
    fn valid(&self) -> bool {
        self.expires_at.is_none_or(|at| Instant::now() < at)
    }
}

impl OAuth {
    fn new(server: &BenchServer, client_id: &str, h2: bool) -> anyhow::Result<Self> {
        let client = oauth2::basic::BasicClient::new(oauth2::ClientId::new(client_id.to_owned()))
            .set_client_secret(oauth2::ClientSecret::new(SECRET.to_owned()))
            .set_token_uri(oauth2::TokenUrl::new(server.token_url()).context("token URL")?);
        Ok(Self { client, http: token_client(h2)? })
    }

    async fn fetch(&self) -> anyhow::Result<Cached> {
        let response = self
            .client
            .exchange_client_credentials()
            .request_async(&self.http)
            .await
            .map_err(|e| anyhow!("oauth2: {e}"))?;
        let header = bearer(response.access_token().secret())?;
        Ok(Cached { header, expires_at: response.expires_in().map(|d| Instant::now() + d) })
    }
}

#[derive(Debug)]
struct OAuthMutex {
    id: String,
    api: Api,
    oauth: OAuth,
    cache: tokio::sync::Mutex<Option<Cached>>,
}

#[async_trait]
impl Contender for OAuthMutex {
    fn kind(&self) -> Kind {
        Kind::OAuthMutex
    }
    fn client_id(&self) -> &str {
        &self.id
    }
    fn api(&self) -> &Api {
        &self.api
    }
    async fn header(&self) -> anyhow::Result<HeaderValue> {
        let mut cache = self.cache.lock().await;
        if let Some(cached) = cache.as_ref().filter(|c| c.valid()) {
            return Ok(cached.header.clone());
        }
        let fresh = self.oauth.fetch().await?;
        let header = fresh.header.clone();
        *cache = Some(fresh);
        Ok(header)
    }
}

#[derive(Debug)]
struct OAuthRacy {
    id: String,
    api: Api,
    oauth: OAuth,
    cache: RwLock<Option<Cached>>,
}

#[async_trait]
impl Contender for OAuthRacy {
    fn kind(&self) -> Kind {
        Kind::OAuthRacy
    }
    fn client_id(&self) -> &str {
        &self.id
    }
    fn api(&self) -> &Api {
        &self.api
    }
    async fn header(&self) -> anyhow::Result<HeaderValue> {
        let cached = self.cache.read().unwrap_or_else(PoisonError::into_inner).clone();
        if let Some(cached) = cached.filter(Cached::valid) {
            return Ok(cached.header);
        }
        let fresh = self.oauth.fetch().await?;
        let header = fresh.header.clone();
        *self.cache.write().unwrap_or_else(PoisonError::into_inner) = Some(fresh);
        Ok(header)
    }
}

struct Middle {
    id: String,
    api: Api,
    authorizer: middle::BasicClientCredentialAuthorizer,
}

impl fmt::Debug for Middle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Middle").field("id", &self.id).finish_non_exhaustive()
    }
}

#[async_trait]
impl Contender for Middle {
    fn kind(&self) -> Kind {
        Kind::Middle
    }
    fn client_id(&self) -> &str {
        &self.id
    }
    fn api(&self) -> &Api {
        &self.api
    }
    async fn header(&self) -> anyhow::Result<HeaderValue> {
        let header = self.authorizer.authorization_header().map_err(|e| anyhow!("middle: {e}"))?;
        Ok((*header).clone())
    }
}

#[derive(Debug)]
struct Ours {
    plain: bool,
    id: String,
    api: Api,
    manager: TokenManager<OAuth2Source>,
    client: AuthClient,
}

#[async_trait]
impl Contender for Ours {
    fn kind(&self) -> Kind {
        if self.plain { Kind::OursTokenOnly } else { Kind::Ours }
    }
    fn client_id(&self) -> &str {
        &self.id
    }
    fn api(&self) -> &Api {
        &self.api
    }
    async fn header(&self) -> anyhow::Result<HeaderValue> {
        let token = self.manager.token().await.map_err(|e| anyhow!("ours: {e}"))?;
        Ok(token.bearer_header())
    }
    /// Through `AuthClient`, so a rejected token is replayed once as in production
    /// (and a replay's cost lands in the figures).
    async fn call(&self) -> Outcome {
        if self.plain {
            return plain_call(&self.api, self.header().await).await;
        }
        auth_client_call(&self.client, &self.api.url).await
    }
}

/// One token, always: `AuthClient`'s request path without a token manager.
#[derive(Debug)]
struct StaticToken(Arc<Token>);

#[async_trait]
impl Authenticator for StaticToken {
    async fn token(&self) -> auth_core::Result<Arc<Token>> {
        Ok(self.0.clone())
    }
    async fn invalidate(&self, _token: &Token) -> Invalidation {
        Invalidation::NotCurrent
    }
}

#[derive(Debug)]
struct ThroughAuthClient {
    id: String,
    api: Api,
    client: AuthClient,
}

#[async_trait]
impl Contender for ThroughAuthClient {
    fn kind(&self) -> Kind {
        Kind::AuthClientStatic
    }
    fn client_id(&self) -> &str {
        &self.id
    }
    fn api(&self) -> &Api {
        &self.api
    }
    async fn header(&self) -> anyhow::Result<HeaderValue> {
        let token = self.client.authenticator().token().await.map_err(|e| anyhow!("{e}"))?;
        Ok(token.bearer_header())
    }
    async fn call(&self) -> Outcome {
        auth_client_call(&self.client, &self.api.url).await
    }
}

/// One call through `AuthClient`, body read to the end.
async fn auth_client_call(client: &AuthClient, url: &str) -> Outcome {
    match client.get(url).send().await {
        Ok(response) => {
            let outcome = Outcome::of(response.status());
            match response.bytes().await {
                Ok(_) => outcome,
                Err(_) => Outcome::Failed,
            }
        }
        Err(e) if e.kind() == ErrorKind::Unauthorized => Outcome::Rejected,
        Err(_) => Outcome::Failed,
    }
}

/// Outcome counts of many calls.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Tally {
    /// Accepted calls.
    pub ok: u64,
    /// Calls whose token was rejected.
    pub rejected: u64,
    /// Other failures.
    pub failed: u64,
}

impl Tally {
    /// Counts one outcome.
    pub fn add(&mut self, outcome: Outcome) {
        match outcome {
            Outcome::Ok => self.ok += 1,
            Outcome::Rejected => self.rejected += 1,
            Outcome::Failed => self.failed += 1,
        }
    }

    /// Adds another tally.
    pub fn merge(&mut self, other: Tally) {
        self.ok += other.ok;
        self.rejected += other.rejected;
        self.failed += other.failed;
    }

    /// Calls that did not succeed.
    pub fn failures(&self) -> u64 {
        self.rejected + self.failed
    }

    /// All calls.
    pub fn total(&self) -> u64 {
        self.ok + self.failures()
    }
}
