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
        self.with(|m| m.entry(key.fingerprint().to_owned()).or_default().token = Some(token));
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
        let first = store.try_lease(&key, Duration::from_millis(50)).await.unwrap();
        assert!(first.is_some());
        assert!(store.try_lease(&key, Duration::from_secs(5)).await.unwrap().is_none());
        tokio::time::sleep(Duration::from_millis(60)).await;
        let second = store.try_lease(&key, Duration::from_secs(5)).await.unwrap();
        assert!(second.is_some(), "a lapsed lease must be takeable");
        // The first holder's late release must not free the second holder's lease.
        store.release(&first.unwrap()).await.unwrap();
        assert!(store.try_lease(&key, Duration::from_secs(5)).await.unwrap().is_none());
        store.release(&second.unwrap()).await.unwrap();
        assert!(store.try_lease(&key, Duration::from_secs(5)).await.unwrap().is_some());
    }
}
