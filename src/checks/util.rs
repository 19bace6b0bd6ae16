//! Small helpers the check kinds share: rule-value durations, regexes, ticket-looking tokens, GUIDs.

use std::sync::LazyLock;

use chrono::Duration;
use regex::Regex;

use crate::vocabulary::diagnostic::Diagnostic;

/// The fix suggested for every malformed duration in the rules, so operators see one consistent hint.
pub const DURATION_FIX: &str = "use a positive ISO-8601 duration in days, hours, minutes or seconds, such as `PT2H`, `PT30M` or `P1D`";

/// Parses a rule value such as `PT2H`, `P1DT12H` or `P2W` with the same parser PIM's requests go
/// through, so a rule and a request can never disagree on what a duration means. Zero is refused here
/// because no bound in the rules is meaningful with it.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let value = text.trim();
    let duration = crate::payload::parse_iso8601_duration(value)
        .map_err(|problem| format!("`{value}` is not a usable ISO-8601 duration: {problem}"))?;
    if duration <= Duration::zero() {
        return Err(format!(
            "`{value}` is zero; durations in rules must be positive"
        ));
    }
    Ok(duration)
}

/// Parses a duration-valued key, turning a failure into a problem for that key (boxed: the
/// problem is rare and large, the duration small and common).
pub fn duration_value(key: &str, text: &str) -> Result<Duration, Box<Diagnostic>> {
    parse_duration(text).map_err(|message| Box::new(Diagnostic::error(key, message, DURATION_FIX)))
}

/// Compiles an operator's regex; `anchored` wraps it so it must match the whole value, because a
/// pattern like `CHG[0-9]{7}` written for a ticket number is meant for the whole number, not a part.
pub fn compile_regex(key: &str, pattern: &str, anchored: bool) -> Result<Regex, Box<Diagnostic>> {
    let source = if anchored {
        format!("^(?:{pattern})$")
    } else {
        pattern.to_string()
    };
    Regex::new(&source).map_err(|error| {
        Box::new(Diagnostic::error(
            key,
            format!(
                "`{pattern}` is not a valid regular expression: {}",
                first_line(&error)
            ),
            "write a regular expression in Rust `regex` syntax (no look-around or back-references), e.g. `(?i)^admin$`",
        ))
    })
}

fn first_line(error: &regex::Error) -> String {
    let text = error.to_string();
    text.lines()
        .rfind(|line| !line.trim().is_empty())
        .unwrap_or("invalid pattern")
        .trim()
        .trim_start_matches("error: ")
        .to_string()
}

/// ServiceNow numbers (`CHG0031337`, `INC0012345`, ...) and Jira-style keys (`OPS-123`). ServiceNow
/// prefixes are matched case-insensitively because people type them that way; Jira keys are
/// upper-case only, since lower-case `word-123` tokens are far more often not tickets.
static TICKET_TOKEN: LazyLock<Option<Regex>> = LazyLock::new(|| {
    Regex::new(r"\b(?:(?i:CHG|INC|RITM|REQ|PRB|SCTASK|TASK)[0-9]{5,}|[A-Z][A-Z0-9]+-[0-9]+)\b").ok()
});

/// Every ticket-looking token in `text`, in order of appearance.
pub fn ticket_tokens(text: &str) -> Vec<&str> {
    match TICKET_TOKEN.as_ref() {
        Some(regex) => regex.find_iter(text).map(|found| found.as_str()).collect(),
        None => Vec::new(),
    }
}

/// A Microsoft Entra object id in its usual hyphenated form, which is what PIM sends.
pub use crate::vocabulary::ids::is_guid;

/// Shortens a short user value (a ticket number or system) quoted back in a message, so one long
/// value cannot flood the reason. Never for the justification: messages describe it without quoting
/// it, because they are kept in the audit record even when `audit.justification` omits or hashes it.
pub fn quote(text: &str, max_chars: usize) -> String {
    if text.chars().count() <= max_chars {
        return text.to_string();
    }
    let shortened: String = text.chars().take(max_chars).collect();
    format!("{shortened}…")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_in_days_hours_minutes_and_seconds_are_parsed() {
        let cases = [
            ("PT2H", 7_200),
            ("PT30M", 1_800),
            ("P1D", 86_400),
            ("P1DT12H", 129_600),
            ("P2W", 1_209_600),
            ("PT1H30M15S", 5_415),
            ("PT90M", 5_400),
        ];
        for (text, seconds) in cases {
            assert_eq!(
                parse_duration(text),
                Ok(Duration::seconds(seconds)),
                "{text}"
            );
        }
        assert_eq!(parse_duration("PT0.5S"), Ok(Duration::milliseconds(500)));
    }

    #[test]
    fn malformed_calendar_zero_and_negative_durations_are_rejected() {
        let cases = [
            ("", "empty"),
            ("2h", "start with `P`"),
            ("pt2h", "start with `P`"),
            ("P", ""),
            ("PT", ""),
            ("P1Y", "years and months"),
            ("P1M", "years and months"),
            ("PT0S", "zero"),
            ("P0D", "zero"),
            ("-PT1H", "negative"),
            ("PT-1H", ""),
            ("PT2", ""),
            ("PTH", ""),
            ("PT1M2H", ""),
            ("P1H", ""),
            ("P1DT", ""),
            ("P99999999999999D", "too large"),
        ];
        for (text, expected) in cases {
            let error = parse_duration(text).expect_err(text);
            assert!(error.contains(expected), "{text}: {error}");
        }
    }

    #[test]
    fn ticket_looking_tokens_are_found_in_text() {
        let cases: [(&str, &[&str]); 5] = [
            ("CHG0031337: rotate the certificate", &["CHG0031337"]),
            ("fix for OPS-123 and inc0012345", &["OPS-123", "inc0012345"]),
            ("please give me admin", &[]),
            ("CHG123 is too short", &[]),
            ("see sctask0001234.", &["sctask0001234"]),
        ];
        for (text, expected) in cases {
            assert_eq!(ticket_tokens(text), expected.to_vec(), "{text}");
        }
    }

    #[test]
    fn only_hyphenated_guids_count_as_object_ids() {
        assert!(is_guid("0c2d8f4e-1111-4a2b-9c3d-5e6f7a8b9c0d"));
        assert!(is_guid("0C2D8F4E-1111-4A2B-9C3D-5E6F7A8B9C0D"));
        assert!(!is_guid("0c2d8f4e11114a2b9c3d5e6f7a8b9c0d"));
        assert!(!is_guid("oncall-team"));
    }

    #[test]
    fn anchored_regexes_must_match_the_whole_value_and_bad_ones_are_reported() {
        let regex = compile_regex("patterns.ServiceNow", "CHG[0-9]{7}", true).unwrap();
        assert!(regex.is_match("CHG0031337"));
        assert!(!regex.is_match("XCHG00313370"));
        let problem = compile_regex("deny_patterns[0]", "(admin", false).unwrap_err();
        assert_eq!(problem.key, "deny_patterns[0]");
        assert!(
            problem
                .message
                .starts_with("`(admin` is not a valid regular expression"),
            "{}",
            problem.message
        );
    }
}
