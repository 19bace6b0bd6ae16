//! `start`: the activation may not be back-dated or scheduled too far ahead.
//!
//! `max_past` bounds the *requested* start: a back-dated activation runs from the decision (its
//! effective start is now, see `payload::ActivationInterval`), so back-dating gains nothing, but a
//! start far in the past is the mark of a stale or replayed request. `max_future` bounds the
//! *effective* start, which for a start after now is the requested one: it is the lead time over
//! which every time-sensitive check (window, on-call, change window, leave date) judges a future
//! that may still change, so `rules validate` warns about policies with such checks and no bound.

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Duration, SecondsFormat, Utc};
use serde::Deserialize;

use super::registry::{BuildEnv, CheckKind, Reach};
use super::util::duration_value;
use super::{Check, CheckContext, CheckOutcome, TimeRole};
use crate::connectors::ConnectorId;
use crate::payload::format_iso8601_duration;
use crate::vocabulary::diagnostic::Diagnostic;

/// `start: { max_past: PT5M, max_future: P7D }`: how far back the requested start may lie, and how
/// far ahead the activation may start. An omitted bound is not checked; a missing start means
/// "now" and always passes.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct StartSpec {
    pub max_past: Option<String>,
    pub max_future: Option<String>,
}

#[derive(Debug)]
struct StartCheck {
    max_past: Option<Duration>,
    max_future: Option<Duration>,
}

/// `- start: ...` in the rules (see `registry::CheckKind`).
#[derive(Debug)]
pub struct StartKind;

impl CheckKind for StartKind {
    fn reference() -> crate::checks::registry::KindReference {
        crate::checks::registry::KindReference {
            summary: "The activation is not back-dated or scheduled too far ahead.",
            example: "- start: { max_past: PT5M, max_future: P7D }",
            keys: vec![
                crate::checks::registry::KeyDoc::new(
                    "max_past",
                    "ISO-8601 duration",
                    "none (not checked)",
                    "PT5M",
                    "How far in the past the requested start may be.",
                ),
                crate::checks::registry::KeyDoc::new(
                    "max_future",
                    "ISO-8601 duration",
                    "none (not checked)",
                    "P7D",
                    "How far ahead the effective start may be (bounds the lead time other time checks judge).",
                ),
            ],
            reads: Vec::new(),
        }
    }

    const NAME: &'static str = "start";
    const REACH: Reach = Reach::Local;
    type Spec = StartSpec;

    fn connector(_spec: &StartSpec) -> Option<ConnectorId> {
        None
    }

    fn build(spec: &StartSpec, env: &BuildEnv<'_>) -> Result<Arc<dyn Check>, Vec<Diagnostic>> {
        build(spec, env)
    }
}

pub fn build(spec: &StartSpec, _env: &BuildEnv<'_>) -> Result<Arc<dyn Check>, Vec<Diagnostic>> {
    let mut problems = Vec::new();
    if spec.max_past.is_none() && spec.max_future.is_none() {
        problems.push(Diagnostic::error(
            String::new(),
            "the start check sets neither `max_past` nor `max_future`, so it checks nothing",
            "add `max_past: PT5M` and/or `max_future: P7D`",
        ));
    }
    let mut parse = |key: &str, value: &Option<String>| match value {
        Some(text) => match duration_value(key, text) {
            Ok(duration) => Some(duration),
            Err(problem) => {
                problems.push(*problem);
                None
            }
        },
        None => None,
    };
    let max_past = parse("max_past", &spec.max_past);
    let max_future = parse("max_future", &spec.max_future);
    if !problems.is_empty() {
        return Err(problems);
    }
    Ok(Arc::new(StartCheck {
        max_past,
        max_future,
    }))
}

fn timestamp(value: DateTime<Utc>) -> String {
    value.to_rfc3339_opts(SecondsFormat::Secs, true)
}

#[async_trait]
impl Check for StartCheck {
    async fn evaluate(&self, context: &CheckContext<'_>) -> CheckOutcome {
        let now = context.now;
        let effective = context.interval.start;
        let Some(start) = context.interval.requested_start else {
            return CheckOutcome::pass("the activation starts now")
                .with_evidence("requested_start", serde_json::Value::Null)
                .with_evidence("effective_start", timestamp(effective));
        };
        let with_facts = |outcome: CheckOutcome| {
            outcome
                .with_evidence("requested_start", timestamp(start))
                .with_evidence("effective_start", timestamp(effective))
                .with_evidence("now", timestamp(now))
                .with_evidence("max_past", self.max_past.map(format_iso8601_duration))
                .with_evidence("max_future", self.max_future.map(format_iso8601_duration))
        };
        if let Some(max_past) = self.max_past
            && now
                .checked_sub_signed(max_past)
                .is_some_and(|earliest| start < earliest)
        {
            return with_facts(CheckOutcome::fail(format!(
                "the requested start {} is {} in the past, more than the {} allowed; \
                 request a start of now or later",
                timestamp(start),
                format_iso8601_duration(now - start),
                format_iso8601_duration(max_past)
            )));
        }
        if let Some(max_future) = self.max_future
            && let Some(latest) = now.checked_add_signed(max_future)
            && effective > latest
        {
            return with_facts(CheckOutcome::fail(format!(
                "the requested start {} is {} ahead, more than the {} allowed; \
                 request a start no later than {}",
                timestamp(start),
                format_iso8601_duration(effective - now),
                format_iso8601_duration(max_future),
                timestamp(latest)
            )));
        }
        with_facts(CheckOutcome::pass(format!(
            "the requested start {} is within the allowed range",
            timestamp(start)
        )))
    }

    fn time_role(&self) -> TimeRole {
        if self.max_future.is_some() {
            TimeRole::BoundsLeadTime
        } else {
            TimeRole::Timeless
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checks::CheckStatus;
    use crate::checks::test_support::{TestEnv, at, now, request, run};

    fn spec(max_past: Option<&str>, max_future: Option<&str>) -> StartSpec {
        StartSpec {
            max_past: max_past.map(str::to_string),
            max_future: max_future.map(str::to_string),
        }
    }

    #[test]
    fn malformed_bounds_and_empty_specs_are_reported() {
        let env = TestEnv::default();
        let problems = build(&spec(Some("5m"), Some("P1M")), &env.env()).unwrap_err();
        let keys: Vec<&str> = problems
            .iter()
            .map(|problem| problem.key.as_str())
            .collect();
        assert_eq!(keys, ["max_past", "max_future"]);
        let problems = build(&spec(None, None), &env.env()).unwrap_err();
        assert_eq!(problems[0].key, "");
    }

    #[test]
    fn requested_starts_are_checked_against_both_bounds() {
        let cases = [
            (
                "no start means now",
                spec(Some("PT5M"), Some("P7D")),
                None,
                CheckStatus::Pass,
            ),
            (
                "a start exactly now",
                spec(Some("PT5M"), Some("P7D")),
                Some("2026-11-24T18:05:00Z"),
                CheckStatus::Pass,
            ),
            (
                "four minutes ago",
                spec(Some("PT5M"), Some("P7D")),
                Some("2026-11-24T18:01:00Z"),
                CheckStatus::Pass,
            ),
            (
                "exactly at the past bound",
                spec(Some("PT5M"), None),
                Some("2026-11-24T18:00:00Z"),
                CheckStatus::Pass,
            ),
            (
                "an hour ago",
                spec(Some("PT5M"), Some("P7D")),
                Some("2026-11-24T17:05:00Z"),
                CheckStatus::Fail,
            ),
            (
                "six days ahead",
                spec(Some("PT5M"), Some("P7D")),
                Some("2026-11-30T18:05:00Z"),
                CheckStatus::Pass,
            ),
            (
                "exactly at the future bound",
                spec(None, Some("P7D")),
                Some("2026-12-01T18:05:00Z"),
                CheckStatus::Pass,
            ),
            (
                "eight days ahead",
                spec(Some("PT5M"), Some("P7D")),
                Some("2026-12-02T18:05:00Z"),
                CheckStatus::Fail,
            ),
            (
                "no past bound",
                spec(None, Some("P7D")),
                Some("2026-01-01T00:00:00Z"),
                CheckStatus::Pass,
            ),
            (
                "no future bound",
                spec(Some("PT5M"), None),
                Some("2027-06-01T00:00:00Z"),
                CheckStatus::Pass,
            ),
        ];
        let env = TestEnv::default();
        for (name, spec, start, expected) in cases {
            let check = build(&spec, &env.env()).unwrap();
            let mut request = request();
            request.schedule.start = start.map(at);
            let outcome = run(check.as_ref(), &request, now());
            assert_eq!(outcome.status, expected, "{name}: {}", outcome.message);
        }
    }

    #[test]
    fn the_past_bound_reads_the_requested_start_and_the_future_bound_the_effective_one() {
        let env = TestEnv::default();
        let check = build(&spec(Some("PT5M"), Some("P1D")), &env.env()).unwrap();
        let mut request = request();
        request.schedule.start = Some(at("2026-11-24T18:03:00Z"));
        let outcome = run(check.as_ref(), &request, now());
        assert_eq!(outcome.status, CheckStatus::Pass, "{}", outcome.message);
        assert_eq!(outcome.evidence["requested_start"], "2026-11-24T18:03:00Z");
        assert_eq!(
            outcome.evidence["effective_start"], "2026-11-24T18:05:00Z",
            "a back-dated start runs from now"
        );
        assert_eq!(
            outcome.holds_at, None,
            "the bounds are about the request itself"
        );
        assert_eq!(check.time_role(), TimeRole::BoundsLeadTime);
        let past_only = build(&spec(Some("PT5M"), None), &env.env()).unwrap();
        assert_eq!(past_only.time_role(), TimeRole::Timeless);
    }

    #[test]
    fn failures_name_the_start_and_the_bound() {
        let env = TestEnv::default();
        let check = build(&spec(Some("PT5M"), Some("P7D")), &env.env()).unwrap();
        let mut request = request();
        request.schedule.start = Some(at("2026-11-24T16:05:00Z"));
        let outcome = run(check.as_ref(), &request, now());
        assert_eq!(
            outcome.message,
            "the requested start 2026-11-24T16:05:00Z is PT2H in the past, more than the PT5M allowed; request a start of now or later"
        );
        request.schedule.start = Some(at("2026-12-04T18:05:00Z"));
        let outcome = run(check.as_ref(), &request, now());
        assert_eq!(
            outcome.message,
            "the requested start 2026-12-04T18:05:00Z is P10D ahead, more than the P7D allowed; request a start no later than 2026-12-01T18:05:00Z"
        );
        assert_eq!(outcome.evidence["max_future"], "P7D");
    }
}
