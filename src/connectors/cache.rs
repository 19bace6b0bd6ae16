//! Per-connector answer caches: found answers live `ttl`, "not found" answers a shorter `negative_ttl`
//! (so a ticket created a minute ago is seen soon), failures are never cached.
//!
//! An answer that describes a span of time (an on-call shift) may carry its own lifetime
//! ([`Expiring`]): the entry then lives `min(ttl, lifetime)`, so it is never served past the end of
//! what it describes.

use std::future::Future;
use std::time::Duration;

use chrono::{DateTime, Utc};
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

/// A fetched answer and how long it stays true: `valid_for: None` for "until the configured TTL",
/// `Some(d)` for at most `d` (zero: do not cache at all).
#[derive(Debug, Clone, PartialEq)]
pub struct Expiring<T> {
    pub answer: T,
    pub valid_for: Option<Duration>,
}

impl<T> Expiring<T> {
    /// An answer with no end of its own: the cache's TTL decides.
    pub fn open(answer: T) -> Self {
        Self {
            answer,
            valid_for: None,
        }
    }
}

/// How long from `now` until `end`, zero when `end` is not after `now`. Saturating: any pair of
/// dates gives an answer, never a panic.
pub fn remaining(end: DateTime<Utc>, now: DateTime<Utc>) -> Duration {
    end.signed_duration_since(now)
        .to_std()
        .unwrap_or(Duration::ZERO)
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
        self.get_or_fetch_expiring(key, async { fetch.await.map(Expiring::open) })
            .await
    }

    /// [`TtlCache::get_or_fetch`] for answers that know when they stop being true: the entry lives
    /// the configured TTL (or negative TTL) or the answer's own `valid_for`, whichever is shorter.
    pub async fn get_or_fetch_expiring<Fut>(
        &self,
        key: &str,
        fetch: Fut,
    ) -> (Result<Fetched<V>, UpstreamError>, bool)
    where
        Fut: Future<Output = Result<Expiring<Fetched<V>>, UpstreamError>>,
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
        let (result, valid_for) = match fetch.await {
            Ok(expiring) => (Ok(expiring.answer), expiring.valid_for),
            Err(error) => (Err(error), None),
        };
        let bounded = |ttl: Duration| valid_for.map_or(ttl, |valid_for| ttl.min(valid_for));
        let entry = match &result {
            Ok(Fetched::Found(value)) => Some(Entry {
                value: Some(value.clone()),
                ttl: bounded(self.ttl),
            }),
            Ok(Fetched::NotFound) => Some(Entry {
                value: None,
                ttl: bounded(self.negative_ttl),
            }),
            Err(_) => None,
        };
        if let Some(entry) = entry.filter(|entry| !entry.ttl.is_zero()) {
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

    #[tokio::test]
    async fn an_answer_that_carries_its_own_end_is_dropped_then_although_the_ttl_is_longer() {
        let cache: TtlCache<u32> = TtlCache::new(CacheSettings {
            ttl_seconds: 60,
            negative_ttl_seconds: 60,
            capacity: 10,
        });
        let short = Some(Duration::from_millis(300));
        let _ = cache
            .get_or_fetch_expiring("shift", async {
                Ok(Expiring {
                    answer: Fetched::Found(1),
                    valid_for: short,
                })
            })
            .await;
        let _ = cache
            .get_or_fetch_expiring("off", async {
                Ok(Expiring {
                    answer: Fetched::NotFound,
                    valid_for: short,
                })
            })
            .await;
        let (_, still) = cache
            .get_or_fetch("shift", async { Ok(Fetched::Found(2)) })
            .await;
        assert!(still, "cached while the answer holds");
        tokio::time::sleep(Duration::from_millis(500)).await;
        let (again, cached) = cache
            .get_or_fetch("shift", async { Ok(Fetched::Found(2)) })
            .await;
        assert_eq!((again, cached), (Ok(Fetched::Found(2)), false));
        let (_, cached) = cache
            .get_or_fetch("off", async { Ok(Fetched::Found(3)) })
            .await;
        assert!(!cached, "a negative answer is bounded the same way");
    }

    #[tokio::test]
    async fn an_answer_that_is_already_over_is_not_cached_and_a_distant_end_keeps_the_ttl() {
        let cache: TtlCache<u32> = TtlCache::new(CacheSettings {
            ttl_seconds: 1,
            negative_ttl_seconds: 1,
            capacity: 10,
        });
        let _ = cache
            .get_or_fetch_expiring("over", async {
                Ok(Expiring {
                    answer: Fetched::Found(1),
                    valid_for: Some(Duration::ZERO),
                })
            })
            .await;
        let (_, cached) = cache
            .get_or_fetch("over", async { Ok(Fetched::Found(2)) })
            .await;
        assert!(!cached);
        let _ = cache
            .get_or_fetch_expiring("forever", async {
                Ok(Expiring {
                    answer: Fetched::Found(1),
                    valid_for: Some(Duration::MAX),
                })
            })
            .await;
        tokio::time::sleep(Duration::from_millis(1100)).await;
        let (_, cached) = cache
            .get_or_fetch("forever", async { Ok(Fetched::Found(2)) })
            .await;
        assert!(!cached, "the configured TTL still bounds the entry");
    }

    #[test]
    fn the_time_remaining_saturates_at_zero_and_never_panics_on_absurd_dates() {
        let now: DateTime<Utc> = "2026-11-24T12:00:00Z".parse().unwrap_or_default();
        let later = now + chrono::Duration::seconds(90);
        assert_eq!(remaining(later, now), Duration::from_secs(90));
        assert_eq!(remaining(now, later), Duration::ZERO);
        assert_eq!(remaining(now, now), Duration::ZERO);
        assert!(remaining(DateTime::<Utc>::MAX_UTC, DateTime::<Utc>::MIN_UTC) > Duration::ZERO);
        assert_eq!(
            remaining(DateTime::<Utc>::MIN_UTC, DateTime::<Utc>::MAX_UTC),
            Duration::ZERO
        );
    }
}
