//! Encryption at rest for shared stores: AES-256-GCM under named keys, so keys can
//! be rotated (new entries under the current key, old entries still readable).

use std::fmt;

use aes_gcm::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use aes_gcm::{Aes256Gcm, Key, Nonce};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use zeroize::Zeroizing;

use crate::error::{Error, Result};

/// A 32-byte AES-256-GCM key with an id, used to encrypt tokens in a shared store.
///
/// The id is stored beside each encrypted entry, so entries written under an older
/// key can still be read after rotation. The key bytes are wiped on drop and never
/// shown: `Debug` prints the id only.
#[derive(Clone)]
pub struct StoreKey {
    id: String,
    bytes: Zeroizing<[u8; 32]>,
}

impl StoreKey {
    /// A key with id `id` (1–64 characters of `A–Z a–z 0–9 _ -`: it is written into
    /// stored values, next to the ciphertext).
    pub fn new(id: impl Into<String>, bytes: [u8; 32]) -> Result<Self> {
        let id = id.into();
        let valid = !id.is_empty()
            && id.len() <= 64
            && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if !valid {
            return Err(Error::configuration(
                "store key id must be 1-64 characters of A-Z, a-z, 0-9, '_' or '-'",
            ));
        }
        Ok(Self { id, bytes: Zeroizing::new(bytes) })
    }

    /// A key from its standard or URL-safe base64 form (as kept in an environment
    /// variable or a secret manager), which must decode to exactly 32 bytes.
    pub fn from_base64(id: impl Into<String>, encoded: &str) -> Result<Self> {
        use base64::engine::general_purpose::{STANDARD, URL_SAFE};
        let encoded = encoded.trim();
        let decoded = Zeroizing::new(
            [STANDARD, URL_SAFE]
                .iter()
                .find_map(|e| e.decode(encoded).ok())
                .or_else(|| B64.decode(encoded.trim_end_matches('=')).ok())
                // The error does not say why: its text could quote the value.
                .ok_or_else(|| Error::configuration("store key is not valid base64"))?,
        );
        let bytes: [u8; 32] = decoded
            .as_slice()
            .try_into()
            .map_err(|_| Error::configuration("store key must be 32 bytes (AES-256)"))?;
        Self::new(id, bytes)
    }

    /// The key's id.
    pub fn id(&self) -> &str {
        &self.id
    }

    fn cipher(&self) -> Aes256Gcm {
        Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(self.bytes.as_slice()))
    }
}

impl fmt::Debug for StoreKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoreKey").field("id", &self.id).field("bytes", &"[redacted]").finish()
    }
}

/// Why a stored value could not be opened. Never carries any of the value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OpenError {
    /// Not in the `v1.…` format.
    Malformed,
    /// Written under a key id this store was not given.
    UnknownKey,
    /// Authentication failed: wrong key bytes, tampering, or moved to another key.
    Undecryptable,
}

impl fmt::Display for OpenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Malformed => "stored value is malformed",
            Self::UnknownKey => "stored value was encrypted under an unknown key id",
            Self::Undecryptable => "stored value does not decrypt under its key (wrong key or tampered)",
        })
    }
}

/// The keys of one store: the current one for writing, all of them for reading.
#[derive(Clone)]
pub(crate) struct Keyring {
    current: StoreKey,
    older: Vec<StoreKey>,
}

/// The length of the token hash at the start of a sealed value (hex SHA-256).
pub(crate) const HASH_LEN: usize = 64;
const VERSION: &str = "v1";

impl Keyring {
    pub(crate) fn new(current: StoreKey, older: Vec<StoreKey>) -> Self {
        Self { current, older }
    }

    pub(crate) fn current_id(&self) -> &str {
        self.current.id()
    }

    pub(crate) fn older_ids(&self) -> Vec<&str> {
        self.older.iter().map(StoreKey::id).collect()
    }

    /// `v1.<token hash>.<key id>.<nonce>.<ciphertext>`. The token hash comes first,
    /// in clear, so the server can compare-and-delete without the plaintext; it is
    /// also bound in as associated data, with `context` (the entry's key), so a
    /// value moved to another entry or given another hash does not open.
    pub(crate) fn seal(&self, context: &str, token_hash: &str, plaintext: &[u8]) -> Result<String> {
        let nonce = Aes256Gcm::generate_nonce(&mut OsRng);
        let aad = associated_data(context, self.current.id(), token_hash);
        let ciphertext = self
            .current
            .cipher()
            .encrypt(&nonce, Payload { msg: plaintext, aad: aad.as_bytes() })
            .map_err(|_| Error::store("could not encrypt token"))?;
        Ok(format!(
            "{VERSION}.{token_hash}.{}.{}.{}",
            self.current.id(),
            B64.encode(nonce),
            B64.encode(ciphertext)
        ))
    }

    /// The plaintext of a value made by [`Keyring::seal`] for the same `context`.
    pub(crate) fn open(
        &self,
        context: &str,
        sealed: &[u8],
    ) -> std::result::Result<Zeroizing<Vec<u8>>, OpenError> {
        let text = std::str::from_utf8(sealed).map_err(|_| OpenError::Malformed)?;
        let mut parts = text.split('.');
        let (Some(VERSION), Some(hash), Some(id), Some(nonce), Some(ciphertext), None) =
            (parts.next(), parts.next(), parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(OpenError::Malformed);
        };
        if hash.len() != HASH_LEN {
            return Err(OpenError::Malformed);
        }
        let key = std::iter::once(&self.current)
            .chain(&self.older)
            .find(|k| k.id() == id)
            .ok_or(OpenError::UnknownKey)?;
        let nonce = B64.decode(nonce).map_err(|_| OpenError::Malformed)?;
        if nonce.len() != 12 {
            return Err(OpenError::Malformed);
        }
        let ciphertext = B64.decode(ciphertext).map_err(|_| OpenError::Malformed)?;
        let aad = associated_data(context, id, hash);
        key.cipher()
            .decrypt(Nonce::from_slice(&nonce), Payload { msg: &ciphertext, aad: aad.as_bytes() })
            .map(Zeroizing::new)
            .map_err(|_| OpenError::Undecryptable)
    }
}

impl fmt::Debug for Keyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Keyring")
            .field("current", &self.current_id())
            .field("older", &self.older_ids())
            .finish()
    }
}

fn associated_data(context: &str, key_id: &str, token_hash: &str) -> String {
    format!("fhir-auth/{VERSION}/{context}/{key_id}/{token_hash}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(id: &str, b: u8) -> StoreKey {
        StoreKey::new(id, [b; 32]).unwrap()
    }

    #[test]
    fn seal_open_round_trip_and_rotation() {
        let hash = "a".repeat(HASH_LEN);
        let old = Keyring::new(key("k1", 1), vec![]);
        let sealed = old.seal("ctx", &hash, b"secret-plaintext").unwrap();
        assert!(!sealed.contains("secret"));
        assert_eq!(&old.open("ctx", sealed.as_bytes()).unwrap()[..], b"secret-plaintext");
        // Rotated: new key current, old key kept for reading.
        let rotated = Keyring::new(key("k2", 2), vec![key("k1", 1)]);
        assert_eq!(&rotated.open("ctx", sealed.as_bytes()).unwrap()[..], b"secret-plaintext");
        assert!(rotated.seal("ctx", &hash, b"x").unwrap().contains(".k2."));
        // Old key dropped, same id with other bytes, other context: all refused.
        assert_eq!(
            Keyring::new(key("k2", 2), vec![]).open("ctx", sealed.as_bytes()),
            Err(OpenError::UnknownKey)
        );
        assert_eq!(
            Keyring::new(key("k1", 9), vec![]).open("ctx", sealed.as_bytes()),
            Err(OpenError::Undecryptable)
        );
        assert_eq!(old.open("other", sealed.as_bytes()), Err(OpenError::Undecryptable));
        assert_eq!(old.open("ctx", b"garbage"), Err(OpenError::Malformed));
    }

    #[test]
    fn keys_are_validated_and_redacted() {
        assert!(StoreKey::new("bad.id", [0; 32]).is_err());
        assert!(StoreKey::new("", [0; 32]).is_err());
        assert!(StoreKey::from_base64("k", "c2hvcnQ=").is_err());
        let k = StoreKey::from_base64("k", &B64.encode([7u8; 32])).unwrap();
        assert_eq!(k.id(), "k");
        let shown = format!("{k:?}");
        assert!(shown.contains("[redacted]") && !shown.contains('7'), "{shown}");
    }
}
