//! The HTTP side of a token request, shared by every credential source: a client
//! that never follows redirects, a timeout of its own, a cap on the response body,
//! no plain `http://` to anything but loopback, and parsing of both the success
//! (RFC 6749 §5.1) and error (§5.2) responses into typed values.

use std::fmt;
use std::net::IpAddr;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use reqwest::header::{ACCEPT, CACHE_CONTROL, CONTENT_TYPE, HeaderMap, LOCATION, RETRY_AFTER};
use reqwest::{Certificate, Identity, Response, StatusCode};
use serde_json::Value;
use url::Url;
use zeroize::Zeroizing;

use crate::dpop::{self, Dpop};
use crate::error::{Error, OAuthError, OAuthErrorCode, ResponseProblem, Result};
use crate::request::TokenRequest;
use crate::secret::scrub;
use crate::source::{CacheKey, FetchContext};
use crate::token::{ParseOptions, Token, parse_token_response};

/// Default timeout of a token request.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// Default cap on a token response body.
pub const DEFAULT_MAX_BODY: usize = 1024 * 1024;

/// Transport settings for token requests.
#[derive(Clone)]
#[non_exhaustive]
pub struct EndpointConfig {
    /// Timeout of the whole request (default 10 s).
    pub timeout: Duration,
    /// Cap on the response body (default 1 MiB).
    pub max_body: usize,
    /// Allow `http://` to hosts other than loopback (default off: the request
    /// carries the client secret).
    pub allow_insecure_http: bool,
    /// Extra trusted root certificates, for identity providers with a private CA
    /// (trusted besides the built-in webpki roots; see [`crate::tls`]).
    pub root_certificates: Vec<Certificate>,
    /// A client certificate and key, for mutual TLS.
    pub identity: Option<Identity>,
    /// How responses are parsed.
    pub parse: ParseOptions,
    /// DPoP: a proof on every token request, tokens bound to its key (see
    /// [`crate::dpop`]). Off by default.
    pub dpop: Option<Dpop>,
}

impl EndpointConfig {
    /// `key` as the source's tokens are cached: bound to the DPoP key's
    /// thumbprint when DPoP is on, so no token bound to one key is shared with
    /// a client holding another key, or none. Every source builds its key with it.
    pub fn bind_cache_key(&self, key: CacheKey) -> CacheKey {
        match &self.dpop {
            Some(dpop) => key.bound_to(dpop.thumbprint()),
            None => key,
        }
    }
}

impl Default for EndpointConfig {
    fn default() -> Self {
        Self {
            timeout: DEFAULT_TIMEOUT,
            max_body: DEFAULT_MAX_BODY,
            allow_insecure_http: false,
            root_certificates: Vec::new(),
            identity: None,
            parse: ParseOptions::default(),
            dpop: None,
        }
    }
}

impl fmt::Debug for EndpointConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EndpointConfig")
            .field("timeout", &self.timeout)
            .field("max_body", &self.max_body)
            .field("allow_insecure_http", &self.allow_insecure_http)
            .field("root_certificates", &self.root_certificates.len())
            .field("identity", &self.identity.as_ref().map(|_| "[redacted]"))
            .field("parse", &self.parse)
            .field("dpop", &self.dpop)
            .finish()
    }
}

/// Transport settings that every credential source's builder offers. A builder
/// implements [`EndpointOptions::endpoint_config`] and gets the setters, so each
/// vendor exposes them alike (bring the trait into scope to call them).
pub trait EndpointOptions: Sized {
    /// The builder's transport settings.
    fn endpoint_config(&mut self) -> &mut EndpointConfig;

    /// Timeout of each token request (default 10 s).
    fn timeout(mut self, timeout: Duration) -> Self {
        self.endpoint_config().timeout = timeout;
        self
    }

    /// Cap on the token response body (default 1 MiB).
    fn max_body(mut self, bytes: usize) -> Self {
        self.endpoint_config().max_body = bytes;
        self
    }

    /// Allows `http://` to non-loopback hosts. Only for closed test networks.
    fn allow_insecure_http(mut self, allow: bool) -> Self {
        self.endpoint_config().allow_insecure_http = allow;
        self
    }

    /// Trusts an extra root certificate (an identity provider behind a private CA).
    fn add_root_certificate(mut self, cert: Certificate) -> Self {
        self.endpoint_config().root_certificates.push(cert);
        self
    }

    /// Presents a client certificate (mutual TLS).
    fn identity(mut self, identity: Identity) -> Self {
        self.endpoint_config().identity = Some(identity);
        self
    }

    /// Binds tokens to `dpop`'s key (RFC 9449): a proof on every token request,
    /// `token_type: DPoP` required, and API requests proving the key (see
    /// [`crate::dpop`]).
    fn dpop(mut self, dpop: Dpop) -> Self {
        self.endpoint_config().dpop = Some(dpop);
        self
    }
}

/// A token endpoint: URL plus a hardened HTTP client.
#[derive(Clone)]
pub struct TokenEndpoint {
    url: Url,
    http: reqwest::Client,
    config: EndpointConfig,
    /// The configured parsing, also reading `token_type: DPoP`: whether such a
    /// token is welcome is decided after, with a message of its own.
    parse: ParseOptions,
}

impl fmt::Debug for TokenEndpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenEndpoint")
            .field("url", &self.url.as_str())
            .field("config", &self.config)
            .finish()
    }
}

impl TokenEndpoint {
    /// Checks `url` and builds the HTTP client.
    pub fn new(url: &str, config: EndpointConfig) -> Result<Self> {
        let url = check_url(url, config.allow_insecure_http)?;
        if config.timeout.is_zero() {
            return Err(Error::configuration("the token request timeout must be above zero"));
        }
        let http = crate::tls::client_builder(&config.root_certificates, config.identity.as_ref())?
            // A redirect could carry the client secret to another host.
            .redirect(reqwest::redirect::Policy::none())
            .timeout(config.timeout)
            .connect_timeout(config.timeout)
            .build()
            .map_err(|e| Error::configuration(format!("cannot build the HTTP client: {e}")))?;
        let parse = config.parse.clone().accept_token_type(dpop::SCHEME);
        Ok(Self { url, http, config, parse })
    }

    /// The token URL.
    pub fn url(&self) -> &Url {
        &self.url
    }

    /// The hardened HTTP client (no redirects, the endpoint's timeout and trust),
    /// for a source's other requests to the same server (revocation, sign-out).
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// The settings.
    pub fn config(&self) -> &EndpointConfig {
        &self.config
    }

    /// Sends a token request and parses the answer into a [`Token`].
    ///
    /// Whatever the request marked secret that a misbehaving server echoes into its
    /// error is redacted (see [`TokenRequest`]). With DPoP, a `use_dpop_nonce`
    /// answer is followed by one retry with the server's nonce and a new proof;
    /// a request that must change for it (a new client assertion) is sent with
    /// [`TokenEndpoint::request_token_with`].
    pub async fn request_token(&self, ctx: &FetchContext, request: TokenRequest) -> Result<Token> {
        match self.attempt(ctx, &request).await {
            Err(e) if self.is_nonce_challenge(&e) => self.attempt(ctx, &request).await,
            other => other,
        }
    }

    /// As [`TokenEndpoint::request_token`], building the request with `build`,
    /// and again for a DPoP nonce retry: a `private_key_jwt` client assertion
    /// cannot be sent twice (its `jti` is spent), so the retry carries a new one.
    pub async fn request_token_with(
        &self,
        ctx: &FetchContext,
        build: impl Fn() -> Result<TokenRequest> + Send + Sync,
    ) -> Result<Token> {
        let first = build()?;
        match self.attempt(ctx, &first).await {
            Err(e) if self.is_nonce_challenge(&e) => {
                drop(first);
                self.attempt(ctx, &build()?).await
            }
            other => other,
        }
    }

    /// Whether `error` asks for a DPoP nonce that we now hold (a server asking
    /// without giving one would only be asked again in vain).
    fn is_nonce_challenge(&self, error: &Error) -> bool {
        let Some(dpop) = &self.config.dpop else { return false };
        let asked = error.oauth_error().is_some_and(|o| o.code.as_str() == dpop::USE_DPOP_NONCE);
        if asked {
            tracing::debug!("the token endpoint asks for a DPoP nonce; retrying once with it");
        }
        asked && dpop.nonce(&self.url).is_some()
    }

    async fn attempt(&self, ctx: &FetchContext, request: &TokenRequest) -> Result<Token> {
        let response = self.dispatch(&self.url, request).await?;
        let status = response.status();
        if let Some(dpop) = &self.config.dpop {
            dpop.remember_nonce(&self.url, response.headers());
        }
        if status.is_redirection() {
            return Err(redirect_error("token request", status, response.headers(), &self.url));
        }
        let received_at = ctx.now();
        let content_type = content_type(response.headers());
        let retry_after = retry_after(response.headers());
        let body = read_capped(response, self.config.max_body, "token request").await?;
        let secrets = request.secrets();
        if !status.is_success() {
            return Err(error_response(status, content_type, retry_after, &body, &secrets));
        }
        match parse_token_response(&body, received_at, &self.parse) {
            Ok(token) => self.check_binding(token, status),
            // Some servers send their RFC 6749 error with a 200: say what it was.
            Err(ResponseProblem::MissingAccessToken) if has_error_code(&body) => {
                Err(error_response(status, content_type, retry_after, &body, &secrets))
            }
            Err(ResponseProblem::NotJson { len, .. }) => Err(Error::invalid_response(
                "token request",
                status.as_u16(),
                ResponseProblem::NotJson { content_type, len },
            )),
            Err(problem) => Err(Error::invalid_response("token request", status.as_u16(), problem)),
        }
    }

    /// A DPoP-bound token only with DPoP on; with it on, a bearer token only if allowed.
    fn check_binding(&self, token: Token, status: StatusCode) -> Result<Token> {
        let problem = match (&self.config.dpop, token.is_dpop()) {
            (None, true) => ResponseProblem::UnexpectedDpopToken,
            (Some(dpop), false) if !dpop.allows_bearer() => {
                ResponseProblem::UnboundToken { token_type: token.token_type().to_owned() }
            }
            _ => return Ok(token),
        };
        Err(Error::invalid_response("token request", status.as_u16(), problem))
    }

    /// Sends a request to another URL of the same server (revocation, sign-out,
    /// session close) with the same hardened client; returns the status, having read
    /// and discarded the body. An error status is an error, scrubbed as for
    /// [`TokenEndpoint::request_token`].
    pub async fn send(&self, url: &Url, request: TokenRequest) -> Result<StatusCode> {
        let response = self.dispatch(url, &request).await?;
        let status = response.status();
        if status.is_redirection() {
            return Err(redirect_error("token endpoint", status, response.headers(), url));
        }
        let content_type = content_type(response.headers());
        let retry_after = retry_after(response.headers());
        let body = read_capped(response, self.config.max_body, "token endpoint").await?;
        if status.is_success() {
            Ok(status)
        } else {
            Err(error_response(status, content_type, retry_after, &body, &request.secrets()))
        }
    }

    /// Checks a second URL (revocation, sign-out) with the same rules as the token URL.
    pub fn check_url(&self, url: &str) -> Result<Url> {
        check_url(url, self.config.allow_insecure_http)
    }

    async fn dispatch(&self, url: &Url, request: &TokenRequest) -> Result<Response> {
        let mut builder = self
            .http
            .request(request.method().clone(), url.clone())
            .header(ACCEPT, "application/json")
            .header(CACHE_CONTROL, "no-store")
            .headers(request.headers().clone());
        // A new proof for every request, retries included (RFC 9449 §4.3, §11.1).
        if let Some(dpop) = &self.config.dpop
            && url == &self.url
        {
            builder = builder.header(dpop::DPOP, dpop.proof(request.method(), url, None)?);
        }
        if let Some((content_type, bytes)) = request.body()? {
            // Handed to reqwest as an owner that wipes the bytes when the body is dropped.
            builder =
                builder.header(CONTENT_TYPE, content_type).body(Bytes::from_owner(ZeroizingBody(bytes)));
        }
        builder.send().await.map_err(|e| Error::transport("token request", e))
    }
}

struct ZeroizingBody(Zeroizing<Vec<u8>>);

impl AsRef<[u8]> for ZeroizingBody {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

/// Accepts `https://`, and `http://` only to loopback unless `allow_insecure_http`.
pub fn check_url(url: &str, allow_insecure_http: bool) -> Result<Url> {
    // The text is not echoed: a mistyped URL can hold a password.
    let parsed = Url::parse(url).map_err(|e| Error::configuration(format!("not a valid URL: {e}")))?;
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(Error::configuration(
            "the URL contains credentials (user:password@); pass them as the client id and secret",
        ));
    }
    check_scheme(&parsed, allow_insecure_http)?;
    Ok(parsed)
}

/// https, or plain http only to loopback unless allowed: the rule for every URL a
/// credential or token is sent to (token endpoints, FHIR bases, each API request).
pub(crate) fn check_scheme(url: &Url, allow_insecure_http: bool) -> Result<()> {
    check_scheme_of(url.scheme(), url.host_str(), allow_insecure_http)
}

/// [`check_scheme`] on a scheme and host already split out (an `http::Uri`'s).
pub(crate) fn check_scheme_of(scheme: &str, host: Option<&str>, allow_insecure_http: bool) -> Result<()> {
    match scheme {
        "https" => Ok(()),
        "http" if allow_insecure_http || host.is_some_and(is_loopback) => Ok(()),
        "http" => Err(Error::configuration(format!(
            "refusing plain http:// to non-loopback host `{}`: credentials would travel unencrypted \
             (use https, or allow insecure http explicitly)",
            host.unwrap_or_default()
        ))),
        other => Err(Error::configuration(format!("unsupported URL scheme `{other}` (use https)"))),
    }
}

/// `localhost`, or a loopback IP address (IPv6 in brackets or not).
fn is_loopback(host: &str) -> bool {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    bare.eq_ignore_ascii_case("localhost") || bare.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// The `Content-Type` of a response, without parameters.
pub fn content_type(headers: &HeaderMap) -> Option<String> {
    headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.split(';').next().unwrap_or_default().trim().to_owned())
}

/// `Retry-After` as a delay: seconds, or an HTTP date.
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(SystemTime::now()).unwrap_or_default())
}

/// Reads a body, failing once it exceeds `cap` bytes. The buffer is wiped on drop.
pub async fn read_capped(mut response: Response, cap: usize, what: &str) -> Result<Zeroizing<Vec<u8>>> {
    let status = response.status().as_u16();
    let too_large = || Error::invalid_response(what, status, ResponseProblem::TooLarge { limit: cap });
    let declared = response.content_length().unwrap_or(0);
    if declared > cap as u64 {
        return Err(too_large());
    }
    let mut body = Zeroizing::new(Vec::with_capacity(declared as usize));
    while let Some(chunk) = response.chunk().await.map_err(|e| Error::transport(what, e))? {
        if body.len() + chunk.len() > cap {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// A redirect as an error. It is not followed (the request carries the client
/// secret); the error names only the origin `Location` pointed to.
fn redirect_error(what: &str, status: StatusCode, headers: &HeaderMap, base: &Url) -> Error {
    let location = headers
        .get(LOCATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|l| base.join(l).ok())
        .map(|u| u.origin())
        .filter(url::Origin::is_tuple)
        .map(|o| o.ascii_serialization());
    Error::invalid_response(what, status.as_u16(), ResponseProblem::Redirect { location })
}

/// Whether a body is a JSON object with a string `error` (an RFC 6749 error).
fn has_error_code(body: &[u8]) -> bool {
    matches!(
        serde_json::from_slice::<Value>(body),
        Ok(Value::Object(fields)) if matches!(fields.get("error"), Some(Value::String(_)))
    )
}

/// Turns an error status into the most specific error its body allows: an RFC 6749
/// error if the body has one, else a description of what came back (never the body).
pub(crate) fn error_response(
    status: StatusCode,
    content_type: Option<String>,
    retry_after: Option<Duration>,
    body: &[u8],
    secrets: &[&str],
) -> Error {
    if let Ok(Value::Object(fields)) = serde_json::from_slice::<Value>(body)
        && let Some(Value::String(code)) = fields.get("error")
    {
        let text = |name: &str| match fields.get(name) {
            Some(Value::String(s)) => Some(scrub(s, secrets)),
            _ => None,
        };
        // The code too: a server that puts what it was sent into `error` exists.
        let mut error = OAuthError::new(OAuthErrorCode::parse(&scrub(code, secrets)), status.as_u16());
        error.description = text("error_description");
        error.uri = text("error_uri");
        error.retry_after = retry_after;
        return Error::oauth(error);
    }
    if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS {
        return Error::unavailable("token request", status.as_u16(), retry_after);
    }
    let problem = if body.is_empty() {
        ResponseProblem::Empty
    } else {
        ResponseProblem::UnexpectedStatus { content_type, len: body.len() }
    };
    Error::invalid_response("token request", status.as_u16(), problem)
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    #[test]
    fn url_rules() {
        assert!(check_url("https://idp.example/token", false).is_ok());
        assert!(check_url("http://127.0.0.1:8080/token", false).is_ok());
        assert!(check_url("http://127.9.9.9/token", false).is_ok());
        assert!(check_url("http://[::1]:8080/token", false).is_ok());
        assert!(check_url("http://localhost/token", false).is_ok());
        let e = check_url("http://idp.example/token", false).err();
        assert!(e.as_ref().is_some_and(|e| e.to_string().contains("refusing plain http://")), "{e:?}");
        assert!(check_url("http://idp.example/token", true).is_ok());
        assert!(check_url("ftp://idp.example/token", true).is_err());
        assert!(check_url("not a url", false).is_err());
        let e = check_url("https://user:hunter2@idp.example/token", false).err();
        assert!(e.is_some_and(|e| !e.to_string().contains("hunter2")));
        // A hostname that merely starts with a loopback address is not loopback.
        assert!(check_url("http://127.0.0.1.evil.example/token", false).is_err());
    }

    #[test]
    fn retry_after_forms() {
        let mut h = HeaderMap::new();
        h.insert(RETRY_AFTER, HeaderValue::from_static("7"));
        assert_eq!(retry_after(&h), Some(Duration::from_secs(7)));
        let later = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(120));
        h.insert(RETRY_AFTER, HeaderValue::from_str(&later).unwrap());
        assert!(retry_after(&h).is_some_and(|d| d > Duration::from_secs(100)));
        h.insert(RETRY_AFTER, HeaderValue::from_static("soon"));
        assert_eq!(retry_after(&h), None);
    }

    #[test]
    fn error_bodies() {
        let e = error_response(
            StatusCode::BAD_REQUEST,
            Some("application/json".into()),
            None,
            br#"{"error":"invalid_client","error_description":"secret hunter2-canary is wrong"}"#,
            &["hunter2-canary"],
        );
        let o = e.oauth_error().cloned();
        assert_eq!(o.as_ref().map(|o| o.code.clone()), Some(OAuthErrorCode::InvalidClient));
        assert_eq!(o.and_then(|o| o.description), Some("secret [redacted] is wrong".into()));
        assert!(!e.to_string().contains("hunter2"));

        let html = error_response(
            StatusCode::BAD_GATEWAY,
            Some("text/html".into()),
            Some(Duration::from_secs(3)),
            b"<html>oops</html>",
            &[],
        );
        assert_eq!(html.kind(), crate::ErrorKind::Unavailable);
        assert_eq!(html.status(), Some(502));
        assert!(html.is_retryable());
        assert_eq!(html.retry_after(), Some(Duration::from_secs(3)));

        let apim = error_response(
            StatusCode::UNAUTHORIZED,
            Some("application/json".into()),
            None,
            br#"{"statusCode":401,"message":"Access denied"}"#,
            &[],
        );
        assert_eq!(
            apim.response_problem(),
            Some(&ResponseProblem::UnexpectedStatus {
                content_type: Some("application/json".into()),
                len: 44
            })
        );
    }
}
