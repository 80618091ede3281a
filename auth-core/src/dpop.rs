//! DPoP (RFC 9449): tokens bound to a key of the client's, so that a leaked
//! token is useless without the key.
//!
//! A [`Dpop`] holds the proof key and the nonces servers handed out. Given to
//! any source's builder ([`EndpointOptions::dpop`](crate::EndpointOptions::dpop)),
//! it changes three things:
//!
//! - every token request carries a `DPoP` proof (`htm` `POST`, `htu` the token
//!   URL); the server binds the token to the key's thumbprint and answers
//!   `token_type: DPoP`. A source without DPoP refuses such a token, and one
//!   with DPoP refuses a `Bearer` one unless told otherwise
//!   ([`Dpop::allow_bearer`]);
//! - [`AuthClient`](crate::AuthClient) sends such a token as
//!   `Authorization: DPoP <token>` with a proof for that request: `htm`, `htu`
//!   (the URL without query or fragment), `ath` (the token's SHA-256);
//! - a server's nonce (`DPoP-Nonce`, from any response, 200s included) goes into
//!   every later proof for that origin; a `use_dpop_nonce` challenge (400 from a
//!   token endpoint, 401 `WWW-Authenticate: DPoP error="use_dpop_nonce"` from an
//!   API) is answered by exactly one retry with a new proof carrying the new nonce.
//!
//! Every proof is new: a fresh `jti` (128 random bits), the current `iat`, even
//! on a retry. The key is in the cache key's `dpop_jkt`, so tokens bound to one
//! key are never handed to a client holding another, or none.
//!
//! ```
//! use auth_core::dpop::Dpop;
//! use auth_core::oauth2::OAuth2Source;
//! use auth_core::{ClientSecret, EndpointOptions};
//!
//! let dpop = Dpop::generate()?; // ES256, a new key for this process
//! let source = OAuth2Source::builder("https://idp.example/token", "c", ClientSecret::new("s"))
//!     .dpop(dpop.clone())
//!     .build()?;
//! // Tokens bound to this key are cached under it.
//! assert_eq!(source.cache_key().dpop_jkt(), Some(dpop.thumbprint()));
//! # use auth_core::CredentialSource;
//! # Ok::<(), auth_core::Error>(())
//! ```

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

use reqwest::Method;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use serde::Serialize;
use url::Url;

use crate::error::{Error, Result};
use crate::keys::{JwsAlgorithm, PrivateKey, sha256_base64url};
use crate::secret::{AccessToken, PrivateKeyPem};

/// The request header that carries a proof.
pub const DPOP: HeaderName = HeaderName::from_static("dpop");

/// The response header that carries a server's nonce.
pub const DPOP_NONCE: HeaderName = HeaderName::from_static("dpop-nonce");

/// The `typ` of a proof's header.
pub const PROOF_TYPE: &str = "dpop+jwt";

/// The authorization scheme, and `token_type`, of a DPoP-bound token.
pub const SCHEME: &str = "DPoP";

/// The algorithm of [`Dpop::generate`]: the one every DPoP server accepts
/// (oidc-provider accepts only ES256 and EdDSA unless told more).
pub const DEFAULT_ALGORITHM: JwsAlgorithm = JwsAlgorithm::Es256;

/// The error code with which servers ask for a nonce.
pub const USE_DPOP_NONCE: &str = "use_dpop_nonce";

/// Longest nonce kept: RFC 9449 sets no bound, so a server cannot make us carry
/// (and sign) a megabyte in every proof.
const MAX_NONCE_LEN: usize = 1024;

/// Most origins whose nonce is kept; past it, one is forgotten (its server asks again).
const MAX_ORIGINS: usize = 256;

/// A DPoP proof key and the nonces servers gave it. Cheap to clone: clones share
/// the key and the nonces.
#[derive(Clone)]
pub struct Dpop {
    shared: Arc<Shared>,
    allow_bearer: bool,
}

struct Shared {
    key: PrivateKey,
    /// The latest nonce of each origin (`scheme://host:port`).
    nonces: Mutex<HashMap<String, String>>,
}

impl fmt::Debug for Dpop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Dpop")
            .field("alg", &self.shared.key.algorithm())
            .field("jkt", &self.thumbprint())
            .field("allow_bearer", &self.allow_bearer)
            .finish_non_exhaustive()
    }
}

/// The claims of a proof (RFC 9449 §4.2).
#[derive(Serialize)]
struct ProofClaims<'a> {
    jti: String,
    htm: &'a str,
    htu: &'a str,
    iat: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    ath: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    nonce: Option<String>,
}

impl Dpop {
    /// Proves with `key` (any of [`JwsAlgorithm`]; servers differ in what they
    /// take: ES256 everywhere, RS256 and PS256 where enabled).
    pub fn new(key: PrivateKey) -> Self {
        Self { shared: Arc::new(Shared { key, nonces: Mutex::new(HashMap::new()) }), allow_bearer: false }
    }

    /// A new [`DEFAULT_ALGORITHM`] key: tokens bound to it are useless to
    /// another process, so each process gets its own tokens.
    pub fn generate() -> Result<Self> {
        Ok(Self::new(PrivateKey::generate(DEFAULT_ALGORITHM)?))
    }

    /// A key read from PEM for `alg` (see [`PrivateKey::from_pem`]); a key kept
    /// across runs keeps its tokens usable across them.
    pub fn from_pem(pem: &PrivateKeyPem, alg: JwsAlgorithm) -> Result<Self> {
        Ok(Self::new(PrivateKey::from_pem(pem, alg)?))
    }

    /// Accepts a `Bearer` token from a server that does not bind tokens (RFC
    /// 9449 §5 lets a server issue one). Off by default: asked for DPoP, a
    /// client that silently takes a bearer token loses what it asked for.
    pub fn allow_bearer(mut self, allow: bool) -> Self {
        self.allow_bearer = allow;
        self
    }

    /// Whether a `Bearer` token is accepted.
    pub fn allows_bearer(&self) -> bool {
        self.allow_bearer
    }

    /// The key's RFC 7638 SHA-256 thumbprint: the `jkt` a server binds tokens to.
    pub fn thumbprint(&self) -> &str {
        self.shared.key.thumbprint()
    }

    /// The proof key's algorithm.
    pub fn algorithm(&self) -> JwsAlgorithm {
        self.shared.key.algorithm()
    }

    /// The proof key.
    pub fn key(&self) -> &PrivateKey {
        &self.shared.key
    }

    /// A new proof for `method` on `url`, with `ath` when `access_token` is
    /// given and the nonce last given by `url`'s origin, if any: the value of
    /// the `DPoP` header. Marked sensitive: a proof is a credential for its request.
    pub fn proof(
        &self,
        method: &Method,
        url: &Url,
        access_token: Option<&AccessToken>,
    ) -> Result<HeaderValue> {
        let mut htu = url.clone();
        htu.set_query(None);
        htu.set_fragment(None);
        let claims = ProofClaims {
            jti: new_jti()?,
            htm: method.as_str(),
            htu: htu.as_str(),
            iat: SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or_default(),
            ath: access_token.map(|t| sha256_base64url(t.expose_secret().as_bytes())),
            nonce: self.nonce(url),
        };
        let key = &self.shared.key;
        let mut header = key.header();
        header.typ = Some(PROOF_TYPE.to_owned());
        // A proof names its key by value, not by id.
        header.kid = None;
        let mut jwk = key.public_jwk().clone();
        jwk.common.key_id = None;
        header.jwk = Some(jwk);
        let jws = key.sign(&header, &claims)?;
        let mut value = HeaderValue::from_str(&jws)
            .map_err(|_| Error::internal("a DPoP proof is not a valid header value"))?;
        value.set_sensitive(true);
        Ok(value)
    }

    /// The nonce `url`'s origin gave last, if any.
    pub fn nonce(&self, url: &Url) -> Option<String> {
        let origin = url.origin().ascii_serialization();
        self.lock().get(&origin).cloned()
    }

    /// Keeps the `DPoP-Nonce` of a response from `url` (any response: servers
    /// hand out new nonces on successes too). Returns whether there was one.
    /// A value that is not a valid nonce (RFC 9449 §8.1: visible ASCII but `"`
    /// and `\`) or is absurdly long is ignored.
    pub fn remember_nonce(&self, url: &Url, headers: &HeaderMap) -> bool {
        let Some(nonce) = headers.get(DPOP_NONCE).and_then(|v| v.to_str().ok()) else { return false };
        let valid = !nonce.is_empty()
            && nonce.len() <= MAX_NONCE_LEN
            && nonce.bytes().all(|b| b == b'!' || (b'#'..=b'[').contains(&b) || (b']'..=b'~').contains(&b));
        if !valid {
            tracing::debug!("ignoring an invalid DPoP-Nonce");
            return false;
        }
        let origin = url.origin().ascii_serialization();
        let mut nonces = self.lock();
        if nonces.len() >= MAX_ORIGINS && !nonces.contains_key(&origin) {
            let evicted = nonces.keys().next().cloned();
            if let Some(evicted) = evicted {
                nonces.remove(&evicted);
            }
        }
        nonces.insert(origin, nonce.to_owned());
        true
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, String>> {
        // Single inserts and removes: a poisoned lock holds consistent data.
        self.shared.nonces.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// 128 bits from the CSPRNG, base64url: RFC 9449 asks for at least 96.
fn new_jti() -> Result<String> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).map_err(|_| Error::internal("the random source failed"))?;
    Ok(base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, bytes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::{Jwk, jwk_thumbprint};
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;

    fn part(jws: &str, i: usize) -> serde_json::Value {
        let bytes = URL_SAFE_NO_PAD.decode(jws.split('.').nth(i).unwrap()).unwrap();
        serde_json::from_slice(&bytes).unwrap()
    }

    #[test]
    fn a_proof_has_every_member_rfc_9449_asks_for() {
        for alg in [JwsAlgorithm::Es256, JwsAlgorithm::Rs256, JwsAlgorithm::Ps256] {
            let dpop = Dpop::new(PrivateKey::generate(alg).unwrap().with_kid("not-in-proofs"));
            let url = Url::parse("https://fhir.example:8443/r4/Patient?name=x#frag").unwrap();
            let token = AccessToken::new("Kz~8mXK1EalYznwH-LC-1fBAo.4Ljp~zsPE_NeO.gxU");
            let proof = dpop.proof(&Method::GET, &url, Some(&token)).unwrap();
            assert!(proof.is_sensitive());
            let jws = proof.to_str().unwrap();
            let (header, claims) = (part(jws, 0), part(jws, 1));
            assert_eq!(header["typ"], "dpop+jwt");
            assert_eq!(header["alg"], alg.as_str());
            assert!(header.get("kid").is_none(), "{header}");
            let jwk: Jwk = serde_json::from_value(header["jwk"].clone()).unwrap();
            assert_eq!(jwk_thumbprint(&jwk), dpop.thumbprint());
            for private in ["d", "p", "q", "dp", "dq", "qi"] {
                assert!(header["jwk"].get(private).is_none());
            }
            assert_eq!(claims["htm"], "GET");
            assert_eq!(claims["htu"], "https://fhir.example:8443/r4/Patient");
            assert_eq!(claims["ath"], "fUHyO2r2Z3DZ53EsNrWBb0xWXoaNy59IiKCAqksmQEo");
            assert!(claims.get("nonce").is_none());
            let iat = claims["iat"].as_u64().unwrap();
            let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
            assert!(now.abs_diff(iat) <= 2);
            let again = dpop.proof(&Method::GET, &url, Some(&token)).unwrap();
            assert_ne!(part(again.to_str().unwrap(), 1)["jti"], claims["jti"], "a fresh jti every time");
            assert!(claims["jti"].as_str().unwrap().len() >= 16);
        }
    }

    #[test]
    fn nonces_are_kept_per_origin_and_checked() {
        let dpop = Dpop::generate().unwrap();
        let a = Url::parse("https://as.example/token").unwrap();
        let a_other_path = Url::parse("https://as.example/other?x=1").unwrap();
        let b = Url::parse("https://rs.example/fhir/Patient").unwrap();
        let mut headers = HeaderMap::new();
        headers.insert(DPOP_NONCE, HeaderValue::from_static("eyJ7S_zG.eyJH0-Z.HX4w-7v"));
        assert!(dpop.remember_nonce(&a, &headers));
        assert_eq!(dpop.nonce(&a_other_path).as_deref(), Some("eyJ7S_zG.eyJH0-Z.HX4w-7v"));
        assert_eq!(dpop.nonce(&b), None);
        let proof = dpop.proof(&Method::POST, &a, None).unwrap();
        assert_eq!(part(proof.to_str().unwrap(), 1)["nonce"], "eyJ7S_zG.eyJH0-Z.HX4w-7v");
        assert!(part(proof.to_str().unwrap(), 1).get("ath").is_none());
        for bad in ["with space", "quo\"te", "back\\slash"] {
            headers.insert(DPOP_NONCE, HeaderValue::from_str(bad).unwrap());
            assert!(!dpop.remember_nonce(&b, &headers), "{bad}");
        }
        headers.insert(DPOP_NONCE, HeaderValue::from_str(&"n".repeat(MAX_NONCE_LEN + 1)).unwrap());
        assert!(!dpop.remember_nonce(&b, &headers));
        assert_eq!(dpop.nonce(&b), None);
        // Clones share nonces; Debug shows the thumbprint, not the key.
        assert_eq!(dpop.clone().nonce(&a).as_deref(), Some("eyJ7S_zG.eyJH0-Z.HX4w-7v"));
        assert!(format!("{dpop:?}").contains(dpop.thumbprint()));
    }
}
