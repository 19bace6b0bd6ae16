//! What `pimgate evaluate` shows: the `--json` decision under the audit record's own field names,
//! the shadow decisions and guards in the text, and which checks `--offline` skipped (by policy or
//! guard, kind and connector).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: failing loudly is the point

use std::time::Duration;

use chrono::{DateTime, Utc};
use pimgate::audit::{AuditLog, CallerSummary};
use pimgate::connectors::Connectors;
use pimgate::decision::{Decision, evaluate};
use pimgate::payload::ActivationRequest;
use pimgate::settings::{AuditSettings, AuditSink, JustificationMasking};
use pimgate::workbench::explain::{
    SkippedCheck, checks_without_connector, decision_json, explain_with, offline_report,
};

use crate::support::requests::{ENTRA_ROLE, sample_bytes};

/// A guard and two policies asking upstream systems that are not configured here (ServiceNow, the
/// HR file), a shadow policy, and a guard that only needs the request.
const RULES: &str = "
guards:
  - name: leavers
    require:
      - hr: { source: file, not_leaving_within: P14D }
    on_error: approve
  - name: short-only
    require:
      - duration: { max: PT8H }
policies:
  - name: shadow-ticket
    mode: audit
    match: {}
    require:
      - itsm: { system: servicenow, states: [Implement] }
  - name: all
    match: {}
    require:
      - duration: { max: PT4H }
  - name: never-reached
    match: {}
    require:
      - itsm: { system: jira, status_categories: [indeterminate] }
";

fn now() -> DateTime<Utc> {
    "2026-11-24T10:00:00Z".parse().unwrap()
}

async fn decide() -> (pimgate::rules::RuleSet, ActivationRequest, Decision) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("rules.yaml"), RULES).unwrap();
    let rules = pimgate::rules::load_with(dir.path(), &Connectors::none())
        .unwrap_or_else(|problems| panic!("{problems:?}"));
    let request = pimgate::payload::decode(&sample_bytes(ENTRA_ROLE)).unwrap();
    let decision = evaluate(&rules, &request, now(), Duration::from_secs(5)).await;
    (rules, request, decision)
}

#[tokio::test]
async fn the_json_decision_uses_the_audit_records_names_and_values_for_every_shared_field() {
    let (_, request, decision) = decide().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    let log = AuditLog::new(&AuditSettings {
        sink: AuditSink::File,
        path: Some(path.clone()),
        justification: JustificationMasking::Full,
        justification_max_chars: 200,
    })
    .unwrap();
    let caller = CallerSummary {
        app_id: "app",
        token_version: "v2",
        dev: true,
    };
    log.record(&decision, &request, &caller, "http-1", false, 1.0, &[]);
    log.flush().unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    let audit: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    let audit = audit.as_object().unwrap();
    // Both sides through JSON text, as a reader of either gets them (serde_json's float parsing is
    // not bit-exact: 0.009518 can read back as 0.009517999999999999).
    let printed: serde_json::Value =
        serde_json::from_str(&decision_json(&decision, &request).to_string()).unwrap();
    let printed = printed.as_object().unwrap();
    for (key, value) in printed {
        if key == "evaluatedAt" {
            continue; // when it was decided: the audit record's `time` is when it was written
        }
        assert_eq!(
            audit.get(key),
            Some(value),
            "`{key}` of `evaluate --json` is not the audit record's"
        );
    }
    for shared in [
        "evaluationId",
        "outcome",
        "reasons",
        "policy",
        "skippedPolicies",
        "checks",
        "shadowDecisions",
        "guards",
        "rulesRevision",
        "stage",
        "principalId",
    ] {
        assert!(
            printed.contains_key(shared),
            "`{shared}` missing from {printed:?}"
        );
    }
}

#[tokio::test]
async fn offline_names_the_checks_it_skipped_by_policy_or_guard_kind_and_connector() {
    let (rules, _, decision) = decide().await;
    let every = checks_without_connector(&rules);
    let skipped = |owner_kind, owner: &str, kind: &str, connector: &str| SkippedCheck {
        owner_kind,
        owner: owner.into(),
        kind: kind.into(),
        connector: connector.into(),
    };
    assert_eq!(
        every,
        vec![
            skipped("guard", "leavers", "hr", "hr_file"),
            skipped("policy", "shadow-ticket", "itsm", "servicenow"),
            skipped("policy", "never-reached", "itsm", "jira"),
        ]
    );
    // Only those of the policies and guards that applied to this request.
    let offline = offline_report(&rules, &decision, vec!["oncall_file"]);
    assert_eq!(
        offline.skipped_checks,
        vec![
            skipped("guard", "leavers", "hr", "hr_file"),
            skipped("policy", "shadow-ticket", "itsm", "servicenow"),
        ]
    );
    let text = explain_with(
        &decision,
        &pimgate::payload::decode(&sample_bytes(ENTRA_ROLE)).unwrap(),
        Some(&offline),
    );
    assert!(
        text.contains(
            "Offline: no remote system was called; local file sources were read: oncall_file."
        ),
        "{text}"
    );
    assert!(
        text.contains("  - guard `leavers`: hr (connector `hr_file`)"),
        "{text}"
    );
    assert!(
        text.contains("  - policy `shadow-ticket`: itsm (connector `servicenow`)"),
        "{text}"
    );
    assert!(!text.contains("never-reached`: itsm"), "{text}");
}

#[tokio::test]
async fn the_explanation_shows_the_shadow_decisions_and_every_guard() {
    let (_, request, decision) = decide().await;
    let text = explain_with(&decision, &request, None);
    assert!(
        text.contains("Shadow policies (mode: audit; recorded, never the answer):\n  - shadow-ticket: would answer Denied"),
        "{text}"
    );
    assert!(text.contains("  - leavers: CAP"), "{text}");
    assert!(text.contains("  - short-only: PASS"), "{text}");
    assert!(!text.contains("Offline:"), "{text}");
}
