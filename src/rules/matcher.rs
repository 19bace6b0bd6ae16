//! A policy's compiled `match:` block: which requests the policy is about.
//!
//! Every list is resolved at load (role names to GUIDs, list names to principal ids, lower case) so
//! matching is plain comparison. An absent criterion matches everything, except `actions`, which
//! defaults to `[selfActivate]` so extensions, renewals and admin actions are never decided by a policy
//! that did not name them.

use crate::payload::{ActivationRequest, GroupAccess, ResourceType, Target};
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
    pub fn mismatch(&self, request: &ActivationRequest) -> Option<&'static str> {
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
            && other
                .actions
                .iter()
                .all(|action| self.actions.contains(action))
    }

    pub fn is_catch_all(&self) -> bool {
        self.roles.is_none()
            && self.tiers.is_none()
            && self.groups.is_none()
            && self.access.is_none()
            && self.resource_types.is_none()
            && self.scopes.is_none()
            && self.principals.is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::ScopePattern;

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
