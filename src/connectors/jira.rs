//! Jira's REST API, Cloud (`/rest/api/3`, Basic `email:api_token`) or Data Center (`/rest/api/2`,
//! a personal access token as Bearer): an issue's status, status category and assignee, and — because
//! Jira Cloud may hide email addresses — the account ids an email address belongs to.
//!
//! Who the requester is in Jira is an exact identity only: an account the operator mapped in
//! `accounts`, or a user whose returned e-mail is exactly the requester's. Jira's user search is fuzzy
//! (prefixes, display names) and a user with a hidden e-mail says nothing about who they are.
//!
//! `"assignee": null` is Jira saying the issue is unassigned; an issue without an `assignee` field
//! at all (hidden from pimgate's account, or not on the issue type) is an assignee pimgate does not
//! know. The answer must be the issue asked for: a different `key` (a moved issue answers under its
//! new key) is not used.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use super::BuildContext;
use super::cache::{CacheSettings, TtlCache};
use super::http::{CircuitSettings, Fetched, RetrySettings, Upstream, UpstreamCall, UpstreamError};
use super::secrets::{Secret, SecretRef, required_secret};
use super::ticket::{ItsmTicket, TicketPerson, non_empty};
use crate::vocabulary::diagnostic::Diagnostic;

/// The connector's name in upstream records, messages and rules.
pub const NAME: &str = "jira";

/// Roles a rule may name in `requester_roles` for Jira.
pub const PERSON_ROLES: &[&str] = &["assignee", "reporter"];

/// Jira's fixed status category keys.
/// The issue fields pimgate asks Jira for (`GET /rest/api/…/issue/{key}?fields=…`).
pub const ISSUE_FIELDS: &str = "status,assignee,reporter,duedate";

pub const STATUS_CATEGORIES: &[&str] = &["new", "indeterminate", "done"];

/// `[connectors.jira]`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct JiraSettings {
    /// `https://contoso.atlassian.net` (Cloud) or your server's base URL (Data Center).
    pub base_url: Option<String>,
    pub flavor: JiraFlavor,
    /// Cloud: the Atlassian account the API token belongs to.
    pub email: Option<String>,
    /// Cloud: an API token of that account.
    pub api_token: Option<SecretRef>,
    /// Data Center: a personal access token.
    pub personal_access_token: Option<SecretRef>,
    pub timeout_ms: u64,
    pub cache: CacheSettings,
    /// Retries of idempotent GETs (attempts, backoff); defaults suit most systems.
    #[serde(default)]
    pub retry: RetrySettings,
    /// When to stop calling this system for a while after repeated failures.
    #[serde(default)]
    pub circuit: CircuitSettings,
    /// Requester → Jira user, for people whose e-mail Jira hides: an Entra object id or user
    /// principal name (case-insensitive) → the Jira Cloud `accountId` (Data Center: the username).
    /// An entry here is the requester's identity; the user search is not asked.
    #[serde(default)]
    pub accounts: BTreeMap<String, String>,
}

impl Default for JiraSettings {
    fn default() -> Self {
        Self {
            base_url: None,
            flavor: JiraFlavor::Cloud,
            email: None,
            api_token: None,
            personal_access_token: None,
            timeout_ms: 2000,
            cache: CacheSettings::default(),
            retry: RetrySettings::default(),
            circuit: CircuitSettings::default(),
            accounts: BTreeMap::new(),
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum JiraFlavor {
    #[default]
    Cloud,
    Datacenter,
}

#[derive(Debug)]
enum Credentials {
    Basic { email: String, token: Secret },
    Bearer(Secret),
}

/// A Jira user an email address resolved to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct JiraUser {
    /// Cloud.
    pub account_id: Option<String>,
    /// Data Center login.
    pub name: Option<String>,
    pub email: Option<String>,
}

#[derive(Debug)]
pub struct Jira {
    base_url: String,
    flavor: JiraFlavor,
    upstream: Upstream,
    credentials: Credentials,
    issues: TtlCache<ItsmTicket>,
    users: TtlCache<Vec<JiraUser>>,
    /// `accounts`, keys trimmed and lower-cased.
    accounts: BTreeMap<String, String>,
}

fn problem(key: &str, message: impl Into<String>, fix: impl Into<String>) -> Diagnostic {
    super::settings_problem("jira", key, message, fix)
}

impl Jira {
    pub fn new(settings: &JiraSettings, context: &BuildContext) -> Result<Self, Vec<Diagnostic>> {
        let mut problems = Vec::new();
        let base_url = super::base_url(
            "jira",
            settings.base_url.as_deref(),
            None,
            "`https://contoso.atlassian.net`",
            &mut problems,
        );
        super::call_timeout("jira", settings.timeout_ms, &mut problems);
        let accounts = account_map(&settings.accounts, &mut problems);
        let credentials = match settings.flavor {
            JiraFlavor::Cloud => {
                let email = non_empty(settings.email.as_deref());
                if email.is_none() {
                    problems.push(problem(
                        "email",
                        "is missing (flavor = \"cloud\")",
                        "set it to the Atlassian account the API token belongs to",
                    ));
                }
                let token =
                    required_secret("jira", "api_token", &settings.api_token, &mut problems);
                email
                    .zip(token)
                    .map(|(email, token)| Credentials::Basic { email, token })
            }
            JiraFlavor::Datacenter => required_secret(
                "jira",
                "personal_access_token",
                &settings.personal_access_token,
                &mut problems,
            )
            .map(Credentials::Bearer),
        };
        match credentials {
            Some(credentials) if problems.is_empty() => Ok(Self {
                base_url,
                flavor: settings.flavor,
                upstream: Upstream::with_settings(
                    NAME,
                    context.http.clone(),
                    Duration::from_millis(settings.timeout_ms),
                    settings.retry,
                    settings.circuit,
                ),
                credentials,
                issues: TtlCache::with_name("jira_issues", settings.cache),
                users: TtlCache::with_name("jira_users", settings.cache),
                accounts,
            }),
            _ => Err(problems),
        }
    }

    pub fn flavor(&self) -> JiraFlavor {
        self.flavor
    }

    /// The Jira user `accounts` maps the requester to, by object id first (it never changes),
    /// else by user principal name.
    pub fn mapped_user(&self, object_id: &str, principal_name: Option<&str>) -> Option<JiraUser> {
        let key = |value: &str| value.trim().to_ascii_lowercase();
        let mapped = self
            .accounts
            .get(&key(object_id))
            .or_else(|| principal_name.and_then(|name| self.accounts.get(&key(name))))?;
        Some(match self.flavor {
            JiraFlavor::Cloud => JiraUser {
                account_id: Some(mapped.clone()),
                name: None,
                email: None,
            },
            JiraFlavor::Datacenter => JiraUser {
                account_id: None,
                name: Some(mapped.clone()),
                email: None,
            },
        })
    }

    fn api(&self) -> &'static str {
        match self.flavor {
            JiraFlavor::Cloud => "/rest/api/3",
            JiraFlavor::Datacenter => "/rest/api/2",
        }
    }

    fn authorized(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        let request = request.header(reqwest::header::ACCEPT, "application/json");
        match &self.credentials {
            Credentials::Basic { email, token } => request.basic_auth(email, Some(token.expose())),
            Credentials::Bearer(token) => request.bearer_auth(token.expose()),
        }
    }

    /// The issue `key` (`OPS-12`), cached; a 404 (no such issue, or not visible to pimgate) is
    /// `NotFound`.
    pub async fn issue(
        &self,
        key: &str,
        deadline: Instant,
    ) -> (
        Result<Fetched<ItsmTicket>, UpstreamError>,
        Vec<UpstreamCall>,
    ) {
        let mut calls = Vec::new();
        let key = key.trim().to_ascii_uppercase();
        if !is_valid_key(&key) {
            return (Ok(Fetched::NotFound), calls);
        }
        let operation = format!("GET {}/issue/{{key}}", self.api());
        let fetch = async {
            let mut url =
                reqwest::Url::parse(&format!("{}{}/issue/{key}", self.base_url, self.api()))
                    .map_err(|_| UpstreamError::Unreachable { connector: NAME })?;
            url.query_pairs_mut().append_pair("fields", ISSUE_FIELDS);
            let request = self.authorized(self.upstream.client().get(url));
            let (result, mut call) = self
                .upstream
                .get_json::<IssueResponse>(request, &operation, deadline)
                .await;
            let answer = match result {
                Ok(Fetched::Found(issue)) => {
                    let ticket = ticket_from_issue(&key, issue, &operation);
                    if ticket.is_err() {
                        call.outcome = "wrong_record".to_string();
                    }
                    ticket.map(Fetched::Found)
                }
                Ok(Fetched::NotFound) => Ok(Fetched::NotFound),
                Err(error) => Err(error),
            };
            calls.push(call);
            answer
        };
        let (answer, cached) = self.issues.get_or_fetch(&key, fetch).await;
        if cached {
            calls.push(UpstreamCall::cached(NAME, &operation, &answer));
        }
        (answer, calls)
    }

    /// The users `email` belongs to, cached. Jira's user search also matches display names and
    /// prefixes, so only a user whose returned email is exactly this address counts; a user whose
    /// email is hidden is never one, even when the search found nobody else.
    pub async fn users_by_email(
        &self,
        email: &str,
        deadline: Instant,
    ) -> (
        Result<Fetched<Vec<JiraUser>>, UpstreamError>,
        Vec<UpstreamCall>,
    ) {
        let mut calls = Vec::new();
        let email = email.trim().to_ascii_lowercase();
        let operation = format!("GET {}/user/search", self.api());
        let fetch = async {
            let mut url =
                reqwest::Url::parse(&format!("{}{}/user/search", self.base_url, self.api()))
                    .map_err(|_| UpstreamError::Unreachable { connector: NAME })?;
            // Cloud searches by `query`; Data Center by `username`, which also matches emails.
            let parameter = match self.flavor {
                JiraFlavor::Cloud => "query",
                JiraFlavor::Datacenter => "username",
            };
            url.query_pairs_mut().append_pair(parameter, &email);
            let request = self.authorized(self.upstream.client().get(url));
            let (result, call) = self
                .upstream
                .get_json::<Vec<UserResponse>>(request, &operation, deadline)
                .await;
            calls.push(call);
            Ok(match result? {
                Fetched::NotFound => Fetched::NotFound,
                Fetched::Found(found) => {
                    let users = matching_users(&email, found);
                    if users.is_empty() {
                        Fetched::NotFound
                    } else {
                        Fetched::Found(users)
                    }
                }
            })
        };
        let (answer, cached) = self.users.get_or_fetch(&email, fetch).await;
        if cached {
            calls.push(UpstreamCall::cached(NAME, &operation, &answer));
        }
        (answer, calls)
    }
}

/// Jira keys are a project key and a number; anything else never reaches the URL path.
pub fn is_valid_key(key: &str) -> bool {
    let Some((project, number)) = key.split_once('-') else {
        return false;
    };
    key.len() <= 64
        && project.starts_with(|c: char| c.is_ascii_uppercase())
        && project
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
        && !number.is_empty()
        && number.chars().all(|c| c.is_ascii_digit())
}

/// The mapping with its keys normalised; an empty key or value is a settings problem.
fn account_map(
    accounts: &BTreeMap<String, String>,
    problems: &mut Vec<Diagnostic>,
) -> BTreeMap<String, String> {
    let mut map = BTreeMap::new();
    for (requester, account) in accounts {
        match (non_empty(Some(requester)), non_empty(Some(account))) {
            (Some(requester), Some(account)) => {
                map.insert(requester.to_ascii_lowercase(), account);
            }
            _ => problems.push(problem(
                "accounts",
                format!("has an empty entry (`{requester}` = `{account}`)"),
                "map an Entra object id or user principal name to a Jira account id (Data Center: username)",
            )),
        }
    }
    map
}

/// The active users whose returned email is exactly `email` (trimmed, case-insensitive): a prefix,
/// a display name or a hidden email is no match.
fn matching_users(email: &str, found: Vec<UserResponse>) -> Vec<JiraUser> {
    found
        .into_iter()
        .filter(|user| user.active.unwrap_or(true))
        .map(|user| JiraUser {
            account_id: non_empty(user.account_id.as_deref()),
            name: non_empty(user.name.as_deref()),
            email: non_empty(user.email_address.as_deref()),
        })
        .filter(|user| {
            user.email
                .as_deref()
                .is_some_and(|address| address.eq_ignore_ascii_case(email))
                && (user.account_id.is_some() || user.name.is_some())
        })
        .collect()
}

#[derive(Debug, Deserialize)]
struct IssueResponse {
    key: Option<String>,
    /// Kept as JSON: whether a field is there (`null` or not) is part of the answer.
    #[serde(default)]
    fields: serde_json::Map<String, serde_json::Value>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Status {
    name: Option<String>,
    id: Option<String>,
    status_category: Option<StatusCategory>,
}

#[derive(Debug, Deserialize)]
struct StatusCategory {
    key: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct UserResponse {
    account_id: Option<String>,
    /// Data Center login.
    name: Option<String>,
    email_address: Option<String>,
    active: Option<bool>,
}

/// What an issue's person field says about `role`.
enum PersonField {
    Person(TicketPerson),
    /// `null`: nobody.
    Nobody,
    /// Left out, or a user with no identifier pimgate could compare.
    Unreadable,
}

fn person(role: &str, value: Option<&serde_json::Value>) -> PersonField {
    match value {
        Some(serde_json::Value::Null) => PersonField::Nobody,
        None => PersonField::Unreadable,
        Some(value) => match serde_json::from_value::<UserResponse>(value.clone()) {
            Ok(user) => {
                let person = TicketPerson {
                    role: role.to_string(),
                    email: non_empty(user.email_address.as_deref()),
                    login: non_empty(user.name.as_deref()),
                    account_id: non_empty(user.account_id.as_deref()),
                };
                if person.email.is_none() && person.login.is_none() && person.account_id.is_none() {
                    PersonField::Unreadable
                } else {
                    PersonField::Person(person)
                }
            }
            Err(_) => PersonField::Unreadable,
        },
    }
}

/// The ticket an issue describes; [`UpstreamError::WrongRecord`] when it is not `key`.
fn ticket_from_issue(
    key: &str,
    issue: IssueResponse,
    operation: &str,
) -> Result<ItsmTicket, UpstreamError> {
    let answered = non_empty(issue.key.as_deref());
    if !answered
        .as_deref()
        .is_some_and(|answered| answered.eq_ignore_ascii_case(key))
    {
        return Err(UpstreamError::wrong_record(
            NAME,
            operation,
            key,
            answered.as_deref(),
        ));
    }
    let fields = issue.fields;
    let mut unreadable = Vec::new();
    let status = fields
        .get("status")
        .and_then(|value| serde_json::from_value::<Status>(value.clone()).ok());
    let state = match status
        .as_ref()
        .and_then(|status| non_empty(status.name.as_deref()))
    {
        Some(name) => name,
        None => {
            unreadable.push("status".to_string());
            "(unknown)".to_string()
        }
    };
    let state_code = status
        .as_ref()
        .and_then(|status| non_empty(status.id.as_deref()));
    let status_category = status
        .and_then(|status| status.status_category)
        .and_then(|category| non_empty(category.key.as_deref()));
    if status_category.is_none() {
        unreadable.push("status_category".to_string());
    }
    let mut people = Vec::new();
    for role in PERSON_ROLES {
        match person(role, fields.get(*role)) {
            PersonField::Person(person) => people.push(person),
            PersonField::Nobody => {}
            PersonField::Unreadable => unreadable.push(role.to_string()),
        }
    }
    Ok(ItsmTicket {
        system: NAME,
        number: answered.unwrap_or_else(|| key.to_string()),
        table: None,
        state,
        state_code,
        status_category,
        people,
        window: None,
        unreadable,
    })
}

/// What a `GET …/issue/{key}` answer body says about issue `key` (the fuzz target's entry point;
/// the connector decodes the same `IssueResponse` through the HTTP layer).
pub fn parse_issue(key: &str, body: &[u8]) -> Result<ItsmTicket, UpstreamError> {
    let issue: IssueResponse =
        serde_json::from_slice(body).map_err(|_| UpstreamError::Malformed { connector: NAME })?;
    ticket_from_issue(key, issue, "parse")
}

/// What a `GET …/user/search` answer body says about `email`: the users kept by the same rules as
/// [`Jira::users_by_email`] (the fuzz target's entry point).
pub fn parse_users(email: &str, body: &[u8]) -> Result<Vec<JiraUser>, UpstreamError> {
    let found: Vec<UserResponse> =
        serde_json::from_slice(body).map_err(|_| UpstreamError::Malformed { connector: NAME })?;
    Ok(matching_users(&email.trim().to_ascii_lowercase(), found))
}

/// Jira as a ticket source: issues by key; people whose e-mail Jira hides are matched by the
/// requester's own Jira account.
#[async_trait::async_trait]
impl super::itsm::TicketSource for Jira {
    async fn lookup(
        &self,
        number: &str,
        _tables: &[String],
        deadline: Instant,
        calls: &mut Vec<UpstreamCall>,
    ) -> super::itsm::TicketLookup {
        use super::itsm::{TicketLookup, quote};
        if !is_valid_key(&number.to_ascii_uppercase()) {
            return TicketLookup::Refused(format!(
                "`{}` is not a Jira issue key; give a key such as `OPS-123` in PIM's ticket field",
                quote(number, 40)
            ));
        }
        let (answer, made) = self.issue(number, deadline).await;
        calls.extend(made);
        TicketLookup::Answer(answer)
    }

    /// The role of the first `hidden` person who is the requester's own Jira user, known exactly:
    /// the `accounts` mapping, else a user whose returned e-mail is one of the requester's
    /// addresses. `Ok(None)`: the requester's Jira user is known and is none of them. `Err` when
    /// Jira names nobody exactly or cannot be asked.
    async fn match_hidden(
        &self,
        hidden: &[&TicketPerson],
        requester: &super::itsm::Requester<'_>,
        calls: &mut Vec<UpstreamCall>,
    ) -> Result<Option<String>, super::itsm::Unresolved> {
        use super::itsm::Unresolved;
        let role_of = |users: &[JiraUser]| {
            hidden
                .iter()
                .find(|person| users.iter().any(|user| same_jira_user(user, person)))
                .map(|person| person.role.clone())
        };
        if let Some(mapped) = self.mapped_user(requester.principal_id, requester.principal_name) {
            return Ok(role_of(&[mapped]));
        }
        let mut known = false;
        let mut failure = None;
        for address in requester.addresses {
            let (found, search_calls) = self.users_by_email(address, requester.deadline).await;
            calls.extend(search_calls);
            match found {
                Ok(Fetched::Found(users)) => {
                    if let Some(role) = role_of(&users) {
                        return Ok(Some(role));
                    }
                    known = true;
                }
                Ok(Fetched::NotFound) => {}
                Err(error) => failure = Some(error),
            }
        }
        // An address Jira could not be asked about might have been the matching one.
        match failure {
            Some(error) => Err(Unresolved {
                message: format!("pimgate could not look up your Jira account: {error}"),
                detail: Some(error.detail()),
            }),
            None if !known => Err(Unresolved {
                message: "no Jira account shows exactly your e-mail address".to_string(),
                detail: Some(
                    "Jira hides this user's e-mail and no user showing exactly the requester's address was found; map the requester in `[connectors.jira] accounts` (Entra object id or UPN → accountId) or let pimgate's account see e-mail addresses".to_string(),
                ),
            }),
            None => Ok(None),
        }
    }
}

/// Whether a Jira user the requester is known as is the person on the ticket: the same Cloud
/// account id, or the same Data Center username.
fn same_jira_user(user: &JiraUser, person: &TicketPerson) -> bool {
    let account = matches!((&user.account_id, &person.account_id), (Some(a), Some(b)) if a == b);
    let login =
        matches!((&user.name, &person.login), (Some(a), Some(b)) if a.eq_ignore_ascii_case(b));
    account || login
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_well_formed_issue_keys_are_sent() {
        assert!(is_valid_key("OPS-12"));
        assert!(is_valid_key("A1_B-7"));
        assert!(!is_valid_key("OPS-12/../../myself"));
        assert!(!is_valid_key("ops-12"));
        assert!(!is_valid_key("OPS-"));
        assert!(!is_valid_key("12-OPS"));
    }

    fn issue(json: serde_json::Value) -> IssueResponse {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn a_null_assignee_is_nobody_and_a_missing_one_is_unreadable() {
        let status =
            serde_json::json!({ "name": "Open", "id": "1", "statusCategory": { "key": "new" } });
        let unassigned = issue(serde_json::json!({
            "key": "OPS-1", "fields": { "status": status, "assignee": null, "reporter": null }
        }));
        let ticket = ticket_from_issue("OPS-1", unassigned, "GET").unwrap();
        assert!(ticket.unreadable.is_empty() && ticket.people.is_empty());
        let hidden = issue(serde_json::json!({
            "key": "OPS-1", "fields": { "status": status, "reporter": { "displayName": "Someone" } }
        }));
        let ticket = ticket_from_issue("OPS-1", hidden, "GET").unwrap();
        assert_eq!(ticket.unreadable, ["assignee", "reporter"]);
    }

    #[test]
    fn an_issue_under_another_key_or_none_is_refused() {
        let moved = issue(serde_json::json!({ "key": "SEC-4", "fields": {} }));
        assert!(matches!(
            ticket_from_issue("OPS-12", moved, "GET"),
            Err(UpstreamError::WrongRecord {
                answered: Some(_),
                ..
            })
        ));
        let unnamed = issue(serde_json::json!({ "fields": {} }));
        assert!(ticket_from_issue("OPS-12", unnamed, "GET").is_err());
    }

    #[test]
    fn user_search_keeps_only_users_showing_exactly_the_email() {
        let user = |id: &str, email: Option<&str>| UserResponse {
            account_id: Some(id.to_string()),
            name: None,
            email_address: email.map(str::to_string),
            active: Some(true),
        };
        let found = matching_users(
            "ada@contoso.com",
            vec![
                user("1", Some("ADA@contoso.com")),
                user("2", Some("ada@contoso.com.evil")),
                user("3", None),
            ],
        );
        let ids: Vec<_> = found.iter().map(|u| u.account_id.as_deref()).collect();
        assert_eq!(ids, [Some("1")]);
        let alone = matching_users("ada@contoso.com", vec![user("3", None)]);
        assert!(alone.is_empty(), "a hidden email is nobody in particular");
        let prefix = matching_users("a@x.com", vec![user("4", Some("ba@x.com"))]);
        assert!(prefix.is_empty());
    }
}
