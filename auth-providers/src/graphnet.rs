//! Graphnet CareCentric (shared care record) behind Azure API Management.
//!
//! What Graphnet documents, and what this source does about it:
//!
//! | Graphnet | here |
//! |---|---|
//! | `POST {token_url}` (deployment specific, e.g. `…/vlive/hpca/oauth/token`), form `grant_type=client_credentials&client_id=…&client_secret=…` | exactly that body, in that order; no Basic header |
//! | response `{"token_type":"Bearer","access_token":"eyJ…","refresh_token":null}`, no `expires_in` | `null` tolerated; expiry from the JWT `exp` claim |
//! | "the JWT token will contain claims listing specific APIs that have been authorised" | [`GraphnetSource::claims`] → [`GraphnetClaims::require_api`], so a caller can check before calling |
//! | Azure APIM wants `Ocp-Apim-Subscription-Key` on API calls | [`GraphnetSource::api_profile`] adds it to every request of an [`auth_core::AuthClient`], as a sensitive header |
//!
//! Assumptions, because Graphnet does not publish them, each configurable:
//!
//! * The claim listing authorised APIs is named [`DEFAULT_API_CLAIM`]
//!   (`authorised_apis`); change it with [`GraphnetSourceBuilder::api_claim`]. Its value
//!   may be an array of strings or one string of names separated by spaces or commas.
//! * The token endpoint does not need the subscription key (its host differs from
//!   the APIM host); send it anyway with [`GraphnetSourceBuilder::subscription_key_on_token_request`].
//! * A token that is not a JWT with `exp` has no known lifetime: fetching fails with
//!   [`ErrorKind::InvalidResponse`](auth_core::ErrorKind) unless a lifetime is
//!   configured with [`GraphnetSourceBuilder::default_lifetime`].
//!
//! An APIM `401` about the subscription key (missing or invalid) is not a token
//! problem: it fails with [`ErrorKind::Configuration`](auth_core::ErrorKind) and
//! the cached token is kept, instead of being dropped and a new one fetched.
//!
//! ```no_run
//! use auth_core::{AuthClient, ClientSecret, SecretValue, TokenManager};
//! use auth_providers::graphnet::GraphnetSource;
//!
//! # async fn demo() -> auth_core::Result<()> {
//! let source = GraphnetSource::builder(
//!     "https://coret1.syhapp.com/vlive/hpca/oauth/token",
//!     "my-client",
//!     ClientSecret::new(std::env::var("GRAPHNET_SECRET").unwrap_or_default()),
//!     SecretValue::new(std::env::var("GRAPHNET_SUBSCRIPTION_KEY").unwrap_or_default()),
//! )
//! .build()?;
//! let profile = source.api_profile();
//! let tokens = TokenManager::new(source);
//! let token = tokens.token().await?;
//! tokens.source().claims(&token)?.require_api("Patient")?;
//! let client = AuthClient::builder(tokens).profile(profile).build()?;
//! let patient = client.get("https://api.example/fhir/Patient/123").send().await?;
//! # let _ = patient; Ok(()) }
//! ```

use std::collections::BTreeSet;
use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use auth_core::endpoint::{EndpointConfig, EndpointOptions, TokenEndpoint};
use auth_core::error::ResponseProblem;
use auth_core::request::{ClientAuth, ClientAuthMethod, TokenRequest};
use auth_core::token::{ExpirySource, jwt_claims};
use auth_core::{
    AccessToken, ApiProfile, CacheKey, ClientSecret, CredentialSource, Error, FetchContext, Rejection,
    RejectionJudge, RejectionVerdict, Result, SecretValue, Token,
};
use reqwest::header::HeaderName;
use serde_json::Value;
use url::Url;

/// The provider kind in cache keys.
pub const PROVIDER: &str = "graphnet";

/// The Azure API Management header carrying the subscription key.
pub const SUBSCRIPTION_KEY_HEADER: &str = "Ocp-Apim-Subscription-Key";

/// The JWT claim assumed to list the authorised APIs. Graphnet documents that such
/// claims exist but not their names; see [`GraphnetSourceBuilder::api_claim`].
pub const DEFAULT_API_CLAIM: &str = "authorised_apis";

/// Gets Graphnet tokens with the client credentials grant; its
/// [`GraphnetSource::api_profile`] puts the subscription key on every API request
/// and tells APIM's key 401s from a rejected token.
#[derive(Debug, Clone)]
pub struct GraphnetSource {
    endpoint: TokenEndpoint,
    client: ClientAuth,
    subscription_key: SecretValue,
    key_on_token_request: bool,
    default_lifetime: Option<Duration>,
    api_claim: String,
    key: CacheKey,
}

/// Builds a [`GraphnetSource`].
#[derive(Debug)]
pub struct GraphnetSourceBuilder {
    token_url: String,
    client: ClientAuth,
    subscription_key: SecretValue,
    key_on_token_request: bool,
    default_lifetime: Option<Duration>,
    api_claim: String,
    endpoint: EndpointConfig,
}

impl GraphnetSource {
    /// Starts a source for `client_id` at the deployment's `token_url`, with the
    /// APIM `subscription_key` for API calls.
    pub fn builder(
        token_url: impl Into<String>,
        client_id: impl Into<String>,
        client_secret: ClientSecret,
        subscription_key: SecretValue,
    ) -> GraphnetSourceBuilder {
        GraphnetSourceBuilder {
            token_url: token_url.into(),
            // Graphnet documents the credentials in the form body only.
            client: ClientAuth::new(client_id, client_secret, ClientAuthMethod::ClientSecretPost),
            subscription_key,
            key_on_token_request: false,
            default_lifetime: None,
            api_claim: DEFAULT_API_CLAIM.to_owned(),
            endpoint: EndpointConfig::default(),
        }
    }

    /// The client id.
    pub fn client_id(&self) -> &str {
        self.client.id()
    }

    /// The token URL.
    pub fn token_url(&self) -> &Url {
        self.endpoint.url()
    }

    /// The token endpoint.
    pub fn endpoint(&self) -> &TokenEndpoint {
        &self.endpoint
    }

    /// The name of the claim read as the list of authorised APIs.
    pub fn api_claim(&self) -> &str {
        &self.api_claim
    }

    /// What Graphnet's API wants of every request: the subscription key, as a
    /// sensitive header; and a judge that takes APIM's key 401s for the
    /// configuration mistakes they are, so no token is burnt replaying them.
    pub fn api_profile(&self) -> ApiProfile {
        let profile = ApiProfile::new().judge(SubscriptionKeyJudge);
        // Checked when building: the key is one HTTP can carry.
        match profile.clone().secret_header(SUBSCRIPTION_KEY_HEADER, &self.subscription_key) {
            Ok(with_key) => with_key,
            Err(_) => profile,
        }
    }

    /// Whether the subscription key is also sent to the token endpoint.
    pub fn sends_key_on_token_request(&self) -> bool {
        self.key_on_token_request
    }

    /// The claims of a token from this source, including the authorised APIs.
    ///
    /// The signature is not checked: the claims only tell the caller what the token
    /// says it allows, so it can fail early instead of calling an API it may not use.
    pub fn claims(&self, token: &Token) -> Result<GraphnetClaims> {
        GraphnetClaims::decode(token.access_token(), &self.api_claim)
    }

    /// Why a token with no usable expiry is refused, or `None` if it is fine.
    fn missing_expiry(&self, token: &Token) -> Option<Error> {
        if token.expiry_source() != ExpirySource::Default || self.default_lifetime.is_some() {
            return None;
        }
        let what = match jwt_claims(token.access_token().expose_secret()) {
            Some(_) => "the access token is a JWT without an `exp` claim",
            None => "the access token is not a JWT",
        };
        Some(Error::invalid_response(
            "Graphnet token request",
            200,
            ResponseProblem::Other(format!(
                "{what} and the response has no `expires_in`, so its lifetime is unknown; \
                 if this deployment issues such tokens, configure one with \
                 `GraphnetSourceBuilder::default_lifetime`"
            )),
        ))
    }
}

#[async_trait]
impl CredentialSource for GraphnetSource {
    fn cache_key(&self) -> &CacheKey {
        &self.key
    }

    fn dpop(&self) -> Option<&auth_core::dpop::Dpop> {
        self.endpoint.config().dpop.as_ref()
    }

    async fn fetch(&self, ctx: &FetchContext) -> Result<Token> {
        let mut request = TokenRequest::grant("client_credentials").client_auth(&self.client);
        if self.key_on_token_request {
            // The same sensitive header API calls carry.
            request = request.secret_header(SUBSCRIPTION_KEY, self.subscription_key.expose_secret());
        }
        let token = self.endpoint.request_token(ctx, request).await?;
        match self.missing_expiry(&token) {
            Some(error) => Err(error),
            None => Ok(token),
        }
    }
}

/// The subscription key header, as a name.
const SUBSCRIPTION_KEY: HeaderName = HeaderName::from_static("ocp-apim-subscription-key");

/// Tells Azure API Management's own 401s about the subscription key from a
/// rejected token: only the body can.
#[derive(Debug, Clone, Copy)]
struct SubscriptionKeyJudge;

impl RejectionJudge for SubscriptionKeyJudge {
    fn wants_body(&self) -> bool {
        true
    }

    fn judge(&self, rejection: &Rejection<'_>) -> RejectionVerdict {
        if rejection.challenge.is_some_and(|c| c.is_invalid_token()) {
            return RejectionVerdict::TokenRejected;
        }
        match apim_key_problem(rejection.body) {
            // The server's text is not echoed: ours says the same and cannot carry anything else.
            Some(KeyProblem::Missing) => RejectionVerdict::Configuration(format!(
                "Azure API Management refused the request: the subscription key is missing \
                 (HTTP {}); the `{SUBSCRIPTION_KEY_HEADER}` header did not arrive, so check that \
                 the request does not blank it and nothing on the way strips it",
                rejection.status
            )),
            Some(KeyProblem::Invalid) => RejectionVerdict::Configuration(format!(
                "Azure API Management refused the request: the subscription key is invalid \
                 or its subscription is not active (HTTP {}); check the `{SUBSCRIPTION_KEY_HEADER}` \
                 key of the Graphnet source",
                rejection.status
            )),
            None => RejectionVerdict::TokenRejected,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KeyProblem {
    Missing,
    Invalid,
}

/// Recognises APIM's `{"statusCode":401,"message":"Access denied due to … subscription key…"}`.
fn apim_key_problem(body: &[u8]) -> Option<KeyProblem> {
    let Ok(Value::Object(fields)) = serde_json::from_slice::<Value>(body) else { return None };
    let message = fields.get("message").and_then(Value::as_str)?.to_ascii_lowercase();
    if fields.get("statusCode").is_none() || !message.contains("subscription key") {
        return None;
    }
    Some(if message.contains("missing") { KeyProblem::Missing } else { KeyProblem::Invalid })
}

impl GraphnetSourceBuilder {
    /// Also sends the subscription key to the token endpoint (default off: Graphnet
    /// does not say the token endpoint needs it).
    pub fn subscription_key_on_token_request(mut self, on: bool) -> Self {
        self.key_on_token_request = on;
        self
    }

    /// Lifetime assumed for a token that is not a JWT with `exp` and comes without
    /// `expires_in`. Without it, such a token is an error.
    pub fn default_lifetime(mut self, lifetime: Duration) -> Self {
        self.default_lifetime = Some(lifetime);
        self
    }

    /// Names the JWT claim that lists the authorised APIs (default [`DEFAULT_API_CLAIM`]).
    pub fn api_claim(mut self, name: impl Into<String>) -> Self {
        self.api_claim = name.into();
        self
    }

    /// Checks the configuration and builds the source.
    pub fn build(mut self) -> Result<GraphnetSource> {
        self.client.check()?;
        if self.subscription_key.is_empty() {
            return Err(Error::configuration(
                "the Graphnet subscription key is empty; Azure API Management refuses API calls without one",
            ));
        }
        if self.api_claim.is_empty() {
            return Err(Error::configuration("the name of the authorised-APIs claim is empty"));
        }
        if let Some(lifetime) = self.default_lifetime {
            if lifetime.is_zero() {
                return Err(Error::configuration("the default token lifetime must be above zero"));
            }
            self.endpoint.parse.expiry = self.endpoint.parse.expiry.clone().with_default_lifetime(lifetime);
        }
        // Fails on a key HTTP cannot carry, without echoing it.
        ApiProfile::new().secret_header(SUBSCRIPTION_KEY_HEADER, &self.subscription_key)?;
        let endpoint = TokenEndpoint::new(&self.token_url, self.endpoint)?;
        let key = endpoint
            .config()
            .bind_cache_key(CacheKey::builder(PROVIDER, endpoint.url().as_str(), self.client.id()).build());
        Ok(GraphnetSource {
            endpoint,
            client: self.client,
            subscription_key: self.subscription_key,
            key_on_token_request: self.key_on_token_request,
            default_lifetime: self.default_lifetime,
            api_claim: self.api_claim,
            key,
        })
    }
}

/// The APIs a token authorises, as listed in its claims.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuthorisedApis(BTreeSet<String>);

impl AuthorisedApis {
    /// Whether `api` is listed (exact match).
    pub fn contains(&self, api: &str) -> bool {
        self.0.contains(api)
    }

    /// The names, sorted.
    pub fn iter(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(String::as_str)
    }

    /// How many APIs are listed.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether none is listed.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Display for AuthorisedApis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.iter().map(String::as_str).collect::<Vec<_>>().join(", "))
    }
}

/// What a Graphnet access token says about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GraphnetClaims {
    claim: String,
    apis: Option<AuthorisedApis>,
    expires_at: Option<SystemTime>,
    issuer: Option<String>,
    subject: Option<String>,
}

impl GraphnetClaims {
    /// Reads the claims of `token`, taking the authorised APIs from `api_claim`.
    ///
    /// Fails if the token is not a JWT, or the claim is neither a string nor an
    /// array of strings.
    pub fn decode(token: &AccessToken, api_claim: &str) -> Result<Self> {
        let claims = jwt_claims(token.expose_secret()).ok_or_else(|| {
            problem("the access token is not a JWT, so it lists no authorised APIs".to_owned())
        })?;
        let apis = match claims.get(api_claim) {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(split_names(s).collect()),
            Some(Value::Array(items)) => {
                let mut names = BTreeSet::new();
                for item in items {
                    let name = item.as_str().ok_or_else(|| {
                        problem(format!("the `{api_claim}` claim holds something other than strings"))
                    })?;
                    names.extend(split_names(name));
                }
                Some(names)
            }
            Some(_) => return Err(problem(format!("the `{api_claim}` claim is not a string or an array"))),
        };
        let text = |name: &str| claims.get(name).and_then(Value::as_str).map(str::to_owned);
        let expires_at = claims
            .get("exp")
            .and_then(Value::as_f64)
            .filter(|s| s.is_finite() && *s >= 0.0)
            .and_then(|s| Duration::try_from_secs_f64(s).ok())
            .and_then(|d| UNIX_EPOCH.checked_add(d));
        Ok(Self {
            claim: api_claim.to_owned(),
            apis: apis.map(AuthorisedApis),
            expires_at,
            issuer: text("iss"),
            subject: text("sub"),
        })
    }

    /// The authorised APIs, or `None` if the token has no such claim.
    pub fn authorised_apis(&self) -> Option<&AuthorisedApis> {
        self.apis.as_ref()
    }

    /// Whether the token lists `api` as authorised.
    pub fn allows(&self, api: &str) -> bool {
        self.apis.as_ref().is_some_and(|a| a.contains(api))
    }

    /// Succeeds if the token lists `api`; otherwise a configuration error naming
    /// what it does list, since only Graphnet's on-boarding can change that.
    pub fn require_api(&self, api: &str) -> Result<()> {
        match &self.apis {
            Some(apis) if apis.contains(api) => Ok(()),
            Some(apis) => Err(Error::configuration(format!(
                "the Graphnet token does not authorise the `{api}` API (it authorises: {}); \
                 access to APIs is agreed during on-boarding with Graphnet",
                if apis.is_empty() { "none".to_owned() } else { apis.to_string() }
            ))),
            None => Err(Error::configuration(format!(
                "the Graphnet token has no `{}` claim listing authorised APIs, so `{api}` cannot be \
                 confirmed; if this deployment names the claim differently, set \
                 `GraphnetSourceBuilder::api_claim`",
                self.claim
            ))),
        }
    }

    /// The `exp` claim.
    pub fn expires_at(&self) -> Option<SystemTime> {
        self.expires_at
    }

    /// The `iss` claim.
    pub fn issuer(&self) -> Option<&str> {
        self.issuer.as_deref()
    }

    /// The `sub` claim.
    pub fn subject(&self) -> Option<&str> {
        self.subject.as_deref()
    }
}

fn problem(message: String) -> Error {
    Error::invalid_response("Graphnet access token", 200, ResponseProblem::Other(message))
}

fn split_names(s: &str) -> impl Iterator<Item = String> + '_ {
    s.split(|c: char| c.is_whitespace() || c == ',').filter(|n| !n.is_empty()).map(str::to_owned)
}

impl EndpointOptions for GraphnetSourceBuilder {
    fn endpoint_config(&mut self) -> &mut EndpointConfig {
        &mut self.endpoint
    }
}
