//! Operator rules: YAML files parsed, validated (every problem at once) and compiled into a
//! [`RuleSet`] that selects the one policy deciding a request.
//!
//! The format is documented for operators in `rules/README.md`. Selection is first match wins, in
//! file-name then document order, like firewall rules: the order an operator reads is the order that
//! decides. Guards (`guards:`) stand beside that order: every guard whose match holds is applied to
//! the request whichever policy decides, and a guard can only deny (Cedar's "forbid overrides permit").

mod build;
mod build_match;
pub mod catalog;
pub mod cel;
pub mod compile;
mod declarations;
mod index;
pub(crate) mod locate;
pub mod matcher;
pub(crate) mod report;
mod sources;
mod spec;
pub use spec::{FileKeys, field_names, file_keys};
pub use validate::match_example;
mod stages;
mod start_bounds;
mod validate;

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::checks::NamedCheck;
use crate::payload::{ActivationRequest, Stage};
use crate::vocabulary::diagnostic::Diagnostic;
use crate::vocabulary::{Outcome, SkippedPolicy};

/// What happens when a required check cannot be evaluated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FailureMode {
    /// Fail closed: the request is denied, with a reason saying the check could not run.
    #[default]
    Deny,
    /// The check is skipped and the request goes on to PIM's normal approval; never `AutoApproved`.
    Approve,
}

/// Whether a matching policy decides (`enforce`) or only has its would-be decision recorded (`audit`,
/// "shadow mode"), so operators can watch a new policy against live traffic before it answers PIM.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PolicyMode {
    #[default]
    Enforce,
    Audit,
}

/// A policy's fixed answer (`decide:`), with no checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FixedDecision {
    pub outcome: Outcome,
    pub reason: String,
}

#[derive(Debug, Clone)]
pub struct Policy {
    pub name: String,
    pub description: Option<String>,
    pub source: PathBuf,
    pub decide: Option<FixedDecision>,
    pub require: Vec<NamedCheck>,
    pub auto_approve: Vec<NamedCheck>,
    pub on_error: FailureMode,
    /// Which requests this policy is about; checked before `when`.
    pub matcher: matcher::Matcher,
    /// The optional CEL condition, evaluated only when `matcher` matches.
    pub when: Option<cel::Condition>,
    /// The operator's explicit consent to auto-approving a policy that can match a Critical role.
    pub allow_auto_approve_on_critical: bool,
    /// `audit` policies never decide; see [`PolicyMode`].
    pub mode: PolicyMode,
}

/// An organisation-wide requirement: applied to every request its `match` (and `when`) holds for,
/// independently of which policy is selected, also when none is. It can only make the answer
/// stricter: a failing guard denies; one whose checks cannot be evaluated denies (`on_error: deny`)
/// or caps the answer at `Approved` (`on_error: approve`). Documented in rules/README.md, "Guards".
#[derive(Debug, Clone)]
pub struct Guard {
    pub name: String,
    pub description: Option<String>,
    pub source: PathBuf,
    /// Same keys and meaning as a policy's match, except that `actions` defaults to
    /// [`matcher::GUARD_DEFAULT_ACTIONS`].
    pub matcher: matcher::Matcher,
    pub when: Option<cel::Condition>,
    /// Checks that must all pass; empty when the guard has a fixed denial.
    pub require: Vec<NamedCheck>,
    /// `decide: Denied` with this `reason`: every request the guard applies to is denied.
    pub deny_reason: Option<String>,
    pub on_error: FailureMode,
    /// `audit` guards are evaluated and recorded but never change the answer.
    pub mode: PolicyMode,
}

/// A guard that applies to a request: its `match` holds and its `when` is true or failed.
#[derive(Debug, Clone)]
pub struct GuardMatch<'a> {
    pub guard: &'a Guard,
    /// Its `when` could not be evaluated: the guard denies (or, in audit mode, would deny).
    pub condition_error: Option<String>,
}

#[derive(Debug, Clone)]
pub struct RuleSet {
    /// sha256 over the rule files' names and bytes, in load order: audit records name the exact rules.
    pub revision: String,
    pub policies: Vec<Policy>,
    /// Guards in load order (file name, then document order); every applicable one is applied.
    pub guards: Vec<Guard>,
    /// Problems that do not stop loading (e.g. a connector that is not configured).
    pub warnings: Vec<Diagnostic>,
    /// How many distinct checks occur more than once in the rule set ([`NamedCheck::shared`]): the
    /// size of the memo one evaluation keeps, so each of them is evaluated once per request.
    pub shared_slots: usize,
    /// Built from `policies` at load; [`RuleSet::select`] falls back to a scan should the number of
    /// policies have changed since (tests edit checks in place, never matchers).
    index: index::PolicyIndex,
}

/// An `audit` policy that matched before the deciding one: its would-be decision is recorded only.
#[derive(Debug, Clone)]
pub struct ShadowMatch<'a> {
    pub policy: &'a Policy,
    /// Its `when` could not be evaluated: enforced, it would deny; in audit mode selection goes on.
    pub condition_error: Option<String>,
}

/// The outcome of matching: the first enforcing policy that matches decides. `shadows` are the
/// `audit` policies that matched before it, in order.
#[derive(Debug)]
pub enum Selection<'a> {
    Matched {
        policy: &'a Policy,
        skipped: Vec<SkippedPolicy>,
        shadows: Vec<ShadowMatch<'a>>,
    },
    /// No policy matched: the request is denied (an operator adds a catch-all policy to change that).
    NoMatch {
        skipped: Vec<SkippedPolicy>,
        shadows: Vec<ShadowMatch<'a>>,
    },
    /// A policy's `when` condition failed to evaluate: fail closed rather than fall through.
    ConditionError {
        policy: &'a Policy,
        message: String,
        skipped: Vec<SkippedPolicy>,
        shadows: Vec<ShadowMatch<'a>>,
    },
}

/// Loads a rule file, or every `*.yaml`/`*.yml` of a folder except `*.test.yaml`/`*.test.yml`, in
/// file-name order. Every problem of every file is reported at once; warnings travel with the errors
/// in `Err` and in [`RuleSet::warnings`] on success.
pub fn load(path: &Path) -> Result<RuleSet, Vec<Diagnostic>> {
    compile::load(path, &crate::connectors::Connectors::none())
}

/// As [`load`], for one rule file held in memory and named `name` in problems (fuzzing, property
/// tests); no connectors, like [`load`].
pub fn load_str(name: &str, text: &str) -> Result<RuleSet, Vec<Diagnostic>> {
    compile::load_text(name, text, &crate::connectors::Connectors::none())
}

/// As [`load`], with the upstream connectors the service runs with (checks keep a handle to theirs).
pub fn load_with(
    path: &Path,
    connectors: &std::sync::Arc<crate::connectors::Connectors>,
) -> Result<RuleSet, Vec<Diagnostic>> {
    compile::load(path, connectors)
}

/// Publishes which rules are live: `pimgate_rules_info{revision}` = 1 and `pimgate_rules_policies`.
/// Call it whenever a rule set starts serving (start-up, a reload); the previously published
/// revision drops to 0, so a dashboard shows exactly one live revision per replica. No-op without a
/// metrics recorder (CLI).
pub fn record_metrics(rules: &RuleSet) {
    static PUBLISHED: std::sync::Mutex<Option<String>> = std::sync::Mutex::new(None);
    // A poisoned lock only means a panic between two assignments of a `String`; the value is whole.
    let mut published = PUBLISHED
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(previous) = published.take()
        && previous != rules.revision
    {
        metrics::gauge!("pimgate_rules_info", "revision" => previous).set(0.0);
    }
    metrics::gauge!("pimgate_rules_info", "revision" => rules.revision.clone()).set(1.0);
    metrics::gauge!("pimgate_rules_policies").set(rules.policies.len() as f64);
    metrics::gauge!("pimgate_rules_guards").set(rules.guards.len() as f64);
    *published = Some(rules.revision.clone());
}

impl<'a> Selection<'a> {
    /// The policies passed over on the way to the answer, with why.
    pub fn into_skipped(self) -> Vec<SkippedPolicy> {
        match self {
            Selection::Matched { skipped, .. }
            | Selection::NoMatch { skipped, .. }
            | Selection::ConditionError { skipped, .. } => skipped,
        }
    }
}

/// The state of one selection: what was passed over so far. Both ways of selecting visit policies
/// through it, so they judge a policy identically.
#[derive(Default)]
struct Scan<'a> {
    skipped: Vec<SkippedPolicy>,
    shadows: Vec<ShadowMatch<'a>>,
}

impl<'a> Scan<'a> {
    /// Judges one policy; `Some` when it ends the selection.
    fn visit(
        &mut self,
        policy: &'a Policy,
        request: &ActivationRequest,
        stage: Stage,
        now: DateTime<Utc>,
    ) -> Option<Selection<'a>> {
        if let Some(why) = policy.matcher.mismatch(request, stage) {
            self.skipped.push(SkippedPolicy {
                policy: policy.name.clone(),
                why: why.to_string(),
            });
            return None;
        }
        let verdict = match &policy.when {
            None => Ok(true),
            Some(condition) => condition.evaluate(request, now),
        };
        let skipped = &mut self.skipped;
        let shadows = &mut self.shadows;
        match (verdict, policy.mode) {
            (Ok(false), _) => skipped.push(SkippedPolicy {
                policy: policy.name.clone(),
                why: "`when` is false".to_string(),
            }),
            (Ok(true), PolicyMode::Audit) => shadows.push(ShadowMatch {
                policy,
                condition_error: None,
            }),
            (Err(message), PolicyMode::Audit) => shadows.push(ShadowMatch {
                policy,
                condition_error: Some(message),
            }),
            (Ok(true), PolicyMode::Enforce) => {
                return Some(Selection::Matched {
                    policy,
                    skipped: std::mem::take(skipped),
                    shadows: std::mem::take(shadows),
                });
            }
            (Err(message), PolicyMode::Enforce) => {
                return Some(Selection::ConditionError {
                    policy,
                    message,
                    skipped: std::mem::take(skipped),
                    shadows: std::mem::take(shadows),
                });
            }
        }
        None
    }

    fn no_match(self) -> Selection<'a> {
        Selection::NoMatch {
            skipped: self.skipped,
            shadows: self.shadows,
        }
    }
}

impl RuleSet {
    /// The rule set of `policies` and `guards` in load order, with the policies' index. Checks
    /// written identically in several places share one memo slot (see [`NamedCheck::shared`]).
    pub(crate) fn new(
        revision: String,
        mut policies: Vec<Policy>,
        mut guards: Vec<Guard>,
        warnings: Vec<Diagnostic>,
    ) -> RuleSet {
        let index = index::PolicyIndex::build(policies.iter().map(|policy| &policy.matcher));
        let shared_slots = build::share_identical_checks(&mut policies, &mut guards);
        RuleSet {
            revision,
            policies,
            guards,
            warnings,
            shared_slots,
            index,
        }
    }

    /// Every guard that applies to `request`, in load order: its `match` holds and its `when` is
    /// true, or could not be evaluated (such a guard denies, see [`GuardMatch`]). Guards are few (an
    /// organisation has a handful of "never" rules), so this is a scan, not an index: a mismatch costs
    /// a few comparisons, and nothing is allocated when no guard applies.
    pub fn applicable_guards(
        &self,
        request: &ActivationRequest,
        stage: Stage,
        now: DateTime<Utc>,
    ) -> Vec<GuardMatch<'_>> {
        self.guards
            .iter()
            .filter(|guard| guard.matcher.mismatch(request, stage).is_none())
            .filter_map(|guard| {
                let verdict = match &guard.when {
                    None => Ok(true),
                    Some(condition) => condition.evaluate(request, now),
                };
                match verdict {
                    Ok(true) => Some(GuardMatch {
                        guard,
                        condition_error: None,
                    }),
                    Ok(false) => None,
                    Err(message) => Some(GuardMatch {
                        guard,
                        condition_error: Some(message),
                    }),
                }
            })
            .collect()
    }

    /// The guards that do not apply to `request`, with why (for `pimgate evaluate`).
    pub fn guards_not_applied(
        &self,
        request: &ActivationRequest,
        stage: Stage,
        now: DateTime<Utc>,
    ) -> Vec<SkippedPolicy> {
        self.guards
            .iter()
            .filter_map(|guard| {
                let why = match guard.matcher.mismatch(request, stage) {
                    Some(why) => why.to_string(),
                    None => match &guard.when {
                        Some(condition) if condition.evaluate(request, now) == Ok(false) => {
                            "`when` is false".to_string()
                        }
                        _ => return None,
                    },
                };
                Some(SkippedPolicy {
                    policy: guard.name.clone(),
                    why,
                })
            })
            .collect()
    }

    /// The first enforcing policy (file-name, then document order) whose `match` holds and whose
    /// `when` is true. A `when` that cannot be evaluated stops the search: falling through to a more
    /// permissive policy would fail open. `audit` policies that match on the way are collected as
    /// shadows and the search goes on, so they never change the answer.
    ///
    /// Only the policies the index cannot rule out by the request's role, group, scope, principal,
    /// tier or action are judged, so `skipped` lists those of them passed over (a subsequence of
    /// [`RuleSet::select_explained`]'s); the answer and the shadows are the same.
    pub fn select(
        &self,
        request: &ActivationRequest,
        stage: Stage,
        now: DateTime<Utc>,
    ) -> Selection<'_> {
        if self.index.len() != self.policies.len() {
            return self.select_explained(request, stage, now);
        }
        let mut scan = Scan::default();
        for position in self.index.candidates(request) {
            let Some(policy) = self.policies.get(position) else {
                continue;
            };
            if let Some(selection) = scan.visit(policy, request, stage, now) {
                return selection;
            }
        }
        scan.no_match()
    }

    /// As [`RuleSet::select`], judging every policy in order, so `skipped` names every policy
    /// passed over: the full explanation `pimgate evaluate` prints, and the reference `select` is
    /// tested against. Linear in the number of policies; not for the request path.
    pub fn select_explained(
        &self,
        request: &ActivationRequest,
        stage: Stage,
        now: DateTime<Utc>,
    ) -> Selection<'_> {
        let mut scan = Scan::default();
        for policy in &self.policies {
            if let Some(selection) = scan.visit(policy, request, stage, now) {
                return selection;
            }
        }
        scan.no_match()
    }

    /// Heap bytes of the selection index (estimated), for the rule-scale benchmark.
    pub fn index_estimated_bytes(&self) -> usize {
        self.index.estimated_bytes()
    }
}

#[cfg(test)]
mod tests {
    /// The service shares one `RuleSet` across worker threads; compiled CEL must not break that.
    #[test]
    fn a_rule_set_can_be_shared_across_threads() {
        fn shared<T: Send + Sync>() {}
        shared::<super::RuleSet>();
    }

    #[test]
    fn the_live_rules_revision_is_published_and_the_replaced_one_drops_to_zero() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rules.yaml");
        let load = |text: &str| {
            std::fs::write(&path, text).unwrap();
            super::load(&path).unwrap()
        };
        let first =
            load("policies:\n  - name: all\n    match: {}\n    decide: Approved\n    reason: ok\n");
        let second = load(concat!(
            "policies:\n  - name: groups\n    match: { resource_types: [entraGroups] }\n",
            "    decide: Approved\n    reason: ok\n",
            "  - name: rest\n    match: {}\n    decide: Denied\n    reason: no\n"
        ));
        let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        metrics::with_local_recorder(&recorder, || {
            super::record_metrics(&first);
            super::record_metrics(&second);
        });
        let text = handle.render();
        let live = format!("pimgate_rules_info{{revision=\"{}\"}} 1", second.revision);
        let replaced = format!("pimgate_rules_info{{revision=\"{}\"}} 0", first.revision);
        assert!(text.contains(&live), "{text}");
        assert!(text.contains(&replaced), "{text}");
        assert!(text.contains("pimgate_rules_policies 2"), "{text}");
    }
}
