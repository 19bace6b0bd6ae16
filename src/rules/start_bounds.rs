//! Load-time lint: a policy whose checks judge the activation's time (a window, an on-call roster, a
//! change's planned window, a leave date) should bound how far ahead the activation may start.
//!
//! Those checks judge the effective start (`payload::ActivationInterval`), which is the requested
//! start when it lies ahead. Unbounded, a request for a start months away is judged against a roster
//! or change plan that far out, which is a forecast, not evidence. A `start` check with `max_future`
//! in `require` bounds it for every outcome; when the time-sensitive checks are all in
//! `auto_approve`, a bound there (which only costs the shortcut) is enough.

use crate::checks::{NamedCheck, TimeRole};
use crate::vocabulary::diagnostic::Diagnostic;

use super::Policy;

/// The fix every warning carries.
const FIX: &str = "add `- start: { max_future: P1D }` to the policy's `require` (the longest lead time you accept), so a far-future start is refused instead of judged against a forecast";

/// Reports, through `warn(file, warning)`, each policy of `compiled` (policy, file index,
/// key such as `policies[3]`) whose time-sensitive checks leave the start unbounded.
pub(super) fn warn_unbounded_starts(
    compiled: &[(Policy, usize, String)],
    warn: &mut dyn FnMut(usize, Diagnostic),
) {
    for (policy, file, key) in compiled {
        if let Some((check_key, kinds)) = unbounded(policy, key) {
            warn(
                *file,
                Diagnostic::warning(
                    check_key,
                    format!(
                        "policy `{}` has checks that judge the activation's time ({kinds}), but no `start` check bounds how far ahead the activation may start",
                        policy.name
                    ),
                    FIX,
                ),
            );
        }
    }
}

/// The key of the first time-sensitive check and the kinds involved, when the start is unbounded.
fn unbounded(policy: &Policy, key: &str) -> Option<(String, String)> {
    let judging = |stage: &'static str, checks: &'_ [NamedCheck]| {
        checks
            .iter()
            .enumerate()
            .filter(|(_, check)| check.check.time_role() == TimeRole::JudgesInterval)
            .map(|(index, check)| (format!("{key}.{stage}[{index}].{}", check.kind), check.kind))
            .collect::<Vec<_>>()
    };
    let bounds = |checks: &[NamedCheck]| {
        checks
            .iter()
            .any(|check| check.check.time_role() == TimeRole::BoundsLeadTime)
    };
    let in_require = judging("require", &policy.require);
    let in_auto = judging("auto_approve", &policy.auto_approve);
    let bounded = if in_require.is_empty() {
        bounds(&policy.require) || bounds(&policy.auto_approve)
    } else {
        bounds(&policy.require)
    };
    let first = in_require.first().or(in_auto.first())?;
    if bounded {
        return None;
    }
    let mut kinds: Vec<&str> = in_require
        .iter()
        .chain(&in_auto)
        .map(|(_, kind)| *kind)
        .collect();
    kinds.dedup();
    let kinds = kinds
        .iter()
        .map(|kind| format!("`{kind}`"))
        .collect::<Vec<_>>()
        .join(", ");
    Some((first.0.clone(), kinds))
}

#[cfg(test)]
mod tests {
    use crate::rules::load_str;
    use crate::vocabulary::diagnostic::{Diagnostic, Severity};

    fn warnings(yaml: &str) -> Vec<Diagnostic> {
        let rules = match load_str("rules.yaml", yaml) {
            Ok(rules) => rules.warnings,
            Err(problems) => problems,
        };
        rules
            .into_iter()
            .filter(|problem| {
                problem.severity == Severity::Warning && problem.message.contains("how far ahead")
            })
            .collect()
    }

    const WINDOW: &str = "windows:\n  w:\n    timezone: UTC\n    weekly: [{ days: [Tue], from: \"18:00\", to: \"23:00\" }]\n";

    #[test]
    fn a_window_without_a_start_bound_is_warned_about_with_the_fix() {
        let found = warnings(&format!(
            "policies:\n  - name: p\n    require:\n      - duration: {{ max: PT1H }}\n      - window: w\n{WINDOW}"
        ));
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].key, "policies[0].require[1].window");
        assert_eq!(found[0].line, Some(5));
        assert!(
            found[0]
                .message
                .contains("policy `p` has checks that judge the activation's time (`window`)"),
            "{}",
            found[0].message
        );
        assert!(found[0].fix.contains("max_future: P1D"), "{}", found[0].fix);
    }

    #[test]
    fn a_start_bound_in_require_silences_it_and_a_past_bound_does_not() {
        let bounded = format!(
            "policies:\n  - name: p\n    require:\n      - window: w\n      - start: {{ max_future: P1D }}\n{WINDOW}"
        );
        assert!(warnings(&bounded).is_empty());
        let past_only = format!(
            "policies:\n  - name: p\n    require:\n      - window: w\n      - start: {{ max_past: PT5M }}\n{WINDOW}"
        );
        assert_eq!(warnings(&past_only).len(), 1);
    }

    #[test]
    fn a_bound_in_auto_approve_covers_only_checks_in_auto_approve() {
        let oncall = "oncall: { source: file, schedules: [s] }";
        let all_auto = format!(
            "policies:\n  - name: p\n    match: {{ tiers: [High] }}\n    auto_approve:\n      - {oncall}\n      - start: {{ max_future: PT1H }}\n"
        );
        assert!(warnings(&all_auto).is_empty());
        let window_required = format!(
            "policies:\n  - name: p\n    match: {{ tiers: [High] }}\n    require:\n      - window: w\n    auto_approve:\n      - {oncall}\n      - start: {{ max_future: PT1H }}\n{WINDOW}"
        );
        let found = warnings(&window_required);
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(
            found[0].message.contains("`window`, `oncall`"),
            "{}",
            found[0].message
        );
    }

    #[test]
    fn itsm_and_hr_count_only_when_they_judge_time() {
        let timeless = "policies:\n  - name: p\n    require:\n      - itsm: { system: servicenow }\n      - hr: { source: file }\n";
        assert!(warnings(timeless).is_empty());
        let timed = "policies:\n  - name: p\n    require:\n      - itsm: { system: servicenow, covers_activation: true }\n      - hr: { source: file, not_leaving_within: P14D }\n";
        let found = warnings(timed);
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(
            found[0].message.contains("`itsm`, `hr`"),
            "{}",
            found[0].message
        );
    }
}
