//! Redeliveries recognised by their bytes, before anything is decoded.
//!
//! PIM retries a callback it got no answer to (or a timeout for) with the very same body. The
//! replay cache ([`super::replay`]) answers such a retry with the stored decision, but only after the
//! body was decoded and the evaluation key derived from it: for a retry that is most of the work
//! (decoding was ≈ 18 % of a replay's CPU). This index remembers, for a delivery that has already
//! been *seen twice*, what decoding it produced: the request, its evaluation key and its replay key.
//! A third and later copy with the same bytes skips straight to the replay cache.
//!
//! Why this cannot answer a request from another's memory: an entry is found only for the exact
//! same bytes, stage, rules revision and verified caller, compared in full (the hash only picks the
//! bucket), and decoding is a pure function of the bytes. Identical bytes under the same stage,
//! revision and caller decode to the identical request, hence the identical evaluation and replay
//! keys; one byte of difference (even whitespace) misses here and takes the decoding path, which
//! then judges it on its fields. The answer itself still comes from the replay cache, with its TTL
//! and single flight: this index only saves the decoding, never the evaluation.
//!
//! Why a full comparison and not a SHA-256 of the bytes as the key: every first delivery pays for
//! the lookup. Hashing the body with the cache's own fast hasher and comparing ≈ 1.5 KB on a hit
//! costs well under a microsecond on any CPU, where SHA-256 without the SHA extensions (most Intel
//! Xeons before Ice Lake) is ≈ 8 µs per body; and equality needs no argument about collisions.
//!
//! Why only from the second sighting on: every request would otherwise cost an entry (its body and
//! the decoded request, ≈ 2–3 KB), and almost every request is seen once. Remembering the retried
//! ones keeps the memory to what PIM actually retries.
//!
//! Why bounded in bytes, not only in entries: an entry holds a body of up to `server.max_body_bytes`,
//! so 10,000 entries could hold 640 MB. The index weighs each entry by its body (twice: the bytes and
//! the decoded request's text) and keeps at most [`MEMORY_BUDGET`]; a delivery it cannot keep is
//! decoded, as any first delivery is.

use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::Duration;

use actix_web::web::Bytes;
use quick_cache::Equivalent;
// tokio's clock, so tests can move time with a paused runtime.
use tokio::time::Instant;

use crate::payload::{ActivationRequest, EvaluationKey, Stage};

/// What decoding a retried delivery produced, kept so the next copy need not decode it again.
#[derive(Debug)]
pub struct Redelivery {
    /// The request as decoded from these bytes.
    pub activation: Arc<ActivationRequest>,
    pub evaluation_key: EvaluationKey,
    /// The replay cache's key for it (`ReplayCache::key`).
    pub replay_key: [u8; 32],
}

/// A delivery as received: what must be equal, in full, for a later copy to be the same delivery.
#[derive(Debug, Clone, Copy)]
pub struct Delivery<'a> {
    pub stage: Stage,
    pub rules_revision: &'a str,
    pub caller_app_id: &'a str,
    /// The request's own buffer: remembering it keeps these bytes, no copy.
    pub body: &'a Bytes,
}

/// The owned form of [`Delivery`], held as the index's key.
#[derive(Debug, Clone, PartialEq, Eq)]
struct StoredDelivery {
    stage: Stage,
    rules_revision: Box<str>,
    caller_app_id: Box<str>,
    /// The request's own buffer, kept rather than copied.
    body: Bytes,
}

impl StoredDelivery {
    fn as_delivery(&self) -> Delivery<'_> {
        Delivery {
            stage: self.stage,
            rules_revision: &self.rules_revision,
            caller_app_id: &self.caller_app_id,
            body: &self.body,
        }
    }
}

// Both forms hash the same fields the same way, so a borrowed delivery finds its stored copy.
impl Hash for Delivery<'_> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.stage.as_str().hash(state);
        self.rules_revision.hash(state);
        self.caller_app_id.hash(state);
        self.body.hash(state);
    }
}

impl Hash for StoredDelivery {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_delivery().hash(state);
    }
}

impl Equivalent<StoredDelivery> for Delivery<'_> {
    fn equivalent(&self, stored: &StoredDelivery) -> bool {
        let stored = stored.as_delivery();
        self.stage == stored.stage
            && self.rules_revision == stored.rules_revision
            && self.caller_app_id == stored.caller_app_id
            && self.body == stored.body
    }
}

/// The most memory the index's entries may weigh in all: ≈ 2,000 retried deliveries of a typical
/// PIM body (1–2 KB). A miss only costs a decode, so a small budget loses little.
pub const MEMORY_BUDGET: u64 = 8 * 1024 * 1024;

/// What an entry costs beyond its body's bytes: the key's strings, the entry, the request's fields.
const ENTRY_OVERHEAD: u64 = 512;

#[derive(Clone)]
struct Entry {
    stored_at: Instant,
    redelivery: Arc<Redelivery>,
}

/// Weighs an entry by the memory it holds: the body, the decoded request (whose text is at most
/// the body's) and a fixed overhead; and at least `budget / capacity`, so the budget also bounds
/// the number of entries to the capacity.
#[derive(Clone)]
struct ByMemory {
    least: u64,
}

impl quick_cache::Weighter<StoredDelivery, Entry> for ByMemory {
    fn weight(&self, key: &StoredDelivery, _: &Entry) -> u64 {
        (key.body.len() as u64)
            .saturating_mul(2)
            .saturating_add(ENTRY_OVERHEAD)
            .max(self.least)
    }
}

pub struct Redeliveries {
    entries: quick_cache::sync::Cache<StoredDelivery, Entry, ByMemory>,
    ttl: Duration,
}

impl Redeliveries {
    /// `capacity` and `ttl` are the replay cache's: an entry here is of no use once the answer it
    /// leads to has expired there (it would then only save a decode before a fresh evaluation).
    pub fn new(capacity: u64, ttl: Duration) -> Self {
        Self::with_budget(capacity, ttl, MEMORY_BUDGET)
    }

    fn with_budget(capacity: u64, ttl: Duration, budget: u64) -> Self {
        let capacity = capacity.clamp(1, budget / ENTRY_OVERHEAD);
        Self {
            entries: quick_cache::sync::Cache::with_weighter(
                usize::try_from(capacity).unwrap_or(usize::MAX),
                budget,
                ByMemory {
                    least: budget / capacity,
                },
            ),
            ttl: ttl.max(Duration::from_secs(1)),
        }
    }

    /// What an earlier copy of this delivery decoded to, if one was remembered within the TTL.
    pub fn get(&self, delivery: &Delivery<'_>) -> Option<Arc<Redelivery>> {
        let entry = self.entries.get(delivery)?;
        if entry.stored_at.elapsed() < self.ttl {
            Some(entry.redelivery)
        } else {
            self.entries.remove(delivery);
            None
        }
    }

    /// Remembers a delivery that turned out to be a replay (its second sighting), keeping its
    /// body's buffer as it is.
    pub fn remember(&self, delivery: &Delivery<'_>, redelivery: Redelivery) {
        self.entries.insert(
            StoredDelivery {
                stage: delivery.stage,
                rules_revision: delivery.rules_revision.into(),
                caller_app_id: delivery.caller_app_id.into(),
                body: delivery.body.clone(),
            },
            Entry {
                stored_at: Instant::now(),
                redelivery: Arc::new(redelivery),
            },
        );
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// What the entries held weigh (twice each body plus a fixed overhead), never more than the budget.
    pub fn weight(&self) -> u64 {
        self.entries.weight()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BODY: &[u8] = br#"{"id":"r1","principalId":"0f6e7b1a-3c52-4b8e-a0d4-2e9f51c7d8a3","action":"selfActivate","roleDefinitionId":"62e90394-69f5-4237-9190-012177145e10","directoryScopeId":"/","scheduleInfo":{"expiration":{"type":"afterDuration","duration":"PT1H"}}}"#;

    static SAMPLE: Bytes = Bytes::from_static(BODY);

    fn delivery<'a>(
        stage: Stage,
        revision: &'a str,
        caller: &'a str,
        body: &'a Bytes,
    ) -> Delivery<'a> {
        Delivery {
            stage,
            rules_revision: revision,
            caller_app_id: caller,
            body,
        }
    }

    fn redelivery(body: &[u8]) -> Redelivery {
        let activation = crate::payload::decode(body).expect("the sample decodes");
        let evaluation_key = EvaluationKey::derive(Stage::PreApproval, "r1", &activation);
        Redelivery {
            replay_key: super::super::replay::ReplayCache::key(&evaluation_key, "pim"),
            evaluation_key,
            activation: Arc::new(activation),
        }
    }

    #[test]
    fn only_the_same_bytes_stage_revision_and_caller_find_a_remembered_delivery() {
        let index = Redeliveries::new(10, Duration::from_secs(60));
        let first = delivery(Stage::PreApproval, "r1", "pim", &SAMPLE);
        assert!(index.get(&first).is_none(), "nothing is remembered unasked");
        let remembered = redelivery(BODY);
        let replay_key = remembered.replay_key;
        index.remember(&first, remembered);

        // Another buffer with the same bytes is the same delivery.
        let copy = Bytes::from(BODY.to_vec());
        let found = index
            .get(&delivery(Stage::PreApproval, "r1", "pim", &copy))
            .expect("remembered");
        assert_eq!(found.replay_key, replay_key);
        assert_eq!(*found.activation, crate::payload::decode(BODY).unwrap());

        let mut spaced = BODY.to_vec();
        spaced.push(b' ');
        let mut flipped = BODY.to_vec();
        flipped[10] ^= 1;
        for other in [
            delivery(Stage::PostApproval, "r1", "pim", &SAMPLE),
            delivery(Stage::PreApproval, "r2", "pim", &SAMPLE),
            delivery(Stage::PreApproval, "r1", "another-app", &SAMPLE),
            delivery(Stage::PreApproval, "r1", "pim", &Bytes::from(spaced)),
            delivery(Stage::PreApproval, "r1", "pim", &Bytes::from(flipped)),
            delivery(
                Stage::PreApproval,
                "r1",
                "pim",
                &SAMPLE.slice(..BODY.len() - 1),
            ),
        ] {
            assert!(index.get(&other).is_none(), "{other:?}");
        }
    }

    #[test]
    fn equality_not_the_hash_decides() {
        // A delivery equal in every field but the body must not match, whatever the hashes do:
        // check `equivalent` directly, which is what a bucket collision would fall back on.
        let stored = StoredDelivery {
            stage: Stage::PreApproval,
            rules_revision: "r1".into(),
            caller_app_id: "pim".into(),
            body: Bytes::from_static(BODY),
        };
        assert!(delivery(Stage::PreApproval, "r1", "pim", &SAMPLE).equivalent(&stored));
        let mut flipped = BODY.to_vec();
        flipped[BODY.len() / 2] ^= 1;
        assert!(
            !delivery(Stage::PreApproval, "r1", "pim", &Bytes::from(flipped)).equivalent(&stored)
        );
        assert!(!delivery(Stage::PreApproval, "r1p", "im", &SAMPLE).equivalent(&stored));
        assert!(!delivery(Stage::PostApproval, "r1", "pim", &SAMPLE).equivalent(&stored));
    }

    #[tokio::test(start_paused = true)]
    async fn an_entry_older_than_the_ttl_is_forgotten() {
        let index = Redeliveries::new(10, Duration::from_secs(5));
        let key = delivery(Stage::PreApproval, "r1", "pim", &SAMPLE);
        index.remember(&key, redelivery(BODY));
        tokio::time::advance(Duration::from_secs(4)).await;
        assert!(index.get(&key).is_some());
        tokio::time::advance(Duration::from_secs(2)).await;
        assert!(index.get(&key).is_none());
        assert!(index.is_empty(), "an expired entry is dropped when found");
    }

    #[test]
    fn large_bodies_are_bounded_by_the_memory_budget_not_the_entry_count() {
        let budget = 256 * 1024;
        // Room for 10,000 entries by count; 64 KB bodies would need 640 MB.
        let index = Redeliveries::with_budget(10_000, Duration::from_secs(60), budget);
        let large = Bytes::from(vec![b' '; 64 * 1024]);
        for n in 0..100u32 {
            let caller = n.to_string();
            let key = delivery(Stage::PreApproval, "r1", &caller, &large);
            index.remember(&key, redelivery(BODY));
            assert!(index.weight() <= budget, "{} > {budget}", index.weight());
        }
        assert!(index.len() <= 2, "{} entries of 64 KB", index.len());
        // Typical bodies still fit by the hundred.
        for n in 0..200u32 {
            let caller = format!("small-{n}");
            let key = delivery(Stage::PreApproval, "r1", &caller, &SAMPLE);
            index.remember(&key, redelivery(BODY));
        }
        assert!(index.len() >= 100, "{} small entries", index.len());
        assert!(index.weight() <= budget);
    }

    #[test]
    fn the_index_stays_within_its_capacity() {
        let index = Redeliveries::new(50, Duration::from_secs(60));
        for n in 0..500u32 {
            let caller = n.to_string();
            let key = delivery(Stage::PreApproval, "r1", &caller, &SAMPLE);
            index.remember(&key, redelivery(BODY));
        }
        assert!(index.len() <= 50, "{} entries", index.len());
    }
}
