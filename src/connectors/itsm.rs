//! The one way the `itsm` check asks a ticket system, whichever it is: [`TicketSource`],
//! implemented by each vendor's connector (`servicenow`, `jira`), and the table of vendors rules
//! may name ([`TICKET_VENDORS`]) with what each can do. The check never matches vendor names.

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use tokio::time::Instant;

use super::facts::{self, FactAnswer, Recordable, Unanswerable};
use super::http::{Fetched, UpstreamCall, UpstreamError};
use super::ticket::{ItsmTicket, TicketPerson};
use super::{ConnectorId, Connectors, jira, servicenow};
use crate::vocabulary::diagnostic::Diagnostic;

/// What a lookup found. `Refused` is the requester's sentence for a number this system cannot
/// hold (a definite fail, nothing asked).
#[derive(Debug)]
pub enum TicketLookup {
    Answer(Result<Fetched<ItsmTicket>, UpstreamError>),
    Refused(String),
}

/// A condition that could not be evaluated: the requester's sentence, and the operator's detail for
/// the audit evidence (never shown to the requester).
#[derive(Debug)]
pub struct Unresolved {
    pub message: String,
    pub detail: Option<String>,
}

/// The requester as the identity step knows them, for systems that hide people's e-mails.
#[derive(Debug, Clone, Copy)]
pub struct Requester<'a> {
    pub principal_id: &'a str,
    pub principal_name: Option<&'a str>,
    pub addresses: &'a [String],
    pub deadline: Instant,
}

/// A ticket system, as the `itsm` check uses it.
#[async_trait]
pub trait TicketSource: Send + Sync + fmt::Debug {
    /// The ticket `number` (already trimmed), from `tables` where the system has them (empty: the
    /// vendor's defaults). Every call made is appended to `calls`.
    async fn lookup(
        &self,
        number: &str,
        tables: &[String],
        deadline: Instant,
        calls: &mut Vec<UpstreamCall>,
    ) -> TicketLookup;

    /// For people the ticket shows without an e-mail (`hidden`): the role of the first who is the
    /// requester, known exactly. `Ok(None)`: none of them (or the system never hides e-mails).
    async fn match_hidden(
        &self,
        _hidden: &[&TicketPerson],
        _requester: &Requester<'_>,
        _calls: &mut Vec<UpstreamCall>,
    ) -> Result<Option<String>, Unresolved> {
        Ok(None)
    }
}

/// A ticket system whose answers go through the fact book (`connectors::facts`): recorded by the
/// service, answered from the record by a replay. Every vendor in [`TICKET_VENDORS`] is handed out
/// wrapped, so no check can ask around the book.
#[derive(Debug)]
struct Booked {
    name: &'static str,
    inner: Arc<dyn TicketSource>,
}

impl Booked {
    fn wrap(name: &'static str, inner: Arc<dyn TicketSource>) -> Arc<dyn TicketSource> {
        Arc::new(Booked { name, inner })
    }
}

#[async_trait]
impl TicketSource for Booked {
    async fn lookup(
        &self,
        number: &str,
        tables: &[String],
        deadline: Instant,
        calls: &mut Vec<UpstreamCall>,
    ) -> TicketLookup {
        let key = format!("{}|{number}", tables.join(","));
        let fetch = async {
            let mut made = Vec::new();
            let lookup = self.inner.lookup(number, tables, deadline, &mut made).await;
            (lookup, made)
        };
        let (lookup, made) = facts::through(&format!("{}.ticket", self.name), &key, fetch).await;
        calls.extend(made);
        lookup
    }

    async fn match_hidden(
        &self,
        hidden: &[&TicketPerson],
        requester: &Requester<'_>,
        calls: &mut Vec<UpstreamCall>,
    ) -> Result<Option<String>, Unresolved> {
        let people: Vec<&str> = hidden.iter().map(|person| person.label()).collect();
        let key = format!("{}|{}", requester.principal_id, people.join(","));
        let fetch = async {
            let mut made = Vec::new();
            let matched = HiddenMatch(self.inner.match_hidden(hidden, requester, &mut made).await);
            (matched, made)
        };
        let (matched, made) =
            facts::through(&format!("{}.hidden_people", self.name), &key, fetch).await;
        calls.extend(made);
        matched.0
    }
}

impl Recordable for TicketLookup {
    fn to_answer(&self) -> FactAnswer {
        match self {
            TicketLookup::Answer(answer) => answer.to_answer(),
            TicketLookup::Refused(why) => FactAnswer::Value(serde_json::json!({ "refused": why })),
        }
    }

    fn from_answer(answer: FactAnswer, source: &str) -> Result<Self, String> {
        if let FactAnswer::Value(value) = &answer
            && let Some(why) = value.get("refused").and_then(serde_json::Value::as_str)
        {
            return Ok(TicketLookup::Refused(why.to_string()));
        }
        Recordable::from_answer(answer, source).map(TicketLookup::Answer)
    }
}

impl Unanswerable for TicketLookup {
    fn unanswerable(source: &str, detail: String) -> Self {
        TicketLookup::Answer(Unanswerable::unanswerable(source, detail))
    }
}

/// [`TicketSource::match_hidden`]'s answer, as the fact book keeps it.
struct HiddenMatch(Result<Option<String>, Unresolved>);

impl Recordable for HiddenMatch {
    fn to_answer(&self) -> FactAnswer {
        match &self.0 {
            Ok(Some(role)) => FactAnswer::Value(serde_json::json!({ "role": role })),
            Ok(None) => FactAnswer::NotFound(true),
            Err(unresolved) => FactAnswer::Value(serde_json::json!({
                "unresolved": unresolved.message,
                "detail": unresolved.detail,
            })),
        }
    }

    fn from_answer(answer: FactAnswer, _source: &str) -> Result<Self, String> {
        let text = |value: &serde_json::Value, key: &str| {
            value
                .get(key)
                .and_then(serde_json::Value::as_str)
                .map(str::to_string)
        };
        match answer {
            FactAnswer::NotFound(_) => Ok(HiddenMatch(Ok(None))),
            FactAnswer::Value(value) => match (text(&value, "role"), text(&value, "unresolved")) {
                (Some(role), _) => Ok(HiddenMatch(Ok(Some(role)))),
                (None, Some(message)) => Ok(HiddenMatch(Err(Unresolved {
                    message,
                    detail: text(&value, "detail"),
                }))),
                (None, None) => Err("neither a role nor an unresolved match".into()),
            },
            FactAnswer::Error(class) => Err(format!("an error class ({class}) for a match")),
        }
    }
}

impl Unanswerable for HiddenMatch {
    fn unanswerable(_source: &str, detail: String) -> Self {
        HiddenMatch(Err(Unresolved {
            message: "the people on the ticket could not be matched to you".into(),
            detail: Some(detail),
        }))
    }
}

/// What rules may name as an `itsm` system, and what it can do.
#[derive(Clone, Copy)]
pub struct TicketVendor {
    /// The `system:` value in rules and the evidence's `system`.
    pub name: &'static str,
    /// How requesters know it (`ServiceNow`).
    pub display: &'static str,
    pub connector: ConnectorId,
    /// Person fields `requester_roles` may name, and the default one.
    pub person_roles: &'static [&'static str],
    pub default_role: &'static str,
    /// The ticket field a state is read from (`state`, `status`), also the word in messages.
    pub state_field: &'static str,
    /// Whether `states` may list raw state codes (ServiceNow `-1`).
    pub state_codes: bool,
    /// Status category keys (Jira); empty: the system has none.
    pub status_categories: &'static [&'static str],
    /// Whether tickets live in tables (`tables:`), and have a planned window (`covers_activation`).
    pub tables: bool,
    pub planned_window: bool,
    /// Whether a ticket number in a justification contains a `-` (Jira `OPS-12`).
    pub key_has_dash: bool,
    /// Spec problems with `states` for these `tables` (keys below the check, e.g. `states[1]`).
    pub check_states: fn(&[String], &[String]) -> Vec<Diagnostic>,
    /// What the operator should look at when these ticket fields could not be read.
    pub unreadable_detail: fn(&str) -> String,
    /// The configured connector, if any.
    pub get: fn(&Connectors) -> Option<Arc<dyn TicketSource>>,
}

impl fmt::Debug for TicketVendor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name)
    }
}

/// Every ticket system. A new one: a connector file implementing [`TicketSource`], and a line here.
pub const TICKET_VENDORS: &[TicketVendor] = &[
    TicketVendor {
        name: servicenow::NAME,
        display: "ServiceNow",
        connector: ConnectorId::ServiceNow,
        person_roles: servicenow::PERSON_ROLES,
        default_role: "assigned_to",
        state_field: "state",
        state_codes: true,
        status_categories: &[],
        tables: true,
        planned_window: true,
        key_has_dash: false,
        check_states: servicenow_states,
        unreadable_detail: |fields| {
            format!(
                "ServiceNow's answer left {fields} out or empty although set; give the integration user read access to those fields and, for people, to `sys_user` (`email`, `user_name`)"
            )
        },
        get: |connectors| {
            let source: Arc<dyn TicketSource> = connectors.servicenow.clone()?;
            Some(Booked::wrap(servicenow::NAME, source))
        },
    },
    TicketVendor {
        name: jira::NAME,
        display: "Jira",
        connector: ConnectorId::Jira,
        person_roles: jira::PERSON_ROLES,
        default_role: "assignee",
        state_field: "status",
        state_codes: false,
        status_categories: jira::STATUS_CATEGORIES,
        tables: false,
        planned_window: false,
        key_has_dash: true,
        check_states: |_, _| Vec::new(),
        unreadable_detail: |fields| {
            format!(
                "Jira's answer did not show {fields}; give pimgate's account *Browse projects* on the project and check the field is on the issue"
            )
        },
        get: |connectors| {
            let source: Arc<dyn TicketSource> = connectors.jira.clone()?;
            Some(Booked::wrap(jira::NAME, source))
        },
    },
];

/// The vendor rules call `name`.
pub fn ticket_vendor(name: &str) -> Option<&'static TicketVendor> {
    TICKET_VENDORS.iter().find(|vendor| vendor.name == name)
}

/// "`a`, `b`": values quoted for a message.
pub fn quoted<S: AsRef<str>>(values: &[S]) -> String {
    values
        .iter()
        .map(|value| format!("`{}`", value.as_ref()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// "`a` or `b`".
pub fn either<S: AsRef<str>>(values: &[S]) -> String {
    values
        .iter()
        .map(|value| format!("`{}`", value.as_ref()))
        .collect::<Vec<_>>()
        .join(" or ")
}

/// States can be checked only when pimgate knows every listed table's states; a custom table may
/// have any.
fn servicenow_states(tables: &[String], states: &[String]) -> Vec<Diagnostic> {
    let tables: Vec<String> = if tables.is_empty() {
        servicenow::DEFAULT_TABLES
            .iter()
            .map(|table| table.to_string())
            .collect()
    } else {
        tables.to_vec()
    };
    if !tables
        .iter()
        .all(|table| !servicenow::known_states(table).is_empty())
    {
        return Vec::new();
    }
    let known: Vec<(&str, &str)> = tables
        .iter()
        .flat_map(|table| servicenow::known_states(table).iter().copied())
        .collect();
    let mut problems = Vec::new();
    for (index, state) in states.iter().enumerate() {
        if !known
            .iter()
            .any(|(code, name)| name.eq_ignore_ascii_case(state.trim()) || *code == state.trim())
        {
            let mut names: Vec<&str> = known.iter().map(|(_, name)| *name).collect();
            names.dedup();
            problems.push(Diagnostic::error(
                format!("states[{index}]"),
                format!("`{state}` is not a state of {}", tables.join(" or ")),
                format!("use one of {}", quoted(&names)),
            ));
        }
    }
    problems
}

/// Shortens a value quoted back in a message, so one long value cannot flood the reason.
pub fn quote(text: &str, max_chars: usize) -> String {
    if text.chars().count() <= max_chars {
        return text.to_string();
    }
    let shortened: String = text.chars().take(max_chars).collect();
    format!("{shortened}…")
}
