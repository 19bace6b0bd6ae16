//! The effective activation interval: the one answer to "when would this activation run", computed
//! once per request so every time-sensitive check judges the same span.
//!
//! An activation cannot begin before it is decided, so a back-dated start runs from *now*; a start
//! later than now runs from that start. The end follows the request: `start + duration` (measured
//! from the effective start, so a back-dated start does not make the activation end sooner), the
//! requested end date, or no end at all. "No expiration" and "not specified" stay distinct, so a
//! check can say which one it met; both mean "no known end", and every check treats an unknown end
//! at least as strictly as a known one.

use chrono::{DateTime, Duration, SecondsFormat, Utc};
use serde::Serialize;

use super::{ExpirationKind, Schedule};

/// How the effective interval ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", content = "at", rename_all = "camelCase")]
pub enum ActivationEnd {
    /// At this instant: the effective start plus the requested duration, or the requested end date.
    At(DateTime<Utc>),
    /// The request asks for no expiration (`noExpiration`).
    NoExpiration,
    /// The request gives nothing to compute an end from (`notSpecified`, or a duration so long the
    /// end is past the calendar's range).
    NotSpecified,
}

/// `[start, end)` of the activation as it would actually run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ActivationInterval {
    /// `max(requested start, now)`; now when the request names no start.
    pub start: DateTime<Utc>,
    pub end: ActivationEnd,
    /// The start as requested (`None`: "now"), kept so messages can say a start was back-dated.
    pub requested_start: Option<DateTime<Utc>>,
    /// The decision time the interval was computed at.
    pub now: DateTime<Utc>,
}

impl ActivationInterval {
    /// The interval `schedule` asks for, decided at `now`. Pure: the same inputs give the same span.
    pub fn of(schedule: &Schedule, now: DateTime<Utc>) -> Self {
        let start = schedule.start.map_or(now, |requested| requested.max(now));
        let end = if schedule.expiration_kind == ExpirationKind::NoExpiration {
            ActivationEnd::NoExpiration
        } else if let Some(duration) = schedule.duration {
            start
                .checked_add_signed(duration)
                .map_or(ActivationEnd::NotSpecified, ActivationEnd::At)
        } else if let Some(end) = schedule.end {
            ActivationEnd::At(end)
        } else {
            ActivationEnd::NotSpecified
        };
        Self {
            start,
            end,
            requested_start: schedule.start,
            now,
        }
    }

    /// The end instant, when the activation has a known one.
    pub fn end_instant(&self) -> Option<DateTime<Utc>> {
        match self.end {
            ActivationEnd::At(end) => Some(end),
            ActivationEnd::NoExpiration | ActivationEnd::NotSpecified => None,
        }
    }

    /// Whether the request named a start before the decision time (which the interval moved to now).
    pub fn is_back_dated(&self) -> bool {
        self.requested_start.is_some_and(|start| start < self.now)
    }

    /// Whether the activation starts later than the decision time.
    pub fn starts_later(&self) -> bool {
        self.start > self.now
    }

    /// How long the activation would actually run; `None` without a known end. Zero or negative when
    /// the requested end is not after the effective start (e.g. an end date that has passed).
    pub fn length(&self) -> Option<Duration> {
        self.end_instant().map(|end| end - self.start)
    }

    /// "no expiration" / "no end" for messages about an interval without a known end.
    pub fn end_label(&self) -> &'static str {
        match self.end {
            ActivationEnd::At(_) => "an end",
            ActivationEnd::NoExpiration => "no expiration",
            ActivationEnd::NotSpecified => "no end",
        }
    }

    /// The interval as audit evidence: `{start, end, end_kind, requested_start}`.
    pub fn evidence(&self) -> serde_json::Value {
        let stamp = |at: DateTime<Utc>| at.to_rfc3339_opts(SecondsFormat::Secs, true);
        let end_kind = match self.end {
            ActivationEnd::At(_) => "at",
            ActivationEnd::NoExpiration => "noExpiration",
            ActivationEnd::NotSpecified => "notSpecified",
        };
        serde_json::json!({
            "start": stamp(self.start),
            "end": self.end_instant().map(stamp),
            "end_kind": end_kind,
            "requested_start": self.requested_start.map(stamp),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .map(|at| at.with_timezone(&Utc))
            .unwrap_or(DateTime::<Utc>::MIN_UTC)
    }

    fn schedule(
        start: Option<&str>,
        kind: ExpirationKind,
        duration: Option<Duration>,
        end: Option<&str>,
    ) -> Schedule {
        Schedule {
            start: start.map(at),
            expiration_kind: kind,
            duration,
            end: end.map(at),
        }
    }

    const NOW: &str = "2026-11-25T01:00:00Z";

    #[test]
    fn every_shape_of_schedule_gives_one_effective_interval() {
        let hour = Some(Duration::hours(1));
        let cases = [
            (
                "no start: now for the duration",
                schedule(None, ExpirationKind::AfterDuration, hour, None),
                NOW,
                ActivationEnd::At(at("2026-11-25T02:00:00Z")),
            ),
            (
                "a back-dated start runs from now, the duration from there",
                schedule(
                    Some("2026-11-24T18:00:00Z"),
                    ExpirationKind::AfterDuration,
                    hour,
                    None,
                ),
                NOW,
                ActivationEnd::At(at("2026-11-25T02:00:00Z")),
            ),
            (
                "a later start runs from that start",
                schedule(
                    Some("2026-11-28T12:00:00Z"),
                    ExpirationKind::AfterDuration,
                    hour,
                    None,
                ),
                "2026-11-28T12:00:00Z",
                ActivationEnd::At(at("2026-11-28T13:00:00Z")),
            ),
            (
                "an end date is the end, whatever the start",
                schedule(
                    Some("2026-11-24T18:00:00Z"),
                    ExpirationKind::AfterDateTime,
                    None,
                    Some("2026-11-25T03:00:00Z"),
                ),
                NOW,
                ActivationEnd::At(at("2026-11-25T03:00:00Z")),
            ),
            (
                "no expiration is explicit",
                schedule(None, ExpirationKind::NoExpiration, None, None),
                NOW,
                ActivationEnd::NoExpiration,
            ),
            (
                "nothing to compute an end from",
                schedule(None, ExpirationKind::NotSpecified, None, None),
                NOW,
                ActivationEnd::NotSpecified,
            ),
        ];
        for (name, schedule, start, end) in cases {
            let interval = ActivationInterval::of(&schedule, at(NOW));
            assert_eq!(interval.start, at(start), "{name}");
            assert_eq!(interval.end, end, "{name}");
            assert_eq!(interval.requested_start, schedule.start, "{name}");
        }
    }

    #[test]
    fn back_dated_and_later_starts_are_told_apart() {
        let now = at(NOW);
        let back = schedule(
            Some("2026-11-24T18:00:00Z"),
            ExpirationKind::NotSpecified,
            None,
            None,
        );
        let interval = ActivationInterval::of(&back, now);
        assert!(interval.is_back_dated() && !interval.starts_later());
        let later = schedule(
            Some("2026-11-25T01:00:01Z"),
            ExpirationKind::NotSpecified,
            None,
            None,
        );
        let interval = ActivationInterval::of(&later, now);
        assert!(!interval.is_back_dated() && interval.starts_later());
        let unnamed = ActivationInterval::of(
            &schedule(None, ExpirationKind::NotSpecified, None, None),
            now,
        );
        assert!(!unnamed.is_back_dated() && !unnamed.starts_later());
        assert_eq!(unnamed.length(), None);
        assert_eq!(unnamed.end_label(), "no end");
    }

    #[test]
    fn an_end_past_the_calendar_is_not_specified_rather_than_a_panic() {
        let mut far = schedule(
            None,
            ExpirationKind::AfterDuration,
            Some(Duration::days(3650)),
            None,
        );
        far.start = Some(DateTime::<Utc>::MAX_UTC - Duration::days(10));
        let interval = ActivationInterval::of(&far, at(NOW));
        assert_eq!(interval.end, ActivationEnd::NotSpecified);
    }

    #[test]
    fn an_end_date_that_has_passed_gives_a_non_positive_length() {
        let passed = schedule(
            Some("2026-11-24T18:00:00Z"),
            ExpirationKind::AfterDateTime,
            None,
            Some("2026-11-24T20:00:00Z"),
        );
        let interval = ActivationInterval::of(&passed, at(NOW));
        assert!(
            interval
                .length()
                .is_some_and(|length| length <= Duration::zero())
        );
        assert_eq!(interval.evidence()["end_kind"], "at");
        assert_eq!(interval.evidence()["start"], "2026-11-25T01:00:00Z");
    }
}
