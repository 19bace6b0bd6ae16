//! Opsgenie "Who is on call" API: the on-call recipients of a schedule now or at a later instant
//! (`date`), flattened to user names (Opsgenie user names are e-mail addresses), cached per schedule
//! and instant.
//!
//! `flat=true` resolves teams, escalations and rotations to the people they page, so membership is
//! one case-insensitive comparison with the requester's addresses.

use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use super::BuildContext;
use super::cache::{CacheSettings, Expiring, TtlCache};
use super::http::{CircuitSettings, Fetched, RetrySettings, Upstream, UpstreamCall, UpstreamError};
use super::secrets::{Secret, SecretRef};
use crate::vocabulary::diagnostic::Diagnostic;

/// The name in `[connectors.opsgenie]`, in audit records and in error messages.
pub const CONNECTOR: &str = "opsgenie";

/// The escalation level every on-call recipient counts as: Opsgenie schedules have no levels.
pub const RECIPIENT_LEVEL: u32 = 1;

const DEFAULT_BASE_URL: &str = "https://api.opsgenie.com";
const OPERATION: &str = "GET /v2/schedules/{identifier}/on-calls";

/// `[connectors.opsgenie]`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct OpsgenieSettings {
    /// `https://api.opsgenie.com`, or `https://api.eu.opsgenie.com` for EU accounts.
    pub base_url: Option<String>,
    /// The key of an API integration allowed to read the schedules.
    pub api_key: SecretRef,
    pub timeout_ms: u64,
    /// On-call answers: short, because overrides take effect immediately.
    pub cache: CacheSettings,
    /// Retries of idempotent GETs (attempts, backoff); defaults suit most systems.
    #[serde(default)]
    pub retry: RetrySettings,
    /// When to stop calling this system for a while after repeated failures.
    #[serde(default)]
    pub circuit: CircuitSettings,
}

impl Default for OpsgenieSettings {
    fn default() -> Self {
        Self {
            base_url: None,
            api_key: SecretRef::default(),
            timeout_ms: 2000,
            cache: CacheSettings {
                ttl_seconds: 30,
                negative_ttl_seconds: 10,
                capacity: 10_000,
            },
            retry: RetrySettings::default(),
            circuit: CircuitSettings::default(),
        }
    }
}

/// The schedule identifier in a rule is its id when it looks like one (Opsgenie ids are UUIDs),
/// otherwise its name; Opsgenie needs to be told which.
pub fn identifier_type(identifier: &str) -> &'static str {
    if uuid::Uuid::try_parse(identifier).is_ok() {
        "id"
    } else {
        "name"
    }
}

#[derive(Debug, Deserialize)]
struct OnCallResponse {
    data: OnCallData,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct OnCallData {
    #[serde(default)]
    on_call_recipients: Vec<String>,
}

/// A configured Opsgenie account.
#[derive(Debug)]
pub struct Opsgenie {
    upstream: Upstream,
    base_url: String,
    key: Secret,
    cache: TtlCache<Vec<String>>,
}

impl Opsgenie {
    /// Validates the settings and resolves the API key now, so a missing secret stops start-up.
    pub fn new(
        settings: &OpsgenieSettings,
        context: &BuildContext,
    ) -> Result<Self, Vec<Diagnostic>> {
        let mut problems = Vec::new();
        let base_url = super::base_url(
            "opsgenie",
            settings.base_url.as_deref(),
            Some(DEFAULT_BASE_URL),
            "`https://api.opsgenie.com` (or `https://api.eu.opsgenie.com` for EU accounts)",
            &mut problems,
        );
        super::call_timeout("opsgenie", settings.timeout_ms, &mut problems);
        let key = match settings.api_key.resolve() {
            Ok(key) => Some(key),
            Err(message) => {
                problems.push(problem(
                    "api_key",
                    message,
                    "set `api_key = { env = \"PIMGATE_OPSGENIE_KEY\" }` and export an API integration key",
                ));
                None
            }
        };
        match key {
            Some(key) if problems.is_empty() => Ok(Self {
                upstream: Upstream::with_settings(
                    CONNECTOR,
                    context.http.clone(),
                    Duration::from_millis(settings.timeout_ms),
                    settings.retry,
                    settings.circuit,
                ),
                base_url,
                key,
                cache: TtlCache::with_name("opsgenie_oncalls", settings.cache),
            }),
            _ => Err(problems),
        }
    }

    /// The lower-cased user names on call for `schedule` (an id or a name) at the instant `at`:
    /// `None` for "now" (no `date`: Opsgenie answers for the moment it receives the request),
    /// `Some` for a later activation start (`date`, to the second); `NotFound` when Opsgenie has no
    /// such schedule. The answer carries no shift bounds, so an answer about one instant is never
    /// reused for another, and an answer about "now" is not cached at all: the shift it describes
    /// may end the next second, and an on-call answer never outlives its shift. An answer about a
    /// fixed later instant stays true while the schedule is unchanged, so it keeps the TTL.
    pub async fn on_call_recipients(
        &self,
        schedule: &str,
        at: Option<DateTime<Utc>>,
        deadline: Instant,
    ) -> (
        Result<Fetched<Vec<String>>, UpstreamError>,
        Vec<UpstreamCall>,
    ) {
        let mut calls = Vec::new();
        let date = at.map(|at| at.to_rfc3339_opts(SecondsFormat::Secs, false));
        let fetch = async {
            let mut url =
                reqwest::Url::parse(&self.base_url).map_err(|_| UpstreamError::Unreachable {
                    connector: CONNECTOR,
                })?;
            url.path_segments_mut()
                .map_err(|_| UpstreamError::Unreachable {
                    connector: CONNECTOR,
                })?
                .pop_if_empty()
                .extend(["v2", "schedules", schedule, "on-calls"]);
            url.query_pairs_mut()
                .append_pair("scheduleIdentifierType", identifier_type(schedule))
                .append_pair("flat", "true");
            if let Some(date) = &date {
                url.query_pairs_mut().append_pair("date", date);
            }
            let request = self.upstream.client().get(url).header(
                reqwest::header::AUTHORIZATION,
                format!("GenieKey {}", self.key.expose()),
            );
            let (result, call) = self
                .upstream
                .get_json::<OnCallResponse>(request, OPERATION, deadline)
                .await;
            calls.push(call);
            let answer = match result? {
                Fetched::NotFound => Fetched::NotFound,
                Fetched::Found(response) => Fetched::Found(
                    response
                        .data
                        .on_call_recipients
                        .into_iter()
                        .map(|name| name.trim().to_ascii_lowercase())
                        .collect(),
                ),
            };
            Ok(if at.is_some() {
                Expiring::open(answer)
            } else {
                Expiring {
                    answer,
                    valid_for: Some(Duration::ZERO),
                }
            })
        };
        let key = format!("{schedule}|{}", date.as_deref().unwrap_or("now"));
        let (result, cached) = self.cache.get_or_fetch_expiring(&key, fetch).await;
        if cached {
            calls.push(UpstreamCall::cached(CONNECTOR, OPERATION, &result));
        }
        (result, calls)
    }
}

fn problem(key: &str, message: String, fix: &str) -> Diagnostic {
    super::settings_problem(CONNECTOR, key, message, fix)
}

/// A `GET /v2/schedules/{id}/on-calls?flat=true` answer body: the recipients, trimmed and
/// lower-cased as [`Opsgenie::on_call_recipients`] keeps them (the fuzz target's entry point).
pub fn parse_on_call_recipients(body: &[u8]) -> Result<Vec<String>, UpstreamError> {
    let response: OnCallResponse =
        serde_json::from_slice(body).map_err(|_| UpstreamError::Malformed {
            connector: CONNECTOR,
        })?;
    Ok(response
        .data
        .on_call_recipients
        .into_iter()
        .map(|name| name.trim().to_ascii_lowercase())
        .collect())
}

/// Opsgenie as an on-call source: each schedule's flattened on-call recipients, matched against
/// the requester's e-mail addresses. Opsgenie schedules have no escalation levels; recipients count
/// as level 1.
#[async_trait::async_trait]
impl super::oncall::OncallSource for Opsgenie {
    async fn on_call(
        &self,
        ask: &super::oncall::OncallAsk<'_>,
        who: &dyn super::oncall::RequesterAddresses,
        calls: &mut Vec<UpstreamCall>,
    ) -> super::oncall::OncallAnswer {
        use super::oncall::{Duty, OncallAnswer, unavailable};
        let addresses = match who.addresses(ask.principal_id, ask.deadline, calls).await {
            Ok(addresses) => addresses,
            Err(message) => return OncallAnswer::Unknown(message),
        };
        let answers = futures::future::join_all(ask.schedules.iter().map(|schedule| async move {
            (
                schedule,
                self.on_call_recipients(schedule, ask.later, ask.deadline)
                    .await,
            )
        }))
        .await;
        let mut duties = Vec::new();
        let mut failure = None;
        for (schedule, (result, made)) in answers {
            calls.extend(made);
            match result {
                Ok(Fetched::Found(recipients)) => {
                    if recipients.iter().any(|name| addresses.contains(name)) {
                        duties.push(Duty {
                            target: schedule.clone(),
                            level: RECIPIENT_LEVEL,
                            end: None,
                        });
                    }
                }
                Ok(Fetched::NotFound) => {
                    failure.get_or_insert_with(|| {
                        format!(
                            "on-call status could not be checked: opsgenie has no schedule `{schedule}`"
                        )
                    });
                }
                Err(error) => {
                    failure.get_or_insert_with(|| unavailable(&error));
                }
            }
        }
        // A confirmed duty on one schedule is enough even if another schedule could not be asked.
        match failure {
            Some(message) if duties.is_empty() => OncallAnswer::Unknown(message),
            _ => OncallAnswer::Duties(duties),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule_ids_are_told_apart_from_schedule_names() {
        assert_eq!(
            identifier_type("d875a1b4-9b4e-4219-a1b3-0c26936d18de"),
            "id"
        );
        assert_eq!(identifier_type("Platform On-Call"), "name");
    }

    #[test]
    fn a_missing_key_and_a_plain_http_url_are_both_reported() {
        let settings = OpsgenieSettings {
            base_url: Some("http://api.opsgenie.com".into()),
            ..OpsgenieSettings::default()
        };
        let context = BuildContext {
            http: reqwest::Client::new(),
            tenant_id: "t".into(),
        };
        let problems = Opsgenie::new(&settings, &context).expect_err("invalid");
        let keys: Vec<&str> = problems.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "connectors.opsgenie.base_url",
                "connectors.opsgenie.api_key"
            ]
        );
    }
}
