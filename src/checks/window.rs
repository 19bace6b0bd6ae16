//! Named time windows (`windows:` in the rules) and the `window` check that requires activations to
//! start, or run entirely, inside one. The check judges the effective activation interval
//! (`payload::ActivationInterval`): a back-dated start is judged at the decision time.
//!
//! Windows are defined on the wall clock of their time zone, so "18:00" stays 18:00 across daylight
//! saving changes. An instant is inside a window when its local wall-clock time is inside a slot and
//! its local date is not an `except_dates` entry (the whole local day is closed, including the part
//! of a slot that crossed midnight into it). Around DST changes this means:
//! - spring-forward gap: wall-clock times that do not exist are never inside; a slot starting in the
//!   gap opens at the first instant after it (e.g. 02:30 on the last Sunday of March in Berlin
//!   opens at 03:00 CEST), and a slot lying wholly in the gap does not open that day;
//! - autumn overlap: a wall-clock time that occurs twice is inside both times, so a slot covering
//!   02:00–02:30 on the last Sunday of October in Berlin is open twice, for an hour in total.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::offset::LocalResult;
use chrono::{
    DateTime, Datelike, Days, Duration, NaiveDate, NaiveTime, Offset, TimeZone, Timelike, Utc,
};
use chrono_tz::Tz;
use serde::de::{self, MapAccess, Visitor};
use serde::{Deserialize, Deserializer};

use super::registry::{BuildEnv, CheckKind, Reach};
use super::{Check, CheckContext, CheckOutcome, TimeRole};
use crate::connectors::ConnectorId;
use crate::payload::{ActivationInterval, format_iso8601_duration};
use crate::vocabulary::diagnostic::Diagnostic;

/// How far ahead `next_opening` and `next_closing` look; a window closed for longer is reported as
/// not opening at all rather than searched for indefinitely.
pub const SEARCH_DAYS: u32 = 400;

const SECONDS_PER_DAY: u32 = 86_400;

/// A named window in the rules' `windows:` section.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WindowSpec {
    /// IANA time zone name, e.g. `Europe/Berlin`.
    pub timezone: String,
    pub weekly: Vec<WeeklySlot>,
    #[serde(default)]
    pub except_dates: Vec<String>,
}

/// `{ days: [Tue, Thu], from: "18:00", to: "23:00" }`; `to` before `from` crosses midnight, and
/// `to: "24:00"` means the end of the day.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WeeklySlot {
    pub days: Vec<String>,
    pub from: String,
    pub to: String,
}

/// One weekly slot: the days it starts on (bit 0 = Monday) and its bounds in seconds after local
/// midnight; `to <= from` means it ends on the next day.
#[derive(Debug, Clone, Copy)]
struct Slot {
    days: u8,
    from: u32,
    to: u32,
}

impl Slot {
    fn starts_on(&self, weekday: u32) -> bool {
        self.days & (1u8 << weekday) != 0
    }

    fn covers(&self, weekday: u32, second: u32) -> bool {
        let yesterday = (weekday + 6) % 7;
        if self.from < self.to {
            self.starts_on(weekday) && self.from <= second && second < self.to
        } else {
            (self.starts_on(weekday) && second >= self.from)
                || (self.starts_on(yesterday) && second < self.to)
        }
    }
}

const WEEK_SECONDS: u32 = 7 * 86_400;
const DAY_NAMES: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];

impl Slot {
    /// The slot's stretches on a Monday-based week of seconds, with the starting weekday; a stretch
    /// that runs past Sunday midnight is split so every piece lies inside the week.
    fn stretches(&self) -> Vec<(u32, u32, u32)> {
        let mut out = Vec::new();
        for weekday in 0..7u32 {
            if !self.starts_on(weekday) {
                continue;
            }
            let start = weekday * 86_400 + self.from;
            let end = if self.from < self.to {
                weekday * 86_400 + self.to
            } else {
                (weekday + 1) * 86_400 + self.to
            };
            if end > WEEK_SECONDS {
                out.push((start, WEEK_SECONDS, weekday));
                out.push((0, end - WEEK_SECONDS, weekday));
            } else {
                out.push((start, end, weekday));
            }
        }
        out
    }
}

/// Two slots that overlap are almost always a typo (the operator meant adjacent slots): say which.
fn overlaps(slots: &[Slot]) -> Vec<Diagnostic> {
    let mut problems = Vec::new();
    for (later, slot) in slots.iter().enumerate() {
        for (earlier, other) in slots.iter().enumerate().take(later) {
            let clash = slot
                .stretches()
                .into_iter()
                .find_map(|(start, end, weekday)| {
                    other
                        .stretches()
                        .into_iter()
                        .any(|(other_start, other_end, _)| start < other_end && other_start < end)
                        .then_some(weekday)
                });
            if let Some(weekday) = clash {
                let day = DAY_NAMES.get(weekday as usize).copied().unwrap_or("?");
                problems.push(Diagnostic::error(format!("weekly[{later}]"), format!("this slot overlaps `weekly[{earlier}]` on {day}"), "merge the two slots into one, or make them adjacent (one's `to` is the other's `from`)"));
            }
        }
    }
    problems
}

/// A validated window, ready to answer "is it open at this instant" and "when does it next open".
#[derive(Debug)]
pub struct CompiledWindow {
    pub name: String,
    timezone: Tz,
    slots: Vec<Slot>,
    except_dates: BTreeSet<NaiveDate>,
}

pub fn compile(name: &str, spec: &WindowSpec) -> Result<CompiledWindow, Vec<Diagnostic>> {
    let mut problems = Vec::new();
    let timezone = match Tz::from_str(spec.timezone.trim()) {
        Ok(timezone) => Some(timezone),
        Err(_) => {
            let wanted = spec.timezone.trim();
            let suggestion = chrono_tz::TZ_VARIANTS
                .iter()
                .find(|candidate| candidate.name().eq_ignore_ascii_case(wanted));
            problems.push(Diagnostic::error(
                "timezone",
                format!("unknown time zone `{wanted}`"),
                match suggestion {
                    Some(candidate) => format!("write `{}`", candidate.name()),
                    None => {
                        "use an IANA time zone name such as `Europe/Berlin` or `UTC`".to_string()
                    }
                },
            ));
            None
        }
    };
    if spec.weekly.is_empty() {
        problems.push(Diagnostic::error(
            "weekly",
            "the window has no weekly slots, so it would never open",
            "add a slot such as `{ days: [Tue, Thu], from: \"18:00\", to: \"23:00\" }`",
        ));
    }
    let mut slots = Vec::new();
    for (index, slot) in spec.weekly.iter().enumerate() {
        if let Some(slot) = compile_slot(&format!("weekly[{index}]"), slot, &mut problems) {
            slots.push(slot);
        }
    }
    if slots.len() == spec.weekly.len() {
        problems.extend(overlaps(&slots));
    }
    let mut except_dates = BTreeSet::new();
    for (index, text) in spec.except_dates.iter().enumerate() {
        match NaiveDate::parse_from_str(text.trim(), "%Y-%m-%d") {
            Ok(date) => {
                except_dates.insert(date);
            }
            Err(_) => problems.push(Diagnostic::error(
                format!("except_dates[{index}]"),
                format!("`{text}` is not a date"),
                "write the date as `YYYY-MM-DD`, e.g. `2026-12-24`",
            )),
        }
    }
    match timezone {
        Some(timezone) if problems.is_empty() => Ok(CompiledWindow {
            name: name.to_string(),
            timezone,
            slots,
            except_dates,
        }),
        _ => Err(problems),
    }
}

fn compile_slot(key: &str, slot: &WeeklySlot, problems: &mut Vec<Diagnostic>) -> Option<Slot> {
    let before = problems.len();
    if slot.days.is_empty() {
        problems.push(Diagnostic::error(
            format!("{key}.days"),
            "the slot has no days",
            "list the days it starts on, e.g. `days: [Mon, Tue, Wed, Thu, Fri]`",
        ));
    }
    let mut days = 0u8;
    for (index, day) in slot.days.iter().enumerate() {
        match parse_weekday(day) {
            Some(weekday) => days |= 1 << weekday,
            None => problems.push(Diagnostic::error(
                format!("{key}.days[{index}]"),
                format!("`{day}` is not a day of the week"),
                "use `Mon`, `Tue`, `Wed`, `Thu`, `Fri`, `Sat` or `Sun` (full names work too)",
            )),
        }
    }
    let from = parse_clock(&format!("{key}.from"), &slot.from, false, problems);
    let to = parse_clock(&format!("{key}.to"), &slot.to, true, problems);
    if let (Some(from), Some(to)) = (from, to)
        && from == to
    {
        problems.push(Diagnostic::error(
            key,
            format!(
                "`from` and `to` are both `{}`, so the slot is empty",
                slot.from.trim()
            ),
            "to cover whole days write `from: \"00:00\"` and `to: \"24:00\"`",
        ));
    }
    match (from, to) {
        (Some(from), Some(to)) if problems.len() == before => Some(Slot { days, from, to }),
        _ => None,
    }
}

fn parse_weekday(text: &str) -> Option<u32> {
    let weekday = match text.trim().to_ascii_lowercase().as_str() {
        "mon" | "monday" => 0,
        "tue" | "tues" | "tuesday" => 1,
        "wed" | "wednesday" => 2,
        "thu" | "thur" | "thurs" | "thursday" => 3,
        "fri" | "friday" => 4,
        "sat" | "saturday" => 5,
        "sun" | "sunday" => 6,
        _ => return None,
    };
    Some(weekday)
}

/// `HH:MM` as seconds after midnight; `24:00` only where an end of day makes sense.
fn parse_clock(
    key: &str,
    text: &str,
    allow_end_of_day: bool,
    problems: &mut Vec<Diagnostic>,
) -> Option<u32> {
    let value = text.trim();
    let parsed = value.split_once(':').and_then(|(hours, minutes)| {
        let well_formed = (1..=2).contains(&hours.len())
            && minutes.len() == 2
            && hours
                .chars()
                .chain(minutes.chars())
                .all(|c| c.is_ascii_digit());
        if !well_formed {
            return None;
        }
        let hours: u32 = hours.parse().ok()?;
        let minutes: u32 = minutes.parse().ok()?;
        match (hours, minutes) {
            (24, 0) if allow_end_of_day => Some(SECONDS_PER_DAY),
            (0..=23, 0..=59) => Some(hours * 3_600 + minutes * 60),
            _ => None,
        }
    });
    if parsed.is_none() {
        problems.push(Diagnostic::error(key, format!("`{value}` is not a time of day"), if allow_end_of_day {
                "write the time as `HH:MM` on a 24-hour clock, e.g. `23:00`, or `24:00` for the end of the day"
                    .to_string()
            } else {
                "write the time as `HH:MM` on a 24-hour clock, e.g. `18:00`".to_string()
            }));
    }
    parsed
}

impl CompiledWindow {
    pub fn timezone(&self) -> Tz {
        self.timezone
    }

    pub fn contains(&self, at: DateTime<Utc>) -> bool {
        let local = at.with_timezone(&self.timezone).naive_local();
        let date = local.date();
        if self.except_dates.contains(&date) {
            return false;
        }
        let weekday = date.weekday().num_days_from_monday();
        let second = local.time().num_seconds_from_midnight();
        self.slots.iter().any(|slot| slot.covers(weekday, second))
    }

    /// The first instant strictly after `after` at which the window goes from closed to open, within
    /// [`SEARCH_DAYS`]; `None` when it does not open in that time.
    pub fn next_opening(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.next_change(after, true)
    }

    /// The first instant strictly after `after` at which the window goes from open to closed, within
    /// [`SEARCH_DAYS`]; `None` when it stays open (or never was) for that long.
    pub fn next_closing(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.next_change(after, false)
    }

    /// Shows an instant the way people of the window's zone read it, e.g. `Tue 2026-11-24 18:00 CET`.
    pub fn local_time(&self, at: DateTime<Utc>) -> String {
        at.with_timezone(&self.timezone)
            .format("%a %Y-%m-%d %H:%M %Z")
            .to_string()
    }

    fn local_rfc3339(&self, at: DateTime<Utc>) -> String {
        at.with_timezone(&self.timezone)
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    }

    fn is_change(&self, at: DateTime<Utc>, opening: bool) -> bool {
        let before = self.contains(at - Duration::seconds(1));
        let now = self.contains(at);
        if opening {
            now && !before
        } else {
            before && !now
        }
    }

    /// Openness only changes at a slot boundary, a local midnight (except dates) or a UTC-offset
    /// change (DST), so those are the only candidates examined, day by day.
    fn next_change(&self, after: DateTime<Utc>, opening: bool) -> Option<DateTime<Utc>> {
        let horizon = after.checked_add_signed(Duration::days(i64::from(SEARCH_DAYS)))?;
        let first_date = after
            .with_timezone(&self.timezone)
            .date_naive()
            .pred_opt()?;
        let mut boundaries: Vec<u32> = vec![0];
        for slot in &self.slots {
            boundaries.push(slot.from);
            if slot.to < SECONDS_PER_DAY {
                boundaries.push(slot.to);
            }
        }
        boundaries.sort_unstable();
        boundaries.dedup();

        let mut best: Option<DateTime<Utc>> = None;
        let mut found_on: Option<u32> = None;
        for day in 0..=SEARCH_DAYS + 1 {
            if found_on.is_some_and(|found| day > found + 2) {
                break;
            }
            let mut candidates = Vec::new();
            let date = first_date.checked_add_days(Days::new(u64::from(day)))?;
            for second in &boundaries {
                let Some(time) = NaiveTime::from_num_seconds_from_midnight_opt(*second, 0) else {
                    continue;
                };
                match self.timezone.from_local_datetime(&date.and_time(time)) {
                    LocalResult::Single(instant) => candidates.push(instant.to_utc()),
                    LocalResult::Ambiguous(first, second) => {
                        candidates.push(first.to_utc());
                        candidates.push(second.to_utc());
                    }
                    LocalResult::None => {}
                }
            }
            let scan_from = after.checked_add_signed(Duration::days(i64::from(day)))?;
            if let Some(transition) = self.offset_change_within_a_day(scan_from) {
                candidates.push(transition);
            }
            for candidate in candidates {
                if candidate > after
                    && candidate <= horizon
                    && best.is_none_or(|best| candidate < best)
                    && self.is_change(candidate, opening)
                {
                    best = Some(candidate);
                    found_on.get_or_insert(day);
                }
            }
        }
        best
    }

    /// The instant in `[from, from + 1 day]` at which the zone's UTC offset changes, to the second;
    /// assumes at most one change a day, which holds for every zone in the tz database since 1900.
    fn offset_change_within_a_day(&self, from: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let offset_at = |seconds: i64| {
            DateTime::from_timestamp(seconds, 0).map(|at| {
                self.timezone
                    .offset_from_utc_datetime(&at.naive_utc())
                    .fix()
            })
        };
        let mut low = from.timestamp();
        let mut high = low + i64::from(SECONDS_PER_DAY);
        let start_offset = offset_at(low)?;
        if offset_at(high)? == start_offset {
            return None;
        }
        while high - low > 1 {
            let middle = low + (high - low) / 2;
            if offset_at(middle)? == start_offset {
                low = middle;
            } else {
                high = middle;
            }
        }
        DateTime::from_timestamp(high, 0)
    }
}

/// `window: change-windows`, or `window: { name: change-windows, cover: whole }`.
///
/// Deserialized by hand rather than `untagged` so a typo in the map form gets a precise error
/// ("unknown field `covr`") instead of "data did not match any variant".
#[derive(Debug, Clone)]
pub enum WindowCheckSpec {
    Name(String),
    Full {
        name: String,
        /// `start` (default): the activation must start inside the window; `whole`: start and end.
        cover: Option<String>,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FullWindowCheckSpec {
    name: String,
    #[serde(default)]
    cover: Option<String>,
}

impl<'de> Deserialize<'de> for WindowCheckSpec {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct SpecVisitor;

        impl<'de> Visitor<'de> for SpecVisitor {
            type Value = WindowCheckSpec;

            fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
                formatter.write_str("a window name, or a map with `name` and optional `cover`")
            }

            fn visit_str<E: de::Error>(self, value: &str) -> Result<Self::Value, E> {
                Ok(WindowCheckSpec::Name(value.to_string()))
            }

            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                let full =
                    FullWindowCheckSpec::deserialize(de::value::MapAccessDeserializer::new(map))?;
                Ok(WindowCheckSpec::Full {
                    name: full.name,
                    cover: full.cover,
                })
            }
        }

        deserializer.deserialize_any(SpecVisitor)
    }
}

impl WindowCheckSpec {
    pub fn name(&self) -> &str {
        match self {
            WindowCheckSpec::Name(name) | WindowCheckSpec::Full { name, .. } => name,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cover {
    Start,
    Whole,
}

impl Cover {
    fn as_str(self) -> &'static str {
        match self {
            Cover::Start => "start",
            Cover::Whole => "whole",
        }
    }
}

#[derive(Debug)]
struct WindowCheck {
    window: Arc<CompiledWindow>,
    cover: Cover,
}

/// `- window: ...` in the rules (see `registry::CheckKind`).
#[derive(Debug)]
pub struct WindowKind;

impl CheckKind for WindowKind {
    /// The map form's keys (`window: { name, cover }`); the short form is just the name.
    fn keys() -> &'static [&'static str] {
        crate::vocabulary::serde_keys::field_names::<FullWindowCheckSpec>()
    }

    fn reference() -> crate::checks::registry::KindReference {
        crate::checks::registry::KindReference {
            summary: "The activation falls inside a named maintenance window (top-level `windows:`).",
            example: "- window: { name: change-windows, cover: whole }",
            keys: vec![
                crate::checks::registry::KeyDoc::new(
                    "name",
                    "window name",
                    "required",
                    "change-windows",
                    "A window declared under `windows:`; `- window: change-windows` is the short form.",
                ),
                crate::checks::registry::KeyDoc::new(
                    "cover",
                    "`start` or `whole`",
                    "start",
                    "whole",
                    "`start`: the activation must start inside the window; `whole`: start and end.",
                ),
            ],
            reads: Vec::new(),
        }
    }

    const NAME: &'static str = "window";
    const REACH: Reach = Reach::Local;
    type Spec = WindowCheckSpec;

    fn connector(_spec: &WindowCheckSpec) -> Option<ConnectorId> {
        None
    }

    fn build(
        spec: &WindowCheckSpec,
        env: &BuildEnv<'_>,
    ) -> Result<Arc<dyn Check>, Vec<Diagnostic>> {
        build(spec, env)
    }
}

pub fn build(
    spec: &WindowCheckSpec,
    env: &BuildEnv<'_>,
) -> Result<Arc<dyn Check>, Vec<Diagnostic>> {
    let mut problems = Vec::new();
    let (name_key, cover) = match spec {
        WindowCheckSpec::Name(_) => ("", None),
        WindowCheckSpec::Full { cover, .. } => ("name", cover.as_deref()),
    };
    let cover = match cover
        .map(|cover| cover.trim().to_ascii_lowercase())
        .as_deref()
    {
        None | Some("start") => Some(Cover::Start),
        Some("whole") => Some(Cover::Whole),
        Some(_) => {
            problems.push(Diagnostic::error("cover", format!("`{}` is not a cover mode", cover.unwrap_or_default()), "write `cover: start` (the activation starts inside the window) or `cover: whole` (it starts and ends inside)"));
            None
        }
    };
    let name = spec.name().trim();
    let window = env.windows.get(name).cloned();
    if window.is_none() {
        problems.push(unknown_window(name_key, name, env.windows));
    }
    match (window, cover) {
        (Some(window), Some(cover)) if problems.is_empty() => {
            Ok(Arc::new(WindowCheck { window, cover }))
        }
        _ => Err(problems),
    }
}

fn unknown_window(
    key: &str,
    name: &str,
    windows: &BTreeMap<String, Arc<CompiledWindow>>,
) -> Diagnostic {
    let known: Vec<&str> = windows.keys().map(String::as_str).collect();
    Diagnostic::error(
        key,
        format!("unknown window `{name}`"),
        if known.is_empty() {
            format!("define `{name}` under `windows:`")
        } else {
            format!(
                "use one of the windows ({}), or define `{name}` under `windows:`",
                known.join(", ")
            )
        },
    )
}

impl WindowCheck {
    /// The window is closed when the activation would begin. A back-dated start is said to be
    /// judged now, so the requester is not told their (open) requested start is closed.
    fn closed_at_start(&self, interval: &ActivationInterval) -> CheckOutcome {
        let window = &self.window;
        let start = interval.start;
        let next = window.next_opening(start);
        let when = match next {
            Some(next) => format!(
                "it next opens {}; request a start then",
                window.local_time(next)
            ),
            None => format!(
                "it does not open in the next {SEARCH_DAYS} days; ask the PIM administrators"
            ),
        };
        let message = match interval
            .requested_start
            .filter(|_| interval.is_back_dated())
        {
            Some(requested) => format!(
                "window `{}` is closed now ({}), when the activation would begin: a start in the \
                 past ({}) runs from the decision; {when}",
                window.name,
                window.local_time(start),
                window.local_time(requested)
            ),
            None => format!(
                "window `{}` is closed at the requested start ({}); {when}",
                window.name,
                window.local_time(start)
            ),
        };
        CheckOutcome::fail(message)
            .with_evidence("next_opening", next.map(|next| window.local_rfc3339(next)))
    }
}

/// Judges the effective interval (`CheckContext::interval`): the window must be open at its start,
/// which is now for a back-dated request; with `cover: whole` it must also stay open until the
/// known end, so an activation without one (no expiration, or none given) never fits.
#[async_trait]
impl Check for WindowCheck {
    async fn evaluate(&self, context: &CheckContext<'_>) -> CheckOutcome {
        let window = &self.window;
        let interval = &context.interval;
        let start = interval.start;
        let facts = |outcome: CheckOutcome| {
            outcome
                .with_evidence("window", window.name.as_str())
                .with_evidence("timezone", window.timezone.name())
                .with_evidence("cover", self.cover.as_str())
                .with_evidence(
                    "requested_start",
                    window.local_rfc3339(interval.requested_start.unwrap_or(interval.now)),
                )
                .with_evidence("effective_start", window.local_rfc3339(start))
                .holding_at(start)
        };
        if !window.contains(start) {
            return facts(self.closed_at_start(interval));
        }
        if self.cover == Cover::Start {
            let what = if interval.is_back_dated() {
                "the activation's start (now, "
            } else {
                "the requested start ("
            };
            return facts(CheckOutcome::pass(format!(
                "{what}{}) is inside window `{}`",
                window.local_time(start),
                window.name
            )));
        }
        let Some(end) = interval.end_instant() else {
            return facts(CheckOutcome::fail(format!(
                "the activation has {}, so it cannot fit inside window `{}`; request a duration",
                interval.end_label(),
                window.name
            )));
        };
        if end <= start {
            return facts(CheckOutcome::fail(format!(
                "the requested end ({}) is not after the activation's start ({}), so it cannot fit inside window `{}`; request an end after the start",
                window.local_time(end),
                window.local_time(start),
                window.name
            )));
        }
        let horizon = start.checked_add_signed(Duration::days(i64::from(SEARCH_DAYS)));
        if horizon.is_none_or(|horizon| end > horizon) {
            return facts(CheckOutcome::fail(format!(
                "the requested duration {} is too long to check against window `{}`; request a shorter duration",
                format_iso8601_duration(end - start),
                window.name
            )));
        }
        let facts = |outcome: CheckOutcome| {
            facts(outcome).with_evidence("requested_end", window.local_rfc3339(end))
        };
        match window.next_closing(start) {
            Some(closing) if closing < end => facts(CheckOutcome::fail(format!(
                "window `{}` closes at {}, before the requested end ({}); request {} or less",
                window.name,
                window.local_time(closing),
                window.local_time(end),
                format_iso8601_duration(closing - start)
            )))
            .with_evidence("closes_at", window.local_rfc3339(closing)),
            closing => facts(CheckOutcome::pass(format!(
                "the activation from {} to {} is inside window `{}`",
                window.local_time(start),
                window.local_time(end),
                window.name
            )))
            .with_evidence(
                "closes_at",
                closing.map(|closing| window.local_rfc3339(closing)),
            ),
        }
    }

    fn time_role(&self) -> TimeRole {
        TimeRole::JudgesInterval
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checks::CheckStatus;
    use crate::checks::test_support::{TestEnv, at, request, run};

    fn slot(days: &[&str], from: &str, to: &str) -> WeeklySlot {
        WeeklySlot {
            days: days.iter().map(|day| day.to_string()).collect(),
            from: from.to_string(),
            to: to.to_string(),
        }
    }

    fn window(timezone: &str, weekly: Vec<WeeklySlot>, except_dates: &[&str]) -> CompiledWindow {
        named_window("test-window", timezone, weekly, except_dates)
    }

    fn named_window(
        name: &str,
        timezone: &str,
        weekly: Vec<WeeklySlot>,
        except_dates: &[&str],
    ) -> CompiledWindow {
        let spec = WindowSpec {
            timezone: timezone.to_string(),
            weekly,
            except_dates: except_dates.iter().map(|date| date.to_string()).collect(),
        };
        compile(name, &spec).unwrap()
    }

    #[test]
    fn overlapping_slots_are_refused_and_adjacent_ones_are_not() {
        let compiled = |weekly: Vec<WeeklySlot>| {
            compile(
                "w",
                &WindowSpec {
                    timezone: "Europe/Berlin".to_string(),
                    weekly,
                    except_dates: vec![],
                },
            )
        };
        let cases: Vec<(Vec<WeeklySlot>, Option<&str>)> = vec![
            (
                vec![
                    slot(&["Tue"], "18:00", "23:00"),
                    slot(&["Tue"], "20:00", "22:00"),
                ],
                Some("on Tue"),
            ),
            (
                vec![
                    slot(&["Mon", "Tue"], "22:00", "02:00"),
                    slot(&["Tue"], "01:00", "03:00"),
                ],
                Some("on Tue"),
            ),
            (
                vec![
                    slot(&["Sun"], "22:00", "06:00"),
                    slot(&["Mon"], "05:00", "07:00"),
                ],
                Some("on Mon"),
            ),
            (
                vec![
                    slot(&["Tue"], "18:00", "20:00"),
                    slot(&["Tue"], "20:00", "22:00"),
                ],
                None,
            ),
            (
                vec![
                    slot(&["Tue"], "18:00", "23:00"),
                    slot(&["Wed"], "18:00", "23:00"),
                ],
                None,
            ),
            (
                vec![
                    slot(&["Sun"], "22:00", "06:00"),
                    slot(&["Mon"], "06:00", "07:00"),
                ],
                None,
            ),
        ];
        for (weekly, expected) in cases {
            let described = format!("{weekly:?}");
            match (compiled(weekly), expected) {
                (Ok(_), None) => {}
                (Err(problems), Some(day)) => {
                    assert_eq!(problems.len(), 1, "{described}: {problems:?}");
                    assert_eq!(problems[0].key, "weekly[1]", "{described}");
                    assert!(
                        problems[0].message.contains(day),
                        "{described}: {}",
                        problems[0].message
                    );
                    assert!(problems[0].message.contains("weekly[0]"), "{described}");
                }
                (other, expected) => panic!("{described}: expected {expected:?}, got {other:?}"),
            }
        }
    }

    /// Tue/Thu 18:00–23:00 in Berlin, closed on Christmas Eve and New Year's Eve (both Thursdays).
    fn change_windows() -> CompiledWindow {
        named_window(
            "change-windows",
            "Europe/Berlin",
            vec![slot(&["Tue", "thursday"], "18:00", "23:00")],
            &["2026-12-24", "2026-12-31"],
        )
    }

    #[test]
    fn every_problem_in_a_window_is_reported_with_its_key() {
        let spec = WindowSpec {
            timezone: "europe/berlin".to_string(),
            weekly: vec![
                slot(&[], "9:00", "17:00"),
                slot(&["Mon", "Funday"], "25:00", "6pm"),
                slot(&["Fri"], "18:00", "18:00"),
                slot(&["Sat"], "24:00", "10:00"),
                slot(&["Sun"], "00:00", "00:00"),
            ],
            except_dates: vec!["2026-12-24".to_string(), "24.12.2026".to_string()],
        };
        let problems = compile("broken", &spec).unwrap_err();
        let keys: Vec<&str> = problems
            .iter()
            .map(|problem| problem.key.as_str())
            .collect();
        assert_eq!(
            keys,
            [
                "timezone",
                "weekly[0].days",
                "weekly[1].days[1]",
                "weekly[1].from",
                "weekly[1].to",
                "weekly[2]",
                "weekly[3].from",
                "weekly[4]",
                "except_dates[1]",
            ]
        );
        assert_eq!(problems[0].fix, "write `Europe/Berlin`");
        assert!(
            problems[5].message.contains("empty"),
            "{}",
            problems[5].message
        );

        let empty = WindowSpec {
            timezone: "Mars/Olympus".to_string(),
            weekly: vec![],
            except_dates: vec![],
        };
        let problems = compile("empty", &empty).unwrap_err();
        let keys: Vec<&str> = problems
            .iter()
            .map(|problem| problem.key.as_str())
            .collect();
        assert_eq!(keys, ["timezone", "weekly"]);
        assert!(problems[0].fix.contains("IANA"));
    }

    #[test]
    fn instants_are_inside_only_during_a_slot_on_the_local_wall_clock() {
        let cases = [
            ("Tue 19:05 CET", "2026-11-24T18:05:00Z", true),
            ("Tue 18:00 CET opens", "2026-11-24T17:00:00Z", true),
            ("Tue 17:59 CET", "2026-11-24T16:59:00Z", false),
            ("Tue 23:00 CET is the end", "2026-11-24T22:00:00Z", false),
            ("Tue 22:59:59 CET", "2026-11-24T21:59:59Z", true),
            ("Wed 19:00 CET", "2026-11-25T18:00:00Z", false),
            ("Thu 19:00 CET", "2026-11-26T18:00:00Z", true),
            ("Tue 18:30 CEST in summer", "2026-07-07T16:30:00Z", true),
            ("Tue 17:30 CEST is 15:30 UTC", "2026-07-07T15:30:00Z", false),
            ("Christmas Eve is excepted", "2026-12-24T18:00:00Z", false),
            (
                "the Tuesday before Christmas is open",
                "2026-12-22T18:00:00Z",
                true,
            ),
        ];
        let window = change_windows();
        for (name, instant, expected) in cases {
            assert_eq!(window.contains(at(instant)), expected, "{name}");
        }
    }

    #[test]
    fn a_slot_ending_before_it_starts_crosses_midnight() {
        let window = window(
            "UTC",
            vec![slot(&["Fri"], "22:00", "02:00")],
            &["2026-12-05"],
        );
        let cases = [
            ("Fri 21:59", "2026-11-27T21:59:00Z", false),
            ("Fri 22:00", "2026-11-27T22:00:00Z", true),
            ("Fri 23:59", "2026-11-27T23:59:00Z", true),
            ("Sat 00:00", "2026-11-28T00:00:00Z", true),
            ("Sat 01:59", "2026-11-28T01:59:00Z", true),
            ("Sat 02:00", "2026-11-28T02:00:00Z", false),
            (
                "Fri 01:00 belongs to Thursday",
                "2026-11-27T01:00:00Z",
                false,
            ),
            (
                "Fri 23:00 before an excepted Saturday",
                "2026-12-04T23:00:00Z",
                true,
            ),
            (
                "an excepted Saturday closes the rest of the slot",
                "2026-12-05T01:00:00Z",
                false,
            ),
        ];
        for (name, instant, expected) in cases {
            assert_eq!(window.contains(at(instant)), expected, "{name}");
        }
        assert_eq!(
            window.next_closing(at("2026-11-27T23:00:00Z")),
            Some(at("2026-11-28T02:00:00Z"))
        );
        assert_eq!(
            window.next_closing(at("2026-12-04T23:00:00Z")),
            Some(at("2026-12-05T00:00:00Z"))
        );
    }

    #[test]
    fn the_next_opening_skips_closed_days_and_except_dates() {
        let window = change_windows();
        let cases = [
            (
                "Wed 03:00 CET opens Thu 18:00 CET",
                "2026-11-25T02:00:00Z",
                Some("2026-11-26T17:00:00Z"),
            ),
            (
                "just before an opening",
                "2026-11-26T16:59:59Z",
                Some("2026-11-26T17:00:00Z"),
            ),
            (
                "at an opening, the next one",
                "2026-11-26T17:00:00Z",
                Some("2026-12-01T17:00:00Z"),
            ),
            (
                "Christmas Eve and New Year's Eve are skipped",
                "2026-12-22T22:30:00Z",
                Some("2026-12-29T17:00:00Z"),
            ),
            (
                "after the Dec 29 slot, the next is Jan 5",
                "2026-12-29T22:00:00Z",
                Some("2027-01-05T17:00:00Z"),
            ),
            (
                "summer time moves the UTC opening",
                "2026-07-06T12:00:00Z",
                Some("2026-07-07T16:00:00Z"),
            ),
        ];
        for (name, after, expected) in cases {
            assert_eq!(window.next_opening(at(after)), expected.map(at), "{name}");
        }
    }

    #[test]
    fn a_window_whose_every_day_is_excepted_never_opens() {
        let dates: Vec<String> = (0..420)
            .map(|day| (NaiveDate::from_ymd_opt(2026, 11, 1).unwrap() + Days::new(day)).to_string())
            .collect();
        let dates: Vec<&str> = dates.iter().map(String::as_str).collect();
        let window = window("UTC", vec![slot(&["Mon"], "08:00", "09:00")], &dates);
        assert_eq!(window.next_opening(at("2026-11-02T00:00:00Z")), None);
    }

    #[test]
    fn spring_forward_opens_a_slot_starting_in_the_gap_when_the_gap_ends() {
        // Berlin jumps from 02:00 CET to 03:00 CEST at 01:00 UTC on Sunday 2026-03-29.
        let window = window(
            "Europe/Berlin",
            vec![
                slot(&["Sun"], "02:30", "04:00"),
                slot(&["Sat"], "02:00", "02:30"),
            ],
            &[],
        );
        assert!(
            !window.contains(at("2026-03-29T00:59:59Z")),
            "01:59:59 CET is before the slot"
        );
        assert!(
            window.contains(at("2026-03-29T01:00:00Z")),
            "03:00 CEST is inside 02:30–04:00"
        );
        assert!(
            !window.contains(at("2026-03-29T02:00:00Z")),
            "04:00 CEST is the end"
        );
        assert_eq!(
            window.next_opening(at("2026-03-28T12:00:00Z")),
            Some(at("2026-03-29T01:00:00Z"))
        );
        assert_eq!(
            window.next_closing(at("2026-03-29T01:00:00Z")),
            Some(at("2026-03-29T02:00:00Z"))
        );

        let in_the_gap = self::window("Europe/Berlin", vec![slot(&["Sun"], "02:00", "02:30")], &[]);
        assert_eq!(
            in_the_gap.next_opening(at("2026-03-28T12:00:00Z")),
            Some(at("2026-04-05T00:00:00Z")),
            "a slot wholly in the gap does not open that Sunday; the next is 02:00 CEST a week later"
        );
    }

    #[test]
    fn fall_back_opens_a_slot_in_the_repeated_hour_twice() {
        // Berlin goes back from 03:00 CEST to 02:00 CET at 01:00 UTC on Sunday 2026-10-25.
        let window = window("Europe/Berlin", vec![slot(&["Sun"], "02:00", "02:30")], &[]);
        let cases = [
            ("01:59 CEST", "2026-10-24T23:59:00Z", false),
            ("02:15 CEST", "2026-10-25T00:15:00Z", true),
            ("02:45 CEST", "2026-10-25T00:45:00Z", false),
            ("02:15 CET", "2026-10-25T01:15:00Z", true),
            ("02:30 CET", "2026-10-25T01:30:00Z", false),
        ];
        for (name, instant, expected) in cases {
            assert_eq!(window.contains(at(instant)), expected, "{name}");
        }
        assert_eq!(
            window.next_opening(at("2026-10-24T12:00:00Z")),
            Some(at("2026-10-25T00:00:00Z"))
        );
        assert_eq!(
            window.next_opening(at("2026-10-25T00:00:00Z")),
            Some(at("2026-10-25T01:00:00Z")),
            "the clock going back to 02:00 reopens the slot"
        );
        assert_eq!(
            window.next_closing(at("2026-10-25T01:00:00Z")),
            Some(at("2026-10-25T01:30:00Z"))
        );
    }

    fn test_env() -> TestEnv {
        let mut env = TestEnv::default();
        env.windows
            .insert("change-windows".to_string(), Arc::new(change_windows()));
        let adjacent = named_window(
            "office",
            "Europe/Berlin",
            vec![
                slot(&["Mon"], "08:00", "12:00"),
                slot(&["Mon"], "12:00", "18:00"),
                slot(&["Fri"], "22:00", "02:00"),
            ],
            &[],
        );
        env.windows.insert("office".to_string(), Arc::new(adjacent));
        env
    }

    #[test]
    fn both_yaml_forms_deserialize_and_typos_are_precise() {
        let bare: WindowCheckSpec = yaml_serde::from_str("change-windows").unwrap();
        assert!(matches!(bare, WindowCheckSpec::Name(ref name) if name == "change-windows"));
        let full: WindowCheckSpec = yaml_serde::from_str("{ name: office, cover: whole }").unwrap();
        assert!(
            matches!(full, WindowCheckSpec::Full { ref name, cover: Some(ref cover) } if name == "office" && cover == "whole")
        );
        let default_cover: WindowCheckSpec = yaml_serde::from_str("name: office").unwrap();
        assert!(matches!(
            default_cover,
            WindowCheckSpec::Full { cover: None, .. }
        ));
        let typo =
            yaml_serde::from_str::<WindowCheckSpec>("{ name: office, covr: whole }").unwrap_err();
        assert!(typo.to_string().contains("unknown field `covr`"), "{typo}");
    }

    #[test]
    fn unknown_windows_and_cover_modes_are_build_problems() {
        let env = test_env();
        let problems = build(
            &WindowCheckSpec::Name("change-window".to_string()),
            &env.env(),
        )
        .unwrap_err();
        assert_eq!(problems.len(), 1);
        assert_eq!(problems[0].message, "unknown window `change-window`");
        assert!(
            problems[0].fix.contains("change-windows, office"),
            "{}",
            problems[0].fix
        );

        let spec = WindowCheckSpec::Full {
            name: "nope".to_string(),
            cover: Some("all".to_string()),
        };
        let problems = build(&spec, &env.env()).unwrap_err();
        let keys: Vec<&str> = problems
            .iter()
            .map(|problem| problem.key.as_str())
            .collect();
        assert_eq!(keys, ["cover", "name"]);
    }

    #[test]
    fn activations_are_checked_against_the_window() {
        let env = test_env();
        let cases = [
            (
                "starting now inside",
                "change-windows",
                None,
                None,
                Some(1),
                CheckStatus::Pass,
            ),
            (
                "starting later outside",
                "change-windows",
                None,
                Some("2026-11-25T01:00:00Z"),
                Some(1),
                CheckStatus::Fail,
            ),
            (
                "start inside, end outside, cover start",
                "change-windows",
                None,
                None,
                Some(8),
                CheckStatus::Pass,
            ),
            (
                "start inside, end outside, cover whole",
                "change-windows",
                Some("whole"),
                None,
                Some(8),
                CheckStatus::Fail,
            ),
            (
                "ending exactly at the close, cover whole",
                "change-windows",
                Some("whole"),
                Some("2026-11-24T19:00:00Z"),
                Some(3),
                CheckStatus::Pass,
            ),
            (
                "no end, cover whole",
                "change-windows",
                Some("whole"),
                None,
                None,
                CheckStatus::Fail,
            ),
            (
                "across two adjacent slots",
                "office",
                Some("whole"),
                Some("2026-11-30T09:00:00Z"),
                Some(6),
                CheckStatus::Pass,
            ),
            (
                "across midnight in one slot",
                "office",
                Some("WHOLE"),
                Some("2026-11-27T21:30:00Z"),
                Some(2),
                CheckStatus::Pass,
            ),
            (
                "past the end of a midnight slot",
                "office",
                Some("whole"),
                Some("2026-11-27T21:30:00Z"),
                Some(4),
                CheckStatus::Fail,
            ),
        ];
        for (name, window, cover, start, hours, expected) in cases {
            let spec = match cover {
                Some(cover) => WindowCheckSpec::Full {
                    name: window.to_string(),
                    cover: Some(cover.to_string()),
                },
                None => WindowCheckSpec::Name(window.to_string()),
            };
            let check = build(&spec, &env.env()).unwrap();
            let mut request = request();
            request.schedule.start = start.map(at);
            request.schedule.duration = hours.map(Duration::hours);
            if hours.is_none() {
                request.schedule.expiration_kind = crate::payload::ExpirationKind::NoExpiration;
            }
            let outcome = run(check.as_ref(), &request, at("2026-11-24T18:05:00Z"));
            assert_eq!(outcome.status, expected, "{name}: {}", outcome.message);
        }
    }

    #[test]
    fn a_closed_window_is_named_with_its_local_time_and_next_opening() {
        let env = test_env();
        let check = build(
            &WindowCheckSpec::Name("change-windows".to_string()),
            &env.env(),
        )
        .unwrap();
        let outcome = run(check.as_ref(), &request(), at("2026-11-25T01:00:00Z"));
        assert_eq!(
            outcome.message,
            "window `change-windows` is closed at the requested start (Wed 2026-11-25 02:00 CET); \
             it next opens Thu 2026-11-26 18:00 CET; request a start then"
        );
        assert_eq!(outcome.evidence["window"], "change-windows");
        assert_eq!(outcome.evidence["timezone"], "Europe/Berlin");
        assert_eq!(
            outcome.evidence["next_opening"],
            "2026-11-26T18:00:00+01:00"
        );
    }

    #[test]
    fn a_back_dated_start_inside_a_closed_window_is_judged_now_and_fails() {
        // Wed 02:00 CET: the window is closed. The request names Tue 19:00 CET, when it was open.
        let env = test_env();
        let check = build(
            &WindowCheckSpec::Name("change-windows".to_string()),
            &env.env(),
        )
        .unwrap();
        let mut request = request();
        request.schedule.start = Some(at("2026-11-24T18:00:00Z"));
        let now = at("2026-11-25T01:00:00Z");
        let outcome = run(check.as_ref(), &request, now);
        assert_eq!(outcome.status, CheckStatus::Fail, "{}", outcome.message);
        assert_eq!(
            outcome.message,
            "window `change-windows` is closed now (Wed 2026-11-25 02:00 CET), when the activation \
             would begin: a start in the past (Tue 2026-11-24 19:00 CET) runs from the decision; \
             it next opens Thu 2026-11-26 18:00 CET; request a start then"
        );
        assert_eq!(outcome.holds_at, Some(now));
        assert_eq!(
            outcome.evidence["effective_start"],
            "2026-11-25T02:00:00+01:00"
        );
    }

    #[test]
    fn a_back_dated_start_covering_the_whole_window_is_measured_from_now() {
        // Tue 22:30 CET, open until 23:00. Requested: 19:00 CET for four hours (19:00–23:00, inside);
        // the activation would really run 22:30–02:30, past the close.
        let env = test_env();
        let spec = WindowCheckSpec::Full {
            name: "change-windows".to_string(),
            cover: Some("whole".to_string()),
        };
        let check = build(&spec, &env.env()).unwrap();
        let mut request = request();
        request.schedule.start = Some(at("2026-11-24T18:00:00Z"));
        request.schedule.duration = Some(Duration::hours(4));
        let outcome = run(check.as_ref(), &request, at("2026-11-24T21:30:00Z"));
        assert_eq!(outcome.status, CheckStatus::Fail, "{}", outcome.message);
        assert!(
            outcome.message.contains("request PT30M or less"),
            "{}",
            outcome.message
        );
    }

    #[test]
    fn a_start_later_than_now_is_judged_at_that_start() {
        // Wed 02:00 CET (closed) asking for Thu 19:00 CET (open): judged at Thursday.
        let env = test_env();
        let check = build(
            &WindowCheckSpec::Name("change-windows".to_string()),
            &env.env(),
        )
        .unwrap();
        let mut request = request();
        let start = at("2026-11-26T18:00:00Z");
        request.schedule.start = Some(start);
        let outcome = run(check.as_ref(), &request, at("2026-11-25T01:00:00Z"));
        assert_eq!(outcome.status, CheckStatus::Pass, "{}", outcome.message);
        assert_eq!(outcome.holds_at, Some(start));
    }

    #[test]
    fn an_end_date_that_has_passed_cannot_fit_a_window() {
        let env = test_env();
        let spec = WindowCheckSpec::Full {
            name: "change-windows".to_string(),
            cover: Some("whole".to_string()),
        };
        let check = build(&spec, &env.env()).unwrap();
        let mut request = request();
        request.schedule.start = Some(at("2026-11-24T17:10:00Z"));
        request.schedule.expiration_kind = crate::payload::ExpirationKind::AfterDateTime;
        request.schedule.duration = None;
        request.schedule.end = Some(at("2026-11-24T17:30:00Z"));
        let outcome = run(check.as_ref(), &request, at("2026-11-24T18:05:00Z"));
        assert_eq!(outcome.status, CheckStatus::Fail, "{}", outcome.message);
        assert!(outcome.message.contains("not after"), "{}", outcome.message);
    }

    #[test]
    fn an_activation_outlasting_the_window_is_told_how_long_fits() {
        let env = test_env();
        let spec = WindowCheckSpec::Full {
            name: "change-windows".to_string(),
            cover: Some("whole".to_string()),
        };
        let check = build(&spec, &env.env()).unwrap();
        let mut request = request();
        request.schedule.duration = Some(Duration::hours(8));
        let outcome = run(check.as_ref(), &request, at("2026-11-24T18:05:00Z"));
        assert_eq!(
            outcome.message,
            "window `change-windows` closes at Tue 2026-11-24 23:00 CET, before the requested end \
             (Wed 2026-11-25 03:05 CET); request PT3H55M or less"
        );
        assert_eq!(outcome.evidence["closes_at"], "2026-11-24T23:00:00+01:00");
    }
}
