//! This replica's recent decisions, for the operator console: a bounded ring of the last answers
//! (masked exactly as their audit records are), and per-minute counts of the last hour by outcome.
//!
//! Bounded twice over: the ring holds at most `admin.recent_decisions` entries (the oldest goes
//! first) and the counts are 60 fixed buckets, so a flood of requests costs no more memory than a
//! trickle. Nothing here is on PIM's answer: a push is one short lock after the answer is built.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError};

use chrono::{DateTime, Duration, DurationRound, Utc};

use crate::decision::Decision;
use crate::payload::ActivationRequest;
use crate::vocabulary::Outcome;

/// The request as the console shows it: who, what, where; the justification already masked.
#[derive(Debug, Clone, PartialEq)]
pub struct RequestSummary {
    pub principal_id: String,
    pub resource_type: &'static str,
    pub action: String,
    /// Role definition, group or Azure role id.
    pub target_id: String,
    /// The built-in role's name when pimgate knows it.
    pub role_name: Option<&'static str>,
    pub scope: String,
    pub ticket: Option<String>,
    /// As the audit record holds it (`audit.justification`): full, truncated, hashed or absent.
    pub justification: Option<String>,
}

impl RequestSummary {
    /// `masked` is the audit log's masking of the justification (`AuditLog::mask_justification`).
    pub fn of(request: &ActivationRequest, masked: Option<String>) -> Self {
        let ticket = request.ticket.as_ref().and_then(|ticket| {
            ticket.number.as_ref().map(|number| match &ticket.system {
                Some(system) => format!("{system} {number}"),
                None => number.clone(),
            })
        });
        Self {
            principal_id: request.principal_id.clone(),
            resource_type: request.resource_type.as_str(),
            action: request.action.as_str().to_string(),
            target_id: request.target_id().to_string(),
            role_name: crate::rules::catalog::by_id(request.target_id()).map(|role| role.name),
            scope: request.scope().to_string(),
            ticket,
            justification: masked,
        }
    }

    /// What the console names the target by: the role's name, else the id.
    pub fn target_label(&self) -> &str {
        self.role_name.unwrap_or(&self.target_id)
    }
}

/// One answered evaluation.
#[derive(Debug, Clone)]
pub struct RecentDecision {
    pub answered_at: DateTime<Utc>,
    pub decision: Arc<Decision>,
    pub request: RequestSummary,
    /// Answered from the replay cache (a PIM redelivery).
    pub replay: bool,
    pub latency_ms: f64,
}

/// Decisions per minute by outcome, for the last hour's chart.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MinuteCounts {
    pub approved: u64,
    pub auto_approved: u64,
    pub denied: u64,
}

impl MinuteCounts {
    pub fn total(&self) -> u64 {
        self.approved + self.auto_approved + self.denied
    }

    fn add(&mut self, outcome: Outcome) {
        match outcome {
            Outcome::Approved => self.approved += 1,
            Outcome::AutoApproved => self.auto_approved += 1,
            Outcome::Denied => self.denied += 1,
        }
    }
}

const MINUTES: usize = 60;

#[derive(Debug)]
struct Inner {
    ring: VecDeque<Arc<RecentDecision>>,
    /// (the minute it counts, counts), indexed by minute of the hour; a stale slot is reset on use.
    minutes: [(Option<DateTime<Utc>>, MinuteCounts); MINUTES],
}

/// The ring and the counts; `capacity` 0 keeps nothing (the console is off).
#[derive(Debug)]
pub struct RecentDecisions {
    capacity: usize,
    inner: Mutex<Inner>,
}

impl RecentDecisions {
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity,
            inner: Mutex::new(Inner {
                ring: VecDeque::with_capacity(capacity.min(4096)),
                minutes: [(None, MinuteCounts::default()); MINUTES],
            }),
        }
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Keeps `entry` (dropping the oldest when full) and counts it in its minute.
    pub fn push(&self, entry: RecentDecision) {
        if self.capacity == 0 {
            return;
        }
        let minute = truncate_to_minute(entry.answered_at);
        let outcome = entry.decision.outcome;
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        // The evicted entry is dropped after the lock is released (dropping a decision frees
        // every string and evidence map it holds: the longest part of a push).
        let evicted = if inner.ring.len() == self.capacity {
            inner.ring.pop_front()
        } else {
            None
        };
        inner.ring.push_back(Arc::new(entry));
        let slot = &mut inner.minutes[minute_index(minute)];
        if slot.0 != Some(minute) {
            *slot = (Some(minute), MinuteCounts::default());
        }
        slot.1.add(outcome);
        drop(inner);
        drop(evicted);
    }

    /// The kept decisions, newest first.
    pub fn newest_first(&self) -> Vec<Arc<RecentDecision>> {
        let inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        inner.ring.iter().rev().cloned().collect()
    }

    /// The kept decision with this evaluation id (the newest, if a redelivery repeated it).
    pub fn find(&self, evaluation_id: &str) -> Option<Arc<RecentDecision>> {
        let inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        inner
            .ring
            .iter()
            .rev()
            .find(|entry| entry.decision.evaluation_id.to_string() == evaluation_id)
            .cloned()
    }

    /// The 60 minutes ending with `now`'s, oldest first: (minute, counts).
    pub fn last_hour(&self, now: DateTime<Utc>) -> Vec<(DateTime<Utc>, MinuteCounts)> {
        let current = truncate_to_minute(now);
        let inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        (0..MINUTES as i64)
            .rev()
            .map(|ago| {
                let minute = current - Duration::minutes(ago);
                let (kept, counts) = inner.minutes[minute_index(minute)];
                (
                    minute,
                    if kept == Some(minute) {
                        counts
                    } else {
                        MinuteCounts::default()
                    },
                )
            })
            .collect()
    }
}

fn truncate_to_minute(time: DateTime<Utc>) -> DateTime<Utc> {
    time.duration_trunc(Duration::minutes(1)).unwrap_or(time)
}

fn minute_index(minute: DateTime<Utc>) -> usize {
    (minute.timestamp().div_euclid(60) as usize) % MINUTES
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decision::Decision;
    use uuid::Uuid;

    fn decision(outcome: Outcome) -> Arc<Decision> {
        Arc::new(Decision::bare(outcome))
    }

    fn entry(at: DateTime<Utc>, outcome: Outcome) -> RecentDecision {
        RecentDecision {
            answered_at: at,
            decision: decision(outcome),
            request: RequestSummary {
                principal_id: "p".into(),
                resource_type: "entraRoles",
                action: "selfActivate".into(),
                target_id: "t".into(),
                role_name: None,
                scope: "/".into(),
                ticket: None,
                justification: None,
            },
            replay: false,
            latency_ms: 1.0,
        }
    }

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .map(|time| time.with_timezone(&Utc))
            .unwrap_or_default()
    }

    #[test]
    fn the_ring_keeps_the_newest_up_to_its_capacity() {
        let recent = RecentDecisions::new(3);
        let now = at("2026-11-29T10:00:30Z");
        let ids: Vec<Uuid> = (0..5)
            .map(|_| {
                let kept = entry(now, Outcome::Denied);
                let id = kept.decision.evaluation_id;
                recent.push(kept);
                id
            })
            .collect();

        let kept: Vec<Uuid> = recent
            .newest_first()
            .iter()
            .map(|entry| entry.decision.evaluation_id)
            .collect();
        assert_eq!(kept, vec![ids[4], ids[3], ids[2]]);
        assert!(recent.find(&ids[0].to_string()).is_none());
        assert!(recent.find(&ids[3].to_string()).is_some());
    }

    #[test]
    fn a_zero_capacity_keeps_and_counts_nothing() {
        let recent = RecentDecisions::new(0);
        let now = at("2026-11-29T10:00:30Z");
        recent.push(entry(now, Outcome::Approved));
        assert!(recent.newest_first().is_empty());
        assert!(recent.last_hour(now).iter().all(|(_, c)| c.total() == 0));
    }

    #[test]
    fn the_last_hour_counts_each_minute_by_outcome_and_forgets_older_ones() {
        let recent = RecentDecisions::new(10);
        recent.push(entry(at("2026-11-29T09:00:10Z"), Outcome::Approved));
        recent.push(entry(at("2026-11-29T10:00:05Z"), Outcome::Denied));
        recent.push(entry(at("2026-11-29T10:00:50Z"), Outcome::AutoApproved));
        recent.push(entry(at("2026-11-29T10:59:59Z"), Outcome::Denied));

        let hour = recent.last_hour(at("2026-11-29T10:59:59Z"));

        assert_eq!(hour.len(), 60);
        assert_eq!(hour[0].0, at("2026-11-29T10:00:00Z"));
        // 09:00 shares a slot with 10:00 and was replaced, not added to.
        assert_eq!(
            hour[0].1,
            MinuteCounts {
                approved: 0,
                auto_approved: 1,
                denied: 1
            }
        );
        assert_eq!(hour[59].1.denied, 1);
        let total: u64 = hour.iter().map(|(_, counts)| counts.total()).sum();
        assert_eq!(total, 3);
    }
}
