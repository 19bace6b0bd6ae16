//! Guards at the boundary: rule YAML in (with a real HR file), `Decision` out. A guard applies to
//! every request its match holds for, whichever policy first-match selection picks, and only ever
//! makes the answer stricter.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use pimgate::connectors::hr_file::{HrFile, HrFileSettings};
use pimgate::connectors::{BuildContext, Connectors};
use pimgate::decision::{Decision, Outcome, evaluate};
use pimgate::payload::{Action, ActivationRequest, Stage};
use pimgate::rules::RuleSet;
use pimgate::vocabulary::diagnostic::{Diagnostic, Severity};

use crate::support::rules as common_rules;
use common_rules::{EXCHANGE_ADMIN, GLOBAL_ADMIN, NOW, role, with_action, with_principal};

/// Leaves within the 14 days the guards below ask for.
const LEAVER: &str = "dddddddd-0000-4000-8000-000000000004";

const HR: &str = "id,mail,upn,account_enabled,employee_leave_date_time,employee_type,department\n\
    cccccccc-0000-4000-8000-000000000003,alice@contoso.com,alice@contoso.com,true,,Employee,Platform\n\
    dddddddd-0000-4000-8000-000000000004,dave@contoso.com,dave@contoso.com,true,2026-12-01,Employee,Platform\n";

/// The rules of `yaml`, loaded with an HR-file connector reading [`HR`].
fn load(yaml: &str) -> (RuleSet, tempfile::TempDir) {
    match try_load(yaml) {
        (Ok(rules), dir) => (rules, dir),
        (Err(problems), _) => panic!("rules do not load:\n{}", render(&problems)),
    }
}

fn try_load(yaml: &str) -> (Result<RuleSet, Vec<Diagnostic>>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let hr = dir.path().join("hr.csv");
    std::fs::write(&hr, HR).unwrap();
    let rules = dir.path().join("rules.yaml");
    std::fs::write(&rules, yaml).unwrap();
    let context = BuildContext {
        http: reqwest::Client::new(),
        tenant_id: "00000000-0000-0000-0000-000000000000".to_string(),
    };
    let settings = HrFileSettings {
        path: hr,
        check_interval_seconds: Some(0),
    };
    let connectors = Arc::new(Connectors {
        hr_file: Some(Arc::new(HrFile::new(&settings, &context).unwrap())),
        ..Connectors::default()
    });
    (pimgate::rules::load_with(&rules, &connectors), dir)
}

fn render(problems: &[Diagnostic]) -> String {
    problems
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

fn now() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(NOW)
        .unwrap()
        .with_timezone(&Utc)
}

async fn decide(rules: &RuleSet, request: ActivationRequest) -> Decision {
    evaluate(rules, &request, now(), Duration::from_secs(5)).await
}

/// The problems of rules that must not load.
fn refused(yaml: &str) -> Vec<Diagnostic> {
    match try_load(yaml).0 {
        Ok(_) => panic!("rules loaded but should not have:\n{yaml}"),
        Err(problems) => problems,
    }
}

fn error_at<'p>(problems: &'p [Diagnostic], key: &str) -> &'p Diagnostic {
    problems
        .iter()
        .find(|problem| problem.severity == Severity::Error && problem.key == key)
        .unwrap_or_else(|| panic!("no error at `{key}`:\n{}", render(problems)))
}

const LEAVERS_GUARD: &str = "
guards:
  - name: leavers-are-denied
    require:
      - hr: { source: file, not_leaving_within: P14D }
";

// ---- the answer --------------------------------------------------------------------------------

#[tokio::test]
async fn a_leaver_whom_the_first_matching_policy_approves_is_denied_by_the_guard() {
    let yaml = format!(
        "{LEAVERS_GUARD}
policies:
  - name: exchange-is-always-fine
    match: {{ roles: [Exchange Administrator] }}
    decide: Approved
    reason: Exchange is handed to PIM's approvers.
  - name: everyone-else
    require:
      - hr: {{ source: file, not_leaving_within: P14D }}
"
    );
    let (rules, _dir) = load(&yaml);

    let leaver = decide(&rules, with_principal(role(EXCHANGE_ADMIN), LEAVER)).await;
    assert_eq!(leaver.outcome, Outcome::Denied, "{:?}", leaver.reasons);
    assert!(
        leaver.reasons[0].contains("leavers-are-denied")
            && leaver.reasons[0].contains("2026-12-01"),
        "the guard's reason comes first: {:?}",
        leaver.reasons
    );
    assert_eq!(leaver.policy.as_deref(), Some("exchange-is-always-fine"));

    let colleague = decide(&rules, role(EXCHANGE_ADMIN)).await;
    assert_eq!(
        colleague.outcome,
        Outcome::Approved,
        "{:?}",
        colleague.reasons
    );
}

#[tokio::test]
async fn a_fixed_auto_approval_is_subject_to_guards_too() {
    let yaml = format!(
        "{LEAVERS_GUARD}
policies:
  - name: exchange-auto
    match: {{ roles: [Exchange Administrator] }}
    decide: AutoApproved
    reason: lab tenant.
"
    );
    let (rules, _dir) = load(&yaml);
    let leaver = decide(&rules, with_principal(role(EXCHANGE_ADMIN), LEAVER)).await;
    assert_eq!(leaver.outcome, Outcome::Denied);
    let colleague = decide(&rules, role(EXCHANGE_ADMIN)).await;
    assert_eq!(colleague.outcome, Outcome::AutoApproved);
    assert_eq!(colleague.guards.len(), 1);
    assert_eq!(
        serde_json::to_value(&colleague.guards[0]).unwrap()["effect"],
        "pass"
    );
}

#[tokio::test]
async fn a_guard_applies_when_no_policy_matches_and_names_itself_first() {
    let (rules, _dir) = load(LEAVERS_GUARD);
    let decision = decide(&rules, with_principal(role(GLOBAL_ADMIN), LEAVER)).await;
    assert_eq!(decision.outcome, Outcome::Denied);
    assert!(decision.policy.is_none());
    assert!(
        decision.reasons[0].contains("leavers-are-denied"),
        "{:?}",
        decision.reasons
    );
    assert!(decision.reasons[1].contains("no pimgate policy covers"));
}

#[tokio::test]
async fn guards_skip_deactivations_unless_they_name_them() {
    let yaml = format!(
        "{LEAVERS_GUARD}
  - name: frozen-tenant
    match: {{ actions: [selfDeactivate] }}
    decide: Denied
    reason: the tenant is frozen.
policies:
  - name: deactivation-always-allowed
    match: {{ actions: [selfDeactivate, selfRenew] }}
    decide: Approved
    reason: giving back is welcome.
"
    );
    let (rules, _dir) = load(&yaml);
    let deactivate = decide(
        &rules,
        with_action(
            with_principal(role(GLOBAL_ADMIN), LEAVER),
            Action::SelfDeactivate,
        ),
    )
    .await;
    let applied: Vec<&str> = deactivate.guards.iter().map(|g| g.name.as_str()).collect();
    assert_eq!(
        applied,
        ["frozen-tenant"],
        "the leavers guard has no `actions`"
    );
    assert_eq!(deactivate.outcome, Outcome::Denied);

    let renew = decide(
        &rules,
        with_action(
            with_principal(role(GLOBAL_ADMIN), LEAVER),
            Action::SelfRenew,
        ),
    )
    .await;
    assert_eq!(
        renew.outcome,
        Outcome::Denied,
        "renewals grant access: guarded by default"
    );
    assert_eq!(renew.guards[0].name, "leavers-are-denied");
}

#[tokio::test]
async fn a_guard_check_that_cannot_be_evaluated_denies_or_caps_as_on_error_says() {
    // No Graph connector: the check reports "could not be evaluated", as an outage would.
    let rules_for = |on_error: &str| {
        format!(
            "
guards:
  - name: directory-says-enabled
    require:
      - hr: {{ source: graph }}
    on_error: {on_error}
policies:
  - name: exchange-auto
    match: {{ roles: [Exchange Administrator] }}
    auto_approve:
      - duration: {{ max: PT2H }}
"
        )
    };
    let (deny, _dir) = load(&rules_for("deny"));
    let denied = decide(&deny, role(EXCHANGE_ADMIN)).await;
    assert_eq!(denied.outcome, Outcome::Denied, "{:?}", denied.reasons);
    assert!(denied.reasons[0].contains("not a finding against you"));

    let (approve, _dir) = load(&rules_for("approve"));
    let capped = decide(&approve, role(EXCHANGE_ADMIN)).await;
    assert_eq!(
        capped.outcome,
        Outcome::Approved,
        "an un-evaluated guard check never vouches for skipping a human: {:?}",
        capped.reasons
    );
    assert!(capped.reasons[0].contains("directory-says-enabled"));
}

#[tokio::test]
async fn a_guard_whose_when_cannot_be_evaluated_denies() {
    let yaml = "
guards:
  - name: odd-condition
    when: 'request.no_such_field == 1'
    decide: Denied
    reason: never shown.
policies:
  - name: all
    decide: Approved
    reason: fine.
";
    let (rules, _dir) = load(yaml);
    let decision = decide(&rules, role(EXCHANGE_ADMIN)).await;
    assert_eq!(decision.outcome, Outcome::Denied);
    assert!(
        decision.reasons[0].contains("condition of guard 'odd-condition'"),
        "{:?}",
        decision.reasons
    );
}

#[tokio::test]
async fn a_guard_whose_when_is_false_does_not_apply() {
    let yaml = "
guards:
  - name: only-long-ones
    when: 'request.duration > duration(\"4h\")'
    decide: Denied
    reason: too long.
policies:
  - name: all
    decide: Approved
    reason: fine.
";
    let (rules, _dir) = load(yaml);
    let decision = decide(&rules, role(EXCHANGE_ADMIN)).await;
    assert_eq!(decision.outcome, Outcome::Approved);
    assert!(decision.guards.is_empty());
    let not_applied = rules.guards_not_applied(&role(EXCHANGE_ADMIN), Stage::PreApproval, now());
    assert_eq!(not_applied[0].why, "`when` is false");
}

#[tokio::test]
async fn an_audit_guard_runs_and_is_recorded_but_never_changes_the_answer() {
    let yaml = "
guards:
  - name: rehearsal
    mode: audit
    require:
      - hr: { source: file, not_leaving_within: P14D }
policies:
  - name: all
    decide: Approved
    reason: fine.
";
    let (rules, _dir) = load(yaml);
    let decision = decide(&rules, with_principal(role(EXCHANGE_ADMIN), LEAVER)).await;
    assert_eq!(decision.outcome, Outcome::Approved);
    assert!(
        decision
            .reasons
            .iter()
            .all(|reason| !reason.contains("rehearsal"))
    );
    let recorded = serde_json::to_value(&decision.guards).unwrap();
    assert_eq!(recorded[0]["name"], "rehearsal");
    assert_eq!(recorded[0]["mode"], "audit");
    assert_eq!(recorded[0]["effect"], "deny");
    assert_eq!(recorded[0]["checks"][0]["kind"], "hr");
    assert_eq!(recorded[0]["checks"][0]["status"], "fail");
}

#[tokio::test]
async fn the_explanation_names_each_applied_guard_and_what_it_did() {
    let yaml = format!(
        "{LEAVERS_GUARD}
  - name: rehearsal
    mode: audit
    match: {{ principals: [{LEAVER}] }}
    decide: Denied
    reason: rehearsed.
policies:
  - name: all
    decide: Approved
    reason: fine.
"
    );
    let (rules, _dir) = load(&yaml);
    let request = with_principal(role(EXCHANGE_ADMIN), LEAVER);
    let decision = decide(&rules, request.clone()).await;
    let text = pimgate::cli::explain(&decision, &request, false);
    assert!(text.contains("Guards"), "{text}");
    assert!(text.contains("leavers-are-denied: DENY"), "{text}");
    assert!(text.contains("rehearsal: would DENY (audit mode"), "{text}");
    assert!(
        text.contains("guard `leavers-are-denied`: `hr` must pass"),
        "{text}"
    );
}

// ---- loading -----------------------------------------------------------------------------------

#[test]
fn a_guard_can_never_approve() {
    let problems = refused(
        "
guards:
  - name: generous
    decide: Approved
    reason: ok.
  - name: sneaky
    require:
      - duration: { max: PT1H }
    auto_approve:
      - duration: { max: PT1H }
",
    );
    let decide = error_at(&problems, "guards[0].decide");
    assert!(decide.message.contains("can only deny"), "{decide}");
    assert!(decide.fix.contains("decide: Denied"), "{decide}");
    let auto = error_at(&problems, "guards[1].auto_approve");
    assert!(auto.fix.contains("policy"), "{auto}");
    assert_eq!(auto.line, Some(9), "{auto}");
}

#[test]
fn a_guard_named_like_a_policy_is_an_error() {
    let problems = refused(
        "
policies:
  - name: leavers
    decide: Denied
    reason: no.
guards:
  - name: Leavers
    decide: Denied
    reason: no.
",
    );
    let clash = error_at(&problems, "guards[0].name");
    assert!(
        clash.message.contains("already used by a policy"),
        "{clash}"
    );
}

#[test]
fn a_guard_no_request_can_match_is_an_error_with_a_fix() {
    for contradiction in [
        "{ roles: [Exchange Administrator], groups: [bbbbbbbb-0000-4000-8000-000000000002] }",
        "{ tiers: [Critical], resource_types: [azureResources] }",
        "{ roles: [Exchange Administrator], tiers: [Critical] }",
        "{ access: [owner], scopes: [/subscriptions/x/*] }",
    ] {
        let problems = refused(&format!(
            "guards:\n  - name: never\n    match: {contradiction}\n    decide: Denied\n    reason: no.\n"
        ));
        let never = error_at(&problems, "guards[0].match");
        assert!(
            never.message.contains("can never apply"),
            "{contradiction}: {never}"
        );
        assert!(!never.fix.is_empty());
    }
}

#[test]
fn a_guard_that_could_never_deny_or_has_policy_keys_is_refused() {
    let problems = refused(
        "
guards:
  - name: empty
  - name: both
    decide: Denied
    reason: no.
    require:
      - duration: { max: PT1H }
  - name: typo
    requir:
      - duration: { max: PT1H }
    allow_auto_approve_on_critical: true
",
    );
    error_at(&problems, "guards[0].require");
    error_at(&problems, "guards[1].decide");
    let typo = error_at(&problems, "guards[2].requir");
    assert!(typo.fix.contains("require"), "{typo}");
    error_at(&problems, "guards[2].allow_auto_approve_on_critical");
}

#[test]
fn a_guards_match_defaults_to_the_actions_that_grant_or_extend_access() {
    let (rules, _dir) = load("guards:\n  - name: g\n    decide: Denied\n    reason: no.\n");
    let mut actions = rules.guards[0].matcher.actions.clone();
    actions.sort();
    assert_eq!(
        actions,
        [
            "adminassign",
            "adminextend",
            "adminrenew",
            "adminupdate",
            "selfactivate",
            "selfextend",
            "selfrenew"
        ]
    );
}

// ---- `rules test` --------------------------------------------------------------------------------

#[tokio::test]
async fn a_test_case_can_expect_a_guard_and_fails_when_it_passed_or_did_not_apply() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("rules.yaml"),
        "
guards:
  - name: no-exchange
    match: { roles: [Exchange Administrator] }
    decide: Denied
    reason: Exchange is frozen.
  - name: short-only
    require:
      - duration: { max: PT2H }
policies:
  - name: all
    decide: Approved
    reason: fine.
",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("rules.test.yaml"),
        "
cases:
  - name: exchange is denied by the guard
    now: '2026-11-24T10:00:00Z'
    request: { role: Exchange Administrator, duration: PT1H }
    expect: { outcome: Denied, policy: all, guard: no-exchange, reason_contains: frozen }
  - name: a guard that passed
    now: '2026-11-24T10:00:00Z'
    request: { role: Helpdesk Administrator, duration: PT1H }
    expect: { outcome: Approved, guard: short-only }
  - name: a guard that did not apply
    now: '2026-11-24T10:00:00Z'
    request: { role: Helpdesk Administrator, duration: PT1H }
    expect: { outcome: Approved, guard: [no-exchange] }
",
    )
    .unwrap();
    let report = pimgate::workbench::testing::run_tests(dir.path())
        .await
        .unwrap_or_else(|problems| panic!("{}", render(&problems)));
    assert_eq!((report.passed, report.failed), (1, 2), "{report}");
    assert!(
        report.failures[0]
            .2
            .contains("guard `short-only` applied but passed")
    );
    assert!(
        report.failures[1]
            .2
            .contains("guard `no-exchange` did not apply")
    );
}

#[test]
fn the_shipped_rules_keep_leavers_and_break_glass_in_guards() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let loaded = pimgate::rules::load(&root.join("rules")).unwrap();
    let guards: Vec<&str> = loaded.guards.iter().map(|g| g.name.as_str()).collect();
    assert!(
        guards.contains(&"break-glass-never-through-pim"),
        "{guards:?}"
    );
    assert!(
        guards.contains(&"leavers-and-disabled-accounts"),
        "{guards:?}"
    );
    assert!(
        loaded
            .policies
            .iter()
            .all(|policy| policy.require.iter().all(|check| check.kind != "hr")),
        "the leaver check lives in one guard, not in each policy"
    );
}
