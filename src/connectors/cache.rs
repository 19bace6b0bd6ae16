//! Per-connector answer caches: found answers live `ttl`, "not found" answers a shorter `negative_ttl`
//! (so a ticket created a minute ago is seen soon), failures are never cached.

use std::future::Future;
use std::time::Duration;

use moka::Expiry;

use super::http::{Fetched, UpstreamError};

#[derive(Debug, Clone)]
struct Entry<V> {
    value: Option<V>,
    ttl: Duration,
}

struct PerEntryTtl;

impl<V> Expiry<String, Entry<V>> for PerEntryTtl {
    fn expire_after_create(
        &self,
        _key: &String,
        entry: &Entry<V>,
        _now: std::time::Instant,
    ) -> Option<Duration> {
        Some(entry.ttl)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct CacheSettings {
    pub ttl_seconds: u64,
    pub negative_ttl_seconds: u64,
    pub capacity: u64,
}

impl Default for CacheSettings {
    fn default() -> Self {
        Self {
            ttl_seconds: 60,
            negative_ttl_seconds: 10,
            capacity: 10_000,
        }
    }
}

#[derive(Clone)]
pub struct TtlCache<V: Clone + Send + Sync + 'static> {
    inner: moka::future::Cache<String, Entry<V>>,
    /// The `cache` label of `pimgate_cache_requests_total`, e.g. `servicenow_tickets`.
    name: &'static str,
    ttl: Duration,
    negative_ttl: Duration,
}

impl<V: Clone + Send + Sync + 'static> std::fmt::Debug for TtlCache<V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TtlCache")
            .field("name", &self.name)
            .field("entries", &self.inner.entry_count())
            .finish()
    }
}

impl<V: Clone + Send + Sync + 'static> TtlCache<V> {
    /// A cache reported under the generic name `connector`; prefer [`TtlCache::with_name`].
    pub fn new(settings: CacheSettings) -> Self {
        Self::with_name("connector", settings)
    }

    /// A cache whose hits and misses are counted under `name`, so a hit rate can be read per cache.
    pub fn with_name(name: &'static str, settings: CacheSettings) -> Self {
        let inner = moka::future::Cache::builder()
            .max_capacity(settings.capacity)
            .expire_after(PerEntryTtl)
            .build();
        Self {
            inner,
            name,
            ttl: Duration::from_secs(settings.ttl_seconds),
            negative_ttl: Duration::from_secs(settings.negative_ttl_seconds),
        }
    }

    /// The cached answer for `key`, or `fetch`'s (stored unless it failed). The flag says whether the
    /// answer came from the cache, for the audit record.
    pub async fn get_or_fetch<Fut>(
        &self,
        key: &str,
        fetch: Fut,
    ) -> (Result<Fetched<V>, UpstreamError>, bool)
    where
        Fut: Future<Output = Result<Fetched<V>, UpstreamError>>,
    {
        let cached = self.inner.get(key).await;
        let result = if cached.is_some() { "hit" } else { "miss" };
        metrics::counter!("pimgate_cache_requests_total", "cache" => self.name, "result" => result)
            .increment(1);
        if let Some(entry) = cached {
            let answer = match entry.value {
                Some(value) => Fetched::Found(value),
                None => Fetched::NotFound,
            };
            return (Ok(answer), true);
        }
        let result = fetch.await;
        let entry = match &result {
            Ok(Fetched::Found(value)) if !self.ttl.is_zero() => Some(Entry {
                value: Some(value.clone()),
                ttl: self.ttl,
            }),
            Ok(Fetched::NotFound) if !self.negative_ttl.is_zero() => Some(Entry {
                value: None,
                ttl: self.negative_ttl,
            }),
            _ => None,
        };
        if let Some(entry) = entry {
            self.inner.insert(key.to_string(), entry).await;
        }
        (result, false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn found_and_not_found_answers_are_cached_and_failures_are_not() {
        let cache: TtlCache<u32> = TtlCache::new(CacheSettings::default());
        let (first, cached) = cache
            .get_or_fetch("a", async { Ok(Fetched::Found(1)) })
            .await;
        assert_eq!((first, cached), (Ok(Fetched::Found(1)), false));
        let (again, cached) = cache
            .get_or_fetch("a", async { Ok(Fetched::Found(2)) })
            .await;
        assert_eq!((again, cached), (Ok(Fetched::Found(1)), true));

        let (_, _) = cache
            .get_or_fetch("missing", async { Ok(Fetched::NotFound) })
            .await;
        let (negative, cached) = cache
            .get_or_fetch("missing", async { Ok(Fetched::Found(9)) })
            .await;
        assert_eq!((negative, cached), (Ok(Fetched::NotFound), true));

        let failure = Err(UpstreamError::Timeout { connector: "x" });
        let (_, _) = cache.get_or_fetch("flaky", async { failure }).await;
        let (retried, cached) = cache
            .get_or_fetch("flaky", async { Ok(Fetched::Found(3)) })
            .await;
        assert_eq!((retried, cached), (Ok(Fetched::Found(3)), false));
    }

    #[tokio::test]
    async fn negative_answers_expire_sooner_than_positive_ones() {
        let cache: TtlCache<u32> = TtlCache::new(CacheSettings {
            ttl_seconds: 60,
            negative_ttl_seconds: 1,
            capacity: 10,
        });
        let _ = cache
            .get_or_fetch("gone", async { Ok(Fetched::NotFound) })
            .await;
        let _ = cache
            .get_or_fetch("here", async { Ok(Fetched::Found(1)) })
            .await;
        tokio::time::sleep(Duration::from_millis(1100)).await;
        let (_, negative_cached) = cache
            .get_or_fetch("gone", async { Ok(Fetched::Found(5)) })
            .await;
        let (_, positive_cached) = cache
            .get_or_fetch("here", async { Ok(Fetched::Found(5)) })
            .await;
        assert!(!negative_cached, "the negative entry expired");
        assert!(positive_cached, "the positive entry is still there");
    }
}
