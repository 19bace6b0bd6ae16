//! Upstream systems pimgate asks for business context: ITSM (ServiceNow, Jira), HR (Microsoft Graph,
//! a file), on-call (PagerDuty, Opsgenie, a file). Only this module and `auth` touch the network.
//!
//! A connector that is not configured is `None`: rules that need it still load (with a warning) and
//! their check reports "could not be evaluated", so the policy's `on_error` decides.

pub mod cache;
pub mod circuit;
pub mod compliance_api;
pub mod facts;
pub mod graph;
pub mod hr_file;
pub mod http;
pub mod identity;
pub mod itsm;
pub mod jira;
pub mod limits;
pub mod oauth;
pub mod oncall;
pub mod oncall_file;
pub mod opa;
pub mod opsgenie;
pub mod pagerduty;
pub mod secrets;
pub mod servicenow;
pub mod ticket;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::vocabulary::diagnostic::Diagnostic;

/// `[connectors.*]` in the config file; every section is optional.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct ConnectorsSettings {
    pub graph: Option<graph::GraphSettings>,
    pub hr_file: Option<hr_file::HrFileSettings>,
    pub servicenow: Option<servicenow::ServiceNowSettings>,
    pub jira: Option<jira::JiraSettings>,
    pub pagerduty: Option<pagerduty::PagerDutySettings>,
    pub opsgenie: Option<opsgenie::OpsgenieSettings>,
    pub oncall_file: Option<oncall_file::OncallFileSettings>,
    /// `[connectors.opa.NAME]`: each organisation OPA by the name rules give it.
    pub opa: BTreeMap<String, opa::OpaSettings>,
    /// `[connectors.http.NAME]`: the organisation's own compliance APIs, by name.
    pub http: std::collections::BTreeMap<String, compliance_api::ComplianceApiSettings>,
}

/// What every connector is built with.
#[derive(Debug, Clone)]
pub struct BuildContext {
    pub http: reqwest::Client,
    /// `auth.tenant_id`, the default tenant for Microsoft Graph.
    pub tenant_id: String,
}

/// The requester as the directory (Graph) or the HR file knows them. Upstream systems know people by
/// email or login, PIM by object id: this is the bridge.
///
/// The attributes the `hr` check judges are [`Attribute`]s, so "the directory says there is none" and
/// "pimgate does not know" cannot be confused: the first may be held against the requester, the
/// second makes the check not evaluated.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UserProfile {
    pub id: String,
    pub user_principal_name: Option<String>,
    pub mail: Option<String>,
    pub display_name: Option<String>,
    #[serde(default)]
    pub account_enabled: Attribute<bool>,
    #[serde(default)]
    pub employee_leave_date_time: Attribute<DateTime<Utc>>,
    #[serde(default)]
    pub employee_type: Attribute<String>,
    #[serde(default)]
    pub department: Attribute<String>,
}

/// One attribute of an upstream record, as far as pimgate can tell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attribute<T> {
    /// The record gives this value.
    Known(T),
    /// The record says there is none (`null`, an empty cell in a column the source has): an answer.
    Empty,
    /// pimgate cannot tell: never an answer, and never read as "none".
    Unknown(Unknown),
}

/// Why an [`Attribute`] is unknown; the operator's half of a "not evaluated" reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase", tag = "unknown")]
pub enum Unknown {
    /// The record does not carry it: a field the upstream left out, a column the file lacks.
    Absent,
    /// It is there but is not a value pimgate can read (`maybe` for a boolean, a date in another
    /// format).
    Unparsable,
    /// pimgate's credential is not shown to be allowed to read it, so an empty value may only mean
    /// "not allowed": the token Entra issued lacks this application permission.
    Unreadable { permission: &'static str },
}

/// Fail-closed: an attribute nobody filled in is unknown, not empty.
impl<T> Default for Attribute<T> {
    fn default() -> Self {
        Attribute::Unknown(Unknown::Absent)
    }
}

impl<T> Attribute<T> {
    pub fn known(&self) -> Option<&T> {
        match self {
            Attribute::Known(value) => Some(value),
            _ => None,
        }
    }
}

/// Known values as themselves, empty as `null`, unknown as `{"unknown": "absent"}` (and the
/// permission when one is missing): the audit record shows which of the three pimgate saw.
impl<T: Serialize> Serialize for Attribute<T> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Attribute::Known(value) => value.serialize(serializer),
            Attribute::Empty => serializer.serialize_none(),
            Attribute::Unknown(why) => why.serialize(serializer),
        }
    }
}

/// The inverse of the `Serialize` above, for replayed facts (`connectors::facts`): `null` is
/// empty, `{"unknown": ...}` unknown (a permission pimgate does not know is read as absent: still
/// unknown, never an answer), anything else the value.
impl<'de, T: serde::de::DeserializeOwned> Deserialize<'de> for Attribute<T> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = serde_json::Value::deserialize(deserializer)?;
        if value.is_null() {
            return Ok(Attribute::Empty);
        }
        if let Some(why) = value.get("unknown").and_then(serde_json::Value::as_str) {
            let unknown = match why {
                "unparsable" => Unknown::Unparsable,
                "unreadable" => {
                    let named = value.get("permission").and_then(serde_json::Value::as_str);
                    match KNOWN_PERMISSIONS.iter().find(|p| Some(p.name) == named) {
                        Some(permission) => Unknown::Unreadable {
                            permission: permission.name,
                        },
                        None => Unknown::Absent,
                    }
                }
                _ => Unknown::Absent,
            };
            return Ok(Attribute::Unknown(unknown));
        }
        serde_json::from_value(value)
            .map(Attribute::Known)
            .map_err(serde::de::Error::custom)
    }
}

/// Every permission an [`Unknown::Unreadable`] may name.
const KNOWN_PERMISSIONS: [&Permission; 4] = [
    &graph::USER_READ_ALL,
    &graph::LIFECYCLE_READ_ALL,
    &graph::groups::GROUP_MEMBER_READ_ALL,
    &graph::methods::USER_AUTH_METHOD_READ_ALL,
];

/// An upstream permission a check relies on: the one to grant (`name`), and every grant that
/// includes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Permission {
    pub connector: &'static str,
    pub name: &'static str,
    pub satisfied_by: &'static [&'static str],
    /// What it lets pimgate read, for operators.
    pub reads: &'static str,
}

/// A permission and what in the rules needs it, e.g. "`hr` checks with `not_leaving_within`".
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PermissionNeed {
    pub permission: &'static Permission,
    pub needed_for: &'static str,
}

impl UserProfile {
    /// Lower-cased addresses this person may be known by upstream (mail and UPN).
    pub fn addresses(&self) -> Vec<String> {
        let mut addresses: Vec<String> = [&self.mail, &self.user_principal_name]
            .into_iter()
            .flatten()
            .map(|address| address.trim().to_ascii_lowercase())
            .filter(|address| !address.is_empty())
            .collect();
        addresses.dedup();
        addresses
    }
}

/// Every configured connector, built once at start-up and shared by the checks that need them.
#[derive(Debug, Default)]
pub struct Connectors {
    pub graph: Option<Arc<graph::Graph>>,
    pub hr_file: Option<Arc<hr_file::HrFile>>,
    pub servicenow: Option<Arc<servicenow::ServiceNow>>,
    pub jira: Option<Arc<jira::Jira>>,
    pub pagerduty: Option<Arc<pagerduty::PagerDuty>>,
    pub opsgenie: Option<Arc<opsgenie::Opsgenie>>,
    pub oncall_file: Option<Arc<oncall_file::OncallFile>>,
    pub opa: BTreeMap<String, Arc<opa::Opa>>,
    /// `[connectors.http.NAME]`, by name.
    pub http: std::collections::BTreeMap<String, Arc<compliance_api::ComplianceApi>>,
}

impl Connectors {
    /// No upstream at all: `rules validate`, `evaluate --offline`, tests of local rules.
    pub fn none() -> Arc<Connectors> {
        Arc::new(Connectors::default())
    }

    /// Builds every configured connector, resolving its secrets now so a missing secret stops the
    /// start-up with a clear message instead of failing requests later. Reports every problem.
    pub fn build(
        settings: &ConnectorsSettings,
        context: &BuildContext,
    ) -> Result<Arc<Connectors>, Vec<Diagnostic>> {
        let mut problems = Vec::new();
        let mut connectors = Connectors::default();
        fn take<S, T>(
            settings: &Option<S>,
            build: impl Fn(&S) -> Result<T, Vec<Diagnostic>>,
            problems: &mut Vec<Diagnostic>,
        ) -> Option<Arc<T>> {
            match settings.as_ref().map(build) {
                None => None,
                Some(Ok(connector)) => Some(Arc::new(connector)),
                Some(Err(found)) => {
                    problems.extend(found);
                    None
                }
            }
        }
        connectors.graph = take(
            &settings.graph,
            |s| graph::Graph::new(s, context),
            &mut problems,
        );
        connectors.hr_file = take(
            &settings.hr_file,
            |s| hr_file::HrFile::new(s, context),
            &mut problems,
        );
        connectors.servicenow = take(
            &settings.servicenow,
            |s| servicenow::ServiceNow::new(s, context),
            &mut problems,
        );
        connectors.jira = take(
            &settings.jira,
            |s| jira::Jira::new(s, context),
            &mut problems,
        );
        connectors.pagerduty = take(
            &settings.pagerduty,
            |s| pagerduty::PagerDuty::new(s, context),
            &mut problems,
        );
        connectors.opsgenie = take(
            &settings.opsgenie,
            |s| opsgenie::Opsgenie::new(s, context),
            &mut problems,
        );
        connectors.oncall_file = take(
            &settings.oncall_file,
            |s| oncall_file::OncallFile::new(s, context),
            &mut problems,
        );
        for (name, opa_settings) in &settings.opa {
            match opa::Opa::new(name, opa_settings, context) {
                Ok(opa) => {
                    connectors.opa.insert(name.clone(), Arc::new(opa));
                }
                Err(found) => problems.extend(found),
            }
        }
        for (name, api) in &settings.http {
            match compliance_api::ComplianceApi::new(name, api, settings.graph.as_ref(), context) {
                Ok(api) => {
                    connectors.http.insert(name.clone(), Arc::new(api));
                }
                Err(found) => problems.extend(found),
            }
        }
        if problems.is_empty() {
            Ok(Arc::new(connectors))
        } else {
            Err(problems)
        }
    }

    /// Whether the connector a rule names (`servicenow`, `graph`, `file`, …) is configured.
    pub fn is_configured(&self, name: &str) -> bool {
        ConnectorId::ALL
            .iter()
            .find(|id| id.name() == name)
            .is_some_and(|id| self.has(*id))
    }

    /// Whether this connector is configured; exhaustive, so a new connector must answer.
    pub fn has(&self, id: ConnectorId) -> bool {
        match id {
            ConnectorId::Graph => self.graph.is_some(),
            ConnectorId::HrFile => self.hr_file.is_some(),
            ConnectorId::ServiceNow => self.servicenow.is_some(),
            ConnectorId::Jira => self.jira.is_some(),
            ConnectorId::PagerDuty => self.pagerduty.is_some(),
            ConnectorId::Opsgenie => self.opsgenie.is_some(),
            ConnectorId::OncallFile => self.oncall_file.is_some(),
            ConnectorId::Opa => !self.opa.is_empty(),
            ConnectorId::Http => !self.http.is_empty(),
        }
    }
}

/// The connectors by name, for what a check kind needs (`checks::registry::CheckKind::connector`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ConnectorId {
    Graph,
    HrFile,
    ServiceNow,
    Jira,
    PagerDuty,
    Opsgenie,
    OncallFile,
    Opa,
    /// Any `[connectors.http.NAME]`; the check names which.
    Http,
}

impl ConnectorId {
    pub const ALL: [ConnectorId; 9] = [
        ConnectorId::Graph,
        ConnectorId::HrFile,
        ConnectorId::ServiceNow,
        ConnectorId::Jira,
        ConnectorId::PagerDuty,
        ConnectorId::Opsgenie,
        ConnectorId::OncallFile,
        ConnectorId::Opa,
        ConnectorId::Http,
    ];

    /// The name of its `[connectors.<name>]` section.
    pub fn name(self) -> &'static str {
        match self {
            ConnectorId::Graph => "graph",
            ConnectorId::HrFile => "hr_file",
            ConnectorId::ServiceNow => "servicenow",
            ConnectorId::Jira => "jira",
            ConnectorId::PagerDuty => "pagerduty",
            ConnectorId::Opsgenie => "opsgenie",
            ConnectorId::OncallFile => "oncall_file",
            ConnectorId::Opa => "opa",
            ConnectorId::Http => "http",
        }
    }
}

/// For `#[serde(default, deserialize_with = "present")]` on an `Option<serde_json::Value>`: a field
/// that is there, even as `null`, is `Some`; only a missing field is `None`. Plain `Option` would
/// read both as `None` and lose the difference between "none" and "not said".
pub(crate) fn present<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<serde_json::Value>, D::Error> {
    serde_json::Value::deserialize(deserializer).map(Some)
}

/// The one shape of a connector settings problem: the key is `connectors.<connector>.<key>`.
/// The name a connector of a kind with several named instances (`[connectors.http.NAME]`,
/// `[connectors.opa.NAME]`) goes by in metrics, logs and audit evidence: `http.compliance`, so two
/// receivers do not share one series or one circuit label.
///
/// Interned as `&'static str` because every upstream call labels itself with it (metrics keys,
/// `UpstreamError`): each distinct name is allocated once per process, and there are only as many as
/// the config file names.
pub fn instance_name(kind: &str, name: &str) -> &'static str {
    static NAMES: std::sync::Mutex<std::collections::BTreeSet<&'static str>> =
        std::sync::Mutex::new(std::collections::BTreeSet::new());
    let full = format!("{kind}.{name}");
    // A poisoned lock only means a panic between two inserts; the set is whole.
    let mut names = NAMES
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(known) = names.get(full.as_str()) {
        return known;
    }
    let leaked: &'static str = Box::leak(full.into_boxed_str());
    names.insert(leaked);
    leaked
}

pub(crate) fn settings_problem(
    connector: &str,
    key: &str,
    message: impl Into<String>,
    fix: impl Into<String>,
) -> Diagnostic {
    Diagnostic::error(key, message, fix).under(&format!("connectors.{connector}"))
}

/// A connector's API root: the configured one or the vendor's `default`, trailing `/` trimmed, https
/// (plain http only for loopback). `example` is the fix shown when it is missing or unusable.
pub(crate) fn base_url(
    connector: &str,
    given: Option<&str>,
    default: Option<&str>,
    example: &str,
    problems: &mut Vec<Diagnostic>,
) -> String {
    let url = match given
        .map(str::trim)
        .filter(|url| !url.is_empty())
        .or(default)
    {
        Some(url) => url.trim_end_matches('/').to_string(),
        None => {
            problems.push(settings_problem(
                connector,
                "base_url",
                "is missing",
                format!("set it, e.g. {example}"),
            ));
            return String::new();
        }
    };
    if let Err(message) = crate::vocabulary::fetch_url::check_fetch_url(&url).map(|_| ()) {
        problems.push(settings_problem(
            connector,
            "base_url",
            message,
            format!("use an https URL, e.g. {example}"),
        ));
    }
    url
}

/// A connector's per-call timeout, 1..=60000 ms: one call must fit well inside `server.deadline_ms`.
pub(crate) fn call_timeout(
    connector: &str,
    timeout_ms: u64,
    problems: &mut Vec<Diagnostic>,
) -> Duration {
    if timeout_ms == 0 || timeout_ms > 60_000 {
        problems.push(settings_problem(
            connector,
            "timeout_ms",
            format!("`{timeout_ms}` is out of range"),
            "use a value between 1 and 60000 milliseconds, e.g. 2000",
        ));
    }
    Duration::from_millis(timeout_ms)
}

#[cfg(test)]
mod settings_tests {
    use super::*;

    #[test]
    fn base_urls_default_trim_and_refuse_plain_http_off_loopback() {
        let mut problems = Vec::new();
        assert_eq!(
            base_url(
                "x",
                None,
                Some("https://api.example.com/"),
                "`https://api.example.com`",
                &mut problems
            ),
            "https://api.example.com"
        );
        assert_eq!(
            base_url("x", Some(" http://127.0.0.1:9/ "), None, "e", &mut problems),
            "http://127.0.0.1:9"
        );
        assert!(problems.is_empty(), "{problems:?}");
        base_url("x", None, None, "e", &mut problems);
        base_url(
            "x",
            Some("http://contoso.example"),
            None,
            "e",
            &mut problems,
        );
        let keys: Vec<&str> = problems
            .iter()
            .map(|problem| problem.key.as_str())
            .collect();
        assert_eq!(keys, ["connectors.x.base_url", "connectors.x.base_url"]);
        assert!(problems[0].message.contains("missing"));
    }

    #[test]
    fn timeouts_outside_one_minute_are_refused() {
        let mut problems = Vec::new();
        assert_eq!(
            call_timeout("x", 2000, &mut problems),
            Duration::from_secs(2)
        );
        assert!(problems.is_empty());
        call_timeout("x", 0, &mut problems);
        call_timeout("x", 60_001, &mut problems);
        assert_eq!(problems.len(), 2);
        assert!(
            problems
                .iter()
                .all(|problem| problem.key == "connectors.x.timeout_ms")
        );
    }
}
