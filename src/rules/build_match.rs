//! Builds a [`Matcher`] from a `match:` spec: role names resolved in the catalog, tiers, group and
//! principal ids, scopes and actions read, each value that cannot be one reported at its index.

use std::collections::BTreeMap;

use crate::payload::{Action, GroupAccess, ResourceType, Stage};
use crate::rules::catalog;
use crate::rules::matcher::{Matcher, ScopePattern, parse_tier};
use crate::vocabulary::diagnostic::Diagnostic;

use super::compile::parse_guid;
use super::report::{closest, has_errors, quote_all};
use super::spec::{Field, MatchSpec};
use super::validate::{match_lists, validate_match};

/// Actions PIM is known to send; others are accepted with a warning.
const KNOWN_ACTIONS: &[&str] = &[
    "selfActivate",
    "selfDeactivate",
    "selfExtend",
    "selfRenew",
    "adminAssign",
    "adminRemove",
    "adminUpdate",
    "adminExtend",
    "adminRenew",
];

/// The matcher of `match:` at `key` (`defaults` when there is none), or `None` when any of its
/// values is wrong; every wrong value is reported in `out` (shape problems are `validate`'s).
pub(super) fn build_match(
    out: &mut Vec<Diagnostic>,
    key: &str,
    field: Option<&Field<MatchSpec>>,
    lists: &BTreeMap<String, Vec<String>>,
    defaults: Matcher,
) -> Option<Matcher> {
    let Some(field) = field else {
        return Some(defaults);
    };
    let valid = validate_match(&mut Vec::new(), key, field);
    let spec = field.typed.as_ref().ok()?;
    let mut problems = Vec::new();
    let mut matcher = defaults;
    for (name, list) in match_lists(spec) {
        let Some(items) = list.and_then(|list| list.typed.as_ref().ok()) else {
            continue;
        };
        let field_key = format!("{key}.{name}");
        let at = |index: usize| format!("{field_key}[{index}]");
        let mut error = |index: usize, message: String, fix: &str| {
            problems.push(Diagnostic::error(at(index), message, fix));
        };
        match name {
            "roles" => {
                let mut ids = Vec::new();
                for (index, item) in items.iter().enumerate() {
                    match resolve_role(item) {
                        Some(id) => ids.push(id),
                        None => {
                            let suggestions = catalog::suggest(item, 3);
                            let fix = if suggestions.is_empty() {
                                "use an Entra built-in role name or a role definition GUID"
                                    .to_string()
                            } else {
                                format!(
                                    "did you mean {}? Or use a role definition GUID",
                                    quote_all(&suggestions)
                                )
                            };
                            error(index, format!("unknown role `{item}`"), &fix);
                        }
                    }
                }
                matcher.roles = Some(ids);
            }
            "tiers" => {
                let mut tiers = Vec::new();
                for (index, item) in items.iter().enumerate() {
                    match parse_tier(item) {
                        Some(tier) => tiers.push(tier),
                        None => error(
                            index,
                            format!("unknown tier `{item}`"),
                            "use Critical, High, Medium or Low",
                        ),
                    }
                }
                matcher.tiers = Some(tiers);
            }
            "groups" => {
                let mut ids = Vec::new();
                for (index, item) in items.iter().enumerate() {
                    match parse_guid(item) {
                        Some(id) => ids.push(id),
                        None => error(
                            index,
                            format!("`{item}` is not a GUID"),
                            "groups are matched by object id",
                        ),
                    }
                }
                matcher.groups = Some(ids);
            }
            "access" => {
                let mut access = Vec::new();
                for (index, item) in items.iter().enumerate() {
                    match item.trim().to_ascii_lowercase().as_str() {
                        "member" => access.push(GroupAccess::Member),
                        "owner" => access.push(GroupAccess::Owner),
                        _ => error(
                            index,
                            format!("unknown group access `{item}`"),
                            "use member or owner",
                        ),
                    }
                }
                matcher.access = Some(access);
            }
            "resource_types" => {
                let mut types = Vec::new();
                for (index, item) in items.iter().enumerate() {
                    let found = [
                        ResourceType::EntraRoles,
                        ResourceType::EntraGroups,
                        ResourceType::AzureResources,
                    ]
                    .into_iter()
                    .find(|kind| kind.as_str().eq_ignore_ascii_case(item.trim()));
                    match found {
                        Some(kind) => types.push(kind),
                        None => error(
                            index,
                            format!("unknown resource type `{item}`"),
                            "use entraRoles, entraGroups or azureResources",
                        ),
                    }
                }
                matcher.resource_types = Some(types);
            }
            "scopes" => {
                let mut scopes = Vec::new();
                for (index, item) in items.iter().enumerate() {
                    let body = item.trim().strip_suffix("/*").unwrap_or(item.trim());
                    if !item.trim().starts_with('/') || body.contains('*') {
                        error(
                            index,
                            format!("`{item}` is not a scope pattern"),
                            "a scope starts with `/`; end it with `/*` to include everything below, e.g. `/subscriptions/<id>/*`",
                        );
                        continue;
                    }
                    scopes.push(ScopePattern::parse(item));
                }
                matcher.scopes = Some(scopes);
            }
            "actions" => {
                let mut actions = Vec::new();
                for (index, item) in items.iter().enumerate() {
                    if let Action::Other(other) = Action::parse(item.trim()) {
                        let fix = match closest(&other, KNOWN_ACTIONS.iter().copied()) {
                            Some(near) => format!("did you mean `{near}`?"),
                            None => format!("known actions: {}", KNOWN_ACTIONS.join(", ")),
                        };
                        problems.push(Diagnostic::warning(
                            at(index),
                            format!("`{other}` is not an action PIM is known to send"),
                            fix,
                        ));
                    }
                    actions.push(item.trim().to_ascii_lowercase());
                }
                matcher.actions = actions;
            }
            "principals" => {
                let mut ids = Vec::new();
                for (index, item) in items.iter().enumerate() {
                    if let Some(id) = parse_guid(item) {
                        ids.push(id);
                    } else if let Some(members) = lists.get(item.trim()) {
                        ids.extend(members.iter().cloned());
                    } else {
                        let fix = match closest(item, lists.keys().map(String::as_str)) {
                            Some(near) => format!(
                                "did you mean `{near}`? Define lists under `lists:`, or use an object id (GUID)"
                            ),
                            None => "define the list under `lists:`, or use an object id (GUID)"
                                .to_string(),
                        };
                        error(index, format!("unknown list `{item}`"), &fix);
                    }
                }
                matcher.principals = Some(ids);
            }
            "stages" => {
                let mut stages = Vec::new();
                for (index, item) in items.iter().enumerate() {
                    match item.parse::<Stage>() {
                        Ok(stage) => stages.push(stage),
                        Err(_) => error(
                            index,
                            format!("unknown stage `{item}`"),
                            "use pre_approval or post_approval (leave `stages` out for both)",
                        ),
                    }
                }
                matcher.stages = Some(stages);
            }
            _ => {}
        }
    }
    let built = !has_errors(&problems);
    out.extend(problems);
    (valid && built).then_some(matcher)
}

/// A role named by definition id, or by its catalog name in any case; the id, lower case.
pub(super) fn resolve_role(name: &str) -> Option<String> {
    if let Some(id) = parse_guid(name) {
        return Some(id);
    }
    let name = name.trim();
    catalog::by_name(name)
        .or_else(|| {
            catalog::all()
                .iter()
                .find(|role| role.name.eq_ignore_ascii_case(name))
        })
        .map(|role| role.id.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::super::spec::{MatchSpec, field_names};
    use super::match_lists;

    #[test]
    fn every_match_key_of_the_spec_is_built() {
        let Ok(spec) = yaml_serde::from_str::<MatchSpec>("{}") else {
            panic!("an empty match reads");
        };
        let built: Vec<&str> = match_lists(&spec).iter().map(|(name, _)| *name).collect();
        assert_eq!(built, field_names::<MatchSpec>());
    }
}
