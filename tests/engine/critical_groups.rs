//! Groups that carry Critical roles (issue 11, item 6): declared under a top-level `groups:`, matched
//! by `tiers`, and never auto-approved without `allow_auto_approve_on_critical: true`.

#![allow(clippy::unwrap_used, clippy::panic)]

use std::path::Path;
use std::time::Duration;

use chrono::{DateTime, Utc};
use pimgate::decision::{Outcome, evaluate};
use pimgate::payload::GroupAccess;
use pimgate::rules::{RuleSet, load_str};
use pimgate::vocabulary::diagnostic::{Diagnostic, Severity};

use crate::support::rules as common_rules;
use common_rules::{GROUP, NOW, group};

const OTHER_GROUP: &str = "dddddddd-0000-4000-8000-000000000004";

fn loads(rules: &str) -> RuleSet {
    load_str("rules.yaml", rules).unwrap_or_else(|problems| panic!("{}", render(&problems)))
}

fn errors(rules: &str) -> Vec<Diagnostic> {
    match load_str("rules.yaml", rules) {
        Ok(_) => panic!("rules loaded but should not have:\n{rules}"),
        Err(problems) => problems
            .into_iter()
            .filter(|problem| problem.severity == Severity::Error)
            .collect(),
    }
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

fn critical_group_refused(problems: &[Diagnostic], key: &str) {
    let found = problems
        .iter()
        .find(|problem| problem.message.contains("declared Critical"))
        .unwrap_or_else(|| panic!("no critical-group problem in:\n{}", render(problems)));
    assert_eq!(found.key, key, "{found}");
    assert!(
        found.fix.contains("allow_auto_approve_on_critical: true"),
        "{found}"
    );
}

#[test]
fn a_policy_auto_approving_a_group_declared_critical_fails_to_load_with_a_fix() {
    let rules = format!(
        "
groups:
  {GROUP}: {{ holds: [Global Administrator] }}
policies:
  - name: admins-group
    match: {{ groups: [{GROUP}] }}
    decide: AutoApproved
    reason: fine.
"
    );
    critical_group_refused(&errors(&rules), "policies[0].decide");

    let consented = rules.replace(
        "    reason: fine.\n",
        "    reason: fine.\n    allow_auto_approve_on_critical: true\n",
    );
    loads(&consented);
}

#[test]
fn a_catch_all_over_groups_cannot_auto_approve_once_a_critical_group_is_declared() {
    let rules = format!(
        "
groups:
  {GROUP}: {{ tier: Critical }}
policies:
  - name: all-groups
    match: {{ resource_types: [entraGroups] }}
    auto_approve:
      - duration: {{ max: PT1H }}
"
    );
    critical_group_refused(&errors(&rules), "policies[0].auto_approve");

    // Restricted to other groups, or to roles, the policy provably cannot reach the Critical group.
    loads(&rules.replace(
        "{ resource_types: [entraGroups] }",
        &format!("{{ groups: [{OTHER_GROUP}] }}"),
    ));
    loads(&rules.replace(
        "{ resource_types: [entraGroups] }",
        "{ tiers: [High, Medium, Low] }",
    ));
}

#[test]
fn without_declared_groups_group_auto_approval_loads_as_before() {
    loads(
        "
policies:
  - name: all-groups
    match: { resource_types: [entraGroups] }
    auto_approve:
      - duration: { max: PT1H }
",
    );
}

#[test]
fn a_list_declared_critical_makes_every_member_critical() {
    let rules = format!(
        "
lists:
  tier0-groups: [{OTHER_GROUP}, {GROUP}]
groups:
  tier0-groups: {{ tier: High, holds: [Privileged Role Administrator] }}
policies:
  - name: one-group
    match: {{ groups: [{GROUP}] }}
    decide: AutoApproved
    reason: fine.
"
    );
    critical_group_refused(&errors(&rules), "policies[0].decide");
}

#[tokio::test]
async fn matching_by_tier_picks_up_the_declared_group() {
    let rules = format!(
        "
groups:
  {GROUP}: {{ holds: [Global Administrator] }}
  {OTHER_GROUP}: {{ tier: Low }}
policies:
  - name: critical-needs-a-human
    match: {{ tiers: [Critical] }}
    decide: Approved
    reason: a human approves Critical access.
  - name: low-is-automatic
    match: {{ tiers: [Low] }}
    decide: AutoApproved
    reason: low risk.
  - name: everything-else
    match: {{ resource_types: [entraGroups] }}
    decide: Denied
    reason: not covered.
"
    );
    let loaded = loads(&rules);
    for (target, outcome, policy) in [
        (GROUP, Outcome::Approved, "critical-needs-a-human"),
        (OTHER_GROUP, Outcome::AutoApproved, "low-is-automatic"),
        (
            "eeeeeeee-0000-4000-8000-000000000005",
            Outcome::Denied,
            "everything-else",
        ),
    ] {
        let request = group(target, GroupAccess::Member);
        let decision = evaluate(&loaded, &request, now(), Duration::from_secs(5)).await;
        assert_eq!(
            decision.outcome, outcome,
            "{target}: {:?}",
            decision.reasons
        );
        assert_eq!(decision.policy.as_deref(), Some(policy), "{target}");
    }
}

#[tokio::test]
async fn a_guard_may_match_a_critical_group_since_guards_never_approve() {
    let rules = format!(
        "
groups:
  {GROUP}: {{ tier: Critical }}
guards:
  - name: no-critical-groups-at-night
    match: {{ tiers: [Critical] }}
    decide: Denied
    reason: not through PIM.
policies:
  - name: everything
    decide: Approved
    reason: a human looks.
"
    );
    let loaded = loads(&rules);
    let decision = evaluate(
        &loaded,
        &group(GROUP, GroupAccess::Member),
        now(),
        Duration::from_secs(5),
    )
    .await;
    assert_eq!(decision.outcome, Outcome::Denied, "{:?}", decision.reasons);
}

#[test]
fn malformed_group_declarations_are_refused_with_their_key() {
    let rules = format!(
        "
groups:
  {GROUP}: {{ holds: [Global Admin] }}
  {OTHER_GROUP}: {{ }}
  not-a-list: {{ tier: Critical }}
  eeeeeeee-0000-4000-8000-000000000005: {{ tier: Extreme, color: red }}
"
    );
    let problems = errors(&rules);
    let keys: Vec<&str> = problems
        .iter()
        .map(|problem| problem.key.as_str())
        .collect();
    for expected in [
        format!("groups.{GROUP}.holds[0]"),
        format!("groups.{OTHER_GROUP}"),
        "groups.not-a-list".to_string(),
        "groups.eeeeeeee-0000-4000-8000-000000000005.tier".to_string(),
        "groups.eeeeeeee-0000-4000-8000-000000000005.color".to_string(),
    ] {
        assert!(
            keys.contains(&expected.as_str()),
            "{expected} missing in {keys:?}"
        );
    }
}

#[test]
fn the_shipped_rules_still_load() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let settings =
        pimgate::settings::Settings::load_with_env(Some(&root.join("config/example.toml")), None)
            .unwrap();
    let context = pimgate::connectors::BuildContext {
        http: reqwest::Client::new(),
        tenant_id: settings.auth.tenant_id.clone(),
    };
    let connectors =
        pimgate::connectors::Connectors::build(&settings.connectors, &context).unwrap();
    pimgate::rules::load_with(&root.join("rules"), &connectors)
        .unwrap_or_else(|problems| panic!("{}", render(&problems)));
}
