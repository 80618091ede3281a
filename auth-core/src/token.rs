//! The token an identity provider issues, how its response is parsed, and when it
//! expires.
//!
//! Parsing follows RFC 6749 §5.1 but forgives what real servers do: `null` for
//! optional fields (Graphnet, Aidbox), `expires_in` as a string, `token_type` in
//! any case, unknown fields (kept, not dropped). Expiry is the earliest of what the
//! response says (`expires_in`) and what the tokens say (JWT `exp`), because servers
//! get `expires_in` wrong (SanteDB 2.x sends milliseconds).

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use reqwest::header::HeaderValue;
use serde_json::{Map, Value};
use zeroize::Zeroizing;

use crate::clock::{later, secs};
use crate::error::ResponseProblem;
use crate::secret::{AccessToken, IdToken, RefreshToken};

/// What `expires_in` counts in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ExpiresInUnit {
    /// Seconds, as RFC 6749 says.
    #[default]
    Seconds,
    /// Milliseconds, as SanteDB 2.x sends.
    Milliseconds,
}

/// No positive lifetime is taken as shorter than this: a server that says
/// "valid for 1 ms" gets its token used once, not a fetch per request.
pub const SHORTEST_LIFETIME: Duration = Duration::from_secs(1);

/// No token is trusted for longer than this, whatever the policy says.
pub const MAX_LIFETIME: Duration = Duration::from_secs(10 * 365 * 24 * 3600);

/// How a token's expiry is worked out from a response.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ExpiryPolicy {
    /// Unit of `expires_in`.
    pub expires_in_unit: ExpiresInUnit,
    /// Lifetime assumed when neither `expires_in` nor a JWT `exp` says (default 5 minutes).
    pub default_lifetime: Duration,
    /// The lifetime taken, with a warning, when a server says zero or less (a
    /// negative `expires_in`, an `exp` in the past), so a broken server cannot make us
    /// refetch in a loop (default 10 s). A positive lifetime is trusted as stated,
    /// however short (down to [`SHORTEST_LIFETIME`]): using a token after the server
    /// said it expires only buys a rejection.
    pub min_lifetime: Duration,
    /// Longer lifetimes are cut to this, with a warning (default 24 hours).
    pub max_lifetime: Duration,
    /// Read `exp` from the access token and id token when they are JWTs (default on).
    pub use_jwt_exp: bool,
    /// When `expires_in` is present, use it alone and read JWT `exp` only when it is
    /// absent (default off: the earliest of both). For servers whose `expires_in` is
    /// reliable but whose clock may differ from ours (Aidbox).
    pub prefer_expires_in: bool,
}

impl Default for ExpiryPolicy {
    fn default() -> Self {
        Self {
            expires_in_unit: ExpiresInUnit::Seconds,
            default_lifetime: Duration::from_secs(300),
            min_lifetime: Duration::from_secs(10),
            max_lifetime: Duration::from_secs(24 * 3600),
            use_jwt_exp: true,
            prefer_expires_in: false,
        }
    }
}

impl ExpiryPolicy {
    /// Sets the unit of `expires_in`.
    pub fn with_unit(mut self, unit: ExpiresInUnit) -> Self {
        self.expires_in_unit = unit;
        self
    }

    /// Sets the lifetime assumed when the response does not say.
    pub fn with_default_lifetime(mut self, lifetime: Duration) -> Self {
        self.default_lifetime = lifetime;
        self
    }

    /// Sets the bounds lifetimes are clamped into (the upper bound is at most 10 years).
    pub fn with_bounds(mut self, min: Duration, max: Duration) -> Self {
        self.min_lifetime = min.min(MAX_LIFETIME);
        self.max_lifetime = max.clamp(self.min_lifetime, MAX_LIFETIME);
        self
    }

    /// Uses `expires_in` alone when present (see [`ExpiryPolicy::prefer_expires_in`]).
    pub fn with_expires_in_first(mut self, on: bool) -> Self {
        self.prefer_expires_in = on;
        self
    }

    /// Turns reading JWT `exp` on or off.
    pub fn with_jwt_exp(mut self, on: bool) -> Self {
        self.use_jwt_exp = on;
        self
    }
}

/// Options for parsing a token response.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ParseOptions {
    /// How expiry is resolved.
    pub expiry: ExpiryPolicy,
    /// `token_type` values accepted besides `Bearer` (compared ignoring ASCII case),
    /// e.g. `urn:ietf:params:oauth:token-type:jwt` for SanteDB.
    pub extra_token_types: Vec<String>,
}

impl ParseOptions {
    /// Options with the given expiry policy.
    pub fn with_expiry(mut self, expiry: ExpiryPolicy) -> Self {
        self.expiry = expiry;
        self
    }

    /// Also accepts `token_type` values equal to `token_type`.
    pub fn accept_token_type(mut self, token_type: impl Into<String>) -> Self {
        self.extra_token_types.push(token_type.into());
        self
    }
}

/// Which piece of information decided a token's expiry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExpirySource {
    /// `expires_in` from the response.
    ExpiresIn,
    /// The `exp` claim of the access token.
    AccessTokenExp,
    /// The `exp` claim of the id token.
    IdTokenExp,
    /// Nothing said; the default lifetime was used.
    Default,
    /// Set directly by whoever built the token.
    Explicit,
}

/// An access token with everything known about it.
///
/// `Debug` shows the metadata but never a token value.
pub struct Token {
    access_token: AccessToken,
    bearer: HeaderValue,
    token_type: String,
    issued_at: SystemTime,
    expires_at: SystemTime,
    expiry_source: ExpirySource,
    scope: Option<String>,
    refresh_token: Option<RefreshToken>,
    id_token: Option<IdToken>,
    extra: Map<String, Value>,
    stated_expires_in: Option<f64>,
}

impl Token {
    /// A bearer token issued at `issued_at` and valid until `expires_at`.
    ///
    /// Fails with [`ErrorKind::InvalidResponse`](crate::ErrorKind) (the
    /// [`ResponseProblem`] says what) if the value cannot be sent in an HTTP header
    /// (control characters, non-ASCII) or is empty: a token comes from a response.
    pub fn new(
        access_token: AccessToken,
        issued_at: SystemTime,
        expires_at: SystemTime,
    ) -> crate::Result<Self> {
        let bearer = bearer_header(&access_token)
            .map_err(|problem| crate::Error::invalid_response("token", 200, problem))?;
        Ok(Self {
            access_token,
            bearer,
            token_type: "Bearer".to_owned(),
            issued_at,
            expires_at: expires_at.clamp(issued_at, later(issued_at, MAX_LIFETIME)),
            expiry_source: ExpirySource::Explicit,
            scope: None,
            refresh_token: None,
            id_token: None,
            extra: Map::new(),
            stated_expires_in: None,
        })
    }

    /// Sets the granted scope.
    pub fn with_scope(mut self, scope: impl Into<String>) -> Self {
        self.scope = Some(scope.into());
        self
    }

    /// Sets the refresh token.
    pub fn with_refresh_token(mut self, refresh_token: RefreshToken) -> Self {
        self.refresh_token = Some(refresh_token);
        self
    }

    /// Sets the id token.
    pub fn with_id_token(mut self, id_token: IdToken) -> Self {
        self.id_token = Some(id_token);
        self
    }

    /// Sets the token type as the server named it. A `DPoP` token is sent with
    /// the `DPoP` scheme (see [`Token::authorization_header`]).
    pub fn with_token_type(mut self, token_type: impl Into<String>) -> Self {
        self.token_type = token_type.into();
        // The value was a valid header already; only the scheme changes.
        if let Ok(header) = authorization_header(&self.access_token, scheme_of(&self.token_type)) {
            self.bearer = header;
        }
        self
    }

    /// Adds a vendor field from the response.
    pub fn with_extra(mut self, name: impl Into<String>, value: Value) -> Self {
        self.extra.insert(name.into(), value);
        self
    }

    /// The access token.
    pub fn access_token(&self) -> &AccessToken {
        &self.access_token
    }

    /// The `Authorization` value: `Bearer <token>`, or `DPoP <token>` for a
    /// DPoP-bound token. Marked sensitive so HTTP libraries do not log it, and
    /// wiped from memory when the last copy is dropped.
    pub fn authorization_header(&self) -> HeaderValue {
        self.bearer.clone()
    }

    /// [`Token::authorization_header`], by its name from before DPoP: `Bearer
    /// <token>` for every token but a DPoP-bound one.
    pub fn bearer_header(&self) -> HeaderValue {
        self.bearer.clone()
    }

    /// Whether the token is DPoP-bound (`token_type` `DPoP`, in any case): it
    /// is only good with a proof of its key (see [`crate::dpop`]).
    pub fn is_dpop(&self) -> bool {
        self.token_type.eq_ignore_ascii_case(crate::dpop::SCHEME)
    }

    /// A copy that shares no memory with this one, the header included.
    ///
    /// Cloning a header bumps a reference count; when many threads clone the same
    /// one, that count's cache line bounces between cores and costs more than the
    /// rest of the hot path together. The manager hands each thread its own copy.
    pub(crate) fn unshared(&self) -> Self {
        let mut bearer = copy_header(&self.bearer);
        bearer.set_sensitive(true);
        Self {
            access_token: self.access_token.clone(),
            bearer,
            token_type: self.token_type.clone(),
            issued_at: self.issued_at,
            expires_at: self.expires_at,
            expiry_source: self.expiry_source,
            scope: self.scope.clone(),
            refresh_token: self.refresh_token.clone(),
            id_token: self.id_token.clone(),
            extra: self.extra.clone(),
            stated_expires_in: self.stated_expires_in,
        }
    }

    /// `token_type` as the server sent it (`bearer`, `Bearer`, …).
    pub fn token_type(&self) -> &str {
        &self.token_type
    }

    /// When the response arrived.
    pub fn issued_at(&self) -> SystemTime {
        self.issued_at
    }

    /// When the token stops working.
    pub fn expires_at(&self) -> SystemTime {
        self.expires_at
    }

    /// What decided [`Token::expires_at`].
    pub fn expiry_source(&self) -> ExpirySource {
        self.expiry_source
    }

    /// From issue to expiry.
    pub fn lifetime(&self) -> Duration {
        self.expires_at.duration_since(self.issued_at).unwrap_or_default()
    }

    /// Time left at `now` (zero once expired).
    pub fn remaining(&self, now: SystemTime) -> Duration {
        self.expires_at.duration_since(now).unwrap_or_default()
    }

    /// Whether the token has expired at `now`.
    pub fn is_expired_at(&self, now: SystemTime) -> bool {
        now >= self.expires_at
    }

    /// The granted scope, if the server said.
    pub fn scope(&self) -> Option<&str> {
        self.scope.as_deref()
    }

    /// The refresh token, if one was issued.
    pub fn refresh_token(&self) -> Option<&RefreshToken> {
        self.refresh_token.as_ref()
    }

    /// The OpenID Connect id token, if one was issued.
    pub fn id_token(&self) -> Option<&IdToken> {
        self.id_token.as_ref()
    }

    /// Response fields this crate does not interpret (`consented_on`, `nonce`, …).
    pub fn extra(&self) -> &Map<String, Value> {
        &self.extra
    }

    /// `expires_in` as the response stated it: the number (or a string read as
    /// one) before any unit conversion or clamping; `None` when the response had
    /// none, or the token was not parsed from a response (built with
    /// [`Token::new`], or read back from a shared store).
    ///
    /// For diagnostics (what unit a server counts in, whether it issued a token
    /// already expired): the expiry to act on is [`Token::expires_at`].
    pub fn stated_expires_in(&self) -> Option<f64> {
        self.stated_expires_in
    }

    /// Whether `other` carries the same access token value.
    pub fn same_value(&self, other: &Token) -> bool {
        self.access_token == other.access_token
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = |t: SystemTime| t.duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        f.debug_struct("Token")
            .field("access_token", &self.access_token)
            .field("token_type", &self.token_type)
            .field("issued_at", &secs(self.issued_at))
            .field("expires_at", &secs(self.expires_at))
            .field("expiry_source", &self.expiry_source)
            .field("scope", &self.scope)
            .field("refresh_token", &self.refresh_token)
            .field("id_token", &self.id_token)
            // Values of vendor fields are not ours to judge: show names only.
            .field("extra", &self.extra.keys().collect::<Vec<_>>())
            .field("stated_expires_in", &self.stated_expires_in)
            .finish()
    }
}

fn bearer_header(token: &AccessToken) -> Result<HeaderValue, ResponseProblem> {
    authorization_header(token, "Bearer")
}

/// The scheme a token of `token_type` is sent with: `DPoP` for DPoP-bound
/// tokens (RFC 9449 §7.1), `Bearer` for every other.
fn scheme_of(token_type: &str) -> &'static str {
    if token_type.eq_ignore_ascii_case(crate::dpop::SCHEME) { crate::dpop::SCHEME } else { "Bearer" }
}

fn authorization_header(token: &AccessToken, scheme: &str) -> Result<HeaderValue, ResponseProblem> {
    if token.is_empty() {
        return Err(ResponseProblem::EmptyAccessToken);
    }
    let unsendable =
        || ResponseProblem::Other("access_token has characters that cannot be sent in an HTTP header".into());
    // Visible ASCII only (RFC 6750's b64token is narrower still): an HTTP header
    // would also take spaces and bytes above 0x7F, but a bearer with a space is a
    // different header, and non-ASCII is not a token any server issues knowingly.
    if !token.expose_secret().bytes().all(|b| b.is_ascii_graphic()) {
        return Err(unsendable());
    }
    let mut buf = Zeroizing::new(Vec::with_capacity(scheme.len() + 1 + token.expose_secret().len()));
    buf.extend_from_slice(scheme.as_bytes());
    buf.push(b' ');
    buf.extend_from_slice(token.expose_secret().as_bytes());
    // The header shares this zeroizing buffer instead of copying it, so the memory
    // is wiped when the last request holding the header is done with it.
    let mut value =
        HeaderValue::from_maybe_shared(Bytes::from_owner(ZeroOnDrop(buf))).map_err(|_| unsendable())?;
    value.set_sensitive(true);
    Ok(value)
}

/// A zeroizing copy of a header built by [`bearer_header`]: the bytes were a valid
/// header value already, so the conversion cannot fail; the fallback only keeps the
/// type honest.
fn copy_header(value: &HeaderValue) -> HeaderValue {
    let buf = Zeroizing::new(value.as_bytes().to_vec());
    HeaderValue::from_maybe_shared(Bytes::from_owner(ZeroOnDrop(buf))).unwrap_or_else(|_| value.clone())
}

struct ZeroOnDrop(Zeroizing<Vec<u8>>);

impl AsRef<[u8]> for ZeroOnDrop {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

/// Parses a successful token response body (RFC 6749 §5.1).
///
/// `received_at` is when the response arrived; `expires_in` counts from then.
pub fn parse_token_response(
    body: &[u8],
    received_at: SystemTime,
    options: &ParseOptions,
) -> Result<Token, ResponseProblem> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(ResponseProblem::Empty);
    }
    let json: Value = serde_json::from_slice(body)
        .map_err(|_| ResponseProblem::NotJson { content_type: None, len: body.len() })?;
    let Value::Object(mut fields) = json else {
        return Err(ResponseProblem::NotAnObject);
    };

    let access_token = match fields.remove("access_token") {
        None | Some(Value::Null) => return Err(ResponseProblem::MissingAccessToken),
        Some(Value::String(s)) if s.is_empty() => return Err(ResponseProblem::EmptyAccessToken),
        Some(Value::String(s)) => AccessToken::new(s),
        Some(_) => {
            return Err(ResponseProblem::WrongType { field: "access_token", expected: "a string" });
        }
    };
    let token_type = optional_string(&mut fields, "token_type")?.unwrap_or_else(|| "Bearer".into());
    let accepted = token_type.eq_ignore_ascii_case("bearer")
        || options.extra_token_types.iter().any(|t| t.eq_ignore_ascii_case(&token_type));
    if !accepted {
        return Err(ResponseProblem::UnsupportedTokenType { token_type });
    }
    let expires_in = match fields.remove("expires_in") {
        None | Some(Value::Null) => None,
        Some(v) => Some(
            number_of(&v).ok_or(ResponseProblem::WrongType { field: "expires_in", expected: "a number" })?,
        ),
    };
    let scope = optional_string(&mut fields, "scope")?;
    let refresh_token =
        optional_string(&mut fields, "refresh_token")?.filter(|s| !s.is_empty()).map(RefreshToken::new);
    let id_token = optional_string(&mut fields, "id_token")?.filter(|s| !s.is_empty()).map(IdToken::new);

    let (expires_at, expiry_source) =
        resolve_expiry(received_at, expires_in, &access_token, id_token.as_ref(), &options.expiry);
    let bearer = authorization_header(&access_token, scheme_of(&token_type))?;
    Ok(Token {
        access_token,
        bearer,
        token_type,
        issued_at: received_at,
        expires_at,
        expiry_source,
        scope,
        refresh_token,
        id_token,
        extra: fields,
        stated_expires_in: expires_in,
    })
}

fn optional_string(
    fields: &mut Map<String, Value>,
    field: &'static str,
) -> Result<Option<String>, ResponseProblem> {
    match fields.remove(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(ResponseProblem::WrongType { field, expected: "a string" }),
    }
}

fn number_of(v: &Value) -> Option<f64> {
    let n = match v {
        // A JSON number is always a real number, only perhaps beyond f64 (`1e400`:
        // serde_json's `arbitrary_precision` reads it, as text): it counts as the
        // largest f64 of its sign, so an absurd lifetime is cut like any other.
        Value::Number(n) => n.as_f64().or_else(|| {
            let wide = n.to_string().parse::<f64>().ok()?;
            wide.is_infinite().then(|| f64::MAX.copysign(wide))
        }),
        Value::String(s) => s.trim().parse::<f64>().ok(),
        _ => None,
    }?;
    n.is_finite().then_some(n)
}

/// The claims of a JWT, read without checking its signature, if `token` is one
/// (three dot-separated parts, a JOSE header and a JSON object of claims).
///
/// For scheduling refreshes and for display, never to trust the token: the one
/// decoder of the workspace, so every part reads a token alike.
pub fn jwt_claims(token: &str) -> Option<Map<String, Value>> {
    if token.bytes().filter(|b| *b == b'.').count() != 2 {
        return None;
    }
    Some(jsonwebtoken::dangerous::insecure_decode::<Map<String, Value>>(token).ok()?.claims)
}

/// The JOSE header of a JWT (`alg`, `kid`, `typ`, …), read without checking its
/// signature, if `token` is one (see [`jwt_claims`]).
pub fn jwt_header(token: &str) -> Option<Map<String, Value>> {
    if token.bytes().filter(|b| *b == b'.').count() != 2 {
        return None;
    }
    let header = jsonwebtoken::decode_header(token).ok()?;
    match serde_json::to_value(header).ok()? {
        Value::Object(fields) => Some(fields),
        _ => None,
    }
}

/// Seconds since the epoch in the `exp` claim of a JWT, if `token` is one (see
/// [`jwt_claims`]).
pub fn jwt_exp(token: &str) -> Option<f64> {
    jwt_claims(token)?.get("exp").and_then(number_of)
}

/// `exp` is seconds since the epoch (RFC 7519 §2); one past the year 5000 is a
/// server counting in milliseconds. The lifetime it gives is cut like any absurd
/// one, but the operator is told the likely cause, not just "clamped".
fn warn_if_milliseconds(exp: f64, source: ExpirySource) {
    const YEAR_5000: f64 = 95_617_584_000.0;
    if exp > YEAR_5000 {
        tracing::warn!(exp, source = ?source, "the JWT exp claim looks like milliseconds, not seconds");
    }
}

fn resolve_expiry(
    received_at: SystemTime,
    expires_in: Option<f64>,
    access_token: &AccessToken,
    id_token: Option<&IdToken>,
    policy: &ExpiryPolicy,
) -> (SystemTime, ExpirySource) {
    let mut candidates: Vec<(f64, ExpirySource)> = Vec::with_capacity(3);
    if let Some(n) = expires_in {
        let secs = match policy.expires_in_unit {
            ExpiresInUnit::Seconds => n,
            ExpiresInUnit::Milliseconds => n / 1000.0,
        };
        candidates.push((secs, ExpirySource::ExpiresIn));
    }
    if policy.use_jwt_exp && !(policy.prefer_expires_in && expires_in.is_some()) {
        let since_epoch = received_at.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs_f64();
        if let Some(exp) = jwt_exp(access_token.expose_secret()) {
            warn_if_milliseconds(exp, ExpirySource::AccessTokenExp);
            candidates.push((exp - since_epoch, ExpirySource::AccessTokenExp));
        }
        if let Some(exp) = id_token.and_then(|t| jwt_exp(t.expose_secret())) {
            warn_if_milliseconds(exp, ExpirySource::IdTokenExp);
            candidates.push((exp - since_epoch, ExpirySource::IdTokenExp));
        }
    }
    let (lifetime, source) = candidates
        .into_iter()
        .min_by(|a, b| a.0.total_cmp(&b.0))
        .unwrap_or((policy.default_lifetime.as_secs_f64(), ExpirySource::Default));

    // The policy's fields are public: re-establish min <= max <= MAX_LIFETIME here.
    let min = policy.min_lifetime.min(MAX_LIFETIME).as_secs_f64();
    let max = policy.max_lifetime.min(MAX_LIFETIME).as_secs_f64().max(min);
    let shortest = SHORTEST_LIFETIME.as_secs_f64().min(max);
    let clamped = if lifetime.is_nan() || lifetime <= 0.0 {
        tracing::warn!(lifetime_secs = lifetime, clamped_to = min, source = ?source,
            "token lifetime is zero or negative; clamped");
        min
    } else if lifetime < shortest {
        tracing::warn!(lifetime_secs = lifetime, clamped_to = shortest, source = ?source,
            "token lifetime is under a second; clamped");
        shortest
    } else if lifetime > max {
        tracing::warn!(lifetime_secs = lifetime, clamped_to = max, source = ?source,
            "token lifetime is absurdly long; clamped");
        max
    } else {
        lifetime
    };
    (later(received_at, secs(clamped, MAX_LIFETIME)), source)
}

/// A token as a shared store keeps it: every field, secrets included, so another
/// process can rebuild the same [`Token`]. Only ever serialized into a zeroizing
/// buffer that is encrypted before it leaves the process; it has no `Debug`, so
/// it cannot end up in a log.
#[cfg(feature = "redis")]
#[derive(serde::Serialize, serde::Deserialize)]
struct StoredToken {
    access_token: String,
    token_type: String,
    /// Milliseconds since the Unix epoch.
    issued_at_ms: u64,
    /// Milliseconds since the Unix epoch.
    expires_at_ms: u64,
    expiry_source: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    scope: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    refresh_token: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    id_token: Option<String>,
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    extra: Map<String, Value>,
}

#[cfg(feature = "redis")]
impl Drop for StoredToken {
    fn drop(&mut self) {
        use zeroize::Zeroize;
        self.access_token.zeroize();
        if let Some(t) = &mut self.refresh_token {
            t.zeroize();
        }
        if let Some(t) = &mut self.id_token {
            t.zeroize();
        }
    }
}

#[cfg(feature = "redis")]
impl Token {
    /// The token, secrets included, as JSON for a store to encrypt. The buffer is
    /// wiped on drop.
    pub(crate) fn to_stored_json(&self) -> Result<Zeroizing<Vec<u8>>, serde_json::Error> {
        let ms = |t: SystemTime| {
            t.duration_since(UNIX_EPOCH)
                .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
                .unwrap_or(0)
        };
        let stored = StoredToken {
            access_token: self.access_token.expose_secret().to_owned(),
            token_type: self.token_type.clone(),
            issued_at_ms: ms(self.issued_at),
            expires_at_ms: ms(self.expires_at),
            expiry_source: match self.expiry_source {
                ExpirySource::ExpiresIn => "expires_in",
                ExpirySource::AccessTokenExp => "access_token_exp",
                ExpirySource::IdTokenExp => "id_token_exp",
                ExpirySource::Default => "default",
                ExpirySource::Explicit => "explicit",
            }
            .to_owned(),
            scope: self.scope.clone(),
            refresh_token: self.refresh_token.as_ref().map(|t| t.expose_secret().to_owned()),
            id_token: self.id_token.as_ref().map(|t| t.expose_secret().to_owned()),
            extra: self.extra.clone(),
        };
        // Serialize into a buffer sized up front so it is not reallocated, which
        // would leave unwiped copies of the secrets behind.
        let mut out = Zeroizing::new(Vec::with_capacity(1024 + stored.access_token.len() * 2));
        serde_json::to_writer(&mut *out, &stored)?;
        Ok(out)
    }

    /// Rebuilds a token from [`Token::to_stored_json`]'s output; `None` if it is
    /// not one (the caller treats that as a miss).
    pub(crate) fn from_stored_json(json: &[u8]) -> Option<Token> {
        let mut stored: StoredToken = serde_json::from_slice(json).ok()?;
        let at = |ms: u64| UNIX_EPOCH + Duration::from_millis(ms);
        let access_token = AccessToken::new(std::mem::take(&mut stored.access_token));
        let bearer = authorization_header(&access_token, scheme_of(&stored.token_type)).ok()?;
        let issued_at = at(stored.issued_at_ms);
        Some(Token {
            access_token,
            bearer,
            token_type: std::mem::take(&mut stored.token_type),
            issued_at,
            expires_at: at(stored.expires_at_ms).clamp(issued_at, later(issued_at, MAX_LIFETIME)),
            expiry_source: match stored.expiry_source.as_str() {
                "expires_in" => ExpirySource::ExpiresIn,
                "access_token_exp" => ExpirySource::AccessTokenExp,
                "id_token_exp" => ExpirySource::IdTokenExp,
                "default" => ExpirySource::Default,
                _ => ExpirySource::Explicit,
            },
            scope: stored.scope.take(),
            refresh_token: stored.refresh_token.take().map(RefreshToken::new),
            id_token: stored.id_token.take().map(IdToken::new),
            extra: std::mem::take(&mut stored.extra),
            // Not kept in the store: a diagnostic of the response, not of the token.
            stated_expires_in: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;

    fn jwt(claims: &str) -> String {
        let h = URL_SAFE_NO_PAD.encode(r#"{"alg":"HS256","typ":"JWT"}"#);
        let c = URL_SAFE_NO_PAD.encode(claims);
        format!("{h}.{c}.c2lnbmF0dXJl")
    }

    fn t0() -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_700_000_000)
    }

    fn parse(body: &str) -> Result<Token, ResponseProblem> {
        parse_token_response(body.as_bytes(), t0(), &ParseOptions::default())
    }

    fn lifetime(body: &str) -> u64 {
        parse(body).map(|t| t.lifetime().as_secs()).unwrap_or(u64::MAX)
    }

    #[test]
    fn lenient_parsing_table() {
        let cases: &[(&str, Result<u64, ResponseProblem>)] = &[
            // null refresh_token (Graphnet, Aidbox)
            (
                r#"{"access_token":"a","token_type":"Bearer","expires_in":3600,"refresh_token":null}"#,
                Ok(3600),
            ),
            // string expires_in (PayPal and friends)
            (r#"{"access_token":"a","token_type":"bearer","expires_in":"1800"}"#, Ok(1800)),
            (r#"{"access_token":"a","token_type":"BEARER","expires_in":" 60.9 "}"#, Ok(60)),
            // no expires_in, nothing else: the default lifetime
            (r#"{"access_token":"a","token_type":"Bearer"}"#, Ok(300)),
            (r#"{"access_token":"a","token_type":"Bearer","expires_in":null,"scope":null}"#, Ok(300)),
            // no token_type at all: assumed bearer
            (r#"{"access_token":"a"}"#, Ok(300)),
            // nonsense lifetimes are clamped
            (r#"{"access_token":"a","expires_in":0}"#, Ok(10)),
            (r#"{"access_token":"a","expires_in":-5}"#, Ok(10)),
            (r#"{"access_token":"a","expires_in":1e12}"#, Ok(86400)),
            // errors
            (r#"{"token_type":"Bearer","expires_in":3600}"#, Err(ResponseProblem::MissingAccessToken)),
            (r#"{"access_token":null}"#, Err(ResponseProblem::MissingAccessToken)),
            (r#"{"access_token":""}"#, Err(ResponseProblem::EmptyAccessToken)),
            (
                r#"{"access_token":42}"#,
                Err(ResponseProblem::WrongType { field: "access_token", expected: "a string" }),
            ),
            (
                r#"{"access_token":"a","expires_in":"soon"}"#,
                Err(ResponseProblem::WrongType { field: "expires_in", expected: "a number" }),
            ),
            (
                r#"{"access_token":"a","expires_in":true}"#,
                Err(ResponseProblem::WrongType { field: "expires_in", expected: "a number" }),
            ),
            (
                r#"{"access_token":"a","scope":["x"]}"#,
                Err(ResponseProblem::WrongType { field: "scope", expected: "a string" }),
            ),
            (
                r#"{"access_token":"a","token_type":"mac"}"#,
                Err(ResponseProblem::UnsupportedTokenType { token_type: "mac".into() }),
            ),
            (r#"[1,2]"#, Err(ResponseProblem::NotAnObject)),
            ("", Err(ResponseProblem::Empty)),
            ("<html>502 Bad Gateway</html>", Err(ResponseProblem::NotJson { content_type: None, len: 28 })),
            (
                r#"{"access_token":"line\nbreak"}"#,
                Err(ResponseProblem::Other(
                    "access_token has characters that cannot be sent in an HTTP header".into(),
                )),
            ),
            // Accepted by an HTTP header, but not a bearer token: refused too.
            (
                r#"{"access_token":"t\u00f6ken"}"#,
                Err(ResponseProblem::Other(
                    "access_token has characters that cannot be sent in an HTTP header".into(),
                )),
            ),
            (
                r#"{"access_token":"two words"}"#,
                Err(ResponseProblem::Other(
                    "access_token has characters that cannot be sent in an HTTP header".into(),
                )),
            ),
        ];
        for (body, want) in cases {
            let got = parse(body).map(|t| t.lifetime().as_secs());
            assert_eq!(&got, want, "body: {body}");
        }
    }

    /// Moved from the CLI, which now reads claims with this decoder.
    #[test]
    fn jwt_claims_decode_only_jwts() {
        let claims = jwt_claims(&jwt(r#"{"sub":"x","exp":1}"#));
        assert_eq!(claims.and_then(|c| c.get("sub").cloned()), Some(Value::from("x")));
        assert!(jwt_claims("opaque-token").is_none());
        assert!(jwt_claims("a.b.c.d").is_none());
        assert!(jwt_claims("a.!!!.c").is_none());
        let header = jwt_header(&jwt(r#"{"sub":"x"}"#));
        assert_eq!(header.and_then(|h| h.get("alg").cloned()), Some(Value::from("HS256")));
        assert!(jwt_header("opaque-token").is_none());
    }

    #[test]
    fn expires_in_is_kept_as_stated() {
        let stated = |body: &str| parse(body).ok().and_then(|t| t.stated_expires_in());
        assert_eq!(stated(r#"{"access_token":"a","expires_in":-3600}"#), Some(-3600.0));
        assert_eq!(stated(r#"{"access_token":"a","expires_in":"1800"}"#), Some(1800.0));
        assert_eq!(stated(r#"{"access_token":"a"}"#), None);
        // Read in milliseconds, still stated as sent.
        let ms = ParseOptions::default()
            .with_expiry(ExpiryPolicy::default().with_unit(ExpiresInUnit::Milliseconds));
        let t = parse_token_response(br#"{"access_token":"a","expires_in":300000}"#, t0(), &ms).ok();
        assert_eq!(t.as_ref().and_then(Token::stated_expires_in), Some(300_000.0));
        assert_eq!(t.map(|t| t.lifetime().as_secs()), Some(300));
    }

    #[test]
    fn jwt_exp_without_expires_in() {
        let token = jwt(&format!(r#"{{"sub":"x","exp":{}}}"#, 1_700_000_000 + 900));
        let t = parse(&format!(r#"{{"access_token":"{token}","token_type":"Bearer"}}"#)).ok();
        assert_eq!(t.as_ref().map(|t| t.lifetime().as_secs()), Some(900));
        assert_eq!(t.map(|t| t.expiry_source()), Some(ExpirySource::AccessTokenExp));
    }

    #[test]
    fn earliest_of_expires_in_and_exp_wins() {
        let id = jwt(&format!(r#"{{"exp":{}}}"#, 1_700_000_000 + 1200));
        // SanteDB 2.x: expires_in in ms, misread as seconds would be 20 days.
        let body = format!(
            r#"{{"access_token":"opaque","token_type":"bearer","expires_in":1799984,"id_token":"{id}"}}"#
        );
        let t = parse(&body).ok();
        assert_eq!(t.as_ref().map(|t| t.lifetime().as_secs()), Some(1200));
        assert_eq!(t.as_ref().map(|t| t.expiry_source()), Some(ExpirySource::IdTokenExp));

        let ms = ParseOptions::default()
            .with_expiry(ExpiryPolicy::default().with_unit(ExpiresInUnit::Milliseconds).with_jwt_exp(false));
        let t = parse_token_response(body.as_bytes(), t0(), &ms).ok();
        assert_eq!(t.map(|t| t.lifetime().as_secs()), Some(1799));
    }

    #[test]
    fn expires_in_can_take_precedence_over_a_skewed_exp() {
        // The server's clock is 700 s behind ours: its JWT `exp` looks 100 s in the past.
        let token = jwt(&format!(r#"{{"exp":{}}}"#, 1_700_000_000 - 100));
        let body = format!(r#"{{"access_token":"{token}","expires_in":600}}"#);
        let first = ParseOptions::default().with_expiry(ExpiryPolicy::default().with_expires_in_first(true));
        let t = parse_token_response(body.as_bytes(), t0(), &first).ok();
        assert_eq!(t.as_ref().map(|t| t.lifetime().as_secs()), Some(600));
        assert_eq!(t.map(|t| t.expiry_source()), Some(ExpirySource::ExpiresIn));
        // Without expires_in, exp is still used.
        let body =
            format!(r#"{{"access_token":"{}"}}"#, jwt(&format!(r#"{{"exp":{}}}"#, 1_700_000_000 + 900)));
        let t = parse_token_response(body.as_bytes(), t0(), &first).ok();
        assert_eq!(t.map(|t| t.lifetime().as_secs()), Some(900));
    }

    #[test]
    fn short_positive_lifetimes_are_trusted_not_stretched() {
        // A 3 s token used for 10 s would be rejected for 7 of them.
        assert_eq!(lifetime(r#"{"access_token":"a","expires_in":3}"#), 3);
        assert_eq!(lifetime(r#"{"access_token":"a","expires_in":0.2}"#), 1);
        assert_eq!(lifetime(r#"{"access_token":"a","expires_in":0}"#), 10);
        assert_eq!(lifetime(r#"{"access_token":"a","expires_in":-5}"#), 10);
    }

    #[test]
    fn exp_in_the_past_is_clamped_not_trusted_blindly() {
        let token = jwt(&format!(r#"{{"exp":{}}}"#, 1_700_000_000 - 50));
        assert_eq!(lifetime(&format!(r#"{{"access_token":"{token}","expires_in":3600}}"#)), 10);
    }

    #[test]
    fn huge_values_cannot_overflow() {
        let unbounded = ParseOptions::default()
            .with_expiry(ExpiryPolicy::default().with_bounds(Duration::ZERO, Duration::MAX));
        for body in [
            r#"{"access_token":"a","expires_in":1e19}"#.to_owned(),
            r#"{"access_token":"a","expires_in":1.7e308}"#.to_owned(),
            format!(r#"{{"access_token":"{}"}}"#, jwt(r#"{"exp":1e300}"#)),
            format!(r#"{{"access_token":"{}"}}"#, jwt(r#"{"exp":-1e300}"#)),
        ] {
            let t = parse_token_response(body.as_bytes(), t0(), &unbounded);
            assert!(t.is_ok_and(|t| t.lifetime() <= MAX_LIFETIME), "{body}");
        }
    }

    #[test]
    fn bad_jwts_are_treated_as_opaque() {
        for v in ["a.b.c", "eyJ.eyJ.x", "not-a-jwt", "a..b", "....", "ü.ä.ö"] {
            assert_eq!(jwt_exp(v), None, "{v}");
        }
        let no_exp = jwt(r#"{"sub":"x"}"#);
        assert_eq!(jwt_exp(&no_exp), None);
        let float_exp = jwt(r#"{"exp":1700000100.5}"#);
        assert_eq!(jwt_exp(&float_exp), Some(1_700_000_100.5));
    }

    #[test]
    fn unknown_fields_are_kept() {
        let t = parse(r#"{"access_token":"a","consented_on":1610000000,"nonce":"n"}"#).ok();
        let extra = t.map(|t| t.extra().clone()).unwrap_or_default();
        assert_eq!(extra.get("consented_on"), Some(&Value::from(1_610_000_000)));
        assert_eq!(extra.get("nonce"), Some(&Value::from("n")));
    }

    #[test]
    fn debug_names_vendor_fields_but_never_shows_their_values() {
        // fuzz/token_response's first find: a field whose name contains the token.
        // The name is the server's text and shown as such; values never are.
        let t = parse(r#"{"access_token":"AAAAAAAAAAAAAAA","eAAAAAAAAAAAAAAAAAAAAAAsixi_eprn":3600}"#);
        assert_eq!(t.as_ref().map(|t| t.expiry_source()).ok(), Some(ExpirySource::Default));
        let debug = format!("{:?}", t.ok());
        assert!(debug.starts_with("Some(Token"), "{debug}");
        assert!(debug.contains("\"eAAAAAAAAAAAAAAAAAAAAAAsixi_eprn\""), "{debug}");
        assert!(!debug.contains("3600"), "{debug}");
        // Parsed (so the check below is about a real token, not a failed parse).
        let t = parse(r#"{"access_token":"a","vendor":"value-canary-1"}"#).ok();
        assert!(t.as_ref().is_some_and(|t| t.extra().contains_key("vendor")), "{t:?}");
        assert!(!format!("{t:?}").contains("value-canary"));
        // Its second: a token spelled like Debug's own field name. Only the name shows.
        let t = parse(r#"{"access_token":"access_token"}"#).ok();
        let debug = format!("{t:?}");
        assert!(debug.contains("AccessToken([redacted])") && !debug.contains("\"access_token\""), "{debug}");
    }

    #[test]
    fn extra_token_types_can_be_allowed() {
        let opts = ParseOptions::default().accept_token_type("urn:ietf:params:oauth:token-type:jwt");
        let body = br#"{"access_token":"a","token_type":"urn:ietf:params:oauth:token-type:jwt"}"#;
        assert!(parse_token_response(body, t0(), &opts).is_ok());
    }

    #[test]
    fn a_dpop_token_goes_with_the_dpop_scheme() {
        let t = parse(r#"{"access_token":"tok-123","token_type":"DPoP","expires_in":60}"#);
        assert!(t.is_err(), "DPoP is not accepted unless asked for");
        let options = ParseOptions::default().accept_token_type("DPoP");
        let t = parse_token_response(br#"{"access_token":"tok-123","token_type":"dpop"}"#, t0(), &options)
            .unwrap();
        assert!(t.is_dpop());
        assert_eq!(t.authorization_header().to_str().unwrap(), "DPoP tok-123");
        assert!(t.authorization_header().is_sensitive());
        let bearer = Token::new(AccessToken::new("tok-123"), t0(), t0() + Duration::from_secs(60)).unwrap();
        assert!(!bearer.is_dpop());
        assert_eq!(bearer.authorization_header().to_str().unwrap(), "Bearer tok-123");
        let rebound = bearer.with_token_type("DPoP");
        assert_eq!(rebound.authorization_header().to_str().unwrap(), "DPoP tok-123");
    }

    #[test]
    fn bearer_header_is_sensitive_and_debug_is_redacted() {
        let t = parse(
            r#"{"access_token":"canary-token-value","refresh_token":"canary-refresh","id_token":"canary-id"}"#,
        );
        let t = t.ok();
        let h = t.as_ref().map(|t| t.bearer_header());
        assert!(h.as_ref().is_some_and(|h| h.is_sensitive()));
        assert_eq!(h.as_ref().and_then(|h| h.to_str().ok()), Some("Bearer canary-token-value"));
        let debug = format!("{t:?}");
        assert!(!debug.contains("canary"), "{debug}");
    }
}
