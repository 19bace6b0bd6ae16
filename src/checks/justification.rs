//! `justification`: the requester's stated reason must be specific enough to audit later.
//!
//! The text judged here is already in its normal form (`payload::normalize_justification`, applied
//! when the request is decoded): no invisible characters, NFKC, single spaces. Messages and evidence
//! describe the text (lengths, counts, which rule) and never quote it: the same messages are the
//! reasons PIM shows and the audit record keeps, and the audit may be told to omit or hash the
//! justification.

use std::collections::BTreeSet;
use std::sync::Arc;

use async_trait::async_trait;
use regex::Regex;
use serde::Deserialize;

use super::registry::{BuildEnv, CheckKind, Reach};
use super::util::{compile_regex, ticket_tokens};
use super::{Check, CheckContext, CheckOutcome};
use crate::connectors::ConnectorId;
use crate::vocabulary::diagnostic::Diagnostic;

/// `justification: { min_length: 20, min_words: 3, deny_patterns: [...], must_reference_ticket: true }`
///
/// A justification is always required by this check, even with no criteria (`justification: {}`),
/// because a check that passes a missing justification would be indistinguishable from no check.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct JustificationSpec {
    /// Characters of the normalised text.
    pub min_length: Option<usize>,
    /// Distinct words: a repeated word counts once (see `count_words`).
    pub min_words: Option<usize>,
    /// Regexes; a justification matching any of them is rejected as too vague.
    pub deny_patterns: Vec<String>,
    /// The justification must mention the ticket number (from ticketInfo, or any ticket-looking token).
    pub must_reference_ticket: bool,
}

#[derive(Debug)]
struct JustificationCheck {
    min_length: Option<usize>,
    min_words: Option<usize>,
    deny_patterns: Vec<Regex>,
    must_reference_ticket: bool,
}

/// `- justification: ...` in the rules (see `registry::CheckKind`).
#[derive(Debug)]
pub struct JustificationKind;

impl CheckKind for JustificationKind {
    fn reference() -> crate::checks::registry::KindReference {
        crate::checks::registry::KindReference {
            summary: "The requester's justification is long, specific and (optionally) names a ticket.",
            example: "- justification: { min_length: 20, min_words: 4, deny_patterns: ['(?i)^(admin|test|fix)$'] }",
            keys: vec![
                crate::checks::registry::KeyDoc::new(
                    "min_length",
                    "integer",
                    "none (not checked)",
                    "20",
                    "Fewest characters of the normalised text.",
                ),
                crate::checks::registry::KeyDoc::new(
                    "min_words",
                    "integer",
                    "none (not checked)",
                    "4",
                    "Fewest distinct words (a repeated word counts once).",
                ),
                crate::checks::registry::KeyDoc::new(
                    "deny_patterns",
                    "list of regexes",
                    "[]",
                    "['(?i)^admin$']",
                    "A justification matching any of them is refused as too vague.",
                ),
                crate::checks::registry::KeyDoc::new(
                    "must_reference_ticket",
                    "boolean",
                    "false",
                    "true",
                    "The justification must mention the ticket number (from ticketInfo, or any ticket-looking token).",
                ),
            ],
            reads: Vec::new(),
        }
    }

    const NAME: &'static str = "justification";
    const REACH: Reach = Reach::Local;
    type Spec = JustificationSpec;

    fn connector(_spec: &JustificationSpec) -> Option<ConnectorId> {
        None
    }

    fn build(
        spec: &JustificationSpec,
        env: &BuildEnv<'_>,
    ) -> Result<Arc<dyn Check>, Vec<Diagnostic>> {
        build(spec, env)
    }
}

pub fn build(
    spec: &JustificationSpec,
    _env: &BuildEnv<'_>,
) -> Result<Arc<dyn Check>, Vec<Diagnostic>> {
    let mut problems = Vec::new();
    let mut deny_patterns = Vec::new();
    for (index, pattern) in spec.deny_patterns.iter().enumerate() {
        match compile_regex(&format!("deny_patterns[{index}]"), pattern, false) {
            Ok(regex) => deny_patterns.push(regex),
            Err(problem) => problems.push(*problem),
        }
    }
    if spec.min_length == Some(0) {
        problems.push(Diagnostic::error(
            "min_length",
            "`min_length: 0` accepts any justification",
            "set a minimum of at least 1 character, e.g. `min_length: 20`, or remove the key",
        ));
    }
    if spec.min_words == Some(0) {
        problems.push(Diagnostic::error(
            "min_words",
            "`min_words: 0` accepts any justification",
            "set a minimum of at least 1 word, e.g. `min_words: 3`, or remove the key",
        ));
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    Ok(Arc::new(JustificationCheck {
        min_length: spec.min_length,
        min_words: spec.min_words,
        deny_patterns,
        must_reference_ticket: spec.must_reference_ticket,
    }))
}

#[async_trait]
impl Check for JustificationCheck {
    async fn evaluate(&self, context: &CheckContext<'_>) -> CheckOutcome {
        let request = context.request;
        let text = request
            .justification
            .as_deref()
            .map(str::trim)
            .unwrap_or_default();
        if text.is_empty() {
            return CheckOutcome::fail(
                "the justification is missing; explain in PIM's justification field what you will do and why",
            );
        }
        let length = text.chars().count();
        let (words, distinct_words) = count_words(text);
        let mut failures = Vec::new();
        let mut outcome_evidence = super::Evidence::default();
        outcome_evidence.insert("length", length);
        outcome_evidence.insert("words", words);
        outcome_evidence.insert("distinct_words", distinct_words);

        if let Some(min_length) = self.min_length {
            outcome_evidence.insert("min_length", min_length);
            if length < min_length {
                failures.push(format!(
                    "the justification is {} long but at least {min_length} are required",
                    plural(length, "character")
                ));
            }
        }
        if let Some(min_words) = self.min_words {
            outcome_evidence.insert("min_words", min_words);
            if distinct_words < min_words {
                failures.push(format!(
                    "the justification has {} but at least {min_words} are required \
                     (a repeated word counts once)",
                    plural(distinct_words, "distinct word")
                ));
            }
        }
        if let Some(pattern) = self
            .deny_patterns
            .iter()
            .find(|pattern| pattern.is_match(text))
        {
            outcome_evidence.insert("denied_pattern", pattern.as_str());
            failures.push(format!(
                "the justification is too vague (it matches the deny pattern `{}`); \
                 say what you will change and why",
                pattern.as_str()
            ));
        }
        if self.must_reference_ticket {
            let ticket_number = request
                .ticket
                .as_ref()
                .and_then(|ticket| ticket.number.as_deref())
                .map(str::trim)
                .filter(|number| !number.is_empty());
            match ticket_number {
                Some(number) => {
                    outcome_evidence.insert("ticket_number", number);
                    let mentioned = text.to_lowercase().contains(&number.to_lowercase());
                    outcome_evidence.insert("references_ticket", mentioned);
                    if !mentioned {
                        failures.push(format!(
                            "the justification does not mention ticket `{number}`; include the ticket number in it"
                        ));
                    }
                }
                None => {
                    let found = ticket_tokens(text).first().map(|token| token.to_string());
                    outcome_evidence.insert("references_ticket", found.is_some());
                    match found {
                        Some(token) => {
                            outcome_evidence.insert("ticket_number", token);
                        }
                        None => failures.push(
                            "the justification does not reference a ticket; include the change or \
                             incident number, e.g. `CHG0031337` or `OPS-123`"
                                .to_string(),
                        ),
                    }
                }
            }
        }

        let mut outcome = if failures.is_empty() {
            CheckOutcome::pass("the justification meets the requirements")
        } else {
            CheckOutcome::fail(failures.join("; "))
        };
        outcome.evidence.extend(outcome_evidence);
        outcome
    }
}

/// How many words `text` has, and how many distinct ones. A word is a run of non-blank characters
/// with the punctuation at its ends removed that keeps at least one letter or digit (so `-` or `...`
/// is no word); words are compared ignoring case, so `Fix, fix. FIX!` has one distinct word.
fn count_words(text: &str) -> (usize, usize) {
    let mut total = 0;
    let mut distinct = BTreeSet::new();
    for word in text.split_whitespace() {
        let word = word.trim_matches(|c: char| !c.is_alphanumeric());
        if word.chars().any(char::is_alphanumeric) {
            total += 1;
            distinct.insert(word.to_lowercase());
        }
    }
    (total, distinct.len())
}

fn plural(count: usize, noun: &str) -> String {
    if count == 1 {
        format!("{count} {noun}")
    } else {
        format!("{count} {noun}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checks::CheckStatus;
    use crate::checks::test_support::{TestEnv, now, request, run, ticket};
    use crate::payload::Ticket;

    fn spec() -> JustificationSpec {
        JustificationSpec {
            min_length: Some(20),
            min_words: Some(3),
            deny_patterns: vec![r"(?i)^(need )?admin( access)?\.?$".to_string()],
            must_reference_ticket: true,
        }
    }

    #[test]
    fn every_bad_pattern_and_zero_minimum_is_reported() {
        let spec = JustificationSpec {
            min_length: Some(0),
            min_words: Some(0),
            deny_patterns: vec!["ok".to_string(), "(broken".to_string(), "[z-a]".to_string()],
            must_reference_ticket: false,
        };
        let problems = build(&spec, &TestEnv::default().env()).unwrap_err();
        let keys: Vec<&str> = problems
            .iter()
            .map(|problem| problem.key.as_str())
            .collect();
        assert_eq!(
            keys,
            [
                "deny_patterns[1]",
                "deny_patterns[2]",
                "min_length",
                "min_words"
            ]
        );
        assert!(problems.iter().all(|problem| !problem.fix.is_empty()));
    }

    #[test]
    fn justifications_are_judged_against_each_criterion() {
        type Case = (
            &'static str,
            JustificationSpec,
            Option<&'static str>,
            Option<Ticket>,
            CheckStatus,
        );
        let cases: Vec<Case> = vec![
            (
                "a specific justification naming its ticket",
                spec(),
                Some("CHG0031337: rotate the federation signing certificate"),
                ticket(Some("CHG0031337"), Some("ServiceNow")),
                CheckStatus::Pass,
            ),
            (
                "the ticket number is matched case-insensitively",
                spec(),
                Some("chg0031337: rotate the federation signing certificate"),
                ticket(Some("CHG0031337"), None),
                CheckStatus::Pass,
            ),
            (
                "missing with criteria",
                spec(),
                None,
                None,
                CheckStatus::Fail,
            ),
            (
                "missing with no criteria",
                JustificationSpec::default(),
                None,
                None,
                CheckStatus::Fail,
            ),
            (
                "blank",
                JustificationSpec::default(),
                Some("   "),
                None,
                CheckStatus::Fail,
            ),
            (
                "any text with no criteria",
                JustificationSpec::default(),
                Some("x"),
                None,
                CheckStatus::Pass,
            ),
            (
                "too short after trimming",
                JustificationSpec {
                    min_length: Some(11),
                    ..Default::default()
                },
                Some("   fix it now   "),
                None,
                CheckStatus::Fail,
            ),
            (
                "long enough counting characters not bytes",
                JustificationSpec {
                    min_length: Some(10),
                    ..Default::default()
                },
                Some("Änderung ü"),
                None,
                CheckStatus::Pass,
            ),
            (
                "too few words",
                JustificationSpec {
                    min_words: Some(3),
                    ..Default::default()
                },
                Some("certificate-rotation tonight"),
                None,
                CheckStatus::Fail,
            ),
            (
                "a repeated word counts once",
                JustificationSpec {
                    min_words: Some(3),
                    ..Default::default()
                },
                Some("restart restart Restart!"),
                None,
                CheckStatus::Fail,
            ),
            (
                "a vague justification",
                JustificationSpec {
                    deny_patterns: vec![r"(?i)^(need )?admin( access)?\.?$".to_string()],
                    ..Default::default()
                },
                Some("  Need admin access. "),
                None,
                CheckStatus::Fail,
            ),
            (
                "ticket number absent from the text",
                spec(),
                Some("rotate the federation signing certificate"),
                ticket(Some("CHG0031337"), None),
                CheckStatus::Fail,
            ),
            (
                "no ticketInfo but a Jira key in the text",
                spec(),
                Some("OPS-4711 rotate the federation signing certificate"),
                None,
                CheckStatus::Pass,
            ),
            (
                "no ticketInfo and nothing ticket-like in the text",
                spec(),
                Some("rotate the federation signing certificate"),
                None,
                CheckStatus::Fail,
            ),
        ];
        for (name, spec, justification, ticket_info, expected) in cases {
            let check = build(&spec, &TestEnv::default().env()).unwrap();
            let mut request = request();
            request.justification = justification.map(str::to_string);
            request.ticket = ticket_info;
            let outcome = run(check.as_ref(), &request, now());
            assert_eq!(outcome.status, expected, "{name}: {}", outcome.message);
        }
    }

    #[test]
    fn words_are_counted_once_each_ignoring_case_and_end_punctuation() {
        let cases = [
            ("rotate the federation signing certificate", (5, 5)),
            ("test test test test", (4, 1)),
            ("Fix, fix. FIX!", (3, 1)),
            ("fix - ... --", (1, 1)),
            ("CHG0031337: fix the fix", (4, 3)),
            ("re-run the job", (3, 3)),
        ];
        for (text, expected) in cases {
            assert_eq!(count_words(text), expected, "{text}");
        }
    }

    /// Whatever passes or fails, and with or without a ticket, what the check says (the reason PIM
    /// shows, the audit record's message and evidence) describes the justification without quoting it.
    #[test]
    fn messages_and_evidence_never_quote_the_justification() {
        let marker = "QuxMarkerZed";
        let specs = [
            spec(),
            JustificationSpec {
                deny_patterns: vec!["(?i)marker".to_string(), "(?i)^qux".to_string()],
                min_words: Some(50),
                min_length: Some(500),
                must_reference_ticket: true,
            },
            JustificationSpec::default(),
        ];
        let texts = [
            marker.to_string(),
            format!("{marker} rotate the federation signing certificate CHG0031337"),
            format!("rotate the federation signing certificate for {marker}"),
        ];
        for spec in &specs {
            let check = build(spec, &TestEnv::default().env()).unwrap();
            for text in &texts {
                for ticket_info in [None, ticket(Some("CHG0031337"), None)] {
                    let mut request = request();
                    request.justification = Some(text.clone());
                    request.ticket = ticket_info;
                    let outcome = run(check.as_ref(), &request, now());
                    let said = serde_json::to_string(&outcome).unwrap().to_lowercase();
                    assert!(!said.contains(&marker.to_lowercase()), "{text}: {said}");
                }
            }
        }
    }

    #[test]
    fn all_failed_criteria_are_named_in_one_message() {
        let check = build(&spec(), &TestEnv::default().env()).unwrap();
        let mut request = request();
        request.justification = Some("admin".to_string());
        request.ticket = ticket(Some("CHG0031337"), None);
        let outcome = run(check.as_ref(), &request, now());
        assert_eq!(
            outcome.message,
            "the justification is 5 characters long but at least 20 are required; \
             the justification has 1 distinct word but at least 3 are required (a repeated word counts once); \
             the justification is too vague (it matches the deny pattern `(?i)^(need )?admin( access)?\\.?$`); say what you will change and why; \
             the justification does not mention ticket `CHG0031337`; include the ticket number in it"
        );
        assert_eq!(outcome.evidence["length"], 5);
        assert_eq!(outcome.evidence["references_ticket"], false);
    }
}
