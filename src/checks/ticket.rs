//! `ticket`: the activation must name a ticket, from an accepted system, in that system's format.
//!
//! This check looks only at what the request says; whether the ticket exists, is approved or is
//! assigned to the requester is for the connector-backed checks.
//!
//! The *known* systems are `systems` when given, else the keys of `patterns`; with neither, any system
//! and any number pass. A ticket must belong to a known system: by the system it names (trimmed,
//! compared ignoring case), whose pattern (if it has one) the number must match, or, when it names
//! none, by a number matching the pattern of at least one known system. A system that is not known
//! never passes, whatever the number: an unknown system has no pattern, and "no pattern" must not
//! mean "any number" when the patterns define which systems are accepted.

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use regex::Regex;
use serde::Deserialize;

use super::registry::{BuildEnv, CheckKind, Reach};
use super::util::{compile_regex, quote, ticket_tokens};
use super::{Check, CheckContext, CheckOutcome};
use crate::connectors::ConnectorId;
use crate::vocabulary::diagnostic::Diagnostic;

/// `ticket: { systems: [ServiceNow, Jira], patterns: { ServiceNow: "^(CHG|INC)[0-9]{7}$" }, from_justification: true }`
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct TicketSpec {
    /// Accepted `ticketSystem` values (trimmed, case-insensitive); empty = the keys of `patterns`,
    /// and with no patterns either, any.
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
    /// The known systems: `systems` if given, else the pattern keys; empty = any system.
    known: Vec<String>,
    patterns: Vec<SystemPattern>,
    from_justification: bool,
}

/// System names as PIM's free-text field and the rules carry them: surrounding blanks and case do not
/// matter.
fn same_system(left: &str, right: &str) -> bool {
    left.trim().to_lowercase() == right.trim().to_lowercase()
}

/// `- ticket: ...` in the rules (see `registry::CheckKind`).
#[derive(Debug)]
pub struct TicketKind;

impl CheckKind for TicketKind {
    fn reference() -> crate::checks::registry::KindReference {
        crate::checks::registry::KindReference {
            summary: "The request carries a ticket number of an accepted system and shape (format only; `itsm` asks the system).",
            example: "- ticket: { systems: [ServiceNow], patterns: { ServiceNow: \"CHG[0-9]{7}\" }, from_justification: true }",
            keys: vec![
                crate::checks::registry::KeyDoc::new(
                    "systems",
                    "list of strings",
                    "[] (the keys of `patterns`; with none, any system)",
                    "[ServiceNow, Jira]",
                    "Accepted `ticketSystem` values, trimmed and case-insensitive.",
                ),
                crate::checks::registry::KeyDoc::new(
                    "patterns",
                    "map of system to regex",
                    "{}",
                    "{ ServiceNow: \"CHG[0-9]{7}\" }",
                    "Per system, a regex the whole ticket number must match (anchored for you).",
                ),
                crate::checks::registry::KeyDoc::new(
                    "from_justification",
                    "boolean",
                    "false",
                    "true",
                    "Accept a ticket number found in the justification when `ticketInfo` is empty.",
                ),
            ],
            reads: Vec::new(),
        }
    }

    const NAME: &'static str = "ticket";
    const REACH: Reach = Reach::Local;
    type Spec = TicketSpec;

    fn connector(_spec: &TicketSpec) -> Option<ConnectorId> {
        None
    }

    fn build(spec: &TicketSpec, env: &BuildEnv<'_>) -> Result<Arc<dyn Check>, Vec<Diagnostic>> {
        build(spec, env)
    }
}

pub fn build(spec: &TicketSpec, _env: &BuildEnv<'_>) -> Result<Arc<dyn Check>, Vec<Diagnostic>> {
    let mut problems = Vec::new();
    let mut systems: Vec<String> = Vec::new();
    for (index, system) in spec.systems.iter().enumerate() {
        let system = system.trim();
        if system.is_empty() {
            problems.push(Diagnostic::error(
                format!("systems[{index}]"),
                "the ticket system name is empty",
                "write the system as PIM's ticket system field carries it, e.g. `ServiceNow`",
            ));
        } else if !systems.iter().any(|known| same_system(known, system)) {
            systems.push(system.to_string());
        }
    }
    let mut patterns: Vec<SystemPattern> = Vec::new();
    let mut seen: Vec<&str> = Vec::new();
    for (written_system, pattern) in &spec.patterns {
        let key = format!("patterns.{written_system}");
        let system = written_system.trim();
        if system.is_empty() {
            problems.push(Diagnostic::error(key, "the ticket system name is empty", "key the pattern by the system as PIM's ticket system field carries it, e.g. `ServiceNow`"));
            continue;
        }
        if seen.iter().any(|known| same_system(known, system)) {
            problems.push(Diagnostic::error(
                key.clone(),
                format!(
                    "the system `{system}` has more than one pattern (names are case-insensitive)"
                ),
                "keep one pattern per system; combine alternatives with `|`",
            ));
            continue;
        }
        seen.push(system);
        if !spec.systems.is_empty() && !spec.systems.iter().any(|known| same_system(known, system))
        {
            problems.push(Diagnostic::error(key.clone(), format!(
                    "the pattern for `{system}` can never apply because `{system}` is not in `systems`"
                ), format!("add `{system}` to `systems`, or remove its pattern")));
        }
        match compile_regex(&key, pattern, true) {
            Ok(regex) => patterns.push(SystemPattern {
                system: system.to_string(),
                written: pattern.clone(),
                regex,
            }),
            Err(problem) => problems.push(*problem),
        }
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    let known = if systems.is_empty() {
        patterns
            .iter()
            .map(|pattern| pattern.system.clone())
            .collect()
    } else {
        systems
    };
    Ok(Arc::new(TicketCheck {
        known,
        patterns,
        from_justification: spec.from_justification,
    }))
}

impl TicketCheck {
    fn pattern_for(&self, system: &str) -> Option<&SystemPattern> {
        self.patterns
            .iter()
            .find(|pattern| same_system(&pattern.system, system))
    }

    /// The known system `system` names, as the rules spell it; `None` when it is not known. Only
    /// meaningful when some systems are known.
    fn known_system(&self, system: &str) -> Option<&str> {
        self.known
            .iter()
            .find(|known| same_system(known, system))
            .map(String::as_str)
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

    /// The known systems for a reason: "`ServiceNow`" or "one of `Jira`, `ServiceNow`".
    fn accepted_systems(&self) -> String {
        let names: Vec<String> = self
            .known
            .iter()
            .map(|system| format!("`{system}`"))
            .collect();
        if names.len() == 1 {
            names.join("")
        } else {
            format!("one of {}", names.join(", "))
        }
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
            if self.known.is_empty() {
                return evidence(CheckOutcome::pass(format!(
                    "ticket `{number}` from `{}` is given",
                    quote(system, 40)
                )));
            }
            let Some(known) = self.known_system(system) else {
                return evidence(CheckOutcome::fail(format!(
                    "ticket system `{}` is not accepted for this role; use {} in PIM's ticket system field",
                    quote(system, 40),
                    self.accepted_systems()
                )));
            };
            if let Some(pattern) = self.pattern_for(known)
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
                "ticket `{number}` from `{known}` is given"
            )))
            .with_evidence("matched_system", known);
        }

        if self.known.is_empty() {
            return evidence(CheckOutcome::pass(format!("ticket `{number}` is given")));
        }
        // No system named: the number must show which known system it belongs to.
        if let Some(pattern) = self
            .patterns
            .iter()
            .find(|pattern| pattern.regex.is_match(&number))
        {
            return evidence(CheckOutcome::pass(format!(
                "ticket `{number}` is given and looks like a `{}` number",
                pattern.system
            )))
            .with_evidence("matched_system", pattern.system.as_str());
        }
        if self.patterns.is_empty() {
            return evidence(CheckOutcome::fail(format!(
                "the ticket has no system; give {} in PIM's ticket system field",
                self.accepted_systems()
            )));
        }
        let names: Vec<String> = self
            .patterns
            .iter()
            .map(|pattern| format!("`{}`", pattern.system))
            .collect();
        let some_without_pattern = self.known.len() > self.patterns.len();
        let or_name_it = if some_without_pattern {
            format!(
                ", or give its system ({}) in PIM's ticket system field",
                self.accepted_systems()
            )
        } else {
            String::new()
        };
        evidence(CheckOutcome::fail(format!(
            "ticket number `{number}` does not look like a ticket from {}; \
             check the number in PIM's ticket field{or_name_it}",
            names.join(" or ")
        )))
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
                (" ".to_string(), "[0-9]+".to_string()),
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
                "patterns. ",
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

    /// Every combination of (systems empty/set) × (patterns empty/set) × (ticket system known,
    /// unknown, absent) × (number matching the pattern or not). "Known" systems are `systems` when
    /// given, else the keys of `patterns`; with neither, every system is accepted.
    #[test]
    fn known_systems_come_from_systems_else_pattern_keys_and_unknown_ones_never_pass() {
        use CheckStatus::{Fail, Pass};
        let systems = |set: bool| -> Vec<String> {
            if set {
                vec!["ServiceNow".to_string(), "Jira".to_string()]
            } else {
                Vec::new()
            }
        };
        let patterns = |set: bool| -> BTreeMap<String, String> {
            if set {
                BTreeMap::from([("ServiceNow".to_string(), "(CHG|INC)[0-9]{7}".to_string())])
            } else {
                BTreeMap::new()
            }
        };
        // (systems set, patterns set, ticket system, number matches, expected)
        let table: [(bool, bool, Option<&str>, bool, CheckStatus); 24] = [
            // Nothing configured: any system, any number.
            (false, false, Some("ServiceNow"), true, Pass),
            (false, false, Some("ServiceNow"), false, Pass),
            (false, false, Some("x"), true, Pass),
            (false, false, Some("x"), false, Pass),
            (false, false, None, true, Pass),
            (false, false, None, false, Pass),
            // Patterns only: their keys are the known systems.
            (false, true, Some("ServiceNow"), true, Pass),
            (false, true, Some("ServiceNow"), false, Fail),
            (false, true, Some("x"), true, Fail),
            (false, true, Some("x"), false, Fail),
            (false, true, None, true, Pass),
            (false, true, None, false, Fail),
            // Systems only: a ticket must name one of them, numbers are free.
            (true, false, Some("ServiceNow"), true, Pass),
            (true, false, Some("ServiceNow"), false, Pass),
            (true, false, Some("x"), true, Fail),
            (true, false, Some("x"), false, Fail),
            (true, false, None, true, Fail),
            (true, false, None, false, Fail),
            // Both: the system must be listed and, where it has a pattern, the number match it.
            (true, true, Some("ServiceNow"), true, Pass),
            (true, true, Some("ServiceNow"), false, Fail),
            (true, true, Some("x"), true, Fail),
            (true, true, Some("x"), false, Fail),
            (true, true, None, true, Pass),
            (true, true, None, false, Fail),
        ];
        for (systems_set, patterns_set, system, matching, expected) in table {
            let spec = TicketSpec {
                systems: systems(systems_set),
                patterns: patterns(patterns_set),
                from_justification: false,
            };
            let check = build(&spec, &TestEnv::default().env()).unwrap();
            let number = if matching { "CHG0031337" } else { "12345" };
            let mut request = request();
            request.ticket = ticket(Some(number), system);
            let outcome = run(check.as_ref(), &request, now());
            assert_eq!(
                outcome.status, expected,
                "systems set: {systems_set}, patterns set: {patterns_set}, system: {system:?}, \
                 number: {number}: {}",
                outcome.message
            );
        }
    }

    #[test]
    fn system_names_are_trimmed_and_compared_ignoring_case_and_a_listed_system_without_pattern_takes_any_number()
     {
        let spec = TicketSpec {
            systems: vec![" ServiceNow ".to_string(), "Jira".to_string()],
            patterns: BTreeMap::from([("servicenow".to_string(), "(CHG|INC)[0-9]{7}".to_string())]),
            from_justification: true,
        };
        let check = build(&spec, &TestEnv::default().env()).unwrap();
        let cases = [
            (
                ticket(Some("CHG0031337"), Some("SERVICENOW")),
                None,
                CheckStatus::Pass,
            ),
            (
                ticket(Some("CHG12"), Some("serviceNow")),
                None,
                CheckStatus::Fail,
            ),
            (
                ticket(Some("whatever-1"), Some("jira")),
                None,
                CheckStatus::Pass,
            ),
            (
                ticket(None, Some("Remedy")),
                Some("fix CHG0031337 now"),
                CheckStatus::Fail,
            ),
            (
                ticket(None, Some("x")),
                Some("fix CHG0031337 now"),
                CheckStatus::Fail,
            ),
            (None, Some("fix CHG0031337 now"), CheckStatus::Pass),
            (None, Some("fix OPS-12 now"), CheckStatus::Fail),
        ];
        for (ticket_info, justification, expected) in cases {
            let mut request = request();
            request.ticket = ticket_info.clone();
            request.justification = justification.map(str::to_string);
            let outcome = run(check.as_ref(), &request, now());
            assert_eq!(
                outcome.status, expected,
                "{ticket_info:?} {justification:?}: {}",
                outcome.message
            );
        }
    }

    #[test]
    fn an_unknown_system_fails_with_a_reason_naming_the_accepted_ones() {
        let spec = TicketSpec {
            patterns: BTreeMap::from([
                ("ServiceNow".to_string(), "(CHG|INC)[0-9]{7}".to_string()),
                ("Jira".to_string(), "OPS-[0-9]+".to_string()),
            ]),
            ..Default::default()
        };
        let check = build(&spec, &TestEnv::default().env()).unwrap();
        let mut request = request();
        request.ticket = ticket(Some("anything"), Some("x"));
        let outcome = run(check.as_ref(), &request, now());
        assert_eq!(outcome.status, CheckStatus::Fail);
        assert_eq!(
            outcome.message,
            "ticket system `x` is not accepted for this role; use one of `Jira`, `ServiceNow` in PIM's ticket system field"
        );
        let spec = TicketSpec {
            systems: vec!["ServiceNow".to_string()],
            ..Default::default()
        };
        let check = build(&spec, &TestEnv::default().env()).unwrap();
        request.ticket = ticket(Some("anything"), None);
        let outcome = run(check.as_ref(), &request, now());
        assert_eq!(
            outcome.message,
            "the ticket has no system; give `ServiceNow` in PIM's ticket system field"
        );
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
