//! A fleet-wide [`TokenStore`] on Redis: every process that points at the same
//! Redis (and prefix) shares tokens and fetch leases, so a fleet makes one token
//! request where it would otherwise make one per process.
//!
//! Layout (no secret in a key name; keys are the [`CacheKey`] fingerprint):
//!
//! - `<prefix>token:<fingerprint>`: `v1.<sha256(access token)>.<key id>.<nonce>.<ciphertext>`,
//!   expiring with the token. The hash lets `remove` compare-and-delete on the
//!   server without the plaintext.
//! - `<prefix>lease:<fingerprint>`: the lease holder's random id, `SET NX PX`.
//!
//! Every call has a short deadline. A Redis that is down or slow makes calls fail
//! with [`ErrorKind::Store`](crate::ErrorKind::Store), which the token manager
//! survives by fetching without a lease and keeping the token in process; the
//! connection manager reconnects in the background and sharing resumes.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Client, Script};
use sha2::{Digest, Sha256};
use tokio::sync::OnceCell;

use super::crypto::{Keyring, StoreKey};
use super::{Lease, TokenStore};
use crate::error::{Error, Result};
use crate::source::CacheKey;
use crate::token::Token;

/// Deletes the token entry only if it still holds the token with this hash
/// (`ARGV[1]`), which the value carries in clear after `v1.`.
const REMOVE_IF_SAME: &str = r"
local v = redis.call('GET', KEYS[1])
if v and string.sub(v, 4, 67) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
";

/// Deletes the lease only if this holder (`ARGV[1]`) still has it: a lease that
/// lapsed and was taken by another instance is left alone.
const RELEASE_IF_HOLDER: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
";

/// Extends the lease (`ARGV[2]` ms) only if this holder (`ARGV[1]`) still has it.
const RENEW_IF_HOLDER: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
";

/// Default deadline of each Redis call.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_millis(250);
/// Default prefix of every key this store writes.
pub const DEFAULT_PREFIX: &str = "fhir-auth:";

/// Tokens in Redis, encrypted with AES-256-GCM, shared by every process that uses
/// the same Redis, prefix and key. Build one with [`RedisStore::builder`] and
/// share it (it is cheap to clone) between the token managers of a process.
///
/// `Debug` shows the prefix, timeout and key ids, never key bytes or the URL
/// (which may hold a password).
#[derive(Clone)]
pub struct RedisStore {
    inner: Arc<Inner>,
}

struct Inner {
    client: Client,
    connection: OnceCell<ConnectionManager>,
    keys: Keyring,
    prefix: String,
    timeout: Duration,
    remove_script: Script,
    release_script: Script,
    renew_script: Script,
}

/// Builds a [`RedisStore`].
pub struct RedisStoreBuilder {
    url: String,
    current: StoreKey,
    older: Vec<StoreKey>,
    prefix: String,
    timeout: Duration,
}

impl fmt::Debug for RedisStoreBuilder {
    // Not derived: the URL can carry Redis's password (`redis://:pw@host`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisStoreBuilder")
            .field("current_key", &self.current)
            .field("older_keys", &self.older)
            .field("prefix", &self.prefix)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl RedisStoreBuilder {
    /// Also decrypts entries written under `key` (an older key, during rotation).
    ///
    /// Rotate in two rolling deploys, so that no process meets an entry it cannot
    /// read (a miss, and a token request): first every process learns the new key
    /// here, as an old key, while still writing with the current one; then every
    /// process writes with the new key and keeps the previous one here until what
    /// it wrote has expired.
    pub fn old_key(mut self, key: StoreKey) -> Self {
        self.older.push(key);
        self
    }

    /// Prefix of every key written (default `fhir-auth:`), to keep apart
    /// environments or applications sharing one Redis.
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// Deadline of each Redis call (default 250 ms; at least 1 ms). A call that
    /// misses it fails as a store error and the manager carries on without Redis.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout.max(Duration::from_millis(1));
        self
    }

    /// The store. Nothing is connected yet: the connection is made on first use
    /// and remade whenever it drops, so a Redis that is down at start-up is not
    /// an error here.
    pub fn build(self) -> Result<RedisStore> {
        // The URL is not quoted in the error: it may carry a password.
        let client = Client::open(self.url.as_str())
            .map_err(|_| Error::configuration("invalid Redis URL (expected redis://host:port/db)"))?;
        if let Some(dup) = self.older.iter().find(|k| k.id() == self.current.id()) {
            return Err(Error::configuration(format!(
                "store key id {:?} is given as both the current and an older key",
                dup.id()
            )));
        }
        Ok(RedisStore {
            inner: Arc::new(Inner {
                client,
                connection: OnceCell::new(),
                keys: Keyring::new(self.current, self.older),
                prefix: self.prefix,
                timeout: self.timeout,
                remove_script: Script::new(REMOVE_IF_SAME),
                release_script: Script::new(RELEASE_IF_HOLDER),
                renew_script: Script::new(RENEW_IF_HOLDER),
            }),
        })
    }
}

impl RedisStore {
    /// A builder for a store on the Redis at `url` (`redis://[:password@]host:port[/db]`),
    /// encrypting under `key`.
    pub fn builder(url: impl Into<String>, key: StoreKey) -> RedisStoreBuilder {
        RedisStoreBuilder {
            url: url.into(),
            current: key,
            older: Vec::new(),
            prefix: DEFAULT_PREFIX.to_owned(),
            timeout: DEFAULT_TIMEOUT,
        }
    }

    /// The Redis key holding the token for `key`.
    pub fn token_key(&self, key: &CacheKey) -> String {
        format!("{}token:{}", self.inner.prefix, key.fingerprint())
    }

    fn lease_key(&self, fingerprint: &str) -> String {
        format!("{}lease:{fingerprint}", self.inner.prefix)
    }

    fn failure_key(&self, key: &CacheKey) -> String {
        format!("{}failure:{}", self.inner.prefix, key.fingerprint())
    }

    /// The shared connection. Creating it does no I/O: the connection manager
    /// connects on first use, reconnects after errors, and its own timeouts are
    /// the store's so a dead server cannot stall it for longer.
    fn connection(&self) -> Result<ConnectionManager> {
        if let Some(c) = self.inner.connection.get() {
            return Ok(c.clone());
        }
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(self.inner.timeout))
            .set_response_timeout(Some(self.inner.timeout))
            .set_number_of_retries(2)
            .set_min_delay(Duration::from_millis(20))
            .set_max_delay(Duration::from_millis(500));
        let manager = ConnectionManager::new_lazy_with_config(self.inner.client.clone(), config)
            .map_err(|e| Error::store_with("could not set up the Redis connection", e))?;
        // Two callers may race here; the loser's (unconnected) manager is dropped.
        let _ = self.inner.connection.set(manager);
        self.inner.connection.get().cloned().ok_or_else(|| Error::store("Redis connection not initialised"))
    }

    /// Runs one Redis call under the store's deadline.
    async fn call<T, F>(&self, what: &'static str, f: impl FnOnce(ConnectionManager) -> F) -> Result<T>
    where
        F: Future<Output = redis::RedisResult<T>>,
    {
        let connection = self.connection()?;
        match tokio::time::timeout(self.inner.timeout, f(connection)).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) => Err(Error::store_with(format!("Redis {what} failed"), e)),
            Err(_) => Err(Error::store(format!("Redis {what} timed out after {:?}", self.inner.timeout))),
        }
    }
}

fn token_hash(token: &Token) -> String {
    Sha256::digest(token.access_token().expose_secret().as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
}

#[async_trait]
impl TokenStore for RedisStore {
    async fn get(&self, key: &CacheKey) -> Result<Option<Arc<Token>>> {
        let redis_key = self.token_key(key);
        let k = redis_key.clone();
        let raw: Option<Vec<u8>> = self
            .call("GET", |mut c| async move { redis::cmd("GET").arg(k).query_async(&mut c).await })
            .await?;
        let Some(raw) = raw else { return Ok(None) };
        // An entry we cannot read is a miss, not an error: the manager fetches a new
        // token and overwrites it. Logged because it usually means a key mismatch.
        let plaintext = match self.inner.keys.open(&redis_key, &raw) {
            Ok(p) => p,
            Err(problem) => {
                tracing::warn!(key = %key, %problem, "unreadable token in Redis; treating as a miss");
                return Ok(None);
            }
        };
        match Token::from_stored_json(&plaintext) {
            Some(token) => Ok(Some(Arc::new(token))),
            None => {
                tracing::warn!(key = %key, "token in Redis decrypts but does not parse; treating as a miss");
                Ok(None)
            }
        }
    }

    async fn put(&self, key: &CacheKey, token: Arc<Token>) -> Result<()> {
        // The entry lives exactly as long as the token: Redis forgets it on expiry.
        let remaining = token.remaining(SystemTime::now());
        if remaining.is_zero() {
            return Ok(());
        }
        let redis_key = self.token_key(key);
        let json = token.to_stored_json().map_err(|e| Error::store_with("could not serialize token", e))?;
        let sealed = self.inner.keys.seal(&redis_key, &token_hash(&token), &json)?;
        let failure_key = self.failure_key(key);
        // One round trip: the token, and the end of any failure the fleet shared.
        self.call("SET", |mut c| async move {
            redis::pipe()
                .cmd("SET")
                .arg(redis_key)
                .arg(sealed)
                .arg("PX")
                .arg(millis(remaining))
                .ignore()
                .cmd("DEL")
                .arg(failure_key)
                .ignore()
                .query_async(&mut c)
                .await
        })
        .await
    }

    async fn remove(&self, key: &CacheKey, token: &Token) -> Result<bool> {
        let (redis_key, hash) = (self.token_key(key), token_hash(token));
        let script = &self.inner.remove_script;
        let removed: i64 = self
            .call("compare-and-delete", |mut c| async move {
                script.key(redis_key).arg(hash).invoke_async(&mut c).await
            })
            .await?;
        Ok(removed > 0)
    }

    async fn try_lease(&self, key: &CacheKey, ttl: Duration) -> Result<Option<Lease>> {
        let lease = Lease::new(key, ttl);
        let (lease_key, holder) = (self.lease_key(lease.key()), lease.holder().to_owned());
        let taken: Option<String> = self
            .call("SET NX", |mut c| async move {
                redis::cmd("SET")
                    .arg(lease_key)
                    .arg(holder)
                    .arg("NX")
                    .arg("PX")
                    .arg(millis(ttl))
                    .query_async(&mut c)
                    .await
            })
            .await?;
        Ok(taken.map(|_| lease))
    }

    async fn release(&self, lease: &Lease) -> Result<()> {
        let (lease_key, holder) = (self.lease_key(lease.key()), lease.holder().to_owned());
        let script = &self.inner.release_script;
        let _: i64 = self
            .call("lease release", |mut c| async move {
                script.key(lease_key).arg(holder).invoke_async(&mut c).await
            })
            .await?;
        Ok(())
    }

    async fn renew(&self, lease: &Lease, ttl: Duration) -> Result<bool> {
        let (lease_key, holder) = (self.lease_key(lease.key()), lease.holder().to_owned());
        let script = &self.inner.renew_script;
        let renewed: i64 = self
            .call("lease renewal", |mut c| async move {
                script.key(lease_key).arg(holder).arg(millis(ttl)).invoke_async(&mut c).await
            })
            .await?;
        Ok(renewed > 0)
    }

    async fn put_failure(&self, key: &CacheKey, ttl: Duration) -> Result<()> {
        let failure_key = self.failure_key(key);
        self.call("SET failure", |mut c| async move {
            redis::cmd("SET").arg(failure_key).arg("1").arg("PX").arg(millis(ttl)).query_async(&mut c).await
        })
        .await
    }

    async fn failure(&self, key: &CacheKey) -> Result<Option<Duration>> {
        let failure_key = self.failure_key(key);
        let left: i64 =
            self.call("PTTL", |mut c| async move {
                redis::cmd("PTTL").arg(failure_key).query_async(&mut c).await
            })
            .await?;
        // -2: no such key; -1: no expiry (not ours); else milliseconds left.
        Ok(u64::try_from(left).ok().filter(|ms| *ms > 0).map(Duration::from_millis))
    }
}

impl fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisStore")
            .field("prefix", &self.inner.prefix)
            .field("timeout", &self.inner.timeout)
            .field("keys", &self.inner.keys)
            .field("connected", &self.inner.connection.initialized())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> RedisStore {
        let key = StoreKey::new("k1", [42; 32]).unwrap();
        RedisStore::builder("redis://:hunter2@127.0.0.1:1/", key)
            .old_key(StoreKey::new("k0", [43; 32]).unwrap())
            .prefix("test:")
            .build()
            .unwrap()
    }

    #[test]
    fn debug_shows_neither_key_nor_password() {
        let shown = format!("{:?}", store());
        assert!(shown.contains("k1") && shown.contains("k0") && shown.contains("test:"), "{shown}");
        assert!(!shown.contains("hunter2") && !shown.contains("42"), "{shown}");
    }

    #[test]
    fn key_names_hold_only_the_fingerprint() {
        let key = CacheKey::builder("p", "https://idp.example/token", "client-with-name").build();
        let name = store().token_key(&key);
        assert_eq!(name, format!("test:token:{}", key.fingerprint()));
        assert!(!name.contains("client-with-name"));
    }

    #[test]
    fn bad_configuration_is_a_typed_error() {
        let key = || StoreKey::new("k1", [1; 32]).unwrap();
        let e = RedisStore::builder("not a url :hunter2", key()).build().unwrap_err();
        assert_eq!(e.kind(), crate::ErrorKind::Configuration);
        assert!(!e.to_string().contains("hunter2"));
        assert!(RedisStore::builder("redis://127.0.0.1/", key()).old_key(key()).build().is_err());
    }

    #[tokio::test]
    async fn an_unreachable_redis_is_a_quick_store_error() {
        let key = CacheKey::builder("p", "u", "c").build();
        let s = store();
        let started = std::time::Instant::now();
        let e = s.get(&key).await.unwrap_err();
        assert_eq!(e.kind(), crate::ErrorKind::Store);
        assert!(s.try_lease(&key, Duration::from_secs(1)).await.is_err());
        assert!(started.elapsed() < Duration::from_secs(2));
        assert!(!format!("{e:?}").contains("hunter2"));
    }

    #[test]
    fn stored_tokens_round_trip_with_every_field() {
        use crate::secret::{AccessToken, IdToken, RefreshToken};
        let now = SystemTime::now();
        let token = Token::new(AccessToken::new("at-value"), now, now + Duration::from_secs(90))
            .unwrap()
            .with_scope("system/Patient.rs")
            .with_refresh_token(RefreshToken::new("rt-value"))
            .with_id_token(IdToken::new("id-value"))
            .with_token_type("bearer")
            .with_extra("consented_on", serde_json::json!(1));
        let json = token.to_stored_json().unwrap();
        let back = Token::from_stored_json(&json).unwrap();
        assert!(back.same_value(&token));
        assert_eq!(back.refresh_token().map(|t| t.expose_secret()), Some("rt-value"));
        assert_eq!(back.id_token().map(|t| t.expose_secret()), Some("id-value"));
        assert_eq!((back.scope(), back.token_type()), (Some("system/Patient.rs"), "bearer"));
        assert_eq!(back.extra().get("consented_on"), Some(&serde_json::json!(1)));
        assert_eq!(back.expiry_source(), token.expiry_source());
        // Stored to the millisecond: equal within 1 ms, whichever way it rounds.
        let (a, b) = (token.expires_at(), back.expires_at());
        let apart = a.duration_since(b).or_else(|_| b.duration_since(a)).unwrap_or(Duration::MAX);
        assert!(apart < Duration::from_millis(1), "{apart:?}");
        let (a, b) = (token.issued_at(), back.issued_at());
        let apart = a.duration_since(b).or_else(|_| b.duration_since(a)).unwrap_or(Duration::MAX);
        assert!(apart < Duration::from_millis(1), "{apart:?}");
        assert!(Token::from_stored_json(b"{}").is_none());
        assert!(Token::from_stored_json(br#"{"access_token":"","token_type":"Bearer","issued_at_ms":0,"expires_at_ms":0,"expiry_source":"x"}"#).is_none());
    }
}
