//! Redeliveries recognised by their bytes, before anything is decoded.
//!
//! PIM retries a callback it got no answer to (or a timeout for) with the very same body. The
//! replay cache ([`super::replay`]) answers such a retry with the stored decision, but only after the
//! body was decoded and the evaluation key derived from it: for a retry that is most of the work
//! (decoding was ≈ 18 % of a replay's CPU). This index remembers, for a delivery that has already
//! been *seen twice*, what decoding it produced: the request, its evaluation key and its replay key.
//! A third and later copy with the same bytes skips straight to the replay cache.
//!
//! Why this cannot answer a request from another's memory: the key is a SHA-256 of the exact body
//! bytes, the stage, the rules revision and the verified caller, and decoding is a pure function of
//! the bytes. Identical bytes under the same stage, revision and caller decode to the identical
//! request, hence the identical evaluation and replay keys; one byte of difference (even
//! whitespace) misses here and takes the decoding path, which then judges it on its fields. The
//! answer itself still comes from the replay cache, with its TTL and single flight: this index
//! only saves the decoding, never the evaluation.
//!
//! Why only from the second sighting on: every request would otherwise cost an entry (a decoded
//! request is ≈ 1–2 KB), and almost every request is seen once. Remembering the retried ones keeps
//! the memory to what PIM actually retries, bounded by `server.idempotency_capacity`.

use std::sync::Arc;
use std::time::Duration;

use sha2::{Digest, Sha256};
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

#[derive(Clone)]
struct Entry {
    stored_at: Instant,
    redelivery: Arc<Redelivery>,
}

pub struct Redeliveries {
    entries: quick_cache::sync::Cache<[u8; 32], Entry>,
    ttl: Duration,
}

impl Redeliveries {
    /// `capacity` and `ttl` are the replay cache's: an entry here is of no use once the answer it
    /// leads to has expired there (it would then only save a decode before a fresh evaluation).
    pub fn new(capacity: u64, ttl: Duration) -> Self {
        Self {
            entries: quick_cache::sync::Cache::new(
                usize::try_from(capacity.max(1)).unwrap_or(usize::MAX),
            ),
            ttl: ttl.max(Duration::from_secs(1)),
        }
    }

    /// The key of a delivery: its exact bytes, the stage that received it, the rules revision
    /// that would judge it and the verified caller, each length-prefixed so no two different
    /// lists of parts hash the same bytes.
    pub fn key(stage: Stage, rules_revision: &str, caller_app_id: &str, body: &[u8]) -> [u8; 32] {
        let mut hasher = Sha256::new();
        for part in [
            b"pimgate.redelivery.v1".as_slice(),
            stage.as_str().as_bytes(),
            rules_revision.as_bytes(),
            caller_app_id.as_bytes(),
            body,
        ] {
            hasher.update((part.len() as u64).to_be_bytes());
            hasher.update(part);
        }
        hasher.finalize().into()
    }

    /// What an earlier copy of these bytes decoded to, if one was remembered within the TTL.
    pub fn get(&self, key: &[u8; 32]) -> Option<Arc<Redelivery>> {
        let entry = self.entries.get(key)?;
        if entry.stored_at.elapsed() < self.ttl {
            Some(entry.redelivery)
        } else {
            self.entries.remove(key);
            None
        }
    }

    /// Remembers a delivery that turned out to be a replay (its second sighting).
    pub fn remember(&self, key: [u8; 32], redelivery: Redelivery) {
        self.entries.insert(
            key,
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
}

#[cfg(test)]
mod tests {
    use super::*;

    const BODY: &[u8] = br#"{"id":"r1","principalId":"0f6e7b1a-3c52-4b8e-a0d4-2e9f51c7d8a3","action":"selfActivate","roleDefinitionId":"62e90394-69f5-4237-9190-012177145e10","directoryScopeId":"/","scheduleInfo":{"expiration":{"type":"afterDuration","duration":"PT1H"}}}"#;

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
    fn the_key_changes_with_every_part_and_every_byte() {
        let key = Redeliveries::key(Stage::PreApproval, "r1", "pim", BODY);
        assert_eq!(
            key,
            Redeliveries::key(Stage::PreApproval, "r1", "pim", BODY)
        );
        let mut spaced = BODY.to_vec();
        spaced.push(b' ');
        for other in [
            Redeliveries::key(Stage::PostApproval, "r1", "pim", BODY),
            Redeliveries::key(Stage::PreApproval, "r2", "pim", BODY),
            Redeliveries::key(Stage::PreApproval, "r1", "another-app", BODY),
            Redeliveries::key(Stage::PreApproval, "r1", "pim", &spaced),
            // The parts are length-prefixed: moving a byte from one part to the next is another key.
            Redeliveries::key(Stage::PreApproval, "r1p", "im", BODY),
        ] {
            assert_ne!(key, other);
        }
    }

    #[test]
    fn only_a_remembered_delivery_is_found() {
        let index = Redeliveries::new(10, Duration::from_secs(60));
        let key = Redeliveries::key(Stage::PreApproval, "r1", "pim", BODY);
        assert!(index.get(&key).is_none(), "nothing is remembered unasked");
        let remembered = redelivery(BODY);
        let replay_key = remembered.replay_key;
        index.remember(key, remembered);
        let found = index.get(&key).expect("remembered");
        assert_eq!(found.replay_key, replay_key);
        assert_eq!(*found.activation, crate::payload::decode(BODY).unwrap());
        let other = Redeliveries::key(Stage::PreApproval, "r2", "pim", BODY);
        assert!(index.get(&other).is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn an_entry_older_than_the_ttl_is_forgotten() {
        let index = Redeliveries::new(10, Duration::from_secs(5));
        let key = Redeliveries::key(Stage::PreApproval, "r1", "pim", BODY);
        index.remember(key, redelivery(BODY));
        tokio::time::advance(Duration::from_secs(4)).await;
        assert!(index.get(&key).is_some());
        tokio::time::advance(Duration::from_secs(2)).await;
        assert!(index.get(&key).is_none());
        assert!(index.is_empty(), "an expired entry is dropped when found");
    }

    #[test]
    fn the_index_stays_within_its_capacity() {
        let index = Redeliveries::new(50, Duration::from_secs(60));
        for n in 0..500u32 {
            let mut key = [0; 32];
            key[..4].copy_from_slice(&n.to_le_bytes());
            index.remember(key, redelivery(BODY));
        }
        assert!(index.len() <= 60, "{} entries", index.len());
    }
}
