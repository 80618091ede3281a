//! MSK "Blaze" FHIR API (Memorial Sloan Kettering, Clinical Trial Direct Data
//! Exchange), behind IBM API Connect.
//!
//! What MSK's developer guide asks for, and this source does:
//!
//! * tokens from `POST {gateway}/msk-apim/external/msk-oidc/oauth2/token` with a
//!   form body of exactly `client_id`, `client_secret`, `grant_type=client_credentials`
//!   and `scope=full`; the answer (`token_type`, `access_token` `AAIg…`, `scope`,
//!   `expires_in` in seconds, `consented_on`) keeps `consented_on` among
//!   [`Token::extra`] (read it with [`consented_on`]);
//! * every API request carries the partner id in the `x-partnerid` header, the MSK
//!   study number in the `researchstudy` query parameter, and `_format=json` (without
//!   it Blaze answers `Content-Type: text/plain`), through
//!   [`MskSource::api_profile`];
//! * a 401 whose OperationOutcome is about the partner id ("Incorrect Partnerid
//!   name", "Api Key was not provided") is a configuration error, not an expired
//!   token: it fails with [`ErrorKind::Configuration`](auth_core::ErrorKind) and no
//!   token is burnt replaying it. A 401 from the gateway about the token itself is
//!   replayed once with a new token, as for every source.
//!
//! ```no_run
//! use auth_core::{AuthClient, ClientSecret, TokenManager};
//! use auth_providers::msk::{MskSource, STAGING_BASE_URL};
//!
//! # async fn demo() -> auth_core::Result<()> {
//! let source = MskSource::builder(
//!     STAGING_BASE_URL,
//!     "MSK_PROVIDED_CLIENTID",
//!     ClientSecret::new(std::env::var("MSK_CLIENT_SECRET").unwrap_or_default()),
//! )
//! .partner_id("MSK_PROVIDED_PARTNERID")
//! .research_study("FHIR-T")
//! .build()?;
//! let patients = format!("{}/Patient", source.fhir_base());
//! let client = AuthClient::builder(TokenManager::new(source.clone())).profile(source.api_profile()).build()?;
//! let bundle = client.get(patients).send().await?;
//! # let _ = bundle; Ok(()) }
//! ```

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use auth_core::endpoint::{EndpointConfig, EndpointOptions, TokenEndpoint};
use auth_core::request::{ClientAuth, ClientAuthMethod, TokenRequest};
use auth_core::{
    ApiProfile, CacheKey, ClientSecret, CredentialSource, Error, ExpiryPolicy, FetchContext, Rejection,
    RejectionJudge, RejectionVerdict, Result, Token,
};
use serde_json::Value;
use url::Url;

/// The provider kind in cache keys.
pub const PROVIDER: &str = "msk";
/// MSK's staging API gateway.
pub const STAGING_BASE_URL: &str = "https://apigateway.apps.stageapi.mskcc.org";
/// MSK's production API gateway.
pub const PRODUCTION_BASE_URL: &str = "https://apigateway.apps.prodapi.mskcc.org";
/// Path of the token endpoint below the gateway.
pub const TOKEN_PATH: &str = "/msk-apim/external/msk-oidc/oauth2/token";
/// Path of the FHIR base (API v2) below the gateway.
pub const FHIR_PATH: &str = "/msk-apim/external/v2/crit/blaze/api";
/// The header naming the partner on every API request.
pub const PARTNER_ID_HEADER: &str = "x-partnerid";
/// The query parameter naming the MSK study on every API request.
pub const RESEARCH_STUDY_PARAM: &str = "researchstudy";
/// The only scope MSK issues.
pub const DEFAULT_SCOPE: &str = "full";
/// Lifetime assumed when a response leaves out `expires_in`: IBM API Connect's
/// default, and what MSK documents.
pub const DEFAULT_LIFETIME: Duration = Duration::from_secs(3600);

/// When the client's consent was recorded, from the `consented_on` field IBM API
/// Connect adds to its token responses (seconds since the epoch; a number, or a
/// numeric string on some deployments).
///
/// Informational only: expiry is `expires_in` counted from receipt, never derived
/// from this gateway timestamp, whose clock may disagree with ours.
pub fn consented_on(token: &Token) -> Option<SystemTime> {
    let secs = match token.extra().get("consented_on")? {
        Value::Number(n) => n.as_u64().or_else(|| n.as_f64().filter(|f| *f >= 0.0).map(|f| f as u64)),
        Value::String(s) => s.trim().parse::<u64>().ok(),
        _ => None,
    }?;
    UNIX_EPOCH.checked_add(Duration::from_secs(secs))
}

/// Gets MSK tokens with the client credentials grant; its [`MskSource::api_profile`]
/// decorates API requests with the partner id, the research study and
/// `_format=json`, and tells a partner-id 401 from a token 401.
#[derive(Debug, Clone)]
pub struct MskSource {
    endpoint: TokenEndpoint,
    client: ClientAuth,
    scope: String,
    partner_id: String,
    research_study: String,
    json_format: bool,
    fhir_base: Url,
    key: CacheKey,
}

impl MskSource {
    /// Starts a source for `client_id` at the gateway `base_url`
    /// ([`STAGING_BASE_URL`], [`PRODUCTION_BASE_URL`], or an emulator); the token
    /// and FHIR URLs are derived from it. [`MskSourceBuilder::partner_id`] and
    /// [`MskSourceBuilder::research_study`] are required.
    pub fn builder(
        base_url: impl Into<String>,
        client_id: impl Into<String>,
        client_secret: ClientSecret,
    ) -> MskSourceBuilder {
        let mut endpoint = EndpointConfig::default();
        endpoint.parse.expiry = default_expiry();
        MskSourceBuilder {
            base_url: base_url.into(),
            token_url: None,
            fhir_base: None,
            client_id: client_id.into(),
            client_secret,
            partner_id: None,
            research_study: None,
            scope: DEFAULT_SCOPE.to_owned(),
            json_format: true,
            endpoint,
        }
    }

    /// The client id.
    pub fn client_id(&self) -> &str {
        self.client.id()
    }

    /// The partner id sent in `x-partnerid`.
    pub fn partner_id(&self) -> &str {
        &self.partner_id
    }

    /// The MSK study number sent as `researchstudy`.
    pub fn research_study(&self) -> &str {
        &self.research_study
    }

    /// The scope requested.
    pub fn scope(&self) -> &str {
        &self.scope
    }

    /// The token URL.
    pub fn token_url(&self) -> &Url {
        self.endpoint.url()
    }

    /// The FHIR base URL.
    pub fn fhir_base(&self) -> &Url {
        &self.fhir_base
    }

    /// The token endpoint.
    pub fn endpoint(&self) -> &TokenEndpoint {
        &self.endpoint
    }

    /// What MSK's API wants of every request: `x-partnerid`, `researchstudy` and
    /// `_format=json`; and a judge that takes a partner-id 401 for the configuration
    /// mistake it is, so no token is burnt replaying it.
    pub fn api_profile(&self) -> ApiProfile {
        let mut profile = ApiProfile::new()
            .query(RESEARCH_STUDY_PARAM, self.research_study.clone())
            .judge(PartnerIdJudge { partner_id: self.partner_id.clone() });
        // Checked when building: the header value is one HTTP can carry.
        if let Ok(with_partner) = profile.clone().header(PARTNER_ID_HEADER, &self.partner_id) {
            profile = with_partner;
        }
        if self.json_format {
            profile = profile.query("_format", "json");
        }
        profile
    }
}

/// MSK tokens are opaque `AAIg…` strings whose lifetime is `expires_in` seconds;
/// there is no JWT to read, and `consented_on` is not an expiry.
fn default_expiry() -> ExpiryPolicy {
    ExpiryPolicy::default().with_jwt_exp(false).with_default_lifetime(DEFAULT_LIFETIME)
}

#[async_trait]
impl CredentialSource for MskSource {
    fn cache_key(&self) -> &CacheKey {
        &self.key
    }

    fn dpop(&self) -> Option<&auth_core::dpop::Dpop> {
        self.endpoint.config().dpop.as_ref()
    }

    async fn fetch(&self, ctx: &FetchContext) -> Result<Token> {
        // Field order as in MSK's samples: client_id, client_secret, grant_type, scope.
        let request = TokenRequest::post()
            .client_in_body(&self.client)
            .param("grant_type", "client_credentials")
            .param("scope", self.scope.as_str());
        self.endpoint.request_token(ctx, request).await
    }
}

/// Tells a partner-id 401 (Blaze's OperationOutcome) from a token 401 (the
/// gateway's `httpCode` document): only the body can.
#[derive(Debug, Clone)]
struct PartnerIdJudge {
    partner_id: String,
}

impl RejectionJudge for PartnerIdJudge {
    fn wants_body(&self) -> bool {
        true
    }

    fn judge(&self, rejection: &Rejection<'_>) -> RejectionVerdict {
        match partner_id_problem(rejection.body) {
            Some(text) => RejectionVerdict::Configuration(format!(
                "MSK refused the partner id `{}` sent in `{PARTNER_ID_HEADER}` (HTTP {}: {text}); \
                 check the partner id MSK issued with these credentials",
                self.partner_id, rejection.status
            )),
            None => RejectionVerdict::TokenRejected,
        }
    }
}

/// The longest piece of server text quoted in an error.
const QUOTE_LIMIT: usize = 200;

/// The text of an OperationOutcome issue about the partner id, if `body` is one.
///
/// Matched on wording, because MSK documents two texts for one status and nothing
/// else: "Incorrect Partnerid name" and "Api Key was not provided".
fn partner_id_problem(body: &[u8]) -> Option<String> {
    let outcome: Value = serde_json::from_slice(body).ok()?;
    if outcome.get("resourceType").and_then(Value::as_str) != Some("OperationOutcome") {
        return None;
    }
    let issues = outcome.get("issue").and_then(Value::as_array)?;
    issues
        .iter()
        .flat_map(|issue| {
            [issue.pointer("/details/text"), issue.get("diagnostics")]
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
        })
        .find(|text| {
            let lower = text.to_ascii_lowercase();
            ["partnerid", "partner id", "partner-id", "api key"].iter().any(|needle| lower.contains(needle))
        })
        .map(quote)
}

/// Server text made safe to put in an error: no control characters, bounded
/// length, and nothing that looks like a credential (a server echoing the bearer
/// it refused would put it in logs).
fn quote(text: &str) -> String {
    let clean: String =
        auth_core::error::redact_credentials(text).chars().filter(|c| !c.is_control()).collect();
    match clean.char_indices().nth(QUOTE_LIMIT) {
        Some((cut, _)) => format!("{}…", &clean[..cut]),
        None => clean,
    }
}

/// Builds an [`MskSource`].
#[derive(Debug)]
pub struct MskSourceBuilder {
    base_url: String,
    token_url: Option<String>,
    fhir_base: Option<String>,
    client_id: String,
    client_secret: ClientSecret,
    partner_id: Option<String>,
    research_study: Option<String>,
    scope: String,
    json_format: bool,
    endpoint: EndpointConfig,
}

impl MskSourceBuilder {
    /// The partner id MSK issued with the credentials (required). Not a secret: it
    /// is echoed in MSK's paging links.
    pub fn partner_id(mut self, partner_id: impl Into<String>) -> Self {
        self.partner_id = Some(partner_id.into());
        self
    }

    /// The MSK unique study number to read (required): access is granted per study.
    pub fn research_study(mut self, research_study: impl Into<String>) -> Self {
        self.research_study = Some(research_study.into());
        self
    }

    /// Overrides the token URL (default `{base}/msk-apim/external/msk-oidc/oauth2/token`).
    pub fn token_url(mut self, url: impl Into<String>) -> Self {
        self.token_url = Some(url.into());
        self
    }

    /// Overrides the FHIR base URL (default `{base}/msk-apim/external/v2/crit/blaze/api`),
    /// for the older v1 API, say.
    pub fn fhir_base(mut self, url: impl Into<String>) -> Self {
        self.fhir_base = Some(url.into());
        self
    }

    /// Overrides the scope (default `full`, the only one MSK documents).
    pub fn scope(mut self, scope: impl Into<String>) -> Self {
        self.scope = scope.into();
        self
    }

    /// Whether to add `_format=json` to API requests (default on: without it Blaze
    /// labels its JSON `text/plain`).
    pub fn json_format(mut self, on: bool) -> Self {
        self.json_format = on;
        self
    }

    /// How expiry is worked out (default: `expires_in` seconds, 1 hour when absent,
    /// JWT `exp` not read).
    pub fn expiry(mut self, policy: ExpiryPolicy) -> Self {
        self.endpoint.parse.expiry = policy;
        self
    }

    /// Checks the configuration and builds the source.
    pub fn build(self) -> Result<MskSource> {
        if self.client_secret.is_empty() {
            return Err(Error::configuration("the MSK client secret is empty"));
        }
        let partner_id = self.partner_id.ok_or_else(|| {
            Error::configuration("an MSK partner id is required (`x-partnerid`, issued with the credentials)")
        })?;
        if partner_id.trim().is_empty() || partner_id.trim() != partner_id {
            return Err(Error::configuration("the MSK partner id is empty or has surrounding whitespace"));
        }
        let research_study = self.research_study.ok_or_else(|| {
            Error::configuration("an MSK research study is required (`researchstudy`, the MSK study number)")
        })?;
        if research_study.trim().is_empty() {
            return Err(Error::configuration("the MSK research study is empty"));
        }
        if self.scope.trim().is_empty() {
            return Err(Error::configuration("the MSK scope is empty"));
        }

        let base = self.base_url.trim_end_matches('/');
        let token_url = self.token_url.unwrap_or_else(|| format!("{base}{TOKEN_PATH}"));
        let endpoint = TokenEndpoint::new(&token_url, self.endpoint)?;
        let fhir_base = self.fhir_base.unwrap_or_else(|| format!("{base}{FHIR_PATH}"));
        let fhir_base = endpoint.check_url(&fhir_base)?;

        let client = ClientAuth::new(self.client_id, self.client_secret, ClientAuthMethod::ClientSecretPost);
        client.check()?;

        // Refused here rather than dropped from every request later.
        ApiProfile::new().header(PARTNER_ID_HEADER, &partner_id)?;
        // The token depends on client and scope only; partner id and study decorate
        // API requests, so sources for other studies may share the cached token.
        let key = endpoint.config().bind_cache_key(
            CacheKey::builder(PROVIDER, endpoint.url().as_str(), client.id())
                .scopes([self.scope.clone()])
                .build(),
        );
        Ok(MskSource {
            endpoint,
            client,
            scope: self.scope,
            partner_id,
            research_study,
            json_format: self.json_format,
            fhir_base,
            key,
        })
    }
}

impl EndpointOptions for MskSourceBuilder {
    fn endpoint_config(&mut self) -> &mut EndpointConfig {
        &mut self.endpoint
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn builder() -> MskSourceBuilder {
        MskSource::builder(STAGING_BASE_URL, "client", ClientSecret::new("hunter2-canary"))
            .partner_id("partner")
            .research_study("FHIR-T")
    }

    #[test]
    fn urls_follow_the_gateway() {
        let Ok(source) = builder().build() else { panic!("valid configuration refused") };
        assert_eq!(
            source.token_url().as_str(),
            "https://apigateway.apps.stageapi.mskcc.org/msk-apim/external/msk-oidc/oauth2/token"
        );
        assert_eq!(
            source.fhir_base().as_str(),
            "https://apigateway.apps.stageapi.mskcc.org/msk-apim/external/v2/crit/blaze/api"
        );
        assert!(!format!("{source:?} {:?}", builder()).contains("hunter2"));
    }

    #[test]
    fn build_refuses_what_cannot_work() {
        let no_partner =
            MskSource::builder(STAGING_BASE_URL, "c", ClientSecret::new("s")).research_study("S");
        assert!(no_partner.build().is_err());
        let no_study = MskSource::builder(STAGING_BASE_URL, "c", ClientSecret::new("s")).partner_id("p");
        assert!(no_study.build().is_err());
        assert!(builder().partner_id("line\nbreak").build().is_err());
        assert!(builder().partner_id(" p").build().is_err());
        assert!(builder().research_study(" ").build().is_err());
        assert!(builder().scope("").build().is_err());
        assert!(MskSource::builder("http://msk.example", "c", ClientSecret::new("s")).build().is_err());
        let empty_secret = MskSource::builder(STAGING_BASE_URL, "c", ClientSecret::new(""))
            .partner_id("p")
            .research_study("S");
        assert!(empty_secret.build().is_err());
    }

    #[test]
    fn a_partner_id_complaint_is_quoted_without_the_token_it_echoes() {
        let bearer = "AAIgNjg5ZjQ0Y2QtOGQzNS00YmYxLWI5MjMtMzQ4NmRhMTc0ZWRkZ";
        let body = format!(
            r#"{{"resourceType":"OperationOutcome","issue":[{{"severity":"error","code":"security",
            "diagnostics":"Incorrect Partnerid name for Bearer {bearer}"}}]}}"#
        );
        let quoted = partner_id_problem(body.as_bytes()).unwrap_or_default();
        assert!(quoted.contains("Incorrect Partnerid name"), "{quoted}");
        assert!(!quoted.contains(bearer) && quoted.contains("[redacted]"), "{quoted}");
    }

    #[test]
    fn consented_on_reads_numbers_and_numeric_strings() {
        let with = |value: Value| {
            let token =
                Token::new(auth_core::AccessToken::new("t"), UNIX_EPOCH, UNIX_EPOCH + DEFAULT_LIFETIME);
            let Ok(token) = token else { panic!("valid token refused") };
            consented_on(&token.with_extra("consented_on", value))
        };
        let seed = UNIX_EPOCH.checked_add(Duration::from_secs(1_656_086_348));
        assert_eq!(with(serde_json::json!(1_656_086_348)), seed);
        assert_eq!(with(serde_json::json!("1656086348")), seed);
        assert_eq!(with(serde_json::json!("yesterday")), None);
        assert_eq!(with(serde_json::json!(-5)), None);
    }

    #[test]
    fn partner_outcomes_are_recognised() {
        let outcome = |text: &str| {
            serde_json::json!({"resourceType": "OperationOutcome",
                "issue": [{"severity": "error", "code": "security", "details": {"text": text}}]})
            .to_string()
        };
        assert!(partner_id_problem(outcome("Incorrect Partnerid name").as_bytes()).is_some());
        assert!(partner_id_problem(outcome("Api Key was not provided").as_bytes()).is_some());
        assert!(partner_id_problem(outcome("Missing required query parameter").as_bytes()).is_none());
        let gateway = br#"{"httpCode":"401","httpMessage":"Unauthorized","moreInformation":"x"}"#;
        assert!(partner_id_problem(gateway).is_none());
        assert!(partner_id_problem(b"not json").is_none());
        let long = "partnerid ".repeat(100);
        assert!(partner_id_problem(outcome(&long).as_bytes()).is_some_and(|t| t.chars().count() <= 201));
    }
}
