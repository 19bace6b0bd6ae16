//! Rule engine tests at the boundary: rule YAML in, `Decision` out. `check` is the only caller of
//! `rules::load` + `decision::evaluate`; validation cases go through `problems`.

#![allow(clippy::unwrap_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, Utc};
use pimgate::decision::{Decision, Outcome, evaluate};
use pimgate::payload::{Action, ActivationRequest, GroupAccess, Stage};
use pimgate::rules::load;
use pimgate::vocabulary::diagnostic::{Diagnostic, Severity};

use crate::support::rules as common_rules;
use common_rules::{
    BREAK_GLASS, CUSTOM_ROLE, EXCHANGE_ADMIN, GLOBAL_ADMIN, GROUP, NOW, azure, group, role,
    with_action, with_duration, with_principal, with_scope,
};

// ---- the one caller of the engine ----------------------------------------------------------

/// What a case expects: the outcome, the deciding policy (`None` = no policy), and a reason fragment.
struct Expected {
    outcome: Outcome,
    policy: Option<&'static str>,
    reason: Option<&'static str>,
}

fn decided(outcome: Outcome, policy: &'static str) -> Expected {
    Expected {
        outcome,
        policy: Some(policy),
        reason: None,
    }
}

fn rules_path(rules: &str, dir: &tempfile::TempDir) -> PathBuf {
    if !rules.contains('\n') {
        return Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/rules")
            .join(rules);
    }
    let path = dir.path().join("rules.yaml");
    std::fs::write(&path, rules).unwrap();
    path
}

/// Loads `rules` (inline YAML, or a file/folder under `tests/rules/`), evaluates `request` at `now`
/// and asserts the expectation; returns the decision for further assertions.
async fn check(rules: &str, request: ActivationRequest, now: &str, expected: Expected) -> Decision {
    let dir = tempfile::tempdir().unwrap();
    let path = rules_path(rules, &dir);
    let loaded = match load(&path) {
        Ok(loaded) => loaded,
        Err(problems) => panic!("rules do not load:\n{}", render(&problems)),
    };
    let now: DateTime<Utc> = DateTime::parse_from_rfc3339(now)
        .unwrap()
        .with_timezone(&Utc);
    let mut decision = evaluate(&loaded, &request, now, Duration::from_secs(5)).await;
    // The service lists only the passed-over policies its index could not rule out; the cases read
    // the full explanation `pimgate evaluate` prints, of which the service's list must be a part.
    let explained = loaded
        .select_explained(&request, Stage::PreApproval, now)
        .into_skipped();
    let mut rest = explained.iter();
    assert!(
        decision
            .skipped_policies
            .iter()
            .all(|entry| rest.any(|full| full == entry)),
        "service's passed-over list {:?} is not part of the explanation {explained:?}",
        decision.skipped_policies
    );
    decision.skipped_policies = explained;
    assert_eq!(
        decision.outcome, expected.outcome,
        "outcome; reasons: {:?}",
        decision.reasons
    );
    assert_eq!(
        decision.policy.as_deref(),
        expected.policy,
        "deciding policy; skipped: {:?}",
        decision.skipped_policies
    );
    if let Some(fragment) = expected.reason {
        assert!(
            decision
                .reasons
                .iter()
                .any(|reason| reason.contains(fragment)),
            "no reason contains {fragment:?}: {:?}",
            decision.reasons
        );
    }
    decision
}

/// Loads `rules` expecting failure; returns every problem.
fn problems(rules: &str) -> Vec<Diagnostic> {
    let dir = tempfile::tempdir().unwrap();
    match load(&rules_path(rules, &dir)) {
        Ok(_) => panic!("rules loaded but should not have:\n{rules}"),
        Err(problems) => problems,
    }
}

fn render(problems: &[Diagnostic]) -> String {
    problems
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

fn skipped_why(decision: &Decision, policy: &str) -> String {
    decision
        .skipped_policies
        .iter()
        .find(|skipped| skipped.policy == policy)
        .map(|skipped| skipped.why.clone())
        .unwrap_or_default()
}

// ---- selection ---------------------------------------------------------------------------------

const TWO_CATCH_ALLS: &str = "
policies:
  - name: exchange
    match: { roles: [29232cdf-9323-42fd-ade2-1d097af3e4de] }
    decide: Denied
    reason: exchange is frozen.
  - name: everything
    decide: Approved
    reason: fine.
";

#[tokio::test]
async fn the_first_matching_policy_decides_in_document_order() {
    check(
        TWO_CATCH_ALLS,
        role(EXCHANGE_ADMIN),
        NOW,
        decided(Outcome::Denied, "exchange"),
    )
    .await;
    let decision = check(
        TWO_CATCH_ALLS,
        role(CUSTOM_ROLE),
        NOW,
        decided(Outcome::Approved, "everything"),
    )
    .await;
    assert_eq!(skipped_why(&decision, "exchange"), "role does not match");
}

#[tokio::test]
async fn files_of_a_folder_are_read_in_file_name_order_and_test_files_are_skipped() {
    let unit = with_scope(role(CUSTOM_ROLE), "/administrativeUnits/1234");
    check("ordered", unit, NOW, decided(Outcome::Denied, "first-file")).await;
    check(
        "ordered",
        role(CUSTOM_ROLE),
        NOW,
        decided(Outcome::Approved, "second-file-catch-all"),
    )
    .await;
}

#[tokio::test]
async fn a_request_no_policy_matches_is_denied() {
    let rules = "
policies:
  - name: only-exchange
    match: { roles: [29232cdf-9323-42fd-ade2-1d097af3e4de] }
    require: []
";
    let expected = Expected {
        outcome: Outcome::Denied,
        policy: None,
        reason: Some("no pimgate policy covers"),
    };
    check(rules, role(CUSTOM_ROLE), NOW, expected).await;
}

#[tokio::test]
async fn extend_renew_and_deactivate_only_match_policies_that_name_them() {
    let rules = "
policies:
  - name: activations
    decide: Approved
    reason: activations are fine.
  - name: extensions
    match: { actions: [selfExtend, SelfRenew] }
    decide: Denied
    reason: no extensions.
";
    let extend = with_action(role(CUSTOM_ROLE), Action::SelfExtend);
    let decision = check(rules, extend, NOW, decided(Outcome::Denied, "extensions")).await;
    assert_eq!(
        skipped_why(&decision, "activations"),
        "action does not match"
    );
    check(
        rules,
        with_action(role(CUSTOM_ROLE), Action::SelfRenew),
        NOW,
        decided(Outcome::Denied, "extensions"),
    )
    .await;
    let deactivate = with_action(role(CUSTOM_ROLE), Action::SelfDeactivate);
    check(
        rules,
        deactivate,
        NOW,
        Expected {
            outcome: Outcome::Denied,
            policy: None,
            reason: None,
        },
    )
    .await;
}

#[tokio::test]
async fn decide_answers_with_its_reason_and_runs_no_checks() {
    let rules = "
policies:
  - name: break-glass
    match: { principals: [break-glass] }
    decide: Denied
    reason: Break-glass accounts never activate through PIM.
  - name: rest
    require: []
lists:
  break-glass: [0c2d8f4e-1111-4a2b-9c3d-5e6f7a8b9c0d]
";
    let expected = Expected {
        outcome: Outcome::Denied,
        policy: Some("break-glass"),
        reason: Some("Break-glass accounts never activate through PIM."),
    };
    let decision = check(
        rules,
        with_principal(role(CUSTOM_ROLE), BREAK_GLASS),
        NOW,
        expected,
    )
    .await;
    assert!(decision.checks.is_empty());
    let decision = check(
        rules,
        role(CUSTOM_ROLE),
        NOW,
        decided(Outcome::Approved, "rest"),
    )
    .await;
    assert_eq!(
        skipped_why(&decision, "break-glass"),
        "principal does not match"
    );
}

const WHEN_RULES: &str = r#"
policies:
  - name: short
    when: 'request.duration <= duration("2h") && request.has_duration'
    decide: Approved
    reason: short activations are fine.
  - name: evening
    when: 'now.getHours("Europe/Berlin") >= 18 && request.scope == "/"'
    decide: Denied
    reason: long evening activation.
  - name: rest
    decide: Denied
    reason: too long.
"#;

#[tokio::test]
async fn when_true_selects_and_when_false_falls_through() {
    check(
        WHEN_RULES,
        role(CUSTOM_ROLE),
        NOW,
        decided(Outcome::Approved, "short"),
    )
    .await;
    let long = with_duration(role(CUSTOM_ROLE), Some(chrono::Duration::hours(8)));
    let decision = check(
        WHEN_RULES,
        long.clone(),
        NOW,
        decided(Outcome::Denied, "evening"),
    )
    .await;
    assert_eq!(skipped_why(&decision, "short"), "`when` is false");
    check(
        WHEN_RULES,
        long,
        "2026-11-24T09:00:00+01:00",
        decided(Outcome::Denied, "rest"),
    )
    .await;
    let no_expiry = with_duration(role(CUSTOM_ROLE), None);
    check(
        WHEN_RULES,
        no_expiry,
        "2026-11-24T09:00:00+01:00",
        decided(Outcome::Denied, "rest"),
    )
    .await;
}

#[tokio::test]
async fn a_when_that_cannot_be_evaluated_denies_instead_of_falling_through() {
    for condition in [
        "request.no_such_field == 1",
        "request.justification",
        "1 / (request.justification.size() - request.justification.size()) == 1",
    ] {
        let rules = format!(
            "
policies:
  - name: broken
    when: '{condition}'
    decide: Denied
    reason: unused.
  - name: permissive
    decide: Approved
    reason: would be wrong to reach.
"
        );
        let expected = Expected {
            outcome: Outcome::Denied,
            policy: Some("broken"),
            reason: Some("could not be evaluated"),
        };
        check(&rules, role(CUSTOM_ROLE), NOW, expected).await;
    }
}

#[tokio::test]
async fn cel_sees_the_catalog_name_tier_and_ticket_of_the_request() {
    let rules = r#"
policies:
  - name: critical-with-servicenow
    when: 'request.tier == "Critical" && request.role_name == "Global Administrator" && request.ticket_system == "ServiceNow" && request.justification.contains(request.ticket_number)'
    decide: Approved
    reason: ok.
  - name: rest
    decide: Denied
    reason: no.
"#;
    check(
        rules,
        role(GLOBAL_ADMIN),
        NOW,
        decided(Outcome::Approved, "critical-with-servicenow"),
    )
    .await;
    check(
        rules,
        role(EXCHANGE_ADMIN),
        NOW,
        decided(Outcome::Denied, "rest"),
    )
    .await;
}

#[tokio::test]
async fn roles_match_by_catalog_name_in_any_case_or_by_guid() {
    let rules = "
policies:
  - name: by-name
    match: { roles: [global administrator] }
    decide: Denied
    reason: by name.
  - name: by-guid
    match: { roles: [AAAAAAAA-0000-4000-8000-000000000001] }
    decide: Approved
    reason: by guid.
";
    check(
        rules,
        role(GLOBAL_ADMIN),
        NOW,
        decided(Outcome::Denied, "by-name"),
    )
    .await;
    check(
        rules,
        role(CUSTOM_ROLE),
        NOW,
        decided(Outcome::Approved, "by-guid"),
    )
    .await;
    check(
        rules,
        azure(CUSTOM_ROLE, "/subscriptions/s1"),
        NOW,
        decided(Outcome::Approved, "by-guid"),
    )
    .await;
}

#[tokio::test]
async fn tiers_match_the_catalog_tier_of_the_target_role() {
    let rules = "
policies:
  - name: critical
    match: { tiers: [Critical] }
    decide: Denied
    reason: critical.
  - name: high
    match: { tiers: [high, medium] }
    decide: Approved
    reason: high.
";
    check(
        rules,
        role(GLOBAL_ADMIN),
        NOW,
        decided(Outcome::Denied, "critical"),
    )
    .await;
    check(
        rules,
        role(EXCHANGE_ADMIN),
        NOW,
        decided(Outcome::Approved, "high"),
    )
    .await;
    let decision = check(
        rules,
        role(CUSTOM_ROLE),
        NOW,
        Expected {
            outcome: Outcome::Denied,
            policy: None,
            reason: None,
        },
    )
    .await;
    assert_eq!(skipped_why(&decision, "high"), "tier does not match");
}

#[tokio::test]
async fn scopes_match_exactly_or_by_prefix_ignoring_case() {
    let rules = "
policies:
  - name: prod
    match: { scopes: [/subscriptions/PROD/*] }
    decide: Denied
    reason: prod.
  - name: tenant
    match: { scopes: [/] }
    decide: Approved
    reason: tenant.
";
    check(
        rules,
        azure(CUSTOM_ROLE, "/subscriptions/prod/resourceGroups/rg1"),
        NOW,
        decided(Outcome::Denied, "prod"),
    )
    .await;
    check(
        rules,
        azure(CUSTOM_ROLE, "/subscriptions/prod"),
        NOW,
        decided(Outcome::Denied, "prod"),
    )
    .await;
    let decision = check(
        rules,
        azure(CUSTOM_ROLE, "/subscriptions/production"),
        NOW,
        Expected {
            outcome: Outcome::Denied,
            policy: None,
            reason: None,
        },
    )
    .await;
    assert_eq!(skipped_why(&decision, "prod"), "scope does not match");
    check(
        rules,
        role(CUSTOM_ROLE),
        NOW,
        decided(Outcome::Approved, "tenant"),
    )
    .await;
    let unit = with_scope(role(CUSTOM_ROLE), "/administrativeUnits/x");
    check(
        rules,
        unit,
        NOW,
        Expected {
            outcome: Outcome::Denied,
            policy: None,
            reason: None,
        },
    )
    .await;
}

#[tokio::test]
async fn groups_and_access_match_group_requests_only() {
    let rules = "
policies:
  - name: owners
    match: { groups: [bbbbbbbb-0000-4000-8000-000000000002], access: [owner] }
    decide: Denied
    reason: owners need a human.
  - name: members
    match: { groups: [BBBBBBBB-0000-4000-8000-000000000002] }
    decide: Approved
    reason: members ok.
";
    check(
        rules,
        group(GROUP, GroupAccess::Owner),
        NOW,
        decided(Outcome::Denied, "owners"),
    )
    .await;
    let decision = check(
        rules,
        group(GROUP, GroupAccess::Member),
        NOW,
        decided(Outcome::Approved, "members"),
    )
    .await;
    assert_eq!(
        skipped_why(&decision, "owners"),
        "group access does not match"
    );
    let decision = check(
        rules,
        role(CUSTOM_ROLE),
        NOW,
        Expected {
            outcome: Outcome::Denied,
            policy: None,
            reason: None,
        },
    )
    .await;
    assert_eq!(skipped_why(&decision, "members"), "group does not match");
}

#[tokio::test]
async fn principals_match_list_members_and_guids() {
    let rules = "
policies:
  - name: listed
    match: { principals: [oncall, 0C2D8F4E-1111-4A2B-9C3D-5E6F7A8B9C0D] }
    decide: Approved
    reason: listed.
lists:
  oncall: [cccccccc-0000-4000-8000-000000000003]
";
    check(
        rules,
        role(CUSTOM_ROLE),
        NOW,
        decided(Outcome::Approved, "listed"),
    )
    .await;
    check(
        rules,
        with_principal(role(CUSTOM_ROLE), BREAK_GLASS),
        NOW,
        decided(Outcome::Approved, "listed"),
    )
    .await;
    let other = with_principal(role(CUSTOM_ROLE), "dddddddd-0000-4000-8000-000000000004");
    check(
        rules,
        other,
        NOW,
        Expected {
            outcome: Outcome::Denied,
            policy: None,
            reason: None,
        },
    )
    .await;
}

#[tokio::test]
async fn resource_types_restrict_the_surface() {
    let rules = "
policies:
  - name: azure
    match: { resource_types: [azureResources] }
    decide: Approved
    reason: azure.
  - name: groups
    match: { resource_types: [EntraGroups] }
    decide: Denied
    reason: groups.
";
    check(
        rules,
        azure(CUSTOM_ROLE, "/subscriptions/s1"),
        NOW,
        decided(Outcome::Approved, "azure"),
    )
    .await;
    check(
        rules,
        group(GROUP, GroupAccess::Member),
        NOW,
        decided(Outcome::Denied, "groups"),
    )
    .await;
    let decision = check(
        rules,
        role(CUSTOM_ROLE),
        NOW,
        Expected {
            outcome: Outcome::Denied,
            policy: None,
            reason: None,
        },
    )
    .await;
    assert_eq!(
        skipped_why(&decision, "azure"),
        "resource type does not match"
    );
}

#[tokio::test]
async fn a_policy_with_no_checks_hands_the_request_to_human_approval() {
    let rules = "
policies:
  - name: humans-decide
    require: []
";
    check(
        rules,
        role(CUSTOM_ROLE),
        NOW,
        decided(Outcome::Approved, "humans-decide"),
    )
    .await;
}

// ---- load -------------------------------------------------------------------------------------

#[test]
fn a_policy_shadowed_by_a_broader_one_above_it_is_reported_unreachable() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rules.yaml");
    let cases = [
        // (rules, unreachable policy or none)
        (
            "policies:\n  - name: exchange\n    match: { roles: [Exchange Administrator] }\n    require: []\n  - name: exchange-tenant\n    match: { roles: [Exchange Administrator], scopes: [/] }\n    require: []\n",
            Some("exchange-tenant"),
        ),
        (
            "policies:\n  - name: exchange-tenant\n    match: { roles: [Exchange Administrator], scopes: [/] }\n    require: []\n  - name: exchange\n    match: { roles: [Exchange Administrator] }\n    require: []\n",
            None,
        ),
        (
            "policies:\n  - name: two-roles\n    match: { roles: [Exchange Administrator, SharePoint Administrator] }\n    require: []\n  - name: one-role\n    match: { roles: [SharePoint Administrator] }\n    require: []\n",
            Some("one-role"),
        ),
        (
            "policies:\n  - name: conditional\n    match: { roles: [Exchange Administrator] }\n    when: 'request.duration <= duration(\"1h\")'\n    require: []\n  - name: exchange\n    match: { roles: [Exchange Administrator] }\n    require: []\n",
            None,
        ),
        (
            "policies:\n  - name: activations\n    match: { roles: [Exchange Administrator] }\n    require: []\n  - name: extensions\n    match: { roles: [Exchange Administrator], actions: [selfExtend] }\n    require: []\n",
            None,
        ),
    ];
    for (rules, unreachable) in cases {
        std::fs::write(&path, rules).unwrap();
        let loaded = load(&path).unwrap_or_else(|problems| panic!("{}", render(&problems)));
        let reported: Vec<&str> = loaded
            .warnings
            .iter()
            .filter(|warning| warning.message.contains("unreachable"))
            .map(|warning| warning.message.as_str())
            .collect();
        match unreachable {
            Some(name) => assert!(
                reported.len() == 1 && reported[0].contains(&format!("`{name}` is unreachable")),
                "{rules}: {reported:?}"
            ),
            None => assert!(reported.is_empty(), "{rules}: {reported:?}"),
        }
    }
}

#[test]
fn the_revision_changes_with_the_rules_and_warnings_are_kept() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rules.yaml");
    std::fs::write(
        &path,
        "policies:\n  - name: a\n    require: []\n  - name: b\n    require: []\n",
    )
    .unwrap();
    let first = load(&path).unwrap();
    assert_eq!(first.revision.len(), 64);
    assert_eq!(first.policies.len(), 2);
    assert_eq!(
        first.warnings.len(),
        1,
        "b is unreachable: {:?}",
        first.warnings
    );
    assert!(
        first
            .warnings
            .iter()
            .all(|warning| warning.severity == Severity::Warning)
    );
    assert!(first.warnings.first().is_some_and(
        |warning| warning.message.contains("unreachable") && warning.key == "policies[1]"
    ));
    std::fs::write(&path, "policies:\n  - name: a\n    require: []\n").unwrap();
    let second = load(&path).unwrap();
    assert_ne!(first.revision, second.revision);
    assert!(second.warnings.is_empty());
}

#[test]
fn an_empty_rule_set_loads_with_a_warning() {
    let loaded = {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rules.yaml");
        std::fs::write(&path, "# nothing yet\n").unwrap();
        load(&path).unwrap()
    };
    assert!(loaded.policies.is_empty());
    assert!(
        loaded
            .warnings
            .iter()
            .any(|warning| warning.message.contains("no policies"))
    );
}

/// (rule YAML, key path of the problem, fragment of its message).
const BROKEN: &[(&str, &str, &str)] = &[
    (
        "policies:\n  - name: a\n    requre: []\n",
        "policies[0].requre",
        "unknown key `requre`",
    ),
    ("policys: []\n", "policys", "unknown key `policys`"),
    (
        "policies:\n  - name: a\n    match: { role: [x] }\n",
        "policies[0].match.role",
        "unknown key `role`",
    ),
    (
        "policies:\n  - description: no name\n    require: []\n",
        "policies[0].name",
        "no `name`",
    ),
    (
        "policies:\n  - name: a\n    require: []\n  - name: A\n    require: []\n",
        "policies[1].name",
        "already used",
    ),
    (
        "policies:\n  - name: a\n    decide: Denied\n    reason: r\n    require: []\n",
        "policies[0].decide",
        "never run",
    ),
    (
        "policies:\n  - name: a\n    decide: Denied\n",
        "policies[0].reason",
        "needs a `reason`",
    ),
    (
        "policies:\n  - name: a\n    decide: Maybe\n    reason: r\n",
        "policies[0].decide",
        "unknown outcome `Maybe`",
    ),
    (
        "policies:\n  - name: a\n    decide: AutoApproved\n    reason: r\n",
        "policies[0].decide",
        "Critical-tier",
    ),
    (
        "policies:\n  - name: a\n    match: { tiers: [Critical, High] }\n    auto_approve:\n      - duration: { max: PT1H }\n",
        "policies[0].auto_approve",
        "Critical-tier",
    ),
    (
        "policies:\n  - name: a\n    match: { roles: [Global Admin] }\n    require: []\n",
        "policies[0].match.roles[0]",
        "unknown role `Global Admin`",
    ),
    (
        "policies:\n  - name: a\n    match: { tiers: [Severe] }\n    require: []\n",
        "policies[0].match.tiers[0]",
        "unknown tier",
    ),
    (
        "policies:\n  - name: a\n    match: { groups: [not-a-guid] }\n    require: []\n",
        "policies[0].match.groups[0]",
        "not a GUID",
    ),
    (
        "policies:\n  - name: a\n    match: { principals: [oncal] }\n    require: []\nlists:\n  oncall: []\n",
        "policies[0].match.principals[0]",
        "unknown list `oncal`",
    ),
    ("lists:\n  l: [nope]\n", "lists.l[0]", "not a GUID"),
    (
        "policies:\n  - name: a\n    when: 'request.tier =='\n    require: []\n",
        "policies[0].when",
        "does not parse",
    ),
    (
        "policies:\n  - name: a\n    require:\n      - horoscope: { sign: leo }\n",
        "policies[0].require[0]",
        "unknown variant `horoscope`",
    ),
    (
        "policies:\n  - name: a\n    require:\n      - duration: { maximum: PT1H }\n",
        "policies[0].require[0].duration.maximum",
        "unknown field `maximum`",
    ),
    (
        "policies:\n  - name: a\n    on_error: ignore\n    require: []\n",
        "policies[0].on_error",
        "unknown variant `ignore`",
    ),
    (
        "policies:\n  - name: a\n    match: { scopes: [subscriptions/x] }\n    require: []\n",
        "policies[0].match.scopes[0]",
        "not a scope pattern",
    ),
    (
        "policies:\n  - name: a\n    match: { roles: [] }\n    require: []\n",
        "policies[0].match.roles",
        "matches nothing",
    ),
    (
        "policies:\n  - name: a\n    match: { access: [admin] }\n    require: []\n",
        "policies[0].match.access[0]",
        "unknown group access",
    ),
    (
        "policies:\n  - name: a\n    match: { resource_types: [azureRoles] }\n    require: []\n",
        "policies[0].match.resource_types[0]",
        "unknown resource type",
    ),
    (
        "policies:\n  - name: a\n    reason: why\n    require: []\n",
        "policies[0].reason",
        "only applies with `decide`",
    ),
    (
        "policies:\n  - name: a\n  require: []\n",
        "",
        "not valid YAML",
    ),
    ("policies: {}\n", "policies", "must be a list"),
];

#[test]
fn each_broken_rule_is_reported_with_its_key_and_a_message() {
    for (yaml, key, fragment) in BROKEN {
        let problems = problems(yaml);
        assert!(
            problems
                .iter()
                .any(|problem| problem.severity == Severity::Error
                    && problem.key == *key
                    && problem.message.contains(fragment)),
            "for\n{yaml}\nexpected an error at `{key}` containing {fragment:?}, got:\n{}",
            render(&problems)
        );
        assert!(
            problems
                .iter()
                .all(|problem| problem.file.ends_with("rules.yaml")),
            "{}",
            render(&problems)
        );
    }
}

#[test]
fn every_problem_of_a_file_is_reported_at_once_with_its_line() {
    let yaml = "\
policies:
  - name: first
    requre: []
  - name: second
    match:
      tiers: [Severe]
    require: []
  - name: third
    decide: Denied
";
    let problems = problems(yaml);
    let errors: Vec<(&str, Option<usize>)> = problems
        .iter()
        .filter(|problem| problem.severity == Severity::Error)
        .map(|problem| (problem.key.as_str(), problem.line))
        .collect();
    assert_eq!(
        errors,
        vec![
            ("policies[0].requre", Some(3)),
            ("policies[1].match.tiers[0]", Some(6)),
            ("policies[2].reason", Some(8))
        ],
        "{}",
        render(&problems)
    );
}

#[test]
fn problems_of_several_files_are_all_reported_and_global_names_must_be_unique() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("a.yaml"),
        "policies:\n  - name: x\n    bogus: 1\nlists:\n  l: []\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("b.yml"),
        "policies:\n  - name: x\n    require: []\nlists:\n  l: []\n",
    )
    .unwrap();
    let problems = match load(dir.path()) {
        Ok(_) => panic!("should not load"),
        Err(problems) => problems,
    };
    let found: Vec<(String, String)> = problems
        .iter()
        .map(|problem| {
            (
                problem
                    .file
                    .file_name()
                    .unwrap()
                    .to_string_lossy()
                    .into_owned(),
                problem.key.clone(),
            )
        })
        .collect();
    for expected in [
        ("a.yaml", "policies[0].bogus"),
        ("b.yml", "lists.l"),
        ("b.yml", "policies[0].name"),
    ] {
        assert!(
            found
                .iter()
                .any(|(file, key)| file == expected.0 && key == expected.1),
            "missing {expected:?} in {found:?}"
        );
    }
}

#[test]
fn auto_approval_of_critical_roles_needs_explicit_consent() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rules.yaml");
    let consented = "
policies:
  - name: exchange-only
    match: { roles: [Exchange Administrator] }
    decide: AutoApproved
    reason: exchange is low risk here.
  - name: groups-only
    match: { resource_types: [entraGroups] }
    auto_approve:
      - duration: { max: PT1H }
  - name: everything
    decide: AutoApproved
    reason: lab tenant.
    allow_auto_approve_on_critical: true
";
    std::fs::write(&path, consented).unwrap();
    let loaded = load(&path).unwrap_or_else(|problems| panic!("{}", render(&problems)));
    assert_eq!(loaded.policies.len(), 3);
}

// ---- shipped rules and the test runner --------------------------------------------------------

#[test]
fn the_shipped_example_rules_load_without_problems() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let settings =
        pimgate::settings::Settings::load_with_env(Some(&root.join("config/example.toml")), None)
            .expect("example config");
    let context = pimgate::connectors::BuildContext {
        http: reqwest::Client::new(),
        tenant_id: settings.auth.tenant_id.clone(),
    };
    let connectors = pimgate::connectors::Connectors::build(&settings.connectors, &context)
        .expect("example connectors");
    let loaded = pimgate::rules::load_with(&root.join("rules"), &connectors)
        .unwrap_or_else(|problems| panic!("{}", render(&problems)));
    assert!(loaded.warnings.is_empty(), "{}", render(&loaded.warnings));
    let names: Vec<&str> = loaded
        .policies
        .iter()
        .map(|policy| policy.name.as_str())
        .collect();
    assert_eq!(names.first(), Some(&"deactivation-always-allowed"));
    assert_eq!(names.last(), Some(&"everyone-else"));
    let guards: Vec<&str> = loaded
        .guards
        .iter()
        .map(|guard| guard.name.as_str())
        .collect();
    assert_eq!(guards.first(), Some(&"break-glass-never-through-pim"));
}

const RUNNER_RULES: &str = "
policies:
  - name: exchange-frozen
    match: { roles: [29232cdf-9323-42fd-ade2-1d097af3e4de] }
    decide: Denied
    reason: Exchange changes are frozen this week.
  - name: rest
    decide: Approved
    reason: fine.
";

const RUNNER_CASES: &str = "
cases:
  - name: exchange is frozen
    now: '2026-11-24T10:00:00Z'
    request: { role: 29232cdf-9323-42fd-ade2-1d097af3e4de, duration: PT1H }
    expect: { outcome: Denied, policy: exchange-frozen, reason_contains: [frozen, this week] }
  - name: a wrong expectation fails
    now: '2026-11-24T10:00:00Z'
    request: { group: bbbbbbbb-0000-4000-8000-000000000002, access: owner }
    expect: { outcome: AutoApproved, policy: rest }
";

#[tokio::test]
async fn the_test_runner_counts_passing_and_failing_cases_and_ends_with_the_totals() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("rules.yaml"), RUNNER_RULES).unwrap();
    std::fs::write(dir.path().join("rules.test.yaml"), RUNNER_CASES).unwrap();
    for path in [dir.path().to_path_buf(), dir.path().join("rules.yaml")] {
        let report = pimgate::workbench::testing::run_tests(&path)
            .await
            .unwrap_or_else(|problems| panic!("{}", render(&problems)));
        assert_eq!((report.passed, report.failed), (1, 1));
        let (name, file, explanation) = report.failures.first().unwrap();
        assert_eq!(name, "a wrong expectation fails");
        assert!(file.ends_with("rules.test.yaml"));
        assert!(
            explanation.contains("expected AutoApproved, got Approved"),
            "{explanation}"
        );
        let printed = report.to_string();
        assert_eq!(
            printed.lines().last(),
            Some("1 passed, 1 failed"),
            "{printed}"
        );
        assert!(printed.contains("exchange is frozen"));
    }
}

#[tokio::test]
async fn a_broken_test_case_is_a_problem_not_a_failure() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("rules.yaml"), RUNNER_RULES).unwrap();
    let cases = "cases:\n  - name: x\n    now: yesterday\n    request: { role: 29232cdf-9323-42fd-ade2-1d097af3e4de }\n    expect: { outcome: Denied }\n";
    std::fs::write(dir.path().join("a.test.yaml"), cases).unwrap();
    let problems = match pimgate::workbench::testing::run_tests(dir.path()).await {
        Ok(report) => panic!("should not run: {report}"),
        Err(problems) => problems,
    };
    assert!(
        problems
            .iter()
            .any(|problem| problem.key == "cases[0].now" && problem.message.contains("RFC 3339")),
        "{}",
        render(&problems)
    );
    std::fs::write(
        dir.path().join("a.test.yaml"),
        "cases:\n  - name: x\n    stubs: {}\n",
    )
    .unwrap();
    let problems = pimgate::workbench::testing::run_tests(dir.path())
        .await
        .err()
        .unwrap();
    assert!(
        problems
            .iter()
            .any(|problem| problem.message.contains("unknown key `stubs`")),
        "{}",
        render(&problems)
    );
}

// ---- shadow mode (`mode: audit`) ------------------------------------------------------------

const SHADOW_BEFORE_ENFORCING: &str = "
policies:
  - name: stricter-durations
    mode: audit
    match: {}
    require:
      - duration: { max: PT30M }
  - name: frozen-rehearsal
    mode: audit
    match: {}
    decide: Denied
    reason: changes are frozen.
  - name: everyone
    mode: enforce
    match: {}
    require:
      - duration: { max: PT4H }
";

#[tokio::test]
async fn a_shadow_policy_records_its_would_be_decision_while_the_next_policy_decides() {
    let decision = check(
        SHADOW_BEFORE_ENFORCING,
        role(GLOBAL_ADMIN),
        NOW,
        decided(Outcome::Approved, "everyone"),
    )
    .await;
    assert!(
        decision
            .reasons
            .iter()
            .all(|reason| !reason.contains("PT30M") && !reason.contains("frozen")),
        "shadow reasons leak into the answer: {:?}",
        decision.reasons
    );
    let shadows: Vec<(&str, Outcome)> = decision
        .shadow
        .iter()
        .map(|shadow| (shadow.policy.as_str(), shadow.outcome))
        .collect();
    assert_eq!(
        shadows,
        [
            ("stricter-durations", Outcome::Denied),
            ("frozen-rehearsal", Outcome::Denied)
        ]
    );
    let stricter = &decision.shadow[0];
    assert!(
        stricter
            .reasons
            .iter()
            .any(|reason| reason.contains("PT30M")),
        "{:?}",
        stricter.reasons
    );
    assert_eq!(stricter.checks.len(), 1, "the shadow's checks ran");
    assert_eq!(
        decision.checks.len(),
        1,
        "the enforcing policy's checks only"
    );
    assert!(
        decision.skipped_policies.is_empty(),
        "a matching shadow is not a skipped policy: {:?}",
        decision.skipped_policies
    );
}

#[tokio::test]
async fn a_shadow_catch_all_does_not_make_the_policies_after_it_unreachable() {
    let dir = tempfile::tempdir().unwrap();
    let loaded = load(&rules_path(SHADOW_BEFORE_ENFORCING, &dir))
        .unwrap_or_else(|problems| panic!("{}", render(&problems)));
    assert!(loaded.warnings.is_empty(), "{}", render(&loaded.warnings));
}

#[tokio::test]
async fn a_shadow_policy_matching_alone_leaves_the_request_uncovered_and_denied() {
    let rules = "
policies:
  - name: approve-everything-rehearsal
    mode: audit
    match: {}
    decide: Approved
    reason: would approve.
";
    let expected = Expected {
        outcome: Outcome::Denied,
        policy: None,
        reason: Some("no pimgate policy covers"),
    };
    let decision = check(rules, role(GLOBAL_ADMIN), NOW, expected).await;
    assert_eq!(decision.shadow.len(), 1);
    assert_eq!(decision.shadow[0].policy, "approve-everything-rehearsal");
    assert_eq!(decision.shadow[0].outcome, Outcome::Approved);
}

#[tokio::test]
async fn a_shadow_policy_whose_condition_breaks_records_a_denial_and_does_not_stop_selection() {
    let rules = "
policies:
  - name: broken-rehearsal
    mode: audit
    when: 'request.no_such_field == 1'
    decide: Approved
    reason: unused.
  - name: everyone
    decide: Approved
    reason: fine.
";
    let decision = check(
        rules,
        role(CUSTOM_ROLE),
        NOW,
        decided(Outcome::Approved, "everyone"),
    )
    .await;
    assert_eq!(decision.shadow.len(), 1);
    assert_eq!(decision.shadow[0].outcome, Outcome::Denied);
    assert!(
        decision.shadow[0].reasons[0].contains("could not be evaluated"),
        "{:?}",
        decision.shadow[0].reasons
    );
}

#[tokio::test]
async fn a_shadow_policy_whose_match_or_condition_does_not_hold_records_nothing() {
    let rules = "
policies:
  - name: groups-rehearsal
    mode: audit
    match: { resource_types: [entraGroups] }
    decide: Denied
    reason: unused.
  - name: false-rehearsal
    mode: audit
    when: 'request.tier == \"Low\"'
    decide: Denied
    reason: unused.
  - name: everyone
    decide: Approved
    reason: fine.
";
    let decision = check(
        rules,
        role(GLOBAL_ADMIN),
        NOW,
        decided(Outcome::Approved, "everyone"),
    )
    .await;
    assert!(decision.shadow.is_empty(), "{:?}", decision.shadow);
    assert_eq!(decision.skipped_policies.len(), 2);
}

#[test]
fn a_shadow_policy_that_could_auto_approve_a_critical_role_does_not_load() {
    let found = problems(
        "
policies:
  - name: auto-everything-rehearsal
    mode: audit
    match: {}
    decide: AutoApproved
    reason: would skip the approver.
",
    );
    assert!(
        found
            .iter()
            .any(|problem| problem.key == "policies[0].decide"
                && problem.message.contains("Critical")),
        "{}",
        render(&found)
    );
}

#[test]
fn an_unknown_policy_mode_is_an_error_naming_both_modes() {
    let found = problems(
        "
policies:
  - name: typo
    mode: shadow
    decide: Approved
    reason: fine.
",
    );
    assert!(
        found
            .iter()
            .any(|problem| problem.key == "policies[0].mode" && problem.fix.contains("audit")),
        "{}",
        render(&found)
    );
}

// ---- stubbed facts in `rules test` ----------------------------------------------------------

const CHANGE_BOUND_RULES: &str = "
policies:
  - name: change-bound
    match: {}
    require:
      - itsm: { system: servicenow, states: [Implement] }
      - duration: { max: PT4H }
    on_error: approve
";

async fn run_cases(
    rules: &str,
    cases: &str,
) -> Result<pimgate::workbench::testing::TestReport, Vec<Diagnostic>> {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("rules.yaml"), rules).unwrap();
    std::fs::write(dir.path().join("rules.test.yaml"), cases).unwrap();
    pimgate::workbench::testing::run_tests(dir.path()).await
}

#[tokio::test]
async fn stubbed_itsm_facts_pass_fail_and_error_decide_as_the_upstream_would() {
    let cases = "
cases:
  - name: an implementing change approves
    now: '2026-11-24T10:00:00Z'
    request: { role: Exchange Administrator, duration: PT1H, ticket: CHG0031337 }
    facts: { itsm: pass }
    expect: { outcome: Approved, policy: change-bound, reason_contains: 2 of 2 required checks passed }
  - name: a closed ticket denies with the stubbed message
    now: '2026-11-24T10:00:00Z'
    request: { role: Exchange Administrator, duration: PT1H, ticket: CHG0031337 }
    facts: { itsm: { status: fail, message: ticket is closed } }
    expect: { outcome: Denied, policy: change-bound, reason_contains: [itsm, ticket is closed] }
  - name: ServiceNow down goes to human approval as on_error says
    now: '2026-11-24T10:00:00Z'
    request: { role: Exchange Administrator, duration: PT1H, ticket: CHG0031337 }
    facts: { itsm: error }
    expect: { outcome: Approved, policy: change-bound, reason_contains: [could not be evaluated, 'stubbed: the itsm system could not be reached'] }
  - name: a stub replaces only its own kind, the local checks still run
    now: '2026-11-24T10:00:00Z'
    request: { role: Exchange Administrator, duration: PT8H, ticket: CHG0031337 }
    facts: { itsm: pass }
    expect: { outcome: Denied, policy: change-bound, reason_contains: PT4H }
";
    let report = run_cases(CHANGE_BOUND_RULES, cases)
        .await
        .unwrap_or_else(|problems| panic!("{}", render(&problems)));
    assert_eq!((report.passed, report.failed), (4, 0), "{report}");
}

#[tokio::test]
async fn a_case_without_facts_still_has_no_upstream_to_ask() {
    // Without facts and without a configured connector the itsm check cannot run; a `pass`
    // expectation therefore fails, which proves facts, not some default, made the case above pass.
    let cases = "
cases:
  - name: without facts itsm is not evaluated
    now: '2026-11-24T10:00:00Z'
    request: { role: Exchange Administrator, duration: PT1H, ticket: CHG0031337 }
    expect: { outcome: Approved, reason_contains: 2 of 2 required checks passed }
";
    let report = run_cases(CHANGE_BOUND_RULES, cases)
        .await
        .unwrap_or_else(|problems| panic!("{}", render(&problems)));
    assert_eq!((report.passed, report.failed), (0, 1), "{report}");
    assert!(report.failures[0].2.contains("1 of 2"), "{report}");
}

#[tokio::test]
async fn facts_for_an_unknown_kind_or_status_are_problems_naming_the_key() {
    let cases = "
cases:
  - name: a local kind cannot be stubbed
    now: '2026-11-24T10:00:00Z'
    request: { role: Exchange Administrator, duration: PT1H }
    facts: { duration: pass, itsm: maybe }
    expect: { outcome: Approved }
";
    let problems = match run_cases(CHANGE_BOUND_RULES, cases).await {
        Ok(report) => panic!("should not run: {report}"),
        Err(problems) => problems,
    };
    let unknown = problems
        .iter()
        .find(|problem| problem.key == "cases[0].facts.duration")
        .unwrap_or_else(|| panic!("{}", render(&problems)));
    assert!(
        unknown.fix.contains("itsm, hr, oncall"),
        "{}",
        render(&problems)
    );
    assert!(
        problems
            .iter()
            .any(|problem| problem.key == "cases[0].facts.itsm" && problem.fix.contains("pass")),
        "{}",
        render(&problems)
    );
}

#[test]
fn policies_or_guards_written_as_anything_but_a_list_are_reported_with_what_was_found() {
    let problems =
        match pimgate::rules::load_str("rules.yaml", "policies:\n  name: x\nguards: just one\n") {
            Ok(_) => panic!("should not load"),
            Err(problems) => problems,
        };
    let found: Vec<(&str, &str)> = problems
        .iter()
        .filter(|problem| problem.severity == Severity::Error)
        .map(|problem| (problem.key.as_str(), problem.message.as_str()))
        .collect();
    assert_eq!(
        found,
        [
            ("policies", "`policies` must be a list, found a mapping"),
            ("guards", "`guards` must be a list, found a string"),
        ],
        "{}",
        render(&problems)
    );
}
