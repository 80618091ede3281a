//! SMART Backend Services: the client credentials grant authenticated with a
//! signed JWT (`private_key_jwt`, RFC 7523), as HL7 SMART App Launch 2.x specifies
//! for system-to-system FHIR access. Aidbox supports this too (register the client
//! with its JWKS and `grant_types: [client_credentials]`); use this source for it.
//!
//! | SMART Backend Services | here |
//! |---|---|
//! | assertion signed with RS384 or ES384 | [`SigningAlgorithm`]; the key is PEM (PKCS#8, SEC1 or PKCS#1), checked at build |
//! | header `alg`, `kid`, `typ: "JWT"`, optional `jku` | exactly those ([`SmartSourceBuilder::jku`]) |
//! | claims `iss` = `sub` = client id, `aud` = token URL, `exp` ≤ 5 min, unique `jti` | a new assertion, with a new `jti`, for every token request; `aud` the token URL exactly as configured or discovered; `exp` 60 s ahead ([`DEFAULT_ASSERTION_LIFETIME`]), well inside the limit |
//! | `client_assertion_type=urn:ietf:params:oauth:client-assertion-type:jwt-bearer` | [`CLIENT_ASSERTION_TYPE`] |
//! | `scope` required (`system/…`) | an empty scope list is a configuration error |
//! | discovery at `{fhir-base}/.well-known/smart-configuration` | [`SmartSourceBuilder::fhir_base`] (at the first token request) or [`SmartConfiguration::fetch`] |
//!
//! Discovery fails with [`ErrorKind::Configuration`](auth_core::ErrorKind) when the
//! server does not list `private_key_jwt` in `token_endpoint_auth_methods_supported`
//! or the chosen algorithm in `token_endpoint_auth_signing_alg_values_supported`:
//! SMART makes both lists mandatory for servers offering backend services, and
//! guessing would only turn a clear message into an `invalid_client` later.
//!
//! ```no_run
//! use auth_core::{AuthClient, PrivateKeyPem, TokenManager};
//! use auth_providers::smart::{SigningAlgorithm, SmartSource};
//!
//! # async fn demo() -> auth_core::Result<()> {
//! let pem = std::fs::read_to_string("backend-key.pem").unwrap_or_default();
//! let source = SmartSource::builder("my-client", PrivateKeyPem::new(pem), SigningAlgorithm::Es384, "key-1")
//!     .fhir_base("https://fhir.example/r4") // discovers the token endpoint
//!     .scopes(["system/Patient.rs"])
//!     .build()?;
//! let client = AuthClient::new(TokenManager::new(source))?;
//! let patient = client.get("https://fhir.example/r4/Patient/123").send().await?;
//! # let _ = patient; Ok(()) }
//! ```

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use auth_core::endpoint::{EndpointConfig, EndpointOptions, TokenEndpoint, check_url, read_capped};
use auth_core::error::ResponseProblem;
use auth_core::request::TokenRequest;
use auth_core::{ApiProfile, CacheKey, CredentialSource, Error, FetchContext, PrivateKeyPem, Result, Token};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::header::ACCEPT;
use serde::{Deserialize, Serialize};
use tokio::sync::OnceCell;
use url::Url;
use zeroize::Zeroizing;

/// The provider kind in cache keys.
pub const PROVIDER: &str = "smart";

/// The `client_assertion_type` of RFC 7523 §2.2.
pub const CLIENT_ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// The path of the SMART configuration document under the FHIR base.
pub const WELL_KNOWN_PATH: &str = ".well-known/smart-configuration";

/// The longest assertion lifetime SMART Backend Services allows.
pub const MAX_ASSERTION_LIFETIME: Duration = Duration::from_secs(300);

/// How long an assertion is valid by default: well inside [`MAX_ASSERTION_LIFETIME`],
/// so a client clock running a minute or more ahead of the server's still passes a
/// strict server's check (a refused assertion is `invalid_client`, which is not
/// retried).
pub const DEFAULT_ASSERTION_LIFETIME: Duration = Duration::from_secs(60);

/// The client authentication method SMART Backend Services uses.
pub const PRIVATE_KEY_JWT: &str = "private_key_jwt";

/// How client assertions are signed: the two algorithms SMART requires servers to support.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SigningAlgorithm {
    /// RSASSA-PKCS1-v1_5 with SHA-384 (an RSA key).
    Rs384,
    /// ECDSA on P-384 with SHA-384 (an EC key on P-384).
    Es384,
}

impl SigningAlgorithm {
    /// The JOSE name (`RS384`, `ES384`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Rs384 => "RS384",
            Self::Es384 => "ES384",
        }
    }

    /// Parses a JOSE name, as `--alg` takes it.
    pub fn parse(name: &str) -> Result<Self> {
        match name {
            "RS384" => Ok(Self::Rs384),
            "ES384" => Ok(Self::Es384),
            other => Err(Error::configuration(format!(
                "unsupported SMART signing algorithm `{other}` (expected RS384 or ES384)"
            ))),
        }
    }

    fn jose(self) -> Algorithm {
        match self {
            Self::Rs384 => Algorithm::RS384,
            Self::Es384 => Algorithm::ES384,
        }
    }
}

impl fmt::Display for SigningAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a server's `.well-known/smart-configuration` says about token requests.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[non_exhaustive]
pub struct SmartConfiguration {
    /// The token endpoint.
    pub token_endpoint: String,
    /// Client authentication methods the token endpoint accepts.
    #[serde(default)]
    pub token_endpoint_auth_methods_supported: Option<Vec<String>>,
    /// Algorithms the token endpoint accepts for client assertions.
    #[serde(default)]
    pub token_endpoint_auth_signing_alg_values_supported: Option<Vec<String>>,
    /// Grant types, if listed.
    #[serde(default)]
    pub grant_types_supported: Option<Vec<String>>,
    /// Scopes, if listed.
    #[serde(default)]
    pub scopes_supported: Option<Vec<String>>,
}

impl SmartConfiguration {
    /// Parses the document. Fails if it is not a JSON object with a string
    /// `token_endpoint` (the lists are checked by [`SmartConfiguration::check`]).
    pub fn from_json(body: &[u8]) -> Result<Self> {
        let problem = |p: ResponseProblem| Error::invalid_response("SMART configuration", 200, p);
        let value: serde_json::Value = serde_json::from_slice(body)
            .map_err(|_| problem(ResponseProblem::NotJson { content_type: None, len: body.len() }))?;
        if !value.is_object() {
            return Err(problem(ResponseProblem::NotAnObject));
        }
        serde_json::from_value(value).map_err(|e| {
            problem(ResponseProblem::Other(format!(
                "not a SMART configuration ({e}); `token_endpoint` must be a string and the \
                 `…_supported` fields arrays of strings"
            )))
        })
    }

    /// Fails, naming the field, unless the server accepts `private_key_jwt` with `alg`
    /// (and, when it lists grant types, `client_credentials`).
    pub fn check(&self, alg: SigningAlgorithm) -> Result<()> {
        let listed = |list: &Option<Vec<String>>, value: &str| {
            list.as_ref().is_some_and(|l| l.iter().any(|v| v == value))
        };
        if !listed(&self.token_endpoint_auth_methods_supported, PRIVATE_KEY_JWT) {
            return Err(Error::configuration(format!(
                "the server's SMART configuration does not list `{PRIVATE_KEY_JWT}` in \
                 `token_endpoint_auth_methods_supported` ({}), so it does not offer SMART Backend Services",
                describe(&self.token_endpoint_auth_methods_supported)
            )));
        }
        if !listed(&self.token_endpoint_auth_signing_alg_values_supported, alg.as_str()) {
            return Err(Error::configuration(format!(
                "the server's SMART configuration does not list {alg} in \
                 `token_endpoint_auth_signing_alg_values_supported` ({}); choose an algorithm it supports",
                describe(&self.token_endpoint_auth_signing_alg_values_supported)
            )));
        }
        if self.grant_types_supported.is_some() && !listed(&self.grant_types_supported, "client_credentials")
        {
            return Err(Error::configuration(format!(
                "the server's SMART configuration does not list `client_credentials` in \
                 `grant_types_supported` ({})",
                describe(&self.grant_types_supported)
            )));
        }
        Ok(())
    }

    /// Fetches `{fhir_base}/.well-known/smart-configuration` with the hardening of a
    /// token request (no redirects, timeout, body cap, https except to loopback).
    pub async fn fetch(fhir_base: &str, config: &EndpointConfig) -> Result<Self> {
        let url = well_known_url(fhir_base, config.allow_insecure_http)?;
        // Only used for its hardened client: discovery sends no credentials, but a
        // redirect or an endless body is as unwelcome here.
        let endpoint = TokenEndpoint::new(url.as_str(), config.clone())?;
        let response = endpoint
            .http()
            .get(url)
            .header(ACCEPT, "application/json")
            .send()
            .await
            .map_err(|e| Error::transport("SMART configuration request", e))?;
        let status = response.status();
        let content_type = auth_core::endpoint::content_type(response.headers());
        let body = read_capped(response, config.max_body, "SMART configuration request").await?;
        if status.is_server_error() || status.as_u16() == 429 {
            return Err(Error::unavailable("SMART configuration request", status.as_u16(), None));
        }
        if !status.is_success() {
            return Err(Error::configuration(format!(
                "the FHIR server has no SMART configuration (GET {WELL_KNOWN_PATH} answered HTTP {}); \
                 give the token URL explicitly",
                status.as_u16()
            )));
        }
        Self::from_json(&body).map_err(|e| match e.response_problem() {
            Some(ResponseProblem::NotJson { len, .. }) => Error::invalid_response(
                "SMART configuration request",
                status.as_u16(),
                ResponseProblem::NotJson { content_type, len: *len },
            ),
            _ => e,
        })
    }
}

fn describe(list: &Option<Vec<String>>) -> String {
    match list {
        None => "the field is missing".to_owned(),
        Some(l) if l.is_empty() => "it lists none".to_owned(),
        Some(l) => format!("it lists: {}", l.join(", ")),
    }
}

/// `{fhir_base}/.well-known/smart-configuration`, with the base's trailing slash optional.
pub fn well_known_url(fhir_base: &str, allow_insecure_http: bool) -> Result<Url> {
    let base = check_url(fhir_base, allow_insecure_http)?;
    let mut text = base.as_str().trim_end_matches('/').to_owned();
    text.push('/');
    text.push_str(WELL_KNOWN_PATH);
    check_url(&text, allow_insecure_http)
}

/// The signing key, parsed and checked. Never printed.
#[derive(Clone)]
struct SigningKey(EncodingKey);

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SigningKey([redacted])")
    }
}

/// Where the token endpoint comes from.
#[derive(Debug)]
enum Target {
    /// The token endpoint, and its URL as configured (the assertion's `aud`).
    Fixed(Box<TokenEndpoint>, String),
    /// Discovered at the first token request, then kept.
    Discover(Box<Discovery>),
}

/// The state of a discovering source.
#[derive(Debug)]
struct Discovery {
    fhir_base: String,
    config: EndpointConfig,
    /// The endpoint, and its URL as the server's document spells it (`aud`).
    endpoint: OnceCell<(TokenEndpoint, String)>,
}

/// Gets tokens with SMART Backend Services (`private_key_jwt` client credentials).
#[derive(Debug)]
pub struct SmartSource {
    client_id: String,
    key_id: String,
    jku: Option<String>,
    alg: SigningAlgorithm,
    signing_key: SigningKey,
    scope: String,
    assertion_lifetime: Duration,
    target: Target,
    key: CacheKey,
}

/// Builds [`SmartSource`].
#[derive(Debug)]
pub struct SmartSourceBuilder {
    client_id: String,
    private_key: PrivateKeyPem,
    alg: SigningAlgorithm,
    key_id: String,
    jku: Option<String>,
    token_url: Option<String>,
    fhir_base: Option<String>,
    scopes: Vec<String>,
    assertion_lifetime: Duration,
    endpoint: EndpointConfig,
}

/// The claims of a client assertion (RFC 7523 §3).
#[derive(Serialize)]
struct AssertionClaims<'a> {
    iss: &'a str,
    sub: &'a str,
    aud: &'a str,
    exp: u64,
    iat: u64,
    jti: String,
}

impl SmartSource {
    /// Starts a source for `client_id`, signing with `private_key` (PEM) under
    /// `alg`, announcing `key_id` as the `kid` the server finds in the client's JWKS.
    pub fn builder(
        client_id: impl Into<String>,
        private_key: PrivateKeyPem,
        alg: SigningAlgorithm,
        key_id: impl Into<String>,
    ) -> SmartSourceBuilder {
        SmartSourceBuilder {
            client_id: client_id.into(),
            private_key,
            alg,
            key_id: key_id.into(),
            jku: None,
            token_url: None,
            fhir_base: None,
            scopes: Vec::new(),
            assertion_lifetime: DEFAULT_ASSERTION_LIFETIME,
            endpoint: EndpointConfig::default(),
        }
    }

    /// The client id.
    pub fn client_id(&self) -> &str {
        &self.client_id
    }

    /// The signing algorithm.
    pub fn algorithm(&self) -> SigningAlgorithm {
        self.alg
    }

    /// The token URL, if known (given, or already discovered).
    pub fn token_url(&self) -> Option<&Url> {
        match &self.target {
            Target::Fixed(e, _) => Some(e.url()),
            Target::Discover(d) => d.endpoint.get().map(|(e, _)| e.url()),
        }
    }

    /// What SMART servers want of API requests: nothing beyond the bearer.
    pub fn api_profile(&self) -> ApiProfile {
        ApiProfile::new()
    }

    /// Signs a new client assertion for `token_url`: a fresh `jti` every call.
    ///
    /// Public so a caller can inspect what is sent; the value is a credential for
    /// up to five minutes, so keep it out of logs.
    pub fn sign_assertion(&self, token_url: &str) -> Result<Zeroizing<String>> {
        // The server judges `exp` on its own wall clock, so the assertion uses the
        // real one, not the manager's (possibly virtual) clock.
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
        let claims = AssertionClaims {
            iss: &self.client_id,
            sub: &self.client_id,
            aud: token_url,
            exp: now + self.assertion_lifetime.as_secs(),
            iat: now,
            jti: new_jti(),
        };
        let mut header = Header::new(self.alg.jose());
        header.typ = Some("JWT".to_owned());
        header.kid = Some(self.key_id.clone());
        header.jku = self.jku.clone();
        // jsonwebtoken's backend, if the features leave it to be chosen.
        auth_core::tls::install_default_provider();
        jsonwebtoken::encode(&header, &claims, &self.signing_key.0)
            .map(Zeroizing::new)
            .map_err(|e| Error::configuration(format!("cannot sign the client assertion: {}", e.kind_name())))
    }

    /// The token endpoint, and the `aud` of assertions for it: its URL exactly as
    /// configured or discovered (a server compares the text, not a normal form).
    async fn endpoint(&self) -> Result<(&TokenEndpoint, &str)> {
        match &self.target {
            Target::Fixed(e, aud) => Ok((e, aud)),
            Target::Discover(d) => {
                // A failed discovery is not kept: the next fetch tries again.
                let (endpoint, aud) = d
                    .endpoint
                    .get_or_try_init(|| async {
                        let smart = SmartConfiguration::fetch(&d.fhir_base, &d.config).await?;
                        smart.check(self.alg)?;
                        let endpoint = TokenEndpoint::new(&smart.token_endpoint, d.config.clone())?;
                        Ok::<_, Error>((endpoint, smart.token_endpoint))
                    })
                    .await?;
                Ok((endpoint, aud))
            }
        }
    }
}

/// Names a jsonwebtoken error without its payload (it never holds key bytes, but
/// its wording is the library's, not ours).
trait KindName {
    fn kind_name(&self) -> String;
}

impl KindName for jsonwebtoken::errors::Error {
    fn kind_name(&self) -> String {
        format!("{:?}", self.kind()).split(['(', ' ']).next().unwrap_or_default().to_owned()
    }
}

/// 128 bits from the operating system's CSPRNG (a `jti` must not be predictable:
/// it guards against replay) plus a process-wide counter, so it stays unique even
/// in the unlikely case the OS source fails and a weaker fallback is used.
fn new_jti() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let mut bytes = [0u8; 16];
    let random = match getrandom::fill(&mut bytes) {
        Ok(()) => u128::from_le_bytes(bytes),
        Err(_) => {
            tracing::warn!("the OS random source failed; the jti falls back to a non-cryptographic one");
            fastrand::u128(..)
        }
    };
    format!("{random:032x}-{n:x}")
}

#[async_trait]
impl CredentialSource for SmartSource {
    fn cache_key(&self) -> &CacheKey {
        &self.key
    }

    async fn fetch(&self, ctx: &FetchContext) -> Result<Token> {
        let (endpoint, aud) = self.endpoint().await?;
        let assertion = self.sign_assertion(aud)?;
        let request = TokenRequest::grant("client_credentials")
            .param("scope", self.scope.as_str())
            .param("client_assertion_type", CLIENT_ASSERTION_TYPE)
            .secret_param("client_assertion", &assertion);
        endpoint.request_token(ctx, request).await
    }
}

impl SmartSourceBuilder {
    /// The token URL. Without it, [`SmartSourceBuilder::fhir_base`] is required and
    /// the token URL is discovered.
    pub fn token_url(mut self, url: impl Into<String>) -> Self {
        self.token_url = Some(url.into());
        self
    }

    /// The FHIR base: the token URL is discovered from its
    /// `.well-known/smart-configuration` at the first token request, unless given.
    pub fn fhir_base(mut self, url: impl Into<String>) -> Self {
        self.fhir_base = Some(url.into());
        self
    }

    /// Adds scopes (`system/Patient.rs`, …). At least one is required.
    pub fn scopes<I, T>(mut self, scopes: I) -> Self
    where
        I: IntoIterator<Item = T>,
        T: Into<String>,
    {
        self.scopes.extend(scopes.into_iter().map(Into::into));
        self
    }

    /// Adds the `jku` header: the URL of the client's JWKS, for servers that fetch it.
    pub fn jku(mut self, url: impl Into<String>) -> Self {
        self.jku = Some(url.into());
        self
    }

    /// Lifetime of each assertion (default [`DEFAULT_ASSERTION_LIFETIME`], at most
    /// [`MAX_ASSERTION_LIFETIME`]).
    pub fn assertion_lifetime(mut self, lifetime: Duration) -> Self {
        self.assertion_lifetime = lifetime;
        self
    }

    /// Checks the configuration (including the key: it must parse, match the
    /// algorithm and sign) and builds the source.
    pub fn build(self) -> Result<SmartSource> {
        if self.client_id.trim().is_empty() {
            return Err(Error::configuration("the SMART client id is empty"));
        }
        if self.key_id.trim().is_empty() {
            return Err(Error::configuration(
                "the SMART key id (`kid`) is empty; it names the key in the client's registered JWKS",
            ));
        }
        let mut scopes = self.scopes;
        scopes.retain(|s| !s.trim().is_empty());
        scopes.sort();
        scopes.dedup();
        if scopes.is_empty() {
            return Err(Error::configuration(
                "SMART Backend Services requires a scope (for example `system/Patient.rs`)",
            ));
        }
        if self.assertion_lifetime.is_zero() || self.assertion_lifetime > MAX_ASSERTION_LIFETIME {
            return Err(Error::configuration(
                "the assertion lifetime must be above zero and at most 5 minutes (SMART Backend Services)",
            ));
        }
        if let Some(jku) = &self.jku {
            check_url(jku, false)?;
        }
        let signing_key = SigningKey(load_key(&self.private_key, self.alg)?);
        let (target, key_url) = match (self.token_url, self.fhir_base) {
            (Some(url), _) => {
                let endpoint = TokenEndpoint::new(&url, self.endpoint)?;
                let key_url = endpoint.url().as_str().to_owned();
                (Target::Fixed(Box::new(endpoint), url), key_url)
            }
            (None, Some(base)) => {
                // Checked now, so a bad base fails at build rather than at the first request.
                let well_known = well_known_url(&base, self.endpoint.allow_insecure_http)?;
                let target = Target::Discover(Box::new(Discovery {
                    fhir_base: base,
                    config: self.endpoint,
                    endpoint: OnceCell::new(),
                }));
                (target, well_known.as_str().to_owned())
            }
            (None, None) => {
                return Err(Error::configuration(
                    "SMART Backend Services needs the token URL, or the FHIR base to discover it from",
                ));
            }
        };
        let key = CacheKey::builder(PROVIDER, key_url, &self.client_id)
            .scopes(scopes.iter().cloned())
            .param("alg", self.alg.as_str())
            .param("kid", &self.key_id)
            .build();
        let source = SmartSource {
            client_id: self.client_id,
            key_id: self.key_id,
            jku: self.jku,
            alg: self.alg,
            signing_key,
            scope: scopes.join(" "),
            assertion_lifetime: self.assertion_lifetime,
            target,
            key,
        };
        // A key that parses can still fail to sign (a truncated RSA key, say): find out now.
        source.sign_assertion("https://check.invalid/token")?;
        Ok(source)
    }
}

/// Parses a PEM private key for `alg`: PKCS#8 for both, PKCS#1 for RSA, SEC1 for EC.
fn load_key(pem: &PrivateKeyPem, alg: SigningAlgorithm) -> Result<EncodingKey> {
    let text = pem.expose_secret();
    let (label, der) = pem_block(text)?;
    let wrong = |what: &str| {
        Error::configuration(format!(
            "the private key is {what}, which cannot sign {alg} assertions \
             ({} needs {})",
            alg,
            match alg {
                SigningAlgorithm::Rs384 => "an RSA key",
                SigningAlgorithm::Es384 => "an EC key on P-384",
            }
        ))
    };
    let bad = || Error::configuration(format!("the private key is not a valid {alg} key in PEM form"));
    match (alg, label.as_str()) {
        (SigningAlgorithm::Rs384, "RSA PRIVATE KEY" | "PRIVATE KEY") => {
            EncodingKey::from_rsa_pem(text.as_bytes()).map_err(|_| bad())
        }
        (SigningAlgorithm::Es384, "PRIVATE KEY") => {
            EncodingKey::from_ec_pem(text.as_bytes()).map_err(|_| bad())
        }
        (SigningAlgorithm::Es384, "EC PRIVATE KEY") => {
            // jsonwebtoken reads EC keys as PKCS#8 only: wrap the SEC1 key in a
            // PKCS#8 PrivateKeyInfo for P-384 (RFC 5915 / RFC 5208).
            Ok(EncodingKey::from_ec_der(&sec1_to_pkcs8_p384(&der)))
        }
        (SigningAlgorithm::Rs384, "EC PRIVATE KEY") => Err(wrong("an EC key")),
        (SigningAlgorithm::Es384, "RSA PRIVATE KEY") => Err(wrong("an RSA key")),
        (_, "ENCRYPTED PRIVATE KEY") => Err(Error::configuration(
            "the private key is encrypted; give it unencrypted (PKCS#8, SEC1 or PKCS#1)",
        )),
        _ => Err(Error::configuration(
            "the private key PEM is not a private key (expected PRIVATE KEY, EC PRIVATE KEY or RSA PRIVATE KEY)",
        )),
    }
}

/// The label and DER of the first PEM block. Never echoes the text.
fn pem_block(text: &str) -> Result<(String, Zeroizing<Vec<u8>>)> {
    let not_pem = || Error::configuration("the private key is not PEM (no -----BEGIN … KEY----- block)");
    let start = text.find("-----BEGIN ").ok_or_else(not_pem)?;
    let rest = &text[start + "-----BEGIN ".len()..];
    let label_end = rest.find("-----").ok_or_else(not_pem)?;
    let label = rest[..label_end].trim().to_owned();
    let body_and_end = &rest[label_end + 5..];
    let end_marker = format!("-----END {label}-----");
    let body_end = body_and_end.find(&end_marker).ok_or_else(not_pem)?;
    let b64: Zeroizing<String> =
        Zeroizing::new(body_and_end[..body_end].chars().filter(|c| !c.is_whitespace()).collect());
    let der =
        Zeroizing::new(STANDARD.decode(b64.as_bytes()).map_err(|_| {
            Error::configuration("the private key PEM is damaged (its base64 does not decode)")
        })?);
    Ok((label, der))
}

/// DER length octets.
fn der_len(len: usize, out: &mut Vec<u8>) {
    if len < 0x80 {
        out.push(len as u8);
    } else if len <= 0xff {
        out.extend([0x81, len as u8]);
    } else {
        out.extend([0x82, (len >> 8) as u8, len as u8]);
    }
}

/// PrivateKeyInfo { version 0, AlgorithmIdentifier { id-ecPublicKey, secp384r1 }, OCTET STRING sec1 }.
fn sec1_to_pkcs8_p384(sec1: &[u8]) -> Zeroizing<Vec<u8>> {
    // SEQUENCE { OID 1.2.840.10045.2.1, OID 1.3.132.0.34 }
    const ALG_ID: [u8; 18] = [
        0x30, 0x10, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x05, 0x2b, 0x81, 0x04, 0x00,
        0x22,
    ];
    let mut inner = Zeroizing::new(vec![0x02, 0x01, 0x00]);
    inner.extend_from_slice(&ALG_ID);
    inner.push(0x04);
    der_len(sec1.len(), &mut inner);
    inner.extend_from_slice(sec1);
    let mut out = Zeroizing::new(vec![0x30]);
    der_len(inner.len(), &mut out);
    out.extend_from_slice(&inner);
    out
}

impl EndpointOptions for SmartSourceBuilder {
    fn endpoint_config(&mut self) -> &mut EndpointConfig {
        &mut self.endpoint
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn discovery_checks_method_and_alg() {
        let doc = br#"{"token_endpoint":"https://idp/token",
            "token_endpoint_auth_methods_supported":["private_key_jwt"],
            "token_endpoint_auth_signing_alg_values_supported":["ES384"]}"#;
        let Ok(c) = SmartConfiguration::from_json(doc) else { panic!("valid document refused") };
        assert!(c.check(SigningAlgorithm::Es384).is_ok());
        let e = c.check(SigningAlgorithm::Rs384).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(e.contains("RS384") && e.contains("ES384"), "{e}");
    }

    #[test]
    fn well_known_joins_with_or_without_slash() {
        for base in ["https://fhir.example/r4", "https://fhir.example/r4/"] {
            let url = well_known_url(base, false).map(|u| u.to_string()).ok();
            assert_eq!(url.as_deref(), Some("https://fhir.example/r4/.well-known/smart-configuration"));
        }
    }
}
