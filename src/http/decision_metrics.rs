//! The metrics of each answered evaluation: `pimgate_decisions_total`,
//! `pimgate_shadow_decisions_total` and `pimgate_decision_duration_seconds`.
//!
//! `metrics::counter!` with labels builds, hashes and looks up its key in the registry on every
//! call. The handles are registered once per (policy, stage, outcome, replay) and kept per worker
//! thread instead, so a request only indexes an array after one map lookup by policy name. The
//! series and their labels are exactly those the macros would write: a handle is registered the
//! first time its combination is seen, never ahead (no zero-valued series appear).
//!
//! The handles belong to the recorder in force when they were registered: the global Prometheus
//! recorder, installed at start-up before any request is served (`startup`), and never replaced.

use std::cell::RefCell;
use std::collections::HashMap;
use std::time::Duration;

use metrics::{Counter, Histogram};

use crate::decision::{Decision, Outcome};
use crate::payload::Stage;

/// The `policy` label of a decision no policy made (deadline, guard-only, no match).
const NO_POLICY: &str = "(none)";

/// Policies kept per thread. Names come from the rule files, so a rule set has few; reloads that
/// rename policies could add more forever, so past this the cache starts over (the series stay in
/// the registry, only this thread's handles to them are dropped and registered again on use).
const MAX_POLICIES: usize = 256;

const STAGES: usize = Stage::ALL.len();
const OUTCOMES: usize = 3;

/// Records the decision's metrics; `elapsed` is the request's time so far.
pub fn record(decision: &Decision, replay: bool, elapsed: Duration) {
    let cached = HANDLES.try_with(|handles| {
        let Ok(mut handles) = handles.try_borrow_mut() else {
            return false;
        };
        let handles = handles.get_or_insert_with(Handles::new);
        handles.record(decision, replay, elapsed);
        true
    });
    if !matches!(cached, Ok(true)) {
        record_uncached(decision, replay, elapsed);
    }
}

thread_local! {
    static HANDLES: RefCell<Option<Handles>> = const { RefCell::new(None) };
}

struct Handles {
    duration: Histogram,
    /// Policy name → its counters' index in `counters`.
    by_name: HashMap<Box<str>, usize>,
    counters: Vec<PolicyCounters>,
}

/// One policy's counters, registered on first use.
#[derive(Default)]
struct PolicyCounters {
    /// `pimgate_decisions_total` by stage, outcome and replay.
    decisions: [[[Option<Counter>; 2]; OUTCOMES]; STAGES],
    /// `pimgate_shadow_decisions_total` by stage and outcome.
    shadow: [[Option<Counter>; OUTCOMES]; STAGES],
}

impl Handles {
    fn new() -> Self {
        Self {
            duration: duration_histogram(),
            by_name: HashMap::new(),
            counters: Vec::new(),
        }
    }

    fn record(&mut self, decision: &Decision, replay: bool, elapsed: Duration) {
        let stage = decision.stage;
        let policy = decision.policy.as_deref().unwrap_or(NO_POLICY);
        self.policy(policy).decisions[stage_index(stage)][outcome_index(decision.outcome)]
            [usize::from(replay)]
        .get_or_insert_with(|| decisions_counter(stage, decision.outcome, policy, replay))
        .increment(1);
        self.duration.record(elapsed.as_secs_f64());
        // A replay answers the same request again: its shadow decisions were counted when it was made.
        if !replay {
            for shadow in &decision.shadow {
                self.policy(&shadow.policy).shadow[stage_index(stage)]
                    [outcome_index(shadow.outcome)]
                .get_or_insert_with(|| shadow_counter(stage, &shadow.policy, shadow.outcome))
                .increment(1);
            }
        }
    }

    fn policy(&mut self, name: &str) -> &mut PolicyCounters {
        // Looked up by `&str` so a known policy costs no allocation.
        let index = match self.by_name.get(name) {
            Some(&index) => index,
            None => {
                if self.counters.len() >= MAX_POLICIES {
                    self.by_name.clear();
                    self.counters.clear();
                }
                self.counters.push(PolicyCounters::default());
                self.by_name.insert(name.into(), self.counters.len() - 1);
                self.counters.len() - 1
            }
        };
        &mut self.counters[index]
    }
}

/// What `record` does when this thread's cache cannot be used (thread teardown): the macros.
fn record_uncached(decision: &Decision, replay: bool, elapsed: Duration) {
    let policy = decision.policy.as_deref().unwrap_or(NO_POLICY);
    decisions_counter(decision.stage, decision.outcome, policy, replay).increment(1);
    duration_histogram().record(elapsed.as_secs_f64());
    if !replay {
        for shadow in &decision.shadow {
            shadow_counter(decision.stage, &shadow.policy, shadow.outcome).increment(1);
        }
    }
}

fn decisions_counter(stage: Stage, outcome: Outcome, policy: &str, replay: bool) -> Counter {
    metrics::counter!(
        "pimgate_decisions_total",
        "stage" => stage.name(),
        "outcome" => outcome.as_str(),
        "policy" => policy.to_string(),
        "replay" => if replay { "true" } else { "false" }
    )
}

fn shadow_counter(stage: Stage, policy: &str, outcome: Outcome) -> Counter {
    metrics::counter!(
        "pimgate_shadow_decisions_total",
        "stage" => stage.name(),
        "policy" => policy.to_string(),
        "outcome" => outcome.as_str()
    )
}

fn duration_histogram() -> Histogram {
    metrics::histogram!("pimgate_decision_duration_seconds")
}

fn stage_index(stage: Stage) -> usize {
    match stage {
        Stage::PreApproval => 0,
        Stage::PostApproval => 1,
    }
}

fn outcome_index(outcome: Outcome) -> usize {
    match outcome {
        Outcome::Approved => 0,
        Outcome::AutoApproved => 1,
        Outcome::Denied => 2,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decision::ShadowDecision;
    use metrics_exporter_prometheus::PrometheusBuilder;

    fn decision(policy: Option<&str>, outcome: Outcome, shadow: &[(&str, Outcome)]) -> Decision {
        Decision {
            stage: Stage::PostApproval,
            policy: policy.map(str::to_string),
            shadow: shadow
                .iter()
                .map(|(policy, outcome)| ShadowDecision {
                    policy: policy.to_string(),
                    outcome: *outcome,
                    reasons: Vec::new(),
                    checks: Vec::new(),
                })
                .collect(),
            ..Decision::bare(outcome)
        }
    }

    /// The exposition text of what `record_with` recorded into a recorder of its own, on a thread
    /// of its own (the handle cache is per thread), as sorted lines.
    fn rendered(record_with: fn(&Decision, bool, Duration)) -> Vec<String> {
        std::thread::spawn(move || {
            let recorder = PrometheusBuilder::new().build_recorder();
            let handle = recorder.handle();
            metrics::with_local_recorder(&recorder, || {
                let approved = decision(Some("p"), Outcome::Approved, &[("s", Outcome::Denied)]);
                let denied = decision(None, Outcome::Denied, &[]);
                for (decision, replay, ms) in [
                    (&approved, false, 3),
                    (&approved, true, 1),
                    (&denied, false, 7),
                    (&approved, false, 2),
                ] {
                    record_with(decision, replay, Duration::from_millis(ms));
                }
            });
            let mut lines: Vec<String> = handle.render().lines().map(str::to_string).collect();
            lines.sort();
            lines
        })
        .join()
        .unwrap()
    }

    #[test]
    fn cached_handles_export_exactly_what_registering_per_request_did() {
        let cached = rendered(record);
        assert_eq!(cached, rendered(record_uncached));
        for expected in [
            r#"pimgate_decisions_total{stage="post_approval",outcome="Approved",policy="p",replay="false"} 2"#,
            r#"pimgate_decisions_total{stage="post_approval",outcome="Approved",policy="p",replay="true"} 1"#,
            r#"pimgate_decisions_total{stage="post_approval",outcome="Denied",policy="(none)",replay="false"} 1"#,
            r#"pimgate_shadow_decisions_total{stage="post_approval",policy="s",outcome="Denied"} 2"#,
            "pimgate_decision_duration_seconds_count 4",
        ] {
            assert!(
                cached.iter().any(|line| line == expected),
                "missing `{expected}` in {cached:#?}"
            );
        }
        assert!(
            !cached.iter().any(|line| line.contains("AutoApproved")),
            "a combination never seen has no series: {cached:#?}"
        );
    }

    #[test]
    fn a_thread_that_saw_more_policies_than_it_keeps_still_counts_each_one() {
        let lines = std::thread::spawn(|| {
            let recorder = PrometheusBuilder::new().build_recorder();
            let handle = recorder.handle();
            metrics::with_local_recorder(&recorder, || {
                for round in 0..2 {
                    for index in 0..=MAX_POLICIES {
                        let name = format!("policy-{index}");
                        record(
                            &decision(Some(&name), Outcome::Denied, &[]),
                            round == 1 && index == MAX_POLICIES,
                            Duration::ZERO,
                        );
                    }
                }
            });
            handle.render()
        })
        .join()
        .unwrap();
        let series = |policy: usize, replay: bool| {
            format!(
                r#"pimgate_decisions_total{{stage="post_approval",outcome="Denied",policy="policy-{policy}",replay="{replay}"}}"#
            )
        };
        for (expected, count) in [
            (series(0, false), 2),
            (series(MAX_POLICIES, false), 1),
            (series(MAX_POLICIES, true), 1),
        ] {
            let line = format!("{expected} {count}");
            assert!(lines.contains(&line), "missing `{line}`");
        }
    }
}
