//! # auth-core
//!
//! The engine under the FHIR clients of this workspace: it gets OAuth 2.0 tokens,
//! keeps them, refreshes them before they expire, shares one fetch among every
//! caller, and attaches them to requests, replaying once when a server rejects one.
//!
//! The parts, in the order a request flows through them:
//!
//! | module | holds |
//! |---|---|
//! | [`client`] | [`AuthClient`]: bearer header, the vendor's [`ApiProfile`], one replay after a rejected token |
//! | `exchange` | the one flow under [`AuthClient`] and the integrations: attach (with a DPoP proof for a bound token), answer a DPoP nonce challenge once, judge, drop the rejected token, replay once |
//! | `tower` | `AuthLayer`: the same for any tower HTTP service (hyper-util, tonic), feature `tower` |
//! | `middleware` | `AuthMiddleware`: the same for `reqwest-middleware`, feature `reqwest-middleware` |
//! | [`metrics`] | metric names, labels and span names; recorded through the `metrics` facade with feature `metrics` |
//! | [`profile`] | [`ApiProfile`]: what a vendor's API wants on every request, and how its rejections are judged |
//! | [`manager`] | [`TokenManager`]: cache, single flight, refresh ahead, stale-while-error, backoff |
//! | [`store`] | [`TokenStore`]: where tokens are kept ([`MemoryStore`] by default, `RedisStore` for a fleet) |
//! | [`source`] | [`CredentialSource`]: where tokens come from, and their [`CacheKey`] |
//! | [`oauth2`] | [`OAuth2Source`](oauth2::OAuth2Source): the generic client credentials grant |
//! | [`request`] | [`TokenRequest`](request::TokenRequest): every request to an identity provider, built one way, knowing its own secrets |
//! | [`endpoint`] | [`TokenEndpoint`](endpoint::TokenEndpoint): the hardened HTTP of token requests |
//! | [`token`] | [`Token`], lenient response parsing and expiry resolution |
//! | [`dpop`] | [`Dpop`](dpop::Dpop): DPoP (RFC 9449) proofs and nonces, tokens bound to a key |
//! | [`keys`] | [`PrivateKey`](keys::PrivateKey): signing keys from PEM or generated, their public JWK and thumbprint |
//! | [`jwks`] | [`KeyRing`](jwks::KeyRing): several signing keys at once, rotated, and the JWK Set they publish |
//! | [`secret`] | redacting, zeroizing types for every secret |
//! | [`error`] | one opaque [`Error`] with [`ErrorKind`] and RFC 6749 details |
//!
//! ```no_run
//! use auth_core::{AuthClient, ClientSecret, TokenManager, oauth2::OAuth2Source};
//!
//! # async fn demo() -> auth_core::Result<()> {
//! let source = OAuth2Source::builder("https://idp.example/token", "client-id",
//!         ClientSecret::new("from-your-secret-store"))
//!     .scopes(["system/Patient.rs"])
//!     .build()?;
//! let client = AuthClient::new(TokenManager::new(source))?;
//! let patient = client.get("https://fhir.example/r4/Patient/123").send().await?;
//! # let _ = patient; Ok(()) }
//! ```

pub mod challenge;
pub mod client;
pub mod clock;
pub mod dpop;
pub mod endpoint;
pub mod error;
mod exchange;
pub mod jwks;
pub mod keys;
pub mod manager;
pub mod metrics;
#[cfg(feature = "reqwest-middleware")]
pub mod middleware;
pub mod oauth2;
pub mod profile;
pub mod request;
pub mod secret;
pub mod source;
pub mod store;
pub mod tls;
pub mod token;
#[cfg(feature = "tower")]
pub mod tower;

pub use client::{AuthClient, AuthClientBuilder, Authenticator};
pub use endpoint::EndpointOptions;
pub use error::{Error, ErrorKind, OAuthError, OAuthErrorCode, ResponseProblem, Result};
pub use manager::{Invalidation, ManagerConfig, ManagerStats, RetryPolicy, TokenManager};
pub use profile::{ApiProfile, Rejection, RejectionJudge, RejectionVerdict};
pub use secret::{
    AccessToken, ClientSecret, DeviceSecret, IdToken, PrivateKeyPem, RefreshToken, SecretValue,
};
pub use source::{CacheKey, CredentialSource, FetchContext, WithScopes};
pub use store::{MemoryStore, TokenStore};
pub use token::{ExpiresInUnit, ExpiryPolicy, Token};
