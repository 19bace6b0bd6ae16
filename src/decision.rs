//! The decision value and the evaluation that produces it.
//!
//! A `Denied` is a normal answer, not an error. Evaluation does no I/O of its own: it selects the
//! policy, runs that policy's checks (and those of any matching `audit` policy, recorded as shadow
//! decisions) concurrently under one deadline, and applies the failure mode. The guards that apply
//! to the request run at the same time; a denying guard overrides whatever the policy decided.

use chrono::{DateTime, Utc};
use serde::Serialize;
use uuid::Uuid;

use crate::checks::{CheckOutcome, CheckStatus};
pub use crate::vocabulary::{Outcome, SkippedPolicy};

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

/// What a matching `mode: audit` policy would have decided. Recorded in the audit record and the
/// metrics so a policy can be watched against live traffic; never part of PIM's answer.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ShadowDecision {
    pub policy: String,
    pub outcome: Outcome,
    pub reasons: Vec<String>,
    pub checks: Vec<CheckReport>,
}

/// What an applied guard does to the answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum GuardEffect {
    /// Every check passed: the answer is the policy's.
    Pass,
    /// A check failed, or the guard's fixed denial: the answer is `Denied`.
    Deny,
    /// A check (or the `when`) could not be evaluated and `on_error: deny`: the answer is `Denied`.
    Error,
    /// A check could not be evaluated and `on_error: approve`: the answer is at most `Approved`.
    Cap,
}

/// One applied guard, for the audit record and the explanation. In `audit` mode `effect` is what
/// the guard would have done; the answer did not change.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GuardReport {
    pub name: String,
    pub mode: PolicyMode,
    pub effect: GuardEffect,
    /// Why it denied or capped (empty when it passed).
    pub reasons: Vec<String>,
    pub checks: Vec<CheckReport>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Decision {
    pub evaluation_id: Uuid,
    /// The PIM callback that asked: it chose the rules that applied and what could be answered.
    pub stage: Stage,
    pub outcome: Outcome,
    /// What PIM shows the requester: what was decided and why, in words they can act on.
    pub reasons: Vec<String>,
    /// The policy that decided, if any matched.
    pub policy: Option<String>,
    pub skipped_policies: Vec<SkippedPolicy>,
    pub checks: Vec<CheckReport>,
    /// The would-be decisions of the `audit` policies that matched before the deciding one.
    pub shadow: Vec<ShadowDecision>,
    /// Every guard that applied, in load order, enforcing and `audit` ones.
    pub guards: Vec<GuardReport>,
    pub rules_revision: String,
    pub evaluated_at: DateTime<Utc>,
    pub duration_ms: f64,
}

impl Decision {
    /// A decision with nothing in it yet: no reasons, policy, checks, shadows or guards.
    fn empty(
        evaluation_id: Uuid,
        stage: Stage,
        outcome: Outcome,
        rules_revision: String,
        evaluated_at: DateTime<Utc>,
    ) -> Self {
        Decision {
            evaluation_id,
            stage,
            outcome,
            reasons: Vec::new(),
            policy: None,
            skipped_policies: Vec::new(),
            checks: Vec::new(),
            shadow: Vec::new(),
            guards: Vec::new(),
            rules_revision,
            evaluated_at,
            duration_ms: 0.0,
        }
    }

    /// A pre-approval decision with nothing in it: what tests that store, serialize or count
    /// decisions start from (`Decision { field, ..Decision::bare(outcome) }`).
    #[cfg(test)]
    pub(crate) fn bare(outcome: Outcome) -> Self {
        Self::empty(
            Uuid::now_v7(),
            Stage::PreApproval,
            outcome,
            "r".into(),
            Utc::now(),
        )
    }
}

use std::time::{Duration, Instant};

use futures::future::join_all;

mod check_metrics;
#[cfg(test)]
pub(crate) use check_metrics::rendered_alone;

use crate::checks::{CheckContext, NamedCheck};
use crate::payload::{ActivationInterval, ActivationRequest, EvaluationKey, Stage};
use crate::rules::{
    FailureMode, Guard, GuardMatch, Policy, PolicyMode, RuleSet, Selection, ShadowMatch,
};

/// [`evaluate_at_stage`] for the pre-approval stage (`POST /v1/evaluate`, and `pimgate evaluate`
/// and `rules test` when no stage is named).
pub async fn evaluate(
    rules: &RuleSet,
    request: &ActivationRequest,
    now: DateTime<Utc>,
    budget: Duration,
) -> Decision {
    evaluate_at_stage(rules, request, Stage::PreApproval, now, budget).await
}

/// Evaluates one request against the rules. Never fails: whatever goes wrong inside becomes a
/// `Denied` (or, where the policy says so, an `Approved`) with a reason saying what happened.
/// `budget` bounds the checks: a check still running when it is spent counts as not evaluated.
/// Shadow (`audit`) policies run alongside the deciding one under the same budget, so they add no
/// latency of their own and never change the answer. The `evaluationId` is derived from the
/// request, the stage and the rules revision (`payload::EvaluationKey`): the same request gets the
/// same id from every replica and every run.
///
/// At the post-approval stage a human has already approved: `auto_approve` checks are not run and
/// nothing answers `AutoApproved` (a policy that would is `Approved`), see [`Stage`].
pub async fn evaluate_at_stage(
    rules: &RuleSet,
    request: &ActivationRequest,
    stage: Stage,
    now: DateTime<Utc>,
    budget: Duration,
) -> Decision {
    let key = EvaluationKey::derive(stage, &rules.revision, request);
    evaluate_keyed(rules, request, stage, &key, now, budget).await
}

/// [`evaluate_at_stage`] with the request's [`EvaluationKey`] already derived (the service derives
/// it anyway, for its replay cache; deriving is a SHA-256 over the whole request). `key` must be
/// `EvaluationKey::derive(stage, &rules.revision, request)`.
pub async fn evaluate_keyed(
    rules: &RuleSet,
    request: &ActivationRequest,
    stage: Stage,
    key: &EvaluationKey,
    now: DateTime<Utc>,
    budget: Duration,
) -> Decision {
    debug_assert!(*key == EvaluationKey::derive(stage, &rules.revision, request));
    let started = Instant::now();
    let mut decision = Decision::empty(
        key.evaluation_id(),
        stage,
        Outcome::Denied,
        rules.revision.clone(),
        now,
    );
    let context =
        CheckContext::new(request, now, tokio::time::Instant::now() + budget).at_stage(stage);
    let run = &CheckRun::new(context, budget, rules.shared_slots);
    let guards = rules.applicable_guards(request, stage, now);
    match rules.select(request, stage, now) {
        Selection::NoMatch { skipped, shadows } => {
            decision.skipped_policies = skipped;
            decision.reasons.push(format!(
                "Denied: no pimgate policy covers {} for action `{}`. Ask your PIM administrators to add one.",
                describe_target(request),
                request.action.as_str()
            ));
            (decision.shadow, decision.guards) =
                futures::join!(run_shadows(&shadows, stage, run), run_guards(&guards, run));
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
            (decision.shadow, decision.guards) =
                futures::join!(run_shadows(&shadows, stage, run), run_guards(&guards, run));
        }
        Selection::Matched {
            policy,
            skipped,
            shadows,
        } => {
            decision.skipped_policies = skipped;
            decision.policy = Some(policy.name.clone());
            let (verdict, shadow, guarded) = futures::join!(
                apply_policy(policy, stage, run),
                run_shadows(&shadows, stage, run),
                run_guards(&guards, run)
            );
            decision.outcome = verdict.outcome;
            decision.reasons = verdict.reasons;
            decision.checks = verdict.checks;
            decision.shadow = shadow;
            decision.guards = guarded;
        }
    }
    apply_guards(&mut decision);
    debug_assert!(
        stage.allows_auto_approval() || decision.outcome != Outcome::AutoApproved,
        "AutoApproved at {stage}"
    );
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
    stage: Stage,
    run: &CheckRun<'_>,
) -> Vec<ShadowDecision> {
    let runs = shadows.iter().map(|shadow| async move {
        let verdict = match &shadow.condition_error {
            Some(message) => Verdict {
                outcome: Outcome::Denied,
                reasons: vec![condition_error_reason(shadow.policy, message)],
                checks: Vec::new(),
            },
            None => apply_policy(shadow.policy, stage, run).await,
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

/// What `policy` decides at `stage`. After a human approved, `auto_approve` checks are not run (they
/// could only skip a human who already decided) and a fixed `AutoApproved` is `Approved`.
async fn apply_policy(policy: &Policy, stage: Stage, run: &CheckRun<'_>) -> Verdict {
    if let Some(fixed) = &policy.decide {
        let outcome = match fixed.outcome {
            Outcome::AutoApproved if !stage.allows_auto_approval() => Outcome::Approved,
            outcome => outcome,
        };
        return Verdict {
            outcome,
            reasons: vec![format!(
                "{} by policy '{}': {}",
                verb(outcome),
                policy.name,
                fixed.reason
            )],
            checks: Vec::new(),
        };
    }
    let auto_approve: &[NamedCheck] = if stage.allows_auto_approval() {
        &policy.auto_approve
    } else {
        &[]
    };
    let staged = policy
        .require
        .iter()
        .map(|check| (CheckStage::Require, check))
        .chain(
            auto_approve
                .iter()
                .map(|check| (CheckStage::AutoApprove, check)),
        );
    let runs = staged.map(|(stage, check)| run_check(stage, check, run));
    let checks = join_all(runs).await;
    let (outcome, reasons) = judge(policy, stage, &checks, &run.context.interval);
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
    stage: Stage,
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
    let auto_ok = stage.allows_auto_approval()
        && !policy.auto_approve.is_empty()
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
    let approved = if stage.allows_auto_approval() {
        format!(
            "Approved by policy '{}': {passed} of {} required checks passed; PIM's own approval settings apply.",
            policy.name,
            required.len()
        )
    } else {
        format!(
            "Approved by policy '{}': {passed} of {} required checks still pass after approval.",
            policy.name,
            required.len()
        )
    };
    reasons.insert(0, approved);
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

/// Every applicable guard's effect, computed concurrently (with each other and, in `evaluate`, with
/// the policy's checks) under the same budget.
async fn run_guards(guards: &[GuardMatch<'_>], run: &CheckRun<'_>) -> Vec<GuardReport> {
    let runs = guards.iter().map(|applied| async move {
        let guard = applied.guard;
        let (effect, reasons, checks) = match (&applied.condition_error, &guard.deny_reason) {
            (Some(message), _) => (
                GuardEffect::Error,
                vec![format!(
                    "Denied: the condition of guard '{}' could not be evaluated ({message}). Ask your PIM administrators to fix the rule.",
                    guard.name
                )],
                Vec::new(),
            ),
            (None, Some(reason)) => (
                GuardEffect::Deny,
                vec![format!("Denied by guard '{}': {reason}", guard.name)],
                Vec::new(),
            ),
            (None, None) => {
                let runs = guard
                    .require
                    .iter()
                    .map(|check| run_check(CheckStage::Require, check, run));
                let checks = join_all(runs).await;
                let (effect, reasons) = judge_guard(guard, &checks);
                (effect, reasons, checks)
            }
        };
        GuardReport {
            name: guard.name.clone(),
            mode: guard.mode,
            effect,
            reasons,
            checks,
        }
    });
    join_all(runs).await
}

/// A guard's effect from its checks: any failure denies (a finding outweighs an error); otherwise
/// an error denies or caps as `on_error` says; otherwise it passes.
fn judge_guard(guard: &Guard, checks: &[CheckReport]) -> (GuardEffect, Vec<String>) {
    let failed: Vec<&CheckReport> = checks
        .iter()
        .filter(|report| report.status() == CheckStatus::Fail)
        .collect();
    let errored: Vec<&CheckReport> = checks
        .iter()
        .filter(|report| report.status() == CheckStatus::Error)
        .collect();
    let denied_by = |report: &CheckReport| {
        format!(
            "Denied by guard '{}': {}: {}",
            guard.name, report.kind, report.outcome.message
        )
    };
    let not_evaluated = |report: &CheckReport| {
        format!(
            "Denied by guard '{}': the {} check could not be evaluated ({}); this is not a finding against you, retry later or ask your PIM administrators.",
            guard.name, report.kind, report.outcome.message
        )
    };
    if !failed.is_empty() {
        let mut reasons: Vec<String> = failed.iter().map(|report| denied_by(report)).collect();
        if guard.on_error == FailureMode::Deny {
            reasons.extend(errored.iter().map(|report| not_evaluated(report)));
        }
        return (GuardEffect::Deny, reasons);
    }
    if errored.is_empty() {
        return (GuardEffect::Pass, Vec::new());
    }
    match guard.on_error {
        FailureMode::Deny => (
            GuardEffect::Error,
            errored.iter().map(|report| not_evaluated(report)).collect(),
        ),
        FailureMode::Approve => (
            GuardEffect::Cap,
            errored
                .iter()
                .map(|report| {
                    format!(
                        "Human approval needed: guard '{}' could not evaluate its {} check ({}); a check that was not evaluated never skips the human approver.",
                        guard.name, report.kind, report.outcome.message
                    )
                })
                .collect(),
        ),
    }
}

/// Applies the enforcing guards to the policy's answer ("forbid overrides permit"): a guard that
/// denies (or errors) makes the answer `Denied`, its reasons first, followed by the policy's only
/// if the policy denied too (an "Approved by policy …" next to a denial would mislead). A capping
/// guard turns `AutoApproved` into `Approved`. `audit` guards change nothing. Also counts every
/// guard's effect in `pimgate_guard_results_total`.
fn apply_guards(decision: &mut Decision) {
    for report in &decision.guards {
        check_metrics::guard(&report.name, report.mode, report.effect);
    }
    let enforcing = || {
        decision
            .guards
            .iter()
            .filter(|report| report.mode == PolicyMode::Enforce)
    };
    let denying: Vec<String> = enforcing()
        .filter(|report| matches!(report.effect, GuardEffect::Deny | GuardEffect::Error))
        .flat_map(|report| report.reasons.iter().cloned())
        .collect();
    if !denying.is_empty() {
        let policy_reasons = std::mem::take(&mut decision.reasons);
        decision.reasons = denying;
        if decision.outcome == Outcome::Denied {
            decision.reasons.extend(policy_reasons);
        }
        decision.outcome = Outcome::Denied;
        return;
    }
    if decision.outcome == Outcome::Denied {
        return;
    }
    let mut capping: Vec<String> = enforcing()
        .filter(|report| report.effect == GuardEffect::Cap)
        .flat_map(|report| report.reasons.iter().cloned())
        .collect();
    if capping.is_empty() {
        return;
    }
    let mut policy_reasons = std::mem::take(&mut decision.reasons);
    if decision.outcome == Outcome::AutoApproved {
        // The policy's first reason announces the auto-approval that is no longer the answer.
        if policy_reasons
            .first()
            .is_some_and(|reason| reason.starts_with("Auto-approved"))
        {
            policy_reasons.remove(0);
        }
        capping.push(format!(
            "Approved, not auto-approved: policy '{}' would have auto-approved, but a guard's check was not evaluated; PIM's own approval settings apply.",
            decision.policy.as_deref().unwrap_or("(none)")
        ));
        decision.outcome = Outcome::Approved;
    }
    capping.extend(policy_reasons);
    decision.reasons = capping;
}

/// What every check of one evaluation runs with: one context (the request, `now`, the effective
/// interval, the stage, the deadline), one budget, and the memo of the checks the rule set names
/// more than once ([`NamedCheck::shared`]), so each of those is evaluated once per request.
struct CheckRun<'a> {
    context: CheckContext<'a>,
    budget: Duration,
    /// One cell per shared slot: the first caller evaluates the check, the others wait for and
    /// take its outcome. Should that first caller be dropped mid-evaluation, the next one evaluates
    /// afresh (`OnceCell::get_or_init`), so a caller always gets an answer of its own context.
    memo: Vec<tokio::sync::OnceCell<Evaluated>>,
}

impl<'a> CheckRun<'a> {
    /// Allocates nothing when the rule set shares no check (`slots == 0`).
    fn new(context: CheckContext<'a>, budget: Duration, slots: usize) -> Self {
        CheckRun {
            context,
            budget,
            memo: (0..slots).map(|_| tokio::sync::OnceCell::new()).collect(),
        }
    }
}

/// One evaluation of a check: what it found, and how long it took.
#[derive(Debug, Clone)]
struct Evaluated {
    outcome: CheckOutcome,
    elapsed: Duration,
}

/// A check's report for the list (`stage`) that names it. A shared check is evaluated through its
/// memo cell, so a guard and a policy naming the same check get the one outcome of one evaluation,
/// each under its own stage; anything else is evaluated here.
async fn run_check(stage: CheckStage, check: &NamedCheck, run: &CheckRun<'_>) -> CheckReport {
    let evaluated = match check.shared.and_then(|slot| run.memo.get(slot)) {
        Some(cell) => cell
            .get_or_init(|| evaluate_check(check, &run.context, run.budget))
            .await
            .clone(),
        None => evaluate_check(check, &run.context, run.budget).await,
    };
    CheckReport {
        kind: check.kind.to_string(),
        stage,
        outcome: evaluated.outcome,
        duration_ms: evaluated.elapsed.as_secs_f64() * 1000.0,
    }
}

/// The one place a check's time is bounded: a check that overruns is reported as not evaluated.
/// Also the one place check metrics are recorded, once per evaluation (a shared check counts once
/// per request, however many places name it), so every caller of `evaluate` counts the same way.
async fn evaluate_check(
    check: &NamedCheck,
    context: &CheckContext<'_>,
    budget: Duration,
) -> Evaluated {
    let started = Instant::now();
    let outcome = match tokio::time::timeout(budget, check.check.evaluate(context)).await {
        Ok(outcome) => outcome,
        Err(_) => CheckOutcome::error(format!("no answer within {} ms", budget.as_millis())),
    };
    let elapsed = started.elapsed();
    check_metrics::check(check.kind, outcome.status, elapsed);
    Evaluated { outcome, elapsed }
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

    /// A check that passes after 150 ms: three of them in sequence would take 450 ms, so the
    /// concurrency tests can tell "together" from "one after another" on the paused clock.
    #[derive(Debug)]
    struct Sleeps;

    #[async_trait]
    impl Check for Sleeps {
        async fn evaluate(&self, _context: &CheckContext<'_>) -> CheckOutcome {
            tokio::time::sleep(Duration::from_millis(150)).await;
            CheckOutcome::pass("slept")
        }
    }

    fn sleeper() -> NamedCheck {
        NamedCheck {
            kind: "sleeps",
            check: Arc::new(Sleeps),
            unconfigured: None,
            fingerprint: None,
            shared: None,
        }
    }

    fn named(kind: &'static str, behaviour: Behaviour) -> NamedCheck {
        NamedCheck {
            kind,
            check: Arc::new(behaviour),
            unconfigured: None,
            fingerprint: None,
            shared: None,
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
                unconfigured: None,
                fingerprint: None,
                shared: None,
            },
            named("hangs", Behaviour::Hang),
        ];
        rules.policies[1].require = vec![NamedCheck {
            kind: "sleeps",
            check: Arc::new(Sleeps),
            unconfigured: None,
            fingerprint: None,
            shared: None,
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

    // ---- guards ----------------------------------------------------------------------------

    /// `rules_with`'s policy plus one guard (matching everything) whose checks are `guard_checks`.
    fn guarded(
        policy_require: Vec<NamedCheck>,
        policy_auto: Vec<NamedCheck>,
        guard_checks: Vec<NamedCheck>,
        on_error: FailureMode,
        mode: rules::PolicyMode,
    ) -> RuleSet {
        let dir = tempfile::tempdir().expect("temp dir");
        let file = dir.path().join("rules.yaml");
        std::fs::write(
            &file,
            "policies:\n  - name: the-policy\n    match: {}\nguards:\n  - name: the-guard\n    require:\n      - duration: { max: P1D }\n",
        )
        .expect("write rules");
        let mut rules = rules::load(&file).expect("rules load");
        rules.policies[0].require = policy_require;
        rules.policies[0].auto_approve = policy_auto;
        let guard = &mut rules.guards[0];
        guard.require = guard_checks;
        guard.on_error = on_error;
        guard.mode = mode;
        rules
    }

    use crate::rules::PolicyMode;

    #[tokio::test]
    async fn a_failing_guard_denies_what_the_policy_approves_with_the_guards_reason_first() {
        let rules = guarded(
            vec![named("justification", Behaviour::Pass)],
            vec![named("oncall", Behaviour::Pass)],
            vec![named("hr", Behaviour::Fail)],
            FailureMode::Deny,
            PolicyMode::Enforce,
        );
        let decision = decide(&rules).await;
        assert_eq!(decision.outcome, Outcome::Denied);
        assert_eq!(
            decision.reasons,
            vec!["Denied by guard 'the-guard': hr: you are not on the list".to_string()],
            "only the guard's reasons: an approval next to a denial would mislead"
        );
        assert_eq!(decision.policy.as_deref(), Some("the-policy"));
        assert_eq!(decision.guards.len(), 1);
        assert_eq!(decision.guards[0].effect, GuardEffect::Deny);
        assert_eq!(decision.guards[0].mode, PolicyMode::Enforce);
        assert_eq!(decision.guards[0].checks[0].kind, "hr");
    }

    #[tokio::test]
    async fn when_the_policy_denies_too_its_reasons_follow_the_guards() {
        let rules = guarded(
            vec![named("duration", Behaviour::Fail)],
            vec![],
            vec![named("hr", Behaviour::Fail)],
            FailureMode::Deny,
            PolicyMode::Enforce,
        );
        let decision = decide(&rules).await;
        assert_eq!(decision.outcome, Outcome::Denied);
        assert_eq!(decision.reasons.len(), 2, "{:?}", decision.reasons);
        assert!(decision.reasons[0].contains("guard 'the-guard'"));
        assert!(decision.reasons[1].contains("policy 'the-policy'"));
    }

    #[tokio::test]
    async fn a_guard_check_that_cannot_be_evaluated_denies_by_default_without_blaming_the_user() {
        let rules = guarded(
            vec![],
            vec![],
            vec![named("hr", Behaviour::Error)],
            FailureMode::Deny,
            PolicyMode::Enforce,
        );
        let decision = decide(&rules).await;
        assert_eq!(decision.outcome, Outcome::Denied);
        assert_eq!(decision.guards[0].effect, GuardEffect::Error);
        assert!(
            decision.reasons[0].contains("could not be evaluated")
                && decision.reasons[0].contains("not a finding against you"),
            "{:?}",
            decision.reasons
        );
    }

    #[tokio::test]
    async fn a_guard_with_on_error_approve_caps_an_auto_approval_at_approved() {
        let rules = guarded(
            vec![named("justification", Behaviour::Pass)],
            vec![named("oncall", Behaviour::Pass)],
            vec![named("hr", Behaviour::Error)],
            FailureMode::Approve,
            PolicyMode::Enforce,
        );
        let decision = decide(&rules).await;
        assert_eq!(
            decision.outcome,
            Outcome::Approved,
            "{:?}",
            decision.reasons
        );
        assert_eq!(decision.guards[0].effect, GuardEffect::Cap);
        assert!(
            decision.reasons[0].contains("guard 'the-guard'") && decision.reasons[0].contains("hr"),
            "{:?}",
            decision.reasons
        );
        assert!(
            !decision
                .reasons
                .iter()
                .any(|reason| reason.starts_with("Auto-approved")),
            "no reason may announce an auto-approval that is not the answer: {:?}",
            decision.reasons
        );
    }

    #[tokio::test]
    async fn a_capping_guard_leaves_an_approval_and_a_denial_as_they_are() {
        let approved = guarded(
            vec![named("justification", Behaviour::Pass)],
            vec![],
            vec![named("hr", Behaviour::Error)],
            FailureMode::Approve,
            PolicyMode::Enforce,
        );
        let decision = decide(&approved).await;
        assert_eq!(decision.outcome, Outcome::Approved);
        assert!(decision.reasons[0].contains("guard 'the-guard'"));
        assert!(decision.reasons[1].starts_with("Approved by policy 'the-policy'"));

        let denied = guarded(
            vec![named("duration", Behaviour::Fail)],
            vec![],
            vec![named("hr", Behaviour::Error)],
            FailureMode::Approve,
            PolicyMode::Enforce,
        );
        let decision = decide(&denied).await;
        assert_eq!(decision.outcome, Outcome::Denied);
        assert!(
            decision
                .reasons
                .iter()
                .all(|reason| !reason.contains("guard")),
            "{:?}",
            decision.reasons
        );
    }

    #[tokio::test]
    async fn a_failure_outweighs_on_error_approve_in_a_guard() {
        let rules = guarded(
            vec![],
            vec![],
            vec![
                named("hr", Behaviour::Error),
                named("principal", Behaviour::Fail),
            ],
            FailureMode::Approve,
            PolicyMode::Enforce,
        );
        let decision = decide(&rules).await;
        assert_eq!(decision.outcome, Outcome::Denied);
        assert_eq!(decision.guards[0].effect, GuardEffect::Deny);
        assert_eq!(decision.reasons.len(), 1, "{:?}", decision.reasons);
    }

    #[tokio::test]
    async fn a_passing_guard_leaves_the_policys_answer_untouched() {
        let rules = guarded(
            vec![named("justification", Behaviour::Pass)],
            vec![named("oncall", Behaviour::Pass)],
            vec![named("hr", Behaviour::Pass)],
            FailureMode::Deny,
            PolicyMode::Enforce,
        );
        let decision = decide(&rules).await;
        assert_eq!(decision.outcome, Outcome::AutoApproved);
        assert!(decision.reasons[0].starts_with("Auto-approved by policy"));
        assert_eq!(decision.guards[0].effect, GuardEffect::Pass);
        assert!(decision.guards[0].reasons.is_empty());
    }

    #[tokio::test]
    async fn an_audit_guard_is_recorded_with_its_would_be_effect_and_changes_nothing() {
        for (behaviour, effect) in [
            (Behaviour::Fail, GuardEffect::Deny),
            (Behaviour::Error, GuardEffect::Error),
        ] {
            let rules = guarded(
                vec![named("justification", Behaviour::Pass)],
                vec![named("oncall", Behaviour::Pass)],
                vec![named("hr", behaviour)],
                FailureMode::Deny,
                PolicyMode::Audit,
            );
            let decision = decide(&rules).await;
            assert_eq!(decision.outcome, Outcome::AutoApproved);
            assert!(
                decision
                    .reasons
                    .iter()
                    .all(|reason| !reason.contains("guard")),
                "{:?}",
                decision.reasons
            );
            assert_eq!(decision.guards[0].effect, effect);
            assert_eq!(decision.guards[0].mode, PolicyMode::Audit);
        }
    }

    #[tokio::test]
    async fn guards_apply_when_no_policy_covers_the_request() {
        let mut rules = guarded(
            vec![],
            vec![],
            vec![named("hr", Behaviour::Fail)],
            FailureMode::Deny,
            PolicyMode::Enforce,
        );
        rules.policies[0].matcher.actions = vec!["selfextend".into()];
        let decision = decide(&rules).await;
        assert_eq!(decision.outcome, Outcome::Denied);
        assert!(decision.policy.is_none());
        assert!(decision.reasons[0].contains("guard 'the-guard'"));
        assert!(
            decision.reasons[1].contains("no pimgate policy covers"),
            "{:?}",
            decision.reasons
        );
    }

    #[tokio::test(start_paused = true)]
    async fn guard_checks_run_alongside_the_policys_under_the_same_budget() {
        let rules = guarded(
            vec![sleeper()],
            vec![],
            vec![sleeper(), named("hangs", Behaviour::Hang)],
            FailureMode::Deny,
            PolicyMode::Enforce,
        );
        let started = tokio::time::Instant::now();
        let decision = evaluate(&rules, &request(), now(), Duration::from_millis(200)).await;
        assert_eq!(
            started.elapsed(),
            Duration::from_millis(200),
            "answered at the budget, not 150 + 200 ms"
        );
        assert_eq!(decision.outcome, Outcome::Denied);
        assert_eq!(decision.guards[0].effect, GuardEffect::Error);
        let hung = &decision.guards[0].checks[1];
        assert!(hung.outcome.message.contains("no answer within 200 ms"));
    }

    // ---- PIM's stages ------------------------------------------------------------------------

    /// A check that passes and counts how often it ran.
    #[derive(Debug, Default)]
    struct Counts(std::sync::atomic::AtomicUsize);

    #[async_trait]
    impl Check for Counts {
        async fn evaluate(&self, _context: &CheckContext<'_>) -> CheckOutcome {
            self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            CheckOutcome::pass("counted")
        }
    }

    async fn decide_at(rules: &RuleSet, stage: Stage) -> Decision {
        evaluate_at_stage(rules, &request(), stage, now(), Duration::from_millis(200)).await
    }

    fn loaded(yaml: &str) -> RuleSet {
        match rules::load_str("rules.yaml", yaml) {
            Ok(rules) => rules,
            Err(problems) => panic!("rules do not load: {problems:?}"),
        }
    }

    #[tokio::test]
    async fn after_a_human_approved_a_policy_that_would_auto_approve_answers_approved_without_running_its_auto_checks()
     {
        let counter = Arc::new(Counts::default());
        let rules = rules_with(
            vec![named("justification", Behaviour::Pass)],
            vec![NamedCheck {
                kind: "oncall",
                check: counter.clone(),
                unconfigured: None,
                fingerprint: None,
                shared: None,
            }],
            FailureMode::Deny,
        );
        let before = decide_at(&rules, Stage::PreApproval).await;
        assert_eq!(before.outcome, Outcome::AutoApproved);
        assert_eq!(counter.0.load(std::sync::atomic::Ordering::SeqCst), 1);

        let after = decide_at(&rules, Stage::PostApproval).await;
        assert_eq!(after.outcome, Outcome::Approved, "{:?}", after.reasons);
        assert_eq!(after.stage, Stage::PostApproval);
        assert_eq!(
            counter.0.load(std::sync::atomic::Ordering::SeqCst),
            1,
            "auto_approve checks are not run after approval"
        );
        assert!(
            after
                .checks
                .iter()
                .all(|report| report.stage == CheckStage::Require)
        );
        assert_eq!(
            after.reasons,
            ["Approved by policy 'the-policy': 1 of 1 required checks still pass after approval."]
        );
    }

    #[tokio::test]
    async fn after_a_human_approved_a_required_check_that_fails_or_cannot_be_evaluated_still_denies()
     {
        for behaviour in [Behaviour::Fail, Behaviour::Error, Behaviour::Hang] {
            let rules = rules_with(vec![named("itsm", behaviour)], vec![], FailureMode::Deny);
            let decision = decide_at(&rules, Stage::PostApproval).await;
            assert_eq!(decision.outcome, Outcome::Denied, "{:?}", decision.reasons);
        }
    }

    #[tokio::test]
    async fn a_fixed_auto_approval_is_an_approval_after_a_human_approved() {
        let rules = loaded(
            "policies:\n  - name: low\n    decide: AutoApproved\n    reason: low-risk role\n    allow_auto_approve_on_critical: true\n",
        );
        assert_eq!(
            decide_at(&rules, Stage::PreApproval).await.outcome,
            Outcome::AutoApproved
        );
        let after = decide_at(&rules, Stage::PostApproval).await;
        assert_eq!(after.outcome, Outcome::Approved);
        assert_eq!(after.reasons, ["Approved by policy 'low': low-risk role"]);
    }

    #[tokio::test]
    async fn policies_apply_at_the_stages_they_name_and_at_both_when_they_name_none() {
        let rules = loaded(
            "policies:
  - name: recheck
    match: { stages: [post_approval] }
    decide: Denied
    reason: re-checked
  - name: before-approval
    match: { stages: [pre_approval] }
    decide: Approved
    reason: first look
  - name: everyone
    decide: Denied
    reason: catch-all
",
        );
        let before = decide_at(&rules, Stage::PreApproval).await;
        assert_eq!(before.policy.as_deref(), Some("before-approval"));
        assert_eq!(
            before.skipped_policies,
            [SkippedPolicy {
                policy: "recheck".into(),
                why: "stage does not match".into()
            }]
        );
        let after = decide_at(&rules, Stage::PostApproval).await;
        assert_eq!(after.policy.as_deref(), Some("recheck"));

        let unstaged =
            loaded("policies:\n  - name: everyone\n    decide: Approved\n    reason: ok\n");
        for stage in Stage::ALL {
            assert_eq!(
                decide_at(&unstaged, stage).await.policy.as_deref(),
                Some("everyone"),
                "{stage}"
            );
        }
    }

    #[tokio::test]
    async fn a_guard_applies_at_both_stages_unless_it_names_its_stages() {
        let rules = loaded(
            "guards:
  - name: always
    decide: Denied
    reason: frozen
  - name: only-after
    match: { stages: [post_approval] }
    decide: Denied
    reason: re-checked
policies:
  - name: everyone
    decide: Approved
    reason: ok
",
        );
        let names = |decision: &Decision| -> Vec<String> {
            decision
                .guards
                .iter()
                .map(|guard| guard.name.clone())
                .collect()
        };
        let before = decide_at(&rules, Stage::PreApproval).await;
        assert_eq!(names(&before), ["always"]);
        assert_eq!(before.outcome, Outcome::Denied);
        let after = decide_at(&rules, Stage::PostApproval).await;
        assert_eq!(names(&after), ["always", "only-after"]);
    }

    #[tokio::test]
    async fn the_same_request_is_a_distinct_evaluation_at_each_stage() {
        let rules = loaded("policies:\n  - name: everyone\n    decide: Approved\n    reason: ok\n");
        let before = decide_at(&rules, Stage::PreApproval).await;
        let after = decide_at(&rules, Stage::PostApproval).await;
        assert_ne!(before.evaluation_id, after.evaluation_id);
        assert_eq!(
            before.evaluation_id,
            decide_at(&rules, Stage::PreApproval).await.evaluation_id,
            "deterministic per stage"
        );
    }

    // ---- Checks shared by guards and policies ----------------------------------------------------

    /// A check that counts how often it ran and reports a fixed outcome.
    #[derive(Debug)]
    struct Tally {
        runs: std::sync::atomic::AtomicUsize,
        outcome: CheckOutcome,
    }

    impl Tally {
        fn reporting(outcome: CheckOutcome) -> Arc<Tally> {
            Arc::new(Tally {
                runs: Default::default(),
                outcome,
            })
        }

        fn runs(&self) -> usize {
            self.runs.load(std::sync::atomic::Ordering::SeqCst)
        }
    }

    #[async_trait]
    impl Check for Tally {
        async fn evaluate(&self, _context: &CheckContext<'_>) -> CheckOutcome {
            self.runs.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            self.outcome.clone()
        }
    }

    /// `yaml` loaded (so fingerprints and memo slots are those of the load), with every check of
    /// `kind` made to run `tally` instead, keeping its slot (as `rules test`'s stubs do).
    fn tallied(yaml: &str, kind: &str, tally: &Arc<Tally>) -> RuleSet {
        let mut rules = loaded(yaml);
        let mut swap = |check: &mut NamedCheck| {
            if check.kind == kind {
                check.check = tally.clone();
            }
        };
        for policy in &mut rules.policies {
            policy.require.iter_mut().for_each(&mut swap);
            policy.auto_approve.iter_mut().for_each(&mut swap);
        }
        for guard in &mut rules.guards {
            guard.require.iter_mut().for_each(&mut swap);
        }
        rules
    }

    const GUARD_AND_POLICY_SHARE_A_CHECK: &str = "guards:
  - name: the-guard
    require:
      - duration: { max: PT2H }
policies:
  - name: the-policy
    require:
      - duration: { max: PT2H }
      - start: { max_past: PT5M }
";

    #[tokio::test]
    async fn a_check_written_identically_in_a_guard_and_the_policy_is_evaluated_once_per_request_and_reported_by_both()
     {
        let tally = Tally::reporting(CheckOutcome::pass("within PT2H"));
        let rules = tallied(GUARD_AND_POLICY_SHARE_A_CHECK, "duration", &tally);
        assert_eq!(rules.shared_slots, 1);

        let decision = decide(&rules).await;
        assert_eq!(
            tally.runs(),
            1,
            "one evaluation for the guard and the policy"
        );
        assert_eq!(
            decision.outcome,
            Outcome::Approved,
            "{:?}",
            decision.reasons
        );
        let guards = &decision.guards[0].checks[0];
        let policys = &decision.checks[0];
        assert_eq!(guards, policys, "the same report in both places");
        assert_eq!(guards.outcome.message, "within PT2H");
        assert_eq!(decision.guards[0].effect, GuardEffect::Pass);

        decide(&rules).await;
        assert_eq!(
            tally.runs(),
            2,
            "once per request, never remembered across requests"
        );
    }

    #[tokio::test]
    async fn checks_of_one_kind_with_different_specs_are_each_evaluated_with_their_own_outcome() {
        let yaml = "guards:
  - name: the-guard
    require:
      - duration: { max: PT30M }
policies:
  - name: the-policy
    require:
      - duration: { max: PT2H }
";
        let tally = Tally::reporting(CheckOutcome::pass("counted"));
        let rules = tallied(yaml, "duration", &tally);
        assert_eq!(rules.shared_slots, 0);
        decide(&rules).await;
        assert_eq!(tally.runs(), 2);

        // With the real checks: the one-hour request passes the policy's and fails the guard's.
        let decision = decide(&loaded(yaml)).await;
        assert_eq!(decision.checks[0].status(), CheckStatus::Pass);
        assert_eq!(decision.guards[0].checks[0].status(), CheckStatus::Fail);
        assert_eq!(decision.outcome, Outcome::Denied);
    }

    #[tokio::test]
    async fn a_shared_check_that_fails_denies_through_the_guard_and_the_policy_with_the_guards_reason_first()
     {
        let yaml = "guards:
  - name: the-guard
    require:
      - duration: { max: PT30M }
policies:
  - name: the-policy
    require:
      - duration: { max: PT30M }
";
        let tally = Tally::reporting(CheckOutcome::fail("longer than PT30M"));
        let counted = decide(&tallied(yaml, "duration", &tally)).await;
        assert_eq!(tally.runs(), 1);
        assert_eq!(counted.outcome, Outcome::Denied);

        let decision = decide(&loaded(yaml)).await;
        assert_eq!(decision.outcome, Outcome::Denied);
        assert_eq!(decision.guards[0].effect, GuardEffect::Deny);
        assert_eq!(decision.reasons.len(), 2, "{:?}", decision.reasons);
        assert!(
            decision.reasons[0].starts_with("Denied by guard 'the-guard': duration:"),
            "{:?}",
            decision.reasons
        );
        assert!(
            decision.reasons[1].starts_with("Denied by policy 'the-policy': duration:"),
            "{:?}",
            decision.reasons
        );
    }

    #[tokio::test]
    async fn at_the_post_approval_stage_a_shared_check_is_still_evaluated_once() {
        let tally = Tally::reporting(CheckOutcome::pass("within PT2H"));
        let rules = tallied(GUARD_AND_POLICY_SHARE_A_CHECK, "duration", &tally);
        let decision = decide_at(&rules, Stage::PostApproval).await;
        assert_eq!(tally.runs(), 1);
        assert_eq!(
            decision.outcome,
            Outcome::Approved,
            "{:?}",
            decision.reasons
        );
        assert_eq!(decision.guards[0].checks[0], decision.checks[0]);
    }

    #[tokio::test]
    async fn an_auto_approve_check_identical_to_a_guards_required_check_is_reported_under_each_ones_stage()
     {
        let yaml = "guards:
  - name: the-guard
    require:
      - duration: { max: PT2H }
policies:
  - name: the-policy
    allow_auto_approve_on_critical: true
    require:
      - start: { max_past: PT5M }
    auto_approve:
      - duration: { max: PT2H }
";
        let tally = Tally::reporting(CheckOutcome::pass("within PT2H"));
        let decision = decide(&tallied(yaml, "duration", &tally)).await;
        assert_eq!(tally.runs(), 1);
        assert_eq!(
            decision.outcome,
            Outcome::AutoApproved,
            "{:?}",
            decision.reasons
        );
        let guards = &decision.guards[0].checks[0];
        assert_eq!(guards.stage, CheckStage::Require);
        let policys: Vec<(&str, CheckStage)> = decision
            .checks
            .iter()
            .map(|report| (report.kind.as_str(), report.stage))
            .collect();
        assert_eq!(
            policys,
            [
                ("start", CheckStage::Require),
                ("duration", CheckStage::AutoApprove)
            ]
        );
        assert_eq!(decision.checks[1].outcome, guards.outcome);
    }

    #[tokio::test]
    async fn identical_specs_written_with_their_keys_in_another_order_share_one_evaluation() {
        let yaml = "guards:
  - name: the-guard
    require:
      - start: { max_past: PT5M, max_future: P7D }
policies:
  - name: rehearsal
    mode: audit
    require:
      - start: {max_future: 'P7D', max_past: PT5M}
  - name: the-policy
    require:
      - start:
          max_future: P7D
          max_past: PT5M
";
        let tally = Tally::reporting(CheckOutcome::pass("starts in time"));
        let rules = tallied(yaml, "start", &tally);
        assert_eq!(rules.shared_slots, 1);
        let decision = decide(&rules).await;
        assert_eq!(
            tally.runs(),
            1,
            "guard, shadow and deciding policy share it"
        );
        assert_eq!(decision.shadow[0].checks[0], decision.checks[0]);
    }

    #[test]
    fn the_check_metrics_count_a_shared_check_once_per_request() {
        let rules = loaded(GUARD_AND_POLICY_SHARE_A_CHECK);
        let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("runtime");
        let decision = metrics::with_local_recorder(&recorder, || runtime.block_on(decide(&rules)));
        assert_eq!(
            decision.outcome,
            Outcome::Approved,
            "{:?}",
            decision.reasons
        );
        let text = handle.render();
        for line in [
            r#"pimgate_check_results_total{kind="duration",status="pass"} 1"#,
            r#"pimgate_check_results_total{kind="start",status="pass"} 1"#,
            r#"pimgate_check_duration_seconds_count{kind="duration"} 1"#,
        ] {
            assert!(text.contains(line), "{line} in\n{text}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_shared_check_whose_first_caller_is_dropped_mid_evaluation_is_evaluated_by_the_next()
    {
        let mut shared = sleeper();
        shared.shared = Some(0);
        let request = request();
        let context = CheckContext::new(
            &request,
            now(),
            tokio::time::Instant::now() + Duration::from_millis(200),
        );
        let run = CheckRun::new(context, Duration::from_millis(200), 1);
        let mut first = Box::pin(run_check(CheckStage::Require, &shared, &run));
        assert!(futures::poll!(first.as_mut()).is_pending());
        drop(first);
        let second = run_check(CheckStage::AutoApprove, &shared, &run).await;
        assert_eq!(second.status(), CheckStatus::Pass);
        assert_eq!(second.outcome.message, "slept");
        assert_eq!(second.stage, CheckStage::AutoApprove);
    }

    #[test]
    fn a_rule_set_sharing_no_check_keeps_no_memo() {
        let rules = loaded(
            "guards:\n  - name: g\n    require:\n      - duration: { max: P1D }\npolicies:\n  - name: p\n    require:\n      - duration: { max: PT2H }\n",
        );
        assert_eq!(rules.shared_slots, 0);
        let request = request();
        let context = CheckContext::new(&request, now(), tokio::time::Instant::now());
        let run = CheckRun::new(context, Duration::from_millis(200), rules.shared_slots);
        assert_eq!(run.memo.capacity(), 0);
    }
}
