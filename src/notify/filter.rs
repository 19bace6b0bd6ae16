//! Which decisions a target hears about. Each list narrows (empty = no restriction), the lists
//! combine with AND, the values inside one list with OR: `outcomes = ["Denied"]` and
//! `tiers = ["critical"]` is "every Denied for a Critical role".

use crate::decision::{Decision, Outcome};
use crate::payload::{ActivationRequest, Stage};
use crate::rules::catalog::Tier;
use crate::vocabulary::diagnostic::Diagnostic;

use crate::settings::notify::NotifySettings;

/// The facts of one decision a filter looks at, taken without allocating.
#[derive(Debug, Clone, Copy)]
pub struct Subject<'a> {
    pub outcome: Outcome,
    pub policy: Option<&'a str>,
    /// The Entra built-in role's tier; `None` for groups, Azure and custom roles.
    pub tier: Option<Tier>,
    pub stage: Stage,
    /// A `mode: audit` policy would have answered something other than the live outcome.
    pub shadow_disagrees: bool,
}

impl<'a> Subject<'a> {
    pub fn of(decision: &'a Decision, request: &ActivationRequest) -> Self {
        Subject {
            outcome: decision.outcome,
            policy: decision.policy.as_deref(),
            tier: crate::rules::matcher::target_tier(request),
            stage: decision.stage,
            shadow_disagrees: decision
                .shadow
                .iter()
                .any(|shadow| shadow.outcome != decision.outcome),
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Filter {
    outcomes: Vec<Outcome>,
    policies: Vec<String>,
    tiers: Vec<Tier>,
    stages: Vec<Stage>,
    shadow_disagreement: bool,
}

impl Filter {
    /// Parses the filter keys of target `index`; every unknown value is a problem naming its key.
    pub fn from_settings(target: &NotifySettings, index: usize) -> Result<Filter, Vec<Diagnostic>> {
        let mut problems = Vec::new();
        let outcomes = parse_all(
            &target.outcomes,
            |text| {
                [Outcome::Approved, Outcome::AutoApproved, Outcome::Denied]
                    .into_iter()
                    .find(|outcome| outcome.as_str().eq_ignore_ascii_case(text.trim()))
            },
            &format!("notify[{index}].outcomes"),
            "use `Approved`, `AutoApproved` or `Denied`",
            &mut problems,
        );
        let tiers = parse_all(
            &target.tiers,
            Tier::parse,
            &format!("notify[{index}].tiers"),
            "use `critical`, `high`, `medium` or `low`",
            &mut problems,
        );
        let stages = parse_all(
            &target.stages,
            |text| {
                // The rules' spelling (`pre_approval`, `pre-approval`) or Graph's (`preApproval`).
                text.parse::<Stage>().ok().or_else(|| {
                    Stage::ALL
                        .into_iter()
                        .find(|stage| stage.as_str().eq_ignore_ascii_case(text.trim()))
                })
            },
            &format!("notify[{index}].stages"),
            "use `pre_approval` or `post_approval`",
            &mut problems,
        );
        if target
            .policies
            .iter()
            .any(|policy| policy.trim().is_empty())
        {
            problems.push(Diagnostic::error(
                format!("notify[{index}].policies"),
                "holds an empty policy name",
                "list policy names as the rule files spell them",
            ));
        }
        if problems.is_empty() {
            Ok(Filter {
                outcomes,
                policies: target.policies.clone(),
                tiers,
                stages,
                shadow_disagreement: target.shadow_disagreement,
            })
        } else {
            Err(problems)
        }
    }

    pub fn matches(&self, subject: &Subject<'_>) -> bool {
        (self.outcomes.is_empty() || self.outcomes.contains(&subject.outcome))
            && (self.policies.is_empty()
                || subject
                    .policy
                    .is_some_and(|policy| self.policies.iter().any(|name| name == policy)))
            && (self.tiers.is_empty()
                || subject.tier.is_some_and(|tier| self.tiers.contains(&tier)))
            && (self.stages.is_empty() || self.stages.contains(&subject.stage))
            && (!self.shadow_disagreement || subject.shadow_disagrees)
    }
}

fn parse_all<T>(
    texts: &[String],
    parse: impl Fn(&str) -> Option<T>,
    key: &str,
    fix: &str,
    problems: &mut Vec<Diagnostic>,
) -> Vec<T> {
    let mut parsed = Vec::new();
    for text in texts {
        match parse(text) {
            Some(value) => parsed.push(value),
            None => problems.push(Diagnostic::error(
                key,
                format!("unknown value `{text}`"),
                fix,
            )),
        }
    }
    parsed
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::notify::NotifyKind;

    fn target(edit: impl FnOnce(&mut NotifySettings)) -> NotifySettings {
        let mut settings: NotifySettings = toml_like("security", NotifyKind::Teams);
        edit(&mut settings);
        settings
    }

    fn toml_like(name: &str, kind: NotifyKind) -> NotifySettings {
        serde_json::from_value(serde_json::json!({
            "name": name,
            "kind": kind,
            "url": { "env": "X" },
        }))
        .expect("minimal target")
    }

    fn subject(outcome: Outcome, tier: Option<Tier>) -> Subject<'static> {
        Subject {
            outcome,
            policy: Some("entra-short"),
            tier,
            stage: Stage::PreApproval,
            shadow_disagrees: false,
        }
    }

    #[test]
    fn an_empty_filter_lets_every_decision_through() {
        let filter = Filter::from_settings(&target(|_| {}), 0).expect("valid");
        for outcome in [Outcome::Approved, Outcome::AutoApproved, Outcome::Denied] {
            assert!(filter.matches(&subject(outcome, None)));
        }
    }

    #[test]
    fn every_denied_for_a_critical_role_needs_both_the_outcome_and_the_tier() {
        let filter = Filter::from_settings(
            &target(|t| {
                t.outcomes = vec!["Denied".into()];
                t.tiers = vec!["Critical".into()];
            }),
            0,
        )
        .expect("valid");
        let cases = [
            (
                Outcome::Denied,
                Some(Tier::Critical),
                true,
                "denied critical",
            ),
            (Outcome::Denied, Some(Tier::High), false, "denied high"),
            (Outcome::Denied, None, false, "denied group (no tier)"),
            (
                Outcome::AutoApproved,
                Some(Tier::Critical),
                false,
                "auto-approved critical",
            ),
        ];
        for (outcome, tier, expected, case) in cases {
            assert_eq!(filter.matches(&subject(outcome, tier)), expected, "{case}");
        }
    }

    #[test]
    fn policy_stage_and_shadow_filters_each_narrow() {
        let by_policy = Filter::from_settings(&target(|t| t.policies = vec!["other".into()]), 0)
            .expect("valid");
        assert!(!by_policy.matches(&subject(Outcome::Denied, None)));
        let mut no_policy = subject(Outcome::Denied, None);
        no_policy.policy = None;
        assert!(
            !by_policy.matches(&no_policy),
            "no policy matched is not `other`"
        );

        for spelling in ["post_approval", "post-approval", "postApproval"] {
            let by_stage = Filter::from_settings(&target(|t| t.stages = vec![spelling.into()]), 0)
                .expect("valid");
            assert!(
                !by_stage.matches(&subject(Outcome::Denied, None)),
                "{spelling}"
            );
        }

        let shadow =
            Filter::from_settings(&target(|t| t.shadow_disagreement = true), 0).expect("valid");
        let mut disagreeing = subject(Outcome::Denied, None);
        assert!(!shadow.matches(&disagreeing));
        disagreeing.shadow_disagrees = true;
        assert!(shadow.matches(&disagreeing));
    }

    #[test]
    fn the_settings_accept_exactly_the_catalogs_tier_names() {
        let names: Vec<&str> = Tier::ALL.into_iter().map(Tier::as_str).collect();
        assert_eq!(names, crate::settings::notify::TIER_NAMES);
    }

    #[test]
    fn unknown_filter_values_are_all_reported_with_their_keys() {
        let problems = Filter::from_settings(
            &target(|t| {
                t.outcomes = vec!["Aproved".into()];
                t.tiers = vec!["severe".into()];
                t.stages = vec!["later".into()];
            }),
            2,
        )
        .expect_err("invalid");
        let keys: Vec<String> = problems.iter().map(|p| p.key.clone()).collect();
        assert_eq!(
            keys,
            ["notify[2].outcomes", "notify[2].tiers", "notify[2].stages"]
        );
    }
}
