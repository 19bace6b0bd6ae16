//! Builds policies and guards from specs `validate` has read: conditions compiled, checks built,
//! matchers resolved, and the rules that need them (Critical tier, contradictory guards) applied.
//! Every problem is reported; a rule with any error is not built.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;

use crate::checks::NamedCheck;
use crate::checks::registry::{BuildEnv, CheckSpec};
use crate::rules::cel::Condition;
use crate::rules::matcher::Matcher;
use crate::rules::{FixedDecision, Guard, Policy};
use crate::vocabulary::Outcome;
use crate::vocabulary::diagnostic::Diagnostic;

use super::build_match::build_match;
use super::report::has_errors;
use super::spec::{Field, GuardSpec, PolicySpec, RuleSpec};
use super::validate::outcome;

/// What a policy and a guard are built from alike.
struct Common {
    name: Option<String>,
    description: Option<String>,
    matcher: Option<Matcher>,
    when: Option<Condition>,
    require: Option<Vec<NamedCheck>>,
}

fn build_common(
    out: &mut Vec<Diagnostic>,
    key: &str,
    rule: &RuleSpec,
    env: &BuildEnv<'_>,
    defaults: Matcher,
) -> Common {
    let path = |name: &str| format!("{key}.{name}");
    let when = typed(&rule.when).and_then(|source| match Condition::compile(source) {
        Ok(condition) => Some(condition),
        Err(problem) => {
            out.push((*problem).under(&path("when")));
            None
        }
    });
    Common {
        name: typed(&rule.name)
            .filter(|name| !name.trim().is_empty())
            .cloned(),
        description: typed(&rule.description).cloned(),
        matcher: build_match(
            out,
            &path("match"),
            rule.matching.as_ref(),
            env.lists,
            defaults,
        ),
        when,
        require: build_checks(out, &path("require"), rule.require.as_ref(), env),
    }
}

/// The typed value of an optional field, when it is present and valid (else `validate` reported it).
fn typed<T>(field: &Option<Field<T>>) -> Option<&T> {
    field.as_ref().and_then(|field| field.typed.as_ref().ok())
}

/// The policy `key` describes, or `None` when it has an error (all reported in `out`).
pub(super) fn build_policy(
    out: &mut Vec<Diagnostic>,
    key: &str,
    spec: &PolicySpec,
    env: &BuildEnv<'_>,
    critical_groups: &BTreeSet<String>,
    source: &Path,
) -> Option<Policy> {
    let path = |name: &str| format!("{key}.{name}");
    let rule = &spec.rule;
    let common = build_common(out, key, rule, env, Matcher::default());
    let auto_approve = build_checks(
        out,
        &path("auto_approve"),
        spec.approving.auto_approve.as_ref(),
        env,
    );
    let decide = typed(&rule.decide).and_then(|text| outcome(text));
    let allow_critical = typed(&spec.approving.allow_auto_approve_on_critical)
        .copied()
        .unwrap_or(false);
    let auto_approves = decide == Some(Outcome::AutoApproved)
        || auto_approve
            .as_ref()
            .is_some_and(|checks| !checks.is_empty());
    // Applies to `mode: audit` too: an audit policy is a rehearsal of one that will be enforced, and
    // switching it to `enforce` must not be the moment it turns out to be illegal.
    let at = if decide == Some(Outcome::AutoApproved) {
        path("decide")
    } else {
        path("auto_approve")
    };
    let matcher = common.matcher.as_ref();
    if auto_approves && !allow_critical && matcher.is_some_and(Matcher::can_match_critical) {
        out.push(Diagnostic::error(
            &at,
            "this policy can auto-approve a Critical-tier role: its `match` names a Critical role, includes tier Critical, or does not restrict roles or tiers",
            "restrict `match` (e.g. `tiers: [High, Medium, Low]` or named non-Critical roles), or set `allow_auto_approve_on_critical: true` if skipping human approval for Critical roles is intended",
        ));
    }
    if auto_approves
        && !allow_critical
        && let Some(group) =
            matcher.and_then(|matcher| matcher.critical_group_it_can_match(critical_groups))
    {
        out.push(Diagnostic::error(
            &at,
            format!(
                "this policy can auto-approve group `{group}`, declared Critical under `groups:`: its `match` names the group or does not restrict groups"
            ),
            "restrict `match` to other groups (`groups: [...]`) or to roles (`resource_types: [entraRoles, azureResources]`), or set `allow_auto_approve_on_critical: true` if skipping human approval for that group is intended",
        ));
    }
    if has_errors(out) {
        return None;
    }
    Some(Policy {
        name: common.name?,
        description: common.description,
        source: source.to_path_buf(),
        decide: match (decide, typed(&rule.reason)) {
            (Some(outcome), Some(reason)) => Some(FixedDecision {
                outcome,
                reason: reason.clone(),
            }),
            _ => None,
        },
        require: common.require?,
        auto_approve: auto_approve?,
        on_error: typed(&rule.on_error).copied().unwrap_or_default(),
        matcher: common.matcher?,
        when: common.when,
        allow_auto_approve_on_critical: allow_critical,
        mode: typed(&rule.mode).copied().unwrap_or_default(),
    })
}

/// The guard `key` describes, or `None` when it has an error (all reported in `out`). A guard no
/// request can match is an error: an operator who writes "leavers are always denied" must not
/// believe it holds when it cannot.
pub(super) fn build_guard(
    out: &mut Vec<Diagnostic>,
    key: &str,
    spec: &GuardSpec,
    env: &BuildEnv<'_>,
    source: &Path,
) -> Option<Guard> {
    let rule = &spec.rule;
    let common = build_common(out, key, rule, env, Matcher::for_guard());
    if let Some(why) = common.matcher.as_ref().and_then(Matcher::contradiction) {
        out.push(Diagnostic::error(
            format!("{key}.match"),
            format!("this guard can never apply: {why}"),
            "remove the contradicting key, or split the guard in two (one per kind of request)",
        ));
    }
    if has_errors(out) {
        return None;
    }
    let denies = typed(&rule.decide).and_then(|text| outcome(text)) == Some(Outcome::Denied);
    Some(Guard {
        name: common.name?,
        description: common.description,
        source: source.to_path_buf(),
        matcher: common.matcher?,
        when: common.when,
        require: common.require?,
        deny_reason: typed(&rule.reason).filter(|_| denies).cloned(),
        on_error: typed(&rule.on_error).copied().unwrap_or_default(),
        mode: typed(&rule.mode).copied().unwrap_or_default(),
    })
}

/// The checks of `require:` or `auto_approve:` (none when absent), or `None` when one cannot be built.
fn build_checks(
    out: &mut Vec<Diagnostic>,
    key: &str,
    field: Option<&Field<Vec<Field<CheckSpec>>>>,
    env: &BuildEnv<'_>,
) -> Option<Vec<NamedCheck>> {
    let Some(field) = field else {
        return Some(Vec::new());
    };
    let items = field.typed.as_ref().ok()?;
    let mut checks = Vec::new();
    let mut ok = true;
    for (index, item) in items.iter().enumerate() {
        let item_key = format!("{key}[{index}]");
        let Ok(spec) = &item.typed else {
            ok = false;
            continue;
        };
        match spec.build(env) {
            Ok(mut check) => {
                if let Some(connector) = spec.required_connector()
                    && !env.connectors.is_configured(connector)
                {
                    let section = spec
                        .connector_section()
                        .unwrap_or_else(|| connector.to_string());
                    out.push(Diagnostic::warning(
                        format!("{item_key}.{}", spec.kind()),
                        format!(
                            "the `{connector}` connector is not configured, so this check cannot be evaluated and the policy's (or guard's) `on_error` decides"
                        ),
                        format!("configure `[connectors.{section}]` in the service's config file"),
                    ));
                    check.unconfigured = Some(section);
                }
                check.fingerprint = Some(check_fingerprint(&item.raw));
                checks.push(check);
            }
            Err(problems) => {
                ok = false;
                let prefix = format!("{item_key}.{}", spec.kind());
                out.extend(problems.into_iter().map(|problem| problem.under(&prefix)));
            }
        }
    }
    ok.then_some(checks)
}

/// A check as written (`- duration: { max: PT2H }`: its kind and spec), in one canonical text:
/// mapping keys sorted, strings quoted, so key order and quoting style do not matter and two
/// different specs never read alike. Checks are built from their spec and the rule set's shared
/// `lists:`, `windows:` and connectors alone, so two checks with one fingerprint in one rule set are
/// the same check and give the same outcome for the same request.
pub(super) fn check_fingerprint(raw: &yaml_serde::Value) -> String {
    let mut text = String::new();
    write_canonical(raw, &mut text);
    text
}

fn write_canonical(value: &yaml_serde::Value, out: &mut String) {
    use yaml_serde::Value;
    match value {
        Value::Null => out.push('~'),
        Value::Bool(flag) => out.push_str(if *flag { "true" } else { "false" }),
        Value::Number(number) => out.push_str(&number.to_string()),
        // `Debug` quotes and escapes: a string never reads as a number, a key or a delimiter.
        Value::String(text) => out.push_str(&format!("{text:?}")),
        Value::Sequence(items) => {
            out.push('[');
            for item in items {
                write_canonical(item, out);
                out.push(',');
            }
            out.push(']');
        }
        Value::Mapping(mapping) => {
            let mut entries: Vec<(String, String)> = mapping
                .iter()
                .map(|(key, value)| (check_fingerprint(key), check_fingerprint(value)))
                .collect();
            entries.sort_unstable();
            out.push('{');
            for (key, value) in entries {
                out.push_str(&key);
                out.push(':');
                out.push_str(&value);
                out.push(',');
            }
            out.push('}');
        }
        Value::Tagged(tagged) => {
            out.push_str(&format!("!{:?}(", tagged.tag.to_string()));
            write_canonical(&tagged.value, out);
            out.push(')');
        }
    }
}

/// Gives every check whose fingerprint occurs more than once in the rule set (in guards, enforcing
/// and `audit` policies, `require` and `auto_approve` alike) one slot of the per-request memo, the
/// same for all its occurrences; every other check gets none. Returns the number of slots.
pub(super) fn share_identical_checks(policies: &mut [Policy], guards: &mut [Guard]) -> usize {
    fn every<'a>(
        policies: &'a mut [Policy],
        guards: &'a mut [Guard],
    ) -> impl Iterator<Item = &'a mut NamedCheck> {
        policies
            .iter_mut()
            .flat_map(|policy| {
                policy
                    .require
                    .iter_mut()
                    .chain(policy.auto_approve.iter_mut())
            })
            .chain(guards.iter_mut().flat_map(|guard| guard.require.iter_mut()))
    }
    let mut occurrences: HashMap<String, usize> = HashMap::new();
    for check in every(policies, guards) {
        if let Some(fingerprint) = &check.fingerprint {
            *occurrences.entry(fingerprint.clone()).or_default() += 1;
        }
    }
    let mut slots: HashMap<String, usize> = HashMap::new();
    for check in every(policies, guards) {
        check.shared = None;
        let Some(fingerprint) = &check.fingerprint else {
            continue;
        };
        if occurrences.get(fingerprint).is_some_and(|count| *count > 1) {
            let next = slots.len();
            check.shared = Some(*slots.entry(fingerprint.clone()).or_insert(next));
        }
    }
    slots.len()
}

#[cfg(test)]
mod tests {
    use super::check_fingerprint;

    fn fingerprint(yaml: &str) -> String {
        check_fingerprint(&yaml_serde::from_str(yaml).unwrap())
    }

    #[test]
    fn a_checks_fingerprint_ignores_key_order_and_quoting_style_only() {
        let same = [
            "start: { max_past: PT5M, max_future: P7D }",
            "start: {max_future: 'P7D', max_past: \"PT5M\"}",
            "start:\n  max_future: P7D\n  max_past: PT5M\n",
        ];
        for yaml in same {
            assert_eq!(fingerprint(yaml), fingerprint(same[0]), "{yaml}");
        }
        let different = [
            "start: { max_past: PT5M }",
            "start: { max_past: PT5M, max_future: P8D }",
            "justification: { min_length: 10 }",
            "justification: { min_length: '10' }",
            "justification: { deny_patterns: [a, b] }",
            "justification: { deny_patterns: [b, a] }",
            "justification: { deny_patterns: ['a,b'] }",
        ];
        for (index, yaml) in different.iter().enumerate() {
            for other in different.iter().skip(index + 1) {
                assert_ne!(fingerprint(yaml), fingerprint(other), "{yaml} vs {other}");
            }
            assert_ne!(fingerprint(yaml), fingerprint(same[0]), "{yaml}");
        }
    }

    #[test]
    fn only_checks_named_more_than_once_in_the_rule_set_get_a_memo_slot() {
        let rules = crate::rules::load_str(
            "rules.yaml",
            "guards:
  - name: g
    require:
      - duration: { max: PT2H }
      - principal: { deny: [0c2d8f4e-1111-4a2b-9c3d-5e6f7a8b9c0d] }
policies:
  - name: shadow
    mode: audit
    require:
      - principal: { deny: [0c2d8f4e-1111-4a2b-9c3d-5e6f7a8b9c0d] }
  - name: p
    require:
      - duration: { max: PT2H }
      - start: { max_past: PT5M }
",
        )
        .unwrap();
        assert_eq!(rules.shared_slots, 2);
        let guard: Vec<Option<usize>> = rules.guards[0].require.iter().map(|c| c.shared).collect();
        let shadow = rules.policies[0].require[0].shared;
        let policy: Vec<Option<usize>> =
            rules.policies[1].require.iter().map(|c| c.shared).collect();
        assert_eq!(policy, [guard[0], None]);
        assert_eq!(shadow, guard[1]);
        assert_ne!(guard[0], guard[1]);
        assert!(guard.iter().all(Option::is_some));
    }
}
