//! A policy's compiled `match:` block: which requests the policy is about.
//!
//! Every list is resolved at load (role names to GUIDs, list names to principal ids, lower case) so
//! matching is plain comparison. An absent criterion matches everything, except `actions`, which
//! defaults to `[selfActivate]` so extensions, renewals and admin actions are never decided by a policy
//! that did not name them. A guard's `actions` default to every action that grants or extends access
//! ([`GUARD_DEFAULT_ACTIONS`]): a guard only denies, so the safe default is the widest one that never
//! stands in the way of giving a privilege back.

use crate::payload::{ActivationRequest, GroupAccess, ResourceType, Stage, Target};
use crate::rules::catalog::{self, Tier};

/// `/subscriptions/x/*` matches `/subscriptions/x` and everything below it; anything else is exact.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScopePattern {
    Exact(String),
    Under(String),
}

impl ScopePattern {
    pub fn parse(text: &str) -> ScopePattern {
        let lower = text.trim().to_ascii_lowercase();
        match lower.strip_suffix("/*") {
            Some(base) => ScopePattern::Under(base.trim_end_matches('/').to_string()),
            None => ScopePattern::Exact(lower),
        }
    }

    fn matches(&self, scope: &str) -> bool {
        let scope = scope.to_ascii_lowercase();
        match self {
            ScopePattern::Exact(exact) => scope == *exact,
            ScopePattern::Under(base) => {
                base.is_empty()
                    || scope == *base
                    || scope
                        .strip_prefix(base.as_str())
                        .is_some_and(|rest| rest.starts_with('/'))
            }
        }
    }
}

/// `None` in a field means the criterion was not given (matches everything).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Matcher {
    /// Lower-case role definition GUIDs (Entra or Azure).
    pub roles: Option<Vec<String>>,
    pub tiers: Option<Vec<Tier>>,
    /// Lower-case group GUIDs.
    pub groups: Option<Vec<String>>,
    pub access: Option<Vec<GroupAccess>>,
    pub resource_types: Option<Vec<ResourceType>>,
    pub scopes: Option<Vec<ScopePattern>>,
    /// Lower-case action names; never empty.
    pub actions: Vec<String>,
    /// Lower-case principal object ids, list names already expanded.
    pub principals: Option<Vec<String>>,
    /// The PIM stages the rule is for; `None` (no `stages:`) is every stage, so a rule set written
    /// before the post-approval stage existed re-checks the same requirements after approval.
    pub stages: Option<Vec<Stage>>,
    /// Lower-case ids of the groups declared (top-level `groups:`) with one of `tiers`: `tiers`
    /// match them as well as Entra built-in roles. Empty without `tiers` or declarations.
    pub tiered_groups: Vec<String>,
}

impl Default for Matcher {
    fn default() -> Self {
        Matcher {
            roles: None,
            tiers: None,
            groups: None,
            access: None,
            resource_types: None,
            scopes: None,
            actions: vec!["selfactivate".to_string()],
            principals: None,
            stages: None,
            tiered_groups: Vec::new(),
        }
    }
}

/// The actions a guard applies to when its `match` names none: everything that grants or extends
/// access, by the requester or an administrator. Deactivations and removals are left out: they reduce
/// access, and a guard that blocked them would keep a privilege alive longer (a guard may still name
/// them explicitly).
pub const GUARD_DEFAULT_ACTIONS: &[&str] = &[
    "selfactivate",
    "selfextend",
    "selfrenew",
    "adminassign",
    "adminextend",
    "adminrenew",
    "adminupdate",
];

impl Matcher {
    /// The match of a guard that restricts nothing: every request for [`GUARD_DEFAULT_ACTIONS`].
    pub fn for_guard() -> Matcher {
        Matcher {
            actions: GUARD_DEFAULT_ACTIONS
                .iter()
                .map(ToString::to_string)
                .collect(),
            ..Matcher::default()
        }
    }
}

/// The catalog tier's spelling in rules and CEL.
pub fn tier_name(tier: Tier) -> &'static str {
    match tier {
        Tier::Critical => "Critical",
        Tier::High => "High",
        Tier::Medium => "Medium",
        Tier::Low => "Low",
    }
}

pub fn parse_tier(text: &str) -> Option<Tier> {
    [Tier::Critical, Tier::High, Tier::Medium, Tier::Low]
        .into_iter()
        .find(|tier| tier_name(*tier).eq_ignore_ascii_case(text.trim()))
}

pub(crate) fn target_role(request: &ActivationRequest) -> Option<&str> {
    match &request.target {
        Target::EntraRole {
            role_definition_id, ..
        }
        | Target::AzureRole {
            role_definition_id, ..
        } => Some(role_definition_id),
        Target::Group { .. } => None,
    }
}

/// The catalog tier of the target, for Entra built-in roles only.
pub fn target_tier(request: &ActivationRequest) -> Option<Tier> {
    match &request.target {
        Target::EntraRole {
            role_definition_id, ..
        } => catalog::by_id(role_definition_id).map(|role| role.tier),
        _ => None,
    }
}

impl Matcher {
    /// `None` when the request matches; otherwise the first criterion that does not hold, in words for
    /// the explanation tree.
    pub fn mismatch(&self, request: &ActivationRequest, stage: Stage) -> Option<&'static str> {
        if let Some(stages) = &self.stages
            && !stages.contains(&stage)
        {
            return Some("stage does not match");
        }
        let action = request.action.as_str().to_ascii_lowercase();
        if !self.actions.contains(&action) {
            return Some("action does not match");
        }
        if let Some(types) = &self.resource_types
            && !types.contains(&request.resource_type)
        {
            return Some("resource type does not match");
        }
        if let Some(roles) = &self.roles {
            let role = target_role(request).map(str::to_ascii_lowercase);
            if !role.is_some_and(|role| roles.contains(&role)) {
                return Some("role does not match");
            }
        }
        if let Some(tiers) = &self.tiers
            && !target_tier(request).is_some_and(|tier| tiers.contains(&tier))
            && !self.is_tiered_group(request)
        {
            return Some("tier does not match");
        }
        if let Some(groups) = &self.groups {
            let group = match &request.target {
                Target::Group { group_id, .. } => Some(group_id.to_ascii_lowercase()),
                _ => None,
            };
            if !group.is_some_and(|group| groups.contains(&group)) {
                return Some("group does not match");
            }
        }
        if let Some(access) = &self.access {
            let wanted = match &request.target {
                Target::Group { access_id, .. } => access.contains(access_id),
                _ => false,
            };
            if !wanted {
                return Some("group access does not match");
            }
        }
        if let Some(scopes) = &self.scopes
            && !scopes
                .iter()
                .any(|pattern| pattern.matches(request.scope()))
        {
            return Some("scope does not match");
        }
        if let Some(principals) = &self.principals {
            let principal = request.principal_id.to_ascii_lowercase();
            if !principals.contains(&principal) {
                return Some("principal does not match");
            }
        }
        None
    }

    /// Whether a request for a Critical-tier Entra role could match, judged from the criteria alone
    /// (an unrestricted match can). Used to refuse accidental auto-approval of Critical roles.
    pub fn can_match_critical(&self) -> bool {
        let roles_can = self.roles.as_ref().is_none_or(|roles| {
            roles
                .iter()
                .any(|id| catalog::by_id(id).is_some_and(|role| role.tier == Tier::Critical))
        });
        let tiers_can = self
            .tiers
            .as_ref()
            .is_none_or(|tiers| tiers.contains(&Tier::Critical));
        let type_can = self
            .resource_types
            .as_ref()
            .is_none_or(|types| types.contains(&ResourceType::EntraRoles));
        roles_can && tiers_can && type_can && self.groups.is_none() && self.access.is_none()
    }

    /// Fills `tiered_groups` from the declared group tiers (group id to tier); a match without
    /// `tiers` is left alone.
    pub fn attach_group_tiers(&mut self, group_tiers: &std::collections::BTreeMap<String, Tier>) {
        if let Some(tiers) = &self.tiers {
            self.tiered_groups = group_tiers
                .iter()
                .filter(|(_, tier)| tiers.contains(tier))
                .map(|(group, _)| group.clone())
                .collect();
        }
    }

    fn is_tiered_group(&self, request: &ActivationRequest) -> bool {
        match &request.target {
            Target::Group { group_id, .. } => {
                let group = group_id.to_ascii_lowercase();
                self.tiered_groups.contains(&group)
            }
            _ => false,
        }
    }

    /// A group declared Critical (top-level `groups:` of the rule files) that this match could
    /// select, judged from the criteria alone; `None` when it provably cannot. A match that leaves
    /// groups unrestricted (no `groups`, no `roles`/`tiers`, `resource_types` allowing
    /// `entraGroups`) can select every group, declared ones included, so it cannot be proven safe
    /// once any Critical group is declared. `tiers` with Critical select the declared Critical
    /// groups; `roles` and other `tiers` select no Critical group; and
    /// `access`/`scopes`/`principals` never exclude a group, so they do not make it safe.
    pub fn critical_group_it_can_match<'g>(
        &self,
        critical_groups: &'g std::collections::BTreeSet<String>,
    ) -> Option<&'g str> {
        let groups_possible = self.roles.is_none()
            && self
                .tiers
                .as_ref()
                .is_none_or(|tiers| tiers.contains(&Tier::Critical))
            && self
                .resource_types
                .as_ref()
                .is_none_or(|types| types.contains(&ResourceType::EntraGroups));
        if !groups_possible {
            return None;
        }
        critical_groups
            .iter()
            .find(|group| {
                self.groups
                    .as_ref()
                    .is_none_or(|named| named.contains(*group))
            })
            .map(String::as_str)
    }

    /// True when only `actions` restricts the match: every request for those actions matches.
    /// Whether every request `other` matches is also matched by `self`, judged criterion by criterion
    /// (sound, not complete: roles vs tiers, scope patterns vs exact scopes are not compared across).
    /// An enforcing policy without `when` that covers a later one makes the later one unreachable.
    pub fn covers(&self, other: &Matcher) -> bool {
        fn subset<T: PartialEq>(wide: &Option<Vec<T>>, narrow: &Option<Vec<T>>) -> bool {
            match (wide, narrow) {
                (None, _) => true,
                (Some(_), None) => false,
                (Some(wide), Some(narrow)) => narrow.iter().all(|value| wide.contains(value)),
            }
        }
        subset(&self.roles, &other.roles)
            && subset(&self.tiers, &other.tiers)
            && subset(&self.groups, &other.groups)
            && subset(&self.access, &other.access)
            && subset(&self.resource_types, &other.resource_types)
            && subset(&self.scopes, &other.scopes)
            && subset(&self.principals, &other.principals)
            && subset(&self.stages, &other.stages)
            && other
                .actions
                .iter()
                .all(|action| self.actions.contains(action))
    }

    /// Why no request can satisfy this match, when its criteria contradict each other; `None` when
    /// some request could (judged from the criteria alone, soundly: a `Some` is never wrong). A
    /// request targets either a role (Entra or Azure) or a group; groups have no role, no tier and
    /// scope `/`; tiers exist only for Entra built-in roles.
    pub fn contradiction(&self) -> Option<String> {
        let group_only = self.groups.is_some() || self.access.is_some();
        // `tiers` select declared groups too (`tiered_groups`); then they are not role-only.
        let tiers_role_only = self.tiers.is_some() && self.tiered_groups.is_empty();
        let role_only = self.roles.is_some() || tiers_role_only;
        let allows = |kind: ResourceType| {
            self.resource_types
                .as_ref()
                .is_none_or(|types| types.contains(&kind))
        };
        if group_only && role_only {
            return Some(
                "`groups`/`access` match only PIM for Groups requests and `roles`/`tiers` only role requests: no request has both".to_string(),
            );
        }
        if group_only && !allows(ResourceType::EntraGroups) {
            return Some(
                "`groups`/`access` match only `entraGroups` requests, which `resource_types` excludes".to_string(),
            );
        }
        if tiers_role_only && !allows(ResourceType::EntraRoles) {
            return Some(
                "`tiers` match only Entra built-in roles (`entraRoles`), which `resource_types` excludes".to_string(),
            );
        }
        if self.roles.is_some()
            && !allows(ResourceType::EntraRoles)
            && !allows(ResourceType::AzureResources)
        {
            return Some(
                "`roles` match only role requests, and `resource_types` allows only groups"
                    .to_string(),
            );
        }
        if let (Some(roles), Some(tiers)) = (&self.roles, &self.tiers) {
            let some_role_in_tiers = roles
                .iter()
                .any(|id| catalog::by_id(id).is_some_and(|role| tiers.contains(&role.tier)));
            if !some_role_in_tiers {
                return Some(
                    "none of the `roles` is a built-in Entra role of one of the `tiers`"
                        .to_string(),
                );
            }
        }
        let groups_only = group_only
            || self
                .resource_types
                .as_ref()
                .is_some_and(|types| types.iter().all(|kind| *kind == ResourceType::EntraGroups));
        if groups_only
            && let Some(scopes) = &self.scopes
            && !scopes.iter().any(|pattern| pattern.matches("/"))
        {
            return Some(
                "PIM for Groups requests have scope `/`, which none of the `scopes` matches"
                    .to_string(),
            );
        }
        None
    }

    pub fn is_catch_all(&self) -> bool {
        self.roles.is_none()
            && self.tiers.is_none()
            && self.groups.is_none()
            && self.access.is_none()
            && self.resource_types.is_none()
            && self.scopes.is_none()
            && self.principals.is_none()
            && self.stages.is_none()
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::{Matcher, ScopePattern};
    use crate::payload::{GroupAccess, ResourceType, Target};
    use crate::rules::catalog::Tier;

    const GLOBAL_ADMIN: &str = "62e90394-69f5-4237-9190-012177145e10";
    const EXCHANGE_ADMIN: &str = "29232cdf-9323-42fd-ade2-1d097af3e4de";
    const AZURE_OWNER: &str = "8e3af657-a8ff-443c-a75c-2fe8c4bcb635";
    const GROUP: &str = "bbbbbbbb-0000-4000-8000-000000000002";

    /// One request of every shape the criteria below can tell apart.
    fn requests() -> Vec<crate::payload::ActivationRequest> {
        let base = crate::checks::test_support::request();
        let entra = |role: &str, scope: &str| {
            let mut request = base.clone();
            request.target = Target::EntraRole {
                role_definition_id: role.into(),
                directory_scope_id: scope.into(),
                app_scope_id: None,
            };
            request
        };
        let mut requests = vec![
            entra(GLOBAL_ADMIN, "/"),
            entra(EXCHANGE_ADMIN, "/"),
            entra(EXCHANGE_ADMIN, "/administrativeUnits/a"),
        ];
        for access in [GroupAccess::Member, GroupAccess::Owner] {
            let mut group = base.clone();
            group.resource_type = ResourceType::EntraGroups;
            group.target = Target::Group {
                group_id: GROUP.into(),
                access_id: access,
            };
            requests.push(group);
        }
        let mut azure = base.clone();
        azure.resource_type = ResourceType::AzureResources;
        azure.target = Target::AzureRole {
            role_definition_id: AZURE_OWNER.into(),
            role_definition_path: String::new(),
            scope: "/subscriptions/s".into(),
        };
        requests.push(azure);
        requests
    }

    fn some_of<T: Clone + std::fmt::Debug + 'static>(
        pool: Vec<T>,
    ) -> impl Strategy<Value = Option<Vec<T>>> {
        let most = pool.len();
        proptest::option::weighted(0.5, proptest::sample::subsequence(pool, 1..=most))
    }

    fn matcher_strategy() -> impl Strategy<Value = Matcher> {
        let text = |pool: &[&str]| pool.iter().map(ToString::to_string).collect::<Vec<_>>();
        (
            some_of(text(&[GLOBAL_ADMIN, EXCHANGE_ADMIN, AZURE_OWNER])),
            some_of(vec![Tier::Critical, Tier::High, Tier::Low]),
            some_of(text(&[GROUP])),
            some_of(vec![GroupAccess::Member, GroupAccess::Owner]),
            some_of(vec![
                ResourceType::EntraRoles,
                ResourceType::EntraGroups,
                ResourceType::AzureResources,
            ]),
            some_of(vec![
                ScopePattern::parse("/"),
                ScopePattern::parse("/*"),
                ScopePattern::parse("/subscriptions/s/*"),
                ScopePattern::parse("/administrativeUnits/a"),
            ]),
        )
            .prop_map(
                |(roles, tiers, groups, access, resource_types, scopes)| Matcher {
                    roles,
                    tiers,
                    groups,
                    access,
                    resource_types,
                    scopes,
                    ..Matcher::default()
                },
            )
    }

    proptest! {
        /// A guard is refused for a contradiction, so the verdict must never be wrong: no request
        /// matches a match said to be unsatisfiable.
        #[test]
        fn a_match_called_contradictory_matches_no_request(matcher in matcher_strategy()) {
            if let Some(why) = matcher.contradiction() {
                for request in requests() {
                    for stage in crate::payload::Stage::ALL {
                        prop_assert!(matcher.mismatch(&request, stage).is_some(), "{why}: {matcher:?} matches {request:?} at {stage}");
                    }
                }
            }
        }
    }

    #[test]
    fn a_satisfiable_match_is_no_contradiction() {
        let exchange_in_a_unit = Matcher {
            roles: Some(vec![EXCHANGE_ADMIN.into()]),
            tiers: Some(vec![Tier::High]),
            resource_types: Some(vec![ResourceType::EntraRoles, ResourceType::EntraGroups]),
            scopes: Some(vec![ScopePattern::parse("/administrativeUnits/a")]),
            ..Matcher::default()
        };
        assert_eq!(exchange_in_a_unit.contradiction(), None);
        let group_owners = Matcher {
            access: Some(vec![GroupAccess::Owner]),
            scopes: Some(vec![ScopePattern::parse("/*")]),
            ..Matcher::default()
        };
        assert_eq!(group_owners.contradiction(), None);
        assert_eq!(Matcher::for_guard().contradiction(), None);
    }

    #[test]
    fn a_scope_pattern_ending_in_star_matches_the_scope_and_everything_below_it() {
        let pattern = ScopePattern::parse("/subscriptions/ABC/*");
        assert!(pattern.matches("/subscriptions/abc"));
        assert!(pattern.matches("/subscriptions/abc/resourceGroups/rg"));
        assert!(!pattern.matches("/subscriptions/abcd"));
        assert!(ScopePattern::parse("/*").matches("/administrativeUnits/x"));
        assert!(!ScopePattern::parse("/").matches("/administrativeUnits/x"));
    }
}
