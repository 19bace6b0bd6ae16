//! The decision value and the evaluation that produces it.
//!
//! A `Denied` is a normal answer, not an error. Evaluation does no I/O of its own: it selects the
//! policy, runs that policy's checks (and those of any matching `audit` policy, recorded as shadow
//! decisions) concurrently under one deadline, and applies the failure mode.

use chrono::{DateTime, Utc};
use serde::Serialize;
use uuid::Uuid;

use crate::checks::{CheckOutcome, CheckStatus};

/// PIM's three answers (`evaluationOutcome`), spelled exactly as PIM expects them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, serde::Deserialize)]
pub enum Outcome {
    Approved,
    AutoApproved,
    Denied,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Approved => "Approved",
            Outcome::AutoApproved => "AutoApproved",
            Outcome::Denied => "Denied",
        }
    }
}

/// Which list of a policy a check came from: `require` gates the request, `auto_approve` only
/// decides whether a human can be skipped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckStage {
    Require,
    AutoApprove,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CheckReport {
    pub kind: String,
    pub stage: CheckStage,
    #[serde(flatten)]
    pub outcome: CheckOutcome,
    pub duration_ms: f64,
}

impl CheckReport {
    pub fn status(&self) -> CheckStatus {
        self.outcome.status
    }
}

/// Why a policy was passed over, for the explanation tree.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SkippedPolicy {
    pub policy: String,
    pub why: String,
}

/// What a matching `mode: audit` policy would have decided. Recorded in the audit record and the
/// metrics so a policy can be watched against live traffic; never part of PIM's answer.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ShadowDecision {
    pub policy: String,
    pub outcome: Outcome,
    pub reasons: Vec<String>,
    pub checks: Vec<CheckReport>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Decision {
    pub evaluation_id: Uuid,
    pub outcome: Outcome,
    /// What PIM shows the requester: what was decided and why, in words they can act on.
    pub reasons: Vec<String>,
    /// The policy that decided, if any matched.
    pub policy: Option<String>,
    pub skipped_policies: Vec<SkippedPolicy>,
    pub checks: Vec<CheckReport>,
    /// The would-be decisions of the `audit` policies that matched before the deciding one.
    pub shadow: Vec<ShadowDecision>,
    pub rules_revision: String,
    pub evaluated_at: DateTime<Utc>,
    pub duration_ms: f64,
}

use std::time::{Duration, Instant};

use futures::future::join_all;

use crate::checks::{CheckContext, NamedCheck};
use crate::payload::{ActivationInterval, ActivationRequest};
use crate::rules::{FailureMode, Policy, RuleSet, Selection, ShadowMatch};

/// Evaluates one request against the rules. Never fails: whatever goes wrong inside becomes a
/// `Denied` (or, where the policy says so, an `Approved`) with a reason saying what happened.
/// `budget` bounds the checks: a check still running when it is spent counts as not evaluated.
/// Shadow (`audit`) policies run alongside the deciding one under the same budget, so they add no
/// latency of their own and never change the answer.
pub async fn evaluate(
    rules: &RuleSet,
    request: &ActivationRequest,
    now: DateTime<Utc>,
    budget: Duration,
) -> Decision {
    let started = Instant::now();
    let mut decision = Decision {
        evaluation_id: Uuid::now_v7(),
        outcome: Outcome::Denied,
        reasons: Vec::new(),
        policy: None,
        skipped_policies: Vec::new(),
        checks: Vec::new(),
        shadow: Vec::new(),
        rules_revision: rules.revision.clone(),
        evaluated_at: now,
        duration_ms: 0.0,
    };
    let context = CheckContext::new(request, now, tokio::time::Instant::now() + budget);
    match rules.select(request, now) {
        Selection::NoMatch { skipped, shadows } => {
            decision.skipped_policies = skipped;
            decision.reasons.push(format!(
                "Denied: no pimgate policy covers {} for action `{}`. Ask your PIM administrators to add one.",
                describe_target(request),
                request.action.as_str()
            ));
            decision.shadow = run_shadows(&shadows, &context, budget).await;
        }
        Selection::ConditionError {
            policy,
            message,
            skipped,
            shadows,
        } => {
            decision.skipped_policies = skipped;
            decision.policy = Some(policy.name.clone());
            decision
                .reasons
                .push(condition_error_reason(policy, &message));
            decision.shadow = run_shadows(&shadows, &context, budget).await;
        }
        Selection::Matched {
            policy,
            skipped,
            shadows,
        } => {
            decision.skipped_policies = skipped;
            decision.policy = Some(policy.name.clone());
            let (verdict, shadow) = futures::join!(
                apply_policy(policy, &context, budget),
                run_shadows(&shadows, &context, budget)
            );
            decision.outcome = verdict.outcome;
            decision.reasons = verdict.reasons;
            decision.checks = verdict.checks;
            decision.shadow = shadow;
        }
    }
    decision.duration_ms = elapsed_ms(started);
    decision
}

fn condition_error_reason(policy: &Policy, message: &str) -> String {
    format!(
        "Denied: the condition of policy '{}' could not be evaluated ({message}). Ask your PIM administrators to fix the rule.",
        policy.name
    )
}

/// What one policy decides for the request, before it is known whether that is the answer.
struct Verdict {
    outcome: Outcome,
    reasons: Vec<String>,
    checks: Vec<CheckReport>,
}

/// Every shadow policy's would-be decision, computed concurrently; a shadow whose `when` could not
/// be evaluated would deny, as an enforcing policy does.
async fn run_shadows(
    shadows: &[ShadowMatch<'_>],
    context: &CheckContext<'_>,
    budget: Duration,
) -> Vec<ShadowDecision> {
    let runs = shadows.iter().map(|shadow| async move {
        let verdict = match &shadow.condition_error {
            Some(message) => Verdict {
                outcome: Outcome::Denied,
                reasons: vec![condition_error_reason(shadow.policy, message)],
                checks: Vec::new(),
            },
            None => apply_policy(shadow.policy, context, budget).await,
        };
        ShadowDecision {
            policy: shadow.policy.name.clone(),
            outcome: verdict.outcome,
            reasons: verdict.reasons,
            checks: verdict.checks,
        }
    });
    join_all(runs).await
}

async fn apply_policy(policy: &Policy, context: &CheckContext<'_>, budget: Duration) -> Verdict {
    if let Some(fixed) = &policy.decide {
        return Verdict {
            outcome: fixed.outcome,
            reasons: vec![format!(
                "{} by policy '{}': {}",
                verb(fixed.outcome),
                policy.name,
                fixed.reason
            )],
            checks: Vec::new(),
        };
    }
    let staged = policy
        .require
        .iter()
        .map(|check| (CheckStage::Require, check))
        .chain(
            policy
                .auto_approve
                .iter()
                .map(|check| (CheckStage::AutoApprove, check)),
        );
    let runs = staged.map(|(stage, check)| run_check(stage, check, context, budget));
    let checks = join_all(runs).await;
    let (outcome, reasons) = judge(policy, &checks, &context.interval);
    Verdict {
        outcome,
        reasons,
        checks,
    }
}

/// Evidence established this close to the activation's effective start counts as holding at it:
/// the clock skew between PIM and pimgate, the same allowance the `duration` check gives.
const EVIDENCE_TIME_TOLERANCE: chrono::Duration = chrono::Duration::seconds(60);

/// Whether a passing check's evidence holds at the effective start: timeless evidence always does;
/// evidence established for an instant does when that instant is the start, within the tolerance.
fn holds_at_start(report: &CheckReport, interval: &ActivationInterval) -> bool {
    report
        .outcome
        .holds_at
        .is_none_or(|at| (at - interval.start).abs() <= EVIDENCE_TIME_TOLERANCE)
}

/// Why a check's evidence does not support skipping the human: it was established for another
/// instant (in practice: now) than the one the activation starts at.
fn untimely_reason(report: &CheckReport, interval: &ActivationInterval) -> String {
    let stamp = |at: DateTime<Utc>| at.format("%Y-%m-%d %H:%M UTC").to_string();
    let at = report.outcome.holds_at.unwrap_or(interval.now);
    let when = if (at - interval.now).abs() <= EVIDENCE_TIME_TOLERANCE {
        format!("now ({})", stamp(at))
    } else {
        format!("at {}", stamp(at))
    };
    format!(
        "Not auto-approved: {}: {}; this holds {when}, not at the requested start ({}); a human approver decides.",
        report.kind,
        report.outcome.message,
        stamp(interval.start)
    )
}

/// The outcome and reasons a policy's check reports add up to. `AutoApproved` also needs every
/// passing check it rests on (`require` and `auto_approve`) to hold at the effective start.
fn judge(
    policy: &Policy,
    checks: &[CheckReport],
    interval: &ActivationInterval,
) -> (Outcome, Vec<String>) {
    let required: Vec<&CheckReport> = checks
        .iter()
        .filter(|report| report.stage == CheckStage::Require)
        .collect();
    let failed: Vec<&&CheckReport> = required
        .iter()
        .filter(|r| r.status() == CheckStatus::Fail)
        .collect();
    let errored: Vec<&&CheckReport> = required
        .iter()
        .filter(|r| r.status() == CheckStatus::Error)
        .collect();

    let mut reasons = Vec::new();
    if !failed.is_empty() || (!errored.is_empty() && policy.on_error == FailureMode::Deny) {
        for report in &failed {
            reasons.push(format!(
                "Denied by policy '{}': {}: {}",
                policy.name, report.kind, report.outcome.message
            ));
        }
        if policy.on_error == FailureMode::Deny {
            for report in &errored {
                reasons.push(format!(
                    "Denied by policy '{}': the {} check could not be evaluated ({}); this is not a finding against you, retry later or ask your PIM administrators.",
                    policy.name, report.kind, report.outcome.message
                ));
            }
        }
        return (Outcome::Denied, reasons);
    }
    for report in &errored {
        reasons.push(format!(
            "The {} check could not be evaluated ({}); policy '{}' lets the request continue to human approval.",
            report.kind, report.outcome.message, policy.name
        ));
    }

    let auto: Vec<&CheckReport> = checks
        .iter()
        .filter(|report| report.stage == CheckStage::AutoApprove)
        .collect();
    let auto_ok = !policy.auto_approve.is_empty()
        && errored.is_empty()
        && auto
            .iter()
            .all(|report| report.status() == CheckStatus::Pass);
    let untimely: Vec<&CheckReport> = checks
        .iter()
        .filter(|report| report.status() == CheckStatus::Pass && !holds_at_start(report, interval))
        .collect();
    if auto_ok && untimely.is_empty() {
        let evidence: Vec<String> = auto
            .iter()
            .map(|r| format!("{}: {}", r.kind, r.outcome.message))
            .collect();
        reasons.insert(
            0,
            format!(
                "Auto-approved by policy '{}': {}.",
                policy.name,
                evidence.join("; ")
            ),
        );
        return (Outcome::AutoApproved, reasons);
    }
    let passed = required.len() - errored.len();
    reasons.insert(
        0,
        format!(
            "Approved by policy '{}': {passed} of {} required checks passed; PIM's own approval settings apply.",
            policy.name,
            required.len()
        ),
    );
    for report in auto.iter().filter(|r| r.status() != CheckStatus::Pass) {
        reasons.push(format!(
            "Not auto-approved: {}: {}",
            report.kind, report.outcome.message
        ));
    }
    if auto_ok {
        reasons.extend(
            untimely
                .iter()
                .map(|report| untimely_reason(report, interval)),
        );
    }
    (Outcome::Approved, reasons)
}

/// The one place a check's time is bounded: a check that overruns is reported as not evaluated.
/// Also the one place check metrics are recorded, so every caller of `evaluate` counts the same way.
async fn run_check(
    stage: CheckStage,
    check: &NamedCheck,
    context: &CheckContext<'_>,
    budget: Duration,
) -> CheckReport {
    let started = Instant::now();
    let outcome = match tokio::time::timeout(budget, check.check.evaluate(context)).await {
        Ok(outcome) => outcome,
        Err(_) => CheckOutcome::error(format!("no answer within {} ms", budget.as_millis())),
    };
    let elapsed = started.elapsed();
    let status = match outcome.status {
        CheckStatus::Pass => "pass",
        CheckStatus::Fail => "fail",
        CheckStatus::Error => "error",
    };
    metrics::histogram!("pimgate_check_duration_seconds", "kind" => check.kind)
        .record(elapsed.as_secs_f64());
    metrics::counter!("pimgate_check_results_total", "kind" => check.kind, "status" => status)
        .increment(1);
    CheckReport {
        kind: check.kind.to_string(),
        stage,
        outcome,
        duration_ms: elapsed.as_secs_f64() * 1000.0,
    }
}

fn verb(outcome: Outcome) -> &'static str {
    match outcome {
        Outcome::Approved => "Approved",
        Outcome::AutoApproved => "Auto-approved",
        Outcome::Denied => "Denied",
    }
}

/// "role Global Administrator (62e9…) at scope /", used in reasons.
pub fn describe_target(request: &ActivationRequest) -> String {
    use crate::payload::Target;
    match &request.target {
        Target::EntraRole {
            role_definition_id,
            directory_scope_id,
            ..
        } => {
            format!(
                "Entra role {} at scope `{directory_scope_id}`",
                role_label(role_definition_id)
            )
        }
        Target::Group {
            group_id,
            access_id,
        } => {
            format!("group `{group_id}` ({} access)", access_id.as_str())
        }
        Target::AzureRole {
            role_definition_id,
            scope,
            ..
        } => {
            format!(
                "Azure role {} at scope `{scope}`",
                role_label(role_definition_id)
            )
        }
    }
}

fn role_label(id: &str) -> String {
    match crate::rules::catalog::by_id(id) {
        Some(role) => format!("'{}' ({id})", role.name),
        None => format!("`{id}`"),
    }
}

fn elapsed_ms(started: Instant) -> f64 {
    started.elapsed().as_secs_f64() * 1000.0
}

#[cfg(test)]
mod tests {
    //! The outcome logic around checks, with checks that behave in ways the local kinds never do:
    //! hang, fail to evaluate, or pass only for auto-approval.

    use std::sync::Arc;

    use async_trait::async_trait;

    use super::*;
    use crate::checks::test_support::{now, request};
    use crate::checks::{Check, CheckContext, NamedCheck};
    use crate::rules::{self, FailureMode};

    #[derive(Debug)]
    enum Behaviour {
        Pass,
        Fail,
        Error,
        Hang,
    }

    #[async_trait]
    impl Check for Behaviour {
        async fn evaluate(&self, _context: &CheckContext<'_>) -> CheckOutcome {
            match self {
                Behaviour::Pass => CheckOutcome::pass("looks fine"),
                Behaviour::Fail => CheckOutcome::fail("you are not on the list"),
                Behaviour::Error => CheckOutcome::error("upstream answered 503"),
                Behaviour::Hang => {
                    futures::future::pending::<()>().await;
                    CheckOutcome::pass("unreachable")
                }
            }
        }
    }

    fn named(kind: &'static str, behaviour: Behaviour) -> NamedCheck {
        NamedCheck {
            kind,
            check: Arc::new(behaviour),
        }
    }

    /// One catch-all policy whose checks are replaced by the given behaviours.
    fn rules_with(
        require: Vec<NamedCheck>,
        auto_approve: Vec<NamedCheck>,
        on_error: FailureMode,
    ) -> RuleSet {
        let dir = tempfile::tempdir().expect("temp dir");
        let file = dir.path().join("rules.yaml");
        std::fs::write(&file, "policies:\n  - name: the-policy\n    match: {}\n")
            .expect("write rules");
        let mut rules = rules::load(&file).expect("rules load");
        let policy = &mut rules.policies[0];
        policy.require = require;
        policy.auto_approve = auto_approve;
        policy.on_error = on_error;
        rules
    }

    async fn decide(rules: &RuleSet) -> Decision {
        evaluate(rules, &request(), now(), Duration::from_millis(200)).await
    }

    #[tokio::test]
    async fn all_required_checks_passing_without_auto_approve_gives_approved() {
        let rules = rules_with(vec![named("a", Behaviour::Pass)], vec![], FailureMode::Deny);
        let decision = decide(&rules).await;
        assert_eq!(decision.outcome, Outcome::Approved);
        assert!(
            decision.reasons[0].contains("the-policy"),
            "{:?}",
            decision.reasons
        );
    }

    #[tokio::test]
    async fn a_failing_check_denies_and_every_failure_is_a_reason() {
        let rules = rules_with(
            vec![
                named("first", Behaviour::Fail),
                named("second", Behaviour::Fail),
                named("ok", Behaviour::Pass),
            ],
            vec![],
            FailureMode::Approve,
        );
        let decision = decide(&rules).await;
        assert_eq!(decision.outcome, Outcome::Denied);
        assert_eq!(decision.reasons.len(), 2, "{:?}", decision.reasons);
        assert!(
            decision.reasons[0].contains("first")
                && decision.reasons[0].contains("not on the list")
        );
    }

    #[tokio::test]
    async fn a_check_that_cannot_be_evaluated_denies_by_default_without_blaming_the_user() {
        let rules = rules_with(
            vec![named("hr", Behaviour::Error)],
            vec![],
            FailureMode::Deny,
        );
        let decision = decide(&rules).await;
        assert_eq!(decision.outcome, Outcome::Denied);
        assert!(
            decision.reasons[0].contains("could not be evaluated"),
            "{:?}",
            decision.reasons
        );
        assert!(decision.reasons[0].contains("not a finding against you"));
    }

    #[tokio::test]
    async fn on_error_approve_lets_the_request_reach_humans_but_never_auto_approves() {
        let rules = rules_with(
            vec![named("hr", Behaviour::Error)],
            vec![named("oncall", Behaviour::Pass)],
            FailureMode::Approve,
        );
        let decision = decide(&rules).await;
        assert_eq!(
            decision.outcome,
            Outcome::Approved,
            "{:?}",
            decision.reasons
        );
        assert!(
            decision
                .reasons
                .iter()
                .any(|reason| reason.contains("could not be evaluated"))
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_hanging_check_is_cut_off_at_the_budget_and_counts_as_not_evaluated() {
        let rules = rules_with(
            vec![
                named("slow", Behaviour::Hang),
                named("fast", Behaviour::Pass),
            ],
            vec![],
            FailureMode::Deny,
        );
        let started = tokio::time::Instant::now();
        let decision = decide(&rules).await;
        assert_eq!(
            started.elapsed(),
            Duration::from_millis(200),
            "answered at the budget (paused clock)"
        );
        assert_eq!(decision.outcome, Outcome::Denied);
        let slow = decision
            .checks
            .iter()
            .find(|report| report.kind == "slow")
            .expect("slow reported");
        assert_eq!(slow.status(), CheckStatus::Error);
        assert!(
            slow.outcome.message.contains("no answer within 200 ms"),
            "{}",
            slow.outcome.message
        );
    }

    #[tokio::test]
    async fn auto_approval_needs_every_auto_check_to_pass_and_degrades_to_approved_otherwise() {
        let auto = rules_with(
            vec![named("justification", Behaviour::Pass)],
            vec![
                named("oncall", Behaviour::Pass),
                named("incident", Behaviour::Pass),
            ],
            FailureMode::Deny,
        );
        assert_eq!(decide(&auto).await.outcome, Outcome::AutoApproved);

        for behaviour in [Behaviour::Fail, Behaviour::Error, Behaviour::Hang] {
            let degraded = rules_with(
                vec![named("justification", Behaviour::Pass)],
                vec![
                    named("oncall", Behaviour::Pass),
                    named("incident", behaviour),
                ],
                FailureMode::Deny,
            );
            let decision = decide(&degraded).await;
            assert_eq!(
                decision.outcome,
                Outcome::Approved,
                "{:?}",
                decision.reasons
            );
            assert!(
                decision
                    .reasons
                    .iter()
                    .any(|reason| reason.starts_with("Not auto-approved: incident"))
            );
        }
    }

    #[tokio::test(start_paused = true)]
    async fn checks_run_concurrently_not_one_after_another() {
        #[derive(Debug)]
        struct Sleeps;
        #[async_trait]
        impl Check for Sleeps {
            async fn evaluate(&self, _context: &CheckContext<'_>) -> CheckOutcome {
                tokio::time::sleep(Duration::from_millis(150)).await;
                CheckOutcome::pass("slept")
            }
        }
        let sleeper = || NamedCheck {
            kind: "sleeps",
            check: Arc::new(Sleeps),
        };
        let rules = rules_with(
            vec![sleeper(), sleeper(), sleeper(), sleeper()],
            vec![],
            FailureMode::Deny,
        );
        let started = tokio::time::Instant::now();
        let decision = evaluate(&rules, &request(), now(), Duration::from_secs(5)).await;
        assert_eq!(decision.outcome, Outcome::Approved);
        // On the paused clock, sequential checks would take 600 ms; concurrent ones take 150.
        assert_eq!(started.elapsed(), Duration::from_millis(150));
    }

    #[tokio::test(start_paused = true)]
    async fn shadow_checks_run_alongside_the_deciding_checks_under_the_same_budget() {
        #[derive(Debug)]
        struct Sleeps;
        #[async_trait]
        impl Check for Sleeps {
            async fn evaluate(&self, _context: &CheckContext<'_>) -> CheckOutcome {
                tokio::time::sleep(Duration::from_millis(150)).await;
                CheckOutcome::pass("slept")
            }
        }
        let dir = tempfile::tempdir().expect("temp dir");
        let file = dir.path().join("rules.yaml");
        std::fs::write(
            &file,
            "policies:\n  - name: rehearsal\n    mode: audit\n    match: {}\n  - name: deciding\n    match: {}\n",
        )
        .expect("write rules");
        let mut rules = rules::load(&file).expect("rules load");
        rules.policies[0].require = vec![
            NamedCheck {
                kind: "sleeps",
                check: Arc::new(Sleeps),
            },
            named("hangs", Behaviour::Hang),
        ];
        rules.policies[1].require = vec![NamedCheck {
            kind: "sleeps",
            check: Arc::new(Sleeps),
        }];
        // Tokio's clock: paused time advances it, not the wall clock.
        let started = tokio::time::Instant::now();
        let decision = evaluate(&rules, &request(), now(), Duration::from_millis(200)).await;
        assert!(
            started.elapsed() < Duration::from_millis(290),
            "shadow and deciding checks took {:?}",
            started.elapsed()
        );
        assert_eq!(
            decision.outcome,
            Outcome::Approved,
            "{:?}",
            decision.reasons
        );
        assert_eq!(decision.policy.as_deref(), Some("deciding"));
        let shadow = decision.shadow.first().expect("the shadow is recorded");
        assert_eq!(
            shadow.outcome,
            Outcome::Denied,
            "the hanging check timed out"
        );
        assert_eq!(shadow.checks.len(), 2);
    }

    #[tokio::test]
    async fn a_request_no_policy_covers_is_denied_naming_the_action() {
        let rules = rules_with(vec![], vec![], FailureMode::Deny);
        let mut extend = request();
        extend.action = crate::payload::Action::SelfExtend;
        let decision = evaluate(&rules, &extend, now(), Duration::from_millis(200)).await;
        assert_eq!(decision.outcome, Outcome::Denied);
        assert!(decision.policy.is_none());
        assert!(
            decision.reasons[0].contains("selfExtend"),
            "{:?}",
            decision.reasons
        );
        assert_eq!(decision.skipped_policies.len(), 1);
    }
}
