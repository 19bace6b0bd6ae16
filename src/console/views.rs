//! What the console's templates show, computed here so the templates only lay it out: every value
//! is a plain string or number, and askama escapes every one of them (the SVG charts, built and
//! escaped by `chart`, are the only markup passed through).

use std::collections::BTreeMap;
use std::sync::Arc;

use askama::Template;

use super::chart::{self, Percentiles};
use super::health::{ConnectorHealth, all_checks};
use crate::decision::{CheckReport, CheckStage, Decision, GuardEffect};
use crate::http::recent::{RecentDecision, RequestSummary};
use crate::http::state::{ReloadResult, ReloadStatus};
use crate::rules::matcher::{Matcher, ScopePattern, tier_name};
use crate::rules::{FailureMode, PolicyMode, RuleSet, catalog};
use crate::vocabulary::Outcome;

/// `outcome-denied` etc., the CSS class of an outcome badge.
fn outcome_class(outcome: Outcome) -> &'static str {
    match outcome {
        Outcome::Denied => "outcome-denied",
        Outcome::Approved => "outcome-approved",
        Outcome::AutoApproved => "outcome-auto",
    }
}

fn mode_name(mode: PolicyMode) -> &'static str {
    match mode {
        PolicyMode::Enforce => "enforce",
        PolicyMode::Audit => "audit (shadow)",
    }
}

fn on_error_name(mode: FailureMode) -> &'static str {
    match mode {
        FailureMode::Deny => "deny",
        FailureMode::Approve => "approve",
    }
}

/// One line per `match` key the rule sets, e.g. `roles: Global Administrator`.
pub fn match_summary(matcher: &Matcher) -> Vec<String> {
    let mut lines = Vec::new();
    if let Some(roles) = &matcher.roles {
        let names: Vec<String> = roles
            .iter()
            .map(|id| match catalog::by_id(id) {
                Some(role) => role.name.to_string(),
                None => id.clone(),
            })
            .collect();
        lines.push(format!("roles: {}", names.join(", ")));
    }
    if let Some(tiers) = &matcher.tiers {
        let names: Vec<&str> = tiers.iter().map(|tier| tier_name(*tier)).collect();
        lines.push(format!("tiers: {}", names.join(", ")));
    }
    if let Some(groups) = &matcher.groups {
        lines.push(format!("groups: {}", groups.join(", ")));
    }
    if let Some(access) = &matcher.access {
        let names: Vec<&str> = access.iter().map(|access| access.as_str()).collect();
        lines.push(format!("access: {}", names.join(", ")));
    }
    if let Some(types) = &matcher.resource_types {
        let names: Vec<&str> = types.iter().map(|kind| kind.as_str()).collect();
        lines.push(format!("resource types: {}", names.join(", ")));
    }
    if let Some(scopes) = &matcher.scopes {
        let names: Vec<String> = scopes
            .iter()
            .map(|scope| match scope {
                ScopePattern::Exact(scope) => scope.clone(),
                ScopePattern::Under(scope) => format!("{scope}/**"),
            })
            .collect();
        lines.push(format!("scopes: {}", names.join(", ")));
    }
    if let Some(principals) = &matcher.principals {
        lines.push(format!("principals: {} listed", principals.len()));
    }
    lines.push(format!("actions: {}", matcher.actions.join(", ")));
    lines.push(match &matcher.stages {
        Some(stages) => {
            let names: Vec<&str> = stages.iter().map(|stage| stage.name()).collect();
            format!("stages: {}", names.join(", "))
        }
        None => "stages: both".to_string(),
    });
    lines
}

/// A policy or guard in selection order.
pub struct RuleRow {
    /// `guard` or `policy`.
    pub kind: &'static str,
    pub name: String,
    pub mode: &'static str,
    pub on_error: &'static str,
    pub matches: Vec<String>,
    /// `require: itsm, duration`, `decide: Denied`, ...
    pub does: Vec<String>,
    pub file: String,
}

fn kinds(checks: &[crate::checks::NamedCheck]) -> String {
    let names: Vec<&str> = checks.iter().map(|check| check.kind).collect();
    names.join(", ")
}

fn file_name(path: &std::path::Path) -> String {
    path.file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default()
}

pub fn rule_rows(rules: &RuleSet) -> Vec<RuleRow> {
    let guards = rules.guards.iter().map(|guard| RuleRow {
        kind: "guard",
        name: guard.name.clone(),
        mode: mode_name(guard.mode),
        on_error: on_error_name(guard.on_error),
        matches: match_summary(&guard.matcher),
        does: match &guard.deny_reason {
            Some(reason) => vec![format!("decide: Denied ({reason})")],
            None => vec![format!("require: {}", kinds(&guard.require))],
        },
        file: file_name(&guard.source),
    });
    let policies = rules.policies.iter().map(|policy| {
        let mut does = Vec::new();
        if let Some(fixed) = &policy.decide {
            does.push(format!("decide: {}", fixed.outcome.as_str()));
        }
        if !policy.require.is_empty() {
            does.push(format!("require: {}", kinds(&policy.require)));
        }
        if !policy.auto_approve.is_empty() {
            does.push(format!("auto_approve: {}", kinds(&policy.auto_approve)));
        }
        if policy.when.is_some() {
            does.push("when: a CEL condition".to_string());
        }
        RuleRow {
            kind: "policy",
            name: policy.name.clone(),
            mode: mode_name(policy.mode),
            on_error: on_error_name(policy.on_error),
            matches: match_summary(&policy.matcher),
            does,
            file: file_name(&policy.source),
        }
    });
    guards.chain(policies).collect()
}

/// The last reload, as text.
pub struct ReloadView {
    pub ok: bool,
    pub at: String,
    pub trigger: String,
    pub problems: usize,
    pub error: String,
}

impl ReloadView {
    pub fn of(status: &ReloadStatus) -> Self {
        Self {
            ok: status.result == ReloadResult::Ok,
            at: status.at.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
            trigger: status.trigger.clone(),
            problems: status.problems,
            error: status.error.clone().unwrap_or_default(),
        }
    }
}

/// A row of the recent-decisions table.
pub struct DecisionRow {
    pub id: String,
    pub time: String,
    pub outcome: &'static str,
    pub outcome_class: &'static str,
    pub stage: &'static str,
    pub principal: String,
    pub target: String,
    pub policy: String,
    pub reason: String,
    /// (kind, status, milliseconds)
    pub checks: Vec<(String, &'static str, String)>,
    pub latency: String,
    pub replay: bool,
}

fn status_name(report: &CheckReport) -> &'static str {
    match report.status() {
        crate::checks::CheckStatus::Pass => "pass",
        crate::checks::CheckStatus::Fail => "fail",
        crate::checks::CheckStatus::Error => "error",
    }
}

pub fn decision_row(entry: &RecentDecision) -> DecisionRow {
    let decision = &entry.decision;
    DecisionRow {
        id: decision.evaluation_id.to_string(),
        time: entry.answered_at.format("%H:%M:%S").to_string(),
        outcome: decision.outcome.as_str(),
        outcome_class: outcome_class(decision.outcome),
        stage: decision.stage.name(),
        principal: entry.request.principal_id.clone(),
        target: entry.request.target_label().to_string(),
        policy: decision.policy.clone().unwrap_or_else(|| "-".into()),
        reason: decision.reasons.first().cloned().unwrap_or_default(),
        checks: all_checks(entry)
            .map(|report| {
                (
                    report.kind.clone(),
                    status_name(report),
                    format!("{:.1}", report.duration_ms),
                )
            })
            .collect(),
        latency: format!("{:.1}", entry.latency_ms),
        replay: entry.replay,
    }
}

/// How often a shadow policy's would-be answer differed from the live one, in the kept decisions.
pub struct Disagreement {
    pub policy: String,
    pub disagreed: usize,
    pub matched: usize,
    /// The newest decision it disagreed on.
    pub example: String,
    pub example_shadow: &'static str,
    pub example_live: &'static str,
}

pub fn disagreements(newest_first: &[Arc<RecentDecision>]) -> Vec<Disagreement> {
    let mut by_policy: BTreeMap<String, Disagreement> = BTreeMap::new();
    for entry in newest_first {
        for shadow in &entry.decision.shadow {
            let row = by_policy
                .entry(shadow.policy.clone())
                .or_insert_with(|| Disagreement {
                    policy: shadow.policy.clone(),
                    disagreed: 0,
                    matched: 0,
                    example: String::new(),
                    example_shadow: "",
                    example_live: "",
                });
            row.matched += 1;
            if shadow.outcome != entry.decision.outcome {
                row.disagreed += 1;
                if row.example.is_empty() {
                    row.example = entry.decision.evaluation_id.to_string();
                    row.example_shadow = shadow.outcome.as_str();
                    row.example_live = entry.decision.outcome.as_str();
                }
            }
        }
    }
    by_policy.into_values().collect()
}

#[derive(Template)]
#[template(path = "console/index.html")]
pub struct IndexPage {
    pub version: &'static str,
    pub revision: String,
    pub policies: usize,
    pub guards: usize,
    pub reload: Option<ReloadView>,
    pub rules: Vec<RuleRow>,
    pub decisions: Vec<DecisionRow>,
    pub kept: usize,
    pub capacity: usize,
    pub disagreements: Vec<Disagreement>,
    pub connectors: Vec<ConnectorHealth>,
    pub outcome_chart: String,
    pub latency_chart: String,
    pub latency: Vec<Percentiles>,
}

impl IndexPage {
    pub fn build(
        rules: &RuleSet,
        reload: Option<ReloadStatus>,
        newest_first: &[Arc<RecentDecision>],
        capacity: usize,
        hour: &[(
            chrono::DateTime<chrono::Utc>,
            crate::http::recent::MinuteCounts,
        )],
    ) -> Self {
        let latency = chart::percentiles(newest_first.iter().flat_map(|entry| {
            all_checks(entry)
                .map(|report| (report.kind.clone(), report.duration_ms))
                .collect::<Vec<_>>()
        }));
        Self {
            version: env!("CARGO_PKG_VERSION"),
            revision: rules.revision.clone(),
            policies: rules.policies.len(),
            guards: rules.guards.len(),
            reload: reload.as_ref().map(ReloadView::of),
            rules: rule_rows(rules),
            decisions: newest_first
                .iter()
                .map(|entry| decision_row(entry))
                .collect(),
            kept: newest_first.len(),
            capacity,
            disagreements: disagreements(newest_first),
            connectors: super::health::connector_health(newest_first),
            outcome_chart: chart::outcomes_per_minute(hour),
            latency_chart: chart::latency_bars(&latency),
            latency,
        }
    }
}

/// One check as the explanation shows it.
pub struct CheckView {
    pub kind: String,
    pub stage: &'static str,
    pub status: &'static str,
    pub message: String,
    pub evidence: String,
    pub duration: String,
}

fn check_views(reports: &[CheckReport]) -> Vec<CheckView> {
    reports
        .iter()
        .map(|report| CheckView {
            kind: report.kind.clone(),
            stage: match report.stage {
                CheckStage::Require => "require",
                CheckStage::AutoApprove => "auto_approve",
            },
            status: status_name(report),
            message: report.outcome.message.clone(),
            evidence: if report.outcome.evidence.is_empty() {
                String::new()
            } else {
                serde_json::to_string_pretty(&report.outcome.evidence.to_value())
                    .unwrap_or_default()
            },
            duration: format!("{:.1}", report.duration_ms),
        })
        .collect()
}

pub struct GuardView {
    pub name: String,
    pub mode: &'static str,
    pub effect: &'static str,
    pub reasons: Vec<String>,
    pub checks: Vec<CheckView>,
}

pub struct ShadowView {
    pub policy: String,
    pub outcome: &'static str,
    pub outcome_class: &'static str,
    pub agrees: bool,
    pub reasons: Vec<String>,
    pub checks: Vec<CheckView>,
}

/// A decision's full explanation (a kept one, or a dry run's).
pub struct Explanation {
    pub id: String,
    pub outcome: &'static str,
    pub outcome_class: &'static str,
    pub stage: &'static str,
    pub policy: String,
    pub reasons: Vec<String>,
    pub evaluated_at: String,
    pub revision: String,
    pub duration: String,
    pub request: Vec<(&'static str, String)>,
    pub checks: Vec<CheckView>,
    pub guards: Vec<GuardView>,
    pub shadow: Vec<ShadowView>,
    pub skipped: Vec<(String, String)>,
}

impl Explanation {
    pub fn of(decision: &Decision, request: &RequestSummary) -> Self {
        let mut fields = vec![
            ("principal", request.principal_id.clone()),
            ("resource type", request.resource_type.to_string()),
            ("action", request.action.clone()),
            ("target", request.target_label().to_string()),
            ("target id", request.target_id.clone()),
            ("scope", request.scope.clone()),
        ];
        if let Some(ticket) = &request.ticket {
            fields.push(("ticket", ticket.clone()));
        }
        fields.push((
            "justification",
            request
                .justification
                .clone()
                .unwrap_or_else(|| "(not recorded)".into()),
        ));
        Self {
            id: decision.evaluation_id.to_string(),
            outcome: decision.outcome.as_str(),
            outcome_class: outcome_class(decision.outcome),
            stage: decision.stage.name(),
            policy: decision.policy.clone().unwrap_or_else(|| "-".into()),
            reasons: decision.reasons.clone(),
            evaluated_at: decision
                .evaluated_at
                .format("%Y-%m-%d %H:%M:%S UTC")
                .to_string(),
            revision: decision.rules_revision.clone(),
            duration: format!("{:.1}", decision.duration_ms),
            request: fields,
            checks: check_views(&decision.checks),
            guards: decision
                .guards
                .iter()
                .map(|guard| GuardView {
                    name: guard.name.clone(),
                    mode: mode_name(guard.mode),
                    effect: match guard.effect {
                        GuardEffect::Pass => "pass",
                        GuardEffect::Deny => "deny",
                        GuardEffect::Error => "error",
                        GuardEffect::Cap => "cap at Approved",
                    },
                    reasons: guard.reasons.clone(),
                    checks: check_views(&guard.checks),
                })
                .collect(),
            shadow: decision
                .shadow
                .iter()
                .map(|shadow| ShadowView {
                    policy: shadow.policy.clone(),
                    outcome: shadow.outcome.as_str(),
                    outcome_class: outcome_class(shadow.outcome),
                    agrees: shadow.outcome == decision.outcome,
                    reasons: shadow.reasons.clone(),
                    checks: check_views(&shadow.checks),
                })
                .collect(),
            skipped: decision
                .skipped_policies
                .iter()
                .map(|skipped| (skipped.policy.clone(), skipped.why.clone()))
                .collect(),
        }
    }
}

#[derive(Template)]
#[template(path = "console/decision.html")]
pub struct DecisionPage {
    pub explanation: Explanation,
    pub replay: bool,
    pub latency: String,
    pub answered_at: String,
}

#[derive(Template)]
#[template(path = "console/dry_run.html")]
pub struct DryRunPage {
    pub body: String,
    pub stage: String,
    pub at: String,
    pub error: String,
    /// The rules revision the dry run used, and whether it differs from the live one.
    pub note: String,
    pub explanation: Option<Explanation>,
    /// The same text `pimgate evaluate --offline` prints.
    pub text: String,
}

#[derive(Template)]
#[template(path = "console/not_found.html")]
pub struct NotFoundPage {
    pub id: String,
    pub capacity: usize,
}
