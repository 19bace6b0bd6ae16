//! `justification`: the requester's stated reason must be specific enough to audit later.

use std::sync::Arc;

use async_trait::async_trait;
use regex::Regex;
use serde::Deserialize;

use super::registry::{BuildEnv, SpecProblem};
use super::util::{compile_regex, quote, ticket_tokens};
use super::{Check, CheckContext, CheckOutcome};

/// `justification: { min_length: 20, min_words: 3, deny_patterns: [...], must_reference_ticket: true }`
///
/// A justification is always required by this check, even with no criteria (`justification: {}`),
/// because a check that passes a missing justification would be indistinguishable from no check.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct JustificationSpec {
    pub min_length: Option<usize>,
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

pub fn build(
    spec: &JustificationSpec,
    _env: &BuildEnv<'_>,
) -> Result<Arc<dyn Check>, Vec<SpecProblem>> {
    let mut problems = Vec::new();
    let mut deny_patterns = Vec::new();
    for (index, pattern) in spec.deny_patterns.iter().enumerate() {
        match compile_regex(&format!("deny_patterns[{index}]"), pattern, false) {
            Ok(regex) => deny_patterns.push(regex),
            Err(problem) => problems.push(problem),
        }
    }
    if spec.min_length == Some(0) {
        problems.push(SpecProblem {
            key: "min_length".to_string(),
            message: "`min_length: 0` accepts any justification".to_string(),
            fix: "set a minimum of at least 1 character, e.g. `min_length: 20`, or remove the key"
                .to_string(),
        });
    }
    if spec.min_words == Some(0) {
        problems.push(SpecProblem {
            key: "min_words".to_string(),
            message: "`min_words: 0` accepts any justification".to_string(),
            fix: "set a minimum of at least 1 word, e.g. `min_words: 3`, or remove the key"
                .to_string(),
        });
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
        let words = text.split_whitespace().count();
        let mut failures = Vec::new();
        let mut outcome_evidence = serde_json::Map::new();
        outcome_evidence.insert("length".to_string(), length.into());
        outcome_evidence.insert("words".to_string(), words.into());

        if let Some(min_length) = self.min_length {
            outcome_evidence.insert("min_length".to_string(), min_length.into());
            if length < min_length {
                failures.push(format!(
                    "the justification is {} long but at least {min_length} are required",
                    plural(length, "character")
                ));
            }
        }
        if let Some(min_words) = self.min_words {
            outcome_evidence.insert("min_words".to_string(), min_words.into());
            if words < min_words {
                failures.push(format!(
                    "the justification has {} but at least {min_words} are required",
                    plural(words, "word")
                ));
            }
        }
        if let Some(pattern) = self
            .deny_patterns
            .iter()
            .find(|pattern| pattern.is_match(text))
        {
            outcome_evidence.insert("denied_pattern".to_string(), pattern.as_str().into());
            failures.push(format!(
                "the justification `{}` is too vague; say what you will change and why",
                quote(text, 60)
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
                    outcome_evidence.insert("ticket_number".to_string(), number.into());
                    let mentioned = text.to_lowercase().contains(&number.to_lowercase());
                    outcome_evidence.insert("references_ticket".to_string(), mentioned.into());
                    if !mentioned {
                        failures.push(format!(
                            "the justification does not mention ticket `{number}`; include the ticket number in it"
                        ));
                    }
                }
                None => {
                    let found = ticket_tokens(text).first().map(|token| token.to_string());
                    outcome_evidence
                        .insert("references_ticket".to_string(), found.is_some().into());
                    match found {
                        Some(token) => {
                            outcome_evidence.insert("ticket_number".to_string(), token.into());
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
    fn all_failed_criteria_are_named_in_one_message() {
        let check = build(&spec(), &TestEnv::default().env()).unwrap();
        let mut request = request();
        request.justification = Some("admin".to_string());
        request.ticket = ticket(Some("CHG0031337"), None);
        let outcome = run(check.as_ref(), &request, now());
        assert_eq!(
            outcome.message,
            "the justification is 5 characters long but at least 20 are required; \
             the justification has 1 word but at least 3 are required; \
             the justification `admin` is too vague; say what you will change and why; \
             the justification does not mention ticket `CHG0031337`; include the ticket number in it"
        );
        assert_eq!(outcome.evidence["length"], 5);
        assert_eq!(outcome.evidence["references_ticket"], false);
    }
}
