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

use moka::Expiry;
use sha2::{Digest, Sha256};

use crate::auth::jwks::KeyFingerprint;
use crate::auth::token::{CheckedClaims, VerifiedCaller};

/// The `cache` label of `pimgate_cache_requests_total`.
const METRIC_LABEL: &str = "token";

/// Longest an entry stays in memory, whatever its `exp`: a development token may live for years, and
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
    /// How long moka keeps the entry: until `valid_until` by the clock at insertion, capped.
    lifetime: Duration,
}

struct UntilInvalid;

impl Expiry<TokenHash, Arc<CachedToken>> for UntilInvalid {
    fn expire_after_create(
        &self,
        _key: &TokenHash,
        entry: &Arc<CachedToken>,
        _now: std::time::Instant,
    ) -> Option<Duration> {
        Some(entry.lifetime)
    }
}

/// A bounded map from token hash to the caller it proved. Cheap to share: moka is internally `Arc`.
pub(crate) struct TokenCache {
    inner: moka::future::Cache<TokenHash, Arc<CachedToken>>,
}

impl TokenCache {
    /// `None` for capacity 0: every request is verified.
    pub fn new(capacity: u64) -> Option<Self> {
        (capacity > 0).then(|| Self {
            inner: moka::future::Cache::builder()
                .max_capacity(capacity)
                .expire_after(UntilInvalid)
                .build(),
        })
    }

    pub fn hash(token: &str) -> TokenHash {
        Sha256::digest(token.as_bytes()).into()
    }

    /// The caller proved by this token earlier, if that proof still holds at `now` and
    /// `key_still_published` says the verifying key is unchanged. A stale entry is dropped, so the
    /// caller falls through to full verification, which decides (and counts the reason) exactly as
    /// if the token had never been seen.
    pub async fn lookup(
        &self,
        hash: &TokenHash,
        now: i64,
        key_still_published: impl FnOnce(&VerifiedBy) -> bool,
    ) -> Option<VerifiedCaller> {
        let served = match self.inner.get(hash).await {
            Some(entry)
                if (entry.claims.valid_from..=entry.claims.valid_until).contains(&now)
                    && key_still_published(&entry.verified_by) =>
            {
                Some(entry.claims.caller.clone())
            }
            Some(_) => {
                self.inner.invalidate(hash).await;
                None
            }
            None => None,
        };
        let result = if served.is_some() { "hit" } else { "miss" };
        metrics::counter!("pimgate_cache_requests_total", "cache" => METRIC_LABEL, "result" => result)
            .increment(1);
        served
    }

    /// Remembers a token that has just passed every check at `now`.
    pub async fn insert(
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
            lifetime,
        };
        self.inner.insert(hash, Arc::new(entry)).await;
    }

    /// Entries held once moka's pending evictions have run (a test and diagnostics aid).
    pub async fn len(&self) -> u64 {
        self.inner.run_pending_tasks().await;
        self.inner.entry_count()
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
        cache
            .insert(hash, claims(100, 200), VerifiedBy::Dev, 150)
            .await;

        assert!(
            cache.lookup(&hash, 99, |_| true).await.is_none(),
            "too early"
        );
        // The early miss dropped the entry; put it back for the next probes.
        cache
            .insert(hash, claims(100, 200), VerifiedBy::Dev, 150)
            .await;
        assert!(cache.lookup(&hash, 100, |_| true).await.is_some());
        assert!(cache.lookup(&hash, 200, |_| true).await.is_some());
        assert!(
            cache.lookup(&hash, 200, |_| false).await.is_none(),
            "key gone"
        );
        assert!(
            cache.lookup(&hash, 150, |_| true).await.is_none(),
            "a stale entry is dropped, not kept for later"
        );
        cache
            .insert(hash, claims(100, 200), VerifiedBy::Dev, 150)
            .await;
        assert!(
            cache.lookup(&hash, 201, |_| true).await.is_none(),
            "expired"
        );
    }

    #[tokio::test]
    async fn a_token_already_past_its_window_is_not_stored() {
        let cache = TokenCache::new(10).expect("enabled");
        let hash = TokenCache::hash("token");
        cache
            .insert(hash, claims(100, 200), VerifiedBy::Dev, 201)
            .await;
        assert_eq!(cache.len().await, 0);
    }

    #[tokio::test]
    async fn the_cache_never_holds_more_than_its_capacity() {
        let capacity = 50;
        let cache = TokenCache::new(capacity).expect("enabled");
        for index in 0..(capacity * 4) {
            let hash = TokenCache::hash(&format!("token-{index}"));
            cache
                .insert(hash, claims(0, 1_000), VerifiedBy::Dev, 10)
                .await;
        }
        let entries = cache.len().await;
        assert!(
            (1..=capacity).contains(&entries),
            "{entries} entries for capacity {capacity}"
        );
    }
}
