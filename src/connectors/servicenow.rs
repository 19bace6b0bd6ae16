//! ServiceNow's Table API: looks a change, incident or other task record up by number, with the
//! people on it (dot-walked to their email and login) and its planned window.
//!
//! One GET per lookup: `/api/now/table/{table}?sysparm_query=number=…&sysparm_fields=…&sysparm_limit=1`
//! with raw values (`sysparm_display_value=false`) so states are the stable numeric codes and dates
//! are UTC, whatever the integration user's locale and time zone.
//!
//! Each person field is asked twice: the reference itself (`assigned_to`, a sys_id) and, dot-walked,
//! the person's `email` and `user_name`. An integration user that may not read `sys_user` gets the
//! dot-walked values empty; the reference then still shows someone is assigned, so "unreadable" and
//! "nobody" stay apart. A field the answer leaves out is unreadable too, never "none".

use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use super::BuildContext;
use super::cache::{CacheSettings, TtlCache};
use super::http::{CircuitSettings, Fetched, RetrySettings, Upstream, UpstreamCall, UpstreamError};
use super::oauth::{ClientSecret, TokenEndpoint, TokenSource};
use super::secrets::{Secret, SecretRef, required_secret};
use super::ticket::{ItsmTicket, TicketPerson, TicketWindow, non_empty, parse_servicenow_time};
use crate::vocabulary::diagnostic::Diagnostic;

/// The connector's name in upstream records, messages and rules.
pub const NAME: &str = "servicenow";

/// Tables searched when a rule lists none: the two kinds of ticket that justify privileged access.
pub const DEFAULT_TABLES: &[&str] = &["change_request", "incident"];

/// A token is refreshed this long before ServiceNow says it expires, so no request carries a token
/// that dies in flight.
const TOKEN_REFRESH_MARGIN: Duration = Duration::from_secs(60);

const TOKEN_OPERATION: &str = "POST /oauth_token.do";

/// ServiceNow's default access token lifetime, assumed when the answer does not say.
const DEFAULT_TOKEN_LIFETIME: Duration = Duration::from_secs(1800);

/// `[connectors.servicenow]`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServiceNowSettings {
    /// The instance, e.g. `https://contoso.service-now.com`.
    pub base_url: Option<String>,
    pub auth: ServiceNowAuth,
    /// Basic auth: the integration user's `user_name`.
    pub username: Option<String>,
    pub password: Option<SecretRef>,
    /// OAuth: the Application Registry entry's client id and secret.
    pub client_id: Option<String>,
    pub client_secret: Option<SecretRef>,
    pub timeout_ms: u64,
    pub cache: CacheSettings,
    /// Retries of idempotent GETs (attempts, backoff); defaults suit most systems.
    #[serde(default)]
    pub retry: RetrySettings,
    /// When to stop calling this system for a while after repeated failures.
    #[serde(default)]
    pub circuit: CircuitSettings,
}

impl Default for ServiceNowSettings {
    fn default() -> Self {
        Self {
            base_url: None,
            auth: ServiceNowAuth::Basic,
            username: None,
            password: None,
            client_id: None,
            client_secret: None,
            timeout_ms: 2000,
            cache: CacheSettings::default(),
            retry: RetrySettings::default(),
            circuit: CircuitSettings::default(),
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ServiceNowAuth {
    /// HTTP Basic with a (read-only) integration user.
    #[default]
    Basic,
    /// OAuth 2.0 client credentials against `{base_url}/oauth_token.do`.
    Oauth,
}

#[derive(Debug)]
enum Credentials {
    Basic { username: String, password: Secret },
    OAuth,
}

#[derive(Debug)]
pub struct ServiceNow {
    base_url: String,
    upstream: Upstream,
    credentials: Credentials,
    tickets: TtlCache<ItsmTicket>,
    /// OAuth only: the cached, single-flight client-credentials token.
    token: Option<TokenSource>,
}

fn problem(key: &str, message: impl Into<String>, fix: impl Into<String>) -> Diagnostic {
    super::settings_problem("servicenow", key, message, fix)
}

impl ServiceNow {
    pub fn new(
        settings: &ServiceNowSettings,
        context: &BuildContext,
    ) -> Result<Self, Vec<Diagnostic>> {
        let mut problems = Vec::new();
        let base_url = super::base_url(
            "servicenow",
            settings.base_url.as_deref(),
            None,
            "`https://contoso.service-now.com`",
            &mut problems,
        );
        super::call_timeout("servicenow", settings.timeout_ms, &mut problems);
        let credentials = match settings.auth {
            ServiceNowAuth::Basic => {
                let username = non_empty(settings.username.as_deref());
                if username.is_none() {
                    problems.push(problem(
                        "username",
                        "is missing (auth = \"basic\")",
                        "set it to the integration user's `user_name`",
                    ));
                }
                let password =
                    required_secret("servicenow", "password", &settings.password, &mut problems);
                username
                    .zip(password)
                    .map(|(username, password)| (Credentials::Basic { username, password }, None))
            }
            ServiceNowAuth::Oauth => {
                let client_id = non_empty(settings.client_id.as_deref());
                if client_id.is_none() {
                    problems.push(problem(
                        "client_id",
                        "is missing (auth = \"oauth\")",
                        "set it to the client id of the OAuth API endpoint in System OAuth > Application Registry",
                    ));
                }
                let secret = required_secret(
                    "servicenow",
                    "client_secret",
                    &settings.client_secret,
                    &mut problems,
                );
                client_id.zip(secret).map(|(client_id, secret)| {
                    (
                        Credentials::OAuth,
                        Some((
                            TokenEndpoint {
                                connector: NAME,
                                operation: TOKEN_OPERATION,
                                system: "ServiceNow",
                                url: format!("{base_url}/oauth_token.do"),
                                client_id,
                                scope: None,
                                timeout: Duration::from_millis(settings.timeout_ms),
                                margin: TOKEN_REFRESH_MARGIN,
                            },
                            secret,
                        )),
                    )
                })
            }
        };
        match credentials {
            Some((credentials, token)) if problems.is_empty() => Ok(Self {
                base_url,
                upstream: Upstream::with_settings(
                    NAME,
                    context.http.clone(),
                    Duration::from_millis(settings.timeout_ms),
                    settings.retry,
                    settings.circuit,
                ),
                credentials,
                tickets: TtlCache::with_name("servicenow_tickets", settings.cache),
                token: token.map(|(endpoint, secret)| {
                    TokenSource::new(
                        endpoint,
                        context.http.clone(),
                        Box::new(ClientSecret(secret)),
                        parse_token_answer,
                    )
                }),
            }),
            _ => Err(problems),
        }
    }

    /// Looks `number` up in the first of `tables` that has it, each table's answer cached on its
    /// own. Every HTTP exchange (and cache hit) is in the returned records, token fetches included.
    pub async fn ticket(
        &self,
        number: &str,
        tables: &[String],
        deadline: Instant,
    ) -> (
        Result<Fetched<ItsmTicket>, UpstreamError>,
        Vec<UpstreamCall>,
    ) {
        let mut calls = Vec::new();
        let number = number.trim().to_ascii_uppercase();
        if !is_valid_number(&number) {
            return (Ok(Fetched::NotFound), calls);
        }
        for table in tables {
            let operation = format!("GET /api/now/table/{table}");
            let key = format!("{table}/{number}");
            let (answer, cached) = self
                .tickets
                .get_or_fetch(&key, self.fetch(table, &number, deadline, &mut calls))
                .await;
            if cached {
                calls.push(UpstreamCall::cached(NAME, &operation, &answer));
            }
            match answer {
                Ok(Fetched::NotFound) => continue,
                other => return (other, calls),
            }
        }
        (Ok(Fetched::NotFound), calls)
    }

    async fn fetch(
        &self,
        table: &str,
        number: &str,
        deadline: Instant,
        calls: &mut Vec<UpstreamCall>,
    ) -> Result<Fetched<ItsmTicket>, UpstreamError> {
        let mut url = reqwest::Url::parse(&format!("{}/api/now/table/{table}", self.base_url))
            .map_err(|_| UpstreamError::Unreachable { connector: NAME })?;
        url.query_pairs_mut()
            .append_pair("sysparm_query", &format!("number={number}"))
            .append_pair("sysparm_fields", &fields_for(table).join(","))
            .append_pair("sysparm_limit", "1")
            .append_pair("sysparm_display_value", "false")
            .append_pair("sysparm_exclude_reference_link", "true");
        let request = self
            .upstream
            .client()
            .get(url)
            .header(reqwest::header::ACCEPT, "application/json");
        let mut generation = None;
        let request = match &self.credentials {
            Credentials::Basic { username, password } => {
                request.basic_auth(username, Some(password.expose()))
            }
            Credentials::OAuth => {
                let Some(source) = &self.token else {
                    return Err(UpstreamError::Auth {
                        connector: NAME,
                        detail: "no OAuth client is configured".to_string(),
                    });
                };
                let token = source.token(deadline, calls).await?;
                generation = Some(token.generation);
                request.bearer_auth(token.value.expose())
            }
        };
        let operation = format!("GET /api/now/table/{table}");
        let (result, mut call) = self
            .upstream
            .get_json::<TableResponse>(request, &operation, deadline)
            .await;
        // The Table API answers an unknown number with 200 and an empty list: record it as what
        // it means.
        let answer = match result {
            Ok(Fetched::Found(response)) => match response.result.into_iter().next() {
                None => {
                    call.outcome = "not_found".to_string();
                    Ok(Fetched::NotFound)
                }
                Some(record) => {
                    let ticket = ticket_from_record(table, number, &record, &operation);
                    if ticket.is_err() {
                        call.outcome = "wrong_record".to_string();
                    }
                    ticket.map(Fetched::Found)
                }
            },
            other => other.map(|_| Fetched::NotFound),
        };
        calls.push(call);
        if let (Err(UpstreamError::Auth { .. }), Some(source), Some(generation)) =
            (&answer, &self.token, generation)
        {
            // A revoked or shortened token: fetch a fresh one next time instead of failing until it
            // would have expired.
            source.invalidate(generation);
        }
        answer
    }
}

#[derive(Debug, Deserialize)]
struct TableResponse {
    result: Vec<serde_json::Map<String, serde_json::Value>>,
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    #[serde(default)]
    expires_in: Option<serde_json::Value>,
}

/// What `/oauth_token.do`'s answer (status and body) means: the access token and its lifetime,
/// clamped to [`super::limits::MIN_TOKEN_LIFETIME`, `super::limits::MAX_TOKEN_LIFETIME`]; an
/// `expires_in` left out (or unreadable) is ServiceNow's default of 30 minutes. Pure, so the fuzz
/// target feeds it arbitrary answers.
pub fn parse_token_answer(status: u16, body: &[u8]) -> Result<(Secret, Duration), UpstreamError> {
    if status == 429 {
        return Err(UpstreamError::RateLimited { connector: NAME });
    }
    if (400..=499).contains(&status) {
        return Err(UpstreamError::Auth {
            connector: NAME,
            detail: format!(
                "the OAuth token endpoint answered HTTP {status}; check client_id and client_secret"
            ),
        });
    }
    if !(200..=299).contains(&status) {
        return Err(UpstreamError::Status {
            connector: NAME,
            status,
        });
    }
    let token: TokenResponse =
        serde_json::from_slice(body).map_err(|_| UpstreamError::Malformed { connector: NAME })?;
    let value =
        non_empty(Some(&token.access_token)).ok_or(UpstreamError::Malformed { connector: NAME })?;
    let lifetime = token
        .expires_in
        .as_ref()
        .and_then(super::limits::token_lifetime)
        .unwrap_or(DEFAULT_TOKEN_LIFETIME);
    Ok((Secret::new(value), lifetime))
}

/// What a Table API answer body says about ticket `number` in `table`: an empty `result` is
/// "no such ticket"; a record for another number is [`UpstreamError::WrongRecord`]. Pure (the fuzz
/// target's entry point); the connector decodes the same `TableResponse` through the HTTP layer.
pub fn parse_ticket(
    table: &str,
    number: &str,
    body: &[u8],
) -> Result<Fetched<ItsmTicket>, UpstreamError> {
    let response: TableResponse =
        serde_json::from_slice(body).map_err(|_| UpstreamError::Malformed { connector: NAME })?;
    match response.result.first() {
        None => Ok(Fetched::NotFound),
        Some(record) => ticket_from_record(table, number, record, "parse").map(Fetched::Found),
    }
}

/// ServiceNow numbers are a prefix and digits. Anything else is refused before it reaches the
/// encoded query, where `^` or `=` would change what is asked.
pub fn is_valid_number(number: &str) -> bool {
    (3..=40).contains(&number.len()) && number.chars().all(|c| c.is_ascii_alphanumeric())
}

/// The table a number's prefix belongs to in a standard instance (`CHG…` → `change_request`).
pub fn table_for_number(number: &str) -> Option<&'static str> {
    let prefix: String = number
        .trim()
        .chars()
        .take_while(|c| c.is_ascii_alphabetic())
        .collect::<String>()
        .to_ascii_uppercase();
    match prefix.as_str() {
        "CHG" => Some("change_request"),
        "CTASK" => Some("change_task"),
        "INC" => Some("incident"),
        "PRB" => Some("problem"),
        "RITM" => Some("sc_req_item"),
        "REQ" => Some("sc_request"),
        "SCTASK" => Some("sc_task"),
        _ => None,
    }
}

/// Which tables to search for `number`: the one its prefix names if the rule allows it (none if it
/// does not), else every allowed table in order. `allowed` empty means [`DEFAULT_TABLES`].
pub fn tables_for(number: &str, allowed: &[String]) -> Vec<String> {
    let allowed: Vec<String> = if allowed.is_empty() {
        DEFAULT_TABLES
            .iter()
            .map(|table| table.to_string())
            .collect()
    } else {
        allowed.to_vec()
    };
    match table_for_number(number) {
        Some(table) => allowed
            .into_iter()
            .filter(|listed| listed.eq_ignore_ascii_case(table))
            .collect(),
        None => allowed,
    }
}

/// The role fields each table has that name a person, dot-walked to `email` and `user_name`.
fn person_roles(table: &str) -> &'static [&'static str] {
    match table {
        "change_request" => &["assigned_to", "requested_by", "opened_by"],
        "incident" => &["assigned_to", "caller_id", "opened_by"],
        "sc_req_item" | "sc_request" => &["assigned_to", "requested_for", "opened_by"],
        _ => &["assigned_to", "opened_by"],
    }
}

/// Roles a rule may name in `requester_roles` for any ServiceNow table.
pub const PERSON_ROLES: &[&str] = &[
    "assigned_to",
    "requested_by",
    "requested_for",
    "caller_id",
    "opened_by",
];

/// `sysparm_fields` for a table: only fields that exist there (planned dates live on changes).
pub fn fields_for(table: &str) -> Vec<String> {
    let mut fields = vec!["number".to_string(), "state".to_string()];
    for role in person_roles(table) {
        fields.push(role.to_string());
        fields.push(format!("{role}.email"));
        fields.push(format!("{role}.user_name"));
    }
    if table == "change_request" {
        for field in ["start_date", "end_date", "work_start", "work_end"] {
            fields.push(field.to_string());
        }
    }
    fields
}

/// Numeric `state` values of the base system, by table. Instances can add states; an unknown code
/// is shown (and may be listed in rules) as the number itself.
pub fn known_states(table: &str) -> &'static [(&'static str, &'static str)] {
    match table {
        "change_request" => &[
            ("-5", "New"),
            ("-4", "Assess"),
            ("-3", "Authorize"),
            ("-2", "Scheduled"),
            ("-1", "Implement"),
            ("0", "Review"),
            ("3", "Closed"),
            ("4", "Canceled"),
        ],
        "incident" => &[
            ("1", "New"),
            ("2", "In Progress"),
            ("3", "On Hold"),
            ("6", "Resolved"),
            ("7", "Closed"),
            ("8", "Canceled"),
        ],
        _ => &[],
    }
}

pub fn state_name(table: &str, code: &str) -> Option<&'static str> {
    known_states(table)
        .iter()
        .find(|(known, _)| *known == code)
        .map(|(_, name)| *name)
}

/// The ticket a Table API record describes; [`UpstreamError::WrongRecord`] when the record is not
/// `number` (or does not say which it is).
fn ticket_from_record(
    table: &str,
    number: &str,
    record: &serde_json::Map<String, serde_json::Value>,
    operation: &str,
) -> Result<ItsmTicket, UpstreamError> {
    let field = |name: &str| match record.get(name) {
        Some(serde_json::Value::String(text)) => non_empty(Some(text)),
        Some(serde_json::Value::Number(value)) => Some(value.to_string()),
        _ => None,
    };
    let answered = field("number");
    if !answered
        .as_deref()
        .is_some_and(|answered| answered.eq_ignore_ascii_case(number))
    {
        return Err(UpstreamError::wrong_record(
            NAME,
            operation,
            number,
            answered.as_deref(),
        ));
    }
    let mut unreadable = Vec::new();
    // Every task has a state; an empty or missing one is a state pimgate was not shown.
    let code = field("state");
    let state = match &code {
        Some(code) => state_name(table, code).unwrap_or(code).to_string(),
        None => {
            unreadable.push("state".to_string());
            "(unknown)".to_string()
        }
    };
    let mut people = Vec::new();
    for role in person_roles(table) {
        let email = field(&format!("{role}.email"));
        let login = field(&format!("{role}.user_name"));
        if email.is_some() || login.is_some() {
            people.push(TicketPerson {
                role: role.to_string(),
                email,
                login,
                account_id: None,
            });
            continue;
        }
        // Nobody readable: an empty reference is "nobody"; a set one (sys_user not readable) or a
        // missing one (the field not shown) is unknown.
        match record.get(*role) {
            Some(serde_json::Value::String(reference)) if reference.trim().is_empty() => {}
            _ => unreadable.push(role.to_string()),
        }
    }
    let window = if table == "change_request" {
        planned_window(record, &mut unreadable)
    } else {
        None
    };
    Ok(ItsmTicket {
        system: NAME,
        number: answered.unwrap_or_else(|| number.to_string()),
        table: Some(table.to_string()),
        state,
        state_code: code,
        status_category: None,
        people,
        window,
        unreadable,
    })
}

/// A change's planned `start_date`–`end_date`. Both empty (or one of them) is a change with no plan,
/// which the ticket's owner can fix; a date left out of the answer, or one that does not parse, is
/// unknown.
fn planned_window(
    record: &serde_json::Map<String, serde_json::Value>,
    unreadable: &mut Vec<String>,
) -> Option<TicketWindow> {
    let mut ends = Vec::new();
    for name in ["start_date", "end_date"] {
        match record.get(name) {
            Some(serde_json::Value::String(text)) if text.trim().is_empty() => ends.push(None),
            Some(serde_json::Value::String(text)) => match parse_servicenow_time(text) {
                Some(time) => ends.push(Some(time)),
                None => {
                    unreadable.push(name.to_string());
                    return None;
                }
            },
            _ => {
                unreadable.push(name.to_string());
                return None;
            }
        }
    }
    match ends.as_slice() {
        [Some(start), Some(end)] => Some(TicketWindow {
            start: *start,
            end: *end,
        }),
        _ => None,
    }
}

/// ServiceNow as a ticket source: the number must look like one, and belong to a table the rule
/// accepts; then the first of those tables that has it answers.
#[async_trait::async_trait]
impl super::itsm::TicketSource for ServiceNow {
    async fn lookup(
        &self,
        number: &str,
        tables: &[String],
        deadline: Instant,
        calls: &mut Vec<UpstreamCall>,
    ) -> super::itsm::TicketLookup {
        use super::itsm::{TicketLookup, either, quote};
        if !is_valid_number(number) {
            return TicketLookup::Refused(format!(
                "`{}` is not a ServiceNow number; give a number such as `CHG0031337` in PIM's ticket field",
                quote(number, 40)
            ));
        }
        let routed = tables_for(number, tables);
        if routed.is_empty() {
            let kind = table_for_number(number).unwrap_or("other");
            let accepted: Vec<&str> = if tables.is_empty() {
                DEFAULT_TABLES.to_vec()
            } else {
                tables.iter().map(String::as_str).collect()
            };
            return TicketLookup::Refused(format!(
                "`{number}` belongs to table `{kind}`, but this role accepts only {} tickets",
                either(&accepted)
            ));
        }
        let (answer, made) = self.ticket(number, &routed, deadline).await;
        calls.extend(made);
        TicketLookup::Answer(answer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_pick_their_table_only_when_the_rule_allows_it() {
        let allowed = |tables: &[&str]| -> Vec<String> {
            tables.iter().map(|table| table.to_string()).collect()
        };
        assert_eq!(tables_for("CHG0031337", &[]), ["change_request"]);
        assert_eq!(tables_for("inc0012345", &[]), ["incident"]);
        assert!(tables_for("RITM0012345", &[]).is_empty());
        assert_eq!(
            tables_for("RITM0012345", &allowed(&["sc_req_item"])),
            ["sc_req_item"]
        );
        assert!(tables_for("CHG0031337", &allowed(&["incident"])).is_empty());
        assert_eq!(
            tables_for("X123456", &allowed(&["u_custom", "incident"])),
            ["u_custom", "incident"]
        );
    }

    #[test]
    fn numbers_that_could_change_the_encoded_query_are_refused() {
        assert!(is_valid_number("CHG0031337"));
        assert!(!is_valid_number("CHG0031337^ORnumber=CHG1"));
        assert!(!is_valid_number("CHG 1"));
        assert!(!is_valid_number(""));
    }

    fn record(json: serde_json::Value) -> serde_json::Map<String, serde_json::Value> {
        json.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn an_assignee_pimgate_may_not_read_is_unreadable_and_an_empty_one_is_nobody() {
        let hidden = record(serde_json::json!({
            "number": "CHG1", "state": "-1",
            "assigned_to": "681ccaf9c0a8016400b98a06818d57c7", "assigned_to.email": "", "assigned_to.user_name": "",
            "requested_by": "", "requested_by.email": "", "requested_by.user_name": "",
            "start_date": "", "end_date": ""
        }));
        let ticket = ticket_from_record("change_request", "CHG1", &hidden, "GET").unwrap();
        assert_eq!(ticket.unreadable, ["assigned_to", "opened_by"]);
        assert!(ticket.people.is_empty());
        assert_eq!(ticket.window, None);
    }

    #[test]
    fn a_record_for_another_number_or_none_is_refused() {
        let other = record(serde_json::json!({ "number": "CHG2", "state": "-1" }));
        assert!(matches!(
            ticket_from_record("change_request", "CHG1", &other, "GET"),
            Err(UpstreamError::WrongRecord {
                answered: Some(_),
                ..
            })
        ));
        let unnamed = record(serde_json::json!({ "state": "-1" }));
        assert!(matches!(
            ticket_from_record("incident", "INC1", &unnamed, "GET"),
            Err(UpstreamError::WrongRecord { answered: None, .. })
        ));
    }

    #[test]
    fn fields_are_asked_only_where_they_exist() {
        let change = fields_for("change_request").join(",");
        assert!(change.contains("requested_by.email") && change.contains("start_date"));
        let incident = fields_for("incident").join(",");
        assert!(incident.contains("caller_id.user_name"));
        assert!(!incident.contains("start_date") && !incident.contains("requested_by"));
    }
}
