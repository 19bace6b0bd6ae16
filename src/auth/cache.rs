//! Verified tokens remembered until they expire: PIM sends the same bearer token on every call for
//! about an hour, and an RS256 check costs ~25 µs of CPU each time.
//!
//! Safety rules, each with a test in `tests/engine/auth_tokens.rs`:
//! - only tokens that passed every check are stored; a rejection is never remembered, so a forged
//!   token (whose hash differs from the real one's anyway) is verified, and refused, every time;
//! - the key is the sha256 of the whole compact token, so the cache never holds a usable credential;
//! - an entry is served only while the clock is inside the span `ClaimRules::check` would accept
//!   (`nbf`/`iat` − skew ..= `exp` + skew), and only while the key that verified it is still published
//!   under its `kid` with the same material: a key dropped at rotation takes its tokens with it.

use std::sync::Arc;
use std::time::Duration;

use metrics::Counter;
use sha2::{Digest, Sha256};
// tokio's clock, so tests can move time with a paused runtime.
use tokio::time::Instant;

use crate::auth::jwks::KeyFingerprint;
use crate::auth::token::{CheckedClaims, VerifiedCaller};

/// The `cache` label of `pimgate_cache_requests_total`.
const METRIC_LABEL: &str = "token";

/// Longest an entry is served, whatever its `exp`: a development token may live for years, and
/// re-verifying once a day costs nothing.
const MAX_ENTRY_LIFETIME: Duration = Duration::from_secs(24 * 3600);

/// sha256 of the compact token.
pub(crate) type TokenHash = [u8; 32];

/// Which key vouched for a cached token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum VerifiedBy {
    /// The built-in development key; trusted for the whole process once `dev_mode` is on.
    Dev,
    Entra {
        kid: String,
        fingerprint: KeyFingerprint,
    },
}

#[derive(Debug)]
struct CachedToken {
    claims: CheckedClaims,
    verified_by: VerifiedBy,
    /// When it was stored, by the monotonic clock, and for how long it may be served from then:
    /// until `valid_until` by the wall clock at insertion, capped at [`MAX_ENTRY_LIFETIME`].
    stored_at: Instant,
    lifetime: Duration,
}

/// A bounded map from token hash to the caller it proved.
///
/// Why quick_cache and not moka (which the connector caches use for its per-entry expiry): this
/// lookup runs on every request, and moka's read path (its concurrent table plus a read-log
/// channel for its admission policy) was ≈ 4 % of a replayed request's CPU. Every check that
/// matters here is made on read anyway (the claims' window, the key, the lifetime cap), so an
/// expired entry is never served, and the S3-FIFO eviction bounds the memory. Only verified tokens
/// are ever stored, so a flood of forged ones cannot push the real one out.
pub(crate) struct TokenCache {
    inner: quick_cache::sync::Cache<TokenHash, Arc<CachedToken>>,
    /// `pimgate_cache_requests_total{cache="token"}` by result, registered once (the recorder is
    /// installed before the authenticator is built): a label lookup per request cost more than
    /// the lookup it counts.
    hits: Counter,
    misses: Counter,
}

impl TokenCache {
    /// `None` for capacity 0: every request is verified.
    pub fn new(capacity: u64) -> Option<Self> {
        (capacity > 0).then(|| Self {
            inner: quick_cache::sync::Cache::new(usize::try_from(capacity).unwrap_or(usize::MAX)),
            hits: metrics::counter!("pimgate_cache_requests_total", "cache" => METRIC_LABEL, "result" => "hit"),
            misses: metrics::counter!("pimgate_cache_requests_total", "cache" => METRIC_LABEL, "result" => "miss"),
        })
    }

    pub fn hash(token: &str) -> TokenHash {
        Sha256::digest(token.as_bytes()).into()
    }

    /// The caller proved by this token earlier, if that proof still holds at `now` and
    /// `key_still_published` says the verifying key is unchanged. A stale entry is dropped, so the
    /// caller falls through to full verification, which decides (and counts the reason) exactly as
    /// if the token had never been seen.
    pub fn lookup(
        &self,
        hash: &TokenHash,
        now: i64,
        key_still_published: impl FnOnce(&VerifiedBy) -> bool,
    ) -> Option<VerifiedCaller> {
        let served = match self.inner.get(hash) {
            Some(entry)
                if (entry.claims.valid_from..=entry.claims.valid_until).contains(&now)
                    && entry.stored_at.elapsed() < entry.lifetime
                    && key_still_published(&entry.verified_by) =>
            {
                Some(entry.claims.caller.clone())
            }
            Some(_) => {
                self.inner.remove(hash);
                None
            }
            None => None,
        };
        match served {
            Some(_) => self.hits.increment(1),
            None => self.misses.increment(1),
        }
        served
    }

    /// Remembers a token that has just passed every check at `now`.
    pub fn insert(
        &self,
        hash: TokenHash,
        claims: CheckedClaims,
        verified_by: VerifiedBy,
        now: i64,
    ) {
        // One second past the last accepted second; the lookup check is exact either way.
        let seconds_left = claims.valid_until.saturating_sub(now).saturating_add(1);
        let lifetime = u64::try_from(seconds_left)
            .map_or(Duration::ZERO, Duration::from_secs)
            .min(MAX_ENTRY_LIFETIME);
        if lifetime.is_zero() {
            return;
        }
        let entry = CachedToken {
            claims,
            verified_by,
            stored_at: Instant::now(),
            lifetime,
        };
        self.inner.insert(hash, Arc::new(entry));
    }

    /// Entries held (a test and diagnostics aid).
    pub fn len(&self) -> u64 {
        self.inner.len() as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::TokenVersion;

    fn claims(valid_from: i64, valid_until: i64) -> CheckedClaims {
        CheckedClaims {
            caller: VerifiedCaller {
                caller_app_id: "pim".into(),
                issuer: "issuer".into(),
                token_version: TokenVersion::V2,
                dev: false,
                expires_at: valid_until,
                subject: None,
            },
            valid_from,
            valid_until,
        }
    }

    #[test]
    fn capacity_zero_means_no_cache() {
        assert!(TokenCache::new(0).is_none());
        assert!(TokenCache::new(1).is_some());
    }

    #[test]
    fn hash_covers_the_whole_token() {
        assert_ne!(TokenCache::hash("a.b.c"), TokenCache::hash("a.b.d"));
        assert_eq!(TokenCache::hash("a.b.c"), TokenCache::hash("a.b.c"));
    }

    #[tokio::test]
    async fn entries_are_served_only_inside_their_window_and_while_their_key_holds() {
        let cache = TokenCache::new(10).expect("enabled");
        let hash = TokenCache::hash("token");
        cache.insert(hash, claims(100, 200), VerifiedBy::Dev, 150);

        assert!(cache.lookup(&hash, 99, |_| true).is_none(), "too early");
        // The early miss dropped the entry; put it back for the next probes.
        cache.insert(hash, claims(100, 200), VerifiedBy::Dev, 150);
        assert!(cache.lookup(&hash, 100, |_| true).is_some());
        assert!(cache.lookup(&hash, 200, |_| true).is_some());
        assert!(cache.lookup(&hash, 200, |_| false).is_none(), "key gone");
        assert!(
            cache.lookup(&hash, 150, |_| true).is_none(),
            "a stale entry is dropped, not kept for later"
        );
        cache.insert(hash, claims(100, 200), VerifiedBy::Dev, 150);
        assert!(cache.lookup(&hash, 201, |_| true).is_none(), "expired");
    }

    #[tokio::test(start_paused = true)]
    async fn a_long_lived_token_is_verified_again_after_a_day() {
        let cache = TokenCache::new(10).expect("enabled");
        let hash = TokenCache::hash("token");
        // Valid for ten years by its claims.
        let ten_years = 10 * 365 * 24 * 3600;
        cache.insert(hash, claims(0, ten_years), VerifiedBy::Dev, 10);
        tokio::time::advance(MAX_ENTRY_LIFETIME - Duration::from_secs(1)).await;
        assert!(cache.lookup(&hash, 20, |_| true).is_some());
        tokio::time::advance(Duration::from_secs(2)).await;
        assert!(
            cache.lookup(&hash, 30, |_| true).is_none(),
            "served past the lifetime cap"
        );
        assert_eq!(cache.len(), 0, "the stale entry is dropped");
    }

    #[tokio::test]
    async fn a_token_already_past_its_window_is_not_stored() {
        let cache = TokenCache::new(10).expect("enabled");
        let hash = TokenCache::hash("token");
        cache.insert(hash, claims(100, 200), VerifiedBy::Dev, 201);
        assert_eq!(cache.len(), 0);
    }

    #[tokio::test]
    async fn the_cache_never_holds_more_than_its_capacity() {
        let capacity = 50;
        let cache = TokenCache::new(capacity).expect("enabled");
        for index in 0..(capacity * 4) {
            let hash = TokenCache::hash(&format!("token-{index}"));
            cache.insert(hash, claims(0, 1_000), VerifiedBy::Dev, 10);
        }
        let entries = cache.len();
        assert!(
            (1..=capacity).contains(&entries),
            "{entries} entries for capacity {capacity}"
        );
    }
}
