//! [`RedisExportStore`]: an export's progress and claims in Redis, so a fleet of
//! processes shares one export (one kick-off, each file downloaded once).
//!
//! Layout, under a prefix (default `fhir-auth:`): `export:<key>:record` (the
//! [`ExportRecord`] as JSON), `export:<key>:done` (a set of items),
//! `export:<key>:claim:<item>` (the holder's random id, `SET NX PX`). Nothing
//! secret is kept: a status URL is useless without a token.

use std::collections::BTreeSet;
use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{AsyncCommands, Client, Script};

use auth_core::{Error, Result};

use super::store::{Claim, ExportRecord, ExportStore};

/// Default deadline of each Redis call.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(2);
/// Default prefix of every key (the same as the token store's).
const DEFAULT_PREFIX: &str = "fhir-auth:";

const RELEASE_IF_HOLDER: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
";

const RENEW_IF_HOLDER: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
";

/// Exports kept in Redis, so a fleet of processes shares one export (one
/// kick-off, each file downloaded once).
///
/// Layout, under a prefix (default `fhir-auth:`): `export:<key>:record` (the
/// [`ExportRecord`] as JSON), `export:<key>:done` (a set of items),
/// `export:<key>:claim:<item>` (the holder's random id, `SET NX PX`). Nothing
/// secret is kept: a status URL is useless without a token.
#[derive(Clone)]
pub struct RedisExportStore {
    connection: ConnectionManager,
    prefix: String,
    timeout: Duration,
    // Built once: a Script hashes its source when made.
    release_script: Script,
    renew_script: Script,
}

impl fmt::Debug for RedisExportStore {
    // The URL is not shown: it may carry a password.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisExportStore").field("prefix", &self.prefix).finish_non_exhaustive()
    }
}

impl RedisExportStore {
    /// A store on the Redis at `url` (`redis://[:password@]host:port[/db]`). Does
    /// no I/O: the connection is made on first use and remade after errors.
    pub fn new(url: &str) -> Result<Self> {
        let client = Client::open(url)
            .map_err(|_| Error::configuration("invalid Redis URL (expected redis://host:port/db)"))?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(DEFAULT_TIMEOUT))
            .set_response_timeout(Some(DEFAULT_TIMEOUT))
            .set_number_of_retries(2);
        let connection = ConnectionManager::new_lazy_with_config(client, config)
            .map_err(|e| Error::store_with("could not set up the Redis connection", e))?;
        Ok(Self {
            connection,
            prefix: DEFAULT_PREFIX.to_owned(),
            timeout: DEFAULT_TIMEOUT,
            release_script: Script::new(RELEASE_IF_HOLDER),
            renew_script: Script::new(RENEW_IF_HOLDER),
        })
    }

    /// Puts every key under `prefix` instead of `fhir-auth:`.
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    fn key(&self, key: &str, what: &str) -> String {
        format!("{}export:{key}:{what}", self.prefix)
    }

    async fn call<T, F>(&self, what: &'static str, f: impl FnOnce(ConnectionManager) -> F) -> Result<T>
    where
        F: Future<Output = redis::RedisResult<T>>,
    {
        match tokio::time::timeout(self.timeout, f(self.connection.clone())).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) => Err(Error::store_with(format!("Redis {what} failed"), e)),
            Err(_) => Err(Error::store(format!("Redis {what} timed out after {:?}", self.timeout))),
        }
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
}

#[async_trait]
impl ExportStore for RedisExportStore {
    async fn load(&self, key: &str) -> Result<Option<ExportRecord>> {
        let name = self.key(key, "record");
        let value: Option<String> = self.call("GET", |mut c| async move { c.get(name).await }).await?;
        value
            .map(|v| {
                serde_json::from_str(&v)
                    .map_err(|e| Error::store(format!("an export record is unreadable: {e}")))
            })
            .transpose()
    }

    async fn save(&self, key: &str, record: &ExportRecord) -> Result<()> {
        let (name, done) = (self.key(key, "record"), self.key(key, "done"));
        let value = serde_json::to_string(record)
            .map_err(|e| Error::store(format!("an export record did not serialise: {e}")))?;
        self.call("SET", |mut c| async move {
            redis::pipe()
                .atomic()
                .set(name, value)
                .ignore()
                .del(done)
                .ignore()
                .query_async::<()>(&mut c)
                .await
        })
        .await
    }

    async fn remove(&self, key: &str) -> Result<()> {
        let (name, done) = (self.key(key, "record"), self.key(key, "done"));
        // Claims lapse by themselves.
        self.call("DEL", |mut c| async move { c.del::<_, ()>(&[name, done]).await }).await
    }

    async fn try_claim(&self, key: &str, item: &str, ttl: Duration) -> Result<Option<Claim>> {
        let claim = Claim::new(key, item);
        let (name, holder) = (self.key(key, &format!("claim:{item}")), claim.holder().to_owned());
        let set: Option<String> = self
            .call("SET NX", |mut c| async move {
                redis::cmd("SET")
                    .arg(name)
                    .arg(holder)
                    .arg("NX")
                    .arg("PX")
                    .arg(millis(ttl))
                    .query_async(&mut c)
                    .await
            })
            .await?;
        Ok(set.map(|_| claim))
    }

    async fn renew(&self, claim: &Claim, ttl: Duration) -> Result<bool> {
        let name = self.key(claim.key(), &format!("claim:{}", claim.item()));
        let (holder, script) = (claim.holder().to_owned(), &self.renew_script);
        let renewed: i64 = self
            .call("renew", |mut c| async move {
                script.key(name).arg(holder).arg(millis(ttl)).invoke_async(&mut c).await
            })
            .await?;
        Ok(renewed == 1)
    }

    async fn release(&self, claim: &Claim) -> Result<()> {
        let name = self.key(claim.key(), &format!("claim:{}", claim.item()));
        let (holder, script) = (claim.holder().to_owned(), &self.release_script);
        self.call(
            "release",
            |mut c| async move { script.key(name).arg(holder).invoke_async::<i64>(&mut c).await },
        )
        .await
        .map(drop)
    }

    async fn mark_done(&self, key: &str, item: &str) -> Result<()> {
        let (name, item) = (self.key(key, "done"), item.to_owned());
        self.call("SADD", |mut c| async move { c.sadd::<_, _, ()>(name, item).await }).await
    }

    async fn done(&self, key: &str) -> Result<BTreeSet<String>> {
        let name = self.key(key, "done");
        self.call("SMEMBERS", |mut c| async move { c.smembers(name).await }).await
    }
}
