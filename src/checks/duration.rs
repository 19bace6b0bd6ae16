//! `duration`: caps how long an activation may last, and whether it may have no end at all.
//!
//! The cap applies to the length the request asks for (its duration, or end − requested start), so
//! back-dating a start never shortens what is measured. An end date that is not after the effective
//! start (`payload::ActivationInterval`: now, for a back-dated start) fails: that activation would
//! already be over.

use std::sync::Arc;

use async_trait::async_trait;
use chrono::Duration;
use serde::Deserialize;

use super::registry::{BuildEnv, CheckKind, Reach};
use super::util::duration_value;
use super::{Check, CheckContext, CheckOutcome};
use crate::connectors::ConnectorId;
use crate::payload::{ExpirationKind, format_iso8601_duration};
use crate::vocabulary::diagnostic::Diagnostic;

/// `duration: { max: PT2H, allow_no_expiration: false }`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DurationSpec {
    /// ISO-8601 duration, e.g. `PT2H`.
    pub max: String,
    #[serde(default)]
    pub allow_no_expiration: bool,
}

/// When PIM sends only an end time and no start, the duration is measured from our clock, which may
/// run a little behind PIM's; this much slack keeps a request for exactly `max` from failing on skew.
const CLOCK_SKEW_ALLOWANCE: Duration = Duration::seconds(60);

#[derive(Debug)]
struct DurationCheck {
    max: Duration,
    allow_no_expiration: bool,
}

/// `- duration: ...` in the rules (see `registry::CheckKind`).
#[derive(Debug)]
pub struct DurationKind;

impl CheckKind for DurationKind {
    fn reference() -> crate::checks::registry::KindReference {
        crate::checks::registry::KindReference {
            summary: "The requested activation is no longer than `max`.",
            example: "- duration: { max: PT2H }",
            keys: vec![
                crate::checks::registry::KeyDoc::new(
                    "max",
                    "ISO-8601 duration",
                    "required",
                    "PT2H",
                    "Longest activation allowed.",
                ),
                crate::checks::registry::KeyDoc::new(
                    "allow_no_expiration",
                    "boolean",
                    "false",
                    "true",
                    "Whether a request without an end (`noExpiration`) may pass.",
                ),
            ],
            reads: Vec::new(),
        }
    }

    const NAME: &'static str = "duration";
    const REACH: Reach = Reach::Local;
    type Spec = DurationSpec;

    fn connector(_spec: &DurationSpec) -> Option<ConnectorId> {
        None
    }

    fn build(spec: &DurationSpec, env: &BuildEnv<'_>) -> Result<Arc<dyn Check>, Vec<Diagnostic>> {
        build(spec, env)
    }
}

pub fn build(spec: &DurationSpec, _env: &BuildEnv<'_>) -> Result<Arc<dyn Check>, Vec<Diagnostic>> {
    let max = duration_value("max", &spec.max).map_err(|problem| vec![*problem])?;
    Ok(Arc::new(DurationCheck {
        max,
        allow_no_expiration: spec.allow_no_expiration,
    }))
}

#[async_trait]
impl Check for DurationCheck {
    async fn evaluate(&self, context: &CheckContext<'_>) -> CheckOutcome {
        let schedule = &context.request.schedule;
        let max = format_iso8601_duration(self.max);
        let requested = match schedule.expiration_kind {
            ExpirationKind::NoExpiration => None,
            _ => schedule.requested_duration(context.now),
        };
        let Some(requested) = requested else {
            let outcome = if self.allow_no_expiration {
                CheckOutcome::pass("the activation has no expiration, which this role allows")
            } else {
                CheckOutcome::fail(format!(
                    "the activation has no expiration, but this role must expire within {max}; \
                     request a duration of {max} or less"
                ))
            };
            return outcome
                .with_evidence("requested", serde_json::Value::Null)
                .with_evidence("max", max.as_str())
                .with_evidence("allow_no_expiration", self.allow_no_expiration);
        };
        if requested <= Duration::zero() {
            return CheckOutcome::fail(
                "the requested end time is not after the start time; request an end after the start",
            )
            .with_evidence("requested_seconds", requested.num_seconds())
            .with_evidence("max", max.as_str());
        }
        if let (Some(end), Some(length)) =
            (context.interval.end_instant(), context.interval.length())
            && length <= Duration::zero()
        {
            return CheckOutcome::fail(format!(
                "the requested end {} has already passed; request an end after now",
                end.format("%Y-%m-%d %H:%M UTC")
            ))
            .with_evidence("requested_seconds", requested.num_seconds())
            .with_evidence("max", max.as_str());
        }
        let measured_from_our_clock =
            schedule.duration.is_none() && schedule.start.is_none() && schedule.end.is_some();
        let limit = if measured_from_our_clock {
            self.max
                .checked_add(&CLOCK_SKEW_ALLOWANCE)
                .unwrap_or(self.max)
        } else {
            self.max
        };
        let requested_text = format_iso8601_duration(requested);
        let outcome = if requested > limit {
            CheckOutcome::fail(format!(
                "requested {requested_text} exceeds the maximum of {max} for this role; \
                 request {max} or less"
            ))
        } else {
            CheckOutcome::pass(format!(
                "requested {requested_text} is within the maximum of {max}"
            ))
        };
        outcome
            .with_evidence("requested", requested_text)
            .with_evidence("requested_seconds", requested.num_seconds())
            .with_evidence("max", max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checks::CheckStatus;
    use crate::checks::test_support::{TestEnv, at, now, request, run};

    fn check(max: &str, allow_no_expiration: bool) -> Arc<dyn Check> {
        let spec = DurationSpec {
            max: max.to_string(),
            allow_no_expiration,
        };
        build(&spec, &TestEnv::default().env()).unwrap()
    }

    #[test]
    fn a_malformed_max_is_a_problem_on_the_max_key() {
        for bad in ["2h", "P1M", "PT0S", "forever"] {
            let spec = DurationSpec {
                max: bad.to_string(),
                allow_no_expiration: false,
            };
            let problems = build(&spec, &TestEnv::default().env()).unwrap_err();
            assert_eq!(problems.len(), 1, "{bad}");
            assert_eq!(problems[0].key, "max", "{bad}");
            assert!(problems[0].fix.contains("PT2H"), "{bad}");
        }
    }

    #[test]
    fn requested_durations_are_compared_with_the_maximum() {
        type Setup = fn(&mut crate::payload::ActivationRequest);
        let cases: [(&str, Setup, bool, CheckStatus); 10] = [
            (
                "one hour under a two hour cap",
                |_| {},
                false,
                CheckStatus::Pass,
            ),
            (
                "exactly the cap",
                |r| r.schedule.duration = Some(Duration::hours(2)),
                false,
                CheckStatus::Pass,
            ),
            (
                "eight hours over a two hour cap",
                |r| r.schedule.duration = Some(Duration::hours(8)),
                false,
                CheckStatus::Fail,
            ),
            (
                "an end time three hours after an explicit start",
                |r| {
                    r.schedule.expiration_kind = ExpirationKind::AfterDateTime;
                    r.schedule.duration = None;
                    r.schedule.start = Some(at("2026-11-24T20:00:00Z"));
                    r.schedule.end = Some(at("2026-11-24T23:00:00Z"));
                },
                false,
                CheckStatus::Fail,
            ),
            (
                "an end time two hours and thirty seconds from now is clock skew",
                |r| {
                    r.schedule.expiration_kind = ExpirationKind::AfterDateTime;
                    r.schedule.duration = None;
                    r.schedule.end = Some(at("2026-11-24T20:05:30Z"));
                },
                false,
                CheckStatus::Pass,
            ),
            (
                "no expiration when not allowed",
                |r| {
                    r.schedule.expiration_kind = ExpirationKind::NoExpiration;
                    r.schedule.duration = None;
                },
                false,
                CheckStatus::Fail,
            ),
            (
                "no expiration when allowed",
                |r| {
                    r.schedule.expiration_kind = ExpirationKind::NoExpiration;
                    r.schedule.duration = None;
                },
                true,
                CheckStatus::Pass,
            ),
            (
                "nothing to compute a duration from",
                |r| {
                    r.schedule.expiration_kind = ExpirationKind::NotSpecified;
                    r.schedule.duration = None;
                },
                false,
                CheckStatus::Fail,
            ),
            (
                "a back-dated start with an end date that has passed",
                |r| {
                    r.schedule.expiration_kind = ExpirationKind::AfterDateTime;
                    r.schedule.duration = None;
                    r.schedule.start = Some(at("2026-11-24T17:00:00Z"));
                    r.schedule.end = Some(at("2026-11-24T18:00:00Z"));
                },
                false,
                CheckStatus::Fail,
            ),
            (
                "an end before the start",
                |r| {
                    r.schedule.expiration_kind = ExpirationKind::AfterDateTime;
                    r.schedule.duration = None;
                    r.schedule.start = Some(at("2026-11-24T20:00:00Z"));
                    r.schedule.end = Some(at("2026-11-24T19:00:00Z"));
                },
                false,
                CheckStatus::Fail,
            ),
        ];
        for (name, setup, allow_no_expiration, expected) in cases {
            let mut request = request();
            setup(&mut request);
            let outcome = run(check("PT2H", allow_no_expiration).as_ref(), &request, now());
            assert_eq!(outcome.status, expected, "{name}: {}", outcome.message);
        }
    }

    #[test]
    fn an_excessive_duration_names_the_requested_and_maximum_values() {
        let mut request = request();
        request.schedule.duration = Some(Duration::hours(8));
        let outcome = run(check("PT2H", false).as_ref(), &request, now());
        assert_eq!(
            outcome.message,
            "requested PT8H exceeds the maximum of PT2H for this role; request PT2H or less"
        );
        assert_eq!(outcome.evidence["requested"], "PT8H");
        assert_eq!(outcome.evidence["max"], "PT2H");
    }

    #[test]
    fn a_missing_expiration_says_what_to_request_instead() {
        let mut request = request();
        request.schedule.expiration_kind = ExpirationKind::NoExpiration;
        request.schedule.duration = None;
        let outcome = run(check("P1D", false).as_ref(), &request, now());
        assert!(
            outcome
                .message
                .contains("request a duration of P1D or less"),
            "{}",
            outcome.message
        );
    }
}
