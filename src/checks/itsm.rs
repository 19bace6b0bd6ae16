//! `itsm`: the ticket the requester names must exist in ServiceNow or Jira, be in an allowed state,
//! be assigned to the requester, and (for changes) plan a window that covers the activation.
//!
//! The requester is known to PIM by object id and to the ITSM system by email or login; the bridge
//! is a [`RequesterDirectory`], in production `Connectors::user_profile` (Graph or the HR file).
//!
//! A field the ticket system did not let pimgate read (`ItsmTicket::unreadable`) never fails the
//! requester: a condition that needs it is not evaluated, naming the system, and `on_error` decides.
//! A condition the ticket definitely breaks still fails, as the stricter answer.

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use tokio::time::Instant;

use super::registry::{BuildEnv, CheckKind, Reach};
use super::util::ticket_tokens;
use super::{Check, CheckContext, CheckOutcome, TimeRole};
use crate::connectors::ConnectorId;
use crate::connectors::http::{Fetched, UpstreamCall, UpstreamError};
use crate::connectors::itsm::{
    Requester, TicketLookup, TicketSource, TicketVendor, Unresolved, either, quoted, ticket_vendor,
};
use crate::connectors::ticket::{ItsmTicket, TicketPerson};
use crate::connectors::{Connectors, PermissionNeed, UserProfile, graph};
use crate::vocabulary::diagnostic::Diagnostic;

/// `itsm: { system: servicenow, tables: [change_request], states: [Implement], assigned_to_requester: true, covers_activation: true }`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ItsmSpec {
    /// `servicenow` or `jira`.
    pub system: String,
    /// ServiceNow tables a ticket may come from; empty means `change_request` and `incident`.
    #[serde(default)]
    pub tables: Vec<String>,
    /// Allowed state names (ServiceNow `Implement`, Jira status `In Progress`) or ServiceNow codes
    /// (`-1`), case-insensitive; empty allows any.
    #[serde(default)]
    pub states: Vec<String>,
    /// Jira only: allowed status category keys (`new`, `indeterminate`, `done`).
    #[serde(default)]
    pub status_categories: Vec<String>,
    #[serde(default)]
    pub assigned_to_requester: bool,
    /// Who on the ticket counts as "the requester's" with `assigned_to_requester`: ServiceNow
    /// `assigned_to` (default), `requested_by`, `requested_for`, `caller_id`, `opened_by`; Jira
    /// `assignee` (default), `reporter`. Any one of them matching is enough.
    #[serde(default)]
    pub requester_roles: Vec<String>,
    /// ServiceNow only: the change's planned `start_date`–`end_date` must contain the activation.
    #[serde(default)]
    pub covers_activation: bool,
}

/// Where the check learns the addresses the requester is known by upstream. A trait so the check can
/// be exercised (and embedded) without Microsoft Graph; production uses [`Connectors`].
#[async_trait]
pub trait RequesterDirectory: Send + Sync + fmt::Debug {
    async fn profile(
        &self,
        principal_id: &str,
        deadline: Instant,
    ) -> (
        Result<Fetched<UserProfile>, UpstreamError>,
        Vec<UpstreamCall>,
    );
}

#[async_trait]
impl RequesterDirectory for Connectors {
    async fn profile(
        &self,
        principal_id: &str,
        deadline: Instant,
    ) -> (
        Result<Fetched<UserProfile>, UpstreamError>,
        Vec<UpstreamCall>,
    ) {
        self.user_profile(principal_id, deadline).await
    }
}

#[derive(Debug)]
struct ItsmCheck {
    system: &'static TicketVendor,
    tables: Vec<String>,
    states: Vec<String>,
    status_categories: Vec<String>,
    assigned_to_requester: bool,
    requester_roles: Vec<String>,
    covers_activation: bool,
    connectors: Arc<Connectors>,
    directory: Arc<dyn RequesterDirectory>,
}

/// `- itsm: ...` in the rules (see `registry::CheckKind`).
#[derive(Debug)]
pub struct ItsmKind;

impl CheckKind for ItsmKind {
    fn reference() -> crate::checks::registry::KindReference {
        crate::checks::registry::KindReference {
            summary: "The request's ticket exists in ServiceNow or Jira, in an allowed state, assigned to the requester, and (ServiceNow changes) planned around the activation.",
            example: "- itsm: { system: servicenow, states: [Implement], assigned_to_requester: true, covers_activation: true }",
            keys: vec![
                crate::checks::registry::KeyDoc::new(
                    "system",
                    "`servicenow` or `jira`",
                    "required",
                    "servicenow",
                    "Which connector is asked.",
                ),
                crate::checks::registry::KeyDoc::new(
                    "tables",
                    "list of ServiceNow tables",
                    "[change_request, incident]",
                    "[change_request]",
                    "ServiceNow tables a ticket may come from.",
                ),
                crate::checks::registry::KeyDoc::new(
                    "states",
                    "list of state names or ServiceNow codes",
                    "[] (any)",
                    "[Implement, \"-1\"]",
                    "Allowed states, case-insensitive.",
                ),
                crate::checks::registry::KeyDoc::new(
                    "status_categories",
                    "list of Jira status category keys",
                    "[] (any)",
                    "[indeterminate]",
                    "Jira only: allowed status categories.",
                ),
                crate::checks::registry::KeyDoc::new(
                    "assigned_to_requester",
                    "boolean",
                    "false",
                    "true",
                    "The requester must be one of `requester_roles` on the ticket (matched by e-mail or user name).",
                ),
                crate::checks::registry::KeyDoc::new(
                    "requester_roles",
                    "list of ticket person fields",
                    "ServiceNow `assigned_to`; Jira `assignee`",
                    "[assigned_to, requested_by]",
                    "Who on the ticket counts as the requester; any one matching is enough.",
                ),
                crate::checks::registry::KeyDoc::new(
                    "covers_activation",
                    "boolean",
                    "false",
                    "true",
                    "ServiceNow only: the change's planned window must contain the activation.",
                ),
            ],
            reads: itsm_reads(),
        }
    }

    const NAME: &'static str = "itsm";
    const REACH: Reach = Reach::Upstream;
    type Spec = ItsmSpec;

    fn connector(spec: &ItsmSpec) -> Option<ConnectorId> {
        ticket_vendor(&spec.system).map(|vendor| vendor.connector)
    }

    fn build(spec: &ItsmSpec, env: &BuildEnv<'_>) -> Result<Arc<dyn Check>, Vec<Diagnostic>> {
        build(spec, env)
    }
}

pub fn build(spec: &ItsmSpec, env: &BuildEnv<'_>) -> Result<Arc<dyn Check>, Vec<Diagnostic>> {
    let directory: Arc<dyn RequesterDirectory> = env.connectors.clone();
    build_with_directory(spec, env, directory)
}

/// [`build`] with another way to resolve the requester: tests use a fixed directory so they need no
/// Graph; production goes through [`build`].
pub fn build_with_directory(
    spec: &ItsmSpec,
    env: &BuildEnv<'_>,
    directory: Arc<dyn RequesterDirectory>,
) -> Result<Arc<dyn Check>, Vec<Diagnostic>> {
    let mut problems = Vec::new();
    let mut add =
        |key: &str, message: String, fix: &str| problems.push(Diagnostic::error(key, message, fix));
    let Some(system) = ticket_vendor(&spec.system) else {
        add(
            "system",
            format!("`{}` is not a supported ITSM system", spec.system),
            "use `servicenow` or `jira`",
        );
        return Err(problems);
    };
    for (index, table) in spec.tables.iter().enumerate() {
        if table.is_empty() || !table.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            add(
                &format!("tables[{index}]"),
                format!("`{table}` is not a ServiceNow table name"),
                "use a table name such as `change_request` or `incident`",
            );
        }
    }
    let roles_allowed = system.person_roles;
    for (index, role) in spec.requester_roles.iter().enumerate() {
        if !roles_allowed.contains(&role.as_str()) {
            add(
                &format!("requester_roles[{index}]"),
                format!(
                    "`{role}` is not a person field of a {} ticket",
                    system.display
                ),
                &format!("use one of {}", quoted(roles_allowed)),
            );
        }
    }
    if !spec.requester_roles.is_empty() && !spec.assigned_to_requester {
        add(
            "requester_roles",
            "has no effect without `assigned_to_requester: true`".to_string(),
            "add `assigned_to_requester: true`, or remove `requester_roles`",
        );
    }
    if !system.tables && !spec.tables.is_empty() {
        add(
            "tables",
            format!("{} has no tables", system.display),
            "remove `tables`; Jira issues are found by key",
        );
    }
    if !system.planned_window && spec.covers_activation {
        add(
            "covers_activation",
            format!("{} issues have no planned start and end", system.display),
            "remove `covers_activation`, or use a `window` check",
        );
    }
    if system.status_categories.is_empty() {
        if !spec.status_categories.is_empty() {
            add(
                "status_categories",
                "only Jira has status categories".to_string(),
                "list ServiceNow state names in `states` instead",
            );
        }
    } else {
        for (index, category) in spec.status_categories.iter().enumerate() {
            if !system
                .status_categories
                .iter()
                .any(|known| known.eq_ignore_ascii_case(category))
            {
                add(
                    &format!("status_categories[{index}]"),
                    format!("`{category}` is not a {} status category", system.display),
                    &format!("use {}", quoted(system.status_categories)),
                );
            }
        }
    }
    if system.tables {
        problems.extend((system.check_states)(&spec.tables, &spec.states));
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    let default_role = system.default_role;
    let requester_roles = if spec.requester_roles.is_empty() {
        vec![default_role.to_string()]
    } else {
        spec.requester_roles.clone()
    };
    Ok(Arc::new(ItsmCheck {
        system,
        tables: spec.tables.clone(),
        states: spec
            .states
            .iter()
            .map(|state| state.trim().to_string())
            .collect(),
        status_categories: spec
            .status_categories
            .iter()
            .map(|category| category.trim().to_ascii_lowercase())
            .collect(),
        assigned_to_requester: spec.assigned_to_requester,
        requester_roles,
        covers_activation: spec.covers_activation,
        connectors: env.connectors.clone(),
        directory,
    }))
}

fn time(value: DateTime<Utc>) -> String {
    value.format("%Y-%m-%d %H:%M UTC").to_string()
}

/// What the identity step concluded: a match, a definite mismatch, or no way to tell.
enum Assignment {
    Matched(String),
    Mismatch(String),
    Unknown(NotEvaluated),
}

/// A condition that could not be evaluated: the requester's sentence, and the operator's detail for
/// the audit evidence (never shown to the requester).
struct NotEvaluated {
    message: String,
    detail: Option<String>,
}

impl From<Unresolved> for NotEvaluated {
    fn from(unresolved: Unresolved) -> Self {
        Self {
            message: unresolved.message,
            detail: unresolved.detail,
        }
    }
}

impl NotEvaluated {
    fn upstream(message: String, error: &UpstreamError) -> Self {
        Self {
            message,
            detail: Some(error.detail()),
        }
    }
}

/// What the operator should look at when a ticket field could not be read.
fn unreadable_detail(system: &TicketVendor, fields: &[&str]) -> String {
    (system.unreadable_detail)(&quoted(fields))
}

impl ItsmCheck {
    /// The number from PIM's ticket field, else the first token in the justification that looks
    /// like this system's tickets (ServiceNow `CHG0031337`, Jira `OPS-12`).
    fn ticket_number(&self, context: &CheckContext<'_>) -> Option<(String, &'static str)> {
        let request = context.request;
        let given = request
            .ticket
            .as_ref()
            .and_then(|ticket| ticket.number.as_deref())
            .map(str::trim)
            .filter(|number| !number.is_empty());
        if let Some(number) = given {
            return Some((number.to_string(), "ticketInfo"));
        }
        let text = request.justification.as_deref()?;
        ticket_tokens(text)
            .into_iter()
            .find(|token| token.contains('-') == self.system.key_has_dash)
            .map(|token| (token.to_ascii_uppercase(), "justification"))
    }

    /// The state conditions this ticket leaves undecidable: the fields they need were not readable.
    fn state_unknown(&self, ticket: &ItsmTicket) -> Option<NotEvaluated> {
        let state = self.system.state_field;
        let (field, needed) = if !self.states.is_empty() && ticket.is_unreadable(state) {
            (state, true)
        } else if !self.system.status_categories.is_empty() {
            ("status_category", !self.status_categories.is_empty())
        } else {
            (state, false)
        };
        (needed && ticket.is_unreadable(field)).then(|| NotEvaluated {
            message: format!(
                "{} did not let pimgate read the {} of `{}`, so it could not be checked",
                self.system.display,
                field.replace('_', " "),
                ticket.number
            ),
            detail: Some(unreadable_detail(self.system, &[field])),
        })
    }

    fn state_problem(&self, ticket: &ItsmTicket) -> Option<String> {
        let number = &ticket.number;
        let state_allowed = self.states.is_empty()
            || self.states.iter().any(|allowed| {
                allowed.eq_ignore_ascii_case(&ticket.state)
                    || (self.system.state_codes
                        && ticket.state_code.as_deref() == Some(allowed.as_str()))
            });
        if !state_allowed {
            let noun = self.system.state_field;
            return Some(format!(
                "`{number}` is in {noun} `{}`; this role needs {noun} {}",
                ticket.state,
                either(&self.states)
            ));
        }
        let category = ticket.status_category.as_deref().unwrap_or("(none)");
        if !self.status_categories.is_empty()
            && !self
                .status_categories
                .iter()
                .any(|allowed| allowed.eq_ignore_ascii_case(category))
        {
            return Some(format!(
                "`{number}` has status `{}` (category `{category}`); this role needs status category {}",
                ticket.state,
                either(&self.status_categories)
            ));
        }
        None
    }

    async fn assignment(
        &self,
        source: &dyn TicketSource,
        ticket: &ItsmTicket,
        context: &CheckContext<'_>,
        calls: &mut Vec<UpstreamCall>,
    ) -> Assignment {
        let number = &ticket.number;
        let people: Vec<&TicketPerson> = self
            .requester_roles
            .iter()
            .filter_map(|role| ticket.person(role))
            .collect();
        // A role pimgate could not read might be the requester's: without a readable match, the
        // assignment is unknown, not wrong.
        let unreadable: Vec<&str> = self
            .requester_roles
            .iter()
            .filter(|role| ticket.is_unreadable(role))
            .map(String::as_str)
            .collect();
        let cannot_tell = || {
            Assignment::Unknown(NotEvaluated {
                message: format!(
                    "{} did not let pimgate read the {} of `{number}`, so the assignment could not be checked",
                    self.system.display,
                    either(&unreadable)
                ),
                detail: Some(unreadable_detail(self.system, &unreadable)),
            })
        };
        if people.is_empty() {
            if !unreadable.is_empty() {
                return cannot_tell();
            }
            return Assignment::Mismatch(format!(
                "`{number}` has no {}; assign it to the requester",
                either(&self.requester_roles)
            ));
        }
        let principal = &context.request.principal_id;
        let (profile, identity_calls) = self.directory.profile(principal, context.deadline).await;
        calls.extend(identity_calls);
        let (addresses, principal_name) = match profile {
            Ok(Fetched::Found(profile)) => (profile.addresses(), profile.user_principal_name),
            Ok(Fetched::NotFound) => {
                return Assignment::Unknown(NotEvaluated {
                    message: format!(
                        "cannot map the requester to an ITSM user: the directory does not know `{principal}`"
                    ),
                    detail: None,
                });
            }
            Err(error) => {
                return Assignment::Unknown(NotEvaluated::upstream(
                    format!("cannot map the requester to an ITSM user: {error}"),
                    &error,
                ));
            }
        };
        if addresses.is_empty() {
            return Assignment::Unknown(NotEvaluated {
                message: format!(
                    "cannot map the requester to an ITSM user: `{principal}` has no mail or user principal name"
                ),
                detail: None,
            });
        }
        for person in &people {
            if person
                .addresses()
                .iter()
                .any(|address| addresses.contains(address))
            {
                return Assignment::Matched(person.role.clone());
            }
        }
        // Jira may hide emails: a person shown only by account id (or login) is compared with the
        // requester's own Jira identity, and when that identity is unknown so is the assignment.
        let hidden: Vec<&TicketPerson> = people
            .iter()
            .copied()
            .filter(|person| person.email.is_none())
            .collect();
        if !hidden.is_empty() {
            let requester = Requester {
                principal_id: principal,
                principal_name: principal_name.as_deref(),
                addresses: &addresses,
                deadline: context.deadline,
            };
            match source.match_hidden(&hidden, &requester, calls).await {
                Ok(Some(role)) => return Assignment::Matched(role),
                Ok(None) => {}
                Err(not_evaluated) => {
                    let not_evaluated = NotEvaluated::from(not_evaluated);
                    return Assignment::Unknown(NotEvaluated {
                        message: format!(
                            "Jira does not show the e-mail address of `{number}`'s {}, and {}, so the assignment could not be checked",
                            either(
                                &hidden
                                    .iter()
                                    .map(|person| person.role.as_str())
                                    .collect::<Vec<_>>()
                            ),
                            not_evaluated.message
                        ),
                        detail: not_evaluated.detail,
                    });
                }
            }
        }
        if !unreadable.is_empty() {
            return cannot_tell();
        }
        let named: Vec<String> = people
            .iter()
            .map(|person| format!("`{}` ({})", person.label(), person.role))
            .collect();
        Assignment::Mismatch(format!(
            "`{number}` is assigned to {}, not to the requester (`{}`); assign the ticket to yourself or ask its assignee to activate",
            named.join(" and "),
            addresses.join("`, `")
        ))
    }

    fn window_problem(&self, ticket: &ItsmTicket, context: &CheckContext<'_>) -> Option<String> {
        let number = &ticket.number;
        let Some(window) = ticket.window else {
            return Some(format!(
                "`{number}` has no planned start and end date, so it cannot cover the activation; fill in the planned dates"
            ));
        };
        // The effective interval: a back-dated start runs from now, and without a known end
        // (no expiration, or none given) no planned window can cover the activation.
        let interval = &context.interval;
        let start = interval.start;
        let Some(end) = interval.end_instant() else {
            return Some(format!(
                "the activation has {}, so it cannot fit `{number}`'s planned window ({} – {})",
                interval.end_label(),
                time(window.start),
                time(window.end)
            ));
        };
        if start < window.start || end > window.end {
            return Some(format!(
                "the activation ({} – {}) is outside `{number}`'s planned window ({} – {}); activate inside the window or reschedule the change",
                time(start),
                time(end),
                time(window.start),
                time(window.end)
            ));
        }
        None
    }
}

#[async_trait]
impl Check for ItsmCheck {
    async fn evaluate(&self, context: &CheckContext<'_>) -> CheckOutcome {
        let system = self.system;
        let Some((number, source)) = self.ticket_number(context) else {
            return CheckOutcome::fail(format!(
                "no ticket number was given; add the {} ticket number in PIM's ticket field",
                system.display
            ))
            .with_evidence("system", system.name)
            .with_evidence("ticket_number", serde_json::Value::Null);
        };
        let mut calls: Vec<UpstreamCall> = Vec::new();
        let base = |outcome: CheckOutcome, calls: &[UpstreamCall]| {
            outcome
                .with_evidence("system", system.name)
                .with_evidence("ticket_number", number.as_str())
                .with_evidence("source", source)
                .with_evidence(
                    "upstream",
                    serde_json::to_value(calls).unwrap_or(serde_json::Value::Null),
                )
        };
        let Some(source) = (system.get)(&self.connectors) else {
            return base(
                CheckOutcome::error(format!(
                    "the {} connector is not configured, so the ticket could not be checked",
                    system.name
                )),
                &calls,
            );
        };
        let answer = match source
            .lookup(&number, &self.tables, context.deadline, &mut calls)
            .await
        {
            TicketLookup::Refused(message) => {
                return base(CheckOutcome::fail(message), &calls);
            }
            TicketLookup::Answer(answer) => answer,
        };
        let ticket = match answer {
            Err(error) => {
                return base(
                    CheckOutcome::error(format!(
                        "{error}, so ticket `{number}` could not be checked"
                    ))
                    .with_evidence("error_detail", error.detail()),
                    &calls,
                );
            }
            Ok(Fetched::NotFound) => {
                return base(
                    CheckOutcome::fail(format!(
                        "`{number}` does not exist in {}; check the number in PIM's ticket field",
                        system.display
                    )),
                    &calls,
                );
            }
            Ok(Fetched::Found(ticket)) => ticket,
        };

        let mut failures = Vec::new();
        let mut unknown: Option<NotEvaluated> = None;
        let mut passed = vec![format!(
            "`{}` is in state `{}`",
            ticket.number, ticket.state
        )];
        if let Some(not_evaluated) = self.state_unknown(&ticket) {
            unknown = Some(not_evaluated);
        } else if let Some(problem) = self.state_problem(&ticket) {
            failures.push(problem);
        }
        let mut matched_role = None;
        if self.assigned_to_requester {
            match self
                .assignment(source.as_ref(), &ticket, context, &mut calls)
                .await
            {
                Assignment::Matched(role) => {
                    passed.push(format!("its {role} is the requester"));
                    matched_role = Some(role);
                }
                Assignment::Mismatch(problem) => failures.push(problem),
                Assignment::Unknown(not_evaluated) => {
                    unknown.get_or_insert(not_evaluated);
                }
            }
        }
        let dates: Vec<&str> = ["start_date", "end_date"]
            .into_iter()
            .filter(|field| ticket.is_unreadable(field))
            .collect();
        if self.covers_activation && !dates.is_empty() {
            unknown.get_or_insert(NotEvaluated {
                message: format!(
                    "{} did not let pimgate read the planned dates of `{}`, so the window could not be checked",
                    system.display,
                    ticket.number
                ),
                detail: Some(unreadable_detail(system, &dates)),
            });
        } else if self.covers_activation {
            match self.window_problem(&ticket, context) {
                Some(problem) => failures.push(problem),
                None => passed.push("its planned window covers the activation".to_string()),
            }
        }

        let outcome = if !failures.is_empty() {
            CheckOutcome::fail(failures.join("; "))
        } else if let Some(not_evaluated) = unknown {
            let outcome = CheckOutcome::error(not_evaluated.message);
            match not_evaluated.detail {
                Some(detail) => {
                    tracing::warn!(
                        check = "itsm",
                        system = system.name,
                        ticket = %ticket.number,
                        detail = %detail,
                        "itsm check not evaluated"
                    );
                    outcome.with_evidence("error_detail", detail)
                }
                None => outcome,
            }
        } else {
            // The state and assignment are what the ITSM system says now, whatever the start.
            CheckOutcome::pass(passed.join(", ")).holding_at(context.now)
        };
        let assignee = self
            .requester_roles
            .iter()
            .find_map(|role| ticket.person(role))
            .map(|person| person.label().to_string());
        let window = ticket.window.map(|window| {
            serde_json::json!({ "start": window.start.to_rfc3339(), "end": window.end.to_rfc3339() })
        });
        base(outcome, &calls)
            .with_evidence("ticket_number", ticket.number.as_str())
            .with_evidence("table", ticket.table.clone())
            .with_evidence("state", ticket.state.as_str())
            .with_evidence("state_code", ticket.state_code.clone())
            .with_evidence("status_category", ticket.status_category.clone())
            .with_evidence("assignee", assignee)
            .with_evidence("requester_role", matched_role)
            .with_evidence("window", window)
            .with_evidence("unreadable", ticket.unreadable.clone())
    }

    fn upstream_permissions(&self) -> Vec<PermissionNeed> {
        // The requester's mail comes from Graph when it is configured (else from the HR file).
        if self.assigned_to_requester && self.connectors.graph.is_some() {
            vec![PermissionNeed {
                permission: &graph::USER_READ_ALL,
                needed_for: "`itsm` checks with `assigned_to_requester` (the requester's mail)",
            }]
        } else {
            Vec::new()
        }
    }

    /// With `covers_activation` the planned window is judged against the effective interval.
    fn time_role(&self) -> TimeRole {
        if self.covers_activation {
            TimeRole::JudgesInterval
        } else {
            TimeRole::Timeless
        }
    }
}

/// What the reference says `itsm` reads: the fields asked for, the planned-window fields and the
/// state codes, from the connectors' own constants.
fn itsm_reads() -> Vec<crate::checks::registry::UpstreamFact> {
    use crate::connectors::{jira, servicenow};
    let mut reads = Vec::new();
    for table in servicenow::DEFAULT_TABLES {
        reads.push(crate::checks::registry::UpstreamFact::new(
            "ServiceNow",
            format!(
                "`{table}` fields: {}",
                servicenow::fields_for(table).join(", ")
            ),
        ));
        let states: Vec<String> = servicenow::known_states(table)
            .iter()
            .map(|(code, name)| format!("{code} = {name}"))
            .collect();
        reads.push(crate::checks::registry::UpstreamFact::new(
            "ServiceNow",
            format!("`{table}` state codes: {}", states.join(", ")),
        ));
    }
    reads.push(crate::checks::registry::UpstreamFact::new(
        "ServiceNow",
        "`covers_activation`: the planned window is `start_date`–`end_date` of a `change_request`",
    ));
    reads.push(crate::checks::registry::UpstreamFact::new(
        "ServiceNow",
        format!("`requester_roles`: {}", servicenow::PERSON_ROLES.join(", ")),
    ));
    reads.push(crate::checks::registry::UpstreamFact::new(
        "Jira",
        format!("issue fields: {}", jira::ISSUE_FIELDS),
    ));
    reads.push(crate::checks::registry::UpstreamFact::new(
        "Jira",
        format!(
            "status categories (`statusCategory.key`): {}",
            jira::STATUS_CATEGORIES.join(", ")
        ),
    ));
    reads.push(crate::checks::registry::UpstreamFact::new(
        "Jira",
        format!("`requester_roles`: {}", jira::PERSON_ROLES.join(", ")),
    ));
    reads.push(crate::checks::registry::UpstreamFact::new(
        "Microsoft Graph",
        format!(
            "the requester's e-mail and user name, with `{}`",
            graph::USER_READ_ALL.name
        ),
    ));
    reads
}
