//! `group`: the requester is (or is not) a member of Entra groups, directly or through nested
//! groups, as Microsoft Graph says now (`transitiveMemberOf`).
//!
//! `- group: { member_of: [<group object id>, ...], not_member_of: [...] }`: passes when the
//! requester is in at least one `member_of` group (when any are listed) and in none of the
//! `not_member_of` groups. Membership is current state: the outcome holds at the decision time
//! (`holds_at` = now), like a ticket's state, so it never vouches for a later start by itself.
//! Graph unreachable, refusing (401/403, a token without `GroupMember.Read.All`), answering garbage
//! or more pages than pimgate reads: not evaluated, and `on_error` decides; never a pass.

use std::collections::BTreeSet;
use std::sync::Arc;

use async_trait::async_trait;
use serde::Deserialize;

use super::registry::{BuildEnv, CheckKind, Reach};
use super::util::is_guid;
use super::{Check, CheckContext, CheckOutcome};
use crate::connectors::graph::groups::{GROUP_MEMBER_READ_ALL, GroupRef};
use crate::connectors::http::Fetched;
use crate::connectors::{ConnectorId, Connectors, PermissionNeed};
use crate::vocabulary::diagnostic::Diagnostic;

/// `group: { member_of: [...], not_member_of: [...] }`, group object ids.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupSpec {
    #[serde(default)]
    pub member_of: Vec<String>,
    #[serde(default)]
    pub not_member_of: Vec<String>,
}

/// `- group: ...` in the rules (see `registry::CheckKind`).
#[derive(Debug)]
pub struct GroupKind;

impl CheckKind for GroupKind {
    fn reference() -> crate::checks::registry::KindReference {
        crate::checks::registry::KindReference {
            summary: "The requester is (or is not) a member of Entra groups, directly or nested, as Graph says now.",
            example: "- group: { member_of: [3f1c...], not_member_of: [9a2b...] }",
            keys: vec![
                crate::checks::registry::KeyDoc::new(
                    "member_of",
                    "list of group object ids",
                    "[]",
                    "[3f1c2d4e-...]",
                    "When given, the requester must be in at least one.",
                ),
                crate::checks::registry::KeyDoc::new(
                    "not_member_of",
                    "list of group object ids",
                    "[]",
                    "[9a2b7c6d-...]",
                    "The requester must be in none.",
                ),
            ],
            reads: group_reads(),
        }
    }

    const NAME: &'static str = "group";
    const REACH: Reach = Reach::Upstream;
    type Spec = GroupSpec;

    fn connector(_spec: &GroupSpec) -> Option<ConnectorId> {
        Some(ConnectorId::Graph)
    }

    fn build(spec: &GroupSpec, env: &BuildEnv<'_>) -> Result<Arc<dyn Check>, Vec<Diagnostic>> {
        build(spec, env)
    }
}

pub fn build(spec: &GroupSpec, env: &BuildEnv<'_>) -> Result<Arc<dyn Check>, Vec<Diagnostic>> {
    let mut problems = Vec::new();
    let member_of = guids("member_of", &spec.member_of, &mut problems);
    let not_member_of = guids("not_member_of", &spec.not_member_of, &mut problems);
    if spec.member_of.is_empty() && spec.not_member_of.is_empty() {
        problems.push(Diagnostic::error(
            String::new(),
            "names no group, so it would check nothing",
            "add `member_of: [<group object id>]` or `not_member_of: [<group object id>]`",
        ));
    }
    if let Some(both) = member_of.intersection(&not_member_of).next() {
        problems.push(Diagnostic::error(
            "not_member_of",
            format!("`{both}` is also in `member_of`, so nobody could pass"),
            "list each group in one of the two lists",
        ));
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    Ok(Arc::new(GroupCheck {
        member_of,
        not_member_of,
        connectors: Arc::clone(env.connectors),
    }))
}

/// Lower-cased group object ids; anything that is not a GUID is a problem (a display name would
/// never match, and a typo would silently turn `not_member_of` off).
fn guids(key: &str, values: &[String], problems: &mut Vec<Diagnostic>) -> BTreeSet<String> {
    let mut ids = BTreeSet::new();
    for (index, value) in values.iter().enumerate() {
        let value = value.trim();
        if is_guid(value) {
            ids.insert(value.to_ascii_lowercase());
        } else {
            problems.push(Diagnostic::error(
                format!("{key}[{index}]"),
                format!(
                    "`{}` is not a group object id",
                    super::util::quote(value, 40)
                ),
                "use the group's object id (a GUID, Entra admin center → Groups → Overview)",
            ));
        }
    }
    ids
}

#[derive(Debug)]
struct GroupCheck {
    member_of: BTreeSet<String>,
    not_member_of: BTreeSet<String>,
    connectors: Arc<Connectors>,
}

impl GroupCheck {
    fn label(groups: &[&GroupRef]) -> String {
        groups
            .iter()
            .map(|group| match &group.display_name {
                Some(name) => format!("`{}`", super::util::quote(name, 80)),
                None => format!("`{}`", group.id),
            })
            .collect::<Vec<_>>()
            .join(", ")
    }

    fn judge(&self, groups: &[GroupRef]) -> CheckOutcome {
        let is = |wanted: &BTreeSet<String>| -> Vec<&GroupRef> {
            groups
                .iter()
                .filter(|group| wanted.contains(&group.id.trim().to_ascii_lowercase()))
                .collect()
        };
        let forbidden = is(&self.not_member_of);
        let required = is(&self.member_of);
        let ids = |found: &[&GroupRef]| -> Vec<String> {
            found.iter().map(|group| group.id.clone()).collect()
        };
        let outcome = if !forbidden.is_empty() {
            CheckOutcome::fail(format!(
                "you are a member of {}, which may not activate this role",
                Self::label(&forbidden)
            ))
        } else if !self.member_of.is_empty() && required.is_empty() {
            CheckOutcome::fail(format!(
                "you are not a member of any group this role requires ({} group(s)); ask for membership",
                self.member_of.len()
            ))
        } else if required.is_empty() {
            CheckOutcome::pass("you are a member of none of the excluded groups")
        } else {
            CheckOutcome::pass(format!("you are a member of {}", Self::label(&required)))
        };
        outcome
            .with_evidence("member_of", ids(&required))
            .with_evidence("not_member_of", ids(&forbidden))
            .with_evidence("groups_read", groups.len())
    }
}

#[async_trait]
impl Check for GroupCheck {
    async fn evaluate(&self, context: &CheckContext<'_>) -> CheckOutcome {
        let mut calls = Vec::new();
        let outcome = match self.connectors.graph.as_ref() {
            None => CheckOutcome::error(
                "the graph connector is not configured, so group membership could not be checked",
            ),
            Some(graph) => {
                let principal = context.request.principal_id.as_str();
                let (answer, made) = graph.transitive_groups(principal, context.deadline).await;
                calls = made;
                match answer {
                    // Membership is what Graph says now, whatever the activation's start.
                    Ok(Fetched::Found(groups)) => self.judge(&groups).holding_at(context.now),
                    Ok(Fetched::NotFound) => CheckOutcome::error(format!(
                        "group membership could not be checked: the directory does not know `{principal}`"
                    )),
                    Err(error) => CheckOutcome::error(format!(
                        "group membership could not be checked: {error}"
                    ))
                    .with_evidence("error_detail", error.detail()),
                }
            }
        };
        outcome.with_evidence(
            "upstream",
            serde_json::to_value(&calls).unwrap_or(serde_json::Value::Null),
        )
    }

    fn upstream_permissions(&self) -> Vec<PermissionNeed> {
        vec![PermissionNeed {
            permission: &GROUP_MEMBER_READ_ALL,
            needed_for: "`group` checks (the requester's transitive group memberships)",
        }]
    }
}

/// What the reference says `group` reads, from the Graph groups module.
fn group_reads() -> Vec<crate::checks::registry::UpstreamFact> {
    use crate::connectors::graph::groups;
    vec![
        crate::checks::registry::UpstreamFact::new(
            "Microsoft Graph",
            format!("`{}?$select=id,displayName`", groups::GROUPS_OPERATION),
        ),
        crate::checks::registry::UpstreamFact::new(
            "Microsoft Graph",
            format!(
                "permission: `{}` ({})",
                GROUP_MEMBER_READ_ALL.name, GROUP_MEMBER_READ_ALL.reads
            ),
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checks::test_support::TestEnv;

    fn problems(yaml: &str) -> Vec<Diagnostic> {
        let spec: GroupSpec = yaml_serde::from_str(yaml).unwrap();
        build(&spec, &TestEnv::default().env()).unwrap_err()
    }

    #[test]
    fn a_group_check_needs_a_group_and_only_object_ids() {
        let empty = problems("{}");
        assert!(empty[0].message.contains("names no group"), "{empty:?}");
        let named = problems("{ member_of: [Tier0 Admins] }");
        assert_eq!(named[0].key, "member_of[0]");
        assert!(named[0].message.contains("not a group object id"));
        let both = problems(
            "{ member_of: [0c2d8f4e-1111-4a2b-9c3d-5e6f7a8b9c0d], not_member_of: [0C2D8F4E-1111-4A2B-9C3D-5E6F7A8B9C0D] }",
        );
        assert_eq!(both[0].key, "not_member_of");
    }

    #[test]
    fn without_graph_the_check_is_not_evaluated_and_never_passes() {
        let spec: GroupSpec =
            yaml_serde::from_str("{ not_member_of: [0c2d8f4e-1111-4a2b-9c3d-5e6f7a8b9c0d] }")
                .unwrap();
        let check = build(&spec, &TestEnv::default().env()).unwrap();
        let request = crate::checks::test_support::request();
        let outcome = crate::checks::test_support::run(
            check.as_ref(),
            &request,
            crate::checks::test_support::now(),
        );
        assert_eq!(outcome.status, crate::checks::CheckStatus::Error);
        assert!(
            outcome
                .message
                .contains("graph connector is not configured")
        );
    }
}
