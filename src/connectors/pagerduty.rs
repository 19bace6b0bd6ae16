//! PagerDuty REST API v2: who is on call now or at a later instant (`GET /oncalls`, with
//! `since`/`until` for the latter) and which PagerDuty user an address belongs to
//! (`GET /users?query=`), both cached.
//!
//! PagerDuty knows people by its own user ids, PIM by Entra object ids; the bridge is the e-mail
//! address from the directory, matched case-insensitively against the PagerDuty user's `email`.

use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Timelike, Utc};
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use super::BuildContext;
use super::cache::{CacheSettings, Expiring, TtlCache, remaining};
use super::http::{CircuitSettings, Fetched, RetrySettings, Upstream, UpstreamCall, UpstreamError};
use super::secrets::{Secret, SecretRef};
use crate::vocabulary::diagnostic::Diagnostic;

/// The name in `[connectors.pagerduty]`, in audit records and in error messages.
pub const CONNECTOR: &str = "pagerduty";

const DEFAULT_BASE_URL: &str = "https://api.pagerduty.com";
/// PagerDuty's largest page for classic pagination.
const PAGE_SIZE: u32 = 100;
const ACCEPT: &str = "application/vnd.pagerduty+json;version=2";

/// `[connectors.pagerduty]`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct PagerDutySettings {
    /// `https://api.pagerduty.com` (the EU service region uses `https://api.eu.pagerduty.com`).
    pub base_url: Option<String>,
    /// A read-only REST API key (account or user token).
    pub api_token: SecretRef,
    pub timeout_ms: u64,
    /// Upper bound on `/oncalls` pages read per question, so a huge account cannot stall a decision.
    pub max_pages: u32,
    /// On-call answers: short, because overrides take effect immediately.
    pub cache: CacheSettings,
    /// Retries of idempotent GETs (attempts, backoff); defaults suit most systems.
    #[serde(default)]
    pub retry: RetrySettings,
    /// When to stop calling this system for a while after repeated failures.
    #[serde(default)]
    pub circuit: CircuitSettings,
    /// Address → PagerDuty user id: people rarely change address, so this may live long.
    pub users_cache: CacheSettings,
}

impl Default for PagerDutySettings {
    fn default() -> Self {
        Self {
            base_url: None,
            api_token: SecretRef::default(),
            timeout_ms: 2000,
            max_pages: 10,
            cache: CacheSettings {
                ttl_seconds: 30,
                negative_ttl_seconds: 10,
                capacity: 10_000,
            },
            users_cache: CacheSettings {
                ttl_seconds: 3600,
                negative_ttl_seconds: 60,
                capacity: 10_000,
            },
            retry: RetrySettings::default(),
            circuit: CircuitSettings::default(),
        }
    }
}

/// One entry of `GET /oncalls`: a user on call for an escalation policy at a level, through a
/// schedule (or directly when `schedule` is null). `start`/`end` are null for permanent on-calls.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct PagerDutyOncall {
    pub escalation_level: u32,
    pub user: Reference,
    pub schedule: Option<Reference>,
    pub escalation_policy: Reference,
    pub start: Option<DateTime<Utc>>,
    pub end: Option<DateTime<Utc>>,
}

impl PagerDutyOncall {
    /// Whether the on-call covers the instant `at` (null bounds are open).
    pub fn covers(&self, at: DateTime<Utc>) -> bool {
        self.start.is_none_or(|start| start <= at) && self.end.is_none_or(|end| at < end)
    }
}

/// PagerDuty's `*_reference` objects; only the id matters here.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct Reference {
    pub id: String,
    #[serde(default)]
    pub summary: Option<String>,
}

/// Which on-calls to ask for; the user is always given, the filters narrow the answer further.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct OncallQuery {
    pub user_id: String,
    pub schedule_ids: Vec<String>,
    pub escalation_policy_ids: Vec<String>,
}

impl OncallQuery {
    fn cache_key(&self, range: Option<&(String, String)>) -> String {
        format!(
            "{}|{}|{}|{}",
            self.user_id,
            self.schedule_ids.join(","),
            self.escalation_policy_ids.join(","),
            range.map_or("now", |(since, _)| since.as_str())
        )
    }
}

/// The minute containing `at`, as `since`/`until` for `/oncalls`: PagerDuty returns every on-call
/// that overlaps it (so every one covering `at`), and one answer serves the whole minute from the
/// cache. Callers keep only the entries that cover `at` itself.
fn minute_around(at: DateTime<Utc>) -> (String, String) {
    let since = at
        .with_second(0)
        .and_then(|minute| minute.with_nanosecond(0))
        .unwrap_or(at);
    let until = since
        .checked_add_signed(chrono::Duration::minutes(1))
        .unwrap_or(since);
    let text = |instant: DateTime<Utc>| instant.to_rfc3339_opts(SecondsFormat::Secs, true);
    (text(since), text(until))
}

#[derive(Debug, Deserialize)]
struct OncallsPage {
    oncalls: Vec<PagerDutyOncall>,
    #[serde(default)]
    more: bool,
}

#[derive(Debug, Deserialize)]
struct UsersPage {
    users: Vec<PagerDutyUser>,
}

#[derive(Debug, Deserialize)]
struct PagerDutyUser {
    id: String,
    #[serde(default)]
    email: Option<String>,
}

/// A configured PagerDuty account.
#[derive(Debug)]
pub struct PagerDuty {
    upstream: Upstream,
    base_url: String,
    token: Secret,
    max_pages: u32,
    oncalls: TtlCache<Vec<PagerDutyOncall>>,
    users: TtlCache<String>,
}

impl PagerDuty {
    /// Validates the settings and resolves the API token now, so a missing secret stops start-up.
    pub fn new(
        settings: &PagerDutySettings,
        context: &BuildContext,
    ) -> Result<Self, Vec<Diagnostic>> {
        let mut problems = Vec::new();
        let base_url = super::base_url(
            "pagerduty",
            settings.base_url.as_deref(),
            Some(DEFAULT_BASE_URL),
            "`https://api.pagerduty.com` (or `https://api.eu.pagerduty.com`)",
            &mut problems,
        );
        super::call_timeout("pagerduty", settings.timeout_ms, &mut problems);
        if settings.max_pages == 0 {
            problems.push(problem(
                "max_pages",
                "must be positive".into(),
                "give the number of pages to read, e.g. 10",
            ));
        }
        let token = settings.api_token.resolve().map_err(|message| {
            problem(
                "api_token",
                message,
                "set `api_token = { env = \"PIMGATE_PAGERDUTY_TOKEN\" }` and export a read-only REST API key",
            )
        });
        let token = match token {
            Ok(token) => Some(token),
            Err(found) => {
                problems.push(found);
                None
            }
        };
        match token {
            Some(token) if problems.is_empty() => Ok(Self {
                upstream: Upstream::with_settings(
                    CONNECTOR,
                    context.http.clone(),
                    Duration::from_millis(settings.timeout_ms),
                    settings.retry,
                    settings.circuit,
                ),
                base_url,
                token,
                max_pages: settings.max_pages,
                oncalls: TtlCache::with_name("pagerduty_oncalls", settings.cache),
                users: TtlCache::with_name("pagerduty_users", settings.users_cache),
            }),
            _ => Err(problems),
        }
    }

    /// A GET with the query built by `url` (reqwest's own `query` is behind a feature we do not
    /// enable), so repeated `user_ids[]`-style keys come out as PagerDuty expects.
    fn get(
        &self,
        path: &str,
        params: &[(&str, &str)],
    ) -> Result<reqwest::RequestBuilder, UpstreamError> {
        let mut url = reqwest::Url::parse(&format!("{}{path}", self.base_url)).map_err(|_| {
            UpstreamError::Unreachable {
                connector: CONNECTOR,
            }
        })?;
        if !params.is_empty() {
            url.query_pairs_mut().extend_pairs(params);
        }
        Ok(self
            .upstream
            .client()
            .get(url)
            .header(
                reqwest::header::AUTHORIZATION,
                format!("Token token={}", self.token.expose()),
            )
            .header(reqwest::header::ACCEPT, ACCEPT))
    }

    /// The PagerDuty user id whose `email` is `address` (case-insensitively); `NotFound` when no
    /// PagerDuty user has it. Cached, including "no such user" (for the shorter negative TTL).
    pub async fn user_id_by_email(
        &self,
        address: &str,
        deadline: Instant,
    ) -> (Result<Fetched<String>, UpstreamError>, Vec<UpstreamCall>) {
        let wanted = address.trim().to_ascii_lowercase();
        let mut calls = Vec::new();
        let fetch = async {
            let request = self.get("/users", &[("query", wanted.as_str())])?;
            let (result, call) = self
                .upstream
                .get_json::<UsersPage>(request, "GET /users", deadline)
                .await;
            calls.push(call);
            match result? {
                Fetched::NotFound => Ok(Fetched::NotFound),
                Fetched::Found(page) => Ok(page
                    .users
                    .into_iter()
                    .find(|user| {
                        user.email
                            .as_deref()
                            .is_some_and(|email| email.trim().eq_ignore_ascii_case(&wanted))
                    })
                    .map_or(Fetched::NotFound, |user| Fetched::Found(user.id))),
            }
        };
        let (result, cached) = self.users.get_or_fetch(&wanted, fetch).await;
        if cached {
            calls.push(UpstreamCall::cached(CONNECTOR, "GET /users", &result));
        }
        (result, calls)
    }

    /// The on-calls matching `query` at the instant `at`: `None` for "now" (no `since`/`until`, so
    /// PagerDuty's present), `Some` for a later activation start (the minute around it as
    /// `since`/`until`), following pagination up to `max_pages`. Callers check each entry's bounds
    /// against the instant they mean.
    ///
    /// The answer is cached at most until the first `start` or `end` after `now` among its entries
    /// (the moment it stops being true), and an empty answer ("not on call") only for the short
    /// negative TTL, since the next shift's start is not in it.
    pub async fn oncalls(
        &self,
        query: &OncallQuery,
        at: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
        deadline: Instant,
    ) -> (
        Result<Vec<PagerDutyOncall>, UpstreamError>,
        Vec<UpstreamCall>,
    ) {
        let mut calls = Vec::new();
        let range = at.map(minute_around);
        let fetch = async {
            let mut entries = Vec::new();
            let mut offset: u32 = 0;
            for _ in 0..self.max_pages {
                let limit = PAGE_SIZE.to_string();
                let offset_text = offset.to_string();
                let mut params: Vec<(&str, &str)> = vec![
                    ("user_ids[]", query.user_id.as_str()),
                    ("time_zone", "UTC"),
                    ("limit", limit.as_str()),
                    ("offset", offset_text.as_str()),
                ];
                if let Some((since, until)) = &range {
                    params.extend([("since", since.as_str()), ("until", until.as_str())]);
                }
                params.extend(
                    query
                        .schedule_ids
                        .iter()
                        .map(|id| ("schedule_ids[]", id.as_str())),
                );
                params.extend(
                    query
                        .escalation_policy_ids
                        .iter()
                        .map(|id| ("escalation_policy_ids[]", id.as_str())),
                );
                let request = self.get("/oncalls", &params)?;
                let (result, call) = self
                    .upstream
                    .get_json::<OncallsPage>(request, "GET /oncalls", deadline)
                    .await;
                calls.push(call);
                let page = match result? {
                    Fetched::Found(page) => page,
                    // `/oncalls` never 404s for a filter; a 404 means the base URL is wrong.
                    Fetched::NotFound => {
                        return Err(UpstreamError::Status {
                            connector: CONNECTOR,
                            status: 404,
                        });
                    }
                };
                let count = u32::try_from(page.oncalls.len()).unwrap_or(u32::MAX);
                entries.extend(page.oncalls);
                if !page.more || count == 0 {
                    return Ok(expiring(entries, now));
                }
                offset = offset.saturating_add(count);
            }
            tracing::warn!(
                connector = CONNECTOR,
                pages = self.max_pages,
                "more on-call pages than max_pages; deciding on the pages read"
            );
            Ok(expiring(entries, now))
        };
        let (result, cached) = self
            .oncalls
            .get_or_fetch_expiring(&query.cache_key(range.as_ref()), fetch)
            .await;
        if cached {
            calls.push(UpstreamCall::cached(CONNECTOR, "GET /oncalls", &result));
        }
        let entries = result.map(|fetched| match fetched {
            Fetched::Found(entries) => entries,
            Fetched::NotFound => Vec::new(),
        });
        (entries, calls)
    }
}

/// An `/oncalls` answer with its lifetime: until the first shift bound after `now` (an entry that
/// ends, or one that begins), open when every entry is open-ended. No entries is "not found", so
/// the cache keeps it only for the negative TTL.
fn expiring(
    entries: Vec<PagerDutyOncall>,
    now: DateTime<Utc>,
) -> Expiring<Fetched<Vec<PagerDutyOncall>>> {
    if entries.is_empty() {
        return Expiring::open(Fetched::NotFound);
    }
    let valid_for = entries
        .iter()
        .flat_map(|entry| [entry.start.filter(|start| *start > now), entry.end])
        .flatten()
        .map(|bound| remaining(bound, now))
        .min();
    Expiring {
        answer: Fetched::Found(entries),
        valid_for,
    }
}

fn problem(key: &str, message: String, fix: &str) -> Diagnostic {
    super::settings_problem(CONNECTOR, key, message, fix)
}

/// One `GET /oncalls` page body: its entries and whether more follow (the fuzz target's entry
/// point; the connector decodes the same `OncallsPage` through the HTTP layer).
pub fn parse_oncalls_page(body: &[u8]) -> Result<(Vec<PagerDutyOncall>, bool), UpstreamError> {
    let page: OncallsPage = serde_json::from_slice(body).map_err(|_| UpstreamError::Malformed {
        connector: CONNECTOR,
    })?;
    Ok((page.oncalls, page.more))
}

/// PagerDuty as an on-call source: the requester's e-mail → PagerDuty user id → `GET /oncalls`
/// filtered by that user and the schedules (or escalation policies). When both are named,
/// PagerDuty would AND the filters, so they are applied here instead (OR).
#[async_trait::async_trait]
impl super::oncall::OncallSource for PagerDuty {
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
        let mut user_id = None;
        for address in &addresses {
            let (result, made) = self.user_id_by_email(address, ask.deadline).await;
            calls.extend(made);
            match result {
                Ok(Fetched::Found(id)) => {
                    user_id = Some(id);
                    break;
                }
                Ok(Fetched::NotFound) => {}
                Err(error) => return OncallAnswer::Unknown(unavailable(&error)),
            }
        }
        let Some(user_id) = user_id else {
            return OncallAnswer::NotOnCall(format!(
                "you are not on call for {}: PagerDuty has no user with the address {}",
                ask.targets(),
                addresses.join(" or ")
            ));
        };
        let both = !ask.schedules.is_empty() && !ask.policies.is_empty();
        let query = OncallQuery {
            user_id: user_id.clone(),
            schedule_ids: if both {
                Vec::new()
            } else {
                ask.schedules.to_vec()
            },
            escalation_policy_ids: if both {
                Vec::new()
            } else {
                ask.policies.to_vec()
            },
        };
        let (result, made) = self.oncalls(&query, ask.later, ask.now, ask.deadline).await;
        calls.extend(made);
        let entries = match result {
            Ok(entries) => entries,
            Err(error) => return OncallAnswer::Unknown(unavailable(&error)),
        };
        OncallAnswer::Duties(
            entries
                .iter()
                .filter(|entry| entry.user.id == user_id && entry.covers(ask.at))
                .filter_map(|entry| {
                    let schedule = entry
                        .schedule
                        .as_ref()
                        .map(|schedule| schedule.id.as_str())
                        .filter(|id| ask.schedules.iter().any(|wanted| wanted == id));
                    let policy = Some(entry.escalation_policy.id.as_str())
                        .filter(|id| ask.policies.iter().any(|wanted| wanted == id));
                    schedule.or(policy).map(|target| Duty {
                        target: target.to_string(),
                        level: entry.escalation_level,
                        end: entry.end,
                    })
                })
                .collect(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn context() -> BuildContext {
        BuildContext {
            http: reqwest::Client::new(),
            tenant_id: "t".into(),
        }
    }

    #[test]
    fn settings_problems_are_all_reported_with_their_keys() {
        let settings = PagerDutySettings {
            base_url: Some("http://pagerduty.example.com".into()),
            api_token: SecretRef {
                env: Some("PIMGATE_TEST_PAGERDUTY_SURELY_UNSET".into()),
                file: None,
            },
            timeout_ms: 0,
            ..PagerDutySettings::default()
        };
        let problems = PagerDuty::new(&settings, &context()).expect_err("invalid");
        let keys: Vec<&str> = problems.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "connectors.pagerduty.base_url",
                "connectors.pagerduty.timeout_ms",
                "connectors.pagerduty.api_token"
            ]
        );
        assert!(problems.iter().all(|p| !p.message.contains("Token token=")));
    }

    #[test]
    fn the_query_range_is_the_minute_around_the_instant() {
        let at = DateTime::parse_from_rfc3339("2026-11-27T12:34:56.789Z")
            .expect("time")
            .with_timezone(&Utc);
        assert_eq!(
            minute_around(at),
            (
                "2026-11-27T12:34:00Z".to_string(),
                "2026-11-27T12:35:00Z".to_string()
            )
        );
    }

    #[test]
    fn oncall_bounds_are_half_open_and_null_means_unbounded() {
        let at = |text: &str| {
            DateTime::parse_from_rfc3339(text)
                .expect("time")
                .with_timezone(&Utc)
        };
        let reference = Reference {
            id: "X".into(),
            summary: None,
        };
        let mut entry = PagerDutyOncall {
            escalation_level: 1,
            user: reference.clone(),
            schedule: None,
            escalation_policy: reference,
            start: Some(at("2026-11-24T08:00:00Z")),
            end: Some(at("2026-11-24T18:00:00Z")),
        };
        assert!(entry.covers(at("2026-11-24T08:00:00Z")));
        assert!(!entry.covers(at("2026-11-24T18:00:00Z")));
        entry.end = None;
        assert!(entry.covers(at("2030-01-01T00:00:00Z")));
    }
}
