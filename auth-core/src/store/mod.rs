//! Where tokens are kept: the [`TokenStore`] trait and the default in-memory store.
//!
//! A store is a dumb shelf plus a lease. The token manager decides what to fetch
//! and when; the store only remembers tokens by [`CacheKey`] and hands out leases,
//! so that several managers (in one process, or across a fleet with a shared store)
//! can agree that exactly one of them fetches.

#[cfg(feature = "redis")]
mod crypto;
mod memory;
#[cfg(feature = "redis")]
pub mod redis;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use crate::error::Result;
use crate::source::CacheKey;
use crate::token::Token;

#[cfg(feature = "redis")]
pub use self::redis::{RedisStore, RedisStoreBuilder};
#[cfg(feature = "redis")]
pub use crypto::StoreKey;
pub use memory::MemoryStore;

/// Keeps tokens by key, and leases the right to fetch one.
#[async_trait]
pub trait TokenStore: Send + Sync + fmt::Debug + 'static {
    /// The token stored under `key`, if any (possibly expired: the manager judges).
    async fn get(&self, key: &CacheKey) -> Result<Option<Arc<Token>>>;

    /// Stores `token` under `key`, replacing what was there.
    async fn put(&self, key: &CacheKey, token: Arc<Token>) -> Result<()>;

    /// Removes the entry under `key` only if it holds the same access token as
    /// `token`, so a newer token that another caller stored meanwhile survives.
    /// Returns whether something was removed.
    async fn remove(&self, key: &CacheKey, token: &Token) -> Result<bool>;

    /// Tries to take the right to fetch a token for `key` for at most `ttl`.
    /// `None` means someone else holds it; it lapses by itself if its holder dies.
    async fn try_lease(&self, key: &CacheKey, ttl: Duration) -> Result<Option<Lease>>;

    /// Gives a lease back early. Releasing a lease that has lapsed and been taken by
    /// someone else must not affect the new holder.
    async fn release(&self, lease: &Lease) -> Result<()>;

    /// Extends `lease` to `ttl` from now if its holder still has it (a lease that
    /// lapsed and was taken by someone else is left alone); whether it did. The
    /// manager renews the lease it holds while its fetch runs, so the lease can be
    /// short (a holder that dies stalls the others only that long) and still
    /// outlive a slow fetch. The default does not renew, and says so.
    async fn renew(&self, lease: &Lease, ttl: Duration) -> Result<bool> {
        let _ = (lease, ttl);
        Ok(false)
    }

    /// Records for `ttl` that a fetch for `key` just failed, so every manager
    /// sharing the store backs off with it instead of trying the failing provider
    /// in turn. Storing a token under `key` ends it. The default shares nothing.
    async fn put_failure(&self, key: &CacheKey, ttl: Duration) -> Result<()> {
        let _ = (key, ttl);
        Ok(())
    }

    /// How much longer a failure recorded for `key` holds, if one does.
    async fn failure(&self, key: &CacheKey) -> Result<Option<Duration>> {
        let _ = key;
        Ok(None)
    }
}

#[async_trait]
impl<T: TokenStore + ?Sized> TokenStore for Arc<T> {
    async fn get(&self, key: &CacheKey) -> Result<Option<Arc<Token>>> {
        (**self).get(key).await
    }
    async fn put(&self, key: &CacheKey, token: Arc<Token>) -> Result<()> {
        (**self).put(key, token).await
    }
    async fn remove(&self, key: &CacheKey, token: &Token) -> Result<bool> {
        (**self).remove(key, token).await
    }
    async fn try_lease(&self, key: &CacheKey, ttl: Duration) -> Result<Option<Lease>> {
        (**self).try_lease(key, ttl).await
    }
    async fn release(&self, lease: &Lease) -> Result<()> {
        (**self).release(lease).await
    }
    async fn renew(&self, lease: &Lease, ttl: Duration) -> Result<bool> {
        (**self).renew(lease, ttl).await
    }
    async fn put_failure(&self, key: &CacheKey, ttl: Duration) -> Result<()> {
        (**self).put_failure(key, ttl).await
    }
    async fn failure(&self, key: &CacheKey) -> Result<Option<Duration>> {
        (**self).failure(key).await
    }
}

/// The right to fetch a token for one key, held until released or lapsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    key: String,
    holder: String,
    ttl: Duration,
}

impl Lease {
    /// A lease on the key with fingerprint `key`, held by a fresh random holder id.
    pub fn new(key: &CacheKey, ttl: Duration) -> Self {
        let holder = format!("{:016x}{:016x}", fastrand::u64(..), fastrand::u64(..));
        Self { key: key.fingerprint().to_owned(), holder, ttl }
    }

    /// Fingerprint of the leased key.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// Random id of the holder, used to release only one's own lease.
    pub fn holder(&self) -> &str {
        &self.holder
    }

    /// How long the lease lasts if not released.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }
}
