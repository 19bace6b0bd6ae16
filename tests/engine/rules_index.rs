//! The policy index against the scan of every policy: random rule sets and requests must select the
//! same policy, with the same shadows, and the index's passed-over list must be a part of the full
//! explanation; plus the edge cases one by one.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use chrono::{DateTime, Utc};
use pimgate::decision::SkippedPolicy;
use pimgate::payload::{Action, ActivationRequest, GroupAccess, Stage};
use pimgate::rules::{RuleSet, Selection, load};
use proptest::prelude::*;
use proptest::test_runner::Config;

use crate::support::rules as common_rules;
use common_rules::{ALICE, CUSTOM_ROLE, EXCHANGE_ADMIN, GLOBAL_ADMIN, GROUP, azure, group, role};

const GROUPS: [&str; 2] = [GROUP, "bbbbbbbb-0000-4000-8000-000000000003"];
const PRINCIPALS: [&str; 2] = [ALICE, "cccccccc-0000-4000-8000-000000000004"];

fn now() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(common_rules::NOW)
        .unwrap()
        .with_timezone(&Utc)
}

fn loaded(yaml: &str) -> RuleSet {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rules.yaml");
    std::fs::write(&path, yaml).unwrap();
    load(&path).unwrap_or_else(|problems| panic!("rules do not load: {problems:?}\n{yaml}"))
}

fn entra(id: &str, scope: &str) -> ActivationRequest {
    common_rules::with_scope(role(id), scope)
}

/// What a selection decides, in names: the deciding policy (or none, or a failed condition), the
/// shadows with whether their condition failed, and the passed-over list.
#[derive(Debug, PartialEq)]
struct Outcome {
    decided: String,
    shadows: Vec<(String, bool)>,
    skipped: Vec<SkippedPolicy>,
}

fn outcome(selection: Selection<'_>) -> Outcome {
    let (decided, shadows) = match &selection {
        Selection::Matched {
            policy, shadows, ..
        } => (format!("matched {}", policy.name), shadows),
        Selection::NoMatch { shadows, .. } => ("no match".to_string(), shadows),
        Selection::ConditionError {
            policy, shadows, ..
        } => (format!("condition error in {}", policy.name), shadows),
    };
    let shadows = shadows
        .iter()
        .map(|shadow| (shadow.policy.name.clone(), shadow.condition_error.is_some()))
        .collect();
    Outcome {
        decided,
        shadows,
        skipped: selection.into_skipped(),
    }
}

fn is_subsequence(part: &[SkippedPolicy], whole: &[SkippedPolicy]) -> bool {
    let mut rest = whole.iter();
    part.iter().all(|wanted| rest.any(|entry| entry == wanted))
}

/// Selects through the index and by the full scan at every stage, asserts they agree, and returns
/// the indexed one at the pre-approval stage.
fn select_both(rules: &RuleSet, request: &ActivationRequest) -> Outcome {
    let [pre_approval, _] = Stage::ALL.map(|stage| {
        let indexed = outcome(rules.select(request, stage, now()));
        let scanned = outcome(rules.select_explained(request, stage, now()));
        assert_eq!(
            indexed.decided, scanned.decided,
            "deciding policy at {stage}"
        );
        assert_eq!(indexed.shadows, scanned.shadows, "shadows at {stage}");
        assert!(
            is_subsequence(&indexed.skipped, &scanned.skipped),
            "indexed passed-over {:?} is not part of the explanation {:?}",
            indexed.skipped,
            scanned.skipped
        );
        indexed
    });
    pre_approval
}

// ---- property: indexed select == scan ------------------------------------------------------

const ROLE_VALUES: [&str; 5] = [
    GLOBAL_ADMIN,
    EXCHANGE_ADMIN,
    CUSTOM_ROLE,
    "Exchange Administrator",
    "global administrator",
];
const SCOPE_VALUES: [&str; 9] = [
    "/",
    "/*",
    "/administrativeUnits/1",
    "/administrativeUnits/*",
    "/subscriptions/s1/*",
    "/SUBSCRIPTIONS/S1/resourceGroups/rg",
    "/subscriptions/s1",
    "/subscriptions/s1/resourceGroups/*",
    "/subscriptions/s2/*",
];
const WHEN_VALUES: [&str; 4] = [
    "request.duration <= duration(\"2h\")",
    "false",
    "request.no_such_field == 1",
    "request.tier == \"Critical\"",
];

fn pick(values: &'static [&'static str]) -> impl Strategy<Value = Vec<&'static str>> {
    proptest::sample::subsequence(values, 1..=values.len().min(3)).prop_shuffle()
}

fn optional<S: Strategy>(strategy: S) -> impl Strategy<Value = Option<S::Value>> {
    proptest::option::weighted(0.35, strategy)
}

/// One policy's YAML lines (without its name).
fn policy_strategy() -> impl Strategy<Value = String> {
    (
        (
            optional(pick(&ROLE_VALUES)),
            optional(pick(&["Critical", "High", "Low"])),
            optional(pick(&GROUPS)),
            optional(pick(&["member", "owner"])),
        ),
        (
            optional(pick(&["entraRoles", "entraGroups", "azureResources"])),
            optional(pick(&SCOPE_VALUES)),
            optional(pick(&["selfActivate", "selfExtend", "selfDeactivate"])),
            optional(pick(&PRINCIPALS)),
            optional(pick(&["pre_approval", "post_approval"])),
        ),
        optional(proptest::sample::select(&WHEN_VALUES[..])),
        any::<bool>(),
    )
        .prop_map(
            |(
                (roles, tiers, groups, access),
                (types, scopes, actions, principals, stages),
                when,
                audit,
            )| {
                let mut criteria = Vec::new();
                let fields = [
                    ("roles", roles),
                    ("tiers", tiers),
                    ("groups", groups),
                    ("access", access),
                    ("resource_types", types),
                    ("scopes", scopes),
                    ("actions", actions),
                    ("principals", principals),
                    ("stages", stages),
                ];
                for (key, values) in fields {
                    if let Some(values) = values {
                        let quoted: Vec<String> =
                            values.iter().map(|value| format!("'{value}'")).collect();
                        criteria.push(format!("{key}: [{}]", quoted.join(", ")));
                    }
                }
                let mut yaml = format!("    match: {{ {} }}\n", criteria.join(", "));
                if let Some(when) = when {
                    yaml.push_str(&format!("    when: '{}'\n", when.replace('\'', "''")));
                }
                if audit {
                    yaml.push_str("    mode: audit\n");
                }
                yaml.push_str("    decide: Approved\n    reason: ok\n");
                yaml
            },
        )
}

fn rules_strategy() -> impl Strategy<Value = String> {
    proptest::collection::vec(policy_strategy(), 1..12).prop_map(|policies| {
        let mut yaml = String::from("policies:\n");
        for (index, policy) in policies.iter().enumerate() {
            yaml.push_str(&format!("  - name: p{index}\n{policy}"));
        }
        yaml
    })
}

const REQUEST_SCOPES: [&str; 6] = [
    "/",
    "/administrativeUnits/1",
    "/subscriptions/s1",
    "/subscriptions/S1/resourceGroups/RG",
    "/subscriptions/s1/resourceGroups/rg/providers/x",
    "/subscriptions/s10",
];

fn request_strategy() -> impl Strategy<Value = ActivationRequest> {
    let role = proptest::sample::select(&[GLOBAL_ADMIN, EXCHANGE_ADMIN, CUSTOM_ROLE][..]);
    let scope = proptest::sample::select(&REQUEST_SCOPES[..]);
    let target = prop_oneof![
        (role.clone(), scope.clone()).prop_map(|(role, scope)| entra(&role.to_uppercase(), scope)),
        (role, scope).prop_map(|(role, scope)| azure(role, scope)),
        (
            proptest::sample::select(&GROUPS[..]),
            proptest::sample::select(&[GroupAccess::Member, GroupAccess::Owner][..])
        )
            .prop_map(|(id, access)| group(id, access)),
    ];
    let action = proptest::sample::select(
        &[
            Action::SelfActivate,
            Action::SelfExtend,
            Action::AdminAssign,
        ][..],
    );
    (
        target,
        action,
        proptest::sample::select(&PRINCIPALS[..]),
        1i64..4,
    )
        .prop_map(|(mut request, action, principal, hours)| {
            request.action = action;
            request.principal_id = principal.to_string();
            request.schedule.duration = Some(chrono::Duration::hours(hours));
            request
        })
}

proptest! {
    #![proptest_config(Config { cases: 256, ..Config::default() })]

    #[test]
    fn the_index_selects_what_a_scan_of_every_policy_selects(
        yaml in rules_strategy(),
        requests in proptest::collection::vec(request_strategy(), 1..8),
    ) {
        let rules = loaded(&yaml);
        for request in &requests {
            select_both(&rules, request);
        }
    }
}

// ---- edge cases ----------------------------------------------------------------------------

#[test]
fn a_catch_all_above_a_specific_policy_wins_through_the_index() {
    let rules = loaded(&format!(
        "policies:\n  - name: all\n    match: {{}}\n    decide: Denied\n    reason: frozen\n  - name: exchange\n    match: {{ roles: [{EXCHANGE_ADMIN}] }}\n    decide: Approved\n    reason: ok\n"
    ));
    let outcome = select_both(&rules, &entra(EXCHANGE_ADMIN, "/"));
    assert_eq!(outcome.decided, "matched all");
}

#[test]
fn a_specific_policy_above_the_catch_all_wins_and_other_roles_are_not_judged() {
    let rules = loaded(&format!(
        "policies:\n  - name: global\n    match: {{ roles: [{GLOBAL_ADMIN}] }}\n    decide: Denied\n    reason: no\n  - name: exchange\n    match: {{ roles: [{EXCHANGE_ADMIN}] }}\n    decide: Approved\n    reason: ok\n  - name: all\n    match: {{}}\n    decide: Denied\n    reason: no\n"
    ));
    let outcome = select_both(&rules, &entra(EXCHANGE_ADMIN, "/"));
    assert_eq!(outcome.decided, "matched exchange");
    assert!(
        outcome.skipped.is_empty(),
        "the index never judges another role's policy: {:?}",
        outcome.skipped
    );
    let explained = rules
        .select_explained(&entra(EXCHANGE_ADMIN, "/"), Stage::PreApproval, now())
        .into_skipped();
    assert_eq!(
        explained,
        [SkippedPolicy {
            policy: "global".to_string(),
            why: "role does not match".to_string()
        }]
    );
}

#[test]
fn a_scope_prefix_pattern_is_found_for_the_scope_itself_and_any_scope_below_it() {
    let rules = loaded(
        "policies:\n  - name: sub\n    match: { scopes: ['/subscriptions/S1/*'] }\n    decide: Approved\n    reason: ok\n",
    );
    for (scope, decided) in [
        ("/subscriptions/s1", "matched sub"),
        ("/subscriptions/s1/resourceGroups/rg", "matched sub"),
        (
            "/SUBSCRIPTIONS/S1/resourceGroups/rg/providers/x/y",
            "matched sub",
        ),
        ("/subscriptions/s10", "no match"),
        ("/subscriptions", "no match"),
    ] {
        assert_eq!(
            select_both(&rules, &azure(CUSTOM_ROLE, scope)).decided,
            decided,
            "{scope}"
        );
    }
}

#[test]
fn a_role_named_in_the_rules_is_found_by_its_id_in_any_letter_case() {
    let rules = loaded(
        "policies:\n  - name: exchange\n    match: { roles: [Exchange Administrator] }\n    decide: Approved\n    reason: ok\n",
    );
    for id in [EXCHANGE_ADMIN, &EXCHANGE_ADMIN.to_uppercase()] {
        assert_eq!(
            select_both(&rules, &entra(id, "/")).decided,
            "matched exchange"
        );
    }
    assert_eq!(
        select_both(&rules, &entra(GLOBAL_ADMIN, "/")).decided,
        "no match"
    );
}

#[test]
fn audit_policies_are_shadows_through_the_index_and_the_search_goes_on() {
    let rules = loaded(&format!(
        "policies:\n  - name: rehearsal\n    mode: audit\n    match: {{ roles: [{EXCHANGE_ADMIN}] }}\n    decide: Denied\n    reason: no\n  - name: other-rehearsal\n    mode: audit\n    match: {{ roles: [{GLOBAL_ADMIN}] }}\n    decide: Denied\n    reason: no\n  - name: all\n    match: {{}}\n    decide: Approved\n    reason: ok\n"
    ));
    let outcome = select_both(&rules, &entra(EXCHANGE_ADMIN, "/"));
    assert_eq!(outcome.decided, "matched all");
    assert_eq!(outcome.shadows, [("rehearsal".to_string(), false)]);
}

#[test]
fn a_when_that_fails_stops_the_search_through_the_index() {
    let rules = loaded(&format!(
        "policies:\n  - name: broken\n    match: {{ roles: [{EXCHANGE_ADMIN}] }}\n    when: 'request.no_such_field == 1'\n    decide: Approved\n    reason: ok\n  - name: all\n    match: {{}}\n    decide: Approved\n    reason: ok\n"
    ));
    assert_eq!(
        select_both(&rules, &entra(EXCHANGE_ADMIN, "/")).decided,
        "condition error in broken"
    );
    assert_eq!(
        select_both(&rules, &entra(GLOBAL_ADMIN, "/")).decided,
        "matched all"
    );
}

#[test]
fn a_catch_all_for_other_actions_is_judged_and_tiers_are_looked_up() {
    let rules = loaded(
        "policies:\n  - name: extend\n    match: { actions: [selfExtend] }\n    decide: Approved\n    reason: ok\n  - name: critical\n    match: { tiers: [Critical] }\n    decide: Denied\n    reason: no\n",
    );
    let outcome = select_both(&rules, &entra(GLOBAL_ADMIN, "/"));
    assert_eq!(outcome.decided, "matched critical");
    assert_eq!(
        outcome.skipped,
        [SkippedPolicy {
            policy: "extend".to_string(),
            why: "action does not match".to_string()
        }],
        "a catch-all is a candidate for every request, so the audit record names it"
    );
    assert_eq!(
        select_both(&rules, &entra(EXCHANGE_ADMIN, "/")).decided,
        "no match"
    );
}
