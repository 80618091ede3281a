//! Asymmetric private keys: the ones that sign SMART client assertions
//! (`private_key_jwt`) and DPoP proofs. A [`PrivateKey`] is read from PEM or
//! generated, and knows its public JWK (RFC 7517) and that JWK's SHA-256
//! thumbprint (RFC 7638).
//!
//! The public JWK is built from the key's public half alone (jsonwebtoken's
//! `Jwk::from_encoding_key`: `n`/`e`, or `crv`/`x`/`y`), never by filtering a
//! private JWK, so no private member can reach a published key set or a DPoP
//! header.
//!
//! ```
//! use auth_core::keys::{JwsAlgorithm, PrivateKey};
//!
//! let key = PrivateKey::generate(JwsAlgorithm::Es384)?.with_kid("2026-11-es384");
//! assert_eq!(key.public_jwk().common.key_id.as_deref(), Some("2026-11-es384"));
//! assert_eq!(key.thumbprint().len(), 43);
//! assert_eq!(format!("{key:?}").contains("[redacted]"), true);
//! # Ok::<(), auth_core::Error>(())
//! ```

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use jsonwebtoken::jwk::{PublicKeyUse, ThumbprintHash};
use jsonwebtoken::{Algorithm, EncodingKey};
use serde::Serialize;
use zeroize::Zeroizing;

use crate::error::{Error, Result};
use crate::secret::PrivateKeyPem;

pub use jsonwebtoken::Header;
pub use jsonwebtoken::jwk::{Jwk, JwkSet};

/// Size of the RSA keys [`PrivateKey::generate`] makes: the least Epic and most
/// servers accept, and what RFC 7518 §3.3 requires at minimum.
pub const RSA_KEY_BITS: usize = 2048;

/// A JWS signature algorithm with an asymmetric key: the ones SMART Backend
/// Services (RS384, ES384) and DPoP servers (ES256 first, RS256, PS256) use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum JwsAlgorithm {
    /// ECDSA on P-256 with SHA-256: the DPoP default, the one every DPoP server takes.
    Es256,
    /// ECDSA on P-384 with SHA-384 (SMART).
    Es384,
    /// RSASSA-PKCS1-v1_5 with SHA-256.
    Rs256,
    /// RSASSA-PKCS1-v1_5 with SHA-384 (SMART).
    Rs384,
    /// RSASSA-PSS with SHA-256.
    Ps256,
}

impl JwsAlgorithm {
    /// Every algorithm, in the order [`PrivateKey::from_pem_any`] tries them.
    pub const ALL: [Self; 5] = [Self::Es384, Self::Es256, Self::Rs384, Self::Rs256, Self::Ps256];

    /// The JOSE name (`ES256`, `RS384`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Es256 => "ES256",
            Self::Es384 => "ES384",
            Self::Rs256 => "RS256",
            Self::Rs384 => "RS384",
            Self::Ps256 => "PS256",
        }
    }

    /// Parses a JOSE name.
    pub fn parse(name: &str) -> Result<Self> {
        Self::ALL.into_iter().find(|a| a.as_str() == name).ok_or_else(|| {
            Error::configuration(format!(
                "unsupported signature algorithm `{name}` (expected ES256, ES384, RS256, RS384 or PS256)"
            ))
        })
    }

    /// Whether the key is RSA (else EC).
    pub fn is_rsa(self) -> bool {
        matches!(self, Self::Rs256 | Self::Rs384 | Self::Ps256)
    }

    /// What key the algorithm signs with, for messages.
    fn key_kind(self) -> &'static str {
        match self {
            Self::Es256 => "an EC key on P-256",
            Self::Es384 => "an EC key on P-384",
            _ => "an RSA key of at least 2048 bits",
        }
    }

    /// jsonwebtoken's name for it.
    pub fn jose(self) -> Algorithm {
        match self {
            Self::Es256 => Algorithm::ES256,
            Self::Es384 => Algorithm::ES384,
            Self::Rs256 => Algorithm::RS256,
            Self::Rs384 => Algorithm::RS384,
            Self::Ps256 => Algorithm::PS256,
        }
    }
}

impl fmt::Display for JwsAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A private signing key with its algorithm, an optional key id and its public
/// JWK. `Debug` prints `[redacted]` for the key; the key bytes are wiped when it
/// is dropped (jsonwebtoken's `EncodingKey` zeroizes on drop).
#[derive(Clone)]
pub struct PrivateKey {
    alg: JwsAlgorithm,
    encoding: EncodingKey,
    public: Jwk,
    thumbprint: String,
}

impl fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PrivateKey")
            .field("alg", &self.alg)
            .field("kid", &self.kid())
            .field("thumbprint", &self.thumbprint)
            .field("key", &"[redacted]")
            .finish()
    }
}

impl PrivateKey {
    /// Reads a PEM private key for `alg`: PKCS#8 for every algorithm, PKCS#1 for
    /// RSA, SEC1 for EC. The key is checked: it must suit the algorithm (the
    /// curve, RSA or EC) and sign.
    pub fn from_pem(pem: &PrivateKeyPem, alg: JwsAlgorithm) -> Result<Self> {
        // jsonwebtoken reads and signs through the process's chosen backend.
        crate::tls::install_default_provider();
        let text = pem.expose_secret();
        let (label, der) = pem_block(text)?;
        let wrong = |what: &str| {
            Error::configuration(format!(
                "the private key is {what}, which cannot sign {alg} (it needs {})",
                alg.key_kind()
            ))
        };
        let bad = || {
            Error::configuration(format!(
                "the private key is not a valid {alg} key in PEM form (it needs {})",
                alg.key_kind()
            ))
        };
        let encoding = match (alg.is_rsa(), label.as_str()) {
            (true, "RSA PRIVATE KEY" | "PRIVATE KEY") => {
                EncodingKey::from_rsa_pem(text.as_bytes()).map_err(|_| bad())?
            }
            (false, "PRIVATE KEY") => EncodingKey::from_ec_pem(text.as_bytes()).map_err(|_| bad())?,
            // jsonwebtoken reads EC keys as PKCS#8 only: the SEC1 key is wrapped in
            // a PKCS#8 PrivateKeyInfo for the algorithm's curve (RFC 5915, RFC 5208).
            (false, "EC PRIVATE KEY") => EncodingKey::from_ec_der(&sec1_to_pkcs8(&der, alg)),
            (true, "EC PRIVATE KEY") => return Err(wrong("an EC key")),
            (false, "RSA PRIVATE KEY") => return Err(wrong("an RSA key")),
            (_, "ENCRYPTED PRIVATE KEY") => {
                return Err(Error::configuration(
                    "the private key is encrypted; give it unencrypted (PKCS#8, SEC1 or PKCS#1)",
                ));
            }
            _ => {
                return Err(Error::configuration(
                    "the PEM is not a private key (expected PRIVATE KEY, EC PRIVATE KEY or RSA PRIVATE KEY)",
                ));
            }
        };
        Self::from_encoding_key(encoding, alg).map_err(|_| bad())
    }

    /// Reads a PEM private key, taking the first algorithm of `algs` it suits
    /// (an EC key's curve decides between ES256 and ES384; an RSA key takes the
    /// first RSA algorithm listed).
    pub fn from_pem_any(pem: &PrivateKeyPem, algs: &[JwsAlgorithm]) -> Result<Self> {
        let mut last = None;
        for alg in algs {
            match Self::from_pem(pem, *alg) {
                Ok(key) => return Ok(key),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| Error::configuration("no signature algorithm to read the key for")))
    }

    /// A new key for `alg` (P-256 or P-384, or RSA of [`RSA_KEY_BITS`]).
    pub fn generate(alg: JwsAlgorithm) -> Result<Self> {
        Self::from_pem(&Self::generate_pem(alg)?, alg)
    }

    /// A new key for `alg`, as unencrypted PKCS#8 PEM (`-----BEGIN PRIVATE KEY-----`),
    /// to keep in a file or a secret store.
    pub fn generate_pem(alg: JwsAlgorithm) -> Result<PrivateKeyPem> {
        // RustCrypto's key types, whatever crypto backend signs: they generate
        // RSA keys too (ring cannot), and jsonwebtoken's own backend brings them.
        use pkcs8::EncodePrivateKey;
        let failed = |_| Error::internal("the key could not be generated");
        let mut rng = rand_core::OsRng;
        let der = match alg {
            JwsAlgorithm::Es256 => p256::SecretKey::random(&mut rng).to_pkcs8_der().map_err(failed)?,
            JwsAlgorithm::Es384 => p384::SecretKey::random(&mut rng).to_pkcs8_der().map_err(failed)?,
            JwsAlgorithm::Rs256 | JwsAlgorithm::Rs384 | JwsAlgorithm::Ps256 => {
                let key = rsa::RsaPrivateKey::new(&mut rng, RSA_KEY_BITS)
                    .map_err(|_| Error::internal("the key could not be generated"))?;
                key.to_pkcs8_der().map_err(failed)?
            }
        };
        Ok(PrivateKeyPem::new(pem_encode("PRIVATE KEY", der.as_bytes()).as_str()))
    }

    fn from_encoding_key(encoding: EncodingKey, alg: JwsAlgorithm) -> Result<Self> {
        crate::tls::install_default_provider();
        // Builds the public JWK from the key (it fails for a key of the wrong
        // curve or type), then signs once: a key that parses can still fail to
        // sign (a truncated RSA key, a short one).
        let mut public = Jwk::from_encoding_key(&encoding, alg.jose())
            .map_err(|_| Error::configuration(format!("the key does not suit {alg}")))?;
        public.common.public_key_use = Some(PublicKeyUse::Signature);
        jsonwebtoken::crypto::sign(b"check", &encoding, alg.jose())
            .map_err(|_| Error::configuration(format!("the key cannot sign {alg}")))?;
        let thumbprint = jwk_thumbprint(&public);
        Ok(Self { alg, encoding, public, thumbprint })
    }

    /// The same key, announced under key id `kid` (in its public JWK and the
    /// `kid` header of what it signs).
    pub fn with_kid(mut self, kid: impl Into<String>) -> Self {
        self.public.common.key_id = Some(kid.into());
        self
    }

    /// The algorithm.
    pub fn algorithm(&self) -> JwsAlgorithm {
        self.alg
    }

    /// The key id, if one was given.
    pub fn kid(&self) -> Option<&str> {
        self.public.common.key_id.as_deref()
    }

    /// The public JWK: `kty`, the public members (`n`, `e` or `crv`, `x`, `y`),
    /// `alg`, `use: sig` and the `kid` if there is one. Never a private member.
    pub fn public_jwk(&self) -> &Jwk {
        &self.public
    }

    /// The RFC 7638 SHA-256 thumbprint of the public key, base64url: DPoP's `jkt`.
    pub fn thumbprint(&self) -> &str {
        &self.thumbprint
    }

    /// A JOSE header for this key: `alg`, and `kid` if there is one.
    pub fn header(&self) -> Header {
        let mut header = Header::new(self.alg.jose());
        header.kid = self.public.common.key_id.clone();
        header
    }

    /// Signs `claims` under `header` (whose `alg` must be this key's) into a
    /// compact JWS. The result is a credential while it is valid: it is wiped on drop.
    pub fn sign<T: Serialize>(&self, header: &Header, claims: &T) -> Result<Zeroizing<String>> {
        if header.alg != self.alg.jose() {
            return Err(Error::configuration(format!(
                "a {} header cannot be signed with a {} key",
                header.alg_name(),
                self.alg
            )));
        }
        crate::tls::install_default_provider();
        jsonwebtoken::encode(header, claims, &self.encoding).map(Zeroizing::new).map_err(|e| {
            // Its wording is the library's; it never holds key bytes.
            let kind = format!("{:?}", e.kind());
            Error::configuration(format!(
                "cannot sign with the {} key: {}",
                self.alg,
                kind.split(['(', ' ']).next().unwrap_or_default()
            ))
        })
    }
}

/// The name of a header's algorithm, for messages.
trait AlgName {
    fn alg_name(&self) -> String;
}

impl AlgName for Header {
    fn alg_name(&self) -> String {
        format!("{:?}", self.alg)
    }
}

/// The RFC 7638 SHA-256 thumbprint of a public JWK, base64url without padding:
/// the hash of its required members only, in lexicographic order.
pub fn jwk_thumbprint(jwk: &Jwk) -> String {
    crate::tls::install_default_provider();
    jwk.thumbprint(ThumbprintHash::SHA256)
}

/// base64url(SHA-256(`data`)) without padding: DPoP's `ath` of an access token.
pub fn sha256_base64url(data: &[u8]) -> String {
    use sha2::Digest;
    URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(data))
}

/// `-----BEGIN {label}-----`, the base64 of `der` in 64-character lines, and the
/// end line, written into a buffer that is wiped on drop.
fn pem_encode(label: &str, der: &[u8]) -> Zeroizing<String> {
    let b64 = Zeroizing::new(STANDARD.encode(der));
    let mut out = Zeroizing::new(String::with_capacity(b64.len() + b64.len() / 64 + 2 * label.len() + 40));
    out.push_str("-----BEGIN ");
    out.push_str(label);
    out.push_str("-----\n");
    for line in b64.as_bytes().chunks(64) {
        // base64 is ASCII: every chunk is valid UTF-8.
        out.push_str(std::str::from_utf8(line).unwrap_or_default());
        out.push('\n');
    }
    out.push_str("-----END ");
    out.push_str(label);
    out.push_str("-----\n");
    out
}

/// The label and DER of the first PEM block. Never echoes the text. Written here
/// rather than with the `pem` crate so that the decoded key lives only in
/// buffers that are wiped on drop.
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

/// PrivateKeyInfo { version 0, AlgorithmIdentifier { id-ecPublicKey, curve }, OCTET STRING sec1 }.
fn sec1_to_pkcs8(sec1: &[u8], alg: JwsAlgorithm) -> Zeroizing<Vec<u8>> {
    // SEQUENCE { OID 1.2.840.10045.2.1 (id-ecPublicKey), OID of the curve }
    const P256: [u8; 21] = [
        0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce,
        0x3d, 0x03, 0x01, 0x07,
    ];
    const P384: [u8; 18] = [
        0x30, 0x10, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x05, 0x2b, 0x81, 0x04, 0x00,
        0x22,
    ];
    let alg_id: &[u8] = if alg == JwsAlgorithm::Es256 { &P256 } else { &P384 };
    let mut inner = Zeroizing::new(vec![0x02, 0x01, 0x00]);
    inner.extend_from_slice(alg_id);
    inner.push(0x04);
    der_len(sec1.len(), &mut inner);
    inner.extend_from_slice(sec1);
    let mut out = Zeroizing::new(vec![0x30]);
    der_len(inner.len(), &mut out);
    out.extend_from_slice(&inner);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thumbprints_match_the_rfc_vectors() {
        // RFC 9449's example key, whose `cnf.jkt` the RFC gives.
        let ec: Jwk = serde_json::from_str(
            r#"{"kty":"EC","x":"l8tFrhx-34tV3hRICRDY9zCkDlpBhF42UQUfWVAWBFs","y":"9VE4jf_Ok_o64zbTTlcuNJajHmt6v9TDVrU0CdvGRDA","crv":"P-256"}"#,
        )
        .unwrap();
        assert_eq!(jwk_thumbprint(&ec), "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I");
        // RFC 7638 §3.1, whose members besides the required ones do not count.
        let rsa: Jwk = serde_json::from_str(
            r#"{"kty":"RSA","n":"0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw","e":"AQAB","alg":"RS256","kid":"2011-04-29"}"#,
        )
        .unwrap();
        assert_eq!(jwk_thumbprint(&rsa), "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs");
    }

    #[test]
    fn ath_matches_the_rfc_example() {
        assert_eq!(
            sha256_base64url(b"Kz~8mXK1EalYznwH-LC-1fBAo.4Ljp~zsPE_NeO.gxU"),
            "fUHyO2r2Z3DZ53EsNrWBb0xWXoaNy59IiKCAqksmQEo"
        );
    }

    #[test]
    fn generated_keys_read_back_and_publish_no_private_member() {
        for alg in JwsAlgorithm::ALL {
            let pem = PrivateKey::generate_pem(alg).unwrap();
            assert!(pem.expose_secret().starts_with("-----BEGIN PRIVATE KEY-----\n"), "{alg}");
            let key = PrivateKey::from_pem(&pem, alg).unwrap().with_kid("k1");
            let again = PrivateKey::from_pem(&pem, alg).unwrap();
            assert_eq!(key.thumbprint(), again.thumbprint(), "{alg}: a stable thumbprint");
            let json = serde_json::to_value(key.public_jwk()).unwrap();
            for private in ["d", "p", "q", "dp", "dq", "qi", "oth", "k"] {
                assert!(json.get(private).is_none(), "{alg}: `{private}` in {json}");
            }
            assert_eq!(json["alg"], alg.as_str());
            assert_eq!(json["use"], "sig");
            assert_eq!(json["kid"], "k1");
            assert!(!format!("{key:?}").contains(&pem.expose_secret()[40..60]), "{alg}: Debug shows the key");
            // It signs, under its own algorithm only.
            let jws = key.sign(&key.header(), &serde_json::json!({"a": 1})).unwrap();
            assert_eq!(jws.split('.').count(), 3);
            let other = if alg == JwsAlgorithm::Es256 { JwsAlgorithm::Rs256 } else { JwsAlgorithm::Es256 };
            let mut header = key.header();
            header.alg = other.jose();
            assert!(key.sign(&header, &serde_json::json!({})).is_err());
        }
    }

    #[test]
    fn wrong_keys_are_typed_configuration_errors() {
        let p384 = PrivateKey::generate_pem(JwsAlgorithm::Es384).unwrap();
        let rsa = PrivateKey::generate_pem(JwsAlgorithm::Rs256).unwrap();
        let cases = [(&p384, JwsAlgorithm::Es256), (&p384, JwsAlgorithm::Rs384), (&rsa, JwsAlgorithm::Es384)];
        for (pem, alg) in cases {
            let e = PrivateKey::from_pem(pem, alg).unwrap_err();
            assert_eq!(e.kind(), crate::ErrorKind::Configuration, "{alg}: {e}");
            assert!(e.to_string().contains(alg.as_str()), "{e}");
        }
        for junk in ["", "not a key", "-----BEGIN PRIVATE KEY-----\n!!!\n-----END PRIVATE KEY-----"] {
            let e = PrivateKey::from_pem(&PrivateKeyPem::new(junk), JwsAlgorithm::Es256).unwrap_err();
            assert_eq!(e.kind(), crate::ErrorKind::Configuration);
        }
        let any = PrivateKey::from_pem_any(&p384, &JwsAlgorithm::ALL).unwrap();
        assert_eq!(any.algorithm(), JwsAlgorithm::Es384);
        let any = PrivateKey::from_pem_any(&rsa, &JwsAlgorithm::ALL).unwrap();
        assert_eq!(any.algorithm(), JwsAlgorithm::Rs384);
    }
}
