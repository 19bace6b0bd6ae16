//! The one shape an ITSM ticket takes inside pimgate, whichever system it came from, so the `itsm`
//! check decides on ServiceNow records and Jira issues with the same code.

use chrono::{DateTime, NaiveDateTime, Utc};
use serde::{Deserialize, Serialize};

/// A ticket as the check needs it: its state, the people on it, and its planned window.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ItsmTicket {
    /// `servicenow` or `jira`.
    pub system: &'static str,
    /// The number as the system spells it (`CHG0031337`, `OPS-12`).
    pub number: String,
    /// ServiceNow table (`change_request`, `incident`, …); `None` for Jira.
    pub table: Option<String>,
    /// Human state name (`Implement`, `In Progress`); the raw code when pimgate knows no name for it.
    pub state: String,
    /// The system's raw value: ServiceNow's numeric `state`, Jira's status id.
    pub state_code: Option<String>,
    /// Jira's status category key (`new`, `indeterminate`, `done`).
    pub status_category: Option<String>,
    /// Everyone the ticket names, by role (`assigned_to`, `requested_by`, `assignee`, …).
    pub people: Vec<TicketPerson>,
    /// The planned window (ServiceNow `start_date`/`end_date`), when the ticket has both ends.
    pub window: Option<TicketWindow>,
    /// Fields the system did not let pimgate read: left out of the answer, a person the integration
    /// user may not see (`assigned_to` set, its email and login empty), a value that does not parse.
    /// Names as rules use them (`state`, `assigned_to`, `start_date`, …). A field listed here has no
    /// value above that means anything: it is unknown, never "none".
    pub unreadable: Vec<String>,
}

impl ItsmTicket {
    /// The person in `role`, if the ticket names one.
    pub fn person(&self, role: &str) -> Option<&TicketPerson> {
        self.people.iter().find(|person| person.role == role)
    }

    pub fn is_unreadable(&self, field: &str) -> bool {
        self.unreadable.iter().any(|name| name == field)
    }
}

/// One person on a ticket. Which identifiers are present depends on the system and its privacy
/// settings (Jira Cloud may hide email addresses and give only an account id).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TicketPerson {
    pub role: String,
    pub email: Option<String>,
    /// ServiceNow `user_name`, Jira Data Center `name`.
    pub login: Option<String>,
    /// Jira Cloud `accountId`.
    pub account_id: Option<String>,
}

impl TicketPerson {
    /// The lower-cased email and login, for case-insensitive matching against directory addresses.
    pub fn addresses(&self) -> Vec<String> {
        [&self.email, &self.login]
            .into_iter()
            .flatten()
            .map(|value| value.trim().to_ascii_lowercase())
            .filter(|value| !value.is_empty())
            .collect()
    }

    /// What to show in a message: email, else login, else account id.
    pub fn label(&self) -> &str {
        self.email
            .as_deref()
            .or(self.login.as_deref())
            .or(self.account_id.as_deref())
            .unwrap_or("someone")
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TicketWindow {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
}

/// A recorded ticket (`connectors::facts`), read back: its `system` must be a vendor pimgate knows.
#[derive(Deserialize)]
struct RecordedTicket {
    system: String,
    number: String,
    table: Option<String>,
    state: String,
    state_code: Option<String>,
    status_category: Option<String>,
    people: Vec<TicketPerson>,
    window: Option<TicketWindow>,
    unreadable: Vec<String>,
}

impl<'de> Deserialize<'de> for ItsmTicket {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let recorded = RecordedTicket::deserialize(deserializer)?;
        ItsmTicket::try_from(recorded).map_err(serde::de::Error::custom)
    }
}

impl TryFrom<RecordedTicket> for ItsmTicket {
    type Error = String;

    fn try_from(recorded: RecordedTicket) -> Result<Self, String> {
        let system = super::itsm::ticket_vendor(&recorded.system)
            .map(|vendor| vendor.name)
            .ok_or_else(|| format!("`{}` is not a ticket system", recorded.system))?;
        Ok(ItsmTicket {
            system,
            number: recorded.number,
            table: recorded.table,
            state: recorded.state,
            state_code: recorded.state_code,
            status_category: recorded.status_category,
            people: recorded.people,
            window: recorded.window,
            unreadable: recorded.unreadable,
        })
    }
}

/// Trims and drops empty strings: upstreams send `""` for an empty reference or date.
pub fn non_empty(value: Option<&str>) -> Option<String> {
    value
        .map(str::trim)
        .filter(|value| !value.is_empty())
        .map(str::to_string)
}

/// ServiceNow's Table API with `sysparm_display_value=false` gives dates as UTC `YYYY-MM-DD HH:MM:SS`.
pub fn parse_servicenow_time(value: &str) -> Option<DateTime<Utc>> {
    NaiveDateTime::parse_from_str(value.trim(), "%Y-%m-%d %H:%M:%S")
        .ok()
        .map(|naive| naive.and_utc())
}

/// Reads a body up to `limit` bytes: token endpoints go around `Upstream::get_json`, not around its cap.
pub async fn read_capped(mut response: reqwest::Response, limit: usize) -> Option<Vec<u8>> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.ok()? {
        if body.len() + chunk.len() > limit {
            return None;
        }
        body.extend_from_slice(&chunk);
    }
    Some(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn servicenow_times_are_read_as_utc_and_blank_values_as_absent() {
        let parsed = parse_servicenow_time("2026-11-24 17:30:00");
        assert_eq!(
            parsed.map(|time| time.to_rfc3339()),
            Some("2026-11-24T17:30:00+00:00".to_string())
        );
        assert_eq!(parse_servicenow_time(""), None);
        assert_eq!(parse_servicenow_time("24.11.2026 17:30"), None);
        assert_eq!(non_empty(Some("  ")), None);
        assert_eq!(non_empty(Some(" a ")), Some("a".to_string()));
    }

    #[test]
    fn a_person_is_matched_by_lower_cased_email_and_login() {
        let person = TicketPerson {
            role: "assigned_to".to_string(),
            email: Some("Ada.Lovelace@Contoso.com".to_string()),
            login: Some("ada".to_string()),
            account_id: None,
        };
        assert_eq!(person.addresses(), ["ada.lovelace@contoso.com", "ada"]);
        assert_eq!(person.label(), "Ada.Lovelace@Contoso.com");
    }
}
