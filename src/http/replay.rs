//! PIM's retries get the identical answer: the same request seen again within
//! `server.idempotency_ttl_seconds` is answered with the stored decision (same `evaluationId`), and
//! concurrent copies of one request wait for the single evaluation under way instead of running
//! their own.
//!
//! Why not moka (used for the connector caches): with a full cache and a new id per request, moka's
//! concurrent table re-hashed its whole bucket array again and again; that was ~15 % of the CPU of an
//! evaluation under load. `quick_cache` (S3-FIFO, sharded, one placeholder per loading key) has no
//! such cost and gives the single-flight we need; the TTL is a timestamp checked on read.
//!
//! Keys are a SHA-256 of the evaluation key (`payload::EvaluationKey`: every field of the
//! normalised request that can change the decision, PIM's request id, the stage and the rules
//! revision) and the verified caller, so an entry costs 32 bytes of key whatever the request
//! carries, and a request id reused with another scope, schedule, ticket or justification, or
//! delivered after a rules reload, is evaluated on its own. The `evaluationId` is derived from the
//! same evaluation key, so an answer evaluated again (evicted, expired, another replica, a restart)
//! carries the id the stored one had.
//!
//! The stored decision is the answer PIM saw (outcome, reasons, policy, revision) without check
//! evidence: the first answer's audit record holds the evidence, a replay's record
//! points at it through the same `evaluationId`. That keeps an entry to a few hundred bytes.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use sha2::{Digest, Sha256};
// tokio's clock, so tests can move time with a paused runtime.
use tokio::time::Instant;

use crate::decision::Decision;
use crate::payload::EvaluationKey;

type Key = [u8; 32];

#[derive(Clone)]
struct Entry {
    stored_at: Instant,
    decision: Arc<Decision>,
}

pub struct ReplayCache {
    entries: quick_cache::sync::Cache<Key, Entry>,
    ttl: Duration,
}

/// What a lookup produced: the decision, and whether it was a stored one.
pub struct Answer {
    pub decision: Arc<Decision>,
    pub replay: bool,
}

impl ReplayCache {
    pub fn new(capacity: u64, ttl: Duration) -> Self {
        Self {
            entries: quick_cache::sync::Cache::new(
                usize::try_from(capacity.max(1)).unwrap_or(usize::MAX),
            ),
            ttl: ttl.max(Duration::from_secs(1)),
        }
    }

    /// The evaluation's key (the normalised request with its id, the stage and the rules
    /// revision: `payload::EvaluationKey`) and the verified caller. A stored answer is handed out
    /// only for a request that could not be decided differently, and only to the application it
    /// was given to; the caller is not in the `evaluationId`, which must not depend on the token.
    pub fn key(evaluation: &EvaluationKey, caller_app_id: &str) -> Key {
        let mut hasher = Sha256::new();
        for part in [
            b"pimgate.replay.v1".as_slice(),
            evaluation.as_bytes(),
            caller_app_id.as_bytes(),
        ] {
            // Length-prefixed, so no two different part lists hash the same bytes.
            hasher.update((part.len() as u64).to_be_bytes());
            hasher.update(part);
        }
        hasher.finalize().into()
    }

    /// The stored decision for `key`, or the result of `evaluate` (run at most once per key at a
    /// time: concurrent callers with the same key wait for it and get it as a replay). If the
    /// evaluating caller is cancelled, a waiting one takes over and evaluates.
    ///
    /// `evaluate` builds the evaluation only when one is needed, and it runs on the heap: a replay
    /// never builds it, and the futures that wait here stay small. An evaluation's future is
    /// several KB; built up front and held inline, every layer that wrapped it copied it (perf:
    /// `memmove` from the handler was ≈ 4 % of a replay's CPU).
    pub async fn get_or_evaluate<E, F>(&self, key: Key, evaluate: E) -> Answer
    where
        E: FnOnce() -> F,
        F: Future<Output = Decision>,
    {
        // Two rounds at most: an expired entry is dropped once, then we load (or join a loader).
        for _ in 0..2 {
            match self.entries.get_value_or_guard_async(&key).await {
                Ok(entry) if entry.stored_at.elapsed() < self.ttl => {
                    return Answer {
                        decision: entry.decision,
                        replay: true,
                    };
                }
                Ok(_) => {
                    self.entries.remove(&key);
                }
                Err(guard) => {
                    let decision = Arc::new(Box::pin(evaluate()).await);
                    // A guard whose slot was taken meanwhile refuses the value: the answer stands.
                    let _ = guard.insert(Entry {
                        stored_at: Instant::now(),
                        decision: Arc::new(answer_only(&decision)),
                    });
                    return Answer {
                        decision,
                        replay: false,
                    };
                }
            }
        }
        Answer {
            decision: Arc::new(Box::pin(evaluate()).await),
            replay: false,
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// What a replay needs: PIM's answer and what the audit record names, not the evidence.
fn answer_only(decision: &Decision) -> Decision {
    Decision {
        evaluation_id: decision.evaluation_id,
        stage: decision.stage,
        outcome: decision.outcome,
        reasons: decision.reasons.clone(),
        policy: decision.policy.clone(),
        skipped_policies: Vec::new(),
        checks: Vec::new(),
        shadow: Vec::new(),
        guards: Vec::new(),
        rules_revision: decision.rules_revision.clone(),
        evaluated_at: decision.evaluated_at,
        duration_ms: decision.duration_ms,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;
    use crate::checks::CheckOutcome;
    use crate::decision::{CheckReport, CheckStage, Outcome};
    use crate::payload::Stage;

    fn decision(outcome: Outcome) -> Decision {
        Decision {
            reasons: vec!["because".into()],
            policy: Some("p".into()),
            checks: vec![CheckReport {
                kind: "duration".into(),
                stage: CheckStage::Require,
                outcome: CheckOutcome::pass("ok"),
                duration_ms: 0.1,
            }],
            duration_ms: 1.0,
            ..Decision::bare(outcome)
        }
    }

    #[test]
    fn the_key_follows_the_evaluation_and_the_caller() {
        let request = crate::payload::decode(
            br#"{"principalId":"0f6e7b1a-3c52-4b8e-a0d4-2e9f51c7d8a3","action":"selfActivate","roleDefinitionId":"62e90394-69f5-4237-9190-012177145e10","directoryScopeId":"/","scheduleInfo":{"expiration":{"type":"afterDuration","duration":"PT1H"}}}"#,
        );
        let Ok(request) = request else {
            panic!("the request decodes: {request:?}");
        };
        let evaluation = EvaluationKey::derive(Stage::PreApproval, "r1", &request);
        let key = ReplayCache::key(&evaluation, "pim");
        assert_eq!(key, ReplayCache::key(&evaluation, "pim"));
        assert_ne!(
            key,
            ReplayCache::key(&evaluation, "another-app"),
            "one caller's stored answer is not handed to another"
        );
        let reloaded = EvaluationKey::derive(Stage::PreApproval, "r2", &request);
        assert_ne!(key, ReplayCache::key(&reloaded, "pim"));
    }

    #[tokio::test]
    async fn a_second_lookup_is_a_replay_of_the_first_answer_without_its_evidence() {
        let cache = ReplayCache::new(10, Duration::from_secs(60));
        let first = cache
            .get_or_evaluate([1; 32], || async { decision(Outcome::Approved) })
            .await;
        assert!(!first.replay);
        assert_eq!(
            first.decision.checks.len(),
            1,
            "the first answer keeps its evidence"
        );
        let second = cache
            .get_or_evaluate([1; 32], || async { decision(Outcome::Denied) })
            .await;
        assert!(second.replay);
        assert_eq!(second.decision.evaluation_id, first.decision.evaluation_id);
        assert_eq!(second.decision.outcome, Outcome::Approved);
        assert_eq!(second.decision.reasons, first.decision.reasons);
        assert!(second.decision.checks.is_empty());
    }

    #[tokio::test]
    async fn a_stored_answer_is_handed_out_without_building_an_evaluation() {
        let cache = ReplayCache::new(10, Duration::from_secs(60));
        let built = AtomicUsize::new(0);
        let evaluate = || {
            built.fetch_add(1, Ordering::SeqCst);
            async { decision(Outcome::Approved) }
        };
        assert!(!cache.get_or_evaluate([5; 32], evaluate).await.replay);
        for _ in 0..3 {
            assert!(cache.get_or_evaluate([5; 32], evaluate).await.replay);
        }
        assert_eq!(
            built.load(Ordering::SeqCst),
            1,
            "only the first copy built one"
        );
    }

    #[tokio::test]
    async fn concurrent_copies_of_one_request_share_one_evaluation() {
        let cache = ReplayCache::new(10, Duration::from_secs(60));
        let runs = AtomicUsize::new(0);
        let evaluate = || async {
            runs.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(20)).await;
            decision(Outcome::Approved)
        };
        let answers =
            futures::future::join_all((0..8).map(|_| cache.get_or_evaluate([2; 32], evaluate)))
                .await;
        assert_eq!(runs.load(Ordering::SeqCst), 1);
        assert_eq!(answers.iter().filter(|answer| !answer.replay).count(), 1);
        let id = answers[0].decision.evaluation_id;
        assert!(
            answers
                .iter()
                .all(|answer| answer.decision.evaluation_id == id)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn an_entry_older_than_the_ttl_is_evaluated_again() {
        let cache = ReplayCache::new(10, Duration::from_secs(5));
        let first = cache
            .get_or_evaluate([3; 32], || async { decision(Outcome::Approved) })
            .await;
        tokio::time::advance(Duration::from_secs(4)).await;
        let within = cache
            .get_or_evaluate([3; 32], || async { decision(Outcome::Denied) })
            .await;
        assert!(within.replay);
        tokio::time::advance(Duration::from_secs(2)).await;
        let after = cache
            .get_or_evaluate([3; 32], || async { decision(Outcome::Denied) })
            .await;
        assert!(!after.replay, "an expired entry must not be replayed");
        assert_ne!(after.decision.evaluation_id, first.decision.evaluation_id);
        assert_eq!(after.decision.outcome, Outcome::Denied);
    }

    #[tokio::test]
    async fn a_cancelled_evaluation_leaves_the_key_free_for_the_next_caller() {
        let cache = ReplayCache::new(10, Duration::from_secs(60));
        let hung = cache.get_or_evaluate([4; 32], std::future::pending);
        assert!(
            tokio::time::timeout(Duration::from_millis(10), hung)
                .await
                .is_err()
        );
        let next = cache
            .get_or_evaluate([4; 32], || async { decision(Outcome::Denied) })
            .await;
        assert!(!next.replay);
        assert_eq!(next.decision.outcome, Outcome::Denied);
    }

    #[tokio::test]
    async fn the_cache_stays_within_its_capacity() {
        let cache = ReplayCache::new(100, Duration::from_secs(60));
        for index in 0..1_000u32 {
            let mut key = [0; 32];
            key[..4].copy_from_slice(&index.to_le_bytes());
            cache
                .get_or_evaluate(key, || async { decision(Outcome::Approved) })
                .await;
        }
        assert!(cache.len() <= 110, "{} entries", cache.len());
        assert!(!cache.is_empty());
    }
}
