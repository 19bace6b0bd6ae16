//! `ticket`: the activation must name a ticket, from an accepted system, in that system's format.
//!
//! This check looks only at what the request says; whether the ticket exists, is approved or is
//! assigned to the requester is for the connector-backed checks.

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use regex::Regex;
use serde::Deserialize;

use super::registry::{BuildEnv, SpecProblem};
use super::util::{compile_regex, ticket_tokens};
use super::{Check, CheckContext, CheckOutcome};

/// `ticket: { systems: [ServiceNow, Jira], patterns: { ServiceNow: "^(CHG|INC)[0-9]{7}$" }, from_justification: true }`
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct TicketSpec {
    /// Accepted `ticketSystem` values (case-insensitive); empty = any.
    pub systems: Vec<String>,
    /// Per system (case-insensitive key), a regex the whole ticket number must match; it is anchored
    /// for the operator, so `CHG[0-9]{7}` and `^CHG[0-9]{7}$` mean the same.
    pub patterns: BTreeMap<String, String>,
    /// Accept a ticket number found in the justification when `ticketInfo` is empty.
    pub from_justification: bool,
}

#[derive(Debug)]
struct SystemPattern {
    system: String,
    written: String,
    regex: Regex,
}

#[derive(Debug)]
struct TicketCheck {
    systems: Vec<String>,
    patterns: Vec<SystemPattern>,
    from_justification: bool,
}

pub fn build(spec: &TicketSpec, _env: &BuildEnv<'_>) -> Result<Arc<dyn Check>, Vec<SpecProblem>> {
    let mut problems = Vec::new();
    let mut systems: Vec<String> = Vec::new();
    for (index, system) in spec.systems.iter().enumerate() {
        let system = system.trim();
        if system.is_empty() {
            problems.push(SpecProblem {
                key: format!("systems[{index}]"),
                message: "the ticket system name is empty".to_string(),
                fix: "write the system as PIM's ticket system field carries it, e.g. `ServiceNow`"
                    .to_string(),
            });
        } else if !systems
            .iter()
            .any(|known| known.eq_ignore_ascii_case(system))
        {
            systems.push(system.to_string());
        }
    }
    let mut patterns: Vec<SystemPattern> = Vec::new();
    let mut seen: Vec<&str> = Vec::new();
    for (system, pattern) in &spec.patterns {
        let key = format!("patterns.{system}");
        if seen.iter().any(|known| known.eq_ignore_ascii_case(system)) {
            problems.push(SpecProblem {
                key: key.clone(),
                message: format!(
                    "the system `{system}` has more than one pattern (names are case-insensitive)"
                ),
                fix: "keep one pattern per system; combine alternatives with `|`".to_string(),
            });
            continue;
        }
        seen.push(system);
        if !spec.systems.is_empty()
            && !spec
                .systems
                .iter()
                .any(|known| known.trim().eq_ignore_ascii_case(system))
        {
            problems.push(SpecProblem {
                key: key.clone(),
                message: format!(
                    "the pattern for `{system}` can never apply because `{system}` is not in `systems`"
                ),
                fix: format!("add `{system}` to `systems`, or remove its pattern"),
            });
        }
        match compile_regex(&key, pattern, true) {
            Ok(regex) => patterns.push(SystemPattern {
                system: system.clone(),
                written: pattern.clone(),
                regex,
            }),
            Err(problem) => problems.push(problem),
        }
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    Ok(Arc::new(TicketCheck {
        systems,
        patterns,
        from_justification: spec.from_justification,
    }))
}

impl TicketCheck {
    fn pattern_for(&self, system: &str) -> Option<&SystemPattern> {
        self.patterns
            .iter()
            .find(|pattern| pattern.system.eq_ignore_ascii_case(system))
    }

    /// The first token of the justification that is a plausible ticket for this configuration: one
    /// matching the system's pattern, any pattern, or (with no patterns) the generic ticket shapes.
    fn find_in_justification(&self, text: &str, system: Option<&str>) -> Option<String> {
        let generic = ticket_tokens(text);
        if self.patterns.is_empty() {
            return generic.first().map(|token| token.to_string());
        }
        let words = text
            .split_whitespace()
            .map(|word| word.trim_matches(|character: char| !character.is_alphanumeric()));
        let wanted: Vec<&SystemPattern> = match system.and_then(|system| self.pattern_for(system)) {
            Some(pattern) => vec![pattern],
            None => self.patterns.iter().collect(),
        };
        generic
            .into_iter()
            .chain(words)
            .find(|token| wanted.iter().any(|pattern| pattern.regex.is_match(token)))
            .map(str::to_string)
    }

    fn listed_systems(&self) -> String {
        let names: Vec<String> = self
            .systems
            .iter()
            .map(|system| format!("`{system}`"))
            .collect();
        names.join(", ")
    }
}

fn non_blank(value: Option<&str>) -> Option<&str> {
    value.map(str::trim).filter(|value| !value.is_empty())
}

#[async_trait]
impl Check for TicketCheck {
    async fn evaluate(&self, context: &CheckContext<'_>) -> CheckOutcome {
        let request = context.request;
        let ticket = request.ticket.as_ref();
        let system = non_blank(ticket.and_then(|ticket| ticket.system.as_deref()));
        let given = non_blank(ticket.and_then(|ticket| ticket.number.as_deref()));
        let (number, source) = match given {
            Some(number) => (number.to_string(), "ticketInfo"),
            None => {
                let found = if self.from_justification {
                    request
                        .justification
                        .as_deref()
                        .and_then(|text| self.find_in_justification(text, system))
                } else {
                    None
                };
                match found {
                    Some(number) => (number, "justification"),
                    None => {
                        let message = if self.from_justification {
                            "no ticket number was given and none was found in the justification; \
                             add the ticket number in PIM's ticket field"
                        } else {
                            "no ticket number was given; add the ticket number in PIM's ticket field"
                        };
                        return CheckOutcome::fail(message)
                            .with_evidence("ticket_number", serde_json::Value::Null);
                    }
                }
            }
        };
        let evidence = |outcome: CheckOutcome| {
            outcome
                .with_evidence("ticket_number", number.as_str())
                .with_evidence("ticket_system", system)
                .with_evidence("source", source)
        };

        if let Some(system) = system {
            if !self.systems.is_empty()
                && !self
                    .systems
                    .iter()
                    .any(|known| known.eq_ignore_ascii_case(system))
            {
                return evidence(CheckOutcome::fail(format!(
                    "ticket system `{system}` is not accepted for this role; use {} in PIM's ticket system field",
                    one_of(&self.listed_systems(), self.systems.len())
                )));
            }
            if let Some(pattern) = self.pattern_for(system)
                && !pattern.regex.is_match(&number)
            {
                return evidence(CheckOutcome::fail(format!(
                    "ticket number `{number}` is not a valid `{}` number (it must match `{}`); \
                     check the number in PIM's ticket field",
                    pattern.system, pattern.written
                )))
                .with_evidence("pattern", pattern.written.as_str());
            }
            return evidence(CheckOutcome::pass(format!(
                "ticket `{number}` from `{system}` is given"
            )));
        }

        if self.patterns.is_empty() {
            return evidence(CheckOutcome::pass(format!("ticket `{number}` is given")));
        }
        match self
            .patterns
            .iter()
            .find(|pattern| pattern.regex.is_match(&number))
        {
            Some(pattern) => evidence(CheckOutcome::pass(format!(
                "ticket `{number}` is given and looks like a `{}` number",
                pattern.system
            )))
            .with_evidence("matched_system", pattern.system.as_str()),
            None => {
                let names: Vec<String> = self
                    .patterns
                    .iter()
                    .map(|pattern| format!("`{}`", pattern.system))
                    .collect();
                evidence(CheckOutcome::fail(format!(
                    "ticket number `{number}` does not look like a ticket from {}; \
                     check the number in PIM's ticket field",
                    names.join(" or ")
                )))
            }
        }
    }
}

fn one_of(listed: &str, count: usize) -> String {
    if count == 1 {
        listed.to_string()
    } else {
        format!("one of {listed}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checks::CheckStatus;
    use crate::checks::test_support::{TestEnv, now, request, run, ticket};
    use crate::payload::Ticket;

    fn spec(from_justification: bool) -> TicketSpec {
        TicketSpec {
            systems: vec!["ServiceNow".to_string(), "Jira".to_string()],
            patterns: BTreeMap::from([
                ("ServiceNow".to_string(), "(CHG|INC)[0-9]{7}".to_string()),
                ("Jira".to_string(), "^OPS-[0-9]+$".to_string()),
            ]),
            from_justification,
        }
    }

    #[test]
    fn bad_patterns_blank_systems_and_unreachable_patterns_are_all_reported() {
        let spec = TicketSpec {
            systems: vec!["ServiceNow".to_string(), " ".to_string()],
            patterns: BTreeMap::from([
                ("ServiceNow".to_string(), "(CHG".to_string()),
                ("servicenow".to_string(), "CHG[0-9]+".to_string()),
                ("Jira".to_string(), "OPS-[0-9]+".to_string()),
            ]),
            from_justification: false,
        };
        let problems = build(&spec, &TestEnv::default().env()).unwrap_err();
        let keys: Vec<&str> = problems
            .iter()
            .map(|problem| problem.key.as_str())
            .collect();
        assert_eq!(
            keys,
            [
                "systems[1]",
                "patterns.Jira",
                "patterns.ServiceNow",
                "patterns.servicenow"
            ]
        );
    }

    #[test]
    fn tickets_are_checked_for_presence_system_and_format() {
        type Case = (
            &'static str,
            TicketSpec,
            Option<Ticket>,
            Option<&'static str>,
            CheckStatus,
        );
        let cases: Vec<Case> = vec![
            (
                "a valid ServiceNow change",
                spec(false),
                ticket(Some("CHG0031337"), Some("ServiceNow")),
                None,
                CheckStatus::Pass,
            ),
            (
                "system names are case-insensitive",
                spec(false),
                ticket(Some("CHG0031337"), Some("servicenow")),
                None,
                CheckStatus::Pass,
            ),
            (
                "no ticket at all",
                spec(false),
                None,
                None,
                CheckStatus::Fail,
            ),
            (
                "a blank ticket number",
                spec(false),
                ticket(Some("  "), Some("ServiceNow")),
                None,
                CheckStatus::Fail,
            ),
            (
                "a system that is not accepted",
                spec(false),
                ticket(Some("CHG0031337"), Some("Remedy")),
                None,
                CheckStatus::Fail,
            ),
            (
                "a number in the wrong format for its system",
                spec(false),
                ticket(Some("CHG12"), Some("ServiceNow")),
                None,
                CheckStatus::Fail,
            ),
            (
                "the pattern is anchored for the operator",
                spec(false),
                ticket(Some("XCHG00313370"), Some("ServiceNow")),
                None,
                CheckStatus::Fail,
            ),
            (
                "no system and a number matching one pattern",
                spec(false),
                ticket(Some("OPS-12"), None),
                None,
                CheckStatus::Pass,
            ),
            (
                "no system and a number matching no pattern",
                spec(false),
                ticket(Some("12345"), None),
                None,
                CheckStatus::Fail,
            ),
            (
                "no system and no patterns",
                TicketSpec::default(),
                ticket(Some("anything"), None),
                None,
                CheckStatus::Pass,
            ),
            (
                "any system when none are listed",
                TicketSpec::default(),
                ticket(Some("42"), Some("Remedy")),
                None,
                CheckStatus::Pass,
            ),
            (
                "the justification is ignored unless allowed",
                spec(false),
                None,
                Some("CHG0031337 rotate"),
                CheckStatus::Fail,
            ),
            (
                "a ticket found in the justification",
                spec(true),
                None,
                Some("rotate cert for CHG0031337."),
                CheckStatus::Pass,
            ),
            (
                "a token in the justification must match a pattern",
                spec(true),
                None,
                Some("see PRB0012345"),
                CheckStatus::Fail,
            ),
            (
                "a custom numeric pattern finds a plain number in the justification",
                TicketSpec {
                    patterns: BTreeMap::from([("Remedy".to_string(), "[0-9]{6}".to_string())]),
                    from_justification: true,
                    ..Default::default()
                },
                None,
                Some("per ticket 123456, restart the app"),
                CheckStatus::Pass,
            ),
            (
                "any ticket-looking token counts with no patterns",
                TicketSpec {
                    from_justification: true,
                    ..Default::default()
                },
                None,
                Some("per DATA-77, restart the app"),
                CheckStatus::Pass,
            ),
        ];
        for (name, spec, ticket_info, justification, expected) in cases {
            let check = build(&spec, &TestEnv::default().env()).unwrap();
            let mut request = request();
            request.ticket = ticket_info;
            request.justification = justification.map(str::to_string);
            let outcome = run(check.as_ref(), &request, now());
            assert_eq!(outcome.status, expected, "{name}: {}", outcome.message);
        }
    }

    #[test]
    fn failure_messages_tell_the_requester_what_to_fix() {
        let check = build(&spec(false), &TestEnv::default().env()).unwrap();
        let cases = [
            (
                None,
                "no ticket number was given; add the ticket number in PIM's ticket field",
            ),
            (
                ticket(Some("CHG0031337"), Some("Remedy")),
                "ticket system `Remedy` is not accepted for this role; use one of `ServiceNow`, `Jira` in PIM's ticket system field",
            ),
            (
                ticket(Some("CHG12"), Some("ServiceNow")),
                "ticket number `CHG12` is not a valid `ServiceNow` number (it must match `(CHG|INC)[0-9]{7}`); check the number in PIM's ticket field",
            ),
            (
                ticket(Some("12345"), None),
                "ticket number `12345` does not look like a ticket from `Jira` or `ServiceNow`; check the number in PIM's ticket field",
            ),
        ];
        for (ticket_info, expected) in cases {
            let mut request = request();
            request.ticket = ticket_info;
            let outcome = run(check.as_ref(), &request, now());
            assert_eq!(outcome.message, expected);
        }
    }

    #[test]
    fn evidence_records_where_the_ticket_came_from() {
        let check = build(&spec(true), &TestEnv::default().env()).unwrap();
        let mut request = request();
        request.justification = Some("OPS-77: restart".to_string());
        let outcome = run(check.as_ref(), &request, now());
        assert_eq!(outcome.evidence["ticket_number"], "OPS-77");
        assert_eq!(outcome.evidence["source"], "justification");
        assert_eq!(outcome.evidence["matched_system"], "Jira");
    }
}
