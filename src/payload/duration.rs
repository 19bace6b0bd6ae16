//! A strict ISO-8601 duration parser for `scheduleInfo.expiration.duration`.
//!
//! Hand-written rather than taken from the `iso8601` crate because the decoder needs to tell apart
//! the failures a requester can act on: years and months have no fixed length (a policy cap of
//! "8 hours" cannot be compared with `P1M`), a sign is not allowed, and a value too large for
//! `chrono` must be an error, not a wrap-around.

use std::fmt;

use chrono::Duration;

/// Strict ISO-8601 duration: `PT8H`, `PT30M`, `P1D`, `P1DT2H30M`, `P2W`, and a decimal fraction on the
/// last component (`PT1.5H`, `PT0,5S`). Years and months are rejected because their length depends on
/// the calendar. `PT0S` parses to zero: whether zero is acceptable is the caller's decision.
///
/// The error is a lower-case explanation without the input, for the caller to embed.
pub fn parse_iso8601_duration(text: &str) -> Result<Duration, String> {
    parse_duration(text).map_err(|error| error.to_string())
}

/// Why a duration did not parse, kept apart so the decoder can word each case for the requester.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DurationError {
    Empty,
    Negative,
    YearsOrMonths,
    TooLarge,
    Syntax(&'static str),
}

impl fmt::Display for DurationError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DurationError::Empty => formatter.write_str("the duration is empty"),
            DurationError::Negative => formatter.write_str("a duration cannot be negative"),
            DurationError::YearsOrMonths => formatter.write_str(
                "years and months have no fixed length; give days instead (e.g. `P30D`)",
            ),
            DurationError::TooLarge => formatter.write_str("the duration is too large"),
            DurationError::Syntax(problem) => formatter.write_str(problem),
        }
    }
}

const NANOS_PER_SECOND: i128 = 1_000_000_000;
/// More integer digits than this cannot be a meaningful activation length; the cap also keeps the
/// arithmetic below far from `i128` overflow.
const MAX_INTEGER_DIGITS: usize = 18;

/// Designators in the order ISO-8601 requires them, with their length in seconds (`None`: no fixed
/// length).
const DATE_DESIGNATORS: [(char, Option<i128>); 4] = [
    ('Y', None),
    ('M', None),
    ('W', Some(604_800)),
    ('D', Some(86_400)),
];
const TIME_DESIGNATORS: [(char, Option<i128>); 3] =
    [('H', Some(3_600)), ('M', Some(60)), ('S', Some(1))];

pub(crate) fn parse_duration(text: &str) -> Result<Duration, DurationError> {
    if text.is_empty() {
        return Err(DurationError::Empty);
    }
    if text.starts_with('-') {
        return Err(DurationError::Negative);
    }
    let rest = text
        .strip_prefix('P')
        .ok_or(DurationError::Syntax("it must start with `P`"))?;
    let (date_part, time_part) = match rest.split_once('T') {
        Some((date, time)) => (date, Some(time)),
        None => (rest, None),
    };
    if time_part == Some("") {
        return Err(DurationError::Syntax(
            "`T` must be followed by hours, minutes or seconds",
        ));
    }
    let mut components = Vec::new();
    scan_components(date_part, &DATE_DESIGNATORS, &mut components)?;
    if let Some(time) = time_part {
        scan_components(time, &TIME_DESIGNATORS, &mut components)?;
    }
    if components.is_empty() {
        return Err(DurationError::Syntax(
            "it has no components (e.g. `PT8H`, `P1D`)",
        ));
    }
    let last = components.len() - 1;
    let mut total_nanos: i128 = 0;
    for (index, component) in components.iter().enumerate() {
        if component.has_fraction && index != last {
            return Err(DurationError::Syntax(
                "only the last component may have a fraction",
            ));
        }
        total_nanos = total_nanos
            .checked_add(component.nanos)
            .ok_or(DurationError::TooLarge)?;
    }
    let seconds =
        i64::try_from(total_nanos / NANOS_PER_SECOND).map_err(|_| DurationError::TooLarge)?;
    let nanos =
        u32::try_from(total_nanos % NANOS_PER_SECOND).map_err(|_| DurationError::TooLarge)?;
    Duration::new(seconds, nanos).ok_or(DurationError::TooLarge)
}

struct Component {
    nanos: i128,
    has_fraction: bool,
}

/// Reads `<number><designator>` pairs from one half (date or time) of the duration, enforcing order
/// and uniqueness of designators.
fn scan_components(
    part: &str,
    designators: &[(char, Option<i128>)],
    out: &mut Vec<Component>,
) -> Result<(), DurationError> {
    let mut next_allowed = 0;
    let mut chars = part.chars().peekable();
    while chars.peek().is_some() {
        let mut integer = String::new();
        while let Some(digit) = chars.next_if(char::is_ascii_digit) {
            integer.push(digit);
        }
        let mut fraction = String::new();
        let has_fraction = chars.next_if(|c| *c == '.' || *c == ',').is_some();
        if has_fraction {
            while let Some(digit) = chars.next_if(char::is_ascii_digit) {
                fraction.push(digit);
            }
            if fraction.is_empty() {
                return Err(DurationError::Syntax(
                    "a decimal separator must be followed by digits",
                ));
            }
        }
        if integer.is_empty() {
            return Err(DurationError::Syntax(
                "each component needs a number before its letter (e.g. `8H`)",
            ));
        }
        let Some(designator) = chars.next() else {
            return Err(DurationError::Syntax(
                "a number must be followed by a unit letter (e.g. `8H`)",
            ));
        };
        let position = designators
            .iter()
            .position(|(letter, _)| *letter == designator)
            .ok_or(DurationError::Syntax(
                "unknown unit letter (use `W`, `D`, then `T` and `H`, `M`, `S`)",
            ))?;
        if position < next_allowed {
            return Err(DurationError::Syntax(
                "units must appear once each, largest first",
            ));
        }
        next_allowed = position + 1;
        let Some((_, Some(unit_seconds))) = designators.get(position) else {
            return Err(DurationError::YearsOrMonths);
        };
        out.push(Component {
            nanos: component_nanos(&integer, &fraction, *unit_seconds)?,
            has_fraction,
        });
    }
    Ok(())
}

fn component_nanos(
    integer: &str,
    fraction: &str,
    unit_seconds: i128,
) -> Result<i128, DurationError> {
    if integer.len() > MAX_INTEGER_DIGITS {
        return Err(DurationError::TooLarge);
    }
    let whole: i128 = integer.parse().map_err(|_| DurationError::TooLarge)?;
    // Nanosecond precision is all chrono keeps; further digits are dropped rather than rejected.
    let mut fraction_digits: String = fraction.chars().take(9).collect();
    while fraction_digits.len() < 9 {
        fraction_digits.push('0');
    }
    let fraction_nanos: i128 = fraction_digits
        .parse()
        .map_err(|_| DurationError::Syntax("invalid fraction"))?;
    let unit_nanos = unit_seconds * NANOS_PER_SECOND;
    whole
        .checked_mul(unit_nanos)
        .and_then(|nanos| nanos.checked_add(fraction_nanos * unit_seconds))
        .ok_or(DurationError::TooLarge)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn common_durations_parse_to_their_length() {
        let cases = [
            ("PT8H", Duration::hours(8)),
            ("PT30M", Duration::minutes(30)),
            ("PT45S", Duration::seconds(45)),
            ("P1D", Duration::days(1)),
            ("P2W", Duration::days(14)),
            ("P1DT2H30M", Duration::minutes(24 * 60 + 150)),
            ("PT36H", Duration::hours(36)),
            ("PT1H0M", Duration::hours(1)),
            ("P0D", Duration::zero()),
            ("PT0S", Duration::zero()),
            ("P3650D", Duration::days(3650)),
            ("P1DT12H", Duration::hours(36)),
        ];
        for (text, expected) in cases {
            assert_eq!(parse_iso8601_duration(text), Ok(expected), "{text}");
        }
    }

    #[test]
    fn a_fraction_on_the_last_component_is_honoured() {
        let cases = [
            ("PT1.5H", Duration::minutes(90)),
            ("PT1,5H", Duration::minutes(90)),
            ("PT0.5S", Duration::milliseconds(500)),
            ("P0.5D", Duration::hours(12)),
            ("PT2H0.25M", Duration::seconds(2 * 3600 + 15)),
            ("PT0.0000000019S", Duration::nanoseconds(1)),
        ];
        for (text, expected) in cases {
            assert_eq!(parse_iso8601_duration(text), Ok(expected), "{text}");
        }
    }

    #[test]
    fn malformed_durations_are_rejected_with_a_reason() {
        let cases = [
            ("", "empty"),
            ("8h", "must start with `P`"),
            ("8 hours", "must start with `P`"),
            ("pt8h", "must start with `P`"),
            ("P", "no components"),
            ("PT", "`T` must be followed"),
            ("P1DT", "`T` must be followed"),
            ("PT8", "followed by a unit letter"),
            ("PT8H30", "followed by a unit letter"),
            ("PTH", "needs a number"),
            ("PT.5H", "needs a number"),
            ("PT1.H", "followed by digits"),
            ("PT8h", "unknown unit letter"),
            ("PT8X", "unknown unit letter"),
            ("P1H", "unknown unit letter"),
            ("PT1D", "unknown unit letter"),
            ("PT8M1H", "largest first"),
            ("PT8H8H", "largest first"),
            ("P1D2W", "largest first"),
            ("PT1.5H30M", "only the last component"),
            ("PT8H ", "needs a number"),
            (" PT8H", "must start with `P`"),
            ("P 1D", "needs a number"),
            ("PT+8H", "needs a number"),
            ("PT８H", "needs a number"),
        ];
        for (text, fragment) in cases {
            let error = parse_iso8601_duration(text).expect_err(text);
            assert!(error.contains(fragment), "{text}: {error}");
        }
    }

    #[test]
    fn years_and_months_are_rejected_with_advice_to_use_days() {
        for text in ["P1Y", "P1M", "P1Y2M3D", "P0Y", "P1MT8H"] {
            assert_eq!(
                parse_duration(text),
                Err(DurationError::YearsOrMonths),
                "{text}"
            );
            let message = parse_iso8601_duration(text).expect_err(text);
            assert!(message.contains("give days instead"), "{text}: {message}");
        }
    }

    #[test]
    fn a_negative_duration_is_rejected() {
        assert_eq!(parse_duration("-PT8H"), Err(DurationError::Negative));
    }

    #[test]
    fn huge_values_are_rejected_instead_of_overflowing() {
        for text in [
            "P9999999999999999999D",
            "P999999999999999999W",
            "PT999999999999999999H",
            "P999999999999999999DT999999999999999999H",
        ] {
            assert_eq!(parse_duration(text), Err(DurationError::TooLarge), "{text}");
        }
    }
}
