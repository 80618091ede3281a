//! What every emulator's identity provider keeps: the clients it knows, the tokens
//! it issued (so its FHIR API accepts exactly those, until they expire or are
//! revoked), how many token requests each client made, and how many requests its
//! API received and refused. The vendor emulators and the test identity provider
//! ([`crate::idp`]) keep these books here, and nowhere else.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use auth_core::clock::Clock;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::Value;

/// The longest lifetime an emulator issues, whatever it is configured with.
pub const MAX_SANDBOX_LIFETIME: Duration = Duration::from_secs(10 * 365 * 24 * 3600);

/// A token an emulator issued.
#[derive(Debug, Clone)]
pub struct Issued {
    /// The client it was issued to.
    pub client_id: String,
    /// When it stops working.
    pub expires_at: SystemTime,
    /// Whether it was revoked (sign-out, session deletion).
    pub revoked: bool,
    /// Scope granted.
    pub scope: Option<String>,
}

/// Why a bearer token was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// No `Authorization: Bearer …` header.
    Missing,
    /// Never issued here.
    Unknown,
    /// Past its expiry.
    Expired,
    /// Revoked.
    Revoked,
}

#[derive(Debug, Default)]
struct Books {
    clients: HashMap<String, String>,
    issued: HashMap<String, Issued>,
    refresh: HashMap<String, String>,
    per_client: HashMap<String, u64>,
}

/// Request counters; atomics, so counting never waits for the books.
#[derive(Debug, Default)]
struct Counters {
    token: AtomicU64,
    refresh: AtomicU64,
    api: AtomicU64,
    api_rejected: AtomicU64,
    serial: AtomicU64,
}

/// Clients, issued tokens and counters, on a clock tests can control.
///
/// Clones share the same books.
#[derive(Clone)]
pub struct TokenRegistry {
    clock: Arc<dyn Clock>,
    books: Arc<Mutex<Books>>,
    counters: Arc<Counters>,
    marker: Arc<str>,
}

impl std::fmt::Debug for TokenRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The books hold client secrets and issued tokens (as map keys): counts only.
        let books = self.books();
        f.debug_struct("TokenRegistry")
            .field("clients", &books.clients.len())
            .field("issued", &books.issued.len())
            .field("refresh_tokens", &books.refresh.len())
            .field("requests", &self.requests())
            .field("refresh_requests", &self.refresh_requests())
            .field("api_requests", &self.api_requests())
            .field("api_rejections", &self.api_rejections())
            .finish_non_exhaustive()
    }
}

impl TokenRegistry {
    /// An empty registry on `clock`.
    pub fn new(clock: Arc<dyn Clock>) -> Self {
        Self { clock, books: Arc::default(), counters: Arc::default(), marker: Arc::from("") }
    }

    /// Starts every opaque token value (access and refresh) with `marker`
    /// ([`SandboxConfig::with_token_marker`](super::SandboxConfig::with_token_marker)),
    /// so a test can search output for tokens by a known value.
    pub fn with_marker(mut self, marker: &str) -> Self {
        self.marker = Arc::from(marker);
        self
    }

    /// `value` with the token marker in front (unchanged without a marker).
    pub fn mark(&self, value: &str) -> String {
        format!("{}{value}", self.marker)
    }

    fn books(&self) -> MutexGuard<'_, Books> {
        self.books.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The registry's clock.
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    /// The current time on the registry's clock.
    pub fn now(&self) -> SystemTime {
        self.clock.now()
    }

    /// Seconds since the epoch on the registry's clock (for JWT claims).
    pub fn now_secs(&self) -> u64 {
        self.now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
    }

    /// Registers (or replaces) a client.
    pub fn register(&self, client_id: &str, secret: &str) {
        self.books().clients.insert(client_id.to_owned(), secret.to_owned());
    }

    /// Whether `client_id` is registered with exactly `secret`.
    pub fn check(&self, client_id: &str, secret: &str) -> bool {
        self.books().clients.get(client_id).is_some_and(|s| s == secret)
    }

    /// Whether `client_id` is registered at all.
    pub fn knows(&self, client_id: &str) -> bool {
        self.books().clients.contains_key(client_id)
    }

    /// Counts one token request (call once per request, whatever its outcome).
    pub fn count_request(&self, client_id: Option<&str>) {
        self.counters.token.fetch_add(1, Ordering::SeqCst);
        if let Some(id) = client_id {
            *self.books().per_client.entry(id.to_owned()).or_default() += 1;
        }
    }

    /// Token requests received in all.
    pub fn requests(&self) -> u64 {
        self.counters.token.load(Ordering::SeqCst)
    }

    /// Counts one refresh grant (on top of [`TokenRegistry::count_request`]), once
    /// the request is known to be one, whatever its outcome.
    pub fn count_refresh(&self) {
        self.counters.refresh.fetch_add(1, Ordering::SeqCst);
    }

    /// Token requests with `grant_type=refresh_token`.
    pub fn refresh_requests(&self) -> u64 {
        self.counters.refresh.load(Ordering::SeqCst)
    }

    /// Counts one request that reached the API's gate, whatever its outcome.
    pub fn count_api_request(&self) {
        self.counters.api.fetch_add(1, Ordering::SeqCst);
    }

    /// Counts one API request the gate refused for its credentials (each emulator
    /// says which refusals those are).
    pub fn count_api_rejection(&self) {
        self.counters.api_rejected.fetch_add(1, Ordering::SeqCst);
    }

    /// API requests received in all.
    pub fn api_requests(&self) -> u64 {
        self.counters.api.load(Ordering::SeqCst)
    }

    /// API requests refused for their credentials.
    pub fn api_rejections(&self) -> u64 {
        self.counters.api_rejected.load(Ordering::SeqCst)
    }

    /// Token requests received that named `client_id`.
    pub fn requests_for(&self, client_id: &str) -> u64 {
        self.books().per_client.get(client_id).copied().unwrap_or(0)
    }

    /// A fresh serial number, for unique token values.
    pub fn serial(&self) -> u64 {
        self.counters.serial.fetch_add(1, Ordering::SeqCst) + 1
    }

    /// Records `token` as issued to `client_id` for `lifetime`.
    pub fn issue(&self, token: &str, client_id: &str, lifetime: Duration, scope: Option<String>) -> Issued {
        let issued = Issued {
            client_id: client_id.to_owned(),
            // A lifetime from configuration may be absurd; saturate, never panic.
            expires_at: self
                .now()
                .checked_add(lifetime.min(MAX_SANDBOX_LIFETIME))
                .unwrap_or_else(|| self.now()),
            revoked: false,
            scope,
        };
        self.books().issued.insert(token.to_owned(), issued.clone());
        issued
    }

    /// An opaque random token value with a recognisable prefix (after the marker).
    pub fn opaque(&self, prefix: &str) -> String {
        self.mark(&format!(
            "{prefix}{:04}{:016x}{:016x}",
            self.serial(),
            fastrand::u64(..),
            fastrand::u64(..)
        ))
    }

    /// Records a refresh token for `client_id`.
    pub fn issue_refresh(&self, refresh_token: &str, client_id: &str) {
        self.books().refresh.insert(refresh_token.to_owned(), client_id.to_owned());
    }

    /// Consumes a refresh token (rotation: each works once); returns its client.
    pub fn redeem_refresh(&self, refresh_token: &str) -> Option<String> {
        self.books().refresh.remove(refresh_token)
    }

    /// The client a refresh token was issued to, leaving it usable: for a provider
    /// that does not rotate refresh tokens.
    pub fn refresh_owner(&self, refresh_token: &str) -> Option<String> {
        self.books().refresh.get(refresh_token).cloned()
    }

    /// Checks a bearer token from an `Authorization` header value.
    pub fn validate(&self, authorization: Option<&str>) -> Result<Issued, Refusal> {
        let token = authorization
            .and_then(|v| v.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, t)| t.trim())
            .ok_or(Refusal::Missing)?;
        let books = self.books();
        let issued = books.issued.get(token).ok_or(Refusal::Unknown)?;
        if issued.revoked {
            return Err(Refusal::Revoked);
        }
        if self.now() >= issued.expires_at {
            return Err(Refusal::Expired);
        }
        Ok(issued.clone())
    }

    /// Revokes one token; returns whether it was known.
    pub fn revoke(&self, token: &str) -> bool {
        match self.books().issued.get_mut(token) {
            Some(t) => {
                t.revoked = true;
                true
            }
            None => false,
        }
    }

    /// Revokes every token issued so far.
    pub fn revoke_all(&self) {
        self.books().issued.values_mut().for_each(|t| t.revoked = true);
    }

    /// Tokens issued so far.
    pub fn issued_count(&self) -> usize {
        self.books().issued.len()
    }
}

/// An HS256-signed JWT with `claims`, keyed with `secret` (SanteDB signs id tokens
/// with the client secret when it has no RSA key).
pub fn hs256_jwt(claims: &Value, secret: &[u8]) -> String {
    let key = jsonwebtoken::EncodingKey::from_secret(secret);
    jsonwebtoken::encode(&jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256), claims, &key)
        // Encoding a JSON value with an HMAC key cannot fail; keep a JWT shape regardless.
        .unwrap_or_else(|_| format!("e30.{}.", URL_SAFE_NO_PAD.encode(claims.to_string())))
}
