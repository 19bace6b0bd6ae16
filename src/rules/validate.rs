//! Checks a rule spec on its own terms, reporting every problem at once: shapes, types, unknown keys
//! and keys that contradict each other. Problems that need the rest of the rule set (roles, lists,
//! check settings, the Critical tier) are `build`'s.

use yaml_serde::Value;

use crate::vocabulary::Outcome;
use crate::vocabulary::diagnostic::Diagnostic;

use super::report::{child, closest, has_errors, kind_of, mapping, read, unknown_keys};
use super::spec::{Field, GuardSpec, MatchSpec, PolicySpec, RuleSpec, field_names, policy_keys};
use crate::checks::registry::{CHECK_KINDS, CheckSpec, kind_keys};

/// Policies and guards share most keys; the words around them differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    Policy,
    Guard,
}

impl Kind {
    pub(super) fn noun(self) -> &'static str {
        match self {
            Kind::Policy => "policy",
            Kind::Guard => "guard",
        }
    }
}

/// The spec of `policies[n]`, if it is a mapping, with every problem of its own keys in `out`.
pub(super) fn validate_policy<'s>(
    out: &mut Vec<Diagnostic>,
    key: &str,
    item: &'s Field<PolicySpec>,
) -> Option<&'s PolicySpec> {
    let mapping = mapping(out, key, &item.raw, "a policy")?;
    unknown_keys(out, key, mapping, &policy_keys());
    let spec = read(out, key, item, "write the policy as `key: value` lines")?;
    let rule = &spec.rule;
    validate_rule(out, key, rule, Kind::Policy);
    let path = |name: &str| format!("{key}.{name}");
    if let Some(field) = &rule.decide
        && let Some(text) = read(
            out,
            &path("decide"),
            field,
            "`decide` is Approved, AutoApproved or Denied",
        )
        && outcome(text).is_none()
    {
        out.push(Diagnostic::error(
            path("decide"),
            format!("unknown outcome `{text}`"),
            "use Approved, AutoApproved or Denied",
        ));
    }
    if let Some(field) = &spec.approving.auto_approve {
        validate_checks(out, &path("auto_approve"), field);
    }
    if let Some(field) = &spec.approving.allow_auto_approve_on_critical {
        read(
            out,
            &path("allow_auto_approve_on_critical"),
            field,
            "use true or false",
        );
    }
    let has_checks = rule.require.is_some() || spec.approving.auto_approve.is_some();
    if rule.decide.is_some() && has_checks {
        out.push(Diagnostic::error(
            path("decide"),
            "`decide` gives a fixed answer, so the policy's `require`/`auto_approve` checks would never run",
            "remove `decide` and `reason`, or remove the checks",
        ));
    }
    validate_decide_reason(out, key, rule, Kind::Policy);
    Some(spec)
}

/// The spec of `guards[n]`, if it is a mapping, with every problem of its own keys in `out`.
pub(super) fn validate_guard<'s>(
    out: &mut Vec<Diagnostic>,
    key: &str,
    item: &'s Field<GuardSpec>,
) -> Option<&'s GuardSpec> {
    let mapping = mapping(out, key, &item.raw, "a guard")?;
    // The approving keys are known (so not "unknown key") and refused with their own fix.
    unknown_keys(out, key, mapping, &policy_keys());
    for approving in field_names::<super::spec::ApprovingSpec>() {
        if mapping.contains_key(*approving) {
            out.push(Diagnostic::error(
                format!("{key}.{approving}"),
                format!("a guard can only deny, so `{approving}` has no place in it"),
                "remove it; to auto-approve, write a policy (under `policies:`) with `auto_approve` checks",
            ));
        }
    }
    let spec = read(out, key, item, "write the guard as `key: value` lines")?;
    let rule = &spec.rule;
    validate_rule(out, key, rule, Kind::Guard);
    let path = |name: &str| format!("{key}.{name}");
    if let Some(field) = &rule.decide
        && let Some(text) = read(out, &path("decide"), field, "a guard's `decide` is Denied")
    {
        match outcome(text) {
            Some(Outcome::Denied) => {}
            Some(_) => out.push(Diagnostic::error(
                path("decide"),
                format!(
                    "a guard can only deny, never `{text}`: it applies whichever policy decides"
                ),
                "write `decide: Denied` with a `reason`; to approve, write a policy (under `policies:`)",
            )),
            None => out.push(Diagnostic::error(
                path("decide"),
                format!("unknown outcome `{text}`"),
                "a guard's fixed answer is `decide: Denied`",
            )),
        }
    }
    if rule.decide.is_some() && rule.require.is_some() {
        out.push(Diagnostic::error(
            path("decide"),
            "`decide` gives a fixed denial, so the guard's `require` checks would never run",
            "remove `decide` and `reason`, or remove the checks",
        ));
    }
    validate_decide_reason(out, key, rule, Kind::Guard);
    let no_checks = match &rule.require {
        None => true,
        Some(field) => field.typed.as_ref().is_ok_and(Vec::is_empty),
    };
    if rule.decide.is_none() && no_checks {
        out.push(Diagnostic::error(
            path("require"),
            "the guard has no checks and no fixed denial, so it could never deny anything",
            "add `require:` checks, or `decide: Denied` with a `reason`",
        ));
    }
    Some(spec)
}

/// The keys policies and guards share, each on its own.
fn validate_rule(out: &mut Vec<Diagnostic>, key: &str, rule: &RuleSpec, kind: Kind) {
    let path = |name: &str| format!("{key}.{name}");
    let noun = kind.noun();
    match &rule.name {
        None => out.push(Diagnostic::error(
            path("name"),
            format!("the {noun} has no `name`"),
            "add `name: some-unique-name`: reasons and audit records cite it",
        )),
        Some(field) => {
            if read(out, &path("name"), field, "a name is a string")
                .is_some_and(|name| name.trim().is_empty())
            {
                out.push(Diagnostic::error(
                    path("name"),
                    format!("the {noun} has no `name`"),
                    "add `name: some-unique-name`: reasons and audit records cite it",
                ));
            }
        }
    }
    if let Some(field) = &rule.description {
        read(
            out,
            &path("description"),
            field,
            "a description is a string",
        );
    }
    if let Some(field) = &rule.matching {
        validate_match(out, &path("match"), field);
    }
    if let Some(field) = &rule.when {
        read(
            out,
            &path("when"),
            field,
            "`when` is a CEL expression in a string",
        );
    }
    if let Some(field) = &rule.reason {
        read(
            out,
            &path("reason"),
            field,
            "a reason is a sentence for the requester",
        );
    }
    if let Some(field) = &rule.require {
        validate_checks(out, &path("require"), field);
    }
    let (on_error, mode) = match kind {
        Kind::Policy => (
            "use `deny` (the default) or `approve`",
            "use `enforce` (the default) or `audit` (record what the policy would decide, without deciding)",
        ),
        Kind::Guard => (
            "use `deny` (the default) or `approve` (the answer is then at most Approved)",
            "use `enforce` (the default) or `audit` (record what the guard would do, without doing it)",
        ),
    };
    if let Some(field) = &rule.on_error {
        read(out, &path("on_error"), field, on_error);
    }
    if let Some(field) = &rule.mode {
        read(out, &path("mode"), field, mode);
    }
}

/// `decide` and `reason` come together.
fn validate_decide_reason(out: &mut Vec<Diagnostic>, key: &str, rule: &RuleSpec, kind: Kind) {
    let path = |name: &str| format!("{key}.{name}");
    if rule.decide.is_some() && rule.reason.is_none() {
        out.push(Diagnostic::error(
            path("reason"),
            "`decide` needs a `reason`",
            "add `reason:` with a sentence the requester sees in PIM",
        ));
    }
    if rule.reason.is_some() && rule.decide.is_none() {
        let (message, fix) = match kind {
            Kind::Policy => (
                "`reason` only applies with `decide`",
                "remove `reason`, or add `decide:`; checks write their own reasons",
            ),
            Kind::Guard => (
                "`reason` only applies with `decide: Denied`",
                "remove `reason`, or add `decide: Denied`; checks write their own reasons",
            ),
        };
        out.push(Diagnostic::error(path("reason"), message, fix));
    }
}

/// The outcome `decide:` names, in any case.
pub(super) fn outcome(text: &str) -> Option<Outcome> {
    [Outcome::Approved, Outcome::AutoApproved, Outcome::Denied]
        .into_iter()
        .find(|outcome| outcome.as_str().eq_ignore_ascii_case(text.trim()))
}

/// `require:` or `auto_approve:`: a list of checks, each one of the known kinds.
pub(super) fn validate_checks(
    out: &mut Vec<Diagnostic>,
    key: &str,
    field: &Field<Vec<Field<CheckSpec>>>,
) {
    let Ok(items) = &field.typed else {
        out.push(Diagnostic::error(
            key,
            format!("expected a list of checks, found {}", kind_of(&field.raw)),
            "write each check as a list item, e.g. `- duration: { max: PT2H }`",
        ));
        return;
    };
    for (index, item) in items.iter().enumerate() {
        let Err(message) = &item.typed else {
            continue;
        };
        // `- duration: { maximum: PT1H }`: the unknown field is below the check's kind.
        let kind = match &item.raw {
            Value::Mapping(mapping) if mapping.len() == 1 => {
                mapping.keys().next().map(super::report::key_text)
            }
            _ => None,
        };
        let item_key = format!("{key}[{index}]");
        let (at, fix) = check_problem(&item_key, kind.as_deref(), message);
        out.push(Diagnostic::error(&at, message.clone(), fix));
    }
}

/// Where a check's problem is and its fix: an unknown key inside a known kind gets "did you mean"
/// and that kind's own keys; an unknown kind gets "did you mean" among every kind.
fn check_problem(item_key: &str, kind: Option<&str>, message: &str) -> (String, String) {
    let kinds = CHECK_KINDS.join(", ");
    let Some(kind) = kind.filter(|kind| CHECK_KINDS.contains(kind)) else {
        let near = kind.and_then(|kind| closest(kind, CHECK_KINDS.iter().copied()));
        let fix = match near {
            Some(near) => format!("did you mean `{near}`? A check is one of: {kinds}"),
            None => format!(
                "a check is one of: {kinds}, e.g. `- duration: {{ max: PT2H }}` (`pimgate rules reference` lists their keys)"
            ),
        };
        return (item_key.to_string(), fix);
    };
    let kind_key = format!("{item_key}.{kind}");
    let keys = kind_keys(kind);
    let known = format!("`{kind}` keys: {}", keys.join(", "));
    match super::report::quoted_after(message, "unknown field `") {
        Some(field) => {
            let fix = match closest(field, keys.iter().copied()) {
                Some(near) if !field.is_empty() => format!("did you mean `{near}`? {known}"),
                _ => known,
            };
            (child(&kind_key, field), fix)
        }
        None => (
            kind_key,
            format!("{known} (`pimgate rules reference` gives their types and an example)"),
        ),
    }
}

/// The example each `match:` key's fix shows.
pub fn match_example(name: &str) -> &'static str {
    match name {
        "roles" => "roles: [Exchange Administrator]",
        "tiers" => "tiers: [High, Medium]",
        "access" => "access: [member]",
        "resource_types" => "resource_types: [entraRoles]",
        "scopes" => "scopes: [/subscriptions/<id>/*]",
        "actions" => "actions: [selfExtend, selfRenew]",
        "groups" => "groups: [tier0-admins]",
        "stages" => "stages: [pre_approval]",
        _ => "[0c2d8f4e-1111-4a2b-9c3d-5e6f7a8b9c0d]",
    }
}

/// `match:`: a mapping of known keys, each a non-empty list of strings. Returns whether it is valid
/// (values are resolved by `build_match`).
pub(super) fn validate_match(
    out: &mut Vec<Diagnostic>,
    key: &str,
    field: &Field<MatchSpec>,
) -> bool {
    let mut problems = Vec::new();
    if let Some(raw) = mapping(&mut problems, key, &field.raw, "match") {
        unknown_keys(&mut problems, key, raw, field_names::<MatchSpec>());
        if let Some(spec) = read(
            &mut problems,
            key,
            field,
            "write `match` as `key: value` lines",
        ) {
            for (name, list) in match_lists(spec) {
                let Some(list) = list else { continue };
                let field_key = format!("{key}.{name}");
                let example = match_example(name);
                let fix = format!("write a list of strings, e.g. `{example}`");
                if read(&mut problems, &field_key, list, &fix).is_some_and(Vec::is_empty) {
                    problems.push(Diagnostic::error(
                        &field_key,
                        format!("an empty `{name}` list matches nothing"),
                        format!("remove `{name}` to match any, or list values, e.g. `{example}`"),
                    ));
                }
            }
        }
    }
    let valid = !has_errors(&problems);
    out.extend(problems);
    valid
}

/// The keys of `match:` with their lists, named as in the file.
pub(super) fn match_lists(spec: &MatchSpec) -> [(&'static str, Option<&Field<Vec<String>>>); 9] {
    [
        ("roles", spec.roles.as_ref()),
        ("tiers", spec.tiers.as_ref()),
        ("groups", spec.groups.as_ref()),
        ("access", spec.access.as_ref()),
        ("resource_types", spec.resource_types.as_ref()),
        ("scopes", spec.scopes.as_ref()),
        ("actions", spec.actions.as_ref()),
        ("principals", spec.principals.as_ref()),
        ("stages", spec.stages.as_ref()),
    ]
}
