//! `pimgate evaluate`'s output: the human explanation (outcome, policy, guards, shadow decisions,
//! checks, what would change the outcome), the `--json` document whose decision carries the audit
//! record's field names, and what `--offline` could not run.

use crate::audit::AuditRecord;
use crate::decision::{self, CheckStage, Decision};
use crate::payload;
use crate::rules::{PolicyMode, RuleSet};

/// A check that asks a remote system and so did not run offline.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SkippedCheck {
    /// `policy` or `guard`.
    pub owner_kind: &'static str,
    /// The policy's or guard's name.
    pub owner: String,
    /// The check kind, e.g. `itsm`.
    pub kind: String,
    /// The connector section it needs, e.g. `servicenow` or `http.compliance`.
    pub connector: String,
}

/// What `--offline` did: the local file sources it still read and the remote checks it skipped.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Offline {
    /// The configured connectors that read local files (`hr_file`, `oncall_file`).
    pub local_sources: Vec<&'static str>,
    /// The checks of the policies and guards that applied to this request which need a connector
    /// that is remote (or not configured at all), in rule order.
    pub skipped_checks: Vec<SkippedCheck>,
}

/// Every check of the rules that needs a connector not built for this run, in rule order (guards
/// first): what loading marked `NamedCheck::unconfigured` when it warned about it.
pub fn checks_without_connector(rules: &RuleSet) -> Vec<SkippedCheck> {
    let guards = rules.guards.iter().flat_map(|guard| {
        guard
            .require
            .iter()
            .map(move |check| ("guard", guard.name.as_str(), check))
    });
    let policies = rules.policies.iter().flat_map(|policy| {
        policy
            .require
            .iter()
            .chain(&policy.auto_approve)
            .map(move |check| ("policy", policy.name.as_str(), check))
    });
    guards
        .chain(policies)
        .filter_map(|(owner_kind, owner, check)| {
            check.unconfigured.as_ref().map(|section| SkippedCheck {
                owner_kind,
                owner: owner.to_string(),
                kind: check.kind.to_string(),
                connector: section.clone(),
            })
        })
        .collect()
}

/// What `--offline` reports for this decision: the skipped checks of the deciding policy, the shadow
/// policies and the guards that applied.
pub fn offline_report(
    rules: &RuleSet,
    decision: &Decision,
    local_sources: Vec<&'static str>,
) -> Offline {
    let applied = |owner_kind: &str, owner: &str| match owner_kind {
        "policy" => {
            decision.policy.as_deref() == Some(owner)
                || decision.shadow.iter().any(|shadow| shadow.policy == owner)
        }
        _ => decision.guards.iter().any(|guard| guard.name == owner),
    };
    Offline {
        local_sources,
        skipped_checks: checks_without_connector(rules)
            .into_iter()
            .filter(|check| applied(check.owner_kind, &check.owner))
            .collect(),
    }
}

/// The decision as `evaluate --json` prints it: the audit record pimgate would write for it, less
/// what only a served request has (`type`, `time`, `replay`, `httpRequestId`, `latencyMs`,
/// `caller`). Serialized by [`AuditRecord`] itself, so the names cannot drift from the audit log's.
pub fn decision_json(
    decision: &Decision,
    request: &payload::ActivationRequest,
) -> serde_json::Value {
    let record = AuditRecord::of(decision, request);
    let mut value = serde_json::to_value(&record).unwrap_or_default();
    if let Some(object) = value.as_object_mut() {
        for served_only in [
            "type",
            "time",
            "replay",
            "httpRequestId",
            "latencyMs",
            "caller",
        ] {
            object.remove(served_only);
        }
        // When it was decided, under the name the decision itself uses.
        object.insert(
            "evaluatedAt".to_string(),
            serde_json::Value::String(decision.evaluated_at.to_rfc3339()),
        );
    }
    value
}

/// [`explain_with`] without the offline details (`offline` only says that nothing was called).
pub fn explain(decision: &Decision, request: &payload::ActivationRequest, offline: bool) -> String {
    explain_with(decision, request, offline.then(Offline::default).as_ref())
}

/// The human explanation tree printed by `pimgate evaluate`.
pub fn explain_with(
    decision: &Decision,
    request: &payload::ActivationRequest,
    offline: Option<&Offline>,
) -> String {
    let mut out = String::new();
    let mut line = |text: String| {
        out.push_str(&text);
        out.push('\n');
    };
    line(format!("Outcome:    {}", decision.outcome.as_str()));
    line(format!("Stage:      {}", decision.stage));
    line(format!(
        "Request:    {} asks for {} ({})",
        request.principal_id,
        decision::describe_target(request),
        request.action.as_str()
    ));
    line(format!(
        "Policy:     {}",
        decision.policy.as_deref().unwrap_or("(none matched)")
    ));
    line(format!("Rules:      revision {}", decision.rules_revision));
    if !decision.skipped_policies.is_empty() {
        line("Passed over:".into());
        for skipped in &decision.skipped_policies {
            line(format!("  - {}: {}", skipped.policy, skipped.why));
        }
    }
    if !decision.guards.is_empty() {
        line("Guards (applied whichever policy decides):".into());
        for guard in &decision.guards {
            let effect = format!("{:?}", guard.effect).to_uppercase();
            let effect = match guard.mode {
                PolicyMode::Enforce => effect,
                PolicyMode::Audit => {
                    format!("would {effect} (audit mode: does not change the answer)")
                }
            };
            line(format!("  - {}: {effect}", guard.name));
            for reason in &guard.reasons {
                line(format!("      {reason}"));
            }
            for report in &guard.checks {
                let status = format!("{:?}", report.outcome.status).to_uppercase();
                line(format!(
                    "      [require] {} {status} ({:.2} ms): {}",
                    report.kind, report.duration_ms, report.outcome.message
                ));
                if !report.outcome.evidence.is_empty() {
                    line(format!(
                        "          evidence: {}",
                        report.outcome.evidence.to_value()
                    ));
                }
            }
        }
    }
    if !decision.shadow.is_empty() {
        line("Shadow policies (mode: audit; recorded, never the answer):".into());
        for shadow in &decision.shadow {
            line(format!(
                "  - {}: would answer {}",
                shadow.policy,
                shadow.outcome.as_str()
            ));
            for reason in &shadow.reasons {
                line(format!("      {reason}"));
            }
            for report in &shadow.checks {
                let status = format!("{:?}", report.outcome.status).to_uppercase();
                line(format!(
                    "      [{}] {} {status}: {}",
                    stage_name(report.stage),
                    report.kind,
                    report.outcome.message
                ));
            }
        }
    }
    if !decision.checks.is_empty() {
        line("Checks:".into());
        for report in &decision.checks {
            let stage = stage_name(report.stage);
            let status = format!("{:?}", report.outcome.status).to_uppercase();
            line(format!(
                "  [{stage}] {} {status} ({:.2} ms): {}",
                report.kind, report.duration_ms, report.outcome.message
            ));
            if !report.outcome.evidence.is_empty() {
                line(format!(
                    "      evidence: {}",
                    report.outcome.evidence.to_value()
                ));
            }
        }
    }
    line("Reasons (what PIM shows the requester):".into());
    for reason in &decision.reasons {
        line(format!("  - {reason}"));
    }
    let hints = what_would_change(decision);
    if !hints.is_empty() {
        line("What would change the outcome:".into());
        for hint in hints {
            line(format!("  - {hint}"));
        }
    }
    if let Some(offline) = offline {
        let mut said = String::from("Offline: no remote system was called");
        if !offline.local_sources.is_empty() {
            said.push_str(&format!(
                "; local file sources were read: {}",
                offline.local_sources.join(", ")
            ));
        }
        line(format!("{said}."));
        if offline.skipped_checks.is_empty() {
            line("  no check of the policies and guards that applied needs a remote system".into());
        } else {
            line("  skipped (they ask a remote system; their `on_error` decided):".into());
            for check in &offline.skipped_checks {
                line(format!(
                    "  - {} `{}`: {} (connector `{}`)",
                    check.owner_kind, check.owner, check.kind, check.connector
                ));
            }
        }
    }
    line(format!(
        "Evaluated in {:.2} ms; evaluationId {}",
        decision.duration_ms, decision.evaluation_id
    ));
    out
}

/// The checks standing between this request and a better outcome, phrased as what to change: the
/// enforcing guards that denied or capped first, then the policy's.
fn what_would_change(decision: &Decision) -> Vec<String> {
    let mut hints = guard_hints(decision);
    hints.extend(policy_hints(decision));
    hints
}

fn guard_hints(decision: &Decision) -> Vec<String> {
    use crate::checks::CheckStatus;
    use crate::decision::GuardEffect;
    let mut hints = Vec::new();
    let enforcing = decision
        .guards
        .iter()
        .filter(|guard| guard.mode == PolicyMode::Enforce && guard.effect != GuardEffect::Pass);
    for guard in enforcing {
        if guard.checks.is_empty() {
            hints.push(format!(
                "guard `{}` denies every request it applies to: only a request outside its `match` (or `when`) escapes it",
                guard.name
            ));
        }
        for report in &guard.checks {
            match report.outcome.status {
                CheckStatus::Pass => {}
                CheckStatus::Error => hints.push(format!(
                    "guard `{}`: `{}` must be evaluable (it errored: {})",
                    guard.name, report.kind, report.outcome.message
                )),
                CheckStatus::Fail => hints.push(format!(
                    "guard `{}`: `{}` must pass: {}",
                    guard.name, report.kind, report.outcome.message
                )),
            }
        }
    }
    hints
}

fn policy_hints(decision: &Decision) -> Vec<String> {
    use crate::checks::CheckStatus;
    let blocking = |stage: CheckStage| {
        decision.checks.iter().filter(move |report| {
            report.stage == stage && report.outcome.status != CheckStatus::Pass
        })
    };
    match decision.outcome {
        crate::decision::Outcome::Denied if decision.policy.is_none() => {
            vec![
                "a policy whose `match` covers this request (or a catch-all policy) in the rules"
                    .into(),
            ]
        }
        crate::decision::Outcome::Denied => blocking(CheckStage::Require)
            .map(|report| match report.outcome.status {
                CheckStatus::Error => format!(
                    "`{}` must be evaluable (it errored: {}), or the policy's `on_error: approve`",
                    report.kind, report.outcome.message
                ),
                _ => format!("`{}` must pass: {}", report.kind, report.outcome.message),
            })
            .collect(),
        crate::decision::Outcome::Approved => blocking(CheckStage::AutoApprove)
            .map(|report| {
                format!(
                    "auto-approval needs `{}` to pass: {}",
                    report.kind, report.outcome.message
                )
            })
            .collect(),
        crate::decision::Outcome::AutoApproved => Vec::new(),
    }
}

fn stage_name(stage: CheckStage) -> &'static str {
    match stage {
        CheckStage::Require => "require",
        CheckStage::AutoApprove => "auto_approve",
    }
}
