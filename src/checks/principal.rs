//! `principal`: who may (or may never) pass a policy, by rules list name or Entra object id.

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use serde::Deserialize;

use super::registry::{BuildEnv, CheckKind, Reach};
use super::util::is_guid;
use super::{Check, CheckContext, CheckOutcome};
use crate::connectors::ConnectorId;
use crate::vocabulary::diagnostic::Diagnostic;

/// `principal: { allow: [oncall-team], deny: [break-glass, "0c2d...-guid"] }` (list names or object ids)
///
/// A name is looked up in the rules' `lists:` first, so a list may even be named like a GUID.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct PrincipalSpec {
    pub allow: Vec<String>,
    pub deny: Vec<String>,
}

/// Lower-case object id → where it came from (`list `oncall-team``, or the id itself), so a failure
/// can name the list that matched.
type Members = BTreeMap<String, String>;

#[derive(Debug)]
struct PrincipalCheck {
    allow: Members,
    allow_names: Vec<String>,
    deny: Members,
}

/// `- principal: ...` in the rules (see `registry::CheckKind`).
#[derive(Debug)]
pub struct PrincipalKind;

impl CheckKind for PrincipalKind {
    fn reference() -> crate::checks::registry::KindReference {
        crate::checks::registry::KindReference {
            summary: "The requester is (or is not) one of the named principals.",
            example: "- principal: { deny: [break-glass] }",
            keys: vec![
                crate::checks::registry::KeyDoc::new(
                    "allow",
                    "list of list names or object ids",
                    "[] (anyone)",
                    "[platform-admins]",
                    "When given, only these principals pass (a name refers to a top-level `lists:` entry).",
                ),
                crate::checks::registry::KeyDoc::new(
                    "deny",
                    "list of list names or object ids",
                    "[]",
                    "[break-glass]",
                    "These principals never pass.",
                ),
            ],
            reads: Vec::new(),
        }
    }

    const NAME: &'static str = "principal";
    const REACH: Reach = Reach::Local;
    type Spec = PrincipalSpec;

    fn connector(_spec: &PrincipalSpec) -> Option<ConnectorId> {
        None
    }

    fn build(spec: &PrincipalSpec, env: &BuildEnv<'_>) -> Result<Arc<dyn Check>, Vec<Diagnostic>> {
        build(spec, env)
    }
}

pub fn build(spec: &PrincipalSpec, env: &BuildEnv<'_>) -> Result<Arc<dyn Check>, Vec<Diagnostic>> {
    let mut problems = Vec::new();
    if spec.allow.is_empty() && spec.deny.is_empty() {
        problems.push(Diagnostic::error(
            String::new(),
            "the principal check has neither `allow` nor `deny`, so it checks nothing",
            "add `allow: [list-name]` or `deny: [list-name]` (names from `lists:` or object ids)",
        ));
    }
    let allow = resolve("allow", &spec.allow, env, &mut problems);
    let deny = resolve("deny", &spec.deny, env, &mut problems);
    if !problems.is_empty() {
        return Err(problems);
    }
    Ok(Arc::new(PrincipalCheck {
        allow,
        allow_names: spec.allow.clone(),
        deny,
    }))
}

fn resolve(
    key: &str,
    entries: &[String],
    env: &BuildEnv<'_>,
    problems: &mut Vec<Diagnostic>,
) -> Members {
    let mut members = Members::new();
    for (index, entry) in entries.iter().enumerate() {
        let name = entry.trim();
        if let Some(list) = env.lists.get(name) {
            for member in list {
                members
                    .entry(member.trim().to_ascii_lowercase())
                    .or_insert_with(|| format!("list `{name}`"));
            }
        } else if is_guid(name) {
            members
                .entry(name.to_ascii_lowercase())
                .or_insert_with(|| format!("`{name}`"));
        } else {
            let known: Vec<&str> = env.lists.keys().map(String::as_str).collect();
            let fix = if known.is_empty() {
                format!(
                    "define `{name}` under `lists:`, or write the principal's object id (a GUID)"
                )
            } else {
                format!(
                    "use one of the lists ({}), define `{name}` under `lists:`, or write an object id (a GUID)",
                    known.join(", ")
                )
            };
            problems.push(Diagnostic::error(
                format!("{key}[{index}]"),
                format!("`{name}` is neither a list in `lists:` nor an object id"),
                fix,
            ));
        }
    }
    members
}

#[async_trait]
impl Check for PrincipalCheck {
    async fn evaluate(&self, context: &CheckContext<'_>) -> CheckOutcome {
        let principal = context.request.principal_id.trim().to_ascii_lowercase();
        if let Some(source) = self.deny.get(&principal) {
            return CheckOutcome::fail(format!(
                "principal `{principal}` is denied for this role by {source}; \
                 activate with a different account or ask the PIM administrators"
            ))
            .with_evidence("principal_id", principal.as_str())
            .with_evidence("denied_by", source.as_str());
        }
        if !self.allow.is_empty() {
            return match self.allow.get(&principal) {
                Some(source) => CheckOutcome::pass(format!(
                    "principal `{principal}` is allowed by {source}"
                ))
                .with_evidence("principal_id", principal.as_str())
                .with_evidence("allowed_by", source.as_str()),
                None => CheckOutcome::fail(format!(
                    "principal `{principal}` is not among the principals allowed for this role ({}); \
                     ask to be added, or have an allowed colleague do this",
                    self.allow_names.join(", ")
                ))
                .with_evidence("principal_id", principal.as_str())
                .with_evidence("allowed", self.allow_names.clone()),
            };
        }
        CheckOutcome::pass(format!("principal `{principal}` is not denied"))
            .with_evidence("principal_id", principal.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checks::CheckStatus;
    use crate::checks::test_support::{PRINCIPAL, TestEnv, now, request, run};

    const BREAK_GLASS: &str = "0c2d8f4e-1111-4a2b-9c3d-5e6f7a8b9c0d";

    fn test_env() -> TestEnv {
        TestEnv {
            lists: BTreeMap::from([
                ("break-glass".to_string(), vec![BREAK_GLASS.to_string()]),
                (
                    "oncall-team".to_string(),
                    vec![PRINCIPAL.to_ascii_uppercase()],
                ),
            ]),
            ..Default::default()
        }
    }

    fn strings(values: &[&str]) -> Vec<String> {
        values.iter().map(|value| value.to_string()).collect()
    }

    #[test]
    fn unknown_names_and_empty_specs_are_reported() {
        let env = test_env();
        let spec = PrincipalSpec {
            allow: strings(&["oncall-team", "on-call"]),
            deny: strings(&[
                BREAK_GLASS,
                "breakglass",
                "0c2d8f4e11114a2b9c3d5e6f7a8b9c0d",
            ]),
        };
        let problems = build(&spec, &env.env()).unwrap_err();
        let keys: Vec<&str> = problems
            .iter()
            .map(|problem| problem.key.as_str())
            .collect();
        assert_eq!(keys, ["allow[1]", "deny[1]", "deny[2]"]);
        assert!(
            problems[0].fix.contains("break-glass, oncall-team"),
            "{}",
            problems[0].fix
        );

        let problems = build(&PrincipalSpec::default(), &env.env()).unwrap_err();
        assert_eq!(problems.len(), 1);
        assert_eq!(problems[0].key, "");
    }

    #[test]
    fn principals_are_matched_against_allow_and_deny() {
        let cases = [
            (
                "an allowed list member",
                vec!["oncall-team"],
                vec![],
                PRINCIPAL,
                CheckStatus::Pass,
            ),
            (
                "not in the allow list",
                vec!["oncall-team"],
                vec![],
                BREAK_GLASS,
                CheckStatus::Fail,
            ),
            (
                "a denied list member",
                vec![],
                vec!["break-glass"],
                BREAK_GLASS,
                CheckStatus::Fail,
            ),
            (
                "not denied and no allow list",
                vec![],
                vec!["break-glass"],
                PRINCIPAL,
                CheckStatus::Pass,
            ),
            (
                "deny wins over allow",
                vec!["oncall-team", BREAK_GLASS],
                vec!["break-glass"],
                BREAK_GLASS,
                CheckStatus::Fail,
            ),
            (
                "guid literals compare case-insensitively",
                vec![],
                vec!["0C2D8F4E-1111-4A2B-9C3D-5E6F7A8B9C0D"],
                BREAK_GLASS,
                CheckStatus::Fail,
            ),
            (
                "an allowed guid literal",
                vec![PRINCIPAL],
                vec![],
                PRINCIPAL,
                CheckStatus::Pass,
            ),
        ];
        let env = test_env();
        for (name, allow, deny, principal, expected) in cases {
            let spec = PrincipalSpec {
                allow: strings(&allow),
                deny: strings(&deny),
            };
            let check = build(&spec, &env.env()).unwrap();
            let mut request = request();
            request.principal_id = principal.to_string();
            let outcome = run(check.as_ref(), &request, now());
            assert_eq!(outcome.status, expected, "{name}: {}", outcome.message);
        }
    }

    #[test]
    fn a_denied_principal_is_told_which_list_denied_it() {
        let env = test_env();
        let spec = PrincipalSpec {
            deny: strings(&["break-glass"]),
            ..Default::default()
        };
        let check = build(&spec, &env.env()).unwrap();
        let mut request = request();
        request.principal_id = BREAK_GLASS.to_string();
        let outcome = run(check.as_ref(), &request, now());
        assert!(
            outcome
                .message
                .contains("denied for this role by list `break-glass`"),
            "{}",
            outcome.message
        );
        assert_eq!(outcome.evidence["denied_by"], "list `break-glass`");
    }
}
