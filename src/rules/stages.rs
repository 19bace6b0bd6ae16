//! Load-time lint about PIM's two stages (`match: { stages: [...] }`).
//!
//! A policy or guard without `stages` applies at both: a rule set written for the pre-approval
//! stage then re-checks the same requirements after a human approved, which is what the
//! post-approval stage is for, and its pre-approval meaning is unchanged. Two things deserve a word
//! at load: a stage no enforcing policy applies at (every activation is `Denied` there, which is
//! safe but rarely meant), and a policy that names `post_approval` yet auto-approves (after a human
//! approved, `AutoApproved` means nothing: the engine answers `Approved`, and its `auto_approve`
//! checks are not run). A policy that only inherits both stages is not warned about: that is the
//! default every existing auto-approving policy has, and the engine caps it.

use crate::payload::Stage;
use crate::vocabulary::Outcome;
use crate::vocabulary::diagnostic::Diagnostic;

use super::{Policy, PolicyMode};

/// Reports, through `warn(file, warning)`, the stage problems of `compiled` (policy, file
/// index, key such as `policies[3]`). A stage nobody covers is reported against the first file
/// (index 0) under `policies`; nothing is said about an empty rule set, which has its own warning.
pub(super) fn warn_stages(
    compiled: &[(Policy, usize, String)],
    warn: &mut dyn FnMut(usize, Diagnostic),
) {
    if !compiled.is_empty() {
        for stage in Stage::ALL {
            let covered = compiled.iter().any(|(policy, _, _)| {
                policy.mode == PolicyMode::Enforce
                    && policy
                        .matcher
                        .stages
                        .as_ref()
                        .is_none_or(|stages| stages.contains(&stage))
            });
            if !covered {
                warn(
                    0,
                    Diagnostic::warning(
                        "policies",
                        format!(
                            "no enforcing policy applies at {stage}: if PIM's {stage} extension calls pimgate (POST {}), every activation is Denied there",
                            stage.path()
                        ),
                        format!(
                            "add a policy with `match: {{ stages: [{stage}] }}`, or leave `stages` out of a policy so it applies at both stages"
                        ),
                    ),
                );
            }
        }
    }
    for (policy, file, key) in compiled {
        let names_post_approval = policy
            .matcher
            .stages
            .as_ref()
            .is_some_and(|stages| stages.contains(&Stage::PostApproval));
        let auto_approves = policy
            .decide
            .as_ref()
            .is_some_and(|fixed| fixed.outcome == Outcome::AutoApproved)
            || !policy.auto_approve.is_empty();
        if names_post_approval && auto_approves {
            warn(
                *file,
                Diagnostic::warning(
                    format!("{key}.match.stages"),
                    format!(
                        "policy `{}` auto-approves, but after a human approved `AutoApproved` means nothing: at post_approval it answers Approved (its `auto_approve` checks are not run)",
                        policy.name
                    ),
                    "drop `post_approval` from `stages`, or make a separate post-approval policy without auto-approval",
                ),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::rules::load_str;
    use crate::vocabulary::diagnostic::{Diagnostic, Severity};

    fn warnings(yaml: &str) -> Vec<Diagnostic> {
        match load_str("rules.yaml", yaml) {
            Ok(rules) => rules.warnings,
            Err(problems) => panic!("rules do not load: {problems:?}"),
        }
    }

    fn about_stages(problems: &[Diagnostic]) -> Vec<(String, Option<usize>, String)> {
        problems
            .iter()
            .filter(|problem| problem.severity == Severity::Warning)
            .filter(|problem| problem.message.contains("approval"))
            .map(|problem| (problem.key.clone(), problem.line, problem.message.clone()))
            .collect()
    }

    #[test]
    fn a_rule_set_without_stages_covers_both_and_says_nothing() {
        let found = warnings(
            "policies:\n  - name: everyone\n    auto_approve:\n      - duration: { max: PT1H }\n    allow_auto_approve_on_critical: true\n",
        );
        assert_eq!(about_stages(&found), []);
    }

    #[test]
    fn a_stage_no_enforcing_policy_applies_at_is_a_warning_naming_its_route() {
        let found = warnings(
            "policies:\n  - name: first-look\n    match: { stages: [pre_approval] }\n    decide: Approved\n    reason: ok\n  - name: rehearsal\n    mode: audit\n    match: { stages: [post_approval] }\n    decide: Approved\n    reason: ok\n",
        );
        let stages = about_stages(&found);
        assert_eq!(stages.len(), 1, "{stages:?}");
        let (key, _, message) = &stages[0];
        assert_eq!(key, "policies");
        assert!(
            message.contains("no enforcing policy applies at post_approval")
                && message.contains("POST /v1/evaluate/post-approval"),
            "{message}"
        );
    }

    #[test]
    fn a_policy_naming_post_approval_that_auto_approves_is_told_it_answers_approved_there() {
        let found = warnings(
            "policies:\n  - name: fast\n    match:\n      stages: [pre_approval, post_approval]\n    decide: AutoApproved\n    reason: ok\n    allow_auto_approve_on_critical: true\n",
        );
        let stages = about_stages(&found);
        assert_eq!(stages.len(), 1, "{stages:?}");
        let (key, line, message) = &stages[0];
        assert_eq!(key, "policies[0].match.stages");
        assert_eq!(*line, Some(4));
        assert!(
            message.contains("at post_approval it answers Approved"),
            "{message}"
        );
    }

    #[test]
    fn an_unknown_stage_is_an_error_with_the_stages_to_use() {
        let Err(problems) = load_str(
            "rules.yaml",
            "policies:\n  - name: p\n    match: { stages: [postapproval] }\n    decide: Approved\n    reason: ok\n",
        ) else {
            panic!("an unknown stage loads");
        };
        let problem = problems
            .iter()
            .find(|problem| problem.key == "policies[0].match.stages[0]")
            .unwrap_or_else(|| panic!("{problems:?}"));
        assert_eq!(problem.severity, Severity::Error);
        assert!(problem.fix.contains("pre_approval or post_approval"));
    }
}
