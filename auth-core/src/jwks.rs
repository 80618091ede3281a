//! Several signing keys at once, and the public JWK Set they make: what a
//! `private_key_jwt` client hosts at its registered JWK Set URL (SMART Backend
//! Services; Epic requires one) so that it can rotate keys without the server
//! ever seeing a failed assertion.
//!
//! Rotation, as the servers' caching makes it safe:
//!
//! 1. **publish** the new key ([`KeyRing::publish`]): it is in the JWK Set, but
//!    the old key still signs;
//! 2. once every server has fetched the set again (the set's `Cache-Control`
//!    max-age, and at least the server's own minimum: oidc-provider keeps a set
//!    for 60 s at least), **activate** it ([`KeyRing::activate`], or give
//!    `publish` the time): the newest active key signs;
//! 3. once the last assertion signed with the old key has expired (assertions
//!    live a minute by default, five at most), **retire** the old key
//!    ([`KeyRing::retire`]): it leaves the set.
//!
//! ```
//! use auth_core::jwks::KeyRing;
//! use auth_core::keys::{JwsAlgorithm, PrivateKey};
//!
//! let ring = KeyRing::new(PrivateKey::generate(JwsAlgorithm::Es384)?.with_kid("2026-05"))?;
//! ring.publish(PrivateKey::generate(JwsAlgorithm::Es384)?.with_kid("2026-11"), None)?;
//! assert_eq!(ring.signing_key()?.kid(), Some("2026-05"));
//! ring.activate("2026-11")?;
//! assert_eq!(ring.signing_key()?.kid(), Some("2026-11"));
//! ring.retire("2026-05")?;
//! assert_eq!(ring.jwks().keys.len(), 1);
//! # Ok::<(), auth_core::Error>(())
//! ```

use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::SystemTime;

use crate::error::{Error, Result};
use crate::keys::{JwkSet, PrivateKey};

/// The `Cache-Control` a JWK Set is best served with: short, so a rotation's
/// first step is seen quickly, and servers do not refetch on every assertion.
pub const JWKS_CACHE_CONTROL: &str = "public, max-age=300";

/// One key of a ring, and from when it signs (`None`: not yet).
#[derive(Debug)]
struct Member {
    key: Arc<PrivateKey>,
    signs_from: Option<SystemTime>,
    /// Order of addition: among active keys, the newest signs.
    added: u64,
}

#[derive(Debug, Default)]
struct Members {
    keys: Vec<Member>,
    next: u64,
}

/// Signing keys with key ids: every one is published in [`KeyRing::jwks`], the
/// newest active one signs ([`KeyRing::signing_key`]). Cheap to clone: clones
/// share the keys, so the source that signs and the server that publishes the
/// set see one ring.
#[derive(Clone)]
pub struct KeyRing {
    members: Arc<Mutex<Members>>,
}

impl fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let members = self.lock();
        f.debug_struct("KeyRing")
            .field("kids", &members.keys.iter().map(|m| m.key.kid()).collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl KeyRing {
    /// A ring whose one key signs from now. The key needs a key id.
    pub fn new(key: PrivateKey) -> Result<Self> {
        let ring = Self { members: Arc::new(Mutex::new(Members::default())) };
        ring.add(key)?;
        Ok(ring)
    }

    /// Adds `key`, signing from now (it is the newest). Prefer
    /// [`KeyRing::publish`] then [`KeyRing::activate`] for a key servers have not
    /// fetched yet.
    pub fn add(&self, key: PrivateKey) -> Result<()> {
        self.insert(key, Some(SystemTime::now()))
    }

    /// Adds `key` to the published set; it signs from `signs_from` on, or once
    /// [`KeyRing::activate`]d when `None`.
    pub fn publish(&self, key: PrivateKey, signs_from: Option<SystemTime>) -> Result<()> {
        self.insert(key, signs_from)
    }

    fn insert(&self, key: PrivateKey, signs_from: Option<SystemTime>) -> Result<()> {
        let Some(kid) = key.kid().filter(|k| !k.trim().is_empty()).map(str::to_owned) else {
            return Err(Error::configuration(
                "a key of a JWK Set needs a key id (`kid`): servers pick the key by it",
            ));
        };
        let mut members = self.lock();
        if members.keys.iter().any(|m| m.key.kid() == Some(kid.as_str())) {
            return Err(Error::configuration(format!("the key id `{kid}` is already in the ring")));
        }
        let added = members.next;
        members.next += 1;
        members.keys.push(Member { key: Arc::new(key), signs_from, added });
        Ok(())
    }

    /// Makes the published key `kid` sign from now on (it becomes the newest active key).
    pub fn activate(&self, kid: &str) -> Result<()> {
        let mut members = self.lock();
        let next = members.next;
        let member = members
            .keys
            .iter_mut()
            .find(|m| m.key.kid() == Some(kid))
            .ok_or_else(|| Error::configuration(format!("no key `{kid}` in the ring")))?;
        member.signs_from = Some(SystemTime::now());
        member.added = next;
        members.next += 1;
        Ok(())
    }

    /// Removes `kid` from the ring and the published set. The key signing now
    /// cannot be retired: activate its successor first.
    pub fn retire(&self, kid: &str) -> Result<()> {
        let signing = self.signing_key()?;
        if signing.kid() == Some(kid) {
            return Err(Error::configuration(format!(
                "`{kid}` is the key signing now; activate its successor before retiring it"
            )));
        }
        let mut members = self.lock();
        let before = members.keys.len();
        members.keys.retain(|m| m.key.kid() != Some(kid));
        if members.keys.len() == before {
            return Err(Error::configuration(format!("no key `{kid}` in the ring")));
        }
        Ok(())
    }

    /// The key that signs now: the newest whose time to sign has come (the
    /// oldest key, if none has: a ring always signs with something published).
    /// Fails only for a ring whose every key was retired, which `retire` refuses.
    pub fn signing_key(&self) -> Result<Arc<PrivateKey>> {
        let now = SystemTime::now();
        let members = self.lock();
        let active =
            members.keys.iter().filter(|m| m.signs_from.is_some_and(|t| t <= now)).max_by_key(|m| m.added);
        active
            .or_else(|| members.keys.first())
            .map(|m| m.key.clone())
            .ok_or_else(|| Error::configuration("the key ring has no key"))
    }

    /// The key ids, in the order the keys were added.
    pub fn kids(&self) -> Vec<String> {
        self.lock().keys.iter().filter_map(|m| m.key.kid().map(str::to_owned)).collect()
    }

    /// The public JWK Set of every key in the ring: public members, `kid`, `alg`
    /// and `use` only.
    pub fn jwks(&self) -> JwkSet {
        JwkSet { keys: self.lock().keys.iter().map(|m| m.key.public_jwk().clone()).collect() }
    }

    /// [`KeyRing::jwks`] as the JSON document to host.
    pub fn jwks_json(&self) -> String {
        // A JwkSet of public JWKs is plain strings and arrays: it always serializes.
        serde_json::to_string(&self.jwks()).unwrap_or_else(|_| r#"{"keys":[]}"#.to_owned())
    }

    fn lock(&self) -> MutexGuard<'_, Members> {
        // Every update is a single push, retain or assignment: a poisoned lock
        // holds consistent data.
        self.members.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// One JWK Set of several keys read from PEM, as `fhir-auth keys jwks` prints it.
pub fn jwks_of<'a>(keys: impl IntoIterator<Item = &'a PrivateKey>) -> Result<JwkSet> {
    let mut set = JwkSet { keys: Vec::new() };
    for key in keys {
        let kid = key.kid().ok_or_else(|| Error::configuration("a key of a JWK Set needs a key id"))?;
        if set.keys.iter().any(|k| k.common.key_id.as_deref() == Some(kid)) {
            return Err(Error::configuration(format!("the key id `{kid}` is given twice")));
        }
        set.keys.push(key.public_jwk().clone());
    }
    Ok(set)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::JwsAlgorithm;
    use std::time::Duration;

    fn key(kid: &str) -> PrivateKey {
        PrivateKey::generate(JwsAlgorithm::Es256).unwrap().with_kid(kid)
    }

    #[test]
    fn publish_activate_retire() {
        let ring = KeyRing::new(key("a")).unwrap();
        ring.publish(key("b"), None).unwrap();
        ring.publish(key("c"), Some(SystemTime::now() + Duration::from_secs(3600))).unwrap();
        assert_eq!(ring.signing_key().unwrap().kid(), Some("a"), "published keys do not sign yet");
        assert_eq!(ring.kids(), ["a", "b", "c"]);
        assert!(ring.retire("a").is_err(), "the signing key cannot be retired");
        ring.activate("b").unwrap();
        assert_eq!(ring.signing_key().unwrap().kid(), Some("b"));
        ring.retire("a").unwrap();
        let json: serde_json::Value = serde_json::from_str(&ring.jwks_json()).unwrap();
        let kids: Vec<_> = json["keys"].as_array().unwrap().iter().map(|k| k["kid"].clone()).collect();
        assert_eq!(kids, ["b", "c"]);
        assert!(json["keys"].as_array().unwrap().iter().all(|k| k.get("d").is_none()));
        // A key whose time has come signs without being activated.
        ring.publish(key("d"), Some(SystemTime::now() - Duration::from_secs(1))).unwrap();
        assert_eq!(ring.signing_key().unwrap().kid(), Some("d"));
    }

    #[test]
    fn key_ids_are_required_and_unique() {
        assert!(KeyRing::new(PrivateKey::generate(JwsAlgorithm::Es256).unwrap()).is_err());
        let ring = KeyRing::new(key("a")).unwrap();
        assert!(ring.add(key("a")).is_err());
        assert!(ring.activate("zz").is_err());
        assert!(ring.retire("zz").is_err());
        assert!(jwks_of([&key("x"), &key("x")]).is_err());
        assert_eq!(jwks_of([&key("x"), &key("y")]).unwrap().keys.len(), 2);
    }
}
