use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use async_trait::async_trait;

use super::{Lease, TokenStore};
use crate::error::Result;
use crate::source::CacheKey;
use crate::token::Token;

/// Tokens in this process's memory. The default store.
///
/// Share one (through an `Arc`) between token managers whose sources have equal
/// keys and they share tokens and fetch only once between them.
#[derive(Debug, Default)]
pub struct MemoryStore {
    entries: Mutex<HashMap<String, Entry>>,
}

#[derive(Debug, Default)]
struct Entry {
    token: Option<Arc<Token>>,
    lease: Option<(String, Instant)>,
    failure_until: Option<Instant>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn with<R>(&self, f: impl FnOnce(&mut HashMap<String, Entry>) -> R) -> R {
        // A panic elsewhere while holding the lock cannot leave a half-written
        // entry (every update is a single assignment), so poisoning is ignored.
        let mut map = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        f(&mut map)
    }
}

#[async_trait]
impl TokenStore for MemoryStore {
    async fn get(&self, key: &CacheKey) -> Result<Option<Arc<Token>>> {
        Ok(self.with(|m| m.get(key.fingerprint()).and_then(|e| e.token.clone())))
    }

    async fn put(&self, key: &CacheKey, token: Arc<Token>) -> Result<()> {
        self.with(|m| {
            let entry = m.entry(key.fingerprint().to_owned()).or_default();
            entry.token = Some(token);
            entry.failure_until = None;
        });
        Ok(())
    }

    async fn remove(&self, key: &CacheKey, token: &Token) -> Result<bool> {
        Ok(self.with(|m| {
            let Some(entry) = m.get_mut(key.fingerprint()) else { return false };
            if entry.token.as_ref().is_some_and(|t| t.same_value(token)) {
                entry.token = None;
                true
            } else {
                false
            }
        }))
    }

    async fn try_lease(&self, key: &CacheKey, ttl: Duration) -> Result<Option<Lease>> {
        let now = Instant::now();
        Ok(self.with(|m| {
            let entry = m.entry(key.fingerprint().to_owned()).or_default();
            if entry.lease.as_ref().is_some_and(|(_, until)| *until > now) {
                return None;
            }
            let lease = Lease::new(key, ttl);
            entry.lease = Some((lease.holder().to_owned(), now + ttl));
            Some(lease)
        }))
    }

    async fn release(&self, lease: &Lease) -> Result<()> {
        self.with(|m| {
            if let Some(entry) = m.get_mut(lease.key())
                && entry.lease.as_ref().is_some_and(|(holder, _)| holder == lease.holder())
            {
                entry.lease = None;
            }
        });
        Ok(())
    }

    async fn renew(&self, lease: &Lease, ttl: Duration) -> Result<bool> {
        let until = Instant::now() + ttl;
        Ok(self.with(|m| match m.get_mut(lease.key()).and_then(|e| e.lease.as_mut()) {
            Some((holder, lease_until)) if holder == lease.holder() => {
                *lease_until = until;
                true
            }
            _ => false,
        }))
    }

    async fn put_failure(&self, key: &CacheKey, ttl: Duration) -> Result<()> {
        let until = Instant::now() + ttl;
        self.with(|m| m.entry(key.fingerprint().to_owned()).or_default().failure_until = Some(until));
        Ok(())
    }

    async fn failure(&self, key: &CacheKey) -> Result<Option<Duration>> {
        let now = Instant::now();
        Ok(self.with(|m| {
            m.get(key.fingerprint())
                .and_then(|e| e.failure_until)
                .and_then(|until| until.checked_duration_since(now))
                .filter(|left| !left.is_zero())
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::AccessToken;
    use std::time::SystemTime;

    fn token(v: &str) -> Arc<Token> {
        let now = SystemTime::now();
        Arc::new(Token::new(AccessToken::new(v), now, now + Duration::from_secs(60)).expect("valid"))
    }

    #[tokio::test]
    async fn remove_only_deletes_the_same_token() {
        let store = MemoryStore::new();
        let key = CacheKey::builder("t", "u", "c").build();
        store.put(&key, token("old")).await.unwrap();
        store.put(&key, token("new")).await.unwrap();
        assert!(!store.remove(&key, &token("old")).await.unwrap());
        assert!(store.get(&key).await.unwrap().is_some());
        assert!(store.remove(&key, &token("new")).await.unwrap());
        assert!(store.get(&key).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn leases_exclude_lapse_and_release_only_their_own() {
        let store = MemoryStore::new();
        let key = CacheKey::builder("t", "u", "c").build();
        // Long enough that a loaded machine cannot let it lapse before the second
        // attempt; the sleep is what makes it lapse.
        let first = store.try_lease(&key, Duration::from_millis(400)).await.unwrap();
        assert!(first.is_some());
        assert!(store.try_lease(&key, Duration::from_secs(5)).await.unwrap().is_none());
        tokio::time::sleep(Duration::from_millis(500)).await;
        let second = store.try_lease(&key, Duration::from_secs(5)).await.unwrap();
        assert!(second.is_some(), "a lapsed lease must be takeable");
        // The first holder's late release must not free the second holder's lease.
        store.release(&first.unwrap()).await.unwrap();
        assert!(store.try_lease(&key, Duration::from_secs(5)).await.unwrap().is_none());
        store.release(&second.unwrap()).await.unwrap();
        assert!(store.try_lease(&key, Duration::from_secs(5)).await.unwrap().is_some());
    }

    #[tokio::test]
    async fn only_the_holder_renews_and_a_token_ends_a_failure() {
        let store = MemoryStore::new();
        let key = CacheKey::builder("t", "u", "c").build();
        let held = store.try_lease(&key, Duration::from_millis(400)).await.unwrap().unwrap();
        let stranger = Lease::new(&key, Duration::from_secs(5));
        assert!(!store.renew(&stranger, Duration::from_secs(5)).await.unwrap());
        assert!(store.renew(&held, Duration::from_secs(5)).await.unwrap());
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert!(
            store.try_lease(&key, Duration::from_secs(5)).await.unwrap().is_none(),
            "renewed past 400 ms"
        );

        assert_eq!(store.failure(&key).await.unwrap(), None);
        store.put_failure(&key, Duration::from_secs(30)).await.unwrap();
        assert!(store.failure(&key).await.unwrap().is_some_and(|left| left > Duration::from_secs(20)));
        store.put(&key, token("fresh")).await.unwrap();
        assert_eq!(store.failure(&key).await.unwrap(), None, "a stored token ends the failure");
    }
}
