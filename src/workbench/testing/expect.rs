//! What a rule test case expects of the decision (`expect:`), and how a decision is compared with it:
//! the outcome, the deciding policy, words of the reasons, the guards that applied (and their effect)
//! and each shadow (`mode: audit`) policy's would-be outcome.

use std::collections::BTreeMap;

use crate::decision::{Decision, GuardEffect, Outcome};

/// Every key an `expect:` may have.
pub(super) const EXPECT_KEYS: &[&str] = &[
    "outcome",
    "policy",
    "reason_contains",
    "guard",
    "guards",
    "shadow",
];

/// What an expected guard did: one of its effects, or that it did not apply at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ExpectedGuard {
    Effect(GuardEffect),
    NotApplied,
}

impl ExpectedGuard {
    /// The words a test file uses, in the order the README lists them.
    pub(super) const WORDS: &'static [&'static str] =
        &["pass", "deny", "error", "cap", "not_applied"];

    pub(super) fn parse(word: &str) -> Option<Self> {
        Some(match word {
            "pass" => ExpectedGuard::Effect(GuardEffect::Pass),
            "deny" => ExpectedGuard::Effect(GuardEffect::Deny),
            "error" => ExpectedGuard::Effect(GuardEffect::Error),
            "cap" => ExpectedGuard::Effect(GuardEffect::Cap),
            "not_applied" => ExpectedGuard::NotApplied,
            _ => return None,
        })
    }
}

/// What an expected shadow policy would have decided, or that it did not match the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ExpectedShadow {
    Outcome(Outcome),
    NotMatched,
}

impl ExpectedShadow {
    pub(super) const WORDS: &'static [&'static str] =
        &["Denied", "Approved", "AutoApproved", "not_matched"];

    pub(super) fn parse(word: &str) -> Option<Self> {
        Some(match word {
            "Denied" => ExpectedShadow::Outcome(Outcome::Denied),
            "Approved" => ExpectedShadow::Outcome(Outcome::Approved),
            "AutoApproved" => ExpectedShadow::Outcome(Outcome::AutoApproved),
            "not_matched" => ExpectedShadow::NotMatched,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone)]
pub(super) struct Expectation {
    pub(super) outcome: Outcome,
    pub(super) policy: Option<String>,
    pub(super) reason_contains: Vec<String>,
    /// Guards that must have applied and not passed (denied, errored or capped; for an `audit`
    /// guard, what it would have done).
    pub(super) guard: Vec<String>,
    /// Guard name → exactly what it did (`pass`, `deny`, `error`, `cap`) or `not_applied`.
    pub(super) guards: BTreeMap<String, ExpectedGuard>,
    /// `audit` policy name → its would-be outcome, or `not_matched`.
    pub(super) shadow: BTreeMap<String, ExpectedShadow>,
}

fn effect_word(effect: GuardEffect) -> &'static str {
    match effect {
        GuardEffect::Pass => "pass",
        GuardEffect::Deny => "deny",
        GuardEffect::Error => "error",
        GuardEffect::Cap => "cap",
    }
}

/// `None` when the decision is what the case expects, else what differed.
pub(super) fn compare(expect: &Expectation, decision: &Decision) -> Option<String> {
    let mut differences = Vec::new();
    if decision.outcome != expect.outcome {
        differences.push(format!(
            "expected {}, got {}",
            expect.outcome.as_str(),
            decision.outcome.as_str()
        ));
    }
    if let Some(policy) = &expect.policy
        && decision.policy.as_deref() != Some(policy.as_str())
    {
        differences.push(format!(
            "expected policy `{policy}`, got {}",
            decision
                .policy
                .as_deref()
                .map(|name| format!("`{name}`"))
                .unwrap_or_else(|| "no policy".to_string())
        ));
    }
    for name in &expect.guard {
        match decision.guards.iter().find(|report| &report.name == name) {
            None => differences.push(format!("guard `{name}` did not apply")),
            Some(report) if report.effect == GuardEffect::Pass => {
                differences.push(format!("guard `{name}` applied but passed"))
            }
            Some(_) => {}
        }
    }
    for (name, expected) in &expect.guards {
        let actual = decision.guards.iter().find(|report| &report.name == name);
        match (expected, actual) {
            (ExpectedGuard::NotApplied, None) => {}
            (ExpectedGuard::NotApplied, Some(report)) => differences.push(format!(
                "expected guard `{name}` not to apply, it applied ({})",
                effect_word(report.effect)
            )),
            (ExpectedGuard::Effect(effect), None) => differences.push(format!(
                "expected guard `{name}` to apply ({}), it did not apply",
                effect_word(*effect)
            )),
            (ExpectedGuard::Effect(effect), Some(report)) if report.effect != *effect => {
                differences.push(format!(
                    "expected guard `{name}` to {}, got {}",
                    effect_word(*effect),
                    effect_word(report.effect)
                ))
            }
            (ExpectedGuard::Effect(_), Some(_)) => {}
        }
    }
    for (policy, expected) in &expect.shadow {
        let actual = decision
            .shadow
            .iter()
            .find(|shadow| &shadow.policy == policy);
        match (expected, actual) {
            (ExpectedShadow::NotMatched, None) => {}
            (ExpectedShadow::NotMatched, Some(shadow)) => differences.push(format!(
                "expected shadow policy `{policy}` not to match, it would have answered {}",
                shadow.outcome.as_str()
            )),
            (ExpectedShadow::Outcome(outcome), None) => differences.push(format!(
                "expected shadow policy `{policy}` to answer {}, it did not match",
                outcome.as_str()
            )),
            (ExpectedShadow::Outcome(outcome), Some(shadow)) if shadow.outcome != *outcome => {
                differences.push(format!(
                    "expected shadow policy `{policy}` to answer {}, it would have answered {}",
                    outcome.as_str(),
                    shadow.outcome.as_str()
                ))
            }
            (ExpectedShadow::Outcome(_), Some(_)) => {}
        }
    }
    let reasons = decision.reasons.join(" | ");
    for fragment in &expect.reason_contains {
        if !reasons.to_lowercase().contains(&fragment.to_lowercase()) {
            differences.push(format!("no reason contains `{fragment}`"));
        }
    }
    if differences.is_empty() {
        return None;
    }
    Some(format!("{}; reasons: {reasons}", differences.join("; ")))
}
